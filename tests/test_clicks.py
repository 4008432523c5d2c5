"""Tests of the click prompts (aims.clicks): exactness against plain scipy / PIL / argwhere
re-implementations of the rules in docs/protocol.md."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from aims.clicks import click_aims, clicks_simcmf, warp_nearest
from aims.errors import AimsError


def ref_click_aims(mask: np.ndarray) -> tuple[int, int]:
    """The rule verbatim: float64 exact EDT of the mask padded by one pixel, first max."""
    dt = ndimage.distance_transform_edt(np.pad(mask.astype(bool), 1))
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return int(x) - 1, int(y) - 1


def pil_warp(label: np.ndarray, size=(1024, 1024)) -> np.ndarray:
    return np.asarray(Image.fromarray(label.astype(np.int32), "I").resize(size, Image.NEAREST))


def ref_clicks_simcmf(id_map: np.ndarray, ids, size: int = 1024) -> np.ndarray:
    """The SimCMF reference code: PIL warp, then argwhere per id, flipped, len // 2."""
    warped = pil_warp(id_map, (size, size))
    out = []
    for i in ids:
        pts = np.argwhere(warped == i)
        out.append((-1, -1) if len(pts) == 0 else tuple(pts[len(pts) // 2][::-1]))
    return np.array(out, dtype=np.int32).reshape(-1, 2)


def random_blobs(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
    return noise > np.quantile(noise, 0.6)


# --- aims click ---------------------------------------------------------------------


def test_border_counts_as_boundary():
    # A 7x10 block glued to the left image border: unpadded, the border is not boundary
    # and the "farthest" point slides onto column 0; padded, it moves 3 pixels inside.
    img = np.zeros((20, 20), bool)
    img[5:12, 0:10] = True
    assert click_aims(img) == (3, 8)
    unpadded = ndimage.distance_transform_edt(img)
    y, x = np.unravel_index(int(np.argmax(unpadded)), img.shape)
    assert (int(x), int(y)) == (0, 8)  # what forgetting the padding would give
    # The crop alone (the whole array is the instance) still gets the padded answer.
    assert click_aims(np.ones((7, 10), bool)) == (3, 3)


def test_first_maximum_in_row_major_order():
    # An even square has four equal centre pixels: the first in raster order wins.
    assert click_aims(np.ones((4, 4), bool)) == (1, 1)
    assert click_aims(np.ones((1, 5), bool)) == (0, 0)  # all distances 1: first pixel
    assert click_aims(np.ones((1, 1), bool)) == (0, 0)


def test_ring_click_inside_while_centroid_is_not():
    yy, xx = np.mgrid[:61, :61]
    r = np.hypot(yy - 30, xx - 30)
    ring = (r >= 18) & (r <= 26)
    x, y = click_aims(ring)
    assert ring[y, x]
    assert (x, y) == ref_click_aims(ring)
    cy, cx = np.argwhere(ring).mean(axis=0).round().astype(int)
    assert not ring[cy, cx]  # a centroid click would miss the instance


def test_u_shape_click_inside():
    u = np.zeros((40, 30), bool)
    u[:, :8] = True
    u[:, -8:] = True
    u[-8:, :] = True
    x, y = click_aims(u)
    assert u[y, x]
    assert (x, y) == ref_click_aims(u)


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_match_scipy_and_stay_inside(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 300, 2)
    blobs = random_blobs(rng, int(h), int(w), float(rng.uniform(1, 8)))
    labels, n = ndimage.label(blobs, structure=np.ones((3, 3)))
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        crop = labels[sl] == k
        x, y = click_aims(crop)
        assert crop[y, x]
        assert (x, y) == ref_click_aims(crop)
        # Cropping is exact: the click in the full frame is the same pixel.
        full = labels == k
        fx, fy = ref_click_aims(full)
        assert (fx, fy) == (x + sl[1].start, y + sl[0].start)


def test_large_shapes_have_no_float32_argmax_drift():
    # Big discs and ellipses: many near-equal distances where float32 sqrt could tie.
    yy, xx = np.mgrid[:701, :901]
    for a, b in [(300, 300), (430, 290), (211.5, 333.25)]:
        m = ((yy - 350) / b) ** 2 + ((xx - 450) / a) ** 2 <= 1
        assert click_aims(m) == ref_click_aims(m)
    rng = np.random.default_rng(7)
    m = random_blobs(rng, 480, 640, 25)
    assert click_aims(m) == ref_click_aims(m)


def test_click_aims_bad_input():
    with pytest.raises(AimsError):
        click_aims(np.zeros((5, 5), bool))
    with pytest.raises(AimsError):
        click_aims(np.ones((2, 2, 2), bool))
    with pytest.raises(AimsError):
        click_aims(np.ones((3, 3), np.float32))


# --- warp ---------------------------------------------------------------------------


def test_warp_nearest_matches_pil_random_sizes():
    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 700, 2))
        size = (1024, 1024) if t % 3 == 0 else tuple(int(v) for v in rng.integers(1, 1500, 2))
        label = rng.integers(0, 2**31 - 1, (h, w)).astype(np.int32)
        got = warp_nearest(label, size)
        assert got.shape == (size[1], size[0])
        np.testing.assert_array_equal(got, pil_warp(label, size))


def test_warp_nearest_sizes_where_closed_form_differs():
    # Pillow accumulates the scale step by step; floor((i + .5) * n_in / n_out) differs
    # from it at some half-way ties. Check the PIL result for a sweep of 1-D sizes.
    for n_in in list(range(1, 200)) + [480, 640, 1023, 1025, 1242, 2048]:
        for n_out in (1, 3, 7, 256, 1000, 1024, 1500):
            row = np.arange(n_in, dtype=np.int32)[None, :]
            np.testing.assert_array_equal(
                warp_nearest(row, (n_out, 1)), pil_warp(row, (n_out, 1))
            )


def test_warp_nearest_keeps_dtype_and_identity():
    a = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert warp_nearest(a, (8, 6)).dtype == np.uint16
    same = warp_nearest(a, (4, 3))
    np.testing.assert_array_equal(same, a)
    assert same is not a


# --- simcmf click -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(480, 640), (37, 1500), (1300, 1100), (1024, 1024)])
def test_clicks_simcmf_matches_argwhere_reference(shape):
    rng = np.random.default_rng(shape[0])
    blobs = random_blobs(rng, *shape, sigma=6)
    id_map, n = ndimage.label(blobs, structure=np.ones((3, 3)))
    id_map = id_map.astype(np.uint16)
    ids = np.arange(1, n + 1)
    ids = np.concatenate([ids, [n + 5, 60000]])  # absent ids -> (-1, -1)
    got = clicks_simcmf(id_map, ids)
    np.testing.assert_array_equal(got, ref_clicks_simcmf(id_map, ids))
    assert (got[-2:] == -1).all()
    if shape[0] > 1024:  # downsampling: some single-pixel blobs must vanish
        tiny = np.zeros((2100, 1700), np.uint16)
        tiny[0, 0] = 1
        tiny[1, 1] = 2  # source row 0 and column 1 are skipped by this warp
        tiny[5, 4] = 3  # survives
        got = clicks_simcmf(tiny, [1, 2, 3])
        np.testing.assert_array_equal(got, ref_clicks_simcmf(tiny, [1, 2, 3]))
        assert (got[:2] == -1).all() and (got[2] >= 0).all()


def test_clicks_simcmf_empty_and_bad_input():
    assert clicks_simcmf(np.zeros((4, 4), np.uint16), []).shape == (0, 2)
    with pytest.raises(AimsError):
        clicks_simcmf(np.zeros((4, 4), np.float32), [1])


# --------------------------------------------------------------------------- next click


def test_next_click_hand_made_cases():
    from aims.clicks import Click, next_click

    gt = np.zeros((9, 9), bool)
    gt[1:8, 1:8] = True
    pred = np.zeros_like(gt)
    assert next_click(pred, gt) == Click(4, 4, True)          # nothing found: centre of the object
    pred = gt.copy()
    pred[0, :] = True                                         # a one-pixel FP row on the border
    pred[3:6, 3:6] = False                                    # a 3x3 hole inside: FN of depth 2
    assert next_click(pred, gt) == Click(4, 4, True)
    pred = gt.copy()
    pred[:, :] = True                                         # FP ring of width 1, no FN
    c = next_click(pred, gt)
    assert c is not None and not c.positive and pred[c.y, c.x] and not gt[c.y, c.x]
    assert next_click(gt, gt) is None
    with pytest.raises(AimsError, match="same shape"):
        next_click(gt, gt[:3])
