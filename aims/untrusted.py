"""Reading files that came from outside: the one bounded, link-aware, non-blocking reader.

Why one module: AIMS reads many files it did not write (predictions, results, a release's
COCO instances, run folders, markers and cards in folders that may hold someone else's
work). Each such read must hold the same promises (docs/security.md), and six private
copies of them had already drifted (one followed links, one blocked on a FIFO, one had no
depth limit). The promises:

* **only a regular file is read.** The entry is classified first (``lstat``, or ``stat``
  when the caller follows links) so a FIFO, a device, a socket or a folder is refused by
  name and never opened (opening some devices has side effects). It is then opened with
  ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot block the open) and, unless links are
  followed, ``O_NOFOLLOW`` (a link swapped in meanwhile fails), and checked again with
  ``fstat`` on the descriptor, which is what is actually read.
* **a size bound before and during the read.** The size from ``fstat`` is checked before
  anything is read, and the read itself stops at ``limit + 1`` bytes (a file that grows,
  or lies about its size, is still refused).
* **JSON without surprises.** ``NaN``/``Infinity`` and numbers that overflow to infinity
  are refused (they are not JSON, and a NaN would compare false with every bound), and so
  is nesting deeper than ``max_depth`` (found by a scan of the raw text before parsing,
  without recursion) or deeper than Python's parser can go.

``follow_links``: a path the user names on the command line may be a link (it is their
own path); a link *inside* an input folder is refused. Every refusal is an
:class:`UntrustedFileError` (an :class:`~aims.errors.AimsError`, so the CLI prints one
paragraph and exits 2) whose ``reason`` is a short phrase that follows the file's path and
names no content of the file and no other path, for callers that word their own message
(a card that is published must not name the user's folders).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from aims.errors import AimsError

__all__ = [
    "BLOCK_DEVICE", "CHAR_DEVICE", "DIRECTORY", "FIFO", "FILE", "LINK", "MISSING", "OTHER", "SOCKET",
    "BadJsonError", "FileTooLargeError", "MissingFileError", "NotRegularFileError", "UnreadableFileError",
    "UntrustedFileError", "classify", "describe", "json_depth", "kind_of_mode", "load_json_bounded",
    "nested_deeper_than", "not_regular_error", "open_regular", "parse_json", "read_bounded",
]

# --------------------------------------------------------------------------- kinds

FILE = "regular file"
DIRECTORY = "directory"
LINK = "symbolic link"
FIFO = "FIFO (named pipe)"
CHAR_DEVICE = "character device"
BLOCK_DEVICE = "block device"
SOCKET = "socket"
OTHER = "special file"
#: what :func:`classify` says of a path that does not exist
MISSING = "missing"

_MODE_TESTS = ((stat.S_ISREG, FILE), (stat.S_ISDIR, DIRECTORY), (stat.S_ISLNK, LINK), (stat.S_ISFIFO, FIFO),
               (stat.S_ISCHR, CHAR_DEVICE), (stat.S_ISBLK, BLOCK_DEVICE), (stat.S_ISSOCK, SOCKET))

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CHUNK = 1 << 20


def kind_of_mode(mode: int) -> str:
    """The kind (one of the constants above) of an ``st_mode``."""
    return next((kind for test, kind in _MODE_TESTS if test(mode)), OTHER)


def describe(kind: str) -> str:
    """The kind with its article, as it reads after "is": ``a FIFO (named pipe)``."""
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


class UntrustedFileError(AimsError):
    """A file from outside that is refused. ``reason`` is a phrase that follows the file's
    path (``is a FIFO (named pipe), not a regular file``) naming no content and no other
    path; ``kind`` is what the entry is, when that is known."""

    def __init__(self, message: str, *, path: str | Path, reason: str, kind: str | None = None) -> None:
        super().__init__(message, path=path)
        self.reason = reason
        self.kind = kind


class MissingFileError(UntrustedFileError):
    """Nothing exists at the path."""


class NotRegularFileError(UntrustedFileError):
    """A link (where links are not followed), folder, FIFO, device or socket."""


class FileTooLargeError(UntrustedFileError):
    """More bytes than the caller's bound; ``size`` is what was seen (at least ``limit + 1``)."""

    def __init__(self, message: str, *, path: str | Path, reason: str, size: int, limit: int) -> None:
        super().__init__(message, path=path, reason=reason, kind=FILE)
        self.size = size
        self.limit = limit


class UnreadableFileError(UntrustedFileError):
    """The operating system refused to open or read it (permissions, I/O error)."""


class BadJsonError(UntrustedFileError):
    """Not UTF-8, not JSON, NaN/Infinity, or nested too deeply."""


