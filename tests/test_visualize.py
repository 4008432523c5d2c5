"""Panels and statistics plots are real PNGs that show the instances and clicks, and they
read at a glance (issue 13, item 6): colour bars in physical units, one colour per
predicted instance, IoU labels that never overlap, integer count axes, legends clear of
the bars, and the evaluation threshold inside the plot. The checks read the matplotlib
figure objects, not pixels, wherever the figure can say it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aims.loader import load_dataset
from aims.visualize import (
    column_picture,
    false_colour,
    instance_colours,
    panel_figure,
    plural,
    prediction_map,
    render_panel,
    render_statistics,
    statistics_figure,
    unit_symbol,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The bundled miniatures of RGB-T Glass and ZJU-RGBP prepared into one folder."""
    from aims.converters import registry
    from aims.prepare import prepare_source

    out = tmp_path_factory.mktemp("vis") / "dataset"
    for source, configs in (("thermal_glass", ["thermal"]), ("zju_rgbp", ["polarization-zju"])):
        conv = registry.converter(source)
        src = conv.write_miniature(tmp_path_factory.mktemp(source))
        prepare_source(conv, configs, dataset_dir=out, source=src, workers=1, progress=False)
    return out


def _shifted_predictions(example) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    id_map = np.array(example["instances"]).astype(int)
    preds = {i: np.roll(id_map == i, 3, axis=1) for i in example["instance_ids"]}
    ious = {i: float(((id_map == i) & m).sum() / ((id_map == i) | m).sum()) for i, m in preds.items()}
    return preds, ious


def _colourbar_labels(fig) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_false_colour_stretches_and_blanks_missing():
    depth = np.array([[0, 1000, 2000], [3000, 4000, 65535]], dtype=np.uint16)
    rgb = column_picture(depth)
    assert rgb.shape == (2, 3, 3) and (rgb[0, 0] == 0).all()
    assert not np.allclose(rgb[0, 1], rgb[1, 1])
    assert false_colour(np.zeros((2, 2)), valid=np.zeros((2, 2), bool)).max() == 0


def test_panel_shows_ground_truth_and_prediction(nyuv2_prepared, tmp_path):
    ex = load_dataset("depth", "test", data_dir=nyuv2_prepared)[0]
    ids = ex["instance_ids"]
    id_map = np.array(ex["instances"]).astype(int)
    preds = {i: id_map == i for i in ids}
    out = render_panel(ex, "depth", tmp_path / "p.png", modality_columns=["depth"],
                       predictions=preds, ious={i: 1.0 for i in ids})
    image = np.array(Image.open(out).convert("RGB"))
    assert image.shape[1] > 3 * image.shape[0]  # four tiles side by side
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 100


def test_depth_colour_bar_is_in_metres_over_the_values_shown(nyuv2_prepared):
    import matplotlib.pyplot as plt

    ex = load_dataset("depth", "test", data_dir=nyuv2_prepared)[0]
    fig = panel_figure(ex, "depth", modality_columns=["depth"])
    try:
        assert _colourbar_labels(fig) == ["depth (m)"]
        bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
        millimetres = np.array(ex["depth"]).astype(float)
        metres = millimetres[millimetres > 0] / 1000.0
        lo, hi = bar.get_xlim()
        assert lo == pytest.approx(np.percentile(metres, 1)) and hi == pytest.approx(np.percentile(metres, 99))
    finally:
        plt.close(fig)


def test_temperature_colour_bar_is_in_celsius_and_one_instance_is_singular(prepared):
    import matplotlib.pyplot as plt

    rows = load_dataset("thermal", "test", data_dir=prepared)
    ex = next(r for r in rows if len(r["instance_ids"]) == 1)  # the miniature has single-glass frames
    fig = panel_figure(ex, "thermal", modality_columns=["temperature"])
    try:
        assert _colourbar_labels(fig) == ["temperature (°C)"]
        titles = [ax.get_title() for ax in fig.axes]
        assert "ground truth: 1 instance" in titles and not any("1 instances" in t for t in titles)
    finally:
        plt.close(fig)
    assert plural(1, "image") == "1 image" and plural(0, "image") == "0 images"
    assert unit_symbol("metres (uint16 mm / 1000); 0 = missing") == "m"
    assert unit_symbol("value / 255 (8-bit) or / 65535 (16-bit), in [0, 1]") is None


