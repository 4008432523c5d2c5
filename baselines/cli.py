"""``aims baseline train|predict``: the SimCMF baselines (needs the ``[baselines]`` extra).

Mounted by :mod:`aims.cli`; torch is imported inside the commands only, so the core
commands, ``--help`` and every argument error stay fast and work without the extra.
The choices of ``--strategy``, ``--adapter``, ``--resize``, ``--dtype`` and ``--weights``
come from :mod:`aims.baselines.choices`, which the model modules import too.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from aims.baselines.choices import ADAPTERS, DTYPES, RESIZE_MODES, STRATEGIES, WEIGHTS
from aims.baselines.sam_loading import SIZES
from aims.errors import AimsError
from aims.modalities import MODALITY_STACKS
from aims.predictions import FORMATS
from aims.protocols import PROTOCOLS

#: devices `aims baseline predict --device` accepts (more GPUs: `accelerate launch`)
DEVICES = ("cpu", "cuda")
#: bounds of the loaders' worker processes and of the interactive clicks per instance
MAX_WORKERS = 256
MAX_CLICKS = 100


def _choice(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str enum: the choice type typer lists in --help and checks before the command."""
    return enum.Enum(name, [(v, v) for v in values], type=str)


Strategy = _choice("Strategy", STRATEGIES)
Adapter = _choice("Adapter", tuple(ADAPTERS))
Resize = _choice("Resize", RESIZE_MODES)
Dtype = _choice("Dtype", DTYPES)
Weights = _choice("Weights", WEIGHTS)
Size = _choice("Size", SIZES)
ModalityName = _choice("ModalityName", tuple(MODALITY_STACKS))
Protocol = _choice("Protocol", tuple(PROTOCOLS))
Format = _choice("Format", FORMATS)
Device = _choice("Device", DEVICES)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="SimCMF baselines on Segment Anything: train, predict (needs the [baselines] extra).")


def _value(choice: enum.Enum | None) -> str | None:
    return None if choice is None else choice.value


def _device(device: str | None) -> str:
    """The device to run on; CUDA asked for on a machine without it is the user's mistake."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise AimsError("--device cuda: this torch build sees no CUDA device "
                        f"(torch {torch.__version__}); pass --device cpu or omit --device.")
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@app.command("train")
def train_cmd(
    config: Annotated[str, typer.Option(help="Dataset config to train on (depth, hha, nir, ...).")],
    strategy: Annotated[Strategy, typer.Option(help="What trains inside SAM.")] = "lora",
    checkpoint: Annotated[str, typer.Option(
        help="Meta sam_vit_*.pth, a Hugging Face-format folder, or 'none' (random init).")] = "none",
    adapter: Annotated[Adapter, typer.Option(help="How the modality enters SAM's encoder.")] = "simcmf",
    size: Annotated[Optional[Size], typer.Option(
        help="SAM size (default: from the checkpoint name, else vit-b); tiny for tests.")] = None,
    modality: Annotated[Optional[ModalityName], typer.Option(
        help="Model input (default: the config's modality).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Prepared dataset folder.")] = None,
    out: Annotated[Path, typer.Option(file_okay=False,
        help="Run folder (checkpoints, metrics).")] = Path("runs/simcmf"),
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate (default 3e-4 PEFT, 1e-5 full).")] = None,
    lr_sweep: Annotated[bool, typer.Option("--lr-sweep", help="Sweep 3e-6 … 3e-3, select on validation.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs.")] = 50,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step (per process).")] = 4,
    resize: Annotated[Resize, typer.Option(help="sam (longest side + pad) or warp (reference code).")] = "sam",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed.")] = 0,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many steps (smoke runs).")] = None,
    workers: Annotated[int, typer.Option(min=0, max=MAX_WORKERS, help="Data loader workers.")] = 0,
    dtype: Annotated[Dtype, typer.Option(help="Autocast dtype on GPU (CPU: fp32).")] = "bf16",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune SAM on one config with the SimCMF recipe; select on validation."""
    from aims.baselines.sam_loading import infer_size
    from aims.baselines.train import TrainConfig, lr_sweep as sweep, train

    cfg = TrainConfig(config=config, strategy=strategy.value, adapter=adapter.value, checkpoint=checkpoint,
                      size=_value(size) or infer_size(checkpoint), modality=_value(modality),
                      data_dir=None if data_dir is None else str(data_dir), out=str(out), lr=lr,
                      epochs=epochs, batch_size=batch_size, resize=resize.value, seed=seed, resume=resume,
                      max_steps=max_steps, workers=workers, dtype=dtype.value, progress=progress)
    if strategy.value == "scratch" and checkpoint != "none":
        typer.echo("note: --strategy scratch ignores --checkpoint (random initialisation)")
    summary = sweep(cfg) if lr_sweep else train(cfg)
    typer.echo(json.dumps(summary, indent=2))


