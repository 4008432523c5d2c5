"""CMX on SAM (``--strategy cmx``): a second ViT for the X modality, feature rectification
between the two streams, cross-attention fusion, full fine-tuning.

CMX (Zhang et al., "CMX: Cross-Modal Fusion for RGB-X Semantic Segmentation with
Transformers", T-ITS 2023) runs two copies of a hierarchical backbone (SegFormer/Swin), one
for RGB and one for X. After each of the four stages a Feature Rectify Module (FRM)
exchanges channel- and spatial-wise weighted features between the streams, and a Feature
Fusion Module (FFM: cross-attention, then a channel embedding) fuses them into the map that
stage hands to the decoder. The SimCMF paper (Table 6, "CMX*") rebuilt it on SAM ViT-B with
full fine-tuning and reports 403.8 M parameters. This module is our reading of that rebuild;
the official code it follows is ``huaaaliu/RGBX_Semantic_Segmentation`` at commit
``e251d860aebc2f583a6c4919877e6bebe7f1aff3`` (``models/net_utils.py`` for FRM/FFM,
``models/encoders/dual_segformer.py`` for the dual stream and ``load_dualpath_model``).
``docs/rgbx-cmx.md`` explains every choice below and what is uncertain.

What :func:`attach` builds, as ``sam.vision_encoder`` (a :class:`CMXVisionEncoder`):

- ``rgb_encoder``: SAM's own ``SamVisionEncoder``, unchanged, neck included;
- ``x_encoder``: a deep copy of it holding SAM's pretrained weights (CMX initialises its
  ``extra_*`` stream from the same pretrained file as the RGB stream), without a neck (CMX's X
  stream has none: only fused maps leave the backbone). Its patch embedding reads the X
  channels: for 3 channels the RGB kernel as is (CMX feeds 3-channel X such as HHA through
  the pretrained kernel); otherwise the RGB kernel summed over its colour channels and divided
  by the X channel count — exactly what CMX computes for a one-channel X, which its data loader
  replicates into three identical channels (``cv2.merge([x, x, x])``) before the RGB kernel;
- ``rectify``: one FRM after **every** transformer block (both streams continue with the
  rectified features);
- ``fuse``: one FFM at the end of each *stage*. SAM's plain ViT has no stages; a stage here ends
  at each global-attention block (2, 5, 8, 11 at ViT-B: four stages of three blocks). The four
  fused maps are averaged and the mean goes through SAM's neck (the single-scale analogue of
  CMX's decoder, which reads all four).

Rectifying after every block rather than every stage is an assumption: it is the placement
whose parameter count matches the paper's 403.8 M (within 1 %); per-stage rectification gives
about 285 M (see the docs).

Everything trains except the prompt encoder (SimCMF's ``full`` strategy: ``utils.py:51-52``
trains all, ``utils.py:93-95`` freezes the prompt encoder).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

#: what this module builds (``describe``, docs)
SOURCE = ("CMX (Zhang et al., T-ITS 2023) rebuilt on SAM as SimCMF Table 6 'CMX*': "
          "github.com/huaaaliu/RGBX_Semantic_Segmentation @ e251d860aebc2f583a6c4919877e6bebe7f1aff3, "
          "models/net_utils.py (FeatureRectifyModule, FeatureFusionModule), "
          "models/encoders/dual_segformer.py (dual stream, load_dualpath_model); "
          "FRM after every SAM block, FFM at each global-attention block, full fine-tuning")

#: CMX's FRM mixing weights (``lambda_c``, ``lambda_s`` defaults) and reduction (1 everywhere)
LAMBDA_CHANNEL = 0.5
LAMBDA_SPATIAL = 0.5
REDUCTION = 1

#: parameters that stay frozen, as in SimCMF's ``full`` strategy
FROZEN_PREFIXES = ("prompt_encoder.", "shared_image_embedding.")


def _cmx_init(module: nn.Module) -> None:
    """CMX's ``_init_weights`` (applied there to the whole dual backbone before the pretrained
    streams are loaded): truncated normal 0.02 for linears, He-style fan-out normal for convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------
# Feature Rectify Module (FRM). Streams are SAM's channels-last (B, H, W, C) maps.

