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

Decoding happens in :meth:`ZJURGBP.derive` (a worker process), so both cores decode PNGs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aims.converters.base import (
    ConfigDescription,
    Downloader,
    Sample,
    SampleStream,
    SourceConverter,
    SourceInfo,
)
from aims.errors import AimsError, SourceFormatError

ARCHIVE = "RGB-P-dataset.rar"
URL = "https://huggingface.co/datasets/Zhonghua/ZJU_RGB_P/resolve/main/RGB-P-dataset.rar"
SHA256 = "7120c25efb62bc0f1b53d39d0a9ecbe3be83a8089483e0cb0f9beeb323ab7629"
ANGLES = (0, 45, 90, 135)
DEGREE = "\u00b0"
#: source folder -> official split
SPLITS = {"train": "train", "val": "test"}
SEMANTIC_LABELS = "label"
INSTANCE_LABELS = "label_sam"  # the SimCMF repack
CLASS_NAMES = ("background", "building", "glass", "car", "road", "tree", "sky",
               "pedestrian", "bicycle")
#: VOC's "void" index (object borders); ignored like background
VOID = 255

CITATION = """@article{xiang2021polarization,
  title   = {Polarization-driven semantic segmentation via efficient attention-bridged fusion},
  author  = {Xiang, Kaite and Yang, Kailun and Wang, Kaiwei},
  journal = {Optics Express},
  volume  = {29},
  number  = {4},
  pages   = {4802--4820},
  year    = {2021}
}"""


def source_file():
    """The release archive with its pinned checksum."""
    from aims.fetch import SourceFile

    return SourceFile(name=ARCHIVE, url=URL, known_hash=f"sha256:{SHA256}")


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


