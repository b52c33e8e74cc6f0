"""``litefocus evaluate-sweep OUT --reference DIR [--protocol NAME]``: quality (clap_kad: FAD, KAD, KL, CLAP; or
audioldm_eval's metrics) and speed per cell of a sweep, and, under clap_kad, paired comparisons between its
configurations (``analysis.sweep_evaluation``)."""

from __future__ import annotations

from pathlib import Path

from .evaluate import EVALUATOR_HELP, add_protocol_arguments


def add_parser(commands) -> None:
    ev = commands.add_parser("evaluate-sweep", help="FAD, KAD, KL, CLAP and speed-up per cell of a sweep")
    ev.add_argument("sweep", type=Path, help="the --out folder of litefocus sweep")
    ev.add_argument("--reference", type=Path, required=True,
                    help="reference audio: a folder, or one with a subfolder per length named like 10.24s")
    ev.add_argument("--evaluator", default="offline", help=EVALUATOR_HELP)
    ev.add_argument("--fad-shrinkage", type=float, default=None,
                    help="covariance shrinkage for FAD in [0, 1] (default: 0, or 0.1 when a set has no more clips "
                         "than embedding dimensions)")
    ev.add_argument("--resamples", type=int, default=100, help="bootstrap draws per interval")
    ev.add_argument("--compare", nargs="+", default=None, metavar="A:B",
                    help="paired differences A - B per length and sampler (besides each configuration against the "
                         "sweep's first, always written), into STEM_comparisons.csv")
    add_protocol_arguments(ev)
    ev.add_argument("--out", type=Path, default=None,
                    help="table path without suffix (default: SWEEP/evaluation/EVALUATOR); .csv and .nc are written")
    ev.set_defaults(func=run)


def run(args) -> int:
    from analysis import sweep_evaluation as se
    from analysis.sweep_cache import evaluator_id, protocol_id
    from litefocus.files import check_writable, write_csv

    from analysis.protocols import check_protocol

    from .evaluate import load_evaluator, load_field_models

    # the sweep folder, then the reference folders, then the arguments, before the evaluator loads
    results = se.SweepResults.open(args.sweep, args.reference)
    check_writable(args.sweep, "the sweep folder (its embeddings are cached there)")
    if args.out is not None:
        check_writable(Path(args.out).parent, "--out")
    if args.resamples < 0:
        raise ValueError(f"--resamples must be at least 0; got {args.resamples}")
    protocol = check_protocol(args.protocol, args.crop_seed)
    if protocol.uses_field_models and (args.fad_shrinkage is not None or args.compare):
        raise ValueError(f"--fad-shrinkage and --compare apply to --protocol clap_kad only; {protocol.name} gives "
                         "the cells' metrics as audioldm_eval computes them")
    if protocol.uses_field_models:
        results.check_scorable_lengths(protocol)
    pairs = comparison_pairs(args.compare or [], results.configurations)
    models = load_field_models(args)
    try:
        results.evaluator = load_evaluator(args.evaluator)
    except FileNotFoundError as error:
        if not protocol.uses_field_models:
            raise
        raise FileNotFoundError(f"under --protocol {protocol.name} only the CLAP score column needs --evaluator "
                                f"{args.evaluator} (FAD, KL and IS come from the field's models): {error}") from None
    table = results.cells(fad_shrinkage=args.fad_shrinkage, resamples=args.resamples, protocol=protocol,
                          field_models=models)
    name = protocol_id(protocol, models) if protocol.uses_field_models else evaluator_id(results.evaluator)
    stem = Path(args.out or args.sweep / "evaluation" / name)
    paths = se.write_tables(table, stem)
    comparisons_path = stem.with_name(stem.name + "_comparisons.csv")
    if not protocol.uses_field_models:  # paired differences: under clap_kad (KAD's unbiased pairs)
        comparisons = results.comparisons(pairs, fad_shrinkage=args.fad_shrinkage, resamples=2 * args.resamples)
        paths.append(write_csv(comparisons_path, comparisons))
    elif comparisons_path.exists():  # a stem owns its whole set: no clap_kad comparisons beside audioldm_eval cells
        comparisons_path.unlink()
        print(f"removed {comparisons_path}: an earlier run's clap_kad comparisons, stale beside these "
              f"{protocol.name} cells")
    shown = table.pivot_table(index=["seconds", "sampler", "steps", "configuration"], columns="metric",
                              values="value", sort=False)
    print(shown.to_string(float_format="%.4g"))
    print("wrote", " and ".join(str(p) for p in paths))
    return 0


def comparison_pairs(specs: list[str], names: list[str]) -> list[tuple[str, str]]:
    """Each configuration against the sweep's first, then every ``--compare A:B``; an error names a bad one."""
    pairs = [(name, names[0]) for name in names[1:]]
    for spec in specs:
        a, _, b = spec.partition(":")
        if a not in names or b not in names or a == b:
            raise ValueError(f"--compare {spec}: give A:B, two different configurations of this sweep "
                             f"({', '.join(names)})")
        pairs.append((a, b))
    return pairs
