"""Deterministic train/validation/test assignment.

Protocol ``aims`` selects models on a ``validation`` split carved out of the official
training split, never on test. The carve-out must be reproducible on any machine and in any
Python process, so it depends only on the image id through SHA-256 — not on Python's
``hash()`` (salted per process), file order, or a random generator. Configs that share image
ids (``depth`` and ``hha`` come from the same NYUv2 images) therefore share the same
validation images, which keeps cross-modality comparisons fair.
"""

from __future__ import annotations

import hashlib

#: Bumped only if the assignment rule ever changes (it changes every validation split).
SPLIT_SALT = "aims-split-v1"

_PASS_THROUGH = {"test": "test", "validation": "validation", "val": "validation"}


def split_fraction_key(image_id: str) -> float:
    """A stable number in [0, 1) for an image id (first 8 bytes of a salted SHA-256)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(image_id: str, official_split: str, validation_fraction: float = 0.1) -> str:
    """Map an image's official split to its AIMS split.

    ``"train"`` becomes ``"validation"`` for about ``validation_fraction`` of image ids
    (decided by a stable hash of the id) and stays ``"train"`` otherwise; ``"test"`` stays
    ``"test"``. A source's own ``"validation"``/``"val"`` split is kept as ``"validation"``.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    split = official_split.strip().lower()
    if split in _PASS_THROUGH:
        return _PASS_THROUGH[split]
    if split != "train":
        raise ValueError(
            f"unknown official split {official_split!r} for image {image_id!r}; "
            "expected 'train', 'validation' or 'test'"
        )
    return "validation" if split_fraction_key(image_id) < validation_fraction else "train"
