"""Evaluate a MiniLDM trained on the corpus and write what its card cites:
``python -m studies.minildm.evaluation --path runs/minildm2/model --corpus runs/corpus``.

1. Caption following: linear classifiers of the corpus' category and label (``minildm.classifiers``) fitted on
   real train clips and corrupted copies, checked on held-out real clips (2.56 and 10.24 s: the ceiling), then
   scored on clips generated from held-out captions at 1x and 4x the training length, with 95 % bootstrap
   intervals over clips; a figure of generated clips beside real clips of the same captions. The classifiers and
   held-out captions are saved beside the weights, so that scoring works where the corpus is absent.
2. Attention: ``analysis.measure_sparsity`` at 4x the training length over held-out captions, for the trained model
   and the same architecture at random initialisation; same-frequency ratio per block over late steps, heads and
   prompts; periodicity along the flattened key index; Figure 2 on ``down_blocks.1``. The focus contrast also as
   the median over (prompt, step, module, head): a head where other rows' queries give a row almost nothing has a
   contrast in the thousands, and a few such heads carry the mean.
3. Sampling time for 10.24 s with 50 steps (min, median and max of 3 rounds).
4. Band identity of the training data (``band_identity``), the corpus against the first MiniLDM's synthetic scenes.
Results go to ``evaluation.json`` beside the weights, with figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from litefocus.files import save_figure, write_atomic, write_json
from minildm.classifiers import accuracy, fingerprint, fit_caption_classifiers
from minildm.corpus import read_clips
from minildm.pipeline import DEFAULT_PATH, load_minildm

CLASSIFIER_TRAIN_CLIPS = 3000
HELDOUT_CAPTIONS = "heldout_captions.csv"


def band_identity(mel: torch.Tensor) -> float:
    """Share of the variance of log-mels ``(B, frames, bins)`` explained by the mel bin (eta squared): 1 when each bin
    holds one value throughout, 0 when every bin has the same mean. How much frequency rows differ from each other:
    the hypothesis of the MiniLDM 2 issue is that this drives attention onto the own frequency row."""
    x = mel.double()
    total = (x - x.mean()).pow(2).mean()
    between = (x.mean(dim=(0, 1)) - x.mean()).pow(2).mean()
    return float(between / total)


def data_band_identity(codec, corpus: Path, clips: int = 200) -> dict:
    """``band_identity`` of ``clips`` train clips of the corpus (all, and per category) and of as many synthetic
    scenes of the first MiniLDM (``minildm.data``)."""
    from minildm.data import make_clip

    audio, rows = read_clips(corpus, "train", 2.56)
    out = {}
    for category in (None, "music", "speech", "environment"):
        pool = [i for i, r in enumerate(rows) if category in (None, r["category"])]
        chosen = np.random.default_rng(3).choice(pool, min(clips, len(pool)), replace=False)
        out[category or "corpus"] = round(band_identity(codec.mel(torch.from_numpy(audio[chosen]))), 3)
    synthetic = np.stack([make_clip(100_000 + s).audio for s in range(clips)])
    out["synthetic scenes"] = round(band_identity(codec.mel(torch.from_numpy(synthetic))), 3)
    return out


def heldout_choice(rows: list[dict], count: int, seed: int) -> list[int]:
    """``count`` indices of ``rows`` spread over labels (round robin over labels in a seeded order)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i in rng.permutation(len(rows)).tolist():
        by_label.setdefault(rows[i]["label"], []).append(i)
    chosen, queues = [], [by_label[k] for k in sorted(by_label)]
    while len(chosen) < min(count, len(rows)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def caption_following(pipe, corpus: Path, steps: int, prompts: int, out: Path) -> dict:
    codec = pipe.codec
    train_audio, train_rows = read_clips(corpus, "train", 2.56)
    pick = np.random.default_rng(0).choice(len(train_rows), min(CLASSIFIER_TRAIN_CLIPS, len(train_rows)),
                                           replace=False)
    with torch.no_grad():
        train_mel = codec.mel(torch.from_numpy(train_audio[pick]))
    classifiers = fit_caption_classifiers(train_mel, [train_rows[i] for i in pick])
    classifiers.save_pretrained(out / "caption_classifiers")
    result: dict = dict(classifier_train_clips=len(pick), classes={a: len(c) for a, c in
                                                                    classifiers.config.classes.items()})
    saved = []
    for factor, seconds in (("1x", 2.56), ("4x", 10.24)):
        audio, rows = read_clips(corpus, "heldout", seconds)
        with torch.no_grad():
            real_mel = codec.mel(torch.from_numpy(audio))
        result[f"real_heldout_{factor}"] = accuracy(classifiers.predict(real_mel), rows)
        result[f"real_heldout_{factor}"]["clips"] = len(rows)
        chosen = heldout_choice(rows, prompts, seed=1)
        captions = [rows[i]["caption"] for i in chosen]
        mels = []
        for start in range(0, len(chosen), 8):
            with torch.no_grad():
                mels.append(pipe(captions[start:start + 8], audio_length_in_s=seconds, num_inference_steps=steps,
                                 output_type="mel", generator=torch.Generator().manual_seed(start)).audios)
        mel = torch.cat(mels)
        result[f"generated_{factor}"] = accuracy(classifiers.predict(mel), [rows[i] for i in chosen])
        result[f"generated_{factor}"]["clips"] = len(chosen)
        if factor == "1x":
            examples_figure(real_mel[chosen[:8]], mel[:8], captions[:8], out)
        saved += [dict(seconds=seconds, caption=rows[i]["caption"], category=rows[i]["category"],
                       label=rows[i]["label"], source=rows[i]["source"]) for i in chosen]
        print(factor, json.dumps({k: v for k, v in result.items() if k.endswith(factor)}), flush=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(saved[0]))
            writer.writeheader()
            writer.writerows(saved)

    write_atomic(out / HELDOUT_CAPTIONS, write)
    result.update(generated_prompts=prompts, steps=steps, prompt_examples=[s["caption"] for s in saved[:6]])
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
    "a string quartet playing a chorale slowly",
    "a woman speaking french",
    "rain falling with rumbling thunder",
    "an accordion playing a fast folk tune with drums",
    "a church organ playing a hymn at a moderate tempo",
    "a man speaking italian",
)
"""Attention is measured on these (held-out wordings of the corpus' ingredients, prompt i with seed i)."""


