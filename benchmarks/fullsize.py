"""What the full-size benchmarks share: the UNet's inputs for a length of audio, and a memory probe (Linux)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def unet_inputs(seconds: float, batch: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32,
                device: str = "cpu") -> tuple[tuple, dict]:
    """``(args, kwargs)`` of one AudioLDM2 UNet call for ``seconds`` of audio: latents ``(batch, 8, T, 16)`` with
    T = seconds * 100 mel frames / 4 and timestep 500 as positional arguments (tomesd's hook reads the latent
    from them), text conditioning of 8 GPT-2 tokens (768) and 32 T5 tokens (1024). Batch 2 is one step under
    classifier-free guidance."""
    frames = int(round(seconds * 100))
    g = torch.Generator().manual_seed(seed)
    tensors = dict(sample=torch.randn(batch, 8, frames // 4, 16, generator=g),
                   encoder_hidden_states=torch.randn(batch, 8, 768, generator=g),
                   encoder_hidden_states_1=torch.randn(batch, 32, 1024, generator=g))
    sample, context, context_1 = (x.to(device, dtype) for x in tensors.values())
    return (sample, 500), dict(encoder_hidden_states=context, encoder_hidden_states_1=context_1)


def tiny_unet_call(seconds: float = 10.24):
    """The tiny random-weight AudioLDM2 pipeline's UNet and ``(args, kwargs)`` of one of its steps at ``seconds``."""
    from litefocus.models import tiny_audioldm2_pipeline

    pipe = tiny_audioldm2_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    captured = {}
    hook = pipe.unet.register_forward_pre_hook(lambda m, a, k: captured.update(args=a, kwargs=k), with_kwargs=True)
    try:
        pipe("a dog barking", num_inference_steps=1, audio_length_in_s=seconds, output_type="latent")
    finally:
        hook.remove()
    return pipe.unet, (captured["args"], captured["kwargs"])


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(field)


def machine() -> dict:
    """Columns every benchmark row carries."""
    return dict(threads=torch.get_num_threads(), torch=torch.__version__, machine=platform.machine(),
                processor=platform.processor() or platform.machine())
