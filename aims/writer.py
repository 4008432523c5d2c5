"""Write one dataset config as Hugging Face parquet shards, atomically and reproducibly.

Layout of a prepared dataset folder (loadable by ``datasets.load_dataset(folder, config)``
and pushable to the Hub as is)::

    <dataset_dir>/README.md                         card; YAML ``configs:`` lists every config
    <dataset_dir>/<config>/aims_config.json         ConfigInfo (what the card says about it)
    <dataset_dir>/<config>/<split>-00000-of-0000N.parquet

Why this shape:

- parquet + README ``configs:`` is what ``datasets`` loads without a loading script; the
  features (``Image``, ``ClassLabel``) ride in the arrow schema metadata under the
  ``"huggingface"`` key, exactly like ``datasets`` writes them, so images decode on load
  and class names survive.
- Atomic: a config is built in a hidden temporary sibling (``.tmp-<config>-<pid>-<rand>``)
  and swapped in with renames, so an interrupted ``prepare`` leaves the previous good config
  or none, never a half one. ``datasets`` ignores hidden folders.
- Deterministic: fixed row-group rule, fixed compression, no timestamps: the same rows give
  byte-identical files (pinned library versions assumed), so rebuilds can be verified by hash.
- Streaming: rows are consumed one by one and written in row groups, so a config larger
  than memory can be written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aims import __version__
from aims.errors import AimsError
from aims.imageio import encode_png

#: File in each config folder that records its :class:`ConfigInfo`.
CONFIG_INFO_FILE = "aims_config.json"
#: Split order used for files, counts and the card.
SPLIT_ORDER = ("train", "validation", "test")
#: Row groups hold at most this many rows (``datasets`` uses 100 for image data) …
ROW_GROUP_ROWS = 100
#: … and at most about this many bytes, so one row group of big images stays readable.
ROW_GROUP_BYTES = 32 * 2**20
#: Parquet compression. PNG payloads barely compress; zstd is fast and keeps the lists small.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

_CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SPLIT_NAME = re.compile(r"^\w+$")
_ALIGNED = ("instance_ids", "category", "area", "bbox", "point", "point_simcmf")


@dataclass
class ConfigInfo:
    """Everything the dataset card says about one config; saved as JSON next to its shards.

    ``counts`` and ``channel_stats`` are filled by :func:`write_config` from the rows it
    writes (the values passed in are replaced), so the card always matches the files.
    ``columns`` maps a stored image column (``rgb`` and the modality columns) to a text
    giving its encoding and units; left empty, it is filled from :mod:`aims.schema`. ``license`` is a Hugging Face licence id,
    or ``"other"`` with ``license_name``/``license_link``.
    """

    config: str
    description: str = ""
    source: str = ""
    homepage: str = ""
    license: str = "other"
    license_name: str = ""
    license_link: str = ""
    citation: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    category_names: list[str] = field(default_factory=list)
    connectivity: int = 8
    ignore_labels: list[int] = field(default_factory=list)
    channel_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    toolkit_version: str = __version__
    protocol: str = "aims-v1"
    notes: list[str] = field(default_factory=list)
    image_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigInfo:
        """Build from JSON; unknown keys (from a newer toolkit) are ignored, not fatal."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "modality_columns" in data and "columns" not in data:  # early spelling
            data["columns"] = data.pop("modality_columns")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> ConfigInfo:
        """Read ``aims_config.json`` (a file, or the config folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / CONFIG_INFO_FILE
        return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))


def load_config_infos(dataset_dir: str | Path) -> list[ConfigInfo]:
    """Every config present in a prepared dataset folder, in card order (registered configs
    in registry order, then others alphabetically). Hidden (temporary) folders are skipped."""
    from aims.schema import CONFIGS

    root = Path(dataset_dir)
    if not root.is_dir():
        return []
    infos = [
        ConfigInfo.load(d / CONFIG_INFO_FILE)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".") and (d / CONFIG_INFO_FILE).is_file()
    ]
    order = {name: i for i, name in enumerate(CONFIGS)}
    infos.sort(key=lambda i: (order.get(i.config, len(order)), i.config))
    return infos


def _split_sort_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


# --------------------------------------------------------------------------- filesystem


def _not_writable(dataset_dir: Path, exc: BaseException) -> AimsError:
    return AimsError(
        f"cannot write the dataset folder {dataset_dir}: {exc.__class__.__name__}: {exc}. "
        "Choose a writable folder (e.g. `--out DIR`, or set AIMS_HOME), or remove the file "
        "that is in the way.",
        path=dataset_dir,
    )


def _ensure_dir(dataset_dir: Path) -> None:
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_writable(dataset_dir, exc) from exc
    if not dataset_dir.is_dir():  # pragma: no cover - mkdir(exist_ok) raises for files
        raise _not_writable(dataset_dir, NotADirectoryError("not a directory"))
    if not os.access(dataset_dir, os.W_OK | os.X_OK):
        raise _not_writable(dataset_dir, PermissionError("no write permission"))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. platforms without signals
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_stale(dataset_dir: Path, config: str) -> None:
    """Remove leftovers of killed writes of ``config`` (their pid is gone). If a kill hit
    between the two renames of a swap, the previous good folder is put back first."""
    target = dataset_dir / config
    pattern = re.compile(rf"^\.(tmp|old)-{re.escape(config)}-(\d+)-[0-9a-f]+$")
    for entry in sorted(dataset_dir.iterdir()):
        m = pattern.match(entry.name)
        if not m or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not target.exists() and (entry / CONFIG_INFO_FILE).is_file():
            os.rename(entry, target)
        else:
            _remove(entry)


@contextlib.contextmanager
def _dataset_lock(dataset_dir: Path) -> Iterator[None]:
    """Serialise swaps and README regeneration between processes writing configs into the
    same folder, so no README misses a config that was swapped in concurrently."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: best effort without a lock
        yield
        return
    # Lock the folder itself (flock works on a directory fd on POSIX), so no lock file is
    # left in the dataset to be published by mistake.
    fd = os.open(dataset_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_readme(dataset_dir: str | Path) -> Path:
    """Regenerate ``README.md`` from every ``aims_config.json`` in ``dataset_dir``
    (atomically: temp file + ``os.replace``)."""
    from aims.card import render_card

    root = Path(dataset_dir)
    path = root / "README.md"
    _atomic_write_text(path, render_card(load_config_infos(root)))
    return path


# --------------------------------------------------------------------------- rows


def _image_cell(value: Any, column: str) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        return {"bytes": encode_png(value), "path": None}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, Mapping) and value.get("bytes") is not None:
        return {"bytes": bytes(value["bytes"]), "path": None}
    raise ValueError(
        f"column {column!r}: an image cell must be PNG bytes, {{'bytes': ..., 'path': None}} "
        f"or a uint8/uint16 ndarray, got {type(value).__name__}"
    )


