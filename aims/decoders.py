"""Named rules that turn a stored column into float channels, and named channel combiners.

A record names its column's decoder (``ColumnRecord.decoder``) and a computed modality's
combiner (``ModalityRecord.combine``) instead of holding the function, so records stay
plain data (YAML for a user's own modality, JSON in ``aims_config.json``). Each rule is
written once, here, with what its float values mean; :mod:`aims.modalities` looks them up.

A new rule is one function and one :func:`register_decoder` call. ``exact_float32`` is the
rule of a modality a user brings (docs/bring-your-own-modality.md): its column is an AIMS
array PNG (:mod:`aims.imageio`) of any numeric dtype, and the rule gives the stored values
as float32, exactly. Records name it like any other rule, so a prepared dataset never
carries code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aims.imageio import ArrayImage, array_from_cell, decode_png

__all__ = [
    "COMBINERS",
    "DECODERS",
    "FLOAT32_EXACT_INT",
    "TEMPERATURE_OFFSET_C",
    "TEMPERATURE_STEP_C",
    "Decoder",
    "exact_float32",
    "register_combiner",
    "register_decoder",
    "to_array",
]


def to_array(value: Any) -> np.ndarray:
    """An image cell as a numpy array, whatever form ``datasets`` handed out.

    Accepts a PIL image (decoded ``Image`` feature; 16-bit PNG is mode ``"I;16"`` →
    uint16, or ``"I"`` → int32 with the same values), an ndarray, PNG ``bytes``, or an
    undecoded ``{"bytes": ..., "path": ...}`` dict (``Image(decode=False)``). An AIMS array
    PNG (a user's own modality, any numeric dtype) comes back as the ``(H, W, C)`` array it
    holds, exactly, not as its storage pixels.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, ArrayImage) or hasattr(value, "info") or isinstance(value, (bytes, bytearray,
                                                                                    memoryview, Mapping)):
        try:
            held = array_from_cell(value)
        except ValueError as exc:
            raise ValueError(f"damaged AIMS array cell: {exc}") from None
        if held is not None:
            return held
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


@dataclass(frozen=True)
class Decoder:
    """A named column rule: ``decode(cell) -> (c, H, W) float32``; ``meaning`` says what
    the float values are."""

    name: str
    decode: Callable[[Any], np.ndarray]
    meaning: str


DECODERS: dict[str, Decoder] = {}
COMBINERS: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {}


def register_decoder(name: str, decode: Callable[[Any], np.ndarray], meaning: str) -> Decoder:
    """Make a column rule available to records under ``name``."""
    if name in DECODERS and DECODERS[name].decode is not decode:
        raise ValueError(f"a decoder named {name!r} is already registered")
    DECODERS[name] = Decoder(name, decode, meaning)
    return DECODERS[name]


def register_combiner(name: str, combine: Callable[[list[np.ndarray]], np.ndarray]) -> None:
    """Make a channel combiner (decoded columns → computed channels) available to records."""
    if name in COMBINERS and COMBINERS[name] is not combine:
        raise ValueError(f"a combiner named {name!r} is already registered")
    COMBINERS[name] = combine


# --------------------------------------------------------------------------- colour columns

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


def _planar_divided(arr: np.ndarray, scale: np.float32) -> np.ndarray:
    """``(H, W, ≥3)`` integers → float32 ``(3, H, W)`` = value / ``scale``, in one pass.

    Why one pass: the planar float copy and the division used to be two full passes over
    a frame (four 1224×1024 angle columns per ZJU image). The ufunc casts each integer to
    float32 (exact) and divides in float32, so the values are bit-identical to
    ``arr.astype(np.float32) / scale``."""
    out = np.empty((3, *arr.shape[:2]), np.float32)
    np.divide(arr[:, :, :3].transpose(2, 0, 1), scale, out=out, dtype=np.float32)
    return out


def codes8_unit(value: Any) -> np.ndarray:
    """An 8-bit 3-channel column (HHA, AoLP/DoLP codes, polarizer angles) / 255."""
    arr = _colour_array(value)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB image, got dtype {arr.dtype}")
    return _planar_divided(arr, np.float32(255))


