"""``--checkpoint`` by name (issue 11, item 6): Meta's files through aims.fetch, Hugging
Face ids through huggingface_hub, local files and folders, and the no-network messages.

No network here. Meta downloads use a downloader that copies a local file (the pattern of
tests/test_fetch.py) with a pin table of the test's own tiny files; the real table is
checked for its form and against docs/weights.md. Hugging Face ids resolve from a cache
built on disk the way huggingface_hub lays it out (refs/, snapshots/ of links into blobs/),
read by the real library; "no network" is the real library failing to connect.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import zipfile
from pathlib import Path

import pytest

from aims.baselines.checkpoints import (CACHE_FOLDER, META_CHECKPOINTS, MetaCheckpoint, ResolvedCheckpoint,
                                        offline_from_env, resolve_checkpoint)
from aims.errors import AimsError, ChecksumError
from aims.fetch import SourceFile

REPO = Path(__file__).resolve().parents[1]
META_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_pth(path: Path, payload: bytes = b"tiny weights") -> bytes:
    """A file that starts like torch.save's output (a stored zip); its hash is this test's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", payload)
    return path.read_bytes()


def table(data: bytes, *, name: str = "sam_vit_b_01ec64.pth", pin: str | None = None) -> dict[str, MetaCheckpoint]:
    """A pin table like the real one, for the test's own file."""
    return {"vit-b": MetaCheckpoint("vit-b", SourceFile(name, f"https://example.org/{name}",
                                                        pin or f"sha256:{sha256(data)}", size=len(data)))}


class CopyDownloader:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, url: str, output: Path) -> None:
        self.calls.append((url, Path(output)))
        shutil.copyfile(self.source, output)


def never(url: str, output: Path) -> None:
    pytest.fail(f"downloaded {url} although it should not have")


@pytest.fixture
def cache() -> Path:
    """Where Meta's files land: $AIMS_HOME/downloads/segment-anything/ (AIMS_HOME is per test)."""
    return Path(os.environ["AIMS_HOME"]) / "downloads" / CACHE_FOLDER


