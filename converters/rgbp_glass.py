"""RGBP-Glass (Mei et al., CVPR 2022, "PGSNet") → config ``polarization``.

The release is two archives on Google Drive (train and test; names, sizes and checksums
are not published, and Drive needs a browser for large files), so both are **manual
downloads**. After extraction the authors' README shows::

    RGBP-Glass/
      train/{image,aolp,dolp,mask,edge,reflection}/   instances_train.json
      test/{image,aolp,dolp,mask}/                     instances_test.json
      LICENSE

with one 14-digit id per sample. Real release files (checked on a public sample, see
docs/sources.md): frames are 612×512; ``image/<id>_rgb.tiff`` is **16 bits per channel**,
LZW-compressed; ``aolp/<id>_aolp.tiff`` and ``dolp/<id>_dolp.tiff`` are 3-channel 8-bit
LZW TIFFs; ``mask/<id>_mask.png`` is a **1-bit PNG** (glass = 1); ``train/instances_train.json``
is COCO (one category ``glass``, polygon outlines, 7577 annotations over 3207 images).
The split is the folder. ``edge`` and ``reflection`` are not used.

``--source`` may be the downloaded archive(s) (zip or tar, recognised by content, not by
extension), a folder holding the two archives side by side, or the extracted folder in
any of the shapes seen: ``RGBP-Glass/{train,test}``, ``{train,test}`` at the top, each
split in its own archive or folder. The SimCMF repack ``pgsnet/{train,test}/`` (same
images, labels as instance-id maps in ``instance_mask/<id>_instance_mask.png``) is
accepted too; its ids are kept as given. When a split has the original ``mask/`` folder
it is used; the card records which input each split came from.

**Instances** (the card and ``aims_config.json`` notes say which were used per split):

- ``instances="release"`` (default): the release's ``<split>/instances_<split>.json``
  polygons, rasterised with pycocotools at the frame size by :mod:`aims.coco_instances`
  (instance id k = the k-th annotation of the frame in ascending annotation id;
  overlapping pixels go to the smaller annotation). They separate adjacent panes that
  connected components merge (on four real train frames: 2, 2, 4 and 2 panes where
  components give 1 each). A split without its JSON falls back to components.
- ``instances="components"``: 8-connected components of ``mask/`` (the pre-JSON result).
- the SimCMF repack: its ``instance_mask/`` ids as given.

**RGB bit depth.** The RGB TIFF is read losslessly (:func:`aims.imageio.read_image`;
Pillow alone would drop the low byte) and stored as a 16-bit PNG. Pillow-based readers,
PGSNet's own loader and ``datasets``' decoded ``row["rgb"]`` included, see its high byte
(value >> 8); :func:`aims.modality_tensor` gives value / 65535.

Channel order of ``aolp`` and ``dolp`` (decided here, stated in the card): the TIFFs are
trichromatic (one AoLP/DoLP per colour channel) and the authors' own loader swaps
channels 0 and 2 after reading them with Pillow, i.e. the files hold B,G,R. We store the
file's channels **reversed** (stored channel k = file channel 2−k), which is the R,G,B
order the PGSNet network is fed. The SimCMF loader does *not* swap, so its channels 3–5
and 6–8 are our AoLP and DoLP reversed. Values are stored as the release's 8-bit codes;
the mapping to radians / degree of polarization (likely AoLP [0, π) → 0..255 and DoLP
[0, 1] → 0..255) is not published, so :func:`aims.modality_tensor` returns code / 255.

Masks: 1-bit PNG in the release (8-bit grey or RGB 0/255 masks are read too; as in the
authors' evaluation channel 1 of an RGB mask is taken and glass = value ≥ 128). The
paper's authors drop two broken ids (``20210808013065``, ``20210811002205``, both in the
train split); we skip them with a warning and list them as skipped in the summary and the
card.

The helpers for locating a manual-download source (archive or folder) and reading the
glass masks are shared with :mod:`aims.converters.thermal_glass`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aims.converters.base import (
    ConfigDescription,
    Downloader,
    INSTANCE_MODES,
    Sample,
    SampleStream,
    Skipped,
    SourceConverter,
    SourceInfo,
)
from aims.coco_instances import (
    CocoAnnotation,
    CocoImage,
    CocoInstances,
    load_coco_instances,
    rasterise_instances,
    require_pycocotools,
)
from aims.errors import AimsError, SourceFormatError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
ROOT_FOLDER = "RGBP-Glass"
REPACK_FOLDER = "pgsnet"
#: ids the paper's authors skip as broken
BROKEN_IDS = ("20210808013065", "20210811002205")
#: Google Drive file ids of the two archives (authors' README, 2022–2024)
DRIVE_IDS = {"train": "1L7M3DlSeIeFr7eqDFfp5X_9UH6Qr-tPB", "test": "1RyIAPN9xZLe6GPeDmPrU2RJ9fbBroga8"}
#: names under which the manual downloads are looked for in the download cache
ARCHIVE_NAMES = {"train": "RGBP-Glass-train", "test": "RGBP-Glass-test"}
CONTINUE_COMMAND = "aims prepare --modality polarization --source PATH"

#: column -> (folder, file-name suffix) inside a split folder
FILES = {
    "rgb": ("image", "_rgb.tiff"),
    "aolp": ("aolp", "_aolp.tiff"),
    "dolp": ("dolp", "_dolp.tiff"),
    "mask": ("mask", "_mask.png"),
    "instance_mask": ("instance_mask", "_instance_mask.png"),
}
ORIGINAL, REPACK = "original", "pgsnet"

#: the release's instances file of a split, inside the split folder
INSTANCES_JSON = "instances_{split}.json"
#: where a split's instances came from (``RGBPGlass.instance_sources``)
RELEASE_COCO, COMPONENTS, REPACK_IDS = "release-coco", "components", "repack-ids"
#: the one category of the release's instances file
GLASS_CATEGORY = "glass"

CITATION = """@inproceedings{mei2022glass,
  title     = {Glass Segmentation using Intensity and Spectral Polarization Cues},
  author    = {Mei, Haiyang and Dong, Bo and Dong, Wen and Yang, Jiaxi and Baek, Seung-Hwan and Heide, Felix and Peers, Pieter and Wei, Xiaopeng and Yang, Xin},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""


def source_files() -> dict[str, "object"]:
    """The two manual-download archives (no published name, size or checksum)."""
    from aims.fetch import SourceFile

    return {
        split: SourceFile(
            name=ARCHIVE_NAMES[split],
            url=None,
            known_hash=None,
            manual=(
                f"download the RGBP-Glass {split} archive from Google Drive "
                f"(https://drive.google.com/file/d/{DRIVE_IDS[split]}/view, linked from "
                "https://github.com/Mhaiyang/CVPR2022_PGSNet; a Baidu mirror is listed "
                "there too) in a browser. PATH may be a folder holding both downloaded "
                "archives, one archive, or the folder you extracted them to"
            ),
        )
        for split in SPLITS
    }


# --------------------------------------------------------------------------- locating


def top_entries(folder: Path, limit: int = 20) -> str:
    """What a folder holds, for error messages: up to ``limit`` names, folders with "/"."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as exc:
        return f"(unreadable: {exc})"
    if not names:
        return "nothing (empty folder)"
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _is_archive(path: Path) -> bool:
    from aims.extract import archive_kind

    try:
        return archive_kind(path) is not None
    except OSError:
        return False


def extract_archive(archive: Path, source_name: str) -> Path:
    """Extract a zip/tar archive (any extension) into the download cache, once."""
    from aims.extract import safe_extract
    from aims.paths import downloads_dir

    target = downloads_dir(source_name) / "extracted" / archive.name
    log.info("extracting %s into %s", archive, target)
    return safe_extract(archive, target, progress=True)


#: older private names, still imported by :mod:`aims.converters.thermal_glass`
_top_entries = top_entries
_extract = extract_archive


def source_roots(source: Path | None, source_name: str, files: dict, *,
                 continue_command: str) -> tuple[list[Path], list[Path]]:
    """Folders to search for a manual-download source, and archives lying at their top.

    ``source`` None: the declared manual files from the download cache (the manual
    message of :func:`aims.fetch.fetch` when one is missing), each extracted. A file:
    extracted (zip/tar recognised by content). A folder: searched as is; the archives
    at its top level are returned separately so they are only extracted when the folder
    itself does not hold the layout (a folder may hold both a 15 GB archive and its
    extracted copy).
    """
    from aims.fetch import fetch
    from aims.paths import downloads_dir

    if source is None:
        cached = [fetch(f, cache_dir=downloads_dir(source_name), continue_command=continue_command,
                        progress=True) for f in files.values()]
        return [], cached
    source = Path(source).expanduser()
    if source.is_dir():
        archives = [p for p in sorted(source.iterdir()) if p.is_file() and _is_archive(p)]
        return [source], archives
    if source.is_file():
        return [], [source]
    raise AimsError(
        f"--source {source} does not exist. Pass the downloaded archive or the folder it "
        f"was extracted to, e.g. `{continue_command}`.",
        path=source,
    )


def find_split_dirs(roots: Sequence[Path], looks_like_split: Callable[[Path], bool], *,
                    max_depth: int = 4) -> dict[str, list[Path]]:
    """Folders that hold one split, by name (``train``/``test``, or a name containing
    exactly one of those words, e.g. an archive extracted on its own), up to
    ``max_depth`` levels below each root. A matching folder is not descended into."""
    found: dict[str, list[Path]] = {s: [] for s in SPLITS}

    def split_of(path: Path) -> str | None:
        name = path.name.lower()
        if name in SPLITS:
            return name
        hits = [s for s in SPLITS if s in name.replace("_", "-").replace(".", "-").split("-")]
        return hits[0] if len(hits) == 1 else None

    def walk(folder: Path, depth: int) -> None:
        split = split_of(folder)
        if split is not None and looks_like_split(folder):
            if folder not in found[split]:
                found[split].append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in children:
            if not entry.name.startswith(".") and entry.is_dir():
                walk(Path(entry.path), depth + 1)

    for root in roots:
        walk(root, 0)
    return found


# --------------------------------------------------------------------------- reading


def _open_image(path: Path, what: str):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise SourceFormatError(f"{path} does not exist (expected {what}).", path=path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceFormatError(
            f"{path} cannot be read as {what} ({exc}); the file is truncated or corrupt. "
            "Extract the archive again (or download it again) and re-run the command.",
            path=path,
        ) from None
    return img


def open_image(path: Path, what: str):
    """A loaded Pillow image, or a :class:`SourceFormatError` naming the file (public name
    of the opener other glass converters share)."""
    return _open_image(path, what)


def read_pixels(path: Path, what: str) -> np.ndarray:
    """The pixels of an image file exactly as stored (16-bit colour included, which
    Pillow alone would cut to 8 bits), or a :class:`SourceFormatError` naming the file."""
    from aims.imageio import read_image

    try:
        return read_image(path)
    except FileNotFoundError:
        raise SourceFormatError(f"{path} does not exist (expected {what}).", path=path) from None
    except ValueError as exc:
        raise SourceFormatError(
            f"{path} cannot be read as {what} ({exc}); the file is truncated or corrupt. "
            "Extract the archive again (or download it again) and re-run the command.",
            path=path,
        ) from None


def _found(arr: np.ndarray) -> str:
    channels = arr.shape[2] if arr.ndim == 3 else 1
    bits = 1 if arr.dtype == bool else arr.dtype.itemsize * 8
    return f"a {channels}-channel {bits}-bit image ({arr.shape[1]}×{arr.shape[0]})"


def _read_colour(path: Path, what: str, dtypes: tuple[type, ...]) -> np.ndarray:
    arr = read_pixels(path, what)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype not in dtypes:
        raise SourceFormatError(
            f"{path} is {_found(arr)}; expected {what}. The file is not the one the release "
            "ships.",
            path=path,
        )
    return arr


def read_rgb8(path: Path, what: str = "a 3-channel 8-bit image") -> np.ndarray:
    """A 3-channel 8-bit image (TIFF or PNG) as (H, W, 3) uint8, in file channel order."""
    return _read_colour(path, what, (np.uint8,))


def read_rgb(path: Path, what: str = "a 3-channel 8- or 16-bit TIFF") -> np.ndarray:
    """A 3-channel image at its own bit depth, (H, W, 3) uint8 or uint16, losslessly: the
    release's RGB TIFFs are 16 bits per channel."""
    return _read_colour(path, what, (np.uint8, np.uint16))


def read_glass_mask(path: Path) -> np.ndarray:
    """A 0/255 glass mask (L or RGB PNG) as a (H, W) bool map, glass = value ≥ half range.

    RGB masks: channel 1, as the RGBP-Glass authors' evaluation does."""
    img = _open_image(path, "a glass mask PNG")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    arr = np.asarray(img)
    if img.mode == "1":
        return arr.astype(bool)
    if arr.ndim == 3:
        arr = arr[:, :, 1] if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.dtype == np.uint8:
        return arr >= 128
    if arr.dtype == np.uint16 or (img.mode.startswith("I;16")):
        return arr >= 32768
    raise SourceFormatError(
        f"{path} is a {img.mode} image; expected a glass mask PNG (8-bit grey or RGB, "
        "glass = 255, background = 0).",
        path=path,
    )


def read_id_map(path: Path) -> np.ndarray:
    """An instance-id PNG of a SimCMF repack (the reference code reads it with Pillow's
    ``convert('I')``): 8/16/32-bit grey or palette indices, 0 = no instance."""
    img = _open_image(path, "an instance-id mask PNG")
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise SourceFormatError(
            f"{path} is a {img.mode} image; expected an instance-id mask (one integer id "
            "per pixel, 8/16-bit grey, 0 = no instance) as the SimCMF repack ships.",
            path=path,
        )
    arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size and int(arr.min()) < 0:
        raise SourceFormatError(f"{path} holds negative instance ids.", path=path)
    return arr


def check_same_size(shape: tuple[int, ...], other: np.ndarray, path: Path, reference: Path) -> None:
    """Raise naming both files when a label/channel image does not match its image."""
    if other.shape[:2] != shape[:2]:
        h, w = shape[:2]
        raise SourceFormatError(
            f"{path} is {other.shape[1]}×{other.shape[0]} but its image {reference} is "
            f"{w}×{h}; every file of a sample must have the image's size. The file does not "
            "belong to this sample (or is damaged): replace it from the original archive.",
            path=path,
        )


# --------------------------------------------------------------------------- stream


@dataclass
class _Pending(Sample):
    """A sample whose files are read in the worker (``derive``), so decoding the
    3 TIFFs + mask runs in parallel and only paths cross the process boundary."""

    files: dict[str, str] = field(default_factory=dict)
    label: str = ORIGINAL
    #: release instances: the JSON file, its entry for this frame and the frame's polygons
    coco_json: str = ""
    coco_image: CocoImage | None = None
    annotations: tuple[CocoAnnotation, ...] = ()


@dataclass(frozen=True)
class SplitDir:
    split: str
    path: Path
    kind: str  # ORIGINAL (mask/) or REPACK (instance_mask/)

    def instances_file(self) -> Path | None:
        """The release's ``instances_<split>.json`` in the split folder, or None. Anything
        by that name counts (a link, a folder): reading it then fails with a clear error
        instead of quietly falling back to connected components."""
        path = self.path / INSTANCES_JSON.format(split=self.split)
        return path if os.path.lexists(path) else None


def _classify(folder: Path) -> str | None:
    if (folder / FILES["mask"][0]).is_dir():
        return ORIGINAL
    if (folder / FILES["instance_mask"][0]).is_dir():
        return REPACK
    return None


def locate(source: Path | None, *, downloader: Downloader | None = None) -> dict[str, SplitDir]:
    """The train and test folders of an RGBP-Glass source, whatever shape it came in."""
    roots, archives = source_roots(source, CONVERTER.name, source_files(),
                                   continue_command=CONTINUE_COMMAND)

    def looks(folder: Path) -> bool:
        return (folder / FILES["rgb"][0]).is_dir()

    found = find_split_dirs(roots, looks)
    if archives and not all(found[s] for s in SPLITS):
        roots = roots + [extract_archive(a, CONVERTER.name) for a in archives]
        found = find_split_dirs(roots, looks)
    chosen: dict[str, SplitDir] = {}
    for split in SPLITS:
        candidates = found[split]
        if not candidates:
            searched = "; ".join(f"{r} holds {top_entries(r)}" for r in roots) or "nothing"
            other = [s for s in SPLITS if found[s]]
            raise SourceFormatError(
                f"RGBP-Glass: no {split} split found. Expected a folder `{split}/` holding "
                f"`image/<id>_rgb.tiff`, `aolp/`, `dolp/` and `mask/` (the release: "
                f"`{ROOT_FOLDER}/{split}/`; the SimCMF repack: `{REPACK_FOLDER}/{split}/` with "
                f"`instance_mask/`), up to 4 levels below the source. Found: {searched}"
                + (f" (the {other[0]} split is at {found[other[0]][0]})." if other else ".")
                + " The train and test splits come as two archives: pass a folder holding both "
                f"(or both extracted), e.g. `{CONTINUE_COMMAND}`.",
                path=source,
            )
        kinds = {c: _classify(c) for c in candidates}
        originals = [c for c in candidates if kinds[c] == ORIGINAL]
        pick = originals or [c for c in candidates if kinds[c] == REPACK] or candidates
        if len(pick) > 1:
            raise SourceFormatError(
                f"RGBP-Glass: the {split} split was found in {len(pick)} places "
                f"({', '.join(map(str, pick))}); pass the one to use with --source.",
                path=source,
            )
        folder = pick[0]
        kind = kinds[folder]
        if kind is None:
            raise SourceFormatError(
                f"RGBP-Glass: {folder} has `image/` but no label folder: expected `mask/` "
                f"(the release) or `instance_mask/` (the SimCMF repack); found "
                f"{top_entries(folder)}.",
                path=folder,
            )
        for column in ("aolp", "dolp"):
            if not (folder / FILES[column][0]).is_dir():
                raise SourceFormatError(
                    f"RGBP-Glass: {folder} has no `{FILES[column][0]}/` folder (found "
                    f"{top_entries(folder)}); every split needs image/, aolp/, dolp/ and "
                    "mask/. The extraction is incomplete: extract the archive again.",
                    path=folder,
                )
        chosen[split] = SplitDir(split, folder, kind)
    return chosen


def _list_split(split_dir: SplitDir) -> list[tuple[str, dict[str, Path]]]:
    """(id, {column: path}) of every sample of a split, sorted by id; every file checked
    to exist so a missing one fails before any conversion starts."""
    image_dir = split_dir.path / FILES["rgb"][0]
    suffix = FILES["rgb"][1]
    ids = sorted(name[: -len(suffix)] for name in os.listdir(image_dir)
                 if name.endswith(suffix) and not name.startswith("."))
    if not ids:
        raise SourceFormatError(
            f"RGBP-Glass: {image_dir} holds no `<id>{suffix}` files (found "
            f"{top_entries(image_dir)}); the {split_dir.split} split is empty. Extract the "
            f"{split_dir.split} archive again.",
            path=image_dir,
        )
    label = "mask" if split_dir.kind == ORIGINAL else "instance_mask"
    out, missing = [], []
    for image_id in ids:
        files = {}
        for column in ("rgb", "aolp", "dolp", label):
            folder, sfx = FILES[column]
            files[column] = split_dir.path / folder / f"{image_id}{sfx}"
        if image_id not in BROKEN_IDS:
            missing += [p for p in files.values() if not p.is_file()]
        out.append((image_id, files))
    if missing:
        raise SourceFormatError(
            f"RGBP-Glass: {missing[0]} does not exist, but its image "
            f"{image_dir / (missing[0].name.split('_')[0] + suffix)} does"
            + (f" ({len(missing)} files are missing in {split_dir.path})" if len(missing) > 1 else "")
            + ". Every sample needs image/<id>_rgb.tiff, aolp/<id>_aolp.tiff, "
            f"dolp/<id>_dolp.tiff and {FILES[label][0]}/<id>{FILES[label][1]}; the extraction "
            "is incomplete: extract the archive again.",
            path=missing[0],
        )
    return out


@dataclass(frozen=True)
class InstancePlan:
    """Where one split's instances come from: ``source`` is :data:`RELEASE_COCO` (with the
    parsed ``coco`` file), :data:`COMPONENTS` or :data:`REPACK_IDS`; ``reason`` says why,
    for the card."""

    source: str
    reason: str
    coco: CocoInstances | None = None


def _check_glass_only(coco: CocoInstances) -> None:
    used = {coco.categories[a.category_id] for anns in coco.annotations.values() for a in anns}
    if used - {GLASS_CATEGORY}:
        raise SourceFormatError(
            f"{coco.path}: annotations of categories {sorted(used - {GLASS_CATEGORY})}; the "
            f"release has one category, {GLASS_CATEGORY!r}. The file is not RGBP-Glass's.",
            path=coco.path,
        )


def plan_instances(split_dir: SplitDir, mode: str) -> InstancePlan:
    """Choose a split's instance source: the repack's ids; else the release's JSON unless
    ``mode`` is ``components`` or the split has none (then connected components)."""
    if split_dir.kind == REPACK:
        return InstancePlan(REPACK_IDS, "the SimCMF repack's instance_mask/ ids, kept as given")
    json_path = split_dir.instances_file()
    if mode == "components":
        return InstancePlan(COMPONENTS, "connected components of mask/, as requested "
                                        "(instances='components')")
    if json_path is None:
        log.warning("RGBP-Glass: %s has no %s; its instances are connected components of mask/ "
                    "(adjacent panes merge)", split_dir.path,
                    INSTANCES_JSON.format(split=split_dir.split))
        return InstancePlan(COMPONENTS, f"connected components of mask/: the split has no "
                                        f"{INSTANCES_JSON.format(split=split_dir.split)}")
    require_pycocotools()
    coco = load_coco_instances(json_path)
    _check_glass_only(coco)
    return InstancePlan(RELEASE_COCO, f"the release's {json_path.name} ({coco.num_annotations} "
                                      f"polygons over {len(coco.images)} images)", coco)


def _coco_entries(plan: InstancePlan, split: str,
                  samples: list[tuple[str, dict[str, Path]]]) -> dict[str, CocoImage]:
    """The JSON entry of every listed frame (broken ids excepted): a frame the JSON does not
    list is an error, as its instances are unknown. Entries without a frame (a partial copy
    of the release) are fine."""
    coco = plan.coco
    assert coco is not None
    suffix = FILES["rgb"][1]
    found = {i: coco.image_named(f"{i}{suffix}") for i, _ in samples}
    missing = [i for i, img in found.items() if img is None and i not in BROKEN_IDS]
    if missing:
        example = next(iter(coco.images.values()), None)
        raise SourceFormatError(
            f"RGBP-Glass: {coco.path} lists no image `{missing[0]}{suffix}`"
            + (f" ({len(missing)} of the {len(samples)} {split} frames are missing from it)"
               if len(missing) > 1 else "")
            + (f"; its file names look like `{example.file_name}`" if example else "; it lists no images")
            + ". The instances file does not belong to these images: extract it again from the "
            "same archive, or prepare with connected components of the masks "
            "(instances='components').",
            path=coco.path,
        )
    return {i: img for i, img in found.items() if img is not None}


class _RGBPStream(SampleStream):
    def __init__(self, splits: dict[str, SplitDir], plans: dict[str, InstancePlan]) -> None:
        self._order: list[_Pending] = []
        for split in SPLITS:
            samples = _list_split(splits[split])
            plan = plans[split]
            entries = _coco_entries(plan, split, samples) if plan.coco is not None else {}
            for image_id, files in samples:
                self._order.append(self._pending(image_id, split, files, splits[split].kind,
                                                 plan, entries.get(image_id)))
        seen: dict[str, str] = {}
        for p in self._order:
            if p.image_id in seen:
                raise SourceFormatError(
                    f"RGBP-Glass: id {p.image_id} is in both the {seen[p.image_id]} and the "
                    f"{p.split} split; the two archives overlap.",
                )
            seen[p.image_id] = p.split

    @staticmethod
    def _pending(image_id: str, split: str, files: dict[str, Path], kind: str,
                 plan: InstancePlan, entry: CocoImage | None) -> _Pending:
        pending = _Pending(image_id=image_id, split=split, images={},
                           files={k: str(v) for k, v in files.items()}, label=kind)
        if plan.coco is not None and entry is not None:
            pending.coco_json = str(plan.coco.path)
            pending.coco_image = entry
            pending.annotations = plan.coco.annotations_of(entry.id)
        return pending

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Sample]:
        for pending in self._order:
            if pending.image_id in BROKEN_IDS:
                log.warning("RGBP-Glass: skipping %s, one of the two ids the authors mark as "
                            "broken", pending.image_id)
                self.skipped.append(Skipped(pending.image_id, pending.files["rgb"],
                                            "known broken sample (skipped by the RGBP-Glass authors)"))
                continue
            yield pending


