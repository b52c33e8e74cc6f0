"""The paper's Tables 1 to 3 measured on the embedded model, set beside the paper's numbers, and its claims checked.

Reads what ``make paper-tables`` commits in ``data/paper_tables``: per sweep (``tables_1_3``, ``table_2``,
``fast_solver``) the evaluation table (``NAME.csv``: FAD, KAD, KL, CLAP with 95 % bootstrap intervals and speed per
cell), the paired comparisons (``NAME_comparisons.csv``: metric differences between configurations with intervals
over captions) and the job rows (``NAME_jobs.csv``). MiniLDM's lengths are 1x, 2x, 4x and 8x its 2.56 s training
length, the ratios of the paper's 10, 20, 40 and 80 s to AudioLDM2's 10 s. The full-size AudioLDM2 speed-ups come
from ``data/benchmarks/speed.csv`` (``python benchmarks/speed.py``, random weights: timing does not depend on them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from litefocus.shipped import shipped_path
from minildm.pipeline import TRAINING_SECONDS

RESULTS = shipped_path("paper_tables")
SPEED = shipped_path("benchmarks", "speed.csv")
PAPER_SECONDS = {1: 10, 2: 20, 4: 40, 8: 80}  # multiple of the training length -> the paper's audio length (s)
TABLE_METRICS = ("KAD", "FAD", "KL", "CLAP")
LOWER_IS_BETTER = {"KAD": True, "FAD": True, "KL": True, "CLAP": False}

PAPER = shipped_path("paper")  # the paper's Tables 1-3 as CSV (see its README)


def paper_tables(folder: Path = PAPER) -> dict[str, pd.DataFrame]:
    """The paper's numbers: ``table1`` (seconds, method, speedup, fad, kl, clap_percent; method "original" is dense),
    ``table2`` (seconds, ratio, fad, kl, clap_percent; cross-frequency only), ``table3`` (same-frequency only, with
    the changes from LiteFocus the paper prints)."""
    return {"table1": pd.read_csv(folder / "table1_speed.csv").replace({"method": {"original": "dense"}}),
            "table2": pd.read_csv(folder / "table2_cross_frequency.csv"),
            "table3": pd.read_csv(folder / "table3_same_frequency.csv")}


def load(folder: Path = RESULTS) -> dict[str, dict[str, pd.DataFrame]]:
    """``{sweep: {"table", "comparisons", "jobs"}}`` for the sweeps committed in ``folder``."""
    folder = Path(folder)
    results = {}
    for table in sorted(folder.glob("*.csv")):
        if table.stem.endswith(("_comparisons", "_jobs")):
            continue
        parts = {"table": pd.read_csv(table, keep_default_na=False, na_values=[""])}
        for kind in ("comparisons", "jobs"):
            path = folder / f"{table.stem}_{kind}.csv"
            if path.is_file():
                parts[kind] = pd.read_csv(path)
        results[table.stem] = parts
    if not results:
        raise FileNotFoundError(f"no results in {folder}: run `make paper-tables`")
    return results


def multiple(seconds: float) -> int:
    return int(round(seconds / TRAINING_SECONDS))


def fmt(value: float, low: float, high: float, digits: int = 2) -> str:
    """``value [low, high]``, or the value alone when there is no interval."""
    if not np.isfinite(value):
        return "-"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def metric_columns(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """One row per cell (configuration, seconds, sampler), one column per metric as ``value [low, high]``, and the
    speed-ups."""
    table = table.copy()
    table["shown"] = [fmt(v, lo, hi, digits) for v, lo, hi in zip(table.value, table.low, table.high)]
    wide = table.pivot_table(index=["seconds", "sampler", "steps", "configuration"], columns="metric", values="shown",
                             aggfunc="first", sort=False)
    speed = table.groupby(["seconds", "sampler", "steps", "configuration"], sort=False)[
        ["speedup", "unet_speedup", "clips"]].first()
    wide = wide.join(speed)
    return wide[[m for m in TABLE_METRICS if m in wide.columns] + ["speedup", "unet_speedup", "clips"]]


def audioldm2_speedups(path: Path = SPEED) -> pd.DataFrame:
    """Full-size AudioLDM2 UNet speed-ups over dense per (seconds, configuration): median and min-max over rounds."""
    speed = pd.read_csv(path)
    return speed.set_index(["seconds", "configuration"])[["speedup", "speedup_min", "speedup_max"]]


def table_1(results: dict) -> pd.DataFrame:
    """Dense, LiteFocus and Token Merging at 1x to 8x: measured quality (MiniLDM 2, offline evaluator), MiniLDM's
    measured end-to-end speed-up, AudioLDM2's measured UNet speed-up at the paper's length, and the paper's row."""
    table = results["tables_1_3"]["table"]
    wide = metric_columns(table[table.configuration.isin(["dense", "litefocus", "token_merging"])]).reset_index()
    speed = audioldm2_speedups()
    paper_rows = paper_tables()["table1"].set_index(["seconds", "method"])
    rows = []
    for r in wide.itertuples():
        m = multiple(r.seconds)
        paper = paper_rows.loc[(PAPER_SECONDS[m], r.configuration)]
        key = (round(PAPER_SECONDS[m] * 1.024, 2), r.configuration)  # AudioLDM2's 10.24 s latent grid
        full = speed.loc[key] if key in speed.index else None
        rows.append({"length": f"{m}x ({r.seconds:g} s; paper {PAPER_SECONDS[m]} s)", "configuration": r.configuration,
                     "KAD": r.KAD, "FAD": r.FAD, "KL": r.KL, "CLAP": r.CLAP,
                     "speed-up MiniLDM": round(r.speedup, 2),
                     "speed-up AudioLDM2 UNet": "-" if full is None else
                     f"{full.speedup:.2f} ({full.speedup_min:.2f}-{full.speedup_max:.2f})",
                     "paper FAD": paper.fad, "paper KL": paper.kl, "paper CLAP": paper.clap_percent,
                     "paper speed-up": paper.speedup})
    return pd.DataFrame(rows)


