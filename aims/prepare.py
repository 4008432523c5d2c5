"""The ``aims prepare`` pipeline: source → samples → instances → dataset configs.

Converters only read their source; everything after that is shared here so every source
gets the same instance rules, the same click points, the same lossless encodings, the same
statistics and the same handling of unreadable samples. The converter lists its samples
in this process (light references); a process pool loads each sample
(:meth:`~aims.converters.base.SourceConverter.load`), derives channels (HHA), splits
instances, computes click points and encodes PNGs; the order of rows, and therefore the
bytes written, does not depend on the number of workers. A sample that raises
:class:`~aims.errors.UnreadableSample` in a worker is skipped, counted and named in the card,
whichever source it comes from. What the card says about each config comes from the
source's record (:mod:`aims.converters.record`) plus the converter's notes on the input it
found.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aims import __version__
from aims.atomic import process_alive
from aims.config_info import ConfigInfo
from aims.converters.base import INSTANCE_MODES, Listing, SampleRef, Skipped, SourceConverter
from aims.converters.record import InstanceSource
from aims.errors import AimsError, UnreadableSample
from aims.modalities import ColumnDecoder, Modality, stack_tensor


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
    facts: dict[str, Any] = field(default_factory=dict)  # what loading noticed, for the card


@dataclass
class SourceResult:
    """What preparing one source produced: counts per config and split, and the samples
    that were skipped (with their reasons)."""

    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    #: config folders of the dataset that the card left out, as "folder: reason" (also logged)
    warnings: list[str] = field(default_factory=list)
    #: official split -> where its instances came from
    instance_sources: dict[str, InstanceSource] = field(default_factory=dict)


@dataclass(frozen=True)
class _WorkPlan:
    """Everything a worker needs besides the sample reference (picklable, and complete: a
    worker started by spawn or forkserver has not seen records registered at run time)."""

    converter: SourceConverter
    configs: tuple[str, ...]
    ignore_labels: tuple[int, ...]
    connectivity: int
    #: the float rule of every stored column, for the channel statistics
    decoders: dict[str, ColumnDecoder]
    #: model inputs computed from several columns (Stokes): they get their own statistics
    computed: tuple[Modality, ...]


def _process(plan: _WorkPlan, ref: SampleRef) -> _Processed | Skipped:
    """Load one sample and do the per-image work; an unreadable sample comes back as a
    :class:`Skipped` (same rule for every source)."""
    from aims.imageio import encode_png
    from aims.instances import instances_from_id_map, split_instances
    from aims.splits import assign_split
    from aims.stats import ChannelStats

    try:
        sample = plan.converter.derive(plan.converter.load(ref, plan.configs), plan.configs)
    except UnreadableSample as exc:
        return Skipped(ref.image_id, str(exc.path or ref.where), str(exc))
    if sample.semantic is not None:
        inst = split_instances(sample.semantic, ignore=plan.ignore_labels, connectivity=plan.connectivity)
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
            acc.update(plan.decoders[col].decode(arr))
            stats[col] = acc
        # modalities computed from several columns (Stokes from four angles) get their
        # own statistics: models normalise the computed channels, not the stored ones
        for modality in plan.computed:
            if set(modality.columns) <= set(sample.images):
                acc = ChannelStats()
                acc.update(stack_tensor(modality, sample.images, plan.decoders))
                stats[modality.name] = acc
    columns = {
        "instance_ids": inst.ids.astype(int).tolist(),
        "category": inst.category.astype(int).tolist(),
        "area": inst.area.astype(int).tolist(),
        "bbox": inst.bbox.astype(int).tolist(),
        "point": inst.point.astype(int).tolist(),
        "point_simcmf": inst.point_simcmf.astype(int).tolist(),
    }
    return _Processed(sample.image_id, sample.split, split, encoded, columns, len(inst), stats,
                      dict(sample.facts))


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


def _processed_stream(plan: _WorkPlan, refs: Iterable[SampleRef],
                      workers: int) -> Iterator[_Processed | Skipped]:
    """Per-image work in ``workers`` processes, yielded in source order, with a bounded
    number of images in flight so memory stays flat on 1449-frame sources."""
    if workers <= 1:
        for ref in refs:
            yield _process(plan, ref)
        return
    in_flight = max(2 * workers, 4)
    _warm_imports()
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending = []
        for ref in refs:
            pending.append(pool.submit(_process, plan, ref))
            if len(pending) >= in_flight:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _work_plan(converter: SourceConverter, configs: Sequence[str]) -> _WorkPlan:
    from aims.converters.registry import config_record
    from aims.modalities import COLUMN_DECODERS, MODALITY_STACKS

    records = [config_record(c) for c in configs]
    decoders = {col.name: COLUMN_DECODERS[col.name] for r in records for col in r.columns}
    computed = tuple(MODALITY_STACKS[m.name] for r in records for m in r.modalities if m.combine is not None)
    record = converter.record
    return _WorkPlan(converter, tuple(configs), tuple(record.ignore_labels), record.instances.connectivity or 8,
                     decoders, computed)


def prepare_source(
    converter: SourceConverter,
    configs: Sequence[str],
    *,
    dataset_dir: Path,
    source: Path | Sequence[Path] | None = None,
    downloader: Callable[[str, Path], None] | None = None,
    workers: int | None = None,
    progress: bool = True,
    instances: str = "release",
) -> SourceResult:
    """Convert the configs of one source into ``dataset_dir``. Each config is swapped into
    place only when complete; official splits must not be empty. ``instances`` is
    ``"release"`` (a release's own instance annotations where it ships them) or
    ``"components"`` (connected components of the semantic labels)."""
    from tqdm.auto import tqdm

    from aims.schema import config_features
    from aims.stats import ChannelStats
    from aims.writer import ConfigWriter, check_dataset_dir

    record = converter.record
    unknown = [c for c in configs if c not in record.config_names]
    if unknown:
        raise AimsError(f"{record.name} feeds {', '.join(record.config_names)}, not {', '.join(unknown)}.")
    if instances not in INSTANCE_MODES:
        raise AimsError(f"instances must be one of {', '.join(INSTANCE_MODES)}, got {instances!r}")
    workers = default_workers() if workers is None else workers
    # refuse a folder we would damage before downloading or converting anything
    check_dataset_dir(dataset_dir, configs)
    listing = converter.list_samples(configs, source=source, downloader=downloader, instances=instances)
    plan = _work_plan(converter, configs)
    with listing:
        names = listing.category_names
        writers = {}
        try:
            image_columns: dict[str, list[str]] = {}
            for config in configs:
                features = config_features(config, names)
                writers[config] = ConfigWriter(dataset_dir, config, features)
                image_columns[config] = list(features)
            stats: dict[str, ChannelStats] = {}
            seen_official: set[str] = set()
            skipped = list(listing.skipped)
            bar = tqdm(total=len(listing) + len(listing.skipped), initial=len(listing.skipped),
                       desc=f"{converter.name} → {', '.join(configs)}",
                       unit="img", disable=not progress, dynamic_ncols=True)
            with bar:
                for item in _processed_stream(plan, listing.refs, workers):
                    bar.update(1)
                    if isinstance(item, Skipped):
                        skipped.append(item)
                        continue
                    converter.observe(listing, item.image_id, item.facts)
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
            result = SourceResult(skipped=skipped, instance_sources=dict(listing.instance_sources))
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
            for config, writer in writers.items():
                info = config_info(converter, config, listing, stats, result.skipped)
                result.counts[config] = writer.commit(info)
                for b in writer.broken_configs:
                    if f"{b.folder}: {b.reason}" not in result.warnings:
                        result.warnings.append(f"{b.folder}: {b.reason}")
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
    return result


def config_info(converter: SourceConverter, config: str, listing: Listing,
                stats: dict[str, Any], skipped: list[Skipped]) -> ConfigInfo:
    """What the card and ``aims_config.json`` say about one config: the record's facts,
    the converter's notes on the input found, the statistics, and the skipped samples."""
    from aims.modalities import MODALITY_STACKS

    source = converter.record
    record = source.config(config)
    columns = record.column_texts()
    return ConfigInfo(
        config=config,
        description=record.description,
        source=source.title,
        homepage=source.homepage,
        license=source.license,
        citation=source.citation,
        columns=columns,
        category_names=list(listing.category_names),
        connectivity=source.instances.connectivity or 8,
        ignore_labels=list(source.ignore_labels),
        channel_stats={
            col: {"mean": stats[col].mean, "std": stats[col].std}
            for col in stats
            if col in columns
            or (col in MODALITY_STACKS and set(MODALITY_STACKS[col].columns) <= set(columns))
        },
        toolkit_version=__version__,
        notes=[*source.notes, f"Labels: {source.label_encoding}", *record.notes,
               *converter.notes(config, listing), *_skipped_notes(skipped)],
        instance_source={s: src.to_dict() for s, src in listing.instance_sources.items()},
        record=record.to_dict(),
    )


def _skipped_notes(skipped: list[Skipped]) -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(f"{s.image_id} ({s.reason})" for s in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    return [f"{len(skipped)} source sample(s) skipped: {shown}{more}."]


# --------------------------------------------------------------------------- several sources


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run_prepare(groups: dict[str, list[str]], *, sources: Mapping[str, object], out: Path,
                workers: int | None, progress: bool, instances: str = "release") -> list[str]:
    """Prepare every source group ({source: [configs]}) and return the summary lines.
    ``instances="components"`` asks sources that ship their own instance annotations for
    connected components instead."""
    from aims.converters.registry import converter

    start = time.perf_counter()
    lines: list[str] = []
    skips: list[str] = []      # after the table, so it stays one row per config
    for name, configs in groups.items():
        result = prepare_source(converter(name), configs, dataset_dir=out, source=sources[name],
                                workers=workers, progress=progress, instances=instances)
        for config, splits in result.counts.items():
            parts = ", ".join(f"{s}: {_count(c['images'], 'image')}, {_count(c['instances'], 'instance')}"
                              for s, c in splits.items())
            lines.append(f"  {config:<17} {parts}")
        if result.skipped:
            skips.append(f"  {name}: skipped {_count(len(result.skipped), 'sample')}:")
            skips += [f"    {s.image_id}: {s.reason} ({s.path})" for s in result.skipped[:10]]
            if len(result.skipped) > 10:
                skips.append(f"    … and {len(result.skipped) - 10} more (listed in the dataset card)")
    lines += skips
    lines.insert(0, f"Prepared {sum(len(c) for c in groups.values())} config(s) in "
                    f"{time.perf_counter() - start:.1f} s:")
    lines.append(f"Dataset: {out}")
    lines.append(f'Load it: datasets.load_dataset("{out}", "<config>")')
    return lines
