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

Listing (CSV rows, the content match) runs in the main process; each frame is read in a
worker (:func:`read_frame`; nirscene1 members are read inside the zip there). The facts
(files, classes, column units …) are in :mod:`aims.converters.ivrg_nir_record`.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from aims.converters.base import Downloader, Listing, Sample, SampleRef, SourceConverter
from aims.converters.ivrg_nir_record import NIRSCENE_ZIP, RECORD, REPACK_FOLDER
from aims.converters.locate import extract_archive, find_folder, open_image, read_pixels
from aims.errors import AimsError, SourceFormatError, UnreadableSample

#: the nine scene categories of nirscene1, folder names as released
CATEGORIES = ("country", "field", "forest", "indoor", "mountain", "oldbuilding", "street",
              "urban", "water")

SPLIT_CSV = {"train": "IVRG-nir_train_GroundTruth.csv", "test": "IVRG-nir_test_GroundTruth.csv"}
IMAGES_SUBFOLDER = "Outdoor_dataset"
NIRSCENE_DIR = "nirscene1"

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

# --------------------------------------------------------------------------- decoding


def read_file_image(path: Path, what: str) -> np.ndarray:
    """A repack image file's pixels as stored (:func:`aims.converters.locate.read_pixels`),
    or :class:`UnreadableSample` naming the file: one corrupt file skips one sample."""
    return read_pixels(path, what)


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
                raise UnreadableSample(
                    f"{what} is a {img.format} {img.mode} image with {bits or '?'} bits per "
                    f"sample; nirscene1 has {channels}-channel 8-bit TIFFs here")
            img.load()
            return np.array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableSample(f"{what} cannot be decoded ({exc})") from None


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
    raise UnreadableSample(f"expected an 8-bit NIR image, got {arr.dtype} {arr.shape}")


def read_repack_nir(path: Path) -> tuple[np.ndarray, bool]:
    """The repack's NIR JPEG as SimCMF sees it (8-bit grey; colour → Pillow luma)."""
    return nir_channel(read_file_image(path, "a NIR JPEG"))


def check_rgb8(arr: np.ndarray, what: str) -> np.ndarray:
    """Check an RGB image is 3-channel 8-bit: SimCMF concatenates it with the NIR channel."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise UnreadableSample(f"{what}: expected 8-bit RGB, found {arr.dtype} {arr.shape}")
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
    with open_image(path, "a region mask") as img:
        mode = img.mode
        arr = np.array(img)
        luma = np.asarray(img.convert("I")) if mode == "P" else None
    if mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise UnreadableSample(f"{path} is a {mode} image; expected an integer region-id mask "
                               "(PIL mode I, L, P or 16-bit grey)", path=path)
    if arr.size and int(arr.min()) < 0:
        raise UnreadableSample(f"{path} holds negative region ids", path=path)
    if int(arr.max(initial=0)) > 65535:
        raise UnreadableSample(f"{path} holds region ids above 65535", path=path)
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


def _holds_csv(folder: Path) -> bool:
    return (folder / SPLIT_CSV["train"]).is_file() or (folder / SPLIT_CSV["test"]).is_file()


def find_repack_root(path: Path, depth: int = 2) -> Path | None:
    """The folder holding the repack's CSV files: ``path`` or a folder below it."""
    return find_folder(path, _holds_csv, max_depth=depth, what="SimCMF IVRG_RGBNIR repacks")


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
            raise UnreadableSample(f"{self.where(key, kind)} cannot be read ({exc})") from None

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
        except UnreadableSample as exc:
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
        except UnreadableSample:
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


def match_repack(plans: list["FramePlan"], scene: NirScene) -> tuple[list[str], list[str]]:
    """Match every plan in place (``plan.key``/``plan.score``); return the failures as
    message lines and the unreadable nirscene1 files."""
    index = index_scene(scene)
    failures = []
    for plan in plans:
        try:
            nir, _ = read_repack_nir(plan.entry.nir)
        except UnreadableSample:
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


# --------------------------------------------------------------------------- the listing


@dataclass
class FramePlan:
    """One repack frame, and the nirscene1 pair proven to be it (``key``), if any."""

    entry: RepackEntry
    image_id: str
    key: str | None = None  # nirscene1 pair proven to be this frame
    score: float | None = None


