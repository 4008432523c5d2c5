"""Instances a release ships as a COCO ``instances_*.json``, as an instance-id map.

Why: where a dataset's authors drew one polygon per object (RGBP-Glass: one per glass
pane), those polygons are the ground truth. Connected components of the semantic mask
merge panes that touch, so they are only the fallback when no such file exists.

The file is an input from outside, so it is read defensively: its size is bounded before
it is parsed (:data:`MAX_JSON_BYTES`), only a regular file is read, NaN/Infinity and
non-finite numbers are refused, and every malformed entry raises
:class:`~aims.errors.SourceFormatError` naming the file and the image or annotation id.
Polygon coordinates far outside the frame are refused too: pycocotools rasterises a polygon
by walking its outline pixel by pixel, so a coordinate of 1e9 would cost minutes and
gigabytes.

Rasterisation (:func:`rasterise_instances`) is pycocotools' own (``frPyObjects`` →
``merge`` → ``decode``, as ``COCO.annToMask`` does) at the image's size. The rules:

- **ids**: instance id *k* is the *k*-th annotation of the image in ascending COCO
  annotation id (1-based), whatever order the file lists them in, so ids are stable
  across runs and tools. An annotation that covers no pixel leaves its id unused.
- **overlaps**: a pixel covered by several annotations goes to the one with the smallest
  area (its own rasterised area); equal areas: the lower annotation id. A small pane drawn
  over a larger outline therefore stays visible instead of being painted over.
- **degenerate rings**: a ring of fewer than 3 points (fewer than 6 numbers) encloses no
  area and is dropped (pycocotools would read a 4-number ring as a box). A polygon that
  rasterises to no pixel (smaller than a pixel) gives no instance.
- only polygon segmentations are read (the form RGBP-Glass ships); RLE and crowd
  (``iscrowd`` 1) annotations are refused with a clear error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aims.errors import AimsError, SourceFormatError
from aims.untrusted import BadJsonError, MissingFileError, UntrustedFileError, load_json_bounded

#: largest instances JSON read: the real RGBP-Glass train file (7577 polygons) is a few
#: MB; parsing costs several times the file size in memory, so anything far bigger is
#: refused rather than parsed.
MAX_JSON_BYTES = 256 * 2**20
#: instance ids are stored in a uint16 map, 0 = none
MAX_ANNOTATIONS_PER_IMAGE = 65535
#: largest image side accepted from the file (a bound on the masks allocated)
MAX_SIDE = 32768


@dataclass(frozen=True)
class CocoImage:
    """One ``images`` entry: COCO id, file name as written, and the frame size."""

    id: int
    file_name: str
    height: int
    width: int

    @property
    def base_name(self) -> str:
        """The file name without any folder part (``image/a_rgb.tiff`` → ``a_rgb.tiff``)."""
        return self.file_name.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CocoAnnotation:
    """One polygon annotation: its rings as flat ``[x0, y0, x1, y1, …]`` float tuples."""

    id: int
    image_id: int
    category_id: int
    polygons: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class CocoInstances:
    """A validated instances file, indexed by image."""

    path: Path
    images: dict[int, CocoImage]
    annotations: dict[int, tuple[CocoAnnotation, ...]]  # image id -> sorted by annotation id
    categories: dict[int, str]
    by_name: dict[str, CocoImage]  # file name without folder -> image

    def image_named(self, base_name: str) -> CocoImage | None:
        """The image whose file name (without folder) is ``base_name``, or None."""
        return self.by_name.get(base_name)

    def annotations_of(self, image_id: int) -> tuple[CocoAnnotation, ...]:
        """The image's annotations in ascending annotation id (empty when none)."""
        return self.annotations.get(image_id, ())

    @property
    def num_annotations(self) -> int:
        return sum(len(a) for a in self.annotations.values())


# --------------------------------------------------------------------------- reading


def _fail(path: Path, what: str) -> SourceFormatError:
    return SourceFormatError(
        f"{path}: {what}. The instances file is not the one the release ships (damaged or "
        "edited); extract it again from the archive, or prepare with connected components "
        "of the masks instead (instances='components').",
        path=path,
    )


#: deepest nesting of an instances file (COCO: object, list, annotation, polygons, ring is 5)
MAX_JSON_DEPTH = 16


