"""Cross-modal projectors: every way the SimCMF paper and its reference code feed a
C-channel image into SAM's patch embedding, each under a name that says which one ran.

A projector maps (B, C, H, W) to SAM's patch tokens (B, H/P, W/P, E). Most end in SAM's
own pretrained patch embedding, which the caller passes in as a function
(``sam_patch_embed``: a 3-channel image → tokens). The projector never owns that
embedding, so it keeps its checkpoint name and the strategy decides whether it trains.
Some projectors own a patch embedding instead: a new random one, or a trainable copy of
SAM's.

Four origins, kept apart because the paper and the code disagree (docs/reference-fixtures.md,
"Cross-modal adapter"): ``reference`` (the code as it behaves, under its own
``proj_type`` names), ``paper`` (the paper's text), ``corrected`` (a reference quirk fixed,
under a name of its own) and ``aims`` (ours):

============================  ==========  ===================================================
name                          origin      what it is
============================  ==========  ===================================================
``simcmf``                    reference   gated two-branch projector, the reference default
                                          (``models/projector.py:358-384, 440-454``)
``baseline_a``                reference   new random C-channel patch embedding
``baseline_b``                reference   Conv3×3 → ReLU → *padded* Conv1×1 → trainable copy of
                                          SAM's patch embedding (the padding is kept: a quirk)
``baseline_c``                reference   Conv1×1 → trainable copy of SAM's patch embedding
``baseline_d``                reference   Conv1×1 → SAM's own (frozen) patch embedding
``preconvk{k}n{n}d{d}``       reference   the conv family *as the code builds it*
``preattnp{p}n{n}d{d}``       reference   transformer blocks before the patch embedding, with
                                          the reference's patch scrambling (a quirk)
``zeroshot``                  reference   the first three channels straight into SAM
``paper-n{n}-k{k}-d{d}``      paper       the conv family as Sec. 3.1 / Fig. 6 describe it
``baseline_b-unpadded``       corrected   ``baseline_b`` without the stray padding
``preattnp…-unscrambled``     corrected   ``preattn`` with patches put back in place
``channels-to-batch``         aims        MedicalSAM-style: each channel alone through SAM's
                                          patch embedding, tokens averaged over channels
``aims-conv3``                aims        Conv3×3(C→64) → ReLU → Conv3×3(64→3) → SAM's own
                                          patch embedding (this project's first adapter,
                                          formerly misnamed ``simcmf``; 6,979 parameters at
                                          C = 9, matching neither the paper nor the code)
============================  ==========  ===================================================

The reference's projector checkpoints load through :func:`reference_state_dict_to_ours`.
``tests/test_reference_projectors.py`` proves each reference projector against the
fixtures in ``tests/data/reference`` and pins the parameter counts: Fig. 6's, and the
manifest's ViT-B counts.

Parameter counts use the meta device (:func:`count_parameters`), so nothing is allocated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aims.errors import AimsError

#: SAM's patch embedding as a function: (B, 3, H, W) → (B, H/P, W/P, E)
PatchEmbedFn = Callable[[torch.Tensor], torch.Tensor]

#: ViT-B's patch embedding: Conv2d(3, 768, 16, stride 16)
VIT_B_EMBED_DIM = 768
VIT_B_PATCH_SIZE = 16

#: the reference's gate and ``baseline_b`` widen C to 4·C (``inplane``, models/projector.py:307)
REFERENCE_EXPANSION = 4
#: hidden width of ``aims-conv3``
AIMS_CONV3_WIDTH = 64

#: Fig. 6 (C = 9, k = 3, d = 64), n = 1…5: the exact counts of the paper's family, and the
#: figures the paper prints. The printed figures are the exact counts in thousands, but no
#: single rounding rule gives all five: rounding to one decimal gives 42.4 K for n = 3
#: (printed 42.3 K), and truncating gives 79.2 K for n = 4 (printed 79.3 K). Each printed
#: figure lies within one unit of its last digit of the exact count.
FIG6_PARAMETERS = {1: 30, 2: 5_443, 3: 42_371, 4: 79_299, 5: 116_227}
FIG6_PRINTED = {1: "0.03 K", 2: "5.4 K", 3: "42.3 K", 4: "79.3 K", 5: "116.2 K"}


# ---------------------------------------------------------------------------------------
# Building blocks: modules that turn C channels into a 3-channel image, or into tokens.


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a :class:`ConvStack`: output channels, kernel, padding and
    whether a ReLU follows."""

    out_channels: int
    kernel: int
    padding: int
    relu: bool


