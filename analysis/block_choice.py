"""Which blocks to sparsify: the evidence per block, what sparsifying a set of blocks costs in quality (measured by an
ablation sweep) and buys in speed (estimated from the attention core's share of a UNet step), a cost model from the
one to the other, and :func:`choose_blocks` under either rule.

- The threshold rule (the default): every block whose same-frequency ratio is at least ``min_ratio``.
- The budget rule (``budget=``): of all sets of blocks, the one with the largest estimated speed-up whose predicted
  quality cost is at most the budget. A :class:`CostModel` predicts it: per block, a slope times what one evidence
  quantity says LiteFocus loses there (:data:`LOSSES`: zero where sparsifying would be lossless), and a set costs the
  sum of its blocks.

A cost is the change a configuration makes against dense on the same captions and noise, signed so that positive is
worse: KAD and FAD increase, KL increase, CLAP score drop (points of 100 x cosine).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from litefocus.shipped import require, shipped_path


COST_MODEL = shipped_path("block_ablation", "cost_model.json")
ATTENTION_SHARE = shipped_path("benchmarks", "attention_share.csv")  # full-size AudioLDM2, benchmarks/speed.py
EVIDENCE = ("same_frequency_ratio", "focus_mass", "sparse_error", "entropy")
LOSSES = {  # per evidence quantity: what LiteFocus loses in a block, 0 where its attention would be kept whole
    "same_frequency_ratio": ("mass off the own frequency row, 1 - ratio/F",
                             lambda t: 1 - t["same_frequency_ratio"] / t["freq_bins"]),
    "focus_mass": ("mass outside the LiteFocus key set, 1 - focus_mass", lambda t: 1 - t["focus_mass"]),
    "sparse_error": ("LiteFocus's relative output error", lambda t: t["sparse_error"]),
    "entropy": ("attention entropy (nats)", lambda t: t["entropy"]),
    # the baseline without attention: how much a block drops, its self-attention modules x the key share dropped
    "dropped_keys": ("modules x (1 - 1/F), no attention measured", lambda t: t["dropped_keys"]),
}
PREDICTORS = (*EVIDENCE, "dropped_keys")
FOCUS = ("focus_contrast", "sink_strength", "same_time_ratio")  # focus against preference, where measured
COST_METRICS = ("KAD", "CLAP", "KL")  # costs per draw of captions (FAD: evaluate-sweep's paired comparisons)
DEFAULT_METRIC = "KAD"
REQUIRED = ("same_frequency_ratio", "periodicity_strength", "focus_mass", "sparse_error")


# ---------------------------------------------------------------- evidence per block
def check_evidence(ds) -> None:
    """TypeError/ValueError naming what ``ds`` lacks to be :func:`analysis.measure_sparsity`'s dataset."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"choose_blocks takes the xarray.Dataset of measure_sparsity; got {type(ds).__name__}")
    missing = [name for name in (*REQUIRED, "block", "freq_bins") if name not in ds.variables]
    if missing or not {"module", "step", "head"} <= set(ds.dims):
        raise ValueError(f"choose_blocks needs measure_sparsity's dataset: dims (module, step, head), variables "
                         f"{', '.join(REQUIRED)} and coordinates block and freq_bins on module; "
                         f"missing {missing or 'dims'} (dims {tuple(ds.dims)})")
    if ds.sizes["module"] == 0 or ds.sizes["step"] == 0:
        raise ValueError("choose_blocks got an empty dataset (no module or no step recorded)")


def late_steps(ds: xr.Dataset, late_fraction: float = 0.5) -> xr.Dataset:
    """The last ``late_fraction`` of the recorded steps (all of them when one step was recorded)."""
    if not 0 < late_fraction <= 1:
        raise ValueError(f"late_fraction must lie in (0, 1]; got {late_fraction}")
    steps = ds.step.values
    return ds.sel(step=steps[steps >= np.quantile(steps, 1 - late_fraction)]) if steps.size > 1 else ds


