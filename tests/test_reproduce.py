"""`aims baseline reproduce` for real, at tiny size on the NYUv2 miniature: the planned
commands run (training per learning rate, selection, a simcmf test prediction), the
predictions are scored with `aims score`'s code and become leaderboard rows; a second
invocation skips what is done and resumes what is not; cells of one method merge into one
row; the dry run lists the very commands that ran; Table 6's plan; launch errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from typer.testing import CliRunner  # noqa: E402

from aims.baselines.cli import app  # noqa: E402
from aims.errors import AimsError  # noqa: E402

TINY = ["--size", "tiny", "--checkpoint", "none", "--max-steps", "1", "--batch-size", "2", "--no-progress"]


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reproduce(*args: str) -> str:
    result = CliRunner().invoke(app, ["reproduce", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _refused(*args: str) -> AimsError:
    result = CliRunner().invoke(app, ["reproduce", *args])
    assert isinstance(result.exception, AimsError), result.output + repr(result.exception)
    return result.exception


@pytest.fixture(scope="module")
def depth_lora(nyuv2_prepared, tmp_path_factory):
    """Table 3, depth, LoRA: two learning rates of the sweep, one step each."""
    out = tmp_path_factory.mktemp("paper") / "runs"
    args = ["--table", "3", "--modality", "depth", "--strategy", "lora", "--lrs", "1e-3,3e-3",
            "--data-dir", str(nyuv2_prepared), "--out", str(out), *TINY]
    return out, args, _reproduce(*args)


def test_runs_select_predict_score_and_add_the_row(depth_lora, nyuv2_prepared):
    from aims.leaderboard.entries import collect
    from aims.scoring import score_predictions

    out, _, output = depth_lora
    cell = out / "table3" / "depth-lora"
    done = {lr: json.loads((cell / f"lr-{lr}" / "done.json").read_text()) for lr in ("0.001", "0.003")}
    run = json.loads((cell / "lr-0.001" / "run.json").read_text())
    assert run["recipe"] == "reference" and run["spec"]["strategy"] == "lora" and run["train"]["lr"] == 1e-3
    assert run["train"]["recipe_file"] == str(cell / "recipe.yaml")
    assert (cell / "recipe.yaml").read_bytes() == (Path(__file__).parents[1] / "recipes/table3/depth-lora.yaml"
                                                    ).read_bytes()
    sweep = json.loads((cell / "sweep.json").read_text())
    best = max(done, key=lambda lr: done[lr]["best_score"])         # first of equals, like max()
    assert sweep["best_lr"] == float(best) and sweep["best_run"] == str(cell / f"lr-{best}")
    meta = json.loads((cell / "predictions" / "aims_predictions.json").read_text())["meta"]
    assert meta["run"] == sweep["best_run"] and meta["protocol"] == "simcmf"

    results = json.loads((cell / "scores" / "results.json").read_text())
    assert results["protocol"]["version"] == "simcmf-v1"
    assert results["meta"]["reproduce"]["cell"] == "table3/depth-lora"
    assert results["meta"]["reproduce"]["paper_miou"] == 45.09
    again = score_predictions(cell / "predictions", data_dir=nyuv2_prepared, protocol="simcmf")
    ours = results["configs"]["depth"]["miou"]
    assert again.summary()["depth"]["miou"] == pytest.approx(ours)    # what `aims score` says
    assert f"test mIoU {100 * ours:.2f} (paper 45.09)" in output

    rows = sorted((out / "results").glob("*.json"))
    assert [p.name for p in rows] == ["simcmf-reference-simcmf-lora--sam-tiny--simcmf-v1.json"]
    entry = next(e for e in collect(out / "results", include_reference=False))
    assert entry.method == "simcmf-reference-simcmf-lora" and entry.miou["depth"] == round(100 * ours, 2)
    assert json.loads((out / "reproduce.json").read_text())["cells"][0]["miou"] == round(100 * ours, 2)


def test_dry_run_lists_the_commands_that_ran(depth_lora):
    out, args, _ = depth_lora
    plan = json.loads(_reproduce(*args, "--dry-run", "--json"))
    runs = plan["runs"]
    assert [r["kind"] for r in runs] == ["train", "train", "predict"]
    trains = [r for r in runs if r["kind"] == "train"]
    assert [r["out"] for r in trains] == [str(out / "table3/depth-lora/lr-0.001"),
                                          str(out / "table3/depth-lora/lr-0.003")]
    for r in trains:   # each folder holds the run of exactly that command
        run = json.loads((Path(r["out"]) / "run.json").read_text())
        argv = r["argv"]
        assert run["train"]["lr"] == float(argv[argv.index("--lr") + 1]) == r["lr"]
        assert run["train"]["max_steps"] == int(argv[argv.index("--max-steps") + 1]) == 1
    assert "<selected lr run>" in runs[-1]["argv"] and runs[-1]["out"] == str(out / "table3/depth-lora/predictions")
    logs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.log"))
    assert logs == ["table3/depth-lora/lr-0.001.log", "table3/depth-lora/lr-0.003.log",
                    "table3/depth-lora/predictions.log"]


def test_second_invocation_skips_done_and_resumes_the_rest(depth_lora, tmp_path):
    out, args, _ = depth_lora
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    cell = copy / "table3" / "depth-lora"
    # interrupted: lr 3e-3 had started (run.json, state) but not finished; nothing predicted
    (cell / "lr-0.003" / "done.json").unlink()
    shutil.rmtree(cell / "predictions")
    shutil.rmtree(cell / "scores")
    kept = (cell / "lr-0.001" / "last.safetensors").read_bytes()
    log = (cell / "lr-0.001.log").read_text()
    output = _reproduce(*[str(copy) if a == str(out) else a for a in args])
    assert "skip    table3/depth-lora lr 0.001: done" in output
    assert "trained table3/depth-lora lr 0.003" in output and "resumed" in (cell / "lr-0.003.log").read_text()
    assert (cell / "lr-0.001" / "last.safetensors").read_bytes() == kept
    assert (cell / "lr-0.001.log").read_text() == log                  # not run again
    assert (cell / "lr-0.003" / "done.json").is_file() and (cell / "scores" / "results.json").is_file()
    # a third time: nothing left to do
    third = _reproduce(*[str(copy) if a == str(out) else a for a in args])
    assert "trained " not in third and "predicted table3" not in third
    assert "skip    table3/depth-lora: predicted" in third


def test_cells_of_one_method_merge_into_one_row(depth_lora, nyuv2_prepared, tmp_path):
    out, _, _ = depth_lora
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    _reproduce("--table", "3", "--modality", "hha", "--strategy", "lora", "--lrs", "3e-3",
               "--data-dir", str(nyuv2_prepared), "--out", str(copy), *TINY)
    rows = sorted((copy / "results").glob("*.json"))
    assert len(rows) == 1                                          # depth and hha: one LoRA row
    doc = json.loads(rows[0].read_text())
    assert sorted(doc["configs"]) == ["depth", "hha"]
    assert doc["meta"]["reproduce"]["cells"] == ["table3/depth-lora", "table3/hha-lora"]
    per_cell = {c: json.loads((copy / f"table3/{c}-lora/scores/results.json").read_text())["configs"][c]["miou"]
                for c in ("depth", "hha")}
    assert {c: doc["configs"][c]["miou"] for c in per_cell} == pytest.approx(per_cell)


def test_zero_shot_cell_is_an_rgb_x_row_of_its_own(nyuv2_prepared, tmp_path):
    from aims.leaderboard.entries import paper_results

    paper = next(r for r in paper_results()["rgb_x"] if r["strategy"] == "zero-shot")["miou"]["rgb-depth"]
    out = tmp_path / "runs"
    output = _reproduce("--table", "2", "--modality", "rgb-depth", "--strategy", "zero-shot",
                        "--data-dir", str(nyuv2_prepared), "--out", str(out), "--size", "tiny",
                        "--checkpoint", "none", "--no-progress")
    assert "result  table2/rgb-depth-zero-shot" in output and f"paper {paper:.2f}" in output
    doc = json.loads(next((out / "results").glob("*.json")).read_text())
    assert doc["method"] == "sam-zero-shot-reference-rgb-depth"
    assert doc["meta"]["reproduce"]["paper_miou"] == paper and not (out / "leaderboard-rows").exists()


def test_table_6_plan_lists_the_systems_and_simcmf_rows():
    plan = json.loads(_reproduce("--table", "6", "--dry-run", "--json"))
    runs = plan["runs"]
    modalities = ("rgb-thermal", "rgb-depth", "rgb-hha", "rgb-nir")
    strategies = {"cmx", "vipt", "gopt", "iv-tuning", "lora", "mlp-adapter", "full"}
    for m in modalities:
        assert {r["strategy"] for r in runs if r["modality"] == m} == strategies
    assert len(runs) == len(modalities) * len(strategies) * (7 + 1)
    paper = {(r["modality"], r["strategy"]): r["paper_miou"] for r in runs}
    assert paper[("rgb-thermal", "cmx")] == 44.91 and paper[("rgb-nir", "vipt")] == 51.9
    assert paper[("rgb-depth", "lora")] == 57.56 and paper[("rgb-hha", "full")] == 57.17
    assert paper[("rgb-thermal", "gopt")] is None and paper[("rgb-nir", "iv-tuning")] is None
    systems = [r for r in runs if r["strategy"] in ("cmx", "vipt", "gopt", "iv-tuning")]
    assert {r["adapter"] for r in systems} == {"rgbx-split"}
    assert all(r["recipe_file"].startswith("recipes/table6/") for r in systems)
    simcmf = [r for r in runs if r["strategy"] == "lora"]
    assert all(r["recipe_file"].startswith("recipes/table2/") and r["also"] == ["6"] for r in simcmf)
    assert all(r["gpu_hours"] > 0 for r in runs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpus_without_cuda_and_multi_process_reference_are_refused(tmp_path):
    common = ["--table", "3", "--modality", "depth", "--strategy", "lora", "--out", str(tmp_path / "r")]
    assert "sees no CUDA device" in str(_refused(*common, "--gpus", "2"))
    message = str(_refused(*common, "--processes-per-run", "2"))
    assert "reference recipe" in message and "--recipe aims" in message
    assert "not a learning rate of the paper's sweep" in str(_refused(*common, "--lrs", "2e-4"))
    assert "no strategy 'cmx'" in str(_refused(*common, "--strategy", "cmx"))
    assert not (tmp_path / "r").exists()                       # refused before anything was written


def test_two_processes_per_run_through_accelerate_launch(nyuv2_prepared, tmp_path):
    """--recipe aims --processes-per-run 2: each training run is `accelerate launch` of two
    processes (CPU, gloo), the prediction a `python -m aims` subprocess."""
    out = tmp_path / "runs"
    output = _reproduce("--table", "3", "--modality", "depth", "--strategy", "lora", "--lrs", "3e-3",
                        "--recipe", "aims", "--processes-per-run", "2", "--data-dir", str(nyuv2_prepared),
                        "--out", str(out), *TINY)
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in output
    cell = out / "table3" / "depth-lora"
    run = json.loads((cell / "lr-0.003" / "run.json").read_text())
    assert run["recipe"] == "aims" and (cell / "scores" / "results.json").is_file()
    assert "result  table3/depth-lora" in output


def test_a_grown_sweep_trains_only_the_new_rate_and_keeps_everything_consistent(depth_lora, tmp_path):
    out, args, _ = depth_lora
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    grown = [str(copy) if a == str(out) else ("1e-4,1e-3,3e-3" if a == "1e-3,3e-3" else a) for a in args]
    output = _reproduce(*grown)
    assert output.count("trained ") == 1 and "trained table3/depth-lora lr 0.0001" in output
    cell = copy / "table3" / "depth-lora"
    sweep = json.loads((cell / "sweep.json").read_text())
    assert sorted(sweep["miou_by_lr"]) == ["0.0001", "0.001", "0.003"]
    meta = json.loads((cell / "predictions" / "aims_predictions.json").read_text())["meta"]
    assert meta["run"] == sweep["best_run"]                         # re-predicted if the choice moved
    row = json.loads(next((copy / "results").glob("*.json")).read_text())
    cell_results = json.loads((cell / "scores" / "results.json").read_text())
    assert row["configs"]["depth"]["miou"] == pytest.approx(cell_results["configs"]["depth"]["miou"])
