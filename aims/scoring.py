"""Score a predictions folder against the prepared dataset: ``aims score``.

Flow: index the predictions (:func:`aims.predictions.read_predictions`, which refuses mixed
formats, duplicates and malformed records) → for every config, read the ground truth of the
split straight from the prepared parquet shards (only the id-map PNG and the per-instance
lists; the modality images are never decoded) → per image: decode the instance map once,
bring it into the protocol's frame (:mod:`aims.protocols`), and compute every instance's
intersection and areas in one vectorised pass (:mod:`aims.metrics`) → a per-instance table
and its summaries (:class:`Scores`).

Strictness (every case is an :class:`AimsError` naming the file): predictions for images
or instance ids that are not in the split, masks of the wrong size, non-binary/NaN values,
corrupt RLE/npz, and missing predictions for evaluated instances (listed with their count;
``missing="zero"`` scores them IoU 0 instead and the results say so). Predictions for
instances the protocol does not evaluate are scored and kept in the table with
``evaluated = False``; they never enter the means. Results never depend on file order:
rows follow the dataset's image order and each image's instance order.

No torch: the ``simcmf`` protocol's torch resize is reproduced with index arithmetic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aims.errors import AimsError
from aims.metrics import (
    bootstrap_ci,
    dense_intersections,
    iou_from_counts,
    label_boxes,
    rle_intersections,
    size_bucket,
)
from aims.predictions import ImagePredictions, PredictionFolder, counts_to_mask, read_predictions
from aims.protocols import Protocol, get_protocol

__all__ = ["MODALITIES", "GroundTruthImage", "Scores", "iter_ground_truth", "score_predictions"]

#: The five modalities of the headline number and the config that represents each. The
#: paper's "polarization" column is RGBP-Glass (SimCMF's ``pgsnet_rgbp``, 9 channels), i.e.
#: config ``polarization``; ``polarization-zju`` (ZJU-RGBP) is scored and reported but is
#: not part of the five-modality mean.
MODALITIES: dict[str, str] = {
    "polarization": "polarization",
    "depth": "depth",
    "hha": "hha",
    "thermal": "thermal",
    "nir": "nir",
}
MISSING_POLICIES = ("error", "zero")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
TABLE_COLUMNS = [
    "config", "image_id", "instance_id", "category", "category_name", "area", "eval_area",
    "size", "evaluated", "missing", "intersection", "pred_area", "gt_area", "iou",
]


# --------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruthImage:
    """One image's ground truth, as stored in the prepared dataset."""

    image_id: str
    id_map: np.ndarray  # (H, W) uint16
    instance_ids: np.ndarray  # (N,) int64
    category: np.ndarray  # (N,) int64 (ClassLabel index)
    area: np.ndarray  # (N,) int64
    bbox: np.ndarray  # (N, 4) int64, x, y, w, h


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        from aims.paths import default_dataset_dir

        return Path(default_dataset_dir())
    return Path(data_dir).expanduser()


def split_shards(data_dir: str | Path | None, config: str, split: str) -> list[Path]:
    """The parquet shards of (config, split) in a prepared dataset folder; AimsError with
    the command that prepares it when they are absent."""
    root = _resolve_data_dir(data_dir)
    folder = root / config
    shards = sorted(folder.glob(f"{split}-*.parquet"))
    if not shards:
        have = sorted({p.name.split("-", 1)[0] for p in folder.glob("*.parquet")})
        if have:
            raise AimsError(f"config {config!r} in {root} has no {split!r} split (it has "
                            f"{', '.join(have)}); pass --split.", path=folder)
        raise AimsError(
            f"the ground truth of config {config!r} is not prepared: no parquet shards in {folder}. "
            f"Prepare it with `aims prepare --modality {config}`, or point --data-dir at the prepared "
            "dataset folder.", path=folder)
    return shards


def category_names(shard: Path) -> list[str]:
    """Class names of the ``category`` ClassLabel, from the shard's Hugging Face features."""
    import pyarrow.parquet as pq

    md = pq.read_schema(shard).metadata or {}
    try:
        feats = json.loads(md[b"huggingface"])["info"]["features"]
        return list(feats["category"]["feature"]["names"])
    except (KeyError, ValueError, TypeError):
        return []


