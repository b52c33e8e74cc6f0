import os

# Nothing may download in tests: make any hub access fail at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# under pytest-xdist (make test: two workers on two cores) one thread each, else two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


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


def write_corpus(root, sources, manifest: bool = True):
    """A corpus folder as ``minildm.corpus`` writes one: each source rendered as seeded noise (``sources/ID.wav``),
    its clips in ``clips.csv``, and (``manifest``) a ``manifest.json``. Returns the clip rows."""
    import csv

    import numpy as np
    import soundfile

    from minildm import corpus

    (root / "sources").mkdir(parents=True)
    for i, source in enumerate(sources):
        noise = np.random.default_rng(i).standard_normal(int(source.seconds * 16000)).astype(np.float32) * 0.1
        soundfile.write(root / "sources" / f"{source.id}.wav", noise, 16000)
    rows = corpus.cut_clips(sources, np.random.default_rng(0))
    with open(root / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if manifest:
        (root / "manifest.json").write_text("{}")
    return rows
