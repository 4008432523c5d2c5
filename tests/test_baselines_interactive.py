"""The baseline's interactive loop: next-click rule, mask logits fed back, K-mask predictions
that ``aims score`` turns into mIoU@k and NoC."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aims.baselines.interactive import (  # noqa: E402
    InteractiveResult, interactive_predict, next_click, write_interactive_predictions)


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


def test_equal_depth_errors_give_the_positive_click():
    gt = np.zeros((12, 12), bool)
    gt[1:4, 1:4] = True                      # 3×3 missed entirely (FN, depth 2)
    pred = np.zeros_like(gt)
    pred[7:10, 7:10] = True                  # 3×3 false positive, the same depth
    assert next_click(pred, gt) == (2, 2, True)


def test_noc_and_miou_at_k():
    r = InteractiveResult(max_clicks=3, ious=[[0.5, 0.86, 0.95], [0.9, 0.9, 0.9], [0.1, 0.2, 0.3]])
    assert r.miou_at(1) == pytest.approx(0.5)
    assert r.noc(0.85) == (pytest.approx((2 + 1 + 3) / 3), 1)
    assert r.noc(0.90) == (pytest.approx((3 + 1 + 3) / 3), 1)
    s = r.summary()
    assert s["mIoU@3"] == pytest.approx((0.95 + 0.9 + 0.3) / 3) and "mIoU@5" not in s


@pytest.fixture(scope="module")
def tiny(nyuv2_prepared):
    from aims.baselines.data import SampleSource, config_channel_stats, load_split, modality_normalizer
    from aims.baselines.model import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec("tiny", "simcmf", "full", in_channels=1))
    rows = load_split("depth", "test", nyuv2_prepared)
    norm = modality_normalizer("depth", config_channel_stats("depth", nyuv2_prepared))
    return model, SampleSource(rows, "depth", norm, model.image_size, "sam")


def test_later_rounds_feed_the_previous_mask_logits_back(tiny):
    """SAM's interactive protocol: round 1 has no mask prompt, every later round gets the
    previous round's low-resolution logits as ``input_masks`` (one row per instance)."""
    model, source = tiny
    seen: list[torch.Tensor | None] = []
    hook = model.sam.prompt_encoder.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("input_masks", args[3] if len(args) > 3 else None)),
        with_kwargs=True)
    try:
        record, masks = next(interactive_predict(model, source, max_clicks=3))
    finally:
        hook.remove()
    p = len(record.instance_ids)
    assert masks.shape == (p, 3, *record.instances.shape) and masks.dtype == bool
    assert len(seen) == 3 and seen[0] is None                  # one prompt batch, three rounds
    s = 4 * model.sam.prompt_encoder.image_embedding_size[0]   # SAM's low-resolution grid
    for m in seen[1:]:
        assert m is not None and tuple(m.shape) == (p, 1, s, s) and m.dtype == torch.float32
        assert (m > 0).any() or (m <= 0).any()                # real logits, not a thresholded mask
    assert not torch.equal(seen[1], seen[2])                  # each round feeds the newest logits


def test_mask_prompt_changes_the_prediction(tiny):
    """The mask prompt reaches the decoder: the same clicks with and without it differ."""
    from aims.baselines.interactive import _decode

    model, source = tiny
    record = source.record(0, protocol="aims")
    with torch.no_grad():
        emb = model.encode(record.pixel_values[None])
        pts = torch.from_numpy(record.points[:2])[:, None].float()
        lab = torch.ones(2, 1, dtype=torch.long)
        plain, _ = _decode(model, emb, pts, lab, None, False)
        prompted, _ = _decode(model, emb, pts, lab, torch.randn(2, *plain.shape[-2:]) * 5, False)
    assert plain.shape == prompted.shape and not torch.allclose(plain, prompted)


def test_written_k_masks_score_to_the_loop_summary(tiny, nyuv2_prepared, tmp_path):
    """`--clicks K` predictions: K masks per instance in the folder, and `aims score`
    reports mIoU@k equal to the loop's own IoUs (both plain IoU at native resolution)."""
    from aims.scoring import score_predictions

    model, source = tiny
    out = tmp_path / "preds"
    stats, result = write_interactive_predictions(model, source, out, config="depth",
                                                  meta={"method": "tiny", "model": "SAM tiny"}, max_clicks=3,
                                                  progress=False)
    doc = json.loads((out / "aims_predictions.json").read_text())
    assert (doc["clicks"], doc["click_rule"]) == (3, "aims") and stats.images == len(source)
    s = score_predictions(out, data_dir=nyuv2_prepared)
    it = s.summary()["depth"]["interactive"]
    assert it["clicks"] == 3 and it["max_clicks"] == 3 and not it["ritm_comparable"]
    for k in (1, 2, 3):
        assert it["miou_at"][k - 1] == pytest.approx(result.miou_at(k), abs=1e-12)
    assert it["noc85"] == pytest.approx(result.noc(0.85)[0])
    assert s.summary()["depth"]["miou"] == pytest.approx(it["miou_at"][0])
