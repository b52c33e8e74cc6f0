"""Random keys as a function of names: ``(seed, module name, denoising step) -> cross-frequency key set``.

A draw never depends on what ran before it in the process (as JAX derives keys with ``fold_in``): two identical
pipeline calls give identical audio, a job gives the same bytes in a fresh process, and ``torch.compile`` sees only
integer tensor arithmetic (no ``torch.Generator``, which breaks its graph). The hash is 32-bit murmur3's finalizer,
written so that no intermediate leaves int64's range: the same keys on every device.
"""

from __future__ import annotations

import numbers
import zlib

import torch

from .kernel import cross_key_count

MASK = 0xFFFFFFFF
SEED_LIMIT = 2**64
"""Seeds lie in ``[0, 2**64)``, the range of ``torch.Generator.manual_seed`` for non-negative seeds."""


def _mul32(x, constant: int):
    """``(x * constant) mod 2**32`` for ``0 <= x < 2**32``, in halves so that int64 never overflows."""
    return (((((x >> 16) * constant) & 0xFFFF) << 16) + (x & 0xFFFF) * constant) & MASK


def mix32(x):
    """murmur3's 32-bit finalizer, a bijection of ``[0, 2**32)``; on Python ints or int64 tensors."""
    x = x & MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def fold_in(key, data):
    """A new key from ``key`` and ``data`` (ints in ``[0, 2**32)`` or int64 tensors of them)."""
    return mix32(key ^ data_hash(data))


def data_hash(data):
    """The half of :func:`fold_in` that depends on ``data`` alone, ``fold_in(key, data) = mix32(key ^
    data_hash(data))``: a hash of many keys against the same data computes it once."""
    return mix32((data + 0x9E3779B9) & MASK)


def check_seed(seed) -> int:
    """``seed`` as an int in ``[0, 2**64)``, or a ValueError/TypeError that says what is valid."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):  # numpy integers too
        raise TypeError(f"seed must be an int in [0, 2**64); got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must lie in [0, 2**64) (what a torch.Generator accepts); got {seed}")
    return int(seed)


def module_key(seed: int, module: str) -> int:
    """The key of one module under one seed (a Python int): fold in the seed's two halves, then the name's CRC."""
    key = fold_in(fold_in(0x5EED, seed & MASK), seed >> 32)
    return fold_in(key, zlib.crc32(module.encode()))


def timestep_code(timestep):
    """``round(1000 * timestep) mod 2**32`` in float32: integer timesteps and float ones (sigma schedules) alike,
    the same code from a tensor (what pipelines pass) as from a Python number (an int64 tensor or an int)."""
    if isinstance(timestep, torch.Tensor):
        return (timestep.flatten()[0].float() * 1000).round().long() & MASK
    return int(timestep_code(torch.tensor(float(timestep))))


def keyed_cross_indices(num_tokens: int, count: int, key, device: torch.device | str | None = None) -> torch.Tensor:
    """``count`` distinct indices of ``range(num_tokens)``, sorted int64: those with the smallest hash under ``key``.

    Every subset of size ``count`` is (up to the hash's quality) equally likely, as with ``randperm(N)[:count]``.
    ``key``: a Python int or an int64 scalar tensor (as :func:`fold_in` of :func:`module_key` and
    :func:`timestep_code` gives).
    """
    if isinstance(key, torch.Tensor):
        device = key.device if device is None else device
    return drawn_rows(torch.as_tensor(key, dtype=torch.int64, device=device).reshape(1), num_tokens, count)[0]


def drawn_rows(call_keys: torch.Tensor, num_tokens: int, count: int) -> torch.Tensor:
    """:func:`keyed_cross_indices` of many keys at once: ``(M,)`` int64 call keys -> ``(M, count)`` sorted indices,
    row ``i`` equal bit for bit to ``keyed_cross_indices(num_tokens, count, call_keys[i])`` (one hash, one top-k and
    one sort for all M: what a UNet call draws for every patched module of one grid size)."""
    index = torch.arange(num_tokens, device=call_keys.device)
    scores = mix32(call_keys[:, None] ^ data_hash(index)[None, :])
    return scores.topk(count, dim=1, largest=False, sorted=False).indices.sort(dim=1).values


def call_key(seed: int, module: str, timestep):
    """The key of one module call: a function of ``(seed, module name, timestep)`` alone."""
    return fold_in(module_key(seed, module), timestep_code(timestep))


def drawn_keys(key_of_module: int, timestep, num_tokens: int, ratio: float,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The cross-frequency keys LiteFocus draws in a module at ``timestep`` (a tensor, as the UNet gets it, or a
    number): sorted int64 ``(floor(ratio * num_tokens),)``. What the processor attends to and the recorder scores.

    ``key_of_module``: :func:`module_key` of (seed, module name), computed once per module (its CRC is no tensor
    operation, so it stays out of a compiled graph)."""
    key = fold_in(key_of_module, timestep_code(timestep))
    return keyed_cross_indices(num_tokens, cross_key_count(num_tokens, ratio), key, device)


def tomesd_seed(seed: int, timestep) -> int:
    """A generator seed for Token Merging's draws at one denoising step (tomesd has one generator per UNet)."""
    return int(call_key(seed, "tomesd", timestep))

