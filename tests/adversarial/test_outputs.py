"""Hostile and careless output folders for ``aims prepare --out DIR``.

``--out`` may name a folder that already holds other things. Whatever AIMS did not write
there (a folder named like a config, a README.md, links pointing elsewhere) must survive
byte for byte, and the command must stop with exit 2 and a message naming what is in the
way, before converting anything. Each test runs the installed ``aims`` executable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from .conftest import run_aims


def prepare(source: Path, out: Path):
    return run_aims("prepare", "-m", "depth", "--source", source, "--out", out, "--workers", "1",
                    "--no-progress")


def digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) → what it is, with file hashes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir" if p.is_dir() else "other"
    return out


def drop_own_link(link: Path) -> None:
    """Remove a link the *test* planted (after checking it survived), so the harness's
    "nothing left inside points outside" check judges only what the command did."""
    assert link.is_symlink()
    link.unlink()


@pytest.fixture
def out(sandbox) -> Path:
    return sandbox.allowed / "ds"


def test_foreign_config_folder_survives(sandbox, out, nyuv2_miniature):
    (out / "depth" / "holiday").mkdir(parents=True)
    (out / "depth" / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (out / "depth" / "thesis.tex").write_text("\\chapter{Depth}\n")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "not a config folder written by AIMS")
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_foreign_json_named_like_ours_is_not_a_marker(sandbox, out, nyuv2_miniature):
    """A user's own aims_config.json (no "format": "aims-config/1") does not make the
    folder ours."""
    (out / "depth").mkdir(parents=True)
    (out / "depth" / "aims_config.json").write_text(json.dumps({"config": "depth", "owner": "me"}))
    (out / "depth" / "train-00000-of-00001.parquet").write_bytes(b"my own parquet")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "format")
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_user_file_inside_an_aims_config_survives(sandbox, out, nyuv2_miniature):
    """A real AIMS config folder into which the user put a file of their own is not
    replaced wholesale: the file would be lost."""
    assert prepare(nyuv2_miniature, out).returncode == 0
    (out / "depth" / "my-notes.md").write_text("results of run 3\n")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "my-notes.md")
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_foreign_readme_survives(sandbox, out, nyuv2_miniature):
    out.mkdir()
    (out / "README.md").write_text("# My project\n\nDo not lose this.\n")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "README.md"), "empty folder", "move")
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_readme_that_is_a_folder_survives(sandbox, out, nyuv2_miniature):
    (out / "README.md").mkdir(parents=True)
    (out / "README.md" / "index.md").write_text("docs\n")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "README.md"))
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_out_is_a_file(sandbox, out, nyuv2_miniature):
    out.write_bytes(b"a file the user cares about\n")
    prepare(nyuv2_miniature, out).assert_user_error(str(out), "is a file")
    assert out.read_bytes() == b"a file the user cares about\n"
    sandbox.assert_nothing_outside()


def test_config_symlink_to_outside_is_not_followed(sandbox, out, nyuv2_miniature):
    victim = sandbox.outside / "precious"
    victim.mkdir()
    (victim / "data.bin").write_bytes(b"\x00\x01 irreplaceable")
    sandbox.snapshot()
    out.mkdir()
    (out / "depth").symlink_to(victim, target_is_directory=True)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "symbolic link")
    assert (out / "depth").is_symlink() and os.readlink(out / "depth") == str(victim)
    assert (victim / "data.bin").read_bytes() == b"\x00\x01 irreplaceable"
    drop_own_link(out / "depth")
    sandbox.assert_nothing_outside()


def test_config_symlink_to_an_aims_config_outside_is_not_replaced(sandbox, out, nyuv2_miniature):
    """Even a link to a genuine AIMS config is refused: replacing it would drop the link,
    writing through it would change a folder outside --out."""
    elsewhere = sandbox.outside / "other-dataset"
    assert prepare(nyuv2_miniature, elsewhere).returncode == 0
    sandbox.snapshot()
    out.mkdir()
    (out / "depth").symlink_to(elsewhere / "depth", target_is_directory=True)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "symbolic link")
    assert os.readlink(out / "depth") == str(elsewhere / "depth")
    drop_own_link(out / "depth")
    sandbox.assert_nothing_outside()


def test_readme_symlink_to_outside_is_not_written_through(sandbox, out, nyuv2_miniature):
    out.mkdir()
    (out / "README.md").symlink_to(sandbox.outside / "bait.txt")
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "README.md"), "symbolic link")
    assert os.readlink(out / "README.md") == str(sandbox.outside / "bait.txt")
    assert (sandbox.outside / "bait.txt").read_text() == "do not touch\n"
    drop_own_link(out / "README.md")
    sandbox.assert_nothing_outside()


def test_config_json_symlink_to_outside_is_not_read_as_a_marker(sandbox, out, nyuv2_miniature):
    """A link named aims_config.json pointing at a genuine marker elsewhere does not make
    the user's folder replaceable."""
    elsewhere = sandbox.outside / "other-dataset"
    assert prepare(nyuv2_miniature, elsewhere).returncode == 0
    sandbox.snapshot()
    (out / "depth").mkdir(parents=True)
    (out / "depth" / "aims_config.json").symlink_to(elsewhere / "depth" / "aims_config.json")
    (out / "depth" / "photo.png").write_bytes(b"\x89PNG user photo")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "symbolic link")
    assert digest(sandbox.allowed) == before
    drop_own_link(out / "depth" / "aims_config.json")
    sandbox.assert_nothing_outside()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_config_json_fifo_does_not_hang(sandbox, out, nyuv2_miniature):
    (out / "depth").mkdir(parents=True)
    os.mkfifo(out / "depth" / "aims_config.json")
    (out / "depth" / "keep.txt").write_text("mine\n")
    before = digest(sandbox.allowed)
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "regular file")
    assert digest(sandbox.allowed) == before
    sandbox.assert_nothing_outside()


def test_huge_config_json_is_not_read_whole(sandbox, out, nyuv2_miniature):
    """An aims_config.json over the 10 MB bound (sparse: nothing on disk) is refused, not
    parsed. (Kept small because the sandbox hashes every file around the command.)"""
    (out / "depth").mkdir(parents=True)
    with open(out / "depth" / "aims_config.json", "wb") as fh:
        fh.truncate(11 * 2**20)
    (out / "depth" / "keep.txt").write_text("mine\n")
    prepare(nyuv2_miniature, out).assert_user_error(str(out / "depth"), "11,534,336 bytes", "(10 MiB)")
    assert (out / "depth" / "keep.txt").read_text() == "mine\n"
    assert os.path.getsize(out / "depth" / "aims_config.json") == 11 * 2**20
    sandbox.assert_nothing_outside()


def test_aims_home_is_a_file(sandbox, nyuv2_miniature):
    """Without --out the dataset goes under $AIMS_HOME; a file there is not a folder."""
    home = sandbox.allowed / "aims-home"
    home.write_bytes(b"not a folder\n")
    result = run_aims("prepare", "-m", "depth", "--source", nyuv2_miniature, "--workers", "1",
                      "--no-progress", env={"AIMS_HOME": str(home)})
    result.assert_user_error(str(home), "AIMS_HOME")
    assert home.read_bytes() == b"not a folder\n"
    sandbox.assert_nothing_outside()
