"""Fine-tuning strategies (``--strategy``): what trains inside SAM.

Each parameter-efficient strategy acts on the same places — every image-encoder block and the
mask decoder's two-way transformer — and adds nothing that changes SAM's output at
initialisation (LoRA's B and the adapters' up-projections start at zero; prompt tokens enter
through a zero-initialised gate), so step 0 is exactly the pretrained model.

Settings and the trainable-parameter arithmetic at ViT-B (hidden 768, 12 blocks; decoder
width 256, attention internal width 256 for self-attention and 128 for the two
cross-attentions, 2 two-way blocks + a final token→image attention = 7 attention layers,
2 MLPs). The paper's figures: LoRA 4.3 M, MLP adapter 3.9 M, prompt 4.4 M, full 93.7 M.

- ``lora`` (peft, r = 100, alpha = r so the scale is 1): on the encoder's fused ``qkv``
  (768→2304) of every block — r·(768+2304) = 307 200 per block, the same count as the
  reference's separate q and v LoRAs (2·r·(768+768)) — and on ``q_proj``/``v_proj`` of the
  decoder's 7 attention layers: self r·(256+256)·2 = 102 400, each cross r·(256+128)·2 = 76 800,
  so 2·(102 400+2·76 800) + 76 800 = 588 800. Total 3 686 400 + 588 800 = **4 275 200**.
- ``mlp-adapter`` (AdaptFormer-style parallel adapter, width 200, scale 0.1, beside each MLP):
  encoder 12·(768·200+200+200·768+768) = 3 698 016; decoder 2·(256·200+200+200·256+256) =
  205 712. Total **3 903 728**.
- ``prompt`` (400 prompt tokens per attention layer, attended to as extra keys/values through
  the frozen projections, added through a zero-initialised scalar gate): encoder 12·400·768 =
  3 686 400, decoder 7·400·256 = 716 800, gates 19. Total **4 403 219**.
- ``full``: every weight except the prompt encoder (frozen, as in the reference code) and a
  patch embedding the adapter freezes: 93 735 472 − 6 220 − 590 592 ≈ **93.1 M** with
  ``simcmf``.
- ``scratch``: ``full`` from a random initialisation (``--checkpoint none``).

The cross-modal adapter's own weights (``simcmf``: 2 371 for 1 channel, 6 979 for 9) always
train and are counted on top. ``tests/test_baselines_params.py`` checks all of this on the
meta device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aims.baselines.choices import STRATEGIES
from aims.baselines.choices import AdapterSpec
from aims.errors import AimsError

PEFT_STRATEGIES = ("lora", "mlp-adapter", "prompt")


@dataclass(frozen=True)
class StrategySettings:
    lora_rank: int = 100
    adapter_width: int = 200
    adapter_scale: float = 0.1
    prompt_tokens: int = 400


PAPER = StrategySettings()
#: for the `tiny` test model (hidden 32): small enough that a step takes milliseconds
TINY = StrategySettings(lora_rank=4, adapter_width=8, prompt_tokens=4)

#: peft target: the encoder's fused qkv and the decoder attentions' q/v, by full-match regex
#: (a plain ["qkv", "proj"] list would also wrap the patch embedding's `projection` Conv2d)
LORA_TARGETS = (r"vision_encoder\.layers\.\d+\.attn\.qkv"
                r"|mask_decoder\.transformer\.(layers\.\d+\.(self_attn|cross_attn_token_to_image"
                r"|cross_attn_image_to_token)|final_attn_token_to_image)\.(q_proj|v_proj)")


class ParallelAdapter(nn.Module):
    """``mlp(x) + scale · up(relu(down(x)))`` with ``up`` zero-initialised."""

    def __init__(self, mlp: nn.Module, hidden: int, width: int, scale: float) -> None:
        super().__init__()
        self.mlp = mlp
        self.adapter_down = nn.Linear(hidden, width)
        self.adapter_up = nn.Linear(width, hidden)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.scale * self.adapter_up(F.relu(self.adapter_down(x)))


def _prompt_init(tokens: int, dim: int, device: torch.device) -> nn.Parameter:
    # VPT's uniform init (Jia et al.), as the reference code does
    val = (6.0 / (3 * 16 + dim)) ** 0.5
    return nn.Parameter(torch.empty(tokens, dim, device=device).uniform_(-val, val)
                        if device.type != "meta" else torch.empty(tokens, dim, device=device))


class PromptedVisionAttention(nn.Module):
    """An encoder attention whose queries also attend to learned prompt tokens.

    The frozen ``qkv`` maps the prompt tokens to keys/values; the prompt branch is added
    after its own softmax through a gate that starts at 0 (zero effect at init; LLaMA-Adapter
    style), so the image path keeps transformers' fused SDPA kernel untouched.
    """

    def __init__(self, inner: nn.Module, tokens: int) -> None:
        super().__init__()
        self.inner = inner
        dim = inner.qkv.in_features
        self.prompt_tokens = _prompt_init(tokens, dim, inner.qkv.weight.device)
        self.prompt_gate = nn.Parameter(torch.zeros((), device=inner.qkv.weight.device))

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool | None = None):
        out, weights = self.inner(hidden_states)
        b, h, w, c = hidden_states.shape
        heads = self.inner.num_attention_heads
        wqkv, bqkv = self.inner.qkv.weight, self.inner.qkv.bias
        q = F.linear(hidden_states.reshape(b, h * w, c), wqkv[:c], None if bqkv is None else bqkv[:c])
        q = q.view(b, h * w, heads, -1).transpose(1, 2)
        kv = F.linear(self.prompt_tokens.to(q.dtype), wqkv[c:], None if bqkv is None else bqkv[c:])
        k, v = kv.view(-1, 2, heads, c // heads).permute(1, 2, 0, 3)
        ctx = F.scaled_dot_product_attention(q, k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1))
        ctx = ctx.transpose(1, 2).reshape(b, h, w, c)
        return out + self.prompt_gate.to(out.dtype) * F.linear(ctx, self.inner.proj.weight), weights


class PromptedDecoderAttention(nn.Module):
    """The decoder's ``SamAttention`` with gated prompt tokens (see :class:`PromptedVisionAttention`)."""

    def __init__(self, inner: nn.Module, tokens: int) -> None:
        super().__init__()
        self.inner = inner
        dev = inner.q_proj.weight.device
        self.prompt_tokens = _prompt_init(tokens, inner.k_proj.in_features, dev)
        self.prompt_gate = nn.Parameter(torch.zeros((), device=dev))

    def forward(self, query, key, value, attention_similarity=None, **kwargs):
        out, weights = self.inner(query=query, key=key, value=value,
                                  attention_similarity=attention_similarity, **kwargs)
        b, p, n, _ = query.shape
        heads = self.inner.num_attention_heads
        q = self.inner.q_proj(query).reshape(b * p, n, heads, -1).transpose(1, 2)
        pt = self.prompt_tokens.to(q.dtype)
        k = self.inner.k_proj(pt).view(-1, heads, q.shape[-1]).transpose(0, 1)
        v = self.inner.v_proj(pt).view(-1, heads, q.shape[-1]).transpose(0, 1)
        ctx = F.scaled_dot_product_attention(q, k.expand(b * p, -1, -1, -1), v.expand(b * p, -1, -1, -1),
                                             scale=self.inner.scaling)
        ctx = ctx.transpose(1, 2).reshape(b, p, n, -1)
        return out + self.prompt_gate.to(out.dtype) * F.linear(ctx, self.inner.out_proj.weight), weights


