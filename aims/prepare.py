"""The ``aims prepare`` pipeline: source → samples → instances → dataset configs.

Converters only read their source; everything after that is shared here so every source
gets the same instance rules, the same click points, the same lossless encodings and the
same statistics. The per-image work (derived channels such as HHA, connected components,
click points, PNG encoding) runs in a process pool; the order of rows, and therefore the
bytes written, does not depend on the number of workers.

Pool workers die with the process that started them, even when it is killed with
``SIGKILL`` and runs no clean-up: on Linux each worker asks the kernel for
``PR_SET_PDEATHSIG(SIGKILL)`` when it starts; elsewhere (or if that call fails) a watchdog
thread in the worker polls its parent process id. Without either, a worker of a killed
``prepare`` blocks forever on the task pipe, whose write end its sibling workers still hold.
The kernel signal is tied to the *thread* that forked the worker; the pool is created and
fed by the thread that runs :func:`prepare_source`, which outlives the pool.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aims import __version__
from aims.atomic import process_alive
from aims.converters.base import Sample, Skipped, SourceConverter
from aims.errors import AimsError


#: every source provides these; `validation` is carved from train by aims.splits
OFFICIAL_SPLITS = ("train", "test")


@dataclass
class _Processed:
    """One image after the per-image work, ready to become one row per config."""

    image_id: str
    official_split: str
    split: str
    encoded: dict[str, bytes]
    instance_columns: dict[str, list]
    num_instances: int
    stats: dict[str, object]  # column -> ChannelStats of this image


@dataclass
class SourceResult:
    """What preparing one source produced: counts per config and split, and the samples
    that were skipped (with their reasons)."""

    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    #: config folders of the dataset that the card left out, as "folder: reason" (also logged)
    warnings: list[str] = field(default_factory=list)


def _process(converter: SourceConverter, configs: Sequence[str], sample: Sample) -> _Processed:
    from aims.imageio import encode_png
    from aims.instances import instances_from_id_map, split_instances
    from aims.modalities import MODALITIES, column_tensor, modality_tensor
    from aims.splits import assign_split
    from aims.stats import ChannelStats

    sample = converter.derive(sample, configs)
    if sample.semantic is not None:
        inst = split_instances(sample.semantic, ignore=converter.ignore_labels,
                               connectivity=converter.connectivity)
    elif sample.instance_map is not None:
        inst = instances_from_id_map(sample.instance_map, sample.instance_category)
    else:  # pragma: no cover - a converter bug
        raise ValueError(f"sample {sample.image_id} has neither a semantic map nor instances")
    split = assign_split(sample.image_id, sample.split)
    encoded = {col: encode_png(arr) for col, arr in sample.images.items()}
    encoded["instances"] = encode_png(inst.id_map)
    stats: dict[str, object] = {}
    if split == "train":
        for col, arr in sample.images.items():
            acc = ChannelStats()
            acc.update(column_tensor(col, arr))
            stats[col] = acc
        # modalities computed from several columns (Stokes from four angles) get their
        # own statistics: models normalise the computed channels, not the stored ones
        for name, modality in MODALITIES.items():
            if modality.combine is not None and set(modality.columns) <= set(sample.images):
                acc = ChannelStats()
                acc.update(modality_tensor(sample.images, name))
                stats[name] = acc
    columns = {
        "instance_ids": inst.ids.astype(int).tolist(),
        "category": inst.category.astype(int).tolist(),
        "area": inst.area.astype(int).tolist(),
        "bbox": inst.bbox.astype(int).tolist(),
        "point": inst.point.astype(int).tolist(),
        "point_simcmf": inst.point_simcmf.astype(int).tolist(),
    }
    return _Processed(sample.image_id, sample.split, split, encoded, columns, len(inst), stats)


def _process_star(args: tuple) -> _Processed:
    return _process(*args)


def _warm_imports() -> None:
    """Import what the per-image work needs before the pool starts: forked workers inherit
    the modules instead of importing them each (scipy.ndimage alone costs ~0.3 s per
    process, as much as converting a few images)."""
    import scipy.ndimage  # noqa: F401

    import aims.imageio  # noqa: F401
    import aims.instances  # noqa: F401
    import aims.modalities  # noqa: F401
    import aims.splits  # noqa: F401
    import aims.stats  # noqa: F401


_PR_SET_PDEATHSIG = 1
#: how often the fallback watchdog looks at the parent (seconds)
WATCHDOG_INTERVAL_S = 0.5


def _set_parent_death_signal() -> bool:
    """Ask the Linux kernel to SIGKILL this process when its parent dies. False elsewhere
    or when the call is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0


def _watch_parent(first_ppid: int, owner_pid: int) -> None:
    """Watchdog thread: exit as soon as the parent changes (we were re-parented because it
    died) or the process that owns the pool is gone."""
    while os.getppid() == first_ppid and process_alive(owner_pid):
        time.sleep(WATCHDOG_INTERVAL_S)
    os._exit(1)


