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
(format, method, model, anything else the producer wants recorded); ``aims score`` copies it
into the results. It is optional for hand-made folders.

WHY the RLE codec is implemented here rather than taken from pycocotools: the scorer must
install everywhere without a C toolchain, and vectorised numpy encoding/decoding is as fast
for our mask sizes. The encoding is COCO's exactly (column-major runs starting with a run of
zeros; each count after the third stored as the difference to the count two before, in
5-bit groups, most-significant group last, with continuation bit 0x20, offset by 48) — the
tests prove it byte for byte against ``pycocotools.mask.encode``/``decode``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aims import __version__
from aims.errors import AimsError

__all__ = [
    "FORMATS",
    "META_FILE",
    "ImagePredictions",
    "PredictionFolder",
    "PredictionWriter",
    "as_binary_mask",
    "read_predictions",
    "rle_counts",
    "rle_decode",
    "rle_encode",
    "counts_to_string",
    "string_to_counts",
]

FORMATS = ("rle", "npz", "png")
#: Metadata file of a predictions folder (written by :class:`PredictionWriter`).
META_FILE = "aims_predictions.json"
#: Keys an ``.npz`` prediction file may hold.
NPZ_KEYS = {"instance_ids", "masks", "masks_packed", "shape"}

_CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Image ids become file names in the npz and png formats: keep them portable.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_GROUPS = 12  # 60 bits: more 5-bit groups than any real count needs = corrupt RLE


# --------------------------------------------------------------------------- RLE codec


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
    """COCO's compressed string of run lengths (``rleToString`` in pycocotools' maskApi.c),
    vectorised: every value (counts[i] - counts[i-2] for i > 2) becomes its shortest
    two's-complement form in 5-bit groups, least significant first, 0x20 marking "more
    groups follow", each group offset by 48 into printable ASCII."""
    c = np.asarray(counts, dtype=np.int64).ravel()
    if c.size == 0:
        return ""
    x = c.copy()
    if c.size > 3:
        x[3:] = c[3:] - c[1:-2]
    k = np.ones(x.size, np.int64)  # groups per value: 1 + how many widths it overflows
    for width in range(1, _MAX_GROUPS):
        lim = 1 << (5 * width - 1)
        k += (x >= lim) | (x < -lim)
    starts = np.cumsum(k) - k
    rep = np.repeat(x, k)
    j = np.arange(rep.size, dtype=np.int64) - np.repeat(starts, k)
    chunk = (rep >> (5 * j)) & 0x1F
    more = j < np.repeat(k - 1, k)
    chars = (chunk | (more.astype(np.int64) << 5)) + 48
    return chars.astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(s: str | bytes) -> np.ndarray:
    """Inverse of :func:`counts_to_string` (``rleFrString``), vectorised. Raises
    ``ValueError`` for characters outside COCO's alphabet, a truncated last value, an
    impossibly long value or negative run lengths."""
    raw = s.encode("ascii", "strict") if isinstance(s, str) else bytes(s)
    b = np.frombuffer(raw, np.uint8).astype(np.int64)
    if b.size == 0:
        return np.zeros(0, np.int64)
    if (b < 48).any() or (b > 48 + 63).any():
        bad = raw[int(np.flatnonzero((b < 48) | (b > 111))[0])]
        raise ValueError(f"character {chr(bad)!r} is not in COCO's RLE alphabet ('0'..'o')")
    v = b - 48
    more = (v & 0x20) != 0
    if more[-1]:
        raise ValueError("the string ends in the middle of a value (truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    k = ends - starts + 1
    if (k > _MAX_GROUPS).any():
        raise ValueError("a value has more 5-bit groups than any run length can need")
    pos = np.arange(v.size, dtype=np.int64) - np.repeat(starts, k)
    vals = np.add.reduceat((v & 0x1F) << (5 * pos), starts)
    neg = (v[ends] & 0x10) != 0
    vals[neg] -= np.left_shift(1, 5 * k[neg])
    counts = vals.copy()
    counts[1::2] = np.cumsum(vals[1::2])
    counts[2::2] = np.cumsum(vals[2::2])
    if (counts < 0).any():
        raise ValueError("it decodes to negative run lengths")
    return counts


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """``{"size": [h, w], "counts": str}`` of a 2-D binary mask, as pycocotools writes it
    (``counts`` decoded to ``str``, the JSON form)."""
    m = as_binary_mask(mask, "rle_encode")
    h, w = m.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(rle_counts(m))}