def read_json_bounded(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file that came from outside (:func:`aims.untrusted.load_json_bounded`):
    regular files only (a link in the release folder is followed to what it names, as for
    the release's images), at most ``max_bytes``, nested at most :data:`MAX_JSON_DEPTH`
    deep, no NaN/Infinity (a float that overflows is left to the polygon checks). Raises
    :class:`SourceFormatError` naming the file."""
    path = Path(path)
    try:
        # floats that overflow to infinity parse as inf: the polygon checks name the annotation
        return load_json_bounded(path, limit=max_bytes, what="an instances file", max_depth=MAX_JSON_DEPTH,
                                 follow_links=True, parse_float=float)
    except MissingFileError:
        raise SourceFormatError(f"{path} does not exist.", path=path) from None
    except BadJsonError as exc:
        raise _fail(path, f"cannot be parsed: it {exc.reason}") from None
    except UntrustedFileError as exc:
        raise _fail(path, exc.reason) from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list_of_dicts(data: Mapping[str, Any], key: str, path: Path) -> list[Mapping[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _fail(path, f"`{key}` must be a list of objects (COCO format)")
    return items


def _parse_categories(data: Mapping[str, Any], path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in _list_of_dicts(data, "categories", path):
        cid, name = _int(c.get("id")), c.get("name")
        if cid is None or not isinstance(name, str):
            raise _fail(path, f"category {c.get('id')!r} needs an integer `id` and a string `name`")
        if cid in out:
            raise _fail(path, f"category id {cid} appears twice")
        out[cid] = name
    return out


def _parse_image(entry: Mapping[str, Any], path: Path) -> CocoImage:
    iid, name = _int(entry.get("id")), entry.get("file_name")
    h, w = _int(entry.get("height")), _int(entry.get("width"))
    if iid is None:
        raise _fail(path, f"an image has no integer `id` (got {entry.get('id')!r})")
    if not isinstance(name, str) or not name:
        raise _fail(path, f"image id {iid} has no `file_name`")
    if h is None or w is None or not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise _fail(path, f"image id {iid} ({name}) needs integer `height` and `width` in "
                          f"1..{MAX_SIDE}, got {entry.get('height')!r} × {entry.get('width')!r}")
    return CocoImage(iid, name, h, w)


def _parse_ring(ring: Any, image: CocoImage, ann_id: int, path: Path) -> tuple[float, ...] | None:
    """One polygon ring as floats, or None when it has under 3 points (no area)."""
    if not isinstance(ring, list) or len(ring) % 2:
        raise _fail(path, f"annotation id {ann_id}: a polygon must be a list of an even "
                          "number of coordinates [x0, y0, x1, y1, …]")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ring):
        raise _fail(path, f"annotation id {ann_id}: polygon coordinates must be numbers")
    xs, ys = ring[0::2], ring[1::2]
    for values, side, axis in ((xs, image.width, "x"), (ys, image.height, "y")):
        if not all(math.isfinite(v) and -side <= v <= 2 * side for v in values):
            raise _fail(path, f"annotation id {ann_id}: a polygon {axis} coordinate is not "
                              f"finite or lies far outside the {image.width}×{image.height} "
                              f"frame of image id {image.id} (allowed {-side}..{2 * side})")
    if len(ring) < 6:
        return None
    return tuple(float(v) for v in ring)


def _parse_annotation(entry: Mapping[str, Any], images: Mapping[int, CocoImage],
                      categories: Mapping[int, str], path: Path) -> CocoAnnotation:
    aid = _int(entry.get("id"))
    if aid is None:
        raise _fail(path, f"an annotation has no integer `id` (got {entry.get('id')!r})")
    iid, cid = _int(entry.get("image_id")), _int(entry.get("category_id"))
    if iid not in images:
        raise _fail(path, f"annotation id {aid}: image_id {entry.get('image_id')!r} is not in `images`")
    if cid not in categories:
        raise _fail(path, f"annotation id {aid}: category_id {entry.get('category_id')!r} is not "
                          "in `categories`")
    if entry.get("iscrowd", 0) not in (0, False):
        raise _fail(path, f"annotation id {aid}: crowd regions (iscrowd {entry.get('iscrowd')!r}) "
                          "are not supported")
    seg = entry.get("segmentation")
    if not isinstance(seg, list):
        kind = "an RLE" if isinstance(seg, dict) else f"a {type(seg).__name__}"
        raise _fail(path, f"annotation id {aid}: segmentation is {kind}; only polygons (a list "
                          "of [x0, y0, x1, y1, …] rings) are supported")
    rings = [_parse_ring(r, images[iid], aid, path) for r in seg]
    return CocoAnnotation(aid, iid, cid, tuple(r for r in rings if r is not None))


def parse_coco_instances(data: Any, path: str | os.PathLike) -> CocoInstances:
    """Validate parsed COCO instances (``images``, ``annotations``, ``categories``);
    ``path`` only names the file in errors."""
    path = Path(path)
    if not isinstance(data, dict):
        raise _fail(path, "the top level must be an object with `images`, `annotations` and "
                          "`categories` (COCO format)")
    categories = _parse_categories(data, path)
    images: dict[int, CocoImage] = {}
    names: dict[str, CocoImage] = {}
    for entry in _list_of_dicts(data, "images", path):
        img = _parse_image(entry, path)
        if img.id in images:
            raise _fail(path, f"image id {img.id} appears twice")
        if img.base_name in names:
            raise _fail(path, f"file name {img.base_name} appears twice in `images`")
        images[img.id] = img
        names[img.base_name] = img
    per_image: dict[int, list[CocoAnnotation]] = {}
    seen: set[int] = set()
    for entry in _list_of_dicts(data, "annotations", path):
        ann = _parse_annotation(entry, images, categories, path)
        if ann.id in seen:
            raise _fail(path, f"annotation id {ann.id} appears twice")
        seen.add(ann.id)
        per_image.setdefault(ann.image_id, []).append(ann)
    for iid, anns in per_image.items():
        if len(anns) > MAX_ANNOTATIONS_PER_IMAGE:
            raise _fail(path, f"image id {iid} has {len(anns)} annotations, more than the "
                              f"{MAX_ANNOTATIONS_PER_IMAGE} instance ids a uint16 map holds")
    annotations = {iid: tuple(sorted(a, key=lambda x: x.id)) for iid, a in per_image.items()}
    return CocoInstances(path, images, annotations, categories, names)


def load_coco_instances(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> CocoInstances:
    """Read and validate a COCO instances JSON (see the module docstring for the bounds)."""
    return parse_coco_instances(read_json_bounded(path, max_bytes=max_bytes), path)


# --------------------------------------------------------------------------- rasterising


def require_pycocotools() -> Any:
    """``pycocotools.mask``, or an :class:`AimsError` saying how to get it (asked before
    any work starts, not in a worker half-way through)."""
    try:
        from pycocotools import mask
    except ImportError:
        raise AimsError(
            "reading a release's COCO instances file needs pycocotools: "
            "`pip install 'pycocotools>=2.0.7'` (or prepare with connected components of the "
            "masks instead: instances='components')."
        ) from None
    return mask


def _rle(mask_api: Any, annotation: CocoAnnotation, height: int, width: int) -> Any | None:
    if not annotation.polygons:
        return None
    rles = mask_api.frPyObjects([list(p) for p in annotation.polygons], height, width)
    return mask_api.merge(rles)


def polygon_mask(annotation: CocoAnnotation, height: int, width: int) -> np.ndarray:
    """The annotation's pixels as a ``(height, width)`` bool map (pycocotools' raster;
    the union of its rings)."""
    mask_api = require_pycocotools()
    rle = _rle(mask_api, annotation, height, width)
    if rle is None:
        return np.zeros((height, width), bool)
    return mask_api.decode(rle).astype(bool)


def rasterise_instances(annotations: Sequence[CocoAnnotation], height: int, width: int) -> np.ndarray:
    """A ``(height, width)`` uint16 instance-id map of one image's annotations.

    Id *k* = the *k*-th annotation in ascending annotation id (1-based); overlapping pixels
    go to the smallest annotation (ties: the lower annotation id); see the module
    docstring for why."""
    if len(annotations) > MAX_ANNOTATIONS_PER_IMAGE:
        raise ValueError(f"{len(annotations)} annotations do not fit a uint16 id map")
    mask_api = require_pycocotools()
    ordered = sorted(annotations, key=lambda a: a.id)
    rles = [_rle(mask_api, a, height, width) for a in ordered]
    areas = [0 if r is None else int(mask_api.area(r)) for r in rles]
    # paint the largest first; later paints win, so the smallest (then lowest id) wins
    paint = sorted((k for k in range(len(ordered)) if areas[k] > 0), key=lambda k: (-areas[k], -k))
    id_map = np.zeros((height, width), np.uint16)
    for k in paint:
        id_map[mask_api.decode(rles[k]).astype(bool)] = k + 1
    return id_map


__all__ = [
    "MAX_ANNOTATIONS_PER_IMAGE",
    "MAX_JSON_BYTES",
    "CocoAnnotation",
    "CocoImage",
    "CocoInstances",
    "load_coco_instances",
    "parse_coco_instances",
    "polygon_mask",
    "rasterise_instances",
    "read_json_bounded",
    "require_pycocotools",
]
