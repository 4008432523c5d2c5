"""`aims.untrusted`: the one reader of files from outside (docs/security.md, "Everywhere").

Each promise is checked on the real file system: links (refused inside input folders,
followed for the user's own path), FIFOs (refused without blocking), a link to /dev/zero
and a device (refused, never read), sockets, folders, oversize files (refused before the
read, and while reading when the size lied), deep JSON (refused from a scan of the text,
before the parser), NaN/Infinity and floats that overflow. Then the readers that switched
to it keep those promises where the old copies did not (extraction marker, source hash).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import zipfile
from pathlib import Path

import pytest

from aims.errors import AimsError
from aims.untrusted import (
    CHAR_DEVICE,
    DIRECTORY,
    FIFO,
    FILE,
    LINK,
    MISSING,
    SOCKET,
    BadJsonError,
    FileTooLargeError,
    MissingFileError,
    NotRegularFileError,
    UntrustedFileError,
    classify,
    json_depth,
    load_json_bounded,
    nested_deeper_than,
    open_regular,
    parse_json,
    read_bounded,
)

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.json"
    path.write_text('{"a": [1, 2.5, "x"]}', encoding="utf-8")
    return path


def test_a_regular_file_is_read_whole(plain):
    assert read_bounded(plain, 100) == plain.read_bytes()
    assert read_bounded(plain, plain.stat().st_size) == plain.read_bytes()  # exactly at the bound
    assert load_json_bounded(plain, limit=100, max_depth=2) == {"a": [1, 2.5, "x"]}
    with open_regular(plain) as fh:
        assert fh.read() == plain.read_bytes()


def test_classify_names_every_kind_without_opening(tmp_path, plain):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(plain)
    (tmp_path / "dangling").symlink_to(tmp_path / "absent")
    assert classify(plain) == FILE
    assert classify(tmp_path / "dir") == DIRECTORY
    assert classify(tmp_path / "link") == LINK
    assert classify(tmp_path / "link", follow_links=True) == FILE
    assert classify(tmp_path / "dangling") == LINK
    assert classify(tmp_path / "dangling", follow_links=True) == MISSING
    assert classify(tmp_path / "absent") == MISSING
    assert classify(plain / "below-a-file") == MISSING


def test_a_link_is_refused_unless_followed_and_names_its_target(tmp_path, plain):
    link = tmp_path / "link.json"
    link.symlink_to(plain)
    with pytest.raises(NotRegularFileError) as err:
        read_bounded(link, 100, what="a predictions file")
    message = str(err.value)
    assert f"{link} is a symbolic link (to {plain})" in message and "a predictions file must be" in message
    assert err.value.kind == LINK and err.value.path == link
    # the reason follows the path in a caller's own words, naming no other path
    assert err.value.reason == "is a symbolic link, not a regular file" and str(plain) not in err.value.reason
    # the user's own path may be a link: followed to the regular file it names
    assert read_bounded(link, 100, follow_links=True) == plain.read_bytes()


@needs_dev_zero
@pytest.mark.parametrize("follow_links", [False, True])
def test_a_link_to_dev_zero_is_never_read(tmp_path, follow_links):
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(NotRegularFileError) as err:
        read_bounded(link, 1 << 30, follow_links=follow_links)
    assert "/dev/zero" in str(err.value)
    assert err.value.kind == (CHAR_DEVICE if follow_links else LINK)
    assert ("character device" in str(err.value)) is follow_links


@needs_dev_zero
def test_a_device_named_directly_is_refused_even_when_links_are_followed():
    with pytest.raises(NotRegularFileError) as err:
        open_regular("/dev/zero", follow_links=True, what="a results file")
    assert err.value.kind == CHAR_DEVICE and "/dev/zero is a character device, not a regular file" in str(err.value)


@needs_fifo
@pytest.mark.parametrize("follow_links", [False, True])
def test_a_fifo_is_refused_without_blocking(tmp_path, follow_links):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # no writer: an open without O_NONBLOCK, or a read, would block forever
    with pytest.raises(NotRegularFileError) as err:
        load_json_bounded(fifo, limit=100, follow_links=follow_links)
    assert err.value.kind == FIFO and "is a FIFO (named pipe), not a regular file" in str(err.value)
    link = tmp_path / "to-fifo.json"
    link.symlink_to(fifo)
    with pytest.raises(NotRegularFileError) as err:
        read_bounded(link, 100, follow_links=True)
    assert err.value.kind == FIFO and "(a symbolic link to " in str(err.value)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    if len(os.fsencode(path)) > 100:  # sun_path is ~108 bytes
        pytest.skip("temporary path too long for a Unix socket")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(NotRegularFileError) as err:
            read_bounded(path, 100, follow_links=True)
    assert err.value.kind == SOCKET and "is a socket" in str(err.value)


def test_a_folder_and_a_missing_file_are_named(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(NotRegularFileError, match="dir.json is a directory, not a regular file"):
        read_bounded(tmp_path / "dir.json", 100)
    with pytest.raises(MissingFileError) as err:
        read_bounded(tmp_path / "absent.json", 100, what="a results file", hint="Run `aims score` first.")
    assert str(err.value).endswith("Run `aims score` first.") and "a results file was expected" in str(err.value)
    assert err.value.reason == "does not exist"


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:  # sparse: 20 MiB on paper, nothing on disk
        fh.truncate(20 << 20)
    with pytest.raises(FileTooLargeError) as err:
        read_bounded(huge, 16 << 20, what="a results file")
    assert (err.value.size, err.value.limit) == (20 << 20, 16 << 20)
    assert "is 20,971,520 bytes, more than the 16,777,216 (16 MiB) accepted for a results file" in str(err.value)
    with pytest.raises(FileTooLargeError):
        open_regular(huge, limit=16 << 20)
    small = tmp_path / "small"
    small.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLargeError, match="is 101 bytes, more than the 100 accepted"):
        read_bounded(small, 100)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no /proc")
def test_a_file_larger_than_its_stat_says_is_stopped_while_reading():
    """/proc files are regular files whose size reads as 0: the fstat check passes, and
    the bounded read itself must stop at limit + 1."""
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(FileTooLargeError) as err:
        read_bounded("/proc/self/status", 10)
    assert err.value.size == 11 and "at least 11 bytes" in str(err.value)


def test_json_depth_counts_brackets_outside_strings_only():
    assert json_depth(b"1") == 0
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth(b'["\\"[[[", "]]]"]') == 1  # escaped quotes do not end the string
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000
    assert json_depth(b"[[]" * 3 + b"]" * 3) == 4
    assert not nested_deeper_than(b'{"a": [[1]]}', 3)
    assert nested_deeper_than(b'{"a": [[[1]]]}', 3)
    assert not nested_deeper_than(b'["[[[[[[[[[["]', 2)  # the strings' brackets do not count


def test_deep_json_is_one_clear_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadJsonError) as err:
        load_json_bounded(deep, limit=1 << 20, max_depth=16, what="an RLE predictions file")
    assert "more than 16 levels" in str(err.value) and "an RLE predictions file never nests" in str(err.value)
    # without a bound of its own (or a bound above it), the parser's limit is still one clear
    # error, not a RecursionError
    for bound in (None, 100_000):
        with pytest.raises(BadJsonError, match="beyond what the JSON parser can read"):
            load_json_bounded(deep, limit=1 << 20, max_depth=bound)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"a": {"b": {"c": [1]}}}))
    assert load_json_bounded(ok, limit=100, max_depth=4) == {"a": {"b": {"c": [1]}}}
    with pytest.raises(BadJsonError, match="more than 3 levels"):
        load_json_bounded(ok, limit=100, max_depth=3)


@pytest.mark.parametrize("token, words", [
    ("NaN", "holds NaN, which is not a number JSON allows"),
    ("Infinity", "holds Infinity, which is not a number JSON allows"),
    ("-Infinity", "holds -Infinity, which is not a number JSON allows"),
    ("1e400", "holds 1e400, a number that overflows a 64-bit float to infinity"),
    ("-" + "9" * 400 + ".0", "overflows a 64-bit float"),
])
def test_nan_infinity_and_overflow_are_refused(tmp_path, token, words):
    path = tmp_path / "n.json"
    path.write_text('{"miou": %s}' % token)
    with pytest.raises(BadJsonError) as err:
        load_json_bounded(path, limit=1 << 20)
    assert words in str(err.value) and str(path) in str(err.value)
    assert len(str(err.value)) < 400  # a 400-digit token is shortened


def test_parse_hooks_replace_the_refusals():
    assert parse_json(b'[NaN, 1e400]', source="x", parse_constant=lambda t: t, parse_float=str) == ["NaN", "1e400"]
    assert parse_json(b"[1.5, 7]", source="x") == [1.5, 7]


@pytest.mark.parametrize("data, words", [
    (b'{"a": "\xff"}', "is not UTF-8 text (invalid byte at offset 7)"),
    (b"{not json", "is not valid JSON (line 1, column 2"),
    (b"", "is not valid JSON (line 1, column 1"),
])
def test_text_that_is_not_json_is_named(data, words):
    with pytest.raises(BadJsonError) as err:
        parse_json(data, source="bad.json", hint="Re-create it.")
    assert str(err.value).startswith("bad.json ") and words in str(err.value)
    assert str(err.value).endswith("Re-create it.") and err.value.reason in str(err.value)


def test_every_refusal_is_an_aims_error_with_a_short_reason(tmp_path):
    """The CLI prints an AimsError as one paragraph (exit 2); callers that word their own
    message (a published card names no folder) use the reason, which names no path."""
    cases = [tmp_path / "absent", tmp_path]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        cases.append(tmp_path / "fifo")
    for path in cases:
        with pytest.raises(UntrustedFileError) as err:
            read_bounded(path, 10)
        assert isinstance(err.value, AimsError)
        assert err.value.reason and str(tmp_path) not in err.value.reason


# --------------------------------------------------------------------------- callers


@needs_fifo
def test_extraction_marker_that_is_a_fifo_does_not_hang_and_is_replaced(tmp_path):
    """The old marker reader (``read_text``) blocked on a FIFO; now it is not a marker."""
    from aims.extract import MARKER, safe_extract

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/x.txt", "hello")
    target = tmp_path / "out"
    target.mkdir()
    os.mkfifo(target / MARKER)
    assert safe_extract(archive, target) == target
    assert (target / "data" / "x.txt").read_text() == "hello"
    assert classify(target / MARKER) == FILE


@needs_fifo
def test_source_hash_refuses_a_fifo(tmp_path):
    from aims.fetch import file_hash

    fifo = tmp_path / "source.mat"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="a source file must be a plain file"):
        file_hash(fifo)
    real = tmp_path / "real.mat"
    real.write_bytes(b"abc")
    link = tmp_path / "link.mat"
    link.symlink_to(real)  # --source is the user's own path: a link is followed
    assert file_hash(link) == file_hash(real) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_file_without_read_permission_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0)
    with pytest.raises(UntrustedFileError, match="cannot read"):
        read_bounded(path, 10)