def parse_rle(segmentation: Any) -> tuple[tuple[int, int], np.ndarray]:
    """Validate a COCO RLE (compressed ``counts`` str/bytes, or uncompressed list of ints)
    and return ``((h, w), counts)``. Raises ``ValueError`` saying what is wrong."""
    if not isinstance(segmentation, Mapping):
        raise ValueError(f"segmentation must be an object with size and counts, got {type(segmentation).__name__}")
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"segmentation.size must be [height, width] positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if isinstance(counts, (str, bytes)):
        c = string_to_counts(counts)
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise ValueError("uncompressed segmentation.counts must be non-negative integers")
        c = np.asarray(counts, np.int64)
    else:
        raise ValueError(f"segmentation.counts must be a string (or a list of integers), got {type(counts).__name__}")
    total = int(c.sum()) if c.size else 0
    if total != h * w:
        raise ValueError(f"the run lengths cover {total} pixels but size {h}x{w} has {h * w} (corrupt or truncated RLE)")
    return (h, w), c


def rle_decode(segmentation: Mapping[str, Any]) -> np.ndarray:
    """Boolean (h, w) mask of a COCO RLE (see :func:`parse_rle`)."""
    (h, w), counts = parse_rle(segmentation)
    return counts_to_mask(counts, (h, w))


