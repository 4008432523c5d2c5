"""IVRG-NIR → config `nir`: the SimCMF repack's labels with nirscene1's lossless TIFFs (or
the repack's JPEGs), loaded back with the real `datasets`, and every kind of bad input."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from aims.converters.base import Sample
from aims.converters.ivrg_nir import (
    CONVERTER,
    IMAGES_SUBFOLDER,
    NIRSCENE_ZIP,
    REPACK_FOLDER,
    SPLIT_CSV,
    parse_key,
    read_csv_text,
)
from aims.converters.ivrg_nir_miniature import write_csv, write_miniature
from aims.errors import AimsError, SourceFormatError
from aims.modalities import MODALITIES, modality_tensor
from aims.prepare import prepare_source


def _prepare(src, out: Path, **kw):
    return prepare_source(CONVERTER, ["nir"], dataset_dir=out, source=src, workers=kw.pop("workers", 1),
                          progress=False, **kw)


def _load(out: Path, split: str):
    # a local folder's `datasets` cache is keyed on the card, not the files: always reload
    return datasets.load_dataset(str(out), "nir", split=split, download_mode="force_redownload")


def _csv_rows(repack: Path, split: str) -> list[list[str]]:
    text = (repack / SPLIT_CSV[split]).read_bytes().decode("gbk")
    return [line.split(",") for line in text.splitlines()[1:]]


def _zip_tiff(zip_path: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf:
        return np.asarray(Image.open(io.BytesIO(zf.read(name))))


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return write_miniature(tmp_path_factory.mktemp("nir_src"))


@pytest.fixture(scope="module")
def prepared(mini, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nir_ds") / "dataset"
    _prepare(mini, out, workers=2)
    return out


def _copy(mini: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(mini, dst)
    return dst


def test_miniature_reproduces_the_repack_and_nirscene1_layouts(mini):
    repack = mini / REPACK_FOLDER
    raw = (repack / SPLIT_CSV["train"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the non-ASCII folder name is really GBK-encoded
    header, *rows = raw.decode("gbk").splitlines()
    assert header.split(",")[0] == "" and len(header.split(",")) == 3  # pandas index column
    index, nir, mask = rows[0].split(",")
    assert index == "0" and "NIRimages" in nir and "_nir" in nir and nir.endswith(".JPG")
    assert (repack / IMAGES_SUBFOLDER / nir).is_file()
    assert (repack / IMAGES_SUBFOLDER / nir.replace("NIRimages", "RGBimages").replace("_nir", "_rgb")).is_file()
    m = Image.open(repack / IMAGES_SUBFOLDER / mask)
    assert m.mode in ("I;16", "I") and m.format == "PNG"
    assert Image.open(repack / IMAGES_SUBFOLDER / nir).format == "JPEG"
    with zipfile.ZipFile(mini / NIRSCENE_ZIP) as zf:
        names = zf.namelist()
    assert "nirscene1/country/0001_rgb.tiff" in names and "nirscene1/country/0001_nir.tiff" in names
    rgb = Image.open(io.BytesIO(zipfile.ZipFile(mini / NIRSCENE_ZIP).read("nirscene1/country/0001_rgb.tiff")))
    nir_t = Image.open(io.BytesIO(zipfile.ZipFile(mini / NIRSCENE_ZIP).read("nirscene1/country/0001_nir.tiff")))
    assert (rgb.format, rgb.mode, nir_t.format, nir_t.mode) == ("TIFF", "RGB", "TIFF", "L")


def test_parse_key_reads_category_and_number_from_either_naming():
    assert parse_key("nirscene1/country/0001_nir.tiff") == ("country", 1)
    assert parse_key("NIRimages\\Forest\\0021_nir.JPG") == ("forest", 21)
    assert parse_key("NIRimages/oldbuilding_0007_nir.JPG") == ("oldbuilding", 7)
    assert parse_key("NIRimages/img_0007_nir.JPG") is None


def test_prepared_nir_holds_the_lossless_tiffs_and_the_region_ids(prepared, mini):
    ds = datasets.load_dataset(str(prepared), "nir", download_mode="force_redownload")
    assert {"train", "test"} <= set(ds)
    rows = [r for part in ds.values() for r in part]
    assert len(rows) == 6
    row = next(r for r in rows if r["image_id"] == "country_0001")
    np.testing.assert_array_equal(np.array(row["rgb"]), _zip_tiff(mini / NIRSCENE_ZIP, "nirscene1/country/0001_rgb.tiff"))
    np.testing.assert_array_equal(np.array(row["nir"]), _zip_tiff(mini / NIRSCENE_ZIP, "nirscene1/country/0001_nir.tiff"))
    mask = np.asarray(Image.open(mini / REPACK_FOLDER / IMAGES_SUBFOLDER / "标注/country/0001_nir.png")).astype(np.int64)
    inst = np.array(row["instances"]).astype(np.int64)
    np.testing.assert_array_equal(inst > 0, mask > 0)
    assert sorted(row["instance_ids"]) == sorted(int(i) for i in np.unique(mask) if i)
    for k, i in enumerate(row["instance_ids"]):
        assert row["area"][k] == int((inst == i).sum())
        # every id is one instance as given: a disconnected id keeps the repack's pixels
        np.testing.assert_array_equal(inst == i, mask == np.unique(mask[inst == i])[0])
    assert set(c for r in rows for c in r["category"]) == {1}
    card = (prepared / "README.md").read_text()
    assert "original lossless TIFFs of nirscene1.zip" in card and "8-bit" in card


def test_modality_tensors_nir_and_shuffled_rgb_nir(prepared):
    row = _load(prepared, "test")[0]
    nir = modality_tensor(row, "nir")
    rgb = modality_tensor(row, "rgb")
    assert nir.shape[0] == 1 and nir.dtype == np.float32 and 0 <= nir.min() and nir.max() <= 1
    np.testing.assert_allclose(nir[0], np.array(row["nir"]) / 255.0, rtol=1e-6)
    x = modality_tensor(row, "rgb-nir")
    assert x.shape == (4, *nir.shape[1:])
    # documented order [B, R, G, NIR] = default_rng(0).permutation(4) applied to [R, G, B, NIR]
    assert MODALITIES["rgb-nir"].permutation().tolist() == [2, 0, 1, 3]
    np.testing.assert_array_equal(x, np.concatenate([rgb[2:3], rgb[0:1], rgb[1:2], nir]))
    np.testing.assert_array_equal(x, modality_tensor(row, "rgb-nir"))  # deterministic


def test_without_nirscene1_the_repack_jpegs_are_used_and_the_card_says_so(tmp_path):
    src = write_miniature(tmp_path / "src", with_nirscene=False, num_images=4)
    out = tmp_path / "ds"
    result = _prepare(src / REPACK_FOLDER, out)
    assert result.skipped == []
    row = next(r for r in _load(out, "train") if r["image_id"] == "country_0001")
    jpg = src / REPACK_FOLDER / IMAGES_SUBFOLDER / "RGBimages/country/0001_rgb.JPG"
    np.testing.assert_array_equal(np.array(row["rgb"]), np.asarray(Image.open(jpg)))
    assert "repack's JPEG files (lossy" in (out / "README.md").read_text()


def test_sixteen_bit_nir_tiffs_stay_sixteen_bit(tmp_path):
    src = write_miniature(tmp_path / "src", num_images=4, nir_bits=16)
    out = tmp_path / "ds"
    _prepare(src, out)
    row = next(r for r in _load(out, "train") if r["image_id"] == "country_0001")
    tiff = _zip_tiff(src / NIRSCENE_ZIP, "nirscene1/country/0001_nir.tiff")
    assert tiff.dtype == np.uint16 and tiff.max() > 255
    np.testing.assert_array_equal(np.array(row["nir"]).astype(np.int64), tiff)
    np.testing.assert_allclose(modality_tensor(row, "nir")[0], tiff / 65535.0, rtol=1e-6)
    assert "16-bit" in (out / "README.md").read_text()


def test_two_sources_given_separately(mini):
    stream = CONVERTER.open(["nir"], source=[mini / REPACK_FOLDER, mini / NIRSCENE_ZIP])
    with stream:
        assert len(stream) == 6 and stream._scene is not None
    with pytest.raises(AimsError, match="no segmentation labels"):
        CONVERTER.open(["nir"], source=[mini / NIRSCENE_ZIP])


def test_colour_nir_jpeg_becomes_pillow_luma(tmp_path):
    src = write_miniature(tmp_path / "src", with_nirscene=False, num_images=4)
    jpg = src / REPACK_FOLDER / IMAGES_SUBFOLDER / "NIRimages/country/0001_nir.JPG"
    grey = np.asarray(Image.open(jpg))
    colour = np.stack([grey, np.roll(grey, 3, axis=1), grey // 2], axis=2)
    Image.fromarray(colour).save(jpg, format="JPEG", quality=95)
    stream = CONVERTER.open(["nir"], source=src)
    sample = next(s for s in stream if s.image_id == "country_0001")
    np.testing.assert_array_equal(sample.images["nir"], np.asarray(Image.open(jpg).convert("L")))
    assert stream.converted_colour_nir == 1


# --------------------------------------------------------------------------- bad input


def test_a_csv_path_that_does_not_exist_names_the_csv_and_the_file(mini, tmp_path):
    src = _copy(mini, tmp_path)
    missing = src / REPACK_FOLDER / IMAGES_SUBFOLDER / "RGBimages/field/0011_rgb.JPG"
    missing.unlink()
    with pytest.raises(AimsError) as err:
        CONVERTER.open(["nir"], source=src)
    assert SPLIT_CSV["test"] in str(err.value) and str(missing) in str(err.value)
    assert "line 2" in str(err.value)


def test_a_csv_that_is_not_gbk_is_refused_naming_it(mini, tmp_path):
    src = _copy(mini, tmp_path)
    csv_path = src / REPACK_FOLDER / SPLIT_CSV["test"]
    csv_path.write_bytes(b",nir,mask\n0,NIRimages/\xff\xfe\x80/0001_nir.JPG,x.png\n")
    with pytest.raises(SourceFormatError, match="neither GBK nor UTF-8") as err:
        _prepare(src, tmp_path / "ds")
    assert str(csv_path) in str(err.value)
    assert not (tmp_path / "ds" / "nir").exists()


def test_a_utf8_resaved_csv_is_accepted(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(",nir,mask\n0,a/标注.JPG,b.png\n", encoding="utf-8")
    text = read_csv_text(path)
    assert "标注" in text or "a/" in text


def test_an_empty_split_is_refused(mini, tmp_path):
    src = _copy(mini, tmp_path)
    write_csv(src / REPACK_FOLDER / SPLIT_CSV["test"], [])
    with pytest.raises(SourceFormatError, match="lists no test images"):
        _prepare(src, tmp_path / "ds")


def test_a_missing_csv_is_refused(mini, tmp_path):
    src = _copy(mini, tmp_path)
    (src / REPACK_FOLDER / SPLIT_CSV["test"]).unlink()
    with pytest.raises(AimsError, match="does not exist"):
        CONVERTER.open(["nir"], source=src)


def test_label_size_different_from_its_image_is_skipped_and_counted(mini, tmp_path):
    src = _copy(mini, tmp_path)
    mask_path = src / REPACK_FOLDER / IMAGES_SUBFOLDER / "标注/country/0001_nir.png"
    ids = np.asarray(Image.open(mask_path))
    Image.fromarray(np.ascontiguousarray(ids[:-5])).save(mask_path)
    result = _prepare(src, tmp_path / "ds")
    assert [s.image_id for s in result.skipped] == ["country_0001"]
    assert "sizes differ" in result.skipped[0].reason and str(mask_path) in result.skipped[0].reason
    assert sum(c["images"] for c in result.counts["nir"].values()) == 5
    assert "1 source sample(s) skipped: country_0001" in (tmp_path / "ds" / "README.md").read_text()


def test_unmatched_nirscene1_files_are_listed(mini, tmp_path):
    src = _copy(mini, tmp_path)
    with zipfile.ZipFile(mini / NIRSCENE_ZIP) as old, zipfile.ZipFile(src / NIRSCENE_ZIP, "w") as new:
        for info in old.infolist():
            if not info.filename.startswith("nirscene1/forest/"):
                new.writestr(info, old.read(info))
    with pytest.raises(SourceFormatError) as err:
        CONVERTER.open(["nir"], source=src)
    msg = str(err.value)
    assert "1 of the repack's 6 images have no match" in msg
    assert "NIRimages/forest/0021_nir.JPG" in msg and "forest/0021_rgb.tiff" in msg


def test_corrupt_jpeg_and_corrupt_tiff_are_skipped_and_counted(mini, tmp_path):
    src = write_miniature(tmp_path / "jpg", with_nirscene=False)
    bad = src / REPACK_FOLDER / IMAGES_SUBFOLDER / "NIRimages/field/0011_nir.JPG"
    bad.write_bytes(bad.read_bytes()[:200])
    result = _prepare(src, tmp_path / "ds1")
    assert [s.image_id for s in result.skipped] == ["field_0011"]
    assert str(bad) in result.skipped[0].reason

    src2 = _copy(mini, tmp_path)
    with zipfile.ZipFile(mini / NIRSCENE_ZIP) as old, zipfile.ZipFile(src2 / NIRSCENE_ZIP, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "nirscene1/indoor/0001_rgb.tiff":
                data = b"II*\x00" + b"\x00" * 20
            new.writestr(info, data)
    result = _prepare(src2, tmp_path / "ds2")
    assert [s.image_id for s in result.skipped] == ["indoor_0001"]
    assert "nirscene1/indoor/0001_rgb.tiff" in result.skipped[0].reason


def test_cli_prepares_nir_from_the_miniature(mini, tmp_path):
    out = tmp_path / "ds"
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-m", "aims", "prepare", "--modality", "nir", "--source",
                           str(mini), "--out", str(out), "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nir" in proc.stdout and (out / "nir").is_dir()
    bad = subprocess.run([sys.executable, "-m", "aims", "prepare", "--modality", "nir", "--source",
                          str(tmp_path / "nothing"), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
