"""Evaluation protocols, named: which models embed the clips, which formulas compare them, which part of each clip
counts. Every output row says its protocol, backbone, checkpoint, sampling rate and crop.

- ``"clap_kad"`` (the offline default; recommended for small sets): an :class:`analysis.evaluator.Evaluator`'s one
  embedding per clip. Its ``FAD`` is the Fréchet distance of those clip embeddings (what audioldm_eval calls FD, not
  its FAD), ``KAD`` the kernel audio distance (unbiased: it converges with far fewer clips), ``KL`` the KL of class
  probabilities renormalised to sum to one (neither of audioldm_eval's two KLs), ``CLAP`` the CLAP score.
- ``"audioldm_eval"``: what audioldm_eval computes (the paper's tool), under its names: ``frechet_audio_distance``
  (VGGish frames pooled, :func:`analysis.quality.frechet_audio_distance`), ``frechet_distance`` (CNN14-16k 2048-d
  clip embeddings), ``kullback_leibler_divergence_softmax`` and ``_sigmoid`` (CNN14-16k logits, clips paired by file
  name as audioldm_eval pairs them), and ``clap_score`` (the evaluator's CLAP). Models: :mod:`analysis.field_models`.
- ``"paper"``: the same on a random 10 s crop of each clip longer than 10 s, seeded by ``seed`` and the file name
  (the LiteFocus authors scored their 20 to 80 s clips so; their repository, issue 1).
"""

from __future__ import annotations

import math
import numbers
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import field_models, quality


