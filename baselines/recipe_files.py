"""Recipe files (``aims baseline train --recipe-file FILE.yaml``): one run's settings as YAML.

A recipe file may come from anyone (a shared reproduction, a pull request), so it is read as
hostile input:

- a regular file of at most :data:`MAX_RECIPE_BYTES`, UTF-8;
- YAML without anchors, aliases or explicit tags (no billion-laughs expansion, no object
  construction), at most :data:`MAX_EVENTS` parser events, one flat mapping whose values
  are scalars or one flat list of numbers, every key once;
- only the keys of :data:`FIELDS`, each of its type and within its bounds. A file names no
  path: where to read weights and data and where to write (``--checkpoint``,
  ``--data-dir``, ``--out``) come from the command line only.

Settings given on the command line override the file's; the file's override the recipe's
defaults. ``recipes/`` ships a file for every cell of the paper's Tables 1–3, the alignment
ablation and Table 6 (written by ``recipes/make_recipes.py`` from
:mod:`aims.baselines.paper_grid`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aims.baselines.choices import STRATEGIES
from aims.baselines.recipes import RECIPES
from aims.baselines.sam_loading import SIZES, regular_file_size
from aims.errors import AimsError

#: largest recipe file read (a real one is a few hundred bytes)
MAX_RECIPE_BYTES = 64 * 1024
#: most YAML parser events (a real file has about 40)
MAX_EVENTS = 500
#: longest list (``lr_sweep``)
MAX_LIST = 32
#: longest scalar (``description``'s bound; also keeps integer parsing from running away)
MAX_SCALAR = 2000
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and _NAME.fullmatch(value) else None


def _choice(choices: tuple[str, ...] | list[str]) -> Callable[[Any], Any]:
    return lambda v: v if isinstance(v, str) and v in choices else None


def _int(lo: int, hi: int) -> Callable[[Any], Any]:
    return lambda v: v if type(v) is int and lo <= v <= hi else None


def _number(v: Any) -> float | None:
    """A YAML number, or a string that is one (YAML 1.1 reads ``3e-4`` as a string)."""
    if type(v) in (int, float):
        return float(v)
    if isinstance(v, str) and re.fullmatch(r"[0-9.]+(?:e[-+]?[0-9]+)?", v, re.IGNORECASE) and len(v) <= 32:
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _lr(v: Any) -> float | None:
    x = _number(v)
    return x if x is not None and 0 < x <= 1 else None


def _lr_list(v: Any) -> list[float] | None:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_LIST:
        return None
    out = [_lr(x) for x in v]
    return None if any(x is None for x in out) else out


def _text(limit: int) -> Callable[[Any], Any]:
    return lambda v: v if isinstance(v, str) and len(v) <= limit and v.isprintable() else None


def _bool(v: Any) -> bool | None:
    return v if type(v) is bool else None


def _miou(v: Any) -> float | None:
    if v is None:
        return None
    x = _number(v)
    return x if x is not None and 0 <= x <= 100 else None


#: key → (check returning the value or None, what it must be)
FIELDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "recipe": (_choice(tuple(RECIPES)), f"one of {', '.join(RECIPES)}"),
    "config": (_name, "a config name (lower-case letters, digits, '_', '-', '.')"),
    "modality": (_name, "a modality name"),
    "strategy": (_choice(STRATEGIES), f"one of {', '.join(STRATEGIES)}"),
    "adapter": (_text(64), "a projector name (at most 64 characters)"),
    "size": (_choice(SIZES), f"one of {', '.join(SIZES)}"),
    "lr": (_lr, "a learning rate in (0, 1]"),
    "lr_sweep": (_lr_list, f"a list of 1 to {MAX_LIST} learning rates in (0, 1]"),
    "epochs": (_int(1, 10_000), "an integer from 1 to 10000"),
    "eval_every": (_int(1, 10_000), "an integer from 1 to 10000"),
    "batch_size": (_int(1, 4096), "an integer from 1 to 4096"),
    "seed": (_int(0, 2**32 - 1), "an integer from 0 to 2**32-1"),
    "select_on_test": (_bool, "true or false"),
    "uniform_init": (_bool, "true or false"),
    "zero_shot": (_bool, "true or false"),
    "table": (_text(32), "a short text"),
    "row": (_text(200), "a text of at most 200 characters"),
    "paper_miou": (_miou, "a number from 0 to 100, or null"),
    "description": (_text(2000), "a text of at most 2000 characters"),
}
REQUIRED = ("recipe", "config")
#: keys that describe the file rather than set the run
INFORMATIONAL = ("table", "row", "paper_miou", "description")


@dataclass(frozen=True)
class RecipeFile:
    """A checked recipe file: its path and its values (only keys present in the file)."""

    path: Path
    values: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def zero_shot(self) -> bool:
        return bool(self.values.get("zero_shot", False))


def _error(path: Path, problem: str) -> AimsError:
    return AimsError(f"{path}: {problem}. A recipe file is a flat YAML mapping of the keys "
                     f"{', '.join(FIELDS)} (docs/baselines.md, \"Recipe files\").", path=path)


def _check_events(text: str, path: Path) -> None:
    """Walk the parser's events before anything is constructed."""
    import yaml

    depth = 0
    try:
        for n, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader)):
            if n >= MAX_EVENTS:
                raise _error(path, f"more than {MAX_EVENTS} YAML events")
            if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
                raise _error(path, f"a value is longer than {MAX_SCALAR:,} characters")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _error(path, "YAML anchors and aliases are not accepted")
            tag = getattr(event, "tag", None)
            implicit = getattr(event, "implicit", True)
            if tag is not None and not (implicit is True or (isinstance(implicit, tuple) and any(implicit))):
                raise _error(path, f"explicit YAML tags are not accepted (found {str(tag)[:60]!r})")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > 2:
                    raise _error(path, "values nest too deep (a flat mapping with at most one list level)")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent) and n > 1:
                raise _error(path, "more than one YAML document")
    except yaml.YAMLError as exc:
        raise _error(path, f"it is not valid YAML ({str(exc).splitlines()[0][:200]})") from None


