"""What every source converter provides: two explicit steps around a declarative record.

A converter reads one public dataset. Its facts (files, classes, configs, columns …) are
its :attr:`SourceConverter.record`; its code has two steps:

1. :meth:`SourceConverter.list_samples` runs in the main process: it finds the source
   (``--source``, the download cache, an archive), checks its layout and returns a
   :class:`Listing` of light, picklable :class:`SampleRef` objects (ids, splits, paths),
   plus what it found about the input for the card;
2. :meth:`SourceConverter.load` runs in the pipeline's worker processes: it reads one
   sample's files and returns a :class:`Sample` (arrays in memory, nothing encoded yet).
   :meth:`SourceConverter.derive` then computes derived channels (HHA from depth) in the
   same worker.

A converter holds no state between runs: one instance serves every run and is sent to the
workers as it is. A sample whose files cannot be read raises
:class:`~aims.errors.UnreadableSample`; the pipeline (``aims.prepare``) catches it for
every source alike, skips and counts the sample and names it in the card. The pipeline
owns instance splitting, clicks, encoding, statistics and writing for every source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aims.converters.record import InstanceSource, SourceRecord

Downloader = Callable[[str, Path], None]

#: ``aims prepare --instances``: a release's own instance annotations where it ships them
#: (connected components where it does not), or connected components always
INSTANCE_MODES = ("release", "components")


@dataclass(frozen=True)
class SampleRef:
    """A sample not read yet: what a worker needs to load it. Small and picklable; a
    source adds the fields it needs in a subclass. ``files`` maps a role (``rgb``,
    ``mask`` …) to a path; the first one names the sample in messages."""

    image_id: str
    split: str  # the source's official split: "train" or "test"
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """The file that names this sample in the summary and the card."""
        return next(iter(self.files.values()), self.image_id)


@dataclass
class Sample:
    """One image of a source, with every column the requested configs need."""

    image_id: str
    split: str  # the source's official split: "train" or "test"
    images: dict[str, np.ndarray]  # column name -> array, stored losslessly by the writer
    semantic: np.ndarray | None = None  # (H, W) class map -> connected-component instances
    instance_map: np.ndarray | None = None  # (H, W) instance ids as a release or repack gives them
    instance_category: dict[int, int] | None = None  # instance id -> class, for instance_map
    #: what loading noticed that the card reports (e.g. a colour NIR converted to grey);
    #: handed back to :meth:`SourceConverter.observe` in the main process
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A source sample that was not converted, and why: reported in the summary and the
    dataset card, never dropped silently."""

    image_id: str
    path: str
    reason: str


@dataclass
class Listing:
    """What :meth:`SourceConverter.list_samples` found: the samples to load, in source
    order, the class names, where each official split's instances come from, samples
    known to be bad before loading (e.g. ids the authors mark as broken), and — filled by
    the pipeline — the ``facts`` of every loaded sample. A source adds what its card notes
    need in a subclass. Use it as a context manager (some sources hold a file open)."""

    refs: list[SampleRef]
    category_names: list[str]
    instance_sources: dict[str, InstanceSource]
    skipped: list[Skipped] = field(default_factory=list)
    facts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.refs)

    def close(self) -> None:
        """Release files held open while listing (none by default)."""

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceConverter(ABC):
    """Base class of the per-source modules in ``aims.converters``; each module exposes
    one instance as ``CONVERTER``."""

    #: the source's declarative record (set by every subclass)
    record: SourceRecord

    @property
    def name(self) -> str:
        """Short name of the source, also its download cache folder."""
        return self.record.name

    @property
    def configs(self) -> tuple[str, ...]:
        """The benchmark configs this source feeds."""
        return self.record.config_names

    @abstractmethod
    def list_samples(
        self,
        configs: Sequence[str],
        *,
        source: Path | Sequence[Path] | None = None,
        downloader: Downloader | None = None,
        instances: str = "release",
    ) -> Listing:
        """Fetch (or take ``source``), verify the layout, and list the samples of
        ``configs``. Runs in the main process; raises :class:`~aims.errors.AimsError` for
        anything wrong with the source as a whole."""

    @abstractmethod
    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        """Read one sample. Runs in a worker process; raises
        :class:`~aims.errors.UnreadableSample` when this sample's files cannot be read."""

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        """Compute derived channels (e.g. HHA from depth) in the worker, after :meth:`load`."""
        return sample

    def observe(self, listing: Listing, image_id: str, facts: Mapping[str, Any]) -> None:
        """Take note of a loaded sample's facts, in the main process and in source order.
        A source whose samples must agree with each other (e.g. one depth unit) checks
        that here and raises :class:`~aims.errors.SourceFormatError` when they do not."""
        if facts:
            listing.facts.append((image_id, dict(facts)))

    def notes(self, config: str, listing: Listing) -> list[str]:
        """Card notes that depend on the input found (which layout, which instance
        source, what loading noticed); the record's own notes are added by the pipeline."""
        return []

    @abstractmethod
    def write_miniature(self, folder: Path, *, seed: int = 0) -> Path:
        """Write a small copy of this source's exact release layout into ``folder`` and
        return the path to pass as ``--source``."""

    def read_samples(self, configs: Sequence[str], **kwargs: Any) -> tuple[list[Sample], Listing]:
        """List and load every sample in this process, without the pipeline (tests,
        notebooks): unreadable samples raise. The listing is closed."""
        with self.list_samples(configs, **kwargs) as listing:
            samples = [self.derive(self.load(ref, configs), configs) for ref in listing.refs]
        return samples, listing
