"""The baseline a user would pick instead, and LiteFocus stacked on it: a speed-up only counts against that baseline.

diffusers' "AudioLDM 2, but faster" guide recommends half precision, SDPA, ``torch.compile`` and DPM-Solver++ at
about 20 to 25 steps (against the paper's DDIM at 200). This script times one full-size AudioLDM2 UNet step (random
weights: timing does not depend on them; batch 2, one step under classifier-free guidance) for dense SDPA and for
LiteFocus on the paper's blocks, eager and compiled, in interleaved rounds (the order rotates each round), and one
scheduler step of DDIM and of DPM-Solver++ on the same latent. A generation's denoising then costs ``steps x (UNet
step + scheduler step)``; the text encoders, the VAE and the vocoder cost the same under every configuration and
are left out. Rows per (attention, mode, sampler):

- ``generation_s``: the denoising seconds of one generation, from medians;
- ``vs_paper_baseline``: dense, eager, DDIM 200 steps over this row (what the paper's speed-ups are against);
- ``vs_user_baseline``: the fastest dense row with DPM-Solver++ 25 steps (eager or compiled) over this row: what
  LiteFocus buys a user who already took the guide's advice;
- ``litefocus_vs_dense``: in LiteFocus rows, the median over rounds of dense / LiteFocus UNet step in the same mode
  (min and max beside it).

Half precision runs where the device has it (``--dtype``; on this CPU float32: its fp16/bf16 matmuls are emulated,
and ``benchmarks/gpu.py`` measures bf16 on a GPU). DPM-Solver++ at 25 steps changes quality as well as speed:
``data/paper_tables`` has its measured quality on the embedded model (the fast-solver sweep).

    python benchmarks/baselines.py                      # 10.24 s, writes data/benchmarks/baselines.csv
    python benchmarks/baselines.py --seconds 1.28 --repeats 1 --no-compile --csv ''   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullsize import machine, unet_inputs  # noqa: E402

import litefocus  # noqa: E402
from litefocus.models import audioldm2_unet  # noqa: E402

SAMPLERS = (("ddim", 200), ("dpmsolver++", 25))  # the paper's, and the guide's


def timed(call) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def scheduler_step_s(name: str, sample: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of one ``scheduler.step`` on ``sample`` (AudioLDM2's scheduler settings)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    config = dict(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000)
    scheduler = (DDIMScheduler(**config) if name == "ddim" else
                 DPMSolverMultistepScheduler(**config, algorithm_type="dpmsolver++"))
    scheduler.set_timesteps(dict(SAMPLERS)[name])
    noise = torch.randn_like(sample)
    times = []
    for t in scheduler.timesteps[:repeats]:
        times.append(timed(lambda t=t: scheduler.step(noise, t, sample)))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--csv", default="results/benchmarks/baselines.csv",
                        help="'' to skip writing (the committed table: data/benchmarks/baselines.csv, named to replace it)")
    args = parser.parse_args(argv)
    if args.seconds < 0.32 or args.repeats < 1:
        parser.error("--seconds must be at least 0.32 and --repeats at least 1")
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    unet = audioldm2_unet().to(device, dtype).eval()
    (sample, _), kwargs = unet_inputs(args.seconds, dtype=dtype, device=device)
    timestep = torch.tensor(500, device=device)
    step = lambda model: model(sample, timestep, **kwargs, return_dict=False)
    modes = ("eager",) if args.no_compile else ("eager", "compiled")
    variants = {}
    for attention in ("dense", "litefocus"):  # each variant its own module copy: compiled graphs keep their processors
        model = audioldm2_unet().to(device, dtype).eval() if attention == "litefocus" else unet
        if attention == "litefocus":
            model.load_state_dict(unet.state_dict())
            litefocus.apply(model, ratio=0.1, seed=0)
        for mode in modes:
            run = torch.compile(model) if mode == "compiled" else model
            start = time.perf_counter()
            with torch.no_grad():
                step(run)  # warm-up; for a compiled variant, the compilation
            print(f"{attention} {mode}: first call {time.perf_counter() - start:.1f} s", flush=True)
            variants[(attention, mode)] = run
    samples = {key: [] for key in variants}
    keys = list(variants)
    for r in range(args.repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            samples[key].append(timed(lambda key=key: step(variants[key])))
            print(f"round {r + 1}/{args.repeats} {key[0]:9s} {key[1]:8s} {samples[key][-1]:.2f} s", flush=True)
    scheduler_s = {name: scheduler_step_s(name, sample) for name, _ in SAMPLERS}
    median = {key: statistics.median(s) for key, s in samples.items()}
    rows = []
    for (attention, mode), unet_s in median.items():
        ratios = [d / s for d, s in zip(samples[("dense", mode)], samples[(attention, mode)])]
        for sampler, steps in SAMPLERS:
            rows.append(dict(seconds=args.seconds, attention=attention, mode=mode, sampler=sampler, steps=steps,
                             dtype=args.dtype, unet_step_s=unet_s, scheduler_step_s=scheduler_s[sampler],
                             generation_s=steps * (unet_s + scheduler_s[sampler]),
                             litefocus_vs_dense=statistics.median(ratios), litefocus_vs_dense_min=min(ratios),
                             litefocus_vs_dense_max=max(ratios), repeats=args.repeats, **machine()))
    paper = next(r["generation_s"] for r in rows if (r["attention"], r["mode"], r["sampler"]) == ("dense", "eager",
                                                                                                   "ddim"))
    user = min(r["generation_s"] for r in rows if r["attention"] == "dense" and r["sampler"] == "dpmsolver++")
    for row in rows:
        row.update(vs_paper_baseline=paper / row["generation_s"], vs_user_baseline=user / row["generation_s"])
    import pandas as pd

    table = pd.DataFrame(rows)
    print(table[["attention", "mode", "sampler", "steps", "unet_step_s", "generation_s", "vs_paper_baseline",
                 "vs_user_baseline", "litefocus_vs_dense"]].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.csv:
        from litefocus.files import write_csv

        write_csv(args.csv, table)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
