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

Runs under ``accelerate launch`` (multi-GPU, multi-node) and as plain ``python`` (one
process, CPU or one GPU); bf16 autocast on CUDA only.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aims.baselines.data import (SampleSource, TrainSamples, available_splits, config_channel_stats,
                                 load_split, modality_normalizer, validation_carve)
from aims.baselines.model import ModelSpec, SimCMF, build_model, describe_parameters
from aims.baselines.predict import evaluate
from aims.baselines.strategies import PEFT_STRATEGIES
from aims.errors import AimsError

LR_SWEEP = (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


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


def _save_weights(model: SimCMF, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.cpu() for k, v in model.trainable_state_dict().items()}, str(tmp))
    tmp.replace(path)


def load_weights(model: SimCMF, path: str | Path) -> None:
    """Load a trainable-weights checkpoint: its keys must be exactly the model's trainable
    weights (same adapter + strategy), else an error naming the difference."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise AimsError(f"{path} does not match this model ({model.spec.adapter} + "
                        f"{model.spec.strategy}): missing {missing[:5]}, unexpected {extra[:5]}.")
    model.load_state_dict(state, strict=False)


def _write_metrics(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    if rows:
        tmp = out / "metrics.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        tmp.replace(out / "metrics.csv")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps({**summary, "epochs": rows}, indent=2) + "\n")
    tmp.replace(out / "metrics.json")


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
    from aims.modalities import MODALITIES

    if modality not in MODALITIES:
        raise AimsError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    del probe
    spec = ModelSpec(size=cfg.size, adapter=cfg.adapter, strategy=cfg.strategy,
                     in_channels=MODALITIES[modality].channels,
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
    if cfg.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        load_weights(model, out / "last.safetensors")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, best_epoch, step = state["epoch"], state["best"], state["best_epoch"], state["step"]
        rows = json.loads((out / "metrics.json").read_text())["epochs"]
        accelerator.print(f"resumed {out} at epoch {start_epoch} (best validation mIoU {best:.4f})")
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    run = {"spec": spec.to_dict(), "train": {**asdict(cfg), "lr": cfg.effective_lr},
           "validation": val_note, "modality": modality, "torch": torch.__version__}
    if accelerator.is_main_process:
        (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")

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
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1, "best": best, "best_epoch": best_epoch, "step": step},
                       str(state_path) + ".tmp")
            Path(str(state_path) + ".tmp").replace(state_path)
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
    (base / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_run(run_dir: str | Path, *, weights: str = "best", checkpoint: str | None = None) -> tuple[SimCMF, dict]:
    """The trained model of a run folder (its base SAM checkpoint + ``best.safetensors``)."""
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise AimsError(f"{run_dir} is not a training run (no run.json); pass the --out folder "
                        "of `aims baseline train`.") from None
    spec = ModelSpec(**run["spec"])
    if checkpoint is not None:
        spec.checkpoint = None if checkpoint == "none" else checkpoint
    model = build_model(spec)
    load_weights(model, run_dir / f"{weights}.safetensors")
    return model, run


__all__ = ["LR_SWEEP", "TrainConfig", "default_lr", "dice_bce_loss", "load_run", "load_weights",
           "lr_sweep", "train"]
