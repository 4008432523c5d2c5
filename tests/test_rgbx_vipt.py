"""ViPT on SAM (aims.baselines.vipt): shapes, what trains, the prompter against ViPT's
convolutional form, a falling loss, and the ViT-B count against SimCMF Table 6's 94.5 M."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

from aims.baselines import vipt  # noqa: E402
from aims.baselines.losses import dice_ce_loss  # noqa: E402
from aims.baselines.model import SimCMF, ModelSpec  # noqa: E402
from aims.baselines.sam_loading import sam_config  # noqa: E402
from aims.baselines.strategies import count_parameters  # noqa: E402

#: SimCMF Table 6: ViPT* "94.5M" total parameters, prompt tuning
PAPER_TOTAL_M = 94.5


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_sam():
    """A tiny SAM with PyTorch's default initialisation: transformers' random init (every
    weight N(0, 0.02)) leaves the tiny decoder's logits almost independent of its image
    input, which no trained checkpoint is, and a frozen-SAM system then cannot learn."""
    from transformers import SamModel

    torch.manual_seed(0)
    sam = SamModel(sam_config("tiny"))
    for m in sam.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.reset_parameters()
    return sam


def _batch(c: int, b: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, c, 64, 64, generator=g)
    pts = torch.rand(b, 1, 1, 2, generator=g) * 64
    target = (torch.rand(b, 1, 32, 32, generator=g) > 0.5).float()
    return x, pts, torch.ones(b, 1, 1, dtype=torch.long), target


@pytest.mark.parametrize("x_channels", [1, 3])
def test_forward_shape_and_only_the_prompts_get_gradients(x_channels):
    sam = _tiny_sam()
    vipt.attach(sam, x_channels, tiny=True)
    x, pts, labels, _ = _batch(3 + x_channels)
    out = sam.vision_encoder(x).last_hidden_state
    assert out.shape == (2, 32, 8, 8)                                  # like SAM's neck output
    model = SimCMF(sam, ModelSpec("tiny", strategy="vipt", in_channels=3 + x_channels), None)
    logits, _ = model.decode(out, pts, labels)
    logits.square().mean().backward()
    trainable = {n for n, p in sam.named_parameters() if p.requires_grad}
    got = {n for n, p in sam.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trainable and got == trainable                              # every prompt weight, nothing else
    assert all("prompt" in n for n in trainable)                       # ViPT's optimiser rule
    assert not any(n.startswith(("mask_decoder.", "prompt_encoder.", "vision_encoder.encoder.")) for n in trainable)
    assert len(sam.vision_encoder.prompt_blocks) == len(sam.vision_encoder.prompt_norms) == 2   # every block
    with pytest.raises(ValueError, match="channels"):
        sam.vision_encoder(x[:, :3])


def test_with_silent_prompters_it_is_sam_on_the_rgb_channels():
    """The prompts are added to SAM's RGB token stream and nothing else changes: with every
    prompter's output layer zeroed, the encoder is SAM's own on channels 0..2."""
    sam = _tiny_sam()
    plain = sam.vision_encoder
    x, *_ = _batch(4)
    with torch.no_grad():
        expected = plain(x[:, :3]).last_hidden_state
        vipt.attach(sam, 1, tiny=True)
        for block in sam.vision_encoder.prompt_blocks:
            block.conv1x1.weight.zero_()
            block.conv1x1.bias.zero_()
        got = sam.vision_encoder(x).last_hidden_state
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        sam.vision_encoder.prompt_blocks[1].conv1x1.bias.fill_(0.5)  # a live prompter changes it
        assert not torch.allclose(sam.vision_encoder(x).last_hidden_state, expected, atol=1e-3)


def test_prompter_is_vipts_convolutional_block():
    """The channels-last prompter equals ViPT's Prompt_block written as the paper's code
    does it: 1×1 convolutions on (B, 2D, H, W), the RGB half through a softmax fovea over
    all positions scaled by the learned temperature."""
    torch.manual_seed(0)
    dim, hidden = 16, 8
    mcp = vipt.ModalityComplementaryPrompter(dim, hidden)
    assert float(mcp.fovea_temperature.detach()) == vipt.FOVEA_TEMPERATURE == 10.0
    with torch.no_grad():
        mcp.fovea_temperature.fill_(0.7)
    rgb, aux = torch.randn(2, 5, 6, dim), torch.randn(2, 5, 6, dim)
    feat = torch.cat([rgb, aux], dim=-1).permute(0, 3, 1, 2)          # ViPT's token2feature + cat
    conv = lambda lin, t: F.conv2d(t, lin.weight[:, :, None, None], lin.bias)  # noqa: E731
    x0 = conv(mcp.conv0_0, feat[:, :dim])
    b, c, h, w = x0.shape
    flat = x0.reshape(b, c, h * w)
    x0 = (torch.softmax(flat * 0.7, dim=-1) * flat).reshape(b, c, h, w)
    expected = conv(mcp.conv1x1, x0 + conv(mcp.conv0_1, feat[:, dim:])).permute(0, 2, 3, 1)
    torch.testing.assert_close(mcp(rgb, aux), expected, rtol=1e-5, atol=1e-6)


def test_loss_falls_on_a_fixed_batch():
    sam = _tiny_sam()
    vipt.attach(sam, 1, tiny=True)
    model = SimCMF(sam, ModelSpec("tiny", strategy="vipt", in_channels=4), None)
    x, pts, labels, target = _batch(4, b=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(15):
        logits, _ = model(x, pts, labels)
        loss = dice_ce_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.01, losses
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


@pytest.mark.parametrize("x_channels, total, trainable", [(1, 94_182_140, 446_412), (3, 94_575_356, 839_628)])
def test_vit_b_counts_against_table6(x_channels, total, trainable):
    """Per block 19,217 (prompter) + 1,536 (norm), × 12; plus the X patch embedding
    C_x·16·16·768 + 768. SAM itself is 93,735,728 in transformers. Table 6: 94.5 M."""
    from transformers import SamModel

    with torch.device("meta"):
        sam = SamModel(sam_config("vit-b"))
        sam_total = count_parameters(sam)[1]
        vipt.attach(sam, x_channels)
    assert sam_total == 93_735_728
    assert count_parameters(sam) == (trainable, total)
    assert trainable == 12 * (19_217 + 1_536) + x_channels * 16 * 16 * 768 + 768
    assert abs(total / 1e6 - PAPER_TOTAL_M) <= 0.10 * PAPER_TOTAL_M
    assert abs(total / 1e6 - PAPER_TOTAL_M) < 0.35                       # in fact within 0.4 %
