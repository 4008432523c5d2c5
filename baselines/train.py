"""Training with the paper's recipe, model selection on validation, resumable checkpoints.

Recipe (protocol.md): Adam (0.9, 0.999), batch 4, 50 epochs, StepLR every 10 epochs × 0.5,
Dice + BCE on the single-mask output (low-resolution 256×256 logits against the instance mask
in the same frame), one random instance and one uniformly random positive click per sample,
lr 3e-4 for the parameter-efficient strategies and 1e-5 for full fine-tuning / scratch.

Model selection uses the config's **validation** split (mIoU, protocol ``aims``, one click),
never test. A config prepared without a validation split gets a deterministic carve of
train (lowest stable-hash ids, ≥ 1 image) and ``run.json`` says so.

Output folder::

    run.json            model spec + training settings (+ the validation source)
    best.safetensors    trainable weights at the best validation epoch
    last.safetensors    trainable weights after the last finished epoch
    state.pt            optimizer, scheduler, epoch, best score (for --resume)
    metrics.csv/json    one row per epoch: loss, lr, validation mIoU, img/s

Every file is written atomically (:mod:`aims.atomic`). A run folder is read as untrusted
input (it may come from someone else): ``run.json`` and ``metrics.json`` are bounded in
size and checked key by key, ``state.pt`` is bounded by the model's size and loaded with
``weights_only=True``, and a safetensors header is checked against the model's trainable
weights before any tensor is read. Whatever does not fit is an :class:`AimsError`.

Runs under ``accelerate launch`` (multi-GPU, multi-node) and as plain ``python`` (one
process, CPU or one GPU); bf16 autocast on CUDA only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aims.baselines.choices import WEIGHTS
from aims.atomic import atomic_write_text, temporary_sibling
from aims.baselines.adapters import ADAPTERS
from aims.baselines.data import (RESIZE_MODES, SampleSource, TrainSamples, available_splits,
                                 config_channel_stats, load_split, modality_normalizer, validation_carve)
from aims.baselines.model import ModelSpec, SimCMF, build_model, describe_parameters
from aims.baselines.predict import evaluate
from aims.baselines.sam_loading import SIZES, exception_summary, load_torch_file, regular_file_size
from aims.baselines.strategies import PEFT_STRATEGIES, STRATEGIES
from aims.errors import AimsError

LR_SWEEP = (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
#: the checkpoints of a run (``<name>.safetensors``), for ``--weights``
#: the columns of metrics.csv, one row per epoch
METRIC_COLUMNS = ("epoch", "step", "loss", "losses", "lr", "val_miou", "train_img_s")
#: most bytes read from run.json / metrics.json (a real one is a few KiB / a few MiB)
MAX_RUN_JSON_BYTES = 1 << 20
MAX_METRICS_JSON_BYTES = 64 << 20
#: most bytes of a safetensors header (a run's lists a few hundred tensors in < 100 KiB)
MAX_SAFETENSORS_HEADER = 16 << 20


def default_lr(strategy: str) -> float:
    return 3e-4 if strategy in PEFT_STRATEGIES else 1e-5


@dataclass
class TrainConfig:
    config: str
    strategy: str = "lora"
    adapter: str = "simcmf"
    checkpoint: str | None = None
    size: str = "vit-b"
    modality: str | None = None          # default: the config's own modality
    data_dir: str | None = None
    out: str = "runs/simcmf"
    lr: float | None = None
    epochs: int = 50
    batch_size: int = 4
    step_size: int = 10
    gamma: float = 0.5
    resize: str = "sam"
    seed: int = 0
    resume: bool = False
    max_steps: int | None = None          # stop early (tests, smoke runs)
    workers: int = 0
    dtype: str = "bf16"                  # autocast dtype on CUDA; CPU always float32
    progress: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.strategy)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice + BCE on logits (B, 1, s, s) against a 0/1 target of the same shape."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def _sources(cfg: TrainConfig, size: int) -> tuple[SampleSource, SampleSource, str]:
    modality = cfg.modality or cfg.config
    norm = modality_normalizer(modality, config_channel_stats(cfg.config, cfg.data_dir))
    splits = available_splits(cfg.config, cfg.data_dir)
    if "train" not in splits:
        raise AimsError(f"config {cfg.config!r} has no train split (splits: {', '.join(splits)}).")
    train_rows = load_split(cfg.config, "train", cfg.data_dir)
    if "validation" in splits:
        val_rows = load_split(cfg.config, "validation", cfg.data_dir)
        return (SampleSource(train_rows, modality, norm, size, cfg.resize),
                SampleSource(val_rows, modality, norm, size, cfg.resize), "validation split")
    ids = [str(i) for i in train_rows.select_columns(["image_id"])["image_id"]]
    val_ids = validation_carve(ids)
    val_idx = [i for i, x in enumerate(ids) if x in val_ids]
    train_idx = [i for i, x in enumerate(ids) if x not in val_ids]
    if not train_idx:
        raise AimsError(f"config {cfg.config!r} has {len(ids)} train image(s) and no validation "
                        "split: too few to carve a validation set from train.")
    note = (f"config {cfg.config!r} has no validation split: validated on {len(val_idx)} of "
            f"{len(ids)} train images carved by stable hash (aims.splits.split_fraction_key), "
            "trained on the rest; test was never used")
    return (SampleSource(train_rows, modality, norm, size, cfg.resize, train_idx),
            SampleSource(train_rows, modality, norm, size, cfg.resize, val_idx), note)


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """``write(name)`` a temporary sibling, then rename it over ``path`` (see aims.atomic):
    checkpoints of gigabytes stream to disk instead of passing through memory whole."""
    tmp = temporary_sibling(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_weights(model: SimCMF, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.cpu() for k, v in model.trainable_state_dict().items()}
    _write_atomically(path, lambda name: save_file(state, name))


def _run_error(path: Path, problem: str) -> AimsError:
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
        raise _run_error(path, f"its safetensors header claims {header:,} bytes in a file of {size:,}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            _check_shapes(path, shapes, expected)
            return {k: fh.get_tensor(k) for k in shapes}
    except AimsError:
        raise
    except Exception as exc:  # safetensors' own refusals: truncated, corrupt header, bad offsets
        raise _run_error(path, f"it is not a readable safetensors file ({exception_summary(exc)})") from None


def _check_shapes(path: Path, shapes: Mapping[str, tuple[int, ...]],
                  expected: Mapping[str, tuple[int, ...]]) -> None:
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    wrong = [f"{k} {shapes[k]} vs {tuple(expected[k])}" for k in shapes
             if k in expected and tuple(shapes[k]) != tuple(expected[k])]
    if missing or extra or wrong:
        raise AimsError(f"{path} does not match this model: missing {missing[:5]}, unexpected "
                        f"{extra[:5]}, other shapes {wrong[:5]}. Was it trained with another "
                        "--adapter, --strategy or --size?", path=path)


def load_weights(model: SimCMF, path: str | Path) -> None:
    """Load a trainable-weights checkpoint: its keys must be exactly the model's trainable
    weights (same adapter + strategy), else an error naming the difference."""
    expected = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    model.load_state_dict(read_weights(path, expected), strict=False)


def read_json_file(path: str | Path, what: str, max_bytes: int) -> Any:
    """A JSON file of a run folder: a regular file of at most ``max_bytes`` that parses."""
    path = Path(path)
    regular_file_size(path, what, max_bytes)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _run_error(path, f"it is not valid JSON ({exception_summary(exc)})") from None


def _write_metrics(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    if rows:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=list(METRIC_COLUMNS))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out / "metrics.csv", text.getvalue())
    atomic_write_text(out / "metrics.json", json.dumps({**summary, "epochs": rows}, indent=2) + "\n")


def _state_bound(model: SimCMF) -> int:
    """Most bytes a state.pt of this model holds: Adam's two float32 moments per trainable
    weight, with room for the zip format, the scheduler and the counters."""
    return 3 * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad) + (4 << 20)


def _resume_state(model: SimCMF, optimizer: Any, scheduler: Any, out: Path) -> tuple[int, float, int, int, list]:
    """Load ``state.pt``, ``last.safetensors`` and the metrics rows of the run in ``out``;
    returns (epoch, best, best_epoch, step, rows)."""
    path = out / "state.pt"
    state = load_torch_file(path, what="a training state (state.pt)", max_bytes=_state_bound(model))
    counters = ("epoch", "best_epoch", "step")
    if (not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict)
            or not isinstance(state.get("scheduler"), dict)
            or not all(type(state.get(k)) is int and state[k] >= -1 for k in counters)
            or type(state.get("best")) not in (int, float)):
        raise _run_error(path, "expected optimizer and scheduler states, integer epoch, best_epoch "
                               "and step, and a number best")
    unknown = sorted(set(state["scheduler"]) - set(scheduler.state_dict()))
    if unknown:
        raise _run_error(path, f"unknown scheduler key(s) {unknown[:5]}")
    load_weights(model, out / "last.safetensors")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise _run_error(path, f"its optimizer state does not fit this model ({exception_summary(exc)})") from None
    scheduler.load_state_dict(state["scheduler"])
    rows = read_json_file(out / "metrics.json", "a run's metrics.json", MAX_METRICS_JSON_BYTES)
    rows = rows.get("epochs") if isinstance(rows, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) == set(METRIC_COLUMNS) for r in rows):
        raise _run_error(out / "metrics.json", f"expected 'epochs': a list of rows with keys {list(METRIC_COLUMNS)}")
    return state["epoch"], float(state["best"]), state["best_epoch"], state["step"], rows


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model; returns the summary also written to ``metrics.json``."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from tqdm.auto import tqdm

    use_cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if (use_cuda and cfg.dtype == "bf16") else "no",
                              cpu=not use_cuda,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    set_seed(cfg.seed)
    out = Path(cfg.out)
    state_path = out / "state.pt"
    if out.exists() and any(out.iterdir()) and not cfg.resume and accelerator.is_main_process:
        if (out / "run.json").exists():
            raise AimsError(f"{out} already holds a run; pass --resume to continue it or choose "
                            "another --out.")
    out.mkdir(parents=True, exist_ok=True)

    modality = cfg.modality or cfg.config
    probe = config_channel_stats(cfg.config, cfg.data_dir)
    from aims.modalities import MODALITY_STACKS

    if modality not in MODALITY_STACKS:
        raise AimsError(f"unknown modality {modality!r}; known: {', '.join(MODALITY_STACKS)}")
    del probe
    spec = ModelSpec(size=cfg.size, adapter=cfg.adapter, strategy=cfg.strategy,
                     in_channels=MODALITY_STACKS[modality].channels,
                     checkpoint=None if cfg.checkpoint in (None, "none") else str(cfg.checkpoint))
    model = build_model(spec)
    accelerator.print(describe_parameters(model))
    train_src, val_src, val_note = _sources(cfg, model.image_size)
    if val_note != "validation split":
        accelerator.print(f"note: {val_note}")
        cfg.notes.append(val_note)
    samples = TrainSamples(train_src, model.low_res_size, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=True,
                                         num_workers=cfg.workers, drop_last=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.effective_lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)

    rows: list[dict[str, Any]] = []
    start_epoch, best, best_epoch, step = 0, -math.inf, -1, 0
    if cfg.resume and os.path.lexists(state_path):
        start_epoch, best, best_epoch, step, rows = _resume_state(model, optimizer, scheduler, out)
        accelerator.print(f"resumed {out} at epoch {start_epoch} (best validation mIoU {best:.4f})")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    run = {"spec": spec.to_dict(), "train": {**asdict(cfg), "lr": cfg.effective_lr},
           "validation": val_note, "modality": modality, "torch": torch.__version__}
    if accelerator.is_main_process:
        atomic_write_text(out / "run.json", json.dumps(run, indent=2) + "\n")

    summary: dict[str, Any] = {}
    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        samples.epoch = epoch
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        losses, seen, t0 = [], 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (cfg.progress and accelerator.is_local_main_process))
        for batch in bar:
            with accelerator.autocast():
                logits, _ = model(batch["pixel_values"], batch["points"], batch["labels"])
                loss = dice_bce_loss(logits[:, 0], batch["target"])   # (B, 1, s, s)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            seen += len(batch["target"]) * accelerator.num_processes
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{rate:.1f}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop = True
                break
        bar.close()
        scheduler.step()
        train_seconds = time.perf_counter() - t0
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            plain = accelerator.unwrap_model(model)
            miou = evaluate(plain, val_src, device=accelerator.device, dtype=cfg.dtype)
            row = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else float("nan"),
                   "losses": ",".join(f"{v:.5f}" for v in losses),
                   "lr": optimizer.param_groups[0]["lr"], "val_miou": miou,
                   "train_img_s": seen / train_seconds if train_seconds else 0.0}
            rows.append(row)
            if miou > best:
                best, best_epoch = miou, epoch + 1
                _save_weights(plain, out / "best.safetensors")
            _save_weights(plain, out / "last.safetensors")
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "epoch": epoch + 1, "best": best, "best_epoch": best_epoch, "step": step}
            _write_atomically(state_path, lambda name: torch.save(state, name))
            summary = {"best_val_miou": best, "best_epoch": best_epoch, "steps": step,
                       "validation": val_note, "lr": cfg.effective_lr,
                       "trainable_parameters": sum(p.numel() for p in plain.parameters() if p.requires_grad)}
            _write_metrics(out, rows, summary)
            accelerator.print(f"epoch {epoch + 1}: loss {row['loss']:.4f}, validation mIoU {miou:.4f}"
                              f"{' (best)' if best_epoch == epoch + 1 else ''}")
        accelerator.wait_for_everyone()
        if stop:
            break
    return summary


def lr_sweep(cfg: TrainConfig, lrs: tuple[float, ...] = LR_SWEEP) -> dict[str, Any]:
    """Train once per learning rate (``out/lr-<value>/``), pick the best on validation."""
    base = Path(cfg.out)
    results = {}
    for lr in lrs:
        sub = TrainConfig(**{**asdict(cfg), "lr": lr, "out": str(base / f"lr-{lr:g}"), "notes": []})
        results[f"{lr:g}"] = train(sub).get("best_val_miou", float("nan"))
    best = max(results, key=lambda k: results[k])
    summary = {"val_miou_by_lr": results, "best_lr": float(best), "best_run": str(base / f"lr-{best}")}
    base.mkdir(parents=True, exist_ok=True)
    atomic_write_text(base / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return summary


def check_run(run: Any, path: Path) -> dict[str, Any]:
    """A parsed run.json, checked key by key against what :func:`train` writes."""
    from aims.modalities import MODALITY_STACKS

    if not isinstance(run, dict) or not isinstance(run.get("spec"), dict) or not isinstance(run.get("train"), dict):
        raise _run_error(path, "expected a JSON object with 'spec' and 'train' objects")
    spec = run["spec"]
    known = [f.name for f in fields(ModelSpec)]
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise _run_error(path, f"unknown key(s) {unknown[:5]} in 'spec' (known: {', '.join(known)})")
    names = {"size": SIZES, "adapter": ADAPTERS, "strategy": STRATEGIES}
    for key, allowed in names.items():
        if key in spec and not (isinstance(spec[key], str) and spec[key] in allowed):
            raise _run_error(path, f"spec {key} {spec[key]!r:.60} is not one of {', '.join(allowed)}")
    channels = spec.get("in_channels", 3)
    if type(channels) is not int or not 1 <= channels <= 64:
        raise _run_error(path, f"spec in_channels {channels!r:.60} is not a channel count (1 to 64)")
    if not isinstance(spec.get("checkpoint"), (str, type(None))):
        raise _run_error(path, "spec checkpoint must be a path or null")
    if not (isinstance(run.get("modality"), str) and run["modality"] in MODALITY_STACKS):
        raise _run_error(path, f"modality {run.get('modality')!r:.60} is not one of {', '.join(MODALITY_STACKS)}")
    if not (isinstance(run["train"].get("resize"), str) and run["train"]["resize"] in RESIZE_MODES):
        raise _run_error(path, f"train resize must be one of {', '.join(RESIZE_MODES)}")
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


__all__ = ["LR_SWEEP", "METRIC_COLUMNS", "WEIGHTS", "TrainConfig", "check_run", "default_lr", "dice_bce_loss",
           "load_run", "load_weights", "lr_sweep", "read_json_file", "read_weights", "train"]
