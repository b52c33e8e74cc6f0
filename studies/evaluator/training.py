"""Train the offline evaluator on the MiniLDM 2 corpus: ``python -m studies.evaluator.training --corpus runs/corpus``.

A transformers ``ClapModel`` at a small width (HTSAT audio encoder on 64-bin log-mels at 16 kHz and 10 ms hops,
the real CLAP's frame geometry; a 2-layer RoBERTa text encoder over bytes) trained with CLAP's symmetric contrastive
loss on (crop, caption) pairs of the corpus' train sources, plus a linear classifier of the corpus' labels on the
audio embedding (for KL). Crops are 10 s and 2.56 s (repeated to fill the window, as CLAP's feature extractor does)
from random offsets; every use of a crop draws a fresh wording of its caption. Seeded; writes only to a new folder.
"""

from __future__ import annotations

import argparse
import ast
import csv
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from litefocus.files import write_json
from minildm.corpus import SAMPLING_RATE, Source, caption

from analysis.evaluator import LABEL_HEAD, LabelHead

FEATURES = dict(feature_size=64, sampling_rate=SAMPLING_RATE, hop_length=160, max_length_s=10, fft_window_size=400,
                frequency_min=0, frequency_max=8000, truncation="rand_trunc", padding="repeatpad")
"""CLAP's feature extractor at 16 kHz: 10 ms hops and 1001 frames per 10 s window, as the real CLAP at 48 kHz."""
AUDIO = dict(spec_size=256, num_mel_bins=64, window_size=8, patch_size=4, patch_stride=(4, 4), depths=(1, 1, 1, 1),
             num_attention_heads=(1, 2, 4, 8), patch_embeds_hidden_size=32, hidden_size=256, projection_dim=64,
             hidden_dropout_prob=0.0)
TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=130, projection_dim=64, hidden_dropout_prob=0.0)
CROP_SECONDS = (10.0, 2.56)


def build(seed: int = 0):
    """An untrained small ``ClapModel`` and its ``ClapProcessor`` (byte-level tokenizer, built in memory)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    from litefocus.models import byte_level_tokenizer

    tokenizer = byte_level_tokenizer(max_length=128)
    config = ClapConfig(text_config=dict(TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
                        audio_config=AUDIO, projection_dim=64)
    torch.manual_seed(seed)
    return ClapModel(config), ClapProcessor(feature_extractor=ClapFeatureExtractor(**FEATURES), tokenizer=tokenizer)


def read_sources(corpus: Path, split: str) -> list[Source]:
    """The ``split`` sources of ``sources.csv`` as :class:`Source` (their caption ingredients parsed back)."""
    with open(corpus / "sources.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    if not rows:
        raise ValueError(f"no {split} sources in {corpus}/sources.csv")
    return [Source(id=r["id"], split=r["split"], category=r["category"], label=r["label"],
                   seconds=float(r["seconds"]), seed=int(r["seed"]), package=r["package"], origin=r["origin"],
                   words=ast.literal_eval(r["words"])) for r in rows]


def crop_pool(corpus: Path, sources: list[Source], processor, per_source: int, seed: int) -> tuple[torch.Tensor, list]:
    """``per_source`` crops of each length in :data:`CROP_SECONDS` per source, from seeded random offsets, as CLAP
    input features ``(n, 1, 1001, 64)`` (float16) and the source of each."""
    import soundfile

    rng = np.random.default_rng(seed)
    features, owners = [], []
    for source in tqdm(sources, desc="crops", unit="source"):
        audio = soundfile.read(corpus / "sources" / f"{source.id}.wav", dtype="float32")[0]
        crops = []
        for seconds in CROP_SECONDS:
            n = int(seconds * SAMPLING_RATE)
            for _ in range(per_source):
                start = int(rng.integers(0, max(1, len(audio) - n)))
                crops.append(audio[start: start + n])
        out = processor.feature_extractor(crops, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        features.append(out["input_features"].half())
        owners += [source] * len(crops)
    return torch.cat(features), owners


def shuffle_time(features: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """CLAP input features ``(n, 1, frames, mels)`` with each clip's frames cut into segments of 5 to 100 frames
    (50 ms to 1 s, drawn per clip) put in a random order: the same sounds, not in their order."""
    out = features.clone()
    frames = features.shape[2]
    for i in range(len(features)):
        size = int(rng.choice([5, 10, 20, 50, 100]))
        count = frames // size
        order = torch.from_numpy(rng.permutation(count))
        out[i, :, : count * size] = features[i, :, : count * size].reshape(1, count, size, -1)[:, order].reshape(
            1, count * size, -1)
    return out


def add_temporal_profile(path: Path, corpus: Path, clips: int = 1000, seed: int = 0) -> dict:
    """Fit the evaluator's temporal profile (``analysis.evaluator.fit_temporal_profile``) on ``clips`` train clips
    of 2.56 s drawn at random from the corpus, and write it beside the evaluator at ``path`` (its FAD and KAD then
    see the order of sounds in time)."""
    from minildm.corpus import read_clips

    from analysis.evaluator import TEMPORAL_PROFILE, Evaluator, fit_temporal_profile

    audio, _ = read_clips(corpus, "train", 2.56)
    chosen = np.sort(np.random.default_rng(seed).choice(len(audio), min(clips, len(audio)), replace=False))
    clap_audio = Evaluator.offline(path).clap_audio(list(audio[chosen]))
    fitted = fit_temporal_profile(list(audio[chosen]), clap_audio, SAMPLING_RATE)
    write_json(path / TEMPORAL_PROFILE, fitted)
    return fitted


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments; those of a training run checked (an existing ``--out`` is refused)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--out", type=Path, default=Path("runs/evaluator/model"), help="a new folder")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--crops", type=int, default=4, help="crops of each length per train source")
    parser.add_argument("--minutes", type=float, default=30.0, help="stop training after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shuffled-negatives", type=float, default=0.0,
                        help="share of each batch also given time-shuffled, as negatives of every caption (0: none)")
    parser.add_argument("--add-temporal-profile", type=Path, default=None, metavar="EVALUATOR",
                        help="instead of training: fit the temporal profile on train clips and write it into this "
                             "trained evaluator's folder")
    args = parser.parse_args(argv)
    if args.add_temporal_profile is not None:
        return args
    if not 0 <= args.shuffled_negatives <= 1:
        parser.error(f"--shuffled-negatives must lie in [0, 1]; got {args.shuffled_negatives}")
    if not (args.corpus / "sources.csv").is_file():
        parser.error(f"--corpus {args.corpus}: no sources.csv there; build the corpus with `make corpus`")
    if args.out.exists():
        parser.error(f"--out {args.out} exists: give a new folder (nothing there is replaced)")
    if min(args.steps, args.batch, args.crops) < 1 or not args.lr > 0 or not args.minutes > 0:
        parser.error("--steps, --batch and --crops must be at least 1, --lr and --minutes positive")
    return args


def batch_losses(model, head, processor, features, owners, labels, index, rng, shuffled_negatives: float):
    """``(contrastive, classification)`` losses of one batch of crops ``index``: CLAP's symmetric contrastive loss
    (crops of one source are not each other's negatives; with ``shuffled_negatives``, time-shuffled copies of that
    share of the crops are negatives of every caption) and the label head's cross-entropy."""
    texts = [caption(owners[i], rng) for i in index]
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                input_features=features[index].float())
    # pairs of crops of one source are not negatives of each other: their captions may say the same
    same = torch.tensor([[owners[i].id == owners[j].id for j in index] for i in index])
    logits = out.logits_per_audio.masked_fill(same & ~torch.eye(len(index), dtype=torch.bool), -1e4)
    target = torch.arange(len(index))
    if shuffled_negatives:  # time-shuffled copies of some crops: negatives of every caption
        count = max(1, int(shuffled_negatives * len(index)))
        shuffled = shuffle_time(features[index[:count]].float(), rng)
        negatives = model.get_audio_features(input_features=shuffled).pooler_output
        extra = out.text_embeds @ negatives.T * model.logit_scale_a.exp()
        logits_text = torch.cat([logits.T, extra], dim=1)
    else:
        logits_text = logits.T
    contrastive = (torch.nn.functional.cross_entropy(logits, target)
                   + torch.nn.functional.cross_entropy(logits_text, target)) / 2
    return contrastive, torch.nn.functional.cross_entropy(head(out.audio_embeds), labels[index])


