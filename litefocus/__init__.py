"""LiteFocus sparse attention for audio latent diffusion models in diffusers.

    import litefocus
    with litefocus.enabled(pipe, blocks=["down_blocks.1", "up_blocks.2"], ratio=0.1, seed=0):
        audio = pipe("a dog barking", audio_length_in_s=40.96).audios
"""

from .kernel import (
    UNIONS, cross_key_count, draw_cross_indices, focus_mask, litefocus_attention, reference_attention,
)
from .options import PAPER_BLOCKS, LiteFocusOptions
from .patch import apply, enabled, is_applied, remove
from .processor import LiteFocusAttnProcessor
from .selection import block_of, self_attention_modules

__all__ = [
    "PAPER_BLOCKS",
    "UNIONS",
    "LiteFocusAttnProcessor",
    "LiteFocusOptions",
    "apply",
    "block_of",
    "cross_key_count",
    "draw_cross_indices",
    "enabled",
    "focus_mask",
    "is_applied",
    "litefocus_attention",
    "reference_attention",
    "remove",
    "self_attention_modules",
]