def _tail(hint: str) -> str:
    return f" {hint.strip()}" if hint and hint.strip() else ""


def _link_target(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        return "an unreadable target"
    return target if len(target) <= 200 else target[:200] + "…"


def not_regular_error(path: str | Path, kind: str, *, what: str = "this input", hint: str = "",
                      follow_links: bool = False) -> NotRegularFileError:
    """The refusal of ``path``, found to be ``kind`` (not :data:`FILE`) by :func:`classify`
    or a caller's own ``lstat`` walk: the same words as :func:`open_regular` uses."""
    return _not_regular(Path(path), kind, what, hint, followed=follow_links)


def _not_regular(path: Path, kind: str, what: str, hint: str, *, followed: bool) -> NotRegularFileError:
    reason = f"is {describe(kind)}, not a regular file"
    via = ""
    if kind == LINK or (followed and os.path.islink(path)):
        via = f" ({'' if kind == LINK else 'a symbolic link '}to {_link_target(path)})"
    refused = "FIFOs, devices, sockets and folders" if followed else "links, FIFOs, devices, sockets and folders"
    return NotRegularFileError(
        f"{path} is {describe(kind)}{via}, not a regular file; {what} must be a plain file ({refused} are "
        f"never opened, so reading can neither hang nor run without end).{_tail(hint)}",
        path=path, reason=reason, kind=kind)


def _missing(path: Path, what: str, hint: str) -> MissingFileError:
    return MissingFileError(f"{path} does not exist; {what} was expected there. Check the path.{_tail(hint)}",
                            path=path, reason="does not exist", kind=MISSING)


def _unreadable(path: Path, exc: OSError, hint: str) -> UnreadableFileError:
    why = exc.strerror or str(exc)
    return UnreadableFileError(f"cannot read {path}: {why}.{_tail(hint)}", path=path,
                               reason=f"cannot be read ({why})")


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def _too_large(path: Path, size: int, limit: int, what: str, hint: str, *, grew: bool) -> FileTooLargeError:
    amount = f"at least {size:,} bytes" if grew else f"{size:,} bytes"
    bound = f"{limit:,}" + (f" ({_human(limit)})" if limit >= 1 << 10 else "")
    reason = f"is {amount}, more than the {bound} accepted"
    when = "while it was read (it grew, or its size was not its length)" if grew else "before it is read"
    return FileTooLargeError(f"{path} {reason} for {what}; it is refused {when}.{_tail(hint)}",
                             path=path, reason=reason, size=size, limit=limit)


# --------------------------------------------------------------------------- files


def classify(path: str | Path, *, follow_links: bool = False) -> str:
    """What ``path`` is, without opening it: one of :data:`FILE`, :data:`DIRECTORY`,
    :data:`LINK` (only when links are not followed), :data:`FIFO`, :data:`CHAR_DEVICE`,
    :data:`BLOCK_DEVICE`, :data:`SOCKET`, :data:`OTHER`, or :data:`MISSING` (nothing there,
    or a link to nothing). Any other failure is an :class:`UnreadableFileError`."""
    p = Path(path)
    try:
        st = os.stat(p) if follow_links else os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as exc:
        raise _unreadable(p, exc, "") from None
    return kind_of_mode(st.st_mode)


def open_regular(path: str | Path, *, what: str = "this input", limit: int | None = None,
                 follow_links: bool = False, hint: str = "") -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file (see the module
    docstring: classified before the open, ``O_NONBLOCK`` and, unless ``follow_links``,
    ``O_NOFOLLOW``, then ``fstat`` on the descriptor), of at most ``limit`` bytes when
    given. ``what`` names the file's role in messages ("a results file"); ``hint`` is
    appended to every message (what to do next)."""
    p = Path(path)
    kind = classify(p, follow_links=follow_links)
    if kind == MISSING:
        raise _missing(p, what, hint)
    if kind != FILE:
        raise _not_regular(p, kind, what, hint, followed=follow_links)
    try:
        fd = os.open(p, _OPEN_FLAGS | (0 if follow_links else _NOFOLLOW))
    except FileNotFoundError:
        raise _missing(p, what, hint) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:  # swapped for a link since the lstat
            raise _not_regular(p, LINK, what, hint, followed=False) from None
        now = classify(p, follow_links=follow_links) if exc.errno == errno.ENXIO else FILE
        if now not in (FILE, MISSING):  # ENXIO: swapped for a socket since the check
            raise _not_regular(p, now, what, hint, followed=follow_links) from None
        raise _unreadable(p, exc, hint) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device since the check
            raise _not_regular(p, kind_of_mode(st.st_mode), what, hint, followed=follow_links)
        if limit is not None and st.st_size > limit:
            raise _too_large(p, st.st_size, limit, what, hint, grew=False)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | Path, limit: int, *, what: str = "this input", follow_links: bool = False,
                 hint: str = "") -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), at most ``limit``:
    checked from ``fstat`` before reading, and the read stops at ``limit + 1`` bytes."""
    p = Path(path)
    with open_regular(p, what=what, limit=limit, follow_links=follow_links, hint=hint) as fh:
        chunks, size = [], 0
        try:
            while size <= limit:
                chunk = fh.read(min(_CHUNK, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise _unreadable(p, exc, hint) from None
    if size > limit:  # it grew while we read it
        raise _too_large(p, size, limit, what, hint, grew=True)
    return b"".join(chunks)


# --------------------------------------------------------------------------- JSON

# a JSON string (escapes included); the unrolled form is linear and fast in `re`
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: a refused number token is shown at most this long
_TOKEN_CHARS = 24


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays/objects in the JSON text ``data`` (``{"a": [1]}`` is
    2), from its brackets outside strings: no parsing, no recursion, vectorised."""
    return _scan(data, None)


def nested_deeper_than(data: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects more than ``max_depth`` deep;
    free when it holds at most ``max_depth`` brackets, and stops at the first level too deep."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    return _scan(data, max_depth) > max_depth


def _scan(data: bytes, stop_above: int | None) -> int:
    import numpy as np

    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for start in range(0, len(brackets), _CHUNK):
        codes = np.frombuffer(brackets, np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start)
        running = depth + np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1), dtype=np.int64)
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


class _Refused(Exception):
    def __init__(self, token: str, why: str) -> None:
        super().__init__(token)
        shown = token if len(token) <= _TOKEN_CHARS else f"{token[:12]}…{token[-4:]}"
        self.reason = f"holds {shown}, {why}"


def _refuse_constant(token: str) -> Any:
    raise _Refused(token, "which is not a number JSON allows (NaN and Infinity are not JSON)")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _Refused(token, "a number that overflows a 64-bit float to infinity")
    return value


def parse_json(data: bytes, *, source: str | Path, what: str = "this input", max_depth: int | None = None,
               hint: str = "", parse_constant: Callable[[str], Any] | None = None,
               parse_float: Callable[[str], Any] | None = None,
               parse_int: Callable[[str], Any] | None = None) -> Any:
    """UTF-8 JSON text → Python values, with one clear :class:`BadJsonError` naming
    ``source`` for text that is not UTF-8 or not JSON, nesting deeper than ``max_depth``
    (or than Python's parser can go), and NaN/±Infinity or floats that overflow to
    infinity. The ``parse_*`` hooks replace the defaults (``json.loads``' meaning; a
    caller may turn such numbers into markers instead of refusing them)."""
    p = Path(source)

    def bad(reason: str, detail: str) -> BadJsonError:
        return BadJsonError(f"{p} {detail}{_tail(hint)}", path=p, reason=reason)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = "is not UTF-8 text"
        raise bad(reason, f"{reason} (invalid byte at offset {exc.start}); {what} is UTF-8 JSON.") from None
    if max_depth is not None:
        if nested_deeper_than(data, max_depth):
            reason = f"is nested too deeply (arrays/objects more than {max_depth} levels inside each other)"
            raise bad(reason, f"{reason}; {what} never nests like that, so it is refused unparsed.")
    try:
        return json.loads(text, parse_constant=parse_constant or _refuse_constant,
                          parse_float=parse_float or _finite_float, parse_int=parse_int)
    except _Refused as exc:
        raise bad(exc.reason, f"{exc.reason}.") from None
    except RecursionError:
        reason = "is nested too deeply (arrays/objects inside each other beyond what the JSON parser can read)"
        raise bad(reason, f"{reason}; {what} never nests like that.") from None
    except json.JSONDecodeError as exc:
        reason = f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        raise bad(reason, f"{reason}.") from None


def load_json_bounded(path: str | Path, *, limit: int, what: str = "this input", max_depth: int | None = None,
                      follow_links: bool = False, hint: str = "",
                      parse_constant: Callable[[str], Any] | None = None,
                      parse_float: Callable[[str], Any] | None = None,
                      parse_int: Callable[[str], Any] | None = None) -> Any:
    """:func:`read_bounded` then :func:`parse_json`: a JSON file from outside, parsed
    only if it is a regular file of at most ``limit`` bytes nested at most ``max_depth``
    deep, without NaN/Infinity (unless the hooks say otherwise)."""
    data = read_bounded(path, limit, what=what, follow_links=follow_links, hint=hint)
    return parse_json(data, source=path, what=what, max_depth=max_depth, hint=hint,
                      parse_constant=parse_constant, parse_float=parse_float, parse_int=parse_int)
