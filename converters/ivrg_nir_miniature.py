"""A miniature IVRG-NIR source: the SimCMF repack ``IVRG_RGBNIR`` and ``nirscene1.zip``.

What is reproduced exactly (docs/release-evidence.md §1–2, ../shared/docs/sources.md):

* the repack's GBK-encoded CSV files as ``pandas.to_csv`` writes them (header line, index
  column 0, NIR path in column 1, mask path in column 2, both relative to
  ``Outdoor_dataset/``), ``NIRimages``/``RGBimages`` folders with ``_nir``/``_rgb`` in the
  names, ``.JPG`` images, region-id PNG masks with 0 = background;
* ``nirscene1.zip`` as a real zip of ``nirscene1/<category>/<NNNN>_{rgb,nir}.tiff``:
  uncompressed 8-bit TIFFs (RGB 3-channel, NIR mode L), 1024 wide and 668–680 high with
  ``full_resolution``; by default 1/8 of that (128 × 83–85) for fast tests, same layout.

What is assumed (the repack's file list is not public): the repack's frames are JPEG
copies of nirscene1 frames on the same pixel grid, so the converter's content match
succeeds; their names are opaque (``NIRimages/IMG_<k>_nir.JPG``, in shuffled order) and do
**not** carry nirscene1's category or number, since no evidence says they do; nirscene1
holds pairs the repack does not label (the real one has 477); masks sit in a folder with a
non-ASCII name (``标注``, "annotation"), which exercises the GBK decoding.

The scenes are synthetic (sky, ground, vegetation and building blobs) with NIR brighter on
vegetation, like real NIR; each region id is one region, some disconnected.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from aims.converters.ivrg_nir import (
    CATEGORIES,
    IMAGES_SUBFOLDER,
    NIRSCENE_HEIGHTS,
    NIRSCENE_WIDTH,
    NIRSCENE_ZIP,
    REPACK_FOLDER,
    SPLIT_CSV,
)

MASK_FOLDER = "标注"  # "annotation": a non-ASCII path component, GBK-encodable
#: default frames are this fraction of nirscene1's size (fast tests, same layout)
SMALL_FACTOR = 8
#: quality of the repack's JPEG copies (the real one is unknown)
JPEG_QUALITY = 95
#: nirscene1 pairs the repack does not label
EXTRA_ORIGINALS = 2


def render_scene(rng: np.random.Generator, shape: tuple[int, int]):
    """RGB uint8 (H,W,3), NIR uint8 (H,W), region ids uint16 (H,W)."""
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
    nir = np.clip((lut_nir[ids] * shade + rng.normal(0, 0.02, (h, w))) * 255, 0, 255)
    return rgb.astype(np.uint8), nir.astype(np.uint8), ids


def tiff_bytes(arr: np.ndarray) -> bytes:
    """An uncompressed 8-bit TIFF, as nirscene1 ships (ImageMagick, no compression)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF", compression="raw")
    return buf.getvalue()


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """``pandas.DataFrame.to_csv`` layout, GBK-encoded, as the repack ships it."""
    lines = [",nir,mask"] + [f"{i},{nir},{mask}" for i, (nir, mask) in enumerate(rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk"))


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    """A zip with folder entries and fixed dates, laid out like ``nirscene1.zip``."""
    folders = sorted({name.rsplit("/", 1)[0] + "/" for name in members} | {"nirscene1/"})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in folders:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2011, 3, 1, 0, 0, 0)), b"")
        for name, data in sorted(members.items()):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2011, 3, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class Pair:
    """One nirscene1 pair of the miniature, with the region ids the repack gives it."""

    key: str  # <category>/<NNNN>
    rgb: np.ndarray
    nir: np.ndarray
    ids: np.ndarray


def frame_shape(rng: np.random.Generator, full_resolution: bool) -> tuple[int, int]:
    """nirscene1's geometry: 1024 wide, 668–680 high (or both / SMALL_FACTOR)."""
    h = int(rng.integers(NIRSCENE_HEIGHTS[0], NIRSCENE_HEIGHTS[1] + 1))
    if full_resolution:
        return h, NIRSCENE_WIDTH
    return h // SMALL_FACTOR, NIRSCENE_WIDTH // SMALL_FACTOR


