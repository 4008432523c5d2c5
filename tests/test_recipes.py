"""The named recipes at tiny size on the NYUv2 miniature: the reference recipe trains with the
reference's inputs, schedule and random stream (resumed exactly), labels test-split
selection, predicts zero-shot the reference's way; the aims recipe takes a modality
registered at run time; recipe files parse and the shipped ones are the generator's; the
reproduction plan lists the paper's runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from typer.testing import CliRunner  # noqa: E402

from aims.baselines.cli import app  # noqa: E402
from aims.errors import AimsError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_REFERENCE = ["--recipe", "reference", "--strategy", "scratch", "--checkpoint", "none", "--size", "tiny",
                  "--no-progress", "--batch-size", "2"]


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(*args: str) -> str:
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def reference_run(nyuv2_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    output = _train("--config", "depth", *TINY_REFERENCE, "--data-dir", str(nyuv2_prepared), "--out", str(out),
                    "--lr", "3e-3", "--epochs", "9", "--eval-every", "4")
    return out, output


def test_reference_recipe_trains_and_the_loss_falls(reference_run):
    out, output = reference_run
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"] == "reference" and run["selection"] == "validation split"
    train = run["train"]
    assert (train["seed"], train["dtype"], train["resize"], train["epochs"], train["eval_every"]) == (
        8888, "fp32", "warp", 9, 4)
    assert run["spec"]["adapter"] == "simcmf"                          # the reference code's default
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["epochs"]
    # evaluated before epochs 0, 4 and 8 (the last): after 0, 4 and 8 epochs of training
    assert [r["val_at"] for r in rows if r["val_at"] is not None] == [0, 4, 8]
    assert all(r["val_dice"] is not None for r in rows if r["val_at"] is not None)
    assert metrics["best_epoch"] in (0, 4, 8) and metrics["recipe"] == "reference"
    losses = [float(v) for r in rows for v in r["losses"].split(",")]
    assert len(losses) == metrics["steps"] >= 18
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.05, losses
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["rng"]["kind"] == "MT19937" and len(state["rng"]["keys"]) == 624


def test_reference_stream_resumes_where_it_stopped(nyuv2_prepared, tmp_path):
    """Two epochs, then --resume to three, equal three epochs straight: the numpy stream of
    the reference's draws travels in state.pt."""
    from safetensors.torch import load_file

    common = ["--config", "depth", *TINY_REFERENCE, "--data-dir", str(nyuv2_prepared), "--lr", "3e-3"]
    _train(*common, "--out", str(tmp_path / "straight"), "--epochs", "3")
    _train(*common, "--out", str(tmp_path / "resumed"), "--epochs", "2")
    assert "resumed" in _train(*common, "--out", str(tmp_path / "resumed"), "--epochs", "3", "--resume")
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())["epochs"]
    b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["epochs"]
    assert [r["losses"] for r in a] == [r["losses"] for r in b]
    wa, wb = load_file(tmp_path / "straight" / "last.safetensors"), load_file(tmp_path / "resumed" / "last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_reference_evaluation_counts_every_instance(nyuv2_prepared):
    """Depth has no area threshold: every id > 0 of every image is evaluated once."""
    from aims.baselines.data import load_split
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.reference_data import ReferenceSampleSource, reference_evaluate
    from aims.baselines.reference_inputs import reference_spec
    from aims.decoders import to_array

    torch.manual_seed(0)
    model = build_model(ModelSpec("tiny", "simcmf", "scratch", in_channels=1))
    rows = load_split("depth", "test", nyuv2_prepared)
    scores = reference_evaluate(model, ReferenceSampleSource(rows, reference_spec("depth"), model.image_size))
    from aims.clicks import warp_nearest

    expected = sum(int((np.unique(warp_nearest(to_array(r["instances"]), (1024, 1024))) > 0).sum()) for r in rows)
    assert scores.instances == expected > 0 and scores.images == len(rows)
    assert 0 <= scores.iou <= 1 and 0 <= scores.dice <= 1 and np.isfinite(scores.loss)


def test_select_on_test_is_labelled_everywhere(nyuv2_prepared, tmp_path):
    out = tmp_path / "on-test"
    output = _train("--config", "depth", *TINY_REFERENCE, "--data-dir", str(nyuv2_prepared), "--out", str(out),
                    "--epochs", "1", "--select-on-test")
    assert "TEST split" in output
    run = json.loads((out / "run.json").read_text())
    assert run["selection"].startswith("test split") and run["train"]["select_on_test"] is True
    assert "best_test_miou" in json.loads((out / "metrics.json").read_text())
    preds = tmp_path / "preds"
    result = CliRunner().invoke(app, ["predict", "--config", "depth", "--run", str(out), "--out", str(preds),
                                      "--data-dir", str(nyuv2_prepared), "--no-progress", "--protocol", "simcmf"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    meta = json.loads((preds / "aims_predictions.json").read_text())["meta"]
    assert meta["method"] == "simcmf-reference-simcmf-scratch-selected-on-test"
    assert meta["selected_on_test"] is True and meta["recipe"] == "reference" and meta["resize"] == "warp"
    refused = CliRunner().invoke(app, ["train", "--config", "depth", "--size", "tiny", "--select-on-test",
                                       "--data-dir", str(nyuv2_prepared), "--out", str(tmp_path / "x")])
    assert isinstance(refused.exception, AimsError) and "only under --recipe reference" in str(refused.exception)


def test_zero_shot_reference_and_aims(nyuv2_prepared, tmp_path):
    for recipe_name, method, multimask in (("reference", "sam-zero-shot-reference", False),
                                           ("aims", "sam-zero-shot", True)):
        preds = tmp_path / recipe_name
        result = CliRunner().invoke(app, ["predict", "--config", "depth", "--recipe", recipe_name, "--checkpoint",
                                          "none", "--size", "tiny", "--out", str(preds), "--data-dir",
                                          str(nyuv2_prepared), "--no-progress"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        meta = json.loads((preds / "aims_predictions.json").read_text())["meta"]
        assert (meta["method"], meta["multimask"], meta["projector"]) == (method, multimask, "zeroshot")
        assert meta["modality"] == ("depth" if recipe_name == "reference" else "rgb")


def test_aims_recipe_takes_a_modality_registered_at_run_time(nyuv2_prepared, tmp_path):
    from aims.modalities import Modality, register_modality, unregister_modality

    register_modality(Modality("depth-then-rgb", ("depth", "rgb")))
    try:
        out = tmp_path / "own"
        _train("--config", "depth", "--modality", "depth-then-rgb", "--size", "tiny", "--strategy", "lora",
               "--max-steps", "1", "--no-progress", "--data-dir", str(nyuv2_prepared), "--out", str(out))
        run = json.loads((out / "run.json").read_text())
        assert run["modality"] == "depth-then-rgb" and run["spec"]["in_channels"] == 4
    finally:
        unregister_modality("depth-then-rgb")
    result = CliRunner().invoke(app, ["train", "--config", "depth", "--modality", "depth-then-rgb", "--size",
                                      "tiny", "--data-dir", str(nyuv2_prepared), "--out", str(tmp_path / "gone")])
    assert isinstance(result.exception, AimsError) and "unknown modality 'depth-then-rgb'" in str(result.exception)


def test_recipe_file_settings_and_command_line_overrides(nyuv2_prepared, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("recipe: reference\nconfig: depth\nstrategy: scratch\nadapter: paper-n1-k1-d8\n"
                      "size: tiny\nepochs: 3\nseed: 7\nlr: 3.0e-3\nrow: a tiny test\n")
    out = tmp_path / "from-file"
    _train("--recipe-file", str(recipe), "--epochs", "1", "--batch-size", "2", "--data-dir", str(nyuv2_prepared),
           "--out", str(out), "--no-progress")
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"] == "reference" and run["spec"]["adapter"] == "paper-n1-k1-d8"
    assert (run["train"]["epochs"], run["train"]["seed"], run["train"]["lr"]) == (1, 7, 3e-3)   # --epochs wins
    assert run["train"]["recipe_file"] == str(recipe)


def test_shipped_recipe_files_are_the_generators(tmp_path):
    from aims.baselines.paper_grid import all_cells, write_recipe_files
    from aims.baselines.recipe_files import read_recipe_file

    written = write_recipe_files(tmp_path)
    shipped = sorted(p.relative_to(REPO / "recipes") for p in (REPO / "recipes").rglob("*.yaml"))
    assert sorted(p.relative_to(tmp_path) for p in written) == shipped
    assert len(shipped) == len(all_cells()) == 5 + 20 + 24 + 7 + 4 * 4     # + Table 6's RGB-X systems
    for rel in shipped:
        assert (REPO / "recipes" / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
        parsed = read_recipe_file(REPO / "recipes" / rel)
        assert parsed.get("recipe") == "reference"
        if not parsed.zero_shot:
            assert len(parsed.get("lr_sweep")) == 7
    lora = read_recipe_file(REPO / "recipes" / "table3" / "thermal-lora.yaml")
    assert (lora.get("strategy"), lora.get("adapter"), lora.get("paper_miou")) == ("lora", "simcmf", 56.44)


def test_reproduce_dry_run_lists_table_1():
    from aims.baselines.paper_grid import paper_cells

    result = CliRunner().invoke(app, ["reproduce", "--table", "1", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    plan = json.loads(result.output)
    assert sum(r["kind"] == "predict" for r in plan["runs"]) == 5 + 20     # one test prediction per cell
    runs = [r for r in plan["runs"] if r["kind"] == "train"]
    assert len(runs) == (5 + 20) * 7                                  # scratch + the Table 3 cells, × 7 lrs
    scratch = {r["modality"]: r["paper_miou"] for r in runs if r["strategy"] == "scratch"}
    assert scratch == {"thermal": 32.08, "polarization": 25.43, "depth": 22.38, "hha": 22.89, "nir": 7.99}
    assert {r["strategy"] for r in runs} == {"scratch", "full", "lora", "mlp-adapter", "prompt"}
    assert sorted({r["lr"] for r in runs}) == [3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]
    assert all(r["gpu_hours"] > 0 for r in runs)
    assert plan["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in plan["runs"]))
    full = next(r for r in runs if r["strategy"] == "full" and r["modality"] == "depth")
    lora = next(r for r in runs if r["strategy"] == "lora" and r["modality"] == "depth")
    assert full["gpu_hours"] > lora["gpu_hours"]                      # weight gradients of every layer
    assert len(paper_cells("ablation")) == 7 and len(paper_cells("2")) == 24
    text = CliRunner().invoke(app, ["reproduce", "--table", "2", "--modality", "rgb-nir", "--dry-run"]).output
    assert "zero-shot predict" in text and "GPU hours" in text and "recipes/table2/rgb-nir-zero-shot.yaml" in text
