"""The RGB-X systems (``--strategy vipt|cmx|gopt|iv-tuning``) end to end on the NYUv2
miniature (config ``depth``, RGB-X modality ``rgb-depth``) with a tiny SAM: the data pipeline
feeds RGB then X un-shuffled, each system trains and predicts through the CLI, `aims score`
carries the input prior into the results file, the loss falls on real RGB-X samples, describe
counts them, and single-modality configs are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from typer.testing import CliRunner  # noqa: E402

from aims.baselines.cli import app  # noqa: E402
from aims.errors import AimsError  # noqa: E402

#: the systems that train and predict here (all of aims.baselines.choices.RGBX_STRATEGIES)
SYSTEMS = ["vipt", "cmx", "gopt", "iv-tuning"]
PRIOR = "rgb-x-unshuffled"


#: tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SAM in Hugging Face format with PyTorch's default initialisation. These
    systems freeze most of a pretrained SAM; transformers' random init (every weight
    N(0, 0.02)) gives a tiny decoder whose logits barely depend on its image input (std
    ~4e-5), which no trained checkpoint is."""
    from transformers import SamModel

    from aims.baselines.sam_loading import sam_config

    torch.manual_seed(0)
    sam = SamModel(sam_config("tiny"))
    for m in sam.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.reset_parameters()
    folder = tmp_path_factory.mktemp("tiny_sam") / "sam"
    sam.save_pretrained(str(folder))
    return folder


def test_the_pipeline_feeds_rgb_then_x_unshuffled(nyuv2_prepared):
    from aims.baselines.data import SampleSource, config_channel_stats, input_stack, load_split, modality_normalizer
    from aims.modalities import MODALITY_STACKS, modality_tensor

    stats = config_channel_stats("depth", nyuv2_prepared)
    row = load_split("depth", "test", nyuv2_prepared)[0]
    stack = input_stack("rgb-depth", PRIOR)
    assert stack.columns == ("rgb", "depth") and stack.permutation() is None
    assert MODALITY_STACKS["rgb-depth"].permutation() is not None     # the record's own is shuffled
    norm = modality_normalizer("rgb-depth", stats, PRIOR)
    assert norm.mean == (*stats["rgb"]["mean"], *stats["depth"]["mean"])   # per channel, in column order
    src = SampleSource([row], "rgb-depth", norm, 1024, "sam", prior=PRIOR)
    raw = np.concatenate([modality_tensor(row, "rgb"), modality_tensor(row, "depth")])
    expected = (raw - np.asarray(norm.mean, np.float32)[:, None, None]) / np.asarray(norm.std, np.float32)[:, None, None]
    pixels, frame = src.image(row)
    h, w = frame.resized
    from aims.baselines.data import to_model_input

    torch.testing.assert_close(pixels, to_model_input(expected, frame))
    shuffled = SampleSource([row], "rgb-depth", modality_normalizer("rgb-depth", stats), 1024, "sam").image(row)[0]
    assert not torch.allclose(shuffled[:, :h, :w], pixels[:, :h, :w])   # the SimCMF input differs
    with pytest.raises(AimsError, match="no rgb-x-unshuffled form"):
        input_stack("depth", PRIOR)


