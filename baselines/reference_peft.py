"""The reference code's fine-tuning strategies, on transformers' ``SamModel``.

The SimCMF reference (``mt-cly/SimCMF``; docs/reference-fixtures.md) keeps one copy of
Meta's SAM modelling code per strategy and edits it in place. Here each strategy is one
``apply_<name>(sam, **settings)`` that patches a stock ``SamModel`` — forward hooks where the
change is additive, an attention subclass where the attention itself changes — and then
marks exactly the weights the reference trains. Every original parameter keeps its name, so
Meta and Hugging Face checkpoints load before or after a strategy is applied; the added
parameters are named after the reference's (``lora_q_a``, ``deep_prompt_embeddings``, …;
:func:`rename_reference_state_dict` maps a reference state dict onto them).

What each strategy does (facts from the reference at the pinned commit; file:line there):

- ``lora`` (``models/sam_lora/modeling/image_encoder.py:242-276``, ``transformer.py:207-241``):
  separate rank-100 updates on **q and v** of every encoder block, read from the block's
  LayerNormed (windowed) tokens and added to the q and v slices of the fused ``qkv`` output,
  before the 1/√d scaling and the relative-position term; keys untouched. The same pair on
  q_proj/v_proj of all 7 decoder attentions, reading the attention's q and v inputs. A is
  kaiming-uniform (a = √5), B zero, no bias, scale 1 (no α/r).
- ``mlp-adapter`` (``models/sam_mlp_adapter/modeling/adapter.py:11-50``,
  ``image_encoder.py:192-214``, ``transformer.py:144-181``): down(d→200) → ReLU → up(200→d),
  × 0.1, fed the residual stream *before* ``norm2`` and added beside the MLP branch — in every
  encoder block and in both decoder two-way blocks (after the token→image cross-attention).
  Down weight kaiming-uniform, down bias, up weight and up bias zero.
- ``prompt`` (``models/sam_prompt/modeling/image_encoder.py:236-272``,
  ``transformer.py:208-230``): 400 tokens per attention, U(±√(6/(48+d))), Dropout(0.1).
  Encoder: the tokens go through the block's own ``qkv`` (bias included, no LayerNorm); their
  keys/values join the image keys in **one softmax**; the relative-position term covers the
  image keys only; every window sees the same tokens. Decoder: the tokens are appended to the
  k and v *inputs*, so they pass through k_proj/v_proj (two independent dropout draws).
- ``prefix`` (``models/sam_prefix/modeling/image_encoder.py:236-272``,
  ``transformer.py:208-231``): 200 key and 200 value tokens per attention, same init, no
  dropout. Encoder: appended *after* the qkv projection (split into heads like the image
  keys), joint softmax, relative positions on the image keys only. Decoder: appended to the
  k/v inputs before k_proj/v_proj.
- ``linear-probing`` (``utils.py:53-57``): trains names containing ``patch_embed`` or
  ``pos_embed`` — SAM's patch embedding and absolute position embedding (and a projector that
  lives under ``patch_embed``); no head; the mask decoder stays frozen.
- ``full`` (``utils.py:51-52``): everything, the patch embedding included.

Under every strategy the prompt encoder is frozen (``utils.py:93-95``; ``Sam.forward`` runs it
under ``no_grad``), and so is transformers' copy of its Fourier matrix
(``shared_image_embedding``, tied to it). The cross-modal projector, which the reference
always trains (``utils.py:81-91``), is not part of ``SamModel``: whoever attaches it sets its
``requires_grad`` after the strategy, as the reference does.

Trainable counts at ViT-B without the projector (``manifest.json`` → ``vit_b_models``, the
paper's Table 4): LoRA 4,275,200; MLP adapter 3,903,728; prompt 4,403,200; prefix 4,403,200;
linear probing 3,736,320; full 93,729,252. ``tests/test_reference_peft.py`` checks them on the
meta device and checks every block against the ``full_sam_*`` fixtures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamAttention, SamVisionAttention

from aims.baselines.sam_loading import rename_meta_state_dict
from aims.errors import AimsError

#: where each strategy's added parameters live (name fragments, for tests and checkpoints)
PEFT_PARAMETER_NAMES = {
    "lora": ("lora_q_a", "lora_q_b", "lora_v_a", "lora_v_b"),
    "mlp-adapter": ("mlp_adapter",),
    "prompt": ("deep_prompt_embeddings",),
    "prefix": ("prefix_key_embeddings", "prefix_value_embeddings"),
}

#: the attribute recording which strategy a model carries (one per model)
_MARK = "aims_reference_strategy"


# ---------------------------------------------------------------------------------------
# Where the strategies act

def _encoder_layers(sam: nn.Module) -> list[nn.Module]:
    return list(sam.vision_encoder.layers)


def _decoder_attentions(sam: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(parent, attribute) of the decoder's 7 attentions at ViT-B: per two-way block
    self-attention and both cross-attentions, then the final token→image attention."""
    tr = sam.mask_decoder.transformer
    for layer in tr.layers:
        for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            yield layer, name
    yield tr, "final_attn_token_to_image"


