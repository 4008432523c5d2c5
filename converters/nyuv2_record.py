"""NYU Depth V2 (labeled subset): the record of the source behind ``depth`` and ``hha``.

Every fact AIMS relies on about this dataset is here; the converter
(:mod:`aims.converters.nyuv2`) only reads the files.
"""

from __future__ import annotations

from aims.converters.record import (
    CONNECTED_COMPONENTS,
    RGB8,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceFile,
    SourceRecord,
)

LABELED_MAT = "nyu_depth_v2_labeled.mat"
SPLITS_MAT = "splits.mat"
CLASS_MAPPING_MAT = "classMapping40.mat"
_META_URL = "https://github.com/ankurhanda/nyuv2-meta-data/raw/master/"

#: the standard 40 NYUv2 class names (Gupta et al. 2013); classMapping40.mat carries them too
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

RECORD = SourceRecord(
    name="nyuv2",
    title="NYU Depth Dataset V2 (labeled subset)",
    homepage="https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
    license="unknown",
    citation=CITATION,
    classes=("void", *NYU40_CLASS_NAMES),
    label_encoding=(
        "the .mat's `labels`: 894 raw class ids per pixel, mapped to the standard 40 classes by "
        "classMapping40.mat (Gupta et al.); 0 = void, never an instance. The SimCMF repack "
        "NYUDepthv2 has instance-id masks (Mask_gt/) without classes instead."
    ),
    ignore_labels=(0,),
    instances=InstanceSource(CONNECTED_COMPONENTS, 8, "connected components of each of the 40 classes"),
    converter="aims.converters.nyuv2",
    files=(
        SourceFile(
            name=LABELED_MAT,
            url="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",
            known_hash="md5:520609c519fba3ba5ac58c8fefcc3530",
            size=2_972_037_809,
        ),
        SourceFile(
            name=SPLITS_MAT,
            url=_META_URL + SPLITS_MAT,
            known_hash="sha256:6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee",
        ),
        SourceFile(
            name=CLASS_MAPPING_MAT,
            url=_META_URL + CLASS_MAPPING_MAT,
            known_hash="sha256:ff177194cce9a2163517f1e1e6f1c64c50987162f542dedddc04bbf6ebe6d851",
        ),
    ),
    notes=(
        "NYU Depth V2 is distributed for research use without a stated licence.",
        "1449 densely labelled Kinect frames; official 795 train / 654 test split "
        "(splits.mat); 894 raw classes mapped to the standard 40 (classMapping40.mat).",
    ),
    configs=(
        ConfigRecord(
            name="depth",
            description="NYUv2 depth: filled Kinect depth with the registered RGB frame.",
            columns=(
                RGB8,
                ColumnRecord("depth", "16-bit greyscale PNG (uint16)",
                             "depth in millimetres (the release's filled `depths`); 0 = no value",
                             "millimetres_to_metres", 1),
            ),
            modalities=(
                ModalityRecord("depth", ("depth",), "depth in metres", label="Depth"),
                ModalityRecord("rgb-depth", ("rgb", "depth"), "RGB + depth, shuffled", label="RGB-D",
                               shuffle_seed=0),
            ),
            tags=("depth",),
            simcmf_area_filter=0,
            headline=True,
        ),
        ConfigRecord(
            name="hha",
            description="NYUv2 HHA: horizontal disparity, height above ground, angle with gravity.",
            columns=(
                RGB8,
                ColumnRecord("hha", "8-bit RGB PNG (uint8)",
                             "HHA (Gupta et al. 2014): R = disparity (31000 / depth_cm), G = height "
                             "above the lowest point (cm), B = angle with gravity + 38 (degrees)",
                             "codes8_unit", 3),
            ),
            modalities=(
                ModalityRecord("hha", ("hha",), "HHA (disparity, height, angle)", label="HHA"),
                ModalityRecord("rgb-hha", ("rgb", "hha"), "RGB + HHA, shuffled", label="RGB-HHA",
                               shuffle_seed=0),
            ),
            tags=("hha", "depth"),
            simcmf_area_filter=0,
            headline=True,
        ),
    ),
)
