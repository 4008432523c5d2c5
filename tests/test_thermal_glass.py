"""RGB-T Glass → config `thermal`: the miniature release and the SimCMF CSV repack convert
with the real pipeline and load with `datasets`; temperatures come back in °C within the
documented quantisation (≤ 1/512 °C); "." entries are not samples; bad input fails with
errors naming the file.

No checksum is published for the archive (sources.md §4), so there is no checksum
mismatch to test: the layout errors are tested instead."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

import aims
from aims.converters.registry import group_by_source
from aims.converters.thermal_glass import CONVERTER, CSV_NAMES, celsius_to_code, locate
from aims.converters.thermal_glass_miniature import SAMPLES
from aims.errors import AimsError, SourceFormatError
from aims.modalities import TEMPERATURE_STEP_C, column_tensor
from aims.prepare import prepare_source

ALL_IDS = sorted(f"{scene}_{i}" for _, scene, ids in SAMPLES for i in ids)
TEST_IDS = sorted(f"{scene}_{i}" for split, scene, ids in SAMPLES if split == "test" for i in ids)
MAX_ERROR = TEMPERATURE_STEP_C / 2 + 1e-9


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> Path:
    return CONVERTER.write_miniature(tmp_path_factory.mktemp("thermal_src"))


@pytest.fixture(scope="module")
def prepared(miniature, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("thermal_prepared") / "dataset"
    prepare_source(CONVERTER, ["thermal"], dataset_dir=out, source=miniature, workers=2,
                   progress=False)
    return out


def _rows(dataset_dir: Path) -> dict[str, dict]:
    ds = datasets.load_dataset(str(dataset_dir), "thermal")
    return {r["image_id"]: {**r, "_split": split} for split in ds for r in ds[split]}


def _sample_dir(root: Path, image_id: str) -> Path:
    for split, scene, ids in SAMPLES:
        for i in ids:
            if f"{scene}_{i}" == image_id:
                return root / split / scene / i
    raise KeyError(image_id)


def _copy(miniature: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(miniature, dst)
    return dst


def _prepare(src: Path, tmp_path: Path, workers: int = 1):
    return prepare_source(CONVERTER, ["thermal"], dataset_dir=tmp_path / "out", source=src,
                          workers=workers, progress=False)


def test_registered_for_thermal():
    assert group_by_source(["thermal"]) == {"thermal_glass": ["thermal"]}


def test_quantisation_error_is_below_five_thousandths():
    rng = np.random.default_rng(1)
    celsius = np.concatenate([rng.uniform(-80, 175.99, 200_000), [-80.0, 175.996, 24.99, 30.3]])
    code = celsius_to_code(celsius.reshape(1, -1), Path("x.npy"))
    back = column_tensor("temperature", code).astype(np.float64)[0, 0]
    err = np.abs(back - celsius).max()
    assert err <= MAX_ERROR and err < 0.005 and err > 0  # quantised, finely


def test_prepared_values_equal_the_source(prepared, miniature):
    rows = _rows(prepared)
    assert sorted(rows) == ALL_IDS  # no "." entries, no backup copy
    assert {rows[i]["_split"] for i in TEST_IDS} == {"test"}
    root = miniature / "RGB-T-glass"
    for image_id, row in rows.items():
        d = _sample_dir(root, image_id)
        celsius = np.load(d / "temperature.npy")
        assert celsius.dtype == np.float64
        rgb = np.asarray(Image.open(d / "rgb.png"))
        np.testing.assert_array_equal(np.array(row["rgb"]), rgb)
        t = aims.modality_tensor(row, "thermal")
        assert t.dtype == np.float32 and t.shape == (1, *celsius.shape)
        assert np.abs(t[0].astype(np.float64) - celsius).max() <= MAX_ERROR + 1e-5  # float32
        rgbt = aims.modality_tensor(row, "rgb-thermal")  # documented order [B, R, G, T]
        np.testing.assert_array_equal(rgbt[[1, 2, 0]], rgb.transpose(2, 0, 1) / np.float32(255))
        np.testing.assert_array_equal(rgbt[3], t[0])
        glass = np.asarray(Image.open(d / "mask.png")) >= 128
        ids = np.array(row["instances"]).astype(np.int64)
        assert ((ids > 0) == glass).all()
        assert set(row["category"]) <= {1} and len(row["instance_ids"]) == len(set(row["instance_ids"]))
    assert rows["tory_noglass_TORY0007"]["instance_ids"] == []
    card = (prepared / "README.md").read_text()
    assert "-80 + code / 256" in card and "original RGB-T-glass release" in card


def test_simcmf_csv_repack(tmp_path):
    src = CONVERTER.write_miniature(tmp_path / "repack", layout="simcmf")
    csv_bytes = (src / "RGB-Thermal-Glass" / CSV_NAMES["train"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        csv_bytes.decode("utf-8")  # the list really is GBK, not UTF-8
    _prepare(src, tmp_path, workers=2)
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == ALL_IDS
    root = src / "RGB-Thermal-Glass"
    for image_id, row in rows.items():
        split = "test" if image_id in TEST_IDS else "train"
        given = np.asarray(Image.open(root / "instance_mask" / split / f"{image_id}.png"))
        np.testing.assert_array_equal(np.array(row["instances"]).astype(np.int64), given)
        assert set(row["instance_ids"]) <= {2, 5}
        celsius = np.load(_sample_dir(root, image_id) / "temperature.npy")
        assert np.abs(aims.modality_tensor(row, "thermal")[0] - celsius).max() < 0.005
    assert "SimCMF repack RGB-Thermal-Glass" in (tmp_path / "out" / "README.md").read_text()


def test_zip_archive_as_source(miniature, tmp_path):
    archive = tmp_path / "RGB-T-glass.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(miniature.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(miniature).as_posix())
    result = _prepare(archive, tmp_path)
    assert result.counts["thermal"]["test"]["images"] == len(TEST_IDS)


def test_manual_download_message_without_source():
    with pytest.raises(AimsError) as err:
        CONVERTER.list_samples(["thermal"])
    msg = str(err.value)
    assert "1ysG04qGmnZv7UaybZUuyybaJYJLUkNHX" in msg
    assert "aims prepare --modality thermal --source PATH" in msg


def test_missing_split_folder(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    shutil.rmtree(src / "RGB-T-glass" / "test")
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert "no test folder" in str(err.value) and "train/" in str(err.value)


def test_empty_split(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    test = src / "RGB-T-glass" / "test"
    for scene in test.iterdir():
        shutil.rmtree(scene)
    (test / "notes.txt").write_text("only a '.' entry left")
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(test) in str(err.value) and "empty" in str(err.value)


def test_nothing_recognisable_lists_what_was_found(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(SourceFormatError) as err:
        locate(tmp_path / "src")
    assert "images/" in str(err.value) and "RGB_T_Glass_train_GroundTruth.csv" in str(err.value)


def _skipped_one(result, tmp_path: Path, image_id: str, path: Path, needle: str) -> None:
    """One unreadable sample: skipped (not fatal), counted, named with its file in the
    summary and the card; every other sample is converted."""
    assert [s.image_id for s in result.skipped] == [image_id]
    assert str(path) in result.skipped[0].reason and needle in result.skipped[0].reason
    assert sum(c["images"] for c in result.counts["thermal"].values()) == len(ALL_IDS) - 1
    assert f"1 source sample(s) skipped: {image_id}" in (tmp_path / "out" / "README.md").read_text()


def test_label_size_differs_from_image(miniature, tmp_path):
    src = _copy(miniature, tmp_path)
    mask = _sample_dir(src / "RGB-T-glass", TEST_IDS[0]) / "mask.png"
    Image.open(mask).resize((20, 10)).save(mask)
    _skipped_one(_prepare(src, tmp_path, workers=2), tmp_path, TEST_IDS[0], mask, "20×10")


@pytest.mark.parametrize("damage", ["truncated", "pickled", "kelvin", "nan"])
def test_bad_temperature_file_is_skipped_naming_the_file(miniature, tmp_path, damage):
    src = _copy(miniature, tmp_path)
    npy = _sample_dir(src / "RGB-T-glass", ALL_IDS[1]) / "temperature.npy"
    if damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:300])
    elif damage == "pickled":
        np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "kelvin":
        np.save(npy, np.load(npy) + 273.15)
    else:
        t = np.load(npy)
        t[0, 0] = np.nan
        np.save(npy, t)
    needle = {"truncated": "truncated or corrupt", "pickled": "cannot be read",
              "kelvin": "Kelvin", "nan": "non-finite"}[damage]
    _skipped_one(_prepare(src, tmp_path), tmp_path, ALL_IDS[1], npy, needle)


def test_csv_path_that_does_not_exist(tmp_path):
    src = CONVERTER.write_miniature(tmp_path / "repack", layout="simcmf")
    csv_path = src / "RGB-Thermal-Glass" / CSV_NAMES["test"]
    lines = csv_path.read_bytes().decode("gbk").splitlines()
    lines[2] = lines[2].replace("AGRI1826/rgb.png", "AGRI9999/rgb.png")
    csv_path.write_bytes("\r\n".join(lines).encode("gbk"))
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    msg = str(err.value)
    assert str(csv_path) in msg and "line 3" in msg and "AGRI9999/rgb.png" in msg


def test_csv_neither_gbk_nor_utf8(tmp_path):
    src = CONVERTER.write_miniature(tmp_path / "repack", layout="simcmf")
    csv_path = src / "RGB-Thermal-Glass" / CSV_NAMES["train"]
    csv_path.write_bytes(b",rgb,mask\r\n0,\xff\xfe\xff,x\r\n")
    with pytest.raises(SourceFormatError) as err:
        _prepare(src, tmp_path)
    assert str(csv_path) in str(err.value) and "neither GBK" in str(err.value)


def test_full_resolution_is_the_camera_size(tmp_path):
    from aims.converters.thermal_glass_miniature import FULL_SIZE, synthetic_sample

    s = synthetic_sample(np.random.default_rng(0), FULL_SIZE)
    assert s["temperature"].shape == (480, 640) and s["temperature"].dtype == np.float64
    assert s["rgb"].shape == (480, 640, 3) and s["rgb"].dtype == np.uint8
