"""COCO instances files → instance-id maps: pycocotools' raster, stable ids, the overlap
rule, degenerate polygons, and hostile files refused with errors naming the file and the
annotation."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools import mask as coco_mask  # noqa: E402

from aims.coco_instances import (  # noqa: E402
    CocoAnnotation,
    load_coco_instances,
    polygon_mask,
    rasterise_instances,
    require_pycocotools,
)
from aims.errors import AimsError, SourceFormatError  # noqa: E402

H, W = 40, 50


def _rect(x0, y0, x1, y1) -> list[float]:
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _ann(aid, rings, image_id=1, **extra) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": 1, "segmentation": rings,
            "iscrowd": 0, **extra}


def _coco(annotations, images=None) -> dict:
    return {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "glass"}],
            "images": images or [{"id": 1, "file_name": "a_rgb.tiff", "height": H, "width": W}],
            "annotations": annotations}


def _write(tmp_path: Path, data, name="instances_train.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _load(tmp_path, annotations, **kw):
    return load_coco_instances(_write(tmp_path, _coco(annotations)), **kw)


def _pycocotools(rings, h=H, w=W) -> np.ndarray:
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(rings, h, w))).astype(bool)


def test_ids_are_ranks_of_annotation_ids_and_touching_panes_stay_apart(tmp_path):
    # listed out of id order; panes 20 and 7 share the edge x = 20
    coco = _load(tmp_path, [_ann(20, [_rect(20, 5, 30, 25)]), _ann(7, [_rect(5, 5, 20, 25)]),
                            _ann(9, [_rect(35, 5, 45, 15)])])
    anns = coco.annotations_of(coco.image_named("a_rgb.tiff").id)
    assert [a.id for a in anns] == [7, 9, 20]
    ids = rasterise_instances(anns, H, W)
    assert ids.dtype == np.uint16 and ids.shape == (H, W)
    np.testing.assert_array_equal(ids == 1, _pycocotools([_rect(5, 5, 20, 25)]))
    np.testing.assert_array_equal(ids == 2, _pycocotools([_rect(35, 5, 45, 15)]))
    np.testing.assert_array_equal(ids == 3, _pycocotools([_rect(20, 5, 30, 25)]))
    import cv2

    n, _ = cv2.connectedComponents((ids > 0).astype(np.uint8), connectivity=8)
    assert n - 1 == 2  # components would merge the two touching panes
    # the listing order does not matter
    assert np.array_equal(ids, rasterise_instances(list(reversed(anns)), H, W))


def test_overlap_goes_to_the_smaller_then_the_lower_id(tmp_path):
    coco = _load(tmp_path, [_ann(1, [_rect(0, 0, 30, 30)]), _ann(2, [_rect(10, 10, 20, 20)]),
                            _ann(3, [_rect(25, 0, 35, 10)]), _ann(4, [_rect(30, 0, 40, 10)])])
    ids = rasterise_instances(coco.annotations_of(1), H, W)
    assert (ids[10:20, 10:20] == 2).all()  # the small pane inside the big one survives
    assert ids[5, 5] == 1
    assert (ids[0:10, 25:30] == 3).all()  # 3 (100 px) over 1 (900 px)
    assert (ids[0:10, 30:35] == 3).all()  # 3 and 4 have the same area: lower id wins
    assert (ids[0:10, 35:40] == 4).all()


def test_tiny_and_degenerate_polygons(tmp_path):
    coco = _load(tmp_path, [
        _ann(1, [[10.2, 10.2, 10.3, 10.2, 10.3, 10.3]]),      # inside one pixel, no centre
        _ann(2, [[1.0, 1.0, 5.0, 5.0]]),                      # 2 points: no area, dropped
        _ann(3, []),                                          # no ring at all
        _ann(4, [[3.0, 3.0], _rect(20, 20, 30, 30)]),        # a 1-point ring beside a real one
    ])
    anns = coco.annotations_of(1)
    assert anns[1].polygons == () and anns[2].polygons == () and len(anns[3].polygons) == 1
    ids = rasterise_instances(anns, H, W)
    present = set(np.unique(ids).tolist()) - {0}
    assert 2 not in present and 3 not in present and 4 in present
    np.testing.assert_array_equal(ids == 4, _pycocotools([_rect(20, 20, 30, 30)]))
    assert (ids == 1).sum() == _pycocotools([[10.2, 10.2, 10.3, 10.2, 10.3, 10.3]]).sum()
    assert not polygon_mask(anns[2], H, W).any()


def test_equals_pycocotools_on_random_polygons():
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = int(rng.integers(5, 80)), int(rng.integers(5, 80))
        rings = []
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(3, 12))
            xy = np.stack([rng.uniform(-5, w + 5, k), rng.uniform(-5, h + 5, k)], 1).ravel()
            rings.append(tuple(float(v) for v in xy))
        ann = CocoAnnotation(trial, 1, 1, tuple(rings))
        expected = _pycocotools([list(r) for r in rings], h, w)
        np.testing.assert_array_equal(polygon_mask(ann, h, w), expected)
        np.testing.assert_array_equal(rasterise_instances([ann], h, w) == 1, expected)


@pytest.mark.parametrize("text,needle", [
    ('{"images": [], "annotations": [], "categories": [], "x": NaN}', "NaN"),
    ('{"images": [], "annotations": [], "categories": [], "x": -Infinity}', "Infinity"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "top level"),
    ('{"images": {}, "annotations": [], "categories": []}', "`images`"),
    ("[" * 100000 + "]" * 100000, "cannot be parsed"),
])
def test_unparseable_files(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(SourceFormatError) as err:
        load_coco_instances(path)
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("entry,needle", [
    (_ann(5, [[1.0, 2.0, 3.0]]), "even number"),
    (_ann(5, [[1, 2, 3, "4", 5, 6]]), "must be numbers"),
    (_ann(5, [[7.25e-99, 2, 3, 4, 5, 6]]), "not finite"),  # 7.25e-99 becomes 1e400 = inf
    (_ann(5, [[1e9, 2, 3, 4, 5, 6]]), "far outside"),
    (_ann(5, {"size": [H, W], "counts": "abc"}), "RLE"),
    (_ann(5, [_rect(1, 1, 5, 5)], iscrowd=1), "crowd"),
    (_ann(5, [_rect(1, 1, 5, 5)], image_id=99), "image_id 99"),
    ({**_ann(5, [_rect(1, 1, 5, 5)]), "category_id": 3}, "category_id 3"),
])
def test_malformed_annotation_names_file_and_id(tmp_path, entry, needle):
    text = json.dumps(_coco([_ann(1, [_rect(1, 1, 5, 5)]), entry])).replace("7.25e-99", "1e400")
    path = _write(tmp_path, text)
    with pytest.raises(SourceFormatError) as err:
        load_coco_instances(path)
    msg = str(err.value)
    assert str(path) in msg and "annotation id 5" in msg and needle in msg
    assert "instances='components'" in msg


@pytest.mark.parametrize("change,needle", [
    (lambda c: c["annotations"].append(_ann(1, [_rect(1, 1, 5, 5)])), "annotation id 1 appears twice"),
    (lambda c: c["annotations"].append({"id": True, "image_id": 1}), "no integer `id`"),
    (lambda c: c["images"].append({"id": 1, "file_name": "b_rgb.tiff", "height": H, "width": W}),
     "image id 1 appears twice"),
    (lambda c: c["images"].append({"id": 2, "file_name": "x/a_rgb.tiff", "height": H, "width": W}),
     "a_rgb.tiff appears twice"),
    (lambda c: c["images"].__setitem__(0, {"id": 1, "file_name": "a", "height": 0, "width": W}),
     "height"),
    (lambda c: c["categories"].append({"id": 1, "name": "wall"}), "category id 1 appears twice"),
])
def test_malformed_structure(tmp_path, change, needle):
    data = _coco([_ann(1, [_rect(1, 1, 5, 5)])])
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(SourceFormatError) as err:
        load_coco_instances(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_size_is_bounded_before_parsing(tmp_path):
    path = _write(tmp_path, _coco([_ann(1, [_rect(1, 1, 5, 5)])]))
    with pytest.raises(SourceFormatError, match="more than the 100 accepted"):
        load_coco_instances(path, max_bytes=100)
    assert load_coco_instances(path, max_bytes=os.path.getsize(path)).num_annotations == 1


def test_non_regular_files_are_refused(tmp_path):
    folder = tmp_path / "instances_train.json"
    folder.mkdir()
    with pytest.raises(SourceFormatError, match="not a regular file"):
        load_coco_instances(folder)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        with pytest.raises(SourceFormatError, match="not a regular file"):
            load_coco_instances(fifo)  # must not block waiting for a writer
    with pytest.raises(SourceFormatError, match="does not exist"):
        load_coco_instances(tmp_path / "absent.json")


def test_file_names_match_without_folders(tmp_path):
    images = [{"id": 3, "file_name": "image/x_rgb.tiff", "height": H, "width": W}]
    coco = load_coco_instances(_write(tmp_path, _coco([], images)))
    assert coco.image_named("x_rgb.tiff").id == 3 and coco.image_named("y_rgb.tiff") is None
    assert coco.annotations_of(3) == ()


def test_missing_pycocotools_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(AimsError) as err:
        require_pycocotools()
    assert "pip install" in str(err.value) and "components" in str(err.value)
