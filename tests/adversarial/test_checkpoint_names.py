"""Hostile ``--checkpoint`` values: ids that climb out of folders, absolute paths that are
FIFOs or links to ``/dev/zero``, over-long and control-character ids, planted cache entries.

``aims baseline`` does not call :func:`resolve_checkpoint` yet (the CLI is wired
separately), so these tests call it directly. They check its half of the promise of
docs/security.md: an :class:`AimsError` (what the CLI prints as one paragraph with exit 2)
naming the problem, nothing written outside the sandbox, and special files never opened: a
FIFO that was opened for reading would block this test forever, and ``/dev/zero`` would
never end. Once the CLI is wired, the same cases belong in ``run_aims`` form here too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from aims.baselines.checkpoints import CACHE_FOLDER, MetaCheckpoint, resolve_checkpoint
from aims.errors import AimsError
from aims.fetch import SourceFile

from .conftest import Sandbox

PASSWD = "../" * 40 + "etc/passwd"  # /etc/passwd from any working folder


def never(url: str, output: Path) -> None:
    pytest.fail(f"downloaded {url} for a hostile value")


@pytest.fixture
def box(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox with AIMS_HOME, the Hugging Face cache and the working folder inside
    ``allowed/``; snapshot taken after they exist."""
    monkeypatch.setenv("AIMS_HOME", str(sandbox.allowed / "home"))
    cwd = sandbox.allowed / "work" / "here"
    cwd.mkdir(parents=True)
    (sandbox.allowed / "hf").mkdir()
    monkeypatch.chdir(cwd)
    sandbox.snapshot()
    return sandbox


def refused(box: Sandbox, spec: str, *words: str, planted: Path | None = None, **kwargs) -> str:
    """Resolve ``spec``; it must raise AimsError with ``words`` in one paragraph, and leave
    the sandbox untouched outside ``allowed/`` and the Hugging Face cache empty.
    ``planted``: a link the test itself put inside ``allowed/`` (the sandbox refuses links
    leaving it); it must still be there, unchanged, and is removed before the check."""
    before = os.readlink(planted) if planted is not None else None
    kwargs.setdefault("downloader", never)
    kwargs.setdefault("offline", False)  # nothing may even try: a hostile id is no Hub id
    with pytest.raises(AimsError) as exc:
        resolve_checkpoint(spec, hf_cache_dir=box.allowed / "hf", progress=False, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 2000, msg
    for word in words:
        assert word.lower() in msg.lower(), msg
    if planted is not None:
        assert os.readlink(planted) == before
        planted.unlink()
    box.assert_nothing_outside()
    assert list((box.allowed / "hf").iterdir()) == []
    return msg


# ---------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize("spec, words", [
    (PASSWD, ["/etc/passwd", "not a PyTorch checkpoint"]),
    ("../../../outside/bait.txt", ["bait.txt", "not a PyTorch checkpoint"]),
    ("facebook/../../etc/passwd", ["not a known name", "vit-b, vit-l, vit-h"]),
    ("../facebook/sam-vit-base", ["not a known name"]),
    ("/facebook/sam-vit-base", ["not a known name"]),
    ("facebook/sam-vit-base/../../x", ["not a known name"]),
    ("facebook/sam-vit-base/extra", ["not a known name"]),
    ("-rf/sam", ["not a known name"]),
    ("facebook/.hidden", ["not a known name"]),
    ("~nosuchuser0/sam", ["not a known name"]),
    ("a" * 97 + "/sam", ["not a known name"]),  # past the Hub's 96 characters
])
def test_ids_that_climb_or_are_not_hub_ids(box: Sandbox, spec: str, words: list[str]) -> None:
    refused(box, spec, *words)


@pytest.mark.parametrize("spec", ["a" * 5000, "org/" + "b" * 300, "x/" * 2100, "é" * 200 + "/sam"])
def test_over_long_values_are_refused_before_the_file_system(box: Sandbox, spec: str) -> None:
    msg = refused(box, spec, "bytes long", "4,096")
    assert len(msg) < 1000  # the value is cut when shown


