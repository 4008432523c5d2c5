"""The evaluation protocols: which instances count, in which frame masks are compared.

Two protocols, both versioned (the version goes into every result, so a rule change can
never silently mix numbers):

``aims`` → ``aims-v1`` (default)
    IoU at the ground truth's native resolution on binary masks; evaluated instances are
    those with area ≥ 100 native pixels (same rule for every config). Predictions must
    have the native size. Dice = 2|P ∩ G| / (|P| + |G|), unsmoothed (float64).

``simcmf`` → ``simcmf-v1``
    The SimCMF reference code's computation (github.com/mt-cly/SimCMF, ``dataset.py`` +
    ``function.py``/``utils.py``), reproduced exactly:

    1. the instance map is warped to 1024×1024 with PIL NEAREST (``Image.resize``), aspect
       ratio not kept (:func:`aims.clicks.warp_nearest`, bit-identical);
    2. an instance is evaluated iff its id is in that warped map and its pixel count
       there passes the source's filter, ``count > threshold`` (strict, as the reference's
       ``region_cnt > CNT_THRESHOLD``). Each config's threshold is its record's
       ``simcmf_area_filter`` (:func:`simcmf_area_filters`): ``polarization-zju`` (ZJU-RGBP)
       10000, ``polarization`` (RGBP-Glass) 100, ``nir`` 1000; ``depth``, ``hha``,
       ``thermal``: 0, no filter (every id present after the warp). A config without one
       (a user's own modality) is refused by this protocol;
    3. the label is resized 1024→256 by torchvision ``Resize(NEAREST)`` on a tensor, i.e.
       ``torch.nn.functional.interpolate(mode="nearest")``: source index =
       ``floor(dst * float32(in/out))`` (= 4·dst here) — done here with index arithmetic, no
       torch;
    4. the prediction is a 256×256 mask (the model's low-resolution logits > 0) used as
       is, or a native-resolution mask brought to 256×256 by the same two steps as the
       label;
    5. IoU = (|P ∩ G| + 1e-6) / (|P ∪ G| + 1e-6), mean over every evaluated instance;
       Dice = (2|P ∩ G| + 1e-4) / (|P| + |G| + 1e-4) in float32, the reference's
       ``eval_seg``/``DiceCoeff`` per instance (``utils.py``), averaged the same way.

    One reference quirk is NOT reproduced: the thermal loader takes ``np.unique(mask)[1:]``
    (drops the smallest value, assuming it is background 0), so in an image without
    background pixels it would drop a real instance. Every other loader uses ``id > 0``,
    which is what we use everywhere; the two agree whenever background is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aims.clicks import pil_nearest_index, warp_nearest
from aims.metrics import dice_from_counts, iou_from_counts
from aims.converters import registry
from aims.errors import AimsError

__all__ = ["PROTOCOLS", "Frame", "Protocol", "get_protocol", "simcmf_area_filters", "torch_nearest_index"]


def simcmf_area_filters() -> dict[str, int]:
    """Config -> the SimCMF reference's area threshold, from the config records (every
    config that has one, in registry order)."""
    return {name: int(r.simcmf_area_filter) for name, r in registry.config_records().items()
            if r.simcmf_area_filter is not None}

#: Reference frame sizes of protocol simcmf.
SIMCMF_INPUT = 1024
SIMCMF_OUTPUT = 256


def torch_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output position of ``torch.nn.functional.interpolate(
    mode="nearest")`` along one axis (PyTorch's ``nearest_idx``): identity for equal
    sizes, ``dst >> 1`` for exact 2× upsampling, else ``min(floor(dst * scale), in - 1)``
    with ``scale = float32(in) / float32(out)`` in float32 arithmetic, as the kernel does."""
    if n_out == n_in:
        return np.arange(n_out, dtype=np.int64)
    if n_out == 2 * n_in:
        return np.arange(n_out, dtype=np.int64) >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    pos = np.arange(n_out, dtype=np.float32) * scale
    return np.minimum(np.floor(pos).astype(np.int64), n_in - 1)


