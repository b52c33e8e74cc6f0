"""The device check: what LiteFocus costs on a GPU, in one command (well under 8 minutes on one GPU).

    python benchmarks/gpu.py --csv OUT.csv            # on a CUDA machine (benchmarks/gpu_run.sh runs it there)
    python benchmarks/gpu.py --quick --csv OUT.csv    # the same at reduced sizes (10.24 and 40.96 s), a first stage
    python benchmarks/gpu.py --dry-run --csv OUT.csv  # the same code on this CPU, tiny shapes (the suite runs it)

Needs torch with CUDA and the checkout; nothing is downloaded (the full-size UNet has random weights: timing does not
depend on them). Every row names the card, torch, CUDA and cuDNN. Sections, one row per measurement:

- ``backend``: the SDPA backend each SDPA call of each form gets in bf16 at the 81.92 s level-1 shape
  (``torch._fused_sdp_choice``), the call's operations (non-view aten ops), kernel launches (runtime API calls),
  kernels run on the device and host synchronisations (profiler events, CUDA only).
- forms: dense SDPA, the exact union's forms (the library's default, merged, masked, FlexAttention with a block
  mask, flash varlen, by rows), concat and the two ablations.
- ``exactness``: each form against the float64 reference (``litefocus.reference_attention``) in float16, bfloat16
  and float32 at the 10.24 s shape: largest absolute error and relative L2 error.
- ``core``: median CUDA-event time (min, max) of dense SDPA and every form at the level-1 shapes of 10.24 / 40.96 /
  81.92 s (batch 2, 8 heads, head dim 32, F 8, r 0.1; q, k, v in the ``(b, N, h, d)`` layout a processor passes) in
  bf16, replayed from a captured CUDA graph (the kernel figures: no host in the loop) and eager; the ratio to dense in
  the same mode; peak memory above the inputs; dense's TFLOP/s. ``exact_by_rows`` syncs, so its capture fails: it is
  captured last, and the stream is checked after it.
- ``unet``: one full-size AudioLDM2 UNet step (batch 2) at 81.92 s in bf16, dense against LiteFocus on the paper's
  blocks, eager and graph-replayed (median of interleaved rounds), with peak memory.

Nothing is lost to one failure: each form and each section that raises becomes a row naming the exception, and the
CSV is rewritten (atomically) after every section.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
FORMS = ("dense", "exact", "exact_merged", "exact_masked", "exact_flex", "exact_varlen", "concat",
         "same_frequency_only", "cross_frequency_only", "exact_by_rows")
# exact: the library's default (backend="auto": varlen on CUDA where it runs, masked on a CPU); exact_flex:
# backend="flex" (compiled once on CUDA); exact_varlen: backend="varlen"; exact_by_rows last: it syncs the host
LEVEL_1 = dict(batch=2, heads=8, head_dim=32, freq_bins=8, ratio=0.1)
FAILING: set[str] = set()  # --fail-form: forms made to raise, to check that the table survives them


def load(package: str, module: str):
    """``package.module``; where the package's ``__init__`` cannot be imported (diffusers missing), the module with its
    package's other modules but without its ``__init__`` (``litefocus.kernel`` and ``analysis.operations`` need torch
    alone)."""
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError:
        stub = types.ModuleType(package)
        stub.__path__ = [str(ROOT / package)]
        sys.modules[package] = stub
        return importlib.import_module(f"{package}.{module}")


K = load("litefocus", "kernel")
B = load("litefocus", "backends")


def time_bins(seconds: float) -> int:
    """Level-1 latent frames for ``seconds`` of audio: 100 mel frames a second, / 4 (VAE), / 2 (one downsampling)."""
    return int(round(seconds * 100)) // 8


def inputs(seconds: float, dtype: torch.dtype, device: str, time_steps: int | None = None, seed: int = 0):
    """``(q, k, v, cross)`` at the level-1 shape of ``seconds``, q, k and v ``(b, h, N, d)`` views of contiguous
    ``(b, N, h, d)`` tensors as a processor passes them; the same random keys for every form."""
    t, f = time_steps or time_bins(seconds), LEVEL_1["freq_bins"]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(LEVEL_1["batch"], t * f, LEVEL_1["heads"], LEVEL_1["head_dim"], generator=g)
               .to(device, dtype).transpose(1, 2) for _ in range(3))
    cross = K.draw_cross_indices(t * f, LEVEL_1["ratio"], torch.Generator().manual_seed(seed + 1)).to(device)
    return q, k, v, cross


def unavailable(form: str, device: str, dtype: torch.dtype) -> str | None:
    """Why a form is not run here, or None: varlen's requirements (:func:`litefocus.backends.varlen_problem`);
    compiled flex in bfloat16 only (each shape and dtype compiles anew, and the command must stay within its
    minutes)."""
    if form == "exact_varlen":
        capability = torch.cuda.get_device_capability() if device == "cuda" else None
        return B.varlen_problem(device, dtype, LEVEL_1["head_dim"], capability)
    if form == "exact_flex" and device == "cuda" and dtype != torch.bfloat16:
        return "compiled flex: bfloat16 only here (compile time)"
    return None


def form_call(form: str, q, k, v, cross):
    """A zero-argument call of one form on fixed inputs."""
    f = LEVEL_1["freq_bins"]
    calls = {
        "dense": lambda: F.scaled_dot_product_attention(q, k, v),
        "exact": lambda: K.focus_attention(q, k, v, f, cross),
        "exact_merged": lambda: K.exact_attention_merged(q, k, v, f, cross, None),
        "exact_by_rows": lambda: K.exact_attention_by_rows(q, k, v, f, cross, None),
        "exact_masked": lambda: K.exact_attention_masked(q, k, v, f, cross, None),
        "exact_flex": lambda: B.flex_focus_attention(q, k, v, f, cross, None),
        "exact_varlen": lambda: B.varlen_exact_attention(q, k, v, f, cross, None),
        "concat": lambda: K.focus_attention(q, k, v, f, cross, union="concat"),
        "same_frequency_only": lambda: K.focus_attention(q, k, v, f, None),
        "cross_frequency_only": lambda: K.focus_attention(q, k, v, f, cross, same_frequency=False),
    }
    if form in FAILING:
        def failing():
            raise RuntimeError(f"{form} made to fail (--fail-form)")
        return failing
    return calls[form]


def reference(form: str, q, k, v, cross):
    """The float64 reference of one form."""
    q, k, v = (x.double() for x in (q, k, v))
    if form == "dense":
        return F.scaled_dot_product_attention(q, k, v)
    f = LEVEL_1["freq_bins"]
    if form == "same_frequency_only":
        return K.reference_attention(q, k, v, freq_bins=f, cross_frequency=False)
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


def launches_kernels_syncs(call) -> tuple[int, int, int]:
    """Kernel launches (runtime/driver API calls), kernels run on the device and host synchronisations of one call."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    events = prof.events()
    names = [e.name for e in events]
    launches = sum(("LaunchKernel" in n) for n in names)
    kernels = sum(e.device_type == DeviceType.CUDA for e in events)
    syncs = sum(("Synchronize" in n) or n in ("cudaMemcpy", "cuMemcpyDtoH_v2") for n in names) - 1  # ours above
    return launches, kernels, max(syncs, 0)


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
    """``call`` captured into a CUDA graph, as its replay; a RuntimeError where it cannot be captured (a host sync
    inside), after checking that the stream still works (else the graph section must stop)."""
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
    except RuntimeError as error:
        stream_usable()
        raise RuntimeError(f"not capturable (a host synchronisation inside): {error}") from error
    return graph.replay


