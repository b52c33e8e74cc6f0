"""Block choice under a quality budget, the cost of a set of blocks and whether evidence predicts it: planted cases."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import analysis
from analysis import block_choice as bc
from analysis import quality
from litefocus.shipped import shipped_path
from studies.block_ablation import costs as ablation

BLOCKS = {"A": (8, 2), "B": (4, 1), "C": (2, 1)}  # block: (F, modules)
SHARES = pd.DataFrame(dict(freq_bins=[8, 4, 2], core_share=[0.5, 0.1, 0.02]))


def planted_evidence(sparse_error: dict, captions=None, seconds=None, seed=0, blocks=BLOCKS) -> xr.Dataset:
    """measure_sparsity's layout, every module of a block holding ``sparse_error[block]``; with captions and
    seconds, 2.5 times that at the second length, plus small noise. The other quantities are fixed."""
    modules = [(f"{b}.{i}.attn1", b, f) for b, (f, n) in blocks.items() for i in range(n)]
    extra = {} if captions is None else dict(caption=captions, seconds=seconds)
    shape = (*(len(v) for v in extra.values()), len(modules), 3, 2)
    rng = np.random.default_rng(seed)
    error = np.broadcast_to(np.array([sparse_error[b] for _, b, _ in modules])[:, None, None], shape[-3:])
    if extra:
        error = error * np.array([1.0, 2.5])[None, :, None, None, None] + 0.001 * rng.standard_normal(shape)
    dims = (*extra, "module", "step", "head")
    data = dict(sparse_error=error, same_frequency_ratio=2 - error, focus_mass=np.full(shape, 0.5),
                entropy=np.full(shape, 3.0), periodicity_strength=np.full(shape, 0.9),
                periodicity_period=np.full(shape, 8.0))
    return xr.Dataset({k: (dims, v) for k, v in data.items()}, coords=dict(
        module=[m for m, _, _ in modules], block=("module", [b for _, b, _ in modules]),
        freq_bins=("module", [f for _, _, f in modules]), step=[0, 1, 2], head=[0, 1], **extra))


def test_budget_rule_picks_the_fastest_set_within_the_budget():
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    model = bc.CostModel("KAD", "sparse_error", slope=1.0)
    choice = analysis.choose_blocks(ds, budget=0.5, cost_model=model, shares=SHARES, ratio=0.1)
    # {A, B} would be faster but costs 0.7; {A, C} costs 0.45 and saves 0.5 (1 - 1/8 - 0.1) + 0.02 (1 - 1/2 - 0.1)
    assert sorted(choice) == ["A", "C"]
    assert choice.prediction["predicted"] == dict(KAD=pytest.approx(0.45))
    assert choice.prediction["speedup"] == pytest.approx(1 / (1 - 0.5 * 0.775 - 0.02 * 0.4))
    assert "at most 0.5" in choice.rule and "sparse_error" in choice.rule
    assert len(choice.candidates) == 8 and choice.table.set_index("block").predicted_KAD["B"] == pytest.approx(0.3)
    assert list(analysis.choose_blocks(ds, budget=-1.0, cost_model=model, shares=SHARES)) == []  # nothing fits
    assert sorted(analysis.choose_blocks(ds, budget=1.0, cost_model=model, shares=SHARES)) == ["A", "B", "C"]
    only = analysis.choose_blocks(ds, budget=0.5, cost_model=model, shares=SHARES, candidates=[("B",), ("C",)])
    assert list(only) == ["B"]
    # the threshold rule is still the default: same_frequency_ratio = 2 - error >= 1.8 holds for C only
    assert list(analysis.choose_blocks(ds, min_ratio=1.8)) == ["C"]


def test_budget_rule_names_bad_input():
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    model = bc.CostModel("KAD", "sparse_error", 1.0)
    with pytest.raises(ValueError, match="budget must be a finite number"):
        analysis.choose_blocks(ds, budget=float("nan"), cost_model=model, shares=SHARES)
    with pytest.raises(ValueError, match=r"at \[10.24, 20.48, 40.96, 81.92\] s only"):
        analysis.choose_blocks(ds, budget=0.5, cost_model=model, seconds=30.0)
    with pytest.raises(ValueError, match="without evidence"):
        analysis.choose_blocks(ds, budget=0.5, cost_model=model, shares=SHARES, candidates=[("D",)])
    with pytest.raises(ValueError, match="predicts from 'nope'"):
        analysis.choose_blocks(ds, budget=0.5, cost_model=bc.CostModel("KAD", "nope", 1.0), shares=SHARES)
    with pytest.raises(FileNotFoundError, match="no cost model"):
        analysis.choose_blocks(ds, budget=0.5, cost_model="/nonexistent.json", shares=SHARES)
    with pytest.raises(ValueError, match="budget names 'CLAP', for which there is no cost model"):
        analysis.choose_blocks(ds, budget={"CLAP": 1.0}, cost_model=model, shares=SHARES)


@pytest.mark.parametrize("kwargs, message", [  # issue 22, cases 7, 11 and 21: each was silently wrong or a traceback
    (dict(cost_model=bc.CostModel("KAD", "sparse_error", float("nan"))), "predicts no finite cost for A, B, C"),
    (dict(shares=SHARES.assign(core_share=[2.0, 0.1, 0.02])), r"core_share must lie in \[0, 1\)"),
    (dict(shares=SHARES[["freq_bins"]]), "columns freq_bins and core_share"),
    (dict(candidates="down_blocks.1"), "a list of sets of block names"),
    (dict(candidates=["A"]), "a list of sets of block names"),
    (dict(candidates=[]), "candidates is empty"),
    (dict(seconds="81.92"), "seconds must be a positive number"),
    (dict(seconds=-1.0), "seconds must be a positive number"),
    (dict(ratio=1.5), r"ratio must be a number in \(0, 1\]"),
    (dict(cost_model={"KAD": {"slope": 1.0}}), r"cost_model\['KAD'\] must be a CostModel"),
    (dict(cost_model=3), "cost_model must be a CostModel"),
])
def test_budget_rule_refuses_what_would_be_silently_wrong(kwargs, message):
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    with pytest.raises(ValueError, match=message):
        analysis.choose_blocks(ds, budget=0.5, **(dict(cost_model=bc.CostModel("KAD", "sparse_error", 1.0),
                                                      shares=SHARES) | kwargs))


def test_nan_evidence_and_a_nan_error_bound_are_refused():
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    ds["sparse_error"] = ds.sparse_error.where(ds.block != "B")  # B's evidence NaN
    with pytest.raises(ValueError, match="predicts no finite cost for B"):
        analysis.choose_blocks(ds, budget=0.5, cost_model=bc.CostModel("KAD", "sparse_error", 1.0), shares=SHARES)
    with pytest.raises(ValueError, match="max_error must be None or a finite number"):
        analysis.choose_blocks(planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05}), min_ratio=0, max_error=float("nan"))


# speed.py's bound_flop comes from per-module median seconds over rounds, attention_share.csv's core_share (what the
# estimate reads) from the median of each round's level shares: the two medians agree to a few 1e-4 over 2-3 rounds
SHARE_ESTIMATORS = 1e-3


def test_estimated_speedup_is_the_benchmarks_flop_bound():
    """LiteFocus on the whole F = 8 level of full-size AudioLDM2 at 81.92 s: the bound benchmarks/speed.py printed."""
    measured = pd.read_csv(shipped_path("benchmarks", "speed.csv"))
    row = measured[(measured.seconds == 81.92) & (measured.configuration == "litefocus")].iloc[0]
    table = pd.DataFrame(dict(block=["down_blocks.1", "up_blocks.2"], freq_bins=[8, 8], level_fraction=[0.4, 0.6]))
    estimate = bc.estimated_speedup(table, ["down_blocks.1", "up_blocks.2"], bc.attention_shares(81.92), 0.1)
    assert estimate == pytest.approx(row.bound_flop, rel=SHARE_ESTIMATORS)
    assert bc.estimated_speedup(table, [], bc.attention_shares(81.92)) == 1.0


# ---------------------------------------------------------------- measured costs and their prediction
CAPTIONS = [str(i) for i in range(1, 13)]
TRUE_COST = {"A": 3.0, "B": 1.0, "C": 2.0}


def planted_clips(seed=0) -> xr.Dataset:
    """A sweep's clip table: dense and LiteFocus on each block and on A+B; the CLAP drop and KL rise of a set are the
    sum of its blocks' costs (plus noise), 2.5 times as large at the second length; embeddings drawn at random."""
    names = ["dense", "litefocus@A", "litefocus@B", "litefocus@C", "litefocus@A+B"]
    cost = np.array([0.0, 3.0, 1.0, 2.0, 4.0])[:, None, None] * np.array([1.0, 2.5])[None, :, None]
    rng = np.random.default_rng(seed)
    shape = (len(names), 2, len(CAPTIONS))
    clap = 30 - cost + 0.05 * rng.standard_normal(shape)
    kl = 1 + 0.1 * cost + 0.005 * rng.standard_normal(shape)
    emb = rng.standard_normal((*shape, 4)).astype(np.float32)
    dims = ("configuration", "seconds", "caption")
    return xr.Dataset(dict(clap=(dims, clap), kl=(dims, kl), embedding=((*dims, "dim"), emb),
                           reference_embedding=(("seconds", "reference", "dim"),
                                                rng.standard_normal((2, 20, 4)).astype(np.float32))),
                      coords=dict(configuration=names, seconds=[10.24, 20.48], caption=CAPTIONS))


