"""``aims baseline describe``: a model's parameters, counted on the meta device.

The model is assembled exactly as ``train`` assembles it (SAM size, projector, strategy,
channel count from the records) but on torch's meta device, so nothing is allocated and no
checkpoint is read: ViT-H describes in a second. Counts are given per module group, with the
projector's own count (the figure the paper's Fig. 6 plots) and the parameters the strategy
added (Table 4's), so the recipe tests and the reproduction plan read their numbers here.

An RGB-X system (``--strategy vipt|cmx|gopt|iv-tuning``) has no projector: the parameters it
adds to SAM form their own group, ``rgb-x system``, and are its ``strategy_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aims.baselines.model import ModelSpec, build_model
from aims.baselines.projectors import projector_spec
from aims.baselines.reference_peft import PEFT_PARAMETER_NAMES
from aims.baselines.strategies import PROJECTOR_PREFIX
from aims.errors import AimsError

#: the group of the parameters an RGB-X system adds (matched by name, before GROUPS)
SYSTEM_GROUP = "rgb-x system"
#: module groups, first matching prefix wins (names of :class:`aims.baselines.model.SimCMF`)
GROUPS = (
    ("projector", ("sam." + PROJECTOR_PREFIX,)),
    ("sam patch embedding", ("sam.vision_encoder.patch_embed.",)),
    ("image encoder", ("sam.vision_encoder.",)),
    ("prompt encoder", ("sam.prompt_encoder.", "sam.shared_image_embedding.")),
    ("mask decoder", ("sam.mask_decoder.",)),
)
#: name fragments of the parameters a strategy adds (the reference's and ours)
STRATEGY_FRAGMENTS = tuple(f for names in PEFT_PARAMETER_NAMES.values() for f in names) + (
    "lora_A", "lora_B", "adapter_down", "adapter_up", "prompt_tokens", "prompt_gate")

#: families ``--layers/--kernel/--dim`` assemble a name for
FAMILY_TEMPLATES = {"paper": "paper-n{n}-k{k}-d{d}", "preconv": "preconvk{k}n{n}d{d}"}


def family_name(family: str, layers: int | None, kernel: int | None, dim: int | None) -> str:
    """``paper`` + n/k/d → ``paper-n{n}-k{k}-d{d}`` (or ``preconv``'s spelling). Any other
    ``--adapter`` is taken as a full name and must come without ``--layers/--kernel/--dim``."""
    given = [v is not None for v in (layers, kernel, dim)]
    if family not in FAMILY_TEMPLATES:
        if any(given):
            raise AimsError(f"--layers/--kernel/--dim assemble a name of the {' or '.join(FAMILY_TEMPLATES)} "
                            f"family; --adapter {family!r:.80} is a full projector name already.")
        return family
    if not all(given):
        raise AimsError(f"--adapter {family} needs --layers, --kernel and --dim "
                        f"(it names {FAMILY_TEMPLATES[family]}).")
    return FAMILY_TEMPLATES[family].format(n=layers, k=kernel, d=dim)


@dataclass(frozen=True)
class Counts:
    total: int = 0
    trainable: int = 0

    def add(self, numel: int, trainable: bool) -> Counts:
        return Counts(self.total + numel, self.trainable + (numel if trainable else 0))

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "trainable": self.trainable}


def _group(name: str, system_names: frozenset[str]) -> str:
    if name in system_names:
        return SYSTEM_GROUP
    if system_names and name.startswith("sam.vision_encoder.") and ".patch_embed." in name:
        return "sam patch embedding"      # SAM's own, kept as a submodule by the system
    group = next((g for g, prefixes in GROUPS if name.startswith(prefixes)), None)
    if group is None:
        raise AimsError(f"parameter {name} belongs to no module group")
    return group


def describe_model(spec: ModelSpec) -> dict[str, Any]:
    """Counts of ``spec``'s model: total and trainable, per group, the projector's own, and
    the strategy's (or RGB-X system's) added parameters. Tied weights count once."""
    model = build_model(spec, device="meta")
    system = model.system
    system_names = frozenset() if system is None else frozenset("sam." + n for n in system.added)
    groups = {name: Counts() for name, _ in GROUPS}
    if system is not None:
        groups = {SYSTEM_GROUP: Counts(), **groups}
    everything = added = Counts()
    for name, param in model.named_parameters():      # named_parameters de-duplicates ties
        group = _group(name, system_names)
        groups[group] = groups[group].add(param.numel(), param.requires_grad)
        everything = everything.add(param.numel(), param.requires_grad)
        if name in system_names or (system is None and any(f in name for f in STRATEGY_FRAGMENTS)):
            added = added.add(param.numel(), param.requires_grad)
    if system is not None:
        origin, summary = "rgb-x system", f"no projector: {system.name} feeds RGB and X apart; {system.source}"
    else:
        projector = projector_spec(spec.adapter)
        origin, summary = projector.origin, projector.summary
    info = {"size": spec.size, "adapter": spec.adapter, "adapter_origin": origin,
            "adapter_summary": summary, "strategy": spec.strategy, "in_channels": spec.in_channels,
            "adapter_parameters": groups["projector"].total, "strategy_parameters": added.total,
            "parameters": everything.to_dict(), "groups": {g: c.to_dict() for g, c in groups.items()}}
    if system is not None:
        from aims.baselines.rgbx_systems import input_prior

        info["input_prior"] = input_prior(spec.strategy)
    return info


def format_description(info: dict[str, Any]) -> str:
    """The human-readable table of :func:`describe_model`'s result."""
    head = (f"SAM {info['size']} + projector {info['adapter']} ({info['adapter_origin']}), strategy "
            f"{info['strategy']}, {info['in_channels']} input channel(s)")
    if info.get("config"):
        head += f"; config {info['config']}, modality {info['modality']}, recipe {info.get('recipe')}"
    lines = [head, f"  {info['adapter_summary']}", "",
             f"  {'group':<22}{'total':>15}{'trainable':>15}"]
    for name, c in info["groups"].items():
        lines.append(f"  {name:<22}{c['total']:>15,}{c['trainable']:>15,}")
    p = info["parameters"]
    lines += [f"  {'all':<22}{p['total']:>15,}{p['trainable']:>15,}", "",
              f"  projector's own parameters: {info['adapter_parameters']:,}",
              f"  added by the strategy:      {info['strategy_parameters']:,}"]
    return "\n".join(lines)


__all__ = ["FAMILY_TEMPLATES", "GROUPS", "SYSTEM_GROUP", "describe_model", "family_name", "format_description"]