@pytest.mark.parametrize("spec", ["facebook/sam-vit-base\x00", "vit-b\n", "sam\x1b[2J/x", "a/b\x7f"])
def test_control_characters_are_refused(box: Sandbox, spec: str) -> None:
    refused(box, spec, "control characters")


# ---------------------------------------------------------------------------------------
# paths that are special files


@pytest.mark.parametrize("name", ["model.pth", "sam_vit_b_01ec64.pth"])
def test_a_fifo_is_refused_without_being_opened(box: Sandbox, name: str) -> None:
    fifo = box.allowed / name
    os.mkfifo(fifo)
    box.snapshot()
    refused(box, str(fifo), "FIFO", "not opened")


@pytest.mark.parametrize("name", ["model.pth", "sam_vit_h_4b8939.pth"])
def test_a_link_to_dev_zero_is_refused_without_being_read(box: Sandbox, name: str) -> None:
    link = box.outside / name  # a path the user names may be anywhere
    link.symlink_to("/dev/zero")
    box.snapshot()
    refused(box, str(link), "device", "/dev/zero")


def test_a_link_to_nothing_is_named(box: Sandbox) -> None:
    link = box.allowed / "gone.pth"
    link.symlink_to(box.allowed / "missing.pth")
    box.snapshot()
    refused(box, str(link), "link to nothing")


@pytest.mark.parametrize("plant", ["config-zero", "weights-fifo", "weights-zero"])
def test_special_files_inside_a_model_folder_are_refused(box: Sandbox, plant: str) -> None:
    folder = box.outside / "model"
    folder.mkdir()
    if plant == "config-zero":
        (folder / "config.json").symlink_to("/dev/zero")
        (folder / "model.safetensors").write_bytes(b"x")
    else:
        (folder / "config.json").write_text('{"model_type": "sam"}')
        if plant == "weights-fifo":
            os.mkfifo(folder / "model.safetensors")
        else:
            (folder / "model.safetensors").symlink_to("/dev/zero")
    box.snapshot()
    refused(box, str(folder), "model", "regular files")


def test_a_huge_config_is_refused_unread(box: Sandbox) -> None:
    folder = box.allowed / "model"
    folder.mkdir()
    with open(folder / "config.json", "wb") as fh:
        fh.truncate(64 << 20)  # sparse: 64 MiB of NULs on no disk
    (folder / "model.safetensors").write_bytes(b"x")
    box.snapshot()
    refused(box, str(folder), "larger than")


# ---------------------------------------------------------------------------------------
# planted cache entries


def _cache_path(box: Sandbox, name: str = "sam_vit_b_01ec64.pth") -> Path:
    path = box.allowed / "home" / "downloads" / CACHE_FOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("plant", ["fifo", "dev-zero"])
def test_a_special_file_planted_in_the_cache_is_refused(box: Sandbox, plant: str) -> None:
    cached = _cache_path(box)
    if plant == "fifo":
        os.mkfifo(cached)
    else:
        cached.symlink_to("/dev/zero")
    box.snapshot()
    refused(box, "vit-b", "sam_vit_b_01ec64.pth", "not a file",
            planted=cached if plant == "dev-zero" else None)
    if plant == "fifo":
        assert stat.S_ISFIFO(os.lstat(cached).st_mode)  # left as it was, never opened


def test_a_cache_link_to_a_file_outside_is_replaced_not_written_through(box: Sandbox) -> None:
    server = box.allowed / "server.pth"
    with zipfile.ZipFile(server, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", b"the real weights")
    data = server.read_bytes()
    known = {"vit-b": MetaCheckpoint("vit-b", SourceFile(
        "sam_vit_b_01ec64.pth", "https://example.org/sam_vit_b_01ec64.pth",
        f"sha256:{hashlib.sha256(data).hexdigest()}", size=len(data)))}
    cached = _cache_path(box)
    cached.symlink_to(box.outside / "bait.txt")
    box.snapshot()
    resolved = resolve_checkpoint("vit-b", known=known, offline=False, progress=False,
                                  downloader=lambda url, out: shutil.copyfile(server, out))
    assert resolved.path == cached and not cached.is_symlink() and cached.read_bytes() == data
    assert (box.outside / "bait.txt").read_text() == "do not touch\n"
    box.assert_nothing_outside()
