"""Score a predictions folder against the prepared dataset: ``aims score``.

Flow: index the ground truth of the split from the prepared parquet shards (instance count
and map size per image, from the instance lists and PNG headers: :func:`ground_truth_index`)
→ index the predictions (:func:`aims.predictions.read_predictions`, which refuses mixed
formats, duplicates, malformed records, links/FIFOs/devices, and RLE JSON beyond a bound
relative to the split's instance count) → for every config, read the ground truth straight
from the shards (only the id-map PNG and the per-instance lists; the modality images are
never decoded) → per image: load its predictions with the sizes its protocol accepts and
its instance count (:class:`aims.predictions.ExpectedImage`: every declared size is
checked before anything is decoded), decode the instance map once,
bring it into the protocol's frame (:mod:`aims.protocols`), and compute every instance's
intersection and areas in one vectorised pass (:mod:`aims.metrics`) → a per-instance table
and its summaries (:class:`Scores`).

Strictness (every case is an :class:`AimsError` naming the file): predictions for images
or instance ids that are not in the split, masks of the wrong size, non-binary/NaN values,
corrupt RLE/npz, and missing predictions for evaluated instances (listed with their count;
``missing="zero"`` scores them IoU 0 instead and the results say so). Predictions for
instances the protocol does not evaluate are scored and kept in the table with
``evaluated = False``; they never enter the means. Results never depend on file order:
rows follow the dataset's image order and each image's instance order. A damaged dataset
(corrupt or truncated shard, missing column, unreadable PNG cell) is an AimsError naming
the shard and column, and :meth:`Scores.write` writes its folder atomically as a whole.

No torch: the ``simcmf`` protocol's torch resize is reproduced with index arithmetic.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aims import __version__
from aims.atomic import TEMP_PATTERN, atomic_write_bytes, atomic_write_text, remove_stale_temporaries, temporary_sibling
from aims.errors import AimsError
from aims.metrics import (
    NOC_MAX_CLICKS,
    NOC_THRESHOLDS,
    bootstrap_ci,
    dense_intersections,
    label_boxes,
    miou_at_clicks,
    number_of_clicks,
    rle_intersections,
    size_bucket,
)
from aims.predictions import (
    ExpectedImage,
    ImagePredictions,
    JsonBound,
    PredictionFolder,
    counts_to_mask,
    open_regular,
    read_png_header,
    read_predictions,
    rle_json_limit,
)
from aims.converters import registry
from aims.derived import LiveMapping
from aims.protocols import Protocol, get_protocol
from aims.results import RESULTS_FORMAT, clean_json

__all__ = ["HEADLINE_MODALITIES", "MIN_CI_IMAGES", "SCORES_FILES", "GroundTruthImage", "ImageInfo", "Scores",
           "check_scores_target", "ground_truth_index", "is_scores_folder", "iter_ground_truth",
           "not_in_headline", "score", "score_predictions"]

#: The modalities of the headline number and the config that represents each: every config
#: whose record says ``headline=True`` (derived, always current). The paper's
#: "polarization" column is RGBP-Glass (SimCMF's ``pgsnet_rgbp``, 9 channels), i.e. config
#: ``polarization``; ``polarization-zju`` (ZJU-RGBP) is scored and reported but is not part
#: of the headline mean.
HEADLINE_MODALITIES: Mapping[str, str] = LiveMapping(
    lambda: {c: c for c in registry.headline_configs()}, registry.generation)
MISSING_POLICIES = ("error", "zero")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
#: A bootstrap interval over fewer images than this is flagged as rough (a warning).
MIN_CI_IMAGES = 30
#: The per-instance table's columns; interactive predictions add ``click_ious`` (IoU after
#: each click). Older tables lack ``dice``: a scores folder is recognised by the others.
TABLE_COLUMNS = [
    "config", "image_id", "instance_id", "category", "category_name", "area", "eval_area",
    "size", "evaluated", "missing", "intersection", "pred_area", "gt_area", "iou", "dice",
]
_SCORES_FOLDER_COLUMNS = [c for c in TABLE_COLUMNS if c != "dice"]


def not_in_headline(configs: Sequence[str] | None = None) -> list[str]:
    """Configs (of ``configs``, default every known config) that are scored and reported
    but do not enter the headline mean (``polarization-zju`` among the built-ins): derived
    from the records, like :data:`HEADLINE_MODALITIES`."""
    names = list(configs) if configs is not None else list(registry.config_records())
    return [c for c in names if c not in HEADLINE_MODALITIES.values()]
#: The columns of a prepared shard the scorer reads (a shard without one is refused by name).
GT_COLUMNS = ["image_id", "instances", "instance_ids", "category", "area", "bbox"]
#: What ``aims score`` writes into its output folder (and all such a folder may hold).
SCORES_FILES = ("instances.parquet", "results.json", "summary.txt")
MAX_RESULTS_BYTES = 64 << 20
#: The largest instance map the scorer decodes (8192 x 8192; the largest AIMS source image
#: has ~5 megapixels): a dataset cell declaring more is refused from its PNG header.
MAX_MAP_PIXELS = 1 << 26


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
    """The dataset folder, found as ``aims.load_dataset`` finds it (:func:`aims.loader.dataset_root`)."""
    from aims.loader import dataset_root

    return dataset_root(data_dir)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _unreadable(shard: Path, exc: BaseException) -> AimsError:
    return AimsError(f"{shard} is not a readable parquet shard of the prepared dataset (corrupt or truncated: "
                     f"{_first_line(exc)}); re-prepare its config with `aims prepare --modality "
                     f"{shard.parent.name}`.", path=shard)


@contextlib.contextmanager
def _reading(shard: Path) -> Iterator[None]:
    """What pyarrow raises for a corrupt or truncated shard → one AimsError naming it."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise _unreadable(shard, exc) from None


