"""Safe extraction: hostile archives are refused before anything is written; good ones
extract exactly, atomically, once."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from aims.errors import AimsError, UnsafeArchiveError
from aims.extract import MARKER, archive_kind, safe_extract

GOOD = {
    "data/a.txt": b"alpha\n",
    "data/sub/b.bin": bytes(range(256)) * 50,
    "data/empty.txt": b"",
}


# --------------------------------------------------------------------------- builders


def make_zip(path: Path, files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar_mode(path: Path) -> str:
    return {".gz": "w:gz", ".tgz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}.get(path.suffix, "w")


def make_tar(path: Path, entries: list[tuple]) -> Path:
    """entries: ("file", name, bytes) | ("dir", name) | ("sym", name, target) |
    ("hard", name, target) | ("fifo", name) | ("chr", name)"""
    with tarfile.open(path, _tar_mode(path)) as tf:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = rest[0]
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                info.linkname = rest[0]
            tf.addfile(info)
    return path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A folder holding only the archive's extraction target; everything written
    outside the target would show up as an extra entry here or above."""
    b = tmp_path / "box" / "inner"
    b.mkdir(parents=True)
    return b


def tree(root: Path) -> dict[str, bytes | str]:
    """Relative path -> file bytes, or "->target" for symlinks, "/" for folders."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "->" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "/"
            else:
                out[rel] = p.read_bytes()
    return out


def assert_nothing_written(box: Path, archive: Path) -> None:
    # Only the archive is in the box; nothing beside it (no target, no temp folder) and
    # nothing in the two folders above.
    assert sorted(p.name for p in box.iterdir()) == [archive.name]
    assert sorted(p.name for p in box.parent.iterdir()) == ["inner"]
    assert sorted(p.name for p in box.parent.parent.iterdir()) == ["box"]


# --------------------------------------------------------------------------- good archives


@pytest.mark.parametrize("name", ["good.zip", "good.tar", "good.tar.gz", "good.tgz", "good.tar.bz2", "good.tar.xz"])
def test_good_archive_extracts_exactly(box: Path, name: str) -> None:
    archive = box / name
    if name.endswith(".zip"):
        make_zip(archive, GOOD)
    else:
        make_tar(archive, [("dir", "data"), *[("file", n, d) for n, d in GOOD.items()]])
    target = box / "out"
    assert safe_extract(archive, target) == target
    got = tree(target)
    assert json.loads(got.pop(MARKER))["archive"] == name
    got = {k: v for k, v in got.items() if v != "/"}
    assert got == GOOD
    # no temporary folder left beside it
    assert sorted(p.name for p in box.iterdir()) == sorted([name, "out"])


def test_kind_detected_by_content_not_extension(box: Path) -> None:
    z = make_zip(box / "download.php", GOOD)
    t = make_tar(box / "file.zip", [("file", "x.txt", b"x")])  # a tar misnamed .zip
    tgz = make_tar(box / "blob.tar.gz", [("file", "x.txt", b"x")])
    tgz = tgz.rename(box / "blob.bin")
    assert (archive_kind(z), archive_kind(t), archive_kind(tgz)) == ("zip", "tar", "tar")
    safe_extract(t, box / "t")
    assert (box / "t" / "x.txt").read_bytes() == b"x"
    safe_extract(z, box / "z")
    assert (box / "z" / "data" / "a.txt").read_bytes() == b"alpha\n"


def test_internal_symlinks_and_hardlinks_are_kept_inside(box: Path) -> None:
    archive = make_tar(
        box / "links.tar",
        [
            ("dir", "d"),
            ("file", "d/real.txt", b"real"),
            ("sym", "d/link.txt", "real.txt"),
            ("sym", "alias", "d"),
            ("hard", "copy.txt", "d/real.txt"),
            ("file", "a/../dotdot_ok.txt", b"lexically inside"),
        ],
    )
    target = safe_extract(archive, box / "out")
    assert os.readlink(target / "d" / "link.txt") == "real.txt"
    assert (target / "d" / "link.txt").read_bytes() == b"real"
    assert os.readlink(target / "alias") == "d"
    assert (target / "copy.txt").read_bytes() == b"real"
    assert not (target / "copy.txt").is_symlink()
    assert (target / "dotdot_ok.txt").read_bytes() == b"lexically inside"


def test_member_through_an_inside_link_is_refused(box: Path) -> None:
    """Policy since issue 9: no member may be written through a link of the archive, even
    one pointing inside (a later link could change where it leads)."""
    archive = make_tar(box / "alias.tar", [("dir", "d"), ("sym", "alias", "d"),
                                           ("file", "alias/through.txt", b"via alias")])
    with pytest.raises(UnsafeArchiveError, match=r"'alias/through.txt' would be written through the symlink 'alias'"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


def test_reextract_is_skipped_when_marker_matches(box: Path) -> None:
    archive = make_zip(box / "good.zip", GOOD)
    target = safe_extract(archive, box / "out")
    sentinel = target / "data" / "a.txt"
    sentinel.write_bytes(b"touched")  # would be overwritten by a re-extraction
    safe_extract(archive, target)
    assert sentinel.read_bytes() == b"touched"


def test_fingerprint_in_marker(box: Path) -> None:
    archive = make_zip(box / "good.zip", GOOD)
    target = safe_extract(archive, box / "out", fingerprint="sha256:abc")
    assert json.loads((target / MARKER).read_text())["fingerprint"] == "sha256:abc"
    (target / "data" / "a.txt").write_bytes(b"touched")
    os.utime(archive, ns=(1, 1))  # mtime change is irrelevant with a fingerprint
    safe_extract(archive, target, fingerprint="sha256:abc")
    assert (target / "data" / "a.txt").read_bytes() == b"touched"
    safe_extract(archive, target, fingerprint="sha256:def")  # another archive: redone
    assert (target / "data" / "a.txt").read_bytes() == b"alpha\n"


def test_changed_archive_replaces_previous_extraction(box: Path) -> None:
    archive = make_zip(box / "good.zip", GOOD)
    target = safe_extract(archive, box / "out")
    make_zip(archive, {"new.txt": b"new"})
    os.utime(archive, ns=(10**18, 10**18))
    safe_extract(archive, target)
    assert {k for k in tree(target)} == {"new.txt", MARKER}
    assert sorted(p.name for p in box.iterdir()) == ["good.zip", "out"]


def test_foreign_nonempty_target_is_not_replaced(box: Path) -> None:
    archive = make_zip(box / "good.zip", GOOD)
    target = box / "out"
    target.mkdir()
    (target / "mine.txt").write_text("user data")
    with pytest.raises(AimsError, match="not extracted by AIMS"):
        safe_extract(archive, target)
    assert (target / "mine.txt").read_text() == "user data"


def test_leftover_temp_folder_does_not_count_as_done(box: Path) -> None:
    """An interrupted run leaves only a hidden temp folder; the next run extracts fully."""
    archive = make_zip(box / "good.zip", GOOD)
    (box / ".out.extracting-crashed").mkdir()
    target = safe_extract(archive, box / "out")
    assert (target / MARKER).exists()


def test_interrupted_extraction_leaves_no_final_folder(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aims.extract as ex

    archive = make_zip(box / "good.zip", GOOD)
    calls = {"n": 0}
    real = ex._write_file

    def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(ex, "_write_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, box / "out")
    assert sorted(p.name for p in box.iterdir()) == ["good.zip"]


# --------------------------------------------------------------------------- corrupt


@pytest.mark.parametrize("name", ["good.zip", "good.tar", "good.tar.gz", "good.tar.xz"])
def test_truncated_archive(box: Path, name: str) -> None:
    archive = box / name
    big = {"data/big.bin": os.urandom(200_000), **GOOD}
    if name.endswith(".zip"):
        make_zip(archive, big)
    else:
        make_tar(archive, [("file", n, d) for n, d in big.items()])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(AimsError) as exc:
        safe_extract(archive, box / "out")
    msg = str(exc.value)
    assert str(archive) in msg and "download it again" in msg
    assert not isinstance(exc.value, UnsafeArchiveError)
    assert_nothing_written(box, archive)


def test_not_an_archive(box: Path) -> None:
    page = box / "data.zip"
    page.write_text("<html>Quota exceeded</html>")
    with pytest.raises(AimsError, match="not a zip or tar archive"):
        safe_extract(page, box / "out")
    assert_nothing_written(box, page)


def test_truncated_rar_is_recognised_and_refused_as_corrupt(box: Path) -> None:
    # RAR is supported (see test_extract_rar.py); a signature followed by garbage is a
    # corrupt download, reported as such
    rar = box / "RGB-P-dataset.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + b"\x00" * 100)
    assert archive_kind(rar) == "rar"
    with pytest.raises(AimsError, match="corrupt or truncated"):
        safe_extract(rar, box / "out")
    assert_nothing_written(box, rar)


def test_corrupt_member_crc_in_zip(box: Path) -> None:
    archive = make_zip(box / "x.zip", {"a.txt": b"A" * 5000})
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("a.txt")
        # compressed data starts after the local header (30 bytes + name + extra)
        start = info.header_offset + 30 + len("a.txt")
    data = bytearray(archive.read_bytes())
    data[start + 1] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(AimsError, match="corrupt"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


# --------------------------------------------------------------------------- hostile

HOSTILE_TARS = {
    "absolute": [("file", "/tmp/aims-evil-abs.txt", b"x")],
    "dotdot": [("file", "../evil.txt", b"x")],
    "nested_dotdot": [("dir", "a"), ("file", "a/../../evil.txt", b"x")],
    "symlink_etc_passwd": [("sym", "passwd", "/etc/passwd")],
    "symlink_outside": [("sym", "out", "../outside")],
    "symlink_deep_outside": [("dir", "a"), ("sym", "a/b", "../../x")],
    "hardlink_outside": [("hard", "h", "../outside.txt")],
    "hardlink_absolute": [("hard", "h", "/etc/passwd")],
    "symlink_dir_then_file": [("sym", "up", ".."), ("file", "up/pwned.txt", b"x")],
    "symlink_chain": [("sym", "a", "."), ("sym", "b", "a/.."), ("file", "b/pwned.txt", b"x")],
    "symlink_then_dotdot": [("dir", "d"), ("sym", "d/here", "."), ("file", "d/here/../../pwned.txt", b"x")],
    "symlink_loop": [("sym", "l1", "l2"), ("sym", "l2", "l1"), ("file", "l1/x", b"x")],
    "fifo": [("fifo", "pipe")],
    "device": [("chr", "dev")],
    "backslash": [("file", "..\\evil.txt", b"x")],
}

# The error names the first member that is unsafe, which is sometimes a link before the
# member that would write through it.
# Since issue 9 a link naming another link is refused itself, so the loop fails at l1.
FIRST_OFFENDER = {"symlink_dir_then_file": "up", "symlink_chain": "b", "symlink_loop": "l1"}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_is_refused_before_writing(box: Path, case: str) -> None:
    # A good member first: it must not be written either (validation precedes writing).
    archive = make_tar(box / f"{case}.tar", [("file", "innocent.txt", b"ok"), *HOSTILE_TARS[case]])
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(archive, box / "out")
    msg = str(exc.value)
    offending = FIRST_OFFENDER.get(case, HOSTILE_TARS[case][-1][1])
    assert str(archive) in msg and repr(offending) in msg
    assert_nothing_written(box, archive)
    assert not Path("/tmp/aims-evil-abs.txt").exists()


HOSTILE_ZIPS = {
    "absolute": ({"/tmp/aims-evil-abs.txt": b"x"}, None),
    "dotdot": ({"../evil.txt": b"x"}, None),
    "nested_dotdot": ({"a/../../evil.txt": b"x"}, None),
    "drive_letter": ({"C:/evil.txt": b"x"}, None),
    "backslash": ({"..\\evil.txt": b"x"}, None),
    "symlink_outside": ({}, {"out": "../outside"}),
    "symlink_etc_passwd": ({}, {"passwd": "/etc/passwd"}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip_is_refused_before_writing(box: Path, case: str) -> None:
    files, links = HOSTILE_ZIPS[case]
    archive = make_zip(box / f"{case}.zip", {"innocent.txt": b"ok", **files}, symlinks=links)
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(archive, box / "out")
    offending = next(iter(links)) if links else next(iter(files))
    assert str(archive) in str(exc.value) and repr(offending) in str(exc.value)
    assert_nothing_written(box, archive)


def test_zip_symlink_dir_then_file(box: Path) -> None:
    """zipfile itself would write `up` as a text file; we see the link and refuse it."""
    archive = box / "up.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("up")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "..")
        zf.writestr("up/pwned.txt", b"x")
    with pytest.raises(UnsafeArchiveError, match="'up'"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


def test_zip_internal_symlink_is_created_as_link(box: Path) -> None:
    archive = make_zip(box / "l.zip", {"d/real.txt": b"real"}, symlinks={"d/link.txt": "real.txt"})
    target = safe_extract(archive, box / "out")
    assert os.readlink(target / "d" / "link.txt") == "real.txt"


def test_runtime_check_catches_what_validation_would_miss(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Second line of defence: with validation disabled (a naive plan that ignores links),
    writing through `up -> ..` is still refused, and nothing lands outside."""
    import aims.extract as ex

    def naive_plan(archive: Path, members: list) -> list:
        return [ex._Step(m, tuple(ex._split(m.name))) for m in members]

    monkeypatch.setattr(ex, "_plan", naive_plan)
    archive = make_tar(box / "up.tar", [("sym", "up", ".."), ("file", "up/pwned.txt", b"x")])
    with pytest.raises(UnsafeArchiveError, match="up/pwned.txt"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


# --------------------------------------------------------------------------- issue 9


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_runs_are_removed(box: Path) -> None:
    """A killed run leaves `.out.extracting-<pid>-<hex>` (and, mid-swap, `.out.old-…`);
    the next extraction into the same folder removes those whose process is gone, and
    keeps those of live processes and anything not named like ours."""
    archive = make_zip(box / "good.zip", GOOD)
    dead, live = _dead_pid(), os.getpid()
    leftovers = {
        f".out.extracting-{dead}-0123abcd": True,
        f".other.old-{dead}-89abcdef": True,
        f".out.extracting-{live}-0123abcd": False,
        ".out.extracting-crashed": False,
        f"out.extracting-{dead}-0123abcd": False,  # not hidden: not ours
    }
    for name in leftovers:
        (box / name).mkdir()
        (box / name / "partial.bin").write_bytes(b"x" * 100)
    (box / f".link.extracting-{dead}-00000000").symlink_to(box / ".out.extracting-crashed")
    safe_extract(archive, box / "out")
    for name, removed in leftovers.items():
        assert (box / name).exists() != removed, name
    assert not os.path.lexists(box / f".link.extracting-{dead}-00000000")
    assert (box / ".out.extracting-crashed" / "partial.bin").exists()  # link not followed


def test_temporary_name_records_the_pid(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aims.extract as ex

    seen = []
    real = ex._write

    def spy(backend, archive, plan, root, **kw):  # type: ignore[no-untyped-def]
        seen.append(root.name)
        return real(backend, archive, plan, root, **kw)

    monkeypatch.setattr(ex, "_write", spy)
    safe_extract(make_zip(box / "good.zip", GOOD), box / "out")
    assert len(seen) == 1 and seen[0].startswith(f".out.extracting-{os.getpid()}-")


def _naive_plan(archive: Path, members) -> list:  # type: ignore[no-untyped-def]
    import aims.extract as ex

    return [ex._Step(m, tuple(ex._split(m.name))) for m in members]


def test_final_walk_refuses_links_resolving_outside(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last line of defence: with validation disabled, the chain `e0 -> e1/..`, `e1 -> .`
    is written (links are created, never followed), and the walk over the written tree
    finds e0 resolving outside and removes everything."""
    import aims.extract as ex

    monkeypatch.setattr(ex, "_plan", _naive_plan)
    archive = make_tar(box / "chain.tar", [("sym", "e0", "e1/.."), ("sym", "e1", ".")])
    with pytest.raises(UnsafeArchiveError, match="link 'e0'"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


def test_marker_is_never_written_through_a_link(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With validation disabled, a `.aims-extracted -> victim` link is replaced by the
    marker (atomic rename), and `victim` is neither created nor written."""
    import aims.extract as ex

    monkeypatch.setattr(ex, "_plan", _naive_plan)
    archive = make_tar(box / "m.tar", [("file", "victim", b"keep"), ("sym", MARKER, "victim")])
    target = safe_extract(archive, box / "out")
    assert not (target / MARKER).is_symlink()
    assert json.loads((target / MARKER).read_text())["archive"] == "m.tar"
    assert (target / "victim").read_bytes() == b"keep"


def test_reserved_marker_name_refused_case_insensitively(box: Path) -> None:
    archive = make_tar(box / "m.tar", [("file", "./.AIMS-Extracted", b"{}")])
    with pytest.raises(UnsafeArchiveError, match="reserves"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)
    # deeper down the name is an ordinary file
    ok = make_tar(box / "ok.tar", [("file", "sub/.aims-extracted", b"{}")])
    assert (safe_extract(ok, box / "ok") / "sub" / MARKER).read_bytes() == b"{}"


def test_links_to_links_refused_in_either_order(box: Path) -> None:
    for i, entries in enumerate([
        [("file", "f", b"x"), ("sym", "a", "f"), ("sym", "b", "a")],   # b names a, declared before
        [("file", "f", b"x"), ("sym", "b", "a"), ("sym", "a", "f")],   # … declared after
    ]):
        archive = make_tar(box / f"l{i}.tar", entries)
        with pytest.raises(UnsafeArchiveError, match="'b' is a symlink whose target 'a'"):
            safe_extract(archive, box / "out")
        archive.unlink()
    assert sorted(box.iterdir()) == []


def test_symlink_target_split_like_the_kernel(box: Path) -> None:
    """A backslash is an ordinary character in a link target: `x\\y/../..` climbs two
    levels from the link's folder, i.e. outside."""
    archive = make_tar(box / "bs.tar", [("sym", "l", "x\\y/../..")])
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(archive, box / "out")


def test_limits_from_environment_and_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from aims.extract import DEFAULT_LIMITS, current_limits, extraction_limits

    monkeypatch.delenv("AIMS_MAX_EXTRACT_GB", raising=False)
    monkeypatch.delenv("AIMS_MAX_EXTRACT_RATIO", raising=False)
    assert current_limits() == DEFAULT_LIMITS
    assert (DEFAULT_LIMITS.max_bytes, DEFAULT_LIMITS.max_ratio) == (64 << 30, 200.0)
    monkeypatch.setenv("AIMS_MAX_EXTRACT_GB", "0.5")
    monkeypatch.setenv("AIMS_MAX_EXTRACT_RATIO", "inf")
    assert (current_limits().max_bytes, current_limits().max_ratio) == (1 << 29, None)
    with extraction_limits(max_gb=2) as lim:  # flag wins over the variable; ratio kept
        assert (lim.max_bytes, lim.max_ratio) == (2 << 30, None)
        with extraction_limits(max_ratio=50, max_bytes=None) as inner:
            assert (inner.max_bytes, inner.max_ratio) == (2 << 30, 50.0)
        assert current_limits() is lim
    assert current_limits().max_bytes == 1 << 29
    monkeypatch.setenv("AIMS_MAX_EXTRACT_GB", "lots")
    with pytest.raises(AimsError, match="AIMS_MAX_EXTRACT_GB.*positive number"):
        current_limits()


def test_quote_keeps_messages_short() -> None:
    from aims.extract import quote

    assert quote("abc") == "'abc'"
    long = quote("x" * 1_000_000)
    assert len(long) < 260 and "1,000,000 characters" in long


def test_bytes_are_counted_while_writing(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Second line against bombs: with the declared-size check disabled (a naive plan),
    the bytes actually written still stop the extraction at the limit, and the partial
    folder is removed."""
    import aims.extract as ex
    from aims.extract import ExtractLimitError, extraction_limits

    monkeypatch.setattr(ex, "_plan", _naive_plan)
    archive = make_zip(box / "big.zip", {"a.bin": bytes(3 << 20), "b.bin": bytes(3 << 20)})
    with extraction_limits(max_bytes=4 << 20, max_ratio=float("inf")):
        with pytest.raises(ExtractLimitError, match="has written at least"):
            safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)


def test_member_producing_more_than_declared_is_refused(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import aims.extract as ex

    def understated(archive: Path, members) -> list:  # type: ignore[no-untyped-def]
        return [ex._Step(dataclasses.replace(m, size=10), tuple(ex._split(m.name))) for m in members]

    monkeypatch.setattr(ex, "_plan", understated)
    archive = make_tar(box / "liar.tar", [("file", "x.bin", bytes(5000))])
    with pytest.raises(UnsafeArchiveError, match="more than the 10 bytes its header declares"):
        safe_extract(archive, box / "out")
    assert_nothing_written(box, archive)
