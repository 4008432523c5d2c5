"""The reference's fine-tuning strategies on transformers' SamModel, proven block by block
against the reference's own forward (``tests/data/reference/full_sam_*_simcmf_c1``;
docs/reference-fixtures.md), plus the ViT-B trainable counts of the paper's Table 4.

Each fixture is a tiny SAM (ViT width 16, 2 heads, 2 blocks — block 0 windowed, window 3
over 4×4 tokens, so padding happens; block 1 global with relative positions — 64² input,
patch 16, decoder width 16) with seeded random weights, every PEFT weight non-zero, run on one
image and one click. We build the same SamModel, apply the strategy, load the stored weights
through the Meta→HF renaming plus the PEFT names, feed each captured input and compare.
The full forward runs twice: from the reference projector's captured output (this module
alone), and from the image through ``aims.baselines.projectors``' simcmf projector.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402

from aims.baselines.reference_peft import (  # noqa: E402
    PEFT_PARAMETER_NAMES, REFERENCE_STRATEGIES, apply_lora, apply_reference_strategy,
    rename_reference_state_dict)
from aims.errors import AimsError  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "reference"
MANIFEST = json.loads((REFERENCE / "manifest.json").read_text())

#: fixture variant → our strategy (naive: the architecture full fine-tuning and linear probing train)
VARIANTS = {"naive": None, "lora": "lora", "mlp_adapter": "mlp-adapter", "prompt": "prompt", "prefix": "prefix"}
PEFT_VARIANTS = [v for v in VARIANTS if VARIANTS[v]]
DECODER_ATTENTIONS = ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
BLOCK_TOL = dict(rtol=1e-5, atol=1e-5)     # docs/reference-fixtures.md: module level
FULL_TOL = dict(rtol=0.0, atol=1e-4)       # docs/reference-fixtures.md: full forward
#: Meta keeps the prompt encoder's 2×128 Fourier matrix as a buffer, transformers as a parameter
META_FOURIER_BUFFER = 256


class Fixture:
    """One ``full_sam_*`` fixture: tensors by key, with the manifest's aliases resolved."""

    def __init__(self, variant: str) -> None:
        self.name = f"full_sam_{variant}_simcmf_c1"
        self.entry = MANIFEST["fixtures"][self.name]
        self.tensors = load_file(REFERENCE / f"{self.name}.safetensors")

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[self.entry["aliases"].get(key, key)]

    def sam_state(self) -> dict[str, torch.Tensor]:
        """The reference's SAM + PEFT weights under its own names (projector excluded)."""
        return {k[len("param."):]: v for k, v in self.tensors.items()
                if k.startswith("param.") and not k.startswith("param.image_encoder.projector.")}


def tiny_config(c: dict):
    """The SamConfig of a fixture's ``constructor`` (Meta's LayerNorm eps: 1e-6 in the
    encoder and prompt encoder, 1e-5 in the two-way transformer)."""
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(hidden_size=c["embed_dim"], output_channels=c["out_chans"],
                             num_hidden_layers=c["depth"], num_attention_heads=c["num_heads"],
                             image_size=c["img_size"], patch_size=c["patch_size"], window_size=c["window_size"],
                             global_attn_indexes=c["global_attn_indexes"], mlp_ratio=float(c["mlp_ratio"]),
                             qkv_bias=c["qkv_bias"], use_rel_pos=c["use_rel_pos"], num_pos_feats=c["out_chans"] // 2)
    prompt = SamPromptEncoderConfig(hidden_size=c["out_chans"], image_size=c["img_size"],
                                    patch_size=c["patch_size"], mask_input_channels=c["mask_in_chans"])
    decoder = SamMaskDecoderConfig(hidden_size=c["out_chans"], mlp_dim=c["decoder_mlp_dim"],
                                   num_hidden_layers=c["decoder_depth"], num_attention_heads=c["decoder_heads"],
                                   iou_head_depth=c["iou_head_depth"], iou_head_hidden_dim=c["iou_head_hidden_dim"],
                                   num_multimask_outputs=c["num_multimask_outputs"], layer_norm_eps=1e-5)
    config = SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                       mask_decoder_config=decoder.to_dict())
    config._attn_implementation = "sdpa"
    return config


