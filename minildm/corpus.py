"""MiniLDM 2's corpus: about 3 hours of real, captioned audio built from Debian and PyPI package names alone.

``python -m minildm.corpus --out runs/corpus`` (``make corpus`` installs what it needs first). Three parts:

- **music** (about half): scores of the music21 corpus (chorales, motets, quartets, fiddle tunes) rendered in
  process at 16 kHz with the FluidR3 General MIDI soundfont by tinysoundfont, each part on its own channel, for a
  bounded number of samples (no render can run away), by ensembles, tempos and with or without a drum groove;
- **speech** (about a quarter): Asterisk's recorded phone prompts in five languages (G.722, decoded by ffmpeg),
  and flite's English voices, packed into sessions over a low noise floor;
- **environment** (about a quarter): 0 A.D.'s ambience recordings (rain, wind, rivers, waves, birds, farm,
  harbour, market) with its effects (animals, tools, footsteps, swords, thunder) laid over them.

Every source (one score, one prompt, one recording) belongs to one split, drawn from a hash of its name, so that
no piece, prompt or recording is in both. Sources are rendered to ``sources/*.wav`` (16 kHz mono) and cut into
clips: 2.56 s training clips from the train split, and 2.56 / 10.24 / 20.48 s references from the held-out one.
``manifest.json`` holds the package versions and settings; ``sources.csv`` and ``clips.csv`` every source file,
offset, seed and caption. Everything is a function of the seed and the package versions.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from litefocus.files import write_json

from .data import SAMPLING_RATE

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
APT_INSTALLED = ("fluid-soundfont-gm", "ffmpeg", "flite")
ASTERISK_LANGUAGES = {"en": ("english", "woman"), "es": ("spanish", "woman"), "fr": ("french", "woman"),
                      "it": ("italian", "man"), "ru": ("russian", "woman")}
APT_DOWNLOADED = tuple(f"asterisk-core-sounds-{lang}{kind}" for lang in ASTERISK_LANGUAGES for kind in ("-g722", "")
                       ) + ("0ad-data",)
HELDOUT_SHARE = 0.15
CLIP_SECONDS = {"train": (2.56,), "heldout": (2.56, 10.24, 20.48)}


@dataclass
class Source:
    """One rendered recording: its id, split, category (music / speech / environment), label (ensemble, language or
    scene: what the caption-following classifiers predict), caption ingredients and provenance."""

    id: str
    split: str
    category: str
    label: str
    seconds: float = 0.0
    seed: int = 0
    package: str = ""
    origin: str = ""
    words: dict = field(default_factory=dict)


def split_of(name: str) -> str:
    """``"heldout"`` for about 15 % of names, else ``"train"``: a pure function of the name (sha256)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") / 2**64
    return "heldout" if h < HELDOUT_SHARE else "train"


# ---------------------------------------------------------------- captions
ENSEMBLES = {  # label: (General MIDI programs of the parts, caption phrases)
    "string quartet": ((40, 40, 41, 42), ["a string quartet", "strings", "a quartet of violins, viola and cello"]),
    "organ": ((19,), ["a church organ", "an organ", "a pipe organ"]),
    "piano": ((0,), ["a piano", "a grand piano", "a solo piano"]),
    "brass": ((56, 60, 57, 58), ["a brass ensemble", "brass instruments", "trumpets and trombones"]),
    "choir": ((52,), ["a choir", "a vocal ensemble", "a chorus of voices"]),
    "woodwinds": ((73, 68, 71, 70), ["woodwinds", "a woodwind quartet", "flute, oboe, clarinet and bassoon"]),
    "guitar": ((24,), ["an acoustic guitar", "a classical guitar", "a nylon string guitar"]),
    "fiddle": ((40,), ["a fiddle", "a solo violin", "a violin"]),
    "flute": ((73,), ["a flute", "a solo flute", "a wooden flute"]),
    "accordion": ((21,), ["an accordion", "a squeezebox", "an accordion melody"]),
    "harpsichord": ((6,), ["a harpsichord", "a baroque harpsichord"]),
}
MELODY_ENSEMBLES = ("fiddle", "flute", "accordion", "piano", "guitar", "harpsichord")
PART_ENSEMBLES = ("string quartet", "organ", "piano", "brass", "choir", "woodwinds", "harpsichord")
TEMPI = {"slow": ((56, 72), ["slowly", "at a slow tempo", "calmly"]),
         "moderate": ((88, 108), ["at a moderate tempo", "at a walking pace", ""]),
         "fast": ((132, 160), ["fast", "quickly", "at a lively tempo"])}