def iter_ground_truth(shards: Sequence[Path], *, batch_size: int = 64) -> Iterator[GroundTruthImage]:
    """Rows of the given shards in order, reading only the columns scoring needs."""
    import pyarrow.parquet as pq

    from aims.imageio import decode_png

    cols = ["image_id", "instances", "instance_ids", "category", "area", "bbox"]
    for shard in shards:
        pf = pq.ParquetFile(shard)
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            d = batch.to_pydict()
            for k in range(batch.num_rows):
                cell = d["instances"][k]
                raw = cell.get("bytes") if isinstance(cell, dict) else None
                if raw is None:
                    raise AimsError(f"{shard}: row {d['image_id'][k]!r} has no embedded instance map; "
                                    "re-prepare the dataset.", path=shard)
                id_map = decode_png(raw)
                if id_map.ndim != 2:
                    raise AimsError(f"{shard}: instance map of {d['image_id'][k]!r} is not single-channel.",
                                    path=shard)
                yield GroundTruthImage(
                    d["image_id"][k],
                    id_map,
                    np.asarray(d["instance_ids"][k], np.int64),
                    np.asarray(d["category"][k], np.int64),
                    np.asarray(d["area"][k], np.int64),
                    np.asarray(d["bbox"][k], np.int64).reshape(-1, 4),
                )


def image_ids(shards: Sequence[Path]) -> list[str]:
    import pyarrow.parquet as pq

    out: list[str] = []
    for s in shards:
        out += pq.read_table(s, columns=["image_id"]).column("image_id").to_pylist()
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_fingerprint(files: dict[str, list[Path]]) -> dict[str, Any]:
    """sha256 of every scored shard and one fingerprint over them all
    (sha256 of the sorted ``<config>/<file name> <sha256>`` lines)."""
    listing = {c: {p.name: file_sha256(p) for p in ps} for c, ps in sorted(files.items())}
    lines = sorted(f"{c}/{n} {h}" for c, fs in listing.items() for n, h in fs.items())
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"fingerprint": f"sha256:{digest}", "files": listing}


# --------------------------------------------------------------------------- one image


def _fail(where: str, msg: str) -> AimsError:
    return AimsError(f"{where}: {msg}", path=where.split(" (")[0].split(" record")[0])


def score_image(
    protocol: Protocol, config: str, split: str, gt: GroundTruthImage, preds: ImagePredictions | None
) -> dict[str, np.ndarray]:
    """Per-instance arrays of one image (aligned with ``gt.instance_ids``): intersection,
    prediction and ground-truth areas in the protocol's frame, IoU (NaN where there is no
    prediction), the protocol's filter area and evaluated flag, and ``have`` (predicted)."""
    ids = gt.instance_ids
    n = ids.size
    frame = protocol.frame(config, gt.id_map, ids, gt.area)
    native = frame.rows is None
    boxes = gt.bbox if native else label_boxes(frame.label, ids)
    inter = np.zeros(n, np.int64)
    parea = np.zeros(n, np.int64)
    garea = np.full(n, -1, np.int64)
    have = np.zeros(n, bool)
    if preds is not None and len(preds):
        pos = {int(i): j for j, i in enumerate(ids)}
        rows = np.empty(len(preds), np.int64)
        for k, iid in enumerate(preds.ids):
            j = pos.get(int(iid))
            if j is None:
                shown = f"{int(ids.min())}..{int(ids.max())}" if n else "none"
                raise _fail(preds.where[k], f"instance {int(iid)} is not an instance of image {gt.image_id!r} "
                            f"in config {config!r} split {split!r} (its instance ids: {shown}).")
            rows[k] = j
        accepted = frame.accepted_sizes()
        sizes = [(int(h), int(w)) for h, w in preds.sizes]
        for k, size in enumerate(sizes):
            if size not in accepted:
                exp = " or ".join(f"{h}x{w}" for h, w in accepted)
                raise _fail(preds.where[k], f"mask size {size[0]}x{size[1]} (HxW) does not match image "
                            f"{gt.image_id!r} of config {config!r}: expected {exp} for protocol {protocol.version}.")
        if preds.counts is not None and native:
            i_, a_, g_ = rle_intersections(frame.label, ids[rows], boxes[rows], preds.counts)
        elif preds.counts is not None:
            i_ = np.zeros(len(preds), np.int64)
            a_ = np.zeros(len(preds), np.int64)
            g_ = np.zeros(len(preds), np.int64)
            groups: dict[tuple[int, int], list[int]] = {}
            for k, size in enumerate(sizes):
                groups.setdefault(size, []).append(k)
            for size, ks in groups.items():
                stack = np.stack([counts_to_mask(preds.counts[k], size) for k in ks])
                fr = frame.to_frame(stack, size)
                i_[ks], a_[ks], g_[ks] = dense_intersections(frame.label, ids[rows[ks]], boxes[rows[ks]], fr)
        else:
            fr = frame.to_frame(preds.dense, sizes[0])
            i_, a_, g_ = dense_intersections(frame.label, ids[rows], boxes[rows], fr)
        inter[rows], parea[rows], garea[rows], have[rows] = i_, a_, g_, True
    todo = np.flatnonzero(garea < 0)
    for j in todo:
        x, y, w, h = (int(v) for v in boxes[j])
        garea[j] = np.count_nonzero(frame.label[y : y + h, x : x + w] == ids[j]) if w > 0 and h > 0 else 0
    if native and not np.array_equal(garea, gt.area):
        raise AimsError(f"the dataset is inconsistent: in image {gt.image_id!r} of config {config!r} the instance "
                        "map, areas and bounding boxes disagree; re-prepare the config.")
    iou = iou_from_counts(inter, parea, garea, protocol.eps)
    iou[~have] = np.nan
    return {"inter": inter, "pred_area": parea, "gt_area": garea, "have": have, "iou": iou,
            "eval_area": frame.eval_area, "evaluated": frame.evaluated}


