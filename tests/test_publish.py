"""`aims publish`: the upload plan is exactly the loadable dataset, and the card parses."""

from __future__ import annotations

import shutil

import pytest
from huggingface_hub import DatasetCard

import aims
from aims.errors import AimsError
from aims.publish import plan_upload


def test_plan_lists_card_parquet_and_config_info(nyuv2_prepared):
    plan = plan_upload(nyuv2_prepared, "my-lab/aims")
    paths = [p for p, _ in plan.files]
    # the card first, then each config's description and one shard per split, in order
    assert paths == ["README.md"] + [f"{config}/{name}" for config in ("depth", "hha")
                                     for name in ("aims_config.json", "test-00000-of-00001.parquet",
                                                  "train-00000-of-00001.parquet")]
    assert all(size == (nyuv2_prepared / path).stat().st_size for path, size in plan.files)
    assert plan.configs == ("depth", "hha")
    on_disk = sum(f.stat().st_size for f in nyuv2_prepared.rglob("*") if f.is_file())
    assert plan.total_bytes == on_disk
    text = "\n".join(plan.lines())
    assert "my-lab/aims" in text and "depth/test-00000-of-00001.parquet" in text


def test_card_is_valid_for_the_hub(nyuv2_prepared):
    card = DatasetCard.load(nyuv2_prepared / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "unknown"
    assert [c["config_name"] for c in data["configs"]] == ["depth", "hha"]
    assert "image-segmentation" in data["task_categories"]
    for needle in ("Citation", "Channel statistics", "8-connectivity", "point_simcmf",
                   f"(version {aims.__version__}).", f"toolkit version {aims.__version__}"):
        assert needle in card.text, needle


def test_temporary_leftovers_are_never_published(nyuv2_prepared, tmp_path):
    copy = shutil.copytree(nyuv2_prepared, tmp_path / "ds")
    (copy / ".tmp-depth-1-abc").mkdir()
    (copy / ".tmp-depth-1-abc" / "train-00000-of-00001.parquet").write_bytes(b"half")
    paths = [p for p, _ in plan_upload(copy, "org/aims").files]
    assert not any(".tmp" in p for p in paths)


def test_stale_card_and_bad_repo_id_are_refused(nyuv2_prepared, tmp_path):
    copy = shutil.copytree(nyuv2_prepared, tmp_path / "ds")
    shutil.rmtree(copy / "hha")
    with pytest.raises(AimsError, match="stale"):
        plan_upload(copy, "org/aims")
    with pytest.raises(AimsError, match="ORG/NAME"):
        plan_upload(nyuv2_prepared, "aims")
    with pytest.raises(AimsError, match="no prepared dataset"):
        plan_upload(tmp_path / "empty", "org/aims")


def test_publish_prints_the_exact_load_line_for_its_repo_id(nyuv2_prepared, tmp_path):
    """`aims publish --dry-run` (offline) names the Hub id from its own --repo-id."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIMS_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "aims", "publish", "--repo-id", "my-lab/aims-x", "--data-dir",
                             str(nyuv2_prepared), "--dry-run"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    for config in ("depth", "hha"):
        assert f'load_dataset("my-lab/aims-x", "{config}")' in result.stdout
    assert "from datasets import load_dataset" in result.stdout
    plan = plan_upload(nyuv2_prepared, "org/name")
    assert plan.load_lines(uploaded=True)[-1] == '  load_dataset("org/name", "hha")'


def test_publish_without_data_dir_takes_the_remembered_dataset(nyuv2_prepared, tmp_path, monkeypatch):
    from aims.dataset_pointer import remember_dataset
    from aims.loader import dataset_root

    monkeypatch.setenv("AIMS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIMS_DATASET", raising=False)
    remember_dataset(nyuv2_prepared)
    assert dataset_root() == nyuv2_prepared.resolve()
    assert plan_upload(dataset_root(), "org/aims").configs == ("depth", "hha")
