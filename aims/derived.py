"""Read-only views that are rebuilt when what they are derived from changes.

The registries derived from the source records (config schemas, modality stacks, the
headline list, leaderboard labels …) are not frozen at import: a source registered at
run time (a throwaway test source, a user's own modality, a config found in a prepared
dataset) must appear in every one of them. Each view keeps the last result of its
``build`` function and rebuilds it when ``version()`` (the registry's generation counter)
changes, so reading one costs a comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

__all__ = ["LiveMapping", "LiveTuple"]


class _Live:
    def __init__(self, build: Callable[[], Any], version: Callable[[], Hashable]) -> None:
        self._build = build
        self._version = version
        self._built_for: object = object()
        self._value: Any = None

    def _current(self) -> Any:
        version = self._version()
        if version != self._built_for:
            self._value = self._build()
            self._built_for = self._version()  # building may load the built-ins
        return self._value


class LiveMapping(_Live, Mapping[K, V], Generic[K, V]):
    """A read-only mapping equal to ``build()`` as of the current ``version()``."""

    def __getitem__(self, key: K) -> V:
        return self._current()[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"LiveMapping({dict(self._current())!r})"


class LiveTuple(_Live, Sequence[T], Generic[T]):
    """A read-only sequence equal to ``build()`` as of the current ``version()``."""

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: Any) -> Any:
        return tuple(self._current())[index]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator[T]:
        return iter(tuple(self._current()))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (tuple, list, LiveTuple)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LiveTuple({tuple(self._current())!r})"
