"""Leaderboard: reference rows, results validation, Markdown, and the page in a browser."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aims.errors import AimsError
from aims.leaderboard.entries import Entry, add_results, collect, reference_entries, results_file_name
from aims.leaderboard.render import README_END, README_START, build_site, markdown, page, update_readme
from aims.results import validate_results

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
    assert {e.group for e in rows} == {"modalities", "rgb-x", "rgb-x systems", "alignment ablation",
                                       "adapter sweep"}
    ablation = [e for e in rows if e.group == "alignment ablation"]
    assert len(ablation) == 6
    medsam = next(e for e in ablation if "MedicalSAM" in e.method)
    assert medsam.miou == {"polarization": 70.90}


#: the paper's Table 6 (mIoU %): method, strategy as printed, total params (M), RGB-T, RGB-D, RGB-HHA, RGB-NIR
TABLE6 = [("CMX*", "full fine-tuning", 403.8, 44.91, 36.41, 37.33, 34.75),
          ("ViPT*", "prompt tuning", 94.5, 75.93, 48.89, 49.50, 51.90),
          ("SimCMF", "LoRA", 94.4, 84.52, 57.56, 56.44, 57.14),
          ("SimCMF", "MLP adapter", None, 85.29, 57.73, 57.25, 55.81),
          ("SimCMF", "full fine-tuning", None, 82.68, 56.96, 57.17, 56.37)]


def test_reference_rows_hold_table6_and_the_fig6_sweeps():
    rows = reference_entries()
    table6 = [e for e in rows if e.group == "rgb-x systems"]
    got = [(e.method, e.strategy, e.params_m, *(e.miou[c] for c in ("rgb-thermal", "rgb-depth", "rgb-hha", "rgb-nir")))
           for e in table6]
    assert got == TABLE6
    assert all(e.note == "Table 6" and e.source == "reported in paper" and e.protocol == "simcmf-v1" for e in table6)
    sweeps = {(e.sweep[0], e.sweep[1]): e.miou["polarization"] for e in rows if e.group == "adapter sweep"}
    assert sweeps == {("k", 1): 71.7, ("k", 3): 72.7, ("k", 5): 71.3, ("d", 32): 71.5, ("d", 64): 72.7,
                      ("d", 96): 72.7, ("n", 1): 69.8, ("n", 2): 72.7, ("n", 3): 71.1, ("n", 4): 71.3,
                      ("n", 5): 71.8}
    # every reference row is dated and links the paper and its code
    assert {(e.date, e.paper_url, e.code_url) for e in rows} == {
        ("2024-11-27", "https://arxiv.org/abs/2411.18669", "https://github.com/mt-cly/SimCMF")}


def _section(html_page: str, name: str) -> str:
    """The HTML between the heading that names ``name`` and the next heading."""
    import re

    found = re.search(rf"<h2>[^<]*{re.escape(name)}[^<]*</h2>(.*?)(?=<h2>|<footer>)", html_page, re.S)
    assert found, name
    return found.group(1)


def test_page_shows_table6_with_its_footnote_and_the_sweeps():
    html_page = page(reference_entries(), version="0")
    table6 = _section(html_page, "Table 6")
    for method, strategy, params, *values in TABLE6:
        assert f">{html.escape(method)}</td>" in table6 and f">{strategy}</td>" in table6
        for v in values:
            assert f">{v:.2f}" in table6
    assert ">403.8<" in table6 and ">94.5<" in table6 and ">94.4<" in table6
    assert "reimplemented on SAM ViT-B by the SimCMF authors" in table6
    assert "GoPT and IV-tuning" in table6  # why they have no rows yet: no numbers are invented
    sweeps = _section(html_page, "Fig. 6")
    assert sweeps.count("<tr class=\"reported\">") == 11 and 'class="chart sweep"' in sweeps
    assert "MedicalSAM-style" in html_page


def _table6_results(results_file: Path, tmp_path: Path, **meta) -> Path:
    """The real results file, as a ViPT run would record itself (un-shuffled RGB + X)."""
    doc = json.loads(results_file.read_text())
    doc["method"] = "vipt-tiny"
    doc["meta"].update(meta)
    validate_results(doc)
    path = tmp_path / "vipt.json"
    path.write_text(json.dumps(doc))
    return path


def test_scored_rgb_x_system_goes_to_table6_with_ci_date_and_links(results_file, tmp_path):
    path = _table6_results(results_file, tmp_path, strategy="vipt", input_prior="rgb-x-unshuffled",
                           paper_url="https://arxiv.org/abs/2303.10826", code_url="javascript:alert(1)",
                           total_params=94_500_000)
    add_results(path, tmp_path / "results")
    entries = collect(tmp_path / "results")
    ours = next(e for e in entries if e.method == "vipt-tiny")
    doc = json.loads(path.read_text())
    assert ours.group == "rgb-x systems" and ours.strategy == "vipt" and ours.params_m == 94.5
    assert ours.miou == {"rgb-depth": round(100 * doc["configs"]["depth"]["miou"], 2),
                         "rgb-hha": round(100 * doc["configs"]["hha"]["miou"], 2)}
    lo, hi = doc["configs"]["depth"]["ci95"]
    assert ours.ci95["rgb-depth"] == (round(100 * lo, 2), round(100 * hi, 2))
    assert ours.date == doc["created"][:10] and ours.paper_url == "https://arxiv.org/abs/2303.10826"
    assert ours.code_url is None  # not an https URL: dropped, never a link
    html_page = page(entries, version="0")
    table6 = _section(html_page, "Table 6")
    row = next(r for r in table6.split("<tr") if "vipt-tiny" in r)
    assert f"±{(hi - lo) * 50:.2f}" in row and ">94.5<" in row and f">{ours.date}<" in row
    assert 'href="https://arxiv.org/abs/2303.10826"' in row and "javascript" not in html_page
    assert 'href="results/vipt-tiny--oracle--aims-v1.json">results</a>' in row
    # a paper row (simcmf-v1) beats it on RGB-D, yet its own value is the bold one of aims-v1
    assert 'class="num best ci"' in row
    assert "the same protocol" in table6


def test_mean_footnote_names_what_the_mean_averages():
    from aims.leaderboard.entries import DISPLAY_LABELS, HEADLINE_COLUMNS, NOT_IN_MEAN
    from aims.scoring import HEADLINE_MODALITIES

    assert set(HEADLINE_COLUMNS) == set(HEADLINE_MODALITIES) and "polarization-zju" in NOT_IN_MEAN
    modalities = _section(page(reference_entries(), version="0"), "Modalities")
    note = modalities.split('<p class="note">')[1].split("</p>")[0]
    assert f"the {len(HEADLINE_COLUMNS)} headline modalities" in note and "polarization-zju" in note
    assert all(DISPLAY_LABELS[m] in note for m in HEADLINE_COLUMNS)


def test_best_bold_compares_rows_of_one_protocol_only():
    from aims.leaderboard.render import sections

    scored = Entry(method="mine", model="m", protocol="aims-v1", group="rgb-x systems",
                   miou={"rgb-depth": 40.0, "rgb-thermal": 90.0}, source="aims score 0")
    section = next(s for s in sections([*reference_entries(), scored]) if s.group == "rgb-x systems")
    best = section.best()
    assert best[("aims-v1", "rgb-depth")] == 40.0 and best[("simcmf-v1", "rgb-depth")] == 57.73
    assert best[("simcmf-v1", "rgb-thermal")] == 85.29
    row = next(r for r in _section(page([*reference_entries(), scored], version="0"), "Table 6").split("<tr")
               if ">mine<" in r)
    assert row.count('class="num best"') == 2


def test_every_table_sits_in_a_scrolling_wrapper():
    import re

    html_page = page(reference_entries(), version="0")
    assert html_page.count('<table class="board">') == 5
    assert len(re.findall(r'<div class="scroll" role="region" tabindex="0" aria-label="[^"]+"><table', html_page)) == 5
    assert ".scroll{overflow-x:auto" in html_page


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
    assert not re.search(r'src="(https?:)?//|<link|@import|url\(', page)  # self-contained: nothing fetched
    # the only absolute links are the paper's and its code's, as plain anchors
    external = set(re.findall(r'<a href="(https?:[^"]*)"', page))
    assert external == {"https://arxiv.org/abs/2411.18669", "https://github.com/mt-cly/SimCMF"}
    assert len(re.findall(r'href="https?:', page)) == len(re.findall(r'<a href="https?:', page))
    assert (tmp_path / "site" / "results" / "shifted-gt--oracle--aims-v1.json").is_file()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian package chromium)")
def test_page_in_headless_chromium(results_file, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the [test] extra) not installed")
    from aims import __version__

    add_results(results_file, tmp_path / "results")
    index = build_site(collect(tmp_path / "results"), tmp_path / "results", tmp_path / "site", version=__version__)
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(index.as_uri())
            tables = page.locator("table.board")
            assert tables.count() == 6  # aims-v1, simcmf-v1, Table 2, Table 6, alignment, Fig. 6
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


def _launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


# --- hostile names and numbers (issue 9, item 7) -------------------------------------------

HOSTILE = ("x <!-- leaderboard:end --> <script>alert(1)</script> | `c` [l](javascript:alert(2)) *b* _i_ "
           "&amp; ~~s~~ \\| <img src=x onerror=alert(3)>")


def hostile_entry(**changes) -> Entry:
    fields = dict(method=HOSTILE, model="<!-- leaderboard:start -->\nm|odel", protocol="aims-v1",
                  group="modalities", miou={"depth": 40.0, "hha": 41.0}, trainable_params_m=1.2,
                  source='aims score 0.1.0" onmouseover="alert(4)', link='results/a"><script>alert(5)</script>.json',
                  note="<b>note</b>")
    fields.update(changes)
    return Entry(**fields)


def _cells(row: str) -> list[str]:
    import re

    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def test_markdown_escapes_names_and_keeps_the_table_shape():
    table = markdown([hostile_entry()])
    assert "<" not in table and len(table.splitlines()) == 7  # no tag, comment or stray line survives
    assert table.splitlines()[-1].startswith("mean: the average of")  # the footnote, after a blank line
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    row = next(line for line in table.splitlines() if "alert(1)" in line)
    assert len(_cells(row)) == len(_cells(header)) == 10
    assert "&lt;!-- leaderboard:end --&gt;" in row and "\\[l\\]" in row and "\\*b\\*" in row
    assert "](leaderboard/site/results/a%22%3E%3Cscript%3Ealert%285%29%3C/script%3E.json)" in row


def test_markdown_renders_names_literally():
    """A CommonMark + tables renderer (markdown-it-py, installed with rich) shows each name
    character for character in its own cell."""
    import html
    import re

    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(markdown([hostile_entry()]))
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rendered)]
    assert len(cells) == 10 and cells[0] == HOSTILE and cells[1] == "<!-- leaderboard:start --> m|odel"
    assert "<script" not in rendered and "<img" not in rendered
    assert [href.startswith("leaderboard/site/") for href in re.findall(r'href="([^"]*)"', rendered)] == [True]


def test_readme_block_is_idempotent_with_hostile_names(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n")
    table = markdown([*reference_entries(), hostile_entry()])
    assert update_readme(readme, table)
    first = readme.read_text()
    assert not update_readme(readme, table) and readme.read_text() == first
    assert first.count(README_START) == 1 and first.count(README_END) == 1 and first.endswith(f"{README_END}\noutro\n")
    assert not [p for p in tmp_path.iterdir() if p.name != "README.md"]  # no temporary left


@pytest.mark.parametrize("text", [f"a\n{README_START}\n{README_END}\n{README_END}\n",
                                  f"a\n{README_START}\n{README_START}\n{README_END}\n",
                                  f"a\n{README_END}\n{README_START}\n", "no markers\n"])
def test_update_readme_refuses_an_ambiguous_block(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(AimsError, match="README|marker") as err:
        update_readme(readme, "| t |\n")
    assert isinstance(err.value, ValueError)  # what the CLI has always caught
    assert readme.read_text() == text


def test_page_escapes_every_field_and_hides_non_finite_numbers():
    bad_numbers = hostile_entry(method="n", miou={"depth": float("nan"), "hha": float("inf")},
                                trainable_params_m=float("-inf"), mean=1e308)
    html_page = page([hostile_entry(), bad_numbers], version='0.1"><script>alert(6)</script>')
    assert html_page.count("<script>") == 1 and "alert(" not in html_page.split("<script>")[1]
    for raw in ("<script>alert", "<img", "<!--", '" onmouseover', "<b>note"):
        assert raw not in html_page, raw
    assert 'href="results/a%22%3E%3Cscript%3Ealert%285%29%3C/script%3E.json"' in html_page
    import re

    assert not re.search(r">(nan|inf|-inf)<|=\"(nan|inf|-inf)\"|\d{30}", html_page)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([^"]+)"', html_page)]
    assert heights and all(0 <= h <= 240 for h in heights)


def test_build_site_refuses_out_that_is_a_file_and_writes_markdown(tmp_path):
    out = tmp_path / "site"
    out.write_text("mine\n")
    with pytest.raises(AimsError, match="not a folder"):
        build_site(reference_entries(), None, out, version="0")
    assert out.read_text() == "mine\n"
    site = tmp_path / "site2"
    index = build_site(reference_entries(), None, site, version="0")
    assert index.is_file() and (site / "leaderboard.md").read_text() == markdown(reference_entries())
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "leaderboard.md"]


def test_results_file_names_stay_short_and_distinct():
    def doc(method: str, model: str = "m") -> dict:
        return {"method": method, "model": model, "protocol": {"version": "aims-v1"}}

    long_a, long_b = results_file_name(doc("a" * 200, "b" * 200)), results_file_name(doc("a" * 200, "c" * 200))
    assert len(long_a) <= 120 and long_a != long_b and long_a.endswith(".json")
    assert results_file_name(doc("shifted-gt", "oracle")) == "shifted-gt--oracle--aims-v1.json"
    assert not results_file_name(doc("...", "///")).startswith(".")


def test_validation_message_is_one_line_per_field_and_bounded(results_file):
    doc = json.loads(results_file.read_text())
    doc["method"] = "m" * 5000
    doc["model"] = 7
    doc["meta"]["trainable_params"] = -1
    for name in ("depth", "hha"):
        summary = doc["configs"][name]
        summary.update(miou=2.0, image_miou=-1.0, ci95=[0.9, 0.1], n_images=10**12)
        summary["by_category"] = {f"c{i}": {"miou": 9.0, "n": -1} for i in range(40)}
    with pytest.raises(AimsError) as err:
        validate_results(doc)
    text = str(err.value)
    assert len(text) < 6000 and "m" * 300 not in text and "(and " in text
    assert text.count("at method:") == 1 and "at model:" in text and "meta/trainable_params" in text


def test_add_refuses_a_link_planted_at_the_target(results_file, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(results_file.read_bytes())  # same bytes: today's check would pass and follow it
    (results / "shifted-gt--oracle--aims-v1.json").symlink_to(elsewhere)
    with pytest.raises(AimsError, match="not a regular file"):
        add_results(results_file, results)
    assert (results / "shifted-gt--oracle--aims-v1.json").is_symlink()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian package chromium)")
def test_hostile_names_show_literally_in_chromium(tmp_path):
    """The browser, not a regex, decides whether markup got through: no dialog opens, and
    the cell shows the name character for character."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the [test] extra) not installed")
    index = build_site([hostile_entry(model="plain")], None, tmp_path / "site", version="0")
    dialogs = []
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            tab = browser.new_page()
            tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            tab.goto(index.as_uri())
            tab.locator("svg rect").first.hover()
            tab.locator("table.board td.source").first.hover()
            assert tab.locator("table.board tbody tr td").first.inner_text() == HOSTILE
            assert tab.locator("img").count() == 0 and tab.locator("script").count() == 1
        finally:
            browser.close()
    assert dialogs == []