def block_evidence(ds: xr.Dataset, late_fraction: float = 0.5) -> xr.Dataset:
    """Per block, the mean of each evidence quantity over its modules, heads and late steps, the focus contrast's
    median (a ratio: a head in which the other rows' queries give a row almost nothing has a contrast in the
    thousands, and a few such heads would carry the mean); other dims (a sweep's ``caption``, ``seconds``) stay.
    Coordinates ``freq_bins`` and ``modules`` on ``block``."""
    check_evidence(ds)
    late = late_steps(ds, late_fraction)
    names = [v for v in (*EVIDENCE, *FOCUS, "periodicity_strength") if v in late]
    grouped = late[names].groupby("block")
    out = grouped.mean("module").mean(("step", "head"))
    if "focus_contrast" in names:
        out["focus_contrast"] = late.focus_contrast.groupby("block").median(("module", "step", "head"))
    freq = late.freq_bins.groupby("block").first().values.astype(int)
    modules = late.block.to_series().value_counts()[out.block.values].values
    out["dropped_keys"] = xr.DataArray(modules * (1 - 1 / freq), dims="block").broadcast_like(out[names[0]])
    return out.assign_coords(freq_bins=("block", freq), modules=("block", modules))


def block_table(ds: xr.Dataset, late_fraction: float = 0.5) -> pd.DataFrame:
    """One row per block, ranked by same-frequency ratio: modules, freq_bins, the share of its level's modules it
    holds (``level_fraction``: of all the UNet's modules at that level, from ``ds.attrs["level_modules"]`` when
    :func:`analysis.measure.sparsity_dataset` wrote it, else of the recorded ones), the evidence means (also over
    any caption and length dims), the focus statistics where measured (:data:`FOCUS`: contrast (median), sink,
    same-time ratio) and ``period_is_F``."""
    per_block = block_evidence(ds, late_fraction)
    extra = [d for d in per_block.dims if d != "block"]
    means = per_block.mean(extra) if extra else per_block
    table = means.to_dataframe().reset_index()
    if "periodicity_period" in ds:
        late = late_steps(ds, late_fraction)
        period_is_F = (late.periodicity_period == late.freq_bins).groupby("block").mean(...)
        table["period_is_F"] = period_is_F.sel(block=table.block.values).values
    recorded = table.groupby("freq_bins").modules.transform("sum")
    counts = json.loads(ds.attrs["level_modules"]) if "level_modules" in ds.attrs else {}
    level = table.freq_bins.map(lambda f: counts.get(str(int(f)))).astype(float)
    table["level_fraction"] = table.modules / level.fillna(recorded)  # the UNet's modules, else the recorded ones
    columns = ["block", "modules", "freq_bins", "level_fraction", *[v for v in PREDICTORS if v in table],
               *[v for v in FOCUS if v in table], "periodicity_strength",
               *(["period_is_F"] if "period_is_F" in table else [])]
    return table[columns].sort_values("same_frequency_ratio", ascending=False).reset_index(drop=True)


# ---------------------------------------------------------------- speed
def attention_shares(seconds: float, path: str | Path = ATTENTION_SHARE) -> pd.DataFrame:
    """Per frequency-bin count F: the attention core's share of a UNet forward (``core_share``) at ``seconds``, from a
    table in ``data/benchmarks/attention_share.csv``'s layout (default: full-size AudioLDM2 on this CPU)."""
    table = pd.read_csv(require(path, "attention-share table", "python benchmarks/speed.py"))
    at = table[np.isclose(table.seconds, seconds)]
    if at.empty:
        lengths = sorted(map(float, table.seconds.unique()))
        raise ValueError(f"seconds={seconds}: {path} has the attention share at {lengths} s "
                         "only; measure another length with benchmarks/speed.py or pass shares=")
    return at[["freq_bins", "core_share"]].reset_index(drop=True)


def estimated_speedup(table: pd.DataFrame, blocks, shares: pd.DataFrame, ratio: float = 0.1) -> float:
    """Amdahl's estimate of the UNet step speed-up of LiteFocus on ``blocks``: each block's attention core (its
    ``level_fraction`` of its level's ``core_share``) shrinks to its FLOP share ``1/F + ratio``."""
    core = dict(zip(shares.freq_bins.astype(int), shares.core_share))
    rows = table.set_index("block").loc[list(blocks)] if len(blocks) else table.iloc[:0]
    missing = sorted(set(rows.freq_bins.astype(int)) - set(core))
    if missing:
        raise ValueError(f"shares has no core_share for F = {missing} (it has F = {sorted(core)})")
    saved = sum(core[int(r.freq_bins)] * r.level_fraction * (1 - min(1.0, 1 / r.freq_bins + ratio))
                for r in rows.itertuples())
    return 1 / (1 - saved)


