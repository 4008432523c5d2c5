"""Every name a baseline run can choose, importable without torch.

`aims baseline --help` and argument checking must not pay torch's import (seconds, and it
is absent without the baselines extra), so the registries' *names* live here and the
modules that build the models import them from here: one place per fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from aims.errors import AimsError


@dataclass(frozen=True)
class AdapterSpec:
    """What a cross-modal alignment choice does to SAM's input path."""

    name: str
    description: str
    freeze_patch_embed: bool   # pretrained projection never trains (whatever the strategy)
    new_patch_embed: bool      # projection replaced by a random C-channel one
    rgb_only: bool = False     # input must be SAM's 3 RGB channels


ADAPTERS: dict[str, AdapterSpec] = {
    "simcmf": AdapterSpec("simcmf", "Conv3x3(C->64) -> ReLU -> Conv3x3(64->3) -> frozen SAM patch embedding",
                          freeze_patch_embed=True, new_patch_embed=False),
    "patch-embed": AdapterSpec("patch-embed", "new random C-channel patch embedding (trainable)",
                               freeze_patch_embed=False, new_patch_embed=True),
    "linear": AdapterSpec("linear", "Conv1x1(C->3) -> SAM patch embedding (trainable)",
                          freeze_patch_embed=False, new_patch_embed=False),
    "linear-frozen": AdapterSpec("linear-frozen", "Conv1x1(C->3) -> frozen SAM patch embedding",
                                 freeze_patch_embed=True, new_patch_embed=False),
    "zero-shot": AdapterSpec("zero-shot", "RGB straight into SAM (no adapter)",
                             freeze_patch_embed=False, new_patch_embed=False, rgb_only=True),
}

#: parameter-efficient (or not) ways to adapt SAM; see aims.baselines.strategies
STRATEGIES = ("lora", "mlp-adapter", "prompt", "full", "scratch")
#: how an image reaches SAM's 1024² input: aspect-kept resize + pad, or the reference's warp
RESIZE_MODES = ("sam", "warp")
#: prediction precision
DTYPES = ("bf16", "fp32")
#: which saved weights of a run to use
WEIGHTS = ("best", "last")


def adapter_spec(name: str) -> AdapterSpec:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise AimsError(f"unknown adapter {name!r}; choose one of {', '.join(ADAPTERS)}") from None
