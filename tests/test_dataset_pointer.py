"""Where ``aims.load_dataset(config)`` looks: ``data_dir``, ``$AIMS_DATASET``, the folder the
last ``aims prepare`` wrote (remembered in ``$AIMS_HOME/last_dataset.json``), then
``$AIMS_HOME/dataset``; ``AimsDataset`` resolves the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aims.dataset_pointer import POINTER_FILE, remember_dataset, remembered_dataset
from aims.errors import AimsError
from aims.loader import dataset_root, load_dataset


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AIMS_HOME", str(home))
    monkeypatch.delenv("AIMS_DATASET", raising=False)
    return home


def test_prepare_with_out_is_found_by_config_name_in_a_fresh_process(nyuv2_miniature, tmp_path):
    home, out = tmp_path / "home", tmp_path / "somewhere" / "aims-data"
    env = {**os.environ, "AIMS_HOME": str(home)}
    env.pop("AIMS_DATASET", None)
    prepared = subprocess.run([sys.executable, "-m", "aims", "prepare", "-m", "depth", "--source",
                               str(nyuv2_miniature), "--out", str(out), "--no-progress", "--workers", "1"],
                              capture_output=True, text=True, env=env, timeout=600)
    assert prepared.returncode == 0, prepared.stderr
    assert 'aims.load_dataset("depth")' in prepared.stdout
    assert json.loads((home / POINTER_FILE).read_text()) == {"dataset_dir": str(out.resolve())}
    code = "import aims; ds = aims.load_dataset('depth', 'test'); print(len(ds), aims.dataset_root())"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    count, root = loaded.stdout.split()
    assert int(count) == 3 and Path(root) == out.resolve()


def test_resolution_order(nyuv2_prepared, home, tmp_path, monkeypatch):
    default = home / "dataset"
    # nothing remembered: the default
    assert dataset_root() == default and dataset_root(config="depth") == default
    # remembered: the last prepared folder …
    remember_dataset(nyuv2_prepared)
    assert remembered_dataset() == (nyuv2_prepared.resolve(), "")
    assert dataset_root(config="depth") == nyuv2_prepared.resolve()
    assert len(load_dataset("depth", "test")) == 3
    # … unless it lacks the config and the default has it
    shutil.copytree(nyuv2_prepared, default)
    shutil.rmtree(default / "hha")
    assert dataset_root(config="thermal") == default  # nobody has it: the default, for the message
    only_hha = tmp_path / "only_hha"
    shutil.copytree(nyuv2_prepared, only_hha)
    shutil.rmtree(only_hha / "depth")
    remember_dataset(only_hha)
    assert dataset_root(config="depth") == default and dataset_root(config="hha") == only_hha.resolve()
    # $AIMS_DATASET wins over both, and data_dir over everything
    monkeypatch.setenv("AIMS_DATASET", str(nyuv2_prepared))
    assert dataset_root(config="hha") == nyuv2_prepared
    assert dataset_root(tmp_path / "given", config="hha") == tmp_path / "given"


def test_not_prepared_names_every_folder_searched(nyuv2_prepared, home):
    remember_dataset(nyuv2_prepared)
    with pytest.raises(AimsError) as err:
        load_dataset("thermal")
    message = str(err.value)
    assert str(nyuv2_prepared.resolve() / "thermal") in message and str(home / "dataset" / "thermal") in message
    assert "AIMS_DATASET" in message and "aims prepare --modality thermal" in message


def test_aims_dataset_resolves_like_load_dataset(nyuv2_prepared, home):
    pytest.importorskip("torch")
    from aims.torch import AimsDataset

    remember_dataset(nyuv2_prepared)
    data = AimsDataset("depth", "train")
    assert data.data_dir == nyuv2_prepared.resolve() and len(data) > 0
    assert data[0]["image"].shape[0] == 1