def make_pairs(rng: np.random.Generator, count: int, full_resolution: bool) -> list[Pair]:
    """``count`` nirscene1 pairs, named as released (``country/0001``, ``field/0001``…)."""
    pairs = []
    for i in range(count):
        key = f"{CATEGORIES[i % len(CATEGORIES)]}/{1 + i // len(CATEGORIES):04d}"
        pairs.append(Pair(key, *render_scene(rng, frame_shape(rng, full_resolution))))
    return pairs


def write_repack(repack: Path, labelled: list[Pair]) -> dict[str, str]:
    """The repack: JPEG copies of ``labelled`` under opaque names, masks, CSVs. Returns
    repack NIR path → nirscene1 key (what the content match must find)."""
    base = repack / IMAGES_SUBFOLDER
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    truth = {}
    for k, pair in enumerate(labelled, start=1):
        nir_rel = f"NIRimages/IMG_{k:04d}_nir.JPG"
        rgb_rel = f"RGBimages/IMG_{k:04d}_rgb.JPG"
        mask_rel = f"{MASK_FOLDER}/IMG_{k:04d}_nir.png"
        for rel in (nir_rel, rgb_rel, mask_rel):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pair.nir, "L").save(base / nir_rel, format="JPEG", quality=JPEG_QUALITY)
        Image.fromarray(pair.rgb, "RGB").save(base / rgb_rel, format="JPEG", quality=JPEG_QUALITY)
        Image.fromarray(pair.ids).save(base / mask_rel, format="PNG")  # 16-bit grey (I;16)
        rows["test" if k % 3 == 2 else "train"].append((nir_rel, mask_rel))
        truth[nir_rel] = pair.key
    for split, split_rows in rows.items():
        write_csv(repack / SPLIT_CSV[split], split_rows)
    return truth


def miniature_pairs(*, seed: int = 0, full_resolution: bool = False,
                    num_images: int | None = None,
                    extra_originals: int = EXTRA_ORIGINALS) -> tuple[list[Pair], list[Pair]]:
    """(every nirscene1 pair, the labelled ones in repack order): deterministic in the
    arguments, so tests can know which original each repack frame copies."""
    rng = np.random.default_rng(seed)
    n = num_images or (12 if full_resolution else 6)
    pairs = make_pairs(rng, n + extra_originals, full_resolution)
    return pairs, [pairs[i] for i in rng.permutation(len(pairs))[:n]]


def write_miniature(folder: Path, *, seed: int = 0, full_resolution: bool = False,
                    num_images: int | None = None, with_nirscene: bool = True,
                    extra_originals: int = EXTRA_ORIGINALS) -> Path:
    """Write ``<folder>/IVRG_RGBNIR/`` (the repack: ``num_images`` frames, every third a
    test frame) and ``<folder>/nirscene1.zip`` (those frames' lossless originals plus
    ``extra_originals`` unlabelled pairs); return ``folder``, the ``--source`` (the
    converter finds both in it)."""
    folder = Path(folder)
    pairs, labelled = miniature_pairs(seed=seed, full_resolution=full_resolution,
                                      num_images=num_images, extra_originals=extra_originals)
    write_repack(folder / REPACK_FOLDER, labelled)
    if with_nirscene:
        members = {}
        for pair in pairs:
            members[f"nirscene1/{pair.key}_rgb.tiff"] = tiff_bytes(pair.rgb)
            members[f"nirscene1/{pair.key}_nir.tiff"] = tiff_bytes(pair.nir)
        write_zip(folder / NIRSCENE_ZIP, members)
    return folder


def repack_truth(**kwargs: object) -> dict[str, str]:
    """Repack NIR path → the nirscene1 key it copies, for the miniature written with the
    same keyword arguments (those of :func:`miniature_pairs`): what a correct content match
    must find."""
    _, labelled = miniature_pairs(**kwargs)  # type: ignore[arg-type]
    return {f"NIRimages/IMG_{k:04d}_nir.JPG": p.key for k, p in enumerate(labelled, start=1)}
