"""The sources AIMS knows, and every lookup derived from their records.

:data:`BUILTIN_SOURCES` is **the** list of built-in sources: one line per source, naming
the module that holds its :class:`~aims.converters.record.SourceRecord` (``RECORD``).
Adding a source is its record, its converter, its miniature, its test and one line here
(docs/adding-a-source.md). The order is the order ``aims prepare --modality all``
prepares them in and the order of configs in the card.

Records load lazily (the first lookup imports the record modules, which import nothing
heavy) and converters load only when a source is prepared: ``aims prepare --modality
depth`` does not import the polarization readers, and a source whose optional backend
is missing (e.g. RAR) does not break the others.

Two hooks register records at run time, and every derived view
(:mod:`aims.derived`) follows them through :func:`generation`:

- :func:`register_source_record` (or :func:`register_builtin` with a module path, the
  run-time twin of a :data:`BUILTIN_SOURCES` line): a source with a converter, preparable
  with ``aims prepare``;
- :func:`register_prepared_records`: the configs of a prepared dataset folder whose
  ``aims_config.json`` carries a record AIMS does not know (a user's own modality, or a
  source of a newer toolkit), so a fresh process can load, score and show them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aims.converters.record import ConfigRecord, SourceRecord
from aims.derived import LiveMapping, LiveTuple
from aims.errors import AimsError

if TYPE_CHECKING:  # pragma: no cover
    from aims.converters.base import SourceConverter

log = logging.getLogger(__name__)

#: the built-in sources (module holding ``RECORD``), in the order `all` prepares them
BUILTIN_SOURCES: tuple[str, ...] = (
    "aims.converters.nyuv2_record",
    "aims.converters.ivrg_nir_record",
    "aims.converters.rgbp_glass_record",
    "aims.converters.zju_rgbp_record",
    "aims.converters.thermal_glass_record",
)

_sources: dict[str, SourceRecord] = {}
#: converter objects of sources registered with one (built at run time, e.g. a user's folder)
_converters: dict[str, SourceConverter] = {}
_prepared: dict[str, ConfigRecord] = {}
_builtins_loaded = False
_generation = 0


def _bump() -> None:
    global _generation
    _generation += 1


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_SOURCES:
        _add(_record_of(module))


def _record_of(module: str) -> SourceRecord:
    record = getattr(importlib.import_module(module), "RECORD", None)
    if not isinstance(record, SourceRecord):
        raise TypeError(f"{module} has no RECORD (a SourceRecord)")
    return record


def _add(record: SourceRecord, *, replace: bool = False) -> SourceRecord:
    if record.name in _sources and not replace:
        if _sources[record.name] == record:
            return record
        raise ValueError(f"a source named {record.name!r} is already registered")
    taken = {c: s for s, r in _sources.items() if s != record.name for c in r.config_names}
    clash = [c for c in record.config_names if c in taken]
    if clash:
        raise ValueError(f"source {record.name!r}: config {clash[0]!r} is already fed by source "
                         f"{taken[clash[0]]!r}")
    _sources[record.name] = record
    for c in record.config_names:
        _prepared.pop(c, None)
    _bump()
    return record


def generation() -> int:
    """A counter that changes whenever a record is registered or removed; derived views
    rebuild when it does."""
    _load_builtins()
    return _generation


# ------------------------------------------------------------------------- registration


def register_source_record(record: SourceRecord, *, replace: bool = False,
                           converter: SourceConverter | None = None) -> SourceRecord:
    """Register a source (after the built-ins, so `all` prepares it last). Its configs
    must not be fed by another source. ``replace`` swaps a source of the same name.
    ``converter``: the converter object itself, for a source whose converter is built at
    run time (a folder of the user's own, :mod:`aims.converters.custom_source`) rather
    than the ``CONVERTER`` of the module ``record.converter`` names."""
    _load_builtins()
    added = _add(record, replace=replace)
    if converter is not None:
        _converters[record.name] = converter
    else:
        _converters.pop(record.name, None)
    return added


def register_builtin(module: str) -> SourceRecord:
    """Register the ``RECORD`` of ``module``: at run time, exactly what one more line in
    :data:`BUILTIN_SOURCES` does."""
    return register_source_record(_record_of(module))


def unregister_source(name: str) -> None:
    """Forget a source registered at run time (tests, throwaway sources)."""
    _load_builtins()
    _converters.pop(name, None)
    if _sources.pop(name, None) is not None:
        _bump()


def register_prepared_config(record: ConfigRecord) -> bool:
    """Register a config known only from a prepared dataset. A config a source already
    feeds is left to that source (its record is the current one). Returns whether the
    record was added or changed."""
    _load_builtins()
    if any(record.name in r.config_names for r in _sources.values()):
        return False
    if _prepared.get(record.name) == record:
        return False
    _prepared[record.name] = record
    _bump()
    return True


def register_prepared_records(dataset_dir: str | Path) -> list[str]:
    """Register the records carried by the ``aims_config.json`` files of a prepared
    dataset folder, for configs no registered source feeds. Folders without a record
    (written before records existed) or with an unreadable one are skipped (logged).
    Returns the configs registered."""
    from aims.config_info import scan_config_infos

    added = []
    for info in scan_config_infos(dataset_dir):
        if not info.record:
            continue
        try:
            record = ConfigRecord.from_dict(info.record)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("config %s in %s carries a record AIMS cannot read (%s); it is not "
                        "registered", info.config, dataset_dir, exc)
            continue
        if record.name == info.config and register_prepared_config(record):
            added.append(record.name)
    return added


# ------------------------------------------------------------------------- lookups


def source_records() -> dict[str, SourceRecord]:
    """Every registered source, built-ins first, in registry order."""
    _load_builtins()
    return dict(_sources)


def source_record(name: str) -> SourceRecord:
    try:
        return source_records()[name]
    except KeyError:
        raise AimsError(f"unknown source {name!r}; known sources: {', '.join(source_records())}") from None


def config_records() -> dict[str, ConfigRecord]:
    """Every known config: those of the sources (registry order), then those found in
    prepared datasets."""
    out = {c.name: c for r in source_records().values() for c in r.configs}
    out.update({n: c for n, c in _prepared.items() if n not in out})
    return out


def config_record(config: str) -> ConfigRecord:
    try:
        return config_records()[config]
    except KeyError:
        raise AimsError(f"unknown AIMS config {config!r}; known configs: {', '.join(config_records())}") from None


def source_of_config(config: str) -> str | None:
    """The source that feeds ``config`` (None for a config known only from a dataset)."""
    return next((n for n, r in source_records().items() if config in r.config_names), None)


def converter(source: str) -> SourceConverter:
    """The converter object of a source (imports its module), or the one it was
    registered with."""
    record = source_record(source)
    if source in _converters:
        return _converters[source]
    return importlib.import_module(record.converter).CONVERTER


def known_configs() -> list[str]:
    """The configs `aims prepare` can build, in registry order."""
    return [c for r in source_records().values() for c in r.config_names]


def headline_configs() -> tuple[str, ...]:
    """The configs whose mIoU enters the headline mean, in registry order."""
    return tuple(n for n, c in config_records().items() if c.headline)


def group_by_source(modalities: list[str]) -> dict[str, list[str]]:
    """Map requested modalities (or ``all``) to {source: [configs]}, in source order."""
    known = known_configs()
    wanted = known if "all" in modalities else list(dict.fromkeys(modalities))
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise AimsError(
            f"unknown modality {', '.join(unknown)}; choose from {', '.join(known)} or all."
        )
    return {
        name: [c for c in record.config_names if c in wanted]
        for name, record in source_records().items()
        if any(c in wanted for c in record.config_names)
    }


#: source -> the configs it feeds, in registry order (always current)
SOURCE_CONFIGS: Mapping[str, tuple[str, ...]] = LiveMapping(
    lambda: {n: r.config_names for n, r in source_records().items()}, generation)
#: every known config, in registry order (always current)
KNOWN_CONFIG_RECORDS: Mapping[str, ConfigRecord] = LiveMapping(config_records, generation)
#: the configs of the headline mean (always current)
HEADLINE_CONFIGS: tuple[str, ...] = LiveTuple(headline_configs, generation)  # type: ignore[assignment]
