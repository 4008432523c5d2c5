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
TABLES = ("1", "2", "3", "ablation")
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
            cells.append(Cell(table, row, modality, _config_of(modality), strategy, "simcmf", paper, shared_with=shared))
    return cells


def paper_cells(table: str) -> list[Cell]:
    """Every cell of ``table`` (``1``, ``2``, ``3`` or ``ablation``), in the paper's order.
    Table 1 includes the Table 3 cells its "best strategy each" row is taken from."""
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


@dataclass
class PlannedRun:
    cell: Cell
    lr: float | None
    command: str
    gpu_hours: float
    images: str


def plan(table: str, *, modality: str | None = None, data_dir: str | Path | None = None,
         size: str = "vit-b", seconds_per_forward: float = SECONDS_PER_VIT_B_FORWARD,
         select_on_test: bool = False, recipe_root: str = "recipes", out_root: str = "runs/paper",
         checkpoint: str = "sam_vit_b_01ec64.pth") -> list[PlannedRun]:
    """Every run of ``table`` (optionally one modality), with its command and cost."""
    from aims.baselines.describe import describe_model
    from aims.baselines.model import ModelSpec
    from aims.baselines.train_data import resolve_input

    cells = paper_cells(table)
    if modality is not None:
        cells = [c for c in cells if c.modality == modality]
        if not cells:
            known = sorted({c.modality for c in paper_cells(table)})
            raise AimsError(f"table {table} has no modality {modality!r}; its modalities: {', '.join(known)}")
    rec = recipe("reference")
    fwd = _forward_seconds(size, seconds_per_forward)
    evaluations = len([e for e in range(rec.epochs) if e % rec.eval_every == 0 or e == rec.epochs - 1])
    runs = []
    for cell in cells:
        train_n, val_n, test_n, source = _images(cell.config, data_dir)
        select_n = test_n if select_on_test else val_n
        if select_on_test:
            train_n += val_n
        channels = resolve_input(cell.config, cell.modality, rec).channels
        file = f"{recipe_root}/{cell.name}.yaml"
        out = f"{out_root}/{cell.name}"
        flag = " --select-on-test" if select_on_test else ""
        images = f"{train_n} train / {select_n} selection / {test_n} test ({source})"
        if cell.zero_shot:
            runs.append(PlannedRun(cell, None, f"aims baseline predict --recipe-file {file} --checkpoint {checkpoint} "
                                               f"--protocol simcmf --out {out}/predictions",
                                   test_n * fwd / 3600, images))
            continue
        info = describe_model(ModelSpec(size, cell.adapter, cell.strategy, in_channels=channels))
        share = info["parameters"]["trainable"] / info["parameters"]["total"]
        seconds = rec.epochs * train_n * fwd * (2 + share) + evaluations * select_n * fwd
        for lr in LR_SWEEP:
            runs.append(PlannedRun(cell, lr, f"aims baseline train --recipe-file {file} --checkpoint {checkpoint} "
                                             f"--out {out}{flag}   # lr {lr:g} of the sweep",
                                   seconds / 3600, images))
        runs[-1].gpu_hours += test_n * fwd / 3600      # predicting test with the selected run
    return runs


def format_plan(runs: list[PlannedRun], seconds_per_forward: float) -> str:
    lines = []
    for run in runs:
        cell = run.cell
        paper = "—" if cell.paper_miou is None else f"{cell.paper_miou:.2f}"
        shared = f" (also Table {', '.join(cell.shared_with)})" if cell.shared_with else ""
        what = "zero-shot predict" if cell.zero_shot else f"{cell.strategy}, {cell.adapter}, lr {run.lr:g}"
        lines.append(f"Table {cell.table}{shared} | {cell.row} | {cell.modality} | {what} | paper {paper} | "
                     f"{run.gpu_hours:.2f} GPU h")
    trained = sum(1 for r in runs if r.lr is not None)
    lines += ["", f"{len(runs)} runs ({trained} training runs, {len(runs) - trained} zero-shot predictions), "
                  f"estimated {sum(r.gpu_hours for r in runs):.1f} GPU hours",
              f"assumption: one ViT-B forward at 1024² fp32 = {seconds_per_forward} s on one GPU; a training image "
              "= (2 + trainable/total) forwards; one forward per evaluated or predicted image.",
              "commands (one per cell; a recipe file's lr_sweep runs its learning rates in turn):"]
    lines += sorted({r.command.split("   #")[0] for r in runs})
    return "\n".join(lines)


def write_recipe_files(root: str | Path) -> list[Path]:
    """Write one recipe file per cell under ``root`` (``recipes/``); returns the paths."""
    from aims.atomic import atomic_write_text
    from aims.baselines.recipe_files import dump_recipe

    written = []
    for cell in all_cells():
        path = Path(root) / f"{cell.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        paper = "not reported" if cell.paper_miou is None else f"{cell.paper_miou:.2f} mIoU"
        comment = (f"SimCMF paper, {'alignment ablation' if cell.table == 'ablation' else 'Table ' + cell.table}: "
                   f"{cell.row}, {cell.modality} (paper: {paper}).\n"
                   "Written by recipes/make_recipes.py from aims.baselines.paper_grid; edit that, not this file.")
        atomic_write_text(path, dump_recipe(cell.recipe_values(), comment))
        written.append(path)
    return written


__all__ = ["Cell", "MODALITIES", "NOMINAL_IMAGES", "PlannedRun", "RGB_X", "SECONDS_PER_VIT_B_FORWARD", "TABLES",
           "TABLE3_STRATEGIES", "all_cells", "format_plan", "paper_cells", "plan", "write_recipe_files"]
