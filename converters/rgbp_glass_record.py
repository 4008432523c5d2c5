"""RGBP-Glass (Mei et al., CVPR 2022, "PGSNet"): the record of the source behind
``polarization``.

Every fact AIMS relies on about this dataset is here; the converter
(:mod:`aims.converters.rgbp_glass`) only finds and reads the files. Real release facts
(checked on a public sample, ../shared/docs/sources.md): 612×512 frames, 16-bit LZW RGB
TIFFs, 8-bit LZW AoLP/DoLP TIFFs, 1-bit masks, COCO ``instances_<split>.json``.
"""

from __future__ import annotations

from aims.converters.record import (
    RELEASE_INSTANCES,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceFile,
    SourceRecord,
)

SPLITS = ("train", "test")
#: Google Drive file ids of the two archives (authors' README, 2022–2024)
DRIVE_IDS = {"train": "1L7M3DlSeIeFr7eqDFfp5X_9UH6Qr-tPB", "test": "1RyIAPN9xZLe6GPeDmPrU2RJ9fbBroga8"}
#: names under which the manual downloads are looked for in the download cache
ARCHIVE_NAMES = {"train": "RGBP-Glass-train", "test": "RGBP-Glass-test"}

CITATION = """@inproceedings{mei2022glass,
  title     = {Glass Segmentation using Intensity and Spectral Polarization Cues},
  author    = {Mei, Haiyang and Dong, Bo and Dong, Wen and Yang, Jiaxi and Baek, Seung-Hwan and Heide, Felix and Peers, Pieter and Wei, Xiaopeng and Yang, Xin},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""

#: The release's image/<id>_rgb.tiff is 16 bits per channel (LZW TIFF), kept bit for bit.
#: Pillow (hence `datasets`' Image decoding and PGSNet's own loader) keeps only the high
#: byte of a 16-bit colour image, so the text says how to get all 16 bits.
RGB16 = ColumnRecord(
    "rgb", "16-bit RGB PNG (uint16)",
    "the release's image/<id>_rgb.tiff bit for bit (16 bits per channel; an 8-bit source image "
    "would be stored 8-bit). Decoded by Pillow, as `datasets` does for `row['rgb']`, it reads as "
    "8-bit = value >> 8 (the high byte), which is exactly what PGSNet's own Pillow loader sees; "
    "for all 16 bits read the PNG bytes (`datasets.Image(decode=False)`) with "
    "`aims.imageio.decode_png`. `aims.modality_tensor`: value / 65535 in [0, 1] (given a "
    "Pillow-decoded row: (value >> 8) / 255, within 1/255 of it)",
    "rgb_unit", 3)

RECORD = SourceRecord(
    name="rgbp_glass",
    title="RGBP-Glass (PGSNet)",
    homepage="https://github.com/Mhaiyang/CVPR2022_PGSNet",
    license="non-commercial research use only (see the release's LICENSE)",
    citation=CITATION,
    classes=("background", "glass"),
    label_encoding=(
        "mask/<id>_mask.png: 1-bit glass masks, glass = 1 (8-bit masks: ≥ 128; RGB masks: "
        "channel 1, as in the authors' evaluation); <split>/instances_<split>.json: COCO polygon "
        "outlines of the panes, one category `glass`. The SimCMF repack `pgsnet`: "
        "instance_mask/ id maps, every instance of class glass."
    ),
    ignore_labels=(0,),
    instances=InstanceSource(
        RELEASE_INSTANCES, 8,
        "the release's instances_<split>.json polygons, rasterised with pycocotools; 8-connected "
        "components of mask/ where a split has no JSON or with --instances components"),
    converter="aims.converters.rgbp_glass",
    files=tuple(
        SourceFile(
            name=ARCHIVE_NAMES[split],
            url=None,
            known_hash=None,
            manual=(
                f"download the RGBP-Glass {split} archive from Google Drive "
                f"(https://drive.google.com/file/d/{DRIVE_IDS[split]}/view, linked from "
                "https://github.com/Mhaiyang/CVPR2022_PGSNet; a Baidu mirror is listed "
                "there too) in a browser. PATH may be a folder holding both downloaded "
                "archives, one archive, or the folder you extracted them to"
            ),
        )
        for split in SPLITS
    ),
    notes=(
        "RGBP-Glass: 4511 RGB + trichromatic AoLP/DoLP images from a colour polarization "
        "camera with glass masks and COCO pane outlines; official train/test folders "
        "(3207 / 1304).",
    ),
    configs=(
        ConfigRecord(
            name="polarization",
            description="RGBP-Glass: 16-bit RGB with trichromatic angle and degree of linear "
                        "polarization; glass instances.",
            columns=(
                RGB16,
                ColumnRecord(
                    "aolp", "8-bit RGB PNG (uint8)",
                    "angle of linear polarization per colour channel, the release's 8-bit codes in "
                    "R,G,B order (stored channel k = channel 2−k of aolp/<id>_aolp.tiff, which holds "
                    "B,G,R); code → radians not published (likely [0, π) → 0..255)",
                    "codes8_unit", 3),
                ColumnRecord(
                    "dolp", "8-bit RGB PNG (uint8)",
                    "degree of linear polarization per colour channel, the release's 8-bit codes in "
                    "R,G,B order (stored channel k = channel 2−k of dolp/<id>_dolp.tiff, which holds "
                    "B,G,R); likely [0, 1] → 0..255",
                    "codes8_unit", 3),
            ),
            modalities=(
                ModalityRecord(
                    "polarization", ("rgb", "aolp", "dolp"),
                    "[R, G, B] / 65535 (16-bit; / 255 when 8-bit), "
                    "[AoLP_R, AoLP_G, AoLP_B, DoLP_R, DoLP_G, DoLP_B] / 255: all in [0, 1]",
                    label="Polarization"),
            ),
            tags=("polarization",),
            notes=(
                "aims.modality_tensor(row, 'polarization') = [RGB / 65535, AoLP / 255, "
                "DoLP / 255] (9 channels in [0, 1], R,G,B within each). SimCMF's loader feeds "
                "AoLP/DoLP in file (B,G,R) order.",
            ),
            simcmf_area_filter=100,
            headline=True,
        ),
    ),
)
