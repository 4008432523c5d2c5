"""A miniature RGBP-Glass release: the same folders, names and file kinds as the real one.

Original layout (authors' README)::

    RGBP-Glass/LICENSE
    RGBP-Glass/train/{image,aolp,dolp,mask,edge,reflection}/  instances_train.json
    RGBP-Glass/test/{image,aolp,dolp,mask}/                   instances_test.json

``image/<id>_rgb.tiff``, ``aolp/<id>_aolp.tiff``, ``dolp/<id>_dolp.tiff`` are uncompressed
3-channel 8-bit TIFFs; AoLP and DoLP are written in **B,G,R** order, as the authors'
loader implies; masks are 0/255 PNGs, some 8-bit grey and some RGB (both occur in the
wild). The SimCMF repack layout (``layout="pgsnet"``) has ``pgsnet/{train,test}/`` with
``image``, ``aolp``, ``dolp`` and ``instance_mask/<id>_instance_mask.png`` (8-bit grey
instance ids, non-consecutive, one id covering two separate panes).

The two ids the authors mark as broken are present and their RGB TIFF is truncated, so a
converter that reads them instead of skipping them fails. Images are 1/8 of the camera's
1224×1024 by default (fast tests); ``full_resolution=True`` writes the real size for
benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aims.converters.rgbp_glass import BROKEN_IDS, FILES, REPACK_FOLDER, ROOT_FOLDER

FULL_SIZE = (1024, 1224)  # rows, columns of the LUCID polarization camera
SMALL_SIZE = (128, 153)

#: 14-digit ids (capture date + sequence number), like the release's
TRAIN_IDS = ("20210717001004", "20210717001019", "20210720004031", "20210808013064",
             BROKEN_IDS[0], "20210809002117")
TEST_IDS = ("20210811002204", BROKEN_IDS[1], "20210812003350", "20210813000008")


def synthetic_sample(rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """RGB, AoLP and DoLP (R,G,B order, uint8) and a glass-pane id map (0 = none).

    Glass panes are rectangles with a polarization signature different from the wall
    behind them, so the channels are not constant and the statistics are meaningful."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.integers(40, 200, size=3)
    rgb = base + 30 * np.sin(xx[..., None] / w * np.pi * (1 + np.arange(3))) \
        + rng.normal(0, 5, size=(h, w, 3))
    aolp = 128 + 60 * np.cos((xx + yy)[..., None] / (w + h) * 2 * np.pi + np.arange(3))
    dolp = 20 + 10 * rng.random((h, w, 3))
    panes = np.zeros((h, w), np.uint8)
    n = int(rng.integers(1, 4))
    for k in range(n):
        x0 = int((k / n) * w + rng.integers(2, max(3, w // (4 * n))))
        x1 = int(((k + 1) / n) * w - rng.integers(2, max(3, w // (4 * n))))
        y0, y1 = int(rng.integers(2, h // 3)), int(rng.integers(2 * h // 3, h - 2))
        panes[y0:y1, x0:x1] = k + 1
        glass = panes == k + 1
        rgb[glass] = rgb[glass] * 0.6 + 70
        aolp[glass] = rng.integers(10, 250, size=3)
        dolp[glass] = rng.integers(120, 240, size=3) + rng.normal(0, 4, size=(int(glass.sum()), 3))
    as8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return {"rgb": as8(rgb), "aolp": as8(aolp), "dolp": as8(dolp), "panes": panes}


def _tiff(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="RGB").save(path, format="TIFF")


def _png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def write_split(split_dir: Path, ids: tuple[str, ...], rng: np.random.Generator,
                shape: tuple[int, int], *, layout: str) -> None:
    """Write one split folder in the release (``original``) or repack (``pgsnet``) layout."""
    for n, image_id in enumerate(ids):
        s = synthetic_sample(rng, shape)

        def path(column: str) -> Path:
            folder, suffix = FILES[column]
            return split_dir / folder / f"{image_id}{suffix}"

        _tiff(path("rgb"), s["rgb"])
        _tiff(path("aolp"), s["aolp"][:, :, ::-1])  # written B,G,R like the release
        _tiff(path("dolp"), s["dolp"][:, :, ::-1])
        if layout == "original":
            mask = np.where(s["panes"] > 0, 255, 0).astype(np.uint8)
            _png(path("mask"), np.repeat(mask[..., None], 3, axis=2) if n % 2 else mask)
        else:
            # instance ids as given by the repack: non-consecutive, pane 1 and the last
            # pane share an id when there are 3 (one instance, two components)
            lut = np.array([0, 3, 7, 3], np.uint8)
            _png(path("instance_mask"), lut[s["panes"]])
        if image_id in BROKEN_IDS:
            data = path("rgb").read_bytes()
            path("rgb").write_bytes(data[: len(data) // 3])  # truncated, as if broken
    if layout == "original" and split_dir.name == "train":
        for extra in ("edge", "reflection"):
            (split_dir / extra).mkdir(exist_ok=True)
            for image_id in ids:
                _png(split_dir / extra / f"{image_id}_{extra}.png", np.zeros(shape, np.uint8))


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
            coco = {"images": [{"id": i, "file_name": f"{image_id}_rgb.tiff", "height": shape[0],
                                "width": shape[1]} for i, image_id in enumerate(ids)],
                    "annotations": [], "categories": [{"id": 1, "name": "glass"}]}
            (root / split / f"instances_{split}.json").write_text(json.dumps(coco))
    if layout == "original":
        (root / "LICENSE").write_text("RGBP-Glass miniature (synthetic). The real dataset is for "
                                      "non-commercial research use only.\n")
    return folder
