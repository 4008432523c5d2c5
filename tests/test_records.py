"""The source records are the one place a dataset's facts live: every registry is derived
from them, the results-schema file agrees with them, and a record registered at run time
shows up everywhere at once."""

from __future__ import annotations

import json

import pytest

from aims.converters import registry
from aims.converters.record import (
    CONNECTED_COMPONENTS,
    RGB8,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceRecord,
)
from aims.decoders import COMBINERS, DECODERS
from aims.modalities import COLUMN_DECODERS, MODALITY_STACKS
from aims.protocols import get_protocol
from aims.results import headline_lists, results_schema, schema_file
from aims.schema import CONFIG_SCHEMAS
from aims.scoring import HEADLINE_MODALITIES

BUILTIN_CONFIGS = ["depth", "hha", "nir", "polarization", "polarization-zju", "thermal"]


def _extra_source(name: str = "extra_src", *, headline: bool = True) -> SourceRecord:
    config = ConfigRecord(
        name="sonar", description="Sonar returns.",
        columns=(RGB8, ColumnRecord("echo", "16-bit greyscale PNG (uint16)", "echo strength", "grey_unit", 1)),
        modalities=(ModalityRecord("sonar", ("echo",), "echo / 65535", label="Sonar"),
                    ModalityRecord("rgb-sonar", ("rgb", "echo"), "RGB + echo, shuffled", label="RGB-S",
                                   shuffle_seed=0)),
        simcmf_area_filter=50, headline=headline)
    return SourceRecord(name=name, title="Sonar", homepage="", license="other", citation="",
                        classes=("background", "fish"), label_encoding="class ids",
                        instances=InstanceSource(CONNECTED_COMPONENTS, 8), configs=(config,),
                        converter="nowhere")


def test_builtin_registry_is_one_line_per_source():
    assert len(registry.BUILTIN_SOURCES) == len(set(registry.BUILTIN_SOURCES)) == 5
    assert list(registry.SOURCE_CONFIGS) == ["nyuv2", "ivrg_nir", "rgbp_glass", "zju_rgbp", "thermal_glass"]
    assert sorted(registry.known_configs()) == BUILTIN_CONFIGS
    assert registry.group_by_source(["all"]) == {n: list(c) for n, c in registry.SOURCE_CONFIGS.items()}


def test_every_derived_view_comes_from_the_records():
    records = registry.config_records()
    assert list(CONFIG_SCHEMAS) == list(records)
    for name, record in records.items():
        assert CONFIG_SCHEMAS[name].units_text() == record.column_texts()  # one text per column
        for column in record.columns:
            assert column.decoder in DECODERS and COLUMN_DECODERS[column.name].channels == column.channels
        for m in record.modalities:
            assert MODALITY_STACKS[m.name].columns == m.columns
            assert m.combine is None or m.combine in COMBINERS
    assert dict(HEADLINE_MODALITIES) == {c: c for c in ("depth", "hha", "nir", "polarization", "thermal")}
    assert get_protocol("simcmf").rules["area_filters"] == {
        "depth": 0, "hha": 0, "nir": 1000, "polarization": 100, "polarization-zju": 10000, "thermal": 0}


def test_records_round_trip_through_json():
    for record in registry.config_records().values():
        again = ConfigRecord.from_dict(json.loads(json.dumps(record.to_dict())))
        assert again == record


def test_results_schema_file_lists_the_headline_configs():
    """The published file contract names exactly the built-in headline configs; the schema
    used for validation is derived from the records, so the two cannot disagree."""
    derived = list(registry.headline_configs())
    assert headline_lists(schema_file()) == {"modality_enum": [*derived, None], "required": derived,
                                             "properties": derived}
    assert results_schema() == schema_file()


def test_a_registered_source_appears_everywhere():
    from aims.leaderboard.entries import DISPLAY_LABELS, HEADLINE_COLUMNS, RGB_X_COLUMNS

    registry.register_source_record(_extra_source())
    try:
        assert registry.SOURCE_CONFIGS["extra_src"] == ("sonar",)
        assert "sonar" in CONFIG_SCHEMAS and CONFIG_SCHEMAS["sonar"].column_names[3] == "echo"
        assert MODALITY_STACKS["rgb-sonar"].channels == 4 and "echo" in COLUMN_DECODERS
        assert HEADLINE_MODALITIES["sonar"] == "sonar" and HEADLINE_COLUMNS[-1] == "sonar"
        assert RGB_X_COLUMNS[-1] == "rgb-sonar" and DISPLAY_LABELS["rgb-sonar"] == "RGB-S"
        assert get_protocol("simcmf").rules["area_filters"]["sonar"] == 50
        assert "sonar" in headline_lists(results_schema())["required"]
        with pytest.raises(ValueError, match="already fed by source"):
            registry.register_source_record(_extra_source("other_src"))
    finally:
        registry.unregister_source("extra_src")
    assert "sonar" not in CONFIG_SCHEMAS and "rgb-sonar" not in MODALITY_STACKS
    assert "sonar" not in headline_lists(results_schema())["required"]


def test_records_refuse_inconsistent_declarations():
    with pytest.raises(ValueError, match="modality of the same name"):
        ConfigRecord("x", "", (RGB8, ColumnRecord("y", "e", "u", "grey_unit", 1)),
                     (ModalityRecord("other", ("y",), ""),))
    with pytest.raises(ValueError, match="does not store"):
        ConfigRecord("x", "", (RGB8, ColumnRecord("y", "e", "u", "grey_unit", 1)),
                     (ModalityRecord("x", ("z",), ""),))
    with pytest.raises(ValueError, match="connectivity"):
        InstanceSource(CONNECTED_COMPONENTS)
    with pytest.raises(ValueError, match="kind"):
        InstanceSource("polygons")
