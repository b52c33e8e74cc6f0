"""Install LiteFocus processors on a pipeline's UNet, and take them off again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .layers import ProcessorLayer, layers_of
from .options import PAPER_BLOCKS, LiteFocusOptions
from .probes import attach_grid_probes, attach_key_draws, attach_step_probe
from .processor import LiteFocusAttnProcessor
from .selection import BlockSelection, self_attention_modules, unet_of

_APPLIED, _ENABLED = "litefocus:apply", "litefocus:enabled"
"""The kinds of processor layer LiteFocus attaches: by :func:`apply` (one at a time) and by :func:`enabled` (nested)."""


def apply(
    model,
    blocks: BlockSelection = PAPER_BLOCKS,
    ratio: float = 0.1,
    *,
    same_frequency: bool = True,
    cross_frequency: bool = True,
    union: str = "exact",
    seed: int = 0,
    backend: str = "auto",
    draws: str = "batched",
) -> list[str]:
    """Replace the processors of the selected self-attention modules with LiteFocus; returns their names.

    Args that matter:
        model: a diffusers pipeline (AudioLDM2, AudioLDM, MusicLDM) or its UNet.
        blocks: block names, module-name globs or a predicate (see :func:`self_attention_modules`); the default
            is the paper's ``down_blocks.1`` and ``up_blocks.2``.
        ratio: compensation ratio r (paper: 0.1).
        seed: keys the random draws: each module call draws its random keys as a function of ``(seed, module name,
            UNet timestep)`` alone, so identical pipeline calls give identical audio whatever ran before.
    Args to tinker with:
        same_frequency / cross_frequency: the ablations of the paper's Tables 3 and 2.
        union: ``"exact"`` (paper's eq. 4, default) or ``"concat"`` (the authors' released code, which the paper's
            numbers come from: a random key in the query's own row counts twice).
        backend: ``"auto"`` (default), ``"sdpa"``, ``"flex"``, ``"varlen"`` (CUDA) or ``"by_rows"``: how the
            attention is computed (``litefocus.kernel.BACKENDS``); every backend gives the same result up to float
            rounding.
        draws: ``"batched"`` (default) or ``"per_module"``: how the random keys are drawn (the same keys either way;
            :class:`litefocus.options.LiteFocusOptions`).

    Applying again first removes the previous :func:`apply` (never a double wrap); :func:`enabled` blocks nest.
    """
    options = LiteFocusOptions(ratio=ratio, same_frequency=same_frequency, cross_frequency=cross_frequency,
                               union=union, seed=seed, backend=backend, draws=draws)
    unet = unet_of(model)
    names = self_attention_modules(unet, blocks)
    for layer in layers_of(unet, _APPLIED):
        layer.detach()
    _attach(unet, names, options, _APPLIED)
    return names


def remove(model) -> list[str]:
    """Take every LiteFocus application off (also those of open :func:`enabled` blocks), with its hooks; returns
    the module names. A module whose processor was replaced meanwhile (``set_attn_processor``) keeps the new one."""
    unet = unet_of(model)
    names: list[str] = []
    for layer in reversed(layers_of(unet, _APPLIED) + layers_of(unet, _ENABLED)):
        names += [name for name in layer.detach() if name not in names]
    return names


def is_applied(model) -> bool:
    """Whether LiteFocus runs on some module of this pipeline or UNet now.

    False once diffusers' ``set_attn_processor``, ``enable_attention_slicing`` or anything else has replaced
    every LiteFocus processor (call :func:`remove` then to drop the hooks).
    """
    unet = unet_of(model)
    return any(layer.active_modules() for layer in layers_of(unet, _APPLIED) + layers_of(unet, _ENABLED))


@contextmanager
def enabled(model, blocks: BlockSelection = PAPER_BLOCKS, ratio: float = 0.1, **kwargs) -> Iterator[list[str]]:
    """``with litefocus.enabled(pipe, ...) as names:`` LiteFocus inside the block; on any exit, the selected modules
    get back exactly what they had at entry (blocks nest, with the same or other blocks, and with recorders).

    Takes the arguments of :func:`apply` and yields the patched module names.
    """
    options = LiteFocusOptions(ratio=ratio, **kwargs)
    unet = unet_of(model)
    names = self_attention_modules(unet, blocks)
    layer = _attach(unet, names, options, _ENABLED)
    try:
        yield names
    finally:
        layer.detach()


def _attach(unet: torch.nn.Module, names: list[str], options: LiteFocusOptions, kind: str) -> ProcessorLayer:
    """Hooks for the grid and the timestep, then one LiteFocus processor per named module, as one layer."""
    layer = ProcessorLayer(unet, kind)
    probes, layer.hooks = attach_grid_probes(unet, names)
    batched = options.cross_frequency and options.draws == "batched"
    step, hook = attach_key_draws(unet, names, options.seed, options.ratio) if batched else attach_step_probe(unet)
    layer.hooks.append(hook)
    layer.attach(lambda name, _: LiteFocusAttnProcessor(options, name, probes.get(name), step), names)
    return layer
