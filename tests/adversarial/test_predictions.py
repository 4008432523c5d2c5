"""Hostile predictions and a damaged dataset under ``aims score``.

Every case builds its hostile input itself, under ``sandbox.outside`` (a copy of the
prepared miniature NYUv2 and a predictions folder written with ``PredictionWriter``), then
runs the installed ``aims`` executable with ``--out sandbox.allowed/scores`` and checks
the promise of ``docs/security.md``: exit 2 with a message naming the problem (no
traceback), no scores folder and no temporary left in ``allowed/``, and nothing written
anywhere else. Bombs are tiny on disk (hand-made deflate streams of zeros); the bomb cases
also check the scorer's peak memory stays under 300 MB: they run the same installed
executable, with the same environment, through :func:`run_measured` — a small launcher
that reports the child's ``ru_maxrss`` (``run_aims`` cannot: Linux keeps the peak RSS
across exec, so a child forked from pytest reports pytest's memory).

The builders here (:func:`npz_bomb`, :func:`png_bomb`, :func:`forged_counts` …) are also
used by ``benchmarks/bench_bombs.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import Completed, Sandbox, aims_executable, run_aims

#: The bound every bomb must stay under (the scorer's own baseline is ~170 MB).
RSS_LIMIT = 300 * 2**20
T63 = 2**63


# --------------------------------------------------------------------------- builders


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's ``crc32_combine``: the CRC-32 of A + B from crc(A), crc(B) and len(B)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = [_gf2_times(odd, odd[n]) for n in range(32)]
    odd = [_gf2_times(even, even[n]) for n in range(32)]
    while True:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_zeros(n: int) -> int:
    """CRC-32 of ``n`` zero bytes in O(log n) (no GB buffers)."""
    crc, block, size = 0, zlib.crc32(b"\0"), 1
    while n:
        if n & 1:
            crc = crc32_combine(crc, block, size)
        block = crc32_combine(block, block, size)
        size <<= 1
        n >>= 1
    return crc


def deflate_zeros(prefix: bytes, n: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of ``prefix`` + ``n`` zero bytes, built without compressing
    them all: after a full flush the compressor's output for a chunk of zeros no longer
    depends on what came before, so one compressed chunk is repeated."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = min(n, chunk)
    parts = [co.compress(prefix + bytes(first)) + co.flush(zlib.Z_FULL_FLUSH)]
    left = n - first
    if left >= chunk:
        block = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
        assert co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH) == block
        reps, left = divmod(left, chunk)
        parts.append(block * reps)
    parts.append(co.compress(bytes(left)) + co.flush())
    return b"".join(parts)


def _zip(members: list[tuple[str, bytes, bytes | None, int, int]]) -> bytes:
    """A zip archive from (name, raw data, deflated data or None, crc32, uncompressed
    size) — written by hand so a member's declared size can be a bomb's."""
    body, central = b"", b""
    for name, raw, deflated, crc, usize in members:
        data = raw if deflated is None else deflated
        method = 0 if deflated is None else 8
        assert usize < 2**32 and len(data) < 2**32
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc, len(data), usize)
        offset = len(body)
        body += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name.encode() + data
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, offset) + name.encode())
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(body), 0)
    return body + central + end


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    import io

    from numpy.lib import format as npy

    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def npy_member(name: str, array: np.ndarray) -> tuple[str, bytes, None, int, int]:
    """A stored (uncompressed) member holding a real small array."""
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    raw = buf.getvalue()
    return (f"{name}.npy", raw, None, zlib.crc32(raw), len(raw))


def zeros_member(name: str, shape: tuple[int, ...], descr: str = "|b1",
                 declared: int | None = None) -> tuple[str, bytes, bytes, int, int]:
    """A deflated member whose ``.npy`` header declares ``shape`` and whose data are all
    zeros — a few KB on disk however large ``shape`` is."""
    head = npy_header(shape, descr)
    n = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
    crc = crc32_combine(zlib.crc32(head), crc32_zeros(n), n)
    return (f"{name}.npy", b"", deflate_zeros(head, n), crc, len(head) + n if declared is None else declared)


def npz_bomb(path: Path, shape: tuple[int, int, int], n_ids: int | None = None) -> Path:
    """An npz of ``instance_ids`` 1..N and ``masks`` declaring ``shape`` (bool zeros)."""
    ids = np.arange(1, shape[0] + 1, dtype=np.int64)
    members = [npy_member("instance_ids", ids) if n_ids is None else zeros_member("instance_ids", (n_ids,), "<i8"),
               zeros_member("masks", shape)]
    path.write_bytes(_zip(members))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int, *, full: bool = False) -> bytes:
    """A greyscale 8-bit PNG declaring ``width`` x ``height``. ``full``: its IDAT really
    holds every (zero) scan line (a decompression bomb, ~1 KB per MB of pixels); else a
    small stream of zeros (1 MB) follows, as the tests need only the header."""
    n = height * (width + 1) if full else 1 << 20
    stream = b"\x78\xda" + deflate_zeros(b"", n) + struct.pack(">I", ((n % 65521) << 16) | 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def forged_counts(hw: int, gt_area: int) -> list[int]:
    """COCO counts whose int64 sum wraps around to exactly ``hw`` and whose runs of 1,
    summed in int64, have ``gt_area`` pixels; the first run of 1 covers the whole image,
    every later run starts and ends outside it. The old scorer gave IoU 1 for it."""
    c = [0, hw, 0, T63 - 1 - hw, 1, T63 - 1, hw + 1, 2 + gt_area, T63 - 1, 0, T63 - 1 - gt_area]
    assert sum(c) % 2**64 == hw and sum(c[1::2]) % 2**64 == gt_area and all(0 <= v < T63 for v in c)
    return c


def forged_rle_records(gt: list) -> list[dict]:
    """One forged full-image record per ground-truth instance of ``gt``."""
    recs = []
    for g in gt:
        h, w = g.id_map.shape
        for i, a in zip(g.instance_ids, g.area):
            recs.append({"config": "depth", "image_id": g.image_id, "instance_id": int(i),
                         "segmentation": {"size": [h, w], "counts": forged_counts(h * w, int(a))}})
    return recs


def coco_string(values: list[int]) -> str:
    """COCO's counts string of raw (delta-coded) values, each with as many 5-bit groups as
    it needs — also values no real encoder writes."""
    out = []
    for x in values:
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not c & 0x10) or (x == -1 and c & 0x10))
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


def copy_dataset(prepared: Path, dest: Path, configs: tuple[str, ...] = ("depth", "hha")) -> Path:
    """The test shards (and config files) of the prepared miniature: what scoring reads."""
    for c in configs:
        (dest / c).mkdir(parents=True)
        for f in (prepared / c).iterdir():
            if f.name.startswith("test-") or f.name == "aims_config.json":
                shutil.copy2(f, dest / c / f.name)
    return dest


def write_predictions(folder: Path, gt: list, fmt: str) -> Path:
    from aims.predictions import PredictionWriter

    with PredictionWriter(folder, fmt=fmt, meta={"method": "gt", "model": "none"}) as w:
        for g in gt:
            for i in g.instance_ids:
                w.add("depth", g.image_id, int(i), g.id_map == i)
    return folder


#: Runs ARGV[2:] as a child of this small process and writes its peak RSS (KiB) to
#: ARGV[1]. WHY a launcher: Linux keeps a process's peak RSS across exec, so a child forked
#: straight from pytest would report pytest's own memory.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_measured(*args: str | os.PathLike, preexec: Callable[[], None] | None = None) -> tuple[Completed, int]:
    """:func:`run_aims` (same executable, environment and output), plus the command's
    peak RSS in bytes (``wait4`` rusage of a child of a small launcher)."""
    import sys
    import tempfile

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    fd, rss_file = tempfile.mkstemp(prefix="aims-rss-")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, rss_file, str(aims_executable()), *map(str, args)],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, preexec_fn=preexec, timeout=600)
        rss = int(Path(rss_file).read_text() or 0) * 1024
    finally:
        os.unlink(rss_file)
    return Completed(proc.returncode, proc.stdout), rss


def assert_refused(result: Completed, *words: str) -> None:
    """:meth:`Completed.assert_user_error`, with the words looked up in the message as one
    line (the CLI wraps it at 100 columns, which may split a phrase)."""
    result.assert_user_error()
    text = " ".join(result.output.split()).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in:\n{result.output}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gt(nyuv2_prepared):
    from aims.scoring import iter_ground_truth, split_shards

    return list(iter_ground_truth(split_shards(nyuv2_prepared, "depth", "test")))


@dataclass
class Case:
    sandbox: Sandbox
    data: Path
    preds: Path
    gt: list

    @property
    def out(self) -> Path:
        return self.sandbox.allowed / "scores"

    def args(self, *extra: str | os.PathLike) -> list:
        return ["score", self.preds, "--data-dir", self.data, "--out", self.out, "--no-progress", *extra]

    def run(self, *extra: str | os.PathLike) -> Completed:
        self.sandbox.snapshot()  # the hostile input exists now: only the run may change nothing
        return run_aims(*self.args(*extra))

    def run_measured(self, *extra: str | os.PathLike) -> Completed:
        self.sandbox.snapshot()
        result, rss = run_measured(*self.args(*extra))
        assert rss < RSS_LIMIT, f"peak RSS {rss / 2**20:.0f} MB >= {RSS_LIMIT / 2**20:.0f} MB\n{result.output}"
        return result

    def refused(self, result: Completed, *words: str) -> None:
        assert_refused(result, *words)
        assert not os.path.lexists(self.out), "a refused run wrote scores"
        assert list(self.sandbox.allowed.iterdir()) == [], "a refused run left temporaries"
        self.sandbox.assert_nothing_outside()

    # where things are
    def npz(self, k: int = 0) -> Path:
        return self.preds / "depth" / f"{self.gt[k].image_id}.npz"

    def png(self, k: int = 0) -> Path:
        g = self.gt[k]
        return self.preds / "depth" / g.image_id / f"{int(g.instance_ids[0])}.png"

    def records(self) -> list[dict]:
        return json.loads((self.preds / "depth.json").read_text())

    def put_records(self, recs: list[dict]) -> None:
        (self.preds / "depth.json").write_text(json.dumps(recs))

    def set_segmentation(self, k: int, seg: dict) -> None:
        recs = self.records()
        recs[k]["segmentation"] = seg
        self.put_records(recs)

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.gt[0].id_map.shape)


def make_case(sandbox: Sandbox, prepared: Path, gt: list, fmt: str) -> Case:
    data = copy_dataset(prepared, sandbox.outside / "dataset")
    preds = write_predictions(sandbox.outside / "preds", gt, fmt)
    return Case(sandbox, data, preds, gt)


@pytest.fixture
def rle(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "rle")


@pytest.fixture
def npz(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "npz")


@pytest.fixture
def png(sandbox, nyuv2_prepared, gt) -> Case:
    return make_case(sandbox, nyuv2_prepared, gt, "png")


# --------------------------------------------------------------------------- forged RLE


def test_forged_wraparound_rle_cannot_score_100(rle):
    """The forged full-image masks of every instance: the old scorer reported mIoU 100."""
    rle.put_records(forged_rle_records(rle.gt))
    rle.refused(rle.run(), "depth.json record 0", "corrupt RLE", "forged")
    assert not (rle.out / "results.json").exists()


# --------------------------------------------------------------------------- malformed RLE

def _rle_cases(hw: tuple[int, int]) -> dict[str, tuple[dict, tuple[str, ...]]]:
    h, w = hw
    n = h * w
    return {
        "negative-counts": ({"size": [h, w], "counts": [-5, n + 5]}, ("counts[0] is -5", "non-negative")),
        "counts-over-hw": ({"size": [h, w], "counts": [0, n - 10, 5, 6]}, ("already cover", f"{n}")),
        "counts-short-of-hw": ({"size": [h, w], "counts": coco_string([0, n - 1])}, ("cover", f"{n - 1} pixels")),
        "float-counts": ({"size": [h, w], "counts": [0, n / 2, n / 2]}, ("counts[1]", "float")),
        "bool-counts": ({"size": [h, w], "counts": [0, True, n - 1]}, ("counts[1]", "bool")),
        "counts-list-longer-than-hw+1": ({"size": [h, w], "counts": [0] * (n + 1) + [n]}, (f"{n + 2} runs",)),
        "overflowing-compressed-string": ({"size": [h, w], "counts": coco_string([0, 2**62, 0, n])},
                                          ("5-bit groups", "overflowing")),
        "compressed-string-too-long": ({"size": [h, w], "counts": "0" * (6 * (n + 1) + 1)}, ("characters",)),
        "huge-size-field": ({"size": [100000, 100000], "counts": "0"}, ("100000x100000", "pixels")),
        "size-of-another-image": ({"size": [w, h], "counts": [0, n]}, (f"mask size {w}x{h}", f"expected {h}x{w}")),
    }


RLE_CASES = list(_rle_cases((480, 640)))


@pytest.mark.parametrize("name", RLE_CASES)
def test_malformed_rle_is_refused(rle, name):
    seg, words = _rle_cases(rle.hw)[name]
    rle.set_segmentation(2, seg)
    rle.refused(rle.run(), "depth.json record 2", *words)


# --------------------------------------------------------------------------- hostile JSON


def test_deeply_nested_json_is_a_clear_error(rle):
    (rle.preds / "depth.json").write_text("[" * 100_000 + "]" * 100_000)
    rle.refused(rle.run(), "depth.json", "nested too deeply")


def test_oversized_json_is_refused_before_reading(rle):
    """60 MB (sparse: nothing on disk) against a bound of ~47 MB for 38 instances."""
    with open(rle.preds / "depth.json", "r+b") as fh:
        fh.truncate(60 << 20)
        fh.seek(0)
        fh.write(b"[")
    rle.refused(rle.run_measured(), "depth.json", "bytes", "instance(s)", "more than the")


def test_metadata_link_outside_is_not_read(rle):
    meta = rle.preds / "aims_predictions.json"
    meta.unlink()
    meta.symlink_to(rle.sandbox.outside / "bait.txt")
    rle.refused(rle.run(), "aims_predictions.json", "symbolic link")


# --------------------------------------------------------------------------- not regular files


def test_rle_file_linked_to_dev_zero_is_not_opened(rle):
    """The old reader read /dev/zero until MemoryError."""
    (rle.preds / "depth.json").unlink()
    (rle.preds / "depth.json").symlink_to("/dev/zero")
    rle.refused(rle.run_measured(), "depth.json", "symbolic link", "/dev/zero")


def test_rle_file_that_is_a_fifo_does_not_hang(rle):
    """The old reader blocked forever on the FIFO's open."""
    (rle.preds / "depth.json").unlink()
    os.mkfifo(rle.preds / "depth.json")
    rle.refused(rle.run(), "depth.json", "is a FIFO (named pipe)")


