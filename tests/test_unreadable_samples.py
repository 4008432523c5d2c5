"""One rule for every source: a sample whose file cannot be read is skipped, counted, and
named (with the file) in the summary and the dataset card; the other samples are
converted. The error is raised by the converter in a worker (:class:`UnreadableSample`)
and handled once, by the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aims.converters.registry import converter
from aims.prepare import prepare_source


def _nyuv2_repack(folder: Path) -> Path:
    from aims.converters.nyuv2_repack import write_miniature

    return write_miniature(folder, num_frames=6)


#: label -> (source, configs, miniature writer)
CASES = {
    "nyuv2 (SimCMF repack)": ("nyuv2", ["depth"], _nyuv2_repack),
    "ivrg_nir": ("ivrg_nir", ["nir"], lambda f: converter("ivrg_nir").write_miniature(f, with_nirscene=False)),
    "rgbp_glass": ("rgbp_glass", ["polarization"], lambda f: converter("rgbp_glass").write_miniature(f)),
    "zju_rgbp": ("zju_rgbp", ["polarization-zju"], lambda f: converter("zju_rgbp").write_miniature(f)),
    "thermal_glass": ("thermal_glass", ["thermal"], lambda f: converter("thermal_glass").write_miniature(f)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_truncated_file_skips_its_sample_for_every_source(case, tmp_path):
    name, configs, write = CASES[case]
    conv = converter(name)
    src = write(tmp_path / "src")
    with conv.list_samples(configs, source=src) as listing:
        known_bad = {s.image_id for s in listing.skipped}
        ref = listing.refs[1]
        total = len(listing.refs)
    damaged = Path(next(iter(ref.files.values())))
    damaged.write_bytes(damaged.read_bytes()[:64])
    out = tmp_path / "ds"
    result = prepare_source(conv, configs, dataset_dir=out, source=src, workers=2, progress=False)
    unreadable = [s for s in result.skipped if s.image_id not in known_bad]
    assert [s.image_id for s in unreadable] == [ref.image_id]
    assert str(damaged) in unreadable[0].reason
    for config in configs:
        assert sum(c["images"] for c in result.counts[config].values()) == total - 1
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"{ref.image_id} (" in card and "source sample(s) skipped" in card
    shutil.rmtree(src)
