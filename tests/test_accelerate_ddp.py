"""Two processes, one model: `accelerate launch --multi_gpu --num_processes 2` runs
:func:`aims.baselines.train.train` (aims recipe, LoRA, tiny SAM, the NYUv2 miniature) and
every rank ends with the same trainable weights, which differ from the initial ones and
equal what rank 0 saved. Each rank sees different images, so equal weights mean the
gradients were all-reduced (DDP over gloo), not that the ranks happened to agree.

The real launcher and the real training loop run; the worker only keeps a reference to the
model ``train`` builds, to hash it after training. ``--multi_gpu`` picks accelerate's
torchrun launcher, which starts the processes; on a machine without CUDA ``train``'s
``Accelerator(cpu=True)`` then runs them as MULTI_CPU over gloo. (``--cpu`` alone takes
accelerate's single-process launcher, which leaves multi-CPU to MPI: one process.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

WORKER = textwrap.dedent('''
    """One rank: train, then write a digest of this rank's trainable weights."""
    import hashlib
    import json
    import sys
    from pathlib import Path

    import torch
    from accelerate import PartialState

    import aims.baselines.train as training

    data_dir, out, report_dir = sys.argv[1:4]
    kept = {}
    build = training.build_model

    def build_and_keep(spec):
        model = build(spec)
        kept["model"] = model
        kept["init"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return model

    training.build_model = build_and_keep
    cfg = training.TrainConfig(config="depth", recipe="aims", strategy="lora", checkpoint=None, size="tiny",
                               data_dir=data_dir, out=out, lr=3e-3, epochs=3, max_steps=3, batch_size=1,
                               seed=0, progress=False)
    training.train(cfg)
    state = PartialState()
    weights = {n: p.detach().cpu() for n, p in kept["model"].named_parameters() if p.requires_grad}
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].contiguous().numpy().tobytes())
    changed = sorted(n for n in weights if not torch.equal(weights[n], kept["init"][n]))
    torch.save(weights, Path(report_dir) / f"weights-{state.process_index}.pt")
    (Path(report_dir) / f"rank-{state.process_index}.json").write_text(json.dumps({
        "rank": state.process_index, "world": state.num_processes, "digest": digest.hexdigest(),
        "changed": changed, "trainable": len(weights),
        "backend": str(torch.distributed.get_backend()) if torch.distributed.is_initialized() else None}))
''')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_cpu_processes_hold_identical_weights(nyuv2_prepared, tmp_path):
    from safetensors.torch import load_file

    worker = tmp_path / "ddp_worker.py"
    worker.write_text(WORKER)
    out, reports = tmp_path / "run", tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()),
              str(worker), str(nyuv2_prepared), str(out), str(reports)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    ranks = [json.loads((reports / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["backend"] == "gloo" for r in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"]                  # the same weights on both ranks
    assert ranks[0]["changed"] == ranks[1]["changed"]
    # the steps moved the weights (a few decoder LoRA factors whose partner is still zero may not)
    assert ranks[0]["trainable"] > 0 and len(ranks[0]["changed"]) > ranks[0]["trainable"] // 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3
    saved = load_file(str(out / "last.safetensors"))                 # what rank 0 wrote
    for i in (0, 1):
        weights = torch.load(reports / f"weights-{i}.pt", weights_only=True)
        common = set(saved) & {f"{k}" for k in weights}
        assert common, (sorted(saved)[:3], sorted(weights)[:3])
        assert all(torch.equal(saved[k], weights[k]) for k in common)
