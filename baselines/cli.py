"""``aims baseline train|predict``: the SimCMF baselines (needs the ``[baselines]`` extra).

Mounted lazily by :mod:`aims.cli` so that the core commands never import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from aims.errors import AimsError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="SimCMF baselines on Segment Anything: train, predict (needs the [baselines] extra).")


def _device(device: Optional[str]) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@app.command("train")
def train_cmd(
    config: Annotated[str, typer.Option(help="Dataset config to train on (depth, hha, nir, ...).")],
    strategy: Annotated[str, typer.Option(help="lora, mlp-adapter, prompt, full or scratch.")] = "lora",
    checkpoint: Annotated[str, typer.Option(
        help="Meta sam_vit_*.pth, a Hugging Face-format folder, or 'none' (random init).")] = "none",
    adapter: Annotated[str, typer.Option(
        help="simcmf, patch-embed, linear, linear-frozen or zero-shot.")] = "simcmf",
    size: Annotated[Optional[str], typer.Option(
        help="SAM size: vit-b, vit-l, vit-h (default: from the checkpoint name, else vit-b); tiny for tests.")] = None,
    modality: Annotated[Optional[str], typer.Option(
        help="Model input (default: the config's modality; e.g. rgb-depth, rgb).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Prepared dataset folder.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, metrics).")] = Path("runs/simcmf"),
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 3e-4 PEFT, 1e-5 full).")] = None,
    lr_sweep: Annotated[bool, typer.Option("--lr-sweep", help="Sweep 3e-6 … 3e-3, select on validation.")] = False,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Images per step (per process).")] = 4,
    resize: Annotated[str, typer.Option(help="sam (longest side + pad) or warp (reference code).")] = "sam",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps (smoke runs).")] = None,
    workers: Annotated[int, typer.Option(help="Data loader workers.")] = 0,
    dtype: Annotated[str, typer.Option(help="bf16 or fp32 autocast on GPU (CPU: fp32).")] = "bf16",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune SAM on one config with the SimCMF recipe; select on validation."""
    from aims.baselines.sam_loading import infer_size
    from aims.baselines.train import TrainConfig, lr_sweep as sweep, train

    cfg = TrainConfig(config=config, strategy=strategy, adapter=adapter, checkpoint=checkpoint,
                      size=size or infer_size(checkpoint), modality=modality,
                      data_dir=None if data_dir is None else str(data_dir), out=str(out), lr=lr,
                      epochs=epochs, batch_size=batch_size, resize=resize, seed=seed, resume=resume,
                      max_steps=max_steps, workers=workers, dtype=dtype, progress=progress)
    if strategy == "scratch" and checkpoint != "none":
        typer.echo("note: --strategy scratch ignores --checkpoint (random initialisation)")
    summary = sweep(cfg) if lr_sweep else train(cfg)
    typer.echo(json.dumps(summary, indent=2))


@app.command("predict")
def predict_cmd(
    config: Annotated[str, typer.Option(help="Dataset config to predict.")],
    out: Annotated[Path, typer.Option(help="Predictions folder (read by `aims score`).")],
    run: Annotated[Optional[Path], typer.Option(
        help="Training run folder (from `aims baseline train --out`); omit for zero-shot SAM.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="SAM weights: for zero-shot, or to override the run's base checkpoint path.")] = None,
    size: Annotated[Optional[str], typer.Option(help="SAM size for zero-shot (default from the name).")] = None,
    split: Annotated[str, typer.Option(help="Split to predict.")] = "test",
    protocol: Annotated[str, typer.Option(help="aims (native masks) or simcmf (256x256, warp).")] = "aims",
    data_dir: Annotated[Optional[Path], typer.Option(help="Prepared dataset folder.")] = None,
    weights: Annotated[str, typer.Option(help="best or last checkpoint of the run.")] = "best",
    clicks: Annotated[int, typer.Option(
        help="Also run interactive evaluation with up to k clicks (0: off); writes <out>-interactive.json.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
    dtype: Annotated[str, typer.Option(help="bf16 or fp32 on GPU.")] = "bf16",
    image_batch: Annotated[int, typer.Option(help="Images encoded together.")] = 1,
    prompt_batch: Annotated[int, typer.Option(help="Prompts decoded together (per image).")] = 64,
    workers: Annotated[int, typer.Option(help="Data loader workers.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="Prediction file format.")] = "rle",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Predict one mask per instance click (encoder once per image, clicks batched)."""
    import torch

    from aims.baselines.data import SampleSource, config_channel_stats, load_split, modality_normalizer
    from aims.baselines.interactive import interactive_eval
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.predict import write_predictions
    from aims.baselines.sam_loading import infer_size
    from aims.baselines.strategies import count_parameters
    from aims.baselines.train import load_run

    if protocol not in ("aims", "simcmf"):
        raise AimsError(f"unknown --protocol {protocol!r}; choose aims or simcmf")
    if run is not None:
        model, info = load_run(run, weights=weights, checkpoint=checkpoint)
        modality = info["modality"]
        resize = info["train"]["resize"]
        method = f"simcmf-{model.spec.adapter}-{model.spec.strategy}"
    else:
        if checkpoint is None:
            raise AimsError("zero-shot prediction needs --checkpoint (Meta's sam_vit_b_01ec64.pth "
                            "or a Hugging Face folder); to use a trained model pass --run.")
        spec = ModelSpec(size=size or infer_size(checkpoint), adapter="zero-shot", strategy="full",
                         in_channels=3, checkpoint=None if checkpoint == "none" else checkpoint)
        model = build_model(spec)
        modality, resize, method = "rgb", "sam", "sam-zero-shot"
    if protocol == "simcmf" and resize != "warp":
        typer.echo(f"note: protocol simcmf warps inputs to {model.image_size}² (the model was "
                   f"trained with --resize {resize})")
        resize = "warp"
    dev = _device(device)
    model.to(dev)
    norm = modality_normalizer(modality, config_channel_stats(config, data_dir))
    source = SampleSource(load_split(config, split, data_dir), modality, norm, model.image_size, resize)
    meta = {"method": method, "model": f"SAM {model.spec.size}", "adapter": model.spec.adapter,
            "strategy": model.spec.strategy, "modality": modality, "split": split,
            "protocol": protocol, "resize": resize, "run": None if run is None else str(run),
            "checkpoint": model.spec.checkpoint, "torch": torch.__version__,
            "trainable_params": count_parameters(model)[0] if run is not None else 0}
    stats = write_predictions(model, source, out, config=config, meta=meta, protocol=protocol, fmt=fmt,
                              progress=progress, device=dev, dtype=dtype, prompt_batch=prompt_batch,
                              image_batch=image_batch, workers=workers)
    typer.echo(f"{stats.images} images, {stats.instances} instances in {stats.seconds:.1f} s "
               f"({stats.images_per_s:.1f} img/s) → {out}")
    if clicks > 0:
        result = interactive_eval(model, source, max_clicks=clicks, device=dev, dtype=dtype)
        summary = result.summary()
        # beside the predictions folder, not in it (it holds only what `aims score` reads)
        target = Path(out).parent / f"{Path(out).name}-interactive.json"
        target.write_text(json.dumps(summary, indent=2) + "\n")
        typer.echo(f"interactive evaluation → {target}")
        typer.echo(json.dumps(summary, indent=2))


__all__ = ["app"]
