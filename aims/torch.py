"""PyTorch access to a prepared AIMS config: a ``Dataset``, a collate function for ragged
instance lists, and SAM's two input geometries with their inverse for masks.

Why this module exists: ``datasets``' ``with_format("torch")`` plus PyTorch's default
collate crashes on AIMS rows ("stack expects each tensor to be equal size"), because every
image has its own number of instances, and the model input is not a stored column but
:func:`aims.modality_tensor` of several. :class:`AimsDataset` yields ready tensors,
:func:`collate_instances` batches them without padding instance lists, and
:class:`ResizeLongestSide` / :func:`warp_to` put images, id maps, clicks and boxes into the
model's square frame, with :func:`masks_to_native` bringing predicted masks back.

``import torch`` below is the real PyTorch (imports are absolute; this file is
``aims.torch``, never ``torch``). Importing :mod:`aims` does not import this module.

Example (see README.md, "PyTorch")::

    data = AimsDataset("depth", "train", transform=ResizeLongestSide(1024))
    loader = DataLoader(data, batch_size=4, num_workers=2, collate_fn=collate_instances)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import default_collate
except ImportError as exc:  # pragma: no cover - torch is an extra
    raise ImportError("aims.torch needs PyTorch, which is not installed: "
                      "pip install 'aims-benchmark[baselines]' (or torch alone).") from exc

from aims.clicks import pil_nearest_index
from aims.config_info import ConfigInfo
from aims.decoders import to_array
from aims.errors import AimsError
from aims.modalities import Modality, modality_spec, modality_tensor

__all__ = [
    "INSTANCE_FIELDS",
    "SAM_INPUT_SIZE",
    "AimsDataset",
    "ResizeLongestSide",
    "Warp",
    "collate_instances",
    "keep_freed_memory",
    "masks_to_native",
    "modality_statistics",
    "warp_to",
]

#: the side of SAM's square input
SAM_INPUT_SIZE = 1024
#: the per-instance fields of an item: one entry per instance, so their length differs
#: between images and :func:`collate_instances` keeps them as lists
INSTANCE_FIELDS = ("instance_ids", "category", "area", "bbox", "point", "point_simcmf")
#: trailing shape of each per-instance field (``()`` = one number per instance)
_FIELD_SHAPES = {"instance_ids": (), "category": (), "area": (), "bbox": (4,), "point": (2,),
                 "point_simcmf": (2,)}
#: smallest standard deviation divided by: a constant channel must not blow up to inf
MIN_STD = 1e-6


# --------------------------------------------------------------------------- statistics

def modality_statistics(modality: str, channel_stats: Mapping[str, Mapping[str, Sequence[float]]]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` of ``modality`` (float32, shape ``(C,)``) from a config's
    ``channel_stats`` (``aims_config.json``, computed on train by ``aims prepare`` with the
    :func:`aims.modality_tensor` rules).

    Stacked modalities take their columns' statistics in stacking order and the same seeded
    shuffle as the tensor (RGB-X); computed ones (Stokes) have statistics under their own
    name. ``std`` is floored at :data:`MIN_STD`. Raises :class:`AimsError` when the card
    lacks them."""
    spec = modality_spec(modality)
    if spec.combine is not None:
        stats = channel_stats.get(modality)
        if not stats:
            raise AimsError(f"the config's aims_config.json has no channel statistics for modality "
                            f"{modality!r}; re-run `aims prepare` with this version of aims, or "
                            "pass normalize=False.")
        mean, std = list(stats.get("mean", ())), list(stats.get("std", ()))
    else:
        mean, std = [], []
        for column in spec.columns:
            stats = channel_stats.get(column)
            if not stats:
                raise AimsError(f"the config's aims_config.json has no channel statistics for column "
                                f"{column!r} (needed to normalise modality {modality!r}); re-run "
                                "`aims prepare`, or pass normalize=False.")
            mean += list(stats.get("mean", ()))
            std += list(stats.get("std", ()))
        perm = spec.permutation()
        if perm is not None and len(mean) == len(perm) == len(std):
            mean = [mean[i] for i in perm]
            std = [std[i] for i in perm]
    if not (len(mean) == len(std) == spec.channels):
        channels = f"{spec.channels} channel" + ("" if spec.channels == 1 else "s")
        raise AimsError(f"the channel statistics of modality {modality!r} have {len(mean)} means and "
                        f"{len(std)} standard deviations, but the modality has {channels}; re-run "
                        "`aims prepare`, or pass normalize=False.")
    m = np.asarray(mean, np.float32)
    s = np.maximum(np.asarray(std, np.float32), np.float32(MIN_STD))
    if not (np.isfinite(m).all() and np.isfinite(s).all()):
        raise AimsError(f"the channel statistics of modality {modality!r} are not finite numbers; "
                        "re-run `aims prepare`, or pass normalize=False.")
    return m, s


