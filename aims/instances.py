"""Semantic label map -> instances (docs/protocol.md, "Instances").

An instance is a connected component of ONE semantic class: components are found class
by class, so two touching regions of different classes are two instances, and labels
listed in ``ignore`` (void, 255) never become instances. Sources that already give
instance ids (the repacks) go through :func:`instances_from_id_map` instead, where every
id is one instance as given.

Instance order of :func:`split_instances` (it fixes the ids 1..N, so it is part of the
dataset format): classes in ascending order; within a class, components by their first
pixel in raster (row-major) order. That is the order ``skimage.measure.label`` numbers
components of one class in, and it does not depend on OpenCV's labelling algorithm
(OpenCV's block-based default numbers components in 2×2-block order, which differs).

Every instance carries its two click prompts, computed once here so that all models are
evaluated on the same points: ``point`` (protocol ``aims``, native pixels) and
``point_simcmf`` (protocol ``simcmf``, 1024×1024 warped frame), see :mod:`aims.clicks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from aims.clicks import argmax_padded_dt, clicks_simcmf_boxes, clicks_simcmf
from aims.errors import AimsError

__all__ = ["Instances", "instances_from_id_map", "split_instances"]

MAX_INSTANCES = 65535  # id_map is uint16 and 0 means "no instance"


@dataclass(frozen=True, eq=False)
class Instances:
    """All instances of one image, as parallel arrays (row i = instance ``ids[i]``).

    Arrays rather than a list of objects because converters write them straight into
    Arrow columns and the evaluator vectorises over them. ``eq=False``: a generated
    ``==``/``hash`` over numpy arrays would raise, so equality is identity; compare the
    fields with ``np.array_equal``.
    """

    id_map: np.ndarray  # (H, W) uint16, 0 = no instance
    ids: np.ndarray  # (N,) int32
    category: np.ndarray  # (N,) int32, semantic class (-1 when unknown)
    area: np.ndarray  # (N,) int64, pixels at native resolution
    bbox: np.ndarray  # (N, 4) int32, x, y, w, h (COCO order)
    point: np.ndarray  # (N, 2) int32, (x, y): protocol `aims` click, native pixels
    point_simcmf: np.ndarray  # (N, 2) int32, (x, y) in 1024x1024 frame; (-1, -1) if gone

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _check_label_map(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise AimsError(f"{what} must be a 2-D (H, W) label map, got shape {a.shape}.")
    if not np.issubdtype(a.dtype, np.integer):
        raise AimsError(
            f"{what} must have an integer dtype (class or instance ids), got {a.dtype}; "
            "decode label PNGs without conversion to float or RGB."
        )
    return a


def _present_labels(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``a``. A histogram for 8/16-bit unsigned maps because
    ``np.unique`` sorts the whole image, which would dominate the cost on label PNGs."""
    if a.dtype == np.uint8 and a.size:
        hist = cv2.calcHist([np.ascontiguousarray(a)], [0], None, [256], [0, 256])
        return np.flatnonzero(hist.ravel())
    if a.dtype.itemsize <= 2 and a.dtype.kind == "u":
        return np.flatnonzero(np.bincount(a.ravel(), minlength=1))
    return np.unique(a)


def _clicks_from_labels(
    labels: np.ndarray, stats: np.ndarray, comps: np.ndarray, out: np.ndarray
) -> None:
    """``aims`` click of each component ``comps[j]`` of an OpenCV label image into
    ``out[j]``, working on the bounding-box crop padded by one pixel (exact, see
    :func:`aims.clicks.click_aims`)."""
    for j, k in enumerate(comps):
        x0, y0, w, h = (int(v) for v in stats[k, :4])
        padded = np.zeros((h + 2, w + 2), np.uint8)
        np.equal(labels[y0 : y0 + h, x0 : x0 + w], k, out=padded[1:-1, 1:-1].view(bool))
        y, x = divmod(argmax_padded_dt(padded), w + 2)
        out[j, 0] = x0 + x - 1
        out[j, 1] = y0 + y - 1


