"""Every adapter × strategy builds, runs forward and backward, starts as the pretrained
model (zero effect at init) and trains exactly what it should."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from aims.baselines.adapters import ADAPTERS  # noqa: E402
from aims.baselines.model import ModelSpec, build_model  # noqa: E402
from aims.baselines.strategies import STRATEGIES  # noqa: E402
from aims.baselines.train import dice_bce_loss  # noqa: E402

CHANNELS = {"zero-shot": 3}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: thread hand-offs cost more than they give (and CI has 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(c: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, 64, 64, generator=g)
    pts = torch.rand(2, 1, 1, 2, generator=g) * 64
    return x, pts, torch.ones(2, 1, 1, dtype=torch.long), (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_adapter_strategy_trains_only_what_it_should(adapter, strategy):
    c = CHANNELS.get(adapter, 4)
    torch.manual_seed(0)
    model = build_model(ModelSpec("tiny", adapter, strategy, in_channels=c))
    x, pts, labels, target = _inputs(c)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    proj = "sam.vision_encoder.patch_embed.projection.weight"
    if ADAPTERS[adapter].freeze_patch_embed:
        assert proj in frozen
    if strategy in ("lora", "mlp-adapter", "prompt"):
        assert all(("lora_" in n or "adapter_" in n or "prompt_" in n or ".patch_embed." in n) for n in trainable)
        assert not any(n.startswith("sam.mask_decoder.iou_prediction_head") for n in trainable)
    if strategy in ("full", "scratch"):
        assert "sam.mask_decoder.iou_prediction_head.proj_in.weight" in trainable
        assert not any(n.startswith("sam.prompt_encoder") for n in trainable)
    if adapter in ("patch-embed", "linear") and strategy != "full":
        assert proj in trainable

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):   # two steps: gated/zero-init branches get gradients from step 2
        logits, iou = model(x, pts, labels)
        assert logits.shape == (2, 1, 1, 32, 32) and iou.shape == (2, 1, 1)
        loss = dice_bce_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert changed, "no trainable weight moved"
    if adapter in ("simcmf", "linear", "linear-frozen"):
        assert any(".patch_embed.adapter." in n for n in changed)


@pytest.mark.parametrize("strategy", ["lora", "mlp-adapter", "prompt"])
def test_peft_strategies_have_no_effect_at_init(strategy):
    torch.manual_seed(0)
    base = build_model(ModelSpec("tiny", "simcmf", "full", in_channels=1))
    state = base.state_dict()
    torch.manual_seed(0)
    peft = build_model(ModelSpec("tiny", "simcmf", strategy, in_channels=1))
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
    """`aims baseline` takes its choices from the torch-free aims.baselines.choices; they
    must be exactly what the model modules use."""
    from aims.baselines import cli
    from aims.baselines.data import RESIZE_MODES
    from aims.baselines.predict import DTYPES
    from aims.baselines.train import WEIGHTS

    choices = {enum.__name__: tuple(m.value for m in enum)
               for enum in (cli.Strategy, cli.Adapter, cli.Resize, cli.Dtype, cli.Weights)}
    assert choices == {"Strategy": STRATEGIES, "Adapter": tuple(ADAPTERS), "Resize": RESIZE_MODES,
                       "Dtype": DTYPES, "Weights": WEIGHTS}
