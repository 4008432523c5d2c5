"""End to end on the NYUv2 miniature with a tiny SAM: train (loss falls, validation picks a
checkpoint, resume), predict through the CLI (encoder once per image, native-size masks),
score with `aims score`, and interactive clicks."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from typer.testing import CliRunner  # noqa: E402

from aims.baselines.cli import app  # noqa: E402


@pytest.fixture(scope="module")
def trained(nyuv2_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "scratch"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # a tiny model: thread hand-offs cost more than they give
    result = CliRunner().invoke(app, [
        "train", "--config", "depth", "--strategy", "scratch", "--checkpoint", "none", "--size", "tiny",
        "--data-dir", str(nyuv2_prepared), "--out", str(out), "--lr", "3e-3", "--epochs", "10",
        "--batch-size", "2", "--no-progress", "--seed", "0"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_training_loss_falls_and_validation_selects(trained):
    out, output = trained
    assert "no validation split" in output             # the miniature has train/test only
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["epochs"]
    assert len(rows) == 10 and metrics["steps"] == 20
    losses = [float(v) for r in rows for v in r["losses"].split(",")]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.05, losses
    vals = [r["val_miou"] for r in rows]
    assert metrics["best_epoch"] == int(np.argmax(vals)) + 1 and metrics["best_val_miou"] == max(vals)
    run = json.loads((out / "run.json").read_text())
    assert "test was never used" in run["validation"]
    assert (out / "best.safetensors").is_file() and (out / "metrics.csv").is_file()
    from safetensors.torch import load_file

    best = load_file(str(out / "best.safetensors"))
    assert not any(k.startswith("sam.prompt_encoder") for k in best)   # trainable weights only
    assert run["recipe"] == "aims" and run["selection"] == "validation split"
    assert run["spec"]["adapter"] == "paper-n2-k3-d64"                 # the aims recipe's default
    assert "sam.vision_encoder.patch_embed.adapter.pre.convs.0.weight" in best
    assert "sam.vision_encoder.patch_embed.projection.weight" in best   # scratch = full: trains it


def test_resume_continues_from_state(trained, tmp_path):
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(trained[0], out)
    result = CliRunner().invoke(app, [
        "train", "--config", "depth", "--strategy", "scratch", "--checkpoint", "none", "--size", "tiny",
        "--data-dir", str(json.loads((out / "run.json").read_text())["train"]["data_dir"]),
        "--out", str(out), "--lr", "3e-3", "--epochs", "11", "--batch-size", "2", "--no-progress", "--resume"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "resumed" in result.output
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, 12)) and rows[-1]["step"] == 22


def test_predict_score_and_clicks(trained, nyuv2_prepared, tmp_path):
    from aims.cli import app as aims_app

    run, _ = trained
    preds = tmp_path / "preds"
    result = CliRunner().invoke(app, ["predict", "--config", "depth", "--run", str(run), "--out", str(preds),
                                      "--data-dir", str(nyuv2_prepared), "--no-progress", "--clicks", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "3 images, 19 instances" in result.output
    inter = json.loads((tmp_path / "preds-interactive.json").read_text())
    assert set(inter) >= {"mIoU@1", "mIoU@3", "NoC@85", "NoC@90"} and 0 <= inter["mIoU@1"] <= 1
    meta = json.loads((preds / "aims_predictions.json").read_text())["meta"]
    assert meta["method"] == "simcmf-aims-paper-n2-k3-d64-scratch"
    assert (meta["recipe"], meta["projector"], meta["strategy"]) == ("aims", "paper-n2-k3-d64", "scratch")
    scored = CliRunner().invoke(aims_app, ["score", str(preds), "--data-dir", str(nyuv2_prepared),
                                           "--out", str(tmp_path / "scores"), "--no-progress"])
    assert scored.exit_code == 0, scored.output + repr(scored.exception)
    results = json.loads((tmp_path / "scores" / "results.json").read_text())
    assert (results["meta"]["recipe"], results["meta"]["projector"], results["meta"]["strategy"]) == (
        "aims", "paper-n2-k3-d64", "scratch")                          # the results file records them

    # the same masks straight from the library, checked with a plain IoU
    from aims.baselines.data import SampleSource, config_channel_stats, load_split, modality_normalizer
    from aims.baselines.predict import instance_ious, predict
    from aims.baselines.train import load_run

    model, _ = load_run(run)
    src = SampleSource(load_split("depth", "test", nyuv2_prepared), "depth",
                       modality_normalizer("depth", config_channel_stats("depth", nyuv2_prepared)),
                       model.image_size, "sam")
    calls = []
    model.sam.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    n = 0
    for record, masks in predict(model, src):
        assert masks.shape == (len(record.instance_ids), *record.instances.shape) and masks.dtype == bool
        assert all(0.0 <= v <= 1.0 for v in instance_ious(record, masks))
        n += 1
    assert n == 3 and len(calls) == 3          # one encoder pass per image
