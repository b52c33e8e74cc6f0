"""One training run of the pattern-emergence study: ``python -m studies.pattern_emergence.run VARIANT``.

Trains MiniLDM under one recipe (a named variant of MiniLDM 2's, :data:`VARIANTS`) and, every ``--probe-every``
steps, measures per block the same-frequency ratio, the focus contrast, the sink strength, the same-time ratio and
the share of own-row heads (:mod:`analysis.metrics`) of the EMA and the raw weights on held-out corpus clips of 2.56
and 10.24 s noised to t = 500 and 250. Everything lands in ``--work/VARIANT``: ``checkpoint.pt`` (atomic, every probe)
and ``curve.csv`` (one row per probe, weights, length, timestep and block), so an interrupted run resumes where its
last checkpoint stopped. ``python -m studies.pattern_emergence.report`` gathers the curves.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import analysis
from litefocus.files import write_csv
from minildm.codec import MelCodec
from minildm.corpus import caption_vocabulary, clip_rows, read_clips
from minildm.pipeline import MINILDM2_PATH, load_minildm
from minildm.train import Training, build, corpus_dataset, initialise_query_key, set_latent_statistics

from studies.minildm.evaluation import heldout_choice

TIMESTEPS = (500, 250)
PROBE_SECONDS = (2.56, 10.24)
STATISTICS = ("same_frequency_ratio", "focus_contrast", "sink_strength", "same_time_ratio")


@dataclass(frozen=True)
class Variant:
    """A recipe: MiniLDM 2's (v prediction, lr 1e-3, 500 warm-up steps then cosine, weight decay 0.01, batch 24,
    2.56 s clips, the whole corpus) with some entries changed. ``init``: ``"minildm2"`` continues the shipped
    MiniLDM 2, ``"scratch"`` starts from a seeded initialisation. ``unet``: entries replacing
    ``minildm.train.UNET_CONFIG``'s. ``category_weights``: how often each corpus category's clips are drawn relative
    to the others (1 = as in the corpus). ``query_key_scale``, ``query_key_tied``: how the self-attentions' query and
    key projections start (:func:`minildm.train.initialise_query_key`; 1.0 and untied: diffusers' initialisation),
    ``query_key_blocks`` in which blocks (module-name prefixes; empty: all)."""

    note: str
    init: str = "scratch"
    prediction_type: str = "v_prediction"
    lr: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 1e-2
    batch: int = 24
    seconds: float = 2.56
    unet: dict = field(default_factory=dict)
    category_weights: dict = field(default_factory=dict)
    query_key_scale: float = 1.0
    query_key_tied: bool = False
    query_key_blocks: tuple[str, ...] = ()


VARIANTS = {
    "minildm2_continued": Variant("MiniLDM 2's weights trained on under its own recipe", init="minildm2"),
    "minildm2_recipe": Variant("MiniLDM 2's recipe from scratch: the control"),
    "epsilon_lr2e-4": Variant("epsilon prediction, lr 2e-4 constant after warm-up, no weight decay (the first probe's "
                              "recipe, the only one that rose steadily in short runs)", prediction_type="epsilon",
                              lr=2e-4, schedule="constant", weight_decay=0.0),
    "head_dim_32": Variant("2 heads per level: head dim 32 at level 1 as AudioLDM2's", unet=dict(attention_head_dim=2)),
    "two_resnets": Variant("two resnets (and transformers) per level as AudioLDM2's", unet=dict(layers_per_block=2)),
    "environment_heavy": Variant("environment clips drawn 3x as often, speech 1/3 as often",
                                 category_weights=dict(environment=3.0, speech=1 / 3)),
    "mimetic_2.5": Variant("self-attention keys initialised equal to queries (mimetic), both 2.5x diffusers' scale",
                           query_key_scale=2.5, query_key_tied=True),
    "query_key_2.5": Variant("query and key projections initialised at 2.5x diffusers' scale, untied: mimetic_2.5's "
                             "control", query_key_scale=2.5),
    "mimetic_4": Variant("mimetic_2.5 with both projections 4x diffusers' scale: does a sharper start keep the down "
                         "blocks' focus against the sink?", query_key_scale=4.0, query_key_tied=True),
    "mimetic_down_4": Variant("mimetic_4 in the down blocks only, the mid and up blocks as diffusers starts them: "
                              "does focus that the start puts only where the paper finds most of it stay there?",
                              query_key_scale=4.0, query_key_tied=True, query_key_blocks=("down_blocks",)),
    "clips_5.12": Variant("5.12 s training clips, batch 12 (the same latent tokens a step)", seconds=5.12, batch=12),
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=sorted(VARIANTS), help="the recipe (see VARIANTS in this file)")
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="minildm.corpus's folder")
    parser.add_argument("--work", type=Path, default=Path("runs/pattern_emergence"),
                        help="the run goes to WORK/VARIANT (checkpoint.pt, curve.csv); the training sets are cached "
                             "in WORK")
    parser.add_argument("--steps", type=int, default=4000, help="training steps (the cosine schedule's length)")
    parser.add_argument("--minutes", type=float, default=45.0, help="stop (resumable) after this much training time")
    parser.add_argument("--probe-every", type=int, default=250, help="steps between probes")
    parser.add_argument("--probe-clips", type=int, default=8, help="held-out clips per probe length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if min(args.steps, args.probe_every, args.probe_clips, args.threads) < 1 or not args.minutes > 0:
        parser.error("--steps, --probe-every, --probe-clips and --threads must be at least 1, --minutes positive")
    if not (args.corpus / "manifest.json").is_file():
        parser.error(f"--corpus {args.corpus}: no manifest.json there; build the corpus with `make corpus`")
    return args


def training_set(variant: Variant, corpus: Path, work: Path, seed: int) -> tuple[torch.Tensor, list[str]]:
    """The corpus' train log-mels ``(clips, frames, 64)`` and captions at the variant's clip length, each category's
    clips repeated (or subsampled, seeded) by its weight."""
    mels, captions = corpus_dataset(corpus, variant.seconds, MelCodec(), work / f"dataset_{variant.seconds}.pt")
    if not variant.category_weights:
        return mels, captions
    categories = np.array([r["category"] for r in clip_rows(corpus, "train", variant.seconds)])
    unknown = set(variant.category_weights) - set(categories)
    if unknown:
        raise ValueError(f"category_weights names {sorted(unknown)}; the corpus has {sorted(set(categories))}")
    rng = np.random.default_rng(seed)
    index = []
    for category in sorted(set(categories)):
        members = np.flatnonzero(categories == category)
        weight = variant.category_weights.get(category, 1.0)
        whole, part = int(weight), weight - int(weight)
        index += [members] * whole + [rng.choice(members, int(round(part * members.size)), replace=False)]
    index = np.sort(np.concatenate(index))
    return mels[torch.from_numpy(index)], [captions[i] for i in index]


def start_pipeline(variant: Variant, mels: torch.Tensor, captions: list[str], seed: int):
    """MiniLDM 2 as shipped, or a fresh seeded pipeline with the corpus' vocabulary and latent statistics."""
    if variant.init == "minildm2":
        pipe = load_minildm(MINILDM2_PATH)
        if pipe.scheduler.config.prediction_type != variant.prediction_type:
            raise ValueError("continuing MiniLDM 2 keeps its prediction type")
        return pipe
    pipe = build(seed, variant.prediction_type, caption_vocabulary(captions), variant.unet)
    if variant.query_key_scale != 1.0 or variant.query_key_tied:
        initialise_query_key(pipe.unet, variant.query_key_scale, variant.query_key_tied, variant.query_key_blocks)
    set_latent_statistics(pipe.codec, mels, seed)
    return pipe


class Probe:
    """Held-out clips noised to :data:`TIMESTEPS`, the same at every probe: ``measure(unet, caption_encoder)`` gives
    one row per (length, timestep, block) with the means over modules and heads of :data:`STATISTICS` and the share
    of heads whose :func:`analysis.metrics.head_class` is own_row."""

    def __init__(self, corpus: Path, codec: MelCodec, clips: int):
        self.inputs = []
        for seconds in PROBE_SECONDS:
            audio, rows = read_clips(corpus, "heldout", seconds)
            chosen = heldout_choice(rows, clips, seed=3)
            with torch.no_grad():
                x0 = codec.encode(codec.mel(torch.from_numpy(audio[chosen])))
            generator = torch.Generator().manual_seed(int(seconds * 100))
            noise = torch.randn(x0.shape, generator=generator)
            self.inputs.append((seconds, x0, noise, [rows[i]["caption"] for i in chosen]))

    @torch.no_grad()
    def measure(self, unet, caption_encoder, alphas: torch.Tensor) -> list[dict]:
        unet.eval()
        out = []
        for seconds, x0, noise, captions in self.inputs:
            context = caption_encoder(captions)
            with analysis.record_attention(unet, queries=1, guidance="all") as recorder:
                for t in TIMESTEPS:
                    a = alphas[t]
                    unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=context)
            ds = analysis.sparsity_dataset(recorder)
            for step, t in enumerate(TIMESTEPS):
                at = ds.sel(step=step)
                for block in sorted(set(at.block.values)):
                    modules = at.sel(module=at.block == block)
                    row = dict(seconds=seconds, timestep=t, block=block)
                    row.update({name: round(float(modules[name].mean()), 4) for name in STATISTICS})
                    row["own_row_heads"] = round(float((modules.head_class == "own_row").mean()), 4)
                    out.append(row)
        return out


