"""Train MiniLDM: ``python -m minildm.train`` (seeded; resumes from its last checkpoint if interrupted).

Generates a fixed pool of captioned clips from seeds, trains the UNet and caption encoder jointly for v (or epsilon)
prediction under DDPM noising with 10 % caption dropout (for classifier-free guidance), keeps an EMA of the
weights, checkpoints atomically every few minutes, and saves the EMA pipeline with ``save_pretrained``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from litefocus.files import write_atomic
from litefocus.models import AUDIOLDM2_UNET_CONFIG

from .codec import MelCodec
from .data import make_clip, scene_vocabulary
from .pipeline import DEFAULT_PATH, MiniLDMPipeline
from .text import CaptionEncoder

SCHEDULES = ("cosine", "constant")
UNET_CONFIG = dict(
    sample_size=64,
    in_channels=16,
    out_channels=16,
    block_out_channels=(32, 64, 96, 128),
    layers_per_block=1,
    norm_num_groups=16,
    down_block_types=AUDIOLDM2_UNET_CONFIG["down_block_types"],
    up_block_types=AUDIOLDM2_UNET_CONFIG["up_block_types"],
    cross_attention_dim=[[None, 64]] * 4,  # a double self-attention transformer, then cross-attention to captions
    attention_head_dim=4,  # diffusers' legacy name: 4 heads per level
)
"""AudioLDM2's UNet layout (four levels, attention on the lower three, same module names) at a small width."""


def build(seed: int, prediction_type: str = "v_prediction", words: list[str] | None = None,
          unet_config: dict | None = None) -> MiniLDMPipeline:
    """An untrained MiniLDM. ``prediction_type``: what the UNet predicts, ``"v_prediction"`` (default) or
    ``"epsilon"``. The first MiniLDM used epsilon and could not sample from pure noise: at high noise its error
    on the near-identity map x_t -> eps is amplified ~1/sqrt(alpha_bar) (about 70x) in the x0 estimate; v keeps that
    error at about 1x. ``words``: the caption vocabulary (default: the synthetic scenes' words). ``unet_config``:
    entries that replace :data:`UNET_CONFIG`'s (widths, heads, resnets per level)."""
    from diffusers import AudioLDM2UNet2DConditionModel, DDIMScheduler

    torch.manual_seed(seed)
    return MiniLDMPipeline(
        unet=AudioLDM2UNet2DConditionModel(**{**UNET_CONFIG, **(unet_config or {})}),
        scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015,
                                beta_end=0.0195, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                prediction_type=prediction_type),
        caption_encoder=CaptionEncoder(vocabulary=scene_vocabulary() if words is None else words),
        codec=MelCodec(),
    )


