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


#: full-scale value of the ``rgb`` column per stored dtype: the tensor is value / full
#: scale, so an 8-bit and a 16-bit recording of the same scene give the same [0, 1] channels
_RGB_FULL_SCALE = {np.dtype(np.uint8): np.float32(255), np.dtype(np.uint16): np.float32(65535)}


def _colour_array(value: Any) -> np.ndarray:
    arr = to_array(value)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image, got shape {arr.shape}")
    return arr


def _rgb01(value: Any) -> np.ndarray:
    """An 8-bit 3-channel column (HHA, AoLP/DoLP codes, polarizer angles) / 255."""
    arr = _colour_array(value)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB image, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3].transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def _rgb_unit(value: Any) -> np.ndarray:
    """The ``rgb`` column in [0, 1]: uint8 / 255, or uint16 / 65535 (RGBP-Glass's 16-bit RGB
    read losslessly from the PNG bytes). Decoded by Pillow, as ``datasets`` does, a 16-bit
    PNG arrives as its high byte in uint8 and gives (value >> 8) / 255, within 1/255."""
    arr = _colour_array(value)
    scale = _RGB_FULL_SCALE.get(arr.dtype)
    if scale is None:
        raise ValueError(f"expected an 8- or 16-bit RGB image, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3].transpose(2, 0, 1), dtype=np.float32) / scale


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
    #: optional: computes the channels from the decoded columns instead of stacking them
    #: (e.g. Stokes parameters from four polarizer angles); ``combined_channels`` = its C
    combine: Callable[[list[np.ndarray]], np.ndarray] | None = None
    combined_channels: int | None = None

    @property
    def channels(self) -> int:
        if self.combined_channels is not None:
            return self.combined_channels
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


register_column(ColumnDecoder("rgb", 3, _rgb_unit, "RGB / 255 (8-bit) or / 65535 (16-bit), in [0, 1]"))
register_column(ColumnDecoder("depth", 1, _depth_metres, "metres (uint16 mm / 1000); 0 = missing"))
register_column(ColumnDecoder("hha", 3, _rgb01, "HHA / 255, in [0, 1]"))

register_modality(Modality("rgb", ("rgb",), description="registered RGB image"))
register_modality(Modality("depth", ("depth",), description="depth in metres"))
register_modality(Modality("hha", ("hha",), description="HHA (disparity, height, angle)"))
# RGB-X pseudo modalities (SimCMF Table 3): RGB and X stacked, channels shuffled by a fixed
# seed so the model gets no hint which channels are RGB.
register_modality(Modality("rgb-depth", ("rgb", "depth"), shuffle_seed=0, description="RGB + depth, shuffled"))
register_modality(Modality("rgb-hha", ("rgb", "hha"), shuffle_seed=0, description="RGB + HHA, shuffled"))


def _grey_unit(value: Any) -> np.ndarray:
    """A greyscale column (NIR) in [0, 1] by its bit depth: uint8 / 255, 16-bit / 65535
    (a decoded 16-bit PNG may arrive as PIL mode ``I``, i.e. int32 with 16-bit values)."""
    arr = to_array(value)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"expected a single-channel image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = np.float32(255)
    elif arr.dtype in (np.uint16, np.int32):
        scale = np.float32(65535)
    else:
        raise ValueError(f"expected an 8- or 16-bit greyscale image, got dtype {arr.dtype}")
    return (arr.astype(np.float32) / scale)[None]


register_column(ColumnDecoder("nir", 1, _grey_unit, "NIR / 255, in [0, 1]"))
register_modality(Modality("nir", ("nir",), description="near-infrared intensity in [0, 1]"))
# RGB-NIR: stacked [R, G, B, NIR] then permuted with seed 0 → stored order [B, R, G, NIR]
# (np.random.default_rng(0).permutation(4) == [2, 0, 1, 3]).
register_modality(Modality("rgb-nir", ("rgb", "nir"), shuffle_seed=0,
                           description="RGB + NIR, shuffled: channels [B, R, G, NIR]"))

#: Temperature (config ``thermal``) is stored as a 16-bit PNG code with one fixed affine
#: map for every image: °C = TEMPERATURE_OFFSET_C + code * TEMPERATURE_STEP_C. The step is
#: 1/256 °C (quantisation error ≤ 1/512 ≈ 0.002 °C, finer than the 0.01 °C the source
#: reports), the range −80 … +175.996 °C. A fixed map (not per image) keeps the PNG
#: meaningful on its own, needs no extra columns, and decodes exactly in float32
#: (code / 256 has 8 fractional bits).
TEMPERATURE_OFFSET_C = -80.0
TEMPERATURE_STEP_C = 1.0 / 256.0


def _temperature_celsius(value: Any) -> np.ndarray:
    """16-bit temperature code → °C as float32 ``(1, H, W)``."""
    arr = to_array(value)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32):
        raise ValueError(
            f"temperature must be a 2-D 16-bit image (code), got {arr.dtype} {arr.shape}"
        )
    code = arr.astype(np.float32)
    return (code * np.float32(TEMPERATURE_STEP_C) + np.float32(TEMPERATURE_OFFSET_C))[None]


