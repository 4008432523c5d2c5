"""IVRG-NIR → config ``nir``: the SimCMF repack's region labels on the repack's own images,
and nirscene1's lossless TIFFs only where a content check proves they are the same frames.

Evidence relied on (docs/release-evidence.md, "IVRG-NIR repack" in §1 and all of §2;
../shared/docs/sources.md, "IVRG-NIR"):

* The only known segmentation labels are in the SimCMF repack ``IVRG_RGBNIR`` (OneDrive,
  manual download): ``IVRG-nir_{train,test}_GroundTruth.csv`` (GBK, written by pandas:
  header line, column 0 an index, column 1 the NIR image path, column 2 the mask path, both
  relative to ``<root>/Outdoor_dataset/``). RGB path = NIR path with ``NIRimages``→
  ``RGBimages`` and ``_nir``→``_rgb`` (every occurrence). Images are JPEG (``.JPG``); the
  reference opens NIR with Pillow ``convert('L')`` and masks with ``convert('I')``
  (SimCMF@0cdc5c1 ``dataset.py`` l.1309-1377).
* **Provenance is not proven.** Nothing in SimCMF's code or any public page names
  nirscene1 categories or numbers; the layout (``Outdoor_dataset``, JPEG) points rather to
  the outdoor part of Salamati et al.'s hand-segmented RGB-NIR database (arXiv 1406.6147),
  whose file list is not public. Matching repack frames to nirscene1 by (category, number),
  as this converter used to, has no support.
* nirscene1 (``nirscene1/<category>/<NNNN>_{rgb,nir}.tiff``, 477 pairs) holds uncompressed
  8-bit TIFFs (RGB 3-channel, NIR single channel), 1024 wide and 668–680 high.

Hence the rule implemented here:

* The repack's JPEGs are the images by default: the labels are defined on their pixels,
  and they are exactly what SimCMF trained and scored on. The card says so.
* nirscene1 (``nirscene1.zip`` or its folder, e.g. a second ``--source``) replaces a repack
  frame only when the NIR content proves it is the same frame on the same pixel grid: same
  width × height, mean absolute difference to the repack's NIR ≤ :data:`MATCH_MAD` grey
  levels (what JPEG compression explains), and a unique best candidate (the next one is
  above the threshold and at least :data:`SEPARATION` times worse). Candidates are compared
  as area-averaged thumbnails first: a thumbnail's mean absolute difference is a lower
  bound of the full-resolution one, so pruning on it never drops a true match.
* When nirscene1 is given and any repack frame has no proven match, nothing is converted:
  an :class:`~aims.errors.AimsError` lists the frames that did not match and why (no frame
  of that size; the best candidate and its score; two candidates equally good), and says
  how to go on with the repack's JPEGs (the same command without nirscene1). nirscene1 is
  never downloaded automatically: 952 MB for a substitution that may not apply.

Labels: each region id of a mask is one instance (docs/protocol.md); disconnected parts
of one id stay one instance. The repack gives no class names: every region has class 1
``region``. Palette masks keep their indices as region ids; because SimCMF's
``convert('I')`` reads a palette mask as the *luma of the palette colour*, masks where
that groups pixels differently (two indices of equal luma, or background disagreeing)
are counted and named in the card (release-evidence §1, "convert('I') on a palette").
"""

from __future__ import annotations

import csv
import io
import re
import shlex
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from aims.converters.base import (
    ConfigDescription,
    Downloader,
    Sample,
    SampleStream,
    Skipped,
    SourceConverter,
    SourceInfo,
)
from aims.errors import AimsError, SourceFormatError

#: the nine scene categories of nirscene1, folder names as released
CATEGORIES = ("country", "field", "forest", "indoor", "mountain", "oldbuilding", "street",
              "urban", "water")

SPLIT_CSV = {"train": "IVRG-nir_train_GroundTruth.csv", "test": "IVRG-nir_test_GroundTruth.csv"}
REPACK_FOLDER = "IVRG_RGBNIR"
IMAGES_SUBFOLDER = "Outdoor_dataset"
NIRSCENE_ZIP = "nirscene1.zip"
NIRSCENE_DIR = "nirscene1"
NIRSCENE_URL = "https://ivrlwww.epfl.ch/supplementary_material/cvpr11/nirscene1.zip"
SIMCMF_README = "https://github.com/mt-cly/SimCMF"

CSV_ENCODING = "gbk"

#: nirscene1's real frame geometry (checked on release files, sources.md)
NIRSCENE_WIDTH = 1024
NIRSCENE_HEIGHTS = (668, 680)