def table_2(results: dict) -> pd.DataFrame:
    """Cross-frequency only at r = 1 (dense: every key), 0.8 ... 0.2, at 1x, 2x, 4x, beside the paper's 10/20/40 s."""
    table = results["table_2"]["table"]
    wide = metric_columns(table[table.configuration != "reference_halves"]).reset_index()
    paper_rows = paper_tables()["table2"].set_index(["seconds", "ratio"])
    rows = []
    for r in wide.itertuples():
        ratio = 1.0 if r.configuration == "dense" else float(r.configuration.split(":")[1])
        m = multiple(r.seconds)
        paper = paper_rows.loc[(PAPER_SECONDS[m], ratio)]
        rows.append({"length": f"{m}x ({r.seconds:g} s)", "r": ratio, "KAD": r.KAD, "FAD": r.FAD, "KL": r.KL,
                     "CLAP": r.CLAP, "paper FAD": paper.fad, "paper KL": paper.kl, "paper CLAP": paper.clap_percent})
    return pd.DataFrame(rows).sort_values(["length", "r"], ascending=[True, False]).reset_index(drop=True)


def table_3(results: dict) -> pd.DataFrame:
    """Same-frequency only against LiteFocus: the paired change (same-frequency only minus LiteFocus) with its
    interval, beside the paper's change."""
    comparisons = results["tables_1_3"]["comparisons"]
    mine = comparisons[(comparisons.configuration == "same_frequency_only") & (comparisons.baseline == "litefocus")]
    paper_rows = paper_tables()["table3"].set_index("seconds")
    rows = []
    for seconds, group in mine.groupby("seconds"):
        m = multiple(seconds)
        paper = paper_rows.loc[PAPER_SECONDS[m]]
        row = {"length": f"{m}x ({seconds:g} s)"}
        for g in group.itertuples():
            row[f"change {g.metric}"] = fmt(g.difference, g.low, g.high, 3 if g.metric in ("KL", "KAD") else 2)
        row.update({"paper change FAD": paper.fad_change, "paper change KL": paper.kl_change,
                    "paper change CLAP": paper.clap_change, "pairs": int(group.pairs.iloc[0])})
        rows.append(row)
    return pd.DataFrame(rows)


