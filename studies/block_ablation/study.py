"""The block-choice study on the block ablation's sweep (``python -m studies.block_ablation.study``,
``make block-ablation``):
what each set of blocks costs and buys, whether the evidence predicts the cost on captions and lengths the fit did
not see, the cost model ``choose_blocks(budget=...)`` uses, and a check of that rule against measured costs.

    python -m studies.block_ablation.study --sweep runs/block_ablation --reference runs/heldout/reference \\
        --evidence data/block_ablation/evidence.nc --out data/block_ablation

Writes to OUT: ``clips.nc`` (every clip's CLAP, KL, embedding and UNet time: all that follows is computed from it,
so ``--sweep`` may be left out once it exists), ``costs.csv`` (per configuration and length: KAD, CLAP and KL cost
against dense with 95 % intervals over captions, measured MiniLDM speed-up, estimated AudioLDM2 speed-ups),
``predictors.csv`` (per metric and evidence quantity: rank correlation with the cost, and held-out prediction),
``cost_model.json`` (per metric, the model of the predictor that ranked the held-out sets best) and
``budget_check.csv``. Captions are split in two halves (the sweep's caption order is a
seeded random one): the first fits, the second tests.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from litefocus.files import write_atomic, write_csv
from litefocus.models import AUDIOLDM2_TRAINING_SECONDS
from minildm.pipeline import TRAINING_SECONDS

from analysis import block_choice as bc

from .costs import (MEASURED, blocks_of, caption_draws, complete_captions, cost_draws, cost_table, fit_cost_model,
                    held_out_check, kind_of, plain, rank_correlation, save_cost_models)

TARGET_SECONDS = (40.96, 81.92)  # full-size AudioLDM2 lengths for the estimated speed-up
KINDS = ("litefocus", "same_frequency_only")  # the cost models are LiteFocus's (r = 0.1)
LATE_FRACTIONS = (0.5, 1.0)  # evidence over the last half of the recorded steps, or over all of them
# a length-adaptive ratio keeps its set at the same multiple of the model's training length
TRAINING_S = dict(minildm=TRAINING_SECONDS, audioldm2=AUDIOLDM2_TRAINING_SECONDS)
MINILDM_SHARE = "minildm_attention_share.csv"


def measured_speedup(clips: xr.Dataset, captions: list[str], baseline: str = "dense") -> pd.DataFrame:
    """Per configuration and length: the median over captions of dense's UNet seconds per step over the
    configuration's (each caption's two jobs ran one after the other), with the min and max over captions."""
    unet = clips.unet_seconds_per_step.sel(caption=captions)
    ratio = unet.sel(configuration=baseline) / unet
    return pd.DataFrame(dict(
        unet_speedup=ratio.median("caption").to_series(), unet_speedup_min=ratio.min("caption").to_series(),
        unet_speedup_max=ratio.max("caption").to_series())).reset_index()


def minildm_shares(seconds: list[float], steps: int = 3) -> pd.DataFrame:
    """MiniLDM 2's attention core share per level at each length (``analysis.timing`` over a short generation)."""
    import torch

    from minildm import load_minildm

    from analysis.timing import time_attention

    pipe = load_minildm()
    rows = []
    for s in seconds:
        pipe("a dog barking", audio_length_in_s=s, num_inference_steps=1)  # warm-up
        with time_attention(pipe) as timing:
            pipe("a dog barking", audio_length_in_s=s, num_inference_steps=steps,
                 generator=torch.Generator().manual_seed(0))
        levels = timing.level_shares().to_dict("records")
        rows += [dict(seconds=s, **r, threads=torch.get_num_threads()) for r in levels]
    return pd.DataFrame(rows)


def audioldm2_ratio(configuration: str, seconds: float) -> float:
    """The LiteFocus ratio a configuration of the ablation would have on AudioLDM2 at ``seconds``: 0 for
    same-frequency only; r; or, for ``/S`` (set kept at its size at S s of MiniLDM audio), the ratio with the set
    kept at the same multiple of AudioLDM2's training length."""
    from analysis.ablations import parse_configuration

    config = parse_configuration(configuration)
    ratio = config.ratio if config.cross_frequency else 0.0
    if config.keys_fixed_from_s is None:
        return ratio
    multiple = config.keys_fixed_from_s / TRAINING_S["minildm"]
    return replace(config, keys_fixed_from_s=multiple * TRAINING_S["audioldm2"]).ratio_at(seconds)


