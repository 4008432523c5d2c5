"""Hostile and broken folders of your own (docs/bring-your-own-modality.md, "What is
checked"): every one ends `aims prepare --source DIR` as a user's mistake — exit 2, one
message naming the key or the file, no traceback — writes nothing outside the folder it
may write to, leaves no config (nor half of one) in --out, and executes nothing it reads
(a pickle or a YAML tag whose payload would create the sandbox's bait file)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from aims.converters.custom_source_miniature import write_example

from .conftest import Sandbox, run_aims

YAML = "aims-source.yaml"


class Payload:
    """Pickles to a call of os.system that creates the sandbox's bait file when unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _yaml(src: Path, old: str, new: str) -> None:
    text = (src / YAML).read_text(encoding="utf-8")
    assert old in text, old
    (src / YAML).write_text(text.replace(old, new, 1), encoding="utf-8")


def _npy(src: Path, split: str, image_id: str) -> Path:
    return src / "images" / split / f"{image_id}.npy"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width``×``height`` 8-bit grey pixels and whose data is
    a few bytes: a decompression bomb's shape, refused from the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def assert_user_error(result, *mentions: str) -> None:
    """Exit 2 without a traceback, and each mention in the message, however the one
    paragraph happens to wrap (paths of any length come before them)."""
    result.assert_user_error()
    text = " ".join(result.output.split()).lower()
    for words in mentions:
        assert words.lower() in text, f"{words!r} not in:\n{result.output}"


# each case: (id, mutation of the float32-npy example folder, words the message must hold)
def unknown_key(src, box):
    _yaml(src, "channels:", "chanels:")


def missing_key(src, box):
    _yaml(src, "license: cc-by-4.0\n", "")


def duplicate_key(src, box):
    _yaml(src, "labels: semantic\n", "labels: semantic\nname: other\n")


def not_a_mapping(src, box):
    (src / YAML).write_text("- name: sonar2\n", encoding="utf-8")


def alias_bomb(src, box):
    bomb = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    (src / YAML).write_text("l0: &l0 [lol]\n" + bomb + (src / YAML).read_text(encoding="utf-8"), encoding="utf-8")


def deep_nesting(src, box):
    _yaml(src, "notes:\n", "notes:\n  - " + "[" * 40 + "x" + "]" * 40 + "\n")


def too_large_yaml(src, box):
    with open(src / YAML, "a", encoding="utf-8") as fh:
        fh.write("# padding\n" * 120_000)


def python_tag(src, box):
    _yaml(src, "name: sonar2", f"name: !!python/object/apply:os.system ['touch {box.absolute_target}']")


def yaml_link(src, box):
    target = box.outside / "elsewhere.yaml"
    shutil.copy(src / YAML, target)
    (src / YAML).unlink()
    (src / YAML).symlink_to(target)


def unsafe_name(src, box):
    _yaml(src, "name: sonar2", "name: My Sonar")


def builtin_name(src, box):
    _yaml(src, "name: sonar2", "name: depth")


def builtin_rgb_x_name(src, box):
    _yaml(src, "name: sonar2", "name: rgb-thermal")


def channel_count(src, box):
    _yaml(src, "  - {name: range, unit: m}\n", "  - {name: range, unit: m}\n  - {name: speed, unit: m/s}\n")


def missing_split(src, box):
    shutil.rmtree(src / "images" / "test")


def extra_split(src, box):
    (src / "labels" / "val").mkdir()


def missing_label(src, box):
    (src / "labels" / "test" / "f102.png").unlink()


def label_without_image(src, box):
    shutil.copy(src / "labels" / "test" / "f102.png", src / "labels" / "test" / "f999.png")


def id_in_both_splits(src, box):
    shutil.copy(_npy(src, "train", "f002"), _npy(src, "test", "f002"))
    shutil.copy(src / "labels" / "train" / "f002.png", src / "labels" / "test" / "f002.png")


def unknown_file(src, box):
    (src / "images" / "train" / "notes.txt").write_text("hello")