PIECES = {"bach": ["a chorale", "a hymn", "a baroque chorale"], "palestrina": ["a renaissance motet", "sacred music",
          "a mass"], "quartet": ["a classical piece", "a classical movement"], "tune": ["a folk tune", "a dance tune",
          "a traditional tune"]}
SPEECH_WORDS = ["speaking", "talking in", "saying something in", "reading a message in"]
SCENES = {  # label: (file name patterns in 0 A.D.'s audio/ambient, caption phrases)
    "rain": (("weather/rain",), ["rain falling", "steady rain", "rain pouring down"]),
    "wind": (("weather/wind", "weather/snowstorm"), ["wind blowing", "a strong wind", "howling wind"]),
    "river": (("water/river", "water/waterfall"), ["a flowing river", "running water", "a stream rushing"]),
    "waves": (("water/wave",), ["waves on the shore", "sea waves crashing", "the sea"]),
    "birds": (("dayscape/day_",), ["birds singing in the countryside", "birdsong outdoors", "birds chirping"]),
    "farm": (("building/amb_farm",), ["a farmyard", "farm animals in the distance", "a busy farm"]),
    "harbour": (("building/amb_port",), ["a harbour", "a busy port", "boats and people at a harbour"]),
    "market": (("building/amb_trade",), ["a busy market", "a crowd at a market", "people chatting at a market"]),
}
EFFECTS = {  # 0 A.D. audio file name patterns: caption phrases
    ("fauna/animal/horse",): ["a horse neighing", "a horse"],
    ("fauna/animal/cattle",): ["a cow mooing", "cattle lowing"],
    ("fauna/animal/chicken",): ["chickens clucking", "a hen"],
    ("fauna/animal/pig",): ["a pig grunting", "pigs"],
    ("fauna/animal/elephant",): ["an elephant trumpeting", "an elephant"],
    ("fauna/animal/lion",): ["a lion roaring", "a lion"],
    ("fauna/death/goat",): ["a goat bleating", "a goat"],
    ("construction/con_saw",): ["someone sawing wood", "a saw"],
    ("construction/con_wood", "construction/con_stone"): ["hammering", "someone hammering"],
    ("lumbering/lumber_tree_",): ["an axe chopping wood", "someone chopping a tree"],
    ("singlesteps/fs_", "movement/hstep"): ["footsteps", "someone walking"],
    ("weapon/swordhit", "weapon/sword_attack"): ["swords clashing", "a sword fight"],
    ("weather/thunder",): ["thunder", "rumbling thunder"],
    ("mining/mine_stone", "mining/mine_metal"): ["a pickaxe striking stone", "someone mining"],
    ("farming/hoe",): ["someone digging", "a hoe in the soil"],
    ("mounted/movement/mstep",): ["a horse trotting", "hooves"],
}


def caption(source: Source, rng: np.random.Generator) -> str:
    """A caption in plain words, drawn per clip from the source's ingredients (several wordings each)."""
    w, pick = source.words, lambda options: options[rng.integers(len(options))]
    if source.category == "music":
        verb = "singing" if source.label == "choir" else "playing"
        text = f"{pick(ENSEMBLES[source.label][1])} {verb} {pick(PIECES[w['piece']])} {pick(TEMPI[w['tempo']][1])}"
        return text.strip() + (" with drums" if w.get("drums") else "")
    if source.category == "speech":
        who = "a synthesized male voice" if w.get("synthetic") else f"a {w['speaker']}"
        return f"{who} {pick(SPEECH_WORDS)} {source.label}"
    text = pick(SCENES[source.label][1])
    if w.get("effect"):
        text += f" {pick(['with', 'and', 'while you hear'])} {pick(w['effect'])}"
    return text


