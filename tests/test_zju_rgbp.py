"""ZJU-RGBP converter: exact miniature layouts, end-to-end conversion, the Stokes tensor,
and precise errors on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aims.converters.zju_rgbp import CLASS_NAMES, CONVERTER, DEGREE, SHA256, list_root
from aims.converters.zju_rgbp_miniature import angle_images, save_label
from aims.errors import AimsError, ChecksumError, SourceFormatError, UnreadableSample
from aims.modalities import MODALITY_STACKS, modality_tensor
from conftest import require_shared


@pytest.fixture(scope="module")
def zju_source(tmp_path_factory) -> Path:
    return CONVERTER.write_miniature(tmp_path_factory.mktemp("zju_src"))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- layout


def test_miniature_has_the_release_layout(zju_source: Path) -> None:
    root = zju_source / "ZJU-RGBP"
    names = sorted(p.name for p in (root / "train" / "45").iterdir())
    assert names == [f"{n}_45\u00b0.png" for n in (1, 2, 3, 4)]  # literal degree sign
    assert sorted(p.name for p in (root / "val").iterdir()) == ["0", "135", "45", "90", "label"]
    with Image.open(root / "val" / "label" / "5.png") as lab:
        assert lab.mode == "P" and lab.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        assert set(np.unique(np.asarray(lab))) <= set(range(len(CLASS_NAMES)))
    with Image.open(root / "val" / "90" / f"5_90{DEGREE}.png") as img:
        assert img.mode == "RGB" and img.size == (96, 80)


@pytest.mark.parametrize("variant, angle_name, label_name, kind", [
    ("image0", "1_image0_135.png", "1_image0.png", "label"),
    ("repack", f"1_135{DEGREE}.png", "1.png", "label_sam"),
])
def test_other_namings_are_read(tmp_path: Path, variant, angle_name, label_name, kind) -> None:
    src = CONVERTER.write_miniature(tmp_path, variant=variant, num_train=2, num_test=1)
    root = src if variant == "repack" else src / "ZJU-RGBP"
    assert (root / "train" / "135" / angle_name).is_file()
    assert (root / "train" / kind / label_name).is_file()
    samples, _ = CONVERTER.read_samples(["polarization-zju"], source=src)
    assert [s.split for s in samples] == ["train", "train", "test"]
    assert set(samples[0].images) == {"rgb", "angle_0", "angle_45", "angle_90", "angle_135"}
    if variant == "repack":  # instance ids kept as given, no classes
        assert samples[0].semantic is None and samples[0].instance_map.dtype == np.uint16
        assert samples[0].instance_map.max() > 5
    else:
        assert samples[0].instance_map is None and samples[0].semantic.max() <= 8


# --------------------------------------------------------------------------- end to end


def test_prepare_and_load_with_datasets(zju_source: Path, tmp_path: Path) -> None:
    import datasets

    from aims.prepare import prepare_source

    out = tmp_path / "ds"
    result = prepare_source(CONVERTER, ["polarization-zju"], dataset_dir=out, source=zju_source,
                            workers=2, progress=False)
    counts = result.counts["polarization-zju"]
    assert counts["test"]["images"] == 2 and counts["train"]["images"] + counts.get("validation", {}).get("images", 0) == 4
    ds = datasets.load_dataset(str(out), "polarization-zju")
    row = next(r for r in ds["test"] if r["image_id"] == "val-5")
    root = zju_source / "ZJU-RGBP" / "val"
    angles = {a: np.asarray(Image.open(root / str(a) / f"5_{a}{DEGREE}.png")) for a in (0, 45, 90, 135)}
    for a, img in angles.items():
        np.testing.assert_array_equal(np.asarray(row[f"angle_{a}"]), img)
    total = sum(v.astype(np.int32) for v in angles.values())
    np.testing.assert_array_equal(np.asarray(row["rgb"]), (total + 2) // 4)
    label = np.asarray(Image.open(root / "label" / "5.png"))
    names = ds["test"].features["category"].feature.names
    assert names == list(CLASS_NAMES)
    inst = np.asarray(row["instances"])
    for iid, cat in zip(row["instance_ids"], row["category"]):
        assert set(np.unique(label[inst == iid])) == {cat}  # each instance lies in one class
    assert (inst[label == 0] == 0).all()  # class 0 is ignored
    x = modality_tensor(row, "polarization-zju")
    assert x.shape == (9, *label.shape) and x.dtype == np.float32


# --------------------------------------------------------------------------- Stokes


def _synthetic_row(s0: float, dolp: float, aolp: float) -> dict:
    shape = (4, 5)
    imgs = angle_images(np.full((*shape, 3), s0), np.full(shape, dolp), np.full(shape, aolp))
    return {f"angle_{a}": img for a, img in imgs.items()}


@pytest.mark.parametrize("dolp, aolp", [(0.6, 1.2), (0.3, -0.5), (0.9, -1.3), (0.45, 0.2)])
def test_stokes_recovers_known_dolp_and_full_range_aolp(dolp: float, aolp: float) -> None:
    row = _synthetic_row(200.0, dolp, aolp)
    x = modality_tensor(row, "polarization-zju")
    assert x.shape == (9, 4, 5) and MODALITY_STACKS["polarization-zju"].channels == 9
    np.testing.assert_allclose(x[0:3], 100 / 255, atol=1 / 255)  # I = S0/2/255
    np.testing.assert_allclose(x[3:6], aolp, atol=0.01)  # radians, full (-π/2, π/2]
    np.testing.assert_allclose(x[6:9], dolp, atol=0.01)


def test_simcmf_variant_reproduces_the_reference_formula() -> None:
    row = _synthetic_row(200.0, 0.6, 1.2)
    x = modality_tensor(row, "polarization-zju-simcmf")
    i0, i45, i90, i135 = (row[f"angle_{a}"].astype(np.float32).transpose(2, 0, 1) for a in (0, 45, 90, 135))
    np.testing.assert_array_equal(x[0:3], np.float32(0.5) * (i0 + i45 + i90 + i135) + np.float32(1e-4))
    q, u = i0 - i90, i45 - i135
    np.testing.assert_allclose(x[3:6], 0.5 * np.arctan(u / q), rtol=1e-6)
    # AoLP 1.2 rad lies beyond ±π/4: arctan folds it to 1.2 − π/2, the full-range one does not
    assert np.all(np.abs(x[3:6]) <= np.pi / 4)
    np.testing.assert_allclose(x[3:6], 1.2 - np.pi / 2, atol=0.01)
    np.testing.assert_allclose(x[6:9], modality_tensor(row, "polarization-zju")[6:9], atol=0.02)


def test_dolp_is_zero_where_the_image_is_black() -> None:
    row = {f"angle_{a}": np.zeros((2, 2, 3), np.uint8) for a in (0, 45, 90, 135)}
    x = modality_tensor(row, "polarization-zju")
    assert np.isfinite(x).all() and (x == 0).all()


# --------------------------------------------------------------------------- bad input


def test_checksum_mismatch_on_download_and_on_a_given_archive(tmp_path: Path) -> None:
    fake = tmp_path / "fake.rar"
    fake.write_bytes(b"Rar!\x1a\x07\x01\x00 not the release")

    def copy_downloader(url: str, output: Path) -> None:
        assert url.endswith("RGB-P-dataset.rar")
        shutil.copyfile(fake, output)

    with pytest.raises(ChecksumError, match=SHA256):
        CONVERTER.list_samples(["polarization-zju"], downloader=copy_downloader)
    real_rar = require_shared("rar", "rar5-solid.rar")  # a real RAR, but not the release
    with pytest.raises(ChecksumError, match="RGB-P-dataset.rar"):
        CONVERTER.list_samples(["polarization-zju"], source=real_rar)


def test_missing_split_folder(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    shutil.rmtree(src / "ZJU-RGBP" / "val")
    with pytest.raises(AimsError, match=r"neither RGB-P-dataset.rar nor a ZJU-RGBP folder"):
        CONVERTER.list_samples(["polarization-zju"], source=src)
    (src / "ZJU-RGBP" / "val").mkdir()
    with pytest.raises(AimsError, match=r"val lacks 0/, 45/, 90/, 135/, label/"):
        CONVERTER.list_samples(["polarization-zju"], source=src)


def test_missing_angle_image_names_the_stem_and_folder(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    (src / "ZJU-RGBP" / "train" / "135" / f"3_135{DEGREE}.png").unlink()
    with pytest.raises(SourceFormatError) as err:
        CONVERTER.list_samples(["polarization-zju"], source=src)
    msg = str(err.value)
    assert f"3 (label {src / 'ZJU-RGBP' / 'train' / 'label' / '3.png'}) has 0°,45°,90° but no 135° image" in msg
    assert f"expected 3_135{DEGREE}.png or 3_135.png" in msg


def test_unlabelled_angle_image_is_reported(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    (src / "ZJU-RGBP" / "train" / "label" / "2.png").unlink()
    with pytest.raises(SourceFormatError, match=r"2_0°.png has no label"):
        CONVERTER.list_samples(["polarization-zju"], source=src)


def test_label_size_differs_from_images(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    save_label(src / "ZJU-RGBP" / "val" / "label" / "6.png", np.ones((40, 48), np.uint8))
    with CONVERTER.list_samples(["polarization-zju"], source=src) as listing:
        ref = [r for r in listing.refs if r.image_id == "val-6"][0]
    with pytest.raises(UnreadableSample, match=r"scene 6 \(.*label/6.png\): sizes differ .*label 6.png 48×40"):
        CONVERTER.load(ref, ["polarization-zju"])


def test_palette_values_outside_the_class_list(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    bad = np.zeros((80, 96), np.uint8)
    bad[10:20, 10:20], bad[30:40, 30:40] = 9, 42
    save_label(src / "ZJU-RGBP" / "train" / "label" / "1.png", bad)
    with CONVERTER.list_samples(["polarization-zju"], source=src) as listing:
        ref = listing.refs[0]
    with pytest.raises(UnreadableSample, match=r"1.png: label values 9, 42 are outside"):
        CONVERTER.load(ref, ["polarization-zju"])


def test_empty_split(zju_source: Path, tmp_path: Path) -> None:
    src = _copy(zju_source, tmp_path)
    for p in (src / "ZJU-RGBP" / "val").rglob("*.png"):
        p.unlink()
    with pytest.raises(AimsError, match=r"val/label holds no label PNG .* must not be empty"):
        list_root(src / "ZJU-RGBP")
