"""RGBP-Glass (Mei et al., CVPR 2022, "PGSNet") → config ``polarization``.

The release is two archives on Google Drive (train and test; names, sizes and checksums
are not published, and Drive needs a browser for large files), so both are **manual
downloads**. After extraction the authors' README shows::

    RGBP-Glass/
      train/{image,aolp,dolp,mask,edge,reflection}/   instances_train.json
      test/{image,aolp,dolp,mask}/                     instances_test.json
      LICENSE

with one 14-digit id per sample: ``image/<id>_rgb.tiff``, ``aolp/<id>_aolp.tiff``,
``dolp/<id>_dolp.tiff`` (3-channel 8-bit TIFFs) and ``mask/<id>_mask.png`` (glass = 255).
The split is the folder. ``edge``, ``reflection`` and the JSON files are not used.

``--source`` may be the downloaded archive(s) (zip or tar, recognised by content, not by
extension), a folder holding the two archives side by side, or the extracted folder in
any of the shapes seen: ``RGBP-Glass/{train,test}``, ``{train,test}`` at the top, each
split in its own archive or folder. The SimCMF repack ``pgsnet/{train,test}/`` (same
images, labels as instance-id maps in ``instance_mask/<id>_instance_mask.png``) is
accepted too; its ids are kept as given. When a split has the original ``mask/`` folder
it is used (our protocol starts from the original semantic masks); the card records which
input each split came from.

Channel order of ``aolp`` and ``dolp`` (decided here, stated in the card): the TIFFs are
trichromatic (one AoLP/DoLP per colour channel) and the authors' own loader swaps
channels 0 and 2 after reading them with Pillow, i.e. the files hold B,G,R. We store the
file's channels **reversed** (stored channel k = file channel 2−k), which is the R,G,B
order the PGSNet network is fed. The SimCMF loader does *not* swap, so its channels 3–5
and 6–8 are our AoLP and DoLP reversed. Values are stored as the release's 8-bit codes;
the mapping to radians / degree of polarization (likely AoLP [0, π) → 0..255 and DoLP
[0, 1] → 0..255) is not published, so :func:`aims.modality_tensor` returns code / 255.

Masks: PNG, L or RGB; as in the authors' evaluation channel 1 of an RGB mask is taken and
glass = value ≥ 128 (> 0.5 after scaling to [0, 1]). One class (glass) → instances by
8-connected components. The paper's authors drop two broken ids
(``20210808013065``, ``20210811002205``); we skip them with a warning and list them as
skipped in the summary and the card.

The helpers for locating a manual-download source (archive or folder) and reading the
glass masks are shared with :mod:`aims.converters.thermal_glass`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def _top_entries(folder: Path, limit: int = 20) -> str:
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


def _extract(archive: Path, source_name: str) -> Path:
    """Extract a zip/tar archive (any extension) into the download cache, once."""
    from aims.extract import safe_extract
    from aims.paths import downloads_dir

    target = downloads_dir(source_name) / "extracted" / archive.name
    log.info("extracting %s into %s", archive, target)
    return safe_extract(archive, target, progress=True)


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


def read_rgb8(path: Path, what: str = "a 3-channel 8-bit image") -> np.ndarray:
    """A 3-channel 8-bit image (TIFF or PNG) as (H, W, 3) uint8, in file channel order."""
    img = _open_image(path, what)
    if img.mode != "RGB":
        raise SourceFormatError(
            f"{path} is a {img.mode} image ({img.size[0]}×{img.size[1]}); expected {what} "
            "(Pillow mode RGB). The file is not the one the release ships.",
            path=path,
        )
    return np.asarray(img)


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


@dataclass(frozen=True)
class SplitDir:
    split: str
    path: Path
    kind: str  # ORIGINAL (mask/) or REPACK (instance_mask/)


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
        roots = roots + [_extract(a, CONVERTER.name) for a in archives]
        found = find_split_dirs(roots, looks)
    chosen: dict[str, SplitDir] = {}
    for split in SPLITS:
        candidates = found[split]
        if not candidates:
            searched = "; ".join(f"{r} holds {_top_entries(r)}" for r in roots) or "nothing"
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
                f"{_top_entries(folder)}.",
                path=folder,
            )
        for column in ("aolp", "dolp"):
            if not (folder / FILES[column][0]).is_dir():
                raise SourceFormatError(
                    f"RGBP-Glass: {folder} has no `{FILES[column][0]}/` folder (found "
                    f"{_top_entries(folder)}); every split needs image/, aolp/, dolp/ and "
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
            f"{_top_entries(image_dir)}); the {split_dir.split} split is empty. Extract the "
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


class _RGBPStream(SampleStream):
    def __init__(self, splits: dict[str, SplitDir]) -> None:
        self._order: list[tuple[str, str, dict[str, Path], str]] = []
        for split in SPLITS:
            for image_id, files in _list_split(splits[split]):
                self._order.append((image_id, split, files, splits[split].kind))
        seen: dict[str, str] = {}
        for image_id, split, *_ in self._order:
            if image_id in seen:
                raise SourceFormatError(
                    f"RGBP-Glass: id {image_id} is in both the {seen[image_id]} and the "
                    f"{split} split; the two archives overlap.",
                )
            seen[image_id] = split

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Sample]:
        for image_id, split, files, kind in self._order:
            if image_id in BROKEN_IDS:
                log.warning("RGBP-Glass: skipping %s, one of the two ids the authors mark as "
                            "broken", image_id)
                self.skipped.append(Skipped(image_id, str(files["rgb"]),
                                            "known broken sample (skipped by the RGBP-Glass authors)"))
                continue
            yield _Pending(image_id=image_id, split=split, images={},
                           files={k: str(v) for k, v in files.items()}, label=kind)


def read_sample(pending: _Pending) -> Sample:
    """Decode one sample's files: RGB, AoLP/DoLP (channels reversed, see the module
    docstring) and the label (glass mask → semantic, or repack instance ids)."""
    files = {k: Path(v) for k, v in pending.files.items()}
    rgb = read_rgb8(files["rgb"], "a 3-channel 8-bit TIFF")
    images = {"rgb": rgb}
    for column in ("aolp", "dolp"):
        arr = read_rgb8(files[column], "a 3-channel 8-bit TIFF")
        check_same_size(rgb.shape, arr, files[column], files["rgb"])
        images[column] = np.ascontiguousarray(arr[:, :, ::-1])
    if pending.label == ORIGINAL:
        return glass_sample(pending.image_id, pending.split, images, files["mask"], files["rgb"])
    return glass_sample(pending.image_id, pending.split, images, files["instance_mask"], files["rgb"],
                        instance_ids=True)


def glass_sample(image_id: str, split: str, images: dict[str, np.ndarray], label: Path, image: Path,
                 *, instance_ids: bool = False) -> Sample:
    """The label half of a glass sample (RGBP-Glass and RGB-T Glass alike): a 0/255 mask
    becomes one semantic class for connected components; a repack's instance-id mask is
    kept as given, every instance of class glass."""
    shape = images["rgb"].shape
    if not instance_ids:
        glass = read_glass_mask(label)
        check_same_size(shape, glass, label, image)
        return Sample(image_id, split, images, semantic=glass.astype(np.uint8))
    ids = read_id_map(label)
    check_same_size(shape, ids, label, image)
    return Sample(image_id, split, images, instance_map=ids,
                  instance_category={int(i): 1 for i in np.unique(ids) if i != 0})


class RGBPGlass(SourceConverter):
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
            "camera with glass masks; official train/test folders (3207 / 1304).",
        ),
    )

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}

    def category_names(self, configs: Sequence[str] = ()) -> list[str]:
        return ["background", "glass"]

    def describe(self, config: str) -> ConfigDescription:
        if config != "polarization":
            raise KeyError(config)
        used = sorted(set(self._kinds.values()))
        if used == [REPACK]:
            source_note = ("Input: the SimCMF repack `pgsnet` (instance_mask/ ids kept as given, "
                           "class glass).")
        elif used == [ORIGINAL] or not used:
            source_note = ("Input: the original RGBP-Glass release (mask/ glass masks, "
                           "8-connected components = instances).")
        else:
            source_note = "Input per split: " + ", ".join(
                f"{s} = {'SimCMF repack instance_mask/' if k == REPACK else 'original mask/'}"
                for s, k in sorted(self._kinds.items()))
        return ConfigDescription(
            config="polarization",
            description="RGBP-Glass: RGB with trichromatic angle and degree of linear "
                        "polarization; glass instances.",
            columns={
                "rgb": "the release's image/<id>_rgb.tiff, 8-bit RGB PNG",
                "aolp": "angle of linear polarization per colour channel, 8-bit RGB PNG holding "
                        "the release's 8-bit codes in R,G,B order (stored channel k = channel 2−k "
                        "of aolp/<id>_aolp.tiff, which is B,G,R); code → radians not published "
                        "(likely [0, π) → 0..255)",
                "dolp": "degree of linear polarization per colour channel, 8-bit RGB PNG holding "
                        "the release's 8-bit codes in R,G,B order (stored channel k = channel 2−k "
                        "of dolp/<id>_dolp.tiff); likely [0, 1] → 0..255",
            },
            notes=(
                source_note,
                "Glass = mask value ≥ 128 (channel 1 of RGB masks), as in the authors' evaluation.",
                "aims.modality_tensor(row, 'polarization') = [RGB, AoLP, DoLP] / 255 (9 channels, "
                "R,G,B within each). SimCMF's loader feeds AoLP/DoLP in file (B,G,R) order.",
            ),
        )

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        return read_sample(sample) if isinstance(sample, _Pending) else sample

    def open(self, configs: Sequence[str], *, source: Path | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        splits = locate(source, downloader=downloader)
        self._kinds = {s: d.kind for s, d in splits.items()}
        return _RGBPStream(splits)

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        layout: str = ORIGINAL) -> Path:
        from aims.converters.rgbp_glass_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution, layout=layout)


CONVERTER = RGBPGlass()
