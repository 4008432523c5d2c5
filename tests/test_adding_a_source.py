"""docs/adding-a-source.md is true: its four files plus one registry line make a working
source. The files are taken from the page itself, written into a throwaway package (as
top-level modules ``toy_sonar*`` instead of ``aims.converters.toy_sonar*``, so the tree is
not touched), registered exactly as a ``BUILTIN_SOURCES`` line registers a record, and the
new config is prepared, loaded (``datasets`` and ``aims``), scored (ground truth as
predictions gives 100) and shown, with no other change anywhere."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

import aims
from aims.converters import registry
from aims.errors import AimsError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-source.md"
BLOCK = re.compile(r"```python\n# (?P<path>\S+)\n(?P<code>.*?)```", re.S)
MODULES = ("toy_sonar_record", "toy_sonar", "toy_sonar_miniature", "test_toy_sonar")


def _doc_files() -> dict[str, str]:
    return {m["path"]: m["code"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def test_the_walkthrough_is_four_new_files_and_one_registry_line():
    assert sorted(_doc_files()) == ["converters/toy_sonar.py", "converters/toy_sonar_miniature.py",
                                    "converters/toy_sonar_record.py", "tests/test_toy_sonar.py"]
    diff = re.search(r"```diff\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    added = [line for line in diff.splitlines() if line.startswith("+")]
    assert added == ['+    "aims.converters.toy_sonar_record",']
    # the registry really is one line per source, in that shape
    tree = ast.parse((ROOT / "converters" / "registry.py").read_text(encoding="utf-8"))
    builtins = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "BUILTIN_SOURCES")
    lines = (ROOT / "converters" / "registry.py").read_text(encoding="utf-8").splitlines()
    entries = builtins.value.elts
    assert all(e.lineno == e.end_lineno and lines[e.lineno - 1].strip() == f'"{e.value}",' for e in entries)
    assert len({e.lineno for e in entries}) == len(entries) == len(registry.BUILTIN_SOURCES)


@pytest.fixture
def toy_sonar(tmp_path, monkeypatch):
    package = tmp_path / "throwaway"
    package.mkdir()
    for path, code in _doc_files().items():
        (package / Path(path).name).write_text(code.replace("aims.converters.toy_sonar", "toy_sonar"),
                                               encoding="utf-8")
    monkeypatch.syspath_prepend(str(package))
    record = registry.register_builtin("toy_sonar_record")  # the run-time twin of the registry line
    try:
        yield record
    finally:
        registry.unregister_source("toy_sonar")
        for module in MODULES:
            sys.modules.pop(module, None)


def test_the_new_source_prepares_loads_scores_and_shows(toy_sonar, tmp_path):
    from aims.leaderboard.entries import DISPLAY_LABELS
    from aims.predictions import PredictionWriter
    from aims.prepare import run_prepare
    from aims.scoring import iter_ground_truth, score_predictions, split_shards
    from aims.show import show_dataset

    import test_toy_sonar  # the page's own test file passes
    test_toy_sonar.test_prepare_load_and_values(tmp_path / "own")

    # prepare: the registry knows it (`--modality all` and `--modality sonar` alike)
    assert registry.group_by_source(["all"])["toy_sonar"] == ["sonar"]
    assert registry.group_by_source(["sonar"]) == {"toy_sonar": ["sonar"]}
    src = registry.converter("toy_sonar").write_miniature(tmp_path / "src")
    out = tmp_path / "dataset"
    lines = run_prepare({"toy_sonar": ["sonar"]}, sources={"toy_sonar": src}, out=out, workers=2, progress=False)
    assert any(line.strip().startswith("sonar") for line in lines)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Toy Sonar (a made-up example)" in card and "16-bit greyscale PNG (uint16); echo strength" in card
    assert "Connected components of each semantic class" in card and "config_name: sonar" in card

    # load: with datasets (through the card) and with aims (the config's own shards)
    by_card = datasets.load_dataset(str(out), "sonar", split="test")
    by_aims = aims.load_dataset("sonar", split="test", data_dir=out)
    assert len(by_card) == len(by_aims) == 2 and by_card[0]["image_id"] == by_aims[0]["image_id"]
    row = by_aims[0]
    echo = np.array(row["echo"])
    assert echo.dtype == np.uint16
    np.testing.assert_array_equal(aims.modality_tensor(row, "sonar"), (echo / np.float32(65535))[None])
    assert row["category"] and set(row["category"]) <= {1, 2}
    assert DISPLAY_LABELS["sonar"] == "Sonar"

    # score: the ground truth as predictions gives 100
    preds = tmp_path / "predictions"
    with PredictionWriter(preds, meta={"method": "ground truth", "model": "none"}) as writer:
        for gt in iter_ground_truth(split_shards(out, "sonar", "test")):
            for i in gt.instance_ids:
                writer.add("sonar", gt.image_id, int(i), gt.id_map == i)
    scores = score_predictions(preds, data_dir=out, protocol="aims")
    summary = scores.summary()["sonar"]
    assert summary["miou"] == pytest.approx(1.0) and summary["n_evaluated"] >= 2
    results = scores.results()
    assert results["configs"]["sonar"]["modality"] is None and results["headline"]["complete"] is False
    written = scores.write(tmp_path / "scores")  # validated against the results schema
    assert written["results"].is_file()
    with pytest.raises(AimsError, match="no area filter for config 'sonar'"):
        score_predictions(preds, data_dir=out, protocol="simcmf")

    # show: panels with the predictions, and the statistics plot
    pictures = show_dataset(data_dir=out, configs=["sonar"], split="test", limit=1, predictions=preds,
                            out=tmp_path / "panels")
    assert len(pictures) == 2 and all(p.is_file() for p in pictures)


def test_a_fresh_process_knows_the_prepared_config_from_its_record(toy_sonar, tmp_path):
    """A config's aims_config.json carries its record: another process that never saw the
    source registers it from the dataset and decodes the rows (the hook for a user's own
    modality)."""
    import subprocess

    src = registry.converter("toy_sonar").write_miniature(tmp_path / "src")
    out = tmp_path / "dataset"
    from aims.prepare import prepare_source

    prepare_source(registry.converter("toy_sonar"), ["sonar"], dataset_dir=out, source=src, workers=1,
                   progress=False)
    code = ("import aims, numpy as np, sys\n"
            f"ds = aims.load_dataset('sonar', split='test', data_dir={str(out)!r})\n"
            "x = aims.modality_tensor(ds[0], 'rgb-sonar')\n"
            "from aims.schema import CONFIG_SCHEMAS\n"
            "print(x.shape, x.dtype, CONFIG_SCHEMAS['sonar'].column_names[3])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(4,", "48,", "64)", "float32", "echo"]