# ---------------------------------------------------------------- music
def _notes_of(path: str, seconds_per_quarter: float, limit_s: float) -> list[list[tuple[float, float, int]]]:
    """Per part, the notes ``(start s, end s, midi pitch)`` of the score at ``path`` that start before ``limit_s``."""
    from music21 import converter, stream

    score = converter.parse(path)
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    parts = score.parts if score.parts else [score]
    out = []
    for part in parts:
        notes = []
        for n in part.flatten().notes:
            start = float(n.offset) * seconds_per_quarter
            if start >= limit_s:
                break
            end = start + max(float(n.quarterLength), 0.25) * seconds_per_quarter
            notes += [(start, end, int(p.midi)) for p in n.pitches]
        if notes:
            out.append(notes)
    return out


def render_notes(parts: list[list[tuple[float, float, int]]], programs: tuple[int, ...], seconds: float,
                 drums_bpm: float | None, rng: np.random.Generator, soundfont: Path = SOUNDFONT) -> np.ndarray:
    """Render note lists, part ``i`` on channel ``i`` with program ``programs[i % len]``, for exactly ``seconds``
    (float32 at 16 kHz); a drum groove on channel 9 at ``drums_bpm`` when given. All notes end before the last
    half second, and all channels are silenced at the end: the output length is fixed by construction."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLING_RATE)
    sfid = synth.sfload(str(soundfont))
    events = []  # (time s, 0 off / 1 on, channel, key, velocity)
    stop = seconds - 0.5
    for i, notes in enumerate(parts[:9]):
        synth.program_select(i, sfid, 0, programs[i % len(programs)])
        velocity = int(rng.integers(70, 110))
        for start, end, key in notes:
            if start < stop:
                events += [(start, 1, i, key, velocity), (min(end, stop) - 0.01, 0, i, key, 0)]
    if drums_bpm:
        synth.program_select(9, sfid, 128, 0, True)
        beat = 60.0 / drums_bpm
        for k in range(int(stop / (beat / 2))):
            t = k * beat / 2
            keys = [42] + ([36] if k % 4 == 0 else []) + ([38] if k % 4 == 2 else [])
            events += [(t, 1, 9, key, 90) for key in keys] + [(t + 0.1, 0, 9, key, 0) for key in keys]
    events.sort()
    audio, now = [], 0
    for time, on, channel, key, velocity in events + [(seconds, -1, 0, 0, 0)]:
        sample = min(int(time * SAMPLING_RATE), int(seconds * SAMPLING_RATE))
        if sample > now:
            audio.append(np.frombuffer(synth.generate(sample - now), dtype=np.float32)[::2].copy())
            now = sample
        if on == 1:
            synth.noteon(channel, key, velocity)
        elif on == 0:
            synth.noteoff(channel, key)
    synth.notes_off()
    out = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    return np.pad(out, (0, int(seconds * SAMPLING_RATE) - len(out)))[: int(seconds * SAMPLING_RATE)]


def music_sources(count: int, rng: np.random.Generator) -> list[Source]:
    """``count`` scores of the music21 corpus with an ensemble, tempo and drums drawn for each."""
    from music21 import corpus

    groups = {"bach": [], "palestrina": [], "quartet": [], "tune": []}
    for path in map(str, corpus.getCorePaths()):
        name = path.split("/corpus/")[-1]
        group = ("bach" if name.startswith("bach/") else "palestrina" if name.startswith("palestrina/") else
                 "quartet" if name.split("/")[0] in ("haydn", "mozart", "beethoven") else
                 "tune" if name.split("/")[0] in ("ryansMammoth", "oneills1850", "essenFolksong") else None)
        if group:
            groups[group].append(name)
    shares = {"bach": 0.3, "palestrina": 0.25, "quartet": 0.1, "tune": 0.35}
    sources = []
    for group, names in groups.items():
        chosen = rng.choice(sorted(names), size=min(len(names), round(count * shares[group])), replace=False)
        for name in chosen:
            ensembles = MELODY_ENSEMBLES if group == "tune" else PART_ENSEMBLES
            tempo = str(rng.choice(list(TEMPI)))
            words = dict(piece=group, tempo=tempo, drums=bool(group == "tune" and rng.random() < 0.4))
            sources.append(Source(id=f"music-{_slug(name)}", split=split_of(name), category="music",
                                  label=str(rng.choice(ensembles)), seed=int(rng.integers(2**31)),
                                  package="music21", origin=name, words=words))
    return sources


def render_music(source: Source, seconds: float) -> np.ndarray:
    from music21 import common

    rng = np.random.default_rng(source.seed)
    low, high = TEMPI[source.words["tempo"]][0]
    bpm = float(rng.uniform(low, high))
    parts = _notes_of(str(common.getCorpusFilePath() / source.origin), 60.0 / bpm, seconds)
    if not parts:
        raise ValueError(f"no notes in {source.origin}")
    length = min(seconds, max(end for part in parts for _, end, _ in part) + 0.5)
    audio = render_notes(parts, ENSEMBLES[source.label][0], length, bpm if source.words["drums"] else None, rng)
    return _normalize(audio, rng)


# ---------------------------------------------------------------- speech
def speech_sources(root: Path, session_s: float, total_s: float, rng: np.random.Generator) -> list[Source]:
    """Sessions of Asterisk prompts (one language, one split each) and flite sessions reading English prompts."""
    sources = []
    per_language = total_s * 0.8 / len(ASTERISK_LANGUAGES)
    for lang, (language, speaker) in ASTERISK_LANGUAGES.items():
        folder = next((root / "usr/share/asterisk/sounds").glob(f"{lang}_*"))
        texts = _transcripts(root, lang)
        prompts = sorted(p for p in folder.rglob("*.g722")
                         if not texts.get(p.relative_to(folder).with_suffix("").as_posix(), "[").startswith("["))
        for split in ("train", "heldout"):
            names = [p.relative_to(root).as_posix() for p in prompts if split_of(p.name + lang) == split]
            names = list(rng.permutation(names))
            sessions = max(1, round(per_language * (HELDOUT_SHARE if split == "heldout" else 1 - HELDOUT_SHARE)
                                    / session_s))
            for k in range(sessions):
                sources.append(Source(id=f"speech-{lang}-{split}-{k}", split=split, category="speech", label=language,
                                      seed=int(rng.integers(2**31)), package=f"asterisk-core-sounds-{lang}-g722",
                                      origin=" ".join(names[k::sessions]), words=dict(speaker=speaker)))
    english = _transcripts(root, "en")
    lines = sorted(t for t in english.values() if not t.startswith("[") and len(t) > 20)
    for split in ("train", "heldout"):
        chosen = [t for t in lines if split_of(t) == split]
        sessions = max(1, round(total_s * 0.2 * (HELDOUT_SHARE if split == "heldout" else 1 - HELDOUT_SHARE)
                                / session_s))
        for k in range(sessions):
            sources.append(Source(id=f"speech-flite-{split}-{k}", split=split, category="speech", label="english",
                                  seed=int(rng.integers(2**31)), package="flite",
                                  origin=" | ".join(chosen[k::sessions]), words=dict(speaker="man", synthetic=True)))
    return sources


def render_speech(source: Source, seconds: float, root: Path) -> np.ndarray:
    """Utterances one after another with 0.2 to 0.8 s pauses, over a noise floor, cut to ``seconds``."""
    rng = np.random.default_rng(source.seed)
    pieces, total = [], 0.0
    if source.package == "flite":
        utterances = source.origin.split(" | ")
        voices = ["kal16", "awb", "rms"]
    else:
        utterances = source.origin.split(" ")
    for item in utterances:
        if total >= seconds:
            break
        if source.package == "flite":
            audio = _flite(item, voices[rng.integers(len(voices))])
        else:
            audio = _ffmpeg(["-f", "g722", "-i", str(root / item)])
        pieces += [audio, np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLING_RATE), np.float32)]
        total += (len(audio) + len(pieces[-1])) / SAMPLING_RATE
    speech = np.concatenate(pieces)[: int(seconds * SAMPLING_RATE)]
    return _normalize(speech + _noise_floor(len(speech), rng), rng)


def _transcripts(root: Path, lang: str) -> dict[str, str]:
    path = root / f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
    out = {}
    for line in gzip.open(path, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";"):
            out[name.strip()] = text.strip()
    return out


def _flite(text: str, voice: str) -> np.ndarray:
    import librosa
    import soundfile

    result = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout"], capture_output=True,
                            timeout=60, check=True)
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    return librosa.resample(audio, orig_sr=rate, target_sr=SAMPLING_RATE) if rate != SAMPLING_RATE else audio


def _ffmpeg(inputs: list[str]) -> np.ndarray:
    result = subprocess.run(["ffmpeg", "-v", "error", *inputs, "-ar", str(SAMPLING_RATE), "-ac", "1", "-f", "s16le",
                             "-"], capture_output=True, timeout=60, check=True)
    if len(result.stdout) > 2 * SAMPLING_RATE * 600:
        raise ValueError(f"ffmpeg gave more than 10 minutes of audio for {inputs}")
    return np.frombuffer(result.stdout, dtype=np.int16).astype(np.float32) / 32768


# ---------------------------------------------------------------- environment
def environment_sources(archive: Path, count: int, rng: np.random.Generator) -> list[Source]:
    """``count`` scenes: a stretch of one ambience recording, with effects of one kind over it in 70 % of them."""
    names = [n for n in zipfile.ZipFile(archive).namelist() if n.startswith("audio/") and n.endswith(".ogg")]
    beds = {label: [n for n in names if n.startswith("audio/ambient/") and any(p in n for p in patterns)]
            for label, (patterns, _) in SCENES.items()}
    effects = [(phrases, [n for n in names if not n.startswith("audio/ambient/weather/wind")
                          and any(p in n for p in patterns)]) for patterns, phrases in EFFECTS.items()]
    bed_split = {}
    for label, files in beds.items():  # by file; a scene with two or more recordings gets one in each split
        splits = {n: split_of(n) for n in sorted(files)}
        if len(files) > 1 and "heldout" not in splits.values():
            splits[sorted(files)[-1]] = "heldout"
        if len(files) > 1 and "train" not in splits.values():
            splits[sorted(files)[0]] = "train"
        bed_split.update(splits)
    sources = []
    for k in range(count):
        label = list(SCENES)[k % len(SCENES)]
        split = "heldout" if (k // len(SCENES)) % 6 == 5 else "train"  # every scene in both splits
        choices = [n for n in sorted(beds[label]) if bed_split[n] == split]
        if not choices:
            continue
        bed = str(rng.choice(choices))
        words, origin = {}, [bed]
        if rng.random() < 0.7:
            phrases, files = effects[rng.integers(len(effects))]
            files = [f for f in files if split_of(f) == split]
            if files:
                words["effect"] = phrases
                origin += [str(f) for f in rng.choice(files, size=int(rng.integers(1, 4)))]
        sources.append(Source(id=f"environment-{k}", split=split, category="environment", label=label,
                              seed=int(rng.integers(2**31)), package="0ad-data", origin=" ".join(origin), words=words))
    return sources


def render_environment(source: Source, seconds: float, archive: Path) -> np.ndarray:
    """The bed from a random offset (looped if shorter), effects at random times 6 to 14 dB below the bed's peak."""
    rng = np.random.default_rng(source.seed)
    n = int(seconds * SAMPLING_RATE)
    bed_name, *effects = source.origin.split(" ")
    with zipfile.ZipFile(archive) as z:
        bed = _decode(z.read(bed_name))
        start = int(rng.integers(max(1, len(bed) - n)))
        scene = np.resize(np.roll(bed, -start), n) / (np.abs(bed).max() + 1e-6)
        for name in effects:
            effect = _decode(z.read(name))[: n // 2]
            at = int(rng.integers(max(1, n - len(effect))))
            gain = 10 ** (-rng.uniform(-2, 6) / 20) / (np.abs(effect).max() + 1e-6)
            scene[at: at + len(effect)] += gain * effect
    return _normalize(scene + _noise_floor(n, rng), rng)


def _decode(data: bytes) -> np.ndarray:
    import librosa
    import soundfile

    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return librosa.resample(audio.mean(axis=1), orig_sr=rate, target_sr=SAMPLING_RATE)


# ---------------------------------------------------------------- common
def _noise_floor(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pinkish noise at about -50 dB: never digital silence."""
    white = rng.standard_normal(n).astype(np.float32)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.arange(n // 2 + 1) + 1.0), n)
    return (pink / (pink.std() + 1e-9) * 10 ** (-50 / 20)).astype(np.float32)


def _normalize(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Peak at -1 to -6 dBFS."""
    return (audio / (np.abs(audio).max() + 1e-9) * 10 ** (-rng.uniform(1, 6) / 20)).astype(np.float32)


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")[:80]


# ---------------------------------------------------------------- build
def fetch_packages(work: Path) -> dict[str, str]:
    """``apt-get download`` the packages not installed (into ``work/packages``), extract the parts used, and return
    every package's version. Refuses with the install command when an installed one is missing."""
    missing = [p for p in APT_INSTALLED if _installed_version(p) is None]
    if missing or not SOUNDFONT.is_file() or shutil.which("ffmpeg") is None or shutil.which("flite") is None:
        raise SystemExit(f"missing {' '.join(missing) or SOUNDFONT}: run `make corpus` (or apt-get install "
                         f"{' '.join(APT_INSTALLED)} and pip install music21 tinysoundfont --no-deps)")
    versions = {p: _installed_version(p) for p in APT_INSTALLED}
    packages, extracted = work / "packages", work / "extracted"
    packages.mkdir(parents=True, exist_ok=True)
    for name in APT_DOWNLOADED:
        if not list(packages.glob(f"{name}_*.deb")):
            subprocess.run(["apt-get", "download", name], cwd=packages, check=True)
        deb = sorted(packages.glob(f"{name}_*.deb"))[-1]
        versions[name] = deb.name.split("_")[1]
        stamp = extracted / f".{deb.name}.done"
        if not stamp.exists():
            extracted.mkdir(exist_ok=True)
            members = ["./usr/share/games/0ad/mods/public/public.zip"] if name == "0ad-data" else []
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(extracted), *members], stdin=tar.stdout, check=True)
            tar.wait()
            stamp.touch()
    import music21
    import tinysoundfont  # noqa: F401
    from importlib.metadata import version

    versions.update(music21=music21.__version__, tinysoundfont=version("tinysoundfont"))
    return versions


