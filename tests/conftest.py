import os

# Nothing may download in tests: make any hub access fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def tiny_pipe():
    from litefocus.models import tiny_audioldm2_pipeline

    pipe = tiny_audioldm2_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_latents(pipe, length_s=5.12, steps=2, seed=0, prompt="a dog barking"):
    """Latents of a short fixed-seed generation, (1, 8, T, 16)."""
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=steps, audio_length_in_s=length_s, generator=generator,
                output_type="latent").audios
