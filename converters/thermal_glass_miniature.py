"""A miniature RGB-T Glass release with the real folder layout and file kinds.

Original (``layout="original"``)::

    RGB-T-glass/{train,test}/<scene>/<image_id>/{rgb.png, temperature.npy, mask.png, boundary.png}

``rgb.png`` 8-bit RGB PNG, ``temperature.npy`` float64 °C (rows, cols) saved with
``np.save``, ``mask.png``/``boundary.png`` 0/255 8-bit grey PNGs. Entries with "." that
are not samples are included (``train/.DS_Store``, ``train/<scene>/notes.txt`` and a full
sample copy in ``test/<scene>/<id>.bak/``) so the converter's rule is exercised.

SimCMF repack (``layout="simcmf"``)::

    RGB-Thermal-Glass/RGB_T_Glass_{train,test}_GroundTruth.csv   (GBK, pandas header)
    RGB-Thermal-Glass/{train,test}/<scene>/<image_id>/{rgb.png, temperature.npy}
    RGB-Thermal-Glass/instance_mask/{train,test}/<scene>_<image_id>.png  (8-bit ids)

The CSV paths start with ``data/RGB-Thermal-Glass/`` as seen from the reference code's
working directory; the header holds Chinese text so the file is not valid UTF-8. Where
the repack keeps its instance masks is not documented: the CSV says, so any place works.

Default size is 1/8 of the camera's 640×480; ``full_resolution=True`` writes 640×480.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aims.converters.thermal_glass import CSV_NAMES, REPACK_FOLDER, ROOT_FOLDER

FULL_SIZE = (480, 640)
SMALL_SIZE = (60, 80)

#: (split, scene, image ids): test scenes are real names, ids 4 letters + 4 digits
SAMPLES = (
    ("train", "campus1", ("ABCD0001", "ABCD0002", "ABCD0003")),
    ("train", "library1", ("LBRY0101", "LBRY0102")),
    ("test", "agricultural", ("AGRI1825", "AGRI1826")),
    ("test", "tory_noglass", ("TORY0007",)),
)


def synthetic_sample(rng: np.random.Generator, shape: tuple[int, int], *,
                     glass: bool = True) -> dict[str, np.ndarray]:
    """RGB, temperature (°C, float64) and a pane id map (0 = no glass)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ambient = rng.uniform(20.0, 26.0)
    temperature = ambient + 2.0 * np.sin(xx / w * np.pi) + 0.5 * yy / h + rng.normal(0, 0.05, (h, w))
    rgb = rng.integers(60, 190, size=3) + 25 * np.cos(yy[..., None] / h * np.pi * (1 + np.arange(3)))
    panes = np.zeros((h, w), np.uint8)
    n = int(rng.integers(1, 3)) if glass else 0
    for k in range(n):
        x0 = int(k * w / n + rng.integers(2, max(3, w // 8)))
        x1 = int((k + 1) * w / n - rng.integers(2, max(3, w // 8)))
        y0, y1 = int(rng.integers(2, h // 3)), int(rng.integers(2 * h // 3, h - 2))
        panes[y0:y1, x0:x1] = k + 1
        pane = panes == k + 1
        temperature[pane] = ambient + rng.uniform(2.0, 6.0) + rng.normal(0, 0.01, int(pane.sum()))
        rgb[pane] = rgb[pane] * 0.5 + 100
    return {"rgb": np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
            "temperature": temperature.astype(np.float64), "panes": panes}


def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def _boundary(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return np.where(mask & ~inner, 255, 0).astype(np.uint8)


def write_miniature(folder: Path, *, seed: int = 0, full_resolution: bool = False,
                    layout: str = "original") -> Path:
    """Write the miniature into ``folder`` and return ``folder`` (the ``--source``)."""
    if layout not in ("original", "simcmf", "simcmf-csv"):
        raise ValueError(f"layout must be 'original' or 'simcmf', got {layout!r}")
    repack = layout != "original"
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    shape = FULL_SIZE if full_resolution else SMALL_SIZE
    root = folder / (REPACK_FOLDER if repack else ROOT_FOLDER)
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for split, scene, ids in SAMPLES:
        for image_id in ids:
            s = synthetic_sample(rng, shape, glass="noglass" not in scene)
            sample_dir = root / split / scene / image_id
            _png(sample_dir / "rgb.png", s["rgb"])
            np.save(sample_dir / "temperature.npy", s["temperature"])
            if repack:
                rel = f"instance_mask/{split}/{scene}_{image_id}.png"
                _png(root / rel, np.array([0, 2, 5], np.uint8)[s["panes"]])
                rows[split].append((f"data/{REPACK_FOLDER}/{split}/{scene}/{image_id}/rgb.png",
                                    f"data/{REPACK_FOLDER}/{rel}"))
            else:
                mask = s["panes"] > 0
                _png(sample_dir / "mask.png", np.where(mask, 255, 0).astype(np.uint8))
                _png(sample_dir / "boundary.png", _boundary(mask))
    if repack:
        for split, listed in rows.items():
            lines = [",图像,掩码"] + [f"{i},{rgb},{mask}" for i, (rgb, mask) in enumerate(listed)]
            (root / CSV_NAMES[split]).write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    else:
        # entries with "." are not samples (the authors' loader skips them)
        (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (root / "train" / "campus1" / "notes.txt").write_text("captured with a FLIR camera\n")
        split, scene, ids = SAMPLES[2]
        backup = root / split / scene / f"{ids[0]}.bak"
        backup.mkdir()
        for f in (root / split / scene / ids[0]).iterdir():
            (backup / f.name).write_bytes(f.read_bytes())
    return folder