def audioldm2_blocks(evidence_table: pd.DataFrame) -> pd.DataFrame:
    """The evidence table's blocks with the ``level_fraction`` they have in full-size AudioLDM2 (its self-attention
    modules per block, counted on a UNet built on the meta device), for its speed estimates: the same blocks and F
    as MiniLDM 2, other module counts (down 8, up 12, mid 4 against 3, 6 and 3)."""
    import torch

    from litefocus.models import audioldm2_unet
    from litefocus.selection import block_of, level_of, self_attention_modules

    with torch.device("meta"):  # the modules without their weights
        unet = audioldm2_unet()
    names = self_attention_modules(unet)
    counts = pd.DataFrame(dict(block=[block_of(n) for n in names], level=[level_of(n, unet) for n in names]))
    counts = counts.groupby(["block", "level"]).size().rename("modules").reset_index()
    counts["level_fraction"] = counts.modules / counts.groupby("level").modules.transform("sum")
    table = evidence_table.drop(columns=["modules", "level_fraction"]).merge(counts, on="block", validate="1:1")
    if len(table) != len(evidence_table):
        raise ValueError(f"blocks {sorted(evidence_table.block)} are not AudioLDM2's {sorted(counts.block)}")
    return table


def cost_frame(clips: xr.Dataset, evidence_table: pd.DataFrame, captions: list[str], resamples: int) -> pd.DataFrame:
    """costs.csv: one row per configuration and length."""
    frames = [cost_table(clips, m, captions, resamples=resamples).set_index(["configuration", "seconds"])
              for m in bc.COST_METRICS]
    table = frames[0][["kind", "blocks", "captions"]].copy()
    for metric, frame in zip(bc.COST_METRICS, frames):
        table[[f"{metric}_cost", f"{metric}_low", f"{metric}_high"]] = frame[["cost", "low", "high"]].values
    table = table.reset_index().merge(measured_speedup(clips, captions), on=["configuration", "seconds"])
    blocks_in_audioldm2 = audioldm2_blocks(evidence_table)
    for target in TARGET_SECONDS:
        shares = bc.attention_shares(target)
        table[f"audioldm2_speedup_{target:g}s"] = [
            bc.estimated_speedup(blocks_in_audioldm2, blocks, shares, audioldm2_ratio(name, target))
            for name, blocks in zip(table.configuration, table.blocks)]
    table["blocks"] = table.blocks.map("+".join)
    return table


def predictor_frame(clips, evidence, fit: list[str], test: list[str], resamples: int) -> pd.DataFrame:
    """predictors.csv: per kind of focus (LiteFocus, same-frequency only), metric, evidence quantity and span of
    steps (the last half, or all recorded steps), the rank correlation across single blocks (both lengths, all
    captions) and the held-out check in both directions (fit on one length's first-half captions, test on the other
    length's second half)."""
    seconds = [float(s) for s in clips.seconds.values]
    everyone = fit + test
    rows = []
    for kind, metric, variable, late in itertools.product(KINDS, bc.COST_METRICS, (*bc.PREDICTORS, MEASURED),
                                                          LATE_FRACTIONS):
        if variable in ("dropped_keys", MEASURED) and late != LATE_FRACTIONS[0]:
            continue  # no attention in it: the same at any span
        row = dict(kind=kind, metric=metric, variable=variable, late_fraction=late)
        if variable != MEASURED:
            rho = rank_correlation(clips, evidence, metric, variable, everyone, kind=kind, resamples=resamples,
                                      late_fraction=late)
            row |= dict(rho=rho.value, rho_low=rho.low, rho_high=rho.high)
        for a, b in ((seconds[0], seconds[1]), (seconds[1], seconds[0])):
            check = held_out_check(clips, evidence, metric, variable, (fit, a), (test, b), kind=kind,
                                      resamples=resamples, late_fraction=late)
            tag = f"fit{a:g}_test{b:g}"
            for key in ("rho_single", "rho_sets", "mae_sets"):
                row |= {f"{tag}_{key}": check[key]["value"], f"{tag}_{key}_low": check[key]["low"],
                        f"{tag}_{key}_high": check[key]["high"]}
        both = [v for k, v in row.items() if k.startswith("fit") and k.endswith("_rho_sets")]
        row["held_out_rho_sets"] = float(np.mean(both))
        rows.append(row)
    return pd.DataFrame(rows)


