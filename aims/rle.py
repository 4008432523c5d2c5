"""COCO run-length encoding (RLE) with validation that cannot be fooled by integer overflow.

Shaped like ``pycocotools.mask``: :func:`encode` (mask → ``{"size": [h, w], "counts": str}``),
:func:`decode` (RLE → boolean mask), :func:`area`, and :func:`fr_py_objects` (the
validation ``frPyObjects`` does for an uncompressed RLE, returning the compressed form).

The format is COCO's exactly: runs over the mask in column-major order, alternating 0 and
1, starting with a (possibly empty) run of 0. The compressed string stores each count
after the third as the difference to the count two before, in 5-bit groups, least
significant first, 0x20 marking "more groups follow", each group offset by 48 into
printable ASCII (``rleToString``/``rleFrString`` in pycocotools' ``maskApi.c``).

WHY validation is its own careful step: an RLE is untrusted input that decides a score. The
old check summed the counts in int64, so counts near 2**63 could wrap around to exactly
``h*w``, pass, and then make the interval arithmetic of the scorer report a perfect IoU
for a full-image mask. Here every bound is checked before any arithmetic that could
overflow:

* ``size`` is two positive ints (never bool) with ``h*w <= MAX_PIXELS`` (and, when the
  caller knows the image, one of the accepted sizes) — checked before ``counts`` is read;
* a counts string is at most ``6 * (h*w + 1)`` characters, every value has at most as
  many 5-bit groups as a difference within ``[-h*w, h*w]`` needs, and every decoded
  difference lies in that range — so the vectorised int64 prefix sums are provably exact
  (``n * h*w < 2**63`` for ``h*w <= 2**28``);
* a counts list holds at most ``h*w + 1`` Python ints (not bool, not float), each
  ``>= 0``, and its running total (Python ints, unbounded) never exceeds ``h*w``;
* the total is compared with ``h*w`` in Python ints.

pycocotools refuses the same inputs for its own reasons (its counts are uint32); where it
is lenient (totals below ``h*w`` are zero-padded, float counts are truncated) we refuse —
``tests/test_predictions.py`` lists each case and what each library does.
"""

from __future__ import annotations

import reprlib
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

__all__ = [
    "MAX_PIXELS",
    "RleError",
    "RleSizeError",
    "area",
    "counts_to_mask",
    "counts_to_string",
    "decode",
    "encode",
    "fr_py_objects",
    "max_string_length",
    "parse_size",
    "rle_counts",
    "string_to_counts",
    "validate",
]

#: The largest mask (h*w pixels) any RLE may describe: 16384 x 16384. Far above every
#: AIMS source image, and small enough that the int64 arithmetic above is provably exact.
MAX_PIXELS = 1 << 28
#: 5-bit groups the encoder may emit for one value (60 bits: far beyond any real count).
ENCODER_MAX_GROUPS = 12


class RleError(ValueError):
    """An RLE that is malformed, inconsistent or out of bounds (the message says which)."""


class RleSizeError(RleError):
    """An RLE whose ``size`` is well formed but not one the caller accepts."""

    def __init__(self, size: tuple[int, int], accepted: Collection[tuple[int, int]]) -> None:
        self.size = size
        self.accepted = list(accepted)
        exp = " or ".join(f"{h}x{w}" for h, w in self.accepted)
        super().__init__(f"mask size {size[0]}x{size[1]} (HxW) is not the expected {exp}")


# --------------------------------------------------------------------------- encoding


def rle_counts(mask: np.ndarray) -> np.ndarray:
    """COCO run lengths of a 2-D binary mask: column-major (Fortran) order, alternating
    runs of 0 and 1, starting with a (possibly empty) run of 0. int64 array."""
    flat = np.asarray(mask).astype(bool, copy=False).ravel(order="F")
    n = flat.size
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [n]))
    counts = np.diff(bounds).astype(np.int64)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts


def counts_to_string(counts: np.ndarray) -> str:
    """COCO's compressed string of run lengths (``rleToString``), vectorised: every value
    (counts[i] - counts[i-2] for i > 2) becomes its shortest two's-complement form in 5-bit
    groups, least significant first, 0x20 marking "more groups follow", offset by 48."""
    c = np.asarray(counts, dtype=np.int64).ravel()
    if c.size == 0:
        return ""
    x = c.copy()
    if c.size > 3:
        x[3:] = c[3:] - c[1:-2]
    k = np.ones(x.size, np.int64)  # groups per value: 1 + how many widths it overflows
    for width in range(1, ENCODER_MAX_GROUPS):
        lim = 1 << (5 * width - 1)
        k += (x >= lim) | (x < -lim)
    starts = np.cumsum(k) - k
    rep = np.repeat(x, k)
    j = np.arange(rep.size, dtype=np.int64) - np.repeat(starts, k)
    chunk = (rep >> (5 * j)) & 0x1F
    more = j < np.repeat(k - 1, k)
    chars = (chunk | (more.astype(np.int64) << 5)) + 48
    return chars.astype(np.uint8).tobytes().decode("ascii")


