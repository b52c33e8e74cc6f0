"""Command line.

``litefocus measure``: record self-attention while generating, measure same-frequency sparsity per block, layer,
head and step, choose the blocks to sparsify, and write the dataset, figures and a table.
``litefocus generate``: render one prompt with dense attention and with LiteFocus, side by side, and time both.
``litefocus evaluate``: FAD, KAD, KL and CLAP score of a folder of generated audio against reference audio.
``litefocus sweep``: generate captions x configurations x lengths x samplers x seeds, resumable, on one process or
under ``accelerate launch -m litefocus_cli sweep ...``; ``litefocus evaluate-sweep``: quality and speed per cell.
"""

from __future__ import annotations

import argparse
import sys

from . import evaluate, evaluate_sweep, generate, measure, sweep

SUBCOMMANDS = (measure, generate, evaluate, sweep, evaluate_sweep)  # each: add_parser(commands) sets func=run


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="litefocus", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user's mistake is one line on stderr and exit status 2."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, MemoryError) as error:
        print(f"litefocus: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