def _claim(sam: nn.Module, strategy: str) -> None:
    done = getattr(sam, _MARK, None)
    if done is not None:
        raise AimsError(f"this SAM already carries the reference strategy {done!r}; "
                        f"build a fresh model for {strategy!r}")
    setattr(sam, _MARK, strategy)


def _like(module: nn.Module) -> dict[str, Any]:
    """device/dtype of a module's first weight, so added weights sit beside it (meta too)."""
    p = next(module.parameters())
    return {"device": p.device, "dtype": p.dtype}


def _token_init(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """VPT's uniform init, as the reference uses for prompt and prefix tokens."""
    val = math.sqrt(6.0 / float(3 * 16 + dim))
    return nn.init.uniform_(tensor, -val, val)


def _new_lora_pair(in_features: int, rank: int, out: int, **like: Any) -> tuple[nn.Linear, nn.Linear]:
    a = nn.Linear(in_features, rank, bias=False, **like)
    b = nn.Linear(rank, out, bias=False, **like)
    nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
    nn.init.zeros_(b.weight)
    return a, b


# ---------------------------------------------------------------------------------------
# Trainable parameters

def _set_trainable(sam: nn.Module, rule: Callable[[str], bool]) -> list[str]:
    """``requires_grad`` = ``rule(name)``, then the prompt encoder (and its tied Fourier
    matrix) frozen whatever the rule says. Returns the trainable names."""
    names = []
    for name, param in sam.named_parameters():
        train = rule(name) and not name.startswith(("prompt_encoder.", "shared_image_embedding."))
        param.requires_grad_(train)
        if train:
            names.append(name)
    return names


def _fragment_rule(fragments: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda name: any(f in name for f in fragments)


# ---------------------------------------------------------------------------------------
# LoRA: separate low-rank q and v updates

def _qkv_lora_hook(attn: nn.Module, scale: float, module: nn.Module, args: tuple,
                   output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the encoder's fused ``qkv``: q += s·B_q A_q x, v += s·B_v A_v x, k as is."""
    x = args[0]
    q, k, v = output.chunk(3, dim=-1)
    q = q + scale * attn.lora_q_b(attn.lora_q_a(x))
    v = v + scale * attn.lora_v_b(attn.lora_v_a(x))
    return torch.cat([q, k, v], dim=-1)


def _proj_lora_hook(attn: nn.Module, which: str, scale: float, module: nn.Module, args: tuple,
                    output: torch.Tensor) -> torch.Tensor:
    """Forward hook on a decoder ``q_proj``/``v_proj``: add s·B A of that projection's input."""
    a, b = getattr(attn, f"lora_{which}_a"), getattr(attn, f"lora_{which}_b")
    return output + scale * b(a(args[0]))


def apply_lora(sam: nn.Module, *, rank: int = 100, scale: float = 1.0) -> list[str]:
    """The reference's LoRA (see the module docstring); returns the trainable names."""
    _claim(sam, "lora")
    for layer in _encoder_layers(sam):
        attn = layer.attn
        dim = attn.qkv.in_features
        attn.lora_q_a, attn.lora_q_b = _new_lora_pair(dim, rank, dim, **_like(attn))
        attn.lora_v_a, attn.lora_v_b = _new_lora_pair(dim, rank, dim, **_like(attn))
        attn.qkv.register_forward_hook(partial(_qkv_lora_hook, attn, scale))
    for parent, name in _decoder_attentions(sam):
        attn = getattr(parent, name)
        attn.lora_q_a, attn.lora_q_b = _new_lora_pair(attn.q_proj.in_features, rank, attn.q_proj.out_features,
                                                      **_like(attn))
        attn.lora_v_a, attn.lora_v_b = _new_lora_pair(attn.v_proj.in_features, rank, attn.v_proj.out_features,
                                                      **_like(attn))
        attn.q_proj.register_forward_hook(partial(_proj_lora_hook, attn, "q", scale))
        attn.v_proj.register_forward_hook(partial(_proj_lora_hook, attn, "v", scale))
    return _set_trainable(sam, _fragment_rule(PEFT_PARAMETER_NAMES["lora"]))


# ---------------------------------------------------------------------------------------
# MLP adapter: a scaled bottleneck beside the MLP, fed the pre-norm2 residual stream

class MlpAdapter(nn.Module):
    """``scale · up(ReLU(down(x)))``, no residual inside; the reference's ``Adapter`` with
    ``adapter_scalar=0.1`` (``adapter.py:11-50``)."""

    def __init__(self, dim: int, width: int, scale: float, **like: Any) -> None:
        super().__init__()
        self.down_proj = nn.Linear(dim, width, **like)
        self.up_proj = nn.Linear(width, dim, **like)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)
        self._pending: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_proj(F.relu(self.down_proj(x))) * self.scale


def _adapter_read_hook(adapter: MlpAdapter, module: nn.Module, args: tuple) -> None:
    """Pre-hook on ``layer_norm2``: its input is the residual stream the reference's adapter
    reads; the adapter's output waits for the MLP."""
    adapter._pending = adapter(args[0])


def _adapter_add_hook(adapter: MlpAdapter, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Hook on ``mlp``: the layer then adds ``mlp_out + adapter_out`` to its residual, as in
    the reference (encoder ``x + mlp(norm2(x)) + a(x)``; decoder ``norm2(q) + mlp + a(q)``)."""
    pending, adapter._pending = adapter._pending, None
    if pending is None:
        raise RuntimeError("MLP adapter: the MLP ran without layer_norm2 before it")
    return output + pending


def _add_mlp_adapter(layer: nn.Module, width: int, scale: float) -> None:
    dim = layer.layer_norm2.normalized_shape[0]
    layer.mlp_adapter = MlpAdapter(dim, width, scale, **_like(layer.mlp))
    layer.layer_norm2.register_forward_pre_hook(partial(_adapter_read_hook, layer.mlp_adapter))
    layer.mlp.register_forward_hook(partial(_adapter_add_hook, layer.mlp_adapter))


def apply_mlp_adapter(sam: nn.Module, *, width: int = 200, scale: float = 0.1) -> list[str]:
    """The reference's MLP adapter in every encoder block and both decoder two-way blocks
    (not the final attention); returns the trainable names."""
    _claim(sam, "mlp-adapter")
    for layer in _encoder_layers(sam):
        _add_mlp_adapter(layer, width, scale)
    for layer in sam.mask_decoder.transformer.layers:
        _add_mlp_adapter(layer, width, scale)
    return _set_trainable(sam, _fragment_rule(PEFT_PARAMETER_NAMES["mlp-adapter"]))


# ---------------------------------------------------------------------------------------
# Prompt and prefix tuning: extra key/value tokens in a joint softmax

class ExtraTokenVisionAttention(SamVisionAttention):
    """SAM's encoder attention with learned extra key/value tokens that every window (or the
    whole grid, for a global block) attends to in the same softmax as its image keys; the
    decomposed relative-position bias applies to the image keys only.

    Built from a stock ``SamVisionAttention`` whose weights it adopts (same objects, same
    names), so loading and counting see the original module plus the tokens.
    ``nn.Module.__init__`` instead of the parent's: the parent would build fresh weights.
    """

    def __init__(self, base: SamVisionAttention) -> None:
        nn.Module.__init__(self)
        self.num_attention_heads = base.num_attention_heads
        self.scale = base.scale
        self.dropout = base.dropout
        self.qkv = base.qkv
        self.proj = base.proj
        self.use_rel_pos = base.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = base.rel_pos_h
            self.rel_pos_w = base.rel_pos_w
        self.train(base.training)

    def extra_key_values(self, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows, heads, L, head_dim) keys and values of the extra tokens."""
        raise NotImplementedError

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length, _ = tokens.shape
        return tokens.reshape(n, length, self.num_attention_heads, -1).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool | None = None):
        batch, height, width, _ = hidden_states.shape
        heads = self.num_attention_heads
        qkv = self.qkv(hidden_states).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)                       # (B, heads, HW, head_dim)
        extra_k, extra_v = self.extra_key_values(batch)
        key = torch.cat([key, extra_k.to(key.dtype)], dim=2)
        value = torch.cat([value, extra_v.to(value.dtype)], dim=2)
        bias = None
        if self.use_rel_pos:
            rel = self.get_decomposed_rel_pos(query.reshape(batch * heads, height * width, -1), self.rel_pos_h,
                                              self.rel_pos_w, (height, width), (height, width))
            rel = rel.reshape(batch, heads, height * width, height * width)
            bias = F.pad(rel, (0, extra_k.shape[2])).to(query.dtype)   # image keys only
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=self.scale,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.reshape(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out), None


