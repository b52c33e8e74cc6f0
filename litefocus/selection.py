"""Which attention modules of a UNet are self-attention, and which of them a ``blocks=`` selection names."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

import torch
from diffusers.models.attention_processor import Attention

BlockSelection = str | Iterable[str] | Callable[[str, torch.nn.Module], bool] | None
"""Block names (``"down_blocks.1"``), module-name globs (``"up_blocks.*.attn1"``), or a predicate ``(name, module)``."""


def unet_of(model) -> torch.nn.Module:
    """The denoiser of a pipeline (``pipe.unet``), or the model itself when it is one."""
    unet = getattr(model, "unet", model)
    if not isinstance(unet, torch.nn.Module):
        raise TypeError(f"expected a diffusers pipeline with a .unet or a UNet module; got {type(model).__name__}")
    if hasattr(unet, "_orig_mod"):  # torch.compile's wrapper: its processors are traced already
        raise TypeError("this UNet is compiled (torch.compile): apply LiteFocus, Token Merging or a recorder before "
                        "compiling, or pass unet._orig_mod and compile again")
    if not (hasattr(unet, "down_blocks") and hasattr(unet, "up_blocks")):
        raise TypeError(f"expected a diffusers pipeline or its UNet (down_blocks, up_blocks); got "
                        f"{type(unet).__name__}: pass pipe or pipe.unet, not another component")
    return unet


def block_of(module_name: str) -> str:
    """The block a module belongs to: ``down_blocks.1.attentions.0...attn1`` -> ``down_blocks.1``; ``mid_block``."""
    parts = module_name.split(".")
    if len(parts) > 1 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def level_of(module_name: str, unet: torch.nn.Module) -> int:
    """The UNet level (resolution, 0 = the input's) a module runs at: ``down_blocks.i`` -> i,
    ``up_blocks.j`` -> levels - 1 - j, ``mid_block`` -> the deepest. In AudioLDM2, level 1 (down_blocks.1,
    up_blocks.2) has F = 8 frequency bins, level 2 F = 4, level 3 F = 2."""
    deepest = len(unet.config.block_out_channels) - 1
    kind, _, rest = module_name.partition(".")
    if kind == "mid_block":
        return deepest
    index = int(rest.split(".")[0])
    if kind == "down_blocks":
        return index
    if kind == "up_blocks":
        return deepest - index
    raise ValueError(f"{module_name!r} is not inside down_blocks, mid_block or up_blocks")


def is_self_attention(module: torch.nn.Module, unet: torch.nn.Module) -> bool:
    """True for an ``Attention`` whose keys come from its own queries' tokens.

    That is every module built without a cross-attention dim (``attn1``, and ``attn2`` of AudioLDM2's double
    self-attention transformers), plus, in class-conditioned UNets (AudioLDM, MusicLDM: ``class_embed_type
    "simple_projection"``, called with ``encoder_hidden_states=None``), every ``attn2`` whose key input width equals
    its query width, since it then attends over its own tokens.
    """
    if not isinstance(module, Attention):
        return False
    if not module.is_cross_attention:
        return True
    class_conditioned = getattr(unet.config, "class_embed_type", None) == "simple_projection"
    return class_conditioned and module.to_k.in_features == module.query_dim


def self_attention_modules(model, blocks: BlockSelection = None) -> list[str]:
    """Names (relative to the UNet) of the self-attention modules that ``blocks`` selects, in model order.

    ``blocks=None`` selects all of them. A name or pattern that selects nothing is an error that lists the valid
    blocks. Cross-attention modules are never selected.
    """
    unet = unet_of(model)
    candidates = [(name, m) for name, m in unet.named_modules() if is_self_attention(m, unet)]
    if not candidates:
        raise ValueError(f"{type(unet).__name__} has no self-attention module: nothing to sparsify or record")
    if blocks is None:
        return [name for name, _ in candidates]
    if callable(blocks):
        chosen = [name for name, m in candidates if blocks(name, m)]
        if not chosen:
            raise ValueError(f"the predicate selected no self-attention module; {_valid_blocks(candidates)}")
        return chosen
    if not isinstance(blocks, (str, Iterable)):
        raise TypeError(f"blocks must be a block name, a glob, a list of them, a predicate or None; got {blocks!r} "
                        f"({type(blocks).__name__}); {_valid_blocks(candidates)}")
    patterns = [blocks] if isinstance(blocks, str) else list(blocks)
    if not patterns:
        raise ValueError(f"blocks is empty; {_valid_blocks(candidates)}")
    all_names = [name for name, _ in unet.named_modules()]
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"blocks must hold names or glob patterns (str); got {pattern!r}")
        if not pattern.strip():
            raise ValueError(f"a block name is empty (blocks={blocks!r}); {_valid_blocks(candidates)}")
        if not any(name_matches(name, pattern) for name, _ in candidates):
            known = any(name_matches(name, pattern) for name in all_names)
            reason = "has no self-attention" if known else "does not exist in this UNet"
            raise ValueError(f"{pattern!r} {reason}; {_valid_blocks(candidates)}")
    return [name for name, _ in candidates if any(name_matches(name, p) for p in patterns)]


def name_matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` is selected by one ``blocks=`` entry: itself, inside it, or matching it as a glob."""
    return name == pattern or name.startswith(pattern + ".") or fnmatch.fnmatchcase(name, pattern)


def _valid_blocks(candidates: list[tuple[str, torch.nn.Module]]) -> str:
    blocks = list(dict.fromkeys(block_of(name) for name, _ in candidates))
    return "blocks with self-attention: " + ", ".join(blocks)
