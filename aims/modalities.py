"""Turn a dataset row into the float tensor a model consumes.

Stored columns are lossless integer PNGs (see :mod:`aims.schema`); models want float32
``(C, H, W)`` in physical or unit-range values. The conversion lives here, once, so that
training, prediction, channel statistics (computed by the pipeline with these same rules)
and user code all agree.

Both tables are derived from the source records (:mod:`aims.converters.record`) and follow
every record registered at run time:

- :data:`COLUMN_DECODERS`: how one stored column becomes float channels (its record names a
  rule of :mod:`aims.decoders`: ``rgb`` → 3 channels in [0, 1]; ``depth`` → 1 channel in
  metres; ``hha`` → 3 channels in [0, 1] …);
- :data:`MODALITY_STACKS`: which columns a model input stacks, in order, optionally with a
  seeded channel shuffle (RGB-X pseudo modalities: the model must not know which channels
  are RGB) or computed by a named combiner (Stokes parameters from four polarizer angles).

:func:`register_column` and :func:`register_modality` add ad-hoc entries (a user's own
stack of existing columns) without a record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aims.converters import registry
from aims.decoders import COMBINERS, DECODERS, TEMPERATURE_OFFSET_C, TEMPERATURE_STEP_C, rgb_unit, to_array
from aims.derived import LiveMapping
from aims.errors import AimsError

if TYPE_CHECKING:  # annotations only: the core never imports torch at run time
    import torch


@dataclass(frozen=True)
class ColumnDecoder:
    """How one stored column becomes ``(c, H, W)`` float32 channels; ``units`` says what
    the float values are."""

    name: str
    channels: int
    decode: Callable[[Any], np.ndarray]
    units: str


@dataclass(frozen=True)
class Modality:
    """A model input: stored columns stacked in order, optionally channel-shuffled with a
    fixed seed (same permutation for every row, every run)."""

    name: str
    columns: tuple[str, ...]
    shuffle_seed: int | None = None
    description: str = ""
    #: optional: computes the channels from the decoded columns instead of stacking them
    #: (e.g. Stokes parameters from four polarizer angles); ``combined_channels`` = its C
    combine: Callable[[list[np.ndarray]], np.ndarray] | None = None
    combined_channels: int | None = None

    @property
    def channels(self) -> int:
        if self.combined_channels is not None:
            return self.combined_channels
        return sum(COLUMN_DECODERS[c].channels for c in self.columns)

    def permutation(self) -> np.ndarray | None:
        """The channel order applied after stacking, or None (no shuffle)."""
        if self.shuffle_seed is None:
            return None
        return np.random.default_rng(self.shuffle_seed).permutation(self.channels)


#: the registered RGB frame of every config: not a dataset fact, the common model input
RGB_COLUMN = ColumnDecoder("rgb", 3, rgb_unit, DECODERS["rgb_unit"].meaning)
RGB_MODALITY = Modality("rgb", ("rgb",), description="registered RGB image")

_extra_columns: dict[str, ColumnDecoder] = {}
_extra_modalities: dict[str, Modality] = {}
_extras_changed = 0


def _version() -> Hashable:
    return (registry.generation(), _extras_changed)


def _decoder(name: str, where: str) -> Callable[[Any], np.ndarray]:
    try:
        return DECODERS[name].decode
    except KeyError:
        raise AimsError(f"{where} names the decoder {name!r}, which this version of aims does not "
                        f"have (known: {', '.join(sorted(DECODERS))}); upgrade aims.") from None


def _derive_columns() -> dict[str, ColumnDecoder]:
    out = {"rgb": RGB_COLUMN}
    for config in registry.config_records().values():
        for col in config.columns:
            decoder = ColumnDecoder(col.name, col.channels, _decoder(col.decoder, f"column {col.name!r} of "
                                    f"config {config.name!r}"), DECODERS[col.decoder].meaning)
            known = out.get(col.name)
            if known is not None and (known.decode, known.channels) != (decoder.decode, decoder.channels):
                raise AimsError(f"config {config.name!r} declares column {col.name!r} with another "
                                "decoder or channel count than an earlier config; a column name "
                                "means one thing in every config: rename the column.")
            out.setdefault(col.name, decoder)
    out.update(_extra_columns)
    return out


def _derive_modalities() -> dict[str, Modality]:
    out = {"rgb": RGB_MODALITY}
    for config in registry.config_records().values():
        for m in config.modalities:
            combine = None
            if m.combine is not None:
                if m.combine not in COMBINERS:
                    raise AimsError(f"modality {m.name!r} of config {config.name!r} names the combiner "
                                    f"{m.combine!r}, which this version of aims does not have.")
                combine = COMBINERS[m.combine]
            out[m.name] = Modality(m.name, tuple(m.columns), m.shuffle_seed, m.description, combine, m.channels)
    out.update(_extra_modalities)
    return out


#: column name -> its float rule (every config's columns, always current)
COLUMN_DECODERS: Mapping[str, ColumnDecoder] = LiveMapping(_derive_columns, _version)
#: modality name -> its stack (every config's model inputs and ``rgb``, always current)
MODALITY_STACKS: Mapping[str, Modality] = LiveMapping(_derive_modalities, _version)


def register_column(decoder: ColumnDecoder) -> ColumnDecoder:
    """Declare how a stored column without a record converts to float channels."""
    global _extras_changed
    _extra_columns[decoder.name] = decoder
    _extras_changed += 1
    return decoder


def register_modality(modality: Modality) -> Modality:
    """Declare an ad-hoc model input over registered columns."""
    global _extras_changed
    missing = [c for c in modality.columns if c not in COLUMN_DECODERS]
    if missing:
        raise ValueError(f"modality {modality.name!r}: unregistered columns {missing}")
    _extra_modalities[modality.name] = modality
    _extras_changed += 1
    return modality


def unregister_modality(name: str) -> None:
    """Remove a model input added with :func:`register_modality`."""
    global _extras_changed
    if _extra_modalities.pop(name, None) is not None:
        _extras_changed += 1


def column_tensor(column: str, value: Any) -> np.ndarray:
    """One stored column's cell as float32 ``(c, H, W)`` (used for channel statistics)."""
    try:
        decoder = COLUMN_DECODERS[column]
    except KeyError:
        raise AimsError(
            f"no tensor rule for column {column!r}; known columns: {', '.join(sorted(COLUMN_DECODERS))}"
        ) from None
    return decoder.decode(value)


