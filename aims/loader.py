"""Load a prepared AIMS config without knowing where ``aims prepare`` put it.

``datasets.load_dataset(folder, config)`` already reads the prepared folder (parquet +
README ``configs:``); this wrapper only finds the folder and, when the config is missing,
says which folder was searched and the exact command that prepares it, instead of the
generic "file not found" that ``datasets`` would raise. It also passes the shard list
explicitly, so that a re-prepared config is not served from a stale ``datasets`` cache.
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
        if d.is_dir() and not d.name.startswith(".") and (d / _INFO_FILE).is_file()
    )


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
    if config not in prepared or not (root / "README.md").is_file() or not any(folder.glob("*.parquet")):
        have = f" Prepared configs there: {', '.join(prepared)}." if prepared else ""
        raise AimsError(
            f"AIMS config {config!r} is not prepared: searched {folder} (no {_INFO_FILE} and "
            f"parquet shards, or no README.md in {root}).{have} Prepare it with "
            f"`aims prepare --modality {config}`"
            + ("" if data_dir is None else f" --out {root}")
            + (" (or set AIMS_HOME / pass data_dir= to point at an existing copy)."
               if data_dir is None else "."),
            path=folder,
        )
    shards: dict[str, list[str]] = {}
    for p in sorted(folder.glob("*.parquet")):
        shards.setdefault(p.name.split("-", 1)[0], []).append(str(p))
    order = ("train", "validation", "test")
    shards = dict(sorted(shards.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 3, kv[0])))
    splits = list(shards)
    if split is not None:
        if split not in splits:
            raise AimsError(
                f"config {config!r} in {root} has no split {split!r}; available: {', '.join(splits)}",
                path=folder,
            )
    import datasets

    # The shards are passed explicitly because `datasets` keys its Arrow cache of a local
    # folder on the README's `configs:` patterns only (not on the files): after a re-prepare
    # it would silently serve the old data. Resolved file lists are keyed on their
    # modification times, so a rewritten config gets a fresh cache.
    kwargs.setdefault("data_files", shards)
    return datasets.load_dataset(str(root), config, split=split, **kwargs)
