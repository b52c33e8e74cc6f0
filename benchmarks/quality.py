"""Cost of a quality evaluation on this machine, in one run: embedding clips of 10.24 s with the offline evaluator
(feature extraction and the small CLAP; timing does not depend on the audio, so the clips are noise), and the metrics
on ``(1000, 512)`` embeddings (FAD and KAD with their bootstrap intervals, and their point values alone; FAD's
bootstrap also as it was computed before, gathered float64 copies, in the same run), and audioldm_eval's forms: FAD
on 1,000 clips of ten 128-d VGGish frames, FD on 100 clips of 2048-d CNN14 embeddings, the two KLs on 1,000 x 527
logits.

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

CSV = Path("results/benchmarks/quality.csv")  # the committed table: data/benchmarks/quality.csv, named with --csv


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def gathered_fad(a: np.ndarray, b: np.ndarray, resamples: int = 100, seed: int = 0) -> list[float]:
    """FAD's bootstrap as it was computed before: each draw gathered into copies, float64 covariances."""
    rng = np.random.default_rng(seed)
    return [quality._frechet(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))], 0.0)
            for _ in range(resamples)]


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
    frames_a = list(rng.standard_normal((1000, 10, 128)))  # VGGish: 10 frames of 128 a 10 s clip
    frames_b = list(rng.standard_normal((1000, 10, 128)) + 0.1)
    wide_a, wide_b = rng.standard_normal((100, 2048)), rng.standard_normal((100, 2048)) + 0.1  # CNN14 FD, few clips
    logits_a, logits_b = rng.normal(-4, 2, (1000, 527)), rng.normal(-4, 2, (1000, 527))
    row = dict(
        date=time.strftime("%Y-%m-%d %H:%M"), machine=platform.processor() or platform.machine(),
        threads=args.threads, clips=args.clips, seconds=args.seconds, embed_s=round(embed_s, 2),
        embed_ms_per_clip=round(1000 * embed_s / args.clips, 1), dims=args.dims,
        fad_s=round(timed(quality.frechet_distance, a, b), 3),
        fad_gathered_float64_s=round(timed(gathered_fad, a, b), 3),
        fad_vggish_frames_s=round(timed(quality.frechet_audio_distance, frames_a, frames_b), 3),
        fd_2048_dims_100_clips_s=round(timed(quality.frechet_distance, wide_a, wide_b, full_rank=False), 3),
        kl_softmax_and_sigmoid_s=round(timed(quality.kl_softmax, logits_a, logits_b)
                                       + timed(quality.kl_sigmoid, logits_a, logits_b), 3),
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