def paired(results: dict, sweep: str, configuration: str, baseline: str, seconds: float, metric: str = "KAD"):
    """The paired change ``metric(configuration) - metric(baseline)`` at ``seconds``: a row with difference, low,
    high (None when not measured)."""
    c = results[sweep]["comparisons"]
    hit = c[(c.configuration == configuration) & (c.baseline == baseline) & np.isclose(c.seconds, seconds)
            & (c.metric == metric)]
    return None if hit.empty else hit.iloc[0]


def verdict(row, metric: str = "KAD") -> str:
    """'better', 'worse' or 'no difference resolved': where the paired interval lies against 0 (lower KAD, FAD
    and KL, higher CLAP, is better)."""
    if row is None:
        return "not measured"
    if row.low > 0:
        return "worse" if LOWER_IS_BETTER[metric] else "better"
    if row.high < 0:
        return "better" if LOWER_IS_BETTER[metric] else "worse"
    return UNRESOLVED


UNRESOLVED = "no difference resolved"


def combined(verdicts: dict[str, str]) -> str:
    """One finding from per-metric verdicts: "better" or "worse" when at least one metric resolves that way and none
    the other way, "mixed" when they disagree, else :data:`UNRESOLVED`."""
    found = {v for v in verdicts.values() if v in ("better", "worse")}
    return found.pop() if len(found) == 1 else ("mixed" if found else UNRESOLVED)


def claims(results: dict) -> pd.DataFrame:
    """The paper's claims, each with this toolkit's paired evidence on MiniLDM 2 (95 % intervals over captions) per
    length: the change in each metric, ``found`` (better or worse where at least one metric resolves it and none
    says the opposite, mixed, or no difference resolved; which metrics resolved it in ``resolved by``), what the
    paper's numbers say at that length, and ``agrees`` (True, False, or None where the intervals cannot tell or
    the paper claims nothing)."""
    lengths = sorted(results["tables_1_3"]["table"].seconds.unique())
    rows = []

    def add(claim, configuration, baseline, expected, sweep="tables_1_3"):
        for seconds in lengths:
            found_rows = {m: paired(results, sweep, configuration, baseline, seconds, m) for m in TABLE_METRICS}
            found_rows = {m: r for m, r in found_rows.items() if r is not None}
            if not found_rows:
                continue
            verdicts = {m: verdict(r, m) for m, r in found_rows.items()}
            found, paper = combined(verdicts), expected(seconds)
            if paper == "no claim" or (found == UNRESOLVED and paper != UNRESOLVED):
                agrees = None  # nothing to check, or intervals too wide to tell
            else:
                agrees = found == paper
            row = dict(claim=claim, length=f"{multiple(seconds)}x", comparison=f"{configuration} - {baseline}")
            row.update({m: fmt(r.difference, r.low, r.high, 3 if m in ("KAD", "FAD", "KL") else 2)
                        for m, r in found_rows.items()})
            row.update(found=found, resolved_by=" ".join(m for m, v in verdicts.items() if v in ("better", "worse")),
                       paper=paper, agrees=agrees, pairs=int(next(iter(found_rows.values())).pairs))
            rows.append(row)

    long = lambda s: multiple(s) >= 4  # noqa: E731
    add("LiteFocus improves quality at long lengths (Table 1)", "litefocus", "dense",
        lambda s: "better" if multiple(s) >= 2 else "worse")
    add("Token Merging is worse than dense (Table 1)", "token_merging", "dense", lambda s: "worse")
    add("Same-frequency only: worse than LiteFocus at short lengths, better at long ones (Table 3)",
        "same_frequency_only", "litefocus", lambda s: "better" if multiple(s) >= 8 else "worse")
    add("The exact union against the authors' concatenation", "litefocus_concat", "litefocus", lambda s: "no claim")
    if "table_2" in results:  # the paper's 10 s FAD: 2.89 dense, 3.20 at r = 0.4, 3.88 at 0.2; at 40 s within 0.13
        for ratio in ("0.4", "0.2"):
            add(f"Cross-frequency only at r = {ratio}: worse than dense for short audio, not for long (Table 2)",
                f"cross_frequency_only:{ratio}", "dense", lambda s: "worse" if not long(s) else UNRESOLVED,
                sweep="table_2")
    if "fast_solver" in results:
        add("LiteFocus with DPM-Solver++ (10 steps) against dense with it", "litefocus", "dense",
            lambda s: "no claim", sweep="fast_solver")
    return pd.DataFrame(rows)
