"""Interactive evaluation (``--clicks k``): protocol.md "Beyond one click".

After each prediction the next click goes to the error pixel farthest from its error
region's boundary, over both error regions — false negatives (missed object pixels) give a
positive click, false positives a negative one. Distances are the exact Euclidean distance
transform of each error region padded by one background pixel (so the image border counts
as boundary), the same rule as the first click (:func:`aims.clicks.click_aims`); ties go to
the false-negative region, then to the first pixel in row-major order.

Every round decodes all instances of an image together (one prompt set per instance, the
clicks so far as its points); the image is encoded once. Reported: mIoU@k for each k and
NoC@85 / NoC@90 (clicks needed to reach the IoU, capped at ``max_clicks``; instances never
reaching it count as the cap and are also counted apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from aims.baselines.data import SampleSource, logits_to_native
from aims.baselines.model import SimCMF
from aims.baselines.predict import MIN_AREA, autocast, iter_records


def _max_dt(region: np.ndarray) -> tuple[float, int, int]:
    """(distance, x, y) of the first maximum of the padded region's exact EDT."""
    h, w = region.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = region
    if not padded.any():
        return 0.0, -1, -1
    from aims.clicks import click_aims

    x, y = click_aims(region)
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float(dt[y + 1, x + 1]), x, y


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, bool] | None:
    """(x, y, positive) of the next corrective click, or ``None`` when the mask is exact."""
    fn = gt & ~pred
    fp = pred & ~gt
    d_fn, x_fn, y_fn = _max_dt(fn)
    d_fp, x_fp, y_fp = _max_dt(fp)
    if d_fn == 0.0 and d_fp == 0.0:
        return None
    if d_fn >= d_fp:
        return x_fn, y_fn, True
    return x_fp, y_fp, False


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = int((pred | gt).sum())
    return float((pred & gt).sum()) / union if union else 1.0


@dataclass
class InteractiveResult:
    max_clicks: int
    ious: list[list[float]] = field(default_factory=list)   # per instance, IoU after click 1..k

    def miou_at(self, k: int) -> float:
        return float(np.mean([r[k - 1] for r in self.ious])) if self.ious else 0.0

    def noc(self, threshold: float) -> tuple[float, int]:
        """(mean clicks to reach ``threshold``, instances that never reach it)."""
        counts, failed = [], 0
        for r in self.ious:
            hit = next((i + 1 for i, v in enumerate(r) if v >= threshold), None)
            if hit is None:
                failed += 1
                hit = self.max_clicks
            counts.append(hit)
        return (float(np.mean(counts)) if counts else 0.0), failed

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"instances": len(self.ious), "max_clicks": self.max_clicks}
        for k in (1, 3, 5, 10, 20):
            if k <= self.max_clicks:
                out[f"mIoU@{k}"] = self.miou_at(k)
        for t in (85, 90):
            noc, failed = self.noc(t / 100)
            out[f"NoC@{t}"] = noc
            out[f"NoC@{t}_failed"] = failed
        return out


@torch.no_grad()
def interactive_eval(model: SimCMF, source: SampleSource, *, max_clicks: int = 20,
                     device: str | torch.device = "cpu", dtype: str = "fp32",
                     min_area: int = MIN_AREA, multimask_first: bool = False) -> InteractiveResult:
    """Run the click loop on every evaluated instance (area ≥ ``min_area``, protocol aims).
    ``multimask_first``: the first click takes the best of SAM's three masks by predicted
    IoU (the aims recipe's zero-shot SAM); every later click, and trained models, take the
    single mask."""
    device = torch.device(device)
    model.eval()
    result = InteractiveResult(max_clicks)
    zero_shot = multimask_first
    for (record,) in iter_records(source, protocol="aims"):
        keep = [i for i, inst in enumerate(record.instance_ids)
                if int((record.instances == inst).sum()) >= min_area]
        if not keep:
            continue
        gts = [record.instances == record.instance_ids[i] for i in keep]
        clicks = [[(float(record.points[i][0]), float(record.points[i][1]), 1)] for i in keep]
        ious: list[list[float]] = [[] for _ in keep]
        with autocast(device, dtype):
            emb = model.encode(record.pixel_values[None].to(device))
            for rnd in range(max_clicks):
                pts = torch.tensor([[(x, y) for x, y, _ in c] for c in clicks], dtype=torch.float32)
                lab = torch.tensor([[l for _, _, l in c] for c in clicks], dtype=torch.long)
                multimask = zero_shot and rnd == 0
                logits, iou = model.decode(emb, pts[None].to(device), lab[None].to(device), multimask=multimask)
                logits, iou = logits[0].float(), iou[0].float()
                best = iou.argmax(1) if multimask else torch.zeros(len(iou), dtype=torch.long, device=device)
                masks = logits_to_native(logits[torch.arange(len(best)), best], record.frame).cpu().numpy()
                for j, (pred, gt) in enumerate(zip(masks, gts)):
                    ious[j].append(_iou(pred, gt))
                    nxt = next_click(pred, gt)
                    if nxt is None:   # exact: repeat the last click (no new information)
                        clicks[j].append(clicks[j][-1])
                    else:
                        p = record.frame.points(np.array([[nxt[0], nxt[1]]], np.float32))[0]
                        clicks[j].append((float(p[0]), float(p[1]), 1 if nxt[2] else 0))
        result.ious += ious
    return result


__all__ = ["InteractiveResult", "interactive_eval", "next_click"]
