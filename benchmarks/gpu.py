"""The device check: what LiteFocus costs on a GPU, in one command (well under 8 minutes on one GPU).

    python benchmarks/gpu.py              # on a CUDA machine: one table printed, data/benchmarks/gpu.csv written
    python benchmarks/gpu.py --dry-run    # the same code on this CPU, tiny shapes, nothing written (the suite runs it)

Needs torch with CUDA and the checkout; nothing is downloaded (the full-size UNet has random weights: timing does not
depend on them). Sections, one row per measurement:

- ``backend``: the SDPA backend each SDPA call of each form gets in bf16 at the 81.92 s level-1 shape
  (``torch._fused_sdp_choice``), and the call's operations (non-view aten ops), kernel launches and host
  synchronisations (profiler events, CUDA only).
- forms: dense SDPA, the exact union's forms (the device default, merged, masked, by rows, FlexAttention compiled
  with a block mask, flash varlen), concat and the two ablations.
- ``exactness``: each form against the float64 reference (``litefocus.reference_attention``) in float16, bfloat16
  and float32 at the 10.24 s shape: largest absolute error and relative L2 error (dense SDPA beside it, against the
  float64 dense).
- ``core``: median CUDA-event time (min, max) of dense SDPA and every form at the 10.24 / 40.96 / 81.92 s level-1
  shapes (batch 2, 8 heads, head dim 32, F 8, r 0.1) in bf16, eager and replayed from a captured CUDA graph; the
  ratio to dense in the same mode; peak memory above the inputs; dense's TFLOP/s.
- ``unet``: one full-size AudioLDM2 UNet step (batch 2) at 81.92 s in bf16, dense against LiteFocus on the paper's
  blocks (eager; median of interleaved rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
FORMS = ("dense", "exact", "exact_merged", "exact_masked", "exact_by_rows", "exact_flex", "exact_varlen", "concat",
         "same_frequency_only", "cross_frequency_only")
# exact: the device's default form (merged on CUDA, masked on a CPU); exact_flex: backend="flex", compiled on CUDA
# (FlexAttention's fused kernel; eager it materializes the scores); exact_varlen: backend="varlen" (CUDA only)
LEVEL_1 = dict(batch=2, heads=8, head_dim=32, freq_bins=8, ratio=0.1)


def load(package: str, module: str):
    """``package.module``; where the package's other dependencies are missing (diffusers, xarray), the file itself
    (``litefocus/kernel.py`` and ``analysis/operations.py`` need torch alone)."""
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError:
        spec = importlib.util.spec_from_file_location(f"{package}_{module}", ROOT / package / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded


K = load("litefocus", "kernel")


def time_bins(seconds: float) -> int:
    """Level-1 latent frames for ``seconds`` of audio: 100 mel frames a second, / 4 (VAE), / 2 (one downsampling)."""
    return int(round(seconds * 100)) // 8


def inputs(seconds: float, dtype: torch.dtype, device: str, time_steps: int | None = None, seed: int = 0):
    """``(q, k, v, cross)`` at the level-1 shape of ``seconds``; the same random keys for every form."""
    t, f = time_steps or time_bins(seconds), LEVEL_1["freq_bins"]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(LEVEL_1["batch"], LEVEL_1["heads"], t * f, LEVEL_1["head_dim"], generator=g)
               .to(device, dtype) for _ in range(3))
    cross = K.draw_cross_indices(t * f, LEVEL_1["ratio"], torch.Generator().manual_seed(seed + 1)).to(device)
    return q, k, v, cross


_COMPILED_FLEX = []


def flex_form():
    """``flex_focus_attention``, compiled once on CUDA (each new shape compiles once more), eager elsewhere."""
    if not _COMPILED_FLEX:
        _COMPILED_FLEX.append(torch.compile(K.flex_focus_attention, dynamic=False)
                              if torch.cuda.is_available() else K.flex_focus_attention)
    return _COMPILED_FLEX[0]


def unavailable(form: str, device: str, dtype: torch.dtype) -> str | None:
    """Why a form is not run here, or None: varlen needs CUDA; compiled flex is checked in bfloat16 only (each
    shape and dtype compiles anew, and the command must stay within its minutes)."""
    if form == "exact_varlen" and device != "cuda":
        return "needs CUDA (flash varlen kernel)"
    if form == "exact_flex" and device == "cuda" and dtype != torch.bfloat16:
        return "compiled flex: bfloat16 only here (compile time)"
    return None


def form_call(form: str, q, k, v, cross):
    """A zero-argument call of one form on fixed inputs."""
    f = LEVEL_1["freq_bins"]
    return {
        "dense": lambda: F.scaled_dot_product_attention(q, k, v),
        "exact": lambda: K.focus_attention(q, k, v, f, cross),
        "exact_merged": lambda: K.exact_attention_merged(q, k, v, f, cross, None),
        "exact_by_rows": lambda: K.exact_attention_by_rows(q, k, v, f, cross, None),
        "exact_masked": lambda: K.exact_attention_masked(q, k, v, f, cross, None),
        "exact_flex": lambda: flex_form()(q, k, v, f, cross, None),
        "exact_varlen": lambda: K.varlen_exact_attention(q, k, v, f, cross, None),
        "concat": lambda: K.focus_attention(q, k, v, f, cross, union="concat"),
        "same_frequency_only": lambda: K.focus_attention(q, k, v, f, None),
        "cross_frequency_only": lambda: K.focus_attention(q, k, v, f, cross, same_frequency=False),
    }[form]


def reference(form: str, q, k, v, cross):
    """The float64 reference of one form."""
    q, k, v = (x.double() for x in (q, k, v))
    if form == "dense":
        return F.scaled_dot_product_attention(q, k, v)
    f = LEVEL_1["freq_bins"]
    if form == "same_frequency_only":
        return K.reference_attention(q, k, v, freq_bins=f, cross_frequency=False)  # exact_flex, _varlen: exact
    return K.reference_attention(q, k, v, freq_bins=f, cross_indices=cross,
                                 same_frequency=form != "cross_frequency_only",
                                 union="concat" if form == "concat" else "exact")


def sdpa_backends(call) -> list[str]:
    """The backend each SDPA call inside ``call`` is dispatched to."""
    from torch.nn.attention import SDPBackend

    chosen, original = [], F.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        choice = torch._fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)
        chosen.append(SDPBackend(choice).name)
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, **kwargs)

    F.scaled_dot_product_attention = recording
    try:
        call()
    finally:
        F.scaled_dot_product_attention = original
    return chosen


def operations(call) -> int:
    """Non-view aten operations of one call (:mod:`analysis.operations`)."""
    with load("analysis", "operations").count_operations() as counted:
        call()
    return counted.total


def launches_and_syncs(call) -> tuple[int, int]:
    """CUDA kernel launches and host synchronisations (events of the CUDA runtime and driver) of one call."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    launches = sum(("LaunchKernel" in n) for n in names)
    syncs = sum(("Synchronize" in n) or n in ("cudaMemcpy", "cuMemcpyDtoH_v2") for n in names) - 1  # ours above
    return launches, max(syncs, 0)


