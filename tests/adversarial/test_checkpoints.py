"""Hostile run folders: a ``state.pt`` whose pickle runs code, checkpoints that are corrupt,
truncated or claim huge headers, a ``run.json`` that lies, a FIFO where a file belongs.

A run folder may come from someone else, so ``aims baseline train --resume`` and
``aims baseline predict --run`` read it as untrusted input. Every case runs the installed
``aims`` executable and checks both promises of ``docs/security.md``: exit 2 with a message
naming the file and the problem (no traceback), and nothing written outside the sandbox —
in particular the pickle's payload never ran.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from .conftest import Sandbox, run_aims  # noqa: E402

SPEC = {"size": "tiny", "adapter": "simcmf", "strategy": "scratch", "in_channels": 1, "checkpoint": None}


class Payload:
    """Unpickling this creates ``target`` (through ``open``): what a malicious ``state.pt``
    would do with any function instead."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> Path:
    """A run folder as `aims baseline train` writes it (tiny SAM, depth), without training."""
    from safetensors.torch import save_file

    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.train import TrainConfig

    folder = tmp_path_factory.mktemp("run") / "run"
    folder.mkdir()
    model = build_model(ModelSpec(**SPEC))
    for name in ("best", "last"):
        save_file(model.trainable_state_dict(), str(folder / f"{name}.safetensors"))
    cfg = TrainConfig(config="depth", strategy="scratch", size="tiny", out=str(folder))
    run = {"spec": SPEC, "train": {**asdict(cfg), "lr": cfg.effective_lr}, "validation": "validation split",
           "modality": "depth", "torch": torch.__version__}
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    (folder / "metrics.json").write_text(json.dumps({"epochs": []}))
    return folder


def _run_json(folder: Path, change: Callable[[dict], None]) -> None:
    run = json.loads((folder / "run.json").read_text())
    change(run)
    (folder / "run.json").write_text(json.dumps(run))


def _pickled_state(folder: Path, target: Path) -> None:
    torch.save({"optimizer": Payload(target), "epoch": 1}, str(folder / "state.pt"))


def _legacy_pickle_state(folder: Path, target: Path) -> None:
    (folder / "state.pt").write_bytes(pickle.dumps(Payload(target)))


def _huge_state(folder: Path, target: Path) -> None:
    with open(folder / "state.pt", "wb") as fh:   # sparse: nothing is written to disk
        fh.truncate(1 << 30)