def read_curve(path: Path, up_to_step: int) -> list[dict]:
    """The rows of an earlier run's curve up to its checkpoint's step (later ones were not checkpointed)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["step"]) <= up_to_step]


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    variant = VARIANTS[args.variant]
    torch.set_num_threads(args.threads)
    run = args.work / args.variant
    run.mkdir(parents=True, exist_ok=True)
    mels, captions = training_set(variant, args.corpus, args.work, args.seed)
    pipe = start_pipeline(variant, mels, captions, args.seed)
    recipe = {k: v for k, v in asdict(variant).items() if k != "note"}  # a reworded note does not block a resume
    settings = dict(variant=args.variant, **recipe, steps=args.steps, seed=args.seed,
                    corpus=(args.corpus / "manifest.json").read_text())
    training = Training(pipe, argparse.Namespace(**asdict(variant), steps=args.steps, seed=args.seed), settings)
    checkpoint = run / "checkpoint.pt"
    training.resume(checkpoint)
    curve_path = run / "curve.csv"
    curve = read_curve(curve_path, training.step)
    probe = Probe(args.corpus, pipe.codec, args.probe_clips)
    alphas = pipe.scheduler.alphas_cumprod

    def probe_now() -> None:
        loss = float(np.mean([h[2] for h in training.history[-100:]])) if training.history else float("nan")
        for weights, modules in (("ema", training.ema), ("raw", training.trainable)):
            for row in probe.measure(modules["unet"], modules["caption_encoder"], alphas):
                curve.append(dict(variant=args.variant, step=training.step,
                                  trained_minutes=round(training.trained_s / 60, 2), loss=round(loss, 5),
                                  weights=weights, **row))
        training.trainable.train()
        training.save(checkpoint)
        write_csv(curve_path, curve)

    if not curve or int(curve[-1]["step"]) < training.step:
        probe_now()
    progress = tqdm(total=args.steps, initial=training.step, desc=args.variant, unit="step")
    deadline = training.trained_s + args.minutes * 60
    while training.step < args.steps and training.trained_s < deadline:
        training.train_step(pipe, mels, captions, variant.batch)
        progress.update(1)
        if training.step % args.probe_every == 0:
            probe_now()
            last = [r for r in curve if r["weights"] == "ema" and r["block"] == "down_blocks.1"]
            progress.set_postfix(loss=f"{last[-1]['loss']}", ratio=last[-1]["same_frequency_ratio"],
                                 contrast=last[-1]["focus_contrast"])
    progress.close()
    if int(curve[-1]["step"]) < training.step:
        probe_now()
    print(f"{args.variant}: step {training.step}, {training.trained_s / 60:.1f} min trained; curve in {curve_path}")


if __name__ == "__main__":
    main()