def build(variant: str, *, load: bool = True):
    """(our SamModel with the variant's strategy and the fixture's weights, the fixture)."""
    from transformers import SamModel

    fx = Fixture(variant)
    torch.manual_seed(0)
    sam = SamModel(tiny_config(fx.entry["constructor"]))
    if VARIANTS[variant]:
        apply_reference_strategy(sam, VARIANTS[variant])
    if load:
        sam.load_state_dict(rename_reference_state_dict(fx.sam_state()), strict=True)
    return sam.eval(), fx


class CapturedEmbedding(nn.Module):
    """Stands in for the patch embedding: returns the reference projector's captured output."""

    def __init__(self, embedding: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.embedding


def full_forward(sam, fx: Fixture):
    sam.vision_encoder.patch_embed = CapturedEmbedding(fx["capture.image_encoder.projector.out.0"])
    with torch.no_grad():
        out = sam(pixel_values=torch.zeros(1, 3, 64, 64), input_points=fx["input.point_coords"][:, None],
                  input_labels=fx["input.point_labels"][:, None].long(), multimask_output=False)
    return out.pred_masks[:, 0], out.iou_scores[:, 0]


# ---------------------------------------------------------------------------------------
# Loading

@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_weights_load_strictly(variant):
    sam, fx = build(variant, load=False)
    renamed = rename_reference_state_dict(fx.sam_state())
    own = sam.state_dict()
    assert set(renamed) == set(own)
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(own[k].shape) for k in renamed}
    peft = [k for k in renamed if any(f in k for f in PEFT_PARAMETER_NAMES.get(VARIANTS[variant] or "", ()))]
    assert len(peft) == len([k for k in fx.sam_state()
                             if any(m in k for m in ("lora", "Adapter", "deep_prompt", "prefix"))])


