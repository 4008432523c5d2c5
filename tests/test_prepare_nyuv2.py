"""`aims prepare` on the miniature NYUv2: the dataset loads with the real `datasets`
library, the stored values are the source's, and bad input fails cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import h5py
import numpy as np
import pytest

from aims.converters.nyuv2 import CONVERTER, LABELED_MAT, SPLITS_MAT, LabeledMat, read_class_mapping
from aims.errors import AimsError
from aims.loader import load_dataset
from aims.prepare import prepare_source


def run_aims(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aims", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def prepared(nyuv2_miniature, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "dataset"
    prepare_source(CONVERTER, ["depth", "hha"], dataset_dir=out, source=nyuv2_miniature,
                   workers=2, progress=False)
    return out


def test_configs_load_with_datasets_and_hold_the_source_values(prepared, nyuv2_miniature):
    depth = datasets.load_dataset(str(prepared), "depth")
    hha = datasets.load_dataset(str(prepared), "hha")
    assert set(depth) == set(hha) and {"train", "test"} <= set(depth)
    assert sum(len(part) for part in depth.values()) == 8
    assert len(depth["test"]) == 3
    row = next(r for part in depth.values() for r in part if r["image_id"] == "0002")
    mat = LabeledMat(nyuv2_miniature / LABELED_MAT)
    rgb, depth_m, raw_labels = mat.frame(1)
    mat.close()
    np.testing.assert_array_equal(np.array(row["rgb"]), rgb)
    stored = np.array(row["depth"])
    assert stored.dtype in (np.uint16, np.int32)
    np.testing.assert_array_equal(stored, np.floor(depth_m.astype(np.float64) * 1000 + 0.5))
    # instances: a partition of the labelled pixels into per-class components
    ids = np.array(row["instances"]).astype(np.int64)
    lut, _ = read_class_mapping(nyuv2_miniature / "classMapping40.mat")
    label40 = lut[raw_labels]
    assert ((ids > 0) == (label40 > 0)).all()
    for k, inst_id in enumerate(row["instance_ids"]):
        mask = ids == inst_id
        assert mask.sum() == row["area"][k]
        assert (label40[mask] == row["category"][k]).all()
        x, y = row["point"][k]
        assert mask[y, x]
        bx, by, bw, bh = row["bbox"][k]
        ys, xs = np.nonzero(mask)
        assert (bx, by, bw, bh) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    names = depth["test"].features["category"].feature.names
    assert names[1:4] == ["wall", "floor", "cabinet"]


def test_hha_config_and_card(prepared):
    hha = datasets.load_dataset(str(prepared), "hha", split="test")
    image = np.array(hha[0]["hha"])
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert image[..., 2].std() > 0  # angle channel varies between floor and walls
    card = (prepared / "README.md").read_text()
    assert "config_name: depth" in card and "config_name: hha" in card
    assert "millimetres" in card and "Silberman" in card


def test_prepare_is_deterministic(nyuv2_miniature, prepared, tmp_path):
    again = tmp_path / "again"
    prepare_source(CONVERTER, ["depth"], dataset_dir=again, source=nyuv2_miniature,
                   workers=1, progress=False)
    for path in sorted((prepared / "depth").glob("*.parquet")):
        assert (again / "depth" / path.name).read_bytes() == path.read_bytes(), path.name


def test_cli_prepare_prints_a_summary(nyuv2_miniature, tmp_path):
    result = run_aims("prepare", "--modality", "depth", "--source", str(nyuv2_miniature),
                      "--out", str(tmp_path / "ds"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "depth" in result.stdout and "instances" in result.stdout
    assert str(tmp_path / "ds") in result.stdout


# ----------------------------------------------------------------- bad input and faults


def _copy_source(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    text = " ".join(result.stderr.split())  # the CLI wraps the paragraph
    for needle in needles:
        assert needle in text, result.stderr


def test_truncated_mat_is_a_clean_error(nyuv2_miniature, tmp_path):
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    data = (src / LABELED_MAT).read_bytes()
    (src / LABELED_MAT).write_bytes(data[: len(data) // 3])
    result = run_aims("prepare", "-m", "depth", "--source", str(src), "--out", str(tmp_path / "ds"),
                      "--no-progress")
    _assert_clean_error(result, LABELED_MAT, "truncated")
    assert not (tmp_path / "ds" / "depth").exists()


def test_corrupt_mat_is_a_clean_error(nyuv2_miniature, tmp_path):
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    (src / LABELED_MAT).write_bytes(os.urandom(4096))
    result = run_aims("prepare", "-m", "depth", "--source", str(src), "--out", str(tmp_path / "ds"))
    _assert_clean_error(result, LABELED_MAT)


def test_corrupt_chunk_inside_mat_skips_that_frame(nyuv2_miniature, tmp_path):
    """The header is intact but image data is damaged: found when the frame is read (in a
    worker), and that frame is skipped."""
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    with h5py.File(src / LABELED_MAT, "r") as f:
        offset = f["labels"].id.get_chunk_info(3).byte_offset
    with open(src / LABELED_MAT, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 64)
    result = prepare_source(CONVERTER, ["depth"], dataset_dir=tmp_path / "ds", source=src,
                            workers=2, progress=False)
    # an unreadable frame is skipped, counted and named, like any unreadable sample
    assert [s.image_id for s in result.skipped] == ["0004"]
    assert "frame 4 cannot be read" in result.skipped[0].reason and LABELED_MAT in result.skipped[0].path
    assert sum(c["images"] for c in result.counts["depth"].values()) == 7
    assert "1 source sample(s) skipped: 0004" in (tmp_path / "ds" / "README.md").read_text()


@pytest.mark.parametrize("damage, message", [
    ("missing_key", "no 'labels'"),
    ("wrong_shape", "'depths' is float32"),
])
def test_mat_with_wrong_content_is_refused(nyuv2_miniature, tmp_path, damage, message):
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    with h5py.File(src / LABELED_MAT, "r+") as f:
        if damage == "missing_key":
            del f["labels"]
        else:
            del f["depths"]
            f.create_dataset("depths", data=np.zeros((8, 480, 640), dtype=np.float32))
    result = run_aims("prepare", "-m", "depth", "--source", str(src), "--out", str(tmp_path / "ds"))
    _assert_clean_error(result, LABELED_MAT, message)


def test_missing_split_file_names_the_file_and_the_fix(nyuv2_miniature, tmp_path):
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    (src / SPLITS_MAT).unlink()

    def offline(url: str, output: Path) -> None:
        raise OSError("network unreachable")

    with pytest.raises(AimsError, match=SPLITS_MAT) as err:
        prepare_source(CONVERTER, ["depth"], dataset_dir=tmp_path / "ds", source=src,
                       downloader=offline, progress=False)
    assert "--source" in str(err.value)


def test_split_file_checksum_mismatch(nyuv2_miniature, tmp_path):
    """The miniature's splits.mat is not the pinned official one: a download of it fails
    its sha256 and nothing is left in the cache under the final name."""
    src = _copy_source(nyuv2_miniature, tmp_path / "src")
    moved = tmp_path / "elsewhere.mat"
    (src / SPLITS_MAT).rename(moved)

    def copy_download(url: str, output: Path) -> None:
        shutil.copyfile(moved, output)

    with pytest.raises(AimsError) as err:
        prepare_source(CONVERTER, ["depth"], dataset_dir=tmp_path / "ds", source=src,
                       downloader=copy_download, progress=False)
    text = str(err.value)
    assert SPLITS_MAT in text and "6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee" in text
    from aims.paths import downloads_dir
    assert not (downloads_dir("nyuv2") / SPLITS_MAT).exists()


def test_real_split_file_is_fetched_through_the_download_path(tmp_path):
    """The pinned sha256 matches the real file when a downloader delivers it."""
    from aims.converters.nyuv2_record import RECORD
    from aims.fetch import fetch
    from conftest import require_shared

    real = require_shared("nyuv2", SPLITS_MAT)
    calls = []

    def copy_download(url: str, output: Path) -> None:
        calls.append(url)
        shutil.copyfile(real, output)

    path = fetch(RECORD.file(SPLITS_MAT), cache_dir=tmp_path / "cache", downloader=copy_download)
    assert path.read_bytes() == real.read_bytes() and calls == [RECORD.file(SPLITS_MAT).url]


def test_output_folder_not_writable(nyuv2_miniature, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_aims("prepare", "-m", "depth", "--source", str(nyuv2_miniature),
                      "--out", str(blocker / "ds"))
    _assert_clean_error(result, str(blocker))


def test_killed_prepare_leaves_the_good_dataset_and_reruns(nyuv2_miniature, tmp_path):
    out = tmp_path / "ds"
    assert run_aims("prepare", "-m", "depth", "--source", str(nyuv2_miniature), "--out", str(out),
                    "--no-progress").returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "depth").iterdir()}
    # rebuild depth + hha and kill the process while it is writing
    proc = subprocess.Popen([sys.executable, "-m", "aims", "prepare", "-m", "depth", "-m", "hha",
                             "--source", str(nyuv2_miniature), "--out", str(out), "--workers", "1",
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".tmp") for p in out.iterdir()):
        assert proc.poll() is None, f"prepare ended early: {proc.stderr.read().decode()}"
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "prepare finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the previous good config is untouched, and no half config is visible
    assert {p.name: p.read_bytes() for p in (out / "depth").iterdir()} == before
    assert not (out / "hha").exists()
    assert len(load_dataset("depth", "test", data_dir=out)) == 3
    # a re-run completes and cleans up what the killed run left
    rerun = run_aims("prepare", "-m", "depth", "-m", "hha", "--source", str(nyuv2_miniature),
                     "--out", str(out), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert not any(p.name.startswith(".tmp") for p in out.iterdir())
    assert len(load_dataset("hha", "test", data_dir=out)) == 3


def test_foreign_output_is_refused_before_the_source_is_read(tmp_path):
    """The output checks come first: a README.md that is not an AIMS card stops prepare
    before the (here missing) source is even looked at, so no download or conversion is
    wasted, and the README survives."""
    out = tmp_path / "ds"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    with pytest.raises(AimsError, match="README.md.*not a dataset card written by AIMS"):
        prepare_source(CONVERTER, ["depth"], dataset_dir=out, source=tmp_path / "no-such-source",
                       workers=1, progress=False)
    assert (out / "README.md").read_text() == "# my notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]


def test_broken_config_elsewhere_is_reported_in_the_result(nyuv2_miniature, tmp_path):
    out = tmp_path / "ds"
    (out / "thermal").mkdir(parents=True)
    (out / "thermal" / "aims_config.json").write_text("{ not json")
    result = prepare_source(CONVERTER, ["depth"], dataset_dir=out, source=nyuv2_miniature,
                            workers=1, progress=False)
    assert result.warnings == ["thermal: aims_config.json is not valid JSON (line 1, column 3: "
                               "Expecting property name enclosed in double quotes)"]
    assert (out / "thermal" / "aims_config.json").read_text() == "{ not json"
    assert len(load_dataset("depth", "test", data_dir=out)) == 3
