"""Where a UNet forward spends its time: per self-attention module, the whole module and its attention core.

    with time_attention(unet) as timing:
        unet(sample, t, encoder_hidden_states=...)
    timing.table()     # one row per self-attention module: level, grid, module_s, core_s

Forward pre-/post-hooks time each self-attention module; the attention core is the time spent inside the attention
functions of :data:`CORE_FUNCTIONS` (SDPA, FlexAttention, flash varlen) while that module runs (their callers look
them up at call time, so they are wrapped in their modules for the duration of the block). Wall-clock seconds on
the CPU; on a GPU, synchronize inside ``forward`` or the numbers measure kernel launches.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import torch

from litefocus.probes import attach_grid_probes
from litefocus.selection import BlockSelection, block_of, level_of, self_attention_modules, unet_of


class AttentionTiming:
    """Seconds per self-attention module, accumulated over every forward run inside the ``with`` block."""

    def __init__(self, model, blocks: BlockSelection = None):
        self.unet = unet_of(model)
        self.names = self_attention_modules(self.unet, blocks)
        self.module_s: dict[str, float] = defaultdict(float)
        self.core_s: dict[str, float] = defaultdict(float)
        self.forward_s = 0.0
        self._running: str | None = None
        self._started: dict[str, float] = {}
        self._hooks: list = []
        self._probes: dict = {}
        self._sdpa = None

    def __enter__(self) -> AttentionTiming:
        if self._sdpa is not None:
            raise RuntimeError("this timing is already attached")
        self._probes, self._hooks = attach_grid_probes(self.unet, self.names)
        for name in self.names:
            module = self.unet.get_submodule(name)
            self._hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: self._enter(n)))
            self._hooks.append(module.register_forward_hook(lambda m, a, o, n=name: self._leave(n)))
        self._hooks.append(self.unet.register_forward_pre_hook(lambda m, a: self._enter("")))
        self._hooks.append(self.unet.register_forward_hook(lambda m, a, o: self._leave("")))
        self._sdpa = _attach_core_timer(self)
        return self

    def __exit__(self, *exc) -> None:
        """Detach, in any order relative to other timings (the SDPA wrapper goes with the last of them)."""
        _detach_core_timer(self)
        self._sdpa = None
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _enter(self, name: str) -> None:
        self._started[name] = time.perf_counter()
        if name:
            self._running = name

    def _leave(self, name: str) -> None:
        elapsed = time.perf_counter() - self._started.pop(name)
        if name:
            self.module_s[name] += elapsed
            self._running = None
        else:
            self.forward_s += elapsed

    def _core_time(self, seconds: float) -> None:
        if self._running is not None:
            self.core_s[self._running] += seconds

    def table(self) -> pd.DataFrame:
        """One row per self-attention module: block, level, time_bins, freq_bins, module_s, core_s (seconds)."""
        rows = []
        for name in self.names:
            probe = self._probes.get(name)
            time_bins, freq_bins = probe.shape if probe is not None and probe.shape else (None, None)
            rows.append(dict(module=name, block=block_of(name), level=level_of(name, self.unet),
                             time_bins=time_bins, freq_bins=freq_bins, module_s=self.module_s.get(name, 0.0),
                             core_s=self.core_s.get(name, 0.0)))
        return pd.DataFrame(rows)

    def level_shares(self) -> pd.DataFrame:
        """One row per UNet level: tokens, freq_bins, modules, module_s, core_s (summed), forward_s, and the shares
        of the forward time the modules (``module_share``) and their attention cores (``core_share``) took."""
        if not self.forward_s:
            raise ValueError("no UNet forward was timed: call the UNet (or the pipeline) inside the with-block")
        rows = []
        for level, group in self.table().groupby("level"):
            rows.append(dict(
                level=int(level), tokens=int((group.time_bins * group.freq_bins).iloc[0]),
                freq_bins=int(group.freq_bins.iloc[0]), modules=len(group), module_s=group.module_s.sum(),
                core_s=group.core_s.sum(), forward_s=self.forward_s, module_share=group.module_s.sum() / self.forward_s,
                core_share=group.core_s.sum() / self.forward_s))
        return pd.DataFrame(rows)


_TIMINGS: list[AttentionTiming] = []  # the open timings, which one set of core wrappers serves
_ORIGINALS: dict[tuple[str, str], object] = {}  # (module, function) -> the function its wrapper replaced
CORE_FUNCTIONS = (("torch.nn.functional", "scaled_dot_product_attention"),
                  ("torch.nn.attention.flex_attention", "flex_attention"),
                  ("torch.nn.attention.varlen", "varlen_attn"))
"""The attention cores timed: SDPA (diffusers' processors, LiteFocus's sdpa forms), FlexAttention (``backend="flex"``
run eagerly) and flash varlen (``backend="varlen"``). Looked up at call time by their callers, so wrapping the module
attribute times every call; flex compiled on CUDA (``litefocus.backends.flex_call``) is a compiled kernel this
wrapper does not see: time a GPU with the profiler (``benchmarks/gpu.py``)."""


def _core_modules():
    import importlib

    for module_name, function in CORE_FUNCTIONS:
        try:
            yield importlib.import_module(module_name), module_name, function
        except ImportError:  # an older torch without that backend: nothing of it to time
            continue


def _timed(original):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        for timing in _TIMINGS:
            timing._core_time(time.perf_counter() - start)
        return out

    return timed


def _attach_core_timer(timing: AttentionTiming):
    """Put the core wrappers in place with the first open timing; returns the SDPA the first wraps."""
    if not _TIMINGS:
        for module, module_name, function in _core_modules():
            if hasattr(module, function):
                _ORIGINALS[module_name, function] = getattr(module, function)
                setattr(module, function, _timed(_ORIGINALS[module_name, function]))
    _TIMINGS.append(timing)
    return _ORIGINALS[CORE_FUNCTIONS[0]]


def _detach_core_timer(timing: AttentionTiming) -> None:
    """Take ``timing`` off; the last one to go puts the original functions back."""
    if timing in _TIMINGS:
        _TIMINGS.remove(timing)
    if not _TIMINGS and _ORIGINALS:
        for module, module_name, function in _core_modules():
            if (module_name, function) in _ORIGINALS:
                setattr(module, function, _ORIGINALS.pop((module_name, function)))


def time_attention(model, blocks: BlockSelection = None) -> AttentionTiming:
    """``with time_attention(pipe_or_unet) as timing:`` (see :class:`AttentionTiming`); ``timing.forward_s`` is the
    UNet forward time over the same calls."""
    return AttentionTiming(model, blocks)


@contextmanager
def unet_timer(unet, device: torch.device) -> Iterator[list[float]]:
    """``with unet_timer(pipe.unet, device) as calls:`` the wall time (s) of each UNet forward call in ``calls``
    (synchronized on CUDA)."""
    calls, start = [], []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def before(*_):
        sync()
        start.append(time.perf_counter())

    def after(*_):
        sync()
        calls.append(time.perf_counter() - start.pop())

    handles = [unet.register_forward_pre_hook(before), unet.register_forward_hook(after)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