def budget_check(clips, evidence, models: dict[str, bc.CostModel], test: list[str], shares: pd.DataFrame,
                 budgets: list[dict[str, float]], resamples: int) -> pd.DataFrame:
    """budget_check.csv: at each length and budget, the set the budget rule picks among the measured LiteFocus sets
    (evidence of the test captions, MiniLDM's attention share at that length), and per budgeted metric its
    predicted and measured cost on the test captions (95 % interval) and whether the measured cost is within."""
    names = [str(c) for c in clips.configuration.values
             if kind_of(str(c)) == "litefocus" and blocks_of(str(c)) and plain(str(c))]
    by_blocks = {frozenset(blocks_of(n)): n for n in names}
    counts = np.vstack([np.ones(len(test)), caption_draws(len(test), resamples)])
    rows = []
    for s in clips.seconds.values:
        ds = evidence.sel(seconds=s, caption=test).mean("caption")
        for budget in budgets:
            choice = bc.choose_blocks(ds, budget=budget, cost_model=models, seconds=float(s), ratio=0.1,
                                      shares=shares[np.isclose(shares.seconds, s)],
                                      candidates=[(), *map(tuple, by_blocks)])
            name = by_blocks.get(frozenset(choice), "dense")
            row = dict(seconds=float(s), budget=" ".join(f"{m}<={v:g}" for m, v in budget.items()), chosen=name,
                       estimated_minildm_speedup=choice.prediction["speedup"])
            within = []
            for metric, value in budget.items():
                measured = (cost_draws(clips, [name], s, metric, counts, test)[0] if name != "dense"
                            else np.zeros(len(counts)))
                low, high = np.nanpercentile(measured[1:], [2.5, 97.5])
                within.append(measured[0] <= value)
                row |= {f"{metric}_predicted": choice.prediction["predicted"][metric],
                        f"{metric}_measured": measured[0],
                        f"{metric}_low": low, f"{metric}_high": high}
            rows.append(row | dict(within_budget=bool(all(within))))
    return pd.DataFrame(rows)


def default_budgets(costs: pd.DataFrame) -> list[dict[str, float]]:
    """Per metric alone: 0 and the quartiles of the positive costs of the LiteFocus sets (both lengths); then all
    metrics at 0 and at those medians."""
    sets = costs[costs.kind.eq("litefocus") & costs.configuration.map(plain)]
    quartiles = {m: np.round(np.quantile(sets[f"{m}_cost"].clip(lower=0), [0.25, 0.5, 0.75]), 4)
                 for m in bc.COST_METRICS}
    budgets = [{m: float(v)} for m in bc.COST_METRICS for v in sorted({0.0, *quartiles[m]})]
    return budgets + [{m: 0.0 for m in bc.COST_METRICS}, {m: float(quartiles[m][1]) for m in bc.COST_METRICS}]


