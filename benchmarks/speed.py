"""Speed at real size: one full-size AudioLDM2 UNet forward, dense vs LiteFocus, its ablations and Token Merging.

The paper's Table 1 speed column and Figure 1, on the cvssp/audioldm2 UNet with random weights (timing does not
depend on weights), fp32, batch 2 (one denoising step under classifier-free guidance), for the configurations of
``analysis.ablations`` (dense, the paper's method and ablations, Token Merging, ours). For each audio length:

- every configuration runs once as a warm-up, then ``--repeats`` interleaved rounds (the order rotates each round);
  a configuration's speed-up is the median over rounds of dense time / its time in the same round;
- each round ends with one dense forward under ``analysis.timing``: the time in each self-attention module and in
  its attention core (SDPA), per level; their median over rounds gives the attention share of Figure 1, and each
  configuration's Amdahl bounds: the speed-up if the attention cores it sparsifies took zero time (``bound_zero``)
  or only their FLOP share, 1/F + r for LiteFocus (``bound_flop``; the target compares against this one). A
  speed-up above its zero-time bound is flagged (``exceeds_bound``, and a warning): one of the two measurements is
  off.

Rows are merged into the CSVs after each length (written atomically), keyed by (length, configuration) and (length,
level): a rerun measures only the configurations missing at a length (with dense, against which speed-ups are
measured in the same rounds), and a length whose attention share is missing gets it; ``--force`` measures again.

    python benchmarks/speed.py                                   # 10.24 .. 81.92 s, about 35 minutes here
    python benchmarks/speed.py --seconds 81.92 --repeats 2       # one length
    python benchmarks/speed.py --seconds 2.56 --repeats 1 --out ''   # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullsize import machine, unet_inputs  # noqa: E402

from analysis.ablations import ABLATIONS, Configuration, ablations  # noqa: E402
from analysis.timing import time_attention  # noqa: E402
from litefocus.files import read_csv, write_csv  # noqa: E402
from litefocus.models import audioldm2_unet  # noqa: E402

def forward_seconds(unet, inputs: tuple[tuple, dict]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        unet(*inputs[0], **inputs[1])
    return time.perf_counter() - start


def measure_length(unet, seconds: float, repeats: int, configurations: list[Configuration]) -> tuple[list, list]:
    """(speed rows, attention-share rows) for one audio length."""
    inputs = unet_inputs(seconds)
    configurations = [c.at_length(seconds) for c in configurations]
    if len(configurations) == 1:  # dense alone has nothing to compare: only the attention share is measured
        configurations = []
    for config in configurations:  # warm-up
        with config.applied(unet):
            forward_seconds(unet, inputs)
    times = {c.name: [] for c in configurations}
    timed_rounds = []  # one dense forward under analysis.timing per round: the attention share is their median
    for round_index in range(max(repeats, 1)):
        shift = round_index % len(configurations) if configurations else 0
        for config in configurations[shift:] + configurations[:shift]:
            with config.applied(unet):
                times[config.name].append(forward_seconds(unet, inputs))
            print(f"  {seconds:6.2f} s  round {round_index + 1}/{repeats}  {config.name:<32}"
                  f"{times[config.name][-1]:8.2f} s", flush=True)
        with time_attention(unet) as timing:
            forward_seconds(unet, inputs)
        timed_rounds.append(timing)
    modules, total, levels = median_timing(timed_rounds)
    speed_rows = []
    for config in configurations:
        shares = [config.core_share(m, f) for m, f in zip(modules.module, modules.freq_bins)]
        saved_zero = sum(core for core, share in zip(modules.core_s, shares) if share < 1.0)
        saved_flop = sum(core * (1 - share) for core, share in zip(modules.core_s, shares))
        speedups = [d / t for d, t in zip(times["dense"], times[config.name])]
        speedup = statistics.median(speedups)
        bound = total / (total - saved_flop)
        speed_rows.append(dict(
            seconds=seconds, latent_time=inputs[0][0].shape[2], configuration=config.name, kind=config.kind,
            blocks=" ".join(config.blocks), ratio=config.ratio, same_frequency=config.same_frequency,
            cross_frequency=config.cross_frequency, repeats=repeats, median_s=statistics.median(times[config.name]),
            speedup=speedup, speedup_min=min(speedups), speedup_max=max(speedups),
            bound_zero=total / (total - saved_zero), bound_flop=bound, of_bound_flop=speedup / bound,
            exceeds_bound=bool(speedup > total / (total - saved_zero)), **machine()))
        if speed_rows[-1]["exceeds_bound"]:
            print(f"  warning: {config.name} at {seconds:g} s measured {speedup:.2f}x, above its zero-time bound "
                  f"{speed_rows[-1]['bound_zero']:.2f}x: the rounds or the attention share are off (a loaded machine?)")
    share_rows = [dict(seconds=seconds, rounds=len(timed_rounds), **row, **machine()) for row in levels]
    return speed_rows, share_rows


def median_timing(rounds: list) -> tuple[pd.DataFrame, float, list[dict]]:
    """Per module the median over rounds of its module and core seconds, the median forward seconds, and per level
    the median of each round's shares (``AttentionTiming.level_shares``), from interleaved timed rounds."""
    tables = [r.table() for r in rounds]
    modules = tables[0].copy()
    for column in ("module_s", "core_s"):
        modules[column] = pd.concat([table[column] for table in tables], axis=1).median(axis=1).to_numpy()
    total = statistics.median(r.forward_s for r in rounds)
    shares = pd.concat([r.level_shares() for r in rounds])
    levels = shares.groupby("level", as_index=False).median()
    for column in ("tokens", "freq_bins", "modules"):
        levels[column] = levels[column].astype(int)
    return modules, total, levels.to_dict("records")


