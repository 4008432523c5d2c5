"""The SimCMF paper's experiments as a grid of cells, and the plan that reproduces them
(``aims baseline reproduce``, ``recipes/``).

One :class:`Cell` per (table, row, modality): the recipe settings of one paper number. Every
trained cell runs the paper's learning-rate sweep (:data:`aims.baselines.recipes.LR_SWEEP`,
seven runs) under the ``reference`` recipe with its default projector (the reference code's
gated ``simcmf``, what its ``train.sh`` and README use); the alignment-ablation cells use the
projectors of :data:`aims.baselines.projectors.ALIGNMENT_ABLATION`. The paper's numbers come
from ``leaderboard/paper_results.json``.

- Table 1: train from scratch, and "SimCMF (best strategy each)", which is the best of the
  Table 3 cells of the same modality (no runs of its own: the plan lists those cells).
- Table 2 (RGB-X): train from scratch, SAM zero-shot (predict only), and SimCMF (the best of
  the four strategies of Table 3, run on the RGB-X inputs).
- Table 3: full fine-tuning, LoRA, MLP adapter, prompt tuning.
- ``ablation``: polarization, LoRA, one cell per alignment.
- Table 6 (RGB-X systems): CMX, ViPT, GoPT and IV-tuning as strategies (:data:`RGBX_SYSTEMS`,
  adapter ``rgbx-split``: no projector, the system takes RGB and X apart) on the four RGB-X
  inputs, plus the SimCMF rows LoRA, MLP adapter and full fine-tuning, which are Table 2's
  cells (no runs of their own). GoPT and IV-tuning have no paper number.

GPU hours are an estimate, stated as such: a training image costs one forward pass plus a
backward pass of ``1 + trainable/total`` forward passes (activation gradients always, weight
gradients for the trainable share; the counts come from :mod:`aims.baselines.describe`), an
evaluated or predicted image one encoder forward. One ViT-B forward at 1024² in fp32 is
assumed to take :data:`SECONDS_PER_VIT_B_FORWARD` seconds on one GPU (an A100-class card;
pass ``--seconds-per-forward`` to use a measured figure); other sizes scale with their
encoder's parameter count. Image counts come from a prepared dataset when ``--data-dir``
holds the config, else from :data:`NOMINAL_IMAGES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aims.baselines.choices import RGBX_ADAPTER
from aims.baselines.projectors import ALIGNMENT_ABLATION
from aims.baselines.recipes import LR_SWEEP, recipe
from aims.errors import AimsError

#: seconds of one ViT-B image-encoder forward at 1024², fp32, one A100-class GPU (assumed)
SECONDS_PER_VIT_B_FORWARD = 0.04
#: the trained strategies of Table 3 (and of Table 2's "SimCMF" row)
TABLE3_STRATEGIES = ("full", "lora", "mlp-adapter", "prompt")
#: the paper's modality columns
MODALITIES = ("thermal", "polarization", "depth", "hha", "nir")
RGB_X = ("rgb-thermal", "rgb-depth", "rgb-hha", "rgb-nir")
TABLES = ("1", "2", "3", "ablation", "6")
#: the RGB-X systems of Table 6 (+ GoPT, IV-tuning), as ``--strategy`` names
RGBX_SYSTEMS = ("cmx", "vipt", "gopt", "iv-tuning")
#: Table 6's SimCMF rows: Table 2's strategy cells, listed again with Table 6's numbers
TABLE6_SIMCMF = ("lora", "mlp-adapter", "full")
#: (train, test) images per config when no prepared dataset says otherwise, and where the
#: numbers come from. Validation is carved from train (about 10 %).
NOMINAL_IMAGES: dict[str, tuple[int, int, str]] = {
    "depth": (795, 654, "NYUv2 official split"),
    "hha": (795, 654, "NYUv2 official split"),
    "polarization": (3207, 1304, "RGBP-Glass folders (sources.md)"),
    "thermal": (4427, 1124, "RGB-T Glass: 5551 pairs, 1124 test (sources.md)"),
    "nir": (382, 95, "assumed: 477 nirscene1 pairs at 80/20; the repack's counts are unknown"),
    "polarization-zju": (344, 50, "ZJU-RGBP folders"),
}
STRATEGY_ROWS = {"full": "SimCMF full fine-tuning", "lora": "SimCMF LoRA", "mlp-adapter": "SimCMF MLP adapter",
                 "prompt": "SimCMF prompt tuning"}
SYSTEM_ROWS = {"cmx": "CMX* (full fine-tuning)", "vipt": "ViPT* (prompt tuning)", "gopt": "GoPT",
               "iv-tuning": "IV-tuning"}


def registered_strategies() -> tuple[str, ...]:
    """The strategy names this install accepts (the RGB-X systems are added by their own
    modules; until they are, their cells are listed but cannot run)."""
    from aims.baselines import choices

    return tuple(choices.STRATEGIES)


@dataclass(frozen=True)
class Cell:
    """One number of the paper and the settings that reproduce it."""

    table: str
    row: str
    modality: str
    config: str
    strategy: str | None
    adapter: str
    paper_miou: float | None
    zero_shot: bool = False
    #: tables whose rows this cell also feeds ("SimCMF (best strategy each)")
    shared_with: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """The cell's recipe file, relative to ``recipes/`` (without ``.yaml``)."""
        folder = "ablation" if self.table == "ablation" else f"table{self.table}"
        if self.table == "ablation":
            return f"{folder}/{self.modality}-{self.strategy}-{self.adapter}"
        return f"{folder}/{self.modality}-{'zero-shot' if self.zero_shot else self.strategy}"

    def recipe_values(self) -> dict[str, Any]:
        """The cell as a recipe file's values (:mod:`aims.baselines.recipe_files`)."""
        values: dict[str, Any] = {"recipe": "reference", "config": self.config, "modality": self.modality}
        if self.zero_shot:
            values.update(adapter="zeroshot", zero_shot=True)
        elif self.adapter == RGBX_ADAPTER:    # implied by the strategy (aims.baselines.model.ModelSpec)
            values.update(strategy=self.strategy, lr_sweep=list(LR_SWEEP))
        else:
            values.update(strategy=self.strategy, adapter=self.adapter, lr_sweep=list(LR_SWEEP))
        values.update(size="vit-b", table=self.table, row=self.row, paper_miou=self.paper_miou)
        return values


