"""A modality of your own: a folder with ``aims-source.yaml`` becomes a source like the built-ins.

The layout (docs/bring-your-own-modality.md has a complete example)::

    DIR/aims-source.yaml                               what the data is (validated)
    DIR/images/{train,test}/<id>.{npy,tif,tiff,png}    (H, W) or (H, W, C), any numeric dtype
    DIR/labels/{train,test}/<id>.png                   class ids (semantic) or instance ids
    DIR/rgb/{train,test}/<id>.png                      optional registered RGB
    DIR/categories/{train,test}/<id>.json              optional: class of each instance id

``aims prepare --source DIR`` then builds one config named ``name`` through the same
pipeline as the built-in sources (instances, clicks, validation carve-out, statistics,
card). This is the proof that records are declarative: the YAML becomes a
:class:`~aims.converters.record.SourceRecord` (:func:`build_record`) and nothing else
about the config is written anywhere; a prepared dataset carries the record in its
``aims_config.json``, so ``aims score``, ``aims show`` and ``aims baseline`` know the
config in any later process.

Three steps, each refusing bad input with :class:`~aims.errors.SourceFormatError` naming
the key or the file (the CLI prints it and exits 2):

1. :func:`read_source_spec` reads the YAML: a regular file of at most 1 MiB, parsed by
   PyYAML's safe loader, with no anchors or aliases (no "billion laughs"), at most
   :data:`MAX_YAML_DEPTH` levels, no duplicate keys, only known keys, every value typed
   and bounded;
2. :func:`register_custom_source` turns it into a record (one image column named like the
   config, stored as an AIMS array PNG — :mod:`aims.imageio` — and decoded by
   ``exact_float32``; ``rgb`` too when the folder has one) and registers it with its
   converter;
3. :class:`CustomSource` lists the samples in the main process from the files' *headers*
   (sizes, channels, dtypes, links, file sizes: nothing is decoded) and loads each in a
   worker, where the pixel rules are checked (class ids, NaN, exactness in float32).

Unlike the built-ins, whose damaged samples are skipped and named in the card (a public
release cannot be fixed by its user), any bad file of your own folder stops ``prepare``
with the file's name, and nothing is written: you can fix it.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import stat
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from aims.converters.base import Downloader, Listing, Sample, SampleRef, SourceConverter
from aims.converters.record import (
    CONNECTED_COMPONENTS,
    RELEASE_INSTANCES,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceRecord,
)
from aims.errors import SourceFormatError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_STORED_VALUES",
    "SOURCE_FILE",
    "ArrayHeader",
    "Channel",
    "CustomSource",
    "SourceSpec",
    "array_header",
    "build_record",
    "custom_source_folder",
    "first_file_facts",
    "read_array",
    "read_source_spec",
    "register_custom_source",
]

#: the file that makes a folder a source of your own
SOURCE_FILE = "aims-source.yaml"
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
#: bounds on the YAML: size, nesting, number of parse events
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 8
MAX_YAML_EVENTS = 100_000
#: largest image, label, rgb file read (larger images: cut them into tiles)
MAX_FILE_BYTES = 512 * 2**20
#: largest categories JSON
MAX_JSON_BYTES = 2**20
#: most values (H·W·C) of one image, and pixels of one label: the stored PNG must stay under
#: Pillow's decompression-bomb warning (89,478,485 pixels), which `datasets` decodes with
MAX_STORED_VALUES = 89_478_485
MAX_CLASSES = 1000
MAX_CHANNELS = 64
MAX_NAME_LENGTH = 40
MAX_NOTES = 20
#: image ids are file names everywhere (panels, predictions): the same rule as `aims show`
IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
CONFIG_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: dtypes accepted in source arrays (8-byte ones only where every value is exact in float32)
SOURCE_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                 "float16", "float32", "float64")
#: TIFF layouts read: one image, samples last (YX, YXS) or a band stack first (SYX …)
_TIFF_PLANAR = ("SYX", "CYX", "QYX", "IYX")

LABEL_KINDS = ("semantic", "instances")
REQUIRED_KEYS = ("name", "description", "license", "citation", "classes", "channels", "labels")
OPTIONAL_KEYS = ("title", "homepage", "label", "connectivity", "void", "notes")
CHANNEL_KEYS = ("name", "unit")


# --------------------------------------------------------------------------- the YAML


@dataclass(frozen=True)
class Channel:
    """One channel of the images: its name and unit (``""``: no unit)."""

    name: str
    unit: str

    @property
    def text(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


@dataclass(frozen=True)
class SourceSpec:
    """What ``aims-source.yaml`` says, every key checked (see the module docstring)."""

    name: str
    description: str
    license: str
    citation: str
    classes: tuple[str, ...]
    channels: tuple[Channel, ...]
    labels: str
    title: str = ""
    homepage: str = ""
    label: str = ""
    connectivity: int = 8
    void: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()


def _fail(path: Path, message: str) -> SourceFormatError:
    return SourceFormatError(f"{path}: {message}", path=path)


def custom_source_folder(paths: Sequence[Path] | None) -> Path | None:
    """The ``--source`` folder holding ``aims-source.yaml``, or None when no ``--source``
    is one. A source of your own is one folder: several ``--source`` with one of them a
    folder of your own is refused."""
    paths = list(paths or [])
    own = [p for p in paths if Path(p).expanduser().is_dir() and os.path.lexists(Path(p).expanduser() / SOURCE_FILE)]
    if not own:
        return None
    if len(paths) > 1:
        raise SourceFormatError(f"--source {own[0]} holds {SOURCE_FILE} (a modality of your own), which "
                                "is prepared on its own: pass that one folder as the only --source.",
                                path=own[0])
    return Path(own[0]).expanduser()


def _yaml_text(path: Path) -> str:
    from aims.config_info import read_regular_bytes

    try:
        raw = read_regular_bytes(path, MAX_YAML_BYTES)
    except ValueError as exc:
        raise _fail(path, f"{exc} (it must be a regular file of at most {MAX_YAML_BYTES // 2**20} MiB, "
                          "not a link)") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"is not UTF-8 text (byte {exc.start})") from None


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"


def _check_structure(path: Path, text: str) -> None:
    """No anchors or aliases, bounded nesting and size, before anything is constructed:
    safe_load alone would expand an alias bomb."""
    import yaml

    depth = 0
    try:
        for count, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader)):
            if count > MAX_YAML_EVENTS:
                raise _fail(path, f"is too large (more than {MAX_YAML_EVENTS} YAML items)")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _fail(path, f"{_where(event.start_mark)}: anchors and aliases (&name, *name) are "
                                  "not allowed; write each value out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise _fail(path, f"{_where(event.start_mark)}: nested more than {MAX_YAML_DEPTH} "
                                      "levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise _fail(path, f"is not valid YAML ({_yaml_problem(exc)})") from None


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{_where(mark)}: {problem}" if mark is not None else str(problem)


def _check_duplicates(path: Path, node: Any) -> None:
    import yaml

    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in n.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise _fail(path, f"{_where(key.start_mark)}: key {key.value!r} is given twice")
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _load_yaml(path: Path) -> Any:
    import yaml

    text = _yaml_text(path)
    _check_structure(path, text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _fail(path, "is empty; it must say what the data is (docs/bring-your-own-modality.md)")
        _check_duplicates(path, node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _fail(path, f"is not valid YAML for AIMS ({_yaml_problem(exc)}); only plain values, "
                          "lists and mappings are allowed") from None
    finally:
        loader.dispose()


def _unknown_key(path: Path, key: Any, known: Sequence[str], where: str) -> SourceFormatError:
    guess = difflib.get_close_matches(str(key), known, n=1)
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    return _fail(path, f"{where}key {key!r} is not known (known keys: {', '.join(known)}).{hint}")


def _text(path: Path, key: str, value: Any, *, max_length: int, multiline: bool = False,
          empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"key {key!r} must be text, got {_kind(value)} ({_shown(value)}); quote it")
    if not value.strip() and not empty:
        raise _fail(path, f"key {key!r} is empty")
    if len(value) > max_length:
        raise _fail(path, f"key {key!r} is longer than {max_length} characters")
    allowed = "\n\t" if multiline else ""
    bad = next((c for c in value if (ord(c) < 32 and c not in allowed) or ord(c) == 127), None)
    if bad is not None:
        raise _fail(path, f"key {key!r} holds the control character {bad!r}"
                          + ("" if multiline else " (it must be one line)"))
    return value.strip() if not multiline else value.strip("\n")


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def _int(path: Path, key: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(path, f"key {key!r} must be a whole number from {low} to {high}, got {_shown(value)}")
    return value


def _list(path: Path, key: str, value: Any, low: int, high: int) -> list:
    if not isinstance(value, list):
        raise _fail(path, f"key {key!r} must be a list, got {_kind(value)} ({_shown(value)})")
    if not low <= len(value) <= high:
        raise _fail(path, f"key {key!r} must list {low} to {high} entries, got {len(value)}")
    return value


def _name(path: Path, value: Any) -> str:
    name = _text(path, "name", value, max_length=MAX_NAME_LENGTH)
    if not CONFIG_NAME.fullmatch(name):
        raise _fail(path, f"key 'name': {name!r} is not a config name: use lower-case letters, digits, "
                          f"'-' and '_', starting with a letter or digit, at most {MAX_NAME_LENGTH} "
                          "characters (it names the config, its column and its folder)")
    return name


def _channels(path: Path, value: Any) -> tuple[Channel, ...]:
    out = []
    for i, item in enumerate(_list(path, "channels", value, 1, MAX_CHANNELS)):
        where = f"channels[{i}]"
        if not isinstance(item, dict):
            raise _fail(path, f"key {where!r} must be a mapping with name and unit, got {_shown(item)}")
        for k in item:
            if k not in CHANNEL_KEYS:
                raise _unknown_key(path, k, CHANNEL_KEYS, f"{where}: ")
        missing = [k for k in CHANNEL_KEYS if k not in item]
        if missing:
            raise _fail(path, f"key {where!r} has no {missing[0]!r} (each channel needs name and unit; "
                              "unit may be \"\")")
        out.append(Channel(_text(path, f"{where}.name", item["name"], max_length=64),
                           _text(path, f"{where}.unit", item["unit"], max_length=100, empty=True)))
    names = [c.name for c in out]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _fail(path, f"key 'channels' names channel {twice!r} twice")
    return tuple(out)


def _classes(path: Path, value: Any) -> tuple[str, ...]:
    names = tuple(_text(path, f"classes[{i}]", v, max_length=100)
                  for i, v in enumerate(_list(path, "classes", value, 2, MAX_CLASSES)))
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _fail(path, f"key 'classes' names class {twice!r} twice (index = class id, 0 = background)")
    return names


def read_source_spec(folder: str | os.PathLike) -> SourceSpec:
    """Read and check ``folder/aims-source.yaml``; :class:`SourceFormatError` naming the
    file and the key for anything wrong."""
    path = Path(folder) / SOURCE_FILE
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise _fail(path, f"must be a mapping of keys (name: …, classes: …), got {_kind(data)}")
    known = REQUIRED_KEYS + OPTIONAL_KEYS
    for key in data:
        if key not in known:
            raise _unknown_key(path, key, known, "")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise _fail(path, f"key {missing[0]!r} is missing (required keys: {', '.join(REQUIRED_KEYS)})")
    labels = data["labels"]
    if labels not in LABEL_KINDS:
        raise _fail(path, f"key 'labels' must be semantic (class ids) or instances (instance ids), got "
                          f"{_shown(labels)}")
    classes = _classes(path, data["classes"])
    void: tuple[int, ...] = ()
    if "void" in data:
        if labels != "semantic":
            raise _fail(path, "key 'void' is for labels: semantic (instance labels have 0 = no instance)")
        void = tuple(_int(path, f"void[{i}]", v, len(classes), 65535)
                     for i, v in enumerate(_list(path, "void", data["void"], 1, 64)))
        if len(set(void)) != len(void):
            raise _fail(path, "key 'void' lists a value twice")
    notes = tuple(_text(path, f"notes[{i}]", v, max_length=2000, multiline=True)
                  for i, v in enumerate(_list(path, "notes", data.get("notes", []), 0, MAX_NOTES)))
    return SourceSpec(
        name=_name(path, data["name"]),
        description=_text(path, "description", data["description"], max_length=1000),
        license=_text(path, "license", data["license"], max_length=200),
        citation=_text(path, "citation", data["citation"], max_length=20000, multiline=True),
        classes=classes,
        channels=_channels(path, data["channels"]),
        labels=labels,
        title=_text(path, "title", data["title"], max_length=200) if "title" in data else "",
        homepage=_text(path, "homepage", data["homepage"], max_length=500) if "homepage" in data else "",
        label=_text(path, "label", data["label"], max_length=40) if "label" in data else "",
        connectivity=_connectivity(path, data.get("connectivity", 8)),
        void=void,
        notes=notes,
    )


def _connectivity(path: Path, value: Any) -> int:
    if type(value) is not int or value not in (4, 8):
        raise _fail(path, f"key 'connectivity' must be 4 or 8, got {_shown(value)}")
    return value


# --------------------------------------------------------------------------- the record


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """8-byte source values are stored as float32 (they are exact there, or refused)."""
    return np.dtype(np.float32) if dtype.itemsize == 8 else dtype


def build_record(spec: SourceSpec, *, dtype: np.dtype, rgb_dtype: np.dtype | None) -> SourceRecord:
    """The record of a folder of your own: the YAML plus what its files are (the images'
    dtype, whether there is a registered RGB and its bit depth)."""
    stored = _stored_dtype(np.dtype(dtype))
    c = len(spec.channels)
    channel_text = ", ".join(ch.text for ch in spec.channels)
    origin = "" if stored == dtype else f"; from {np.dtype(dtype).name} files, every value exact in float32"
    columns = []
    if rgb_dtype is not None:
        bits = np.dtype(rgb_dtype).itemsize * 8
        columns.append(ColumnRecord("rgb", f"{bits}-bit RGB PNG ({np.dtype(rgb_dtype).name})",
                                    "registered RGB (rgb/<split>/<id>.png)", "rgb_unit", 3))
    columns.append(ColumnRecord(
        spec.name, f"AIMS array PNG of {stored.name} values, {c} channel{'s' if c > 1 else ''} "
                   f"(lossless{origin})", f"channels: {channel_text}", "exact_float32", c))
    modalities = [ModalityRecord(spec.name, (spec.name,),
                                 f"{channel_text} as float32, exactly the source values", label=spec.label)]
    if rgb_dtype is not None:
        modalities.append(ModalityRecord(f"rgb-{spec.name}", ("rgb", spec.name),
                                         f"RGB + {channel_text}, channels shuffled",
                                         label=f"RGB-{spec.label}" if spec.label else "", shuffle_seed=0))
    config = ConfigRecord(
        name=spec.name, description=spec.description, columns=tuple(columns), modalities=tuple(modalities),
        tags=("user-modality",),
        notes=(f"aims.modality_tensor(row, {spec.name!r}) gives {channel_text} as float32 ({c}, H, W), "
               "equal to the source arrays (float32 bit for bit, integers exactly).",
               f"Column {spec.name!r} is an AIMS array PNG: its tEXt chunk 'aims-array' (Pillow: "
               "image.info['aims-array']) gives the dtype and (H, W, C); the pixels hold the values "
               "(docs/bring-your-own-modality.md shows how to read them without aims)."),
        simcmf_area_filter=None, headline=False,
    )
    labels_file = "labels/<split>/<id>.png"
    if spec.labels == "semantic":
        ids = ", ".join(f"{i} = {n}" for i, n in enumerate(spec.classes[:20]))
        more = f", … ({len(spec.classes)} classes)" if len(spec.classes) > 20 else ""
        void = f"; void (never an instance): {', '.join(map(str, spec.void))}" if spec.void else ""
        encoding = f"{labels_file}: class ids ({ids}{more}){void}"
        instances = InstanceSource(CONNECTED_COMPONENTS, spec.connectivity,
                                   f"{spec.connectivity}-connected components of each class of {labels_file}")
    else:
        whose = (f"every instance of class {spec.classes[1]!r}" if len(spec.classes) == 2
                 else "the class of each from categories/<split>/<id>.json")
        encoding = f"{labels_file}: instance ids (0 = none), {whose}"
        instances = InstanceSource(RELEASE_INSTANCES, spec.connectivity,
                                   f"the instance ids of {labels_file}, kept as given")
    return SourceRecord(
        name=spec.name, title=spec.title or spec.name, homepage=spec.homepage, license=spec.license,
        citation=spec.citation, classes=spec.classes, label_encoding=encoding, instances=instances,
        configs=(config,), converter=__name__, files=(), ignore_labels=(0, *spec.void), notes=spec.notes,
    )


def _check_name_is_free(spec: SourceSpec, path: Path) -> None:
    """The name becomes a config, a column, a model input (and ``rgb-<name>``) and a
    source: none may mean something else already."""
    from aims.converters import registry
    from aims.schema import RESERVED_COLUMNS

    taken: dict[str, str] = {"all": "the word for every config", "rgb": "the registered RGB column"}
    taken.update({c: "a column every config has" for c in RESERVED_COLUMNS})
    for source, record in registry.source_records().items():
        if source == spec.name and record.converter == __name__:
            continue  # the same folder of your own, registered again
        taken.setdefault(source, f"the built-in source {source!r}")
        for config in record.configs:
            taken.setdefault(config.name, f"a config of {record.title}")
            for column in config.columns:
                taken.setdefault(column.name, f"a column of config {config.name!r}")
            for m in config.modalities:
                taken.setdefault(m.name, f"a model input of config {config.name!r}")
    for name in (spec.name, f"rgb-{spec.name}"):
        if name in taken:
            raise _fail(path, f"key 'name': {name!r} is already {taken[name]}; choose another name")


def register_custom_source(folder: str | os.PathLike) -> SourceRecord:
    """Read ``folder/aims-source.yaml``, look at the first files, build the record and
    register it with its converter (``aims prepare --source DIR`` then prepares it)."""
    from aims.converters import registry

    root = Path(folder).expanduser().resolve()
    spec = read_source_spec(root)
    _check_name_is_free(spec, root / SOURCE_FILE)
    dtype, rgb_dtype = first_file_facts(root)
    record = build_record(spec, dtype=dtype, rgb_dtype=rgb_dtype)
    converter = CustomSource(spec, str(root), record, dtype.name, None if rgb_dtype is None else rgb_dtype.name)
    return registry.register_source_record(record, replace=True, converter=converter)


def first_file_facts(root: Path) -> tuple[np.dtype, np.dtype | None]:
    """The images' dtype and the registered RGB's (None: no rgb/ folder), from the first
    file of each, which the record states; :meth:`CustomSource.list_samples` checks every
    other file against them."""
    images = _split_dirs(_real_dir(root / "images", required=True, what="images/train and images/test"),
                         "images/")
    files = _files(images["train"], IMAGE_SUFFIXES, "images")
    if not files:
        raise _fail(images["train"], "holds no image; every source needs train images")
    dtype = array_header(next(iter(files.values()))).dtype
    rgb_root = _real_dir(root / "rgb", required=False, what="rgb/train and rgb/test")
    if rgb_root is None:
        return dtype, None
    rgb = _files(_split_dirs(rgb_root, "rgb/")["train"], (".png",), "registered RGB PNGs")
    if not rgb:
        raise _fail(rgb_root / "train", "holds no PNG; with an rgb/ folder every image needs its RGB")
    return dtype, _rgb_header(next(iter(rgb.values())))[2]


# --------------------------------------------------------------------------- file headers


@dataclass(frozen=True)
class ArrayHeader:
    """What an image file holds, from its header alone: ``(H, W, C)``, dtype, format."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    fmt: str

    def describe(self) -> str:
        h, w, c = self.shape
        return f"{w}×{h}, {c} channel{'s' if c > 1 else ''} of {self.dtype.name}"


