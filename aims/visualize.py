"""Pictures of a prepared dataset: per-image panels and per-config statistics plots.

A panel shows what a model sees and what it is scored against, like the qualitative
figure of the SimCMF paper: the RGB frame, every modality column (false colour for single
channels), the ground-truth instances with their click points, and — given predictions —
the predicted masks with their IoU. Plots are drawn with matplotlib's Agg backend, so they
work on machines without a display.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aims.atomic import atomic_write_bytes
from aims.decoders import to_array
from aims.errors import AimsError

#: instance colours: a fixed golden-angle palette, so an id keeps its colour across panels
_GOLDEN = 0.618033988749895


def instance_colours(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours in [0, 1]."""
    import colorsys

    return np.array([colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, 0.75, 0.95) for i in range(n)])


def false_colour(channel: np.ndarray, cmap: str = "turbo", valid: np.ndarray | None = None) -> np.ndarray:
    """One channel → RGB float image, stretched between its 1st and 99th percentiles so a
    few extreme pixels (sensor holes, hot spots) don't flatten the picture."""
    from matplotlib import colormaps

    values = channel.astype(np.float64)
    mask = np.isfinite(values) if valid is None else valid & np.isfinite(values)
    if mask.any():
        lo, hi = np.percentile(values[mask], [1, 99])
    else:
        lo, hi = 0.0, 1.0
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = colormaps[cmap](scaled)[..., :3]
    rgb[~mask] = 0.0
    return rgb


def column_picture(array: np.ndarray) -> np.ndarray:
    """How one stored image column is shown: colour images as they are, single channels
    (depth, thermal, NIR) in false colour with missing values (0) in black."""
    if array.ndim == 3 and array.shape[2] >= 3 and array.dtype == np.uint8:
        return array[..., :3] / 255.0
    channel = array if array.ndim == 2 else array[..., 0]
    return false_colour(channel, valid=channel != 0 if np.issubdtype(channel.dtype, np.integer) else None)


def overlay_instances(base: np.ndarray, id_map: np.ndarray, ids: Sequence[int], alpha: float = 0.55) -> np.ndarray:
    """Instances painted over ``base`` (float RGB), with their boundaries drawn solid."""
    import cv2

    out = base.astype(np.float64).copy()
    colours = instance_colours(len(ids))
    for colour, inst in zip(colours, ids):
        mask = id_map == inst
        if not mask.any():
            continue
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        edge = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        out[edge] = colour
    return out


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (a reader never sees half a picture), close it, and
    turn a folder that cannot be written into an :class:`AimsError` naming it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise AimsError(f"cannot write {path} ({exc.strerror}); choose an --out folder you can "
                        "write to, with no file where a sub-folder goes.", path=path) from None


def render_panel(
    example: Mapping,
    config: str,
    path: Path,
    *,
    modality_columns: Sequence[str],
    predictions: Mapping[int, np.ndarray] | None = None,
    ious: Mapping[int, float] | None = None,
    category_names: Sequence[str] | None = None,
) -> Path:
    """Write one image's panel to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(example["instance_ids"])
    id_map = to_array(example["instances"]).astype(np.int64)
    tiles: list[tuple[str, np.ndarray]] = []
    rgb = to_array(example["rgb"]) if example.get("rgb") is not None else None
    # a 16-bit RGB cell (RGBP-Glass, read from bytes) scales by its own range
    base = rgb[..., :3] / (65535.0 if rgb is not None and rgb.dtype == np.uint16 else 255.0) if rgb is not None else column_picture(to_array(example[modality_columns[0]]))
    if rgb is not None:
        tiles.append(("rgb", base))
    for column in modality_columns:
        tiles.append((column, column_picture(to_array(example[column]))))
    tiles.append((f"ground truth: {len(ids)} instances", overlay_instances(base * 0.6, id_map, ids)))
    if predictions is not None:
        pred_map = np.zeros_like(id_map)
        for inst, mask in predictions.items():
            pred_map[np.asarray(mask, dtype=bool) & (pred_map == 0)] = inst
        scored = [v for v in (ious or {}).values() if v is not None]
        title = f"prediction (mIoU {np.mean(scored):.3f})" if scored else "prediction"
        tiles.append((title, overlay_instances(base * 0.6, pred_map, ids)))

    h, w = id_map.shape
    cols = len(tiles)
    fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols * w / max(h, 1), 3.4), squeeze=False)
    colours = instance_colours(len(ids))
    points = np.asarray(example.get("point") or np.zeros((0, 2)), dtype=float).reshape(-1, 2)
    for ax, (title, picture) in zip(axes[0], tiles):
        ax.imshow(np.clip(picture, 0, 1))
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        if title.startswith(("ground truth", "prediction")) and len(points):
            ax.scatter(points[:, 0], points[:, 1], s=28, c=colours, marker="*",
                       edgecolors="white", linewidths=0.6)
        if title.startswith("prediction") and ious:
            for k, inst in enumerate(ids):
                if ious.get(inst) is not None and k < len(points):
                    ax.annotate(f"{ious[inst]:.2f}", points[k], color="white", fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
    fig.suptitle(f"{config} · {example['image_id']}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def render_statistics(rows_by_split: Mapping[str, Iterable[Mapping]], config: str, path: Path,
                      *, min_area: int = 100) -> Path:
    """Instances per image and the instance-area distribution of every split, with the
    evaluation threshold of protocol ``aims`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    all_areas = []
    for split, rows in rows_by_split.items():
        per_image, areas = [], []
        for row in rows:
            per_image.append(len(row["instance_ids"]))
            areas.extend(row["area"])
        all_areas.extend(areas)
        left.hist(per_image, bins=min(30, max(per_image, default=1) + 1), alpha=0.6,
                  label=f"{split} ({len(per_image)} images)")
        if areas:
            right.hist(np.log10(np.maximum(areas, 1)), bins=40, alpha=0.6,
                       label=f"{split} ({len(areas)} instances)")
    left.set_xlabel("instances per image")
    left.set_ylabel("images")
    left.legend(fontsize=8)
    right.axvline(np.log10(min_area), color="k", linestyle="--", linewidth=1)
    right.text(np.log10(min_area), right.get_ylim()[1] * 0.95, f" {min_area} px", fontsize=8, va="top")
    right.set_xlabel("instance area (log10 pixels)")
    right.set_ylabel("instances")
    right.legend(fontsize=8)
    kept = np.mean(np.asarray(all_areas) >= min_area) if all_areas else 0.0
    fig.suptitle(f"{config}: {len(all_areas)} instances, {kept:.0%} evaluated under aims-v1")
    fig.tight_layout()
    return save_figure(fig, path)
