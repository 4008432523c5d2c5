"""Every strategy and a spread of projectors build at tiny size, run forward and backward and
train exactly what they should; our renamed variants start as the plain model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from aims.baselines.choices import FIXED_ADAPTERS, RGBX_STRATEGIES, STRATEGIES  # noqa: E402
from aims.baselines.losses import dice_ce_loss  # noqa: E402
from aims.baselines.model import ModelSpec, build_model  # noqa: E402
from aims.baselines.projectors import FIXED_PROJECTORS  # noqa: E402

#: markers of the weights each parameter-efficient strategy adds
MARKERS = {"lora": ("lora_q_", "lora_v_"), "mlp-adapter": ("mlp_adapter",), "prompt": ("deep_prompt_embeddings",),
           "prefix": ("prefix_key_embeddings", "prefix_value_embeddings"), "linear-probing": ("patch_embed", "pos_embed"),
           "lora-fused-qkv": ("lora_A", "lora_B"), "mlp-adapter-post-ln": ("adapter_down", "adapter_up"),
           "prompt-gated": ("prompt_tokens", "prompt_gate")}
#: projectors at the tiny size (patch 8, width 32): every fixed one and one of each family
ADAPTERS = list(FIXED_ADAPTERS) + ["paper-n2-k3-d64", "preconvk3n2d64", "preattnp8n1d8"]
PROJECTION = "sam.vision_encoder.patch_embed.projection.weight"
#: the strategies that sit behind a projector (the RGB-X systems replace it: tests/test_rgbx_*.py)
PROJECTOR_STRATEGIES = [s for s in STRATEGIES if s not in RGBX_STRATEGIES]


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(c: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, 64, 64, generator=g)
    pts = torch.rand(2, 1, 1, 2, generator=g) * 64
    return x, pts, torch.ones(2, 1, 1, dtype=torch.long), (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float()


def _train_two_steps(adapter: str, strategy: str, c: int = 4):
    torch.manual_seed(0)
    model = build_model(ModelSpec("tiny", adapter, strategy, in_channels=c))
    x, pts, labels, target = _inputs(c)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):   # two steps: zero-initialised branches get gradients from step 2
        logits, iou = model(x, pts, labels)
        assert logits.shape == (2, 1, 1, 32, 32) and iou.shape == (2, 1, 1)
        loss = dice_ce_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    return model, trainable, changed


@pytest.mark.parametrize("strategy", PROJECTOR_STRATEGIES)
def test_strategy_trains_only_what_it_should(strategy):
    model, trainable, changed = _train_two_steps("paper-n2-k3-d64", strategy)
    assert changed, "no trainable weight moved"
    assert any(".patch_embed.adapter." in n for n in changed)         # the projector always trains
    assert not any(n.startswith(("sam.prompt_encoder", "sam.shared_image_embedding")) for n in trainable)
    assert (PROJECTION in trainable) == (strategy in ("full", "scratch", "linear-probing"))
    if strategy in MARKERS:
        assert all(any(m in n for m in MARKERS[strategy]) or ".patch_embed.adapter." in n for n in trainable), \
            sorted(trainable)[:5]
        assert any(any(m in n for m in MARKERS[strategy]) for n in changed)
    if strategy in ("full", "scratch"):
        assert "sam.mask_decoder.iou_prediction_head.proj_in.weight" in trainable
    else:
        assert not any(n.startswith("sam.mask_decoder.iou_prediction_head") for n in trainable)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_projector_trains_under_lora(adapter):
    model, trainable, changed = _train_two_steps(adapter, "lora")
    own = [n for n in trainable if ".patch_embed.adapter." in n]
    if adapter in ("zeroshot", "channels-to-batch"):
        assert not own                                                 # no parameters of their own
    else:
        assert own and any(n in changed for n in own)
    assert PROJECTION not in trainable


@pytest.mark.parametrize("strategy", ["lora-fused-qkv", "mlp-adapter-post-ln", "prompt-gated"])
def test_our_variants_have_no_effect_at_init(strategy):
    torch.manual_seed(0)
    base = build_model(ModelSpec("tiny", "aims-conv3", "full", in_channels=1))
    state = base.state_dict()
    torch.manual_seed(0)
    peft = build_model(ModelSpec("tiny", "aims-conv3", strategy, in_channels=1))
    own = peft.state_dict()
    # copy the base weights into the PEFT model under its (possibly wrapped) names
    for name in own:
        plain = name.replace(".base_layer", "").replace(".inner", "").replace(".mlp.mlp.", ".mlp.")
        if plain in state:
            own[name] = state[plain]
    peft.load_state_dict(own)
    x, pts, labels, _ = _inputs(1)
    with torch.no_grad():
        a, ia = base.eval()(x, pts, labels)
        b, ib = peft.eval()(x, pts, labels)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    torch.testing.assert_close(ib, ia, rtol=0, atol=1e-6)


def test_cli_choices_are_the_registries():
    """`aims baseline` takes its choices from the torch-free aims.baselines.choices and
    recipes; they must be exactly what the model modules use."""
    from aims.baselines import cli
    from aims.baselines.data import RESIZE_MODES
    from aims.baselines.predict import DTYPES
    from aims.baselines.recipes import RECIPES
    from aims.baselines.reference_peft import REFERENCE_STRATEGIES
    from aims.baselines.train import WEIGHTS

    choices = {enum.__name__: tuple(m.value for m in enum)
               for enum in (cli.Strategy, cli.RecipeName, cli.Resize, cli.Dtype, cli.Weights)}
    assert choices == {"Strategy": STRATEGIES, "RecipeName": tuple(RECIPES), "Resize": RESIZE_MODES,
                       "Dtype": DTYPES, "Weights": WEIGHTS}
    assert FIXED_ADAPTERS == FIXED_PROJECTORS
    assert set(REFERENCE_STRATEGIES) < set(STRATEGIES)
