"""Models to run LiteFocus on: tiny offline pipelines for tests, the full-size AudioLDM2 UNet for speed, real loading.

The tiny pipelines keep AudioLDM2's latent geometry (64 mel bins, 4x downsampled: latents ``(B, 8, T, 16)``) and
module names (``down_blocks.1``, ``up_blocks.2``, ...) with small widths and random weights: right for testing the
surgery and the shapes, meaningless for attention patterns.
"""

from __future__ import annotations

import os
import types
import warnings
from pathlib import Path

import torch

AUDIOLDM2_UNET_CONFIG = dict(
    # cvssp/audioldm2 unet/config.json (346.9M parameters)
    sample_size=256,
    in_channels=8,
    out_channels=8,
    block_out_channels=(128, 256, 384, 640),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=[[None, 768, 1024]] * 4,
    attention_head_dim=8,  # diffusers' legacy name: 8 heads at every level
    transformer_layers_per_block=1,
)
"""Architecture of the ``cvssp/audioldm2`` denoiser; text conditioning is 8 GPT-2 tokens (768) and T5 tokens (1024)."""

_MEL_BINS = 64
_SAMPLING_RATE = 16000
AUDIOLDM2_TRAINING_SECONDS = 10.24
"""The clip length AudioLDM2 was trained on (s): the paper's 1x."""
_HOP = 160  # 10 ms mel frames at 16 kHz: 10.24 s -> 1024 frames -> latent T = 256


def audioldm2_unet(dtype: torch.dtype = torch.float32, seed: int = 0):
    """The full-size ``cvssp/audioldm2`` UNet with random weights, for speed work (timing does not depend on weights)."""
    from diffusers import AudioLDM2UNet2DConditionModel

    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(**AUDIOLDM2_UNET_CONFIG).eval()
    return unet if dtype == torch.float32 else unet.to(dtype)


def weights_fingerprint(model) -> str:
    """sha256 (hex) of every parameter and buffer of a module, or of every module component of a pipeline, by name:
    the identity of the weights, whatever file or path they came from (for cache keys and job ids)."""
    import hashlib

    modules = {"": model} if isinstance(model, torch.nn.Module) else {
        name: c for name, c in getattr(model, "components", {}).items() if isinstance(c, torch.nn.Module)}
    if not modules:
        raise TypeError(f"expected a torch module or a diffusers pipeline; got {type(model).__name__}")
    digest = hashlib.sha256()
    for component, module in sorted(modules.items()):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{component}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_pipeline(name_or_path: str | os.PathLike = "cvssp/audioldm2", **kwargs):
    """``from_pretrained`` with a clear message when the weights cannot be had offline.

    ``name_or_path``: a hub id (``cvssp/audioldm2``, ``cvssp/audioldm2-large``, ``cvssp/audioldm-s-full-v2``,
    ``ucsd-reach/musicldm``) or a local folder written by ``save_pretrained`` (a ``str`` or a ``Path``). A folder's
    ``model_index.json`` names its pipeline class: one of diffusers', or one defined in the package its components
    come from (for ``data/minildm``: ``minildm.MiniLDMPipeline``), which is then imported.
    """
    from diffusers import DiffusionPipeline

    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"name_or_path must be a hub id like cvssp/audioldm2 or a folder written by save_pretrained; "
                         f"got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _pipeline_class(path).from_pretrained(path, **kwargs)
    if path.exists() or isinstance(name_or_path, os.PathLike) or str(name_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(f"{name_or_path} is not a folder with a model_index.json (save_pretrained's layout); "
                                "pass such a folder or a hub id like cvssp/audioldm2")
    try:
        return DiffusionPipeline.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load {name_or_path!r}: no local folder of that name, and the hub is unreachable or the "
            "weights are not in the cache. On a machine with internet, run once "
            f"`DiffusionPipeline.from_pretrained({str(name_or_path)!r}).save_pretrained('weights/{path.name}')` "
            "and pass that folder here; or set HF_HOME to a cache that holds the weights. "
            "Offline, litefocus.models.tiny_audioldm2_pipeline() builds a random-weight model for trying the code."
        ) from error


def _pipeline_class(folder: Path):
    """The pipeline class a ``save_pretrained`` folder names: diffusers' own, or its components' package's."""
    import importlib

    import diffusers

    from .files import read_json

    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{folder} has no model_index.json: it is not a pipeline saved by save_pretrained")
    index = read_json(index_file)
    class_name = index.get("_class_name")
    if hasattr(diffusers, class_name or ""):
        return getattr(diffusers, class_name)
    packages = {entry[0].split(".")[0] for entry in index.values() if isinstance(entry, list) and entry and entry[0]}
    for package in sorted(packages - {"diffusers", "transformers"}):
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        if hasattr(module, class_name or ""):
            return getattr(module, class_name)
    raise ValueError(f"{index_file} names the pipeline class {class_name!r}, found neither in diffusers nor in the "
                     f"packages its components come from ({', '.join(sorted(packages)) or 'none'}); install the "
                     "package that defines it")


