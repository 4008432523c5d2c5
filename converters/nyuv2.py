"""NYU Depth v2 (labeled subset) → configs ``depth`` and ``hha``.

The release is one MATLAB v7.3 file (HDF5 behind a 512-byte MATLAB user block) holding
all 1449 labelled frames, plus two small MATLAB 5 files from the community: the official
795/654 train/test split and Gupta et al.'s 894 → 40 class mapping. MATLAB writes arrays
column-major, so h5py sees them with the axes reversed: one RGB frame is
``images[i].transpose(2, 1, 0)`` and one depth or label map is ``depths[i].T``.

Depth is stored as a 16-bit PNG in millimetres (the filled ``depths`` key; 1 mm steps are
finer than the sensor's noise and 65.5 m is far beyond its range). HHA is computed here
from the same filled depth with :func:`aims.hha.compute_hha`, the colour camera's
intrinsics, and the missing-mask taken from that depth, exactly as the reference MATLAB
code is run on NYUv2.

Listing reads the split and class-mapping files and validates the .mat in the main process;
each worker opens the .mat itself (one read-only handle per process) and reads its frames
(:meth:`NYUv2.load`), then computes HHA (:meth:`NYUv2.derive`). A frame that cannot be read
is skipped and counted. The SimCMF repack ``NYUDepthv2/`` is read by
:mod:`aims.converters.nyuv2_repack`; the facts (files, classes, column units …) are in
:mod:`aims.converters.nyuv2_record`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aims.converters.base import Downloader, Listing, Sample, SampleRef, SourceConverter
from aims.converters.locate import fetch_declared
from aims.converters.nyuv2_record import CLASS_MAPPING_MAT, LABELED_MAT, NYU40_CLASS_NAMES, RECORD, SPLITS_MAT
from aims.errors import AimsError, SourceFormatError, UnreadableSample

#: the image key under which load() hands the metric depth to derive() (HHA), never stored
DEPTH_METRES_KEY = "depth_metres"

__all__ = ["CLASS_MAPPING_MAT", "CONVERTER", "LABELED_MAT", "NYU40_CLASS_NAMES", "SPLITS_MAT", "LabeledMat",
           "NYUv2", "depth_to_millimetres", "read_class_mapping", "read_splits"]

#: frame size of every labelled NYUv2 image (rows, columns)
FRAME_SHAPE = (480, 640)

#: keys the converter reads, with their dtype and per-image h5py shape (N first)
_REQUIRED_KEYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "images": ("uint8", (3, 640, 480)),
    "depths": ("float32", (640, 480)),
    "labels": ("uint16", (640, 480)),
}

# --------------------------------------------------------------------------- reading


def read_splits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """1-based train and test frame indices from ``splits.mat``, checked to be disjoint."""
    mat = _loadmat_v5(path, ("trainNdxs", "testNdxs"))
    train = np.asarray(mat["trainNdxs"]).ravel().astype(np.int64)
    test = np.asarray(mat["testNdxs"]).ravel().astype(np.int64)
    if np.intersect1d(train, test).size:
        raise SourceFormatError(
            f"{path}: trainNdxs and testNdxs overlap; this is not the official NYUv2 split "
            "file. Delete it and run `aims prepare` again to fetch the pinned copy.",
            path=path,
        )
    return train, test


def read_class_mapping(path: Path) -> tuple[np.ndarray, list[str]]:
    """Lookup table 894 → 40 classes (``lut[raw] = class40``, 0 = void) and the 40 names."""
    mat = _loadmat_v5(path, ("mapClass", "className"))
    map_class = np.asarray(mat["mapClass"]).ravel().astype(np.int64)
    names = [str(np.asarray(n).ravel()[0]) for n in np.asarray(mat["className"]).ravel()]
    if map_class.min(initial=1) < 1 or map_class.max(initial=0) > len(names):
        raise SourceFormatError(
            f"{path}: mapClass holds values outside 1..{len(names)}; expected the 40-class "
            "mapping classMapping40.mat. Delete it and run `aims prepare` again.",
            path=path,
        )
    lut = np.zeros(map_class.size + 1, dtype=np.uint8)
    lut[1:] = map_class
    return lut, names


def _loadmat_v5(path: Path, keys: Sequence[str]) -> dict:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise AimsError(f"{path} does not exist.", path=path) from None
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on bad files
        raise SourceFormatError(
            f"{path} is not a readable MATLAB file ({exc}). Delete it and run "
            "`aims prepare` again to fetch a fresh copy.",
            path=path,
        ) from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise SourceFormatError(
            f"{path} has no {', '.join(missing)} (found: "
            f"{', '.join(k for k in mat if not k.startswith('__'))}). Expected the NYUv2 "
            f"meta-data file; delete it and run `aims prepare` again.",
            path=path,
        )
    return mat


class LabeledMat:
    """``nyu_depth_v2_labeled.mat`` opened with h5py, validated before any frame is read,
    so a wrong or truncated file fails at once with a message rather than after an hour."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except FileNotFoundError:
            raise AimsError(f"{path} does not exist.", path=path) from None
        except OSError as exc:
            raise SourceFormatError(
                f"{path} cannot be opened as a MATLAB v7.3 (HDF5) file ({exc}); it is "
                "truncated, corrupt or not the NYUv2 labeled release. Delete it and run "
                "`aims prepare --modality depth` again, or pass the complete file with "
                "--source.",
                path=path,
            ) from None
        self._validate()

    def _validate(self) -> None:
        counts = set()
        for key, (dtype, shape) in _REQUIRED_KEYS.items():
            if key not in self._file:
                found = ", ".join(sorted(self._file.keys())) or "nothing"
                self.close()
                raise SourceFormatError(
                    f"{self.path} has no '{key}' dataset (found: {found}). Expected NYUv2's "
                    "nyu_depth_v2_labeled.mat with keys images, depths and labels; the file "
                    "is not the labeled release.",
                    path=self.path,
                )
            ds = self._file[key]
            if str(ds.dtype) != dtype or tuple(ds.shape[1:]) != shape:
                found = f"{ds.dtype} {tuple(ds.shape)}"
                self.close()
                raise SourceFormatError(
                    f"{self.path}: '{key}' is {found}, expected {dtype} (N, "
                    f"{', '.join(map(str, shape))}) as MATLAB v7.3 stores 480×640 frames. "
                    "The file is not NYUv2's labeled release (or was re-saved with "
                    "another layout).",
                    path=self.path,
                )
            counts.add(ds.shape[0])
        if len(counts) != 1:
            self.close()
            raise SourceFormatError(
                f"{self.path}: images, depths and labels hold different numbers of "
                f"frames ({sorted(counts)}); the file is damaged.",
                path=self.path,
            )
        self.num_frames = counts.pop()

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8, filled depth (H, W) float32 metres, raw labels (H, W)
        uint16 of frame ``index`` (0-based)."""
        try:
            rgb = np.ascontiguousarray(self._file["images"][index].transpose(2, 1, 0))
            depth = np.ascontiguousarray(self._file["depths"][index].T)
            labels = np.ascontiguousarray(self._file["labels"][index].T)
        except (OSError, ValueError, KeyError) as exc:
            raise UnreadableSample(
                f"{self.path}: frame {index + 1} cannot be read ({exc}); the file is "
                "truncated or corrupt. Delete it and run `aims prepare` again.",
                path=self.path,
            ) from None
        return rgb, depth, labels

    def close(self) -> None:
        try:
            self._file.close()
        except Exception:  # already closed
            pass


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Metres (float) → uint16 millimetres, rounded half away from zero and clipped."""
    mm = np.floor(np.asarray(depth_m, dtype=np.float64) * 1000.0 + 0.5)
    return np.clip(np.nan_to_num(mm, nan=0.0), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- per-process file handles

#: path -> (process id, open .mat): each worker process opens the .mat once for itself;
#: a handle inherited from the parent through fork is never used
_open_mats: dict[str, tuple[int, LabeledMat]] = {}


def _labeled_mat(path: str) -> LabeledMat:
    cached = _open_mats.get(path)
    if cached is None or cached[0] != os.getpid():
        _open_mats[path] = (os.getpid(), LabeledMat(Path(path)))
    return _open_mats[path][1]


def close_open_files() -> None:
    """Close the .mat handles this process opened."""
    for path, (pid, mat) in list(_open_mats.items()):
        if pid == os.getpid():
            mat.close()
        del _open_mats[path]


@functools.lru_cache(maxsize=4)
def _class_mapping(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    lut, names = read_class_mapping(Path(path))
    return lut, tuple(names)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class FrameRef(SampleRef):
    """One labelled frame of the .mat (``frame``: 0-based index); ``files`` holds the
    .mat and the class mapping."""

    frame: int = 0


@dataclass
class NYUv2Listing(Listing):
    """What was found: the release files, or the SimCMF repack (its folder name and
    whether it numbers frames from 0)."""

    repack_root: str = ""
    zero_based: bool = False

    def close(self) -> None:
        close_open_files()


def _frame_refs(paths: Mapping[str, Path]) -> tuple[list[FrameRef], list[str]]:
    train, test = read_splits(paths[SPLITS_MAT])
    _, names = _class_mapping(str(paths[CLASS_MAPPING_MAT]))
    mat = LabeledMat(paths[LABELED_MAT])
    num_frames = mat.num_frames
    mat.close()
    order = sorted([(int(i), "train") for i in train] + [(int(i), "test") for i in test])
    bad = [i for i, _ in order if not 1 <= i <= num_frames]
    if bad:
        raise SourceFormatError(
            f"the split file names frame {bad[0]} but {paths[LABELED_MAT]} holds "
            f"{num_frames} frames; the split file and the labeled .mat do not belong "
            "together.",
            path=paths[LABELED_MAT],
        )
    files = {"mat": str(paths[LABELED_MAT]), "class_mapping": str(paths[CLASS_MAPPING_MAT])}
    refs = [FrameRef(image_id=f"{index:04d}", split=split, files=files, frame=index - 1)
            for index, split in order]
    return refs, ["void", *names]


def read_frame(ref: FrameRef, configs: Sequence[str]) -> Sample:
    """One frame of the .mat: RGB, depth in mm (``depth``), metric depth for HHA
    (``hha``) and the 40-class labels."""
    mat = _labeled_mat(ref.files["mat"])
    lut, _ = _class_mapping(ref.files["class_mapping"])
    rgb, depth_m, raw_labels = mat.frame(ref.frame)
    if raw_labels.max(initial=0) >= lut.size:
        raise SourceFormatError(
            f"{mat.path}: frame {ref.frame + 1} has label {int(raw_labels.max())}, "
            f"beyond the {lut.size - 1} classes of the class mapping.",
            path=mat.path,
        )
    images: dict[str, np.ndarray] = {"rgb": rgb}
    if "depth" in configs:
        images["depth"] = depth_to_millimetres(depth_m)
    if "hha" in configs:
        images[DEPTH_METRES_KEY] = depth_m  # HHA is derived from it in derive()
    return Sample(image_id=ref.image_id, split=ref.split, images=images, semantic=lut[raw_labels])


# --------------------------------------------------------------------------- converter


class NYUv2(SourceConverter):
    record = RECORD

    def list_samples(self, configs: Sequence[str], *, source: Path | None = None,
                     downloader: Downloader | None = None, instances: str = "release") -> NYUv2Listing:
        if source is not None:
            # the SimCMF repack (NYUDepthv2/ with RGB, Depth, HHA, Mask_gt, train.txt) is
            # recognised by its layout, so users pass whichever copy they have
            from aims.converters.nyuv2_repack import REPACK_INSTANCES, find_repack, list_repack

            root = find_repack(Path(source))
            if root is not None:
                refs, zero_based = list_repack(root, configs)
                return NYUv2Listing(refs=list(refs), category_names=list(RECORD.classes),
                                    instance_sources={s: REPACK_INSTANCES for s in ("train", "test")},
                                    repack_root=root.name, zero_based=zero_based)
        refs, names = _frame_refs(self._locate(source, downloader))
        return NYUv2Listing(refs=list(refs), category_names=names,
                            instance_sources={s: RECORD.instances for s in ("train", "test")})

    def load(self, ref: SampleRef, configs: Sequence[str]) -> Sample:
        if isinstance(ref, FrameRef):
            return read_frame(ref, configs)
        from aims.converters.nyuv2_repack import read_repack_frame

        return read_repack_frame(ref, configs)

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        from aims.hha import NYU_COLOR_INTRINSICS, compute_hha

        depth_m = sample.images.pop(DEPTH_METRES_KEY, None)
        if "hha" in configs and depth_m is not None:
            sample.images["hha"] = compute_hha(depth_m.astype(np.float64), NYU_COLOR_INTRINSICS)
        return sample

    def observe(self, listing: Listing, image_id: str, facts: Mapping[str, Any]) -> None:
        from aims.converters.nyuv2_repack import check_depth_unit

        check_depth_unit(listing.facts, image_id, facts)
        super().observe(listing, image_id, facts)

    def notes(self, config: str, listing: Listing) -> list[str]:
        assert isinstance(listing, NYUv2Listing)
        if listing.repack_root:
            from aims.converters.nyuv2_repack import describe_notes

            units = {facts["depth_unit"] for _, facts in listing.facts if "depth_unit" in facts}
            return describe_notes(config, listing.repack_root, listing.zero_based, units)
        if config == "hha":
            return ["HHA is computed by aims.hha from the filled depth with the colour camera's "
                    "intrinsics; it reproduces Gupta et al.'s MATLAB code exactly on the oracle frame."]
        return []

    def _locate(self, source: Path | None, downloader: Downloader | None) -> dict[str, Path]:
        """Take each file from ``source`` (the .mat itself, or a folder holding the
        files) and fetch whatever is not there."""
        found: dict[str, Path] = {}
        if source is not None:
            source = Path(source)
            if source.is_dir():
                for spec in RECORD.files:
                    if (source / spec.name).is_file():
                        found[spec.name] = source / spec.name
                if LABELED_MAT not in found:
                    raise AimsError(
                        f"{source} holds no {LABELED_MAT}. Pass the folder that contains the "
                        f"NYUv2 labeled release (and optionally {SPLITS_MAT} and "
                        f"{CLASS_MAPPING_MAT}), the .mat file itself, or the SimCMF repack "
                        "folder NYUDepthv2 (RGB/, Depth/, HHA/, Mask_gt/, train.txt, test.txt).",
                        path=source,
                    )
            elif source.is_file():
                found[LABELED_MAT] = fetch_declared(RECORD, LABELED_MAT, source=source)
            else:
                raise AimsError(f"--source {source} does not exist.", path=source)
        for spec in RECORD.files:
            if spec.name not in found:
                found[spec.name] = fetch_declared(RECORD, spec.name, downloader=downloader)
        return found

    def write_miniature(self, folder: Path, *, seed: int = 0, num_frames: int = 8,
                        full_resolution: bool = True) -> Path:
        """``full_resolution`` is accepted for the benchmarks' sake: NYUv2 frames are always
        480×640, the real size, so the miniature is full resolution either way."""
        from aims.converters.nyuv2_miniature import write_miniature

        return write_miniature(folder, seed=seed, num_frames=num_frames)


CONVERTER = NYUv2()