def test_rle_file_linked_outside_is_not_scored(rle):
    """A link to a real, valid predictions file elsewhere: scored by the old reader."""
    target = rle.sandbox.outside / "elsewhere.json"
    shutil.move(rle.preds / "depth.json", target)
    (rle.preds / "depth.json").symlink_to(target)
    rle.refused(rle.run(), "depth.json", "symbolic link")


def test_config_folder_linked_outside_is_not_followed(npz):
    real = npz.sandbox.outside / "other-depth"
    shutil.move(npz.preds / "depth", real)
    (npz.preds / "depth").symlink_to(real, target_is_directory=True)
    npz.refused(npz.run(), "depth", "symbolic link")


def test_png_mask_that_is_a_fifo_is_not_opened(png):
    png.png().unlink()
    os.mkfifo(png.png())
    png.refused(png.run(), str(png.png()), "is a FIFO (named pipe)")


def test_linked_predictions_root_is_fine(rle):
    """The folder the user names may itself be a link: it is their own path."""
    link = rle.sandbox.outside / "preds-link"
    link.symlink_to(rle.preds, target_is_directory=True)
    rle.preds = link
    result = rle.run()
    assert result.returncode == 0, result.output
    assert (rle.out / "results.json").is_file()
    rle.sandbox.assert_nothing_outside()


