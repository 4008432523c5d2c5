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

What the writer never destroys. ``--out`` may point at a folder that holds other things,
so only what AIMS wrote is ever replaced:

- A config folder is replaced only when it is an *AIMS config folder*: a real directory
  (not a symbolic link) holding nothing but ``aims_config.json`` and
  ``<split>-NNNNN-of-NNNNN.parquet`` shards, whose ``aims_config.json`` carries the marker
  ``"format": "aims-config/1"`` (any ``aims-config/`` version). Files written before the
  marker existed are accepted when they are a JSON object with the keys every toolkit
  version wrote (``config``, ``counts``, ``protocol``, ``toolkit_version``) and ``config``
  equal to the folder's name. An empty directory is replaced too (nothing to lose).
  Anything else is refused with :class:`~aims.errors.AimsError` before any work is done,
  and again under the lock right before the swap.
- ``README.md`` is overwritten only when absent or when it is a regular file that
  :func:`aims.card.is_aims_card` recognises (the ``<!-- aims-card -->`` line, or the
  heading and ``pretty_name`` of a card written before that line existed). A symbolic
  link is never written through nor replaced.

A config folder whose ``aims_config.json`` cannot be read (not JSON, not an object, wrong
field types, over :data:`CONFIG_INFO_MAX_BYTES`, nested too deeply, a link or a FIFO) is
left alone: the card omits it with a warning section and a logged warning, and every other
config is still written.

Crash guarantees (``SIGKILL`` at any instant of :meth:`ConfigWriter.commit`), relying on
``rename`` being atomic:

