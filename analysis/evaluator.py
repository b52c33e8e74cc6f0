"""What the quality metrics need, from waveforms and captions: audio embeddings (FAD, KAD), text embeddings (CLAP
score) and class probabilities (KL).

One class, two sources of weights, one code path (transformers' ``ClapModel`` either way):

- ``Evaluator.from_pretrained()``: the public models. CLAP ``laion/clap-htsat-unfused`` (the CLAP AudioLDM2 uses)
  for audio and text embeddings; class probabilities from PANNs CNN14 at 32 kHz (panns-inference's default
  checkpoint; its 2048-d embedding then serves FAD and KAD; the ``audioldm_eval`` protocol uses the 16 kHz one,
  :mod:`analysis.field_models`) or from transformers' AST
  (``MIT/ast-finetuned-audioset-10-10-0.4593``).
- ``Evaluator.offline()``: the evaluator trained here (``data/evaluator``, ``python -m studies.evaluator.training``):
  a small ``ClapModel`` trained contrastively on the MiniLDM 2 corpus, with a linear classifier of the corpus'
  labels on its audio embedding.

CLAP takes at most ``window_seconds`` (10 s) of audio: longer clips are cut into consecutive windows whose
embeddings are averaged (unit length before and after); shorter ones are repeated to fill the window, as CLAP's
feature extractor does. Every clip is resampled (librosa) to each model's rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from litefocus.shipped import require, shipped_path

OFFLINE_PATH = shipped_path("evaluator")
TEMPORAL_PROFILE = "temporal_profile.json"
PROFILE_LAGS = (1, 2, 4, 8, 16, 32, 64)  # frames of 10 ms
PROFILE_QUANTILES = (0.5, 0.9, 0.99, 1.0)
PUBLIC_CLAP = "laion/clap-htsat-unfused"
PUBLIC_AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
LABEL_HEAD = "label_head.safetensors"


@dataclass
class Embedded:
    """One evaluator's view of a set of clips: ``audio`` ``(n, d)`` (what FAD and KAD compare), ``clap_audio``
    ``(n, p)`` and ``text`` ``(n, p)`` (unit CLAP embeddings, matched by row; ``text`` is None without captions) and
    ``probabilities`` ``(n, classes)`` (what KL compares)."""

    audio: np.ndarray
    clap_audio: np.ndarray
    probabilities: np.ndarray
    text: np.ndarray | None = None


FLOAT_PEAK_LIMIT = 2.0
"""The largest peak float audio may have: [-1, 1] with room for a resampler's or vocoder's overshoot."""


def check_audio(audio, sampling_rate: int, name: str = "audio", labels: list[str] | None = None) -> list[np.ndarray]:
    """Clips as a list of 1-D float32 arrays: from ``(n, samples)`` or a list of 1-D arrays, float in [-1, 1] or
    integer PCM (scaled to [-1, 1] by its type's range). Empty, NaN or silent clips, float clips far outside [-1, 1]
    (peak above :data:`FLOAT_PEAK_LIMIT`) and a non-positive rate are errors that name the clip: ``name[i]``, or
    ``name: labels[i]`` (a file name) where ``labels`` are given."""
    if not (isinstance(sampling_rate, (int, np.integer)) and not isinstance(sampling_rate, bool) and sampling_rate > 0):
        raise ValueError(f"sampling_rate must be a positive integer (Hz); got {sampling_rate!r}")
    clips = list(audio) if not isinstance(audio, np.ndarray) or audio.ndim == 2 else None
    if clips is None:
        raise ValueError(f"{name} must be (clips, samples) or a list of 1-D clips; got shape {np.shape(audio)}")
    if not clips:
        raise ValueError(f"{name} holds no clips")
    out = []
    for i, clip in enumerate(clips):
        which = f"{name}[{i}]" if labels is None else f"{name}: {labels[i]}"
        clip = np.asarray(clip)
        if clip.dtype.kind in "iu":  # integer PCM (scipy.io.wavfile.read's int16, int32, uint8): to [-1, 1]
            info = np.iinfo(clip.dtype)
            middle = (int(info.max) + int(info.min) + 1) / 2
            clip = (clip.astype(np.float64) - middle) / (int(info.max) + 1 - middle)
        elif clip.dtype.kind not in "f":
            raise ValueError(f"{which} must hold float samples in [-1, 1] or integer PCM; got {clip.dtype}")
        clip = clip.astype(np.float32)
        if clip.ndim != 1 or clip.size < sampling_rate // 10:
            raise ValueError(f"{which} must be 1-D with at least 0.1 s of samples; got shape {clip.shape}")
        if not np.isfinite(clip).all():
            raise ValueError(f"{which} holds NaN or infinite samples")
        peak = float(np.abs(clip).max())
        if peak < 1e-5:
            raise ValueError(f"{which} is silent (peak below 1e-5): nothing to evaluate")
        if peak > FLOAT_PEAK_LIMIT:
            raise ValueError(f"{which} peaks at {peak:.4g}: float samples must lie in [-1, 1] (up to "
                             f"{FLOAT_PEAK_LIMIT} is taken as overshoot); scale the clip (x / peak) or pass integer PCM")
        out.append(clip)
    return out


def check_captions(captions) -> None:
    """Each caption a non-empty string; an error names the first that is not, by its index."""
    for i, caption in enumerate(captions):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"captions[{i}] must be a non-empty string (the CLAP score needs it); got {caption!r}")


def resample(clips: list[np.ndarray], sampling_rate: int, target: int) -> list[np.ndarray]:
    """``clips`` at ``target`` Hz (librosa's default resampler); unchanged when the rates agree."""
    if sampling_rate == target:
        return clips
    import librosa

    return [librosa.resample(c, orig_sr=sampling_rate, target_sr=target).astype(np.float32) for c in clips]


def temporal_profile(clips: list[np.ndarray], sampling_rate: int) -> np.ndarray:
    """Order-sensitive statistics of each clip, ``(n, 11)``: from its 64-bin log-mel at 10 ms hops (16 kHz, the clip
    scaled to unit RMS), minus
    the clip's mean spectrum, the mean cosine between frames ``lag`` apart for lags of 10 to 640 ms
    (:data:`PROFILE_LAGS`: how fast the sound changes), and quantiles of the frame-to-frame change (spectral flux,
    over the clip's spread: the jumps). Putting a clip's pieces in another order leaves its pooled spectrum as it
    was but cuts its slow correlations and adds jumps at every seam."""
    import librosa

    out = []
    for clip in resample(clips, sampling_rate, 16000):
        clip = clip / (np.sqrt(np.mean(clip.astype(np.float64) ** 2)) + 1e-12)  # loudness does not count
        mel = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=1024, hop_length=160, n_mels=64, power=1.0,
                                             center=False)  # no padded frames: the clip's edges are no jumps
        log_mel = np.log(mel + 1e-5).T  # (frames, 64)
        centred = log_mel - log_mel.mean(0)
        norms = np.linalg.norm(centred, axis=1) + 1e-8
        lags = [float(np.mean((centred[:-k] * centred[k:]).sum(1) / (norms[:-k] * norms[k:])))
                if len(centred) > k else 0.0 for k in PROFILE_LAGS]
        flux = np.linalg.norm(np.diff(log_mel, axis=0), axis=1) / (8 * log_mel.std() + 1e-8)
        out.append(lags + [float(q) for q in np.quantile(flux, PROFILE_QUANTILES)])
    return np.asarray(out, dtype=np.float64)


def fit_temporal_profile(clips: list[np.ndarray], clap_audio: np.ndarray, sampling_rate: int) -> dict:
    """Standardization of :func:`temporal_profile` on real clips and the weight that gives the standardized profile
    the same total variance across those clips as their CLAP audio embeddings ``(n, p)`` have, so that neither part
    drowns the other in FAD and KAD."""
    profile = temporal_profile(clips, sampling_rate)
    mean, std = profile.mean(0), profile.std(0) + 1e-8
    weight = float(np.sqrt(clap_audio.var(0).sum() / profile.shape[1]))
    return dict(mean=mean.tolist(), std=std.tolist(), weight=weight, clips=len(clips), lags_frames=PROFILE_LAGS,
                quantiles=PROFILE_QUANTILES)


class Evaluator:
    """Audio and text embeddings and class probabilities of clips, from a CLAP model and a classifier.

    ``clap``: a ``transformers.ClapModel``; ``processor``: its ``ClapProcessor``; ``classifier``: a callable
    ``(clips at classifier_rate, CLAP audio embeddings (n, p)) -> (probabilities (n, c), embeddings (n, d) or None)``;
    when it gives no embeddings, FAD and KAD use the CLAP audio embeddings. ``classes``: the class names;
    ``audio_dim``: the classifier's embedding size when it gives one. ``identity``: what, besides the CLAP weights,
    decides the outputs (hashes of the classifier's and the temporal profile's files), for caches of embeddings.
    """

    def __init__(self, clap, processor, classifier, classes: list[str], classifier_rate: int, name: str,
                 device: str | torch.device = "cpu", batch: int = 16, audio_dim: int | None = None,
                 identity: str = ""):
        self.clap, self.processor = clap.eval().to(device), processor
        self.audio_dim = audio_dim or clap.config.projection_dim  # dimensions of what FAD and KAD compare
        self.classifier, self.classes, self.classifier_rate = classifier, list(classes), classifier_rate
        self.name, self.device, self.batch, self.identity = name, torch.device(device), batch, identity

    @property
    def sampling_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    @property
    def window_seconds(self) -> float:
        return float(self.processor.feature_extractor.max_length_s)

    def __repr__(self) -> str:
        return f"Evaluator({self.name!r}, {len(self.classes)} classes, CLAP at {self.sampling_rate} Hz)"

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def clap_audio(self, clips: list[np.ndarray]) -> np.ndarray:
        """Unit CLAP audio embeddings ``(n, p)`` of clips at :attr:`sampling_rate`: the mean over consecutive windows
        of :attr:`window_seconds` (unit length before and after averaging)."""
        window = int(round(self.window_seconds * self.sampling_rate))
        pieces, owner = [], []
        for i, clip in enumerate(clips):
            count = max(1, math.ceil(len(clip) / window - 1e-9))
            for k in range(count):
                piece = clip[k * window: (k + 1) * window]
                if len(piece) >= window // 10 or k == 0:  # a last sliver under a tenth of a window is dropped
                    pieces.append(piece)
                    owner.append(i)
        embedded = []
        for start in range(0, len(pieces), self.batch):
            features = self.processor.feature_extractor(
                pieces[start: start + self.batch], sampling_rate=self.sampling_rate, truncation="rand_trunc",
                padding="repeatpad", return_tensors="pt")
            # rand_trunc crops only what is longer than the window: never here, so nothing random happens
            out = self.clap.get_audio_features(input_features=features["input_features"].to(self.device))
            embedded.append(out.pooler_output.float().cpu())
        per_piece = torch.cat(embedded)
        owner = torch.tensor(owner)
        mean = torch.zeros(len(clips), per_piece.shape[1]).index_add_(0, owner, per_piece)
        return torch.nn.functional.normalize(mean, dim=-1).numpy()

    @torch.no_grad()
    def text(self, captions: list[str]) -> np.ndarray:
        """Unit CLAP text embeddings ``(n, p)``."""
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ValueError("captions must be a non-empty list of non-empty strings")
        out = []
        for start in range(0, len(captions), self.batch):
            tokens = self.processor.tokenizer(captions[start: start + self.batch], padding=True, truncation=True,
                                              return_tensors="pt")
            out.append(self.clap.get_text_features(**tokens.to(self.device)).pooler_output.float().cpu())
        return torch.cat(out).numpy()

    def embed(self, audio, sampling_rate: int, captions: list[str] | None = None) -> Embedded:
        """Everything the metrics need for ``audio`` (``(n, samples)`` or a list of 1-D clips at ``sampling_rate``)
        and, when given, its ``captions`` (one per clip)."""
        clips = check_audio(audio, sampling_rate)
        if isinstance(captions, str):
            raise ValueError(f"captions must be a list of strings, one per clip; got the string {captions!r} (for one "
                             "clip, pass [caption])")
        if captions is not None and len(captions) != len(clips):
            raise ValueError(f"{len(captions)} captions for {len(clips)} clips: give one caption per clip")
        if captions is not None:
            check_captions(captions)
        clap_audio = self.clap_audio(resample(clips, sampling_rate, self.sampling_rate))
        probabilities, embeddings = self.classifier(resample(clips, sampling_rate, self.classifier_rate), clap_audio)
        return Embedded(audio=np.asarray(clap_audio if embeddings is None else embeddings, dtype=np.float64),
                        clap_audio=clap_audio, probabilities=np.asarray(probabilities, dtype=np.float64),
                        text=None if captions is None else self.text(list(captions)))

    # ------------------------------------------------------------------ loading
    @classmethod
    def offline(cls, path: str | Path = OFFLINE_PATH, device: str = "cpu") -> "Evaluator":
        """The evaluator trained here on the MiniLDM 2 corpus (``data/evaluator``). FAD and KAD compare its CLAP audio
        embedding, and beside it, when the folder holds :data:`TEMPORAL_PROFILE`, the weighted standardized
        :func:`temporal_profile` (the CLAP embedding pools over time and cannot tell a clip from its pieces
        reordered); the CLAP score and the classes use the CLAP embedding alone."""
        from safetensors.torch import load_file
        from transformers import ClapModel, ClapProcessor

        path = Path(path)
        require(path / "config.json", "offline evaluator (config.json)",
                "`make evaluator` (python -m studies.evaluator.training)")
        clap = ClapModel.from_pretrained(path)
        processor = ClapProcessor.from_pretrained(path)
        classes = json.loads((path / "classes.json").read_text())
        head = LabelHead(clap.config.projection_dim, len(classes))
        weights = load_file(path / LABEL_HEAD)
        shape = tuple(weights.get("weight", torch.empty(0)).shape)
        if shape != tuple(head.weight.shape):
            raise ValueError(f"{path}: {LABEL_HEAD} maps to {shape[0] if shape else '?'} classes from "
                             f"{shape[1] if len(shape) > 1 else '?'} dimensions, but classes.json names "
                             f"{len(classes)} classes and the CLAP projects to {clap.config.projection_dim}: the "
                             "files come from different trainings (retrain with python -m studies.evaluator.training)")
        head.load_state_dict(weights)
        head.eval().to(device)
        profile = json.loads((path / TEMPORAL_PROFILE).read_text()) if (path / TEMPORAL_PROFILE).is_file() else None
        rate = processor.feature_extractor.sampling_rate

        @torch.no_grad()
        def classify(clips, clap_audio):
            probabilities = torch.softmax(head(torch.from_numpy(clap_audio).to(device)), -1).cpu().numpy()
            if profile is None:
                return probabilities, None
            z = (temporal_profile(clips, rate) - profile["mean"]) / np.asarray(profile["std"])
            return probabilities, np.concatenate([clap_audio, profile["weight"] * z], axis=1)

        import hashlib

        files = [path / LABEL_HEAD, path / "classes.json", *([path / TEMPORAL_PROFILE] if profile else [])]
        identity = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        return cls(clap, processor, classify, classes, rate,
                   name=f"offline ({path.name}{' + temporal profile' if profile else ''})", device=device,
                   audio_dim=clap.config.projection_dim + (len(profile["mean"]) if profile else 0), identity=identity)

    @classmethod
    def from_pretrained(cls, clap: str = PUBLIC_CLAP, classifier: str = "panns", device: str = "cpu",
                        panns_checkpoint: str | None = None, **kwargs) -> "Evaluator":
        """The public models: CLAP ``clap`` (a hub name or a local folder) and ``classifier`` ``"panns"`` (PANNs
        CNN14 through panns-inference: 527 AudioSet probabilities and its 2048-d embedding for FAD/KAD;
        ``panns_checkpoint``: a local ``Cnn14_mAP=0.431.pth``) or an AST name or folder (AudioSet probabilities;
        FAD/KAD on CLAP). Raises with how to provide the weights when they cannot be loaded (offline)."""
        from transformers import ClapModel, ClapProcessor

        try:
            model, processor = ClapModel.from_pretrained(clap, **kwargs), ClapProcessor.from_pretrained(clap)
        except OSError as error:
            raise OSError(f"cannot load CLAP {clap!r} ({error.__class__.__name__}). Offline, download it where you "
                          f"have internet (huggingface-cli download {PUBLIC_CLAP}) and pass its folder as clap=, "
                          "or use Evaluator.offline() for the evaluator trained here") from error
        if classifier == "panns":
            classify, classes, rate, dim = _panns(device, panns_checkpoint)
        else:
            classify, classes, rate, dim = _ast(classifier, device)
        return cls(model, processor, classify, classes, rate, name=f"{clap} + {classifier}", device=device,
                   audio_dim=dim)


class LabelHead(torch.nn.Linear):
    """The offline evaluator's classifier: a linear map from the CLAP audio embedding ``(n, p)`` to class logits."""


def _panns(device: str, checkpoint: str | None):
    try:
        from panns_inference import AudioTagging, labels
    except ImportError as error:
        raise ImportError("classifier='panns' needs panns-inference (pip install panns-inference), or pass an AST "
                          "name as classifier=") from error
    try:
        tagger = AudioTagging(checkpoint_path=checkpoint, device=device)
    except Exception as error:  # it downloads its checkpoint when none is given: offline that fails
        raise OSError("cannot load PANNs CNN14: download Cnn14_mAP=0.431.pth (zenodo record 3987831) where you have "
                      "internet and pass panns_checkpoint=") from error

    def classify(clips, clap_audio):
        probabilities, embeddings = [], []
        for clip in clips:
            p, e = tagger.inference(clip[None, :])
            probabilities.append(p[0])
            embeddings.append(e[0])
        return np.stack(probabilities), np.stack(embeddings)

    return classify, list(labels), 32000, 2048


def _ast(name: str, device: str):
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    try:
        model = ASTForAudioClassification.from_pretrained(name).eval().to(device)
        features = ASTFeatureExtractor.from_pretrained(name)
    except OSError as error:
        raise OSError(f"cannot load the classifier {name!r}: give 'panns' or an AST name or folder ({PUBLIC_AST}) "
                      "that can be loaded here") from error

    @torch.no_grad()
    def classify(clips, clap_audio):
        out = []
        for clip in clips:
            inputs = features(clip, sampling_rate=features.sampling_rate, return_tensors="pt").to(device)
            out.append(torch.sigmoid(model(**inputs).logits)[0].float().cpu().numpy())
        return np.stack(out), None

    classes = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return classify, classes, features.sampling_rate, None