def test_costs_are_paired_differences_signed_worse_positive():
    clips = planted_clips()
    table = ablation.cost_table(clips, "CLAP", resamples=200).set_index(["configuration", "seconds"])
    for name, expected in [("litefocus@A", 3.0), ("litefocus@B", 1.0), ("litefocus@A+B", 4.0)]:
        row = table.loc[(name, 10.24)]
        assert row.cost == pytest.approx(expected, abs=0.1) and row.low < row.cost < row.high
    assert table.loc[("litefocus@A+B", 20.48)].blocks == ("A", "B")
    kl = ablation.cost_table(clips, "KL", resamples=50).set_index(["configuration", "seconds"])
    assert kl.loc[("litefocus@C", 20.48)].cost == pytest.approx(0.5, abs=0.01)
    # KAD: the same number as the paired difference of analysis.quality
    at = clips.sel(seconds=10.24)
    kad = ablation.cost_draws(clips, ["litefocus@A"], 10.24, "KAD", np.ones((1, 12)), CAPTIONS)[0, 0]
    expected = quality.paired_difference("KAD", at.embedding.sel(configuration="litefocus@A").values,
                                         at.embedding.sel(configuration="dense").values,
                                         at.reference_embedding.values, resamples=2).value
    assert kad == pytest.approx(expected)


