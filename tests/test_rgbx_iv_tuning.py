"""IV-tuning on SAM (``aims.baselines.iv_tuning``): the prompted encoder's shape, that it is
SAM's own encoder when the prompters are silent, what trains, batch-independent prediction,
a loss that falls through SAM's batched decoder, and the ViT-B counts against the paper's
"about 3 % of the backbone"."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import SamModel  # noqa: E402

from aims.baselines.iv_tuning import (  # noqa: E402
    FROZEN_PREFIXES, IVTuningVisionEncoder, SplitFuseEnhancer, attach, backbone_share)
from aims.baselines.losses import dice_ce_loss  # noqa: E402
from aims.baselines.model import ModelSpec, SimCMF  # noqa: E402
from aims.baselines.sam_loading import sam_config  # noqa: E402
from aims.baselines.strategies import count_parameters  # noqa: E402

#: IV-tuning at ViT-B on the meta device, by X channel count (docs/rgbx-iv-tuning.md)
VIT_B_TOTAL = {1: 96_528_756, 3: 96_921_972}
VIT_B_TRAINABLE = {1: 6_851_368, 3: 7_244_584}
VIT_B_ADDED = {1: 2_793_028, 3: 3_186_244}          # what the encoder gains, all trainable
VIT_B_ENCODER = 89_670_912                           # SAM ViT-B's image encoder, frozen
VIT_B_MASK_DECODER = 4_058_340
VIT_B_MP_BETA = 214_560                              # one MP-β at width 64
VIT_B_MP_ALPHA = 20_932                              # MP-α at width 8
#: the paper's trainable share of the backbone, over its six reported backbones/tasks
#: (README of Yummy198913/IV-tuning: 2.84 % … 3.15 %)
PAPER_SHARE = (0.0284, 0.0315)


def tiny_ivt(x_channels: int = 1, seed: int = 0) -> SamModel:
    torch.manual_seed(seed)
    sam = SamModel(sam_config("tiny"))
    attach(sam, x_channels, tiny=True)
    return sam


def batch(b: int, x_channels: int, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3 + x_channels, size, size, generator=g)


def test_silent_prompters_leave_exactly_sams_encoder():
    """With MP-α's and every MP-β's output projection at zero, the encoder must compute SAM's
    own (windowed and global blocks alike), bit for bit: our block loop is SAM's."""
    torch.manual_seed(0)
    sam = SamModel(sam_config("tiny")).eval()
    original = sam.vision_encoder
    pixels = batch(2, 1)
    with torch.no_grad():
        expected = original(pixels[:, :3]).last_hidden_state
    attach(sam, 1, tiny=True)
    enc = sam.vision_encoder
    assert isinstance(enc, IVTuningVisionEncoder) and enc.backbone is original
    assert {layer.window_size > 0 for layer in original.layers} == {True, False}
    with torch.no_grad():
        assert not torch.equal(enc(pixels).last_hidden_state, expected)   # prompts do act
        for p in (*enc.mp_alpha.up.parameters(), *(q for b in enc.mp_beta for q in b.visible_up.parameters()),
                  *(q for b in enc.mp_beta for q in b.prompt_out.parameters())):
            p.zero_()
        torch.testing.assert_close(enc(pixels).last_hidden_state, expected, rtol=0, atol=0)


