"""The reference recipe's input pipeline against the ``pipeline_*`` fixtures.

Each fixture holds the raw arrays the SimCMF reference read (``input.raw.*``) and what its
loader made of them (docs/reference-fixtures.md, "Pipelines"). Each test lays the raw
arrays out as the fixture script did, converts them with **our converter's own reader**
(what ``aims prepare`` stores), builds the row as a ``datasets`` row with undecoded PNG
cells, and runs :func:`reference_input` on it. Tolerances (docs/reference-fixtures.md,
"What our tests should compare"): ToTensor, labels, clicks and ids exact; the 1024² input
at 1e-5 on the stored subsample and crops, float64 sums at rtol 1e-6.

Where the stored columns lose what the reference reads (depth in whole millimetres,
temperature in 1/256 °C, palette masks as indices), the test pins the size of the loss on
the row path and feeds the reference's own source array through
:func:`reference_input_from_arrays`, which must then match exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

safetensors_torch = pytest.importorskip("safetensors.torch")
from PIL import Image  # noqa: E402

from aims.baselines.reference_inputs import (  # noqa: E402
    INPUT_STEPS,
    REFERENCE_INPUTS,
    ReferenceInput,
    minmax_pillow_l,
    minmax_uint8,
    reference_input,
    reference_input_from_arrays,
    reference_spec,
    zero_shot_image,
)
from aims.errors import AimsError  # noqa: E402
from aims.imageio import encode_png  # noqa: E402
from aims.instances import instances_from_id_map  # noqa: E402
from aims.protocols import simcmf_area_filters  # noqa: E402

REF = Path(__file__).resolve().parent / "data" / "reference"
SUB = np.arange(5, 1024, 32)       # the fixture's subsample rows/cols
CROPS = {"crop_tl": (0, 0), "crop_mid": (500, 700)}
TRAIN_SEED = 4000                  # np.random.seed the fixture set before each __getitem__


def fixture(name: str) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(str(REF / f"{name}.safetensors"))


# --------------------------------------------------------------------------- rows, as our converters make them


def _png(arr: np.ndarray) -> dict:
    """An undecoded ``datasets.Image`` cell, as ``Image(decode=False)`` hands it out."""
    return {"bytes": encode_png(np.ascontiguousarray(arr)), "path": None}


def _row(sample) -> dict:
    inst = instances_from_id_map(sample.instance_map)
    row = {k: _png(v) for k, v in sample.images.items()}
    row.update(instances=_png(inst.id_map), instance_ids=inst.ids.tolist(),
               point_simcmf=inst.point_simcmf.tolist())
    return row


def _save(path: Path, arr: np.ndarray, fmt: str = "PNG", palette: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16 and arr.ndim == 3:  # 16-bit colour, as the RGBP-Glass release
        import cv2

        assert cv2.imwrite(str(path), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
        return path
    img = Image.fromarray(np.ascontiguousarray(arr))
    if palette is not None:  # as the fixture script wrote the NIR mask: L -> P, then the palette
        img = img.convert("P")
        img.putpalette(palette.reshape(-1).tolist())
    img.save(str(path), format=fmt)
    return path


def nyu_row(tmp_path: Path, mask: np.ndarray, *, depth: np.ndarray | None = None,
            hha: np.ndarray | None = None) -> dict:
    """The NYUDepthv2 repack's frame 1, read by ``converters/nyuv2_repack.py``."""
    from aims.converters.nyuv2_repack import RepackRef, read_repack_frame

    root = tmp_path / "NYUDepthv2"
    files = {"rgb": _save(root / "RGB" / "1.jpg", np.zeros(mask.shape + (3,), np.uint8)),
             "mask": _save(root / "Mask_gt" / "1.png", mask)}
    configs = []
    if depth is not None:
        files["depth"] = root / "Depth" / "1.npy"
        files["depth"].parent.mkdir(parents=True)
        np.save(files["depth"], depth)
        configs.append("depth")
    if hha is not None:
        files["hha"] = _save(root / "HHA" / "1.jpg", hha)  # PNG bytes under .jpg, as the fixture
        configs.append("hha")
    ref = RepackRef("0001", "test", {k: str(v) for k, v in files.items()}, number=1)
    return _row(read_repack_frame(ref, configs))


