"""Dataset card rendering: it must parse with huggingface_hub and list every config."""

from __future__ import annotations

import aims

from huggingface_hub import DatasetCard, DatasetCardData

from aims.card import render_card
from aims.writer import ConfigInfo


def _info(config: str, license: str = "cc-by-4.0", **kw) -> ConfigInfo:
    base = dict(
        config=config,
        description=f"{config} config",
        source=f"{config}-source",
        homepage=f"https://example.org/{config}",
        license=license,
        citation="@article{x, title={X}}",
        columns={config: "16-bit PNG; millimetres"},
        category_names=["a", "b"],
        ignore_labels=[255],
        counts={"test": {"images": 3, "instances": 7}, "train": {"images": 9, "instances": 20},
                "validation": {"images": 1, "instances": 2}},
        channel_stats={config: {"mean": [1.25], "std": [0.5]}},
        notes=["HHA computed by aims.hha from the filled depth"],
    )
    base.update(kw)
    return ConfigInfo(**base)


def test_card_parses_and_lists_configs():
    text = render_card([_info("depth"), _info("hha")])
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert isinstance(card.data, DatasetCardData)
    assert data["license"] == "cc-by-4.0"
    assert data["task_categories"] == ["image-segmentation"]
    assert data["pretty_name"].startswith("AIMS")
    assert [c["config_name"] for c in data["configs"]] == ["depth", "hha"]
    assert all("default" not in c for c in data["configs"])
    # splits in canonical order, globs per config folder
    assert data["configs"][0]["data_files"] == [
        {"split": "train", "path": "depth/train-*.parquet"},
        {"split": "validation", "path": "depth/validation-*.parquet"},
        {"split": "test", "path": "depth/test-*.parquet"},
    ]
    body = card.text
    for needle in ("depth-source", "@article{x", "8-connectivity", "255", "millimetres",
                   "padded by one", "1024×1024", "len // 2", "| train | 9 | 20 |", "| `depth` | 1 | 1.25 | 0.5 |",
                   "HHA computed by aims.hha", aims.__version__):
        assert needle in body, needle


def test_mixed_licences_become_other():
    data = DatasetCard(render_card([_info("depth"), _info("nir", license="mit")])).data.to_dict()
    assert data["license"] == "other"
    assert data["license_name"] and data["license_link"]


def test_single_custom_licence_keeps_its_name_and_link():
    info = _info("thermal", license="other", license_name="thermal-research-only",
                 license_link="https://example.org/terms")
    data = DatasetCard(render_card([info])).data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == (
        "other", "thermal-research-only", "https://example.org/terms")
    assert "thermal-research-only" in render_card([info])


def test_render_is_deterministic_and_handles_empty():
    infos = [_info("depth")]
    assert render_card(infos) == render_card(infos)
    assert DatasetCard(render_card([])).data.to_dict()["configs"] == []


def test_card_carries_the_marker_that_makes_it_replaceable():
    from aims.card import CARD_MARKER, is_aims_card

    text = render_card([_info("depth")])
    assert CARD_MARKER in text.splitlines()
    assert DatasetCard(text).data.to_dict()["configs"][0]["config_name"] == "depth"
    assert is_aims_card(text)
    # a card from before the marker line existed is still recognised as ours …
    legacy = "\n".join(line for line in text.splitlines() if line != CARD_MARKER)
    assert is_aims_card(legacy)
    # … but a user's README is not, even one that mentions AIMS
    for foreign in ("# My project\n", "---\nlicense: mit\n---\n# AIMS: Any Image Modality Segmentation\n",
                    "See <!-- aims card --> and AIMS: Any Image Modality Segmentation", ""):
        assert not is_aims_card(foreign), foreign


def test_broken_folders_become_a_warning_section():
    broken = [("hha", "aims_config.json is not valid JSON (line 1, column 3)"),
              ("x`<b>", "it describes config 'depth', but its folder is named 'x'")]
    text = render_card([_info("depth")], broken=broken)
    assert "## Folders not included" in text and "**Warning:**" in text
    assert "- hha: aims\\_config.json is not valid JSON" in text
    assert "<b>" not in text and "x\\`\\<b\\>" in text  # folder names are text, not markup
    assert [c["config_name"] for c in DatasetCard(text).data.to_dict()["configs"]] == ["depth"]
    assert "Folders not included" not in render_card([_info("depth")])


# --------------------------------------------------------------------------- citing, installing, scoring

def _section(body: str, title: str) -> str:
    start = body.index(f"## {title}\n")
    end = body.find("\n## ", start + 1)
    return body[start:end if end != -1 else None]


def test_card_cites_the_benchmark_paper_and_the_toolkit():
    import json
    from pathlib import Path

    paper = json.loads((Path(__file__).resolve().parents[1] / "leaderboard" / "paper_results.json").read_text())
    body = DatasetCard(render_card([_info("depth")])).text
    citation = _section(body, "Citation")
    assert paper["citation"] in citation and paper["paper_url"] in citation and paper["code_url"] in citation
    assert "@software{aims_toolkit" in citation and f"version = {{{aims.__version__}}}" in citation


def test_card_says_how_to_install_load_and_score():
    from aims.card import DISTRIBUTION
    from aims.protocols import get_protocol

    body = DatasetCard(render_card([_info("thermal")])).text
    start = _section(body, "Get started")
    assert f"pip install {DISTRIBUTION}" in start or f'pip install "{DISTRIBUTION} @ git+' in start
    assert 'aims.load_dataset("thermal")' in start and 'load_dataset("<org>/<name>", "thermal")' in start
    assert "AIMS_DATASET" in start and "How names resolve" in start  # the resolution order is written out
    score = _section(body, "How to score")
    assert "aims score PREDICTIONS --protocol aims" in score and "--config thermal" in score
    assert get_protocol("aims").version in score and "aims.score(" in score
    limitations = _section(body, "Limitations")
    assert limitations.count("\n- ") >= 4 and "connected components" in limitations


def test_card_yaml_has_hub_task_ids():
    data = DatasetCard(render_card([_info("depth")])).data.to_dict()
    assert data["task_categories"] == ["image-segmentation"]
    assert data["task_ids"] == ["instance-segmentation"]  # a sub-task the Hub lists under image-segmentation


def test_statistics_table_has_one_row_per_column_not_per_channel():
    """ZJU-RGBP: rgb, four 3-channel angle columns and two 9-channel Stokes inputs were 33 rows."""
    from aims.converters.registry import config_record

    record = config_record("polarization-zju")
    stats = {c.name: {"mean": [0.1 * i + 0.01 for i in range(c.channels)], "std": [0.2] * c.channels}
             for c in record.columns}
    stats.update({m.name: {"mean": [0.5 + i for i in range(m.channels)], "std": [1.5] * m.channels}
                  for m in record.modalities if m.channels})
    assert sum(len(v["mean"]) for v in stats.values()) == 33
    body = render_card([_info("polarization-zju", columns=record.column_texts(), channel_stats=stats)])
    table_start = body.index("| column | channels | mean | std |")
    rows = [line for line in body[table_start:].split("\n\n")[0].splitlines()[2:]]
    assert len(rows) == len(stats) == 7
    for name, st in stats.items():
        row = next(r for r in rows if r.startswith(f"| `{name}` |"))
        assert f"| {len(st['mean'])} |" in row
        assert all(f"{v:.4g}" in row for v in st["mean"])