def timed(call, device: str, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls: CUDA events on a GPU, the wall clock elsewhere."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return times


def captured(call):
    """``call`` captured into a CUDA graph, as a replay; None where it cannot be captured (a host sync inside)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            call()
    except RuntimeError:
        return None
    return graph.replay


def peak_mib(call, device: str) -> float:
    if device != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def backend_rows(device: str, dtype: torch.dtype, time_steps: int | None) -> list[dict]:
    q, k, v, cross = inputs(81.92, dtype, device, time_steps)
    rows = []
    for form in FORMS:
        if unavailable(form, device, dtype):
            rows.append(dict(section="backend", form=form, seconds=81.92, dtype=str(dtype).removeprefix("torch."),
                             note=unavailable(form, device, dtype)))
            continue
        call = form_call(form, q, k, v, cross)
        backends = sdpa_backends(call)
        launches, syncs = launches_and_syncs(call) if device == "cuda" else (float("nan"), float("nan"))
        rows.append(dict(section="backend", form=form, seconds=81.92, dtype=str(dtype).removeprefix("torch."),
                         backend="+".join(sorted(set(backends))), sdpa_calls=len(backends),
                         # FlexAttention is a higher-order operator, which a counting dispatch mode cannot enter
                         operations=float("nan") if form == "exact_flex" else operations(call), launches=launches,
                         syncs=syncs))
    return rows


def exactness_rows(device: str, dtypes, time_steps: int | None) -> list[dict]:
    rows = []
    for dtype in dtypes:
        q, k, v, cross = inputs(10.24, dtype, device, time_steps)
        for form in FORMS:
            if unavailable(form, device, dtype):
                rows.append(dict(section="exactness", form=form, seconds=10.24, dtype=str(dtype).removeprefix("torch."),
                                 note=unavailable(form, device, dtype)))
                continue
            out = form_call(form, q, k, v, cross)().double()
            ref = reference(form, q, k, v, cross)
            rows.append(dict(section="exactness", form=form, seconds=10.24, dtype=str(dtype).removeprefix("torch."),
                             max_abs_error=float((out - ref).abs().max()),
                             relative_error=float((out - ref).norm() / ref.norm())))
    return rows


def core_rows(device: str, dtype: torch.dtype, lengths, repeats: int, time_steps: int | None) -> list[dict]:
    rows = []
    for seconds in lengths:
        q, k, v, cross = inputs(seconds, dtype, device, time_steps)
        n = q.shape[2]
        modes = ("eager", "graph") if device == "cuda" else ("eager",)
        dense_median = {}
        for mode in modes:
            for form in FORMS:
                row = dict(section="core", form=form, seconds=seconds, dtype=str(dtype).removeprefix("torch."),
                           mode=mode, tokens=n)
                if unavailable(form, device, dtype):
                    rows.append(dict(row, note=unavailable(form, device, dtype)))
                    continue
                call = form_call(form, q, k, v, cross)
                run = call if mode == "eager" else captured(call)
                if run is None:
                    rows.append(dict(row, note="not capturable (a host synchronisation inside)"))
                    continue
                samples = timed(run, device, repeats)
                median = statistics.median(samples)
                if form == "dense":
                    dense_median[mode] = median
                row.update(ms=1000 * median, ms_min=1000 * min(samples), ms_max=1000 * max(samples),
                           vs_dense=median / dense_median[mode], peak_mib=peak_mib(call, device))
                if form == "dense":
                    flops = 4 * LEVEL_1["batch"] * LEVEL_1["heads"] * n * n * LEVEL_1["head_dim"]
                    row["tflops"] = flops / median / 1e12
                rows.append(row)
    return rows


def unet_rows(device: str, dtype: torch.dtype, seconds: float, rounds: int, tiny: bool) -> list[dict]:
    """One UNet step, dense against LiteFocus on the paper's blocks, interleaved rounds."""
    try:
        import litefocus
        from fullsize import tiny_unet_call, unet_inputs
        from litefocus.models import audioldm2_unet
    except ImportError as error:
        return [dict(section="unet", form="dense", note=f"skipped: {error}")]
    if tiny:  # the dry run: the tiny pipeline's UNet on the inputs of one of its own steps
        unet, (args, kwargs) = tiny_unet_call(seconds)
    else:
        unet = audioldm2_unet().to(device, dtype).eval()
        args, kwargs = unet_inputs(seconds, dtype=dtype, device=device)

    def step():
        with torch.no_grad():
            unet(*args, **kwargs)

    times = {"dense": [], "litefocus": []}
    for _ in range(rounds):
        times["dense"] += timed(step, device, 1)
        with litefocus.enabled(unet, ratio=0.1):
            times["litefocus"] += timed(step, device, 1)
    dense = statistics.median(times["dense"])
    return [dict(section="unet", form=form, seconds=seconds, dtype=str(dtype).removeprefix("torch."), mode="eager",
                 ms=1000 * statistics.median(s), ms_min=1000 * min(s), ms_max=1000 * max(s),
                 vs_dense=statistics.median(s) / dense, speedup=dense / statistics.median(s))
            for form, s in times.items()]


def print_table(rows: list[dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
        for section, part in table.groupby("section", sort=False):
            print(f"\n== {section}")
            shown = part.dropna(axis=1, how="all").drop(columns=["section", "device", "torch", "run"], errors="ignore")
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny shapes, nothing written")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--csv", default=str(ROOT / "data" / "benchmarks" / "gpu.csv"), help="'' to skip writing")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.dry_run:
        device, time_steps, repeats, dtypes, lengths = "cpu", 16, 2, (torch.float32,), (10.24,)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks/gpu.py needs a CUDA device (torch.cuda.is_available() is False); "
                             "--dry-run runs it on the CPU")
        device, time_steps, repeats = "cuda", None, args.repeats
        dtypes, lengths = (torch.float16, torch.bfloat16, torch.float32), (10.24, 40.96, 81.92)
    low = torch.bfloat16 if device == "cuda" else torch.float32
    rows = backend_rows(device, low, time_steps)
    rows += exactness_rows(device, dtypes, time_steps)
    rows += core_rows(device, low, lengths, repeats, time_steps)
    rows += unet_rows(device, low, 81.92 if device == "cuda" else 2.56, rounds=5 if device == "cuda" else 1,
                      tiny=args.dry_run)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    for row in rows:
        row.update(device=name, torch=torch.__version__, run=time.strftime("%Y-%m-%dT%H:%M:%S"))
    print_table(rows)
    print(f"\n{name}, torch {torch.__version__}; {time.perf_counter() - started:.0f} s")
    if args.csv and not args.dry_run:
        import pandas as pd

        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
