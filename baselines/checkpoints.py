"""``--checkpoint`` by name: Meta's released SAM weights, Hugging Face SAM repos, local files.

A user types one of four things: ``vit-b``/``vit-l``/``vit-h`` (Meta's released checkpoints),
a Hugging Face repo id such as ``facebook/sam-vit-base``, the path of a ``.pth`` file or of
a Hugging Face-format folder, or ``none``. :func:`resolve_checkpoint` turns that into one
local, checked thing (:class:`ResolvedCheckpoint`) *before* any weights are read, so that
training, prediction and ``describe`` all get the same answer and the same errors:

* Meta names go through :func:`aims.fetch.fetch`, exactly like dataset files: cached once
  under ``$AIMS_HOME/downloads/segment-anything/``, downloaded to a hidden ``.part``
  sibling, checked against the pinned byte size and sha256, and only then renamed into
  place. A cached file is checked again before each use.
* Hugging Face ids go through ``huggingface_hub.snapshot_download`` into the usual Hugging
  Face cache. ``config.json`` comes first and must say ``model_type: "sam"``, so a wrong id
  never downloads gigabytes; then only the weights (safetensors when the repo has them).
* With no network, or in offline mode (``HF_HUB_OFFLINE=1``), only local copies are used
  and the error says where to put the file, where to get it and the command to continue.
* Local paths are the user's own (a link is followed), but only a regular file or folder is
  accepted: a FIFO or a link to ``/dev/zero`` is refused by ``stat`` before anything opens
  it, a file must start like a ``torch.save`` file, and a folder may hold no FIFO, device
  or socket. ``torch.load`` (``weights_only``) happens later, in ``sam_loading``.

Where the pinned figures come from (Meta publishes the URLs but no checksums or sizes) is
written beside :data:`META_CHECKPOINTS` and in ``docs/weights.md``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aims.errors import AimsError, ChecksumError
from aims.fetch import Downloader, SourceFile, fetch, verify_file
from aims.paths import downloads_dir

__all__ = [
    "CACHE_FOLDER",
    "META_CHECKPOINTS",
    "MetaCheckpoint",
    "ResolvedCheckpoint",
    "offline_from_env",
    "resolve_checkpoint",
]

Kind = Literal["meta", "hf", "none"]

#: ``$AIMS_HOME/downloads/<CACHE_FOLDER>/`` holds Meta's checkpoints.
CACHE_FOLDER = "segment-anything"

_META_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class MetaCheckpoint:
    """One of Meta's released SAM checkpoints: its SAM size and the file as
    :mod:`aims.fetch` declares it (URL, pinned sha256, byte size).

    ``md5`` is recorded, not checked at run time (one hash pass over 2.5 GB is enough): it
    is the evidence that the pins describe Meta's files, because Meta's file names embed
    the first six hex digits of each file's md5 (``sam_vit_b_01ec64.pth`` ↔ ``01ec64…``).
    """

    sam_size: str
    file: SourceFile
    md5: str | None = None

    def __post_init__(self) -> None:
        # a typo in the table is a bug: fail at import, not after a 2.5 GB download
        if self.md5 is not None:
            if not re.fullmatch(r"[0-9a-f]{32}", self.md5):
                raise ValueError(f"{self.file.name}: md5 {self.md5!r} is not 32 hex digits")
            stem = self.file.name.rsplit(".", 1)[0]
            if not stem.endswith("_" + self.md5[:6]):
                raise ValueError(f"{self.file.name} does not embed the md5 prefix {self.md5[:6]}")


# Pinned figures. Meta's README names the URLs and publishes no checksum or size:
#   URLs  facebookresearch/segment-anything@dca509fe793f601edb92606367a655c15ac00fdf:README.md
#   sha256  computational-cell-analytics/micro-sam@00006fc6a86d4f6888f7ef333cf070987ffabb51:micro_sam/util.py
#           (pooch registry), and the same three values in
#           mazurowski-lab/SlicerSegmentWithSAM@09079a984f9cb737bd32d4d8864942de8cdda1fe:SegmentWithSAM/SegmentWithSAM.py
#   md5     Sanster/IOPaint@2f833029aa1d3b3094266a2bbf8eb4cb36923550:iopaint/plugins/interactive_seg.py
#           (each starts with the six hex digits in Meta's file name)
#   bytes   dafne-imaging/dafne@11608b28f19ad42b96a49681411420bf6bf6387d:src/dafne/utils/sam_mask_refine.py
# Not re-measured here: this machine has no network (see docs/weights.md).
META_CHECKPOINTS: dict[str, MetaCheckpoint] = {
    "vit-b": MetaCheckpoint(
        "vit-b",
        SourceFile("sam_vit_b_01ec64.pth", _META_URL + "sam_vit_b_01ec64.pth",
                   "sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
                   size=375_042_383),
        md5="01ec64d29a2fca3f0661936605ae66f8",
    ),
    "vit-l": MetaCheckpoint(
        "vit-l",
        SourceFile("sam_vit_l_0b3195.pth", _META_URL + "sam_vit_l_0b3195.pth",
                   "sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
                   size=1_249_524_607),
        md5="0b3195507c641ddb6910d2bb5adee89c",
    ),
    "vit-h": MetaCheckpoint(
        "vit-h",
        SourceFile("sam_vit_h_4b8939.pth", _META_URL + "sam_vit_h_4b8939.pth",
                   "sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
                   size=2_564_550_879),
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
    ),
}


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """What ``--checkpoint`` named, made local and checked.

    ``kind``: ``"meta"`` (``path`` is a ``.pth`` state dict in Meta's names), ``"hf"``
    (``path`` is a Hugging Face-format folder) or ``"none"`` (random initialisation, no
    path). ``origin`` says where the weights came from, for run records: a URL, a
    ``huggingface:owner/name@commit`` or a local path. ``sha256`` is the pinned digest the
    file was checked against (Meta's files only); ``sam_size`` the SAM size the checkpoint
    implies when known (``vit-b``, ``vit-l``, ``vit-h``).
    """

    kind: Kind
    path: Path | None
    spec: str
    origin: str
    sam_size: str | None = None
    sha256: str | None = None

    @property
    def argument(self) -> str:
        """What ``sam_loading.build_sam`` takes: ``"none"`` or the local path."""
        return "none" if self.path is None else str(self.path)


# ---------------------------------------------------------------------------------------
# limits on what a user can type and what a folder may hold

_MAX_SPEC_BYTES = 4096  # PATH_MAX on Linux; an HF id is at most 96 + 1 + 96 characters
_MAX_COMPONENT_BYTES = 255  # NAME_MAX
_MAX_CONFIG_BYTES = 1 << 20  # a SAM config.json is ~7 KB
_MAX_FOLDER_ENTRIES = 10_000
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HF_ID = re.compile(rf"{_HF_PART}/{_HF_PART}")
_TRUE = {"1", "ON", "YES", "TRUE"}
#: what is fetched from a Hub repo: the config, then the weights (safetensors first)
_HUB_CONFIG = ["config.json"]
_HUB_SAFETENSORS = ["config.json", "*.safetensors", "model.safetensors.index.json"]
_HUB_PICKLE = ["config.json", "pytorch_model*.bin", "pytorch_model.bin.index.json"]
_SAM_SIZES = {(768, 12): "vit-b", (1024, 24): "vit-l", (1280, 32): "vit-h"}


def offline_from_env() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to 1/ON/YES/TRUE,
    read now (huggingface_hub reads it once, at import). One switch for both kinds of
    download: an offline machine is offline for Meta's server too."""
    return any(os.environ.get(var, "").strip().upper() in _TRUE
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_checkpoint(
    spec: str,
    *,
    downloader: Downloader | None = None,
    offline: bool | None = None,
    known: Mapping[str, MetaCheckpoint] | None = None,
    hf_cache_dir: str | Path | None = None,
    progress: bool = True,
    command: str = "aims baseline train",
) -> ResolvedCheckpoint:
    """Resolve ``spec`` (the ``--checkpoint`` value) to local, checked weights.

    Order: ``none``; a name of ``known`` (default :data:`META_CHECKPOINTS`, case-insensitive);
    an existing file or folder; a Hugging Face repo id (``owner/name``). Names come first so
    ``vit-b`` always means Meta's file; pass ``./vit-b`` for a local folder of that name.

    * ``downloader(url, output)`` replaces the HTTP download of Meta's files (tests copy a
      local file); ``known`` replaces the pin table (tests pin their own tiny files).
    * ``offline``: no download of any kind, only local copies; ``None`` reads
      :func:`offline_from_env`.
    * ``hf_cache_dir``: the Hugging Face cache (default: huggingface_hub's, ``HF_HUB_CACHE``).
    * ``command`` starts the "continue with" line of the no-network message.

    Raises :class:`AimsError` (the CLI: one paragraph, exit 2) for every input a user can
    fix, :class:`ChecksumError` for a file that is not the pinned one.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    table = META_CHECKPOINTS if known is None else known
    if offline is None:
        offline = offline_from_env()
    _check_spec_text(spec)
    key = spec.strip().lower()
    if not key:  # Path("") is the current folder: an empty value must not mean "here"
        raise AimsError(f"--checkpoint is empty. {_choices_text(table)}")
    if key == "none":
        return ResolvedCheckpoint("none", None, spec, "random initialisation")
    if key in table:
        return _resolve_meta(spec, table[key], offline=offline, downloader=downloader,
                             progress=progress, command=command)
    path = Path(os.path.expanduser(spec))  # Path.expanduser raises on an unknown ~user
    found = _path_kind(path, spec)
    if found is not None:  # absolute for run records; links kept (the user's own path)
        path = Path(os.path.abspath(path))
    if found == "file":
        return _resolve_file(spec, path, table, progress=progress)
    if found == "dir":
        return _resolve_folder(spec, path, origin=str(path))
    if _is_hub_id(spec):
        return _resolve_hub(spec, offline=offline, hf_cache_dir=hf_cache_dir, table=table, command=command)
    raise AimsError(_unknown_message(spec, path, table))


# ---------------------------------------------------------------------------------------
# the text itself


def _shown(spec: str, limit: int = 120) -> str:
    """``spec`` as it can be printed: quoted, escaped, cut to ``limit`` characters (a
    hostile value must not fill the terminal or carry control characters)."""
    if len(spec) <= limit:
        return repr(spec)
    return f"{spec[:limit]!r}… ({len(spec):,} characters)"


def _check_spec_text(spec: str) -> None:
    """Refuse what no file name or repo id holds, before touching the file system: control
    characters (a NUL makes ``os.stat`` raise ValueError) and lengths past the kernel's
    limits (``ENAMETOOLONG`` would otherwise surface as a traceback)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in spec):
        raise AimsError(f"--checkpoint {_shown(spec)} contains control characters; no checkpoint "
                        "name, path or Hugging Face id does.")
    raw = os.fsencode(spec)
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if len(raw) > _MAX_SPEC_BYTES or longest > _MAX_COMPONENT_BYTES:
        raise AimsError(f"--checkpoint {_shown(spec)} is {len(raw):,} bytes long (longest name "
                        f"{longest:,}); a path is at most {_MAX_SPEC_BYTES:,} bytes with names of at "
                        f"most {_MAX_COMPONENT_BYTES}, and a Hugging Face id is owner/name of at most "
                        "96 characters each.")


def _is_hub_id(spec: str) -> bool:
    """``owner/name`` as the Hub spells it: word characters, ``-`` and ``.``, starting and
    ending with a word character, no ``--`` or ``..``, 96 characters per part. Anything
    with ``..``, a leading ``/`` or a third part can never reach the Hub."""
    return bool(_HF_ID.fullmatch(spec)) and "--" not in spec and ".." not in spec


def _choices_text(table: Mapping[str, MetaCheckpoint]) -> str:
    return (
        f"Choose one of: {', '.join(table)} (Meta's released SAM, downloaded once into "
        f"$AIMS_HOME/downloads/{CACHE_FOLDER}/ and checked against its pinned sha256); a Hugging "
        "Face SAM repo id (owner/name, e.g. facebook/sam-vit-base); the path of a Meta "
        "sam_vit_*.pth file or of a Hugging Face-format folder (config.json + model.safetensors); "
        "or none (random initialisation)."
    )


def _unknown_message(spec: str, path: Path, table: Mapping[str, MetaCheckpoint]) -> str:
    where = path if path.is_absolute() else Path.cwd() / path
    return (
        f"--checkpoint {_shown(spec)} is not a known name, an existing file or folder, or a "
        f"Hugging Face repo id (no file or folder {_shown(str(where))} exists). "
        f"{_choices_text(table)}"
    )


# ---------------------------------------------------------------------------------------
# Meta's released checkpoints (aims.fetch)


def _http_download(url: str, output: Path, progress: bool) -> None:
    """pooch's streaming HTTP download, as :mod:`aims.fetch` uses; imported when needed."""
    import pooch

    pooch.HTTPDownloader(progressbar=progress, chunk_size=1 << 20)(url, str(output), None)


def _pinned_sha256(file: SourceFile) -> str | None:
    if file.known_hash is None:
        return None
    algorithm, _, digest = file.known_hash.rpartition(":")
    return digest.lower() if algorithm.lower() in ("", "sha256") else None


def _resolve_meta(spec: str, entry: MetaCheckpoint, *, offline: bool, downloader: Downloader | None,
                  progress: bool, command: str) -> ResolvedCheckpoint:
    """The cached file when it checks out, else a download through :func:`aims.fetch.fetch`
    (``.part`` sibling, size and sha256 checked, renamed into place)."""
    cache = downloads_dir(CACHE_FOLDER)
    final = cache / entry.file.name
    failures: list[OSError] = []

    def transport(url: str, output: Path) -> None:
        # remember why a download failed: fetch's own message suggests `--source`, which
        # `aims baseline` does not have; ours names the cache path and --checkpoint
        try:
            if offline:
                raise ConnectionError("offline mode is on (HF_HUB_OFFLINE=1), so nothing is downloaded")
            if downloader is not None:
                downloader(url, output)
            else:
                _http_download(url, output, progress)
        except OSError as exc:  # requests' and pooch's network errors are OSErrors too
            failures.append(exc)
            raise

    try:
        path = fetch(entry.file, cache_dir=cache, downloader=transport, progress=progress)
    except ChecksumError:
        raise
    except AimsError:
        if failures:
            raise AimsError(_no_network_message(entry, final, failures[0], command), path=final) from None
        raise
    return ResolvedCheckpoint("meta", path, spec, origin=entry.file.url or str(path),
                              sam_size=entry.sam_size, sha256=_pinned_sha256(entry.file))


def _no_network_message(entry: MetaCheckpoint, final: Path, error: OSError, command: str) -> str:
    file = entry.file
    facts = []
    if file.size is not None:
        facts.append(f"{file.size:,} bytes")
    digest = _pinned_sha256(file)
    if digest is not None:
        facts.append(f"sha256 {digest}")
    about = f" ({', '.join(facts)})" if facts else ""
    reason = str(error).strip() or type(error).__name__
    return (
        f"Meta's SAM {entry.sam_size} checkpoint {file.name} is not in the AIMS cache and could "
        f"not be downloaded: {reason}. Download {file.url}{about} on a machine with network, "
        f"then either save it as {final} (exactly this name) and run the same command again, "
        f"or pass the file itself: {command} --checkpoint /path/to/{file.name} (with your other "
        "options). Its size and sha256 are checked either way."
    )


# ---------------------------------------------------------------------------------------
# local paths: the user's own, so a link is followed; only regular files and folders


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _path_kind(path: Path, spec: str) -> Literal["file", "dir"] | None:
    """``"file"``, ``"dir"`` or ``None`` (nothing there), judged with ``stat`` alone (no open):
    a FIFO, device or socket, or a link to one (``/dev/zero``), is refused by name."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise AimsError(f"--checkpoint {path} is a link to nothing ({_link_target(path)}).",
                            path=path) from None
        return None
    except OSError as exc:
        raise AimsError(f"cannot use --checkpoint {_shown(spec)}: {exc.strerror or exc}.") from None
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    raise AimsError(f"--checkpoint {path} is {_kind_of(st.st_mode)}{_link_note(path)}; a checkpoint is a "
                    "regular file (Meta's sam_vit_*.pth) or a folder (Hugging Face format). It was "
                    "not opened.", path=path)


def _link_target(path: Path) -> str:
    try:
        return "-> " + os.readlink(path)[:200]
    except OSError:
        return "unreadable link"


def _link_note(path: Path) -> str:
    return f" (a link {_link_target(path)})" if os.path.islink(path) else ""


def _open_regular(path: Path, what: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file: ``O_NONBLOCK`` so a name
    swapped for a FIFO cannot block, then ``fstat`` on the descriptor itself."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise AimsError(f"cannot open {path} ({what}): {exc.strerror or exc}.", path=path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise AimsError(f"{path} is {_kind_of(mode)}, not a regular file ({what}); it was not read.",
                        path=path)
    return fd


def _read_head(path: Path, n: int, what: str) -> bytes:
    fd = _open_regular(path, what)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(n)


def _check_torch_header(path: Path) -> None:
    """A ``.pth`` starts like what ``torch.save`` writes: a zip archive (``PK\\x03\\x04``,
    torch ≥ 1.6) or a pickle (``0x80`` then protocol 2–5, older torch). Four bytes decide,
    so ``/etc/passwd`` or a JPEG is refused before ``torch.load`` sees it."""
    head = _read_head(path, 4, "a PyTorch checkpoint")
    if head == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return
    found = "is empty" if not head else f"starts with the bytes {head!r}"
    raise AimsError(f"--checkpoint {path} is not a PyTorch checkpoint: it {found}, where torch.save "
                    "writes a zip archive (PK\\x03\\x04) or a pickle (\\x80\\x02). Pass Meta's "
                    "sam_vit_*.pth, a Hugging Face-format folder, or a name (vit-b, vit-l, vit-h, none).",
                    path=path)


def _resolve_file(spec: str, path: Path, table: Mapping[str, MetaCheckpoint], *,
                  progress: bool) -> ResolvedCheckpoint:
    """A ``.pth`` the user names. A file named like one of Meta's (``sam_vit_b_01ec64.pth``)
    must be that file: its size and sha256 are checked, as for a download, because a
    truncated copy is the common mistake and would otherwise fail deep inside torch."""
    _check_torch_header(path)
    entry = next((e for e in table.values() if e.file.name == path.name), None)
    if entry is None:
        return ResolvedCheckpoint("meta", path, spec, origin=str(path))
    remedy = (f"A file named {entry.file.name} must be Meta's {entry.sam_size} checkpoint; download it "
              f"again from {entry.file.url}, or rename a file that is something else.")
    verify_file(path, entry.file, what=f"--checkpoint {path}", remedy=remedy, progress=progress)
    return ResolvedCheckpoint("meta", path, spec, origin=str(path), sam_size=entry.sam_size,
                              sha256=_pinned_sha256(entry.file))


def _check_folder_entries(folder: Path) -> list[str]:
    """The names in ``folder`` after checking that each is (or links to) a regular file or
    a folder: transformers opens every weights file it finds, so a FIFO or a link to
    ``/dev/zero`` among them is refused here, by name. Links are allowed (the Hugging Face
    cache is built of links into its blob store)."""
    names: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) > _MAX_FOLDER_ENTRIES:
                    raise AimsError(f"{folder} holds more than {_MAX_FOLDER_ENTRIES:,} entries; a "
                                    "Hugging Face-format SAM folder holds a handful.", path=folder)
                try:
                    mode = os.stat(entry.path).st_mode
                except OSError as exc:
                    raise AimsError(f"{entry.path} in the checkpoint folder cannot be used "
                                    f"({exc.strerror or exc}{_link_note(Path(entry.path))}).",
                                    path=entry.path) from None
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise AimsError(f"{entry.path} is {_kind_of(mode)}{_link_note(Path(entry.path))}; a "
                                    "checkpoint folder may hold only regular files and folders. "
                                    "Nothing in it was opened.", path=entry.path)
    except OSError as exc:
        raise AimsError(f"cannot list the checkpoint folder {folder}: {exc.strerror or exc}.",
                        path=folder) from None
    return names


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json``: a regular file of at most 1 MiB holding a JSON object."""
    fd = _open_regular(path, "a Hugging Face config.json")
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(_MAX_CONFIG_BYTES + 1)
    if len(raw) > _MAX_CONFIG_BYTES:
        raise AimsError(f"{path} is larger than {_MAX_CONFIG_BYTES:,} bytes; a SAM config.json is a "
                        "few kilobytes.", path=path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AimsError(f"{path} is not a readable JSON config ({type(exc).__name__}).", path=path) from None
    if not isinstance(data, dict):
        raise AimsError(f"{path} holds a JSON {type(data).__name__}, not a config object.", path=path)
    return data


def _sam_config(folder: Path, names: list[str]) -> dict[str, Any]:
    if "config.json" not in names:
        raise AimsError(f"--checkpoint {folder} is a folder without config.json; expected a Hugging "
                        "Face-format SAM (what SamModel.save_pretrained writes, e.g. a copy of "
                        "facebook/sam-vit-base).", path=folder)
    config = _read_config(folder / "config.json")
    if config.get("model_type") != "sam":
        found = config.get("model_type")
        shown = _shown(found, 60) if isinstance(found, str) else "no model_type"
        raise AimsError(f"{folder / 'config.json'} describes {shown}, not a Segment Anything model "
                        "(model_type 'sam'); AIMS fine-tunes SAM only.", path=folder)
    return config


def _sam_size_of(config: Mapping[str, Any]) -> str | None:
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return None
    return _SAM_SIZES.get((vision.get("hidden_size"), vision.get("num_hidden_layers")))


def _has_weights(names: list[str]) -> bool:
    return any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin"))
               for n in names)


def _resolve_folder(spec: str, folder: Path, *, origin: str) -> ResolvedCheckpoint:
    """A Hugging Face-format folder (the user's, or a Hub snapshot): regular entries only,
    a SAM config, and weights."""
    names = _check_folder_entries(folder)
    config = _sam_config(folder, names)
    if not _has_weights(names):
        raise AimsError(f"{folder} holds a SAM config.json but no weights (model.safetensors or "
                        "pytorch_model.bin); copy or download the whole model.", path=folder)
    return ResolvedCheckpoint("hf", folder, spec, origin=origin, sam_size=_sam_size_of(config))


# ---------------------------------------------------------------------------------------
# Hugging Face Hub


def _hub_cache(hf_cache_dir: str | Path | None) -> str:
    if hf_cache_dir is not None:
        return str(hf_cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _summary(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}"


def _resolve_hub(repo_id: str, *, offline: bool, hf_cache_dir: str | Path | None,
                 table: Mapping[str, MetaCheckpoint], command: str) -> ResolvedCheckpoint:
    """``snapshot_download`` of ``config.json`` first (a non-SAM repo stops here, before any
    weights), then of the weights: safetensors when the repo has them, else
    ``pytorch_model*.bin`` (transformers loads those with ``weights_only``)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    def snapshot(patterns: list[str]) -> Path:
        return Path(snapshot_download(repo_id, cache_dir=hf_cache_dir, local_files_only=offline,
                                      allow_patterns=patterns))

    try:
        folder = snapshot(_HUB_CONFIG)
        _sam_config(folder, _check_folder_entries(folder))
        folder = snapshot(_HUB_SAFETENSORS)
        if not any(n.endswith(".safetensors") for n in _check_folder_entries(folder)):
            folder = snapshot(_HUB_PICKLE)
    except AimsError:
        raise
    except GatedRepoError as exc:
        raise AimsError(f"The Hugging Face repo {repo_id} is gated ({_summary(exc)}): accept its terms "
                        "on huggingface.co and log in (`hf auth login`, or set HF_TOKEN), then run the "
                        "command again.") from None
    except RepositoryNotFoundError:
        raise AimsError(f"There is no Hugging Face model repo {repo_id} that this machine may read (it "
                        "may be misspelt or private), and no file or folder of that name exists here "
                        f"({Path.cwd()}). {_choices_text(table)}") from None
    except RevisionNotFoundError as exc:
        raise AimsError(f"The Hugging Face repo {repo_id} has no main revision ({_summary(exc)}).") from None
    except LocalEntryNotFoundError as exc:  # offline, no network, or an incomplete cached snapshot
        raise AimsError(_hub_unreachable(repo_id, _hub_cache(hf_cache_dir), offline, exc, command)) from None
    except Exception as exc:
        # the Hub's HTTP errors (500s, proxies, TLS) are the network's, not AIMS's bugs
        if type(exc).__module__.split(".")[0] not in {"huggingface_hub", "httpx", "httpcore", "requests",
                                                       "urllib3", "ssl"} and not isinstance(exc, OSError):
            raise
        raise AimsError(f"Cannot get {repo_id} from the Hugging Face Hub ({_summary(exc)}). "
                        f"{_hub_help(repo_id, _hub_cache(hf_cache_dir), command)}") from None
    return _resolve_folder(repo_id, folder, origin=f"huggingface:{repo_id}@{folder.name}")


def _hub_help(repo_id: str, cache: str, command: str) -> str:
    return (f"On a machine with network, `hf download {repo_id} --include config.json --include "
            f"'*.safetensors'` fills the Hugging Face cache; copy its models--{repo_id.replace('/', '--')} "
            f"folder into {cache} here and run the same command again, or save the model as a folder "
            f"(SamModel.from_pretrained(id).save_pretrained(DIR)) and continue with: {command} "
            "--checkpoint DIR (with your other options).")


def _hub_unreachable(repo_id: str, cache: str, offline: bool, exc: BaseException, command: str) -> str:
    why = ("offline mode is on (HF_HUB_OFFLINE=1), so only the local cache is read" if offline
           else f"the Hub could not be reached ({_summary(exc)})")
    return (f"The Hugging Face model {repo_id} is not (completely) in the local Hugging Face cache "
            f"{cache}, and {why}. {_hub_help(repo_id, cache, command)}")
