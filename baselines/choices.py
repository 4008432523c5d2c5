"""Every name a baseline run can choose, importable without torch.

`aims baseline --help` and argument checking must not pay torch's import (seconds, and it
is absent without the baselines extra), so the registries' *names* live here and the
modules that build the models import them from here: one place per fact.

Names say where a variant comes from. The reference code's strategies keep its names
(``lora``, ``prompt`` …, proven against its fixtures in ``tests/test_reference_peft.py``);
this project's own earlier variants keep names that say how they differ (``lora-fused-qkv``,
``mlp-adapter-post-ln``, ``prompt-gated``). The cross-modal projectors (``--adapter``) are
named in :mod:`aims.baselines.projectors`; :data:`FIXED_ADAPTERS` repeats its fixed names
for ``--help`` (a test keeps the two equal) and :data:`ADAPTER_FAMILIES` its patterns.
"""

from __future__ import annotations

#: the reference code's strategies (aims.baselines.reference_peft), mt-cly/SimCMF@0cdc5c1
REFERENCE_STRATEGIES = ("lora", "mlp-adapter", "prompt", "prefix", "linear-probing", "full")
#: ours, kept under names that say how they differ from the reference (aims.baselines.strategies)
AIMS_STRATEGIES = ("lora-fused-qkv", "mlp-adapter-post-ln", "prompt-gated")
#: ``full`` from a random initialisation: the paper's "train from scratch" row
SCRATCH = "scratch"
#: other papers' RGB-X systems rebuilt on SAM (issue 12; aims.baselines.rgbx_systems): each
#: replaces the projector + strategy, takes RGB and X apart and trains what its paper trains
RGBX_STRATEGIES = ("vipt", "cmx", "gopt", "iv-tuning")
#: every strategy `aims baseline train --strategy` accepts
STRATEGIES = REFERENCE_STRATEGIES + AIMS_STRATEGIES + (SCRATCH,) + RGBX_STRATEGIES
#: the strategies that train every SAM weight (learning rate of full fine-tuning); CMX is
#: full fine-tuning in SimCMF's Table 6
FULL_STRATEGIES = ("full", SCRATCH, "cmx")

#: the fixed projector names of aims.baselines.projectors (families below)
FIXED_ADAPTERS = ("simcmf", "baseline_a", "baseline_b", "baseline_b-unpadded", "baseline_c", "baseline_d",
                  "zeroshot", "channels-to-batch", "aims-conv3")
#: the ``--adapter`` of the RGB-X systems: no projector, the system splits RGB and X itself
RGBX_ADAPTER = "rgbx-split"
#: what an RGB-X system is fed: the modality's columns in record order (RGB, then X), not the
#: fixed channel shuffle SimCMF is given; run.json and the predictions' meta record it
RGBX_INPUT_PRIOR = "rgb-x-unshuffled"
#: projector families, any member of which is a valid ``--adapter``
ADAPTER_FAMILIES = ("paper-n{n}-k{k}-d{d}", "preconvk{k}n{n}d{d}", "preattnp{p}n{n}d{d}[-unscrambled]")

#: how an image reaches SAM's 1024² input: aspect-kept resize + pad, or the reference's warp
RESIZE_MODES = ("sam", "warp")
#: prediction precision
DTYPES = ("bf16", "fp32")
#: which saved weights of a run to use
WEIGHTS = ("best", "last")
