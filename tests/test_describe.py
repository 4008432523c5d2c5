"""`aims baseline describe`: parameter counts on the meta device, through the installed CLI
(issue 11's done-when: Fig. 6's adapter counts for the paper family at C = 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from aims.baselines.projectors import FIG6_PARAMETERS  # noqa: E402


def _aims(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("aims")
    if not exe.exists():
        pytest.skip(f"the aims console script is not installed beside {sys.executable}")
    return subprocess.run([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)


def _describe(*args: str) -> dict:
    proc = _aims("baseline", "describe", *args, "--json")
    assert proc.returncode == 0, proc.stdout
    return json.loads(proc.stdout)


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 5])
def test_paper_family_counts_are_fig6(layers):
    """Polarization has 9 channels in the records (no prepared dataset needed)."""
    info = _describe("--adapter", "paper", "--layers", str(layers), "--kernel", "3", "--dim", "64",
                     "--config", "polarization")
    assert info["adapter"] == f"paper-n{layers}-k3-d64" and info["in_channels"] == 9
    expected = {1: 30, 2: 5_443, 3: 42_371, 4: 79_299, 5: 116_227}[layers]
    assert info["adapter_parameters"] == FIG6_PARAMETERS[layers] == expected
    assert info["groups"]["projector"] == {"total": expected, "trainable": expected}
    assert info["strategy"] == "lora" and info["parameters"]["trainable"] == 4_275_200 + expected


def test_groups_add_up_and_the_strategy_is_counted():
    from aims.baselines.describe import describe_model
    from aims.baselines.model import ModelSpec

    info = describe_model(ModelSpec("vit-b", "simcmf", "prefix", in_channels=1))
    groups = info["groups"]
    assert sum(g["total"] for g in groups.values()) == info["parameters"]["total"]
    assert sum(g["trainable"] for g in groups.values()) == info["parameters"]["trainable"]
    assert info["strategy_parameters"] == 4_403_200                     # Table 4's prefix count
    assert info["parameters"]["trainable"] == 4_403_200 + 197_468        # + the gated projector at C = 1
    assert groups["sam patch embedding"] == {"total": 590_592, "trainable": 0}
    assert groups["prompt encoder"]["trainable"] == 0


def _describe_here(*args: str) -> dict:
    """The same command in this process (the CLI's own path is tested above)."""
    from typer.testing import CliRunner

    from aims.baselines.cli import app

    result = CliRunner().invoke(app, ["describe", *args, "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.output)


def test_recipe_defaults_and_channels_from_the_records():
    ref = _describe_here("--config", "thermal", "--modality", "rgb-thermal", "--recipe", "reference")
    assert (ref["adapter"], ref["strategy"], ref["in_channels"], ref["recipe"]) == ("simcmf", "lora", 4, "reference")
    assert ref["adapter_parameters"] == 790_727                          # manifest: simcmf at C = 4
    ours = _describe_here("--channels", "3", "--size", "tiny", "--strategy", "full")
    assert (ours["adapter"], ours["size"], ours["in_channels"]) == ("paper-n2-k3-d64", "tiny", 3)
    assert ours["parameters"]["trainable"] == ours["parameters"]["total"] - ours["groups"]["prompt encoder"]["total"]
    few = _describe_here("--config", "thermal", "--modality", "t_500", "--recipe", "reference")
    assert few["in_channels"] == 1 and few["modality"] == "t_500"


def test_human_output_and_user_errors():
    from typer.testing import CliRunner

    from aims.baselines.cli import app
    from aims.errors import AimsError

    result = CliRunner().invoke(app, ["describe", "--config", "depth", "--adapter", "preconv", "--layers", "2",
                                      "--kernel", "3", "--dim", "64"])
    assert result.exit_code == 0, result.output
    assert "preconvk3n2d64" in result.output
    assert "projector's own parameters: 835" in result.output          # 9·64 + 64 + 64·3 + 3
    cases = {("--config", "depth", "--adapter", "simcmf", "--layers", "2"): "full projector name",
             ("--config", "no-such-config",): "no-such-config",
             ("--config", "depth", "--modality", "polarization"): "does not store",
             ("--config", "depth", "--adapter", "paper-n99-k3-d64"): "outside",
             ("--config", "depth", "--recipe", "reference", "--modality", "t_500"): "--config thermal"}
    for args, words in cases.items():
        result = CliRunner().invoke(app, ["describe", *args])
        assert isinstance(result.exception, AimsError) and words in str(result.exception), (args, result.output)
