"""Fine-tuning strategies (``--strategy``): what trains inside SAM, and the one entry point
that applies any of them.

Two kinds, named apart (:mod:`aims.baselines.choices`):

- **the reference code's** (``lora``, ``mlp-adapter``, ``prompt``, ``prefix``,
  ``linear-probing``, ``full``), implemented in :mod:`aims.baselines.reference_peft` and proven
  there against the reference fixtures, plus ``scratch`` (``full`` from a random
  initialisation, the paper's "train from scratch" row);
- **ours**, this project's first variants, kept under names that say how they differ:

  - ``lora-fused-qkv`` (peft, r = 100, alpha = r so the scale is 1) on the encoder's fused
    ``qkv`` (768→2304) of every block, so k is adapted too and q, k, v share A:
    r·(768+2304) = 307 200 per block (the reference's separate q and v LoRAs have the same
    count, 2·r·(768+768), which is why a count test cannot tell them apart), and on
    ``q_proj``/``v_proj`` of the decoder's 7 attentions (588 800). Total **4 275 200**.
  - ``mlp-adapter-post-ln`` (AdaptFormer-style, width 200, scale 0.1, beside each MLP) fed
    the MLP's *input* (the LayerNorm output; the reference feeds the pre-LayerNorm stream),
    default init of the down projection: encoder 3 698 016 + decoder 205 712 =
    **3 903 728**.
  - ``prompt-gated`` (400 tokens per attention through the frozen projections, a *separate*
    softmax added through a zero-initialised scalar gate; the reference uses one joint
    softmax and no gate): encoder 12·400·768 = 3 686 400, decoder 7·400·256 = 716 800,
    gates 19. Total **4 403 219**.

Whatever the strategy, the cross-modal projector (``vision_encoder.patch_embed.adapter``)
always trains, as in the reference (``utils.py:81-91``). SAM's own patch embedding
(``vision_encoder.patch_embed.projection``) trains where the strategy's rule says so:
``full``, ``scratch`` and ``linear-probing``; never under the others. The prompt encoder never
trains. ``tests/test_baselines_params.py`` checks the counts on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aims.baselines.choices import AIMS_STRATEGIES, REFERENCE_STRATEGIES, SCRATCH, STRATEGIES
from aims.baselines.reference_peft import apply_reference_strategy
from aims.errors import AimsError

#: strategies that add a few parameters and freeze SAM (lr of the parameter-efficient kind)
PEFT_STRATEGIES = ("lora", "mlp-adapter", "prompt", "prefix", "linear-probing") + AIMS_STRATEGIES
#: where the cross-modal projector lives; it always trains
PROJECTOR_PREFIX = "vision_encoder.patch_embed.adapter."


@dataclass(frozen=True)
class StrategySettings:
    """Sizes of the added parameters: the reference's at every SAM size (``PAPER``), small
    ones for the ``tiny`` test model."""

    lora_rank: int = 100
    adapter_width: int = 200
    adapter_scale: float = 0.1
    prompt_tokens: int = 400
    prefix_tokens: int = 200

    def reference_overrides(self, strategy: str) -> dict[str, float | int]:
        """These settings as :func:`aims.baselines.reference_peft.apply_reference_strategy`
        arguments."""
        return {"lora": {"rank": self.lora_rank},
                "mlp-adapter": {"width": self.adapter_width, "scale": self.adapter_scale},
                "prompt": {"tokens": self.prompt_tokens},
                "prefix": {"tokens": self.prefix_tokens}}.get(strategy, {})


PAPER = StrategySettings()
#: for the `tiny` test model (hidden 32): small enough that a step takes milliseconds
TINY = StrategySettings(lora_rank=4, adapter_width=8, prompt_tokens=4, prefix_tokens=4)

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


_MARKERS = {"lora-fused-qkv": ("lora_",), "mlp-adapter-post-ln": ("adapter_down", "adapter_up"),
            "prompt-gated": ("prompt_tokens", "prompt_gate")}


def _apply_ours(sam: nn.Module, strategy: str, settings: StrategySettings) -> None:
    if strategy == "lora-fused-qkv":
        _add_lora(sam, settings)
    elif strategy == "mlp-adapter-post-ln":
        _add_mlp_adapters(sam, settings)
    else:
        _add_prompts(sam, settings)
    for name, param in sam.named_parameters():
        param.requires_grad_(any(m in name for m in _MARKERS[strategy]))


def apply_strategy(sam: nn.Module, strategy: str, settings: StrategySettings = PAPER) -> None:
    """Add strategy ``strategy``'s modules to ``sam`` (projector already attached) and set
    ``requires_grad`` on exactly the weights that train: the strategy's own rule, then the
    projector on, the prompt encoder off."""
    if strategy not in STRATEGIES:
        raise AimsError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy in REFERENCE_STRATEGIES:
        apply_reference_strategy(sam, strategy, **settings.reference_overrides(strategy))
    elif strategy == SCRATCH:
        apply_reference_strategy(sam, "full")
    else:
        _apply_ours(sam, strategy, settings)
    for name, param in sam.named_parameters():
        if name.startswith(PROJECTOR_PREFIX):
            param.requires_grad_(True)
        elif name.startswith(("prompt_encoder.", "shared_image_embedding.")):
            param.requires_grad_(False)


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


__all__ = ["LORA_TARGETS", "PAPER", "PEFT_STRATEGIES", "PROJECTOR_PREFIX", "STRATEGIES", "TINY", "ParallelAdapter",
           "PromptedDecoderAttention", "PromptedVisionAttention", "StrategySettings",
           "apply_strategy", "count_parameters"]
