"""A miniature IVRG-NIR source: the SimCMF repack ``IVRG_RGBNIR`` and ``nirscene1.zip``.

What is reproduced exactly: the repack's GBK-encoded CSV files as ``pandas.to_csv`` writes
them (header line, index column 0, NIR path in column 1, mask path in column 2, both
relative to ``Outdoor_dataset/``), ``NIRimages``/``RGBimages`` folders with ``_nir``/``_rgb``
in the names, ``.JPG`` images, 16-bit region-id PNG masks with 0 = background; and
``nirscene1.zip`` as a real zip archive of ``nirscene1/<category>/<NNNN>_{rgb,nir}.tiff``
(RGB 8-bit 3-channel TIFF, NIR single-channel TIFF, 8-bit by default).

What is assumed (the repack's inner naming is not published): the images and masks keep
nirscene1's category folder and number (``NIRimages/<category>/<NNNN>_nir.JPG``), and the
masks sit in a folder with a non-ASCII name (``标注``, "annotation"), which exercises the
GBK decoding. The converter only relies on the documented rules, so other names work.

The scenes are synthetic (sky, ground, vegetation and building blobs) with NIR brighter on
vegetation, like real NIR; each region id is one region, some disconnected.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from aims.converters.ivrg_nir import (
    CATEGORIES,
    IMAGES_SUBFOLDER,
    NIRSCENE_ZIP,
    REPACK_FOLDER,
    SPLIT_CSV,
)

MASK_FOLDER = "标注"  # "annotation": a non-ASCII path component, GBK-encodable


def render_scene(rng: np.random.Generator, shape: tuple[int, int], nir_bits: int = 8):
    """RGB uint8 (H,W,3), NIR uint8/uint16 (H,W), region ids uint16 (H,W)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(h * rng.uniform(0.3, 0.55))
    ids = np.where(yy < horizon, 1, 2).astype(np.uint16)  # sky, ground
    colours = {1: (120, 170, 230), 2: (110, 100, 70)}
    nir_level = {1: 0.35, 2: 0.45}
    next_id = 3
    for _ in range(int(rng.integers(3, 6))):
        kind = int(rng.integers(0, 2))  # 0 vegetation, 1 building
        parts = 2 if rng.random() < 0.3 else 1  # some regions are disconnected
        for _ in range(parts):
            cy, cx = rng.uniform(0.35, 0.9) * h, rng.uniform(0.1, 0.9) * w
            ry, rx = rng.uniform(0.06, 0.16) * h, rng.uniform(0.05, 0.14) * w
            if kind == 0:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            ids[inside] = next_id
        colours[next_id] = (40, 130, 50) if kind == 0 else tuple(int(c) for c in rng.integers(90, 200, 3))
        nir_level[next_id] = 0.85 if kind == 0 else 0.4
        next_id += 1
    # a thin unlabelled border, like hand annotation leaves
    ids[:2], ids[-2:], ids[:, :2], ids[:, -2:] = 0, 0, 0, 0
    lut_rgb = np.zeros((next_id, 3))
    lut_nir = np.zeros(next_id)
    for k, c in colours.items():
        lut_rgb[k] = c
        lut_nir[k] = nir_level[k]
    lut_rgb[0], lut_nir[0] = (60, 60, 60), 0.3
    shade = 0.8 + 0.2 * np.sin(xx / max(w, 1) * 6.0 + yy / max(h, 1) * 3.0)
    rgb = np.clip(lut_rgb[ids] * shade[..., None] + rng.normal(0, 5, (h, w, 3)), 0, 255)
    top = 255 if nir_bits == 8 else 65535
    nir = np.clip((lut_nir[ids] * shade + rng.normal(0, 0.02, (h, w))) * top, 0, top)
    return (rgb.astype(np.uint8), nir.astype(np.uint8 if nir_bits == 8 else np.uint16), ids)


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """``pandas.DataFrame.to_csv`` layout, GBK-encoded, as the repack ships it."""
    lines = [",nir,mask"] + [f"{i},{nir},{mask}" for i, (nir, mask) in enumerate(rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk"))


def write_miniature(folder: Path, *, seed: int = 0, full_resolution: bool = False,
                    num_images: int | None = None, with_nirscene: bool = True,
                    nir_bits: int = 8) -> Path:
    """Write ``<folder>/IVRG_RGBNIR/`` (the repack) and ``<folder>/nirscene1.zip`` and
    return ``folder`` (the ``--source``: the converter finds both in it).

    Small images (about 96×128) by default; ``full_resolution=True`` writes about
    1024×768 like the real release, for benchmarks. Every third image is a test image."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    n = num_images or (12 if full_resolution else 6)
    repack = folder / REPACK_FOLDER
    base = repack / IMAGES_SUBFOLDER
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    zip_members: list[tuple[str, bytes]] = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        number = 1 + i // len(CATEGORIES) + 10 * (i % 3)
        if full_resolution:
            shape = (768 - 8 * int(rng.integers(0, 3)), 1024)  # sizes vary in the release
        else:
            shape = (96 + 4 * int(rng.integers(0, 3)), 128)
        rgb, nir, ids = render_scene(rng, shape, nir_bits)
        stem = f"{number:04d}"
        nir_rel = f"NIRimages/{category}/{stem}_nir.JPG"
        rgb_rel = f"RGBimages/{category}/{stem}_rgb.JPG"
        mask_rel = f"{MASK_FOLDER}/{category}/{stem}_nir.png"
        for rel in (nir_rel, rgb_rel, mask_rel):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
        nir8 = nir if nir.dtype == np.uint8 else (nir >> 8).astype(np.uint8)
        Image.fromarray(nir8, "L").save(base / nir_rel, format="JPEG", quality=95)
        Image.fromarray(rgb, "RGB").save(base / rgb_rel, format="JPEG", quality=95)
        Image.fromarray(ids).save(base / mask_rel, format="PNG")  # 16-bit grey (I;16)
        rows["test" if i % 3 == 1 else "train"].append((nir_rel, mask_rel))
        zip_members.append((f"nirscene1/{category}/{stem}_rgb.tiff", _tiff(rgb)))
        zip_members.append((f"nirscene1/{category}/{stem}_nir.tiff", _tiff(nir)))
    for split, split_rows in rows.items():
        write_csv(repack / SPLIT_CSV[split], split_rows)
    if with_nirscene:
        with zipfile.ZipFile(folder / NIRSCENE_ZIP, "w", compression=zipfile.ZIP_DEFLATED,
                             compresslevel=1) as zf:
            for name in ["nirscene1/", *sorted({m.rsplit("/", 1)[0] + "/" for m, _ in zip_members})]:
                zf.writestr(zipfile.ZipInfo(name, date_time=(2011, 3, 1, 0, 0, 0)), b"")
            for name, data in sorted(zip_members):
                zf.writestr(zipfile.ZipInfo(name, date_time=(2011, 3, 1, 0, 0, 0)), data,
                            compress_type=zipfile.ZIP_DEFLATED)
    return folder