def _open_regular(path: Path, what: str) -> IO[bytes]:
    """A regular file opened without following a link or blocking on a FIFO, at most
    :data:`MAX_FILE_BYTES`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if os.path.islink(path):
        raise _fail(path, f"is a symbolic link; AIMS reads only regular files inside the source folder "
                          f"(docs/security.md): copy {what} in")
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _fail(path, f"cannot be opened ({exc.strerror or exc}); expected {what}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _fail(path, f"is not a regular file; expected {what}")
    if st.st_size > MAX_FILE_BYTES:
        os.close(fd)
        raise _fail(path, f"is {st.st_size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB "
                          "AIMS reads per file; cut large images into tiles")
    return os.fdopen(fd, "rb")


def _read_all(path: Path, what: str) -> bytes:
    with _open_regular(path, what) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None


def _source_dtype(path: Path, dtype: np.dtype) -> np.dtype:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _fail(path, f"holds {dtype} values (objects or records); AIMS reads plain numeric arrays "
                          "and never unpickles: save the array itself")
    if dtype.kind == "b":
        raise _fail(path, "holds booleans; save them as uint8 (0/1)")
    if dtype.kind == "c":
        raise _fail(path, f"holds complex numbers ({dtype}); store the real and imaginary parts (or "
                          "magnitude and phase) as two channels")
    if dtype.name not in SOURCE_DTYPES:
        raise _fail(path, f"holds {dtype} values; AIMS takes {', '.join(SOURCE_DTYPES)}")
    return dtype.newbyteorder("=")


def _shape3(path: Path, shape: tuple[int, ...], fmt: str) -> tuple[int, int, int]:
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise _fail(path, f"holds an array of shape {tuple(shape)}; images are (H, W) or (H, W, C)"
                          + (" (or C, H, W band stacks in a TIFF)" if fmt == "tif" else ""))
    h, w, c = (int(v) for v in shape)
    if c > MAX_CHANNELS:
        raise _fail(path, f"has {c} channels; at most {MAX_CHANNELS} (an (H, W, C) array: is it (C, H, W)? "
                          "save it with the channels last)")
    if h * w * c > MAX_STORED_VALUES:
        raise _fail(path, f"holds {h}×{w}×{c} values, more than the {MAX_STORED_VALUES:,} one image may "
                          "hold; cut it into tiles")
    return h, w, c


def _npy_header(path: Path, fh: IO[bytes], size: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]}; save it with numpy.save")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise _fail(path, f"is not a readable .npy file ({exc})") from None
    dtype = np.dtype(dtype)
    _source_dtype(path, dtype)
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if len(shape) in (2, 3) else -1
    offset = fh.tell()
    if len(shape) in (2, 3) and offset + declared != size:
        raise _fail(path, f"declares {tuple(shape)} {dtype.name} values ({declared} bytes) but holds "
                          f"{size - offset} bytes of data; the file is truncated or not one numpy.save wrote")
    return tuple(int(v) for v in shape), bool(fortran), dtype, offset


def _tiff_layout(path: Path, series: Any) -> tuple[tuple[int, ...], str]:
    axes = str(series.axes)
    shape = tuple(int(v) for v in series.shape)
    if axes in ("YX", "YXS"):
        return shape, axes
    if axes in _TIFF_PLANAR:
        return (shape[1], shape[2], shape[0]), axes
    raise _fail(path, f"is a TIFF of layout {axes} {shape}; AIMS reads one image per file: (H, W), "
                      "(H, W, C) or a (C, H, W) band stack")


def _png_ihdr(path: Path, head: bytes) -> tuple[int, int, int, int]:
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise _fail(path, "is not a PNG file (no PNG signature and header)")
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    return w, h, depth, colour


_PNG_IMAGE = {0: 1, 2: 3, 6: 4}


def array_header(path: str | os.PathLike) -> ArrayHeader:
    """The header of an image file (``.npy``, ``.tif``/``.tiff``, ``.png``): shape, dtype
    and format, read without decoding the pixels; :class:`SourceFormatError` naming the
    file for a link, a file too large, an unsupported dtype or layout."""
    path = Path(path)
    suffix = path.suffix.lower()
    with _open_regular(path, "an image (.npy, .tif, .tiff or .png)") as fh:
        size = os.fstat(fh.fileno()).st_size
        if suffix == ".npy":
            shape, _, dtype, _ = _npy_header(path, fh, size)
            return ArrayHeader(_shape3(path, shape, "npy"), _source_dtype(path, dtype), "npy")
        if suffix in (".tif", ".tiff"):
            import tifffile

            try:
                with tifffile.TiffFile(fh, name=path.name) as tif:
                    series = tif.series
                    if len(series) != 1:
                        raise _fail(path, f"holds {len(series)} images; save one image per file")
                    shape, _ = _tiff_layout(path, series[0])
                    dtype = np.dtype(series[0].dtype)
            except SourceFormatError:
                raise
            except Exception as exc:  # tifffile's parser raises many kinds on a damaged file
                raise _fail(path, f"is not a readable TIFF ({type(exc).__name__}: {exc})") from None
            return ArrayHeader(_shape3(path, shape, "tif"), _source_dtype(path, dtype), "tif")
        if suffix == ".png":
            w, h, depth, colour = _png_ihdr(path, fh.read(33))
            if colour not in _PNG_IMAGE or depth not in (8, 16):
                raise _fail(path, f"is a PNG of colour type {colour} at {depth} bits; image PNGs must be "
                                  "8- or 16-bit grey, RGB or RGBA (other data: save a .npy)")
            dtype = np.dtype(np.uint8 if depth == 8 else np.uint16)
            return ArrayHeader(_shape3(path, (h, w, _PNG_IMAGE[colour]), "png"), dtype, "png")
    raise _fail(path, "is not a .npy, .tif, .tiff or .png file")


def _label_header(path: Path, what: str) -> tuple[int, int]:
    with _open_regular(path, what) as fh:
        w, h, depth, colour = _png_ihdr(path, fh.read(33))
    if not ((colour == 0 and depth in (1, 8, 16)) or colour == 3):
        raise _fail(path, f"is a PNG of colour type {colour} at {depth} bits; a label PNG holds one id "
                          "per pixel: 8- or 16-bit grey, 1-bit, or palette indices")
    if h * w > MAX_STORED_VALUES:
        raise _fail(path, f"is {w}×{h}, more pixels than the {MAX_STORED_VALUES:,} an image may have")
    return h, w


def _rgb_header(path: Path) -> tuple[int, int, np.dtype]:
    with _open_regular(path, "a registered RGB PNG") as fh:
        w, h, depth, colour = _png_ihdr(path, fh.read(33))
    if colour != 2 or depth not in (8, 16):
        raise _fail(path, f"is a PNG of colour type {colour} at {depth} bits; rgb/ holds 8- or 16-bit RGB "
                          "PNGs (no alpha, no palette)")
    if h * w * 3 > MAX_STORED_VALUES:
        raise _fail(path, f"is {w}×{h}, more pixels than the {MAX_STORED_VALUES:,} an image may have")
    return h, w, np.dtype(np.uint8 if depth == 8 else np.uint16)


# --------------------------------------------------------------------------- reading pixels


def read_array(path: str | os.PathLike, header: ArrayHeader | None = None) -> np.ndarray:
    """The ``(H, W, C)`` array of an image file in native byte order, exactly as stored;
    the header is read again and must be ``header`` when given (the file did not change
    since it was listed). :class:`SourceFormatError` naming the file otherwise."""
    path = Path(path)
    now = array_header(path)
    if header is not None and (now.shape, now.dtype) != (header.shape, header.dtype):
        raise _fail(path, f"changed while it was being prepared (now {now.describe()}, listed as "
                          f"{header.describe()}); run the command again")
    raw = _read_all(path, "an image")
    try:
        arr = _decode(path, raw, now)
    except SourceFormatError:
        raise
    except (ValueError, OSError, KeyError, RuntimeError, MemoryError) as exc:
        raise _fail(path, f"cannot be read ({type(exc).__name__}: {exc}); the file is truncated or "
                          "damaged: write it again") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape != now.shape or arr.dtype.newbyteorder("=") != now.dtype:
        raise _fail(path, f"decodes as {arr.dtype} {arr.shape} but its header says {now.describe()}; the "
                          "file is damaged: write it again")
    return np.ascontiguousarray(arr.astype(now.dtype, copy=False))


def _decode(path: Path, raw: bytes, header: ArrayHeader) -> np.ndarray:
    if header.fmt == "npy":
        fh = io.BytesIO(raw)
        shape, fortran, dtype, _ = _npy_header(path, fh, len(raw))
        fh.seek(0)
        arr = np.load(fh, allow_pickle=False)
        if arr.shape != shape or arr.dtype != dtype:  # pragma: no cover - numpy reads what it declared
            raise ValueError(f"numpy read {arr.dtype} {arr.shape}")
        return arr
    if header.fmt == "tif":
        return _decode_tiff(path, raw, header)
    from aims.imageio import decode_png

    return decode_png(raw)


def _decode_tiff(path: Path, raw: bytes, header: ArrayHeader) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(raw), name=path.name) as tif:
            series = tif.series[0]
            _, axes = _tiff_layout(path, series)
            arr = series.asarray(maxworkers=1)
    except SourceFormatError:
        raise
    except Exception as exc:  # tifffile raises many kinds on damaged data
        if "imagecodecs" not in str(exc):
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        return _decode_tiff_opencv(path, raw, header, str(exc))
    return arr.transpose(1, 2, 0) if axes in _TIFF_PLANAR else arr


def _decode_tiff_opencv(path: Path, raw: bytes, header: ArrayHeader, why: str) -> np.ndarray:
    """A compression tifffile decodes only with the optional imagecodecs package (LZW,
    PackBits, …): OpenCV's libtiff reads single-channel files exactly (multi-channel ones
    it reorders to BGR, so those are not guessed at)."""
    if header.shape[2] != 1:
        raise _fail(path, f"is compressed in a way this installation reads only with the imagecodecs "
                          f"package ({why}); `pip install imagecodecs`, or save it uncompressed or with zlib")
    import cv2

    arr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"{why}, and OpenCV could not decode it either")
    return arr


def _checked_values(path: Path, arr: np.ndarray) -> np.ndarray:
    """The array as it is stored: finite, and exactly float32 numbers (so that
    ``modality_tensor`` equals it); 8-byte values become float32 (exactly)."""
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            y, x, c = (int(v) for v in np.argwhere(bad)[0])
            raise _fail(path, f"holds {int(bad.sum())} NaN or infinite value(s) (the first at row {y}, column "
                              f"{x}, channel {c}: {arr[y, x, c]}); AIMS stores finite values only, because the "
                              "statistics and the models need them: replace them with a value of your choice "
                              "and say which in the channel's unit in aims-source.yaml")
    if arr.dtype.itemsize >= 4 and arr.dtype != np.float32:
        as_float = arr.astype(np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            back = as_float.astype(arr.dtype)
        inexact = back != arr
        if inexact.any():
            y, x, c = (int(v) for v in np.argwhere(inexact)[0])
            raise _fail(path, f"holds {arr.dtype} values that float32 cannot hold exactly (e.g. {arr[y, x, c]!r} "
                              f"at row {y}, column {x}, channel {c}); aims.modality_tensor returns float32 equal "
                              "to the source, so convert the array to float32 yourself if that rounding is "
                              "acceptable (integers up to 2**24 = 16,777,216 in magnitude are exact)")
    return arr.astype(np.float32) if arr.dtype.itemsize == 8 else arr


def _read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    from aims.imageio import read_image

    try:
        with _open_regular(path, "a label PNG"):
            pass
        arr = read_image(path)
    except SourceFormatError:
        raise
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(path, f"cannot be read as a label PNG ({exc}); write it again") from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim != 2 or arr.shape != shape:
        raise _fail(path, f"decodes as {arr.shape}, not the {shape[1]}×{shape[0]} single-channel label "
                          "of its image")
    return arr


def _read_rgb(path: Path, shape: tuple[int, int]) -> np.ndarray:
    from aims.imageio import decode_png

    raw = _read_all(path, "a registered RGB PNG")
    try:
        arr = decode_png(raw)
    except ValueError as exc:
        raise _fail(path, f"cannot be read as an RGB PNG ({exc}); write it again") from None
    if arr.ndim != 3 or arr.shape[:2] != shape or arr.shape[2] != 3:
        raise _fail(path, f"decodes as {arr.shape}, not the {shape[1]}×{shape[0]} RGB of its image")
    return arr


def _read_categories(path: Path, classes: int) -> dict[int, int]:
    from aims.config_info import read_json_object

    try:
        data = read_json_object(path, MAX_JSON_BYTES)
    except ValueError as exc:
        raise _fail(path, f"is not a readable categories file ({exc}); it is a JSON object "
                          '{"<instance id>": <class id>, …}') from None
    out: dict[int, int] = {}
    for key, value in data.items():
        if not re.fullmatch(r"[1-9][0-9]{0,4}", key) or int(key) > 65535:
            raise _fail(path, f"key {_shown(key)} is not an instance id (1 … 65535)")
        if type(value) is not int or not 1 <= value < classes:
            raise _fail(path, f"instance {key}: class {_shown(value)} is not a class id 1 … {classes - 1} "
                              "(0 is background)")
        out[int(key)] = value
    return out


# --------------------------------------------------------------------------- the converter


@dataclass(frozen=True)
class CustomRef(SampleRef):
    """One sample of a folder of your own, with what the listing read in its headers."""

    shape: tuple[int, int, int] = (0, 0, 0)
    dtype: str = ""
    fmt: str = ""
    #: instance labels taken as semantic classes for connected components (--instances components)
    components: bool = False


@dataclass
class CustomListing(Listing):
    """The listing, plus how many image files of each format were found (for the card)."""

    formats: dict[str, int] = field(default_factory=dict)


def _real_dir(path: Path, *, required: bool, what: str) -> Path | None:
    if not os.path.lexists(path):
        if required:
            raise _fail(path, f"is missing: a folder of your own holds {what} "
                              "(docs/bring-your-own-modality.md)")
        return None
    if path.is_symlink():
        raise _fail(path, "is a symbolic link; the folders of a source of your own must be real folders "
                          "inside it (docs/security.md)")
    if not path.is_dir():
        raise _fail(path, f"is not a folder; expected {what}")
    return path


def _split_dirs(folder: Path, what: str) -> dict[str, Path]:
    out = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.name not in SPLITS:
            raise _fail(Path(entry.path), f"is not a split folder: {folder.name}/ holds train/ and test/ only "
                                          "(AIMS carves the validation split from train itself)")
    for split in SPLITS:
        out[split] = _real_dir(folder / split, required=True,
                               what=f"the {split} split of {what} (every source has train and test)")
    return out


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """``{image id: path}`` of the files of one split folder, refusing anything else."""
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            raise _fail(path, f"is a symbolic link; AIMS reads only regular files inside the source folder "
                              f"(docs/security.md): copy {what} in")
        if not entry.is_file(follow_symlinks=False):
            raise _fail(path, f"is not a regular file; {folder} holds {what} only")
        suffix = path.suffix.lower() if path.suffix.lower() in suffixes else ""
        if not suffix or path.suffix not in (suffix, suffix.upper()):
            raise _fail(path, f"is not {what} ({' or '.join(suffixes)} files); move it out of {folder}")
        image_id = entry.name[: -len(suffix)]
        if not IMAGE_ID.fullmatch(image_id):
            raise _fail(path, f"image id {image_id!r} is not a plain file name (letters, digits, '.', '_', "
                              "'-', starting with a letter or digit, at most 200 characters); rename the file")
        if image_id in out:
            raise _fail(path, f"image id {image_id!r} has two files here ({out[image_id].name} and "
                              f"{entry.name}); keep one")
        out[image_id] = path
    return out


def _size_mismatch(other: Path, image: Path, header: ArrayHeader) -> SourceFormatError:
    h, w, _ = header.shape
    if other.suffix.lower() == ".png":
        with _open_regular(other, "a PNG") as fh:
            ow, oh, _, _ = _png_ihdr(other, fh.read(33))
        found = f"{ow}×{oh}"
    else:  # pragma: no cover - only PNGs accompany an image
        found = "another size"
    return _fail(other, f"is {found} but its image {image} is {w}×{h}; every file of a sample has the "
                        "image's size (is it the file of another image?)")


def _pair(images: Mapping[str, Path], other: Mapping[str, Path], folder: Path, image_folder: Path,
          what: str, suffix: str) -> None:
    """Every image has its file in ``folder`` and every file there has its image."""
    for image_id, path in images.items():
        if image_id not in other:
            raise _fail(folder / f"{image_id}{suffix}", f"is missing: image {path} needs {what}")
    for image_id, path in other.items():
        if image_id not in images:
            raise _fail(path, f"has no image: {image_folder} holds no {image_id}.npy, .tif, .tiff or .png")


class CustomSource(SourceConverter):
    """The converter of a folder of your own. Holds only the (small, picklable) spec, the
    folder and the record: the pipeline sends it to every worker with each sample."""

    def __init__(self, spec: SourceSpec, folder: str, record: SourceRecord, dtype: str,
                 rgb_dtype: str | None) -> None:
        self.spec = spec
        self.folder = folder
        self.record = record
        #: the source images' dtype and the RGB's (None: no rgb/), as the record states them
        self.dtype = dtype
        self.rgb_dtype = rgb_dtype

    # ---------------------------------------------------------------- listing

    def list_samples(self, configs: Sequence[str], *, source: Path | Sequence[Path] | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> CustomListing:
        spec = self.spec
        root = Path(self.folder)
        yaml_path = root / SOURCE_FILE
        images = _split_dirs(_real_dir(root / "images", required=True, what="images/train and images/test"),
                             "images/")
        labels = _split_dirs(_real_dir(root / "labels", required=True, what="labels/train and labels/test"),
                             "labels/")
        rgb_root = _real_dir(root / "rgb", required=False, what="rgb/train and rgb/test")
        rgb = _split_dirs(rgb_root, "rgb/") if rgb_root is not None else None
        if (rgb is None) != (self.rgb_dtype is None):  # pragma: no cover - changed since registration
            raise _fail(root / "rgb", "appeared or disappeared while preparing; run the command again")
        cat_root = _real_dir(root / "categories", required=False, what="categories/train and categories/test")
        if cat_root is not None and spec.labels == "semantic":
            raise _fail(cat_root, "is for labels: instances (instance ids with a class each); semantic labels "
                                  "hold the class ids themselves")
        if cat_root is None and spec.labels == "instances" and len(spec.classes) > 2:
            raise _fail(yaml_path, f"labels: instances with {len(spec.classes) - 1} classes needs "
                                   "categories/<split>/<id>.json giving each instance's class (with one "
                                   "class besides background, every instance is of that class)")
        cats = _split_dirs(cat_root, "categories/") if cat_root is not None else None
        channels = len(spec.channels)
        kind = self.record.instances
        components = instances == "components" and kind.kind != CONNECTED_COMPONENTS
        if components:
            kind = InstanceSource(CONNECTED_COMPONENTS, spec.connectivity,
                                  f"{spec.connectivity}-connected components of each class of the instance "
                                  "labels (--instances components)")
        refs: list[CustomRef] = []
        formats: dict[str, int] = {}
        seen: dict[str, str] = {}
        for split in SPLITS:
            image_files = _files(images[split], IMAGE_SUFFIXES, "images")
            if not image_files:
                raise _fail(images[split], f"holds no image; every source needs {split} images")
            label_files = _files(labels[split], (".png",), "label PNGs")
            _pair(image_files, label_files, labels[split], images[split], "a label PNG", ".png")
            rgb_files = _files(rgb[split], (".png",), "registered RGB PNGs") if rgb is not None else {}
            if rgb is not None:
                _pair(image_files, rgb_files, rgb[split], images[split], "a registered RGB PNG", ".png")
            cat_files = _files(cats[split], (".json",), "categories JSON files") if cats is not None else {}
            if cats is not None:
                _pair(image_files, cat_files, cats[split], images[split], "a categories JSON file", ".json")
            for image_id, path in image_files.items():
                if image_id in seen:
                    raise _fail(path, f"image id {image_id!r} is in {seen[image_id]} and {split}; an image "
                                      "belongs to one split: rename one")
                seen[image_id] = split
                header = array_header(path)
                if header.shape[2] != channels:
                    raise _fail(path, f"has {header.shape[2]} channel(s) ({header.describe()}) but "
                                      f"{yaml_path.name} lists {channels} channel(s) "
                                      f"({', '.join(c.name for c in spec.channels)}); an (H, W, C) array has "
                                      "its channels last")
                if header.dtype.name != self.dtype:
                    raise _fail(path, f"holds {header.dtype.name} values, but the images of this source hold "
                                      f"{self.dtype} (the first train image does); every image of a source has "
                                      "one dtype: convert them to one")
                size = header.shape[:2]
                if _label_header(label_files[image_id], "a label PNG") != size:
                    raise _size_mismatch(label_files[image_id], path, header)
                files = {"image": str(path), "labels": str(label_files[image_id])}
                if rgb is not None:
                    h, w, depth = _rgb_header(rgb_files[image_id])
                    if (h, w) != size:
                        raise _size_mismatch(rgb_files[image_id], path, header)
                    if depth.name != self.rgb_dtype:
                        raise _fail(rgb_files[image_id], f"is a {depth.itemsize * 8}-bit RGB PNG but the first "
                                                         f"one is {np.dtype(self.rgb_dtype).itemsize * 8}-bit; "
                                                         "every RGB of a source has one bit depth")
                    files["rgb"] = str(rgb_files[image_id])
                if cats is not None:
                    files["categories"] = str(cat_files[image_id])
                formats[header.fmt] = formats.get(header.fmt, 0) + 1
                refs.append(CustomRef(image_id, split, files, header.shape, header.dtype.name, header.fmt,
                                      components))

        return CustomListing(refs=list(refs), category_names=list(spec.classes),
                             instance_sources={s: kind for s in SPLITS}, formats=formats)

    # ---------------------------------------------------------------- loading (workers)

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        assert isinstance(ref, CustomRef)
        from aims.imageio import ArrayImage

        spec = self.spec
        image_path = Path(ref.files["image"])
        header = ArrayHeader(ref.shape, np.dtype(ref.dtype), ref.fmt)
        stored = _checked_values(image_path, read_array(image_path, header))
        labels_path = Path(ref.files["labels"])
        labels = _read_label(labels_path, ref.shape[:2])
        images: dict[str, Any] = {spec.name: ArrayImage(stored)}
        if "rgb" in ref.files:
            images["rgb"] = _read_rgb(Path(ref.files["rgb"]), ref.shape[:2])
        present = np.flatnonzero(np.bincount(labels.ravel().astype(np.int64)))
        if spec.labels == "semantic":
            bad = [int(v) for v in present if v >= len(spec.classes) and int(v) not in spec.void]
            if bad:
                void = f" and void lists {list(spec.void)}" if spec.void else ""
                raise _fail(labels_path, f"holds class id {bad[0]}, which is not a class: classes has "
                                         f"{len(spec.classes)} entries (ids 0 … {len(spec.classes) - 1}){void}; "
                                         "fix the label, or add the class (or a void value) to aims-source.yaml")
            return Sample(ref.image_id, ref.split, images, semantic=labels)
        ids = [int(v) for v in present if v != 0]
        if "categories" in ref.files:
            cat_path = Path(ref.files["categories"])
            category = _read_categories(cat_path, len(spec.classes))
            missing = [i for i in ids if i not in category]
            extra = sorted(set(category) - set(ids))
            if missing:
                raise _fail(cat_path, f"gives no class for instance {missing[0]} of {labels_path.name}")
            if extra:
                raise _fail(cat_path, f"names instance {extra[0]}, which {labels_path.name} does not hold")
        else:
            category = {i: 1 for i in ids}
        if ref.components:
            lut = np.zeros(int(labels.max(initial=0)) + 1, np.uint16)
            for i, c in category.items():
                lut[i] = c
            return Sample(ref.image_id, ref.split, images, semantic=lut[labels])
        return Sample(ref.image_id, ref.split, images, instance_map=labels, instance_category=category)

    # ---------------------------------------------------------------- card and miniature

    def notes(self, config: str, listing: Listing) -> list[str]:
        formats = getattr(listing, "formats", {})
        found = ", ".join(f"{n} .{fmt}" for fmt, n in sorted(formats.items()))
        return [f"A modality of the user's own, prepared from a folder with {SOURCE_FILE} "
                f"(docs/bring-your-own-modality.md); image files: {found or 'none'}."]

    def write_miniature(self, folder: Path, *, seed: int = 0) -> Path:
        from aims.converters.custom_source_miniature import write_example

        return write_example(folder, "float32-npy", seed=seed)
