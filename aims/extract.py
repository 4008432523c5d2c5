"""Safe, atomic, resumable extraction of source archives.

Archives come from third-party hosts, so they are treated as hostile input. What
:func:`safe_extract` promises: once it returns, every file, folder and link it created
lies inside the target folder, and every link there resolves inside it; when it
refuses, nothing is left behind (no target, no temporary folder). How:

1. **Validate the whole member list before writing anything** (:func:`_plan`), in two
   passes. The first lists every member once (streaming, so a bomb is stopped at its first
   oversized header) and collects the paths of *all* symlinks, declared before or after.
   The second refuses (with :class:`UnsafeArchiveError` naming the archive and the member):

   - absolute paths and drive letters, NUL bytes, names over 4096 bytes or with a
     component over 255 bytes, and any path whose ``..`` leaves the target;
   - device files and fifos;
   - **any member whose path passes through a symlink of the archive**, and **any symlink
     whose target passes through, or names, another symlink of the archive** (declared
     before or after it). This is deliberately stricter than "resolve like the kernel
     would": with no link ever followed by another path of the archive, each link's
     lexical resolution *is* its resolution on disk, so checking each one on its own is
     enough, whatever the order (``a -> b/..`` followed by ``b -> .`` is refused at
     ``a``). Checking is one dict/set lookup per path component: linear in the archive;
   - symlinks and hardlinks whose target leaves the target folder or is absolute,
     link targets over :data:`MAX_LINK_TARGET` bytes (read with that bound: a zip link
     whose "target" is 1 GiB is never read whole);
   - two members of different kinds at one path (a file and a folder, a link and
     anything), compared case- and Unicode-insensitively so that a case-insensitive file
     system cannot merge a folder with a link;
   - a top-level member named :data:`MARKER`, the name reserved for our own marker;
   - more bytes, more members, or a higher compression ratio than
     :class:`ExtractLimits` allows (zip and tar bombs), judged from the declared sizes.
2. **Write files ourselves**, to the path computed in step 1, with ``O_NOFOLLOW |
   O_EXCL``, counting the bytes: a member producing more than its header declares, or a
   running total over the limits, stops the extraction. A runtime check refuses any
   destination whose real parent is outside the extraction folder, and a last walk over
   the written tree refuses any link whose real path is outside it (a second line of
   defence should step 1 have a gap).
3. **Extract into a temporary sibling and rename into place**, with the marker written
   last (atomically, never through a link). An interrupted extraction leaves a hidden
   ``.<name>.extracting-<pid>-<hex>`` folder, never a half folder under the final name;
   such leftovers of dead processes are removed by the next extraction into the same
   folder, and a completed extraction is recognised by its marker and not redone.

Archive kind is detected from the first bytes (zip, gzip/bzip2/xz/plain tar, rar, 7z),
not from the extension, because hosts rename files (``download.php``, ``file.zip.1``).
Each kind has a small backend class (:class:`_Backend`) that lists members in a common
form and streams one member's bytes; RAR archives use :class:`_RarBackend` (see its
docstring for which system tool decodes them and why).

Limits (:class:`ExtractLimits`): by default at most 64 GiB written, at most 200 times
the archive's size (archives expanding to less than 16 MiB are exempt from the ratio),
and at most 200,000 members (the releases AIMS reads hold some tens of thousands); tar
extended headers are read only up to 1 MiB each and 128 MiB in all. Override the limits
with :func:`extraction_limits` (what ``aims prepare --max-extract-gb`` and
``--max-extract-ratio`` use) or the environment variables ``AIMS_MAX_EXTRACT_GB``,
``AIMS_MAX_EXTRACT_RATIO`` and ``AIMS_MAX_EXTRACT_MEMBERS`` (``inf`` lifts a limit).
"""

from __future__ import annotations

import json
import lzma
import math
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Literal

from aims.atomic import atomic_write_text, process_alive
from aims.errors import AimsError, UnsafeArchiveError
from aims.untrusted import load_json_bounded

__all__ = [
    "DEFAULT_LIMITS",
    "MARKER",
    "MAX_LINK_TARGET",
    "RAR_TOOL_PACKAGES",
    "ExtractLimitError",
    "ExtractLimits",
    "archive_kind",
    "current_limits",
    "extraction_limits",
    "quote",
    "rar_tool",
    "remove_stale_extractions",
    "safe_extract",
]

#: Written last inside a completed extraction; its content identifies the archive. The
#: name is reserved: an archive holding a top-level member of this name is refused.
MARKER = ".aims-extracted"

#: Longest symlink/hardlink target accepted, in bytes (Linux's PATH_MAX).
MAX_LINK_TARGET = 4096
#: Longest member name accepted, in bytes, and longest single path component.
MAX_NAME = 4096
MAX_COMPONENT = 255
#: Longest tar extended header (GNU long name/link, pax) read into memory, and the most
#: bytes of such headers one archive may have (tarfile keeps them all while listing).
MAX_TAR_HEADER = 1 << 20
MAX_TAR_HEADERS_TOTAL = 128 << 20
#: Longest name or link target quoted in an error message, in characters.
QUOTE_MAX = 200