def _open_shard(shard: Path, columns: Sequence[str]) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` holding ``columns``; AimsError naming the file
    and the first missing column otherwise."""
    import pyarrow.parquet as pq

    with _reading(shard):
        pf = pq.ParquetFile(shard)
        names = pf.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise AimsError(f"{shard} has no column {missing[0]!r} (it has {', '.join(names)}); it is not a "
                        f"prepared AIMS shard. Re-prepare its config with `aims prepare --modality "
                        f"{shard.parent.name}`.", path=shard)
    return pf


def _batches(shard: Path, columns: Sequence[str], batch_size: int) -> Iterator[dict[str, list[Any]]]:
    pf = _open_shard(shard, columns)
    with _reading(shard):
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            yield batch.to_pydict()


def category_names(shard: Path) -> list[str]:
    """Class names of the ``category`` ClassLabel, from the shard's Hugging Face features."""
    import pyarrow.parquet as pq

    with _reading(shard):
        md = pq.read_schema(shard).metadata or {}
    try:
        feats = json.loads(md[b"huggingface"])["info"]["features"]
        return [str(n) for n in feats["category"]["feature"]["names"]]
    except (KeyError, ValueError, TypeError, RecursionError):
        return []


def _cell_png(shard: Path, image_id: Any, cell: Any) -> bytes:
    raw = cell.get("bytes") if isinstance(cell, dict) else None
    if not isinstance(raw, (bytes, bytearray)):
        raise AimsError(f"{shard}: row {image_id!r} has no embedded instance map (column 'instances'); "
                        "re-prepare the dataset.", path=shard)
    return bytes(raw)


def _map_size(shard: Path, image_id: Any, raw: bytes) -> tuple[int, int]:
    """(h, w) of an instance-map PNG cell from its IHDR, bounded, without decoding it."""
    try:
        hdr = read_png_header(raw)
    except ValueError as exc:
        raise _bad_cell(shard, image_id, str(exc)) from None
    if hdr.channels != 1 or hdr.height * hdr.width > MAX_MAP_PIXELS:
        raise _bad_cell(shard, image_id, f"{hdr.width}x{hdr.height} with {hdr.channels} channel(s); an instance "
                        f"map is one channel of at most {MAX_MAP_PIXELS} pixels")
    return hdr.height, hdr.width


def _bad_cell(shard: Path, image_id: Any, why: str) -> AimsError:
    return AimsError(f"{shard}: the instance map (column 'instances') of row {image_id!r} is not a readable PNG "
                     f"({why}); re-prepare its config with `aims prepare --modality {shard.parent.name}`.",
                     path=shard)


def _row_arrays(shard: Path, d: dict[str, list[Any]], k: int) -> tuple[np.ndarray, ...]:
    """instance_ids, category, area, bbox of row ``k``, checked to agree in length."""
    image_id = d["image_id"][k]
    try:
        ids = np.asarray(d["instance_ids"][k], np.int64).reshape(-1)
        cat = np.asarray(d["category"][k], np.int64).reshape(-1)
        area = np.asarray(d["area"][k], np.int64).reshape(-1)
        bbox = np.asarray(d["bbox"][k], np.int64).reshape(-1, 4)
    except (TypeError, ValueError) as exc:
        raise AimsError(f"{shard}: row {image_id!r} has malformed instance lists ({_first_line(exc)}); "
                        "re-prepare the dataset.", path=shard) from None
    if not (ids.size == cat.size == area.size == len(bbox)):
        raise AimsError(f"{shard}: row {image_id!r} lists {ids.size} instance ids but {cat.size} categories, "
                        f"{area.size} areas and {len(bbox)} boxes; re-prepare the dataset.", path=shard)
    return ids, cat, area, bbox


