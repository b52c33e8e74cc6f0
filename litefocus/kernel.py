"""LiteFocus attention as a pure function of tensors, and the dense oracle beside it.

One name per quantity, here and in every module of this project:

- ``time_bins`` (T): latent frames along time; ``freq_bins`` (F): latent bins along frequency (8 at AudioLDM2's
  level 1); a module's ``(T, F)`` grid.
- ``num_tokens`` (N = T * F): the tokens of one self-attention call.
- ``ratio`` (r): the share of all N keys drawn at random, the cross-frequency compensation (``floor(r * N)`` keys).
- ``steps``: denoising steps only (UNet calls of one generation); ``timestep``: the scheduler's t of one of them.
- ``seconds``: audio length in seconds.
- a *row* is a frequency row of the grid (the T tokens of one frequency bin), never a row of an attention matrix
  (that is a query's *attention*, or its probabilities); a *key* is an attention key, and the hash that seeds a
  module's random draw is its ``draw_key`` (:func:`litefocus.keys.module_key`).

Tokens are in diffusers' time-major order: token ``i = t * freq_bins + f`` on a ``(T, F)`` grid, ``N = T * F``.
Each query attends to its focus set (paper, eqs. 4-6): the keys of its own frequency row, united with one set of
``floor(ratio * N)`` keys drawn at random from all ``N``, shared by every query, batch item and head. A key that is
both in the query's row and drawn at random counts once (``union="exact"``) or twice (``union="concat"``, the
authors' code).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .backends import (
    auto_exact_form,
    flex_focus_attention,
    varlen_exact_attention,
    varlen_problem,
    varlen_problem_of,
)
from .layout import by_rows, merge_rows, row_keys, rows


def cross_key_count(num_tokens: int, ratio: float) -> int:
    """``floor(ratio * N)``, the size of the cross-frequency compensation set (eq. 6)."""
    check_ratio(ratio)
    # The epsilon keeps e.g. 0.1 * 8190 = 818.99999 from flooring to 818.
    return int(math.floor(ratio * num_tokens + 1e-9))


def draw_cross_indices(
    num_tokens: int, ratio: float, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw ``floor(ratio * N)`` distinct key indices uniformly from ``range(N)``, sorted, int64, on ``device``.

    For calling the kernel directly; the draw happens on the generator's device (CPU when no generator is given) and
    is then moved. Applied to a UNet, LiteFocus draws with :func:`litefocus.keys.keyed_cross_indices` instead, from
    ``(seed, module name, timestep)``.
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

    ``mask[i, j] = (same_frequency and i % F == j % F) or (j in cross_indices)``: the exact union, for figures and tests.
    """
    token = torch.arange(num_tokens, device=device)
    mask = torch.zeros(num_tokens, num_tokens, dtype=torch.bool, device=device)
    if same_frequency:
        mask |= (token[:, None] % freq_bins) == (token[None, :] % freq_bins)
    if cross_indices is not None:
        mask[:, cross_indices.to(device)] = True
    return mask


