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
                   "padded by one", "1024×1024", "len // 2", "| train | 9 | 20 |", "| `depth` | 0 | 1.25 | 0.5 |",
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
