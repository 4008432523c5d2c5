"""Hostile leaderboard input: results files that lie, explode, hang or inject markup.

Every case runs the installed ``aims`` executable and checks the two promises of
``docs/security.md``: exit 2 with a message naming the offending field or file (and no
traceback), and nothing written outside the folder the command may write to. A refused
``leaderboard add`` must also leave the results folder without any file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Sandbox, run_aims

HEADLINE = ("polarization", "depth", "hha", "thermal", "nir")
#: stands for a raw JSON token (NaN, 1e400 …) that json.dumps cannot write itself
RAW = "@@RAW@@"

HOSTILE_NAME = ("x <!-- leaderboard:end --> <script>alert(1)</script> | `code` [link](http://e.x) "
                "*b* _i_ &amp; </script><!--")


def valid_doc() -> dict[str, Any]:
    """A complete, schema-valid results document (what `aims score` writes for one config)."""
    bucket = {"miou": 0.5, "n": 3}
    config = {
        "modality": "depth", "miou": 0.5, "image_miou": 0.5, "ci95": [0.4, 0.6],
        "n_images": 2, "n_instances": 4, "n_evaluated": 3, "n_missing": 0, "n_predictions": 3,
        "n_not_evaluated_predictions": 0,
        "by_size": {"small": {"miou": None, "n": 0}, "medium": dict(bucket), "large": {"miou": None, "n": 0}},
        "by_category": {"chair": dict(bucket)},
    }
    return {
        "results_format": 1, "method": "shifted-gt", "model": "oracle",
        "meta": {"method": "shifted-gt", "model": "oracle", "trainable_params": 1234567},
        "protocol": {"name": "aims", "version": "aims-v1", "eps": 0.0, "rules": {"min_area": 100}},
        "split": "test", "toolkit_version": "0.1.0", "created": "2024-05-01T12:00:00+00:00",
        "dataset": {"fingerprint": "sha256:" + "0" * 64, "files": {"depth": {"test-00000.parquet": "1" * 64}}},
        "predictions_format": "rle", "missing_policy": "error", "configs": {"depth": config},
        "headline": {"miou": None, "complete": False,
                     "modalities": {m: (0.5 if m == "depth" else None) for m in HEADLINE},
                     "configs": {m: m for m in HEADLINE}},
        "not_scored": {},
        "bootstrap": {"resamples": 1000, "seed": 0, "unit": "image", "confidence": 0.95},
    }


def dumps(doc: Any, raw: str | None = None) -> str:
    """JSON text of ``doc`` with the value ``RAW`` replaced by the raw token ``raw``."""
    text = json.dumps(doc, indent=1)
    return text if raw is None else text.replace(json.dumps(RAW), raw)


def with_value(path: str, value: Any) -> dict[str, Any]:
    """The valid document with the field at ``a/b/c`` set to ``value``."""
    doc = valid_doc()
    *parents, last = path.split("/")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def text_file(text: str | bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "bad.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path
    return make


def raw_value(path: str, token: str) -> Callable[[Path], Path]:
    return text_file(dumps(with_value(path, RAW), raw=token))


def value(path: str, val: Any) -> Callable[[Path], Path]:
    return text_file(dumps(with_value(path, val)))


def huge_file(folder: Path) -> Path:
    """20 MB on paper, a few bytes on disk (sparse): refused by size before any read."""
    path = folder / "huge.json"
    with path.open("wb") as fh:
        fh.write(b'{"method": "')
        fh.truncate(20 * 1024 * 1024)
    return path


def link_to_dev_zero(folder: Path) -> Path:
    path = folder / "zero.json"
    path.symlink_to("/dev/zero")
    return path


def fifo(folder: Path) -> Path:
    path = folder / "fifo.json"
    os.mkfifo(path)
    return path


def directory(folder: Path) -> Path:
    path = folder / "dir.json"
    path.mkdir()
    return path


def deep_meta(folder: Path) -> Path:
    nested: Any = 1
    for _ in range(60):
        nested = {"a": nested}
    return value("meta/deep", nested)(folder)


def extra_field(folder: Path) -> Path:
    doc = valid_doc()
    doc["sneaky_score"] = 1.0
    return text_file(dumps(doc))(folder)


def bad_config_name(folder: Path) -> Path:
    doc = valid_doc()
    doc["configs"] = {"Depth<b>": doc["configs"]["depth"]}
    return text_file(dumps(doc))(folder)


# (id, how to make the file, words the message must hold)
HOSTILE: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("nan-miou", raw_value("configs/depth/miou", "NaN"), ("configs/depth/miou", "nan")),
    ("infinity-headline", raw_value("headline/modalities/depth", "Infinity"),
     ("headline/modalities/depth", "infinity")),
    ("minus-infinity-ci", raw_value("configs/depth/ci95/0", "-Infinity"), ("configs/depth/ci95/0", "infinity")),
    ("overflow-to-inf", raw_value("configs/depth/image_miou", "1e400"), ("configs/depth/image_miou", "1e400")),
    ("1e308-miou", value("configs/depth/miou", 1e308), ("configs/depth/miou", "maximum")),
    ("1e308-count", value("configs/depth/n_images", 1e308), ("configs/depth/n_images", "maximum")),
    ("negative-params", value("meta/trainable_params", -5), ("meta/trainable_params", "minimum")),
    ("absurd-params", value("meta/trainable_params", 1e15), ("meta/trainable_params", "maximum")),
    ("negative-count", value("configs/depth/by_size/medium/n", -1), ("configs/depth/by_size/medium/n",)),
    ("5000-digit-int", raw_value("bootstrap/seed", "9" * 5000), ("bootstrap/seed", "digits")),
    ("reversed-ci", value("configs/depth/ci95", [0.6, 0.4]), ("configs/depth/ci95", "lower")),
    ("count-above-total", value("configs/depth/n_evaluated", 40), ("configs/depth/n_evaluated", "n_instances")),
    ("5000-char-method", value("method", "a" * 5000), ("method", "5000", "200")),
    ("newline-in-model", value("model", "sam\n| injected | row |"), ("model",)),
    ("long-toolkit-version", value("toolkit_version", "1" * 500), ("toolkit_version",)),
    ("wrong-type-method", value("method", 5), ("method", "string")),
    ("wrong-type-count", value("configs/depth/n_images", "2"), ("configs/depth/n_images", "integer")),
    ("modality-not-in-enum", value("configs/depth/modality", "x-ray"), ("configs/depth/modality", "x-ray")),
    ("config-name-pattern", bad_config_name, ("configs", "depth<b>")),
    ("extra-top-level-field", extra_field, ("sneaky_score",)),
    ("deep-json", text_file("[" * 100_000), ("nest",)),
    ("deep-meta", deep_meta, ("meta/deep", "nest")),
    ("a-million-values", value("meta/blob", [[0] * 50_000 for _ in range(25)]), ("1,000,000", "values")),
    ("a-huge-array", value("meta/blob", [0] * 150_000), ("meta/blob", "150000 items")),
    ("not-json", text_file("method: shifted-gt\n"), ("json", "line 1")),
    ("not-utf8", text_file(b'{"method": "\xff\xfe"}'), ("utf-8",)),
    ("top-level-array", text_file("[]"), ("object",)),
    ("20-mb-file", huge_file, ("16 mib", "huge.json")),
    ("symlink-to-dev-zero", link_to_dev_zero, ("regular file", "character device")),
    ("fifo", fifo, ("regular file", "fifo")),
    ("directory", directory, ("dir.json", "directory")),
]


@pytest.mark.parametrize("make, words", [pytest.param(m, w, id=i) for i, m, w in HOSTILE])
def test_add_refuses_hostile_results_file(sandbox: Sandbox, make, words):
    inputs = sandbox.allowed / "input"
    inputs.mkdir()
    bad = make(inputs)
    results = sandbox.allowed / "results"
    done = run_aims("leaderboard", "add", bad, "--results", results)
    done.assert_user_error(*words)
    assert len(done.output) < 5000, f"{len(done.output)}-character message"
    assert "a" * 300 not in done.output and "9" * 300 not in done.output
    assert not results.exists() or not any(results.iterdir()), sorted(results.iterdir())
    if bad.is_symlink():  # the test's own bait link, not something the command left
        bad.unlink()
    sandbox.assert_nothing_outside()


def test_the_valid_document_is_accepted(sandbox: Sandbox):
    """The base every hostile case starts from is itself valid: the refusals above are
    about the one change each makes."""
    good = text_file(dumps(valid_doc()))(sandbox.allowed)
    done = run_aims("leaderboard", "add", good, "--results", sandbox.allowed / "results")
    assert done.returncode == 0, done.output
    assert [p.name for p in (sandbox.allowed / "results").iterdir()] == ["shifted-gt--oracle--aims-v1.json"]
    sandbox.assert_nothing_outside()


def test_build_refuses_a_hostile_file_already_in_the_results_folder(sandbox: Sandbox):
    results = sandbox.allowed / "results"
    results.mkdir()
    raw_value("configs/depth/miou", "NaN")(results)
    site = sandbox.allowed / "site"
    done = run_aims("leaderboard", "build", "--results", results, "--out", site)
    done.assert_user_error("bad.json", "configs/depth/miou")
    assert not site.exists()
    sandbox.assert_nothing_outside()


def test_build_refuses_out_that_is_a_file(sandbox: Sandbox):
    out = sandbox.allowed / "site"
    out.write_text("my notes\n")
    done = run_aims("leaderboard", "build", "--results", sandbox.allowed / "results", "--out", out)
    done.assert_user_error("site", "is a file")
    assert out.read_text() == "my notes\n"
    sandbox.assert_nothing_outside()


def test_add_refuses_results_folder_that_is_a_file(sandbox: Sandbox):
    good = text_file(dumps(valid_doc()))(sandbox.allowed)
    results = sandbox.allowed / "results"
    results.write_text("not a folder\n")
    done = run_aims("leaderboard", "add", good, "--results", results)
    done.assert_user_error("results", "is a file")
    assert results.read_text() == "not a folder\n"
    sandbox.assert_nothing_outside()


def test_build_never_writes_through_a_link_in_the_site_folder(sandbox: Sandbox):
    """A planted link where a copied results file or leaderboard.md goes must be replaced,
    not written through (plain copies follow links)."""
    results = sandbox.allowed / "results"
    good = text_file(dumps(valid_doc()))(sandbox.allowed)
    assert run_aims("leaderboard", "add", good, "--results", results).returncode == 0
    site = sandbox.allowed / "site"
    (site / "results").mkdir(parents=True)
    bait = sandbox.outside / "bait.txt"
    (site / "results" / "shifted-gt--oracle--aims-v1.json").symlink_to(bait)
    (site / "leaderboard.md").symlink_to(bait)
    done = run_aims("leaderboard", "build", "--results", results, "--out", site)
    assert done.returncode == 0, done.output
    assert bait.read_text() == "do not touch\n"
    copied = site / "results" / "shifted-gt--oracle--aims-v1.json"
    assert not copied.is_symlink() and json.loads(copied.read_text())["method"] == "shifted-gt"
    sandbox.assert_nothing_outside()


def _cells(row: str) -> list[str]:
    """Cells of a Markdown table row, split on pipes that are not escaped."""
    import re

    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def test_hostile_names_are_escaped_and_the_readme_does_not_grow(sandbox: Sandbox):
    """A method name holding the README's end marker, a script and Markdown syntax is
    allowed (it is just a name), shown literally, and cannot break the README block."""
    doc = valid_doc()
    doc["method"] = doc["meta"]["method"] = HOSTILE_NAME
    doc["model"] = doc["meta"]["model"] = "<!-- leaderboard:start --> m|odel"
    good = text_file(dumps(doc))(sandbox.allowed)
    results, site = sandbox.allowed / "results", sandbox.allowed / "site"
    added = run_aims("leaderboard", "add", good, "--results", results)
    assert added.returncode == 0, added.output
    readme = sandbox.allowed / "README.md"
    readme.write_text("intro\n<!-- leaderboard:start -->\nold\n<!-- leaderboard:end -->\noutro\n")

    first = run_aims("leaderboard", "build", "--results", results, "--out", site, "--readme", readme)
    assert first.returncode == 0, first.output
    after_first = readme.read_text()
    second = run_aims("leaderboard", "build", "--results", results, "--out", site, "--readme", readme)
    assert second.returncode == 0, second.output
    assert readme.read_text() == after_first
    assert after_first.count("<!-- leaderboard:start -->") == 1
    assert after_first.count("<!-- leaderboard:end -->") == 1
    assert after_first.startswith("intro\n") and after_first.endswith("<!-- leaderboard:end -->\noutro\n")

    table = (site / "leaderboard.md").read_text()
    assert "<script" not in table and "<!--" not in table
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    row = next(line for line in table.splitlines() if "alert(1)" in line)
    assert len(_cells(row)) == len(_cells(header))

    page = (site / "index.html").read_text()
    assert "<script>alert" not in page and "</script><!--" not in page
    assert page.count("<script>") == 1 and page.count("<!--") == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    sandbox.assert_nothing_outside()


def test_build_refuses_a_link_in_the_results_folder(sandbox: Sandbox):
    """A valid results file outside, linked into the results folder: build refuses the
    link (input folders hold regular files) instead of publishing whatever it points to."""
    target = text_file(dumps(valid_doc()))(sandbox.outside)
    results = sandbox.allowed / "results"
    results.mkdir()
    (results / "linked.json").symlink_to(target)
    sandbox.snapshot()
    done = run_aims("leaderboard", "build", "--results", results, "--out", sandbox.allowed / "site")
    done.assert_user_error("linked.json", "symbolic link")
    (results / "linked.json").unlink()  # the harness refuses links left pointing outside
    sandbox.assert_nothing_outside()
