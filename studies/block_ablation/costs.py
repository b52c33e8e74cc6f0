"""The block-ablation study's measured costs and cost models: what sparsifying a set of blocks costs against dense
on the same captions and noise, with bootstrap intervals over captions; whether a block's attention evidence ranks
those costs (Spearman's rho); the least-squares :class:`analysis.block_choice.CostModel` and its held-out check.

A cost is signed so that positive is worse: KAD and FAD increase, KL increase, CLAP score drop (points of
100 x cosine). The library's half (the evidence table, the cost model's prediction, the rules) is
:mod:`analysis.block_choice`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from analysis import quality
from analysis.ablations import split_spec
from analysis.block_choice import COST_METRICS, COST_MODEL, CostModel, block_evidence, loss
from litefocus.files import write_atomic

MEASURED = "measured_single_blocks"  # held_out_check's predictor without evidence: the ablation's own costs


# ---------------------------------------------------------------- measured costs
def blocks_of(configuration: str) -> tuple[str, ...]:
    """The blocks of a sweep spec ``kind@A+B`` (empty for none; ``analysis.ablations.split_spec``)."""
    return split_spec(configuration).blocks


def kind_of(configuration: str) -> str:
    """The configuration a sweep spec starts from: ``litefocus`` for ``litefocus@up_blocks.1:0.2``."""
    return split_spec(configuration).name


def plain(configuration: str) -> bool:
    """Whether a sweep spec keeps its configuration's own ratio (no ``:RATIO``, no ``/SECONDS``)."""
    spec = split_spec(configuration)
    return not (spec.ratio or spec.fixed_from)


def complete_captions(clips: xr.Dataset, configurations=None) -> list[str]:
    """The captions with a clip for every configuration (default: all) at every length."""
    sub = clips.clap if configurations is None else clips.clap.sel(configuration=list(configurations))
    ok = sub.notnull().all(("configuration", "seconds"))
    return [str(c) for c in clips.caption.values[ok.values]]


def cost_draws(clips: xr.Dataset, configurations: list[str], seconds: float, metric: str, counts: np.ndarray,
               captions: list[str], baseline: str = "dense") -> np.ndarray:
    """``(configurations, R)``: the cost of each configuration against ``baseline`` for each row of ``counts``
    ``(R, captions)`` (how often each caption is drawn; a row of ones is the plain value). Positive is worse."""
    if metric not in COST_METRICS:
        raise ValueError(f"metric must be one of {COST_METRICS}; got {metric!r}")
    at = clips.sel(seconds=seconds, caption=captions)
    counts = np.atleast_2d(counts).astype(np.float64)
    if metric == "KAD":
        reference = at.reference_embedding.values
        reference = reference[~np.isnan(reference).any(1)]
        sigma = quality.median_bandwidth(reference)
        kad = lambda c: quality.kernel_distance_draws(at.embedding.sel(configuration=c).values, reference,  # noqa
                                                      counts, sigma)
        base = kad(baseline)
        return np.stack([kad(c) - base for c in configurations])
    values = at.clap if metric == "CLAP" else at.kl
    diff = values.sel(configuration=configurations) - values.sel(configuration=baseline)
    diff = -diff if metric == "CLAP" else diff
    return diff.values @ counts.T / counts.sum(1)


