"""Writer, card on disk and loader, against the real `datasets` library, offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard

import aims
from aims.errors import AimsError
from aims.imageio import encode_png
from aims.schema import config_features
from aims.writer import CONFIG_INFO_FILE, ConfigInfo, load_config_infos, write_config

CATS = ["wall", "floor", "chair"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache", raising=False)


def make_row(i: int, modality: str, seed: int = 0, h: int = 24, w: int = 32) -> dict:
    """A synthetic row: random RGB and modality image, 1-3 rectangular instances."""
    rng = np.random.default_rng(seed * 1000 + i)
    inst = np.zeros((h, w), np.uint16)
    ids, cats, areas, bboxes, points, simcmf = [], [], [], [], [], []
    for k in range(1, 1 + int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
        bh, bw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        inst[inst == 0] = 0
        region = inst[y0:y0 + bh, x0:x0 + bw]
        region[region == 0] = k
        ys, xs = np.nonzero(inst == k)
        if len(ys) == 0:
            continue
        ids.append(k)
        cats.append(CATS[int(rng.integers(0, len(CATS)))])
        areas.append(int(len(ys)))
        bboxes.append([int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)])
        points.append([int(xs[len(xs) // 2]), int(ys[len(ys) // 2])])
        simcmf.append([-1, -1] if k == 3 else [int(xs[0] * 1024 // w), int(ys[0] * 1024 // h)])
    if modality == "depth":
        mod = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        mod[0, 0], mod[0, 1] = 0, 65535
    else:
        mod = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {
        "image_id": f"img{i:04d}",
        "source": "synthetic",
        "rgb": {"bytes": encode_png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "path": None},
        modality: {"bytes": encode_png(mod), "path": None},
        "instances": {"bytes": encode_png(inst), "path": None},
        "instance_ids": ids,
        "category": cats,
        "area": areas,
        "bbox": bboxes,
        "point": points,
        "point_simcmf": simcmf,
    }


def make_rows(modality: str, seed: int = 0, n: dict | None = None) -> dict[str, list[dict]]:
    n = n or {"train": 5, "validation": 2, "test": 3}
    out, start = {}, 0
    for split, k in n.items():
        out[split] = [make_row(start + j, modality, seed) for j in range(k)]
        start += k
    return out


def info_for(config: str) -> ConfigInfo:
    return ConfigInfo(
        config=config,
        description=f"Synthetic {config} test config.",
        source="Synthetic",
        homepage="https://example.org/synthetic",
        license="cc-by-4.0",
        citation="@misc{synthetic, title={Synthetic}}",
        category_names=CATS,
        ignore_labels=[0, 255],
        notes=["made for tests"],
    )


def write(tmp: Path, config: str, seed: int = 0, **kw) -> Path:
    rows = make_rows(config, seed)
    return write_config(tmp, info_for(config), rows, config_features(config, CATS), **kw)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def assert_same(ds_split, rows: list[dict], modality: str) -> None:
    assert len(ds_split) == len(rows)
    for ex, row in zip(ds_split, rows):
        assert ex["image_id"] == row["image_id"]
        assert ex["source"] == row["source"]
        for col in ("rgb", modality, "instances"):
            got = np.array(ex[col])
            want = aims.imageio.decode_png(row[col]["bytes"])
            assert got.dtype == want.dtype, (col, got.dtype, want.dtype)
            np.testing.assert_array_equal(got, want)
        assert ex["instance_ids"] == row["instance_ids"]
        names = ds_split.features["category"].feature.names
        assert [names[c] for c in ex["category"]] == row["category"]
        assert ex["area"] == row["area"]
        assert ex["bbox"] == row["bbox"]
        assert ex["point"] == row["point"]
        assert ex["point_simcmf"] == row["point_simcmf"]


def test_depth_roundtrip_through_datasets(tmp_path):
    out = tmp_path / "ds"
    folder = write(out, "depth")
    assert folder == out / "depth"
    assert sorted(p.name for p in folder.iterdir()) == [
        CONFIG_INFO_FILE,
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    ds = datasets.load_dataset(str(out), "depth")
    assert set(ds) == {"train", "validation", "test"}
    rows = make_rows("depth")
    for split in ds:
        assert_same(ds[split], rows[split], "depth")
    depth = ds["train"][0]["depth"]
    assert depth.mode in ("I;16", "I")
    arr = np.array(depth)
    assert arr[0, 0] == 0 and arr[0, 1] == 65535  # full uint16 range survives
    assert ds["train"].features["category"].feature.names == CATS
    # numpy format also yields the exact values
    np.testing.assert_array_equal(
        ds["train"].with_format("numpy")[0]["depth"], aims.imageio.decode_png(rows["train"][0]["depth"]["bytes"])
    )


def test_config_info_counts_and_stats(tmp_path):
    out = tmp_path / "ds"
    write(out, "depth")
    info = ConfigInfo.load(out / "depth")
    rows = make_rows("depth")
    for split, rs in rows.items():
        assert info.counts[split] == {"images": len(rs), "instances": sum(len(r["instance_ids"]) for r in rs)}
    depth = np.concatenate([aims.imageio.decode_png(r["depth"]["bytes"]).ravel() for r in rows["train"]]) / 1000.0
    assert info.channel_stats["depth"]["mean"] == pytest.approx([depth.mean()], rel=1e-6)
    assert info.channel_stats["depth"]["std"] == pytest.approx([depth.std()], rel=1e-6)
    assert len(info.channel_stats["rgb"]["mean"]) == 3
    assert info.columns and "millimetres" in info.columns["depth"]
    assert info.toolkit_version == aims.__version__


def test_deterministic_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "depth")
    write(a, "hha")
    write(b, "depth")
    write(b, "hha")
    da, db = digest_tree(a), digest_tree(b)
    assert da == db
    assert "README.md" in da and "depth/train-00000-of-00001.parquet" in da
    # rewriting in place gives the same bytes again
    write(a, "depth")
    assert digest_tree(a) == da


def test_two_configs_in_readme_and_both_load(tmp_path):
    out = tmp_path / "ds"
    write(out, "depth")
    write(out, "hha", seed=1)
    card = DatasetCard.load(out / "README.md")
    configs = card.data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["depth", "hha"]
    assert not any(c.get("default") for c in configs)
    assert {"split": "validation", "path": "hha/validation-*.parquet"} in configs[1]["data_files"]
    assert [i.config for i in load_config_infos(out)] == ["depth", "hha"]
    d = datasets.load_dataset(str(out), "depth", split="test")
    h = datasets.load_dataset(str(out), "hha", split="train")
    assert_same(d, make_rows("depth")["test"], "depth")
    assert_same(h, make_rows("hha", seed=1)["train"], "hha")
    assert np.array(h[0]["hha"]).shape[2] == 3


def test_rewrite_replaces_and_loads_new_values(tmp_path):
    # Plain `datasets.load_dataset(folder, config)` keys its cache on the README patterns
    # only and would serve the old rows after a rewrite; aims.load_dataset must not.
    out = tmp_path / "ds"
    write(out, "depth", seed=0)
    first = aims.load_dataset("depth", "train", data_dir=out)
    assert_same(first, make_rows("depth", 0)["train"], "depth")
    write(out, "depth", seed=7)
    second = aims.load_dataset("depth", "train", data_dir=out)
    assert_same(second, make_rows("depth", 7)["train"], "depth")
    fresh = datasets.load_dataset(str(out), "depth", split="train", download_mode="force_redownload")
    assert_same(fresh, make_rows("depth", 7)["train"], "depth")


def test_failed_write_keeps_previous_config(tmp_path):
    out = tmp_path / "ds"
    write(out, "depth")
    before = digest_tree(out)

    def broken():
        for j, row in enumerate(make_rows("depth", seed=3)["train"]):
            if j == 3:
                raise RuntimeError("source went away")
            yield row

    rows = make_rows("depth", seed=3)
    rows["train"] = broken()
    with pytest.raises(RuntimeError, match="source went away"):
        write_config(out, info_for("depth"), rows, config_features("depth", CATS))
    assert digest_tree(out) == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".tmp") or p.name.startswith(".old")) == []
    assert_same(datasets.load_dataset(str(out), "depth", split="train"), make_rows("depth")["train"], "depth")


def test_failed_first_write_leaves_nothing(tmp_path):
    out = tmp_path / "ds"

    def broken():
        yield make_row(0, "depth")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_config(out, info_for("depth"), {"train": broken()}, config_features("depth", CATS))
    assert list(out.iterdir()) == []


def test_stale_temp_from_killed_process_is_cleaned(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    stale = out / ".tmp-depth-999999999-deadbeef"
    stale.mkdir()
    (stale / "train-00000.parquet.part").write_bytes(b"half")
    write(out, "depth")
    assert not stale.exists()


def test_sharding_by_size(tmp_path):
    out = tmp_path / "ds"
    rows = make_rows("depth", n={"train": 12, "test": 2})
    write_config(out, info_for("depth"), rows, config_features("depth", CATS), max_shard_bytes=6000)
    shards = sorted(p.name for p in (out / "depth").glob("train-*.parquet"))
    assert len(shards) > 1
    assert all(name.endswith(f"-of-{len(shards):05d}.parquet") for name in shards)
    ds = datasets.load_dataset(str(out), "depth")
    assert_same(ds["train"], rows["train"], "depth")
    assert set(ds) == {"train", "test"}


def test_ndarray_cells_are_encoded(tmp_path):
    out = tmp_path / "ds"
    rows = make_rows("depth", n={"train": 2})
    arrays = [aims.imageio.decode_png(r["depth"]["bytes"]) for r in rows["train"]]
    for r, a in zip(rows["train"], arrays):
        r["depth"] = a
    write_config(out, info_for("depth"), rows, config_features("depth", CATS))
    ds = datasets.load_dataset(str(out), "depth", split="train")
    for ex, a in zip(ds, arrays):
        np.testing.assert_array_equal(np.array(ex["depth"]), a)


def test_not_writable_dir_is_aims_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is expected")
    for target in (blocker, blocker / "sub"):
        with pytest.raises(AimsError) as err:
            write(target, "depth")
        assert str(target) in str(err.value) and "writable" in str(err.value)


def test_empty_split_is_aims_error(tmp_path):
    out = tmp_path / "ds"
    write(out, "depth")
    before = digest_tree(out)
    rows = make_rows("depth")
    rows["validation"] = []
    with pytest.raises(AimsError, match="'validation' has no rows"):
        write_config(out, info_for("depth"), rows, config_features("depth", CATS))
    assert digest_tree(out) == before
    with pytest.raises(AimsError):
        write_config(out, info_for("depth"), {}, config_features("depth", CATS))


def test_bad_rows_are_bugs_not_user_errors(tmp_path):
    rows = make_rows("depth", n={"train": 2})
    rows["train"][1]["area"] = rows["train"][1]["area"] + [5]
    with pytest.raises(ValueError, match="not aligned"):
        write_config(tmp_path / "a", info_for("depth"), rows, config_features("depth", CATS))
    rows = make_rows("depth", n={"train": 2})
    del rows["train"][0]["point"]
    with pytest.raises(ValueError, match="missing"):
        write_config(tmp_path / "b", info_for("depth"), rows, config_features("depth", CATS))
    rows = make_rows("depth", n={"train": 2})
    rows["train"][1]["image_id"] = rows["train"][0]["image_id"]
    with pytest.raises(ValueError, match="duplicate"):
        write_config(tmp_path / "c", info_for("depth"), rows, config_features("depth", CATS))


def test_parquet_carries_hf_features(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    write(out, "depth")
    meta = pq.read_schema(out / "depth" / "train-00000-of-00001.parquet").metadata
    feats = datasets.Features.from_dict(json.loads(meta[b"huggingface"])["info"]["features"])
    assert feats == config_features("depth", CATS)


# ---------------------------------------------------------------- aims.load_dataset


def test_aims_load_dataset_uses_aims_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIMS_HOME", str(tmp_path / "home"))
    with pytest.raises(AimsError) as err:
        aims.load_dataset("depth")
    msg = str(err.value)
    assert str(tmp_path / "home" / "dataset") in msg and "aims prepare --modality depth" in msg
    write(tmp_path / "home" / "dataset", "depth")
    ds = aims.load_dataset("depth")
    assert list(ds) == ["train", "validation", "test"]
    test = aims.load_dataset("depth", "test")
    assert_same(test, make_rows("depth")["test"], "depth")
    x = aims.modality_tensor(test[0], "depth")
    assert x.dtype == np.float32 and x.shape == (1, 24, 32)
    with pytest.raises(AimsError, match="hha.*Prepared configs there: depth"):
        aims.load_dataset("hha")
    with pytest.raises(AimsError, match="no split 'val'"):
        aims.load_dataset("depth", "val")


def test_aims_load_dataset_data_dir(tmp_path):
    write(tmp_path / "elsewhere", "hha")
    ds = aims.load_dataset("hha", split="validation", data_dir=tmp_path / "elsewhere")
    assert_same(ds, make_rows("hha")["validation"], "hha")
    with pytest.raises(AimsError, match="--out"):
        aims.load_dataset("depth", data_dir=tmp_path / "elsewhere")


# ---------------------------------------------------------------- ConfigWriter (prepare's API)


def test_config_writer_interleaved_splits_two_configs(tmp_path):
    """`aims prepare` feeds several configs row by row, splits interleaved in source order."""
    from aims.writer import ConfigWriter

    out = tmp_path / "ds"
    order = ["train", "test", "train", "validation", "train", "test"]
    rows = {"depth": [make_row(i, "depth") for i in range(len(order))],
            "hha": [make_row(i, "hha") for i in range(len(order))]}
    writers = {c: ConfigWriter(out, c, config_features(c, CATS)) for c in ("depth", "hha")}
    for i, split in enumerate(order):
        for c, w in writers.items():
            w.add(split, rows[c][i], num_instances=len(rows[c][i]["instance_ids"]))
    given = {"depth": {"mean": [1.5], "std": [0.25]}}
    counts = writers["depth"].commit(dataclasses_replace(info_for("depth"), channel_stats=given))
    writers["hha"].commit(info_for("hha"))
    assert list(counts) == ["train", "validation", "test"]
    assert counts["train"]["images"] == 3
    assert ConfigInfo.load(out / "depth").channel_stats == given  # caller's stats are kept
    ds = datasets.load_dataset(str(out), "depth")
    want = [r for r, s in zip(rows["depth"], order) if s == "test"]
    assert_same(ds["test"], want, "depth")
    assert [c["config_name"] for c in DatasetCard.load(out / "README.md").data.to_dict()["configs"]] == [
        "depth", "hha"]


def dataclasses_replace(info, **kw):
    import dataclasses

    return dataclasses.replace(info, **kw)


def test_config_writer_abort_and_context_manager(tmp_path):
    from aims.writer import ConfigWriter

    out = tmp_path / "ds"
    write(out, "depth")
    before = digest_tree(out)
    with pytest.raises(RuntimeError):
        with ConfigWriter(out, "depth", config_features("depth", CATS)) as w:
            w.add("train", make_row(0, "depth", seed=9))
            raise RuntimeError("converter crashed")
    assert digest_tree(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    w = ConfigWriter(out, "depth", config_features("depth", CATS))
    with pytest.raises(AimsError, match="no rows"):
        w.commit(info_for("depth"))
    assert digest_tree(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_config_writer_computes_stats_when_asked(tmp_path):
    from aims.writer import ConfigWriter

    out = tmp_path / "ds"
    rows = make_rows("hha", n={"train": 3, "test": 1})
    w = ConfigWriter(out, "hha", config_features("hha", CATS), compute_stats=True)
    for split, rs in rows.items():
        for r in rs:
            w.add(split, r)
    w.commit(info_for("hha"))
    stats = ConfigInfo.load(out / "hha").channel_stats
    hha = np.stack([aims.imageio.decode_png(r["hha"]["bytes"]) for r in rows["train"]]).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(stats["hha"]["mean"], hha.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["hha"]["std"], hha.std(axis=0), rtol=1e-6)
    assert set(stats) == {"rgb", "hha"}


def test_schema_columns_and_adding_a_config(tmp_path):
    from aims.converters import registry
    from aims.converters.record import (
        CONNECTED_COMPONENTS, RGB8, ColumnRecord, ConfigRecord, InstanceSource, ModalityRecord, SourceRecord)
    from aims.schema import CONFIG_SCHEMAS

    assert list(config_features("depth", CATS)) == [
        "image_id", "source", "rgb", "depth", "instances", "instance_ids", "category", "area",
        "bbox", "point", "point_simcmf"]
    assert CONFIG_SCHEMAS["hha"].column_names[3] == "hha"
    with pytest.raises(KeyError, match="known configs"):
        config_features("sonar", CATS)
    # a config is added by a record; the schema follows it
    nir_test = ConfigRecord("nir-test", "NIR test", (RGB8, ColumnRecord("nir", "16-bit PNG", "raw DN", "grey_unit", 1)),
                            (ModalityRecord("nir-test", ("nir",), "raw NIR"),))
    registry.register_source_record(SourceRecord(
        name="nir_test", title="NIR test", homepage="", license="other", citation="", classes=("background", "thing"),
        label_encoding="", instances=InstanceSource(CONNECTED_COMPONENTS, 8), configs=(nir_test,), converter=""))
    try:
        feats = config_features("nir-test", CATS)
        rows = {"train": [], "test": []}
        for split, k in (("train", 2), ("test", 1)):
            for i in range(k):
                r = make_row(i + (10 if split == "test" else 0), "depth")
                r["nir"] = r.pop("depth")
                rows[split].append(r)
        write_config(out := tmp_path / "ds", ConfigInfo(config="nir-test", category_names=CATS), rows, feats)
        ds = datasets.load_dataset(str(out), "nir-test", split="test")
        assert np.array(ds[0]["nir"]).dtype == np.uint16
        assert ConfigInfo.load(out / "nir-test").columns["nir"] == "16-bit PNG; raw DN"
    finally:
        registry.unregister_source("nir_test")
    assert "nir-test" not in CONFIG_SCHEMAS


# ---------------------------------------------------------------- only what AIMS wrote is replaced


def test_config_json_carries_the_format_marker(tmp_path):
    from aims.writer import CONFIG_FORMAT

    out = tmp_path / "ds"
    write(out, "depth")
    data = json.loads((out / "depth" / CONFIG_INFO_FILE).read_text())
    assert data["format"] == CONFIG_FORMAT
    from aims.card import CARD_MARKER, is_aims_card

    card = (out / "README.md").read_text()
    assert CARD_MARKER in card.splitlines() and is_aims_card(card)


def test_configs_written_before_the_marker_are_still_replaced(tmp_path):
    """A dataset prepared by an earlier toolkit (no "format" key, no marker line in the
    card) must not block a re-prepare."""
    out = tmp_path / "ds"
    write(out, "depth")
    info_path = out / "depth" / CONFIG_INFO_FILE
    data = json.loads(info_path.read_text())
    del data["format"]
    info_path.write_text(json.dumps(data))
    card = out / "README.md"
    card.write_text("\n".join(line for line in card.read_text().splitlines() if "aims-card" not in line) + "\n")
    write(out, "depth", seed=7)
    assert_same(datasets.load_dataset(str(out), "depth", split="test", download_mode="force_redownload"),
                make_rows("depth", 7)["test"], "depth")


@pytest.mark.parametrize("victim", ["foreign-json", "extra-file", "no-json", "readme"])
def test_writer_refuses_to_replace_what_it_did_not_write(tmp_path, victim):
    out = tmp_path / "ds"
    if victim == "readme":
        out.mkdir()
        (out / "README.md").write_text("# my project\n")
    else:
        write(out, "depth") if victim == "extra-file" else (out / "depth").mkdir(parents=True)
        if victim == "foreign-json":
            (out / "depth" / CONFIG_INFO_FILE).write_text('{"config": "depth", "mine": true}')
        (out / "depth" / "notes.txt").write_text("my notes")
    before = digest_tree(out)
    with pytest.raises(AimsError) as err:
        write(out, "depth", seed=3)
    named = out / ("README.md" if victim == "readme" else "depth")
    assert str(named) in str(err.value) and "move" in str(err.value)
    assert digest_tree(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- a broken config elsewhere


def _break(folder: Path, how: str) -> None:
    path = folder / CONFIG_INFO_FILE
    if how == "not-json":
        path.write_text('{"config": "hha", "counts": ')
    elif how == "nested":
        path.write_text("[" * 200_000 + "]" * 200_000)
    elif how == "huge":  # sparse: 11 MB long, nothing on disk
        with open(path, "r+b") as fh:
            fh.truncate(11 * 2**20)
    elif how == "wrong-types":
        data = json.loads(path.read_text())
        data["counts"] = {"train": {"images": "many"}}
        path.write_text(json.dumps(data))
    elif how == "other-name":
        data = json.loads(path.read_text())
        data["config"] = "depth"
        path.write_text(json.dumps(data))
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "dev-zero-link":
        path.unlink()
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("how", ["not-json", "nested", "huge", "wrong-types", "other-name", "fifo",
                                 "dev-zero-link"])
def test_broken_config_elsewhere_is_left_out_with_a_warning(tmp_path, how, caplog):
    out = tmp_path / "ds"
    write(out, "hha")
    _break(out / "hha", how)
    untouched = sorted(p.name for p in (out / "hha").iterdir())
    with caplog.at_level("WARNING", logger="aims.writer"):
        write(out, "depth")
    card = (out / "README.md").read_text()
    configs = DatasetCard.load(out / "README.md").data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["depth"]
    assert "Folders not included" in card and "- hha:" in card
    assert any("hha" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in (out / "hha").iterdir()) == untouched
    assert len(datasets.load_dataset(str(out), "depth", split="test")) == 3
    # and a later write still works (the broken folder never blocks the others)
    write(out, "depth", seed=2)
    assert_same(aims.load_dataset("depth", "test", data_dir=out), make_rows("depth", 2)["test"], "depth")


def test_broken_config_elsewhere_under_the_cli(nyuv2_miniature, tmp_path):
    """`aims prepare` succeeds, says which folder it left out, and writes the card."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("aims")
    if not exe.exists():
        pytest.skip("the aims console script is not installed")
    out = tmp_path / "ds"
    write(out, "hha")
    _break(out / "hha", "not-json")
    result = subprocess.run([str(exe), "prepare", "-m", "depth", "--source", str(nyuv2_miniature),
                             "--out", str(out), "--workers", "1", "--no-progress"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert str(out / "hha") in output and "not valid JSON" in output
    assert "Folders not included" in (out / "README.md").read_text()
    assert len(datasets.load_dataset(str(out), "depth", split="test")) == 3


# ---------------------------------------------------------------- a kill at every step of a commit


def _folder_rows(folder: Path, split: str) -> list[str]:
    import pyarrow.parquet as pq

    return [i for p in sorted(folder.glob(f"{split}-*.parquet")) for i in pq.read_table(p, columns=["image_id"])
            .column("image_id").to_pylist()]


def _assert_every_complete_config_loads(out: Path) -> None:
    """What a SIGKILL at this instant leaves: every config folder on disk loads, by name,
    with plain `datasets` and with aims.load_dataset, and gives that folder's rows."""
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        want = _folder_rows(folder, "test")
        plain = datasets.load_dataset(str(out), folder.name, split="test", download_mode="force_redownload")
        assert plain["image_id"] == want, folder.name
        assert aims.load_dataset(folder.name, "test", data_dir=out)["image_id"] == want


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("scenario", ["new-config", "replace"])
def test_a_kill_at_any_step_leaves_loadable_configs(tmp_path, monkeypatch, exchange, scenario):
    import aims.writer
    from aims.writer import ConfigWriter

    monkeypatch.setattr(aims.writer, "USE_RENAME_EXCHANGE", exchange)
    out = tmp_path / "ds"
    write(out, "depth")
    config = "hha" if scenario == "new-config" else "depth"
    rows = make_rows(config, seed=5)
    old_test = _folder_rows(out / config, "test") if scenario == "replace" else None
    writer = ConfigWriter(out, config, config_features(config, CATS))
    for split, rs in rows.items():
        for r in rs:
            writer.add(split, r)
    steps = []
    for step in writer.commit_steps(info_for(config)):
        steps.append(step)
        if (out / config).is_dir():
            _assert_every_complete_config_loads(out)
            if step not in ("swap", "cleanup"):
                assert _folder_rows(out / config, "test") == old_test
        else:
            # only a first write before its rename, or the two-rename fallback between them
            assert scenario == "new-config" and step in ("shards", "card") or step == "set-aside"
            _assert_every_complete_config_loads(out)  # the others are unaffected
    assert steps[-2:] == ["swap", "cleanup"] and ("set-aside" in steps) == (scenario == "replace" and not exchange)
    assert _folder_rows(out / config, "test") == [r["image_id"] for r in rows["test"]]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_kill_between_the_two_renames_is_repaired_by_the_next_write(tmp_path):
    """The two-rename fallback killed after setting the old folder aside: the next write
    puts it back (and lists it) before doing anything else."""
    out = tmp_path / "ds"
    write(out, "depth")
    write(out, "hha")
    dead = 999_999_999
    os.rename(out / "depth", out / f".old-depth-{dead}-deadbeef")
    (out / f".README.md.tmp-{dead}-0badf00d").write_text("half a card")
    write(out, "hha", seed=1)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert_same(datasets.load_dataset(str(out), "depth", split="test", download_mode="force_redownload"),
                make_rows("depth")["test"], "depth")


def test_aims_load_dataset_does_not_need_the_card(tmp_path):
    out = tmp_path / "ds"
    write(out, "depth")
    (out / "README.md").unlink()
    assert_same(aims.load_dataset("depth", "test", data_dir=out), make_rows("depth")["test"], "depth")