@dataclass(frozen=True)
class Protocol:
    """A named way to score clips. ``crop_seconds``: each longer clip is scored on a random crop of this length
    (seeded by ``seed`` and its name); None scores whole clips."""

    name: str
    description: str
    uses_field_models: bool  # audioldm_eval's models and formulas (else the evaluator's)
    crop_seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """A Protocol is checked like any other argument (issue 27: a crop on clap_kad was reported and not applied;
        a crop of 0 scored every metric 0, a negative one sliced backwards)."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Protocol name must be a non-empty string; got {self.name!r}")
        if not isinstance(self.uses_field_models, bool):
            raise TypeError(f"Protocol uses_field_models must be True or False; got {self.uses_field_models!r}")
        crop = self.crop_seconds
        if crop is not None:
            if isinstance(crop, bool) or not isinstance(crop, numbers.Real) or not math.isfinite(crop) or crop <= 0:
                raise ValueError(f"Protocol crop_seconds must be None (whole clips) or a positive number of seconds; "
                                 f"got {crop!r}")
            if not self.uses_field_models:
                raise ValueError("Protocol crop_seconds applies to audioldm_eval's models (uses_field_models=True); the "
                                 "evaluator's protocol scores whole clips")
            object.__setattr__(self, "crop_seconds", float(crop))
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"Protocol seed must be an integer >= 0; got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def crop_label(self) -> str:
        if self.crop_seconds is None:
            return "whole clip" + (" (padded to 2 s)" if self.uses_field_models else "")
        return f"random {self.crop_seconds:g} s (seed {self.seed})"

    def with_seed(self, seed: int) -> Protocol:
        return Protocol(self.name, self.description, self.uses_field_models, self.crop_seconds, int(seed))


PROTOCOLS = {
    "clap_kad": Protocol("clap_kad", "the evaluator's clip embeddings: FD (column FAD), KAD, KL of renormalised "
                         "class probabilities, CLAP score", uses_field_models=False),
    "audioldm_eval": Protocol("audioldm_eval", "audioldm_eval: VGGish FAD on pooled frames, CNN14-16k FD, KL softmax "
                              "and KL sigmoid on logits, CLAP score", uses_field_models=True),
    "paper": Protocol("paper", "audioldm_eval on a seeded random 10 s crop of each longer clip", uses_field_models=True,
                      crop_seconds=10.0),
}
DEFAULT = "clap_kad"
FIELD_METRICS = ("frechet_audio_distance", "frechet_distance", "kullback_leibler_divergence_softmax",
                 "kullback_leibler_divergence_sigmoid", "clap_score")


def check_protocol(protocol, seed: int = 0) -> Protocol:
    """The :class:`Protocol` a name gives (or a Protocol itself); an error lists the valid names."""
    if isinstance(protocol, Protocol):
        return protocol
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    return PROTOCOLS[protocol].with_seed(seed)


def crop(clip: np.ndarray, sampling_rate: int, protocol: Protocol, name: str) -> np.ndarray:
    """The part of ``clip`` the protocol scores: a random ``crop_seconds`` window, the same for one file name and
    seed whatever else is in the set (``np.random.default_rng([seed, crc32(name)])``); clips no longer than the
    window are whole."""
    if protocol.crop_seconds is None:
        return clip
    window = int(round(protocol.crop_seconds * sampling_rate))
    if len(clip) <= window:
        return clip
    rng = np.random.default_rng([protocol.seed, zlib.crc32(name.encode())])
    start = int(rng.integers(0, len(clip) - window + 1))
    return clip[start: start + window]


def check_scorable_seconds(seconds: float, name: str, argument: str, protocol: Protocol) -> None:
    """A field protocol's clip lasts at least one VGGish frame (0.975 s: audioldm_eval would pad a shorter one with
    silence to 2 s and score mostly that); under ``"paper"``, a generated clip holds the whole crop."""
    shortest = field_models.VGGISH_FRAME_SAMPLES / field_models.SAMPLING_RATE
    if seconds < shortest:
        raise ValueError(f"{argument}: {name} lasts {seconds:.3f} s, shorter than one VGGish frame ({shortest} s): "
                         f"the {protocol.name} protocol cannot score it")
    if argument == "generated" and protocol.crop_seconds and seconds < protocol.crop_seconds - 1e-9:
        raise ValueError(f"generated: {name} lasts {seconds:.2f} s, shorter than the {protocol.name} protocol's "
                         f"{protocol.crop_seconds:g} s crop")


def check_scorable_clips(clips: list[np.ndarray], rates: list[int], names: list[str], argument: str,
                         protocol: Protocol) -> None:
    """:func:`check_scorable_seconds` of each clip at its sampling rate."""
    for name, clip, rate in zip(names, clips, rates):
        check_scorable_seconds(len(clip) / rate, name, argument, protocol)


def check_folder(folder, argument: str, protocol: Protocol) -> None:
    """:func:`check_scorable_seconds` of every audio file of ``folder`` from its header alone (nothing decoded), so
    that a command can refuse a folder before it loads any model."""
    import soundfile

    for file in audio_files(folder):
        info = soundfile.info(file)
        check_scorable_seconds(info.frames / info.samplerate, file.name, argument, protocol)


@dataclass
class FieldModels:
    """VGGish and CNN14-16k (:mod:`analysis.field_models`) and the names of their weights."""

    vggish: object
    cnn14: object
    vggish_checkpoint: str = "random weights"
    cnn14_checkpoint: str = "random weights"

    @classmethod
    def load(cls, vggish_checkpoint=None, cnn14_checkpoint=None, device: str = "cpu") -> FieldModels:
        """The released weights (paths, or found and downloaded as :func:`field_models.find_checkpoint` says)."""
        vggish_path = field_models.find_checkpoint(vggish_checkpoint, field_models.VGGISH_FILE,
                                                   field_models.VGGISH_URL, "vggish_checkpoint")
        cnn14_path = field_models.find_checkpoint(cnn14_checkpoint, field_models.CNN14_16K_FILE,
                                                  field_models.CNN14_16K_URL, "cnn14_checkpoint")
        return cls(field_models.load_vggish(vggish_path, device), field_models.load_cnn14(cnn14_path, device),
                   vggish_path.name, cnn14_path.name)

    def describe(self) -> dict[str, tuple[str, str]]:
        """``{metric: (backbone, checkpoint)}`` for the rows."""
        vggish = ("VGGish (torchvggish, no PCA, last ReLU removed)", self.vggish_checkpoint)
        cnn14 = ("PANNs CNN14 16 kHz (panns-inference Cnn14)", self.cnn14_checkpoint)
        return {"frechet_audio_distance": vggish, "frechet_distance": cnn14,
                "kullback_leibler_divergence_softmax": cnn14, "kullback_leibler_divergence_sigmoid": cnn14}


@dataclass
class FieldFeatures:
    """One set of clips under a field protocol: VGGish ``frames`` (one ``(k, 128)`` array a clip), CNN14
    ``embeddings`` ``(n, 2048)`` and ``logits`` ``(n, 527)``."""

    frames: list[np.ndarray]
    embeddings: np.ndarray
    logits: np.ndarray


def field_features(clips: list[np.ndarray], rates: list[int], names: list[str], protocol: Protocol,
                   models: FieldModels, progress: bool = False) -> FieldFeatures:
    """Crop (``"paper"``), prepare (:func:`field_models.prepare`) and embed each clip (at its own rate in ``rates``)
    with both models."""
    from tqdm.auto import tqdm

    prepared = [field_models.prepare(crop(c, r, protocol, n), r) for c, r, n in zip(clips, rates, names)]
    frames = [field_models.vggish_frames(models.vggish, c) for c in tqdm(prepared, desc="VGGish", disable=not progress)]
    embeddings, logits = field_models.cnn14_outputs(models.cnn14, prepared)
    return FieldFeatures(frames, embeddings.astype(np.float64), logits.astype(np.float64))


def pair_by_file_name(generated: list[str], reference: list[str]) -> tuple[list[int], list[int], str]:
    """Indices of the pairs audioldm_eval scores the KLs on, and a note. Its rule (``get_filename_intersection_ratio``
    and ``calculate_kl``): file names (with their suffix) must be shared by more than 99 % of each side; then every
    reference file whose name a generated file has is a pair. Fewer: no pairs (audioldm_eval reports -1)."""
    for side, names in (("generated", generated), ("reference", reference)):
        if len(set(names)) != len(names):
            raise ValueError(f"{side} has repeated file names: the KLs pair clips by name")
    position = {n: i for i, n in enumerate(generated)}
    shared = [n for n in reference if n in position]
    if len(shared) / len(generated) > 0.99 and len(shared) / len(reference) > 0.99:
        left = len(generated) - len(shared) + len(reference) - len(shared)
        note = f"{left} file(s) without a namesake left out, as audioldm_eval does" if left else ""
        return [position[n] for n in shared], [i for i, n in enumerate(reference) if n in position], note
    missing = [n for n in generated if n not in set(reference)][:3]
    return [], [], (f"left out, as audioldm_eval leaves it out (-1): {len(shared)} of {len(generated)} generated and "
                    f"{len(reference)} reference file names are shared (it needs more than 99 % of each side); "
                    f"e.g. not in the reference: {', '.join(missing) or '-'}")


def field_rows(gen: FieldFeatures, ref: FieldFeatures, pairs: tuple[list[int], list[int], str], models: FieldModels,
               clap: quality.Estimate | None = None, clap_backbone: tuple[str, str] = ("", ""),
               resamples: int = 100, seed: int = 0) -> list[dict]:
    """The metric rows of one generated set against one reference set under a field protocol (no protocol columns:
    the caller adds them). FD on fewer clips than 2048 dimensions is what audioldm_eval computes (singular
    covariances), and the note says it is biased."""
    n, m = len(gen.embeddings), len(ref.embeddings)
    described = models.describe()
    rows = []

    def add(metric, estimate, note=""):
        backbone, checkpoint = described.get(metric, clap_backbone)
        rows.append(dict(metric=metric, value=estimate.value, low=estimate.low, high=estimate.high, clips=n,
                         reference_clips=m, backbone=backbone, checkpoint=checkpoint, note=note))

    frames = min(sum(len(f) for f in gen.frames), sum(len(f) for f in ref.frames))
    add("frechet_audio_distance", quality.frechet_audio_distance(gen.frames, ref.frames, resamples, seed,
                                                                 full_rank=False),
        "" if frames > gen.frames[0].shape[1] else f"{frames} frames for 128 dimensions: singular covariances")
    add("frechet_distance", quality.frechet_distance(gen.embeddings, ref.embeddings, resamples=resamples, seed=seed,
                                                     full_rank=False),
        "" if min(n, m) > gen.embeddings.shape[1] else
        f"{min(n, m)} clips for 2048 dimensions: singular covariances, as audioldm_eval computes it; biased, "
        "compare at equal clip counts only")
    gi, ri, note = pairs
    for metric, formula in (("kullback_leibler_divergence_softmax", quality.kl_softmax),
                            ("kullback_leibler_divergence_sigmoid", quality.kl_sigmoid)):
        if gi:
            add(metric, formula(gen.logits[gi], ref.logits[ri], resamples=1000, seed=seed), note)
        else:
            add(metric, quality.Estimate(np.nan, np.nan, np.nan, n), note)
    if clap is not None:
        add("clap_score", clap)
    return rows


def read_audio(path, channel: int | None = None) -> tuple[np.ndarray, int]:
    """One audio file as float32 samples and its rate: the mean of its channels, or channel ``channel`` (how
    audioldm_eval reads: the first). The one audio reader of the evaluations."""
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return (audio.mean(axis=1) if channel is None else audio[:, channel]), rate


def read_clips(path) -> tuple[list[str], list[np.ndarray], list[int]]:
    """The audio files of a folder as audioldm_eval reads them: file names (with suffix), the first channel of
    each, and each file's sampling rate."""
    files = audio_files(path)
    read = [read_audio(file, channel=0) for file in files]
    return [file.name for file in files], [clip for clip, _ in read], [rate for _, rate in read]


