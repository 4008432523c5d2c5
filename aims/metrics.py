"""Mask IoU, vectorised over all instances of an image, and the summary statistics.

WHY not the obvious per-instance IoU: an image has tens of instances and each binary mask
is a full frame, so ``(pred & gt).sum()`` / ``(pred | gt).sum()`` (or COCO's encode-both-
then-``iou``) scans several full frames per instance. Here the ground-truth side only
touches the instance's bounding box (the dataset stores it; its correctness is proved by
recounting the area inside it), and the prediction needs one ``count_nonzero`` for its area
plus the box for the intersection: |P ∪ G| = |P| + |G| - |P ∩ G|. For RLE predictions the
mask is not even decoded: the runs of 1 are intervals of column-major positions, and the
intersection is two ``searchsorted`` calls against the instance's sorted positions.

IoU = (|P ∩ G| + eps) / (|P ∪ G| + eps): eps = 0 for protocol ``aims`` (every evaluated
instance has at least 100 pixels, so the union is never empty), 1e-6 for ``simcmf`` (the
reference code's smoothing). Dice = (2|P ∩ G| + eps) / (|P| + |G| + eps) from the same
counts (:func:`dice_from_counts`): eps = 0 for ``aims``; for ``simcmf`` the reference's
``DiceCoeff`` (eps 1e-4, float32 arithmetic).

Interactive metrics (:func:`miou_at_clicks`, :func:`number_of_clicks`) take each instance's
IoU after click 1, 2, …, K: mIoU@k, and NoC@t as RITM counts it (the first click whose IoU
reaches t; ``max_clicks`` when none does).
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np

__all__ = [
    "NOC_MAX_CLICKS",
    "NOC_THRESHOLDS",
    "bootstrap_ci",
    "dense_intersections",
    "dice",
    "dice_from_counts",
    "iou",
    "iou_from_counts",
    "label_boxes",
    "miou_at_clicks",
    "number_of_clicks",
    "rle_intersections",
    "size_bucket",
]

#: RITM's click budget for NoC (``compute_noc_metric(..., max_clicks=20)``) and the IoU
#: thresholds interactive papers report (NoC@85, NoC@90).
NOC_MAX_CLICKS = 20
NOC_THRESHOLDS = (0.85, 0.90)

#: COCO's area thresholds: small < 32², medium < 96², large otherwise.
COCO_SMALL = 32**2
COCO_MEDIUM = 96**2


def iou(pred: np.ndarray, gt: np.ndarray, eps: float = 0.0) -> float:
    """IoU of two binary masks of the same shape (reference implementation; the scorer
    uses the vectorised functions below)."""
    p = np.asarray(pred, bool)
    g = np.asarray(gt, bool)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    inter = np.count_nonzero(p & g)
    union = np.count_nonzero(p | g)
    return float((inter + eps) / (union + eps))


def iou_from_counts(inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """IoU per instance from intersections and areas (float64). With eps = 0 an empty
    union gives NaN (never happens for evaluated ``aims`` instances)."""
    inter = np.asarray(inter, np.float64)
    union = np.asarray(pred_area, np.float64) + np.asarray(gt_area, np.float64) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return (inter + eps) / (union + eps)


def dice(pred: np.ndarray, gt: np.ndarray, eps: float = 0.0) -> float:
    """Dice of two binary masks of the same shape (reference implementation, float64)."""
    p = np.asarray(pred, bool)
    g = np.asarray(gt, bool)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    inter = np.count_nonzero(p & g)
    return float((2 * inter + eps) / (np.count_nonzero(p) + np.count_nonzero(g) + eps))


def dice_from_counts(inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray, eps: float = 0.0,
                     *, float32: bool = False) -> np.ndarray:
    """Dice per instance, (2|P∩G| + eps) / (|P| + |G| + eps), from the same counts as the
    IoU. ``float32=True`` reproduces the SimCMF reference's torch ``DiceCoeff`` exactly:
    counts as float32 (exact below 2**24 pixels), eps added and the ratio taken in float32;
    the result is returned as float64 holding that float32 value. With eps = 0 an empty
    mask pair gives NaN (never happens for evaluated ``aims`` instances)."""
    ftype = np.float32 if float32 else np.float64
    i = np.asarray(inter, np.int64)
    num = (2 * i).astype(ftype) + ftype(eps)
    den = (np.asarray(pred_area, np.int64) + np.asarray(gt_area, np.int64)).astype(ftype) + ftype(eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (num / den).astype(np.float64)


def number_of_clicks(ious: np.ndarray, threshold: float, max_clicks: int = NOC_MAX_CLICKS) -> np.ndarray:
    """Clicks each instance needs to reach ``threshold`` IoU, as RITM's ``compute_noc_metric``
    counts them: the 1-based index of the first click whose IoU is ≥ ``threshold`` among
    the first ``max_clicks``; ``max_clicks`` when none reaches it.

    ``ious``: (N, K) IoU after click 1..K (K ≥ ``max_clicks`` for RITM's number; with
    fewer clicks the count is capped at K, and callers must say so). NaN never reaches a
    threshold. Returns (N,) int64."""
    a = np.asarray(ious, np.float64)
    if a.ndim != 2:
        raise ValueError(f"ious must be (instances, clicks), got shape {a.shape}")
    cap = min(int(max_clicks), a.shape[1])
    if cap < 1:
        raise ValueError("number_of_clicks needs at least one click")
    with np.errstate(invalid="ignore"):
        hit = a[:, :cap] >= threshold
    first = np.argmax(hit, axis=1) + 1
    return np.where(hit.any(axis=1), first, cap).astype(np.int64)


def miou_at_clicks(ious: np.ndarray) -> list[float | None]:
    """mIoU@k for k = 1..K: the plain mean over instances of the IoU after click k."""
    a = np.asarray(ious, np.float64)
    if a.ndim != 2:
        raise ValueError(f"ious must be (instances, clicks), got shape {a.shape}")
    if a.shape[0] == 0:
        return [None] * a.shape[1]
    return [float(v) for v in a.mean(axis=0)]


def label_boxes(label: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N, 4) int64 bounding boxes (x, y, w, h) of each id of ``label``; w = h = 0 for an
    id that is absent. One ``scipy.ndimage.find_objects`` pass."""
    from scipy import ndimage

    ids = np.asarray(ids, np.int64)
    out = np.zeros((ids.size, 4), np.int64)
    if ids.size == 0 or label.size == 0:
        return out
    lab = label if label.dtype.kind in "iu" else label.astype(np.int64)
    slices = ndimage.find_objects(lab, max_label=int(ids.max()))
    for j, i in enumerate(ids):
        if 0 < i <= len(slices) and slices[i - 1] is not None:
            sy, sx = slices[i - 1]
            out[j] = (sx.start, sy.start, sx.stop - sx.start, sy.stop - sy.start)
    return out


