"""A training run's folder: writing it atomically, and reading it back as untrusted input.

Output folder of `aims baseline train`::

    run.json            model spec, training settings, recipe, how the weights were selected
    best.safetensors    trainable weights at the best evaluation
    last.safetensors    trainable weights after the last finished epoch
    state.pt            optimizer, scheduler, epoch, best score (and the reference recipe's
                        random stream) for --resume
    metrics.csv/json    one row per epoch: loss, lr, evaluation, img/s

Every file is written atomically (:mod:`aims.atomic`). A run folder is read as untrusted
input (it may come from someone else): ``run.json`` and ``metrics.json`` are bounded in
size and checked key by key, ``state.pt`` is bounded by the model's size and loaded with
``weights_only=True``, and a safetensors header is checked against the model's trainable
weights before any tensor is read. Whatever does not fit is an :class:`AimsError`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from aims.atomic import atomic_write_text, temporary_sibling
from aims.baselines.adapters import check_adapter
from aims.baselines.choices import RESIZE_MODES, STRATEGIES, WEIGHTS
from aims.baselines.model import ModelSpec, SimCMF, build_model
from aims.baselines.recipes import RECIPES
from aims.baselines.sam_loading import SIZES, exception_summary, regular_file_size
from aims.errors import AimsError

#: the columns of metrics.csv, one row per epoch. ``val_at``: how many training epochs the
#: evaluated weights had (the reference evaluates before an epoch's training, ours after)
METRIC_COLUMNS = ("epoch", "step", "loss", "losses", "lr", "val_at", "val_miou", "val_dice", "train_img_s")
#: most bytes read from run.json / metrics.json (a real one is a few KiB / a few MiB)
MAX_RUN_JSON_BYTES = 1 << 20
MAX_METRICS_JSON_BYTES = 64 << 20
#: most bytes of a safetensors header (a run's lists a few hundred tensors in < 100 KiB)
MAX_SAFETENSORS_HEADER = 16 << 20


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """``write(name)`` a temporary sibling, then rename it over ``path`` (see aims.atomic):
    checkpoints of gigabytes stream to disk instead of passing through memory whole."""
    tmp = temporary_sibling(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_weights(model: SimCMF, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.cpu() for k, v in model.trainable_state_dict().items()}
    write_atomically(path, lambda name: save_file(state, name))


def run_error(path: Path, problem: str) -> AimsError:
    return AimsError(f"{path}: {problem}. It is not a file written by `aims baseline train` (or it "
                     "was edited); train the run again or restore the file.", path=path)


def read_weights(path: str | Path, expected: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The tensors of a trainable-weights checkpoint, after checking from its header alone
    that it holds exactly the ``expected`` names and shapes (nothing larger is read)."""
    from safetensors import safe_open

    path = Path(path)
    numel = sum(math.prod(shape) for shape in expected.values())
    size = regular_file_size(path, "a trainable-weights checkpoint",
                             max_bytes=8 + MAX_SAFETENSORS_HEADER + 8 * numel)
    with open(path, "rb") as fh:
        prefix = fh.read(8)
    header = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
    if not 0 < header <= min(MAX_SAFETENSORS_HEADER, size - 8):
        raise run_error(path, f"its safetensors header claims {header:,} bytes in a file of {size:,}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            _check_shapes(path, shapes, expected)
            return {k: fh.get_tensor(k) for k in shapes}
    except AimsError:
        raise
    except Exception as exc:  # safetensors' own refusals: truncated, corrupt header, bad offsets
        raise run_error(path, f"it is not a readable safetensors file ({exception_summary(exc)})") from None


def _check_shapes(path: Path, shapes: Mapping[str, tuple[int, ...]],
                  expected: Mapping[str, tuple[int, ...]]) -> None:
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    wrong = [f"{k} {shapes[k]} vs {tuple(expected[k])}" for k in shapes
             if k in expected and tuple(shapes[k]) != tuple(expected[k])]
    if missing or extra or wrong:
        raise AimsError(f"{path} does not match this model: missing {missing[:5]}, unexpected "
                        f"{extra[:5]}, other shapes {wrong[:5]}. Was it trained with another "
                        "--adapter, --strategy or --size? (Runs written before the recipes were "
                        "named used 'simcmf' for what is now 'aims-conv3'.)", path=path)


def load_weights(model: SimCMF, path: str | Path) -> None:
    """Load a trainable-weights checkpoint: its keys must be exactly the model's trainable
    weights (same adapter + strategy), else an error naming the difference."""
    from aims.baselines.model import checkpoint_names

    state = model.state_dict()
    expected = {n: tuple(state[n].shape) for n in checkpoint_names(model)}
    model.load_state_dict(read_weights(path, expected), strict=False)


def read_json_file(path: str | Path, what: str, max_bytes: int) -> Any:
    """A JSON file of a run folder: a regular file of at most ``max_bytes`` that parses."""
    path = Path(path)
    regular_file_size(path, what, max_bytes)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise run_error(path, f"it is not valid JSON ({exception_summary(exc)})") from None


def write_metrics(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    if rows:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=list(METRIC_COLUMNS))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out / "metrics.csv", text.getvalue())
    atomic_write_text(out / "metrics.json", json.dumps({**summary, "epochs": rows}, indent=2) + "\n")


