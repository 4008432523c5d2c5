"""Leaderboard: reference rows, results validation, Markdown, and the page in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aims.errors import AimsError
from aims.leaderboard.entries import add_results, collect, reference_entries
from aims.leaderboard.render import README_END, README_START, markdown, update_readme

CHROMIUM = Path(os.environ.get("AIMS_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def results_file(nyuv2_prepared, tmp_path_factory) -> Path:
    """A real results file: shifted ground truth scored by `aims score` on depth + hha."""
    from aims.loader import load_dataset
    from aims.predictions import PredictionWriter

    root = tmp_path_factory.mktemp("lb")
    with PredictionWriter(root / "preds", fmt="rle",
                          meta={"method": "shifted-gt", "model": "oracle", "trainable_params": 1234567}) as w:
        for config in ("depth", "hha"):
            for row in load_dataset(config, "test", data_dir=nyuv2_prepared):
                ids = np.array(row["instances"]).astype(int)
                for iid in row["instance_ids"]:
                    w.add(config, row["image_id"], iid, np.roll(ids == iid, 4, axis=0))
    result = subprocess.run([sys.executable, "-m", "aims", "score", str(root / "preds"), "--data-dir",
                             str(nyuv2_prepared), "--out", str(root / "scores"), "--no-progress"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return root / "scores" / "results.json"


def test_reference_rows_are_the_papers_tables():
    rows = reference_entries()
    best = next(e for e in rows if e.method == "SimCMF (best strategy each)")
    assert best.miou == {"thermal": 57.25, "polarization": 72.69, "depth": 45.09, "hha": 44.02, "nir": 50.36}
    assert best.mean == 53.88 and best.source == "reported in paper"
    scratch = next(e for e in rows if e.method == "train from scratch" and e.group == "modalities")
    assert scratch.mean == 22.15  # reported, and equal to the mean of its columns
    lora = next(e for e in rows if e.method == "SimCMF LoRA")
    assert lora.trainable_params_m == 4.3 and lora.mean == pytest.approx(54.06, abs=0.01)
    assert {e.group for e in rows} == {"modalities", "rgb-x", "alignment ablation"}
    assert len([e for e in rows if e.group == "alignment ablation"]) == 5


def test_add_validates_every_field_and_copies(results_file, tmp_path):
    target = add_results(results_file, tmp_path / "results")
    assert target.name == "shifted-gt--oracle--aims-v1.json"
    bad = json.loads(results_file.read_text())
    bad["protocol"]["version"] = "aims-one"
    del bad["model"]
    bad["configs"]["depth"]["miou"] = 1.7
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(AimsError) as err:
        add_results(tmp_path / "bad.json", tmp_path / "results2")
    text = str(err.value)
    assert "3 problem(s)" in text and "protocol/version" in text and "'model'" in text and "configs/depth/miou" in text
    assert not (tmp_path / "results2").exists() or not any((tmp_path / "results2").iterdir())


def test_markdown_and_readme_block(results_file, tmp_path):
    add_results(results_file, tmp_path / "results")
    entries = collect(tmp_path / "results")
    table = markdown(entries)
    assert "protocol aims-v1" in table and "protocol simcmf-v1" in table
    ours = next(line for line in table.splitlines() if line.startswith("| shifted-gt"))
    assert "1.2" in ours and "results/shifted-gt--oracle--aims-v1.json" in ours
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n")
    assert update_readme(readme, table) and not update_readme(readme, table)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text


def test_cli_build_writes_page_and_markdown(results_file, tmp_path):
    add = subprocess.run([sys.executable, "-m", "aims", "leaderboard", "add", str(results_file),
                          "--results", str(tmp_path / "results")], capture_output=True, text=True)
    assert add.returncode == 0, add.stderr
    build = subprocess.run([sys.executable, "-m", "aims", "leaderboard", "build", "--results",
                            str(tmp_path / "results"), "--out", str(tmp_path / "site")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    page = (tmp_path / "site" / "index.html").read_text()
    import re

    assert "<script>" in page and "<style>" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained: nothing fetched
    assert (tmp_path / "site" / "results" / "shifted-gt--oracle--aims-v1.json").is_file()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian package chromium)")
def test_page_in_headless_chromium(results_file, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the [test] extra) not installed")
    from aims import __version__
    from aims.leaderboard.render import build_site

    add_results(results_file, tmp_path / "results")
    index = build_site(collect(tmp_path / "results"), tmp_path / "results", tmp_path / "site", version=__version__)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(index.as_uri())
            tables = page.locator("table.board")
            assert tables.count() == 4  # aims-v1, simcmf-v1, RGB-X, alignment
            simcmf = tables.nth(1)
            assert simcmf.locator("tbody tr").count() == 6
            assert simcmf.locator("tr.reported").count() == 6
            assert tables.nth(0).locator("tbody tr td").first.inner_text() == "shifted-gt"

            headers = [h.strip() for h in simcmf.locator("thead th").all_inner_texts()]

            def column(name: str) -> list[str]:
                return simcmf.locator(f"tbody tr td:nth-child({headers.index(name) + 1})").all_inner_texts()

            nir_header = simcmf.locator("thead th").nth(headers.index("NIR"))
            nir_header.click()
            assert nir_header.get_attribute("aria-sort") == "descending"
            nir = [float(v) for v in column("NIR")]
            assert nir == sorted(nir, reverse=True) and nir[0] == 52.66
            nir_header.click()
            assert nir_header.get_attribute("aria-sort") == "ascending"
            assert [float(v) for v in column("NIR")] == sorted(nir)
            simcmf.locator("thead th").nth(headers.index("method")).click()
            methods = column("method")
            assert methods == sorted(methods, key=str.casefold, reverse=True)  # localeCompare order
            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