def stream_usable() -> None:
    """An error unless a fresh operation on the current stream runs and syncs."""
    torch.cuda.synchronize()
    if float(torch.ones(4, device="cuda").sum()) != 4.0:
        raise RuntimeError("the CUDA stream gave a wrong result after a failed capture")


def peak_mib(call, device: str) -> float:
    if device != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def failure(row: dict, error: BaseException) -> dict:
    """``row`` with the error that ended it (type and the start of its message)."""
    return dict(row, error=f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error) else ''}")


def each_form(section: str, forms, dtype: torch.dtype, device: str, measure, **columns) -> list[dict]:
    """``measure(form)`` -> a dict of columns, for each form; a form unavailable here or that raises gets a row with
    its note or its error, and the others go on."""
    rows = []
    for form in forms:
        row = dict(section=section, form=form, dtype=dtype_name(dtype), **columns)
        reason = unavailable(form, device, dtype)
        if reason:
            rows.append(dict(row, note=reason))
            continue
        try:
            rows.append(dict(row, **measure(form)))
        except Exception as error:  # noqa: BLE001 -- one form's failure must not cost the table
            rows.append(failure(row, error))
    return rows


def backend_rows(device: str, dtype: torch.dtype, time_steps: int | None) -> list[dict]:
    q, k, v, cross = inputs(81.92, dtype, device, time_steps)

    def measure(form: str) -> dict:
        call = form_call(form, q, k, v, cross)
        backends = sdpa_backends(call)
        launches, kernels, syncs = (launches_kernels_syncs(call) if device == "cuda"
                                    else (float("nan"),) * 3)
        # FlexAttention is a higher-order operator, which a counting dispatch mode cannot enter
        return dict(backend="+".join(sorted(set(backends))), sdpa_calls=len(backends),
                    operations=float("nan") if form == "exact_flex" else operations(call), launches=launches,
                    kernels=kernels, syncs=syncs)

    return each_form("backend", FORMS, dtype, device, measure, seconds=81.92)


