"""``aims prepare`` lists every source file at once, before any work: ``--modality all``
with sources missing prints one checklist and exits 2; ``--check`` prints only the
checklist (0 when everything is here, 2 otherwise); ``--help`` lists every config.
Everything listed comes from the records."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aims.converters import registry
from aims.converters.record import (
    CONNECTED_COMPONENTS,
    RGB8,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceFile,
    SourceRecord,
)
from aims.source_checklist import BAD, DOWNLOADS, MISSING, OPTIONAL, PRESENT, VERIFIED, source_checklist

PAYLOAD = b"sonar source file\n" * 500


def run_aims(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIMS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "aims", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def declared_files() -> list[tuple[str, SourceFile]]:
    return [(name, f) for name, record in registry.source_records().items() for f in record.files]


def test_prepare_all_lists_every_missing_file_at_once_before_any_work(tmp_path):
    home, out = tmp_path / "home", tmp_path / "dataset"
    result = run_aims("prepare", "--modality", "all", "--out", str(out), "--no-progress", home=home)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    text = result.stdout
    for source, file in declared_files():  # every file of every record, each with its location
        assert f"] {file.name} (" in text, file.name
        assert str(home / "downloads" / source / file.name) in text
        where = file.manual.split("(")[0].strip() if file.manual else file.url
        assert where and where[:60] in text, file.name
    assert "nirscene1.zip" in text and "[optional] nirscene1.zip" in text
    manual = [f.name for _, f in declared_files() if f.is_manual and not f.optional]
    assert text.count(f"[{MISSING}]") == len(manual) >= 4
    for name in manual:  # … and the one paragraph on stderr names each of them
        assert name in " ".join(result.stderr.split())
    assert not out.exists()  # nothing was converted or downloaded
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_check_exits_2_when_files_are_missing_and_lists_the_sizes(tmp_path):
    result = run_aims("prepare", "--check", "--modality", "depth", home=tmp_path / "home")
    assert result.returncode == 2
    nyu = registry.source_record("nyuv2")
    for file in nyu.files:
        assert file.name in result.stdout
    labeled = next(f for f in nyu.files if f.size)
    assert f"{labeled.size:,} bytes" in result.stdout  # the published size
    assert f"[{DOWNLOADS}]" in result.stdout  # not here yet, but prepare would fetch it
    assert "depth" in result.stdout and "polarization" not in result.stdout  # only the sources asked for


def test_check_of_a_damaged_cached_file_says_bad(tmp_path):
    home = tmp_path / "home"
    zju = registry.source_record("zju_rgbp")
    (home / "downloads" / "zju_rgbp").mkdir(parents=True)
    (home / "downloads" / "zju_rgbp" / zju.files[0].name).write_bytes(b"not the archive")
    result = run_aims("prepare", "--check", "--modality", "polarization-zju", home=home)
    assert result.returncode == 2
    assert f"[{BAD}] {zju.files[0].name}" in result.stdout
    assert "checksum" in result.stdout


def test_check_with_the_miniature_sources_exits_0(tmp_path):
    sources = tmp_path / "sources"
    for name in ("thermal_glass", "ivrg_nir"):
        registry.converter(name).write_miniature(sources / name)
    result = run_aims("prepare", "--check", "--modality", "thermal", "--modality", "nir", "--source",
                      str(sources), home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[{MISSING}]" not in result.stdout
    assert "nirscene1.zip" in result.stdout  # the miniature ships it next to the repack
    assert f"[{PRESENT}] nirscene1.zip" in result.stdout


@pytest.fixture
def sonar(tmp_path, monkeypatch):
    """A registered source with a pinned file, an unpinned file and an optional one."""
    monkeypatch.setenv("AIMS_HOME", str(tmp_path / "home"))
    config = ConfigRecord(
        name="sonar-check", description="Sonar returns.",
        columns=(RGB8, ColumnRecord("echo", "16-bit greyscale PNG (uint16)", "echo strength", "grey_unit", 1)),
        modalities=(ModalityRecord("sonar-check", ("echo",), "echo / 65535"),))
    record = SourceRecord(
        name="sonar_check", title="Sonar", homepage="", license="other", citation="",
        classes=("background", "fish"), label_encoding="class ids",
        instances=InstanceSource(CONNECTED_COMPONENTS, 8), configs=(config,), converter="nowhere",
        files=(SourceFile("pinned.bin", "https://example.org/pinned.bin",
                          "sha256:" + hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD)),
               SourceFile("unpinned.bin", None, None, manual="ask the authors"),
               SourceFile("extra.zip", "https://example.org/extra.zip", None, optional="more frames")))
    registry.register_source_record(record)
    yield record, tmp_path / "home" / "downloads" / "sonar_check"
    registry.unregister_source("sonar_check")


def states(checklist) -> dict[str, str]:
    return {c.file.name: c.state for c in checklist.files}


def test_states_follow_what_is_on_disk(sonar):
    record, cache = sonar
    groups = {record.name: ["sonar-check"]}
    empty = source_checklist(groups, {record.name: None}, verify=True)
    assert states(empty) == {"pinned.bin": DOWNLOADS, "unpinned.bin": MISSING, "extra.zip": OPTIONAL}
    assert [c.file.name for c in empty.blocking] == ["unpinned.bin"] and not empty.complete

    cache.mkdir(parents=True)
    (cache / "pinned.bin").write_bytes(PAYLOAD)
    (cache / "unpinned.bin").write_bytes(b"whatever the authors sent")
    full = source_checklist(groups, {record.name: None}, verify=True)
    assert states(full) == {"pinned.bin": VERIFIED, "unpinned.bin": PRESENT, "extra.zip": OPTIONAL}
    assert full.complete and not full.blocking
    unpinned = next(c for c in full.files if c.file.name == "unpinned.bin")
    assert hashlib.sha256(b"whatever the authors sent").hexdigest() in unpinned.detail  # to pin it

    (cache / "pinned.bin").write_bytes(PAYLOAD[:-1] + b"X")  # right size, wrong content
    assert states(source_checklist(groups, {record.name: None}, verify=True))["pinned.bin"] == BAD
    (cache / "pinned.bin").write_bytes(PAYLOAD[:10])
    truncated = source_checklist(groups, {record.name: None}, verify=True)
    assert states(truncated)["pinned.bin"] == BAD and "truncated" in truncated.files[0].detail
    # `aims prepare` itself only looks for presence: fetch checks the file when it is used
    assert states(source_checklist(groups, {record.name: None}))["pinned.bin"] == PRESENT


def test_a_source_folder_is_searched_by_file_name(sonar, tmp_path):
    record, _ = sonar
    given = tmp_path / "mine"
    given.mkdir()
    (given / "unpinned.bin").write_bytes(b"x")
    checklist = source_checklist({record.name: ["sonar-check"]}, {record.name: given})
    found = {c.file.name: c for c in checklist.files}
    assert found["unpinned.bin"].state == PRESENT and found["unpinned.bin"].location == given / "unpinned.bin"
    assert found["pinned.bin"].state not in (MISSING, BAD)  # the converter may know the layout
    missing = source_checklist({record.name: ["sonar-check"]}, {record.name: tmp_path / "nowhere"})
    assert {c.file.name for c in missing.blocking} == {"pinned.bin", "unpinned.bin"}


def test_help_lists_every_config_from_the_records(tmp_path):
    result = run_aims("prepare", "--help", home=tmp_path / "home")
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    listed = help_text[help_text.index("Config to build:"):]
    for config in registry.known_configs():
        assert config in listed.split("or all")[0], config
    assert "--check" in help_text
