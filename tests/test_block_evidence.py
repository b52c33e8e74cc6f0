"""The evidence of a sweep's captions: measure_sparsity per caption and length, resumable, gathered in caption order."""

import numpy as np
import xarray as xr

import analysis
from studies.block_ablation import evidence as block_evidence
from analysis.captions import Caption


def test_evidence_per_caption_is_measure_sparsity_resumed_and_gathered(tiny_pipe, tmp_path):
    captions = [Caption("10", "rain on a roof"), Caption("2", "a dog barking")]  # not in sorted order
    parts = tmp_path / "e.parts"
    paths = block_evidence.measure_captions(tiny_pipe, captions, [1.28, 2.56], parts, steps=3, every=2,
                                            summary_queries=64)
    assert [p.name.rsplit("_", 1)[0] for p in paths] == ["10_1.28s", "10_2.56s", "2_1.28s", "2_2.56s"]
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    assert block_evidence.measure_captions(tiny_pipe, captions, [1.28, 2.56], parts, steps=3, every=2,
                                           summary_queries=64) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps  # a rerun measures nothing again

    ds = block_evidence.gather(paths)
    assert list(ds.caption.values) == ["10", "2"] and list(ds.seconds.values) == [1.28, 2.56]
    assert list(ds.step.values) == [0, 2]  # every 2nd of 3 steps, and the last
    assert set(block_evidence.VARIABLES) <= set(ds.data_vars)
    assert ds.time_bins.sel(caption="2", seconds=2.56).max() > ds.time_bins.sel(caption="2", seconds=1.28).max()
    direct = analysis.measure_sparsity(tiny_pipe, "a dog barking", 2.56, 3, 0, steps=[0, 2], queries=1,
                                       summary_queries=64)
    for name in block_evidence.VARIABLES:
        np.testing.assert_allclose(ds[name].sel(caption="2", seconds=2.56).transpose(*direct[name].dims),
                                   direct[name], rtol=1e-6)
    path = tmp_path / "e.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    assert analysis.block_choice.block_table(xr.load_dataset(path, engine="h5netcdf")).modules.sum() \
        == ds.sizes["module"]


def test_parts_are_keyed_by_caption_text_settings_and_weights(tiny_pipe, tmp_path):
    """Issue 22, case 9: a rerun with other captions or steps into the same folder reassembled the old parts."""
    parts = tmp_path / "e.parts"
    first = block_evidence.measure_captions(tiny_pipe, [Caption("1", "rain on a roof")], [1.28], parts, steps=2,
                                            every=1, summary_queries=16)
    other_text = block_evidence.measure_captions(tiny_pipe, [Caption("1", "a dog barking")], [1.28], parts, steps=2,
                                                 every=1, summary_queries=16)
    other_steps = block_evidence.measure_captions(tiny_pipe, [Caption("1", "rain on a roof")], [1.28], parts,
                                                  steps=3, every=1, summary_queries=16)
    assert len({first[0], other_text[0], other_steps[0]}) == 3 and all(p.exists() for p in first + other_text)
    assert block_evidence.gather(other_steps).sizes["step"] == 3


def test_an_evidence_file_of_other_settings_is_refused_not_reassembled(tmp_path):
    import pytest

    captions = tmp_path / "captions.txt"
    captions.write_text("rain on a roof\n")
    out = tmp_path / "evidence.nc"
    xr.Dataset(coords=dict(caption=["0"], seconds=[1.28])).to_netcdf(out, engine="h5netcdf")  # no settings recorded
    with pytest.raises(SystemExit, match="holds evidence of other settings.*not recorded"):
        block_evidence.main(["--captions", str(captions), "--seconds", "1.28", "--steps", "2", "--out", str(out)])
