"""A modality of your own (docs/bring-your-own-modality.md): a folder with aims-source.yaml
goes through `aims prepare --source DIR` and comes out as a config like the built-ins —
instances, clicks, validation carve-out, card, statistics — with its values stored
losslessly and `aims.modality_tensor` equal to the source arrays, bit for bit. `aims
score`, `aims show` and `aims baseline` run on it in fresh processes that only have the
prepared dataset (its record travels in aims_config.json).

Files are written by numpy, tifffile and OpenCV (converters/custom_source_miniature.py),
as a user's own tools write them."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest

import aims
from aims.converters import registry
from aims.converters.custom_source import (
    MAX_STORED_VALUES,
    build_record,
    read_source_spec,
    register_custom_source,
)
from aims.converters.custom_source_miniature import IDS, write_example
from aims.converters.record import ConfigRecord
from aims.decoders import DECODERS, exact_float32, to_array
from aims.imageio import ARRAY_DTYPES, ArrayImage, decode_array, encode_array, encode_png

ROOT = Path(__file__).resolve().parents[1]


def aims_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed ``aims`` in a fresh process, as a user runs it."""
    exe = Path(sys.executable).with_name("aims")
    if not exe.exists():
        pytest.skip(f"the aims console script is not installed beside {sys.executable}")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@contextmanager
def registered(folder: Path):
    """The folder's source registered in this process for the block (loading its prepared
    rows then finds the source's record), forgotten afterwards."""
    record = register_custom_source(folder)
    try:
        yield record
    finally:
        registry.unregister_source(record.name)


def source_array(folder: Path, split: str, image_id: str) -> np.ndarray:
    """The source file's values as the user's own tools read them, (C, H, W)."""
    path = next((folder / "images" / split).glob(f"{image_id}.*"))
    if path.suffix == ".npy":
        arr = np.load(path)
    elif path.suffix == ".png":
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB) if arr.ndim == 3 else arr
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return (arr[:, :, None] if arr.ndim == 2 else arr).transpose(2, 0, 1)


def prepare(folder: Path, out: Path, *, instances: str = "release") -> None:
    """The pipeline on a registered folder of your own, with two workers (the CLI test
    uses one)."""
    from aims.prepare import prepare_source

    name = read_source_spec(folder).name
    prepare_source(registry.converter(name), [name], dataset_dir=out, source=folder, workers=2,
                   progress=False, instances=instances)


# --------------------------------------------------------------------------- the done-when test


@pytest.fixture(scope="module")
def sonar(tmp_path_factory) -> tuple[Path, Path]:
    """The 2-channel float32 .npy example prepared with the CLI exactly as the guide says."""
    root = tmp_path_factory.mktemp("sonar")
    src = write_example(root / "my-sonar", "float32-npy")
    done = aims_cli("prepare", "--source", src, "--out", root / "dataset", "--workers", "1", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sonar2" in done.stdout and "validation" in done.stdout
    return src, root / "dataset"


def test_float32_npy_loads_bit_exact_with_datasets_and_aims(sonar):
    src, out = sonar
    by_card = datasets.load_dataset(str(out), "sonar2")
    assert sorted(by_card) == ["test", "train", "validation"]           # the validation carve-out
    with registered(src):
        by_aims = aims.load_dataset("sonar2", data_dir=out)
        rows = [(s, r) for ds in (by_card, by_aims) for s in ds for r in ds[s]]
        assert len(rows) == 2 * 9
        for split, row in rows:
            official = "train" if split == "validation" else split
            want = source_array(src, official, row["image_id"])
            assert want.dtype == np.float32 and want.shape == (2, 48, 64)
            got = aims.modality_tensor(row, "sonar2")
            assert got.dtype == np.float32 and got.shape == want.shape
            assert got.tobytes() == want.tobytes()                      # bit for bit: -0.0, subnormals
            assert set(row["category"]) == {1, 2} and len(row["instance_ids"]) == 3   # fish, fish, rock
            assert 255 not in row["category"]                           # void never an instance
        assert any(np.signbit(aims.modality_tensor(r, "sonar2")[0, 0, 0]) for r in by_card["test"])  # -0.0


def test_float32_card_and_statistics_are_the_builtins(sonar):
    src, out = sonar
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "config_name: sonar2" in card and "Toy side-scan sonar (a made-up example)" in card
    assert "AIMS array PNG of float32 values, 2 channels (lossless); channels: echo (dB), range (m)" in card
    assert "void (never an instance): 255" in card and "8-connected components of each class" in card
    info = json.loads((out / "sonar2" / "aims_config.json").read_text())
    assert info["record"]["columns"][0]["decoder"] == "exact_float32"
    assert info["instance_source"]["train"]["kind"] == "components"
    # statistics over the train split (validation carved out) of the source values
    train_ids = [r["image_id"] for r in datasets.load_dataset(str(out), "sonar2", split="train")]
    values = np.stack([source_array(src, "train", i) for i in train_ids]).astype(np.float64)
    stats = info["channel_stats"]["sonar2"]
    np.testing.assert_allclose(stats["mean"], values.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], values.std(axis=(0, 2, 3)), rtol=1e-9)


