"""GoPT on SAM (``aims.baselines.gopt``): layout, what trains, the straight-through grouping,
a tiny CPU training run through SAM's decoder, and the ViT-B counts on the meta device."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import SamModel  # noqa: E402

from aims.baselines import gopt  # noqa: E402
from aims.baselines.losses import DiceCELoss  # noqa: E402
from aims.baselines.model import ModelSpec, SimCMF  # noqa: E402
from aims.baselines.sam_loading import build_sam, sam_config  # noqa: E402

#: GoPT's trainable count at ViT-B as issue 12 quotes the paper (its abstract: "< 1 %")
PAPER_TRAINABLE_M = 0.97
#: SAM ViT-B as transformers holds it (tests/test_baselines_params.py: SAM_TOTAL)
SAM_VIT_B = 93_735_472 + 256
#: SAM ViT-B's mask decoder, which trains as GoPT's segmentation head
SAM_VIT_B_DECODER = 4_058_340


def tiny_gopt(x_channels: int = 1, seed: int = 0, **options):
    torch.manual_seed(seed)
    sam = build_sam(None, "tiny")
    gopt.attach(sam, x_channels, tiny=True, **options)
    return sam


def trainable_names(sam) -> set[str]:
    return {n for n, p in sam.named_parameters() if p.requires_grad}


def square_batch(batch: int = 2, x_channels: int = 1):
    """A fixed RGB-X batch whose target is a square the X channel shows, with one click in it."""
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3 + x_channels, 64, 64, generator=g)
    target = torch.zeros(batch, 1, 32, 32)              # the decoder's S/4 low-res frame
    target[:, :, 8:24, 8:24] = 1.0
    pixels[:, 3:, 16:48, 16:48] += 2.0
    points = torch.tensor([[32.0, 32.0]]).expand(batch, 1, 1, 2).clone()   # (B, P, N, 2)
    labels = torch.ones(batch, 1, 1, dtype=torch.long)
    return pixels, target, points, labels


def test_forward_keeps_sams_output_layout():
    sam = tiny_gopt(x_channels=2)
    out = sam.vision_encoder(torch.randn(2, 5, 64, 64)).last_hidden_state
    vc = sam.config.vision_config
    assert out.shape == (2, vc.output_channels, 8, 8)
    assert isinstance(sam.vision_encoder, gopt.GoPTVisionEncoder)


def test_unit_multiplier_gives_back_plain_sam():
    """With every prompt equal to 1 the frozen encoder must compute exactly SAM's features of
    the RGB channels: the prompter keeps the (B, H, W, C) layout windowed blocks expect."""
    torch.manual_seed(0)
    plain = build_sam(None, "tiny")
    sam = tiny_gopt()
    sam.vision_encoder.sam_encoder.load_state_dict(plain.vision_encoder.state_dict())
    for prompter in sam.vision_encoder.prompters.values():
        torch.nn.init.zeros_(prompter.up.weight)
        torch.nn.init.zeros_(prompter.up.bias)
    pixels = torch.randn(2, 4, 64, 64)
    got = sam.vision_encoder(pixels).last_hidden_state
    want = plain.vision_encoder(pixels[:, :3]).last_hidden_state
    torch.testing.assert_close(got, want)
    # and the prompt multiplies: a multiplier of 2 before block 0 is SAM on doubled tokens
    torch.nn.init.constant_(sam.vision_encoder.prompters["0"].up.bias, 1.0)
    enc = plain.vision_encoder
    with torch.no_grad():
        hidden = 2 * (enc.patch_embed(pixels[:, :3]) + enc.pos_embed)
        for layer in enc.layers:
            hidden = layer(hidden)
        doubled = enc.neck(hidden)
        torch.testing.assert_close(sam.vision_encoder(pixels).last_hidden_state, doubled)
    assert not torch.allclose(doubled, want)


def test_gradient_reaches_exactly_the_trainable_parameters():
    sam = tiny_gopt()
    names = trainable_names(sam)
    assert names == {n for n, _ in sam.named_parameters()
                     if n.startswith(("vision_encoder.prompters.", "vision_encoder.x_patch_embed.",
                                      "mask_decoder."))}
    assert not any(n.startswith(("vision_encoder.sam_encoder.", "prompt_encoder.", "shared_image_embedding."))
                   for n in names)
    model = SimCMF(sam, ModelSpec(size="tiny", adapter="rgbx-split", strategy="gopt", in_channels=4), None)
    pixels, target, points, labels = square_batch()
    logits, _ = model(pixels, points, labels)
    DiceCELoss()(logits[:, 0, :1], target).backward()
    decoder_grad = 0.0
    for name, p in sam.named_parameters():
        if name.startswith("mask_decoder."):
            # the single-mask path leaves the other hypernetworks and the IoU head unused
            decoder_grad += 0.0 if p.grad is None else float(p.grad.abs().sum())
        elif name in names:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    assert decoder_grad > 0


def test_prompter_before_every_kth_block():
    with torch.device("meta"):
        sam = SamModel(sam_config("vit-b"))
    layers = len(sam.vision_encoder.layers)
    expected = {1: 12, 2: 6, 4: 3, 6: 2, 12: 1}
    for interval in gopt.PAPER_INTERVALS:
        with torch.device("meta"):
            sam = SamModel(sam_config("vit-b"))
        gopt.attach(sam, 1, interval=interval)
        keys = sorted(int(k) for k in sam.vision_encoder.prompters)
        assert keys == list(range(0, layers, interval)) and len(keys) == expected[interval]
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="interval"):
            gopt.attach(build_sam(None, "tiny"), 1, tiny=True, interval=bad)
    with pytest.raises(ValueError, match="assignment"):
        gopt.attach(build_sam(None, "tiny"), 1, tiny=True, assignment="fuzzy")


def test_straight_through_assignment_is_one_hot_and_passes_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 10, requires_grad=True)        # (B, K groups, N tokens)
    weights = torch.randn(3, 4, 10)
    hard = gopt.group_assignment(logits, 1, hard=True, tau=1.0, training=True)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach().sum(1), torch.ones(3, 10))
    (hard * weights).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # the gradient is the softmax's (straight-through), not zero as argmax would give
    soft_logits = logits.detach().clone().requires_grad_(True)
    (torch.softmax(soft_logits, 1) * weights).sum().backward()
    assert not torch.allclose(logits.grad, torch.zeros_like(logits.grad))
    # evaluation: no Gumbel noise, the plain argmax, identical on every call
    a = gopt.group_assignment(logits, 1, hard=True, tau=1.0, training=False)
    b = gopt.group_assignment(logits, 1, hard=True, tau=1.0, training=False)
    assert torch.equal(a, b)
    assert torch.equal(a.detach().argmax(1), logits.detach().argmax(1))
    # training samples: Gumbel noise changes some assignments between calls
    draws = {tuple(gopt.group_assignment(logits, 1, hard=True, tau=1.0, training=True).argmax(1).flatten().tolist())
             for _ in range(5)}
    assert len(draws) > 1
    soft = gopt.group_assignment(logits, 1, hard=False, tau=1.0, training=True)
    torch.testing.assert_close(soft, torch.softmax(logits, 1))


@pytest.mark.parametrize("assignment", gopt.ASSIGNMENTS)
def test_eval_is_deterministic(assignment):
    sam = tiny_gopt(assignment=assignment)
    pixels = torch.randn(2, 4, 64, 64)
    enc = sam.vision_encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(pixels).last_hidden_state, enc(pixels).last_hidden_state,
                                   rtol=0, atol=0)
    assert enc.prompters["0"].cup.settings.assignment == assignment


def test_loss_falls_on_a_tiny_cpu_run():
    torch.set_num_threads(1)
    sam = tiny_gopt()
    model = SimCMF(sam, ModelSpec(size="tiny", adapter="rgbx-split", strategy="gopt", in_channels=4), None)
    pixels, target, points, labels = square_batch()
    loss_fn = DiceCELoss()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(pixels, points, labels)[0][:, 0, :1], target))

    before = eval_loss()
    with torch.no_grad():
        features_before = model.eval().encode(pixels)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    model.train()
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model(pixels, points, labels)[0][:, 0, :1], target).backward()
        opt.step()
        model.train()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    with torch.no_grad():      # the prompters, not only the decoder, moved: the features changed
        assert not torch.allclose(model.eval().encode(pixels), features_before)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} moved"


@pytest.mark.parametrize("x_channels, own", [(1, 962_304), (3, 1_355_520)])
def test_vit_b_counts_on_meta(x_channels, own):
    """At the default interval (a prompter before each of the 12 blocks) GoPT adds 962,304
    parameters for a one-channel X (thermal, depth, NIR): 12 prompters of 63,744 and a
    197,376-parameter X patch embedding; the paper reports 0.97 M trainable. A three-channel X
    (HHA) makes the patch embedding 590,592. SAM's mask decoder (4,058,340) trains on top as
    GoPT's segmentation head. Why the counts differ from the paper: docs/rgbx-gopt.md."""
    with torch.device("meta"):
        sam = SamModel(sam_config("vit-b"))
    gopt.attach(sam, x_channels)
    total = sum(p.numel() for p in sam.parameters())
    trainable = sum(p.numel() for p in sam.parameters() if p.requires_grad)
    assert total == SAM_VIT_B + own
    assert trainable == own + SAM_VIT_B_DECODER
    assert own == gopt.gopt_parameter_count(768, 12, 16, x_channels)
    prompters = sum(p.numel() for p in sam.vision_encoder.prompters.parameters())
    assert prompters == 12 * 63_744
    if x_channels == 1:
        assert abs(own / 1e6 - PAPER_TRAINABLE_M) <= 0.05 * PAPER_TRAINABLE_M