class _RowEncoder:
    """Checks a row against the features and turns it into arrow-ready python values."""

    def __init__(self, features: datasets.Features) -> None:
        self.features = features
        self.columns = list(features)
        self.image_columns = [c for c, f in features.items() if isinstance(f, datasets.Image)]

    def encode(self, row: Mapping[str, Any], where: str) -> tuple[dict[str, Any], int]:
        keys = set(row)
        missing = [c for c in self.columns if c not in keys]
        extra = sorted(keys - set(self.columns))
        if missing or extra:
            raise ValueError(f"{where}: row columns do not match the features "
                             f"(missing {missing}, unexpected {extra})")
        cells = dict(row)
        nbytes = 0
        for col in self.image_columns:
            cells[col] = _image_cell(cells[col], col)
            nbytes += len(cells[col]["bytes"])
        lengths = {c: len(cells[c]) for c in _ALIGNED if c in cells}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{where}: per-instance lists are not aligned: {lengths}")
        encoded = self.features.encode_example(cells)
        return encoded, nbytes + 64 * (1 + max(lengths.values(), default=0))


class _ShardWriter:
    """Writes one split as size-limited parquet shards with deterministic row groups."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, max_shard_bytes: int) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.max_shard_bytes = max_shard_bytes
        self.row_group_bytes = min(ROW_GROUP_BYTES, max_shard_bytes)
        self.buffer: list[dict[str, Any]] = []
        self.buffer_bytes = 0
        self.shard_bytes = 0
        self.shards: list[Path] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, encoded: dict[str, Any], nbytes: int) -> None:
        # Start a new shard before this row would push the current one over the limit
        # (a single row larger than the limit still gets a shard of its own).
        if self.shard_bytes + self.buffer_bytes + nbytes > self.max_shard_bytes and (
            self.shard_bytes + self.buffer_bytes > 0
        ):
            self._flush()
            self._close_shard()
        self.buffer.append(encoded)
        self.buffer_bytes += nbytes
        if len(self.buffer) >= ROW_GROUP_ROWS or self.buffer_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            path = self.folder / f".{self.split}-{len(self.shards):05d}.parquet.part"
            self.shards.append(path)
            self.writer = pq.ParquetWriter(
                path,
                self.schema,
                compression=PARQUET_COMPRESSION,
                compression_level=PARQUET_COMPRESSION_LEVEL,
                use_dictionary=["source"],
                write_statistics=["image_id", "source"],
            )
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        self.writer.write_table(table, row_group_size=len(self.buffer))
        self.shard_bytes += self.buffer_bytes
        self.buffer, self.buffer_bytes = [], 0

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.shard_bytes = 0

    def close(self) -> list[Path]:
        """Finish and rename shards to ``<split>-0000i-of-0000n.parquet``."""
        self._flush()
        self._close_shard()
        n = len(self.shards)
        final = []
        for i, part in enumerate(self.shards):
            dest = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            os.rename(part, dest)
            final.append(dest)
        return final

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------- main entry


class ConfigWriter:
    """Incremental, atomic writer of one config: rows of any split arrive in any order.

    Why a class: ``aims prepare`` reads a source once and feeds several configs (NYUv2 →
    ``depth`` and ``hha``) row by row, with splits interleaved in source order. Each split
    streams into its own shards inside the hidden temporary folder; :meth:`commit` swaps the
    finished folder into place and regenerates the card, :meth:`abort` (or leaving a
    ``with`` block by an exception) removes the temporary folder and leaves the previous
    config untouched.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        config: str,
        features: datasets.Features,
        *,
        max_shard_bytes: int = 256 * 2**20,
        compute_stats: bool = False,
    ) -> None:
        from aims.modalities import COLUMNS

        if not _CONFIG_NAME.match(config):
            raise ValueError(f"config name {config!r} must match {_CONFIG_NAME.pattern}")
        if max_shard_bytes <= 0:
            raise ValueError("max_shard_bytes must be positive")
        self.dataset_dir = Path(dataset_dir)
        self.config = config
        self.features = features
        self.max_shard_bytes = max_shard_bytes
        self._encoder = _RowEncoder(features)
        self._schema = features.arrow_schema
        # Train-split statistics of every image column with a tensor rule (rgb + modality
        # columns), only when asked: `aims prepare` computes them in its worker processes.
        self._stats: dict[str, Any] = {}
        if compute_stats:
            from aims.stats import ChannelStats

            self._stats = {
                c: ChannelStats() for c in self._encoder.image_columns if c in COLUMNS and c != "instances"
            }
        self._shards: dict[str, _ShardWriter] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._seen_ids: set[str] = set()
        self._done = False

        _ensure_dir(self.dataset_dir)
        with _dataset_lock(self.dataset_dir):
            _clean_stale(self.dataset_dir, config)
        self.tmp = self.dataset_dir / f".tmp-{config}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.tmp.mkdir()
        except OSError as exc:
            raise _not_writable(self.dataset_dir, exc) from exc

    def __enter__(self) -> ConfigWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or not self._done:
            self.abort()

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Images and instances written so far, per split."""
        return {s: dict(self._counts[s]) for s in sorted(self._counts, key=_split_sort_key)}

    def add(self, split: str, row: Mapping[str, Any], num_instances: int | None = None) -> None:
        """Append one row to ``split`` (rows of a split keep their order of arrival)."""
        from aims.modalities import column_tensor

        if self._done:
            raise RuntimeError(f"ConfigWriter for {self.config!r} is already committed or aborted")
        if not _SPLIT_NAME.match(split):
            raise ValueError(f"split name {split!r} must match {_SPLIT_NAME.pattern}")
        counts = self._counts.setdefault(split, {"images": 0, "instances": 0})
        where = f"config {self.config!r}, split {split!r}, row {counts['images']}"
        try:
            encoded, nbytes = self._encoder.encode(row, where)
            image_id = encoded["image_id"]
            if image_id in self._seen_ids:
                raise ValueError(f"{where}: duplicate image_id {image_id!r}")
            self._seen_ids.add(image_id)
            if split == "train":
                for col, acc in self._stats.items():
                    acc.update(column_tensor(col, encoded[col]))
            if split not in self._shards:
                self._shards[split] = _ShardWriter(self.tmp, split, self._schema, self.max_shard_bytes)
            self._shards[split].add(encoded, nbytes)
        except OSError as exc:
            raise self._os_error(exc) from exc
        counts["images"] += 1
        counts["instances"] += len(encoded["instance_ids"]) if num_instances is None else int(num_instances)

    def _os_error(self, exc: OSError) -> BaseException:
        # Only errors about writing *our* folder are the user's to fix here; an OSError
        # from elsewhere keeps its own message.
        ours = str(exc.filename or "").startswith(str(self.dataset_dir))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or (
            ours and exc.errno in (errno.EACCES, errno.EPERM)
        ):
            return _not_writable(self.dataset_dir, exc)
        return exc

    def commit(self, info: ConfigInfo, *, required_splits: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Finish the shards, record ``info`` (counts measured here replace ``info.counts``;
        statistics measured here, with ``compute_stats``, replace ``info.channel_stats``),
        swap the config into place and regenerate README.md. Returns the counts per split.

        Raises :class:`AimsError` when no row was written at all or a split named in
        ``required_splits`` is empty; nothing is swapped in then.
        """
        if self._done:
            raise RuntimeError(f"ConfigWriter for {self.config!r} is already committed or aborted")
        if info.config != self.config:
            raise ValueError(f"ConfigInfo is for {info.config!r}, this writer for {self.config!r}")
        try:
            empty = [s for s in required_splits if not self._counts.get(s, {}).get("images")]
            if empty or not self._counts:
                split = empty[0] if empty else "any"
                raise AimsError(
                    f"config {self.config!r}: split {split!r} has no rows. An empty split cannot "
                    "be published; check the source files (is the archive complete?) or leave "
                    "the split out.",
                    path=self.dataset_dir / self.config,
                )
            for shard in self._shards.values():
                shard.close()
            final = self._final_info(info)
            (self.tmp / CONFIG_INFO_FILE).write_text(final.to_json(), encoding="utf-8")
            self._swap()
        except OSError as exc:
            self.abort()
            raise self._os_error(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.counts

    def _final_info(self, info: ConfigInfo) -> ConfigInfo:
        category_names = list(info.category_names)
        feature = getattr(self.features.get("category"), "feature", None)
        if not category_names and isinstance(feature, datasets.ClassLabel):
            category_names = list(feature.names)
        columns = dict(info.columns)
        if not columns:
            from aims.schema import CONFIGS

            if self.config in CONFIGS:
                columns = CONFIGS[self.config].units_text()
        stats = dict(info.channel_stats)
        if self._stats:
            stats = {c: {"mean": a.mean, "std": a.std} for c, a in self._stats.items() if a.count}
        return dataclasses.replace(
            info, counts=self.counts, category_names=category_names, columns=columns, channel_stats=stats
        )

    def _swap(self) -> None:
        target = self.dataset_dir / self.config
        with _dataset_lock(self.dataset_dir):
            old = None
            if target.exists() or target.is_symlink():
                old = self.dataset_dir / f".old-{self.config}-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(target, old)
            try:
                os.rename(self.tmp, target)
            except BaseException:
                if old is not None:
                    os.rename(old, target)
                raise
            if old is not None:
                _remove(old)
            write_readme(self.dataset_dir)

    def abort(self) -> None:
        """Drop everything written so far; the previous config folder stays as it was."""
        for shard in self._shards.values():
            shard.abort()
        self._shards.clear()
        _remove(self.tmp)
        self._done = True


def write_config(
    dataset_dir: Path,
    info: ConfigInfo,
    rows_by_split: Mapping[str, Iterable[dict]],
    features: datasets.Features,
    *,
    max_shard_bytes: int = 256 * 2**20,
    compute_stats: bool = True,
) -> Path:
    """Write (or replace) config ``info.config`` in ``dataset_dir`` and regenerate the card.

    ``rows_by_split`` maps a split name to an iterable of rows (dicts matching
    ``features``; image cells as ``{"bytes": png, "path": None}``, PNG bytes, or
    uint8/uint16 arrays, which are encoded with :func:`aims.imageio.encode_png`). Rows are
    consumed as a stream. Counts per split and, with ``compute_stats``, per-channel mean/std
    of ``rgb`` and the modality columns on the ``train`` split (values as
    :func:`aims.modality_tensor` returns them) are measured while writing and stored in
    ``<config>/aims_config.json``; without ``compute_stats`` the given
    ``info.channel_stats`` are kept.

    Returns the config folder. Raises :class:`AimsError` when ``dataset_dir`` cannot be
    written or a split is empty; on any error the previous config folder is untouched and
    the temporary folder is removed.
    """
    if not rows_by_split:
        raise AimsError(f"config {info.config!r}: no splits given, nothing to write")
    for split in rows_by_split:
        if not _SPLIT_NAME.match(split):
            raise ValueError(f"split name {split!r} must match {_SPLIT_NAME.pattern}")
    with ConfigWriter(
        dataset_dir, info.config, features, max_shard_bytes=max_shard_bytes, compute_stats=compute_stats
    ) as writer:
        for split in sorted(rows_by_split, key=_split_sort_key):
            for row in rows_by_split[split]:
                writer.add(split, row)
        writer.commit(info, required_splits=list(rows_by_split))
    return Path(dataset_dir) / info.config