_CHUNK = 1 << 20
_GIB = 1 << 30


def quote(text: str, limit: int = QUOTE_MAX) -> str:
    """``repr(text)``, shortened to about ``limit`` characters: archive names and link
    targets are attacker-chosen and may be megabytes long, error messages must not be."""
    r = repr(text)
    if len(r) <= limit:
        return r
    head = max(limit * 2 // 3, 1)
    tail = max(limit - head - 1, 1)
    return f"{r[:head]}…{r[-tail:]} ({len(text):,} characters)"


def _short(err: object, limit: int = QUOTE_MAX) -> str:
    """``str(err)`` shortened like :func:`quote`: OS and library errors repeat the
    (attacker-chosen) file name."""
    text = str(err)
    if len(text) <= limit:
        return text
    return f"{text[: limit * 2 // 3]}…{text[-(limit // 3):]}"


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class ExtractLimits:
    """How much one archive may write. ``None`` means no limit.

    ``max_bytes``: total bytes of files written (hardlinks count as the copies they
    become). ``max_ratio``: that total divided by the archive's size on disk, applied
    only once the total exceeds ``ratio_floor`` bytes (a 1 KiB archive of text that
    expands 300 times fills no disk). ``max_members``: entries in the archive (each one
    costs memory while listing, and an inode when written).
    """

    max_bytes: int | None = 64 * _GIB
    max_ratio: float | None = 200.0
    max_members: int | None = 200_000
    ratio_floor: int = 16 << 20

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_ratio", "max_members"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or math.isnan(value)
                                      or value <= 0):
                raise AimsError(f"Extraction limit {name} must be a positive number or None "
                                f"(no limit), not {value!r}.")


DEFAULT_LIMITS = ExtractLimits()

#: the override set by :func:`extraction_limits`; None: environment variables or defaults
_LIMITS: ContextVar[ExtractLimits | None] = ContextVar("aims_extract_limits", default=None)

#: environment variable -> (limit, unit of its value)
_ENV = {
    "AIMS_MAX_EXTRACT_GB": ("max_bytes", _GIB),
    "AIMS_MAX_EXTRACT_RATIO": ("max_ratio", 1),
    "AIMS_MAX_EXTRACT_MEMBERS": ("max_members", 1),
}


def _parse_limit(text: str | float | int, what: str, unit: int, field: str) -> int | float | None:
    """A positive number (``inf``/``none`` lift the limit) times ``unit``; else AimsError."""
    raw = str(text).strip().lower()
    if raw in ("inf", "infinity", "none", "unlimited"):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value <= 0:
        raise AimsError(
            f"{what} must be a positive number (or `inf` for no limit), not {quote(str(text), 60)}.")
    if math.isinf(value):
        return None
    scaled = value * unit
    return max(1, int(scaled)) if field in ("max_bytes", "max_members") else scaled


def _limits_from_env(base: ExtractLimits) -> ExtractLimits:
    changes: dict[str, object] = {}
    for var, (field, unit) in _ENV.items():
        text = os.environ.get(var)
        if text is not None and text.strip():
            changes[field] = _parse_limit(text, f"The environment variable {var}", unit, field)
    return replace(base, **changes) if changes else base


def current_limits() -> ExtractLimits:
    """The limits :func:`safe_extract` applies now: those of the innermost
    :func:`extraction_limits` block, else the defaults overridden by the environment
    variables ``AIMS_MAX_EXTRACT_GB``, ``AIMS_MAX_EXTRACT_RATIO``,
    ``AIMS_MAX_EXTRACT_MEMBERS``. Raises AimsError naming a malformed variable."""
    chosen = _LIMITS.get()
    return chosen if chosen is not None else _limits_from_env(DEFAULT_LIMITS)


@contextmanager
def extraction_limits(max_bytes: float | None = None, max_ratio: float | None = None, *,
                      max_gb: float | None = None,
                      max_members: float | None = None) -> Iterator[ExtractLimits]:
    """Within the block, :func:`safe_extract` uses these limits (context-local: other
    threads and asyncio tasks keep theirs).

    An argument left as None keeps the current value (the environment variable, else the
    default), so a command line can pass its flags straight through, None when absent;
    ``math.inf`` lifts a limit. ``max_gb`` is ``max_bytes`` in GiB (2**30 bytes):
    ``aims prepare --max-extract-gb N`` maps to ``max_gb=N`` and ``--max-extract-ratio R``
    to ``max_ratio=R``. Raises AimsError, naming the flag, for zero, negative or NaN.
    """
    given = {
        "max_bytes": (max_bytes, "max_bytes", 1),
        "max_gb": (max_gb, "--max-extract-gb", _GIB),
        "max_ratio": (max_ratio, "--max-extract-ratio", 1),
        "max_members": (max_members, "max_members", 1),
    }
    changes: dict[str, object] = {}
    for key, (value, what, unit) in given.items():
        if value is not None:
            field = "max_bytes" if key == "max_gb" else key
            changes[field] = _parse_limit(value, what, unit, field)
    chosen = replace(current_limits(), **changes) if changes else current_limits()
    token = _LIMITS.set(chosen)
    try:
        yield chosen
    finally:
        _LIMITS.reset(token)