# Polarization (RGBP-Glass, config ``polarization``): trichromatic AoLP and DoLP stored as
# 8-bit R,G,B codes; the release does not publish the code → radians map, so / 255. Its RGB
# is stored 16-bit (the release's bit depth) and decodes to RGB / 65535: the same [0, 1]
# intensity as every other RGB column, so the 9 channels keep their meaning.
register_column(ColumnDecoder("aolp", 3, _rgb01, "AoLP code / 255 per colour channel (R, G, B), in [0, 1]"))
register_column(ColumnDecoder("dolp", 3, _rgb01, "DoLP code / 255 per colour channel (R, G, B), in [0, 1]"))
register_modality(Modality("polarization", ("rgb", "aolp", "dolp"),
                           description="[R, G, B] / 65535 (16-bit; / 255 when 8-bit), "
                           "[AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] / 255: all in [0, 1]"))
register_column(ColumnDecoder("temperature", 1, _temperature_celsius, "degrees Celsius"))
register_modality(Modality("thermal", ("temperature",), description="temperature in degrees Celsius"))
# RGB-thermal: stacked [R, G, B, T] then permuted with seed 0 → [B, R, G, T] (like rgb-nir).
register_modality(Modality("rgb-thermal", ("rgb", "temperature"), shuffle_seed=0,
                           description="RGB + temperature (°C), shuffled: channels [B, R, G, T]"))


# Polarization from four polarizer angles (ZJU-RGBP, config ``polarization-zju``). Stored:
# the four 8-bit RGB angle images; the tensor is computed per colour channel from the
# Stokes parameters S0 = I0 + I90, S1 = I0 - I90, S2 = I45 - I135 (I_θ = code / 255):
#   I    = S0 / 2                         in [0, 1]   (mean unpolarized intensity)
#   AoLP = ½·atan2(S2, S1)                radians, full range (-π/2, π/2]; 0 where S1 = S2 = 0
#   DoLP = sqrt(S1² + S2²) / S0           clipped to [0, 1] (8-bit noise can exceed 1);
#                                         0 where S0 = 0
# Channels [I_R, I_G, I_B, AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] (SimCMF's order).
# ``polarization-zju-simcmf`` reproduces the SimCMF reference loader (ZJU_RGBP.raw2rgbp)
# exactly, before its mean/std normalisation: on the 0..255 codes, I = ½(I0+I45+I90+I135)
# + 1e-4 (0..510, not divided by 255), Q = I0 - I90 with Q == 0 → 1e-4, U = I45 - I135,
# DoLP = min(sqrt(Q² + U²) / I, 1), AoLP = ½·arctan(U / Q) (range only ±π/4).
def _stokes_full(parts: list[np.ndarray]) -> np.ndarray:
    i0, i45, i90, i135 = parts
    s0 = i0 + i90
    s1 = i0 - i90
    s2 = i45 - i135
    aolp = np.float32(0.5) * np.arctan2(s2, s1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dolp = np.where(s0 > 0, np.sqrt(s1 * s1 + s2 * s2) / s0, np.float32(0))
    dolp = np.clip(dolp, 0, 1)
    return np.concatenate([s0 * np.float32(0.5), aolp, dolp], axis=0).astype(np.float32)


def _stokes_simcmf(parts: list[np.ndarray]) -> np.ndarray:
    # back to the 0..255 codes SimCMF reads with PIL (exact: the decoders divide by 255)
    i1, i2, i3, i4 = (np.rint(p * np.float32(255)).astype(np.float32) for p in parts)
    intensity = np.float32(0.5) * (i1 + i2 + i3 + i4) + np.float32(1e-4)
    q = i1 - i3
    u = i2 - i4
    q[q == 0] = np.float32(1e-4)
    intensity[intensity == 0] = np.float32(1e-4)
    dolp = np.sqrt(np.square(q) + np.square(u)) / intensity
    dolp[dolp > 1] = 1
    aolp = np.float32(0.5) * np.arctan(u / q)
    return np.concatenate([intensity, aolp, dolp], axis=0).astype(np.float32)


for _angle in (0, 45, 90, 135):
    register_column(ColumnDecoder(f"angle_{_angle}", 3, _rgb01,
                                  f"intensity behind the {_angle}° polarizer / 255 (R, G, B), in [0, 1]"))
_ZJU_ANGLE_COLUMNS = ("angle_0", "angle_45", "angle_90", "angle_135")
register_modality(Modality(
    "polarization-zju", _ZJU_ANGLE_COLUMNS, combine=_stokes_full, combined_channels=9,
    description="[I_R, I_G, I_B, AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B]: I = (I0+I90)/2/255 "
    "in [0, 1], AoLP = ½·atan2(S2, S1) in radians (-π/2, π/2], DoLP in [0, 1]"))
register_modality(Modality(
    "polarization-zju-simcmf", _ZJU_ANGLE_COLUMNS, combine=_stokes_simcmf, combined_channels=9,
    description="SimCMF's ZJU_RGBP.raw2rgbp: I = ½(I0+I45+I90+I135)+1e-4 in 0..510, "
    "AoLP = ½·arctan(S2/S1) in [-π/4, π/4], DoLP = min(·, 1)"))


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
    divided by 255 (a 16-bit RGB column, as ``polarization`` stores it: by 65535);
    ``rgb-depth``/``rgb-hha``: the stacked channels in a fixed shuffled order (see
    :meth:`Modality.permutation`).
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
    if spec.combine is not None:
        out = spec.combine(parts)
    else:
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