def test_single_modality_configs_and_other_inputs_are_refused(nyuv2_prepared, tmp_path):
    from aims.baselines.recipes import recipe
    from aims.baselines.rgbx_systems import rgbx_modalities
    from aims.baselines.train_data import resolve_input

    assert rgbx_modalities() == {"depth": "rgb-depth", "hha": "rgb-hha", "nir": "rgb-nir",
                                 "thermal": "rgb-thermal"}                # from the records
    assert resolve_input("depth", None, recipe("aims"), "vipt").prior == PRIOR
    from aims.baselines.data import input_stack
    from aims.modalities import MODALITY_STACKS

    for modality in rgbx_modalities().values():                          # each un-shuffled, RGB first
        stack, shuffled = input_stack(modality, PRIOR), MODALITY_STACKS[modality]
        assert stack.columns[0] == "rgb" and set(stack.columns) == set(shuffled.columns)
        assert stack.permutation() is None and shuffled.permutation() is not None
        assert stack.channels == shuffled.channels
    with pytest.raises(AimsError, match="offers no RGB-X modality") as err:
        resolve_input("polarization", None, recipe("aims"), "vipt")
    assert all(f"--config {c} --modality rgb-{x}" in str(err.value)
               for c, x in (("depth", "depth"), ("hha", "hha"), ("nir", "nir"), ("thermal", "thermal")))
    base = ["train", "--config", "depth", "--size", "tiny", "--data-dir", str(nyuv2_prepared), "--no-progress"]
    cases = {("--strategy", "vipt", "--modality", "depth"): "not 'depth'",
             ("--strategy", "cmx", "--recipe", "reference", "--modality", "d"): "not RGB followed by",
             ("--strategy", "gopt", "--adapter", "simcmf"): "takes no cross-modal projector"}
    for args, words in cases.items():
        result = CliRunner().invoke(app, [*base, *args, "--out", str(tmp_path / "x")])
        assert isinstance(result.exception, AimsError) and words in str(result.exception), (args, result.output)
    result = CliRunner().invoke(app, ["describe", "--config", "polarization", "--strategy", "vipt"])
    assert isinstance(result.exception, AimsError) and "offers no RGB-X modality" in str(result.exception)
    result = CliRunner().invoke(app, ["describe", "--channels", "1", "--strategy", "vipt"])
    assert isinstance(result.exception, AimsError) and "needs an RGB-X input" in str(result.exception)
    assert _describe("--config", "thermal", "--strategy", "vipt")["modality"] == "rgb-thermal"   # the default


