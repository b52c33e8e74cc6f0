"""measure_sparsity, choose_blocks and the measure command, end to end on the tiny pipeline."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import analysis
import litefocus
from litefocus_cli.main import main


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


@pytest.mark.parametrize("budget", [[], ["--budget", "KAD=0"]], ids=["threshold rule", "and budget rule"])
def test_measure_command_writes_dataset_figures_and_table(tmp_path, capsys, budget):
    code = main(["measure", "--model", "tiny", "--seconds", "2.56", "--steps", "2", "--queries", "4",
                 "--blocks", "down_blocks.1", *budget, "--out", str(tmp_path)])
    assert code == 0
    written = {"sparsity.nc", "attention.nc", "blocks.csv", "query_attention.png", "offset_profiles.png",
               "sparsity_by_block.png", "run.json"}
    assert {p.name for p in tmp_path.iterdir()} == written | ({"block_sets.csv"} if budget else set())
    table = pd.read_csv(tmp_path / "blocks.csv")
    assert list(table.block) == ["down_blocks.1"]
    assert table.focus_contrast.between(0.5, 2).all() and table.sink_strength.between(1, 8).all()  # issue 28
    sparsity = xr.open_dataset(tmp_path / "sparsity.nc", engine="h5netcdf")
    assert set(sparsity.head_class.values.ravel()) <= {"own_row", "same_time", "sink_row", "global"}
    out = capsys.readouterr().out
    assert "threshold rule: same-frequency ratio >= 2.0" in out
    if budget:
        sets = pd.read_csv(tmp_path / "block_sets.csv")
        assert len(sets) == 2 and sets.within_budget.dtype == bool  # dense and down_blocks.1 weighed
        assert "budget rule: the largest estimated speed-up" in out and "estimated UNet step speed-up" in out
    else:  # opt-in: a default that chose the same blocks whatever was measured is no default
        assert "budget rule: not applied (opt-in" in out
    tree = xr.open_datatree(tmp_path / "attention.nc", engine="h5netcdf")
    assert tree["down_blocks/1/attentions/0/transformer_blocks/0/attn1"].attrs["freq_bins"] == 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=[5]), r"steps \[5\] are outside the run: with num_inference_steps=2"),
    (dict(steps=[]), "steps is empty"),
    (dict(steps=[-1]), "steps must be ints >= 0"),
    (dict(steps="0"), "steps must be a list"),
    (dict(num_inference_steps=0), "num_inference_steps must be an int >= 1"),
    (dict(num_inference_steps=-3), "num_inference_steps must be an int >= 1"),
    (dict(audio_length_in_s=float("nan")), "audio_length_in_s must be a positive finite"),
    (dict(audio_length_in_s=float("inf")), "audio_length_in_s must be a positive finite"),
    (dict(chunk=0), "chunk must be a positive number"),
    (dict(focus_ratio=2.0), r"ratio must lie in \[0, 1\]"),
    (dict(prompt=""), "prompt must be a non-empty string"),
    (dict(generator=torch.Generator()), "measure_sparsity sets generator itself.*pass seed="),
])
def test_measure_sparsity_bad_input_fails_before_the_pipeline_runs(tiny_pipe, kwargs, message):
    calls = []
    hook = tiny_pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    arguments = dict(prompt="a dog", audio_length_in_s=1.28, num_inference_steps=2) | kwargs
    try:
        with pytest.raises(ValueError, match=message):
            analysis.measure_sparsity(tiny_pipe, arguments.pop("prompt"), **arguments)
    finally:
        hook.remove()
    assert calls == []


def test_recorder_says_which_steps_were_never_reached(tiny_pipe):
    with pytest.raises(ValueError, match=r"steps \[7\] were never reached: the UNet was called 2 times"):
        with analysis.record_attention(tiny_pipe, blocks="down_blocks.1", steps=[1, 7]):
            tiny_pipe("a dog", num_inference_steps=2, audio_length_in_s=1.28)
    assert not litefocus.is_applied(tiny_pipe)


def test_choose_blocks_names_what_it_needs(sparsity):
    with pytest.raises(ValueError, match="empty dataset"):
        analysis.choose_blocks(sparsity.isel(module=[]))
    with pytest.raises(ValueError, match="missing.*sparse_error"):
        analysis.choose_blocks(sparsity.drop_vars("sparse_error"))
    hand_made = xr.Dataset(dict(same_frequency_ratio=(("module",), [2.5])))
    with pytest.raises(ValueError, match="needs measure_sparsity's dataset"):
        analysis.choose_blocks(hand_made)
    with pytest.raises(TypeError, match="takes the xarray.Dataset"):
        analysis.choose_blocks(sparsity.to_dataframe())
    with pytest.raises(ValueError, match="min_ratio must be a finite number"):
        analysis.choose_blocks(sparsity, min_ratio=float("nan"))


def test_a_block_measured_alone_counts_against_every_module_of_its_level(tiny_pipe):
    from analysis import block_choice as bc

    from litefocus.selection import self_attention_modules

    down, up = (len(self_attention_modules(tiny_pipe.unet, b)) for b in ("down_blocks.1", "up_blocks.2"))
    alone = analysis.measure_sparsity(tiny_pipe, "a dog", 1.28, 2, blocks="up_blocks.2", queries=2)
    table = bc.block_table(alone).set_index("block")
    # level 1 is down_blocks.1 and up_blocks.2: up_blocks.2 holds up / (down + up) of it (issue 22, case 4)
    assert table.loc["up_blocks.2", "modules"] == up and down > 0
    assert table.loc["up_blocks.2", "level_fraction"] == pytest.approx(up / (down + up))
    both = analysis.measure_sparsity(tiny_pipe, "a dog", 1.28, 2, blocks=["down_blocks.1", "up_blocks.2"], queries=2)
    assert bc.block_table(both).set_index("block").loc["up_blocks.2", "level_fraction"] == pytest.approx(
        up / (down + up))
