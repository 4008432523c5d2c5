"""Cross-modal alignment (``--adapter``): how a C-channel modality enters SAM's encoder.

SAM's first layer is a 16×16/16 convolution from 3 RGB channels. The paper compares ways to
feed it C channels (protocol.md, "Cross-modal alignment ablation"):

- ``simcmf``: Conv3×3(C→64) → ReLU → Conv3×3(64→3) into SAM's pretrained patch embedding,
  which stays **frozen** (the paper's final choice);
- ``patch-embed``: a new, randomly initialised C-channel patch embedding (trainable);
- ``linear``: a 1×1 convolution C→3 into the pretrained patch embedding, which trains too;
- ``linear-frozen``: the same with the patch embedding frozen;
- ``zero-shot``: RGB straight into SAM (3 channels, nothing added).

The adapter sits *inside* the patch-embedding module, so the pretrained projection keeps its
name (``vision_encoder.patch_embed.projection``) and loads from any SAM checkpoint, and the
adapter's weights are saved with the other trainable weights
(``vision_encoder.patch_embed.adapter.*``).
"""

from __future__ import annotations


import torch
from torch import nn

from aims.baselines.choices import ADAPTERS, AdapterSpec, adapter_spec
from aims.errors import AimsError

#: width of the SimCMF adapter's hidden layer
SIMCMF_WIDTH = 64


class AdaptedPatchEmbeddings(nn.Module):
    """SAM's patch embedding with an optional input adapter in front of it.

    Replaces ``SamPatchEmbeddings`` (which insists on 3 channels); same output layout
    (batch, h, w, hidden)."""

    def __init__(self, projection: nn.Conv2d, adapter: nn.Module | None, in_channels: int,
                 image_size: int) -> None:
        super().__init__()
        self.adapter = adapter
        self.projection = projection
        self.num_channels = in_channels
        self.image_size = image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} input channels, got {pixel_values.shape[1]}")
        x = pixel_values if self.adapter is None else self.adapter(pixel_values)
        return self.projection(x).permute(0, 2, 3, 1)


def make_adapter(name: str, in_channels: int) -> nn.Module | None:
    """The adapter module for ``name`` (``None`` where the input goes straight in)."""
    if name == "simcmf":
        return nn.Sequential(nn.Conv2d(in_channels, SIMCMF_WIDTH, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(SIMCMF_WIDTH, 3, 3, padding=1))
    if name in ("linear", "linear-frozen"):
        return nn.Conv2d(in_channels, 3, 1)
    return None


def attach_adapter(sam: nn.Module, name: str, in_channels: int) -> AdapterSpec:
    """Put adapter ``name`` for ``in_channels`` input channels in front of ``sam``'s encoder."""
    spec = adapter_spec(name)
    if spec.rgb_only and in_channels != 3:
        raise AimsError(f"adapter 'zero-shot' feeds RGB straight into SAM and needs 3 channels, "
                        f"got {in_channels}; use --modality rgb for zero-shot SAM.")
    old = sam.vision_encoder.patch_embed
    projection = old.projection
    if spec.new_patch_embed:
        projection = nn.Conv2d(in_channels, projection.out_channels, kernel_size=projection.kernel_size,
                               stride=projection.stride, device=projection.weight.device)
    image_size = sam.config.vision_config.image_size
    sam.vision_encoder.patch_embed = AdaptedPatchEmbeddings(
        projection, make_adapter(name, in_channels), in_channels, image_size)
    return spec


__all__ = ["ADAPTERS", "AdaptedPatchEmbeddings", "AdapterSpec", "adapter_spec", "attach_adapter",
           "make_adapter"]