@dataclass
class CostModel:
    """A block's predicted cost is ``slope`` times its loss by ``variable`` (:data:`LOSSES`); a set's is the sum over
    its blocks, so that no block, and a lossless one, costs nothing. ``fitted_on`` says on what (captions, lengths,
    configurations); ``held_out`` how it did where it was not fit."""

    metric: str
    variable: str
    slope: float
    late_fraction: float = 0.5  # the evidence is averaged over this last fraction of the recorded steps
    fitted_on: dict = field(default_factory=dict)
    held_out: dict = field(default_factory=dict)

    def block_costs(self, table) -> pd.Series:
        """The predicted cost of each block of a :func:`block_table` (indexed by block)."""
        if self.variable not in LOSSES or self.variable not in table:
            raise ValueError(f"the cost model predicts from {self.variable!r}, which the evidence table lacks "
                             f"(a cost model uses one of {sorted(LOSSES)})")
        return pd.Series(self.slope * np.asarray(loss(table, self.variable)), index=np.asarray(table["block"]))

    def describe(self) -> str:
        held_out = self.held_out.get("held_out_rho_sets")
        span = "all" if self.late_fraction == 1 else f"the last {self.late_fraction:.0%} of the"
        return (f"predicted {self.metric} cost per block = {self.slope:.4g} x {LOSSES[self.variable][0]} (from "
                f"{self.variable} over {span} recorded steps), summed over the set"
                + (f" (rank correlation with the measured cost of held-out sets: {held_out:.2f})"
                   if held_out is not None else ""))


def load_cost_models(path: str | Path = COST_MODEL) -> dict[str, CostModel]:
    """The ``{metric: model}`` of :func:`save_cost_models` (default: the models fitted on MiniLDM 2's ablation)."""
    path = require(path, "cost model", "`make block-ablation` (python -m studies.block_ablation.study)")
    return {metric: CostModel(**m) for metric, m in json.loads(path.read_text()).items()}


def loss(table, variable: str):
    """The loss by ``variable`` of each block of ``table`` (a :func:`block_table` or a per-block dataset)."""
    return LOSSES[variable][1](table)


# ---------------------------------------------------------------- the choice
class BlockChoice(list):
    """The chosen block names, with ``table`` (the evidence per block, and the prediction where a budget was
    given), ``rule`` (why, in words) and ``prediction`` (the chosen set's predicted cost and estimated speed-up;
    empty under the threshold rule); ``candidates`` lists every set the budget rule weighed."""

    def __init__(self, blocks: list[str], table: pd.DataFrame, rule: str, prediction: dict | None = None,
                 candidates: pd.DataFrame | None = None):
        super().__init__(blocks)
        self.table, self.rule = table, rule
        self.prediction = prediction or {}
        self.candidates = candidates

    def __repr__(self) -> str:
        return f"BlockChoice({list(self)!r})\nrule: {self.rule}\n{self.table.to_string()}"


def _cost_models(cost_model) -> dict[str, CostModel]:
    if isinstance(cost_model, CostModel):
        return {cost_model.metric: cost_model}
    if isinstance(cost_model, dict):
        for metric, model in cost_model.items():
            if not isinstance(model, CostModel):
                raise ValueError(f"cost_model[{metric!r}] must be a CostModel (fit_cost_model, load_cost_models); "
                                 f"got {type(model).__name__}")
        if not cost_model:
            raise ValueError("cost_model is an empty dict: give {metric: CostModel}, a file, or None")
        return cost_model
    if cost_model is not None and not isinstance(cost_model, (str, Path)):
        raise ValueError(f"cost_model must be a CostModel, {{metric: CostModel}}, a file of save_cost_models or None; "
                         f"got {type(cost_model).__name__}")
    return load_cost_models(cost_model or COST_MODEL)


def _positive_seconds(seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) \
            or seconds <= 0:
        raise ValueError(f"seconds must be a positive number (the audio length the speed-up is estimated at); got "
                         f"{seconds!r}")
    return float(seconds)


def _budgets(budget, models: dict[str, CostModel]) -> dict[str, float]:
    """``{metric: budget}``, each metric with a model and each budget a finite number."""
    if not isinstance(budget, dict):
        budget = {next(iter(models)) if len(models) == 1 else DEFAULT_METRIC: budget}
    if not budget:
        raise ValueError("budget is empty: give {metric: largest predicted cost}")
    for metric, value in budget.items():
        if metric not in models:
            raise ValueError(f"budget names {metric!r}, for which there is no cost model (models: {sorted(models)})")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"budget must be a finite number (the largest predicted cost allowed); got "
                             f"{metric}={value!r}")
    return {m: float(v) for m, v in budget.items()}