class ExtractLimitError(UnsafeArchiveError):
    """An archive would write more bytes or members, or expand more, than the limits of
    :class:`ExtractLimits` allow (a zip or tar bomb, or a release larger than expected)."""


class _Budget:
    """Counts an archive's members and bytes against :class:`ExtractLimits`: first the
    declared sizes while listing (nothing written yet), then the bytes actually written."""

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.archive_size = max(archive.stat().st_size, 1)
        self.members = 0
        self.bytes = 0

    def member(self) -> None:
        self.members += 1
        cap = self.limits.max_members
        if cap is not None and self.members > cap:
            raise ExtractLimitError(
                f"Refusing to extract {self.archive}: it holds more than {cap:,} members, "
                f"over the limit (set AIMS_MAX_EXTRACT_MEMBERS=N if you trust this archive). "
                f"Nothing was extracted.",
                path=self.archive,
            )

    def add(self, nbytes: int, *, written: bool = False) -> None:
        """Count ``nbytes`` more; raise once the total breaks a limit."""
        self.bytes += nbytes
        lim = self.limits
        doing = "has written" if written else "would write"
        after = ("The partial extraction was removed." if written else "Nothing was extracted.")
        if lim.max_bytes is not None and self.bytes > lim.max_bytes:
            raise ExtractLimitError(
                f"Refusing to extract {self.archive}: it {doing} at least {self.bytes:,} "
                f"bytes, over the limit of {_size(lim.max_bytes)} on extracted size. "
                f"{after} Pass --max-extract-gb N (or set AIMS_MAX_EXTRACT_GB=N) if you "
                f"trust this archive and have the space.",
                path=self.archive,
            )
        if (lim.max_ratio is not None and self.bytes > lim.ratio_floor
                and self.bytes > lim.max_ratio * self.archive_size):
            expand = "has expanded" if written else "would expand"
            raise ExtractLimitError(
                f"Refusing to extract {self.archive}: it {expand} from {self.archive_size:,} "
                f"bytes to at least {self.bytes:,} ({self.bytes / self.archive_size:,.0f} "
                f"times its size), over the limit of {lim.max_ratio:g} times: this is what a "
                f"zip bomb looks like. {after} Pass --max-extract-ratio N (or set "
                f"AIMS_MAX_EXTRACT_RATIO=N) if you trust this archive.",
                path=self.archive,
            )


def _size(nbytes: float) -> str:
    return f"{nbytes / _GIB:.4g} GiB ({nbytes:,.0f} bytes)"


# --------------------------------------------------------------------------- members

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


def _refuse(archive: Path, name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"Refusing to extract {archive}: member {quote(name)} {why}. Nothing was "
        f"extracted. The archive is damaged or malicious: delete it and get it again "
        f"from the official source.",
        path=archive,
    )


def _too_long_link(archive: Path, name: str, size: int) -> UnsafeArchiveError:
    return _refuse(archive, name, f"is a link whose target is {size:,} bytes long, over the "
                                  f"limit of {MAX_LINK_TARGET:,} bytes")


class _Backend(ABC):
    """What the extractor needs from an archive format."""

    #: exceptions that mean "corrupt or truncated archive"
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, archive: Path) -> None:
        self.archive = archive

    @abstractmethod
    def members(self) -> Iterator[Member]:
        """All entries, in archive order (order matters for links), produced one by one
        so that the caller can stop a bomb at its first oversized entry."""

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

    def members(self) -> Iterator[Member]:
        for info in self._zip.infolist():
            if info.flag_bits & 0x1:
                raise AimsError(
                    f"{self.archive} is password-protected (member {quote(info.filename)} is "
                    f"encrypted); AIMS cannot extract it. Extract it by hand and pass the "
                    f"folder with `--source FOLDER`.",
                    path=self.archive,
                )
            # Unix-made zips carry st_mode in the high 16 bits; its file-type bits are 0
            # when the tool recorded permissions only (Python's writestr does that).
            fmt = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or fmt == stat.S_IFDIR:
                yield Member(info.filename, "dir", handle=info)
            elif fmt == stat.S_IFLNK:
                # zipfile itself would write a link as a text file holding its target;
                # we treat it as the link it is, so it gets validated like a tar link.
                yield Member(info.filename, "symlink", link=self._link_target(info), handle=info)
            elif fmt not in (0, stat.S_IFREG):
                yield Member(info.filename, "special", handle=info)
            else:
                yield Member(info.filename, "file", size=info.file_size, handle=info)

    def _link_target(self, info: zipfile.ZipInfo) -> str:
        """The link's target, reading at most MAX_LINK_TARGET + 1 bytes whatever the
        header declares (a deflated "target" may inflate to gigabytes)."""
        if info.file_size > MAX_LINK_TARGET:
            raise _too_long_link(self.archive, info.filename, info.file_size)
        with self._zip.open(info) as fh:
            data = fh.read(MAX_LINK_TARGET + 1)
        if len(data) > MAX_LINK_TARGET:
            raise _too_long_link(self.archive, info.filename, len(data))
        return data.decode("utf-8", "surrogateescape")

    def open_member(self, member: Member) -> IO[bytes]:
        assert isinstance(member.handle, zipfile.ZipInfo)
        return self._zip.open(member.handle)

    def close(self) -> None:
        self._zip.close()