def iter_ground_truth(shards: Sequence[Path], *, batch_size: int = 64) -> Iterator[GroundTruthImage]:
    """Rows of the given shards in order, reading only the columns scoring needs. A
    corrupt or truncated shard, a missing column, or a cell that is not a readable
    single-channel PNG is an :class:`AimsError` naming the file (and the column)."""
    from aims.imageio import decode_png

    for shard in shards:
        for d in _batches(shard, GT_COLUMNS, batch_size):
            for k in range(len(d["image_id"])):
                image_id = d["image_id"][k]
                raw = _cell_png(shard, image_id, d["instances"][k])
                size = _map_size(shard, image_id, raw)
                try:
                    id_map = decode_png(raw)
                except ValueError as exc:
                    raise _bad_cell(shard, image_id, str(exc)) from None
                if id_map.shape != size:
                    raise _bad_cell(shard, image_id, f"decoded shape {id_map.shape} differs from its header")
                ids, cat, area, bbox = _row_arrays(shard, d, k)
                yield GroundTruthImage(str(image_id), id_map, ids, cat, area, bbox)


@dataclass(frozen=True)
class ImageInfo:
    """What the scorer knows about an image before reading its predictions."""

    n_instances: int
    size: tuple[int, int]


def ground_truth_index(shards: Sequence[Path], *, batch_size: int = 256) -> dict[str, ImageInfo]:
    """image_id → (instance count, instance-map size) of every row of ``shards``, from
    the instance lists and the PNG headers only (no image is decoded). WHY: the
    predictions of an image are checked against its size and instance count before they
    are decoded, and the RLE JSON bound is relative to the number of instances."""
    out: dict[str, ImageInfo] = {}
    for shard in shards:
        for d in _batches(shard, ["image_id", "instances", "instance_ids"], batch_size):
            for image_id, cell, ids in zip(d["image_id"], d["instances"], d["instance_ids"]):
                size = _map_size(shard, image_id, _cell_png(shard, image_id, cell))
                out[str(image_id)] = ImageInfo(len(ids) if isinstance(ids, list) else 0, size)
    return out


def prepared_configs(data_dir: str | Path | None, split: str) -> list[str]:
    """Configs of a dataset folder that have ``split`` shards (sorted)."""
    root = _resolve_data_dir(data_dir)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if not d.name.startswith(".") and d.is_dir() and any(d.glob(f"{split}-*.parquet")))


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
    protocol: Protocol, config: str, split: str, gt: GroundTruthImage, preds: ImagePredictions | None,
    clicks: int = 1,
) -> dict[str, np.ndarray]:
    """Per-instance arrays of one image (aligned with ``gt.instance_ids``): intersection,
    prediction and ground-truth areas in the protocol's frame, IoU and Dice (NaN where there
    is no prediction), the protocol's filter area and evaluated flag, ``have`` (predicted),
    and ``click_ious`` (N, K): the IoU after each click of interactive predictions (K = 1
    otherwise; column 0 is ``iou``)."""
    ids = gt.instance_ids
    n = ids.size
    frame = protocol.frame(config, gt.id_map, ids, gt.area)
    native = frame.rows is None
    boxes = gt.bbox if native else label_boxes(frame.label, ids)
    clicks = preds.n_clicks if preds is not None else clicks
    inter = np.zeros(n, np.int64)
    parea = np.zeros(n, np.int64)
    garea = np.full(n, -1, np.int64)
    have = np.zeros(n, bool)
    click_ious = np.full((n, clicks), np.nan)
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
        for c in range(clicks):
            i_, a_, g_ = _click_counts(frame, ids[rows], boxes[rows], preds.at_click(c + 1), sizes, native)
            if c == 0:
                inter[rows], parea[rows], garea[rows], have[rows] = i_, a_, g_, True
            click_ious[rows, c] = protocol.iou(i_, a_, g_)
    todo = np.flatnonzero(garea < 0)
    for j in todo:
        x, y, w, h = (int(v) for v in boxes[j])
        garea[j] = np.count_nonzero(frame.label[y : y + h, x : x + w] == ids[j]) if w > 0 and h > 0 else 0
    if native and not np.array_equal(garea, gt.area):
        raise AimsError(f"the dataset is inconsistent: in image {gt.image_id!r} of config {config!r} the instance "
                        "map, areas and bounding boxes disagree; re-prepare the config.")
    iou = protocol.iou(inter, parea, garea)
    iou[~have] = np.nan
    dice = protocol.dice(inter, parea, garea)
    dice[~have] = np.nan
    return {"inter": inter, "pred_area": parea, "gt_area": garea, "have": have, "iou": iou, "dice": dice,
            "click_ious": click_ious, "eval_area": frame.eval_area, "evaluated": frame.evaluated}