def exactness_rows(device: str, dtypes, time_steps: int | None) -> list[dict]:
    rows = []
    for dtype in dtypes:
        q, k, v, cross = inputs(10.24, dtype, device, time_steps)

        def measure(form: str) -> dict:
            out = form_call(form, q, k, v, cross)().double()
            ref = reference(form, q, k, v, cross)
            return dict(max_abs_error=float((out - ref).abs().max()),
                        relative_error=float((out - ref).norm() / ref.norm()))

        rows += each_form("exactness", FORMS, dtype, device, measure, seconds=10.24)
    return rows


def core_rows(device: str, dtype: torch.dtype, lengths, repeats: int, time_steps: int | None) -> list[dict]:
    rows = []
    for seconds in lengths:
        q, k, v, cross = inputs(seconds, dtype, device, time_steps)
        n = q.shape[2]
        for mode in ("graph", "eager") if device == "cuda" else ("eager",):
            dense_median: list[float] = []

            def measure(form: str) -> dict:
                call = form_call(form, q, k, v, cross)
                samples = timed(call if mode == "eager" else captured(call), device, repeats)
                median = statistics.median(samples)
                if form == "dense":
                    dense_median.append(median)
                row = dict(ms=1000 * median, ms_min=1000 * min(samples), ms_max=1000 * max(samples),
                           vs_dense=median / dense_median[0] if dense_median else float("nan"),
                           peak_mib=peak_mib(call, device))
                if form == "dense":
                    row["tflops"] = 4 * LEVEL_1["batch"] * LEVEL_1["heads"] * n * n * LEVEL_1["head_dim"] / median / 1e12
                return row

            rows += each_form("core", FORMS, dtype, device, measure, seconds=seconds, mode=mode, tokens=n)
    return rows


def unet_rows(device: str, dtype: torch.dtype, seconds: float, rounds: int, tiny: bool) -> list[dict]:
    """One UNet step, dense against LiteFocus on the paper's blocks, interleaved rounds; eager and (on CUDA) replayed
    from a captured graph, with peak memory."""
    import litefocus
    from fullsize import tiny_unet_call, unet_inputs
    from litefocus.models import audioldm2_unet

    if tiny:  # the dry run: the tiny pipeline's UNet on the inputs of one of its own steps
        unet, (args, kwargs) = tiny_unet_call(seconds)
    else:
        unet = audioldm2_unet().to(device, dtype).eval()
        args, kwargs = unet_inputs(seconds, dtype=dtype, device=device)
        args = (args[0], torch.tensor(args[1], device=device))  # a device timestep: nothing to copy in a graph

    def step():
        with torch.no_grad():
            unet(*args, **kwargs)

    rows = []
    for mode in ("graph", "eager") if device == "cuda" else ("eager",):
        base = dict(section="unet", seconds=seconds, dtype=dtype_name(dtype), mode=mode)
        try:
            calls = {"dense": step if mode == "eager" else captured(step)}
            with litefocus.enabled(unet, ratio=0.1):
                calls["litefocus"] = step if mode == "eager" else captured(step)
                peaks = {"litefocus": peak_mib(step, device)}
            peaks["dense"] = peak_mib(step, device)
            times = {"dense": [], "litefocus": []}
            for _ in range(rounds):
                times["dense"] += timed(calls["dense"], device, 1)
                with litefocus.enabled(unet, ratio=0.1):
                    times["litefocus"] += timed(calls["litefocus"], device, 1)
        except Exception as error:  # noqa: BLE001
            rows.append(failure(dict(base, form="dense+litefocus"), error))
            continue
        dense = statistics.median(times["dense"])
        rows += [dict(base, form=form, ms=1000 * statistics.median(s), ms_min=1000 * min(s), ms_max=1000 * max(s),
                      vs_dense=statistics.median(s) / dense, speedup=dense / statistics.median(s),
                      peak_mib=peaks[form]) for form, s in times.items()]
    return rows