@pytest.fixture
def server(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "server" / "sam_vit_b_01ec64.pth"
    return path, fake_pth(path)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------
# the real pin table


def test_real_table_pins_meta_files_with_sha256_size_and_md5_prefix() -> None:
    assert set(META_CHECKPOINTS) == {"vit-b", "vit-l", "vit-h"}
    for key, entry in META_CHECKPOINTS.items():
        f = entry.file
        assert entry.sam_size == key
        assert f.name == f"sam_{key.replace('-', '_')}_{entry.md5[:6]}.pth"
        assert f.url == META_URL + f.name
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", f.known_hash)
        assert f.size is not None and 300_000_000 < f.size < 3_000_000_000
        assert not f.is_manual
    sizes = [META_CHECKPOINTS[k].file.size for k in ("vit-b", "vit-l", "vit-h")]
    assert sizes == sorted(sizes)  # 91 M, 308 M, 636 M parameters


def test_docs_carry_the_same_pins_and_their_sources() -> None:
    """docs/weights.md is where a reader checks the pins: every figure of the code is there,
    with the repositories they were taken from."""
    doc = (REPO / "docs" / "weights.md").read_text(encoding="utf-8")
    for entry in META_CHECKPOINTS.values():
        f = entry.file
        assert f.url in doc and f.known_hash.split(":")[1] in doc and entry.md5 in doc
        assert f"{f.size:,}" in doc
    for source in ("facebookresearch/segment-anything@", "computational-cell-analytics/micro-sam@",
                   "mazurowski-lab/SlicerSegmentWithSAM@", "Sanster/IOPaint@", "dafne-imaging/dafne@"):
        assert source in doc


def test_a_pin_whose_md5_is_not_in_the_file_name_is_refused() -> None:
    file = SourceFile("sam_vit_b_01ec64.pth", META_URL + "sam_vit_b_01ec64.pth", None)
    with pytest.raises(ValueError, match="01ec64|md5"):
        MetaCheckpoint("vit-b", file, md5="ffffff" + "0" * 26)
    with pytest.raises(ValueError, match="32 hex"):
        MetaCheckpoint("vit-b", file, md5="01ec64")


# ---------------------------------------------------------------------------------------
# none


@pytest.mark.parametrize("spec", ["none", "None", "NONE"])
def test_none_is_random_initialisation(spec: str) -> None:
    resolved = resolve_checkpoint(spec, downloader=never)
    assert resolved == ResolvedCheckpoint("none", None, spec, "random initialisation")
    assert resolved.argument == "none"


# ---------------------------------------------------------------------------------------
# Meta's checkpoints through aims.fetch


def test_name_downloads_verifies_and_caches(server, cache: Path) -> None:
    source, data = server
    dl = CopyDownloader(source)
    resolved = resolve_checkpoint("vit-b", downloader=dl, known=table(data), offline=False, progress=False)
    assert resolved.kind == "meta" and resolved.sam_size == "vit-b"
    assert resolved.path == cache / "sam_vit_b_01ec64.pth" and resolved.path.read_bytes() == data
    assert resolved.argument == str(resolved.path)
    assert resolved.sha256 == sha256(data) and resolved.origin == "https://example.org/sam_vit_b_01ec64.pth"
    url, written = dl.calls[0]
    assert url == "https://example.org/sam_vit_b_01ec64.pth"
    assert written.parent == cache and written.name.startswith(".") and written.name.endswith(".part")
    assert listing(cache) == ["sam_vit_b_01ec64.pth"]  # the .part was renamed, nothing else left
    again = resolve_checkpoint("VIT-B", downloader=dl, known=table(data), offline=False, progress=False)
    assert again.path == resolved.path and len(dl.calls) == 1  # cached: checked, not fetched again


def test_offline_uses_a_verified_cached_file(server, cache: Path) -> None:
    source, data = server
    resolve_checkpoint("vit-b", downloader=CopyDownloader(source), known=table(data), offline=False,
                       progress=False)
    resolved = resolve_checkpoint("vit-b", downloader=never, known=table(data), offline=True, progress=False)
    assert resolved.path == cache / "sam_vit_b_01ec64.pth"


def test_offline_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch, cache: Path, server) -> None:
    _, data = server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_from_env()
    with pytest.raises(AimsError, match="offline mode"):
        resolve_checkpoint("vit-b", downloader=never, known=table(data), progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not offline_from_env()


def test_offline_without_the_file_says_where_to_put_it_and_how_to_continue(cache: Path) -> None:
    entry = META_CHECKPOINTS["vit-h"]  # the real pins: the message a user would see
    with pytest.raises(AimsError) as exc:
        resolve_checkpoint("vit-h", downloader=never, offline=True, progress=False)
    msg = str(exc.value)
    final = cache / "sam_vit_h_4b8939.pth"
    assert not isinstance(exc.value, ChecksumError)
    assert str(final) in msg and "exactly this name" in msg  # where to put it
    assert entry.file.url in msg and "2,564,550,879 bytes" in msg  # where to get it, what it is
    assert entry.file.known_hash.split(":")[1] in msg
    assert "aims baseline train --checkpoint /path/to/sam_vit_h_4b8939.pth" in msg  # how to continue
    assert "run the same command again" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--source" not in msg and "\n" not in msg
    assert exc.value.path == final and listing(cache) == []


def test_no_network_names_the_reason_and_leaves_nothing(cache: Path, server) -> None:
    _, data = server

    def unreachable(url: str, output: Path) -> None:
        Path(output).write_bytes(b"PK\x03\x04 half a download")
        raise ConnectionError("Failed to resolve 'example.org' (Name or service not known)")

    with pytest.raises(AimsError) as exc:
        resolve_checkpoint("vit-b", downloader=unreachable, known=table(data), offline=False,
                           progress=False, command="aims baseline predict")
    msg = str(exc.value)
    assert "Name or service not known" in msg and "https://example.org/sam_vit_b_01ec64.pth" in msg
    assert str(cache / "sam_vit_b_01ec64.pth") in msg and f"{len(data):,} bytes" in msg
    assert "aims baseline predict --checkpoint /path/to/sam_vit_b_01ec64.pth" in msg
    assert listing(cache) == []  # no .part, nothing under the final name


def test_checksum_mismatch_keeps_nothing_under_the_final_name(server, cache: Path) -> None:
    source, data = server
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as exc:
        resolve_checkpoint("vit-b", downloader=CopyDownloader(source), known=table(data, pin=f"sha256:{wrong}"),
                           offline=False, progress=False)
    assert wrong in str(exc.value) and sha256(data) in str(exc.value)
    assert listing(cache) == []


def test_a_damaged_cached_file_is_fetched_again(server, cache: Path) -> None:
    source, data = server
    dl = CopyDownloader(source)
    path = resolve_checkpoint("vit-b", downloader=dl, known=table(data), offline=False, progress=False).path
    path.write_bytes(data[:-3] + b"xyz")
    again = resolve_checkpoint("vit-b", downloader=dl, known=table(data), offline=False, progress=False)
    assert len(dl.calls) == 2 and again.path.read_bytes() == data


# ---------------------------------------------------------------------------------------
# local files


def test_a_file_named_like_metas_is_checked_in_place(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "mine" / "sam_vit_b_01ec64.pth"
    data = fake_pth(path)
    resolved = resolve_checkpoint(str(path), downloader=never, known=table(data), progress=False)
    assert resolved.kind == "meta" and resolved.path == path and resolved.sam_size == "vit-b"
    assert resolved.sha256 == sha256(data) and listing(cache) == []  # used in place, not copied
    truncated = tmp_path / "other" / "sam_vit_b_01ec64.pth"
    truncated.parent.mkdir()
    truncated.write_bytes(data[:-10])
    with pytest.raises(ChecksumError) as exc:
        resolve_checkpoint(str(truncated), downloader=never, known=table(data), progress=False)
    assert str(truncated) in str(exc.value) and "--checkpoint" in str(exc.value)
    assert truncated.exists()  # the user's own file is never deleted


def test_other_pth_files_are_taken_as_they_are(tmp_path: Path) -> None:
    zipped = tmp_path / "finetuned.pth"
    fake_pth(zipped)
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0alegacy torch.save")
    for path in (zipped, legacy):
        resolved = resolve_checkpoint(str(path), downloader=never)
        assert (resolved.kind, resolved.path, resolved.sha256, resolved.sam_size) == ("meta", path, None, None)


@pytest.mark.parametrize("content", [b"", b"root:x:0:0:root:/root:/bin/bash\n", b"\xff\xd8\xff\xe0 JPEG"])
def test_a_file_that_is_not_a_torch_checkpoint_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(AimsError, match="not a PyTorch checkpoint") as exc:
        resolve_checkpoint(str(path), downloader=never)
    assert str(path) in str(exc.value)


# ---------------------------------------------------------------------------------------
# Hugging Face-format folders and Hub ids


@pytest.fixture(scope="module")
def tiny_hf_folder(tmp_path_factory) -> Path:
    """A real Hugging Face-format tiny SAM (config.json + model.safetensors)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import SamModel

    from aims.baselines.sam_loading import sam_config

    folder = tmp_path_factory.mktemp("tiny") / "tiny-sam"
    SamModel(sam_config("tiny")).save_pretrained(str(folder))
    return folder


def hub_cache(root: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """A Hugging Face cache as huggingface_hub writes it: blobs/, snapshots/<commit>/ of links
    into blobs/, refs/main. Returns the snapshot folder."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / sha256(data)
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def test_a_local_folder_resolves_and_loads(tiny_hf_folder: Path) -> None:
    import torch

    from aims.baselines.sam_loading import build_sam

    resolved = resolve_checkpoint(str(tiny_hf_folder), downloader=never)
    assert (resolved.kind, resolved.path, resolved.origin) == ("hf", tiny_hf_folder, str(tiny_hf_folder))
    model = build_sam(resolved.argument)
    from safetensors.torch import load_file

    saved = load_file(str(tiny_hf_folder / "model.safetensors"))
    own = model.state_dict()
    assert saved and all(torch.equal(own[k], v) for k, v in saved.items())


def test_a_hub_id_resolves_offline_from_the_hugging_face_cache(tiny_hf_folder: Path, tmp_path: Path) -> None:
    from aims.baselines.sam_loading import build_sam

    hf = tmp_path / "hf"
    snap = hub_cache(hf, "facebook/sam-vit-base", {n: tiny_hf_folder / n for n in ("config.json", "model.safetensors")})
    resolved = resolve_checkpoint("facebook/sam-vit-base", downloader=never, offline=True, hf_cache_dir=hf)
    assert resolved.kind == "hf" and resolved.path == snap
    assert resolved.origin == f"huggingface:facebook/sam-vit-base@{COMMIT}"
    assert build_sam(resolved.argument).config.vision_config.hidden_size == 32  # the tiny one, loaded


def test_sam_size_is_read_from_the_config(tmp_path: Path) -> None:
    folder = tmp_path / "vitl"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "sam", "vision_config": {"hidden_size": 1024, '
                                        '"num_hidden_layers": 24}}')
    (folder / "model.safetensors").write_bytes(b"unread here")
    assert resolve_checkpoint(str(folder), downloader=never).sam_size == "vit-l"


@pytest.mark.parametrize("files, message", [
    ({"model.safetensors": b"x"}, "without config.json"),
    ({"config.json": b'{"model_type": "bert"}', "model.safetensors": b"x"}, "'bert', not a Segment Anything"),
    ({"config.json": b'{"model_type": "sam"}'}, "no weights"),
    ({"config.json": b"[1, 2]", "model.safetensors": b"x"}, "JSON list"),
    ({"config.json": b"{not json", "model.safetensors": b"x"}, "not a readable JSON"),
])
def test_folders_that_are_not_a_sam_model_are_refused(tmp_path: Path, files: dict, message: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with pytest.raises(AimsError, match=re.escape(message)):
        resolve_checkpoint(str(folder), downloader=never)


def test_a_hub_id_that_is_not_sam_stops_before_the_weights(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hub_cache(hf, "google-bert/bert-base-uncased", {"config.json": b'{"model_type": "bert"}'})
    with pytest.raises(AimsError, match="not a Segment Anything"):
        resolve_checkpoint("google-bert/bert-base-uncased", offline=True, hf_cache_dir=hf)


def test_offline_hub_id_not_in_the_cache_explains(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(AimsError) as exc:
        resolve_checkpoint("facebook/sam-vit-huge", offline=True, hf_cache_dir=hf)
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE=1" in msg and str(hf) in msg and "models--facebook--sam-vit-huge" in msg
    assert "hf download facebook/sam-vit-huge --include config.json" in msg
    assert "aims baseline train --checkpoint DIR" in msg
    assert "\n" not in msg and listing(hf) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_id_with_no_network_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real library, online, against an address that refuses connections."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    hf = tmp_path / "hf"
    with pytest.raises(AimsError) as exc:
        resolve_checkpoint("facebook/sam-vit-base", offline=False, hf_cache_dir=hf, command="aims baseline describe")
    msg = str(exc.value)
    assert "could not be reached" in msg and "refused" in msg.lower()
    assert "aims baseline describe --checkpoint DIR" in msg
    assert "hf download facebook/sam-vit-base" in msg and str(hf) in msg


# ---------------------------------------------------------------------------------------
# anything else


@pytest.mark.parametrize("spec", ["vit_b", "sam-vit-base", "", "  ", "vit-x", "models/sam/", "facebook/sam--vit"])
def test_an_unknown_spec_lists_the_choices(spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AimsError) as exc:
        resolve_checkpoint(spec, downloader=never, offline=True, hf_cache_dir=tmp_path / "hf")
    msg = str(exc.value)
    for choice in ("vit-b, vit-l, vit-h", "facebook/sam-vit-base", "none", "sam_vit_*.pth", "config.json"):
        assert choice in msg
    assert (str(tmp_path) in msg) if spec.strip() else ("is empty" in msg)  # Path("") is not "here"
    assert "\n" not in msg
    assert not (tmp_path / "hf").exists()  # no Hub look-up for what is not an id


def test_a_known_name_wins_over_a_folder_of_that_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     server) -> None:
    _, data = server
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vit-b").mkdir()
    with pytest.raises(AimsError, match="offline mode"):  # vit-b means Meta's file
        resolve_checkpoint("vit-b", downloader=never, known=table(data), offline=True)
    with pytest.raises(AimsError, match="without config.json"):  # ./vit-b means the folder
        resolve_checkpoint("./vit-b", downloader=never, known=table(data), offline=True)


def test_a_relative_path_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake_pth(tmp_path / "sub" / "w.pth")
    resolved = resolve_checkpoint("sub/w.pth", downloader=never)
    assert resolved.path == tmp_path / "sub" / "w.pth" and resolved.origin == str(tmp_path / "sub" / "w.pth")
