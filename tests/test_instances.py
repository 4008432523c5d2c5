"""Tests of the instance pipeline (aims.instances) against docs/protocol.md "Instances"
and a plain skimage + scipy reference, on synthetic and (when present) real NYUv2 maps."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.measure import label as sk_label

from aims.clicks import click_aims, clicks_simcmf
from aims.errors import AimsError
from aims.instances import Instances, instances_from_id_map, split_instances
from conftest import require_shared, shared_data_dir


NYU_TGZ = shared_data_dir() / "nyuv2" / "nyuv2_test_class13.tgz"


def reference_split(semantic: np.ndarray, ignore=(0, 255), connectivity: int = 8):
    """Plain reference: skimage label per class (raster order within a class), full
    padded-image float64 EDT per instance, first argmax."""
    id_map = np.zeros(semantic.shape, np.uint16)
    cats, areas, bboxes, points = [], [], [], []
    nid = 0
    for c in np.unique(semantic):
        if int(c) in ignore:
            continue
        lab = sk_label(semantic == c, connectivity=2 if connectivity == 8 else 1)
        for k in range(1, int(lab.max()) + 1):
            m = lab == k
            nid += 1
            id_map[m] = nid
            ys, xs = np.nonzero(m)
            cats.append(int(c))
            areas.append(int(m.sum()))
            bboxes.append((xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1))
            dt = ndimage.distance_transform_edt(np.pad(m, 1))
            py, px = np.unravel_index(int(np.argmax(dt)), dt.shape)
            points.append((px - 1, py - 1))
    return (
        id_map,
        np.array(cats, np.int32),
        np.array(areas, np.int64),
        np.array(bboxes, np.int32).reshape(-1, 4),
        np.array(points, np.int32).reshape(-1, 2),
    )


def assert_matches_reference(inst: Instances, semantic, **kw) -> None:
    id_map, cats, areas, bboxes, points = reference_split(semantic, **kw)
    np.testing.assert_array_equal(inst.id_map, id_map)
    np.testing.assert_array_equal(inst.ids, np.arange(1, len(cats) + 1))
    np.testing.assert_array_equal(inst.category, cats)
    np.testing.assert_array_equal(inst.area, areas)
    np.testing.assert_array_equal(inst.bbox, bboxes)
    np.testing.assert_array_equal(inst.point, points)


def assert_consistent(inst: Instances) -> None:
    """Invariants any Instances must satisfy, checked with plain numpy."""
    n = len(inst)
    assert inst.id_map.dtype == np.uint16
    assert inst.ids.dtype == np.int32 and inst.ids.shape == (n,)
    assert inst.category.dtype == np.int32 and inst.category.shape == (n,)
    assert inst.area.dtype == np.int64 and inst.area.shape == (n,)
    assert inst.bbox.dtype == np.int32 and inst.bbox.shape == (n, 4)
    assert inst.point.dtype == np.int32 and inst.point.shape == (n, 2)
    assert inst.point_simcmf.dtype == np.int32 and inst.point_simcmf.shape == (n, 2)
    assert set(np.unique(inst.id_map)) - {0} == set(inst.ids.tolist())
    for j, i in enumerate(inst.ids):
        m = inst.id_map == i
        ys, xs = np.nonzero(m)
        assert inst.area[j] == m.sum()
        assert tuple(inst.bbox[j]) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
        x, y = inst.point[j]
        assert m[y, x], "the aims click must be inside its instance"
    np.testing.assert_array_equal(inst.point_simcmf, clicks_simcmf(inst.id_map, inst.ids))


def random_semantic(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    """Blobby multi-class map with touching classes, void and 255 sprinkled in."""
    fields = ndimage.gaussian_filter(rng.standard_normal((k, h, w)), (0, 3, 3))
    sem = np.argmax(fields, axis=0).astype(np.uint8)  # 0..k-1, 0 = void
    sem[rng.random((h, w)) < 0.02] = 255
    return sem


# --- rules --------------------------------------------------------------------------


def test_touching_regions_of_different_classes_are_two_instances():
    sem = np.zeros((6, 8), np.uint8)
    sem[1:5, 1:4] = 3
    sem[1:5, 4:7] = 1  # touches class 3 along a whole column
    inst = split_instances(sem)
    assert len(inst) == 2
    # Order: class ascending, so class 1 gets id 1 although it is to the right.
    np.testing.assert_array_equal(inst.category, [1, 3])
    np.testing.assert_array_equal(inst.bbox, [[4, 1, 3, 4], [1, 1, 3, 4]])
    np.testing.assert_array_equal(inst.area, [12, 12])
    assert_consistent(inst)


def test_diagonal_neighbours_4_vs_8_connectivity():
    sem = np.zeros((4, 4), np.uint8)
    sem[1, 1] = sem[2, 2] = 5
    assert len(split_instances(sem)) == 1
    assert len(split_instances(sem, connectivity=8)) == 1
    four = split_instances(sem, connectivity=4)
    assert len(four) == 2
    np.testing.assert_array_equal(four.point, [[1, 1], [2, 2]])


def test_ignore_labels_never_form_instances():
    sem = np.zeros((5, 5), np.uint8)
    sem[0] = 255
    sem[2, 2] = 7
    inst = split_instances(sem)
    assert len(inst) == 1 and inst.category[0] == 7
    assert inst.id_map[0].max() == 0
    # Custom ignore list: now void and 255 are classes, 7 is ignored.
    inst = split_instances(sem, ignore=(7,))
    np.testing.assert_array_equal(inst.category, [0, 255])
    assert inst.id_map[2, 2] == 0
    assert_consistent(inst)


def test_order_is_raster_order_of_first_pixel_within_a_class():
    # OpenCV's block-based labelling numbers the component at (row 1, col 0) first
    # (same 2x2 block row, leftmost block); raster order puts (row 0, col 3) first.
    sem = np.zeros((6, 6), np.uint8)
    sem[0, 3] = 1
    sem[1, 0:2] = 1
    inst = split_instances(sem)
    np.testing.assert_array_equal(inst.bbox, [[3, 0, 1, 1], [0, 1, 2, 1]])
    assert inst.id_map[0, 3] == 1 and inst.id_map[1, 0] == 2


def test_border_instance_click_uses_padding():
    sem = np.zeros((20, 20), np.uint8)
    sem[5:12, 0:10] = 2  # glued to the left border
    inst = split_instances(sem)
    np.testing.assert_array_equal(inst.point, [[3, 8]])  # unpadded EDT would say (0, 8)


def test_empty_map():
    inst = split_instances(np.zeros((7, 9), np.uint8))
    assert len(inst) == 0
    assert inst.id_map.shape == (7, 9)
    assert_consistent(inst)


@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("seed", range(4))
def test_random_maps_match_reference(seed, connectivity):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(20, 160, 2))
    sem = random_semantic(rng, h, w, int(rng.integers(2, 7)))
    inst = split_instances(sem, connectivity=connectivity)
    assert_matches_reference(inst, sem, connectivity=connectivity)
    assert_consistent(inst)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.int8])
def test_integer_dtypes(dtype):
    rng = np.random.default_rng(1)
    sem = random_semantic(rng, 50, 60, 5).astype(dtype)  # int8: 255 wraps to class -1
    ref = split_instances(sem.astype(np.int64))
    inst = split_instances(sem)
    np.testing.assert_array_equal(inst.id_map, ref.id_map)
    np.testing.assert_array_equal(inst.point, ref.point)


def test_bad_input_raises():
    with pytest.raises(AimsError):
        split_instances(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(AimsError):
        split_instances(np.zeros((3, 3), np.float32))
    with pytest.raises(AimsError):
        split_instances(np.zeros((3, 3), bool))
    with pytest.raises(AimsError):
        split_instances(np.zeros((3, 3), np.uint8), connectivity=6)
    # A 4-connected checkerboard: 80,000 single-pixel components of class 1.
    yy, xx = np.mgrid[:400, :400]
    board = ((yy + xx) % 2 + 1).astype(np.uint8)
    with pytest.raises(AimsError, match="65535"):
        split_instances(board, connectivity=4)


# --- sources with instance ids ------------------------------------------------------


def test_instances_from_id_map_keeps_ids():
    id_map = np.zeros((30, 40), np.int32)
    id_map[2:10, 3:9] = 17
    id_map[20:25, 30:38] = 5
    id_map[0, 39] = 300
    id_map[28:30, 0:3] = 17  # a second part of 17: still one instance, as given
    inst = instances_from_id_map(id_map, {5: 2, 17: 9})
    np.testing.assert_array_equal(inst.ids, [5, 17, 300])
    np.testing.assert_array_equal(inst.category, [2, 9, -1])
    np.testing.assert_array_equal(inst.area, [40, 48 + 6, 1])
    np.testing.assert_array_equal(inst.bbox, [[30, 20, 8, 5], [0, 2, 9, 28], [39, 0, 1, 1]])
    np.testing.assert_array_equal(inst.point[2], [39, 0])
    for j, i in enumerate(inst.ids):
        x0, y0, w, h = inst.bbox[j]
        cx, cy = click_aims(id_map[y0 : y0 + h, x0 : x0 + w] == i)
        assert tuple(inst.point[j]) == (x0 + cx, y0 + cy)
    assert_consistent(inst)
    assert (instances_from_id_map(id_map).category == -1).all()


def test_instances_from_id_map_bad_input():
    with pytest.raises(AimsError):
        instances_from_id_map(np.full((3, 3), 70000, np.int32))
    with pytest.raises(AimsError):
        instances_from_id_map(np.full((3, 3), -1, np.int32))
    with pytest.raises(AimsError):
        instances_from_id_map(np.zeros((3, 3), np.float64))
    assert len(instances_from_id_map(np.zeros((3, 3), np.uint16))) == 0


# --- real data ----------------------------------------------------------------------


def _nyu_maps(step: int) -> list[np.ndarray]:
    require_shared("nyuv2", NYU_TGZ.name)
    maps = []
    with tarfile.open(NYU_TGZ) as tf:  # read in place, never extracted or copied
        members = sorted(
            (m for m in tf.getmembers() if m.isfile() and m.name.endswith(".png")),
            key=lambda m: m.name,
        )
        for m in members[::step]:
            maps.append(np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read()))))
    return maps


def test_real_nyuv2_subset_matches_reference():
    maps = _nyu_maps(step=40)  # 17 of the 654 maps; the benchmark checks all of them
    assert maps[0].shape == (480, 640) and maps[0].dtype == np.uint8
    for sem in maps:
        assert_matches_reference(split_instances(sem), sem)


@pytest.mark.slow
def test_real_nyuv2_all_clicks_exact():
    """Every instance of the 654 maps: OpenCV float32 EDT argmax == scipy float64 one
    (on the padded crop, which is exact; the full-frame check is the benchmark's)."""
    n = 0
    for sem in _nyu_maps(step=1):
        inst = split_instances(sem)
        for j, i in enumerate(inst.ids):
            x0, y0, w, h = inst.bbox[j]
            crop = inst.id_map[y0 : y0 + h, x0 : x0 + w] == i
            dt = ndimage.distance_transform_edt(np.pad(crop, 1))
            py, px = np.unravel_index(int(np.argmax(dt)), dt.shape)
            assert tuple(inst.point[j]) == (x0 + px - 1, y0 + py - 1)
            n += 1
    assert n > 15000  # ~15.8k 8-connected components
