"""The contract every RGB-X system keeps (``aims.baselines.rgbx_systems``), checked once for
all four: SAM's image-embedding layout out, a clear error for the wrong channel count, and
the X channels reaching the embedding. Each system's own file tests what is its own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import SamModel  # noqa: E402

from aims.baselines.choices import RGBX_STRATEGIES  # noqa: E402
from aims.baselines.rgbx_systems import attach_rgbx_system  # noqa: E402
from aims.baselines.sam_loading import sam_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_system(name: str, x_channels: int) -> SamModel:
    torch.manual_seed(0)
    sam = SamModel(sam_config("tiny"))
    attach_rgbx_system(sam, name, x_channels, tiny=True)
    return sam.eval()


def pixels(x_channels: int, batch: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3 + x_channels, size, size, generator=g)


@pytest.mark.parametrize("x_channels", [1, 3])
@pytest.mark.parametrize("name", RGBX_STRATEGIES)
def test_sam_embedding_layout_and_channel_check(name, x_channels):
    sam = tiny_system(name, x_channels)
    vc = sam.config.vision_config
    side = vc.image_size // vc.patch_size
    with torch.no_grad():
        out = sam.vision_encoder(pixels(x_channels)).last_hidden_state
    assert out.shape == (2, vc.output_channels, side, side) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=rf"\(B, {3 + x_channels}, S, S\)"):
        sam.vision_encoder(pixels(x_channels + 1))


@pytest.mark.parametrize("name", RGBX_STRATEGIES)
def test_the_x_channels_reach_the_embedding(name):
    sam = tiny_system(name, 1)
    x = pixels(1)
    other = x.clone()
    other[:, 3:] = torch.randn(other[:, 3:].shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert not torch.equal(sam.vision_encoder(x).last_hidden_state, sam.vision_encoder(other).last_hidden_state)
