"""Forward pre-hooks that tell a self-attention processor what its inputs do not carry: the ``(time_bins, freq_bins)``
grid of its tokens (from the enclosing ``Transformer2DModel``'s 4-D input) and the timestep of the UNet call. Used
alike by LiteFocus's processor, the attention recorder and the attention timer."""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel


class GridProbe:
    """The ``(time, freq)`` grid of one ``Transformer2DModel``'s tokens, updated by a forward pre-hook on it.

    Read from the tensor on every call (never from the audio length: odd lengths give odd grids after downsampling).
    """

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        self.shape = tuple(hidden_states.shape[-2:]) if hidden_states.ndim == 4 else None


class StepProbe:
    """The timestep of the current UNet call, set by a forward pre-hook on the UNet (a tensor or a number)."""

    def __init__(self) -> None:
        self.timestep = None

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.timestep = args[1] if len(args) > 1 else kwargs.get("timestep")


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


def attach_step_probe(unet: torch.nn.Module) -> tuple[StepProbe, torch.utils.hooks.RemovableHandle]:
    """A :class:`StepProbe` hooked to ``unet``'s forward, and its hook handle (remove it to detach)."""
    step = StepProbe()
    return step, unet.register_forward_pre_hook(step, with_kwargs=True)
