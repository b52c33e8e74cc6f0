"""Which model a name means: the embedded default, the tiny random-weight pipeline, MiniLDM, a hub id or a folder."""

from __future__ import annotations

from pathlib import Path

from litefocus.files import read_json

DEFAULT, TINY, MINILDM = "default", "tiny", "minildm"
MODEL_HELP = (f"'{DEFAULT}' (the embedded default: the shipped MiniLDM, or '{TINY}' if its evaluation says it cannot "
              f"sample), '{TINY}' (offline, random weights), '{MINILDM}', a hub id such as cvssp/audioldm2, or a "
              "local folder written by save_pretrained (data/minildm is one)")


def default_pipeline(seed: int = 0):
    """The embedded default model and its name, ``(pipe, name)``.

    The trained MiniLDM in ``data/minildm`` when its evaluation.json says ``"samples_from_noise": true``
    (``python -m analysis.minildm_evaluation`` decides it from caption following of generated clips: measuring attention
    during generation only means something if generation works); otherwise the tiny random-weight pipeline,
    whose attention has no pattern.
    """
    import minildm
    from litefocus.models import tiny_audioldm2_pipeline

    evaluation = Path(minildm.DEFAULT_PATH) / "evaluation.json"
    if evaluation.is_file() and read_json(evaluation).get("samples_from_noise", False):
        return minildm.load_minildm(minildm.DEFAULT_PATH), MINILDM
    return tiny_audioldm2_pipeline(seed), TINY


def load_model(name: str, seed: int = 0):
    """``(pipe, name)`` for a ``--model`` value (see :data:`MODEL_HELP`)."""
    from litefocus.models import load_pipeline, tiny_audioldm2_pipeline

    if name == DEFAULT:
        return default_pipeline(seed)
    if name == TINY:
        return tiny_audioldm2_pipeline(seed), TINY
    if name == MINILDM:
        from minildm import load_minildm

        return load_minildm(), MINILDM
    return load_pipeline(name), name