def rgb_unit(value: Any) -> np.ndarray:
    """The ``rgb`` column in [0, 1]: uint8 / 255, or uint16 / 65535 (RGBP-Glass's 16-bit RGB
    read losslessly from the PNG bytes). Decoded by Pillow, as ``datasets`` does, a 16-bit
    PNG arrives as its high byte in uint8 and gives (value >> 8) / 255, within 1/255."""
    arr = _colour_array(value)
    scale = _RGB_FULL_SCALE.get(arr.dtype)
    if scale is None:
        raise ValueError(f"expected an 8- or 16-bit RGB image, got dtype {arr.dtype}")
    return _planar_divided(arr, scale)


# --------------------------------------------------------------------------- single-channel columns


def _single_channel(value: Any) -> np.ndarray:
    arr = to_array(value)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return arr


def _divided(arr: np.ndarray, scale: np.float32) -> np.ndarray:
    """``(H, W)`` integers → float32 ``(1, H, W)`` = value / ``scale`` in one pass, the same
    bits as ``arr.astype(np.float32) / scale`` without the intermediate copy."""
    out = np.empty((1, *arr.shape), np.float32)
    np.divide(arr, scale, out=out[0], dtype=np.float32)
    return out


def millimetres_to_metres(value: Any) -> np.ndarray:
    """A 16-bit depth column in millimetres → metres; 0 (missing) stays 0."""
    arr = _single_channel(value)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"depth must be a 2-D integer image in millimetres, got {arr.dtype} {arr.shape}"
        )
    return _divided(arr, np.float32(1000.0))


def grey_unit(value: Any) -> np.ndarray:
    """A greyscale column (NIR) in [0, 1] by its bit depth: uint8 / 255, 16-bit / 65535
    (a decoded 16-bit PNG may arrive as PIL mode ``I``, i.e. int32 with 16-bit values)."""
    arr = _single_channel(value)
    if arr.ndim != 2:
        raise ValueError(f"expected a single-channel image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = np.float32(255)
    elif arr.dtype in (np.uint16, np.int32):
        scale = np.float32(65535)
    else:
        raise ValueError(f"expected an 8- or 16-bit greyscale image, got dtype {arr.dtype}")
    return _divided(arr, scale)


#: Temperature (config ``thermal``) is stored as a 16-bit PNG code with one fixed affine
#: map for every image: °C = TEMPERATURE_OFFSET_C + code * TEMPERATURE_STEP_C. The step is
#: 1/256 °C (quantisation error ≤ 1/512 ≈ 0.002 °C, finer than the 0.01 °C the source
#: reports), the range −80 … +175.996 °C. A fixed map (not per image) keeps the PNG
#: meaningful on its own, needs no extra columns, and decodes exactly in float32
#: (code / 256 has 8 fractional bits).
TEMPERATURE_OFFSET_C = -80.0
TEMPERATURE_STEP_C = 1.0 / 256.0


def temperature_code_to_celsius(value: Any) -> np.ndarray:
    """16-bit temperature code → °C as float32 ``(1, H, W)``."""
    arr = _single_channel(value)
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32):
        raise ValueError(
            f"temperature must be a 2-D 16-bit image (code), got {arr.dtype} {arr.shape}"
        )
    out = np.empty((1, *arr.shape), np.float32)
    np.multiply(arr, np.float32(TEMPERATURE_STEP_C), out=out[0], dtype=np.float32)
    out += np.float32(TEMPERATURE_OFFSET_C)  # in place: same float32 steps as code * step + offset
    return out


# --------------------------------------------------------------------------- any numeric array

#: integers up to this magnitude are exact in float32 (24-bit significand)
FLOAT32_EXACT_INT = 2**24


def exact_float32(value: Any) -> np.ndarray:
    """A column stored as an AIMS array PNG → its values as float32 ``(C, H, W)``: the
    stored float32 bit for bit (NaN payloads and -0.0 included), float16 and integers of up
    to 16 bits exactly, 32-bit integers exactly when within ±2**24 (``aims prepare`` refuses
    a source array for which that does not hold)."""
    if not (isinstance(value, ArrayImage) or hasattr(value, "info")
            or isinstance(value, (bytes, bytearray, memoryview, Mapping))):
        raise ValueError(f"expected an AIMS array PNG cell, got a {type(value).__name__}")
    arr = array_from_cell(value)
    if arr is None:
        raise ValueError("the cell is not an AIMS array PNG (it has no aims-array text); the "
                         "dataset was not written by `aims prepare` or was re-encoded")
    return np.ascontiguousarray(arr.transpose(2, 0, 1).astype(np.float32, copy=False))