def thermal_row(tmp_path: Path, temperature: np.ndarray, mask: np.ndarray) -> dict:
    from aims.converters.thermal_glass import REPACK, ThermalRef, read_sample

    scene = tmp_path / "RGB-Thermal-Glass" / "scene_a" / "0001"
    scene.mkdir(parents=True)
    np.save(scene / "temperature.npy", temperature)
    files = {"rgb": _save(scene / "rgb.png", np.zeros(mask.shape + (3,), np.uint8)),
             "temperature": scene / "temperature.npy", "mask": _save(scene / "mask.png", mask)}
    return _row(read_sample(ThermalRef("scene_a_0001", "test", {k: str(v) for k, v in files.items()},
                                       label=REPACK)))


def nir_row(tmp_path: Path, nir_file: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> dict:
    from aims.converters.ivrg_nir import NirRef, read_frame

    od = tmp_path / "IVRG_RGBNIR" / "Outdoor_dataset"
    files = {"nir": _save(od / "NIRimages" / "0001_nir.JPG", nir_file),
             "rgb": _save(od / "RGBimages" / "0001_rgb.JPG", np.zeros_like(nir_file)),
             "mask": _save(od / "Labels" / "0001.png", mask, palette=palette)}
    return _row(read_frame(NirRef("0001", "test", {k: str(v) for k, v in files.items()})))


def pgsnet_row(tmp_path: Path, rgb: np.ndarray, aolp: np.ndarray, dolp: np.ndarray, mask: np.ndarray) -> dict:
    from aims.converters.rgbp_glass import REPACK, RGBPRef, read_sample

    split = tmp_path / "pgsnet" / "test"
    files = {"rgb": _save(split / "image" / "000001_rgb.tiff", rgb, "TIFF"),
             "aolp": _save(split / "aolp" / "000001_aolp.tiff", aolp, "TIFF"),
             "dolp": _save(split / "dolp" / "000001_dolp.tiff", dolp, "TIFF"),
             "instance_mask": _save(split / "instance_mask" / "000001_instance_mask.png", mask)}
    return _row(read_sample(RGBPRef("000001", "test", {k: str(v) for k, v in files.items()}, label=REPACK)))


def zju_row(tmp_path: Path, angles: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    from aims.converters.zju_rgbp import DEGREE, read_entry, scan_split

    root = tmp_path / "zju-rgbp"
    _save(root / "val" / "label_sam" / "frame1.png", mask)
    for a, arr in angles.items():
        _save(root / "val" / a / f"frame1_{a}{DEGREE}.png", arr)
    (entry,), _ = scan_split(root, "val")
    return _row(read_entry(entry, "val-frame1"))


# --------------------------------------------------------------------------- comparisons


def image_errors(out: ReferenceInput, fx: dict) -> dict[str, float]:
    """Max abs error on the subsample and crops, max relative error of the float64 sums."""
    img = out.image
    errs = {"sub32": (img[:, SUB][:, :, SUB] - fx["output.image.sub32"]).abs().max().item()}
    for name, (r, c) in CROPS.items():
        errs[name] = (img[:, r:r + 16, c:c + 16] - fx[f"output.image.{name}"]).abs().max().item()
    d = img.to(torch.float64)
    for key, got in (("sum_f64", d.sum(dim=(1, 2))), ("sumsq_f64", (d * d).sum(dim=(1, 2)))):
        want = fx[f"output.image.{key}"]
        errs[key] = ((got - want).abs() / want.abs()).max().item()
    return errs


def assert_image(out: ReferenceInput, fx: dict) -> None:
    assert out.image.shape == (fx["output.to_tensor"].shape[0], 1024, 1024)
    assert out.image.dtype == torch.float32
    errs = image_errors(out, fx)
    assert max(errs["sub32"], errs["crop_tl"], errs["crop_mid"]) <= 1e-5, errs
    assert max(errs["sum_f64"], errs["sumsq_f64"]) <= 1e-6, errs


def assert_targets(out: ReferenceInput, fx: dict) -> None:
    """Test label, ids, clicks exactly; then the train draw under the fixture's seed."""
    assert torch.equal(out.label.to(torch.int64), fx["output.label"].to(torch.int64))
    np.testing.assert_array_equal(out.ids, fx["output.valid_region_ids"].numpy())
    np.testing.assert_array_equal(out.clicks, fx["output.pt"].numpy())
    np.testing.assert_array_equal(out.point_labels, fx["output.p_label"].numpy())
    np.testing.assert_array_equal(out.train_candidates, fx["output.train.region_candidates"].numpy())
    draw = out.train_target(np.random.RandomState(TRAIN_SEED))
    assert draw.region_id == int(fx["output.train.region_id"][0])
    np.testing.assert_array_equal(draw.click, fx["output.train.pt"].numpy())
    # the fixture checked train label == (test label == id); it can be all zero (the tall
    # map's id 6 covers 2 of 1536 rows and misses every 4th row of the 256² label)
    assert torch.equal(draw.label, (out.label == draw.region_id).to(torch.int32))


def assert_matches(out: ReferenceInput, fx: dict) -> None:
    assert torch.equal(out.to_tensor, fx["output.to_tensor"])
    assert_image(out, fx)
    assert_targets(out, fx)


def assert_row_clicks_agree(out: ReferenceInput, row: dict) -> None:
    """The clicks equal the dataset's own ``point_simcmf`` column for the same ids."""
    stored = dict(zip(row["instance_ids"], map(tuple, row["point_simcmf"])))
    assert [stored[int(i)] for i in out.ids] == [tuple(p) for p in out.clicks.tolist()]


def to_tensor_codes(x: torch.Tensor) -> np.ndarray:
    """ToTensor's k/255 back to the integer k."""
    return np.rint(x.numpy() * 255).astype(np.int64)


def assert_only_boundary_flips(got: torch.Tensor, want: torch.Tensor, raw: np.ndarray, step: float) -> int:
    """Row-path codes differ from the reference's by at most one, and only at pixels whose
    exact min-max value lies within the storage quantisation's reach of a truncation
    boundary: a value, the minimum and the maximum each move by ≤ step/2, which moves
    255·(x − min)/(max − min) by ≤ 2·255·step/range. Returns how many pixels differ."""
    diff = to_tensor_codes(got)[0] - to_tensor_codes(want)[0]
    assert np.abs(diff).max() <= 1
    x = raw.astype(np.float64)
    span = x.max() - x.min()
    exact = (x - x.min()) / span * 255
    reach = 2 * 255 * step / span
    near = np.abs(exact - np.rint(exact)) <= reach
    assert near[diff != 0].all(), "a code moved that the quantisation cannot explain"
    return int(np.count_nonzero(diff))


# --------------------------------------------------------------------------- one test per fixture


def test_pipeline_depth_uint16(tmp_path):
    """Integer depth (with invalid zeros, which count as the minimum) is stored exactly, so
    the row reproduces every output bit for bit."""
    fx = fixture("pipeline_depth_uint16")
    row = nyu_row(tmp_path, fx["input.raw.mask"].numpy(), depth=fx["input.raw.depth_uint16"].numpy())
    out = reference_input(row, "depth")
    assert out.spec.key == "d"
    assert_matches(out, fx)
    assert_row_clicks_agree(out, row)
    assert float(out.to_tensor.min()) == 0.0  # the zeros are the minimum, not skipped


def test_pipeline_depth_tall_uint16(tmp_path):
    """1536 rows warped to 1024: the warp must not antialias (with antialiasing the stored
    values differ by up to 0.05)."""
    fx = fixture("pipeline_depth_tall_uint16")
    row = nyu_row(tmp_path, fx["input.raw.mask_tall"].numpy(), depth=fx["input.raw.depth_tall_uint16"].numpy())
    out = reference_input(row, "d")
    assert_matches(out, fx)
    antialiased = torch.nn.functional.interpolate(out.to_tensor[None], size=(1024, 1024), mode="bilinear",
                                                  align_corners=False, antialias=True)[0]
    mean, std = out.spec.mean_std()
    wrong = ((antialiased - mean) / std)[:, SUB][:, :, SUB]
    assert (wrong - fx["output.image.sub32"]).abs().max().item() > 1e-3  # the check can tell


def test_pipeline_depth_float32(tmp_path):
    """A float32 metre map: AIMS stores whole millimetres, so the row's min-max can land one
    code apart from the reference's where a value sits on a truncation boundary. The loss is
    pinned; the reference's own array through the same steps matches exactly."""
    fx = fixture("pipeline_depth_float32")
    raw, mask = fx["input.raw.depth_float32"].numpy(), fx["input.raw.mask"].numpy()
    spec = reference_spec("depth")

    exact = reference_input_from_arrays(minmax_uint8(raw)[None], mask, spec)
    assert_matches(exact, fx)

    row = nyu_row(tmp_path, mask, depth=raw)
    out = reference_input(row, "depth")
    flips = assert_only_boundary_flips(out.to_tensor, fx["output.to_tensor"], raw, step=0.001)
    assert 0 < flips <= 0.05 * raw.size, flips  # 38 of 1920 here: the loss is real, and small
    assert (out.image - exact.image).abs().max().item() <= 1 / 255 / spec.std[0] + 1e-6
    assert_targets(out, fx)  # labels and clicks do not depend on the depth values


def test_pipeline_hha(tmp_path):
    fx = fixture("pipeline_hha")
    row = nyu_row(tmp_path, fx["input.raw.mask"].numpy(), hha=fx["input.raw.hha"].numpy())
    out = reference_input(row, "hha")
    assert_matches(out, fx)
    assert_row_clicks_agree(out, row)


def test_pipeline_thermal(tmp_path):
    """Temperature is stored in 1/256 °C steps: one-code differences at truncation
    boundaries on the row path, pinned; the reference's float array matches exactly."""
    fx = fixture("pipeline_thermal")
    raw, mask = fx["input.raw.temperature"].numpy(), fx["input.raw.mask"].numpy()
    spec = reference_spec("thermal")

    exact = reference_input_from_arrays(minmax_pillow_l(raw)[None], mask, spec)
    assert_matches(exact, fx)

    row = thermal_row(tmp_path, raw, mask)
    out = reference_input(row, "thermal")
    flips = assert_only_boundary_flips(out.to_tensor, fx["output.to_tensor"], raw, step=1 / 256)
    assert 0 < flips <= 0.05 * raw.size, flips  # 34 of 1920 here
    assert (out.image - exact.image).abs().max().item() <= 1 / 255 / spec.std[0] + 1e-6
    assert_targets(out, fx)


def test_pipeline_nir(tmp_path):
    """A 3-channel NIR file (→ luma) and a palette mask. Our converter keeps the palette
    *indices*; the reference's ``convert('I')`` ids are the palette colours' lumas. With the
    reference's id map everything matches; with the row's own map the regions and clicks are
    the same, relabelled index → luma, so only the id order differs."""
    fx = fixture("pipeline_nir")
    mask, palette = fx["input.raw.mask"].numpy(), fx["input.raw.nir_mask_palette"].numpy()
    row = nir_row(tmp_path, fx["input.raw.nir_file_rgb"].numpy(), mask, palette)

    pal = Image.fromarray(mask, "L").convert("P")
    pal.putpalette(palette.reshape(-1).tolist())
    luma_ids = np.asarray(pal.convert("I"))
    assert_matches(reference_input(row, "nir", id_map=luma_ids), fx)

    out = reference_input(row, "nir")
    assert torch.equal(out.to_tensor, fx["output.to_tensor"])
    lut = np.zeros(int(mask.max()) + 1, np.int64)
    lut[mask.ravel()] = luma_ids.ravel()          # index -> luma, one to one here
    assert torch.equal(torch.from_numpy(lut)[out.label.long()], fx["output.label"].long())
    relabelled = dict(zip(lut[out.ids].tolist(), map(tuple, out.clicks.tolist())))
    want = dict(zip(fx["output.valid_region_ids"].tolist(), map(tuple, fx["output.pt"].tolist())))
    assert relabelled == want
    assert lut[out.ids].tolist() != fx["output.valid_region_ids"].tolist()  # the order does differ


def test_pipeline_pgsnet_rgbp(tmp_path):
    """RGB, AoLP, DoLP TIFFs: AIMS stores AoLP/DoLP channel-reversed; the row path reverses
    them back to the file order the reference reads."""
    fx = fixture("pipeline_pgsnet_rgbp")
    raw = {k: fx[f"input.raw.pgsnet_{k}"].numpy() for k in ("rgb", "aolp", "dolp")}
    row = pgsnet_row(tmp_path, raw["rgb"], raw["aolp"], raw["dolp"], fx["input.raw.mask"].numpy())
    out = reference_input(row, "polarization")
    assert out.spec.key == "pgsnet_rgbp"
    assert_matches(out, fx)
    assert_row_clicks_agree(out, row)

    p_only = reference_input(row, "pgsnet_p")  # the same AoLP/DoLP channels, their own constants
    assert torch.equal(p_only.to_tensor, fx["output.to_tensor"][3:])


def test_pipeline_pgsnet_16bit_rgb_reads_as_pillow_high_byte(tmp_path):
    """The release's RGB TIFF is 16-bit: AIMS stores all 16 bits, the reference sees
    Pillow's 8-bit decode, the high byte. The row path gives the reference's bytes."""
    fx = fixture("pipeline_pgsnet_rgbp")
    rgb8 = fx["input.raw.pgsnet_rgb"].numpy()
    low = np.random.RandomState(1).randint(0, 256, rgb8.shape).astype(np.uint16)
    rgb16 = (rgb8.astype(np.uint16) << 8) | low
    row = pgsnet_row(tmp_path, rgb16, fx["input.raw.pgsnet_aolp"].numpy(),
                     fx["input.raw.pgsnet_dolp"].numpy(), fx["input.raw.mask"].numpy())
    tiff = tmp_path / "pgsnet" / "test" / "image" / "000001_rgb.tiff"
    with Image.open(tiff) as img:
        reference_view = np.array(img)      # what PGSNet_RGBP.raw2rgbp reads
    np.testing.assert_array_equal(reference_view, rgb8)
    out = reference_input(row, "pgsnet_rgbp")
    assert torch.equal(out.to_tensor, fx["output.to_tensor"])


def test_pipeline_zju_rgbp(tmp_path):
    """Four polarizer angles → float32 I/AoLP/DoLP, not divided by 255; area filter 10000
    (the 9856-px region is dropped)."""
    fx = fixture("pipeline_zju_rgbp")
    angles = {a: fx[f"input.raw.zju_{a}"].numpy() for a in ("0", "45", "90", "135")}
    row = zju_row(tmp_path, angles, fx["input.raw.mask"].numpy())
    out = reference_input(row, "polarization-zju")
    assert out.to_tensor.max().item() > 255  # not rescaled
    assert_matches(out, fx)
    assert_row_clicks_agree(out, row)


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name,key", [
    ("pipeline_depth_float32", "d"), ("pipeline_hha", "hha"), ("pipeline_thermal", "t"),
    ("pipeline_nir", "nir"), ("pipeline_pgsnet_rgbp", "pgsnet_rgbp"), ("pipeline_zju_rgbp", "zju-rgbp")])
