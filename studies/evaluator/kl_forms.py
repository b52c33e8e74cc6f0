"""The KL forms side by side on the same logits: clap_kad's KL (class probabilities renormalised, here on the
sigmoids, as the public evaluator's PANNs path computes it, and on a softmax head) against audioldm_eval's
``kullback_leibler_divergence_sigmoid`` and ``_softmax`` (``python -m studies.evaluator.kl_forms``).

The logits are synthetic, CNN14-like (527 classes, N(-4, 2): sigmoids mostly near 0), 200 pairs, for three kinds
of pair: independent sets, a reference and the same logits plus N(0, 0.5) noise, and identical ones. A comparison
of formulas on shared inputs, not a quality finding: the released CNN14 weights cannot be downloaded here.
Writes ``--out`` (default ``runs/evaluator/kl_forms.csv``; the committed table is ``data/evaluator/kl_forms.csv``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from analysis import quality
from litefocus.files import write_csv


def kl_forms(pairs: int = 200, classes: int = 527, seed: int = 0) -> pd.DataFrame:
    """One row per kind of pair: the four KLs (values alone) on the same logits."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(-4, 2, (pairs, classes))
    generated = {"independent": rng.normal(-4, 2, (pairs, classes)),
                 "reference + N(0, 0.5)": reference + rng.normal(0, 0.5, reference.shape),
                 "identical": reference.copy()}
    rows = []
    for kind, gen in generated.items():
        rows.append(dict(
            pairs=kind,
            clap_kad_kl_renormalised_sigmoids=quality.kl_divergence(expit(gen), expit(reference), resamples=0).value,
            kullback_leibler_divergence_sigmoid=quality.kl_sigmoid(gen, reference, resamples=0).value,
            clap_kad_kl_softmax_head=quality.kl_divergence(softmax(gen, 1), softmax(reference, 1), resamples=0).value,
            kullback_leibler_divergence_softmax=quality.kl_softmax(gen, reference, resamples=0).value))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/evaluator/kl_forms.csv"),
                        help="the table (the committed one is data/evaluator/kl_forms.csv: name it to replace it)")
    args = parser.parse_args(argv)
    table = kl_forms()
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    write_csv(args.out, table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
