"""``aims score``: the command, and every kind of bad input → exit 2 naming the file."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from aims.cli import main
from aims.predictions import META_FILE, PredictionWriter
from aims.scoring import iter_ground_truth, split_shards


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    return list(iter_ground_truth(split_shards(nyuv2_prepared, "depth", "test")))


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["aims", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # undo the paragraph wrapping


def write(folder, gt, fmt="rle"):
    with PredictionWriter(folder, fmt=fmt, meta={"method": "gt", "model": "none"}) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), g.id_map == i)
    return folder


def test_score_command_writes_results(tmp_path, monkeypatch, capsys, nyuv2_prepared, gt):
    p = write(tmp_path / "preds", gt, "png")
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 0, err
    assert "depth" in out and "100.00" in out and "aims-v1" in out
    res = tmp_path / "preds-scores-aims-v1" / "results.json"
    assert json.loads(res.read_text())["configs"]["depth"]["miou"] == 1.0
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress",
                         "--protocol", "simcmf", "--out", tmp_path / "o", "--config", "depth")
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["protocol"]["version"] == "simcmf-v1"


def _rle_records(folder):
    return json.loads((folder / "depth.json").read_text())


def _put_rle(folder, records):
    (folder / "depth.json").write_text(json.dumps(records))


def bad_missing(p, gt):
    recs = _rle_records(p)
    _put_rle(p, recs[3:])
    return str(p), r"missing for 3 evaluated instance.*depth/"


def bad_unknown_image(p, gt):
    recs = _rle_records(p)
    recs[0]["image_id"] = "9999"
    _put_rle(p, recs)
    return "depth.json record 0", "image '9999' is not in split 'test'"


def bad_unknown_instance(p, gt):
    recs = _rle_records(p)
    recs[0]["instance_id"] = 999
    _put_rle(p, recs)
    return "depth.json record 0", "instance 999 is not an instance"


def bad_duplicate(p, gt):
    recs = _rle_records(p)
    (p / "more.json").write_text(json.dumps(recs[:1]))
    return "more.json record 0", "duplicate prediction"


def bad_size(p, gt):
    recs = _rle_records(p)
    from aims.predictions import rle_encode

    recs[1]["segmentation"] = rle_encode(np.ones((10, 10), bool))
    _put_rle(p, recs)
    return "depth.json record 1", "mask size 10x10"


def bad_corrupt_rle(p, gt):
    recs = _rle_records(p)
    recs[2]["segmentation"]["counts"] = recs[2]["segmentation"]["counts"][:-3]
    _put_rle(p, recs)
    return "depth.json record 2", "corrupt RLE"


def bad_json(p, gt):
    (p / "depth.json").write_text('[{"config": "depth", ')
    return "depth.json", "not valid JSON"


def bad_mixed(p, gt):
    (p / "depth").mkdir()
    np.savez(p / "depth" / f"{gt[0].image_id}.npz", instance_ids=np.array([1]), masks=np.ones((1, 2, 2), bool))
    return str(p), "mixes formats"


def bad_empty(p, gt):
    shutil.rmtree(p)
    p.mkdir()
    return str(p), "is empty"


def bad_stray_file(p, gt):
    (p / "notes.txt").write_text("x")
    return "notes.txt", "unexpected file"


@pytest.mark.parametrize("corrupt", [bad_missing, bad_unknown_image, bad_unknown_instance, bad_duplicate,
                                     bad_size, bad_corrupt_rle, bad_json, bad_mixed, bad_empty, bad_stray_file])
def test_bad_rle_input_exits_2_naming_the_file(tmp_path, monkeypatch, capsys, nyuv2_prepared, gt, corrupt):
    p = write(tmp_path / "preds", gt, "rle")
    names, message = corrupt(p, gt)
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 2, (out, err)
    assert names in err and pytest.importorskip("re").search(message, err), err
    assert "Traceback" not in err


def _npz(p, gt):
    return p / "depth" / f"{gt[0].image_id}.npz"


def npz_pickled(p, gt):
    np.savez(_npz(p, gt), instance_ids=np.array([1]), masks=np.array([{"a": 1}], dtype=object))
    return "pickled Python objects"


def npz_corrupt(p, gt):
    f = _npz(p, gt)
    f.write_bytes(f.read_bytes()[:100])
    return "not a readable npz"


def npz_nan(p, gt):
    g = gt[0]
    m = np.stack([(g.id_map == i).astype(np.float32) for i in g.instance_ids])
    m[0, 0, 0] = np.nan
    np.savez(_npz(p, gt), instance_ids=g.instance_ids, masks=m)
    return "found NaN"


def npz_nonbinary(p, gt):
    g = gt[0]
    m = np.stack([(g.id_map == i).astype(np.uint8) for i in g.instance_ids])
    m[0, 0, 0] = 7
    np.savez(_npz(p, gt), instance_ids=g.instance_ids, masks=m)
    return "must be 0 or 1, found 7"


def npz_duplicate(p, gt):
    g = gt[0]
    ids = g.instance_ids.copy()
    ids[1] = ids[0]
    np.savez(_npz(p, gt), instance_ids=ids, masks=np.stack([g.id_map == i for i in g.instance_ids]))
    return "duplicate prediction for instance"


def npz_extra_key(p, gt):
    g = gt[0]
    np.savez(_npz(p, gt), instance_ids=g.instance_ids, masks=np.stack([g.id_map == i for i in g.instance_ids]),
             scores=np.ones(len(g.instance_ids)))
    return "unexpected array"


@pytest.mark.parametrize("corrupt", [npz_pickled, npz_corrupt, npz_nan, npz_nonbinary, npz_duplicate, npz_extra_key])
def test_bad_npz_input_exits_2_naming_the_file(tmp_path, monkeypatch, capsys, nyuv2_prepared, gt, corrupt):
    p = write(tmp_path / "preds", gt, "npz")
    message = corrupt(p, gt)
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 2, (out, err)
    assert str(_npz(p, gt)) in err and message in err, err


def test_bad_png_input_exits_2_naming_the_file(tmp_path, monkeypatch, capsys, nyuv2_prepared, gt):
    from aims.imageio import encode_png

    p = write(tmp_path / "preds", gt, "png")
    f = p / "depth" / gt[0].image_id / f"{int(gt[0].instance_ids[0])}.png"
    grey = np.zeros(gt[0].id_map.shape, np.uint8)
    grey[0, :3] = (0, 128, 255)
    f.write_bytes(encode_png(grey))
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 2 and str(f) in err and "two values" in err, err
    f.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 2 and str(f) in err and "not a readable PNG" in err, err
    dup = f.with_name("0" + f.name)
    f.write_bytes(encode_png(np.zeros(gt[0].id_map.shape, np.uint8)))
    shutil.copy(f, dup)
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress")
    assert code == 2 and "duplicate prediction" in err and dup.name in err, err


def test_missing_zero_and_unprepared_dataset(tmp_path, monkeypatch, capsys, nyuv2_prepared, gt):
    p = write(tmp_path / "preds", gt, "rle")
    _put_rle(p, _rle_records(p)[2:])
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", nyuv2_prepared, "--no-progress",
                         "--missing", "zero")
    assert code == 0 and "IoU 0" in out
    code, out, err = run(monkeypatch, capsys, "score", p, "--data-dir", tmp_path / "nothing", "--no-progress")
    assert code == 2 and "aims prepare --modality depth" in err
    meta = json.loads((p / META_FILE).read_text())
    assert meta["format"] == "rle"
