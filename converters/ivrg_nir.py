"""IVRG-NIR (EPFL RGB-NIR Scene dataset) → config ``nir``.

Two inputs, because no single release has both lossless images and labels:

* the **SimCMF repack** ``IVRG_RGBNIR`` (OneDrive, manual download) holds the only known
  segmentation labels: ``IVRG-nir_{train,test}_GroundTruth.csv`` (GBK-encoded; read by the
  reference code with ``pd.read_csv(..., encoding='gbk')``, so the first line is a header,
  column 0 is a pandas index, column 1 the NIR image path and column 2 the mask path, both
  relative to ``<root>/Outdoor_dataset/``). The RGB path is the NIR path with
  ``NIRimages``→``RGBimages`` and ``_nir``→``_rgb`` (every occurrence, as the reference
  does). Images are JPEG (``.JPG``), masks integer region-id PNGs, 0 = background;
* the **original** ``nirscene1.zip`` (``nirscene1/<category>/<NNNN>_{rgb,nir}.tiff``), whose
  TIFFs are lossless. When it is given too, the images are taken from it, matched to the
  repack's samples by (category, number); otherwise the repack's JPEGs are used. Which one
  was used is written into the dataset card.

How a user passes both: ``--source`` may be (a) the repack folder with ``nirscene1.zip`` or
an extracted ``nirscene1/`` inside it or beside its CSV files, (b) a folder holding both the
repack folder and ``nirscene1.zip``/``nirscene1/``, (c) a zip of the repack as OneDrive
downloads it, or (d) several paths (``open(source=[repack, nirscene1.zip])``), each
recognised by its content. Without ``--source`` the repack is taken from the download cache
(manual download) and ``nirscene1.zip`` is fetched from EPFL (no checksum is published: its
sha256 is logged so it can be pinned).

Labels: each region id of a mask is one instance (docs/protocol.md: "where a source
already provides instance ids, each id is an instance"); disconnected parts of one id stay
one instance. The repack gives no class names, so every region has class 1 ``region``
(0 = ``background``).

NIR is stored exactly as recorded: 8-bit TIFF/JPEG → 8-bit PNG, 16-bit TIFF → 16-bit PNG;
:func:`aims.modality_tensor` scales by the bit depth (value / 255 or / 65535).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


def source_files():
    """The original image archive (downloadable, no published checksum) and the repack
    (manual: OneDrive needs a browser)."""
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


def decode_image(data: bytes, what: str) -> np.ndarray:
    """TIFF/JPEG/PNG bytes → array with the file's own bit depth, RGB order for colour.

    Pillow, like the reference loader: JPEG decoding differs slightly between libraries,
    and matching the reference keeps the pixels the paper trained on."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16).copy()
            if mode == "RGBA":
                img = img.convert("RGB")
            elif mode not in ("L", "RGB", "I", "P", "1"):
                raise ValueError(f"unsupported image mode {mode}")
            arr = np.asarray(img)
            if mode == "1":
                arr = arr.astype(np.uint8)
            return np.ascontiguousarray(arr)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"{what} cannot be decoded ({exc})") from None


class _Unreadable(Exception):
    """A single sample's file is corrupt: the sample is skipped and counted."""


