"""Deterministic, lossless PNG encoding for dataset columns.

Why PNG: every modality AIMS stores (16-bit depth in millimetres, 8-bit HHA/RGB, 16-bit
instance maps) fits PNG exactly, and a Hugging Face ``Image`` column decodes PNG with
Pillow into the exact integer values (16-bit grey comes back as PIL mode ``"I;16"``).

Why OpenCV with a fixed compression level: the dataset must be byte-identical when it is
rebuilt from the same source, so the encoder and its settings are pinned here, in one place.
OpenCV's ``imencode`` writes no timestamps or text chunks, so the same array and the same
OpenCV/libpng build give the same bytes. OpenCV works in BGR order; this module takes and
returns RGB(A), like Pillow and ``datasets`` do, and does the swap itself.
"""

from __future__ import annotations

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