def size_mismatch(src, box):
    cv2.imwrite(str(src / "labels" / "test" / "f101.png"), np.zeros((40, 64), np.uint8))


def rgb_label(src, box):
    cv2.imwrite(str(src / "labels" / "train" / "f003.png"), np.zeros((48, 64, 3), np.uint8))


def class_outside(src, box):
    path = src / "labels" / "train" / "f003.png"
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    labels[20, 20] = 7
    cv2.imwrite(str(path), labels)


def complex_dtype(src, box):
    np.save(_npy(src, "train", "f001"), np.zeros((48, 64, 2), np.complex64))


def other_dtype(src, box):
    np.save(_npy(src, "test", "f102"), np.zeros((48, 64, 2), np.float16))


def pickled_objects(src, box):
    np.save(_npy(src, "train", "f002"), np.array([Payload(box.absolute_target)], dtype=object), allow_pickle=True)


def truncated_npy(src, box):
    path = _npy(src, "train", "f003")
    path.write_bytes(path.read_bytes()[:-100])


def nan_values(src, box):
    arr = np.load(_npy(src, "train", "f004"))
    arr[5, 6, 1] = np.nan
    np.save(_npy(src, "train", "f004"), arr)


def inexact_int32(src, box):
    for path in sorted((src / "images").glob("*/*.npy")):
        np.save(path, np.rint(np.load(path)).astype(np.int32))
    arr = np.load(_npy(src, "test", "f103"))
    arr[3, 3, 0] = 2**24 + 1
    np.save(_npy(src, "test", "f103"), arr)


def image_link(src, box):
    target = box.outside / "f002.npy"
    shutil.copy(_npy(src, "train", "f002"), target)
    _npy(src, "train", "f002").unlink()
    _npy(src, "train", "f002").symlink_to(target)


def labels_folder_link(src, box):
    shutil.copytree(src / "labels", box.outside / "labels")
    shutil.rmtree(src / "labels")
    (src / "labels").symlink_to(box.outside / "labels")


def fifo(src, box):
    os.mkfifo(_npy(src, "test", "f109"))


def huge_file(src, box):
    path = _npy(src, "train", "f005")
    shape = (20000, 20000, 2)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        fh.truncate(fh.tell() + int(np.prod(shape)) * 4)     # sparse: 3 GB that take no disk


def png_bomb(src, box):
    (src / "images" / "test" / "f104.png").write_bytes(_png_header_only(50000, 50000))
    shutil.copy(src / "labels" / "test" / "f101.png", src / "labels" / "test" / "f104.png")


def instances_without_categories(src, box):
    _yaml(src, "labels: semantic\nvoid: [255]\n", "labels: instances\n")


def categories_missing_an_instance(src, box):
    path = src / "categories" / "test" / "f102.json"
    path.write_text(json.dumps({"1": 1, "3": 2}), encoding="utf-8")


def categories_bad_class(src, box):
    (src / "categories" / "train" / "f001.json").write_text(json.dumps({"1": 1, "2": 9, "3": 2}),
                                                               encoding="utf-8")


