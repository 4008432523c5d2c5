"""RGBP-Glass → config `polarization`: the miniature release (612×512 layout at 1/4 size,
16-bit LZW RGB, LZW AoLP/DoLP, 1-bit masks, COCO instances with touching panes, both
broken ids in train) and its SimCMF repack convert with the real pipeline and load with
`datasets`; stored values are the source's bit for bit (RGB at 16 bits; AoLP/DoLP channel
order documented as R,G,B = the TIFF's channels reversed); instances are the release's
polygons, or connected components on request / without the JSON; every layout variant is
found; bad input fails with errors naming the file.

No checksum is published for either archive (sources.md §1), so there is no checksum
mismatch to test here: the layout errors are tested instead."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
from PIL import Image

import aims
from aims.converters.registry import group_by_source
from aims.converters.record import CONNECTED_COMPONENTS, RELEASE_INSTANCES
from aims.converters.rgbp_glass import BROKEN_IDS, CONVERTER, locate, read_glass_mask
from aims.converters.rgbp_glass_miniature import TEST_IDS, TRAIN_IDS
from aims.errors import AimsError, SourceFormatError, UnreadableSample
from aims.imageio import decode_png
from aims.instances import split_instances
from aims.prepare import prepare_source

pytest.importorskip("pycocotools")

GOOD_TRAIN = [i for i in TRAIN_IDS if i not in BROKEN_IDS]
GOOD_TEST = [i for i in TEST_IDS if i not in BROKEN_IDS]


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> Path:
    return CONVERTER.write_miniature(tmp_path_factory.mktemp("rgbp_src"))


@pytest.fixture(scope="module")
def prepared(miniature, tmp_path_factory):
    out = tmp_path_factory.mktemp("rgbp_prepared") / "dataset"
    result = prepare_source(CONVERTER, ["polarization"], dataset_dir=out, source=miniature,
                            workers=2, progress=False)
    return out, result


def _rows(dataset_dir: Path, *, decode: bool = True) -> dict[str, dict]:
    # a private cache per dataset: `datasets` may key a local folder's cache on its name
    # ("out") and file times, which two tests can share
    ds = datasets.load_dataset(str(dataset_dir), "polarization",
                               cache_dir=str(dataset_dir.parent / ".hf-cache"))
    if not decode:
        ds = ds.cast_column("rgb", datasets.Image(decode=False))
    return {r["image_id"]: {**r, "_split": split} for split in ds for r in ds[split]}


def _split_dir(miniature: Path, image_id: str) -> Path:
    return miniature / "RGBP-Glass" / ("train" if image_id in TRAIN_IDS else "test")


def _tiff16(path: Path) -> np.ndarray:
    """A release RGB TIFF read independently of the converter (OpenCV, lossless)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr.dtype == np.uint16
    return arr[:, :, ::-1]


def _coco(miniature: Path, split: str) -> dict:
    return json.loads((miniature / "RGBP-Glass" / split / f"instances_{split}.json").read_text())


def _polygons_by_rank(coco: dict, image_id: str) -> list[list[list[float]]]:
    """The frame's polygons in ascending annotation id (rank k ↔ instance id k + 1)."""
    image = next(i for i in coco["images"] if i["file_name"] == f"{image_id}_rgb.tiff")
    anns = sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]),
                  key=lambda a: a["id"])
    return [a["segmentation"] for a in anns]


