"""Benchmark: peak memory of ``aims score`` on hostile predictions ("bombs").

Each bomb is a small file that claims (or holds) a huge mask; the scorer must refuse it
from its header, before decoding. For every case this script runs the installed ``aims
score`` in a subprocess on the prepared miniature NYUv2 (config ``depth``, test split)
and reports the child's peak RSS (``wait4`` rusage of a child of a small launcher, so the
parent's own memory is not counted), its exit status and the first words of its message.
The reference is the same command on a valid predictions folder (exact masks, RLE).

Cases (built with the helpers of ``tests/adversarial/test_predictions.py``):

``npz``        ``masks.npy`` header declaring (1, 30000, 30000) bool, compressed zeros
               (900 MB decoded, ~1 MB on disk)
``npz-ids``    ``instance_ids.npy`` declaring 10**8 int64 ids (800 MB)
``png``        a greyscale PNG of 30000x30000 whose IDAT holds every (zero) scan line
               (900 MB decoded, ~1 MB on disk; under OpenCV's own 2**30-pixel limit)
``dev-zero``   ``depth.json`` is a symbolic link to ``/dev/zero``
``forged-rle`` full-image masks whose int64 counts wrap around to H*W (the forged 100)
``huge-json``  a 120 MB ``depth.json`` (a valid JSON list of zeros)

Every bomb must peak under 300 MB (exit status 1 otherwise).

    python benchmarks/bench_bombs.py [--aims PATH] [--memory-cap GB] [--keep DIR]

``--aims`` scores with another ``aims`` executable (e.g. a checkout of an older version);
``--memory-cap`` sets RLIMIT_AS on the scorer, so an old version's bombs fail with
MemoryError instead of taking the machine's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.adversarial.test_predictions import (  # noqa: E402  (helpers shared with the tests)
    LAUNCHER,
    forged_rle_records,
    npz_bomb,
    png_bomb,
    write_predictions,
)

LIMIT_MB = 300


def prepare(root: Path) -> tuple[Path, list]:
    """The miniature NYUv2 prepared into ``root/dataset`` (depth only)."""
    from aims.converters.nyuv2 import CONVERTER
    from aims.prepare import prepare_source
    from aims.scoring import iter_ground_truth, split_shards

    source = CONVERTER.write_miniature(root / "source")
    data = root / "dataset"
    prepare_source(CONVERTER, ["depth"], dataset_dir=data, source=source, workers=1, progress=False)
    return data, list(iter_ground_truth(split_shards(data, "depth", "test")))


def _npz(k: int, shape: tuple[int, int, int], n_ids: int | None = None) -> Callable[[Path, list], None]:
    def make(preds: Path, gt: list) -> None:
        npz_bomb(preds / "depth" / f"{gt[k].image_id}.npz", shape, n_ids)
    return make


def _png(preds: Path, gt: list) -> None:
    g = gt[0]
    (preds / "depth" / g.image_id / f"{int(g.instance_ids[0])}.png").write_bytes(png_bomb(30000, 30000, full=True))


def _dev_zero(preds: Path, gt: list) -> None:
    (preds / "depth.json").unlink()
    (preds / "depth.json").symlink_to("/dev/zero")


def _forged(preds: Path, gt: list) -> None:
    (preds / "depth.json").write_text(json.dumps(forged_rle_records(gt)))


def _huge_json(preds: Path, gt: list) -> None:
    n = 120 << 20
    with open(preds / "depth.json", "wb") as fh:
        fh.write(b"[")
        for _ in range(n // (1 << 20)):
            fh.write(b"0," * (1 << 19))
        fh.write(b"0]")


CASES: dict[str, tuple[str, Callable[[Path, list], None] | None]] = {
    "valid (reference)": ("rle", None),
    "npz": ("npz", _npz(0, (1, 30000, 30000))),
    "npz-ids": ("npz", _npz(0, (1, 480, 640), 10**8)),
    "png": ("png", _png),
    "dev-zero": ("rle", _dev_zero),
    "forged-rle": ("rle", _forged),
    "huge-json": ("rle", _huge_json),
}


def run_scorer(aims: str, preds: Path, data: Path, out: Path, cap_gb: float | None) -> tuple[int, float, float, str]:
    """(exit status, peak RSS in MB, seconds, first line of the message)."""
    def limit() -> None:
        if cap_gb:
            import resource

            cap = int(cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    fd, rss_file = tempfile.mkstemp(prefix="aims-rss-")
    os.close(fd)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, rss_file, aims, "score", str(preds), "--data-dir",
                               str(data), "--out", str(out), "--no-progress"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, preexec_fn=limit, timeout=900)
        rss = int(Path(rss_file).read_text() or 0) / 1024
    finally:
        os.unlink(rss_file)
    seconds = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    message = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
    return proc.returncode, rss, seconds, " ".join(message.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aims", default=str(Path(sys.executable).with_name("aims")), help="aims executable")
    ap.add_argument("--memory-cap", type=float, default=None, help="RLIMIT_AS of the scorer, in GB")
    ap.add_argument("--keep", type=Path, default=None, help="build the cases in this folder and keep them")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aims-bench-bombs-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        data, gt = prepare(root)
        rows = []
        for name, (fmt, make) in CASES.items():
            preds = root / "cases" / name.split()[0]
            write_predictions(preds, gt, fmt)
            if make is not None:
                make(preds, gt)
            disk = sum(p.lstat().st_size for p in preds.rglob("*"))
            code, rss, seconds, message = run_scorer(args.aims, preds, data, root / "scores" / preds.name,
                                                     args.memory_cap)
            message = message.replace(str(preds) + "/", "").replace(str(root) + "/", "")
            rows.append((name, disk, code, rss, seconds, message))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    reference = rows[0][3]
    print(f"aims score peak RSS per case (aims: {args.aims}; limit {LIMIT_MB} MB for bombs)")
    print(f"{'case':<18} {'on disk':>9} {'exit':>4} {'peak RSS':>9} {'vs ref':>7} {'time':>6}  message")
    bad = []
    for name, disk, code, rss, seconds, message in rows:
        print(f"{name:<18} {disk / 1024:>7.0f}KB {code:>4} {rss:>7.0f}MB {rss - reference:>+6.0f}M {seconds:>5.1f}s  "
              f"{message}")
        if name != rows[0][0] and (rss >= LIMIT_MB or code != 2):
            bad.append(name)
    if bad:
        print(f"FAILED: {', '.join(bad)} (peak RSS >= {LIMIT_MB} MB or exit status not 2)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
