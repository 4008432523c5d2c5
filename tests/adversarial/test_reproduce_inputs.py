"""Hostile inputs of ``aims baseline reproduce``: its command-line values and an output root
someone else prepared (the reproduction reads back its own markers, ``done.json``, the
predictions' ``aims_predictions.json``, and its copies of the recipe files).

Each case runs the installed ``aims`` (exit 2, a message naming the problem, no traceback)
inside the sandbox (nothing written outside ``allowed/``); none of them trains anything.
"""

from __future__ import annotations

import json
import os

import pytest

from .conftest import Sandbox, run_aims

pytest.importorskip("torch")
CELL = ["--table", "3", "--modality", "depth", "--strategy", "lora", "--lrs", "3e-3"]


def test_a_forged_done_marker_is_refused_and_a_fifo_recipe_copy_replaced(sandbox: Sandbox):
    out = sandbox.allowed / "runs"
    cell = out / "table3" / "depth-lora"
    (cell / "lr-0.003").mkdir(parents=True)
    (cell / "lr-0.003" / "done.json").write_text(json.dumps({"best_score": "1e309"}))
    os.mkfifo(cell / "recipe.yaml")             # read back, it would block forever
    result = run_aims("baseline", "reproduce", *CELL, "--out", out, "--no-progress", timeout=300)
    result.assert_user_error("done.json", "no numeric best_score")
    assert (cell / "recipe.yaml").is_file() and not (cell / "recipe.yaml").is_symlink()
    sandbox.assert_nothing_outside()


@pytest.mark.parametrize("lrs, words", [
    ("1e-3," * 5000, ["at most 7", "learning rates"]),
    ("1e-3,", ["not a learning rate", "sweep"]),
    ("nan", ["not a learning rate"]),
    ("3e-3;rm -rf /", ["not a learning rate"]),
])
def test_learning_rates_outside_the_sweep_are_refused(sandbox: Sandbox, lrs: str, words: list[str]):
    result = run_aims("baseline", "reproduce", "--table", "3", "--lrs", lrs, "--out", sandbox.allowed / "runs",
                      "--dry-run")
    result.assert_user_error(*words)
    assert len(result.output) < 2000                     # the message quotes a bounded part of it
    sandbox.assert_nothing_outside()


def test_unknown_table_modality_and_strategy(sandbox: Sandbox):
    run_aims("baseline", "reproduce", "--table", "7", "--dry-run").assert_user_error("table")
    run_aims("baseline", "reproduce", "--table", "6", "--modality", "../../etc", "--dry-run").assert_user_error(
        "no modality")
    run_aims("baseline", "reproduce", "--table", "1", "--strategy", "x" * 5000, "--dry-run").assert_user_error(
        "no strategy")
    sandbox.assert_nothing_outside()


def test_merged_row_refuses_config_names_that_leave_the_folder(tmp_path):
    """A predictions folder in the output root whose metadata names ``../…`` as a config:
    merging a leaderboard row must not copy anything outside its own folder."""
    from aims.baselines.reproduce import merge_predictions
    from aims.errors import AimsError

    member = tmp_path / "runs" / "table3" / "depth-lora" / "predictions"
    member.mkdir(parents=True)
    (tmp_path / "secret.json").write_text("[]")
    (member / "aims_predictions.json").write_text(json.dumps(
        {"aims_predictions": 1, "format": "rle", "meta": {}, "counts": {"../../../../secret": 1}}))
    target = tmp_path / "runs" / "leaderboard-rows" / "x" / "predictions"
    target.parent.mkdir(parents=True)
    with pytest.raises(AimsError, match="not a regular <config>.json"):
        merge_predictions([member], target)
    assert not target.exists() and not any(target.parent.iterdir())      # no half-merged folder left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "secret.json"]
