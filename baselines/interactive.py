"""Interactive prediction (``aims baseline predict --clicks K``): K masks per instance.

The loop follows SAM's interactive protocol (the SAM paper's "simulated interactive
setup", as RITM): round 1 prompts with the protocol's one click; every later round adds the
next corrective click of :func:`aims.clicks.next_click` (the error pixel farthest from its
error region's boundary, positive on a false negative, negative on a false positive, chosen
on the native-resolution mask against the ground truth) AND feeds the previous round's
low-resolution mask logits back as the dense mask prompt (transformers ``SamModel``'s
``input_masks``, SAM's ``mask_input``). A mask that already equals the ground truth
repeats its last click (no new information).

Transformers adds a mask prompt to the image embedding per *image* (``image_embeddings +
dense_prompt_embeddings``, then repeated over the point batch), so instances that each
carry their own previous mask are decoded as a batch of copies of the image embedding
(one instance per batch row); the image is still encoded once.

The masks after click 1..K are written as interactive predictions
(:class:`aims.predictions.PredictionWriter` with (K, H, W) stacks), which ``aims score``
turns into mIoU@k and NoC@85/90 under the protocol's rules. :class:`InteractiveResult`
keeps the quick summary ``<out>-interactive.json`` (plain IoU, area ≥ 100 px), computed
from the same masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aims.baselines.data import ImageRecord, SampleSource, logits_to_native
from aims.baselines.model import SimCMF
from aims.baselines.predict import MIN_AREA, PredictStats, autocast, iter_records
from aims.clicks import next_click
from aims.metrics import NOC_MAX_CLICKS, miou_at_clicks, number_of_clicks


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = int((pred | gt).sum())
    return float((pred & gt).sum()) / union if union else 1.0


@dataclass
class InteractiveResult:
    """IoU after click 1..K of every instance of area ≥ ``MIN_AREA`` (protocol aims rules,
    plain IoU): the quick summary; ``aims score`` is the reference computation."""

    max_clicks: int
    ious: list[list[float]] = field(default_factory=list)   # per instance, IoU after click 1..k

    def _array(self) -> np.ndarray:
        return np.asarray(self.ious, np.float64).reshape(len(self.ious), -1)

    def miou_at(self, k: int) -> float:
        return float(self._array()[:, k - 1].mean()) if self.ious else 0.0

    def noc(self, threshold: float) -> tuple[float, int]:
        """(mean clicks to reach ``threshold``, instances that never reach it)."""
        if not self.ious:
            return 0.0, 0
        a = self._array()
        counts = number_of_clicks(a, threshold, self.max_clicks)
        failed = int((~(a[:, : self.max_clicks] >= threshold).any(axis=1)).sum())
        return float(counts.mean()), failed

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"instances": len(self.ious), "max_clicks": self.max_clicks}
        at = miou_at_clicks(self._array()) if self.ious else []
        for k in (1, 3, 5, 10, 20):
            if k <= self.max_clicks:
                out[f"mIoU@{k}"] = float(at[k - 1]) if at else 0.0
        for t in (85, 90):
            noc, failed = self.noc(t / 100)
            out[f"NoC@{t}"] = noc
            out[f"NoC@{t}_failed"] = failed
        return out


def _decode(model: SimCMF, embedding: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
            previous: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode P instances, each with its own clicks and previous mask logits.

    ``embedding`` (1, C, h, w); ``points`` (P, N, 2) in the model frame; ``labels`` (P, N);
    ``previous`` (P, s, s) low-resolution logits or None. Returns (P, M, s, s) logits and
    (P, M) predicted IoUs. Each instance is one batch row (see the module docstring)."""
    p = points.shape[0]
    out = model.sam(image_embeddings=embedding.expand(p, -1, -1, -1), input_points=points[:, None],
                    input_labels=labels[:, None], input_masks=None if previous is None else previous[:, None],
                    multimask_output=multimask)
    return out.pred_masks[:, 0], out.iou_scores[:, 0]