@pytest.mark.parametrize("strategy", SYSTEMS)
def test_loss_falls_on_real_rgbx_samples(strategy, nyuv2_prepared, tiny_checkpoint):
    """Adam on one fixed batch of the miniature's RGB-X training samples, as `train` draws
    them (un-shuffled inputs, one instance and click each)."""
    from aims.baselines.data import TrainSamples
    from aims.baselines.losses import dice_ce_loss
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.recipes import recipe
    from aims.baselines.train_data import register_dataset, resolve_input, training_rows

    rec = recipe("aims")
    register_dataset("depth", nyuv2_prepared)
    model_input = resolve_input("depth", None, rec, strategy)
    torch.manual_seed(0)
    model = build_model(ModelSpec("tiny", strategy=strategy, in_channels=model_input.channels,
                                  checkpoint=str(tiny_checkpoint)))
    rows = training_rows("depth", nyuv2_prepared, model_input, rec, model.image_size, "sam", False)
    assert rows.train.prior == PRIOR and rows.select.prior == PRIOR
    samples = TrainSamples(rows.train, model.low_res_size, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(samples, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 4, 64, 64)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(12):
        logits, _ = model(batch["pixel_values"], batch["points"], batch["labels"])
        loss = dice_ce_loss(logits[:, 0], batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.005, losses


@pytest.mark.parametrize("strategy", SYSTEMS)
def test_train_predict_and_score_through_the_cli(strategy, nyuv2_prepared, tiny_checkpoint, tmp_path):
    from aims.cli import app as aims_app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--config", "depth", "--strategy", strategy, "--checkpoint", str(tiny_checkpoint),
        "--size", "tiny", "--data-dir", str(nyuv2_prepared), "--out", str(run), "--lr", "1e-2",
        "--epochs", "2", "--batch-size", "4", "--no-progress", "--seed", "0"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"RGB-X system {strategy}" in result.output
    info = json.loads((run / "run.json").read_text())
    assert (info["modality"], info["input_prior"], info["spec"]["strategy"]) == ("rgb-depth", PRIOR, strategy)
    assert info["spec"]["in_channels"] == 4 and info["train"]["adapter"] == "rgbx-split"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and all(np.isfinite(r["loss"]) for r in metrics["epochs"])

    from safetensors.torch import load_file

    from aims.baselines.model import checkpoint_names
    from aims.baselines.train import load_run

    model, _ = load_run(run)                                            # the run reads back
    assert model.system is not None and model.spec.adapter == "rgbx-split"
    saved = load_file(str(run / "best.safetensors"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == checkpoint_names(model) and trained <= set(saved)   # + BatchNorm statistics (cmx)
    assert metrics["trainable_parameters"] == sum(saved[n].numel() for n in trained)

    preds = tmp_path / "preds"
    result = CliRunner().invoke(app, ["predict", "--config", "depth", "--run", str(run), "--out", str(preds),
                                      "--data-dir", str(nyuv2_prepared), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "3 images, 19 instances" in result.output
    meta = json.loads((preds / "aims_predictions.json").read_text())["meta"]
    assert (meta["method"], meta["strategy"], meta["input_prior"], meta["modality"]) == (
        f"{strategy}-sam-aims", strategy, PRIOR, "rgb-depth")
    scored = CliRunner().invoke(aims_app, ["score", str(preds), "--data-dir", str(nyuv2_prepared),
                                           "--out", str(tmp_path / "scores"), "--no-progress"])
    assert scored.exit_code == 0, scored.output + repr(scored.exception)
    results = json.loads((tmp_path / "scores" / "results.json").read_text())
    assert results["meta"]["input_prior"] == PRIOR and results["meta"]["strategy"] == strategy


def test_table6_recipe_file_trains_under_the_reference_recipe(nyuv2_prepared, tiny_checkpoint, tmp_path):
    """The reference's RGB-X loaders stack RGB first, then X: the same prior, its own
    constants. A Table 6 recipe file names no projector; the system needs none."""
    from pathlib import Path

    recipe_file = Path(__file__).resolve().parents[1] / "recipes" / "table6" / "rgb-depth-vipt.yaml"
    if not recipe_file.is_file():
        pytest.skip(f"{recipe_file} is not generated in this checkout")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--recipe-file", str(recipe_file), "--size", "tiny", "--checkpoint", str(tiny_checkpoint),
        "--data-dir", str(nyuv2_prepared), "--out", str(run), "--lr", "1e-2", "--epochs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    info = json.loads((run / "run.json").read_text())
    assert (info["recipe"], info["modality"], info["input_prior"]) == ("reference", "rgb-depth", PRIOR)
    preds = tmp_path / "preds"
    result = CliRunner().invoke(app, ["predict", "--config", "depth", "--run", str(run), "--out", str(preds),
                                      "--data-dir", str(nyuv2_prepared), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    meta = json.loads((preds / "aims_predictions.json").read_text())["meta"]
    assert (meta["method"], meta["input_prior"], meta["resize"]) == ("vipt-sam-reference", PRIOR, "warp")


def _describe(*args: str) -> dict:
    result = CliRunner().invoke(app, ["describe", *args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.output)


@pytest.mark.parametrize("strategy", SYSTEMS)
def test_describe_counts_the_system_apart(strategy):
    from aims.baselines.model import ModelSpec, build_model
    from aims.baselines.strategies import count_parameters

    info = _describe("--config", "depth", "--modality", "rgb-depth", "--strategy", strategy)
    groups = info["groups"]
    assert (info["adapter"], info["in_channels"], info["input_prior"]) == ("rgbx-split", 4, PRIOR)
    assert sum(g["total"] for g in groups.values()) == info["parameters"]["total"]
    assert sum(g["trainable"] for g in groups.values()) == info["parameters"]["trainable"]
    assert groups["projector"]["total"] == info["adapter_parameters"] == 0
    assert info["strategy_parameters"] == groups["rgb-x system"]["total"] > 0
    assert groups["sam patch embedding"]["total"] == 590_592           # SAM's own, kept inside the system
    model = build_model(ModelSpec("vit-b", strategy=strategy, in_channels=4), device="meta")
    assert count_parameters(model) == (info["parameters"]["trainable"], info["parameters"]["total"])


def test_describe_vipt_at_vit_b_is_table6s_size():
    """SimCMF Table 6: ViPT* 94.5 M parameters (prompt tuning); issue 12 asks within 10 %."""
    info = _describe("--config", "depth", "--modality", "rgb-depth", "--strategy", "vipt")
    assert info["parameters"] == {"total": 94_182_140, "trainable": 446_412}
    assert info["groups"]["mask decoder"]["trainable"] == 0             # ViPT tunes prompts only
    assert abs(info["parameters"]["total"] / 1e6 - 94.5) <= 0.1 * 94.5