UNIONS = ("exact", "concat")
"""How a query's own row and the random keys combine: ``"exact"``, the union of the paper's eq. 4 (a key in both
counts once; r = 1 is dense attention), or ``"concat"``, the authors' released code (the two key lists concatenated
under one softmax, so a random key in the query's own row counts twice)."""
BACKENDS = ("auto", "sdpa", "flex", "varlen", "by_rows")
"""How a full-row form computes (the exact union and concat; the ablations are one mask-free SDPA call whatever it
says): ``auto`` (default) the exact union through ``varlen`` on CUDA in float16/bfloat16 where flash varlen runs
(:func:`litefocus.backends.varlen_problem`: compute capability 8.0+, head dim <= 256, torch >= 2.10), else as
``sdpa``; ``sdpa`` one batched SDPA call (masked on a CPU, mask-free with a padded head dim on CUDA); ``flex``
FlexAttention over frequency-major tokens with a block mask (own-row blocks and the random keys outside the row),
compiled once on CUDA (under ``torch.compile`` on a CPU, where Inductor has no FlexAttention kernel, the SDPA form);
``varlen`` flash attention's variable-length kernel, one sequence per (batch item, row) holding its own keys and the
random keys outside its row: the exact union only, CUDA only, float16/bfloat16 only; ``by_rows`` the exact union as
one mask-free call per frequency row (:func:`exact_attention_by_rows`, the form before 2026-12: F calls and F host
synchronisations on a GPU), kept to time and test against."""


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
    union: str = "exact",
) -> torch.Tensor:
    """Dense attention over explicit ``(N, N)`` key multiplicities: the oracle that tests hold the kernel to.

    ``exact``: logits of keys outside the focus set are ``-inf``. ``concat``: each logit gets ``log m``, ``m`` the
    number of times the key appears in the query's concatenated list (own row once, each random draw once), which is
    what one softmax over the concatenation computes. Same arguments and same random draw as
    :func:`litefocus_attention`; computes in the inputs' precision (at least float32); ``O(N^2)`` memory.
    """
    num_tokens = _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency, union)
    check_scale(scale)
    cross = _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, query.device, union)
    _check_nonempty(same_frequency, cross)
    token = torch.arange(num_tokens, device=query.device)
    multiplicity = torch.zeros(num_tokens, num_tokens, device=query.device)
    if same_frequency:
        multiplicity += ((token[:, None] % freq_bins) == (token[None, :] % freq_bins)).float()
    if cross is not None:
        multiplicity += torch.bincount(cross, minlength=num_tokens).float()[None, :]
    if union == "exact":
        multiplicity = multiplicity.clamp(max=1)
    dtype = torch.promote_types(query.dtype, torch.float32)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.einsum("bhqd,bhkd->bhqk", query.to(dtype), key.to(dtype)) * scale
    logits = logits + multiplicity.to(dtype).log()  # log 0 = -inf outside the focus set
    return torch.einsum("bhqk,bhkd->bhqd", logits.softmax(dim=-1), value.to(dtype)).to(query.dtype)


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
    union: str = "exact",
    backend: str = "auto",
) -> torch.Tensor:
    """LiteFocus sparse attention; never builds an ``N x N`` matrix.

    Args:
        query, key, value: ``(batch, heads, N, head_dim)`` floating tensors, tokens time-major (``t * freq_bins + f``).
        freq_bins: ``F``, the width of the frequency axis of the token grid; ``N`` must be a multiple of it.
        ratio: compensation ratio ``r``; ``floor(r * N)`` random keys are drawn per call.
        same_frequency: include the query's own frequency row (``False``: cross-frequency-only ablation).
        cross_frequency: include the random keys (``False``: same-frequency-only ablation).
        cross_indices: 1-D int64 tensor of key indices that replaces the random draw (``exact``: duplicates count
            once; ``concat``: each entry is one key of the concatenation).
        generator: source of the random draw; drawn on its device, CPU when ``None``.
        scale: softmax scale, ``head_dim ** -0.5`` when ``None``.
        union: ``"exact"`` (paper's eq. 4, default) or ``"concat"`` (the authors' code); see :data:`UNIONS`.
        backend: ``"auto"`` (default), ``"sdpa"``, ``"flex"`` or ``"varlen"`` (CUDA); see :data:`BACKENDS`.

    Returns:
        ``(batch, heads, N, head_dim)``, equal to :func:`reference_attention` up to float rounding.

    The work is attention of each frequency row's ``T`` queries against ``[its T same-row keys + the R shared random
    keys]``: ``N * (T + R)`` scores in all, against ``N * N`` for dense attention (the FLOP ratio is ``1 / F + r``).
    """
    num_tokens = _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency, union)
    check_scale(scale)
    check_backend(backend, union)
    check_backend_for(backend, query, union)
    cross = _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, query.device, union)
    _check_nonempty(same_frequency, cross)
    return focus_attention(query, key, value, freq_bins, cross, same_frequency=same_frequency, scale=scale,
                           union=union, backend=backend)


