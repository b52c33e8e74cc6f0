"""Seeded synthetic sound scenes with captions built from their attributes.

Each clip mixes one or two events drawn from eight kinds (steady tones, harmonic buzzes, pitch sweeps, noise bands,
click rhythms, pulsing tones, wavering tones, speech-like formant glides), each with a pitch register and a time
span (whole clip, start, middle, end, or a short burst). Captions put the attributes into varied words. Everything
is a pure function of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLING_RATE = 16000

KINDS = ("tone", "harmonic", "sweep", "noise", "clicks", "pulsing", "wavering", "voice")
REGISTERS = ("low", "mid", "high")
SPANS = ("whole", "start", "middle", "end", "burst")

_REGISTER_HZ = {"low": (90.0, 300.0), "mid": (300.0, 1200.0), "high": (1200.0, 5000.0)}
_NOUNS = {
    "tone": ["tone", "steady tone", "pure tone", "beep", "sine tone"],
    "harmonic": ["buzz", "humming sound", "harmonic drone", "buzzing tone"],
    "sweep": ["sweep", "glide", "siren-like sweep", "chirp"],
    "noise": ["hiss", "noise", "band of noise", "rushing noise"],
    "clicks": ["clicks", "ticking", "tapping", "clicking rhythm"],
    "pulsing": ["pulsing tone", "throbbing tone", "beating tone"],
    "wavering": ["wavering tone", "warbling tone", "tone with vibrato"],
    "voice": ["voice-like sound", "speech-like murmur", "vowel-like voice", "talking-like sound"],
}
_REGISTER_WORDS = {
    "low": ["low", "deep", "low-pitched", "bass"],
    "mid": ["mid", "medium", "mid-pitched", "moderate"],
    "high": ["high", "bright", "high-pitched", "shrill"],
}
_SPAN_WORDS = {
    "whole": ["", "throughout", "all the way through", "continuously"],
    "start": ["at the start", "at the beginning", "early on"],
    "middle": ["in the middle", "halfway through"],
    "end": ["at the end", "near the end", "towards the end"],
    "burst": ["in a short burst", "briefly", "for a moment"],
}
_SPEED_WORDS = {"slow": ["slow", "unhurried"], "fast": ["fast", "rapid", "quick"]}


@dataclass(frozen=True)
class Event:
    """One sound event; ``direction`` is 'up'/'down' for sweeps, ``speed`` 'slow'/'fast' for rhythmic kinds."""

    kind: str
    register: str
    span: str
    direction: str = ""
    speed: str = ""


@dataclass(frozen=True)
class Clip:
    """A synthesized clip: ``audio`` float32 in [-1, 1] at 16 kHz, its caption, and its events (the labels)."""

    audio: np.ndarray
    caption: str
    events: tuple[Event, ...]


def draw_events(rng: np.random.Generator) -> tuple[Event, ...]:
    count = 1 if rng.random() < 0.6 else 2
    events = []
    for _ in range(count):
        kind = str(rng.choice(KINDS))
        register = "low" if kind == "voice" and rng.random() < 0.7 else str(rng.choice(REGISTERS))
        span = str(rng.choice(SPANS, p=[0.4, 0.15, 0.15, 0.15, 0.15]))
        direction = str(rng.choice(["up", "down"])) if kind == "sweep" else ""
        speed = str(rng.choice(["slow", "fast"])) if kind in ("clicks", "pulsing", "wavering") else ""
        events.append(Event(kind, register, span, direction, speed))
    return tuple(events)


def synthesize(events: tuple[Event, ...], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Mix the events into ``seconds`` of audio (float32, peak-normalized to 0.9)."""
    n = int(round(seconds * SAMPLING_RATE))
    t = np.arange(n) / SAMPLING_RATE
    mix = np.zeros(n)
    for event in events:
        mix += _render(event, t, rng) * _envelope(event.span, t, seconds, rng) * rng.uniform(0.5, 1.0)
    mix += 0.003 * rng.standard_normal(n)  # a faint noise floor, as in recordings
    return (0.9 * mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)


def caption_for(events: tuple[Event, ...], rng: np.random.Generator) -> str:
    phrases = [_phrase(event, rng) for event in events]
    if len(phrases) == 1:
        return phrases[0]
    joiner = str(rng.choice([" and ", " with ", " together with ", ", plus "]))
    return phrases[0] + joiner + phrases[1]


def make_clip(seed: int, seconds: float = 2.56) -> Clip:
    """The clip of one seed: the same seed always gives the same audio and caption."""
    rng = np.random.default_rng(seed)
    events = draw_events(rng)
    return Clip(synthesize(events, seconds, rng), caption_for(events, rng), events)