#: largest mean |repack NIR − TIFF NIR| (grey levels) accepted as "the same frame": JPEG
#: compression of the same 8-bit frame stays well below it on natural images
MATCH_MAD = 4.0
#: the second-best candidate must score at least this many times the best one
SEPARATION = 2.0
#: thumbnail width for the first, cheap comparison
THUMB_WIDTH = 64
#: unmatched frames listed in a refusal (the rest are counted)
MAX_LISTED = 20

CITATION = """@inproceedings{brown2011multispectral,
  title     = {Multi-spectral {SIFT} for Scene Category Recognition},
  author    = {Brown, Matthew and S{\\\"u}sstrunk, Sabine},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2011}
}
@article{lei2024simcmf,
  title   = {{SimCMF}: A Simple Cross-modal Fine-tuning Strategy from Vision Foundation Models to Any Imaging Modality},
  author  = {Lei, Chenyang and Chen, Liyi and Cen, Jun and Chen, Xiao and Lei, Zhen and Heide, Felix and Chen, Qifeng and Zhang, Zhaoxiang},
  journal = {arXiv preprint arXiv:2411.18669},
  year    = {2024}
}"""


def source_files() -> dict[str, object]:
    """The repack (manual: OneDrive needs a browser) and, for reference, nirscene1 (never
    fetched automatically: it may replace repack frames only after a content match)."""
    from aims.fetch import SourceFile

    return {
        NIRSCENE_ZIP: SourceFile(name=NIRSCENE_ZIP, url=NIRSCENE_URL, known_hash=None),
        REPACK_FOLDER: SourceFile(
            name=REPACK_FOLDER,
            url=None,
            known_hash=None,
            manual=(
                f"the labels exist only in the SimCMF repack: open the OneDrive link in the "
                f"README of {SIMCMF_README}, download the folder {REPACK_FOLDER} (about 1.0 GB; "
                f"OneDrive delivers it as {REPACK_FOLDER}.zip) and extract it"
            ),
        ),
    }


# --------------------------------------------------------------------------- decoding


class _Unreadable(Exception):
    """A single sample's file is corrupt: the sample is skipped and counted."""


def read_file_image(path: Path, what: str) -> np.ndarray:
    """A repack image file's pixels as stored (:func:`aims.imageio.read_image`), or
    :class:`_Unreadable` naming the file: one corrupt file skips one sample."""
    from aims.imageio import read_image

    try:
        return read_image(path)
    except FileNotFoundError:
        raise _Unreadable(f"{path} does not exist ({what})") from None
    except ValueError as exc:
        raise _Unreadable(f"{path} cannot be decoded as {what} ({exc})") from None


def decode_tiff8(data: bytes, what: str, channels: int) -> np.ndarray:
    """An 8-bit TIFF with ``channels`` channels from its bytes (nirscene1 is read inside
    its zip, so there is no file path), refusing anything else: nirscene1's TIFFs are
    8-bit, and a 16-bit one would be silently cut to 8 bits by Pillow."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as img:
            bits = tuple(img.tag_v2.get(258, (8,))) if img.format == "TIFF" else ()
            if img.format != "TIFF" or img.mode != mode or set(bits) != {8}:
                raise _Unreadable(
                    f"{what} is a {img.format} {img.mode} image with {bits or '?'} bits per "
                    f"sample; nirscene1 has {channels}-channel 8-bit TIFFs here")
            img.load()
            return np.array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"{what} cannot be decoded ({exc})") from None


def nir_channel(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """One NIR channel: grey stays as is; a 3-channel NIR JPEG (some tools save grey as
    RGB) becomes Pillow's ``convert('L')`` luma, as the reference loader does. Returns the
    channel and whether a colour image had to be converted."""
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return arr, False
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
            return np.ascontiguousarray(arr[:, :, 0]), False
        r, g, b = (arr[:, :, i].astype(np.uint32) for i in range(3))
        # Pillow's ITU-R 601-2 luma: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8), True
    raise _Unreadable(f"expected an 8-bit NIR image, got {arr.dtype} {arr.shape}")


def read_repack_nir(path: Path) -> tuple[np.ndarray, bool]:
    """The repack's NIR JPEG as SimCMF sees it (8-bit grey; colour → Pillow luma)."""
    return nir_channel(read_file_image(path, "a NIR JPEG"))


