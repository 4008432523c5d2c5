"""Benchmark: ``aims.torch.AimsDataset`` through a DataLoader against decoding the same PNG
columns alone, in the same run, with the same number of workers.

The config's source writes its full-resolution miniature (``write_miniature(...,
full_resolution=True)``; the default, ``polarization-zju``, is the largest: 1224×1024 frames,
four 8-bit RGB angle columns, 9 computed Stokes channels), ``aims prepare`` converts it into a
temporary folder, and four DataLoaders (``--workers`` each, persistent, ``--batch-size``)
iterate the train split, one epoch each in turn, ``--epochs`` times after one untimed warm-up
epoch (worker start-up is not counted for any; each pass repeats the split's indices up to
``--min-pass`` images, so that the first batch's latency does not dominate a pass of a few
batches):

* **aims** — ``AimsDataset(config, "train")`` with ``collate_instances``: PNG decoding, the
  modality tensor, normalisation with the card's statistics, the int64 instance-id map and
  the per-instance tensors;
* **png** (the named reference) — the same rows, decoding only the PNG columns the modality
  reads plus ``instances`` (the same decoder, :func:`aims.decoders.to_array`, from the same
  bytes) and handing the arrays over as tensors; its workers get the same heap setting
  (:func:`aims.torch.keep_freed_memory`) as AimsDataset's, so it is the strict floor;
* **png_plain_heap** — the same without that setting;
* **datasets_pil** — the same columns decoded by ``datasets``' own ``Image`` feature (Pillow).

Output (JSON, then one line): images/s of each (wall clock), CPU milliseconds per image of
the whole process tree (workers + main, from /proc: what another process's load does not
change), ``ratio`` = aims / png images/s (target ≥ 0.8), and ``in_process_ratio``: the same
comparison of CPU time per item in the main process, without the DataLoader (the share of
the gap that is the conversion itself; the rest is handing float32/int64 tensors, about 3x
the bytes of the decoded PNGs, through shared memory).

    python benchmarks/bench_torch_dataset.py [--config polarization-zju] [--images 16]
        [--workers 2] [--batch-size 2] [--epochs 6] [--keep DIR | --data-dir DIR]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

#: the keyword each miniature writer takes for its image count
COUNT_KEYWORDS = ("num_train", "num_images", "num_frames")


class PngColumns(Dataset):
    """The reference: the same rows, only the PNG columns decoded (no float conversion,
    no normalisation, no per-instance fields). Opens its rows lazily in each worker, like
    ``AimsDataset``.

    ``decoder``: ``"aims"`` — the PNG bytes through :func:`aims.decoders.to_array` (OpenCV,
    what ``AimsDataset`` uses); ``"datasets"`` — ``datasets``' own ``Image`` decoding
    (Pillow), as a user reading the rows directly gets it. ``keep_heap``: give the workers
    the same heap setting ``AimsDataset`` gives its own (:func:`aims.torch.keep_freed_memory`),
    so that the floor is not slowed by what ``AimsDataset`` avoids."""

    def __init__(self, config: str, split: str, data_dir: Path, columns: tuple[str, ...],
                 decoder: str = "aims", keep_heap: bool = False) -> None:
        self.config, self.split, self.data_dir, self.columns = config, split, data_dir, columns
        self.decoder, self.keep_heap = decoder, keep_heap
        self._rows: Any = None
        self._process: int | None = None
        self._length = len(self._open())

    def _open(self) -> Any:
        if self._process != os.getpid():
            self._process = os.getpid()
            if self.keep_heap and torch.utils.data.get_worker_info() is not None:
                from aims.torch import keep_freed_memory

                keep_freed_memory()
        if self._rows is None:
            import datasets

            import aims

            rows = aims.load_dataset(self.config, self.split, data_dir=self.data_dir)
            rows = rows.select_columns(list(self.columns))
            if self.decoder == "aims":
                for name in self.columns:
                    rows = rows.cast_column(name, datasets.Image(decode=False))
            self._rows = rows
        return self._rows

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None, "_process": None}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import numpy as np

        from aims.decoders import to_array

        row = self._open()[int(i)]
        if self.decoder == "aims":
            return {c: torch.from_numpy(to_array(row[c])) for c in self.columns}
        return {c: torch.from_numpy(np.array(row[c])) for c in self.columns}  # Pillow → writable array


def as_list(batch: list[Any]) -> list[Any]:
    return batch


def write_and_prepare(config: str, images: int, folder: Path, workers: int) -> Path:
    """The config's full-resolution miniature, prepared into ``folder/dataset``."""
    from aims.converters.registry import converter, source_of_config
    from aims.prepare import prepare_source

    source = source_of_config(config)
    if source is None:
        raise SystemExit(f"no registered source feeds config {config!r}")
    conv = converter(source)
    params = inspect.signature(conv.write_miniature).parameters
    kwargs: dict[str, Any] = {}
    if "full_resolution" in params:
        kwargs["full_resolution"] = True
    for key in COUNT_KEYWORDS:
        if key in params:
            kwargs[key] = images
            break
    src = conv.write_miniature(folder / "source", **kwargs)
    out = folder / "dataset"
    prepare_source(conv, [config], dataset_dir=out, source=src, workers=workers, progress=False)
    return out


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live children (the DataLoader
    workers), from /proc; load from other processes does not enter it. NaN off Linux."""
    me = os.getpid()
    total = sum(os.times()[:2])
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == me:  # ppid
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, ValueError):
        return float("nan")
    return total


def in_process_ms(dataset: Dataset, rounds: int = 2) -> float:
    """CPU milliseconds per item of ``dataset[i]`` in this process (no DataLoader, no
    transfer between processes), the best of ``rounds`` passes."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for i in range(len(dataset)):  # type: ignore[arg-type]
            dataset[i]
        best = min(best, (time.process_time() - start) / len(dataset))  # type: ignore[arg-type]
    return best * 1000


