"""User-facing errors.

Anything a user can fix (a missing file, a wrong checksum, a folder that is not writable)
raises :class:`AimsError`. The CLI prints its message as one paragraph and exits with
status 2, without a traceback; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class AimsError(Exception):
    """An error the user can act on; the message names the file, what was expected and
    what was found, and what to do next."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(message)


class ChecksumError(AimsError):
    """A downloaded or supplied file does not match its pinned checksum."""


class SourceFormatError(AimsError):
    """A source file exists but is not what the converter expects (corrupt, truncated,
    missing key, wrong shape, unknown layout)."""


class UnreadableSample(SourceFormatError):
    """One sample of a source cannot be read (a truncated or corrupt file, a file of the
    wrong kind, files of one sample that disagree in size, values that are not what the
    release holds). The pipeline catches it for every source alike: the sample is
    skipped, counted and named in the summary and the dataset card. Anything wrong with
    the source as a whole (a missing folder, a layout not recognised) stays a
    :class:`SourceFormatError` and stops the run."""


class UnsafeArchiveError(AimsError):
    """An archive member would be written outside the extraction folder."""
