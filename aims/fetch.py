"""Getting source files onto disk, verified, exactly once.

Every source file a converter needs is declared as a :class:`SourceFile` (name in the
cache, URL, pinned checksum, published size, manual-download instructions). :func:`fetch`
turns that declaration into a verified local path:

* ``source=PATH`` - the user already has the file (or an extracted folder): use it in
  place, verified, never copied (some sources are several GB).
* a file already in the cache - verified again before use (a cache can be corrupted by a
  full disk, a copy, a hand edit), reused when it matches.
* otherwise download it (pooch over HTTP, or an injected ``downloader`` callable, which is
  how tests exercise this path without network) to a temporary sibling, verify, and only
  then rename it into place. An interrupted or corrupted download therefore never sits in
  the cache under the final name, so "file present" always means "file verified once".
* hosts that need a browser (Google Drive confirmation pages, OneDrive, Baidu) are
  *manual* sources: when the file is missing we stop with one paragraph saying where to
  get it, where to put it and how to continue.

Cache location: ``cache_dir`` when given, else ``aims.paths.downloads_dir(dataset)``; one
of the two is required (converters pass their ``name`` as ``dataset``).

Checksums use pooch's notation (``"sha256:<hex>"``, ``"md5:<hex>"``; bare hex = sha256)
so the values can be copied from release pages and pooch registries alike. Verification
is done here with streamed :mod:`hashlib` so that a real download, an injected
downloader, a cached file and a user's ``--source`` file are all checked by the same code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aims.errors import AimsError, ChecksumError
from aims.untrusted import open_regular

__all__ = [
    "Downloader",
    "SourceFile",
    "fetch",
    "file_hash",
    "readable_network_error",
    "verify_file",
]

log = logging.getLogger(__name__)

#: ``downloader(url, output_path)``: writes the content of ``url`` to ``output_path``.
Downloader = Callable[[str, Path], None]

_CHUNK = 1 << 20  # 1 MiB: large enough for hashing/downloading GB files at disk speed
_PROGRESS_MIN_BYTES = 256 << 20  # hashing smaller files is too quick to deserve a bar
_DEFAULT_ALGORITHM = "sha256"


@dataclass(frozen=True)
class SourceFile:
    """One file of a public source, as a converter declares it.

    ``known_hash`` is ``None`` when the publisher gives no checksum: the file is then
    accepted on size alone (when known) and its computed sha256 is logged so that a
    maintainer can pin it. ``manual`` marks hosts that need a browser; its text tells the
    user where to get the file and is shown verbatim when the file is missing.
    ``optional`` marks a file the source works without; its text says what the file adds
    (shown in ``aims prepare``'s checklist, which then never stops for it).
    """

    name: str
    url: str | None
    known_hash: str | None
    size: int | None = None
    manual: str | None = None
    optional: str | None = None

    def __post_init__(self) -> None:
        # A malformed declaration is a bug in a converter: fail at import time, loudly,
        # rather than as a confusing checksum error on a user's machine after a 3 GB download.
        if not self.name or Path(self.name).name != self.name or self.name in (".", ".."):
            raise ValueError(f"SourceFile.name must be a plain file name, got {self.name!r}")
        if self.known_hash is not None:
            _parse_known_hash(self.known_hash)
        if self.size is not None and self.size < 0:
            raise ValueError(f"SourceFile.size must be >= 0, got {self.size}")
        if self.url is None and self.manual is None:
            raise ValueError(
                f"SourceFile {self.name!r} has neither a url nor manual instructions"
            )

    @property
    def is_manual(self) -> bool:
        """True when the file cannot be downloaded by a program (no URL, or a host that
        needs a browser)."""
        return self.url is None or self.manual is not None


def _parse_known_hash(known_hash: str) -> tuple[str, str]:
    """``"md5:abc"`` -> ``("md5", "abc")``; bare hex means sha256 (pooch's convention)."""
    if ":" in known_hash:
        algorithm, _, digest = known_hash.partition(":")
        algorithm = algorithm.strip().lower()
    else:
        algorithm, digest = _DEFAULT_ALGORITHM, known_hash
    digest = digest.strip().lower()
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"unknown hash algorithm {algorithm!r} in known_hash {known_hash!r}")
    expected_len = hashlib.new(algorithm).digest_size * 2
    if len(digest) != expected_len or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"known_hash {known_hash!r} is not a {expected_len}-digit hex {algorithm} digest"
        )
    return algorithm, digest


