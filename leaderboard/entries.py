"""Leaderboard rows: scored results files and the paper's reported numbers, made alike.

A results file (``aims score`` output, validated against ``results.schema.json``) and a
row of the paper's tables carry the same facts in different shapes; both become an
:class:`Entry` holding percentages per modality, so the table, the page and the chart
never care where a number came from — only the ``source`` column says it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from aims.atomic import atomic_write_bytes, remove_stale_temporaries
from aims.baselines.choices import RGBX_INPUT_PRIOR, RGBX_STRATEGIES
from aims.converters import registry
from aims.derived import LiveMapping, LiveTuple
from aims.errors import AimsError
from aims.untrusted import MissingFileError, read_bounded

REPORTED = "reported in paper"
PAPER_RESULTS = "paper_results.json"

#: leaderboard groups (one table each): the paper's Tables 1/3, Table 2, Table 6, the
#: alignment ablation and the Fig. 6 adapter sweeps
MODALITIES, RGB_X, RGB_X_SYSTEMS, ALIGNMENT, ADAPTER_SWEEP = (
    "modalities", "rgb-x", "rgb-x systems", "alignment ablation", "adapter sweep")
#: the other RGB-X systems (issue 12): given RGB and X as separate, un-shuffled inputs, so a
#: scored row of theirs belongs next to the paper's Table 6, not to the shuffled Table 2.
#: Both names come from the torch-free registry of baseline choices (one place per fact).
RGB_X_SYSTEM_STRATEGIES = RGBX_STRATEGIES
#: the ``input_prior`` a results file's meta records for those un-shuffled inputs
UNSHUFFLED_PRIOR = RGBX_INPUT_PRIOR
#: longest link taken from a results file; longer ones are dropped, not cut
MAX_URL_CHARS = 300
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+@:-]*)?"
                        r"(\?[A-Za-z0-9._~%=&+-]*)?(#[A-Za-z0-9._~%-]*)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def paper_results() -> dict[str, Any]:
    """The SimCMF paper's tables (``leaderboard/paper_results.json``)."""
    return json.loads(resources.files("aims.leaderboard").joinpath(PAPER_RESULTS).read_text("utf-8"))


def _paper_order(table: str) -> list[str]:
    """The column order of one of the paper's tables (the keys of its rows, first seen first)."""
    return list(dict.fromkeys(k for row in paper_results()[table] for k in row["miou"]))


def _in_paper_order(names: list[str], table: str) -> tuple[str, ...]:
    order = _paper_order(table)
    return tuple(sorted(names, key=lambda n: (order.index(n) if n in order else len(order), names.index(n))))


def _headline_columns() -> tuple[str, ...]:
    return _in_paper_order(list(registry.headline_configs()), "modalities")


def _rgb_x_columns() -> tuple[str, ...]:
    names = [m.name for c in registry.config_records().values() for m in c.modalities if m.is_rgb_x]
    return _in_paper_order(names, "rgb_x")


def _display_labels() -> dict[str, str]:
    return {m.name: m.label for c in registry.config_records().values() for m in c.modalities if m.label}


def _rgb_x_of_config() -> dict[str, str]:
    return {c.name: m.name for c in registry.config_records().values() for m in c.modalities if m.is_rgb_x}


def _not_in_mean() -> tuple[str, ...]:
    return tuple(c.name for c in registry.config_records().values() if not c.headline)


#: the headline modalities (records with ``headline=True``), in the paper's column order
HEADLINE_COLUMNS: tuple[str, ...] = LiveTuple(_headline_columns, registry.generation)  # type: ignore[assignment]
#: the RGB-X pseudo modalities (shuffled RGB + X stacks of the records), paper's Table 2 order
RGB_X_COLUMNS: tuple[str, ...] = LiveTuple(_rgb_x_columns, registry.generation)  # type: ignore[assignment]
#: modality -> its leaderboard title, from the records
DISPLAY_LABELS: Mapping[str, str] = LiveMapping(_display_labels, registry.generation)
#: config -> its RGB-X pseudo modality (``thermal`` -> ``rgb-thermal``), from the records
RGB_X_OF_CONFIG: Mapping[str, str] = LiveMapping(_rgb_x_of_config, registry.generation)
#: configs scored and shown but not averaged into the headline mean (``polarization-zju``)
NOT_IN_MEAN: tuple[str, ...] = LiveTuple(_not_in_mean, registry.generation)  # type: ignore[assignment]


@dataclass
class Entry:
    """One leaderboard row; IoUs in percent."""

    method: str
    model: str
    protocol: str  # versioned, e.g. "simcmf-v1"
    group: str  # which table: "modalities", "rgb-x", "alignment ablation"
    miou: dict[str, float | None] = field(default_factory=dict)
    mean: float | None = None
    trainable_params_m: float | None = None
    source: str = REPORTED
    link: str | None = None  # results file, relative to the page
    note: str = ""
    strategy: str = ""  # as the paper or the results file names it ("LoRA", "vipt")
    params_m: float | None = None  # total parameters (the paper's Table 6 column)
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)  # percent, per column
    date: str = ""  # YYYY-MM-DD: the paper's, or when the results were scored
    paper_url: str | None = None  # https only (:func:`safe_url`)
    code_url: str | None = None
    sweep: tuple[str, float] | None = None  # (knob, value) of a Fig. 6 sweep point


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def _headline_mean(miou: dict[str, float | None]) -> float | None:
    values = [miou.get(m) for m in HEADLINE_COLUMNS]
    return round(sum(values) / len(values), 2) if all(v is not None for v in values) else None


