"""RGB-T Glass (Huo et al., IEEE TIP 2023): the record of the source behind ``thermal``.

Every fact AIMS relies on about this dataset is here; the converter
(:mod:`aims.converters.thermal_glass`) only finds and reads the files.
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
from aims.decoders import TEMPERATURE_OFFSET_C, TEMPERATURE_STEP_C

DRIVE_ID = "1ysG04qGmnZv7UaybZUuyybaJYJLUkNHX"
ARCHIVE_NAME = "RGB-T-glass"

CITATION = """@article{huo2023glass,
  title   = {Glass Segmentation with {RGB}-Thermal Image Pairs},
  author  = {Huo, Dong and Wang, Jian and Qian, Yiming and Yang, Yee-Hong},
  journal = {IEEE Transactions on Image Processing},
  year    = {2023}
}"""

_STEPS = round(1 / TEMPERATURE_STEP_C)
_TOP = TEMPERATURE_OFFSET_C + 65535 * TEMPERATURE_STEP_C

RECORD = SourceRecord(
    name="thermal_glass",
    title="RGB-T Glass (RGB-thermal glass segmentation)",
    homepage="https://github.com/Dong-Huo/RGB-T-Glass-Segmentation",
    license="research use (no licence stated by the authors)",
    citation=CITATION,
    classes=("background", "glass"),
    label_encoding=(
        "mask.png: 0/255 glass masks (glass = value ≥ 128), one class. The SimCMF repack "
        "RGB-Thermal-Glass: instance-id masks listed by RGB_T_Glass_{train,test}_GroundTruth.csv, "
        "kept as given, every instance of class glass."
    ),
    ignore_labels=(0,),
    instances=InstanceSource(CONNECTED_COMPONENTS, 8, "8-connected components of the glass masks"),
    converter="aims.converters.thermal_glass",
    files=(
        SourceFile(
            name=ARCHIVE_NAME,
            url=None,
            known_hash=None,
            manual=(
                "download the RGB-T Glass archive in a browser from Google Drive "
                f"(https://drive.google.com/file/d/{DRIVE_ID}/view) or the link on the first "
                "author's home page https://dong-huo.github.io/. PATH may be the "
                "downloaded archive or the folder you extracted it to (holding RGB-T-glass/"
                "train and test), or the SimCMF repack folder RGB-Thermal-Glass"
            ),
        ),
    ),
    notes=(
        "RGB-T Glass: 5551 registered RGB / thermal (temperature in °C) image pairs with "
        "glass masks; official train/test folders.",
    ),
    configs=(
        ConfigRecord(
            name="thermal",
            description="RGB-T Glass: registered RGB and thermal temperature; glass instances.",
            columns=(
                ColumnRecord("rgb", "8-bit RGB PNG (uint8)",
                             "the release's rgb.png, registered to the thermal frame", "rgb_unit", 3),
                ColumnRecord("temperature", "16-bit greyscale PNG (uint16)",
                             f"temperature.npy as a code: °C = {TEMPERATURE_OFFSET_C:g} + code / {_STEPS} "
                             f"(step 1/{_STEPS} °C, max quantisation error 1/{2 * _STEPS} ≈ 0.002 °C; "
                             f"range {TEMPERATURE_OFFSET_C:g} … {_TOP:.3f} °C)",
                             "temperature_code_to_celsius", 1),
            ),
            modalities=(
                ModalityRecord("thermal", ("temperature",), "temperature in degrees Celsius", label="Thermal"),
                ModalityRecord("rgb-thermal", ("rgb", "temperature"),
                               "RGB + temperature (°C), shuffled: channels [B, R, G, T]",
                               label="RGB-T", shuffle_seed=0),
            ),
            tags=("thermal", "infrared"),
            notes=(
                "aims.modality_tensor(row, 'thermal') gives °C as float32 (1, H, W); SimCMF "
                "min-max normalises temperature per image instead.",
                "Image id = <scene>_<image_id>; entries with '.' in their name at the scene or "
                "image level are not samples (as in the authors' loader). boundary.png is not used.",
            ),
            simcmf_area_filter=0,
            headline=True,
        ),
    ),
)
