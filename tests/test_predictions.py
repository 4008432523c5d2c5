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
            w.add("depth", "a", 4, np.zeros((1, 1, 4, 4), bool))
        with pytest.raises(ValueError, match="earlier instances had 1"):  # K masks: the same K for all
            w.add("depth", "a", 4, np.zeros((3, 4, 4), bool))
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


# --------------------------------------------------------------------------- hostile RLE
# Every malformed RLE below is refused by our codec (aims.rle) with RleError. pycocotools is
# run on the same input: where it raises too, the test asserts it; where it does NOT raise
# but returns something (zero-padding, truncation, uninitialised memory), the test asserts
# that it returns and names the behaviour in the case id — "we refuse what pycocotools
# silently accepts" is the honest summary of those cases.

from aims import rle as aims_rle  # noqa: E402

H, W = 3, 4
T63 = 2**63


def coco_string(values: list[int]) -> str:
    """COCO's counts string of raw VALUES (already delta-coded), with as many 5-bit
    groups as each value needs — also values no real encoder would write."""
    out = []
    for x in values:
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not c & 0x10) or (x == -1 and c & 0x10))
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


def forged_counts(hw: int, gt_area: int) -> list[int]:
    """Counts whose int64 sum wraps around to exactly ``hw`` and whose runs of 1, summed in
    int64, have ``gt_area`` pixels, while the first run of 1 covers the whole image: the
    old scorer took it for a perfect mask of any instance of area ``gt_area``. Every
    later run starts and ends outside [0, hw) (wrapped), so it adds no intersection."""
    c = [0, hw, 0, T63 - 1 - hw, 1, T63 - 1, hw + 1, 2 + gt_area, T63 - 1, 0, T63 - 1 - gt_area]
    assert sum(c) % 2**64 == hw and sum(c[1::2]) % 2**64 == gt_area and all(0 <= v < T63 for v in c)
    return c


def _seg(counts, size=(H, W)):
    return {"size": list(size), "counts": counts}


def _coco_decode(seg: dict) -> np.ndarray:
    h, w = seg["size"]
    if isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})


def _coco_lenient(check):
    """pycocotools returns instead of raising; ``check`` asserts what it returns."""
    return check


