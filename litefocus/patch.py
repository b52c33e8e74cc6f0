"""Install LiteFocus processors on a pipeline's UNet, and take them off again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from .options import PAPER_BLOCKS, LiteFocusOptions
from .processor import GridProbe, LiteFocusAttnProcessor
from .selection import BlockSelection, self_attention_modules, unet_of

_STATE_ATTR = "_litefocus_patch"


@dataclass
class _Patch:
    """What ``apply`` changed on a UNet: the original processor of each patched module, and the grid hooks."""

    originals: dict[str, object] = field(default_factory=dict)
    hooks: list = field(default_factory=list)


def apply(
    model,
    blocks: BlockSelection = PAPER_BLOCKS,
    ratio: float = 0.1,
    *,
    same_frequency: bool = True,
    cross_frequency: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Replace the processors of the selected self-attention modules with LiteFocus; returns their names.

    Args that matter:
        model: a diffusers pipeline (AudioLDM2, AudioLDM, MusicLDM) or its UNet.
        blocks: block names, module-name globs or a predicate (see :func:`self_attention_modules`); the default
            is the paper's ``down_blocks.1`` and ``up_blocks.2``.
        ratio: compensation ratio r (paper: 0.1).
    Args to tinker with:
        same_frequency / cross_frequency: the ablations of the paper's Tables 3 and 2.
        seed / generator: the source of the random keys (one draw per module call); give one, not both;
            neither means seed 0. The same seed gives the same audio.

    Applying again first removes the previous application, so nothing is ever wrapped twice.
    """
    options = LiteFocusOptions(ratio=ratio, same_frequency=same_frequency, cross_frequency=cross_frequency)
    if generator is not None and seed is not None:
        raise ValueError("give seed or generator, not both")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    unet = unet_of(model)
    names = self_attention_modules(unet, blocks)
    remove(unet)
    probes, hooks = attach_grid_probes(unet, names)
    patch = _Patch(hooks=hooks)
    for name in names:
        module = unet.get_submodule(name)
        patch.originals[name] = module.processor
        module.set_processor(LiteFocusAttnProcessor(options, probes.get(name), generator))
    setattr(unet, _STATE_ATTR, patch)
    return names


def remove(model) -> list[str]:
    """Put back the processors that :func:`apply` replaced (the very same objects); returns the restored names."""
    unet = unet_of(model)
    patch: _Patch | None = getattr(unet, _STATE_ATTR, None)
    if patch is None:
        return []
    for hook in patch.hooks:
        hook.remove()
    for name, processor in patch.originals.items():
        unet.get_submodule(name).set_processor(processor)
    delattr(unet, _STATE_ATTR)
    return list(patch.originals)


def is_applied(model) -> bool:
    """Whether LiteFocus is currently applied to this pipeline or UNet."""
    return hasattr(unet_of(model), _STATE_ATTR)


@contextmanager
def enabled(model, blocks: BlockSelection = PAPER_BLOCKS, ratio: float = 0.1, **kwargs) -> Iterator[list[str]]:
    """``with litefocus.enabled(pipe, ...) as names:`` LiteFocus inside the block; originals restored on any exit.

    Takes the arguments of :func:`apply` and yields the patched module names.
    """
    names = apply(model, blocks, ratio, **kwargs)
    try:
        yield names
    finally:
        remove(model)


def attach_grid_probes(unet: torch.nn.Module, names: list[str]) -> tuple[dict[str, GridProbe], list]:
    """One probe per enclosing Transformer2DModel of the named modules, hooked to read its input's (H, W).

    Returns the probe of each module that has such an owner, and the hook handles (remove them to detach).
    """
    probes: dict[str, GridProbe] = {}
    hooks = []
    by_owner: dict[str, GridProbe] = {}
    for name in names:
        owner = _enclosing_transformer(unet, name)
        if owner is None:
            continue
        if owner not in by_owner:
            by_owner[owner] = GridProbe()
            hook = unet.get_submodule(owner).register_forward_pre_hook(by_owner[owner], with_kwargs=True)
            hooks.append(hook)
        probes[name] = by_owner[owner]
    return probes, hooks


def _enclosing_transformer(unet: torch.nn.Module, name: str) -> str | None:
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        if isinstance(unet.get_submodule(prefix), Transformer2DModel):
            return prefix
    return None