def test_float32_ground_truth_scores_100_and_shows_in_a_fresh_process(sonar, tmp_path):
    from aims.predictions import PredictionWriter
    from aims.scoring import iter_ground_truth, split_shards

    src, out = sonar
    preds = tmp_path / "predictions"
    with PredictionWriter(preds, meta={"method": "ground truth", "model": "none"}) as writer:
        for gt in iter_ground_truth(split_shards(out, "sonar2", "test")):
            for i in gt.instance_ids:
                writer.add("sonar2", gt.image_id, int(i), gt.id_map == i)
    done = aims_cli("score", preds, "--data-dir", out, "--out", tmp_path / "scores", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "scores" / "results.json").read_text())["configs"]["sonar2"]
    assert result["miou"] == pytest.approx(1.0) and result["n_evaluated"] == 6 and result["n_instances"] == 9
    shown = aims_cli("show", "--data-dir", out, "--config", "sonar2", "--limit", "1", "--predictions", preds,
                     "--out", tmp_path / "panels")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    panel = cv2.imread(str(tmp_path / "panels" / "sonar2" / f"{IDS['test'][0]}.png"))
    assert panel is not None and panel.shape[1] > 2 * panel.shape[0]     # channel, truth, prediction


def test_float32_tiny_baseline_trains_predicts_and_scores(sonar, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    src, out = sonar
    run, preds = tmp_path / "run", tmp_path / "preds"
    trained = aims_cli("baseline", "train", "--config", "sonar2", "--size", "tiny", "--checkpoint", "none",
                       "--strategy", "scratch", "--epochs", "1", "--batch-size", "2", "--data-dir", out,
                       "--out", run, "--no-progress", "--seed", "0")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads((run / "run.json").read_text())["train"]["config"] == "sonar2"
    predicted = aims_cli("baseline", "predict", "--config", "sonar2", "--run", run, "--out", preds,
                         "--data-dir", out, "--no-progress")
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert "3 images, 9 instances" in predicted.stdout + predicted.stderr
    scored = aims_cli("score", preds, "--data-dir", out, "--out", tmp_path / "scores", "--no-progress")
    assert scored.returncode == 0, scored.stdout + scored.stderr
    result = json.loads((tmp_path / "scores" / "results.json").read_text())["configs"]["sonar2"]
    assert result["n_predictions"] == 9 and 0.0 <= result["miou"] <= 1.0


# --------------------------------------------------------------------------- other inputs


def test_uint16_tif_one_channel(tmp_path):
    src = write_example(tmp_path / "src", "uint16-tif")
    out = tmp_path / "dataset"
    with registered(src) as record:
        assert record.config("thermal16").columns[0].encoding.startswith("AIMS array PNG of uint16 values, 1 ")
        assert record.instances.connectivity == 4
        prepare(src, out)
        for split in ("train", "test"):       # train: tifffile zlib; test: OpenCV LZW (imagecodecs-free)
            rows = aims.load_dataset("thermal16", split=split, data_dir=out)
            for row in rows:
                want = source_array(src, split, row["image_id"])
                assert want.dtype == np.uint16
                got = aims.modality_tensor(row, "thermal16")
                np.testing.assert_array_equal(got, want.astype(np.float32))
                # stored as an ordinary 16-bit grey PNG: what any viewer shows is the data
                assert row["thermal16"].mode == "I;16"
                np.testing.assert_array_equal(np.asarray(row["thermal16"]), want[0])
    assert "rgb" not in datasets.load_dataset(str(out), "thermal16", split="test").column_names


def test_png_rgb_x_with_registered_rgb(tmp_path):
    src = write_example(tmp_path / "src", "rgbx-png")
    out = tmp_path / "dataset"
    with registered(src) as record:
        config = record.config("falsecolour")
        assert [c.name for c in config.columns] == ["rgb", "falsecolour"]
        assert config.columns[0].encoding == "16-bit RGB PNG (uint16)"
        assert [m.name for m in config.modalities] == ["falsecolour", "rgb-falsecolour"]
        prepare(src, out)
        row = aims.load_dataset("falsecolour", split="test", data_dir=out)[0]
        x = source_array(src, "test", row["image_id"])
        rgb = cv2.cvtColor(cv2.imread(str(src / "rgb" / "test" / f"{row['image_id']}.png"),
                                      cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        assert x.dtype == np.uint8 and rgb.dtype == np.uint16
        np.testing.assert_array_equal(aims.modality_tensor(row, "falsecolour"), x.astype(np.float32))
        perm = np.random.default_rng(0).permutation(6)
        # Pillow (how `datasets` decodes) gives a 16-bit colour PNG's high byte, as for RGBP-Glass …
        high = np.concatenate([(rgb >> 8).transpose(2, 0, 1) / np.float32(255), x.astype(np.float32)])
        np.testing.assert_array_equal(aims.modality_tensor(row, "rgb-falsecolour"), high[perm])
        # … the stored PNG keeps all 16 bits: undecoded cells give them
        raw = aims.load_dataset("falsecolour", split="test", data_dir=out).cast_column(
            "rgb", datasets.Image(decode=False))[0]
        full = np.concatenate([rgb.transpose(2, 0, 1) / np.float32(65535), x.astype(np.float32)])
        np.testing.assert_array_equal(aims.modality_tensor(raw, "rgb-falsecolour"), full[perm])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| `rgb` | 16-bit RGB PNG (uint16); registered RGB (rgb/<split>/<id>.png) |" in card


def test_instance_labels_keep_instances_and_their_classes(tmp_path):
    src = write_example(tmp_path / "src", "instances")
    with registered(src):
        prepare(src, tmp_path / "release")
        prepare(src, tmp_path / "components", instances="components")
        release = aims.load_dataset("panes", split="test", data_dir=tmp_path / "release")
        components = aims.load_dataset("panes", split="test", data_dir=tmp_path / "components")
        for row, merged in zip(release, components):
            assert row["instance_ids"] == [1, 2, 3] and row["category"] == [1, 1, 2]   # two touching panes
            assert sorted(merged["category"]) == [1, 2]                       # components merge the panes
            want = source_array(src, "test", row["image_id"])
            assert want.dtype == np.int16 and want.min() < 0
            np.testing.assert_array_equal(aims.modality_tensor(row, "panes"), want.astype(np.float32))
    infos = [json.loads((tmp_path / d / "panes" / "aims_config.json").read_text())["instance_source"]["test"]
             for d in ("release", "components")]
    assert [i["kind"] for i in infos] == ["release", "components"]


def test_float64_exact_in_float32_is_accepted_and_stored_as_float32(tmp_path):
    src = write_example(tmp_path / "src", "float32-npy")
    for path in sorted((src / "images").glob("*/*.npy")):
        np.save(path, np.load(path).astype(np.float64))          # every value an exact float32 number
    with registered(src) as record:
        assert "float32 values" in record.configs[0].columns[0].encoding
        assert "from float64 files" in record.configs[0].columns[0].encoding
        prepare(src, tmp_path / "dataset")
        row = aims.load_dataset("sonar2", split="test", data_dir=tmp_path / "dataset")[0]
        want = source_array(src, "test", row["image_id"])
        assert want.dtype == np.float64
        np.testing.assert_array_equal(aims.modality_tensor(row, "sonar2").astype(np.float64), want)


# --------------------------------------------------------------------------- the record and the YAML


def test_the_record_is_plain_data_that_round_trips(tmp_path):
    src = write_example(tmp_path / "src", "rgbx-png")
    spec = read_source_spec(src)
    record = build_record(spec, dtype=np.dtype(np.uint8), rgb_dtype=np.dtype(np.uint8))
    config = record.configs[0]
    assert ConfigRecord.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert all(c.decoder in DECODERS for c in config.columns)
    assert record.converter == "aims.converters.custom_source" and record.files == ()
    assert config.headline is False and config.simcmf_area_filter is None
    assert record.classes == ("background", "car", "tree") and record.ignore_labels == (0,)


def test_the_guide_shows_the_example_yaml_and_layout():
    guide = (ROOT / "docs" / "bring-your-own-modality.md").read_text(encoding="utf-8")
    from aims.converters.custom_source_miniature import YAML

    assert YAML["float32-npy"] in guide                       # the complete example is the tested one
    for key in ("name", "description", "license", "citation", "classes", "channels", "labels", "title",
                "homepage", "label", "connectivity", "void", "notes"):
        assert f"`{key}`" in guide
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/bring-your-own-modality.md" in readme


def test_the_guides_reader_without_aims_gives_the_source_arrays(sonar, tmp_path):
    """docs/bring-your-own-modality.md's numpy-only reader, run on rows of every layout."""
    import re

    guide = (ROOT / "docs" / "bring-your-own-modality.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n# read_aims_array\n(.*?)```", guide, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "bring-your-own-modality.md", "exec"), namespace)
    src, out = sonar
    row = datasets.load_dataset(str(out), "sonar2", split="test")[0]
    got = namespace["read_aims_array"](row["sonar2"])
    assert got.tobytes() == source_array(src, "test", row["image_id"]).transpose(1, 2, 0).tobytes()
    for dtype, channels in (("int16", 1), ("uint16", 3), ("uint8", 2), ("uint8", 3), ("float16", 2)):
        arr = np.random.default_rng(0).integers(0, 255, (5, 7, channels)).astype(dtype)
        features = datasets.Features({"x": datasets.Image()})
        cell = features.decode_example(features.encode_example({"x": {"bytes": encode_array(arr),
                                                                        "path": None}}))["x"]
        assert namespace["read_aims_array"](cell).tobytes() == arr.tobytes()


# --------------------------------------------------------------------------- AIMS array PNG


@pytest.mark.parametrize("dtype", ARRAY_DTYPES)
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 7])
def test_array_png_round_trips_bit_for_bit_through_datasets(dtype, channels):
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 256, (5, 6, channels * np.dtype(dtype).itemsize), dtype=np.uint8)
    arr = arr.view(dtype).reshape(5, 6, channels)                 # every bit pattern, NaNs included
    data = encode_array(arr)
    assert data == encode_png(ArrayImage(arr)) == encode_array(arr.copy())      # deterministic
    assert decode_array(data).tobytes() == arr.tobytes() and decode_array(data).dtype == arr.dtype
    features = datasets.Features({"x": datasets.Image()})
    cell = features.decode_example(features.encode_example({"x": {"bytes": data, "path": None}}))["x"]
    assert to_array(cell).tobytes() == arr.tobytes()
    assert to_array({"bytes": data, "path": None}).tobytes() == arr.tobytes()
    with np.errstate(invalid="ignore"):
        want = arr.transpose(2, 0, 1).astype(np.float32)
    assert exact_float32(cell).dtype == np.float32 and exact_float32(cell).tobytes() == want.tobytes()


def test_array_png_refuses_what_it_cannot_hold_and_damaged_cells():
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2), np.float32))                  # a bare float array: still refused
    with pytest.raises(ValueError, match="float64"):
        encode_array(np.zeros((2, 2), np.float64))
    with pytest.raises(ValueError, match="complex"):
        encode_array(np.zeros((2, 2), np.complex64))
    data = encode_array(np.zeros((4, 4, 2), np.float32))
    forged = data.replace(b'"shape":[4,4,2]', b'"shape":[4,8,2]')
    assert forged != data
    with pytest.raises(ValueError, match="pixels"):               # a description that lies about
        decode_array(forged)                                      # the pixels is refused
    with pytest.raises(ValueError, match="not an AIMS array PNG"):
        exact_float32(encode_png(np.zeros((4, 4), np.uint8)))


def test_bounds_are_what_the_guide_says():
    guide = (ROOT / "docs" / "bring-your-own-modality.md").read_text(encoding="utf-8")
    assert f"{MAX_STORED_VALUES:,}" in guide and "512 MiB" in guide and "1 MiB" in guide