class PromptVisionAttention(ExtraTokenVisionAttention):
    """Prompt tuning in the encoder: the tokens pass through this block's ``qkv`` (with its
    bias, without LayerNorm) and only their keys and values are used."""

    def __init__(self, base: SamVisionAttention, tokens: int, dropout: float) -> None:
        super().__init__(base)
        dim = base.qkv.in_features
        self.deep_prompt_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(base)), dim))
        self.prompt_dropout = nn.Dropout(dropout)

    def extra_key_values(self, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.qkv.in_features
        weight, bias = self.qkv.weight[dim:], None if self.qkv.bias is None else self.qkv.bias[dim:]
        tokens = self.deep_prompt_embeddings
        if self.training and self.prompt_dropout.p > 0:
            # the reference drops out each window's copy independently (image_encoder.py:262)
            kv = F.linear(self.prompt_dropout(tokens.expand(windows, -1, -1)), weight, bias)
        else:
            kv = F.linear(tokens, weight, bias).expand(windows, -1, -1)
        k, v = kv.chunk(2, dim=-1)
        return self._heads(k), self._heads(v)


class PrefixVisionAttention(ExtraTokenVisionAttention):
    """Prefix tuning in the encoder: key and value tokens appended after the projection."""

    def __init__(self, base: SamVisionAttention, tokens: int) -> None:
        super().__init__(base)
        dim = base.qkv.in_features
        self.prefix_key_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(base)), dim))
        self.prefix_value_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(base)), dim))

    def extra_key_values(self, windows: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self._heads(self.prefix_key_embeddings.expand(windows, -1, -1)),
                self._heads(self.prefix_value_embeddings.expand(windows, -1, -1)))


