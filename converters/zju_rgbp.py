"""ZJU-RGBP (Xiang, Yang, Wang, Optics Express 2021) → config ``polarization-zju``.

The release is one RAR archive (``RGB-P-dataset.rar``, Hugging Face mirror, pinned
sha256) holding, for every scene, four 8-bit RGB PNGs taken behind a linear polarizer at
0°, 45°, 90° and 135°, and a VOC-palette label PNG (index = class id, 0 = unlabelled).
The archive is extracted with :func:`aims.extract.safe_extract` (RAR backend: rarfile +
bsdtar/unar) into the download cache; a folder already extracted by the user, or the
SimCMF repack ``zju-rgbp/``, is accepted with ``--source``.

Layout (the folder name above ``train``/``val`` is not published, so the folder that
holds both is searched for)::

    <root>/{train,val}/{0,45,90,135}/<key>_<θ>°.png   (literal U+00B0 in the names)
    <root>/{train,val}/{0,45,90,135}/<key>_<θ>.png    (the "<stem>_image0_0.png" naming)
    <root>/{train,val}/label/<key>.png                 semantic VOC-palette labels
    <root>/{train,val}/label_sam/<key>.png             SimCMF repack: instance ids

Both namings are one rule: the label ``<key>.png`` owns the angle images ``<key>_<θ>°.png``
or ``<key>_<θ>.png`` (so ``label/<stem>_image0.png`` owns ``0/<stem>_image0_0.png``).
Every label must have all four angle images and every angle image a label; anything else
stops with the exact file expected and what was found. ``val`` is the test split.

Stored columns: the four angle images losslessly (``angle_0`` … ``angle_135``) and ``rgb``
= the unpolarized intensity estimate round((I0 + I45 + I90 + I135) / 4) per channel, so
RGB baselines have an image. The 9-channel polarization tensor is computed at load time by
:func:`aims.modality_tensor` (``polarization-zju``, or ``polarization-zju-simcmf`` for the
reference code's variant); see :mod:`aims.modalities` for the formulas and scaling.

Listing runs in the main process; decoding happens in :meth:`ZJURGBP.load` (a worker
process), so every core decodes PNGs. The facts (the archive and its checksum, classes,
column units …) are in :mod:`aims.converters.zju_rgbp_record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aims.converters.base import Downloader, Listing, Sample, SampleRef, SourceConverter
from aims.converters.locate import describe_folder, extract_archive, fetch_declared, find_folder, open_image
from aims.converters.record import REPACK_IDS, InstanceSource
from aims.converters.zju_rgbp_record import ANGLES, ARCHIVE, CLASS_NAMES, RECORD, SHA256, URL, VOID
from aims.errors import AimsError, SourceFormatError, UnreadableSample

DEGREE = "\u00b0"
#: source folder -> official split
SPLITS = {"train": "train", "val": "test"}
SEMANTIC_LABELS = "label"
INSTANCE_LABELS = "label_sam"  # the SimCMF repack
#: the folder of the download cache the archive is extracted into
EXTRACTED_FOLDER = "RGB-P-dataset"

__all__ = ["ANGLES", "ARCHIVE", "CLASS_NAMES", "CONVERTER", "DEGREE", "SHA256", "URL", "ZJURGBP",
           "list_root", "voc_palette"]


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (768 values), as VOC-style label PNGs carry it."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


# --------------------------------------------------------------------------- layout


def _holds_splits(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "val").is_dir()


def find_root(path: Path, depth: int = 3) -> Path | None:
    """The folder under ``path`` (itself included, at most ``depth`` levels down) that
    holds both ``train`` and ``val``; None when there is none. Several → error."""
    return find_folder(path, _holds_splits, max_depth=depth, what="ZJU-RGBP copies")


@dataclass(frozen=True)
class Entry:
    """One scene: its four angle images and its label."""

    key: str
    split: str  # official split
    angles: dict[int, Path]
    label: Path
    label_kind: str  # SEMANTIC_LABELS or INSTANCE_LABELS


def scan_split(root: Path, folder: str) -> tuple[list[Entry], str]:
    """Match labels and angle images of one split folder (``train`` or ``val``)."""
    base = root / folder
    if not base.is_dir():
        raise AimsError(
            f"ZJU-RGBP at {root} has no {folder}/ folder (found: {describe_folder(root)}); "
            f"expected train/ and val/, each with 0/, 45/, 90/, 135/ and label/. The archive "
            "may be incomplete: delete it and download it again.", path=root)
    kinds = [k for k in (SEMANTIC_LABELS, INSTANCE_LABELS) if (base / k).is_dir()]
    missing_dirs = [f"{a}/" for a in ANGLES if not (base / str(a)).is_dir()]
    if not kinds or missing_dirs:
        need = ", ".join(missing_dirs + ([] if kinds else ["label/ (or label_sam/)"]))
        raise AimsError(
            f"{base} lacks {need} (found: {describe_folder(base)}); expected the four angle "
            "folders 0/, 45/, 90/, 135/ and label/ (label_sam/ in the SimCMF repack).",
            path=base)
    kind = kinds[0]  # semantic labels win when both are present: they carry classes
    labels = sorted(p for p in (base / kind).iterdir() if p.suffix.lower() == ".png")
    if not labels:
        raise AimsError(
            f"{base / kind} holds no label PNG (found: {describe_folder(base / kind)}); the "
            f"{folder} split must not be empty.", path=base / kind)
    present = {a: {p.name for p in (base / str(a)).iterdir()} for a in ANGLES}
    claimed: dict[int, set[str]] = {a: set() for a in ANGLES}
    entries, problems = [], []
    for label in labels:
        key = label.stem
        angles, lacking = {}, []
        for a in ANGLES:
            options = [f"{key}_{a}{DEGREE}.png", f"{key}_{a}.png"]
            hits = [o for o in options if o in present[a]]
            if len(hits) > 1:
                problems.append(f"{base / str(a)} holds both {hits[0]} and {hits[1]} for {key}")
            if hits:
                angles[a] = base / str(a) / hits[0]
                claimed[a].add(hits[0])
            else:
                lacking.append((a, options))
        if lacking:
            have = ",".join(f"{a}{DEGREE}" for a in angles) or "no angle image"
            for a, options in lacking:
                problems.append(f"{key} (label {label}) has {have} but no {a}{DEGREE} image in "
                                f"{base / str(a)}/ (expected {options[0]} or {options[1]})")
            continue
        entries.append(Entry(key, SPLITS[folder], angles, label, kind))
    for a in ANGLES:
        orphans = sorted(n for n in present[a] - claimed[a] if n.lower().endswith(".png"))
        for name in orphans[:3]:
            problems.append(f"{base / str(a) / name} has no label in {base / kind}/ (expected "
                            f"a label named after the part before _{a})")
        if len(orphans) > 3:
            problems.append(f"… and {len(orphans) - 3} more unlabelled images in {base / str(a)}/")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise SourceFormatError(
            f"ZJU-RGBP {folder} split at {base} is incomplete or inconsistent: {shown}. Every "
            f"label <key>.png needs <key>_<θ>{DEGREE}.png (or <key>_<θ>.png) in each of 0/, 45/, "
            "90/, 135/; re-extract the archive.", path=base)
    return entries, kind


# --------------------------------------------------------------------------- reading


def read_angle(path: Path) -> np.ndarray:
    img = open_image(path, "an angle image PNG")
    if img.mode != "RGB":
        raise UnreadableSample(f"{path}: expected an 8-bit RGB PNG, found PIL mode {img.mode}.", path=path)
    return np.asarray(img)


def read_semantic(path: Path) -> np.ndarray:
    """Class ids of a VOC-palette label (mode P: the index is the class; mode L: the
    value; RGB: the VOC colour is mapped back to its index)."""
    img = open_image(path, "a label PNG")
    if img.mode in ("P", "L"):
        arr = np.asarray(img).astype(np.uint8)
    elif img.mode == "RGB":
        rgb = np.asarray(img).astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = np.asarray(voc_palette(), dtype=np.int64).reshape(-1, 3)
        lut = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(pal[: len(CLASS_NAMES)])}
        lut[int((pal[VOID][0] << 16) | (pal[VOID][1] << 8) | pal[VOID][2])] = VOID
        values = np.unique(code)
        unknown = [v for v in values.tolist() if v not in lut]
        if unknown:
            cols = ", ".join(f"({v >> 16},{(v >> 8) & 255},{v & 255})" for v in unknown[:6])
            raise UnreadableSample(
                f"{path}: RGB label colours {cols} are not VOC colours of the classes "
                f"0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)}).", path=path)
        idx = np.searchsorted(values, code)
        arr = np.asarray([lut[v] for v in values.tolist()], dtype=np.uint8)[idx]
    else:
        raise UnreadableSample(f"{path}: expected a palette (P) label PNG, found PIL mode {img.mode}.",
                               path=path)
    bad = sorted(set(np.unique(arr).tolist()) - set(range(len(CLASS_NAMES))) - {VOID})
    if bad:
        raise UnreadableSample(
            f"{path}: label values {', '.join(map(str, bad))} are outside the ZJU-RGBP class "
            f"list 0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)}; {VOID} = void). The "
            "file is not a ZJU-RGBP label.", path=path)
    return arr


def read_instances(path: Path) -> np.ndarray:
    img = open_image(path, "an instance-id PNG")
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise UnreadableSample(f"{path}: expected a single-channel instance-id PNG, found shape "
                               f"{arr.shape}.", path=path)
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
        raise UnreadableSample(f"{path}: instance ids outside 0..65535.", path=path)
    return arr.astype(np.uint16)


def unpolarized_rgb(angles: Sequence[np.ndarray]) -> np.ndarray:
    """round((I0 + I45 + I90 + I135) / 4) per channel, uint8 (half rounds up)."""
    total = sum(a.astype(np.uint16) for a in angles)
    return ((total + 2) // 4).astype(np.uint8)


@dataclass(frozen=True)
class ZJURef(SampleRef):
    """A scene not read yet: the worker reads it (:meth:`ZJURGBP.load`)."""

    entry: Entry | None = None


@dataclass
class ZJUListing(Listing):
    root: str = ""
    label_kind: str = SEMANTIC_LABELS


def read_entry(entry: Entry, image_id: str) -> Sample:
    """Decode and check one scene."""
    angles = [read_angle(entry.angles[a]) for a in ANGLES]
    if entry.label_kind == SEMANTIC_LABELS:
        label = read_semantic(entry.label)
    else:
        label = read_instances(entry.label)
    sizes = {f"{entry.angles[a].name}": img.shape[:2] for a, img in zip(ANGLES, angles)}
    sizes[f"label {entry.label.name}"] = label.shape[:2]
    if len(set(sizes.values())) != 1:
        found = ", ".join(f"{k} {w}×{h}" for k, (h, w) in sizes.items())
        raise UnreadableSample(
            f"ZJU-RGBP scene {entry.key} ({entry.label}): sizes differ ({found}); the four angle "
            "images and the label must have the same size.", path=entry.label)
    images = {"rgb": unpolarized_rgb(angles)}
    images.update({f"angle_{a}": img for a, img in zip(ANGLES, angles)})
    if entry.label_kind == SEMANTIC_LABELS:
        return Sample(image_id=image_id, split=entry.split, images=images, semantic=label)
    return Sample(image_id=image_id, split=entry.split, images=images, instance_map=label,
                  instance_category=None)


def list_root(root: Path) -> tuple[list[ZJURef], str]:
    """Every scene of both splits (train/ then val/) and the label kind they share."""
    entries: list[Entry] = []
    label_kinds: dict[str, str] = {}
    for folder in SPLITS:
        found, kind = scan_split(root, folder)
        entries += found
        label_kinds[folder] = kind
    if len(set(label_kinds.values())) != 1:
        raise SourceFormatError(
            f"{root}: train/ has {label_kinds['train']}/ but val/ has "
            f"{label_kinds['val']}/; both splits must come from the same copy.", path=root)
    refs = []
    for e in entries:
        folder = "train" if e.split == "train" else "val"
        refs.append(ZJURef(image_id=f"{folder}-{e.key}", split=e.split, files={"label": str(e.label)}, entry=e))
    return refs, label_kinds["train"]


class ZJURGBP(SourceConverter):
    record = RECORD

    def list_samples(self, configs: Sequence[str], *, source: Path | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> ZJUListing:
        root = self.locate(source, downloader)
        refs, kind = list_root(root)
        where = RECORD.instances
        if kind == INSTANCE_LABELS:
            where = InstanceSource(REPACK_IDS, RECORD.instances.connectivity,
                                   "the SimCMF repack's label_sam/ ids, kept as given (no classes)")
        return ZJUListing(refs=refs, category_names=list(RECORD.classes),
                          instance_sources={s: where for s in ("train", "test")}, root=root.name,
                          label_kind=kind)

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        assert isinstance(ref, ZJURef) and ref.entry is not None
        return read_entry(ref.entry, ref.image_id)

    def notes(self, config: str, listing: Listing) -> list[str]:
        assert isinstance(listing, ZJUListing)
        if listing.label_kind == INSTANCE_LABELS:
            return [f"Input: the SimCMF repack ({listing.root}); instances are its label_sam ids as "
                    "given, without classes (category -1)."]
        return []

    def locate(self, source: Path | None, downloader: Downloader | None = None) -> Path:
        """The folder holding train/ and val/: found under ``source`` (a folder), or
        extracted from the archive (``source`` itself, a copy inside ``source``, or
        downloaded and checked against the pinned sha256)."""
        if source is not None:
            source = Path(source)
            if source.is_dir():
                root = find_root(source)
                if root is not None:
                    return root
                if not (source / ARCHIVE).is_file():
                    raise AimsError(
                        f"{source} holds neither {ARCHIVE} nor a ZJU-RGBP folder with train/ "
                        f"and val/ (found: {describe_folder(source)}). Pass the archive, the "
                        "folder it was extracted into, or the SimCMF repack folder zju-rgbp.",
                        path=source)
                source = source / ARCHIVE
            elif not source.is_file():
                raise AimsError(f"--source {source} does not exist.", path=source)
        archive = fetch_declared(RECORD, ARCHIVE, source=source, downloader=downloader)
        target = extract_archive(archive, RECORD.name, folder=EXTRACTED_FOLDER,
                                 fingerprint=RECORD.file(ARCHIVE).known_hash, progress=False)
        root = find_root(target)
        if root is None:
            raise SourceFormatError(
                f"{archive} extracted into {target}, but no folder there holds train/ and val/ "
                f"(found: {describe_folder(target)}). The archive's layout is not the "
                "expected ZJU-RGBP layout; report it to the AIMS maintainers.", path=archive)
        return root

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        variant: str = "degree", num_train: int | None = None,
                        num_test: int | None = None) -> Path:
        from aims.converters.zju_rgbp_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution,
                               variant=variant, num_train=num_train, num_test=num_test)


CONVERTER = ZJURGBP()