class _HeaderTooLarge(Exception):
    """A tar extended header (long name/link, pax) larger than MAX_TAR_HEADER, or one that
    brings the archive's total over MAX_TAR_HEADERS_TOTAL."""

    def __init__(self, name: str, size: int, total: int) -> None:
        super().__init__(name, size, total)
        self.name, self.size, self.total = name, size, total


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long-name/long-link or pax header whole into memory, whatever
    size its header declares; this refuses one over MAX_TAR_HEADER bytes before reading
    it. (Overrides tarfile's ``_proc_*`` hooks, present in CPython since 2.x; when a
    future Python renames them, the bound silently goes and the name-length checks of
    :func:`_plan` still refuse the member afterwards.)"""

    def _bounded(self, tarfile_: tarfile.TarFile) -> None:
        total = getattr(tarfile_, "_aims_extended_bytes", 0) + self.size
        tarfile_._aims_extended_bytes = total  # type: ignore[attr-defined]
        if self.size > MAX_TAR_HEADER or total > MAX_TAR_HEADERS_TOTAL:
            raise _HeaderTooLarge(self.name, self.size, total)

    def _proc_gnulong(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._bounded(tarfile_)
        return super()._proc_gnulong(tarfile_)  # type: ignore[misc]

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._bounded(tarfile_)
        return super()._proc_pax(tarfile_)  # type: ignore[misc]


class _TarBackend(_Backend):
    errors = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)

    def __init__(self, archive: Path) -> None:
        super().__init__(archive)
        # "r:*" picks the compression from the content (gzip/bzip2/xz/none). Opening
        # reads the first header already.
        try:
            self._tar = tarfile.open(archive, "r:*", tarinfo=_BoundedTarInfo)
        except _HeaderTooLarge as err:
            raise self._too_large(err) from None

    def members(self) -> Iterator[Member]:
        # Iterating reads every header, i.e. the whole (decompressed) archive: the price
        # of validating everything before writing anything. One at a time, so the caller
        # stops at the first member that breaks a limit, before the rest is decompressed.
        try:
            for info in self._tar:
                yield self._member(info)
        except _HeaderTooLarge as err:
            raise self._too_large(err) from None

    def _too_large(self, err: _HeaderTooLarge) -> UnsafeArchiveError:
        if err.size > MAX_TAR_HEADER:
            why = (f"has an extended (long name or pax) header of {err.size:,} bytes, over "
                   f"the limit of {MAX_TAR_HEADER:,} bytes")
        else:
            why = (f"brings the archive's extended (long name or pax) headers to "
                   f"{err.total:,} bytes, over the limit of {MAX_TAR_HEADERS_TOTAL:,} bytes")
        return _refuse(self.archive, err.name or "(extended header)", why)

    @staticmethod
    def _member(info: tarfile.TarInfo) -> Member:
        if info.isreg():
            return Member(info.name, "file", size=info.size, handle=info)
        if info.isdir():
            return Member(info.name, "dir", handle=info)
        if info.issym():
            return Member(info.name, "symlink", link=info.linkname, handle=info)
        if info.islnk():
            return Member(info.name, "hardlink", link=info.linkname, handle=info)
        # character/block devices, fifos, contiguous files, unknown types
        return Member(info.name, "special", handle=info)

    def open_member(self, member: Member) -> IO[bytes]:
        assert isinstance(member.handle, tarfile.TarInfo)
        stream = self._tar.extractfile(member.handle)
        if stream is None:  # pragma: no cover - only for non-regular members
            raise tarfile.ReadError(f"member {quote(member.name)} has no data")
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
                f"{quote(self._member.name)}"))
        self._left -= len(data)
        self._sum = zlib.crc32(data, self._sum)
        if self._left == 0:
            self._verify()
        return data

    def _verify(self) -> None:
        if self._crc is not None and self._sum != self._crc:
            raise self._fail(_ToolFailed(
                f"member {quote(self._member.name)} decoded by {self._what} fails its CRC32 check "
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

    def members(self) -> Iterator[Member]:
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
                    f"{self.archive}: member {quote(name)} continues in another volume; AIMS "
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
                if (info.file_size or 0) > MAX_LINK_TARGET:
                    raise _too_long_link(self.archive, name, info.file_size)
                target = rf.read(info)[: MAX_LINK_TARGET + 1].decode("utf-8", "surrogateescape")
                out.append(Member(name, "symlink", link=target, handle=info))
            elif fmt not in (0, stat.S_IFREG):
                out.append(Member(name, "special", handle=info))
            else:
                out.append(Member(name, "file", size=info.file_size, handle=info))
        return iter(out)

    def _encrypted(self, name: str | None) -> AimsError:
        what = f"member {quote(name)} is encrypted" if name else "its headers are encrypted"
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
                raise _ToolFailed(f"`bsdtar` output ended before member {quote(member.name)}")
            if info.isreg() and info.name == want:
                if info.size != member.size:
                    raise _ToolFailed(
                        f"`bsdtar` gives member {quote(member.name)} {info.size:,} bytes, the "
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
            f"Could not decode {self.archive} (RAR {version}) with `{self._tool}`: {_short(err)}"
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
    an existing non-empty ``target`` without a marker: it was not made by us. Applies
    :func:`current_limits` (see :func:`extraction_limits`); raises
    :class:`UnsafeArchiveError` (:class:`ExtractLimitError` for the limits) for a hostile
    archive and :class:`AimsError` for every other problem a user can fix, leaving
    nothing behind either way.
    """
    archive = Path(archive)
    target = Path(target)
    if not archive.is_file():
        raise AimsError(f"Archive {archive} does not exist or is not a file.", path=archive)
    current_limits()  # a malformed AIMS_MAX_EXTRACT_* variable is reported before any work
    stamp = _stamp(archive, fingerprint)
    marker = target / MARKER
    if target.is_dir():
        if _read_marker(marker) == stamp:
            return target
        if not os.path.lexists(marker) and any(target.iterdir()):
            raise AimsError(
                f"Cannot extract {archive} into {target}: that folder already exists, is "
                f"not empty and was not extracted by AIMS (no {MARKER} file). Move or "
                f"delete it, or choose another destination.",
                path=target,
            )
    elif target.exists() or target.is_symlink():
        raise AimsError(
            f"Cannot extract {archive} into {target}: a file with that name exists. "
            f"Move or delete it.",
            path=target,
        )

    backend_cls = _backend_for(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_extractions(target.parent)
    tmp: Path | None = None
    try:
        # Only reading the archive happens under _opened: its errors mean "corrupt".
        with _opened(backend_cls, archive) as backend:
            plan = _plan(archive, backend.members())  # raises before anything is written
            tmp = _temporary(target, "extracting")
            _write(backend, archive, plan, tmp, progress=progress)
        assert tmp is not None
        _check_links_inside(archive, tmp)
        # Marker last: its presence certifies that everything before it was written. The
        # name is reserved (no member can be there) and the write replaces, never follows.
        atomic_write_text(tmp / MARKER, json.dumps(stamp, sort_keys=True) + "\n")
        _swap_into_place(tmp, target)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- temporaries

#: ``.<name>.extracting-<pid>-<8 hex>`` (being written) and ``.<name>.old-<pid>-<8 hex>``
#: (the previous extraction, during the swap)
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:extracting|old)-(?P<pid>\d{1,10})-[0-9a-f]{8}$")
_TEMP_STEM = 100  # characters of the target's name kept in a temporary's name


