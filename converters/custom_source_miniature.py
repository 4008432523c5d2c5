"""Small folders of your own (docs/bring-your-own-modality.md), one per kind of input the
guide describes, for tests and examples:

- ``float32-npy``: 2-channel float32 ``.npy`` (echo strength in dB, range in metres),
  semantic labels with three classes and a void value, no RGB;
- ``uint16-tif``: 1-channel 16-bit TIFFs (train written by tifffile with zlib, test by
  OpenCV with LZW, as cameras' tools write them), semantic labels with one class;
- ``rgbx-png``: an 8-bit 3-channel PNG modality with a registered 16-bit RGB in ``rgb/``
  (RGB-X), semantic labels;
- ``instances``: 1-channel int16 ``.npy`` with instance-id labels (touching instances
  that connected components would merge) and ``categories/`` giving each its class.

Every file is written by the library a user would use (numpy, tifffile, OpenCV), never
by AIMS itself, so the tests read what users have.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

KINDS = ("float32-npy", "uint16-tif", "rgbx-png", "instances")
IDS = {"train": ("f001", "f002", "f003", "f004", "f005", "f006"), "test": ("f101", "f102", "f103")}
SIZE = (48, 64)

YAML = {
    "float32-npy": """\
# a made-up side-scan sonar: two float32 channels per pixel
name: sonar2
title: Toy side-scan sonar (a made-up example)
description: Side-scan sonar echo strength and slant range, with fish and rock labels.
license: cc-by-4.0
citation: |
  @misc{toysonar2, title = {Toy side-scan sonar}, year = {2025}}
homepage: https://example.org/toy-sonar
classes: [background, fish, rock]
channels:
  - {name: echo, unit: dB}
  - {name: range, unit: m}
labels: semantic
void: [255]
label: Sonar-2
notes:
  - Echo is calibrated backscatter; range is the slant range of each pixel.
""",
    "uint16-tif": """\
name: thermal16
description: A 16-bit thermal camera's raw counts, with person masks.
license: cc0-1.0
citation: "unpublished"
classes: [background, person]
channels:
  - {name: counts, unit: raw sensor counts}
labels: semantic
connectivity: 4
""",
    "rgbx-png": """\
name: falsecolour
description: An 8-bit false-colour modality registered to a 16-bit RGB frame.
license: cc-by-4.0
citation: "unpublished"
classes: [background, car, tree]
channels:
  - {name: red, unit: ""}
  - {name: green, unit: ""}
  - {name: blue, unit: ""}
labels: semantic
""",
    "instances": """\
name: panes
description: Signed 16-bit height differences, with instance labels of panes and frames.
license: cc-by-4.0
citation: "unpublished"
classes: [background, pane, frame]
channels:
  - {name: height, unit: "0.1 mm"}
labels: instances
""",
}


def _semantic(rng: np.random.Generator, classes: int) -> np.ndarray:
    h, w = SIZE
    labels = np.zeros(SIZE, np.uint8)
    y, x = (int(v) for v in rng.integers(2, 10, 2))
    labels[y:y + 16, x:x + 20] = 1
    labels[4:10, 44:54] = 1  # a small one (under protocol aims' 100 px)
    if classes > 2:
        labels[30:44, 30:60] = 2
    return labels


def _instances(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, int]]:
    ids = np.zeros(SIZE, np.uint8)
    x = int(rng.integers(2, 8))
    ids[6:30, x:x + 12] = 1          # two panes that touch: components would merge them
    ids[6:30, x + 12:x + 24] = 2
    ids[34:44, 30:62] = 3            # a frame
    return ids, {"1": 1, "2": 1, "3": 2}


def write_example(folder: str | Path, kind: str = "float32-npy", *, seed: int = 0) -> Path:
    """Write the example folder ``kind`` (see the module docstring) into ``folder`` and
    return it (the path to pass as ``aims prepare --source``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    import cv2
    import tifffile

    rng = np.random.default_rng(seed)
    root = Path(folder)
    (root / "aims-source.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "aims-source.yaml").write_text(YAML[kind], encoding="utf-8")
    for split, ids in IDS.items():
        for sub in ("images", "labels") + (("rgb",) if kind == "rgbx-png" else ()) + (
                ("categories",) if kind == "instances" else ()):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            image_path = root / "images" / split / image_id
            if kind == "float32-npy":
                labels = _semantic(rng, 3)
                echo = (labels.astype(np.float32) * np.float32(-7.5) - np.float32(60)
                        + rng.standard_normal(SIZE).astype(np.float32))
                labels[0, :3] = 255  # void pixels
                slant = np.linspace(1.5, 42.0, SIZE[1], dtype=np.float32)[None].repeat(SIZE[0], 0)
                slant = slant + rng.random(SIZE, dtype=np.float32) * np.float32(1e-3)
                array = np.stack([echo, slant], axis=-1)
                array[0, 0, 0] = np.float32(-0.0)
                array[0, 1, 1] = np.float32(1e-42)  # subnormal: stored bit for bit
                np.save(image_path.with_suffix(".npy"), array)
            elif kind == "uint16-tif":
                labels = _semantic(rng, 2)
                counts = (labels.astype(np.uint16) * 9000 + 20000
                          + rng.integers(0, 4000, SIZE, dtype=np.uint16)).astype(np.uint16)
                if split == "train":
                    tifffile.imwrite(image_path.with_suffix(".tif"), counts, compression="zlib")
                else:  # OpenCV writes LZW, which tifffile reads only with imagecodecs
                    ok, buf = cv2.imencode(".tiff", counts)
                    assert ok
                    image_path.with_suffix(".tiff").write_bytes(buf.tobytes())
            elif kind == "rgbx-png":
                labels = _semantic(rng, 3)
                colour = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
                colour[labels == 1] = (250, 40, 40)
                cv2.imwrite(str(image_path.with_suffix(".png")), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
                rgb = rng.integers(0, 65536, (*SIZE, 3), dtype=np.uint16)
                cv2.imwrite(str(root / "rgb" / split / f"{image_id}.png"), rgb[:, :, ::-1])
            else:
                labels, categories = _instances(rng)
                height = (rng.integers(-3000, 3000, SIZE) + labels.astype(np.int64) * 1000).astype(np.int16)
                np.save(image_path.with_suffix(".npy"), height)
                (root / "categories" / split / f"{image_id}.json").write_text(json.dumps(categories),
                                                                              encoding="utf-8")
            cv2.imwrite(str(root / "labels" / split / f"{image_id}.png"), labels)
    return root