def _config_of(modality: str) -> str:
    from aims.converters.registry import config_records

    for name, record in config_records().items():
        if modality in (m.name for m in record.modalities):
            return name
    raise AimsError(f"no registered config offers modality {modality!r}")


def _paper(table_key: str, match: dict[str, Any], modality: str) -> float | None:
    from aims.leaderboard.entries import paper_results

    for row in paper_results()[table_key]:
        if all(row.get(k) == v for k, v in match.items()):
            value = row["miou"].get(modality)
            return None if value is None else float(value)
    return None


def _table3_cells(modalities: tuple[str, ...], table: str, shared: tuple[str, ...]) -> list[Cell]:
    cells = []
    for modality in modalities:
        for strategy in TABLE3_STRATEGIES:
            paper = _paper("modalities", {"table": "Table 3", "strategy": strategy}, modality) if table == "3" else None
            row = STRATEGY_ROWS[strategy] if table == "3" else f"SimCMF ({strategy}; the row reports the best strategy)"
            also = shared + (("6",) if table == "2" and strategy in TABLE6_SIMCMF else ())
            cells.append(Cell(table, row, modality, _config_of(modality), strategy, "simcmf", paper, shared_with=also))
    return cells


def _table6_cells() -> list[Cell]:
    """Per RGB-X input: the four systems (own cells), then SimCMF's rows (Table 2's cells,
    shown with Table 6's numbers)."""
    cells = []
    for modality in RGB_X:
        config = _config_of(modality)
        for strategy in RGBX_SYSTEMS:
            cells.append(Cell("6", SYSTEM_ROWS[strategy], modality, config, strategy, RGBX_ADAPTER,
                              _paper("rgb_x_systems", {"strategy": strategy}, modality)))
        for strategy in TABLE6_SIMCMF:
            cells.append(Cell("2", STRATEGY_ROWS[strategy], modality, config, strategy, "simcmf",
                              _paper("rgb_x_systems", {"strategy": strategy}, modality), shared_with=("6",)))
    return cells


