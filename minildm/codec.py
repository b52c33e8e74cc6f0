"""Audio <-> log-mel <-> latent: a fixed, invertible stand-in for AudioLDM2's VAE, with AudioLDM2's geometry.

64-bin log-mel at 16 kHz with 10 ms hops; a 4 x 4 space-to-depth turns ``(T_mel, 64)`` into latents
``(16, T_mel / 4, 16)``: time / 4 and 64 / 4 = 16 frequency bins, as in AudioLDM2 (with 16 channels instead of 8).
Channels are standardized with statistics measured on the training data. Waveforms come back by Griffin-Lim.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config


class MelCodec(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, sampling_rate: int = 16000, n_fft: int = 1024, hop_length: int = 160, n_mels: int = 64,
                 patch: int = 4, log_floor: float = 1e-5):
        super().__init__()
        import librosa

        basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("mel_basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("latent_mean", torch.zeros(patch * patch))
        self.register_buffer("latent_std", torch.ones(patch * patch))

    @property
    def frames_per_second(self) -> float:
        return self.config.sampling_rate / self.config.hop_length

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` waveform -> ``(B, frames, n_mels)`` natural-log mel magnitude, frames cut to a multiple
        of ``patch``."""
        spec = torch.stft(audio, self.config.n_fft, self.config.hop_length, window=self.window, return_complex=True)
        mel = torch.einsum("mf,bft->btm", self.mel_basis, spec.abs())
        frames = mel.shape[1] // self.config.patch * self.config.patch
        return torch.log(mel[:, :frames].clamp_min(self.config.log_floor))

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, T_mel, 64)`` -> standardized latents ``(B, 16, T_mel / 4, 16)``."""
        latents = F.pixel_unshuffle(mel[:, None], self.config.patch)
        return (latents - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 16, T, 16)`` -> log-mel ``(B, 4 T, 64)``."""
        latents = latents * self.latent_std[:, None, None] + self.latent_mean[:, None, None]
        return F.pixel_shuffle(latents, self.config.patch)[:, 0]

    def to_audio(self, mel: torch.Tensor, n_iter: int = 32, seed: int = 0) -> np.ndarray:
        """Log-mel ``(B, frames, 64)`` -> waveforms ``(B, frames * hop)`` by Griffin-Lim (librosa), its random initial
        phase drawn from ``seed``: the same mel gives the same waveform in every process."""
        import librosa

        # clamp: an untrained or diverging model can emit log-mels whose exp overflows
        log_mel = mel.detach().float().cpu().clamp(np.log(self.config.log_floor), 8.0).numpy()
        magnitude = np.exp(log_mel).transpose(0, 2, 1)
        length = magnitude.shape[-1] * self.config.hop_length
        waves = []
        for m in magnitude:  # librosa's mel_to_audio, with the random state it does not pass on to griffinlim
            stft = librosa.feature.inverse.mel_to_stft(m, sr=self.config.sampling_rate, n_fft=self.config.n_fft,
                                                        power=1.0)
            waves.append(librosa.griffinlim(stft, n_iter=n_iter, hop_length=self.config.hop_length,
                                            n_fft=self.config.n_fft, random_state=seed))
        return np.stack([np.pad(w[:length], (0, max(0, length - w.size))) for w in waves]).astype(np.float32)