def test_constants_are_the_reference_objects(name, key):
    """The registry's mean/std, as float32, are the tensors found on the loader objects."""
    fx = fixture(name)
    mean, std = REFERENCE_INPUTS[key].mean_std()
    (mkey,) = [k for k in fx if k.startswith("constant.") and k.endswith("mean")]
    (skey,) = [k for k in fx if k.startswith("constant.") and k.endswith("std")]
    assert torch.equal(mean.reshape(-1), fx[mkey])
    assert torch.equal(std.reshape(-1), fx[skey])


def test_depth_constants_are_the_codes_not_protocol_md():
    spec = REFERENCE_INPUTS["d"]
    assert spec.mean_std()[0].item() == pytest.approx(0.4490, abs=1e-4)
    assert spec.mean_std()[1].item() == pytest.approx(0.2260, abs=1e-4)
    assert abs(spec.mean[0] - 0.4478) > 1e-3  # protocol.md's figure is not the code's


def test_registry_is_consistent():
    """Every spec names known steps, its channel count matches its constants, its config's
    record holds its area threshold, and every AIMS modality it claims exists."""
    from aims.modalities import MODALITY_STACKS

    thresholds = {"zju-rgbp": 10000, "pgsnet_rgbp": 100, "pgsnet_p": 100, "nir": 1000, "rgbnir": 1000}
    filters = simcmf_area_filters()
    for key, spec in REFERENCE_INPUTS.items():
        assert len(spec.mean) == len(spec.std) == spec.channels
        assert all(step in INPUT_STEPS for step, _ in spec.steps)
        assert spec.config in filters
        assert spec.area_threshold == thresholds.get(key, 0), key
        for m in spec.modalities:
            assert m in MODALITY_STACKS, m
            assert reference_spec(m) is spec
        assert reference_spec(key) is spec
    assert {"d", "rgbd", "hha", "rgbhha", "nir", "rgbnir", "t", "rgbt", "t_500", "rgbt_500",
            "pgsnet_rgbp", "pgsnet_p", "zju-rgbp"} == set(REFERENCE_INPUTS)
    assert (REFERENCE_INPUTS["t_500"].train_every, REFERENCE_INPUTS["t_500"].test_every) == (10, 2)
    with pytest.raises(AimsError, match="no input pipeline"):
        reference_spec("sonar")


