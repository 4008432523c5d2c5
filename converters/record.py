"""The declarative record of a source: every fact AIMS relies on about one dataset.

Compare MTEB's ``TaskMetadata``. A :class:`SourceRecord` says where a dataset's files
are (URL, checksum, size, manual-download text), how to cite it and under which licence,
its classes and label encoding, where its instances come from, and which benchmark
configs it feeds; a :class:`ConfigRecord` says which columns a config stores (encoding,
units and the decoder that turns them into float channels, **one** text per column),
which model inputs (:class:`ModalityRecord`) it offers, the SimCMF area filter, the
leaderboard label and whether it counts in the headline mean.

Everything else is derived from these records, never written again: the column layout
(:mod:`aims.schema`), which converter feeds which config (:mod:`aims.converters.registry`),
the tensor rules (:mod:`aims.modalities`), the SimCMF thresholds (:mod:`aims.protocols`),
the headline list (:mod:`aims.scoring`), the leaderboard's columns and labels, and the
enums of the results schema.

Records are plain data: decoders and channel combiners are named (registered in
:mod:`aims.decoders`), so a record can be written in YAML by a user ("bring your own
modality") and a config's record travels in its ``aims_config.json``
(:meth:`ConfigRecord.to_dict`), which lets a fresh process that only has the prepared
dataset register it again.

This module imports nothing of AIMS but :class:`aims.fetch.SourceFile` (the file
declaration is reused as it is), so records load without the converters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aims.fetch import SourceFile

__all__ = [
    "CONNECTED_COMPONENTS",
    "INSTANCE_SOURCE_KINDS",
    "RELEASE_INSTANCES",
    "REPACK_IDS",
    "RGB8",
    "ColumnRecord",
    "ConfigRecord",
    "InstanceSource",
    "ModalityRecord",
    "SourceFile",
    "SourceRecord",
]

#: instances the release itself annotates (e.g. RGBP-Glass's COCO polygons)
RELEASE_INSTANCES = "release"
#: connected components of each semantic class of the labels
CONNECTED_COMPONENTS = "components"
#: the instance-id maps of a repack (e.g. SimCMF's), kept as given
REPACK_IDS = "repack"
INSTANCE_SOURCE_KINDS = (RELEASE_INSTANCES, CONNECTED_COMPONENTS, REPACK_IDS)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits, '-' and '_' "
                         "(starting with a letter or digit)")


@dataclass(frozen=True)
class InstanceSource:
    """Where a split's instances come from.

    ``kind``: :data:`RELEASE_INSTANCES`, :data:`CONNECTED_COMPONENTS` or
    :data:`REPACK_IDS`. ``connectivity`` (4 or 8) is the pixel connectivity of connected
    components: required for that kind, and for the others the connectivity of the
    components fallback. ``detail`` says exactly which file or rule, for the card.
    """

    kind: str
    connectivity: int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in INSTANCE_SOURCE_KINDS:
            raise ValueError(f"instance source kind {self.kind!r} is not one of "
                             f"{', '.join(INSTANCE_SOURCE_KINDS)}")
        if self.kind == CONNECTED_COMPONENTS and self.connectivity is None:
            raise ValueError("connected components need a connectivity (4 or 8)")
        if self.connectivity not in (None, 4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``aims_config.json``."""
        return {"kind": self.kind, "connectivity": self.connectivity, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceSource:
        return cls(kind=data["kind"], connectivity=data.get("connectivity"), detail=data.get("detail", ""))


@dataclass(frozen=True)
class ColumnRecord:
    """One stored image column: how it is encoded, what its values mean (one text, used
    by the schema, the card and the docs alike), and how it becomes float channels
    (``decoder``: a name registered in :mod:`aims.decoders`; ``channels``: how many it
    gives)."""

    name: str
    encoding: str
    units: str
    decoder: str
    channels: int

    def __post_init__(self) -> None:
        _check_name("column", self.name)
        if not (isinstance(self.channels, int) and self.channels >= 1):
            raise ValueError(f"column {self.name!r}: channels must be a positive integer")

    @property
    def text(self) -> str:
        """``"encoding; units"``: the column's line in the card."""
        return f"{self.encoding}; {self.units}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "encoding": self.encoding, "units": self.units,
                "decoder": self.decoder, "channels": self.channels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnRecord:
        return cls(**{k: data[k] for k in ("name", "encoding", "units", "decoder", "channels")})


#: the registered 8-bit RGB frame most configs store (a record may declare its own ``rgb``)
RGB8 = ColumnRecord("rgb", "8-bit RGB PNG (uint8)", "registered RGB", "rgb_unit", 3)


@dataclass(frozen=True)
class ModalityRecord:
    """A model input offered by a config: stored columns stacked in order (optionally
    channel-shuffled with a fixed seed: the RGB-X pseudo modalities), or computed from
    them by a named combiner (``combine``, giving ``channels`` channels: Stokes
    parameters from four polarizer angles). ``label`` is its leaderboard column title
    ("" = not a leaderboard column)."""

    name: str
    columns: tuple[str, ...]
    description: str
    label: str = ""
    shuffle_seed: int | None = None
    combine: str | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        _check_name("modality", self.name)
        if not self.columns:
            raise ValueError(f"modality {self.name!r} stacks no column")
        if (self.combine is None) != (self.channels is None):
            raise ValueError(f"modality {self.name!r}: a combiner needs its channel count and "
                             "only a combiner has one")

    @property
    def is_rgb_x(self) -> bool:
        """An RGB-X pseudo modality: RGB and another column, channels shuffled."""
        return self.shuffle_seed is not None and "rgb" in self.columns and len(self.columns) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "columns": list(self.columns), "description": self.description,
                "label": self.label, "shuffle_seed": self.shuffle_seed, "combine": self.combine,
                "channels": self.channels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityRecord:
        return cls(name=data["name"], columns=tuple(data["columns"]), description=data.get("description", ""),
                   label=data.get("label", ""), shuffle_seed=data.get("shuffle_seed"),
                   combine=data.get("combine"), channels=data.get("channels"))


@dataclass(frozen=True)
class ConfigRecord:
    """A benchmark config: its stored columns (``rgb`` first when it has one), the model
    inputs it offers (the one named like the config is its own), card text, the SimCMF
    area filter (``None``: protocol ``simcmf`` has no rule for it) and whether it counts
    in the headline mean."""

    name: str
    description: str
    columns: tuple[ColumnRecord, ...]
    modalities: tuple[ModalityRecord, ...]
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    simcmf_area_filter: int | None = None
    headline: bool = False

    def __post_init__(self) -> None:
        _check_name("config", self.name)
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"config {self.name!r} declares a column twice: {names}")
        if "rgb" in names and names[0] != "rgb":
            raise ValueError(f"config {self.name!r}: the rgb column comes first")
        if not any(c.name != "rgb" for c in self.columns):
            raise ValueError(f"config {self.name!r} has no modality column")
        for m in self.modalities:
            unknown = [c for c in m.columns if c not in names]
            if unknown:
                raise ValueError(f"config {self.name!r}: modality {m.name!r} stacks columns "
                                 f"{unknown} the config does not store")
        if self.name not in [m.name for m in self.modalities]:
            raise ValueError(f"config {self.name!r} needs a modality of the same name (its own "
                             "model input)")

    @property
    def has_rgb(self) -> bool:
        return bool(self.columns) and self.columns[0].name == "rgb"

    @property
    def own_modality(self) -> ModalityRecord:
        """The model input named like the config."""
        return next(m for m in self.modalities if m.name == self.name)

    @property
    def label(self) -> str:
        """The leaderboard title of the config (its own modality's label, else its name)."""
        return self.own_modality.label or self.name

    def column_texts(self) -> dict[str, str]:
        """``{column: "encoding; units"}`` of every stored image column, for the card."""
        return {c.name: c.text for c in self.columns}

    def to_dict(self) -> dict[str, Any]:
        """JSON form, written into the config's ``aims_config.json``."""
        return {"name": self.name, "description": self.description,
                "columns": [c.to_dict() for c in self.columns],
                "modalities": [m.to_dict() for m in self.modalities],
                "tags": list(self.tags), "notes": list(self.notes),
                "simcmf_area_filter": self.simcmf_area_filter, "headline": self.headline}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigRecord:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``KeyError``/``TypeError`` on
        a malformed record."""
        return cls(
            name=data["name"], description=data.get("description", ""),
            columns=tuple(ColumnRecord.from_dict(c) for c in data["columns"]),
            modalities=tuple(ModalityRecord.from_dict(m) for m in data["modalities"]),
            tags=tuple(data.get("tags", ())), notes=tuple(data.get("notes", ())),
            simcmf_area_filter=data.get("simcmf_area_filter"), headline=bool(data.get("headline", False)),
        )


@dataclass(frozen=True)
class SourceRecord:
    """A public dataset: files, provenance, classes, instances and the configs it feeds.

    ``name`` is the registry key and the download cache folder; ``title`` is what the
    card calls it. ``classes`` are the class names, index = class id (0 = background or
    void); ``label_encoding`` says how the label files encode them; ``ignore_labels``
    never form instances. ``instances`` is where the release's instances come from by
    default (a listing may find another input, e.g. a repack, and says so per split).
    ``files`` are the downloads (:class:`aims.fetch.SourceFile`: URL, checksum, size,
    manual-download text); ``converter`` is the module whose ``CONVERTER`` reads the
    files.
    """

    name: str
    title: str
    homepage: str
    license: str
    citation: str
    classes: tuple[str, ...]
    label_encoding: str
    instances: InstanceSource
    configs: tuple[ConfigRecord, ...]
    converter: str
    files: tuple[SourceFile, ...] = ()
    ignore_labels: tuple[int, ...] = (0,)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _check_name("source", self.name)
        if not self.configs:
            raise ValueError(f"source {self.name!r} feeds no config")
        names = [c.name for c in self.configs]
        if len(set(names)) != len(names):
            raise ValueError(f"source {self.name!r} declares a config twice: {names}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"source {self.name!r}: classes must be at least two distinct names "
                             "(index = class id, 0 = background)")

    @property
    def config_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.configs)

    def config(self, name: str) -> ConfigRecord:
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(f"source {self.name!r} feeds no config {name!r} (it feeds "
                       f"{', '.join(self.config_names)})")

    def file(self, name: str) -> SourceFile:
        """The declared file named ``name``."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"source {self.name!r} declares no file {name!r}")