def coco_sample(pending: _Pending, images: dict[str, np.ndarray], image: Path) -> Sample:
    """The label half of a sample whose instances come from the release's JSON: its
    polygons rasterised at the frame size (ids and overlap rule: :mod:`aims.coco_instances`),
    every instance of class glass."""
    entry = pending.coco_image
    assert entry is not None
    h, w = images["rgb"].shape[:2]
    if (entry.height, entry.width) != (h, w):
        raise SourceFormatError(
            f"RGBP-Glass: {pending.coco_json} gives image id {entry.id} ({entry.file_name}) the "
            f"size {entry.width}×{entry.height}, but {image} is {w}×{h}; the polygons would not "
            "line up. The instances file does not belong to these images: extract both from "
            "the same archive, or prepare with instances='components'.",
            path=Path(pending.coco_json),
        )
    id_map = rasterise_instances(pending.annotations, h, w)
    category = {k: 1 for k in range(1, len(pending.annotations) + 1)}
    return Sample(pending.image_id, pending.split, images, instance_map=id_map,
                  instance_category=category)


def read_sample(pending: _Pending) -> Sample:
    """Decode one sample's files: RGB at its bit depth, AoLP/DoLP (channels reversed, see
    the module docstring) and the label (release polygons, glass mask → semantic, or
    repack instance ids)."""
    files = {k: Path(v) for k, v in pending.files.items()}
    rgb = read_rgb(files["rgb"], "a 3-channel 8- or 16-bit TIFF")
    images = {"rgb": rgb}
    for column in ("aolp", "dolp"):
        arr = read_rgb8(files[column], "a 3-channel 8-bit TIFF")
        check_same_size(rgb.shape, arr, files[column], files["rgb"])
        images[column] = np.ascontiguousarray(arr[:, :, ::-1])
    if pending.coco_image is not None:
        # the mask is not needed for the polygons, but a mask of another size means the
        # sample's files do not belong together
        check_same_size(rgb.shape, read_glass_mask(files["mask"]), files["mask"], files["rgb"])
        return coco_sample(pending, images, files["rgb"])
    if pending.label == ORIGINAL:
        return glass_sample(pending.image_id, pending.split, images, files["mask"], files["rgb"])
    return glass_sample(pending.image_id, pending.split, images, files["instance_mask"], files["rgb"],
                        instance_ids=True)


