"""Does the offline evaluator measure something? ``python -m studies.evaluator.validation --corpus runs/corpus``.

On held-out real clips of the MiniLDM 2 corpus (no source of them was seen in training):

1. Text-to-audio retrieval: one clip per held-out source, each caption ranks all clips by CLAP similarity;
   recall at 1 and 5 against chance (k / clips), and the label classifier's accuracy.
2. The split-half floor: FAD and KAD between two disjoint halves of the held-out clips (split by source), the
   distance any comparison of generated against real audio must clear.
3. Degradation curves: the first half clean as reference, the second half degraded step by step (white noise at
   30/20/10/0 dB SNR, low-pass at 4/2/1/0.5 kHz, time shuffling of 1/0.5/0.2/0.05 s segments); FAD and KAD
   should rise with each step.

Writes ``validation.json`` and ``validation.png`` beside the evaluator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from litefocus.files import save_figure, write_json
from minildm.corpus import SAMPLING_RATE, read_clips

from analysis import quality
from analysis.evaluator import OFFLINE_PATH, Evaluator

DEGRADATIONS = {"noise (SNR dB)": (30, 20, 10, 0), "low-pass (Hz)": (4000, 2000, 1000, 500),
                "time shuffle (segment s)": (1.0, 0.5, 0.2, 0.05)}


def degrade(clips: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """``clips`` ``(n, samples)`` at 16 kHz degraded by ``kind`` (a key of :data:`DEGRADATIONS`) at ``level``:
    white noise at ``level`` dB SNR per clip, an 8th-order Butterworth low-pass at ``level`` Hz (zero phase), or the
    clip cut into segments of ``level`` s that are put in a random order that moves every one (:func:`derangement`;
    a tail shorter than a segment stays at the end)."""
    rng = np.random.default_rng(seed)
    if kind.startswith("noise"):
        power = (clips.astype(np.float64) ** 2).mean(1, keepdims=True)
        noise = rng.standard_normal(clips.shape) * np.sqrt(power / 10 ** (level / 10))
        return (clips + noise).astype(np.float32)
    if kind.startswith("low-pass"):
        from scipy.signal import butter, sosfiltfilt

        sos = butter(8, level, btype="low", fs=SAMPLING_RATE, output="sos")
        return sosfiltfilt(sos, clips, axis=1).astype(np.float32)
    if kind.startswith("time shuffle"):
        size = int(level * SAMPLING_RATE)
        out = clips.copy()
        count = clips.shape[1] // size
        for i in range(len(clips)):
            order = derangement(count, rng)
            segments = clips[i, : count * size].reshape(count, size)[order]
            out[i, : count * size] = segments.reshape(-1)
        return out
    raise ValueError(f"kind must be one of {list(DEGRADATIONS)}; got {kind!r}")


def derangement(count: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``count`` segments in which none stays in place (a uniform derangement, by rejection;
    ``count`` < 2: the identity). A plain permutation of the two whole seconds of a 2.56 s clip leaves half the
    clips as they were."""
    if count < 2:
        return np.arange(count)
    while True:
        order = rng.permutation(count)
        if (order != np.arange(count)).all():
            return order


