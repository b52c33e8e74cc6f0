"""Processor layers: attachments of attention processors (and hooks) to a UNet that detach in any order.

LiteFocus (``apply``/``enabled``) and the attention recorder each attach one :class:`ProcessorLayer`: it saves the
processor it found on each module, installs its own, and owns its forward hooks. Layers stack in the order they
were attached; detaching one restores, for each of its modules, what was there when it attached:

- if no later layer touched the module, the saved processor goes back on it, unless something else (diffusers'
  ``set_attn_processor``, ``enable_attention_slicing``) has replaced ours meanwhile, which is then left alone;
- if a later layer did, that layer's saved processor becomes ours' saved one, so when it detaches in turn it puts
  back what was there before both (a wrapping layer, such as the recorder, calls its saved processor through
  :meth:`ProcessorLayer.saved`, so it wraps the right one from then on).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_STACK_ATTR = "_litefocus_layers"


class ProcessorLayer:
    """One attachment of processors to named attention modules of ``unet``.

    ``kind`` names the owner (``"litefocus"``, ``"recorder"``), ``hooks`` holds hook handles removed on detach.
    """

    def __init__(self, unet: torch.nn.Module, kind: str):
        self.unet, self.kind = unet, kind
        self._saved: dict[str, object] = {}
        self.installed: dict[str, object] = {}
        self.hooks: list = []
        self.attached = False

    def attach(self, make: Callable[[str, object], object], names: list[str]) -> None:
        """Install ``make(name, current_processor)`` on each named module and push this layer on the stack."""
        if self.attached:
            raise RuntimeError(f"this {self.kind} layer is already attached")
        stack(self.unet).append(self)
        self.attached = True
        try:
            for name in names:
                module = self.unet.get_submodule(name)
                self._saved[name] = module.processor
                self.installed[name] = make(name, module.processor)
                module.set_processor(self.installed[name])
        except BaseException:
            self.detach()
            raise

    def saved(self, name: str) -> object:
        """The processor this layer found on ``name`` (kept up to date when an earlier layer detaches)."""
        return self._saved[name]

    def detach(self) -> list[str]:
        """Take this layer off, in whatever order layers are detached; returns its module names. Idempotent."""
        if not self.attached:
            return []
        layers = stack(self.unet)
        position = layers.index(self)
        for name, saved in self._saved.items():
            later = next((layer for layer in layers[position + 1:] if name in layer._saved), None)
            if later is not None:
                later._saved[name] = saved
                continue
            module = self.unet.get_submodule(name)
            if module.processor is self.installed.get(name):
                module.set_processor(saved)
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        layers.remove(self)
        if not layers:
            delattr(self.unet, _STACK_ATTR)
        self.attached = False
        return list(self._saved)

    def active_modules(self) -> list[str]:
        """Modules where this layer's processor still runs: on the module, or called by the layers above it."""
        return [name for name in self.installed if self.installed[name] in effective_chain(self.unet, name)]


def stack(unet: torch.nn.Module) -> list[ProcessorLayer]:
    """The layers attached to ``unet``, first attached first."""
    if not hasattr(unet, _STACK_ATTR):
        setattr(unet, _STACK_ATTR, [])
    return getattr(unet, _STACK_ATTR)


def layers_of(unet: torch.nn.Module, kind: str | None = None) -> list[ProcessorLayer]:
    """The attached layers (of one ``kind``), without creating the stack."""
    return [layer for layer in getattr(unet, _STACK_ATTR, []) if kind is None or layer.kind == kind]


def effective_chain(unet: torch.nn.Module, name: str) -> list[object]:
    """The processors that run on module ``name``: the one on it, then, while that one is a wrapping layer's, the
    processor it wraps."""
    chain = [unet.get_submodule(name).processor]
    for layer in reversed(layers_of(unet)):
        if layer.installed.get(name) is chain[-1] and getattr(chain[-1], "wraps", False):
            chain.append(layer.saved(name))
    return chain
