"""IVRG-NIR with the SimCMF repack's region labels: the record of the source behind ``nir``.

Every fact AIMS relies on about this dataset is here; the converter
(:mod:`aims.converters.ivrg_nir`) only reads and matches the files. Provenance evidence:
docs/release-evidence.md and ../shared/docs/sources.md ("IVRG-NIR").
"""

from __future__ import annotations

from aims.converters.record import (
    REPACK_IDS,
    RGB8,
    ColumnRecord,
    ConfigRecord,
    InstanceSource,
    ModalityRecord,
    SourceFile,
    SourceRecord,
)

REPACK_FOLDER = "IVRG_RGBNIR"
NIRSCENE_ZIP = "nirscene1.zip"
NIRSCENE_URL = "https://ivrlwww.epfl.ch/supplementary_material/cvpr11/nirscene1.zip"
SIMCMF_README = "https://github.com/mt-cly/SimCMF"
#: SimCMF evaluates NIR regions of more than this many pixels after the 1024×1024 warp
SIMCMF_AREA_FILTER = 1000

CITATION = """@inproceedings{brown2011multispectral,
  title     = {Multi-spectral {SIFT} for Scene Category Recognition},
  author    = {Brown, Matthew and S{\\\"u}sstrunk, Sabine},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2011}
}
@article{lei2024simcmf,
  title   = {{SimCMF}: A Simple Cross-modal Fine-tuning Strategy from Vision Foundation Models to Any Imaging Modality},
  author  = {Lei, Chenyang and Chen, Liyi and Cen, Jun and Chen, Xiao and Lei, Zhen and Heide, Felix and Chen, Qifeng and Zhang, Zhaoxiang},
  journal = {arXiv preprint arXiv:2411.18669},
  year    = {2024}
}"""

RECORD = SourceRecord(
    name="ivrg_nir",
    title="IVRG RGB-NIR images with SimCMF region labels",
    homepage="https://www.epfl.ch/labs/ivrl/research/downloads/rgb-nir-scene-dataset/",
    license="research use (EPFL IVRL); labels: SimCMF repack, terms unknown",
    citation=CITATION,
    classes=("background", "region"),
    label_encoding=(
        "the repack's region-id masks (PNG, palette indices or grey values): each id is one "
        "region, 0 = background; no class names are published, so every region has class 1 "
        "`region`."
    ),
    ignore_labels=(0,),
    instances=InstanceSource(
        REPACK_IDS, None,
        "every region id of the repack's masks is one instance, as given (disconnected parts of "
        "one id are not split)"),
    converter="aims.converters.ivrg_nir",
    files=(
        SourceFile(
            name=NIRSCENE_ZIP, url=NIRSCENE_URL, known_hash=None,
            optional=(
                "about 952 MB, never downloaded by aims: its lossless TIFFs replace the repack's "
                "JPEG frames, but only when every repack frame is proven by content to be a "
                "nirscene1 frame; without it the repack's JPEGs are used (what SimCMF trained and "
                "scored on)"),
        ),
        SourceFile(
            name=REPACK_FOLDER,
            url=None,
            known_hash=None,
            manual=(
                f"the labels exist only in the SimCMF repack: open the OneDrive link in the "
                f"README of {SIMCMF_README}, download the folder {REPACK_FOLDER} (about 1.0 GB; "
                f"OneDrive delivers it as {REPACK_FOLDER}.zip) and extract it"
            ),
        ),
    ),
    notes=(
        "Images and region-id masks: the SimCMF repack IVRG_RGBNIR (Outdoor_dataset/, "
        "JPEG). Its frames most probably come from the outdoor part of the hand-segmented "
        "RGB-NIR database of Salamati et al. (arXiv 1406.6147), from the same EPFL lab as "
        "nirscene1 (Brown & Süsstrunk, CVPR 2011); that they are nirscene1 frames is not "
        "proven. No class names are published, so every region is class 1 `region`.",
    ),
    configs=(
        ConfigRecord(
            name="nir",
            description="IVRG-NIR: near-infrared scenes with registered RGB and region masks.",
            columns=(
                RGB8,
                ColumnRecord("nir", "8-bit greyscale PNG (uint8)",
                             "near-infrared intensity as recorded (the repack's JPEG, or a "
                             "content-matched nirscene1 TIFF)", "grey_unit", 1),
            ),
            modalities=(
                ModalityRecord("nir", ("nir",), "near-infrared intensity in [0, 1]", label="NIR"),
                ModalityRecord("rgb-nir", ("rgb", "nir"), "RGB + NIR, shuffled: channels [B, R, G, NIR]",
                               label="RGB-NIR", shuffle_seed=0),
            ),
            tags=("nir", "near-infrared"),
            notes=(
                f"SimCMF evaluates regions of more than {SIMCMF_AREA_FILTER} px after warping to "
                "1024×1024 (protocol `simcmf`); protocol `aims` uses the shared ≥ 100 px rule.",
            ),
            simcmf_area_filter=SIMCMF_AREA_FILTER,
            headline=True,
        ),
    ),
)
