"""Cost of a quality evaluation on this machine, in one run: embedding clips of 10.24 s with the offline evaluator
(feature extraction and the small CLAP; timing does not depend on the audio, so the clips are noise), and the metrics
on ``(1000, 512)`` embeddings (FAD and KAD with their bootstrap intervals, and their point values alone).

    python benchmarks/quality.py                  # 1,000 clips, adds a row to data/benchmarks/quality.csv
    python benchmarks/quality.py --clips 16 --csv ''   # a quick smoke run
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis import quality
from analysis.evaluator import OFFLINE_PATH, Evaluator
from litefocus.files import read_csv, write_csv

CSV = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "quality.csv"


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--dims", type=int, default=512, help="embedding size for the metric timings")
    parser.add_argument("--evaluator", type=Path, default=OFFLINE_PATH)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default=str(CSV), help="'' prints only")
    args = parser.parse_args(argv)
    if args.clips < 2 or not args.seconds > 0 or args.dims < 1:
        parser.error("--clips must be at least 2, --seconds positive and --dims at least 1")
    torch.set_num_threads(args.threads)
    evaluator = Evaluator.offline(args.evaluator)
    rng = np.random.default_rng(0)
    rate = evaluator.sampling_rate
    audio = (0.1 * rng.standard_normal((args.clips, int(args.seconds * rate)))).astype(np.float32)
    evaluator.embed(audio[:2], rate)  # warm-up
    embed_s = timed(evaluator.embed, audio, rate)
    a, b = rng.standard_normal((1000, args.dims)), rng.standard_normal((1000, args.dims)) + 0.1
    row = dict(
        date=time.strftime("%Y-%m-%d %H:%M"), machine=platform.processor() or platform.machine(),
        threads=args.threads, clips=args.clips, seconds=args.seconds, embed_s=round(embed_s, 2),
        embed_ms_per_clip=round(1000 * embed_s / args.clips, 1), dims=args.dims,
        fad_s=round(timed(quality.frechet_distance, a, b), 3),
        fad_value_only_s=round(timed(quality.frechet_distance, a, b, resamples=0), 3),
        kad_s=round(timed(quality.kernel_distance, a, b), 3),
        kad_value_only_s=round(timed(quality.kernel_distance, a, b, resamples=0), 3),
        kl_and_clap_s=round(timed(quality.kl_divergence, np.abs(a), np.abs(b)) + timed(quality.clap_score, a, b), 3))
    print(pd.Series(row).to_string())
    if args.csv:
        path = Path(args.csv)
        table = pd.concat([read_csv(path), pd.DataFrame([row])]) if path.is_file() else pd.DataFrame([row])
        write_csv(path, table)


if __name__ == "__main__":
    main()
