"""Attention core at one UNet level: LiteFocus against dense SDPA, side by side in one run.

Default shape: ``down_blocks.1`` of AudioLDM2 for 81.92 s of audio (batch 2 under classifier-free guidance,
8 heads, head dim 32, T 1024, F 8, N 8192, r 0.1). Repeats are interleaved; each ratio is taken against the dense
time of the same repeat, and the median is printed. Rows: dense SDPA; LiteFocus's exact union as the library runs it
(on a CPU one masked SDPA call with static shapes); the same union in one mask-free call with a duplicate channel
(the GPU's default, ``litefocus_merged``), in one call per frequency row (the default until 2026-12, rows before then
are relabelled ``litefocus_by_rows``); the authors' concatenation (``union="concat"``, mask-free, batched); the two ablations; and the softmax written out from the
paper's equations. All sparse rows use the same random keys.

Before the timing, the operations per patched module call (:mod:`analysis.operations`: non-view aten operations of
one tiny AudioLDM2 UNet forward at 10.24 s, minus dense's, over the 20 patched calls; on a GPU each is a kernel
launch) of each form as the library runs it, and of the path before the batched draw (each module drawing its own
keys, the exact union by rows: the options ``draws="per_module", backend="by_rows"``), into ``data/benchmarks/operations.csv``. Peak extra memory is measured for each implementation in a
fresh process whose large allocations glibc maps and unmaps one by one (MALLOC_MMAP_THRESHOLD_ fixed), as the
rise of its peak resident size (VmHWM) over its resident size with the inputs in place (Linux only).

    python benchmarks/kernel.py                       # the issue's shape, adds a run to data/benchmarks/kernel.csv
    python benchmarks/kernel.py --time-steps 64 --repeats 2 --csv '' --operations-csv ''   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fullsize import status_kib, tiny_unet_call  # noqa: E402

from litefocus import cross_key_count, draw_cross_indices  # noqa: E402
from litefocus.kernel import (  # noqa: E402
    exact_attention_by_rows, exact_attention_masked, exact_attention_merged, focus_attention,
)


def explicit_softmax_attention(query, key, value, *, freq_bins, cross_indices):
    """The focus-set attention written out from the paper's equations (1)-(6): explicit logits for the
    same-frequency keys and for the random keys, one softmax over both, a weighted sum. (The union is not
    de-duplicated here, as in a direct reading of eq. 4 as a concatenation; it serves as a speed comparison.)"""
    batch, heads, tokens, dim = query.shape
    steps = tokens // freq_bins
    scale = dim**-0.5
    # (b, h, t*f, d) -> (b, h, f, t, d)
    q, k, v = (x.view(batch, heads, steps, freq_bins, dim).transpose(2, 3) for x in (query, key, value))
    same_logits = torch.einsum("bhftd,bhfsd->bhfts", q, k) * scale  # (b, h, f, t, t)
    k_cross, v_cross = key[:, :, cross_indices], value[:, :, cross_indices]
    cross_logits = torch.einsum("bhftd,bhrd->bhftr", q, k_cross) * scale  # (b, h, f, t, R)
    weights = torch.cat([same_logits, cross_logits], dim=-1).softmax(dim=-1)
    out = torch.einsum("bhfts,bhfsd->bhftd", weights[..., :steps], v) + torch.einsum(
        "bhftr,bhrd->bhftd", weights[..., steps:], v_cross
    )
    return out.transpose(2, 3).reshape(batch, heads, tokens, dim)


def operations_per_call() -> list[dict]:
    """Per form: non-view aten operations per patched module call beyond dense (see the module docstring)."""
    import litefocus
    from analysis.operations import count_operations
    unet, (unet_args, unet_kwargs) = tiny_unet_call(10.24)

    def count() -> int:
        with torch.no_grad(), count_operations() as counted:
            unet(*unet_args, **unet_kwargs)
        return counted.total

    dense = count()
    forms = {"exact": {}, "concat": dict(union="concat"), "same_frequency_only": dict(cross_frequency=False),
             "cross_frequency_only": dict(same_frequency=False)}
    rows = []
    paths = {"batched draw, one-call exact union": {},
             "per-module draw, exact union by rows": dict(draws="per_module", backend="by_rows")}
    for path, before in paths.items():
        for form, kwargs in forms.items():
            if before and form == "concat":  # by_rows is the exact union's form; concat was never by rows
                kwargs = dict(kwargs, backend="auto")
            with litefocus.enabled(unet, ratio=0.1, **{**before, **kwargs}) as names:
                rows.append(dict(path=path, form=form, patched_calls=len(names),
                                 operations_per_call=(count() - dense) / len(names)))
    return rows


def peak_extra_bytes(fn) -> int:
    """Rise of this process's peak RSS over its current RSS while ``fn`` runs (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kib("VmRSS")
    fn()
    return (status_kib("VmHWM") - before) * 1024


