"""The results JSON: what one scoring run contributes to the leaderboard.

One document per (predictions folder, protocol, split). It records who produced the
predictions (method, model, the writer's metadata), how they were scored (protocol name AND
version, toolkit version, missing-instance policy), on exactly which data (a fingerprint
over the sha256 of every scored parquet shard), and the numbers (per-config mIoU with
counts, interval, size buckets, categories; the five-modality headline when complete).
IoU values are fractions in [0, 1]; tables show percentages.

The JSON Schema lives in ``leaderboard/results.schema.json`` (packaged as
``aims.leaderboard``); :func:`validate_results` checks a document against it, and
``aims leaderboard add`` uses the same function.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aims import __version__
from aims.errors import AimsError

if TYPE_CHECKING:  # pragma: no cover
    from aims.scoring import Scores

__all__ = ["RESULTS_FORMAT", "build_results", "load_results", "results_schema", "validate_results",
           "write_json_atomic"]

#: Version of the results document layout (bumped on incompatible changes).
RESULTS_FORMAT = 1
SCHEMA_FILE = "results.schema.json"


def results_schema() -> dict[str, Any]:
    """The JSON Schema of a results document."""
    text = resources.files("aims.leaderboard").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN), numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_results(scores: Scores, *, created: str | None = None) -> dict[str, Any]:
    """The results document of a :class:`aims.scoring.Scores`."""
    from aims.scoring import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

    summary = scores.summary()
    meta = dict(scores.meta)
    doc = {
        "results_format": RESULTS_FORMAT,
        "method": str(meta.get("method") or "unnamed"),
        "model": str(meta.get("model") or "unknown"),
        "meta": meta,
        "protocol": scores.protocol.to_dict(),
        "split": scores.split,
        "toolkit_version": __version__,
        "created": created or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "dataset": scores.dataset or {"fingerprint": None, "files": {}},
        "predictions_format": scores.prediction_format,
        "missing_policy": scores.missing_policy,
        "configs": summary,
        "headline": scores.headline(summary),
        "not_scored": dict(scores.not_scored),
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "unit": "image",
                      "confidence": 0.95},
    }
    return _clean(doc)


def validate_results(doc: Any, *, source: str | Path | None = None) -> None:
    """Raise :class:`AimsError` (naming ``source``, the failing field and the rule) if
    ``doc`` is not a valid results document."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        name = f"{source}: " if source is not None else ""
        problems = "; ".join(
            f"at {'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
            for e in errors[:20]
        )
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        raise AimsError(
            f"{name}not a valid AIMS results document, {len(errors)} problem(s): {problems}{more}. "
            "Re-create it with `aims score`.",
            path=source,
        )


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results JSON file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AimsError(f"cannot read results file {p}: {exc}.", path=p) from None
    validate_results(doc, source=p)
    return doc


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """Validate ``doc`` and write it as pretty JSON via a temporary sibling + rename."""
    p = Path(path)
    validate_results(doc, source=p)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return p
