"""Hostile archives (issue 9, items 1 and 4): each one is built here, fed to the installed
``aims prepare --source ARCHIVE`` (the RGBP-Glass converter extracts any zip or tar it is
given, so every archive reaches ``safe_extract`` through the CLI), and must end with exit
status 2, a message naming the problem, and nothing written outside the sandbox. The
attacks that once wrote outside (link chains, the marker written through a link) are also
run through :func:`aims.extract.safe_extract` directly.

Bombs are built small on disk (long runs of zeros compress a thousandfold) and the limits
are lowered through the environment variables the CLI honours, so no test writes more than
a few MiB even if the check it guards were missing.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from aims.errors import AimsError, UnsafeArchiveError
from aims.extract import MARKER, extraction_limits, safe_extract

from .conftest import Completed, Sandbox, run_aims

MiB = 1 << 20

# --------------------------------------------------------------------------- builders
# An entry is (kind, name, payload): ("file", name, bytes) | ("dir", name, None) |
# ("sym", name, target) | ("hard", name, target) | ("fifo"|"chr", name, None) |
# ("zeros", name, nbytes) — a file of nbytes zero bytes, streamed, never held in memory.


class _Zeros(io.RawIOBase):
    """A readable stream of ``n`` zero bytes."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def build_tar(path: Path, entries: list[tuple], *, mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT,
                      **({"compresslevel": 1} if mode.endswith("gz") else {})) as tf:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            if kind in ("file", "zeros"):
                info.size = len(payload) if kind == "file" else payload
                tf.addfile(info, io.BytesIO(payload) if kind == "file" else _Zeros(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = payload
            tf.addfile(info)
    return path


def build_zip(path: Path, entries: list[tuple]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for kind, name, payload in entries:
            if kind == "file":
                zf.writestr(name, payload)
            elif kind == "zeros":
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w") as out:
                    left = payload
                    while left:
                        out.write(bytes(min(left, MiB)))
                        left -= min(left, MiB)
            elif kind == "dir":
                zf.writestr(name.rstrip("/") + "/", b"")
            elif kind == "sym":
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, payload)
            else:  # pragma: no cover - builder misuse
                raise ValueError(kind)
    return path


def build(path: Path, entries: list[tuple]) -> Path:
    return build_zip(path, entries) if path.suffix == ".zip" else build_tar(
        path, entries, mode="w:gz" if path.name.endswith(".tar.gz") else "w")


def chain(k: int, prefix: str = "e") -> list[tuple]:
    """``e0 -> e1/..``, ``e1 -> e2/..``, …, ``ek -> .``: declared in this order, each link
    looks inside on its own (its next link is not known yet), yet ``e0`` ends ``k``
    folders above the extraction root. k = 1 is the issue's ``a -> b/..``, ``b -> .``."""
    names = [f"{prefix}{i}" for i in range(k + 1)]
    return [("sym", names[j], f"{names[j + 1]}/..") for j in range(k)] + [("sym", names[k], ".")]


def escape_through_chain(k: int, bait: Path) -> str:
    """A link target reaching ``bait`` through ``e0`` of :func:`chain` (k levels up):
    with k ≥ 30 ``e0`` is ``/``, so the absolute path works from any depth."""
    return "e0/" + str(bait).lstrip("/")


# --------------------------------------------------------------------------- harness


def prepare(sandbox: Sandbox, archive: Path, **env: str) -> Completed:
    """``aims prepare`` on ``archive`` with AIMS_HOME inside the sandbox."""
    return run_aims("prepare", "--modality", "polarization", "--source", archive,
                    "--out", sandbox.allowed / "dataset", "--workers", "1",
                    env={"AIMS_HOME": str(sandbox.allowed / "home"), **env})


def assert_refused(sandbox: Sandbox, result: Completed, *words: str) -> None:
    """Exit 2 with a short message naming the problem, nothing outside, and no
    extraction (final or temporary) left in the download cache."""
    result.assert_user_error(*words)
    assert len(result.output) < 3000, f"{len(result.output):,}-character message"
    sandbox.assert_nothing_outside()
    extracted = sandbox.allowed / "home" / "downloads" / "rgbp-glass" / "extracted"
    left = sorted(p.name for p in extracted.iterdir()) if extracted.is_dir() else []
    assert left == [], left


def biggest_file(root: Path) -> int:
    sizes = [p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(sizes, default=0)


def hostile(sandbox: Sandbox, name: str, entries: list[tuple]) -> Path:
    """Build the archive in a folder of its own inside ``allowed``, beside the cache."""
    folder = sandbox.allowed / "archives"
    folder.mkdir(exist_ok=True)
    return build(folder / name, entries)


# --------------------------------------------------------------------------- link chains


@pytest.mark.parametrize("k", [1, 30])
@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_link_chain_through_cli(sandbox: Sandbox, suffix: str, k: int) -> None:
    """The chain alone: once extracted, e0 would point outside the target."""
    archive = hostile(sandbox, f"chain{k}{suffix}", [("file", "train/readme.txt", b"hi"), *chain(k)])
    assert_refused(sandbox, prepare(sandbox, archive), "e0", "symlink")


@pytest.mark.parametrize("k", [1, 30])
@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_link_chain_with_escaping_link_direct(sandbox: Sandbox, suffix: str, k: int) -> None:
    """A link declared *before* the chain, looking inside, that resolves through it to
    the bait path once all links exist; and a file written through it."""
    bait = sandbox.absolute_target
    # k = 1: e0 is the target's parent, allowed/, so ../outside/pwned from there
    target = (("e0/" + os.path.relpath(bait, sandbox.allowed)) if k == 1
              else escape_through_chain(k, bait))
    archive = build(sandbox.allowed / f"esc{k}{suffix}",
                    [("sym", "esc", target), *chain(k)])
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(archive, sandbox.allowed / "out")
    sandbox.assert_nothing_outside()
    assert sorted(p.name for p in sandbox.allowed.iterdir()) == [archive.name]


# --------------------------------------------------------------------------- the marker


@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_marker_written_through_link_direct(sandbox: Sandbox, suffix: str) -> None:
    """The issue's arbitrary write: ``.aims-extracted`` is a link that, through a chain
    declared after it, reaches the bait path; safe_extract then wrote its marker there."""
    rel = os.path.relpath(sandbox.absolute_target, sandbox.allowed)  # ../outside/pwned
    archive = build(sandbox.allowed / f"marker{suffix}", [("sym", MARKER, f"e0/{rel}"), *chain(1)])
    with pytest.raises(UnsafeArchiveError, match=r"\.aims-extracted.*reserves"):
        safe_extract(archive, sandbox.allowed / "out")
    sandbox.assert_nothing_outside()
    assert not sandbox.absolute_target.exists()


@pytest.mark.parametrize("suffix", [".tar", ".zip"])
def test_marker_link_through_30_link_chain_cli(sandbox: Sandbox, suffix: str) -> None:
    archive = hostile(sandbox, f"marker30{suffix}",
                      [("sym", MARKER, escape_through_chain(30, sandbox.absolute_target)), *chain(30)])
    assert_refused(sandbox, prepare(sandbox, archive), MARKER, "reserves")


def test_marker_as_plain_file_cli(sandbox: Sandbox) -> None:
    """A forged marker would make a half archive look complete: the name is reserved."""
    archive = hostile(sandbox, "forged.zip", [("file", MARKER, b'{"archive": "forged.zip"}')])
    assert_refused(sandbox, prepare(sandbox, archive), MARKER, "reserves")


# --------------------------------------------------------------------------- paths and links


CASES: dict[str, tuple[list[tuple], tuple[str, ...]]] = {
    # name -> (entries, words the message must hold)
    "absolute-name.tar": ([("file", "/ABS/outside/pwned", b"x")], ("absolute path",)),
    "dotdot-name.zip": ([("file", "../../../../outside/pwned", b"x")], ("outside the extraction",)),
    "symlink-absolute.tar": ([("sym", "pw", "/ABS/outside/pwned")], ("absolute path",)),
    "hardlink-outside.tar": ([("hard", "h", "../../../../outside/bait.txt")], ("hardlink", "outside")),
    "device.tar": ([("chr", "dev", None)], ("device file",)),
    "fifo.tar": ([("fifo", "pipe", None)], ("fifo",)),
    # b's target names another link: refused whatever a points to
    "link-through-link.tar": ([("dir", "d", None), ("sym", "a", "d"), ("sym", "b", "a/x")],
                              ("'b'", "another symlink", "'a'")),
    # written before the link exists on disk, through it once it does
    "member-through-later-link.zip": ([("file", "sub/pwned.txt", b"x"), ("sym", "sub", ".")],
                                      ("'sub/pwned.txt'", "through the symlink 'sub'")),
    # a file replacing a link of the archive (and, case-insensitively, through it)
    "member-overwrites-link.tar": ([("dir", "d", None), ("sym", "l", "d"), ("file", "l", b"x")],
                                   ("same name", "symlink")),
    "case-folded-link.tar": ([("dir", "d", None), ("sym", "L", "d"), ("file", "l/x.txt", b"x")],
                             ("through the symlink 'L'",)),
    "file-then-dir.tar": ([("file", "a", b"x"), ("file", "a/b", b"y")], ("inside 'a'", "file")),
    "dir-then-file.zip": ([("dir", "a", None), ("file", "a", b"x")], ("same name", "dir")),
    "hardlink-to-symlink.tar": ([("file", "f", b"x"), ("sym", "s", "f"), ("hard", "h", "s")],
                                ("hardlink", "symlink 's'")),
    "link-loop.tar": ([("sym", "l1", "l2"), ("sym", "l2", "l1"), ("file", "l1/x", b"x")],
                      ("'l1'", "another symlink")),
    "nul-in-name.tar": ([("file", "a\x00b" * 60, b"x")], ("NUL byte",)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_paths_cli(sandbox: Sandbox, name: str) -> None:
    entries, words = CASES[name]
    absolute = str(sandbox.absolute_target.parent.parent)  # /…/sandbox
    entries = [(k, n.replace("/ABS", absolute), p.replace("/ABS", absolute) if isinstance(p, str) else p)
               for k, n, p in entries]
    archive = hostile(sandbox, name, [("file", "innocent.txt", b"ok"), *entries])
    assert_refused(sandbox, prepare(sandbox, archive), *words)


@pytest.mark.parametrize("name, words", [
    ("rar5-evil-symlink-traversal.rar", ("'up'", "symlink pointing outside")),
    ("rar5-symlink-unix.rar", ("'random_link'", "symlink pointing outside")),
])
def test_hostile_rar_samples_cli(sandbox: Sandbox, name: str, words: tuple[str, ...]) -> None:
    """The rarfile project's hostile samples (shared data), through the same CLI route."""
    from conftest import require_shared

    folder = sandbox.allowed / "archives"
    folder.mkdir()
    archive = folder / name
    archive.write_bytes(require_shared("rar", name).read_bytes())
    assert_refused(sandbox, prepare(sandbox, archive), *words)


def test_very_long_name_gives_short_message(sandbox: Sandbox) -> None:
    archive = hostile(sandbox, "long-name.zip", [("file", "d/" + "n" * 5000, b"x")])
    assert_refused(sandbox, prepare(sandbox, archive), "5,002 bytes", "limit")


def test_zip_symlink_with_1mib_target(sandbox: Sandbox) -> None:
    """The target is read with a bound (never whole) and quoted short."""
    archive = hostile(sandbox, "long-link.zip", [("sym", "l", "a/" * (MiB // 2))])
    result = prepare(sandbox, archive)
    assert_refused(sandbox, result, "'l'", "1,048,576 bytes", "4,096")
    assert len(result.output) < 1500


def test_tar_symlink_with_100k_target(sandbox: Sandbox) -> None:
    archive = hostile(sandbox, "long-link.tar", [("sym", "l", "a/" * 50_000)])
    result = prepare(sandbox, archive)
    assert_refused(sandbox, result, "'l'", "100,000 bytes", "4,096")


def test_tar_extended_header_over_a_mib_is_not_read(sandbox: Sandbox) -> None:
    archive = hostile(sandbox, "huge-pax.tar", [("sym", "l", "x" * (2 * MiB))])
    assert_refused(sandbox, prepare(sandbox, archive), "extended", "header")


def test_tar_extended_headers_over_128_mib_in_all(sandbox: Sandbox) -> None:
    """Each pax header under the 1 MiB bound, 140 of them: tarfile would keep them all
    in memory while listing; refused once they pass 128 MiB together."""
    folder = sandbox.allowed / "archives"
    folder.mkdir()
    archive = folder / "pax.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tf:
        for i in range(140):
            info = tarfile.TarInfo(f"f{i}")
            info.pax_headers = {"comment": "x" * 1_000_000}
            tf.addfile(info, io.BytesIO(b""))
    assert archive.stat().st_size < 2 * MiB
    assert_refused(sandbox, prepare(sandbox, archive), "extended", "134,217,728 bytes")


# --------------------------------------------------------------------------- bombs

NO_RATIO = {"AIMS_MAX_EXTRACT_RATIO": "inf"}
SMALL = {"AIMS_MAX_EXTRACT_GB": "0.01", **NO_RATIO}  # ~10.7 MB


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz"])
def test_size_bomb_refused_before_writing(sandbox: Sandbox, name: str) -> None:
    archive = hostile(sandbox, name, [("file", "a.txt", b"a"), ("zeros", "zeros.bin", 64 * MiB)])
    assert archive.stat().st_size < 2 * MiB
    result = prepare(sandbox, archive, **SMALL)
    assert_refused(sandbox, result, "--max-extract-gb", "AIMS_MAX_EXTRACT_GB", "trust")
    assert biggest_file(sandbox.allowed) < 4 * MiB


def test_ratio_bomb_refused_with_default_limits(sandbox: Sandbox) -> None:
    archive = hostile(sandbox, "ratio.zip", [("zeros", f"z{i}.bin", 8 * MiB) for i in range(4)])
    result = prepare(sandbox, archive)
    assert_refused(sandbox, result, "--max-extract-ratio", "times its size", "zip bomb")


def test_declared_terabyte_tar_refused_before_reading(sandbox: Sandbox) -> None:
    """A header declaring 1 TiB (the data never follows): refused from the header, with
    the default limits, before anything is read or written."""
    info = tarfile.TarInfo("huge.bin")
    info.size = 1 << 40
    folder = sandbox.allowed / "archives"
    folder.mkdir()
    archive = folder / "terabyte.tar"
    archive.write_bytes(info.tobuf(tarfile.PAX_FORMAT) + bytes(4096))
    assert_refused(sandbox, prepare(sandbox, archive), "--max-extract-gb", "64 GiB")


def test_hardlink_copies_count_against_the_limit(sandbox: Sandbox) -> None:
    """One 4 MiB file and 40 hardlinks to it become 164 MiB of copies."""
    entries = [("zeros", "f.bin", 4 * MiB)] + [("hard", f"h{i}", "f.bin") for i in range(40)]
    archive = hostile(sandbox, "hardlinks.tar.gz", entries)
    result = prepare(sandbox, archive, AIMS_MAX_EXTRACT_GB="0.05", **NO_RATIO)
    assert_refused(sandbox, result, "--max-extract-gb")
    assert biggest_file(sandbox.allowed) < 8 * MiB


def _lie_about_size(archive: Path, size: int) -> None:
    """Rewrite the uncompressed size of a one-member zip in its local header (offset 22)
    and its central directory entry (offset 24)."""
    data = bytearray(archive.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    assert local == 0 and central > 0 and data.count(b"PK\x01\x02") == 1
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert [i.file_size for i in zf.infolist()] == [size]


def test_zip_member_inflating_past_its_declared_size(sandbox: Sandbox) -> None:
    """Declares 1,000 bytes, inflates to 64 MiB: at most the declared bytes are written,
    then the archive is refused (its CRC cannot match)."""
    archive = hostile(sandbox, "liar.zip", [("zeros", "z.bin", 64 * MiB)])
    _lie_about_size(archive, 1000)
    result = prepare(sandbox, archive)
    assert_refused(sandbox, result, "corrupt")
    assert biggest_file(sandbox.allowed / "home") <= 1000


def test_limits_in_force_through_safe_extract(sandbox: Sandbox) -> None:
    """The same bomb through the API with extraction_limits(); and the override lets a
    trusted archive through."""
    archive = build(sandbox.allowed / "bomb.zip", [("zeros", "zeros.bin", 24 * MiB)])
    with extraction_limits(max_bytes=10 * MiB, max_ratio=float("inf")):
        with pytest.raises(UnsafeArchiveError, match="max-extract-gb"):
            safe_extract(archive, sandbox.allowed / "out")
    with pytest.raises(UnsafeArchiveError, match="max-extract-ratio"):
        safe_extract(archive, sandbox.allowed / "out")  # default ratio 200
    sandbox.assert_nothing_outside()
    assert sorted(p.name for p in sandbox.allowed.iterdir()) == ["bomb.zip"]
    with extraction_limits(max_ratio=float("inf")):
        safe_extract(archive, sandbox.allowed / "out")
    assert (sandbox.allowed / "out" / "zeros.bin").stat().st_size == 24 * MiB


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_malformed_limit_variable_is_a_user_error(sandbox: Sandbox, value: str) -> None:
    archive = hostile(sandbox, "good.zip", [("file", "a.txt", b"a")])
    result = prepare(sandbox, archive, AIMS_MAX_EXTRACT_GB=value)
    assert_refused(sandbox, result, "AIMS_MAX_EXTRACT_GB", "positive number")


def test_api_rejects_nonpositive_limits() -> None:
    with pytest.raises(AimsError, match="--max-extract-gb"):
        with extraction_limits(max_gb=0):
            pass
    with pytest.raises(AimsError, match="--max-extract-ratio"):
        with extraction_limits(max_ratio=-3):
            pass
