"""Prediction files: the three formats ``aims score`` reads, their writer and readers.

A predictions folder holds one binary mask per (config, image, instance), in ONE of three
formats (docs/predictions.md):

``rle``  COCO-style run-length encoding, one JSON file per config (any ``*.json`` at the top
         level): a list of records ``{"config", "image_id", "instance_id",
         "segmentation": {"size": [h, w], "counts": str}}``. The ecosystem's interchange
         format (pycocotools, Detectron2, SAM's own outputs); compact and diffable.
``npz``  ``<config>/<image_id>.npz`` per image: ``instance_ids`` (N,) and either ``masks``
         (N, H, W) boolean or ``masks_packed`` (N, ceil(H*W/8)) uint8 from ``np.packbits`` +
         ``shape`` (H, W). Loaded with ``allow_pickle=False``: an npz holding Python objects
         is refused, never unpickled.
``png``  ``<config>/<image_id>/<instance_id>.png`` per instance: a greyscale PNG with values
         {0, 1} or {0, 255}. Easy to produce from any language and to look at.

``aims_predictions.json`` beside them is the metadata written by :class:`PredictionWriter`
(format, the click rule the prompts followed, the number of clicks, method, model, anything
else the producer wants recorded); ``aims score`` copies it into the results. It is optional
for hand-made folders.

Interactive predictions carry K masks per instance, the masks after click 1, 2, …, K
(K ≤ :data:`MAX_CLICKS`, declared as ``"clicks": K`` in ``aims_predictions.json``; every
prediction of the folder then has exactly K): RLE records add ``"later_clicks": [rle after
click 2, …, rle after click K]``, npz files hold ``masks`` (N, K, H, W) or ``masks_packed``
(N, K, ceil(H*W/8)), png folders add ``<instance_id>_<c>.png`` for c = 2..K.

Reading is defensive, because a predictions folder is untrusted input that decides a score
and runs on the scorer's machine (docs/security.md):

* only regular files and folders are read: every entry is classified with ``lstat`` (a
  symbolic link, FIFO, device or socket is refused by name, never opened), and files are
  opened with ``O_NOFOLLOW | O_NONBLOCK`` and re-checked with ``fstat`` against a swap
  between the check and the open (:mod:`aims.untrusted`, the reader every module shares);
* sizes are checked before anything is decoded: RLE ``size`` fields, the shape and dtype
  in every npz member's ``.npy`` header (and the member's declared uncompressed size), a
  PNG's IHDR — against the image's accepted sizes and instance count when the scorer
  passes them (:class:`ExpectedImage`), else against global bounds;
* JSON files are bounded in size (relative to the dataset's instance count when scoring)
  and nesting depth (:data:`MAX_RLE_JSON_DEPTH`, :data:`MAX_META_DEPTH`), and NaN/Infinity
  are refused, each with one clear error;
* RLE counts are validated with exact integer arithmetic (:mod:`aims.rle`).

The COCO RLE codec lives in :mod:`aims.rle` (no pycocotools needed at install time; the
tests prove it byte for byte against ``pycocotools.mask``); its functions are re-exported
here under their historical names.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import reprlib
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from aims import __version__, untrusted
from aims.atomic import temporary_sibling
from aims.errors import AimsError
from aims.rle import (
    MAX_PIXELS,
    RleError,
    RleSizeError,
    counts_to_mask,
    counts_to_string,
    rle_counts,
    string_to_counts,
)
from aims.rle import decode as rle_decode
from aims.rle import encode as rle_encode
from aims.rle import validate as parse_rle

__all__ = [
    "CLICK_RULES",
    "FORMATS",
    "MAX_CLICKS",
    "META_FILE",
    "ExpectedImage",
    "ImagePredictions",
    "PngHeader",
    "PredictionFolder",
    "PredictionWriter",
    "as_binary_mask",
    "counts_to_mask",
    "counts_to_string",
    "entry_kind",
    "JsonBound",
    "open_regular",
    "parse_rle",
    "read_png_header",
    "read_predictions",
    "rle_counts",
    "rle_decode",
    "rle_encode",
    "rle_json_limit",
    "string_to_counts",
]

FORMATS = ("rle", "npz", "png")
#: Metadata file of a predictions folder (written by :class:`PredictionWriter`).
META_FILE = "aims_predictions.json"
#: The one-click prompt rules a predictor may have followed: the dataset's ``point`` column
#: (``aims``) or ``point_simcmf`` (``simcmf``), named like the protocols that use them.
CLICK_RULES = ("aims", "simcmf")
#: Most masks per instance (interactive predictions): RITM's click budget for NoC.
MAX_CLICKS = 20
#: Keys an ``.npz`` prediction file may hold.
NPZ_KEYS = {"instance_ids", "masks", "masks_packed", "shape"}

#: Bounds used when the caller knows nothing about the images (``aims show``); the scorer
#: passes tighter, per-image ones (:class:`ExpectedImage`, :func:`rle_json_limit`).
DEFAULT_MAX_JSON_BYTES = 256 << 20
MAX_META_BYTES = 1 << 20
MAX_INSTANCES_PER_IMAGE = 65535  # instance maps are uint16
MAX_DECODED_BYTES = 512 << 20  # one image's masks, decoded, without expectations
#: Per expected instance, the RLE JSON bytes allowed: a record's fields plus an RLE of a
#: mask of ``P`` pixels, which has at most ``P + 1`` runs of at most ~3 characters each in
#: either form (compressed string, or an uncompressed list written with ", " separators).
RLE_RECORD_OVERHEAD = 1024
RLE_BYTES_PER_PIXEL = 4
#: npz dtypes accepted for ``masks`` (0/1 values); ``instance_ids`` and ``shape`` are integers.
MASK_DTYPE_KINDS = "biuf"
MAX_ITEMSIZE = 8

_CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Image ids become file names in the npz and png formats: keep them portable.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------- masks


def as_binary_mask(mask: Any, what: str) -> np.ndarray:
    """A 2-D boolean view/copy of ``mask``; ``ValueError`` (naming ``what``) unless it is
    2-D and bool, or integer/float holding only 0 and 1 (NaN is not binary)."""
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"{what}: a mask must be 2-D (H, W), got shape {a.shape}")
    return _binary(a, what)


def _binary(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind in "iu":
        if a.size and (int(a.min()) < 0 or int(a.max()) > 1):
            raise ValueError(f"{what}: mask values must be 0 or 1, found {_bad_value(a)}")
        return a != 0
    if a.dtype.kind == "f":
        ok = (a == 0) | (a == 1)
        if not ok.all():
            raise ValueError(f"{what}: mask values must be 0 or 1, found {_bad_value(a)} "
                             "(threshold logits/probabilities before writing)")
        return a != 0
    raise ValueError(f"{what}: masks must be boolean or 0/1 numbers, got dtype {a.dtype}")


def _bad_value(a: np.ndarray) -> str:
    if a.dtype.kind == "f" and np.isnan(a).any():
        return "NaN"
    bad = a[(a != 0) & (a != 1)]
    return repr(bad.flat[0].item()) if bad.size else "?"


def _check_config(config: str) -> None:
    if not isinstance(config, str) or not _CONFIG_NAME.match(config):
        raise ValueError(f"config {config!r} must be an AIMS config name like 'depth' or 'polarization-zju'")


def _check_instance_id(instance_id: Any) -> int:
    if isinstance(instance_id, bool) or not isinstance(instance_id, (int, np.integer)) or not 0 < int(instance_id) < 2**31:
        raise ValueError(f"instance_id must be a positive integer, got {instance_id!r}")
    return int(instance_id)


def _click_stack(mask: Any, what: str) -> list[np.ndarray]:
    """A (H, W) mask → [mask]; a (K, H, W) stack of the masks after click 1..K → K
    boolean masks, 1 ≤ K ≤ :data:`MAX_CLICKS`; ``ValueError`` otherwise."""
    a = np.asarray(mask)
    if a.ndim == 3:
        if not 1 <= a.shape[0] <= MAX_CLICKS:
            raise ValueError(f"{what}: a stack of {a.shape[0]} masks; interactive predictions hold the masks "
                             f"after click 1..K with 1 <= K <= {MAX_CLICKS}")
        return [as_binary_mask(a[c], f"{what} (click {c + 1})") for c in range(a.shape[0])]
    return [as_binary_mask(a, what)]


# --------------------------------------------------------------------------- writer


def _meta_json(fmt: str, meta: Mapping[str, Any], counts: Mapping[str, int], click_rule: str | None = None,
               clicks: int = 1) -> str:
    doc = {
        "aims_predictions": 1,
        "format": fmt,
        "click_rule": click_rule,
        "clicks": clicks,
        "toolkit_version": __version__,
        "meta": dict(meta),
        "counts": dict(sorted(counts.items())),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


class PredictionWriter:
    """Write predictions in one of :data:`FORMATS`, atomically, for ``aims score``.

    ::

        with PredictionWriter(out_dir, fmt="rle", meta={"method": "simcmf-lora", "model": "sam-vit-b"}) as w:
            w.add("depth", image_id, instance_id, mask)   # bool / 0-1 (H, W)

    ``mask`` is the instance's binary mask at the ground truth's native resolution (for
    protocol ``simcmf`` a 256×256 mask in the reference's warped frame is accepted too), or,
    for interactive predictions, a (K, H, W) stack: the masks after click 1..K (K ≤
    :data:`MAX_CLICKS`, the same K for every instance of the writer). All instances of one
    image must have the same mask size. ``click_rule``: which click the first prompt was,
    ``"aims"`` (the dataset's ``point``) or ``"simcmf"`` (``point_simcmf``); ``aims score``
    refuses to score predictions under the other protocol unless told to. ``meta`` (JSON-serialisable; put
    ``method`` and ``model`` there) goes into ``aims_predictions.json`` and from there into
    the results. Adding the same (config, image_id, instance_id) twice raises ``ValueError``.

    Everything is written into a hidden sibling folder and renamed to ``out_dir`` by
    :meth:`close` (the end of the ``with`` block); an exception inside the block removes
    it, so ``out_dir`` never holds half a run. An existing non-empty ``out_dir`` is refused
    unless ``overwrite=True`` and it is itself a predictions folder (has
    ``aims_predictions.json``) — the writer never deletes an unrelated folder.
    """

    def __init__(
        self,
        out_dir: str | Path,
        fmt: str = "rle",
        meta: Mapping[str, Any] | None = None,
        *,
        click_rule: str | None = None,
        overwrite: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if click_rule is not None and click_rule not in CLICK_RULES:
            raise ValueError(f"click_rule must be one of {', '.join(CLICK_RULES)} or None, got {click_rule!r}")
        self.click_rule = click_rule
        self._clicks: int | None = None
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.meta = dict(meta or {})
        try:
            json.dumps(self.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta must be JSON-serialisable: {exc}") from None
        self.overwrite = overwrite
        self._check_target()
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.out_dir)
        self._tmp.mkdir()
        self._seen: set[tuple[str, str, int]] = set()
        self._sizes: dict[tuple[str, str], tuple[int, int]] = {}
        self._counts: dict[str, int] = {}
        self._rle: dict[str, list[str]] = {}
        self._pending: tuple[str, str] | None = None
        self._pending_ids: list[int] = []
        self._pending_masks: list[np.ndarray] = []
        self._closed = False

    # -- context manager
    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_target(self) -> None:
        d = self.out_dir
        if d.exists() and not d.is_dir():
            raise AimsError(f"predictions folder {d} is a file; choose a folder path.", path=d)
        if d.is_dir() and any(d.iterdir()) and not (self.overwrite and (d / META_FILE).is_file()):
            why = ("pass overwrite=True to replace it" if (d / META_FILE).is_file()
                   else "it is not a predictions folder (no aims_predictions.json), so it is never replaced")
            raise AimsError(f"predictions folder {d} already exists and is not empty; choose a new "
                            f"folder or {why}.", path=d)

    # -- adding
    def add(self, config: str, image_id: str, instance_id: int, mask: Any) -> None:
        """Record the predicted binary mask of one instance (see the class docstring)."""
        if self._closed:
            raise ValueError("PredictionWriter is closed")
        _check_config(config)
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"image_id must be a non-empty string, got {image_id!r}")
        if self.fmt != "rle" and not _SAFE_ID.match(image_id):
            raise ValueError(f"image_id {image_id!r} cannot be a file name (format {self.fmt!r} "
                             "names files after image ids); use fmt='rle'")
        iid = _check_instance_id(instance_id)
        key = (config, image_id, iid)
        if key in self._seen:
            raise ValueError(f"duplicate prediction for config {config!r}, image {image_id!r}, instance {iid}")
        stack = _click_stack(mask, f"config {config!r} image {image_id!r} instance {iid}")
        if self._clicks is None:
            self._clicks = len(stack)
        elif len(stack) != self._clicks:
            raise ValueError(f"config {config!r} image {image_id!r} instance {iid}: {len(stack)} mask(s) (clicks), "
                             f"but earlier instances had {self._clicks}; every instance carries the same number")
        m = stack[0]
        size = (int(m.shape[0]), int(m.shape[1]))
        if 0 in size:
            raise ValueError(f"config {config!r} image {image_id!r} instance {iid}: empty mask shape {size}")
        prev = self._sizes.setdefault((config, image_id), size)
        if prev != size:
            raise ValueError(f"config {config!r} image {image_id!r} instance {iid}: mask size {size} "
                             f"differs from the image's earlier masks {prev}")
        self._seen.add(key)
        self._counts[config] = self._counts.get(config, 0) + 1
        if self.fmt == "rle":
            rec: dict[str, Any] = {"config": config, "image_id": image_id, "instance_id": iid,
                                   "segmentation": rle_encode(m)}
            if len(stack) > 1:
                rec["later_clicks"] = [rle_encode(later) for later in stack[1:]]
            self._rle.setdefault(config, []).append(json.dumps(rec, ensure_ascii=False))
        elif self.fmt == "png":
            from aims.imageio import encode_png

            folder = self._tmp / config / image_id
            folder.mkdir(parents=True, exist_ok=True)
            for c, mc in enumerate(stack, start=1):
                name = f"{iid}.png" if c == 1 else f"{iid}_{c}.png"
                (folder / name).write_bytes(encode_png(mc.astype(np.uint8) * np.uint8(255)))
        else:
            if self._pending != (config, image_id):
                self._flush_npz()
                self._pending = (config, image_id)
            self._pending_ids.append(iid)
            self._pending_masks.append(np.stack([np.packbits(mc.ravel()) for mc in stack]))

    def _flush_npz(self) -> None:
        if self._pending is None:
            return
        config, image_id = self._pending
        h, w = self._sizes[(config, image_id)]
        ids = np.asarray(self._pending_ids, np.int64)
        packed = np.stack(self._pending_masks)  # (N, K, bytes)
        if packed.shape[1] == 1:
            packed = packed[:, 0]  # one click: the plain (N, bytes) layout
        path = self._tmp / config / f"{image_id}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # the image came back after another one: merge
            with np.load(path, allow_pickle=False) as old:
                ids = np.concatenate([old["instance_ids"], ids])
                packed = np.concatenate([old["masks_packed"], packed])
        np.savez_compressed(path, instance_ids=ids, masks_packed=packed, shape=np.asarray([h, w], np.int64))
        self._pending, self._pending_ids, self._pending_masks = None, [], []

    # -- finishing
    def close(self) -> Path:
        """Write the remaining files and the metadata, then move the folder into place."""
        if self._closed:
            return self.out_dir
        try:
            if self.fmt == "npz":
                self._flush_npz()
            for config, recs in self._rle.items():
                text = "[\n" + ",\n".join(recs) + "\n]\n"
                (self._tmp / f"{config}.json").write_text(text, encoding="utf-8")
            (self._tmp / META_FILE).write_text(
                _meta_json(self.fmt, self.meta, self._counts, self.click_rule, self._clicks or 1), encoding="utf-8")
            self._check_target()
            old = None
            if self.out_dir.is_dir():
                if any(self.out_dir.iterdir()):
                    old = temporary_sibling(self.out_dir)  # removable by remove_stale_temporaries
                    os.rename(self.out_dir, old)
                else:
                    self.out_dir.rmdir()
            os.rename(self._tmp, self.out_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.out_dir

    def abort(self) -> None:
        """Discard everything written so far (the target folder is left untouched)."""
        self._closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)


# --------------------------------------------------------------------------- safe files
# (aims.untrusted holds the reader; these name the predictions folder's rules)

#: the role of every file in a predictions folder, and what to do about a refused one
_ENTRY = "a file in a predictions folder"
_ENTRY_HINT = ("A predictions folder may only hold regular files and folders; put the real file there "
               "instead (docs/predictions.md).")
#: deepest nesting of the RLE JSON (a record needs 4 levels: list, record, segmentation,
#: counts; 5 with {"predictions": [...]}) and of the metadata (as deep as a results
#: document, which copies it, may nest: aims.results.MAX_DEPTH)
MAX_RLE_JSON_DEPTH = 16
MAX_META_DEPTH = 32


def entry_kind(path: str | Path) -> str:
    """``"file"`` or ``"dir"`` for a regular file or folder, judged with ``lstat`` (a link
    is never followed); :class:`AimsError` naming anything else."""
    p = Path(path)
    kind = untrusted.classify(p)
    if kind == untrusted.FILE:
        return "file"
    if kind == untrusted.DIRECTORY:
        return "dir"
    if kind == untrusted.MISSING:
        raise AimsError(f"cannot read {p}: it vanished while the predictions folder was read.", path=p)
    raise untrusted.not_regular_error(p, kind, what=_ENTRY, hint=_ENTRY_HINT)


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, never following a link
    (:func:`aims.untrusted.open_regular`: ``lstat``, ``O_NOFOLLOW | O_NONBLOCK``, then
    ``fstat`` on the descriptor)."""
    return untrusted.open_regular(path, what=_ENTRY, hint=_ENTRY_HINT)


def _file_size(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size


def _load_json(path: Path, limit: int, what: str, max_depth: int, *, bound_what: str | None = None) -> Any:
    """Parse a bounded JSON file of a predictions folder; one clear :class:`AimsError`
    for a link or other non-regular entry, a file over ``limit`` (``bound_what`` says for
    what, when that is more than ``what``), invalid UTF-8/JSON, NaN/Infinity, or nesting
    deeper than ``max_depth``."""
    data = untrusted.read_bounded(path, limit, what=bound_what or what)
    return untrusted.parse_json(data, source=path, what=what, max_depth=max_depth)


# --------------------------------------------------------------------------- PNG header


@dataclass(frozen=True)
class PngHeader:
    """The IHDR of a PNG: what it will decode to, known from its first 33 bytes."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[self.colour_type]


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
PNG_HEADER_BYTES = 33


def read_png_header(data: bytes) -> PngHeader:
    """Parse the signature and IHDR chunk (the first 33 bytes) of PNG ``data`` without
    decoding anything; ``ValueError`` saying what is wrong. WHY: a 1 KB PNG can declare
    60000×60000 pixels; its size must be judged before a decoder allocates it."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("missing PNG signature")
    if len(data) < PNG_HEADER_BYTES:
        raise ValueError("truncated before the end of its IHDR header")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise ValueError("the first chunk is not a 13-byte IHDR header")
    width, height, depth, colour, compression, filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise ValueError("its IHDR header fails its CRC (corrupt)")
    if width == 0 or height == 0 or colour not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[colour] \
            or compression != 0 or filt != 0 or interlace not in (0, 1):
        raise ValueError(f"its IHDR header is invalid ({width}x{height}, bit depth {depth}, colour type {colour})")
    return PngHeader(int(width), int(height), int(depth), int(colour), int(interlace))


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class ExpectedImage:
    """What the scorer knows about one image before reading its predictions: the mask
    sizes its protocol accepts and how many instances it has. Every loader checks the
    declared sizes (RLE ``size``, ``.npy`` headers, PNG IHDR) and counts against it
    BEFORE decoding, so a small file can never make the scorer allocate a huge array."""

    sizes: tuple[tuple[int, int], ...]
    max_instances: int
    label: str = "the image"

    @property
    def max_pixels(self) -> int:
        return max(h * w for h, w in self.sizes)


@dataclass(frozen=True)
class JsonBound:
    """The most bytes the RLE JSON files of one predictions folder may hold together, and
    why (for the error message)."""

    max_bytes: int
    why: str


def rle_json_limit(n_instances: int, max_pixels: int, what: str) -> JsonBound:
    """The JSON bound for ``n_instances`` expected masks of at most ``max_pixels`` pixels:
    1 MiB + per instance 1 KiB of record fields + 4 bytes per pixel (an RLE of P pixels
    has at most P + 1 runs of ~3 characters). Never refuses a valid complete file."""
    per = RLE_RECORD_OVERHEAD + RLE_BYTES_PER_PIXEL * (int(max_pixels) + 1)
    return JsonBound((1 << 20) + int(n_instances) * per,
                     f"for {what} ({n_instances} instance(s) of at most {max_pixels} pixels: 1 MiB + "
                     f"{RLE_RECORD_OVERHEAD} + {RLE_BYTES_PER_PIXEL}*(pixels+1) bytes per instance)")


def _size_error(where: str, size: tuple[int, int], expected: ExpectedImage, path: str | Path) -> AimsError:
    exp = " or ".join(f"{h}x{w}" for h, w in expected.sizes)
    return AimsError(f"{where}: mask size {size[0]}x{size[1]} (HxW) does not match {expected.label}: expected {exp}.",
                     path=path)


def _check_size(where: str, size: tuple[int, int], expected: ExpectedImage | None, path: str | Path) -> None:
    h, w = size
    if expected is not None:
        if (h, w) not in expected.sizes:
            raise _size_error(where, (h, w), expected, path)
    elif h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise AimsError(f"{where}: mask size {h}x{w} (HxW) is out of range (at most {MAX_PIXELS} pixels).", path=path)


def _check_count(where: str, n: int, expected: ExpectedImage | None, path: str | Path) -> None:
    top = expected.max_instances if expected is not None else MAX_INSTANCES_PER_IMAGE
    if n > top:
        of = expected.label if expected is not None else "one image"
        raise AimsError(f"{where}: holds {n} instance masks but {of} has at most {top} instance(s); refused "
                        "before decoding.", path=path)


def _max_pixels(expected: ExpectedImage | None) -> int:
    return expected.max_pixels if expected is not None else MAX_PIXELS


# --------------------------------------------------------------------------- reader


@dataclass
class ImagePredictions:
    """The predicted masks of one image, in the form they were stored.

    ``ids[i]`` is the instance id of prediction *i*, ``where[i]`` names its file (and RLE
    record) for error messages, ``sizes[i]`` its (h, w). Exactly one of ``dense`` ((N, h, w)
    boolean) and ``counts`` (validated column-major RLE counts per instance) is set: the
    mask after the first click. Interactive predictions add ``later``: the masks after
    click 2, …, K, each an :class:`ImagePredictions` of the same instances and sizes.
    """

    ids: np.ndarray
    sizes: np.ndarray
    where: list[str]
    dense: np.ndarray | None = None
    counts: list[np.ndarray] | None = None
    later: list[ImagePredictions] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def n_clicks(self) -> int:
        """K, the number of masks per instance (1 for one-click predictions)."""
        return 1 + len(self.later)

    def at_click(self, click: int) -> ImagePredictions:
        """The masks after click ``click`` (1-based)."""
        return self if click == 1 else self.later[click - 2]


@dataclass
class _RleRecord:
    instance_id: int
    segmentation: Any
    where: str
    path: Path
    later: list[Any] = field(default_factory=list)


@dataclass
class PredictionFolder:
    """An indexed predictions folder (see :func:`read_predictions`).

    ``index[config][image_id]`` is format-specific: a list of RLE records, an ``.npz`` path,
    or ``{instance_id: png path}``. :meth:`image` loads and validates one image's masks.
    """

    path: Path
    format: str
    meta: dict[str, Any]
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the one-click prompt rule the predictions declare (:data:`CLICK_RULES`), None if unsaid
    click_rule: str | None = None
    #: masks per instance (``clicks`` of ``aims_predictions.json``; 1 unless declared)
    clicks: int = 1

    @property
    def configs(self) -> list[str]:
        return sorted(self.index)

    def count(self, config: str) -> int:
        """Number of predictions for ``config`` (npz files: from their headers only)."""
        imgs = self.index.get(config, {})
        if self.format == "npz":
            return sum(_npz_count(p) for p in imgs.values())
        return sum(len(v) for v in imgs.values())

    def image(self, config: str, image_id: str, expected: ExpectedImage | None = None) -> ImagePredictions:
        """Load the predictions of one image; ``AimsError`` naming the file for corrupt,
        non-binary, duplicate or oversized data. ``expected``: the image's accepted mask
        sizes and instance count, checked before anything is decoded (global bounds
        otherwise)."""
        entry = self.index[config][image_id]
        if self.format == "rle":
            return _load_rle(entry, expected)
        if self.format == "npz":
            return _load_npz(entry, expected, self.clicks)
        return _load_png(entry, expected, self.clicks)


def read_predictions(folder: str | Path, *, json_bound: JsonBound | Callable[[], JsonBound] | None = None
                     ) -> PredictionFolder:
    """Index a predictions folder: detect its format, read the metadata, and list every
    (config, image) it covers. RLE JSON is parsed here (records are small) and duplicate
    instance predictions are refused here; npz and png contents are read per image by
    :meth:`PredictionFolder.image`.

    ``json_bound``: the most bytes the RLE JSON files may hold together (or a function
    computing it, called only for an RLE folder); default :data:`DEFAULT_MAX_JSON_BYTES`.

    Raises :class:`AimsError` for a missing or empty folder, mixed formats, unexpected
    files, anything that is not a regular file or folder (links, FIFOs, devices), JSON over
    the bound or nested too deeply, or malformed records — naming the file. Hidden
    entries (``.name``) are ignored and never opened. The folder itself may be a link (it
    is the user's own path); nothing inside it may be.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise AimsError(f"predictions folder {root} does not exist (or is not a folder).", path=root)
    meta_doc = _read_meta(root / META_FILE)
    json_files, dirs, others = [], [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.name == META_FILE:
            continue
        kind = entry_kind(p)
        if kind == "dir":
            dirs.append(p)
        elif p.suffix.lower() == ".json":
            json_files.append(p)
        else:
            others.append(p)
    if others:
        raise AimsError(
            f"unexpected file {others[0]} in the predictions folder ({len(others)} such file(s)); "
            "a predictions folder holds RLE *.json files at the top level, or <config>/<image_id>.npz, "
            "or <config>/<image_id>/<instance_id>.png (docs/predictions.md). Move other files elsewhere.",
            path=others[0],
        )
    npz_files: list[Path] = []
    png_dirs: list[Path] = []
    for d in dirs:
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            kind = entry_kind(p)
            if kind == "file" and p.suffix == ".npz":
                npz_files.append(p)
            elif kind == "dir":
                png_dirs.append(p)
            else:
                raise AimsError(
                    f"unexpected entry {p} in config folder {d}: expected <image_id>.npz files or "
                    "<image_id>/ folders of <instance_id>.png (docs/predictions.md).", path=p)
    found = {"rle": json_files, "npz": npz_files, "png": png_dirs}
    kinds = [k for k, v in found.items() if v]
    if len(kinds) > 1:
        ex = "; ".join(f"{k}: {found[k][0]}" for k in kinds)
        raise AimsError(
            f"predictions folder {root} mixes formats ({', '.join(kinds)} — e.g. {ex}). Use one "
            "format per folder; write each run into its own folder.", path=root)
    if not kinds:
        raise AimsError(
            f"predictions folder {root} is empty: no RLE *.json, <config>/<image_id>.npz or "
            "<config>/<image_id>/<instance_id>.png files found (docs/predictions.md).", path=root)
    fmt = kinds[0]
    declared = meta_doc.get("format")
    if declared is not None and declared != fmt:
        raise AimsError(f"{root / META_FILE} declares format {declared!r} but the folder holds {fmt} files; "
                        "the metadata belongs to another run.", path=root / META_FILE)
    meta = meta_doc.get("meta", {}) if isinstance(meta_doc.get("meta", {}), dict) else {}
    click_rule, clicks = _declared_clicks(meta_doc, meta, root / META_FILE)
    pf = PredictionFolder(root, fmt, dict(meta), click_rule=click_rule, clicks=clicks)
    if fmt == "rle":
        bound = json_bound() if callable(json_bound) else json_bound
        bound = bound or JsonBound(DEFAULT_MAX_JSON_BYTES, "by default")
        if clicks > 1:  # K masks per instance: K times the per-instance allowance
            bound = JsonBound((1 << 20) + (bound.max_bytes - (1 << 20)) * clicks,
                              f"{bound.why}, times {clicks} masks per instance")
        _index_rle(pf, json_files, bound)
    elif fmt == "npz":
        for p in npz_files:
            pf.index.setdefault(_config_of(p.parent), {})[p.name[: -len(".npz")]] = p
    else:
        _index_png(pf, png_dirs)
    return pf


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """The metadata document, or {} when the folder has none (hand-made folders)."""
    if not os.path.lexists(meta_path):
        return {}
    doc = _load_json(meta_path, MAX_META_BYTES, "predictions metadata", MAX_META_DEPTH)
    if not isinstance(doc, dict):
        raise AimsError(f"{meta_path} is not valid predictions metadata (not a JSON object); it must be the "
                        "JSON object written by aims.predictions.PredictionWriter.", path=meta_path)
    return doc


def _declared_clicks(doc: Mapping[str, Any], meta: Mapping[str, Any], path: Path) -> tuple[str | None, int]:
    """(click rule, clicks per instance) that the metadata declares. The click rule is
    ``click_rule`` (written by :class:`PredictionWriter`), else the producer's
    ``meta.click_rule`` or ``meta.protocol`` (what ``aims baseline predict`` wrote before
    the field existed); None when none is said. ``clicks`` is 1 unless declared."""
    rule = doc.get("click_rule")
    if rule is None:
        rule = meta.get("click_rule", meta.get("protocol"))
        if rule not in CLICK_RULES:
            rule = None
    elif rule not in CLICK_RULES:
        raise AimsError(f"{path}: click_rule {_short(rule)} is not one of {', '.join(CLICK_RULES)} (the dataset "
                        "column the first click came from: point → aims, point_simcmf → simcmf).", path=path)
    clicks = doc.get("clicks", 1)
    if clicks is None:
        clicks = 1
    if isinstance(clicks, bool) or not isinstance(clicks, int) or not 1 <= clicks <= MAX_CLICKS:
        raise AimsError(f"{path}: clicks {_short(clicks)} must be an integer from 1 to {MAX_CLICKS} (the masks "
                        "each instance carries, after click 1..K).", path=path)
    return rule, clicks


def _config_of(d: Path) -> str:
    if not _CONFIG_NAME.match(d.name):
        raise AimsError(f"folder {d} is not named after an AIMS config (lower-case letters, digits, "
                        "'-' and '_').", path=d)
    return d.name


def _index_rle(pf: PredictionFolder, files: list[Path], bound: JsonBound) -> None:
    seen: dict[tuple[str, str, int], str] = {}
    what = f"the RLE JSON files of one predictions folder together {bound.why}"
    sizes = {p: os.lstat(p).st_size for p in files}
    total = sum(sizes.values())
    if total > bound.max_bytes:
        largest = max(sizes, key=sizes.get)
        raise AimsError(f"{largest} is {sizes[largest]} bytes ({total} bytes in all RLE JSON files of {pf.path}), "
                        f"more than the {bound.max_bytes} bytes allowed for {what}; refused before reading it.",
                        path=largest)
    for path in files:
        data = _load_json(path, bound.max_bytes, "an RLE predictions file", MAX_RLE_JSON_DEPTH, bound_what=what)
        if isinstance(data, dict) and isinstance(data.get("predictions"), list):
            data = data["predictions"]
        if not isinstance(data, list):
            raise AimsError(f"RLE predictions file {path} must hold a JSON list of records, found "
                            f"{type(data).__name__}.", path=path)
        for k, rec in enumerate(data):
            where = f"{path} record {k}"
            _index_record(pf, seen, rec, where, path)


def _index_record(pf: PredictionFolder, seen: dict[tuple[str, str, int], str], rec: Any, where: str,
                  path: Path) -> None:
    if not isinstance(rec, dict):
        raise AimsError(f"{where}: expected an object, found {type(rec).__name__}.", path=path)
    missing = [f for f in ("config", "image_id", "instance_id", "segmentation") if f not in rec]
    if missing:
        raise AimsError(f"{where}: missing field(s) {', '.join(missing)}; a record is "
                        '{"config", "image_id", "instance_id", "segmentation": {"size": [h, w], "counts": str}}.',
                        path=path)
    config, image_id, iid = rec["config"], rec["image_id"], rec["instance_id"]
    if not isinstance(config, str) or not _CONFIG_NAME.match(config):
        raise AimsError(f"{where}: config {_short(config)} is not an AIMS config name.", path=path)
    if not isinstance(image_id, str) or not image_id:
        raise AimsError(f"{where}: image_id must be a non-empty string, found {_short(image_id)}.", path=path)
    if isinstance(iid, bool) or not isinstance(iid, int) or not 0 < iid < 2**31:
        raise AimsError(f"{where}: instance_id must be a positive integer, found {_short(iid)}.", path=path)
    key = (config, image_id, iid)
    if key in seen:
        raise AimsError(f"duplicate prediction for config {config!r}, image {image_id!r}, instance "
                        f"{iid}: {seen[key]} and {where}. Keep one mask per instance.", path=path)
    seen[key] = where
    later = rec.get("later_clicks", [])
    if not isinstance(later, list) or len(later) != pf.clicks - 1:
        n = len(later) if isinstance(later, list) else _short(later)
        raise AimsError(f"{where}: later_clicks holds {n} mask(s), but {META_FILE} declares {pf.clicks} click(s) per "
                        f"instance, so it must be a list of {pf.clicks - 1} RLE mask(s) (after click 2..K). Declare "
                        f'"clicks": K in {META_FILE} for interactive predictions.', path=path)
    pf.index.setdefault(config, {}).setdefault(image_id, []).append(
        _RleRecord(iid, rec["segmentation"], where, path, later))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40


def _short(value: Any, limit: int = 60) -> str:
    """A bounded repr for messages: a hostile value may be a huge or deeply nested
    structure, so the plain ``repr`` could be gigabytes or recurse too deep."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


_PNG_STEM = re.compile(r"^([0-9]{1,10})(?:_([0-9]{1,2}))?$")


def _index_png(pf: PredictionFolder, dirs: list[Path]) -> None:
    """``index[config][image_id] = {instance_id: [png after click 1, …, click K]}``, K =
    ``pf.clicks``: ``<id>.png`` is click 1, ``<id>_<c>.png`` click c (2 ≤ c ≤ K). Names
    only (nothing is opened here); gaps, extra clicks and duplicates are refused."""
    for d in dirs:
        config = _config_of(d.parent)
        clicks: dict[int, dict[int, Path]] = {}
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            kind = entry_kind(p)
            m = _PNG_STEM.match(p.stem) if p.suffix == ".png" and p.stem.isascii() else None
            if not (kind == "file" and m):
                raise AimsError(f"unexpected entry {p}: the png format holds <config>/<image_id>/"
                                "<instance_id>.png files (instance id in decimal), and <instance_id>_<c>.png for "
                                "the mask after click c of interactive predictions.", path=p)
            iid, c = int(m.group(1)), int(m.group(2) or 1)
            if iid <= 0:
                raise AimsError(f"{p}: instance ids start at 1.", path=p)
            if m.group(2) is not None and not 2 <= c <= pf.clicks:
                raise AimsError(f"{p}: the mask after click {c}, but {META_FILE} declares {pf.clicks} click(s) per "
                                f"instance (files <id>_2.png … <id>_{pf.clicks}.png; <id>.png is click 1).", path=p)
            per = clicks.setdefault(iid, {})
            if c in per:
                raise AimsError(f"duplicate prediction for config {config!r}, image {d.name!r}, instance "
                                f"{iid}: {per[c]} and {p}.", path=p)
            per[c] = p
        entry: dict[int, list[Path]] = {}
        for iid, per in clicks.items():
            absent = [c for c in range(1, pf.clicks + 1) if c not in per]
            if absent:
                name = f"{iid}.png" if absent[0] == 1 else f"{iid}_{absent[0]}.png"
                raise AimsError(f"{d}: instance {iid} has no mask after click {absent[0]} ({name}); with "
                                f"{pf.clicks} click(s) declared in {META_FILE} every instance has all of them.",
                                path=d)
            entry[iid] = [per[c] for c in range(1, pf.clicks + 1)]
        pf.index.setdefault(config, {})[d.name] = entry


# --------------------------------------------------------------------------- RLE


def _load_rle(records: list[_RleRecord], expected: ExpectedImage | None) -> ImagePredictions:
    if records:
        _check_count(str(records[0].path), len(records), expected, records[0].path)
    ids, sizes, counts, where = [], [], [], []
    n_later = len(records[0].later) if records else 0
    later_counts: list[list[np.ndarray]] = [[] for _ in range(n_later)]
    accepted = expected.sizes if expected is not None else None
    for r in records:
        size, c = _parse_record_rle(r, r.segmentation, accepted, expected, r.where)
        for k, seg in enumerate(r.later):
            where_k = f"{r.where} (later_clicks[{k}], the mask after click {k + 2})"
            size_k, c_k = _parse_record_rle(r, seg, accepted, expected, where_k)
            if size_k != size:
                raise AimsError(f"{where_k}: size {size_k[0]}x{size_k[1]} differs from the instance's first mask "
                                f"{size[0]}x{size[1]}; every click's mask has the same size.", path=r.path)
            later_counts[k].append(c_k)
        ids.append(r.instance_id)
        sizes.append(size)
        counts.append(c)
        where.append(r.where)
    id_arr = np.asarray(ids, np.int64)
    size_arr = np.asarray(sizes, np.int64).reshape(-1, 2)
    later = [ImagePredictions(id_arr, size_arr, [f"{w} (click {k + 2})" for w in where], counts=lc)
             for k, lc in enumerate(later_counts)]
    return ImagePredictions(id_arr, size_arr, where, counts=counts, later=later)


def _parse_record_rle(r: _RleRecord, seg: Any, accepted: Any, expected: ExpectedImage | None,
                      where: str) -> tuple[tuple[int, int], np.ndarray]:
    try:
        return parse_rle(seg, accepted)
    except RleSizeError as exc:
        raise _size_error(where, exc.size, expected, r.path) from None
    except RleError as exc:
        raise AimsError(f"{where}: corrupt RLE segmentation: {exc}.", path=r.path) from None


# --------------------------------------------------------------------------- npz


@dataclass(frozen=True)
class _NpyMember:
    """One ``.npy`` member of an npz, known from its header (nothing decoded yet)."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def name(self) -> str:
        return self.info.filename[: -len(".npy")]


def _npz_error(path: Path, exc: BaseException) -> AimsError:
    return AimsError(f"{path} is not a readable npz file (corrupt or truncated: {exc}).", path=path)


MAX_NPZ_MEMBERS = 8
MAX_ZIP_DIRECTORY = 1 << 16
_EOCD = b"PK\x05\x06"


def _check_zip_directory(fh: BinaryIO, path: Path, size: int) -> None:
    """Read the zip's end-of-central-directory record (and its zip64 twin) before
    ``zipfile`` parses the directory: at most :data:`MAX_NPZ_MEMBERS` entries in at most
    64 KiB. WHY: ``zipfile`` builds an object per listed entry first, and a small file can
    list hundreds of thousands. A file without the record is left to ``zipfile`` to refuse."""
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos >= 0 and len(tail) - pos >= 22:
        entries, cd_size = struct.unpack("<HI", tail[pos + 10 : pos + 16])
        locator = tail[pos - 20 : pos] if pos >= 20 else b""
        if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and locator[:4] == b"PK\x06\x07":
            (offset,) = struct.unpack("<Q", locator[8:16])
            fh.seek(offset)
            record = fh.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", record[32:48])
        if entries > MAX_NPZ_MEMBERS or cd_size > MAX_ZIP_DIRECTORY:
            raise AimsError(f"{path}: the archive lists {entries} member(s) in a {cd_size}-byte directory; an npz "
                            f"prediction holds at most {len(NPZ_KEYS)} arrays. Refused before reading it.", path=path)
    fh.seek(0)


@contextlib.contextmanager
def _open_npz(path: Path, max_bytes: int) -> Iterator[zipfile.ZipFile]:
    """The zip archive of a regular ``.npz`` file of at most ``max_bytes``; clear errors
    for a plain ``.npy`` renamed to ``.npz`` and for anything that is not a zip."""
    with untrusted.open_regular(path, what="an npz prediction of this image", limit=max_bytes) as fh:
        size = _file_size(fh)
        _check_zip_directory(fh, path, size)
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            fh.seek(0)
            if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise AimsError(
                    f"{path} is a single .npy array renamed to .npz, not an npz archive of named arrays; "
                    "save predictions with np.savez(path, instance_ids=..., masks=...) (docs/predictions.md).",
                    path=path) from None
            raise _npz_error(path, exc) from None
        with zf:
            yield zf


def _npz_members(zf: zipfile.ZipFile, path: Path) -> dict[str, _NpyMember]:
    """Every member's ``.npy`` header, checked: known names only, no duplicates, no
    object (pickled) dtype, format version 1.0/2.0, and a declared uncompressed size that
    is exactly what the header's shape and dtype need (so the shape bounds the data)."""
    infos = zf.infolist()
    names = [i.filename for i in infos]
    unknown = sorted({n for n in names if not (n.endswith(".npy") and n[:-4] in NPZ_KEYS)})
    if unknown:
        raise AimsError(f"{path}: unexpected array(s) {', '.join(_short(n, 40) for n in unknown[:5])}; an npz "
                        "prediction holds instance_ids and masks (or masks_packed + shape).", path=path)
    if len(set(names)) != len(names):
        raise AimsError(f"{path}: the archive holds the same array twice; refused (crafted or corrupt).", path=path)
    members = {}
    for info in infos:
        m = _npy_header(zf, info, path)
        members[m.name] = m
    return members


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> _NpyMember:
    from numpy.lib import format as npy

    name = info.filename[:-4]
    try:
        with zf.open(info) as fp:
            version = npy.read_magic(fp)
            if version == (1, 0):
                shape, _fortran, dtype = npy.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _fortran, dtype = npy.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} (save with numpy's default 1.0)")
            offset = fp.tell()
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise _npz_error(path, exc) from None
    if dtype.hasobject:
        raise AimsError(f"{path} holds pickled Python objects (array {name} has dtype {dtype}); refused, never "
                        "unpickled (npz predictions are read with allow_pickle=False). Store plain "
                        "numeric/boolean arrays.", path=path)
    need = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: exact
    if info.file_size != need:
        raise AimsError(f"{path}: array {name} declares {info.file_size} bytes uncompressed, but its .npy header "
                        f"({dtype} {tuple(shape)}) needs exactly {need}; refused (corrupt or crafted archive).",
                        path=path)
    return _NpyMember(info, tuple(int(s) for s in shape), dtype)


def _read_member(zf: zipfile.ZipFile, m: _NpyMember, path: Path) -> np.ndarray:
    """Decode one member whose header was checked (streamed; memory = the array)."""
    from numpy.lib import format as npy

    try:
        with zf.open(m.info) as fp:
            return npy.read_array(fp, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise _npz_error(path, exc) from None


def _npz_file_bound(expected: ExpectedImage | None, clicks: int = 1) -> int:
    if expected is None:
        return clicks * MAX_DECODED_BYTES + (1 << 20)
    return clicks * expected.max_instances * expected.max_pixels * MAX_ITEMSIZE + (1 << 20)


def _npz_count(path: Path) -> int:
    with _open_npz(path, _npz_file_bound(None)) as zf:
        members = _npz_members(zf, path)
    ids = members.get("instance_ids")
    return ids.shape[0] if ids is not None and len(ids.shape) == 1 else 0


def _load_npz(path: Path, expected: ExpectedImage | None, clicks: int = 1) -> ImagePredictions:
    with _open_npz(path, _npz_file_bound(expected, clicks)) as zf:
        members = _npz_members(zf, path)
        keys = set(members)
        if "instance_ids" not in keys or not ({"masks"} <= keys or {"masks_packed", "shape"} <= keys):
            raise AimsError(f"{path}: needs instance_ids and masks (N, H, W), or instance_ids, "
                            f"masks_packed and shape; found {', '.join(sorted(keys)) or 'nothing'}.", path=path)
        n = _check_ids_header(members["instance_ids"], path, expected)
        ids = _read_member(zf, members["instance_ids"], path)
        if "masks" in keys:
            dense = _read_dense(zf, members["masks"], n, path, expected, clicks)
        else:
            dense = _read_packed(zf, members["masks_packed"], members["shape"], n, path, expected, clicks)
    if ids.size and (ids.min() <= 0):
        raise AimsError(f"{path}: instance ids start at 1, found {int(ids.min())}.", path=path)
    uniq, cnt = np.unique(ids, return_counts=True)
    if (cnt > 1).any():
        raise AimsError(f"{path}: duplicate prediction for instance {int(uniq[cnt > 1][0])} "
                        "(instance_ids repeats it).", path=path)
    where = [f"{path} (instance {int(i)})" for i in ids]
    sizes = np.tile(np.asarray(dense.shape[-2:], np.int64), (n, 1))
    ids = ids.astype(np.int64)
    if clicks == 1:
        return ImagePredictions(ids, sizes, where, dense=dense)
    later = [ImagePredictions(ids, sizes, [f"{w} (click {c + 1})" for w in where], dense=dense[:, c])
             for c in range(1, clicks)]
    return ImagePredictions(ids, sizes, where, dense=dense[:, 0], later=later)


def _check_ids_header(m: _NpyMember, path: Path, expected: ExpectedImage | None) -> int:
    if len(m.shape) != 1 or m.dtype.kind not in "iu" or m.dtype.itemsize > MAX_ITEMSIZE:
        raise AimsError(f"{path}: instance_ids must be a 1-D integer array, found {m.dtype} {m.shape}.", path=path)
    _check_count(str(path), m.shape[0], expected, path)
    return m.shape[0]


def _clicks_layout(clicks: int, n: int, tail: str) -> tuple[str, int]:
    """The expected leading dimensions of a masks array, for messages and checks."""
    return (f"(N, {tail})", 1) if clicks == 1 else (f"(N, K, {tail}) with K = {clicks} clicks", 2)


def _read_dense(zf: zipfile.ZipFile, m: _NpyMember, n: int, path: Path,
                expected: ExpectedImage | None, clicks: int = 1) -> np.ndarray:
    layout, lead = _clicks_layout(clicks, n, "H, W")
    if len(m.shape) != lead + 2 or m.shape[0] != n or (clicks > 1 and m.shape[1] != clicks):
        raise AimsError(f"{path}: masks must have shape {layout} and N = {n} instance ids, found "
                        f"{m.shape}.", path=path)
    if m.dtype.kind not in MASK_DTYPE_KINDS or m.dtype.itemsize > MAX_ITEMSIZE:
        raise AimsError(f"{path}: masks must be boolean, integer or float 0/1 values (bool or uint8 "
                        f"recommended), found dtype {m.dtype}.", path=path)
    _check_size(str(path), (m.shape[-2], m.shape[-1]), expected, path)
    if expected is None and clicks * n * m.shape[-2] * m.shape[-1] * m.dtype.itemsize > clicks * MAX_DECODED_BYTES:
        raise AimsError(f"{path}: masks {m.dtype} {m.shape} would take more than {MAX_DECODED_BYTES} bytes "
                        "decoded; refused.", path=path)
    masks = _read_member(zf, m, path)
    try:
        return _binary(masks, str(path))
    except ValueError as exc:
        raise AimsError(str(exc), path=path) from None


def _read_packed(zf: zipfile.ZipFile, packed_m: _NpyMember, shape_m: _NpyMember, n: int, path: Path,
                 expected: ExpectedImage | None, clicks: int = 1) -> np.ndarray:
    if shape_m.shape != (2,) or shape_m.dtype.kind not in "iu" or shape_m.dtype.itemsize > MAX_ITEMSIZE:
        raise AimsError(f"{path}: shape must be [H, W] positive integers, found {shape_m.dtype} {shape_m.shape}.",
                        path=path)
    shape = _read_member(zf, shape_m, path)
    if (shape <= 0).any():
        raise AimsError(f"{path}: shape must be [H, W] positive integers, found {shape.tolist()}.", path=path)
    h, w = int(shape[0]), int(shape[1])
    _check_size(str(path), (h, w), expected, path)
    nbytes = (h * w + 7) // 8
    want = (n, nbytes) if clicks == 1 else (n, clicks, nbytes)
    if packed_m.dtype != np.uint8 or packed_m.shape != want:
        layout = "(N, ceil(H*W/8))" if clicks == 1 else f"(N, K, ceil(H*W/8)) with K = {clicks} clicks"
        raise AimsError(f"{path}: masks_packed must be uint8 of shape {layout} = {want} "
                        f"from np.packbits, found {packed_m.dtype} {packed_m.shape}.", path=path)
    packed = _read_member(zf, packed_m, path)
    return np.unpackbits(packed, axis=-1, count=h * w).reshape(*want[:-1], h, w).view(bool)


# --------------------------------------------------------------------------- png


def _png_file_bound(expected: ExpectedImage | None) -> int:
    """Bytes a PNG mask may have: 4x its raw 16-bit scan lines (stored deflate and small
    IDAT chunks included) + 1 MiB."""
    if expected is None:
        return MAX_DECODED_BYTES + (1 << 20)
    return 4 * max(h * (2 * w + 1) for h, w in expected.sizes) + (1 << 20)


def _read_png_mask(p: Path, expected: ExpectedImage | None) -> np.ndarray:
    from aims.imageio import decode_png

    limit = _png_file_bound(expected)
    with untrusted.open_regular(p, what="a PNG mask of this image", limit=limit) as fh:
        head = fh.read(PNG_HEADER_BYTES)
        try:
            hdr = read_png_header(head)
        except ValueError as exc:
            raise AimsError(f"{p} is not a readable PNG ({exc}).", path=p) from None
        if hdr.channels != 1:
            raise AimsError(f"{p}: expected a single-channel (greyscale) PNG mask, found PNG colour type "
                            f"{hdr.colour_type} ({hdr.channels} channels); save it as 8-bit greyscale ('L').",
                            path=p)
        _check_size(str(p), (hdr.height, hdr.width), expected, p)
        data = head + fh.read(limit)
    try:
        a = decode_png(data)
    except ValueError as exc:
        raise AimsError(f"{p} is not a readable PNG ({exc}).", path=p) from None
    if a.shape != (hdr.height, hdr.width):
        raise AimsError(f"{p}: expected a single-channel (greyscale) PNG mask of {hdr.height}x{hdr.width} (its "
                        f"header), decoded shape {a.shape}.", path=p)
    return a


def _load_png(entry: Mapping[int, list[Path]], expected: ExpectedImage | None, clicks: int = 1) -> ImagePredictions:
    ids = sorted(entry)
    if ids:
        _check_count(str(entry[ids[0]][0].parent), len(ids), expected, entry[ids[0]][0].parent)
    per_click = [_load_png_click({iid: entry[iid][c] for iid in ids}, expected) for c in range(clicks)]
    first = per_click[0]
    for c, later in enumerate(per_click[1:], start=2):
        for k, iid in enumerate(ids):
            if tuple(later.sizes[k]) != tuple(first.sizes[k]):
                raise AimsError(f"{entry[iid][c - 1]}: size {later.sizes[k][0]}x{later.sizes[k][1]} differs from "
                                f"the instance's first mask {first.sizes[k][0]}x{first.sizes[k][1]}; every click's "
                                "mask has the same size.", path=entry[iid][c - 1])
    first.later = per_click[1:]
    return first


def _load_png_click(entry: Mapping[int, Path], expected: ExpectedImage | None) -> ImagePredictions:
    ids = sorted(entry)
    masks, sizes, where = [], [], []
    for iid in ids:
        p = entry[iid]
        a = _read_png_mask(p, expected)
        top = int(a.max()) if a.size else 0
        if top not in (0, 1, 255, 65535) or ((a != 0) & (a != top)).any():
            vals = np.unique(a)[:6].tolist()
            raise AimsError(f"{p}: a PNG mask must hold two values, 0 and 1 (or 0 and 255); found {vals}.", path=p)
        masks.append(a != 0)
        sizes.append(a.shape)
        where.append(str(p))
    shapes = {m.shape for m in masks}
    if len(shapes) == 1:
        dense = np.stack(masks) if masks else np.zeros((0, 1, 1), bool)
        return ImagePredictions(np.asarray(ids, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2), where,
                                dense=dense)
    # different sizes in one image: hand them over as RLE-like single masks so the scorer
    # can name the offending file (it checks every size against the ground truth)
    return ImagePredictions(np.asarray(ids, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2), where,
                            counts=[rle_counts(m) for m in masks])


def iter_images(pf: PredictionFolder, config: str) -> Iterator[tuple[str, ImagePredictions]]:
    """(image_id, predictions) of every image of ``config``, in sorted image-id order."""
    for image_id in sorted(pf.index.get(config, {})):
        yield image_id, pf.image(config, image_id)
