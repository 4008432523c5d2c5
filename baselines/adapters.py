"""Cross-modal alignment (``--adapter``): which projector feeds a C-channel image to SAM.

Every choice is a projector of :mod:`aims.baselines.projectors`, under the name that says
where it comes from: the reference code's (``simcmf``, ``baseline_a``–``d``,
``preconvk{k}n{n}d{d}``, ``preattnp{p}n{n}d{d}``, ``zeroshot``), the paper's text
(``paper-n{n}-k{k}-d{d}``), a reference quirk corrected (``…-unpadded``,
``…-unscrambled``) or ours (``aims-conv3``, ``channels-to-batch``). The projector sits
inside the patch-embedding module (``vision_encoder.patch_embed.adapter``), so SAM's
pretrained projection keeps its checkpoint name (``vision_encoder.patch_embed.projection``)
and the projector's weights are saved with the other trainable weights.

This project's earlier adapter names are gone rather than reused with another meaning:
``simcmf`` used to be our Conv3×3 → ReLU → Conv3×3 (now ``aims-conv3``); ``patch-embed``,
``linear``, ``linear-frozen`` and ``zero-shot`` did what ``baseline_a``, ``baseline_c`` (a
trainable patch embedding behind a 1×1 conv), ``baseline_d`` and ``zeroshot`` do.
"""

from __future__ import annotations

from torch import nn

from aims.baselines.choices import RGBX_ADAPTER
from aims.baselines.projectors import PROJECTORS, ProjectorSpec, attach_projector, projector_spec

#: the registry (fixed names and the family members of the ablation grid)
ADAPTERS = PROJECTORS


def check_adapter(name: str) -> ProjectorSpec | None:
    """The projector spec of ``--adapter name`` (``None`` for ``rgbx-split``: the RGB-X
    systems take no projector); an :class:`AimsError` naming the choices otherwise. Building
    nothing, so the CLI checks a name before it loads anything."""
    if name == RGBX_ADAPTER:
        return None
    return projector_spec(name)


def attach_adapter(sam: nn.Module, name: str, in_channels: int, *, uniform_init: bool = False) -> ProjectorSpec:
    """Put projector ``name`` for ``in_channels`` channels in front of ``sam``'s encoder.
    Which weights train is the strategy's business (:func:`aims.baselines.strategies.apply_strategy`)."""
    return attach_projector(sam, name, in_channels, uniform_init=uniform_init)


__all__ = ["ADAPTERS", "attach_adapter", "check_adapter"]
