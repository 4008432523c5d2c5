"""The RGB-X systems (``--strategy vipt|cmx|gopt|iv-tuning``): other papers' multi-modal
methods rebuilt on SAM, by name, and the inputs they accept.

SimCMF is handed an RGB-X image as one C-channel stack in a fixed shuffled channel order
(the RGB-X pseudo modalities of the records), so it cannot know which channels are RGB.
The systems registered here are built on the opposite prior: RGB goes through SAM's own
patch embedding and the X modality through a branch of its own. So they are fed the same
columns un-shuffled (RGB, then X, each normalised per channel with the config's train-split
statistics) and every file a run writes says so (:data:`RGBX_INPUT_PRIOR`).

Each system lives in its own module (:data:`SYSTEM_MODULES`) implementing one function,
``attach(sam, x_channels, *, tiny=False)``, plus a ``SOURCE`` string naming the paper and
code it follows; the contract is in ``docs/baselines.md`` ("RGB-X systems"). The module is
imported only when a model is built, so naming and checking stay torch-free.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aims.baselines.choices import RGBX_ADAPTER, RGBX_INPUT_PRIOR, RGBX_STRATEGIES
from aims.errors import AimsError

if TYPE_CHECKING:  # annotations only
    from torch import nn

#: strategy name -> the module implementing ``attach`` and ``SOURCE`` (``iv-tuning`` →
#: ``aims.baselines.iv_tuning``)
SYSTEM_MODULES: dict[str, str] = {name: "aims.baselines." + name.replace("-", "_") for name in RGBX_STRATEGIES}


def is_rgbx_system(strategy: str | None) -> bool:
    """Whether ``strategy`` is one of the RGB-X systems rather than a SimCMF strategy."""
    return strategy in SYSTEM_MODULES


def input_prior(strategy: str | None) -> str | None:
    """What a model of ``strategy`` assumes about its input channels: ``rgb-x-unshuffled``
    for the RGB-X systems, ``None`` (the modality exactly as its record stacks it) otherwise."""
    return RGBX_INPUT_PRIOR if is_rgbx_system(strategy) else None


def rgbx_modalities() -> dict[str, str]:
    """config -> its RGB-X modality, from the records registered now (the built-ins give
    depth → rgb-depth, hha → rgb-hha, nir → rgb-nir, thermal → rgb-thermal)."""
    from aims.converters.registry import config_records

    out: dict[str, str] = {}
    for config in config_records().values():
        for m in config.modalities:
            if m.is_rgb_x:
                out.setdefault(config.name, m.name)
    return out


def _choices() -> str:
    return ", ".join(f"--config {c} --modality {m}" for c, m in sorted(rgbx_modalities().items()))


def rgbx_input(strategy: str, config: str, modality: str | None) -> str:
    """The modality an RGB-X system reads on ``config`` (default: the config's RGB-X
    modality), or an :class:`AimsError` naming the RGB-X configs when there is none."""
    known = rgbx_modalities()
    if config not in known:
        raise AimsError(f"--strategy {strategy} is an RGB-X system: it takes an RGB image and one other "
                        f"modality apart, and config {config!r} offers no RGB-X modality. The RGB-X configs "
                        f"are: {_choices()}. For a single modality use a SimCMF strategy (lora, full …).")
    if modality is not None and modality != known[config]:
        raise AimsError(f"--strategy {strategy} reads the RGB-X modality of its config, {known[config]!r} "
                        f"(fed un-shuffled: RGB, then X), not {modality!r}. The RGB-X configs are: "
                        f"{_choices()}.")
    return known[config]


def check_system_spec(strategy: str, adapter: str, in_channels: int | None = None) -> None:
    """Refuse a model spec no RGB-X system can be built from: another projector, or an
    input without at least one channel beside RGB (``None``: not known yet)."""
    if adapter != RGBX_ADAPTER:
        raise AimsError(f"--strategy {strategy} is an RGB-X system and takes no cross-modal projector "
                        f"(it splits RGB and X itself): drop --adapter {adapter!r} or pass --adapter "
                        f"{RGBX_ADAPTER}.")
    if in_channels is not None and in_channels < 4:
        raise AimsError(f"--strategy {strategy} needs an RGB-X input (3 RGB channels and at least one "
                        f"more), not {in_channels} channel(s). The RGB-X configs are: {_choices()}.")


def system_module(strategy: str) -> Any:
    """The module implementing RGB-X system ``strategy``."""
    try:
        path = SYSTEM_MODULES[strategy]
    except KeyError:
        raise AimsError(f"unknown RGB-X system {strategy!r}; choose one of {', '.join(SYSTEM_MODULES)}") from None
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name != path:
            raise
        raise AimsError(f"the RGB-X system {strategy!r} ({path}) is not part of this version of aims.") from None


@dataclass(frozen=True)
class RgbxSystem:
    """What :func:`attach_rgbx_system` built: the system, where it comes from, and the
    names of the parameters it added to SAM (``describe`` counts them apart)."""

    name: str
    source: str
    added: frozenset[str]


def attach_rgbx_system(sam: nn.Module, name: str, x_channels: int, tiny: bool = False) -> RgbxSystem:
    """Turn ``sam`` into RGB-X system ``name`` in place (the module's ``attach``), for
    3 + ``x_channels`` input channels; ``tiny`` shrinks the added widths for the test model."""
    if x_channels < 1:
        raise AimsError(f"--strategy {name} needs at least one channel beside RGB; got {x_channels}. "
                        f"The RGB-X configs are: {_choices()}.")
    module = system_module(name)
    before = {id(p) for p in sam.parameters()}
    module.attach(sam, x_channels, tiny=tiny)
    added = frozenset(n for n, p in sam.named_parameters() if id(p) not in before)
    return RgbxSystem(name, str(module.SOURCE), added)


__all__ = ["RGBX_ADAPTER", "RGBX_INPUT_PRIOR", "RGBX_STRATEGIES", "SYSTEM_MODULES", "RgbxSystem",
           "attach_rgbx_system", "check_system_spec", "input_prior", "is_rgbx_system", "rgbx_input",
           "rgbx_modalities", "system_module"]
