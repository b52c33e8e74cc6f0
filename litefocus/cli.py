"""Command line.

``litefocus measure``: record self-attention while generating, measure same-frequency sparsity per block, layer,
head and step, choose the blocks to sparsify, and write the dataset, figures and a table.
``litefocus generate``: render one prompt with dense attention and with LiteFocus, side by side, and time both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT, TINY = "default", "tiny"
MODEL_HELP = (f"'{DEFAULT}' (the embedded default: the shipped MiniLDM, or '{TINY}' if its evaluation says it "
              "cannot sample), "
              f"'{TINY}' (offline, random weights), 'minildm', a hub id such as cvssp/audioldm2, or a local folder")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litefocus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="measure same-frequency attention and choose blocks")
    gen = commands.add_parser("generate", help="generate with dense attention and with LiteFocus; time both")
    for sub, seconds, steps, out in ((measure, 10.24, 25, "results/measure"), (gen, 10.24, 10, "results/generate")):
        sub.add_argument("--model", default=DEFAULT, help=MODEL_HELP)
        sub.add_argument("--prompt", default="a low humming sound with a high beep at the end")
        sub.add_argument("--seconds", type=float, default=seconds, help="audio length in seconds")
        sub.add_argument("--steps", type=int, default=steps, help="denoising steps")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--out", type=Path, default=Path(out))
    measure.add_argument("--blocks", nargs="+", default=None, help="blocks to record (default: all)")
    measure.add_argument("--queries", type=int, default=16, help="query rows kept per module and step")
    measure.add_argument("--min-ratio", type=float, default=2.0, help="block choice: same-frequency ratio needed")
    gen.add_argument("--ratio", type=float, default=0.1, help="LiteFocus compensation ratio r")
    gen.add_argument("--blocks", nargs="+", default=None, help="blocks to sparsify (default: the paper's)")
    args = parser.parse_args(argv)
    try:
        if args.seconds <= 0 or args.steps < 1:
            raise ValueError("--seconds must be positive and --steps at least 1")
        pipe, name = _load(args.model, args.seed)
        return measure_command(args, pipe, name) if args.command == "measure" else generate(args, pipe, name)
    except (ValueError, OSError, MemoryError) as error:
        print(f"litefocus: {error}", file=sys.stderr)
        return 2


def _load(model: str, seed: int):
    from litefocus.models import default_pipeline, load_pipeline, tiny_audioldm2_pipeline

    if model == DEFAULT:
        pipe, name = default_pipeline(seed)
    elif model == TINY:
        pipe, name = tiny_audioldm2_pipeline(seed), TINY
    elif model == "minildm":
        from minildm import load_minildm

        pipe, name = load_minildm(), "minildm"
    else:
        pipe, name = load_pipeline(model), model
    if name == TINY:
        print("note: the 'tiny' model has random weights: its audio is noise and its attention shows no pattern. "
              "Timing and wiring are real.")
    return pipe, name


def _sampling_rate(pipe) -> int:
    """Output sampling rate in Hz: the vocoder's (AudioLDM/AudioLDM2/MusicLDM) or the codec's (MiniLDM)."""
    for component in ("vocoder", "codec"):
        rate = getattr(getattr(getattr(pipe, component, None), "config", None), "sampling_rate", None)
        if rate is not None:
            return int(rate)
    raise ValueError(f"cannot tell the sampling rate of {type(pipe).__name__}: it has no vocoder or codec config")


def measure_command(args, pipe, name: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import torch

    import analysis
    from analysis import plots
    from litefocus.files import write_atomic

    with analysis.record_attention(pipe, args.blocks, queries=args.queries, summary_queries=2048,
                                   seed=args.seed) as rec:
        pipe(args.prompt, audio_length_in_s=args.seconds, num_inference_steps=args.steps,
             generator=torch.Generator().manual_seed(args.seed))
    ds = analysis.sparsity_dataset(rec)
    ds.attrs.update(model=name, prompt=args.prompt, audio_length_in_s=args.seconds, num_inference_steps=args.steps)
    choice = analysis.choose_blocks(ds, min_ratio=args.min_ratio)

    out = args.out
    write_atomic(out / "sparsity.nc", lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    write_atomic(out / "attention.nc", lambda tmp: rec.to_datatree().to_netcdf(tmp, engine="h5netcdf"))
    write_atomic(out / "blocks.csv", lambda tmp: choice.table.to_csv(tmp, index=False))
    best = choice.table.block[0]
    module = next(m for m in rec.recorded if m.startswith(best + "."))
    detail = rec.dataset(module)
    late = detail.isel(step=-1).mean("head")

    def figure(path, draw):
        def save(tmp):
            fig = draw()
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
            plt.close(fig)

        write_atomic(out / path, save)

    def fig_query():
        fig, ax = plt.subplots(figsize=(8, 2.6))
        plots.query_attention(late["rows"], query=late.sizes["query"] // 2, ax=ax, title=f"{module}, last step")
        return fig

    def fig_profiles():
        fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
        plots.offset_profiles(late["offset_profile"], axes=axes, title=module)
        return fig

    def fig_heatmap():
        ax = plots.sparsity_heatmap(ds)
        return ax.figure

    figure("query_attention.png", fig_query)
    figure("offset_profiles.png", fig_profiles)
    figure("sparsity_by_block.png", fig_heatmap)
    print(choice.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"rule: {choice.rule}")
    print(f"chosen blocks: {', '.join(choice) if choice else 'none'}")
    print(f"wrote {out}/sparsity.nc, attention.nc, blocks.csv and 3 figures")
    return 0


def generate(args, pipe, name: str) -> int:
    import numpy as np
    import torch

    import litefocus
    from litefocus.files import write_json, write_wav

    blocks = args.blocks or list(litefocus.PAPER_BLOCKS)
    litefocus.LiteFocusOptions(ratio=args.ratio)
    names = litefocus.self_attention_modules(pipe, blocks)
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
    rate = _sampling_rate(pipe)
    write_wav(args.out / "dense.wav", dense, rate)
    write_wav(args.out / "litefocus.wav", sparse, rate)
    summary = dict(
        model=name, prompt=args.prompt, seconds=args.seconds, steps=args.steps, ratio=args.ratio,
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
