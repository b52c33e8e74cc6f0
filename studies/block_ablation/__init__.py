"""The block-choice study on MiniLDM 2: writes ``data/block_ablation`` (its README says what each file is)."""
