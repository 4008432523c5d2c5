"""A miniature NYUv2 release, byte-for-byte the same kind of files as the real one.

``nyu_depth_v2_labeled.mat`` is a real MATLAB v7.3 file: an HDF5 file behind MATLAB's
512-byte user block, with the release's keys, dtypes, ``MATLAB_class`` attributes and
column-major axis order (h5py shapes ``(N, 3, 640, 480)`` and ``(N, 640, 480)``), and cell
arrays (``names``, ``scenes``, ``sceneTypes``) stored as object references into ``#refs#``.
``splits.mat`` and ``classMapping40.mat`` are MATLAB 5 files with the real keys.

The frames are synthetic rooms rendered from the colour camera's intrinsics — floor,
walls, ceiling and boxes — so depth, HHA and the labels are geometrically consistent, and
the converter, the tests and ``aims demo`` exercise the same code a real release does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aims.converters.nyuv2 import (
    CLASS_MAPPING_MAT,
    FRAME_SHAPE,
    LABELED_MAT,
    NYU40_CLASS_NAMES,
    SPLITS_MAT,
)

NUM_RAW_CLASSES = 894
_FX, _FY, _CX, _CY = 518.85790117450188, 519.46961112127485, 325.58244941119034, 253.73616633400465

# the miniature's 894 → 40 mapping: raw class r maps to ((r - 1) % 40) + 1, so raw class
# c (1..40) is 40-class c
_MAP_CLASS = (np.arange(NUM_RAW_CLASSES) % 40 + 1).astype(np.uint8)
_WALL, _FLOOR, _CEILING = 1, 2, 22
_OBJECT_CLASSES = (3, 4, 5, 6, 7, 8, 10, 11, 14, 25, 29, 33, 35, 40)

_SCENES = ("bedroom", "kitchen", "living_room", "bathroom", "office")


def matlab_header(created: str = "Mon Jan  1 00:00:00 2024") -> bytes:
    """The 128 bytes MATLAB writes at the start of a v7.3 file's user block."""
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 .".encode()
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    assert len(header) == 128
    return header


