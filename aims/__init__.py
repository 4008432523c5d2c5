"""AIMS: Any Image Modality Segmentation.

Turns public non-RGB segmentation datasets into one promptable-segmentation benchmark
(one Hugging Face dataset config per modality), scores predictions on it, and runs the
SimCMF baselines. The heavy parts (converters, baselines) import lazily so that
``import aims`` stays cheap and torch-free.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "dataset_root", "load_dataset", "modality_tensor", "score"]
#: lazily re-exported from :mod:`aims.torch`; not in ``__all__``, so that
#: ``from aims import *`` does not import torch
_TORCH_EXPORTS = ("AimsDataset", "collate_instances")


def __getattr__(name: str):
    # Lazy re-exports: importing `datasets` costs ~1 s, which a CLI `--help` should not pay.
    if name == "load_dataset":
        from aims.loader import load_dataset

        return load_dataset
    if name == "dataset_root":
        from aims.loader import dataset_root

        return dataset_root
    if name == "modality_tensor":
        from aims.modalities import modality_tensor

        return modality_tensor
    if name == "score":  # aims.score(predictions, data_dir=..., protocol=..., configs=...)
        from aims.scoring import score

        return score
    if name in _TORCH_EXPORTS:  # PyTorch is imported only when one of these is asked for
        from importlib import import_module

        return getattr(import_module("aims.torch"), name)
    raise AttributeError(f"module 'aims' has no attribute {name!r}")
