"""Training under a named recipe (``--recipe reference|aims``, :mod:`aims.baselines.recipes`),
model selection, resumable checkpoints.

Shared by both recipes: Adam (0.9, 0.999, eps 1e-8, no weight decay) over the trainable
weights, StepLR every 10 epochs × 0.5 stepped once per epoch, batch 4, the reference's DiceCE
loss (:func:`aims.baselines.losses.dice_ce_loss`) on the single-mask low-resolution logits
against the instance mask in the same frame, one instance and one uniformly random positive
click per training image and epoch.

Where they differ (docs/baselines.md has the full table):

- ``reference``: inputs, draws and evaluation of :mod:`aims.baselines.reference_data`; fp32;
  unshuffled; 51 epochs; evaluation at epochs 0, 5, …, 50 *before* that epoch's training
  (so the 51st epoch's training is never evaluated, as in the reference); numpy seeded with
  ``--seed`` (default 8888), torch with 0. Selection on validation unless
  ``--select-on-test``.
- ``aims``: inputs of :mod:`aims.baselines.data`; bf16 autocast on CUDA; shuffled; 50 epochs;
  evaluation (mIoU, protocol ``aims``, one click) on validation after every epoch.

A config prepared without a validation split gets a deterministic carve of train and
``run.json`` says so. The run folder's files and how they are read back:
:mod:`aims.baselines.run_folder`.

Runs under ``accelerate launch`` (multi-GPU, multi-node) and as plain ``python`` (one
process, CPU or one GPU). The reference recipe's single random stream is exact only in one
process with ``--workers 0`` (what the reference does); it refuses more workers.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aims.atomic import atomic_write_text
from aims.baselines.adapters import check_adapter
from aims.baselines.choices import DTYPES, RGBX_ADAPTER, STRATEGIES, WEIGHTS
from aims.baselines.data import TrainSamples
from aims.baselines.losses import dice_ce_loss
from aims.baselines.model import ModelSpec, SimCMF, build_model, describe_parameters
from aims.baselines.predict import evaluate
from aims.baselines.recipes import LR_SWEEP, Recipe, recipe, selection_label
from aims.baselines.run_folder import (MAX_METRICS_JSON_BYTES, METRIC_COLUMNS, check_run, load_run, load_weights,
                                       read_json_file, read_weights, run_error, save_weights, state_bound,
                                       write_atomically, write_metrics)
from aims.baselines.rgbx_systems import check_system_spec, is_rgbx_system
from aims.baselines.sam_loading import load_torch_file
from aims.baselines.train_data import TrainingRows, register_dataset, resolve_input, training_rows
from aims.errors import AimsError


def default_lr(strategy: str, recipe_name: str = "aims") -> float:
    return recipe(recipe_name).default_lr(strategy)


@dataclass
class TrainConfig:
    """One training run. Fields left ``None`` take the recipe's value (:meth:`resolved`)."""

    config: str
    recipe: str = "aims"
    strategy: str | None = None
    adapter: str | None = None
    checkpoint: str | None = None
    size: str = "vit-b"
    modality: str | None = None          # default: the config's own modality
    data_dir: str | None = None
    out: str = "runs/simcmf"
    lr: float | None = None
    epochs: int | None = None
    eval_every: int | None = None
    batch_size: int = 4
    step_size: int = 10
    gamma: float = 0.5
    resize: str = "sam"                  # aims recipe; the reference recipe always warps
    seed: int | None = None
    select_on_test: bool = False
    uniform_init: bool = False
    resume: bool = False
    max_steps: int | None = None         # stop early (tests, smoke runs)
    workers: int = 0
    dtype: str | None = None             # autocast dtype on CUDA (aims); the reference is fp32
    progress: bool = True
    recipe_file: str | None = None       # recorded: the file the settings came from
    notes: list[str] = field(default_factory=list)

    @property
    def effective_lr(self) -> float:
        rec = recipe(self.recipe)
        return self.lr if self.lr is not None else rec.default_lr(self.strategy or rec.strategy)

    def resolved(self) -> TrainConfig:
        """Every ``None`` filled from the recipe; the recipe's fixed points checked."""
        rec = recipe(self.recipe)
        if self.recipe == "reference" and self.dtype == "bf16":
            raise AimsError("--recipe reference trains in fp32, as the reference code does; "
                            "drop --dtype bf16 or use --recipe aims.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise AimsError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        strategy = self.strategy or rec.strategy
        if strategy not in STRATEGIES:
            raise AimsError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if is_rgbx_system(strategy):     # no projector: the system splits RGB and X itself
            adapter = self.adapter or RGBX_ADAPTER
            check_system_spec(strategy, adapter)
        else:
            adapter = self.adapter or rec.adapter
            check_adapter(adapter)
        return replace(self, strategy=strategy, adapter=adapter,
                       lr=self.lr if self.lr is not None else rec.default_lr(strategy),
                       epochs=self.epochs if self.epochs is not None else rec.epochs,
                       eval_every=self.eval_every if self.eval_every is not None else rec.eval_every,
                       seed=self.seed if self.seed is not None else rec.seed,
                       dtype=self.dtype or ("fp32" if rec.precision == "fp32" else "bf16"),
                       resize=rec.resize if rec.inputs == "reference" else self.resize,
                       notes=list(self.notes))


def _evaluation_due(rec: Recipe, cfg: TrainConfig, epoch: int, before: bool) -> bool:
    """Whether to evaluate around 0-based ``epoch``: before its training (reference: epochs
    0, k, 2k … and the last) or after it (aims: after every k-th and the last)."""
    if before != rec.eval_before_training:
        return False
    n = epoch if before else epoch + 1
    return n % cfg.eval_every == 0 or epoch == cfg.epochs - 1


def _evaluate(rec: Recipe, model: SimCMF, rows: TrainingRows, device: Any, dtype: str) -> tuple[float, float | None]:
    """(IoU, Dice or None) of the recipe's selection metric."""
    if rec.inputs == "reference":
        from aims.baselines.reference_data import reference_evaluate

        scores = reference_evaluate(model, rows.select, device=device)
        return scores.iou, scores.dice
    return evaluate(model, rows.select, device=device, dtype=dtype), None


def _resume_state(model: SimCMF, optimizer: Any, scheduler: Any, samples: Any, out: Path
                  ) -> tuple[int, float, int, int, list]:
    """Load ``state.pt``, ``last.safetensors`` and the metrics rows of the run in ``out``;
    returns (epoch, best, best_epoch, step, rows)."""
    path = out / "state.pt"
    state = load_torch_file(path, what="a training state (state.pt)", max_bytes=state_bound(model))
    counters = ("epoch", "best_epoch", "step")
    if (not isinstance(state, dict) or not isinstance(state.get("optimizer"), dict)
            or not isinstance(state.get("scheduler"), dict)
            or not all(type(state.get(k)) is int and state[k] >= -1 for k in counters)
            or type(state.get("best")) not in (int, float)):
        raise run_error(path, "expected optimizer and scheduler states, integer epoch, best_epoch "
                              "and step, and a number best")
    unknown = sorted(set(state["scheduler"]) - set(scheduler.state_dict()))
    if unknown:
        raise run_error(path, f"unknown scheduler key(s) {unknown[:5]}")
    if hasattr(samples, "set_rng_state"):
        try:
            samples.set_rng_state(state.get("rng"))
        except AimsError as exc:
            raise run_error(path, str(exc)) from None
    load_weights(model, out / "last.safetensors")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        from aims.baselines.sam_loading import exception_summary

        raise run_error(path, f"its optimizer state does not fit this model ({exception_summary(exc)})") from None
    scheduler.load_state_dict(state["scheduler"])
    rows = read_json_file(out / "metrics.json", "a run's metrics.json", MAX_METRICS_JSON_BYTES)
    rows = rows.get("epochs") if isinstance(rows, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) == set(METRIC_COLUMNS) for r in rows):
        raise run_error(out / "metrics.json", f"expected 'epochs': a list of rows with keys {list(METRIC_COLUMNS)}")
    return state["epoch"], float(state["best"]), state["best_epoch"], state["step"], rows