# --------------------------------------------------------------------------- combiners
# Polarization from four polarizer angles (ZJU-RGBP). From the Stokes parameters
# S0 = I0 + I90, S1 = I0 - I90, S2 = I45 - I135 (I_θ = code / 255), per colour channel:
#   I    = S0 / 2                         in [0, 1]   (mean unpolarized intensity)
#   AoLP = ½·atan2(S2, S1)                radians, full range (-π/2, π/2]; 0 where S1 = S2 = 0
#   DoLP = sqrt(S1² + S2²) / S0           clipped to [0, 1] (8-bit noise can exceed 1);
#                                         0 where S0 = 0
# Channels [I_R, I_G, I_B, AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] (SimCMF's order).
# ``stokes_simcmf`` reproduces the SimCMF reference loader (ZJU_RGBP.raw2rgbp) exactly,
# before its mean/std normalisation: on the 0..255 codes, I = ½(I0+I45+I90+I135) + 1e-4
# (0..510, not divided by 255), Q = I0 - I90 with Q == 0 → 1e-4, U = I45 - I135,
# DoLP = min(sqrt(Q² + U²) / I, 1), AoLP = ½·arctan(U / Q) (range only ±π/4).


def stokes_full(parts: list[np.ndarray]) -> np.ndarray:
    """Intensity, AoLP (radians) and DoLP from the four decoded angle columns.

    Written into one preallocated ``(9, H, W)`` array with in-place ufuncs. Why: on a ZJU
    frame (3×1224×1024 per part) the plain expressions made a dozen full-size temporaries
    and the final concatenate and cast copied everything twice more, half the time of a
    DataLoader worker. Each value goes through the same float32 operations in the same
    order as ``S0/2``, ``½·atan2(S2, S1)``, ``clip(where(S0 > 0, sqrt(S1² + S2²)/S0, 0), 0, 1)``,
    so the result is bit-identical."""
    i0, i45, i90, i135 = parts
    c = i0.shape[0]
    out = np.empty((3 * c, *i0.shape[1:]), np.float32)
    intensity, aolp, dolp = out[:c], out[c:2 * c], out[2 * c:]
    s1 = np.subtract(i0, i90, dtype=np.float32)
    s2 = np.subtract(i45, i135, dtype=np.float32)
    np.arctan2(s2, s1, out=aolp)
    aolp *= np.float32(0.5)
    np.multiply(s1, s1, out=dolp)
    np.multiply(s2, s2, out=s1)  # s1 is no longer needed: S2² goes there
    dolp += s1
    np.sqrt(dolp, out=dolp)
    s0 = np.add(i0, i90, out=s2, dtype=np.float32)  # s2 is no longer needed: S0 goes there
    lit = s0 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(dolp, s0, out=dolp, where=lit)
    dolp[~lit] = 0
    np.minimum(dolp, np.float32(1), out=dolp)  # >= 0 already: the clip's upper half
    np.multiply(s0, np.float32(0.5), out=intensity)
    return out


def stokes_simcmf(parts: list[np.ndarray]) -> np.ndarray:
    """SimCMF's ``raw2rgbp`` on the four decoded angle columns (see above)."""
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


register_decoder("rgb_unit", rgb_unit, "RGB / 255 (8-bit) or / 65535 (16-bit), in [0, 1]")
register_decoder("codes8_unit", codes8_unit, "8-bit codes / 255 per channel, in [0, 1]")
register_decoder("millimetres_to_metres", millimetres_to_metres, "metres (uint16 mm / 1000); 0 = missing")
register_decoder("grey_unit", grey_unit, "value / 255 (8-bit) or / 65535 (16-bit), in [0, 1]")
register_decoder("temperature_code_to_celsius", temperature_code_to_celsius,
                 f"degrees Celsius (°C = {TEMPERATURE_OFFSET_C:g} + code / {1 / TEMPERATURE_STEP_C:g})")
register_decoder("exact_float32", exact_float32,
                 "the source values as float32, exactly (float32 bit for bit; integers exactly)")
register_combiner("stokes_full", stokes_full)
register_combiner("stokes_simcmf", stokes_simcmf)
