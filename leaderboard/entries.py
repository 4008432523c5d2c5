"""Leaderboard rows: scored results files and the paper's reported numbers, made alike.

A results file (``aims score`` output, validated against ``results.schema.json``) and a
row of the paper's tables carry the same facts in different shapes; both become an
:class:`Entry` holding percentages per modality, so the table, the page and the chart
never care where a number came from — only the ``source`` column says it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aims.errors import AimsError

#: the five modalities of the headline mean, in the paper's column order
MODALITIES = ("thermal", "polarization", "depth", "hha", "nir")
#: the RGB-X pseudo modalities of the paper's Table 2
PSEUDO_MODALITIES = ("rgb-thermal", "rgb-depth", "rgb-hha", "rgb-nir")
REPORTED = "reported in paper"


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


def _five_mean(miou: dict[str, float | None]) -> float | None:
    values = [miou.get(m) for m in MODALITIES]
    return round(sum(values) / len(values), 2) if all(v is not None for v in values) else None


def reference_entries() -> list[Entry]:
    """The SimCMF paper's Tables 1–3 and the alignment ablation (SAM ViT-B, ``simcmf``)."""
    doc = json.loads(resources.files("aims.leaderboard").joinpath("paper_results.json").read_text("utf-8"))
    out = []
    for group, key in (("modalities", "modalities"), ("rgb-x", "rgb_x"),
                       ("alignment ablation", "alignment_ablation")):
        for row in doc[key]:
            miou = dict(row["miou"])
            mean = row.get("mean")
            if mean is None and group == "modalities":
                mean = _five_mean(miou)
            out.append(Entry(
                method=row["method"], model=row["model"], protocol=doc["protocol"], group=group,
                miou=miou, mean=mean, trainable_params_m=row.get("trainable_params_m"),
                note=row["table"] + ("; mean computed" if row.get("mean") is None and mean is not None else ""),
            ))
    return out


def _params_millions(meta: dict[str, Any]) -> float | None:
    for key in ("trainable_params", "trainable_parameters"):
        if isinstance(meta.get(key), (int, float)):
            return round(meta[key] / 1e6, 2)
    value = meta.get("trainable_params_m")
    return float(value) if isinstance(value, (int, float)) else None


def entry_from_results(doc: dict[str, Any], link: str | None = None) -> Entry:
    """A validated results document as a leaderboard row."""
    headline = doc["headline"]
    miou: dict[str, float | None] = {m: _pct(headline["modalities"].get(m)) for m in MODALITIES}
    for config, summary in doc["configs"].items():
        if summary.get("modality") is None:  # e.g. polarization-zju: shown, not in the mean
            miou[config] = _pct(summary.get("miou"))
    meta = doc.get("meta") or {}
    pseudo = meta.get("modality") in PSEUDO_MODALITIES
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
    if results_dir is not None and Path(results_dir).is_dir():
        for path in sorted(Path(results_dir).glob("*.json")):
            entries.append(entry_from_results(load_results(path), link=f"results/{path.name}"))
    return entries


def results_file_name(doc: dict[str, Any]) -> str:
    """A stable file name for a submitted results file."""
    raw = f"{doc['method']}--{doc['model']}--{doc['protocol']['version']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-").lower() + ".json"


def add_results(path: Path, results_dir: Path) -> Path:
    """Validate a results file and copy it into the leaderboard's results folder."""
    from aims.results import load_results

    doc = load_results(path)
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / results_file_name(doc)
    if target.exists() and target.read_bytes() != Path(path).read_bytes():
        raise AimsError(
            f"{target} already holds results for {doc['method']} / {doc['model']} under "
            f"{doc['protocol']['version']}; remove it first if {path} replaces it.",
            path=target,
        )
    shutil.copyfile(path, target)
    return target
