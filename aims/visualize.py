"""Pictures of a prepared dataset: per-image panels and per-config statistics plots.

A panel shows what a model sees and what it is scored against, like the qualitative
figure of the SimCMF paper: the RGB frame, every modality column (false colour for single
channels, with a colour bar in the column's physical unit: metres for depth, °C for
temperature), the ground-truth instances with their click points, and — given predictions —
the predicted masks, each instance in its own colour, with IoU labels placed so that none
covers another. Plots are drawn with matplotlib's Agg backend, so they work on machines
without a display; :func:`panel_figure` and :func:`statistics_figure` return the figure
itself, which is what the tests read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aims.atomic import atomic_write_bytes
from aims.decoders import to_array
from aims.errors import AimsError

#: instance colours: a fixed golden-angle palette, so an id keeps its colour across panels
_GOLDEN = 0.618033988749895
#: colour map of single-channel columns
CMAP = "turbo"
#: unit names a column's ``units`` text may start with → the symbol a colour bar shows.
#: Which unit a column has is the record's fact (its decoder's meaning); this only spells it.
UNIT_SYMBOLS = {"metres": "m", "meters": "m", "millimetres": "mm", "degrees celsius": "°C",
                "kelvin": "K", "radians": "rad", "degrees": "°"}
#: where an IoU label may go around its click, in points: nearest first, then farther rings
_LABEL_OFFSETS = [(r * np.sin(a), r * np.cos(a)) for r in (7, 12, 18, 26, 36, 48, 62)
                  for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
#: a label farther than this from its click (points) is joined to it by a line
_LEADER_FROM = 10


def plural(n: int, word: str) -> str:
    """``"1 instance"``, ``"2 instances"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def instance_colours(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours in [0, 1]."""
    import colorsys

    return np.array([colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, 0.75, 0.95) for i in range(n)]).reshape(-1, 3)


def stretch_limits(values: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """The 1st and 99th percentiles of the valid, finite values (0, 1 when there are none),
    so a few extreme pixels (sensor holes, hot spots) don't flatten the picture."""
    values = np.asarray(values, dtype=np.float64)
    mask = np.isfinite(values) if valid is None else valid & np.isfinite(values)
    if not mask.any():
        return 0.0, 1.0
    lo, hi = np.percentile(values[mask], [1, 99])
    return float(lo), float(max(hi, lo + 1e-12))


def false_colour(channel: np.ndarray, cmap: str = CMAP, valid: np.ndarray | None = None,
                 limits: tuple[float, float] | None = None) -> np.ndarray:
    """One channel → RGB float image, stretched between ``limits`` (default
    :func:`stretch_limits`); invalid pixels are black."""
    from matplotlib import colormaps

    values = channel.astype(np.float64)
    mask = np.isfinite(values) if valid is None else valid & np.isfinite(values)
    lo, hi = limits or stretch_limits(values, mask)
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = colormaps[cmap](np.nan_to_num(scaled))[..., :3]
    rgb[~mask] = 0.0
    return rgb


def column_picture(array: np.ndarray) -> np.ndarray:
    """How one stored image column is shown: colour images as they are, single channels
    (depth, thermal, NIR) in false colour with missing values (0) in black."""
    if array.ndim == 3 and array.shape[2] >= 3 and array.dtype == np.uint8:
        return array[..., :3] / 255.0
    channel = array if array.ndim == 2 else array[..., 0]
    return false_colour(channel, valid=channel != 0 if np.issubdtype(channel.dtype, np.integer) else None)


def unit_symbol(units: str) -> str | None:
    """The symbol of the unit a column's ``units`` text starts with (``"metres (uint16 mm /
    1000)…"`` → ``"m"``), or None for unitless values (codes, [0, 1] intensities)."""
    text = units.strip().lower()
    for name in sorted(UNIT_SYMBOLS, key=len, reverse=True):
        if text.startswith(name):
            return UNIT_SYMBOLS[name]
    return None


@dataclass
class ColumnTile:
    """A single-channel column as shown: its picture, and the value range and label of its
    colour bar (values in the column's decoded unit)."""

    picture: np.ndarray
    limits: tuple[float, float] | None = None
    label: str = ""


def column_tile(column: str, cell: Any) -> ColumnTile:
    """One stored column as a tile. A single-channel column is decoded by its record's
    decoder (depth in metres, temperature in °C) and gets a colour bar in that unit; colour
    columns (HHA, polarizer angles) are shown as they are."""
    from aims.modalities import COLUMN_DECODERS

    raw = to_array(cell)
    decoder = COLUMN_DECODERS.get(column)
    single = raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1)
    if decoder is None or decoder.channels != 1 or not single:
        return ColumnTile(column_picture(raw))
    channel = raw if raw.ndim == 2 else raw[..., 0]
    valid = channel != 0 if np.issubdtype(channel.dtype, np.integer) else None  # 0 = no value
    values = np.asarray(decoder.decode(cell), dtype=np.float64)[0]
    limits = stretch_limits(values, valid)
    symbol = getattr(decoder, "unit", None) or unit_symbol(decoder.units)
    label = f"{column} ({symbol})" if symbol else f"{column} (relative)"
    return ColumnTile(false_colour(values, valid=valid, limits=limits), limits, label)