def check_rgb8(arr: np.ndarray, what: str) -> np.ndarray:
    """Check an RGB image is 3-channel 8-bit: SimCMF concatenates it with the NIR channel."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise _Unreadable(f"{what}: expected 8-bit RGB, found {arr.dtype} {arr.shape}")
    return arr


def palette_disagreement(indices: np.ndarray, luma: np.ndarray) -> str | None:
    """Why SimCMF's ``convert('I')`` (palette luma) groups a palette mask's pixels
    differently from its indices, or None when both give the same regions."""
    pairs = np.unique(indices.astype(np.int64) * 65536 + luma.astype(np.int64))
    idx, lum = pairs // 65536, pairs % 65536
    merged = [int(v) for v in np.unique(lum) if v != 0 and np.count_nonzero(lum == v) > 1]
    lost = sorted(int(i) for i, v in zip(idx, lum) if i != 0 and v == 0)
    gained = sorted(int(i) for i, v in zip(idx, lum) if i == 0 and v != 0)
    reasons = []
    if merged:
        reasons.append("indices " + "; ".join(
            "+".join(str(int(i)) for i in idx[lum == v]) for v in merged) + " share a luma (merged)")
    if lost:
        reasons.append(f"indices {lost} have a black colour (background to SimCMF)")
    if gained:
        reasons.append("index 0 has a non-black colour (a region to SimCMF)")
    return ", ".join(reasons) or None


def read_region_mask(path: Path) -> tuple[np.ndarray, str | None]:
    """A region-id mask as (H, W) uint16, plus how SimCMF's palette reading would differ
    (None when it would not, e.g. any grey mask)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.array(img)
            luma = np.asarray(img.convert("I")) if mode == "P" else None
    except FileNotFoundError:
        raise _Unreadable(f"{path} does not exist (a region mask)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"{path} cannot be decoded as a region mask ({exc})") from None
    if mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise _Unreadable(f"{path} is a {mode} image; expected an integer region-id mask "
                          "(PIL mode I, L, P or 16-bit grey)")
    if arr.size and int(arr.min()) < 0:
        raise _Unreadable(f"{path} holds negative region ids")
    if int(arr.max(initial=0)) > 65535:
        raise _Unreadable(f"{path} holds region ids above 65535")
    conflict = palette_disagreement(arr, luma) if luma is not None else None
    return arr.astype(np.uint16), conflict


# --------------------------------------------------------------------------- the repack


@dataclass(frozen=True)
class RepackEntry:
    """One CSV row: the paths it names (absolute) and where it came from."""

    split: str
    csv_path: Path
    row: int  # 1-based line number in the CSV (the header is line 1)
    nir: Path
    rgb: Path
    mask: Path
    nir_rel: str  # as written in the CSV, slashes normalised


def read_csv_text(path: Path) -> str:
    """The CSV's text: GBK as published; UTF-8 is accepted too (a re-saved copy)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AimsError(f"{path} does not exist.", path=path) from None
    for encoding in (CSV_ENCODING, "utf-8-sig"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    try:
        raw.decode(CSV_ENCODING)
    except UnicodeDecodeError as exc:
        bad = exc.start
    raise SourceFormatError(
        f"{path} is neither GBK nor UTF-8 text (undecodable byte 0x{raw[bad]:02x} at offset "
        f"{bad}). The SimCMF repack's CSV files are GBK-encoded; the file is damaged or "
        "not the repack's. Download the IVRG_RGBNIR folder again.",
        path=path,
    )


def read_split_csv(root: Path, split: str) -> list[RepackEntry]:
    """Rows of one split's CSV, every named file checked to exist (the whole list of
    missing files is reported at once, not one per run)."""
    path = root / SPLIT_CSV[split]
    rows = list(csv.reader(io.StringIO(read_csv_text(path))))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise SourceFormatError(f"{path} is empty; expected a header line and one row per "
                                f"{split} image.", path=path)
    header, body = rows[0], rows[1:]
    if len(header) < 3:
        raise SourceFormatError(
            f"{path}: the header has {len(header)} column(s) ({', '.join(header)!r}); expected "
            "3 (a pandas index, the NIR image path, the mask path) as the SimCMF loader "
            "reads columns 1 and 2.",
            path=path,
        )
    if not body:
        raise SourceFormatError(
            f"{path} lists no {split} images (only a header). The split must not be empty; "
            "the file is truncated or not the repack's.", path=path)
    base = root / IMAGES_SUBFOLDER
    entries, missing = [], []
    for line, row in enumerate(body, start=2):
        if len(row) < 3 or not row[1].strip() or not row[2].strip():
            raise SourceFormatError(
                f"{path}, line {line}: expected index, NIR path, mask path; found {row!r}.",
                path=path)
        nir_rel = row[1].strip().replace("\\", "/")
        mask_rel = row[2].strip().replace("\\", "/")
        rgb_rel = nir_rel.replace("NIRimages", "RGBimages").replace("_nir", "_rgb")
        entry = RepackEntry(split, path, line, base / nir_rel, base / rgb_rel, base / mask_rel,
                            nir_rel)
        for p in (entry.nir, entry.rgb, entry.mask):
            if not p.is_file():
                missing.append(f"line {line}: {p}")
        entries.append(entry)
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AimsError(
            f"{path} names {len(missing)} file(s) that do not exist: {shown}. Paths are read "
            f"relative to {base} (RGB = NIR path with NIRimages→RGBimages, _nir→_rgb). "
            "Check that the IVRG_RGBNIR folder is completely extracted.",
            path=path,
        )
    return entries


def find_repack_root(path: Path, depth: int = 2) -> Path | None:
    """The folder holding the repack's CSV files: ``path`` or a folder below it."""
    if (path / SPLIT_CSV["train"]).is_file() or (path / SPLIT_CSV["test"]).is_file():
        return path
    if depth == 0 or not path.is_dir():
        return None
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = find_repack_root(child, depth - 1)
        if found is not None:
            return found
    return None