1. Every config folder on disk is complete (the previous one or the new one, never a mix).
2. A config listed by the card whose folder exists loads with plain
   ``datasets.load_dataset(folder, config)``: the card is rewritten to list the new config
   *before* its folder is renamed into place, so a complete config is never unlisted.
   For a first write the card may, until the rename, list a config whose folder is not
   there yet; loading that one config fails as "not prepared", which is the truth, and
   other configs are unaffected (``datasets`` resolves only the requested config's files).
3. Replacing a config swaps the two folders with one ``renameat2(RENAME_EXCHANGE)`` on
   Linux, so the config is present at every instant. Where that call is missing (other
   systems, some file systems) two renames are used, and a kill between them leaves the
   config absent; the next write restores the previous folder from ``.old-<config>-*``.
4. :func:`aims.load_dataset` does not depend on the card at all: it reads the config
   folder's own shards.
5. Leftovers of killed runs (``.tmp-*``/``.old-*`` folders, ``.README.md.tmp-*`` files)
   are removed by the next write into the same folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aims.atomic import atomic_write_text, process_alive, remove_stale_temporaries
from aims.card import is_aims_card, render_card
from aims.config_info import (
    CONFIG_FORMAT,
    CONFIG_FORMAT_PREFIX,
    CONFIG_INFO_FILE,
    CONFIG_INFO_MAX_BYTES,
    CONFIG_NAME,
    SPLIT_NAME,
    ConfigInfo,
    read_config_folder,
    read_json_object,
)
from aims.errors import AimsError
from aims.untrusted import UntrustedFileError, read_bounded
from aims.imageio import encode_png

log = logging.getLogger(__name__)

#: ``README.md`` files larger than this are not read to decide whether they are ours.
CARD_MAX_BYTES = 10 * 2**20
#: The card's file name in the dataset folder.
CARD_FILE = "README.md"
#: Split order used for files, counts and the card.
SPLIT_ORDER = ("train", "validation", "test")
#: Row groups hold at most this many rows (``datasets`` uses 100 for image data) …
ROW_GROUP_ROWS = 100
#: … and at most about this many bytes, so one row group of big images stays readable.
ROW_GROUP_BYTES = 32 * 2**20
#: Parquet compression. PNG payloads barely compress; zstd is fast and keeps the lists small.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3

#: the only names a config folder written by AIMS holds besides aims_config.json
SHARD_NAME = re.compile(r"^(?P<split>\w+?)-\d{5}-of-\d{5}\.parquet$")
_ALIGNED = ("instance_ids", "category", "area", "bbox", "point", "point_simcmf")
#: keys every toolkit version wrote; recognises an aims_config.json from before CONFIG_FORMAT
_LEGACY_KEYS = frozenset({"config", "counts", "protocol", "toolkit_version"})


@dataclass(frozen=True)
class BrokenConfig:
    """A folder that looks like a config (it holds ``aims_config.json``) but cannot be
    listed in the card; ``reason`` names no absolute path (the card is published)."""

    folder: str
    reason: str


@dataclass
class ConfigScan:
    """The configs of a dataset folder, in card order, and the folders left out."""

    infos: list[ConfigInfo] = field(default_factory=list)
    broken: list[BrokenConfig] = field(default_factory=list)


def scan_configs(dataset_dir: str | Path) -> ConfigScan:
    """Every config present in a prepared dataset folder, in card order (registered configs
    in registry order, then others alphabetically). Hidden (temporary) folders are skipped;
    a folder whose ``aims_config.json`` cannot be read is reported in ``broken``, never fatal."""
    root = Path(dataset_dir)
    scan = ConfigScan()
    if not root.is_dir():
        return scan
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not os.path.lexists(d / CONFIG_INFO_FILE):
            continue
        try:
            info = read_config_folder(d)
        except ValueError as exc:
            scan.broken.append(BrokenConfig(d.name, str(exc)))
            continue
        scan.infos.append(info)
    scan.infos = _card_order(scan.infos)
    return scan


def _card_order(infos: Iterable[ConfigInfo]) -> list[ConfigInfo]:
    """Registered configs in registry order, then the others alphabetically."""
    from aims.schema import CONFIG_SCHEMAS

    order = {name: i for i, name in enumerate(CONFIG_SCHEMAS)}
    return sorted(infos, key=lambda i: (order.get(i.config, len(order)), i.config))


def load_config_infos(dataset_dir: str | Path) -> list[ConfigInfo]:
    """The readable configs of a dataset folder in card order (see :func:`scan_configs`)."""
    return scan_configs(dataset_dir).infos


def _split_sort_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


# --------------------------------------------------------------------------- what is ours


def config_folder_problem(folder: Path, config: str | None = None) -> str | None:
    """``None`` when ``folder`` may be replaced by a new config (absent, an empty real
    directory, or an AIMS config folder as the module docstring defines it); otherwise
    why it may not, as a phrase that follows the folder's path. ``config`` is the config
    the folder holds when its name is not that (a set-aside ``.old-<config>-…`` folder)."""
    if not os.path.lexists(folder):
        return None
    if folder.is_symlink():
        return "is a symbolic link, not a config folder written by AIMS"
    if not folder.is_dir():
        return "is a file, not a config folder written by AIMS"
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return None
    if CONFIG_INFO_FILE not in entries:
        return f"is not a config folder written by AIMS (it has no {CONFIG_INFO_FILE})"
    try:
        data = read_json_object(folder / CONFIG_INFO_FILE, CONFIG_INFO_MAX_BYTES)
    except ValueError as exc:
        return f"is not recognisable as a config folder written by AIMS: {exc}"
    fmt = data.get("format")
    legacy = fmt is None and _LEGACY_KEYS <= data.keys() and data.get("config") == (config or folder.name)
    if not legacy and not (isinstance(fmt, str) and fmt.startswith(CONFIG_FORMAT_PREFIX)):
        return (f"is not a config folder written by AIMS (its {CONFIG_INFO_FILE} has no "
                f"\"format\": \"{CONFIG_FORMAT}\" marker)")
    foreign = [n for n in entries if n != CONFIG_INFO_FILE and not SHARD_NAME.match(n)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"holds files AIMS does not write ({shown})"
    return None


def card_problem(dataset_dir: Path) -> str | None:
    """``None`` when ``README.md`` in ``dataset_dir`` may be (over)written with the card;
    otherwise why not, as a phrase that follows the file's path."""
    path = dataset_dir / CARD_FILE
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        return "is a symbolic link; AIMS never writes through or replaces one"
    try:
        raw = read_bounded(path, CARD_MAX_BYTES, what="a dataset card")
    except UntrustedFileError as exc:
        return f"is not a dataset card written by AIMS (it {exc.reason})"
    if not is_aims_card(raw.decode("utf-8", errors="replace")):
        return "is not a dataset card written by AIMS (it has no `<!-- aims-card -->` line)"
    return None


def _refusal(path: Path, problem: str, what: str) -> AimsError:
    return AimsError(
        f"{path} {problem}, so AIMS will not replace it with {what}. Choose an empty folder "
        f"for the dataset (--out DIR), or move {path.name} out of {path.parent}, then run again.",
        path=path,
    )


def check_dataset_dir(dataset_dir: str | Path, configs: Iterable[str]) -> None:
    """Refuse, before any work, a dataset folder where writing ``configs`` would replace
    something AIMS did not write: a file where the folder should be, a non-AIMS config
    folder or link, or a README.md that is not an AIMS card. Raises :class:`AimsError`."""
    root = Path(dataset_dir)
    if os.path.lexists(root) and not root.is_dir():
        raise _not_a_folder(root)
    if not root.is_dir():
        return
    for config in configs:
        problem = config_folder_problem(root / config)
        if problem:
            raise _refusal(root / config, problem, f"the {config!r} config")
    problem = card_problem(root)
    if problem:
        raise _refusal(root / CARD_FILE, problem, "the dataset card")


# --------------------------------------------------------------------------- filesystem


def _not_writable(dataset_dir: Path, exc: BaseException) -> AimsError:
    return AimsError(
        f"cannot write the dataset folder {dataset_dir}: {exc.__class__.__name__}: {exc}. "
        "Choose a writable folder (e.g. `--out DIR`, or set AIMS_HOME), or remove the file "
        "that is in the way.",
        path=dataset_dir,
    )


def _not_a_folder(dataset_dir: Path) -> AimsError:
    return AimsError(
        f"cannot write the dataset folder {dataset_dir}: it is a file, not a folder. Choose "
        "a writable folder path (e.g. `--out DIR`, or set AIMS_HOME); the file is left as it is.",
        path=dataset_dir,
    )


def _ensure_dir(dataset_dir: Path) -> None:
    if os.path.lexists(dataset_dir) and not dataset_dir.is_dir():
        raise _not_a_folder(dataset_dir)
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_writable(dataset_dir, exc) from exc
    if not dataset_dir.is_dir():  # pragma: no cover - mkdir(exist_ok) raises for files
        raise _not_writable(dataset_dir, NotADirectoryError("not a directory"))
    if not os.access(dataset_dir, os.W_OK | os.X_OK):
        raise _not_writable(dataset_dir, PermissionError("no write permission"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_LEFTOVER = re.compile(r"^\.(?P<kind>tmp|old)-(?P<config>[a-z0-9][a-z0-9_-]*)-(?P<pid>\d+)-[0-9a-f]+$")


def _clean_stale(dataset_dir: Path) -> bool:
    """Remove leftovers of killed writes of any config (their pid is gone). If a kill hit
    between the two renames of a fallback swap, the previous good folder is put back first.
    Returns whether a folder was put back (the card must then be rewritten)."""
    restored = False
    for entry in sorted(dataset_dir.iterdir()):
        m = _LEFTOVER.match(entry.name)
        if not m or process_alive(int(m["pid"])):
            continue
        target = dataset_dir / m["config"]
        if (m["kind"] == "old" and not os.path.lexists(target) and entry.is_dir()
                and not entry.is_symlink() and (entry / CONFIG_INFO_FILE).is_file()
                and config_folder_problem(entry, m["config"]) is None):
            os.rename(entry, target)
            restored = True
        else:
            _remove(entry)
    return restored


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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: swap a replaced config with one atomic exchange where the system offers it; False
#: forces the two-rename fallback everywhere (tests cover that path with it)
USE_RENAME_EXCHANGE = True


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``),
    so a reader sees one or the other at every instant. ``False`` where the system or the
    file system does not offer it; the caller then falls back to two renames."""
    if not (USE_RENAME_EXCHANGE and sys.platform.startswith("linux")):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # pragma: no cover - glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # pragma: no cover
        return False
    raise OSError(err, os.strerror(err), str(b))


_warned: set[tuple[str, BrokenConfig]] = set()


def _warn_broken(root: Path, broken: Iterable[BrokenConfig]) -> None:
    """Log each left-out folder once per process (a prepare rewrites the card per config)."""
    for b in broken:
        key = (str(root.resolve()), b)
        if key not in _warned:
            _warned.add(key)
            log.warning("warning: %s is not listed in the dataset card: %s. Prepare that config "
                        "again, or move the folder out of %s.", root / b.folder, b.reason, root)


def write_readme(dataset_dir: str | Path, *, pending: ConfigInfo | None = None) -> list[BrokenConfig]:
    """Regenerate ``README.md`` from every readable ``aims_config.json`` in ``dataset_dir``
    (plus ``pending``, a config about to be renamed into place, which replaces its folder's
    entry), atomically. Refuses (:class:`AimsError`) to overwrite a README.md that is not an
    AIMS card. Returns the config folders left out because they cannot be read (also logged)."""
    root = Path(dataset_dir)
    problem = card_problem(root)
    if problem:
        raise _refusal(root / CARD_FILE, problem, "the dataset card")
    scan = scan_configs(root)
    if pending is not None:
        infos = _card_order([i for i in scan.infos if i.config != pending.config] + [pending])
        scan = ConfigScan(infos, [b for b in scan.broken if b.folder != pending.config])
    atomic_write_text(root / CARD_FILE,
                      render_card(scan.infos, broken=[(b.folder, b.reason) for b in scan.broken]))
    _warn_broken(root, scan.broken)
    return scan.broken


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
        from aims.modalities import COLUMN_DECODERS

        if not CONFIG_NAME.match(config):
            raise ValueError(f"config name {config!r} must match {CONFIG_NAME.pattern}")
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
                c: ChannelStats() for c in self._encoder.image_columns if c in COLUMN_DECODERS and c != "instances"
            }
        self._shards: dict[str, _ShardWriter] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._seen_ids: set[str] = set()
        self._done = False
        #: config folders the card left out at commit (unreadable aims_config.json)
        self.broken_configs: list[BrokenConfig] = []

        _ensure_dir(self.dataset_dir)
        with _dataset_lock(self.dataset_dir):
            remove_stale_temporaries(self.dataset_dir)  # .README.md.tmp-* of killed runs
            restored = _clean_stale(self.dataset_dir)
            check_dataset_dir(self.dataset_dir, [config])
            if restored:
                write_readme(self.dataset_dir)
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
        if not SPLIT_NAME.match(split):
            raise ValueError(f"split name {split!r} must match {SPLIT_NAME.pattern}")
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
        ``required_splits`` is empty, or when the config folder or README.md turned into
        something AIMS did not write meanwhile; nothing is swapped in then.
        """
        for _ in self.commit_steps(info, required_splits=required_splits):
            pass
        return self.counts

    def commit_steps(self, info: ConfigInfo, *, required_splits: Iterable[str] = ()) -> Iterator[str]:
        """:meth:`commit`, one file-system step at a time: yields a name after each step
        (``"shards"``, ``"card"``, ``"swap"`` or ``"set-aside"`` + ``"swap"``, ``"cleanup"``).
        Each yield is an instant where a ``SIGKILL`` leaves the dataset consistent as the
        module docstring promises, so tests can inspect the folder at every one. Run it to
        the end; closing it early aborts like an exception would."""
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
            atomic_write_text(self.tmp / CONFIG_INFO_FILE, final.to_json())
            yield "shards"
            yield from self._swap(final)
        except OSError as exc:
            self.abort()
            raise self._os_error(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._done = True

    def _final_info(self, info: ConfigInfo) -> ConfigInfo:
        category_names = list(info.category_names)
        feature = getattr(self.features.get("category"), "feature", None)
        if not category_names and isinstance(feature, datasets.ClassLabel):
            category_names = list(feature.names)
        columns = dict(info.columns)
        if not columns:
            from aims.schema import CONFIG_SCHEMAS

            if self.config in CONFIG_SCHEMAS:
                columns = CONFIG_SCHEMAS[self.config].units_text()
        stats = dict(info.channel_stats)
        if self._stats:
            stats = {c: {"mean": a.mean, "std": a.std} for c, a in self._stats.items() if a.count}
        return dataclasses.replace(
            info, counts=self.counts, category_names=category_names, columns=columns, channel_stats=stats
        )

    def _swap(self, final: ConfigInfo) -> Iterator[str]:
        """Card first, then the folder (see the module docstring for why this order)."""
        target = self.dataset_dir / self.config
        with _dataset_lock(self.dataset_dir):
            problem = config_folder_problem(target)  # again: it may have changed meanwhile
            if problem:
                raise _refusal(target, problem, f"the {self.config!r} config")
            self.broken_configs = write_readme(self.dataset_dir, pending=final)
            yield "card"
            try:
                if os.path.lexists(target) and _rename_exchange(self.tmp, target):
                    yield "swap"  # self.tmp now holds the previous config
                elif os.path.lexists(target):
                    old = self.dataset_dir / f".old-{self.config}-{os.getpid()}-{secrets.token_hex(4)}"
                    os.rename(target, old)
                    try:
                        yield "set-aside"  # a kill here: the next write puts `old` back
                        os.rename(self.tmp, target)
                    except BaseException:
                        os.rename(old, target)
                        raise
                    yield "swap"
                    _remove(old)
                else:
                    os.rename(self.tmp, target)
                    yield "swap"
            except BaseException:
                with contextlib.suppress(Exception):
                    write_readme(self.dataset_dir)  # list what is on disk again
                raise
            _remove(self.tmp)
            yield "cleanup"

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
    written, a split is empty, or writing would replace a folder or README.md that AIMS did
    not write (see the module docstring); on any error the previous config folder is
    untouched and the temporary folder is removed.
    """
    if not rows_by_split:
        raise AimsError(f"config {info.config!r}: no splits given, nothing to write")
    for split in rows_by_split:
        if not SPLIT_NAME.match(split):
            raise ValueError(f"split name {split!r} must match {SPLIT_NAME.pattern}")
    with ConfigWriter(
        dataset_dir, info.config, features, max_shard_bytes=max_shard_bytes, compute_stats=compute_stats
    ) as writer:
        for split in sorted(rows_by_split, key=_split_sort_key):
            for row in rows_by_split[split]:
                writer.add(split, row)
        writer.commit(info, required_splits=list(rows_by_split))
    return Path(dataset_dir) / info.config
