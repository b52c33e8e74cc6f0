"""LiteFocus attention as a pure function of tensors, and the dense masked oracle beside it.

Tokens are in diffusers' time-major order: token ``i = t * freq_bins + f`` on a ``(T, F)`` grid, ``N = T * F``.
Each query attends to its focus set (paper, eqs. 4-6): the keys of its own frequency row, united with one set of
``floor(ratio * N)`` keys drawn at random from all ``N``, shared by every query, batch item and head. A key that is
both in the query's row and drawn at random counts once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_key_count(num_tokens: int, ratio: float) -> int:
    """``floor(ratio * N)``, the size of the cross-frequency compensation set (eq. 6)."""
    _check_ratio(ratio)
    # The epsilon keeps e.g. 0.1 * 8190 = 818.99999 from flooring to 818.
    return int(math.floor(ratio * num_tokens + 1e-9))


def draw_cross_indices(
    num_tokens: int, ratio: float, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw ``floor(ratio * N)`` distinct key indices uniformly from ``range(N)``, sorted, int64, on ``device``.

    The draw happens on the generator's device (CPU when no generator is given) and is then moved.
    """
    count = cross_key_count(num_tokens, ratio)
    draw_device = generator.device if generator is not None else torch.device("cpu")
    indices = torch.randperm(num_tokens, generator=generator, device=draw_device)[:count]
    return indices.sort().values.to(device if device is not None else draw_device)


def focus_mask(
    num_tokens: int,
    freq_bins: int,
    cross_indices: torch.Tensor | None,
    *,
    same_frequency: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean ``(N, N)`` matrix, ``True`` where query ``i`` may attend to key ``j``.

    ``mask[i, j] = (same_frequency and i % F == j % F) or (j in cross_indices)``. Used by the reference only.
    """
    token = torch.arange(num_tokens, device=device)
    mask = torch.zeros(num_tokens, num_tokens, dtype=torch.bool, device=device)
    if same_frequency:
        mask |= (token[:, None] % freq_bins) == (token[None, :] % freq_bins)
    if cross_indices is not None:
        mask[:, cross_indices.to(device)] = True
    return mask


def reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    freq_bins: int,
    ratio: float = 0.1,
    same_frequency: bool = True,
    cross_frequency: bool = True,
    cross_indices: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Dense attention under the explicit ``(N, N)`` focus mask: the oracle that tests hold the kernel to.

    Same arguments and same random draw as :func:`litefocus_attention`; costs ``O(N^2)`` memory.
    """
    num_tokens = _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency)
    cross = _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, query.device)
    _check_nonempty(same_frequency, cross)
    mask = focus_mask(num_tokens, freq_bins, cross, same_frequency=same_frequency, device=query.device)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.einsum("bhqd,bhkd->bhqk", query.float(), key.float()) * scale
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhqk,bhkd->bhqd", logits.softmax(dim=-1), value.float()).to(query.dtype)


def litefocus_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    freq_bins: int,
    ratio: float = 0.1,
    same_frequency: bool = True,
    cross_frequency: bool = True,
    cross_indices: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """LiteFocus sparse attention; never builds an ``N x N`` matrix.

    Args:
        query, key, value: ``(batch, heads, N, head_dim)``, tokens time-major (``t * freq_bins + f``).
        freq_bins: ``F``, the width of the frequency axis of the token grid; ``N`` must be a multiple of it.
        ratio: compensation ratio ``r``; ``floor(r * N)`` random keys are drawn per call.
        same_frequency: include the query's own frequency row (``False``: cross-frequency-only ablation).
        cross_frequency: include the random keys (``False``: same-frequency-only ablation).
        cross_indices: 1-D int64 key indices that replace the random draw (duplicates count once).
        generator: source of the random draw; drawn on its device, CPU when ``None``.
        scale: softmax scale, ``head_dim ** -0.5`` when ``None``.

    Returns:
        ``(batch, heads, N, head_dim)``, equal to :func:`reference_attention` up to float rounding.

    The work is one batched ``scaled_dot_product_attention`` over the ``batch * F`` frequency rows, each with ``T``
    queries against ``[its T same-row keys + the R shared random keys]``: ``N * (T + R)`` scores in all, against
    ``N * N`` for dense attention (the FLOP ratio is ``1 / F + r``).
    """
    num_tokens = _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency)
    cross = _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, query.device)
    _check_nonempty(same_frequency, cross)
    if not same_frequency:
        return F.scaled_dot_product_attention(query, key[:, :, cross], value[:, :, cross], scale=scale)
    return _frequency_row_attention(query, key, value, freq_bins, cross, scale)


