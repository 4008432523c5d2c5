"""Safe, atomic, resumable extraction of source archives.

Archives come from third-party hosts, so they are treated as hostile input:

1. **Validate the whole member list before writing anything.** Every member name is
   resolved against a *virtual* tree that includes the symlinks declared earlier in the
   archive, so ``up -> ..`` followed by ``up/pwned.txt`` and ``a -> .`` followed by
   ``a/../evil`` are caught, not only the literal ``../evil``. Refused (with
   :class:`UnsafeArchiveError` naming the archive and the member): absolute paths and
   drive letters, any path that leaves the target, symlinks and hardlinks whose target
   leaves it, device files and fifos.
2. **Write files ourselves**, to the resolved path computed in step 1, never through a
   symlink on disk, and check each written size. This is the same on every Python
   (we support 3.10+, where tarfile's ``filter="data"`` does not exist everywhere) and
   is a second line of defence should step 1 have a gap: a runtime check refuses any
   destination whose real path is outside the extraction folder.
3. **Extract into a temporary sibling and rename into place**, with a marker file
   written last. An interrupted extraction leaves a hidden ``.<name>.extracting-*``
   folder, never a half folder under the final name; a completed one is recognised by
   its marker and not extracted again.

Archive kind is detected from the first bytes (zip, gzip/bzip2/xz/plain tar, rar, 7z),
not from the extension, because hosts rename files (``download.php``, ``file.zip.1``).
Each kind has a small backend class (:class:`_Backend`) that lists members in a common
form and streams one member's bytes; RAR archives use :class:`_RarBackend` (see its
docstring for which system tool decodes them and why).
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from aims.errors import AimsError, UnsafeArchiveError

__all__ = ["MARKER", "RAR_TOOL_PACKAGES", "archive_kind", "rar_tool", "safe_extract"]

#: Written last inside a completed extraction; its content identifies the archive.
MARKER = ".aims-extracted"

_CHUNK = 1 << 20
_MAX_LINK_HOPS = 40  # like the kernel's ELOOP limit

MemberKind = Literal["file", "dir", "symlink", "hardlink", "special"]


@dataclass(frozen=True)
class Member:
    """One archive entry, backend-neutral.

    ``link`` is the stored link target: relative to the link's folder for symlinks,
    relative to the archive root for hardlinks (tar semantics). ``handle`` is the
    backend's own object, passed back to :meth:`_Backend.open_member`.
    """

    name: str
    kind: MemberKind
    size: int = 0
    link: str | None = None
    handle: object = None


class _Backend(ABC):
    """What the extractor needs from an archive format."""

    #: exceptions that mean "corrupt or truncated archive"
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, archive: Path) -> None:
        self.archive = archive

    @abstractmethod
    def members(self) -> list[Member]:
        """All entries, in archive order (order matters for links)."""

    @abstractmethod
    def open_member(self, member: Member) -> IO[bytes]:
        """A readable stream of a ``file`` member's bytes."""

    def close(self) -> None:
        """Release the archive handle."""


class _ZipBackend(_Backend):
    # NotImplementedError: a compression method zipfile does not support
    errors = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, lzma.LZMAError,
              NotImplementedError)

    def __init__(self, archive: Path) -> None:
        super().__init__(archive)
        self._zip = zipfile.ZipFile(archive)

    def members(self) -> list[Member]:
        out = []
        for info in self._zip.infolist():
            if info.flag_bits & 0x1:
                raise AimsError(
                    f"{self.archive} is password-protected (member {info.filename!r} is "
                    f"encrypted); AIMS cannot extract it. Extract it by hand and pass the "
                    f"folder with `--source FOLDER`.",
                    path=self.archive,
                )
            # Unix-made zips carry st_mode in the high 16 bits; its file-type bits are 0
            # when the tool recorded permissions only (Python's writestr does that).
            fmt = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or fmt == stat.S_IFDIR:
                out.append(Member(info.filename, "dir", handle=info))
            elif fmt == stat.S_IFLNK:
                # zipfile itself would write a link as a text file holding its target;
                # we treat it as the link it is, so it gets validated like a tar link.
                target = self._zip.read(info).decode("utf-8", "surrogateescape")
                out.append(Member(info.filename, "symlink", link=target, handle=info))
            elif fmt not in (0, stat.S_IFREG):
                out.append(Member(info.filename, "special", handle=info))
            else:
                out.append(Member(info.filename, "file", size=info.file_size, handle=info))
        return out

    def open_member(self, member: Member) -> IO[bytes]:
        assert isinstance(member.handle, zipfile.ZipInfo)
        return self._zip.open(member.handle)

    def close(self) -> None:
        self._zip.close()