def _temporary(target: Path, what: str) -> Path:
    """A fresh hidden folder beside ``target`` whose name records our pid, so that the
    next run can tell a dead run's leftover from a live one's work."""
    path = target.parent / f".{target.name[:_TEMP_STEM]}.{what}-{os.getpid()}-{secrets.token_hex(4)}"
    os.mkdir(path, 0o755)
    return path


def _alive(pid: int) -> bool:
    try:
        return process_alive(pid)
    except (OverflowError, ValueError):  # not a pid this system can have
        return False


def remove_stale_extractions(folder: str | Path) -> list[Path]:
    """Delete the temporary folders that killed extractions left in ``folder``
    (``.<name>.extracting-<pid>-<hex>`` and ``.<name>.old-<pid>-<hex>`` whose process is
    gone); return them. Those of live processes are kept. Links are removed, never
    followed. Called by :func:`safe_extract` before each extraction."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or _alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
        removed.append(Path(entry.path))
    return removed


# --------------------------------------------------------------------------- internals


def _backend_for(archive: Path) -> type[_Backend]:
    kind = archive_kind(archive)
    backend_cls = _BACKENDS.get(kind or "")
    if backend_cls is not None:
        return backend_cls
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


def _stamp(archive: Path, fingerprint: str | None) -> dict[str, object]:
    st = archive.stat()
    if fingerprint is not None:
        return {"archive": archive.name, "fingerprint": fingerprint}
    return {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


#: largest marker read (ours is one line of JSON)
_MARKER_MAX_BYTES = 64 * 1024


def _read_marker(marker: Path) -> object:
    """Our marker's record, or None for anything that is not one: absent, a link (never
    ours: we write a plain file), a FIFO or device (never opened), too large, not JSON."""
    try:
        return load_json_bounded(marker, limit=_MARKER_MAX_BYTES, what="an extraction marker", max_depth=4)
    except AimsError:
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
            f"{_short(err)}). Delete it and download it again.",
            path=archive,
        ) from err
    finally:
        if backend is not None:
            backend.close()


Key = tuple[str, ...]


@dataclass(frozen=True)
class _Step:
    """One validated action: ``dest`` is a path relative to the extraction root, with
    ``..`` resolved; no prefix of it is a symlink of the archive."""

    member: Member
    dest: tuple[str, ...]
    source: tuple[str, ...] | None = None  # hardlink: path of the file it copies
    replaces: bool = False  # a later duplicate of an earlier file (tar semantics)


def _split(name: str) -> list[str]:
    """Components of a member name (or hardlink target, which we resolve ourselves).
    Backslashes count as separators: Windows-made zips use them, and on POSIX a literal
    "..\\\\evil" would otherwise slip past a check that splits on "/" only."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _split_target(link: str) -> list[str]:
    """Components of a symlink target exactly as the kernel will read it: "/" only (a
    backslash is an ordinary character there; splitting on it too would let
    ``x\\\\y/../..`` look one level deeper than it is)."""
    return [p for p in link.split("/") if p not in ("", ".")]


