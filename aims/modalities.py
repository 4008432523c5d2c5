"""Turn a dataset row into the float tensor a model consumes.

Stored columns are lossless integer PNGs (see :mod:`aims.schema`); models want float32
``(C, H, W)`` in physical or unit-range values. The conversion lives here, once, so that
training, prediction, channel statistics (computed by the writer with these same rules) and
user code all agree.

Two registries keep new modalities to a few lines:

- :data:`COLUMNS`: how one stored column becomes float channels (``rgb`` → 3 channels in
  [0, 1]; ``depth`` → 1 channel in metres; ``hha`` → 3 channels in [0, 1]);
- :data:`MODALITIES`: which columns a modality stacks, in order, and optionally a seeded
  channel shuffle (RGB-X pseudo modalities: the model must not know which channels are RGB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aims.errors import AimsError
from aims.imageio import decode_png


def to_array(value: Any) -> np.ndarray:
    """An image cell as a numpy array, whatever form ``datasets`` handed out.

    Accepts a PIL image (decoded ``Image`` feature; 16-bit PNG is mode ``"I;16"`` →
    uint16, or ``"I"`` → int32 with the same values), an ndarray, PNG ``bytes``, or an
    undecoded ``{"bytes": ..., "path": ...}`` dict (``Image(decode=False)``).
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_png(bytes(value))
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return decode_png(value["bytes"])
        if value.get("path"):
            with open(value["path"], "rb") as fh:
                return decode_png(fh.read())
        raise ValueError("image cell has neither bytes nor path")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(value, Image.Image):
        if value.mode == "P":
            value = value.convert("RGBA" if "transparency" in value.info else "RGB")
        return np.asarray(value)
    if hasattr(value, "__array__"):
        return np.asarray(value)
    raise TypeError(f"cannot read an image from a {type(value).__name__}")


def _rgb01(value: Any) -> np.ndarray:
    arr = to_array(value)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB image, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3].transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def _depth_metres(value: Any) -> np.ndarray:
    arr = to_array(value)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"depth must be a 2-D integer image in millimetres, got {arr.dtype} {arr.shape}"
        )
    # millimetres → metres; 0 (missing) stays 0.
    return (arr.astype(np.float32) / np.float32(1000.0))[None]


@dataclass(frozen=True)
class ColumnDecoder:
    """How one stored column becomes ``(c, H, W)`` float32 channels."""

    name: str
    channels: int
    decode: Callable[[Any], np.ndarray]
    units: str


@dataclass(frozen=True)
class Modality:
    """A model input: stored columns stacked in order, optionally channel-shuffled with a
    fixed seed (same permutation for every row, every run)."""

    name: str
    columns: tuple[str, ...]
    shuffle_seed: int | None = None
    description: str = ""

    @property
    def channels(self) -> int:
        return sum(COLUMNS[c].channels for c in self.columns)

    def permutation(self) -> np.ndarray | None:
        """The channel order applied after stacking, or None (no shuffle)."""
        if self.shuffle_seed is None:
            return None
        return np.random.default_rng(self.shuffle_seed).permutation(self.channels)


COLUMNS: dict[str, ColumnDecoder] = {}
MODALITIES: dict[str, Modality] = {}


def register_column(decoder: ColumnDecoder) -> ColumnDecoder:
    """Declare how a stored column converts to float channels."""
    COLUMNS[decoder.name] = decoder
    return decoder


def register_modality(modality: Modality) -> Modality:
    """Declare a modality; its columns must already be registered."""
    missing = [c for c in modality.columns if c not in COLUMNS]
    if missing:
        raise ValueError(f"modality {modality.name!r}: unregistered columns {missing}")
    MODALITIES[modality.name] = modality
    return modality


register_column(ColumnDecoder("rgb", 3, _rgb01, "RGB / 255, in [0, 1]"))
register_column(ColumnDecoder("depth", 1, _depth_metres, "metres (uint16 mm / 1000); 0 = missing"))
register_column(ColumnDecoder("hha", 3, _rgb01, "HHA / 255, in [0, 1]"))

register_modality(Modality("rgb", ("rgb",), description="registered RGB image"))
register_modality(Modality("depth", ("depth",), description="depth in metres"))
register_modality(Modality("hha", ("hha",), description="HHA (disparity, height, angle)"))
# RGB-X pseudo modalities (SimCMF Table 3): RGB and X stacked, channels shuffled by a fixed
# seed so the model gets no hint which channels are RGB.
register_modality(Modality("rgb-depth", ("rgb", "depth"), shuffle_seed=0, description="RGB + depth, shuffled"))
register_modality(Modality("rgb-hha", ("rgb", "hha"), shuffle_seed=0, description="RGB + HHA, shuffled"))


def column_tensor(column: str, value: Any) -> np.ndarray:
    """One stored column's cell as float32 ``(c, H, W)`` (used for channel statistics)."""
    try:
        decoder = COLUMNS[column]
    except KeyError:
        raise AimsError(
            f"no tensor rule for column {column!r}; known columns: {', '.join(sorted(COLUMNS))}"
        ) from None
    return decoder.decode(value)


def modality_tensor(example: Mapping[str, Any], modality: str) -> np.ndarray:
    """The float32 ``(C, H, W)`` input of ``modality`` for one dataset row.

    ``depth``: 1 channel in metres (0 = missing stays 0); ``hha`` and ``rgb``: 3 channels
    divided by 255; ``rgb-depth``/``rgb-hha``: the stacked channels in a fixed shuffled
    order (see :meth:`Modality.permutation`).
    """
    try:
        spec = MODALITIES[modality]
    except KeyError:
        raise AimsError(
            f"unknown modality {modality!r}; known modalities: {', '.join(MODALITIES)}"
        ) from None
    parts = []
    for column in spec.columns:
        if column not in example:
            raise AimsError(
                f"modality {modality!r} needs column {column!r}, which this row does not have "
                f"(columns: {', '.join(map(str, example.keys()))}); load the config that "
                f"stores it, e.g. aims.load_dataset({column!r})"
            )
        parts.append(COLUMNS[column].decode(example[column]))
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"modality {modality!r}: columns have different sizes {sorted(shapes)}")
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    perm = spec.permutation()
    if perm is not None:
        out = out[perm]
    return np.ascontiguousarray(out, dtype=np.float32)


__all__ = [
    "COLUMNS",
    "MODALITIES",
    "ColumnDecoder",
    "Modality",
    "column_tensor",
    "modality_tensor",
    "register_column",
    "register_modality",
    "to_array",
]
