"""The reference recipe's loss (monai DiceCELoss, sigmoid + squared_pred) and validation
metric (utils.eval_seg), re-implemented in plain torch, against the reference's own numbers
(``tests/data/reference/loss_dicece`` and ``metric_eval_seg``; docs/reference-fixtures.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import load_file  # noqa: E402

from aims.baselines.losses import (  # noqa: E402
    DiceCELoss, bce_loss, dice_ce_loss, eval_seg, squared_dice_loss)

REFERENCE = Path(__file__).parent / "data" / "reference"
MANIFEST = json.loads((REFERENCE / "manifest.json").read_text())
LOSS = load_file(REFERENCE / "loss_dicece.safetensors")
METRIC = load_file(REFERENCE / "metric_eval_seg.safetensors")
CASES = sorted(MANIFEST["fixtures"]["loss_dicece"]["cases"])
PARTS = {"dice_part": squared_dice_loss, "bce_part": bce_loss, "total": dice_ce_loss}


def test_fixture_has_the_documented_cases():
    assert len(CASES) == 5
    assert {k.split(".")[1] for k in LOSS if k.startswith("input.")} == set(CASES)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("part", list(PARTS))
@pytest.mark.parametrize("case", CASES)
def test_loss_matches_monai(case, part, reduction):
    logits, target = LOSS[f"input.{case}.logits"], LOSS[f"input.{case}.target"]
    got = PARTS[part](logits, target, reduction=reduction)
    torch.testing.assert_close(got.reshape(1), LOSS[f"output.{case}.{reduction}.{part}"], rtol=1e-6, atol=0)


def test_module_form_is_the_reference_configuration():
    case = "b4_32x32"
    got = DiceCELoss()(LOSS[f"input.{case}.logits"], LOSS[f"input.{case}.target"])
    torch.testing.assert_close(got.reshape(1), LOSS[f"output.{case}.mean.total"], rtol=1e-6, atol=0)


def test_empty_target_gives_dice_one_and_squared_denominator_matters():
    logits = LOSS["input.b2_16x16_empty_target.logits"]
    target = LOSS["input.b2_16x16_empty_target.target"]
    assert squared_dice_loss(logits, target).item() == pytest.approx(1.0, abs=1e-6)
    # the squared denominator is what monai's squared_pred=True means: a plain-sum
    # denominator would give a different value on the same data
    logits, target = LOSS["input.b4_32x32.logits"], LOSS["input.b4_32x32.target"]
    p = torch.sigmoid(logits)
    plain = (1 - (2 * (p * target).sum((2, 3)) + 1e-5) / (p.sum((2, 3)) + target.sum((2, 3)) + 1e-5)).mean()
    assert abs(plain.item() - LOSS["output.b4_32x32.mean.dice_part"].item()) > 1e-3


def test_loss_refuses_what_monai_would_compute_differently():
    with pytest.raises(ValueError, match="single-channel"):
        dice_ce_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        dice_ce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="reduction"):
        dice_ce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), reduction="none")


def test_loss_has_gradients_for_training():
    logits = LOSS["input.b2_8x8.logits"].clone().requires_grad_(True)
    dice_ce_loss(logits, LOSS["input.b2_8x8.target"]).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("subset", ["batch", "first_only"])
def test_metric_matches_eval_seg(subset):
    pred, mask = METRIC["input.pred"], METRIC["input.mask"]
    prefix = "output."
    if subset == "first_only":
        pred, mask, prefix = pred[:1], mask[:1], "output.first_only."
    iou, dice = eval_seg(pred, mask)
    assert iou == pytest.approx(METRIC[prefix + "iou"].item(), rel=1e-6, abs=0)
    assert dice == pytest.approx(METRIC[prefix + "dice"].item(), rel=1e-6, abs=0)


def test_metric_is_a_per_image_mean_not_a_pooled_ratio():
    pred, mask = METRIC["input.pred"] > 0, METRIC["input.mask"] > 0
    pooled = ((pred & mask).sum() / (pred | mask).sum()).item()
    assert abs(pooled - METRIC["output.iou"].item()) > 1e-4   # the fixture tells the two apart
    iou, _ = eval_seg(METRIC["input.pred"], METRIC["input.mask"])
    assert abs(iou - pooled) > 1e-4
