"""Panels and statistics plots are real PNGs that show the instances and clicks."""

from __future__ import annotations

import numpy as np
from PIL import Image

from aims.loader import load_dataset
from aims.visualize import column_picture, false_colour, render_panel, render_statistics


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


def test_statistics_plot(nyuv2_prepared, tmp_path):
    ds = load_dataset("hha", data_dir=nyuv2_prepared)
    out = render_statistics({s: ds[s] for s in ds}, "hha", tmp_path / "s.png")
    assert Image.open(out).size[0] > 500
