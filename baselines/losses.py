"""The reference recipe's training loss and validation metric, in plain torch.

The SimCMF reference trains on ``monai.losses.DiceCELoss(sigmoid=True, squared_pred=True,
reduction='mean')`` of the 256² low-resolution logits against the 0/1 instance label
(reference: ``function.py:16`` for training, ``function.py:75`` for validation) and reports
``utils.eval_seg(pred, mask, [0])`` (IoU and Dice; reference: ``utils.py:190-283``,
``function.py:73, 148``). monai is not a dependency of this project, so both are written out
here from their observed behaviour (monai 1.3.1, the reference's pin), and
``tests/test_reference_loss.py`` holds them to the ``loss_dicece`` and ``metric_eval_seg``
fixtures of ``tests/data/reference/``.

What monai's combination computes, for a single-channel input (the only case the reference
has):

- **Dice part** (``DiceLoss`` with ``sigmoid=True, squared_pred=True``, ``batch=False``,
  ``include_background=True``): with p = sigmoid(logit) and t the target, per sample and
  channel over the spatial axes, 1 − (2·Σpt + smooth_nr) / (Σp² + Σt² + smooth_dr), with
  smooth_nr = smooth_dr = 1e-5; then the mean (or the sum) over samples and channels. An
  empty target and a confident empty prediction give ≈ 0 only through the smoothing; an
  empty target and any non-zero prediction give ≈ 1.
- **CE part**: monai switches to ``BCEWithLogitsLoss`` (same ``reduction``) when the input has
  one channel, so it is plain binary cross-entropy on the logits, averaged (or summed) over
  every element.
- **Total** = λ_dice·dice + λ_ce·bce with monai's default weights λ = 1 and 1.

Compared with the plain Dice with +1 smoothing that ``aims.baselines.train`` uses today, the
squared denominator and the 1e-5 smoothing change both the value and the gradient near empty
masks; issue 11 lists the difference.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Reduction = Literal["mean", "sum"]

#: monai's DiceLoss defaults (``smooth_nr``, ``smooth_dr``), which the reference keeps
SMOOTH_NR = 1e-5
SMOOTH_DR = 1e-5
#: the reference metric's smoothing: IoU (``utils.py:191``) and Dice (``utils.py:205``)
IOU_SMOOTH = 1e-6
DICE_EPS = 1e-4


def _check(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> None:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    if logits.dim() < 3 or logits.shape[1] != 1:
        raise ValueError("the reference loss takes (B, 1, *spatial) single-channel logits; monai would "
                         f"switch to a softmax cross-entropy for {tuple(logits.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def squared_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "mean",
                      smooth_nr: float = SMOOTH_NR, smooth_dr: float = SMOOTH_DR) -> torch.Tensor:
    """monai's ``DiceLoss(sigmoid=True, squared_pred=True)``: one value per sample and
    channel, then reduced over them (not over pixels)."""
    _check(logits, target, reduction)
    prob = torch.sigmoid(logits)
    target = target.to(prob.dtype)
    axes = list(range(2, logits.dim()))
    intersection = torch.sum(target * prob, dim=axes)
    denominator = torch.sum(target ** 2, dim=axes) + torch.sum(prob ** 2, dim=axes)
    per_item = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return per_item.mean() if reduction == "mean" else per_item.sum()


def bce_loss(logits: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """The CE half: binary cross-entropy on the logits over every element (monai's choice for a
    one-channel input)."""
    _check(logits, target, reduction)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction=reduction)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "mean",
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> torch.Tensor:
    """The reference's training loss: λ_dice·Dice(squared) + λ_ce·BCE (both default 1)."""
    return (lambda_dice * squared_dice_loss(logits, target, reduction=reduction)
            + lambda_ce * bce_loss(logits, target, reduction=reduction))


class DiceCELoss(nn.Module):
    """Module form of :func:`dice_ce_loss`, configured like the reference's
    ``DiceCELoss(sigmoid=True, squared_pred=True, reduction='mean')``."""

    def __init__(self, reduction: Reduction = "mean", lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_ce_loss(logits, target, reduction=self.reduction,
                            lambda_dice=self.lambda_dice, lambda_ce=self.lambda_ce)


# ---------------------------------------------------------------------------------------
# The reference's validation metric (``utils.eval_seg`` with threshold [0], single channel)

def eval_seg(logits: torch.Tensor, mask: torch.Tensor, threshold: float = 0.0) -> tuple[float, float]:
    """(IoU, Dice) of ``logits > threshold`` against ``mask > threshold``, each computed per
    image and averaged over the batch, as the reference reports them.

    - IoU: (|P∩M| + 1e-6) / (|P∪M| + 1e-6), in float64 (the reference counts in numpy int32,
      ``utils.py:190-197``);
    - Dice: (2·|P∩M| + 1e-4) / (|P| + |M| + 1e-4), in float32 (the reference's torch
      ``DiceCoeff``, ``utils.py:199-235``).

    ``logits`` and ``mask`` are (B, 1, H, W); only channel 0 is read, as in the reference's
    single-channel branch (``utils.py:265-283``).
    """
    if logits.dim() != 4 or mask.shape != logits.shape:
        raise ValueError(f"expected two (B, 1, H, W) tensors, got {tuple(logits.shape)} and {tuple(mask.shape)}")
    pred = logits[:, 0] > threshold
    true = mask[:, 0] > threshold
    inter = (pred & true).flatten(1).sum(1)
    union = (pred | true).flatten(1).sum(1)
    iou = ((inter.double() + IOU_SMOOTH) / (union.double() + IOU_SMOOTH)).mean()
    pf, tf = pred.float().flatten(1), true.float().flatten(1)
    dice = ((2 * (pf * tf).sum(1) + DICE_EPS) / (pf.sum(1) + tf.sum(1) + DICE_EPS)).mean()
    return float(iou), float(dice)


__all__ = ["DICE_EPS", "DiceCELoss", "IOU_SMOOTH", "SMOOTH_DR", "SMOOTH_NR", "bce_loss", "dice_ce_loss",
           "eval_seg", "squared_dice_loss"]