RAISES = None
MALFORMED = {
    # -- both refuse
    "total-over-list": (_seg([0, 13]), RAISES),
    "total-over-string": (_seg(coco_string([0, 13])), RAISES),
    "negative-list": (_seg([-1, 13]), RAISES),
    "negative-string": (_seg(coco_string([0, 12, 0, -13])), RAISES),
    "int64-wraparound-list (the forged score)": (_seg(forged_counts(H * W, 5)), RAISES),
    "uint32-wraparound-list": (_seg([0, 2**32 - 1, 13]), RAISES),
    "uint32-wraparound-string": (_seg(coco_string([0, 2**32 - 1, 13])), RAISES),
    "overflowing-string-13-groups": (_seg(coco_string([0, 2**62, 0])), RAISES),
    "alphabet-low": (_seg("0!"), RAISES),
    "truncated-string": (_seg("0Q"), RAISES),
    "non-ascii-string": (_seg("0é"), RAISES),
    "negative-size": (_seg("0<", (-3, 4)), RAISES),
    # -- pycocotools accepts, we refuse
    "total-short-list: pycocotools zero-pads": (
        _seg([0, 11]), _coco_lenient(lambda m: m.ravel(order="F").tolist() == [1] * 11 + [0])),
    "total-short-string: pycocotools leaves the rest uninitialised": (
        _seg(coco_string([0, 11])), _coco_lenient(lambda m: m.shape == (H, W) and m.ravel(order="F")[:11].all())),
    # truncated to 0, 1, 10: 11 of 12 pixels; the 12th is uninitialised memory, not checked
    "float-counts: pycocotools truncates": (
        _seg([0, 1.5, 10.5]), _coco_lenient(lambda m: m.ravel(order="F")[:11].tolist() == [1] + [0] * 10)),
    "bool-counts: pycocotools reads True as 1": (
        _seg([0, True, 11]), _coco_lenient(lambda m: m.ravel(order="F").tolist() == [1] + [0] * 11)),
    "too-many-runs-list: pycocotools decodes zero runs": (
        _seg([0] * 14 + [12]), _coco_lenient(lambda m: m.shape == (H, W) and not m.any())),
    "too-long-string: pycocotools returns uninitialised memory": (
        _seg("0" * (6 * (H * W + 1) + 1)), _coco_lenient(lambda m: m.shape == (H, W))),
    "alphabet-high: pycocotools drops bit 0x40 ('|' reads as '<')": (
        _seg("0|"), _coco_lenient(lambda m: m.shape == (H, W) and m.all())),
    "bool-size: pycocotools reads True as 1": (
        _seg("0<", (True, 12)), _coco_lenient(lambda m: m.shape == (1, 12) and m.all())),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_rle_is_refused_and_pycocotools_agrees_or_is_lenient(case):
    seg, coco = MALFORMED[case]
    with pytest.raises(aims_rle.RleError):
        aims_rle.decode(seg)
    with pytest.raises(aims_rle.RleError):
        aims_rle.area(seg)
    if coco is RAISES:
        with pytest.raises((ValueError, OverflowError, TypeError)):
            _coco_decode(seg)
    else:
        assert coco(_coco_decode(seg)), case


def test_huge_size_is_refused_before_anything_is_allocated():
    seg = _seg("0", (100000, 100000))
    with pytest.raises(aims_rle.RleError, match="100000x100000"):
        aims_rle.decode(seg)
    # pycocotools does not look at the size before decoding (decode would allocate 10 GB,
    # so it is not called here); its area() reports 0 without complaint
    assert int(mask_utils.area({"size": [100000, 100000], "counts": b"0"})) == 0


def test_forged_wraparound_would_have_passed_an_int64_sum():
    c = forged_counts(480 * 640, 1234)
    assert int(np.asarray(c, np.int64).sum()) == 480 * 640  # what the old check computed
    with pytest.raises(aims_rle.RleError, match="forged"):
        aims_rle.validate(_seg(c, (480, 640)))


def test_rle_area_and_fr_py_objects_match_pycocotools():
    for m in _random_masks(5, 60):
        counts = rle_counts(m).tolist()
        seg = {"size": list(m.shape), "counts": counts}
        h, w = m.shape
        ref = mask_utils.frPyObjects(seg, h, w)
        assert aims_rle.fr_py_objects(seg, h, w) == {"size": list(ref["size"]), "counts": ref["counts"].decode()}
        assert aims_rle.area(seg) == int(mask_utils.area(ref)) == int(m.sum())


def test_rle_size_must_be_an_accepted_size():
    seg = rle_encode(np.ones((3, 4), bool))
    with pytest.raises(aims_rle.RleSizeError, match="3x4"):
        aims_rle.validate(seg, [(4, 3)])
    assert aims_rle.validate(seg, [(4, 3), (3, 4)])[0] == (3, 4)


def test_png_header_is_read_without_decoding():
    from aims.imageio import encode_png
    from aims.predictions import read_png_header

    hdr = read_png_header(encode_png(np.zeros((7, 11), np.uint8)))
    assert (hdr.width, hdr.height, hdr.bit_depth, hdr.colour_type, hdr.channels) == (11, 7, 8, 0, 1)
    hdr = read_png_header(encode_png(np.zeros((5, 3, 3), np.uint16)))
    assert (hdr.width, hdr.height, hdr.bit_depth, hdr.channels) == (3, 5, 16, 3)
    for bad in (b"", b"\x89PNG\r\n\x1a\n", b"GIF89a" + bytes(40), encode_png(np.zeros((2, 2), np.uint8))[:20]):
        with pytest.raises(ValueError):
            read_png_header(bad)