COLUMNS = ["protocol", "metric", "value", "low", "high", "clips", "reference_clips", "backbone", "checkpoint",
           "sampling_rate", "crop", "evaluator", "note"]
"""The columns of every protocol's table, in order."""


def load_set(x, argument: str, sampling_rate: int | None, reader) -> tuple[list[str], list[np.ndarray], list[int]]:
    """A folder (read by ``reader``: :func:`read_folder` or :func:`read_clips`) or an array / list of clips at
    ``sampling_rate``: names, clips checked by :func:`analysis.evaluator.check_audio` (errors name the clip), and
    each clip's rate."""
    from .evaluator import check_audio

    if isinstance(x, (str, Path)):
        names, clips, rates = reader(x)
    elif sampling_rate is None:
        raise ValueError(f"{argument} is an array: pass its sampling_rate (Hz)")
    else:
        names, clips, rates = [str(i) for i in range(len(x))], x, [sampling_rate] * len(x)
    if not isinstance(x, (str, Path)):  # an array's clips are named by index, a folder's by file
        return names, check_audio(clips, sampling_rate, argument), rates
    return names, [check_audio([c], r, argument, [n])[0] for c, r, n in zip(clips, rates, names)], rates


def check_sets(generated: list, reference: list, captions, needs: str) -> None:
    """At least 2 clips a set (``needs``: the metrics that need them, for the message) and one checked caption per
    generated clip where captions are given."""
    from .evaluator import check_captions

    if min(len(generated), len(reference)) < 2:
        raise ValueError(f"{needs} need at least 2 clips a set; got {len(generated)} generated, {len(reference)} "
                         "reference")
    if captions is not None:
        if len(captions) != len(generated):
            raise ValueError(f"{len(captions)} captions for {len(generated)} generated clips: give one caption per "
                             "clip")
        check_captions(captions)


