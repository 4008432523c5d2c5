"""The results JSON: what one scoring run contributes to the leaderboard.

One document per (predictions folder, protocol, split). It records who produced the
predictions (method, model, the writer's metadata), how they were scored (protocol name AND
version, toolkit version, missing-instance policy), on exactly which data (a fingerprint
over the sha256 of every scored parquet shard), and the numbers (per-config mIoU with
counts, interval, size buckets, categories; the headline mean when complete). The
document is built by :meth:`aims.scoring.Scores.results`; this module only reads, checks
and writes it. IoU values are fractions in [0, 1]; tables show percentages.

The JSON Schema lives in ``leaderboard/results.schema.json`` (packaged as
``aims.leaderboard``); :func:`validate_results` checks a document against it, with the lists
that name the headline modalities derived from the config records (:func:`results_schema`),
and ``aims leaderboard add`` uses the same function.

A results file is input from strangers (anyone can submit one to a leaderboard), so reading
one is bounded at every step: only a regular file, at most :data:`MAX_RESULTS_BYTES`, read
with a bounded read; JSON without NaN/Infinity, without floats that overflow to infinity
and without integers of absurd length (these become :class:`Rejected` markers at parse time,
so the error can name the field); nesting at most :data:`MAX_DEPTH` deep; strings and
containers bounded; then the schema, which bounds every number the page shows; then the
few cross-field rules JSON Schema cannot say (an interval's lower bound below its upper).
Every problem is reported once per field, each in a bounded line.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from aims.atomic import atomic_write_text
from aims.errors import AimsError
from aims.untrusted import parse_json, read_bounded

__all__ = ["MAX_DEPTH", "MAX_RESULTS_BYTES", "MAX_VALUES", "RESULTS_FORMAT", "Rejected", "SCORING_HINT",
           "clean_json", "headline_lists", "load_results", "load_results_and_bytes", "parse_results_json",
           "read_regular_file", "results_problems", "results_schema", "schema_file", "validate_results",
           "with_headline", "write_json_atomic", "write_results"]

#: Version of the results document layout (bumped on incompatible changes).
RESULTS_FORMAT = 1
SCHEMA_FILE = "results.schema.json"

#: largest results file read (a real one is a few hundred kB)
MAX_RESULTS_BYTES = 16 * 1024 * 1024
#: deepest nesting of arrays/objects (a real document nests 6 levels)
MAX_DEPTH = 32
#: longest string and largest array/object anywhere in a document (the schema is stricter
#: where it knows the field)
MAX_STRING_CHARS = 100_000
MAX_CONTAINER_ITEMS = 100_000
#: most values (numbers, strings, arrays, objects …) in one document
MAX_VALUES = 1_000_000
#: longest integer literal accepted (2**63 has 19 digits)
MAX_INT_DIGITS = 30
#: problems listed in one error message, and the length of each line
MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 240

RECREATE = "Re-create it with `aims score`."
#: the advice when a document `aims score` built fails validation (pass as ``hint``)
SCORING_HINT = ("The scored predictions' metadata (method, model and the other keys of aims_predictions.json) "
                "must fit the results schema (leaderboard/results.schema.json); fix it and score again.")


def schema_file() -> dict[str, Any]:
    """``leaderboard/results.schema.json`` as published: the file contract, whose headline
    lists name the built-in headline configs (a test keeps them equal to the records')."""
    text = resources.files("aims.leaderboard").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def headline_lists(schema: dict[str, Any]) -> dict[str, list[Any]]:
    """The lists of a results schema that name the headline modalities: a config's
    ``modality`` enum (plus null), and the required keys and the properties of
    ``headline.modalities``."""
    modality = schema["properties"]["configs"]["additionalProperties"]["properties"]["modality"]
    head = schema["properties"]["headline"]["properties"]["modalities"]
    return {"modality_enum": list(modality["enum"]), "required": list(head["required"]),
            "properties": list(head["properties"])}


def with_headline(schema: dict[str, Any], headline: Sequence[str]) -> dict[str, Any]:
    """``schema`` with its headline lists set to ``headline`` (in place; returned)."""
    schema["properties"]["configs"]["additionalProperties"]["properties"]["modality"]["enum"] = [*headline, None]
    head = schema["properties"]["headline"]["properties"]["modalities"]
    value = next(iter(head["properties"].values()))
    head["required"] = list(headline)
    head["properties"] = {m: dict(value) for m in headline}
    return schema


def results_schema() -> dict[str, Any]:
    """The JSON Schema a results document is validated against: the file contract with
    its headline lists derived from the config records, so the schema follows the
    records (a source registered at run time included) and never contradicts them."""
    from aims.converters.registry import headline_configs

    return with_headline(schema_file(), headline_configs())


# ---------------------------------------------------------------------------------------
# reading: only a regular file, never more than `limit` bytes (aims.untrusted)


def read_regular_file(path: str | Path, *, limit: int = MAX_RESULTS_BYTES, what: str = "results file") -> bytes:
    """The bytes of ``path``, refusing anything that is not a regular file (a link is
    followed to what it names, as the path is the user's own; a link to ``/dev/zero`` or a
    FIFO is refused before it is opened) or that is larger than ``limit`` bytes; the read
    itself stops at ``limit + 1`` (:func:`aims.untrusted.read_bounded`)."""
    hint = ("Pass the results.json that `aims score` wrote (a real one is well under 1 MiB)."
            if what == "results file" else "")
    return read_bounded(path, limit, what=f"a {what}", follow_links=True, hint=hint)


# ---------------------------------------------------------------------------------------
# parsing: numbers JSON cannot hold safely become markers that validation reports by field


class Rejected:
    """A number token refused at parse time (NaN, ±Infinity, a float that overflows to
    infinity, an integer literal of absurd length); kept as a marker so that validation can
    say *which field* held it."""

    __slots__ = ("token", "why")

    def __init__(self, token: str, why: str) -> None:
        self.token = token if len(token) <= 24 else f"{token[:12]}…{token[-4:]}"
        self.why = why

    def __repr__(self) -> str:
        return self.token


def _parse_constant(token: str) -> Rejected:
    return Rejected(token, "is not a number JSON allows (NaN and Infinity are not JSON)")


def _parse_float(token: str) -> float | Rejected:
    value = float(token)
    return value if math.isfinite(value) else Rejected(token, "overflows a 64-bit float to infinity")


def _parse_int(token: str) -> int | Rejected:
    digits = len(token.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return Rejected(token, f"is an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(token)


def parse_results_json(data: bytes, *, source: str | Path) -> Any:
    """JSON text → Python values, with NaN/Infinity, overflowing floats and over-long
    integers as :class:`Rejected` markers (so validation names the field), and text that is
    not UTF-8 JSON or nests beyond the parser one clear :class:`AimsError`
    (:func:`aims.untrusted.parse_json`). Nesting deeper than :data:`MAX_DEPTH` is reported
    by validation, at the field where it starts."""
    # every value but the first follows a comma or opens a container: an upper bound on the
    # values, counted before parsing (a real document holds a few thousand)
    values = data.count(b",") + data.count(b"[") + data.count(b"{")
    if values > MAX_VALUES:
        raise AimsError(f"{source} holds up to {values:,} JSON values, more than the {MAX_VALUES:,} a results "
                        f"document may hold (a real one holds a few thousand). {RECREATE}", path=source)
    return parse_json(data, source=source, what="a results file", hint=RECREATE,
                      parse_constant=_parse_constant, parse_float=_parse_float, parse_int=_parse_int)


# ---------------------------------------------------------------------------------------
# validation: structure bounds, schema, cross-field rules; one line per field


Problem = tuple[tuple, str]  # (path inside the document, what is wrong)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, Rejected) else value.token
    return text if len(text) <= limit else f"{text[:limit - 12]}…{text[-8:]} ({len(text)} chars)"


def _structure_problems(doc: Any) -> tuple[list[Problem], bool]:
    """Rejected numbers, non-finite floats, over-long strings, huge containers and too deep
    nesting, found without recursion. Returns (problems, whether nesting was too deep).
    Scalars are checked in place; a path is only built for a container or a problem."""
    problems: list[Problem] = []
    too_deep = False
    if not isinstance(doc, (dict, list)):
        return problems, too_deep
    stack: list[tuple[Any, tuple, int]] = [(doc, (), 0)]
    while stack:
        container, path, depth = stack.pop()
        if depth >= MAX_DEPTH:
            problems.append((path, f"nested more than {MAX_DEPTH} levels deep"))
            too_deep = True
            continue
        if len(container) > MAX_CONTAINER_ITEMS:
            problems.append((path, f"holds {len(container)} items (at most {MAX_CONTAINER_ITEMS})"))
            continue
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            kind = type(item)
            if kind is int or kind is bool or item is None:
                continue
            if kind is dict or kind is list:
                stack.append((item, (*path, key), depth + 1))
            elif kind is str:
                if len(item) > MAX_STRING_CHARS:
                    problems.append(((*path, key), f"a string of {len(item)} characters (at most {MAX_STRING_CHARS})"))
            elif kind is Rejected:
                problems.append(((*path, key), f"{item.token} {item.why}"))
            elif kind is float and not math.isfinite(item):
                problems.append(((*path, key), f"{item} is not a finite number"))
            if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
                problems.append((path, f"a key of {len(key)} characters (at most {MAX_STRING_CHARS})"))
    return problems, too_deep


def _schema_problem(error: Any) -> Problem:
    """One bounded line for a jsonschema error (its own message repeats the whole value)."""
    from jsonschema.exceptions import best_match

    if error.validator in ("oneOf", "anyOf") and error.context:
        error = best_match(error.context)
    kind, rule, inst = error.validator, error.validator_value, error.instance
    if kind == "maxLength":
        text = f"a string of {len(inst)} characters, longer than the {rule} allowed"
    elif kind == "minLength":
        text = f"{_short(inst)} is shorter than {rule} character(s)"
    elif kind in ("maximum", "exclusiveMaximum"):
        text = f"{_short(inst)} is above the maximum of {rule}"
    elif kind in ("minimum", "exclusiveMinimum"):
        text = f"{_short(inst)} is below the minimum of {rule}"
    elif kind == "type":
        text = f"{_short(inst)} is not of type {' or '.join(rule) if isinstance(rule, list) else rule}"
    elif kind in ("enum", "const"):
        allowed = json.dumps(rule if kind == "enum" else [rule], default=str)
        text = f"{_short(inst)} is not one of {allowed if len(allowed) <= 120 else allowed[:119] + '…'}"
    elif kind == "pattern" and str(rule).startswith("^[^\\u0000"):
        text = f"{_short(inst)} holds a control character or line break, which a name may not"
    elif kind == "pattern":
        text = f"{_short(inst)} does not match {rule} (allowed characters and form)"
    elif kind == "required":
        missing = [k for k in rule if isinstance(inst, dict) and k not in inst]
        text = ", ".join(_short(k) for k in missing[:8]) + " is a required property" if missing else error.message
    elif kind == "additionalProperties":
        extra = [k for k in inst if k not in error.schema.get("properties", {})] if isinstance(inst, dict) else []
        text = f"unexpected field(s) {', '.join(_short(k) for k in extra[:8])} (not in the schema)"
    elif kind in ("maxProperties", "maxItems"):
        text = f"holds {len(inst)} items, more than the {rule} allowed"
    elif kind in ("minProperties", "minItems"):
        text = f"holds {len(inst)} items, fewer than the {rule} required"
    else:
        text = error.message
    return tuple(error.absolute_path), text


def _cross_field_problems(doc: Any) -> list[Problem]:
    """Rules between fields that JSON Schema cannot state: an interval is ordered, and the
    counts of a config are nested (missing ⊆ evaluated ⊆ instances)."""
    problems: list[Problem] = []
    configs = doc.get("configs") if isinstance(doc, dict) else None
    if not isinstance(configs, dict):
        return problems
    for name, summary in configs.items():
        if not isinstance(summary, dict):
            continue
        ci = summary.get("ci95")
        if (isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
                and ci[0] > ci[1]):
            problems.append((("configs", name, "ci95"), f"lower bound {ci[0]} is above upper bound {ci[1]}"))
        counts = {k: summary.get(k) for k in ("n_instances", "n_evaluated", "n_missing")}
        if all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            if counts["n_evaluated"] > counts["n_instances"]:
                problems.append((("configs", name, "n_evaluated"),
                                 f"{counts['n_evaluated']} is above n_instances ({counts['n_instances']})"))
            if counts["n_missing"] > counts["n_evaluated"]:
                problems.append((("configs", name, "n_missing"),
                                 f"{counts['n_missing']} is above n_evaluated ({counts['n_evaluated']})"))
        problems += _interactive_problems(name, summary.get("interactive"))
    return problems


def _interactive_problems(name: str, block: Any) -> list[Problem]:
    """An interactive block is consistent: one mIoU per click, a click budget within the
    clicks, and NoC values within the budget."""
    if not isinstance(block, dict):
        return []
    where = ("configs", name, "interactive")
    clicks, cap, at = block.get("clicks"), block.get("max_clicks"), block.get("miou_at")
    if not (isinstance(clicks, int) and isinstance(cap, int) and isinstance(at, list)):
        return []
    problems: list[Problem] = []
    if len(at) != clicks:
        problems.append(((*where, "miou_at"), f"holds {len(at)} values for {clicks} clicks"))
    if cap > clicks:
        problems.append(((*where, "max_clicks"), f"{cap} is above clicks ({clicks})"))
    for key in ("noc85", "noc90"):
        v = block.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > cap:
            problems.append(((*where, key), f"{v} is above max_clicks ({cap})"))
    return problems


def _path_text(path: tuple) -> str:
    parts = (str(p) if isinstance(p, int) else p if isinstance(p, str) and len(p) <= 40 else _short(p)
             for p in path)
    return "/".join(parts) or "(top level)"


def results_problems(doc: Any) -> list[Problem]:
    """Every problem of ``doc`` as a results document, at most one per field (path),
    structure problems first."""
    import jsonschema

    problems, too_deep = _structure_problems(doc)
    if not too_deep:  # the schema walk recurses; it only runs on bounded input
        validator = jsonschema.Draft202012Validator(results_schema())
        # shallow fields first: a bad method name outranks the 40th bad category
        schema_errors = sorted(validator.iter_errors(doc),
                               key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
        found = [path for path, _ in problems]
        # a refused number inside a field also fails the field's schema: report it once
        problems += [(path, text) for path, text in map(_schema_problem, schema_errors)
                     if not any(f[:len(path)] == path for f in found)]
        problems += _cross_field_problems(doc)
    seen: set[tuple] = set()
    unique = []
    for path, text in problems:
        if path not in seen:
            seen.add(path)
            unique.append((path, text))
    return unique


def _line(path: tuple, text: str) -> str:
    line = f"at {_path_text(path)}: {text}"
    return line if len(line) <= MAX_PROBLEM_CHARS else line[:MAX_PROBLEM_CHARS - 1] + "…"


def validate_results(doc: Any, *, source: str | Path | None = None, hint: str = RECREATE) -> None:
    """Raise :class:`AimsError` (naming ``source``, each failing field once and its rule,
    in a message of bounded length) if ``doc`` is not a valid results document."""
    problems = results_problems(doc)
    if not problems:
        return
    name = f"{source}: " if source is not None else ""
    listed = "; ".join(_line(path, text) for path, text in problems[:MAX_PROBLEMS])
    more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
    raise AimsError(f"{name}not a valid AIMS results document, {len(problems)} problem(s): {listed}{more}. {hint}",
                    path=source)


def load_results_and_bytes(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """Read (bounded, regular files only), parse and validate a results file; returns the
    document and the exact bytes that were validated (copy those, not the file again)."""
    p = Path(path)
    data = read_regular_file(p)
    doc = parse_results_json(data, source=p)
    validate_results(doc, source=p)
    return doc, data


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results JSON file."""
    return load_results_and_bytes(path)[0]


# ---------------------------------------------------------------------------------------
# writing


def clean_json(value: Any, depth: int = 0) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN), numpy scalars plain numbers.
    Nesting is bounded (the metadata comes from the predictions folder)."""
    if depth > MAX_DEPTH:
        raise AimsError(f"the predictions' metadata is nested more than {MAX_DEPTH} levels deep; a results "
                        "document cannot hold it. Simplify aims_predictions.json.")
    if isinstance(value, dict):
        return {str(k): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v, depth + 1) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """Validate ``doc`` and write it as pretty JSON via a temporary sibling + rename
    (:func:`aims.atomic.atomic_write_text`): a reader sees the old file or the new one."""
    p = Path(path)
    validate_results(doc, source=p, hint=SCORING_HINT)
    text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        atomic_write_text(p, text)
    except OSError as exc:
        raise AimsError(f"cannot write the results file {p}: {exc.strerror or exc}; free space or choose a "
                        "writable --out, then score again.", path=p) from None
    return p


#: the name the brief of issue 9 uses for the writer
write_results = write_json_atomic
