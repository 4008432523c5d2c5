"""Hostile interactive predictions (K masks per instance) and click-rule metadata under
``aims score``: forged click counts, K that disagrees between the metadata and the files,
later clicks of another size, huge K declared in an npz header, gaps in a PNG series.

Each case writes a valid K = 3 folder with ``PredictionWriter``, breaks one thing, runs the
installed ``aims`` and expects exit 2 with a message naming the problem, nothing written
and (for the header bomb) a bounded peak memory (the harness of ``test_predictions.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import Sandbox
from .test_predictions import (RSS_LIMIT, _zip, assert_refused, copy_dataset, npy_member, run_aims,
                               run_measured, zeros_member)

CLICKS = 3


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    from aims.scoring import iter_ground_truth, split_shards

    return list(iter_ground_truth(split_shards(nyuv2_prepared, "depth", "test")))


@dataclass
class Case:
    sandbox: Sandbox
    data: Path
    preds: Path
    gt: list

    @property
    def out(self) -> Path:
        return self.sandbox.allowed / "scores"

    def run(self, *extra, measured: bool = False):
        self.sandbox.snapshot()
        args = ["score", self.preds, "--data-dir", self.data, "--out", self.out, "--no-progress", *extra]
        if not measured:
            return run_aims(*args)
        result, rss = run_measured(*args)
        assert rss < RSS_LIMIT, f"peak RSS {rss / 2**20:.0f} MB\n{result.output}"
        return result

    def refused(self, result, *words: str) -> None:
        assert_refused(result, *words)
        assert not self.out.exists() and list(self.sandbox.allowed.iterdir()) == []
        self.sandbox.assert_nothing_outside()

    def meta(self, **changes) -> None:
        path = self.preds / "aims_predictions.json"
        doc = json.loads(path.read_text())
        doc.update(changes)
        path.write_text(json.dumps(doc))

    def records(self) -> list[dict]:
        return json.loads((self.preds / "depth.json").read_text())

    def put_records(self, recs: list[dict]) -> None:
        (self.preds / "depth.json").write_text(json.dumps(recs))


def make_case(sandbox: Sandbox, prepared: Path, gt: list, fmt: str, click_rule: str | None = "aims") -> Case:
    from aims.predictions import PredictionWriter

    data = copy_dataset(prepared, sandbox.outside / "dataset")
    preds = sandbox.outside / "preds"
    with PredictionWriter(preds, fmt=fmt, meta={"method": "gt", "model": "none"}, click_rule=click_rule) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), np.stack([g.id_map == i] * CLICKS))
    return Case(sandbox, data, preds, gt)


@pytest.fixture
def rle(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "rle")


@pytest.fixture
def npz(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "npz")


@pytest.fixture
def png(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "png")


def test_valid_case_scores(rle):
    """The harness's folder is valid: the refusals below come from the one broken thing."""
    result = rle.run()
    assert result.returncode == 0, result.output
    assert json.loads((rle.out / "results.json").read_text())["configs"]["depth"]["interactive"]["clicks"] == CLICKS


# --------------------------------------------------------------------------- forged metadata


@pytest.mark.parametrize("clicks, words", [
    (1000, ("clicks 1000", "from 1 to 20")),
    (0, ("clicks 0", "from 1 to 20")),
    (True, ("clicks True",)),
    ("3", ("clicks '3'",)),
    (2**70, ("from 1 to 20",)),
])
def test_forged_click_count_is_refused(rle, clicks, words):
    rle.meta(clicks=clicks)
    rle.refused(rle.run(), "aims_predictions.json", *words)


def test_click_count_that_disagrees_with_the_records_is_refused(rle):
    rle.meta(clicks=5)   # the records carry 3 masks each
    rle.refused(rle.run(), "depth.json record 0", "later_clicks holds 2", "declares 5")


def test_unknown_click_rule_is_refused(rle):
    rle.meta(click_rule="../../etc")
    rle.refused(rle.run(), "aims_predictions.json", "click_rule", "not one of aims, simcmf")


def test_other_protocols_click_is_refused_unless_allowed(rle):
    rle.meta(click_rule="simcmf")
    rle.refused(rle.run(), "'simcmf' click", "--allow-click-mismatch")
    allowed = rle.run("--allow-click-mismatch")
    assert allowed.returncode == 0, allowed.output
    doc = json.loads((rle.out / "results.json").read_text())
    assert doc["click_rule"] == {"predictions": "simcmf", "protocol": "aims", "match": False, "mismatch_allowed": True}


# --------------------------------------------------------------------------- RLE records


def test_huge_later_clicks_list_is_refused_before_decoding(rle):
    recs = rle.records()
    recs[1]["later_clicks"] = [recs[1]["segmentation"]] * 100_000
    rle.put_records(recs)
    rle.refused(rle.run(), "depth.json record 1", "later_clicks holds 100000", "declares 3")


