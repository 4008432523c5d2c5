"""modality_tensor: shapes, dtypes, units, registry behaviour."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import aims
from aims.errors import AimsError
from aims.imageio import encode_png
from aims.modalities import MODALITY_STACKS, Modality, column_tensor, modality_tensor, unregister_modality


def _example(h=5, w=7):
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 10000, (h, w), dtype=np.uint16)
    depth[0, 0] = 0
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hha = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return depth, rgb, hha


def _pil(arr):
    return Image.open(io.BytesIO(encode_png(arr)))


def test_depth_in_metres_from_pil_ndarray_and_bytes():
    depth, _, _ = _example()
    for cell in (_pil(depth), depth, encode_png(depth), {"bytes": encode_png(depth), "path": None}):
        x = modality_tensor({"depth": cell}, "depth")
        assert x.dtype == np.float32 and x.shape == (1, 5, 7)
        np.testing.assert_allclose(x[0], depth / 1000.0, rtol=1e-6)
        assert x[0, 0, 0] == 0.0  # missing stays 0
    # Pillow may also hand out mode "I" (int32) for 16-bit images
    x = modality_tensor({"depth": _pil(depth).convert("I")}, "depth")
    np.testing.assert_allclose(x[0], depth / 1000.0, rtol=1e-6)


def test_hha_and_rgb_unit_range():
    _, rgb, hha = _example()
    ex = {"rgb": _pil(rgb), "hha": _pil(hha)}
    h = modality_tensor(ex, "hha")
    r = aims.modality_tensor(ex, "rgb")
    assert h.shape == r.shape == (3, 5, 7) and h.dtype == r.dtype == np.float32
    np.testing.assert_allclose(h, hha.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(r, rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert 0.0 <= h.min() and h.max() <= 1.0


def test_rgb_x_is_a_fixed_shuffle():
    depth, rgb, _ = _example()
    ex = {"rgb": rgb, "depth": depth}
    x = modality_tensor(ex, "rgb-depth")
    assert x.shape == (4, 5, 7)
    stacked = np.concatenate([modality_tensor(ex, "rgb"), modality_tensor(ex, "depth")])
    perm = MODALITY_STACKS["rgb-depth"].permutation()
    assert sorted(perm.tolist()) == [0, 1, 2, 3] and perm.tolist() != [0, 1, 2, 3]
    np.testing.assert_array_equal(x, stacked[perm])
    np.testing.assert_array_equal(x, modality_tensor(ex, "rgb-depth"))  # same every call


def test_unknown_modality_and_missing_column():
    with pytest.raises(AimsError) as err:
        modality_tensor({}, "sonar")
    assert "depth" in str(err.value) and "hha" in str(err.value)
    with pytest.raises(AimsError, match="column 'hha'"):
        modality_tensor({"depth": np.zeros((2, 2), np.uint16)}, "hha")


def test_depth_must_be_integer():
    with pytest.raises(ValueError):
        modality_tensor({"depth": np.zeros((2, 2), np.float32)}, "depth")


def test_registering_a_modality_is_a_few_lines():
    from aims.modalities import register_modality

    try:
        register_modality(Modality("depth-hha", ("depth", "hha")))
        depth, _, hha = _example()
        assert modality_tensor({"depth": depth, "hha": hha}, "depth-hha").shape == (4, 5, 7)
    finally:
        unregister_modality("depth-hha")


def test_column_tensor_matches_modality_tensor():
    depth, _, _ = _example()
    np.testing.assert_array_equal(column_tensor("depth", depth), modality_tensor({"depth": depth}, "depth"))


def test_16_bit_rgb_is_unit_range_and_close_to_what_pillow_sees():
    rng = np.random.default_rng(4)
    rgb16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    png = encode_png(rgb16)
    exact = modality_tensor({"rgb": {"bytes": png, "path": None}}, "rgb")
    np.testing.assert_allclose(exact, rgb16.transpose(2, 0, 1) / 65535.0, rtol=1e-6)
    # Pillow (and so `datasets`' decoded rows) keeps the high byte: value >> 8, / 255
    pil = _pil(rgb16)
    assert pil.mode == "RGB"
    seen = modality_tensor({"rgb": pil}, "rgb")
    np.testing.assert_allclose(seen, (rgb16 >> 8).transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert np.abs(seen - exact).max() <= 1 / 255 + 1e-6
    with pytest.raises(ValueError, match="8- or 16-bit"):
        modality_tensor({"rgb": rgb16.astype(np.int32)}, "rgb")


def test_polarization_with_16_bit_rgb_keeps_its_channels():
    rng = np.random.default_rng(5)
    rgb16 = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    aolp = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    dolp = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    x = modality_tensor({"rgb": rgb16, "aolp": aolp, "dolp": dolp}, "polarization")
    assert x.shape == (9, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[:3], rgb16.transpose(2, 0, 1) / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(x[3:6], aolp.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(x[6:], dolp.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    # an 8-bit RGB of the same scene gives the same channels within one 8-bit step
    x8 = modality_tensor({"rgb": (rgb16 >> 8).astype(np.uint8), "aolp": aolp, "dolp": dolp},
                         "polarization")
    assert np.abs(x8 - x).max() <= 1 / 255 + 1e-6


def test_schema_states_the_rgb_bit_depth():
    from aims.schema import DEFAULT_RGB_UNITS, get_config

    assert get_config("depth").units_text()["rgb"] == DEFAULT_RGB_UNITS
    text = get_config("polarization").units_text()["rgb"]
    assert "16-bit" in text and "value >> 8" in text and "PGSNet" in text


def test_8_bit_columns_stay_8_bit():
    # only `rgb` may be 16-bit; an AoLP/HHA column documented as code / 255 may not
    with pytest.raises(ValueError, match="8-bit"):
        modality_tensor({"hha": np.zeros((2, 2, 3), np.uint16)}, "hha")
