"""MiniLDM: a small text-to-audio latent diffusion model in AudioLDM2's architecture, trained here on synthetic
sound scenes, so that attention patterns can be studied offline on trained weights."""

from .codec import MelCodec
from .pipeline import DEFAULT_PATH, MiniLDMPipeline, load_minildm
from .text import CaptionEncoder

__all__ = ["DEFAULT_PATH", "CaptionEncoder", "MelCodec", "MiniLDMPipeline", "load_minildm"]