def _decoder_attentions(sam: nn.Module):
    tr = sam.mask_decoder.transformer
    for layer in tr.layers:
        for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            yield layer, name
    yield tr, "final_attn_token_to_image"


def _add_lora(sam: nn.Module, s: StrategySettings) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=s.lora_rank, lora_alpha=s.lora_rank, lora_dropout=0.0,
                        target_modules=LORA_TARGETS, bias="none")
    inject_adapter_in_model(config, sam)


def _add_mlp_adapters(sam: nn.Module, s: StrategySettings) -> None:
    hidden = sam.config.vision_config.hidden_size
    for layer in sam.vision_encoder.layers:
        layer.mlp = ParallelAdapter(layer.mlp, hidden, s.adapter_width, s.adapter_scale).to(
            layer.mlp.lin1.weight.device)
    dec = sam.config.mask_decoder_config.hidden_size
    for layer in sam.mask_decoder.transformer.layers:
        layer.mlp = ParallelAdapter(layer.mlp, dec, s.adapter_width, s.adapter_scale).to(
            layer.mlp.lin1.weight.device)


def _add_prompts(sam: nn.Module, s: StrategySettings) -> None:
    for layer in sam.vision_encoder.layers:
        layer.attn = PromptedVisionAttention(layer.attn, s.prompt_tokens)
    for parent, name in _decoder_attentions(sam):
        setattr(parent, name, PromptedDecoderAttention(getattr(parent, name), s.prompt_tokens))


_MARKERS = {"lora": ("lora_",), "mlp-adapter": ("adapter_down", "adapter_up"),
            "prompt": ("prompt_tokens", "prompt_gate")}


def apply_strategy(sam: nn.Module, strategy: str, adapter: AdapterSpec,
                   settings: StrategySettings = PAPER) -> None:
    """Add the strategy's modules to ``sam`` (adapter already attached) and set
    ``requires_grad`` on exactly the weights that train."""
    if strategy not in STRATEGIES:
        raise AimsError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "lora":
        _add_lora(sam, settings)
    elif strategy == "mlp-adapter":
        _add_mlp_adapters(sam, settings)
    elif strategy == "prompt":
        _add_prompts(sam, settings)
    full = strategy in ("full", "scratch")
    for name, param in sam.named_parameters():
        if full:
            train = not name.startswith(("prompt_encoder.", "shared_image_embedding."))
        else:
            train = any(m in name for m in _MARKERS[strategy])
        if name.startswith("vision_encoder.patch_embed.adapter."):
            train = True
        elif name.startswith("vision_encoder.patch_embed.projection."):
            train = not adapter.freeze_patch_embed and (full or adapter.new_patch_embed
                                                        or adapter.name == "linear")
        param.requires_grad_(train)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied parameters counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


__all__ = ["LORA_TARGETS", "PAPER", "PEFT_STRATEGIES", "STRATEGIES", "TINY", "ParallelAdapter",
           "PromptedDecoderAttention", "PromptedVisionAttention", "StrategySettings",
           "apply_strategy", "count_parameters"]