def file_hash(path: str | Path, algorithm: str = _DEFAULT_ALGORITHM, *, progress: bool = False) -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Streaming keeps memory flat for multi-GB sources (the NYUv2 .mat is 2.8 GiB).
    ``progress`` shows a bar for large files, because hashing them takes long enough
    that a silent terminal looks hung.
    """
    path = Path(path)
    h = hashlib.new(algorithm)
    bar = None
    # a regular file only (aims.untrusted): a FIFO or device named as a source would
    # otherwise be hashed without end; the path is the user's own, so a link is followed
    with open_regular(path, what="a source file", follow_links=True) as f:
        total = os.fstat(f.fileno()).st_size
        if progress and total >= _PROGRESS_MIN_BYTES:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"verifying {path.name}", leave=False)
        try:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return h.hexdigest()


def verify_file(
    path: str | Path,
    file: SourceFile,
    *,
    what: str = "",
    remedy: str = "",
    progress: bool = False,
) -> str | None:
    """Check ``path`` against ``file``'s published size and pinned checksum.

    Size first: it is free and catches the common truncated download without reading
    3 GB. Raises :class:`ChecksumError` naming the file, the expected and found values
    and ``remedy`` (what the user should do, which depends on where the file came from).
    ``what`` names the file and where it is in the message (e.g. "the cached file
    /x/y.mat"); default "the file <path>".

    Returns the computed sha256 when ``file.known_hash`` is None (so callers can report
    it for pinning), otherwise None.
    """
    path = Path(path)
    label = what or f"the file {path}"
    label = label[:1].upper() + label[1:]  # it starts the sentence
    if not path.is_file():
        raise AimsError(f"{label} is not a file. {remedy}".strip(), path=path)
    found_size = path.stat().st_size
    if file.size is not None and found_size != file.size:
        raise ChecksumError(
            f"{label} has the wrong size: expected {file.size:,} bytes for "
            f"{file.name!r}, found {found_size:,} bytes (a truncated or different file). "
            f"{remedy}".strip(),
            path=path,
        )
    if file.known_hash is None:
        return file_hash(path, _DEFAULT_ALGORITHM, progress=progress)
    algorithm, expected = _parse_known_hash(file.known_hash)
    found = file_hash(path, algorithm, progress=progress)
    if found != expected:
        raise ChecksumError(
            f"{label} does not match the pinned checksum of {file.name!r}: "
            f"expected {algorithm}:{expected}, found {algorithm}:{found}. {remedy}".strip(),
            path=path,
        )
    return None


def _default_continue(file: SourceFile) -> str:
    return "re-run the same `aims prepare` command (or pass the file's location with `--source PATH`)"


def _manual_message(file: SourceFile, final: Path, continue_command: str | None) -> str:
    where = file.manual or f"download it from {file.url}"
    where = where.rstrip(". ")
    how = continue_command or _default_continue(file)
    return (
        f"{file.name!r} must be downloaded by hand (its host needs a browser): {where}. "
        f"Save it as {final} (exactly this name), then continue with: {how}."
    )


def _http_download(url: str, output: Path, progress: bool) -> None:
    """Download with pooch's HTTP downloader (requests, streaming, tqdm bar).

    Imported lazily: pooch and requests are only needed when something is actually
    downloaded, and ``aims --help`` should not pay for them.
    """
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK)
    downloader(url, str(output), None)


def fetch(
    file: SourceFile,
    *,
    dataset: str | None = None,
    source: str | Path | None = None,
    cache_dir: Path | None = None,
    downloader: Downloader | None = None,
    progress: bool = True,
    continue_command: str | None = None,
) -> Path:
    """Return a verified local path for ``file``.

    Order: ``source`` (the user's copy, file or folder) > verified cached file > download.

    * ``source`` file: verified against size/checksum, returned in place (not copied).
      ``source`` folder: returned as is - an already-extracted source, which the converter
      validates by its layout (there is no single checksum for a folder).
    * ``dataset`` / ``cache_dir``: where downloads live; ``cache_dir`` wins, else
      ``aims.paths.downloads_dir(dataset)``. One of them is required unless ``source``
      is given.
    * ``downloader(url, output_path)`` replaces the HTTP download (tests inject a local
      copier); its result is verified exactly like a real download.
    * ``continue_command`` is the command shown to the user when a manual file is
      missing, e.g. ``"aims prepare --modality depth --source /path/to/file.mat"``; the
      caller knows the modality, this module does not.

    Raises :class:`AimsError` for missing manual files, unreadable paths and failed
    downloads, :class:`ChecksumError` (a subclass) for size/checksum mismatches.
    """
    if source is not None:
        return _use_source(file, Path(source).expanduser(), progress=progress)

    if cache_dir is None:
        if dataset is None:
            raise TypeError("fetch() needs `dataset` or `cache_dir` to know where the cache is")
        from aims.paths import downloads_dir

        cache_dir = downloads_dir(dataset)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / file.name

    if final.exists() or final.is_symlink():
        cached = _check_cached(file, final, progress=progress, continue_command=continue_command)
        if cached is not None:
            return cached

    if file.is_manual:
        raise AimsError(_manual_message(file, final, continue_command), path=final)

    assert file.url is not None  # is_manual covers url None
    return _download(file, final, downloader=downloader, progress=progress)


def _use_source(file: SourceFile, path: Path, *, progress: bool) -> Path:
    """The user's own copy: verify a file in place; accept a folder as extracted."""
    if path.is_dir():
        return path
    if not path.exists():
        raise AimsError(
            f"--source {path} does not exist. Pass the path of the downloaded "
            f"{file.name!r} (or of the folder it was extracted to).",
            path=path,
        )
    remedy = (
        f"Check that this is the right file for {file.name!r} (the original, not a "
        f"re-compressed or partial copy); download it again if it is truncated."
    )
    computed = verify_file(path, file, what=f"the --source file {path}", remedy=remedy, progress=progress)
    if computed is not None:
        log.info("%s: no pinned checksum; sha256 of %s is %s", file.name, path, computed)
    return path


def _check_cached(
    file: SourceFile, final: Path, *, progress: bool, continue_command: str | None
) -> Path | None:
    """Verify a file already in the cache. Returns it when good; when bad, removes it from
    its final name and returns None (downloadable: fetch again) or raises (manual: the
    user must supply a good copy; it is moved aside, not deleted, as it is their file)."""
    try:
        computed = verify_file(final, file, what=f"the cached file {final}", progress=progress)
    except ChecksumError as err:
        if not file.is_manual:
            log.warning("%s; deleting it and downloading again.", err)
            final.unlink()
            return None
        rejected = final.with_name(final.name + ".rejected")
        os.replace(final, rejected)
        raise ChecksumError(
            f"{err} It was moved to {rejected} so it is not used again. Get a fresh copy "
            f"({file.manual.rstrip('. ') if file.manual else file.url}), save it as "
            f"{final}, then continue with: "
            f"{continue_command or _default_continue(file)}.",
            path=final,
        ) from None
    if computed is not None:
        log.info("%s: no pinned checksum; sha256 of the cached file is %s", file.name, computed)
    return final


def _download(file: SourceFile, final: Path, *, downloader: Downloader | None, progress: bool) -> Path:
    """Download to a unique temporary sibling, verify, rename into place.

    The temporary name starts with a dot and ends in ``.part`` so nothing mistakes it
    for the real file; it is removed on any failure (including Ctrl-C).
    """
    assert file.url is not None
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{file.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            if downloader is not None:
                downloader(file.url, tmp)
            else:
                _http_download(file.url, tmp, progress)
        except OSError as err:  # requests' errors (RequestException) are OSErrors too
            raise AimsError(_download_failed(file, final, err), path=final) from err
        remedy = (
            "Nothing was kept. Run the command again (a network error can truncate a "
            "download); if it fails the same way, the file on the server has changed: "
            "report it to the AIMS maintainers."
        )
        computed = verify_file(tmp, file, what=f"the file downloaded from {file.url}",
                               remedy=remedy, progress=progress)
        if computed is not None:
            log.warning(
                "%s has no pinned checksum; downloaded sha256:%s (pin it as known_hash)",
                file.name, computed,
            )
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


#: (text in a network error, what it means), first match wins; the text is what
#: requests/urllib3 and the C library put into their messages
_NETWORK_CAUSES = (
    (("Name or service not known", "nodename nor servname", "Temporary failure in name resolution",
      "getaddrinfo failed", "No address associated"), "the host name could not be resolved (no network, "
                                                      "or DNS is blocked)"),
    (("Connection refused",), "the server refused the connection"),
    (("Network is unreachable", "No route to host"), "the network is unreachable"),
    (("timed out", "Timeout"), "the connection timed out"),
    (("CERTIFICATE_VERIFY_FAILED", "SSLError", "SSL:"), "the server's TLS certificate could not be verified"),
    (("Connection reset", "RemoteDisconnected", "Connection aborted", "IncompleteRead"),
     "the server closed the connection during the transfer"),
)
#: longest raw error text kept when no known cause matches
_MAX_RAW_ERROR = 160


def readable_network_error(err: BaseException) -> str:
    """One short clause for a failed download, instead of urllib3's nested text
    (``HTTPSConnectionPool(host=…): Max retries exceeded … (Caused by NewConnectionError(
    '<urllib3.connection.HTTPSConnection object at 0x7f…>: …'))``): the HTTP status when
    the server answered, else the cause found in the text, else the first line of the text
    without object addresses, cut to :data:`_MAX_RAW_ERROR` characters."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        reason = getattr(response, "reason", "") or ""
        return f"the server answered HTTP {status}{' ' + reason if reason else ''}"
    text = f"{type(err).__name__}: {err}"
    for needles, meaning in _NETWORK_CAUSES:
        if any(n in text for n in needles):
            return meaning
    raw = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    raw = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*", "", raw)
    raw = re.sub(r"\s+", " ", raw).strip(" .")
    return raw if len(raw) <= _MAX_RAW_ERROR else raw[:_MAX_RAW_ERROR - 1] + "…"


def _download_failed(file: SourceFile, final: Path, err: BaseException) -> str:
    return (
        f"Could not download {file.name!r} from {file.url}: {readable_network_error(err)}. Check the network "
        f"connection and try again, or download it by hand, save it as {final} and run "
        f"the command again (or pass it with `--source PATH`)."
    )