def plan_samples(entries: list[RepackEntry]) -> list[FramePlan]:
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
        plans.append(FramePlan(e, image_id))
    return plans


@dataclass(frozen=True)
class NirRef(SampleRef):
    """One frame: the repack's files (``files``: nir, rgb, mask), and the nirscene1 pair
    proven to be the same frame (``scene`` zip or folder and its two member names), if any."""

    scene: str = ""
    scene_rgb: str = ""
    scene_nir: str = ""


@dataclass
class NirListing(Listing):
    """What listing found: the plans (with the proven nirscene1 matches) and nirscene1."""

    plans: list[FramePlan] = field(default_factory=list)
    root: Path | None = None
    scene: NirScene | None = None

    @property
    def tiff_frames(self) -> int:
        return sum(p.key is not None for p in self.plans)

    @property
    def worst_score(self) -> float | None:
        return max((p.score for p in self.plans if p.key is not None and p.score is not None), default=None)

    @property
    def unused_originals(self) -> int:
        if self.scene is None:
            return 0
        return len(self.scene.pairs) - len({p.key for p in self.plans if p.key is not None})

    def close(self) -> None:
        if self.scene is not None:
            self.scene.close()


def _ref(plan: FramePlan, scene: NirScene | None) -> NirRef:
    e = plan.entry
    files = {"nir": str(e.nir), "rgb": str(e.rgb), "mask": str(e.mask)}
    if plan.key is None or scene is None:
        return NirRef(plan.image_id, e.split, files)
    pair = scene.pairs[plan.key]
    return NirRef(plan.image_id, e.split, files, scene=str(scene.path), scene_rgb=pair["rgb"],
                  scene_nir=pair["nir"])


def _scene_member(scene: Path, member: str) -> bytes:
    """One file of nirscene1, read inside the zip (never extracted) or from the folder."""
    where = f"{scene}:{member}" if scene.is_file() else str(scene / member)
    try:
        if scene.is_file():
            with zipfile.ZipFile(scene) as zf:
                return zf.read(member)
        return (scene / member).read_bytes()
    except (zipfile.BadZipFile, OSError, KeyError, zlib.error) as exc:
        raise UnreadableSample(f"{where} cannot be read ({exc})") from None


def read_frame(ref: NirRef) -> Sample:
    """RGB and NIR (the proven nirscene1 pair, else the repack's JPEGs) and the region
    mask; ``facts`` say whether a colour NIR JPEG was converted and how SimCMF's palette
    reading would differ."""
    facts: dict[str, object] = {}
    if ref.scene:
        scene = Path(ref.scene)
        where = (lambda m: f"{scene}:{m}") if scene.is_file() else (lambda m: str(scene / m))
        rgb = decode_tiff8(_scene_member(scene, ref.scene_rgb), where(ref.scene_rgb), 3)
        nir = decode_tiff8(_scene_member(scene, ref.scene_nir), where(ref.scene_nir), 1)
        rgb_what, nir_what = where(ref.scene_rgb), where(ref.scene_nir)
    else:
        rgb = check_rgb8(read_file_image(Path(ref.files["rgb"]), "an RGB JPEG"), ref.files["rgb"])
        nir, converted = read_repack_nir(Path(ref.files["nir"]))
        if converted:
            facts["nir_from_colour"] = True
        rgb_what, nir_what = ref.files["rgb"], ref.files["nir"]
    mask_path = Path(ref.files["mask"])
    mask, conflict = read_region_mask(mask_path)
    shapes = {"RGB": rgb.shape[:2], "NIR": nir.shape[:2], "mask": mask.shape[:2]}
    if len(set(shapes.values())) != 1:
        sizes = ", ".join(f"{k} {size_text(s)}" for k, s in shapes.items())
        raise UnreadableSample(
            f"sizes differ ({sizes}: {rgb_what}, {nir_what}, {mask_path}); the mask must "
            "have its image's size", path=mask_path)
    if conflict:
        facts["palette_conflict"] = conflict
    category = {int(i): 1 for i in np.unique(mask) if i != 0}
    return Sample(image_id=ref.image_id, split=ref.split, images={"rgb": rgb, "nir": nir},
                  instance_map=mask, instance_category=category, facts=facts)


