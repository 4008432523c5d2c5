"""Column layout of every AIMS dataset config.

One row per image. Every config shares the same skeleton (id, source, registered RGB,
instance map, per-instance aligned lists) and differs only in its modality columns, so a
config is declared by listing those columns in :data:`CONFIGS`; adding a modality is a few
lines here (plus its tensor rule in :mod:`aims.modalities`).

All images are lossless PNG ``Image`` features: multi-channel float tensors are assembled at
load time by :func:`aims.modality_tensor`, because a Hugging Face ``Image`` holds at most 4
channels and ``Array3D`` cannot hold images of varying sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

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


#: the ``rgb`` column of every config that does not say otherwise
DEFAULT_RGB_UNITS = "registered RGB, 8-bit PNG"


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


CONFIGS: dict[str, ConfigSchema] = {}


def register_config(schema: ConfigSchema) -> ConfigSchema:
    """Add a config to :data:`CONFIGS` (the order of registration is the card's order)."""
    reserved = set(LEADING_COLUMNS) | set(INSTANCE_COLUMNS)
    for col in schema.modality_columns:
        if col.name in reserved:
            raise ValueError(f"config {schema.name!r}: column {col.name!r} is reserved")
    CONFIGS[schema.name] = schema
    return schema


register_config(
    ConfigSchema(
        name="depth",
        description="Depth maps (NYUv2) with registered RGB.",
        modality_columns=(
            ModalityColumn(
                "depth",
                "16-bit greyscale PNG (uint16)",
                "depth in millimetres; 0 = missing/invalid",
            ),
        ),
        tags=("depth",),
    )
)
register_config(
    ConfigSchema(
        name="hha",
        description="HHA encoding of depth (NYUv2) with registered RGB.",
        modality_columns=(
            ModalityColumn(
                "hha",
                "8-bit RGB PNG (uint8)",
                "R = horizontal disparity, G = height above ground, "
                "B = angle between the surface normal and gravity; each scaled to 0-255",
            ),
        ),
        tags=("hha", "depth"),
    )
)

register_config(
    ConfigSchema(
        name="nir",
        description="Near-infrared scenes (IVRG-NIR) with registered RGB and region masks.",
        modality_columns=(
            ModalityColumn(
                "nir",
                "8-bit greyscale PNG (the repack's JPEG, or a content-matched nirscene1 TIFF)",
                "near-infrared intensity as recorded; tensor = value / 255",
            ),
        ),
        tags=("nir", "near-infrared"),
    )
)

#: RGBP-Glass's RGB: the release's image/<id>_rgb.tiff is 16 bits per channel (LZW TIFF),
#: kept bit for bit. Pillow (hence `datasets`' Image decoding and PGSNet's own loader) keeps
#: only the high byte of a 16-bit colour image, so the text says how to get all 16 bits.
POLARIZATION_RGB_UNITS = (
    "16-bit RGB PNG (uint16), the release's image/<id>_rgb.tiff bit for bit (16 bits per "
    "channel; an 8-bit source image would be stored 8-bit). Decoded by Pillow, as `datasets` "
    "does for `row['rgb']`, it reads as 8-bit = value >> 8 (the high byte), which is exactly "
    "what PGSNet's own Pillow loader sees; for all 16 bits read the PNG bytes "
    "(`datasets.Image(decode=False)`) with `aims.imageio.decode_png`. "
    "`aims.modality_tensor`: value / 65535 in [0, 1] (given a Pillow-decoded row: "
    "(value >> 8) / 255, within 1/255 of it)"
)

register_config(
    ConfigSchema(
        name="polarization",
        description="RGBP-Glass: RGB with trichromatic AoLP and DoLP, glass instances.",
        modality_columns=(
            ModalityColumn(
                "aolp",
                "8-bit RGB PNG (uint8)",
                "angle of linear polarization per colour channel, the release's 8-bit codes "
                "in R,G,B order (stored channel k = channel 2−k of aolp/<id>_aolp.tiff, which "
                "holds B,G,R); code → radians not published (likely [0, π) → 0..255)",
            ),
            ModalityColumn(
                "dolp",
                "8-bit RGB PNG (uint8)",
                "degree of linear polarization per colour channel, the release's 8-bit codes "
                "in R,G,B order (stored channel k = channel 2−k of dolp/<id>_dolp.tiff, which "
                "holds B,G,R); likely [0, 1] → 0..255",
            ),
        ),
        tags=("polarization",),
        rgb_units=POLARIZATION_RGB_UNITS,
    )
)
register_config(
    ConfigSchema(
        name="thermal",
        description="RGB-T Glass: registered RGB and thermal temperature, glass instances.",
        modality_columns=(
            ModalityColumn(
                "temperature",
                "16-bit greyscale PNG (uint16)",
                "degrees Celsius = -80 + code / 256 (step 1/256 °C, max error 0.002 °C)",
            ),
        ),
        tags=("thermal", "infrared"),
    )
)

#: the four polarizer angles of ZJU-RGBP, in degrees; column ``angle_<θ>`` each
ZJU_ANGLES = (0, 45, 90, 135)
register_config(
    ConfigSchema(
        name="polarization-zju",
        description="ZJU-RGBP: four polarizer-angle RGB images (0°, 45°, 90°, 135°), "
        "8 semantic classes → instances.",
        modality_columns=tuple(
            ModalityColumn(
                f"angle_{a}",
                "8-bit RGB PNG (uint8)",
                f"intensity behind a linear polarizer at {a}°, R,G,B, as recorded",
            )
            for a in ZJU_ANGLES
        ),
        tags=("polarization",),
    )
)


def get_config(config: str) -> ConfigSchema:
    """The schema of a registered config; ``KeyError`` names the known ones."""
    try:
        return CONFIGS[config]
    except KeyError:
        raise KeyError(
            f"unknown AIMS config {config!r}; known configs: {', '.join(CONFIGS)}"
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
