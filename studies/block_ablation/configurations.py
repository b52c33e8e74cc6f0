"""The block-choice ablation's configurations: which blocks to sparsify, as sweep specs
(``python -m studies.block_ablation.configurations`` prints them; ``make block-ablation`` runs them).

From the evidence measured on a model (per block: the same-frequency ratio of ``analysis.measure``), the sets are:
LiteFocus on each single block; on each UNet level (the blocks that share a frequency-bin count F); and on growing
sets, the blocks added one by one in the order the evidence ranks them (highest same-frequency ratio first); then
same-frequency focus only on every one of those sets. Each set appears once (a level that equals a growing set, or
a one-block set, is not repeated).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from minildm.pipeline import MINILDM2_PATH


def evidence(path: Path = MINILDM2_PATH / "evaluation.json", key: str = "same_frequency_ratio") -> dict[str, dict]:
    """Per block, the attention measurements of a trained MiniLDM (``studies.minildm.evaluation`` writes them):
    ``{block: {"freq_bins", "same_frequency_ratio", ...}}``."""
    blocks = json.loads(Path(path).read_text())["attention"]["trained"]
    missing = [b for b, row in blocks.items() if key not in row]
    if missing:
        raise ValueError(f"{path}: no {key} for {missing}")
    return blocks


def block_sets(blocks: dict[str, dict], key: str = "same_frequency_ratio") -> list[tuple[str, ...]]:
    """Single blocks, levels (same ``freq_bins``), and growing sets in decreasing ``key``, each set once, in that
    order (blocks within a set in UNet order)."""
    order = list(blocks)  # UNet order, as measured
    ranked = sorted(order, key=lambda b: -blocks[b][key])
    levels = {}
    for block in order:
        levels.setdefault(blocks[block]["freq_bins"], []).append(block)
    candidates = [(b,) for b in order]
    candidates += [tuple(members) for _, members in sorted(levels.items(), reverse=True)]
    candidates += [tuple(ranked[:k]) for k in range(2, len(ranked) + 1)]
    sets, seen = [], set()
    for candidate in candidates:
        canonical = tuple(b for b in order if b in candidate)
        if canonical not in seen:
            seen.add(canonical)
            sets.append(canonical)
    return sets


def specs(sets: list[tuple[str, ...]]) -> list[str]:
    """``litefocus@...`` for every set, then ``same_frequency_only@...`` for every set (``analysis.sweep`` specs)."""
    return [f"{kind}@{'+'.join(s)}" for kind in ("litefocus", "same_frequency_only") for s in sets]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evidence", type=Path, default=MINILDM2_PATH / "evaluation.json")
    args = parser.parse_args(argv)
    print(" ".join(specs(block_sets(evidence(args.evidence)))))


if __name__ == "__main__":
    main()
