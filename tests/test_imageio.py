"""PNG encode/decode: lossless, RGB order, deterministic bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aims.imageio import decode_png, encode_png


@pytest.mark.parametrize(
    "shape,dtype",
    [((7, 5), np.uint8), ((7, 5), np.uint16), ((7, 5, 3), np.uint8), ((7, 5, 4), np.uint8),
     ((7, 5, 3), np.uint16)],
)
def test_roundtrip_exact(shape, dtype):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    data = encode_png(arr)
    out = decode_png(data)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert encode_png(arr) == data  # same input, same bytes


def test_rgb_order_matches_pillow():
    arr = np.zeros((2, 3, 3), np.uint8)
    arr[..., 0] = 255  # pure red
    pil = np.array(Image.open(io.BytesIO(encode_png(arr))))
    np.testing.assert_array_equal(pil, arr)
    rgba = np.dstack([arr, np.full((2, 3), 7, np.uint8)])
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(encode_png(rgba)))), rgba)


def test_uint16_decodes_in_pillow_exactly():
    arr = np.array([[0, 1, 1000], [32768, 65534, 65535]], np.uint16)
    img = Image.open(io.BytesIO(encode_png(arr)))
    assert img.mode in ("I;16", "I")
    np.testing.assert_array_equal(np.array(img), arr)


def test_single_channel_3d_is_grey():
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    np.testing.assert_array_equal(decode_png(encode_png(arr)), arr[:, :, 0])


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.float32), np.zeros((2, 2), bool),
                                 np.zeros((2, 2, 2), np.uint8), np.zeros((0, 3), np.uint8)])
def test_rejects_what_png_cannot_hold(bad):
    with pytest.raises(ValueError):
        encode_png(bad)


def test_decode_rejects_non_png():
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"GIF89a....")
    with pytest.raises(ValueError):
        decode_png(encode_png(np.zeros((4, 4), np.uint8))[:20])
