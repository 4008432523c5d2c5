"""Load a prepared AIMS config without knowing where ``aims prepare`` put it.

``datasets.load_dataset(folder, config)`` already reads the prepared folder (parquet +
README ``configs:``); this wrapper only finds the folder and, when the config is missing,
says which folder was searched and the exact command that prepares it, instead of the
generic "file not found" that ``datasets`` would raise.

It reads the config folder's own shards with the ``parquet`` builder instead of going
through the card: the features travel in each shard's schema metadata, so the result is
the same, but it never depends on README.md. A config that is complete on disk therefore
loads even when a killed ``prepare`` left the card behind, and a re-prepared config is
not served from a stale ``datasets`` cache (resolved file lists are keyed on the files'
modification times; the cache of a local folder by name is keyed on the card only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aims.errors import AimsError

log = logging.getLogger(__name__)

_INFO_FILE = "aims_config.json"
#: environment variable naming the prepared dataset folder (wins over the remembered one)
DATASET_ENV = "AIMS_DATASET"


def prepared_configs(root: str | Path) -> list[str]:
    """The configs prepared in ``root``: folders with an ``aims_config.json`` and parquet
    shards (empty when ``root`` is not a folder)."""
    root = Path(root)
    try:
        if not root.is_dir():
            return []
    except OSError:
        return []
    return sorted(
        d.name for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and (d / _INFO_FILE).is_file() and _shards(d)
    )


def _shards(folder: Path) -> dict[str, list[str]]:
    """The config folder's parquet shards per split, splits in canonical order."""
    from aims.writer import SHARD_NAME

    shards: dict[str, list[str]] = {}
    for p in sorted(folder.glob("*.parquet")):
        m = SHARD_NAME.match(p.name)
        if m and p.is_file():
            shards.setdefault(m["split"], []).append(str(p))
    order = ("train", "validation", "test")
    return dict(sorted(shards.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 3, kv[0])))


def dataset_candidates() -> list[tuple[Path, str]]:
    """The folders :func:`dataset_root` considers, in order, each with where it comes from:
    ``$AIMS_DATASET`` alone when set; else the folder the last ``aims prepare`` wrote (when
    its note is usable) and ``$AIMS_HOME/dataset``."""
    import os

    from aims.dataset_pointer import remembered_dataset
    from aims.paths import default_dataset_dir

    env = os.environ.get(DATASET_ENV)
    if env:
        return [(Path(env).expanduser(), DATASET_ENV)]
    out = []
    remembered, reason = remembered_dataset()
    if remembered is not None:
        out.append((remembered, "the folder the last `aims prepare` wrote"))
    elif reason:
        log.warning("%s", reason)
    default = default_dataset_dir()
    if remembered is None or remembered.resolve() != default.resolve():
        out.append((default, "the default, $AIMS_HOME/dataset"))
    return out


def dataset_root(data_dir: str | Path | None = None, config: str | None = None) -> Path:
    """The prepared dataset folder to read, in this order:

    1. ``data_dir`` when given;
    2. ``$AIMS_DATASET`` when set;
    3. the folder the last ``aims prepare`` (with or without ``--out``) wrote, remembered in
       ``$AIMS_HOME/last_dataset.json``, when it still holds a valid AIMS dataset (and
       ``config``, when given);
    4. ``$AIMS_HOME/dataset`` (:func:`aims.paths.default_dataset_dir`).

    Why: a dataset prepared with ``--out /data/aims`` should load by config name alone, as
    one prepared in the default place does, and a stale or tampered note must never send a
    reader somewhere else (:mod:`aims.dataset_pointer` reads it as hostile input)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    candidates = dataset_candidates()
    for folder, _ in candidates:
        configs = prepared_configs(folder)
        if configs and (config is None or config in configs):
            return folder
    return candidates[-1][0]  # none holds it: the default (or $AIMS_DATASET), for the message


def load_dataset(
    config: str,
    split: str | None = None,
    *,
    data_dir: str | Path | None = None,
    **kwargs: Any,
) -> Any:
    """``datasets.load_dataset`` on the local prepared copy of ``config``.

    How the name resolves: ``config`` is a config of a dataset folder on this machine
    (``"depth"``, ``"thermal"`` …), never a Hub repository. The folder is ``data_dir``, else
    ``$AIMS_DATASET``, else the folder the last ``aims prepare`` wrote (``--out`` included,
    remembered in ``$AIMS_HOME/last_dataset.json``), else ``$AIMS_HOME/dataset``
    (:func:`dataset_root`). A published copy loads with ``datasets`` itself and its Hub id,
    ``datasets.load_dataset("<org>/aims", "depth")`` (``aims publish`` prints the line); a
    bare ``"aims"`` is no Hub id, and inside the toolkit's repository the ``aims/`` package
    folder would be read as a local dataset.

    Returns a ``DatasetDict`` (``split=None``) or a ``Dataset``. Extra keyword arguments
    (``streaming=True``, ``cache_dir=...``) go to ``datasets.load_dataset``. Raises
    :class:`AimsError` when the config or split is not prepared.
    """
    root = dataset_root(data_dir, config)
    folder = root / config
    prepared = prepared_configs(root)
    if config not in prepared:
        have = f" Prepared configs there: {', '.join(prepared)}." if prepared else ""
        searched = ([(root, "data_dir")] if data_dir is not None else dataset_candidates())
        where = "; ".join(f"{f / config} ({why})" for f, why in searched)
        raise AimsError(
            f"AIMS config {config!r} is not prepared: searched {where} (no {_INFO_FILE} and "
            f"parquet shards).{have} Prepare it with "
            f"`aims prepare --modality {config}`"
            + ("" if data_dir is None else f" --out {root}")
            + (f" (or set {DATASET_ENV} / pass data_dir= to point at an existing copy)."
               if data_dir is None else "."),
            path=folder,
        )
    from aims.converters.registry import register_prepared_records

    register_prepared_records(root)  # a config prepared from a user's own record
    shards = _shards(folder)
    splits = list(shards)
    if split is not None and split not in splits:
        raise AimsError(
            f"config {config!r} in {root} has no split {split!r}; available: {', '.join(splits)}",
            path=folder,
        )
    import datasets

    kwargs.setdefault("data_files", shards)
    return datasets.load_dataset("parquet", split=split, **kwargs)