# --------------------------------------------------------------------------- dataset

#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make this process's C heap keep and reuse freed memory (glibc only; False elsewhere).

    Why: every item allocates a few arrays of megabytes (decoded PNGs, float channels, the
    int64 id map). glibc serves each from a fresh ``mmap`` and unmaps it on free, so every
    item paid a page fault per 4 KiB touched, and so did every float and int64 copy: a
    fifth of a DataLoader worker's time on 640×480 depth (11.8 → 9.2 ms per image). Called once in
    each worker (a process the DataLoader owns); the worker's memory then stays at its peak
    (a few items' worth) until the DataLoader ends it.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _default_modality(config: str) -> str:
    """The config's own modality (its name), else the first one its record offers."""
    from aims.converters.registry import config_records
    from aims.modalities import MODALITY_STACKS

    if config in MODALITY_STACKS:
        return config
    record = config_records().get(config)
    if record is not None and record.modalities:
        return record.modalities[0].name
    raise AimsError(f"config {config!r} has no modality of its own name; pass modality= "
                    f"(known: {', '.join(MODALITY_STACKS)}).")


class AimsDataset(torch.utils.data.Dataset):
    """One split of a prepared AIMS config as tensors, one item per image.

    Each item is a dict:

    - ``image``: float32 ``(C, H, W)``, :func:`aims.modality_tensor` of ``modality``
      (default: the config's own), normalised per channel as ``(x - mean) / std`` with the
      card's train statistics (:attr:`mean`, :attr:`std`) unless ``normalize=False``;
    - ``instances``: int64 ``(H, W)`` instance-id map (0 = no instance);
    - per instance (``N`` = the image's instance count, differing between images):
      ``instance_ids`` ``(N,)``, ``category`` ``(N,)`` (class id, -1 = unknown), ``area``
      ``(N,)`` pixels, ``bbox`` ``(N, 4)`` COCO ``x, y, w, h``, ``point`` ``(N, 2)`` the
      ``aims`` click ``x, y`` at native resolution, ``point_simcmf`` ``(N, 2)`` the SimCMF
      click ``x, y`` in the 1024² warped frame — all int64;
    - ``image_id``: str.

    ``data_dir`` defaults to the folder :func:`aims.loader.dataset_root` finds for
    ``config`` (``$AIMS_DATASET``, else the folder the last ``aims prepare`` wrote, else
    ``$AIMS_HOME/dataset``), fixed when the dataset is made. ``transform`` (a callable
    item → item, e.g. :class:`ResizeLongestSide` or :func:`warp_to`) runs last. Rows are read through :func:`aims.load_dataset` and decoded
    one item at a time from the PNG bytes (lossless, 16-bit columns exact); only the columns
    the item needs are read. The object pickles without its rows: each DataLoader worker
    opens the dataset itself on first use. Batch with :func:`collate_instances`.
    """

    def __init__(self, config: str, split: str, data_dir: str | Path | None = None,
                 modality: str | None = None, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 normalize: bool = True) -> None:
        from aims.loader import dataset_root, load_dataset

        self.config = config
        self.split = split
        self.data_dir = dataset_root(data_dir, config)  # fixed here: workers open the same folder
        self.transform = transform
        self.normalize = normalize
        rows = load_dataset(config, split, data_dir=self.data_dir)  # AimsError if not prepared
        self.modality = modality if modality is not None else _default_modality(config)
        self.spec: Modality = modality_spec(self.modality)
        missing = [c for c in self.spec.columns if c not in rows.column_names]
        if missing:
            raise AimsError(f"modality {self.modality!r} needs the column(s) {', '.join(missing)}, which "
                            f"config {config!r} does not store (its columns: {', '.join(rows.column_names)}); "
                            "choose a modality of this config.")
        self.columns = tuple(dict.fromkeys(("image_id", *self.spec.columns, "instances", *INSTANCE_FIELDS)))
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        if normalize:
            info = ConfigInfo.load(self.data_dir / config)
            self.mean, self.std = modality_statistics(self.modality, info.channel_stats)
        self._length = len(rows)
        self._rows: Any = self._undecoded(rows)
        self._process: int | None = os.getpid()

    @property
    def channels(self) -> int:
        """``C`` of ``image``: the modality's channel count."""
        return self.spec.channels

    def _undecoded(self, rows: Any) -> Any:
        """The needed columns, image columns as PNG bytes (decoded by :func:`to_array`, which
        reads 16-bit colour exactly where Pillow would keep the high byte)."""
        import datasets

        rows = rows.select_columns(list(self.columns))
        for name, feature in rows.features.items():
            if isinstance(feature, datasets.Image) and feature.decode:
                rows = rows.cast_column(name, datasets.Image(decode=False))
        return rows

    def _open(self) -> Any:
        if self._process != os.getpid():  # first use in this process (forked or spawned)
            self._process = os.getpid()
            if torch.utils.data.get_worker_info() is not None:
                keep_freed_memory()
        if self._rows is None:  # unpickled (a spawned DataLoader worker): open the rows here
            from aims.loader import load_dataset

            self._rows = self._undecoded(load_dataset(self.config, self.split, data_dir=self.data_dir))
            if len(self._rows) != self._length:
                raise AimsError(f"config {self.config!r} split {self.split!r} in {self.data_dir} changed "
                                f"while in use ({self._length} rows, now {len(self._rows)}); restart.")
        return self._rows

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_rows"] = None  # workers reopen: nothing but paths and statistics travel
        state["_process"] = None
        return state

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} images")
        row = self._open()[int(index)]
        item = self.item(row)
        return self.transform(item) if self.transform is not None else item

    def item(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One row (as :func:`aims.load_dataset` gives it, decoded or not) → the item,
        before ``transform``."""
        x = modality_tensor(row, self.modality)
        if self.mean is not None and self.std is not None:
            if not x.flags.writeable:
                x = x.copy()
            x -= self.mean[:, None, None]  # a fresh array: normalised in place
            x /= self.std[:, None, None]
        instances = np.asarray(to_array(row["instances"]))
        if instances.ndim == 3 and instances.shape[2] == 1:
            instances = instances[:, :, 0]
        item: dict[str, Any] = {
            "image": torch.from_numpy(x),
            "instances": torch.from_numpy(instances.astype(np.int64)),
        }
        for name in INSTANCE_FIELDS:
            values = np.asarray(row[name], np.int64).reshape((-1, *_FIELD_SHAPES[name]))
            item[name] = torch.from_numpy(values)
        item["image_id"] = str(row["image_id"])
        return item

    def __repr__(self) -> str:
        return (f"AimsDataset(config={self.config!r}, split={self.split!r}, modality={self.modality!r}, "
                f"images={self._length}, normalize={self.normalize}, data_dir={str(self.data_dir)!r})")


#: tensors up to this size leave a DataLoader worker pickled inline (see :class:`_WorkerBatch`)
_INLINE_BYTES = 1 << 16


def _tensor_from_array(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class _Inline:
    """A small tensor that pickles as its NumPy array (bytes in the pipe) and unpickles as a
    tensor again."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tensor_from_array, (self.tensor.numpy(),))


def _inlined(value: Any) -> Any:
    if isinstance(value, list):
        return [_inlined(v) for v in value]
    if (isinstance(value, torch.Tensor) and value.device.type == "cpu" and not value.requires_grad
            and value.numel() * value.element_size() <= _INLINE_BYTES):
        try:
            value.numpy()
        except (TypeError, RuntimeError):  # a dtype NumPy lacks (bfloat16): the usual route
            return value
        return _Inline(value)
    return value


def _widened(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.to(dtype)


class _Narrowed:
    """A large integer tensor that crosses from a worker in a narrower dtype holding all
    its values (see :func:`_narrowest`) and unpickles as ``dtype`` again, same values."""

    __slots__ = ("dtype", "tensor")

    def __init__(self, tensor: torch.Tensor, dtype: torch.dtype) -> None:
        self.tensor, self.dtype = tensor, dtype

    def __reduce__(self) -> tuple[Any, ...]:
        return (_widened, (self.tensor, self.dtype))


#: dtypes a worker may send an integer batch tensor in, narrowest first
_NARROW_DTYPES = (torch.uint8, torch.int16, torch.int32)


def _narrowest(values: Sequence[torch.Tensor]) -> torch.dtype | None:
    """The narrowest of :data:`_NARROW_DTYPES` holding every value of these integer
    tensors, when narrower than theirs; None otherwise (or when one is empty)."""
    if any(v.numel() == 0 for v in values):
        return None
    lo = min(int(v.min()) for v in values)
    hi = max(int(v.max()) for v in values)
    for dtype in _NARROW_DTYPES:
        info = torch.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype if info.bits < values[0].element_size() * 8 else None
    return None


class _WorkerBatch(dict):
    """A batch collated in a DataLoader worker, pickled for the trip to the main process.

    Why: PyTorch sends every tensor from a worker as its own shared-memory segment plus a
    file descriptor (0.5–1 ms each, measured on 2 cores), and an AIMS batch has six small
    per-instance tensors per image — together more than decoding a 640×480 image; and a
    fresh shared-memory segment costs a page fault per 4 KiB written (measured ~0.6 ms per
    MB in a VM, as much as decoding the PNG), which made the int64 instance-id map (8 bytes
    a pixel, ids that fit one byte) the most expensive part of a depth item. So small
    tensors travel inline as NumPy bytes, the integer tensors in :attr:`narrowed` travel in
    their narrowest dtype (:class:`_Narrowed`) and large ones the usual way; it unpickles as
    a plain ``dict`` of tensors with the dtypes and values it was collated with."""

    def __init__(self) -> None:
        super().__init__()
        #: key -> the dtype the tensor under it unpickles as (it is stored narrower)
        self.narrowed: dict[str, torch.dtype] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, ([(k, _Narrowed(v, self.narrowed[k]) if k in self.narrowed else _inlined(v))
                        for k, v in self.items()],))


def _stack_narrow(values: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.dtype] | None:
    """Integer tensors of one shape stacked in a narrower dtype holding all their values
    (one converting copy each, in the worker's own memory), with their dtype; None when no
    narrower dtype holds them or they are small enough to travel inline anyway."""
    first = values[0]
    if first.is_floating_point() or first.is_complex() or first.dtype == torch.bool:
        return None
    if sum(v.numel() * v.element_size() for v in values) <= _INLINE_BYTES:
        return None
    dtype = _narrowest(values)
    if dtype is None:
        return None
    out = torch.empty((len(values), *first.shape), dtype=dtype)
    for i, v in enumerate(values):
        out[i].copy_(v)
    return out, first.dtype


def _stack(values: list[torch.Tensor]) -> torch.Tensor:
    if sum(v.numel() * v.element_size() for v in values) <= _INLINE_BYTES:
        return torch.stack(values)
    # default_collate stacks straight into shared memory inside a DataLoader worker: the
    # batch then crosses to the main process without another copy
    return default_collate(values)


def collate_instances(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`AimsDataset` whose instance counts differ.

    - per-instance fields (:data:`INSTANCE_FIELDS`): always a list with one tensor per image
      (``(N_i, …)``), never padded;
    - other tensors (``image``, ``instances``, a transform's ``original_size`` …): stacked
      along a new first dimension when every item has the same shape — always the case
      after :class:`ResizeLongestSide` or :func:`warp_to` — else a list of tensors (images of
      native, different sizes);
    - everything else (``image_id``): a list.
    """
    if not batch:
        return {}
    keys = list(dict.fromkeys(k for item in batch for k in item))
    in_worker = torch.utils.data.get_worker_info() is not None
    out: dict[str, Any] = _WorkerBatch() if in_worker else {}
    for key in keys:
        values = [item.get(key) for item in batch]
        if key in INSTANCE_FIELDS:
            out[key] = values
        elif all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            narrow = _stack_narrow(values) if isinstance(out, _WorkerBatch) else None
            if narrow is not None:  # e.g. the id maps: they arrive as int64 again
                out[key], out.narrowed[key] = narrow
            else:
                out[key] = _stack(values)
        else:
            out[key] = values
    return out


# --------------------------------------------------------------------------- geometry

def _nearest(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``(..., h, w)`` to ``size`` = (rows, cols), PIL's
    NEAREST sampling (the rule of the SimCMF label warp, :func:`aims.clicks.warp_nearest`),
    any dtype."""
    h, w = masks.shape[-2:]
    if (h, w) == tuple(size):
        return masks
    yi = torch.from_numpy(pil_nearest_index(h, size[0])).to(masks.device)
    xi = torch.from_numpy(pil_nearest_index(w, size[1])).to(masks.device)
    return masks.index_select(-2, yi).index_select(-1, xi)


def _bilinear(x: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize of ``(..., h, w)`` floats (leading dimensions kept)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    flat = x.reshape(-1, 1, *x.shape[-2:])  # channels are resized independently anyway
    out = F.interpolate(flat.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(*x.shape[:-2], *size)


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h)) if (h, w) != (size, size) else x


def _size_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    h, w = (int(v) for v in value)
    return h, w


def masks_to_native(masks: torch.Tensor, input_size: Sequence[int] | torch.Tensor,
                    original_size: Sequence[int] | torch.Tensor, *, size: int = SAM_INPUT_SIZE) -> torch.Tensor:
    """Masks in the model's square frame → the native image's ``(H, W)`` (SAM's
    ``postprocess_masks``): scale the ``(..., m, m)`` masks to ``size``², crop the padding
    to ``input_size`` (the resized image's ``(h, w)``; ``(size, size)`` after a warp), and
    resize to ``original_size``.

    Boolean and integer masks (id maps) are resized nearest-neighbour, the exact inverse of
    the forward transform wherever it upsampled; floating masks (logits) bilinearly, as SAM
    does — threshold them at 0 afterwards. ``input_size``/``original_size`` are the
    ``input_size``/``original_size`` a transform adds to the item."""
    nh, nw = _size_pair(input_size)
    oh, ow = _size_pair(original_size)
    if not (0 < nh <= size and 0 < nw <= size):
        raise ValueError(f"input_size {(nh, nw)} does not fit the {size}² frame")
    if masks.dim() < 2 or masks.shape[-1] != masks.shape[-2]:
        raise ValueError(f"masks must be (..., m, m) in the square model frame, got {tuple(masks.shape)}")
    if masks.is_floating_point():
        x = _bilinear(masks, (size, size), antialias=False)[..., :nh, :nw]
        return _bilinear(x, (oh, ow), antialias=False)
    x = _nearest(masks, (size, size))[..., :nh, :nw]
    return _nearest(x, (oh, ow))


class _SquareFrame:
    """What the two geometries share: an image of any size goes into a ``side``² frame (as
    ``input_size(h, w)`` rows and columns from its top-left corner, the rest padding), labels
    go nearest-neighbour, coordinates scale by ``input_size / original size`` (SAM's
    ``apply_coords``), and :func:`masks_to_native` is the way back."""

    side: int
    pad: bool

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        raise NotImplementedError

    def apply_image(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def apply_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``(…, H, W)`` id map or boolean mask → the frame, nearest neighbour (PIL's NEAREST
        sampling, :func:`aims.clicks.warp_nearest`); padding is 0 (no instance)."""
        x = _nearest(mask, self.input_size(*mask.shape[-2:]))
        return _pad(x, self.side) if self.pad else x

    def apply_coords(self, coords: torch.Tensor, original_size: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``(…, 2)`` native ``x, y`` → the frame, float32."""
        h, w = _size_pair(original_size)
        nh, nw = self.input_size(h, w)
        return coords.to(torch.float32) * torch.tensor([nw / w, nh / h], dtype=torch.float32)

    def apply_boxes(self, boxes: torch.Tensor, original_size: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``(…, 4)`` COCO ``x, y, w, h`` → the frame, float32."""
        h, w = _size_pair(original_size)
        nh, nw = self.input_size(h, w)
        return boxes.to(torch.float32) * torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=torch.float32)

    def masks_to_native(self, masks: torch.Tensor, original_size: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """This geometry's inverse for masks (:func:`masks_to_native`)."""
        return masks_to_native(masks, self.input_size(*_size_pair(original_size)), original_size,
                               size=self.side)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """An :class:`AimsDataset` item in the frame: ``image``, ``instances``, ``point`` and
        ``bbox`` mapped (float32 coordinates); ``original_size`` and ``input_size``
        (``(h, w)``, int64) added for :func:`masks_to_native`; ``point_simcmf`` left in its own
        1024² warped frame (it is defined there)."""
        if not self.pad:
            raise ValueError(f"{type(self).__name__}(pad=False) gives images of different sizes; as a "
                             "dataset transform it must pad (pad=True)")
        h, w = item["image"].shape[-2:]
        out = dict(item)
        out["image"] = self.apply_image(item["image"])
        if "instances" in item:
            out["instances"] = self.apply_mask(item["instances"])
        if "point" in item:
            out["point"] = self.apply_coords(item["point"], (h, w))
        if "bbox" in item:
            out["bbox"] = self.apply_boxes(item["bbox"], (h, w))
        out["original_size"] = torch.tensor([h, w], dtype=torch.int64)
        out["input_size"] = torch.tensor(self.input_size(h, w), dtype=torch.int64)
        return out


@dataclass(frozen=True)
class ResizeLongestSide(_SquareFrame):
    """SAM's preprocessing, aspect ratio kept: scale so the longest side is
    ``target_length`` (SAM's ``get_preprocess_shape``, rounded half up), the image bilinear
    with antialiasing (SAM's ``apply_image_torch``), then zero-pad bottom/right to a
    ``target_length``² square (``pad=False`` skips the padding, for single images). Padding
    after normalisation puts the padded pixels at the channel mean, as SAM does.

    Called on an :class:`AimsDataset` item (``transform=ResizeLongestSide(1024)``) it maps
    ``image``, ``instances`` (nearest, padding 0), ``point`` and ``bbox`` (float32, SAM's
    ``apply_coords``), and adds ``original_size`` and ``input_size`` for
    :func:`masks_to_native`."""

    target_length: int = SAM_INPUT_SIZE
    pad: bool = True

    def __post_init__(self) -> None:
        if int(self.target_length) <= 0:
            raise ValueError(f"target_length must be positive, got {self.target_length}")

    @property
    def side(self) -> int:
        return int(self.target_length)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h', w')`` of a ``height × width`` image after the resize (before padding)."""
        scale = self.target_length / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def apply_image(self, image: torch.Tensor) -> torch.Tensor:
        """``(…, C, H, W)`` float → resized (and padded) ``(…, C, S, S)``."""
        x = _bilinear(image, self.input_size(*image.shape[-2:]), antialias=True)
        return _pad(x, self.side) if self.pad else x


@dataclass(frozen=True)
class Warp(_SquareFrame):
    """The SimCMF reference geometry: stretch to ``size``² (aspect ratio not kept), the
    image bilinear without antialiasing (its ``Resize((1024, 1024))`` on a tensor,
    torchvision 0.12), labels with PIL's NEAREST (:func:`aims.clicks.warp_nearest`: the
    stored ``point_simcmf`` clicks were computed on that warp of the id map). The reference
    warps before normalising; bilinear weights sum to one, so warping the normalised image
    gives the same values up to float rounding. Build it with :func:`warp_to`; as a dataset
    transform it maps an item like :class:`ResizeLongestSide` (``input_size`` = ``(S, S)``)."""

    size: int = SAM_INPUT_SIZE
    pad = True  # nothing to pad: the warp fills the frame

    def __post_init__(self) -> None:
        if int(self.size) <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def side(self) -> int:
        return int(self.size)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return self.side, self.side

    def apply_image(self, image: torch.Tensor) -> torch.Tensor:
        """``(…, C, H, W)`` float → ``(…, C, S, S)``."""
        return _bilinear(image, (self.side, self.side), antialias=False)


def warp_to(size: int = SAM_INPUT_SIZE) -> Warp:
    """The SimCMF warp to ``size``² as a transform (see :class:`Warp`)."""
    return Warp(size)
