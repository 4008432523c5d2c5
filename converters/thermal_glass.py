"""RGB-T Glass (Huo et al., IEEE TIP 2023) → config ``thermal``.

The release is one archive on Google Drive / the first author's home page (format, size
and checksum unknown): a **manual download**. Its layout, as the authors' loader reads it::

    RGB-T-glass/{train,test}/<scene>/<image_id>/{rgb.png, temperature.npy, mask.png, boundary.png}

``rgb.png`` is 640×480 RGB, ``temperature.npy`` a float64 (480, 640) array in degrees
Celsius, ``mask.png`` 0/255 glass (→ one class, 8-connected components = instances);
``boundary.png`` is not used. Entries whose name contains ``"."`` at the scene or image
level are not samples (``.DS_Store``, notes, backup copies): the authors' loader skips
them and so do we; they are not counted as skipped samples because they never were
samples. Files at those levels are ignored for the same reason. Image id =
``<scene>_<image_id>`` (the name SimCMF gives each sample), so both inputs below give
the same ids and therefore the same validation carve-out.

The SimCMF repack ``RGB-Thermal-Glass`` is accepted too: ``RGB_T_Glass_{train,test}_
GroundTruth.csv`` (GBK; read by the reference with ``pd.read_csv``, so line 1 is a
header; column 1 = rgb path, column 2 = instance-id mask path, both relative to the
reference code's working directory), temperature = rgb path with ``rgb.png`` →
``temperature.npy``. We resolve a listed path against the CSV's folder and its parent,
dropping leading folders of the path one at a time (``data/RGB-Thermal-Glass/train/…``
→ ``train/…``), and report the first path that resolves nowhere. Instance ids are kept
as given (class glass). When the original ``mask.png`` tree is present as well, the
original is used (our protocol starts from semantic masks); the card says which.

Temperature is stored as a 16-bit PNG code with one fixed map for every image,
``°C = −80 + code / 256`` (:data:`aims.decoders.TEMPERATURE_OFFSET_C`,
:data:`~aims.decoders.TEMPERATURE_STEP_C`): step 0.0039 °C, so the stored value is
within 1/512 °C of the source (finer than the 0.01 °C asked for); range −80 … 175.996 °C.
A value outside that range or not finite makes the sample unreadable (skipped, counted and
named in the card). :func:`aims.modality_tensor` returns °C as float32 ``(1, H, W)``.

The facts (files, classes, column units …) are in :mod:`aims.converters.thermal_glass_record`;
locating and the glass-mask readers are the shared :mod:`aims.converters.locate` and
:mod:`aims.converters.labels`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from aims.converters.base import Downloader, Listing, Sample, SampleRef, SourceConverter
from aims.converters.labels import glass_sample
from aims.converters.locate import (
    SPLITS,
    check_same_size,
    describe_folder,
    extract_archive,
    find_split_dirs,
    open_image,
    source_roots,
)
from aims.converters.record import REPACK_IDS, InstanceSource
from aims.converters.thermal_glass_record import RECORD
from aims.decoders import TEMPERATURE_OFFSET_C, TEMPERATURE_STEP_C
from aims.errors import SourceFormatError, UnreadableSample

log = logging.getLogger(__name__)

ROOT_FOLDER = "RGB-T-glass"
REPACK_FOLDER = "RGB-Thermal-Glass"
CSV_NAMES = {s: f"RGB_T_Glass_{s}_GroundTruth.csv" for s in SPLITS}
CONTINUE_COMMAND = "aims prepare --modality thermal --source PATH"
SAMPLE_FILES = {"rgb": "rgb.png", "temperature": "temperature.npy", "mask": "mask.png"}
ORIGINAL, REPACK = "original", "simcmf-csv"


# --------------------------------------------------------------------------- locating


def _sample_dirs(split_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """(scene, image_id, folder) of every sample of a split, sorted; names with "." are
    not samples (see the module docstring)."""
    for scene in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if "." in scene.name or not scene.is_dir():
            continue
        for image in sorted(os.scandir(scene.path), key=lambda e: e.name):
            if "." in image.name or not image.is_dir():
                continue
            yield scene.name, image.name, Path(image.path)


def _has_sample(folder: Path) -> bool:
    """A split folder of the release: some <scene>/<image_id>/ holds rgb.png and mask.png
    (the repack's copy of the tree has no mask.png: its labels come from the CSV lists)."""
    try:
        return any((d / SAMPLE_FILES["rgb"]).is_file() and (d / SAMPLE_FILES["mask"]).is_file()
                   for _, _, d in _sample_dirs(folder))
    except OSError:
        return False


def _find_csvs(roots: Sequence[Path], max_depth: int = 4) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {s: [] for s in SPLITS}

    def walk(folder: Path, depth: int) -> None:
        for split, name in CSV_NAMES.items():
            if (folder / name).is_file():
                found[split].append(folder / name)
        if depth >= max_depth:
            return
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in children:
            # sample trees are deep and large: never descend into split folders
            if not entry.name.startswith(".") and entry.is_dir() and entry.name not in SPLITS:
                walk(Path(entry.path), depth + 1)

    for root in roots:
        walk(root, 0)
    return found


@dataclass(frozen=True)
class Located:
    kind: str  # ORIGINAL or REPACK
    splits: dict[str, Path]  # split -> split folder (original) or CSV file (repack)


def locate(source: Path | None) -> Located:
    """The train/test folders (or the repack's CSV lists) of an RGB-T Glass source."""
    roots, archives = source_roots(source, RECORD, continue_command=CONTINUE_COMMAND)

    def search(roots: list[Path]) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        return find_split_dirs(roots, _has_sample), _find_csvs(roots)

    dirs, csvs = search(roots)
    complete = lambda d: all(d[s] for s in SPLITS)  # noqa: E731
    if archives and not complete(dirs) and not complete(csvs):
        roots = roots + [extract_archive(a, RECORD.name) for a in archives]
        dirs, csvs = search(roots)
    for found, kind in ((dirs, ORIGINAL), (csvs, REPACK)):
        if complete(found):
            ambiguous = [s for s in SPLITS if len(found[s]) > 1]
            if ambiguous:
                s = ambiguous[0]
                raise SourceFormatError(
                    f"RGB-T Glass: the {s} split was found in {len(found[s])} places "
                    f"({', '.join(map(str, found[s]))}); pass the one to use with --source.",
                    path=source,
                )
            return Located(kind, {s: found[s][0] for s in SPLITS})
    # nothing complete: say precisely what is there
    for found in (dirs, csvs):
        have = [s for s in SPLITS if found[s]]
        if have and found is dirs:
            present = found[have[0]][0]
            missing = next(s for s in SPLITS if not found[s])
            sibling = present.parent / missing
            if sibling.is_dir():
                raise SourceFormatError(
                    f"RGB-T Glass: {sibling} holds no samples (expected "
                    f"<scene>/<image_id>/rgb.png, temperature.npy and mask.png; found "
                    f"{describe_folder(sibling)}); the {missing} split is empty. Extract the "
                    "archive again.",
                    path=sibling,
                )
            raise SourceFormatError(
                f"RGB-T Glass: found the {have[0]} split at {present} but no {missing} "
                f"folder beside it (found in {present.parent}: {describe_folder(present.parent)}). "
                "The extraction is incomplete: extract the whole archive again.",
                path=present.parent,
            )
        if have:
            missing = next(s for s in SPLITS if not found[s])
            raise SourceFormatError(
                f"RGB-T Glass: found the repack list {found[have[0]][0]} but not "
                f"{CSV_NAMES[missing]} beside it; the SimCMF repack needs both CSV files.",
                path=found[have[0]][0],
            )
    searched = "; ".join(f"{r} holds {describe_folder(r)}" for r in roots) or "nothing"
    raise SourceFormatError(
        f"RGB-T Glass: no train and test splits found. Expected `{ROOT_FOLDER}/{{train,test}}/"
        f"<scene>/<image_id>/{{rgb.png, temperature.npy, mask.png}}` (the release) or "
        f"`{CSV_NAMES['train']}` and `{CSV_NAMES['test']}` (the SimCMF repack "
        f"`{REPACK_FOLDER}`), up to 4 levels below the source. Found: {searched}. Pass the "
        f"extracted folder or the archive, e.g. `{CONTINUE_COMMAND}`.",
        path=source,
    )


# --------------------------------------------------------------------------- CSV lists


def read_csv_rows(path: Path) -> list[list[str]]:
    """Rows of a SimCMF list: UTF-8 if the bytes are valid UTF-8 (an ASCII file is both),
    else GBK as the reference reads it; neither is an error naming the file."""
    data = path.read_bytes()
    text = None
    for encoding in ("utf-8-sig", "gbk"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            error = exc
    if text is None:
        raise SourceFormatError(
            f"{path} is neither GBK (the encoding the SimCMF repack uses) nor UTF-8 text: "
            f"byte 0x{data[error.start]:02x} at offset {error.start} is invalid in both. "
            "Re-extract the repack, or re-save the file as GBK or UTF-8 CSV.",
            path=path,
        )
    return [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]


def resolve_listed(path_text: str, csv_path: Path) -> Path | None:
    """A path listed in a repack CSV, found on disk (see the module docstring)."""
    text = path_text.strip().replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() and Path(text).is_file():
        return Path(text)
    parts = [p for p in pure.parts if p not in ("/", ".", "")]
    for base in (csv_path.parent, csv_path.parent.parent):
        for k in range(len(parts)):
            candidate = base.joinpath(*parts[k:])
            if candidate.is_file():
                return candidate
    return None


def _repack_samples(csv_path: Path, split: str) -> list[tuple[str, dict[str, Path]]]:
    rows = read_csv_rows(csv_path)[1:]  # line 1 is pandas' header
    if not rows:
        raise SourceFormatError(
            f"{csv_path} lists no samples (only a header line or nothing); the {split} split "
            "is empty. Re-extract the repack.",
            path=csv_path,
        )
    out = []
    for line, row in enumerate(rows, start=2):
        if len(row) < 3:
            raise SourceFormatError(
                f"{csv_path}, line {line}: expected at least 3 comma-separated columns (index, "
                f"rgb path, mask path), found {len(row)}: {row!r}.",
                path=csv_path,
            )
        listed = {"rgb": row[1], "mask": row[2],
                  "temperature": row[1].strip().replace("rgb.png", "temperature.npy")}
        files = {}
        for column, text in listed.items():
            found = resolve_listed(text, csv_path)
            if found is None:
                raise SourceFormatError(
                    f"{csv_path}, line {line}: the {column} file {text.strip()!r} does not exist "
                    f"(looked for it, and for it without its leading folders, under "
                    f"{csv_path.parent} and {csv_path.parent.parent}). Keep the repack's "
                    "folders beside its CSV files as extracted.",
                    path=csv_path,
                )
            files[column] = found
        parts = PurePosixPath(row[1].strip().replace("\\", "/")).parts
        if len(parts) < 3:
            raise SourceFormatError(
                f"{csv_path}, line {line}: rgb path {row[1]!r} has no <scene>/<image_id>/ "
                "folders; expected …/<split>/<scene>/<image_id>/rgb.png.",
                path=csv_path,
            )
        out.append((f"{parts[-3]}_{parts[-2]}", files))
    return out


# --------------------------------------------------------------------------- reading


def read_rgb(path: Path) -> np.ndarray:
    img = open_image(path, "an RGB PNG")
    if img.mode in ("RGBA", "P", "L", "LA"):
        img = img.convert("RGB")
    if img.mode != "RGB":
        raise UnreadableSample(
            f"{path} is a {img.mode} image; expected an 8-bit RGB PNG.", path=path)
    return np.asarray(img)


def read_temperature(path: Path) -> np.ndarray:
    """``temperature.npy``: a 2-D float array in °C (``allow_pickle=False``: a pickled
    array is refused rather than executed)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UnreadableSample(f"{path} does not exist.", path=path) from None
    except (ValueError, OSError, EOFError) as exc:
        raise UnreadableSample(
            f"{path} cannot be read as a .npy array ({exc}); the file is truncated or "
            "corrupt (or not a plain numeric array). Extract the archive again.",
            path=path,
        ) from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        found = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise UnreadableSample(
            f"{path} holds {found}; expected a 2-D float array of temperatures in °C "
            "(float64 (480, 640) in the release).",
            path=path,
        )
    return arr


def celsius_to_code(celsius: np.ndarray, path: Path) -> np.ndarray:
    """°C → the stored uint16 code (nearest step); out-of-range or non-finite values make
    the sample unreadable, naming the file (clipping would silently falsify temperatures)."""
    t = np.asarray(celsius, dtype=np.float64)
    if not np.isfinite(t).all():
        bad = int((~np.isfinite(t)).sum())
        raise UnreadableSample(
            f"{path} holds {bad} non-finite value(s) (NaN/inf); expected temperatures in °C "
            "everywhere.",
            path=path,
        )
    code = np.rint((t - TEMPERATURE_OFFSET_C) / TEMPERATURE_STEP_C)
    lo, hi = TEMPERATURE_OFFSET_C, TEMPERATURE_OFFSET_C + 65535 * TEMPERATURE_STEP_C
    if code.min(initial=0) < 0 or code.max(initial=0) > 65535:
        raise UnreadableSample(
            f"{path} holds temperatures {t.min():.3f} … {t.max():.3f} °C, outside the range "
            f"AIMS stores ({lo:g} … {hi:.3f} °C at {TEMPERATURE_STEP_C:g} °C steps). Is it in "
            "°C (not Kelvin or raw sensor counts)?",
            path=path,
        )
    return code.astype(np.uint16)


@dataclass(frozen=True)
class ThermalRef(SampleRef):
    """One sample: its rgb, temperature and mask paths, and the layout they come from."""

    label: str = ORIGINAL


@dataclass
class ThermalListing(Listing):
    kind: str = ORIGINAL  # ORIGINAL or REPACK


def read_sample(ref: ThermalRef) -> Sample:
    files = {k: Path(v) for k, v in ref.files.items()}
    rgb = read_rgb(files["rgb"])
    celsius = read_temperature(files["temperature"])
    check_same_size(rgb.shape, celsius, files["temperature"], files["rgb"])
    images = {"rgb": rgb, "temperature": celsius_to_code(celsius, files["temperature"])}
    return glass_sample(ref.image_id, ref.split, images, files["mask"], files["rgb"],
                        instance_ids=ref.label != ORIGINAL)


def list_refs(located: Located) -> list[ThermalRef]:
    """Every sample of both splits, in source order; ids checked to be unique."""
    refs: list[ThermalRef] = []
    for split in SPLITS:
        where = located.splits[split]
        if located.kind == ORIGINAL:
            samples = []
            for scene, image, folder in _sample_dirs(where):
                files = {k: folder / name for k, name in SAMPLE_FILES.items()}
                missing = [p for p in files.values() if not p.is_file()]
                if missing:
                    raise SourceFormatError(
                        f"RGB-T Glass: {missing[0]} does not exist; every sample folder "
                        f"needs {', '.join(SAMPLE_FILES.values())} (found in {folder}: "
                        f"{describe_folder(folder)}). Extract the archive again.",
                        path=missing[0],
                    )
                samples.append((f"{scene}_{image}", files))
        else:
            samples = _repack_samples(where, split)
        if not samples:  # pragma: no cover - locate() only accepts non-empty splits
            raise SourceFormatError(f"RGB-T Glass: {where} holds no samples.", path=where)
        for image_id, files in samples:
            refs.append(ThermalRef(image_id=image_id, split=split,
                                   files={k: str(v) for k, v in files.items()}, label=located.kind))
    seen: dict[str, ThermalRef] = {}
    for ref in refs:
        if ref.image_id in seen:
            raise SourceFormatError(
                f"RGB-T Glass: two samples have the id {ref.image_id} ({seen[ref.image_id].files['rgb']} "
                f"and {ref.files['rgb']}); ids (<scene>_<image_id>) must be unique across splits.",
            )
        seen[ref.image_id] = ref
    return refs


class ThermalGlass(SourceConverter):
    record = RECORD

    def list_samples(self, configs: Sequence[str], *, source: Path | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> ThermalListing:
        located = locate(source)
        if located.kind == REPACK:
            where = InstanceSource(REPACK_IDS, RECORD.instances.connectivity,
                                   "the SimCMF repack's instance-id masks, kept as given (class glass)")
        else:
            where = RECORD.instances
        return ThermalListing(refs=list_refs(located), category_names=list(RECORD.classes),
                              instance_sources={s: where for s in SPLITS}, kind=located.kind)

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        assert isinstance(ref, ThermalRef)
        return read_sample(ref)

    def notes(self, config: str, listing: Listing) -> list[str]:
        assert isinstance(listing, ThermalListing)
        if listing.kind == REPACK:
            return ["Input: the SimCMF repack RGB-Thermal-Glass (RGB_T_Glass_{train,test}_"
                    "GroundTruth.csv lists; instance-id masks kept as given, class glass)."]
        return ["Input: the original RGB-T-glass release (mask.png glass masks, "
                "8-connected components = instances)."]

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        layout: str = ORIGINAL) -> Path:
        from aims.converters.thermal_glass_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution, layout=layout)


CONVERTER = ThermalGlass()
