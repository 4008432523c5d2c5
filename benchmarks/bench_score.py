"""Benchmark: the AIMS scorer vs a per-instance pycocotools loop, on real NYUv2 labels.

Ground truth: the 654 NYUv2 test label maps (13-class version, read in place from
``shared/data/nyuv2/nyuv2_test_class13.tgz``) split into instances with
:func:`aims.instances.split_instances`. Predictions: every instance's mask perturbed by a
seeded random choice of dilation, erosion, shift, drop of a block, or none — so IoUs spread
over (0, 1].

Two measurements, both in this process on the same arrays:

1. **core** — masks in memory → per-instance IoU. Ours: :func:`aims.scoring.score_image`
   per image (one sort of the id map, one gather per image). Reference: for every instance,
   ``pycocotools.mask.encode`` of the prediction and of the ground-truth mask, then
   ``pycocotools.mask.iou`` — the usual COCO-tooling loop. The script asserts both give the
   same IoU for every instance (to 1e-12) and prints instances/s and the ratio.
2. **end to end** — ``aims score``'s library call on a prepared dataset folder written with
   :class:`aims.writer.ConfigWriter` (config ``depth``, test split) and predictions written
   with :class:`aims.predictions.PredictionWriter` in the ``rle`` and ``npz`` formats:
   reading, validation, scoring, summary (bootstrap included) and the results document.

    python benchmarks/bench_score.py [--tgz PATH] [--limit N] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from aims.instances import split_instances
from aims.predictions import ImagePredictions, PredictionWriter
from aims.protocols import get_protocol
from aims.scoring import GroundTruthImage, score_image, score_predictions

DEFAULT_TGZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyuv2" / "nyuv2_test_class13.tgz"


def default_tgz() -> Path:
    env = os.environ.get("AIMS_SHARED_DATA")
    return Path(env) / "nyuv2" / "nyuv2_test_class13.tgz" if env else DEFAULT_TGZ


def load_maps(tgz: Path, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """(image id, label map) straight from the archive (never extracted to disk)."""
    out = []
    with tarfile.open(tgz) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".png")),
                         key=lambda m: m.name)
        for m in members[:limit]:
            arr = np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())))
            out.append((Path(m.name).stem.rsplit("_", 1)[-1], arr))
    return out


def perturb(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong prediction: dilated, eroded, shifted, with a block cut, or exact."""
    kind = rng.integers(0, 5)
    m = mask.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    if kind == 0:
        m = cv2.dilate(m, k, iterations=int(rng.integers(1, 8)))
    elif kind == 1:
        m = cv2.erode(m, k, iterations=int(rng.integers(1, 5)))
    elif kind == 2:
        m = np.roll(m, (int(rng.integers(-15, 16)), int(rng.integers(-15, 16))), axis=(0, 1))
    elif kind == 3:
        ys, xs = np.nonzero(m)
        if ys.size:
            y, x = ys[ys.size // 2], xs[xs.size // 2]
            m[max(0, y - 20): y + 20, max(0, x - 20): x + 20] = 0
    return m.astype(bool)


def build(maps, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for image_id, label in maps:
        inst = split_instances(label)
        gts.append(GroundTruthImage(image_id, inst.id_map, inst.ids.astype(np.int64),
                                    inst.category.astype(np.int64), inst.area.astype(np.int64),
                                    inst.bbox.astype(np.int64)))
        masks = np.stack([perturb(inst.id_map == i, rng) for i in inst.ids]) if len(inst) else \
            np.zeros((0,) + label.shape, bool)
        preds.append(masks)
    return gts, preds


def bench_core(gts, preds) -> tuple[float, float, int]:
    from pycocotools import mask as mask_utils

    proto = get_protocol("aims")
    n = sum(g.instance_ids.size for g in gts)
    t0 = time.perf_counter()
    ours = []
    for g, p in zip(gts, preds):
        ip = ImagePredictions(g.instance_ids, np.tile(np.asarray(g.id_map.shape), (len(p), 1)),
                              [g.image_id] * len(p), dense=p)
        ours.append(score_image(proto, "depth", "test", g, ip)["iou"])
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = []
    for g, p in zip(gts, preds):
        for j, i in enumerate(g.instance_ids):
            rp = mask_utils.encode(np.asfortranarray(p[j].astype(np.uint8)))
            rg = mask_utils.encode(np.asfortranarray((g.id_map == i).astype(np.uint8)))
            ref.append(float(mask_utils.iou([rp], [rg], [0])[0, 0]))
    t_ref = time.perf_counter() - t0
    ours_flat = np.concatenate(ours)
    if not np.allclose(ours_flat, ref, rtol=0, atol=1e-12):
        bad = int(np.argmax(np.abs(ours_flat - np.asarray(ref))))
        sys.exit(f"MISMATCH at instance {bad}: ours {ours_flat[bad]} vs pycocotools {ref[bad]}")
    return t_ours, t_ref, n


def bench_e2e(gts, preds, workdir: Path) -> dict[str, tuple[float, int]]:
    from aims.schema import config_features
    from aims.writer import ConfigWriter, ConfigInfo

    names = ["void"] + [f"class{i}" for i in range(1, 14)]
    ds = workdir / "dataset"
    feats = config_features("depth", names)
    tiny = np.zeros((1, 1), np.uint16)
    with ConfigWriter(ds, "depth", feats) as w:
        for g in gts:
            n = g.instance_ids.size
            w.add("test", {"image_id": g.image_id, "source": "nyuv2", "rgb": np.zeros((1, 1, 3), np.uint8),
                           "depth": tiny, "instances": g.id_map, "instance_ids": g.instance_ids.tolist(),
                           "category": g.category.tolist(), "area": g.area.tolist(),
                           "bbox": g.bbox.tolist(), "point": [[0, 0]] * n, "point_simcmf": [[0, 0]] * n})
        w.commit(ConfigInfo(config="depth", category_names=names))
    out = {}
    for fmt in ("rle", "npz"):
        pdir = workdir / f"pred-{fmt}"
        t0 = time.perf_counter()
        with PredictionWriter(pdir, fmt=fmt, meta={"method": "perturbed-gt", "model": "none"}) as pw:
            for g, p in zip(gts, preds):
                for j, i in enumerate(g.instance_ids):
                    pw.add("depth", g.image_id, int(i), p[j])
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = score_predictions(pdir, data_dir=ds, protocol="aims")
        scores.results()
        out[fmt] = (time.perf_counter() - t0, len(scores.table), t_write)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tgz", type=Path, default=default_tgz())
    ap.add_argument("--limit", type=int, default=None, help="first N label maps only")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args(argv)
    if not args.tgz.is_file():
        print(f"NYUv2 test labels not found at {args.tgz} (set AIMS_SHARED_DATA)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    maps = load_maps(args.tgz, args.limit)
    gts, preds = build(maps)
    n = sum(g.instance_ids.size for g in gts)
    print(f"{len(gts)} images, {n} instances (loaded + perturbed in {time.perf_counter() - t0:.1f} s)")
    t_ours, t_ref, n = bench_core(gts, preds)
    print(f"core  aims scorer : {t_ours:7.2f} s  {n / t_ours:10.0f} instances/s")
    print(f"core  pycocotools : {t_ref:7.2f} s  {n / t_ref:10.0f} instances/s  (encode both + iou, per instance)")
    print(f"core  ratio       : {t_ref / t_ours:7.1f}x faster; IoUs identical to pycocotools")
    if not args.skip_e2e:
        work = Path(tempfile.mkdtemp(prefix="aims-bench-score-"))
        try:
            for fmt, (t, m, tw) in bench_e2e(gts, preds, work).items():
                print(f"e2e   {fmt:<4} score  : {t:7.2f} s  {m / t:10.0f} instances/s  "
                      f"({m} instances; reading, validation, summary, results; writing took {tw:.1f} s)")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