def merge_rows(path: Path, rows: list[dict], keys: list[str]) -> None:
    """Replace the rows of ``path`` (a CSV) that have the same ``keys`` as ``rows``, keep every other; atomic."""
    new = pd.DataFrame(rows)
    old = read_csv(path) if path.is_file() else pd.DataFrame(columns=new.columns)
    if len(old):
        def key(table):
            return list(zip(*(table[k].round(2) if k == "seconds" else table[k] for k in keys)))

        old = old[[k not in set(key(new)) for k in key(old)]]
    table = pd.concat([old, new], ignore_index=True).sort_values("seconds", kind="stable")
    write_csv(path, table)


def missing(speed_csv: Path | None, share_csv: Path | None, seconds: float, configurations: list[Configuration]
            ) -> tuple[list[Configuration], bool]:
    """The configurations without a row at this length in speed.csv (with dense when any is missing, since speed-ups
    are measured against dense in the same rounds), and whether attention_share.csv lacks this length."""
    def at_length(path):
        if path is None or not path.is_file():
            return pd.DataFrame(columns=["configuration"])
        table = pd.read_csv(path)
        return table[table.seconds.round(2) == round(seconds, 2)]

    done = set(at_length(speed_csv).configuration)
    todo = [c for c in configurations if c.name not in done]
    if todo:
        todo = [c for c in configurations if c.kind == "dense" or c in todo]
    return todo, len(at_length(share_csv)) == 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.24, 20.48, 40.96, 81.92])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-repeats", type=int, default=2, help="repeats at lengths above 60 s (~45 s a forward)")
    parser.add_argument("--configurations", nargs="+", choices=[c.name for c in ABLATIONS],
                        help="default: all (dense is always included)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks",
                        help="folder for speed.csv and attention_share.csv (the committed ones: data/benchmarks, "
                             "named to add to them); '' writes nothing")
    parser.add_argument("--force", action="store_true", help="measure lengths already in the CSVs again")
    args = parser.parse_args(argv)
    if min(args.seconds) < 0.32 or args.repeats < 1 or args.long_repeats < 1:
        parser.error("--seconds must be at least 0.32 (32 mel frames: one time bin at the deepest UNet level) "
                     "and --repeats / --long-repeats at least 1")
    torch.set_num_threads(args.threads)
    configurations = ablations(args.configurations)
    out = Path(args.out) if args.out else None
    speed_csv, share_csv = (out / "speed.csv", out / "attention_share.csv") if out else (None, None)

    unet = audioldm2_unet()
    print(f"full-size AudioLDM2 UNet, fp32, batch 2, torch {torch.__version__}, {args.threads} threads", flush=True)
    for seconds in args.seconds:
        todo, share_missing = (configurations, True) if args.force else missing(speed_csv, share_csv, seconds,
                                                                               configurations)
        if not todo and not share_missing:
            print(f"{seconds} s: every configuration is in {speed_csv} (--force to measure again)")
            continue
        if len(todo) < len(configurations):
            print(f"{seconds} s: measuring {', '.join(c.name for c in todo) or 'the attention share only'}; "
                  f"the others are in {speed_csv}")
        repeats = args.long_repeats if seconds > 60 else args.repeats
        speed_rows, share_rows = measure_length(unet, seconds, repeats, todo)
        if speed_rows:
            print(pd.DataFrame(speed_rows)[["seconds", "configuration", "median_s", "speedup", "bound_zero",
                                            "bound_flop", "of_bound_flop"]].to_string(index=False, float_format="%.3f"))
        print(pd.DataFrame(share_rows)[["level", "tokens", "freq_bins", "module_share", "core_share"]]
              .to_string(index=False, float_format="%.3f"), flush=True)
        if out:  # the share first: a length counts as done only when both files have it
            out.mkdir(parents=True, exist_ok=True)
            merge_rows(share_csv, share_rows, ["seconds", "level"])
            if speed_rows:
                merge_rows(speed_csv, speed_rows, ["seconds", "configuration"])


if __name__ == "__main__":
    main()