def epoch(loader: DataLoader) -> tuple[int, float, float]:
    """One pass: (images, wall seconds, CPU seconds of the process tree)."""
    n = 0
    cpu, start = tree_cpu_seconds(), time.perf_counter()
    for batch in loader:
        n += len(batch["image_id"]) if isinstance(batch, dict) else len(batch)
    return n, time.perf_counter() - start, tree_cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="polarization-zju")
    parser.add_argument("--split", default="train")
    parser.add_argument("--modality", default=None, help="default: the config's own")
    parser.add_argument("--images", type=int, default=16, help="images in the miniature's train split")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both sides (default 2)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs of each, alternating")
    parser.add_argument("--min-pass", type=int, default=64,
                        help="images per timed pass at least: the split's indices repeat until then "
                             "(default 64), so that worker start-up of a pass does not dominate")
    parser.add_argument("--data-dir", type=Path, default=None, help="use this prepared dataset instead")
    parser.add_argument("--keep", type=Path, default=None,
                        help="prepare the miniature into this folder and keep it (reuse with --data-dir)")
    args = parser.parse_args(argv)

    import datasets

    from aims.torch import AimsDataset, collate_instances, keep_freed_memory

    datasets.disable_progress_bars()
    torch.set_num_threads(1)  # the main process only receives batches
    with tempfile.TemporaryDirectory(prefix="aims-bench-torch-") as tmp:
        os.environ.setdefault("HF_HOME", str(Path(tmp) / "hf"))
        if args.data_dir is None:
            t = time.perf_counter()
            data_dir = write_and_prepare(args.config, args.images, args.keep or Path(tmp), args.workers)
            print(f"# prepared {args.config} miniature in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        else:
            data_dir = args.data_dir
        ours = AimsDataset(args.config, args.split, data_dir=data_dir, modality=args.modality)
        columns = tuple(dict.fromkeys((*ours.spec.columns, "instances")))
        references = {
            "png": PngColumns(args.config, args.split, data_dir, columns, keep_heap=True),
            "png_plain_heap": PngColumns(args.config, args.split, data_dir, columns),
            "datasets_pil": PngColumns(args.config, args.split, data_dir, columns, decoder="datasets"),
        }
        sample = ours[0]
        # the same work without the DataLoader: what the conversion itself costs, apart
        # from handing ~3x more bytes (float32 channels, int64 ids) through shared memory
        keep_freed_memory()
        item_ms = {"aims": in_process_ms(ours), "png": in_process_ms(references["png"])}
        # a miniature's split has 4-14 images: one pass would be 2-7 batches, mostly the
        # latency of the first batch of each worker; repeating the indices measures throughput
        order = list(range(len(ours))) * max(1, -(-args.min_pass // len(ours)))
        common = dict(batch_size=args.batch_size, num_workers=args.workers, sampler=order,
                      persistent_workers=args.workers > 0)
        loaders = {"aims": DataLoader(ours, collate_fn=collate_instances, **common)}
        loaders.update({name: DataLoader(ref, collate_fn=as_list, **common) for name, ref in references.items()})
        totals = {name: [0, 0.0, 0.0] for name in loaders}
        for loader in loaders.values():  # warm-up: workers started, rows opened, caches hot
            epoch(loader)
        # epochs alternate between the loaders, so a change in machine load hits all alike
        for _ in range(args.epochs):
            for name, loader in loaders.items():
                for k, v in enumerate(epoch(loader)):
                    totals[name][k] += v
        del loaders
        rate = {name: n / wall for name, (n, wall, _) in totals.items()}
        cpu = {name: c / n * 1000 for name, (n, _, c) in totals.items()}
        result = {
            "config": args.config, "modality": ours.modality, "split": args.split, "images": len(ours),
            "image_shape": list(sample["image"].shape), "columns_decoded": list(columns),
            "workers": args.workers, "batch_size": args.batch_size, "epochs": args.epochs,
            "images_per_pass": len(order),
            "img_s": {k: round(v, 2) for k, v in rate.items()},
            "cpu_ms_per_img": {k: round(v, 1) for k, v in cpu.items()},
            "ratio": round(rate["aims"] / rate["png"], 3),
            "cpu_ratio": round(cpu["png"] / cpu["aims"], 3),
            "in_process_cpu_ms_per_img": {k: round(v, 1) for k, v in item_ms.items()},
            "in_process_ratio": round(item_ms["png"] / item_ms["aims"], 3),
            "ratio_vs_plain_heap": round(rate["aims"] / rate["png_plain_heap"], 3),
            "ratio_vs_datasets_pil": round(rate["aims"] / rate["datasets_pil"], 3),
            "load_average": round(os.getloadavg()[0], 2),
            "target": ">= 0.8",
        }
    print(json.dumps(result))
    print(f"{args.config} ({ours.modality}, {result['image_shape']}), {args.workers} workers: AimsDataset "
          f"{rate['aims']:.2f} img/s vs decoding the PNG columns alone {rate['png']:.2f} img/s: ratio "
          f"{result['ratio']} (target >= 0.8); CPU per image {cpu['aims']:.1f} vs {cpu['png']:.1f} ms: "
          f"ratio {result['cpu_ratio']}; in one process, without the DataLoader, {item_ms['aims']:.1f} vs "
          f"{item_ms['png']:.1f} ms: ratio {result['in_process_ratio']}. Other floors: same decoding without "
          f"the heap setting "
          f"{rate['png_plain_heap']:.2f} img/s (ratio {result['ratio_vs_plain_heap']}), datasets' Pillow "
          f"decoding {rate['datasets_pil']:.2f} img/s (ratio {result['ratio_vs_datasets_pil']}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
