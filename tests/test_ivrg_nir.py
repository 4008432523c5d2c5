"""IVRG-NIR → config `nir`: the SimCMF repack's labels on the repack's JPEGs by default;
nirscene1's TIFFs only for frames a content match proves identical; every mismatch refused
naming the frames; loaded back with the real `datasets`; every kind of bad input."""

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

from aims.converters.ivrg_nir import (
    CONVERTER,
    IMAGES_SUBFOLDER,
    MATCH_MAD,
    NIRSCENE_ZIP,
    REPACK_FOLDER,
    SPLIT_CSV,
    image_id_of,
    palette_disagreement,
    read_csv_text,
)
from aims.converters.ivrg_nir_miniature import (
    MASK_FOLDER,
    render_scene,
    repack_truth,
    tiff_bytes,
    write_csv,
    write_miniature,
)
from aims.errors import AimsError, SourceFormatError
from aims.modalities import MODALITY_STACKS, modality_tensor
from aims.prepare import prepare_source

AIMS = Path(sys.executable).with_name("aims")
TRUTH = repack_truth()  # repack NIR path → the nirscene1 pair it copies (default miniature)


def _prepare(src, out: Path, **kw):
    return prepare_source(CONVERTER, ["nir"], dataset_dir=out, source=src, workers=kw.pop("workers", 1),
                          progress=False, **kw)


def _load(out: Path, split: str | None = None):
    # a local folder's `datasets` cache is keyed on the card, not the files: always reload
    return datasets.load_dataset(str(out), "nir", split=split, download_mode="force_redownload")


def _rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for part in _load(out).values() for r in part}


