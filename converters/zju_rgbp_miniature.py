"""A miniature ZJU-RGBP with the release's exact layout and file kinds.

Scenes are synthetic streets (sky, buildings with glass windows, road, trees, cars,
pedestrians, bicycles). Each pixel gets an unpolarized intensity S0 per colour channel, a
degree and an angle of linear polarization per class (glass and car paint polarize
strongly, foliage hardly), and the four angle images follow Malus's law

    I(θ) = ½·S0·(1 + DoLP·cos(2θ − 2·AoLP)),   θ ∈ {0°, 45°, 90°, 135°}

quantised to 8-bit RGB PNGs, so the Stokes recovery in :mod:`aims.modalities` can be
checked against known values. Labels are real mode-P PNGs with the VOC palette.

Variants (``variant=``): ``"degree"`` (``<root>/{train,val}/<θ>/<n>_<θ>°.png``, labels
``label/<n>.png``), ``"image0"`` (``<θ>/<n>_image0_<θ>.png``, labels
``label/<n>_image0.png``) and ``"repack"`` (SimCMF ``zju-rgbp/`` with instance-id labels in
``label_sam/``). No RAR writer exists on Debian main or PyPI (``rar`` is non-free), so the
miniature is a folder; the RAR path is tested on real sample archives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aims.converters.zju_rgbp import ANGLES, DEGREE, voc_palette

ROOT_NAME = "ZJU-RGBP"  # the release's own folder name is not published
REPACK_NAME = "zju-rgbp"
SMALL_SIZE = (80, 96)  # rows, columns
FULL_SIZE = (1024, 1224)

# class id -> (base colour RGB 0..1, DoLP, AoLP radians)
_CLASS_LOOK = {
    0: ((0.3, 0.3, 0.3), 0.05, 0.0),
    1: ((0.6, 0.55, 0.5), 0.10, 0.3),   # building
    2: ((0.35, 0.45, 0.55), 0.60, 1.2),  # glass: strong, AoLP beyond ±π/4
    3: ((0.7, 0.1, 0.1), 0.45, -0.9),   # car
    4: ((0.4, 0.4, 0.42), 0.30, 0.05),  # road
    5: ((0.15, 0.5, 0.15), 0.04, 0.7),  # tree
    6: ((0.5, 0.7, 0.95), 0.35, -0.4),  # sky
    7: ((0.8, 0.6, 0.4), 0.08, 0.2),    # pedestrian
    8: ((0.2, 0.2, 0.6), 0.20, -1.4),   # bicycle
}


def render_scene(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels (H, W) uint8 and per-pixel S0 (H, W, 3) in 0..255, DoLP, AoLP (H, W)."""
    h, w = shape
    labels = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.45, 0.6))
    labels[:horizon] = 6
    labels[horizon:] = 4
    x = 0
    while x < w:  # buildings along the horizon, windows of glass
        bw = int(rng.integers(max(w // 6, 4), max(w // 3, 5)))
        top = int(rng.integers(h // 10, max(horizon - h // 8, h // 10 + 1)))
        labels[top:horizon, x:x + bw] = 1
        for wy in range(top + 3, horizon - 4, max(h // 10, 4)):
            for wx in range(x + 2, x + bw - 3, max(w // 16, 4)):
                labels[wy:wy + max(h // 25, 2), wx:wx + max(w // 40, 2)] = 2
        x += bw + int(rng.integers(0, max(w // 20, 2)))
    for cls, count, (ph, pw) in ((5, 2, (0.25, 0.08)), (3, 2, (0.1, 0.16)),
                                 (7, 2, (0.15, 0.03)), (8, 1, (0.08, 0.06))):
        for _ in range(count):
            rh, rw = max(int(h * ph), 3), max(int(w * pw), 3)
            y0 = int(np.clip(horizon - rh // 2 + rng.integers(0, max(h // 5, 1)), 0, h - rh))
            x0 = int(rng.integers(0, w - rw))
            labels[y0:y0 + rh, x0:x0 + rw] = cls
    labels[:2, :] = 0  # an unlabelled strip, as annotators leave at borders
    colour = np.zeros((h, w, 3))
    dolp = np.zeros((h, w))
    aolp = np.zeros((h, w))
    for cls, (base, d, a) in _CLASS_LOOK.items():
        m = labels == cls
        colour[m] = base
        dolp[m] = d
        aolp[m] = a
    shade = 0.75 + 0.25 * np.linspace(1, 0, h)[:, None, None]
    s0 = np.clip(colour * shade * 230 + rng.normal(0, 4, (h, w, 3)), 0, 250)
    return labels, s0, dolp, aolp


def angle_images(s0: np.ndarray, dolp: np.ndarray, aolp: np.ndarray) -> dict[int, np.ndarray]:
    """Malus's law per colour channel, rounded to uint8."""
    out = {}
    for a in ANGLES:
        theta = np.deg2rad(a)
        img = 0.5 * s0 * (1 + dolp[..., None] * np.cos(2 * theta - 2 * aolp[..., None]))
        out[a] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


def save_label(path: Path, labels: np.ndarray) -> None:
    from PIL import Image

    img = Image.fromarray(labels, mode="P")
    img.putpalette(voc_palette())
    img.save(path)


def write_miniature(folder: Path, *, seed: int = 0, full_resolution: bool = False,
                    variant: str = "degree", num_train: int | None = None,
                    num_test: int | None = None) -> Path:
    """Write a miniature into ``folder``; return the path to pass as ``--source``
    (``folder`` for the release variants, ``folder/zju-rgbp`` for the repack)."""
    from PIL import Image

    from aims.instances import split_instances

    if variant not in ("degree", "image0", "repack"):
        raise ValueError(f"variant must be 'degree', 'image0' or 'repack', not {variant!r}")
    folder = Path(folder)
    root = folder / (REPACK_NAME if variant == "repack" else ROOT_NAME)
    shape = FULL_SIZE if full_resolution else SMALL_SIZE
    counts = {"train": num_train if num_train is not None else 4,
              "val": num_test if num_test is not None else 2}
    rng = np.random.default_rng(seed)
    n = 0
    for split, count in counts.items():
        label_dir = root / split / ("label_sam" if variant == "repack" else "label")
        label_dir.mkdir(parents=True, exist_ok=True)
        for a in ANGLES:
            (root / split / str(a)).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            n += 1
            labels, s0, dolp, aolp = render_scene(rng, shape)
            key = f"{n}_image0" if variant == "image0" else f"{n}"
            for a, img in angle_images(s0, dolp, aolp).items():
                suffix = "" if variant == "image0" else DEGREE
                Image.fromarray(img).save(root / split / str(a) / f"{key}_{a}{suffix}.png",
                                          compress_level=1)
            if variant == "repack":
                ids = split_instances(labels, ignore=(0,)).id_map
                Image.fromarray(ids.astype(np.uint8)).save(label_dir / f"{key}.png")
            else:
                save_label(label_dir / f"{key}.png", labels)
    return root if variant == "repack" else folder