def _installed_version(package: str) -> str | None:
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return result.stdout or None if result.returncode == 0 else None


def _render(job: tuple[Source, float, Path, Path]) -> tuple[str, float, str]:
    """Render one source to ``out`` (atomically); returns (id, seconds, error or "")."""
    import soundfile

    source, seconds, extracted, out = job
    path = out / f"{source.id}.wav"
    if path.is_file():
        return source.id, soundfile.info(path).duration, ""
    try:
        if source.category == "music":
            audio = render_music(source, seconds)
        elif source.category == "speech":
            audio = render_speech(source, seconds, extracted)
        else:
            audio = render_environment(source, seconds, extracted / "usr/share/games/0ad/mods/public/public.zip")
    except Exception as error:  # a score music21 cannot read, a prompt ffmpeg cannot decode: skip it, say so
        return source.id, 0.0, f"{type(error).__name__}: {error}"[:300]
    if not (np.isfinite(audio).all() and len(audio) <= (seconds + 1) * SAMPLING_RATE):
        return source.id, 0.0, "render gave non-finite or over-long audio"
    tmp = path.with_name(f".{path.name}.tmp")
    soundfile.write(tmp, audio, SAMPLING_RATE, subtype="PCM_16", format="WAV")
    tmp.replace(path)
    return source.id, len(audio) / SAMPLING_RATE, ""


