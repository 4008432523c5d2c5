"""``aims baseline train|predict|describe|reproduce``: the SimCMF baselines (needs the
``[baselines]`` extra).

Mounted by :mod:`aims.cli`; torch is imported inside the commands only, so the core
commands, ``--help`` and every argument error stay fast and work without the extra. Fixed
choices (``--strategy``, ``--recipe``, ``--resize``, ``--dtype``, ``--weights``, ``--size``)
come from the torch-free :mod:`aims.baselines.choices` and :mod:`aims.baselines.recipes`.
``--adapter`` and ``--modality`` are free strings checked when the command runs: projectors
come in families (``paper-n{n}-k{k}-d{d}``), and modalities include those a prepared
dataset's records bring (``--data-dir``).

Settings resolve in one order: the command line, then ``--recipe-file``, then the recipe's
defaults (:mod:`aims.baselines.recipes`).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from aims.baselines.choices import (ADAPTER_FAMILIES, DTYPES, FIXED_ADAPTERS, RESIZE_MODES, RGBX_ADAPTER,
                                     RGBX_STRATEGIES, STRATEGIES, WEIGHTS)
from aims.baselines.recipes import RECIPES
from aims.baselines.sam_loading import SIZES
from aims.errors import AimsError
from aims.predictions import FORMATS
from aims.predictions import MAX_CLICKS as MAX_INTERACTIVE_CLICKS   # RITM's 20-click budget
from aims.protocols import PROTOCOLS

#: devices `aims baseline predict --device` accepts (more GPUs: `accelerate launch`)
DEVICES = ("cpu", "cuda")
#: bound of the loaders' worker processes
MAX_WORKERS = 256
#: the paper's tables `reproduce --table` knows
TABLE_CHOICES = ("1", "2", "3", "ablation", "6")


def _choice(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str enum: the choice type typer lists in --help and checks before the command."""
    return enum.Enum(name, [(v, v) for v in values], type=str)


Strategy = _choice("Strategy", STRATEGIES)
RecipeName = _choice("RecipeName", tuple(RECIPES))
Resize = _choice("Resize", RESIZE_MODES)
Dtype = _choice("Dtype", DTYPES)
Weights = _choice("Weights", WEIGHTS)
Size = _choice("Size", SIZES)
Protocol = _choice("Protocol", tuple(PROTOCOLS))
Format = _choice("Format", FORMATS)
Device = _choice("Device", DEVICES)
Table = _choice("Table", TABLE_CHOICES)

ADAPTER_HELP = (f"Cross-modal projector: {', '.join(FIXED_ADAPTERS)}, or a family member "
                f"({', '.join(ADAPTER_FAMILIES)}). Default: the recipe's. {RGBX_ADAPTER} (no projector) "
                f"goes with --strategy {'|'.join(RGBX_STRATEGIES)}.")
MODALITY_HELP = ("Model input (default: the config's own). Any registered modality, including one a "
                 "prepared dataset in --data-dir brings; under --recipe reference, a reference input "
                 "(depth, rgb-thermal, t_500 …).")

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="SimCMF baselines on Segment Anything: train, predict, describe, reproduce "
                       "(needs the [baselines] extra).")


def _value(choice: enum.Enum | None) -> str | None:
    return None if choice is None else choice.value


def _device(device: str | None) -> str:
    """The device to run on; CUDA asked for on a machine without it is the user's mistake."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise AimsError("--device cuda: this torch build sees no CUDA device "
                        f"(torch {torch.__version__}); pass --device cpu or omit --device.")
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _merge(cli: dict[str, Any], recipe_file: Path | None) -> tuple[dict[str, Any], Any]:
    """Command-line values (``None`` = not given) over the recipe file's."""
    if recipe_file is None:
        return {k: v for k, v in cli.items() if v is not None}, None
    from aims.baselines.recipe_files import INFORMATIONAL, read_recipe_file

    rf = read_recipe_file(recipe_file)
    merged = {k: v for k, v in rf.values.items() if k not in INFORMATIONAL}
    merged.update({k: v for k, v in cli.items() if v is not None})
    return merged, rf


