"""The one-click prompts of the two protocols (see docs/protocol.md).

* ``aims`` (:func:`click_aims`): the pixel farthest from the instance boundary, i.e. the
  first maximum, in row-major order, of the exact Euclidean distance transform of the
  mask padded by one background pixel. The padding makes the image border count as
  boundary, so the click of an instance cut by the border moves away from the border
  (without it the border would look like "more object" and the click would slide onto
  it). The maximum of a distance transform is always inside the mask, unlike a centroid.
* ``simcmf`` (:func:`clicks_simcmf`): the SimCMF reference code's click, reproduced
  bit for bit: warp the instance-id mask to 1024×1024 with PIL nearest neighbour, then
  take the middle pixel (``len // 2``) of ``np.argwhere(mask == id)``.

Interactive evaluation (:func:`next_click`) adds corrective clicks after the first: the
error pixel farthest from its error region's boundary, the same distance rule as the
``aims`` click, applied to the false negatives (a positive click) and the false positives
(a negative click).

Both one-click rules work without touching the full frame once per instance: the ``aims`` click only
needs the instance's bounding box plus a one-pixel ring (the nearest background pixel of
any instance pixel is always inside that ring, see :func:`click_aims`), and the
``simcmf`` click is one stable sort of the warped frame for all instances at once.
"""

from __future__ import annotations

import cv2
import numpy as np

from typing import NamedTuple

from aims.errors import AimsError

__all__ = ["Click", "argmax_padded_dt", "click_aims", "clicks_simcmf", "clicks_simcmf_boxes", "next_click",
           "pil_nearest_index", "warp_nearest"]


def argmax_padded_dt(padded: np.ndarray) -> int:
    """Flat index (in ``padded``) of the first maximum of the exact EDT of ``padded``.

    ``padded`` is a C-contiguous uint8 0/1 image whose outer ring is 0.

    WHY the extra step after OpenCV: ``cv2.distanceTransform(DIST_L2, DIST_MASK_PRECISE)``
    is the exact (Felzenszwalb) transform but returns float32 square roots, so two
    different true distances can in principle round to the same float32, or two equal
    ones differently, and the "first maximum" would then depend on rounding. True squared
    distances are integers, and neighbouring ones (D-1, D) differ by at least
    1/(2*sqrt(D)) after the square root. So we keep every pixel within a quarter of that
    gap of the float maximum, recover its integer squared distance by rounding, and take
    the first pixel with the largest integer. The result equals the argmax of
    ``scipy.ndimage.distance_transform_edt`` (float64) exactly.
    """
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    flat = dt.ravel()
    top = int(np.argmax(flat))
    m = float(flat[top])
    tol = 0.25 / (2.0 * m + 1.0)
    cand = np.flatnonzero(flat >= m - tol)
    if cand.size == 1:
        return top
    d2 = np.rint(flat[cand].astype(np.float64) ** 2)
    return int(cand[int(np.argmax(d2))])


def click_aims(mask: np.ndarray) -> tuple[int, int]:
    """``aims`` click of one instance: (x, y) of the first maximum, in row-major order, of
    the exact Euclidean distance transform of ``mask`` padded by one background pixel.

    ``mask`` is a 2-D boolean (or 0/1 integer) array, typically the instance's bounding
    box crop; the returned coordinates are in that array's frame. Cropping is exact: for
    any instance pixel, the nearest background pixel of the full padded image is never
    farther than the one-pixel ring around the bounding box (clamp it onto the ring), so
    the distance transform of the padded crop equals that of the padded full image on
    the instance. Raises :class:`AimsError` for an empty mask (there is no click).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AimsError(f"click_aims needs a 2-D mask, got shape {mask.shape}.")
    if mask.dtype != np.bool_ and not np.issubdtype(mask.dtype, np.integer):
        raise AimsError(f"click_aims needs a boolean or integer mask, got dtype {mask.dtype}.")
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask != 0
    if not padded.any():
        raise AimsError("click_aims got an empty mask: an instance needs at least one pixel.")
    idx = argmax_padded_dt(padded)
    y, x = divmod(idx, w + 2)
    return x - 1, y - 1


class Click(NamedTuple):
    """A corrective click: pixel (x, y) of the mask's frame; ``positive`` for "object here"."""

    x: int
    y: int
    positive: bool