def image_id_of(nir_rel: str) -> str:
    """The sample id, from the repack's NIR path alone (so it does not depend on whether
    nirscene1 was given): the path below ``NIRimages/`` without extension and ``_nir``,
    folders joined with ``_``. ``NIRimages/IMG_0003_nir.JPG`` → ``IMG_0003``."""
    parts = list(PurePosixPath(nir_rel).with_suffix("").parts)
    if len(parts) > 1 and parts[0].lower() == "nirimages":
        parts = parts[1:]
    parts[-1] = re.sub(r"_nir$", "", parts[-1], flags=re.IGNORECASE) or parts[-1]
    return "_".join(parts)


# --------------------------------------------------------------------------- nirscene1


class NirScene:
    """nirscene1, from the zip (members read in place, never extracted) or a folder.
    Pairs are keyed ``<category>/<NNNN>`` as released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        names = self._names()
        pairs: dict[str, dict[str, str]] = {}
        for name in names:
            m = re.fullmatch(r"(?:.*/)?([^/]+)/(\d+)_(rgb|nir)\.tiff?", name, re.IGNORECASE)
            if m is None or m.group(1).lower() not in CATEGORIES:
                continue
            pairs.setdefault(f"{m.group(1).lower()}/{m.group(2)}", {})[m.group(3).lower()] = name
        self.pairs = {k: v for k, v in sorted(pairs.items()) if len(v) == 2}
        self.incomplete = sorted(k for k, v in pairs.items() if len(v) != 2)
        if not self.pairs:
            self.close()
            sample = ", ".join(names[:5]) or "nothing"
            raise SourceFormatError(
                f"{path} holds no nirscene1 image pairs (expected "
                f"nirscene1/<category>/<NNNN>_rgb.tiff and _nir.tiff with category one of "
                f"{', '.join(CATEGORIES)}; found e.g. {sample}).", path=path)

    def _names(self) -> list[str]:
        if self.path.is_dir():
            return [p.relative_to(self.path).as_posix() for p in sorted(self.path.rglob("*"))
                    if p.is_file()]
        try:
            self._zip = zipfile.ZipFile(self.path)
            return [n for n in self._zip.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceFormatError(
                f"{self.path} is not a readable zip archive ({exc}); expected {NIRSCENE_ZIP}. "
                "Download it again.", path=self.path) from None

    def where(self, key: str, kind: str) -> str:
        """A readable location of a pair's file, for messages."""
        name = self.pairs[key][kind]
        return f"{self.path}:{name}" if self._zip is not None else str(self.path / name)

    def _bytes(self, key: str, kind: str) -> bytes:
        name = self.pairs[key][kind]
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, OSError, zlib.error) as exc:
            raise _Unreadable(f"{self.where(key, kind)} cannot be read ({exc})") from None

    def read_nir(self, key: str) -> np.ndarray:
        """The pair's NIR as (H, W) uint8, exactly as stored."""
        return decode_tiff8(self._bytes(key, "nir"), self.where(key, "nir"), 1)

    def read_rgb(self, key: str) -> np.ndarray:
        """The pair's RGB as (H, W, 3) uint8, exactly as stored."""
        return decode_tiff8(self._bytes(key, "rgb"), self.where(key, "rgb"), 3)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def is_nirscene(path: Path) -> bool:
    """Whether ``path`` looks like nirscene1 (the zip by name or content, or its folder)."""
    if path.is_file():
        if path.name.lower().startswith("nirscene"):
            return True
        try:
            with zipfile.ZipFile(path) as zf:
                return any(re.search(r"_nir\.tiff?$", n, re.IGNORECASE) for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    if path.is_dir():
        if path.name.lower().startswith(NIRSCENE_DIR):
            return True
        return any((path / c).is_dir() and any((path / c).glob("*_nir.tif*")) for c in CATEGORIES)
    return False


def find_nirscene(folder: Path) -> Path | None:
    """``nirscene1.zip`` or ``nirscene1/`` in ``folder`` (or the folder itself)."""
    if is_nirscene(folder) and folder.is_dir() and folder.name.lower().startswith(NIRSCENE_DIR):
        return folder
    for name in (NIRSCENE_ZIP, NIRSCENE_DIR):
        if (folder / name).exists():
            return folder / name
    return None


# --------------------------------------------------------------------------- content match


def thumbnail(nir: np.ndarray) -> np.ndarray:
    """Area-averaged float32 thumbnail, :data:`THUMB_WIDTH` wide. Area averaging makes
    the thumbnails' mean absolute difference a lower bound of the full frames' one (each
    thumbnail pixel is a convex mix of the pixels it covers), so it can prune safely."""
    import cv2

    h, w = nir.shape
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / w))
    return cv2.resize(nir.astype(np.float32), (tw, th), interpolation=cv2.INTER_AREA)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in grey levels of two same-size frames."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def size_text(shape: tuple[int, ...]) -> str:
    """``W×H`` of an array shape, the way image sizes are usually written."""
    return f"{shape[1]}×{shape[0]}"