def _deflated_state(folder: Path, target: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"epoch": 1}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(folder / "state.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr("archive/data/999", b"\0" * (1 << 20))    # 1 MiB that packs to 1 KiB


def _wrong_state(folder: Path, target: Path) -> None:
    torch.save({"optimizer": [1, 2], "epoch": "one"}, str(folder / "state.pt"))


#: train --resume: state.pt. Mentions are single words: the message is wrapped at 100 columns.
RESUME_CASES = {
    "pickle-payload": (_pickled_state, ("state.pt", "weights_only")),
    "legacy-pickle-payload": (_legacy_pickle_state, ("state.pt", "weights_only")),
    "one-gib-state": (_huge_state, ("state.pt", f"{1 << 30:,}")),
    "deflated-members": (_deflated_state, ("state.pt", "compressed")),
    "wrong-structure": (_wrong_state, ("state.pt", "optimizer")),
}


def _corrupt_safetensors(folder: Path) -> None:
    header = b'{"sam.x": {"dtype": "F32", "shape": [2], '   # cut in the middle of the JSON
    (folder / "best.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def _truncated_safetensors(folder: Path) -> None:
    data = (folder / "best.safetensors").read_bytes()
    (folder / "best.safetensors").write_bytes(data[: len(data) // 2])


def _huge_header(folder: Path) -> None:
    (folder / "best.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}")


def _other_model(folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({"sam.something.else": torch.zeros(3)}, str(folder / "best.safetensors"))


def _fifo_weights(folder: Path) -> None:
    (folder / "best.safetensors").unlink()
    os.mkfifo(folder / "best.safetensors")


def _fifo_checkpoint(folder: Path) -> None:
    os.mkfifo(folder / "base.pth")   # `full` reads its base SAM weights; `scratch` would not
    _run_json(folder, lambda r: r["spec"].update(strategy="full", checkpoint=str(folder / "base.pth")))


def _deep_json(folder: Path) -> None:
    (folder / "run.json").write_text("[" * 200_000 + "]" * 200_000)


def _huge_json(folder: Path) -> None:
    (folder / "run.json").write_text(" " * (2 << 20) + "{}")


#: predict --run: run.json and the weights
PREDICT_CASES = {
    "corrupt-safetensors": (_corrupt_safetensors, ("best.safetensors", "readable")),
    "truncated-safetensors": (_truncated_safetensors, ("best.safetensors", "safetensors")),
    "huge-header-length": (_huge_header, ("best.safetensors", "claims")),
    "weights-of-another-model": (_other_model, ("best.safetensors", "match")),
    "fifo-weights": (_fifo_weights, ("best.safetensors", "regular")),
    "run-json-unknown-key": (lambda f: _run_json(f, lambda r: r["spec"].update(evil=1)),
                             ("run.json", "unknown", "evil")),
    "run-json-unknown-size": (lambda f: _run_json(f, lambda r: r["spec"].update(size="vit-xxl")),
                              ("run.json", "vit-xxl")),
    "run-json-not-json": (lambda f: (f / "run.json").write_text("{'spec': nope"), ("run.json", "valid")),
    "run-json-deeply-nested": (_deep_json, ("run.json", "valid")),
    "run-json-two-mib": (_huge_json, ("run.json", f"{(2 << 20) + 2:,}")),
    "run-json-a-list": (lambda f: (f / "run.json").write_text("[1, 2]"), ("run.json", "object")),
    "base-checkpoint-is-a-fifo": (_fifo_checkpoint, ("base.pth", "regular")),
}


def _copy_run(template: Path, sandbox: Sandbox) -> Path:
    run = sandbox.allowed / "run"
    shutil.copytree(template, run)
    sandbox.snapshot()
    return run


def _assert_payload_is_live(tmp_path: Path) -> None:
    """Control: the payload does run when unpickled the unsafe way."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control))).close()
    assert control.exists()


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_hostile_state_on_resume(case, run_template, nyuv2_prepared, sandbox, tmp_path):
    make, mentions = RESUME_CASES[case]
    run = _copy_run(run_template, sandbox)
    make(run, sandbox.absolute_target)
    if "payload" in case:
        _assert_payload_is_live(tmp_path)
    before = sorted(p.name for p in run.iterdir())
    result = run_aims("baseline", "train", "--config", "depth", "--strategy", "scratch", "--size", "tiny",
                      "--data-dir", nyuv2_prepared, "--out", run, "--resume", "--epochs", "2",
                      "--no-progress", cwd=sandbox.allowed, timeout=300)
    result.assert_user_error(*mentions)
    assert not sandbox.absolute_target.exists()
    assert sorted(p.name for p in run.iterdir()) == before   # no run.json rewrite, no checkpoint
    sandbox.assert_nothing_outside()


@pytest.mark.parametrize("case", sorted(PREDICT_CASES))
def test_hostile_run_folder_on_predict(case, run_template, sandbox):
    make, mentions = PREDICT_CASES[case]
    run = _copy_run(run_template, sandbox)
    make(run)
    result = run_aims("baseline", "predict", "--config", "depth", "--run", run, "--out",
                      sandbox.allowed / "preds", "--device", "cpu", "--no-progress", cwd=sandbox.allowed, timeout=300)
    result.assert_user_error(*mentions)
    assert not (sandbox.allowed / "preds").exists()
    sandbox.assert_nothing_outside()
