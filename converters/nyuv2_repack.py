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

Listing (:func:`list_repack`) runs in the main process; frames are read in the workers
(:func:`read_repack_frame`). A frame that cannot be read is skipped and counted; each frame
reports its depth unit as a fact, and :func:`check_depth_unit` stops the run when two
frames disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aims.converters.base import Sample, SampleRef
from aims.converters.locate import open_image
from aims.converters.nyuv2 import depth_to_millimetres
from aims.converters.record import REPACK_IDS, InstanceSource
from aims.errors import AimsError, SourceFormatError, UnreadableSample

REPACK_FOLDER = "NYUDepthv2"
SPLIT_LISTS = {"train": "train.txt", "test": "test.txt"}
FOLDERS = ("RGB", "Depth", "HHA", "Mask_gt")
#: frames the SimCMF loader treats as broken (it loads RGB/1134.jpg instead)
KNOWN_BROKEN = (1133, 398)
#: where the repack's instances come from
REPACK_INSTANCES = InstanceSource(REPACK_IDS, 8, "the SimCMF repack's Mask_gt ids, kept as given (no classes)")

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


@dataclass(frozen=True)
class _Entry:
    number: int
    split: str
    list_file: Path
    line: int


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
    arr = np.asarray(depth, dtype=np.float64)
    return depth_to_millimetres(arr if unit == "m" else arr / 1000.0)


def _decode(path: Path) -> np.ndarray:
    with open_image(path, "an image of the repack") as img:
        if img.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(img, dtype=np.uint16).copy()
        if img.mode not in ("RGB", "L", "P", "I"):
            img = img.convert("RGB")
        return np.ascontiguousarray(np.asarray(img))


@dataclass(frozen=True)
class RepackRef(SampleRef):
    """One frame of the repack: ``number`` as listed, ``files`` its RGB, mask and (per
    config) Depth and HHA files."""

    number: int = 0


def _paths(root: Path, n: int, configs: Sequence[str]) -> dict[str, Path]:
    paths = {"rgb": root / "RGB" / f"{n}.jpg", "mask": root / "Mask_gt" / f"{n}.png"}
    if "depth" in configs:
        paths["depth"] = root / "Depth" / f"{n}.npy"
    if "hha" in configs:
        paths["hha"] = root / "HHA" / f"{n}.jpg"
    return paths


def list_repack(root: Path, configs: Sequence[str]) -> tuple[list[RepackRef], bool]:
    """Every listed frame (sorted by number) and whether the repack numbers frames from
    0 (ids are then shifted to NYUv2's 1-based index). Missing files and duplicate
    frames stop here, before anything is read."""
    entries = read_list(root, "train") + read_list(root, "test")
    numbers = [e.number for e in entries]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise SourceFormatError(
            f"{root}: frame(s) {', '.join(map(str, dupes[:5]))} are listed more than once "
            "in train.txt/test.txt; a frame belongs to one split.", path=root)
    zero_based = min(numbers) == 0
    missing = []
    for e in entries:
        for p in _paths(root, e.number, configs).values():
            if not p.is_file():
                missing.append(f"{p} ({e.list_file.name} line {e.line})")
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AimsError(
            f"the NYUDepthv2 repack at {root} lacks {len(missing)} file(s): {shown}. "
            "Extract the complete folder and run the command again.", path=root)
    refs = [RepackRef(image_id=f"{e.number + zero_based:04d}", split=e.split,
                      files={k: str(v) for k, v in _paths(root, e.number, configs).items()},
                      number=e.number)
            for e in sorted(entries, key=lambda e: e.number)]
    return refs, zero_based


def read_repack_frame(ref: SampleRef, configs: Sequence[str]) -> Sample:
    """One frame; :class:`UnreadableSample` (naming the frames the SimCMF loader replaces
    as broken) when a file cannot be used. ``facts["depth_unit"]``: the unit detected."""
    assert isinstance(ref, RepackRef)
    try:
        return _read(ref)
    except UnreadableSample as exc:
        if ref.number not in KNOWN_BROKEN:
            raise
        raise UnreadableSample(f"{exc} (one of the frames the SimCMF loader replaces as broken)",
                               path=exc.path) from None


