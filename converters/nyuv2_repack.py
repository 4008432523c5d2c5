"""The SimCMF repack of NYUv2 (``NYUDepthv2/``) as an alternative input for ``depth``/``hha``.

Layout, as the SimCMF loader reads it::

    NYUDepthv2/
      RGB/<n>.jpg  Depth/<n>.npy  HHA/<n>.jpg  Mask_gt/<n>.png
      train.txt  test.txt        # one line per image, tab-separated, first field "RGB/<n>.jpg"

Reading rules (what the reference code does, and what it leaves open):

* the split lists name the RGB file; the others follow by replacing ``RGB``→``Depth``/
  ``HHA``/``Mask_gt`` and the extension;
* ``Mask_gt`` holds instance ids (0 = none): each id is one instance, as given; the repack
  has no class per instance, so ``category`` is -1 (unknown);
* the reference loader replaces ``RGB/1133.jpg`` and ``RGB/398.jpg`` by ``RGB/1134.jpg``
  ("broken files"). We never substitute another frame: such a frame is converted when its
  files read correctly, and skipped and counted (with the reason) when they do not;
* the depth unit of ``Depth/<n>.npy`` is not documented, and the reference min-max
  normalises it per image, so its code does not tell. It is detected from the values:
  floats with a maximum ≤ 20 are metres, values above 1000 millimetres (NYUv2's Kinect
  range is about 0.5–10 m); anything else stops with the value found. The unit found is
  written into the card; depth is stored like the original converter's, 16-bit mm PNG;
* ``<n>`` is taken as NYUv2's 1-based frame index, so image ids (``0001``…) equal the
  original converter's; a repack numbered from 0 is detected and shifted by one (noted);
* HHA: the repack's ``HHA/<n>.jpg`` is stored as given (decoded JPEG → lossless PNG), not
  recomputed, because that is the input SimCMF's numbers come from. It is JPEG-compressed;
  the card says so. (The original release path computes HHA exactly with ``aims.hha``.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aims.converters.base import Sample, SampleStream, Skipped
from aims.errors import AimsError, SourceFormatError

REPACK_FOLDER = "NYUDepthv2"
SPLIT_LISTS = {"train": "train.txt", "test": "test.txt"}
FOLDERS = ("RGB", "Depth", "HHA", "Mask_gt")
#: frames the SimCMF loader treats as broken (it loads RGB/1134.jpg instead)
KNOWN_BROKEN = (1133, 398)

#: depth-unit detection thresholds (see the module docstring)
_MAX_METRES = 20.0
_MIN_MILLIMETRES = 1000.0
_MAX_MILLIMETRES = 65535.0


def find_repack(path: Path) -> Path | None:
    """The repack root (``path`` or ``path/NYUDepthv2``) when it has the repack's layout."""
    path = Path(path)
    for root in (path, path / REPACK_FOLDER):
        if root.is_dir() and (root / SPLIT_LISTS["train"]).is_file() and (root / "RGB").is_dir():
            return root
    return None


@dataclass
class RepackReport:
    """What the stream found, for the card (filled while iterating)."""

    depth_units: set[str] = field(default_factory=set)
    zero_based: bool = False
    root: str = ""


@dataclass(frozen=True)
class _Entry:
    number: int
    split: str
    list_file: Path
    line: int


class _Unreadable(Exception):
    pass