def die_with_parent(owner_pid: int) -> None:
    """Pool initializer: make this worker end when ``owner_pid`` (the process that created
    the pool) ends, however it ends. The parent is checked again *after* arming the kernel
    signal: a parent that died before that would never send it."""
    first_ppid = os.getppid()
    armed = _set_parent_death_signal()
    if os.getppid() != first_ppid or not process_alive(owner_pid):
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(first_ppid, owner_pid), daemon=True,
                         name="aims-parent-watchdog").start()


def _processed_stream(converter: SourceConverter, configs: Sequence[str], samples: Iterable[Sample],
                      workers: int) -> Iterator[_Processed]:
    """Per-image work in ``workers`` processes, yielded in source order, with a bounded
    number of images in flight so memory stays flat on 1449-frame sources."""
    if workers <= 1:
        for sample in samples:
            yield _process(converter, configs, sample)
        return
    in_flight = max(2 * workers, 4)
    _warm_imports()
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending = []
        for sample in samples:
            pending.append(pool.submit(_process, converter, configs, sample))
            if len(pending) >= in_flight:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def prepare_source(
    converter: SourceConverter,
    configs: Sequence[str],
    *,
    dataset_dir: Path,
    source: Path | None = None,
    downloader: Callable[[str, Path], None] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SourceResult:
    """Convert the configs of one source into ``dataset_dir``. Each config is swapped into
    place only when complete; official splits must not be empty."""
    from tqdm.auto import tqdm

    from aims.modalities import MODALITIES
    from aims.schema import config_features
    from aims.stats import ChannelStats
    from aims.writer import ConfigInfo, ConfigWriter, check_dataset_dir

    workers = default_workers() if workers is None else workers
    # refuse a folder we would damage before downloading or converting anything
    check_dataset_dir(dataset_dir, configs)
    stream = converter.open(configs, source=source, downloader=downloader)
    with stream:
        names = converter.category_names(configs)
        writers = {}
        try:
            image_columns: dict[str, list[str]] = {}
            for config in configs:
                features = config_features(config, names)
                writers[config] = ConfigWriter(dataset_dir, config, features)
                image_columns[config] = list(features)
            stats: dict[str, ChannelStats] = {}
            seen_official: set[str] = set()
            bar = tqdm(total=len(stream), desc=f"{converter.name} → {', '.join(configs)}",
                       unit="img", disable=not progress, dynamic_ncols=True)
            with bar:
                for item in _processed_stream(converter, configs, stream, workers):
                    seen_official.add(item.official_split)
                    for col, acc in item.stats.items():
                        stats.setdefault(col, ChannelStats()).merge(acc)
                    for config, writer in writers.items():
                        row = {"image_id": item.image_id, "source": converter.name}
                        for col in image_columns[config]:
                            if col in item.encoded:
                                row[col] = {"bytes": item.encoded[col], "path": None}
                        row.update(item.instance_columns)
                        writer.add(item.split, row, num_instances=item.num_instances)
                    bar.update(1)
            result = SourceResult(skipped=list(stream.skipped))
            empty = [s for s in OFFICIAL_SPLITS if s not in seen_official]
            if empty:
                raise AimsError(
                    f"{converter.name}: the source has no {empty[0]} samples"
                    + (f" ({len(result.skipped)} were skipped: {result.skipped[0].reason})"
                       if result.skipped else "")
                    + ". Every benchmark config needs the official train and test splits; check "
                    "that the source is complete (all split folders extracted).",
                    path=source if isinstance(source, (str, Path)) else None,
                )
            skipped_notes = _skipped_notes(result.skipped)
            for config, writer in writers.items():
                desc = converter.describe(config)
                info = ConfigInfo(
                    config=config,
                    description=desc.description,
                    source=converter.info.name,
                    homepage=converter.info.homepage,
                    license=converter.info.license,
                    citation=converter.info.citation,
                    columns=desc.columns,
                    category_names=names,
                    connectivity=converter.connectivity,
                    ignore_labels=list(converter.ignore_labels),
                    channel_stats={
                        col: {"mean": stats[col].mean, "std": stats[col].std}
                        for col in stats
                        if col in desc.columns
                        or (col in MODALITIES and set(MODALITIES[col].columns) <= set(desc.columns))
                    },
                    toolkit_version=__version__,
                    notes=[*converter.info.notes, *desc.notes, *skipped_notes],
                )
                result.counts[config] = writer.commit(info)
                for b in writer.broken_configs:
                    if f"{b.folder}: {b.reason}" not in result.warnings:
                        result.warnings.append(f"{b.folder}: {b.reason}")
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
    return result


def _skipped_notes(skipped: list[Skipped]) -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(f"{s.image_id} ({s.reason})" for s in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    return [f"{len(skipped)} source sample(s) skipped: {shown}{more}."]
