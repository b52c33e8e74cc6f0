"""The cache of a sweep's embeddings and features: ``OUT/embeddings/CACHE/``, one ``ID.npz`` per job and one
``reference-KEY.npz`` per reference folder, computed once and read again by every later evaluation. ``CACHE`` names
what computed them: an evaluator (its name and a hash of its weights, :func:`evaluator_id`) or a field protocol (its
crop and a hash of its models' weights, :func:`protocol_id`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from litefocus.files import write_atomic

from . import protocols


def evaluator_id(evaluator) -> str:
    """A folder name for one evaluator's cached embeddings: its name and 12 hex digits of the hash of its CLAP
    weights and its other files (``Evaluator.identity``: a refitted profile or head gets a new folder)."""
    from litefocus.models import weights_fingerprint

    slug = "".join(ch if ch.isalnum() else "-" for ch in evaluator.name).strip("-")[:40]
    digest = hashlib.sha256(f"{weights_fingerprint(evaluator.clap)}:{getattr(evaluator, 'identity', '')}".encode())
    return f"{slug}-{digest.hexdigest()[:12]}"


def cached_jobs(out: Path, cache: str, rows: pd.DataFrame, compute, batch: int, desc: str,
                progress: bool = True) -> dict:
    """``{job id: arrays}`` from ``OUT/embeddings/CACHE/ID.npz``, computing only the jobs not yet cached, ``batch`` at
    a time: ``compute(records)`` gives one dict of arrays per job record (its ``id``, ``audio``, ``caption``). The
    one cache routine of every protocol."""
    from tqdm.auto import tqdm

    folder = Path(out) / "embeddings" / cache
    folder.mkdir(parents=True, exist_ok=True)
    missing = [r for r in rows.to_dict("records") if not (folder / f"{r['id']}.npz").is_file()]
    for start in tqdm(range(0, len(missing), batch), desc=desc, disable=not progress or not missing):
        chunk = missing[start: start + batch]
        for r, arrays in zip(chunk, compute(chunk)):
            write_atomic(folder / f"{r['id']}.npz", lambda tmp, a=arrays: _save_npz(tmp, a))
    return {r: dict(np.load(folder / f"{r}.npz")) for r in rows["id"]}


def cached_reference(out: Path, cache: str, folder: Path, compute) -> tuple[list[str], dict]:
    """Stems and arrays of a reference folder, ``compute(folder)`` -> ``(stems, arrays)`` cached under the sweep in
    ``OUT/embeddings/CACHE/`` by the files' names, sizes and modification times."""
    files = protocols.audio_files(folder)
    stamp = json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    key = hashlib.sha256(f"{folder.resolve()}\n{stamp}".encode()).hexdigest()[:16]
    path = Path(out) / "embeddings" / cache / f"reference-{key}.npz"
    if not path.is_file():
        names, arrays = compute(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: _save_npz(tmp, arrays | dict(names=np.array(names))))
    data = dict(np.load(path))
    return [str(n) for n in data.pop("names")], data


def embed_jobs(out: Path, rows: pd.DataFrame, evaluator, batch: int = 16, progress: bool = True) -> dict:
    """``{job id: {"audio", "clap_audio", "probabilities", "text"}}``, embedding only the jobs not yet cached."""
    from .evaluator import check_audio

    def embed(chunk: list[dict]) -> list[dict]:
        read = [protocols.read_audio(Path(out) / r["audio"]) for r in chunk]
        rates = {rate for _, rate in read}
        if len(rates) != 1:
            raise ValueError(f"jobs of one sweep at several sampling rates: {sorted(rates)}")
        for r, (audio, rate) in zip(chunk, read):  # an error names the job, not its place in the chunk
            check_audio([audio], rate, f"job {r['id']} ({r['audio']})")
        embedded = evaluator.embed([a for a, _ in read], rates.pop(), [r["caption"] for r in chunk])
        return [dict(audio=embedded.audio[i], clap_audio=embedded.clap_audio[i],
                     probabilities=embedded.probabilities[i], text=embedded.text[i]) for i in range(len(chunk))]

    return cached_jobs(out, evaluator_id(evaluator), rows, embed, batch, "embedding jobs", progress)


def _save_npz(path: str, arrays: dict) -> None:
    with open(path, "wb") as f:  # np.savez on a name would append .npz
        np.savez(f, **arrays)


def embed_reference(out: Path, folder: Path, evaluator) -> tuple[list[str], dict]:
    """Stems and embeddings (``audio``, ``clap_audio``, ``probabilities``) of a reference folder, cached under the
    sweep (:func:`cached_reference`)."""
    def embed(folder: Path) -> tuple[list[str], dict]:
        names, clips, rate = protocols.read_folder(folder)
        embedded = evaluator.embed(clips, rate)
        return names, dict(audio=embedded.audio, clap_audio=embedded.clap_audio,
                           probabilities=embedded.probabilities)

    return cached_reference(out, evaluator_id(evaluator), folder, embed)


def protocol_id(protocol, models) -> str:
    """A folder name for one field protocol's cached features: its name, crop and seed, and 12 hex digits of the
    hash of both models' weights."""
    from litefocus.models import weights_fingerprint

    digest = hashlib.sha256(f"{weights_fingerprint(models.vggish)}:{weights_fingerprint(models.cnn14)}".encode())
    crop = "" if protocol.crop_seconds is None else f"-crop{protocol.crop_seconds:g}s-seed{protocol.seed}"
    return f"{protocol.name}{crop}-{digest.hexdigest()[:12]}"


def _features_npz(features) -> dict:
    return dict(frames=np.concatenate(features.frames), frame_counts=np.array([len(f) for f in features.frames]),
                embeddings=features.embeddings, logits=features.logits)


def features_of(data: dict, index=None):
    from .protocols import FieldFeatures

    frames = np.split(data["frames"], np.cumsum(data["frame_counts"])[:-1])
    index = range(len(frames)) if index is None else index
    return FieldFeatures([frames[i] for i in index], data["embeddings"][index], data["logits"][index])


def field_job_features(out: Path, rows: pd.DataFrame, protocol, models, progress: bool = True) -> dict:
    """``{job id: features of its clip}`` under a field protocol (one-clip :class:`analysis.protocols.FieldFeatures`
    arrays), computing only the jobs not yet cached in ``OUT/embeddings/PROTOCOL-ID/``; a clip's crop is seeded by its
    file name."""
    from .protocols import check_scorable_clips, field_features

    def features(chunk: list[dict]) -> list[dict]:
        (r,) = chunk
        clip, rate = protocols.read_audio(Path(out) / r["audio"], channel=0)
        name = Path(r["audio"]).name
        check_scorable_clips([clip], [rate], [f"job {r['id']} ({name})"], "generated", protocol)
        return [_features_npz(field_features([clip], [rate], [name], protocol, models))]

    return cached_jobs(out, protocol_id(protocol, models), rows, features, 1, f"{protocol.name} features", progress)


def field_reference_features(out: Path, folder: Path, protocol, models) -> tuple[list[str], dict]:
    """Stems and features (the arrays of :func:`_features_npz`) of a reference folder under a field protocol,
    cached under the sweep (:func:`cached_reference`)."""
    from .protocols import check_scorable_clips, field_features, read_clips

    def features(folder: Path) -> tuple[list[str], dict]:
        names, clips, rates = read_clips(folder)
        check_scorable_clips(clips, rates, names, "reference", protocol)
        return [Path(n).stem for n in names], _features_npz(field_features(clips, rates, names, protocol, models))

    return cached_reference(out, protocol_id(protocol, models), folder, features)