def choose_blocks(ds: xr.Dataset, min_ratio: float = 2.0, max_error: float | None = None,
                  late_fraction: float | None = None, *, budget: float | dict[str, float] | None = None,
                  seconds: float = 81.92, cost_model: CostModel | dict[str, CostModel] | str | Path | None = None,
                  shares: pd.DataFrame | None = None, ratio: float = 0.1, candidates=None) -> BlockChoice:
    """Choose blocks to sparsify from ``ds``, what :func:`analysis.measure_sparsity` returns (evidence averaged over
    each block's modules, heads and the last ``late_fraction`` of recorded steps, default half; a cost model
    averages it as it was fitted).

    Without ``budget``, :func:`threshold_rule` (``min_ratio``, ``max_error``); with it, :func:`budget_rule`
    (``seconds``, ``cost_model``, ``shares``, ``ratio``, ``candidates``; ``min_ratio`` and ``max_error`` are then not
    used).
    """
    check_evidence(ds)
    if isinstance(min_ratio, bool) or not isinstance(min_ratio, numbers.Real) or not math.isfinite(min_ratio):
        raise ValueError(f"min_ratio must be a finite number (a same-frequency ratio; 1 = uniform); got {min_ratio!r}")
    late_fraction = 0.5 if late_fraction is None else late_fraction
    if budget is None:
        return threshold_rule(ds, min_ratio, max_error, late_fraction)
    return budget_rule(ds, budget, seconds=seconds, cost_model=cost_model, shares=shares, ratio=ratio,
                       candidates=candidates, late_fraction=late_fraction)


def threshold_rule(ds: xr.Dataset, min_ratio: float = 2.0, max_error: float | None = None,
                   late_fraction: float = 0.5) -> BlockChoice:
    """The blocks whose same-frequency ratio (mass on the own row over 1/F) is at least ``min_ratio`` and, with
    ``max_error``, whose LiteFocus output error is at most that; ranked by the ratio."""
    if max_error is not None and (isinstance(max_error, bool) or not isinstance(max_error, numbers.Real)
                                  or not math.isfinite(max_error)):
        raise ValueError(f"max_error must be None or a finite number (a relative output error); got {max_error!r}")
    table = block_table(ds, late_fraction)
    span = f"averaged over modules, heads and the last {late_fraction:.0%} of recorded steps"
    chosen = table.same_frequency_ratio >= min_ratio
    if max_error is not None:
        chosen &= table.sparse_error <= max_error
    table["chosen"] = chosen
    rule = (f"same-frequency ratio >= {min_ratio} (mass on the own row over 1/F)"
            + (f" and LiteFocus output error <= {max_error}" if max_error is not None else "") + f", {span}")
    return BlockChoice(table.block[chosen].tolist(), table, rule)


