"""Trainable parameters at ViT-B land within 10 % of the SimCMF paper's figures (models
built on the meta device: no memory, no weights)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from aims.baselines.model import ModelSpec, build_model  # noqa: E402
from aims.baselines.strategies import count_parameters  # noqa: E402

PAPER_M = {"lora": 4.3, "mlp-adapter": 3.9, "prompt": 4.4, "full": 93.7}
EXACT_STRATEGY = {"lora": 4_275_200, "mlp-adapter": 3_903_728, "prompt": 4_403_219}   # docstring arithmetic
SIMCMF_ADAPTER_1CH = 64 * 1 * 9 + 64 + 3 * 64 * 9 + 3


@pytest.mark.parametrize("strategy", list(PAPER_M))
def test_vit_b_trainable_parameters_match_paper(strategy):
    model = build_model(ModelSpec("vit-b", "simcmf", strategy, in_channels=1), device="meta")
    trainable, total = count_parameters(model)
    assert abs(trainable / 1e6 - PAPER_M[strategy]) <= 0.1 * PAPER_M[strategy], trainable
    assert 93.7e6 <= total - (0 if strategy == "full" else trainable - SIMCMF_ADAPTER_1CH) < 93.8e6
    if strategy in EXACT_STRATEGY:
        assert trainable == EXACT_STRATEGY[strategy] + SIMCMF_ADAPTER_1CH
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.startswith("sam.vision_encoder.patch_embed.projection") for n in names)
    assert any(n.startswith("sam.vision_encoder.patch_embed.adapter") for n in names)


def test_lora_targets_only_attention():
    model = build_model(ModelSpec("vit-b", "simcmf", "lora", in_channels=9), device="meta")
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert len([w for w in wrapped if ".attn.qkv" in w]) == 12
    assert len([w for w in wrapped if "mask_decoder" in w]) == 14    # q and v of 7 attention layers
    assert not any("patch_embed" in w or "neck" in w or ".proj" == w[-5:] for w in wrapped)
