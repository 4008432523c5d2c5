"""The Hugging Face dataset card (README.md) of a prepared AIMS dataset.

The card is generated, never hand-edited: :func:`aims.writer.write_config` regenerates it
from the ``aims_config.json`` of every config present, so what it says (splits, counts,
channel statistics, licences, how instances and clicks were made) always matches the files.
Its YAML front matter is what ``datasets`` and the Hub read: ``configs:`` maps each config
and split to its parquet shards. No config is marked ``default``: every modality is a
separate benchmark track and users must name the one they want.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # pragma: no cover
    from aims.writer import ConfigInfo

PRETTY_NAME = "AIMS: Any Image Modality Segmentation"
BASE_TAGS = ["promptable-segmentation", "interactive-segmentation", "segment-anything", "multimodal"]
_SPLIT_ORDER = ("train", "validation", "test")


def _splits(info: ConfigInfo) -> list[str]:
    return sorted(
        info.counts,
        key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s),
    )


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def _license_yaml(infos: list[ConfigInfo]) -> dict[str, str]:
    """One licence id when all sources share it; otherwise ``other`` pointing at the
    per-config licence section of this card (the Hub wants a single value)."""
    ids = {i.license or "other" for i in infos}
    if len(ids) == 1 and ids != {"other"}:
        return {"license": ids.pop()}
    others = {(i.license_name, i.license_link) for i in infos}
    if len(infos) >= 1 and len(ids) == 1 and len(others) == 1:
        name, link = others.pop()
        out = {"license": "other", "license_name": name or "aims-source-licences"}
        out["license_link"] = link or "README.md"
        return out
    return {"license": "other", "license_name": "aims-mixed-source-licences", "license_link": "README.md"}


def card_metadata(infos: list[ConfigInfo]) -> dict:
    """The YAML front matter as a dict (ordered for a stable, readable file)."""
    tags = list(BASE_TAGS)
    for info in infos:
        for tag in [info.config, *_schema_tags(info.config)]:
            if tag not in tags:
                tags.append(tag)
    total = sum(c.get("images", 0) for i in infos for c in i.counts.values())
    meta: dict = {"pretty_name": PRETTY_NAME}
    meta.update(_license_yaml(infos) if infos else {"license": "other"})
    meta["task_categories"] = ["image-segmentation"]
    meta["tags"] = tags
    meta["size_categories"] = [_size_category(total)]
    meta["configs"] = [
        {
            "config_name": info.config,
            "data_files": [
                {"split": split, "path": f"{info.config}/{split}-*.parquet"} for split in _splits(info)
            ],
        }
        for info in infos
    ]
    return meta


def _schema_tags(config: str) -> tuple[str, ...]:
    from aims.schema import CONFIGS

    return CONFIGS[config].tags if config in CONFIGS else ()


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _config_section(info: ConfigInfo) -> list[str]:
    out = [f"### `{info.config}`", ""]
    if info.description:
        out += [info.description, ""]
    src = info.source or "unknown source"
    out.append(f"- **Source:** {f'[{src}]({info.homepage})' if info.homepage else src}")
    lic = info.license if info.license != "other" else (info.license_name or "other")
    if info.license_link:
        lic = f"[{lic}]({info.license_link})"
    out.append(f"- **Licence:** {lic} (the source's terms apply to these derived files)")
    out.append(f"- **Protocol:** `{info.protocol}`; toolkit version {info.toolkit_version}")
    out.append("- **Columns:** `image_id`, `source`, "
               + "".join(f"`{c}`, " for c in info.columns)
               + "`instances` (16-bit PNG instance-id map, 0 = no instance) and the aligned "
               "per-instance lists `instance_ids`, `category`, `area`, `bbox`, `point`, `point_simcmf`.")
    if info.columns:
        out += ["", "| column | encoding and units |", "|---|---|"]
        out += [f"| `{c}` | {text} |" for c, text in info.columns.items()]
    ignored = ", ".join(str(v) for v in info.ignore_labels) or "none"
    out += [
        "",
        f"**Instances.** Connected components of each semantic class, found per class (never "
        f"across classes) with {info.connectivity}-connectivity; ignored labels ({ignored}) "
        "never form instances. Every component is kept with its area and bounding box; protocol "
        "`aims` evaluates instances of area ≥ 100 px at native resolution.",
    ]
    if info.category_names:
        names = ", ".join(f"{i}: {n}" for i, n in enumerate(info.category_names))
        out += ["", f"<details><summary>{len(info.category_names)} categories</summary>", "",
                names, "", "</details>"]
    if info.counts:
        out += ["", "| split | images | instances |", "|---|---:|---:|"]
        out += [f"| {s} | {info.counts[s].get('images', 0)} | {info.counts[s].get('instances', 0)} |"
                for s in _splits(info)]
    if info.channel_stats:
        out += ["", "Channel statistics (train split, values as `aims.modality_tensor` returns them):",
                "", "| column | channel | mean | std |", "|---|---:|---:|---:|"]
        for col, st in info.channel_stats.items():
            for ch, (m, s) in enumerate(zip(st.get("mean", []), st.get("std", []))):
                out.append(f"| `{col}` | {ch} | {_fmt(m)} | {_fmt(s)} |")
    notes = [*info.notes, *info.image_notes]
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if info.citation.strip():
        out += ["", "Citation:", "", "```bibtex", info.citation.strip(), "```"]
    return out + [""]


def render_card(infos: list[ConfigInfo]) -> str:
    """The full README.md text for the given configs (in the given order)."""
    meta = card_metadata(infos)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    version = infos[0].toolkit_version if infos else ""
    body = [
        f"# {PRETTY_NAME}",
        "",
        "AIMS is a benchmark for *promptable* (Segment Anything style) segmentation on non-RGB "
        "imaging modalities: for every ground-truth instance a model gets one positive click and "
        "must return that instance's mask; the score is the IoU per instance, averaged over all "
        "evaluated instances of a config's test split (mIoU). Each modality is a config of this "
        "dataset, converted from its public source by the AIMS toolkit"
        + (f" (version {version})." if version else "."),
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("<repo-or-folder>", "{infos[0].config if infos else "depth"}")',
        "import aims",
        f'x = aims.modality_tensor(ds["test"][0], "{infos[0].config if infos else "depth"}")  # float32 (C, H, W)',
        "```",
        "",
        "A local copy made by `aims prepare` loads with `aims.load_dataset(config)`; when you "
        "re-prepare a local copy and load it with `datasets.load_dataset(folder, config)` instead, "
        "pass `download_mode=\"force_redownload\"` (the `datasets` cache of a local folder is keyed "
        "on this card, not on the files).",
        "",
        "## Format",
        "",
        "One row per image. All images are lossless PNG `Image` columns; 16-bit PNGs decode to "
        "PIL mode `I;16` (`np.array(img)` gives the exact uint16 values). Per-instance columns are "
        "aligned lists: element *i* of `instance_ids`, `category`, `area`, `bbox` (x, y, w, h), "
        "`point` (x, y) and `point_simcmf` (x, y) describe the instance whose pixels are "
        "`instances == instance_ids[i]`.",
        "",
        "Splits: the source's official train/test; `validation` is carved from the official train "
        "split (≈10 % of images, chosen by a stable SHA-256 hash of the image id) so that models "
        "are selected without touching test. Configs that share images (`depth`, `hha`) share the "
        "validation images.",
        "",
        "## Click prompts",
        "",
        "- `point` — protocol `aims`: the maximum of the exact Euclidean distance transform of the "
        "instance mask padded by one background pixel (so the image border counts as boundary), "
        "first maximum in raster (row-major) order; (x, y) in native pixels. It is always inside "
        "the mask.",
        "- `point_simcmf` — protocol `simcmf` (reproduces the SimCMF paper): the label map is warped "
        "to 1024×1024 with nearest-neighbour resampling, and the click is the middle element "
        "(`len // 2`) of `np.argwhere(mask == id)`, flipped to (x, y), in that 1024×1024 frame; "
        "(-1, -1) when the instance vanishes in the warp.",
        "",
        "## Configs",
        "",
    ]
    for info in infos:
        body += _config_section(info)
    lic_lines = ["## Licences", "",
                 "Each config inherits the licence of its source dataset; this card's YAML licence "
                 "summarises them.", ""]
    lic_lines += [f"- `{i.config}`: {i.license if i.license != 'other' else (i.license_name or 'other')}"
                  + (f" ({i.license_link})" if i.license_link else "") for i in infos]
    body += lic_lines + [""]
    return "---\n" + front + "---\n\n" + "\n".join(body).rstrip("\n") + "\n"