def test_evidence_that_tracks_the_cost_correlates_and_predicts_held_out_captions():
    clips = planted_clips()
    evidence = planted_evidence({b: c / 10 for b, c in TRUE_COST.items()}, CAPTIONS, [10.24, 20.48])
    rho = ablation.rank_correlation(clips, evidence, "CLAP", "sparse_error", resamples=200)
    assert rho.value == pytest.approx(1.0) and rho.low > 0.5
    assert ablation.rank_correlation(clips, evidence, "CLAP", "same_frequency_ratio", resamples=50).value \
        == pytest.approx(-1.0)
    model = ablation.fit_cost_model(clips, evidence, "CLAP", "sparse_error", CAPTIONS[:6], 10.24)
    assert model.slope == pytest.approx(10, rel=0.05)
    assert "x LiteFocus's relative output error (from sparse_error over the last 50% of the recorded steps)" \
        in model.describe()
    check = ablation.held_out_check(clips, evidence, "CLAP", "sparse_error", (CAPTIONS[:6], 10.24),
                                    (CAPTIONS[6:], 20.48), resamples=100)
    assert check["rho_single"]["value"] == pytest.approx(1.0) and check["mae_sets"]["value"] < 0.2
    assert check["predicted"]["litefocus@A+B"] == pytest.approx(10.0, abs=0.2)  # additive over blocks, at 20.48 s


def test_budgets_on_several_metrics_must_all_hold(tmp_path):
    """KAD says every block is free; a CLAP model that finds A costly keeps A out."""
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    models = {"KAD": bc.CostModel("KAD", "sparse_error", -1.0),
              "CLAP": bc.CostModel("CLAP", "dropped_keys", 1.0, late_fraction=1.0)}  # A: 2 x 7/8, B: 3/4, C: 1/2
    assert sorted(analysis.choose_blocks(ds, budget=0.0, cost_model=models, shares=SHARES)) == ["A", "B", "C"]
    both = analysis.choose_blocks(ds, budget={"KAD": 0.0, "CLAP": 1.5}, cost_model=models, shares=SHARES)
    assert sorted(both) == ["B", "C"] and both.prediction["predicted"]["CLAP"] == pytest.approx(1.25)
    assert "predicted KAD cost at most 0 and predicted CLAP cost at most 1.5" in both.rule
    assert bc.load_cost_models(ablation.save_cost_models(models, tmp_path / "m.json")) == models


