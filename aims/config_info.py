"""What ``aims_config.json`` holds: :class:`ConfigInfo`, everything the card says about a
config, and how it is read back safely.

Its own module because both the writer (which writes it and swaps config folders) and the
card (which renders it) need it, and the card must not import the writer. A config prepared
by this toolkit also carries its record (``record``, :class:`aims.converters.record.ConfigRecord`
as JSON) and where each split's instances came from (``instance_source``), so a fresh process
that only has the dataset knows the config (:func:`aims.converters.registry.register_prepared_records`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aims import __version__
from aims.errors import AimsError
from aims.untrusted import UntrustedFileError, load_json_bounded, read_bounded

#: File in each config folder that records its :class:`ConfigInfo`.
CONFIG_INFO_FILE = "aims_config.json"
#: The marker in ``aims_config.json`` that says "AIMS wrote this folder"; a later layout
#: bumps the number, and any ``aims-config/`` version counts as ours.
CONFIG_FORMAT = "aims-config/1"
CONFIG_FORMAT_PREFIX = "aims-config/"
#: ``aims_config.json`` files larger than this are not read (ours are a few kB).
CONFIG_INFO_MAX_BYTES = 10 * 2**20
#: what a config name and a split name may be
CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SPLIT_NAME = re.compile(r"^\w+$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_str_dict(v: Any, value_ok: Callable[[Any], bool]) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and value_ok(x) for k, x in v.items())


def _is_counts(v: Any) -> bool:
    return _is_str_dict(v, lambda c: _is_str_dict(c, lambda n: _is_int(n) and n >= 0)) and all(
        SPLIT_NAME.match(s) for s in v)


def _is_stats(v: Any) -> bool:
    return _is_str_dict(v, lambda st: _is_str_dict(
        st, lambda xs: isinstance(xs, list) and all(_is_number(x) for x in xs)))


#: field → (check, what it must be); what a card needs to render without surprises
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "config": (lambda v: isinstance(v, str) and bool(CONFIG_NAME.match(v)),
               "a config name (lower-case letters, digits, '-' and '_')"),
    **{name: (lambda v: isinstance(v, str), "a string") for name in (
        "description", "source", "homepage", "license", "license_name", "license_link",
        "citation", "toolkit_version", "protocol")},
    "columns": (lambda v: _is_str_dict(v, lambda x: isinstance(x, str)), "an object of strings"),
    "category_names": (_is_str_list, "a list of strings"),
    "connectivity": (lambda v: _is_int(v) and v in (4, 8), "4 or 8"),
    "ignore_labels": (lambda v: isinstance(v, list) and all(_is_int(x) for x in v), "a list of integers"),
    "channel_stats": (_is_stats, "an object {column: {statistic: [numbers]}}"),
    "counts": (_is_counts, "an object {split: {'images': n, 'instances': n}} of non-negative integers"),
    "notes": (_is_str_list, "a list of strings"),
    "image_notes": (_is_str_list, "a list of strings"),
    "instance_source": (lambda v: _is_str_dict(v, lambda x: isinstance(x, dict) and isinstance(x.get("kind"), str)),
                        "an object {split: {'kind': ..., 'connectivity': ..., 'detail': ...}}"),
    "record": (lambda v: isinstance(v, dict), "an object (the config's record)"),
}


@dataclass
class ConfigInfo:
    """Everything the dataset card says about one config; saved as JSON next to its shards.

    ``counts`` and ``channel_stats`` are filled by :func:`write_config` from the rows it
    writes (the values passed in are replaced), so the card always matches the files.
    ``columns`` maps a stored image column (``rgb`` and the modality columns) to a text
    giving its encoding and units; left empty, it is filled from :mod:`aims.schema`. ``license`` is a Hugging Face licence id,
    or ``"other"`` with ``license_name``/``license_link``.
    """

    config: str
    description: str = ""
    source: str = ""
    homepage: str = ""
    license: str = "other"
    license_name: str = ""
    license_link: str = ""
    citation: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    category_names: list[str] = field(default_factory=list)
    connectivity: int = 8
    ignore_labels: list[int] = field(default_factory=list)
    channel_stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    toolkit_version: str = __version__
    protocol: str = "aims-v1"
    notes: list[str] = field(default_factory=list)
    image_notes: list[str] = field(default_factory=list)
    #: official split -> where its instances came from (``InstanceSource.to_dict()``);
    #: empty in files written before it existed (then: connected components)
    instance_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the config's record (``ConfigRecord.to_dict()``); empty before records existed
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, led by the ``format`` marker that makes the folder ours."""
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigInfo:
        """Build from JSON, checking every known field's type (the card is rendered from
        them); unknown keys (from a newer toolkit) are ignored, not fatal. Raises
        ``ValueError`` naming the first bad field."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "modality_columns" in data and "columns" not in data:  # early spelling
            data["columns"] = data.pop("modality_columns")
        fmt = data.get("format", CONFIG_FORMAT)
        if not (isinstance(fmt, str) and fmt.startswith(CONFIG_FORMAT_PREFIX)):
            raise ValueError(f"its \"format\" is {fmt!r:.60}, not an AIMS config format ({CONFIG_FORMAT})")
        if "config" not in data:
            raise ValueError("it has no \"config\" key")
        for name, (ok, what) in _FIELD_CHECKS.items():
            if name in data and not ok(data[name]):
                raise ValueError(f"its field {name!r} is not {what}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> ConfigInfo:
        """Read ``aims_config.json`` (a file, or the config folder holding it). Raises
        :class:`AimsError` naming the file when it cannot be read or is not a ConfigInfo."""
        p = Path(path)
        if p.is_dir():
            p = p / CONFIG_INFO_FILE
        try:
            return cls.from_dict(read_json_object(p, CONFIG_INFO_MAX_BYTES))
        except ValueError as exc:
            raise AimsError(f"{p} is not a readable AIMS config description: {exc}. Prepare "
                            "the config again (`aims prepare`) to rewrite it.", path=p) from None


def read_json_object(path: Path, max_bytes: int) -> dict[str, Any]:
    """A JSON object from a *regular* file of at most ``max_bytes``, without following a
    symbolic link, blocking on a FIFO or reading a device (:mod:`aims.untrusted`). Raises
    ``ValueError`` with a short reason that names no content of the file; NaN statistics
    written by :meth:`ConfigInfo.to_json` are accepted."""
    try:
        data = load_json_bounded(path, limit=max_bytes, what=path.name, max_depth=32,
                                 parse_constant=float)
    except UntrustedFileError as exc:
        raise ValueError(f"{path.name} {exc.reason}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a JSON {type(data).__name__}, not an object")
    return data


def read_regular_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (:func:`aims.untrusted.read_bounded`,
    links not followed); ``ValueError`` with a short reason."""
    try:
        return read_bounded(path, max_bytes, what=path.name)
    except UntrustedFileError as exc:
        raise ValueError(f"{path.name} {exc.reason}") from None


def read_config_folder(folder: Path) -> ConfigInfo:
    """The :class:`ConfigInfo` of one config folder, refusing a linked folder and a
    description of another config. Raises ``ValueError`` with a short reason."""
    if folder.is_symlink():
        raise ValueError("the folder is a symbolic link")
    info = ConfigInfo.from_dict(read_json_object(folder / CONFIG_INFO_FILE, CONFIG_INFO_MAX_BYTES))
    if info.config != folder.name:
        raise ValueError(f"it describes config {info.config!r}, but its folder is named {folder.name!r}")
    return info


def scan_config_infos(dataset_dir: str | Path) -> list[ConfigInfo]:
    """The readable configs of a prepared dataset folder, by folder name (hidden and
    unreadable folders are left out silently; :func:`aims.writer.scan_configs` reports them)."""
    root = Path(dataset_dir)
    infos = []
    if not root.is_dir():
        return infos
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not os.path.lexists(d / CONFIG_INFO_FILE):
            continue
        try:
            infos.append(read_config_folder(d))
        except ValueError:
            continue
    return infos
