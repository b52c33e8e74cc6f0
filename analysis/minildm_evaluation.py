"""Evaluate the shipped MiniLDM and write its model card: ``python -m analysis.minildm_evaluation``.

1. Caption following: a linear attribute classifier (sound kind, pitch register) on time-pooled log-mel features
   that ignore gain and background level, trained on synthesized clips and corrupted copies of them, checked on
   held-out synthesized clips, then scored on generated clips at 1x and 4x the training length; a figure of
   generated clips beside real clips of the same captions.
2. Attention: ``analysis.measure_sparsity`` at 4x the training length over several prompts, for the trained model
   and the same architecture at random initialisation; same-frequency ratio per block over late steps, heads and
   prompts; periodicity along the flattened key index.
3. Sampling time for 10.24 s with 50 steps.
Results go to ``data/minildm/evaluation.json`` and figures beside it; the model card ``README.md`` cites them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from litefocus.files import save_figure, write_json
from minildm.classifiers import accuracies, caption_classifiers, features, fingerprint
from minildm.pipeline import DEFAULT_PATH, load_minildm
def caption_following(pipe, steps: int, prompts: int, out: Path) -> dict:
    classifiers, result, (test_events, test_captions, test_mel) = caption_classifiers(pipe.codec)
    chosen = list(range(prompts))
    for factor, seconds in (("1x", 2.56), ("4x", 10.24)):
        mels = []
        for start in range(0, len(chosen), 8):
            batch = [test_captions[i] for i in chosen[start:start + 8]]
            with torch.no_grad():
                mels.append(pipe(batch, audio_length_in_s=seconds, num_inference_steps=steps, output_type="mel",
                                 generator=torch.Generator().manual_seed(start)).audios)
        if factor == "1x":
            examples_figure(test_mel[:8], mels[0][:8], [test_captions[i] for i in chosen[:8]], out)
        scored = accuracies(classifiers, features(torch.cat(mels)), [test_events[i] for i in chosen])
        for name, accuracy in scored.items():
            result[f"{name}_accuracy_generated_{factor}"] = accuracy
    result["generated_prompts"] = prompts
    result["prompt_examples"] = [test_captions[i] for i in chosen[:6]]
    return result


def examples_figure(real: torch.Tensor, generated: torch.Tensor, captions: list[str], out: Path) -> None:
    """Log-mels ``(8, frames, 64)`` of real clips (top) and clips generated from their captions (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(captions), figsize=(2.4 * len(captions), 4.4), sharex=True, sharey=True,
                             layout="constrained")
    for i, caption in enumerate(captions):
        for row, mel in enumerate((real, generated)):
            axes[row, i].imshow(mel[i].T.numpy(), origin="lower", aspect="auto", cmap="magma")
        axes[0, i].set_title(caption if len(caption) < 34 else caption[:32] + "...", fontsize=7)
    axes[0, 0].set_ylabel("real clip\nmel bin")
    axes[1, 0].set_ylabel("generated\nmel bin")
    fig.supxlabel("frame (10 ms)")
    save_figure(fig, out / "generated_examples.png", dpi=80)
    plt.close(fig)


ATTENTION_PROMPTS = (
    "a low humming sound with a high beep at the end",
    "a fast high clicking rhythm",
    "a medium siren-like sweep rising",
    "a low voice-like sound throughout together with a bright hiss",
)