def measure_in_fresh_process(name: str, argv: list[str]) -> float:
    """Peak extra MiB of one implementation, from a fresh process; NaN where it cannot be measured."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    done = subprocess.run([sys.executable, __file__, *argv, "--memory-of", name, "--csv", ""],
                          env=env, capture_output=True, text=True)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--time-steps", type=int, default=1024, help="T at this level (1024: 81.92 s at level 1)")
    parser.add_argument("--freq-bins", type=int, default=8)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default="results/benchmarks/kernel.csv",
                        help="'' to skip writing (the committed table: data/benchmarks/kernel.csv, named to add to it)")
    parser.add_argument("--operations-csv", default="results/benchmarks/operations.csv",
                        help="'' to skip writing (the committed table: data/benchmarks/operations.csv)")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: print one implementation's peak MiB
    return parser.parse_args()


def implementations(q, k, v, f: int, cross, r: float) -> tuple[dict, dict]:
    """``({name: call}, {name: FLOP share of dense})`` of every timed form on the same inputs and random keys."""
    calls = {
        "dense_sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "litefocus": lambda: focus_attention(q, k, v, f, cross),
        "litefocus_merged": lambda: exact_attention_merged(q, k, v, f, cross, None),
        "litefocus_by_rows": lambda: exact_attention_by_rows(q, k, v, f, cross, None),
        "litefocus_masked": lambda: exact_attention_masked(q, k, v, f, cross, None),
        "litefocus_concat": lambda: focus_attention(q, k, v, f, cross, union="concat"),
        "same_frequency_only": lambda: focus_attention(q, k, v, f, None),
        "cross_frequency_only": lambda: focus_attention(q, k, v, f, cross, same_frequency=False),
        "explicit_softmax": lambda: explicit_softmax_attention(q, k, v, freq_bins=f, cross_indices=cross),
    }
    flop_share = {"dense_sdpa": 1.0, "litefocus": 1 / f + r, "litefocus_merged": 1 / f + r,
                  "litefocus_by_rows": 1 / f + r - r / f, "litefocus_masked": 1 / f + r,
                  "litefocus_concat": 1 / f + r, "same_frequency_only": 1 / f, "cross_frequency_only": r,
                  "explicit_softmax": 1 / f + r}
    return calls, flop_share


def interleaved_times(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each call per repeat, the calls interleaved within each repeat, after one warm-up call each."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def add_run(path: str, rows: list[dict], time_steps: int) -> None:
    """Append this run's rows to the table at ``path`` (older rows relabelled to today's names) and print the spread
    of each implementation's time against dense over the runs at this shape."""
    import pandas as pd

    from litefocus.files import read_csv, write_csv

    old = read_csv(path) if Path(path).is_file() else pd.DataFrame()
    if "run" not in old:  # rows of the kernel before union= and keyed draws: not comparable, not kept
        old = pd.DataFrame()
    elif len(old):  # the library's default exact union was timed as litefocus: by rows before 2026-12-01, then
        # the merged one-call form in two runs, then (on a CPU) the masked form
        before = (old.implementation == "litefocus") & (old.run < "2026-12-01")
        old.loc[before, "implementation"] = "litefocus_by_rows"
        merged = (old.implementation == "litefocus") & old.run.isin(["2026-12-02T00:19:44", "2026-12-02T00:50:48"])
        old.loc[merged, "implementation"] = "litefocus_merged"
    table = pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
    write_csv(path, table)
    spread = table[table.time_steps == time_steps].groupby("implementation", sort=False).time_vs_dense.agg(
        ["min", "max", "count"])
    print(f"added run {rows[0]['run']} to {path}; time vs dense over its runs at this shape:")
    print(spread.to_string(float_format="%.3f"))


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    b, h, t, f, d, r = args.batch, args.heads, args.time_steps, args.freq_bins, args.head_dim, args.ratio
    n = t * f
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
    cross = draw_cross_indices(n, r, torch.Generator().manual_seed(1))
    calls, flop_share = implementations(q, k, v, f, cross, r)
    if args.memory_of:
        small = [x[:, :, :f] for x in (q, k, v)]  # initialise torch's kernels and thread pool first
        F.scaled_dot_product_attention(*small)
        print(peak_extra_bytes(calls[args.memory_of]) / 2**20)
        return
    operations = operations_per_call()
    print("operations per patched module call beyond dense (tiny AudioLDM2 UNet, 10.24 s, 20 patched calls):")
    for row in operations:
        print(f"  {row['path']:<40}{row['form']:<22}{row['operations_per_call']:>8.1f}")
    if args.operations_csv:
        from litefocus.files import write_csv

        write_csv(args.operations_csv, [dict(row, torch=torch.__version__) for row in operations])
    times = interleaved_times(calls, args.repeats)
    shape_argv = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items()
                  if key in ("batch", "heads", "head_dim", "time_steps", "freq_bins", "ratio", "threads")]
    memory = {name: measure_in_fresh_process(name, shape_argv) for name in calls}

    count = cross_key_count(n, r)
    print(f"shape: batch {b}, heads {h}, head dim {d}, T {t}, F {f}, N {n}, r {r} (R = {count} random keys); "
          f"torch {torch.__version__}, {args.threads} threads, {args.repeats} interleaved repeats")
    print(f"score-matrix bytes if materialized, fp32: dense N*N {4 * b * h * n * n / 2**20:.0f} MiB, "
          f"focus sets N*(T+R) {4 * b * h * n * (t + count) / 2**20:.0f} MiB")
    run = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{'implementation':<22}{'median s':>10}{'vs dense':>10}{'FLOP bound':>12}{'peak extra MiB':>16}")
    rows = []
    for name, samples in times.items():
        ratio = statistics.median(s / dense for s, dense in zip(samples, times["dense_sdpa"]))
        mib = memory[name]
        print(f"{name:<22}{statistics.median(samples):>10.4f}{ratio:>10.3f}{flop_share[name]:>12.3f}{mib:>16.1f}")
        rows.append(dict(run=run, implementation=name, batch=b, heads=h, head_dim=d, time_steps=t, freq_bins=f, tokens=n,
                         ratio=r, median_s=statistics.median(samples), time_vs_dense=ratio,
                         flop_share=flop_share[name], peak_extra_mib=mib, repeats=args.repeats,
                         threads=args.threads, torch=torch.__version__, machine=platform.machine(),
                         processor=platform.processor() or platform.machine()))
    if args.csv:
        add_run(args.csv, rows, t)


if __name__ == "__main__":
    main()
