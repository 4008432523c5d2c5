"""Harness for hostile inputs.

Every adversarial test checks the same two things, the promise of ``docs/security.md``:

1. nothing was written outside the folder the command was allowed to write to
   (:class:`Sandbox` snapshots the whole tree around it, before and after), and
2. the command ended the way a user's mistake ends: exit status 2, a message that names
   what was wrong, and no traceback (:func:`run_aims` runs the *installed* ``aims``
   executable, not an in-process runner, so typer/click's own error paths count too).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def aims_executable() -> Path:
    """The console script installed beside this interpreter (the README's venv)."""
    exe = Path(sys.executable).with_name("aims")
    if not exe.exists():
        pytest.skip(f"the aims console script is not installed beside {sys.executable}; "
                    "install the package as the README says")
    return exe


@dataclass
class Completed:
    returncode: int
    output: str  # stdout and stderr together, as a user sees them

    def assert_user_error(self, *mentions: str) -> None:
        """Exit 2, no traceback, and every word of ``mentions`` in the message."""
        assert "Traceback" not in self.output, self.output
        assert self.returncode == 2, f"exit {self.returncode}:\n{self.output}"
        text = self.output.lower()
        for word in mentions:
            assert word.lower() in text, f"{word!r} not in:\n{self.output}"


def run_aims(*args: str | os.PathLike, cwd: Path | None = None, env: dict | None = None,
             timeout: float = 600) -> Completed:
    """Run ``aims ARGS`` as a user would, with no standard input. The timeout only keeps a
    hung command from hanging the suite; it is not a performance check."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100", **(env or {})}
    proc = subprocess.run([str(aims_executable()), *map(str, args)], cwd=cwd, env=full_env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return Completed(proc.returncode, proc.stdout)


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) → a fingerprint of what it is."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                seen[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                seen[rel] = "dir"
            elif path.is_file():
                seen[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[rel] = f"other:{st.st_mode:o}"
    return seen


class Sandbox:
    """A folder ``root`` holding ``allowed/`` (where the command may write) beside
    ``outside/`` with bait files. :meth:`assert_nothing_outside` fails if anything under
    ``root`` other than ``allowed/`` changed, or if anything was written to the absolute
    bait path that hostile archives aim at."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.allowed = root / "allowed"
        self.outside = root / "outside"
        self.allowed.mkdir(parents=True)
        self.outside.mkdir()
        (self.outside / "bait.txt").write_text("do not touch\n")
        # an absolute path a hostile archive can name; it must never appear
        self.absolute_target = root / "outside" / "pwned"
        self._before: dict[str, str] | None = None

    def snapshot(self) -> None:
        self._before = {k: v for k, v in _tree(self.root).items() if not self._is_allowed(k)}

    def _is_allowed(self, rel: str) -> bool:
        return rel == "allowed" or rel.startswith("allowed" + os.sep)

    def assert_nothing_outside(self) -> None:
        assert self._before is not None, "call snapshot() before running the command"
        after = {k: v for k, v in _tree(self.root).items() if not self._is_allowed(k)}
        assert after == self._before, {
            "added": sorted(set(after) - set(self._before)),
            "removed": sorted(set(self._before) - set(after)),
            "changed": sorted(k for k in after if k in self._before and after[k] != self._before[k]),
        }
        assert not self.absolute_target.exists()
        # nothing the command left inside allowed/ may point outside it
        allowed_real = os.path.realpath(self.allowed)
        for dirpath, dirnames, filenames in os.walk(self.allowed, followlinks=False):
            for name in dirnames + filenames:
                path = Path(dirpath, name)
                if path.is_symlink():
                    real = os.path.realpath(path)
                    assert real == allowed_real or real.startswith(allowed_real + os.sep), (
                        f"{path} points outside the folder: {real}")


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    box = Sandbox(tmp_path / "sandbox")
    box.snapshot()
    return box