def _copy(miniature: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(miniature, dst)
    return dst


def _prepare(src: Path, tmp_path: Path, workers: int = 1, instances: str = "release"):
    return prepare_source(CONVERTER, ["polarization"], dataset_dir=tmp_path / "out", source=src,
                          workers=workers, progress=False, instances=instances)


def _kinds(result) -> dict[str, str]:
    return {split: source.kind for split, source in result.instance_sources.items()}


def test_registered_for_polarization():
    assert group_by_source(["polarization"]) == {"rgbp_glass": ["polarization"]}


def test_prepared_values_equal_the_source(prepared, miniature):
    out, result = prepared
    rows = _rows(out)
    raw = _rows(out, decode=False)
    assert sorted(rows) == sorted(GOOD_TRAIN + GOOD_TEST)
    assert {rows[i]["_split"] for i in GOOD_TEST} == {"test"}
    assert {rows[i]["_split"] for i in GOOD_TRAIN} <= {"train", "validation"}
    for image_id, row in rows.items():
        d = _split_dir(miniature, image_id)
        rgb = _tiff16(d / "image" / f"{image_id}_rgb.tiff")
        aolp_file = np.asarray(Image.open(d / "aolp" / f"{image_id}_aolp.tiff"))
        dolp_file = np.asarray(Image.open(d / "dolp" / f"{image_id}_dolp.tiff"))
        # 16-bit RGB bit for bit in the PNG bytes; Pillow (datasets' decoding) sees the
        # high byte, as PGSNet's loader does
        stored = decode_png(raw[image_id]["rgb"]["bytes"])
        assert stored.dtype == np.uint16
        np.testing.assert_array_equal(stored, rgb)
        assert len(np.unique(rgb & 0xFF)) > 200  # the low byte carries information
        np.testing.assert_array_equal(np.array(row["rgb"]), rgb >> 8)
        # documented order: stored channel k = file channel 2 - k (file is B,G,R)
        np.testing.assert_array_equal(np.array(row["aolp"]), aolp_file[:, :, ::-1])
        np.testing.assert_array_equal(np.array(row["dolp"]), dolp_file[:, :, ::-1])
        glass = read_glass_mask(d / "mask" / f"{image_id}_mask.png")
        ids = np.array(row["instances"]).astype(np.int64)
        assert ((ids > 0) == glass).all()
        assert row["category"] == [1] * len(row["instance_ids"]) and row["instance_ids"]
        for k, inst in enumerate(row["instance_ids"]):
            assert (ids == inst).sum() == row["area"][k]
        x = aims.modality_tensor(raw[image_id], "polarization")
        assert x.dtype == np.float32 and x.shape == (9, *rgb.shape[:2])
        np.testing.assert_allclose(x[0:3], rgb.transpose(2, 0, 1) / 65535, atol=1e-6)
        np.testing.assert_allclose(x[3:6], aolp_file[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
        np.testing.assert_allclose(x[6:9], dolp_file[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
        # a Pillow-decoded row gives the same channels within 1/255
        np.testing.assert_allclose(aims.modality_tensor(row, "polarization"), x, atol=1 / 255 + 1e-6)


def test_release_files_have_the_real_encodings(miniature):
    d = miniature / "RGBP-Glass" / "train"
    image_id = GOOD_TRAIN[0]
    rgb = Image.open(d / "image" / f"{image_id}_rgb.tiff")
    assert rgb.tag_v2[258] == (16, 16, 16) and rgb.tag_v2[259] == 5  # 16-bit, LZW
    for column in ("aolp", "dolp"):
        tif = Image.open(d / column / f"{image_id}_{column}.tiff")
        assert (tif.mode, tif.tag_v2[258], tif.tag_v2[259]) == ("RGB", (8, 8, 8), 5)
    mask = Image.open(d / "mask" / f"{image_id}_mask.png")
    assert mask.mode == "1"
    assert read_glass_mask(d / "mask" / f"{image_id}_mask.png").dtype == bool
    coco = _coco(miniature, "train")
    assert [c["name"] for c in coco["categories"]] == ["glass"]
    listed = {i["file_name"] for i in coco["images"]}
    assert {f"{b}_rgb.tiff" for b in BROKEN_IDS} <= listed  # both broken ids in train, as released
    assert all(a["iscrowd"] == 0 and isinstance(a["segmentation"], list) for a in coco["annotations"])
    assert [a["id"] for a in coco["annotations"]] != sorted(a["id"] for a in coco["annotations"])


def test_test_split_has_the_json_instance_counts(prepared, miniature):
    out, result = prepared
    assert _kinds(result) == {"train": RELEASE_INSTANCES, "test": RELEASE_INSTANCES}
    rows = _rows(out)
    coco = _coco(miniature, "test")
    merged = 0
    for image_id in GOOD_TEST:
        polygons = _polygons_by_rank(coco, image_id)
        row = rows[image_id]
        assert row["instance_ids"] == list(range(1, len(polygons) + 1))
        ids = np.array(row["instances"]).astype(np.int64)
        h, w = ids.shape
        from pycocotools import mask as coco_mask

        for k, rings in enumerate(polygons, start=1):
            drawn = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(rings, h, w))).astype(bool)
            np.testing.assert_array_equal(ids == k, drawn)  # id k = k-th annotation id
        components = split_instances((ids > 0).astype(np.uint8), ignore=(0,), connectivity=8)
        merged += len(components) < len(polygons)
    assert merged == len(GOOD_TEST)  # every frame has touching panes that components merge
    total = sum(len(_polygons_by_rank(coco, i)) for i in GOOD_TEST)
    assert result.counts["polarization"]["test"]["instances"] == total


def test_components_option_reproduces_connected_components(miniature, tmp_path):
    result = _prepare(miniature, tmp_path, instances="components")
    assert _kinds(result) == {"train": CONNECTED_COMPONENTS, "test": CONNECTED_COMPONENTS}
    rows = _rows(tmp_path / "out")
    for image_id, row in rows.items():
        glass = read_glass_mask(_split_dir(miniature, image_id) / "mask" / f"{image_id}_mask.png")
        expected = split_instances(glass.astype(np.uint8), ignore=(0,), connectivity=8)
        np.testing.assert_array_equal(np.array(row["instances"]), expected.id_map)
        assert row["instance_ids"] == expected.ids.tolist()
    coco = _coco(miniature, "test")
    assert result.counts["polarization"]["test"]["instances"] < sum(
        len(_polygons_by_rank(coco, i)) for i in GOOD_TEST)
    info = json.loads((tmp_path / "out" / "polarization" / "aims_config.json").read_text())
    assert any("instances='components'" in n for n in info["notes"])
    assert info["instance_source"]["test"] == {"kind": "components", "connectivity": 8, "detail":
                                               "connected components of mask/, as requested (instances='components')"}
    assert "8-connectivity" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(AimsError, match="instances must be one of"):
        _prepare(miniature, tmp_path, instances="panes")


def test_split_without_json_falls_back_to_components(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    (src / "RGBP-Glass" / "test" / "instances_test.json").unlink()
    result = _prepare(src, tmp_path)
    assert _kinds(result) == {"train": RELEASE_INSTANCES, "test": CONNECTED_COMPONENTS}
    info = json.loads((tmp_path / "out" / "polarization" / "aims_config.json").read_text())
    note = next(n for n in info["notes"] if n.startswith("Instance source"))
    assert "train: the release's instances_train.json" in note
    assert "test: connected components of mask/: the split has no instances_test.json" in note
    rows = _rows(tmp_path / "out")
    for image_id in GOOD_TEST:
        glass = read_glass_mask(_split_dir(src, image_id) / "mask" / f"{image_id}_mask.png")
        expected = split_instances(glass.astype(np.uint8), ignore=(0,), connectivity=8)
        assert rows[image_id]["instance_ids"] == expected.ids.tolist()


def test_malformed_json_names_the_file_and_annotation(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    path = src / "RGBP-Glass" / "train" / "instances_train.json"
    coco = json.loads(path.read_text())
    bad = coco["annotations"][3]
    bad["segmentation"] = [[1.0, 2.0, 3.0]]
    path.write_text(json.dumps(coco))
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and f"annotation id {bad['id']}" in msg and "even number" in msg
    path.write_text(json.dumps(coco).replace("1.0, 2.0, 3.0", "NaN, 2.0, 3.0, 4.0, 5.0, 6.0"))
    with pytest.raises(SourceFormatError, match="NaN"):
        _prepare(src, tmp_path)


def test_json_not_matching_the_frames(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    path = src / "RGBP-Glass" / "test" / "instances_test.json"
    coco = json.loads(path.read_text())
    coco["images"] = [i for i in coco["images"] if not i["file_name"].startswith(GOOD_TEST[1])]
    kept = {i["id"] for i in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    path.write_text(json.dumps(coco))
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(path) in str(err.value) and f"{GOOD_TEST[1]}_rgb.tiff" in str(err.value)
    coco = json.loads((miniature / "RGBP-Glass" / "test" / "instances_test.json").read_text())
    coco["images"][0]["width"] += 1
    path.write_text(json.dumps(coco))
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path, workers=2)
    assert str(path) in str(err.value) and "would not line up" in str(err.value)


def test_json_with_frames_the_folder_lacks_is_fine(miniature, tmp_path):
    # a partial copy of the release (e.g. a public sample) with the full instances file
    src = _copy(miniature, tmp_path)
    split = src / "RGBP-Glass" / "test"
    for column, suffix in (("image", "_rgb.tiff"), ("aolp", "_aolp.tiff"), ("dolp", "_dolp.tiff"),
                           ("mask", "_mask.png")):
        (split / column / f"{GOOD_TEST[0]}{suffix}").unlink()
    result = _prepare(src, tmp_path)
    assert result.counts["polarization"]["test"]["images"] == len(GOOD_TEST) - 1


def test_broken_ids_are_skipped_and_reported(prepared):
    out, result = prepared
    assert set(BROKEN_IDS) <= set(TRAIN_IDS)
    assert sorted(s.image_id for s in result.skipped) == sorted(BROKEN_IDS)
    assert all("broken" in s.reason for s in result.skipped)
    card = (out / "README.md").read_text()
    for broken in BROKEN_IDS:
        assert broken in card
    assert "R,G,B order" in card and "original RGBP-Glass release" in card
    assert "16-bit RGB PNG" in card and "value >> 8" in card and "PGSNet" in card
    info = json.loads((out / "polarization" / "aims_config.json").read_text())
    assert "value >> 8" in info["columns"]["rgb"]
    assert any("instances_train.json" in n and "instances_test.json" in n for n in info["notes"])
    stats = info["channel_stats"]
    assert set(stats) == {"rgb", "aolp", "dolp"}
    assert all(len(stats[c]["mean"]) == 3 and min(stats[c]["std"]) > 0 for c in stats)
    assert all(0 < m < 1 for m in stats["rgb"]["mean"])  # 16-bit RGB / 65535, in [0, 1]


def test_simcmf_repack_keeps_instance_ids(tmp_path):
    src = CONVERTER.write_miniature(tmp_path / "repack", layout="pgsnet")
    result = _prepare(src, tmp_path)
    assert sorted(s.image_id for s in result.skipped) == sorted(BROKEN_IDS)
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == sorted(GOOD_TRAIN + GOOD_TEST)
    split_of = {i: "test" if i in GOOD_TEST else "train" for i in rows}
    merged = 0
    for image_id, row in rows.items():
        given = np.asarray(Image.open(src / "pgsnet" / split_of[image_id] / "instance_mask"
                                      / f"{image_id}_instance_mask.png")).astype(np.int64)
        np.testing.assert_array_equal(np.array(row["instances"]).astype(np.int64), given)
        assert row["instance_ids"] == sorted(set(np.unique(given)) - {0})
        assert set(row["instance_ids"]) <= {3, 7, 11, 15, 19} and set(row["category"]) == {1}
        import cv2

        for inst in row["instance_ids"]:
            n, _ = cv2.connectedComponents((given == inst).astype(np.uint8), connectivity=8)
            merged += n - 1 > 1  # one id over two separate panes stays one instance
    assert merged >= 1
    assert "SimCMF repack `pgsnet`" in (tmp_path / "out" / "README.md").read_text()
    assert not list((src / "pgsnet").rglob("*.json"))


def _zip_tree(folder: Path, archive: Path, *, only: str | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and (only is None or f"/{only}/" in f"/{rel}"):
                zf.write(p, rel)
    return archive


def test_zip_archive_as_source(miniature, tmp_path):
    # a name without a known extension: the kind is detected by content
    archive = _zip_tree(miniature, tmp_path / "download.bin")
    result = _prepare(archive, tmp_path, workers=2)
    assert result.counts["polarization"]["test"]["images"] == len(GOOD_TEST)


@pytest.mark.parametrize("shape", ["two-archives", "flat-splits", "split-folders-named"])
def test_layout_variants_are_found(miniature, tmp_path, shape):
    root = miniature / "RGBP-Glass"
    src = tmp_path / "src"
    src.mkdir()
    if shape == "two-archives":
        # train archive holds `train/…`; test archive holds `RGBP-Glass/test/…`, as a tar
        _zip_tree(root, src / "RGBP-Glass-train.zip", only="train")
        with tarfile.open(src / "test_archive.tar.gz", "w:gz") as tf:
            tf.add(root / "test", arcname="RGBP-Glass/test")
    elif shape == "flat-splits":
        shutil.copytree(root / "train", src / "train")
        shutil.copytree(root / "test", src / "test")
    else:  # each split extracted into a folder named after its archive
        shutil.copytree(root / "train", src / "rgbp-glass-train")
        shutil.copytree(root / "test", src / "RGBP-Glass_test")
    found = locate(src)
    assert set(found) == {"train", "test"} and {d.kind for d in found.values()} == {"original"}
    assert sorted(p.name for p in (found["test"].path / "image").iterdir()) == sorted(
        f"{i}_rgb.tiff" for i in TEST_IDS)


def test_manual_download_message_without_source():
    with pytest.raises(AimsError) as err:
        CONVERTER.list_samples(["polarization"])
    msg = str(err.value)
    assert "1L7M3DlSeIeFr7eqDFfp5X_9UH6Qr-tPB" in msg and "drive.google.com" in msg
    assert "aims prepare --modality polarization --source PATH" in msg


def test_archive_missing_a_split(miniature, tmp_path):
    archive = _zip_tree(miniature, tmp_path / "RGBP-Glass-train.zip", only="train")
    with pytest.raises(SourceFormatError) as err:
        _prepare(archive, tmp_path)
    msg = str(err.value)
    assert "no test split" in msg and "train split is at" in msg and "RGBP-Glass/" in msg


def test_nothing_recognisable_lists_what_was_found(tmp_path):
    (tmp_path / "src" / "photos").mkdir(parents=True)
    (tmp_path / "src" / "readme.txt").write_text("hi")
    with pytest.raises(SourceFormatError) as err:
        locate(tmp_path / "src")
    assert "photos/, readme.txt" in str(err.value) and "image/<id>_rgb.tiff" in str(err.value)


def _skipped_one(result, tmp_path: Path, image_id: str, path: Path, *needles: str) -> None:
    """One unreadable sample: skipped (not fatal), counted, named with its file in the
    summary and the card; every other sample is converted."""
    assert [s.image_id for s in result.skipped if s.image_id not in BROKEN_IDS] == [image_id]
    skipped = next(s for s in result.skipped if s.image_id == image_id)
    assert str(path) in skipped.reason and all(n in skipped.reason for n in needles), skipped.reason
    assert sum(c["images"] for c in result.counts["polarization"].values()) == len(GOOD_TRAIN + GOOD_TEST) - 1
    assert f"{image_id} (" in (tmp_path / "out" / "README.md").read_text()


def test_label_size_differs_from_image(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    mask = src / "RGBP-Glass" / "test" / "mask" / f"{GOOD_TEST[0]}_mask.png"
    Image.open(mask).resize((40, 30)).save(mask)
    result = _prepare(src, tmp_path, workers=2)  # found in a worker, reported here
    _skipped_one(result, tmp_path, GOOD_TEST[0], mask, "40×30")


def test_empty_split(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    image_dir = src / "RGBP-Glass" / "test" / "image"
    for f in image_dir.iterdir():
        f.unlink()
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(image_dir) in str(err.value) and "empty" in str(err.value)


def test_missing_aolp_for_one_id(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    gone = src / "RGBP-Glass" / "train" / "aolp" / f"{GOOD_TRAIN[1]}_aolp.tiff"
    gone.unlink()
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(gone) in str(err.value) and "does not exist" in str(err.value)


def test_truncated_tiff_is_skipped_naming_the_file(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    tiff = src / "RGBP-Glass" / "train" / "dolp" / f"{GOOD_TRAIN[0]}_dolp.tiff"
    tiff.write_bytes(tiff.read_bytes()[:500])
    _skipped_one(_prepare(src, tmp_path), tmp_path, GOOD_TRAIN[0], tiff, "truncated or corrupt")
    with pytest.raises(UnreadableSample, match="truncated or corrupt"):  # the same error outside the pipeline
        CONVERTER.read_samples(["polarization"], source=src)


def test_wrong_tiff_kind_is_skipped_naming_the_file(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    tiff = src / "RGBP-Glass" / "test" / "aolp" / f"{GOOD_TEST[0]}_aolp.tiff"
    Image.open(tiff).convert("L").save(tiff, format="TIFF")
    _skipped_one(_prepare(src, tmp_path), tmp_path, GOOD_TEST[0], tiff, "3-channel 8-bit TIFF")


def test_full_resolution_is_the_release_size(tmp_path):
    from aims.converters.rgbp_glass_miniature import FULL_SIZE, write_split

    coco = write_split(tmp_path / "train", tuple(GOOD_TRAIN[:1]), np.random.default_rng(0),
                       FULL_SIZE, layout="original")
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (612, 512)
    for column, suffix in (("image", "_rgb.tiff"), ("aolp", "_aolp.tiff"), ("mask", "_mask.png")):
        img = Image.open(tmp_path / "train" / column / f"{GOOD_TRAIN[0]}{suffix}")
        assert img.size == (612, 512)
