"""Forward pre-hooks that tell a self-attention processor what its inputs do not carry: the ``(time_bins, freq_bins)``
grid of its tokens (from the enclosing ``Transformer2DModel``'s 4-D input) and the timestep of the UNet call, and,
for LiteFocus, the random keys of every patched module at that timestep, drawn once per UNet call. Used alike by
LiteFocus's processor, the attention recorder and the attention timer."""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from .kernel import cross_key_count
from .keys import data_hash, drawn_rows, mix32, module_key, timestep_code
from .selection import level_of


def check_grid_tokens(grid: tuple[int, int], tokens: int, name: str) -> None:
    """An error naming module ``name`` unless its ``(time, freq)`` grid has as many cells as it got ``tokens``."""
    cells = grid[0] * grid[1]
    if cells != tokens:
        hint = ("; fewer tokens than cells: Token Merging (litefocus.baselines.token_merging) merged them before this "
                "attention, and LiteFocus and the recorder need every token of the grid: use them outside "
                "token_merging, or on blocks it leaves alone") if tokens < cells else ""
        raise ValueError(f"{name}: the (time, freq) grid {grid} has {cells} cells but the module got {tokens} "
                         f"tokens; the grid must come from this module's own Transformer2DModel{hint}")


class GridProbe:
    """The ``(time, freq)`` grid of one ``Transformer2DModel``'s tokens, updated by a forward pre-hook on it.

    Read from the tensor on every call (never from the audio length: odd lengths give odd grids after downsampling).
    """

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        self.shape = tuple(hidden_states.shape[-2:]) if hidden_states.ndim == 4 else None


def call_timestep(args: tuple, kwargs: dict):
    """The timestep of a UNet forward call (its second positional argument or ``timestep=``), or None: what every
    UNet pre-hook here reads (LiteFocus's draws, the recorder, Token Merging's reseeding)."""
    return args[1] if len(args) > 1 else kwargs.get("timestep")


class StepProbe:
    """The timestep of the current UNet call (a tensor or a number), set by a forward pre-hook on the UNet, which
    then calls ``on_call(probe, args, kwargs)`` where given: the one timestep hook of LiteFocus's draws, the recorder
    and Token Merging's reseeding."""

    def __init__(self, on_call=None) -> None:
        self.timestep = None
        self.on_call = on_call

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self.timestep = call_timestep(args, kwargs)
        if self.on_call is not None:
            self.on_call(self, args, kwargs)

    def keys_for(self, name: str, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """No keys drawn in advance: the processor draws its own (:class:`KeyDraws` draws them for all at once)."""
        return None


class KeyDraws(StepProbe):
    """The timestep of each UNet call and the random keys of every patched module at it, drawn in one batch per UNet
    level: one hash, one top-k and one sort for all the level's modules instead of one each. Each module's keys are
    still a function of ``(seed, module name, timestep)`` alone, bit for bit :func:`litefocus.keys.drawn_keys`.

    The pre-hook only notes the timestep; the first processor of each level in a call draws for its whole level
    (:meth:`keys_for`) from its own token count, inside the same traced graph under ``torch.compile``. Nothing of the
    audio length is kept in Python between calls, so a compiled UNet with LiteFocus follows new lengths as dense
    does (dynamic shapes after the second length) instead of recompiling for each.
    """

    def __init__(self, unet: torch.nn.Module, names: list[str], seed: int, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.level_of = {name: level_of(name, unet) for name in names}
        levels = sorted(set(self.level_of.values()))
        self.names_of = {level: [n for n in names if self.level_of[n] == level] for level in levels}
        self.module_keys = {level: [module_key(seed, n) for n in self.names_of[level]] for level in levels}
        self._keys_on: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.draws: dict[int, tuple[int, dict[str, torch.Tensor]]] = {}

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        super().__call__(module, args, kwargs)
        self.draws = {}  # drawn by the first processor of each level in this call

    def keys_for(self, name: str, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """This call's keys of module ``name`` (sorted int64) on a grid of ``num_tokens``; None without a timestep."""
        if self.timestep is None:
            return None
        level = self.level_of[name]
        drawn = self.draws.get(level)
        if drawn is None or drawn[0] != num_tokens:
            drawn = self.draws[level] = (num_tokens, self._draw(level, num_tokens, device))
        return drawn[1][name]

    def _module_keys_on(self, level: int, device: torch.device) -> torch.Tensor:
        """The level's module keys ``(M,)`` on ``device``: copied there once in eager mode; a constant of the graph
        under ``torch.compile``."""
        if torch.compiler.is_compiling():
            return torch.tensor(self.module_keys[level], dtype=torch.int64, device=device)
        if (level, device) not in self._keys_on:
            self._keys_on[level, device] = torch.tensor(self.module_keys[level], dtype=torch.int64, device=device)
        return self._keys_on[level, device]

    def _draw(self, level: int, num_tokens: int, device: torch.device) -> dict[str, torch.Tensor]:
        code = timestep_code(self.timestep)
        # a timestep tensor on the host is copied without waiting for it
        code = code.to(device, non_blocking=True) if isinstance(code, torch.Tensor) else code
        call_keys = mix32(self._module_keys_on(level, device) ^ data_hash(code))  # fold_in(module key, timestep)
        rows = drawn_rows(call_keys, num_tokens, cross_key_count(num_tokens, self.ratio))
        return {name: rows[i] for i, name in enumerate(self.names_of[level])}


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


def attach_step_probe(unet: torch.nn.Module, on_call=None) -> tuple[StepProbe, torch.utils.hooks.RemovableHandle]:
    """A :class:`StepProbe` (calling ``on_call``) hooked to ``unet``'s forward, and its hook handle (remove it to
    detach)."""
    step = StepProbe(on_call)
    return step, unet.register_forward_pre_hook(step, with_kwargs=True)


def attach_key_draws(unet: torch.nn.Module, names: list[str], seed: int, ratio: float):
    """A :class:`KeyDraws` hooked to ``unet``'s forward, and its hook handle (remove it to detach)."""
    draws = KeyDraws(unet, names, seed, ratio)
    return draws, unet.register_forward_pre_hook(draws, with_kwargs=True)
