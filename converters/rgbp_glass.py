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

The facts (files, classes, column units …) are in :mod:`aims.converters.rgbp_glass_record`;
locating and the glass-mask readers are the shared :mod:`aims.converters.locate` and
:mod:`aims.converters.labels`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aims.coco_instances import (
    CocoAnnotation,
    CocoImage,
    CocoInstances,
    load_coco_instances,
    rasterise_instances,
    require_pycocotools,
)
from aims.converters.base import INSTANCE_MODES, Downloader, Listing, Sample, SampleRef, Skipped, SourceConverter
from aims.converters.labels import GLASS, glass_sample, read_glass_mask
from aims.converters.locate import (
    check_same_size,
    describe_folder,
    describe_image,
    extract_archive,
    find_split_dirs,
    read_pixels,
    source_roots,
)
from aims.converters.record import CONNECTED_COMPONENTS, RELEASE_INSTANCES, REPACK_IDS, InstanceSource
from aims.converters.rgbp_glass_record import ARCHIVE_NAMES, RECORD, SPLITS
from aims.errors import AimsError, SourceFormatError, UnreadableSample

log = logging.getLogger(__name__)

ROOT_FOLDER = "RGBP-Glass"
REPACK_FOLDER = "pgsnet"
#: ids the paper's authors skip as broken
BROKEN_IDS = ("20210808013065", "20210811002205")
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
#: the one category of the release's instances file
GLASS_CATEGORY = "glass"
#: the components fallback's pixel connectivity
CONNECTIVITY = RECORD.instances.connectivity or 8

__all__ = ["ARCHIVE_NAMES", "BROKEN_IDS", "CONVERTER", "RGBPGlass", "locate", "read_glass_mask"]


# --------------------------------------------------------------------------- locating


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


