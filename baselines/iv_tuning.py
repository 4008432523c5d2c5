"""IV-tuning on SAM (``--strategy iv-tuning``): a frozen ViT steered by modality prompts.

IV-tuning (Zhang et al., "IV-tuning: Parameter-Efficient Transfer Learning for
Infrared-Visible Tasks", arXiv:2412.16654) keeps a visible-light backbone frozen and feeds the
infrared image in through small trainable modules, about 3 % of the backbone's parameters:

- the infrared image gets a patch embedding of its own (trainable; the RGB one stays SAM's);
- **MP-α** (the input modality prompter) turns the visible and infrared tokens into the
  initial prompt, which is added to the visible tokens before the first block;
- **MP-β** (one per block) adds to the token map, after the attention residual and again
  after the MLP residual (one module, used at both places), a visible part computed from the
  tokens and a prompt part computed from the prompt. The prompt of block i + 1 is block i's
  output, so each MP-β updates the prompt from the encoder's previous output;
- inside both, the **visible** branch goes through the **Split-Fuse Enhancer** (SFE): a
  depth-wise 3×3 on the first 1/r of the channels (r = 4) plus a residual, then two 1×1
  convolutions with a normalisation and ReLU between them plus a residual — convolutions for
  the high-frequency detail of visible light;
- the **infrared/prompt** branch is a plain token-wise **linear projection**: the paper
  argues infrared content is mostly low-frequency (smooth heat blobs), for which no spatial
  filter is needed. No explicit low-pass (FFT mask, pooling) appears in the released code
  (``docs/rgbx-iv-tuning.md``, "Low frequency").

The official repository ``Yummy198913/IV-tuning`` (commit
``193568351ce9e1cb06137517b855feb34c5401bd``) releases the wiring but not the two prompter
classes themselves (``HMP``/``HMPS`` are imported from an unreleased ``zym_tools``); what is
released and followed here, as facts (none of its code is copied):

- ``SOD-IV-tuning/models/utils/IV_tuning.py``: ``HybridOperation`` (the SFE: split 1/4,
  depth-wise 3×3, residual, 1×1 → BN → ReLU → 1×1, residual), ``HybridAdapter`` (LayerNorm
  with a learned scale/shift, down-projection, SFE, GELU, dropout 0.1, up-projection),
  ``InternalPromptAdapter`` (the prompt's linear down/up projection with GELU), ``EMPG``
  (visible → 1×1 conv → SFE, infrared → 1×1 projection, sum, 1×1 conv back; width 8);
- ``SOD-IV-tuning/models/eva_02_ivt.py`` and ``SwinTransformers_ivt.py``: the second patch
  embedding ``patch_embed_ivt``, ``HMP(inplanes=C, hide_channel=8)`` at the input,
  ``HMPS(C, 64)`` once per block applied after attention and after the MLP, the prompt
  replaced by each block's output, and ``frozen_exclude=['ivt']`` (only the added modules
  train);
- ``mmdetection-IVT/projects/ViTDet/vitdet/vit_prompt.py``: the same scheme on a ViTDet
  ViT-B — SAM's encoder design, windowed attention on (B, H, W, C) token maps — where the
  prompt is added before the absolute position embedding.

SAM parts: the encoder (patch embedding, blocks, neck) and the prompt encoder are frozen; the
mask decoder trains — it is the task head, which IV-tuning always trains in full (SETR,
SegFormer, CPNet heads) and leaves out of its "% of backbone" count.

Normalisation inside the SFE: per-image statistics (``InstanceNorm2d`` with an affine, the
same parameters as the paper's ``BatchNorm2d``) instead of batch statistics, so training at
batch size 1–4 and prediction agree, a prediction never depends on the other images of its
batch, and a checkpoint of trainable parameters holds everything (BatchNorm's running
statistics are buffers the run folder does not save).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: what this module builds (``describe``, docs)
SOURCE = ("IV-tuning (Zhang et al., arXiv:2412.16654) on SAM: github.com/Yummy198913/IV-tuning @ "
          "193568351ce9e1cb06137517b855feb34c5401bd, SOD-IV-tuning/models/utils/IV_tuning.py "
          "(HybridOperation = Split-Fuse Enhancer, HybridAdapter, InternalPromptAdapter, EMPG), "
          "SOD-IV-tuning/models/eva_02_ivt.py (patch_embed_ivt, HMP at the input, HMPS per block, "
          "prompt = previous block output), mmdetection-IVT/projects/ViTDet/vitdet/vit_prompt.py "
          "(ViT-B on (B, H, W, C) maps); frozen encoder, mask decoder trains")

#: MP-β width (the code's ``HMPS(dim, 64)``) and MP-α width (``HMP(..., hide_channel=8)``)
PAPER_BETA_WIDTH = 64
PAPER_ALPHA_WIDTH = 8
#: the same for the ``tiny`` test SAM (hidden 32)
TINY_BETA_WIDTH = 8
TINY_ALPHA_WIDTH = 4
#: the SFE's split ratio r: the depth-wise 3×3 sees the first 1/r of the channels
SPLIT_RATIO = 4
#: dropout after the visible branch's activation (``HybridAdapter``)
DROPOUT = 0.1
#: SAM's mask decoder is the head; these stay frozen (as in every strategy of this project)
FROZEN_PREFIXES = ("prompt_encoder.", "shared_image_embedding.")
#: what trains inside the new vision encoder (besides the mask decoder)
TRAINABLE_ENCODER_PARTS = ("x_patch_embed", "mp_alpha", "mp_beta")


class SplitFuseEnhancer(nn.Module):
    """The SFE on a (B, C, H, W) map: a cheap depth-wise 3×3 on C/r channels (spatial detail
    without touching the rest), then a 1×1 → norm → ReLU → 1×1 bottleneck mixing all channels;
    both steps residual, so a near-zero start leaves the features as they were."""

    def __init__(self, channels: int, split_ratio: int = SPLIT_RATIO) -> None:
        super().__init__()
        self.split = max(1, channels // split_ratio)
        self.depthwise = nn.Conv2d(self.split, self.split, kernel_size=3, padding=1, groups=self.split)
        self.fuse_in = nn.Conv2d(channels, channels, kernel_size=1)
        # per-image statistics: see the module docstring
        self.norm = nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
        self.fuse_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:, :self.split], x[:, self.split:]
        x = torch.cat([self.depthwise(head), tail], dim=1) + x
        return self.fuse_out(F.relu(self.norm(self.fuse_in(x)))) + x


class ScaledLayerNorm(nn.Module):
    """LayerNorm followed by a learned per-channel scale and shift (the code's
    ``SimpleFeatureTransform``): lets an adapter re-weight the frozen stream it reads."""

    def __init__(self, dim: int, *, normalise: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if normalise else nn.Identity()
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale + self.shift


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class MPAlpha(nn.Module):
    """The input modality prompter: visible and infrared tokens (B, H, W, C) → the initial
    prompt (B, H, W, C). Visible: 1×1 down to ``width`` then the SFE; infrared: a linear
    projection to ``width``; their sum goes back up to C with a 1×1."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.visible_down = nn.Linear(dim, width)
        self.visible_enhance = SplitFuseEnhancer(width)
        self.infrared_down = nn.Linear(dim, width)
        self.up = nn.Linear(width, dim)
        for layer in (self.visible_down, self.infrared_down, self.up):
            nn.init.xavier_uniform_(layer.weight)  # EMPG's initialisation of its 1×1 convs
            nn.init.zeros_(layer.bias)

    def forward(self, visible: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
        v = _channels_last(self.visible_enhance(_channels_first(self.visible_down(self.norm(visible)))))
        return self.up(v + self.infrared_down(self.norm(infrared)))


class MPBeta(nn.Module):
    """The per-block modality prompter: ``forward(tokens, prompt)`` → an update of the tokens.
    The visible part adapts the tokens through the SFE (``HybridAdapter``); the prompt part is a
    linear down/up projection of the prompt (``InternalPromptAdapter``)."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.visible_norm = ScaledLayerNorm(dim)
        self.visible_down = nn.Linear(dim, width)
        self.visible_enhance = SplitFuseEnhancer(width)
        self.dropout = nn.Dropout(DROPOUT)
        self.visible_up = nn.Linear(width, dim)
        self.prompt_norm = ScaledLayerNorm(dim)
        self.prompt_down = nn.Linear(dim, width)
        self.prompt_up = nn.Linear(width, dim)
        self.prompt_out = ScaledLayerNorm(dim, normalise=False)

    def forward(self, tokens: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        v = self.visible_down(self.visible_norm(tokens))
        v = _channels_last(self.visible_enhance(_channels_first(v)))
        v = self.visible_up(self.dropout(F.gelu(v)))
        p = self.prompt_up(F.gelu(self.prompt_down(self.prompt_norm(prompt))))
        return v + F.gelu(self.prompt_out(p))


def _run_block(layer: nn.Module, tokens: torch.Tensor, beta: MPBeta, prompt: torch.Tensor) -> torch.Tensor:
    """One frozen ``SamVisionLayer`` (windowed or global attention, then the MLP, both residual)
    with MP-β's update added after each residual, as the reference inserts ``HMPS``."""
    residual = tokens
    x = layer.layer_norm1(tokens)
    if layer.window_size > 0:
        height, width = x.shape[1], x.shape[2]
        x, padding = layer.window_partition(x, layer.window_size)
    x = layer.attn(hidden_states=x)[0]
    if layer.window_size > 0:
        x = layer.window_unpartition(x, layer.window_size, padding, (height, width))
    x = residual + x
    x = x + beta(x, prompt)
    x = x + layer.mlp(layer.layer_norm2(x))
    return x + beta(x, prompt)


class IVTuningVisionEncoder(nn.Module):
    """SAM's vision encoder (``backbone``, frozen, unchanged) with IV-tuning's modules around it.
    ``forward(pixel_values)`` takes (B, 3 + X, S, S), RGB first, and returns SAM's
    ``SamVisionEncoderOutput`` with the neck's (B, 256, S/16, S/16) embedding."""

    def __init__(self, backbone: nn.Module, x_channels: int, *, alpha_width: int, beta_width: int) -> None:
        super().__init__()
        config = backbone.config
        dim, patch = config.hidden_size, config.patch_size
        self.backbone = backbone
        self.x_channels = x_channels
        self.x_patch_embed = nn.Conv2d(x_channels, dim, kernel_size=patch, stride=patch)
        self.mp_alpha = MPAlpha(dim, alpha_width)
        self.mp_beta = nn.ModuleList(MPBeta(dim, beta_width) for _ in backbone.layers)
        for module in self.mp_beta.modules():
            if isinstance(module, nn.Linear):  # the reference's ViT/Swin initialisation
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, pixel_values: torch.Tensor, **_: object):
        from transformers.models.sam.modeling_sam import SamVisionEncoderOutput

        expected = 3 + self.x_channels
        if pixel_values.dim() != 4 or pixel_values.shape[1] != expected:
            raise ValueError(f"IV-tuning expects (B, {expected}, S, S) pixel values (RGB then "
                             f"{self.x_channels} X channel(s)), got {tuple(pixel_values.shape)}")
        visible = self.backbone.patch_embed(pixel_values[:, :3])
        infrared = _channels_last(self.x_patch_embed(pixel_values[:, 3:]))
        prompt = self.mp_alpha(visible, infrared)
        tokens = visible + prompt
        if self.backbone.pos_embed is not None:
            tokens = tokens + self.backbone.pos_embed
        for layer, beta in zip(self.backbone.layers, self.mp_beta):
            tokens = _run_block(layer, tokens, beta, prompt)
            prompt = tokens
        return SamVisionEncoderOutput(last_hidden_state=self.backbone.neck(tokens))