def prediction_map(predictions: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """One id per pixel from possibly overlapping predicted masks: where masks overlap the
    smaller one wins, so every non-empty prediction stays visible in its own colour."""
    out = np.zeros(shape, dtype=np.int64)
    masks = [(int(inst), np.asarray(m, dtype=bool)) for inst, m in predictions.items()]
    for inst, mask in sorted(masks, key=lambda im: -int(im[1].sum())):
        out[mask] = inst
    return out


def overlay_instances(base: np.ndarray, id_map: np.ndarray, ids: Sequence[int], alpha: float = 0.55) -> np.ndarray:
    """Instances painted over ``base`` (float RGB), each in one colour (its index in
    ``ids``), with its boundary drawn solid in the same colour."""
    import cv2

    out = base.astype(np.float64).copy()
    colours = instance_colours(len(ids))
    for colour, inst in zip(colours, ids):
        mask = id_map == inst
        if not mask.any():
            continue
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
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


def place_labels(ax: Any, anchors: Sequence[tuple[float, float]], texts: Sequence[str],
                 colours: Sequence[Any], *, fontsize: float = 6) -> int:
    """Annotate ``anchors`` (data coordinates) with ``texts`` so that no two labels overlap
    and each stays inside ``ax``: each label takes the nearest free spot around its point
    (joined to it by a thin line when moved), covering no click point. Labels with no free
    spot left are dropped;
    returns how many. Call after the figure's layout is final (positions are in pixels)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    # the clicks themselves are obstacles too: a label never hides another instance's star
    stars = [ax.transData.transform((x, y)) for x, y in anchors]
    placed: list[Any] = [Bbox.from_extents(px - 3, py - 3, px + 3, py + 3) for px, py in stars]
    dropped = 0
    for (x, y), text, colour in zip(anchors, texts, colours):
        label = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize,
                            color="white", ha="center", va="center", annotation_clip=False,
                            bbox={"boxstyle": "round,pad=0.15", "fc": colour, "ec": "none", "alpha": 0.85})
        for dx, dy in _LABEL_OFFSETS:
            label.xyann = (dx, dy)
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                if np.hypot(dx, dy) > _LEADER_FROM:
                    ax.annotate("", (x, y), xytext=(dx, dy), textcoords="offset points",
                                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "white"})
                break
        else:
            label.remove()
            dropped += 1
    return dropped


def panel_figure(
    example: Mapping,
    config: str,
    *,
    modality_columns: Sequence[str],
    predictions: Mapping[int, np.ndarray] | None = None,
    ious: Mapping[int, float] | None = None,
) -> Any:
    """One image's panel as a matplotlib figure: RGB, each modality column (colour bar with
    its unit for single channels), ground truth with clicks, and the predictions with their
    IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    ids = list(example["instance_ids"])
    id_map = to_array(example["instances"]).astype(np.int64)
    rgb = to_array(example["rgb"]) if example.get("rgb") is not None else None
    tiles: list[tuple[str, ColumnTile]] = []
    if rgb is not None:
        # a 16-bit RGB cell (RGBP-Glass, read from bytes) scales by its own range
        base = rgb[..., :3] / (65535.0 if rgb.dtype == np.uint16 else 255.0)
        tiles.append(("rgb", ColumnTile(base)))
    for column in modality_columns:
        tiles.append((column, column_tile(column, example[column])))
    if rgb is None:
        base = tiles[0][1].picture
    truth = overlay_instances(base * 0.6, id_map, ids)
    tiles.append((f"ground truth: {plural(len(ids), 'instance')}", ColumnTile(truth)))
    if predictions is not None:
        scored = [v for v in (ious or {}).values() if v is not None]
        title = f"prediction (mIoU {100 * np.mean(scored):.1f} %)" if scored else "prediction"
        pred_map = prediction_map(predictions, id_map.shape)
        tiles.append((title, ColumnTile(overlay_instances(base * 0.6, pred_map, ids))))

    h, w = id_map.shape
    fig, axes = plt.subplots(1, len(tiles), figsize=(3.2 * len(tiles) * w / max(h, 1), 3.6), squeeze=False)
    colours = instance_colours(len(ids))
    points = np.asarray(example.get("point") or np.zeros((0, 2)), dtype=float).reshape(-1, 2)
    for ax, (title, tile) in zip(axes[0], tiles):
        ax.imshow(np.clip(tile.picture, 0, 1))
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        if tile.limits is not None:
            bar = fig.colorbar(ScalarMappable(Normalize(*tile.limits), CMAP), ax=ax, orientation="horizontal",
                               fraction=0.05, pad=0.03)
            bar.set_label(tile.label, fontsize=7)
            bar.ax.tick_params(labelsize=6)
        if title.startswith(("ground truth", "prediction")) and len(points):
            ax.scatter(points[:, 0], points[:, 1], s=28, c=colours[: len(points)], marker="*",
                       edgecolors="white", linewidths=0.6)
    fig.suptitle(f"{config} · {example['image_id']}", fontsize=10)
    fig.tight_layout()
    if predictions is not None and ious:
        ax = axes[0][-1]
        fig.canvas.draw()  # the layout is final: label positions are measured in pixels
        shown = [(k, inst) for k, inst in enumerate(ids) if ious.get(inst) is not None and k < len(points)]
        dropped = place_labels(ax, [tuple(points[k]) for k, _ in shown], [f"{100 * ious[i]:.0f}" for _, i in shown],
                               [tuple(colours[k] * 0.6) for k, _ in shown])
        if dropped:
            ax.set_title(f"{ax.get_title()}; {plural(dropped, 'label')} left out", fontsize=9)
    return fig


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
    """Write one image's panel (:func:`panel_figure`) to ``path`` (PNG)."""
    return save_figure(panel_figure(example, config, modality_columns=modality_columns, predictions=predictions,
                                    ious=ious), path)


