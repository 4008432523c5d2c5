"""The SimCMF NYUDepthv2 repack as input of `depth`/`hha`: recognised by its layout through
the nyuv2 converter, values kept, units detected, broken frames counted, bad input refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from aims.converters.nyuv2 import CONVERTER
from aims.converters.nyuv2_repack import REPACK_FOLDER, find_repack, write_miniature
from aims.errors import AimsError, SourceFormatError
from aims.prepare import prepare_source


def _prepare(src: Path, out: Path, configs=("depth", "hha"), workers: int = 1):
    return prepare_source(CONVERTER, list(configs), dataset_dir=out, source=src, workers=workers,
                          progress=False)


@pytest.fixture(scope="module")
def repack(tmp_path_factory) -> Path:
    return write_miniature(tmp_path_factory.mktemp("nyu_repack"), num_frames=6)


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / REPACK_FOLDER
    shutil.copytree(root, dst)
    return dst


def test_layout_is_the_repacks(repack):
    assert find_repack(repack) == repack and find_repack(repack.parent) == repack
    first = (repack / "train.txt").read_text().splitlines()[0].split("\t")[0]
    assert first == "RGB/1.jpg"
    assert np.load(repack / "Depth" / "1.npy").dtype == np.float32
    assert Image.open(repack / "HHA" / "1.jpg").format == "JPEG"


def test_prepare_from_the_parent_folder_keeps_the_repack_values(repack, tmp_path):
    out = tmp_path / "ds"
    result = _prepare(repack.parent, out, workers=2)
    assert result.skipped == []
    depth = datasets.load_dataset(str(out), "depth", download_mode="force_redownload")
    hha = datasets.load_dataset(str(out), "hha", download_mode="force_redownload")
    rows = {r["image_id"]: r for part in depth.values() for r in part}
    assert sorted(rows) == [f"{n:04d}" for n in range(1, 7)]  # 1-based, like the .mat converter
    row = rows["0002"]
    assert row["image_id"] in [r["image_id"] for r in depth["test"]]
    d = np.load(repack / "Depth" / "2.npy").astype(np.float64)
    np.testing.assert_array_equal(np.array(row["depth"]).astype(np.int64), np.floor(d * 1000 + 0.5))
    np.testing.assert_array_equal(np.array(row["rgb"]), np.asarray(Image.open(repack / "RGB" / "2.jpg")))
    ids = np.asarray(Image.open(repack / "Mask_gt" / "2.png")).astype(np.int64)
    np.testing.assert_array_equal(np.array(row["instances"]).astype(np.int64), ids)
    assert set(row["category"]) == {-1}
    hrow = next(r for part in hha.values() for r in part if r["image_id"] == "0002")
    np.testing.assert_array_equal(np.array(hrow["hha"]), np.asarray(Image.open(repack / "HHA" / "2.jpg")))
    card = (out / "README.md").read_text()
    assert "unit detected from the values: m" in card and "not recomputed" in card
    assert str(tmp_path) not in card  # the card does not depend on where the source was


def test_millimetre_depth_is_detected(tmp_path):
    root = write_miniature(tmp_path / "mm", num_frames=3, depth_unit="mm")
    samples, _ = CONVERTER.read_samples(["depth"], source=root)
    d = np.load(root / "Depth" / "1.npy")
    np.testing.assert_array_equal(samples[0].images["depth"], np.floor(d.astype(np.float64) + 0.5).astype(np.uint16))
    assert {s.facts["depth_unit"] for s in samples} == {"mm"}


def test_ambiguous_depth_units_are_refused_naming_the_file(repack, tmp_path):
    root = _copy(repack, tmp_path)
    np.save(root / "Depth" / "1.npy", np.full((480, 640), 50.0, dtype=np.float32))
    with pytest.raises(SourceFormatError, match="cannot tell the depth unit") as err:
        _prepare(root, tmp_path / "ds", configs=("depth",))
    assert "1.npy" in str(err.value)


def test_known_broken_frame_that_is_unreadable_is_skipped_and_counted(repack, tmp_path):
    root = _copy(repack, tmp_path)
    # renumber frame 1 as 398, one of the two frames the reference loader replaces
    for sub, ext in (("RGB", "jpg"), ("Depth", "npy"), ("HHA", "jpg"), ("Mask_gt", "png")):
        (root / sub / f"1.{ext}").rename(root / sub / f"398.{ext}")
    (root / "RGB" / "398.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    text = (root / "train.txt").read_text().replace("RGB/1.jpg\tMask_gt/1.png", "RGB/398.jpg\tMask_gt/398.png")
    (root / "train.txt").write_text(text)
    result = _prepare(root, tmp_path / "ds", configs=("depth",))
    assert [s.image_id for s in result.skipped] == ["0398"]
    assert "replaces as broken" in result.skipped[0].reason
    assert "0398" in (tmp_path / "ds" / "README.md").read_text()


def test_missing_files_and_empty_split_are_refused(repack, tmp_path):
    root = _copy(repack, tmp_path)
    (root / "Mask_gt" / "3.png").unlink()
    with pytest.raises(AimsError, match="lacks 1 file") as err:
        CONVERTER.list_samples(["depth"], source=root)
    assert str(root / "Mask_gt" / "3.png") in str(err.value)
    root2 = _copy(repack, tmp_path / "b")
    (root2 / "test.txt").write_text("\n")
    with pytest.raises(SourceFormatError, match="test split must not be empty"):
        CONVERTER.list_samples(["depth"], source=root2)


def test_size_mismatch_is_skipped_and_zero_based_numbering_is_shifted(repack, tmp_path):
    root = _copy(repack, tmp_path)
    ids = np.asarray(Image.open(root / "Mask_gt" / "4.png"))
    Image.fromarray(np.ascontiguousarray(ids[:, :-3])).save(root / "Mask_gt" / "4.png")
    result = _prepare(root, tmp_path / "ds", configs=("depth",))
    assert [s.image_id for s in result.skipped] == ["0004"]
    assert "sizes differ" in result.skipped[0].reason
    assert sum(c["images"] for c in result.counts["depth"].values()) == 5
    # a repack numbered from 0
    root0 = _copy(repack, tmp_path / "zero")
    for sub, ext in (("RGB", "jpg"), ("Depth", "npy"), ("HHA", "jpg"), ("Mask_gt", "png")):
        (root0 / sub / f"6.{ext}").rename(root0 / sub / f"0.{ext}")
    (root0 / "train.txt").write_text((root0 / "train.txt").read_text().replace("RGB/6.jpg", "RGB/0.jpg"))
    with CONVERTER.list_samples(["depth"], source=root0) as listing:
        assert sorted(r.image_id for r in listing.refs) == [f"{n:04d}" for n in range(1, 7)]
        assert listing.zero_based
