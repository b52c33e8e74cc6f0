"""Caption following of MiniLDM, measured without outside weights: linear classifiers of the corpus' labels
(category: music / speech / environment; label: ensemble, language or scene) on time-pooled log-mel features that
ignore gain and background level, trained on real clips and corrupted copies of them. They ship beside the weights
(``caption_classifiers/``) with held-out captions (``heldout_captions.csv``), so that caption following can be
scored where the corpus is absent. Also a fingerprint of a fixed-seed generation that guards the shipped weights."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config

ATTRIBUTES = ("category", "label")
"""What the classifiers predict: the corpus' category and its finer label (columns of ``clips.csv``)."""


def features(mel: torch.Tensor) -> torch.Tensor:
    """Features of log-mels ``(B, frames, 64)`` that do not depend on length, gain or background level
    -> ``(B, 192)``: per mel bin, the mean, std and mean absolute change over time of the energy above the clip's
    floor (its median log-mel plus 1)."""
    floor = mel.flatten(1).median(1).values[:, None, None]
    above = (mel - floor - 1.0).clamp_min(0)
    change = (above[:, 1:] - above[:, :-1]).abs().mean(1)
    return torch.cat([above.mean(1), above.std(1), change], dim=1)


def corrupt(mel: torch.Tensor, seed: int) -> torch.Tensor:
    """Log-mels with nuisances that are not caption attributes: a random gain (+-2), Gaussian noise (std up to 1)
    and, for half of the clips, a 3x3 blur. The classifiers train on such copies beside the clean clips."""
    g = torch.Generator().manual_seed(seed)
    batch = mel.shape[0]
    gain = (torch.rand(batch, 1, 1, generator=g) * 4 - 2)
    noise = torch.randn(mel.shape, generator=g) * torch.rand(batch, 1, 1, generator=g)
    blurred = torch.nn.functional.avg_pool2d(mel[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    blur = (torch.rand(batch, 1, 1, generator=g) < 0.5).float()
    return blur * blurred + (1 - blur) * mel + gain + noise


class CaptionClassifiers(ModelMixin, ConfigMixin):
    """One linear classifier per attribute on standardized ``features``; ``classes`` maps attribute -> class names.

    ``predict(mel (B, frames, 64)) -> {attribute: [class name] * B}``; saved and loaded like any diffusers model.
    """

    @register_to_config
    def __init__(self, classes: dict[str, list[str]] | None = None, dim: int = 192):
        super().__init__()
        classes = classes or {}
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = torch.nn.ModuleDict({a: torch.nn.Linear(dim, len(c)) for a, c in classes.items()})

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute of features ``x`` ``(B, dim)``."""
        z = (x - self.mean) / self.std
        return {a: layer(z) for a, layer in self.linear.items()}

    @torch.no_grad()
    def predict(self, mel: torch.Tensor) -> dict[str, list[str]]:
        return {a: [self.config.classes[a][i] for i in logit.argmax(1).tolist()]
                for a, logit in self.logits(features(mel.float())).items()}


def fit_caption_classifiers(mel: torch.Tensor, rows: list[dict], steps: int = 500,
                            seed: int = 0) -> CaptionClassifiers:
    """Fit on log-mels ``(n, frames, 64)`` of real clips with their ``rows`` (``category``, ``label``) and two
    corrupted copies of each; full-batch Adam, the same seed gives the same model."""
    with torch.no_grad():
        x = features(torch.cat([mel, corrupt(mel, seed=seed + 1), corrupt(mel, seed=seed + 2)]))
    classes = {a: sorted({r[a] for r in rows}) for a in ATTRIBUTES}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CaptionClassifiers(classes=classes, dim=x.shape[1])
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0) + 1e-6)
    targets = {a: torch.tensor([classes[a].index(r[a]) for r in rows]).repeat(3) for a in ATTRIBUTES}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(steps):
        logits = model.logits(x)
        loss = sum(torch.nn.functional.cross_entropy(logits[a], targets[a]) for a in ATTRIBUTES)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def accuracy(predicted: dict[str, list[str]], rows: list[dict], seed: int = 0,
             resamples: int = 2000) -> dict[str, dict[str, float]]:
    """Per attribute, the share of clips whose class is predicted right, with a 95 % bootstrap interval over clips
    and the chance rate of guessing the most frequent true class: ``{attribute: {accuracy, low, high, majority}}``."""
    rng = np.random.default_rng(seed)
    out = {}
    for attribute, guesses in predicted.items():
        truth = [r[attribute] for r in rows]
        if len(truth) != len(guesses):
            raise ValueError(f"{len(guesses)} predictions for {len(truth)} clips")
        right = np.array([g == t for g, t in zip(guesses, truth)], dtype=float)
        boot = right[rng.integers(0, len(right), (resamples, len(right)))].mean(1)
        majority = max(truth.count(c) for c in set(truth)) / len(truth)
        out[attribute] = dict(accuracy=round(float(right.mean()), 4), low=round(float(np.quantile(boot, 0.025)), 4),
                              high=round(float(np.quantile(boot, 0.975)), 4), majority=round(majority, 4))
    return out


def fingerprint(pipe) -> list[float]:
    """Summary of a fixed-seed generation, for the test that guards the shipped weights."""
    latents = pipe("a church organ playing a hymn slowly", audio_length_in_s=1.28, num_inference_steps=4,
                   output_type="latent", generator=torch.Generator().manual_seed(0)).audios
    return [round(float(v), 4) for v in latents.mean(dim=(0, 2, 3))]