FOCUS_STATISTICS = ("focus_contrast", "sink_strength", "same_time_ratio")  # analysis.metrics: focus, not preference


def untrained_pipelines(pipe, recipe: str | None = None) -> dict:
    """The architecture untrained, with ``pipe``'s codec and vocabulary: ``random_init`` (diffusers' initialisation,
    seed 1) and, for a model trained under a :mod:`studies.pattern_emergence` ``recipe`` that starts its
    self-attention otherwise, ``recipe_init`` (that start, seed 1)."""
    from minildm.train import build, initialise_query_key

    from studies.pattern_emergence.run import VARIANTS  # run imports this module (heldout_choice)

    variant = VARIANTS[recipe] if recipe else None
    starts = {"random_init": None}
    if variant is not None and (variant.query_key_tied or variant.query_key_scale != 1.0):
        starts["recipe_init"] = variant
    out = {}
    for key, start in starts.items():
        untrained = build(seed=1, words=pipe.caption_encoder.config.vocabulary,
                          unet_config=variant.unet if variant else None)
        if start is not None:
            initialise_query_key(untrained.unet, start.query_key_scale, start.query_key_tied, start.query_key_blocks)
        untrained.codec = pipe.codec
        untrained.set_progress_bar_config(disable=True)
        out[key] = untrained
    return out


def block_summary(datasets: list) -> dict:
    """Per block of ``measure_sparsity`` datasets (one a prompt), over the late half of each one's steps: the mean of
    every statistic over modules and heads, averaged over datasets, and ``focus_contrast_median``, the median over
    (dataset, step, module, head) of the contrast (a ratio that one head can carry into the thousands)."""
    late = [ds.sel(step=ds.step[ds.step >= ds.step.max() / 2]) for ds in datasets]

    def mean(d, values, block):
        return float(values(d).where(d.block == block).mean())

    table = {}
    for block in sorted(set(late[0].block.values)):
        average = {key: np.mean([mean(d, values, block) for d in late]) for key, values in dict(
            same_frequency_ratio=lambda d: d.same_frequency_ratio, sparse_error=lambda d: d.sparse_error,
            share_with_period_F=lambda d: d.periodicity_period == d.freq_bins,
            periodicity_strength=lambda d: d.periodicity_strength,
            **{s: (lambda d, s=s: d[s]) for s in FOCUS_STATISTICS},
            own_row_heads=lambda d: d.head_class == "own_row").items()}
        contrasts = np.concatenate([d.focus_contrast.where(d.block == block, drop=True).values.ravel() for d in late])
        table[block] = dict(freq_bins=int(late[0].freq_bins.where(late[0].block == block, drop=True)[0]),
                            **{key: round(float(value), 3) for key, value in average.items()},
                            focus_contrast_median=round(float(np.nanmedian(contrasts)), 3))
    return table


def attention(pipe, steps: int, out: Path, name: str = "MiniLDM 2", recipe: str | None = None) -> dict:
    import analysis
    from analysis import metrics, plots

    def measure(model) -> list:
        return [analysis.measure_sparsity(model, prompt, audio_length_in_s=10.24, num_inference_steps=steps,
                                          seed=i, queries=8) for i, prompt in enumerate(ATTENTION_PROMPTS)]

    trained = measure(pipe)

    result = dict(trained=block_summary(trained), prompts=list(ATTENTION_PROMPTS), audio_length_in_s=10.24,
                  num_inference_steps=steps)
    keys = ("same_frequency_ratio", "focus_contrast_median", "sink_strength")
    result["trained_by_prompt"] = {prompt: {block: {key: values[key] for key in keys}
                                            for block, values in block_summary([d]).items()}
                                   for prompt, d in zip(ATTENTION_PROMPTS, trained)}
    for key, untrained in untrained_pipelines(pipe, recipe).items():
        result[key] = block_summary(measure(untrained))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plots.sparsity_heatmap(trained[0])
    ax.set_title(f"{name}, same-frequency ratio by block and step (10.24 s, first prompt)")
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
    fig.suptitle(f"{name} {module}, last step, mean of heads, 10.24 s, \"{ATTENTION_PROMPTS[0]}\"")
    save_figure(fig, out / "attention_down_blocks_1.png", dpi=100)
    plt.close(fig)
    return result


