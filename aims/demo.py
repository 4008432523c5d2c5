"""``aims demo``: the whole pipeline on the bundled miniature sources.

A newcomer sees every product in a few minutes without downloading anything: each source's
miniature (its exact release layout) is prepared into every config, a tiny SimCMF model is
trained and run on each config (when the ``[baselines]`` extra is installed), the
predictions are scored, the leaderboard page and the panels are drawn, and the paths of
all outputs are printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aims import __version__
from aims.errors import AimsError

Echo = Callable[[str], None]

#: tiny-model training budget per config: enough for the loss to move, small enough that
#: the whole demo stays under three minutes on a 2-core laptop
DEMO_TRAIN_STEPS = 24


def _baselines_available() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


#: why the tiny demo model scores near zero, printed under its table: measured on the demo's
#: own runs, not assumed (tests/test_demo.py checks the empty-mask count it rests on)
COLLAPSE_NOTE = (
    "  Why these numbers are near zero: the demo trains a randomly initialised tiny SAM for {steps} "
    "steps. In the first steps the loss's cross-entropy term teaches it the background prior, so "
    "its masks shrink to nothing; validation mIoU falls to 0 % after 1–3 epochs, and the run keeps "
    "its best (earliest) epoch. The demo shows the pipeline, not a model: for real numbers train "
    "from Meta's weights (`aims baseline train --checkpoint vit-b`, docs/weights.md).")


def _quiet_train(cfg: object) -> dict:
    """Train with the per-epoch log captured: the demo prints one line per config instead."""
    import contextlib
    import io

    from aims.baselines.train import train

    with contextlib.redirect_stdout(io.StringIO()):
        return train(cfg)


def _percent_series(metrics_rows: list[dict]) -> str:
    values = [r.get("val_miou") for r in metrics_rows if r.get("val_miou") is not None]
    return " ".join(f"{100 * v:.1f}" for v in values)


def _predict_all(dataset_dir: Path, configs: list[str], root: Path, echo: Echo, progress: bool
                 ) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Train a tiny SimCMF model per config (random init, few steps) and write the test
    predictions of every config into one folder. Returns the folder and, per config, (empty
    predicted masks, predicted masks) of the last epoch's weights: the evidence for
    :data:`COLLAPSE_NOTE`."""
    import json

    import numpy as np
    import torch

    from aims.baselines.data import SampleSource, config_channel_stats, load_split, modality_normalizer
    from aims.baselines.predict import predict
    from aims.baselines.strategies import count_parameters
    from aims.baselines.train import TrainConfig, load_run
    from aims.predictions import PredictionWriter

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = root / "predictions"
    meta = {"method": "simcmf-tiny-demo", "model": "SAM tiny (random init)", "adapter": "simcmf",
            "strategy": "full", "note": f"aims demo: {DEMO_TRAIN_STEPS} training steps per config"}
    collapse: dict[str, tuple[int, int]] = {}
    with PredictionWriter(out, fmt="rle", meta=meta, overwrite=True, click_rule="aims") as writer:
        for config in configs:
            run = root / "runs" / config
            cfg = TrainConfig(config=config, strategy="full", adapter="simcmf", checkpoint=None,
                              size="tiny", data_dir=str(dataset_dir), out=str(run), epochs=12,
                              batch_size=2, max_steps=DEMO_TRAIN_STEPS, lr=1e-3, progress=False)
            summary = _quiet_train(cfg)
            history = json.loads((run / "metrics.json").read_text()).get("epochs", [])
            model, info = load_run(run)
            writer.meta.setdefault("trainable_params", count_parameters(model)[0])
            norm = modality_normalizer(info["modality"], config_channel_stats(config, dataset_dir))
            source = SampleSource(load_split(config, "test", dataset_dir), info["modality"], norm,
                                  model.image_size, info["train"]["resize"])
            n = 0
            for record, masks in predict(model, source, protocol="aims"):
                for inst, mask in zip(record.instance_ids, masks):
                    writer.add(config, record.image_id, int(inst), mask)
                n += len(masks)
            last, _ = load_run(run, weights="last")
            empty = sum(int(not np.any(mask)) for _, masks in predict(last, source, protocol="aims")
                        for mask in masks)
            collapse[config] = (empty, n)
            best, best_epoch = summary.get("best_val_miou"), summary.get("best_epoch")
            echo(f"  {config:<17} {summary.get('steps')} steps; validation mIoU % by epoch: "
                 f"{_percent_series(history)}"
                 + (f" (best {100 * best:.1f} at epoch {best_epoch}, used below)" if isinstance(best, float) else "")
                 + f"; last epoch: {empty} of {n} test masks empty")
    return out, collapse


