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

from pathlib import Path
from typing import Any

from aims.errors import AimsError

_INFO_FILE = "aims_config.json"


def _prepared_configs(root: Path) -> list[str]:
    if not root.is_dir():
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


def load_dataset(
    config: str,
    split: str | None = None,
    *,
    data_dir: str | Path | None = None,
    **kwargs: Any,
) -> Any:
    """``datasets.load_dataset`` on the local prepared copy of ``config``.

    ``data_dir`` defaults to ``$AIMS_HOME/dataset`` (:func:`aims.paths.default_dataset_dir`).
    Returns a ``DatasetDict`` (``split=None``) or a ``Dataset``. Extra keyword arguments
    (``streaming=True``, ``cache_dir=...``) go to ``datasets.load_dataset``. Raises
    :class:`AimsError` when the config or split is not prepared.
    """
    if data_dir is None:
        from aims.paths import default_dataset_dir

        root = default_dataset_dir()
    else:
        root = Path(data_dir).expanduser()
    folder = root / config
    prepared = _prepared_configs(root)
    if config not in prepared:
        have = f" Prepared configs there: {', '.join(prepared)}." if prepared else ""
        raise AimsError(
            f"AIMS config {config!r} is not prepared: searched {folder} (no {_INFO_FILE} and "
            f"parquet shards).{have} Prepare it with "
            f"`aims prepare --modality {config}`"
            + ("" if data_dir is None else f" --out {root}")
            + (" (or set AIMS_HOME / pass data_dir= to point at an existing copy)."
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