def _phrase(event: Event, rng: np.random.Generator) -> str:
    pick = lambda words: str(rng.choice(words))  # noqa: E731
    words = ["a"]
    if event.speed:
        words.append(pick(_SPEED_WORDS[event.speed]))
    words.append(pick(_REGISTER_WORDS[event.register]))
    words.append(pick(_NOUNS[event.kind]))
    if event.direction:
        words.append(pick(["rising", "going up", "ascending"]) if event.direction == "up"
                     else pick(["falling", "going down", "descending"]))
    span = pick(_SPAN_WORDS[event.span])
    if span:
        words.append(span)
    return " ".join(words)


def _pitch(register: str, rng: np.random.Generator) -> float:
    low, high = _REGISTER_HZ[register]
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _render(event: Event, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = _pitch(event.register, rng)
    kind = event.kind
    rate = rng.uniform(2, 4) if event.speed == "slow" else rng.uniform(6, 12)
    if kind == "tone":
        return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    if kind == "harmonic":
        return sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, int(rng.integers(3, 9))) if k * f < 7500)
    if kind == "sweep":
        ratio = rng.uniform(2.0, 4.0)
        f0, f1 = (f / np.sqrt(ratio), f * np.sqrt(ratio))
        if event.direction == "down":
            f0, f1 = f1, f0
        freq = f0 * (f1 / f0) ** (t / t[-1])
        return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLING_RATE)
    if kind == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(t.size))
        bins = np.fft.rfftfreq(t.size, 1 / SAMPLING_RATE)
        width = rng.uniform(0.3, 0.8)
        spectrum *= np.exp(-0.5 * (np.log(np.maximum(bins, 1.0) / f) / width) ** 2)
        noise = np.fft.irfft(spectrum, t.size)
        return noise / (np.abs(noise).max() + 1e-9)
    if kind == "clicks":
        out = np.zeros(t.size)
        period = int(SAMPLING_RATE / rate)
        click = np.sin(2 * np.pi * f * np.arange(200) / SAMPLING_RATE) * np.exp(-np.arange(200) / 40)
        for start in range(int(rng.integers(0, period)), t.size - 200, period):
            out[start:start + 200] += click
        return out
    if kind == "pulsing":
        return np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    if kind == "wavering":
        depth = rng.uniform(0.02, 0.06)
        freq = f * (1 + depth * np.sin(2 * np.pi * rate * t))
        return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLING_RATE)
    if kind == "voice":
        return _voice(f, t, rng)
    raise ValueError(f"unknown kind {kind!r}")


def _voice(f0: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A glottal-like harmonic source through two formant resonances that glide between random vowels."""
    f0 = min(f0, 400.0)
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLING_RATE
    vowels = np.array([[730, 1090], [270, 2290], [300, 870], [530, 1840], [660, 1720]], dtype=float)
    knots = vowels[rng.integers(0, len(vowels), size=5)]
    knot_times = np.linspace(0, t[-1], len(knots))
    formants = np.stack([np.interp(t, knot_times, knots[:, i]) for i in range(2)])
    out = np.zeros(t.size)
    for k in range(1, int(4000 // f0)):
        harmonic = k * pitch
        gain = sum(1 / (1 + ((harmonic - fm) / 120.0) ** 2) for fm in formants)
        out += gain * np.sin(k * phase) / k**0.5
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
    return out * syllables


def _envelope(span: str, t: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    if span == "whole":
        start, stop = 0.0, seconds
    elif span == "start":
        start, stop = 0.0, seconds * rng.uniform(0.3, 0.5)
    elif span == "middle":
        start, stop = seconds * rng.uniform(0.25, 0.35), seconds * rng.uniform(0.65, 0.75)
    elif span == "end":
        start, stop = seconds * rng.uniform(0.5, 0.7), seconds
    else:  # burst
        start = seconds * rng.uniform(0.1, 0.7)
        stop = start + seconds * rng.uniform(0.1, 0.2)
    ramp = 0.01
    return np.clip(np.minimum((t - start) / ramp, (stop - t) / ramp), 0.0, 1.0)


def scene_vocabulary() -> list[str]:
    """Every word a caption of the synthetic scenes can contain, sorted."""
    import re

    texts = ["a and with together plus rising going up ascending falling down descending"]
    for table in (_NOUNS, _REGISTER_WORDS, _SPAN_WORDS, _SPEED_WORDS):
        texts += [word for words in table.values() for word in words]
    return sorted({word for text in texts for word in re.findall(r"[a-z]+", text.lower())})