def train(args, model, head, processor, features, owners, labels) -> list[tuple]:
    """The training loop (AdamW, 50 warm-up steps then cosine); the history ``(step, seconds, contrastive, label)``."""
    parameters = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0))))
    rng = np.random.default_rng(args.seed)
    model.train()
    history, start = [], time.perf_counter()
    for step in (progress := tqdm(range(args.steps), desc="training", unit="step")):
        index = rng.choice(len(owners), args.batch, replace=False)
        contrastive, classification = batch_losses(model, head, processor, features, owners, labels, index, rng,
                                                   args.shuffled_negatives)
        loss = contrastive + classification
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        history.append((step + 1, time.perf_counter() - start, contrastive.item(), classification.item()))
        progress.set_postfix(contrastive=f"{np.mean([h[2] for h in history[-20:]]):.3f}",
                             labels=f"{np.mean([h[3] for h in history[-20:]]):.3f}")
        if time.perf_counter() - start > args.minutes * 60:
            break
    return history


def save_evaluator(args, model, processor, head, classes, history, owners, sources) -> None:
    """The evaluator's folder, written whole or not at all: CLAP, its processor, the label head, the classes, the
    training log and settings."""
    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}.partial-"))
    try:
        model.eval().save_pretrained(tmp)
        processor.save_pretrained(tmp)
        save_file(head.state_dict(), tmp / LABEL_HEAD)
        write_json(tmp / "classes.json", classes)
        with open(tmp / "training_log.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "train_seconds", "contrastive_loss", "label_loss"])
            writer.writerows(history)
        write_json(tmp / "training.json", dict(vars(args), corpus=str(args.corpus), out=str(args.out),
                                                steps_done=len(history), train_minutes=round(history[-1][1] / 60, 1),
                                                crops_in_pool=len(owners), sources=len(sources)))
        tmp.rename(args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Train (or, with --add-temporal-profile, only fit the profile), then save."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    if args.add_temporal_profile is not None:
        fitted = add_temporal_profile(args.add_temporal_profile, args.corpus, seed=args.seed)
        print(f"wrote the temporal profile (weight {fitted['weight']:.4f}, {fitted['clips']} clips) into "
              f"{args.add_temporal_profile}")
        return
    model, processor = build(args.seed)
    sources = read_sources(args.corpus, "train")
    classes = sorted({s.label for s in sources})
    features, owners = crop_pool(args.corpus, sources, processor, args.crops, args.seed)
    labels = torch.tensor([classes.index(s.label) for s in owners])
    head = LabelHead(model.config.projection_dim, len(classes))
    history = train(args, model, head, processor, features, owners, labels)
    save_evaluator(args, model, processor, head, classes, history, owners, sources)
    print(f"saved {args.out}: {len(history)} steps in {history[-1][1] / 60:.1f} min")


if __name__ == "__main__":
    main()
