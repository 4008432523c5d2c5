"""ViPT on SAM (``--strategy vipt``): modality-complementary prompts in every encoder block.

ViPT (Zhu et al., "Visual Prompt Multi-Modal Tracking", CVPR 2023) adapts a frozen RGB
ViT to RGB + X by prompt learning. Rebuilt here on SAM's image encoder as its official code
does it for the ViT backbone of its tracker (``vipt_deep``, the default of every
``experiments/vipt/deep_*.yaml``):

- RGB goes through SAM's own patch embedding; X through a patch embedding of its own
  (``patch_embed_prompt``: ``Conv2d(C_x → D, 16, stride 16)``, randomly initialised: the
  official code loads a tracker checkpoint that has none).
- One modality-complementary prompter (MCP, ``Prompt_block``) per block and one LayerNorm
  (eps 1e-6) per block. Before the first block the prompt is
  ``MCP₀(norm₀(RGB tokens), norm₀(X tokens))``. Before block i ≥ 1 it is
  ``MCPᵢ(normᵢ₋₁(x), normᵢ(previous prompt))``. Each prompt is added to the RGB token stream.
- An MCP maps both inputs to a narrow width (8) with 1×1 convolutions. The RGB branch passes
  a "fovea": a softmax over all positions of its features times a learned temperature
  (initialised to 10), multiplied back onto them. The two are summed and mapped back to D
  with a 1×1 convolution. Weights are Xavier-uniform. Here the 1×1 convolutions are
  ``nn.Linear`` on SAM's channels-last tokens: the same function and parameter count.
- What trains: ViPT's optimiser takes only parameters whose name contains ``prompt``
  (``lib/train/base_functions.py``, ``get_optimizer_scheduler``) and freezes the rest,
  its box head included. So here SAM's encoder, prompt encoder **and mask decoder stay
  frozen**. SimCMF's Table 6 counts ViPT* as prompt tuning.

Source: github.com/jiawen-zhu/ViPT at ``f49f30186ebff5587600a61ff224bb341c0a3243``,
``lib/models/vipt/vit_ce_prompt.py`` (``Fovea``, ``Prompt_block``,
``VisionTransformerCE.__init__`` / ``forward_features``) and ``lib/train/base_functions.py``.
Not carried over: the tracker's template/search token split and candidate elimination,
which a single-image segmenter does not have.

Counts at ViT-B (``tests/test_rgbx_vipt.py``): per block 19,217 (MCP) + 1,536 (norm), × 12 =
249,036; the X patch embedding ``C_x·16·16·768 + 768`` (197,376 at C_x = 1, 590,592 at
C_x = 3). Total = SAM's 93,735,728 + 446,412 = **94,182,140** for RGB-T/D/NIR and
94,575,356 for RGB-HHA, against the paper's 94.5 M (SimCMF Table 6). The official ViPT feeds
X as three channels, so the 94.5 M likely counts a 3-channel X embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOURCE = ("ViPT (Zhu et al., CVPR 2023), vipt_deep: github.com/jiawen-zhu/ViPT@f49f301 "
          "lib/models/vipt/vit_ce_prompt.py (Fovea, Prompt_block, forward_features); only "
          "'prompt' parameters train (lib/train/base_functions.py)")

#: the MCP's inner width in the official code (``hide_channel=8``), and for the tiny test model
HIDDEN = 8
TINY_HIDDEN = 4
#: the fovea's learned softmax temperature starts here (``torch.zeros(1) + 10.0``)
FOVEA_TEMPERATURE = 10.0
#: ViPT's ``norm_layer`` (``partial(nn.LayerNorm, eps=1e-6)``)
NORM_EPS = 1e-6


class ModalityComplementaryPrompter(nn.Module):
    """ViPT's ``Prompt_block`` on channels-last tokens: ``(B, H, W, D)`` RGB-side and
    X-side inputs → a ``(B, H, W, D)`` prompt."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv0_0 = nn.Linear(dim, hidden)     # names as in the official code
        self.conv0_1 = nn.Linear(dim, hidden)
        self.conv1x1 = nn.Linear(hidden, dim)
        self.fovea_temperature = nn.Parameter(torch.full((1,), FOVEA_TEMPERATURE))
        for layer in (self.conv0_0, self.conv0_1, self.conv1x1):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        a = self.conv0_0(rgb)
        b, h, w, k = a.shape
        flat = a.reshape(b, h * w, k)
        # the fovea: softmax over every position, per channel, multiplied back
        a = (F.softmax(flat * self.fovea_temperature, dim=1) * flat).reshape(b, h, w, k)
        return self.conv1x1(a + self.conv0_1(aux))


