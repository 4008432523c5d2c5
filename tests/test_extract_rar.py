"""RAR extraction on the real sample archives of the rarfile project (read in place from
shared/data/rar): good archives extract exactly, hostile ones are refused before anything
is written. Decoding compressed members needs bsdtar (libarchive-tools) and/or unar."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import rarfile

from aims.errors import AimsError, UnsafeArchiveError
from aims.extract import MARKER, _plan, _RarBackend, archive_kind, rar_tool, safe_extract
from conftest import require_shared

STEST = b"".join(f"{i:03d}\n".encode() for i in range(512))  # 2048 bytes


def _needs(tool: str) -> None:
    exe = rarfile.BSDTAR_TOOL if tool == "bsdtar" else rarfile.UNAR_TOOL
    if not shutil.which(exe):
        pkg = {"bsdtar": "libarchive-tools", "unar": "unar"}[tool]
        pytest.skip(f"{exe} is not installed (Debian package {pkg})")


def files_under(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


@pytest.fixture
def box(tmp_path: Path) -> Path:
    b = tmp_path / "box" / "inner"
    b.mkdir(parents=True)
    return b


@pytest.mark.parametrize(
    "name, tool, expected",
    [
        ("rar5-solid.rar", "bsdtar", {"stest1.txt": STEST, "stest2.txt": STEST}),
        ("rar3-solid.rar", "unar", {"stest1.txt": STEST, "stest2.txt": STEST}),
        ("unicode.rar", "unar", {"уииоотивл.txt": b"1\n", "𝐀𝐁𝐁𝐂.txt": b"1\n"}),
    ],
)
def test_real_rar_archives_extract_exactly(box: Path, name: str, tool: str, expected: dict) -> None:
    archive = require_shared("rar", name)
    _needs(tool)
    assert archive_kind(archive) == "rar"
    assert rar_tool(archive) == tool  # RAR 5 -> bsdtar, RAR 4 -> unar: deterministic
    target = safe_extract(archive, box / "out")
    got = files_under(target)
    assert got.pop(MARKER)
    assert got == expected
    assert sorted(p.name for p in box.iterdir()) == ["out"]  # no temporary folder left


def test_evil_symlink_traversal_is_refused_and_nothing_is_written(box: Path) -> None:
    archive = require_shared("rar", "rar5-evil-symlink-traversal.rar")
    with pytest.raises(UnsafeArchiveError, match=r"'up' is a symlink pointing outside") as err:
        safe_extract(archive, box / "out")
    assert "Nothing was extracted" in str(err.value)
    # nothing at all: no target, no temporary folder, no pwned.txt beside or above
    assert list(box.iterdir()) == []
    assert [p.name for p in box.parent.iterdir()] == ["inner"]
    assert [p.name for p in box.parent.parent.iterdir()] == ["box"]
    assert not list(box.parent.parent.rglob("pwned.txt"))


def test_symlink_archive_inside_link_allowed_outside_link_refused(box: Path) -> None:
    """Policy (same as tar/zip): a symlink whose target stays inside the folder is kept as
    a symlink; one that points outside refuses the whole archive before writing."""
    archive = require_shared("rar", "rar5-symlink-unix.rar")
    with pytest.raises(UnsafeArchiveError, match=r"'random_link' is a symlink pointing outside"):
        safe_extract(archive, box / "out")
    assert list(box.iterdir()) == []
    backend = _RarBackend(archive)
    try:
        members = {m.name: m for m in backend.members()}
        assert (members["data_link"].kind, members["data_link"].link) == ("symlink", "data.txt")
        assert (members["data.txt"].kind, members["data.txt"].size) == ("file", 5)
        inside = [m for m in backend.members() if m.name != "random_link"]
        steps = _plan(archive, inside)  # validates without writing
        assert [s.dest for s in steps] == [("data_link",), ("data.txt",)]
    finally:
        backend.close()


def test_missing_decoder_is_a_clear_error_naming_the_debian_packages(box: Path, monkeypatch) -> None:
    archive = require_shared("rar", "rar5-solid.rar")
    monkeypatch.setattr(rarfile, "BSDTAR_TOOL", "/nonexistent/bsdtar")
    monkeypatch.setattr(rarfile, "UNAR_TOOL", "/nonexistent/unar")
    assert rar_tool(archive) is None
    with pytest.raises(AimsError, match=r"libarchive-tools.*unar") as err:
        safe_extract(archive, box / "out")
    assert str(archive) in str(err.value)
    assert list(box.iterdir()) == []


def test_stored_members_need_no_decoder(box: Path, monkeypatch) -> None:
    """An archive whose files are all stored (uncompressed) is read by rarfile alone."""
    archive = require_shared("rar", "rar5-symlink-unix.rar")
    monkeypatch.setattr(rarfile, "BSDTAR_TOOL", "/nonexistent/bsdtar")
    monkeypatch.setattr(rarfile, "UNAR_TOOL", "/nonexistent/unar")
    backend = _RarBackend(archive)
    try:
        member = next(m for m in backend.members() if m.name == "data.txt")
        with backend.open_member(member) as fh:
            assert fh.read() == b"data\n"
    finally:
        backend.close()
