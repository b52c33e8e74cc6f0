"""What lengths a pipeline can generate here: its sampling rate, its shortest clip, and the memory a length needs.

Facts of a pipeline (AudioLDM, AudioLDM2, MusicLDM with a VAE and a vocoder; MiniLDM with a mel codec), read from its
configs, so that a command can refuse a length before the pipeline runs: too short for the UNet's downsampling, or
(a typo: ``--seconds 100000``) larger than the memory this machine has free.
"""

from __future__ import annotations

import math
import os

import numpy as np

BYTES = 4  # float32 activations: the estimate's unit (fp16 pipelines need less)


def sampling_rate(pipe) -> int:
    """Output sampling rate in Hz: the vocoder's (AudioLDM/AudioLDM2/MusicLDM) or the codec's (MiniLDM)."""
    for component in ("vocoder", "codec"):
        rate = getattr(getattr(getattr(pipe, component, None), "config", None), "sampling_rate", None)
        if rate is not None:
            return int(rate)
    raise ValueError(f"cannot tell the sampling rate of {type(pipe).__name__}: it has no vocoder or codec config")


def minimum_seconds(pipe) -> float:
    """The shortest audio the pipeline can generate: one latent frame per UNet downsampling level (MiniLDM), or the
    bound the AudioLDM pipelines check (vocoder hop x VAE scale)."""
    codec = getattr(pipe, "codec", None)
    if codec is not None:
        levels = len(pipe.unet.down_blocks)
        return 2 ** (levels - 1) * codec.config.patch / codec.frames_per_second
    vocoder = pipe.vocoder.config
    return float(np.prod(vocoder.upsample_rates)) / vocoder.sampling_rate * pipe.vae_scale_factor


def generation_bytes(pipe, seconds: float, prompts: int = 1) -> int:
    """Estimated peak memory (bytes) of generating ``prompts`` clips of ``seconds`` with classifier-free guidance,
    beyond the weights: the UNet's activations at batch ``2 * prompts`` (every level's skip tensors kept for the up
    path, plus six working tensors of the largest level), the larger of the decoder's stages (MiniLDM: Griffin-Lim's
    six complex spectrogram copies, one clip at a time; AudioLDM: the VAE decoder's top level, three copies, and the
    vocoder's largest stage, three copies) and the waveforms, all float32. Attention scores are not counted (PyTorch's
    SDPA on CPU and GPU keeps them O(tokens)). Within about 1.5x of what a process grows by: measured here (peak RSS
    of ``litefocus generate --steps 1``, 20 s against 80 s) the tiny AudioLDM2 grows 1.75 MB and MiniLDM 2 2.3 MB a
    second of audio, estimated 1.3 and 3.6."""
    frames = seconds * _mel_frames_per_second(pipe)
    unet = pipe.unet.config
    latent_bins, latent_frames = _latent_grid(pipe, frames)
    tokens = [latent_bins * latent_frames / 4**level for level in range(len(unet.block_out_channels))]
    per_level = [c * n for c, n in zip(unet.block_out_channels, tokens)]
    activations = 2 * prompts * BYTES * ((unet.layers_per_block + 1) * sum(per_level) + 6 * max(per_level))
    codec = getattr(pipe, "codec", None)
    if codec is not None:
        decoder = 6 * (codec.config.n_fft // 2 + 1) * frames * 2 * BYTES
    else:
        vocoder = pipe.vocoder.config
        top = pipe.vae.config.block_out_channels[0] * frames * vocoder.model_in_dim
        stage = max(vocoder.upsample_initial_channel / 2 ** (i + 1) * frames * np.prod(vocoder.upsample_rates[: i + 1])
                    for i in range(len(vocoder.upsample_rates)))
        decoder = 3 * prompts * BYTES * max(top, stage)
    waveforms = 2 * prompts * BYTES * seconds * sampling_rate(pipe)
    return int(activations + decoder + waveforms)


def available_bytes(device=None) -> int:
    """Memory free for a new allocation: the GPU's free memory for a CUDA ``device``, else the host's available
    memory (``MemAvailable``, or free pages where /proc is absent)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_max_gb(max_gb: float | None, argument: str = "max_gb") -> None:
    """ValueError naming ``argument`` unless ``max_gb`` is None or a positive finite number of GB."""
    if max_gb is not None and not (isinstance(max_gb, (int, float)) and math.isfinite(max_gb) and max_gb > 0):
        raise ValueError(f"{argument} must be a positive number of GB; got {max_gb!r}")


def check_seconds(pipe, seconds: list[float], prompts: int = 1, max_gb: float | None = None,
                  argument: str = "--seconds", override: str = "--max-memory-gb") -> None:
    """ValueError unless every length in ``seconds`` is finite and at least :func:`minimum_seconds`; MemoryError
    when the longest one's :func:`generation_bytes` exceeds ``max_gb`` GB (default: :func:`available_bytes` on the
    UNet's device), naming ``argument`` and the ``override`` that raises the limit."""
    low = minimum_seconds(pipe)
    bad = [s for s in seconds if not (math.isfinite(s) and s >= low)]
    if bad:
        raise ValueError(f"{argument} {' '.join(f'{s:g}' for s in bad)}: {type(pipe).__name__} takes lengths of at "
                         f"least {low:g} s (finite)")
    check_max_gb(max_gb, override)
    limit = available_bytes(pipe.unet.device) if max_gb is None else max_gb * 1e9
    longest = max(seconds)
    needed = generation_bytes(pipe, longest, prompts)
    if needed > limit:
        where = f"{override} {max_gb:g}" if max_gb is not None else "this machine's free memory"
        raise MemoryError(f"{argument} {longest:g}: generating it needs about {needed / 1e9:.1f} GB (an estimate from "
                          f"the model's shapes), more than the {limit / 1e9:.1f} GB of {where}; give a shorter "
                          f"length, or pass {override} with the GB you mean to allow")


def _mel_frames_per_second(pipe) -> float:
    codec = getattr(pipe, "codec", None)
    if codec is not None:
        return codec.frames_per_second
    vocoder = pipe.vocoder.config
    return vocoder.sampling_rate / float(np.prod(vocoder.upsample_rates))


def _latent_grid(pipe, frames: float) -> tuple[int, float]:
    """``(frequency bins, frames)`` of the UNet's input for ``frames`` mel frames."""
    codec = getattr(pipe, "codec", None)
    if codec is not None:
        return codec.config.n_mels // codec.config.patch, frames / codec.config.patch
    scale = pipe.vae_scale_factor
    return pipe.vocoder.config.model_in_dim // scale, frames / scale
