"""Deterministic, lossless PNG encoding for dataset columns; lossless reading of source images.

Why PNG: every modality AIMS stores (16-bit depth in millimetres, 8-bit HHA/RGB, 16-bit
instance maps) fits PNG exactly, and a Hugging Face ``Image`` column decodes PNG with
Pillow into the exact integer values (16-bit grey comes back as PIL mode ``"I;16"``).

Why OpenCV with a fixed compression level: the dataset must be byte-identical when it is
rebuilt from the same source, so the encoder and its settings are pinned here, in one place.
OpenCV's ``imencode`` writes no timestamps or text chunks, so the same array and the same
OpenCV/libpng build give the same bytes. OpenCV works in BGR order; this module takes and
returns RGB(A), like Pillow and ``datasets`` do, and does the swap itself.

Reading source files (:func:`read_image`): Pillow decodes 16-bit *colour* PNGs and TIFFs
to 8 bits without a warning (it keeps the high byte), which silently halves the bit depth
of e.g. RGBP-Glass's 16-bit RGB. :func:`read_image` therefore asks Pillow only what the
file holds and hands 16-bit colour to OpenCV (libtiff/libpng, lossless, LZW included);
everything Pillow decodes exactly (1-bit, 8-bit, 16-bit grey, palette) stays with Pillow.

Arrays PNG cannot hold as pixels (float32, int16, two channels, …: a modality of a user's
own, docs/bring-your-own-modality.md) are stored as an **AIMS array PNG**
(:class:`ArrayImage`, :func:`encode_array`): still a lossless PNG in an ``Image`` column, so
``datasets``, the writer and the Hub treat it like any other cell, whose pixels hold the
array's bytes and whose ``tEXt`` chunk ``aims-array`` says what they are
(``{"dtype": "float32", "shape": [H, W, C]}``). :func:`array_from_cell` turns a cell back
into the exact array, whether it arrives as bytes or as the Pillow image ``datasets``
decodes (Pillow keeps ``tEXt`` chunks in ``Image.info``).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: zlib level for every PNG AIMS writes. Level 6 is libpng's default speed/size trade-off;
#: it is fixed (not left to library defaults) so output bytes do not drift.
PNG_COMPRESSION_LEVEL = 6

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(array: np.ndarray) -> bytes:
    """Encode an image array as PNG bytes, losslessly and deterministically.

    Accepted: ``(H, W)`` uint8 or uint16 grey, ``(H, W, 1)`` (treated as grey),
    ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA in uint8 or uint16. Channel order is RGB(A),
    as Pillow and ``datasets`` expect; the conversion to OpenCV's BGR happens here.
    Anything else (floats, bool, int32, 2 channels) raises ``ValueError``: PNG cannot hold
    it exactly, and silently casting would lose data. To store such an array exactly, ask
    for it: ``encode_png(ArrayImage(array))`` writes an AIMS array PNG (:func:`encode_array`).
    """
    if isinstance(array, ArrayImage):
        return encode_array(array.array)
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"encode_png takes uint8 or uint16 arrays, got dtype {arr.dtype}; convert "
            "explicitly (e.g. depth in millimetres as uint16) so no precision is lost silently"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        bgr = arr
    elif arr.ndim == 3 and arr.shape[2] == 3:
        bgr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        bgr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGBA2BGRA)
    else:
        raise ValueError(
            f"encode_png takes (H, W), (H, W, 3) or (H, W, 4) arrays, got shape {arr.shape}"
        )
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise ValueError(f"encode_png cannot encode an empty image of shape {arr.shape}")
    ok, buf = cv2.imencode(
        ".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION_LEVEL]
    )
    if not ok:  # pragma: no cover - OpenCV only fails here on invalid input, checked above
        raise RuntimeError(f"OpenCV could not encode an array of shape {arr.shape} as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to an array, the exact inverse of :func:`encode_png`.

    Grey stays ``(H, W)`` at its bit depth (uint8 or uint16); colour comes back as RGB or
    RGBA (not OpenCV's BGR). Raises ``ValueError`` for bytes that are not a PNG.
    """
    raw = bytes(data)
    if not raw.startswith(_PNG_SIGNATURE):
        raise ValueError("decode_png: the bytes are not a PNG (missing PNG signature)")
    arr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("decode_png: OpenCV could not decode the PNG (corrupt or truncated)")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _raw_mode(img: object) -> str:
    """The pixel layout in the file as Pillow's decoder names it (``"RGB;16B"`` for 16-bit
    big-endian RGB), or "" when Pillow does not say."""
    tiles = getattr(img, "tile", None) or []
    if not tiles:
        return ""
    args = tiles[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _wide_colour(img: object) -> bool:
    """True for colour images with more than 8 bits per sample, which Pillow would cut to
    8 bits when decoding."""
    return getattr(img, "mode", "") in ("RGB", "RGBA") and ";16" in _raw_mode(img)


def _decode_wide_colour(data: bytes, size: tuple[int, int], channels: int) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("OpenCV could not decode its pixel data (truncated or corrupt)")
    w, h = size
    if arr.dtype != np.uint16 or arr.shape != (h, w, channels):
        raise ValueError(
            f"its header says {w}×{h} with {channels} 16-bit channels but the pixels decode as "
            f"{arr.dtype} {arr.shape}"
        )
    code = cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA
    return cv2.cvtColor(arr, code)


def _open(path: Path) -> object:
    from PIL import Image

    try:
        return Image.open(path)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None


def _load(img: object) -> None:
    from PIL import Image

    try:
        img.load()  # type: ignore[attr-defined]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"its pixel data cannot be decoded ({exc})") from None


def open_loaded(path: str | os.PathLike) -> object:
    """The Pillow image of a file with its pixels loaded, for readers that need Pillow's
    view of it (its mode, its palette, ``convert``). Same errors as :func:`read_image`.
    16-bit colour reads as 8 bits here: take pixels from :func:`read_image`."""
    img = _open(Path(path))
    try:
        _load(img)
    except ValueError:
        img.close()  # type: ignore[attr-defined]
        raise
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an image file (PNG, TIFF, anything Pillow opens) exactly as stored.

    Returns ``(H, W)`` for grey (bool for 1-bit, uint8, uint16 for 16-bit, int32 for
    32-bit), palette indices (uint8) for palette images, and ``(H, W, 3)`` RGB or
    ``(H, W, 4)`` RGBA in uint8 or **uint16** (16-bit colour is decoded by OpenCV, because
    Pillow would drop the low byte). Raises ``FileNotFoundError`` when the file is missing
    and ``ValueError`` saying why when it is not a readable image (truncated, corrupt,
    too large for Pillow's decompression-bomb limit).
    """
    path = Path(path)
    img = _open(path)
    with img:  # type: ignore[attr-defined]
        if _wide_colour(img):
            return _decode_wide_colour(path.read_bytes(), img.size, len(img.mode))  # type: ignore[attr-defined]
        _load(img)
        return np.array(img)


# --------------------------------------------------------------------------- AIMS array PNG

#: the ``tEXt`` keyword whose text describes the array an AIMS array PNG holds
ARRAY_TEXT_KEY = "aims-array"
#: dtypes an AIMS array PNG stores (8-byte types are converted exactly, or refused, by the
#: caller: a PNG pixel holds at most 4 exact bytes through Pillow)
ARRAY_DTYPES = ("uint8", "int8", "uint16", "int16", "float16", "uint32", "int32", "float32")
#: longest description text read back (it is a few dozen bytes)
_ARRAY_TEXT_MAX = 1024
#: at most this many channels (a sanity bound on the description, not a storage limit)
ARRAY_MAX_CHANNELS = 1024


@dataclass(frozen=True)
class ArrayImage:
    """A numeric ``(H, W)`` or ``(H, W, C)`` array to be stored exactly as an AIMS array PNG.

    A converter puts it in ``Sample.images`` where a plain ndarray would have to be 8- or
    16-bit: :func:`encode_png` then writes it with :func:`encode_array`, and
    :func:`array_from_cell` gives the array back. Wrapping is the explicit request;
    :func:`encode_png` still refuses a bare float array, so nothing is stored in an
    unexpected form by mistake."""

    array: np.ndarray


def _native(dtype: np.dtype, channels: int) -> bool:
    """Arrays a PNG holds as ordinary pixels (and Pillow decodes exactly): 8-bit grey, RGB
    or RGBA, and 16-bit grey."""
    return (dtype == np.uint8 and channels in (1, 3, 4)) or (dtype == np.uint16 and channels == 1)


def array_pixels_shape(dtype: np.dtype, shape: tuple[int, int, int]) -> tuple[tuple[int, ...], np.dtype]:
    """The pixel array (shape, dtype) an AIMS array PNG of an ``(H, W, C)`` array of ``dtype``
    holds. Native arrays are the pixels themselves; any other array is stored as its
    channel planes stacked top to bottom (channel 0 first): 1-byte values as 8-bit grey
    ``(C·H, W)``, 2-byte values as 16-bit grey ``(C·H, W)`` of their bit patterns, 4-byte
    values as 8-bit RGBA ``(C·H, W, 4)`` of their little-endian bytes."""
    h, w, c = shape
    dtype = np.dtype(dtype)
    if _native(dtype, c):
        return ((h, w) if c == 1 else (h, w, c)), dtype
    if dtype.itemsize == 1:
        return (c * h, w), np.dtype(np.uint8)
    if dtype.itemsize == 2:
        return (c * h, w), np.dtype(np.uint16)
    return (c * h, w, 4), np.dtype(np.uint8)


def _check_array_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.name not in ARRAY_DTYPES:
        raise ValueError(f"an AIMS array PNG stores {', '.join(ARRAY_DTYPES)}, not {dtype}; convert "
                         "exactly first (8-byte values that are exact float32 numbers as float32)")
    return dtype


def encode_array(array: np.ndarray) -> bytes:
    """Encode a numeric ``(H, W)`` or ``(H, W, C)`` array as an AIMS array PNG: lossless
    (bit-exact, NaN payloads included) and deterministic (same array, same bytes)."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or 0 in arr.shape or arr.shape[2] > ARRAY_MAX_CHANNELS:
        raise ValueError(f"encode_array takes (H, W) or (H, W, C) arrays with 1..{ARRAY_MAX_CHANNELS} "
                         f"channels, got shape {arr.shape}")
    dtype = _check_array_dtype(arr.dtype)
    h, w, c = arr.shape
    native = dtype.newbyteorder("=")
    if _native(native, c):
        pixels = np.ascontiguousarray(arr.astype(native, copy=False))
    else:
        planes = np.ascontiguousarray(arr.transpose(2, 0, 1).astype(dtype.newbyteorder("<"), copy=False))
        if dtype.itemsize == 1:
            pixels = planes.view(np.uint8).reshape(c * h, w)
        elif dtype.itemsize == 2:
            pixels = planes.view("<u2").astype(np.uint16).reshape(c * h, w)
        else:
            pixels = planes.view(np.uint8).reshape(c * h, w, 4)
    text = json.dumps({"dtype": native.name, "shape": [h, w, c]}, separators=(",", ":"), sort_keys=True)
    return _with_text_chunk(encode_png(pixels), ARRAY_TEXT_KEY, text)


def _with_text_chunk(png: bytes, key: str, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk right after IHDR (where Pillow reads it when opening)."""
    data = key.encode("latin-1") + b"\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    ihdr_end = len(_PNG_SIGNATURE) + 8 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def png_text(data: bytes, key: str) -> str | None:
    """The text of the ``tEXt`` chunk ``key`` before the image data of PNG ``data``, or None.
    Walks chunk headers only, within the buffer (a damaged file gives None)."""
    raw = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    if bytes(raw[:pos]) != _PNG_SIGNATURE:
        return None
    prefix = key.encode("latin-1") + b"\0"
    while pos + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        if kind in (b"IDAT", b"IEND") or pos + 12 + length > len(raw):
            return None
        if kind == b"tEXt" and length <= len(prefix) + _ARRAY_TEXT_MAX:
            body = bytes(raw[pos + 8:pos + 8 + length])
            if body.startswith(prefix):
                return body[len(prefix):].decode("latin-1")
        pos += 12 + length
    return None


def _description(text: str) -> tuple[np.dtype, tuple[int, int, int]]:
    """Dtype and ``(H, W, C)`` from an ``aims-array`` text, every field checked."""
    try:
        desc = json.loads(text) if len(text) <= _ARRAY_TEXT_MAX else None
    except ValueError:
        desc = None
    if not isinstance(desc, dict) or set(desc) != {"dtype", "shape"}:
        raise ValueError(f"its {ARRAY_TEXT_KEY} text is not a description of an array")
    shape = desc["shape"]
    if (not isinstance(desc["dtype"], str) or desc["dtype"] not in ARRAY_DTYPES or not isinstance(shape, list)
            or len(shape) != 3 or not all(type(v) is int and v >= 1 for v in shape)
            or shape[2] > ARRAY_MAX_CHANNELS):
        raise ValueError(f"its {ARRAY_TEXT_KEY} text describes no storable array: {text[:200]!r}")
    return np.dtype(desc["dtype"]), (shape[0], shape[1], shape[2])


def array_from_pixels(pixels: np.ndarray, text: str) -> np.ndarray:
    """The ``(H, W, C)`` array an AIMS array PNG holds, from its decoded pixels and its
    ``aims-array`` text. Pixels of a 16-bit PNG may come as int32 (Pillow mode ``I``).
    ``ValueError`` when the pixels are not what the text describes."""
    dtype, (h, w, c) = _description(text)
    want_shape, want_dtype = array_pixels_shape(dtype, (h, w, c))
    px = np.asarray(pixels)
    if want_dtype == np.uint16 and px.dtype == np.int32 and px.size and 0 <= px.min() and px.max() <= 65535:
        px = px.astype(np.uint16)
    if px.shape != want_shape or px.dtype != want_dtype:
        raise ValueError(f"its pixels ({px.dtype} {px.shape}) are not the {want_dtype} {want_shape} "
                         f"its {ARRAY_TEXT_KEY} text ({dtype} {h}×{w}×{c}) needs")
    if _native(dtype, c):
        return px.reshape(h, w, c)
    planes = np.ascontiguousarray(px)
    if dtype.itemsize == 1:
        flat = planes.view(dtype)
    elif dtype.itemsize == 2:
        flat = planes.astype("<u2").view(dtype.newbyteorder("<"))
    else:
        flat = planes.view(dtype.newbyteorder("<"))
    return np.ascontiguousarray(flat.reshape(c, h, w).transpose(1, 2, 0).astype(dtype, copy=False))


def decode_array(data: bytes) -> np.ndarray:
    """Decode an AIMS array PNG to its ``(H, W, C)`` array, the inverse of
    :func:`encode_array`; ``ValueError`` for a PNG without an ``aims-array`` text."""
    text = png_text(bytes(data), ARRAY_TEXT_KEY)
    if text is None:
        raise ValueError(f"the PNG has no {ARRAY_TEXT_KEY} text: it is not an AIMS array PNG")
    return array_from_pixels(decode_png(data), text)


def array_from_cell(value: Any) -> np.ndarray | None:
    """The ``(H, W, C)`` array of a cell that is an AIMS array PNG, in any form a cell
    arrives in (:class:`ArrayImage`, PNG bytes, ``{"bytes": ...}``, a Pillow image as
    ``datasets`` decodes it); None for a cell that is not one (an ordinary image)."""
    if isinstance(value, ArrayImage):
        arr = np.asarray(value.array)
        return arr[:, :, None] if arr.ndim == 2 else arr
    if isinstance(value, Mapping):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        text = png_text(raw, ARRAY_TEXT_KEY)
        return None if text is None else array_from_pixels(decode_png(raw), text)
    info = getattr(value, "info", None)
    if isinstance(info, Mapping) and isinstance(info.get(ARRAY_TEXT_KEY), str):
        return array_from_pixels(np.asarray(value), info[ARRAY_TEXT_KEY])
    return None