def safe_url(value: Any) -> str | None:
    """``value`` if it is a plain ``https://`` URL of at most :data:`MAX_URL_CHARS`
    characters (no quotes, spaces, angle brackets or other schemes), else None: links come
    from results files anyone can submit, and a ``javascript:`` one must never be a link."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS or not _HTTPS_URL.fullmatch(value):
        return None
    return value


#: paper_results.json key -> leaderboard group, in the page's order
_REFERENCE_TABLES = ((MODALITIES, "modalities"), (RGB_X, "rgb_x"), (RGB_X_SYSTEMS, "rgb_x_systems"),
                     (ALIGNMENT, "alignment_ablation"), (ADAPTER_SWEEP, "adapter_sweeps"))


def reference_entries() -> list[Entry]:
    """The SimCMF paper's rows (SAM ViT-B, protocol ``simcmf``): Tables 1–3, Table 6 (with
    CMX* and ViPT* as the SimCMF authors reimplemented them on SAM), the alignment
    ablation with the MedicalSAM-style figure of the text, and the Fig. 6 sweeps."""
    doc = paper_results()
    out = []
    for group, key in _REFERENCE_TABLES:
        for row in doc.get(key, ()):
            miou = dict(row["miou"])
            mean = row.get("mean")
            if mean is None and group == MODALITIES:
                mean = _headline_mean(miou)
            knob = row.get("knob")
            out.append(Entry(
                method=row["method"], model=row["model"], protocol=doc["protocol"], group=group,
                miou=miou, mean=mean, trainable_params_m=row.get("trainable_params_m"),
                note=row["table"] + ("; mean computed" if row.get("mean") is None and mean is not None else ""),
                strategy=row.get("paper_strategy") or "", params_m=row.get("params_m"),
                date=doc.get("date", ""), paper_url=doc.get("paper_url"), code_url=doc.get("code_url"),
                sweep=None if knob is None else (knob, float(row["value"])),
            ))
    return out


def _number(value: Any) -> float | None:
    """A finite int/float (not a bool), else None: the schema bounds these, and a row
    built from anything else shows a dash instead of "nan" or a 300-digit number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _params_millions(meta: dict[str, Any]) -> float | None:
    for key in ("trainable_params", "trainable_parameters"):
        count = _number(meta.get(key))
        if count is not None:
            return round(count / 1e6, 2)
    return _number(meta.get("trainable_params_m"))


def _ci_pct(summary: Mapping[str, Any]) -> tuple[float, float] | None:
    """A config's 95 % bootstrap interval in percent, if it has a finite one."""
    ci = summary.get("ci95")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = _number(ci[0]), _number(ci[1])
    if lo is None or hi is None or lo > hi:
        return None
    return round(100.0 * lo, 2), round(100.0 * hi, 2)


def _day(created: str) -> str:
    """``YYYY-MM-DD`` of a results file's ``created`` time stamp, or "" if it holds no date."""
    if not _DATE.match(created):
        return ""
    try:
        return date.fromisoformat(created[:10]).isoformat()
    except ValueError:
        return ""


def _text(value: Any, limit: int = 64) -> str:
    return value[:limit] if isinstance(value, str) else ""


def is_rgb_x_system(meta: Mapping[str, Any]) -> bool:
    """Whether a results file comes from one of the other RGB-X systems (CMX, ViPT, GoPT,
    IV-tuning): they see RGB and X un-shuffled, so they are compared in Table 6."""
    return meta.get("strategy") in RGB_X_SYSTEM_STRATEGIES or meta.get("input_prior") == UNSHUFFLED_PRIOR


def _total_params_millions(meta: dict[str, Any]) -> float | None:
    count = _number(meta.get("total_params"))
    return None if count is None or count < 0 else round(count / 1e6, 2)


