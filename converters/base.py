"""What every source converter provides, and the sample it yields.

A converter knows one public dataset: the files it needs (with checksums or manual
download instructions), how its layout is read, which benchmark configs it feeds, and how
to write a miniature copy of its exact layout. It yields :class:`Sample` objects: arrays in
memory, nothing encoded yet, so the pipeline (``aims.prepare``) owns instance splitting,
encoding, statistics and writing for every source alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Downloader = Callable[[str, Path], None]

#: ``aims prepare --instances``: a release's own instance annotations where it ships them
#: (connected components where it does not), or connected components always
INSTANCE_MODES = ("release", "components")


@dataclass
class Sample:
    """One image of a source, with every column the requested configs need."""

    image_id: str
    split: str  # the source's official split: "train" or "test"
    images: dict[str, np.ndarray]  # column name -> array, stored losslessly by the writer
    semantic: np.ndarray | None = None  # (H, W) class map -> connected-component instances
    instance_map: np.ndarray | None = None  # (H, W) instance ids as a repack gives them
    instance_category: dict[int, int] | None = None  # instance id -> class, for instance_map


@dataclass(frozen=True)
class ConfigDescription:
    """The card text of one config that only the source knows."""

    config: str
    description: str
    columns: dict[str, str]  # modality column -> units / encoding, for the card
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of a source for the dataset card."""

    name: str
    homepage: str
    license: str
    citation: str
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Skipped:
    """A source sample that was not converted, and why: reported in the summary and the
    dataset card, never dropped silently."""

    image_id: str
    path: str
    reason: str


class SampleStream(ABC):
    """An opened source: iterable once, with a length for progress bars.

    A stream that skips a sample (a known-broken id, an unreadable file the source is
    known to contain) appends a :class:`Skipped` to ``self.skipped`` instead of yielding
    it; ``len()`` counts the samples the stream intends to look at."""

    skipped: list[Skipped]

    def __new__(cls, *args: object, **kwargs: object) -> "SampleStream":
        self = super().__new__(cls)
        self.skipped = []
        return self

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __iter__(self) -> Iterator[Sample]: ...

    def close(self) -> None:  # pragma: no cover - trivial default
        """Release open files; streams over HDF5 files hold a handle."""

    def __enter__(self) -> "SampleStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourceConverter(ABC):
    """Base class of the per-source modules in ``aims.converters``."""

    #: short name, also the download cache folder
    name: str
    #: benchmark configs this source feeds
    configs: tuple[str, ...]
    #: provenance for the card
    info: SourceInfo
    #: semantic labels that never become instances
    ignore_labels: tuple[int, ...] = (0, 255)
    #: pixel connectivity of instances
    connectivity: int = 8

    @abstractmethod
    def category_names(self, configs: Sequence[str]) -> list[str]:
        """Names of the semantic classes, index = class id."""

    @abstractmethod
    def describe(self, config: str) -> ConfigDescription:
        """Card text of one config."""

    @abstractmethod
    def open(
        self,
        configs: Sequence[str],
        *,
        source: Path | None = None,
        downloader: Downloader | None = None,
    ) -> SampleStream:
        """Fetch (or take ``source``), verify, and return the samples of ``configs``."""

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        """Compute derived channels (e.g. HHA from depth). Runs in a worker process, so
        expensive per-image work belongs here rather than in the stream."""
        return sample

    @abstractmethod
    def write_miniature(self, folder: Path, *, seed: int = 0) -> Path:
        """Write a small copy of this source's exact release layout into ``folder`` and
        return the path to pass as ``--source``."""