def nir_channel(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """One NIR channel: grey stays as is; a 3-channel NIR JPEG (some tools save grey as
    RGB) becomes Pillow's ``convert('L')`` luma, as the reference loader does. Returns the
    channel and whether a colour image had to be converted."""
    if arr.ndim == 2:
        return arr, False
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
            return np.ascontiguousarray(arr[:, :, 0]), False
        r, g, b = (arr[:, :, i].astype(np.uint32) for i in range(3))
        # Pillow's ITU-R 601-2 luma: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8), True
    raise _Unreadable(f"expected a single-channel NIR image, got {arr.dtype} {arr.shape}")


def region_map(arr: np.ndarray, what: str) -> np.ndarray:
    """A region-id mask as (H, W) integers; an RGB mask is not a region-id map."""
    if arr.ndim == 3:
        raise _Unreadable(
            f"{what} is a {arr.shape[2]}-channel image; expected an integer region-id mask "
            "(PIL mode I, L, P or 16-bit grey)")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise _Unreadable(f"{what} holds negative region ids")
    if arr.max(initial=0) > 65535:
        raise _Unreadable(f"{what} holds region ids above 65535")
    return arr.astype(np.uint16) if arr.dtype != np.uint16 else arr


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


# --------------------------------------------------------------------------- nirscene1

_NUMBER = re.compile(r"(\d+)")


def parse_key(path: str) -> tuple[str, int] | None:
    """(category, number) of an image path of either release, or None.

    nirscene1: ``nirscene1/<category>/<NNNN>_nir.tiff``. The repack's naming is not
    documented, so the category is any path component equal to a category name
    (case-insensitive) or a stem prefix ``<category>_``/``<category>-``; the number is
    the last run of digits in the file stem."""
    p = PurePosixPath(path.replace("\\", "/"))
    stem = p.stem
    category = None
    for part in reversed(p.parts[:-1]):
        if part.lower() in CATEGORIES:
            category = part.lower()
            break
    if category is None:
        low = stem.lower()
        for cat in sorted(CATEGORIES, key=len, reverse=True):
            if re.match(rf"{cat}[_\-\s]?\d", low):
                category = cat
                break
    numbers = _NUMBER.findall(stem)
    if category is None or not numbers:
        return None
    return category, int(numbers[-1])


class NirScene:
    """nirscene1, from the zip (members read in place, never extracted) or a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self.pairs: dict[tuple[str, int], dict[str, str]] = {}
        if path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
                names = [n for n in self._zip.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceFormatError(
                    f"{path} is not a readable zip archive ({exc}); expected {NIRSCENE_ZIP}. "
                    "Download it again.", path=path) from None
        else:
            names = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*"))
                     if p.is_file()]
        for name in names:
            m = re.fullmatch(r"(?:.*/)?([^/]+)/(\d+)_(rgb|nir)\.tiff?", name, re.IGNORECASE)
            if m is None or m.group(1).lower() not in CATEGORIES:
                continue
            key = (m.group(1).lower(), int(m.group(2)))
            self.pairs.setdefault(key, {})[m.group(3).lower()] = name
        complete = {k: v for k, v in self.pairs.items() if len(v) == 2}
        if not complete:
            self.close()
            sample = ", ".join(names[:5]) or "nothing"
            raise SourceFormatError(
                f"{path} holds no nirscene1 image pairs (expected "
                f"nirscene1/<category>/<NNNN>_rgb.tiff and _nir.tiff with category one of "
                f"{', '.join(CATEGORIES)}; found e.g. {sample}).", path=path)
        self.incomplete = sorted(k for k in self.pairs if len(self.pairs[k]) != 2)
        self.pairs = complete

    def read(self, key: tuple[str, int], kind: str) -> tuple[bytes, str]:
        name = self.pairs[key][kind]
        if self._zip is not None:
            try:
                return self._zip.read(name), f"{self.path}:{name}"
            except (zipfile.BadZipFile, OSError, zlib.error) as exc:
                raise _Unreadable(f"{self.path}:{name} cannot be read ({exc})") from None
        return (self.path / name).read_bytes(), str(self.path / name)

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


# --------------------------------------------------------------------------- the stream


@dataclass
class _Plan:
    entry: RepackEntry
    image_id: str
    key: tuple[str, int] | None


class _NirStream(SampleStream):
    def __init__(self, entries: list[RepackEntry], scene: NirScene | None, root: Path) -> None:
        self._scene = scene
        self.root = root
        self.converted_colour_nir = 0
        self.nir_bit_depths: set[int] = set()
        plans, seen = [], {}
        for e in entries:
            key = parse_key(e.nir_rel)
            image_id = (f"{key[0]}_{key[1]:04d}" if key else
                        PurePosixPath(e.nir_rel).with_suffix("").as_posix().replace("/", "_"))
            if image_id in seen:
                other = seen[image_id]
                raise SourceFormatError(
                    f"{e.csv_path}, line {e.row} and {other.csv_path}, line {other.row} name "
                    f"the same image ({image_id}); a sample may appear in one split only.",
                    path=e.csv_path)
            seen[image_id] = e
            plans.append(_Plan(e, image_id, key))
        if scene is not None:
            unmatched = [p for p in plans if p.key is None or p.key not in scene.pairs]
            if unmatched:
                shown = "; ".join(
                    f"{p.entry.nir_rel} ({p.entry.csv_path.name} line {p.entry.row}: "
                    + (f"no {p.key[0]}/{p.key[1]:04d}_rgb.tiff + _nir.tiff pair"
                       if p.key else "no category/number in the name") + ")"
                    for p in unmatched[:5])
                more = f"; and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
                raise SourceFormatError(
                    f"{len(unmatched)} of the repack's {len(plans)} images have no match in "
                    f"{scene.path}: {shown}{more}. Matching is by category folder and number. "
                    f"Pass the complete {NIRSCENE_ZIP}, or leave it out to use the repack's "
                    "JPEG images.", path=scene.path)
            self.unused_originals = len(scene.pairs) - len({p.key for p in plans})
        self._plans = plans

    def __len__(self) -> int:
        return len(self._plans)

    def __iter__(self) -> Iterator[Sample]:
        for plan in self._plans:
            try:
                yield self._load(plan)
            except _Unreadable as exc:
                self.skipped.append(Skipped(plan.image_id, str(plan.entry.nir), str(exc)))

    def _load(self, plan: _Plan) -> Sample:
        e = plan.entry
        if self._scene is not None:
            assert plan.key is not None
            rgb_bytes, rgb_what = self._scene.read(plan.key, "rgb")
            nir_bytes, nir_what = self._scene.read(plan.key, "nir")
        else:
            rgb_bytes, rgb_what = e.rgb.read_bytes(), str(e.rgb)
            nir_bytes, nir_what = e.nir.read_bytes(), str(e.nir)
        rgb = decode_image(rgb_bytes, rgb_what)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise _Unreadable(f"{rgb_what}: expected 8-bit RGB, found {rgb.dtype} {rgb.shape}")
        nir, converted = nir_channel(decode_image(nir_bytes, nir_what))
        self.converted_colour_nir += converted
        self.nir_bit_depths.add(8 * nir.dtype.itemsize if nir.dtype != np.int32 else 32)
        if nir.dtype == np.int32:  # PIL mode I: a 16-bit TIFF read through libtiff
            if nir.min() < 0 or nir.max() > 65535:
                raise _Unreadable(f"{nir_what}: NIR values outside 0..65535")
            nir = nir.astype(np.uint16)
        mask = region_map(decode_image(e.mask.read_bytes(), str(e.mask)), str(e.mask))
        shapes = {"RGB": rgb.shape[:2], "NIR": nir.shape[:2], "mask": mask.shape[:2]}
        if len(set(shapes.values())) != 1:
            sizes = ", ".join(f"{k} {w}×{h}" for k, (h, w) in shapes.items())
            raise _Unreadable(
                f"sizes differ ({sizes}: {rgb_what}, {nir_what}, {e.mask}); the mask must "
                "have its image's size")
        ids = np.unique(mask)
        category = {int(i): 1 for i in ids if i != 0}
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
        name="IVRG RGB-NIR Scene dataset (EPFL) with SimCMF region labels",
        homepage="https://www.epfl.ch/labs/ivrl/research/downloads/rgb-nir-scene-dataset/",
        license="research use (EPFL IVRL); labels: SimCMF repack, terms unknown",
        citation=CITATION,
        notes=(
            "Images: nirscene1 (Brown & Süsstrunk, CVPR 2011), 477 RGB/NIR pairs in 9 "
            "categories. Segmentation labels: the SimCMF repack IVRG_RGBNIR (region-id masks; "
            "no class names, so every region is class 1 `region`).",
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
        ]
        if s is not None and s._scene is not None:
            images = (f"Images: the original lossless TIFFs of {s._scene.path.name} (nirscene1), "
                      "matched to the repack's labels by category and number; the repack's "
                      "JPEG copies were not used.")
            if s.unused_originals:
                images += f" {s.unused_originals} nirscene1 pairs have no label and are not included."
        else:
            images = ("Images: the SimCMF repack's JPEG files (lossy: the original nirscene1 "
                      "TIFFs were not given). Pass nirscene1.zip as well for lossless images.")
        notes.append(images)
        if s is not None and s.converted_colour_nir:
            notes.append(f"{s.converted_colour_nir} NIR JPEG(s) were stored as 3-channel "
                         "colour and were converted to grey with Pillow's convert('L'), as "
                         "the reference loader does.")
        if s is not None and s.nir_bit_depths:
            depths = "/".join(str(d) for d in sorted(s.nir_bit_depths))
            notes.append(f"NIR bit depth found in the source: {depths}-bit.")
        return ConfigDescription(
            config="nir",
            description="IVRG-NIR: near-infrared scenes with registered RGB and region masks.",
            columns={
                "rgb": "registered RGB, 8-bit PNG",
                "nir": "near-infrared intensity as recorded, greyscale PNG at the source's bit "
                       "depth (8-bit, or 16-bit for 16-bit TIFFs); tensor = value / (2^bits − 1)",
            },
            notes=tuple(notes),
        )

    def open(self, configs: Sequence[str], *, source: Path | Sequence[Path] | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        repack, scene_path = self._locate(source, downloader)
        entries = [e for split in ("train", "test") for e in read_split_csv(repack, split)]
        scene = NirScene(scene_path) if scene_path is not None else None
        try:
            self._stream = _NirStream(entries, scene, repack)
        except BaseException:
            if scene is not None:
                scene.close()
            raise
        return self._stream

    def _locate(self, source, downloader) -> tuple[Path, Path | None]:
        """(repack root, nirscene1 zip/folder or None) from whatever the user passed."""
        from aims.paths import downloads_dir

        if source is None:
            return self._from_cache(downloads_dir(self.name), downloader)
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

    def _from_cache(self, cache: Path, downloader: Downloader | None) -> tuple[Path, Path | None]:
        from aims.fetch import fetch

        files = source_files()
        root = find_repack_root(cache / REPACK_FOLDER) if (cache / REPACK_FOLDER).is_dir() else None
        if root is None and (cache / f"{REPACK_FOLDER}.zip").is_file():
            root = find_repack_root(self._extract_repack_zip(cache / f"{REPACK_FOLDER}.zip"))
        if root is None:
            spec = files[REPACK_FOLDER]
            raise AimsError(
                f"{REPACK_FOLDER!r} must be downloaded by hand (OneDrive needs a browser): "
                f"{spec.manual}. Put the folder at {cache / REPACK_FOLDER} (or the zip at "
                f"{cache / (REPACK_FOLDER + '.zip')}), then run `aims prepare --modality nir` "
                f"again, or pass it with --source.", path=cache / REPACK_FOLDER)
        scene = find_nirscene(root)
        if scene is None:
            scene = fetch(files[NIRSCENE_ZIP], cache_dir=cache, downloader=downloader)
        return root, scene

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        num_images: int | None = None, with_nirscene: bool = True) -> Path:
        """The repack and nirscene1.zip side by side in ``folder`` (returned: the
        ``--source``); about 96×128 images, or about 1024×768 with ``full_resolution``."""
        from aims.converters.ivrg_nir_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution,
                               num_images=num_images, with_nirscene=with_nirscene)


CONVERTER = IVRGNIR()
