"""Caption following of MiniLDM, measured without outside weights: attribute classifiers (sound kind, pitch
register) on time-pooled log-mel features that ignore gain and background level, trained on synthesized clips and
corrupted copies of them; and a fingerprint of a fixed-seed generation that guards the shipped weights."""

from __future__ import annotations

import numpy as np
import torch

from .data import KINDS, REGISTERS, Event, caption_for, synthesize


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
    and, for half of the clips, a 3x3 blur. The classifier trains on such copies beside the clean clips."""
    g = torch.Generator().manual_seed(seed)
    batch = mel.shape[0]
    gain = (torch.rand(batch, 1, 1, generator=g) * 4 - 2)
    noise = torch.randn(mel.shape, generator=g) * torch.rand(batch, 1, 1, generator=g)
    blurred = torch.nn.functional.avg_pool2d(mel[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    blur = (torch.rand(batch, 1, 1, generator=g) < 0.5).float()
    return blur * blurred + (1 - blur) * mel + gain + noise


def train_classifier(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 500,
                     seed: int = 0) -> torch.nn.Module:
    """Linear classifier on standardized features ``x`` ``(n, d)`` for labels ``y``; the same seed, the same model."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = torch.nn.Linear(x.shape[1], classes)
    model = torch.nn.Sequential(_Standardize(mean, std), linear)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


class _Standardize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std


def labelled_single_events(count: int, seed: int, seconds: float) -> tuple[list[Event], list[str], np.ndarray]:
    """Whole-clip single events with every kind and register represented; returns events, captions, audio."""
    rng = np.random.default_rng(seed)
    events, captions, audio = [], [], []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        register = REGISTERS[(i // len(KINDS)) % len(REGISTERS)]
        event = Event(kind, register, "whole", direction=str(rng.choice(["up", "down"])) if kind == "sweep" else "",
                      speed=str(rng.choice(["slow", "fast"])) if kind in ("clicks", "pulsing", "wavering") else "")
        events.append(event)
        captions.append(caption_for((event,), rng))
        audio.append(synthesize((event,), seconds, rng))
    return events, captions, np.stack(audio)


LABELS = {"kind": (lambda e: KINDS.index(e.kind), len(KINDS)),
          "register": (lambda e: REGISTERS.index(e.register), len(REGISTERS))}
"""The caption attributes scored: label of an event, number of classes."""


def caption_classifiers(codec) -> tuple[dict[str, torch.nn.Module], dict, tuple[list[Event], list[str], torch.Tensor]]:
    """Fit one classifier per caption attribute on synthesized 2.56 s clips and corrupted copies of them.

    Returns the classifiers (log-mel features -> logits), their accuracies and chance rates on held-out clips, and
    the held-out set: 240 events, their captions and their log-mels ``(240, frames, 64)``.
    """
    train_events, _, train_audio = labelled_single_events(1200, seed=10_000, seconds=2.56)
    test_events, test_captions, test_audio = labelled_single_events(240, seed=20_000, seconds=2.56)
    with torch.no_grad():
        train_mel, test_mel = codec.mel(torch.from_numpy(train_audio)), codec.mel(torch.from_numpy(test_audio))
        x_train = features(torch.cat([train_mel, corrupt(train_mel, seed=1), corrupt(train_mel, seed=2)]))
        x_test, x_test_corrupted = features(test_mel), features(corrupt(test_mel, seed=3))
    classifiers = {name: train_classifier(x_train, torch.tensor([label(e) for e in train_events]).repeat(3), classes)
                   for name, (label, classes) in LABELS.items()}
    clean, corrupted = accuracies(classifiers, x_test, test_events), accuracies(classifiers, x_test_corrupted,
                                                                               test_events)
    scores = {}
    for name, (_, classes) in LABELS.items():
        scores[f"{name}_accuracy_on_real_clips"] = clean[name]
        scores[f"{name}_accuracy_on_corrupted_real_clips"] = corrupted[name]
        scores[f"{name}_chance"] = 1.0 / classes
    return classifiers, scores, (test_events, test_captions, test_mel)


def accuracies(classifiers: dict[str, torch.nn.Module], x: torch.Tensor, events: list[Event]) -> dict[str, float]:
    """Share of clips (features ``x``, one row per event) whose attribute each classifier gets right."""
    with torch.no_grad():
        return {name: float((model(x).argmax(1) == torch.tensor([LABELS[name][0](e) for e in events])).float().mean())
                for name, model in classifiers.items()}


def fingerprint(pipe) -> list[float]:
    """Summary of a fixed-seed generation, for the test that guards the shipped weights."""
    latents = pipe("a low humming sound", audio_length_in_s=1.28, num_inference_steps=4, output_type="latent",
                   generator=torch.Generator().manual_seed(0)).audios
    return [round(float(v), 4) for v in latents.mean(dim=(0, 2, 3))]
