"""Cost of recording attention: one full-size AudioLDM2 UNet forward, plain vs under ``analysis.record_attention``.

The full-size cvssp/audioldm2 UNet with random weights (timing does not depend on weights), fp32, batch 2 as under
classifier-free guidance, text conditioning of 8 GPT-2 tokens (768) and 32 T5 tokens (1024). Recorded: every
self-attention module of levels 1 and 2 (down_blocks.1/2, up_blocks.1/2), 16 kept query rows per module, summaries
from up to 2048 sampled queries. Plain forwards run before and after the recorded one; the ratio is to their mean.
Peak memory is the rise of peak RSS (VmHWM, reset before each call) over the RSS before it, with glibc mapping large
allocations one by one (MALLOC_MMAP_THRESHOLD_ fixed) so that freed memory is not counted as in use.

    python benchmarks/measure_sparsity.py                # 81.92 s, the issue's setting (about 4 minutes here)
    python benchmarks/measure_sparsity.py --seconds 10.24 --csv ''   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullsize import machine, status_kib, unet_inputs  # noqa: E402

LEVELS_1_2 = ["down_blocks.1", "down_blocks.2", "up_blocks.1", "up_blocks.2"]


def timed_peak(fn) -> tuple[float, float]:
    """(seconds, peak extra MiB) of one call."""
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, (status_kib("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=81.92)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default="results/benchmarks/measure_sparsity.csv",
                        help="'' to skip writing (the committed table: data/benchmarks/measure_sparsity.csv, named to replace it)")
    args = parser.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # re-run with glibc returning freed blocks at once
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
    torch.set_num_threads(args.threads)

    import analysis
    from litefocus.models import audioldm2_unet

    unet = audioldm2_unet()
    args_, kwargs = unet_inputs(args.seconds)
    latent_time = args_[0].shape[2]

    @torch.no_grad()
    def forward():
        unet(*args_, **kwargs)

    def recorded():
        with analysis.record_attention(unet, LEVELS_1_2, queries=16, summary_queries=2048) as rec:
            forward()
        return rec

    forward()  # warm-up
    plain_before = timed_peak(forward)
    holder = {}
    record = timed_peak(lambda: holder.setdefault("rec", recorded()))
    plain_after = timed_peak(forward)
    rec = holder["rec"]
    ds = analysis.sparsity_dataset(rec)
    plain_s = (plain_before[0] + plain_after[0]) / 2
    plain_mib = max(plain_before[1], plain_after[1])
    print(f"full-size AudioLDM2 UNet, {args.seconds} s (latent T {latent_time}), batch 2, fp32, "
          f"torch {torch.__version__}, {args.threads} threads")
    print(f"recorded {len(rec.recorded)} modules, grids {sorted(set(rec._grids.values()))}, "
          f"summaries from {sorted(set(int(rec.dataset(m).attrs['summary_queries']) for m in rec.recorded))} queries")
    print(f"plain forward {plain_before[0]:.1f} s / {plain_after[0]:.1f} s, peak extra {plain_mib:.0f} MiB")
    print(f"recorded forward {record[0]:.1f} s ({record[0] / plain_s:.2f}x plain), peak extra {record[1]:.0f} MiB "
          f"({record[1] - plain_mib:+.0f} MiB over plain)")
    print(f"same-frequency ratio (random weights, expect about 1): {float(ds.same_frequency_ratio.mean()):.3f}")
    if args.csv:
        import pandas as pd

        from litefocus.files import write_csv

        row = dict(seconds=args.seconds, latent_time=latent_time, modules=len(rec.recorded),
                   plain_s=plain_s, recorded_s=record[0], time_ratio=record[0] / plain_s,
                   plain_peak_extra_mib=plain_mib, recorded_peak_extra_mib=record[1],
                   memory_over_plain_mib=record[1] - plain_mib, **machine())
        write_csv(args.csv, [row])
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
