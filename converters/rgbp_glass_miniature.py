"""A miniature RGBP-Glass release: the same folders, names and file encodings as the real one.

Original layout (authors' README; encodings checked on real release files, see
docs/sources.md)::

    RGBP-Glass/LICENSE
    RGBP-Glass/train/{image,aolp,dolp,mask,edge,reflection}/  instances_train.json
    RGBP-Glass/test/{image,aolp,dolp,mask}/                   instances_test.json

- ``image/<id>_rgb.tiff``: 3-channel **16-bit** TIFF, LZW-compressed (so a reader that
  goes through Pillow alone loses the low byte, as it would on the real files);
- ``aolp/<id>_aolp.tiff``, ``dolp/<id>_dolp.tiff``: 3-channel 8-bit LZW TIFFs written in
  **B,G,R** order, as the authors' loader implies; AoLP codes stay ≤ 254 as in the release;
- ``mask/<id>_mask.png``: **1-bit PNG** (PIL mode "1"), glass = 1;
- ``instances_<split>.json``: COCO (``info``, ``licenses``, ``categories`` = one ``glass``,
  ``images`` with ``file_name`` ``<id>_rgb.tiff``, ``annotations`` with polygon
  ``segmentation`` and ``iscrowd`` 0), one polygon per pane. Every frame has a window of
  **panes that share an edge**: connected components of the mask merge them, the JSON
  keeps them apart (as on real frames). Annotation ids do not follow the order the file
  lists them in, so a reader must sort by id to get stable instance ids.

The two ids the authors mark as broken are both in the train split and the train JSON (as
in the release) and their RGB TIFF is truncated, so a converter that reads them instead of
skipping them fails.

The SimCMF repack layout (``layout="pgsnet"``) has ``pgsnet/{train,test}/`` with
``image``, ``aolp``, ``dolp`` and ``instance_mask/<id>_instance_mask.png`` (8-bit grey
instance ids, non-consecutive, one id covering two separate panes), and no JSON.

Frames are 1/4 of the release's 612×512 by default (fast tests); ``full_resolution=True``
writes the real 612×512.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aims.converters.rgbp_glass import (
    BROKEN_IDS,
    FILES,
    GLASS_CATEGORY,
    INSTANCES_JSON,
    REPACK_FOLDER,
    ROOT_FOLDER,
)

FULL_SIZE = (512, 612)  # rows, columns of the release's frames
SMALL_SIZE = (128, 153)

#: 14-digit ids (capture date + sequence number), like the release's; both broken ids are
#: train ids, as in the release's train JSON
TRAIN_IDS = ("20210717001004", "20210717001019", BROKEN_IDS[0], "20210720004031",
             "20210808013064", BROKEN_IDS[1], "20210809002117")
TEST_IDS = ("20210811002204", "20210811002210", "20210812003350", "20210813000008")

#: a pane: (x0, y0, x1, y1) pixel corners; it covers columns x0..x1-1 and rows y0..y1-1
Pane = tuple[int, int, int, int]


def _windows(rng: np.random.Generator, shape: tuple[int, int], index: int) -> list[list[Pane]]:
    """Windows (groups of panes sharing edges) separated by wall. The first window always
    has two side-by-side panes; odd frames get a second window, split top/bottom."""
    h, w = shape
    n_windows = 1 + index % 2
    out = []
    for k in range(n_windows):
        margin = max(3, w // (8 * n_windows))
        x0 = k * w // n_windows + int(rng.integers(2, margin))
        x1 = (k + 1) * w // n_windows - int(rng.integers(2, margin))
        y0, y1 = int(rng.integers(2, h // 3)), int(rng.integers(2 * h // 3, h - 2))
        n_panes = 2 if k == 0 else int(rng.integers(2, 4))
        if k == 0:
            cuts = np.linspace(x0, x1, n_panes + 1).round().astype(int)
            out.append([(int(cuts[j]), y0, int(cuts[j + 1]), y1) for j in range(n_panes)])
        else:
            cuts = np.linspace(y0, y1, n_panes + 1).round().astype(int)
            out.append([(x0, int(cuts[j]), x1, int(cuts[j + 1])) for j in range(n_panes)])
    return out


def synthetic_sample(rng: np.random.Generator, shape: tuple[int, int], index: int = 0) -> dict:
    """RGB (uint16) and AoLP/DoLP (uint8), all R,G,B order, the panes (list of windows of
    :data:`Pane`) and their id map (pane number from 1, 0 = none).

    Panes have a polarization signature different from the wall behind them, so the
    channels are not constant and the statistics are meaningful; the RGB has noise in its
    low byte, so an 8-bit reader is caught."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(0.15, 0.8, size=3)
    rgb = base + 0.12 * np.sin(xx[..., None] / w * np.pi * (1 + np.arange(3))) \
        + rng.normal(0, 0.02, size=(h, w, 3))
    aolp = 128 + 60 * np.cos((xx + yy)[..., None] / (w + h) * 2 * np.pi + np.arange(3))
    dolp = 20 + 10 * rng.random((h, w, 3))
    windows = _windows(rng, shape, index)
    panes = np.zeros((h, w), np.uint8)
    for n, (x0, y0, x1, y1) in enumerate((p for win in windows for p in win), start=1):
        panes[y0:y1, x0:x1] = n
        glass = panes == n
        rgb[glass] = rgb[glass] * 0.6 + 0.25
        aolp[glass] = rng.integers(10, 250, size=3)
        dolp[glass] = rng.integers(120, 240, size=3) + rng.normal(0, 4, size=(int(glass.sum()), 3))
    as8 = lambda a: np.clip(np.rint(a), 0, 254).astype(np.uint8)  # noqa: E731  AoLP ≤ 254
    rgb16 = np.clip(np.rint(rgb * 65535), 0, 65535).astype(np.uint16)
    return {"rgb": rgb16, "aolp": as8(aolp), "dolp": as8(dolp), "windows": windows, "panes": panes}