@app.command("predict")
def predict_cmd(
    config: Annotated[str, typer.Option(help="Dataset config to predict.")],
    out: Annotated[Path, typer.Option(file_okay=False, help="Predictions folder (read by `aims score`).")],
    run: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Training run folder (from `aims baseline train --out`); omit for zero-shot SAM.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="SAM weights: for zero-shot, or to override the run's base checkpoint path.")] = None,
    size: Annotated[Optional[Size], typer.Option(help="SAM size for zero-shot (default from the name).")] = None,
    split: Annotated[str, typer.Option(help="Split to predict.")] = "test",
    protocol: Annotated[Protocol, typer.Option(help="aims (native masks) or simcmf (256x256, warp).")] = "aims",
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Prepared dataset folder.")] = None,
    weights: Annotated[Weights, typer.Option(help="Which checkpoint of the run.")] = "best",
    clicks: Annotated[int, typer.Option(min=0, max=MAX_CLICKS,
        help="Also run interactive evaluation with up to k clicks (0: off); writes <out>-interactive.json.")] = 0,
    device: Annotated[Optional[Device], typer.Option(help="Device (default: cuda if available).")] = None,
    dtype: Annotated[Dtype, typer.Option(help="Autocast dtype on GPU.")] = "bf16",
    image_batch: Annotated[int, typer.Option(min=1, help="Images encoded together.")] = 1,
    prompt_batch: Annotated[int, typer.Option(min=1, help="Prompts decoded together (per image).")] = 64,
    workers: Annotated[int, typer.Option(min=0, max=MAX_WORKERS, help="Data loader workers.")] = 0,
    fmt: Annotated[Format, typer.Option("--format", help="Prediction file format.")] = "rle",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Predict one mask per instance click (encoder once per image, clicks batched)."""
    import torch

    from aims.atomic import atomic_write_text
    from aims.baselines.data import SampleSource, config_channel_stats, load_split, modality_normalizer
    from aims.baselines.interactive import interactive_eval
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.predict import write_predictions
    from aims.baselines.sam_loading import infer_size
    from aims.baselines.strategies import count_parameters
    from aims.baselines.train import load_run

    dev = _device(_value(device))
    if run is not None:
        model, info = load_run(run, weights=weights.value, checkpoint=checkpoint)
        modality = info["modality"]
        resize = info["train"]["resize"]
        method = f"simcmf-{model.spec.adapter}-{model.spec.strategy}"
    else:
        if checkpoint is None:
            raise AimsError("zero-shot prediction needs --checkpoint (Meta's sam_vit_b_01ec64.pth "
                            "or a Hugging Face folder); to use a trained model pass --run.")
        spec = ModelSpec(size=_value(size) or infer_size(checkpoint), adapter="zero-shot", strategy="full",
                         in_channels=3, checkpoint=None if checkpoint == "none" else checkpoint)
        model = build_model(spec)
        modality, resize, method = "rgb", "sam", "sam-zero-shot"
    if protocol.value == "simcmf" and resize != "warp":
        typer.echo(f"note: protocol simcmf warps inputs to {model.image_size}² (the model was "
                   f"trained with --resize {resize})")
        resize = "warp"
    model.to(dev)
    norm = modality_normalizer(modality, config_channel_stats(config, data_dir))
    source = SampleSource(load_split(config, split, data_dir), modality, norm, model.image_size, resize)
    meta = {"method": method, "model": f"SAM {model.spec.size}", "adapter": model.spec.adapter,
            "strategy": model.spec.strategy, "modality": modality, "split": split,
            "protocol": protocol.value, "resize": resize, "run": None if run is None else str(run),
            "checkpoint": model.spec.checkpoint, "torch": torch.__version__,
            "trainable_params": count_parameters(model)[0] if run is not None else 0}
    stats = write_predictions(model, source, out, config=config, meta=meta, protocol=protocol.value,
                              fmt=fmt.value, progress=progress, device=dev, dtype=dtype.value,
                              prompt_batch=prompt_batch, image_batch=image_batch, workers=workers)
    typer.echo(f"{stats.images} images, {stats.instances} instances in {stats.seconds:.1f} s "
               f"({stats.images_per_s:.1f} img/s) → {out}")
    if clicks > 0:
        result = interactive_eval(model, source, max_clicks=clicks, device=dev, dtype=dtype.value)
        summary = result.summary()
        # beside the predictions folder, not in it (it holds only what `aims score` reads)
        target = Path(out).parent / f"{Path(out).name}-interactive.json"
        atomic_write_text(target, json.dumps(summary, indent=2) + "\n")
        typer.echo(f"interactive evaluation → {target}")
        typer.echo(json.dumps(summary, indent=2))


__all__ = ["DEVICES", "app"]