def sampling_time(pipe) -> float:
    pipe("a piano", audio_length_in_s=2.56, num_inference_steps=2)  # warm-up
    times = []
    for seed in range(3):
        start = time.perf_counter()
        pipe(ATTENTION_PROMPTS[0], audio_length_in_s=10.24, num_inference_steps=50,
             generator=torch.Generator().manual_seed(seed))
        times.append(time.perf_counter() - start)
    return times


def loss_figure(path: Path, out: Path, prediction_type: str, name: str = "MiniLDM 2") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.read_csv(path)
    smooth = log.loss.rolling(20, min_periods=1).mean()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(log.step, smooth)
    target = "v" if prediction_type == "v_prediction" else prediction_type
    ax.set(xlabel="step", ylabel=f"loss ({target} MSE, rolling mean)", yscale="log", title=f"{name} training")
    save_figure(fig, out / "loss.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return dict(steps=int(log.step.iloc[-1]), train_minutes=round(float(log.train_seconds.iloc[-1]) / 60, 1),
                final_loss=round(float(smooth.iloc[-1]), 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="the corpus it was trained on")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps for the measurements")
    parser.add_argument("--prompts", type=int, default=48, help="generated clips per length for caption following")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="MiniLDM 2", help="the model's name in the figures' titles")
    parser.add_argument("--recipe", default=None,
                        help="the studies.pattern_emergence variant it was trained under (default: the model "
                             "folder's recipe.json, where it has one): its initialisation is measured beside "
                             "diffusers' (recipe_init)")
    parser.add_argument("--out", type=Path, default=Path("runs/minildm/evaluation"),
                        help="where evaluation.json, the figures, the caption classifiers and the held-out captions go "
                             "(beside the weights for a model to ship: name that folder)")
    parser.add_argument("--attention-only", action="store_true",
                        help="only the attention statistics (trained and untrained; the trained model's also per "
                             "prompt), to attention.json in --out: the focus statistics of a model evaluated before "
                             "they existed (sampling time side by side: benchmarks/minildm_sampling.py)")
    args = parser.parse_args(argv)
    from studies.pattern_emergence.run import VARIANTS

    if args.recipe is None and (args.path / "recipe.json").is_file():
        args.recipe = json.loads((args.path / "recipe.json").read_text())["variant"]
    if args.recipe is not None and args.recipe not in VARIANTS:
        parser.error(f"--recipe {args.recipe}: not a studies.pattern_emergence variant ({', '.join(sorted(VARIANTS))})")
    if not (args.corpus / "clips.csv").is_file():
        parser.error(f"--corpus {args.corpus}: no clips.csv there; build it with `make corpus`")
    if args.steps < 1 or args.prompts < 1:
        parser.error("--steps and --prompts must be at least 1")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = load_minildm(args.path)
    pipe.set_progress_bar_config(disable=True)
    if args.attention_only:
        result = dict(model=str(args.path), attention=attention(pipe, args.steps, args.out, args.name, args.recipe))
        write_json(args.out / "attention.json", result)
        print(json.dumps(result, indent=1), f"\nwrote {args.out}/attention.json", flush=True)
        return
    times = sampling_time(pipe)
    sampling = dict(min=round(min(times), 2), median=round(float(np.median(times)), 2), max=round(max(times), 2),
                    rounds=3)
    print("sampling", sampling, flush=True)
    prediction_type = pipe.scheduler.config.prediction_type
    results = dict(prediction_type=prediction_type, sampling_seconds_10s_50_steps=sampling,
                   training=loss_figure(args.path / "training_log.csv", args.out, prediction_type, args.name))
    with torch.no_grad():
        results["band_identity"] = data_band_identity(pipe.codec, args.corpus)
    print("band identity (eta squared)", results["band_identity"], flush=True)
    results["caption_following"] = caption_following(pipe, args.corpus, args.steps, args.prompts, args.out)
    following = results["caption_following"]["generated_1x"]["category"]
    # what makes it the embedded default (minildm.default_pipeline): generated clips are recognisably what
    # their captions say, the category classifier's lower bound well above its majority rate at the training length
    results["samples_from_noise"] = following["low"] > following["majority"]
    results["attention"] = attention(pipe, args.steps, args.out, args.name, args.recipe)
    print(json.dumps(results["attention"], indent=1), flush=True)
    results["fingerprint"] = fingerprint(pipe)
    write_json(args.out / "evaluation.json", results)
    print(f"wrote {args.out}/evaluation.json and figures")


if __name__ == "__main__":
    main()
