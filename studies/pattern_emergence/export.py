"""A study run's EMA weights as a pipeline folder: ``python -m studies.pattern_emergence.export VARIANT --out DIR``.

Loads ``WORK/VARIANT/checkpoint.pt`` (:mod:`studies.pattern_emergence.run`) into its variant's pipeline and writes
it with :func:`minildm.train.save_pipeline` (UNet in fp16, ``training_log.csv``, ``recipe.json``: the variant,
its settings and the steps trained) into the new folder ``--out``, ready
for ``load_minildm`` and ``studies.minildm.evaluation``. This is how MiniLDM 3 left its run (``make minildm3``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from minildm.train import Training, save_pipeline

from .run import VARIANTS, start_pipeline, training_set


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=sorted(VARIANTS), help="the run's recipe")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the pipeline (never an existing one)")
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="the corpus the run trained on")
    parser.add_argument("--work", type=Path, default=Path("runs/pattern_emergence"), help="the run's --work")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    args = parser.parse_args(argv)
    checkpoint = args.work / args.variant / "checkpoint.pt"
    if args.out.exists():
        parser.error(f"--out {args.out} exists; export never replaces a folder: give a new one")
    if not checkpoint.is_file():
        parser.error(f"no {checkpoint}: run python -m studies.pattern_emergence.run {args.variant} first")
    variant = VARIANTS[args.variant]
    mels, captions = training_set(variant, args.corpus, args.work, args.seed)
    pipe = start_pipeline(variant, mels, captions, args.seed)
    training = Training(pipe, argparse.Namespace(**asdict(variant), steps=1, seed=args.seed), settings={})
    training.load(checkpoint)
    recipe = dict(variant=args.variant, **asdict(variant), steps=training.step, seed=args.seed,
                  trained_minutes=round(training.trained_s / 60, 1), command="python -m studies.pattern_emergence.run")
    out = save_pipeline(pipe, training, args.out, recipe)
    print(f"{out}: {args.variant} at step {training.step} ({training.trained_s / 60:.1f} min trained)")


if __name__ == "__main__":
    main()
