"""The scoring API (``aims.score``), ``aims score --json``, the click-rule check, the small-
sample warning, what the headline says it averages, and the Dice metric."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import aims
from aims.cli import main
from aims.errors import AimsError
from aims.predictions import PredictionWriter
from aims.results import validate_results
from aims.scoring import HEADLINE_MODALITIES, MIN_CI_IMAGES, Scores, iter_ground_truth, not_in_headline, split_shards


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    return list(iter_ground_truth(split_shards(nyuv2_prepared, "depth", "test")))


def shifted(mask: np.ndarray, k: int) -> np.ndarray:
    return np.roll(mask, (k % 5) - 2, axis=1)


def write(folder, gt, *, click_rule=None, size256=False):
    from PIL import Image

    with PredictionWriter(folder, fmt="rle", meta={"method": "api", "model": "none"}, click_rule=click_rule) as w:
        for g in gt:
            for k, i in enumerate(g.instance_ids):
                m = shifted(g.id_map == i, k)
                if size256:
                    big = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((1024, 1024), Image.NEAREST))
                    m = big[::4, ::4] > 0
                w.add("depth", g.image_id, int(i), m)
    return folder


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["aims", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_aims_score_returns_the_typed_result(gt, nyuv2_prepared, tmp_path):
    folder = write(tmp_path / "p", gt, click_rule="aims")
    result = aims.score(folder, data_dir=nyuv2_prepared, protocol="aims", configs=["depth"])
    assert isinstance(result, Scores) and "score" in aims.__all__
    s = result.summary()["depth"]
    assert 0 < s["miou"] < 1 and 0 < s["mdice"] < 1
    t = result.table[result.table["evaluated"]]
    # Dice and IoU of each instance are the same counts: D = 2 J / (1 + J)
    assert np.allclose(t["dice"], 2 * t["iou"] / (1 + t["iou"]))
    assert s["mdice"] == pytest.approx(float(t["dice"].mean())) and s["mdice"] > s["miou"]
    assert result.click_rule == {"predictions": "aims", "protocol": "aims", "match": True, "mismatch_allowed": False}


def test_cli_json_prints_exactly_the_results_document(gt, nyuv2_prepared, tmp_path, monkeypatch, capsys):
    folder = write(tmp_path / "p", gt, click_rule="aims")
    code, out, err = run(monkeypatch, capsys, "score", folder, "--data-dir", nyuv2_prepared, "--out",
                         tmp_path / "s", "--json", "--no-progress")
    assert code == 0, err
    doc = json.loads(out)                                   # stdout holds nothing else
    assert out == (tmp_path / "s" / "results.json").read_text()
    validate_results(doc)
    assert doc["configs"]["depth"]["mdice"] is not None and "Results:" in err and "mIoU" in err
    api = aims.score(folder, data_dir=nyuv2_prepared).results()
    assert api["configs"]["depth"]["miou"] == doc["configs"]["depth"]["miou"]   # the same object behind both


def test_small_sample_interval_warns_on_stderr(gt, nyuv2_prepared, tmp_path, monkeypatch, capsys):
    folder = write(tmp_path / "p", gt, click_rule="aims")
    n = len(gt)
    assert n < MIN_CI_IMAGES
    code, out, err = run(monkeypatch, capsys, "score", folder, "--data-dir", nyuv2_prepared, "--out",
                         tmp_path / "s", "--no-progress")
    assert code == 0
    line = " ".join(err.split())
    assert f"warning: config 'depth': the 95 % bootstrap interval comes from {n} image(s), fewer than 30" in line
    assert "warning" not in out
    doc = json.loads((tmp_path / "s" / "results.json").read_text())
    assert any("fewer than 30" in w for w in doc["warnings"])


def test_output_names_the_headline_modalities_and_the_excluded_config(gt, nyuv2_prepared, tmp_path):
    result = aims.score(write(tmp_path / "p", gt, click_rule="aims"), data_dir=nyuv2_prepared)
    text = result.format_table()
    names = list(HEADLINE_MODALITIES)
    assert len(names) == 5 and "polarization-zju" not in names
    assert f"mean of the 5 modalities {', '.join(names)}" in text
    assert not_in_headline() == ["polarization-zju"]
    assert "not in the headline (scored and reported only): polarization-zju" in text
    doc = result.results()
    assert doc["headline"]["not_in_headline"] == ["polarization-zju"] and doc["headline"]["mdice"] is None


def test_click_rule_mismatch_is_exit_2_unless_allowed(gt, nyuv2_prepared, tmp_path, monkeypatch, capsys):
    folder = write(tmp_path / "p", gt, click_rule="aims")
    code, out, err = run(monkeypatch, capsys, "score", folder, "--data-dir", nyuv2_prepared, "--protocol", "simcmf",
                         "--out", tmp_path / "s", "--no-progress")
    err = " ".join(err.split())
    assert code == 2 and "'aims' click" in err and "--allow-click-mismatch" in err and out == ""
    assert not (tmp_path / "s").exists()
    with pytest.raises(AimsError, match="allow-click-mismatch"):
        aims.score(folder, data_dir=nyuv2_prepared, protocol="simcmf")
    code, out, err = run(monkeypatch, capsys, "score", folder, "--data-dir", nyuv2_prepared, "--protocol", "simcmf",
                         "--out", tmp_path / "s", "--no-progress", "--allow-click-mismatch")
    assert code == 0, err
    doc = json.loads((tmp_path / "s" / "results.json").read_text())
    assert doc["click_rule"] == {"predictions": "aims", "protocol": "simcmf", "match": False, "mismatch_allowed": True}
    assert any("allow-click-mismatch" in w for w in doc["warnings"]) and "not comparable" in err


def test_baseline_metadata_protocol_counts_as_the_click_rule(gt, nyuv2_prepared, tmp_path):
    """Folders written before click_rule existed: `aims baseline predict` recorded meta.protocol."""
    with PredictionWriter(tmp_path / "p", fmt="rle", meta={"method": "m", "model": "x", "protocol": "simcmf"}) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), g.id_map == i)
    with pytest.raises(AimsError, match="'simcmf' click"):
        aims.score(tmp_path / "p", data_dir=nyuv2_prepared, protocol="aims")


def test_undeclared_click_rule_scores_with_a_note(gt, nyuv2_prepared, tmp_path):
    result = aims.score(write(tmp_path / "p", gt), data_dir=nyuv2_prepared, protocol="simcmf")
    assert result.click_rule["predictions"] is None and result.click_rule["match"] is None
    assert any("do not say which click" in w for w in result.warnings)


def test_results_without_dice_or_the_new_fields_still_validate(gt, nyuv2_prepared, tmp_path):
    doc = aims.score(write(tmp_path / "p", gt, click_rule="aims"), data_dir=nyuv2_prepared).results()
    for key in ("click_rule", "clicks", "warnings"):
        doc.pop(key)
    doc["headline"].pop("mdice")
    doc["headline"].pop("not_in_headline")
    for summary in doc["configs"].values():
        summary.pop("mdice")
    validate_results(doc)
    doc["configs"]["depth"]["mdice"] = 1.5
    with pytest.raises(AimsError, match="mdice"):
        validate_results(doc)


def test_simcmf_dice_is_the_reference_eval_seg_per_instance(gt, nyuv2_prepared, tmp_path):
    """Protocol simcmf-v1: each instance's Dice is the reference's ``eval_seg`` Dice of its
    256x256 mask (float32, eps 1e-4), and mDice their plain mean."""
    torch = pytest.importorskip("torch")
    from aims.baselines.losses import eval_seg
    from aims.protocols import get_protocol

    folder = write(tmp_path / "p", gt, size256=True)
    result = aims.score(folder, data_dir=nyuv2_prepared, protocol="simcmf")
    proto = get_protocol("simcmf")
    table = result.table.set_index(["image_id", "instance_id"])
    checked = 0
    for g in gt:
        frame = proto.frame("depth", g.id_map, g.instance_ids, g.area)
        for k, i in enumerate(g.instance_ids):
            from PIL import Image

            m = shifted(g.id_map == i, k)
            big = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((1024, 1024), Image.NEAREST))
            pred = torch.tensor(np.where(big[::4, ::4] > 0, 1.0, -1.0), dtype=torch.float32)[None, None]
            label = torch.tensor((frame.label == i).astype(np.float32))[None, None]
            iou, dice = eval_seg(pred, label)
            row = table.loc[(g.image_id, int(i))]
            assert row["dice"] == dice and row["iou"] == pytest.approx(iou, rel=1e-12)
            checked += 1
    ev = result.table[result.table["evaluated"]]
    assert checked == len(result.table) and result.summary()["depth"]["mdice"] == pytest.approx(ev["dice"].mean())


def test_inconsistent_interactive_block_is_refused(gt, nyuv2_prepared, tmp_path):
    with PredictionWriter(tmp_path / "p", fmt="rle", meta={"method": "m", "model": "x"}) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), np.stack([g.id_map == i] * 2))
    doc = aims.score(tmp_path / "p", data_dir=nyuv2_prepared).results()
    validate_results(doc)
    block = doc["configs"]["depth"]["interactive"]
    block["miou_at"] = block["miou_at"][:1]
    block["noc85"] = 7.0
    with pytest.raises(AimsError, match="holds 1 values for 2 clicks") as exc:
        validate_results(doc)
    assert "above max_clicks" in str(exc.value)


def test_readme_scoring_example_runs(gt, nyuv2_prepared, tmp_path, monkeypatch, capsys):
    """The README's aims.score block, as printed there, on a real predictions folder."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- example:score[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no <!-- example:score --> python block"
    write(tmp_path / "preds" / "depth-lora", gt, click_rule="aims")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIMS_DATASET", str(nyuv2_prepared))
    scope: dict = {"__name__": "readme_example"}
    exec(compile(block.group(1), "README.md:example:score", "exec"), scope)
    printed = capsys.readouterr().out
    miou = float(re.search(r"depth: mIoU ([0-9.]+) %", printed).group(1))
    assert miou == pytest.approx(100 * scope["depth"]["miou"], abs=0.05) and 0 < miou < 100
    assert any("fewer than 30" in w for w in scope["scores"].warnings)   # 3 test images: the warning is due
    assert "warning: " in printed
