"""Prediction formats: the COCO RLE codec against pycocotools, writers and readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aims.errors import AimsError
from aims.predictions import (
    META_FILE,
    PredictionWriter,
    counts_to_string,
    read_predictions,
    rle_counts,
    rle_decode,
    rle_encode,
    string_to_counts,
)

mask_utils = pytest.importorskip("pycocotools.mask")
# pycocotools' decode trips a numpy 2 deprecation inside its own code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _coco(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def _random_masks(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        kind = k % 4
        if kind == 0:
            m = rng.random((h, w)) < rng.random()
        elif kind == 1:  # one rectangle (few long runs)
            m = np.zeros((h, w), bool)
            m[rng.integers(0, h):, rng.integers(0, w):] = True
        elif kind == 2:
            m = np.ones((h, w), bool) if k % 8 == 2 else np.zeros((h, w), bool)
        else:  # first pixel set: COCO starts with an empty run of zeros
            m = rng.random((h, w)) < 0.1
            m[0, 0] = True
        yield m


def test_rle_encode_is_byte_identical_to_pycocotools():
    for m in _random_masks(0, 400):
        assert rle_encode(m) == _coco(m)


def test_rle_decode_inverts_pycocotools_strings():
    for m in _random_masks(1, 400):
        ref = _coco(m)
        got = rle_decode(ref)
        assert got.dtype == bool and got.shape == m.shape
        assert np.array_equal(got, m)
        assert np.array_equal(got, mask_utils.decode({"size": ref["size"], "counts": ref["counts"].encode()}) > 0)


def test_rle_large_counts_and_negative_deltas():
    # counts > 2**20 need 5+ groups; a long run after short ones gives big negative deltas
    m = np.zeros((1500, 2100), bool)
    m[0, 0] = True
    m[1400:, 2000:] = True
    m[3, 5:9] = True
    assert rle_encode(m) == _coco(m)
    assert np.array_equal(rle_decode(_coco(m)), m)
    c = rle_counts(m)
    assert c.sum() == m.size and c[0] == 0
    assert np.array_equal(string_to_counts(counts_to_string(c)), c)


def test_rle_uncompressed_counts_are_accepted():
    m = np.zeros((4, 5), bool)
    m[1:3, 2:4] = True
    counts = rle_counts(m).tolist()
    assert np.array_equal(rle_decode({"size": [4, 5], "counts": counts}), m)


@pytest.mark.parametrize(
    "counts, why",
    [
        ("0!", "alphabet"),       # '!' < '0'
        ("0p", "alphabet"),       # 'p' > 'o'
        ("0Q", "truncated"),      # 'Q' has the continuation bit and nothing follows
        ("oooooooooooooooo0", "groups"),
    ],
)
def test_string_to_counts_rejects_corrupt_strings(counts, why):
    with pytest.raises(ValueError):
        string_to_counts(counts)


def test_rle_decode_rejects_wrong_total():
    good = rle_encode(np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="cover"):
        rle_decode({"size": [3, 4], "counts": good["counts"]})


@pytest.mark.parametrize("fmt", ["rle", "npz", "png"])
def test_writer_roundtrip(tmp_path, fmt):
    rng = np.random.default_rng(3)
    masks = {}
    out = tmp_path / "pred"
    with PredictionWriter(out, fmt=fmt, meta={"method": "m", "model": "sam-vit-b", "lr": 3e-4}) as w:
        # image "a" comes back after "b": the npz writer must merge, not overwrite
        for image_id, iid in [("a", 1), ("a", 2), ("b", 1), ("a", 3)]:
            m = rng.random((7, 11)) < 0.4
            masks[("depth", image_id, iid)] = m
            w.add("depth", image_id, iid, m.astype(np.uint8) if iid == 2 else m)
        w.add("hha", "a", 5, np.zeros((7, 11), np.float32))
        masks[("hha", "a", 5)] = np.zeros((7, 11), bool)
        assert not out.exists()  # nothing appears before the end of the run
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == fmt and meta["meta"]["model"] == "sam-vit-b" and meta["counts"] == {"depth": 4, "hha": 1}
    pf = read_predictions(out)
    assert pf.format == fmt and pf.meta["method"] == "m" and pf.configs == ["depth", "hha"]
    got = {}
    for c in pf.configs:
        for image_id in pf.index[c]:
            ip = pf.image(c, image_id)
            for k, iid in enumerate(ip.ids):
                m = ip.dense[k] if ip.dense is not None else rle_decode(
                    {"size": ip.sizes[k].tolist(), "counts": ip.counts[k].tolist()})
                got[(c, image_id, int(iid))] = m
    assert got.keys() == masks.keys()
    for k, m in masks.items():
        assert np.array_equal(got[k], m), k


def test_writer_refuses_bad_masks_and_duplicates(tmp_path):
    with PredictionWriter(tmp_path / "p", fmt="npz") as w:
        w.add("depth", "a", 1, np.zeros((4, 4), bool))
        with pytest.raises(ValueError, match="duplicate"):
            w.add("depth", "a", 1, np.zeros((4, 4), bool))
        with pytest.raises(ValueError, match="0 or 1"):
            w.add("depth", "a", 2, np.full((4, 4), 2, np.uint8))
        nan = np.zeros((4, 4), np.float32)
        nan[0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            w.add("depth", "a", 3, nan)
        with pytest.raises(ValueError, match="2-D"):
            w.add("depth", "a", 4, np.zeros((1, 4, 4), bool))
        with pytest.raises(ValueError, match="differs"):
            w.add("depth", "a", 5, np.zeros((5, 4), bool))
        with pytest.raises(ValueError, match="file name"):
            w.add("depth", "../x", 6, np.zeros((4, 4), bool))
        with pytest.raises(ValueError, match="instance_id"):
            w.add("depth", "a", 0, np.zeros((4, 4), bool))


def test_writer_is_atomic_and_never_replaces_foreign_folders(tmp_path):
    out = tmp_path / "p"
    with pytest.raises(RuntimeError):
        with PredictionWriter(out, fmt="png") as w:
            w.add("depth", "a", 1, np.ones((3, 3), bool))
            raise RuntimeError("model crashed")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary leftovers
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AimsError, match="not a predictions folder"):
        PredictionWriter(out, overwrite=True)
    (out / "notes.txt").unlink()
    with PredictionWriter(out) as w:  # an empty folder is fine
        w.add("depth", "a", 1, np.ones((3, 3), bool))
    with pytest.raises(AimsError, match="overwrite=True"):
        PredictionWriter(out)
    with PredictionWriter(out, fmt="npz", overwrite=True) as w:
        w.add("depth", "a", 1, np.ones((3, 3), bool))
    assert read_predictions(out).format == "npz"
