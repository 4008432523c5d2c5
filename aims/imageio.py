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
"""

from __future__ import annotations

import os
from pathlib import Path

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
    it exactly, and silently casting would lose data.
    """
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
