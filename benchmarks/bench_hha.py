"""Time :func:`aims.hha.compute_hha` on the NYUv2 oracle frame (or a synthetic one).

    python benchmarks/bench_hha.py --repeats 20

Prints a small table: per-frame seconds (median, min, max) and frames per second. The
depth is read from ``<shared data>/hha/0.png`` (``AIMS_SHARED_DATA`` or the ``shared/data``
folder beside the checkout); ``--synthetic`` times a generated 640×480 floor-and-wall
scene instead, for machines without the shared data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from aims.hha import NYU_COLOR_INTRINSICS, compute_hha


def _default_depth_path() -> Path:
    root = os.environ.get("AIMS_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "hha" / "0.png"


def _load_depth(path: Path) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        sys.exit(f"bench_hha: {path} is not a 16-bit single-channel PNG")
    return raw / 1e4  # 0.1 mm -> m


def _synthetic_depth(h: int = 480, w: int = 640) -> np.ndarray:
    K = NYU_COLOR_INTRINSICS
    v = np.arange(1, h + 1, dtype=np.float64)[:, None] - K[1, 2]
    with np.errstate(divide="ignore"):
        floor = np.where(v > 0, 1.2 * K[1, 1] / v, np.inf)
    return np.broadcast_to(np.minimum(floor, 4.0), (h, w)).copy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=Path, default=None, help="16-bit depth PNG in 0.1 mm")
    ap.add_argument("--synthetic", action="store_true", help="time a generated scene")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    if args.synthetic:
        depth, source = _synthetic_depth(), "synthetic floor+wall"
    else:
        path = args.depth or _default_depth_path()
        if not path.is_file():
            ap.error(f"{path} not found (use --depth, AIMS_SHARED_DATA or --synthetic)")
        depth, source = _load_depth(path), str(path)

    for _ in range(args.warmup):
        compute_hha(depth, NYU_COLOR_INTRINSICS)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        compute_hha(depth, NYU_COLOR_INTRINSICS)
        times.append(time.perf_counter() - t0)

    h, w = depth.shape
    med = statistics.median(times)
    per_vga = med * (640 * 480) / (h * w)
    rows = [
        ("input", f"{source} ({w}x{h})"),
        ("repeats", str(args.repeats)),
        ("median s/frame", f"{med:.3f}"),
        ("min / max s", f"{min(times):.3f} / {max(times):.3f}"),
        ("s per 640x480 (median)", f"{per_vga:.3f}"),
        ("frames/s", f"{1 / med:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, val in rows:
        print(f"{key:<{width}}  {val}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
