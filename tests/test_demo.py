"""`aims demo` runs every product on the miniatures and says where each output is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import datasets
import pytest

pytest.importorskip("torch", reason="the demo's baseline step needs the [baselines] extra")


def test_demo_builds_everything(tmp_path):
    # how long it takes is measured in benchmarks/, not asserted here
    result = subprocess.run([sys.executable, "-m", "aims", "demo", "--out", str(tmp_path), "--no-progress"],
                            capture_output=True, text=True, env=dict(os.environ), timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("dataset", "predictions", "results", "leaderboard", "panels"):
        assert f"  {name}" in out
    results = json.loads((tmp_path / "scores" / "results.json").read_text())
    assert set(results["configs"]) == {"depth", "hha", "nir", "polarization", "polarization-zju", "thermal"}
    assert results["headline"]["complete"] and results["method"] == "simcmf-tiny-demo"
    page = (tmp_path / "leaderboard" / "site" / "index.html").read_text()
    assert "simcmf-tiny-demo" in page and "reported in paper" in page
    # panels: the first N test images of every config (N the demo's limit, or the whole
    # split when it is shorter) and one statistics plot per config; the count it prints
    panels = tmp_path / "panels"
    drawn = {config: sorted(p.stem for p in (panels / config).glob("*.png")) for config in results["configs"]}
    limit = max(len(ids) for ids in drawn.values())
    assert limit >= 1
    for config, ids in drawn.items():
        test_ids = datasets.load_dataset(str(tmp_path / "dataset"), config, split="test")["image_id"]
        assert ids == sorted(test_ids[:limit]), config
        assert (panels / f"statistics-{config}.png").is_file(), config
    pictures = list(panels.rglob("*.png"))
    assert len(pictures) == sum(map(len, drawn.values())) + len(drawn)
    assert f"  {len(pictures)} pictures in {panels}" in out
    assert len(datasets.load_dataset(str(tmp_path / "dataset"), "polarization-zju", split="test")) == 2
    _check_demo_text(out + result.stderr, tmp_path)


def _check_demo_text(text: str, root) -> None:
    """What the demo says: one unit, every step reports, the skip notice once, the collapse
    explained exactly when it happened, and next commands that work as printed."""
    lines = text.splitlines()
    # mIoU in percent everywhere: the per-epoch series and the score table
    series = [ln for ln in lines if "validation mIoU % by epoch:" in ln]
    assert len(series) == 6
    for ln in series:
        values = [float(v) for v in ln.split("by epoch:")[1].split(";")[0].split("(")[0].split()]
        assert values and all(0.0 <= v <= 100.0 for v in values)
    assert not re.search(r"mIoU 0\.\d{4}", text)          # no fractions left
    leaderboard = next(ln for ln in lines if ln.startswith("5. leaderboard:"))
    assert "paper reference rows" in leaderboard and "1 scored row(s) (simcmf-tiny-demo" in leaderboard
    # the RGBP-Glass skip is reported once, after the prepare table, not also as a log line
    assert text.count("known broken sample") == 2 and "the authors mark as broken" not in text
    table_end = max(i for i, ln in enumerate(lines) if ln.startswith("  ") and " test: " in ln)
    assert all(i > table_end for i, ln in enumerate(lines) if "known broken sample" in ln)
    # the collapse note appears exactly when some config's last-epoch masks are all empty
    counts = [tuple(map(int, m.groups())) for m in re.finditer(r"last epoch: (\d+) of (\d+) test masks empty", text)]
    assert len(counts) == 6
    collapsed = any(e == n and n for e, n in counts)
    assert ("Why these numbers are near zero" in text) == collapsed
    # the next commands run as printed
    start = lines.index("Next, with this demo's folder:")
    commands = [ln.strip() for ln in lines[start + 1:] if ln.startswith("  ")]
    assert len(commands) == 3
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for command in commands:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, cwd=root)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (root / "more-panels" / "depth").is_dir()


def test_show_and_publish_cli(nyuv2_prepared, tmp_path):
    show = subprocess.run([sys.executable, "-m", "aims", "show", "--data-dir", str(nyuv2_prepared),
                           "--config", "depth", "--limit", "1", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert (tmp_path / "p" / "depth" / "0002.png").is_file() and (tmp_path / "p" / "statistics-depth.png").is_file()
    missing = subprocess.run([sys.executable, "-m", "aims", "show", "--data-dir", str(nyuv2_prepared),
                              "--config", "nir"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no config nir" in missing.stderr
    dry = subprocess.run([sys.executable, "-m", "aims", "publish", "--repo-id", "my-lab/aims", "--data-dir",
                          str(nyuv2_prepared), "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run: nothing uploaded." in dry.stdout and "depth/train-00000-of-00001.parquet" in dry.stdout