def counts_to_mask(counts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean (h, w) C-contiguous mask from validated column-major run lengths."""
    h, w = size
    vals = np.zeros(counts.size, bool)
    vals[1::2] = True
    flat = np.repeat(vals, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def rle_runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) column-major flat positions of the runs of 1 of validated counts."""
    cum = np.cumsum(counts)
    n1 = counts.size // 2
    return cum[0 : 2 * n1 : 2], cum[1 : 2 * n1 + 1 : 2]


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


# --------------------------------------------------------------------------- writer


def _meta_json(fmt: str, meta: Mapping[str, Any], counts: Mapping[str, int]) -> str:
    doc = {
        "aims_predictions": 1,
        "format": fmt,
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
    protocol ``simcmf`` a 256×256 mask in the reference's warped frame is accepted too). All
    instances of one image must have the same mask size. ``meta`` (JSON-serialisable; put
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
        overwrite: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
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
        self._tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
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
        m = as_binary_mask(mask, f"config {config!r} image {image_id!r} instance {iid}")
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
            rec = {"config": config, "image_id": image_id, "instance_id": iid,
                   "segmentation": rle_encode(m)}
            self._rle.setdefault(config, []).append(json.dumps(rec, ensure_ascii=False))
        elif self.fmt == "png":
            from aims.imageio import encode_png

            folder = self._tmp / config / image_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{iid}.png").write_bytes(encode_png(m.astype(np.uint8) * np.uint8(255)))
        else:
            if self._pending != (config, image_id):
                self._flush_npz()
                self._pending = (config, image_id)
            self._pending_ids.append(iid)
            self._pending_masks.append(np.packbits(m.ravel()))

    def _flush_npz(self) -> None:
        if self._pending is None:
            return
        config, image_id = self._pending
        h, w = self._sizes[(config, image_id)]
        ids = np.asarray(self._pending_ids, np.int64)
        packed = np.stack(self._pending_masks)
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
            (self._tmp / META_FILE).write_text(_meta_json(self.fmt, self.meta, self._counts), encoding="utf-8")
            self._check_target()
            old = None
            if self.out_dir.is_dir():
                if any(self.out_dir.iterdir()):
                    old = self.out_dir.parent / f".{self.out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
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


# --------------------------------------------------------------------------- reader


@dataclass
class ImagePredictions:
    """The predicted masks of one image, in the form they were stored.

    ``ids[i]`` is the instance id of prediction *i*, ``where[i]`` names its file (and RLE
    record) for error messages, ``sizes[i]`` its (h, w). Exactly one of ``dense`` ((N, h, w)
    boolean) and ``counts`` (validated column-major RLE counts per instance) is set.
    """

    ids: np.ndarray
    sizes: np.ndarray
    where: list[str]
    dense: np.ndarray | None = None
    counts: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.ids.size)


@dataclass
class _RleRecord:
    instance_id: int
    segmentation: Any
    where: str


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

    @property
    def configs(self) -> list[str]:
        return sorted(self.index)

    def count(self, config: str) -> int:
        """Number of predictions for ``config`` (npz files are opened only to count)."""
        imgs = self.index.get(config, {})
        if self.format == "npz":
            return sum(len(self.image(config, i)) for i in imgs)
        return sum(len(v) for v in imgs.values())

    def image(self, config: str, image_id: str) -> ImagePredictions:
        """Load the predictions of one image; ``AimsError`` naming the file for corrupt,
        non-binary or duplicate data."""
        entry = self.index[config][image_id]
        if self.format == "rle":
            return _load_rle(entry)
        if self.format == "npz":
            return _load_npz(entry)
        return _load_png(entry)


def _rel(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(root.parent))
    return str(path)


def read_predictions(folder: str | Path) -> PredictionFolder:
    """Index a predictions folder: detect its format, read the metadata, and list every
    (config, image) it covers. RLE JSON is parsed here (records are small) and duplicate
    instance predictions are refused here; npz and png contents are read per image by
    :meth:`PredictionFolder.image`.

    Raises :class:`AimsError` for a missing or empty folder, mixed formats, unexpected
    files, or malformed records — naming the file. Hidden entries (``.name``) are ignored.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise AimsError(f"predictions folder {root} does not exist (or is not a folder).", path=root)
    meta_doc: dict[str, Any] = {}
    meta_path = root / META_FILE
    if meta_path.is_file():
        try:
            meta_doc = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta_doc, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise AimsError(f"{meta_path} is not valid predictions metadata ({exc}); it must be the "
                            "JSON object written by aims.predictions.PredictionWriter.", path=meta_path) from None
    json_files, dirs, others = [], [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p == meta_path:
            continue
        if p.is_dir():
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
            if p.is_file() and p.suffix == ".npz":
                npz_files.append(p)
            elif p.is_dir():
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
        raise AimsError(f"{meta_path} declares format {declared!r} but the folder holds {fmt} files; "
                        "the metadata belongs to another run.", path=meta_path)
    meta = meta_doc.get("meta", {}) if isinstance(meta_doc.get("meta", {}), dict) else {}
    pf = PredictionFolder(root, fmt, dict(meta))
    if fmt == "rle":
        _index_rle(pf, json_files)
    elif fmt == "npz":
        for p in npz_files:
            pf.index.setdefault(_config_of(p.parent), {})[p.name[: -len(".npz")]] = p
    else:
        _index_png(pf, png_dirs)
    return pf


def _config_of(d: Path) -> str:
    if not _CONFIG_NAME.match(d.name):
        raise AimsError(f"folder {d} is not named after an AIMS config (lower-case letters, digits, "
                        "'-' and '_').", path=d)
    return d.name


def _index_rle(pf: PredictionFolder, files: list[Path]) -> None:
    seen: dict[tuple[str, str, int], str] = {}
    for path in files:
        rel = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AimsError(f"RLE predictions file {path} is not valid JSON ({exc}).", path=path) from None
        if isinstance(data, dict) and isinstance(data.get("predictions"), list):
            data = data["predictions"]
        if not isinstance(data, list):
            raise AimsError(f"RLE predictions file {path} must hold a JSON list of records, found "
                            f"{type(data).__name__}.", path=path)
        for k, rec in enumerate(data):
            where = f"{rel} record {k}"
            if not isinstance(rec, dict):
                raise AimsError(f"{where}: expected an object, found {type(rec).__name__}.", path=path)
            missing = [f for f in ("config", "image_id", "instance_id", "segmentation") if f not in rec]
            if missing:
                raise AimsError(f"{where}: missing field(s) {', '.join(missing)}; a record is "
                                '{"config", "image_id", "instance_id", "segmentation": {"size": [h, w], "counts": str}}.',
                                path=path)
            config, image_id, iid = rec["config"], rec["image_id"], rec["instance_id"]
            if not isinstance(config, str) or not _CONFIG_NAME.match(config):
                raise AimsError(f"{where}: config {config!r} is not an AIMS config name.", path=path)
            if not isinstance(image_id, str) or not image_id:
                raise AimsError(f"{where}: image_id must be a non-empty string, found {image_id!r}.", path=path)
            if isinstance(iid, bool) or not isinstance(iid, int) or iid <= 0:
                raise AimsError(f"{where}: instance_id must be a positive integer, found {iid!r}.", path=path)
            key = (config, image_id, iid)
            if key in seen:
                raise AimsError(f"duplicate prediction for config {config!r}, image {image_id!r}, instance "
                                f"{iid}: {seen[key]} and {where}. Keep one mask per instance.", path=path)
            seen[key] = where
            pf.index.setdefault(config, {}).setdefault(image_id, []).append(
                _RleRecord(iid, rec["segmentation"], where))


def _index_png(pf: PredictionFolder, dirs: list[Path]) -> None:
    for d in dirs:
        config = _config_of(d.parent)
        entry: dict[int, Path] = {}
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue
            if not (p.is_file() and p.suffix == ".png" and p.stem.isdigit() and p.stem.isascii()):
                raise AimsError(f"unexpected entry {p}: the png format holds <config>/<image_id>/"
                                "<instance_id>.png files (instance id in decimal).", path=p)
            iid = int(p.stem)
            if iid in entry:
                raise AimsError(f"duplicate prediction for config {config!r}, image {d.name!r}, instance "
                                f"{iid}: {entry[iid]} and {p}.", path=p)
            if iid <= 0:
                raise AimsError(f"{p}: instance ids start at 1.", path=p)
            entry[iid] = p
        pf.index.setdefault(config, {})[d.name] = entry


def _load_rle(records: list[_RleRecord]) -> ImagePredictions:
    ids, sizes, counts, where = [], [], [], []
    for r in records:
        try:
            size, c = parse_rle(r.segmentation)
        except ValueError as exc:
            raise AimsError(f"{r.where}: corrupt RLE segmentation: {exc}.", path=r.where.split(" record")[0]) from None
        ids.append(r.instance_id)
        sizes.append(size)
        counts.append(c)
        where.append(r.where)
    return ImagePredictions(np.asarray(ids, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2), where,
                            counts=counts)


def _load_npz(path: Path) -> ImagePredictions:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            unknown = sorted(keys - NPZ_KEYS)
            if unknown:
                raise AimsError(f"{path}: unexpected array(s) {', '.join(unknown)}; an npz prediction holds "
                                "instance_ids and masks (or masks_packed + shape).", path=path)
            if "instance_ids" not in keys or not ({"masks"} <= keys or {"masks_packed", "shape"} <= keys):
                raise AimsError(f"{path}: needs instance_ids and masks (N, H, W), or instance_ids, "
                                f"masks_packed and shape; found {', '.join(sorted(keys)) or 'nothing'}.", path=path)
            ids = z["instance_ids"]
            if "masks" in keys:
                masks = z["masks"]
                packed = shape = None
            else:
                packed, shape = z["masks_packed"], z["shape"]
                masks = None
    except AimsError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise AimsError(f"{path} holds pickled Python objects; refused (npz predictions are loaded "
                            "with allow_pickle=False). Store plain numeric/boolean arrays.", path=path) from None
        raise AimsError(f"{path} is not a readable npz file ({exc}).", path=path) from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise AimsError(f"{path} is not a readable npz file (corrupt or truncated: {exc}).", path=path) from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise AimsError(f"{path}: instance_ids must be a 1-D integer array, found {ids.dtype} {ids.shape}.", path=path)
    n = ids.size
    if masks is not None:
        if masks.ndim != 3 or masks.shape[0] != n:
            raise AimsError(f"{path}: masks must have shape (N, H, W) with N = {n} instance ids, found "
                            f"{masks.shape}.", path=path)
        try:
            dense = _binary(masks, str(path))
        except ValueError as exc:
            raise AimsError(str(exc), path=path) from None
    else:
        if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape <= 0).any():
            raise AimsError(f"{path}: shape must be [H, W] positive integers, found {shape!r}.", path=path)
        h, w = int(shape[0]), int(shape[1])
        nbytes = (h * w + 7) // 8
        if packed.dtype != np.uint8 or packed.shape != (n, nbytes):
            raise AimsError(f"{path}: masks_packed must be uint8 of shape (N, ceil(H*W/8)) = ({n}, {nbytes}) "
                            f"from np.packbits, found {packed.dtype} {packed.shape}.", path=path)
        dense = np.unpackbits(packed, axis=1, count=h * w).reshape(n, h, w).view(bool)
    if ids.size and (ids.min() <= 0):
        raise AimsError(f"{path}: instance ids start at 1, found {int(ids.min())}.", path=path)
    uniq, cnt = np.unique(ids, return_counts=True)
    if (cnt > 1).any():
        raise AimsError(f"{path}: duplicate prediction for instance {int(uniq[cnt > 1][0])} "
                        "(instance_ids repeats it).", path=path)
    where = [f"{path} (instance {int(i)})" for i in ids]
    sizes = np.tile(np.asarray(dense.shape[1:], np.int64), (n, 1))
    return ImagePredictions(ids.astype(np.int64), sizes, where, dense=dense)


def _load_png(entry: Mapping[int, Path]) -> ImagePredictions:
    from aims.imageio import decode_png

    ids = sorted(entry)
    masks, sizes, where = [], [], []
    for iid in ids:
        p = entry[iid]
        try:
            a = decode_png(p.read_bytes())
        except ValueError as exc:
            raise AimsError(f"{p} is not a readable PNG ({exc}).", path=p) from None
        if a.ndim != 2:
            raise AimsError(f"{p}: expected a single-channel (greyscale) PNG mask, found shape {a.shape}.", path=p)
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