def entry_from_results(doc: dict[str, Any], link: str | None = None) -> Entry:
    """A validated results document as a leaderboard row."""
    headline = doc["headline"]
    meta = doc.get("meta") or {}
    configs: dict[str, Any] = doc["configs"]
    miou: dict[str, float | None] = {m: _pct(headline["modalities"].get(m)) for m in HEADLINE_COLUMNS}
    ci95 = {}
    for config, summary in configs.items():
        if summary.get("modality") is None:  # e.g. polarization-zju: shown, not in the mean
            miou[config] = _pct(summary.get("miou"))
        column = summary.get("modality") or config
        if (ci := _ci_pct(summary)) is not None:
            ci95[column] = ci
    group = MODALITIES
    if is_rgb_x_system(meta):  # Table 6: each config scored on its RGB + X, un-shuffled
        group = RGB_X_SYSTEMS
        miou = {RGB_X_OF_CONFIG[c]: _pct(s.get("miou")) for c, s in configs.items() if c in RGB_X_OF_CONFIG}
        ci95 = {RGB_X_OF_CONFIG[c]: ci for c, s in configs.items()
                if c in RGB_X_OF_CONFIG and (ci := _ci_pct(s)) is not None}
    elif meta.get("modality") in RGB_X_COLUMNS:
        group = RGB_X
        column = meta["modality"]
        scored = [(s.get("miou"), _ci_pct(s)) for s in configs.values() if s.get("miou") is not None]
        miou = {column: _pct(scored[0][0]) if scored else None}
        ci95 = {column: scored[0][1]} if scored and scored[0][1] is not None else {}
    created = _text(doc.get("created"))
    complete = bool(headline.get("complete")) and group == MODALITIES
    return Entry(
        method=doc["method"], model=doc["model"], protocol=doc["protocol"]["version"],
        group=group, miou=miou, mean=_pct(headline["miou"]) if complete else None,
        trainable_params_m=_params_millions(meta), source=f"aims score {doc['toolkit_version']}",
        link=link, note="" if complete or group != MODALITIES else "partial: not every modality scored",
        strategy=_text(meta.get("strategy")), params_m=_total_params_millions(meta), ci95=ci95,
        date=_day(created),
        paper_url=safe_url(meta.get("paper_url")), code_url=safe_url(meta.get("code_url")),
    )


def collect(results_dir: Path | None, *, include_reference: bool = True) -> list[Entry]:
    """Every results file in ``results_dir`` (validated) plus the paper's rows."""
    from aims.results import load_results

    entries = reference_entries() if include_reference else []
    if results_dir is not None and Path(results_dir).exists() and not Path(results_dir).is_dir():
        raise AimsError(f"--results {results_dir} is not a folder (it is a file); pass the folder of results "
                        "files that `aims leaderboard add` fills.", path=results_dir)
    if results_dir is not None and Path(results_dir).is_dir():
        for path in sorted(Path(results_dir).glob("*.json")):
            if path.is_symlink():  # docs/security.md: links inside input folders are refused
                raise AimsError(f"{path} is a symbolic link; a results folder holds regular files only "
                                "(add results with `aims leaderboard add`, which copies them).", path=path)
            entries.append(entry_from_results(load_results(path), link=f"results/{path.name}"))
    return entries


#: longest file name :func:`results_file_name` returns (file systems allow 255 bytes)
MAX_FILE_NAME = 120


def results_file_name(doc: dict[str, Any]) -> str:
    """A stable file name for a submitted results file: method, model and protocol version
    in safe characters; long or empty names are cut and made unique by a hash."""
    raw = f"{doc['method']}--{doc['model']}--{doc['protocol']['version']}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.").lower()
    if not stem or len(stem) + len(".json") > MAX_FILE_NAME:
        digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]
        stem = f"{stem[:MAX_FILE_NAME - 40].rstrip('-.')}-{digest}" if stem else f"results-{digest}"
    return stem + ".json"


def _results_folder(results_dir: Path) -> Path:
    """``results_dir``, created if absent; a clear error if it is a file or cannot be made."""
    folder = Path(results_dir)
    if folder.exists() and not folder.is_dir():
        raise AimsError(f"--results {folder} is not a folder (it is a file); pass the leaderboard's results "
                        "folder, or a new path to create it.", path=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AimsError(f"cannot create the results folder {folder}: {exc.strerror or exc}; choose a writable "
                        "--results.", path=folder) from None
    remove_stale_temporaries(folder)
    return folder


def _existing_bytes(target: Path) -> bytes | None:
    """What ``target`` holds now (None if absent); a link or anything but a regular file
    there is refused rather than followed (:func:`aims.untrusted.read_bounded`)."""
    from aims.results import MAX_RESULTS_BYTES

    try:
        return read_bounded(target, MAX_RESULTS_BYTES, what="a results file of the leaderboard",
                            hint="Remove it, then add the results again.")
    except MissingFileError:
        return None


def add_results(path: Path, results_dir: Path) -> Path:
    """Validate a results file and copy it into the leaderboard's results folder: the
    bytes that were validated are written, atomically, under :func:`results_file_name`."""
    from aims.results import load_results_and_bytes

    doc, data = load_results_and_bytes(path)
    folder = _results_folder(results_dir)
    target = folder / results_file_name(doc)
    existing = _existing_bytes(target)
    if existing == data:
        return target  # the same results, added again
    if existing is not None:
        raise AimsError(
            f"{target} already holds results for {doc['method']} / {doc['model']} under "
            f"{doc['protocol']['version']}; remove it first if {path} replaces it.",
            path=target,
        )
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise AimsError(f"cannot write {target}: {exc.strerror or exc}; free space or choose a writable "
                        "--results.", path=target) from None
    return target
