"""The next-click rule of protocol.md ("Beyond one click") and the click metrics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from aims.baselines.interactive import InteractiveResult, next_click  # noqa: E402


def test_next_click_goes_to_the_deepest_error_pixel():
    gt = np.zeros((20, 30), bool)
    gt[2:12, 2:12] = True                     # 10×10 object
    pred = np.zeros_like(gt)
    pred[2:12, 2:7] = True                    # left half found → false negatives on the right
    pred[15:18, 20:29] = True                 # a 3×9 false positive blob
    x, y, positive = next_click(pred, gt)
    assert positive and gt[y, x] and not pred[y, x]
    assert (x, y) == (9, 4)                  # centre column of the 5-wide FN strip, first max row-major


def test_false_positive_gives_negative_click_and_border_counts_as_boundary():
    gt = np.zeros((10, 10), bool)
    gt[0:2, 0:2] = True
    pred = gt.copy()
    pred[4:10, 4:10] = True                  # 6×6 FP touching the image border
    x, y, positive = next_click(pred, gt)
    assert not positive and pred[y, x] and not gt[y, x]
    assert (x, y) == (6, 6)                  # border is boundary: centre of the padded block
    assert next_click(gt, gt) is None


def test_noc_and_miou_at_k():
    r = InteractiveResult(max_clicks=3, ious=[[0.5, 0.86, 0.95], [0.9, 0.9, 0.9], [0.1, 0.2, 0.3]])
    assert r.miou_at(1) == pytest.approx(0.5)
    assert r.noc(0.85) == (pytest.approx((2 + 1 + 3) / 3), 1)
    assert r.noc(0.90) == (pytest.approx((3 + 1 + 3) / 3), 1)
    s = r.summary()
    assert s["mIoU@3"] == pytest.approx((0.95 + 0.9 + 0.3) / 3) and "mIoU@5" not in s