@dataclass
class SceneIndex:
    """nirscene1's NIR frames grouped by size, as thumbnails, for matching."""

    keys: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    thumbs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def sizes_text(self) -> str:
        """The frame sizes present, e.g. ``1024×668–680``, for messages."""
        by_width: dict[int, list[int]] = {}
        for h, w in self.keys:
            by_width.setdefault(w, []).append(h)
        return ", ".join(f"{w}×{min(hs)}" + (f"–{max(hs)}" if max(hs) != min(hs) else "")
                         for w, hs in sorted(by_width.items())) or "none"


def index_scene(scene: NirScene) -> SceneIndex:
    """Read every nirscene1 NIR once and keep its size and thumbnail; an unreadable one is
    no candidate (and is named if a frame then fails to match)."""
    index = SceneIndex()
    grouped: dict[tuple[int, int], list[np.ndarray]] = {}
    for key in scene.pairs:
        try:
            nir = scene.read_nir(key)
        except _Unreadable as exc:
            index.unreadable.append(str(exc))
            continue
        index.keys.setdefault(nir.shape, []).append(key)
        grouped.setdefault(nir.shape, []).append(thumbnail(nir))
    index.thumbs = {size: np.stack(ts) for size, ts in grouped.items()}
    return index


@dataclass(frozen=True)
class FrameMatch:
    """The outcome for one repack frame: ``key`` is set only for a proven match."""

    key: str | None
    reason: str
    score: float | None = None


def _full_scores(nir: np.ndarray, keys: list[str], scene: NirScene) -> list[tuple[float, str]]:
    scores = []
    for key in keys:
        try:
            scores.append((mean_abs_diff(nir, scene.read_nir(key)), key))
        except _Unreadable:
            continue
    return sorted(scores)


def match_frame(nir: np.ndarray, index: SceneIndex, scene: NirScene) -> FrameMatch:
    """Find the nirscene1 frame that is provably this repack NIR frame, or say why not.

    Candidates: same size only. Thumbnail differences prune (a lower bound); every
    candidate that could still be within ``SEPARATION × MATCH_MAD`` is confirmed at full
    resolution, so the second-best score is exact wherever it matters."""
    size = nir.shape
    keys = index.keys.get(size)
    if not keys:
        return FrameMatch(None, f"no nirscene1 frame is {size_text(size)} "
                                f"(sizes there: {index.sizes_text()})")
    lower = np.abs(index.thumbs[size] - thumbnail(nir)[None]).mean(axis=(1, 2))
    order = np.argsort(lower, kind="stable")
    confirm = [keys[i] for i in order if lower[i] <= SEPARATION * MATCH_MAD + 1e-3]
    confirm = confirm or [keys[order[0]]]
    scores = _full_scores(nir, confirm, scene)
    if not scores:
        return FrameMatch(None, "its candidates could not be read")
    best, best_key = scores[0]
    if best > MATCH_MAD:
        return FrameMatch(None, f"best nirscene1 candidate {best_key}_nir.tiff differs by "
                                f"{best:.2f} grey levels on average (> {MATCH_MAD:g}): not the "
                                "same frame", best)
    rivals = [(s, k) for s, k in scores[1:] if s <= MATCH_MAD or s < SEPARATION * best]
    if rivals:
        s, k = rivals[0]
        return FrameMatch(None, f"ambiguous: {best_key}_nir.tiff ({best:.2f}) and {k}_nir.tiff "
                                f"({s:.2f}) both fit", best)
    return FrameMatch(best_key, "matched", best)