def paper_cells(table: str) -> list[Cell]:
    """Every cell of ``table`` (``1``, ``2``, ``3``, ``ablation`` or ``6``), in the paper's
    order. Table 1 includes the Table 3 cells its "best strategy each" row is taken from;
    Table 6 the Table 2 cells of its SimCMF rows."""
    adapter = recipe("reference").adapter
    if table == "1":
        scratch = [Cell("1", "train from scratch", m, _config_of(m), "scratch", adapter,
                        _paper("modalities", {"table": "Table 1", "strategy": "scratch"}, m)) for m in MODALITIES]
        return scratch + _table3_cells(MODALITIES, "3", ("1",))
    if table == "3":
        return _table3_cells(MODALITIES, "3", ("1",))
    if table == "2":
        cells = []
        for m in RGB_X:
            cells.append(Cell("2", "train from scratch", m, _config_of(m), "scratch", adapter,
                              _paper("rgb_x", {"strategy": "scratch"}, m)))
            cells.append(Cell("2", "SAM zero-shot (RGB only)", m, _config_of(m), None, "zeroshot",
                              _paper("rgb_x", {"strategy": "zero-shot"}, m), zero_shot=True))
        return cells + _table3_cells(RGB_X, "2", ())
    if table == "ablation":
        return [Cell("ablation", row, "polarization", "polarization", "lora", projector,
                     _paper("alignment_ablation", {"method": row}, "polarization"))
                for row, projector in ALIGNMENT_ABLATION.items()]
    if table == "6":
        return _table6_cells()
    raise AimsError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")


def all_cells() -> list[Cell]:
    """Every cell once (Table 1's shared Table 3 cells are not repeated)."""
    seen: dict[str, Cell] = {}
    for table in TABLES:
        for cell in paper_cells(table):
            seen.setdefault(cell.name, cell)
    return list(seen.values())


# ---------------------------------------------------------------------------------------
# The plan and its cost


def _images(config: str, data_dir: str | Path | None) -> tuple[int, int, int, str]:
    """(train, selection, test) images of ``config`` and where the numbers come from."""
    if data_dir is not None:
        from aims.config_info import ConfigInfo

        folder = Path(data_dir) / config
        if (folder / "aims_config.json").is_file():
            counts = ConfigInfo.load(folder).counts
            train = counts.get("train", {}).get("images", 0)
            val = counts.get("validation", {}).get("images", 0)
            return train, val, counts.get("test", {}).get("images", 0), f"prepared dataset {folder}"
    train, test, source = NOMINAL_IMAGES.get(config, (1000, 250, "assumed: config unknown to this table"))
    val = round(train * 0.1)
    return train - val, val, test, source


def _forward_seconds(size: str, seconds_per_forward: float) -> float:
    from aims.baselines.describe import describe_model
    from aims.baselines.model import ModelSpec

    def encoder(s: str) -> int:
        groups = describe_model(ModelSpec(s, "zeroshot", "full", in_channels=3))["groups"]
        return groups["image encoder"]["total"] + groups["sam patch embedding"]["total"]

    return seconds_per_forward * encoder(size) / encoder("vit-b")


def _cost_factors(size: str, cell: Cell, channels: int) -> tuple[float, float, str]:
    """(trainable share, forward cost relative to plain SAM, note) of a trained cell, from
    :mod:`aims.baselines.describe`. A strategy this install does not know yet (an RGB-X
    system whose module is not registered) is costed as full fine-tuning of plain SAM,
    and the note says so."""
    from aims.baselines.describe import describe_model
    from aims.baselines.model import ModelSpec

    fallback = "costed as full fine-tuning of plain SAM"
    if cell.strategy not in registered_strategies():
        return 1.0, 1.0, f"strategy {cell.strategy} not registered here: {fallback}"
    try:
        spec = (ModelSpec(size, strategy=str(cell.strategy), in_channels=channels) if cell.adapter == RGBX_ADAPTER
                else ModelSpec(size, cell.adapter, str(cell.strategy), in_channels=channels))
        info = describe_model(spec)
    except Exception as exc:   # noqa: BLE001 - a system still being wired in must not break the plan
        return 1.0, 1.0, f"describe failed for {cell.strategy} ({type(exc).__name__}): {fallback}"
    total = info["parameters"]["total"]
    plain = describe_model(ModelSpec(size, "zeroshot", "full", in_channels=3))["parameters"]["total"]
    # a second encoder (CMX) costs its forward too; adapters of a few K parameters do not
    return info["parameters"]["trainable"] / total, max(1.0, total / plain), ""


@dataclass
class PlannedRun:
    """One step of the reproduction: a training run (one cell, one learning rate) or a
    cell's test prediction. ``argv`` is the command (after ``aims``) that the run executes
    (:mod:`aims.baselines.reproduce`); a prediction's ``--run`` is filled in with the
    selected learning rate's folder when training is done."""

    cell: Cell
    lr: float | None
    kind: str                    # "train" or "predict"
    argv: list[str]
    out: str
    gpu_hours: float
    images: str
    note: str = ""

    @property
    def command(self) -> str:
        import shlex

        return "aims " + shlex.join(self.argv)


#: what the dry run shows in place of the selected run's folder
SELECTED_RUN = "<selected lr run>"


