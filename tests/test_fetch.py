"""Fetching: cache, verification, manual sources, the download path with an injected
downloader (no network here: the downloader copies a local file, the torchgeo pattern)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from aims.errors import AimsError, ChecksumError
from aims.fetch import SourceFile, fetch, file_hash, verify_file

PAYLOAD = b"AIMS test payload\n" * 1000


@pytest.fixture(autouse=True)
def aims_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "aims_home"
    monkeypatch.setenv("AIMS_HOME", str(home))
    return home


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The "server" copy of the file."""
    path = tmp_path / "server" / "data.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


class CopyDownloader:
    """Copies a local file to the output path and counts calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, url: str, output: Path) -> None:
        self.calls.append((url, Path(output)))
        shutil.copyfile(self.path, output)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_file_hash_streams_and_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD * 200)  # > 1 chunk
    assert file_hash(path) == sha256(PAYLOAD * 200)
    assert file_hash(path, "md5") == md5(PAYLOAD * 200)


def test_download_with_sha256(remote: Path, aims_home: Path) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}", size=len(PAYLOAD))
    dl = CopyDownloader(remote)
    path = fetch(f, dataset="demo", downloader=dl)
    assert path == aims_home / "downloads" / "demo" / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert dl.calls[0][0] == f.url
    # downloaded to a temporary sibling, not to the final name
    assert dl.calls[0][1].parent == path.parent and dl.calls[0][1].name != "data.bin"
    assert cache_files(path.parent) == ["data.bin"]  # no temporary left over


def test_download_with_md5_and_bare_sha256(remote: Path, tmp_path: Path) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", f"md5:{md5(PAYLOAD)}")
    assert fetch(f, cache_dir=tmp_path / "c1", downloader=CopyDownloader(remote)).read_bytes() == PAYLOAD
    g = SourceFile("data.bin", "https://example.org/data.bin", sha256(PAYLOAD).upper())
    assert fetch(g, cache_dir=tmp_path / "c2", downloader=CopyDownloader(remote)).read_bytes() == PAYLOAD


def test_unknown_hash_logs_computed_sha256(remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", None)
    with caplog.at_level("INFO", logger="aims.fetch"):
        fetch(f, cache_dir=tmp_path / "c", downloader=CopyDownloader(remote))
    assert sha256(PAYLOAD) in caplog.text


def test_checksum_mismatch_leaves_nothing(remote: Path, aims_home: Path) -> None:
    wrong = "0" * 64
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{wrong}")
    with pytest.raises(ChecksumError) as exc:
        fetch(f, dataset="demo", downloader=CopyDownloader(remote))
    msg = str(exc.value)
    assert "data.bin" in msg and wrong in msg and sha256(PAYLOAD) in msg
    assert "again" in msg  # says what to do
    assert cache_files(aims_home / "downloads" / "demo") == []


def test_md5_mismatch_names_both_hashes(remote: Path, tmp_path: Path) -> None:
    wrong = "f" * 32
    f = SourceFile("data.bin", "https://example.org/data.bin", f"md5:{wrong}")
    with pytest.raises(ChecksumError, match=f"md5:{wrong}.*md5:{md5(PAYLOAD)}"):
        fetch(f, cache_dir=tmp_path / "c", downloader=CopyDownloader(remote))
    assert cache_files(tmp_path / "c") == []


def test_size_mismatch(remote: Path, tmp_path: Path) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}", size=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumError) as exc:
        fetch(f, cache_dir=tmp_path / "c", downloader=CopyDownloader(remote))
    msg = str(exc.value)
    assert f"{len(PAYLOAD) + 1:,}" in msg and f"{len(PAYLOAD):,}" in msg and "data.bin" in msg
    assert cache_files(tmp_path / "c") == []


def test_cached_file_is_verified_and_reused(remote: Path, tmp_path: Path) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}", size=len(PAYLOAD))
    dl = CopyDownloader(remote)
    first = fetch(f, cache_dir=tmp_path / "c", downloader=dl)
    second = fetch(f, cache_dir=tmp_path / "c", downloader=dl)
    assert first == second and len(dl.calls) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_cache_is_fetched_again(remote: Path, tmp_path: Path, damage: str) -> None:
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}", size=len(PAYLOAD))
    dl = CopyDownloader(remote)
    path = fetch(f, cache_dir=tmp_path / "c", downloader=dl)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[10] ^= 0xFF
    else:
        del data[-5:]
    path.write_bytes(bytes(data))
    again = fetch(f, cache_dir=tmp_path / "c", downloader=dl)
    assert len(dl.calls) == 2 and again.read_bytes() == PAYLOAD


def test_failing_downloader_leaves_nothing(tmp_path: Path) -> None:
    def broken(url: str, output: Path) -> None:
        Path(output).write_bytes(b"partial")
        raise ConnectionError("connection reset")

    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}")
    with pytest.raises(AimsError, match="connection reset") as exc:
        fetch(f, cache_dir=tmp_path / "c", downloader=broken)
    assert "https://example.org/data.bin" in str(exc.value)
    assert cache_files(tmp_path / "c") == []


def test_interrupted_download_leaves_nothing(tmp_path: Path) -> None:
    def interrupted(url: str, output: Path) -> None:
        Path(output).write_bytes(b"partial")
        raise KeyboardInterrupt

    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}")
    with pytest.raises(KeyboardInterrupt):
        fetch(f, cache_dir=tmp_path / "c", downloader=interrupted)
    assert cache_files(tmp_path / "c") == []


def test_source_file_is_verified_and_used_in_place(remote: Path, tmp_path: Path) -> None:
    f = SourceFile("data.bin", None, f"sha256:{sha256(PAYLOAD)}", manual="Google Drive folder X")
    assert fetch(f, source=remote, cache_dir=tmp_path / "c") == remote
    assert cache_files(tmp_path / "c") == []  # not copied


def test_source_file_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "mine.bin"
    bad.write_bytes(b"not it")
    f = SourceFile("data.bin", None, f"sha256:{sha256(PAYLOAD)}", manual="Google Drive folder X")
    with pytest.raises(ChecksumError) as exc:
        fetch(f, source=bad)
    msg = str(exc.value)
    assert str(bad) in msg and sha256(PAYLOAD) in msg and sha256(b"not it") in msg
    assert bad.exists()  # the user's own file is never deleted


def test_source_folder_returned_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "extracted"
    folder.mkdir()
    f = SourceFile("data.zip", None, f"sha256:{sha256(PAYLOAD)}", manual="Google Drive folder X")
    assert fetch(f, source=folder) == folder


def test_source_missing(tmp_path: Path) -> None:
    f = SourceFile("data.zip", None, None, manual="Google Drive folder X")
    with pytest.raises(AimsError, match="does not exist"):
        fetch(f, source=tmp_path / "nope.zip")


def test_manual_source_missing_explains_what_to_do(aims_home: Path) -> None:
    f = SourceFile(
        "train.zip",
        "https://drive.google.com/file/d/XYZ",
        None,
        manual="open https://drive.google.com/file/d/XYZ in a browser and download train.zip",
    )
    cmd = "aims prepare --modality polarization --source /path/to/train.zip"
    with pytest.raises(AimsError) as exc:
        fetch(f, dataset="rgbp_glass", continue_command=cmd, downloader=lambda u, o: pytest.fail("downloaded"))
    msg = str(exc.value)
    expected_path = aims_home / "downloads" / "rgbp_glass" / "train.zip"
    assert str(expected_path) in msg and cmd in msg and "drive.google.com/file/d/XYZ" in msg
    assert exc.value.path == expected_path
    assert "\n" not in msg  # one paragraph


def test_manual_source_placed_in_cache_is_used(aims_home: Path) -> None:
    f = SourceFile("train.zip", None, f"sha256:{sha256(PAYLOAD)}", manual="Google Drive")
    cached = aims_home / "downloads" / "rgbp_glass" / "train.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    assert fetch(f, dataset="rgbp_glass") == cached


def test_manual_source_bad_in_cache_is_moved_aside(aims_home: Path) -> None:
    f = SourceFile("train.zip", None, f"sha256:{sha256(PAYLOAD)}", manual="Google Drive")
    cached = aims_home / "downloads" / "rgbp_glass" / "train.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"wrong")
    with pytest.raises(ChecksumError) as exc:
        fetch(f, dataset="rgbp_glass", continue_command="aims prepare --modality polarization")
    msg = str(exc.value)
    assert sha256(PAYLOAD) in msg and sha256(b"wrong") in msg and "aims prepare --modality polarization" in msg
    assert not cached.exists()
    assert (cached.parent / "train.zip.rejected").read_bytes() == b"wrong"


def test_cache_location_required() -> None:
    f = SourceFile("a.bin", "https://example.org/a.bin", None)
    with pytest.raises(TypeError):
        fetch(f)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(name="a/b.bin", url="u", known_hash=None),
        dict(name="a.bin", url="u", known_hash="sha256:xyz"),
        dict(name="a.bin", url="u", known_hash="crc99:" + "0" * 8),
        dict(name="a.bin", url=None, known_hash=None),
    ],
)
def test_bad_declarations_fail_early(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SourceFile(**kwargs)


def test_verify_file_returns_sha256_when_unpinned(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(PAYLOAD)
    assert verify_file(path, SourceFile("x", "u", None, size=len(PAYLOAD))) == sha256(PAYLOAD)
    assert verify_file(path, SourceFile("x", "u", f"md5:{md5(PAYLOAD)}")) is None


def test_http_path_uses_pooch(remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a downloader, pooch's HTTPDownloader is used (patched here: no network)."""
    import pooch

    seen: list[tuple[str, str, bool]] = []

    class FakeHTTP:
        def __init__(self, progressbar: bool = False, **kwargs: object) -> None:
            self.progressbar = progressbar

        def __call__(self, url: str, output_file: str, pooch_obj: object) -> None:
            seen.append((url, output_file, self.progressbar))
            shutil.copyfile(remote, output_file)

    monkeypatch.setattr(pooch, "HTTPDownloader", FakeHTTP)
    f = SourceFile("data.bin", "https://example.org/data.bin", f"sha256:{sha256(PAYLOAD)}")
    path = fetch(f, cache_dir=tmp_path / "c", progress=False)
    assert path.read_bytes() == PAYLOAD and seen[0][0] == f.url and seen[0][2] is False


