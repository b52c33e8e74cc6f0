"""A diffusers attention processor that runs LiteFocus on a self-attention module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention

from .kernel import check_backend_for, focus_attention
from .keys import drawn_keys, module_key
from .options import LiteFocusOptions
from .probes import GridProbe, StepProbe, check_grid_tokens


@dataclass
class AttentionInputs:
    """What a self-attention module computes before its attention core, as the stock processor does it.

    query, key, value: ``(batch, heads, N, head_dim)``; grid: ``(H, W)`` when the input was 4-D, else None;
    input_shape: the 4-D input's shape (None for 3-D input); residual: the unnormalized input.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    grid: tuple[int, int] | None
    input_shape: torch.Size | None
    residual: torch.Tensor


def attention_inputs(attn: Attention, hidden_states: torch.Tensor, temb: torch.Tensor | None = None) -> AttentionInputs:
    """Spatial norm, the 4-D path, group norm, projections and q/k norms of ``AttnProcessor2_0``, for self-attention."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    grid, input_shape = None, None
    if hidden_states.ndim == 4:
        input_shape = hidden_states.shape
        batch, channel, height, width = input_shape
        grid = (height, width)
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    batch = hidden_states.shape[0]
    query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    head_dim = key.shape[-1] // attn.heads
    # (b, n, h*d) -> (b, h, n, d)
    query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return AttentionInputs(query, key, value, grid, input_shape, residual)


class LiteFocusAttnProcessor:
    """Drop-in replacement for ``AttnProcessor2_0`` on a self-attention module, with LiteFocus as its core.

    Supports what the stock processor supports on self-attention: spatial norm, group norm, the 4-D input path,
    q/k norms, residual connection and output rescaling. Self-attention masks are not supported (these UNets pass
    none).

    Args:
        options: the focus-set settings, the union and the seed.
        name: the module's name in the UNet; with the seed and the UNet call's timestep it keys the random draw, so
            the keys of a call are a function of ``(seed, name, timestep)`` alone.
        grid: the probe of the enclosing ``Transformer2DModel``, giving ``(T, F)`` for 3-D inputs.
        step: the probe of the UNet's timestep; a :class:`litefocus.probes.KeyDraws` also hands over this call's keys,
            drawn for every patched module at once.
    """

    def __init__(self, options: LiteFocusOptions, name: str, grid: GridProbe | None, step: StepProbe) -> None:
        self.options, self.name, self.grid, self.step = options, name, grid, step
        self.draw_key = module_key(options.seed, name)  # the hash seeding this module's draws, not a key

    def cross_indices(self, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """This call's random keys: sorted int64 ``(floor(r N),)``, or None for same-frequency only."""
        if not self.options.cross_frequency:
            return None
        if self.step.timestep is None:
            raise RuntimeError(
                f"LiteFocus on {self.name} needs the UNet call's timestep to key its random draw, but no UNet forward "
                "reported one; apply LiteFocus with litefocus.apply(pipe_or_unet, ...) and call the UNet as usual"
            )
        drawn = self.step.keys_for(self.name, num_tokens, device)  # this UNet call's batched draw, if any
        if drawn is not None:
            return drawn
        return drawn_keys(self.draw_key, self.step.timestep, num_tokens, self.options.ratio, device)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise RuntimeError(
                "LiteFocus was applied to a module that received encoder_hidden_states (cross-attention); "
                "select self-attention blocks only (see litefocus.self_attention_modules)"
            )
        if attention_mask is not None:
            raise NotImplementedError("LiteFocus does not support self-attention masks")
        inputs = attention_inputs(attn, hidden_states, temb)
        grid = inputs.grid or self._grid()
        batch, heads, num_tokens, head_dim = inputs.query.shape
        check_grid_tokens(grid, num_tokens, self.name)
        query, key, value = inputs.query, inputs.key, inputs.value
        cross = self.cross_indices(num_tokens, query.device)
        if not self.options.same_frequency and cross.numel() == 0:
            raise ValueError(f"cross-frequency-only LiteFocus on {self.name}: ratio {self.options.ratio} draws no key "
                             f"from {num_tokens} tokens; raise ratio")
        check_backend_for(self.options.backend, query, self.options.union)  # the name was checked with the options
        hidden_states = focus_attention(query, key, value, grid[1], cross, same_frequency=self.options.same_frequency,
                                        scale=attn.scale, union=self.options.union, backend=self.options.backend)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if inputs.input_shape is not None:  # the 4-D path: back to (b, c, h, w)
            hidden_states = hidden_states.transpose(-1, -2).reshape(inputs.input_shape)
        if attn.residual_connection:
            hidden_states = hidden_states + inputs.residual
        return hidden_states / attn.rescale_output_factor

    def _grid(self) -> tuple[int, int]:
        if self.grid is None or self.grid.shape is None:
            raise RuntimeError(
                "LiteFocus needs the (time, freq) grid of this module's tokens, but no Transformer2DModel forward "
                "reported one; apply LiteFocus with litefocus.apply(pipe_or_unet, ...) and call the UNet as usual"
            )
        return self.grid.shape