def statistics_figure(rows_by_split: Mapping[str, Iterable[Mapping]], config: str, *, min_area: int = 100) -> Any:
    """Instances per image and the instance-area distribution of every split (side-by-side
    bars, integer count axes, legends outside the bars), with the evaluation threshold of
    protocol ``aims`` marked inside the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    per_split: dict[str, tuple[list[int], list[float]]] = {}
    for split, rows in rows_by_split.items():
        per_image, areas = [], []
        for row in rows:
            per_image.append(len(row["instance_ids"]))
            areas.extend(float(a) for a in row["area"])
        per_split[split] = (per_image, areas)
    all_areas = [a for _, areas in per_split.values() for a in areas]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    names = list(per_split)
    counts = [per_split[s][0] for s in names]
    top = max((max(c) for c in counts if c), default=1)
    low = min((min(c) for c in counts if c), default=0)
    left.hist(counts, bins=np.arange(low - 0.5, top + 1.5), label=[f"{s} ({plural(len(c), 'image')})"
                                                             for s, c in zip(names, counts)])
    left.set_xlabel("instances per image")
    left.set_ylabel("images")
    log_areas = [np.log10(np.maximum(per_split[s][1], 1)) for s in names]
    threshold = np.log10(min_area)
    finite = np.concatenate([a for a in log_areas if len(a)] or [np.array([threshold])])
    lo, hi = min(finite.min(), threshold) - 0.25, max(finite.max(), threshold) + 0.25
    right.hist(log_areas, bins=np.linspace(lo, hi, 31),
               label=[f"{s} ({plural(len(per_split[s][1]), 'instance')})" for s in names])
    right.set_xlim(lo, hi)
    right.axvline(threshold, color="#d62728", linestyle="--", linewidth=1.4, zorder=5)
    right.text(threshold, 0.97, f" {min_area} px: evaluated from here", color="#d62728", fontsize=8, va="top",
               ha="left", transform=right.get_xaxis_transform(), zorder=6)
    right.set_xlabel("instance area (log10 pixels)")
    right.set_ylabel("instances")
    for ax in (left, right):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)  # headroom for the threshold label
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=max(1, len(names)),
                  frameon=False, borderaxespad=0, handlelength=1)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    kept = np.mean(np.asarray(all_areas) >= min_area) if all_areas else 0.0
    fig.suptitle(f"{config}: {plural(len(all_areas), 'instance')}, {kept:.0%} evaluated under aims-v1")
    return fig


def render_statistics(rows_by_split: Mapping[str, Iterable[Mapping]], config: str, path: Path,
                      *, min_area: int = 100) -> Path:
    """Write :func:`statistics_figure` to ``path`` (PNG)."""
    return save_figure(statistics_figure(rows_by_split, config, min_area=min_area), path)