def match_repack(plans: list["_Plan"], scene: NirScene) -> tuple[list[str], list[str]]:
    """Match every plan in place (``plan.key``/``plan.score``); return the failures as
    message lines and the unreadable nirscene1 files."""
    index = index_scene(scene)
    failures = []
    for plan in plans:
        try:
            nir, _ = read_repack_nir(plan.entry.nir)
        except _Unreadable:
            continue  # skipped and counted when loaded, like any corrupt file
        found = match_frame(nir, index, scene)
        if found.key is None:
            failures.append(f"{plan.entry.nir_rel} ({size_text(nir.shape)}): {found.reason}")
        plan.key, plan.score = found.key, found.score
    return failures, index.unreadable


def refusal(failures: list[str], unreadable: list[str], total: int, scene: NirScene,
            repack: Path) -> AimsError:
    """The error for a nirscene1 that does not prove every repack frame: which frames and
    why, the rule, and the command that uses the repack's JPEGs instead."""
    shown = "; ".join(failures[:MAX_LISTED])
    more = f"; and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
    bad = (f" {len(unreadable)} nirscene1 file(s) could not be read and were no candidates: "
           + "; ".join(unreadable[:5]) + "." if unreadable else "")
    command = f"aims prepare --modality nir --source {shlex.quote(str(repack))} --out OUT"
    inside = scene.path.is_relative_to(repack)
    return AimsError(
        f"nirscene1 ({scene.path}) was given, but {len(failures)} of the repack's {total} "
        f"frames are not proven to be nirscene1 frames, so its TIFFs cannot replace the "
        f"repack's JPEGs (the labels are defined on the repack's pixels). A match needs the "
        f"same width×height, a mean absolute NIR difference ≤ {MATCH_MAD:g} grey levels, and "
        f"no second candidate within {SEPARATION:g}× of it. Not matched: {shown}{more}.{bad} "
        f"To prepare from the repack's JPEG images (what SimCMF trained and scored on), run "
        f"without nirscene1: `{command}`"
        + (f" after moving {scene.path} out of {repack}." if inside else "."),
        path=scene.path)


# --------------------------------------------------------------------------- the stream


@dataclass
class _Plan:
    entry: RepackEntry
    image_id: str
    key: str | None = None  # nirscene1 pair proven to be this frame
    score: float | None = None


def plan_samples(entries: list[RepackEntry]) -> list[_Plan]:
    """One plan per CSV row; an id named twice (both splits, or twice in one) is refused."""
    plans, seen = [], {}
    for e in entries:
        image_id = image_id_of(e.nir_rel)
        if image_id in seen:
            other = seen[image_id]
            raise SourceFormatError(
                f"{e.csv_path}, line {e.row} and {other.csv_path}, line {other.row} name "
                f"the same image ({image_id}); a sample may appear in one split only.",
                path=e.csv_path)
        seen[image_id] = e
        plans.append(_Plan(e, image_id))
    return plans


class _NirStream(SampleStream):
    def __init__(self, plans: list[_Plan], scene: NirScene | None, root: Path) -> None:
        self._scene = scene
        self._plans = plans
        self.root = root
        self.converted_colour_nir = 0
        self.palette_conflicts: list[str] = []
        matched = [p for p in plans if p.key is not None]
        self.tiff_frames = len(matched)
        self.worst_score = max((p.score for p in matched), default=None)
        self.unused_originals = len(scene.pairs) - len({p.key for p in matched}) if scene else 0

    def __len__(self) -> int:
        return len(self._plans)

    def __iter__(self) -> Iterator[Sample]:
        for plan in self._plans:
            try:
                yield self._load(plan)
            except _Unreadable as exc:
                self.skipped.append(Skipped(plan.image_id, str(plan.entry.nir), str(exc)))

    def _images(self, plan: _Plan) -> tuple[np.ndarray, np.ndarray, str, str]:
        """(RGB, NIR, where each came from): the proven nirscene1 pair, else the repack."""
        if plan.key is not None:
            assert self._scene is not None
            return (self._scene.read_rgb(plan.key), self._scene.read_nir(plan.key),
                    self._scene.where(plan.key, "rgb"), self._scene.where(plan.key, "nir"))
        e = plan.entry
        rgb = check_rgb8(read_file_image(e.rgb, "an RGB JPEG"), str(e.rgb))
        nir, converted = read_repack_nir(e.nir)
        self.converted_colour_nir += converted
        return rgb, nir, str(e.rgb), str(e.nir)

    def _load(self, plan: _Plan) -> Sample:
        e = plan.entry
        rgb, nir, rgb_what, nir_what = self._images(plan)
        mask, conflict = read_region_mask(e.mask)
        shapes = {"RGB": rgb.shape[:2], "NIR": nir.shape[:2], "mask": mask.shape[:2]}
        if len(set(shapes.values())) != 1:
            sizes = ", ".join(f"{k} {size_text(s)}" for k, s in shapes.items())
            raise _Unreadable(
                f"sizes differ ({sizes}: {rgb_what}, {nir_what}, {e.mask}); the mask must "
                "have its image's size")
        if conflict:
            self.palette_conflicts.append(f"{plan.image_id} ({conflict})")
        category = {int(i): 1 for i in np.unique(mask) if i != 0}
        return Sample(image_id=plan.image_id, split=e.split, images={"rgb": rgb, "nir": nir},
                      instance_map=mask, instance_category=category)

    def close(self) -> None:
        if self._scene is not None:
            self._scene.close()