def focus_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    freq_bins: int,
    cross: torch.Tensor | None,
    *,
    same_frequency: bool = True,
    scale: float | None = None,
    union: str = "exact",
    backend: str = "auto",
) -> torch.Tensor:
    """:func:`litefocus_attention` on checked inputs and given random keys ``cross`` (sorted int64, distinct for
    ``exact``; ``None``: same-frequency only): no validation, no draw, no host synchronisation, for processors and
    ``torch.compile``. ``backend`` applies to the full-row forms with random keys (the exact union, concat); the
    others are single mask-free SDPA calls whatever it says."""
    if backend == "flex" and query.device.type == "cpu" and torch.compiler.is_compiling():
        backend = "sdpa"  # Inductor has no CPU FlexAttention kernel (NoValidChoicesError): the same union by SDPA
    if backend in ("flex", "varlen") and same_frequency and cross is not None and cross.numel() and freq_bins > 1:
        if backend == "flex":
            return flex_focus_attention(query, key, value, freq_bins, cross, scale, union)
        if union == "exact":  # varlen serves the exact union only (check_backend refuses concat before this)
            return varlen_exact_attention(query, key, value, freq_bins, cross, scale)
    if backend == "by_rows" and union == "exact" and same_frequency and cross is not None and cross.numel() \
            and freq_bins > 1:
        return exact_attention_by_rows(query, key, value, freq_bins, cross, scale)
    if not same_frequency:
        return F.scaled_dot_product_attention(query, key[:, :, cross], value[:, :, cross], scale=scale)
    if cross is None or cross.numel() == 0 or (freq_bins == 1 and union == "exact"):
        # no random keys, or one row that holds every key (the exact union is then dense attention)
        per_row = [rows(x, freq_bins) for x in (query, key, value)]
        return merge_rows(F.scaled_dot_product_attention(*per_row, scale=scale), query.shape[0], freq_bins)
    if union == "concat":
        return _concat_attention(query, key, value, freq_bins, cross, scale)
    return _exact_attention(query, key, value, freq_bins, cross, scale, backend)


def _concat_attention(query, key, value, freq_bins, cross, scale):
    """One softmax over [own row + random keys] per row, no mask: a random key in the row counts twice."""
    out = F.scaled_dot_product_attention(rows(query, freq_bins), row_keys(key, freq_bins, cross),
                                         row_keys(value, freq_bins, cross), scale=scale)
    return merge_rows(out, query.shape[0], freq_bins)