def check_evidence_lengths(sweep: list[float], evidence: list[float], where) -> None:
    """An error unless the evidence holds every length the sweep (or its clip table) has."""
    missing = [s for s in sweep if not any(abs(s - e) < 1e-9 for e in evidence)]
    if missing:
        raise SystemExit(f"{where} has jobs at {', '.join(f'{s:g}' for s in missing)} s, which the evidence (at "
                         f"{', '.join(f'{e:g}' for e in evidence)} s) does not hold: measure them with "
                         "python -m studies.block_ablation.evidence --seconds ...")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, nargs="+", default=None,
                        help="the ablation's sweep folders (to (re)build clips.nc; a configuration found in two is "
                             "taken from the first)")
    parser.add_argument("--reference", type=Path, default=None, help="its reference folder (with --sweep)")
    parser.add_argument("--evidence", type=Path, required=True, help="python -m studies.block_ablation.evidence's file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.sweep and not args.reference:
        parser.error("--sweep needs --reference (the held-out reference folder)")
    if not args.evidence.is_file():
        parser.error(f"--evidence {args.evidence}: no such file (python -m studies.block_ablation.evidence writes it)")
    clips_path = args.out / "clips.nc"
    with xr.open_dataset(args.evidence, engine="h5netcdf") as held:
        evidence_lengths = sorted(float(s) for s in held.seconds.values)
    if args.sweep:
        from analysis.sweep import read_rows

        for folder in args.sweep:  # before any clip is embedded
            check_evidence_lengths(sorted(float(s) for s in read_rows(folder).seconds.unique()), evidence_lengths,
                                   folder)
        from analysis.evaluator import Evaluator
        from analysis.sweep_evaluation import clip_table

        evaluator = Evaluator.offline()  # the evaluator of evaluate-sweep
        tables = [clip_table(folder, args.reference, evaluator) for folder in args.sweep]
        clips = tables[0]
        for more in tables[1:]:
            new = [c for c in more.configuration.values if c not in set(clips.configuration.values)]
            clips = xr.merge([clips, more.sel(configuration=new).drop_vars("reference_embedding")], join="outer",
                             compat="no_conflicts", combine_attrs="override")
        write_atomic(clips_path, lambda tmp: clips.to_netcdf(tmp, engine="h5netcdf"))
    elif not clips_path.is_file():
        parser.error(f"{clips_path} does not exist: give --sweep and --reference once")
    clips = xr.load_dataset(clips_path, engine="h5netcdf")
    check_evidence_lengths(sorted(float(s) for s in clips.seconds.values), evidence_lengths, clips_path)
    evidence = xr.load_dataset(args.evidence, engine="h5netcdf")
    evidence = evidence.assign_coords(caption=[str(c) for c in evidence.caption.values])
    captions = [c for c in complete_captions(clips) if c in set(evidence.caption.values)]
    fit, test = captions[: len(captions) // 2], captions[len(captions) // 2:]
    print(f"{len(captions)} captions with every clip and their evidence: fit on {len(fit)}, test on {len(test)}")

    evidence_table = bc.block_table(evidence.sel(caption=captions))
    costs = cost_frame(clips, evidence_table, captions, args.resamples)
    write_csv(args.out / "costs.csv", costs)
    predictors = predictor_frame(clips, evidence, fit, test, args.resamples)
    write_csv(args.out / "predictors.csv", predictors)
    columns = ["kind", "metric", "variable", "late_fraction", "rho", "rho_low", "rho_high", "held_out_rho_sets"]
    print(predictors[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}"))

    models = {}
    for metric in bc.COST_METRICS:  # per metric, the predictor that ranked the held-out sets best
        mine = predictors[(predictors.kind == "litefocus") & (predictors.metric == metric)
                          & (predictors.variable != MEASURED)]
        best = mine.sort_values("held_out_rho_sets", ascending=False).iloc[0]
        models[metric] = fit_cost_model(clips, evidence, metric, best.variable, fit, list(clips.seconds.values),
                                           late_fraction=float(best.late_fraction))
        models[metric].held_out = {k: float(v) for k, v in best.items()
                                   if k not in ("kind", "metric", "variable", "late_fraction")}
        print(models[metric].describe())
    save_cost_models(models, args.out / "cost_model.json")

    shares_path = args.out / MINILDM_SHARE
    if not shares_path.is_file():
        write_csv(shares_path, minildm_shares([float(s) for s in clips.seconds.values]))
    shares = pd.read_csv(shares_path)
    check = budget_check(clips, evidence, models, test, shares, default_budgets(costs), args.resamples)
    write_csv(args.out / "budget_check.csv", check)
    print(check.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
