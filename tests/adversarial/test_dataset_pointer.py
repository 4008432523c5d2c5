"""``$AIMS_HOME/last_dataset.json`` is read as hostile input: a link, a FIFO, a huge or
garbage file, a note pointing at something that is not an AIMS dataset — each is ignored
(with its reason), nothing is followed or trusted, and loading falls back to
``$AIMS_HOME/dataset``. Writing the note never writes through a link."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aims.dataset_pointer import MAX_POINTER_BYTES, POINTER_FILE, remember_dataset, remembered_dataset
from aims.errors import AimsError
from aims.loader import dataset_root, load_dataset


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AIMS_HOME", str(home))
    monkeypatch.delenv("AIMS_DATASET", raising=False)
    return home


def note(folder: Path) -> bytes:
    return json.dumps({"dataset_dir": str(folder)}).encode()


def assert_ignored(home: Path, *reason_words: str) -> None:
    folder, reason = remembered_dataset()
    assert folder is None
    for word in reason_words:
        assert word in reason, reason
    assert dataset_root(config="depth") == home / "dataset"
    with pytest.raises(AimsError, match="is not prepared"):
        load_dataset("depth")


def test_a_link_is_not_followed(home, nyuv2_prepared, tmp_path):
    real = tmp_path / "elsewhere.json"
    real.write_bytes(note(nyuv2_prepared))
    (home / POINTER_FILE).symlink_to(real)
    assert_ignored(home, "link")


def test_a_fifo_does_not_block(home):
    os.mkfifo(home / POINTER_FILE)
    assert_ignored(home)


def test_a_huge_note_is_refused_unread(home, nyuv2_prepared):
    padding = " " * (MAX_POINTER_BYTES + 1)
    (home / POINTER_FILE).write_text('{"dataset_dir": "' + str(nyuv2_prepared) + '"}' + padding)
    assert_ignored(home, "bytes")


@pytest.mark.parametrize("content", [
    b"\xff\xfe garbage \x00\x01",
    b"not json at all",
    b"[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
    b'"just a string"',
    b'{"dataset_dir": 42}',
    b'{"dataset_dir": "relative/folder"}',
    b'{"dataset_dir": "/tmp/x\\u0000y"}',
    b'{"dataset_dir": "/tmp", "extra": "key"}',
    b'{"dataset_dir": "' + b"/a" * 3000 + b'"}',
])
def test_garbage_is_ignored(home, content):
    (home / POINTER_FILE).write_bytes(content)
    assert_ignored(home, str(home / POINTER_FILE))


def test_a_note_pointing_at_a_missing_folder_or_a_file(home, tmp_path):
    (home / POINTER_FILE).write_bytes(note(tmp_path / "gone"))
    assert_ignored(home, "not a folder")
    (tmp_path / "a-file").write_text("x")
    (home / POINTER_FILE).write_bytes(note(tmp_path / "a-file"))
    assert_ignored(home, "not a folder")


def test_a_note_pointing_at_a_folder_without_an_aims_dataset(home, nyuv2_prepared, tmp_path):
    impostor = tmp_path / "impostor"
    (impostor / "depth").mkdir(parents=True)
    (impostor / "depth" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    (impostor / "README.md").write_text("# looks like a dataset\n")
    (home / POINTER_FILE).write_bytes(note(impostor))
    assert remembered_dataset() == (impostor, "")  # a folder, but …
    assert dataset_root(config="depth") == home / "dataset"  # … no aims_config.json: never used
    shutil.copytree(nyuv2_prepared, home / "dataset")
    assert len(load_dataset("depth", "test")) == 3  # from the default, not the impostor


def test_writing_the_note_replaces_a_link_instead_of_writing_through_it(home, nyuv2_prepared, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (home / POINTER_FILE).symlink_to(victim)
    assert remember_dataset(nyuv2_prepared) == home / POINTER_FILE
    assert victim.read_text() == "keep me\n"
    assert not (home / POINTER_FILE).is_symlink()
    assert remembered_dataset() == (nyuv2_prepared.resolve(), "")


def test_an_unwritable_home_does_not_fail(tmp_path, monkeypatch, nyuv2_prepared):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("AIMS_HOME", str(blocker))
    assert remember_dataset(nyuv2_prepared) is None  # logged, never fatal
    assert blocker.read_text() == "not a folder\n"
