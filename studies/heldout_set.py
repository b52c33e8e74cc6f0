"""The embedded model's evaluation set: held-out captions in AudioCaps' CSV layout, and their reference audio at each
length through the same codec round trip as generated audio (``python -m studies.heldout_set``).

One caption per held-out source of the MiniLDM 2 corpus that has a 20.48 s clip (the sources MiniLDM never saw), in
a seeded random order (so that ``--first N`` of a sweep is a random sample): ``audiocap_id`` numbers them,
``youtube_id`` is the source's name (it names the reference clips, which pairs them for KL), the caption is that
clip's. The reference of one length is the first ``seconds`` of the clip, turned into
MiniLDM's log-mel and back to audio by the same Griffin-Lim (same iterations and seed) that renders generated clips,
so that FAD and KAD measure generation, not the vocoder. Written to ``OUT/captions.csv`` and
``OUT/reference/<seconds>s/<source>.flac``; existing files are kept (a rerun completes an interrupted one).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import torch

from litefocus.files import write_atomic, write_json

from analysis.sweep_evaluation import length_folder

SAMPLING_RATE = 16000


def heldout_rows(corpus: Path, seconds: float = 20.48) -> list[dict]:
    """The held-out clips of ``seconds`` in the corpus' ``clips.csv``, one per source, in file order."""
    path = Path(corpus) / "clips.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the corpus with `make corpus`")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "heldout" and abs(float(r["seconds"]) - seconds) < 1e-6]
    if not rows:
        raise ValueError(f"{path} has no held-out clips of {seconds} s")
    return rows


def round_trip(audio: np.ndarray, codec, griffin_lim_iterations: int = 32) -> np.ndarray:
    """``audio`` (samples,) at 16 kHz through the codec's log-mel and Griffin-Lim (seed 0, as the pipeline renders)."""
    mel = codec.mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None])
    return codec.to_audio(mel, n_iter=griffin_lim_iterations)[0, : len(audio)]


def write_heldout_set(corpus: Path, out: Path, seconds_list: list[float], codec, limit: int | None = None) -> int:
    """Write the captions and references (see the module docstring); return the number of captions."""
    import soundfile

    rows = heldout_rows(corpus)
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))][:limit]  # any prefix: a random sample
    longest = max(seconds_list)
    if longest > 20.48 + 1e-9:
        raise ValueError(f"--seconds {longest:g}: the held-out clips are 20.48 s long")
    captions = io.StringIO()
    writer = csv.writer(captions, lineterminator="\n")
    writer.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
    for number, row in enumerate(rows, 1):
        writer.writerow([number, row["source"], row["offset"], row["caption"]])
    write_atomic(out / "captions.csv", lambda tmp: Path(tmp).write_text(captions.getvalue()))
    for row in rows:
        source, rate = soundfile.read(Path(corpus) / "sources" / f"{row['source']}.wav", dtype="float32")
        start = int(round(float(row["offset"]) * rate))
        for seconds in seconds_list:
            path = out / "reference" / length_folder(seconds) / f"{row['source']}.flac"
            if path.is_file():
                continue
            clip = source[start: start + int(round(seconds * rate))]
            audio = round_trip(clip, codec)
            write_atomic(path, lambda tmp, a=audio: soundfile.write(tmp, a, rate, format="FLAC", subtype="PCM_24"))
    write_json(out / "heldout_set.json", dict(corpus=str(corpus), captions=len(rows), seconds=seconds_list,
                                             griffin_lim_iterations=32, griffin_lim_seed=0))
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    from minildm.pipeline import DEFAULT_PATH, load_minildm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="the MiniLDM 2 corpus (make corpus)")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="MiniLDM weights (their codec)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.56, 5.12, 10.24, 20.48])
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out sources")
    parser.add_argument("--out", type=Path, default=Path("runs/heldout"))
    args = parser.parse_args(argv)
    if min(args.seconds) <= 0:
        parser.error("--seconds must be positive")
    torch.set_num_threads(2)
    count = write_heldout_set(args.corpus, args.out, args.seconds, load_minildm(args.path).codec, args.limit)
    print(f"wrote {count} captions to {args.out / 'captions.csv'} and their references at "
          f"{', '.join(f'{s:g}' for s in args.seconds)} s under {args.out / 'reference'}")


if __name__ == "__main__":
    main()