def evaluate_field(generated, reference, protocol: Protocol, captions=None, evaluator=None, models=None,
                   sampling_rate: int | None = None, resamples: int = 100, progress: bool = False):
    """:func:`evaluate` under a field protocol (see the module docstring): a tidy DataFrame."""
    import pandas as pd

    gen_names, gen, gen_rates = load_set(generated, "generated", sampling_rate, read_clips)
    ref_names, ref, ref_rates = load_set(reference, "reference", sampling_rate, read_clips)
    for argument, names, clips, rates in (("generated", gen_names, gen, gen_rates),
                                          ("reference", ref_names, ref, ref_rates)):
        check_scorable_clips(clips, rates, names, argument, protocol)
    check_sets(gen, ref, captions, "the Fréchet distances")
    pairs = pair_by_file_name(gen_names, ref_names)
    models = models or FieldModels.load()
    clap, clap_backbone = None, ("", "")
    if captions is not None:
        from .evaluator import Evaluator, resample

        evaluator = evaluator or Evaluator.offline()
        parts = [resample([crop(c, r, protocol, n)], r, evaluator.sampling_rate)[0]
                 for c, r, n in zip(gen, gen_rates, gen_names)]
        clap = quality.clap_score(evaluator.clap_audio(parts), evaluator.text(list(captions)), seed=protocol.seed)
        clap_backbone = (f"CLAP of {evaluator.name}", evaluator.name)
    rows = field_rows(field_features(gen, gen_rates, gen_names, protocol, models, progress),
                      field_features(ref, ref_rates, ref_names, protocol, models, progress), pairs, models, clap,
                      clap_backbone, resamples, protocol.seed)
    table = pd.DataFrame(rows).assign(protocol=protocol.name, sampling_rate=field_models.SAMPLING_RATE,
                                      crop=protocol.crop_label(), evaluator=evaluator.name if evaluator else "")
    return table[COLUMNS]


