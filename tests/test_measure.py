"""measure_sparsity, choose_blocks and the measure command, end to end on the tiny pipeline."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import analysis
from litefocus.cli import main


@pytest.fixture(scope="module")
def sparsity(tiny_pipe):
    return analysis.measure_sparsity(tiny_pipe, "a dog barking", audio_length_in_s=2.6, num_inference_steps=2,
                                     blocks=["down_blocks.1", "up_blocks.0"], queries=4)


def test_measure_sparsity_dataset(sparsity, tmp_path):
    ds = sparsity
    assert set(ds.dims) == {"module", "step", "head"} and ds.sizes["step"] == 2 and ds.sizes["head"] == 2
    assert set(ds.block.values) == {"down_blocks.1", "up_blocks.0"}
    assert set(np.unique(ds.freq_bins)) == {8, 2} and set(np.unique(ds.time_bins)) == {33, 9}
    for name in ("same_frequency_mass", "same_frequency_ratio", "periodicity_period", "periodicity_strength",
                 "entropy", "focus_mass", "sparse_error"):
        assert name in ds
    np.testing.assert_allclose(ds.same_frequency_ratio, ds.same_frequency_mass * ds.freq_bins)
    # random weights: no preference for the own frequency row
    assert abs(float(ds.same_frequency_ratio.mean()) - 1) < 0.05
    assert ds.attrs["prompt"] == "a dog barking" and ds.attrs["audio_length_in_s"] == 2.6
    ds.to_netcdf(tmp_path / "s.nc", engine="h5netcdf")
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf").load(), ds)


def test_choose_blocks_applies_its_rule(sparsity):
    planted = sparsity.copy(deep=True)
    planted["same_frequency_ratio"] = planted.same_frequency_ratio.where(planted.block != "up_blocks.0", 3.0)
    choice = analysis.choose_blocks(planted, min_ratio=2.0)
    assert list(choice) == ["up_blocks.0"] and "same-frequency ratio >= 2.0" in choice.rule
    assert isinstance(choice.table, pd.DataFrame) and list(choice.table.block) == ["up_blocks.0", "down_blocks.1"]
    assert choice.table.chosen.tolist() == [True, False]
    assert list(analysis.choose_blocks(planted, min_ratio=2.0, max_error=-1.0)) == []
    assert list(analysis.choose_blocks(sparsity)) == []  # random weights: nothing earns sparsification


def test_measure_command_writes_dataset_figures_and_table(tmp_path, capsys):
    code = main(["measure", "--model", "tiny", "--seconds", "2.56", "--steps", "2", "--queries", "4",
                 "--blocks", "down_blocks.1", "--out", str(tmp_path)])
    assert code == 0
    assert {p.name for p in tmp_path.iterdir()} == {"sparsity.nc", "attention.nc", "blocks.csv",
                                                   "query_attention.png", "offset_profiles.png",
                                                   "sparsity_by_block.png"}
    table = pd.read_csv(tmp_path / "blocks.csv")
    assert list(table.block) == ["down_blocks.1"]
    assert "chosen blocks:" in capsys.readouterr().out
    tree = xr.open_datatree(tmp_path / "attention.nc", engine="h5netcdf")
    assert tree["down_blocks/1/attentions/0/transformer_blocks/0/attn1"].attrs["freq_bins"] == 8