def _read(ref: RepackRef) -> Sample:
    paths = {k: Path(v) for k, v in ref.files.items()}
    rgb = _decode(paths["rgb"])
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UnreadableSample(f"{paths['rgb']}: expected an RGB image, found shape {rgb.shape}",
                               path=paths["rgb"])
    mask = _decode(paths["mask"])
    if mask.ndim != 2:
        raise UnreadableSample(f"{paths['mask']}: expected a single-channel instance-id PNG, "
                               f"found shape {mask.shape}", path=paths["mask"])
    images: dict[str, np.ndarray] = {"rgb": rgb}
    facts: dict[str, Any] = {}
    if "depth" in paths:
        try:
            depth = np.load(paths["depth"], allow_pickle=False)
        except ValueError as exc:  # pickled object arrays are refused: untrusted input
            raise UnreadableSample(f"{paths['depth']} is not a plain numeric .npy ({exc})",
                                   path=paths["depth"]) from None
        except (OSError, EOFError) as exc:
            raise UnreadableSample(f"{paths['depth']} cannot be read ({exc})", path=paths["depth"]) from None
        depth = np.squeeze(depth)
        if depth.ndim != 2 or depth.dtype.kind not in "fiu":
            raise UnreadableSample(f"{paths['depth']}: expected a 2-D numeric depth map, found "
                                   f"{depth.dtype} {depth.shape}", path=paths["depth"])
        unit = depth_units(depth, str(paths["depth"]))
        facts["depth_unit"] = unit
        images["depth"] = to_millimetres(depth, unit)
    if "hha" in paths:
        hha = _decode(paths["hha"])
        if hha.ndim != 3 or hha.shape[2] != 3:
            raise UnreadableSample(f"{paths['hha']}: expected a 3-channel HHA image, found {hha.shape}",
                                   path=paths["hha"])
        images["hha"] = hha
    sizes = {k: v.shape[:2] for k, v in images.items()} | {"mask": mask.shape}
    if len(set(sizes.values())) != 1:
        found = ", ".join(f"{k} {w}×{h}" for k, (h, w) in sizes.items())
        raise UnreadableSample(f"frame {ref.number}: sizes differ ({found}); every file of a frame "
                               "must have the same size", path=paths["mask"])
    if mask.max(initial=0) > 65535 or (mask.dtype.kind == "i" and mask.min(initial=0) < 0):
        raise UnreadableSample(f"{paths['mask']}: instance ids outside 0..65535", path=paths["mask"])
    return Sample(image_id=ref.image_id, split=ref.split, images=images,
                  instance_map=mask.astype(np.uint16), instance_category=None, facts=facts)


def check_depth_unit(seen: Sequence[tuple[str, Mapping[str, Any]]], image_id: str,
                     facts: Mapping[str, Any]) -> None:
    """Stop when a frame's depth unit differs from the frames before it."""
    unit = facts.get("depth_unit")
    earlier = {f["depth_unit"] for _, f in seen if "depth_unit" in f}
    if unit is not None and earlier and unit not in earlier:
        raise SourceFormatError(
            f"frame {image_id}'s Depth/<n>.npy is in {unit} but earlier frames were in "
            f"{'/'.join(sorted(earlier))}; the repack's depth files disagree on their unit.")


def describe_notes(config: str, root: str, zero_based: bool, depth_units: set[str]) -> list[str]:
    notes = [
        f"Input: the SimCMF repack NYUDepthv2 (folder {root}), not the original .mat: RGB is "
        "the repack's JPEG (lossy). Instances are the repack's Mask_gt ids as given; the repack "
        "has no class per instance, so category is -1 (unknown).",
    ]
    if zero_based:
        notes.append("The repack numbers frames from 0; image ids are shifted by one to NYUv2's "
                     "1-based frame index.")
    if config == "depth":
        unit = "/".join(sorted(depth_units)) or "unknown"
        notes.append(f"Depth from Depth/<n>.npy, unit detected from the values: {unit}; stored "
                     "as 16-bit millimetres like the original converter.")
    if config == "hha":
        notes.append("HHA is the repack's HHA/<n>.jpg as given (JPEG-compressed, decoded and "
                     "stored losslessly), not recomputed by aims.hha.")
    return notes


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
