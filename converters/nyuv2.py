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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from aims.errors import AimsError, SourceFormatError
from aims.converters.base import (
    ConfigDescription,
    Downloader,
    Sample,
    SampleStream,
    SourceConverter,
    SourceInfo,
)

LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
CLASS_MAPPING_MAT = "classMapping40.mat"

_META_URL = "https://github.com/ankurhanda/nyuv2-meta-data/raw/master/"

_DEPTH_METRES = "_depth_metres"

#: frame size of every labelled NYUv2 image (rows, columns)
FRAME_SHAPE = (480, 640)

#: keys the converter reads, with their dtype and per-image h5py shape (N first)
_REQUIRED_KEYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "images": ("uint8", (3, 640, 480)),
    "depths": ("float32", (640, 480)),
    "labels": ("uint16", (640, 480)),
}

#: the standard 40 NYUv2 class names (Gupta et al. 2013), used by the miniature
NYU40_CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip

CITATION = """@inproceedings{silberman2012indoor,
  title     = {Indoor Segmentation and Support Inference from {RGBD} Images},
  author    = {Silberman, Nathan and Hoiem, Derek and Kohli, Pushmeet and Fergus, Rob},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2012}
}
@inproceedings{gupta2013perceptual,
  title     = {Perceptual Organization and Recognition of Indoor Scenes from {RGB-D} Images},
  author    = {Gupta, Saurabh and Arbel{\\'a}ez, Pablo and Malik, Jitendra},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2013}
}
@inproceedings{gupta2014learning,
  title     = {Learning Rich Features from {RGB-D} Images for Object Detection and Segmentation},
  author    = {Gupta, Saurabh and Girshick, Ross and Arbel{\\'a}ez, Pablo and Malik, Jitendra},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2014}
}"""


