"""Interactive metrics: NoC as RITM counts it, mIoU@k, on hand-made cases with known values,
through the metric functions and through ``aims score`` on K-mask predictions (all formats)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aims.errors import AimsError
from aims.metrics import NOC_MAX_CLICKS, miou_at_clicks, number_of_clicks
from aims.predictions import MAX_CLICKS, PredictionWriter, read_predictions
from aims.scoring import iter_ground_truth, score_predictions, split_shards


# --------------------------------------------------------------------------- the functions


def test_noc_counts_the_first_click_reaching_the_threshold():
    ious = np.array([
        [0.10, 0.50, 0.86, 0.95],   # 85 at click 3, 90 at click 4
        [0.85, 0.85, 0.85, 0.85],   # exactly 0.85 reaches 85 (>=) at click 1, never 90
        [0.90, 0.10, 0.10, 0.10],   # reached at click 1, lost later: still 1
        [0.00, 0.00, 0.00, 0.00],   # never
    ])
    assert number_of_clicks(ious, 0.85, max_clicks=4).tolist() == [3, 1, 1, 4]
    assert number_of_clicks(ious, 0.90, max_clicks=4).tolist() == [4, 4, 1, 4]
    # a click budget below K: only the first max_clicks count, and failures count the budget
    assert number_of_clicks(ious, 0.90, max_clicks=2).tolist() == [2, 2, 1, 2]


def test_noc_never_reached_counts_twenty_as_ritm():
    ious = np.full((3, 20), 0.5)
    ious[0, 19] = 0.9           # reached at the 20th click: 20, like a failure (RITM's ">=20")
    ious[1, 4] = 0.9            # at click 5
    ious[2, 20 - 1] = np.nan    # NaN never reaches
    assert NOC_MAX_CLICKS == 20 == MAX_CLICKS
    assert number_of_clicks(ious, 0.85).tolist() == [20, 5, 20]
    assert float(number_of_clicks(ious, 0.85).mean()) == pytest.approx(15.0)


def test_miou_at_k_is_the_mean_per_click():
    ious = np.array([[0.2, 0.4], [0.6, 1.0]])
    assert miou_at_clicks(ious) == pytest.approx([0.4, 0.7])
    assert miou_at_clicks(np.zeros((0, 3))) == [None, None, None]
    with pytest.raises(ValueError):
        number_of_clicks(np.zeros(3), 0.85)


# --------------------------------------------------------------------------- through aims score


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    return list(iter_ground_truth(split_shards(nyuv2_prepared, "depth", "test")))


def shrink(mask: np.ndarray, keep: float) -> np.ndarray:
    """``mask`` with all but the first ``keep`` fraction of its pixels (row-major) removed:
    IoU with ``mask`` is exactly kept/area."""
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    n = int(np.ceil(keep * ys.size))
    out[ys[:n], xs[:n]] = True
    return out


def plan(k: int) -> tuple[int | None, int | None]:
    """(click reaching 85, click reaching 90) of the k-th instance; None = never."""
    return [(1, 1), (2, 4), (3, None), (None, None), (5, 5), (1, 20)][k % 6]


def stack(mask: np.ndarray, reach85: int | None, reach90: int | None, clicks: int) -> np.ndarray:
    """Masks after click 1..K: empty before reach85, 0.88 IoU until reach90, exact after."""
    out = np.zeros((clicks, *mask.shape), bool)
    for c in range(1, clicks + 1):
        if reach90 is not None and c >= reach90:
            out[c - 1] = mask
        elif reach85 is not None and c >= reach85:
            out[c - 1] = shrink(mask, 0.88)
    return out


def expected(gt, clicks):
    """(NoC@85, NoC@90, mIoU@k) of the plan, over the instances protocol aims evaluates."""
    cap = min(clicks, 20)

    def noc(reach):
        return reach if reach is not None and reach <= cap else cap

    t85, t90, per_click = [], [], []
    k = 0
    for g in gt:
        for a in g.area:
            r85, r90 = plan(k)
            k += 1
            if a < 100:            # not evaluated under protocol aims
                continue
            t85.append(noc(r85))
            t90.append(noc(r90))
            partial = int(np.ceil(0.88 * a)) / a
            per_click.append([1.0 if r90 is not None and c >= r90 else partial if r85 is not None and c >= r85
                              else 0.0 for c in range(1, clicks + 1)])
    return np.mean(t85), np.mean(t90), np.mean(per_click, axis=0)


def write(folder, gt, fmt, clicks, **kw):
    k = 0
    with PredictionWriter(folder, fmt=fmt, meta={"method": "hand-made", "model": "none"}, **kw) as w:
        for g in gt:
            for i in g.instance_ids:
                r85, r90 = plan(k)
                k += 1
                w.add("depth", g.image_id, int(i), stack(g.id_map == i, r85, r90, clicks))
    return folder


@pytest.mark.parametrize("fmt", ["rle", "npz", "png"])
def test_score_reports_known_noc_and_miou_at_k(gt, nyuv2_prepared, tmp_path, fmt):
    folder = write(tmp_path / "p", gt, fmt, 20, click_rule="aims")
    pf = read_predictions(folder)
    assert pf.clicks == 20 and pf.click_rule == "aims"
    s = score_predictions(folder, data_dir=nyuv2_prepared)
    it = s.summary()["depth"]["interactive"]
    e85, e90, e_at = expected(gt, 20)
    assert it["clicks"] == 20 and it["max_clicks"] == 20 and it["ritm_comparable"]
    assert it["noc85"] == pytest.approx(e85) and it["noc90"] == pytest.approx(e90)
    assert it["miou_at"] == pytest.approx(list(e_at))
    # one-click numbers are the first click's
    assert s.summary()["depth"]["miou"] == pytest.approx(e_at[0])
    assert "click_ious" in s.table and len(s.table["click_ious"].iloc[0]) == 20
    text = s.format_table()
    assert "NoC@85" in text and f"{e85:.2f}" in text and "@20:" in text
    doc = s.results()
    assert doc["clicks"] == 20 and doc["configs"]["depth"]["interactive"]["noc90"] == pytest.approx(e90)
    s.write(tmp_path / "scores")          # the schema takes the interactive block


def test_fewer_than_twenty_clicks_cap_noc_and_say_so(gt, nyuv2_prepared, tmp_path):
    folder = write(tmp_path / "p", gt, "rle", 4)
    s = score_predictions(folder, data_dir=nyuv2_prepared)
    it = s.summary()["depth"]["interactive"]
    e85, e90, e_at = expected(gt, 4)
    assert it["max_clicks"] == 4 and not it["ritm_comparable"]
    assert it["noc85"] == pytest.approx(e85) and it["noc90"] == pytest.approx(e90)
    assert "not comparable" in s.format_table()


def test_missing_instances_under_missing_zero_count_the_budget(gt, nyuv2_prepared, tmp_path):
    first = gt[0]
    big = [int(i) for i, a in zip(first.instance_ids, first.area) if a >= 100]
    with PredictionWriter(tmp_path / "p", fmt="rle", meta={"method": "m", "model": "x"}) as w:
        for g in gt:
            for i in g.instance_ids:
                if g is first and int(i) == big[0]:
                    continue
                w.add("depth", g.image_id, int(i), np.stack([g.id_map == i] * 3))
    with pytest.raises(AimsError, match="missing"):
        score_predictions(tmp_path / "p", data_dir=nyuv2_prepared)
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, missing="zero")
    it = s.summary()["depth"]["interactive"]
    n = s.summary()["depth"]["n_evaluated"]
    assert it["noc85"] == pytest.approx(((n - 1) * 1 + 3) / n) and it["noc85_at_max"] == 1
    assert it["miou_at"] == pytest.approx([(n - 1) / n] * 3)


def test_one_click_predictions_have_no_interactive_block(gt, nyuv2_prepared, tmp_path):
    with PredictionWriter(tmp_path / "p", fmt="npz", meta={"method": "m", "model": "x"}) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), g.id_map == i)
    assert json.loads((tmp_path / "p" / "aims_predictions.json").read_text())["clicks"] == 1
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared)
    assert "interactive" not in s.summary()["depth"] and "click_ious" not in s.table
