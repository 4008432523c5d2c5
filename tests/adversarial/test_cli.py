"""Every subcommand, given missing, invalid and out-of-range arguments, ends as a user's
mistake: exit 2, one message naming the argument, no traceback, nothing written outside.

The cases are not listed by hand: they come from walking the installed command tree
(``typer.main.get_command``), so a new subcommand or option is covered the day it is added.
For each command: (a) an unknown option, (b) each required argument or option missing,
(c) each number option given ``abc``, and a value below its minimum / above its maximum,
(d) each choice option given ``bogus``, (e) ``--out`` given an existing file. Each case runs
the installed ``aims`` executable (typer's own error paths are what broke before).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import typer.main

from aims.cli import app

from .conftest import Sandbox, run_aims


@dataclasses.dataclass(frozen=True)
class Param:
    """What a test needs to know of one parameter, from typer ≥ 0.29 or click types."""

    name: str           # what the error message calls it: --long-option or the argument's name
    is_argument: bool
    required: bool
    kind: str           # int, float, choice, path, bool or str
    minimum: float | None
    maximum: float | None
    first_choice: str | None


def describe(param) -> Param:
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:  # typer ≥ 0.29 (its own copy of click, types described by annotations)
        info = desc.parameter_info
        base = typing.get_args(desc.annotation)[0] if desc.is_list else desc.annotation
        kind = ("choice" if desc.is_choice else "path" if desc.is_path or base is Path
                else {int: "int", float: "float", bool: "bool"}.get(base, "str"))
        choices = [getattr(c, "value", c) for c in desc.choices or ()]
        minimum, maximum = info.min, info.max
    else:  # typer on the click package
        names = {"integer": "int", "integer range": "int", "float": "float", "float range": "float",
                 "choice": "choice", "path": "path", "boolean": "bool"}
        kind = names.get(getattr(param.type, "name", ""), "str")
        choices = list(getattr(param.type, "choices", ()) or ())
        minimum, maximum = getattr(param.type, "min", None), getattr(param.type, "max", None)
    is_argument = param.param_type_name == "argument"
    long_opts = [o for o in param.opts if o.startswith("--")]
    name = param.name if is_argument else (long_opts or param.opts)[0]
    return Param(name, is_argument, bool(param.required), kind, minimum, maximum,
                 str(choices[0]) if choices else None)


def walk(command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every command and group of the tree with its words after ``aims``."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


TREE = dict(walk(typer.main.get_command(app)))
#: what the walk must at least find (it is the list of cases; an empty walk tests nothing)
KNOWN = {"", "prepare", "score", "demo", "show", "publish", "leaderboard", "leaderboard build",
         "leaderboard add", "baseline", "baseline train", "baseline predict"}


@dataclasses.dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    mentions: tuple[str, ...]


def valid_value(p: Param, sandbox: Sandbox) -> str:
    """A value that parses, for the required parameters beside the one a case is about."""
    if p.kind == "choice":
        return p.first_choice
    if p.kind in ("int", "float"):
        return str(p.minimum if p.minimum is not None else 1)
    if p.kind == "path":
        return str(sandbox.allowed / f"new-{p.name.strip('-')}")
    return "x"


def as_args(p: Param, value: str) -> tuple[str, ...]:
    return (value,) if p.is_argument else (p.name, value)


def cases(path: tuple[str, ...], command, sandbox: Sandbox, a_file: Path) -> list[Case]:
    params = [describe(p) for p in command.params if p.name != "help" and p.expose_value]
    out = [Case((*path, "--no-such-option"), ("--no-such-option",))]
    if hasattr(command, "commands"):  # a group: no subcommand, or an unknown one
        return out + [Case(path, ("command",)), Case((*path, "no-such-command"), ("no-such-command",))]
    required = [p for p in params if p.required]
    for missing in required:                                                           # (b)
        others = [a for p in required if p is not missing for a in as_args(p, valid_value(p, sandbox))]
        out.append(Case((*path, *others), (missing.name,)))
    for p in params:
        if p.is_argument:
            continue
        if p.kind in ("int", "float"):                                                 # (c)
            out.append(Case((*path, p.name, "abc"), (p.name,)))
            if p.minimum is not None:
                out.append(Case((*path, p.name, str(p.minimum - 1)), (p.name,)))
            if p.maximum is not None:
                out.append(Case((*path, p.name, str(p.maximum + 1)), (p.name,)))
        if p.kind == "choice":                                                         # (d)
            out.append(Case((*path, p.name, "bogus"), (p.name, "bogus")))
        if p.kind == "path" and p.name == "--out":                                     # (e)
            out.append(Case((*path, p.name, str(a_file)), (p.name, a_file.name)))
    return out


@pytest.mark.parametrize("path", sorted(TREE), ids=lambda p: " ".join(("aims", *p)))
def test_bad_arguments_are_user_errors(path, sandbox):
    assert {" ".join(p) for p in TREE} >= KNOWN
    a_file = sandbox.outside / "bait.txt"    # an existing file, which must stay as it is
    todo = cases(path, TREE[path], sandbox, a_file)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run_aims(*c.args, cwd=sandbox.allowed, timeout=120), todo))
    failures = []
    for case, result in zip(todo, results):
        try:
            result.assert_user_error(*case.mentions)
        except AssertionError as exc:
            failures.append(f"aims {' '.join(case.args)}: {exc}")
    assert not failures, "\n\n".join(failures)
    sandbox.assert_nothing_outside()
    assert not any(sandbox.allowed.iterdir()), sorted(sandbox.allowed.iterdir())


def _with_image_id(dataset: Path, config: str, image_id: str) -> None:
    """Rename the first test image of ``config`` in a prepared dataset (a forged download)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shard in sorted((dataset / config).glob("test-*.parquet")):
        table = pq.read_table(shard)
        ids = table.column("image_id").to_pylist()
        ids[0] = image_id
        index = table.schema.get_field_index("image_id")
        pq.write_table(table.set_column(index, "image_id", pa.array(ids, pa.string())), shard)
        return


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_show_never_writes_a_panel_outside_out(kind, nyuv2_prepared, sandbox):
    """``aims show`` names each picture after the image id read from the dataset: an id
    that climbs out of --out (or is absolute) is refused, not written."""
    import shutil

    dataset = sandbox.allowed / "dataset"
    shutil.copytree(nyuv2_prepared, dataset)
    image_id = "../../../outside/pwned" if kind == "relative" else str(sandbox.absolute_target)
    _with_image_id(dataset, "depth", image_id)
    result = run_aims("show", "--data-dir", dataset, "--config", "depth", "--limit", "1",
                      "--out", sandbox.allowed / "panels", cwd=sandbox.allowed, timeout=300)
    result.assert_user_error("plain", "pwned")
    sandbox.assert_nothing_outside()
    assert not list((sandbox.root / "outside").glob("pwned*"))