@dataclass(frozen=True)
class RunOptions:
    """The command-line settings every planned command carries (``aims baseline reproduce``)."""

    out_root: str = "runs/paper"
    checkpoint: str = "vit-b"
    data_dir: str | None = None
    size: str | None = None              # SAM size passed to train/predict (default: the file's)
    recipe: str | None = None            # override the files' ``recipe: reference``
    lrs: tuple[float, ...] | None = None  # a subset of the sweep (default: the whole sweep)
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    select_on_test: bool = False
    quiet: bool = False                  # pass --no-progress (subprocesses write logs, not bars)

    def cell_dir(self, cell: Cell) -> str:
        return f"{self.out_root}/{cell.name}"

    def recipe_file(self, cell: Cell) -> str:
        """The copy of the cell's recipe file the run writes and reads (``recipes/<cell>.yaml``)."""
        return f"{self.cell_dir(cell)}/recipe.yaml"

    def lrs_of(self) -> tuple[float, ...]:
        return tuple(self.lrs) if self.lrs else LR_SWEEP

    def train_argv(self, cell: Cell, lr: float) -> list[str]:
        argv = ["baseline", "train", "--recipe-file", self.recipe_file(cell),
                "--checkpoint", "none" if cell.strategy == "scratch" else self.checkpoint,
                "--lr", f"{lr:g}", "--out", f"{self.cell_dir(cell)}/lr-{lr:g}", "--resume"]
        argv += self._common()
        for flag, value in (("--epochs", self.epochs), ("--max-steps", self.max_steps),
                            ("--batch-size", self.batch_size)):
            if value is not None:
                argv += [flag, str(value)]
        if self.recipe is not None:
            argv += ["--recipe", self.recipe]
        if self.select_on_test:
            argv.append("--select-on-test")
        return argv + (["--no-progress"] if self.quiet else [])

    def predict_argv(self, cell: Cell, run: str = SELECTED_RUN) -> list[str]:
        argv = ["baseline", "predict", "--config", cell.config, "--protocol", "simcmf",
                "--out", f"{self.cell_dir(cell)}/predictions"]
        if cell.zero_shot:
            argv += ["--recipe-file", self.recipe_file(cell), "--checkpoint", self.checkpoint]
            if self.recipe is not None:
                argv += ["--recipe", self.recipe]
            if self.size is not None:
                argv += ["--size", self.size]
        else:
            argv += ["--run", run]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        return argv + (["--no-progress"] if self.quiet else [])

    def _common(self) -> list[str]:
        argv = []
        if self.size is not None:
            argv += ["--size", self.size]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        return argv


def cell_strategy(cell: Cell) -> str:
    """The name ``reproduce --strategy`` selects a cell by (``zero-shot`` for SAM zero-shot)."""
    return "zero-shot" if cell.zero_shot else str(cell.strategy)


def plan(table: str, *, modality: str | None = None, strategy: str | None = None,
         data_dir: str | Path | None = None, size: str = "vit-b",
         seconds_per_forward: float = SECONDS_PER_VIT_B_FORWARD, select_on_test: bool = False,
         options: RunOptions | None = None) -> list[PlannedRun]:
    """Every run of ``table`` (optionally one modality and/or strategy), in the order the
    reproduction runs them: per cell its training runs (one per learning rate), then its
    test prediction. ``size`` is the estimate's SAM size; ``options`` the commands' settings."""
    from aims.baselines.train_data import resolve_input

    options = options or RunOptions(data_dir=None if data_dir is None else str(data_dir),
                                    select_on_test=select_on_test)
    cells = paper_cells(table)
    for value, key, what in ((modality, lambda c: c.modality, "modality"), (strategy, cell_strategy, "strategy")):
        if value is None:
            continue
        known = sorted({key(c) for c in cells})
        cells = [c for c in cells if key(c) == value]
        if not cells:
            raise AimsError(f"table {table} has no {what} {value[:64]!r} here; its {what} values: {', '.join(known)}")
    rec = recipe(options.recipe or "reference")
    fwd = _forward_seconds(size, seconds_per_forward)
    evaluations = len([e for e in range(rec.epochs) if e % rec.eval_every == 0 or e == rec.epochs - 1])
    runs = []
    for cell in cells:
        train_n, val_n, test_n, source = _images(cell.config, data_dir)
        select_n = test_n if select_on_test else val_n
        if select_on_test:
            train_n += val_n
        images = f"{train_n} train / {select_n} selection / {test_n} test ({source})"
        predict_hours = test_n * fwd / 3600
        if cell.zero_shot:
            runs.append(PlannedRun(cell, None, "predict", options.predict_argv(cell),
                                   f"{options.cell_dir(cell)}/predictions", predict_hours, images))
            continue
        channels = resolve_input(cell.config, cell.modality, rec).channels
        share, heavier, note = _cost_factors(size, cell, channels)
        seconds = heavier * (rec.epochs * train_n * fwd * (2 + share) + evaluations * select_n * fwd)
        for lr in options.lrs_of():
            runs.append(PlannedRun(cell, lr, "train", options.train_argv(cell, lr),
                                   f"{options.cell_dir(cell)}/lr-{lr:g}", seconds / 3600, images, note))
        runs.append(PlannedRun(cell, None, "predict", options.predict_argv(cell),
                               f"{options.cell_dir(cell)}/predictions", heavier * predict_hours, images, note))
    return runs


