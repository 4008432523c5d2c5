"""Extraction under attack: link-check time against the old quadratic check, and peak
memory of extracting bombs with the limits in force.

    python benchmarks/bench_extract.py [--counts 6000 60000] [--skip-reference-above N]
                                       [--skip-rss]

1. **Link checking.** ``reference_plan`` below is ``aims/extract.py``'s ``_plan`` as it was
   before issue 9 (with its ``_resolve``), copied verbatim except for the names: it copies
   the dict of links for every symlink, so its cost grows with the square of the count.
   Each count N builds N symlinks ``links/l<i> -> ../files/f<i>.txt`` beside N files and
   times both checks on the same member list (plan only, nothing written), then times a
   full :func:`aims.extract.safe_extract` of a tar holding them (new code only: writing,
   the runtime checks and the final walk that resolves every link on disk).
2. **Peak RSS.** Each bomb is built small on disk in a temporary folder, then extracted by
   a fresh ``python`` subprocess with the limits lowered through the environment, as a
   user or test would; the child reports its own peak RSS (``resource.getrusage``), next to
   that of a child that only imports :mod:`aims.extract` (Linux: ``VmHWM`` of
   ``/proc/self/status``, the child's own high-water mark; ``ru_maxrss`` elsewhere, which
   also counts the parent's memory at fork time). Every bomb must be refused, with a
   message under 1,000 characters, and stay under 300 MB; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from aims.errors import UnsafeArchiveError
from aims.extract import Member, _plan, safe_extract

MiB = 1 << 20
RSS_LIMIT_MB = 300

# --- reference: aims/extract.py before issue 9 (_split, _is_absolute, _resolve, _plan),
#     verbatim except `_plan` -> `reference_plan` and the private helper names.

_MAX_LINK_HOPS = 40


def _ref_split(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _ref_is_absolute(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or (len(n) >= 2 and n[1] == ":" and n[0].isalpha())


def _ref_resolve(parts: list[str], links: dict[tuple[str, ...], str]) -> tuple[str, ...] | None:
    out: list[str] = []
    queue = list(parts)
    hops = 0
    while queue:
        part = queue.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        link = links.get(tuple(out))
        if link is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or _ref_is_absolute(link):
                return None
            out.pop()
            queue = _ref_split(link) + queue
    return tuple(out)


def reference_plan(archive: Path, members: list[Member]) -> list[tuple]:
    """The pre-issue-9 check; returns (member, dest[, source]) tuples."""

    def refuse(member: Member, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"Refusing to extract {archive}: member {member.name!r} {why}.")

    links: dict[tuple[str, ...], str] = {}
    files: set[tuple[str, ...]] = set()
    steps: list[tuple] = []
    for m in members:
        if "\x00" in m.name:
            raise refuse(m, "has a NUL byte in its name")
        if _ref_is_absolute(m.name):
            raise refuse(m, "has an absolute path")
        if m.kind == "special":
            raise refuse(m, "is a device file, fifo or other special file")
        parts = _ref_split(m.name)
        if not parts:
            if m.kind == "dir":
                continue
            raise refuse(m, "has an empty name")
        parent = _ref_resolve(parts[:-1], links)
        if parent is None or parts[-1] == "..":
            raise refuse(m, "would be written outside the extraction folder")
        dest = parent + (parts[-1],)
        if m.kind == "symlink":
            assert m.link is not None
            if _ref_is_absolute(m.link):
                raise refuse(m, f"is a symlink to an absolute path ({m.link!r})")
            if _ref_resolve(list(dest[:-1]) + _ref_split(m.link), links | {dest: m.link}) is None:
                raise refuse(m, f"is a symlink pointing outside the extraction folder ({m.link!r})")
            links[dest] = m.link
            files.discard(dest)
            steps.append((m, dest))
        elif m.kind == "hardlink":
            assert m.link is not None
            src = _ref_resolve(_ref_split(m.link), links)
            if src is None or src not in files:
                raise refuse(m, "is a bad hardlink")
            links.pop(dest, None)
            files.add(dest)
            steps.append((m, dest, src))
        else:
            links.pop(dest, None)
            if m.kind == "file":
                files.add(dest)
            else:
                files.discard(dest)
            steps.append((m, dest))
    return steps


# --------------------------------------------------------------------------- link checking


def link_members(n: int) -> list[Member]:
    out = [Member("files", "dir"), Member("links", "dir")]
    out += [Member(f"files/f{i}.txt", "file", size=0) for i in range(n)]
    out += [Member(f"links/l{i}", "symlink", link=f"../files/f{i}.txt") for i in range(n)]
    return out


def link_tar(path: Path, n: int) -> Path:
    with tarfile.open(path, "w") as tf:
        for m in link_members(n):
            info = tarfile.TarInfo(m.name)
            if m.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif m.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, m.link or ""
            tf.addfile(info, io.BytesIO(b"") if m.kind == "file" else None)
    return path


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_links(counts: list[int], skip_reference_above: int, tmp: Path) -> None:
    print("link checking (plan only; N symlinks + N files)")
    print(f"{'symlinks':>9} {'reference s':>12} {'new s':>8} {'ratio':>8} {'extract s (new)':>16}")
    dummy = tmp / "dummy.tar"
    dummy.write_bytes(b"\0" * 1024)
    for n in counts:
        members = link_members(n)
        new = timed(lambda: _plan(dummy, members))
        if n <= skip_reference_above:
            ref = timed(lambda: reference_plan(dummy, members))
            ref_s, ratio = f"{ref:12.2f}", f"{ref / new:7.1f}x"
        else:
            ref_s, ratio = f"{'skipped':>12}", f"{'-':>8}"
        archive = link_tar(tmp / f"links{n}.tar", n)
        target = tmp / f"out{n}"
        full = timed(lambda: safe_extract(archive, target))
        print(f"{n:>9,} {ref_s} {new:8.3f} {ratio} {full:16.2f}")
        assert sum(1 for _ in (target / "links").iterdir()) == n


# --------------------------------------------------------------------------- peak RSS

CHILD = r"""
import json, resource, sys
from aims.errors import AimsError
from aims.extract import safe_extract
outcome = "imported"
if len(sys.argv) > 1:
    try:
        safe_extract(sys.argv[1], sys.argv[2])
        outcome = "extracted"
    except AimsError as err:
        outcome = "refused: " + str(err)