def test_unknown_reference_key_is_named():
    with pytest.raises(AimsError, match="image_encoder.blocks.0.attn.lora_k_a.weight"):
        rename_reference_state_dict({"image_encoder.blocks.0.attn.lora_k_a.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------------------
# Block by block

@pytest.mark.parametrize("block", [0, 1])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_block_matches_reference(variant, block):
    sam, fx = build(variant)
    layer = sam.vision_encoder.layers[block]
    cap = f"capture.image_encoder.blocks.{block}"
    with torch.no_grad():
        attn_out = layer.attn(fx[f"{cap}.attn.in.0"])[0]
        block_out = layer(fx[f"{cap}.in.0"])
    assert fx[f"{cap}.attn.in.0"].shape[0] == (4 if block == 0 else 1)     # 4 padded 3×3 windows, or global
    torch.testing.assert_close(attn_out, fx[f"{cap}.attn.out"], **BLOCK_TOL)
    torch.testing.assert_close(block_out, fx[f"{cap}.out"], **BLOCK_TOL)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decoder_matches_reference(variant):
    sam, fx = build(variant)
    tr = sam.mask_decoder.transformer
    with torch.no_grad():
        for i, layer in enumerate(tr.layers):
            cap = f"capture.mask_decoder.transformer.layers.{i}"
            for name in DECODER_ATTENTIONS:
                q, k, v = (fx[f"{cap}.{name}.in.{x}"][:, None] for x in "qkv")      # + point-batch axis
                out = getattr(layer, name)(query=q, key=k, value=v)[0][:, 0]
                torch.testing.assert_close(out, fx[f"{cap}.{name}.out"], **BLOCK_TOL, msg=f"layer {i} {name}")
            queries, keys, _ = layer(queries=fx[f"{cap}.in.queries"][:, None], keys=fx[f"{cap}.in.keys"][:, None],
                                     query_point_embedding=fx[f"{cap}.in.query_pe"][:, None],
                                     key_point_embedding=fx[f"{cap}.in.key_pe"][:, None], attention_similarity=None)
            torch.testing.assert_close(queries[:, 0], fx[f"{cap}.out.0"], **BLOCK_TOL)
            torch.testing.assert_close(keys[:, 0], fx[f"{cap}.out.1"], **BLOCK_TOL)
        cap = "capture.mask_decoder.transformer.final_attn_token_to_image"
        q, k, v = (fx[f"{cap}.in.{x}"][:, None] for x in "qkv")
        torch.testing.assert_close(tr.final_attn_token_to_image(query=q, key=k, value=v)[0][:, 0], fx[f"{cap}.out"],
                                   **BLOCK_TOL)
        masks, iou = sam.mask_decoder(
            image_embeddings=fx["capture.mask_decoder.in.image_embeddings"],
            image_positional_embeddings=fx["capture.mask_decoder.in.image_pe"],
            sparse_prompt_embeddings=fx["capture.mask_decoder.in.sparse_prompt_embeddings"][:, None],
            dense_prompt_embeddings=fx["capture.mask_decoder.in.dense_prompt_embeddings"], multimask_output=False)
    torch.testing.assert_close(masks[:, 0], fx["output.low_res_logits"], **BLOCK_TOL)
    torch.testing.assert_close(iou[:, 0], fx["output.iou_pred"], **BLOCK_TOL)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_full_forward_from_projector_output_matches_reference(variant):
    sam, fx = build(variant)
    logits, iou = full_forward(sam, fx)
    with torch.no_grad():
        neck = sam.vision_encoder(torch.zeros(1, 3, 64, 64)).last_hidden_state
    torch.testing.assert_close(neck, fx["capture.image_encoder.neck.out"], **BLOCK_TOL)
    torch.testing.assert_close(logits, fx["output.low_res_logits"], **FULL_TOL)
    torch.testing.assert_close(iou, fx["output.iou_pred"], **FULL_TOL)


def attach_reference_projector(sam, fx: Fixture) -> None:
    """The simcmf projector (``aims.baselines.projectors``) with the fixture's weights."""
    projectors = pytest.importorskip("aims.baselines.projectors")
    projectors.attach_projector(sam, fx.entry["constructor"]["proj_type"], fx.entry["constructor"]["in_chans"])
    prefix = "param.image_encoder.projector."
    state = {k[len(prefix):]: v for k, v in fx.tensors.items() if k.startswith(prefix)}
    ours = projectors.reference_state_dict_to_ours(fx.entry["constructor"]["proj_type"],
                                                   fx.entry["constructor"]["in_chans"], state)
    sam.vision_encoder.patch_embed.adapter.load_state_dict(ours, strict=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_full_forward_from_the_image_matches_reference(variant):
    """The whole reference forward: C = 1 image → simcmf projector → encoder with the
    strategy → prompt encoder → decoder."""
    sam, fx = build(variant)
    attach_reference_projector(sam, fx)
    with torch.no_grad():
        out = sam.eval()(pixel_values=fx["input.image"], input_points=fx["input.point_coords"][:, None],
                         input_labels=fx["input.point_labels"][:, None].long(), multimask_output=False)
    torch.testing.assert_close(out.pred_masks[:, 0], fx["output.low_res_logits"], **FULL_TOL)
    torch.testing.assert_close(out.iou_scores[:, 0], fx["output.iou_pred"], **FULL_TOL)


@pytest.mark.parametrize("variant", PEFT_VARIANTS)
def test_fixture_exercises_the_peft_weights(variant):
    """Zeroing the strategy's weights moves the output far from the fixture: the matches
    above depend on them."""
    sam, fx = build(variant)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if any(f in name for f in PEFT_PARAMETER_NAMES[VARIANTS[variant]]):
                p.zero_()
        block = sam.vision_encoder.layers[1](fx["capture.image_encoder.blocks.1.in.0"])
    logits, iou = full_forward(sam, fx)
    assert (block - fx["capture.image_encoder.blocks.1.out"]).abs().max() > 0.05
    assert (logits - fx["output.low_res_logits"]).abs().max() > 10 * FULL_TOL["atol"]
    assert (iou - fx["output.iou_pred"]).abs().max() > 0.01


def test_lora_updates_q_and_v_separately_and_leaves_k():
    sam, fx = build("lora")
    attn = sam.vision_encoder.layers[1].attn
    x = fx["capture.image_encoder.blocks.1.attn.in.0"]
    with torch.no_grad():
        patched = attn.qkv(x)
        plain = nn.functional.linear(x, attn.qkv.weight, attn.qkv.bias)
    q, k, v = (patched - plain).chunk(3, dim=-1)
    assert k.abs().max() == 0 and q.abs().max() > 1e-3 and v.abs().max() > 1e-3
    assert attn.lora_q_a.weight is not attn.lora_v_a.weight
    assert not torch.equal(attn.lora_q_a.weight, attn.lora_v_a.weight)


# ---------------------------------------------------------------------------------------
# Initialisation and training behaviour

@pytest.mark.parametrize("variant", PEFT_VARIANTS)
def test_initialisation_follows_the_reference(variant):
    """The PEFT weights the reference zero-initialises are zero here, the others are not."""
    sam, fx = build(variant, load=False)
    zeros = set(rename_reference_state_dict(
        {k: fx.sam_state()[k] for k in fx.entry["zero_or_pretrained_init"] if k in fx.sam_state()}))
    own = sam.state_dict()
    peft = [k for k in own if any(f in k for f in PEFT_PARAMETER_NAMES[VARIANTS[variant]])]
    assert peft
    for k in peft:
        assert bool(torch.all(own[k] == 0)) == (k in zeros), k


@pytest.mark.parametrize("strategy", ["lora", "mlp-adapter"])
def test_zero_initialised_strategies_start_as_the_plain_model(strategy):
    from transformers import SamModel

    fx = Fixture("naive")
    plain = SamModel(tiny_config(fx.entry["constructor"]))
    plain.load_state_dict(rename_reference_state_dict(fx.sam_state()), strict=True)
    patched = copy.deepcopy(plain)
    apply_reference_strategy(patched, strategy)
    x = fx["capture.image_encoder.blocks.0.in.0"]
    with torch.no_grad():
        for a, b in zip(plain.vision_encoder.layers, patched.vision_encoder.layers):
            torch.testing.assert_close(b(x), a(x), rtol=0, atol=1e-6)
            x = a(x)


@pytest.mark.parametrize("variant", PEFT_VARIANTS)
def test_only_the_strategy_weights_receive_gradients(variant):
    sam, fx = build(variant)
    sam.train()
    sam.vision_encoder.patch_embed = CapturedEmbedding(fx["capture.image_encoder.projector.out.0"])
    out = sam(pixel_values=torch.zeros(1, 3, 64, 64), input_points=fx["input.point_coords"][:, None],
              input_labels=fx["input.point_labels"][:, None].long(), multimask_output=False)
    out.pred_masks.square().mean().backward()
    for name, p in sam.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_prompt_dropout_only_in_training():
    sam, fx = build("prompt")
    layer = sam.vision_encoder.layers[0]
    x = fx["capture.image_encoder.blocks.0.in.0"]
    with torch.no_grad():
        torch.testing.assert_close(layer(x), fx["capture.image_encoder.blocks.0.out"], **BLOCK_TOL)
        layer.train()
        torch.manual_seed(1)
        first = layer(x)
        torch.manual_seed(2)
        second = layer(x)
    assert (first - second).abs().max() > 1e-4


def test_prefix_tokens_skip_the_qkv_projection_and_prompt_tokens_do_not():
    """Prefix: key tokens are used as keys directly; prompt: they go through qkv (bias too)."""
    sam, _ = build("prefix")
    attn = sam.vision_encoder.layers[1].attn
    k, _ = attn.extra_key_values(1)
    torch.testing.assert_close(k.transpose(1, 2).reshape(1, 200, -1), attn.prefix_key_embeddings)
    sam, _ = build("prompt")
    attn = sam.vision_encoder.layers[1].attn
    k, v = attn.extra_key_values(1)
    dim = attn.qkv.in_features
    expected = nn.functional.linear(attn.deep_prompt_embeddings, attn.qkv.weight, attn.qkv.bias)
    torch.testing.assert_close(k.transpose(1, 2).reshape(1, 400, -1), expected[..., dim:2 * dim])
    torch.testing.assert_close(v.transpose(1, 2).reshape(1, 400, -1), expected[..., 2 * dim:])


# ---------------------------------------------------------------------------------------
# Trainable parameters: names at tiny size, counts at ViT-B (Table 4)

def test_linear_probing_trains_patch_and_position_embedding_only():
    sam, _ = build("naive", load=False)
    names = apply_reference_strategy(sam, "linear-probing")
    assert sorted(names) == ["vision_encoder.patch_embed.projection.bias",
                             "vision_encoder.patch_embed.projection.weight", "vision_encoder.pos_embed"]
    assert not any(p.requires_grad for p in sam.mask_decoder.parameters())


def test_linear_probing_also_trains_a_projector_under_patch_embed():
    """The reference's name rule reaches its projector; ours sits under ``patch_embed`` too."""
    sam, fx = build("naive", load=False)
    attach_reference_projector(sam, fx)
    names = apply_reference_strategy(sam, "linear-probing")
    adapter = [n for n, _ in sam.named_parameters() if n.startswith("vision_encoder.patch_embed.adapter.")]
    assert adapter and set(adapter) <= set(names)


def test_full_trains_the_patch_embedding_and_never_the_prompt_encoder():
    sam, _ = build("naive", load=False)
    names = set(apply_reference_strategy(sam, "full"))
    assert "vision_encoder.patch_embed.projection.weight" in names
    assert not any(n.startswith(("prompt_encoder.", "shared_image_embedding.")) for n in names)
    assert {n for n, _ in sam.named_parameters()} - names == {
        n for n, _ in sam.named_parameters() if n.startswith(("prompt_encoder.", "shared_image_embedding."))}


@pytest.fixture(scope="module")
def vit_b_meta():
    from transformers import SamModel

    from aims.baselines.sam_loading import sam_config

    with torch.device("meta"):
        return SamModel(sam_config("vit-b"))


REFERENCE_NET = {"lora": "sam_lora", "mlp-adapter": "sam_mlp_adapter", "prompt": "sam_prompt", "prefix": "sam_prefix",
                 "linear-probing": "sam_linear_probing", "full": "sam_full_finetune"}


@pytest.mark.parametrize("strategy", list(REFERENCE_STRATEGIES))
def test_vit_b_trainable_counts_match_the_reference(strategy, vit_b_meta):
    counts = MANIFEST["parameter_counts"]["vit_b_models"][f"{REFERENCE_NET[strategy]}|baseline_d|C=9"]
    sam = copy.deepcopy(vit_b_meta)
    apply_reference_strategy(sam, strategy)
    trainable = sum(p.numel() for p in sam.parameters() if p.requires_grad)
    total = sum(p.numel() for p in sam.parameters())
    assert trainable == counts["trainable_without_projector"] == REFERENCE_STRATEGIES[strategy].vit_b_trainable
    assert total == counts["total"] - counts["projector"] + META_FOURIER_BUFFER


def test_paper_table_4_rounding():
    table_4 = {"lora": 4.3, "mlp-adapter": 3.9, "prompt": 4.4, "full": 93.7}
    for name, millions in table_4.items():
        assert round(REFERENCE_STRATEGIES[name].vit_b_trainable / 1e6, 1) == millions


# ---------------------------------------------------------------------------------------
# Registry

def test_registry_settings_and_refusals():
    sam, _ = build("naive", load=False)
    assert REFERENCE_STRATEGIES["lora"].defaults == {"rank": 100, "scale": 1.0}
    assert REFERENCE_STRATEGIES["mlp-adapter"].defaults == {"width": 200, "scale": 0.1}
    assert REFERENCE_STRATEGIES["prompt"].defaults == {"tokens": 400, "dropout": 0.1}
    assert REFERENCE_STRATEGIES["prefix"].defaults == {"tokens": 200}
    with pytest.raises(AimsError, match="no setting"):
        apply_reference_strategy(sam, "lora", width=3)
    with pytest.raises(AimsError, match="unknown reference strategy"):
        apply_reference_strategy(sam, "adalora")
    apply_lora(sam, rank=4)
    assert sam.vision_encoder.layers[0].attn.lora_q_a.weight.shape == (4, 16)
    with pytest.raises(AimsError, match="already carries"):
        apply_reference_strategy(sam, "prompt")


@pytest.mark.parametrize("variant", PEFT_VARIANTS)
def test_a_deep_copy_runs_on_its_own_weights(variant):
    """Hooks travel with ``copy.deepcopy`` (EMA copies, accelerate) and read the copy's weights."""
    sam, fx = build(variant)
    twin = copy.deepcopy(sam)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if any(f in name for f in PEFT_PARAMETER_NAMES[VARIANTS[variant]]):
                p.zero_()
    original, _ = full_forward(sam, fx)
    copied, _ = full_forward(twin, fx)
    torch.testing.assert_close(original, fx["output.low_res_logits"], **FULL_TOL)
    assert (copied - original).abs().max() > 10 * FULL_TOL["atol"]