# --------------------------------------------------------------------------- npz


def test_npz_bomb_is_refused_from_its_header(npz):
    """masks.npy declares (1, 20000, 20000) bool: 400 MB decoded, ~400 KB on disk."""
    npz_bomb(npz.npz(), (1, 20000, 20000))
    assert npz.npz().stat().st_size < 1 << 20
    npz.refused(npz.run_measured(), str(npz.npz()), "mask size 20000x20000", "expected 480x640")


def test_npz_instance_ids_bomb_is_refused_from_its_header(npz):
    """instance_ids.npy declares 10**8 int64 ids (800 MB) for an image of a few instances."""
    npz_bomb(npz.npz(), (1, 480, 640), n_ids=10**8)
    npz.refused(npz.run_measured(), str(npz.npz()), "100000000 instance masks", "at most")


def test_npz_member_declaring_another_size_than_its_header(npz):
    g = npz.gt[0]
    masks = zeros_member("masks", (len(g.instance_ids), *g.id_map.shape), declared=10**9)
    npz.npz().write_bytes(_zip([npy_member("instance_ids", g.instance_ids), masks]))
    npz.refused(npz.run(), str(npz.npz()), "declares 1000000000 bytes")


def test_npz_directory_listing_thousands_of_members_is_refused(npz):
    """zipfile builds an object per listed member before anything can be checked."""
    members = [npy_member("instance_ids", np.array([1]))]
    members += [(f"m{i:05d}", b"", None, 0, 0) for i in range(10000)]
    npz.npz().write_bytes(_zip(members))
    npz.refused(npz.run(), str(npz.npz()), "lists 10001 member(s)")