@torch.no_grad()
def interactive_predict(model: SimCMF, source: SampleSource, *, max_clicks: int, device: str | torch.device = "cpu",
                        dtype: str = "fp32", multimask_first: bool = False, prompt_batch: int = 16,
                        stats: PredictStats | None = None) -> Iterator[tuple[ImageRecord, np.ndarray]]:
    """Yield (record, masks) per image, ``masks`` bool (P, K, h, w) at native resolution:
    instance ``record.instance_ids[i]`` after click 1..K (``K = max_clicks``).
    ``multimask_first``: the first click takes the best of SAM's three masks by predicted IoU
    (the aims recipe's zero-shot SAM); later clicks, and trained models, take the single mask."""
    import time

    device = torch.device(device)
    model.eval()
    stats = stats if stats is not None else PredictStats()
    t0 = time.perf_counter()
    for (record,) in iter_records(source, protocol="aims"):
        gts = [record.instances == inst for inst in record.instance_ids]
        out = np.zeros((len(gts), max_clicks, *record.instances.shape), bool)
        with autocast(device, dtype):
            emb = model.encode(record.pixel_values[None].to(device))
            for start in range(0, len(gts), prompt_batch):
                idx = range(start, min(start + prompt_batch, len(gts)))
                clicks = [[(float(record.points[i][0]), float(record.points[i][1]), 1)] for i in idx]
                previous = None
                for rnd in range(max_clicks):
                    pts = torch.tensor([[(x, y) for x, y, _ in c] for c in clicks], dtype=torch.float32)
                    lab = torch.tensor([[lbl for _, _, lbl in c] for c in clicks], dtype=torch.long)
                    multimask = multimask_first and rnd == 0
                    logits, iou = _decode(model, emb, pts.to(device), lab.to(device), previous, multimask)
                    logits, iou = logits.float(), iou.float()
                    best = iou.argmax(1) if multimask else torch.zeros(len(iou), dtype=torch.long, device=device)
                    low = logits[torch.arange(len(best), device=device), best]          # (p, s, s)
                    previous = low
                    masks = logits_to_native(low, record.frame).cpu().numpy()
                    for j, i in enumerate(idx):
                        out[i, rnd] = masks[j]
                        if rnd + 1 == max_clicks:
                            continue
                        nxt = next_click(masks[j], gts[i])
                        if nxt is None:   # exact: repeat the last click (no new information)
                            clicks[j].append(clicks[j][-1])
                        else:
                            p = record.frame.points(np.array([[nxt.x, nxt.y]], np.float32))[0]
                            clicks[j].append((float(p[0]), float(p[1]), 1 if nxt.positive else 0))
        stats.images += 1
        stats.instances += len(gts)
        stats.seconds = time.perf_counter() - t0
        yield record, out


def interactive_eval(model: SimCMF, source: SampleSource, *, max_clicks: int = NOC_MAX_CLICKS,
                     min_area: int = MIN_AREA, **kwargs: Any) -> InteractiveResult:
    """The quick summary of :func:`interactive_predict` (instances of area ≥ ``min_area``)."""
    result = InteractiveResult(max_clicks)
    for record, masks in interactive_predict(model, source, max_clicks=max_clicks, **kwargs):
        result.ious += _record_ious(record, masks, min_area)
    return result


def _record_ious(record: ImageRecord, masks: np.ndarray, min_area: int) -> list[list[float]]:
    out = []
    for i, inst in enumerate(record.instance_ids):
        gt = record.instances == inst
        if int(gt.sum()) >= min_area:
            out.append([_iou(m, gt) for m in masks[i]])
    return out


def write_interactive_predictions(model: SimCMF, source: SampleSource, out_dir: str | Path, *, config: str,
                                  meta: dict[str, Any], max_clicks: int, fmt: str = "rle", progress: bool = True,
                                  **kwargs: Any) -> tuple[PredictStats, InteractiveResult]:
    """Write the masks after click 1..``max_clicks`` of every instance (protocol aims
    clicks) as interactive predictions for ``aims score``; returns the prediction stats
    and the quick summary computed from the same masks."""
    from tqdm.auto import tqdm

    from aims.predictions import PredictionWriter

    stats = PredictStats()
    result = InteractiveResult(max_clicks)
    bar = tqdm(total=len(source), unit="img", disable=not progress, desc=f"predict {config} ({max_clicks} clicks)")
    with PredictionWriter(out_dir, fmt=fmt, meta=meta, click_rule="aims") as writer:
        for record, masks in interactive_predict(model, source, max_clicks=max_clicks, stats=stats, **kwargs):
            for inst, stack in zip(record.instance_ids, masks):
                writer.add(config, record.image_id, int(inst), stack)
            result.ious += _record_ious(record, masks, MIN_AREA)
            bar.update(1)
    bar.close()
    return stats, result


__all__ = ["InteractiveResult", "interactive_eval", "interactive_predict", "next_click",
           "write_interactive_predictions"]
