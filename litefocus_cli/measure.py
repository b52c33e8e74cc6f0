"""``litefocus measure``: record self-attention while generating, measure same-frequency sparsity per block, layer,
head and step, choose the blocks to sparsify, and write the dataset, figures and a table."""

from __future__ import annotations

import math

from .common import add_run_arguments, check_run_arguments, load_announced, settings
from .output import check_out, run_folder

FIGURES = ("query_attention.png", "offset_profiles.png", "sparsity_by_block.png")


def add_parser(commands) -> None:
    sub = commands.add_parser("measure", help="measure same-frequency attention and choose blocks")
    add_run_arguments(sub, seconds=10.24, steps=25, out="results/measure")
    sub.add_argument("--blocks", nargs="+", default=None, help="blocks to record (default: all)")
    sub.add_argument("--queries", type=int, default=16, help="query rows kept per module and step")
    sub.add_argument("--min-ratio", type=float, default=2.0,
                     help="threshold rule (the default rule): the same-frequency ratio a block needs (a value "
                          "that starts with '-' as --min-ratio=-0.5)")
    sub.add_argument("--budget", nargs="+", default=None, metavar="METRIC=COST",
                     help="also apply the budget rule: the largest predicted cost allowed per metric, against dense "
                          "(KAD and KL increase, CLAP-score drop), from the cost models fitted on MiniLDM 2's block "
                          "ablation (data/block_ablation). Opt-in: those models are fitted on one model's ablation")
    sub.add_argument("--target-seconds", type=float, default=81.92,
                     help="budget rule: the audio length whose speed-up is estimated (full-size AudioLDM2's "
                          "attention share: 10.24, 20.48, 40.96 or 81.92)")
    sub.set_defaults(func=run)


def parse_budget(values: list[str], metrics) -> dict[str, float]:
    """``["KAD=0", "CLAP=0.5"]`` -> ``{"KAD": 0.0, "CLAP": 0.5}``; an error names the bad entry."""
    budget = {}
    for value in values:
        metric, _, number = value.partition("=")
        try:
            cost = float(number)
        except ValueError:
            cost = float("nan")
        if metric not in metrics or not math.isfinite(cost):
            raise ValueError(f"--budget {value}: give METRIC=COST with METRIC one of {', '.join(metrics)} and a "
                             "finite cost")
        budget[metric] = cost
    return budget


def check_arguments(args) -> dict:
    """Every argument that can be checked without the model, before anything is loaded or computed; returns what the
    budget rule needs (the cost models and attention shares), loaded once, or ``{}`` without ``--budget``."""
    check_run_arguments(args)
    if not math.isfinite(args.min_ratio):
        raise ValueError(f"--min-ratio must be a finite number (a same-frequency ratio; 1 = uniform); "
                         f"got {args.min_ratio}")
    if args.queries < 1:
        raise ValueError(f"--queries must be at least 1; got {args.queries}")
    if args.budget is not None:
        from analysis.block_choice import COST_METRICS, attention_shares, load_cost_models

        args.budget = parse_budget(args.budget, COST_METRICS)
        try:
            shares = attention_shares(args.target_seconds)
        except ValueError as error:
            raise ValueError(f"--target-seconds: {error}") from None
        return dict(cost_model=load_cost_models(), shares=shares)  # loaded once, before the model
    return {}


def run(args) -> int:
    budget_inputs = check_arguments(args)
    check_out(args.out, "measure")
    pipe, name = load_announced(args.model, args.seed, args.seconds, args.max_memory_gb)
    ds, recorder, choices = measure(args, pipe, name, budget_inputs)
    with run_folder(args.out, "measure", settings(args, name)) as folder:
        write_results(folder, ds, recorder, choices)
    report(choices)
    written = "blocks.csv, block_sets.csv" if "budget rule" in choices else "blocks.csv"
    print(f"wrote {args.out}/sparsity.nc, attention.nc, {written}, {len(FIGURES)} figures and run.json")
    return 0


def measure(args, pipe, name: str, budget_inputs: dict):
    """The sparsity dataset, its recorder and ``{rule: BlockChoice}`` (the threshold rule, and the budget rule when
    ``--budget`` was given, from ``budget_inputs``: :func:`check_arguments`' cost models and shares)."""
    import analysis

    ds, recorder = analysis.measure.measure_run(pipe, args.prompt, args.seconds, args.steps, args.seed,
                                                blocks=args.blocks, queries=args.queries, summary_queries=2048)
    ds.attrs.update(model=name)
    choices = {"threshold rule": analysis.choose_blocks(ds, min_ratio=args.min_ratio)}
    if args.budget is not None:
        choices["budget rule"] = analysis.choose_blocks(ds, budget=args.budget, seconds=args.target_seconds,
                                                        **budget_inputs)
    return ds, recorder, choices


def write_results(folder, ds, recorder, choices) -> None:
    """The dataset, the recorded rows, the block tables and the three figures, into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import plots

    ds.to_netcdf(folder / "sparsity.nc", engine="h5netcdf")
    recorder.to_datatree().to_netcdf(folder / "attention.nc", engine="h5netcdf")
    threshold = choices["threshold rule"]
    threshold.table.to_csv(folder / "blocks.csv", index=False)
    if "budget rule" in choices:
        choices["budget rule"].candidates.to_csv(folder / "block_sets.csv", index=False)
    best = threshold.table.block[0]
    module = next(m for m in recorder.recorded if m.startswith(best + "."))
    late = recorder.dataset(module).isel(step=-1).mean("head")
    fig, ax = plt.subplots(figsize=(8, 2.6))
    plots.query_attention(late["rows"], query=late.sizes["query"] // 2, ax=ax, title=f"{module}, last step")
    fig.savefig(folder / FIGURES[0], dpi=110, bbox_inches="tight")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
    plots.offset_profiles(late["offset_profile"], axes=axes, title=module)
    fig.savefig(folder / FIGURES[1], dpi=110, bbox_inches="tight")
    fig = plots.sparsity_heatmap(ds).figure
    fig.savefig(folder / FIGURES[2], dpi=110, bbox_inches="tight")
    plt.close("all")


def report(choices) -> None:
    """The per-block table and each rule's choice, in words."""
    threshold = choices["threshold rule"]
    print(threshold.table.drop(columns="chosen").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for title, choice in choices.items():
        print(f"{title}: {choice.rule}")
        print(f"  chosen blocks: {', '.join(choice) if choice else 'none'}")
    if "budget rule" in choices:
        p = choices["budget rule"].prediction
        costs = ", ".join(f"{m} {p['predicted'][m]:+.3f} (budget {b:g})" for m, b in p["budget"].items())
        print(f"  predicted cost {costs}; estimated UNet step speed-up {p['speedup']:.2f}x at {p['seconds']:g} s")
    else:
        print("budget rule: not applied (opt-in: --budget METRIC=COST, cost models fitted on MiniLDM 2's ablation)")
