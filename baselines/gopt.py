"""GoPT on SAM: grouping prompters that feed an auxiliary modality into SAM's frozen encoder.

GoPT (Qibin He, "Prompting Multi-Modal Image Segmentation with Semantic Grouping", AAAI 2024,
doi:10.1609/aaai.v38i3.27981) keeps an RGB foundation model frozen and learns *prompts* from
the second modality X. Before a frozen transformer block, a **grouping prompter**

1. **CUP** (class-aware uni-modal prompter): learned class tokens join the auxiliary (X)
   tokens in one self-attention; every X token is then assigned to one class token by a
   Gumbel-softmax with a straight-through one-hot (hard assignment), and each group's tokens
   are merged through ``W_v`` and ``W_o`` into that group's class-aware prompt;
2. **ACP** (alignment-induced cross-modal prompter): every RGB token cross-attends to those
   class-aware prompts (queries from RGB, keys/values from the prompts) and is grouped onto
   one of them the same way, which gives one prompt per RGB token;
3. the prompt **multiplies** the RGB tokens element-wise before the block; the merged class
   tokens are **inherited** by the next prompter.

How it sits in SAM (the parts the paper cannot say, because it used a different backbone):

- RGB (channels 0..2) goes through SAM's frozen patch embedding and absolute position
  embedding; X (channels 3..) through a new, trainable patch embedding of the same geometry
  (initialised from the mean of SAM's RGB kernel), plus the same frozen position embedding.
- SAM's blocks take (B, H, W, C) token maps and partition them into windows themselves, so
  the prompter works on the flattened (B, H·W, C) tokens of the whole image and hands the
  prompted map back in (B, H, W, C): windowed and global blocks see the same layout as in SAM.
- The prompters work at a small width (``width``, 24 at every SAM size) between a down- and
  an up-projection of SAM's width; the multiplier is ``1 + up(·)`` with a small
  initialisation, so the frozen encoder starts close to plain SAM.
- What trains: the prompters, the X patch embedding, and SAM's **mask decoder**, which plays
  GoPT's "segmentation head" (the paper updates only the prompters and the head). SAM's image
  encoder (patch embedding, position embedding, blocks, neck), its prompt encoder and the
  shared positional embedding stay frozen.

No official GoPT code was found in public repositories; this module follows the paper's text
as summarised in ``docs/rgbx-gopt.md`` (which lists the sources and what is our own choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

#: what this module builds (for describe / docs)
SOURCE = ("GoPT (He, AAAI 2024, doi:10.1609/aaai.v38i3.27981): grouping prompters (CUP + ACP) "
          "before SAM's frozen ViT blocks, rebuilt from the paper's description (abstract, Fig. 3 "
          "overview, Table 4 and Fig. 6-7 ablations); no official code was found; docs/rgbx-gopt.md")

Assignment = Literal["hard", "soft"]
#: the insertion intervals of the paper's ablation (Fig. 6) at 12 blocks: 12, 6, 3, 2, 1 prompters
PAPER_INTERVALS = (1, 2, 4, 6, 12)
ASSIGNMENTS = ("hard", "soft")


@dataclass(frozen=True)
class GoPTSettings:
    """Sizes and ablation knobs.

    ``interval``: a prompter before every ``interval``-th frozen block (blocks 0, k, 2k, ...);
    ``assignment``: ``"hard"`` (Gumbel-softmax + straight-through one-hot, the paper's default)
    or ``"soft"`` (plain softmax, the paper's Fig. 7 alternative); ``groups``: class tokens;
    ``width``: the prompters' inner width; ``train_decoder``: whether SAM's mask decoder
    trains as GoPT's segmentation head.
    """

    width: int = 24
    groups: int = 8
    interval: int = 1
    assignment: Assignment = "hard"
    tau: float = 1.0
    train_decoder: bool = True

    def check(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"GoPT interval must be a positive integer (the paper's ablation: "
                             f"{PAPER_INTERVALS}), got {self.interval!r}")
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"GoPT assignment must be one of {ASSIGNMENTS}, got {self.assignment!r}")
        if self.width < 1 or self.groups < 1 or self.tau <= 0:
            raise ValueError(f"GoPT needs width, groups >= 1 and tau > 0, got {self}")


PAPER = GoPTSettings()
#: for the `tiny` test SAM (hidden 32, 2 blocks): a CPU step takes milliseconds
TINY = GoPTSettings(width=8, groups=4)

#: GroupViT's merge normaliser: a group's merged value is Σ A·v / (Σ A + 1)
MERGE_EPS = 1.0


def group_assignment(logits: torch.Tensor, dim: int, *, hard: bool, tau: float, training: bool) -> torch.Tensor:
    """Assign each token to one group along ``dim``.

    ``hard``: a one-hot in the forward pass whose gradient is the softmax's (straight-through
    estimator); Gumbel noise only while ``training``, so evaluation is the deterministic argmax.
    Soft: the softmax itself. Computed in float32 (bf16 noise would saturate).
    """
    logits = logits.float()
    if hard and training:
        uniform = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
        logits = logits - torch.log(-torch.log(uniform))
    soft = torch.softmax(logits / tau, dim=dim)
    if not hard:
        return soft
    index = soft.argmax(dim=dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return one_hot - soft.detach() + soft


class ClassAwareUnimodalPrompter(nn.Module):
    """CUP: self-attention over [X tokens; class tokens], then groups X tokens onto class
    tokens and merges each group through ``W_v``, ``W_o`` into its class-aware prompt."""

    def __init__(self, width: int, settings: GoPTSettings, **factory) -> None:
        super().__init__()
        self.settings = settings
        self.norm = nn.LayerNorm(width, **factory)
        self.qkv = nn.Linear(width, 3 * width, **factory)
        self.attn_out = nn.Linear(width, width, **factory)
        self.norm_tokens = nn.LayerNorm(width, **factory)
        self.norm_classes = nn.LayerNorm(width, **factory)
        self.assign_q = nn.Linear(width, width, **factory)
        self.assign_k = nn.Linear(width, width, **factory)
        self.w_v = nn.Linear(width, width, **factory)
        self.w_o = nn.Linear(width, width, **factory)

    def forward(self, aux: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B, N, w) X tokens and (B, K, w) class tokens → (B, K, w) class-aware prompts."""
        n = aux.shape[1]
        x = torch.cat([aux, classes], dim=1)
        # one head, as (B, 1, N + K, w): the 4-D form lets CUDA pick a fused kernel, so the
        # (N + K)² weights of a 64×64 map (4 104² per image at ViT-B) are never materialised
        q, k, v = self.qkv(self.norm(x)).unsqueeze(1).chunk(3, dim=-1)
        x = x + self.attn_out(F.scaled_dot_product_attention(q, k, v).squeeze(1))
        aux, classes = x[:, :n], x[:, n:]
        tokens = self.norm_tokens(aux)
        logits = self.assign_q(self.norm_classes(classes)) @ self.assign_k(tokens).transpose(1, 2)
        logits = logits / math.sqrt(classes.shape[-1])                     # (B, K, N)
        s = self.settings
        assign = group_assignment(logits, 1, hard=s.assignment == "hard", tau=s.tau,
                                  training=self.training).to(tokens.dtype)
        merged = (assign @ self.w_v(tokens)) / (assign.sum(-1, keepdim=True) + MERGE_EPS)
        return classes + self.w_o(merged)


class AlignmentCrossModalPrompter(nn.Module):
    """ACP: RGB tokens cross-attend to the class-aware prompts and are grouped onto them,
    one prompt per RGB token."""

    def __init__(self, width: int, settings: GoPTSettings, **factory) -> None:
        super().__init__()
        self.settings = settings
        self.norm_rgb = nn.LayerNorm(width, **factory)
        self.norm_prompts = nn.LayerNorm(width, **factory)
        self.w_q = nn.Linear(width, width, **factory)
        self.w_k = nn.Linear(width, width, **factory)
        self.w_v = nn.Linear(width, width, **factory)
        self.w_o = nn.Linear(width, width, **factory)

    def forward(self, rgb: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(B, N, w) RGB tokens and (B, K, w) prompts → (B, N, w) per-token prompts."""
        prompts = self.norm_prompts(prompts)
        logits = self.w_q(self.norm_rgb(rgb)) @ self.w_k(prompts).transpose(1, 2)
        logits = logits / math.sqrt(rgb.shape[-1])                          # (B, N, K)
        s = self.settings
        assign = group_assignment(logits, 2, hard=s.assignment == "hard", tau=s.tau,
                                  training=self.training).to(rgb.dtype)
        return self.w_o(assign @ self.w_v(prompts))


class GroupingPrompter(nn.Module):
    """One grouping prompter: SAM-width tokens in, an element-wise multiplier for the RGB
    tokens and the class tokens for the next prompter out."""

    def __init__(self, hidden: int, settings: GoPTSettings, **factory) -> None:
        super().__init__()
        w = settings.width
        self.rgb_down = nn.Linear(hidden, w, **factory)
        self.aux_down = nn.Linear(hidden, w, **factory)
        self.class_tokens = nn.Parameter(torch.empty(settings.groups, w, **factory))
        self.cup = ClassAwareUnimodalPrompter(w, settings, **factory)
        self.acp = AlignmentCrossModalPrompter(w, settings, **factory)
        self.up = nn.Linear(w, hidden, **factory)
        nn.init.trunc_normal_(self.class_tokens, std=0.02)
        # small, not zero: a zero `up` would leave every other prompter weight without gradient
        nn.init.trunc_normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.up.bias)

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor, inherited: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rgb``/``aux``: (B, N, C) tokens; ``inherited``: (B, K, w) class tokens of the
        previous prompter or None. Returns the (B, N, C) multiplier and (B, K, w) class tokens."""
        classes = self.class_tokens.to(rgb.dtype).expand(rgb.shape[0], -1, -1)
        if inherited is not None:
            classes = classes + inherited
        prompts = self.cup(self.aux_down(aux), classes)
        per_token = self.acp(self.rgb_down(rgb), prompts)
        return 1.0 + self.up(per_token), prompts


class GoPTVisionEncoder(nn.Module):
    """SAM's image encoder with grouping prompters; takes RGB + X stacked on channels.

    ``sam_encoder`` is SAM's own (frozen) ``SamVisionEncoder``, so its checkpoint names stay
    ``vision_encoder.sam_encoder.*``; ``prompters[str(i)]`` runs before block ``i``.
    """

    def __init__(self, sam_encoder: nn.Module, x_channels: int, settings: GoPTSettings) -> None:
        super().__init__()
        settings.check()
        if x_channels < 1:
            raise ValueError(f"GoPT needs at least one X channel, got {x_channels}")
        self.sam_encoder = sam_encoder
        self.x_channels = x_channels
        self.settings = settings
        rgb_embed = sam_encoder.patch_embed.projection
        ref = rgb_embed.weight
        factory = {"device": ref.device, "dtype": ref.dtype}
        hidden = rgb_embed.out_channels
        self.x_patch_embed = nn.Conv2d(x_channels, hidden, kernel_size=rgb_embed.kernel_size,
                                       stride=rgb_embed.stride, **factory)
        with torch.no_grad():   # X as a grey image: the RGB kernel's channel mean, spread over X
            mean = ref.mean(dim=1, keepdim=True)
            self.x_patch_embed.weight.copy_(mean.expand(-1, x_channels, -1, -1) * (3.0 / x_channels))
            if rgb_embed.bias is not None:
                self.x_patch_embed.bias.copy_(rgb_embed.bias)
        blocks = len(sam_encoder.layers)
        self.prompters = nn.ModuleDict({str(i): GroupingPrompter(hidden, settings, **factory)
                                        for i in range(0, blocks, settings.interval)})

    def forward(self, pixel_values: torch.Tensor, **_: object):
        from transformers.models.sam.modeling_sam import SamVisionEncoderOutput

        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3 + self.x_channels:
            raise ValueError(f"GoPT expects (B, {3 + self.x_channels}, S, S) pixel values (RGB then "
                             f"{self.x_channels} X channels), got {tuple(pixel_values.shape)}")
        enc = self.sam_encoder
        rgb = enc.patch_embed(pixel_values[:, :3])                            # (B, H, W, C)
        aux = self.x_patch_embed(pixel_values[:, 3:]).permute(0, 2, 3, 1)
        if enc.pos_embed is not None:
            rgb = rgb + enc.pos_embed
            aux = aux + enc.pos_embed
        b, h, w, c = rgb.shape
        aux = aux.reshape(b, h * w, c)
        classes = None
        hidden = rgb
        for i, layer in enumerate(enc.layers):
            prompter = self.prompters[str(i)] if str(i) in self.prompters else None
            if prompter is not None:
                multiplier, classes = prompter(hidden.reshape(b, h * w, c), aux, classes)
                hidden = hidden * multiplier.reshape(b, h, w, c)
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        return SamVisionEncoderOutput(last_hidden_state=enc.neck(hidden))


def attach(sam: nn.Module, x_channels: int, *, tiny: bool = False, interval: int | None = None,
           assignment: Assignment | None = None) -> None:
    """Turn ``sam`` into GoPT in place (see the module docstring for what trains).

    ``interval`` (default 1: a prompter before every block) and ``assignment`` (default
    ``"hard"``) are the paper's two ablation knobs; ``tiny`` shrinks the prompters for the
    ``tiny`` test SAM.
    """
    settings = TINY if tiny else PAPER
    if interval is not None:
        settings = replace(settings, interval=interval)
    if assignment is not None:
        settings = replace(settings, assignment=assignment)
    settings.check()
    for p in sam.parameters():
        p.requires_grad_(False)
    sam.vision_encoder = GoPTVisionEncoder(sam.vision_encoder, x_channels, settings)
    for name, p in sam.vision_encoder.named_parameters():
        p.requires_grad_(not name.startswith("sam_encoder."))
    if settings.train_decoder:
        for p in sam.mask_decoder.parameters():
            p.requires_grad_(True)


def gopt_parameter_count(hidden: int, blocks: int, patch: int, x_channels: int,
                         settings: GoPTSettings = PAPER) -> int:
    """GoPT's own trainable parameters (prompters + X patch embedding), by formula: the count
    the docs compare with the paper's 0.97 M (SAM's decoder not included)."""
    w, k = settings.width, settings.groups
    linear = lambda i, o: i * o + o  # noqa: E731
    norm = 2 * w
    cup = 3 * norm + linear(w, 3 * w) + 5 * linear(w, w)
    acp = 2 * norm + 4 * linear(w, w)
    prompter = 2 * linear(hidden, w) + k * w + cup + acp + linear(w, hidden)
    prompters = len(range(0, blocks, settings.interval))
    return prompters * prompter + x_channels * patch * patch * hidden + hidden


__all__ = ["ASSIGNMENTS", "AlignmentCrossModalPrompter", "ClassAwareUnimodalPrompter", "GoPTSettings",
           "GoPTVisionEncoder", "GroupingPrompter", "PAPER", "PAPER_INTERVALS", "SOURCE", "TINY", "attach",
           "gopt_parameter_count", "group_assignment"]
