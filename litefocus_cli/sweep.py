"""``litefocus sweep``: generate captions x configurations x lengths x samplers x seeds, one clip a job, resumable,
on one process or under ``accelerate launch -m litefocus_cli sweep ...`` on several (``analysis.sweep``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from litefocus.lengths import check_max_gb, check_seconds

from .common import check_seed_argument
from .models import DEFAULT, MODEL_HELP

DTYPES = ("float32", "float16", "bfloat16")


def _audio_formats():
    from analysis.sweep import AUDIO_FORMATS

    return AUDIO_FORMATS


def add_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="generate a grid of jobs (resumable; accelerate launch for several "
                                              "processes or GPUs)")
    sweep.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
    sweep.add_argument("--captions", type=Path, required=True,
                       help="AudioCaps' CSV (audiocap_id, youtube_id, start_time, caption) or one caption a line")
    sweep.add_argument("--first", type=int, default=None, help="only the first N captions of the file")
    sweep.add_argument("--configurations", nargs="+", default=["dense", "litefocus"],
                       help="names of analysis.ablations.ABLATIONS, each optionally with other blocks and another "
                            "ratio: NAME[@BLOCK+BLOCK][:RATIO] (cross_frequency_only:0.4, litefocus@up_blocks.1)")
    sweep.add_argument("--seconds", type=float, nargs="+", default=[10.24], help="audio lengths in seconds")
    sweep.add_argument("--max-memory-gb", type=float, default=None,
                       help="refuse a --seconds whose estimated memory (all processes) exceeds this many GB (default: "
                            "the memory free now)")
    sweep.add_argument("--steps", type=int, default=50, help="steps of the 'default' sampler (the pipeline's own)")
    sweep.add_argument("--samplers", nargs="+", default=["default"],
                       help="'default' (the pipeline's scheduler at --steps), 'ddim' or 'dpmsolver++', each "
                            "optionally NAME:STEPS (e.g. dpmsolver++:25)")
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (each job's noise and random choices)")
    sweep.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's")
    sweep.add_argument("--audio-format", default="flac", choices=_audio_formats(),
                       help="flac: 24-bit FLAC (default); wav: 32-bit float WAV, the samples exactly")
    sweep.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and compute dtype")
    sweep.add_argument("--threads", type=int, default=None,
                       help="CPU threads per process (default: cores / processes on this machine). On CPU, audio is "
                            "byte-identical across runs with the same threads per process")
    sweep.add_argument("--out", type=Path, required=True,
                       help="sweep folder: new, empty, or a sweep with the same settings (it resumes)")
    sweep.add_argument("--reuse", type=Path, nargs="+", default=[],
                       help="other sweep folders: the jobs this sweep shares with them (same id) are copied, not rerun")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(func=run)


def run(args) -> int:
    import torch

    from analysis import sweep as sw
    from analysis.ablations import check_blocks, parse_configuration

    captions = _check_arguments(args)
    from accelerate import PartialState

    # cpu=True where there is no GPU: accelerate then joins the processes torchrun started (accelerate launch
    # --multi_gpu) with gloo; its own --cpu launcher starts several processes only through mpirun
    state = PartialState(cpu=not torch.cuda.is_available())
    threads = args.threads or max(1, (os.cpu_count() or 1) // state.num_processes)
    torch.set_num_threads(threads)
    from .models import load_model

    pipe, name = load_model(args.model)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(state.device)
    if args.dtype != "float32":
        pipe.to(dtype=getattr(torch, args.dtype))
    shared = state.num_processes if state.device.type == "cpu" else 1  # processes on one host share its memory
    check_seconds(pipe, args.seconds, prompts=shared, max_gb=args.max_memory_gb)
    from litefocus.models import weights_fingerprint

    configurations = [parse_configuration(c) for c in args.configurations]
    check_blocks(pipe, configurations)
    samplers = [sw.parse_sampler(s, args.steps) for s in args.samplers]
    settings = sw.SweepSettings(weights_fingerprint(pipe), tuple(captions), tuple(configurations), tuple(args.seconds),
                                tuple(samplers), tuple(args.seeds), args.guidance_scale, args.dtype, args.audio_format)
    sweep = sw.Sweep(args.out, settings)
    sweep.check_out()
    if state.is_main_process:
        print(f"sweep: {len(sweep.jobs)} jobs of {name} ({len(captions)} captions x {len(configurations)} "
              f"configurations x {len(args.seconds)} lengths x {len(samplers)} samplers x {len(args.seeds)} seeds) "
              f"on {state.num_processes} process(es), {threads} thread(s) each, into {args.out}")
    sw.run_sweep(pipe, sweep, state.process_index, state.num_processes, threads, barrier=state.wait_for_everyone,
                 progress=not args.no_progress, reuse=args.reuse)
    state.wait_for_everyone()
    if state.is_main_process:
        path = sweep.write_table()
        print(f"{len(sweep.done())} of {len(sweep.jobs)} jobs done; rows in {path}")
    return 0


def _check_arguments(args):
    """Everything that can be checked before a model loads; returns the captions."""
    from analysis import sweep as sw
    from analysis.ablations import parse_configuration

    from analysis.captions import read_captions

    captions = read_captions(args.captions)
    if args.first is not None:
        if args.first < 1:
            raise ValueError(f"--first must be at least 1; got {args.first}")
        captions = captions[: args.first]
    for spec in args.configurations:
        parse_configuration(spec)
    sw.check_step_count(args.steps)
    for spec in args.samplers:
        sw.parse_sampler(spec, args.steps)
    bad = [s for s in args.seconds if not (math.isfinite(s) and s > 0)]
    if bad:
        raise ValueError(f"--seconds must be positive finite lengths in seconds; got {bad}")
    for seed in args.seeds:
        check_seed_argument(seed, "--seeds")
    check_max_gb(args.max_memory_gb, "--max-memory-gb")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1; got {args.threads}")
    if args.guidance_scale is not None and not math.isfinite(args.guidance_scale):
        raise ValueError(f"--guidance-scale must be a finite number; got {args.guidance_scale}")
    for other in args.reuse:
        if not (other / sw.MANIFEST).is_file():
            raise ValueError(f"--reuse {other}: not a sweep folder (no {sw.MANIFEST})")
    sw.check_sweep_folder(args.out)  # before the model loads; Sweep.check_out compares the settings after
    return captions