def _split(
    semantic: np.ndarray, ignore: Iterable[int], connectivity: int, simcmf: bool
) -> Instances:
    semantic = _check_label_map(semantic, "semantic")
    if connectivity not in (4, 8):
        raise AimsError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    ignore_set = {int(v) for v in ignore}
    classes = [int(c) for c in _present_labels(semantic) if int(c) not in ignore_set]
    if classes and (classes[0] < -(2**31) or classes[-1] >= 2**31):
        raise AimsError("semantic class ids must fit in int32 (the category column).")

    h, w = semantic.shape
    id_map = np.zeros((h, w), np.uint16)
    cats, areas, bboxes, points = [], [], [], []
    n_total = 0
    ccl = cv2.CCL_BBDT if connectivity == 8 else cv2.CCL_SAUF
    for c in classes:
        # Label only the class's bounding box: on real maps that is ~1/3 of the pixels,
        # and OpenCV's cost (labels + stats) is per pixel.
        full = semantic == c
        rows = np.flatnonzero(full.any(axis=1))
        cols = np.flatnonzero(full.any(axis=0))
        ry, rx = int(rows[0]), int(cols[0])
        win = (slice(ry, int(rows[-1]) + 1), slice(rx, int(cols[-1]) + 1))
        mask = np.ascontiguousarray(full[win])
        n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
            mask.view(np.uint8), connectivity, cv2.CV_32S, ccl
        )
        n -= 1  # label 0 is everything that is not class c
        if n_total + n > MAX_INSTANCES:
            raise AimsError(
                f"more than {MAX_INSTANCES} instances in one image (the id map is uint16); "
                "this is not a plausible segmentation label map."
            )
        # Raster order of each component's first pixel: its first row is the bbox top,
        # and in that row its leftmost pixel is the first one equal to the label.
        comps = np.arange(1, n + 1)
        tops = stats[1:, cv2.CC_STAT_TOP].astype(np.int64)
        firsts = np.empty(n, np.int64)
        for j in range(n):
            x0 = int(stats[j + 1, cv2.CC_STAT_LEFT])
            row = labels[int(tops[j]), x0 : x0 + int(stats[j + 1, cv2.CC_STAT_WIDTH])]
            firsts[j] = x0 + int(np.argmax(row == j + 1))
        order = np.argsort(tops * w + firsts, kind="stable")
        comps = comps[order]

        lut = np.zeros(n + 1, np.uint16)
        lut[comps] = np.arange(n_total + 1, n_total + n + 1, dtype=np.uint16)
        id_map[win][mask] = lut[labels[mask]]

        st = stats[comps]
        pts = np.empty((n, 2), np.int32)
        _clicks_from_labels(labels, stats, comps, pts)
        pts += (rx, ry)
        box = st[:, :4].astype(np.int32)
        box[:, 0] += rx
        box[:, 1] += ry
        cats.append(np.full(n, c, np.int32))
        areas.append(st[:, cv2.CC_STAT_AREA].astype(np.int64))
        bboxes.append(box)
        points.append(pts)
        n_total += n

    ids = np.arange(1, n_total + 1, dtype=np.int32)
    if n_total:
        category = np.concatenate(cats)
        area = np.concatenate(areas)
        bbox = np.concatenate(bboxes)
        point = np.concatenate(points)
    else:
        category = np.zeros(0, np.int32)
        area = np.zeros(0, np.int64)
        bbox = np.zeros((0, 4), np.int32)
        point = np.zeros((0, 2), np.int32)
    point_simcmf = (
        clicks_simcmf_boxes(id_map, ids, bbox.astype(np.int64), 1024)
        if simcmf
        else np.full((n_total, 2), -1, np.int32)
    )
    return Instances(id_map, ids, category, area, bbox, point, point_simcmf)


def split_instances(
    semantic: np.ndarray, *, ignore: Iterable[int] = (0, 255), connectivity: int = 8
) -> Instances:
    """Split a semantic label map into per-class connected components.

    ``semantic`` is an (H, W) integer array of class ids; values in ``ignore`` (default
    void 0 and 255) never form instances; ``connectivity`` is 8 (protocol default) or 4.
    Ids are 1..N in the module's documented order (class ascending, then first pixel in
    raster order), so the same label map always gives the same ids. Components come from
    ``cv2.connectedComponentsWithStats`` run once per class (never across classes), which
    also gives exact areas and bounding boxes; the ``aims`` click uses each instance's
    padded bounding-box crop only. Raises :class:`AimsError` for a non-2-D or non-integer
    input, a connectivity other than 4/8, or more than 65535 instances.
    """
    return _split(semantic, ignore, connectivity, simcmf=True)


def instances_from_id_map(
    id_map: np.ndarray, category: Mapping[int, int] | None = None
) -> Instances:
    """Instances of a source that already gives instance ids (0 = none).

    Every distinct non-zero id is one instance, kept as given (not renumbered, not split
    into components: the source's grouping is the ground truth), in ascending id order.
    ``category`` maps id -> semantic class; ids it does not cover get -1. Ids must fit
    the uint16 id map (1..65535).
    """
    id_map = _check_label_map(id_map, "id_map")
    if id_map.size and (int(id_map.min()) < 0 or int(id_map.max()) > MAX_INSTANCES):
        raise AimsError(
            f"instance ids must be in 0..{MAX_INSTANCES} (0 = no instance), got "
            f"{int(id_map.min())}..{int(id_map.max())}."
        )
    id16 = id_map.astype(np.uint16, copy=False)
    present = _present_labels(id16)
    ids = present[present != 0].astype(np.int32)
    n = ids.size
    area_all = np.bincount(id16.ravel(), minlength=int(ids.max(initial=0)) + 1)
    area = area_all[ids].astype(np.int64)
    bbox = np.zeros((n, 4), np.int32)
    point = np.zeros((n, 2), np.int32)
    if n:
        from scipy import ndimage  # find_objects: all bounding boxes in one pass

        slices = ndimage.find_objects(id16)
        for j, i in enumerate(ids):
            sy, sx = slices[int(i) - 1]
            x0, y0 = sx.start, sy.start
            w, h = sx.stop - x0, sy.stop - y0
            bbox[j] = (x0, y0, w, h)
            padded = np.zeros((h + 2, w + 2), np.uint8)
            np.equal(id16[sy, sx], i, out=padded[1:-1, 1:-1].view(bool))
            y, x = divmod(argmax_padded_dt(padded), w + 2)
            point[j] = (x0 + x - 1, y0 + y - 1)
    cat = np.full(n, -1, np.int32)
    if category is not None:
        for j, i in enumerate(ids):
            cat[j] = int(category.get(int(i), -1))
    return Instances(
        id_map=id16.copy() if id16 is id_map else id16,
        ids=ids,
        category=cat,
        area=area,
        bbox=bbox,
        point=point,
        point_simcmf=clicks_simcmf(id16, ids),
    )
