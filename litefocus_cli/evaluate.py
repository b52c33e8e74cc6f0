"""``litefocus evaluate GENERATED_DIR --reference DIR [--captions FILE] [--protocol NAME]``: the quality of a folder of
generated audio against a folder of reference audio under a named protocol (``analysis.protocols``: clap_kad, the
default, or audioldm_eval's metrics), with 95 % bootstrap intervals (``analysis.quality``)."""

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
    add_protocol_arguments(sub)
    sub.add_argument("--out", type=Path, default=None, help="also write the table here (.csv)")
    sub.set_defaults(func=run)
    return sub


def add_protocol_arguments(sub) -> None:
    """``--protocol`` and the weights of audioldm_eval's models (``analysis.protocols``)."""
    from analysis.protocols import DEFAULT, PROTOCOLS

    sub.add_argument("--protocol", default=DEFAULT, choices=list(PROTOCOLS),
                     help="clap_kad (default: the evaluator's clip embeddings, KAD-centred, for small sets), "
                          "audioldm_eval (VGGish FAD, CNN14-16k FD, KL softmax and sigmoid, CLAP: the paper's tool) "
                          "or paper (audioldm_eval on a seeded random 10 s crop of each longer clip)")
    sub.add_argument("--crop-seed", type=int, default=0, help="seed of the paper protocol's crops")
    sub.add_argument("--vggish-checkpoint", type=Path, default=None,
                     help="vggish-10086976.pth for the audioldm_eval and paper protocols (default: the torch hub "
                          "cache, else downloaded)")
    sub.add_argument("--cnn14-checkpoint", type=Path, default=None,
                     help="Cnn14_16k_mAP=0.438.pth for the audioldm_eval and paper protocols (default: "
                          "~/.cache/audioldm_eval/ckpt or ~/panns_data, else downloaded)")


def load_field_models(args):
    """audioldm_eval's models when ``--protocol`` needs them, else None."""
    from analysis.protocols import FieldModels, check_protocol

    if not check_protocol(args.protocol).uses_field_models:
        return None
    return FieldModels.load(args.vggish_checkpoint, args.cnn14_checkpoint)


def load_evaluator(name: str):
    """The evaluator an ``--evaluator`` value names (see :data:`EVALUATOR_HELP`)."""
    from analysis.evaluator import Evaluator

    if name == "offline":
        return Evaluator.offline()
    if name == "public":
        try:
            return Evaluator.from_pretrained()
        except OSError as error:  # the library's advice is an API's (clap=); a command-line user gets flags
            raise OSError(f"--evaluator public loads LAION CLAP and PANNs CNN14 from their hubs, which cannot be "
                          "reached here; download them where you have internet into the Hugging Face cache "
                          "(HF_HOME), or use --evaluator offline (the evaluator shipped in data/evaluator)") from error
    if Path(name).is_dir():
        return Evaluator.offline(name)
    raise ValueError(f"--evaluator must be 'offline', 'public' or a folder of a trained evaluator; got {name!r}")


def run(args) -> int:
    from analysis import protocols
    from analysis.captions import captions_of_files
    from analysis.protocols import check_folder, check_protocol

    names = [p.stem for p in protocols.audio_files(args.generated)]  # both folders checked before a model loads
    protocols.audio_files(args.reference)
    captions = None if args.captions is None else captions_of_files(args.captions, names)
    if args.out is not None:  # issue 27: a read-only folder or a folder named x.csv failed after the evaluation
        from litefocus.files import check_writable

        if args.out.suffix.lower() != ".csv":
            raise ValueError(f"--out must name a .csv file; got {args.out}")
        if args.out.is_dir():
            raise ValueError(f"--out {args.out} is a folder; name a .csv file")
        check_writable(args.out.parent, "--out", args.out)
    protocol = check_protocol(args.protocol, args.crop_seed)
    if protocol.uses_field_models and args.fad_shrinkage is not None:
        raise ValueError(f"--fad-shrinkage applies to --protocol clap_kad only; {protocol.name} computes FAD as "
                         "audioldm_eval does")
    if protocol.uses_field_models:  # every clip long enough, before a model loads
        check_folder(args.generated, "generated", protocol)
        check_folder(args.reference, "reference", protocol)
    models = load_field_models(args)
    evaluator = load_evaluator(args.evaluator) if captions is not None or not protocol.uses_field_models else None
    table = protocols.evaluate(args.generated, args.reference, captions, evaluator, fad_shrinkage=args.fad_shrinkage,
                             protocol=protocol, field_models=models, seed=args.crop_seed)
    print(table.to_string(index=False, float_format="%.4g"))
    if args.out is not None:
        from litefocus.files import write_csv

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_csv(args.out, table)
    return 0
