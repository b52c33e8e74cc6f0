"""Command line.

``litefocus measure``: record self-attention while generating, measure same-frequency sparsity per block, layer,
head and step, choose the blocks to sparsify, and write the dataset, figures and a table.
``litefocus generate``: render one prompt with dense attention and with LiteFocus, side by side, and time both.
``litefocus evaluate``: FAD, KAD, KL and CLAP score of a folder of generated audio against reference audio.
``litefocus sweep``: generate captions x configurations x lengths x samplers x seeds, resumable, on one process or
under ``accelerate launch -m litefocus_cli sweep ...``; ``litefocus evaluate-sweep``: quality and speed per cell.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from . import evaluate, sweep
from .models import DEFAULT, MODEL_HELP, TINY, load_model
from .output import check_out, run_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litefocus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="measure same-frequency attention and choose blocks")
    gen = commands.add_parser("generate", help="generate with dense attention and with LiteFocus; time both")
    for sub, seconds, steps, out in ((measure, 10.24, 25, "results/measure"), (gen, 10.24, 10, "results/generate")):
        sub.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
        sub.add_argument("--prompt", default="a string quartet playing a chorale slowly")
        sub.add_argument("--seconds", type=float, default=seconds, help="audio length in seconds")
        sub.add_argument("--steps", type=int, default=steps, help="denoising steps")
        sub.add_argument("--seed", type=int, default=0, help="seed of the noise and of every random choice, >= 0")
        sub.add_argument("--out", type=Path, default=Path(out),
                         help="results folder (new, empty, or written by an earlier run of this command)")
    measure.add_argument("--blocks", nargs="+", default=None, help="blocks to record (default: all)")
    measure.add_argument("--queries", type=int, default=16, help="query rows kept per module and step")
    measure.add_argument("--min-ratio", type=float, default=2.0,
                         help="threshold rule: the same-frequency ratio a block needs")
    measure.add_argument("--budget", nargs="+", default=["KAD=0"], metavar="METRIC=COST",
                         help="budget rule: the largest predicted cost allowed per metric, against dense (KAD and KL "
                              "increase, CLAP-score drop; default KAD=0: predicted no worse than dense in KAD, the "
                              "one metric whose cost model ranked held-out sets as well as the measured costs did)")
    measure.add_argument("--target-seconds", type=float, default=81.92,
                         help="budget rule: the audio length whose speed-up is estimated (full-size AudioLDM2's "
                              "attention share: 10.24, 20.48, 40.96 or 81.92)")
    gen.add_argument("--ratio", type=float, default=0.1, help="LiteFocus compensation ratio r, in [0, 1]")
    gen.add_argument("--blocks", nargs="+", default=None, help="blocks to sparsify (default: the paper's)")
    gen.add_argument("--union", default="exact", choices=["exact", "concat"],
                     help="'exact': the paper's eq. 4 (default); 'concat': the authors' code, which the paper's "
                          "numbers come from")
    evaluate.add_parser(commands)
    sweep.add_parsers(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            return evaluate.run(args)
        if args.command == "sweep":
            return sweep.run_sweep(args)
        if args.command == "evaluate-sweep":
            return sweep.run_evaluate_sweep(args)
        check_arguments(args)
        check_out(args.out, args.command)
        pipe, name = _load(args.model, args.seed)
        return measure_command(args, pipe, name) if args.command == "measure" else generate(args, pipe, name)
    except (ValueError, TypeError, OSError, MemoryError) as error:
        print(f"litefocus: {error}", file=sys.stderr)
        return 2


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


def check_arguments(args) -> None:
    """Every argument that can be checked without the model, before anything is loaded or computed."""
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--seconds must be a positive finite number of seconds; got {args.seconds}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1; got {args.steps}")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed must lie in [0, 2**64) (what a torch.Generator accepts); got {args.seed}")
    if args.command == "measure":
        if not math.isfinite(args.min_ratio):
            raise ValueError(f"--min-ratio must be a finite number (a same-frequency ratio; 1 = uniform); "
                             f"got {args.min_ratio}")
        if args.queries < 1:
            raise ValueError(f"--queries must be at least 1; got {args.queries}")
        from analysis.block_choice import METRICS, attention_shares, load_cost_models

        args.budget = parse_budget(args.budget, METRICS)
        try:
            attention_shares(args.target_seconds)
        except ValueError as error:
            raise ValueError(f"--target-seconds: {error}") from None
        load_cost_models()
    else:
        import litefocus

        litefocus.LiteFocusOptions(ratio=args.ratio, union=args.union)


def _load(model: str, seed: int):
    pipe, name = load_model(model, seed)
    if name == TINY:
        print("note: the 'tiny' model has random weights: its audio is noise and its attention shows no pattern. "
              "Timing and wiring are real.")
    return pipe, name


def _settings(args, name: str) -> dict:
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()} | dict(
        model=name)


def measure_command(args, pipe, name: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import analysis
    from analysis import plots

    import torch

    analysis.measure.check_run(args.prompt, args.seconds, args.steps)
    with analysis.record_attention(pipe, args.blocks, queries=args.queries, summary_queries=2048,
                                   seed=args.seed) as rec:
        pipe(args.prompt, audio_length_in_s=args.seconds, num_inference_steps=args.steps,
             generator=torch.Generator().manual_seed(args.seed))
    ds = analysis.sparsity_dataset(rec)
    ds.attrs.update(model=name, prompt=args.prompt, audio_length_in_s=args.seconds, num_inference_steps=args.steps)
    choice = analysis.choose_blocks(ds, min_ratio=args.min_ratio)
    budgeted = analysis.choose_blocks(ds, budget=args.budget, seconds=args.target_seconds)
    best = choice.table.block[0]
    module = next(m for m in rec.recorded if m.startswith(best + "."))
    late = rec.dataset(module).isel(step=-1).mean("head")

    with run_folder(args.out, "measure", _settings(args, name)) as folder:
        ds.to_netcdf(folder / "sparsity.nc", engine="h5netcdf")
        rec.to_datatree().to_netcdf(folder / "attention.nc", engine="h5netcdf")
        choice.table.to_csv(folder / "blocks.csv", index=False)
        budgeted.candidates.to_csv(folder / "block_sets.csv", index=False)

        fig, ax = plt.subplots(figsize=(8, 2.6))
        plots.query_attention(late["rows"], query=late.sizes["query"] // 2, ax=ax, title=f"{module}, last step")
        fig.savefig(folder / "query_attention.png", dpi=110, bbox_inches="tight")
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
        plots.offset_profiles(late["offset_profile"], axes=axes, title=module)
        fig.savefig(folder / "offset_profiles.png", dpi=110, bbox_inches="tight")
        fig = plots.sparsity_heatmap(ds).figure
        fig.savefig(folder / "sparsity_by_block.png", dpi=110, bbox_inches="tight")
        plt.close("all")
    print(budgeted.table.drop(columns="chosen").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for title, c in (("threshold rule", choice), ("budget rule", budgeted)):
        print(f"{title}: {c.rule}")
        print(f"  chosen blocks: {', '.join(c) if c else 'none'}")
    p = budgeted.prediction
    costs = ", ".join(f"{m} {p['predicted'][m]:+.3f} (budget {b:g})" for m, b in p["budget"].items())
    print(f"  predicted cost {costs}; estimated UNet step speed-up {p['speedup']:.2f}x at {p['seconds']:g} s")
    print(f"wrote {args.out}/sparsity.nc, attention.nc, blocks.csv, block_sets.csv, 3 figures and run.json")
    return 0


def generate(args, pipe, name: str) -> int:
    import numpy as np
    import torch

    import litefocus
    from litefocus.files import write_json, write_wav

    blocks = args.blocks or list(litefocus.PAPER_BLOCKS)
    names = litefocus.self_attention_modules(pipe, blocks)
    print(f"LiteFocus on {len(names)} self-attention modules of {', '.join(blocks)}, r = {args.ratio}, "
          f"{args.union} union")

    def render():
        # one untimed step first, so that neither side pays the first call's warm-up
        pipe(args.prompt, num_inference_steps=1, audio_length_in_s=args.seconds)
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        audio = pipe(args.prompt, num_inference_steps=args.steps, audio_length_in_s=args.seconds,
                     generator=generator).audios[0]
        return audio, time.perf_counter() - start

    dense, dense_s = render()
    with litefocus.enabled(pipe, blocks, args.ratio, seed=args.seed, union=args.union):
        sparse, sparse_s = render()
    from analysis.sweep import sampling_rate

    rate = sampling_rate(pipe)
    summary = dict(
        model=name, prompt=args.prompt, seconds=args.seconds, steps=args.steps, ratio=args.ratio, union=args.union,
        blocks=blocks, modules=len(names), dense_s=round(dense_s, 3), litefocus_s=round(sparse_s, 3),
        speedup=round(dense_s / sparse_s, 3),
        waveform_relative_difference=float(np.linalg.norm(sparse - dense) / max(np.linalg.norm(dense), 1e-12)),
        torch=torch.__version__, threads=torch.get_num_threads(),
    )
    with run_folder(args.out, "generate", _settings(args, name)) as folder:
        write_wav(folder / "dense.wav", dense, rate)
        write_wav(folder / "litefocus.wav", sparse, rate)
        write_json(folder / "summary.json", summary)
    print(f"dense {dense_s:.2f} s, LiteFocus {sparse_s:.2f} s, speed-up {summary['speedup']:.2f}x "
          f"({args.seconds} s of audio, {args.steps} steps)")
    print(f"wrote {args.out}/dense.wav, litefocus.wav, summary.json and run.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
