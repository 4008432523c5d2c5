"""What a training run reads: the model input (``--modality``, checked against the records
at run time) and the training and selection rows of each recipe.

``--modality`` is a free string. It must name a modality registered in this process: a
built-in source's, or one carried by a prepared dataset's ``aims_config.json`` (registered
from ``--data-dir`` before the check, so a user's own modality works), and the config must
store every column it stacks. Under ``--recipe reference`` it must have a reference input
pipeline instead (:data:`aims.baselines.reference_inputs.REFERENCE_INPUTS`: the reference's
own keys such as ``t_500`` or the AIMS modality each reproduces).

Selection rows: the ``validation`` split, or a deterministic carve of train when the config
has none. ``--select-on-test`` (reference recipe only) evaluates on ``test`` as the reference
code does, and then trains on train ∪ validation: the reference's training list is the whole
release train split, from which AIMS carved its validation split.

The RGB-X systems (``--strategy vipt|cmx|gopt|iv-tuning``) read their config's RGB-X modality
(the default) un-shuffled; any other config or modality is refused
(:func:`aims.baselines.rgbx_systems.rgbx_input`). Under ``--recipe reference`` they read the
reference's RGB-X loader of the config (``rgbd``, ``rgbt``, ``rgbt_500`` …), which stacks RGB
first and X after it, so it is un-shuffled already.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aims.baselines.data import (SampleSource, available_splits, config_channel_stats, load_split,
                                 modality_normalizer, validation_carve)
from aims.baselines.recipes import Recipe
from aims.errors import AimsError


@dataclass(frozen=True)
class ModelInput:
    """A resolved ``--modality``: its name, channel count, (reference recipe) pipeline and
    input prior (``rgb-x-unshuffled`` for the RGB-X systems, else ``None``)."""

    name: str
    channels: int
    reference: Any = None     # a ReferenceInputSpec under the reference recipe
    prior: str | None = None


def register_records(data_dir: str | Path | None) -> None:
    """Register the records of a prepared dataset folder (default: ``$AIMS_HOME``'s), if it
    exists; nothing is required of it. Run folders name modalities a user may have brought,
    so this comes before reading one."""
    from aims.converters.registry import register_prepared_records
    from aims.loader import dataset_root

    register_prepared_records(dataset_root(data_dir))


def register_dataset(config: str, data_dir: str | Path | None) -> dict[str, Any]:
    """Register the records of the dataset folder holding ``config`` (so configs and
    modalities brought by a user are known) and return the config's channel statistics."""
    return config_channel_stats(config, data_dir)


def resolve_input(config: str, modality: str | None, recipe: Recipe, strategy: str | None = None) -> ModelInput:
    """``--modality`` (default: the config's own; for an RGB-X system, the config's RGB-X
    modality) checked against what is registered now."""
    from aims.baselines.rgbx_systems import input_prior, is_rgbx_system, rgbx_input
    from aims.converters.registry import config_record
    from aims.modalities import MODALITY_STACKS

    prior = input_prior(strategy)
    if is_rgbx_system(strategy):   # an RGB-X config; the reference recipe also takes its loader keys
        default = rgbx_input(str(strategy), config, None if recipe.inputs == "reference" else modality)
        modality = modality if recipe.inputs == "reference" and modality else default
    name = modality or config
    if recipe.inputs == "reference":
        from aims.baselines.reference_inputs import reference_spec

        spec = reference_spec(name)
        if spec.config != config:
            raise AimsError(f"modality {name!r} reads config {spec.config!r} in the reference recipe, "
                            f"not {config!r}; pass --config {spec.config}")
        if prior is not None and (spec.steps[0][1][:1] != ("rgb",) or spec.channels < 4):
            # the reference's RGB-X loaders stack RGB first, then X: already un-shuffled
            raise AimsError(f"--strategy {strategy} is an RGB-X system; the reference input {name!r} is not "
                            f"RGB followed by another modality. Omit --modality to use {default!r}.")
        return ModelInput(name, spec.channels, spec, prior)
    if name not in MODALITY_STACKS:
        raise AimsError(f"unknown modality {name!r}; registered: {', '.join(MODALITY_STACKS)} (a modality "
                        "of your own is registered by preparing it: pass that dataset's --data-dir)")
    stack = MODALITY_STACKS[name]
    stored = {c.name for c in config_record(config).columns}
    missing = [c for c in stack.columns if c not in stored]
    if missing:
        raise AimsError(f"modality {name!r} stacks column(s) {', '.join(missing)}, which config {config!r} "
                        f"does not store (its columns: {', '.join(sorted(stored))})")
    return ModelInput(name, stack.channels, prior=prior)


@dataclass
class TrainingRows:
    """The sources a run trains and selects on, and how selection was done."""

    train: SampleSource
    select: SampleSource
    note: str


def _carve(config: str, rows: Any) -> tuple[list[int], list[int], str]:
    ids = [str(i) for i in rows.select_columns(["image_id"])["image_id"]]
    val_ids = validation_carve(ids)
    val_idx = [i for i, x in enumerate(ids) if x in val_ids]
    train_idx = [i for i, x in enumerate(ids) if x not in val_ids]
    if not train_idx:
        raise AimsError(f"config {config!r} has {len(ids)} train image(s) and no validation "
                        "split: too few to carve a validation set from train.")
    note = (f"config {config!r} has no validation split: validated on {len(val_idx)} of "
            f"{len(ids)} train images carved by stable hash (aims.splits.split_fraction_key), "
            "trained on the rest; test was never used")
    return train_idx, val_idx, note


def _split_rows(config: str, data_dir: str | Path | None, select_on_test: bool
                ) -> tuple[Any, list[int] | None, Any, list[int] | None, str]:
    """(train rows, their indices, selection rows, their indices, note)."""
    splits = available_splits(config, data_dir)
    if "train" not in splits:
        raise AimsError(f"config {config!r} has no train split (splits: {', '.join(splits)}).")
    train_rows = load_split(config, "train", data_dir)
    if select_on_test:
        if "test" not in splits:
            raise AimsError(f"--select-on-test: config {config!r} has no test split.")
        if "validation" in splits:
            import datasets

            train_rows = datasets.concatenate_datasets([train_rows, load_split(config, "validation", data_dir)])
        note = ("selected on the TEST split, as the reference code does (a protocol flaw: the "
                "selected score is not a held-out score); trained on train + validation, the "
                "reference's whole training list")
        return train_rows, None, load_split(config, "test", data_dir), None, note
    if "validation" in splits:
        return train_rows, None, load_split(config, "validation", data_dir), None, "validation split"
    train_idx, val_idx, note = _carve(config, train_rows)
    return train_rows, train_idx, train_rows, val_idx, note


def training_rows(config: str, data_dir: str | Path | None, model_input: ModelInput, recipe: Recipe,
                  size: int, resize: str, select_on_test: bool) -> TrainingRows:
    """The recipe's training and selection sources for ``config``."""
    if select_on_test and recipe.inputs != "reference":
        raise AimsError("--select-on-test reproduces the reference code's protocol flaw and exists "
                        "only under --recipe reference; the aims recipe selects on validation.")
    train_rows, train_idx, sel_rows, sel_idx, note = _split_rows(config, data_dir, select_on_test)
    if recipe.inputs == "reference":
        from aims.baselines.reference_data import ReferenceSampleSource, every_nth

        spec = model_input.reference
        train_idx = every_nth(list(range(len(train_rows))) if train_idx is None else train_idx, spec.train_every)
        if select_on_test:
            sel_idx = every_nth(list(range(len(sel_rows))), spec.test_every)
        return TrainingRows(ReferenceSampleSource(train_rows, spec, size, train_idx),
                            ReferenceSampleSource(sel_rows, spec, size, sel_idx), note)
    prior = model_input.prior
    norm = modality_normalizer(model_input.name, config_channel_stats(config, data_dir), prior)
    return TrainingRows(SampleSource(train_rows, model_input.name, norm, size, resize, train_idx, prior),
                        SampleSource(sel_rows, model_input.name, norm, size, resize, sel_idx, prior), note)


__all__ = ["ModelInput", "TrainingRows", "register_dataset", "register_records", "resolve_input", "training_rows"]
