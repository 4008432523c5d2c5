"""From prepared dataset rows to SAM's inputs, and from SAM's outputs back to native masks.

Geometry (``--resize``):

- ``sam`` (default): SAM's own preprocessing — scale the longest side to S (1024), keep the
  aspect ratio, pad bottom/right with zeros (after normalisation, i.e. with the mean);
  masks come back by upsampling the logits to S×S, cropping the padding and resizing to the
  native size (SAM's ``postprocess_masks``).
- ``warp``: the SimCMF reference code — stretch to S×S (aspect ratio lost), labels by
  nearest neighbour; required by protocol ``simcmf``.

Inputs are normalised per channel with the config's train-split statistics (``channel_stats``
in ``aims_config.json``, computed by ``aims prepare`` with the same :func:`aims.modality_tensor`
rules); plain RGB (zero-shot SAM) uses SAM's own ImageNet normalisation instead.

Input prior (``prior``): ``None`` feeds a modality exactly as its record stacks it (the RGB-X
pseudo modalities channel-shuffled); ``rgb-x-unshuffled`` feeds the same columns without the
shuffle, RGB first (the RGB-X systems of :mod:`aims.baselines.rgbx_systems`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aims.baselines.choices import RESIZE_MODES, RGBX_INPUT_PRIOR
from aims.decoders import to_array
from aims.errors import AimsError
from aims.modalities import MODALITY_STACKS, Modality, modality_spec, stack_tensor



# ------------------------------------------------------------------------- normalisation

@dataclass(frozen=True)
class Normalizer:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (x - mean) / std


def input_stack(modality: str, prior: str | None = None) -> Modality:
    """The stack a model is fed for ``modality`` under input prior ``prior``: the record's
    own, or (``rgb-x-unshuffled``) the same RGB-X columns without the channel shuffle, RGB
    first, derived from the same record so the two can never disagree on columns."""
    if prior is None:
        return modality_spec(modality)
    if prior != RGBX_INPUT_PRIOR:
        raise AimsError(f"unknown input prior {prior!r}; known: {RGBX_INPUT_PRIOR}")
    spec = modality_spec(modality)
    if "rgb" not in spec.columns or len(spec.columns) < 2 or spec.combine is not None:
        raise AimsError(f"modality {modality!r} stacks {', '.join(spec.columns)}: not RGB and another "
                        f"column, so it has no {RGBX_INPUT_PRIOR} form.")
    columns = ("rgb",) + tuple(c for c in spec.columns if c != "rgb")
    return Modality(spec.name, columns, None, f"{spec.description} ({RGBX_INPUT_PRIOR})")


def modality_normalizer(modality: str, channel_stats: dict[str, dict[str, list[float]]],
                        prior: str | None = None) -> Normalizer:
    """Per-channel mean/std of ``modality`` from a config's column statistics, stacked and
    permuted exactly as :func:`aims.modality_tensor` stacks the channels (or as
    :func:`input_stack` does under ``prior``)."""
    from aims.baselines.sam_loading import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    if modality == "rgb" and prior is None:
        return Normalizer(tuple(m / 255 for m in SAM_PIXEL_MEAN), tuple(s / 255 for s in SAM_PIXEL_STD))
    if prior is not None:
        spec = input_stack(modality, prior)
    else:
        spec = MODALITY_STACKS.get(modality)
    if spec is None:
        raise AimsError(f"unknown modality {modality!r}; known: {', '.join(MODALITY_STACKS)}")
    if spec.combine is not None:  # computed channels (e.g. Stokes) have their own statistics
        stats = channel_stats.get(modality)
        if not stats:
            raise AimsError(f"the config has no channel statistics for modality {modality!r}; "
                            "re-run `aims prepare` with this version of aims.")
        return Normalizer(tuple(stats["mean"]), tuple(max(s, 1e-6) for s in stats["std"]))
    mean: list[float] = []
    std: list[float] = []
    for column in spec.columns:
        stats = channel_stats.get(column)
        if not stats:
            raise AimsError(f"the config has no channel statistics for column {column!r} "
                            f"(needed to normalise modality {modality!r}); re-run `aims prepare`.")
        mean += list(stats["mean"])
        std += list(stats["std"])
    perm = spec.permutation()
    if perm is not None:
        mean = [mean[i] for i in perm]
        std = [std[i] for i in perm]
    return Normalizer(tuple(mean), tuple(max(s, 1e-6) for s in std))


# ------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Frame:
    """How a native h×w image sits in the model's S×S input."""

    height: int
    width: int
    size: int
    mode: str

    @property
    def resized(self) -> tuple[int, int]:
        if self.mode == "warp":
            return self.size, self.size
        scale = self.size / max(self.height, self.width)
        return int(self.height * scale + 0.5), int(self.width * scale + 0.5)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """(…, 2) native (x, y) → model frame (SAM's ``apply_coords``)."""
        nh, nw = self.resized
        out = np.asarray(xy, np.float32).copy()
        out[..., 0] *= nw / self.width
        out[..., 1] *= nh / self.height
        return out