def peak_mb():
    # VmHWM: this process image's own high-water mark. ru_maxrss would also count the
    # parent's memory at fork time (Linux keeps it across exec).
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak_mb(), "outcome": outcome}))
"""


def zeros_zip(path: Path, members: dict[str, int], *, link: str | None = None,
              link_bytes: int = 0) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, size in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=size > 2**31) as out:
                for start in range(0, size, 4 * MiB):
                    out.write(bytes(min(4 * MiB, size - start)))
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            with zf.open(info, "w", force_zip64=link_bytes > 2**31) as out:
                for start in range(0, link_bytes, 4 * MiB):
                    out.write(b"a/" * (min(4 * MiB, link_bytes - start) // 2))
    return path


def zeros_tgz(path: Path, size: int) -> Path:
    class Zeros(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
            n = min(len(buf), self.left)
            buf[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tf.addfile(info, Zeros())
    return path


def child_rss(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lie_about_size(archive: Path, size: int) -> Path:
    """Rewrite the uncompressed size of a one-member zip (local header offset 22, central
    directory offset 24): the member then inflates far past what it declares."""
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, size)
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, size)
    archive.write_bytes(bytes(data))
    return archive


def hardlink_tgz(path: Path, size: int, links: int) -> Path:
    zeros_tgz(path.with_suffix(".tmp"), size)  # reuse the streaming zeros
    with tarfile.open(path.with_suffix(".tmp")) as src, tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = src.getmember("zeros.bin")
        tf.addfile(info, src.extractfile(info))
        for i in range(links):
            link = tarfile.TarInfo(f"h{i}")
            link.type, link.linkname = tarfile.LNKTYPE, "zeros.bin"
            tf.addfile(link)
    path.with_suffix(".tmp").unlink()
    return path


def header_bomb_tgz(path: Path, members: int, pax_bytes: int = 0) -> Path:
    """Only headers: ``members`` empty files, each with a pax header of ``pax_bytes``."""
    with tarfile.open(path, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tf:
        for i in range(members):
            info = tarfile.TarInfo(f"d{i % 100}/f{i}")
            if pax_bytes:
                info.pax_headers = {"comment": "x" * pax_bytes}
            tf.addfile(info, io.BytesIO(b""))
    return path


def bench_rss(tmp: Path) -> bool:
    print(f"\npeak RSS of a child process extracting each archive (limit {RSS_LIMIT_MB} MB)")
    base = child_rss([], {})
    print(f"{'(import only)':<52} {'':>10} {base['peak_mb']:8.0f} MB")
    low = {"AIMS_MAX_EXTRACT_GB": "0.05", "AIMS_MAX_EXTRACT_RATIO": "inf"}
    lifted = {"AIMS_MAX_EXTRACT_GB": "inf", "AIMS_MAX_EXTRACT_RATIO": "inf"}
    cases = [
        ("zip bomb: 1 GiB of zeros, limit 0.05 GiB", "refused",
         lambda p: zeros_zip(p / "bomb.zip", {"z.bin": 1 << 30}), low),
        ("zip ratio bomb: 4 x 256 MiB of zeros, defaults", "refused",
         lambda p: zeros_zip(p / "ratio.zip", {f"z{i}.bin": 256 * MiB for i in range(4)}), {}),
        ("tar.gz bomb: 1 GiB of zeros, limit 0.05 GiB", "refused",
         lambda p: zeros_tgz(p / "bomb.tar.gz", 1 << 30), low),
        ("tar.gz: 64 MiB file + 100 hardlinks, defaults", "refused",
         lambda p: hardlink_tgz(p / "hard.tar.gz", 64 * MiB, 100), {}),
        ("zip member declaring 1000 B, inflating to 1 GiB", "refused",
         lambda p: lie_about_size(zeros_zip(p / "liar.zip", {"z.bin": 1 << 30}), 1000), lifted),
        ("zip symlink with a 1 GiB target, defaults", "refused",
         lambda p: zeros_zip(p / "link.zip", {}, link="l", link_bytes=1 << 30), {}),
        ("zip symlink declaring 100 B, 1 GiB target", "refused",
         lambda p: lie_about_size(zeros_zip(p / "link2.zip", {}, link="l", link_bytes=1 << 30), 100),
         {}),
        ("tar.gz: 200,001 empty members (headers only)", "refused",
         lambda p: header_bomb_tgz(p / "members.tar.gz", 200_001), {}),
        ("tar.gz: 200 pax headers of 1,000,000 B each", "refused",
         lambda p: header_bomb_tgz(p / "pax.tar.gz", 200, 1_000_000), {}),
        ("zip of 256 MiB of zeros, limits lifted", "extracted",
         lambda p: zeros_zip(p / "allowed.zip", {"z.bin": 256 * MiB}), lifted),
    ]
    ok = True
    print(f"{'archive':<52} {'on disk':>10} {'peak':>8}    outcome")
    for label, expect, make, env in cases:
        archive = make(tmp)
        out = tmp / (archive.name + ".out")
        got = child_rss([str(archive), str(out)], env)
        good = (got["outcome"].startswith(expect) and got["peak_mb"] < RSS_LIMIT_MB
                and len(got["outcome"]) < 1000)
        ok &= good
        print(f"{label:<52} {archive.stat().st_size / MiB:8.2f}MB {got['peak_mb']:8.0f} MB "
              f"{'ok ' if good else 'BAD'} {got['outcome'][:100]}…")
        archive.unlink()
        shutil.rmtree(out, ignore_errors=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[6000, 60000])
    ap.add_argument("--skip-reference-above", type=int, default=10**9,
                    help="skip the quadratic reference above this many links")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_links(args.counts, args.skip_reference_above, Path(tmp))
        ok = True if args.skip_rss else bench_rss(Path(tmp))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