def environment(device: str) -> dict:
    """Columns every row carries: the card (or processor), torch, CUDA and cuDNN versions, and the run's time."""
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        name = f"{torch.cuda.get_device_name()} (sm{major}{minor})"
    else:
        name = platform.processor() or platform.machine()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return dict(device=name, torch=torch.__version__, cuda=torch.version.cuda or "", cudnn=cudnn or "",
                run=time.strftime("%Y-%m-%dT%H:%M:%S"))


class Table:
    """The rows so far, rewritten atomically to ``path`` after every section (None: not written)."""

    def __init__(self, path: Path | None, columns: dict) -> None:
        self.path, self.columns, self.rows = path, columns, []

    def section(self, name: str, make) -> None:
        """``make()``'s rows, or one row naming the exception that ended the whole section; then the file."""
        try:
            rows = make()
        except Exception as error:  # noqa: BLE001
            rows = [failure(dict(section=name, form="(section)"), error)]
        self.rows += [dict(row, **self.columns) for row in rows]
        if self.path is not None:
            import pandas as pd

            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
            tmp.replace(self.path)


def print_table(rows: list[dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.max_rows", 500,
                           "display.max_colwidth", 90):
        for section, part in table.groupby("section", sort=False):
            print(f"\n== {section}")
            shown = part.dropna(axis=1, how="all").drop(columns=["section", "device", "torch", "cuda", "cudnn", "run"],
                                                        errors="ignore")
            print(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny shapes")
    parser.add_argument("--quick", action="store_true", help="reduced sizes: 10.24 and 40.96 s, 5 repeats, the UNet "
                                                             "at 10.24 s (a first stage that finishes in a minute)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--csv", type=Path, default=None,
                        help="where the table goes, rewritten after every section (default: results/gpu.csv on a "
                             "GPU, nothing in a dry run; the committed table is data/benchmarks/gpu.csv)")
    parser.add_argument("--fail-form", action="append", default=[], choices=FORMS,
                        help="for tests: make this form raise, to check that the table survives it")
    args = parser.parse_args(argv)
    FAILING.update(args.fail_form)
    started = time.perf_counter()
    if args.dry_run:
        device, time_steps, repeats, dtypes, lengths, unet_seconds = "cpu", 16, 2, (torch.float32,), (10.24,), 2.56
        path = args.csv
    else:
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks/gpu.py needs a CUDA device (torch.cuda.is_available() is False); "
                             "--dry-run runs it on the CPU")
        device, time_steps = "cuda", None
        dtypes = (torch.float16, torch.bfloat16, torch.float32)
        lengths, unet_seconds = ((10.24, 40.96), 10.24) if args.quick else ((10.24, 40.96, 81.92), 81.92)
        repeats = 5 if args.quick else args.repeats
        path = args.csv or ROOT / "results" / "gpu.csv"
    low = torch.bfloat16 if device == "cuda" else torch.float32
    columns = dict(environment(device), stage="dry-run" if args.dry_run else "quick" if args.quick else "full")
    table = Table(path, columns)
    table.section("backend", lambda: backend_rows(device, low, time_steps))
    table.section("exactness", lambda: exactness_rows(device, dtypes, time_steps))
    table.section("core", lambda: core_rows(device, low, lengths, repeats, time_steps))
    table.section("unet", lambda: unet_rows(device, low, unet_seconds, rounds=5 if device == "cuda" else 1,
                                            tiny=args.dry_run))
    print_table(table.rows)
    print(f"\n{columns['device']}, torch {torch.__version__}, CUDA {columns['cuda'] or '-'}, cuDNN "
          f"{columns['cudnn'] or '-'}; {time.perf_counter() - started:.0f} s")
    if path is not None:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