def state_bound(model: SimCMF) -> int:
    """Most bytes a state.pt of this model holds: Adam's two float32 moments per trainable
    weight, with room for the zip format, the scheduler and the counters."""
    return 3 * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad) + (4 << 20)


def check_run(run: Any, path: Path) -> dict[str, Any]:
    """A parsed run.json, checked key by key against what :func:`aims.baselines.train.train`
    writes. The modality is checked against what is registered now: register the dataset's
    records (:func:`aims.baselines.train_data.register_dataset`) before reading a run of a
    user's own modality."""
    from aims.modalities import MODALITY_STACKS

    if not isinstance(run, dict) or not isinstance(run.get("spec"), dict) or not isinstance(run.get("train"), dict):
        raise run_error(path, "expected a JSON object with 'spec' and 'train' objects")
    spec = run["spec"]
    known = [f.name for f in fields(ModelSpec)]
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise run_error(path, f"unknown key(s) {unknown[:5]} in 'spec' (known: {', '.join(known)})")
    names = {"size": SIZES, "strategy": STRATEGIES}
    for key, allowed in names.items():
        if key in spec and not (isinstance(spec[key], str) and spec[key] in allowed):
            raise run_error(path, f"spec {key} {spec[key]!r:.60} is not one of {', '.join(allowed)}")
    if "adapter" in spec:
        if not isinstance(spec["adapter"], str):
            raise run_error(path, "spec adapter must be a projector name")
        try:
            check_adapter(spec["adapter"])
        except AimsError as exc:
            raise run_error(path, f"spec adapter: {exc}") from None
    channels = spec.get("in_channels", 3)
    if type(channels) is not int or not 1 <= channels <= 64:
        raise run_error(path, f"spec in_channels {channels!r:.60} is not a channel count (1 to 64)")
    if not isinstance(spec.get("checkpoint"), (str, type(None))):
        raise run_error(path, "spec checkpoint must be a path or null")
    if type(spec.get("uniform_init", False)) is not bool:
        raise run_error(path, "spec uniform_init must be true or false")
    recipe = run["train"].get("recipe", "aims")
    if not (isinstance(recipe, str) and recipe in RECIPES):
        raise run_error(path, f"train recipe {recipe!r:.60} is not one of {', '.join(RECIPES)}")
    if type(run["train"].get("select_on_test", False)) is not bool:
        raise run_error(path, "train select_on_test must be true or false")
    modality = run.get("modality")
    if recipe == "reference":
        from aims.baselines.reference_inputs import reference_spec

        try:
            reference_spec(modality) if isinstance(modality, str) else reference_spec("")
        except AimsError as exc:
            raise run_error(path, f"modality {modality!r:.60}: {exc}") from None
    elif not (isinstance(modality, str) and modality in MODALITY_STACKS):
        raise run_error(path, f"modality {modality!r:.60} is not one of {', '.join(MODALITY_STACKS)}")
    if not (isinstance(run["train"].get("resize"), str) and run["train"]["resize"] in RESIZE_MODES):
        raise run_error(path, f"train resize must be one of {', '.join(RESIZE_MODES)}")
    return run


def load_run(run_dir: str | Path, *, weights: str = "best", checkpoint: str | None = None) -> tuple[SimCMF, dict]:
    """The trained model of a run folder (its base SAM checkpoint + ``best.safetensors``)."""
    run_dir = Path(run_dir)
    if weights not in WEIGHTS:
        raise AimsError(f"weights {weights!r} is not one of {', '.join(WEIGHTS)}.")
    path = run_dir / "run.json"
    if not os.path.lexists(path):
        raise AimsError(f"{run_dir} is not a training run (no run.json); pass the --out folder "
                        "of `aims baseline train`.", path=run_dir)
    run = check_run(read_json_file(path, "a run's run.json", MAX_RUN_JSON_BYTES), path)
    spec = ModelSpec(**run["spec"])
    if checkpoint is not None:
        spec.checkpoint = None if checkpoint == "none" else checkpoint
    model = build_model(spec)
    load_weights(model, run_dir / f"{weights}.safetensors")
    return model, run




def run_recipe(run: Mapping[str, Any]) -> str:
    """The recipe a checked run.json was trained with (``aims`` before recipes were named)."""
    return str(run["train"].get("recipe", "aims"))


__all__ = ["MAX_METRICS_JSON_BYTES", "MAX_RUN_JSON_BYTES", "MAX_SAFETENSORS_HEADER", "METRIC_COLUMNS",
           "check_run", "load_run", "load_weights", "read_json_file", "read_weights", "run_error", "run_recipe",
           "save_weights", "state_bound", "write_atomically", "write_metrics"]