def initialise_query_key(unet: torch.nn.Module, scale: float, tied: bool, blocks: tuple[str, ...] = ()) -> int:
    """Re-initialise the self-attentions' query and key projections of ``unet`` in place: both times ``scale``
    and, when ``tied``, the key's set equal to the query's (mimetic initialisation, Trockman & Kolter, "Mimetic
    Initialization of Self-Attention Layers", ICML 2023, in its simplest form W_k = W_q). A tied head's score
    ``|W_q x_i . W_q x_j|`` is then a similarity, so a query scores tokens like it high from the first step, where an
    untied random one has no preference. ``blocks``: module-name prefixes (``"down_blocks"``, ``"up_blocks.2"``)
    limiting which attentions change; empty, all do. Returns how many attentions changed."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    from diffusers.models.attention_processor import Attention

    names = [n for n, _ in unet.named_children()] + [f"{n}.{i}" for n, m in unet.named_children()
                                                     if isinstance(m, torch.nn.ModuleList) for i in range(len(m))]
    unknown = [b for b in blocks if b not in names]
    if unknown:
        raise ValueError(f"blocks {unknown} are not blocks of this UNet; valid: {sorted(names)}")
    changed = 0
    with torch.no_grad():
        for name, module in unet.named_modules():
            chosen = not blocks or any(name.startswith(b + ".") for b in blocks)
            if isinstance(module, Attention) and not module.is_cross_attention and chosen:
                module.to_q.weight.mul_(scale)
                if tied:
                    module.to_k.weight.copy_(module.to_q.weight)
                else:
                    module.to_k.weight.mul_(scale)
                changed += 1
    return changed


def make_dataset(clips: int, seconds: float, codec: MelCodec, path: Path) -> tuple[torch.Tensor, list[str]]:
    """Log-mels ``(clips, frames, 64)`` (float16) and captions of seeds ``0 .. clips-1``, cached at ``path`` (used
    again only for the same clip count, length and codec settings)."""
    settings = dict(clips=clips, seconds=seconds, codec=dict(codec.config))
    if path.is_file():
        cached = torch.load(path)
        if cached.get("settings") == settings:
            return cached["mels"], cached["captions"]
    mels, captions = [], []
    for start in tqdm(range(0, clips, 256), desc="synthesizing clips", unit="x256"):
        batch = [make_clip(seed, seconds) for seed in range(start, min(start + 256, clips))]
        mels.append(codec.mel(torch.from_numpy(np.stack([c.audio for c in batch]))).half())
        captions += [c.caption for c in batch]
    data = {"mels": torch.cat(mels), "captions": captions, "settings": settings}
    _save_atomic(data, path)
    return data["mels"], captions


def corpus_dataset(corpus: Path, seconds: float, codec: MelCodec, path: Path) -> tuple[torch.Tensor, list[str]]:
    """Log-mels ``(clips, frames, 64)`` (float16) and captions of the corpus' train clips, cached at ``path`` (used
    again only for the same corpus manifest and codec settings)."""
    from .corpus import read_clips

    settings = dict(corpus=(corpus / "manifest.json").read_text(), seconds=seconds, codec=dict(codec.config))
    if path.is_file():
        cached = torch.load(path)
        if cached.get("settings") == settings:
            return cached["mels"], cached["captions"]
    audio, rows = read_clips(corpus, "train", seconds)
    mels = torch.cat([codec.mel(torch.from_numpy(audio[i: i + 256])).half()
                      for i in tqdm(range(0, len(audio), 256), desc="log-mels", unit="x256")])
    data = {"mels": mels, "captions": [r["caption"] for r in rows], "settings": settings}
    _save_atomic(data, path)
    return data["mels"], data["captions"]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments, checked (an existing ``--out`` is refused: training never replaces a folder)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/minildm/model"),
                        help="a new folder for the trained pipeline (never an existing one: to replace the shipped "
                             f"{DEFAULT_PATH.relative_to(DEFAULT_PATH.parents[1])}, check the new model, then move it)")
    parser.add_argument("--work", type=Path, default=Path("runs/minildm"), help="dataset cache and checkpoints")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--minutes", type=float, default=120.0, help="stop (and save) after this much training time")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clips", type=int, default=24000)
    parser.add_argument("--seconds", type=float, default=2.56, help="training clip length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="train on this corpus' train clips (minildm.corpus) instead of --clips synthetic scenes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--prediction-type", default="v_prediction", choices=["v_prediction", "epsilon"])
    parser.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                        help="learning rate after the 500 warm-up steps: cosine to 0 at --steps, or constant")
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"--out {args.out} exists; training never replaces or deletes a folder: give a new one")
    if min(args.steps, args.batch, args.clips) < 1 or not args.lr > 0 or not args.seconds >= 0.32 \
            or not args.weight_decay >= 0:
        parser.error("--steps, --batch and --clips must be at least 1, --lr positive, --weight-decay at least 0 and "
                     "--seconds at least 0.32")
    if args.corpus is not None and not (args.corpus / "manifest.json").is_file():
        parser.error(f"--corpus {args.corpus}: no manifest.json there; build one with `make corpus`")
    return args


def training_data(args) -> tuple[MiniLDMPipeline, torch.Tensor, list[str]]:
    """A freshly initialised pipeline, the training log-mels ``(clips, frames, 64)`` and their captions; the codec's
    latent mean and std set from 2048 seeded clips."""
    if args.corpus is None:
        pipe = build(args.seed, args.prediction_type)
        mels, captions = make_dataset(args.clips, args.seconds, pipe.codec, args.work / "dataset.pt")
    else:
        from .corpus import caption_vocabulary

        mels, captions = corpus_dataset(args.corpus, args.seconds, MelCodec(), args.work / "dataset.pt")
        pipe = build(args.seed, args.prediction_type, caption_vocabulary(captions))
        print(f"{len(captions)} corpus clips, {len(pipe.caption_encoder.config.vocabulary)} caption words")
    set_latent_statistics(pipe.codec, mels, args.seed)
    return pipe, mels, captions


def set_latent_statistics(codec: MelCodec, mels: torch.Tensor, seed: int) -> None:
    """The codec's latent mean and std per channel, from 2048 seeded clips of ``mels`` ``(clips, frames, 64)``."""
    sample = torch.randperm(len(mels), generator=torch.Generator().manual_seed(seed))[:2048]
    latents_all = torch.nn.functional.pixel_unshuffle(mels[sample].float()[:, None], codec.config.patch)
    codec.latent_mean.copy_(latents_all.mean(dim=(0, 2, 3)))
    codec.latent_std.copy_(latents_all.std(dim=(0, 2, 3)))


