"""What LiteFocus, its ablations and Token Merging cost in fidelity on MiniLDM: ``python -m studies.minildm.fidelity``.

For each configuration of ``analysis.ablations``, MiniLDM generates the same held-out captions from the same noise at
4x and 8x its training length (10.24 and 20.48 s; AudioLDM2 at 40.96 and 81.92 s is at the same multiples of its
10.24 s). Scored per configuration:

- ``relative_error``: ``||mel - mel_dense|| / ||mel_dense||`` of the generated log-mel, median over prompts (how far
  the sample moves from the dense one drawn from the same noise);
- ``category_accuracy``, ``label_accuracy``: the caption classifiers shipped beside the weights
  (``studies.minildm.evaluation`` fits them on the corpus) on the generated clips (does the sample still say what
  its caption says), beside dense's; the captions are the shipped held-out ones of 10.24 s clips;
- the same for dense attention from other noise (``dense_other_noise``): the scale of a wholly different sample, and
  how far the accuracies move between two draws.

A configuration whose ratio depends on length (``keys_fixed_from_s``) uses the ratio it has at the AudioLDM2 length
of the same multiple (e.g. 81.92 s for MiniLDM's 20.48 s); the ``ratio`` column shows it. Generated log-mels are kept
per length and configuration in ``--cache`` (netCDF, named by a hash of the weights and every setting), so an
interrupted run resumes; the table goes to
``data/minildm/fidelity.csv`` (written atomically).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch
import xarray as xr

from litefocus.files import write_atomic, write_csv
from litefocus.models import AUDIOLDM2_TRAINING_SECONDS, weights_fingerprint
from minildm.classifiers import CaptionClassifiers, accuracy
from minildm.pipeline import DEFAULT_PATH, TRAINING_SECONDS, load_minildm

from analysis.ablations import ABLATIONS, ablations, generate_under, relative_error

OTHER_NOISE = "dense_other_noise"


def audioldm2_seconds(seconds: float) -> float:
    """The AudioLDM2 length at the same multiple of its training length as MiniLDM's ``seconds``."""
    return seconds * AUDIOLDM2_TRAINING_SECONDS / TRAINING_SECONDS


def cache_key(weights: str, config, captions: list[str], seconds: float, steps: int, seed: int) -> str:
    """What determines a cached generation: the weights' sha256, the configuration at this length, the captions,
    length, steps, seed, and how LiteFocus draws its keys; 16 hex digits of their sha256."""
    settings = dict(weights=weights, configuration=asdict(config.at_length(audioldm2_seconds(seconds))),
                    captions=captions, seconds=seconds, steps=steps, seed=seed, keys="seed-module-timestep hash v1")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def generated(pipe, config, captions: list[str], seconds: float, steps: int, cache: Path | None,
              seed: int = 0, weights: str | None = None) -> xr.DataArray:
    """Log-mels ``(configuration=1, prompt, frame, mel)`` of ``captions`` under ``config``, from the cache if there.

    Cache files are named by :func:`cache_key` (``weights``: :func:`weights_fingerprint` of ``pipe``), so a cache
    never serves generations of other weights or settings."""
    path = None
    if cache is not None:
        key = cache_key(weights or weights_fingerprint(pipe), config, captions, seconds, steps, seed)
        path = cache / f"{seconds:.2f}s_{config.name}_{key}.nc"
    if path is not None and path.is_file():
        return xr.load_dataarray(path)
    mels = generate_under(pipe, [config.at_length(audioldm2_seconds(seconds))], captions, audio_length_in_s=seconds,
                          num_inference_steps=steps, output_type="mel", seed=seed)
    mels = mels.rename(dim_0="frame", dim_1="mel")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: mels.to_netcdf(tmp, engine="h5netcdf"))
    return mels


