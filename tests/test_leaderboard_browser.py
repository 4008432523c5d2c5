"""The leaderboard page in a real browser at a desktop and a phone width (issue 13, item 6;
issue 12: the Table 6 section).

Headless Chromium lays the page out; the checks read the layout it computed, not the HTML:
the Table 6 section shows the paper's five rows, and at 420 px every table either fits its
box or scrolls inside it while the page itself never scrolls sideways. Screenshots of both
widths are taken (``scripts/make_doc_images.py`` writes the ones in ``docs/images/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from aims.leaderboard.entries import Entry, reference_entries
from aims.leaderboard.render import build_site

CHROMIUM = Path(os.environ.get("AIMS_CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} not installed (Debian package chromium)")

#: per table: its box and content widths, its computed overflow, and whether a sideways
#: scroll of the box moves it (a table that overflows must be reachable by scrolling)
LAYOUT = """() => {
  const out = [];
  document.querySelectorAll("div.scroll").forEach((box) => {
    const before = box.scrollLeft;
    box.scrollLeft = 10000;
    const moved = box.scrollLeft > before;
    box.scrollLeft = before;
    out.push({title: box.getAttribute("aria-label"), client: box.clientWidth, scroll: box.scrollWidth,
              overflowX: getComputedStyle(box).overflowX, moved: moved,
              right: box.getBoundingClientRect().right});
  });
  return {tables: out, page: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def _scored_row() -> Entry:
    """A scored row as `aims score` makes it for a Table 6 method (CI, date, results link)."""
    return Entry(method="vipt-tiny", model="SAM tiny", protocol="aims-v1", group="rgb-x systems",
                 miou={"rgb-depth": 41.5, "rgb-hha": 40.25}, ci95={"rgb-depth": (38.0, 45.0)},
                 trainable_params_m=0.9, source="aims score 0", strategy="vipt", date="2026-12-01",
                 link="results/vipt-tiny.json")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from aims import __version__

    return build_site([*reference_entries(), _scored_row()], None, tmp_path_factory.mktemp("site"),
                      version=__version__)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the [test] extra) not installed")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("width", [1400, 420])
def test_tables_fit_or_scroll_and_the_page_never_scrolls_sideways(browser, site, tmp_path, width):
    tab = browser.new_page(viewport={"width": width, "height": 900})
    try:
        tab.goto(site.as_uri())
        layout = tab.evaluate(LAYOUT)
        shot = tmp_path / f"leaderboard-{width}.png"
        tab.screenshot(path=str(shot), full_page=True)
    finally:
        tab.close()
    assert len(layout["tables"]) == 5  # simcmf-v1 modalities, Tables 2 and 6, alignment, Fig. 6
    assert layout["page"] <= layout["viewport"], "the page itself scrolls sideways"
    for table in layout["tables"]:
        assert table["right"] <= width + 0.5, table
        fits = table["scroll"] <= table["client"]
        assert fits or (table["overflowX"] in ("auto", "scroll") and table["moved"]), table
    if width == 420:  # a phone is too narrow for the modality tables: they scroll in place
        assert any(t["scroll"] > t["client"] and t["moved"] for t in layout["tables"])
    else:  # a desktop shows every table whole
        assert all(t["scroll"] <= t["client"] for t in layout["tables"]), layout["tables"]
    with Image.open(shot) as image:
        assert image.size[0] == width and image.size[1] > 900


def test_table6_section_shows_the_papers_five_rows(browser, site):
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.goto(site.as_uri())
        heading = tab.locator("h2", has_text="Table 6")
        assert heading.count() == 1 and heading.is_visible()
        table = tab.locator("div.scroll[aria-label*='Table 6'] table.board")
        headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
        rows = [dict(zip(headers, (c.strip() for c in r))) for r in
                (row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all())]
        reported = [r for r in rows if r["source"].startswith("reported in paper")]
        assert sorted((r["method"], r["strategy"], r["params (M)"]) for r in reported) == sorted([
            ("CMX*", "full fine-tuning", "403.8"), ("ViPT*", "prompt tuning", "94.5"),
            ("SimCMF", "LoRA", "94.4"), ("SimCMF", "MLP adapter", "—"), ("SimCMF", "full fine-tuning", "—")])
        assert {r["RGB-T"] for r in reported} == {"44.91", "75.93", "84.52", "85.29", "82.68"}
        assert all(r["links"] == "paper · code" and r["date"] == "2024-11-27" for r in reported)
        scored = next(r for r in rows if r["method"] == "vipt-tiny")
        assert scored["RGB-D"] == "41.50 ±3.50" and scored["links"] == "results"
        # the bold of the aims-v1 row is its own, though the paper's rows are higher
        bold = table.locator("tbody tr", has_text="vipt-tiny").locator("td.best")
        assert bold.count() == 2
        note = tab.locator("p.note", has_text="reimplemented on SAM")
        assert note.count() == 1 and note.is_visible()
    finally:
        tab.close()