def dense_intersections(
    label: np.ndarray, ids: np.ndarray, boxes: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|P_j ∩ G_j|, |P_j|, |G_j|)`` for dense masks ``masks[j]`` (N, H, W) against the
    pixels of ``label == ids[j]``, whose bounding box (x, y, w, h) is ``boxes[j]``.

    Only the box is compared (the instance has no pixel outside it), so the cost per
    instance is its box plus one ``count_nonzero`` of the prediction — a row-wise loop,
    because ``np.count_nonzero(axis=1)`` is ~15x slower than per-row calls on bool data.
    ``|G_j|`` is counted inside the box: callers compare it with the stored area, which
    also proves the box right.
    """
    n = len(ids)
    inter = np.zeros(n, np.int64)
    parea = np.zeros(n, np.int64)
    garea = np.zeros(n, np.int64)
    for j in range(n):
        m = masks[j]
        parea[j] = np.count_nonzero(m)
        x, y, w, h = (int(v) for v in boxes[j])
        if w <= 0 or h <= 0:
            continue
        g = label[y : y + h, x : x + w] == ids[j]
        garea[j] = np.count_nonzero(g)
        if parea[j]:
            inter[j] = np.count_nonzero(g & m[y : y + h, x : x + w])
    return inter, parea, garea


def rle_intersections(
    label: np.ndarray, ids: np.ndarray, boxes: np.ndarray, counts: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`dense_intersections` for COCO run lengths ``counts[j]`` (column-major,
    the size of ``label``), without decoding them: the runs of 1 are intervals
    [start, end) of column-major positions, and the intersection is two
    ``searchsorted`` calls against the instance's sorted column-major positions (taken
    from its box).

    ``counts`` must be validated (:func:`aims.rle.validate`): each in ``[0, label.size]``,
    summing to ``label.size``. That is re-checked here, cheaply and before any prefix sum,
    because counts that wrap around int64 would turn the interval arithmetic into a forged
    perfect score; a violation is a bug in the caller (``ValueError``)."""
    n = len(ids)
    height = label.shape[0]
    for c in counts:
        _check_counts(c, label.size)
    inter = np.zeros(n, np.int64)
    parea = np.zeros(n, np.int64)
    garea = np.zeros(n, np.int64)
    for j in range(n):
        c = counts[j]
        cum = np.cumsum(c)
        k = c.size // 2
        starts, ends = cum[0 : 2 * k : 2], cum[1 : 2 * k + 1 : 2]
        parea[j] = int((ends - starts).sum())
        x, y, w, h = (int(v) for v in boxes[j])
        if w <= 0 or h <= 0:
            continue
        g = label[y : y + h, x : x + w] == ids[j]
        nz = np.flatnonzero(g.T)  # column-major order inside the box: ascending positions
        garea[j] = nz.size
        if k and nz.size:
            pos = (x + nz // h) * height + (y + nz % h)
            inter[j] = int((np.searchsorted(pos, ends) - np.searchsorted(pos, starts)).sum())
    return inter, parea, garea


def _check_counts(c: np.ndarray, pixels: int) -> None:
    c = np.asarray(c)
    if c.dtype.kind not in "iu" or c.ndim != 1 or c.size > pixels + 1:
        raise ValueError("rle_intersections takes validated int run lengths (aims.rle.validate)")
    if c.size and (int(c.min()) < 0 or int(c.max()) > pixels):
        raise ValueError("rle_intersections takes validated run lengths, each within the frame (aims.rle.validate)")
    if sum(c.tolist()) != pixels:  # Python ints
        raise ValueError(f"rle_intersections: the run lengths do not cover the {pixels} pixels of the frame")


def size_bucket(area: np.ndarray) -> np.ndarray:
    """COCO size bucket names ("small" < 32², "medium" < 96², "large") of pixel areas."""
    a = np.asarray(area)
    return np.where(a < COCO_SMALL, "small", np.where(a < COCO_MEDIUM, "medium", "large"))


def bootstrap_ci(
    values: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the instance mean, resampling GROUPS (images).

    WHY images, not instances: instances of one image share the scene and the model's
    image embedding, so they are not independent; resampling whole images keeps that
    correlation. Each resample's statistic is the instance mean over the drawn images
    (sum of drawn images' IoU sums / sum of their instance counts) — the same statistic
    as the headline mIoU. Vectorised: one (resamples × images) index draw. Returns None
    when there are no values. Fixed ``seed`` → the same interval every run.
    """
    v = np.asarray(values, np.float64)
    g = np.asarray(groups)
    if v.size == 0:
        return None
    _, inv = np.unique(g, return_inverse=True)
    sums = np.bincount(inv, weights=v)
    cnts = np.bincount(inv).astype(np.float64)
    m = sums.size
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, m, size=(n_resamples, m))
    stat = sums[draw].sum(axis=1) / cnts[draw].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stat, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