def _is_absolute(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or (len(n) >= 2 and n[1] == ":" and n[0].isalpha())


def _key(part: str) -> str:
    """A path component as a case-insensitive, normalising file system (macOS, Windows)
    would compare it, so that ``Up`` and ``up`` are one path for the link checks."""
    if part.isascii():  # the common case, 5x faster; ASCII is already NFC
        return part.lower()
    return unicodedata.normalize("NFC", part).casefold()


def _walk(start: Key, start_key: Key, parts: Iterable[str], links: set[Key]) -> tuple[Key, Key] | str:
    """Resolve ``parts`` lexically from ``start`` (a folder with no link in it).

    Returns the path and its key, or a reason: ``"outside"`` when a ``..`` climbs above
    the root, ``"link:<path>"`` at the first component that is a symlink of the archive.
    Lexical resolution is exact here because no component may be a link."""
    out = list(start)
    keys = list(start_key)
    for part in parts:
        if part == "..":
            if not out:
                return "outside"
            out.pop()
            keys.pop()
            continue
        out.append(part)
        keys.append(_key(part))
        if tuple(keys) in links:
            return "link:" + "/".join(out)
    return tuple(out), tuple(keys)


def _lexical(parts: list[str]) -> Key | None:
    """``parts`` with ``..`` applied, ignoring links; None when it climbs above the root."""
    resolved = _walk((), (), parts, set())
    return None if isinstance(resolved, str) else resolved[0]


@dataclass(frozen=True)
class _Listed:
    """A member that passed the checks needing no other member (pass 1 of _plan)."""

    member: Member
    parts: tuple[str, ...]


def _plan(archive: Path, members: Iterable[Member], limits: ExtractLimits | None = None) -> list[_Step]:
    """Validate every member and compute where it goes. Writes nothing. Pass 1 lists the
    members (checking names, kinds, sizes and limits) and collects every symlink's path;
    pass 2 places each member, knowing all the links, declared before or after it."""
    budget = _Budget(archive, limits or current_limits())
    listed, links = _screen(archive, members, budget)
    return _place(archive, listed, links, budget)


def _name_problem(m: Member) -> str | None:
    """Why the member's own name or kind is unacceptable, or None."""
    if "\x00" in m.name:
        return "has a NUL byte in its name"
    if m.kind == "special":
        return "is a device file, fifo or other special file"
    try:
        encoded = os.fsencode(m.name)
    except UnicodeEncodeError:
        return "has a name that is not a valid file name on this system"
    if len(encoded) > MAX_NAME:
        return f"has a name of {len(encoded):,} bytes, over the limit of {MAX_NAME:,}"
    if _is_absolute(m.name):
        return "has an absolute path"
    longest = len(encoded) if len(encoded) <= MAX_COMPONENT else max(
        (len(os.fsencode(p)) for p in _split(m.name)), default=0)
    if longest > MAX_COMPONENT:
        return (f"has a path component of {longest:,} bytes, over the limit of "
                f"{MAX_COMPONENT} bytes of a file name")
    return None


def _link_problem(m: Member) -> str | None:
    """Why the link target itself is unacceptable (before looking at other members)."""
    link = m.link
    if link is None or link == "":
        return f"is a {m.kind} with an empty target"
    if "\x00" in link:
        return f"is a {m.kind} with a NUL byte in its target"
    try:
        size = len(os.fsencode(link))
    except UnicodeEncodeError:
        return f"is a {m.kind} whose target is not a valid file name on this system"
    if size > MAX_LINK_TARGET:
        return f"is a link whose target is {size:,} bytes long, over the limit of {MAX_LINK_TARGET:,} bytes"
    if _is_absolute(link):
        return f"is a {m.kind} to an absolute path ({quote(link)})"
    return None


def _screen(archive: Path, members: Iterable[Member], budget: _Budget) -> tuple[list[_Listed], set[Key]]:
    """Pass 1: per-member checks, declared sizes against the limits, all symlink paths."""
    listed: list[_Listed] = []
    links: set[Key] = set()
    for m in members:
        budget.member()
        why = _name_problem(m)
        if why is None and m.kind in ("symlink", "hardlink"):
            why = _link_problem(m)
        if why is not None:
            raise _refuse(archive, m.name, why)
        parts = _split(m.name)
        if not parts:
            if m.kind == "dir":
                continue  # "./" - the root itself
            raise _refuse(archive, m.name, "has an empty name")
        if m.kind == "file":
            budget.add(m.size)
        if m.kind == "symlink":
            where = _lexical(parts)
            if where is None or parts[-1] == "..":
                raise _refuse(archive, m.name, "would be written outside the extraction folder")
            key = tuple(_key(p) for p in where)
            if key in links:
                raise _refuse(archive, m.name, "is a second symlink of the same name")
            links.add(key)
        listed.append(_Listed(m, tuple(parts)))
    return listed, links


def _place(archive: Path, listed: list[_Listed], links: set[Key], budget: _Budget) -> list[_Step]:
    """Pass 2: where each member goes; refuse paths through links, links through links,
    collisions between kinds, hardlinks to anything but an earlier file, the marker name."""
    kinds: dict[Key, str] = {}  # "file" | "dir" | "symlink", explicit or implied folders
    files: dict[Key, tuple[Key, int]] = {}  # key -> (path as written, size)
    marker_key = (_key(MARKER),)
    steps: list[_Step] = []
    for item in listed:
        m = item.member

        def refuse(why: str) -> UnsafeArchiveError:
            return _refuse(archive, m.name, why)

        walked = _walk((), (), item.parts[:-1], links)
        if walked == "outside" or item.parts[-1] == "..":
            raise refuse("would be written outside the extraction folder")
        if isinstance(walked, str):
            raise refuse(f"would be written through the symlink {quote(walked[5:])} of the "
                         f"archive (no member may pass through a link)")
        dest = walked[0] + (item.parts[-1],)
        dkey = walked[1] + (_key(item.parts[-1]),)
        if dkey == marker_key:
            raise refuse(f"uses the name {MARKER}, which AIMS reserves for its own record of a "
                         f"finished extraction")
        _claim_folders(dest, dkey, kinds, refuse)
        kind = "file" if m.kind in ("file", "hardlink") else m.kind
        prev = kinds.get(dkey)
        if prev is not None and (prev != kind or kind == "symlink"):
            raise refuse(f"is a {kind} with the same name as an earlier {prev} of the archive "
                         f"(names are compared ignoring case)")
        kinds[dkey] = kind
        source: Key | None = None
        if m.kind == "symlink":
            assert m.link is not None
            _check_symlink(m, dest, dkey, links, refuse)
        elif m.kind == "hardlink":
            source, size = _hardlink_source(m, dkey, kinds, files, links, refuse)
            budget.add(size)
            files[dkey] = (dest, size)
        elif m.kind == "file":
            files[dkey] = (dest, m.size)
        steps.append(_Step(m, dest, source=source, replaces=prev == "file"))
    return steps


def _claim_folders(dest: Key, dkey: Key, kinds: dict[Key, str],
                   refuse: Callable[[str], UnsafeArchiveError]) -> None:
    """Record the member's parent folders; refuse one that the archive holds as a file.
    Once a folder is known, so are all of its parents: amortised O(1) per member."""
    if len(dkey) < 2 or kinds.get(dkey[:-1]) == "dir":
        return
    for i in range(1, len(dkey)):
        prev = kinds.setdefault(dkey[:i], "dir")
        if prev != "dir":
            raise refuse(f"would be written inside {quote('/'.join(dest[:i]))}, which is a "
                         f"{prev} of the archive")


def _check_symlink(m: Member, dest: Key, dkey: Key, links: set[Key],
                   refuse: Callable[[str], UnsafeArchiveError]) -> None:
    assert m.link is not None
    resolved = _walk(dest[:-1], dkey[:-1], _split_target(m.link), links)
    if resolved == "outside":
        raise refuse(f"is a symlink pointing outside the extraction folder ({quote(m.link)})")
    if isinstance(resolved, str):
        raise refuse(f"is a symlink whose target {quote(m.link)} passes through or names "
                     f"another symlink of the archive, {quote(resolved[5:])} (links to links "
                     f"are refused: their meaning depends on the order of extraction)")


def _hardlink_source(m: Member, dkey: Key, kinds: dict[Key, str], files: dict[Key, tuple[Key, int]],
                     links: set[Key], refuse: Callable[[str], UnsafeArchiveError]) -> tuple[Key, int]:
    """The path and size of the earlier file a hardlink copies (tar: relative to the root)."""
    assert m.link is not None
    resolved = _walk((), (), _split(m.link), links)
    if resolved == "outside":
        raise refuse(f"is a hardlink pointing outside the extraction folder ({quote(m.link)})")
    if isinstance(resolved, str):
        raise refuse(f"is a hardlink through the symlink {quote(resolved[5:])} of the archive")
    skey = resolved[1]
    if skey == dkey:
        raise refuse("is a hardlink to itself")
    if kinds.get(skey) != "file" or skey not in files:
        raise refuse(f"is a hardlink to {quote(m.link)}, which is not a file earlier in the archive")
    return files[skey]


def _inside(root_real: str, path: str | os.PathLike) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


@contextmanager
def _writing(archive: Path, member: Member, root: Path) -> Iterator[None]:
    """Turn a failure to *write* (disk full, permissions) into a user-facing error;
    errors *reading* the archive are left to :func:`_opened`, which calls them corruption."""
    try:
        yield
    except OSError as err:
        raise AimsError(
            f"Could not extract member {quote(member.name)} of {archive} into {root}: "
            f"{_short(err.strerror or err)}. Check free disk space and permissions, then run "
            f"the command again; nothing was left under the final folder name.",
            path=archive,
        ) from err


def _outside_error(archive: Path, name: str, what: str = "member") -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"Refusing to extract {archive}: {what} {quote(name)} would be written or point "
        f"outside the extraction folder. The partial extraction was removed. Delete the "
        f"archive and get it again from the official source.",
        path=archive,
    )