def encode(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` of a 2-D binary mask, byte for byte what
    ``pycocotools.mask.encode`` writes (with ``counts`` decoded to ``str``)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise RleError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    h, w = m.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(rle_counts(m))}


# --------------------------------------------------------------------------- validation


def max_string_length(pixels: int) -> int:
    """The longest compressed counts string accepted for a mask of ``pixels`` pixels.
    A valid string has at most ``pixels + 1`` values of at most 6 characters each (for
    ``pixels <= MAX_PIXELS``), so this bound never refuses a valid RLE."""
    return 6 * (int(pixels) + 1)


def _groups_for(limit: int) -> int:
    """5-bit groups needed for any difference in ``[-limit, limit]``."""
    g = 1
    while (1 << (5 * g - 1)) <= limit:
        g += 1
    return g


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def parse_size(segmentation: Any) -> tuple[int, int]:
    """``(h, w)`` of an RLE object, checked: two positive ints (bool is not an int here),
    ``h*w <= MAX_PIXELS``. Reads nothing else, so it is cheap to call before the counts."""
    if not isinstance(segmentation, Mapping):
        raise RleError(f"segmentation must be an object with size and counts, got {type(segmentation).__name__}")
    size = segmentation.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        raise RleError(f"segmentation.size must be [height, width] positive integers, got {_short(size)}")
    h, w = int(size[0]), int(size[1])
    if h * w > MAX_PIXELS:
        raise RleError(f"segmentation.size {h}x{w} has {h * w} pixels, more than any mask AIMS reads "
                       f"({MAX_PIXELS}); the size must be the image's size")
    return h, w


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40


def _short(value: Any, limit: int = 80) -> str:
    """A bounded repr (a hostile value may be huge or deeply nested)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def string_to_counts(s: str | bytes, total: int | None = None) -> np.ndarray:
    """Decode a compressed counts string (``rleFrString``) for a mask of ``total`` pixels
    (default: the largest accepted, :data:`MAX_PIXELS`). Raises :class:`RleError` for a
    string longer than :func:`max_string_length`, characters outside COCO's alphabet, a
    truncated last value, a value with more 5-bit groups or a larger magnitude than a mask
    of ``total`` pixels can need, more than ``total + 1`` runs, or negative runs / runs
    longer than the mask. Every bound is checked before the prefix sums (see the module
    docstring), so nothing can wrap around."""
    limit = MAX_PIXELS if total is None else int(total)
    if not 0 <= limit <= MAX_PIXELS:
        raise RleError(f"a mask of {limit} pixels is out of range (at most {MAX_PIXELS})")
    if len(s) > max_string_length(limit):
        raise RleError(f"the counts string has {len(s)} characters; an RLE of {limit} pixels has at most "
                       f"{max_string_length(limit)}")
    if isinstance(s, str):
        try:
            raw = s.encode("ascii", "strict")
        except UnicodeEncodeError:
            raise RleError("the counts string holds non-ASCII characters (COCO's alphabet is '0'..'o')") from None
    else:
        raw = bytes(s)
    b = np.frombuffer(raw, np.uint8).astype(np.int64)
    if b.size == 0:
        return np.zeros(0, np.int64)
    bad = (b < 48) | (b > 48 + 63)
    if bad.any():
        ch = chr(raw[int(np.flatnonzero(bad)[0])])
        raise RleError(f"character {ch!r} is not in COCO's RLE alphabet ('0'..'o')")
    v = b - 48
    more = (v & 0x20) != 0
    if more[-1]:
        raise RleError("the counts string ends in the middle of a value (truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    k = ends - starts + 1
    if ends.size > limit + 1:
        raise RleError(f"the counts string holds {ends.size} runs; a mask of {limit} pixels has at most {limit + 1}")
    max_groups = _groups_for(limit)
    if (k > max_groups).any():
        raise RleError(f"a value has {int(k.max())} 5-bit groups; a run length of a mask of {limit} pixels "
                       f"needs at most {max_groups} (overflowing or corrupt RLE)")
    pos = np.arange(v.size, dtype=np.int64) - np.repeat(starts, k)
    vals = np.add.reduceat((v & 0x1F) << (5 * pos), starts)  # < 2**(5*max_groups) <= 2**35
    neg = (v[ends] & 0x10) != 0
    vals[neg] -= np.left_shift(np.int64(1), 5 * k[neg])
    if (np.abs(vals) > limit).any():
        raise RleError(f"a run length (or difference of run lengths) exceeds the mask's {limit} pixels")
    counts = vals.copy()  # |partial sums| <= (limit + 1) * limit < 2**63: exact
    counts[1::2] = np.cumsum(vals[1::2])
    counts[2::2] = np.cumsum(vals[2::2])
    if (counts < 0).any():
        raise RleError("the counts string decodes to negative run lengths")
    if (counts > limit).any():
        raise RleError(f"the counts string decodes to a run longer than the mask's {limit} pixels")
    return counts


def _list_counts(counts: list[Any], total: int) -> np.ndarray:
    """Uncompressed counts, checked element by element with Python ints."""
    if len(counts) > total + 1:
        raise RleError(f"uncompressed counts hold {len(counts)} runs; a mask of {total} pixels has at most "
                       f"{total + 1}")
    running = 0
    for i, v in enumerate(counts):
        if not _is_int(v):
            raise RleError(f"uncompressed counts must be non-negative integers; counts[{i}] is "
                           f"{_short(v)} ({type(v).__name__})")
        if v < 0:
            raise RleError(f"uncompressed counts must be non-negative integers; counts[{i}] is {int(v)}")
        running += int(v)
        if running > total:
            raise RleError(f"the first {i + 1} run lengths already cover {running} pixels, more than the "
                           f"mask's {total} (corrupt or forged RLE)")
    return np.asarray([int(v) for v in counts], np.int64)


def validate(segmentation: Any, sizes: Collection[tuple[int, int]] | None = None) -> tuple[tuple[int, int], np.ndarray]:
    """Check an RLE object (compressed ``counts`` str/bytes, or an uncompressed list of
    ints) and return ``((h, w), counts)`` with int64 counts that are each in ``[0, h*w]``
    and sum to exactly ``h*w``. ``sizes``: the accepted ``(h, w)``; another size raises
    :class:`RleSizeError` before the counts are read. Raises :class:`RleError` saying
    what is wrong."""
    h, w = parse_size(segmentation)
    if sizes is not None and (h, w) not in {(int(a), int(b)) for a, b in sizes}:
        raise RleSizeError((h, w), sizes)
    total = h * w
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        c = string_to_counts(counts, total)
    elif isinstance(counts, list):
        c = _list_counts(counts, total)
    else:
        raise RleError(f"segmentation.counts must be a string (or a list of integers), got {type(counts).__name__}")
    covered = sum(c.tolist())  # Python ints: cannot wrap
    if covered != total:
        raise RleError(f"the run lengths cover {covered} pixels but size {h}x{w} has {total} "
                       "(corrupt, truncated or forged RLE)")
    return (h, w), c


# --------------------------------------------------------------------------- decoding


def counts_to_mask(counts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean (h, w) C-contiguous mask from VALIDATED column-major run lengths."""
    h, w = size
    vals = np.zeros(counts.size, bool)
    vals[1::2] = True
    flat = np.repeat(vals, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def decode(segmentation: Mapping[str, Any], sizes: Collection[tuple[int, int]] | None = None) -> np.ndarray:
    """Boolean (h, w) mask of an RLE (validated first, see :func:`validate`)."""
    size, counts = validate(segmentation, sizes)
    return counts_to_mask(counts, size)


def area(segmentation: Mapping[str, Any]) -> int:
    """Pixels set in the mask of an RLE, without decoding it (validated first)."""
    _, counts = validate(segmentation)
    return int(sum(counts[1::2].tolist()))


def fr_py_objects(segmentation: Mapping[str, Any], h: int, w: int) -> dict[str, Any]:
    """The compressed RLE ``{"size": [h, w], "counts": str}`` of an RLE object whose size
    must be ``(h, w)`` — what ``pycocotools.mask.frPyObjects`` returns for an uncompressed
    RLE, after our full validation (it refuses what :func:`validate` refuses)."""
    size, counts = validate(segmentation, [(int(h), int(w))])
    return {"size": [size[0], size[1]], "counts": counts_to_string(counts)}