def _deepest(region: np.ndarray) -> tuple[int, int, int]:
    """(squared distance, x, y) of the first maximum, in row-major order, of the exact
    EDT of ``region`` padded by one background pixel; (0, -1, -1) for an empty region.
    The squared distance is an exact integer, so two regions compare without rounding."""
    h, w = region.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = region
    if not padded.any():
        return 0, -1, -1
    idx = argmax_padded_dt(padded)
    dist = float(cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).ravel()[idx])
    y, x = divmod(idx, w + 2)
    return int(round(dist * dist)), x - 1, y - 1


def next_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The next corrective click of interactive evaluation, or ``None`` when ``pred`` equals ``gt``.

    Rule (docs/predictions.md, "Interactive predictions"): over the two error regions, false
    negatives ``gt & ~pred`` and false positives ``pred & ~gt``, take the pixel farthest
    from its region's boundary — the maximum of the exact Euclidean distance transform of
    the region padded by one background pixel (so the image border counts as boundary,
    as for the first click :func:`click_aims`). The click is positive if that pixel is a
    false negative, negative if a false positive. Ties between the two regions go to the
    false negatives; within a region, to the first pixel in row-major order. This is
    RITM's clicker (``isegm/inference/clicker.py``: padded ``cv2.distanceTransform``,
    first of ``np.where`` at the maximum) with two differences: RITM gives a tie to the
    false positives (``is_positive = fn_max_dist > fp_max_dist``) and never clicks a pixel
    twice (its ``not_clicked_map``). Both masks are 2-D boolean arrays of the same shape."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise AimsError(f"next_click needs two 2-D masks of the same shape, got {pred.shape} and {gt.shape}.")
    d_fn, x_fn, y_fn = _deepest(gt & ~pred)
    d_fp, x_fp, y_fp = _deepest(pred & ~gt)
    if d_fn == 0 and d_fp == 0:
        return None
    if d_fn >= d_fp:
        return Click(x_fn, y_fn, True)
    return Click(x_fp, y_fp, False)


def pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output position of PIL's NEAREST resize along one axis.

    WHY replicate the arithmetic rather than use ``floor((i + 0.5) * n_in / n_out)``:
    Pillow (``ImagingScaleAffine``) starts at ``scale * 0.5`` and *adds* ``scale`` once per
    output pixel in double precision, truncating each position to int. The accumulated
    rounding can differ from the closed formula exactly at half-way ties, so we
    accumulate the same way (``np.add.accumulate`` is a strict left-to-right sum).
    Positions outside the source (none in practice) are marked -1; PIL fills them with 0.
    """
    scale = float(n_in) / float(n_out)
    steps = np.full(n_out, scale, dtype=np.float64)
    steps[0] = 0.0 + scale * 0.5
    pos = np.add.accumulate(steps)
    idx = np.where(pos < 0.0, -1, pos.astype(np.int64))
    idx[idx >= n_in] = -1
    return idx


def warp_nearest(label: np.ndarray, size: tuple[int, int] = (1024, 1024)) -> np.ndarray:
    """Nearest-neighbour warp of a label map to ``size`` = (width, height), PIL's order.

    Bit-identical to ``Image.fromarray(label.astype(np.int32), 'I').resize(size,
    Image.NEAREST)`` (which is what the SimCMF reference does to its label masks), but
    pure index arithmetic: no int32 round trip, the dtype is kept, and it is a single
    fancy-indexing gather. The aspect ratio is not kept, as in the reference.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise AimsError(f"warp_nearest needs a 2-D label map, got shape {label.shape}.")
    out_w, out_h = int(size[0]), int(size[1])
    if out_w <= 0 or out_h <= 0:
        raise AimsError(f"warp_nearest needs a positive size, got {size}.")
    h, w = label.shape
    if (out_w, out_h) == (w, h):
        return label.copy()
    yi = pil_nearest_index(h, out_h)
    xi = pil_nearest_index(w, out_w)
    if (yi < 0).any() or (xi < 0).any():  # pragma: no cover - unreachable for sane sizes
        out = np.zeros((out_h, out_w), label.dtype)
        ys, xs = np.flatnonzero(yi >= 0), np.flatnonzero(xi >= 0)
        out[np.ix_(ys, xs)] = label[np.ix_(yi[ys], xi[xs])]
        return out
    # Two 1-D gathers: ~4x faster than one broadcast 2-D fancy index.
    return label.take(yi, axis=0).take(xi, axis=1)