# --------------------------------------------------------------------------- converter


class IVRGNIR(SourceConverter):
    record = RECORD

    def list_samples(self, configs: Sequence[str], *, source: Path | Sequence[Path] | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> NirListing:
        repack, scene_path = self._locate(source)
        plans = plan_samples([e for split in ("train", "test") for e in read_split_csv(repack, split)])
        scene = NirScene(scene_path) if scene_path is not None else None
        try:
            if scene is not None:
                failures, unreadable = match_repack(plans, scene)
                if failures:
                    raise refusal(failures, unreadable, len(plans), scene, repack)
        except BaseException:
            if scene is not None:
                scene.close()
            raise
        return NirListing(refs=[_ref(p, scene) for p in plans], category_names=list(RECORD.classes),
                          instance_sources={s: RECORD.instances for s in ("train", "test")},
                          plans=plans, root=repack, scene=scene)

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        assert isinstance(ref, NirRef)
        return read_frame(ref)

    def notes(self, config: str, listing: Listing) -> list[str]:
        assert isinstance(listing, NirListing)
        notes = [_images_note(listing)]
        converted = sum(1 for _, facts in listing.facts if facts.get("nir_from_colour"))
        if converted:
            notes.append(f"{converted} NIR JPEG(s) were stored as 3-channel colour and were "
                         "converted to grey with Pillow's convert('L'), as the reference loader does.")
        conflicts = [f"{image_id} ({facts['palette_conflict']})" for image_id, facts in listing.facts
                     if facts.get("palette_conflict")]
        if conflicts:
            n = len(conflicts)
            shown = "; ".join(conflicts[:MAX_LISTED])
            more = f" and {n - MAX_LISTED} more" if n > MAX_LISTED else ""
            notes.append(f"{n} palette mask(s) are grouped differently by "
                         f"SimCMF, which reads masks with Pillow convert('I') (the palette colour's "
                         f"luma, not the index); AIMS keeps the palette indices as region ids: {shown}{more}.")
        return notes

    def _locate(self, source: Path | Sequence[Path] | None) -> tuple[Path, Path | None]:
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
        with zipfile.ZipFile(archive) as zf:
            if not any(n.endswith(SPLIT_CSV["train"]) for n in zf.namelist()):
                raise AimsError(
                    f"{archive} is a zip archive without {SPLIT_CSV['train']}; it is not the "
                    f"SimCMF {REPACK_FOLDER} repack (nor {NIRSCENE_ZIP}).", path=archive)
        return extract_archive(archive, self.name, folder=f"{archive.stem}.extracted", progress=False)

    def _from_cache(self, cache: Path) -> tuple[Path, Path | None]:
        """The repack from the download cache; nirscene1 only if already there (it is not
        downloaded: without a proven frame map it would most likely be refused)."""
        root = find_repack_root(cache / REPACK_FOLDER) if (cache / REPACK_FOLDER).is_dir() else None
        if root is None and (cache / f"{REPACK_FOLDER}.zip").is_file():
            root = find_repack_root(self._extract_repack_zip(cache / f"{REPACK_FOLDER}.zip"))
        if root is None:
            spec = RECORD.file(REPACK_FOLDER)
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


def _images_note(listing: NirListing) -> str:
    if listing.scene is None or listing.tiff_frames == 0:
        return ("Images: the SimCMF repack's JPEG files (lossy), exactly the pixels "
                "SimCMF trained and scored on; the region labels are defined on them. "
                "nirscene1 TIFFs replace a frame only when given and proven to be the same "
                "frame by content (same size, mean absolute NIR difference ≤ "
                f"{MATCH_MAD:g} grey levels, unique).")
    text = (f"Images: the original lossless 8-bit TIFFs of {listing.scene.path.name} "
            f"(nirscene1) for all {listing.tiff_frames} frames, each proven to be its repack "
            f"frame by content: same size, mean absolute NIR difference to the repack JPEG "
            f"≤ {MATCH_MAD:g} grey levels (worst {listing.worst_score:.2f}), no second candidate "
            f"within {SEPARATION:g}×. The repack's JPEGs were not used as images.")
    if listing.unused_originals:
        text += f" {listing.unused_originals} nirscene1 pairs match no repack frame and are not included."
    return text


CONVERTER = IVRGNIR()
