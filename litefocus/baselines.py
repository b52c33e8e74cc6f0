"""Token Merging (Bolya & Hoffman 2023), the paper's baseline, through the ``tomesd`` package on chosen blocks."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .keys import check_seed, tomesd_seed
from .options import PAPER_BLOCKS
from .probes import attach_step_probe
from .selection import BlockSelection, self_attention_modules, unet_of


def apply_token_merging(
    model, blocks: BlockSelection = PAPER_BLOCKS, ratio: float = 0.5, *, seed: int = 0, **tome_options
) -> list[str]:
    """Merge tokens before the self-attention of the transformer blocks in ``blocks``; returns their names.

    Args that matter:
        blocks: as for :func:`litefocus.apply`; a transformer block is patched when one of its self-attention
            modules is selected. The default is the paper's choice (the same blocks as LiteFocus).
        ratio: share of tokens merged (tomesd's default, 0.5, as in the paper).
    Args to tinker with:
        seed: keys tomesd's random choice of destination tokens: its one generator is reseeded at every UNet call
            from ``(seed, timestep)``, so a call's merges never depend on the calls before it (tomesd shares the
            generator between modules, so the module name cannot enter; the order of modules in a forward is fixed).
        tome_options: passed to ``tomesd.apply_patch`` (``sx``, ``sy``, ``use_rand``, ``merge_crossattn``, ...).

    tomesd decides where to merge by downsampling factor (``max_downsample``), which in AudioLDM2 means a whole
    UNet level; here it is allowed on every level and the blocks outside the selection are put back, so the
    selection is by name. tomesd reads the (time, freq) grid from the latent's shape: its 2-D strides ``sx``/``sy``
    act on time and frequency.
    """
    try:
        import tomesd
    except ImportError as error:  # pragma: no cover - tomesd is a dependency
        raise ImportError("Token Merging needs the tomesd package: pip install tomesd") from error
    check_seed(seed)
    if not (isinstance(ratio, numbers.Real) and not isinstance(ratio, bool) and 0 <= ratio < 1):
        raise ValueError(f"ratio must lie in [0, 1) (the share of tokens merged); got {ratio!r}")
    unet = unet_of(model)
    selected = {name.rsplit(".", 1)[0] for name in self_attention_modules(unet, blocks)}
    tomesd.apply_patch(unet, ratio=ratio, max_downsample=2 ** len(unet.config.block_out_channels), **tome_options)
    patched = []
    for name, module in unet.named_modules():
        if type(module).__name__ != "ToMeBlock":
            continue
        if name in selected:
            patched.append(name)
        else:
            module.__class__ = module._parent
    def reseed(probe, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        generator = torch.Generator(device=sample.device).manual_seed(tomesd_seed(seed, probe.timestep))
        unet._tome_info["args"]["generator"] = generator

    # tomesd's remove_patch removes every hook in this list
    unet._tome_info["hooks"].append(attach_step_probe(unet, reseed)[1])
    return patched


def remove_token_merging(model) -> None:
    """Undo :func:`apply_token_merging` (tomesd's ``remove_patch``)."""
    import tomesd

    tomesd.remove_patch(unet_of(model))


@contextmanager
def token_merging(model, blocks: BlockSelection = PAPER_BLOCKS, ratio: float = 0.5, **kwargs) -> Iterator[list[str]]:
    """``with token_merging(pipe): ...``: Token Merging inside the block. Blocks nest: on any exit, the enclosing
    block's Token Merging (its blocks, ratio and options) is back, or none outside every block. tomesd keeps one
    patch a UNet, so the inner block replaces the outer one while it lasts."""
    unet = unet_of(model)
    names = apply_token_merging(model, blocks, ratio, **kwargs)
    stack = unet.__dict__.setdefault(_OPEN_BLOCKS, [])
    entry = (blocks, ratio, kwargs)
    stack.append(entry)
    try:
        yield names
    finally:
        stack[:] = [e for e in stack if e is not entry]
        remove_token_merging(model)
        if stack:
            outer_blocks, outer_ratio, outer_kwargs = stack[-1]
            apply_token_merging(model, outer_blocks, outer_ratio, **outer_kwargs)


_OPEN_BLOCKS = "_litefocus_token_merging_blocks"  # on the UNet: the open token_merging blocks, innermost last