# --------------------------------------------------------------------------- readable network errors

def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_one_readable_sentence(message: str) -> None:
    for raw in ("urllib3", "HTTPConnectionPool", "Max retries", " object at 0x", "Caused by"):
        assert raw not in message, message


def test_a_refused_connection_reads_as_one_sentence(tmp_path: Path):
    """The real pooch/requests download path against a local port nobody listens on."""
    pytest.importorskip("pooch")
    file = SourceFile("data.bin", f"http://127.0.0.1:{_closed_port()}/data.bin", None)
    with pytest.raises(AimsError) as err:
        fetch(file, cache_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    _assert_one_readable_sentence(message)
    assert "the server refused the connection" in message
    assert str(tmp_path / "cache" / "data.bin") in message  # where to put it by hand
    assert not list((tmp_path / "cache").iterdir())  # no partial file left


def test_an_http_error_status_reads_as_the_status(tmp_path: Path):
    import http.server
    import threading

    pytest.importorskip("pooch")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        file = SourceFile("absent.bin", f"http://127.0.0.1:{server.server_port}/no/such/file.bin", None)
        with pytest.raises(AimsError) as err:
            fetch(file, cache_dir=tmp_path / "cache", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    _assert_one_readable_sentence(str(err.value))
    assert "the server answered HTTP 404" in str(err.value)


def test_unknown_error_text_is_cut_and_loses_object_addresses():
    from aims.fetch import readable_network_error

    err = OSError("weird failure <urllib3.connection.HTTPSConnection object at 0x7f00deadbeef>: " + "x" * 500
                  + "\nsecond line")
    text = readable_network_error(err)
    assert "0x7f00deadbeef" not in text and "second line" not in text
    assert text.startswith("weird failure") and len(text) <= 160