class ConvStack(nn.Module):
    """Convolutions, each optionally followed by a ReLU.

    One class for the paper's family, the reference's ``preconv`` family and the 1×1 /
    3×3 maps of ``baseline_b``–``d``. They differ only in kernels, paddings and where the
    ReLUs go, so keeping that in a list of :class:`ConvLayer` makes the difference plain.
    """

    def __init__(self, in_channels: int, layers: Sequence[ConvLayer]) -> None:
        super().__init__()
        self.layers = tuple(layers)
        widths = [in_channels] + [layer.out_channels for layer in self.layers]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], layer.out_channels, layer.kernel,
                                             padding=layer.padding)
                                   for i, layer in enumerate(self.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, layer in zip(self.convs, self.layers):
            x = conv(x)
            if layer.relu:
                x = F.relu(x)
        return x

    def extra_repr(self) -> str:
        return "relu after: " + ", ".join(str(layer.relu) for layer in self.layers)


class FirstThreeChannels(nn.Module):
    """The reference's zero-shot input (models/projector.py:471-475): fewer than three
    channels are padded by repeating the last one, so C = 1 gives (x, x, x) and C = 2
    gives (x0, x1, x1). Then channels 0–2 are kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = 3 - x.shape[1]
        if missing > 0:
            x = torch.cat([x, x[:, -1:].expand(-1, missing, -1, -1)], dim=1)
        return x[:, :3]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map, as the reference's ``LayerNorm2d``
    (eps 1e-6, models/projector.py:97-113). Its weight and bias are stored flat here. The
    reference stores them as (1, C, 1, 1); the key map reshapes them."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GlobalBlock(nn.Module):
    """A pre-norm ViT block with global attention and no positional term of any kind.
    The reference's ``preattn`` builds its blocks this way (models/projector.py:236-301,
    built at 409): 8 heads, MLP ratio 4, GELU, LayerNorm eps 1e-5, qkv with bias. The
    fused qkv projection has ``nn.MultiheadAttention``'s layout (q, k, v stacked, heads
    contiguous inside each), so the reference's ``qkv`` loads as ``in_proj``."""

    def __init__(self, dim: int, heads: int = 8, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return x.reshape(b, h, w, d)


class PatchTransformer(nn.Module):
    """Transformer blocks before SAM's patch embedding (the reference's ``preattn``,
    models/projector.py:401-411, 461-469). The input is patchified by Conv(C→d, p,
    stride p), goes through ``depth`` :class:`GlobalBlock`s, and each token becomes p·p·3
    values through a Linear(d → p·p·3). Those values form the 3-channel image that SAM's
    patch embedding sees.

    **Reference quirk, kept when** ``unscramble=False``: the reference reads the
    (B, H/p, W/p, p, p, 3) token values in memory order as (B, H, W, 3). It never moves the
    patch rows into place, so one token's p×p pixels land spread along an image row.
    ``unscramble=True`` (registered as ``…-unscrambled``) puts each patch back where it came
    from.
    """

    def __init__(self, in_channels: int, patch: int, depth: int, width: int, *,
                 heads: int = 8, unscramble: bool = False) -> None:
        super().__init__()
        self.patch = patch
        self.unscramble = unscramble
        self.embed = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.blocks = nn.ModuleList(GlobalBlock(width, heads) for _ in range(depth))
        self.to_pixels = nn.Linear(width, patch * patch * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.patch
        tokens = self.embed(x).permute(0, 2, 3, 1)
        for block in self.blocks:
            tokens = block(tokens)
        pixels = self.to_pixels(tokens)
        if self.unscramble:
            pixels = pixels.reshape(b, h // p, w // p, p, p, 3).permute(0, 1, 3, 2, 4, 5)
        return pixels.reshape(b, h, w, 3).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------
# Projectors: (B, C, H, W) → (B, H/P, W/P, E).


class Projector(nn.Module):
    """Base class. ``forward(x, sam_patch_embed)`` returns tokens (B, H/P, W/P, E).

    ``through_sam_patch_embed`` says whether the output goes through SAM's own patch
    embedding. Under the reference's PEFT strategies that embedding is frozen, and only
    full fine-tuning and linear probing train it.
    """

    through_sam_patch_embed: bool = True

    def forward(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> torch.Tensor:
        raise NotImplementedError


class ThroughSamPatchEmbed(Projector):
    """A C→3 image map (``pre``), then SAM's own patch embedding."""

    def __init__(self, pre: nn.Module) -> None:
        super().__init__()
        self.pre = pre

    def forward(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> torch.Tensor:
        return sam_patch_embed(self.pre(x))


class OwnPatchEmbed(Projector):
    """A map (``pre``), then a patch embedding this projector owns and trains. It is
    either new and random (``baseline_a``) or a copy of SAM's (``baseline_b``/``c``). SAM's
    own embedding is not used."""

    through_sam_patch_embed = False

    def __init__(self, pre: nn.Module, patch_embed: nn.Conv2d) -> None:
        super().__init__()
        self.pre = pre
        self.patch_embed = patch_embed

    def forward(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> torch.Tensor:
        return self.patch_embed(self.pre(x)).permute(0, 2, 3, 1)


class ChannelGate(nn.Module):
    """The gate of the reference's ``simcmf``: Conv3×3 (C→4C), channel LayerNorm, ReLU,
    Conv3×3 (4C→C), then a global average. The result is one logit per channel and image,
    shape (B, C, 1, 1). The LayerNorm starts at weight 1, bias 0."""

    def __init__(self, channels: int, expansion: int = REFERENCE_EXPANSION) -> None:
        super().__init__()
        self.expand = nn.Conv2d(channels, channels * expansion, 3, padding=1)
        self.norm = ChannelLayerNorm(channels * expansion)
        self.reduce = nn.Conv2d(channels * expansion, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(F.relu(self.norm(self.expand(x))))
        return x.mean(dim=(2, 3), keepdim=True)


class GatedBranches(NamedTuple):
    """What :meth:`GatedTwoBranch.branches` computed, named after the reference's
    forward-hook captures so the fixtures can test each part."""

    gate_logits: torch.Tensor      # (B, C, 1, 1), ``projector.moe`` output
    old_input: torch.Tensor        # (B, C, H, W) input × w, into the 1×1 conv
    old_rgb: torch.Tensor          # (B, 3, H, W) into SAM's patch embedding
    old: torch.Tensor              # (B, h, w, E) SAM's patch embedding output
    per_channel: torch.Tensor      # (B, h, w, E, C) per-channel embeddings, into ``fc``
    novel: torch.Tensor            # (B, h, w, E) mixed by ``fc``
    output: torch.Tensor           # old + novel


class GatedTwoBranch(Projector):
    """The reference code's default projector ``simcmf`` (models/projector.py:358-384,
    440-454). The paper's text does not describe it.

    A :class:`ChannelGate` gives a weight w = sigmoid(logit) per input channel and image.
    Two branches run, and their outputs are summed:

    - **old**: x·w → Conv1×1 (C→3) → SAM's own patch embedding (frozen under PEFT);
    - **novel**: x·(1−w) → one P×P/P patch embedding per channel (1→E). Each starts as
      SAM's pretrained embedding summed over its 3 input channels, with SAM's bias. The C
      per-channel embeddings are mixed by a bias-free Linear(C→1), ``mix``, initialised
      to **zero**. At initialisation the output therefore equals the old branch.

    The C per-channel embeddings are one grouped convolution, ``channel_embed`` (groups
    = C). Group i holds the reference's ``group_patch_embedding[i]``. At ViT-B this has
    0.2 M parameters (C = 1) to 1.8 M (C = 9).
    """

    def __init__(self, in_channels: int, sam_patch_embed: nn.Conv2d) -> None:
        super().__init__()
        c, e = in_channels, sam_patch_embed.out_channels
        self.gate = ChannelGate(c)
        self.to_rgb = nn.Conv2d(c, 3, 1)
        self.channel_embed = nn.Conv2d(c, c * e, sam_patch_embed.kernel_size,
                                       stride=sam_patch_embed.stride, groups=c)
        self.mix = nn.Linear(c, 1, bias=False)
        with torch.no_grad():
            self.channel_embed.weight.copy_(sam_patch_embed.weight.sum(1, keepdim=True).repeat(c, 1, 1, 1))
            self.channel_embed.bias.copy_(sam_patch_embed.bias.repeat(c))
            self.mix.weight.zero_()

    def branches(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> GatedBranches:
        logits = self.gate(x)
        w = torch.sigmoid(logits)
        old_input = x * w
        old_rgb = self.to_rgb(old_input)
        old = sam_patch_embed(old_rgb)
        embedded = self.channel_embed(x * (1 - w))
        b, _, h, wd = embedded.shape
        per_channel = embedded.reshape(b, x.shape[1], -1, h, wd).permute(0, 3, 4, 2, 1)
        novel = self.mix(per_channel)[..., 0]
        return GatedBranches(logits, old_input, old_rgb, old, per_channel, novel, old + novel)

    def forward(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> torch.Tensor:
        return self.branches(x, sam_patch_embed).output


class ChannelsToBatch(Projector):
    """Ours (the reference has no such projector): the MedicalSAM-style alignment-ablation
    row. Each channel goes through SAM's patch embedding on its own, as a grey image
    (x_c, x_c, x_c): the channels are folded into the batch. The C token maps are then
    averaged. There are no parameters.

    A full channels-to-batch design would run the whole encoder per channel. At the
    patch embedding, where every projector sits, the channels have to be fused, and the
    mean is the plainest way to do it.
    """

    def forward(self, x: torch.Tensor, sam_patch_embed: PatchEmbedFn) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = sam_patch_embed(x.reshape(b * c, 1, h, w).expand(-1, 3, -1, -1))
        return tokens.reshape(b, c, *tokens.shape[1:]).mean(dim=1)


# ---------------------------------------------------------------------------------------
# Factories for each family.


def _patch_conv_like(sam_patch_embed: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, sam_patch_embed.out_channels, sam_patch_embed.kernel_size,
                     stride=sam_patch_embed.stride)


def _copy_of(sam_patch_embed: nn.Conv2d) -> nn.Conv2d:
    conv = _patch_conv_like(sam_patch_embed, sam_patch_embed.in_channels)
    with torch.no_grad():
        conv.weight.copy_(sam_patch_embed.weight)
        conv.bias.copy_(sam_patch_embed.bias)
    return conv


def paper_layers(layers: int, kernel: int, width: int) -> list[ConvLayer]:
    """The paper's family (Sec. 3.1, Fig. 6). For n ≥ 2: a k×k conv (C→d), (n−2) k×k convs
    (d→d) and a final 1×1 conv (d→3), with a ReLU after every layer but the last. n = 1 is
    a single 1×1 conv (C→3), whatever k and d are."""
    if layers == 1:
        return [ConvLayer(3, 1, 0, relu=False)]
    body = [ConvLayer(width, kernel, kernel // 2, relu=True) for _ in range(layers - 1)]
    return body + [ConvLayer(3, 1, 0, relu=False)]


def reference_preconv_layers(layers: int, kernel: int, width: int) -> list[ConvLayer]:
    """``preconvk{k}n{n}d{d}`` as the reference builds it (models/projector.py:386-399).
    The kernels and widths are the paper's, so the parameter counts are too for n ≥ 2,
    but the activations differ:

    - no ReLU after the first conv, a ReLU after each middle conv, none after the last.
      So ``preconvk3n2d64``, the configuration the paper chose, is linear;
    - n = 1 is a single **k×k** conv (C→3), so ``preconvk3n1d64`` has 246 parameters at
      C = 9, not Fig. 6's 30.
    """
    if layers == 1:
        return [ConvLayer(3, kernel, kernel // 2, relu=False)]
    first = ConvLayer(width, kernel, kernel // 2, relu=False)
    middle = [ConvLayer(width, kernel, kernel // 2, relu=True) for _ in range(layers - 2)]
    return [first, *middle, ConvLayer(3, 1, 0, relu=False)]


def _baseline_b_layers(in_channels: int, padded: bool) -> list[ConvLayer]:
    # reference: models/projector.py:317-320; the 1×1 conv has padding=1
    return [ConvLayer(in_channels * REFERENCE_EXPANSION, 3, 1, relu=True),
            ConvLayer(3, 1, 1 if padded else 0, relu=False)]


# ---------------------------------------------------------------------------------------
# Registry.


@dataclass(frozen=True)
class ProjectorSpec:
    """A projector by name: where it comes from and how to build it.

    ``origin``: ``reference`` (mt-cly/SimCMF@0cdc5c1 as the code behaves), ``corrected``
    (a reference projector with a quirk fixed), ``paper`` (the paper's text) or ``aims``
    (ours). ``kind`` picks the reference-weight key map. ``uniform_init`` lists the convs
    (our names) that the reference's ``-uniformInit`` sets to U(0, 1) weights and zero
    bias.
    """

    name: str
    origin: str
    kind: str
    summary: str
    source: str
    through_sam_patch_embed: bool
    build: Callable[[int, nn.Conv2d], Projector]
    uniform_init: tuple[str, ...] = ()


def _fixed_specs() -> list[ProjectorSpec]:
    ref = "mt-cly/SimCMF@0cdc5c1 models/projector.py"

    def linear_map(c: int) -> ConvStack:
        return ConvStack(c, [ConvLayer(3, 1, 0, relu=False)])

    return [
        ProjectorSpec("simcmf", "reference", "simcmf",
                      "gate; x*w -> Conv1x1(C->3) -> frozen SAM patch embedding, plus x*(1-w) -> "
                      "per-channel patch embeddings (init: SAM's summed) -> zero-init Linear(C->1)",
                      f"{ref}:358-384, 440-454", True,
                      lambda c, sam: GatedTwoBranch(c, sam), uniform_init=("to_rgb",)),
        ProjectorSpec("baseline_a", "reference", "baseline_a",
                      "new random C-channel patch embedding (trainable); SAM's is unused",
                      f"{ref}:312-314, 428-432", False,
                      lambda c, sam: OwnPatchEmbed(nn.Identity(), _patch_conv_like(sam, c))),
        ProjectorSpec("baseline_b", "reference", "baseline_b",
                      "Conv3x3(C->4C) -> ReLU -> Conv1x1(4C->3, padding 1: grows the image by 2, "
                      "shifts it 1 px) -> trainable copy of SAM's patch embedding",
                      f"{ref}:316-334, 428-432", False,
                      lambda c, sam: OwnPatchEmbed(ConvStack(c, _baseline_b_layers(c, True)), _copy_of(sam)),
                      uniform_init=("pre.convs.0", "pre.convs.1")),
        ProjectorSpec("baseline_b-unpadded", "corrected", "baseline_b",
                      "baseline_b without the 1x1 conv's padding: Conv3x3(C->4C) -> ReLU -> "
                      "Conv1x1(4C->3) -> trainable copy of SAM's patch embedding",
                      f"{ref}:316-334 with padding=0", False,
                      lambda c, sam: OwnPatchEmbed(ConvStack(c, _baseline_b_layers(c, False)), _copy_of(sam)),
                      uniform_init=("pre.convs.0", "pre.convs.1")),
        ProjectorSpec("baseline_c", "reference", "baseline_c",
                      "Conv1x1(C->3) -> trainable copy of SAM's patch embedding "
                      "(linear + pretrained patch embedding)",
                      f"{ref}:336-349, 428-432", False,
                      lambda c, sam: OwnPatchEmbed(linear_map(c), _copy_of(sam)),
                      uniform_init=("pre.convs.0",)),
        ProjectorSpec("baseline_d", "reference", "baseline_d",
                      "Conv1x1(C->3) -> SAM's own patch embedding (linear + frozen patch embedding)",
                      f"{ref}:351-356, 434-437", True,
                      lambda c, sam: ThroughSamPatchEmbed(linear_map(c)),
                      uniform_init=("pre.convs.0",)),
        ProjectorSpec("zeroshot", "reference", "zeroshot",
                      "first 3 channels (fewer are padded by repeating the last) -> SAM's patch embedding",
                      f"{ref}:413-414, 471-475", True,
                      lambda c, sam: ThroughSamPatchEmbed(FirstThreeChannels())),
        ProjectorSpec("channels-to-batch", "aims", "channels-to-batch",
                      "MedicalSAM-style: each channel as a grey image through SAM's patch "
                      "embedding, tokens averaged over channels (no parameters)",
                      "ours (no reference code)", True,
                      lambda c, sam: ChannelsToBatch()),
        ProjectorSpec("aims-conv3", "aims", "aims-conv3",
                      f"Conv3x3(C->{AIMS_CONV3_WIDTH}) -> ReLU -> Conv3x3({AIMS_CONV3_WIDTH}->3) -> "
                      "SAM's own patch embedding (ours; neither the paper's family nor the code's)",
                      "ours (no reference code)", True,
                      lambda c, sam: ThroughSamPatchEmbed(ConvStack(c, [
                          ConvLayer(AIMS_CONV3_WIDTH, 3, 1, relu=True), ConvLayer(3, 3, 1, relu=False)]))),
    ]


_PAPER_RE = re.compile(r"paper-n(\d+)-k(\d+)-d(\d+)")
_PRECONV_RE = re.compile(r"preconvk(\d+)n(\d+)d(\d+)")
_PREATTN_RE = re.compile(r"preattnp(\d+)n(\d+)d(\d+)(-unscrambled)?")


def _paper_spec(name: str, n: int, k: int, d: int) -> ProjectorSpec:
    shape = "Conv1x1(C->3)" if n == 1 else (
        f"Conv{k}x{k}(C->{d}) -> ReLU" + f" -> Conv{k}x{k}({d}->{d}) -> ReLU" * (n - 2) + f" -> Conv1x1({d}->3)")
    return ProjectorSpec(name, "paper", "paper", f"{shape} -> SAM's own patch embedding",
                         "SimCMF paper Sec. 3.1, Fig. 6", True,
                         lambda c, sam: ThroughSamPatchEmbed(ConvStack(c, paper_layers(n, k, d))))


def _preconv_spec(name: str, n: int, k: int, d: int) -> ProjectorSpec:
    shape = f"Conv{k}x{k}(C->3)" if n == 1 else (
        f"Conv{k}x{k}(C->{d})" + f" -> Conv{k}x{k}({d}->{d}) -> ReLU" * (n - 2) + f" -> Conv1x1({d}->3)")
    return ProjectorSpec(name, "reference", "preconv", f"{shape} -> SAM's own patch embedding",
                         "mt-cly/SimCMF@0cdc5c1 models/projector.py:386-399, 456-459", True,
                         lambda c, sam: ThroughSamPatchEmbed(ConvStack(c, reference_preconv_layers(n, k, d))))


def _preattn_spec(name: str, p: int, n: int, d: int, unscrambled: bool) -> ProjectorSpec:
    if d % 8:
        raise AimsError(f"projector {name!r}: the width d={d} must be divisible by the 8 attention heads")
    how = "patches put back in place" if unscrambled else "token values read in memory order (reference quirk)"
    return ProjectorSpec(name, "corrected" if unscrambled else "reference", "preattn",
                         f"Conv(C->{d}, {p}, stride {p}) -> {n} global ViT block(s) -> Linear({d}->{p}*{p}*3), "
                         f"{how} -> SAM's own patch embedding",
                         "mt-cly/SimCMF@0cdc5c1 models/projector.py:401-411, 461-469", True,
                         lambda c, sam: ThroughSamPatchEmbed(PatchTransformer(c, p, n, d, unscramble=unscrambled)))


#: largest family parameters a name may ask for. Names come from run folders and recipe
#: files, which may be hostile: ``paper-n999999999-k1-d1`` must be refused, not built. The
#: bounds are far above anything the paper or the code uses (n ≤ 5, k ≤ 5, d ≤ 128, p ≤ 16).
FAMILY_BOUNDS = {"n": 16, "k": 31, "d": 4096, "p": 64}


def _check_bounds(name: str, values: Mapping[str, int], minimum: Mapping[str, int]) -> None:
    for key, value in values.items():
        if not minimum[key] <= value <= FAMILY_BOUNDS[key]:
            raise AimsError(f"projector {name!r}: {key} = {value} is outside {minimum[key]}…{FAMILY_BOUNDS[key]}")


def _family_spec(name: str) -> ProjectorSpec | None:
    """A spec for a family name (``paper-n2-k3-d64``, ``preconvk3n2d64``, ``preattnp16n1d64``
    and ``-unscrambled``), or None if ``name`` belongs to no family."""
    if len(name) > 64:
        return None
    for regex, make, order in ((_PAPER_RE, _paper_spec, "nkd"), (_PRECONV_RE, _preconv_spec, "knd")):
        match = regex.fullmatch(name)
        if match:
            values = dict(zip(order, (int(g) for g in match.groups())))
            _check_bounds(name, values, {"n": 1, "k": 1, "d": 1})
            return make(name, values["n"], values["k"], values["d"])
    match = _PREATTN_RE.fullmatch(name)
    if match:
        p, n, d = (int(g) for g in match.groups()[:3])
        _check_bounds(name, {"p": p, "n": n, "d": d}, {"p": 1, "n": 0, "d": 1})
        return _preattn_spec(name, p, n, d, unscrambled=bool(match.group(4)))
    return None


#: the paper's ablation grid: n = 1…5, k ∈ {1, 3, 5}, d ∈ {32, 64, 96}
GRID_LAYERS = (1, 2, 3, 4, 5)
GRID_KERNELS = (1, 3, 5)
GRID_WIDTHS = (32, 64, 96)
#: the preattn configurations the manifest counts at ViT-B
PREATTN_CONFIGS = ("preattnp16n1d64", "preattnp16n2d128")


def _registry() -> dict[str, ProjectorSpec]:
    specs = {spec.name: spec for spec in _fixed_specs()}
    for n in GRID_LAYERS:
        for k in GRID_KERNELS:
            for d in GRID_WIDTHS:
                for name in (f"paper-n{n}-k{k}-d{d}", f"preconvk{k}n{n}d{d}"):
                    specs[name] = _family_spec(name)
    for name in PREATTN_CONFIGS:
        for full in (name, f"{name}-unscrambled"):
            specs[full] = _family_spec(full)
    return specs


#: every named projector: the fixed ones, the paper and ``preconv`` families over the
#: ablation grid, and the ``preattn`` configurations. :func:`projector_spec` also accepts
#: any other member of a family (``preconvk3n3d16``, ``preattnp8n1d8``).
PROJECTORS: dict[str, ProjectorSpec] = _registry()

#: the paper's cross-modal alignment ablation (polarization, LoRA) row → projector. The
#: paper's "3×3 kernels" row is its n = 2, k = 3, d = 64. The reference code's nearest
#: configuration is ``preconvk3n2d64``, which has no ReLU. Its default, ``simcmf``, is a
#: different design. The paper gives no configuration for the transformer row. Ours is
#: the smaller of the two that the manifest counts.
ALIGNMENT_ABLATION: dict[str, str] = {
    "random new patch embedding": "baseline_a",
    "linear 1×1 + pretrained patch embedding": "baseline_c",
    "linear 1×1 + frozen pretrained patch embedding": "baseline_d",
    "+ nonlinearity (MLP)": "paper-n2-k1-d64",
    "3×3 kernels (SimCMF)": "paper-n2-k3-d64",
    "MedicalSAM-style channels-to-batch": "channels-to-batch",
    "transformer blocks before the patch embedding": "preattnp16n1d64",
}


#: the projectors that are not members of a family, in registry order
FIXED_PROJECTORS: tuple[str, ...] = tuple(spec.name for spec in _fixed_specs())


def projector_spec(name: str) -> ProjectorSpec:
    """The spec of projector ``name``. Raises :class:`AimsError` (listing the choices) for
    an unknown name."""
    spec = PROJECTORS.get(name) or _family_spec(name)
    if spec is None:
        fixed = ", ".join(s.name for s in _fixed_specs())
        raise AimsError(f"unknown projector {name!r:.80}; choose one of {fixed}, "
                        "paper-n{n}-k{k}-d{d}, preconvk{k}n{n}d{d}, preattnp{p}n{n}d{d}[-unscrambled]")
    return spec


def build_projector(name: str, in_channels: int, sam_patch_embed: nn.Conv2d, *,
                    uniform_init: bool = False) -> Projector:
    """Build projector ``name`` for ``in_channels`` channels. ``sam_patch_embed`` is SAM's
    pretrained Conv2d(3, E, P, stride P). It gives E and P and initialises the projectors
    that start from it. The projector does not keep it. New parameters go on its device
    (the meta device for counting).

    ``uniform_init`` does what the reference's ``-uniformInit`` does: the listed 1×1/3×3
    convs start from U(0, 1) weights and zero bias. It is an error for a projector where
    the reference ignores the flag, because a results file would then claim an
    initialisation that never happened.
    """
    spec = projector_spec(name)
    if in_channels < 1:
        raise AimsError(f"projector {name!r} needs at least one input channel, got {in_channels}")
    if uniform_init and not spec.uniform_init:
        raise AimsError(f"projector {name!r} has no uniform initialisation in the reference "
                        "(only simcmf and baseline_b-d have one)")
    with torch.device(sam_patch_embed.weight.device):
        projector = spec.build(in_channels, sam_patch_embed)
    if uniform_init:
        modules = dict(projector.named_modules())
        with torch.no_grad():
            for target in spec.uniform_init:
                nn.init.uniform_(modules[target].weight)
                nn.init.zeros_(modules[target].bias)
    return projector


def build_on_meta(name: str, in_channels: int, *, embed_dim: int = VIT_B_EMBED_DIM,
                  patch_size: int = VIT_B_PATCH_SIZE) -> Projector:
    """The projector against a meta-device SAM patch embedding (ViT-B by default). It has
    structure and shapes but no memory."""
    with torch.device("meta"):
        sam = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
    return build_projector(name, in_channels, sam)


def count_parameters(name: str, in_channels: int, *, embed_dim: int = VIT_B_EMBED_DIM,
                     patch_size: int = VIT_B_PATCH_SIZE) -> int:
    """The projector's own parameters, all of them trainable (the reference always trains
    the projector, utils.py:81-91). SAM's patch embedding is not counted. The count runs
    on the meta device, so nothing is allocated."""
    return sum(p.numel() for p in build_on_meta(name, in_channels, embed_dim=embed_dim,
                                                patch_size=patch_size).parameters())


class ProjectedPatchEmbeddings(nn.Module):
    """Drop-in for transformers' ``SamPatchEmbeddings``: a projector in front of SAM's
    patch embedding. SAM's conv keeps its name ``projection``, so Meta and HF checkpoints
    load unchanged. The projector is ``adapter``, so its weights are saved as
    ``vision_encoder.patch_embed.adapter.*``, which is where the strategies look for the
    trainable cross-modal part."""

    def __init__(self, projection: nn.Conv2d, projector: Projector, in_channels: int) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = projector
        self.num_channels = in_channels

    def sam_patch_embed(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.projection(rgb).permute(0, 2, 3, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} input channels, got {pixel_values.shape[1]}")
        return self.adapter(pixel_values, self.sam_patch_embed)


def attach_projector(sam: nn.Module, name: str, in_channels: int, *,
                     uniform_init: bool = False) -> ProjectorSpec:
    """Put projector ``name`` in front of a transformers ``SamModel``'s image encoder. This
    only adds modules: which of them train is the strategy's choice."""
    projection = sam.vision_encoder.patch_embed.projection
    projector = build_projector(name, in_channels, projection, uniform_init=uniform_init)
    sam.vision_encoder.patch_embed = ProjectedPatchEmbeddings(projection, projector, in_channels)
    return projector_spec(name)


# ---------------------------------------------------------------------------------------
# Reference checkpoint names ↔ ours.


@dataclass(frozen=True)
class KeyRule:
    """One of our tensors and the reference tensors it comes from. ``how`` is one of
    ``same``, ``flat`` (the reference stores (1, C, 1, 1), we store (C,)) or ``concat``
    (the reference's per-channel convs, concatenated along dim 0)."""

    ours: str
    reference: tuple[str, ...]
    how: str = "same"


def _conv_rules(ref_prefix: str, our_prefix: str, ref_indices: Sequence[int]) -> list[KeyRule]:
    return [KeyRule(f"{our_prefix}.{m}.{p}", (f"{ref_prefix}.{j}.{p}",))
            for m, j in enumerate(ref_indices) for p in ("weight", "bias")]


def _preconv_ref_indices(layers: int) -> list[int]:
    # reference Sequential: conv, then (conv, ReLU) per middle layer, then the 1×1 conv
    return [0] if layers == 1 else [0, *(1 + 2 * i for i in range(layers - 2)), 2 * layers - 3]


def reference_key_rules(name: str, in_channels: int) -> list[KeyRule]:
    """How projector ``name``'s weights are named in the reference
    (``image_encoder.projector.<name>``, without that prefix) and in ours."""
    spec = projector_spec(name)
    wb = ("weight", "bias")
    if spec.kind == "simcmf":
        rules = [KeyRule(f"gate.expand.{p}", (f"moe.0.{p}",)) for p in wb]
        rules += [KeyRule(f"gate.norm.{p}", (f"moe.1.{p}",), "flat") for p in wb]
        rules += [KeyRule(f"gate.reduce.{p}", (f"moe.3.{p}",)) for p in wb]
        rules += [KeyRule(f"to_rgb.{p}", (f"zip_rgbx.{p}",)) for p in wb]
        rules += [KeyRule(f"channel_embed.{p}",
                          tuple(f"group_patch_embedding.{i}.{p}" for i in range(in_channels)), "concat")
                  for p in wb]
        return rules + [KeyRule("mix.weight", ("fc.weight",))]
    if spec.kind in ("baseline_a", "baseline_b", "baseline_c"):
        rules = [KeyRule(f"patch_embed.{p}", (f"patch_embedding.{p}",)) for p in wb]
        if spec.kind == "baseline_b":
            rules += _conv_rules("zip_rgbx", "pre.convs", [0, 2])
        elif spec.kind == "baseline_c":
            rules += [KeyRule(f"pre.convs.0.{p}", (f"zip_rgbx.{p}",)) for p in wb]
        return rules
    if spec.kind == "baseline_d":
        return [KeyRule(f"pre.convs.0.{p}", (f"zip_rgbx.{p}",)) for p in wb]
    if spec.kind == "preconv":
        layers = int(_PRECONV_RE.fullmatch(name).group(2))
        return _conv_rules("zip_proj", "pre.convs", _preconv_ref_indices(layers))
    if spec.kind == "preattn":
        depth = int(_PREATTN_RE.fullmatch(name).group(2))
        rules = [KeyRule(f"pre.embed.{p}", (f"zip_proj.0.{p}",)) for p in wb]
        for i in range(depth):
            ours, ref = f"pre.blocks.{i}", f"zip_proj.{i + 1}"
            for a, b in (("norm1", "norm1"), ("norm2", "norm2"), ("attn.out_proj", "attn.proj"),
                         ("mlp.0", "mlp.lin1"), ("mlp.2", "mlp.lin2")):
                rules += [KeyRule(f"{ours}.{a}.{p}", (f"{ref}.{b}.{p}",)) for p in wb]
            rules += [KeyRule(f"{ours}.attn.in_proj_{p}", (f"{ref}.attn.qkv.{p}",)) for p in wb]
        return rules + [KeyRule(f"pre.to_pixels.{p}", (f"zip_proj.{depth + 1}.{p}",)) for p in wb]
    if spec.kind == "zeroshot":
        return []
    raise AimsError(f"projector {name!r} ({spec.origin}) has no counterpart in the reference code")


def reference_state_dict_to_ours(name: str, in_channels: int,
                                 state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference projector's weights (keys without ``image_encoder.projector.``) under our
    names. Every reference key must be claimed by a rule. A rule whose keys are all absent
    is skipped, so partial dicts convert too."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in reference_key_rules(name, in_channels):
        present = [k for k in rule.reference if k in state]
        if not present:
            continue
        if len(present) != len(rule.reference):
            missing = sorted(set(rule.reference) - set(present))
            raise AimsError(f"reference weights for {name!r}: {rule.ours} needs {missing} too")
        tensors = [state[k] for k in rule.reference]
        used.update(rule.reference)
        if rule.how == "flat":
            out[rule.ours] = tensors[0].reshape(-1)
        elif rule.how == "concat":
            out[rule.ours] = torch.cat(tensors, dim=0)
        else:
            out[rule.ours] = tensors[0]
    unknown = sorted(set(state) - used)
    if unknown:
        raise AimsError(f"reference weights for {name!r}: keys with no counterpart in ours: {unknown}")
    return out


def ours_to_reference_state_dict(name: str, in_channels: int,
                                 state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`reference_state_dict_to_ours`: our weights under the
    reference's names. Use it to write a checkpoint the reference code loads, or to check
    initial values against the reference's records."""
    out: dict[str, torch.Tensor] = {}
    rules = reference_key_rules(name, in_channels)
    claimed = {rule.ours for rule in rules}
    unknown = sorted(set(state) - claimed)
    if unknown:
        raise AimsError(f"weights of {name!r}: keys with no counterpart in the reference: {unknown}")
    for rule in rules:
        if rule.ours not in state:
            continue
        tensor = state[rule.ours]
        if rule.how == "flat":
            out[rule.reference[0]] = tensor.reshape(1, -1, 1, 1)
        elif rule.how == "concat":
            out.update(zip(rule.reference, tensor.chunk(len(rule.reference), dim=0)))
        else:
            out[rule.reference[0]] = tensor
    return out


__all__ = ["AIMS_CONV3_WIDTH", "ALIGNMENT_ABLATION", "FAMILY_BOUNDS", "FIXED_PROJECTORS", "FIG6_PARAMETERS", "FIG6_PRINTED", "GRID_KERNELS", "GRID_LAYERS",
           "GRID_WIDTHS", "PREATTN_CONFIGS", "PROJECTORS", "REFERENCE_EXPANSION", "VIT_B_EMBED_DIM",
           "VIT_B_PATCH_SIZE", "ChannelGate", "ChannelLayerNorm", "ChannelsToBatch", "ConvLayer",
           "ConvStack", "FirstThreeChannels", "GatedBranches", "GatedTwoBranch", "GlobalBlock",
           "KeyRule", "OwnPatchEmbed", "PatchEmbedFn", "PatchTransformer", "ProjectedPatchEmbeddings",
           "Projector", "ProjectorSpec", "ThroughSamPatchEmbed", "attach_projector", "build_on_meta",
           "build_projector", "count_parameters", "ours_to_reference_state_dict", "paper_layers",
           "projector_spec", "reference_key_rules", "reference_preconv_layers",
           "reference_state_dict_to_ours"]