# --------------------------------------------------------------------------- scores


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if x.size else None


@dataclass
class Scores:
    """The outcome of scoring: per-instance ``table`` (pandas) and what describes it."""

    table: Any
    protocol: Protocol
    split: str
    missing_policy: str
    configs: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    prediction_format: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    not_scored: dict[str, int] = field(default_factory=dict)
    category_names: dict[str, list[str]] = field(default_factory=dict)

    def config_summary(self, config: str) -> dict[str, Any]:
        """mIoU (mean over evaluated instances: the headline), per-image mean, 95 %
        bootstrap interval over images, per size bucket and per category, counts."""
        t = self.table[self.table["config"] == config]
        ev = t[t["evaluated"]]
        iou = ev["iou"].to_numpy(np.float64)
        per_image = ev.groupby("image_id", sort=False)["iou"].mean().to_numpy(np.float64)
        ci = bootstrap_ci(iou, ev["image_id"].to_numpy(), n_resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)
        by_size = {}
        for b in ("small", "medium", "large"):
            sel = ev[ev["size"] == b]["iou"].to_numpy(np.float64)
            by_size[b] = {"miou": _mean(sel), "n": int(sel.size)}
        by_cat = {}
        for name, grp in ev.groupby("category_name", sort=True):
            by_cat[str(name)] = {"miou": _mean(grp["iou"].to_numpy(np.float64)), "n": int(len(grp))}
        modality = next((m for m, c in MODALITIES.items() if c == config), None)
        return {
            "modality": modality,
            "miou": _mean(iou),
            "image_miou": _mean(per_image),
            "ci95": None if ci is None else [ci[0], ci[1]],
            "n_images": int(t["image_id"].nunique()),
            "n_instances": int(len(t)),
            "n_evaluated": int(len(ev)),
            "n_missing": int(ev["missing"].sum()),
            "n_predictions": int((~t["missing"]).sum()),
            "n_not_evaluated_predictions": int((~t["missing"] & ~t["evaluated"]).sum()),
            "by_size": by_size,
            "by_category": by_cat,
        }

    def summary(self) -> dict[str, dict[str, Any]]:
        return {c: self.config_summary(c) for c in self.configs}

    def headline(self, summary: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Mean of the five modality mIoUs, only when all five were scored."""
        summary = summary if summary is not None else self.summary()
        per = {m: (summary[c]["miou"] if c in summary else None) for m, c in MODALITIES.items()}
        complete = all(v is not None for v in per.values())
        return {"miou": float(np.mean(list(per.values()))) if complete else None,
                "complete": complete, "modalities": per, "configs": dict(MODALITIES)}

    def results(self, *, created: str | None = None) -> dict[str, Any]:
        """The results JSON document (schema: leaderboard/results.schema.json)."""
        from aims.results import build_results

        return build_results(self, created=created)

    def format_table(self) -> str:
        """A readable terminal table (mIoU in %)."""
        summary = self.summary()

        def pct(v: float | None) -> str:
            return "  -  " if v is None else f"{100 * v:5.2f}"

        head = (f"{'config':<17} {'images':>6} {'inst':>6} {'eval':>6} {'miss':>5} {'mIoU':>6} "
                f"{'95% CI':>13} {'img-mIoU':>8} {'small':>6} {'medium':>6} {'large':>6}")
        lines = [f"protocol {self.protocol.version}, split {self.split}, predictions: {self.prediction_format}"
                 + (f", method {self.meta.get('method')}" if self.meta.get("method") else "")
                 + (f", model {self.meta.get('model')}" if self.meta.get("model") else ""),
                 head, "-" * len(head)]
        for c, s in summary.items():
            ci = s["ci95"]
            ci_s = "      -      " if ci is None else f"{100 * ci[0]:5.2f}-{100 * ci[1]:5.2f}"
            lines.append(
                f"{c:<17} {s['n_images']:>6} {s['n_instances']:>6} {s['n_evaluated']:>6} {s['n_missing']:>5} "
                f"{pct(s['miou']):>6} {ci_s:>13} {pct(s['image_miou']):>8} {pct(s['by_size']['small']['miou']):>6} "
                f"{pct(s['by_size']['medium']['miou']):>6} {pct(s['by_size']['large']['miou']):>6}"
            )
        h = self.headline(summary)
        if h["complete"]:
            lines.append(f"headline (mean of 5 modalities): {pct(h['miou'])}")
        else:
            absent = [m for m, v in h["modalities"].items() if v is None]
            lines.append(f"headline: not computed (needs all 5 modalities; missing {', '.join(absent)})")
        if any(s["n_missing"] for s in summary.values()):
            lines.append("missing predictions were scored as IoU 0 (--missing zero)")
        for c, n in self.not_scored.items():
            lines.append(f"not scored: {n} prediction(s) for config {c!r} (not selected with --config)")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``instances.parquet``, ``results.json`` and ``summary.txt`` into ``out_dir``
        (each atomically)."""
        from aims.results import write_json_atomic

        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AimsError(f"cannot create the output folder {out}: {exc}; choose a writable --out.",
                            path=out) from None
        paths = {"instances": out / "instances.parquet", "results": out / "results.json",
                 "summary": out / "summary.txt"}
        tmp = paths["instances"].with_name(".instances.parquet.tmp")
        self.table.to_parquet(tmp, index=False)
        tmp.replace(paths["instances"])
        write_json_atomic(paths["results"], self.results())
        tmp = paths["summary"].with_name(".summary.txt.tmp")
        tmp.write_text(self.format_table() + "\n", encoding="utf-8")
        tmp.replace(paths["summary"])
        return paths


def _missing_error(missing: list[tuple[str, str, int]], total: int, folder: Path) -> AimsError:
    shown = ", ".join(f"{c}/{i}#{k}" for c, i, k in missing[:5])
    more = f" and {total - 5} more" if total > 5 else ""
    return AimsError(
        f"predictions in {folder} are missing for {total} evaluated instance(s): {shown}{more} "
        "(config/image_id#instance_id). Predict every evaluated instance, or pass --missing zero "
        "to score missing ones as IoU 0 (reported in the results).", path=folder)


def score_predictions(
    predictions: str | Path | PredictionFolder,
    *,
    data_dir: str | Path | None = None,
    configs: Sequence[str] | None = None,
    split: str = "test",
    protocol: str | Protocol = "aims",
    missing: str = "error",
    progress: bool = False,
    fingerprint: bool = True,
) -> Scores:
    """Score a predictions folder against the prepared dataset (see the module docstring).

    ``configs``: the configs to score (default: every config the predictions cover; a
    selected config without any prediction counts all its instances as missing).
    ``missing``: ``"error"`` (default) or ``"zero"``. Returns :class:`Scores`.
    """
    import pandas as pd

    if missing not in MISSING_POLICIES:
        raise AimsError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}.")
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    pf = predictions if isinstance(predictions, PredictionFolder) else read_predictions(predictions)
    chosen = list(dict.fromkeys(configs)) if configs else pf.configs
    for c in chosen:
        proto.check_config(c)
    not_scored = {c: sum(len(v) for v in pf.index[c].values()) if pf.format != "npz" else len(pf.index[c])
                  for c in pf.configs if c not in chosen}

    shards = {c: split_shards(data_dir, c, split) for c in chosen}
    # Fail fast on predictions for images the split does not have (before the heavy pass).
    for c in chosen:
        known = set(image_ids(shards[c]))
        unknown = sorted(set(pf.index.get(c, {})) - known)
        if unknown:
            entry = pf.index[c][unknown[0]]
            where = (entry[0].where if pf.format == "rle" else
                     str(entry) if pf.format == "npz" else str(next(iter(entry.values())).parent))
            raise AimsError(
                f"{where}: image {unknown[0]!r} is not in split {split!r} of config {c!r} "
                f"({len(unknown)} unknown image id(s) in total). Check the split (--split) and the "
                "config, or remove predictions for other images.", path=pf.path)

    columns: dict[str, list[Any]] = {k: [] for k in TABLE_COLUMNS}
    missing_list: list[tuple[str, str, int]] = []
    n_missing = 0
    names_by_config: dict[str, list[str]] = {}
    bar = None
    for c in chosen:
        names = category_names(shards[c][0])
        names_by_config[c] = names
        preds_of = pf.index.get(c, {})
        it = iter_ground_truth(shards[c])
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(it, desc=f"scoring {c}", unit="img", leave=False)
            it = bar
        for gt in it:
            preds = pf.image(c, gt.image_id) if gt.image_id in preds_of else None
            r = score_image(proto, c, split, gt, preds)
            miss = r["evaluated"] & ~r["have"]
            if miss.any():
                n_missing += int(miss.sum())
                for k in np.flatnonzero(miss)[: max(0, 5 - len(missing_list))]:
                    missing_list.append((c, gt.image_id, int(gt.instance_ids[k])))
            iou = r["iou"]
            if missing == "zero":
                iou = np.where(miss, 0.0, iou)
            n = gt.instance_ids.size
            columns["config"] += [c] * n
            columns["image_id"] += [gt.image_id] * n
            columns["instance_id"].append(gt.instance_ids)
            columns["category"].append(gt.category)
            columns["category_name"] += [names[k] if 0 <= k < len(names) else str(int(k)) for k in gt.category]
            columns["area"].append(gt.area)
            columns["eval_area"].append(r["eval_area"])
            columns["size"].append(size_bucket(gt.area))
            columns["evaluated"].append(r["evaluated"])
            columns["missing"].append(~r["have"])
            columns["intersection"].append(r["inter"])
            columns["pred_area"].append(r["pred_area"])
            columns["gt_area"].append(r["gt_area"])
            columns["iou"].append(iou)
        if bar is not None:
            bar.close()
    if n_missing and missing == "error":
        raise _missing_error(missing_list, n_missing, pf.path)

    dtypes = {"instance_id": np.int64, "category": np.int64, "area": np.int64, "eval_area": np.int64,
              "size": object, "evaluated": bool, "missing": bool, "intersection": np.int64,
              "pred_area": np.int64, "gt_area": np.int64, "iou": np.float64}
    data = {}
    for k in TABLE_COLUMNS:
        v = columns[k]
        if k in dtypes:
            data[k] = np.concatenate(v).astype(dtypes[k]) if v else np.zeros(0, dtypes[k])
        else:
            data[k] = np.asarray(v, dtype=object)
    table = pd.DataFrame(data, columns=TABLE_COLUMNS)
    return Scores(
        table=table,
        protocol=proto,
        split=split,
        missing_policy=missing,
        configs=chosen,
        meta=dict(pf.meta),
        prediction_format=pf.format,
        dataset=dataset_fingerprint(shards) if fingerprint else {},
        not_scored=not_scored,
        category_names=names_by_config,
    )
