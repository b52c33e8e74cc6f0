"""The README's figure of speed against length, drawn from the committed benchmark tables.

    python benchmarks/figures.py      # data/benchmarks/speed.csv + attention_share.csv -> data/figures/speed_against_length.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from analysis import plots  # noqa: E402
from litefocus.files import save_figure  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def main() -> None:
    speed = pd.read_csv(DATA / "benchmarks" / "speed.csv")
    share = pd.read_csv(DATA / "benchmarks" / "attention_share.csv")
    axes = plots.speed_against_length(speed, share)
    path = save_figure(axes[0].figure, DATA / "figures" / "speed_against_length.png", dpi=90)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