def _check_keys_once(text: str, path: Path) -> None:
    import yaml

    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        raise _error(path, "the document is not a mapping")
    seen: set[str] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise _error(path, "a key is not a plain name")
        if key.value in seen:
            raise _error(path, f"key {key.value[:64]!r} appears twice")
        seen.add(key.value)


def parse_recipe_text(text: str, path: Path) -> RecipeFile:
    """Check and parse a recipe file's text (``path`` names it in messages)."""
    import yaml

    _check_events(text, path)
    _check_keys_once(text, path)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:   # e.g. a date or number YAML cannot build
        raise _error(path, f"a value cannot be read ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise _error(path, "the document is not a mapping")
    unknown = [str(k)[:64] for k in data if k not in FIELDS]
    if unknown:
        raise _error(path, f"unknown key(s) {', '.join(repr(k) for k in unknown[:5])}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        check, what = FIELDS[key]
        checked = check(value)
        if checked is None and not (key == "paper_miou" and value is None):
            raise _error(path, f"{key} must be {what}, got {str(value)[:80]!r}")
        values[key] = checked
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise _error(path, f"missing key(s) {', '.join(missing)}")
    if "adapter" in values:
        from aims.baselines.adapters import check_adapter

        try:
            check_adapter(values["adapter"])
        except AimsError as exc:
            raise _error(path, f"adapter: {exc}") from None
    if values.get("select_on_test") and values["recipe"] != "reference":
        raise _error(path, "select_on_test exists only under recipe reference")
    if values.get("zero_shot") and any(k in values for k in ("strategy", "lr", "lr_sweep", "epochs")):
        raise _error(path, "a zero-shot recipe trains nothing: drop strategy, lr, lr_sweep and epochs")
    if "lr" in values and "lr_sweep" in values:
        raise _error(path, "give lr or lr_sweep, not both")
    return RecipeFile(path, values)


def _read_bounded(path: Path) -> bytes:
    """At most MAX_RECIPE_BYTES + 1 bytes of a regular file, checked on the opened file
    (non-blocking open, so a FIFO swapped in cannot hang the read)."""
    import os
    import stat

    regular_file_size(path, "a recipe file", MAX_RECIPE_BYTES)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _error(path, f"it cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise _error(path, "it is not a regular file")
        return fh.read(MAX_RECIPE_BYTES + 1)


def read_recipe_file(path: str | Path) -> RecipeFile:
    """Read and check a recipe file (see the module docstring for every rule)."""
    path = Path(path)
    raw = _read_bounded(path)
    if len(raw) > MAX_RECIPE_BYTES:
        raise _error(path, f"larger than {MAX_RECIPE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(path, "it is not UTF-8 text") from None
    if "\0" in text:
        raise _error(path, "it holds NUL characters")
    return parse_recipe_text(text, path)


def dump_recipe(values: dict[str, Any], comment: str = "") -> str:
    """A recipe file's text for ``values`` (keys in :data:`FIELDS` order), deterministic."""
    import json

    lines = [f"# {line}" if line else "#" for line in comment.splitlines()] if comment else []
    for key in FIELDS:
        if key not in values:
            continue
        value = values[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif isinstance(value, list):
            text = "[" + ", ".join(f"{v:.1e}" for v in value) + "]"
        elif isinstance(value, float):
            text = f"{value:.1e}" if key.startswith("lr") else repr(value)
        elif isinstance(value, int):
            text = str(value)
        else:
            text = json.dumps(value, ensure_ascii=False)   # a JSON string is a YAML string
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


__all__ = ["FIELDS", "INFORMATIONAL", "MAX_EVENTS", "MAX_RECIPE_BYTES", "REQUIRED", "RecipeFile", "dump_recipe",
           "parse_recipe_text", "read_recipe_file"]
