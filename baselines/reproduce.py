"""Running the paper's grid: ``aims baseline reproduce --table T`` without ``--dry-run``.

The plan (:func:`aims.baselines.paper_grid.plan`) is a list of commands; this module runs
exactly those commands and does the bookkeeping between them:

1. each cell's recipe file is copied into its folder (``<out>/<cell>/recipe.yaml``, the same
   bytes as ``recipes/<cell>.yaml``);
2. each training run (one learning rate of the cell's sweep) runs ``aims baseline train …
   --resume``; when it exits cleanly its folder gets ``done.json`` (its ``metrics.json``
   summary), so a later invocation skips it, and an interrupted one resumes from its last
   finished epoch;
3. when every run of a cell is done, the learning rate is selected by the run's own
   selection (``best_score``: validation, or test under ``--select-on-test``), recorded in
   ``<out>/<cell>/sweep.json``, and the selected run predicts the test split under
   protocol ``simcmf`` (as the paper evaluates) into ``<out>/<cell>/predictions``;
4. the predictions are scored in this process with :func:`aims.scoring.score_predictions`
   (``aims score``'s code) into ``<out>/<cell>/scores``;
5. the cell's leaderboard row is (re)built: cells of one method on the headline modalities
   are one row (their predictions merged and scored together, like the paper's rows); an
   RGB-X cell is a row of its own (its method is suffixed with the input, since one
   results file holds one RGB-X input). Rows are added to ``<out>/results`` with
   :func:`aims.leaderboard.entries.add_results` (``aims leaderboard add``), replacing the
   row this reproduction wrote before.

Nothing is lost on interruption: every finished step leaves its files, written
atomically, and each step is skipped when its files are there.

Where the commands run: by default one after another in this process (CPU, or the one GPU
torch sees). ``--gpus N`` runs them in subprocesses, one per GPU (``CUDA_VISIBLE_DEVICES``),
since the reference recipe is one process per run by design (a single random stream);
``--processes-per-run K`` launches each training run with ``accelerate launch
--num_processes K`` on K GPUs (or K CPU processes without ``--gpus``), which only the
``aims`` recipe allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aims.atomic import atomic_write_text
from aims.baselines.paper_grid import RGB_X, SELECTED_RUN, Cell, PlannedRun, RunOptions, recipe_text
from aims.errors import AimsError

#: a finished training run's marker, beside its metrics.json
DONE = "done.json"
#: the leaderboard results folder under the output root (``aims leaderboard build --results``)
RESULTS_FOLDER = "results"
#: where merged predictions and scores of multi-cell leaderboard rows go
ROWS_FOLDER = "leaderboard-rows"
#: how often the scheduler looks at running subprocesses (seconds)
POLL_SECONDS = 0.5
_MAX_JSON = 64 << 20
#: a config name as predictions folders use it (``aims.predictions``): no path separators
_CONFIG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Launch:
    """Where and how the commands run."""

    gpus: int = 0                    # 0: in this process, one after another
    processes_per_run: int = 1       # >1: `accelerate launch --num_processes K` per training run
    progress: bool = True

    @property
    def subprocesses(self) -> bool:
        return self.gpus > 0 or self.processes_per_run > 1

    @property
    def slots(self) -> int:
        """Commands that run at the same time."""
        return max(1, self.gpus // self.processes_per_run) if self.gpus else 1

    def describe(self) -> str:
        if not self.subprocesses:
            return "each command runs in this process, one after another"
        where = (f"on {self.gpus} GPU(s), {self.slots} command(s) at a time, each with its own "
                 "CUDA_VISIBLE_DEVICES" if self.gpus else "on the CPU, one command at a time")
        how = (f"; a training run as `python -m accelerate.commands.launch --multi_gpu --num_processes "
               f"{self.processes_per_run} --main_process_port <free port> -m aims …`"
               if self.processes_per_run > 1 else "; each command as `python -m aims …`")
        return where + how


def check_launch(launch: Launch, recipes: set[str]) -> None:
    """Refuse what cannot run here, before anything starts."""
    if launch.gpus > 0:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise AimsError(f"--gpus {launch.gpus}: this torch build sees no CUDA device (torch "
                            f"{torch.__version__}); drop --gpus to run on the CPU in this process.")
        if launch.gpus > visible:
            raise AimsError(f"--gpus {launch.gpus}: only {visible} CUDA device(s) are visible; pass --gpus "
                            f"{visible} or fewer.")
        if launch.processes_per_run > launch.gpus:
            raise AimsError(f"--processes-per-run {launch.processes_per_run} needs at least that many GPUs; "
                            f"--gpus is {launch.gpus}.")
    if launch.processes_per_run > 1 and "reference" in recipes:
        raise AimsError(f"--processes-per-run {launch.processes_per_run}: the reference recipe draws its "
                        "training clicks from one random stream in row order, as the reference code does, "
                        "so one of its runs is one process by design. Use --gpus N to run N runs side by "
                        "side instead, or pass --recipe aims to train several processes per run.")


# ---------------------------------------------------------------------------------------
# files of a cell


def _read_json(path: Path, what: str) -> Any:
    from aims.baselines.run_folder import read_json_file

    return read_json_file(path, what, _MAX_JSON)


def _results(path: Path) -> dict[str, Any]:
    """A results file, validated against the leaderboard's schema (``aims.results``)."""
    from aims.results import load_results

    return load_results(path)