def split_by_source(rows: list[dict], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves of ``rows`` with no source in both (sources shuffled, then dealt alternately by
    category so both halves hold every category)."""
    rng = np.random.default_rng(seed)
    sources = sorted({(r["category"], r["source"]) for r in rows})
    order = [sources[i] for i in rng.permutation(len(sources))]
    first, counts = set(), {}
    for category, source in sorted(order, key=lambda s: s[0]):
        if counts.get(category, 0) % 2 == 0:
            first.add(source)
        counts[category] = counts.get(category, 0) + 1
    in_first = np.array([r["source"] in first for r in rows])
    return np.flatnonzero(in_first), np.flatnonzero(~in_first)


def one_per_source(rows: list[dict], seed: int = 0) -> list[int]:
    """One clip index per source (a seeded choice)."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_source.setdefault(r["source"], []).append(i)
    return [int(rng.choice(by_source[s])) for s in sorted(by_source)]


def retrieval(evaluator: Evaluator, audio: np.ndarray, rows: list[dict]) -> dict:
    """Text-to-audio recall at 1 and 5 over the clips ``audio`` and their captions, with chance and the label
    classifier's accuracy."""
    embedded = evaluator.embed(audio, SAMPLING_RATE, [r["caption"] for r in rows])
    similarity = embedded.text @ embedded.clap_audio.T  # (captions, clips)
    rank = (similarity > similarity.diagonal()[:, None]).sum(1)  # clips ranked above the right one
    predicted = [evaluator.classes[i] for i in embedded.probabilities.argmax(1)]
    n = len(rows)
    return dict(clips=n, recall_at_1=round(float((rank < 1).mean()), 3), recall_at_5=round(float((rank < 5).mean()), 3),
                chance_at_1=round(1 / n, 3), chance_at_5=round(min(5, n) / n, 3),
                label_accuracy=round(float(np.mean([p == r["label"] for p, r in zip(predicted, rows)])), 3),
                label_majority=round(max(pd.Series([r["label"] for r in rows]).value_counts()) / n, 3))


def distances(reference, other, fad_shrinkage: float = 0.0) -> dict:
    """FAD and KAD (value, 95 % interval) of embeddings ``other`` against ``reference``."""
    fad = quality.frechet_distance(other, reference, shrinkage=fad_shrinkage)
    kad = quality.kernel_distance(other, reference)
    return dict(fad=round(fad.value, 4), fad_low=round(fad.low, 4), fad_high=round(fad.high, 4),
                kad=round(kad.value, 4), kad_low=round(kad.low, 4), kad_high=round(kad.high, 4),
                clips=len(other), reference_clips=len(reference), fad_shrinkage=fad_shrinkage)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=OFFLINE_PATH, help="the evaluator")
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/evaluator/validation"),
                        help="where validation.json and validation.png go (the shipped ones are beside the evaluator's "
                             "weights: name that folder to replace them)")
    args = parser.parse_args(argv)
    if not (args.corpus / "clips.csv").is_file():
        parser.error(f"--corpus {args.corpus}: no clips.csv there; build the corpus with `make corpus`")
    import torch

    torch.set_num_threads(args.threads)
    evaluator = Evaluator.offline(args.path)
    result: dict = dict(evaluator=str(args.path), retrieval={}, floor={})
    for seconds in (2.56, 10.24):
        audio, rows = read_clips(args.corpus, "heldout", seconds)
        chosen = one_per_source(rows)
        result["retrieval"][f"{seconds} s"] = retrieval(evaluator, audio[chosen], [rows[i] for i in chosen])
        print(seconds, result["retrieval"][f"{seconds} s"], flush=True)

    audio, rows = read_clips(args.corpus, "heldout", 2.56)
    first, second = split_by_source(rows)
    reference = evaluator.embed(audio[first], SAMPLING_RATE).audio
    result["floor"]["2.56 s"] = distances(reference, evaluator.embed(audio[second], SAMPLING_RATE).audio)
    long_audio, long_rows = read_clips(args.corpus, "heldout", 10.24)
    a, b = split_by_source(long_rows)
    long = evaluator.embed(long_audio, SAMPLING_RATE).audio
    result["floor"]["10.24 s"] = distances(long[a], long[b], fad_shrinkage=0.1)  # fewer clips than dimensions
    print("floor", result["floor"], flush=True)

    curves = []
    for kind, levels in DEGRADATIONS.items():
        for step, level in enumerate((None, *levels)):
            clips = audio[second] if level is None else degrade(audio[second], kind, level, seed=step)
            row = distances(reference, evaluator.embed(clips, SAMPLING_RATE).audio)
            curves.append(dict(degradation=kind, step=step, level="clean" if level is None else level, **row))
            print(curves[-1], flush=True)
    result["degradation"] = curves
    table = pd.DataFrame(curves)
    result["monotonic"] = {kind: dict(fad=bool(group.fad.is_monotonic_increasing),
                                      kad=bool(group.kad.is_monotonic_increasing))
                           for kind, group in table.groupby("degradation", sort=False)}
    write_json(args.out / "validation.json", result)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for ax, metric in zip(axes, ("fad", "kad")):
        for kind, group in table.groupby("degradation", sort=False):
            ax.errorbar(group.step, group[metric], yerr=[group[metric] - group[f"{metric}_low"],
                                                         group[f"{metric}_high"] - group[metric]],
                        marker="o", capsize=3, label=kind)
        ax.axhline(result["floor"]["2.56 s"][metric], color="grey", ls=":", lw=1)
        ax.set(xlabel="degradation step (0: clean; the levels in validation.json)", ylabel=metric.upper(),
               yscale="symlog" if metric == "kad" else "log",
               title=f"{metric.upper()} of degraded held-out clips against clean ones")
    axes[0].legend(fontsize=8)
    save_figure(fig, args.out / "validation.png", dpi=100)
    print(f"wrote {args.out}/validation.json and validation.png")


if __name__ == "__main__":
    main()
