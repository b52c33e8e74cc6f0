"""Token layouts of the sparse forms: time-major tokens (``t * F + f``, diffusers' order) regrouped by frequency row.

Shapes: ``(b, h, N, d)`` time-major in and out; a "row" here is a frequency row of the ``(T, F)`` grid (the T tokens
of one frequency bin), not a row of an attention matrix.
"""

from __future__ import annotations

import torch


def rows(x: torch.Tensor, freq_bins: int) -> torch.Tensor:
    """(b, h, t*f, d) -> (b*f, h, t, d): one attention problem per (batch item, frequency row)."""
    batch, heads, num_tokens, dim = x.shape
    time_bins = num_tokens // freq_bins
    return x.view(batch, heads, time_bins, freq_bins, dim).permute(0, 3, 1, 2, 4).reshape(-1, heads, time_bins, dim)


def by_rows(x: torch.Tensor, freq_bins: int) -> torch.Tensor:
    """(b, h, t*f, d) -> a (b, f, h, t, d) view of the same memory (no copy)."""
    batch, heads, num_tokens, dim = x.shape
    return x.view(batch, heads, num_tokens // freq_bins, freq_bins, dim).permute(0, 3, 1, 2, 4)


def row_keys(x: torch.Tensor, freq_bins: int, cross: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """(b, h, t*f, d) -> (b*f, h, t + R, width): each row's own T keys, then the R shared random keys, written into
    one buffer (a gather and a copy; no concatenation of intermediate copies); channels beyond ``d`` are zero."""
    batch, heads, num_tokens, dim = x.shape
    time_bins, count, width = num_tokens // freq_bins, cross.numel(), width or dim
    keys = (x.new_zeros if width > dim else x.new_empty)(batch, freq_bins, heads, time_bins + count, width)
    keys[..., :time_bins, :dim] = by_rows(x, freq_bins)
    keys[..., time_bins:, :dim] = x[:, :, cross][:, None]
    return keys.view(-1, heads, time_bins + count, width)


def frequency_major(x: torch.Tensor, freq_bins: int) -> torch.Tensor:
    """(b, h, t*f, d) time-major -> (b, h, f*t, d) frequency-major: token ``f * T + t`` is row f's t-th."""
    batch, heads, num_tokens, dim = x.shape
    return by_rows(x, freq_bins).permute(0, 2, 1, 3, 4).reshape(batch, heads, num_tokens, dim)


def merge_rows(out: torch.Tensor, batch: int, freq_bins: int) -> torch.Tensor:
    """(b*f, h, t, d) -> (b, h, t*f, d), back to time-major token order, as a transposed view of a contiguous
    (b, t*f, h, d): the layout a processor reshapes to (b, N, h*d) without another copy."""
    _, heads, time_bins, head_dim = out.shape
    return out.view(batch, freq_bins, heads, time_bins, head_dim).permute(0, 3, 1, 2, 4).reshape(
        batch, time_bins * freq_bins, heads, head_dim).transpose(1, 2)