def _frequency_row_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    freq_bins: int,
    cross: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    batch, heads, num_tokens, head_dim = query.shape
    steps = num_tokens // freq_bins

    def rows(x: torch.Tensor) -> torch.Tensor:
        # (b, h, t*f, d) -> (b*f, h, t, d): one attention problem per (batch item, frequency row)
        return x.view(batch, heads, steps, freq_bins, head_dim).permute(0, 3, 1, 2, 4).reshape(-1, heads, steps, head_dim)

    q_rows = rows(query)
    if cross is None or cross.numel() == 0:
        return _merge_rows(F.scaled_dot_product_attention(q_rows, rows(key), rows(value), scale=scale), batch, freq_bins)
    count = cross.numel()

    def row_keys(x: torch.Tensor) -> torch.Tensor:
        # (b, h, t*f, d) -> (b*f, h, t + R, d): each row's own T keys, then the R shared random keys, written into
        # one buffer (a gather and a copy; no concatenation of intermediate copies)
        keys = x.new_empty(batch, freq_bins, heads, steps + count, head_dim)
        keys[:, :, :, :steps] = x.view(batch, heads, steps, freq_bins, head_dim).permute(0, 3, 1, 2, 4)
        keys[:, :, :, steps:] = x[:, :, cross][:, None]
        return keys.view(-1, heads, steps + count, head_dim)

    # A random key whose frequency is the row's own is already among the row's keys: mask it out so that the union
    # counts it once. mask: (b*f, 1, 1, T + R), True = attend.
    row = torch.arange(freq_bins, device=query.device)
    random_key_allowed = (cross[None, :] % freq_bins) != row[:, None]  # (f, R)
    mask = torch.cat([random_key_allowed.new_ones(freq_bins, steps), random_key_allowed], dim=1)
    mask = mask[None, :, None, None, :].expand(batch, freq_bins, 1, 1, steps + count).reshape(-1, 1, 1, steps + count)
    out = F.scaled_dot_product_attention(q_rows, row_keys(key), row_keys(value), attn_mask=mask, scale=scale)
    return _merge_rows(out, batch, freq_bins)


def _merge_rows(out: torch.Tensor, batch: int, freq_bins: int) -> torch.Tensor:
    """(b*f, h, t, d) -> (b, h, t*f, d), back to time-major token order."""
    _, heads, steps, head_dim = out.shape
    return out.view(batch, freq_bins, heads, steps, head_dim).permute(0, 2, 3, 1, 4).reshape(
        batch, heads, steps * freq_bins, head_dim
    )


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1] (the share of all keys drawn at random); got {ratio}")


def _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency) -> int:
    if not (same_frequency or cross_frequency):
        raise ValueError(
            "same_frequency and cross_frequency are both False: the focus set would be empty. "
            "Keep at least one (same_frequency=False is the cross-only ablation, cross_frequency=False the same-only one)."
        )
    if query.ndim != 4 or key.shape != query.shape or value.shape[:3] != query.shape[:3]:
        raise ValueError(
            "query, key and value must be (batch, heads, N, head_dim) self-attention tensors of one shape; "
            f"got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    num_tokens = query.shape[2]
    if freq_bins < 1 or num_tokens % freq_bins:
        raise ValueError(
            f"{num_tokens} tokens do not form a grid with freq_bins={freq_bins} frequency bins; "
            "freq_bins must divide the token count (it is the width W of the (T, F) latent grid)"
        )
    return num_tokens


def _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, device):
    _check_ratio(ratio)
    if not cross_frequency:
        if cross_indices is not None:
            raise ValueError("cross_indices were given with cross_frequency=False; drop one of the two")
        return None
    if cross_indices is None:
        return draw_cross_indices(num_tokens, ratio, generator, device)
    if cross_indices.ndim != 1 or cross_indices.dtype != torch.int64:
        raise ValueError(f"cross_indices must be a 1-D int64 tensor of key indices; got {cross_indices.dtype} "
                         f"with shape {tuple(cross_indices.shape)}")
    if cross_indices.numel() and not (0 <= int(cross_indices.min()) and int(cross_indices.max()) < num_tokens):
        raise ValueError(f"cross_indices must lie in [0, {num_tokens}); got values from "
                         f"{int(cross_indices.min())} to {int(cross_indices.max())}")
    return torch.unique(cross_indices.to(device))


def _check_nonempty(same_frequency: bool, cross: torch.Tensor | None) -> None:
    if not same_frequency and (cross is None or cross.numel() == 0):
        raise ValueError(
            "cross-frequency-only attention with no random keys (ratio * N < 1) leaves queries nothing to attend "
            "to; raise ratio or keep same_frequency=True"
        )