def source_files():
    """The three files of the source, with their pinned checksums."""
    from aims.fetch import SourceFile

    return {
        LABELED_MAT: SourceFile(
            name=LABELED_MAT,
            url="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
            known_hash="md5:520609c519fba3ba5ac58c8fefcc3530",
            size=2_972_037_809,
        ),
        SPLITS_MAT: SourceFile(
            name=SPLITS_MAT,
            url=_META_URL + SPLITS_MAT,
            known_hash="sha256:6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee",
        ),
        CLASS_MAPPING_MAT: SourceFile(
            name=CLASS_MAPPING_MAT,
            url=_META_URL + CLASS_MAPPING_MAT,
            known_hash="sha256:ff177194cce9a2163517f1e1e6f1c64c50987162f542dedddc04bbf6ebe6d851",
        ),
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
            raise SourceFormatError(
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


class _NYUv2Stream(SampleStream):
    def __init__(self, mat: LabeledMat, train: np.ndarray, test: np.ndarray, lut: np.ndarray,
                 configs: Sequence[str]) -> None:
        self._mat = mat
        self._lut = lut
        self._configs = tuple(configs)
        order = [(int(i), "train") for i in train] + [(int(i), "test") for i in test]
        bad = [i for i, _ in order if not 1 <= i <= mat.num_frames]
        if bad:
            mat.close()
            raise SourceFormatError(
                f"the split file names frame {bad[0]} but {mat.path} holds "
                f"{mat.num_frames} frames; the split file and the labeled .mat do not belong "
                "together.",
                path=mat.path,
            )
        self._order = sorted(order)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Sample]:
        for index, split in self._order:
            rgb, depth_m, raw_labels = self._mat.frame(index - 1)
            if raw_labels.max(initial=0) >= self._lut.size:
                raise SourceFormatError(
                    f"{self._mat.path}: frame {index} has label {int(raw_labels.max())}, "
                    f"beyond the {self._lut.size - 1} classes of the class mapping.",
                    path=self._mat.path,
                )
            images: dict[str, np.ndarray] = {"rgb": rgb}
            if "depth" in self._configs:
                images["depth"] = depth_to_millimetres(depth_m)
            if "hha" in self._configs:
                images[_DEPTH_METRES] = depth_m  # HHA is derived from it in a worker
            yield Sample(
                image_id=f"{index:04d}",
                split=split,
                images=images,
                semantic=self._lut[raw_labels],
            )

    def close(self) -> None:
        self._mat.close()


class NYUv2(SourceConverter):
    name = "nyuv2"
    configs = ("depth", "hha")
    ignore_labels = (0,)
    connectivity = 8
    info = SourceInfo(
        name="NYU Depth Dataset V2 (labeled subset)",
        homepage="https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
        license="unknown",
        citation=CITATION,
        notes=(
            "NYU Depth V2 is distributed for research use without a stated licence.",
            "1449 densely labelled Kinect frames; official 795 train / 654 test split "
            "(splits.mat); 894 raw classes mapped to the standard 40 (classMapping40.mat).",
        ),
    )

    def __init__(self) -> None:
        self._names: list[str] | None = None
        self._repack = None  # RepackReport when --source is the SimCMF NYUDepthv2 repack

    def category_names(self, configs: Sequence[str] = ()) -> list[str]:
        return ["void", *(self._names or NYU40_CLASS_NAMES)]

    def describe(self, config: str) -> ConfigDescription:
        desc = self._describe_release(config)
        if self._repack is None:
            return desc
        from dataclasses import replace

        from aims.converters.nyuv2_repack import describe_notes

        columns = dict(desc.columns)
        columns["rgb"] = "registered RGB (the repack's JPEG, decoded), 8-bit PNG"
        if config == "hha":
            columns["hha"] = "HHA as the repack gives it (JPEG, decoded), 8-bit RGB PNG: R = disparity, G = height, B = angle"
        return replace(desc, columns=columns, notes=describe_notes(config, self._repack))

    def _describe_release(self, config: str) -> ConfigDescription:
        if config == "depth":
            return ConfigDescription(
                config="depth",
                description="NYUv2 depth: filled Kinect depth with the registered RGB frame.",
                columns={
                    "rgb": "registered RGB, 8-bit PNG",
                    "depth": "filled depth (the release's `depths`), 16-bit PNG in millimetres; 0 = no value",
                },
            )
        if config == "hha":
            return ConfigDescription(
                config="hha",
                description="NYUv2 HHA: horizontal disparity, height above ground, angle with gravity.",
                columns={
                    "rgb": "registered RGB, 8-bit PNG",
                    "hha": "HHA (Gupta et al. 2014), 8-bit RGB PNG: R = disparity (31000 / depth_cm), "
                    "G = height above the lowest point (cm), B = angle with gravity + 38 (degrees)",
                },
                notes=(
                    "HHA is computed by aims.hha from the filled depth with the colour camera's "
                    "intrinsics; it reproduces Gupta et al.'s MATLAB code exactly on the oracle frame.",
                ),
            )
        raise KeyError(config)

    def derive(self, sample: Sample, configs: Sequence[str]) -> Sample:
        from aims.hha import NYU_COLOR_INTRINSICS, compute_hha

        depth_m = sample.images.pop(_DEPTH_METRES, None)
        if "hha" in configs and depth_m is not None:
            sample.images["hha"] = compute_hha(depth_m.astype(np.float64), NYU_COLOR_INTRINSICS)
        return sample

    def open(self, configs: Sequence[str], *, source: Path | None = None,
             downloader: Downloader | None = None) -> SampleStream:
        self._repack = None
        if source is not None:
            # the SimCMF repack (NYUDepthv2/ with RGB, Depth, HHA, Mask_gt, train.txt) is
            # recognised by its layout, so users pass whichever copy they have
            from aims.converters.nyuv2_repack import RepackReport, RepackStream, find_repack

            root = find_repack(Path(source))
            if root is not None:
                self._names = None
                self._repack = RepackReport()
                return RepackStream(root, configs, self._repack)
        paths = self._locate(source, downloader)
        train, test = read_splits(paths[SPLITS_MAT])
        lut, names = read_class_mapping(paths[CLASS_MAPPING_MAT])
        self._names = names
        mat = LabeledMat(paths[LABELED_MAT])
        return _NYUv2Stream(mat, train, test, lut, configs)

    def _locate(self, source: Path | None, downloader: Downloader | None) -> dict[str, Path]:
        """Take each file from ``source`` (the .mat itself, or a folder holding the
        files) and fetch whatever is not there."""
        from aims.fetch import fetch
        from aims.paths import downloads_dir

        files = source_files()
        found: dict[str, Path] = {}
        if source is not None:
            source = Path(source)
            if source.is_dir():
                for name in files:
                    if (source / name).is_file():
                        found[name] = source / name
                if LABELED_MAT not in found:
                    raise AimsError(
                        f"{source} holds no {LABELED_MAT}. Pass the folder that contains the "
                        f"NYUv2 labeled release (and optionally {SPLITS_MAT} and "
                        f"{CLASS_MAPPING_MAT}), the .mat file itself, or the SimCMF repack "
                        "folder NYUDepthv2 (RGB/, Depth/, HHA/, Mask_gt/, train.txt, test.txt).",
                        path=source,
                    )
            elif source.is_file():
                found[LABELED_MAT] = fetch(files[LABELED_MAT], source=source,
                                           cache_dir=downloads_dir(self.name))
            else:
                raise AimsError(f"--source {source} does not exist.", path=source)
        for name, spec in files.items():
            if name not in found:
                try:
                    found[name] = fetch(spec, cache_dir=downloads_dir(self.name),
                                        downloader=downloader)
                except AimsError:
                    raise
                except Exception as exc:  # network errors from the downloader
                    raise AimsError(
                        f"could not download {name} from {spec.url} ({exc}). Download it "
                        f"by hand and put it at {downloads_dir(self.name) / name}, or into "
                        "the folder you pass with --source, then run the command again.",
                        path=downloads_dir(self.name) / name,
                    ) from None
        return found

    def write_miniature(self, folder: Path, *, seed: int = 0, num_frames: int = 8,
                        full_resolution: bool = True) -> Path:
        """``full_resolution`` is accepted for the benchmarks' sake: NYUv2 frames are always
        480×640, the real size, so the miniature is full resolution either way."""
        from aims.converters.nyuv2_miniature import write_miniature

        return write_miniature(folder, seed=seed, num_frames=num_frames)


CONVERTER = NYUv2()
