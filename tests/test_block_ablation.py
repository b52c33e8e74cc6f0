"""The ablation's block sets from planted evidence."""

from studies.block_ablation.configurations import block_sets, specs


def test_block_sets_are_singles_levels_and_growing_sets_each_once():
    evidence = {"down_blocks.1": dict(freq_bins=8, same_frequency_ratio=2.0),
                "down_blocks.2": dict(freq_bins=4, same_frequency_ratio=1.1),
                "up_blocks.1": dict(freq_bins=4, same_frequency_ratio=1.5),
                "up_blocks.2": dict(freq_bins=8, same_frequency_ratio=0.9)}
    sets = block_sets(evidence)
    assert sets[:4] == [("down_blocks.1",), ("down_blocks.2",), ("up_blocks.1",), ("up_blocks.2",)]
    assert sets[4:6] == [("down_blocks.1", "up_blocks.2"), ("down_blocks.2", "up_blocks.1")]  # levels, F = 8 then 4
    # growing in evidence order: down_blocks.1 (2.0), up_blocks.1 (1.5), down_blocks.2 (1.1), up_blocks.2 (0.9)
    assert sets[6:] == [("down_blocks.1", "up_blocks.1"), ("down_blocks.1", "down_blocks.2", "up_blocks.1"),
                        ("down_blocks.1", "down_blocks.2", "up_blocks.1", "up_blocks.2")]
    assert len(set(sets)) == len(sets)
    written = specs(sets)
    assert written[0] == "litefocus@down_blocks.1" and written[len(sets)] == "same_frequency_only@down_blocks.1"
    assert len(written) == 2 * len(sets)


def test_the_study_names_sweep_lengths_the_evidence_lacks_before_embedding(tmp_path):
    import pytest
    import xarray as xr

    from studies.block_ablation import study

    evidence = tmp_path / "evidence.nc"
    xr.Dataset(coords=dict(caption=["0"], seconds=[10.24])).to_netcdf(evidence, engine="h5netcdf")
    (tmp_path / "out").mkdir()
    xr.Dataset(coords=dict(seconds=[10.24, 20.48])).to_netcdf(tmp_path / "out" / "clips.nc", engine="h5netcdf")
    with pytest.raises(SystemExit, match=r"has jobs at 20.48 s, which the evidence \(at 10.24 s\) does not hold"):
        study.main(["--evidence", str(evidence), "--out", str(tmp_path / "out")])