def budget_rule(ds: xr.Dataset, budget: float | dict[str, float], *, seconds: float = 81.92,
                cost_model: CostModel | dict[str, CostModel] | str | Path | None = None,
                shares: pd.DataFrame | None = None, ratio: float = 0.1, candidates=None,
                late_fraction: float = 0.5) -> BlockChoice:
    """The set of blocks (of ``candidates``, default every subset) with the largest estimated speed-up at
    ``seconds`` (:func:`estimated_speedup`, LiteFocus at ``ratio``, ``shares`` default full-size AudioLDM2's from
    :func:`attention_shares`) whose predicted costs are within the budget; dense (no block) when nothing fits.

    ``budget``: ``{metric: largest predicted cost}`` (``{"KAD": 0, "CLAP": 0.5}``), or one number for the KAD cost
    (or the one model's metric). ``cost_model``: a model, ``{metric: model}``, or a file of :func:`save_cost_models`
    (default: the models fitted on MiniLDM 2's ablation, ``data/block_ablation``).
    """
    seconds = _positive_seconds(seconds)
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be a number in (0, 1] (LiteFocus's shared-key ratio); got {ratio!r}")
    models = _cost_models(cost_model)
    budgets = _budgets(budget, models)
    table = block_table(ds, late_fraction)
    costs = predicted_block_costs(ds, table, {m: models[m] for m in budgets}, late_fraction)
    for metric, cost in costs.items():
        table[f"predicted_{metric}"] = cost[table.block].values
    shares = attention_shares(seconds) if shares is None else check_shares(shares)
    weighed = weigh_sets(table, costs, budgets, _candidate_sets(table, candidates), shares, ratio)
    fits = weighed[weighed.within_budget]
    best = fits.sort_values("speedup", ascending=False, kind="stable").iloc[0] if len(fits) else None
    chosen = list(best.blocks) if best is not None else []
    table["chosen"] = table.block.isin(chosen)
    limits = " and ".join(f"predicted {m} cost at most {b:g}" for m, b in budgets.items())
    rule = (f"the largest estimated speed-up at {seconds:g} s (LiteFocus r = {ratio}, attention core share per F "
            f"shrunk to 1/F + r) among {len(weighed)} sets with {limits}; "
            + "; ".join(models[m].describe() for m in budgets)
            + f"; the table's evidence averaged over modules, heads and the last {late_fraction:.0%} of recorded "
            "steps")
    prediction = dict(budget=budgets, seconds=seconds, speedup=float(best.speedup) if best is not None else 1.0,
                      predicted={m: float(best[f"predicted_{m}"]) if best is not None else 0.0 for m in budgets})
    return BlockChoice(chosen, table, rule, prediction, weighed)


def predicted_block_costs(ds: xr.Dataset, table: pd.DataFrame, models: dict[str, CostModel],
                          late_fraction: float) -> dict[str, pd.Series]:
    """Per metric, each block's predicted cost: its model on the evidence averaged as the model was fitted. A cost
    that is not finite (NaN evidence, a NaN slope) is an error naming the blocks: summed, it would count as 0."""
    costs = {}
    for metric, model in models.items():
        fitted = table if model.late_fraction == late_fraction else block_table(ds, model.late_fraction)
        cost = model.block_costs(fitted)
        bad = sorted(cost.index[~np.isfinite(cost.to_numpy(dtype=float))])
        if bad:
            raise ValueError(f"the {metric} cost model ({model.variable}, slope {model.slope}) predicts no finite cost "
                             f"for {', '.join(bad)}: their evidence or the model's slope is NaN or infinite")
        costs[metric] = cost
    return costs


def check_shares(shares: pd.DataFrame) -> pd.DataFrame:
    """``shares`` with columns ``freq_bins`` and ``core_share``, each share in [0, 1) (a share of a forward's time)."""
    if not isinstance(shares, pd.DataFrame) or not {"freq_bins", "core_share"} <= set(shares.columns):
        raise ValueError("shares must be a pandas.DataFrame with columns freq_bins and core_share (what "
                         "attention_shares() or AttentionTiming.level_shares() return)")
    share = shares.core_share.to_numpy(dtype=float)
    if not np.all((share >= 0) & (share < 1)):
        raise ValueError(f"shares.core_share must lie in [0, 1) (the attention core's share of a UNet forward); got "
                         f"{share.tolist()}")
    return shares


def _candidate_sets(table: pd.DataFrame, candidates) -> list[tuple[str, ...]]:
    """Every subset of the table's blocks (at most 16 blocks), or ``candidates`` (sets of block names) checked."""
    if candidates is None:
        if len(table) > 16:
            raise ValueError(f"{len(table)} blocks: too many to weigh every subset; pass candidates=")
        return [c for k in range(len(table) + 1) for c in itertools.combinations(table.block, k)]
    if isinstance(candidates, str) or not all(not isinstance(c, str) for c in candidates):
        raise ValueError("candidates must be a list of sets of block names, e.g. [(), ('down_blocks.1',), "
                         f"('down_blocks.1', 'up_blocks.2')]; got {candidates!r}")
    sets = [tuple(c) for c in candidates]
    if not sets:
        raise ValueError("candidates is empty: give at least one set of blocks (() is dense)")
    known = set(table.block)
    for blocks in sets:
        if not set(blocks) <= known:
            raise ValueError(f"candidate {blocks} names blocks without evidence: {sorted(set(blocks) - known)}")
    return sets


def weigh_sets(table: pd.DataFrame, costs: dict[str, pd.Series], budgets: dict[str, float],
               sets: list[tuple[str, ...]], shares: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """One row per set of blocks: its predicted cost per metric (the blocks' costs summed), its estimated speed-up
    and whether every cost is within its budget."""
    rows = [dict(blocks=blocks, **{f"predicted_{m}": float(c[list(blocks)].sum()) for m, c in costs.items()},
                 speedup=estimated_speedup(table, blocks, shares, ratio)) for blocks in sets]
    weighed = pd.DataFrame(rows)
    weighed["within_budget"] = np.logical_and.reduce([weighed[f"predicted_{m}"] <= b for m, b in budgets.items()])
    return weighed
