"""``MiniLDMPipeline``: text -> audio with the trained MiniLDM, called like ``AudioLDM2Pipeline``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import AudioLDM2UNet2DConditionModel, DDIMScheduler, DiffusionPipeline
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from litefocus.shipped import require, shipped_path

from .codec import MelCodec
from .text import CaptionEncoder

MINILDM2_PATH = shipped_path("minildm")
"""MiniLDM 2's weights (``save_pretrained`` layout, safetensors; see :mod:`litefocus.shipped`): the embedded default
until 2026-12-07; the block-ablation study and the paper's tables in ``data/`` were measured on it."""
MINILDM3_PATH = shipped_path("minildm3")
"""MiniLDM 3's weights: MiniLDM 2's recipe with mimetic self-attention initialisation (``data/minildm3/README.md``)."""
DEFAULT_PATH = MINILDM3_PATH
"""The embedded default's weights (MiniLDM 3)."""
TRAINING_SECONDS = 2.56
"""The clip length MiniLDM was trained on (s); AudioLDM2's is 10.24 s."""


class MiniLDMPipeline(DiffusionPipeline):
    """Components: ``unet`` (``AudioLDM2UNet2DConditionModel``), ``scheduler`` (DDIM), ``caption_encoder``,
    ``codec`` (log-mel space-to-depth and Griffin-Lim)."""

    model_cpu_offload_seq = "caption_encoder->unet->codec"

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """diffusers' loading, in float32 unless ``torch_dtype`` says otherwise (the weights ship in float16; CPUs
        compute in float32)."""
        kwargs.setdefault("torch_dtype", torch.float32)
        return super().from_pretrained(*args, **kwargs)

    def __init__(self, unet: AudioLDM2UNet2DConditionModel, scheduler: DDIMScheduler, caption_encoder: CaptionEncoder,
                 codec: MelCodec):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, caption_encoder=caption_encoder, codec=codec)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        audio_length_in_s: float | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        negative_prompt: str | list[str] | None = None,
        num_waveforms_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        griffin_lim_iterations: int = 32,
    ):
        """Generate audio. ``output_type``: ``"np"``/``"pt"`` waveforms at 16 kHz, ``"mel"`` log-mel
        ``(B, frames, 64)``, ``"latent"`` latents ``(B, 16, T, 16)``. Default length 10.24 s (AudioLDM2's)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_waveforms_per_prompt)]
        batch = len(prompts)
        if negative_prompt is None:
            negatives = [""] * batch
        else:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
            negatives = [n for n in negatives for _ in range(num_waveforms_per_prompt)]
            if len(negatives) != batch:
                raise ValueError(f"negative_prompt has {len(negatives)} entries for {batch} prompts")
        seconds = 10.24 if audio_length_in_s is None else float(audio_length_in_s)
        if seconds <= 0:
            raise ValueError(f"audio_length_in_s must be positive; got {seconds}")
        patch = self.codec.config.patch
        time_bins = int(np.ceil(seconds * self.codec.frames_per_second / patch))
        device = self._execution_device
        guided = guidance_scale > 1.0
        context = self.caption_encoder(negatives + prompts if guided else prompts)

        shape = (batch, self.unet.config.in_channels, time_bins, 64 // patch)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape} for {seconds} s; got {tuple(latents.shape)}")
        latents = latents * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise = self.unet(model_input, t, encoder_hidden_states=context, return_dict=False)[0]
            if guided:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents, generator=generator).prev_sample
            if callback_on_step_end is not None:
                local = {"latents": latents}
                result = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                latents = (result or {}).get("latents", latents)

        if output_type == "latent":
            return AudioPipelineOutput(audios=latents) if return_dict else (latents,)
        mel = self.codec.decode(latents)
        if output_type == "mel":
            return AudioPipelineOutput(audios=mel) if return_dict else (mel,)
        audio = self.codec.to_audio(mel, n_iter=griffin_lim_iterations)[:, : int(round(seconds * 16000))]
        if output_type == "pt":
            audio = torch.from_numpy(audio)
        elif output_type != "np":
            raise ValueError(f"output_type must be 'np', 'pt', 'mel' or 'latent'; got {output_type!r}")
        return AudioPipelineOutput(audios=audio) if return_dict else (audio,)


def load_minildm(path: str | Path = DEFAULT_PATH, **kwargs) -> MiniLDMPipeline:
    """The shipped MiniLDM, offline (``MiniLDMPipeline.from_pretrained(path)``)."""
    path = Path(path)
    require(path / "model_index.json", "MiniLDM weights (model_index.json)",
            "`make minildm3` (MiniLDM 3, about 80 minutes on 2 cores) or `make minildm` (MiniLDM 2)")
    pipe = MiniLDMPipeline.from_pretrained(path, **kwargs)
    pipe.set_progress_bar_config(disable=None)
    return pipe


def default_pipeline(seed: int = 0, path: str | Path | None = None):
    """The embedded default model and its name, ``(pipe, name)``: what ``litefocus --model default`` and the notebooks
    run.

    The trained MiniLDM in ``path`` (default :data:`DEFAULT_PATH`) when its evaluation.json says
    ``"samples_from_noise": true`` (``python -m studies.minildm.evaluation`` decides it from caption following of
    generated clips: measuring attention during generation only means something if generation works); otherwise the
    tiny random-weight pipeline (name ``"tiny"``), whose attention has no pattern. No weights at ``path`` at all (a
    wheel installs none) is a FileNotFoundError that says where they are expected.
    """
    from litefocus.files import read_json
    from litefocus.models import tiny_audioldm2_pipeline

    path = Path(DEFAULT_PATH if path is None else path)
    require(path / "model_index.json", "embedded default model (MiniLDM weights, model_index.json)",
            "`make minildm3`, or run with --model tiny (random weights)")
    evaluation = path / "evaluation.json"
    if evaluation.is_file() and read_json(evaluation).get("samples_from_noise", False):
        return load_minildm(path), "minildm"
    return tiny_audioldm2_pipeline(seed), "tiny"
