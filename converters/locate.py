"""Finding a source on disk and opening its files: the code every converter shares.

Each converter used to carry its own version of these steps; they live here once:

- what ``--source`` is (nothing: the declared files from the download cache; a file: an
  archive, recognised by content; a folder: searched, with the archives at its top kept
  aside) — :func:`source_roots`, :func:`fetch_declared`;
- extracting an archive into the download cache, once — :func:`extract_archive`;
- finding the folder that holds a layout, up to a few levels down —
  :func:`find_folder`, :func:`find_split_dirs`;
- saying what a folder holds when it is not what was expected — :func:`describe_folder`;
- opening an image file, with one error for a file that cannot be read —
  :func:`read_pixels` (:func:`aims.imageio.read_image`, lossless at any bit depth) and
  :func:`open_image` (the Pillow image, for readers that need its mode or palette);
- checking that the files of one sample have one size — :func:`check_same_size`.

Errors about the source as a whole are :class:`~aims.errors.AimsError`; a file of one
sample that cannot be read is :class:`~aims.errors.UnreadableSample` (skipped and counted
by the pipeline).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aims.converters.base import Downloader
from aims.converters.record import SourceRecord
from aims.errors import AimsError, UnreadableSample

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

__all__ = [
    "check_same_size",
    "describe_folder",
    "describe_image",
    "extract_archive",
    "fetch_declared",
    "find_folder",
    "find_split_dirs",
    "is_archive",
    "open_image",
    "read_pixels",
    "source_roots",
]


# --------------------------------------------------------------------------- folders


def describe_folder(folder: Path, limit: int = 20) -> str:
    """What a folder holds, for error messages: up to ``limit`` names, folders with "/"."""
    if not Path(folder).is_dir():
        return "nothing (the folder does not exist)"
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir())
    except OSError as exc:
        return f"(unreadable: {exc})"
    if not names:
        return "nothing (empty folder)"
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def find_folder(path: Path, holds: Callable[[Path], bool], *, max_depth: int, what: str) -> Path | None:
    """The folder under ``path`` (itself included, at most ``max_depth`` levels down,
    nearest first) for which ``holds`` is true; None when there is none. Several at the
    same depth are ambiguous: :class:`AimsError` naming them (``what`` names the layout)."""
    path = Path(path)
    level = [path] if path.is_dir() else []
    for _ in range(max_depth + 1):
        hits = [p for p in level if holds(p)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise AimsError(f"{path} holds several {what} ({', '.join(map(str, hits))}); pass the one "
                            "to convert with --source.", path=path)
        level = sorted(c for p in level for c in _subfolders(p))
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return []


def find_split_dirs(roots: Sequence[Path], looks_like_split: Callable[[Path], bool], *,
                    splits: Sequence[str] = SPLITS, max_depth: int = 4) -> dict[str, list[Path]]:
    """Folders that hold one split, by name (``train``/``test``, or a name containing
    exactly one of those words, e.g. an archive extracted on its own), up to
    ``max_depth`` levels below each root. A matching folder is not descended into."""
    found: dict[str, list[Path]] = {s: [] for s in splits}

    def split_of(path: Path) -> str | None:
        name = path.name.lower()
        if name in splits:
            return name
        hits = [s for s in splits if s in name.replace("_", "-").replace(".", "-").split("-")]
        return hits[0] if len(hits) == 1 else None

    def walk(folder: Path, depth: int) -> None:
        split = split_of(folder)
        if split is not None and looks_like_split(folder):
            if folder not in found[split]:
                found[split].append(folder)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in children:
            if not entry.name.startswith(".") and entry.is_dir():
                walk(Path(entry.path), depth + 1)

    for root in roots:
        walk(root, 0)
    return found


# --------------------------------------------------------------------------- archives and downloads


def is_archive(path: Path) -> bool:
    """A zip/tar/rar/7z file, recognised by its first bytes (hosts rename archives)."""
    from aims.extract import archive_kind

    try:
        return archive_kind(path) is not None
    except OSError:
        return False


def extract_archive(archive: Path, source_name: str, *, folder: str | None = None,
                    fingerprint: str | None = None, progress: bool = True) -> Path:
    """Extract an archive (any extension) into the source's download cache, once:
    ``<downloads>/<source>/<folder>`` (default ``extracted/<archive name>``). A second
    call with the same archive finds the marker and returns at once."""
    from aims.extract import safe_extract
    from aims.paths import downloads_dir

    target = downloads_dir(source_name) / (folder or f"extracted/{archive.name}")
    log.info("extracting %s into %s", archive, target)
    return safe_extract(archive, target, fingerprint=fingerprint, progress=progress)


def fetch_declared(record: SourceRecord, name: str, *, source: Path | None = None,
                   downloader: Downloader | None = None, continue_command: str | None = None) -> Path:
    """The verified local path of the record's file ``name``: ``source`` when given (the
    user's copy, checked against the declared size and checksum), else the download
    cache, else a download (a manual file that is missing stops with its instructions).
    A failed download names the file and where to put it by hand."""
    from aims.fetch import fetch
    from aims.paths import downloads_dir

    spec = record.file(name)
    cache = downloads_dir(record.name)
    try:
        return fetch(spec, source=source, cache_dir=cache, downloader=downloader,
                     continue_command=continue_command, progress=True)
    except AimsError:
        raise
    except Exception as exc:  # network errors from the downloader
        from aims.fetch import readable_network_error

        raise AimsError(
            f"could not download {name} from {spec.url} ({readable_network_error(exc)}). Download it by "
            "hand and put it "
            f"at {cache / name}, or into the folder you pass with --source, then run the command "
            "again.",
            path=cache / name,
        ) from None


def source_roots(source: Path | None, record: SourceRecord, *,
                 continue_command: str) -> tuple[list[Path], list[Path]]:
    """Folders to search for a manual-download source, and archives lying at their top.

    ``source`` None: the record's declared files from the download cache (the manual
    message of :func:`aims.fetch.fetch` when one is missing). A file: an archive to
    extract. A folder: searched as is; the archives at its top level are returned
    separately so they are only extracted when the folder itself does not hold the layout
    (a folder may hold both a 15 GB archive and its extracted copy).
    """
    if source is None:
        cached = [fetch_declared(record, f.name, continue_command=continue_command) for f in record.files]
        return [], cached
    source = Path(source).expanduser()
    if source.is_dir():
        archives = [p for p in sorted(source.iterdir()) if p.is_file() and is_archive(p)]
        return [source], archives
    if source.is_file():
        return [], [source]
    raise AimsError(
        f"--source {source} does not exist. Pass the downloaded archive or the folder it "
        f"was extracted to, e.g. `{continue_command}`.",
        path=source,
    )


# --------------------------------------------------------------------------- image files


def _unreadable(path: Path, what: str, why: str) -> UnreadableSample:
    return UnreadableSample(
        f"{path} cannot be read as {what} ({why}); the file is truncated or corrupt. "
        "Extract the archive again (or download it again) and re-run the command.",
        path=path,
    )


def read_pixels(path: Path, what: str) -> np.ndarray:
    """The pixels of an image file exactly as stored (16-bit colour included, which
    Pillow alone would cut to 8 bits: :func:`aims.imageio.read_image`), or
    :class:`UnreadableSample` naming the file."""
    from aims.imageio import read_image

    try:
        return read_image(path)
    except FileNotFoundError:
        raise UnreadableSample(f"{path} does not exist (expected {what}).", path=path) from None
    except ValueError as exc:
        raise _unreadable(path, what, str(exc)) from None


def open_image(path: Path, what: str) -> Any:
    """The loaded Pillow image of a file, for readers that need its mode or palette, or
    :class:`UnreadableSample` naming the file (the same errors as :func:`read_pixels`)."""
    from aims.imageio import open_loaded

    try:
        return open_loaded(path)
    except FileNotFoundError:
        raise UnreadableSample(f"{path} does not exist (expected {what}).", path=path) from None
    except ValueError as exc:
        raise _unreadable(path, what, str(exc)) from None


def describe_image(arr: np.ndarray) -> str:
    """``a 3-channel 16-bit image (612×512)``: what an image array is, for messages."""
    channels = arr.shape[2] if arr.ndim == 3 else 1
    bits = 1 if arr.dtype == bool else arr.dtype.itemsize * 8
    return f"a {channels}-channel {bits}-bit image ({arr.shape[1]}×{arr.shape[0]})"


def check_same_size(shape: tuple[int, ...], other: np.ndarray, path: Path, reference: Path) -> None:
    """:class:`UnreadableSample` naming both files when a label or channel image does not
    have its image's size."""
    if other.shape[:2] != shape[:2]:
        h, w = shape[:2]
        raise UnreadableSample(
            f"{path} is {other.shape[1]}×{other.shape[0]} but its image {reference} is "
            f"{w}×{h}; every file of a sample must have the image's size. The file does not "
            "belong to this sample (or is damaged): replace it from the original archive.",
            path=path,
        )
