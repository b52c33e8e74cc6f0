"""MiniLDM's evaluation, diagnosis and fidelity studies: write ``data/minildm`` (its model card cites them)."""