def render_frame(rng: np.random.Generator, scene: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic room: RGB uint8 (H,W,3), filled depth float32 metres, raw depth with
    holes, raw labels uint16 (0 = unlabelled border and holes)."""
    h, w = FRAME_SHAPE
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = (u - _CX) / _FX, (v - _CY) / _FY
    cam_height = rng.uniform(1.0, 1.5)
    back, half_width, ceiling = rng.uniform(3.0, 5.0), rng.uniform(1.8, 2.6), rng.uniform(1.1, 1.4)
    inf = np.inf
    # depth (Z) to each surface along the pixel ray; the nearest one wins
    z_floor = np.where(dy > 1e-6, cam_height / np.maximum(dy, 1e-6), inf)
    z_ceiling = np.where(dy < -1e-6, ceiling / np.maximum(-dy, 1e-6), inf)
    z_side = np.where(np.abs(dx) > 1e-6, half_width / np.maximum(np.abs(dx), 1e-6), inf)
    z_back = np.full_like(dx, back)
    stack = np.stack([z_back, z_side, z_floor, z_ceiling])
    surface = np.argmin(stack, axis=0)
    depth = np.min(stack, axis=0)
    labels = np.choose(surface, [_WALL, _WALL, _FLOOR, _CEILING]).astype(np.uint16)
    # boxes standing on the floor, nearer than the walls
    for _ in range(int(rng.integers(3, 7))):
        z = rng.uniform(1.2, back - 0.3)
        x0 = rng.uniform(-half_width + 0.2, half_width - 0.8)
        bw, bh = rng.uniform(0.3, 0.9), rng.uniform(0.3, 1.0)
        u0, u1 = int(_CX + _FX * x0 / z), int(_CX + _FX * (x0 + bw) / z)
        v0, v1 = int(_CY + _FY * (cam_height - bh) / z), int(_CY + _FY * cam_height / z)
        u0, u1, v0, v1 = max(u0, 0), min(u1, w), max(v0, 0), min(v1, h)
        if u1 - u0 < 4 or v1 - v0 < 4:
            continue
        region = (slice(v0, v1), slice(u0, u1))
        nearer = depth[region] > z
        depth[region][nearer] = z
        raw = int(rng.choice(_OBJECT_CLASSES)) + 40 * int(rng.integers(0, 22))
        labels[region][nearer] = min(raw, NUM_RAW_CLASSES)
    # NYUv2 frames carry an unlabelled border from the registration crop
    border = int(rng.integers(6, 12))
    labels[:border], labels[-border:], labels[:, :border], labels[:, -border:] = 0, 0, 0, 0
    # colours per 40-class with shading, like a lit room
    palette = np.random.default_rng(1234).integers(40, 220, size=(41, 3))
    rgb = palette[_MAP_CLASS[np.maximum(labels.astype(np.int64) - 1, 0)] * (labels > 0)]
    shade = np.clip(1.2 - depth / 8.0, 0.4, 1.0)[..., None]
    noise = rng.normal(0, 6, size=rgb.shape)
    rgb = np.clip(rgb * shade + noise, 0, 255).astype(np.uint8)
    depth = depth.astype(np.float32)
    raw_depth = depth.copy()
    for _ in range(int(rng.integers(2, 5))):  # sensor holes
        cy, cx, r = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(5, 25))
        raw_depth[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = 0
    return rgb, depth, raw_depth, labels


def _write_cell(f, refs, key: str, strings: list[str]) -> None:
    import h5py

    out = f.create_dataset(key, shape=(1, len(strings)), dtype=h5py.ref_dtype)
    for i, text in enumerate(strings):
        name = f"{key}_{i}"
        chars = np.frombuffer(text.encode("utf-16-le"), dtype=np.uint16).reshape(-1, 1)
        ds = refs.create_dataset(name, data=chars)
        ds.attrs["MATLAB_class"] = np.bytes_(b"char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
        out[0, i] = ds.ref
    out.attrs["MATLAB_class"] = np.bytes_(b"cell")


def write_labeled_mat(path: Path, frames: list[tuple[np.ndarray, ...]], scenes: list[str]) -> None:
    """Write frames (rgb, depth, raw_depth, labels) as a MATLAB v7.3 labeled release."""
    import h5py

    n = len(frames)
    h, w = FRAME_SHAPE
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        def dataset(key: str, shape: tuple[int, ...], dtype: str, matlab_class: str):
            ds = f.create_dataset(key, shape=(n, *shape), dtype=dtype,
                                  chunks=(1, *shape), compression="gzip", compression_opts=3)
            ds.attrs["MATLAB_class"] = np.bytes_(matlab_class.encode())
            return ds

        images = dataset("images", (3, w, h), "uint8", "uint8")
        depths = dataset("depths", (w, h), "float32", "single")
        raw_depths = dataset("rawDepths", (w, h), "float32", "single")
        labels = dataset("labels", (w, h), "uint16", "uint16")
        instances = dataset("instances", (w, h), "uint8", "uint8")
        for i, (rgb, depth, raw_depth, label) in enumerate(frames):
            images[i] = rgb.transpose(2, 1, 0)
            depths[i] = depth.T
            raw_depths[i] = raw_depth.T
            labels[i] = label.T
            inst = np.zeros_like(label, dtype=np.uint8)
            for value in np.unique(label[label > 0]):
                inst[label == value] = 1 + int(value) % 250
            instances[i] = inst.T
        accel = f.create_dataset("accelData", data=np.zeros((4, n), dtype=np.float32))
        accel.attrs["MATLAB_class"] = np.bytes_(b"single")
        refs = f.create_group("#refs#")
        names = [f"{NYU40_CLASS_NAMES[int(c) - 1]}_{r + 1}" for r, c in enumerate(_MAP_CLASS)]
        _write_cell(f, refs, "names", names)
        _write_cell(f, refs, "scenes", scenes)
        _write_cell(f, refs, "sceneTypes", [s.rsplit("_", 1)[0] for s in scenes])
        # containers.Map objects live in MATLAB's opaque subsystem: present, never read
        ntoi = f.create_dataset("namesToIds", data=np.array([[3707764736, 2, 1, 1, 1, 1]], dtype=np.uint32))
        ntoi.attrs["MATLAB_class"] = np.bytes_(b"containers.Map")
        ntoi.attrs["MATLAB_object_decode"] = np.int32(3)
    with open(path, "r+b") as fh:
        fh.write(matlab_header())


def write_splits_mat(path: Path, train: np.ndarray, test: np.ndarray) -> None:
    import scipy.io

    scipy.io.savemat(str(path), {
        "trainNdxs": np.asarray(train, dtype=np.uint16).reshape(-1, 1),
        "testNdxs": np.asarray(test, dtype=np.uint16).reshape(-1, 1),
    }, format="5")


def write_class_mapping_mat(path: Path) -> None:
    import scipy.io

    def cell(strings) -> np.ndarray:
        out = np.empty((1, len(strings)), dtype=object)
        for i, s in enumerate(strings):
            out[0, i] = np.array([s])
        return out

    scipy.io.savemat(str(path), {
        "className": cell(NYU40_CLASS_NAMES),
        "mapClass": _MAP_CLASS.reshape(1, -1),
        "mapToNYUSuperClass": (np.arange(40) % 4 + 1).astype(np.uint8).reshape(1, -1),
        "mapToNYUSuperClassMat": np.eye(4, 40, dtype=np.uint8),
        "allClassName": cell([f"raw{r}" for r in range(1, NUM_RAW_CLASSES + 1)]),
    }, format="5")


def write_miniature(folder: Path, *, seed: int = 0, num_frames: int = 8) -> Path:
    """Write the three NYUv2 files into ``folder`` and return it (the ``--source``).

    Frames are split like the real release (interleaved, about 55 % train)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = [render_frame(rng, i) for i in range(num_frames)]
    scenes = [f"{_SCENES[i % len(_SCENES)]}_{i + 1:04d}" for i in range(num_frames)]
    index = np.arange(1, num_frames + 1)
    test = index[index % 3 == 2]
    train = np.setdiff1d(index, test)
    write_labeled_mat(folder / LABELED_MAT, frames, scenes)
    write_splits_mat(folder / SPLITS_MAT, train, test)
    write_class_mapping_mat(folder / CLASS_MAPPING_MAT)
    return folder
