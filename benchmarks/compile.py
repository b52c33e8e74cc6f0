"""``torch.compile`` with LiteFocus applied: one full-size AudioLDM2 UNet forward, compiled against eager.

LiteFocus draws its random keys from ``(seed, module name, timestep)`` with integer tensor arithmetic, so
``torch.compile(unet)`` traces it without graph breaks (a ``torch.Generator`` draw broke the graph 30 times). For
dense attention and for LiteFocus on the paper's blocks, this script counts graph breaks (``torch._dynamo.explain``),
compiles (inductor), checks the compiled output against eager, then times eager and compiled forwards in interleaved
rounds: median ratios per round, min and max. The timestep is a tensor, as pipelines pass it (a Python int would be
a constant of the graph, and every new timestep would recompile). Under compile the exact union runs in its masked
batched form (static shapes; ``benchmarks/kernel.py`` times both forms).

    python benchmarks/compile.py                      # 10.24 s, writes data/benchmarks/compile.csv
    python benchmarks/compile.py --seconds 1.28 --repeats 1 --csv ''   # a smoke run
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


def forward(unet, args, kwargs) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        out = unet(*args, **kwargs, return_dict=False)[0]
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default="results/benchmarks/compile.csv",
                        help="'' to skip writing (the committed table: data/benchmarks/compile.csv, named to replace it)")
    args = parser.parse_args(argv)
    if args.seconds < 0.32 or args.repeats < 1:
        parser.error("--seconds must be at least 0.32 and --repeats at least 1")
    torch.set_num_threads(args.threads)
    unet = audioldm2_unet()
    (sample, _), kwargs = unet_inputs(args.seconds)
    inputs = (sample, torch.tensor(500)), kwargs
    rows = []
    for name in ("dense", "litefocus"):
        torch._dynamo.reset()
        names = litefocus.apply(unet, ratio=0.1, seed=0) if name == "litefocus" else []
        with torch.no_grad():
            explained = torch._dynamo.explain(unet)(*inputs[0], **inputs[1])
        torch._dynamo.reset()
        compiled = torch.compile(unet)
        eager_out, _ = forward(unet, *inputs)
        start = time.perf_counter()
        compiled_out, _ = forward(compiled, *inputs)
        compile_s = time.perf_counter() - start
        eager_s, compiled_s = [], []
        for _ in range(args.repeats):
            eager_s.append(forward(unet, *inputs)[1])
            compiled_s.append(forward(compiled, *inputs)[1])
        ratios = [c / e for c, e in zip(compiled_s, eager_s)]
        rows.append(dict(
            seconds=args.seconds, configuration=name, modules=len(names),
            graph_breaks=explained.graph_break_count, graphs=explained.graph_count, compile_s=compile_s,
            max_abs_difference=float((compiled_out - eager_out).abs().max()),
            eager_s=statistics.median(eager_s), compiled_s=statistics.median(compiled_s),
            compiled_vs_eager=statistics.median(ratios), compiled_vs_eager_min=min(ratios),
            compiled_vs_eager_max=max(ratios), repeats=args.repeats, **machine()))
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
        litefocus.remove(unet)
    dense, sparse = rows
    print(f"LiteFocus speed-up over dense: eager {dense['eager_s'] / sparse['eager_s']:.3f}x, "
          f"compiled {dense['compiled_s'] / sparse['compiled_s']:.3f}x")
    if args.csv:
        import pandas as pd

        from litefocus.files import write_csv

        write_csv(args.csv, rows)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
