"""MiniLDM: a small text-to-audio latent diffusion model in AudioLDM2's architecture, trained here on real audio from
distribution packages (``minildm.corpus``; the first MiniLDM on synthetic scenes, ``minildm.data``), so that attention
patterns and quality can be studied offline on trained weights."""

from .codec import MelCodec
from .pipeline import (DEFAULT_PATH, MINILDM2_PATH, MINILDM3_PATH, TRAINING_SECONDS, MiniLDMPipeline, default_pipeline,
                       load_minildm)
from .text import CaptionEncoder

__all__ = ["DEFAULT_PATH", "MINILDM2_PATH", "MINILDM3_PATH", "TRAINING_SECONDS", "CaptionEncoder", "MelCodec",
           "MiniLDMPipeline", "default_pipeline", "load_minildm"]
