"""The pattern-emergence study: what makes self-attention focus on its own frequency row (issue 28)."""