def _zip_tiff(zip_path: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf:
        return np.asarray(Image.open(io.BytesIO(zf.read(name))))


def _edit_zip(zip_path: Path, edit) -> None:
    """Rewrite nirscene1.zip with ``edit(members) -> members`` (name → bytes)."""
    with zipfile.ZipFile(zip_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    members = edit(members)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in sorted(members.items()):
            zf.writestr(name, data)


def _repack_file(src: Path, rel: str) -> Path:
    return src / REPACK_FOLDER / IMAGES_SUBFOLDER / rel


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


# --------------------------------------------------------------------------- the miniature


def test_miniature_reproduces_the_repack_and_nirscene1_layouts(mini):
    repack = mini / REPACK_FOLDER
    raw = (repack / SPLIT_CSV["train"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the non-ASCII folder name is really GBK-encoded
    header, *rows = raw.decode("gbk").splitlines()
    assert header.split(",")[0] == "" and len(header.split(",")) == 3  # pandas index column
    index, nir, mask = rows[0].split(",")
    assert index == "0" and nir.startswith("NIRimages/") and "_nir" in nir and nir.endswith(".JPG")
    # repack names carry no nirscene1 category or number: nothing says the real ones do
    assert not any(cat in nir.lower() for cat in ("country", "field", "forest", "urban", "water"))
    assert _repack_file(mini, nir).is_file()
    assert _repack_file(mini, nir.replace("NIRimages", "RGBimages").replace("_nir", "_rgb")).is_file()
    m = Image.open(_repack_file(mini, mask))
    assert m.mode in ("I;16", "I") and m.format == "PNG"
    assert Image.open(_repack_file(mini, nir)).format == "JPEG"
    with zipfile.ZipFile(mini / NIRSCENE_ZIP) as zf:
        names = [n for n in zf.namelist() if n.endswith(".tiff")]
        assert len(names) == 2 * (6 + 2)  # the labelled frames and two unlabelled pairs
        for name in names:
            img = Image.open(io.BytesIO(zf.read(name)))
            assert (img.format, img.info.get("compression")) == ("TIFF", "raw")
            assert img.mode == ("L" if name.endswith("_nir.tiff") else "RGB")
            assert img.width == 128 and 83 <= img.height <= 85  # 1/8 of 1024 × 668–680


def test_full_resolution_frames_have_nirscene1_real_size(tmp_path):
    src = write_miniature(tmp_path, full_resolution=True, num_images=1, extra_originals=0)
    with zipfile.ZipFile(src / NIRSCENE_ZIP) as zf:
        for name in (n for n in zf.namelist() if n.endswith(".tiff")):
            img = Image.open(io.BytesIO(zf.read(name)))
            assert img.width == 1024 and 668 <= img.height <= 680 and img.mode in ("L", "RGB")
    jpg = Image.open(_repack_file(src, "NIRimages/IMG_0001_nir.JPG"))
    assert jpg.width == 1024 and 668 <= jpg.height <= 680


def test_image_ids_come_from_the_repack_path_alone():
    assert image_id_of("NIRimages/IMG_0007_nir.JPG") == "IMG_0007"
    assert image_id_of("NIRimages/street/0012_nir.JPG") == "street_0012"
    assert image_id_of("other/a_nir.jpg") == "other_a"


# --------------------------------------------------------------------------- matched: TIFFs


def test_matching_nirscene1_replaces_every_frame_bit_exactly(prepared, mini):
    rows = _rows(prepared)
    assert set(rows) == {image_id_of(p) for p in TRUTH} and len(rows) == 6
    for nir_rel, key in TRUTH.items():
        row = rows[image_id_of(nir_rel)]
        tiff_nir = _zip_tiff(mini / NIRSCENE_ZIP, f"nirscene1/{key}_nir.tiff")
        tiff_rgb = _zip_tiff(mini / NIRSCENE_ZIP, f"nirscene1/{key}_rgb.tiff")
        np.testing.assert_array_equal(np.array(row["nir"]), tiff_nir)
        np.testing.assert_array_equal(np.array(row["rgb"]), tiff_rgb)
        jpeg = np.asarray(Image.open(_repack_file(mini, nir_rel)))
        assert not np.array_equal(jpeg, tiff_nir)  # lossy copy: the TIFF really was taken
        assert np.abs(jpeg.astype(int) - tiff_nir).mean() <= MATCH_MAD
    card = (prepared / "README.md").read_text()
    assert "original lossless 8-bit TIFFs of nirscene1.zip" in card
    assert "for all 6 frames" in card and "2 nirscene1 pairs match no repack frame" in card
    assert "Salamati" in card


def test_instances_are_the_repack_region_ids(prepared, mini):
    rows = _rows(prepared)
    mask = np.asarray(Image.open(_repack_file(mini, f"{MASK_FOLDER}/IMG_0001_nir.png"))).astype(np.int64)
    row = rows["IMG_0001"]
    inst = np.array(row["instances"]).astype(np.int64)
    np.testing.assert_array_equal(inst > 0, mask > 0)
    assert sorted(row["instance_ids"]) == sorted(int(i) for i in np.unique(mask) if i)
    for k, i in enumerate(row["instance_ids"]):
        assert row["area"][k] == int((inst == i).sum())
        # every id is one instance as given: a disconnected id keeps the repack's pixels
        np.testing.assert_array_equal(inst == i, mask == np.unique(mask[inst == i])[0])
    assert {c for r in rows.values() for c in r["category"]} == {1}


def test_modality_tensors_nir_and_shuffled_rgb_nir(prepared):
    row = _load(prepared, "test")[0]
    nir = modality_tensor(row, "nir")
    rgb = modality_tensor(row, "rgb")
    assert nir.shape[0] == 1 and nir.dtype == np.float32 and 0 <= nir.min() and nir.max() <= 1
    np.testing.assert_allclose(nir[0], np.array(row["nir"]) / 255.0, rtol=1e-6)
    x = modality_tensor(row, "rgb-nir")
    assert x.shape == (4, *nir.shape[1:])
    # documented order [B, R, G, NIR] = default_rng(0).permutation(4) applied to [R, G, B, NIR]
    assert MODALITY_STACKS["rgb-nir"].permutation().tolist() == [2, 0, 1, 3]
    np.testing.assert_array_equal(x, np.concatenate([rgb[2:3], rgb[0:1], rgb[1:2], nir]))
    np.testing.assert_array_equal(x, modality_tensor(row, "rgb-nir"))  # deterministic


def test_two_sources_given_separately(mini):
    with CONVERTER.list_samples(["nir"], source=[mini / REPACK_FOLDER, mini / NIRSCENE_ZIP]) as listing:
        assert len(listing) == 6 and listing.tiff_frames == 6
        assert {p.entry.nir_rel: p.key for p in listing.plans} == TRUTH
    with pytest.raises(AimsError, match="no segmentation labels"):
        CONVERTER.list_samples(["nir"], source=[mini / NIRSCENE_ZIP])


def test_an_extracted_nirscene1_folder_matches_too(mini, tmp_path):
    with zipfile.ZipFile(mini / NIRSCENE_ZIP) as zf:
        zf.extractall(tmp_path)
    with CONVERTER.list_samples(["nir"], source=[mini / REPACK_FOLDER, tmp_path / "nirscene1"]) as listing:
        assert {p.entry.nir_rel: p.key for p in listing.plans} == TRUTH


# --------------------------------------------------------------------------- repack only


def test_without_nirscene1_the_repack_jpegs_are_used_and_the_card_says_so(tmp_path):
    src = write_miniature(tmp_path / "src", with_nirscene=False, num_images=4)
    out = tmp_path / "ds"
    result = _prepare(src / REPACK_FOLDER, out)
    assert result.skipped == []
    rows = _rows(out)
    assert set(rows) == {"IMG_0001", "IMG_0002", "IMG_0003", "IMG_0004"}
    for image_id, row in rows.items():
        rgb = np.asarray(Image.open(_repack_file(src, f"RGBimages/{image_id}_rgb.JPG")))
        nir = np.asarray(Image.open(_repack_file(src, f"NIRimages/{image_id}_nir.JPG")))
        np.testing.assert_array_equal(np.array(row["rgb"]), rgb)
        np.testing.assert_array_equal(np.array(row["nir"]), nir)
    card = (out / "README.md").read_text()
    assert "the SimCMF repack's JPEG files (lossy), exactly the pixels SimCMF trained and scored on" in card
    assert "region labels are defined on them" in card


def test_colour_nir_jpeg_becomes_pillow_luma(tmp_path):
    src = write_miniature(tmp_path / "src", with_nirscene=False, num_images=4)
    jpg = _repack_file(src, "NIRimages/IMG_0001_nir.JPG")
    grey = np.asarray(Image.open(jpg))
    colour = np.stack([grey, np.roll(grey, 3, axis=1), grey // 2], axis=2)
    Image.fromarray(colour).save(jpg, format="JPEG", quality=95)
    samples, _ = CONVERTER.read_samples(["nir"], source=src)
    sample = next(s for s in samples if s.image_id == "IMG_0001")
    np.testing.assert_array_equal(sample.images["nir"], np.asarray(Image.open(jpg).convert("L")))
    assert [s.image_id for s in samples if s.facts.get("nir_from_colour")] == ["IMG_0001"]
    result = _prepare(src, tmp_path / "ds")  # the card counts the conversion
    assert "1 NIR JPEG(s) were stored as 3-channel colour" in (tmp_path / "ds" / "README.md").read_text()
    assert result.skipped == []


# --------------------------------------------------------------------------- refusals


def _frame_key(nir_rel: str) -> str:
    return TRUTH[nir_rel]


def test_frames_not_proven_identical_are_refused_naming_each_and_why(mini, tmp_path):
    src = _copy(mini, tmp_path)
    different, cropped, doubled = sorted(TRUTH)[:3]
    rng = np.random.default_rng(99)

    def edit(members):
        # 1. a TIFF of different content under the frame's original name
        key = _frame_key(different)
        h, w = _zip_tiff(mini / NIRSCENE_ZIP, f"nirscene1/{key}_nir.tiff").shape
        rgb, nir, _ = render_scene(rng, (h, w))
        members[f"nirscene1/{key}_rgb.tiff"] = tiff_bytes(rgb)
        members[f"nirscene1/{key}_nir.tiff"] = tiff_bytes(nir)
        # 3. two identical candidates for one frame
        key = _frame_key(doubled)
        for kind in ("rgb", "nir"):
            members[f"nirscene1/water/0099_{kind}.tiff"] = members[f"nirscene1/{key}_{kind}.tiff"]
        return members

    _edit_zip(src / NIRSCENE_ZIP, edit)
    # 2. a repack frame cropped to a size no nirscene1 frame has (as Salamati's set may be)
    for rel in (cropped, cropped.replace("NIRimages", "RGBimages").replace("_nir", "_rgb")):
        img = Image.open(_repack_file(src, rel))
        img.crop((0, 0, img.width, 70)).save(_repack_file(src, rel), format="JPEG", quality=95)
    mask = _repack_file(src, f"{MASK_FOLDER}/{image_id_of(cropped)}_nir.png")
    Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(mask))[:70])).save(mask)
    with pytest.raises(AimsError) as err:
        _prepare(src, tmp_path / "ds")
    msg = str(err.value)
    assert "3 of the repack's 6 frames are not proven to be nirscene1 frames" in msg
    assert f"{different} (128×" in msg and "not the same frame" in msg
    assert f"{cropped} (128×70): no nirscene1 frame is 128×70 (sizes there: 128×83–85)" in msg
    assert f"{doubled} (128×" in msg and "ambiguous" in msg and "water/0099" in msg
    assert f"aims prepare --modality nir --source {src / REPACK_FOLDER} --out OUT" in msg
    assert not (tmp_path / "ds" / "nir").exists()
    # the way on it names works: the repack's JPEGs, every frame
    result = _prepare(src / REPACK_FOLDER, tmp_path / "ds")
    assert result.skipped == [] and sum(c["images"] for c in result.counts["nir"].values()) == 6


def test_the_refusal_lists_twenty_frames_and_counts_the_rest(tmp_path):
    src = write_miniature(tmp_path / "a", num_images=24, with_nirscene=False)
    other = write_miniature(tmp_path / "b", seed=1, num_images=24)  # other scenes, same names
    with pytest.raises(AimsError) as err:
        CONVERTER.list_samples(["nir"], source=[src / REPACK_FOLDER, other / NIRSCENE_ZIP])
    msg = str(err.value)
    assert "24 of the repack's 24 frames" in msg and "; and 4 more." in msg
    assert msg.count("NIRimages/IMG_") == 20


def test_a_sixteen_bit_nirscene1_tiff_is_no_candidate_and_is_named(mini, tmp_path):
    src = _copy(mini, tmp_path)
    nir_rel = sorted(TRUTH)[0]
    name = f"nirscene1/{TRUTH[nir_rel]}_nir.tiff"

    def edit(members):
        nir = np.asarray(Image.open(io.BytesIO(members[name]))).astype(np.uint16) * 257
        members[name] = tiff_bytes(nir)
        return members

    _edit_zip(src / NIRSCENE_ZIP, edit)
    with pytest.raises(AimsError) as err:
        CONVERTER.list_samples(["nir"], source=src)
    msg = str(err.value)
    assert f"{nir_rel} (128×" in msg and "1 nirscene1 file(s) could not be read" in msg
    assert name in msg and "8-bit" in msg


def test_cli_refuses_mismatched_sources_with_exit_2_and_no_traceback(mini, tmp_path):
    other = write_miniature(tmp_path / "other", seed=7)
    out = tmp_path / "ds"
    proc = subprocess.run([str(AIMS), "prepare", "-m", "nir", "--source", str(mini / REPACK_FOLDER),
                           "--source", str(other / NIRSCENE_ZIP), "--out", str(out), "--workers", "1",
                           "--no-progress"], capture_output=True, text=True, env=dict(os.environ),
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())  # the CLI wraps the paragraph
    assert "6 of the repack's 6 frames are not proven" in text
    for nir_rel in TRUTH:
        assert nir_rel in text


# --------------------------------------------------------------------------- labels


def test_palette_masks_that_simcmf_groups_differently_are_named_in_the_card(tmp_path):
    src = write_miniature(tmp_path / "src", with_nirscene=False, num_images=4)
    mask_path = _repack_file(src, f"{MASK_FOLDER}/IMG_0001_nir.png")
    ids = np.asarray(Image.open(mask_path)).astype(np.uint8)
    img = Image.fromarray(ids, "P")
    palette = [0, 0, 0] + [128, 0, 0] * 255  # every region the same colour: one luma
    img.putpalette(palette)
    img.save(mask_path)
    luma = np.asarray(Image.open(mask_path).convert("I"))
    assert len(np.unique(luma)) == 2 < len(np.unique(ids))  # what SimCMF's reader sees
    out = tmp_path / "ds"
    _prepare(src, out)
    row = _rows(out)["IMG_0001"]
    assert sorted(row["instance_ids"]) == sorted(int(i) for i in np.unique(ids) if i)  # indices kept
    card = " ".join((out / "README.md").read_text().split())
    assert "1 palette mask(s) are grouped differently by SimCMF" in card and "IMG_0001 (indices" in card


def test_palette_disagreement_says_what_differs():
    idx = np.array([[0, 1, 2, 3]])
    assert palette_disagreement(idx, np.array([[0, 38, 75, 113]])) is None
    assert "1+2 share a luma" in palette_disagreement(idx, np.array([[0, 38, 38, 113]]))
    assert "[3] have a black colour" in palette_disagreement(idx, np.array([[0, 38, 75, 0]]))
    assert "index 0 has a non-black" in palette_disagreement(idx, np.array([[9, 38, 75, 113]]))


# --------------------------------------------------------------------------- bad input


def test_a_csv_path_that_does_not_exist_names_the_csv_and_the_file(mini, tmp_path):
    src = _copy(mini, tmp_path)
    missing = _repack_file(src, "RGBimages/IMG_0002_rgb.JPG")
    missing.unlink()
    with pytest.raises(AimsError) as err:
        CONVERTER.list_samples(["nir"], source=src)
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
        CONVERTER.list_samples(["nir"], source=src)


def test_label_size_different_from_its_image_is_skipped_and_counted(mini, tmp_path):
    src = _copy(mini, tmp_path)
    mask_path = _repack_file(src, f"{MASK_FOLDER}/IMG_0001_nir.png")
    ids = np.asarray(Image.open(mask_path))
    Image.fromarray(np.ascontiguousarray(ids[:-5])).save(mask_path)
    result = _prepare(src, tmp_path / "ds")
    assert [s.image_id for s in result.skipped] == ["IMG_0001"]
    assert "sizes differ" in result.skipped[0].reason and str(mask_path) in result.skipped[0].reason
    assert sum(c["images"] for c in result.counts["nir"].values()) == 5
    assert "1 source sample(s) skipped: IMG_0001" in (tmp_path / "ds" / "README.md").read_text()


def test_corrupt_jpeg_and_corrupt_tiff_are_skipped_and_counted(mini, tmp_path):
    src = write_miniature(tmp_path / "jpg", with_nirscene=False)
    bad = _repack_file(src, "NIRimages/IMG_0002_nir.JPG")
    bad.write_bytes(bad.read_bytes()[:200])
    result = _prepare(src, tmp_path / "ds1")
    assert [s.image_id for s in result.skipped] == ["IMG_0002"]
    assert str(bad) in result.skipped[0].reason

    src2 = _copy(mini, tmp_path)
    name = f"nirscene1/{TRUTH['NIRimages/IMG_0001_nir.JPG']}_rgb.tiff"

    def edit(members):
        members[name] = b"II*\x00" + b"\x00" * 20
        return members

    _edit_zip(src2 / NIRSCENE_ZIP, edit)
    result = _prepare(src2, tmp_path / "ds2")
    assert [s.image_id for s in result.skipped] == ["IMG_0001"]
    assert name in result.skipped[0].reason


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
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "does not exist" in " ".join(bad.stderr.split())  # the CLI wraps the paragraph