def _tiff_lzw(path: Path, file_channels: np.ndarray) -> None:
    """A 3-channel LZW TIFF (8- or 16-bit) holding ``file_channels`` in the file's order.
    OpenCV writes it (Pillow cannot write 16-bit colour); it takes BGR, hence the flip."""
    import cv2

    ok, buf = cv2.imencode(".tiff", np.ascontiguousarray(file_channels[:, :, ::-1]),
                           [cv2.IMWRITE_TIFF_COMPRESSION, 5])
    if not ok:  # pragma: no cover - OpenCV fails here only on invalid input
        raise RuntimeError(f"OpenCV could not write {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def _png(path: Path, arr: np.ndarray) -> None:
    """A PNG through Pillow: bool → 1-bit (mode "1"), uint8 → 8-bit grey."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def _polygon(pane: Pane) -> list[float]:
    x0, y0, x1, y1 = pane
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def coco_annotations(windows: list[list[Pane]], image_id: int, first_id: int) -> list[dict]:
    """One COCO polygon annotation per pane; ids from ``first_id``, assigned to the panes
    in reverse spatial order so id order ≠ listing order ≠ left-to-right."""
    panes = [p for win in windows for p in win]
    out = []
    for k, pane in enumerate(panes):
        x0, y0, x1, y1 = pane
        out.append({"id": first_id + len(panes) - 1 - k, "image_id": image_id, "category_id": 1,
                    "segmentation": [_polygon(pane)], "area": float((x1 - x0) * (y1 - y0)),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "iscrowd": 0})
    return out


def _write_sample(split_dir: Path, image_id: str, s: dict, *, layout: str) -> None:
    def path(column: str) -> Path:
        folder, suffix = FILES[column]
        return split_dir / folder / f"{image_id}{suffix}"

    _tiff_lzw(path("rgb"), s["rgb"])
    _tiff_lzw(path("aolp"), s["aolp"][:, :, ::-1])  # written B,G,R like the release
    _tiff_lzw(path("dolp"), s["dolp"][:, :, ::-1])
    if layout == "original":
        _png(path("mask"), s["panes"] > 0)  # 1-bit, glass = 1
    else:
        # instance ids as given by the repack: non-consecutive; with two windows the last
        # pane shares the first pane's id (one instance, two components)
        count = int(s["panes"].max())
        lut = np.array([0] + [3 + 4 * k for k in range(count)], np.uint8)
        if len(s["windows"]) > 1:
            lut[count] = lut[1]
        _png(path("instance_mask"), lut[s["panes"]])
    if image_id in BROKEN_IDS:
        data = path("rgb").read_bytes()
        path("rgb").write_bytes(data[: len(data) // 3])  # truncated, as if broken


def write_split(split_dir: Path, ids: tuple[str, ...], rng: np.random.Generator,
                shape: tuple[int, int], *, layout: str) -> dict:
    """Write one split folder in the release (``original``) or repack (``pgsnet``) layout
    and return its COCO instances (written as ``instances_<split>.json`` for ``original``)."""
    coco = {"info": {"description": "RGBP-Glass miniature (synthetic)", "version": "1.0"},
            "licenses": [], "categories": [{"id": 1, "name": GLASS_CATEGORY,
                                            "supercategory": GLASS_CATEGORY}],
            "images": [], "annotations": []}
    for n, image_id in enumerate(ids):
        s = synthetic_sample(rng, shape, n)
        _write_sample(split_dir, image_id, s, layout=layout)
        coco["images"].append({"id": n + 1, "file_name": f"{image_id}{FILES['rgb'][1]}",
                               "height": shape[0], "width": shape[1]})
        coco["annotations"] += coco_annotations(s["windows"], n + 1, len(coco["annotations"]) + 1)
    # listed in an order unrelated to the ids
    coco["annotations"] = [coco["annotations"][k] for k in rng.permutation(len(coco["annotations"]))]
    if layout == "original":
        name = INSTANCES_JSON.format(split=split_dir.name)
        (split_dir / name).write_text(json.dumps(coco), encoding="utf-8")
        if split_dir.name == "train":
            for extra in ("edge", "reflection"):
                for image_id in ids:
                    _png(split_dir / extra / f"{image_id}_{extra}.png", np.zeros(shape, np.uint8))
    return coco


def write_miniature(folder: Path, *, seed: int = 0, full_resolution: bool = False,
                    layout: str = "original") -> Path:
    """Write a miniature RGBP-Glass (``layout="original"``: ``RGBP-Glass/``) or its
    SimCMF repack (``layout="pgsnet"``: ``pgsnet/``) into ``folder``; return ``folder``
    (the ``--source``)."""
    if layout not in ("original", "pgsnet"):
        raise ValueError(f"layout must be 'original' or 'pgsnet', got {layout!r}")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    shape = FULL_SIZE if full_resolution else SMALL_SIZE
    root = folder / (ROOT_FOLDER if layout == "original" else REPACK_FOLDER)
    for split, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        write_split(root / split, ids, rng, shape, layout=layout)
    if layout == "original":
        (root / "LICENSE").write_text("RGBP-Glass miniature (synthetic). The real dataset is for "
                                      "non-commercial research use only.\n")
    return folder