def test_x_changes_the_embedding_through_the_prompts():
    sam = tiny_ivt(1).eval()
    base = batch(1, 1)
    other = base.clone()
    other[:, 3:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(sam.vision_encoder(other).last_hidden_state,
                                  sam.vision_encoder(base).last_hidden_state, atol=1e-4)


def test_prediction_does_not_depend_on_batch_mates():
    """The SFE normalises with each image's own statistics, so an image's embedding is the
    same alone or beside another (BatchNorm in train mode would mix them)."""
    sam = tiny_ivt(1).eval()
    pair = batch(2, 1)
    with torch.no_grad():
        alone = sam.vision_encoder(pair[:1]).last_hidden_state
        together = sam.vision_encoder(pair).last_hidden_state[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)
    assert not any(b.numel() for b in sam.vision_encoder.buffers())   # nothing a checkpoint would miss


def test_split_fuse_enhancer_convolves_only_the_first_quarter_spatially():
    sfe = SplitFuseEnhancer(8)
    assert sfe.split == 2 and sfe.depthwise.groups == 2 and sfe.depthwise.kernel_size == (3, 3)
    assert sfe.fuse_in.kernel_size == (1, 1) and sfe.fuse_out.kernel_size == (1, 1)


def test_attaching_twice_is_refused():   # the channel check: tests/test_rgbx_contract.py
    sam = tiny_ivt(1)
    with pytest.raises(ValueError, match="attaches once"):
        attach(sam, 1, tiny=True)


def _points(b: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    points = torch.tensor([[[[size * 0.4, size * 0.45]]]]).expand(b, 1, 1, 2).clone()
    return points, torch.ones(b, 1, 1, dtype=torch.long)


def test_gradients_reach_exactly_what_trains():
    sam = tiny_ivt(1).train()
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    frozen = {n for n, p in sam.named_parameters() if not p.requires_grad}
    assert all(n.startswith(("vision_encoder.x_patch_embed.", "vision_encoder.mp_alpha.",
                             "vision_encoder.mp_beta.", "mask_decoder.")) for n in trainable)
    assert all(n.startswith(("vision_encoder.backbone.", *FROZEN_PREFIXES)) for n in frozen)
    assert {n for n in frozen if n.startswith("vision_encoder.")} == {
        f"vision_encoder.backbone.{n}" for n, _ in sam.vision_encoder.backbone.named_parameters()}
    model = SimCMF(sam, ModelSpec(size="tiny", strategy="iv-tuning", in_channels=4), None)
    points, labels = _points(2)
    emb = model.encode(batch(2, 1))
    target = torch.zeros(2, 1, model.low_res_size, model.low_res_size)
    target[..., 8:20, 6:18] = 1
    loss = torch.zeros(())
    for multimask in (False, True):                       # mask token 0, then tokens 1..3
        logits, iou = model.decode(emb, points, labels, multimask=multimask)
        for m in range(logits.shape[2]):
            loss = loss + dice_ce_loss(logits[:, 0, m:m + 1], target)
        loss = loss + iou.square().mean()
    loss.backward()
    for name, p in sam.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_tiny_training_through_sams_decoder_lowers_the_loss():
    """A few Adam steps on a fixed batch: the loss falls, the prompters learn, the backbone
    stays as loaded. (The random tiny decoder's logits start at ~1e-4, so the step is larger
    than a real run's.)"""
    sam = tiny_ivt(1, seed=0).train()
    model = SimCMF(sam, ModelSpec(size="tiny", strategy="iv-tuning", in_channels=4), None)
    pixels = batch(2, 1, seed=3)
    points, labels = _points(2)
    s = model.low_res_size
    target = torch.zeros(2, 1, s, s)
    target[0, :, 6:22, 8:20] = 1
    target[1, :, 10:26, 4:16] = 1
    before = {n: p.detach().clone() for n, p in sam.vision_encoder.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(12):
        logits, _ = model(pixels, points, labels)
        loss = dice_ce_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3]), losses
    for n, p in sam.vision_encoder.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == (not n.startswith("backbone.")), n      # prompters learn, backbone frozen


@pytest.mark.parametrize("x_channels", [1, 3])
def test_vit_b_counts_and_backbone_share_against_the_paper(x_channels):
    with torch.device("meta"):
        sam = SamModel(sam_config("vit-b"))
    attach(sam, x_channels)                          # outside the context: follows SAM's device
    assert all(p.is_meta for p in sam.parameters())
    trainable, total = count_parameters(sam)
    assert (total, trainable) == (VIT_B_TOTAL[x_channels], VIT_B_TRAINABLE[x_channels])
    added, encoder = backbone_share(sam)
    assert (added, encoder) == (VIT_B_ADDED[x_channels], VIT_B_ENCODER)
    assert total == encoder + added + sum(p.numel() for n, p in sam.named_parameters()
                                          if not n.startswith("vision_encoder."))
    assert trainable == added + VIT_B_MASK_DECODER
    enc = sam.vision_encoder
    assert len(enc.mp_beta) == 12
    assert sum(p.numel() for p in enc.mp_beta[0].parameters()) == VIT_B_MP_BETA
    assert sum(p.numel() for p in enc.mp_alpha.parameters()) == VIT_B_MP_ALPHA
    share = added / encoder
    # one X channel (thermal, depth, NIR) lands inside the paper's range; a three-channel X
    # (HHA) pays 2 × 196,608 more for its patch embedding
    low, high = PAPER_SHARE
    assert low <= share <= high if x_channels == 1 else high < share < 1.15 * high
