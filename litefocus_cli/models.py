"""Which model a name means: the embedded default, the tiny random-weight pipeline, MiniLDM, a hub id or a folder."""

from __future__ import annotations

DEFAULT, TINY, MINILDM, MINILDM2 = "default", "tiny", "minildm", "minildm2"
MODEL_HELP = (f"'{DEFAULT}' (the embedded default: the shipped MiniLDM, or '{TINY}' if its evaluation says it cannot "
              f"sample), '{TINY}' (offline, random weights), '{MINILDM}' (the default's weights), '{MINILDM2}' (the "
              "earlier MiniLDM 2, which the shipped block-ablation and paper tables were measured on), a hub id such "
              "as cvssp/audioldm2, or a local folder written by save_pretrained (data/minildm3 is one)")


def load_model(name: str, seed: int = 0):
    """``(pipe, name)`` for a ``--model`` value (see :data:`MODEL_HELP`)."""
    from litefocus.models import load_pipeline, tiny_audioldm2_pipeline

    if name == DEFAULT:
        from minildm import default_pipeline

        return default_pipeline(seed)
    if name == TINY:
        return tiny_audioldm2_pipeline(seed), TINY
    if name == MINILDM:
        from minildm import load_minildm

        return load_minildm(), MINILDM
    if name == MINILDM2:
        from minildm import MINILDM2_PATH, load_minildm

        return load_minildm(MINILDM2_PATH), MINILDM2
    return load_pipeline(name), name