def test_rgb_x_variants_stack_rgb_first(tmp_path):
    """``rgbd``: RGB / 255 then the depth code, in the reference's (unshuffled) order, with
    the RGB-D constants."""
    fx = fixture("pipeline_depth_uint16")
    mask = fx["input.raw.mask"].numpy()
    row = nyu_row(tmp_path, mask, depth=fx["input.raw.depth_uint16"].numpy())
    rgb = np.random.RandomState(0).randint(0, 256, mask.shape + (3,)).astype(np.uint8)
    row["rgb"] = _png(rgb)
    out = reference_input(row, "rgb-depth")
    assert out.spec.key == "rgbd" and out.image.shape == (4, 1024, 1024)
    assert torch.equal(out.to_tensor[:3], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert torch.equal(out.to_tensor[3:], fx["output.to_tensor"])
    mean, std = out.spec.mean_std()
    assert torch.allclose(mean.reshape(-1), torch.tensor([0.485, 0.456, 0.406, 0.449]), atol=1e-6)
    assert torch.allclose(std.reshape(-1), torch.tensor([0.229, 0.224, 0.225, 0.226]), atol=1e-6)


@pytest.mark.parametrize("key", sorted(REFERENCE_INPUTS))
def test_every_key_runs_on_a_row_of_its_config(key):
    """Each spec's steps fit the columns its config stores and give its channel count."""
    rs = np.random.RandomState(3)
    colour = lambda: rs.randint(0, 256, (12, 10, 3)).astype(np.uint8)  # noqa: E731
    row = {"rgb": _png(colour()), "hha": _png(colour()), "aolp": _png(colour()), "dolp": _png(colour()),
           "nir": _png(rs.randint(0, 256, (12, 10)).astype(np.uint8)),
           "depth": _png(rs.randint(500, 9000, (12, 10)).astype(np.uint16)),
           "temperature": _png(rs.randint(25000, 26000, (12, 10)).astype(np.uint16)),
           **{f"angle_{a}": _png(colour()) for a in (0, 45, 90, 135)},
           "instances": _png(np.repeat(np.arange(12, dtype=np.uint16)[:, None], 10, axis=1))}
    spec = REFERENCE_INPUTS[key]
    out = reference_input(row, key)
    assert out.image.shape == (spec.channels, 1024, 1024) and out.to_tensor.shape == (spec.channels, 12, 10)
    assert torch.isfinite(out.image).all()
    if key != "zju-rgbp":
        assert 0 <= out.to_tensor.min() and out.to_tensor.max() <= 1
    assert out.ids.size and out.clicks.shape == (out.ids.size, 2)


def test_thermal_test_ids_drop_the_first_value_even_without_background():
    """The thermal loaders keep every value but the smallest, which they assume is 0: in a
    map with no background a real instance goes; the others keep ids > 0."""
    ids = np.full((8, 8), 3, np.uint16)
    ids[:4] = 5
    channels = np.zeros((1, 8, 8), np.uint8)
    assert reference_input_from_arrays(channels, ids, "t").ids.tolist() == [5]
    assert reference_input_from_arrays(channels, ids, "d").ids.tolist() == [3, 5]


def test_training_drops_the_first_kept_id_and_small_regions():
    """Training candidates: ids with 1024² count ≥ threshold, minus the first one (assumed
    background); a map whose background is too small loses a real id instead."""
    ids = np.zeros((32, 32), np.uint16)
    ids[:16] = 7            # 524288 px at 1024²
    ids[16:, :1] = 9        # 16384 px
    ids[31, 31] = 4         # 1024 px: below ZJU's 10000
    channels = np.zeros((9, 32, 32), np.float32)
    out = reference_input_from_arrays(channels, ids, "zju-rgbp")
    assert out.ids.tolist() == [7, 9]
    assert out.train_candidates.tolist() == [7, 9]
    no_background = np.where(ids == 0, 9, ids).astype(np.uint16)
    assert reference_input_from_arrays(channels, no_background, "zju-rgbp").train_candidates.tolist() == [9]

    exact = np.zeros((1024, 1024), np.uint16)  # already 1024²: the warp is the identity
    exact[:100, :100] = 2                       # exactly 10000 px
    exact[500:, :] = 3
    out = reference_input_from_arrays(np.zeros((9, 1024, 1024), np.float32), exact, "zju-rgbp")
    assert out.ids.tolist() == [3]                    # test: count > 10000
    assert out.train_candidates.tolist() == [2, 3]    # training: count >= 10000


def test_depth_row_is_min_maxed_on_the_stored_integers():
    """The row's millimetres go through the reference's expression as an integer ``.npy``
    would (float64), not as metres in float32: the two truncate differently where the
    exact value is a whole code, and only the first is the reference's on integer data."""
    mm = (1000 + np.arange(256, dtype=np.uint16)).reshape(16, 16)
    row = {"depth": _png(mm), "instances": _png(np.ones((16, 16), np.uint16))}
    got = to_tensor_codes(reference_input(row, "depth").to_tensor)[0]
    reference_on_integer_npy = ((mm - np.min(mm)) / (np.max(mm) - np.min(mm)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, reference_on_integer_npy)
    metres32 = mm.astype(np.float32) / np.float32(1000)
    assert (minmax_uint8(metres32) != reference_on_integer_npy).any()  # the choice matters


def test_minmax_follows_the_arrays_arithmetic():
    """An integer map is min-maxed in float64, a float32 map in float32, as numpy does for
    the reference; a constant map gives zeros instead of NaN casts."""
    assert minmax_uint8(np.array([[0, 1, 2]], np.uint16)).tolist() == [[0, 127, 255]]
    assert minmax_uint8(np.array([[1.0, 1.5, 2.0]], np.float32)).tolist() == [[0, 127, 255]]
    assert minmax_uint8(np.full((2, 2), 7, np.uint16)).tolist() == [[0, 0], [0, 0]]
    # F -> L truncates: 254.99... stays 254
    assert minmax_pillow_l(np.array([[0.0, 254.999, 255.0]], np.float32)).tolist() == [[0, 254, 255]]


def test_missing_column_and_wrong_sizes_are_refused(tmp_path):
    fx = fixture("pipeline_hha")
    row = nyu_row(tmp_path, fx["input.raw.mask"].numpy(), hha=fx["input.raw.hha"].numpy())
    with pytest.raises(AimsError, match="depth"):
        reference_input(row, "depth")
    with pytest.raises(AimsError, match="channels"):
        reference_input_from_arrays(np.zeros((1, 4, 4), np.uint8), np.zeros((4, 4), np.uint8), "hha")
    with pytest.raises(AimsError, match="sizes differ"):
        reference_input(row, "hha", id_map=np.zeros((3, 3), np.uint8))


@pytest.mark.parametrize("name", ["projector_zeroshot_c1", "projector_zeroshot_c9"])
def test_zero_shot_takes_the_first_three_channels(name):
    """What the reference's ``zeroshot`` projector hands SAM's patch embedding."""
    fx = fixture(name)
    assert torch.equal(zero_shot_image(fx["input.x"]), fx["capture.patch_embed.in.0"])
    assert torch.equal(zero_shot_image(fx["input.x"][0]), fx["capture.patch_embed.in.0"][0])