class FeatureRectify(nn.Module):
    """Each stream gets the other added, weighted per channel (from global average and max
    pooling of both) and per pixel (from a 1×1-conv gate on both):

    ``x1' = x1 + λc·wc[1]·x2 + λs·ws[1]·x2`` and ``x2' = x2 + λc·wc[0]·x1 + λs·ws[0]·x1``.
    """

    def __init__(self, dim: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        self.channel_mlp = nn.Sequential(nn.Linear(4 * dim, 4 * dim // reduction), nn.ReLU(),
                                         nn.Linear(4 * dim // reduction, 2 * dim), nn.Sigmoid())
        self.spatial_gate = nn.Sequential(nn.Conv2d(2 * dim, dim // reduction, 1), nn.ReLU(),
                                          nn.Conv2d(dim // reduction, 2, 1), nn.Sigmoid())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, _, c = x1.shape
        both = torch.cat((x1, x2), dim=-1)                                  # (B, H, W, 2C)
        pooled = torch.cat((both.mean(dim=(1, 2)), both.amax(dim=(1, 2))), dim=-1)   # (B, 4C)
        wc = self.channel_mlp(pooled).view(b, 2, 1, 1, c)
        ws = self.spatial_gate(both.permute(0, 3, 1, 2)).unsqueeze(-1)      # (B, 2, H, W, 1)
        out1 = x1 + LAMBDA_CHANNEL * wc[:, 1] * x2 + LAMBDA_SPATIAL * ws[:, 1] * x2
        out2 = x2 + LAMBDA_CHANNEL * wc[:, 0] * x1 + LAMBDA_SPATIAL * ws[:, 0] * x1
        return out1, out2


# ---------------------------------------------------------------------------------------
# Feature Fusion Module (FFM): cross path (efficient cross-attention) + channel embedding

class EfficientCrossAttention(nn.Module):
    """CMX's cross-attention with a global context (Shen et al.'s efficient attention): each
    stream's keys and values give a (d × d) context per head, softmax-normalised over the key
    channels; the *other* stream's tokens (no query projection) read it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.kv1 = nn.Linear(dim, 2 * dim, bias=False)
        self.kv2 = nn.Linear(dim, 2 * dim, bias=False)

    def _context(self, kv: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        k, v = kv(x).view(b, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return (k.transpose(-2, -1) @ v * self.scale).softmax(dim=-2)     # (B, h, d, d)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x1.shape
        q1 = x1.view(b, n, self.heads, -1).transpose(1, 2)
        q2 = x2.view(b, n, self.heads, -1).transpose(1, 2)
        out1 = (q1 @ self._context(self.kv2, x2)).transpose(1, 2).reshape(b, n, c)
        out2 = (q2 @ self._context(self.kv1, x1)).transpose(1, 2).reshape(b, n, c)
        return out1, out2


class CrossPath(nn.Module):
    """Stage 1 of the FFM: each stream is projected to a residual half and an attention half;
    the attention halves exchange information; both halves are projected back, added to the
    input and layer-normalised."""

    def __init__(self, dim: int, heads: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        inner = dim // reduction
        self.channel_proj1 = nn.Linear(dim, 2 * inner)
        self.channel_proj2 = nn.Linear(dim, 2 * inner)
        self.cross_attn = EfficientCrossAttention(inner, heads)
        self.end_proj1 = nn.Linear(2 * inner, dim)
        self.end_proj2 = nn.Linear(2 * inner, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1, u1 = F.relu(self.channel_proj1(x1)).chunk(2, dim=-1)
        y2, u2 = F.relu(self.channel_proj2(x2)).chunk(2, dim=-1)
        v1, v2 = self.cross_attn(u1, u2)
        out1 = self.norm1(x1 + self.end_proj1(torch.cat((y1, v1), dim=-1)))
        out2 = self.norm2(x2 + self.end_proj2(torch.cat((y2, v2), dim=-1)))
        return out1, out2


class ChannelEmbed(nn.Module):
    """Stage 2 of the FFM: the concatenated streams (2C) back to C channels, through a 1×1
    residual projection plus a 1×1 → depth-wise 3×3 → ReLU → 1×1 → BatchNorm branch, then
    BatchNorm (CMX's ``norm_fuse``)."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        mid = out_channels // reduction
        self.residual = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.channel_embed = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1), nn.Conv2d(mid, mid, 3, padding=1, groups=mid), nn.ReLU(),
            nn.Conv2d(mid, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.residual(x) + self.channel_embed(x))


class FeatureFusion(nn.Module):
    """FFM: (B, H, W, C) × 2 → fused (B, H, W, C)."""

    def __init__(self, dim: int, heads: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        self.cross = CrossPath(dim, heads, reduction)
        self.channel_emb = ChannelEmbed(2 * dim, dim, reduction)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x1.shape
        y1, y2 = self.cross(x1.reshape(b, h * w, c), x2.reshape(b, h * w, c))
        merged = torch.cat((y1, y2), dim=-1).transpose(1, 2).reshape(b, 2 * c, h, w)
        return self.channel_emb(merged).permute(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------
# The dual-stream encoder that replaces ``sam.vision_encoder``

def stage_ends(num_layers: int, global_attn_indexes: list[int]) -> list[int]:
    """Block indexes that close a stage: every global-attention block, and the last block."""
    return sorted({i for i in global_attn_indexes if 0 <= i < num_layers} | {num_layers - 1})


class CMXVisionEncoder(nn.Module):
    """(B, 3 + X, S, S) → SAM image embeddings (B, 256, S/16, S/16) through two ViT streams,
    FRM after each block and FFM at each stage end."""

    def __init__(self, rgb_encoder: nn.Module, x_channels: int) -> None:
        super().__init__()
        if x_channels < 1:
            raise ValueError(f"CMX needs at least one X channel, got {x_channels}")
        config = rgb_encoder.config
        dim, heads, layers = config.hidden_size, config.num_attention_heads, config.num_hidden_layers
        self.config = config
        self.x_channels = x_channels
        self.rgb_encoder = rgb_encoder
        self.x_encoder = _x_stream(rgb_encoder, x_channels)
        self.stage_ends = stage_ends(layers, list(config.global_attn_indexes))
        device = rgb_encoder.patch_embed.projection.weight.device
        with torch.device(device):
            self.rectify = nn.ModuleList(FeatureRectify(dim) for _ in range(layers))
            self.fuse = nn.ModuleList(FeatureFusion(dim, heads) for _ in self.stage_ends)
        if device.type != "meta":
            self.rectify.apply(_cmx_init)
            self.fuse.apply(_cmx_init)

    @staticmethod
    def _embed(encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        hidden = encoder.patch_embed(pixels)
        return hidden + encoder.pos_embed if encoder.pos_embed is not None else hidden

    def forward(self, pixel_values: torch.Tensor, **kwargs):
        from transformers.models.sam.modeling_sam import SamVisionEncoderOutput

        expected = 3 + self.x_channels
        if pixel_values.dim() != 4 or pixel_values.shape[1] != expected:
            raise ValueError(f"CMX expects (B, {expected}, S, S) inputs (RGB then {self.x_channels} X "
                             f"channels), got {tuple(pixel_values.shape)}")
        rgb = self._embed(self.rgb_encoder, pixel_values[:, :3])
        x = self._embed(self.x_encoder, pixel_values[:, 3:])
        fused = []
        for i, (rgb_block, x_block) in enumerate(zip(self.rgb_encoder.layers, self.x_encoder.layers)):
            rgb, x = self.rectify[i](rgb_block(rgb), x_block(x))
            if i in self.stage_ends:
                fused.append(self.fuse[len(fused)](rgb, x))
        merged = torch.stack(fused).mean(dim=0)
        return SamVisionEncoderOutput(last_hidden_state=self.rgb_encoder.neck(merged))


def _x_stream(rgb_encoder: nn.Module, x_channels: int) -> nn.Module:
    """The X stream: SAM's encoder copied with its pretrained weights (CMX's
    ``load_dualpath_model`` loads the same file into both streams), without a neck, and with
    a patch embedding for ``x_channels`` channels."""
    stream = copy.deepcopy(rgb_encoder)
    stream.neck = None
    old = rgb_encoder.patch_embed.projection
    new = nn.Conv2d(x_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(adapt_patch_kernel(old.weight, x_channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    stream.patch_embed.projection = new
    stream.patch_embed.num_channels = x_channels
    return stream


def adapt_patch_kernel(rgb_kernel: torch.Tensor, x_channels: int) -> torch.Tensor:
    """SAM's RGB patch kernel (D, 3, p, p) → an X kernel (D, x_channels, p, p).

    Three channels keep the kernel (CMX feeds 3-channel X, e.g. HHA, to the pretrained kernel).
    Otherwise each X channel gets the colour-summed kernel divided by ``x_channels``: for one
    channel that is exactly CMX's practice of replicating X into three channels, and for any
    count an X whose channels are equal gives the same response."""
    if x_channels == rgb_kernel.shape[1]:
        return rgb_kernel.clone()
    summed = rgb_kernel.sum(dim=1, keepdim=True) / x_channels
    return summed.expand(-1, x_channels, -1, -1).clone()


def attach(sam: nn.Module, x_channels: int, *, tiny: bool = False) -> None:
    """Turn ``sam`` (already loaded) into CMX*, in place, and set what trains.

    ``tiny`` changes nothing: every added width follows SAM's hidden size (768 at ViT-B, 32 for
    the ``tiny`` test config) as CMX's modules follow their stage's width, so the tiny model
    is already small."""
    del tiny
    sam.vision_encoder = CMXVisionEncoder(sam.vision_encoder, x_channels)
    for name, param in sam.named_parameters():
        param.requires_grad_(not name.startswith(FROZEN_PREFIXES))


__all__ = ["CMXVisionEncoder", "ChannelEmbed", "CrossPath", "EfficientCrossAttention", "FROZEN_PREFIXES",
           "FeatureFusion", "FeatureRectify", "SOURCE", "adapt_patch_kernel", "attach", "stage_ends"]