def test_npy_renamed_to_npz_is_a_clear_error(npz):
    g = npz.gt[0]
    np.save(npz.npz().with_suffix(".tmp.npy"), np.stack([g.id_map == i for i in g.instance_ids]))
    os.replace(npz.npz().with_suffix(".tmp.npy"), npz.npz())
    npz.refused(npz.run(), str(npz.npz()), "single .npy array")


class _Touch:
    """Unpickling this creates the sandbox's bait target: proof the pickle never ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_pickled_npz_is_never_unpickled(npz):
    arr = np.empty(1, dtype=object)
    arr[0] = _Touch(npz.sandbox.absolute_target)
    raw = npy_header((1,), "|O") + pickle.dumps(arr, protocol=4)
    member = ("masks.npy", raw, None, zlib.crc32(raw), len(raw))
    npz.npz().write_bytes(_zip([npy_member("instance_ids", np.array([1])), member]))
    npz.refused(npz.run(), str(npz.npz()), "holds pickled Python objects", "never unpickled")


def test_npz_linked_to_dev_zero_is_not_opened(npz):
    npz.npz().unlink()
    npz.npz().symlink_to("/dev/zero")
    npz.refused(npz.run_measured(), str(npz.npz()), "symbolic link")


# --------------------------------------------------------------------------- png


def test_png_bomb_is_refused_from_its_ihdr(png):
    """IHDR 60000x60000 (3.6 gigapixels) in a file of a few KB."""
    png.png().write_bytes(png_bomb(60000, 60000))
    assert png.png().stat().st_size < 1 << 16
    png.refused(png.run_measured(), str(png.png()), "mask size 60000x60000", "expected 480x640")


def test_png_of_colour_type_rgb_is_refused_from_its_ihdr(png):
    ihdr = struct.pack(">IIBBBBB", 640, 480, 8, 2, 0, 0, 0)
    png.png().write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b""))
    png.refused(png.run(), str(png.png()), "single-channel", "colour type 2")


# --------------------------------------------------------------------------- dataset


def _shard(case: Case) -> Path:
    return next((case.data / "depth").glob("test-*.parquet"))


def _rewrite_shard(case: Case, change: Callable) -> Path:
    import pyarrow.parquet as pq

    shard = _shard(case)
    table = change(pq.read_table(shard))
    pq.write_table(table, shard)
    return shard


def test_truncated_parquet_shard_is_a_clear_error(rle):
    shard = _shard(rle)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    rle.refused(rle.run(), str(shard), "not a readable parquet")


def test_dataset_shard_missing_a_column_is_a_clear_error(rle):
    shard = _rewrite_shard(rle, lambda t: t.drop_columns(["bbox"]))
    rle.refused(rle.run(), str(shard), "no column 'bbox'")


def test_bad_png_cell_in_the_dataset_is_a_clear_error(rle):
    import pyarrow as pa

    def corrupt(table):
        cells = table.column("instances").to_pylist()
        cells[1] = {"bytes": cells[1]["bytes"][:60], "path": cells[1]["path"]}
        i = table.schema.get_field_index("instances")
        return table.set_column(i, table.schema.field(i), pa.array(cells, type=table.schema.field(i).type))

    shard = _rewrite_shard(rle, corrupt)
    rle.refused(rle.run(), str(shard), "column 'instances'", "not a readable PNG", repr(rle.gt[1].image_id))


def test_png_bomb_cell_in_the_dataset_is_refused_from_its_ihdr(rle):
    import pyarrow as pa

    def bomb(table):
        cells = table.column("instances").to_pylist()
        cells[0] = {"bytes": png_bomb(60000, 60000), "path": None}
        i = table.schema.get_field_index("instances")
        return table.set_column(i, table.schema.field(i), pa.array(cells, type=table.schema.field(i).type))

    shard = _rewrite_shard(rle, bomb)
    rle.refused(rle.run_measured(), str(shard), "column 'instances'", "60000x60000")


# --------------------------------------------------------------------------- the scores folder


def test_foreign_out_folder_is_never_replaced(rle):
    rle.out.mkdir()
    (rle.out / "thesis.tex").write_text("years of work\n")
    result = rle.run()
    assert_refused(result, str(rle.out), "not an `aims score` output folder")
    assert sorted(p.name for p in rle.out.iterdir()) == ["thesis.tex"]
    assert (rle.out / "thesis.tex").read_text() == "years of work\n"
    rle.sandbox.assert_nothing_outside()


def test_earlier_scores_folder_is_replaced_whole(rle):
    first = rle.run()
    assert first.returncode == 0, first.output
    stale = rle.out / "instances.parquet"
    results = json.loads((rle.out / "results.json").read_text())
    (rle.out / "results.json").unlink()  # what the old writer left when the disk filled
    again = rle.run()
    assert again.returncode == 0, again.output
    assert json.loads((rle.out / "results.json").read_text())["configs"] == results["configs"]
    assert stale.is_file() and sorted(p.name for p in rle.sandbox.allowed.iterdir()) == ["scores"]
    rle.sandbox.assert_nothing_outside()


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("fails_at", ["instances.parquet", "results.json"])
def test_full_disk_leaves_no_half_scores(rle, fails_at):
    """RLIMIT_FSIZE makes a write past the limit fail with EFBIG, as a full disk fails
    with ENOSPC. At 4 KB, instances.parquet (~9 KB) cannot be written. At 16 KB it can, and
    results.json — made ~40 KB by a long note in the predictions' metadata, which results
    copy — fails after it: the old writer left instances.parquet without results.json."""
    limit = 4096
    if fails_at == "results.json":
        limit = 16 * 1024
        meta_path = rle.preds / "aims_predictions.json"
        meta = json.loads(meta_path.read_text())
        meta["meta"]["notes"] = "a long description of the run " * 1300
        meta_path.write_text(json.dumps(meta))
    rle.sandbox.snapshot()
    result, _ = run_measured(*rle.args(), preexec=_limit_file_size(limit))
    rle.refused(result, "cannot write the scores", str(rle.out), "file size limit")
