"""Batched prediction: the image encoder runs once per image, all of the image's instance
clicks are decoded together (transformers' ``point_batch`` dimension), masks return to the
native resolution (protocol ``aims``) or stay on the 256×256 grid (protocol ``simcmf``).

Fine-tuned models use the single-mask output (mask token 0, as trained). Zero-shot SAM does
too under the reference recipe (``multimask_output=False``, as the reference code); under the
aims recipe it takes the highest predicted-IoU mask of its three (the SAM paper's
single-click protocol): ``multimask=True``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aims.baselines.choices import DTYPES
from aims.baselines.data import ImageRecord, SampleSource, logits_to_native
from aims.baselines.model import SimCMF

#: protocol aims evaluates instances of at least this many native pixels (protocol.md)
MIN_AREA = 100
#: protocol simcmf compares 256×256 low-resolution masks (SAM at 1024²)
SIMCMF_GRID = 256
#: autocast dtypes (``--dtype``): bf16 on CUDA, float32 everywhere else


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on CUDA only (CPU runs float32: bf16 matmuls there are slower and the
    tests compare numbers)."""
    if device.type == "cuda" and dtype == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def decode_record(model: SimCMF, embedding: torch.Tensor, record: ImageRecord, *, protocol: str = "aims",
                  prompt_batch: int = 64, multimask: bool = False) -> np.ndarray:
    """Masks for every instance click of one image from its (1, C, h, w) embedding.

    Returns bool (P, h, w) at native size (``aims``) or (P, s, s) logits grid (``simcmf``).
    """
    device = embedding.device
    out = []
    pts_all = torch.from_numpy(record.points).to(device)
    for start in range(0, len(pts_all), prompt_batch):
        pts = pts_all[start:start + prompt_batch][None, :, None, :]          # (1, p, 1, 2)
        labels = torch.ones(pts.shape[:3], dtype=torch.long, device=device)
        logits, iou = model.decode(embedding, pts, labels, multimask=multimask)
        logits, iou = logits[0].float(), iou[0].float()                     # (p, M, s, s), (p, M)
        best = iou.argmax(dim=1) if multimask else torch.zeros(len(iou), dtype=torch.long, device=device)
        low = logits[torch.arange(len(best), device=device), best]          # (p, s, s)
        if protocol == "simcmf":
            if low.shape[-1] != SIMCMF_GRID:   # non-1024 models (tests): the reference's grid
                low = torch.nn.functional.interpolate(low[:, None], size=(SIMCMF_GRID, SIMCMF_GRID),
                                                      mode="bilinear", align_corners=False)[:, 0]
            masks = low > 0
        else:
            masks = logits_to_native(low, record.frame)
        out.append(masks.cpu().numpy())
    if not out:
        shape = (0, SIMCMF_GRID, SIMCMF_GRID) if protocol == "simcmf" else (0, *record.instances.shape)
        return np.zeros(shape, bool)
    return np.concatenate(out)


class _Records(torch.utils.data.Dataset):
    def __init__(self, source: SampleSource, protocol: str) -> None:
        self.source, self.protocol = source, protocol

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> ImageRecord:
        return self.source.record(i, protocol=self.protocol)


def iter_records(source: SampleSource, *, protocol: str, workers: int = 0, image_batch: int = 1
                 ) -> Iterator[list[ImageRecord]]:
    """Records in order, ``image_batch`` at a time, decoded by ``workers`` processes."""
    loader = torch.utils.data.DataLoader(_Records(source, protocol), batch_size=image_batch,
                                         num_workers=workers, collate_fn=list, shuffle=False)
    yield from loader


@dataclass
class PredictStats:
    images: int = 0
    instances: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@torch.no_grad()
def predict(model: SimCMF, source: SampleSource, *, protocol: str = "aims", device: str | torch.device = "cpu",
            dtype: str = "fp32", prompt_batch: int = 64, image_batch: int = 1, workers: int = 0,
            stats: PredictStats | None = None, multimask: bool = False) -> Iterator[tuple[ImageRecord, np.ndarray]]:
    """Yield (record, masks) per image; ``masks[i]`` belongs to ``record.instance_ids[i]``.
    ``multimask``: take the best of three masks by predicted IoU (aims zero-shot SAM)."""
    device = torch.device(device)
    model.eval()
    stats = stats if stats is not None else PredictStats()
    t0 = time.perf_counter()
    for batch in iter_records(source, protocol=protocol, workers=workers, image_batch=image_batch):
        pixels = torch.stack([r.pixel_values for r in batch]).to(device)
        with autocast(device, dtype):
            embeddings = model.encode(pixels)
            for k, record in enumerate(batch):
                masks = decode_record(model, embeddings[k:k + 1], record, protocol=protocol,
                                      prompt_batch=prompt_batch, multimask=multimask)
                stats.images += 1
                stats.instances += len(masks)
                stats.seconds = time.perf_counter() - t0
                yield record, masks


def instance_ious(record: ImageRecord, masks: np.ndarray, *, min_area: int = MIN_AREA) -> list[float]:
    """Plain IoU per instance of area ≥ ``min_area`` at native resolution (protocol aims)."""
    out = []
    for inst, pred in zip(record.instance_ids, masks):
        gt = record.instances == inst
        area = int(gt.sum())
        if area < min_area:
            continue
        union = int((gt | pred).sum())
        out.append(float((gt & pred).sum()) / union if union else 1.0)
    return out


def evaluate(model: SimCMF, source: SampleSource, **kwargs: Any) -> float:
    """mIoU (protocol aims, one click) over every evaluated instance of ``source``."""
    ious: list[float] = []
    for record, masks in predict(model, source, protocol="aims", **kwargs):
        ious += instance_ious(record, masks)
    return float(np.mean(ious)) if ious else 0.0


def write_predictions(model: SimCMF, source: SampleSource, out_dir: str | Path, *, config: str,
                      meta: dict[str, Any], protocol: str = "aims", fmt: str = "rle",
                      progress: bool = True, **kwargs: Any) -> PredictStats:
    """Predict every instance of ``source`` and write them with
    :class:`aims.predictions.PredictionWriter` (then ``aims score`` reads them), recording
    the protocol's click as the predictions' click rule."""
    from tqdm.auto import tqdm

    from aims.predictions import PredictionWriter

    stats = PredictStats()
    bar = tqdm(total=len(source), unit="img", disable=not progress, desc=f"predict {config}")
    with PredictionWriter(out_dir, fmt=fmt, meta=meta, click_rule=protocol) as writer:
        for record, masks in predict(model, source, protocol=protocol, stats=stats, **kwargs):
            for inst, mask in zip(record.instance_ids, masks):
                writer.add(config, record.image_id, int(inst), mask)
            bar.update(1)
            bar.set_postfix(img_s=f"{stats.images_per_s:.1f}")
    bar.close()
    return stats


__all__ = ["DTYPES", "MIN_AREA", "PredictStats", "autocast", "decode_record", "evaluate", "instance_ious",
           "iter_records", "predict", "write_predictions"]
