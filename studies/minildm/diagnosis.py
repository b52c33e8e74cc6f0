"""Why a MiniLDM cannot (or can) sample, and its attention on real inputs: ``python -m studies.minildm.diagnosis``.

1. Denoising error by timestep against the trivial predictor ``eps = x_t / sqrt(1 - alpha_bar)``, on real 10.24 s
   held-out clips of the corpus (a model worse than trivial at high noise cannot start a trajectory from pure noise).
2. DDIM from real latents noised to t = 519, 199, 79 (in-distribution starts) and from pure noise: final RMS error
   and the std of the sampled log-mels against real ones.
3. Same-frequency ratio, LiteFocus output error and attention mass per key frequency row (a sink row draws far
   more than 1/F from every query) per block on real 10.24 s clips noised to t = 500 and 250, for
   the model and for the same architecture at random initialisation.
Writes ``diagnosis.json`` beside the weights and prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from litefocus.files import write_json

from minildm.corpus import read_clips
from minildm.pipeline import DEFAULT_PATH, load_minildm
from minildm.train import build


def denoising_errors(pipe, x0: torch.Tensor, context: torch.Tensor, generator: torch.Generator) -> dict:
    """Per timestep: the model's noise-prediction error and that of the trivial predictor ``noisy / sqrt(1 - a)``."""
    alphas, prediction = pipe.scheduler.alphas_cumprod, pipe.scheduler.config.prediction_type
    errors = {}
    for t in (999, 900, 600, 300, 100):
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas[t]
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        predicted = pipe.unet(noisy, t, encoder_hidden_states=context).sample
        eps = predicted if prediction == "epsilon" else a.sqrt() * predicted + (1 - a).sqrt() * noisy
        errors[t] = dict(model=float(torch.nn.functional.mse_loss(eps, noise)),
                         trivial=float(torch.nn.functional.mse_loss(noisy / (1 - a).sqrt(), noise)))
    return errors


def ddim_from(pipe, context: torch.Tensor, start: int, x: torch.Tensor) -> torch.Tensor:
    """25-step DDIM from timestep ``start`` down, starting at ``x``."""
    pipe.scheduler.set_timesteps(25)
    for t in pipe.scheduler.timesteps[pipe.scheduler.timesteps <= start]:
        x = pipe.scheduler.step(pipe.unet(x, t, encoder_hidden_states=context).sample, t, x).prev_sample
    return x


def attention_at_noised_real(model, context: torch.Tensor, x0: torch.Tensor, alphas: torch.Tensor) -> dict:
    """Per timestep (500, 250): the same-frequency ratio and sparse error per block, and the mass on each key
    frequency row, of ``model``'s self-attention on real latents ``x0`` noised to that timestep."""
    import analysis
    from analysis import metrics

    result = {}
    for t in (500, 250):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        noisy = alphas[t].sqrt() * x0 + (1 - alphas[t]).sqrt() * noise
        with analysis.record_attention(model.unet, queries=4, guidance="all") as rec, torch.no_grad():
            model.unet(noisy, t, encoder_hidden_states=context)
        ds = analysis.sparsity_dataset(rec)

        def by_block(variable: str) -> dict:
            means = ds[variable].mean(("head", "step")).groupby("block").mean().to_series()
            return {b: round(float(x), 3) for b, x in means.items()}

        rows = rec.rows
        sink = {}  # mass on each key frequency row, mean over modules, heads and kept queries, per block
        for block in sorted(set(ds.block.values)):
            masses = [metrics.key_frequency_mass(rows[m]).mean(("step", "head")).values
                      for m in ds.module.values if ds.block.sel(module=m) == block]
            sink[block] = [round(float(x), 3) for x in np.mean(masses, axis=0)]
        result[t] = dict(same_frequency_ratio=by_block("same_frequency_ratio"),
                         sparse_error=by_block("sparse_error"), key_frequency_mass=sink)
    return result


def main(argv: list[str] | None = None) -> None:
    """On held-out real clips: denoising errors, DDIM from noised real latents and from noise, and attention of the
    trained model against its random initialisation; into ``PATH/diagnosis.json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="the corpus it was trained on")
    parser.add_argument("--clips", type=int, default=6, help="held-out 10.24 s clips (spread over the corpus)")
    parser.add_argument("--out", type=Path, default=Path("runs/minildm/diagnosis.json"),
                        help="the result (the shipped one is data/minildm/diagnosis.json: name it to replace it)")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    torch.set_num_threads(2)
    from .evaluation import heldout_choice

    pipe = load_minildm(args.path)
    pipe.set_progress_bar_config(disable=True)
    alphas = pipe.scheduler.alphas_cumprod
    audio, rows = read_clips(args.corpus, "heldout", 10.24)
    chosen = heldout_choice(rows, args.clips, seed=2)
    mels = pipe.codec.mel(torch.from_numpy(audio[chosen]))
    x0 = pipe.codec.encode(mels)
    captions = [rows[i]["caption"] for i in chosen]
    generator = torch.Generator().manual_seed(0)
    out: dict = dict(prediction_type=pipe.scheduler.config.prediction_type)
    with torch.no_grad():
        context = pipe.caption_encoder(captions)
        out["epsilon_mse_vs_trivial"] = denoising_errors(pipe, x0, context, generator)
        out["ddim_from_noised_real_rms_error"] = {
            start: float((ddim_from(pipe, context, start, alphas[start].sqrt() * x0 + (1 - alphas[start]).sqrt()
                                    * torch.randn(x0.shape, generator=generator)) - x0).pow(2).mean().sqrt())
            for start in (519, 199, 79)
        }
        sampled = pipe.codec.decode(ddim_from(pipe, context, 999, torch.randn(x0.shape, generator=generator)))
        out["log_mel_std"] = dict(sampled_from_noise=float(sampled.std()), real=float(mels.std()))

    random_model = build(seed=1, words=pipe.caption_encoder.config.vocabulary)
    random_model.codec = pipe.codec
    with torch.no_grad():
        random_context = random_model.caption_encoder(captions)
    out["attention_in_distribution"] = dict(trained=attention_at_noised_real(pipe, context, x0, alphas),
                                            random_init=attention_at_noised_real(random_model, random_context, x0,
                                                                                 alphas))
    out["clips"] = dict(sources=[rows[i]["source"] for i in chosen], seconds=10.24, captions=captions)
    write_json(args.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