def _click_counts(frame: Any, ids: np.ndarray, boxes: np.ndarray, preds: ImagePredictions,
                  sizes: list[tuple[int, int]], native: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|P∩G|, |P|, |G|) of one click's masks in the protocol's frame (RLE intersected
    without decoding at native resolution; decoded and brought into the frame otherwise)."""
    if preds.counts is not None and native:
        return rle_intersections(frame.label, ids, boxes, preds.counts)
    if preds.counts is not None:
        i_ = np.zeros(len(preds), np.int64)
        a_ = np.zeros(len(preds), np.int64)
        g_ = np.zeros(len(preds), np.int64)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, size in enumerate(sizes):
            groups.setdefault(size, []).append(k)
        for size, ks in groups.items():
            stack = np.stack([counts_to_mask(preds.counts[k], size) for k in ks])
            fr = frame.to_frame(stack, size)
            i_[ks], a_[ks], g_[ks] = dense_intersections(frame.label, ids[ks], boxes[ks], fr)
        return i_, a_, g_
    fr = frame.to_frame(preds.dense, sizes[0])
    return dense_intersections(frame.label, ids, boxes, fr)


# --------------------------------------------------------------------------- scores


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


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
    #: masks per instance (K > 1: interactive predictions, see :meth:`interactive_summary`)
    clicks: int = 1
    #: which click the predictions declare and whether it matches the protocol's
    click_rule: dict[str, Any] = field(default_factory=dict)
    #: notes from scoring itself (click rule unsaid or overridden); see :attr:`warnings`
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What a reader of the numbers must know: the scoring notes, and every config
        whose bootstrap interval comes from fewer than :data:`MIN_CI_IMAGES` images."""
        out = list(self.notes)
        for c in self.configs:
            ev = self.table[(self.table["config"] == c) & self.table["evaluated"]]
            n = int(ev["image_id"].nunique())
            if 0 < n < MIN_CI_IMAGES:
                out.append(f"config {c!r}: the 95 % bootstrap interval comes from {n} image(s), fewer than "
                           f"{MIN_CI_IMAGES}; read it as rough.")
        return out

    def interactive_summary(self, config: str) -> dict[str, Any] | None:
        """mIoU@k for k = 1..K and NoC@85/NoC@90 (RITM's count, at most
        ``min(K, 20)`` clicks; an instance that never reaches the IoU counts that many),
        over the evaluated instances of ``config``; None for one-click predictions."""
        if self.clicks < 2 or "click_ious" not in self.table:
            return None
        t = self.table[(self.table["config"] == config) & self.table["evaluated"]]
        ious = (np.stack(t["click_ious"].to_numpy()).astype(np.float64) if len(t)
                else np.zeros((0, self.clicks)))
        cap = min(self.clicks, NOC_MAX_CLICKS)
        out: dict[str, Any] = {"clicks": self.clicks, "max_clicks": cap, "ritm_comparable": cap == NOC_MAX_CLICKS,
                               "miou_at": miou_at_clicks(ious)}
        for thr in NOC_THRESHOLDS:
            key = f"noc{round(thr * 100)}"
            noc = number_of_clicks(ious, thr, cap)
            out[key] = float(noc.mean()) if noc.size else None
            out[f"{key}_at_max"] = int((noc == cap).sum())
        return out

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
        modality = next((m for m, c in HEADLINE_MODALITIES.items() if c == config), None)
        out = {
            "modality": modality,
            "miou": _mean(iou),
            "mdice": _mean(ev["dice"].to_numpy(np.float64)),
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
        interactive = self.interactive_summary(config)
        if interactive is not None:
            out["interactive"] = interactive
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        return {c: self.config_summary(c) for c in self.configs}

    def headline(self, summary: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Mean of the headline modality mIoUs, only when all of them were scored."""
        summary = summary if summary is not None else self.summary()
        per = {m: (summary[c]["miou"] if c in summary else None) for m, c in HEADLINE_MODALITIES.items()}
        dice = {m: (summary[c].get("mdice") if c in summary else None) for m, c in HEADLINE_MODALITIES.items()}
        complete = all(v is not None for v in per.values())
        return {"miou": float(np.mean(list(per.values()))) if complete else None,
                "mdice": float(np.mean(list(dice.values()))) if complete and None not in dice.values() else None,
                "complete": complete, "modalities": per, "configs": dict(HEADLINE_MODALITIES),
                "not_in_headline": not_in_headline()}

    def results(self, *, created: str | None = None) -> dict[str, Any]:
        """The results JSON document (schema: leaderboard/results.schema.json)."""
        summary = self.summary()
        meta = dict(self.meta)
        doc = {
            "results_format": RESULTS_FORMAT,
            "method": str(meta.get("method") or "unnamed"),
            "model": str(meta.get("model") or "unknown"),
            "meta": meta,
            "protocol": self.protocol.to_dict(),
            "split": self.split,
            "toolkit_version": __version__,
            "created": created or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "dataset": self.dataset or {"fingerprint": None, "files": {}},
            "predictions_format": self.prediction_format,
            "missing_policy": self.missing_policy,
            "configs": summary,
            "headline": self.headline(summary),
            "not_scored": dict(self.not_scored),
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "unit": "image",
                          "confidence": 0.95},
            "click_rule": dict(self.click_rule) or {"predictions": None, "protocol": self.protocol.name,
                                                    "match": None, "mismatch_allowed": False},
            "clicks": self.clicks,
            "warnings": self.warnings,
        }
        return clean_json(doc)

    def format_table(self) -> str:
        """A readable terminal table (mIoU and mDice in %), the headline and what it
        averages, and the interactive metrics of interactive predictions."""
        summary = self.summary()

        def pct(v: float | None) -> str:
            return "  -  " if v is None else f"{100 * v:5.2f}"

        head = (f"{'config':<17} {'images':>6} {'inst':>6} {'eval':>6} {'miss':>5} {'mIoU':>6} "
                f"{'95% CI':>13} {'mDice':>6} {'img-mIoU':>8} {'small':>6} {'medium':>6} {'large':>6}")
        lines = [f"protocol {self.protocol.version}, split {self.split}, predictions: {self.prediction_format}"
                 + (f", method {self.meta.get('method')}" if self.meta.get("method") else "")
                 + (f", model {self.meta.get('model')}" if self.meta.get("model") else ""),
                 head, "-" * len(head)]
        for c, s in summary.items():
            ci = s["ci95"]
            ci_s = "      -      " if ci is None else f"{100 * ci[0]:5.2f}-{100 * ci[1]:5.2f}"
            lines.append(
                f"{c:<17} {s['n_images']:>6} {s['n_instances']:>6} {s['n_evaluated']:>6} {s['n_missing']:>5} "
                f"{pct(s['miou']):>6} {ci_s:>13} {pct(s['mdice']):>6} {pct(s['image_miou']):>8} "
                f"{pct(s['by_size']['small']['miou']):>6} {pct(s['by_size']['medium']['miou']):>6} "
                f"{pct(s['by_size']['large']['miou']):>6}"
            )
        h = self.headline(summary)
        names = ", ".join(HEADLINE_MODALITIES)
        n = len(HEADLINE_MODALITIES)
        if h["complete"]:
            lines.append(f"headline = mean of the {n} modality mIoUs ({names}): {pct(h['miou'])} "
                         f"(mDice {pct(h['mdice'])})")
        else:
            absent = [m for m, v in h["modalities"].items() if v is None]
            lines.append(f"headline: not computed (the mean of the {n} modalities {names}; missing "
                         f"{', '.join(absent)})")
        if h["not_in_headline"]:
            lines.append(f"not in the headline (scored and reported only): {', '.join(h['not_in_headline'])}")
        for c, s in summary.items():
            it = s.get("interactive")
            if it is None:
                continue
            at = " ".join(f"@{k}:{pct(v).strip()}" for k, v in enumerate(it["miou_at"], start=1))
            cap = it["max_clicks"]
            lines.append(f"{c}: interactive, {it['clicks']} clicks: mIoU{at}")
            lines.append(f"{c}: NoC@85 {_num(it['noc85'])} ({it['noc85_at_max']} at {cap}), NoC@90 {_num(it['noc90'])} "
                         f"({it['noc90_at_max']} at {cap}); max {cap} clicks"
                         + ("" if it["ritm_comparable"] else f" (RITM counts up to {NOC_MAX_CLICKS}: not comparable)"))
        if any(s["n_missing"] for s in summary.values()):
            lines.append("missing predictions were scored as IoU 0 (--missing zero)")
        for c, n_ in self.not_scored.items():
            lines.append(f"not scored: {n_} prediction(s) for config {c!r} (not selected with --config)")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``instances.parquet``, ``results.json`` and ``summary.txt`` into ``out_dir``,
        atomically AS A WHOLE: the three files are written into a hidden temporary sibling
        folder, which is then renamed to ``out_dir``. A reader (or a crash, or a full disk)
        sees the previous folder or the complete new one, never ``instances.parquet``
        without ``results.json``. An existing ``out_dir`` is replaced only if it is an
        earlier ``aims score`` output (:func:`is_scores_folder`); anything else is refused.
        A full disk, quota or file-size limit is an :class:`AimsError`, and nothing is left."""
        out = check_scores_target(out_dir)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AimsError(f"cannot create the output folder {out.parent}: {exc.strerror}; choose a writable "
                            "--out.", path=out.parent) from None
        remove_stale_temporaries(out.parent)
        tmp = temporary_sibling(out)
        try:
            tmp.mkdir()
            self._write_files(tmp)
            _swap_in(tmp, out)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _write_error(out, exc) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {"instances": out / SCORES_FILES[0], "results": out / SCORES_FILES[1],
                "summary": out / SCORES_FILES[2]}

    def _write_files(self, folder: Path) -> None:
        from aims.results import SCORING_HINT, validate_results

        buf = io.BytesIO()
        self.table.to_parquet(buf, index=False)
        atomic_write_bytes(folder / SCORES_FILES[0], buf.getvalue())
        doc = self.results()
        validate_results(doc, source=folder.parent / SCORES_FILES[1], hint=SCORING_HINT)
        atomic_write_text(folder / SCORES_FILES[1],
                          json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        atomic_write_text(folder / SCORES_FILES[2], self.format_table() + "\n")


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an existing ``out`` (checked to be
    ours) is first renamed to a hidden temporary name (removed after, or by the next run
    if we are killed in between) and restored if the second rename fails."""
    old = None
    if os.path.lexists(out):
        old = temporary_sibling(out)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit was reached",
         getattr(errno, "EDQUOT", -1): "the disk quota is exhausted"}


def _write_error(out: Path, exc: OSError) -> AimsError:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in _FULL:
        return AimsError(f"cannot write the scores to {out}: {_FULL[exc.errno]}{where} ({exc.strerror}). Nothing "
                         f"was written ({out} is unchanged); free space, or choose another --out, and score again.",
                         path=out)
    return AimsError(f"cannot write the scores to {out}: {exc.strerror}{where}; choose a writable --out. Nothing "
                     "was written.", path=out)


def _is_our_hidden(name: str) -> bool:
    return bool(TEMP_PATTERN.match(name)) or name in (".instances.parquet.tmp", ".summary.txt.tmp")


def is_scores_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder an earlier ``aims score`` wrote, which may be replaced:
    an empty folder, or one holding only regular files among :data:`SCORES_FILES` (some
    may be missing: the leftover of a run killed by the old, non-atomic writer) and our
    hidden temporaries, whose ``results.json`` (if any) is an AIMS results document and
    whose ``instances.parquet`` (if any) has the per-instance table's columns."""
    p = Path(path)
    try:
        names = os.listdir(p)
    except OSError:
        return False
    visible = [n for n in names if not n.startswith(".")]
    if any(n not in SCORES_FILES for n in visible) or not all(_is_our_hidden(n) for n in names if n.startswith(".")):
        return False
    try:
        if "results.json" in visible and not _is_results_doc(p / "results.json"):
            return False
        if "instances.parquet" in visible and not _is_instances_table(p / "instances.parquet"):
            return False
        if "summary.txt" in visible:
            open_regular(p / "summary.txt").close()
    except AimsError:
        return False
    return True


def _is_results_doc(path: Path) -> bool:
    with open_regular(path) as fh:
        data = fh.read(MAX_RESULTS_BYTES + 1)
    if len(data) > MAX_RESULTS_BYTES:
        return False
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and "results_format" in doc


def _is_instances_table(path: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    open_regular(path).close()
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return False
    return set(_SCORES_FOLDER_COLUMNS) <= set(names)


def check_scores_target(out_dir: str | Path) -> Path:
    """The folder ``aims score`` will write, after checking it may: absent, or an earlier
    scores folder (:func:`is_scores_folder`). A link given by the user is followed when it
    leads to a folder (it is their own path). :class:`AimsError` otherwise — call it before
    scoring to fail fast."""
    out = Path(out_dir).expanduser()
    if out.is_symlink():
        if not out.is_dir():
            raise AimsError(f"--out {out} is a link to {os.readlink(out)}, which is not a folder; choose a folder "
                            "path.", path=out)
        out = Path(os.path.realpath(out))
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise AimsError(f"--out {out} is a file, not a folder; choose a folder path for the scores.", path=out)
    if not is_scores_folder(out):
        shown = ", ".join(sorted(os.listdir(out))[:5])
        raise AimsError(f"--out {out} already exists and is not an `aims score` output folder (it holds {shown}); "
                        "it is never replaced. Choose a new --out (or empty that folder).", path=out)
    return out


class _IndexCache:
    """:func:`ground_truth_index` per config of one split, read once."""

    def __init__(self, data_dir: str | Path | None, split: str) -> None:
        self.data_dir = data_dir
        self.split = split
        self._index: dict[str, dict[str, ImageInfo]] = {}

    def get(self, config: str) -> dict[str, ImageInfo]:
        if config not in self._index:
            self._index[config] = ground_truth_index(split_shards(self.data_dir, config, self.split))
        return self._index[config]

    def json_bound(self, configs: Sequence[str] | None, proto: Protocol) -> JsonBound:
        """The RLE JSON bound for the instances of the split (of ``configs``, or of every
        prepared config when the predictions decide which are scored)."""
        names = list(dict.fromkeys(configs)) if configs else prepared_configs(self.data_dir, self.split)
        n, pixels = 0, 1
        for c in names:
            with contextlib.suppress(AimsError):  # an unprepared config is reported later, by name
                for info in self.get(c).values():
                    n += info.n_instances
                    pixels = max(pixels, max(h * w for h, w in proto.accepted_sizes(info.size)))
        return rle_json_limit(n, pixels, f"split {self.split!r} of {', '.join(names) or 'no prepared config'}")


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
    allow_click_mismatch: bool = False,
) -> Scores:
    """Score a predictions folder against the prepared dataset (see the module docstring).

    ``configs``: the configs to score (default: every config the predictions cover; a
    selected config without any prediction counts all its instances as missing).
    ``missing``: ``"error"`` (default) or ``"zero"``. Predictions that declare the other
    protocol's click rule are refused unless ``allow_click_mismatch`` (then recorded).
    Returns :class:`Scores`.
    """
    import pandas as pd

    if missing not in MISSING_POLICIES:
        raise AimsError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}.")
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    # configs prepared from a record this process does not know (a user's own modality)
    registry.register_prepared_records(_resolve_data_dir(data_dir))
    gt_index = _IndexCache(data_dir, split)
    pf = predictions if isinstance(predictions, PredictionFolder) else read_predictions(
        predictions, json_bound=lambda: gt_index.json_bound(configs, proto))
    click_rule, notes = _check_click_rule(pf, proto, allow_click_mismatch)
    chosen = list(dict.fromkeys(configs)) if configs else pf.configs
    for c in chosen:
        proto.check_config(c)
    not_scored = {c: sum(len(v) for v in pf.index[c].values()) if pf.format != "npz" else len(pf.index[c])
                  for c in pf.configs if c not in chosen}

    shards = {c: split_shards(data_dir, c, split) for c in chosen}
    # Fail fast on predictions for images the split does not have (before the heavy pass).
    for c in chosen:
        known = gt_index.get(c)
        unknown = sorted(set(pf.index.get(c, {})) - set(known))
        if unknown:
            entry = pf.index[c][unknown[0]]
            where = (entry[0].where if pf.format == "rle" else
                     str(entry) if pf.format == "npz" else str(next(iter(entry.values()))[0].parent))
            raise AimsError(
                f"{where}: image {unknown[0]!r} is not in split {split!r} of config {c!r} "
                f"({len(unknown)} unknown image id(s) in total). Check the split (--split) and the "
                "config, or remove predictions for other images.", path=pf.path)

    table_columns = TABLE_COLUMNS + (["click_ious"] if pf.clicks > 1 else [])
    columns: dict[str, list[Any]] = {k: [] for k in table_columns}
    missing_list: list[tuple[str, str, int]] = []
    n_missing = 0
    names_by_config: dict[str, list[str]] = {}
    bar = None
    for c in chosen:
        names = category_names(shards[c][0])
        names_by_config[c] = names
        preds_of = pf.index.get(c, {})
        infos = gt_index.get(c)
        it = iter_ground_truth(shards[c])
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(it, desc=f"scoring {c}", unit="img", leave=False)
            it = bar
        for gt in it:
            preds = None
            if gt.image_id in preds_of:
                info = infos[gt.image_id]
                expected = ExpectedImage(tuple(proto.accepted_sizes(info.size)), info.n_instances,
                                         f"image {gt.image_id!r} of config {c!r} (protocol {proto.version})")
                preds = pf.image(c, gt.image_id, expected)
            r = score_image(proto, c, split, gt, preds, pf.clicks)
            miss = r["evaluated"] & ~r["have"]
            if miss.any():
                n_missing += int(miss.sum())
                for k in np.flatnonzero(miss)[: max(0, 5 - len(missing_list))]:
                    missing_list.append((c, gt.image_id, int(gt.instance_ids[k])))
            iou, dice, click_ious = r["iou"], r["dice"], r["click_ious"]
            if missing == "zero":
                iou = np.where(miss, 0.0, iou)
                dice = np.where(miss, 0.0, dice)
                click_ious = np.where(miss[:, None], 0.0, click_ious)
            if pf.clicks > 1:
                columns["click_ious"] += list(click_ious)
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
            columns["dice"].append(dice)
        if bar is not None:
            bar.close()
    if n_missing and missing == "error":
        raise _missing_error(missing_list, n_missing, pf.path)

    dtypes = {"instance_id": np.int64, "category": np.int64, "area": np.int64, "eval_area": np.int64,
              "size": object, "evaluated": bool, "missing": bool, "intersection": np.int64,
              "pred_area": np.int64, "gt_area": np.int64, "iou": np.float64, "dice": np.float64}
    data = {}
    for k in table_columns:
        v = columns[k]
        if k in dtypes:
            data[k] = np.concatenate(v).astype(dtypes[k]) if v else np.zeros(0, dtypes[k])
        else:
            data[k] = np.empty(len(v), dtype=object)
            data[k][:] = v
    table = pd.DataFrame(data, columns=table_columns)
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
        clicks=pf.clicks,
        click_rule=click_rule,
        notes=notes,
    )


#: The dataset column each click rule reads (docs/protocol.md).
_CLICK_COLUMNS = {"aims": "point", "simcmf": "point_simcmf"}


def _check_click_rule(pf: PredictionFolder, proto: Protocol, allow: bool) -> tuple[dict[str, Any], list[str]]:
    """What the results record about the predictions' click rule, and the notes to show.
    A declared rule other than the protocol's is an AimsError unless ``allow``. WHY: the
    two protocols prompt with different clicks (``point`` vs ``point_simcmf``); masks made
    from one scored under the other silently compare different tasks."""
    declared = pf.click_rule
    record = {"predictions": declared, "protocol": proto.name,
              "match": None if declared is None else declared == proto.name, "mismatch_allowed": False}
    notes: list[str] = []
    if declared is None:
        notes.append(f"the predictions do not say which click they were prompted with (click_rule in "
                     f"aims_predictions.json); protocol {proto.name} assumes column "
                     f"{_CLICK_COLUMNS.get(proto.name, 'point')!r}.")
    elif declared != proto.name:
        if not allow:
            raise AimsError(
                f"predictions in {pf.path} were made with the {declared!r} click (column "
                f"{_CLICK_COLUMNS.get(declared, declared)!r}), but protocol {proto.name} prompts with "
                f"{_CLICK_COLUMNS.get(proto.name, proto.name)!r}: their scores would not be comparable. Score them "
                f"with --protocol {declared}, predict again with the {proto.name} click, or pass "
                "--allow-click-mismatch (recorded in the results).", path=pf.path)
        record["mismatch_allowed"] = True
        notes.append(f"scored under protocol {proto.name} although the predictions used the {declared!r} click "
                     "(--allow-click-mismatch); not comparable with matching results.")
    return record, notes


def score(
    predictions: str | Path,
    *,
    data_dir: str | Path | None = None,
    protocol: str = "aims",
    configs: Sequence[str] | None = None,
    split: str = "test",
    missing: str = "error",
    allow_click_mismatch: bool = False,
    progress: bool = False,
) -> Scores:
    """Score a predictions folder against the prepared dataset: the Python face of
    ``aims score``, which uses the same object.

    ::

        import aims

        result = aims.score("runs/lora-depth/predictions", data_dir="~/aims/dataset", protocol="aims")
        result.summary()["depth"]["miou"], result.summary()["depth"]["mdice"]
        result.headline()["miou"]          # mean of the headline modalities, when all were scored
        result.warnings                    # e.g. an interval from fewer than 30 images
        result.table                       # one row per ground-truth instance (pandas)
        result.results()                   # the results JSON document
        result.write("runs/lora-depth/scores")

    Returns a :class:`Scores` dataclass; raises :class:`aims.errors.AimsError` for any bad
    input (the CLI's exit status 2). See :func:`score_predictions` for the parameters.
    """
    return score_predictions(predictions, data_dir=data_dir, configs=configs, split=split, protocol=protocol,
                             missing=missing, progress=progress, allow_click_mismatch=allow_click_mismatch)
