"""RGBP-Glass → config `polarization`: the miniature release and its SimCMF repack convert
with the real pipeline and load with `datasets`; stored values are the source's (AoLP/DoLP
channel order documented as R,G,B = the TIFF's channels reversed); every layout variant is
found; bad input fails with errors naming the file.

No checksum is published for either archive (sources.md §1), so there is no checksum
mismatch to test here: the layout errors are tested instead."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import aims
from aims.converters.registry import group_by_source
from aims.converters.rgbp_glass import BROKEN_IDS, CONVERTER, locate
from aims.converters.rgbp_glass_miniature import TEST_IDS, TRAIN_IDS
from aims.errors import AimsError, SourceFormatError
from aims.prepare import prepare_source

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


def _rows(dataset_dir: Path) -> dict[str, dict]:
    ds = datasets.load_dataset(str(dataset_dir), "polarization")
    return {r["image_id"]: {**r, "_split": split} for split in ds for r in ds[split]}


def _copy(miniature: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(miniature, dst)
    return dst


def _prepare(src: Path, tmp_path: Path, workers: int = 1):
    return prepare_source(CONVERTER, ["polarization"], dataset_dir=tmp_path / "out", source=src,
                          workers=workers, progress=False)


def test_registered_for_polarization():
    assert group_by_source(["polarization"]) == {"rgbp_glass": ["polarization"]}


def test_prepared_values_equal_the_source(prepared, miniature):
    out, result = prepared
    rows = _rows(out)
    assert sorted(rows) == sorted(GOOD_TRAIN + GOOD_TEST)
    assert {rows[i]["_split"] for i in GOOD_TEST} == {"test"}
    assert {rows[i]["_split"] for i in GOOD_TRAIN} <= {"train", "validation"}
    split_dir = miniature / "RGBP-Glass"
    for image_id, row in rows.items():
        split = "test" if image_id in GOOD_TEST else "train"
        d = split_dir / split
        rgb = np.asarray(Image.open(d / "image" / f"{image_id}_rgb.tiff"))
        aolp_file = np.asarray(Image.open(d / "aolp" / f"{image_id}_aolp.tiff"))
        dolp_file = np.asarray(Image.open(d / "dolp" / f"{image_id}_dolp.tiff"))
        np.testing.assert_array_equal(np.array(row["rgb"]), rgb)
        # documented order: stored channel k = file channel 2 - k (file is B,G,R)
        np.testing.assert_array_equal(np.array(row["aolp"]), aolp_file[:, :, ::-1])
        np.testing.assert_array_equal(np.array(row["dolp"]), dolp_file[:, :, ::-1])
        mask = np.asarray(Image.open(d / "mask" / f"{image_id}_mask.png"))
        glass = (mask[:, :, 1] if mask.ndim == 3 else mask) >= 128
        ids = np.array(row["instances"]).astype(np.int64)
        assert ((ids > 0) == glass).all()
        assert row["category"] == [1] * len(row["instance_ids"]) and row["instance_ids"]
        for k, inst in enumerate(row["instance_ids"]):
            assert (ids == inst).sum() == row["area"][k]
        x = aims.modality_tensor(row, "polarization")
        assert x.dtype == np.float32 and x.shape == (9, *rgb.shape[:2])
        np.testing.assert_allclose(x[0:3], rgb.transpose(2, 0, 1) / 255, atol=1e-6)
        np.testing.assert_allclose(x[3:6], aolp_file[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)
        np.testing.assert_allclose(x[6:9], dolp_file[:, :, ::-1].transpose(2, 0, 1) / 255, atol=1e-6)


def test_broken_ids_are_skipped_and_reported(prepared):
    out, result = prepared
    assert sorted(s.image_id for s in result.skipped) == sorted(BROKEN_IDS)
    assert all("broken" in s.reason for s in result.skipped)
    card = (out / "README.md").read_text()
    for broken in BROKEN_IDS:
        assert broken in card
    assert "R,G,B order" in card and "original RGBP-Glass release" in card
    info = json.loads((out / "polarization" / "aims_config.json").read_text())
    stats = info["channel_stats"]
    assert set(stats) == {"rgb", "aolp", "dolp"}
    assert all(len(stats[c]["mean"]) == 3 and min(stats[c]["std"]) > 0 for c in stats)


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
        assert set(row["instance_ids"]) <= {3, 7} and set(row["category"]) == {1}
        import cv2

        for inst in row["instance_ids"]:
            n, _ = cv2.connectedComponents((given == inst).astype(np.uint8), connectivity=8)
            merged += n - 1 > 1  # one id over two separate panes stays one instance
    assert merged >= 1
    assert "SimCMF repack `pgsnet`" in (tmp_path / "out" / "README.md").read_text()


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
        CONVERTER.open(["polarization"])
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


def test_label_size_differs_from_image(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    mask = src / "RGBP-Glass" / "test" / "mask" / f"{GOOD_TEST[0]}_mask.png"
    Image.open(mask).resize((40, 30)).save(mask)
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path, workers=2)  # raised in a worker, re-raised here
    assert str(mask) in str(err.value) and "40×30" in str(err.value)
    assert not (tmp_path / "out" / "polarization").exists()


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


def test_truncated_tiff_names_the_file(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    tiff = src / "RGBP-Glass" / "train" / "dolp" / f"{GOOD_TRAIN[0]}_dolp.tiff"
    tiff.write_bytes(tiff.read_bytes()[:500])
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(tiff) in str(err.value) and "truncated or corrupt" in str(err.value)


def test_wrong_tiff_kind_names_the_file(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    tiff = src / "RGBP-Glass" / "test" / "aolp" / f"{GOOD_TEST[0]}_aolp.tiff"
    Image.open(tiff).convert("L").save(tiff, format="TIFF")
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(tiff) in str(err.value) and "3-channel 8-bit TIFF" in str(err.value)


def test_full_resolution_is_the_camera_size(tmp_path):
    from aims.converters.rgbp_glass_miniature import FULL_SIZE, write_split

    write_split(tmp_path / "train", GOOD_TRAIN[:1], np.random.default_rng(0), FULL_SIZE,
                layout="original")
    img = Image.open(tmp_path / "train" / "aolp" / f"{GOOD_TRAIN[0]}_aolp.tiff")
    assert (img.size, img.mode, img.format) == ((1224, 1024), "RGB", "TIFF")