def caption_draws(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``(resamples, n)`` bootstrap counts of ``n`` captions."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])


def cost_table(clips: xr.Dataset, metric: str, captions: list[str] | None = None, baseline: str = "dense",
               resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every configuration's cost against ``baseline`` per length, with a 95 % bootstrap interval over captions
    (resampled together for both sides): configuration, kind, blocks, seconds, cost, low, high, captions."""
    captions = captions or complete_captions(clips)
    names = [str(c) for c in clips.configuration.values if c != baseline]
    draws = caption_draws(len(captions), resamples, seed)
    rows = []
    for s in clips.seconds.values:
        point = cost_draws(clips, names, s, metric, np.ones((1, len(captions))), captions, baseline)[:, 0]
        boot = cost_draws(clips, names, s, metric, draws, captions, baseline)
        low, high = np.nanpercentile(boot, [2.5, 97.5], axis=1)
        rows += [dict(configuration=n, kind=kind_of(n), blocks=blocks_of(n), seconds=float(s), cost=point[i],
                      low=low[i], high=high[i], captions=len(captions)) for i, n in enumerate(names)]
    return pd.DataFrame(rows).assign(metric=metric)


# ---------------------------------------------------------------- does the evidence predict the cost?
def single_blocks(clips: xr.Dataset, kind: str = "litefocus") -> dict[str, str]:
    """``{block: configuration}`` for the configurations of ``kind`` on one block."""
    return {blocks_of(c)[0]: c for c in map(str, clips.configuration.values)
            if kind_of(c) == kind and len(blocks_of(c)) == 1 and plain(c)}


def evidence_by_caption(evidence: xr.Dataset, late_fraction: float = 0.5) -> xr.Dataset:
    """:func:`block_evidence` of a sweep's evidence (``python -m studies.block_ablation.evidence``): dims (block,
    caption, seconds)."""
    out = block_evidence(evidence, late_fraction)
    return out.assign_coords(caption=[str(c) for c in out.caption.values])


def rank_correlation(clips: xr.Dataset, evidence: xr.Dataset, metric: str, variable: str,
                     captions: list[str] | None = None, seconds=None, kind: str = "litefocus",
                     resamples: int = 1000, seed: int = 0, late_fraction: float = 0.5) -> quality.Estimate:
    """Spearman's rank correlation, across single blocks (and lengths), between one evidence quantity (mean over
    the captions) and the measured cost (on the same captions), with a 95 % interval from resampling captions
    (evidence and cost drawn together)."""
    captions = captions or complete_captions(clips)
    seconds = list(clips.seconds.values) if seconds is None else list(np.atleast_1d(seconds))
    singles = single_blocks(clips, kind)
    blocks = list(singles)
    ev = evidence_by_caption(evidence, late_fraction)[variable].sel(block=blocks, caption=captions)
    counts = np.vstack([np.ones(len(captions)), caption_draws(len(captions), resamples, seed)])
    xs, ys = [], []
    for s in seconds:
        x = ev.sel(seconds=s).transpose("block", "caption").values
        xs.append(x @ counts.T / counts.sum(1))
        ys.append(cost_draws(clips, [singles[b] for b in blocks], s, metric, counts, captions))
    x, y = np.concatenate(xs), np.concatenate(ys)  # (points, 1 + R)
    rho = [stats.spearmanr(x[:, r], y[:, r]).statistic for r in range(x.shape[1])]
    low, high = np.nanpercentile(rho[1:], [2.5, 97.5])
    return quality.Estimate(float(rho[0]), float(low), float(high), len(captions))


def save_cost_models(models: dict[str, CostModel], path: str | Path = COST_MODEL) -> Path:
    """``{metric: model}`` as one JSON file."""
    text = json.dumps({metric: asdict(m) for metric, m in models.items()}, indent=2) + "\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))



def fit_cost_model(clips: xr.Dataset, evidence: xr.Dataset, metric: str, variable: str, captions: list[str],
                   seconds, kind: str = "litefocus", late_fraction: float = 0.5) -> CostModel:
    """Least squares through the origin of the single-block costs on ``captions`` at ``seconds`` against the
    blocks' loss by ``variable`` (mean evidence over the captions)."""
    seconds = list(np.atleast_1d(seconds))
    singles = single_blocks(clips, kind)
    ev = evidence_by_caption(evidence, late_fraction).sel(block=list(singles), caption=captions)
    x = np.concatenate([loss(ev.sel(seconds=s).mean("caption"), variable).values for s in seconds])
    y = np.concatenate([cost_draws(clips, list(singles.values()), s, metric, np.ones((1, len(captions))),
                                   captions)[:, 0] for s in seconds])
    slope = float(x @ y / (x @ x))
    return CostModel(metric, variable, slope, late_fraction, fitted_on=dict(
        captions=list(captions), seconds=[float(s) for s in seconds], configurations=list(singles.values())))


