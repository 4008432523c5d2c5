"""SimCMF = SAM (``SamModel``) + cross-modal adapter + fine-tuning strategy, assembled once.

:class:`SimCMF` splits SAM's forward in two so that prediction can run the image encoder once
per image and decode all of that image's prompts in one batch (transformers' ``point_batch``
dimension), and training can do the same over a batch of images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aims.baselines.adapters import attach_adapter
from aims.baselines.choices import SCRATCH
from aims.baselines.projectors import ProjectorSpec
from aims.baselines.sam_loading import build_sam, infer_size, sam_config
from aims.baselines.strategies import PAPER, TINY, StrategySettings, apply_strategy, count_parameters


@dataclass
class ModelSpec:
    """Everything needed to rebuild the same model (saved beside its checkpoints).
    ``adapter`` is a projector name (:mod:`aims.baselines.projectors`), ``strategy`` one of
    :data:`aims.baselines.choices.STRATEGIES`; ``uniform_init`` is the reference's
    ``-uniformInit`` (off there by default)."""

    size: str = "vit-b"
    adapter: str = "paper-n2-k3-d64"
    strategy: str = "lora"
    in_channels: int = 3
    checkpoint: str | None = None
    uniform_init: bool = False

    def settings(self) -> StrategySettings:
        return TINY if self.size == "tiny" else PAPER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SimCMF(nn.Module):
    """SAM with an input adapter; ``encode`` images, ``decode`` batches of point prompts."""

    def __init__(self, sam: nn.Module, spec: ModelSpec, adapter: ProjectorSpec) -> None:
        super().__init__()
        self.sam = sam
        self.spec = spec
        self.adapter_spec = adapter

    @property
    def image_size(self) -> int:
        return int(self.sam.config.vision_config.image_size)

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's mask logits (256 for SAM: 4 × the 64×64 embedding)."""
        vc = self.sam.config.vision_config
        return 4 * (vc.image_size // vc.patch_size)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalised, resized and padded images → (B, 256, S/16, S/16)."""
        return self.sam.vision_encoder(pixel_values).last_hidden_state

    def decode(self, embeddings: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode P prompts per image at once.

        ``points`` (B, P, N, 2) as (x, y) in the model's S×S frame, ``labels`` (B, P, N)
        (1 positive, 0 negative, -10 padding). Returns low-resolution logits
        (B, P, M, S/4, S/4) and predicted IoUs (B, P, M), M = 1 or 3.
        """
        out = self.sam(image_embeddings=embeddings, input_points=points, input_labels=labels,
                       multimask_output=multimask)
        return out.pred_masks, out.iou_scores

    def forward(self, pixel_values, points, labels, multimask: bool = False):
        return self.decode(self.encode(pixel_values), points, labels, multimask)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the weights that train: what a fine-tuning checkpoint holds."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}


def build_model(spec: ModelSpec, *, device: str | torch.device | None = None) -> SimCMF:
    """Assemble the model. ``device="meta"`` builds the structure without memory (for counting
    parameters); then no checkpoint is read."""
    meta = device is not None and torch.device(device).type == "meta"
    if meta:
        from transformers import SamModel

        with torch.device("meta"):
            sam = SamModel(sam_config(spec.size))
            adapter = attach_adapter(sam, spec.adapter, spec.in_channels, uniform_init=spec.uniform_init)
            apply_strategy(sam, spec.strategy, spec.settings())
        return SimCMF(sam, spec, adapter)
    checkpoint = None if spec.strategy == SCRATCH else spec.checkpoint
    sam = build_sam(checkpoint, spec.size)
    adapter = attach_adapter(sam, spec.adapter, spec.in_channels, uniform_init=spec.uniform_init)
    apply_strategy(sam, spec.strategy, spec.settings())
    model = SimCMF(sam, spec, adapter)
    return model.to(device) if device is not None else model


def describe_parameters(model: SimCMF) -> str:
    trainable, total = count_parameters(model)
    return (f"SAM {model.spec.size} + {model.spec.adapter} adapter, strategy {model.spec.strategy}: "
            f"{trainable:,} trainable of {total:,} parameters ({trainable / 1e6:.2f} M)")


def default_size(checkpoint: str | Path | None) -> str:
    return infer_size(checkpoint)


__all__ = ["ModelSpec", "SimCMF", "build_model", "describe_parameters"]
