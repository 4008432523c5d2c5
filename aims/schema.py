"""Column layout of every AIMS dataset config, derived from the source records.

One row per image. Every config shares the same skeleton (id, source, registered RGB,
instance map, per-instance aligned lists) and differs only in its modality columns, which
its :class:`~aims.converters.record.ConfigRecord` declares; :data:`CONFIG_SCHEMAS` is
derived from the records and follows every record registered at run time.

All images are lossless PNG ``Image`` features: multi-channel float tensors are assembled at
load time by :func:`aims.modality_tensor`, because a Hugging Face ``Image`` holds at most 4
channels and ``Array3D`` cannot hold images of varying sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import datasets

from aims.converters import registry
from aims.converters.record import RGB8, ConfigRecord
from aims.derived import LiveMapping
from aims.errors import AimsError

# `datasets.List` appeared in datasets 4; `Sequence` is its older spelling.
_List = getattr(datasets, "List", None) or datasets.Sequence

#: Columns every config has, in order, around its modality columns.
LEADING_COLUMNS = ("image_id", "source", "rgb")
INSTANCE_COLUMNS = (
    "instances",
    "instance_ids",
    "category",
    "area",
    "bbox",
    "point",
    "point_simcmf",
)
#: names a record may not give a modality column (``rgb`` is declared like any column)
RESERVED_COLUMNS = frozenset(LEADING_COLUMNS) - {"rgb"} | frozenset(INSTANCE_COLUMNS)

#: the text of the registered 8-bit RGB column most configs store
DEFAULT_RGB_UNITS = RGB8.text


@dataclass(frozen=True)
class ModalityColumn:
    """One stored modality image column: its name, how it is encoded and its units (the
    text goes into the dataset card so users know what the integers mean)."""

    name: str
    encoding: str
    units: str


@dataclass(frozen=True)
class ConfigSchema:
    """A dataset config: its name, a one-line description and its modality columns."""

    name: str
    description: str
    modality_columns: tuple[ModalityColumn, ...]
    has_rgb: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: encoding and units of the ``rgb`` column (a source may store it at more than 8 bits)
    rgb_units: str = DEFAULT_RGB_UNITS

    @property
    def column_names(self) -> list[str]:
        """All column names in storage order."""
        lead = [c for c in LEADING_COLUMNS if c != "rgb" or self.has_rgb]
        return lead + [m.name for m in self.modality_columns] + list(INSTANCE_COLUMNS)

    def units_text(self) -> dict[str, str]:
        """``{column: "encoding; units"}`` of the image columns, for the dataset card."""
        out = {"rgb": self.rgb_units} if self.has_rgb else {}
        out.update({m.name: f"{m.encoding}; {m.units}" for m in self.modality_columns})
        return out


def schema_of(record: ConfigRecord) -> ConfigSchema:
    """The column layout a config record declares."""
    modality_columns = []
    for col in record.columns:
        if col.name == "rgb":
            continue
        if col.name in RESERVED_COLUMNS:
            raise AimsError(f"config {record.name!r}: column {col.name!r} is reserved (every config "
                            f"has it); name the modality column differently.")
        modality_columns.append(ModalityColumn(col.name, col.encoding, col.units))
    return ConfigSchema(
        name=record.name,
        description=record.description,
        modality_columns=tuple(modality_columns),
        has_rgb=record.has_rgb,
        tags=record.tags,
        rgb_units=record.columns[0].text if record.has_rgb else DEFAULT_RGB_UNITS,
    )


#: config name -> its column layout, in registry order (always current)
CONFIG_SCHEMAS: Mapping[str, ConfigSchema] = LiveMapping(
    lambda: {name: schema_of(r) for name, r in registry.config_records().items()}, registry.generation)


def get_config(config: str) -> ConfigSchema:
    """The schema of a known config; ``KeyError`` names the known ones."""
    try:
        return CONFIG_SCHEMAS[config]
    except KeyError:
        raise KeyError(
            f"unknown AIMS config {config!r}; known configs: {', '.join(CONFIG_SCHEMAS)}"
        ) from None


def config_features(config: str, category_names: list[str]) -> datasets.Features:
    """Hugging Face features of one config.

    ``category`` is a ``ClassLabel`` so the class names travel with the data (stored as
    int64 indices). Lists are aligned per instance: element *i* of ``instance_ids``,
    ``category``, ``area``, ``bbox``, ``point`` and ``point_simcmf`` describe the same
    instance, whose pixels are ``instances == instance_ids[i]``.
    """
    schema = get_config(config)
    if not category_names:
        raise ValueError(f"config {config!r}: category_names is empty")
    if len(set(category_names)) != len(category_names):
        raise ValueError(f"config {config!r}: category_names has duplicates")
    cols: dict[str, datasets.features.features.FeatureType] = {
        "image_id": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
    if schema.has_rgb:
        cols["rgb"] = datasets.Image()
    for m in schema.modality_columns:
        cols[m.name] = datasets.Image()
    int32 = datasets.Value("int32")
    cols.update(
        {
            "instances": datasets.Image(),
            "instance_ids": _List(int32),
            "category": _List(datasets.ClassLabel(names=list(category_names))),
            "area": _List(datasets.Value("int64")),
            "bbox": _List(_List(int32, length=4)),
            "point": _List(_List(int32, length=2)),
            "point_simcmf": _List(_List(int32, length=2)),
        }
    )
    return datasets.Features(cols)