def format_plan(runs: list[PlannedRun], seconds_per_forward: float) -> str:
    lines = []
    for run in runs:
        cell = run.cell
        paper = "—" if cell.paper_miou is None else f"{cell.paper_miou:.2f}"
        shared = f" (also Table {', '.join(cell.shared_with)})" if cell.shared_with else ""
        if cell.zero_shot:
            what = "zero-shot predict"
        elif run.kind == "predict":
            what = "predict test with the selected lr"
        else:
            what = f"{cell.strategy}, {cell.adapter}, lr {run.lr:g}"
        note = f" ({run.note})" if run.note else ""
        lines.append(f"Table {cell.table}{shared} | {cell.row} | {cell.modality} | {what} | paper {paper} | "
                     f"{run.gpu_hours:.2f} GPU h{note} | recipes/{cell.name}.yaml")
    trained = sum(1 for r in runs if r.kind == "train")
    cells = len({r.cell.name for r in runs})
    lines += ["", f"{len(runs)} runs ({trained} training runs, {len(runs) - trained} test predictions) in "
                  f"{cells} cells, estimated {sum(r.gpu_hours for r in runs):.1f} GPU hours",
              f"assumption: one ViT-B forward at 1024² fp32 = {seconds_per_forward} s on one GPU; a training image "
              "= (2 + trainable/total) forwards; one forward per evaluated or predicted image.",
              "each cell: its training runs, selection by the recipe's rule (sweep.json), a test prediction "
              "(protocol simcmf), `aims score`, a leaderboard row; the commands, in order:"]
    lines += [r.command for r in runs]
    return "\n".join(lines)


def recipe_text(cell: Cell) -> str:
    """The recipe file of ``cell``: what ``recipes/<cell>.yaml`` holds and what a
    reproduction copies into its run folder."""
    from aims.baselines.recipe_files import dump_recipe

    paper = "not reported" if cell.paper_miou is None else f"{cell.paper_miou:.2f} mIoU"
    comment = (f"SimCMF paper, {'alignment ablation' if cell.table == 'ablation' else 'Table ' + cell.table}: "
               f"{cell.row}, {cell.modality} (paper: {paper}).\n"
               "Written by recipes/make_recipes.py from aims.baselines.paper_grid; edit that, not this file.")
    return dump_recipe(cell.recipe_values(), comment)


def writable_cells() -> list[Cell]:
    """The cells whose recipe file this install can read back: an RGB-X system's file is
    written once its module registers the name (a recipe file with an unknown strategy
    does not load, so writing it would ship a broken file)."""
    from aims.baselines.recipe_files import parse_recipe_text

    cells = []
    for cell in all_cells():
        try:
            parse_recipe_text(recipe_text(cell), Path(f"{cell.name}.yaml"))
        except AimsError:
            continue
        cells.append(cell)
    return cells


def write_recipe_files(root: str | Path) -> list[Path]:
    """Write one recipe file per (writable) cell under ``root`` (``recipes/``); returns the
    paths."""
    from aims.atomic import atomic_write_text

    written = []
    for cell in writable_cells():
        path = Path(root) / f"{cell.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, recipe_text(cell))
        written.append(path)
    return written


__all__ = ["Cell", "MODALITIES", "NOMINAL_IMAGES", "PlannedRun", "RGBX_ADAPTER", "RGBX_SYSTEMS", "RGB_X",
           "RunOptions", "SECONDS_PER_VIT_B_FORWARD", "SELECTED_RUN", "TABLES", "TABLE3_STRATEGIES",
           "TABLE6_SIMCMF", "all_cells", "cell_strategy", "format_plan", "paper_cells", "plan", "recipe_text",
           "registered_strategies", "writable_cells", "write_recipe_files"]
