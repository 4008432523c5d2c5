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
form and streams one member's bytes; a RAR backend (``rarfile``) can be added by
registering one more class in :data:`_BACKENDS`.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from aims.errors import AimsError, UnsafeArchiveError

__all__ = ["MARKER", "archive_kind", "safe_extract"]

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


#: archive kind -> backend. RAR: add ``"rar": _RarBackend`` (rarfile) here.
_BACKENDS: dict[str, type[_Backend]] = {"zip": _ZipBackend, "tar": _TarBackend}

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
        if kind in ("rar", "7z"):
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