def find_root(path: Path, depth: int = 3) -> Path | None:
    """The folder under ``path`` (itself included, at most ``depth`` levels down) that
    holds both ``train`` and ``val``; None when there is none. Several → error."""
    path = Path(path)
    level = [path]
    for _ in range(depth + 1):
        hits = [p for p in level if (p / "train").is_dir() and (p / "val").is_dir()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise AimsError(
                f"{path} holds several ZJU-RGBP copies ({', '.join(map(str, hits))}); pass "
                "the one to convert with --source.", path=path)
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
    return None


def _describe_folder(path: Path, limit: int = 8) -> str:
    if not path.is_dir():
        return "nothing (the folder does not exist)"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "an empty folder"
    more = f", … ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
            f"ZJU-RGBP at {root} has no {folder}/ folder (found: {_describe_folder(root)}); "
            f"expected train/ and val/, each with 0/, 45/, 90/, 135/ and label/. The archive "
            "may be incomplete: delete it and download it again.", path=root)
    kinds = [k for k in (SEMANTIC_LABELS, INSTANCE_LABELS) if (base / k).is_dir()]
    missing_dirs = [f"{a}/" for a in ANGLES if not (base / str(a)).is_dir()]
    if not kinds or missing_dirs:
        need = ", ".join(missing_dirs + ([] if kinds else ["label/ (or label_sam/)"]))
        raise AimsError(
            f"{base} lacks {need} (found: {_describe_folder(base)}); expected the four angle "
            "folders 0/, 45/, 90/, 135/ and label/ (label_sam/ in the SimCMF repack).",
            path=base)
    kind = kinds[0]  # semantic labels win when both are present: they carry classes
    labels = sorted(p for p in (base / kind).iterdir() if p.suffix.lower() == ".png")
    if not labels:
        raise AimsError(
            f"{base / kind} holds no label PNG (found: {_describe_folder(base / kind)}); the "
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


class _Unreadable(SourceFormatError):
    pass


def _open_png(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"{path} cannot be decoded as an image ({exc}); re-extract the "
                          "archive.", path=path) from None


def read_angle(path: Path) -> np.ndarray:
    img = _open_png(path)
    if img.mode != "RGB":
        raise _Unreadable(f"{path}: expected an 8-bit RGB PNG, found PIL mode {img.mode}.", path=path)
    return np.asarray(img)


def read_semantic(path: Path) -> np.ndarray:
    """Class ids of a VOC-palette label (mode P: the index is the class; mode L: the
    value; RGB: the VOC colour is mapped back to its index)."""
    img = _open_png(path)
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
            raise _Unreadable(
                f"{path}: RGB label colours {cols} are not VOC colours of the classes "
                f"0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)}).", path=path)
        idx = np.searchsorted(values, code)
        arr = np.asarray([lut[v] for v in values.tolist()], dtype=np.uint8)[idx]
    else:
        raise _Unreadable(f"{path}: expected a palette (P) label PNG, found PIL mode {img.mode}.",
                          path=path)
    bad = sorted(set(np.unique(arr).tolist()) - set(range(len(CLASS_NAMES))) - {VOID})
    if bad:
        raise _Unreadable(
            f"{path}: label values {', '.join(map(str, bad))} are outside the ZJU-RGBP class "
            f"list 0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)}; {VOID} = void). The "
            "file is not a ZJU-RGBP label.", path=path)
    return arr


def read_instances(path: Path) -> np.ndarray:
    img = _open_png(path)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise _Unreadable(f"{path}: expected a single-channel instance-id PNG, found shape "
                          f"{arr.shape}.", path=path)
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
        raise _Unreadable(f"{path}: instance ids outside 0..65535.", path=path)
    return arr.astype(np.uint16)


def unpolarized_rgb(angles: Sequence[np.ndarray]) -> np.ndarray:
    """round((I0 + I45 + I90 + I135) / 4) per channel, uint8 (half rounds up)."""
    total = sum(a.astype(np.uint16) for a in angles)
    return ((total + 2) // 4).astype(np.uint8)


@dataclass
class _Pending(Sample):
    """A scene not read yet: :meth:`ZJURGBP.derive` reads it in a worker."""

    entry: Entry | None = None


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
        raise _Unreadable(
            f"ZJU-RGBP scene {entry.key} ({entry.label}): sizes differ ({found}); the four angle "
            "images and the label must have the same size.", path=entry.label)
    images = {"rgb": unpolarized_rgb(angles)}
    images.update({f"angle_{a}": img for a, img in zip(ANGLES, angles)})
    if entry.label_kind == SEMANTIC_LABELS:
        return Sample(image_id=image_id, split=entry.split, images=images, semantic=label)
    return Sample(image_id=image_id, split=entry.split, images=images, instance_map=label,
                  instance_category=None)


class ZJUStream(SampleStream):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: list[Entry] = []
        self.label_kinds: dict[str, str] = {}
        for folder in SPLITS:
            entries, kind = scan_split(root, folder)
            self.entries += entries
            self.label_kinds[folder] = kind
        if len(set(self.label_kinds.values())) != 1:
            raise SourceFormatError(
                f"{root}: train/ has {self.label_kinds['train']}/ but val/ has "
                f"{self.label_kinds['val']}/; both splits must come from the same copy.", path=root)

    @property
    def label_kind(self) -> str:
        return next(iter(self.label_kinds.values()))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Sample]:
        for e in self.entries:
            folder = "train" if e.split == "train" else "val"
            yield _Pending(image_id=f"{folder}-{e.key}", split=e.split, images={}, entry=e)


@dataclass
class _Report:
    root: str = ""
    label_kind: str = SEMANTIC_LABELS
    from_archive: bool = False
    notes: list[str] = field(default_factory=list)


class ZJURGBP(SourceConverter):
    name = "zju_rgbp"
    configs = ("polarization-zju",)
    ignore_labels = (0, VOID)
    connectivity = 8
    info = SourceInfo(
        name="ZJU-RGBP (RGB-P dataset)",
        homepage="https://huggingface.co/datasets/Zhonghua/ZJU_RGB_P",
        license="apache-2.0 (dataset card of the Hugging Face mirror)",
        citation=CITATION,
        notes=(
            "394 scenes (344 train / 50 val; val is the test split), each photographed "
            "behind a linear polarizer at 0°, 45°, 90° and 135°; 8 semantic classes.",
        ),
    )

    def __init__(self) -> None:
        self._report = _Report()

    def category_names(self, configs: Sequence[str] = ()) -> list[str]:
        return list(CLASS_NAMES)

    def describe(self, config: str) -> ConfigDescription:
        if config != "polarization-zju":
            raise KeyError(config)
        columns = {"rgb": "unpolarized intensity round((I0 + I45 + I90 + I135) / 4) per channel, "
                          "8-bit RGB PNG (derived, not a separate photograph)"}
        for a in ANGLES:
            columns[f"angle_{a}"] = (f"the release's {a}° polarizer image, 8-bit RGB PNG, stored "
                                     "losslessly")
        notes = [
            "aims.modality_tensor(row, 'polarization-zju') gives 9 channels [I_R, I_G, I_B, "
            "AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] from the Stokes parameters: "
            "I = (I0 + I90) / 2 / 255, AoLP = ½·atan2(I45 − I135, I0 − I90) in radians "
            "(−π/2, π/2], DoLP = √(S1² + S2²) / S0 clipped to [0, 1] (0 where S0 = 0). "
            "'polarization-zju-simcmf' reproduces the SimCMF loader (I = ½ΣI + 1e-4 in "
            "0..510, AoLP = ½·arctan(S2/S1) in ±π/4).",
            "Split: the release's train/ → train (validation carved from it), val/ → test.",
        ]
        if self._report.label_kind == INSTANCE_LABELS:
            notes.append(f"Input: the SimCMF repack ({self._report.root}); instances are its "
                         "label_sam ids as given, without classes (category -1).")
        else:
            notes.append("Labels: VOC-palette PNGs, class 0 (unlabelled) and 255 (void) "
                         "ignored; instances = 8-connected components per class.")
        return ConfigDescription(config=config, description="ZJU-RGBP: RGB polarization "
                                 "images at four polarizer angles, 8 urban classes.",
                                 columns=columns, notes=tuple(notes))

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        if isinstance(sample, _Pending):
            assert sample.entry is not None
            return read_entry(sample.entry, sample.image_id)
        return sample

    def open(self, configs: Sequence[str], *, source: Path | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        root = self.locate(source, downloader)
        stream = ZJUStream(root)
        self._report = _Report(root=root.name, label_kind=stream.label_kind)
        return stream

    def locate(self, source: Path | None, downloader: Downloader | None = None) -> Path:
        """The folder holding train/ and val/: found under ``source`` (a folder), or
        extracted from the archive (``source`` itself, a copy inside ``source``, or
        downloaded and checked against the pinned sha256)."""
        from aims.extract import safe_extract
        from aims.fetch import fetch
        from aims.paths import downloads_dir

        spec = source_file()
        cache = downloads_dir(self.name)
        archive: Path | None = None
        if source is not None:
            source = Path(source)
            if source.is_dir():
                root = find_root(source)
                if root is not None:
                    return root
                if (source / ARCHIVE).is_file():
                    archive = fetch(spec, source=source / ARCHIVE, cache_dir=cache)
                else:
                    raise AimsError(
                        f"{source} holds neither {ARCHIVE} nor a ZJU-RGBP folder with train/ "
                        f"and val/ (found: {_describe_folder(source)}). Pass the archive, the "
                        "folder it was extracted into, or the SimCMF repack folder zju-rgbp.",
                        path=source)
            elif source.is_file():
                archive = fetch(spec, source=source, cache_dir=cache)
            else:
                raise AimsError(f"--source {source} does not exist.", path=source)
        else:
            archive = fetch(spec, cache_dir=cache, downloader=downloader)
        target = safe_extract(archive, cache / "RGB-P-dataset", fingerprint=spec.known_hash)
        root = find_root(target)
        if root is None:
            raise SourceFormatError(
                f"{archive} extracted into {target}, but no folder there holds train/ and val/ "
                f"(found: {_describe_folder(target)}). The archive's layout is not the "
                "expected ZJU-RGBP layout; report it to the AIMS maintainers.", path=archive)
        return root

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        variant: str = "degree", num_train: int | None = None,
                        num_test: int | None = None) -> Path:
        from aims.converters.zju_rgbp_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution,
                               variant=variant, num_train=num_train, num_test=num_test)


CONVERTER = ZJURGBP()
