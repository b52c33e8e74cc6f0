"""The models audioldm_eval scores with, from their own libraries, and the audio preparation it applies first.

- **VGGish** for FAD: ``torchvggish``'s network (the torch port ``harritaylor/torchvggish`` that audioldm_eval loads),
  without the PCA post-processing and with the final ReLU removed, as audioldm_eval uses it: one 128-d row per
  0.96 s frame; frames from ``torchvggish.vggish_input.waveform_to_examples`` (16 kHz, 25 ms windows, 10 ms hops,
  64 mel bands of 125 to 7500 Hz, 96 hops a frame, no overlap).
- **PANNs CNN14 at 16 kHz** for FD and the two KLs: ``panns-inference``'s ``Cnn14`` class built with audioldm_eval's
  16 kHz front-end (window 512, hop 160, 64 mels, 50 to 8000 Hz) and the checkpoint ``Cnn14_16k_mAP=0.438.pth``;
  its 2048-d embedding (``relu(fc1(x))``) and its 527 logits (``fc_audioset`` of that embedding).
- **Preparation** (audioldm_eval's ``WaveDataset``): the first channel, minus its mean, resampled to 16 kHz, padded
  with zeros to 2 s. audioldm_eval resamples with torchaudio's sinc filter; torchaudio cannot be installed beside a
  CPU torch here, so this uses librosa's default (soxr): the one step that is not the same code.

Weights come from ``checkpoint=`` paths, else from the files' usual places (the torch hub cache, audioldm_eval's
``~/.cache/audioldm_eval/ckpt``, panns-inference's ``~/panns_data``), else from their download URLs; with
``HF_HUB_OFFLINE=1`` (or no network) the error names the file, where to fetch it and the argument that takes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

SAMPLING_RATE = 16000
MIN_SAMPLES = 32000  # audioldm_eval pads shorter clips with zeros to 2 s
VGGISH_FRAME_SAMPLES = 400 + 95 * 160  # one 0.96 s frame: 96 windows of 25 ms at 10 ms hops (0.975 s)
VGGISH_FILE = "vggish-10086976.pth"
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
CNN14_16K_FILE = "Cnn14_16k_mAP=0.438.pth"
CNN14_16K_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
CNN14_16K = dict(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=527)


def _search_paths(filename: str) -> list[Path]:
    return [Path(torch.hub.get_dir()) / "checkpoints" / filename,
            Path.home() / ".cache" / "audioldm_eval" / "ckpt" / filename, Path.home() / "panns_data" / filename]


def find_checkpoint(checkpoint, filename: str, url: str, argument: str) -> Path:
    """The weights file: ``checkpoint`` when given (it must exist), else ``filename`` where the libraries keep it,
    else downloaded from ``url`` into the torch hub cache. Offline, an error names the file, the URL and
    ``argument``."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{argument}={str(checkpoint)!r} is not a file: give the path of {filename}")
        return path
    for path in _search_paths(filename):
        if path.is_file():
            return path
    target = _search_paths(filename)[0]
    how = (f"download {url} where you have internet and pass its path as {argument} "
           f"(--{argument.replace('_', '-')}), or put it in {target.parent}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise FileNotFoundError(f"no {filename} here and downloads are off (HF_HUB_OFFLINE): {how}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as error:  # no network, a proxy, a refused connection: say what to do instead
        raise FileNotFoundError(f"no {filename} here and downloading it failed ({error.__class__.__name__}): "
                                f"{how}") from error
    return target


def _state_dict(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


# ---------------------------------------------------------------- VGGish
def build_vggish() -> torch.nn.Module:
    """torchvggish's VGGish network as audioldm_eval runs it (no PCA, last ReLU removed), random weights."""
    from torchvggish import torchvggish as network

    model = network.VGG(network.make_layers(), postprocess=False)
    model.embeddings = torch.nn.Sequential(*list(model.embeddings.children())[:-1])
    return model.eval()


def load_vggish(checkpoint=None, device: str = "cpu") -> torch.nn.Module:
    """:func:`build_vggish` with the released weights (``vggish-10086976.pth``; ``checkpoint``: its path)."""
    model = build_vggish()
    state = _state_dict(find_checkpoint(checkpoint, VGGISH_FILE, VGGISH_URL, "vggish_checkpoint"))
    model.load_state_dict(state, strict=False)  # the removed ReLU has no weights; every Linear and Conv must load
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"vggish_checkpoint is not a VGGish checkpoint: it lacks {sorted(missing)[:3]}")
    return model.to(device)


def vggish_examples(clip: np.ndarray) -> torch.Tensor:
    """torchvggish's input of one 16 kHz clip: ``(frames, 1, 96, 64)`` log-mel patches of 0.96 s."""
    from torchvggish import vggish_input

    if len(clip) < VGGISH_FRAME_SAMPLES:
        raise ValueError(f"a clip of {len(clip)} samples is shorter than one VGGish frame ({VGGISH_FRAME_SAMPLES} "
                         f"samples at {SAMPLING_RATE} Hz, 0.975 s)")
    return vggish_input.waveform_to_examples(np.asarray(clip, dtype=np.float64), SAMPLING_RATE).detach()


@torch.no_grad()
def vggish_frames(model: torch.nn.Module, clip: np.ndarray) -> np.ndarray:
    """VGGish embeddings of one 16 kHz clip, ``(frames, 128)``: what FAD pools."""
    device = next(model.parameters()).device
    return model(vggish_examples(clip).to(device)).float().cpu().numpy()


# ---------------------------------------------------------------- CNN14 at 16 kHz
def _panns_models():
    """panns-inference's ``models`` module, imported under a private package name: the package's own ``__init__``
    downloads AudioSet's label list at import (``wget`` to ``~/panns_data``), which these models do not need."""
    name = "_litefocus_panns"
    if f"{name}.models" in sys.modules:
        return sys.modules[f"{name}.models"]
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the audioldm_eval protocol needs panns-inference (pip install panns-inference)")
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package
    return importlib.import_module(f"{name}.models")


def build_cnn14() -> torch.nn.Module:
    """panns-inference's ``Cnn14`` with audioldm_eval's 16 kHz front-end (:data:`CNN14_16K`), random weights."""
    return _panns_models().Cnn14(**CNN14_16K).eval()


def load_cnn14(checkpoint=None, device: str = "cpu") -> torch.nn.Module:
    """:func:`build_cnn14` with ``Cnn14_16k_mAP=0.438.pth`` (``checkpoint``: its path). A checkpoint of another
    front-end (the 32 kHz ``Cnn14_mAP=0.431.pth``: 513 STFT bins, not 257) is refused by name."""
    model = build_cnn14()
    state = _state_dict(find_checkpoint(checkpoint, CNN14_16K_FILE, CNN14_16K_URL, "cnn14_checkpoint"))
    expected = model.state_dict()
    key = "logmel_extractor.melW"
    if key not in state:
        raise ValueError(f"cnn14_checkpoint is not a PANNs CNN14 checkpoint (no {key})")
    if state[key].shape != expected[key].shape:
        bins = state[key].shape[0]
        raise ValueError(f"cnn14_checkpoint has a front-end of {bins} STFT bins (window {2 * (bins - 1)}): not the "
                         f"16 kHz CNN14 (window 512, 257 bins). The audioldm_eval protocol scores 16 kHz audio with "
                         f"{CNN14_16K_FILE}; the 32 kHz Cnn14_mAP=0.431.pth does not fit")
    model.load_state_dict(state)
    return model.to(device)


@torch.no_grad()
def cnn14_outputs(model: torch.nn.Module, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """CNN14's 2048-d embeddings ``(n, 2048)`` and 527 logits ``(n, 527)`` of 16 kHz clips (audioldm_eval's
    ``"2048"`` and ``"logits"``), one clip at a time (clips differ in length)."""
    device = next(model.parameters()).device
    embeddings, logits = [], []
    for clip in clips:
        out = model(torch.as_tensor(np.asarray(clip, dtype=np.float32))[None].to(device))
        embeddings.append(out["embedding"][0])  # relu(fc1(x)); dropout is off in eval
        logits.append(model.fc_audioset(out["embedding"])[0])
    return torch.stack(embeddings).float().cpu().numpy(), torch.stack(logits).float().cpu().numpy()


# ---------------------------------------------------------------- audio
def prepare(clip: np.ndarray, sampling_rate: int) -> np.ndarray:
    """One mono clip as audioldm_eval feeds both models: minus its mean, at 16 kHz, padded with zeros to 2 s."""
    from .evaluator import resample

    clip = np.asarray(clip, dtype=np.float32)
    clip = resample([clip - clip.mean()], sampling_rate, SAMPLING_RATE)[0]
    if len(clip) < MIN_SAMPLES:
        clip = np.pad(clip, (0, MIN_SAMPLES - len(clip)))
    return clip.astype(np.float32)
