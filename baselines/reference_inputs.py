"""The SimCMF reference recipe's input pipeline, as a pure function of one prepared row.

``--recipe reference`` must feed the network exactly what the reference code
(``mt-cly/SimCMF@0cdc5c1``, ``dataset.py``) feeds it, and train and evaluate on the same
targets. Each of its dataset classes does, per image:

1. read its files and turn them into an ``(H, W, C)`` array (a per-dataset recipe:
   depth and thermal are min-max scaled per image, NIR is Pillow luma, ZJU-RGBP is
   computed from four polarizer angles …);
2. ``ToTensor``, which divides by 255 **only when the whole array is uint8**;
3. ``Resize((1024, 1024))``: a bilinear warp of the tensor, aspect ratio not kept and
   **no antialiasing** (torchvision 0.12; ``docs/reference-fixtures.md``);
4. ``(x - mean) / std`` with fixed per-dataset float32 constants;
5. the label: ``convert('I')``, PIL NEAREST warp to 1024², the instance filter counted on
   that 1024² map, then a torch-nearest resize to 256²; test clicks are the middle pixel of
   each kept id (``aims.clicks.clicks_simcmf``); in training one id is drawn with
   ``np.random.choice`` from the kept ids minus the first one, and one of its pixels with
   ``np.random.randint``.

:data:`REFERENCE_INPUTS` holds these facts per reference modality key (``d``, ``rgbd``,
``t``, ``pgsnet_rgbp`` …), with the AIMS modality names that map onto each;
:func:`reference_input` runs them on a dataset row. Steps 2-5 are
:func:`reference_input_from_arrays`, so a caller holding the reference's own source arrays
(the tests do) gets the same numbers without a row.

What a row cannot give back exactly (the stored columns lose it) is listed in each step's
``note`` and in the module's tests: depth is stored in whole millimetres and temperature in
1/256 °C steps, so a min-max → uint8 code can differ by one at a truncation boundary;
palette masks are stored as palette indices, not the luma ids ``convert('I')`` produces
(pass ``id_map`` to use the reference's ids).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aims.clicks import clicks_simcmf, warp_nearest
from aims.decoders import to_array
from aims.errors import AimsError
from aims.modalities import column_tensor, modality_tensor
from aims.protocols import SIMCMF_INPUT, SIMCMF_OUTPUT, simcmf_area_filters, torch_nearest_index

__all__ = [
    "INPUT_STEPS",
    "REFERENCE_INPUTS",
    "InputStep",
    "ReferenceInput",
    "ReferenceInputSpec",
    "ReferenceTrainTarget",
    "minmax_pillow_l",
    "minmax_uint8",
    "reference_input",
    "reference_image",
    "reference_input_from_arrays",
    "reference_train_candidates",
    "reference_spec",
    "source_channels",
    "to_tensor",
    "warp_normalise",
    "zero_shot_image",
]

# ImageNet statistics in 8-bit units, as the NYUv2 loaders write them (dataset.py:684-685)
_IMAGENET_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
_IMAGENET_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)
# depth: the mean of the three ImageNet values (dataset.py:842-843) -> 0.4490 / 0.2260
_DEPTH_MEAN = (123.675 + 116.28 + 103.53) / 3 / 255
_DEPTH_STD = (58.395 + 57.12 + 57.375) / 3 / 255
_NIR_MEAN, _NIR_STD = 0.5038126, 0.20589863                     # dataset.py:1312-1313
_THERMAL_MEAN, _THERMAL_STD = 0.35632825, 0.21658015            # dataset.py:1816-1817
_PGSNET_MEAN = (0.20545432, 0.21862635, 0.15604725, 0.47199312, 0.4637443, 0.48603472,
                0.102636375, 0.10431647, 0.11925355)            # dataset.py:361
_PGSNET_STD = (0.19210099, 0.20711783, 0.18405455, 0.28202084, 0.28334478, 0.25937688,
               0.11682395, 0.118849464, 0.12313089)             # dataset.py:362
_ZJU_MEAN = (141.1251, 141.37535, 138.99559, -0.01452719, -0.014152956, -0.016532706,
             0.15173349, 0.1489902, 0.17018148)                 # dataset.py:250
_ZJU_STD = (139.9553, 140.5757, 141.13524, 0.38503787, 0.38248295, 0.3834839,
            0.13344945, 0.13081141, 0.14260896)                 # dataset.py:251


# --------------------------------------------------------------------------- source steps


def minmax_uint8(values: np.ndarray) -> np.ndarray:
    """Per-image min-max scaled to 0..255 and cast to uint8, which **truncates**
    (reference: the depth loaders, dataset.py:879-881).

    The arithmetic is numpy's on the array's own dtype, as the reference's: an integer map
    (uint16 millimetres) is divided in float64, a float32 map stays float32. A constant
    map (0/0) gives zeros, where the reference would cast NaN.
    """
    arr = np.asarray(values)
    lo, hi = arr.min(), arr.max()
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (arr - lo) / (hi - lo) * 255
    return np.nan_to_num(scaled, nan=0.0).astype(np.uint8)


def minmax_pillow_l(values: np.ndarray) -> np.ndarray:
    """Per-image min-max × 255, then Pillow mode ``F`` → ``convert('L')`` (reference: the
    thermal loaders, dataset.py:1830-1832).

    Pillow itself does the last step because its rules are the fact being reproduced: a
    float64 array is rounded to float32 on the way in, and F→L truncates (254.999 → 254).
    The min-max runs in the array's own dtype (the release's ``temperature.npy`` is
    float64). A constant map gives zeros.
    """
    from PIL import Image

    arr = np.asarray(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (arr - np.min(arr)) / (np.max(arr) - np.min(arr)) * 255
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.asarray(Image.fromarray(np.ascontiguousarray(scaled)).convert("L"))


def _chw(arr: np.ndarray) -> np.ndarray:
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _codes8(cell: Any) -> np.ndarray:
    """An 8-bit image column as Pillow hands it to the reference: grey → 1 channel, colour
    → 3. A 16-bit colour column (RGBP-Glass's RGB) becomes its high byte, which is all
    Pillow decodes from the release's 16-bit TIFF (docs/release-evidence.md §3)."""
    arr = to_array(cell)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        arr = arr[:, :, :3]
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise AimsError(f"expected an 8-bit grey or colour image column, got {arr.dtype} {arr.shape}")
    return _chw(arr)


def _step_codes8(row: Mapping[str, Any], columns: Sequence[str]) -> np.ndarray:
    return np.concatenate([_codes8(row[c]) for c in columns], axis=0)


def _step_codes8_file_order(row: Mapping[str, Any], columns: Sequence[str]) -> np.ndarray:
    # AIMS stores RGBP-Glass AoLP/DoLP as R,G,B (the TIFF's channels reversed); the reference
    # reads the TIFF's channels in file order (dataset.py:383-396, no reordering)
    return np.concatenate([_codes8(row[c])[::-1] for c in columns], axis=0)


def _step_depth(row: Mapping[str, Any], columns: Sequence[str]) -> np.ndarray:
    (column,) = columns
    mm = to_array(row[column])
    if mm.ndim == 3 and mm.shape[2] == 1:
        mm = mm[:, :, 0]
    if mm.ndim != 2 or mm.dtype.kind not in "ui":
        raise AimsError(f"column {column!r}: expected integer millimetres, got {mm.dtype} {mm.shape}")
    return minmax_uint8(mm)[None]


def _step_temperature(row: Mapping[str, Any], columns: Sequence[str]) -> np.ndarray:
    (column,) = columns
    # the column's °C are exact in float32 (code / 256 - 80); float64 is the release's dtype
    celsius = column_tensor(column, row[column])[0].astype(np.float64)
    return minmax_pillow_l(celsius)[None]


def _step_stokes(row: Mapping[str, Any], columns: Sequence[str]) -> np.ndarray:
    out = modality_tensor({c: row[c] for c in columns}, "polarization-zju-simcmf")
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class InputStep:
    """A named way from stored columns to the reference's source array: ``(c, H, W)``
    uint8 (ToTensor will divide by 255) or float32 (it will not)."""

    name: str
    run: Callable[[Mapping[str, Any], Sequence[str]], np.ndarray]
    meaning: str
    #: what the stored column cannot give back (empty: the step is exact)
    note: str = ""


INPUT_STEPS: dict[str, InputStep] = {s.name: s for s in (
    InputStep("codes8", _step_codes8,
              "8-bit codes as Pillow reads the file (grey: 1 channel, colour: 3; a 16-bit "
              "colour column gives its high byte, as Pillow decodes RGBP-Glass's TIFFs)"),
    InputStep("codes8_file_order", _step_codes8_file_order,
              "8-bit codes in the source file's channel order (AIMS stores RGBP-Glass "
              "AoLP/DoLP reversed to R,G,B; the reference does not reorder)"),
    InputStep("depth_minmax_uint8", _step_depth,
              "per-image min-max of the depth map x 255 -> uint8 (truncates); zeros count "
              "as the minimum (dataset.py:879-881)",
              note="AIMS stores whole millimetres; a metre-valued .npy min-maxed in float "
                   "can land one code apart where a value sits on a truncation boundary"),
    InputStep("temperature_minmax_pillow_l", _step_temperature,
              "per-image min-max of degrees C x 255 -> Pillow F -> L (truncates) "
              "(dataset.py:1830-1832)",
              note="AIMS stores 1/256 degC steps; the release's float64 values can land "
                   "one code apart where a value sits on a truncation boundary"),
    InputStep("stokes_simcmf", _step_stokes,
              "I = (I0+I45+I90+I135)/2 + 1e-4, AoLP = atan(U/Q)/2, DoLP = min(sqrt(Q^2+U^2)/I, 1) "
              "on the 0..255 codes, float32, not divided by 255 (dataset.py:271-286; "
              "aims.decoders.stokes_simcmf)"),
)}


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ReferenceInputSpec:
    """What one reference loader does, as data: which columns of which AIMS config it
    reads through which steps, its normalisation constants and its instance rules."""

    key: str                            #: the reference's ``--modality`` value
    config: str                         #: the AIMS config whose rows it reads
    loader: str                         #: reference class and lines (fact source)
    steps: tuple[tuple[str, tuple[str, ...]], ...]   #: (INPUT_STEPS name, columns), stacked in order
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: test ids: "positive" keeps ids > 0 with 1024² count > threshold; "drop_first" keeps
    #: every present value but the smallest (the thermal loaders assume it is background)
    test_ids: str = "positive"
    #: AIMS modality names this key reproduces
    modalities: tuple[str, ...] = ()
    #: few-shot lists keep every n-th CSV row (dataset.py:1604-1609, 1707-1712)
    train_every: int = 1
    test_every: int = 1

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def area_threshold(self) -> int:
        """The reference's instance-area threshold on the 1024² map (test keeps ``count >
        t``, training ``count >= t``); the same number protocol ``simcmf`` scores with,
        read from the config's record so it is written in one place."""
        filters = simcmf_area_filters()
        if self.config not in filters:
            raise AimsError(f"config {self.config!r} has no SimCMF area filter in its record")
        return int(filters[self.config])

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The constants as the reference holds them: float32 ``(C, 1, 1)``."""
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return mean, std


def _spec(key: str, config: str, loader: str, steps: Sequence[tuple[str, Sequence[str]]],
          mean: Sequence[float], std: Sequence[float], **kw: Any) -> ReferenceInputSpec:
    return ReferenceInputSpec(key, config, loader, tuple((s, tuple(c)) for s, c in steps),
                              tuple(mean), tuple(std), **kw)


_THERMAL = (("temperature_minmax_pillow_l", ("temperature",)),)
_RGB_THERMAL = (("codes8", ("rgb",)),) + _THERMAL
_RGBT_MEAN = (0.37960503, 0.39143142, 0.3845801, _THERMAL_MEAN)   # dataset.py:1514
_RGBT_STD = (0.22783901, 0.2329615, 0.2352449, _THERMAL_STD)      # dataset.py:1515

#: reference modality key -> its input pipeline (every key ``get_dataloader`` reaches)
REFERENCE_INPUTS: dict[str, ReferenceInputSpec] = {s.key: s for s in (
    _spec("d", "depth", "NYUDv2_D, dataset.py:839-992", [("depth_minmax_uint8", ["depth"])],
          [_DEPTH_MEAN], [_DEPTH_STD], modalities=("depth",)),
    _spec("rgbd", "depth", "NYUDv2_RGBD, dataset.py:681-838",
          [("codes8", ["rgb"]), ("depth_minmax_uint8", ["depth"])],
          _IMAGENET_MEAN + (_DEPTH_MEAN,), _IMAGENET_STD + (_DEPTH_STD,), modalities=("rgb-depth",)),
    _spec("hha", "hha", "NYUDv2_HHA, dataset.py:1150-1308", [("codes8", ["hha"])],
          _IMAGENET_MEAN, _IMAGENET_STD, modalities=("hha",)),
    _spec("rgbhha", "hha", "NYUDv2_RGBHHA, dataset.py:993-1149", [("codes8", ["rgb", "hha"])],
          _IMAGENET_MEAN * 2, _IMAGENET_STD * 2, modalities=("rgb-hha",)),
    _spec("nir", "nir", "NIR, dataset.py:1309-1407", [("codes8", ["nir"])],
          [_NIR_MEAN], [_NIR_STD], modalities=("nir",)),
    _spec("rgbnir", "nir", "RGBNIR, dataset.py:1408-1501", [("codes8", ["rgb", "nir"])],
          (0.43030727, 0.43242943, 0.41996416, _NIR_MEAN),           # dataset.py:1411
          (0.25075516, 0.24733004, 0.26631436, _NIR_STD), modalities=("rgb-nir",)),
    _spec("t", "thermal", "Thermal, dataset.py:1804-1908", _THERMAL, [_THERMAL_MEAN], [_THERMAL_STD],
          test_ids="drop_first", modalities=("thermal",)),
    _spec("rgbt", "thermal", "RGBThermal, dataset.py:1502-1597", _RGB_THERMAL, _RGBT_MEAN, _RGBT_STD,
          test_ids="drop_first", modalities=("rgb-thermal",)),
    _spec("t_500", "thermal", "Thermal_500, dataset.py:1701-1803", _THERMAL, [_THERMAL_MEAN],
          [_THERMAL_STD], test_ids="drop_first", train_every=10, test_every=2),
    _spec("rgbt_500", "thermal", "RGBThermal_500, dataset.py:1598-1700", _RGB_THERMAL, _RGBT_MEAN,
          _RGBT_STD, test_ids="drop_first", train_every=10, test_every=2),
    _spec("pgsnet_rgbp", "polarization", "PGSNet_RGBP, dataset.py:358-462",
          [("codes8", ["rgb"]), ("codes8_file_order", ["aolp", "dolp"])],
          _PGSNET_MEAN, _PGSNET_STD, modalities=("polarization",)),
    _spec("pgsnet_p", "polarization", "PGSNet_P, dataset.py:463-583",
          [("codes8_file_order", ["aolp", "dolp"])], _PGSNET_MEAN[3:], _PGSNET_STD[3:]),
    _spec("zju-rgbp", "polarization-zju", "ZJU_RGBP, dataset.py:247-357",
          [("stokes_simcmf", ["angle_0", "angle_45", "angle_90", "angle_135"])],
          _ZJU_MEAN, _ZJU_STD, modalities=("polarization-zju", "polarization-zju-simcmf")),
)}


def reference_spec(name: str) -> ReferenceInputSpec:
    """The spec of a reference key (``d``, ``t``, ``zju-rgbp`` …) or of the AIMS modality or
    config it reproduces (``depth``, ``rgb-thermal``, ``polarization`` …)."""
    if name in REFERENCE_INPUTS:
        return REFERENCE_INPUTS[name]
    for spec in REFERENCE_INPUTS.values():
        if name in spec.modalities:
            return spec
    known = sorted(set(REFERENCE_INPUTS) | {m for s in REFERENCE_INPUTS.values() for m in s.modalities})
    raise AimsError(f"the SimCMF reference has no input pipeline for {name!r}; known: {', '.join(known)}")


# --------------------------------------------------------------------------- tensor stages


def to_tensor(channels: np.ndarray) -> torch.Tensor:
    """torchvision ``ToTensor`` on a stacked ``(C, H, W)`` array: float32 / 255 when the
    array is uint8, float32 as is otherwise (ZJU-RGBP's float values are not rescaled)."""
    arr = np.ascontiguousarray(channels)
    t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div(255)
    return t.to(torch.float32)


def warp_normalise(x: torch.Tensor, spec: ReferenceInputSpec, size: int = SIMCMF_INPUT) -> torch.Tensor:
    """``Resize((size, size))`` as torchvision 0.12 does it on a tensor (bilinear,
    ``align_corners=False``, no antialiasing), then ``(x - mean) / std``.

    Bit-identical to the fixtures with one intra-op thread; with several, PyTorch's CPU
    kernel may round a 3-channel warp differently in the last bit (≤ 1e-6 here)."""
    y = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
    mean, std = spec.mean_std()
    return (y - mean) / std


def zero_shot_image(image: torch.Tensor) -> torch.Tensor:
    """The reference's zero-shot input (``models/projector.py:471-475``): the first three
    dataset-normalised channels, a 1- or 2-channel input padded by repeating its last
    channel. Works on ``(C, H, W)`` and ``(B, C, H, W)``."""
    c = image.shape[-3]
    if c < 3:
        last = image.narrow(-3, c - 1, 1)
        image = torch.cat([image] + [last] * (3 - c), dim=-3)
    return image.narrow(-3, 0, 3)


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class ReferenceTrainTarget:
    """One training draw: the region id, its click (1, 2) as (x, y) in the 1024² frame,
    and the 0/1 label (1, 256, 256)."""

    region_id: int
    click: np.ndarray
    label: torch.Tensor


@dataclass(frozen=True, eq=False)
class ReferenceInput:
    """What a reference loader returns for one image, split into input and targets.

    ``image``: the network input (C, 1024, 1024) float32, normalised. ``to_tensor``: the
    ToTensor stage (C, H, W) at source size, before the warp. ``label``: the test label
    (1, 256, 256) int32 of region ids. ``ids`` / ``clicks`` / ``point_labels``: the test
    instances, clicks (x, y) in the 1024² frame, all positive. ``train_candidates``: the
    ids a training draw chooses from (:meth:`train_target`). The reference's test loader
    fails on an image with no kept id; here ``ids`` is then empty."""

    spec: ReferenceInputSpec
    image: torch.Tensor
    to_tensor: torch.Tensor
    label: torch.Tensor
    ids: np.ndarray
    clicks: np.ndarray
    point_labels: np.ndarray
    train_candidates: np.ndarray
    #: the 1024² id map the reference counts and clicks on
    warped_ids: np.ndarray = field(repr=False)

    def train_target(self, rng: Any = None) -> ReferenceTrainTarget:
        """One training draw as the reference makes it: ``rng.choice`` of an id, then
        ``rng.randint`` over its 1024² pixels in raster order (``utils.py:285-300``).
        ``rng``: a ``np.random.RandomState``; None uses numpy's global state, as the
        reference does (its stream continues across the unshuffled loader's rows)."""
        draw = np.random if rng is None else rng
        if self.train_candidates.size == 0:
            raise AimsError(f"no training instance: every id of this image is background or below "
                            f"the area threshold of {self.spec.key!r} (the reference would fail here)")
        region_id = int(draw.choice(self.train_candidates))
        pixels = np.flatnonzero(self.warped_ids.ravel() == region_id)
        y, x = divmod(int(pixels[draw.randint(len(pixels))]), self.warped_ids.shape[1])
        label = (self.label == region_id).to(torch.int32)
        return ReferenceTrainTarget(region_id, np.array([[x, y]], np.int32), label)


def _region_counts(warped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(mask, return_counts=True)`` of the 1024² map (a histogram when the ids
    are small, which AIMS's uint16 maps always are)."""
    if int(warped.max(initial=0)) > 65535:
        return np.unique(warped, return_counts=True)
    counts = np.bincount(warped.ravel())
    values = np.flatnonzero(counts)
    return values, counts[values]


def _train_candidates(values: np.ndarray, counts: np.ndarray, threshold: int) -> np.ndarray:
    # np.delete(values, counts < THR)[1:]: the first remaining value is taken for background
    return values[counts >= threshold][1:].astype(np.int64)


def reference_train_candidates(id_map: np.ndarray, spec: ReferenceInputSpec | str) -> np.ndarray:
    """The ids a training draw of the reference chooses from for this label (warped to
    1024², counted there, ids under the area threshold dropped, then the first remaining
    one); empty where the reference's loader would fail."""
    spec = reference_spec(spec) if isinstance(spec, str) else spec
    values, counts = _region_counts(warp_nearest(np.asarray(id_map), (SIMCMF_INPUT, SIMCMF_INPUT)))
    return _train_candidates(values, counts, spec.area_threshold)


def reference_input_from_arrays(channels: np.ndarray, id_map: np.ndarray,
                                spec: ReferenceInputSpec | str, *, image_size: int = SIMCMF_INPUT,
                                test_clicks: bool = True) -> ReferenceInput:
    """Steps 2-5 of the module docstring on the reference's source arrays: ``channels``
    (C, H, W) uint8 or float32 as its loader stacks them, ``id_map`` (H', W') the label as
    ``convert('I')`` reads it (any size: the label is warped on its own).

    ``image_size``: the side the image is warped to (the reference: 1024). Only a smaller
    test model changes it; labels, thresholds and clicks stay in the reference's 1024²
    frame. ``test_clicks=False`` skips the test clicks (training needs none)."""
    spec = reference_spec(spec) if isinstance(spec, str) else spec
    channels = np.asarray(channels)
    if channels.ndim != 3 or channels.shape[0] != spec.channels:
        raise AimsError(f"{spec.key!r} takes {spec.channels} channels (C, H, W), got {channels.shape}")
    if channels.dtype not in (np.uint8, np.float32):
        raise AimsError(f"reference source arrays are uint8 or float32, got {channels.dtype}")
    id_map = np.asarray(id_map)
    if id_map.ndim != 2 or id_map.dtype.kind not in "ui" or (id_map.size and int(id_map.min()) < 0):
        raise AimsError(f"the label must be a 2-D map of non-negative integer ids, got "
                        f"{id_map.dtype} {id_map.shape}")
    pre = to_tensor(channels)
    image = warp_normalise(pre, spec, image_size)

    warped = warp_nearest(id_map, (SIMCMF_INPUT, SIMCMF_INPUT))
    t = torch_nearest_index(SIMCMF_INPUT, SIMCMF_OUTPUT)
    label = torch.from_numpy(warped.take(t, axis=0).take(t, axis=1).astype(np.int32))[None]
    values, counts = _region_counts(warped)
    thr = spec.area_threshold
    if spec.test_ids == "drop_first":
        ids = values[1:]
    else:
        ids = values[(values > 0) & (counts > thr)]
    ids = ids.astype(np.int64)
    clicks = clicks_simcmf(id_map, ids) if ids.size and test_clicks else np.zeros((0, 2), np.int32)
    candidates = _train_candidates(values, counts, thr)
    return ReferenceInput(spec, image, pre, label, ids, clicks, np.ones(ids.size, np.int32),
                          candidates, warped)


def source_channels(row: Mapping[str, Any], spec: ReferenceInputSpec | str) -> np.ndarray:
    """The reference's stacked source array (C, H, W) rebuilt from a row's columns."""
    spec = reference_spec(spec) if isinstance(spec, str) else spec
    missing = [c for _, cols in spec.steps for c in cols if c not in row]
    if missing:
        raise AimsError(f"{spec.key!r} reads columns {missing}, which this row lacks; load config "
                        f"{spec.config!r} (row columns: {', '.join(map(str, row))})")
    parts = [INPUT_STEPS[name].run(row, cols) for name, cols in spec.steps]
    kinds = {p.dtype for p in parts}
    if len(kinds) != 1:
        raise AimsError(f"{spec.key!r}: steps give mixed dtypes {sorted(map(str, kinds))}")
    return np.concatenate(parts, axis=0)


def reference_input(row: Mapping[str, Any], config: str | ReferenceInputSpec, *,
                    id_map: np.ndarray | None = None, image_size: int = SIMCMF_INPUT,
                    test_clicks: bool = True) -> ReferenceInput:
    """The reference recipe's network input and targets for one prepared AIMS row.

    ``config``: a reference key (``d``, ``rgbt``, ``pgsnet_rgbp`` …) or the AIMS modality /
    config it reproduces (``depth``, ``rgb-thermal``, ``polarization`` …). ``id_map``: the
    label as the reference reads it, when it differs from the row's ``instances`` (a
    palette mask, whose ``convert('I')`` ids are palette lumas); default the row's map.
    """
    spec = reference_spec(config) if isinstance(config, str) else config
    channels = source_channels(row, spec)
    if id_map is None:
        if "instances" not in row:
            raise AimsError("the row has no 'instances' column (the instance-id map)")
        id_map = to_array(row["instances"])
    if tuple(np.asarray(id_map).shape[:2]) != channels.shape[1:]:
        raise AimsError(f"label {np.asarray(id_map).shape[:2]} and image {channels.shape[1:]} sizes differ")
    return reference_input_from_arrays(channels, id_map, spec, image_size=image_size, test_clicks=test_clicks)


def reference_image(row: Mapping[str, Any], spec: ReferenceInputSpec | str,
                    image_size: int = SIMCMF_INPUT) -> torch.Tensor:
    """Only the network input (C, S, S) of one row: what prediction needs, without the
    label work of :func:`reference_input`."""
    spec = reference_spec(spec) if isinstance(spec, str) else spec
    return warp_normalise(to_tensor(source_channels(row, spec)), spec, image_size)