# ---------------------------------------------------------------- a whole evaluation
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def audio_files(path) -> list[Path]:
    """The audio files of folder ``path`` (``.wav``, ``.flac``, ``.ogg``), sorted by name; an error names a missing
    folder or one without audio (nothing is decoded)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of audio files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def read_folder(path) -> tuple[list[str], list[np.ndarray], int]:
    """The audio files of folder ``path`` (``.wav``, ``.flac``, ``.ogg``; sorted by name): their stems, mono float32
    clips and one sampling rate (files at other rates are resampled to the highest one, librosa)."""
    from .evaluator import resample

    files = audio_files(path)
    read = [read_audio(p) for p in files]
    rate = max(r for _, r in read)
    clips = [resample([a], r, rate)[0] for a, r in read]
    return [p.stem for p in files], clips, rate


def evaluate(generated, reference, captions: list[str] | None = None, evaluator=None,
             sampling_rate: int | None = None, fad_shrinkage: float | None = None, seed: int = 0,
             protocol: str = "clap_kad", field_models=None):
    """Quality of ``generated`` audio against ``reference`` audio under a named ``protocol``
    (:mod:`analysis.protocols`), with 95 % bootstrap intervals: a tidy ``pandas.DataFrame`` (``protocol, metric,
    value, low, high, clips, reference_clips, backbone, checkpoint, sampling_rate, crop, note``).

    ``protocol="audioldm_eval"`` or ``"paper"``: audioldm_eval's metrics under its names (VGGish and CNN14-16k:
    ``field_models``, a :class:`analysis.protocols.FieldModels`, default the released weights); ``seed`` seeds the
    paper's crops. The rest of this docstring is the default, ``"clap_kad"``: FAD (of one clip embedding per clip),
    KAD, KL and CLAP score.

    ``generated``, ``reference``: folders of audio files, or ``(clips, samples)`` arrays / lists of 1-D clips at
    ``sampling_rate``. ``captions``: one per generated clip (in sorted file order for a folder); the CLAP score needs
    them. KL pairs each generated clip with the reference clip of the same file name (folders) or index (arrays of
    equal length); without pairs it is left out, and the note says so. ``evaluator``: an
    :class:`analysis.evaluator.Evaluator` (default: the offline one). ``fad_shrinkage``: None picks 0 when both sets
    have more clips than embedding dimensions and 0.1 otherwise (the note says so). Every input is checked before a
    model runs.
    """
    chosen = check_protocol(protocol, seed)
    if isinstance(captions, (str, bytes)):
        raise ValueError("captions must be a list of strings, one per generated clip (or None); got one string")
    if field_models is not None and not isinstance(field_models, FieldModels):
        raise TypeError(f"field_models must be an analysis.protocols.FieldModels (or None: the released weights); "
                        f"got {type(field_models).__name__}")
    if chosen.uses_field_models:
        if fad_shrinkage is not None:
            raise ValueError(f"fad_shrinkage applies to the clap_kad protocol only; {chosen.name} computes FAD and FD "
                             "as audioldm_eval does, without shrinkage")
        return evaluate_field(generated, reference, chosen, captions, evaluator, field_models, sampling_rate)
    return evaluate_clap_kad(generated, reference, chosen, captions, evaluator, sampling_rate, fad_shrinkage, seed)


def _read_mixed(folder) -> tuple[list[str], list[np.ndarray], list[int]]:
    """:func:`read_folder` with one rate per clip (the loader's form)."""
    names, clips, rate = read_folder(folder)
    return names, clips, [rate] * len(clips)


def evaluate_clap_kad(generated, reference, protocol: Protocol, captions=None, evaluator=None,
                      sampling_rate: int | None = None, fad_shrinkage: float | None = None, seed: int = 0):
    """:func:`evaluate` under ``clap_kad``: FAD, KAD, KL and CLAP score of the evaluator's embeddings (bootstrap
    intervals seeded by ``seed``), a tidy DataFrame."""
    import pandas as pd

    from .evaluator import Evaluator, resample

    gen_names, gen, gen_rates = load_set(generated, "generated", sampling_rate, _read_mixed)
    ref_names, ref, ref_rates = load_set(reference, "reference", sampling_rate, _read_mixed)
    check_sets(gen, ref, captions, "FAD and KAD")
    if fad_shrinkage is not None:
        fad_shrinkage = quality.check_shrinkage(fad_shrinkage, "fad_shrinkage")
    gen_rate, ref_rate = max(gen_rates), max(ref_rates)  # arrays come at one rate; a folder is read at one
    gen = [resample([c], r, gen_rate)[0] for c, r in zip(gen, gen_rates)]
    ref = [resample([c], r, ref_rate)[0] for c, r in zip(ref, ref_rates)]
    evaluator = evaluator or Evaluator.offline()
    notes = {}
    shrinkage = fad_shrinkage
    if shrinkage is None:
        shrinkage = quality.default_shrinkage(len(gen), len(ref), evaluator.audio_dim)
    if shrinkage:
        notes["FAD"] = (f"covariances shrunk by {shrinkage} toward a multiple of the identity ({len(gen)} and "
                        f"{len(ref)} clips for {evaluator.audio_dim} dimensions); compare only at equal shrinkage")

    gen_embedded = evaluator.embed(gen, gen_rate, captions)
    ref_embedded = evaluator.embed(ref, ref_rate)
    estimates = {
        "FAD": quality.frechet_distance(gen_embedded.audio, ref_embedded.audio, shrinkage=shrinkage, seed=seed),
        "KAD": quality.kernel_distance(gen_embedded.audio, ref_embedded.audio, seed=seed),
    }
    position = {n: i for i, n in enumerate(ref_names)}
    folders = isinstance(generated, (str, Path)) and isinstance(reference, (str, Path))
    if folders and all(n in position for n in gen_names) or not folders and len(gen) == len(ref):
        pairs = [position[n] for n in gen_names] if folders else list(range(len(gen)))  # by name, else by index
        estimates["KL"] = quality.kl_divergence(gen_embedded.probabilities, ref_embedded.probabilities[pairs],
                                                seed=seed)
    else:
        notes["KL"] = "left out: no reference clip of the same name (or index) for every generated clip"
    if captions is not None:
        estimates["CLAP"] = quality.clap_score(gen_embedded.clap_audio, gen_embedded.text, seed=seed)
    else:
        notes["CLAP"] = "left out: no captions"
    described = dict(protocol=protocol.name, backbone=evaluator.name,
                     checkpoint=getattr(evaluator, "identity", "")[:12], sampling_rate=evaluator.sampling_rate,
                     crop=protocol.crop_label(), evaluator=evaluator.name)
    rows = [dict(metric=m, value=e.value, low=e.low, high=e.high, clips=len(gen), reference_clips=len(ref),
                 **described, note=notes.get(m, "")) for m, e in estimates.items()]
    rows += [dict(metric=m, value=np.nan, low=np.nan, high=np.nan, clips=len(gen), reference_clips=len(ref),
                  **described, note=note) for m, note in notes.items() if m not in estimates]
    return pd.DataFrame(rows)[COLUMNS]
