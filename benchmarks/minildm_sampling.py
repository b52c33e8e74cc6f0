"""Sampling time of the shipped MiniLDMs, side by side: 10.24 s of audio with 50 DDIM steps (issue 28's budget: at
most 15 s on the 2-core CPU machine), MiniLDM 2 and MiniLDM 3 in interleaved rounds (the order alternates each
round) after one warm-up generation each, so that both see the same machine. Rows per model: median, min and max
seconds over the rounds, and the median of MiniLDM 3 / MiniLDM 2 over rounds.

    python benchmarks/minildm_sampling.py --csv data/benchmarks/minildm_sampling.csv    # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullsize import machine  # noqa: E402

from litefocus.files import read_csv, write_csv  # noqa: E402
from minildm import MINILDM2_PATH, MINILDM3_PATH, load_minildm  # noqa: E402

PROMPT = "a string quartet playing a chorale slowly"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default="results/benchmarks/minildm_sampling.csv",
                        help="table the run's rows are added to ('' to write nothing)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.seconds <= 0:
        parser.error("--rounds and --steps must be at least 1, --seconds positive")
    torch.set_num_threads(args.threads)
    pipes = {"MiniLDM 2": load_minildm(MINILDM2_PATH), "MiniLDM 3": load_minildm(MINILDM3_PATH)}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)

    def generate(pipe, seed: int) -> float:
        start = time.perf_counter()
        pipe(PROMPT, audio_length_in_s=args.seconds, num_inference_steps=args.steps,
             generator=torch.Generator().manual_seed(seed))
        return time.perf_counter() - start

    for pipe in pipes.values():
        generate(pipe, 0)
    times = {name: [] for name in pipes}
    for round_ in range(args.rounds):
        for name in (list(pipes) if round_ % 2 == 0 else list(pipes)[::-1]):
            times[name].append(generate(pipes[name], round_))
    ratio = statistics.median(b / a for a, b in zip(times["MiniLDM 2"], times["MiniLDM 3"]))
    run = datetime.now().isoformat(timespec="seconds")
    rows = [dict(run=run, model=name, audio_seconds=args.seconds, steps=args.steps, rounds=args.rounds,
                 median_s=round(statistics.median(t), 2), min_s=round(min(t), 2), max_s=round(max(t), 2),
                 minildm3_over_minildm2=round(ratio, 3), **machine()) for name, t in times.items()]
    for row in rows:
        print(f"{row['model']}: median {row['median_s']} s (min {row['min_s']}, max {row['max_s']}) for "
              f"{args.seconds:g} s with {args.steps} steps")
    print(f"MiniLDM 3 / MiniLDM 2, median over rounds: {ratio:.3f}")
    if args.csv:  # a run adds its rows to the table's earlier runs
        old = read_csv(args.csv) if Path(args.csv).is_file() else pd.DataFrame()
        write_csv(args.csv, pd.concat([old, pd.DataFrame(rows)], ignore_index=True))
        print("wrote", args.csv)


if __name__ == "__main__":
    main()