class ViptEncoder(nn.Module):
    """SAM's image encoder (kept whole as ``encoder``) with ViPT's X patch embedding and
    per-block prompters. ``forward`` takes ``(B, 3 + C_x, S, S)``: RGB, then X."""

    def __init__(self, encoder: nn.Module, x_channels: int, hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        dim = encoder.config.hidden_size
        patch = encoder.config.patch_size
        depth = len(encoder.layers)
        self.x_channels = x_channels
        self.patch_embed_prompt = nn.Conv2d(x_channels, dim, kernel_size=patch, stride=patch)
        self.prompt_blocks = nn.ModuleList(ModalityComplementaryPrompter(dim, hidden) for _ in range(depth))
        self.prompt_norms = nn.ModuleList(nn.LayerNorm(dim, eps=NORM_EPS) for _ in range(depth))

    def forward(self, pixel_values: torch.Tensor, **kwargs):
        from transformers.models.sam.modeling_sam import SamVisionEncoderOutput

        if pixel_values.shape[1] != 3 + self.x_channels:
            raise ValueError(f"ViPT expects (B, {3 + self.x_channels}, S, S) pixel values (RGB then "
                             f"{self.x_channels} X channels), got {tuple(pixel_values.shape)}")
        enc = self.encoder
        tokens = enc.patch_embed(pixel_values[:, :3])                              # (B, H, W, D)
        aux = self.patch_embed_prompt(pixel_values[:, 3:]).permute(0, 2, 3, 1)
        prompt = self.prompt_blocks[0](self.prompt_norms[0](tokens), self.prompt_norms[0](aux))
        tokens = tokens + prompt
        if enc.pos_embed is not None:
            tokens = tokens + enc.pos_embed
        for i, layer in enumerate(enc.layers):
            if i >= 1:
                prompt = self.prompt_blocks[i](self.prompt_norms[i - 1](tokens), self.prompt_norms[i](prompt))
                tokens = tokens + prompt
            out = layer(tokens)
            tokens = out[0] if isinstance(out, tuple) else out
        return SamVisionEncoderOutput(last_hidden_state=enc.neck(tokens))


def attach(sam: nn.Module, x_channels: int, *, tiny: bool = False) -> None:
    """Make ``sam`` ViPT for 3 + ``x_channels`` inputs, in place: only the prompt modules
    (X patch embedding, prompters, their norms) train; all of SAM is frozen."""
    encoder = sam.vision_encoder
    device = encoder.patch_embed.projection.weight.device
    vipt = ViptEncoder(encoder, x_channels, TINY_HIDDEN if tiny else HIDDEN)
    for name, module in vipt.named_children():
        if name != "encoder":
            module.to(device)
    sam.vision_encoder = vipt
    for name, param in sam.named_parameters():
        # ViPT's rule: train what is named "prompt" (here: every module ViPT adds), freeze SAM
        param.requires_grad_(name.startswith("vision_encoder.") and not name.startswith("vision_encoder.encoder."))


__all__ = ["HIDDEN", "SOURCE", "ModalityComplementaryPrompter", "ViptEncoder", "attach"]