def attention(pipe, steps: int, out: Path) -> dict:
    import analysis
    from analysis import metrics, plots

    from .train import build

    def measure(model) -> list:
        return [analysis.measure_sparsity(model, prompt, audio_length_in_s=10.24, num_inference_steps=steps,
                                          seed=i, queries=8) for i, prompt in enumerate(ATTENTION_PROMPTS)]

    trained = measure(pipe)
    random_pipe = build(seed=1)
    random_pipe.codec = pipe.codec
    random_pipe.set_progress_bar_config(disable=True)
    untrained = measure(random_pipe)

    def per_block(datasets) -> dict:
        late = [ds.sel(step=ds.step[ds.step >= ds.step.max() / 2]) for ds in datasets]
        table = {}
        for block in sorted(set(late[0].block.values)):
            ratio = np.mean([float(d.same_frequency_ratio.where(d.block == block).mean()) for d in late])
            error = np.mean([float(d.sparse_error.where(d.block == block).mean()) for d in late])
            period = np.mean([float((d.periodicity_period == d.freq_bins).where(d.block == block).mean())
                              for d in late])
            strength = np.mean([float(d.periodicity_strength.where(d.block == block).mean()) for d in late])
            table[block] = dict(freq_bins=int(late[0].freq_bins.where(late[0].block == block, drop=True)[0]),
                                same_frequency_ratio=round(ratio, 3), sparse_error=round(error, 3),
                                share_with_period_F=round(period, 3), periodicity_strength=round(strength, 3))
        return table

    result = dict(trained=per_block(trained), random_init=per_block(untrained), prompts=list(ATTENTION_PROMPTS),
                  audio_length_in_s=10.24, num_inference_steps=steps)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plots.sparsity_heatmap(trained[0])
    ax.set_title("MiniLDM, same-frequency ratio by block and step (10.24 s, first prompt)")
    save_figure(ax.figure, out / "sparsity_by_block.png", dpi=100, bbox_inches="tight")
    plt.close(ax.figure)
    module = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    with analysis.record_attention(pipe, blocks=module, steps=[steps - 1], queries="all") as rec:
        pipe(ATTENTION_PROMPTS[0], audio_length_in_s=10.24, num_inference_steps=steps,
             generator=torch.Generator().manual_seed(0))
    maps = rec.maps[module].isel(step=0).mean("head")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4), layout="constrained",
                             gridspec_kw=dict(width_ratios=[2.2, 1.3, 1.6]))
    rows = maps.stack(query=("q_time", "q_freq")).transpose("query", "k_time", "k_freq")
    plots.query_attention(rows, query=rows.sizes["query"] // 2 + 3, ax=axes[0], title="one query (Fig. 2a)")
    plots.token_map(maps, tokens=64, ax=axes[1], title="tokens 0-63 (Fig. 2b)")
    key_profile = metrics.key_offset_profile(metrics.offset_profile(maps))
    near = key_profile.sel(key_offset=slice(1, 48))
    axes[2].plot(near.key_offset, near, marker=".")
    for multiple in range(maps.sizes["k_freq"], 49, maps.sizes["k_freq"]):
        axes[2].axvline(multiple, color="grey", lw=0.5, ls=":")
    axes[2].set(xlabel="key offset j - i (tokens)", ylabel="mean attention per query-key pair",
                title="by flattened key offset (dotted: multiples of F)")
    fig.suptitle(f"MiniLDM {module}, last step, mean of heads, 10.24 s")
    save_figure(fig, out / "attention_down_blocks_1.png", dpi=100)
    plt.close(fig)
    return result


def sampling_time(pipe) -> float:
    pipe("a low tone", audio_length_in_s=2.56, num_inference_steps=2)  # warm-up
    start = time.perf_counter()
    pipe("a low humming sound with a high beep at the end", audio_length_in_s=10.24, num_inference_steps=50,
         generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def loss_figure(path: Path, out: Path, prediction_type: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.read_csv(path)
    smooth = log.loss.rolling(20, min_periods=1).mean()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(log.step, smooth)
    target = "v" if prediction_type == "v_prediction" else prediction_type
    ax.set(xlabel="step", ylabel=f"loss ({target} MSE, rolling mean)", yscale="log", title="MiniLDM training")
    save_figure(fig, out / "loss.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return dict(steps=int(log.step.iloc[-1]), train_minutes=round(float(log.train_seconds.iloc[-1]) / 60, 1),
                final_loss=round(float(smooth.iloc[-1]), 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--steps", type=int, default=25, help="denoising steps for the measurements")
    parser.add_argument("--prompts", type=int, default=48, help="generated clips per length for caption following")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(__import__("os").environ.get("EVAL_THREADS", "2")))
    pipe = load_minildm(args.path)
    pipe.set_progress_bar_config(disable=True)
    prediction_type = pipe.scheduler.config.prediction_type
    results = dict(prediction_type=prediction_type,
                   training=loss_figure(args.path / "training_log.csv", args.path, prediction_type))
    results["sampling_seconds_10s_50_steps"] = round(sampling_time(pipe), 1)
    print("sampling", results["sampling_seconds_10s_50_steps"], "s", flush=True)
    results["caption_following"] = caption_following(pipe, args.steps, args.prompts, args.path)
    print(json.dumps(results["caption_following"], indent=1), flush=True)
    following = results["caption_following"]
    # what makes it the embedded default (litefocus_cli.models.default_pipeline): generated clips are recognisably what
    # their captions say, at least twice the chance rate of the sound-kind classifier at the training length
    results["samples_from_noise"] = following["kind_accuracy_generated_1x"] >= 2 * following["kind_chance"]
    results["attention"] = attention(pipe, args.steps, args.path)
    print(json.dumps(results["attention"], indent=1), flush=True)
    results["fingerprint"] = fingerprint(pipe)
    write_json(args.path / "evaluation.json", results)
    print(f"wrote {args.path}/evaluation.json and figures")


if __name__ == "__main__":
    main()