def _write(backend: _Backend, archive: Path, plan: list[_Step], root: Path, *, progress: bool) -> None:
    """Carry out a validated plan under ``root`` (the temporary folder)."""
    root_real = os.path.realpath(root)
    budget = _Budget(archive, current_limits())
    safe_folders: set[Path] = set()  # parents already checked and created
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), unit="file", desc=f"extracting {archive.name}", leave=False)
    try:
        for step in plan:
            m = step.member
            dest = root.joinpath(*step.dest)
            parent = dest.parent
            if parent not in safe_folders:
                # Second line of defence, checked before mkdir can follow anything: the
                # parent's real path must be inside the root. A checked folder stays one:
                # nothing replaces an existing folder by a link.
                if not _inside(root_real, parent):
                    raise _outside_error(archive, m.name)
                with _writing(archive, m, root):
                    parent.mkdir(parents=True, exist_ok=True)
                safe_folders.add(parent)
            with _writing(archive, m, root):
                if step.replaces and m.kind != "dir" and (dest.is_symlink() or dest.is_file()):
                    dest.unlink()  # a later file replaces an earlier one, as tar does
                if m.kind == "dir":
                    dest.mkdir(exist_ok=True)
                elif m.kind == "symlink":
                    assert m.link is not None
                    os.symlink(m.link, dest)
            if m.kind == "hardlink":
                assert step.source is not None
                src = root.joinpath(*step.source)
                if not _inside(root_real, src):  # pragma: no cover - the plan prevents it
                    raise _outside_error(archive, m.name, "hardlink")
                # A copy, not os.link: works across filesystems and never ties two
                # paths of the prepared tree together.
                _copy_file(archive, m, src, dest, root, budget)
            elif m.kind == "file":
                _write_file(backend, archive, m, dest, root, budget)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