def tiny_audioldm2_pipeline(seed: int = 0):
    """An ``AudioLDM2Pipeline`` with random weights built from configs in code, offline, in about a second.

    UNet: AudioLDM2's four levels and block types, widths (16, 32, 32, 32), 2 heads, layers_per_block 2, so the
    self-attention modules carry the real names (8 in ``down_blocks.1``, 12 in ``up_blocks.2``).
    """
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import (
        ClapConfig, ClapFeatureExtractor, ClapModel, GPT2Config, GPT2LMHeadModel, T5Config, T5EncoderModel,
    )

    torch.manual_seed(seed)
    clap_dim, t5_dim, gpt2_dim = 16, 32, 16
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=8,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=2,
        norm_num_groups=8,
        down_block_types=AUDIOLDM2_UNET_CONFIG["down_block_types"],
        up_block_types=AUDIOLDM2_UNET_CONFIG["up_block_types"],
        cross_attention_dim=[[None, gpt2_dim, t5_dim]] * 4,
        attention_head_dim=2,
    )
    clap_tokenizer = byte_level_tokenizer()
    text_encoder = ClapModel(
        ClapConfig(
            text_config=dict(
                vocab_size=clap_tokenizer.vocab_size + 4, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                num_hidden_layers=1, bos_token_id=0, pad_token_id=1, eos_token_id=2, max_position_embeddings=80,
            ),
            audio_config=dict(
                spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=16, depths=[1, 1],
                num_attention_heads=[2, 2], hidden_size=32, patch_size=4, patch_stride=4,
                patch_embeds_hidden_size=16,
            ),
            projection_dim=clap_dim,
        )
    )
    t5_tokenizer = _unigram_tokenizer()
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=t5_tokenizer.vocab_size, d_model=t5_dim, d_ff=32, d_kv=8, num_heads=2, num_layers=1)
    )
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=gpt2_dim, n_head=2, n_layer=1, vocab_size=64, n_positions=128, bos_token_id=0, eos_token_id=0))
    language_model.config.max_new_tokens = 4
    pipe = _inference_mode(AudioLDM2Pipeline(
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        projection_model=AudioLDM2ProjectionModel(
            text_encoder_dim=clap_dim, text_encoder_1_dim=t5_dim, langauge_model_dim=gpt2_dim
        ),
        language_model=language_model,
        tokenizer=clap_tokenizer,
        tokenizer_2=t5_tokenizer,
        feature_extractor=ClapFeatureExtractor(),
        unet=unet,
        scheduler=_scheduler(),
        vocoder=_tiny_vocoder(),
    ))
    pipe.score_waveforms = types.MethodType(_unranked_waveforms, pipe)
    return pipe


def _unranked_waveforms(pipe, text, audio, num_waveforms_per_prompt, device, dtype):
    """The tiny pipeline's ``num_waveforms_per_prompt > 1``: its random CLAP has no audio front-end that fits 10 s
    windows, and a ranking by random weights would mean nothing, so the waveforms come back in the order they were
    generated (what diffusers itself does without librosa), with a warning."""
    warnings.warn("the tiny test pipeline does not rank its waveforms by CLAP (random weights): they are returned in "
                  "the order they were generated", stacklevel=3)
    return audio


def tiny_audioldm_pipeline(seed: int = 0):
    """A tiny AudioLDM (v1) pipeline with random weights, offline.

    AudioLDM (like MusicLDM, whose UNet is built the same way) conditions by class label and calls the UNet without
    ``encoder_hidden_states``: its ``attn2`` modules attend over their own tokens, so LiteFocus patches them as
    self-attention.
    """
    from diffusers import AudioLDMPipeline, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    torch.manual_seed(seed)
    widths = (16, 32, 32, 32)
    clap_dim = 16
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=8,
        block_out_channels=widths,
        layers_per_block=2,
        norm_num_groups=8,
        down_block_types=AUDIOLDM2_UNET_CONFIG["down_block_types"],
        up_block_types=AUDIOLDM2_UNET_CONFIG["up_block_types"],
        cross_attention_dim=widths,
        attention_head_dim=2,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=clap_dim,
        class_embeddings_concat=True,
    )
    tokenizer = byte_level_tokenizer()
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=tokenizer.vocab_size + 4, hidden_size=16, intermediate_size=32, num_attention_heads=2,
            num_hidden_layers=1, bos_token_id=0, pad_token_id=1, eos_token_id=2, projection_dim=clap_dim,
            max_position_embeddings=80,
        )
    )
    return _inference_mode(AudioLDMPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_scheduler(),
        vocoder=_tiny_vocoder(),
    ))


def _inference_mode(pipe):
    """Modules built from configs start in training mode (dropout on); pipelines from from_pretrained do not."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=8,
        block_out_channels=(8, 16, 16),  # three levels: 4x downsampling, 64 mel bins -> 16 latent bins
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8,
        layers_per_block=1,
    )


def _tiny_vocoder():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    return SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=_MEL_BINS,
            sampling_rate=_SAMPLING_RATE,
            upsample_initial_channel=16,
            upsample_rates=[4, 4, 10],  # product = hop of 160 samples
            upsample_kernel_sizes=[8, 8, 20],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
        )
    )


def _scheduler():
    from diffusers import DDIMScheduler

    # cvssp/audioldm2 scheduler settings
    return DDIMScheduler(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def byte_level_tokenizer(max_length: int = 77):
    """A RoBERTa tokenizer over single bytes (no merges), built in memory: any text, no download."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(ByteLevel.alphabet()))}
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _unigram_tokenizer():
    """A T5 (unigram) tokenizer over lowercase letters, digits and word starts, built in memory."""
    from transformers import T5Tokenizer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + c, -3.0) for c in letters] + [(c, -4.0) for c in letters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=77)
