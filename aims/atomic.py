"""Atomic file writes: the one helper every writer in AIMS uses.

A reader (or a crash) must only ever see the old file or the new one, never half of
either, so content goes to a hidden temporary sibling in the same folder (same file
system, so ``os.replace`` is a single rename), is flushed to disk, and is renamed over the
destination. The sibling's name, ``.<name>.tmp-<pid>-<hex>``, is one pattern that
:func:`remove_stale_temporaries` recognises, so leftovers of a killed run are cleaned up by
the next run instead of piling up.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``path`` that :func:`remove_stale_temporaries` knows."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file. If ``path``
    is a symbolic link, the link itself is replaced: the write never lands elsewhere."""
    p = Path(path)
    tmp = temporary_sibling(p)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` for text, with ``\\n`` line endings on every platform."""
    return atomic_write_bytes(path, text.encode(encoding))


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a temporary of a live run is not stale)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>-<hex>`` files and folders in ``folder`` whose process is
    gone: what a killed run left behind. Links are removed, never followed."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        match = TEMP_PATTERN.match(entry.name)
        if not match or process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
