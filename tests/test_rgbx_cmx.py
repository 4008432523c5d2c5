"""CMX* on SAM (``aims.baselines.cmx``): the dual-stream encoder's shape and initialisation,
what trains, a loss that falls through SAM's batched decoder, and the ViT-B counts against
the SimCMF paper's Table 6 (403.8 M)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402
from transformers import SamModel  # noqa: E402

from aims.baselines.cmx import FROZEN_PREFIXES, CMXVisionEncoder, adapt_patch_kernel, attach  # noqa: E402
from aims.baselines.losses import dice_ce_loss  # noqa: E402
from aims.baselines.model import ModelSpec, SimCMF  # noqa: E402
from aims.baselines.sam_loading import sam_config  # noqa: E402
from aims.baselines.strategies import count_parameters  # noqa: E402

#: CMX* at ViT-B, counted on the meta device (see docs/rgbx-cmx.md for the breakdown)
VIT_B_TOTAL = {1: 406_521_928, 3: 406_915_144}
VIT_B_FROZEN = 6_476                       # the prompt encoder, as in SimCMF's `full`
VIT_B_FRM = 15_342_338                     # one Feature Rectify Module at width 768
VIT_B_FFM = 10_046_976                     # one Feature Fusion Module at width 768, 12 heads


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cmx(x_channels: int = 1, seed: int = 0) -> SamModel:
    torch.manual_seed(seed)
    sam = SamModel(sam_config("tiny"))
    attach(sam, x_channels, tiny=True)
    return sam


def batch(b: int, x_channels: int, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3 + x_channels, size, size, generator=g)


def test_both_streams_start_from_sams_weights_and_the_original_encoder_is_kept():
    torch.manual_seed(0)
    sam = SamModel(sam_config("tiny"))
    original = sam.vision_encoder
    before = copy.deepcopy(original.state_dict())
    attach(sam, 1, tiny=True)
    enc = sam.vision_encoder
    assert isinstance(enc, CMXVisionEncoder) and enc.rgb_encoder is original
    assert enc.x_encoder.neck is None                      # CMX's X stream hands over no output of its own
    x_state = enc.x_encoder.state_dict()
    for key, value in before.items():
        if key.startswith("neck."):
            assert key not in x_state
        elif key == "patch_embed.projection.weight":
            assert x_state[key].shape[1] == 1
        else:
            torch.testing.assert_close(x_state[key], value, rtol=0, atol=0, msg=key)
    assert enc.x_encoder.layers[0].attn.qkv.weight.data_ptr() != original.layers[0].attn.qkv.weight.data_ptr()


def test_one_channel_kernel_is_cmxs_replicated_input():
    """CMX replicates a one-channel X into three and uses the RGB kernel: our one-channel
    kernel must give the same response."""
    g = torch.Generator().manual_seed(0)
    rgb_kernel = torch.randn(8, 3, 4, 4, generator=g)
    x = torch.randn(2, 1, 16, 16, generator=g)
    expected = F.conv2d(x.expand(-1, 3, -1, -1), rgb_kernel, stride=4)
    torch.testing.assert_close(F.conv2d(x, adapt_patch_kernel(rgb_kernel, 1), stride=4), expected)
    # equal channels give the same response at any channel count; three keep the kernel
    torch.testing.assert_close(F.conv2d(x.expand(-1, 2, -1, -1), adapt_patch_kernel(rgb_kernel, 2), stride=4),
                               expected)
    assert torch.equal(adapt_patch_kernel(rgb_kernel, 3), rgb_kernel)


def test_the_streams_really_exchange_information():
    """Changing only X changes the embedding (the fusion is not bypassed), and changing only
    RGB does too."""
    sam = tiny_cmx(1).eval()
    base = batch(1, 1)
    other_x, other_rgb = base.clone(), base.clone()
    other_x[:, 3:] += 1.0
    other_rgb[:, :3] += 1.0
    with torch.no_grad():
        ref = sam.vision_encoder(base).last_hidden_state
        assert not torch.allclose(sam.vision_encoder(other_x).last_hidden_state, ref, atol=1e-4)
        assert not torch.allclose(sam.vision_encoder(other_rgb).last_hidden_state, ref, atol=1e-4)


def _points(b: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    points = torch.tensor([[[[size * 0.4, size * 0.45]]]]).expand(b, 1, 1, 2).clone()
    return points, torch.ones(b, 1, 1, dtype=torch.long)


def test_gradients_reach_exactly_what_trains():
    sam = tiny_cmx(1).train()
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    frozen = {n for n, p in sam.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(FROZEN_PREFIXES) for n in frozen)
    assert all(not n.startswith(FROZEN_PREFIXES) for n in trainable)
    model = SimCMF(sam, ModelSpec(size="tiny", strategy="cmx", in_channels=4), None)
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
    assert any(n.startswith("vision_encoder.x_encoder.") for n in trainable)
    assert any(n.startswith("vision_encoder.rectify.") for n in trainable)
    assert any(n.startswith("vision_encoder.fuse.") for n in trainable)
    assert any(n.startswith("mask_decoder.") for n in trainable)


def test_tiny_training_through_sams_decoder_lowers_the_loss():
    sam = tiny_cmx(1, seed=0).train()
    model = SimCMF(sam, ModelSpec(size="tiny", strategy="cmx", in_channels=4), None)
    pixels = batch(2, 1, seed=3)
    points, labels = _points(2)
    s = model.low_res_size
    target = torch.zeros(2, 1, s, s)
    target[0, :, 6:22, 8:20] = 1
    target[1, :, 10:26, 4:16] = 1
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(12):
        logits, _ = model(pixels, points, labels)
        loss = dice_ce_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3]), losses


def _vit_b(x_channels: int) -> SamModel:
    with torch.device("meta"):
        sam = SamModel(sam_config("vit-b"))
    attach(sam, x_channels)
    return sam


@pytest.mark.parametrize("x_channels", [1, 3])
def test_vit_b_counts_match_the_paper_within_ten_percent(x_channels):
    from aims.leaderboard.entries import paper_results

    sam = _vit_b(x_channels)
    trainable, total = count_parameters(sam)
    assert total == VIT_B_TOTAL[x_channels]
    assert total - trainable == VIT_B_FROZEN
    enc = sam.vision_encoder
    assert len(enc.rectify) == 12 and len(enc.fuse) == 4 and enc.stage_ends == [2, 5, 8, 11]
    assert sum(p.numel() for p in enc.rectify[0].parameters()) == VIT_B_FRM
    assert sum(p.numel() for p in enc.fuse[0].parameters()) == VIT_B_FFM
    paper = next(r for r in paper_results()["rgb_x_systems"] if r["strategy"] == "cmx")
    assert abs(total / (paper["params_m"] * 1e6) - 1) < 0.10


def test_a_saved_run_keeps_the_batchnorm_statistics(tmp_path):
    """CMX's fusion has BatchNorm: a checkpoint without its running statistics would reload
    into a model that computes something else in eval mode."""
    from aims.baselines.run_folder import load_weights, save_weights

    spec = ModelSpec(size="tiny", strategy="cmx", in_channels=4)
    trained = SimCMF(tiny_cmx(1, seed=0), spec, None)
    trained.train()
    with torch.no_grad():
        for k in range(3):                         # moves the running statistics off their init
            trained.encode(batch(2, 1, seed=10 + k) * 3)
    buffers = {n for n, _ in trained.named_buffers() if "running_mean" in n}
    assert buffers and buffers <= set(trained.trainable_state_dict())
    save_weights(trained, tmp_path / "w.safetensors")
    fresh = SimCMF(tiny_cmx(1, seed=0), spec, None)
    load_weights(fresh, tmp_path / "w.safetensors")
    trained.eval(), fresh.eval()
    x = batch(1, 1, seed=99)
    with torch.no_grad():
        assert torch.equal(trained.encode(x), fresh.encode(x))
        untouched = SimCMF(tiny_cmx(1, seed=0), spec, None).eval()
        assert not torch.equal(untouched.encode(x), fresh.encode(x))   # the statistics mattered
