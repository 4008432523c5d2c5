"""NYUv2 converter: the miniature is a faithful release, and it converts end to end."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from aims.converters.nyuv2 import (
    CLASS_MAPPING_MAT,
    CONVERTER,
    LABELED_MAT,
    SPLITS_MAT,
    LabeledMat,
    depth_to_millimetres,
    read_class_mapping,
    read_splits,
)
from conftest import require_shared


def test_miniature_is_a_matlab_v73_file_with_the_release_layout(nyuv2_miniature):
    path = nyuv2_miniature / LABELED_MAT
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file")
    assert header[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        for key in ("images", "depths", "rawDepths", "labels", "instances", "names",
                    "scenes", "sceneTypes", "accelData", "namesToIds"):
            assert key in f, key
        n = f["images"].shape[0]
        assert f["images"].shape == (n, 3, 640, 480) and f["images"].dtype == np.uint8
        assert f["depths"].shape == (n, 640, 480) and f["depths"].dtype == np.float32
        assert f["labels"].shape == (n, 640, 480) and f["labels"].dtype == np.uint16
        assert f["instances"].dtype == np.uint8
        assert f["labels"].attrs["MATLAB_class"] == b"uint16"
        assert f["depths"].attrs["MATLAB_class"] == b"single"
        assert f["names"].shape == (1, 894)
        first = f[f["names"][0, 0]][()]
        assert first.dtype == np.uint16 and "".join(map(chr, first.ravel()))
        labels = f["labels"][0].T
        assert labels.max() <= 894 and (labels == 0).any()
    splits = scipy.io.loadmat(str(nyuv2_miniature / SPLITS_MAT))
    assert splits["trainNdxs"].shape[1] == 1 and splits["testNdxs"].dtype == np.uint16


def test_labeled_mat_reads_frames_in_image_axis_order(nyuv2_miniature):
    mat = LabeledMat(nyuv2_miniature / LABELED_MAT)
    try:
        rgb, depth, labels = mat.frame(0)
        with h5py.File(nyuv2_miniature / LABELED_MAT, "r") as f:
            raw = f["images"][0]
        # MATLAB is column-major: pixel (row r, column c, channel k) is raw[k, c, r]
        assert rgb.shape == (480, 640, 3) and depth.shape == labels.shape == (480, 640)
        assert rgb[10, 300, 1] == raw[1, 300, 10]
        # the synthetic room has the floor at the bottom: depth grows towards the horizon
        assert depth[470, 320] < depth[300, 320]
    finally:
        mat.close()


def test_real_split_and_class_mapping_files():
    train, test = read_splits(require_shared("nyuv2", "splits.mat"))
    assert (len(train), len(test)) == (795, 654)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1, 1450))
    lut, names = read_class_mapping(require_shared("nyuv2", "classMapping40.mat"))
    assert lut.shape == (895,) and lut[0] == 0 and set(lut[1:].tolist()) <= set(range(1, 41))
    assert names[:3] == ["wall", "floor", "cabinet"] and len(names) == 40


def test_depth_is_stored_in_rounded_millimetres():
    depth = np.array([[0.0, 0.0004, 0.0005, 1.23449, 70.0, np.nan]], dtype=np.float32)
    assert depth_to_millimetres(depth).tolist() == [[0, 0, 1, 1234, 65535, 0]]


def test_stream_yields_every_frame_with_40_class_labels(nyuv2_miniature):
    samples, listing = CONVERTER.read_samples(["depth"], source=nyuv2_miniature)
    assert len(samples) == len(listing) == 8
    assert [s.split for s in samples].count("test") == 3
    assert all(s.semantic.max() <= 40 for s in samples)
    assert samples[0].image_id == "0001" and set(samples[0].images) == {"rgb", "depth"}
    assert samples[0].images["depth"].dtype == np.uint16