class _TarBackend(_Backend):
    errors = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

    def __init__(self, archive: Path) -> None:
        super().__init__(archive)
        # "r:*" picks the compression from the content (gzip/bzip2/xz/none).
        self._tar = tarfile.open(archive, "r:*")

    def members(self) -> list[Member]:
        out = []
        # getmembers() reads every header, i.e. the whole (decompressed) archive: the
        # price of validating everything before writing anything.
        for info in self._tar.getmembers():
            if info.isreg():
                out.append(Member(info.name, "file", size=info.size, handle=info))
            elif info.isdir():
                out.append(Member(info.name, "dir", handle=info))
            elif info.issym():
                out.append(Member(info.name, "symlink", link=info.linkname, handle=info))
            elif info.islnk():
                out.append(Member(info.name, "hardlink", link=info.linkname, handle=info))
            else:  # character/block devices, fifos, contiguous files, unknown types
                out.append(Member(info.name, "special", handle=info))
        return out

    def open_member(self, member: Member) -> IO[bytes]:
        assert isinstance(member.handle, tarfile.TarInfo)
        stream = self._tar.extractfile(member.handle)
        if stream is None:  # pragma: no cover - only for non-regular members
            raise tarfile.ReadError(f"member {member.name!r} has no data")
        return stream

    def close(self) -> None:
        self._tar.close()


# --------------------------------------------------------------------------- RAR

try:  # optional at import time: zip/tar extraction must work without it
    import rarfile as _rarfile
except ImportError:  # pragma: no cover - rarfile is a declared dependency
    _rarfile = None

#: the Debian/Ubuntu package that provides each RAR decoder
RAR_TOOL_PACKAGES = {"bsdtar": "libarchive-tools", "unar": "unar"}
#: which decoder a RAR format version prefers (the other one is the fallback); see
#: :class:`_RarBackend` for the reasons
_RAR_TOOL_PREFERENCE = {5: ("bsdtar", "unar"), 4: ("unar", "bsdtar")}
_RAR5_MAGIC = b"Rar!\x1a\x07\x01\x00"


class _ToolFailed(Exception):
    """The RAR decoder's output ended early or did not match the archive's headers."""


def rar_format_version(archive: str | Path) -> int:
    """5 for RAR 5 archives, 4 for the older RAR 1.5–4 format (from the signature)."""
    with open(archive, "rb") as fh:
        return 5 if fh.read(len(_RAR5_MAGIC)) == _RAR5_MAGIC else 4


def rar_tool(archive: str | Path) -> str | None:
    """The decoder ``"bsdtar"`` or ``"unar"`` that extraction of ``archive`` will use, or
    None when neither is installed. Deterministic: it depends only on the archive's format
    version and on which of the two programs is on PATH (``rarfile.BSDTAR_TOOL`` and
    ``rarfile.UNAR_TOOL`` name the executables)."""
    assert _rarfile is not None
    for tool in _RAR_TOOL_PREFERENCE[rar_format_version(archive)]:
        exe = _rarfile.BSDTAR_TOOL if tool == "bsdtar" else _rarfile.UNAR_TOOL
        if shutil.which(exe):
            return tool
    return None