def heldout_captions(path: Path, prompts: int) -> list[dict]:
    """The first ``prompts`` held-out caption rows of 10.24 s clips shipped beside the weights at ``path``."""
    from .evaluation import HELDOUT_CAPTIONS

    table = pd.read_csv(path / HELDOUT_CAPTIONS)
    rows = table[table.seconds == 10.24].head(prompts).to_dict("records")
    if len(rows) < prompts:
        raise ValueError(f"--prompts {prompts}: {path / HELDOUT_CAPTIONS} has only {len(rows)} held-out captions")
    return rows


def fidelity_table(pipe, configurations, seconds_list: list[float], heldout: list[dict],
                   classifiers: CaptionClassifiers, steps: int, cache: Path | None) -> pd.DataFrame:
    """One row per (seconds, configuration): ratio, relative error to dense, caption-attribute accuracies.

    A first row per length, ``dense_other_noise``, is dense attention from other noise (seed 1): the scale of a
    wholly different sample, and how much the accuracies move between two draws of the same prompts.
    """
    captions = [r["caption"] for r in heldout]
    dense = next(c for c in configurations if c.kind == "dense")
    reference = replace(dense, name=OTHER_NOISE)
    rows = []
    weights = weights_fingerprint(pipe)
    for seconds in seconds_list:
        other_noise = generated(pipe, dense, captions, seconds, steps, cache, seed=1, weights=weights)
        mels = xr.concat([generated(pipe, c, captions, seconds, steps, cache, weights=weights) for c in configurations]
                         + [other_noise.assign_coords(configuration=[OTHER_NOISE])], dim="configuration")
        errors = relative_error(mels)
        for config in [reference, *configurations]:
            mel = torch.from_numpy(mels.sel(configuration=config.name).values)
            scored = accuracy(classifiers.predict(mel), heldout)
            rows.append(dict(
                seconds=seconds, training_multiple=seconds / TRAINING_SECONDS,
                audioldm2_seconds=audioldm2_seconds(seconds),
                configuration=config.name, kind=config.kind, blocks=" ".join(config.blocks),
                ratio=config.ratio_at(audioldm2_seconds(seconds)),
                same_frequency=config.same_frequency, cross_frequency=config.cross_frequency,
                relative_error=float(errors.sel(configuration=config.name).median()),
                relative_error_max=float(errors.sel(configuration=config.name).max()),
                category_accuracy=scored["category"]["accuracy"], label_accuracy=scored["label"]["accuracy"],
                category_majority=scored["category"]["majority"], label_majority=scored["label"]["majority"],
                prompts=len(heldout), steps=steps))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="MiniLDM weights")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.24, 20.48])
    parser.add_argument("--prompts", type=int, default=16, help="held-out captions per length")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--configurations", nargs="+", choices=[c.name for c in ABLATIONS],
                        help="default: all (dense is always included)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("results/fidelity"),
                        help="generated log-mels, reused by later runs with the same weights and settings")
    parser.add_argument("--csv", default="results/minildm/fidelity.csv",
                        help="'' prints only (the model card's table is data/minildm/fidelity.csv: name it to replace "
                             "it)")
    args = parser.parse_args(argv)
    if args.prompts < 1 or min(args.seconds) < 0.32 or args.steps < 1:
        parser.error("--prompts must be at least 1, --seconds at least 0.32 and --steps at least 1")
    torch.set_num_threads(args.threads)
    pipe = load_minildm(args.path)
    pipe.set_progress_bar_config(disable=True)
    rows = heldout_captions(args.path, args.prompts)
    classifiers = CaptionClassifiers.from_pretrained(args.path / "caption_classifiers")
    table = fidelity_table(pipe, ablations(args.configurations), args.seconds, rows, classifiers, args.steps,
                           args.cache)
    print(table[["seconds", "configuration", "ratio", "relative_error", "category_accuracy", "label_accuracy"]]
          .to_string(index=False, float_format="%.3f"))
    if args.csv:
        write_csv(Path(args.csv), table)
        print("wrote", args.csv)


if __name__ == "__main__":
    main()
