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
from aims.baselines.choices import RGBX_ADAPTER, SCRATCH
from aims.baselines.projectors import ProjectorSpec
from aims.baselines.rgbx_systems import RgbxSystem, attach_rgbx_system, check_system_spec, is_rgbx_system
from aims.baselines.sam_loading import build_sam, infer_size, sam_config
from aims.baselines.strategies import PAPER, TINY, StrategySettings, apply_strategy, count_parameters


@dataclass
class ModelSpec:
    """Everything needed to rebuild the same model (saved beside its checkpoints).
    ``adapter`` is a projector name (:mod:`aims.baselines.projectors`), ``strategy`` one of
    :data:`aims.baselines.choices.STRATEGIES`; ``uniform_init`` is the reference's
    ``-uniformInit`` (off there by default). An RGB-X system (``vipt``, ``cmx`` …,
    :mod:`aims.baselines.rgbx_systems`) takes no projector: its ``adapter`` is ``rgbx-split``
    (always: whatever projector a recipe defaults to, so a run.json may omit it)."""

    size: str = "vit-b"
    adapter: str = "paper-n2-k3-d64"
    strategy: str = "lora"
    in_channels: int = 3
    checkpoint: str | None = None
    uniform_init: bool = False

    def __post_init__(self) -> None:
        if is_rgbx_system(self.strategy):
            self.adapter = RGBX_ADAPTER

    def settings(self) -> StrategySettings:
        return TINY if self.size == "tiny" else PAPER

    def to_dict(self) -> dict[str, Any]:
        """The spec as run.json stores it. An RGB-X system's ``adapter`` is implied by its
        strategy and left out, so run folders stay readable by code that checks the key
        against the projector registry."""
        out = asdict(self)
        if is_rgbx_system(self.strategy):
            del out["adapter"]
        return out


class SimCMF(nn.Module):
    """SAM with an input adapter; ``encode`` images, ``decode`` batches of point prompts."""

    def __init__(self, sam: nn.Module, spec: ModelSpec, adapter: ProjectorSpec | None,
                 system: RgbxSystem | None = None) -> None:
        super().__init__()
        self.sam = sam
        self.spec = spec
        self.adapter_spec = adapter
        #: the RGB-X system that replaced projector + strategy, if any
        self.system = system

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
        """What a fine-tuning checkpoint holds: the weights that train, and the saved buffers
        of the modules that own them (BatchNorm running statistics, as CMX's fusion has),
        without which a reloaded model computes something else."""
        names = checkpoint_names(self)
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}


def checkpoint_names(model: nn.Module) -> set[str]:
    """Names a fine-tuning checkpoint of ``model`` holds: trainable parameters plus the
    persistent buffers of every module with a trainable parameter of its own."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    saved = set(model.state_dict())
    for prefix, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            dot = f"{prefix}." if prefix else ""
            names |= {dot + b for b, _ in module.named_buffers(recurse=False) if dot + b in saved}
    return names


def build_model(spec: ModelSpec, *, device: str | torch.device | None = None) -> SimCMF:
    """Assemble the model. ``device="meta"`` builds the structure without memory (for counting
    parameters); then no checkpoint is read."""
    meta = device is not None and torch.device(device).type == "meta"
    if is_rgbx_system(spec.strategy):
        check_system_spec(spec.strategy, spec.adapter, spec.in_channels)
    if meta:
        from transformers import SamModel

        with torch.device("meta"):
            sam = SamModel(sam_config(spec.size))
            return _assemble(sam, spec)
    checkpoint = None if spec.strategy == SCRATCH else spec.checkpoint
    model = _assemble(build_sam(checkpoint, spec.size), spec)
    return model.to(device) if device is not None else model


def _assemble(sam: nn.Module, spec: ModelSpec) -> SimCMF:
    """Projector + strategy, or the RGB-X system that replaces both."""
    if is_rgbx_system(spec.strategy):
        system = attach_rgbx_system(sam, spec.strategy, spec.in_channels - 3, tiny=spec.size == "tiny")
        return SimCMF(sam, spec, None, system)
    adapter = attach_adapter(sam, spec.adapter, spec.in_channels, uniform_init=spec.uniform_init)
    apply_strategy(sam, spec.strategy, spec.settings())
    return SimCMF(sam, spec, adapter)


def describe_parameters(model: SimCMF) -> str:
    trainable, total = count_parameters(model)
    if model.system is not None:
        return (f"SAM {model.spec.size} as RGB-X system {model.system.name} (RGB and X fed apart): "
                f"{trainable:,} trainable of {total:,} parameters ({trainable / 1e6:.2f} M)")
    return (f"SAM {model.spec.size} + {model.spec.adapter} adapter, strategy {model.spec.strategy}: "
            f"{trainable:,} trainable of {total:,} parameters ({trainable / 1e6:.2f} M)")


def default_size(checkpoint: str | Path | None) -> str:
    return infer_size(checkpoint)


__all__ = ["ModelSpec", "SimCMF", "build_model", "checkpoint_names", "describe_parameters"]
