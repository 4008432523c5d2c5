"""PNG encode/decode: lossless, RGB order, deterministic bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aims.imageio import decode_png, encode_png, read_image


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


# --------------------------------------------------------------------------- read_image


def _tiff_lzw(path, rgb):
    """A 3/4-channel LZW TIFF holding ``rgb`` (OpenCV takes BGR)."""
    import cv2

    code = cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, code), [cv2.IMWRITE_TIFF_COMPRESSION, 5])
    return path


@pytest.mark.parametrize("channels", [3, 4])
def test_read_image_keeps_16_bit_colour(tmp_path, channels):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    tiff = _tiff_lzw(tmp_path / "a.tiff", arr)
    png = tmp_path / "a.png"
    png.write_bytes(encode_png(arr))
    for path in (tiff, png):
        out = read_image(path)
        assert out.dtype == np.uint16 and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)
        # what Pillow alone gives: the high byte (why read_image exists)
        np.testing.assert_array_equal(np.asarray(Image.open(path))[..., :3], (arr >> 8)[..., :3])


def test_read_image_keeps_what_pillow_reads_exactly(tmp_path):
    rng = np.random.default_rng(2)
    rgb8 = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "rgb8.tiff", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb8.tiff"), rgb8)
    mask = rng.random((6, 7)) > 0.5
    Image.fromarray(mask).save(tmp_path / "mask.png")  # 1-bit PNG
    assert Image.open(tmp_path / "mask.png").mode == "1"
    out = read_image(tmp_path / "mask.png")
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask)
    grey16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    (tmp_path / "g16.png").write_bytes(encode_png(grey16))
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), grey16)
    pal = Image.fromarray(rng.integers(0, 4, (6, 7), dtype=np.uint8), mode="L").convert("P")
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_image(tmp_path / "pal.png"), np.asarray(pal))


def test_read_image_errors(tmp_path):
    arr = np.random.default_rng(3).integers(0, 65536, (40, 50, 3), dtype=np.uint16)
    data = _tiff_lzw(tmp_path / "a.tiff", arr).read_bytes()
    (tmp_path / "cut.tiff").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        read_image(tmp_path / "cut.tiff")
    corrupt = bytearray(data)
    corrupt[200:2000] = bytes(1800)  # pixel data zeroed, header intact
    (tmp_path / "bad.tiff").write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_image(tmp_path / "bad.tiff")
    (tmp_path / "text.tiff").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(tmp_path / "text.tiff")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "absent.png")
