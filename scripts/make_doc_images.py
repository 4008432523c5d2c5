"""Regenerate the pictures in ``docs/images/`` with the project's own commands.

    python scripts/make_doc_images.py [--demo DIR] [--out docs/images]

1. ``aims demo --out DIR`` (skipped when DIR already holds a finished demo): the bundled
   miniature sources, prepared, a tiny SimCMF model trained and scored per config, the
   results added to a leaderboard.
2. ``aims show`` on that dataset with the demo's predictions: the panels
   (``panel-<config>.png``, the first test image of each config drawn) and
   ``statistics-nir.png``.
3. ``aims leaderboard build`` on the demo's results, then headless Chromium screenshots of
   the page at 1400 and 420 px wide (``leaderboard-1400.png``, ``leaderboard-420.png``),
   full page, with Playwright when it is installed (the ``[test]`` extra), else with the
   ``chromium --headless --screenshot`` command line.

Nothing here is drawn by hand: every picture is what a user gets from the same commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("AIMS_CHROMIUM", "/usr/bin/chromium"))
#: configs whose first test panel goes into the docs (README shows HHA and ZJU-RGBP; depth
#: and thermal show the colour bars in metres and °C)
PANEL_CONFIGS = ("hha", "polarization-zju", "depth", "thermal")
STATISTICS_CONFIG = "nir"
WIDTHS = (1400, 420)


def aims(*args: str) -> None:
    """Run one ``aims`` command of this checkout, failing loudly."""
    print("$ aims " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "aims", *args], check=True, cwd=ROOT)


def screenshot(page: Path, target: Path, width: int) -> None:
    """A full-page screenshot of ``page`` at ``width`` CSS pixels."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is not None:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            try:
                tab = browser.new_page(viewport={"width": width, "height": 900})
                tab.goto(page.resolve().as_uri())
                tab.screenshot(path=str(target), full_page=True)
            finally:
                browser.close()
        return
    # no Playwright: the browser's own command line (a fixed, tall window)
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},4000", f"--screenshot={target}", page.resolve().as_uri()],
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, help="demo folder to reuse or create (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} not found: install chromium (or set AIMS_CHROMIUM) for the page screenshots")
    demo = args.demo or Path(tempfile.mkdtemp(prefix="aims-doc-images-")) / "demo"
    if not (demo / "predictions").is_dir() or not (demo / "leaderboard" / "results").is_dir():
        aims("demo", "--out", str(demo), "--no-progress")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    panels = demo / "doc-panels"
    shutil.rmtree(panels, ignore_errors=True)
    config_flags = [flag for c in dict.fromkeys((*PANEL_CONFIGS, STATISTICS_CONFIG)) for flag in ("-c", c)]
    aims("show", "--data-dir", str(demo / "dataset"), "--predictions", str(demo / "predictions"),
         "--limit", "1", "--out", str(panels), *config_flags)
    for config in PANEL_CONFIGS:
        first = sorted((panels / config).glob("*.png"))[0]
        shutil.copyfile(first, out / f"panel-{config}.png")
    shutil.copyfile(panels / f"statistics-{STATISTICS_CONFIG}.png", out / f"statistics-{STATISTICS_CONFIG}.png")

    site = demo / "doc-site"
    aims("leaderboard", "build", "--results", str(demo / "leaderboard" / "results"), "--out", str(site))
    for width in WIDTHS:
        screenshot(site / "index.html", out / f"leaderboard-{width}.png", width)
    print("\n".join(f"wrote {p}" for p in sorted(out.glob("*.png"))))


if __name__ == "__main__":
    main()