@dataclass
class Frame:
    """One image's ground truth in a protocol's scoring frame.

    ``label``: the instance-id map compared against (native for ``aims``, 256×256 for
    ``simcmf``); ``eval_area[i]``: the area the protocol's filter looks at for instance
    ``ids[i]``; ``evaluated[i]``: whether it counts. ``native`` is the (h, w) of the
    dataset's map; :meth:`to_frame` brings a stack of prediction masks of an accepted size
    into the frame (None for a size the protocol does not accept).
    """

    label: np.ndarray
    eval_area: np.ndarray
    evaluated: np.ndarray
    native: tuple[int, int]
    rows: np.ndarray | None = None  # native -> frame gathers (None: identity)
    cols: np.ndarray | None = None
    accepts_frame_size: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.label.shape[0]), int(self.label.shape[1]))

    def accepted_sizes(self) -> list[tuple[int, int]]:
        sizes = [self.native]
        if self.accepts_frame_size and self.shape not in sizes:
            sizes.append(self.shape)
        return sizes

    def to_frame(self, masks: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
        """(N, h, w) masks of ``size`` → (N, *frame shape) masks, or None if not accepted."""
        size = (int(size[0]), int(size[1]))
        if size == self.native:
            if self.rows is None:
                return masks
            return masks.take(self.rows, axis=1).take(self.cols, axis=2)
        if self.accepts_frame_size and size == self.shape:
            return masks
        return None


@dataclass(frozen=True)
class Protocol:
    """A scoring protocol (see the module docstring)."""

    name: str
    version: str
    eps: float
    description: str
    fixed_rules: dict[str, Any] = field(default_factory=dict)
    #: Dice smoothing, and whether Dice is computed in float32 (the reference's torch code)
    dice_eps: float = 0.0
    dice_float32: bool = False

    def iou(self, inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray) -> np.ndarray:
        """IoU per instance from the counts in this protocol's frame."""
        return iou_from_counts(inter, pred_area, gt_area, self.eps)

    def dice(self, inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray) -> np.ndarray:
        """Dice per instance from the same counts (see the module docstring)."""
        return dice_from_counts(inter, pred_area, gt_area, self.dice_eps, float32=self.dice_float32)

    @property
    def rules(self) -> dict[str, Any]:
        """The protocol's rules as the results JSON records them."""
        return dict(self.fixed_rules)

    def check_config(self, config: str) -> None:
        """Raise :class:`AimsError` if the protocol has no rule for ``config``."""

    def frame(self, config: str, id_map: np.ndarray, ids: np.ndarray, area: np.ndarray) -> Frame:
        raise NotImplementedError

    def accepted_sizes(self, native: tuple[int, int]) -> list[tuple[int, int]]:
        """The prediction mask sizes (h, w) accepted for an image of ``native`` size, known
        without building the frame: the scorer checks every prediction's declared size
        against them before decoding it (the same list as ``Frame.accepted_sizes``)."""
        return [(int(native[0]), int(native[1]))]

    def to_dict(self, configs: list[str] | None = None) -> dict[str, Any]:
        """What the results JSON records about the protocol."""
        return {"name": self.name, "version": self.version, "eps": self.eps, "rules": dict(self.rules)}


class _AimsV1(Protocol):
    def frame(self, config: str, id_map: np.ndarray, ids: np.ndarray, area: np.ndarray) -> Frame:
        area = np.asarray(area, np.int64)
        return Frame(id_map, area, area >= self.fixed_rules["min_area"], (int(id_map.shape[0]), int(id_map.shape[1])))


class _SimCMF(Protocol):
    @property
    def rules(self) -> dict[str, Any]:
        rules = dict(self.fixed_rules)
        rules["area_filters"] = simcmf_area_filters()
        return rules

    def threshold(self, config: str) -> int:
        filters = simcmf_area_filters()
        if config not in filters:
            raise AimsError(
                f"protocol simcmf has no area filter for config {config!r} (the SimCMF reference "
                f"covers {', '.join(filters)}); score it with --protocol aims."
            )
        return int(filters[config])

    def check_config(self, config: str) -> None:
        self.threshold(config)

    def accepted_sizes(self, native: tuple[int, int]) -> list[tuple[int, int]]:
        sizes = [(int(native[0]), int(native[1]))]
        if (SIMCMF_OUTPUT, SIMCMF_OUTPUT) not in sizes:
            sizes.append((SIMCMF_OUTPUT, SIMCMF_OUTPUT))
        return sizes

    def frame(self, config: str, id_map: np.ndarray, ids: np.ndarray, area: np.ndarray) -> Frame:
        thr = self.threshold(config)
        h, w = id_map.shape
        big = warp_nearest(id_map, (SIMCMF_INPUT, SIMCMF_INPUT))
        t = torch_nearest_index(SIMCMF_INPUT, SIMCMF_OUTPUT)
        label = big.take(t, axis=0).take(t, axis=1)
        counts = np.bincount(big.ravel(), minlength=int(np.max(ids, initial=0)) + 1)
        ids = np.asarray(ids, np.int64)
        eval_area = counts[ids].astype(np.int64) if ids.size else np.zeros(0, np.int64)
        evaluated = (eval_area > 0) & (eval_area > thr)
        rows = pil_nearest_index(h, SIMCMF_INPUT)[t]
        cols = pil_nearest_index(w, SIMCMF_INPUT)[t]
        return Frame(label, eval_area, evaluated, (int(h), int(w)), rows, cols, accepts_frame_size=True)


AIMS_V1 = _AimsV1(
    name="aims",
    version="aims-v1",
    eps=0.0,
    description="IoU at native resolution; evaluated instances: area >= 100 native pixels",
    fixed_rules={"resolution": "native", "min_area": 100, "area_rule": "area >= min_area (native pixels)",
                 "dice": "2|P&G| / (|P| + |G|), float64, per instance; mean over evaluated instances"},
)

SIMCMF_V1 = _SimCMF(
    name="simcmf",
    version="simcmf-v1",
    eps=1e-6,
    description=(
        "SimCMF reference: labels PIL-nearest warped to 1024x1024, torch-nearest resized to "
        "256x256; per-source filters on the 1024 area (count > threshold); IoU eps 1e-6"
    ),
    fixed_rules={
        "resolution": "256x256 (label: native -> 1024x1024 PIL NEAREST -> 256x256 torch nearest)",
        "area_rule": "present in the 1024x1024 warped map and count > threshold",
        "prediction_sizes": "256x256 (used as is) or native (warped like the label)",
        "dice": "(2|P&G| + 1e-4) / (|P| + |G| + 1e-4) in float32 (reference eval_seg), per instance; "
                "mean over evaluated instances",
    },
    dice_eps=1e-4,
    dice_float32=True,
)

#: Protocols by CLI name and by version.
PROTOCOLS: dict[str, Protocol] = {"aims": AIMS_V1, "simcmf": SIMCMF_V1}


def get_protocol(name: str) -> Protocol:
    """Protocol by name (``aims``, ``simcmf``) or version (``aims-v1``, ``simcmf-v1``)."""
    for p in PROTOCOLS.values():
        if name in (p.name, p.version):
            return p
    raise AimsError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}.")
