"""Where AIMS keeps downloads and prepared datasets.

Everything lives under one root so a user can move or wipe it in one place:
``$AIMS_HOME`` when set, otherwise the platform's user cache directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from aims.errors import AimsError


def _make_folder(path: Path, what: str) -> Path:
    """Create ``path`` (and parents); a file in the way or no permission is the user's to
    fix, so it is an :class:`AimsError` naming the folder, not a traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AimsError(
            f"cannot use {path} as {what}: {exc.strerror or exc}. Set AIMS_HOME to a "
            "writable folder, or move the file that is in the way.",
            path=path,
        ) from None
    return path


def aims_home() -> Path:
    """Root of the AIMS cache; created on first use."""
    root = os.environ.get("AIMS_HOME")
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("aims"))
    return _make_folder(path, "the AIMS home folder (AIMS_HOME)")


def downloads_dir(source: str) -> Path:
    """Verified source files of one dataset (archives, .mat files)."""
    return _make_folder(aims_home() / "downloads" / source, "the download cache")


def default_dataset_dir() -> Path:
    """The prepared Hugging Face dataset folder that ``aims prepare`` writes by default
    and ``aims.load_dataset`` reads."""
    return aims_home() / "dataset"