def read_list(root: Path, split: str) -> list[_Entry]:
    path = root / SPLIT_LISTS[split]
    if not path.is_file():
        raise AimsError(
            f"{root} has no {SPLIT_LISTS[split]}; the NYUDepthv2 repack lists its {split} "
            f"images there (tab-separated, first field RGB/<n>.jpg).", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{path} is not UTF-8/ASCII text ({exc}).", path=path) from None
    entries = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        first = line.split("\t")[0].strip()
        folder, _, name = first.replace("\\", "/").partition("/")
        stem, dot, ext = name.rpartition(".")
        if folder != "RGB" or not dot or not stem.isdigit():
            raise SourceFormatError(
                f"{path}, line {line_no}: expected a first field like RGB/<n>.jpg, found "
                f"{first!r}.", path=path)
        entries.append(_Entry(int(stem), split, path, line_no))
    if not entries:
        raise SourceFormatError(
            f"{path} lists no images; the {split} split must not be empty.", path=path)
    return entries


def depth_units(depth: np.ndarray, what: str) -> str:
    """``"m"`` or ``"mm"`` from the values (see the module docstring)."""
    finite = depth[np.isfinite(depth)] if depth.dtype.kind == "f" else depth
    top = float(finite.max(initial=0))
    if depth.dtype.kind == "f" and 0 < top <= _MAX_METRES:
        return "m"
    if _MIN_MILLIMETRES < top <= _MAX_MILLIMETRES:
        return "mm"
    raise SourceFormatError(
        f"{what}: cannot tell the depth unit ({depth.dtype}, maximum {top:g}); expected metres "
        f"(float, maximum ≤ {_MAX_METRES:g}) or millimetres (maximum between "
        f"{_MIN_MILLIMETRES:g} and {_MAX_MILLIMETRES:g}). Report this file to the AIMS "
        "maintainers with its value range.")


def to_millimetres(depth: np.ndarray, unit: str) -> np.ndarray:
    from aims.converters.nyuv2 import depth_to_millimetres

    arr = np.asarray(depth, dtype=np.float64)
    return depth_to_millimetres(arr if unit == "m" else arr / 1000.0)


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.uint16).copy()
            if img.mode not in ("RGB", "L", "P", "I"):
                img = img.convert("RGB")
            return np.ascontiguousarray(np.asarray(img))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"{path} cannot be decoded ({exc})") from None


class RepackStream(SampleStream):
    def __init__(self, root: Path, configs: Sequence[str], report: RepackReport) -> None:
        self.root = root
        self._configs = tuple(configs)
        self.report = report
        report.root = root.name  # the name only: the card must not depend on where it was
        entries = read_list(root, "train") + read_list(root, "test")
        numbers = [e.number for e in entries]
        dupes = sorted({n for n in numbers if numbers.count(n) > 1})
        if dupes:
            raise SourceFormatError(
                f"{root}: frame(s) {', '.join(map(str, dupes[:5]))} are listed more than once "
                "in train.txt/test.txt; a frame belongs to one split.", path=root)
        report.zero_based = min(numbers) == 0
        missing = []
        for e in entries:
            for p in self._paths(e.number).values():
                if not p.is_file():
                    missing.append(f"{p} ({e.list_file.name} line {e.line})")
        if missing:
            shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise AimsError(
                f"the NYUDepthv2 repack at {root} lacks {len(missing)} file(s): {shown}. "
                "Extract the complete folder and run the command again.", path=root)
        self._entries = sorted(entries, key=lambda e: e.number)

    def _paths(self, n: int) -> dict[str, Path]:
        paths = {"rgb": self.root / "RGB" / f"{n}.jpg",
                 "mask": self.root / "Mask_gt" / f"{n}.png"}
        if "depth" in self._configs:
            paths["depth"] = self.root / "Depth" / f"{n}.npy"
        if "hha" in self._configs:
            paths["hha"] = self.root / "HHA" / f"{n}.jpg"
        return paths

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Sample]:
        for e in self._entries:
            image_id = f"{e.number + self.report.zero_based:04d}"
            try:
                yield self._load(e, image_id)
            except _Unreadable as exc:
                known = (" (one of the frames the SimCMF loader replaces as broken)"
                         if e.number in KNOWN_BROKEN else "")
                self.skipped.append(Skipped(image_id, str(self.root / "RGB" / f"{e.number}.jpg"),
                                            f"{exc}{known}"))

    def _load(self, e: _Entry, image_id: str) -> Sample:
        paths = self._paths(e.number)
        rgb = _decode(paths["rgb"])
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise _Unreadable(f"{paths['rgb']}: expected an RGB image, found shape {rgb.shape}")
        mask = _decode(paths["mask"])
        if mask.ndim != 2:
            raise _Unreadable(f"{paths['mask']}: expected a single-channel instance-id PNG, "
                              f"found shape {mask.shape}")
        images: dict[str, np.ndarray] = {"rgb": rgb}
        if "depth" in paths:
            try:
                depth = np.load(paths["depth"], allow_pickle=False)
            except ValueError as exc:  # pickled object arrays are refused: untrusted input
                raise _Unreadable(f"{paths['depth']} is not a plain numeric .npy ({exc})") from None
            except (OSError, EOFError) as exc:
                raise _Unreadable(f"{paths['depth']} cannot be read ({exc})") from None
            depth = np.squeeze(depth)
            if depth.ndim != 2 or depth.dtype.kind not in "fiu":
                raise _Unreadable(f"{paths['depth']}: expected a 2-D numeric depth map, found "
                                  f"{depth.dtype} {depth.shape}")
            unit = depth_units(depth, str(paths["depth"]))
            self.report.depth_units.add(unit)
            if len(self.report.depth_units) > 1:
                raise SourceFormatError(
                    f"{paths['depth']} is in {unit} but earlier frames were not; the repack's "
                    "depth files disagree on their unit.", path=paths["depth"])
            images["depth"] = to_millimetres(depth, unit)
        if "hha" in paths:
            hha = _decode(paths["hha"])
            if hha.ndim != 3 or hha.shape[2] != 3:
                raise _Unreadable(f"{paths['hha']}: expected a 3-channel HHA image, found {hha.shape}")
            images["hha"] = hha
        sizes = {k: v.shape[:2] for k, v in images.items()} | {"mask": mask.shape}
        if len(set(sizes.values())) != 1:
            found = ", ".join(f"{k} {w}×{h}" for k, (h, w) in sizes.items())
            raise _Unreadable(f"frame {e.number}: sizes differ ({found}); every file of a frame "
                              "must have the same size")
        if mask.max(initial=0) > 65535 or (mask.dtype.kind == "i" and mask.min(initial=0) < 0):
            raise _Unreadable(f"{paths['mask']}: instance ids outside 0..65535")
        return Sample(image_id=image_id, split=e.split, images=images,
                      instance_map=mask.astype(np.uint16), instance_category=None)


