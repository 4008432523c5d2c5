"""Shared fixtures: where the third-party test data lives, and miniature sources.

Third-party files (real NYUv2 labels, the HHA oracle, RAR samples) are read in place from
``../shared/data`` beside the checkout — never copied into the repo. Tests that need them
skip with the reason when the folder is absent; ``AIMS_SHARED_DATA`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import tempfile

import pytest

# datasets/huggingface_hub read these at import time: no hub, and a private cache
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="aims-test-hf-"))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("AIMS_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared(*parts: str) -> Path:
    """Path of a shared data file, or skip the test saying what is missing."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"third-party test data {path} is absent (set AIMS_SHARED_DATA to the "
                    "folder holding shared/data)")
    return path


@pytest.fixture(autouse=True)
def _isolated_aims_home(tmp_path_factory, monkeypatch):
    """Every test gets its own AIMS_HOME and no hub access, like a fresh offline machine."""
    monkeypatch.setenv("AIMS_HOME", str(tmp_path_factory.mktemp("aims_home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def nyuv2_miniature(tmp_path_factory) -> Path:
    """A miniature NYUv2 release (the three real file kinds), written once per session."""
    from aims.converters.nyuv2 import CONVERTER

    return CONVERTER.write_miniature(tmp_path_factory.mktemp("nyuv2_source"))


@pytest.fixture(scope="session")
def nyuv2_prepared(nyuv2_miniature, tmp_path_factory) -> Path:
    """The miniature NYUv2 prepared into a dataset folder (depth + hha), once per session.
    Tests must not modify it; copy it first."""
    from aims.converters.nyuv2 import CONVERTER
    from aims.prepare import prepare_source

    out = tmp_path_factory.mktemp("nyuv2_prepared") / "dataset"
    prepare_source(CONVERTER, ["depth", "hha"], dataset_dir=out, source=nyuv2_miniature,
                   workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: torch's thread hand-offs cost more than they
    give, and one thread also makes CPU runs bit-reproducible. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