def merged_width(head_dim: int, device: torch.device) -> int:
    """The head dim of the exact union's one call: ``head_dim + 1`` (the duplicate channel), rounded up to a multiple
    of 8 on CUDA, where the flash and memory-efficient kernels need it (q, k and v of one head dim)."""
    width = head_dim + 1
    return -(-width // 8) * 8 if device.type == "cuda" else width


def _exact_attention(query, key, value, freq_bins, cross, scale, backend="auto"):
    """The exact union with static shapes and no host synchronisation: on a CPU the masked form (its fused kernel
    takes a mask at little cost, while a head dim padded to 33 costs it more: benchmarks/kernel.py); on CUDA flash
    varlen where ``backend="auto"`` and it runs (the head dim stays 32: :func:`litefocus.backends.auto_exact_form`),
    else the mask-free :func:`exact_attention_merged` (a mask would rule out the flash kernels of a GPU)."""
    form = auto_exact_form(query) if backend == "auto" else ("masked" if query.device.type == "cpu" else "merged")
    if form == "varlen":
        return varlen_exact_attention(query, key, value, freq_bins, cross, scale)
    if form == "masked":
        return exact_attention_masked(query, key, value, freq_bins, cross, scale)
    return exact_attention_merged(query, key, value, freq_bins, cross, scale)


def exact_attention_merged(query, key, value, freq_bins, cross, scale):
    """The exact union in one mask-free SDPA call over each row's ``[own T keys | R random keys]`` (concat's layout).

    A random key that lies in the query's own row stands twice in that list. Its own-row copy keeps its logit but
    gets value 0 and 1 in one extra value channel, so the call returns ``o = N / Z`` and ``m = Z_dup / Z``, with
    ``N`` the exact union's numerator and ``Z = Z_row + Z_random`` counting those keys twice; then
    ``out = o / (1 - m) = N / (Z - Z_dup)``, the union (``1 - m >= 1/2``: ``Z_dup`` is at most half of ``Z``).
    Static shapes, no mask, no boolean indexing, no host synchronisation; q, k and v padded to one head dim
    (:func:`merged_width`) so that fused kernels apply.
    """
    batch, heads, num_tokens, dim = query.shape
    time_bins, width = num_tokens // freq_bins, merged_width(dim, query.device)
    scale = dim ** -0.5 if scale is None else scale  # the padded width must not change the default scale
    drawn = query.new_zeros(num_tokens).index_fill_(0, cross, 1.0)
    duplicate = drawn.view(time_bins, freq_bins).t()[None, :, None, :, None]  # (1, f, 1, t, 1): own key drawn too
    queries = query.new_zeros(batch, freq_bins, heads, time_bins, width)
    queries[..., :dim] = by_rows(query, freq_bins)
    values = row_keys(value, freq_bins, cross, width).view(batch, freq_bins, heads, -1, width)
    own = values[..., :time_bins, :]
    own[..., :dim] *= 1 - duplicate
    own[..., dim:dim + 1] = duplicate
    out = F.scaled_dot_product_attention(queries.view(-1, heads, time_bins, width),
                                         row_keys(key, freq_bins, cross, width),
                                         values.view(-1, heads, time_bins + cross.numel(), width), scale=scale)
    return merge_rows(out[..., :dim] / (1 - out[..., dim:dim + 1]), batch, freq_bins)


def exact_attention_masked(query, key, value, freq_bins, cross, scale):
    """The exact union in one batched call with a mask that drops, for each row, the random keys in that row (static
    shapes, no host synchronisation; a masked call rules out a GPU's flash kernels). The CPU's default form.

    mask: (b*f, 1, 1, T + R), True = attend.
    """
    batch = query.shape[0]
    time_bins, count = query.shape[2] // freq_bins, cross.numel()
    row = torch.arange(freq_bins, device=query.device)
    random_key_allowed = (cross[None, :] % freq_bins) != row[:, None]  # (f, R)
    mask = torch.cat([random_key_allowed.new_ones(freq_bins, time_bins), random_key_allowed], dim=1)
    keys = time_bins + count
    mask = mask[None, :, None, None, :].expand(batch, freq_bins, 1, 1, keys).reshape(-1, 1, 1, keys)
    out = F.scaled_dot_product_attention(rows(query, freq_bins), row_keys(key, freq_bins, cross),
                                         row_keys(value, freq_bins, cross), attn_mask=mask, scale=scale)
    return merge_rows(out, batch, freq_bins)


def exact_attention_by_rows(query, key, value, freq_bins, cross, scale):
    """The exact union as one mask-free call per frequency row against its own keys and the random keys outside it
    (the default until 2026-12): F calls and F boolean-mask indexings, each a host synchronisation on a GPU. An
    alternative form, for benchmarks and tests."""
    batch, heads, num_tokens, dim = query.shape
    time_bins = num_tokens // freq_bins
    q_rows, k_rows, v_rows = (rows(x, freq_bins).view(batch, freq_bins, heads, time_bins, dim)
                              for x in (query, key, value))
    out = torch.empty_like(q_rows)
    row_of_key = cross % freq_bins
    for row in range(freq_bins):
        outside = cross[row_of_key != row]
        keys = torch.cat([k_rows[:, row], key[:, :, outside]], dim=2)
        values = torch.cat([v_rows[:, row], value[:, :, outside]], dim=2)
        out[:, row] = F.scaled_dot_product_attention(q_rows[:, row], keys, values, scale=scale)
    return merge_rows(out.view(batch * freq_bins, heads, time_bins, dim), batch, freq_bins)


def check_ratio(ratio: float) -> None:
    """A ratio is a real number in [0, 1] (Python's or numpy's; not a bool, a string, a tensor or NaN)."""
    if isinstance(ratio, torch.Tensor):
        raise TypeError(f"ratio must be a Python or numpy number, not a tensor (use float(ratio)); got {ratio!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1] (a number: the share of all keys drawn at random); got {ratio!r}")


def check_backend(backend: str, union: str = "exact") -> None:
    """A backend is one of :data:`BACKENDS` that this torch has, and varlen serves the exact union only; an error says
    what is missing (the device, dtype and card are :func:`check_backend_for`'s)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} ('auto': varlen on CUDA where it runs, else sdpa; 'sdpa': "
                         "one batched scaled_dot_product_attention call; 'flex': FlexAttention with a block mask; "
                         "'varlen': flash varlen attention, CUDA only; 'by_rows': one call per frequency row, for "
                         f"comparisons); got {backend!r}")
    if backend == "by_rows" and union != "exact":
        raise ValueError(f"backend='by_rows' serves the exact union only; got union={union!r}")
    if backend == "varlen":
        problem = varlen_problem("cuda", torch.bfloat16, 1, None, union)  # what holds whatever the device
        if problem:
            raise ValueError(f"backend='varlen' {problem}")
    if backend == "flex":
        try:
            from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
        except ImportError as error:
            raise ValueError(f"backend='flex' needs torch.nn.attention.flex_attention (torch >= 2.5); this torch is "
                             f"{torch.__version__}") from error


def check_backend_for(backend: str, query: torch.Tensor, union: str = "exact") -> None:
    """An error unless ``query`` ``(b, h, N, d)`` can run ``backend`` (varlen: CUDA, float16/bfloat16, head dim <= 256,
    compute capability 8.0+: :func:`litefocus.backends.varlen_problem`). A per-call check that ``torch.compile``
    traces as a constant (device, dtype and shape are static; the capability is read once)."""
    if backend == "varlen":
        problem = varlen_problem_of(query, union)
        if problem:
            raise ValueError(f"backend='varlen' {problem}")


def check_union(union: str) -> None:
    if union not in UNIONS:
        raise ValueError(f"union must be one of {UNIONS} ('exact': paper's eq. 4; 'concat': the authors' code); "
                         f"got {union!r}")


def check_freq_bins(freq_bins) -> None:
    if isinstance(freq_bins, bool) or not isinstance(freq_bins, numbers.Integral) or freq_bins < 1:
        raise ValueError(f"freq_bins must be a positive int (the width F of the (T, F) token grid); got {freq_bins!r}")


def _check_inputs(query, key, value, freq_bins, same_frequency, cross_frequency, union) -> int:
    check_union(union)
    if not (same_frequency or cross_frequency):
        raise ValueError(
            "same_frequency and cross_frequency are both False: the focus set would be empty. "
            "Keep at least one (same_frequency=False is the cross-only ablation, cross_frequency=False the same-only one)."
        )
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{name} must be a floating-point tensor (batch, heads, N, head_dim); got {kind}")
    if query.ndim != 4 or key.shape != query.shape or value.shape != query.shape:
        raise ValueError(
            "query, key and value must be (batch, heads, N, head_dim) self-attention tensors of one shape "
            f"(value's head_dim too); got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(f"query, key and value must share one dtype; got {query.dtype}, {key.dtype}, {value.dtype}")
    if query.shape[1] == 0 or query.shape[3] == 0:
        raise ValueError(f"query, key and value need at least one head and head_dim >= 1; got shape "
                         f"{tuple(query.shape)}")
    check_freq_bins(freq_bins)
    num_tokens = query.shape[2]
    if num_tokens == 0:
        raise ValueError("query has no tokens (N = 0): there is nothing to attend to")
    if num_tokens % freq_bins:
        raise ValueError(
            f"{num_tokens} tokens do not form a grid with freq_bins={freq_bins} frequency bins; "
            "freq_bins must divide the token count (it is the width W of the (T, F) latent grid)"
        )
    return num_tokens


def check_scale(scale) -> None:
    """A softmax scale is None (``head_dim ** -0.5``) or a positive finite real number."""
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                              or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be None (head_dim ** -0.5) or a positive finite number; got {scale!r}")


def _resolve_cross_indices(num_tokens, ratio, cross_frequency, cross_indices, generator, device, union):
    check_ratio(ratio)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {generator!r} (for a seed, pass "
                        "torch.Generator().manual_seed(seed))")
    if not cross_frequency:
        if cross_indices is not None:
            raise ValueError("cross_indices were given with cross_frequency=False; drop one of the two")
        return None
    if cross_indices is None:
        return draw_cross_indices(num_tokens, ratio, generator, device)
    if not isinstance(cross_indices, torch.Tensor) or cross_indices.ndim != 1 or cross_indices.dtype != torch.int64:
        got = (f"{cross_indices.dtype} with shape {tuple(cross_indices.shape)}"
               if isinstance(cross_indices, torch.Tensor) else type(cross_indices).__name__)
        raise ValueError(f"cross_indices must be a 1-D int64 tensor of key indices "
                         f"(torch.tensor([...], dtype=torch.int64)); got {got}")
    if cross_indices.numel() and not (0 <= int(cross_indices.min()) and int(cross_indices.max()) < num_tokens):
        raise ValueError(f"cross_indices must lie in [0, {num_tokens}); got values from "
                         f"{int(cross_indices.min())} to {int(cross_indices.max())}")
    cross_indices = cross_indices.to(device)
    return torch.unique(cross_indices) if union == "exact" else cross_indices.sort().values


def _check_nonempty(same_frequency: bool, cross: torch.Tensor | None) -> None:
    if not same_frequency and (cross is None or cross.numel() == 0):
        raise ValueError(
            "cross-frequency-only attention with no random keys (ratio * N < 1) leaves queries nothing to attend "
            "to; raise ratio or keep same_frequency=True"
        )