class _Checked:
    """A stream of exactly ``size`` bytes of one member, whose CRC32 is compared with the
    archive header's at the end: the decoder's output is trusted only once it matches."""

    def __init__(self, raw: IO[bytes], member: Member, crc: int | None, what: str,
                 fail: "Callable[[_ToolFailed], BaseException]") -> None:
        self._raw, self._member, self._crc, self._what, self._fail = raw, member, crc, what, fail
        self._left = member.size
        self._sum = 0

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            self._verify()
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._raw.read(want)
        if not data:
            raise self._fail(_ToolFailed(
                f"{self._what} output ended {self._left:,} bytes before the end of member "
                f"{self._member.name!r}"))
        self._left -= len(data)
        self._sum = zlib.crc32(data, self._sum)
        if self._left == 0:
            self._verify()
        return data

    def _verify(self) -> None:
        if self._crc is not None and self._sum != self._crc:
            raise self._fail(_ToolFailed(
                f"member {self._member.name!r} decoded by {self._what} fails its CRC32 check "
                f"(expected {self._crc:08x}, got {self._sum:08x})"))
        self._crc = None  # checked once

    def __enter__(self) -> "_Checked":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _RarBackend(_Backend):
    """RAR archives: headers read by ``rarfile`` (pure Python), data decoded by one run of
    a system program that writes to a pipe, never to disk.

    The member list (names, types, symlink/hardlink targets, sizes, CRCs, encryption,
    volumes) comes from ``rarfile``, so validation needs no external program. File data:

    - archives whose files are all *stored* (uncompressed) are read by ``rarfile`` alone;
    - otherwise one decoder process streams the whole archive once, in archive order:
      ``bsdtar -cf - @archive`` (libarchive converts the RAR to a tar stream on stdout) or
      ``unar -o - archive`` (the files' bytes concatenated on stdout, split here by the
      header sizes). Every member's bytes are checked against its header CRC32.

    Which decoder (deterministic, see :func:`rar_tool`): RAR 5 → ``bsdtar`` (libarchive
    3.6 decodes RAR 5 including solid archives; unar 1.10.1, Debian 12's, fails on solid
    RAR 5), RAR 1.5–4 → ``unar`` (libarchive cannot decode *solid* RAR 4); each falls back
    to the other program when only that one is installed.

    Why not ``rarfile``'s own ``open()``: on solid archives it starts the tool once per
    member, each run decompressing from the archive's start (quadratic in archive size),
    and rarfile 4.5's ``bsdtar`` command line puts ``--`` after ``-f``, which bsdtar takes
    as the archive's name (so that backend fails on every compressed member).
    """

    errors: tuple[type[BaseException], ...] = (
        ((_rarfile.Error,) if _rarfile is not None else ()) + (EOFError, tarfile.TarError, _ToolFailed)
    )

    def __init__(self, archive: Path) -> None:
        super().__init__(archive)
        if _rarfile is None:  # pragma: no cover - rarfile is a declared dependency
            raise AimsError(
                f"{archive} is a RAR archive and the Python package rarfile is not "
                f"installed: run `pip install rarfile`, or extract the archive yourself "
                f"and pass the folder with `--source FOLDER`.",
                path=archive,
            )
        # errors="strict": a damaged header raises instead of silently ending the listing
        self._rar = _rarfile.RarFile(str(archive), errors="strict")
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._tar: tarfile.TarFile | None = None
        self._tool: str | None = None

    # ---------------------------------------------------------------- listing

    def members(self) -> list[Member]:
        rf = self._rar
        if rf.needs_password():
            raise self._encrypted(None)
        if len(rf.volumelist()) > 1:
            raise AimsError(
                f"{self.archive} is one volume of a multi-volume RAR archive "
                f"({len(rf.volumelist())} volumes); AIMS extracts single-volume archives "
                f"only. Extract it with `unar` or `bsdtar -xf` and pass the folder with "
                f"`--source FOLDER`.",
                path=self.archive,
            )
        out = []
        for info in rf.infolist():
            name = info.filename
            if info.needs_password():
                raise self._encrypted(name)
            if info.flags & (_rarfile.RAR_FILE_SPLIT_BEFORE | _rarfile.RAR_FILE_SPLIT_AFTER):
                raise AimsError(
                    f"{self.archive}: member {name!r} continues in another volume; AIMS "
                    f"extracts single-volume RAR archives only. Extract it with `unar` and "
                    f"pass the folder with `--source FOLDER`.",
                    path=self.archive,
                )
            redir = info.file_redir
            fmt = stat.S_IFMT(info.mode or 0) if info.host_os == _rarfile.RAR_OS_UNIX else 0
            if redir is not None:
                kind, _flags, target = redir
                if kind in (_rarfile.RAR5_XREDIR_HARD_LINK, _rarfile.RAR5_XREDIR_FILE_COPY):
                    # both mean "the same bytes as that earlier file": extracted as a copy
                    out.append(Member(name, "hardlink", link=target, handle=info))
                else:  # unix/windows symlink, windows junction
                    out.append(Member(name, "symlink", link=target, handle=info))
            elif info.is_dir():
                out.append(Member(name, "dir", handle=info))
            elif info.is_symlink():  # RAR 4 unix symlink: the target is the member's data
                target = rf.read(info).decode("utf-8", "surrogateescape")
                out.append(Member(name, "symlink", link=target, handle=info))
            elif fmt not in (0, stat.S_IFREG):
                out.append(Member(name, "special", handle=info))
            else:
                out.append(Member(name, "file", size=info.file_size, handle=info))
        return out

    def _encrypted(self, name: str | None) -> AimsError:
        what = f"member {name!r} is encrypted" if name else "its headers are encrypted"
        return AimsError(
            f"{self.archive} is password-protected ({what}); AIMS cannot extract it. "
            f"Extract it by hand and pass the folder with `--source FOLDER`.",
            path=self.archive,
        )

    # ---------------------------------------------------------------- data

    def open_member(self, member: Member) -> IO[bytes]:
        info = member.handle
        crc = getattr(info, "CRC", None)
        if self._all_stored():
            return _Checked(self._rar.open(info), member, crc, "rarfile",  # type: ignore[return-value]
                            lambda e: e)
        if self._tool is None:
            self._start()
        what = f"`{self._tool}`"
        try:
            if self._tool == "bsdtar":
                return _Checked(self._next_tar_file(member), member, crc, what,  # type: ignore[return-value]
                                self._tool_error)
            assert self._proc is not None and self._proc.stdout is not None
            return _Checked(self._proc.stdout, member, crc, what,  # type: ignore[return-value]
                            self._tool_error)
        except _ToolFailed as err:
            raise self._tool_error(err) from None

    def _all_stored(self) -> bool:
        if not hasattr(self, "_stored"):
            self._stored = all(
                i.compress_type == _rarfile.RAR_M0 for i in self._rar.infolist() if i.is_file()
            )
        return self._stored

    def _start(self) -> None:
        tool = rar_tool(self.archive)
        version = rar_format_version(self.archive)
        if tool is None:
            raise AimsError(
                f"{self.archive} is a RAR {version} archive with compressed members; "
                f"decoding them needs `bsdtar` (Debian/Ubuntu package libarchive-tools) or "
                f"`unar` (package unar), and neither is installed. Install them "
                f"(`sudo apt-get install libarchive-tools unar`) and run the command again, "
                f"or extract the archive yourself and pass the folder with `--source FOLDER`.",
                path=self.archive,
            )
        self._tool = tool
        path = str(self.archive.resolve())
        if tool == "bsdtar":
            cmd = [_rarfile.BSDTAR_TOOL, "-c", "-f", "-", "--format", "pax", "@" + path]
        else:
            cmd = [_rarfile.UNAR_TOOL, "-q", "-o", "-", "-p", "", "--", path]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        if tool == "bsdtar":
            assert self._proc.stdout is not None
            self._tar = tarfile.open(fileobj=self._proc.stdout, mode="r|")

    def _next_tar_file(self, member: Member) -> IO[bytes]:
        """Advance the tar stream to ``member`` (archive order; links and folders that
        bsdtar also emits are passed over)."""
        assert self._tar is not None
        want = member.name.replace("\\", "/")
        while True:
            info = self._tar.next()
            if info is None:
                raise _ToolFailed(f"`bsdtar` output ended before member {member.name!r}")
            if info.isreg() and info.name == want:
                if info.size != member.size:
                    raise _ToolFailed(
                        f"`bsdtar` gives member {member.name!r} {info.size:,} bytes, the "
                        f"archive header says {member.size:,}")
                stream = self._tar.extractfile(info)
                assert stream is not None
                return stream

    def _tool_error(self, err: Exception) -> AimsError:
        detail = ""
        if self._proc is not None and self._stderr is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._stderr.seek(0)
            detail = self._stderr.read(2000).decode("utf-8", "replace").strip()
        version = rar_format_version(self.archive)
        hint = ("RAR 5 archives decode best with bsdtar (libarchive-tools)" if version == 5
                else "RAR 4 archives, solid ones in particular, need unar (package unar)")
        return AimsError(
            f"Could not decode {self.archive} (RAR {version}) with `{self._tool}`: {err}"
            f"{'; it said: ' + detail if detail else ''}. The archive may be corrupt or "
            f"truncated (delete it and download it again), or the decoder may not support "
            f"this RAR variant: {hint}. Nothing was left under the target folder.",
            path=self.archive,
        )

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc.wait()
        if self._stderr is not None:
            self._stderr.close()
        self._rar.close()

