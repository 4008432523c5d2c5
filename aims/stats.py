"""Streaming per-channel mean and standard deviation.

The dataset card publishes per-channel mean/std of every modality column on the train
split, so that models normalise inputs the same way. The train split does not fit in memory
as float arrays, so statistics are accumulated image by image with the parallel
(Chan et al.) update of count, mean and sum of squared deviations, in float64: this is
numerically stable (no ``E[x²] - E[x]²`` cancellation) and two accumulators from parallel
workers merge exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ChannelStats:
    """Per-channel running mean/std over ``(C, H, W)`` arrays (population std, ddof=0,
    like ``numpy.std``). ``count`` is the number of values seen per channel."""

    def __init__(self, channels: int | None = None) -> None:
        self._channels = channels
        self._count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    @property
    def channels(self) -> int | None:
        """Number of channels, fixed by the first update (or the constructor)."""
        return self._channels

    @property
    def count(self) -> int:
        """Values accumulated per channel (pixels × images)."""
        return self._count

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if n_b == 0:
            return
        if self._count == 0 or self._mean is None or self._m2 is None:
            self._count, self._mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n_a = self._count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta * delta * (n_a * n_b / n)
        self._count = n

    def _check_channels(self, channels: int) -> None:
        if self._channels is None:
            self._channels = channels
        elif self._channels != channels:
            raise ValueError(
                f"ChannelStats has {self._channels} channels, got an array with {channels}"
            )

    def update(self, array: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image. ``array`` is ``(C, H, W)`` (a ``(H, W)`` array counts as one
        channel). ``valid`` is an optional ``(H, W)`` boolean mask of pixels to include
        (e.g. to leave missing depth out); by default every pixel counts."""
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"ChannelStats.update expects (C, H, W), got shape {arr.shape}")
        self._check_channels(arr.shape[0])
        flat = arr.reshape(arr.shape[0], -1).astype(np.float64, copy=False)
        if valid is not None:
            mask = np.asarray(valid, dtype=bool)
            if mask.shape != arr.shape[1:]:
                raise ValueError(f"valid mask shape {mask.shape} != image shape {arr.shape[1:]}")
            flat = flat[:, mask.reshape(-1)]
        n_b = flat.shape[1]
        if n_b == 0:
            return
        mean_b = flat.mean(axis=1)
        m2_b = ((flat - mean_b[:, None]) ** 2).sum(axis=1)
        self._combine(n_b, mean_b, m2_b)

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Fold another accumulator (e.g. from a parallel worker) into this one; returns self."""
        if other._channels is not None:
            self._check_channels(other._channels)
        if other._count and other._mean is not None and other._m2 is not None:
            self._combine(other._count, other._mean, other._m2)
        return self

    @property
    def mean(self) -> list[float]:
        """Per-channel mean; empty list before any value was seen."""
        return [] if self._mean is None else [float(v) for v in self._mean]

    @property
    def std(self) -> list[float]:
        """Per-channel population standard deviation; empty list before any value."""
        if self._m2 is None or self._count == 0:
            return []
        return [float(v) for v in np.sqrt(np.maximum(self._m2 / self._count, 0.0))]

    def to_dict(self) -> dict[str, Any]:
        """``{"mean": [...], "std": [...], "count": n}``, the form stored in the card."""
        return {"mean": self.mean, "std": self.std, "count": self._count}

    def __repr__(self) -> str:
        return f"ChannelStats(count={self._count}, mean={self.mean}, std={self.std})"
