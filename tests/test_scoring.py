"""The scorer on the prepared NYUv2 miniature: exactness, both protocols, order independence,
missing-instance policy, results document."""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aims.errors import AimsError
from aims.predictions import META_FILE, PredictionWriter
from aims.results import load_results, validate_results
from aims.scoring import iter_ground_truth, score_predictions, split_shards

CONFIGS = ("depth", "hha")


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    return {c: list(iter_ground_truth(split_shards(nyuv2_prepared, c, "test"))) for c in CONFIGS}


def perturbed(id_map: np.ndarray, i: int, rng: np.random.Generator) -> np.ndarray:
    m = (id_map == i).astype(np.uint8)
    kind = int(rng.integers(0, 4))
    if kind == 0:
        m = cv2.dilate(m, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 6)))
    elif kind == 1:
        m = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 6)))
    elif kind == 2:
        m = np.roll(m, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
    return m.astype(bool)


def simcmf_256(mask: np.ndarray) -> np.ndarray:
    """A prediction made directly in the reference's 256×256 output frame."""
    big = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((1024, 1024), Image.NEAREST))
    return np.roll(big[::4, ::4], 1, axis=1) > 0


def write(folder, gt, fmt="rle", *, seed=0, exact=False, skip=(), size256=(), meta=None):
    rng = np.random.default_rng(seed)
    masks = {}
    with PredictionWriter(folder, fmt=fmt, meta=meta or {"method": "test", "model": "none"}) as w:
        for c, images in gt.items():
            for g in images:
                for i in g.instance_ids:
                    if (c, g.image_id, int(i)) in skip:
                        continue
                    m = (g.id_map == i) if exact else perturbed(g.id_map, int(i), rng)
                    if c in size256:
                        m = simcmf_256(m)
                    masks[(c, g.image_id, int(i))] = m
                    w.add(c, g.image_id, int(i), m)
    return masks


@pytest.mark.parametrize("fmt", ["rle", "npz", "png"])
@pytest.mark.parametrize("protocol", ["aims", "simcmf"])
def test_scoring_the_ground_truth_gives_exactly_one(tmp_path, nyuv2_prepared, gt, fmt, protocol):
    write(tmp_path / "p", gt, fmt, exact=True)
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, protocol=protocol)
    ev = s.table[s.table["evaluated"]]
    assert len(ev) > 0 and (ev["iou"] == 1.0).all()
    summary = s.summary()
    assert set(summary) == set(CONFIGS)
    for c in CONFIGS:
        assert summary[c]["miou"] == 1.0 and summary[c]["image_miou"] == 1.0
        assert summary[c]["n_instances"] == sum(g.instance_ids.size for g in gt[c])


def test_aims_protocol_equals_plain_iou_at_native_resolution(tmp_path, nyuv2_prepared, gt):
    masks = write(tmp_path / "p", gt, "npz", seed=4)
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared)
    t = s.table.set_index(["config", "image_id", "instance_id"])
    n = 0
    for c, images in gt.items():
        for g in images:
            for i, a in zip(g.instance_ids, g.area):
                p, gm = masks[(c, g.image_id, int(i))], g.id_map == i
                row = t.loc[(c, g.image_id, int(i))]
                assert row["iou"] == np.count_nonzero(p & gm) / np.count_nonzero(p | gm)
                assert row["evaluated"] == (a >= 100) and row["area"] == a
                n += int(a >= 100)
    assert s.summary()["depth"]["n_evaluated"] + s.summary()["hha"]["n_evaluated"] == n
    assert 0.2 < s.summary()["depth"]["miou"] < 0.95  # perturbations really change the masks


def reference_simcmf(id_map: np.ndarray, preds: dict[int, np.ndarray], threshold: int) -> dict[int, float]:
    """The SimCMF reference computation written out plainly (PIL resize, numpy indexing)."""
    mask = np.array(Image.fromarray(id_map.astype(np.int32), "I").resize((1024, 1024), Image.NEAREST))
    valid = [int(r) for r, cnt in zip(*np.unique(mask, return_counts=True)) if r > 0 and cnt > threshold]
    idx = np.floor(np.arange(256, dtype=np.float32) * np.float32(1024 / 256)).astype(np.int64)
    label = mask[idx][:, idx]  # torchvision Resize(256, NEAREST) on the tensor
    out = {}
    for rid in valid:
        gt_mask = label == rid
        p = preds[rid]
        if p.shape != (256, 256):
            p = np.array(Image.fromarray(p.astype(np.uint8)).resize((1024, 1024), Image.NEAREST))[idx][:, idx] > 0
        inter = np.logical_and(p, gt_mask).sum()
        union = np.logical_or(p, gt_mask).sum()
        out[rid] = (inter + 1e-6) / (union + 1e-6)
    return out