@app.command("train")
def train_cmd(
    config: Annotated[Optional[str], typer.Option(help="Dataset config to train on (depth, hha, nir, ...).")] = None,
    recipe: Annotated[Optional[RecipeName], typer.Option(
        help="reference (the SimCMF code, point by point) or aims (ours; default).")] = None,
    recipe_file: Annotated[Optional[Path], typer.Option(
        dir_okay=False, help="YAML recipe file (recipes/…); command-line options override it.")] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="What trains inside SAM (default: the recipe's).")] = None,
    checkpoint: Annotated[str, typer.Option(
        help="vit-b|vit-l|vit-h (Meta's, downloaded and verified), a Hugging Face SAM id "
             "(facebook/sam-vit-base), a .pth file or Hugging Face-format folder, or none "
             "(random init); docs/weights.md.")] = "none",
    adapter: Annotated[Optional[str], typer.Option(help=ADAPTER_HELP)] = None,
    size: Annotated[Optional[Size], typer.Option(
        help="SAM size (default: from the checkpoint name, else vit-b); tiny for tests.")] = None,
    modality: Annotated[Optional[str], typer.Option(help=MODALITY_HELP)] = None,
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Prepared dataset folder.")] = None,
    out: Annotated[Path, typer.Option(file_okay=False,
        help="Run folder (checkpoints, metrics).")] = Path("runs/simcmf"),
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate (default: the recipe's).")] = None,
    lr_sweep: Annotated[bool, typer.Option("--lr-sweep", help="Sweep 3e-6 … 3e-3, pick by the run's selection.")] = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (reference 51, aims 50).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=1, help="Evaluate every n epochs (reference 5, aims 1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Images per step (per process); 4.")] = None,
    resize: Annotated[Resize, typer.Option(help="aims recipe: sam (longest side + pad) or warp.")] = "sam",
    select_on_test: Annotated[bool, typer.Option("--select-on-test",
        help="Reference recipe only: pick the best epoch on TEST, as the reference code does "
             "(a protocol flaw; every output is labelled so).")] = False,
    uniform_init: Annotated[bool, typer.Option("--uniform-init",
        help="The reference's -uniformInit (simcmf and baseline_b-d only).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    seed: Annotated[Optional[int], typer.Option(min=0, max=2**32 - 1, help="Random seed (reference 8888, aims 0).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many steps (smoke runs).")] = None,
    workers: Annotated[int, typer.Option(min=0, max=MAX_WORKERS, help="Data loader workers (aims recipe).")] = 0,
    dtype: Annotated[Optional[Dtype], typer.Option(help="Autocast dtype on GPU (aims: bf16; reference: fp32).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune SAM on one config under a named recipe."""
    from aims.baselines.sam_loading import infer_size

    cli = {"recipe": _value(recipe), "config": config, "strategy": _value(strategy), "adapter": adapter,
           "size": _value(size), "modality": modality, "lr": lr, "epochs": epochs, "eval_every": eval_every,
           "batch_size": batch_size, "seed": seed, "select_on_test": select_on_test or None,
           "uniform_init": uniform_init or None}
    values, rf = _merge(cli, recipe_file)
    if rf is not None and rf.zero_shot:
        raise AimsError(f"{recipe_file} is a zero-shot recipe: nothing trains. Run it with "
                        f"`aims baseline predict --recipe-file {recipe_file} --checkpoint … --out …`.")
    if values.get("config") is None:
        raise AimsError("train needs --config (or a --recipe-file that names one).")
    from aims.baselines.train import TrainConfig, lr_sweep as sweep, train   # torch: after the file's checks

    lrs = values.pop("lr_sweep", None)
    if lr is not None:
        lrs = None                       # an explicit --lr replaces the file's sweep
    resolved = _resolved_checkpoint("none" if values.get("strategy") == "scratch" else checkpoint,
                                    values.get("size"), "aims baseline train")
    cfg = TrainConfig(config=values["config"], recipe=values.get("recipe", "aims"),
                      strategy=values.get("strategy"), adapter=values.get("adapter"),
                      checkpoint=resolved.argument,
                      size=values.get("size") or resolved.sam_size or infer_size(resolved.argument),
                      modality=values.get("modality"),
                      data_dir=None if data_dir is None else str(data_dir), out=str(out), lr=values.get("lr"),
                      epochs=values.get("epochs"), eval_every=values.get("eval_every"),
                      batch_size=values.get("batch_size", 4), resize=resize.value, seed=values.get("seed"),
                      select_on_test=bool(values.get("select_on_test", False)),
                      uniform_init=bool(values.get("uniform_init", False)), resume=resume, max_steps=max_steps,
                      workers=workers, dtype=_value(dtype), progress=progress,
                      recipe_file=None if recipe_file is None else str(recipe_file))
    if cfg.strategy == "scratch" and checkpoint != "none":
        typer.echo("note: --strategy scratch ignores --checkpoint (random initialisation)")
    if lr_sweep or lrs:
        summary = sweep(cfg, tuple(lrs)) if lrs else sweep(cfg)
    else:
        summary = train(cfg)
    typer.echo(json.dumps(summary, indent=2))


def _resolved_checkpoint(checkpoint: str, size: str | None, command: str):
    """``--checkpoint`` by name, path or Hub id (docs/weights.md), checked against ``--size``."""
    from aims.baselines.checkpoints import resolve_checkpoint

    resolved = resolve_checkpoint(checkpoint, command=command)
    if size and resolved.sam_size and size != resolved.sam_size:
        raise AimsError(f"--size {size} does not match --checkpoint {checkpoint} (a {resolved.sam_size} "
                        f"checkpoint); drop --size or pass --size {resolved.sam_size}.")
    return resolved


def _zero_shot(recipe_name: str, config: str, modality: str | None, checkpoint: str | None, size: str | None):
    """The zero-shot model and how to feed it: aims = RGB with SAM's normalisation and the
    best of three masks; reference = the first three dataset-normalised channels of the
    reference input, one mask."""
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.recipes import recipe
    from aims.baselines.sam_loading import infer_size
    from aims.baselines.train_data import resolve_input

    if checkpoint is None:
        raise AimsError("zero-shot prediction needs --checkpoint (Meta's sam_vit_b_01ec64.pth "
                        "or a Hugging Face folder); to use a trained model pass --run.")
    rec = recipe(recipe_name)
    model_input = resolve_input(config, modality if rec.inputs == "reference" else "rgb", rec)
    resolved = _resolved_checkpoint(checkpoint, size, "aims baseline predict")
    spec = ModelSpec(size=size or resolved.sam_size or infer_size(resolved.argument), adapter="zeroshot",
                     strategy="full", in_channels=model_input.channels,
                     checkpoint=None if resolved.kind == "none" else resolved.argument)
    return build_model(spec), model_input, rec


@app.command("predict")
def predict_cmd(
    out: Annotated[Path, typer.Option(file_okay=False, help="Predictions folder (read by `aims score`).")],
    config: Annotated[Optional[str], typer.Option(help="Dataset config to predict.")] = None,
    run: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Training run folder (from `aims baseline train --out`); omit for zero-shot SAM.")] = None,
    recipe: Annotated[Optional[RecipeName], typer.Option(
        help="Zero-shot only: reference (first three dataset-normalised channels, one mask) or "
             "aims (RGB, best of three masks; default). A run's recipe comes from the run.")] = None,
    recipe_file: Annotated[Optional[Path], typer.Option(dir_okay=False,
        help="A zero-shot recipe file (recipes/table2/*-zero-shot.yaml).")] = None,
    modality: Annotated[Optional[str], typer.Option(help="Zero-shot, reference recipe: the reference input.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="SAM weights: for zero-shot, or to override the run's base checkpoint path.")] = None,
    size: Annotated[Optional[Size], typer.Option(help="SAM size for zero-shot (default from the name).")] = None,
    split: Annotated[str, typer.Option(help="Split to predict.")] = "test",
    protocol: Annotated[Protocol, typer.Option(help="aims (native masks) or simcmf (256x256, warp).")] = "aims",
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False, help="Prepared dataset folder.")] = None,
    weights: Annotated[Weights, typer.Option(help="Which checkpoint of the run.")] = "best",
    clicks: Annotated[int, typer.Option(min=0, max=MAX_INTERACTIVE_CLICKS,
        help="Interactive prediction: write the masks after click 1..k of every instance (corrective clicks, "
             "previous mask fed back; protocol aims) for `aims score` (mIoU@k, NoC@85/90), plus the quick "
             "summary <out>-interactive.json (0: one click).")] = 0,
    device: Annotated[Optional[Device], typer.Option(help="Device (default: cuda if available).")] = None,
    dtype: Annotated[Optional[Dtype], typer.Option(help="Autocast dtype on GPU (reference runs: fp32).")] = None,
    image_batch: Annotated[int, typer.Option(min=1, help="Images encoded together.")] = 1,
    prompt_batch: Annotated[int, typer.Option(min=1, help="Prompts decoded together (per image).")] = 64,
    workers: Annotated[int, typer.Option(min=0, max=MAX_WORKERS, help="Data loader workers.")] = 0,
    fmt: Annotated[Format, typer.Option("--format", help="Prediction file format.")] = "rle",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Predict one mask per instance click (encoder once per image, clicks batched)."""
    import torch

    from aims.atomic import atomic_write_text
    from aims.baselines.data import SampleSource, load_split, modality_normalizer
    from aims.baselines.interactive import write_interactive_predictions
    from aims.baselines.predict import write_predictions
    from aims.baselines.recipes import recipe as recipe_by_name
    from aims.baselines.rgbx_systems import input_prior
    from aims.baselines.strategies import count_parameters
    from aims.baselines.train import load_run
    from aims.baselines.train_data import register_dataset, register_records

    values, rf = _merge({"recipe": _value(recipe), "config": config, "modality": modality}, recipe_file)
    if rf is not None and not rf.zero_shot:
        raise AimsError(f"{recipe_file} is a training recipe; train it with `aims baseline train --recipe-file "
                        f"{recipe_file}`, then predict with --run.")
    if (values.get("recipe") or values.get("modality")) and run is not None:
        raise AimsError("--recipe/--modality/--recipe-file choose a zero-shot model; a run's recipe and "
                        "modality come from its run.json. Drop them or drop --run.")
    config = values.get("config")
    if config is None:
        raise AimsError("predict needs --config (or a zero-shot --recipe-file that names one).")
    if clicks > 0 and protocol.value != "aims":
        raise AimsError("--clicks runs the interactive loop on native-resolution masks with the aims click "
                        "(protocol aims); drop --protocol simcmf, or drop --clicks.")
    dev = _device(_value(device))
    register_records(data_dir)                      # a user's own configs and modalities, if prepared
    multimask = False
    if run is not None:
        base = None if checkpoint is None else _resolved_checkpoint(checkpoint, None, "aims baseline predict").argument
        model, info = load_run(run, weights=weights.value, checkpoint=base)
        recipe_name = info["train"].get("recipe", "aims")
        rec = recipe_by_name(recipe_name)
        modality, resize = info["modality"], info["train"]["resize"]
        selection = info.get("selection", "validation split")
        select_on_test = bool(info["train"].get("select_on_test", False))
        reference = None
        if rec.inputs == "reference":
            from aims.baselines.reference_inputs import reference_spec

            reference = reference_spec(modality)
        method = f"simcmf-{recipe_name}-{model.spec.adapter}-{model.spec.strategy}"
        if select_on_test:
            method += "-selected-on-test"
        trainable = count_parameters(model)[0]
    else:
        recipe_name = values.get("recipe", "aims")
        model, model_input, rec = _zero_shot(recipe_name, config, values.get("modality"), checkpoint, _value(size))
        modality, reference = model_input.name, model_input.reference
        resize = rec.resize
        multimask = rec.inputs != "reference"
        selection, select_on_test, trainable = "none (zero-shot)", False, 0
        method = "sam-zero-shot" if recipe_name == "aims" else "sam-zero-shot-reference"
    prior = input_prior(model.spec.strategy) if run is not None else None
    if prior is not None:     # an RGB-X system (aims.baselines.rgbx_systems), fed RGB and X un-shuffled
        method = f"{model.spec.strategy}-sam-{recipe_name}"
    run_dtype = _value(dtype) or ("fp32" if rec.precision == "fp32" else "bf16")
    if rec.precision == "fp32" and run_dtype != "fp32":
        raise AimsError("this model follows the reference recipe, which runs in fp32; drop --dtype bf16.")
    if protocol.value == "simcmf" and resize != "warp":
        typer.echo(f"note: protocol simcmf warps inputs to {model.image_size}² (the model was "
                   f"trained with --resize {resize})")
        resize = "warp"
    stats = register_dataset(config, data_dir)
    model.to(dev)
    rows = load_split(config, split, data_dir)
    if reference is not None:
        from aims.baselines.reference_data import ReferenceSampleSource, every_nth

        keep = every_nth(list(range(len(rows))), reference.test_every if split == "test" else 1)
        source: Any = ReferenceSampleSource(rows, reference, model.image_size, keep)
    else:
        norm = modality_normalizer(modality, stats, prior)
        source = SampleSource(rows, modality, norm, model.image_size, resize, prior=prior)
    meta = {"method": method, "model": f"SAM {model.spec.size}", "recipe": recipe_name,
            "projector": model.spec.adapter, "adapter": model.spec.adapter, "strategy": model.spec.strategy
            if run is not None else "none", "selection": selection, "selected_on_test": select_on_test,
            "modality": modality, "split": split, "protocol": protocol.value, "resize": resize,
            "multimask": multimask, "run": None if run is None else str(run),
            "checkpoint": model.spec.checkpoint, "torch": torch.__version__, "trainable_params": trainable,
            **({"input_prior": prior} if prior is not None else {})}
    if clicks > 0:
        meta["clicks"] = clicks
        stats_out, result = write_interactive_predictions(
            model, source, out, config=config, meta=meta, max_clicks=clicks, fmt=fmt.value, progress=progress,
            device=dev, dtype=run_dtype, multimask_first=multimask, prompt_batch=min(prompt_batch, 16))
    else:
        stats_out = write_predictions(model, source, out, config=config, meta=meta, protocol=protocol.value,
                                      fmt=fmt.value, progress=progress, device=dev, dtype=run_dtype,
                                      prompt_batch=prompt_batch, image_batch=image_batch, workers=workers,
                                      multimask=multimask)
    typer.echo(f"{stats_out.images} images, {stats_out.instances} instances in {stats_out.seconds:.1f} s "
               f"({stats_out.images_per_s:.1f} img/s) → {out}")
    if clicks > 0:
        summary = result.summary()
        # beside the predictions folder, not in it (it holds only what `aims score` reads)
        target = Path(out).parent / f"{Path(out).name}-interactive.json"
        atomic_write_text(target, json.dumps(summary, indent=2) + "\n")
        typer.echo(f"{clicks} masks per instance written; `aims score {out}` reports mIoU@1..{clicks} and "
                   f"NoC@85/90. Quick summary → {target}")
        typer.echo(json.dumps(summary, indent=2))


@app.command("describe")
def describe_cmd(
    config: Annotated[Optional[str], typer.Option(help="Config whose modality sets the channel count.")] = None,
    modality: Annotated[Optional[str], typer.Option(help=MODALITY_HELP)] = None,
    channels: Annotated[Optional[int], typer.Option(min=1, max=64,
        help="Input channels, instead of --config/--modality.")] = None,
    recipe: Annotated[Optional[RecipeName], typer.Option(help="Recipe whose defaults apply (default aims).")] = None,
    recipe_file: Annotated[Optional[Path], typer.Option(dir_okay=False, help="YAML recipe file.")] = None,
    adapter: Annotated[Optional[str], typer.Option(
        help=ADAPTER_HELP + " 'paper' or 'preconv' with --layers/--kernel/--dim assemble a family name.")] = None,
    layers: Annotated[Optional[int], typer.Option(min=1, max=16, help="n: conv layers of the family.")] = None,
    kernel: Annotated[Optional[int], typer.Option(min=1, max=31, help="k: kernel size of the family.")] = None,
    dim: Annotated[Optional[int], typer.Option(min=1, max=4096, help="d: hidden width of the family.")] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="Strategy (default: the recipe's).")] = None,
    size: Annotated[Size, typer.Option(help="SAM size.")] = "vit-b",
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Prepared dataset folder whose records to register (a user's own configs).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Total and trainable parameters per module group, counted on the meta device."""
    from aims.baselines.describe import describe_model, family_name, format_description
    from aims.baselines.model import ModelSpec
    from aims.baselines.recipes import recipe as recipe_by_name
    from aims.baselines.train_data import resolve_input

    values, _ = _merge({"recipe": _value(recipe), "config": config, "modality": modality,
                        "strategy": _value(strategy), "adapter": adapter}, recipe_file)
    rec = recipe_by_name(values.get("recipe", "aims"))
    name = family_name(values.get("adapter") or rec.adapter, layers, kernel, dim)
    if data_dir is not None:
        from aims.converters.registry import register_prepared_records

        register_prepared_records(data_dir)
    info_extra: dict[str, Any] = {}
    if channels is None:
        if values.get("config") is None:
            raise AimsError("describe needs --config (its modality gives the channel count) or --channels.")
        model_input = resolve_input(values["config"], values.get("modality"), rec,
                                    values.get("strategy") or rec.strategy)   # an RGB-X system: its RGB-X input
        channels = model_input.channels
        info_extra = {"config": values["config"], "modality": model_input.name}
    elif values.get("config") is not None:
        raise AimsError("give --config/--modality or --channels, not both.")
    spec = ModelSpec(size=size.value, adapter=name, strategy=values.get("strategy") or rec.strategy,
                     in_channels=channels)
    info = {**describe_model(spec), "recipe": rec.name, **info_extra}
    typer.echo(json.dumps(info, indent=2) if as_json else format_description(info))


@app.command("reproduce")
def reproduce_cmd(
    table: Annotated[Table, typer.Option(help="The paper's table: 1, 2, 3, ablation or 6 (RGB-X systems).")],
    dry_run: Annotated[bool, typer.Option("--dry-run",
        help="List every command the run would execute, with estimated GPU hours; run nothing.")] = False,
    modality: Annotated[Optional[str], typer.Option(help="Only this modality's cells.")] = None,
    strategy: Annotated[Optional[str], typer.Option(
        help="Only this strategy's cells (lora, full, … or zero-shot).")] = None,
    out: Annotated[Path, typer.Option(file_okay=False,
        help="Output root: one folder per cell (runs, predictions, scores) and results/ "
             "(the leaderboard rows).")] = Path("runs/paper"),
    checkpoint: Annotated[str, typer.Option(
        help="SAM weights for every non-scratch run: vit-b (default), a Hugging Face id, a file or folder, "
             "or none (random init; tests).")] = "vit-b",
    data_dir: Annotated[Optional[Path], typer.Option(file_okay=False,
        help="Prepared dataset folder (its image counts also replace the estimate's nominal ones).")] = None,
    size: Annotated[Optional[Size], typer.Option(
        help="SAM size of the runs (default: the recipe files', vit-b) and of the estimate; tiny for tests.")] = None,
    recipe: Annotated[Optional[RecipeName], typer.Option(
        help="Override the recipe files' `recipe: reference` (aims allows --processes-per-run).")] = None,
    lrs: Annotated[Optional[str], typer.Option(
        help="Comma-separated subset of the learning-rate sweep (default: all seven, 3e-6 … 3e-3).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per run (default: the recipe's).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop each run after this many steps (smoke runs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Images per step (per process).")] = None,
    gpus: Annotated[int, typer.Option(min=0, max=1024,
        help="Run independent runs side by side, one subprocess per GPU (CUDA_VISIBLE_DEVICES); "
             "0: one after another in this process.")] = 0,
    processes_per_run: Annotated[int, typer.Option(min=1, max=1024,
        help="Launch each training run with `accelerate launch --num_processes K` (aims recipe only; "
             "K GPUs per run, or K CPU processes without --gpus).")] = 1,
    seconds_per_forward: Annotated[float, typer.Option(min=1e-6, max=3600.0,
        help="Seconds of one ViT-B forward at 1024² fp32 on your GPU (the estimate's unit).")] = 0.04,
    select_on_test: Annotated[bool, typer.Option("--select-on-test",
        help="The reference's test-split selection (labelled so).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan (or the run's summary) as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The paper's runs for one table: every cell × its learning-rate sweep, then the
    selected run's test predictions, scores and leaderboard rows (resumable)."""
    from aims.baselines.paper_grid import RunOptions, format_plan, plan
    from aims.baselines.reproduce import Launch

    options = RunOptions(out_root=str(out), checkpoint=checkpoint,
                         data_dir=None if data_dir is None else str(data_dir), size=_value(size),
                         recipe=_value(recipe), lrs=_sweep_subset(lrs), epochs=epochs, max_steps=max_steps,
                         batch_size=batch_size, select_on_test=select_on_test,
                         quiet=not progress or gpus > 0 or processes_per_run > 1)
    launch = Launch(gpus=gpus, processes_per_run=processes_per_run, progress=progress)
    runs = plan(table.value, modality=modality, strategy=strategy, data_dir=data_dir, size=_value(size) or "vit-b",
                seconds_per_forward=seconds_per_forward, select_on_test=select_on_test, options=options)
    if dry_run:
        if as_json:
            typer.echo(json.dumps({"table": table.value, "seconds_per_vit_b_forward": seconds_per_forward,
                                   "gpu_hours": sum(r.gpu_hours for r in runs), "launch": launch.describe(),
                                   "runs": [{"table": r.cell.table, "row": r.cell.row, "modality": r.cell.modality,
                                             "config": r.cell.config, "strategy": r.cell.strategy,
                                             "adapter": r.cell.adapter, "lr": r.lr, "kind": r.kind,
                                             "zero_shot": r.cell.zero_shot, "paper_miou": r.cell.paper_miou,
                                             "also": list(r.cell.shared_with),
                                             "recipe_file": f"recipes/{r.cell.name}.yaml", "out": r.out,
                                             "command": r.command, "argv": ["aims", *r.argv],
                                             "gpu_hours": r.gpu_hours, "images": r.images, "note": r.note}
                                            for r in runs]}, indent=2))
        else:
            typer.echo(format_plan(runs, seconds_per_forward))
            typer.echo(f"launch: {launch.describe()}")
        return
    from aims.baselines.reproduce import reproduce

    summary = reproduce(runs, options, launch, echo=typer.echo)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        for cell in summary["cells"]:
            paper = "—" if cell["paper_miou"] is None else f"{cell['paper_miou']:.2f}"
            ours = "—" if cell["miou"] is None else f"{cell['miou']:.2f}"
            typer.echo(f"{cell['cell']}: ours {ours}, paper {paper}")
        typer.echo(f"leaderboard rows in {summary['results']}; build the page with "
                   f"`aims leaderboard build --results {summary['results']}`")


def _sweep_subset(text: str | None) -> tuple[float, ...] | None:
    """``--lrs 1e-4,3e-4``: learning rates of the paper's sweep (others are not the paper's grid)."""
    if text is None:
        return None
    from aims.baselines.recipes import LR_SWEEP

    parts = text.split(",")
    if len(parts) > len(LR_SWEEP) or len(text) > 200:
        raise AimsError(f"--lrs {text[:80]!r}…: at most {len(LR_SWEEP)} learning rates, the paper's sweep "
                        f"({', '.join(f'{lr:g}' for lr in LR_SWEEP)}); give a comma-separated subset.")
    chosen = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            value = None
        match = next((lr for lr in LR_SWEEP if value is not None and abs(lr - value) <= 1e-9 * lr), None)
        if match is None:
            raise AimsError(f"--lrs {text[:80]!r}: {part.strip()[:40]!r} is not a learning rate of the paper's "
                            f"sweep ({', '.join(f'{lr:g}' for lr in LR_SWEEP)}); give a comma-separated subset.")
        if match not in chosen:
            chosen.append(match)
    return tuple(lr for lr in LR_SWEEP if lr in chosen)


__all__ = ["DEVICES", "app"]