# --------------------------------------------------------------------------- converter


class IVRGNIR(SourceConverter):
    name = "ivrg_nir"
    configs = ("nir",)
    ignore_labels = (0,)
    connectivity = 8
    info = SourceInfo(
        name="IVRG RGB-NIR images with SimCMF region labels",
        homepage="https://www.epfl.ch/labs/ivrl/research/downloads/rgb-nir-scene-dataset/",
        license="research use (EPFL IVRL); labels: SimCMF repack, terms unknown",
        citation=CITATION,
        notes=(
            "Images and region-id masks: the SimCMF repack IVRG_RGBNIR (Outdoor_dataset/, "
            "JPEG). Its frames most probably come from the outdoor part of the hand-segmented "
            "RGB-NIR database of Salamati et al. (arXiv 1406.6147), from the same EPFL lab as "
            "nirscene1 (Brown & Süsstrunk, CVPR 2011); that they are nirscene1 frames is not "
            "proven. No class names are published, so every region is class 1 `region`.",
        ),
    )

    def __init__(self) -> None:
        self._stream: _NirStream | None = None

    def __getstate__(self) -> dict:
        # the pipeline sends the converter to worker processes with every sample: the
        # open stream (a zip handle, the sample plan) stays in this process
        return {k: v for k, v in self.__dict__.items() if k != "_stream"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stream = None

    def category_names(self, configs: Sequence[str] = ()) -> list[str]:
        return ["background", "region"]

    def _images_note(self) -> str:
        s = self._stream
        if s is None or s.tiff_frames == 0:
            return ("Images: the SimCMF repack's JPEG files (lossy), exactly the pixels "
                    "SimCMF trained and scored on; the region labels are defined on them. "
                    "nirscene1 TIFFs replace a frame only when given and proven to be the same "
                    "frame by content (same size, mean absolute NIR difference ≤ "
                    f"{MATCH_MAD:g} grey levels, unique).")
        text = (f"Images: the original lossless 8-bit TIFFs of {s._scene.path.name} "
                f"(nirscene1) for all {s.tiff_frames} frames, each proven to be its repack "
                f"frame by content: same size, mean absolute NIR difference to the repack JPEG "
                f"≤ {MATCH_MAD:g} grey levels (worst {s.worst_score:.2f}), no second candidate "
                f"within {SEPARATION:g}×. The repack's JPEGs were not used as images.")
        if s.unused_originals:
            text += f" {s.unused_originals} nirscene1 pairs match no repack frame and are not included."
        return text

    def _palette_note(self) -> str | None:
        s = self._stream
        if s is None or not s.palette_conflicts:
            return None
        n = len(s.palette_conflicts)
        shown = "; ".join(s.palette_conflicts[:MAX_LISTED])
        more = f" and {n - MAX_LISTED} more" if n > MAX_LISTED else ""
        return (f"{n} palette mask(s) are grouped differently by "
                f"SimCMF, which reads masks with Pillow convert('I') (the palette colour's "
                f"luma, not the index); AIMS keeps the palette indices as region ids: {shown}{more}.")

    def describe(self, config: str) -> ConfigDescription:
        if config != "nir":
            raise KeyError(config)
        s = self._stream
        notes = [
            "Instances: every region id of the repack's masks is one instance, as given "
            "(disconnected parts of one id are not split); 0 = background. Class names are "
            "not published, so every instance has category 1 (`region`).",
            "SimCMF evaluates regions of more than 1000 px after warping to 1024×1024 "
            "(protocol `simcmf`); protocol `aims` uses the shared ≥ 100 px rule.",
            self._images_note(),
        ]
        if s is not None and s.converted_colour_nir:
            notes.append(f"{s.converted_colour_nir} NIR JPEG(s) were stored as 3-channel "
                         "colour and were converted to grey with Pillow's convert('L'), as "
                         "the reference loader does.")
        palette = self._palette_note()
        if palette:
            notes.append(palette)
        return ConfigDescription(
            config="nir",
            description="IVRG-NIR: near-infrared scenes with registered RGB and region masks.",
            columns={
                "rgb": "registered RGB, 8-bit PNG",
                "nir": "near-infrared intensity as recorded, 8-bit greyscale PNG; "
                       "tensor = value / 255",
            },
            notes=tuple(notes),
        )

    def open(self, configs: Sequence[str], *, source: Path | Sequence[Path] | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        repack, scene_path = self._locate(source)
        plans = plan_samples([e for split in ("train", "test") for e in read_split_csv(repack, split)])
        scene = NirScene(scene_path) if scene_path is not None else None
        try:
            if scene is not None:
                failures, unreadable = match_repack(plans, scene)
                if failures:
                    raise refusal(failures, unreadable, len(plans), scene, repack)
            self._stream = _NirStream(plans, scene, repack)
        except BaseException:
            if scene is not None:
                scene.close()
            raise
        return self._stream

    def _locate(self, source) -> tuple[Path, Path | None]:
        """(repack root, nirscene1 zip/folder or None) from whatever the user passed."""
        from aims.paths import downloads_dir

        if source is None:
            return self._from_cache(downloads_dir(self.name))
        paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
        repack: Path | None = None
        scene: Path | None = None
        for path in paths:
            if not path.exists():
                raise AimsError(f"--source {path} does not exist.", path=path)
            if is_nirscene(path):
                scene = path
                continue
            if path.is_file() and zipfile.is_zipfile(path):
                path = self._extract_repack_zip(path)
            root = find_repack_root(path)
            if root is None:
                raise AimsError(
                    f"{path} holds neither the SimCMF repack ({SPLIT_CSV['train']} and "
                    f"{SPLIT_CSV['test']}, searched two folder levels down) nor nirscene1 "
                    f"({NIRSCENE_ZIP} or nirscene1/<category>/<NNNN>_nir.tiff). Pass the "
                    f"extracted {REPACK_FOLDER} folder (optionally with {NIRSCENE_ZIP} in it).",
                    path=path)
            repack = root
            if scene is None:
                scene = find_nirscene(root) or (find_nirscene(path) if path != root else None)
        if repack is None:
            raise AimsError(
                f"only nirscene1 was given ({scene}); it has no segmentation labels. Pass the "
                f"SimCMF repack {REPACK_FOLDER} too (--source twice, or put {NIRSCENE_ZIP} "
                "into the repack folder).", path=scene)
        return repack, scene

    def _extract_repack_zip(self, archive: Path) -> Path:
        from aims.extract import safe_extract
        from aims.paths import downloads_dir

        with zipfile.ZipFile(archive) as zf:
            if not any(n.endswith(SPLIT_CSV["train"]) for n in zf.namelist()):
                raise AimsError(
                    f"{archive} is a zip archive without {SPLIT_CSV['train']}; it is not the "
                    f"SimCMF {REPACK_FOLDER} repack (nor {NIRSCENE_ZIP}).", path=archive)
        target = downloads_dir(self.name) / f"{archive.stem}.extracted"
        safe_extract(archive, target)
        return target

    def _from_cache(self, cache: Path) -> tuple[Path, Path | None]:
        """The repack from the download cache; nirscene1 only if already there (it is not
        downloaded: without a proven frame map it would most likely be refused)."""
        root = find_repack_root(cache / REPACK_FOLDER) if (cache / REPACK_FOLDER).is_dir() else None
        if root is None and (cache / f"{REPACK_FOLDER}.zip").is_file():
            root = find_repack_root(self._extract_repack_zip(cache / f"{REPACK_FOLDER}.zip"))
        if root is None:
            spec = source_files()[REPACK_FOLDER]
            raise AimsError(
                f"{REPACK_FOLDER!r} must be downloaded by hand (OneDrive needs a browser): "
                f"{spec.manual}. Put the folder at {cache / REPACK_FOLDER} (or the zip at "
                f"{cache / (REPACK_FOLDER + '.zip')}), then run `aims prepare --modality nir` "
                f"again, or pass it with --source.", path=cache / REPACK_FOLDER)
        return root, find_nirscene(root) or find_nirscene(cache)

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        num_images: int | None = None, with_nirscene: bool = True) -> Path:
        """The repack and nirscene1.zip side by side in ``folder`` (returned: the
        ``--source``); frames 128 × 83–85 by default, nirscene1's real 1024 × 668–680
        with ``full_resolution``."""
        from aims.converters.ivrg_nir_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution,
                               num_images=num_images, with_nirscene=with_nirscene)


CONVERTER = IVRGNIR()
