"""The study's table and figure from its runs: ``python -m studies.pattern_emergence.report``.

Gathers ``WORK/*/curve.csv`` (:mod:`studies.pattern_emergence.run`) into ``OUT/curves.csv`` and draws
``OUT/curves.png``: per variant, the same-frequency ratio and the focus contrast of ``down_blocks.1`` and
``up_blocks.2`` (the paper's blocks) against training steps, EMA weights, held-out 10.24 s clips at t = 500, with the
optimal linear denoiser's values (``ceiling.csv``, :mod:`studies.pattern_emergence.ceiling`) as the data's ceiling.
The committed result is ``data/pattern_emergence``: name it as ``--out`` to replace it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from litefocus.files import read_csv, save_figure, write_csv

BLOCKS = ("down_blocks.1", "up_blocks.2")
SHOWN = dict(weights="ema", seconds=10.24, timestep=500)


def gather(work: Path) -> pd.DataFrame:
    """Every run's curve under ``work``, one table."""
    paths = sorted(work.glob("*/curve.csv"))
    if not paths:
        raise FileNotFoundError(f"no */curve.csv under {work}: run python -m studies.pattern_emergence.run first")
    return pd.concat([read_csv(p) for p in paths], ignore_index=True)


def draw(curves: pd.DataFrame, ceiling: pd.DataFrame | None):
    """The figure: rows ratio / contrast, columns the two blocks, one line per variant."""
    import matplotlib.pyplot as plt

    shown = curves
    for column, value in SHOWN.items():
        shown = shown[shown[column] == value]
    figure, axes = plt.subplots(2, len(BLOCKS), figsize=(11, 6.5), sharex=True, squeeze=False)
    for row, statistic in enumerate(("same_frequency_ratio", "focus_contrast")):
        for col, block in enumerate(BLOCKS):
            ax = axes[row, col]
            for variant, part in shown[shown.block == block].groupby("variant"):
                ax.plot(part.step, part[statistic], "o-", markersize=3, label=variant)
            if ceiling is not None:
                top = ceiling[(ceiling.data == "corpus") & (ceiling.timestep == SHOWN["timestep"])][statistic]
                if len(top):
                    ax.axhline(float(top.iloc[0]), color="k", linestyle="--", linewidth=1,
                               label="optimal linear denoiser (data's ceiling)")
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.axhline(2.0, color="tab:red", linestyle=":", linewidth=1, label="MiniLDM 3 goal")
            ax.set_title(f"{block}: {statistic.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("training step" if row == 1 else "")
    axes[0, 0].legend(fontsize=7)
    figure.suptitle("Focus on the own frequency row during training (EMA weights, held-out 10.24 s clips, t = 500)",
                    fontsize=11)
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/pattern_emergence"), help="the runs' folder")
    parser.add_argument("--ceiling", type=Path, default=Path("data/pattern_emergence/ceiling.csv"))
    parser.add_argument("--out", type=Path, default=Path("runs/pattern_emergence/report"))
    args = parser.parse_args(argv)
    curves = gather(args.work)
    ceiling = read_csv(args.ceiling) if args.ceiling.is_file() else None
    write_csv(args.out / "curves.csv", curves)
    save_figure(draw(curves, ceiling), args.out / "curves.png", dpi=110)
    last = curves[(curves.weights == "ema") & (curves.block.isin(BLOCKS))]
    last = last[last.step == last.groupby("variant").step.transform("max")]
    print(last.pivot_table(index=["variant", "step"], columns=["block", "seconds", "timestep"],
                           values=["same_frequency_ratio", "focus_contrast"]).round(3).to_string())
    print(f"wrote {args.out / 'curves.csv'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
