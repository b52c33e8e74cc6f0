"""The data's ceiling: where the optimal linear denoiser of the corpus pools, ``python -m studies.pattern_emergence.ceiling``.

The best linear estimate of clean level-1 latent tokens ``x`` from noisy ones ``y = sqrt(a) x + sqrt(1 - a) e`` is the
Wiener filter ``W = sqrt(a) S (a S + (1 - a) I / 4)^-1``, with ``S`` the covariance of ``x`` (the noise of a 2x2 mean
is a quarter of a latent value's). Level-1 tokens are the standardized latents of 2.56 s training clips averaged over
2 x 2 (time, frequency) cells: a (32, 8) grid of 16 channels, as the UNet's ``down_blocks.1`` sees it. ``S`` is
estimated assuming stationarity in time (one cross-covariance per time lag, averaged over every position and clip),
which a few thousand clips fix far better than a free 4096 x 4096 covariance. The weight query token ``i`` gives key
token ``j`` is ``|W_ij|`` (Frobenius norm of its 16 x 16 block), normalised over ``j``: an attention-like map whose
:mod:`analysis.metrics` statistics (ratio, contrast, sink, same-time) are the ceiling a denoiser that learned the
data's second-order statistics would reach. Written per corpus category and timestep to ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from analysis import metrics
from litefocus.files import write_csv
from minildm.codec import MelCodec
from minildm.corpus import clip_rows
from minildm.train import build, corpus_dataset, set_latent_statistics

TIMESTEPS = (500, 250)


def level1_tokens(latents: torch.Tensor) -> np.ndarray:
    """Latents ``(clips, 16, T, 16)`` -> level-1 tokens ``(clips, T/2, 8, 16)`` (time, freq, channel): 2x2 means."""
    pooled = torch.nn.functional.avg_pool2d(latents, 2)
    return pooled.permute(0, 2, 3, 1).double().numpy()


def stationary_covariance(tokens: np.ndarray) -> np.ndarray:
    """The covariance ``(T F C, T F C)`` of tokens ``(clips, T, F, C)`` (time-major flattening) under stationarity in
    time: the mean per (freq, channel) over clips and times removed, one cross-covariance per lag ``d``
    (``K_d = E[x_t x_{t+d}^T]`` over every clip and position), ``S[t, t'] = K_{t' - t}`` (``K_-d = K_d^T``)."""
    clips, time_bins, freq_bins, channels = tokens.shape
    x = (tokens - tokens.mean((0, 1))).reshape(clips, time_bins, freq_bins * channels)
    size = freq_bins * channels
    lags = [np.einsum("nti,ntj->ij", x[:, : time_bins - d], x[:, d:]) / (clips * (time_bins - d))
            for d in range(time_bins)]
    covariance = np.empty((time_bins, size, time_bins, size))
    for t in range(time_bins):
        for u in range(time_bins):
            covariance[t, :, u, :] = lags[u - t] if u >= t else lags[t - u].T
    covariance = covariance.reshape(time_bins * size, time_bins * size)
    return 0.5 * (covariance + covariance.T)


def wiener_pooling(eigen: tuple[np.ndarray, np.ndarray], alpha_bar: float, grid: tuple[int, int], channels: int
                   ) -> xr.DataArray:
    """Maps ``(q_time, q_freq, k_time, k_freq)``: the share of the Wiener filter's weight each query token gives each
    key token (block norms, normalised per query), from the covariance's ``eigen`` decomposition (values, vectors)."""
    values, vectors = eigen
    values = np.clip(values, 0, None)
    gain = np.sqrt(alpha_bar) * values / (alpha_bar * values + (1 - alpha_bar) / 4)
    wiener = (vectors * gain) @ vectors.T
    time_bins, freq_bins = grid
    blocks = wiener.reshape(time_bins, freq_bins, channels, time_bins, freq_bins, channels)
    weight = np.sqrt((blocks ** 2).sum((2, 5)))
    weight /= weight.sum((2, 3), keepdims=True)
    axes = {name: np.arange(n) for name, n in
            dict(q_time=time_bins, q_freq=freq_bins, k_time=time_bins, k_freq=freq_bins).items()}
    return xr.DataArray(weight, dims=tuple(axes), coords=axes)


def ceiling_rows(tokens: np.ndarray, alphas: torch.Tensor, label: str) -> list[dict]:
    """One row per timestep: the statistics of the Wiener pooling of ``tokens`` ``(clips, T, F, C)``."""
    eigen = np.linalg.eigh(stationary_covariance(tokens))
    _, time_bins, freq_bins, channels = tokens.shape
    rows = []
    for t in TIMESTEPS:
        maps = wiener_pooling(eigen, float(alphas[t]), (time_bins, freq_bins), channels)
        own_token = maps.where((maps.k_time == maps.q_time) & (maps.k_freq == maps.q_freq), 0.0)
        rows.append(dict(
            data=str(label), clips=len(tokens), timestep=t,
            own_token_mass=round(float(own_token.sum(("k_time", "k_freq")).mean()), 4),
            same_frequency_ratio=round(float(metrics.same_frequency_ratio(maps)), 4),
            focus_contrast=round(float(metrics.focus_contrast(maps)), 4),
            sink_strength=round(float(metrics.sink_strength(maps)), 4),
            same_time_ratio=round(float(metrics.same_time_ratio(maps)), 4),
            own_row_mass=round(float(metrics.same_frequency_mass(maps)), 4),
            same_time_mass=round(float(metrics.same_time_mass(maps)), 4)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="minildm.corpus's folder")
    parser.add_argument("--work", type=Path, default=Path("runs/pattern_emergence"), help="the training set cache")
    parser.add_argument("--out", type=Path, default=Path("runs/pattern_emergence/ceiling.csv"),
                        help="the table (the committed one is data/pattern_emergence/ceiling.csv: name it to replace)")
    args = parser.parse_args(argv)
    if not (args.corpus / "manifest.json").is_file():
        parser.error(f"--corpus {args.corpus}: no manifest.json there; build the corpus with `make corpus`")
    mels, _ = corpus_dataset(args.corpus, 2.56, MelCodec(), args.work / "dataset_2.56.pt")
    pipe = build(0)
    set_latent_statistics(pipe.codec, mels, seed=0)
    categories = np.array([r["category"] for r in clip_rows(args.corpus, "train", 2.56)])
    with torch.no_grad():
        tokens = np.concatenate([level1_tokens(pipe.codec.encode(mels[i: i + 512].float()))
                                 for i in range(0, len(mels), 512)])
    alphas = pipe.scheduler.alphas_cumprod
    rows = ceiling_rows(tokens, alphas, "corpus")
    for category in sorted(set(categories)):
        rows += ceiling_rows(tokens[categories == category], alphas, category)
    write_csv(args.out, rows)
    print(f"{args.out}:")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