_WRITE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                | getattr(os, "O_BINARY", 0))


def _write_file(backend: _Backend, archive: Path, member: Member, dest: Path, root: Path,
                budget: _Budget) -> None:
    """Stream one member to ``dest`` (O_NOFOLLOW | O_EXCL: never through a link, never
    into something that exists), counting its bytes against its header and the limits."""
    written = 0
    with _writing(archive, member, root):
        out = os.fdopen(os.open(dest, _WRITE_FLAGS, 0o644), "wb")
    with out, backend.open_member(member) as src:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > member.size:
                raise UnsafeArchiveError(
                    f"Refusing to extract {archive}: member {quote(member.name)} produces "
                    f"more than the {member.size:,} bytes its header declares. The partial "
                    f"extraction was removed. The archive is damaged or malicious: delete "
                    f"it and get it again from the official source.",
                    path=archive,
                )
            budget.add(len(chunk), written=True)
            with _writing(archive, member, root):
                out.write(chunk)
    if written != member.size:
        raise AimsError(
            f"{archive} is corrupt or truncated: member {quote(member.name)} should have "
            f"{member.size:,} bytes, {written:,} could be read. Delete the archive and "
            f"download it again.",
            path=archive,
        )


def _copy_file(archive: Path, member: Member, src: Path, dest: Path, root: Path, budget: _Budget) -> None:
    """A hardlink's copy of an already extracted file, counted like any written byte."""
    with _writing(archive, member, root):
        fin = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fin, "rb") as inp, os.fdopen(os.open(dest, _WRITE_FLAGS, 0o644), "wb") as out:
            while chunk := inp.read(_CHUNK):
                budget.add(len(chunk), written=True)
                out.write(chunk)


def _check_links_inside(archive: Path, root: Path) -> None:
    """After writing: every link under ``root`` must resolve inside it, and nothing but
    files, folders and links may be there (the last line of defence)."""
    root_real = os.path.realpath(root)
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    if not _inside(root_real, entry.path):
                        raise _outside_error(archive, os.path.relpath(entry.path, root), "link")
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif not entry.is_file(follow_symlinks=False):  # pragma: no cover
                    raise _refuse(archive, os.path.relpath(entry.path, root),
                                  "became a special file")


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp`` with renames only, so that at every instant
    ``target`` is either the previous complete folder, absent, or the new complete one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = _temporary(target, "old")
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