def clicks_simcmf(id_map: np.ndarray, ids: np.ndarray, size: int = 1024) -> np.ndarray:
    """``simcmf`` clicks: for each id in ``ids``, (x, y) in the ``size``×``size`` warped
    frame of the middle pixel (index ``len // 2``) of ``np.argwhere(warped == id)``;
    (-1, -1) when the id has no pixel left after the warp (small instances can vanish).

    WHY crops instead of one ``argwhere`` per instance: the per-instance version scans
    the whole warped frame N times. The nearest warp maps rows and columns
    monotonically, so an instance's native bounding box maps to one rectangle of the
    warped frame, and raster order inside that rectangle is raster order in the frame:
    the middle pixel of the crop's ``flatnonzero`` is the reference's middle pixel.
    """
    id_map = np.asarray(id_map)
    ids = np.asarray(ids).astype(np.int64, copy=False).ravel()
    if id_map.ndim != 2:
        raise AimsError(f"clicks_simcmf needs a 2-D id map, got shape {id_map.shape}.")
    if not np.issubdtype(id_map.dtype, np.integer):
        raise AimsError(f"clicks_simcmf needs an integer id map, got dtype {id_map.dtype}.")
    out = np.full((ids.size, 2), -1, dtype=np.int32)
    if ids.size == 0 or id_map.size == 0:
        return out
    if int(id_map.min()) < 0:
        raise AimsError("clicks_simcmf: the id map has negative ids.")
    from scipy import ndimage  # one pass for all bounding boxes

    ok = ids > 0
    slices = ndimage.find_objects(id_map, max_label=int(ids.max(initial=0)))
    boxes = np.full((ids.size, 4), -1, np.int64)
    for j, i in enumerate(ids):
        if ok[j] and slices[i - 1] is not None:
            sy, sx = slices[i - 1]
            boxes[j] = (sx.start, sy.start, sx.stop - sx.start, sy.stop - sy.start)
    return clicks_simcmf_boxes(id_map, ids, boxes, size)


def clicks_simcmf_boxes(
    id_map: np.ndarray, ids: np.ndarray, boxes: np.ndarray, size: int
) -> np.ndarray:
    """:func:`clicks_simcmf` with the native (x, y, w, h) boxes already known (w = -1 or
    0 for an id that is absent); :func:`aims.instances.split_instances` has them from
    OpenCV for free."""
    out = np.full((len(ids), 2), -1, dtype=np.int32)
    h, w = id_map.shape
    yi = pil_nearest_index(h, size)
    xi = pil_nearest_index(w, size)
    warped = warp_nearest(id_map, (size, size))
    # warped rows [r0, r1) come from native rows [y0, y0 + h): yi is non-decreasing.
    x0, y0, bw, bh = (boxes[:, k] for k in range(4))
    c0 = np.searchsorted(xi, x0, "left")
    c1 = np.searchsorted(xi, x0 + bw, "left")
    r0 = np.searchsorted(yi, y0, "left")
    r1 = np.searchsorted(yi, y0 + bh, "left")
    for j, i in enumerate(ids):
        if bw[j] <= 0 or r1[j] <= r0[j] or c1[j] <= c0[j]:
            continue
        crop = warped[r0[j] : r1[j], c0[j] : c1[j]]
        hits = np.flatnonzero(crop == i)
        if hits.size:
            y, x = divmod(int(hits[hits.size // 2]), int(c1[j] - c0[j]))
            out[j] = (c0[j] + x, r0[j] + y)
    return out