def modality_spec(modality: str) -> Modality:
    """The stack of ``modality``. A name no record declares is looked for once in the
    default prepared dataset (a config prepared from a user's own record, used in a fresh
    process), then refused naming the known ones."""
    spec = MODALITY_STACKS.get(modality)
    if spec is None:
        from aims.loader import dataset_root

        try:
            registry.register_prepared_records(dataset_root())
        except (AimsError, OSError):  # no usable AIMS_HOME: nothing prepared to look at
            pass
        spec = MODALITY_STACKS.get(modality)
    if spec is None:
        raise AimsError(
            f"unknown modality {modality!r}; known modalities: {', '.join(MODALITY_STACKS)}"
        )
    return spec


def stack_tensor(spec: Modality, example: Mapping[str, Any],
                 decoders: Mapping[str, ColumnDecoder] | None = None) -> np.ndarray:
    """The float32 ``(C, H, W)`` input ``spec`` describes, from one row's columns.
    ``decoders`` (default: :data:`COLUMN_DECODERS`) lets a worker process use the rules it
    was handed instead of the registry."""
    parts = []
    for column in spec.columns:
        if column not in example:
            raise AimsError(
                f"modality {spec.name!r} needs column {column!r}, which this row does not have "
                f"(columns: {', '.join(map(str, example.keys()))}); load the config that "
                f"stores it, e.g. aims.load_dataset({column!r})"
            )
        if decoders is not None and column in decoders:
            parts.append(decoders[column].decode(example[column]))
        else:
            parts.append(column_tensor(column, example[column]))
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"modality {spec.name!r}: columns have different sizes {sorted(shapes)}")
    if spec.combine is not None:
        out = spec.combine(parts)
    else:
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    perm = spec.permutation()
    if perm is not None:
        out = out[perm]
    return np.ascontiguousarray(out, dtype=np.float32)


def modality_tensor(example: Mapping[str, Any], modality: str, *,
                    as_tensor: bool = False) -> np.ndarray | torch.Tensor:
    """The float32 ``(C, H, W)`` input of ``modality`` for one dataset row.

    ``depth``: 1 channel in metres (0 = missing stays 0); ``hha`` and ``rgb``: 3 channels
    divided by 255 (a 16-bit RGB column, as ``polarization`` stores it: by 65535);
    ``rgb-depth``/``rgb-hha``: the stacked channels in a fixed shuffled order (see
    :meth:`Modality.permutation`). Every rule comes from the config's record.

    Returns a NumPy array, or with ``as_tensor=True`` a ``torch.Tensor`` sharing its
    memory (torch is imported only then, so the core stays usable without it; see
    :mod:`aims.torch` for a ready ``Dataset``).
    """
    out = stack_tensor(modality_spec(modality), example)
    if not as_tensor:
        return out
    try:
        import torch
    except ImportError:
        raise AimsError("modality_tensor(..., as_tensor=True) needs PyTorch, which is not installed; "
                        "install it (pip install 'aims-benchmark[baselines]') or leave as_tensor "
                        "False for a NumPy array.") from None
    return torch.from_numpy(out)


__all__ = [
    "COLUMN_DECODERS",
    "MODALITY_STACKS",
    "TEMPERATURE_OFFSET_C",
    "TEMPERATURE_STEP_C",
    "ColumnDecoder",
    "Modality",
    "column_tensor",
    "modality_spec",
    "modality_tensor",
    "register_column",
    "register_modality",
    "stack_tensor",
    "to_array",
    "unregister_modality",
]