def check_demo_folder(root: Path) -> None:
    """The demo writes sources, a dataset, runs, predictions and pages into ``root``; it
    only does so into a new or empty folder, so nothing of the user's is replaced."""
    root = Path(root)
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise AimsError(f"--out {root} is not a folder; pass a new or empty folder for the demo.", path=root)
    try:
        occupied = root.is_dir() and any(root.iterdir())
    except OSError as exc:
        raise AimsError(f"--out {root} cannot be read ({exc.strerror}); pass a new or empty folder.",
                        path=root) from None
    if occupied:
        raise AimsError(f"--out {root} is not empty; the demo writes several folders there and "
                        "replaces nothing, so pass a new or empty folder (or omit --out).", path=root)


def run_demo(root: Path, *, echo: Echo = print, progress: bool = True) -> dict[str, Path]:
    """Run everything into ``root`` (new or empty); returns the outputs by name."""
    from aims.converters.registry import SOURCE_CONFIGS, converter
    from aims.prepare import run_prepare

    check_demo_folder(root)
    start = time.perf_counter()
    outputs: dict[str, Path] = {}
    echo(f"AIMS {__version__} demo in {root}")
    echo("1. miniature sources (exact release layouts):")
    sources = {}
    for name in SOURCE_CONFIGS:
        sources[name] = converter(name).write_miniature(root / "sources" / name)
        echo(f"  {name}: {sources[name]}")
    echo("2. prepare every config:")
    dataset_dir = root / "dataset"
    for line in run_prepare({n: list(c) for n, c in SOURCE_CONFIGS.items()}, sources=sources, out=dataset_dir,
                            workers=None, progress=progress):
        echo(line)
    outputs["dataset"] = dataset_dir
    configs = [c for cs in SOURCE_CONFIGS.values() for c in cs]

    predictions = None
    results_file = None
    if _baselines_available():
        echo("3. tiny SimCMF baseline (random init, CPU; best validation epoch kept):")
        predictions, collapse = _predict_all(dataset_dir, configs, root, echo, progress)
        outputs["predictions"] = predictions
        echo("4. score (mIoU in %):")
        from aims.scoring import score_predictions

        scores = score_predictions(predictions, data_dir=dataset_dir, configs=None, split="test",
                                   protocol="aims", missing="error")
        written = scores.write(root / "scores")
        echo(scores.format_table())
        if any(empty == total and total for empty, total in collapse.values()):
            echo(COLLAPSE_NOTE.format(steps=DEMO_TRAIN_STEPS))
        outputs["results"] = written["results"]
        from aims.leaderboard.entries import add_results

        results_file = add_results(outputs["results"], root / "leaderboard" / "results")
    else:
        echo("3–4. baseline and scoring skipped: install the [baselines] extra (torch, transformers) "
             "to train and score a tiny SimCMF model here.")
    from aims.leaderboard.entries import collect
    from aims.leaderboard.render import build_site

    entries = collect(root / "leaderboard" / "results")
    outputs["leaderboard"] = build_site(entries, root / "leaderboard" / "results", root / "leaderboard" / "site",
                                        version=__version__)
    scored = [e for e in entries if e.link]
    echo(f"5. leaderboard: {len(entries) - len(scored)} paper reference rows"
         + (f" + {len(scored)} scored row(s) ({', '.join(sorted({e.method for e in scored}))}, "
            f"from {results_file})" if scored else " (no scored rows: the baseline was skipped)"))
    echo(f"  page: {outputs['leaderboard']}")
    echo("6. panels and statistics plots:")
    from aims.show import show_dataset

    pictures = show_dataset(data_dir=dataset_dir, configs=None, split="test", limit=2,
                            predictions=predictions, out=root / "panels")
    outputs["panels"] = root / "panels"
    echo(f"  {len(pictures)} picture{'s' if len(pictures) != 1 else ''} in {outputs['panels']}")
    echo(f"Done in {time.perf_counter() - start:.0f} s. Outputs:")
    for name, path in outputs.items():
        echo(f"  {name:<12} {path}")
    echo("Next, with this demo's folder:")
    for line in next_commands(root, predictions is not None):
        echo(f"  {line}")
    return outputs


def next_commands(root: Path, scored: bool) -> list[str]:
    """Ready-to-paste commands on the demo's own outputs (``tests/test_demo.py`` runs them)."""
    import json
    import shlex

    data = shlex.quote(str(root / "dataset"))
    lines = []
    if scored:
        lines.append(f"aims score {shlex.quote(str(root / 'predictions'))} --data-dir {data} --json")
    lines.append(f"aims show --data-dir {data} --config depth --limit 1 --out {shlex.quote(str(root / 'more-panels'))}"
                 + (f" --predictions {shlex.quote(str(root / 'predictions'))}" if scored else ""))
    folder = json.dumps(str(root / "dataset"))            # a double-quoted Python string literal
    lines.append("python -c " + shlex.quote(f'import aims; print(aims.load_dataset("depth", data_dir={folder}))'))
    return lines