def _seed(rec: Recipe, seed: int) -> None:
    from accelerate.utils import set_seed

    set_seed(seed)
    if rec.torch_seed is not None:   # the reference: numpy/random with -seed, torch with 0
        torch.manual_seed(rec.torch_seed)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model; returns the summary also written to ``metrics.json``."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
    from tqdm.auto import tqdm

    cfg = cfg.resolved()
    rec = recipe(cfg.recipe)
    use_cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if (use_cuda and cfg.dtype == "bf16") else "no",
                              cpu=not use_cuda,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    if rec.inputs == "reference" and (cfg.workers or accelerator.num_processes > 1):
        raise AimsError("--recipe reference draws its training clicks from one random stream in row "
                        "order, as the reference code does: run it in one process with --workers 0 "
                        "(use --recipe aims for several workers or GPUs).")
    _seed(rec, cfg.seed)
    out = Path(cfg.out)
    state_path = out / "state.pt"
    if out.exists() and any(out.iterdir()) and not cfg.resume and accelerator.is_main_process:
        if (out / "run.json").exists():
            raise AimsError(f"{out} already holds a run; pass --resume to continue it or choose "
                            "another --out.")
    register_dataset(cfg.config, cfg.data_dir)
    model_input = resolve_input(cfg.config, cfg.modality, rec, cfg.strategy)
    out.mkdir(parents=True, exist_ok=True)

    spec = ModelSpec(size=cfg.size, adapter=cfg.adapter, strategy=cfg.strategy, in_channels=model_input.channels,
                     checkpoint=None if cfg.checkpoint in (None, "none") else str(cfg.checkpoint),
                     uniform_init=cfg.uniform_init)
    model = build_model(spec)
    accelerator.print(f"recipe {cfg.recipe}: " + describe_parameters(model))
    rows = training_rows(cfg.config, cfg.data_dir, model_input, rec, model.image_size, cfg.resize,
                         cfg.select_on_test)
    if rows.note != "validation split":
        accelerator.print(f"note: {rows.note}")
        cfg.notes.append(rows.note)
    if rec.inputs == "reference":
        from aims.baselines.reference_data import ReferenceTrainSamples

        samples: Any = ReferenceTrainSamples(rows.train, model.low_res_size, seed=cfg.seed)
        if samples.skipped:
            note = (f"{samples.skipped} training image(s) have no instance at or above the area threshold "
                    "after the first id is dropped; skipped (the reference code would fail on them)")
            accelerator.print(f"note: {note}")
            cfg.notes.append(note)
    else:
        samples = TrainSamples(rows.train, model.low_res_size, seed=cfg.seed)
    if not len(samples):
        raise AimsError(f"config {cfg.config!r}: no training image has an instance to train on.")
    loader = torch.utils.data.DataLoader(samples, batch_size=cfg.batch_size, shuffle=rec.shuffle,
                                         num_workers=cfg.workers, drop_last=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)

    history: list[dict[str, Any]] = []
    start_epoch, best, best_epoch, step = 0, -math.inf, -1, 0
    if cfg.resume and os.path.lexists(state_path):
        start_epoch, best, best_epoch, step, history = _resume_state(model, optimizer, scheduler, samples, out)
        accelerator.print(f"resumed {out} at epoch {start_epoch} (best mIoU {100 * best:.2f} %)")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    selection = selection_label(cfg.recipe, cfg.select_on_test)
    run = {"spec": spec.to_dict(), "train": asdict(cfg), "recipe": cfg.recipe, "selection": selection,
           "validation": rows.note, "modality": model_input.name, "torch": torch.__version__}
    if model_input.prior is not None:
        run["input_prior"] = model_input.prior
    if accelerator.is_main_process:
        atomic_write_text(out / "run.json", json.dumps(run, indent=2) + "\n")

    score_key = "best_test_miou" if cfg.select_on_test else "best_val_miou"
    summary: dict[str, Any] = {}
    stop = False

    def select(at: int) -> tuple[float, float | None]:
        nonlocal best, best_epoch
        plain = accelerator.unwrap_model(model)
        miou, dice = _evaluate(rec, plain, rows, accelerator.device, cfg.dtype)
        if miou > best:
            best, best_epoch = miou, at
            save_weights(plain, out / "best.safetensors")
        return miou, dice

    for epoch in range(start_epoch, cfg.epochs):
        val: tuple[int, float, float | None] | None = None
        if accelerator.is_main_process and _evaluation_due(rec, cfg, epoch, before=True):
            val = (epoch, *select(epoch))
        accelerator.wait_for_everyone()
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
            loss = dice_ce_loss(logits[:, 0].float(), batch["target"])   # (B, 1, s, s)
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
            if _evaluation_due(rec, cfg, epoch, before=False) or (stop and not rec.eval_before_training):
                val = (epoch + 1, *select(epoch + 1))
            history.append({"epoch": epoch + 1, "step": step,
                            "loss": float(np.mean(losses)) if losses else float("nan"),
                            "losses": ",".join(f"{v:.5f}" for v in losses),
                            "lr": optimizer.param_groups[0]["lr"],
                            "val_at": None if val is None else val[0],
                            "val_miou": None if val is None else val[1],
                            "val_dice": None if val is None else val[2],
                            "train_img_s": seen / train_seconds if train_seconds else 0.0})
            save_weights(plain, out / "last.safetensors")
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "epoch": epoch + 1, "best": best, "best_epoch": best_epoch, "step": step}
            if hasattr(samples, "rng_state"):
                state["rng"] = samples.rng_state()
            write_atomically(state_path, lambda name: torch.save(state, name))
            summary = {"recipe": cfg.recipe, "selection": selection, score_key: best, "best_score": best,
                       "best_epoch": best_epoch, "steps": step, "validation": rows.note, "lr": cfg.lr,
                       "trainable_parameters": sum(p.numel() for p in plain.parameters() if p.requires_grad)}
            write_metrics(out, history, summary)
            evaluated = "" if val is None else (f", {'test' if cfg.select_on_test else 'validation'} mIoU "
                                                 f"{100 * val[1]:.2f} % after {val[0]} epoch(s)")
            accelerator.print(f"epoch {epoch + 1}: loss {history[-1]['loss']:.4f}{evaluated}"
                              f"{' (best)' if val is not None and best_epoch == val[0] else ''}")
        accelerator.wait_for_everyone()
        if stop:
            break
    return summary


def lr_sweep(cfg: TrainConfig, lrs: tuple[float, ...] = LR_SWEEP) -> dict[str, Any]:
    """Train once per learning rate (``out/lr-<value>/``), pick the best by the run's own
    selection (validation, or test under ``--select-on-test``)."""
    base = Path(cfg.out)
    results = {}
    for lr in lrs:
        sub = TrainConfig(**{**asdict(cfg), "lr": lr, "out": str(base / f"lr-{lr:g}"), "notes": []})
        results[f"{lr:g}"] = train(sub).get("best_score", float("nan"))
    best = max(results, key=lambda k: results[k])
    summary = {"recipe": cfg.recipe, "selection": selection_label(cfg.recipe, cfg.select_on_test),
               "miou_by_lr": results, "best_lr": float(best), "best_run": str(base / f"lr-{best}")}
    base.mkdir(parents=True, exist_ok=True)
    atomic_write_text(base / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["LR_SWEEP", "METRIC_COLUMNS", "WEIGHTS", "TrainConfig", "check_run", "default_lr", "load_run",
           "load_weights", "lr_sweep", "read_json_file", "read_weights", "train"]
