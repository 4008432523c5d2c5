"""Streaming channel statistics equal numpy on the concatenated data."""

from __future__ import annotations

import numpy as np
import pytest

from aims.stats import ChannelStats


def _images(seed: int, n: int = 6, c: int = 3):
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=[[[100.0]], [[-3.0]], [[0.5]]][:c], scale=2.0,
                       size=(c, int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
            for _ in range(n)]


def _reference(images):
    flat = np.concatenate([im.reshape(im.shape[0], -1).astype(np.float64) for im in images], axis=1)
    return flat.mean(axis=1), flat.std(axis=1), flat.shape[1]


def test_matches_numpy():
    images = _images(0)
    stats = ChannelStats()
    for im in images:
        stats.update(im)
    mean, std, n = _reference(images)
    assert stats.count == n
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-10)
    assert stats.to_dict()["count"] == n


def test_merge_equals_single_pass():
    images = _images(1, n=9)
    a, b, c = ChannelStats(), ChannelStats(), ChannelStats()
    for im in images[:4]:
        a.update(im)
    for im in images[4:]:
        b.update(im)
    a.merge(b).merge(c)  # merging an empty accumulator is a no-op
    mean, std, n = _reference(images)
    assert a.count == n
    np.testing.assert_allclose(a.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(a.std, std, rtol=1e-10)
    empty = ChannelStats().merge(a)
    np.testing.assert_allclose(empty.mean, mean, rtol=1e-12)


def test_large_offset_is_stable():
    # naive E[x²]-E[x]² would lose the std entirely here
    rng = np.random.default_rng(2)
    ims = [(1e6 + rng.normal(size=(1, 50, 50))) for _ in range(4)]
    s = ChannelStats()
    for im in ims:
        s.update(im)
    np.testing.assert_allclose(s.std, _reference(ims)[1], rtol=1e-9)


def test_valid_mask_and_2d():
    im = np.arange(12, dtype=np.float32).reshape(3, 4)
    valid = im > 5
    s = ChannelStats()
    s.update(im, valid=valid)
    assert s.count == int(valid.sum())
    assert s.mean == pytest.approx([im[valid].mean()])
    assert s.std == pytest.approx([im[valid].std()])


def test_errors_and_empty():
    s = ChannelStats()
    assert s.mean == [] and s.std == [] and s.count == 0
    s.update(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="channels"):
        s.update(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError):
        s.update(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="channels"):
        s.merge(ChannelStats(channels=4))
