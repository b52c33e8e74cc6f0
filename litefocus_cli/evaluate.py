"""``litefocus evaluate GENERATED_DIR --reference DIR [--captions FILE]``: FAD, KAD, KL and CLAP score of a folder
of generated audio against a folder of reference audio, with 95 % bootstrap intervals (``analysis.quality``)."""

from __future__ import annotations

import argparse
from pathlib import Path

EVALUATOR_HELP = ("'offline' (default: the evaluator trained here, data/evaluator), a folder of one trained with "
                  "python -m studies.evaluator.training, or 'public' (CLAP laion/clap-htsat-unfused and PANNs "
                  "CNN14; needs their weights, see analysis.evaluator)")


def add_parser(commands) -> argparse.ArgumentParser:
    sub = commands.add_parser("evaluate", help="FAD, KAD, KL and CLAP score of generated audio against reference audio")
    sub.add_argument("generated", type=Path, help="folder of generated audio (.wav, .flac, .ogg)")
    sub.add_argument("--reference", type=Path, required=True, help="folder of reference audio")
    sub.add_argument("--captions", type=Path, default=None,
                     help="captions of the generated clips: a CSV with columns file,caption, or one caption a line "
                          "in the sorted order of the generated files (the CLAP score needs them)")
    sub.add_argument("--evaluator", default="offline", help=EVALUATOR_HELP)
    sub.add_argument("--fad-shrinkage", type=float, default=None,
                     help="covariance shrinkage for FAD in [0, 1] (default: 0, or 0.1 when a set has no more clips "
                          "than embedding dimensions)")
    sub.add_argument("--out", type=Path, default=None, help="also write the table here (.csv)")
    sub.set_defaults(func=run)
    return sub


def load_evaluator(name: str):
    """The evaluator an ``--evaluator`` value names (see :data:`EVALUATOR_HELP`)."""
    from analysis.evaluator import Evaluator

    if name == "offline":
        return Evaluator.offline()
    if name == "public":
        return Evaluator.from_pretrained()
    if Path(name).is_dir():
        return Evaluator.offline(name)
    raise ValueError(f"--evaluator must be 'offline', 'public' or a folder of a trained evaluator; got {name!r}")


def run(args) -> int:
    from analysis import quality
    from analysis.captions import captions_of_files

    names = [p.stem for p in quality.audio_files(args.generated)]  # both folders checked before a model loads
    quality.audio_files(args.reference)
    captions = None if args.captions is None else captions_of_files(args.captions, names)
    if args.out is not None and args.out.suffix.lower() != ".csv":
        raise ValueError(f"--out must name a .csv file; got {args.out}")
    evaluator = load_evaluator(args.evaluator)
    table = quality.evaluate(args.generated, args.reference, captions, evaluator, fad_shrinkage=args.fad_shrinkage)
    print(table.to_string(index=False, float_format="%.4g"))
    if args.out is not None:
        from litefocus.files import write_csv

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_csv(args.out, table)
    return 0
