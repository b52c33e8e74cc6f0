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
    assert [p.name for p in paths] == ["10_1.28s.nc", "10_2.56s.nc", "2_1.28s.nc", "2_2.56s.nc"]
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
