"""Quality and speed of a sweep per cell (configuration, length, sampler): ``litefocus evaluate-sweep OUT``.

Each job's clip is embedded once by the evaluator and cached in ``OUT/embeddings/EVALUATOR/ID.npz`` (the evaluator's
name and a hash of its weights name the folder), so an interrupted evaluation resumes and a second evaluator adds a
folder beside the first. A cell's generated clips are compared with the reference clips of its length:
``REFERENCE/<seconds>s/`` when such a folder exists (``10.24s``: the seconds as :func:`length_folder` writes them),
else ``REFERENCE`` itself. Per cell: FAD, KAD, KL (each clip paired with the reference clip named by its caption's
``audio`` id, when every clip has one) and CLAP score, with 95 % bootstrap intervals (``analysis.quality``); and the
speed: median UNet seconds per step and pipeline seconds, and the speed-up of both over dense at the same length
(``unet_speedup``: dense with the same sampler; ``speedup``: dense with the sweep's first sampler, end to end).
Beside the cells, ``reference_halves`` rows per length: the two halves of the reference clips (split at random,
seeded) against each other, the floor of each metric at that size.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from litefocus.files import read_json, write_atomic, write_csv

from . import protocols, quality
from .sweep import MANIFEST, SweepSettings, read_rows
from .sweep_cache import (features_of, embed_jobs, embed_reference, evaluator_id, field_job_features,
                          field_reference_features)

FLOOR = "reference_halves"
MIN_CAPTIONS = 10  # fewer captions give bootstrap intervals of a handful of distinct draws: noted, not read
CELL = ["configuration", "seconds", "sampler", "steps"]


def length_folder(seconds: float) -> str:
    """The name of the reference subfolder of one length: ``10.24s``."""
    return f"{seconds:g}s"


def reference_folder(reference: Path, seconds: float) -> Path:
    sub = Path(reference) / length_folder(seconds)
    return sub if sub.is_dir() else Path(reference)


def check_reference(rows: pd.DataFrame, reference: str | os.PathLike) -> dict[float, Path]:
    """The reference folder of each length in ``rows``; an error names a missing one or one without audio, and the
    subfolder a length needs when ``reference`` has length subfolders but not that one."""
    reference = Path(reference)
    lengths = sorted(rows["seconds"].unique())
    subfolders = sorted(p.name for p in reference.iterdir() if p.is_dir() and re.fullmatch(r"\d+(\.\d+)?s", p.name)) \
        if reference.is_dir() else []
    missing = [s for s in lengths if not (reference / length_folder(s)).is_dir()]
    if subfolders and missing:
        raise ValueError(f"{reference} has length subfolders ({', '.join(subfolders)}) but none for the "
                         f"{', '.join(f'{s:g} s' for s in missing)} jobs: name it "
                         f"{', '.join(length_folder(s) for s in missing)}")
    folders = {s: reference_folder(reference, s) for s in lengths}
    for folder in set(folders.values()):
        protocols.audio_files(folder)
    return folders


def _cell_rows(gen: dict, ref_names: list[str], ref: dict, audio_ids: list[str], shrinkage: float | None,
               audio_dim: int, resamples: int, seed: int) -> list[dict]:
    """The metric rows of one set of generated embeddings against one reference set."""
    n, m = len(gen["audio"]), len(ref["audio"])
    if min(n, m) < 2:
        return [dict(metric=k, value=np.nan, low=np.nan, high=np.nan, clips=n, reference_clips=m,
                     note="fewer than 2 clips") for k in ("FAD", "KAD", "KL", "CLAP")]
    s = shrinkage if shrinkage is not None else quality.default_shrinkage(n, m, audio_dim)
    rows = []

    def add(metric, estimate, note=""):
        rows.append(dict(metric=metric, value=estimate.value, low=estimate.low, high=estimate.high, clips=n,
                         reference_clips=m, note=note))

    add("FAD", quality.frechet_distance(gen["audio"], ref["audio"], shrinkage=s, resamples=resamples, seed=seed),
        f"covariances shrunk by {s} ({n} and {m} clips, {audio_dim} dimensions)" if s else "")
    add("KAD", quality.kernel_distance(gen["audio"], ref["audio"], resamples=resamples, seed=seed))
    position = {name: i for i, name in enumerate(ref_names)}
    if audio_ids and all(a in position for a in audio_ids):
        add("KL", quality.kl_divergence(gen["probabilities"], ref["probabilities"][[position[a] for a in audio_ids]],
                                        seed=seed))
    else:
        rows.append(dict(metric="KL", value=np.nan, low=np.nan, high=np.nan, clips=n, reference_clips=m,
                         note="left out: not every clip's caption names a reference clip"))
    if "text" in gen:
        add("CLAP", quality.clap_score(gen["clap_audio"], gen["text"], seed=seed))
    return rows


def _speed(rows: pd.DataFrame, cell: tuple, first_sampler: str) -> dict:
    configuration, seconds, sampler, steps = cell
    mine = rows[(rows.configuration == configuration) & (rows.seconds == seconds) & (rows.sampler == sampler)
                & (rows.steps == steps)]
    dense_same = rows[(rows.kind == "dense") & (rows.seconds == seconds) & (rows.sampler == sampler)
                      & (rows.steps == steps)]
    name, _, count = first_sampler.partition(":")
    dense_first = rows[(rows.kind == "dense") & (rows.seconds == seconds) & (rows.sampler == name)
                       & (rows.steps == int(count))]
    unet, pipeline = mine.unet_seconds_per_step.median(), mine.pipeline_seconds.median()
    return dict(unet_seconds_per_step=unet, pipeline_seconds=pipeline,
                unet_speedup=dense_same.unet_seconds_per_step.median() / unet if len(dense_same) else np.nan,
                speedup=dense_first.pipeline_seconds.median() / pipeline if len(dense_first) else np.nan)


def write_tables(table: pd.DataFrame, path_stem: Path) -> list[Path]:
    """The table as CSV and netCDF (``(configuration, seconds, sampler, metric)`` coordinates): ``STEM.csv``,
    ``STEM.nc``, each written atomically."""
    path_stem = Path(path_stem)  # the literal stem: "ev/r0.1" -> ev/r0.1.csv, never ev/r0.csv
    csv_path = write_csv(path_stem.with_name(path_stem.name + ".csv"), table)
    described = [c for c in ("protocol", "backbone", "checkpoint", "sampling_rate", "crop") if c in table]
    numeric = table.drop(columns=["note", "evaluator", "steps", *described]).copy()
    numeric["sampler"] = table.sampler + ":" + table.steps.astype(str)
    ds = numeric.set_index(["configuration", "seconds", "sampler", "metric"]).to_xarray()
    for column in described:  # per metric: what computed it
        per_metric = table.drop_duplicates("metric").set_index("metric")[column]
        ds[column] = ("metric", [str(per_metric.get(m, "")) for m in ds.metric.values])
    ds.attrs.update(evaluator=str(table.evaluator.iloc[0]), notes=json.dumps(
        {f"{r.configuration} {r.seconds:g}s {r.sampler} {r.metric}": r.note for r in table.itertuples() if r.note}))
    nc_path = write_atomic(path_stem.with_name(path_stem.name + ".nc"),
                           lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    return [csv_path, nc_path]


class SweepResults:
    """One sweep folder opened once, for everything ``evaluate-sweep`` and the studies ask of it: its settings
    (:class:`analysis.sweep.SweepSettings`), its finished rows (one order: by job id), the reference folder of each
    length (checked on opening, before any model loads), and, under one evaluator, every job's and every reference
    folder's embeddings, loaded lazily and cached (on disk under ``OUT/embeddings/``, and here in memory).

        results = SweepResults.open("runs/table1", reference="audiocaps_audio/", evaluator=Evaluator.offline())
        results.cells()          # per (configuration, seconds, sampler, steps) and metric, with the floor
        results.comparisons()    # paired differences between configurations
        results.clip_table()     # every clip, for recomputing metrics on subsets of captions
    """

    def __init__(self, out: Path, settings: SweepSettings, rows: pd.DataFrame, references: dict[float, Path],
                 evaluator=None):
        self.out, self.settings, self.rows, self.references = out, settings, rows, references
        self._evaluator, self._jobs, self._reference = evaluator, None, {}

    @classmethod
    def open(cls, out: str | os.PathLike, reference: str | os.PathLike, evaluator=None) -> SweepResults:
        """Read the manifest and the finished rows, and check the reference folders; ``evaluator`` (default: the
        offline one, loaded when first needed) may also be set later, before anything is embedded."""
        out = Path(out)
        if not (out / MANIFEST).is_file():
            raise FileNotFoundError(f"{out} holds no {MANIFEST}: give the --out folder of a litefocus sweep")
        settings = SweepSettings.from_json(read_json(out / MANIFEST)["settings"])
        rows = read_rows(out)
        if rows.empty:
            raise ValueError(f"{out} has no finished jobs yet: run (or resume) the sweep first")
        return cls(out, settings, rows, check_reference(rows, reference), evaluator)

    @property
    def configurations(self) -> list[str]:
        return self.settings.configuration_names

    @property
    def evaluator(self):
        if self._evaluator is None:
            from .evaluator import Evaluator

            self._evaluator = Evaluator.offline()
        return self._evaluator

    @evaluator.setter
    def evaluator(self, evaluator) -> None:
        self._evaluator, self._jobs, self._reference = evaluator, None, {}

    def job_embeddings(self, progress: bool = True) -> dict:
        """``{job id: {"audio", "clap_audio", "probabilities", "text"}}`` (:func:`embed_jobs`), read once."""
        if self._jobs is None:
            self._jobs = embed_jobs(self.out, self.rows, self.evaluator, progress=progress)
        return self._jobs

    def reference_embeddings(self, seconds: float) -> tuple[list[str], dict]:
        """Stems and embeddings of the reference clips of one length (:func:`embed_reference`), read once."""
        if seconds not in self._reference:
            self._reference[seconds] = embed_reference(self.out, self.references[seconds], self.evaluator)
        return self._reference[seconds]

    def cells(self, fad_shrinkage: float | None = None, resamples: int = 100, seed: int = 0,
              progress: bool = True, protocol="clap_kad", field_models=None) -> pd.DataFrame:
        """The tidy table of the sweep: one row per cell and metric, and the floor (see the module docstring), under
        a named ``protocol`` (:mod:`analysis.protocols`; ``seed`` also seeds the paper's crops): ``"clap_kad"`` (the
        evaluator's FAD, KAD, KL, CLAP) or ``"audioldm_eval"`` / ``"paper"`` (audioldm_eval's metrics on
        ``field_models``, default the released weights; the KLs pair each clip with the reference clip its
        caption's ``audio`` id names; the CLAP score is the evaluator's, on the whole clip)."""
        from .protocols import check_protocol

        chosen = check_protocol(protocol, seed)
        if chosen.uses_field_models:
            if fad_shrinkage is not None:
                raise ValueError(f"fad_shrinkage applies to the clap_kad protocol only; got it with {chosen.name}")
            return self._field_cells(chosen, field_models, resamples, progress)
        if fad_shrinkage is not None:
            fad_shrinkage = quality.check_shrinkage(fad_shrinkage, "fad_shrinkage")
        embedded = self.job_embeddings(progress)
        audio_dim = self.evaluator.audio_dim
        references = {seconds: self.reference_embeddings(seconds) for seconds in self.references}

        def floor(names, ref):
            order = np.random.default_rng(seed).permutation(len(names))
            half_a, half_b = order[: len(order) // 2], order[len(order) // 2:]
            return _cell_rows({k: v[half_a] for k, v in ref.items()}, [], {k: v[half_b] for k, v in ref.items()},
                              [], fad_shrinkage, audio_dim, resamples, seed)

        def cell_rows(group, names, ref):
            gen = {k: np.stack([embedded[i][k] for i in group["id"]])
                   for k in ("audio", "clap_audio", "probabilities", "text")}
            return _cell_rows(gen, names, ref, list(group["audio_id"].fillna("").astype(str)), fad_shrinkage,
                              audio_dim, resamples, seed)

        table = self._cell_table(references, floor, cell_rows)
        return self._ordered(pd.DataFrame(table).assign(
            protocol=chosen.name, backbone=self.evaluator.name, checkpoint=evaluator_id(self.evaluator),
            sampling_rate=self.evaluator.sampling_rate, crop=chosen.crop_label(), evaluator=self.evaluator.name))

    def check_scorable_lengths(self, protocol) -> None:
        """An error, before any model loads, when the sweep's lengths are too short for a field ``protocol``."""
        from .protocols import check_scorable_seconds

        for seconds in sorted(self.rows.seconds.unique()):
            check_scorable_seconds(float(seconds), f"each {seconds:g} s job", "generated", protocol)

    def _field_cells(self, protocol, models, resamples: int, progress: bool) -> pd.DataFrame:
        """:meth:`cells` under a field protocol."""
        from .protocols import FieldModels, field_rows

        self.check_scorable_lengths(protocol)
        models = models or FieldModels.load()
        features = field_job_features(self.out, self.rows, protocol, models, progress)
        embedded = self.job_embeddings(progress)  # the CLAP score: the evaluator's, whole clips
        seed = protocol.seed
        references = {s: field_reference_features(self.out, folder, protocol, models)  # read once a length
                      for s, folder in self.references.items()}

        def floor(names, ref):
            order = np.random.default_rng(seed).permutation(len(names))
            half_a, half_b = features_of(ref, order[: len(order) // 2]), features_of(ref, order[len(order) // 2:])
            if min(len(half_a.logits), len(half_b.logits)) < 2:
                return []
            return field_rows(half_a, half_b, ([], [], "reference halves: no pairs"), models, resamples=resamples,
                              seed=seed)

        def cell_rows(group, names, ref):
            ids = list(group["id"])
            gen = features_of({k: np.concatenate([features[i][k] for i in ids]) for k in features[ids[0]]})
            position = {n: i for i, n in enumerate(names)}
            audio_ids = [str(a) for a in group["audio_id"].fillna("")]
            paired = [(g, position[a]) for g, a in enumerate(audio_ids) if a in position]
            pairs = ([g for g, _ in paired], [r for _, r in paired],
                     "" if len(paired) == len(ids) else f"{len(ids) - len(paired)} clip(s) whose caption names no "
                     "reference clip left out")
            clap = quality.clap_score(np.stack([embedded[i]["clap_audio"] for i in ids]),
                                      np.stack([embedded[i]["text"] for i in ids]), seed=seed)
            backbone = (f"CLAP of {self.evaluator.name} (whole clip)", evaluator_id(self.evaluator))
            return field_rows(gen, features_of(ref), pairs, models, clap, backbone, resamples, seed)

        table = self._cell_table(references, floor, cell_rows)
        return self._ordered(pd.DataFrame(table).assign(
            protocol=protocol.name, sampling_rate=16000, crop=protocol.crop_label(), evaluator=self.evaluator.name))

    def _cell_table(self, references: dict, floor, cell_rows) -> list[dict]:
        """The one cell loop of every protocol: per length, the floor's rows (``floor(names, ref)`` of the length's
        reference ``(names, arrays)`` in ``references``), then per cell its rows (``cell_rows(group, names, ref)``)
        with its speed."""
        table = []
        for seconds, (names, ref) in references.items():
            table += [dict(configuration=FLOOR, seconds=seconds, sampler="", steps=0, **r) for r in floor(names, ref)]
        first_sampler = self.settings.samplers[0].label
        for cell, group in self.rows.groupby(CELL, sort=False):
            names, ref = references[cell[1]]
            speed = _speed(self.rows, cell, first_sampler)
            table += [dict(zip(CELL, cell), **r, **speed) for r in cell_rows(group, names, ref)]
        return table

    def _ordered(self, table: pd.DataFrame) -> pd.DataFrame:
        """By length, then the sweep's order of samplers and of configurations (the floor first)."""
        order = {name: i for i, name in enumerate(self.configurations)} | {FLOOR: -1}
        samplers = [s.label for s in self.settings.samplers]
        sampler_order = {s: i for i, s in enumerate(samplers)} | {":0": -1}
        table["_c"] = table.configuration.map(order).fillna(len(order))
        table["_s"] = (table.sampler + ":" + table.steps.astype(str)).map(sampler_order).fillna(len(samplers))
        return table.sort_values(["seconds", "_s", "_c"], kind="stable").drop(columns=["_c", "_s"]).reset_index(
            drop=True)

    def comparisons(self, pairs=None, fad_shrinkage: float | None = None, resamples: int = 200,
                    seed: int = 0) -> pd.DataFrame:
        """Paired differences between configurations, per length and sampler: ``metric(a) - metric(b)`` for FAD, KAD
        (:func:`analysis.quality.paired_difference`), KL and CLAP (means of per-clip differences), each with a 95 %
        bootstrap interval over captions (several seeds of one caption are drawn together); clips are paired by
        (caption, seed), and only pairs both configurations generated count; fewer than :data:`MIN_CAPTIONS`
        captions are noted. ``pairs``: ``[(a, b), ...]`` (default: every configuration against the sweep's first).
        Every row names its protocol (``clap_kad``: paired differences use the evaluator's embeddings) and backbone."""
        embedded = self.job_embeddings(progress=False)
        names = self.configurations
        pairs = pairs or [(name, names[0]) for name in names[1:]]
        table = []
        for (seconds, sampler, steps), group in self.rows.groupby(["seconds", "sampler", "steps"], sort=False):
            ref_names, ref = self.reference_embeddings(seconds)
            position = {n: i for i, n in enumerate(ref_names)}
            for a, b in pairs:
                ga = group[group.configuration == a].set_index(["caption_id", "seed"])
                gb = group[group.configuration == b].set_index(["caption_id", "seed"])
                both = ga.index.intersection(gb.index)
                if len(both) < 2:
                    continue
                ea = {k: np.stack([embedded[i][k] for i in ga.loc[both, "id"]]) for k in embedded[ga.id.iloc[0]]}
                eb = {k: np.stack([embedded[i][k] for i in gb.loc[both, "id"]]) for k in embedded[gb.id.iloc[0]]}
                s = fad_shrinkage if fad_shrinkage is not None else quality.default_shrinkage(
                    len(both), len(ref["audio"]), self.evaluator.audio_dim)
                captions = both.get_level_values("caption_id").astype(str)
                groups = captions if captions.nunique() < len(both) else None  # several seeds: draw captions
                estimates = {m: quality.paired_difference(m, ea["audio"], eb["audio"], ref["audio"], shrinkage=s,
                                                          resamples=resamples, seed=seed, groups=groups)
                             for m in ("FAD", "KAD")}
                audio_ids = [str(x) for x in ga.loc[both, "audio_id"].fillna("")]
                if all(x in position for x in audio_ids):
                    ref_probs = ref["probabilities"][[position[x] for x in audio_ids]]
                    per_clip = [quality.kl_per_clip(e["probabilities"], ref_probs) for e in (ea, eb)]
                    estimates["KL"] = quality.mean_with_interval(per_clip[0] - per_clip[1], 1000, seed, groups)
                cosine = [quality.clap_per_clip(e["clap_audio"], e["text"]) for e in (ea, eb)]
                estimates["CLAP"] = quality.mean_with_interval(cosine[0] - cosine[1], 1000, seed, groups)
                count = captions.nunique()
                note = (f"{count} captions: too few for the interval to resolve a difference (at least "
                        f"{MIN_CAPTIONS}); read it as unresolved") if count < MIN_CAPTIONS else ""
                for metric, e in estimates.items():
                    table.append(dict(seconds=seconds, sampler=sampler, steps=steps, configuration=a, baseline=b,
                                      metric=metric, difference=e.value, low=e.low, high=e.high, pairs=len(both),
                                      captions=count, note=note, protocol="clap_kad",
                                      backbone=self.evaluator.name))
        return pd.DataFrame(table)

    def clip_table(self) -> xr.Dataset:
        """Every finished job as one clip: dims (configuration, seconds, caption, dim), variables ``clap`` (cosine of
        the clip and its caption), ``kl`` (to the reference clip of its caption; NaN without one), ``embedding``
        (the evaluator's FAD/KAD embedding) and ``unet_seconds_per_step``; the references as ``reference_embedding``
        (seconds, reference, dim). Enough to recompute every metric on any subset of captions without the audio
        (one sampler and seed a sweep; missing jobs are NaN)."""
        rows = self.rows
        if rows[["sampler", "steps"]].drop_duplicates().shape[0] > 1 or rows.seed.nunique() > 1:
            raise ValueError(f"{self.out}: clip_table takes a sweep of one sampler and one seed")
        embedded = self.job_embeddings(progress=False)
        names = self.configurations
        present = {str(c) for c in rows.caption_id}
        known = [c.id for c in self.settings.captions]  # the sweep's order
        captions = [c for c in known if c in present] + sorted(present - set(known), key=lambda c: (len(c), c))
        seconds = sorted(rows.seconds.unique())
        dim = len(next(iter(embedded.values()))["audio"])
        shape = (len(names), len(seconds), len(captions))
        clap, kl, unet = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        emb = np.full((*shape, dim), np.nan, dtype=np.float32)
        references = {}
        for s in seconds:
            ref_names, ref = self.reference_embeddings(s)
            references[s] = ref["audio"]
            position = {n: i for i, n in enumerate(ref_names)}
            for r in rows[rows.seconds == s].itertuples():
                i, j, k = names.index(r.configuration), seconds.index(s), captions.index(str(r.caption_id))
                e = embedded[r.id]
                clap[i, j, k] = quality.clap_per_clip(e["clap_audio"][None], e["text"][None])[0]
                if str(r.audio_id) in position:
                    kl[i, j, k] = quality.kl_per_clip(e["probabilities"][None],
                                                      ref["probabilities"][[position[str(r.audio_id)]]])[0]
                emb[i, j, k], unet[i, j, k] = e["audio"], r.unet_seconds_per_step
        most = max(len(v) for v in references.values())
        ref_emb = np.full((len(seconds), most, dim), np.nan, dtype=np.float32)
        for j, s in enumerate(seconds):
            ref_emb[j, : len(references[s])] = references[s]
        dims = ("configuration", "seconds", "caption")
        return xr.Dataset(
            dict(clap=(dims, clap), kl=(dims, kl), unet_seconds_per_step=(dims, unet),
                 embedding=((*dims, "dim"), emb), reference_embedding=(("seconds", "reference", "dim"), ref_emb)),
            coords=dict(configuration=names, seconds=seconds, caption=captions),
            attrs=dict(evaluator=self.evaluator.name, sampler=str(rows.sampler.iloc[0]), steps=int(rows.steps.iloc[0]),
                       seed=int(rows.seed.iloc[0]), model_fingerprint=self.settings.model_fingerprint))


def evaluate_sweep(out: str | os.PathLike, reference: str | os.PathLike, evaluator=None,
                   fad_shrinkage: float | None = None, resamples: int = 100, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """:meth:`SweepResults.cells` of one sweep folder."""
    return SweepResults.open(out, reference, evaluator).cells(fad_shrinkage, resamples, seed, progress)


def compare_configurations(out: str | os.PathLike, reference: str | os.PathLike, evaluator, pairs=None,
                           fad_shrinkage: float | None = None, resamples: int = 200, seed: int = 0) -> pd.DataFrame:
    """:meth:`SweepResults.comparisons` of one sweep folder."""
    return SweepResults.open(out, reference, evaluator).comparisons(pairs, fad_shrinkage, resamples, seed)


def clip_table(out: str | os.PathLike, reference: str | os.PathLike, evaluator) -> xr.Dataset:
    """:meth:`SweepResults.clip_table` of one sweep folder."""
    return SweepResults.open(out, reference, evaluator).clip_table()