def attach(sam: nn.Module, x_channels: int, *, tiny: bool = False) -> None:
    """Turn ``sam`` into IV-tuning in place for 3 + ``x_channels`` input channels: the vision
    encoder becomes :class:`IVTuningVisionEncoder` (SAM's encoder kept as ``backbone``); only
    the added modules and the mask decoder train. ``tiny`` uses small widths for the test SAM."""
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    if x_channels < 1:
        raise ValueError(f"IV-tuning needs at least one X channel beside RGB, got {x_channels}")
    if not isinstance(sam.vision_encoder, SamVisionEncoder):
        raise ValueError(f"sam.vision_encoder is a {type(sam.vision_encoder).__name__}, not SAM's own "
                         "encoder: IV-tuning attaches once, to a plain SamModel")
    backbone = sam.vision_encoder
    reference = backbone.pos_embed if backbone.pos_embed is not None else next(backbone.parameters())
    with torch.device(reference.device):
        encoder = IVTuningVisionEncoder(
            backbone, x_channels,
            alpha_width=TINY_ALPHA_WIDTH if tiny else PAPER_ALPHA_WIDTH,
            beta_width=TINY_BETA_WIDTH if tiny else PAPER_BETA_WIDTH).to(reference.dtype)
    sam.vision_encoder = encoder
    for name, param in sam.named_parameters():
        if name.startswith("vision_encoder."):
            part = name.split(".")[1]
            param.requires_grad = part in TRAINABLE_ENCODER_PARTS
        else:
            param.requires_grad = not name.startswith(FROZEN_PREFIXES)


def backbone_share(sam: nn.Module) -> tuple[int, int]:
    """(trainable parameters added to the encoder, parameters of SAM's frozen encoder): the two
    numbers behind the paper's "about 3 % of the backbone" (heads are not counted there)."""
    encoder = sam.vision_encoder
    added = sum(p.numel() for n, p in encoder.named_parameters()
                if p.requires_grad and n.split(".")[0] in TRAINABLE_ENCODER_PARTS)
    frozen = sum(p.numel() for p in encoder.backbone.parameters())
    return added, frozen


__all__ = ["IVTuningVisionEncoder", "MPAlpha", "MPBeta", "SOURCE", "SplitFuseEnhancer", "attach",
           "backbone_share"]
