"""Where AIMS keeps downloads and prepared datasets.

Everything lives under one root so a user can move or wipe it in one place:
``$AIMS_HOME`` when set, otherwise the platform's user cache directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def aims_home() -> Path:
    """Root of the AIMS cache; created on first use."""
    root = os.environ.get("AIMS_HOME")
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("aims"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir(source: str) -> Path:
    """Verified source files of one dataset (archives, .mat files)."""
    path = aims_home() / "downloads" / source
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_dataset_dir() -> Path:
    """The prepared Hugging Face dataset folder that ``aims prepare`` writes by default
    and ``aims.load_dataset`` reads."""
    return aims_home() / "dataset"
