"""Hostile recipe files (``aims baseline train --recipe-file``, ``predict --recipe-file``).

A recipe file may come from anyone, so every case runs the installed ``aims`` executable and
checks both promises of ``docs/security.md``: exit 2 with a message naming the file and the
problem (no traceback), and nothing written outside the sandbox. The YAML is checked event
by event before anything is constructed: no alias expansion (billion laughs), no tags (no
object construction), bounded size, one flat mapping of known keys. A file names no path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Sandbox, run_aims

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def _text(body: str | bytes) -> Callable[[Path, Sandbox], Path]:
    def make(path: Path, box: Sandbox) -> Path:
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
        return path
    return make


def _fifo(path: Path, box: Sandbox) -> Path:
    os.mkfifo(path)
    return path


def _link_to_device(path: Path, box: Sandbox) -> Path:
    link = box.outside / path.name         # a link inside allowed/ pointing out would fail the sandbox
    link.symlink_to("/dev/zero")
    return link


def _payload(path: Path, box: Sandbox) -> Path:
    path.write_text(f'recipe: !!python/object/apply:os.system ["touch {box.absolute_target}"]\nconfig: depth\n')
    return path


GOOD = "recipe: reference\nconfig: depth\n"

#: case → (how to make the file, words the message must hold)
CASES = {
    "billion-laughs": (_text(LAUGHS), ("anchors",)),
    "python-object-tag": (_payload, ("tags",)),
    "explicit-str-tag": (_text("recipe: !!str reference\nconfig: depth\n"), ("tags",)),
    "one-mib": (_text(GOOD + "# " + "x" * (1 << 20) + "\n"), ("1,048",)),
    "fifo": (_fifo, ("regular",)),
    "link-to-a-device": (_link_to_device, ("regular",)),
    "not-utf8": (_text(b"recipe: reference\nconfig: \xff\xfe\n"), ("UTF-8",)),
    "nul-bytes": (_text("recipe: reference\nconfig: depth\0\n"), ("NUL",)),
    "not-yaml": (_text("recipe: [reference\nconfig: depth\n"), ("valid", "YAML")),
    "a-list": (_text("- recipe\n- reference\n"), ("mapping",)),
    "two-documents": (_text(GOOD + "---\n" + GOOD), ("more", "document")),
    "unknown-key": (_text(GOOD + "evil: 1\n"), ("unknown", "evil")),
    "a-path-key": (_text(GOOD + "out: /etc\n"), ("unknown", "out")),
    "checkpoint-key": (_text(GOOD + "checkpoint: /etc/passwd\n"), ("unknown", "checkpoint")),
    "duplicate-key": (_text(GOOD + "config: hha\n"), ("twice", "config")),
    "nested-mapping": (_text(GOOD + "lr_sweep: [[1, 2]]\n"), ("nest",)),
    "deep-nesting": (_text(GOOD + "row: " + "[" * 5000 + "]" * 5000 + "\n"), ("nest",)),
    "many-events": (_text(GOOD + "lr_sweep: [" + ", ".join(["0.1"] * 2000) + "]\n"), ("events",)),
    "wrong-type": (_text(GOOD + "epochs: many\n"), ("epochs", "integer")),
    "bool-as-int": (_text(GOOD + "epochs: true\n"), ("epochs",)),
    "huge-int": (_text(GOOD + "seed: " + "9" * 5000 + "\n"), ("longer",)),
    "big-int": (_text(GOOD + "seed: " + "9" * 1500 + "\n"), ("seed",)),
    "huge-lr": (_text(GOOD + "lr: 1.0e+300\n"), ("lr", "learning")),
    "unknown-recipe": (_text("recipe: mine\nconfig: depth\n"), ("recipe", "reference")),
    "missing-config": (_text("recipe: reference\n"), ("missing", "config")),
    "config-with-slash": (_text("recipe: reference\nconfig: ../../etc\n"), ("config",)),
    "huge-projector-family": (_text(GOOD + "adapter: paper-n999999999-k1-d1\n"), ("adapter", "outside")),
    "unknown-projector": (_text(GOOD + "adapter: " + "x" * 64 + "\n"), ("adapter", "unknown", "projector")),
    "select-on-test-under-aims": (_text("recipe: aims\nconfig: depth\nselect_on_test: true\n"), ("select_on_test",)),
    "zero-shot-file-to-train": (_text(GOOD + "zero_shot: true\n"), ("zero-shot", "predict")),
    "lr-and-sweep": (_text(GOOD + "lr: 0.1\nlr_sweep: [0.1]\n"), ("lr_sweep",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_recipe_file_on_train(case, sandbox):
    make, mentions = CASES[case]
    recipe = make(sandbox.allowed / "recipe.yaml", sandbox)
    sandbox.snapshot()
    result = run_aims("baseline", "train", "--recipe-file", recipe, "--out", sandbox.allowed / "run",
                      cwd=sandbox.allowed)
    result.assert_user_error("recipe.yaml", *mentions)
    assert not (sandbox.allowed / "run").exists()                 # refused before anything was written
    sandbox.assert_nothing_outside()


def test_training_recipe_refused_by_predict(sandbox):
    recipe = sandbox.allowed / "train.yaml"
    recipe.write_text(GOOD + "strategy: lora\n")
    sandbox.snapshot()
    result = run_aims("baseline", "predict", "--recipe-file", recipe, "--out", sandbox.allowed / "preds",
                      cwd=sandbox.allowed)
    result.assert_user_error("train.yaml", "training", "--run")
    sandbox.assert_nothing_outside()


def test_hostile_adapter_names_on_the_command_line(sandbox):
    """``--adapter`` is a free string: a family member with absurd sizes is refused before
    anything is built."""
    result = run_aims("baseline", "describe", "--channels", "9", "--adapter", "preattnp1n99999d8",
                      cwd=sandbox.allowed)
    result.assert_user_error("preattnp1n99999d8", "outside")
    sandbox.assert_nothing_outside()


@pytest.mark.parametrize("adapter, words", [("paper-n999999999-k1-d1", ("outside",)),
                                            ("preattnp16n1d12", ("divisible",)),
                                            ("simcmf" * 40, ("unknown", "projector"))])
def test_hostile_projector_in_a_run_folder(adapter, words, nyuv2_prepared, sandbox):
    """run.json names the projector to build; an absurd family member is refused by name,
    before any module is allocated."""
    import json

    run = sandbox.allowed / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "spec": {"size": "tiny", "adapter": adapter, "strategy": "lora", "in_channels": 1, "checkpoint": None},
        "train": {"resize": "sam", "recipe": "aims"}, "modality": "depth"}))
    sandbox.snapshot()
    result = run_aims("baseline", "predict", "--config", "depth", "--run", run, "--data-dir", nyuv2_prepared,
                      "--out", sandbox.allowed / "preds", cwd=sandbox.allowed)
    result.assert_user_error("run.json", "adapter", *words)
    assert not (sandbox.allowed / "preds").exists()
    sandbox.assert_nothing_outside()
