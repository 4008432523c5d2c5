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
from importlib import resources
from pathlib import Path
from typing import Any

from aims.atomic import atomic_write_bytes, remove_stale_temporaries
from aims.converters import registry
from aims.derived import LiveMapping, LiveTuple
from aims.errors import AimsError
from aims.untrusted import MissingFileError, read_bounded

REPORTED = "reported in paper"
PAPER_RESULTS = "paper_results.json"


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


#: the headline modalities (records with ``headline=True``), in the paper's column order
HEADLINE_COLUMNS: tuple[str, ...] = LiveTuple(_headline_columns, registry.generation)  # type: ignore[assignment]
#: the RGB-X pseudo modalities (shuffled RGB + X stacks of the records), paper's Table 2 order
RGB_X_COLUMNS: tuple[str, ...] = LiveTuple(_rgb_x_columns, registry.generation)  # type: ignore[assignment]
#: modality -> its leaderboard title, from the records
DISPLAY_LABELS: Mapping[str, str] = LiveMapping(_display_labels, registry.generation)


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


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def _headline_mean(miou: dict[str, float | None]) -> float | None:
    values = [miou.get(m) for m in HEADLINE_COLUMNS]
    return round(sum(values) / len(values), 2) if all(v is not None for v in values) else None


def reference_entries() -> list[Entry]:
    """The SimCMF paper's Tables 1–3 and the alignment ablation (SAM ViT-B, ``simcmf``)."""
    doc = paper_results()
    out = []
    for group, key in (("modalities", "modalities"), ("rgb-x", "rgb_x"),
                       ("alignment ablation", "alignment_ablation")):
        for row in doc[key]:
            miou = dict(row["miou"])
            mean = row.get("mean")
            if mean is None and group == "modalities":
                mean = _headline_mean(miou)
            out.append(Entry(
                method=row["method"], model=row["model"], protocol=doc["protocol"], group=group,
                miou=miou, mean=mean, trainable_params_m=row.get("trainable_params_m"),
                note=row["table"] + ("; mean computed" if row.get("mean") is None and mean is not None else ""),
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


def entry_from_results(doc: dict[str, Any], link: str | None = None) -> Entry:
    """A validated results document as a leaderboard row."""
    headline = doc["headline"]
    miou: dict[str, float | None] = {m: _pct(headline["modalities"].get(m)) for m in HEADLINE_COLUMNS}
    for config, summary in doc["configs"].items():
        if summary.get("modality") is None:  # e.g. polarization-zju: shown, not in the mean
            miou[config] = _pct(summary.get("miou"))
    meta = doc.get("meta") or {}
    pseudo = meta.get("modality") in RGB_X_COLUMNS
    if pseudo:
        miou = {meta["modality"]: next((v for v in miou.values() if v is not None), None)}
    return Entry(
        method=doc["method"], model=doc["model"], protocol=doc["protocol"]["version"],
        group="rgb-x" if pseudo else "modalities", miou=miou,
        mean=_pct(headline["miou"]) if headline.get("complete") else None,
        trainable_params_m=_params_millions(meta), source=f"aims score {doc['toolkit_version']}",
        link=link, note="" if headline.get("complete") else "partial: not every modality scored",
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
