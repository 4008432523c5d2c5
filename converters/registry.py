"""Which converter feeds which benchmark config.

Converters import lazily: ``aims prepare --modality depth`` should not import the
polarization readers, and a source whose optional backend is missing (e.g. RAR) should
not break the others.
"""

from __future__ import annotations

import importlib

from aims.converters.base import SourceConverter
from aims.errors import AimsError

#: converter module (under aims.converters) per source, in the order `all` prepares them
SOURCES: dict[str, str] = {
    "nyuv2": "aims.converters.nyuv2",
    "ivrg_nir": "aims.converters.ivrg_nir",
    "rgbp_glass": "aims.converters.rgbp_glass",
    "zju_rgbp": "aims.converters.zju_rgbp",
    "thermal_glass": "aims.converters.thermal_glass",
}

#: the benchmark configs each source feeds
CONFIGS: dict[str, tuple[str, ...]] = {
    "nyuv2": ("depth", "hha"),
    "ivrg_nir": ("nir",),
    "rgbp_glass": ("polarization",),
    "zju_rgbp": ("polarization-zju",),
    "thermal_glass": ("thermal",),
}


def converter(source: str) -> SourceConverter:
    """The converter object of a source."""
    return importlib.import_module(SOURCES[source]).CONVERTER


def known_configs() -> list[str]:
    return [c for configs in CONFIGS.values() for c in configs]


def group_by_source(modalities: list[str]) -> dict[str, list[str]]:
    """Map requested modalities (or ``all``) to {source: [configs]}, in source order."""
    wanted = known_configs() if "all" in modalities else list(dict.fromkeys(modalities))
    unknown = [m for m in wanted if m not in known_configs()]
    if unknown:
        raise AimsError(
            f"unknown modality {', '.join(unknown)}; choose from "
            f"{', '.join(known_configs())} or all."
        )
    return {
        source: [c for c in configs if c in wanted]
        for source, configs in CONFIGS.items()
        if any(c in wanted for c in configs)
    }
