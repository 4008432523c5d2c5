"""Which source files ``aims prepare`` needs, where each one goes, and which are there.

Why: preparing every config needs files from five sources, four of them downloaded by hand
from hosts that need a browser. Stopping at the first missing one made a user run the
command once per file. :func:`source_checklist` looks at every file the records declare
(:class:`aims.fetch.SourceFile`: name, size, URL or manual instructions) before any work,
and :meth:`Checklist.lines` prints them all at once: size, where to get it, where to put
it, whether it is there and whether it matches its published size and pinned checksum.

A file is looked for where :func:`aims.fetch.fetch` looks: in the ``--source`` given for
its source (``<source>/<name>``, or the ``--source`` file itself), else in the download
cache (``$AIMS_HOME/downloads/<source>/<name>``; a folder may also lie there as
``<name>.zip``). A folder given with ``--source`` is only looked into by name: a converter
also recognises an extracted layout under other names, which is checked when it reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aims.errors import AimsError
from aims.fetch import SourceFile, verify_file

__all__ = ["Checklist", "FileCheck", "source_checklist"]

#: states of one file
VERIFIED = "verified"            # size and pinned checksum match (or a folder: nothing to check)
PRESENT = "present"              # there; nothing published to check it against, or not checked yet
DOWNLOADS = "will download"      # not there; `aims prepare` downloads it
MISSING = "MISSING"              # not there; must be fetched by hand
BAD = "BAD"                      # there, but the wrong size or checksum
GIVEN = "given"                  # inside a --source folder under a name the converter recognises
OPTIONAL = "optional"            # not there, and the source works without it


@dataclass(frozen=True)
class FileCheck:
    """One declared file and what was found."""

    source: str
    configs: tuple[str, ...]
    file: SourceFile
    #: where the file is expected (the cache path, or inside --source)
    location: Path
    state: str
    detail: str = ""

    @property
    def blocks(self) -> bool:
        """True when ``aims prepare`` cannot go on without the user doing something."""
        return self.state in (MISSING, BAD)

    @property
    def here(self) -> bool:
        return self.state in (VERIFIED, PRESENT, GIVEN)


@dataclass(frozen=True)
class Checklist:
    """Every file of the requested sources, in source and record order."""

    files: tuple[FileCheck, ...]

    @property
    def blocking(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.blocks)

    @property
    def complete(self) -> bool:
        """Every required file is here (optional ones may be absent)."""
        return all(f.here or f.state == OPTIONAL for f in self.files)

    def lines(self) -> list[str]:
        """The checklist as text: one block per file."""
        sources = list(dict.fromkeys(f.source for f in self.files))
        out = [f"Source files ({len(self.files)} from {len(sources)} source(s)):"]
        for source in sources:
            files = [f for f in self.files if f.source == source]
            out.append(f"{source} → {', '.join(files[0].configs)}")
            for f in files:
                out.append(f"  [{f.state}] {f.file.name} ({_size(f.file.size)})"
                           + (f": {f.detail}" if f.detail else ""))
                out.append(f"      get: {_where_to_get(f.file)}")
                out.append(f"      put: {f.location}")
                if f.file.optional:
                    out.append(f"      optional: {f.file.optional}")
        return out

    def summary(self) -> str:
        """One paragraph: what blocks, or that nothing does."""
        blocking = self.blocking
        if not blocking:
            waiting = [f.file.name for f in self.files if f.state == DOWNLOADS]
            return ("Every required source file is here" if not waiting else
                    f"Nothing has to be fetched by hand; `aims prepare` downloads {', '.join(waiting)}") + "."
        names = ", ".join(f"{f.file.name} ({f.source})" for f in blocking)
        return (f"{len(blocking)} required source file(s) missing or damaged: {names}. Get each one "
                "as its 'get' line says and put it where its 'put' line says (or pass its folder "
                "with --source), then run the same command again.")


def _size(size: int | None) -> str:
    if size is None:
        return "size not published"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}, {size:,} bytes"
    return f"{size} bytes"


def _where_to_get(file: SourceFile) -> str:
    if file.manual:
        return f"{file.manual.rstrip('. ')} (by hand)"
    return f"{file.url} (downloaded by aims prepare)" if not file.optional else str(file.url)


def _check_present(file: SourceFile, path: Path, *, verify: bool) -> tuple[str, str]:
    """State and detail of a file that exists at ``path``."""
    if path.is_dir():
        return PRESENT, "a folder (checked by the converter when it reads it)"
    if not verify:  # `aims prepare` itself: the converter checks what it reads, as it reads it
        return PRESENT, "checked when used"
    if file.size is not None and path.stat().st_size != file.size:
        return BAD, f"{path.stat().st_size:,} bytes, expected {file.size:,} (truncated or another file)"
    try:
        computed = verify_file(path, file, progress=True)
    except AimsError as exc:
        return BAD, str(exc)
    if computed is not None:
        return PRESENT, f"no published checksum; sha256:{computed}"
    algorithm = file.known_hash.partition(":")[0] if file.known_hash and ":" in file.known_hash else "sha256"
    return VERIFIED, f"size and {algorithm} match"


def _check_file(file: SourceFile, source: str, configs: tuple[str, ...], given: Path | None,
                cache: Path, *, verify: bool) -> FileCheck:
    if given is not None:
        candidates = [given] if given.name in (file.name, f"{file.name}.zip") else [given / file.name]
        for path in candidates:
            if path.exists():
                return FileCheck(source, configs, file, path, *_check_present(file, path, verify=verify))
        if given.exists():
            state = OPTIONAL if file.optional else GIVEN
            detail = f"--source {given}: not found by this name; the converter looks for its layout"
            return FileCheck(source, configs, file, given / file.name, state, detail)
        return FileCheck(source, configs, file, given, OPTIONAL if file.optional else MISSING,
                         f"--source {given} does not exist")
    path = cache / file.name
    for candidate in (path, path.with_name(path.name + ".zip")):
        if candidate.exists():
            return FileCheck(source, configs, file, candidate, *_check_present(file, candidate, verify=verify))
    if file.optional:
        return FileCheck(source, configs, file, path, OPTIONAL, "not here")
    if file.is_manual:
        return FileCheck(source, configs, file, path, MISSING, "must be downloaded by hand")
    return FileCheck(source, configs, file, path, DOWNLOADS, "not here yet")


def source_checklist(groups: Mapping[str, Sequence[str]], sources: Mapping[str, object], *,
                     verify: bool = False) -> Checklist:
    """The checklist of the sources in ``groups`` ({source: [configs]}, as
    :func:`aims.converters.registry.group_by_source` gives them). ``sources`` maps a source
    to its ``--source`` (a path, several paths, or None: the download cache). ``verify``
    (``aims prepare --check``) compares the size and hashes every file that is there (slow
    for multi-GB files; a progress bar shows); otherwise only presence is looked at, and
    the converter checks each file as it reads it (:func:`aims.fetch.fetch`), as before."""
    from aims.converters.registry import source_record
    from aims.paths import aims_home

    checks: list[FileCheck] = []
    for name, configs in groups.items():
        record = source_record(name)
        given = sources.get(name)
        paths = ([Path(given)] if isinstance(given, (str, Path)) else
                 [Path(p) for p in given] if isinstance(given, (list, tuple)) else [])
        cache = aims_home() / "downloads" / record.name
        for file in record.files:
            if not paths:
                checks.append(_check_file(file, name, tuple(configs), None, cache, verify=verify))
                continue
            # several --source paths (a source in parts): the first that holds the file
            found = [_check_file(file, name, tuple(configs), p.expanduser(), cache, verify=verify) for p in paths]
            checks.append(next((c for c in found if c.state not in (GIVEN, MISSING, OPTIONAL)), found[0]))
    return Checklist(tuple(checks))