def test_later_clicks_that_is_not_a_list_is_refused(rle):
    recs = rle.records()
    recs[0]["later_clicks"] = {"counts": "0"}
    rle.put_records(recs)
    rle.refused(rle.run(), "depth.json record 0", "later_clicks")


def test_later_click_of_another_size_is_refused(rle):
    recs = rle.records()
    h, w = recs[0]["segmentation"]["size"]
    recs[0]["later_clicks"][1] = {"size": [h, w + 1], "counts": [h * (w + 1)]}
    rle.put_records(recs)
    rle.refused(rle.run(), "depth.json record 0", "later_clicks[1]", "click 3", "does not match")


def test_later_click_of_an_accepted_but_different_size_is_refused(sandbox, nyuv2_prepared, gt):
    """Under simcmf both native and 256x256 masks are accepted, but not mixed within one instance."""
    case = make_case(sandbox, nyuv2_prepared, gt, "rle", click_rule=None)
    recs = case.records()
    recs[0]["later_clicks"][0] = {"size": [256, 256], "counts": [256 * 256]}
    case.put_records(recs)
    case.refused(case.run("--protocol", "simcmf"), "later_clicks[0]", "differs from the instance's first mask")


def test_forged_later_click_counts_are_refused(rle):
    """A later click's RLE gets the same exact validation as the first (wrap-around counts)."""
    recs = rle.records()
    h, w = recs[0]["segmentation"]["size"]
    recs[0]["later_clicks"][0] = {"size": [h, w], "counts": [0, 2**64 - 1, h * w + 1]}
    rle.put_records(recs)
    rle.refused(rle.run(), "depth.json record 0", "later_clicks[0]", "corrupt RLE")


# --------------------------------------------------------------------------- npz


def test_npz_with_huge_k_in_its_header_is_refused_from_the_header(npz):
    """masks declaring (N, K, H, W) with K in the thousands (gigabytes; the zip format caps a
    member at 4 GiB) against 3 declared clicks: refused from the .npy header, never decoded,
    memory bounded."""
    g = npz.gt[0]
    h, w = g.id_map.shape
    n = len(g.instance_ids)
    k = (2**32 - 2**20) // (n * h * w)
    assert k > 1000
    ids = np.asarray(g.instance_ids, np.int64)
    path = npz.preds / "depth" / f"{g.image_id}.npz"
    path.write_bytes(_zip([npy_member("instance_ids", ids), zeros_member("masks", (n, k, h, w))]))
    npz.refused(npz.run(measured=True), path.name, "K = 3 clicks")


def test_npz_k_that_disagrees_with_the_metadata_is_refused(npz):
    g = npz.gt[0]
    path = npz.preds / "depth" / f"{g.image_id}.npz"
    ids = np.asarray(g.instance_ids, np.int64)
    masks = np.stack([np.stack([g.id_map == i] * 2) for i in ids])       # K = 2, declared 3
    np.savez(path, instance_ids=ids, masks=masks)
    npz.refused(npz.run(), path.name, "(N, K, H, W)", "K = 3")


def test_one_click_npz_in_an_interactive_folder_is_refused(npz):
    g = npz.gt[0]
    path = npz.preds / "depth" / f"{g.image_id}.npz"
    ids = np.asarray(g.instance_ids, np.int64)
    np.savez(path, instance_ids=ids, masks=np.stack([g.id_map == i for i in ids]))
    npz.refused(npz.run(), path.name, "K = 3")


# --------------------------------------------------------------------------- png


def test_png_click_beyond_the_declared_count_is_refused(png):
    g = png.gt[0]
    folder = png.preds / "depth" / g.image_id
    iid = int(g.instance_ids[0])
    (folder / f"{iid}_25.png").write_bytes((folder / f"{iid}.png").read_bytes())
    png.refused(png.run(), f"{iid}_25.png", "click 25", "declares 3")


def test_png_gap_in_the_click_series_is_refused(png):
    g = png.gt[0]
    iid = int(g.instance_ids[0])
    (png.preds / "depth" / g.image_id / f"{iid}_2.png").unlink()
    png.refused(png.run(), f"instance {iid} has no mask after click 2")


def test_png_later_click_of_another_size_is_refused(png):
    from aims.imageio import encode_png

    g = png.gt[0]
    iid = int(g.instance_ids[0])
    h, w = g.id_map.shape
    (png.preds / "depth" / g.image_id / f"{iid}_3.png").write_bytes(encode_png(np.zeros((h + 1, w), np.uint8)))
    png.refused(png.run(), f"{iid}_3.png", "does not match")


@pytest.mark.parametrize("name", ["1_x.png", "1_123.png", "1__2.png", "_2.png"])
def test_png_names_outside_the_scheme_are_refused(png, name):
    g = png.gt[0]
    (png.preds / "depth" / g.image_id / name).write_bytes(b"not read")
    png.refused(png.run(), name, "unexpected entry")