def glass_sample(image_id: str, split: str, images: dict[str, np.ndarray], label: Path, image: Path,
                 *, instance_ids: bool = False) -> Sample:
    """The label half of a glass sample (RGBP-Glass and RGB-T Glass alike): a glass mask
    (1-bit, or 0/255) becomes one semantic class for connected components; a repack's
    instance-id mask is kept as given, every instance of class glass."""
    shape = images["rgb"].shape
    if not instance_ids:
        glass = read_glass_mask(label)
        check_same_size(shape, glass, label, image)
        return Sample(image_id, split, images, semantic=glass.astype(np.uint8))
    ids = read_id_map(label)
    check_same_size(shape, ids, label, image)
    return Sample(image_id, split, images, instance_map=ids,
                  instance_category={int(i): 1 for i in np.unique(ids) if i != 0})


_SOURCE_TEXT = {
    RELEASE_COCO: "the release's COCO polygons",
    COMPONENTS: "8-connected components of mask/",
    REPACK_IDS: "the SimCMF repack's instance_mask/ ids",
}


class RGBPGlass(SourceConverter):
    """RGBP-Glass. ``instances``: ``"release"`` (the release's instances JSON of each split
    where present, connected components otherwise) or ``"components"`` (always connected
    components of the masks, the result before the JSON was used)."""

    name = "rgbp_glass"
    configs = ("polarization",)
    ignore_labels = (0,)
    connectivity = 8
    info = SourceInfo(
        name="RGBP-Glass (PGSNet)",
        homepage="https://github.com/Mhaiyang/CVPR2022_PGSNet",
        license="non-commercial research use only (see the release's LICENSE)",
        citation=CITATION,
        notes=(
            "RGBP-Glass: 4511 RGB + trichromatic AoLP/DoLP images from a colour polarization "
            "camera with glass masks and COCO pane outlines; official train/test folders "
            "(3207 / 1304).",
        ),
    )

    def __init__(self, instances: str = "release") -> None:
        if instances not in INSTANCE_MODES:
            raise AimsError(f"RGBP-Glass: instances must be one of {', '.join(INSTANCE_MODES)}, "
                            f"got {instances!r}")
        self.instances = instances
        self._kinds: dict[str, str] = {}
        self._plans: dict[str, InstancePlan] = {}

    @property
    def instance_sources(self) -> dict[str, str]:
        """Split → where its instances came from in the last :meth:`open`
        (:data:`RELEASE_COCO`, :data:`COMPONENTS` or :data:`REPACK_IDS`)."""
        return {s: p.source for s, p in self._plans.items()}

    def category_names(self, configs: Sequence[str] = ()) -> list[str]:
        return ["background", "glass"]

    def _input_note(self) -> str:
        used = sorted(set(self._kinds.values()))
        if used == [REPACK]:
            return "Input: the SimCMF repack `pgsnet` (instance_mask/ ids kept as given, class glass)."
        if used == [ORIGINAL] or not used:
            return "Input: the original RGBP-Glass release (image/, aolp/, dolp/, mask/)."
        return "Input per split: " + ", ".join(
            f"{s} = {'SimCMF repack instance_mask/' if k == REPACK else 'original mask/'}"
            for s, k in sorted(self._kinds.items()))

    def _instance_note(self) -> str:
        if not self._plans:
            planned = RELEASE_COCO if self.instances == "release" else COMPONENTS
            return f"Instance source: {_SOURCE_TEXT[planned]}."
        sources = {p.source for p in self._plans.values()}
        per_split = "; ".join(f"{s}: {self._plans[s].reason}" for s in SPLITS if s in self._plans)
        text = f"Instance source per split: {per_split}."
        if RELEASE_COCO in sources:
            text += (" Polygons rasterised with pycocotools at the frame size; instance id k = "
                     "the k-th annotation of the frame in ascending COCO annotation id; a pixel "
                     "in several polygons goes to the smallest (then the lowest id); polygons "
                     "covering no pixel give no instance. Unlike connected components of the "
                     "mask, the polygons keep adjacent panes apart.")
        return text

    def describe(self, config: str) -> ConfigDescription:
        if config != "polarization":
            raise KeyError(config)
        from aims.schema import get_config

        return ConfigDescription(
            config="polarization",
            description="RGBP-Glass: 16-bit RGB with trichromatic angle and degree of linear "
                        "polarization; glass instances.",
            columns=get_config("polarization").units_text(),
            notes=(
                self._input_note(),
                self._instance_note(),
                "Components (where used): glass = mask value 1 of the 1-bit masks (≥ 128 for "
                "8-bit masks, channel 1 of RGB masks, as in the authors' evaluation).",
                "aims.modality_tensor(row, 'polarization') = [RGB / 65535, AoLP / 255, "
                "DoLP / 255] (9 channels in [0, 1], R,G,B within each). SimCMF's loader feeds "
                "AoLP/DoLP in file (B,G,R) order.",
            ),
        )

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        return read_sample(sample) if isinstance(sample, _Pending) else sample

    def open(self, configs: Sequence[str], *, source: Path | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        splits = locate(source, downloader=downloader)
        plans = {s: plan_instances(d, self.instances) for s, d in splits.items()}
        stream = _RGBPStream(splits, plans)
        self._kinds = {s: d.kind for s, d in splits.items()}
        # kept without the parsed file: the converter is pickled to every worker task
        self._plans = {s: dataclasses.replace(p, coco=None) for s, p in plans.items()}
        return stream

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        layout: str = ORIGINAL) -> Path:
        from aims.converters.rgbp_glass_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution, layout=layout)


CONVERTER = RGBPGlass()