def _attention_inputs(args: tuple, kwargs: dict) -> dict[str, Any]:
    """``SamAttention.forward(query, key, value, attention_similarity=None)``'s arguments by name."""
    named = dict(zip(("query", "key", "value", "attention_similarity"), args))
    named.update(kwargs)
    return named


def _append_tokens_hook(kind: str, attn: SamAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Pre-hook on a decoder ``SamAttention``: append the prompt (or prefix) tokens to its
    key and value *inputs*, so they go through ``k_proj``/``v_proj``."""
    named = _attention_inputs(args, kwargs)
    key, value = named["key"], named["value"]
    lead = key.shape[:-2]                                       # (batch, point_batch)
    if kind == "prompt":
        tokens = attn.deep_prompt_embeddings.reshape(-1, key.shape[-1])
        k_tokens = attn.prompt_dropout(tokens.expand(*lead, -1, -1))   # two draws, as the
        v_tokens = attn.prompt_dropout(tokens.expand(*lead, -1, -1))   # reference (transformer.py:227-228)
    else:
        k_tokens = attn.prefix_key_embeddings.reshape(-1, key.shape[-1]).expand(*lead, -1, -1)
        v_tokens = attn.prefix_value_embeddings.reshape(-1, value.shape[-1]).expand(*lead, -1, -1)
    named["key"] = torch.cat([key, k_tokens.to(key.dtype)], dim=-2)
    named["value"] = torch.cat([value, v_tokens.to(value.dtype)], dim=-2)
    similarity = named.get("attention_similarity")
    if similarity is not None:                                   # extra keys: no similarity bias
        named["attention_similarity"] = F.pad(similarity, (0, k_tokens.shape[-2]))
    return (), named


def apply_prompt(sam: nn.Module, *, tokens: int = 400, dropout: float = 0.1) -> list[str]:
    """The reference's prompt tuning in every encoder and decoder attention; returns the
    trainable names (the tokens only: the prompt encoder stays frozen)."""
    _claim(sam, "prompt")
    for layer in _encoder_layers(sam):
        layer.attn = PromptVisionAttention(layer.attn, tokens, dropout)
    for parent, name in _decoder_attentions(sam):
        attn = getattr(parent, name)
        dim = attn.k_proj.in_features
        attn.deep_prompt_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(attn)), dim))
        attn.prompt_dropout = nn.Dropout(dropout)
        attn.register_forward_pre_hook(partial(_append_tokens_hook, "prompt"), with_kwargs=True)
    return _set_trainable(sam, _fragment_rule(PEFT_PARAMETER_NAMES["prompt"]))


def apply_prefix(sam: nn.Module, *, tokens: int = 200) -> list[str]:
    """The reference's prefix tuning in every encoder and decoder attention; returns the
    trainable names."""
    _claim(sam, "prefix")
    for layer in _encoder_layers(sam):
        layer.attn = PrefixVisionAttention(layer.attn, tokens)
    for parent, name in _decoder_attentions(sam):
        attn = getattr(parent, name)
        dim = attn.k_proj.in_features
        attn.prefix_key_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(attn)), dim))
        attn.prefix_value_embeddings = nn.Parameter(_token_init(torch.empty(1, tokens, dim, **_like(attn)), dim))
        attn.register_forward_pre_hook(partial(_append_tokens_hook, "prefix"), with_kwargs=True)
    return _set_trainable(sam, _fragment_rule(PEFT_PARAMETER_NAMES["prefix"]))


# ---------------------------------------------------------------------------------------
# No added modules: linear probing and full fine-tuning

def apply_linear_probing(sam: nn.Module) -> list[str]:
    """Train names containing ``patch_embed`` or ``pos_embed`` only (``utils.py:53-57``):
    SAM's patch embedding and absolute position embedding; no head, decoder frozen."""
    _claim(sam, "linear-probing")
    return _set_trainable(sam, _fragment_rule(("patch_embed", "pos_embed")))


def apply_full(sam: nn.Module) -> list[str]:
    """Train everything but the prompt encoder, the patch embedding included (``utils.py:51-52``)."""
    _claim(sam, "full")
    return _set_trainable(sam, lambda name: True)


# ---------------------------------------------------------------------------------------
# Registry

@dataclass(frozen=True)
class ReferenceStrategy:
    """One reference strategy: how to apply it, its settings, and its ViT-B trainable count
    without the projector (``manifest.json`` → ``parameter_counts.vit_b_models``)."""

    name: str
    apply: Callable[..., list[str]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    vit_b_trainable: int = 0
    reference: str = ""


REFERENCE_STRATEGIES: dict[str, ReferenceStrategy] = {s.name: s for s in (
    ReferenceStrategy("lora", apply_lora, {"rank": 100, "scale": 1.0}, 4_275_200,
                      "models/sam_lora; conf/global_settings.py:31 (LORA_R)"),
    ReferenceStrategy("mlp-adapter", apply_mlp_adapter, {"width": 200, "scale": 0.1}, 3_903_728,
                      "models/sam_mlp_adapter; conf/global_settings.py:32 (ADAPTER_R)"),
    ReferenceStrategy("prompt", apply_prompt, {"tokens": 400, "dropout": 0.1}, 4_403_200,
                      "models/sam_prompt; conf/global_settings.py:33 (PROMPT_L)"),
    ReferenceStrategy("prefix", apply_prefix, {"tokens": 200}, 4_403_200,
                      "models/sam_prefix; conf/global_settings.py:34 (PREFIX_L)"),
    ReferenceStrategy("linear-probing", apply_linear_probing, {}, 3_736_320, "utils.py:53-57"),
    ReferenceStrategy("full", apply_full, {}, 93_729_252, "utils.py:51-52"),
)}


def apply_reference_strategy(sam: nn.Module, name: str, **overrides: Any) -> list[str]:
    """Apply reference strategy ``name`` with its defaults, any of them overridden."""
    try:
        strategy = REFERENCE_STRATEGIES[name]
    except KeyError:
        raise AimsError(f"unknown reference strategy {name!r}; choose one of "
                        f"{', '.join(REFERENCE_STRATEGIES)}") from None
    unknown = set(overrides) - set(strategy.defaults)
    if unknown:
        raise AimsError(f"reference strategy {name!r} has no setting {', '.join(sorted(unknown))}; "
                        f"its settings: {', '.join(strategy.defaults) or 'none'}")
    return strategy.apply(sam, **{**strategy.defaults, **overrides})


# ---------------------------------------------------------------------------------------
# Reference state dicts (Meta names + the reference's PEFT names) → this module's names

_ENC = r"image_encoder\.blocks\.(?P<i>\d+)"
_DEC_ATTN = (r"mask_decoder\.transformer\.(?P<a>layers\.\d+\.(?:self_attn|cross_attn_token_to_image"
             r"|cross_attn_image_to_token)|final_attn_token_to_image)")
_PEFT_RULES = [
    (rf"{_ENC}\.attn\.(?P<p>lora_[qv]_[ab]\.weight|deep_prompt_embeddings|prefix_(?:key|value)_embeddings)",
     r"vision_encoder.layers.\g<i>.attn.\g<p>"),
    (rf"{_ENC}\.Adapter_mlp\.(?P<p>(?:down|up)_proj\.(?:weight|bias))",
     r"vision_encoder.layers.\g<i>.mlp_adapter.\g<p>"),
    (rf"{_DEC_ATTN}\.(?P<p>lora_[qv]_[ab]\.weight|deep_prompt_embeddings|prefix_(?:key|value)_embeddings)",
     r"mask_decoder.transformer.\g<a>.\g<p>"),
    (r"mask_decoder\.transformer\.layers\.(?P<i>\d+)\.Adapter_mlp\.(?P<p>(?:down|up)_proj\.(?:weight|bias))",
     r"mask_decoder.transformer.layers.\g<i>.mlp_adapter.\g<p>"),
]


def reference_peft_renames() -> list[tuple[str, str]]:
    """(pattern, replacement) for the reference's PEFT parameters; the SAM part goes through
    :func:`aims.baselines.sam_loading.meta_renames`."""
    return list(_PEFT_RULES)


def rename_reference_state_dict(state: Mapping[str, torch.Tensor], *, iou_head_depth: int = 3,
                                source: str = "reference state dict") -> dict[str, torch.Tensor]:
    """A reference model's state dict (Meta's SAM names plus ``lora_*``, ``Adapter_mlp``,
    ``deep_prompt_embeddings``, ``prefix_*``) → ``SamModel`` names with this module's PEFT
    parameters. Projector keys (``image_encoder.projector.*``) are not SAM's: drop them first.
    Any key no rule claims is an :class:`AimsError` naming it."""
    rules = [(re.compile(p), r) for p, r in _PEFT_RULES]
    peft: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in rules:
            if pattern.fullmatch(key):
                peft[pattern.sub(repl, key)] = value
                break
        else:
            rest[key] = value
    return {**rename_meta_state_dict(rest, iou_head_depth=iou_head_depth, source=source), **peft}


__all__ = ["ExtraTokenVisionAttention", "MlpAdapter", "PEFT_PARAMETER_NAMES", "PrefixVisionAttention",
           "PromptVisionAttention", "REFERENCE_STRATEGIES", "ReferenceStrategy", "apply_full", "apply_linear_probing",
           "apply_lora", "apply_mlp_adapter", "apply_prefix", "apply_prompt", "apply_reference_strategy",
           "reference_peft_renames", "rename_reference_state_dict"]