#: archive kind -> backend.
_BACKENDS: dict[str, type[_Backend]] = {"zip": _ZipBackend, "tar": _TarBackend, "rar": _RarBackend}

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),  # empty zip
    (0, b"PK\x07\x08", "zip"),  # spanned zip marker
    (0, b"\x1f\x8b", "tar"),  # gzip (tar.gz / tgz)
    (0, b"BZh", "tar"),  # bzip2
    (0, b"\xfd7zXZ\x00", "tar"),  # xz
    (257, b"ustar", "tar"),  # uncompressed POSIX/GNU tar
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
)


def archive_kind(archive: str | Path) -> str | None:
    """``"zip"``, ``"tar"``, ``"rar"``, ``"7z"`` from the file's first bytes, else None.

    Content, not extension: hosts serve archives under arbitrary names.
    """
    archive = Path(archive)
    with open(archive, "rb") as f:
        head = f.read(512)
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    # Pre-POSIX (v7) tars have no magic; tarfile can still tell by the header checksum.
    try:
        if tarfile.is_tarfile(archive):
            return "tar"
    except (OSError, tarfile.TarError):
        pass
    return None


def safe_extract(
    archive: str | Path,
    target: str | Path,
    *,
    fingerprint: str | None = None,
    progress: bool = False,
) -> Path:
    """Extract ``archive`` into the folder ``target`` safely and atomically; return ``target``.

    ``fingerprint`` identifies the archive's content in the marker (pass the
    ``SourceFile.known_hash`` when there is one: exact and free); by default the
    archive's name, size and mtime are used, which avoids re-reading a multi-GB archive
    just to decide whether to skip.

    Skips the work when ``target`` holds a marker for the same archive. Re-extracts
    (replacing the folder) when the marker names a different archive. Refuses to replace
    an existing non-empty ``target`` without a marker: it was not made by us.
    """
    archive = Path(archive)
    target = Path(target)
    if not archive.is_file():
        raise AimsError(f"Archive {archive} does not exist or is not a file.", path=archive)
    stamp = _stamp(archive, fingerprint)
    marker = target / MARKER
    if target.is_dir():
        if _read_marker(marker) == stamp:
            return target
        if not marker.exists() and any(target.iterdir()):
            raise AimsError(
                f"Cannot extract {archive} into {target}: that folder already exists, is "
                f"not empty and was not extracted by AIMS (no {MARKER} file). Move or "
                f"delete it, or choose another destination.",
                path=target,
            )
    elif target.exists():
        raise AimsError(
            f"Cannot extract {archive} into {target}: a file with that name exists. "
            f"Move or delete it.",
            path=target,
        )

    kind = archive_kind(archive)
    backend_cls = _BACKENDS.get(kind or "")
    if backend_cls is None:
        if kind == "7z":
            raise AimsError(
                f"{archive} is a {kind.upper()} archive, which this version of AIMS cannot "
                f"extract. Extract it with another tool (e.g. `bsdtar -xf`, `7z x`, "
                f"`unar`) and pass the extracted folder with `--source FOLDER`.",
                path=archive,
            )
        raise AimsError(
            f"{archive} is not a zip or tar archive (unrecognised content; size "
            f"{archive.stat().st_size:,} bytes). It may be an HTML error page or a "
            f"truncated download: delete it and download it again.",
            path=archive,
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        # Only reading the archive happens under _opened: its errors mean "corrupt".
        with _opened(backend_cls, archive) as backend:
            plan = _plan(archive, backend.members())  # raises before anything is written
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.extracting-"))
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
            _write(backend, archive, plan, tmp, progress=progress)
        assert tmp is not None
        # Marker last: its presence certifies that everything before it was written.
        (tmp / MARKER).write_text(json.dumps(stamp, sort_keys=True) + "\n")
        _swap_into_place(tmp, target)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- internals


def _stamp(archive: Path, fingerprint: str | None) -> dict[str, object]:
    st = archive.stat()
    if fingerprint is not None:
        return {"archive": archive.name, "fingerprint": fingerprint}
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_marker(marker: Path) -> object:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _opened(backend_cls: type[_Backend], archive: Path) -> Iterator[_Backend]:
    """Open the archive, translating "corrupt/truncated" errors of any phase (listing,
    reading members) into one user-facing message."""
    backend: _Backend | None = None
    try:
        backend = backend_cls(archive)
        yield backend
    except backend_cls.errors as err:
        if isinstance(err, AimsError):  # our own errors pass through untouched
            raise
        raise AimsError(
            f"{archive} is corrupt or truncated and cannot be extracted ({type(err).__name__}: "
            f"{err}). Delete it and download it again.",
            path=archive,
        ) from err
    finally:
        if backend is not None:
            backend.close()


@dataclass(frozen=True)
class _Step:
    """One validated action: ``dest`` is a path relative to the extraction root, already
    resolved through the archive's own symlinks."""

    member: Member
    dest: tuple[str, ...]
    source: tuple[str, ...] | None = None  # hardlink: resolved path of the linked file


def _split(name: str) -> list[str]:
    # Backslashes count as separators: Windows-made zips use them, and on POSIX a literal
    # "..\\evil" would otherwise slip past a check that splits on "/" only.
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _is_absolute(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or (len(n) >= 2 and n[1] == ":" and n[0].isalpha())


def _resolve(parts: list[str], links: dict[tuple[str, ...], str]) -> tuple[str, ...] | None:
    """Resolve ``parts`` (relative to the root) through the virtual symlinks ``links``.

    Returns the resolved path, or None when it leaves the root (``..`` above the root,
    an absolute link target, or too many link hops). Mirrors what the kernel would do
    on disk after the preceding members had been extracted.
    """
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
            if hops > _MAX_LINK_HOPS or _is_absolute(link):
                return None
            out.pop()
            queue = _split(link) + queue
    return tuple(out)


def _plan(archive: Path, members: list[Member]) -> list[_Step]:
    """Validate every member and compute where it goes. Writes nothing."""

    def refuse(member: Member, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"Refusing to extract {archive}: member {member.name!r} {why}. Nothing was "
            f"extracted. The archive is damaged or malicious: delete it and get it again "
            f"from the official source.",
            path=archive,
        )

    links: dict[tuple[str, ...], str] = {}
    files: set[tuple[str, ...]] = set()
    steps: list[_Step] = []
    for m in members:
        if "\x00" in m.name:
            raise refuse(m, "has a NUL byte in its name")
        if _is_absolute(m.name):
            raise refuse(m, "has an absolute path")
        if m.kind == "special":
            raise refuse(m, "is a device file, fifo or other special file")
        parts = _split(m.name)
        if not parts:
            if m.kind == "dir":
                continue  # "./" - the root itself
            raise refuse(m, "has an empty name")
        parent = _resolve(parts[:-1], links)
        if parent is None or parts[-1] == "..":
            raise refuse(m, "would be written outside the extraction folder")
        dest = parent + (parts[-1],)
        if m.kind == "symlink":
            assert m.link is not None
            if _is_absolute(m.link):
                raise refuse(m, f"is a symlink to an absolute path ({m.link!r})")
            if _resolve(list(dest[:-1]) + _split(m.link), links | {dest: m.link}) is None:
                raise refuse(m, f"is a symlink pointing outside the extraction folder ({m.link!r})")
            links[dest] = m.link
            files.discard(dest)
            steps.append(_Step(m, dest))
        elif m.kind == "hardlink":
            assert m.link is not None
            if _is_absolute(m.link):
                raise refuse(m, f"is a hardlink to an absolute path ({m.link!r})")
            src = _resolve(_split(m.link), links)
            if src is None:
                raise refuse(m, f"is a hardlink pointing outside the extraction folder ({m.link!r})")
            if src not in files:
                raise refuse(m, f"is a hardlink to {m.link!r}, which is not a file earlier in the archive")
            links.pop(dest, None)
            files.add(dest)
            steps.append(_Step(m, dest, source=src))
        else:
            # A file or folder replaces a same-named symlink (as tar does), so later
            # members are no longer redirected through it.
            links.pop(dest, None)
            if m.kind == "file":
                files.add(dest)
            else:
                files.discard(dest)
            steps.append(_Step(m, dest))
    return steps


def _inside(root_real: str, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


@contextmanager
def _writing(archive: Path, member: Member, root: Path) -> Iterator[None]:
    """Turn a failure to *write* (disk full, permissions, a file/folder clash between
    members) into a user-facing error; errors *reading* the archive are left to
    :func:`_opened`, which calls them corruption."""
    try:
        yield
    except OSError as err:
        raise AimsError(
            f"Could not extract member {member.name!r} of {archive} into {root}: {err}. "
            f"Check free disk space and permissions, then run the command again; nothing "
            f"was left under the final folder name.",
            path=archive,
        ) from err


def _write(backend: _Backend, archive: Path, plan: list[_Step], root: Path, *, progress: bool) -> None:
    """Carry out a validated plan under ``root`` (the temporary folder)."""
    root_real = os.path.realpath(root)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), unit="file", desc=f"extracting {archive.name}", leave=False)
    try:
        for step in plan:
            m = step.member
            dest = root.joinpath(*step.dest)
            # Second line of defence, checked before mkdir can follow anything: the
            # parent's real path must be inside the root.
            if not _inside(root_real, dest.parent):
                raise UnsafeArchiveError(
                    f"Refusing to extract {archive}: member {m.name!r} would be written "
                    f"outside the extraction folder. Delete the archive and get it again "
                    f"from the official source.",
                    path=archive,
                )
            with _writing(archive, m, root):
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or (m.kind != "dir" and dest.is_file()):
                    dest.unlink()  # a later member replaces an earlier one, as tar does
                if m.kind == "dir":
                    dest.mkdir(exist_ok=True)
                elif m.kind == "symlink":
                    assert m.link is not None
                    os.symlink(m.link, dest)
                elif m.kind == "hardlink":
                    assert step.source is not None
                    if not _inside(root_real, root.joinpath(*step.source)):  # pragma: no cover
                        raise UnsafeArchiveError(
                            f"Refusing to extract {archive}: hardlink {m.name!r} points "
                            f"outside the extraction folder. Delete the archive and get it "
                            f"again from the official source.",
                            path=archive,
                        )
                    # A copy, not os.link: works across filesystems and never ties two
                    # paths of the prepared tree together.
                    shutil.copyfile(root.joinpath(*step.source), dest)
            if m.kind == "file":
                _write_file(backend, archive, m, dest, root)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _write_file(backend: _Backend, archive: Path, member: Member, dest: Path, root: Path) -> None:
    # O_NOFOLLOW | O_EXCL: never write through a link, never into something that exists.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    written = 0
    with _writing(archive, member, root):
        out = os.fdopen(os.open(dest, flags, 0o644), "wb")
    with out, backend.open_member(member) as src:
        while chunk := src.read(_CHUNK):
            with _writing(archive, member, root):
                out.write(chunk)
            written += len(chunk)
    if written != member.size:
        raise AimsError(
            f"{archive} is corrupt or truncated: member {member.name!r} should have "
            f"{member.size:,} bytes, {written:,} could be read. Delete the archive and "
            f"download it again.",
            path=archive,
        )


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` with renames only, so that at every instant
    ``target`` is either the previous complete folder, absent, or the new complete one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
