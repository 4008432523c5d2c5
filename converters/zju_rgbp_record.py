"""ZJU-RGBP (Xiang, Yang, Wang, Optics Express 2021): the record of the source behind
``polarization-zju``.

Every fact AIMS relies on about this dataset is here; the converter
(:mod:`aims.converters.zju_rgbp`) only finds and reads the files.
"""

from __future__ import annotations

from aims.converters.record import (
    CONNECTED_COMPONENTS,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceFile,
    SourceRecord,
)

ARCHIVE = "RGB-P-dataset.rar"
URL = "https://huggingface.co/datasets/Zhonghua/ZJU_RGB_P/resolve/main/RGB-P-dataset.rar"
SHA256 = "7120c25efb62bc0f1b53d39d0a9ecbe3be83a8089483e0cb0f9beeb323ab7629"
#: the four polarizer angles, in degrees; stored as column ``angle_<θ>`` each
ANGLES = (0, 45, 90, 135)
CLASS_NAMES = ("background", "building", "glass", "car", "road", "tree", "sky",
               "pedestrian", "bicycle")
#: VOC's "void" index (object borders); ignored like background
VOID = 255

CITATION = """@article{xiang2021polarization,
  title   = {Polarization-driven semantic segmentation via efficient attention-bridged fusion},
  author  = {Xiang, Kaite and Yang, Kailun and Wang, Kaiwei},
  journal = {Optics Express},
  volume  = {29},
  number  = {4},
  pages   = {4802--4820},
  year    = {2021}
}"""

_ANGLE_COLUMNS = tuple(f"angle_{a}" for a in ANGLES)

RECORD = SourceRecord(
    name="zju_rgbp",
    title="ZJU-RGBP (RGB-P dataset)",
    homepage="https://huggingface.co/datasets/Zhonghua/ZJU_RGB_P",
    license="apache-2.0 (dataset card of the Hugging Face mirror)",
    citation=CITATION,
    classes=CLASS_NAMES,
    label_encoding=(
        f"label/<key>.png: VOC-palette PNGs, palette index = class id; 0 (unlabelled) and {VOID} "
        "(void, object borders) are ignored. The SimCMF repack: label_sam/ instance ids, "
        "without classes (category -1)."
    ),
    ignore_labels=(0, VOID),
    instances=InstanceSource(CONNECTED_COMPONENTS, 8, "connected components of each of the 8 classes"),
    converter="aims.converters.zju_rgbp",
    files=(SourceFile(name=ARCHIVE, url=URL, known_hash=f"sha256:{SHA256}"),),
    notes=(
        "394 scenes (344 train / 50 val; val is the test split), each photographed "
        "behind a linear polarizer at 0°, 45°, 90° and 135°; 8 semantic classes.",
    ),
    configs=(
        ConfigRecord(
            name="polarization-zju",
            description="ZJU-RGBP: RGB polarization images at four polarizer angles, 8 urban classes.",
            columns=(
                ColumnRecord("rgb", "8-bit RGB PNG (uint8)",
                             "unpolarized intensity round((I0 + I45 + I90 + I135) / 4) per channel "
                             "(derived, not a separate photograph)", "rgb_unit", 3),
                *(ColumnRecord(f"angle_{a}", "8-bit RGB PNG (uint8)",
                               f"the release's {a}° polarizer image: intensity behind a linear "
                               f"polarizer at {a}°, R,G,B, as recorded, stored losslessly",
                               "codes8_unit", 3) for a in ANGLES),
            ),
            modalities=(
                ModalityRecord(
                    "polarization-zju", _ANGLE_COLUMNS,
                    "[I_R, I_G, I_B, AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B]: I = (I0+I90)/2/255 "
                    "in [0, 1], AoLP = ½·atan2(S2, S1) in radians (-π/2, π/2], DoLP in [0, 1]",
                    label="Polarization (ZJU)", combine="stokes_full", channels=9),
                ModalityRecord(
                    "polarization-zju-simcmf", _ANGLE_COLUMNS,
                    "SimCMF's ZJU_RGBP.raw2rgbp: I = ½(I0+I45+I90+I135)+1e-4 in 0..510, "
                    "AoLP = ½·arctan(S2/S1) in [-π/4, π/4], DoLP = min(·, 1)",
                    combine="stokes_simcmf", channels=9),
            ),
            tags=("polarization",),
            notes=(
                "aims.modality_tensor(row, 'polarization-zju') gives 9 channels [I_R, I_G, I_B, "
                "AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] from the Stokes parameters: "
                "I = (I0 + I90) / 2 / 255, AoLP = ½·atan2(I45 − I135, I0 − I90) in radians "
                "(−π/2, π/2], DoLP = √(S1² + S2²) / S0 clipped to [0, 1] (0 where S0 = 0). "
                "'polarization-zju-simcmf' reproduces the SimCMF loader (I = ½ΣI + 1e-4 in "
                "0..510, AoLP = ½·arctan(S2/S1) in ±π/4).",
                "Split: the release's train/ → train (validation carved from it), val/ → test.",
            ),
            simcmf_area_filter=10000,
            headline=False,
        ),
    ),
)
