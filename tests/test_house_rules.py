"""House rules of the code base, checked on the source text (``ast``, nothing imported):

- no module imports another module's private names (``from aims.x import _name``, or
  ``x._name`` on an imported AIMS module): what is shared is public, or lives in a shared
  module;
- no import cycles among the modules of ``aims`` (its installed subpackages
  ``aims.converters``, ``aims.baselines``, ``aims.leaderboard`` included) at module top
  level. Imports inside functions do not count (they run when called, after every module
  is loaded); an ``if TYPE_CHECKING:`` block at top level does count;
- one atomic-write helper: no module but ``aims/atomic.py`` renames things into place
  (``os.replace``, ``os.rename``, ``shutil.move``, ``Path.rename``) except at the few
  folder swaps listed in :data:`RENAMES_ALLOWED`, each with its reason. Five private
  copies of temp-file-then-rename had diverged (names a cleanup could not recognise, a
  missing fsync, a link written through); a new one fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folder -> the package it is installed as (setup.cfg ``package_dir``)
PACKAGES = {"aims": "aims", "converters": "aims.converters", "baselines": "aims.baselines",
            "leaderboard": "aims.leaderboard"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


MODULES = _modules()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str) -> str | None:
    """The AIMS module or package an import names (None for third-party modules)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported: at top level, or inside
    top-level ``if``/``try``/``with`` blocks, never inside a function or class."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []) or []:
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])
    visit(tree.body)
    return found


def _edges(name: str, tree: ast.Module) -> set[str]:
    targets = set()
    for node in _top_level_imports(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for imported in names:
            target = _resolve(imported)
            while target:  # importing a.b.c runs a and a.b first
                if target != name:
                    targets.add(target)
                target = _resolve(target.rpartition(".")[0])
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_module_imports_another_modules_private_names():
    problems = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> the AIMS module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and _resolve(node.module):
                for alias in node.names:
                    if _private(alias.name) and _resolve(node.module) != name:
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} "
                                        f"import {alias.name}")
                    module = f"{node.module}.{alias.name}"
                    if module in MODULES:
                        aliases[alias.asname or alias.name] = module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr) and aliases[node.value.id] != name):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def test_no_import_cycles_at_module_top_level():
    graph = {name: _edges(name, ast.parse(path.read_text(encoding="utf-8"))) for name, path in MODULES.items()}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_the_checks_see_what_they_should():
    """The scanner finds the modules and the edges it claims to (a check that finds
    nothing would pass for the wrong reason)."""
    assert {"aims.writer", "aims.converters.registry", "aims.baselines.cli", "aims.leaderboard.render"} <= set(MODULES)
    writer = _edges("aims.writer", ast.parse(MODULES["aims.writer"].read_text(encoding="utf-8")))
    assert {"aims.card", "aims.config_info", "aims.errors"} <= writer
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# --------------------------------------------------------------------------- renames

#: (file, function) → why it renames instead of calling aims.atomic. Every entry must still
#: exist (a stale one fails :func:`test_every_allowed_rename_still_exists`).
RENAMES_ALLOWED = {
    ("baselines/reproduce.py", "merge_predictions"):
        "swaps a whole merged predictions folder, built in an aims.atomic temporary sibling",
    ("aims/writer.py", "ConfigWriter._swap"):
        "swaps a whole config folder (renameat2 exchange, or two renames) under the dataset lock",
    ("aims/writer.py", "_clean_stale"):
        "puts back a config folder a killed two-rename swap had set aside",
    ("aims/writer.py", "_ShardWriter.close"):
        "names finished shards inside the config's private temporary folder (not yet visible)",
    ("aims/extract.py", "_swap_into_place"):
        "swaps a whole extraction folder into place",
    ("aims/scoring.py", "_swap_in"):
        "swaps a whole scores folder into place",
    ("aims/predictions.py", "PredictionWriter.close"):
        "swaps a whole predictions folder into place",
    ("aims/fetch.py", "_download"):
        "the downloader (pooch) writes the .part file by name, and it is verified before the rename",
    ("aims/fetch.py", "_check_cached"):
        "moves a user's rejected manual download aside (.rejected); nothing is written",
    ("baselines/run_folder.py", "write_atomically"):
        "PENDING: the callback form of an atomic write (checkpoints stream to disk by name); it "
        "belongs in aims.atomic, and this entry goes when it moves there",
}


def _rename_calls(tree: ast.Module) -> list[tuple[str, int, str]]:
    """(enclosing function, line, call) of every rename-into-place call in a module."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = (*scope, node.name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            call = f"{owner}.{node.func.attr}" if owner else f"….{node.func.attr}"
            if (owner, node.func.attr) in {("os", "replace"), ("os", "rename"), ("os", "renames"),
                                           ("shutil", "move")} or (owner != "os" and node.func.attr == "rename"):
                found.append((".".join(scope) or "<module>", node.lineno, call))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, ())
    return found


def _all_renames() -> dict[tuple[str, str], list[str]]:
    sites: dict[tuple[str, str], list[str]] = {}
    for name, path in MODULES.items():
        if name == "aims.atomic":
            continue
        rel = path.relative_to(ROOT).as_posix()
        for function, line, call in _rename_calls(ast.parse(path.read_text(encoding="utf-8"))):
            sites.setdefault((rel, function), []).append(f"{rel}:{line}: {call} in {function}")
    return sites


def test_only_aims_atomic_renames_files_into_place():
    stray = [where for site, calls in _all_renames().items() if site not in RENAMES_ALLOWED for where in calls]
    assert not stray, ("write files with aims.atomic (atomic_write_bytes / atomic_write_text / "
                       "temporary_sibling) instead of a private temp-file-then-rename:\n" + "\n".join(stray))


def test_every_allowed_rename_still_exists():
    stale = sorted(set(RENAMES_ALLOWED) - set(_all_renames()))
    assert not stale, f"remove these entries from RENAMES_ALLOWED (they rename nothing now): {stale}"


def test_the_rename_scan_finds_what_it_should():
    tree = ast.parse("import os, shutil\n"
                     "def f(tmp, p):\n    os.replace(tmp, p)\n"
                     "class C:\n    def g(self):\n        self.path.rename(x)\n        shutil.move(a, b)\n"
                     "        'a'.replace('b', 'c')\n")
    assert [(f, call) for f, _, call in _rename_calls(tree)] == [
        ("f", "os.replace"), ("C.g", "….rename"), ("C.g", "shutil.move")]
    assert ("aims/writer.py", "ConfigWriter._swap") in _all_renames()