def locate(source: Path | None) -> dict[str, SplitDir]:
    """The train and test folders of an RGBP-Glass source, whatever shape it came in."""
    roots, archives = source_roots(source, RECORD, continue_command=CONTINUE_COMMAND)

    def looks(folder: Path) -> bool:
        return (folder / FILES["rgb"][0]).is_dir()

    found = find_split_dirs(roots, looks)
    if archives and not all(found[s] for s in SPLITS):
        roots = roots + [extract_archive(a, RECORD.name) for a in archives]
        found = find_split_dirs(roots, looks)
    chosen: dict[str, SplitDir] = {}
    for split in SPLITS:
        candidates = found[split]
        if not candidates:
            searched = "; ".join(f"{r} holds {describe_folder(r)}" for r in roots) or "nothing"
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
                f"{describe_folder(folder)}.",
                path=folder,
            )
        for column in ("aolp", "dolp"):
            if not (folder / FILES[column][0]).is_dir():
                raise SourceFormatError(
                    f"RGBP-Glass: {folder} has no `{FILES[column][0]}/` folder (found "
                    f"{describe_folder(folder)}); every split needs image/, aolp/, dolp/ and "
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
            f"{describe_folder(image_dir)}); the {split_dir.split} split is empty. Extract the "
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


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class InstancePlan:
    """Where one split's instances come from (``source``, with the parsed ``coco`` file
    for the release's polygons) and why, for the card."""

    source: InstanceSource
    coco: CocoInstances | None = None

    @property
    def reason(self) -> str:
        return self.source.detail


def _check_glass_only(coco: CocoInstances) -> None:
    used = {coco.categories[a.category_id] for anns in coco.annotations.values() for a in anns}
    if used - {GLASS_CATEGORY}:
        raise SourceFormatError(
            f"{coco.path}: annotations of categories {sorted(used - {GLASS_CATEGORY})}; the "
            f"release has one category, {GLASS_CATEGORY!r}. The file is not RGBP-Glass's.",
            path=coco.path,
        )


def _components(reason: str) -> InstanceSource:
    return InstanceSource(CONNECTED_COMPONENTS, CONNECTIVITY, f"connected components of mask/{reason}")


def plan_instances(split_dir: SplitDir, mode: str) -> InstancePlan:
    """Choose a split's instance source: the repack's ids; else the release's JSON unless
    ``mode`` is ``components`` or the split has none (then connected components)."""
    if split_dir.kind == REPACK:
        return InstancePlan(InstanceSource(REPACK_IDS, CONNECTIVITY,
                                           "the SimCMF repack's instance_mask/ ids, kept as given"))
    json_path = split_dir.instances_file()
    if mode == "components":
        return InstancePlan(_components(", as requested (instances='components')"))
    if json_path is None:
        name = INSTANCES_JSON.format(split=split_dir.split)
        log.warning("RGBP-Glass: %s has no %s; its instances are connected components of mask/ "
                    "(adjacent panes merge)", split_dir.path, name)
        return InstancePlan(_components(f": the split has no {name}"))
    require_pycocotools()
    coco = load_coco_instances(json_path)
    _check_glass_only(coco)
    return InstancePlan(InstanceSource(RELEASE_INSTANCES, CONNECTIVITY,
                                       f"the release's {json_path.name} ({coco.num_annotations} "
                                       f"polygons over {len(coco.images)} images)"), coco)


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


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class RGBPRef(SampleRef):
    """One frame: its files, its label layout, and (release instances) its polygons."""

    label: str = ORIGINAL
    coco_json: str = ""
    coco_image: CocoImage | None = None
    annotations: tuple[CocoAnnotation, ...] = ()


@dataclass
class RGBPListing(Listing):
    """What was found: each split's layout (release or repack) and instance plan."""

    kinds: dict[str, str] = field(default_factory=dict)


def _refs(split_dir: SplitDir, samples: list[tuple[str, dict[str, Path]]], plan: InstancePlan,
          skipped: list[Skipped]) -> list[RGBPRef]:
    entries = _coco_entries(plan, split_dir.split, samples) if plan.coco is not None else {}
    refs = []
    for image_id, files in samples:
        if image_id in BROKEN_IDS:
            # info, not warning: prepare's summary reports every skipped sample once, after its table
            log.info("RGBP-Glass: skipping %s, one of the two ids the authors mark as broken", image_id)
            skipped.append(Skipped(image_id, str(files["rgb"]),
                                   "known broken sample (skipped by the RGBP-Glass authors)"))
            continue
        entry = entries.get(image_id)
        refs.append(RGBPRef(
            image_id=image_id, split=split_dir.split, files={k: str(v) for k, v in files.items()},
            label=split_dir.kind,
            coco_json=str(plan.coco.path) if plan.coco is not None and entry is not None else "",
            coco_image=entry if plan.coco is not None else None,
            annotations=plan.coco.annotations_of(entry.id) if plan.coco is not None and entry is not None else (),
        ))
    return refs


# --------------------------------------------------------------------------- reading


def _read_colour(path: Path, what: str, dtypes: tuple[type, ...]) -> np.ndarray:
    arr = read_pixels(path, what)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype not in dtypes:
        raise UnreadableSample(
            f"{path} is {describe_image(arr)}; expected {what}. The file is not the one the "
            "release ships.",
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


def coco_sample(ref: RGBPRef, images: dict[str, np.ndarray], image: Path) -> Sample:
    """The label half of a sample whose instances come from the release's JSON: its
    polygons rasterised at the frame size (ids and overlap rule: :mod:`aims.coco_instances`),
    every instance of class glass."""
    entry = ref.coco_image
    assert entry is not None
    h, w = images["rgb"].shape[:2]
    if (entry.height, entry.width) != (h, w):
        raise SourceFormatError(
            f"RGBP-Glass: {ref.coco_json} gives image id {entry.id} ({entry.file_name}) the "
            f"size {entry.width}×{entry.height}, but {image} is {w}×{h}; the polygons would not "
            "line up. The instances file does not belong to these images: extract both from "
            "the same archive, or prepare with instances='components'.",
            path=Path(ref.coco_json),
        )
    id_map = rasterise_instances(ref.annotations, h, w)
    category = {k: GLASS for k in range(1, len(ref.annotations) + 1)}
    return Sample(ref.image_id, ref.split, images, instance_map=id_map, instance_category=category)


def read_sample(ref: RGBPRef) -> Sample:
    """Decode one sample's files: RGB at its bit depth, AoLP/DoLP (channels reversed, see
    the module docstring) and the label (release polygons, glass mask → semantic, or
    repack instance ids)."""
    files = {k: Path(v) for k, v in ref.files.items()}
    rgb = read_rgb(files["rgb"], "a 3-channel 8- or 16-bit TIFF")
    images = {"rgb": rgb}
    for column in ("aolp", "dolp"):
        arr = read_rgb8(files[column], "a 3-channel 8-bit TIFF")
        check_same_size(rgb.shape, arr, files[column], files["rgb"])
        images[column] = np.ascontiguousarray(arr[:, :, ::-1])
    if ref.coco_image is not None:
        # the mask is not needed for the polygons, but a mask of another size means the
        # sample's files do not belong together
        check_same_size(rgb.shape, read_glass_mask(files["mask"]), files["mask"], files["rgb"])
        return coco_sample(ref, images, files["rgb"])
    if ref.label == ORIGINAL:
        return glass_sample(ref.image_id, ref.split, images, files["mask"], files["rgb"])
    return glass_sample(ref.image_id, ref.split, images, files["instance_mask"], files["rgb"],
                        instance_ids=True)


# --------------------------------------------------------------------------- converter


def _input_note(kinds: Mapping[str, str]) -> str:
    used = sorted(set(kinds.values()))
    if used == [REPACK]:
        return "Input: the SimCMF repack `pgsnet` (instance_mask/ ids kept as given, class glass)."
    if used == [ORIGINAL] or not used:
        return "Input: the original RGBP-Glass release (image/, aolp/, dolp/, mask/)."
    return "Input per split: " + ", ".join(
        f"{s} = {'SimCMF repack instance_mask/' if k == REPACK else 'original mask/'}"
        for s, k in sorted(kinds.items()))


def _instance_note(sources: Mapping[str, InstanceSource]) -> str:
    per_split = "; ".join(f"{s}: {sources[s].detail}" for s in SPLITS if s in sources)
    text = f"Instance source per split: {per_split}."
    if any(src.kind == RELEASE_INSTANCES for src in sources.values()):
        text += (" Polygons rasterised with pycocotools at the frame size; instance id k = "
                 "the k-th annotation of the frame in ascending COCO annotation id; a pixel "
                 "in several polygons goes to the smallest (then the lowest id); polygons "
                 "covering no pixel give no instance. Unlike connected components of the "
                 "mask, the polygons keep adjacent panes apart.")
    return text


class RGBPGlass(SourceConverter):
    """RGBP-Glass. ``instances`` (at listing): ``"release"`` (the release's instances JSON
    of each split where present, connected components otherwise) or ``"components"``
    (always connected components of the masks, the result before the JSON was used)."""

    record = RECORD

    def list_samples(self, configs: Sequence[str], *, source: Path | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> RGBPListing:
        if instances not in INSTANCE_MODES:
            raise AimsError(f"RGBP-Glass: instances must be one of {', '.join(INSTANCE_MODES)}, "
                            f"got {instances!r}")
        splits = locate(source)
        plans = {s: plan_instances(d, instances) for s, d in splits.items()}
        listed = {s: _list_split(splits[s]) for s in SPLITS}
        seen: dict[str, str] = {}
        for split in SPLITS:
            for image_id, _ in listed[split]:
                if image_id in seen:
                    raise SourceFormatError(
                        f"RGBP-Glass: id {image_id} is in both the {seen[image_id]} and the "
                        f"{split} split; the two archives overlap.",
                    )
                seen[image_id] = split
        skipped: list[Skipped] = []
        refs = [ref for s in SPLITS for ref in _refs(splits[s], listed[s], plans[s], skipped)]
        return RGBPListing(refs=refs, category_names=list(RECORD.classes),
                           instance_sources={s: p.source for s, p in plans.items()}, skipped=skipped,
                           kinds={s: d.kind for s, d in splits.items()})

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        assert isinstance(ref, RGBPRef)
        return read_sample(ref)

    def notes(self, config: str, listing: Listing) -> list[str]:
        assert isinstance(listing, RGBPListing)
        return [_input_note(listing.kinds), _instance_note(listing.instance_sources)]

    def write_miniature(self, folder: Path, *, seed: int = 0, full_resolution: bool = False,
                        layout: str = ORIGINAL) -> Path:
        from aims.converters.rgbp_glass_miniature import write_miniature

        return write_miniature(folder, seed=seed, full_resolution=full_resolution, layout=layout)


CONVERTER = RGBPGlass()