class Training:
    """What a checkpoint holds: the trained modules and their EMA, the optimiser and its schedule (500 warm-up steps,
    then cosine to ``steps`` or constant: ``args.schedule``), the generator, the step, the loss history and the
    training seconds. ``args`` needs ``lr``, ``steps``, ``seed``, ``prediction_type``, ``schedule`` and
    ``weight_decay`` (:func:`parse_arguments`' names)."""

    def __init__(self, pipe: MiniLDMPipeline, args, settings: dict):
        self.trainable = torch.nn.ModuleDict({"unet": pipe.unet, "caption_encoder": pipe.caption_encoder}).train()
        self.ema = copy.deepcopy(self.trainable).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.trainable.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        steps, cosine = args.steps, args.schedule == "cosine"

        def schedule(step: int) -> float:  # linear warm-up over 500 steps, times a cosine decay to 0 at ``steps``
            decay = 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0))) if cosine else 1.0
            return min(1.0, (step + 1) / 500) * decay

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.rng = torch.Generator().manual_seed(args.seed)
        self.step, self.history, self.trained_s = 0, [], 0.0
        self.prediction_type, self.settings = args.prediction_type, settings

    def resume(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint`` when it exists; one trained with other settings is refused, naming them."""
        if not checkpoint.is_file():
            return
        state = torch.load(checkpoint, weights_only=False)
        trained_with = state.get("settings", dict(prediction_type=state.get("prediction_type", "epsilon")))
        differ = {k: (v, self.settings[k]) for k, v in trained_with.items() if self.settings.get(k) != v}
        if differ:
            raise SystemExit(f"{checkpoint} was trained with other settings ("
                             + ", ".join(f"--{k.replace('_', '-')} {old} there, {new} now"
                                         for k, (old, new) in differ.items())
                             + "): pass the same ones to resume, or another --work folder to start anew")
        self.load(state)
        print(f"resumed at step {self.step} ({self.trained_s / 60:.1f} min trained)")

    def load(self, state: dict | Path) -> None:
        """Take a checkpoint's weights, EMA, optimiser, schedule, generator and history as they are (``resume``
        checks the settings first)."""
        if not isinstance(state, dict):
            state = torch.load(state, weights_only=False)
        self.trainable.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.set_state(state["rng"])
        self.step, self.history, self.trained_s = state["step"], state["history"], state["trained_s"]

    def save(self, checkpoint: Path) -> None:
        _save_atomic(dict(model=self.trainable.state_dict(), ema=self.ema.state_dict(),
                          optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                          rng=self.rng.get_state(), step=self.step, history=self.history, trained_s=self.trained_s,
                          prediction_type=self.prediction_type, settings=self.settings), checkpoint)

    def train_step(self, pipe: MiniLDMPipeline, mels: torch.Tensor, captions: list[str], batch: int) -> float:
        """One step on ``batch`` random clips (captions dropped 10 % of the time, for classifier-free guidance);
        returns the loss."""
        alphas = pipe.scheduler.alphas_cumprod
        start, rng = time.perf_counter(), self.rng
        index = torch.randint(0, mels.shape[0], (batch,), generator=rng)
        x0 = pipe.codec.encode(mels[index].float())
        text = [captions[i] if torch.rand(1, generator=rng).item() > 0.1 else "" for i in index.tolist()]
        t = torch.randint(0, len(alphas), (batch,), generator=rng)
        noise = torch.randn(x0.shape, generator=rng)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        prediction = self.trainable["unet"](noisy, t,
                                            encoder_hidden_states=self.trainable["caption_encoder"](text)).sample
        target = noise if self.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        loss = torch.nn.functional.mse_loss(prediction, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            decay = min(0.999, (1 + self.step) / (10 + self.step))
            for e, p in zip(self.ema.parameters(), self.trainable.parameters()):
                e.lerp_(p, 1 - decay)
        self.step += 1
        self.trained_s += time.perf_counter() - start
        self.history.append((self.step, self.trained_s, loss.item()))
        return loss.item()


def save_pipeline(pipe: MiniLDMPipeline, training: Training, out: Path, recipe: dict | None = None) -> Path:
    """The pipeline with the EMA weights (UNet in fp16), ``training_log.csv`` and, where given, ``recipe.json`` (how
    it was trained), written whole into the new folder ``out`` (a time-stamped sibling if it appeared meanwhile)."""
    pipe.unet.load_state_dict(training.ema["unet"].state_dict())
    pipe.caption_encoder.load_state_dict(training.ema["caption_encoder"].state_dict())
    pipe.unet.eval()
    pipe.caption_encoder.eval()
    out = out if not out.exists() else out.with_name(f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))  # ours alone: removed if we fail
    try:
        pipe.unet.half()  # shipped in fp16 (16 MB); load_minildm casts back to fp32
        pipe.save_pretrained(tmp, safe_serialization=True)
        with open(tmp / "training_log.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "train_seconds", "loss"])
            writer.writerows(training.history[::10])
        if recipe is not None:
            (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """Arguments, data, training (resumable: a checkpoint every ``--checkpoint-minutes``), the pipeline saved."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    settings = dict(batch=args.batch, lr=args.lr, seconds=args.seconds, clips=args.clips, seed=args.seed,
                    steps=args.steps, prediction_type=args.prediction_type, schedule=args.schedule,
                    weight_decay=args.weight_decay,
                    corpus=None if args.corpus is None else str(args.corpus))
    pipe, mels, captions = training_data(args)
    training = Training(pipe, args, settings)
    checkpoint = args.work / "checkpoint.pt"
    training.resume(checkpoint)
    last_save = time.perf_counter()
    progress = tqdm(total=args.steps, initial=training.step, desc="training", unit="step")
    while training.step < args.steps and training.trained_s < args.minutes * 60:
        training.train_step(pipe, mels, captions, args.batch)
        progress.update(1)
        progress.set_postfix(loss=f"{np.mean([h[2] for h in training.history[-100:]]):.4f}")
        if time.perf_counter() - last_save > args.checkpoint_minutes * 60:
            training.save(checkpoint)
            last_save = time.perf_counter()
    progress.close()
    training.save(checkpoint)
    out = save_pipeline(pipe, training, args.out)
    print(f"saved {out} after {training.step} steps, {training.trained_s / 60:.1f} min; final loss "
          f"{np.mean([h[2] for h in training.history[-200:]]):.4f}")


def _save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file of this call's own beside ``path`` (two processes may write one cache),
    then renamed into place."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


if __name__ == "__main__":
    main()
