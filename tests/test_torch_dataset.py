"""``aims.torch``: the PyTorch dataset, ragged collation, SAM's geometries and their inverse,
``modality_tensor(..., as_tensor=True)``, and the README's training loop.

Everything runs on the miniature NYUv2 prepared by ``tests/conftest.py`` (480×640 frames,
configs ``depth`` and ``hha``, 5 train images with 6–9 instances each).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import aims  # noqa: E402
from aims.clicks import warp_nearest  # noqa: E402
from aims.decoders import to_array  # noqa: E402
from aims.errors import AimsError  # noqa: E402
from aims.modalities import MODALITY_STACKS, modality_tensor  # noqa: E402
from aims.torch import (  # noqa: E402
    INSTANCE_FIELDS,
    AimsDataset,
    ResizeLongestSide,
    collate_instances,
    masks_to_native,
    warp_to,
)

REPO = Path(__file__).resolve().parents[1]


def card_stats(dataset_dir: Path, config: str) -> dict:
    """The channel statistics exactly as the card's aims_config.json holds them."""
    return json.loads((dataset_dir / config / "aims_config.json").read_text())["channel_stats"]


def expected_mean_std(dataset_dir: Path, config: str, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Stacked per the modality's columns, shuffled like its channels (written out here,
    independently of aims.torch)."""
    stats = card_stats(dataset_dir, config)
    spec = MODALITY_STACKS[modality]
    mean = np.concatenate([stats[c]["mean"] for c in spec.columns]).astype(np.float32)
    std = np.concatenate([stats[c]["std"] for c in spec.columns]).astype(np.float32)
    perm = spec.permutation()
    if perm is not None:
        mean, std = mean[perm], std[perm]
    return mean, std


# --------------------------------------------------------------------------- imports

def test_importing_aims_and_its_cli_does_not_import_torch():
    code = ("import sys, aims, aims.cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'aims.torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_aims_torch_uses_the_real_torch_and_is_exported_lazily():
    import aims.torch as at

    assert at.torch is torch  # absolute import: not this module itself
    assert Path(torch.__file__).parent.name == "torch"
    assert Path(at.__file__).resolve() == REPO / "aims" / "torch.py"
    assert aims.AimsDataset is AimsDataset and aims.collate_instances is collate_instances


# --------------------------------------------------------------------------- items

@pytest.mark.parametrize("config, modality, channels", [("depth", None, 1), ("hha", None, 3),
                                                        ("hha", "rgb-hha", 6)])
def test_items_have_the_documented_shapes_dtypes_and_values(nyuv2_prepared, config, modality, channels):
    ds = AimsDataset(config, "train", data_dir=nyuv2_prepared, modality=modality)
    rows = aims.load_dataset(config, "train", data_dir=nyuv2_prepared)
    assert len(ds) == len(rows) == 5
    assert ds.modality == (modality or config) and ds.channels == channels
    for i in (0, len(ds) - 1):
        item, row = ds[i], rows[i]
        ids = np.asarray(row["instance_ids"])
        n = len(ids)
        assert n > 0
        assert item["image"].dtype == torch.float32 and tuple(item["image"].shape) == (channels, 480, 640)
        assert item["instances"].dtype == torch.int64 and tuple(item["instances"].shape) == (480, 640)
        assert np.array_equal(item["instances"].numpy(), to_array(row["instances"]))
        for name, tail in (("instance_ids", ()), ("category", ()), ("area", ()), ("bbox", (4,)),
                           ("point", (2,)), ("point_simcmf", (2,))):
            t = item[name]
            assert t.dtype == torch.int64 and tuple(t.shape) == (n, *tail), name
            assert np.array_equal(t.numpy(), np.asarray(row[name]).reshape(n, *tail)), name
        assert item["image_id"] == row["image_id"]
        # the id map and the per-instance lists agree: area = pixel count of each id
        counts = [(item["instances"] == int(k)).sum().item() for k in ids]
        assert counts == item["area"].tolist()


@pytest.mark.parametrize("config, modality", [("depth", "depth"), ("hha", "rgb-hha"), ("hha", "rgb")])
def test_normalisation_is_x_minus_mean_over_std_with_the_cards_statistics(nyuv2_prepared, config, modality):
    ds = AimsDataset(config, "train", data_dir=nyuv2_prepared, modality=modality)
    rows = aims.load_dataset(config, "train", data_dir=nyuv2_prepared)
    mean, std = expected_mean_std(nyuv2_prepared, config, modality)
    assert np.allclose(ds.mean, mean) and np.allclose(ds.std, std)
    for i in range(len(ds)):
        raw = modality_tensor(rows[i], modality)
        want = (raw - mean[:, None, None]) / std[:, None, None]
        got = ds[i]["image"].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert not np.allclose(got, raw, atol=1e-3)  # the statistics are not the identity
    # over the train split the normalised channels are centred with unit spread
    pixels = np.concatenate([ds[i]["image"].numpy().reshape(ds.channels, -1) for i in range(len(ds))], axis=1)
    assert np.allclose(pixels.mean(axis=1), 0, atol=1e-3) and np.allclose(pixels.std(axis=1), 1, atol=1e-3)


@pytest.mark.parametrize("config, modality", [("depth", "depth"), ("hha", "hha"), ("hha", "rgb-hha")])
def test_normalize_false_equals_modality_tensor(nyuv2_prepared, config, modality):
    ds = AimsDataset(config, "test", data_dir=nyuv2_prepared, modality=modality, normalize=False)
    rows = aims.load_dataset(config, "test", data_dir=nyuv2_prepared)  # Pillow-decoded cells
    assert ds.mean is None and ds.std is None
    for i in range(len(ds)):
        want = modality_tensor(rows[i], modality, as_tensor=True)
        assert torch.equal(ds[i]["image"], want)


def test_modality_tensor_as_tensor(nyuv2_prepared):
    row = aims.load_dataset("hha", "test", data_dir=nyuv2_prepared)[0]
    arr = modality_tensor(row, "rgb-hha")
    t = modality_tensor(row, "rgb-hha", as_tensor=True)
    assert isinstance(arr, np.ndarray) and not isinstance(arr, torch.Tensor)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == (6, 480, 640)
    assert np.array_equal(t.numpy(), arr)
    assert isinstance(aims.modality_tensor(row, "hha", as_tensor=True), torch.Tensor)


# --------------------------------------------------------------------------- batching

def test_dataloader_with_two_workers_and_ragged_instances(nyuv2_prepared):
    ds = AimsDataset("depth", "train", data_dir=nyuv2_prepared)
    items = [ds[i] for i in range(len(ds))]
    counts = [len(it["instance_ids"]) for it in items]
    assert len(set(counts)) > 1, counts  # the batch is ragged: what the default collate cannot take
    with pytest.raises(RuntimeError):
        torch.utils.data.default_collate(items)
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=2, collate_fn=collate_instances)
    (batch,) = list(loader)
    assert type(batch) is dict  # small tensors travelled inline, and arrive as tensors
    assert tuple(batch["image"].shape) == (len(ds), 1, 480, 640)
    assert tuple(batch["instances"].shape) == (len(ds), 480, 640)
    assert batch["image_id"] == [it["image_id"] for it in items]
    for name in INSTANCE_FIELDS:
        assert isinstance(batch[name], list) and len(batch[name]) == len(ds)
        for got, it in zip(batch[name], items):
            assert torch.equal(got, it[name])
    assert [len(t) for t in batch["point"]] == counts
    assert batch["instances"].dtype == torch.int64  # crossed as uint8, arrives as it was collated
    for k, it in enumerate(items):
        assert torch.equal(batch["image"][k], it["image"])
        assert torch.equal(batch["instances"][k], it["instances"])


def test_dataset_pickles_without_its_rows_and_reopens_in_spawned_workers(nyuv2_prepared):
    ds = AimsDataset("hha", "test", data_dir=nyuv2_prepared, transform=ResizeLongestSide(256))
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000 and b"IHDR" not in blob  # paths and statistics, no image bytes
    copy = pickle.loads(blob)
    assert torch.equal(copy[1]["image"], ds[1]["image"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_instances,
                                         multiprocessing_context="spawn")
    batches = list(loader)
    assert [b["image_id"] for b in batches] == [[ds[0]["image_id"], ds[1]["image_id"]], [ds[2]["image_id"]]]
    assert tuple(batches[0]["image"].shape) == (2, 3, 256, 256)
    assert torch.equal(batches[1]["image"][0], ds[2]["image"])


def test_workers_keep_freed_memory_where_glibc_allows():
    import platform

    code = "from aims.torch import keep_freed_memory; print(keep_freed_memory())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert proc.stdout.strip() == ("True" if glibc else "False")


def test_collate_keeps_images_of_different_sizes_as_a_list():
    def item(h, w, n, name):
        return {"image": torch.zeros(2, h, w), "instances": torch.zeros(h, w, dtype=torch.int64),
                "instance_ids": torch.arange(1, n + 1), "category": torch.zeros(n, dtype=torch.int64),
                "area": torch.ones(n, dtype=torch.int64), "bbox": torch.zeros(n, 4, dtype=torch.int64),
                "point": torch.zeros(n, 2, dtype=torch.int64),
                "point_simcmf": torch.zeros(n, 2, dtype=torch.int64),
                "image_id": name}

    batch = collate_instances([item(4, 5, 3, "a"), item(6, 5, 0, "b"), item(4, 5, 1, "c")])
    assert isinstance(batch["image"], list)
    assert [tuple(t.shape) for t in batch["image"]] == [(2, 4, 5), (2, 6, 5), (2, 4, 5)]
    assert isinstance(batch["instances"], list)
    assert [len(t) for t in batch["instance_ids"]] == [3, 0, 1]
    assert [tuple(t.shape) for t in batch["bbox"]] == [(3, 4), (0, 4), (1, 4)]
    assert batch["image_id"] == ["a", "b", "c"]
    same = collate_instances([item(4, 5, 2, "a"), item(4, 5, 2, "b")])
    assert tuple(same["image"].shape) == (2, 2, 4, 5)
    assert isinstance(same["point"], list)  # per-instance fields stay lists even when equal in length
    assert collate_instances([]) == {}


# --------------------------------------------------------------------------- geometry

def test_resize_longest_side_matches_sams_preprocess_shape():
    t = ResizeLongestSide(1024)
    # SAM's get_preprocess_shape: scale = 1024 / max(h, w), int(x * scale + 0.5)
    assert t.input_size(480, 640) == (768, 1024)
    assert t.input_size(1024, 1224) == (857, 1024)   # 1024 * 1024 / 1224 = 856.6
    assert t.input_size(512, 612) == (857, 1024)
    assert t.input_size(83, 128) == (664, 1024)      # 663.5 rounds half up
    assert t.input_size(640, 480) == (1024, 768)
    image = torch.rand(3, 480, 640)
    out = t.apply_image(image)
    assert tuple(out.shape) == (3, 1024, 1024)
    assert torch.count_nonzero(out[:, 768:]) == 0  # padding bottom only, zeros
    constant = t.apply_image(torch.full((2, 480, 640), 0.25))
    assert torch.allclose(constant[:, :768], torch.tensor(0.25)) and torch.all(constant[:, 768:] == 0)
    assert tuple(ResizeLongestSide(1024, pad=False).apply_image(image).shape) == (3, 768, 1024)


def test_resize_round_trip_of_masks_is_exact_when_upsampling(nyuv2_prepared):
    ds = AimsDataset("depth", "test", data_dir=nyuv2_prepared)
    t = ResizeLongestSide(1024)
    for i in range(len(ds)):
        item = ds[i]
        out = t(item)
        assert tuple(out["instances"].shape) == (1024, 1024)
        assert out["original_size"].tolist() == [480, 640] and out["input_size"].tolist() == [768, 1024]
        back = masks_to_native(out["instances"], out["input_size"], out["original_size"])
        assert torch.equal(back, item["instances"])
        assert torch.equal(t.masks_to_native(out["instances"], (480, 640)), item["instances"])
        # per-instance boolean masks, batched
        masks = torch.stack([item["instances"] == k for k in item["instance_ids"]])
        assert torch.equal(t.masks_to_native(t.apply_mask(masks), (480, 640)), masks)
        # low-resolution (256²) masks come back through the 1024² frame like SAM's logits
        low = t.apply_mask(masks)[:, ::4, ::4]
        assert tuple(t.masks_to_native(low, (480, 640)).shape) == (len(masks), 480, 640)
        # clicks and boxes land on their instance in the model frame
        ids = out["instances"]
        for k, (x, y) in zip(item["instance_ids"].tolist(), out["point"].tolist()):
            assert ids[int(y), int(x)] == k
        assert torch.allclose(out["bbox"], item["bbox"].float() * 1.6)


def test_resize_round_trip_when_downsampling_is_nearest_consistent():
    h, w = 1100, 1300  # larger than the frame: information is lost, the inverse is still nearest
    ids = torch.zeros(h, w, dtype=torch.int64)
    ids[100:600, 50:700] = 1
    ids[650:1000, 800:1250] = 2
    ids[5:20, 1200:1290] = 3
    t = ResizeLongestSide(1024)
    fwd = t.apply_mask(ids)
    back = t.masks_to_native(fwd, (h, w))
    assert tuple(back.shape) == (h, w)
    assert torch.equal(t.apply_mask(back), fwd)          # forward ∘ inverse ∘ forward = forward
    assert (back != ids).float().mean() < 0.005            # only rectangle edges may move by a pixel
    for k in (1, 2, 3):
        assert (back == k).sum() > 0


def test_float_masks_go_back_like_sam_postprocess_masks():
    t = ResizeLongestSide(1024)
    logits = torch.full((2, 256, 256), -5.0)
    logits[0, 10:100, 20:200] = 5.0
    native = t.masks_to_native(logits, (480, 640))
    assert native.is_floating_point() and tuple(native.shape) == (2, 480, 640)
    mask = native > 0
    assert not mask[1].any()
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    # rows 10..100 of 256 → 40..400 of 1024 → ×480/768: 25..250;
    # columns 20..200 → 80..800 → ×640/1024: 50..500
    assert abs(ys.min().item() - 25) <= 2 and abs(ys.max().item() - 249) <= 2
    assert abs(xs.min().item() - 50) <= 2 and abs(xs.max().item() - 499) <= 2


def test_warp_matches_the_simcmf_label_warp_and_its_stored_clicks(nyuv2_prepared):
    ds = AimsDataset("hha", "train", data_dir=nyuv2_prepared)
    warp = warp_to(1024)
    for i in range(len(ds)):
        item = ds[i]
        out = warp(item)
        assert tuple(out["image"].shape) == (3, 1024, 1024)
        warped = out["instances"]
        assert np.array_equal(warped.numpy(), warp_nearest(item["instances"].numpy(), (1024, 1024)))
        # point_simcmf was computed on this very warp: each click is on its instance
        for k, (x, y) in zip(item["instance_ids"].tolist(), out["point_simcmf"].tolist()):
            if x >= 0:
                assert warped[y, x] == k
        assert torch.equal(warp.masks_to_native(warped, (480, 640)), item["instances"])
        assert torch.equal(masks_to_native(warped, out["input_size"], out["original_size"]), item["instances"])
        assert out["input_size"].tolist() == [1024, 1024]


def test_warp_image_is_bilinear_without_antialiasing():
    import torch.nn.functional as F

    x = torch.rand(2, 3000, 700)  # shrinks rows (antialiasing would matter), stretches columns
    got = warp_to(1024).apply_image(x)
    want = F.interpolate(x[None], size=(1024, 1024), mode="bilinear", align_corners=False, antialias=False)[0]
    smooth = F.interpolate(x[None], size=(1024, 1024), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, smooth, atol=1e-3)
    assert tuple(warp_to(512).apply_image(x).shape) == (2, 512, 512)


# --------------------------------------------------------------------------- README

def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- example:torch[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- example:torch --> python block"
    return m.group(1)


def test_readme_training_loop_runs(nyuv2_prepared, monkeypatch):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.setenv("AIMS_DATASET", str(nyuv2_prepared))
    scope: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md:example:torch", "exec"), scope)
    model, loss = scope["model"], scope["loss"]
    assert torch.isfinite(loss) and loss.item() > 0
    assert scope["batch"]["image"].shape[-2:] == (1024, 1024)
    assert model.weight.grad is not None  # it trained


# --------------------------------------------------------------------------- mistakes

def test_missing_config_split_and_wrong_modality_are_user_errors(nyuv2_prepared, tmp_path):
    with pytest.raises(AimsError, match="thermal"):
        AimsDataset("thermal", "train", data_dir=nyuv2_prepared)
    with pytest.raises(AimsError, match="validation"):
        AimsDataset("depth", "validation", data_dir=nyuv2_prepared)
    with pytest.raises(AimsError, match="hha"):
        AimsDataset("depth", "train", data_dir=nyuv2_prepared, modality="hha")  # column not stored
    with pytest.raises(AimsError, match="no-such-modality"):
        AimsDataset("depth", "train", data_dir=nyuv2_prepared, modality="no-such-modality")
    with pytest.raises(AimsError, match="not prepared"):
        AimsDataset("../depth", "train", data_dir=nyuv2_prepared / "depth")
    with pytest.raises(AimsError):
        AimsDataset("depth", "train", data_dir=tmp_path / "nothing-here")


def _copy(nyuv2_prepared: Path, tmp_path: Path) -> Path:
    out = tmp_path / "dataset"
    shutil.copytree(nyuv2_prepared, out)
    return out


def test_card_without_statistics_is_refused_unless_normalize_false(nyuv2_prepared, tmp_path):
    data = _copy(nyuv2_prepared, tmp_path)
    path = data / "depth" / "aims_config.json"
    info = json.loads(path.read_text())
    del info["channel_stats"]["depth"]
    path.write_text(json.dumps(info))
    with pytest.raises(AimsError, match="normalize=False"):
        AimsDataset("depth", "train", data_dir=data)
    assert AimsDataset("depth", "train", data_dir=data, normalize=False)[0]["image"].shape == (1, 480, 640)
    info["channel_stats"]["depth"] = {"mean": [1.0, 2.0], "std": [1.0, 1.0]}  # 2 values, 1 channel
    path.write_text(json.dumps(info))
    with pytest.raises(AimsError, match="has 1 channel;"):
        AimsDataset("depth", "train", data_dir=data)
    path.write_text(json.dumps(info).replace('"mean": [1.0, 2.0]', '"mean": [NaN]').replace(
        '"std": [1.0, 1.0]', '"std": [1.0]'))
    with pytest.raises(AimsError, match="not finite"):
        AimsDataset("depth", "train", data_dir=data)
    info["channel_stats"]["depth"] = {"mean": [1.0], "std": [0.0]}  # a constant channel: no inf
    path.write_text(json.dumps(info))
    assert torch.isfinite(AimsDataset("depth", "train", data_dir=data)[0]["image"]).all()
    info["channel_stats"]["depth"] = {"mean": ["x"], "std": [1.0]}
    path.write_text(json.dumps(info))
    with pytest.raises(AimsError, match="channel_stats"):
        AimsDataset("depth", "train", data_dir=data)


def test_card_that_is_a_link_is_not_followed(nyuv2_prepared, tmp_path):
    data = _copy(nyuv2_prepared, tmp_path)
    outside = tmp_path / "elsewhere.json"
    path = data / "depth" / "aims_config.json"
    outside.write_text(path.read_text())
    path.unlink()
    os.symlink(outside, path)
    with pytest.raises(AimsError, match="link"):
        AimsDataset("depth", "train", data_dir=data)


def test_transforms_refuse_nonsense():
    with pytest.raises(ValueError):
        ResizeLongestSide(0)
    with pytest.raises(ValueError):
        warp_to(-1)
    with pytest.raises(ValueError, match="pad"):
        ResizeLongestSide(64, pad=False)({"image": torch.zeros(1, 8, 8)})
    with pytest.raises(ValueError, match="input_size"):
        masks_to_native(torch.zeros(4, 4, dtype=torch.bool), (2000, 10), (10, 10))
    with pytest.raises(ValueError, match="square"):
        masks_to_native(torch.zeros(4, 5, dtype=torch.bool), (4, 4), (10, 10))


# --------------------------------------------------------------------------- decoders: fast and exact

def _bits(a: np.ndarray) -> np.ndarray:
    assert a.dtype == np.float32
    return a.view(np.uint32)


def test_single_pass_decoders_are_bit_identical_to_the_plain_formulas():
    """The one-pass decoders (no float copy before the division) give exactly the bits of
    ``astype(float32)`` followed by the documented float32 operation."""
    from aims.decoders import (
        TEMPERATURE_OFFSET_C,
        TEMPERATURE_STEP_C,
        codes8_unit,
        grey_unit,
        millimetres_to_metres,
        rgb_unit,
        temperature_code_to_celsius,
    )

    rng = np.random.default_rng(7)
    for channels in (3, 4):  # RGBA cells keep their first three channels
        codes = rng.integers(0, 256, (23, 31, channels), dtype=np.uint8)
        wide = rng.integers(0, 65536, (23, 31, channels), dtype=np.uint16)
        plain8 = codes[:, :, :3].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        plain16 = wide[:, :, :3].transpose(2, 0, 1).astype(np.float32) / np.float32(65535)
        np.testing.assert_array_equal(_bits(codes8_unit(codes)), _bits(plain8))
        np.testing.assert_array_equal(_bits(rgb_unit(codes)), _bits(plain8))
        np.testing.assert_array_equal(_bits(rgb_unit(wide)), _bits(plain16))
        assert codes8_unit(codes).flags.c_contiguous
    mm = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
    metres = (mm.astype(np.float32) / np.float32(1000))[None]
    np.testing.assert_array_equal(_bits(millimetres_to_metres(mm)), _bits(metres))
    for grey in (mm, mm.astype(np.int32)):  # Pillow's mode I arrives as int32
        unit = (grey.astype(np.float32) / np.float32(65535))[None]
        np.testing.assert_array_equal(_bits(grey_unit(grey)), _bits(unit))
        expected = (grey.astype(np.float32) * np.float32(TEMPERATURE_STEP_C) + np.float32(TEMPERATURE_OFFSET_C))[None]
        np.testing.assert_array_equal(_bits(temperature_code_to_celsius(grey)), _bits(expected))
    byte = rng.integers(0, 256, (23, 31), dtype=np.uint8)
    np.testing.assert_array_equal(_bits(grey_unit(byte)), _bits((byte.astype(np.float32) / np.float32(255))[None]))


def _stokes_written_out(parts: list[np.ndarray]) -> np.ndarray:
    i0, i45, i90, i135 = parts
    s0, s1, s2 = i0 + i90, i0 - i90, i45 - i135
    aolp = np.float32(0.5) * np.arctan2(s2, s1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dolp = np.clip(np.where(s0 > 0, np.sqrt(s1 * s1 + s2 * s2) / s0, np.float32(0)), 0, 1)
    return np.concatenate([s0 * np.float32(0.5), aolp, dolp], axis=0).astype(np.float32)


@pytest.mark.parametrize("levels", [3, 256])  # few levels: many S1 = S2 = 0 and S0 = 0 pixels
def test_in_place_stokes_is_bit_identical_to_the_formula(levels):
    from aims.decoders import codes8_unit, stokes_full

    rng = np.random.default_rng(levels)
    parts = [codes8_unit(rng.integers(0, levels, (40, 56, 3), dtype=np.uint8)) for _ in range(4)]
    got = stokes_full(parts)
    assert got.shape == (9, 40, 56) and got.flags.c_contiguous
    np.testing.assert_array_equal(_bits(got), _bits(_stokes_written_out(parts)))


def test_in_place_stokes_leaves_its_inputs_alone_and_matches_on_odd_floats():
    from aims.decoders import stokes_full

    rng = np.random.default_rng(3)
    parts = [rng.normal(size=(3, 17, 19)).astype(np.float32) for _ in range(4)]
    parts[0][0, 0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    copies = [p.copy() for p in parts]
    got = stokes_full(parts)
    assert all(np.array_equal(p, c, equal_nan=True) for p, c in zip(parts, copies))
    np.testing.assert_array_equal(_bits(got), _bits(_stokes_written_out(parts)))


class _IdMaps(torch.utils.data.Dataset):
    """Items holding one integer map each, with values in a chosen range (module level:
    DataLoader workers pickle it)."""

    def __init__(self, low: int, high: int, dtype: torch.dtype) -> None:
        self.low, self.high, self.dtype = low, high, dtype

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        values = torch.randint(self.low, self.high, (64, 96), generator=g, dtype=torch.int64)
        values[0, 0], values[-1, -1] = self.low, self.high - 1  # both ends of the range
        return {"instances": values.to(self.dtype), "image_id": str(i)}


@pytest.mark.parametrize("low, high, dtype", [
    (0, 9, torch.int64),               # instance ids: cross as uint8
    (-300, 300, torch.int64),          # negative: int16
    (0, 70_000, torch.int64),          # beyond 16 bits: int32
    (-2**40, 2**40, torch.int64),      # needs all 64 bits: sent as is
    (0, 200, torch.int32),
])
def test_integer_maps_cross_from_workers_exactly(low, high, dtype):
    data = _IdMaps(low, high, dtype)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=1, collate_fn=collate_instances)
    batches = list(loader)
    for b, batch in enumerate(batches):
        assert batch["instances"].dtype == dtype
        for k in range(2):
            assert torch.equal(batch["instances"][k], data[2 * b + k]["instances"])
