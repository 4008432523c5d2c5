"""Label files several sources share: binary glass masks and instance-id maps.

RGBP-Glass and RGB-T Glass both label glass with a 0/255 (or 1-bit) mask, and the SimCMF
repacks of both replace it with an instance-id PNG; the readers live here, public, so no
converter reaches into another's module. Every reader raises
:class:`~aims.errors.UnreadableSample` naming the file when it cannot be used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aims.converters.base import Sample
from aims.converters.locate import check_same_size, open_image
from aims.errors import UnreadableSample

__all__ = ["glass_sample", "read_glass_mask", "read_id_map"]

#: the class id of glass in both glass sources (0 = background)
GLASS = 1


def read_glass_mask(path: Path) -> np.ndarray:
    """A glass mask (1-bit, or 0/255 L or RGB PNG) as a (H, W) bool map, glass = value ≥
    half range. RGB masks: channel 1, as the RGBP-Glass authors' evaluation does."""
    img = open_image(path, "a glass mask PNG")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    arr = np.asarray(img)
    if img.mode == "1":
        return arr.astype(bool)
    if arr.ndim == 3:
        arr = arr[:, :, 1] if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.dtype == np.uint8:
        return arr >= 128
    if arr.dtype == np.uint16 or (img.mode.startswith("I;16")):
        return arr >= 32768
    raise UnreadableSample(
        f"{path} is a {img.mode} image; expected a glass mask PNG (8-bit grey or RGB, "
        "glass = 255, background = 0).",
        path=path,
    )


def read_id_map(path: Path) -> np.ndarray:
    """An instance-id PNG of a SimCMF repack (the reference code reads it with Pillow's
    ``convert('I')``): 8/16/32-bit grey or palette indices, 0 = no instance."""
    img = open_image(path, "an instance-id mask PNG")
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise UnreadableSample(
            f"{path} is a {img.mode} image; expected an instance-id mask (one integer id "
            "per pixel, 8/16-bit grey, 0 = no instance) as the SimCMF repack ships.",
            path=path,
        )
    arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size and int(arr.min()) < 0:
        raise UnreadableSample(f"{path} holds negative instance ids.", path=path)
    return arr


def glass_sample(image_id: str, split: str, images: dict[str, np.ndarray], label: Path, image: Path,
                 *, instance_ids: bool = False) -> Sample:
    """The label half of a glass sample (RGBP-Glass and RGB-T Glass alike): a glass mask
    becomes one semantic class for connected components; a repack's instance-id mask is
    kept as given, every instance of class glass."""
    shape = images["rgb"].shape
    if not instance_ids:
        glass = read_glass_mask(label)
        check_same_size(shape, glass, label, image)
        return Sample(image_id, split, images, semantic=glass.astype(np.uint8))
    ids = read_id_map(label)
    check_same_size(shape, ids, label, image)
    return Sample(image_id, split, images, instance_map=ids,
                  instance_category={int(i): GLASS for i in np.unique(ids) if i != 0})
