"""The attention evidence of a sweep's captions: :func:`analysis.measure_sparsity` once per caption and length, from
the noise of the sweep's dense job (``python -m studies.block_ablation.evidence``), gathered into one dataset.

    python -m studies.block_ablation.evidence --captions runs/heldout/captions.csv --first 24 --seconds 10.24 20.48 \\
        --out data/block_ablation/evidence.nc

The result has dims (caption, seconds, module, step, head) and the variables of
:func:`analysis.measure.sparsity_dataset`; ``analysis.block_choice`` reduces it to one row per block. Each caption and
length is written to ``OUT.parts/`` (not committed) as it finishes, so a stopped run resumes; the parts are
gathered at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
import xarray as xr
from tqdm.auto import tqdm

from litefocus.files import write_atomic
from litefocus.models import weights_fingerprint

from analysis.measure import measure_sparsity
from analysis.captions import Caption, read_captions

VARIABLES = ("same_frequency_ratio", "focus_mass", "sparse_error", "entropy", "periodicity_strength")


def settings_of(pipe, *, steps: int, every: int, summary_queries: int, seed: int) -> dict:
    """What decides a part besides its caption and length: the run's settings and the model's weights."""
    return dict(steps=steps, every=every, summary_queries=summary_queries, seed=seed,
                weights=weights_fingerprint(pipe)[:16])


def part_name(caption: Caption, seconds: float, settings: dict) -> str:
    """``<caption id>_<seconds>s_<key>.nc``: the key hashes the caption's text, the length and ``settings``, so a
    rerun with other captions, steps or weights never reuses a part that is not its own."""
    key = hashlib.sha256(json.dumps([caption.text, float(seconds), settings], sort_keys=True).encode()).hexdigest()
    return f"{caption.id}_{seconds:g}s_{key[:12]}.nc"


def measure_captions(pipe, captions: list[Caption], seconds: list[float], parts: Path, *, steps: int = 25,
                     every: int = 3, summary_queries: int = 512, seed: int = 0) -> list[Path]:
    """One ``parts/<caption id>_<seconds>s_<key>.nc`` per caption and length (:func:`part_name`; kept if present);
    their paths.

    Every ``every``-th of the ``steps`` DDIM steps is recorded (the last one always), with ``summary_queries`` drawn
    queries per module; the pipeline runs from ``seed`` as the sweep's job does, so the evidence is that of the
    dense clip the costs are measured against."""
    parts.mkdir(parents=True, exist_ok=True)
    settings = settings_of(pipe, steps=steps, every=every, summary_queries=summary_queries, seed=seed)
    recorded = sorted({*range(0, steps, every), steps - 1})
    paths, todo = [], []
    for caption in captions:
        for s in seconds:
            path = parts / part_name(caption, s, settings)
            paths.append(path)
            if not path.exists():
                todo.append((caption, s, path))
    for caption, s, path in tqdm(todo, desc="evidence"):
        ds = measure_sparsity(pipe, caption.text, s, steps, seed, steps=recorded, queries=1,
                              summary_queries=summary_queries)
        ds = ds[list(VARIABLES)].expand_dims(caption=[caption.id], seconds=[s])
        ds.attrs.update(settings=json.dumps(settings, sort_keys=True))
        write_atomic(path, lambda tmp, ds=ds: ds.to_netcdf(tmp, engine="h5netcdf"))
    return paths


def gather(paths: list[Path]) -> xr.Dataset:
    """The parts as one dataset (caption, seconds, module, step, head); ``time_bins`` (which grows with the length)
    becomes a variable (caption, seconds, module)."""
    parts = []
    for path in paths:
        part = xr.load_dataset(path, engine="h5netcdf")
        bins = part.time_bins.reset_coords(drop=True).expand_dims(caption=part.caption, seconds=part.seconds)
        parts.append(part.drop_vars("time_bins").assign(time_bins=bins))
    ds = xr.combine_by_coords(parts, coords="minimal", compat="override", combine_attrs="drop_conflicts")
    order = list(dict.fromkeys(str(c) for part in parts for c in part.caption.values))
    return ds.sel(caption=order)  # the captions' order, not the sorted one


def main(argv: list[str] | None = None) -> None:
    from minildm import load_minildm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=Path, required=True, help="AudioCaps CSV or one caption a line")
    parser.add_argument("--first", type=int, default=None, help="only the first N captions")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.24, 20.48])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--every", type=int, default=3, help="record every N-th step (and the last)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True, help="the gathered netCDF file")
    args = parser.parse_args(argv)
    if args.first is not None and args.first < 1:
        parser.error(f"--first must be >= 1; got {args.first}")
    if args.every < 1:
        parser.error(f"--every must be >= 1; got {args.every}")
    if any(s <= 0 for s in args.seconds):
        parser.error(f"--seconds must be positive; got {args.seconds}")
    captions = read_captions(args.captions)[: args.first]
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_minildm()
    settings = settings_of(pipe, steps=args.steps, every=args.every, summary_queries=512, seed=0)
    texts = {c.id: c.text for c in captions}
    if args.out.is_file():
        with xr.open_dataset(args.out, engine="h5netcdf") as done:
            recorded, held = done.attrs.get("settings"), json.loads(done.attrs.get("captions", "{}"))
            lengths = {float(s) for s in done.seconds.values}
        if recorded != json.dumps(settings, sort_keys=True) or any(held.get(i, t) != t for i, t in texts.items()):
            raise SystemExit(f"{args.out} holds evidence of other settings, weights or caption texts "
                             f"({recorded or 'not recorded: written before they were'}; asked {settings}): give "
                             "another --out, or move that file away to measure again")
        if set(texts) <= set(held) and set(map(float, args.seconds)) <= lengths:
            print(f"{args.out} already holds every caption and length asked for, with these settings")
            return
        # what the file holds stays in it: its captions and lengths join the ones asked for
        captions += [Caption(i, t) for i, t in held.items() if i not in texts]
        texts = {c.id: c.text for c in captions}
        args.seconds = sorted(lengths | set(map(float, args.seconds)))
    paths = measure_captions(pipe, captions, args.seconds, args.out.with_suffix(".parts"), steps=args.steps,
                             every=args.every)
    ds = gather(paths)
    ds.attrs.update(settings=json.dumps(settings, sort_keys=True), captions=json.dumps(texts))
    write_atomic(args.out, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    print(f"wrote {args.out}: {dict(ds.sizes)}")


if __name__ == "__main__":
    main()