def test_study_speedups_and_length_adaptive_ratios():
    from studies.block_ablation import study as block_study

    clips = planted_clips()
    unet = np.ones((5, 2, 12))
    unet[1] = 0.5  # litefocus@A: twice as fast on every caption
    unet[2, :, :6], unet[2, :, 6:] = 0.8, 0.4  # litefocus@B: 1.25x on half the captions, 2.5x on the other
    clips["unet_seconds_per_step"] = (("configuration", "seconds", "caption"), unet)
    speed = block_study.measured_speedup(clips, CAPTIONS).set_index(["configuration", "seconds"])
    assert speed.unet_speedup[("litefocus@A", 10.24)] == pytest.approx(2.0)
    assert speed.loc[("litefocus@B", 20.48)].tolist() == pytest.approx([(1.25 + 2.5) / 2, 1.25, 2.5])
    # MiniLDM's /2.56 (the set kept at 1x its training length) is AudioLDM2's /10.24
    assert block_study.audioldm2_ratio("litefocus@down_blocks.1/2.56", 81.92) == pytest.approx(0.0125)
    assert block_study.audioldm2_ratio("litefocus@down_blocks.1/5.12", 81.92) == pytest.approx(0.025)
    assert block_study.audioldm2_ratio("same_frequency_only@up_blocks.1", 40.96) == 0.0
    assert block_study.audioldm2_ratio("litefocus@up_blocks.1", 40.96) == 0.1


def test_the_measured_costs_of_single_blocks_predict_their_sets_when_costs_add_up():
    clips = planted_clips()
    check = ablation.held_out_check(clips, None, "CLAP", ablation.MEASURED, (CAPTIONS[:6], 10.24),
                                    (CAPTIONS[6:], 10.24), resamples=50)
    assert check["predicted"]["litefocus@A+B"] == pytest.approx(4.0, abs=0.1)
    assert check["rho_sets"]["value"] == pytest.approx(1.0) and check["mae_sets"]["value"] < 0.1


def test_audioldm2_speed_estimates_use_its_own_module_counts():
    from studies.block_ablation import study as block_study

    names = ["down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1",
             "up_blocks.2"]
    minildm = pd.DataFrame(dict(block=names, freq_bins=[8, 4, 2, 2, 2, 4, 8], modules=[3, 3, 3, 3, 6, 6, 6],
                                level_fraction=[1 / 3, 1 / 3, 0.25, 0.25, 0.5, 2 / 3, 2 / 3]))
    table = block_study.audioldm2_blocks(minildm).set_index("block")
    assert table.modules.to_dict() == {"down_blocks.1": 8, "down_blocks.2": 8, "down_blocks.3": 8, "mid_block": 4,
                                       "up_blocks.0": 12, "up_blocks.1": 12, "up_blocks.2": 12}
    assert table.level_fraction["down_blocks.1"] == pytest.approx(0.4) and table.freq_bins["up_blocks.2"] == 8
    assert table.level_fraction["mid_block"] == pytest.approx(4 / 24)


