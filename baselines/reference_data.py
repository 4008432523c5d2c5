"""The ``reference`` recipe's data: training draws, evaluation and prediction inputs, all
through the reference input pipeline (:mod:`aims.baselines.reference_inputs`).

What the reference code does and this module repeats (mt-cly/SimCMF@0cdc5c1):

- **training** (``dataset.py``, ``utils.py:285-300``): the rows in list order (unshuffled,
  one process), each image warped to 1024², one id drawn with ``np.random.choice`` from the
  ids at or above the area threshold (the first remaining one dropped), one of its pixels
  with ``np.random.randint``. The draws come from **one** numpy stream, seeded once and
  continued across rows and epochs: :class:`ReferenceTrainSamples` owns that stream
  (``np.random.RandomState(seed)``), and its state travels in ``state.pt`` so a resumed run
  draws what an uninterrupted one would. Images without a candidate, where the reference's
  loader would fail, are skipped and counted.
- **evaluation** (``function.py:64-162``): every kept id of every image, its middle-pixel
  click, the single-mask output on the 256² grid, the reference's IoU and Dice
  (:func:`aims.baselines.losses.eval_seg`) and DiceCE loss, averaged over instances.
- **few-shot lists** (``t_500``/``rgbt_500``): every 10th training row and every 2nd test
  row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aims.baselines.data import Frame, SampleSource
from aims.baselines.losses import dice_ce_loss, eval_seg
from aims.baselines.reference_inputs import (ReferenceInputSpec, reference_input, reference_train_candidates,
                                             source_channels, to_tensor, warp_normalise)
from aims.decoders import to_array
from aims.errors import AimsError
from aims.protocols import SIMCMF_INPUT, SIMCMF_OUTPUT


def every_nth(indices: list[int], n: int) -> list[int]:
    """The reference's few-shot lists keep every ``n``-th row (``[::n]``)."""
    return list(indices[::n]) if n > 1 else list(indices)


class ReferenceSampleSource(SampleSource):
    """Rows of one split as the reference feeds them: its per-dataset pipeline warped to
    the model's side. Prediction (:func:`aims.baselines.predict.predict`) reads it like any
    :class:`SampleSource`; the frame is a warp, so native masks come back by the same warp."""

    def __init__(self, rows: Any, spec: ReferenceInputSpec, size: int, indices: list[int] | None = None) -> None:
        super().__init__(rows, spec.key, normalizer=None, size=size, resize="warp", indices=indices)
        self.spec = spec

    def image(self, row: dict[str, Any]) -> tuple[torch.Tensor, Frame]:
        channels = source_channels(row, self.spec)
        pixels = warp_normalise(to_tensor(channels), self.spec, self.size)
        return pixels, Frame(int(channels.shape[1]), int(channels.shape[2]), self.size, "warp")


class ReferenceTrainSamples(torch.utils.data.Dataset):
    """One reference training draw per image per epoch, in row order, from one numpy
    stream. Must be read in order by one process (``shuffle=False``, no workers): that is
    what makes the stream the reference's."""

    def __init__(self, source: ReferenceSampleSource, low_res: int, seed: int) -> None:
        self.source = source
        self.low_res = low_res
        self.rng = np.random.RandomState(seed)
        self.keep: list[int] = []
        for i in range(len(source)):
            ids = to_array(source.row(i)["instances"])
            if reference_train_candidates(ids, source.spec).size:
                self.keep.append(i)
        self.skipped = len(source) - len(self.keep)

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        row = self.source.row(self.keep[k])
        ref = reference_input(row, self.source.spec, image_size=self.source.size, test_clicks=False)
        draw = ref.train_target(self.rng)
        target = draw.label.to(torch.float32)                               # (1, 256, 256)
        if self.low_res != target.shape[-1]:
            target = F.interpolate(target[None], size=(self.low_res, self.low_res), mode="nearest")[0]
        point = draw.click.astype(np.float32) * (self.source.size / SIMCMF_INPUT)   # (1, 2)
        return {"pixel_values": ref.image, "points": torch.from_numpy(point)[None],
                "labels": torch.ones(1, 1, dtype=torch.long), "target": target}

    def rng_state(self) -> dict[str, Any]:
        """The stream's state as plain numbers (``state.pt`` is read with weights_only)."""
        kind, keys, pos, has_gauss, cached = self.rng.get_state()
        return {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos),
                "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}

    def set_rng_state(self, state: Any) -> None:
        """Continue the stream from :meth:`rng_state`'s output; anything else is refused."""
        ok = (isinstance(state, dict) and state.get("kind") == "MT19937"
              and isinstance(state.get("keys"), list) and len(state["keys"]) == 624
              and all(type(k) is int and 0 <= k < 2 ** 32 for k in state["keys"])
              and type(state.get("pos")) is int and 0 <= state["pos"] <= 624
              and type(state.get("has_gauss")) is int and type(state.get("cached_gaussian")) is float)
        if not ok:
            raise AimsError("the run's state.pt holds no valid random stream for the reference recipe "
                            "(expected an MT19937 state: 624 keys and a position)")
        self.rng.set_state(("MT19937", np.asarray(state["keys"], np.uint32), state["pos"],
                            state["has_gauss"], state["cached_gaussian"]))


@dataclass
class ReferenceScores:
    """The reference's validation numbers: means over instances."""

    iou: float
    dice: float
    loss: float
    instances: int
    images: int


@torch.no_grad()
def reference_evaluate(model: Any, source: ReferenceSampleSource, *, device: str | torch.device = "cpu",
                       prompt_batch: int = 64) -> ReferenceScores:
    """The reference's evaluation of ``model`` on ``source``: fp32, the single-mask output,
    IoU/Dice/loss per instance on the 256² grid (the tiny test model's smaller grid is
    upsampled bilinearly first)."""
    device = torch.device(device)
    model.eval()
    iou = dice = loss = 0.0
    instances = images = 0
    for i in range(len(source)):
        ref = reference_input(source.row(i), source.spec, image_size=source.size)
        if not ref.ids.size:
            continue
        images += 1
        embedding = model.encode(ref.image[None].to(device))
        clicks = torch.from_numpy(ref.clicks.astype(np.float32) * (source.size / SIMCMF_INPUT)).to(device)
        for start in range(0, len(clicks), prompt_batch):
            pts = clicks[start:start + prompt_batch][None, :, None, :]          # (1, p, 1, 2)
            labels = torch.ones(pts.shape[:3], dtype=torch.long, device=device)
            logits, _ = model.decode(embedding, pts, labels, multimask=False)
            low = logits[0].float()                                            # (p, 1, s, s)
            if low.shape[-1] != SIMCMF_OUTPUT:
                low = F.interpolate(low, size=(SIMCMF_OUTPUT, SIMCMF_OUTPUT), mode="bilinear",
                                    align_corners=False)
            ids = torch.from_numpy(ref.ids[start:start + prompt_batch]).to(device)
            masks = (ref.label.to(device)[None] == ids[:, None, None, None]).to(torch.float32)
            n = len(ids)
            batch_iou, batch_dice = eval_seg(low, masks)
            iou += batch_iou * n
            dice += batch_dice * n
            loss += float(dice_ce_loss(low, masks)) * n
            instances += n
    if not instances:
        return ReferenceScores(0.0, 0.0, float("nan"), 0, images)
    return ReferenceScores(iou / instances, dice / instances, loss / instances, instances, images)


__all__ = ["ReferenceSampleSource", "ReferenceScores", "ReferenceTrainSamples", "every_nth", "reference_evaluate"]
