"""The exact union beyond one SDPA call: FlexAttention with a block mask built from the structure, and flash
attention's variable-length kernel (CUDA); what each needs, and which exact form ``backend="auto"`` runs where.

Shapes as in :mod:`litefocus.kernel`: ``(b, h, N, d)`` time-major tokens, ``cross`` the ``R`` sorted random keys.
"""

from __future__ import annotations

import inspect

import torch

from .layout import by_rows, frequency_major, merge_rows

VARLEN_DTYPES = (torch.float16, torch.bfloat16)
VARLEN_MAX_HEAD_DIM = 256
VARLEN_MIN_CAPABILITY = (8, 0)  # FlashAttention-2: Ampere (sm80) and newer
FLEX_BLOCK = 128  # FlexAttention's default block size


# ---------------------------------------------------------------- what varlen needs, and what auto runs
def varlen_kernel_problem() -> str | None:
    """Why this torch cannot run :func:`varlen_exact_attention` (no ``varlen_attn``, or one without ``scale=``,
    which came with torch 2.10), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return f"needs torch.nn.attention.varlen.varlen_attn (torch >= 2.10); this torch is {torch.__version__}"
    if "scale" not in inspect.signature(varlen_attn).parameters:
        return f"needs varlen_attn's scale= argument (torch >= 2.10); this torch is {torch.__version__}"
    return None


VARLEN_KERNEL_PROBLEM = varlen_kernel_problem()  # read once: a constant for torch.compile


@torch.compiler.assume_constant_result
def device_capability(index: int) -> tuple[int, int]:
    """The CUDA compute capability of device ``index`` (a constant under ``torch.compile``)."""
    return torch.cuda.get_device_capability(index)


def varlen_problem(device_type: str, dtype: torch.dtype, head_dim: int, capability: tuple[int, int] | None,
                   union: str = "exact") -> str | None:
    """Why flash varlen cannot run these inputs, or None: it needs the exact union, CUDA, fp16 or bf16, a head dim
    of at most 256, a card of compute capability 8.0 or more (FlashAttention-2) and torch >= 2.10."""
    if union != "exact":
        return f"serves the exact union only (union={union!r}: use backend='sdpa' or 'flex')"
    if device_type != "cuda":
        return f"needs a CUDA device (these tensors are on {device_type}): use backend='sdpa' or 'flex'"
    if dtype not in VARLEN_DTYPES:
        return f"runs float16 and bfloat16 only (FlashAttention); got {dtype}: use backend='sdpa' or cast"
    if head_dim > VARLEN_MAX_HEAD_DIM:
        return f"takes head dims up to {VARLEN_MAX_HEAD_DIM}; got {head_dim}: use backend='sdpa'"
    if capability is not None and tuple(capability) < VARLEN_MIN_CAPABILITY:
        return (f"needs compute capability 8.0 or more (FlashAttention-2; this card has "
                f"{capability[0]}.{capability[1]}): use backend='sdpa'")
    return VARLEN_KERNEL_PROBLEM


def varlen_problem_of(query: torch.Tensor, union: str = "exact") -> str | None:
    """:func:`varlen_problem` for these ``(b, h, N, d)`` queries (their device, dtype and head dim)."""
    device = query.device
    capability = device_capability(device.index or 0) if device.type == "cuda" else None
    return varlen_problem(device.type, query.dtype, query.shape[-1], capability, union)


def auto_exact_form(query: torch.Tensor) -> str:
    """The exact union's form for ``backend="auto"``: ``"varlen"`` on CUDA where it runs (head dim kept as it is),
    else ``"merged"`` on CUDA (one mask-free SDPA call, head dim padded) and ``"masked"`` on a CPU."""
    if query.device.type != "cuda":
        return "masked"
    return "merged" if varlen_problem_of(query) else "varlen"


# ---------------------------------------------------------------- FlexAttention
_BLOCK_MASKS: dict = {}
_COMPILED_FLEX: list = []


def focus_block_structure(num_tokens: int, time_bins: int, count: int, block: int = FLEX_BLOCK
                          ) -> tuple[list[list[int]], list[list[int]]]:
    """Per query block of ``block`` frequency-major queries, the key blocks of ``[N keys, frequency-major | R random
    keys]`` to visit: ``(partial, full)``. A key block inside the own rows of every query of a block (one row) is full;
    others that touch the own rows, and every block of random keys, are partial (the mask decides). Known from the
    sizes alone: nothing is evaluated over the ``N x (N + R)`` grid."""
    kv_tokens = num_tokens + count
    partial, full = [], []
    for start in range(0, num_tokens, block):
        end = min(start + block, num_tokens)
        first_row, last_row = start // time_bins, (end - 1) // time_bins
        low, high = first_row * time_bins, (last_row + 1) * time_bins  # the own keys of the block's queries
        whole, some = [], []
        for j in range(low // block, (high - 1) // block + 1):
            j_start, j_end = j * block, min((j + 1) * block, kv_tokens)
            inside = first_row == last_row and low <= j_start and j_end <= high
            (whole if inside else some).append(j)
        some += [j for j in range(num_tokens // block, (kv_tokens - 1) // block + 1) if j not in some + whole]
        partial.append(sorted(some))
        full.append(whole)
    return partial, full


def _indices(lists: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(x) for x in lists))
    counts = torch.tensor([len(x) for x in lists], dtype=torch.int32, device=device)
    padded = torch.tensor([x + [0] * (width - len(x)) for x in lists], dtype=torch.int32, device=device)
    return counts[None, None], padded[None, None]


def focus_block_mask(num_tokens: int, time_bins: int, count: int, keep, device, block: int = FLEX_BLOCK):
    """A ``BlockMask`` of :func:`focus_block_structure` with ``keep`` as its mask function; the block tensors are
    made once per (sizes, device) and reused."""
    from torch.nn.attention.flex_attention import BlockMask

    key = (num_tokens, time_bins, count, block, str(device))
    if key not in _BLOCK_MASKS:
        partial, full = focus_block_structure(num_tokens, time_bins, count, block)
        _BLOCK_MASKS[key] = (*_indices(partial, device), *_indices(full, device))
    kv_num, kv_index, full_num, full_index = _BLOCK_MASKS[key]
    return BlockMask.from_kv_blocks(kv_num, kv_index, full_num, full_index, BLOCK_SIZE=block, mask_mod=keep,
                                    seq_lengths=(num_tokens, num_tokens + count))


def flex_call(query, key, value, block_mask, scale):
    """``flex_attention``: compiled once for the process on CUDA when not already inside ``torch.compile`` (eager it
    runs PyTorch's unfused reference, which materialises every score: gigabytes a call at 81.92 s); eager on a
    CPU."""
    from torch.nn.attention.flex_attention import flex_attention

    if query.device.type == "cuda" and not torch.compiler.is_compiling():
        if not _COMPILED_FLEX:
            _COMPILED_FLEX.append(torch.compile(flex_attention, dynamic=False))
        return _COMPILED_FLEX[0](query, key, value, block_mask=block_mask, scale=scale)
    return flex_attention(query, key, value, block_mask=block_mask, scale=scale)


def flex_focus_attention(query, key, value, freq_bins, cross, scale, union="exact"):
    """The union (``exact`` or ``concat``) as one FlexAttention call: frequency-major queries against ``[all N keys,
    frequency-major | the R random keys]``, with a block mask that keeps each query's own row (a ``T x T`` block on
    the diagonal) and the random keys (for ``exact``: those outside its row). Static shapes; the block structure
    comes from the sizes (:func:`focus_block_structure`), the mask function only decides inside partial blocks."""
    batch, heads, num_tokens, dim = query.shape
    time_bins, count = num_tokens // freq_bins, cross.numel()
    row_of_random = cross % freq_bins
    exact = union == "exact"

    def keep(b, h, q, kv):
        row = q // time_bins
        own = (kv < num_tokens) & (kv // time_bins == row)
        drawn = kv >= num_tokens
        if exact:
            drawn = drawn & (row_of_random[(kv - num_tokens).clamp(0, count - 1)] != row)
        return own | drawn

    mask = focus_block_mask(num_tokens, time_bins, count, keep, query.device)
    keys, values = (torch.cat([frequency_major(x, freq_bins), x[:, :, cross]], dim=2) for x in (key, value))
    out = flex_call(frequency_major(query, freq_bins), keys, values, mask, scale)
    return merge_rows(out.view(batch, heads, freq_bins, time_bins, dim).transpose(1, 2).reshape(
        batch * freq_bins, heads, time_bins, dim), batch, freq_bins)


# ---------------------------------------------------------------- flash varlen
def varlen_layout(batch: int, num_tokens: int, freq_bins: int, cross: torch.Tensor):
    """The packed keys of :func:`varlen_exact_attention`, with static shapes and no host synchronisation: one
    sequence per (batch item, row), holding the row's ``T`` own keys, then the random keys outside the row.

    Returns ``(key_index, cu_seq_q, cu_seq_k, max_q, max_k)``: ``key_index`` ``(batch * (N + (F - 1) R),)`` indexes
    the flattened ``(batch * N)`` time-major tokens; ``cu_seq_q``, ``cu_seq_k`` ``(batch * F + 1,)`` int32 cumulative
    lengths; ``max_q = T``, ``max_k = T + R`` (an upper bound: rows holding drawn keys have fewer)."""
    device, count, time_bins = cross.device, cross.numel(), num_tokens // freq_bins
    rows = torch.arange(freq_bins, device=device)
    outside = (cross[None, :] % freq_bins) != rows[:, None]  # (F, R): random key j is outside row f
    # the kept (row, random key) pairs in row order, by a stable sort: static size F * R - R (each key is in one row)
    kept = torch.argsort((~outside).flatten().to(torch.int8), stable=True)[: freq_bins * count - count]
    own_tokens = (torch.arange(time_bins, device=device)[None, :] * freq_bins + rows[:, None]).flatten()  # (F*T,)
    tokens = torch.cat([own_tokens, cross[kept % count]])
    sequence = torch.cat([rows.repeat_interleave(time_bins), kept // count])
    order = torch.argsort(sequence, stable=True)  # each row's own keys, then its random keys
    per_item = tokens[order]  # (N + (F - 1) R,)
    offsets = torch.arange(batch, device=device)[:, None] * num_tokens
    key_index = (per_item[None, :] + offsets).flatten()
    lengths = time_bins + outside.sum(1)  # (F,): T + the random keys outside the row
    cu_seq_k = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths.repeat(batch), 0)]).to(torch.int32)
    cu_seq_q = torch.arange(batch * freq_bins + 1, device=device, dtype=torch.int32) * time_bins
    return key_index, cu_seq_q, cu_seq_k, time_bins, time_bins + count


def varlen_exact_attention(query, key, value, freq_bins, cross, scale, attention=None):
    """The exact union through flash attention's variable-length kernel (:func:`varlen_layout`): no duplicate
    correction, no mask, no padding of the head dim. ``attention``: the kernel (default
    ``torch.nn.attention.varlen.varlen_attn``; tests pass a per-sequence SDPA emulation on a CPU)."""
    if attention is None:
        from torch.nn.attention.varlen import varlen_attn as attention
    batch, heads, num_tokens, dim = query.shape
    key_index, cu_q, cu_k, max_q, max_k = varlen_layout(batch, num_tokens, freq_bins, cross)
    packed = lambda x: x.transpose(1, 2).reshape(batch * num_tokens, heads, dim)  # (b*N, h, d), time-major
    q = by_rows(query, freq_bins).permute(0, 1, 3, 2, 4).reshape(batch * num_tokens, heads, dim)  # frequency-major
    k, v = packed(key)[key_index], packed(value)[key_index]
    out = attention(q, k, v, cu_q, cu_k, max_q, max_k, scale=scale)  # (b*N, h, d), frequency-major
    rows = out.view(batch, freq_bins, max_q, heads, dim).transpose(2, 3).reshape(batch * freq_bins, heads, max_q, dim)
    return merge_rows(rows, batch, freq_bins)
