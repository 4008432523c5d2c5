"""Benchmark: aims.instances.split_instances vs a plain reference, on real NYUv2 labels.

Reference (the obvious implementation anyone would write from docs/protocol.md):
``skimage.measure.label`` per class (connectivity=2 for 8-neighbourhood, 1 for 4), then
for every instance ``scipy.ndimage.distance_transform_edt`` of the FULL image padded by
one pixel and ``argmax``. Both run in this process on the same decoded label maps; the
script asserts they give identical instances (same partition, same id order, same
areas and bboxes) and identical ``aims`` points, and prints instances/s for both.

Only splitting + clicks are timed (the PNGs are decoded first). The ``simcmf`` click is
timed separately because the reference above does not compute it. OpenCV runs with one
thread unless ``--threads`` says otherwise, so the comparison is single-core.

    python benchmarks/bench_instances.py [--tgz PATH] [--limit N] [--connectivity 8]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.measure import label as sk_label

from aims.clicks import clicks_simcmf
from aims.instances import _split

DEFAULT_TGZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyuv2" / (
    "nyuv2_test_class13.tgz"
)


def default_tgz() -> Path:
    env = os.environ.get("AIMS_SHARED_DATA")
    if env:
        return Path(env) / "nyuv2" / "nyuv2_test_class13.tgz"
    return DEFAULT_TGZ


def load_maps(tgz: Path, limit: int | None) -> list[np.ndarray]:
    """Decode the label PNGs straight from the archive (never extracted to disk)."""
    maps = []
    with tarfile.open(tgz) as tf:
        members = sorted(
            (m for m in tf.getmembers() if m.isfile() and m.name.endswith(".png")),
            key=lambda m: m.name,
        )
        for m in members[:limit]:
            data = tf.extractfile(m).read()
            maps.append(np.asarray(Image.open(io.BytesIO(data))))
    return maps


def reference(semantic: np.ndarray, ignore=(0, 255), connectivity: int = 8):
    """Plain per-class skimage labelling + full-frame padded EDT per instance."""
    h, w = semantic.shape
    id_map = np.zeros((h, w), np.uint16)
    cats, areas, bboxes, points = [], [], [], []
    nid = 0
    for c in np.unique(semantic):
        if int(c) in ignore:
            continue
        lab = sk_label(semantic == c, connectivity=2 if connectivity == 8 else 1)
        for k in range(1, int(lab.max()) + 1):
            m = lab == k
            nid += 1
            id_map[m] = nid
            ys, xs = np.nonzero(m)
            cats.append(int(c))
            areas.append(int(m.sum()))
            bboxes.append((xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
            dt = ndimage.distance_transform_edt(np.pad(m, 1))
            py, px = np.unravel_index(int(np.argmax(dt)), dt.shape)
            points.append((px - 1, py - 1))
    return id_map, np.array(cats), np.array(areas), np.array(bboxes).reshape(-1, 4), np.array(
        points
    ).reshape(-1, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tgz", type=Path, default=default_tgz())
    ap.add_argument("--limit", type=int, default=None, help="first N label maps only")
    ap.add_argument("--connectivity", type=int, default=8, choices=(4, 8))
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for our timings")
    args = ap.parse_args(argv)
    if not args.tgz.is_file():
        print(f"label archive not found: {args.tgz} (set AIMS_SHARED_DATA)", file=sys.stderr)
        return 2
    cv2.setNumThreads(args.threads)

    maps = load_maps(args.tgz, args.limit)
    print(f"{len(maps)} label maps, {maps[0].shape}, dtype {maps[0].dtype}, "
          f"connectivity {args.connectivity}, OpenCV threads {args.threads}")

    best_ours = best_sim = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = [_split(m, (0, 255), args.connectivity, simcmf=False) for m in maps]
        best_ours = min(best_ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        sims = [clicks_simcmf(o.id_map, o.ids) for o in ours]
        best_sim = min(best_sim, time.perf_counter() - t0)

    t0 = time.perf_counter()
    refs = [reference(m, connectivity=args.connectivity) for m in maps]
    t_ref = time.perf_counter() - t0

    n = sum(len(o) for o in ours)
    mismatches = 0
    for i, (o, r) in enumerate(zip(ours, refs)):
        id_map, cats, areas, bboxes, points = r
        same = (
            np.array_equal(o.id_map, id_map)
            and np.array_equal(o.category, cats)
            and np.array_equal(o.area, areas)
            and np.array_equal(o.bbox, bboxes)
            and np.array_equal(o.point, points)
        )
        if not same:
            mismatches += 1
            print(f"MISMATCH in map #{i}", file=sys.stderr)
    n_gone = sum(int((s[:, 0] < 0).sum()) for s in sims)

    print(f"instances: {n} ({n / len(maps):.1f} per map)")
    print(f"ours (components + aims click): {best_ours:8.3f} s  {n / best_ours:10.0f} inst/s "
          f"(best of {args.repeat})")
    print(f"reference (skimage + full EDT): {t_ref:8.3f} s  {n / t_ref:10.0f} inst/s")
    print(f"speed-up: {t_ref / best_ours:.1f}x")
    print(f"simcmf clicks alone: {best_sim:8.3f} s  {n / best_sim:10.0f} inst/s, "
          f"{len(maps) / best_sim:.0f} maps/s ({n_gone} instances vanish at 1024x1024)")
    print(f"identical instances and points: {'yes' if mismatches == 0 else 'NO'} "
          f"({mismatches} maps differ)")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
