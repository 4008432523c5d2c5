"""Trainable parameters at ViT-B, on the meta device (no memory, no weights): the reference
strategies give Table 4's exact counts, ours (renamed) theirs, and the projector adds its
own on top."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from aims.baselines.model import ModelSpec, build_model  # noqa: E402
from aims.baselines.projectors import count_parameters as projector_parameters  # noqa: E402
from aims.baselines.strategies import count_parameters  # noqa: E402

PAPER_M = {"lora": 4.3, "mlp-adapter": 3.9, "prompt": 4.4, "full": 93.7}
#: without the projector: the reference's (manifest.json → vit_b_models) and ours
EXACT = {"lora": 4_275_200, "mlp-adapter": 3_903_728, "prompt": 4_403_200, "prefix": 4_403_200,
         "linear-probing": 3_736_320, "full": 93_729_252, "scratch": 93_729_252,
         "lora-fused-qkv": 4_275_200, "mlp-adapter-post-ln": 3_903_728, "prompt-gated": 4_403_219}
#: SAM ViT-B as transformers holds it: Meta's 93,735,472 + the 256-value Fourier matrix
#: Meta keeps as a buffer (shared_image_embedding.positional_embedding)
SAM_TOTAL = 93_735_472 + 256


@pytest.mark.parametrize("strategy", list(EXACT))
@pytest.mark.parametrize("adapter", ["simcmf", "aims-conv3"])
def test_vit_b_trainable_parameters(strategy, adapter):
    model = build_model(ModelSpec("vit-b", adapter, strategy, in_channels=1), device="meta")
    trainable, total = count_parameters(model)
    projector = projector_parameters(adapter, 1)
    assert projector == {"simcmf": 197_468, "aims-conv3": 2_371}[adapter]
    assert trainable == EXACT[strategy] + projector
    added = 0 if strategy in ("full", "scratch", "linear-probing") else EXACT[strategy]
    assert total == SAM_TOTAL + projector + added
    if strategy in PAPER_M:
        assert abs(EXACT[strategy] / 1e6 - PAPER_M[strategy]) <= 0.05 * PAPER_M[strategy]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    patch = {n for n in names if n.startswith("sam.vision_encoder.patch_embed.projection")}
    assert bool(patch) == (strategy in ("full", "scratch", "linear-probing"))
    assert any(n.startswith("sam.vision_encoder.patch_embed.adapter") for n in names)
    assert not any(n.startswith(("sam.prompt_encoder", "sam.shared_image_embedding")) for n in names)


def test_lora_fused_qkv_is_ours_and_adapts_the_fused_projection():
    model = build_model(ModelSpec("vit-b", "simcmf", "lora-fused-qkv", in_channels=9), device="meta")
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert len([w for w in wrapped if ".attn.qkv" in w]) == 12
    assert len([w for w in wrapped if "mask_decoder" in w]) == 14    # q and v of 7 attention layers
    assert not any("patch_embed" in w or "neck" in w or ".proj" == w[-5:] for w in wrapped)


def test_reference_lora_adapts_q_and_v_separately():
    model = build_model(ModelSpec("vit-b", "simcmf", "lora", in_channels=9), device="meta")
    names = [n for n, _ in model.named_parameters()]
    assert not any(".lora_A." in n for n in names)                    # no peft
    assert len([n for n in names if n.endswith("attn.lora_q_a.weight") and "vision_encoder" in n]) == 12
    assert len([n for n in names if n.endswith("lora_v_b.weight") and "mask_decoder" in n]) == 7
