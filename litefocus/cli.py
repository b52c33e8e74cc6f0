"""Command line: ``litefocus generate`` renders one prompt with dense attention and with LiteFocus, side by side."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TINY = "tiny"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litefocus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate with dense attention and with LiteFocus; time both")
    gen.add_argument("--model", default=TINY,
                     help=f"'{TINY}' (offline, random weights), a hub id such as cvssp/audioldm2, or a local folder")
    gen.add_argument("--prompt", default="a dog barking in the distance")
    gen.add_argument("--seconds", type=float, default=10.24, help="audio length in seconds")
    gen.add_argument("--steps", type=int, default=10, help="denoising steps")
    gen.add_argument("--ratio", type=float, default=0.1, help="LiteFocus compensation ratio r")
    gen.add_argument("--blocks", nargs="+", default=None, help="blocks to sparsify (default: the paper's)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", type=Path, default=Path("results/generate"))
    args = parser.parse_args(argv)
    return generate(args)


def generate(args) -> int:
    import numpy as np
    import torch

    import litefocus
    from litefocus.files import write_json, write_wav
    from litefocus.models import load_pipeline, tiny_audioldm2_pipeline

    blocks = args.blocks or list(litefocus.PAPER_BLOCKS)
    try:
        litefocus.LiteFocusOptions(ratio=args.ratio)
        if args.seconds <= 0 or args.steps < 1:
            raise ValueError("--seconds must be positive and --steps at least 1")
        pipe = tiny_audioldm2_pipeline(seed=args.seed) if args.model == TINY else load_pipeline(args.model)
        names = litefocus.self_attention_modules(pipe, blocks)
    except (ValueError, OSError) as error:
        print(f"litefocus: {error}", file=sys.stderr)
        return 2
    if args.model == TINY:
        print("note: the 'tiny' model has random weights; its audio is noise. Timing and wiring are real.")
    print(f"LiteFocus on {len(names)} self-attention modules of {', '.join(blocks)}, r = {args.ratio}")

    def render():
        # one untimed step first, so that neither side pays the first call's warm-up
        pipe(args.prompt, num_inference_steps=1, audio_length_in_s=args.seconds)
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        audio = pipe(args.prompt, num_inference_steps=args.steps, audio_length_in_s=args.seconds,
                     generator=generator).audios[0]
        return audio, time.perf_counter() - start

    dense, dense_s = render()
    with litefocus.enabled(pipe, blocks, args.ratio, seed=args.seed):
        sparse, sparse_s = render()
    rate = pipe.vocoder.config.sampling_rate
    write_wav(args.out / "dense.wav", dense, rate)
    write_wav(args.out / "litefocus.wav", sparse, rate)
    summary = dict(
        model=args.model, prompt=args.prompt, seconds=args.seconds, steps=args.steps, ratio=args.ratio,
        blocks=blocks, modules=len(names), dense_s=round(dense_s, 3), litefocus_s=round(sparse_s, 3),
        speedup=round(dense_s / sparse_s, 3),
        waveform_relative_difference=float(np.linalg.norm(sparse - dense) / max(np.linalg.norm(dense), 1e-12)),
        torch=torch.__version__, threads=torch.get_num_threads(),
    )
    write_json(args.out / "summary.json", summary)
    print(f"dense {dense_s:.2f} s, LiteFocus {sparse_s:.2f} s, speed-up {summary['speedup']:.2f}x "
          f"({args.seconds} s of audio, {args.steps} steps)")
    print(f"wrote {args.out}/dense.wav, litefocus.wav, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