def _reproduce_meta(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("meta")
    found = meta.get("reproduce") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def _is_done(run: PlannedRun) -> bool:
    return (Path(run.out) / DONE).is_file()


def _mark_done(run: PlannedRun) -> dict[str, Any]:
    """``done.json`` from the run's ``metrics.json`` (read, not the command's return value:
    a run resumed after it had finished trains nothing and returns nothing)."""
    metrics = _read_json(Path(run.out) / "metrics.json", "a run's metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("best_score"), (int, float)):
        raise AimsError(f"{run.out}/metrics.json has no best_score: the run did not finish an evaluation. "
                        f"Look at {run.out}.log, remove {run.out} and run the reproduction again.")
    done = {"lr": run.lr, "best_score": float(metrics["best_score"]), "selection": metrics.get("selection"),
            "best_epoch": metrics.get("best_epoch"), "steps": metrics.get("steps")}
    atomic_write_text(Path(run.out) / DONE, json.dumps(done, indent=2) + "\n")
    return done


def select_lr(cell_dir: Path, train_runs: list[PlannedRun]) -> dict[str, Any]:
    """The best learning rate by each run's own selection score (the first of equals), as
    ``aims baseline train --lr-sweep`` records it (``sweep.json``)."""
    scores: dict[str, float] = {}
    selection = None
    for run in train_runs:
        path = Path(run.out) / DONE
        done = _read_json(path, "a run's done.json")
        score = done.get("best_score") if isinstance(done, dict) else None
        if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
            raise AimsError(f"{path} holds no numeric best_score; it was not written by this reproduction. "
                            f"Remove it and run the reproduction again (the run resumes).", path=path)
        scores[f"{run.lr:g}"] = float(score)
        selection = done.get("selection") if isinstance(done.get("selection"), str) else None
    best = max(scores, key=lambda k: scores[k])
    summary = {"selection": selection, "miou_by_lr": scores, "best_lr": float(best),
               "best_run": str(cell_dir / f"lr-{best}")}
    atomic_write_text(cell_dir / "sweep.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _holds(path: Path, text: str) -> bool:
    """Whether ``path`` is a regular file holding exactly ``text`` (read only when its size
    matches, so a FIFO or a huge file put there is never read)."""
    import stat

    data = text.encode("utf-8")
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
        return False
    return path.read_bytes() == data


def _predictions_meta(folder: Path) -> dict[str, Any] | None:
    from aims.predictions import META_FILE

    if not (folder / META_FILE).is_file():
        return None
    doc = _read_json(folder / META_FILE, "a predictions folder's aims_predictions.json")
    meta = doc.get("meta") if isinstance(doc, dict) else None
    return meta if isinstance(meta, dict) else {}


def _clear_stale_predictions(cell_dir: Path, selected_run: str | None) -> bool:
    """Whether the cell's predictions are there and come from ``selected_run``; predictions
    (and their scores) of another run — a sweep grown since — are removed."""
    preds = cell_dir / "predictions"
    meta = _predictions_meta(preds)
    if meta is None:
        return False
    if selected_run is None or meta.get("run") == selected_run:
        return True
    shutil.rmtree(preds)
    shutil.rmtree(cell_dir / "scores", ignore_errors=True)
    return False


def row_method(cell: Cell, method: str) -> str:
    """The leaderboard method of a cell's results: an RGB-X input is one row per input."""
    return f"{method}-{cell.modality}" if cell.modality in RGB_X else method


def score_cell(cell: Cell, options: RunOptions, lr: float | None, *, progress: bool) -> dict[str, Any]:
    """Score the cell's predictions with ``aims score``'s code; the results name the cell."""
    from aims.scoring import check_scores_target, score_predictions

    cell_dir = Path(options.cell_dir(cell))
    scores = score_predictions(cell_dir / "predictions", data_dir=options.data_dir, split="test",
                               protocol="simcmf", progress=progress)
    scores.meta["method"] = row_method(cell, str(scores.meta.get("method") or "unnamed"))
    scores.meta["reproduce"] = {"table": cell.table, "also": list(cell.shared_with), "row": cell.row,
                                "cell": cell.name, "modality": cell.modality, "paper_miou": cell.paper_miou,
                                "lr": lr}
    scores.write(check_scores_target(cell_dir / "scores"))
    return _results(cell_dir / "scores" / "results.json")


# ---------------------------------------------------------------------------------------
# leaderboard rows


def _sha256(path: Path) -> str:
    from aims.scoring import file_sha256

    return file_sha256(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower()[:120] or "row"


def merge_predictions(members: list[Path], target: Path) -> None:
    """One RLE predictions folder holding the ``<config>.json`` files of ``members`` (one
    config each), with metadata of the first member minus its per-cell fields; built in a
    hidden sibling and renamed, so a failure leaves nothing half-merged."""
    from aims.atomic import remove_stale_temporaries, temporary_sibling

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)      # what a killed merge left behind
    tmp = temporary_sibling(target)
    tmp.mkdir()
    try:
        _fill_merged(members, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _fill_merged(members: list[Path], tmp: Path) -> None:
    from aims.predictions import META_FILE

    counts: dict[str, int] = {}
    meta: dict[str, Any] = {}
    first: dict[str, Any] = {}
    for folder in members:
        doc = _read_json(folder / META_FILE, "a predictions folder's aims_predictions.json")
        found = doc.get("counts") if isinstance(doc, dict) else None
        if not isinstance(found, dict) or doc.get("format") != "rle" or not isinstance(doc.get("meta"), dict):
            raise AimsError(f"{folder / META_FILE} does not describe an RLE predictions folder written by "
                            "`aims baseline predict`; remove the folder and run the reproduction again.",
                            path=folder / META_FILE)
        for config, n in found.items():
            source = folder / f"{config}.json"
            if not (isinstance(config, str) and _CONFIG.fullmatch(config)) or source.is_symlink() \
                    or not source.is_file():
                raise AimsError(f"{folder / META_FILE} names config {str(config)[:64]!r}, which is not a "
                                f"regular <config>.json file of that folder; remove {folder} and run the "
                                "reproduction again.", path=folder / META_FILE)
            if config in counts:
                continue       # two cells of one method on one config: the first one stands
            shutil.copyfile(source, tmp / f"{config}.json")
            counts[config] = n
        meta = meta or {k: v for k, v in doc["meta"].items() if k not in ("modality", "run")}
        first = first or doc
    meta["cells"] = [str(m.parent) for m in members]
    doc = {"aims_predictions": 1, "format": "rle", "meta": meta, "counts": dict(sorted(counts.items()))}
    for key in ("click_rule", "clicks"):       # the scorer checks the click rule against the protocol
        if key in first:
            doc[key] = first[key]
    (tmp / META_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def add_row(results_file: Path, results_dir: Path, replaces: Path | None = None) -> Path:
    """``aims leaderboard add``, replacing the row this reproduction added before."""
    from aims.leaderboard.entries import add_results

    if replaces is not None and replaces.is_file():
        replaces.unlink()
    return add_results(results_file, results_dir)


def update_row(cell: Cell, options: RunOptions, *, progress: bool) -> Path:
    """(Re)build the leaderboard row the cell belongs to; returns the row's results file."""
    from aims.leaderboard.entries import results_file_name
    from aims.scoring import check_scores_target, score_predictions

    root = Path(options.out_root)
    results_dir = root / RESULTS_FOLDER
    doc = _results(Path(options.cell_dir(cell)) / "scores" / "results.json")
    target = results_dir / results_file_name(doc)
    if cell.modality in RGB_X:
        return add_row(Path(options.cell_dir(cell)) / "scores" / "results.json", results_dir, target)
    members = []
    for other in sorted(root.glob("table*/*/scores/results.json")) + sorted(root.glob("ablation/*/scores/results.json")):
        other_doc = _results(other)
        about = _reproduce_meta(other_doc)         # a cell's results name their cell
        if (other_doc.get("method") == doc["method"] and about.get("modality") not in RGB_X
                and about.get("cell") == other.parent.parent.relative_to(root).as_posix()):
            members.append(other.parent.parent / "predictions")
    row = root / ROWS_FOLDER / _slug(doc["method"])
    cells = [str(m.parent.relative_to(root)) for m in members]
    # which cell results the row was built from: a cell re-predicted since (its sweep grew)
    # changes its results file, and the row is rebuilt
    sources = {c: _sha256(root / c / "scores" / "results.json") for c in cells}
    if target.is_file() and (row / "scores" / "results.json").is_file():
        before = _reproduce_meta(_results(row / "scores" / "results.json"))
        if before.get("cells") == cells and before.get("sources") == sources:
            return target                        # the row already holds exactly these results
    merge_predictions(members, row / "predictions")
    scores = score_predictions(row / "predictions", data_dir=options.data_dir, split="test", protocol="simcmf",
                               progress=progress)
    scores.meta["reproduce"] = {"cells": cells, "sources": sources}
    scores.write(check_scores_target(row / "scores"))
    return add_row(row / "scores" / "results.json", results_dir, target)


# ---------------------------------------------------------------------------------------
# running commands


@dataclass
class _Job:
    run: PlannedRun
    argv: list[str]
    log: Path


@dataclass
class _Running:
    job: _Job
    proc: subprocess.Popen
    log: Any
    started: float
    devices: list[int] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _subprocess_argv(job: _Job, launch: Launch) -> list[str]:
    if job.run.kind == "train" and launch.processes_per_run > 1:
        # --multi_gpu is accelerate's torchrun launcher: it starts the K processes; without
        # CUDA, train's Accelerator(cpu=True) runs them over gloo (--cpu would start one)
        prefix = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(launch.processes_per_run), "--num_machines", "1", "--mixed_precision", "no",
                  "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
        return [*prefix, "-m", "aims", *job.argv]
    return [sys.executable, "-m", "aims", *job.argv]


def _run_in_process(job: _Job) -> int:
    """The command through the ``aims`` app in this process; its printed output goes to
    the job's log. A user mistake (:class:`AimsError`) stops the reproduction."""
    from aims.cli import app

    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        result = app(args=job.argv, prog_name="aims", standalone_mode=False)
    return result if isinstance(result, int) else 0


class Scheduler:
    """Runs jobs on ``launch.slots`` slots; calls ``on_done(job, ok)`` as each one ends (and
    may be given more jobs from there)."""

    def __init__(self, launch: Launch, on_done: Callable[[_Job, bool, float], None]) -> None:
        self.launch = launch
        self.on_done = on_done
        self.queue: deque[_Job] = deque()
        self.running: dict[int, _Running] = {}

    def add(self, job: _Job, first: bool = False) -> None:
        (self.queue.appendleft if first else self.queue.append)(job)

    def run(self) -> None:
        try:
            while self.queue or self.running:
                if not self.launch.subprocesses:
                    job = self.queue.popleft()
                    t0 = time.perf_counter()
                    ok = _run_in_process(job) == 0
                    self.on_done(job, ok, time.perf_counter() - t0)
                    continue
                self._fill()
                self._reap()
                if self.running:
                    time.sleep(POLL_SECONDS)
        finally:
            for r in self.running.values():   # interrupted: stop only the commands started here
                r.proc.terminate()
            for r in self.running.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    r.proc.wait(timeout=30)
                r.log.close()

    def _fill(self) -> None:
        for slot in range(self.launch.slots):
            if slot in self.running or not self.queue:
                continue
            job = self.queue.popleft()
            env = dict(os.environ)
            devices: list[int] = []
            if self.launch.gpus:
                k = self.launch.processes_per_run
                devices = list(range(slot * k, slot * k + k))
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "a", encoding="utf-8")
            proc = subprocess.Popen(_subprocess_argv(job, self.launch), stdout=log, stderr=subprocess.STDOUT,
                                    env=env, stdin=subprocess.DEVNULL)
            self.running[slot] = _Running(job, proc, log, time.perf_counter(), devices)

    def _reap(self) -> None:
        for slot, r in list(self.running.items()):
            if r.proc.poll() is None:
                continue
            del self.running[slot]
            r.log.close()
            self.on_done(r.job, r.proc.returncode == 0, time.perf_counter() - r.started)


# ---------------------------------------------------------------------------------------
# the reproduction


@dataclass
class CellState:
    cell: Cell
    train: list[PlannedRun]
    predict: PlannedRun
    result: dict[str, Any] | None = None


def _cells(runs: list[PlannedRun]) -> list[CellState]:
    states: dict[str, CellState] = {}
    trains: dict[str, list[PlannedRun]] = {}
    for run in runs:
        if run.kind == "train":
            trains.setdefault(run.cell.name, []).append(run)
        else:
            states[run.cell.name] = CellState(run.cell, trains.get(run.cell.name, []), run)
    return list(states.values())


def reproduce(runs: list[PlannedRun], options: RunOptions, launch: Launch,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every planned command not yet done, then select, predict, score and add the
    leaderboard rows; returns a summary per cell (also ``<out>/reproduce.json``)."""
    from tqdm.auto import tqdm

    cells = _cells(runs)
    recipes = {options.recipe or "reference"}
    check_launch(launch, recipes if any(c.train for c in cells) else set())
    root = Path(options.out_root)
    for state in cells:                          # the recipe files the commands read
        path = Path(options.recipe_file(state.cell))
        path.parent.mkdir(parents=True, exist_ok=True)
        text = recipe_text(state.cell)
        if not _holds(path, text):
            atomic_write_text(path, text)       # replaces whatever was there, link or not
    by_name = {s.cell.name: s for s in cells}
    total = sum(len(s.train) + 1 for s in cells)
    bar = tqdm(total=total, desc="reproduce", unit="run", disable=not launch.progress)
    failures: list[str] = []

    def say(line: str) -> None:
        (bar.write if launch.progress else echo)(line)

    def finish_cell(state: CellState) -> None:
        """Predictions are there: score (unless scored), add the leaderboard row."""
        cell_dir = Path(options.cell_dir(state.cell))
        lr = None if state.cell.zero_shot else _read_json(cell_dir / "sweep.json", "sweep.json")["best_lr"]
        if (cell_dir / "scores" / "results.json").is_file():
            doc = _results(cell_dir / "scores" / "results.json")
        else:
            doc = score_cell(state.cell, options, lr, progress=launch.progress)
        miou = next(iter(doc["configs"].values()))["miou"]
        row = update_row(state.cell, options, progress=launch.progress)
        paper = "—" if state.cell.paper_miou is None else f"{state.cell.paper_miou:.2f}"
        ours = "—" if miou is None else f"{100 * miou:.2f}"
        state.result = {"cell": state.cell.name, "table": state.cell.table, "row": state.cell.row,
                        "modality": state.cell.modality, "paper_miou": state.cell.paper_miou,
                        "miou": None if miou is None else round(100 * miou, 2), "lr": lr,
                        "results": str(cell_dir / "scores" / "results.json"), "leaderboard": str(row)}
        say(f"result  {state.cell.name}: test mIoU {ours} (paper {paper}); leaderboard row {row}")

    def queue_predict(state: CellState, first: bool) -> None:
        cell_dir = Path(options.cell_dir(state.cell))
        selected = None
        argv = list(state.predict.argv)
        if not state.cell.zero_shot:
            sweep = select_lr(cell_dir, state.train)
            selected = sweep["best_run"]
            argv[argv.index(SELECTED_RUN)] = selected
        if _clear_stale_predictions(cell_dir, selected):
            bar.update(1)
            say(f"skip    {state.cell.name}: predicted")
            finish_cell(state)
            return
        scheduler.add(_Job(state.predict, argv, cell_dir / "predictions.log"), first=first)

    def on_done(job: _Job, ok: bool, seconds: float) -> None:
        run = job.run
        state = by_name[run.cell.name]
        bar.update(1)
        what = f"lr {run.lr:g}" if run.kind == "train" else "predict"
        if not ok:
            failures.append(f"{run.cell.name} {what} (log: {job.log})")
            say(f"FAILED  {run.cell.name} {what} after {seconds:.0f} s; log: {job.log}")
            return
        if run.kind == "train":
            try:
                done = _mark_done(run)
            except AimsError as exc:      # the command exited 0 but left no finished run
                failures.append(f"{run.cell.name} {what} ({exc})")
                say(f"FAILED  {run.cell.name} {what}: {exc}")
                return
            say(f"trained {run.cell.name} {what}: {done['selection'] or 'selection'} mIoU "
                f"{done['best_score']:.4f} ({seconds:.0f} s)")
            if all(_is_done(r) for r in state.train):
                queue_predict(state, first=True)
        else:
            say(f"predicted {run.cell.name} ({seconds:.0f} s)")
            finish_cell(state)

    scheduler = Scheduler(launch, on_done)
    say(f"reproduce: {len(cells)} cell(s), {total} command(s) → {root}; {launch.describe()}")
    try:
        for state in cells:
            pending = [r for r in state.train if not _is_done(r)]
            for run in state.train:
                if run not in pending:
                    bar.update(1)
                    say(f"skip    {run.cell.name} lr {run.lr:g}: done")
            for run in pending:
                scheduler.add(_Job(run, run.argv, Path(f"{run.out}.log")))
            if not pending:
                queue_predict(state, first=False)
        scheduler.run()
    finally:
        bar.close()
    summary = {"cells": [s.result for s in cells if s.result is not None], "failed": failures,
               "results": str(root / RESULTS_FOLDER)}
    atomic_write_text(root / "reproduce.json", json.dumps(summary, indent=2) + "\n")
    if failures:
        raise AimsError(f"{len(failures)} command(s) failed: {'; '.join(failures[:5])}. Everything that "
                        "finished is kept; read the logs, fix the cause and run the same command again to "
                        "continue where it stopped.")
    return summary


__all__ = ["DONE", "Launch", "RESULTS_FOLDER", "ROWS_FOLDER", "Scheduler", "add_row", "check_launch", "merge_predictions",
           "reproduce", "row_method", "score_cell", "select_lr", "update_row"]
