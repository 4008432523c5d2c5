"""The two named training recipes, ``reference`` and ``aims`` (``--recipe``).

``reference`` does what the SimCMF reference code (``mt-cly/SimCMF@0cdc5c1``) does, point by
point (docs/baselines.md has the table with file:line pointers): its gated ``simcmf``
projector, its input pipeline (per-image min-max where it has one, fixed per-dataset
constants, bilinear warp to 1024² without antialiasing), training instances at or above the
area threshold (the first remaining id dropped), fp32, an unshuffled loader drawing from one
numpy stream seeded with ``-seed`` (default 8888) while torch is seeded with 0, 51 epochs,
evaluation every 5 epochs *before* that epoch's training with the reference's IoU on the
256² grid, DiceCE loss, Adam (0.9, 0.999) with StepLR(10, 0.5), lr 3e-4 (PEFT) / 3e-5 (full,
the README's value). One point is not copied by default: the reference selects its best
epoch on the **test** split. ``reference`` selects on validation unless ``--select-on-test``
is given, and then every file it writes says so.

``aims`` is this project's default: selection on the validation split after every epoch,
inputs normalised with the config's train-split statistics and resized aspect-kept with
antialiasing, a shuffled loader whose draws are keyed on (seed, epoch, image) so workers,
resumes and several GPUs draw the same samples, bf16 autocast on CUDA, 50 epochs, the paper's
own adapter (``paper-n2-k3-d64``, the n/k/d family with the ReLU the paper describes), lr
1e-5 for full fine-tuning (the paper's sweep optimum). Loss, optimiser and schedule are the
reference's.

Torch-free: the CLI reads the defaults for ``--help`` and validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from aims.baselines.choices import FULL_STRATEGIES
from aims.errors import AimsError


@dataclass(frozen=True)
class Recipe:
    """Defaults and fixed behaviour of one recipe. Every field a user may override has a
    ``train`` option; the others are the recipe."""

    name: str
    summary: str
    adapter: str
    strategy: str
    epochs: int
    #: evaluate when ``epoch % eval_every == 0`` (or at the last epoch)
    eval_every: int
    #: evaluate before an epoch's training (the reference) or after it (ours)
    eval_before_training: bool
    #: ``reference``: aims.baselines.reference_inputs; ``aims``: aims.baselines.data
    inputs: str
    shuffle: bool
    #: ``fp32`` always, or ``bf16`` autocast on CUDA
    precision: str
    seed: int
    #: torch's seed when it is not ``seed`` (the reference always seeds torch with 0)
    torch_seed: int | None
    lr_peft: float
    lr_full: float
    resize: str

    def default_lr(self, strategy: str) -> float:
        if strategy in RGBX_LR:
            return RGBX_LR[strategy]
        return self.lr_full if strategy in FULL_STRATEGIES else self.lr_peft


#: an RGB-X system's own learning rate, where its official code sets one for the part that
#: trains (the others take the recipe's PEFT or full-fine-tuning rate). Same optimiser and
#: schedule as every run (Adam, StepLR), so only the rate carries over.
RGBX_LR: dict[str, float] = {
    "vipt": 4e-4,    # jiawen-zhu/ViPT@f49f301 experiments/vipt/deep_rgbt.yaml (and deep_rgbd) TRAIN.LR
}


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("reference", "the SimCMF reference code, point by point (mt-cly/SimCMF@0cdc5c1)",
           adapter="simcmf", strategy="lora", epochs=51, eval_every=5, eval_before_training=True,
           inputs="reference", shuffle=False, precision="fp32", seed=8888, torch_seed=0,
           lr_peft=3e-4, lr_full=3e-5, resize="warp"),
    Recipe("aims", "this project's default: validation selection, dataset statistics, aspect-kept inputs",
           adapter="paper-n2-k3-d64", strategy="lora", epochs=50, eval_every=1, eval_before_training=False,
           inputs="aims", shuffle=True, precision="bf16", seed=0, torch_seed=None,
           lr_peft=3e-4, lr_full=1e-5, resize="sam"),
)}

#: the learning rates of the paper's sweep (protocol.md: {3e-6 … 3e-3})
LR_SWEEP = (3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise AimsError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None


def selection_label(recipe_name: str, select_on_test: bool) -> str:
    """How a run picked its weights, as results files and run folders record it."""
    if select_on_test:
        return "test split (the reference code's protocol flaw; not a valid held-out score)"
    return "validation split"


__all__ = ["LR_SWEEP", "RECIPES", "RGBX_LR", "Recipe", "recipe", "selection_label"]
