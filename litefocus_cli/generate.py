"""``litefocus generate``: render one prompt with dense attention and with LiteFocus, side by side, and time both."""

from __future__ import annotations

import time

from .common import add_run_arguments, check_run_arguments, load_announced, settings
from .output import check_out, run_folder


def add_parser(commands) -> None:
    sub = commands.add_parser("generate", help="generate with dense attention and with LiteFocus; time both")
    add_run_arguments(sub, seconds=10.24, steps=10, out="results/generate")
    sub.add_argument("--ratio", type=float, default=0.1, help="LiteFocus compensation ratio r, in [0, 1]")
    sub.add_argument("--blocks", nargs="+", default=None, help="blocks to sparsify (default: the paper's)")
    sub.add_argument("--union", default="exact", choices=["exact", "concat"],
                     help="'exact': the paper's eq. 4 (default); 'concat': the authors' code, which the paper's "
                          "numbers come from")
    sub.set_defaults(func=run)


def run(args) -> int:
    import litefocus

    check_run_arguments(args)
    litefocus.LiteFocusOptions(ratio=args.ratio, union=args.union)
    check_out(args.out, "generate")
    pipe, name = load_announced(args.model, args.seed, args.seconds, args.max_memory_gb)
    summary, dense, sparse, rate = render_both(args, pipe, name)
    write_results(args, name, summary, dense, sparse, rate)
    print(f"dense {summary['dense_s']:.2f} s, LiteFocus {summary['litefocus_s']:.2f} s, speed-up "
          f"{summary['speedup']:.2f}x ({args.seconds} s of audio, {args.steps} steps)")
    print(f"wrote {args.out}/dense.wav, litefocus.wav, summary.json and run.json")
    return 0


def render_timed(pipe, args):
    """One clip from ``--seed`` and its seconds, after one untimed step (neither side pays the first call's warm-up)."""
    import torch

    pipe(args.prompt, num_inference_steps=1, audio_length_in_s=args.seconds)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    audio = pipe(args.prompt, num_inference_steps=args.steps, audio_length_in_s=args.seconds,
                 generator=generator).audios[0]
    return audio, time.perf_counter() - start


def render_both(args, pipe, name: str):
    """``(summary, dense audio, LiteFocus audio, sampling rate)``."""
    import numpy as np
    import torch

    import litefocus
    from litefocus.lengths import sampling_rate

    blocks = args.blocks or list(litefocus.PAPER_BLOCKS)
    names = litefocus.self_attention_modules(pipe, blocks)
    print(f"LiteFocus on {len(names)} self-attention modules of {', '.join(blocks)}, r = {args.ratio}, "
          f"{args.union} union")
    dense, dense_s = render_timed(pipe, args)
    with litefocus.enabled(pipe, blocks, args.ratio, seed=args.seed, union=args.union):
        sparse, sparse_s = render_timed(pipe, args)
    summary = dict(
        model=name, prompt=args.prompt, seconds=args.seconds, steps=args.steps, ratio=args.ratio, union=args.union,
        blocks=blocks, modules=len(names), dense_s=round(dense_s, 3), litefocus_s=round(sparse_s, 3),
        speedup=round(dense_s / sparse_s, 3),
        waveform_relative_difference=float(np.linalg.norm(sparse - dense) / max(np.linalg.norm(dense), 1e-12)),
        torch=torch.__version__, threads=torch.get_num_threads(),
    )
    return summary, dense, sparse, sampling_rate(pipe)


def write_results(args, name: str, summary: dict, dense, sparse, rate: int) -> None:
    from litefocus.files import write_json, write_wav

    with run_folder(args.out, "generate", settings(args, name)) as folder:
        write_wav(folder / "dense.wav", dense, rate)
        write_wav(folder / "litefocus.wav", sparse, rate)
        write_json(folder / "summary.json", summary)