def test_block_study_end_to_end_on_planted_costs(tmp_path):
    """studies.block_ablation.study on a planted ablation (blocks named as in AudioLDM2): its costs are the planted
    ones, the evidence that tracks them wins the held-out check, and every budget pick keeps its budget."""
    from studies.block_ablation import study as block_study

    blocks = {"down_blocks.1": (8, 3), "up_blocks.2": (8, 6), "mid_block": (2, 3)}
    cost = {"down_blocks.1": 1.0, "up_blocks.2": 4.0, "mid_block": 0.5}  # CLAP drop, and KL x 100
    sets = [("down_blocks.1",), ("up_blocks.2",), ("mid_block",), ("down_blocks.1", "up_blocks.2")]
    names = ["dense"] + [f"{k}@{'+'.join(b)}" for k in ("litefocus", "same_frequency_only") for b in sets]
    captions = [str(i) for i in range(1, 9)]
    rng = np.random.default_rng(0)
    truth = np.array([0.0] + [sum(cost[b] for b in s) * (2 if k == "same_frequency_only" else 1)
                              for k in ("litefocus", "same_frequency_only") for s in sets])
    shape = (len(names), 2, len(captions))
    dims = ("configuration", "seconds", "caption")
    clips = xr.Dataset(dict(
        clap=(dims, 30 - truth[:, None, None] + 0.01 * rng.standard_normal(shape)),
        kl=(dims, 1 + truth[:, None, None] / 100 + 1e-4 * rng.standard_normal(shape)),
        unet_seconds_per_step=(dims, 1 / (1 + 0.1 * truth[:, None, None]) * np.ones(shape)),
        embedding=((*dims, "dim"), rng.standard_normal((*shape, 4)).astype(np.float32)),
        reference_embedding=(("seconds", "reference", "dim"), rng.standard_normal((2, 10, 4)).astype(np.float32))),
        coords=dict(configuration=names, seconds=[10.24, 20.48], caption=captions))
    clips.to_netcdf(tmp_path / "clips.nc", engine="h5netcdf")
    evidence = planted_evidence({b: c / 10 for b, c in cost.items()}, captions, [10.24, 20.48], blocks=blocks)
    evidence.to_netcdf(tmp_path / "evidence.nc", engine="h5netcdf")
    pd.DataFrame(dict(seconds=[10.24, 10.24, 20.48, 20.48], freq_bins=[8, 2, 8, 2],
                      core_share=[0.3, 0.01, 0.5, 0.01])).to_csv(tmp_path / block_study.MINILDM_SHARE, index=False)

    block_study.main(["--evidence", str(tmp_path / "evidence.nc"), "--out", str(tmp_path), "--resamples", "30"])

    costs = pd.read_csv(tmp_path / "costs.csv", keep_default_na=False).set_index(["configuration", "seconds"])
    assert costs.CLAP_cost[("litefocus@down_blocks.1+up_blocks.2", 10.24)] == pytest.approx(5.0, abs=0.05)
    assert costs.KL_cost[("same_frequency_only@up_blocks.2", 20.48)] == pytest.approx(0.08, abs=0.001)
    assert costs.unet_speedup[("litefocus@up_blocks.2", 20.48)] == pytest.approx(1.4)
    paper = costs.loc[("litefocus@down_blocks.1+up_blocks.2", 20.48), "audioldm2_speedup_81.92s"]
    assert paper == pytest.approx(pd.read_csv(shipped_path("benchmarks", "speed.csv")).query(
        "seconds == 81.92 and configuration == 'litefocus'").bound_flop.iloc[0], rel=SHARE_ESTIMATORS)  # level F = 8
    predictors = pd.read_csv(tmp_path / "predictors.csv")
    ceiling = predictors.query("kind == 'litefocus' and metric == 'CLAP' and variable == @ablation.MEASURED")
    assert ceiling.held_out_rho_sets.iloc[0] == pytest.approx(1.0)
    models = bc.load_cost_models(tmp_path / "cost_model.json")
    assert set(models) == set(bc.COST_METRICS) and models["CLAP"].held_out["held_out_rho_sets"] > 0.9
    check = pd.read_csv(tmp_path / "budget_check.csv")
    planted = check[~check.budget.str.contains("KAD")]  # the embeddings, and so KAD, are noise here
    assert planted.within_budget.all() and (planted.chosen != "dense").any()


def test_numpy_numbers_are_accepted_and_strings_named():
    """Issue 22, case 32: budget={"KAD": np.float32(0.1)} and min_ratio="2"."""
    ds = planted_evidence({"A": 0.4, "B": 0.3, "C": 0.05})
    model = bc.CostModel("KAD", "sparse_error", 1.0)
    choice = analysis.choose_blocks(ds, budget={"KAD": np.float32(0.5)}, cost_model=model, shares=SHARES)
    assert sorted(choice) == ["A", "C"]
    assert list(analysis.choose_blocks(ds, min_ratio=np.float64(1.8))) == ["C"]
    with pytest.raises(ValueError, match="min_ratio must be a finite number"):
        analysis.choose_blocks(ds, min_ratio="2")


def test_a_blocks_contrast_is_its_heads_median_not_a_mean_one_head_can_carry():
    """A head in which other rows' queries give a row almost nothing has a contrast in the thousands (issue 28)."""
    ds = planted_evidence({"A": 0.2, "B": 0.4, "C": 0.3})
    contrast = np.full((ds.sizes["module"], 3, 2), 2.0)
    contrast[0, 2, 0] = 1e6  # one head of block A at one late step
    ds["focus_contrast"] = (("module", "step", "head"), contrast)
    table = bc.block_table(ds).set_index("block")
    assert table.loc["A", "focus_contrast"] == 2.0 and (table.focus_contrast == 2.0).all()
    assert table.loc["A", "sparse_error"] == pytest.approx(0.2)  # the evidence stays a mean