def test_every_predicted_instance_keeps_its_own_colour(nyuv2_prepared):
    import matplotlib.pyplot as plt

    # overlapping predictions: a big mask listed first must not hide the small ones
    big = np.zeros((8, 8), bool)
    big[:, :] = True
    small = np.zeros((8, 8), bool)
    small[2:4, 2:4] = True
    assert set(np.unique(prediction_map({1: big, 2: small}, (8, 8)))) == {1, 2}

    ex = load_dataset("hha", "test", data_dir=nyuv2_prepared)[0]
    ids = list(ex["instance_ids"])
    id_map = np.array(ex["instances"]).astype(int)
    everything = np.ones_like(id_map, dtype=bool)
    preds = {i: (id_map == i) | (everything if k == 0 else False) for k, i in enumerate(ids)}
    fig = panel_figure(ex, "hha", modality_columns=["hha"], predictions=preds, ious={i: 0.5 for i in ids})
    try:
        title = next(ax for ax in fig.axes if ax.get_title().startswith("prediction")).get_title()
        assert title.startswith("prediction (mIoU 50.0 %)")   # percent, as everywhere else
        tile = next(ax for ax in fig.axes if ax.get_title().startswith("prediction")).images[0].get_array()
        pixels = np.asarray(tile)[..., :3].reshape(-1, 3)
        colours = instance_colours(len(ids))
        for k, inst in enumerate(ids):  # each instance's outline is drawn in exactly its colour
            assert np.isclose(pixels[:, None, :], colours[k]).all(axis=2).any(), inst
    finally:
        plt.close(fig)


def test_iou_labels_never_overlap_on_a_crowded_zju_panel(prepared):
    import matplotlib.pyplot as plt

    rows = load_dataset("polarization-zju", "test", data_dir=prepared)
    ex = max(rows, key=lambda r: len(r["instance_ids"]))
    assert len(ex["instance_ids"]) >= 10  # crowded: many windows close together
    preds, ious = _shifted_predictions(ex)
    columns = [c for c in ex if c.startswith("angle_")]
    fig = panel_figure(ex, "polarization-zju", modality_columns=columns, predictions=preds, ious=ious)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = next(a for a in fig.axes if a.get_title().startswith("prediction"))
        labels = [t for t in ax.texts if t.get_text()]
        left_out = 0 if "left out" not in ax.get_title() else int(ax.get_title().split("; ")[1].split()[0])
        assert len(labels) + left_out == len(ious) and len(labels) >= len(ious) // 2
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        frame = ax.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
        if not left_out:  # every IoU is shown, once
            assert sorted(t.get_text() for t in labels) == sorted(f"{100 * v:.0f}" for v in ious.values())
    finally:
        plt.close(fig)


def test_statistics_plot(nyuv2_prepared, tmp_path):
    ds = load_dataset("hha", data_dir=nyuv2_prepared)
    out = render_statistics({s: ds[s] for s in ds}, "hha", tmp_path / "s.png")
    assert Image.open(out).size[0] > 500


def test_statistics_axes_count_in_integers_with_legends_clear_and_threshold_visible(nyuv2_prepared):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ds = load_dataset("depth", data_dir=nyuv2_prepared)
    fig = statistics_figure({s: ds[s] for s in ds}, "depth", min_area=100)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        left, right = fig.axes[:2]
        for ax in (left, right):
            ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks)
            legend = ax.get_legend().get_window_extent(renderer)
            bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_height() > 0]
            assert bars and not any(legend.overlaps(b) for b in bars)
            assert "1 images" not in " ".join(t.get_text() for t in ax.get_legend().get_texts())
        assert all(float(t).is_integer() for t in left.get_xticks())
        line = next(a for a in right.lines if isinstance(a, Line2D) and a.get_linestyle() == "--")
        x = line.get_xdata()[0]
        lo, hi = right.get_xlim()
        assert x == pytest.approx(2.0) and lo < x - 0.1 and x + 0.1 < hi and line.get_visible()
        assert any("100 px" in t.get_text() for t in right.texts)
    finally:
        plt.close(fig)