def predicted_set_costs(model: CostModel, clips: xr.Dataset, evidence: xr.Dataset, captions: list[str],
                        seconds: float, kind: str = "litefocus") -> pd.Series:
    """The model's cost of every configuration of ``kind`` in the sweep, from the evidence on ``captions`` at
    ``seconds`` (indexed by configuration)."""
    ev = evidence_by_caption(evidence, model.late_fraction).sel(caption=captions, seconds=seconds).mean("caption")
    per_block = model.block_costs(ev.to_dataframe().reset_index())
    names = [str(c) for c in clips.configuration.values if kind_of(str(c)) == kind and plain(str(c))]
    return pd.Series([per_block[list(blocks_of(n))].sum() for n in names], index=names)


def held_out_check(clips: xr.Dataset, evidence: xr.Dataset, metric: str, variable: str, fit: tuple, test: tuple,
                   kind: str = "litefocus", resamples: int = 1000, seed: int = 0, late_fraction: float = 0.5) -> dict:
    """Fit on ``fit = (captions, seconds)``, predict every set of ``kind`` on ``test = (captions, seconds)``: the
    rank correlation of predicted and measured cost over single blocks and over all sets, and the mean absolute
    error over all sets, each with a 95 % interval from resampling the test captions. ``variable`` :data:`MEASURED`
    predicts from the single blocks' costs measured on the fit captions and length instead (no evidence: how well
    the ablation itself carries over, the ceiling of any predictor of this form)."""
    captions, s = list(test[0]), float(test[1])
    if variable == MEASURED:
        singles = single_blocks(clips, kind)
        ones = np.ones((1, len(fit[0])))
        per_block = pd.Series(np.mean([cost_draws(clips, list(singles.values()), f, metric, ones, list(fit[0]))[:, 0]
                                       for f in np.atleast_1d(fit[1])], 0), index=list(singles))
        names = [str(c) for c in clips.configuration.values if kind_of(str(c)) == kind and plain(str(c))]
        predicted = pd.Series([per_block[list(blocks_of(n))].sum() for n in names], index=names)
        model = CostModel(metric, MEASURED, 1.0, late_fraction, fitted_on=dict(seconds=list(np.atleast_1d(fit[1]))))
    else:
        model = fit_cost_model(clips, evidence, metric, variable, list(fit[0]), fit[1], kind, late_fraction)
        predicted = predicted_set_costs(model, clips, evidence, captions, s, kind)
    counts = np.vstack([np.ones(len(captions)), caption_draws(len(captions), resamples, seed)])
    measured = cost_draws(clips, list(predicted.index), s, metric, counts, captions)
    single = np.array([len(blocks_of(n)) == 1 for n in predicted.index])
    p = predicted.values

    def summary(values):
        low, high = np.nanpercentile(values[1:], [2.5, 97.5])
        return dict(value=float(values[0]), low=float(low), high=float(high))

    return dict(
        model=asdict(model) | dict(fitted_on=dict(captions=len(fit[0]), seconds=model.fitted_on["seconds"])),
        test=dict(captions=len(captions), seconds=s, sets=len(p)),
        rho_single=summary(np.array([stats.spearmanr(p[single], m[single]).statistic for m in measured.T])),
        rho_sets=summary(np.array([stats.spearmanr(p, m).statistic for m in measured.T])),
        mae_sets=summary(np.abs(measured - p[:, None]).mean(0)),
        predicted=dict(zip(predicted.index, map(float, p))), measured=dict(zip(predicted.index, measured[:, 0])))