def frame_for(height: int, width: int, size: int, mode: str) -> Frame:
    if mode not in RESIZE_MODES:
        raise AimsError(f"unknown --resize {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    return Frame(height, width, size, mode)


def to_model_input(x: np.ndarray, frame: Frame) -> torch.Tensor:
    """Normalised (C, h, w) → (C, S, S): resize (bilinear, antialiased) and zero-pad."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    nh, nw = frame.resized
    if (nh, nw) != t.shape[-2:]:
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    t = F.pad(t, (0, frame.size - nw, 0, frame.size - nh))
    return t[0]


def mask_to_model(mask: np.ndarray, frame: Frame, out_size: int) -> torch.Tensor:
    """Native bool (h, w) → float (out, out) target in the model frame (nearest neighbour
    to S×S as the image, padding = background, then nearest down to the logits' grid)."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None].float()
    nh, nw = frame.resized
    t = F.interpolate(t, size=(nh, nw), mode="nearest")
    t = F.pad(t, (0, frame.size - nw, 0, frame.size - nh))
    if out_size != frame.size:
        t = F.interpolate(t, size=(out_size, out_size), mode="nearest")
    return t[0, 0]


def logits_to_native(low_res: torch.Tensor, frame: Frame) -> torch.Tensor:
    """(P, s, s) low-resolution logits → bool (P, h, w) at native resolution
    (SAM's ``postprocess_masks``: upsample to S×S, crop the padding, resize, threshold 0)."""
    x = low_res[:, None].float()
    x = F.interpolate(x, size=(frame.size, frame.size), mode="bilinear", align_corners=False)
    nh, nw = frame.resized
    x = x[..., :nh, :nw]
    x = F.interpolate(x, size=(frame.height, frame.width), mode="bilinear", align_corners=False)
    return x[:, 0] > 0


# ------------------------------------------------------------------------- rows

@dataclass
class ImageRecord:
    """One test/validation image, ready for the model."""

    image_id: str
    pixel_values: torch.Tensor           # (C, S, S)
    frame: Frame
    instance_ids: list[int]
    points: np.ndarray                   # (P, 2) in the model frame
    instances: np.ndarray                # native instance-id map (h, w)


def load_split(config: str, split: str, data_dir: str | Path | None) -> Any:
    import datasets

    from aims.loader import load_dataset

    datasets.disable_progress_bars()
    return load_dataset(config, split, data_dir=data_dir)


def available_splits(config: str, data_dir: str | Path | None) -> list[str]:
    folder = _config_dir(config, data_dir)
    return sorted({p.name.split("-", 1)[0] for p in folder.glob("*.parquet")})


def _config_dir(config: str, data_dir: str | Path | None) -> Path:
    from aims.loader import dataset_root      # the folder aims.load_dataset would read

    return dataset_root(data_dir, config) / config


def config_channel_stats(config: str, data_dir: str | Path | None) -> dict[str, Any]:
    """The config's channel statistics; registers the dataset's records on the way, so a
    config prepared from a user's own record has its modality in this process."""
    from aims.config_info import ConfigInfo
    from aims.converters.registry import register_prepared_records

    path = _config_dir(config, data_dir)
    register_prepared_records(path.parent)
    try:
        return ConfigInfo.load(path).channel_stats
    except FileNotFoundError:
        raise AimsError(f"{path} has no aims_config.json; prepare the config first "
                        f"(`aims prepare --modality {config}`).") from None


def validation_carve(image_ids: list[str], fraction: float = 0.1) -> set[str]:
    """A deterministic validation subset of train ids for configs prepared without a
    validation split (at least one image): the ids with the lowest stable hash key."""
    from aims.splits import split_fraction_key

    n = max(1, int(round(fraction * len(image_ids))))
    return set(sorted(image_ids, key=split_fraction_key)[:n])


class SampleSource:
    """Rows of one split turned into model inputs (shared by training and prediction)."""

    def __init__(self, rows: Any, modality: str, normalizer: Normalizer, size: int, resize: str,
                 indices: list[int] | None = None, prior: str | None = None) -> None:
        self.rows = rows
        self.modality = modality
        self.prior = prior
        self.normalizer = normalizer
        self.size = size
        self.resize = resize
        self.indices = list(range(len(rows))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def row(self, i: int) -> dict[str, Any]:
        return self.rows[self.indices[i]]

    @cached_property
    def stack(self) -> Modality:
        """The columns this source stacks (looked up on first use: subclasses that read
        rows their own way never need it)."""
        return input_stack(self.modality, self.prior)

    def image(self, row: dict[str, Any]) -> tuple[torch.Tensor, Frame]:
        x = self.normalizer(stack_tensor(self.stack, row))
        frame = frame_for(x.shape[1], x.shape[2], self.size, self.resize)
        return to_model_input(x, frame), frame

    def record(self, i: int, *, protocol: str = "aims") -> ImageRecord:
        row = self.row(i)
        pixels, frame = self.image(row)
        instances = to_array(row["instances"])
        if protocol == "simcmf":
            # clicks stored in the 1024×1024 warped frame of the reference code
            pts = np.asarray(row["point_simcmf"], np.float32).reshape(-1, 2) * (self.size / 1024.0)
        else:
            pts = frame.points(np.asarray(row["point"], np.float32).reshape(-1, 2))
        return ImageRecord(str(row["image_id"]), pixels, frame, [int(v) for v in row["instance_ids"]],
                           pts, instances)


class TrainSamples(torch.utils.data.Dataset):
    """One training sample per image per epoch: a random instance of the image and one
    uniformly random positive click inside it (the paper's recipe). The randomness is keyed
    on (seed, epoch, index) so workers, resumes and reruns draw the same samples."""

    def __init__(self, source: SampleSource, low_res: int, seed: int = 0) -> None:
        self.source = source
        self.low_res = low_res
        self.seed = seed
        self.epoch = 0
        counts = [len(v) for v in source.rows.select_columns(["instance_ids"])["instance_ids"]]
        self.keep = [i for i, row in enumerate(source.indices) if counts[row]]

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = self.keep[k]
        row = self.source.row(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pixels, frame = self.source.image(row)
        ids = list(row["instance_ids"])
        inst = ids[int(rng.integers(len(ids)))]
        mask = to_array(row["instances"]) == inst
        ys, xs = np.nonzero(mask)
        j = int(rng.integers(len(xs)))
        point = frame.points(np.array([[xs[j], ys[j]]], np.float32))
        target = mask_to_model(mask, frame, self.low_res)
        return {"pixel_values": pixels, "points": torch.from_numpy(point)[None],   # (1, 1, 2)
                "labels": torch.ones(1, 1, dtype=torch.long), "target": target[None]}  # (1, s, s)


__all__ = ["Frame", "ImageRecord", "Normalizer", "RESIZE_MODES", "SampleSource", "TrainSamples",
           "available_splits", "config_channel_stats", "frame_for", "input_stack", "load_split", "logits_to_native",
           "mask_to_model", "modality_normalizer", "to_model_input", "validation_carve"]