CASES: list[tuple[Callable, str, tuple[str, ...]]] = [
    (unknown_key, "float32-npy", ("'chanels'", "did you mean 'channels'")),
    (missing_key, "float32-npy", ("'license'", "missing")),
    (duplicate_key, "float32-npy", ("'name'", "twice")),
    (not_a_mapping, "float32-npy", (YAML, "mapping")),
    (alias_bomb, "float32-npy", (YAML, "aliases")),
    (deep_nesting, "float32-npy", (YAML, "nested")),
    (too_large_yaml, "float32-npy", (YAML, "1 MiB")),
    (python_tag, "float32-npy", (YAML, "python/object")),
    (yaml_link, "float32-npy", (YAML, "symbolic link")),
    (unsafe_name, "float32-npy", ("'name'", "my sonar")),
    (builtin_name, "float32-npy", ("'depth'", "already")),
    (builtin_rgb_x_name, "float32-npy", ("'rgb-thermal'", "already")),
    (channel_count, "float32-npy", ("f001.npy", "3 channel")),
    (missing_split, "float32-npy", ("images/test", "missing")),
    (extra_split, "float32-npy", ("labels/val", "train/ and test/")),
    (missing_label, "float32-npy", ("f102.png", "missing")),
    (label_without_image, "float32-npy", ("f999.png", "no image")),
    (id_in_both_splits, "float32-npy", ("f002", "one split")),
    (unknown_file, "float32-npy", ("notes.txt",)),
    (size_mismatch, "float32-npy", ("labels/test/f101.png", "64×40", "64×48")),
    (rgb_label, "float32-npy", ("f003.png", "colour type 2")),
    (class_outside, "float32-npy", ("labels/train/f003.png", "class id 7")),
    (complex_dtype, "float32-npy", ("f001.npy", "complex")),
    (other_dtype, "float32-npy", ("f102.npy", "float16", "one dtype")),
    (pickled_objects, "float32-npy", ("f002.npy", "never unpickles")),
    (truncated_npy, "float32-npy", ("f003.npy", "truncated")),
    (nan_values, "float32-npy", ("f004.npy", "NaN", "row 5, column 6, channel 1")),
    (inexact_int32, "float32-npy", ("f103.npy", "16777217", "float32 cannot hold exactly")),
    (image_link, "float32-npy", ("f002.npy", "symbolic link")),
    (labels_folder_link, "float32-npy", ("labels", "symbolic link")),
    (fifo, "float32-npy", ("f109.npy", "not a regular file")),
    (huge_file, "float32-npy", ("f005.npy", "512 MiB")),
    (png_bomb, "float32-npy", ("f104.png", "50000×50000×1", "89,478,485")),
    (instances_without_categories, "float32-npy", (YAML, "categories")),
    (categories_missing_an_instance, "instances", ("categories/test/f102.json", "instance 2")),
    (categories_bad_class, "instances", ("categories/train/f001.json", "class 9")),
]


@pytest.mark.parametrize("mutate, kind, mentions", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_bad_folder_is_a_user_error_that_writes_nothing(mutate, kind, mentions, sandbox: Sandbox):
    src = write_example(sandbox.outside / "src", kind)     # input: must stay as it is
    mutate(src, sandbox)
    sandbox.snapshot()                          # the bait (links' targets) is part of "outside" now
    out = sandbox.allowed / "out"
    result = run_aims("prepare", "--source", src, "--out", out, "--workers", "1", "--no-progress",
                      cwd=sandbox.allowed)
    assert_user_error(result, *mentions)
    sandbox.assert_nothing_outside()
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in left if n not in ("README.md",)], left      # no config, no temporary folder
    assert not (out / "README.md").exists()


def test_a_bad_sample_found_by_a_worker_stops_the_pool_too(sandbox: Sandbox):
    """With several workers, the error raised in a worker process reaches the user intact."""
    src = write_example(sandbox.outside / "src", "float32-npy")
    nan_values(src, sandbox)
    sandbox.snapshot()
    result = run_aims("prepare", "--source", src, "--out", sandbox.allowed / "out", "--workers", "3",
                      "--no-progress", cwd=sandbox.allowed)
    assert_user_error(result, "f004.npy", "NaN")
    sandbox.assert_nothing_outside()


def test_modality_and_a_folder_of_your_own_together_are_refused(sandbox: Sandbox):
    src = write_example(sandbox.outside / "src", "float32-npy")
    sandbox.snapshot()
    result = run_aims("prepare", "--modality", "depth", "--source", src, "--out", sandbox.allowed / "out",
                      cwd=sandbox.allowed)
    assert_user_error(result, YAML, "run the command without --modality")
    result = run_aims("prepare", "--out", sandbox.allowed / "out", cwd=sandbox.allowed)
    assert_user_error(result, "--modality", YAML)
    sandbox.assert_nothing_outside()
    assert not (sandbox.allowed / "out").exists()
