"""``aims show``: pictures of a prepared dataset, optionally with a model's predictions.

Drawing lives in :mod:`aims.visualize`; this module picks the rows, reads predictions in
any of the three formats and computes the IoU shown on each panel at native resolution
(the ``aims`` protocol's rule), so a panel never disagrees with ``aims score``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aims.errors import AimsError
from aims.predictions import ExpectedImage
from aims.protocols import get_protocol

#: an image id that is safe as a file name under --out (no separators, no leading dot)
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def panel_path(out: Path, config: str, image_id: object) -> Path:
    """``out/<config>/<image_id>.png``; an id that would leave that folder (``../x``, an
    absolute path: a hostile dataset) is refused rather than written somewhere else."""
    name = str(image_id)
    if not PLAIN_NAME.fullmatch(name):
        shown = name if len(name) <= 200 else name[:200] + "…"
        raise AimsError(f"config {config!r} has an image id {shown!r} that is not a plain file "
                        "name (letters, digits, '.', '_', '-'); the dataset is damaged or not one "
                        "`aims prepare` wrote. Prepare it again.")
    return out / config / f"{name}.png"


def _native_masks(pred, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """{instance id: boolean mask} of one image's predictions at ``size``; masks of
    another size (simcmf 256×256) are resized with nearest neighbour for display."""
    import cv2

    from aims.predictions import counts_to_mask

    out = {}
    for i, inst in enumerate(pred.ids.tolist()):
        h, w = (int(v) for v in pred.sizes[i])
        mask = pred.dense[i] if pred.dense is not None else counts_to_mask(pred.counts[i], (h, w))
        if (h, w) != size:
            mask = cv2.resize(mask.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
        out[int(inst)] = np.asarray(mask, dtype=bool)
    return out


def show_dataset(
    *,
    data_dir: Path | None,
    configs: Sequence[str] | None,
    split: str,
    limit: int,
    predictions: Path | None,
    out: Path,
) -> list[Path]:
    """Write panels for the first ``limit`` images of ``split`` of each config, and one
    statistics plot per config; returns the paths written."""
    from aims.loader import load_dataset
    from aims.loader import dataset_root
    from aims.converters.registry import register_prepared_records
    from aims.schema import CONFIG_SCHEMAS
    from aims.visualize import render_panel, render_statistics

    data_dir = dataset_root(data_dir)      # as aims.load_dataset finds it
    present = sorted(p.parent.name for p in data_dir.glob("*/aims_config.json"))
    if not present:
        raise AimsError(f"{data_dir} holds no prepared config; run `aims prepare` first "
                        "or pass --data-dir.", path=data_dir)
    register_prepared_records(data_dir)  # configs prepared from a user's own record
    configs = list(configs or present)
    unknown = [c for c in configs if c not in present]
    if unknown:
        raise AimsError(f"{data_dir} has no config {', '.join(unknown)} (prepared: {', '.join(present)}).",
                        path=data_dir)
    folder = None
    if predictions is not None:
        from aims.predictions import read_predictions

        folder = read_predictions(predictions)
    written = []
    for config in configs:
        ds = load_dataset(config, data_dir=data_dir)
        if split not in ds:
            raise AimsError(f"config {config!r} has no split {split!r} (has: {', '.join(ds)}).", path=data_dir)
        columns = [c.name for c in CONFIG_SCHEMAS[config].modality_columns] if config in CONFIG_SCHEMAS else []
        rows = ds[split]
        for k in range(min(limit, len(rows))):
            example = rows[k]
            preds = ious = None
            if folder is not None and example["image_id"] in folder.index.get(config, {}):
                id_map = np.asarray(example["instances"]).astype(np.int64)
                # every size any protocol accepts; checked from headers before decoding
                expected = ExpectedImage(tuple(get_protocol("simcmf").accepted_sizes(id_map.shape)),
                                         len(example["instance_ids"]), f"{config}/{example['image_id']}")
                preds = _native_masks(folder.image(config, example["image_id"], expected), id_map.shape)
                ious = {}
                for inst, mask in preds.items():
                    gt = id_map == inst
                    union = np.logical_or(gt, mask).sum()
                    ious[inst] = float(np.logical_and(gt, mask).sum() / union) if union else None
            path = panel_path(out, config, example["image_id"])
            written.append(render_panel(example, config, path, modality_columns=columns,
                                        predictions=preds, ious=ious))
        written.append(render_statistics({s: ds[s] for s in ds}, config, out / f"statistics-{config}.png"))
    return written
