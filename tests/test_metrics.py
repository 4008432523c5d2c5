"""IoU against pycocotools, the vectorised intersections, bootstrap, protocol frames."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aims.metrics import (
    bootstrap_ci,
    dense_intersections,
    iou,
    iou_from_counts,
    label_boxes,
    rle_intersections,
    size_bucket,
)
from aims.predictions import rle_counts
from aims.protocols import get_protocol, torch_nearest_index

mask_utils = pytest.importorskip("pycocotools.mask")


def _coco_iou(p: np.ndarray, g: np.ndarray) -> float:
    rp = mask_utils.encode(np.asfortranarray(p.astype(np.uint8)))
    rg = mask_utils.encode(np.asfortranarray(g.astype(np.uint8)))
    return float(mask_utils.iou([rp], [rg], [0])[0, 0])


def test_iou_equals_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(2, 50, 2))
        p = rng.random((h, w)) < rng.random()
        g = rng.random((h, w)) < rng.random()
        g[0, 0] = True  # COCO's iou of two empty masks is 0, ours NaN: keep unions non-empty
        assert iou(p, g) == pytest.approx(_coco_iou(p, g), abs=1e-15)


def _label_and_preds(seed: int):
    rng = np.random.default_rng(seed)
    h, w = 41, 57
    label = np.zeros((h, w), np.uint16)
    ids = np.arange(1, 9)
    for i in ids:  # overlapping rectangles: later ones cut earlier ones into odd shapes
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        label[y : y + rng.integers(3, 20), x : x + rng.integers(3, 25)] = i
    ids = np.asarray([i for i in ids if (label == i).any()], np.int64)
    preds = np.stack([(label == i) ^ (rng.random((h, w)) < 0.05) for i in ids])
    preds[0] = False  # an empty prediction
    return label, ids, preds


def test_dense_and_rle_intersections_equal_the_plain_computation_and_pycocotools():
    for seed in range(20):
        label, ids, preds = _label_and_preds(seed)
        boxes = label_boxes(label, ids)
        order = np.random.default_rng(seed).permutation(ids.size)  # predictions in any order
        di, da, dg = dense_intersections(label, ids[order], boxes[order], preds[order])
        ri, ra, rg = rle_intersections(label, ids[order], boxes[order], [rle_counts(m) for m in preds[order]])
        for k, j in enumerate(order):
            g = label == ids[j]
            assert di[k] == ri[k] == np.count_nonzero(preds[j] & g)
            assert da[k] == ra[k] == np.count_nonzero(preds[j])
            assert dg[k] == rg[k] == np.count_nonzero(g)
            got = iou_from_counts(di[k : k + 1], da[k : k + 1], dg[k : k + 1])[0]
            assert got == pytest.approx(_coco_iou(preds[j], g), abs=1e-15)


def test_label_boxes_marks_absent_ids():
    label = np.zeros((5, 6), np.uint16)
    label[1:3, 2:5] = 2
    assert label_boxes(label, np.array([2, 1, 9])).tolist() == [[2, 1, 3, 2], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_iou_eps_makes_empty_unions_one():
    assert iou_from_counts(np.array([0]), np.array([0]), np.array([0]), 1e-6)[0] == 1.0
    assert np.isnan(iou_from_counts(np.array([0]), np.array([0]), np.array([0]))[0])


def test_size_buckets_follow_coco():
    assert size_bucket(np.array([1, 1023, 1024, 9215, 9216])).tolist() == [
        "small", "small", "medium", "medium", "large"]


def test_bootstrap_is_deterministic_resamples_images_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(40), rng.integers(1, 10, 40))
    values = rng.random(groups.size)
    lo, hi = bootstrap_ci(values, groups)
    assert (lo, hi) == bootstrap_ci(values, groups)
    assert lo < values.mean() < hi
    # one image: every resample is that image, the interval collapses on the mean
    lo1, hi1 = bootstrap_ci(values[:5], np.zeros(5))
    assert lo1 == pytest.approx(values[:5].mean()) and hi1 == pytest.approx(values[:5].mean())
    assert bootstrap_ci(np.zeros(0), np.zeros(0)) is None


def test_torch_nearest_index_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    for n_in, n_out in [(1024, 256), (480, 256), (7, 3), (5, 10), (100, 333), (256, 256), (640, 255)]:
        src = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, 1, n_in)
        ref = torch.nn.functional.interpolate(src, size=(1, n_out), mode="nearest").reshape(-1)
        assert torch_nearest_index(n_in, n_out).tolist() == ref.long().tolist(), (n_in, n_out)


def test_simcmf_frame_is_pil_warp_then_stride_4_and_filters_strictly():
    rng = np.random.default_rng(2)
    label = np.zeros((37, 53), np.uint16)
    label[:20, :30] = 1
    label[20:, :] = 2
    label[5:7, 40:42] = 3  # tiny
    ids = np.array([1, 2, 3])
    frame = get_protocol("simcmf").frame("nir", label, ids, np.bincount(label.ravel())[ids])
    big = np.asarray(Image.fromarray(label.astype(np.int32), "I").resize((1024, 1024), Image.NEAREST))
    assert np.array_equal(frame.label, big[::4, ::4])
    counts = np.bincount(big.ravel(), minlength=4)
    assert frame.eval_area.tolist() == counts[1:].tolist()
    assert frame.evaluated.tolist() == (counts[1:] > 1000).tolist()
    # the filter is strict: exactly 1000 pixels is not evaluated
    thr = get_protocol("simcmf").rules["area_filters"]
    assert thr == {"polarization-zju": 10000, "polarization": 100, "nir": 1000, "depth": 0, "hha": 0, "thermal": 0}
    pred = rng.random((3, 37, 53)) < 0.5
    big_pred = np.stack([np.asarray(Image.fromarray(p.astype(np.uint8)).resize((1024, 1024), Image.NEAREST)) for p in pred])
    assert np.array_equal(frame.to_frame(pred, (37, 53)), big_pred[:, ::4, ::4] > 0)
    assert frame.to_frame(pred[:, :2, :2], (2, 2)) is None


def test_aims_frame_evaluates_area_at_least_100():
    label = np.zeros((30, 30), np.uint16)
    label[:10, :10] = 1  # 100 px: evaluated
    label[20:, 20:29] = 2  # 90 px: not
    f = get_protocol("aims").frame("depth", label, np.array([1, 2]), np.array([100, 90]))
    assert f.evaluated.tolist() == [True, False] and f.label is label


def test_dice_from_counts_matches_the_reference_eval_seg_fixture():
    """The reference's eval_seg Dice ((2I + 1e-4) / (|P| + |G| + 1e-4), float32), per
    image, from the numbers saved by running the reference (tests/data/reference)."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from pathlib import Path

    from aims.metrics import dice, dice_from_counts

    fx = safetensors_numpy.load_file(Path(__file__).parent / "data" / "reference" / "metric_eval_seg.safetensors")
    pred, mask = fx["input.pred"][:, 0] > 0, fx["input.mask"][:, 0] > 0
    inter = (pred & mask).reshape(2, -1).sum(1)
    parea, garea = pred.reshape(2, -1).sum(1), mask.reshape(2, -1).sum(1)
    simcmf = get_protocol("simcmf")
    per_image = simcmf.dice(inter, parea, garea)
    assert np.float32(per_image[0]) == fx["output.first_only.dice"][0]          # bit for bit
    assert np.float32(per_image.astype(np.float32).mean()) == fx["output.dice"][0]
    assert simcmf.iou(inter, parea, garea)[0] == pytest.approx(fx["output.first_only.iou"][0], rel=1e-6)
    # protocol aims: unsmoothed float64 Dice, the plain definition
    plain = get_protocol("aims").dice(inter, parea, garea)
    assert plain[1] == pytest.approx(dice(pred[1], mask[1])) and plain[1] != per_image[1]
    assert dice_from_counts([0], [0], [0], 1e-4, float32=True)[0] == 1.0      # empty vs empty: 1, as the reference