def describe_notes(config: str, report: RepackReport) -> tuple[str, ...]:
    notes = [
        f"Input: the SimCMF repack NYUDepthv2 (folder {report.root}), not the original .mat: RGB is "
        "the repack's JPEG (lossy). Instances are the repack's Mask_gt ids as given; the repack "
        "has no class per instance, so category is -1 (unknown).",
    ]
    if report.zero_based:
        notes.append("The repack numbers frames from 0; image ids are shifted by one to NYUv2's "
                     "1-based frame index.")
    if config == "depth":
        unit = "/".join(sorted(report.depth_units)) or "unknown"
        notes.append(f"Depth from Depth/<n>.npy, unit detected from the values: {unit}; stored "
                     "as 16-bit millimetres like the original converter.")
    if config == "hha":
        notes.append("HHA is the repack's HHA/<n>.jpg as given (JPEG-compressed, decoded and "
                     "stored losslessly), not recomputed by aims.hha.")
    return tuple(notes)


# --------------------------------------------------------------------------- miniature


def write_miniature(folder: Path, *, seed: int = 0, num_frames: int = 6,
                    full_resolution: bool = True, depth_unit: str = "m") -> Path:
    """``<folder>/NYUDepthv2/`` with the repack's exact layout; frames are rendered by the
    NYUv2 miniature (480×640 is NYUv2's real and only size, so ``full_resolution`` changes
    nothing). Depth ``.npy`` in metres (float32) unless ``depth_unit="mm"``. Returns the
    repack root."""
    from PIL import Image

    from aims.converters.nyuv2_miniature import render_frame
    from aims.hha import NYU_COLOR_INTRINSICS, compute_hha

    root = Path(folder) / REPACK_FOLDER
    for sub in FOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for i in range(num_frames):
        n = i + 1
        rgb, depth, _raw, labels = render_frame(rng, i)
        Image.fromarray(rgb).save(root / "RGB" / f"{n}.jpg", quality=95)
        hha = compute_hha(depth.astype(np.float64), NYU_COLOR_INTRINSICS)
        Image.fromarray(hha).save(root / "HHA" / f"{n}.jpg", quality=95)
        np.save(root / "Depth" / f"{n}.npy",
                depth if depth_unit == "m" else np.round(depth * 1000).astype(np.float32))
        # instance ids: connected components of the labels, numbered 1..k (8-bit PNG)
        from aims.instances import split_instances

        ids = split_instances(labels, ignore=(0,)).id_map
        Image.fromarray(ids.astype(np.uint8) if ids.max() < 256 else ids).save(
            root / "Mask_gt" / f"{n}.png")
        split = "test" if n % 3 == 2 else "train"
        lines[split].append(f"RGB/{n}.jpg\tMask_gt/{n}.png")
    for split, rows in lines.items():
        (root / SPLIT_LISTS[split]).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