def cut_clips(sources: list[Source], rng: np.random.Generator, hop: float = 1.28) -> list[dict]:
    """Clip rows: train sources give 2.56 s clips every ``hop`` s; held-out ones give 2.56 s clips every 2.56 s and
    one 10.24 s and one 20.48 s reference from the start (when long enough). Each clip has its own caption."""
    rows = []
    for source in sources:
        for length in CLIP_SECONDS[source.split]:
            step = hop if source.split == "train" else (2.56 if length == 2.56 else np.inf)
            offset = 0.0
            while offset + length <= source.seconds + 1e-6:
                rows.append(dict(source=source.id, split=source.split, seconds=length, offset=round(offset, 2),
                                 category=source.category, label=source.label, caption=caption(source, rng)))
                offset += step
    return rows


def main(argv: list[str] | None = None) -> None:
    import csv
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/corpus"), help="corpus folder (resumes in it)")
    parser.add_argument("--hours", type=float, default=3.0, help="about this much audio in all")
    parser.add_argument("--source-seconds", type=float, default=30.0, help="length of each source recording")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not 0 < args.hours <= 50 or not 20.48 <= args.source_seconds <= 120 or args.workers < 1:
        parser.error("--hours must be in (0, 50], --source-seconds in [20.48, 120] (held-out references are 20.48 s)"
                     " and --workers at least 1")
    versions = fetch_packages(args.out)
    extracted, audio = args.out / "extracted", args.out / "sources"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    total = args.hours * 3600
    per_source = args.source_seconds * 0.8  # pieces and prompts run short of the full length
    sources = (music_sources(round(total / 2 / per_source), rng)
               + speech_sources(extracted, args.source_seconds, total / 4, rng)
               + environment_sources(extracted / "usr/share/games/0ad/mods/public/public.zip",
                                     round(total / 4 / args.source_seconds), rng))
    jobs = [(s, args.source_seconds, extracted, audio) for s in sources]
    kept, failures = [], []
    with ProcessPoolExecutor(args.workers) as pool:
        by_id = {s.id: s for s in sources}
        for sid, seconds, error in tqdm(pool.map(_render, jobs, chunksize=4), total=len(jobs), desc="rendering",
                                        unit="source"):
            if error or seconds < 2.56:
                failures.append(dict(source=sid, error=error or f"only {seconds:.2f} s"))
            else:
                by_id[sid].seconds = round(seconds, 4)
                kept.append(by_id[sid])
    clips = cut_clips(kept, np.random.default_rng(args.seed + 1))
    for name, rows in (("sources.csv", [asdict(s) for s in kept]), ("clips.csv", clips), ("failures.csv", failures)):
        tmp = args.out / f".{name}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["source", "error"])
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(args.out / name)
    hours = {c: round(sum(s.seconds for s in kept if s.category == c) / 3600, 3)
             for c in ("music", "speech", "environment")}
    write_json(args.out / "manifest.json", dict(
        packages=versions, seed=args.seed, hours=args.hours, source_seconds=args.source_seconds,
        heldout_share=HELDOUT_SHARE, clip_seconds=CLIP_SECONDS, sampling_rate=SAMPLING_RATE, hours_by_category=hours,
        sources=len(kept), failures=len(failures),
        clips={f"{split} {length}": sum(1 for c in clips if c["split"] == split and c["seconds"] == length)
               for split in CLIP_SECONDS for length in CLIP_SECONDS[split]}))
    print(f"{len(kept)} sources ({hours} h), {len(failures)} skipped (failures.csv), {len(clips)} clips in {args.out}")


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------- reading
def clip_rows(corpus: Path, split: str, seconds: float) -> list[dict]:
    """The rows of ``clips.csv`` (caption, category, label, source, offset) of the ``split`` clips of length
    ``seconds``, in file order: the order of :func:`read_clips` and of the training set."""
    import csv

    if not (corpus / "clips.csv").is_file():
        raise FileNotFoundError(f"{corpus}/clips.csv not found: build the corpus with `make corpus` "
                                "(python -m minildm.corpus --out DIR)")
    with open(corpus / "clips.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split and abs(float(r["seconds"]) - seconds) < 1e-6]
    if not rows:
        raise ValueError(f"no {split} clips of {seconds} s in {corpus}/clips.csv")
    return rows


def read_clips(corpus: Path, split: str, seconds: float, limit: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """The ``split`` clips of length ``seconds`` in ``clips.csv``: audio ``(n, seconds * 16000)`` float32 and their
    rows (caption, category, label, source, offset). ``limit``: the first so many (in file order)."""
    import soundfile

    rows = clip_rows(corpus, split, seconds)[:limit]
    n = int(round(seconds * SAMPLING_RATE))
    audio, cache = np.zeros((len(rows), n), np.float32), {}
    for i, row in enumerate(rows):
        if row["source"] not in cache:
            cache = {row["source"]: soundfile.read(corpus / "sources" / f"{row['source']}.wav", dtype="float32")[0]}
        start = int(round(float(row["offset"]) * SAMPLING_RATE))
        clip = cache[row["source"]][start: start + n]
        audio[i, : len(clip)] = clip
    return audio, rows


def caption_vocabulary(captions: list[str]) -> list[str]:
    """The sorted words (``[a-z]+``) of ``captions``: the caption encoder's vocabulary."""
    return sorted({w for c in captions for w in re.findall(r"[a-z]+", c.lower())})
