"""What ``measure`` and ``generate`` share: the model, prompt, length, steps, seed and output folder of one run."""

from __future__ import annotations

import math
from pathlib import Path

from analysis.sweep import check_step_count
from litefocus.lengths import check_max_gb, check_seconds

from . import models


def add_run_arguments(parser, seconds: float, steps: int, out: str) -> None:
    """``--model --prompt --seconds --steps --seed --out`` with this command's defaults."""
    parser.add_argument("--model", default=models.DEFAULT, help=models.MODEL_HELP)
    parser.add_argument("--prompt", default="a string quartet playing a chorale slowly")
    parser.add_argument("--seconds", type=float, default=seconds, help="audio length in seconds")
    parser.add_argument("--steps", type=int, default=steps, help="denoising steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of every random choice, >= 0")
    parser.add_argument("--out", type=Path, default=Path(out),
                        help="results folder (new, empty, or written by an earlier run of this command)")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="refuse a --seconds whose estimated memory exceeds this many GB (default: the memory "
                             "free now)")


def check_run_arguments(args) -> None:
    """ValueError naming the argument, for the arguments of :func:`add_run_arguments`, before anything loads."""
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--seconds must be a positive finite number of seconds; got {args.seconds}")
    check_step_count(args.steps)
    check_seed_argument(args.seed, "--seed")
    check_max_gb(args.max_memory_gb, "--max-memory-gb")


def check_seed_argument(seed: int, argument: str) -> None:
    """:func:`litefocus.keys.check_seed`, its error naming the command-line ``argument``."""
    from litefocus.keys import check_seed

    try:
        check_seed(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument}: {error}") from None


def load_announced(model: str, seed: int, seconds: float, max_memory_gb: float | None):
    """``(pipe, name)`` of ``--model``, with a note when its weights are random; ``seconds`` checked against the
    pipeline's shortest length and the memory it would need (:func:`litefocus.lengths.check_seconds`)."""
    pipe, name = models.load_model(model, seed)
    check_seconds(pipe, [seconds], max_gb=max_memory_gb)
    if name == models.TINY:
        print("note: the 'tiny' model has random weights: its audio is noise and its attention shows no pattern. "
              "Timing and wiring are real.")
    return pipe, name


def settings(args, name: str) -> dict:
    """The run's arguments as JSON values, with the model's name (what ``run.json`` records)."""
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
            if key != "func"} | dict(model=name)
