"""Benchmark: ``aims prepare`` throughput per source against its I/O floor, in the same run.

For every source in ``aims.converters.registry.SOURCE_CONFIGS`` whose converter can write a
full-resolution miniature (``write_miniature(folder, full_resolution=True)``), plus the
alternative inputs listed in :data:`EXTRA_INPUTS` (the SimCMF repacks), this script writes
the miniature once and then times, alternately and ``--repeat`` times (best run kept):

* **prepare** — ``aims.prepare.prepare_source`` for all the source's configs, the real
  pipeline (decode, derived channels, instances, clicks, statistics, PNG encoding, parquet
  writing, card), with ``--workers`` processes;
* **floor** — decoding the inputs plus encoding the outputs alone: the converter lists its
  samples in the main process and a process pool of the **same size** (``--workers``)
  loads each one with the converter's own ``load`` (every source file read with the
  converter's decoders, where ``prepare`` reads it) and PNG-encodes its image columns and
  its label/instance map with ``aims.imageio.encode_png``. Derived channels (HHA,
  ``derive``) are not part of the floor: they are computation, not I/O; sources that derive
  (nyuv2 ``hha``) are also reported for their configs without derivation.

Output: a table of source, images, prepare img/s, floor img/s and ratio (target ≤ 1.5×).

    python benchmarks/bench_prepare.py [--workers 2] [--repeat 2] [--only ivrg_nir,...]
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

#: alternative inputs (not registry sources): label -> (source, configs, miniature writer path)
EXTRA_INPUTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "nyuv2 (repack)": ("nyuv2", ("depth", "hha"), "aims.converters.nyuv2_repack:write_miniature"),
}


def _encode_all(arrays: list[np.ndarray]) -> int:
    from aims.imageio import encode_png

    return sum(len(encode_png(a)) for a in arrays)


def _encodable(sample) -> list[np.ndarray]:
    out = [a for a in sample.images.values() if a.dtype in (np.uint8, np.uint16)]
    labels = sample.instance_map if sample.instance_map is not None else sample.semantic
    out.append(np.asarray(labels).astype(np.uint16))  # the instances PNG of the same size
    return out


def _load_encode(converter, configs, ref) -> int:
    """The floor's per-image work: read the sample (the converter's ``load``, no derived
    channels) and encode what the pipeline would store."""
    return _encode_all(_encodable(converter.load(ref, configs)))


def floor_run(converter, configs, source: Path, workers: int) -> tuple[int, float]:
    """List (main process) + load and encode (pool of ``workers``); returns (images, s)."""
    start = time.perf_counter()
    n = 0
    with converter.list_samples(configs, source=source) as listing:
        if workers <= 1:
            for ref in listing.refs:
                _load_encode(converter, configs, ref)
                n += 1
        else:
            in_flight = max(2 * workers, 4)  # same bound as aims.prepare
            with ProcessPoolExecutor(max_workers=workers) as pool:
                pending = []
                for ref in listing.refs:
                    pending.append(pool.submit(_load_encode, converter, configs, ref))
                    n += 1
                    if len(pending) >= in_flight:
                        pending.pop(0).result()
                for fut in pending:
                    fut.result()
    return n, time.perf_counter() - start


def prepare_run(converter, configs, source: Path, workers: int, out: Path) -> tuple[int, float]:
    from aims.prepare import prepare_source

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = prepare_source(converter, list(configs), dataset_dir=out, source=source,
                            workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    first = next(iter(result.counts.values()))
    return sum(c["images"] for c in first.values()), elapsed


def _writer(spec: str) -> Callable[..., Path]:
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def cases(only: set[str] | None) -> list[tuple[str, str, tuple[str, ...], Callable[..., Path]]]:
    """(label, source, configs, miniature writer) for every benchmarkable input."""
    from aims.converters.registry import SOURCE_CONFIGS, converter

    out = []
    for name in SOURCE_CONFIGS:
        try:
            conv = converter(name)
        except Exception as exc:  # a source whose optional backend is missing
            print(f"# {name}: not importable ({exc}); skipped", file=sys.stderr)
            continue
        if "full_resolution" not in inspect.signature(conv.write_miniature).parameters:
            print(f"# {name}: write_miniature has no full_resolution; skipped", file=sys.stderr)
            continue
        out.append((name, name, tuple(SOURCE_CONFIGS[name]), conv.write_miniature))
        if name == "nyuv2":  # HHA is derived (computation): also time depth alone
            out.append(("nyuv2 [depth]", name, ("depth",), conv.write_miniature))
    for label, (name, configs, spec) in EXTRA_INPUTS.items():
        if name in SOURCE_CONFIGS:
            out.append((label, name, configs, _writer(spec)))
    return [c for c in out if only is None or c[0] in only or c[1] in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="process pool size for both prepare and the floor (default: all cores)")
    parser.add_argument("--images", type=int, default=16,
                        help="images per miniature, where its writer takes a count (default 16)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is kept")
    parser.add_argument("--only", default="", help="comma-separated sources/labels to run")
    parser.add_argument("--keep", type=Path, default=None, help="write miniatures here and keep them")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.WARNING)
    from aims.converters.registry import converter

    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    root = args.keep or Path(tempfile.mkdtemp(prefix="aims-bench-prepare-"))
    rows = []
    written: dict[str, Path] = {}
    try:
        for label, name, configs, writer in cases(only):
            conv = converter(name)
            key = f"{name}:{getattr(writer, '__module__', '')}"
            if key not in written:
                t0 = time.perf_counter()
                params = inspect.signature(writer).parameters
                count = {p: args.images for p in ("num_images", "num_frames") if p in params}
                written[key] = writer(root / "sources" / label.replace(" ", "_").replace("[", "").replace("]", ""),
                                      full_resolution=True, **count)
                print(f"# {label}: miniature written in {time.perf_counter() - t0:.1f} s "
                      f"→ {written[key]}", file=sys.stderr)
            src = written[key]
            best_p = best_f = float("inf")
            n_p = n_f = 0
            for _ in range(args.repeat):
                n_f, t_f = floor_run(conv, configs, src, args.workers)
                n_p, t_p = prepare_run(conv, configs, src, args.workers, root / "dataset" / label.replace(" ", "_"))
                best_f, best_p = min(best_f, t_f), min(best_p, t_p)
            rows.append((label, "+".join(configs), n_p, n_p / best_p, n_f / best_f, best_p / best_f))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nprepare vs I/O floor, {args.workers} worker process(es) for both, best of {args.repeat}")
    print(f"{'source':<16} {'configs':<11} {'images':>6} {'prepare img/s':>14} {'floor img/s':>12} {'ratio':>6}")
    for label, configs, n, p, f, ratio in rows:
        flag = "" if ratio <= 1.5 else "  > 1.5"
        print(f"{label:<16} {configs:<11} {n:>6} {p:>14.2f} {f:>12.2f} {ratio:>5.2f}×{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
