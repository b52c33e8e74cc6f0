"""Training and validation of the offline evaluator: write ``data/evaluator`` (its README)."""