def test_simcmf_protocol_equals_the_reference_computation(tmp_path, nyuv2_prepared, gt):
    # depth predictions at native size, hha predictions in the 256×256 output frame
    masks = write(tmp_path / "p", gt, "rle", seed=5, size256=("hha",))
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, protocol="simcmf")
    t = s.table.set_index(["config", "image_id", "instance_id"])
    for c, images in gt.items():
        all_ref = []
        for g in images:
            ref = reference_simcmf(g.id_map, {int(i): masks[(c, g.image_id, int(i))] for i in g.instance_ids}, 0)
            evaluated = {int(i) for i in g.instance_ids if t.loc[(c, g.image_id, int(i)), "evaluated"]}
            assert evaluated == set(ref)
            for i, v in ref.items():
                assert t.loc[(c, g.image_id, i), "iou"] == pytest.approx(v, rel=1e-12, abs=0)
            all_ref += list(ref.values())
        assert s.summary()[c]["miou"] == pytest.approx(np.mean(all_ref), rel=1e-12)
    assert s.results()["protocol"]["version"] == "simcmf-v1"


def test_scores_do_not_depend_on_file_order(tmp_path, nyuv2_prepared, gt):
    write(tmp_path / "a", gt, "rle", seed=7)
    records = []
    for c in CONFIGS:
        records += json.loads((tmp_path / "a" / f"{c}.json").read_text())
    random.Random(0).shuffle(records)
    b = tmp_path / "b"
    b.mkdir()
    (b / "zz.json").write_text(json.dumps(records[: len(records) // 2]))
    (b / "aa.json").write_text(json.dumps(records[len(records) // 2 :]))
    (b / META_FILE).write_text((tmp_path / "a" / META_FILE).read_text())
    sa = score_predictions(tmp_path / "a", data_dir=nyuv2_prepared)
    sb = score_predictions(b, data_dir=nyuv2_prepared)
    pd.testing.assert_frame_equal(sa.table, sb.table)
    assert sa.summary() == sb.summary()
    # npz with the instances of each image in reverse order
    write(tmp_path / "n", gt, "npz", seed=7)
    for f in (tmp_path / "n").glob("*/*.npz"):
        with np.load(f) as z:
            d = {k: z[k] for k in z.files}
        np.savez(f, instance_ids=d["instance_ids"][::-1], masks_packed=d["masks_packed"][::-1], shape=d["shape"])
    pd.testing.assert_frame_equal(sa.table, score_predictions(tmp_path / "n", data_dir=nyuv2_prepared).table)


def test_missing_predictions_error_or_zero(tmp_path, nyuv2_prepared, gt):
    g = gt["depth"][0]
    skip = {("depth", g.image_id, int(i)) for i in g.instance_ids[:7]}
    write(tmp_path / "p", {"depth": gt["depth"]}, "rle", skip=skip)
    with pytest.raises(AimsError, match=r"missing for 7 evaluated instance\(s\).*and 2 more.*--missing zero"):
        score_predictions(tmp_path / "p", data_dir=nyuv2_prepared)
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, missing="zero")
    t = s.table
    miss = t[t["missing"]]
    assert len(miss) == 7 and (miss["iou"] == 0).all()
    assert s.summary()["depth"]["n_missing"] == 7
    doc = s.results()
    assert doc["missing_policy"] == "zero" and doc["configs"]["depth"]["n_missing"] == 7
    assert "IoU 0" in s.format_table()


def test_results_document_validates_and_records_provenance(tmp_path, nyuv2_prepared, gt):
    meta = {"method": "simcmf-lora", "model": "sam-vit-b", "lr": 3e-4}
    write(tmp_path / "p", gt, "npz", meta=meta)
    s = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, configs=["depth"])
    paths = s.write(tmp_path / "out")
    doc = load_results(paths["results"])
    assert doc["method"] == "simcmf-lora" and doc["model"] == "sam-vit-b" and doc["meta"]["lr"] == 3e-4
    assert doc["protocol"]["name"] == "aims" and doc["protocol"]["version"] == "aims-v1"
    assert doc["protocol"]["rules"]["min_area"] == 100
    assert doc["dataset"]["fingerprint"].startswith("sha256:") and list(doc["dataset"]["files"]) == ["depth"]
    assert list(doc["configs"]) == ["depth"] and doc["not_scored"] == {"hha": 3}
    assert doc["headline"] == {**doc["headline"], "complete": False, "miou": None}
    c = doc["configs"]["depth"]
    lo, hi = c["ci95"]
    assert lo <= c["miou"] <= hi
    assert sum(b["n"] for b in c["by_size"].values()) == c["n_evaluated"]
    assert sum(b["n"] for b in c["by_category"].values()) == c["n_evaluated"]
    table = pd.read_parquet(paths["instances"])
    assert {"config", "image_id", "instance_id", "category", "area", "iou", "evaluated", "missing"} <= set(table)
    assert "depth" in paths["summary"].read_text()
    # the fingerprint is reproducible, and the schema rejects a tampered document
    s2 = score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, configs=["depth"])
    assert s2.dataset["fingerprint"] == doc["dataset"]["fingerprint"]
    bad = dict(doc, protocol={**doc["protocol"], "version": "v1"})
    with pytest.raises(AimsError, match="protocol/version"):
        validate_results(bad)
    with pytest.raises(AimsError, match="miou"):
        validate_results(dict(doc, configs={"depth": {**c, "miou": 1.5}}))


def test_headline_needs_all_five_modalities():
    from aims.protocols import get_protocol
    from aims.scoring import HEADLINE_MODALITIES, Scores

    s = Scores(table=pd.DataFrame(), protocol=get_protocol("aims"), split="test", missing_policy="error", configs=[])
    summary = {c: {"miou": 0.1 * (k + 1)} for k, c in enumerate(HEADLINE_MODALITIES.values())}
    h = s.headline(summary)
    assert h["complete"] and h["miou"] == pytest.approx(0.3)
    assert "polarization-zju" not in h["modalities"]
    del summary["nir"]
    assert s.headline(summary) == {**s.headline(summary), "complete": False, "miou": None}


# --------------------------------------------------------------------------- the scores folder


def _scored(tmp_path, nyuv2_prepared, gt):
    write(tmp_path / "p", {"depth": gt["depth"]}, "rle", exact=True)
    return score_predictions(tmp_path / "p", data_dir=nyuv2_prepared, configs=["depth"])


def test_scores_folder_is_written_whole_and_replaced_whole(tmp_path, nyuv2_prepared, gt):
    from aims.scoring import SCORES_FILES, is_scores_folder

    s = _scored(tmp_path, nyuv2_prepared, gt)
    out = tmp_path / "runs" / "scores"
    paths = s.write(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(SCORES_FILES) and is_scores_folder(out)
    assert paths["results"] == out / "results.json"
    # the leftover of the old writer on a full disk: instances.parquet without results.json
    (out / "results.json").unlink()
    (out / ".summary.txt.tmp").write_text("half")
    assert is_scores_folder(out)
    s.write(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(SCORES_FILES)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores"]  # no temporaries left
    assert load_results(out / "results.json")["configs"]["depth"]["miou"] == 1.0


@pytest.mark.parametrize("content", ["foreign-file", "foreign-results", "link", "file"])
def test_scores_folder_that_is_not_ours_is_refused(tmp_path, nyuv2_prepared, gt, content):
    s = _scored(tmp_path, nyuv2_prepared, gt)
    out = tmp_path / "out"
    if content == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        if content == "foreign-file":
            (out / "results.json").write_text(json.dumps({"results_format": 1}))
            (out / "notes.md").write_text("mine")
        elif content == "foreign-results":
            (out / "results.json").write_text(json.dumps({"my": "own results"}))
        else:
            (out / "results.json").symlink_to(tmp_path / "p" / META_FILE)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(AimsError, match="--out"):
        s.write(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if content == "file":
        assert out.read_text() == "mine"


def test_rle_intersections_refuses_unvalidated_counts():
    from aims.metrics import rle_intersections

    label = np.zeros((4, 5), np.int64)
    label[1:3, 1:4] = 1
    boxes = np.array([[1, 1, 3, 2]])
    ok = rle_intersections(label, np.array([1]), boxes, [np.array([0, 20])])
    assert ok[0].tolist() == [6] and ok[1].tolist() == [20]
    t = 2**63
    forged = np.array([0, 20, 0, t - 21, 1, t - 1, 21, 8, t - 1, 0, t - 7], dtype=np.int64)
    assert int(forged.sum()) == 20  # wraps around: what the old check accepted
    with pytest.raises(ValueError, match="validated"):
        rle_intersections(label, np.array([1]), boxes, [forged])
    with pytest.raises(ValueError, match="cover"):
        rle_intersections(label, np.array([1]), boxes, [np.array([0, 19])])


def test_predictions_are_checked_against_the_image_before_decoding(tmp_path, nyuv2_prepared, gt):
    from aims.predictions import ExpectedImage, read_predictions

    write(tmp_path / "p", {"depth": gt["depth"]}, "npz", exact=True)
    pf = read_predictions(tmp_path / "p")
    g = gt["depth"][0]
    h, w = g.id_map.shape
    ok = pf.image("depth", g.image_id, ExpectedImage(((h, w),), len(g.instance_ids), "image x"))
    assert len(ok) == len(g.instance_ids)
    with pytest.raises(AimsError, match=f"mask size {h}x{w} .* does not match image x: expected {w}x{h}"):
        pf.image("depth", g.image_id, ExpectedImage(((w, h),), len(g.instance_ids), "image x"))
    with pytest.raises(AimsError, match="at most 2 instance"):
        pf.image("depth", g.image_id, ExpectedImage(((h, w),), 2, "image x"))
