"""Remember where the last ``aims prepare`` wrote its dataset, so that
``aims.load_dataset("depth")`` finds a dataset prepared with ``--out`` anywhere.

The note is one small JSON file, ``$AIMS_HOME/last_dataset.json``
(``{"dataset_dir": "/absolute/folder"}``), written atomically (:mod:`aims.atomic`) by the
``aims prepare`` command after a successful run. Anything may have replaced it since
(another user, a hand edit, a disk error), so it is read as hostile input: a regular file
(a link is refused, not followed), at most :data:`MAX_POINTER_BYTES`, JSON of exactly that
shape, an absolute path of bounded length to an existing folder. Whether the folder holds
a valid AIMS dataset is checked by the caller (:func:`aims.loader.dataset_root`). A note
that fails any check is ignored, with the reason, never trusted and never fatal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aims.errors import AimsError

__all__ = ["MAX_POINTER_BYTES", "POINTER_FILE", "pointer_path", "remember_dataset", "remembered_dataset"]

log = logging.getLogger(__name__)

POINTER_FILE = "last_dataset.json"
#: a real note is ~100 bytes; anything larger is not ours
MAX_POINTER_BYTES = 4096
#: longest folder path accepted from the note (Linux PATH_MAX)
MAX_PATH_CHARS = 4096


def pointer_path() -> Path:
    """``$AIMS_HOME/last_dataset.json``."""
    from aims.paths import aims_home

    return aims_home() / POINTER_FILE


def remember_dataset(folder: str | Path) -> Path | None:
    """Note ``folder`` (made absolute) as the last prepared dataset. Returns the note's
    path, or None when it could not be written (logged: a prepared dataset is never lost
    over this note)."""
    import json

    from aims.atomic import atomic_write_text

    target = Path(folder).expanduser().resolve()
    try:
        path = pointer_path()
        atomic_write_text(path, json.dumps({"dataset_dir": str(target)}) + "\n")
    except (OSError, AimsError) as exc:
        log.warning("could not remember %s as the last prepared dataset: %s", target, exc)
        return None
    return path


def remembered_dataset() -> tuple[Path | None, str]:
    """``(folder, "")`` from the note, or ``(None, reason)`` when there is no usable note
    (``reason`` is "" when there is no note at all)."""
    from aims.untrusted import MissingFileError, UntrustedFileError, load_json_bounded

    try:
        path = pointer_path()
    except AimsError as exc:  # AIMS_HOME unusable: nothing remembered
        return None, str(exc)
    try:
        data = load_json_bounded(path, limit=MAX_POINTER_BYTES, what="the last-dataset note", max_depth=2)
    except MissingFileError:
        return None, ""
    except UntrustedFileError as exc:
        return None, f"{path} was ignored: {exc}"
    value = data.get("dataset_dir") if isinstance(data, dict) and set(data) == {"dataset_dir"} else None
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\0" in value:
        return None, f"{path} was ignored: it does not hold one folder path ({{\"dataset_dir\": \"/folder\"}})"
    folder = Path(value)
    if not folder.is_absolute():
        return None, f"{path} was ignored: {value[:200]!r} is not an absolute path"
    try:
        is_dir = folder.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        return None, f"{path} was ignored: it names {value[:200]!r}, which is not a folder (moved or deleted?)"
    return folder, ""

