"""Sweeps: captions x configurations x lengths x samplers x seeds, one job each, resumable and spread over processes.

A job generates one clip and writes two files into ``OUT/jobs``: its audio (``ID.flac`` or ``ID.wav``) and then
its row (``ID.json``: settings and timings), each atomically, so a job is done exactly when its row exists. A job's
``ID`` is a hash of the model's weights, the caption (its id and text), the configuration at this length, the
length, the sampler, its steps, the seed and the guidance scale: the same job has the same id in any sweep, on any
number of processes. Its noise and every random choice inside it (LiteFocus's keys, Token Merging's draws,
Griffin-Lim's phase) come from its seed alone, so the same job gives the same audio whichever process runs it,
after whatever other jobs (on CPU, with the same ``threads``: float sums depend on how they are split).

``OUT/sweep.json`` (the manifest) holds the settings; a sweep resumes in a folder only when they match. Jobs run
caption by caption, the longest first within each; under ``accelerate launch`` each process takes its share of the
pending jobs, dealt to whichever process has the least work so far (:func:`share`), so that long jobs spread over
the processes. A killed process loses only the job it was running. ``OUT/jobs.csv`` gathers the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from litefocus.files import check_writable, read_json, write_atomic, write_csv, write_json
from litefocus.lengths import sampling_rate

from .ablations import Configuration
from .captions import Caption
from .timing import unet_timer

MANIFEST = "sweep.json"
AUDIO_FORMATS = ("flac", "wav")
"""``flac``: 24-bit FLAC (lossless down to -144 dB full scale); ``wav``: 32-bit float WAV (the samples exactly;
written by scipy, whose files hold no time stamp, unlike libsndfile's PEAK chunk)."""
JOBS = "jobs"
LOCK = ".sweep.lock"
JOB_VERSION = "litefocus sweep job v1"  # in every job id: bump it when what a job computes changes


# ---------------------------------------------------------------- samplers
SAMPLERS = ("default", "ddim", "dpmsolver++")
MAX_STEPS = 1000
"""The most denoising steps a sampler can take: the training timesteps of AudioLDM, AudioLDM2, MusicLDM and MiniLDM
(diffusers refuses more, after the model has loaded)."""


def check_step_count(count, argument: str = "--steps") -> int:
    """``count`` as an int in [1, :data:`MAX_STEPS`], or a ValueError naming ``argument``."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_STEPS:
        raise ValueError(f"{argument} must be an integer from 1 to {MAX_STEPS} (the schedulers' training timesteps); "
                         f"got {count}")
    return int(count)


@dataclass(frozen=True)
class Sampler:
    """``default``: the pipeline's own scheduler; ``ddim``, ``dpmsolver++``: diffusers' DDIM or DPM-Solver++
    (multistep, second order) built from the pipeline's scheduler config. ``steps``: denoising steps."""

    name: str
    steps: int

    @property
    def label(self) -> str:
        return f"{self.name}:{self.steps}"

    def scheduler(self, base):
        """The scheduler to run, built from ``base`` (the pipeline's own); None keeps the pipeline's."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if self.name == "default":
            return None
        if self.name == "ddim":
            return DDIMScheduler.from_config(base.config)
        return DPMSolverMultistepScheduler.from_config(base.config, algorithm_type="dpmsolver++", solver_order=2)


def parse_sampler(spec: str, default_steps: int) -> Sampler:
    """``NAME`` (with ``default_steps``) or ``NAME:STEPS``; names in :data:`SAMPLERS`."""
    name, _, steps = spec.partition(":")
    if name not in SAMPLERS:
        raise ValueError(f"--samplers: unknown sampler {name!r}; choose from {', '.join(SAMPLERS)} (optionally "
                         ":STEPS, e.g. dpmsolver++:25)")
    try:
        count = int(steps) if steps else default_steps
    except ValueError:
        raise ValueError(f"--samplers {spec}: the steps after ':' must be an integer") from None
    return Sampler(name, check_step_count(count, f"--samplers {spec}: the steps"))


# ---------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    caption: Caption
    configuration: Configuration
    seconds: float
    sampler: Sampler
    seed: int

    def key(self, model: str, guidance_scale: float | None) -> dict:
        """What determines the job's audio (``model``: the weights' fingerprint), and the caption's id: two captions
        of the same text (AudioCaps has some) are two jobs, each paired with its own reference clip."""
        return dict(version=JOB_VERSION, model=model, caption_id=self.caption.id, caption=self.caption.text,
                    configuration={k: v for k, v in asdict(self.configuration.at_length(self.seconds)).items()
                                   if k != "name"},
                    seconds=round(self.seconds, 6), sampler=self.sampler.name, steps=self.sampler.steps,
                    seed=self.seed, guidance_scale=guidance_scale)

    def id(self, model: str, guidance_scale: float | None) -> str:
        """16 hex digits of the sha256 of :meth:`key`."""
        text = json.dumps(self.key(model, guidance_scale), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_jobs(captions: list[Caption], configurations: list[Configuration], seconds: list[float],
              samplers: list[Sampler], seeds: list[int]) -> list[Job]:
    """Every combination, caption by caption (seed, then caption, outermost: a sweep stopped halfway holds every
    cell for the captions it reached), and within a caption the longest (length x steps) first."""
    jobs = []
    for seed in seeds:
        for caption in captions:
            block = [Job(caption, config, s, sampler, seed) for s in seconds for sampler in samplers
                     for config in configurations]
            jobs += sorted(block, key=lambda j: -j.seconds * j.sampler.steps)  # stable: ties keep the order above
    return jobs


def job_cost(job: Job) -> float:
    """A job's work, in audio seconds times denoising steps (what :func:`share` balances)."""
    return job.seconds * job.sampler.steps


def share(pending: list, process_index: int, num_processes: int, cost=lambda item: 1.0) -> list:
    """One process's interleaved share of ``pending``: the items dealt out in order, each to the process with the
    least ``cost`` dealt so far (ties to the lowest index; equal costs deal round-robin). Every process computes
    the same deal from the same list, with no communication."""
    loads = [0.0] * num_processes
    mine = []
    for item in pending:
        seat = loads.index(min(loads))
        loads[seat] += cost(item)
        if seat == process_index:
            mine.append(item)
    return mine


def check_sweep_folder(out: Path) -> None:
    """ValueError naming ``--out`` unless it is a writable folder that is new, empty, or holds a sweep's manifest:
    what can be told before a model loads (the settings, compared by :meth:`Sweep.check_out`, need its weights)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    check_writable(out, "--out")
    if not (out / MANIFEST).is_file() and out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        raise ValueError(f"--out {out} holds files but no {MANIFEST}: choose a new or empty folder")


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep's manifest records (``sweep.json``'s ``settings``), and what must match for a run to resume it:
    the weights' fingerprint, captions x configurations x lengths (seconds) x samplers x seeds, the guidance scale,
    the weights' dtype and the audio format."""

    model_fingerprint: str
    captions: tuple[Caption, ...]
    configurations: tuple[Configuration, ...]
    seconds: tuple[float, ...]
    samplers: tuple[Sampler, ...]
    seeds: tuple[int, ...] = (0,)
    guidance_scale: float | None = None
    dtype: str = "float32"
    audio_format: str = "flac"

    @property
    def configuration_names(self) -> list[str]:
        return [c.name for c in self.configurations]

    def jobs(self) -> list[Job]:
        """Every job, in :func:`make_jobs`' order."""
        return make_jobs(list(self.captions), list(self.configurations), list(self.seconds), list(self.samplers),
                         list(self.seeds))

    def to_json(self) -> dict:
        """The manifest's ``settings``: plain JSON values (captions and configurations as dicts, samplers as
        ``NAME:STEPS``)."""
        return json.loads(json.dumps(dict(
            model_fingerprint=self.model_fingerprint, dtype=self.dtype, audio_format=self.audio_format,
            captions=[asdict(c) for c in self.captions], configurations=[asdict(c) for c in self.configurations],
            seconds=list(self.seconds), samplers=[s.label for s in self.samplers], seeds=list(self.seeds),
            guidance_scale=self.guidance_scale)))

    @classmethod
    def from_json(cls, settings: dict) -> SweepSettings:
        """The settings of a manifest :meth:`to_json` wrote (captions given as plain texts are numbered)."""
        captions = tuple(Caption(**c) if isinstance(c, dict) else Caption(str(i), str(c))
                         for i, c in enumerate(settings["captions"]))
        configurations = tuple(Configuration(**dict(c, blocks=tuple(c.get("blocks", ())))) for c in
                               settings["configurations"])
        return cls(settings["model_fingerprint"], captions, configurations, tuple(settings["seconds"]),
                   tuple(parse_sampler(s, 1) for s in settings["samplers"]), tuple(settings.get("seeds", (0,))),
                   settings.get("guidance_scale"), settings.get("dtype", "float32"),
                   settings.get("audio_format", "flac"))


# ---------------------------------------------------------------- the sweep folder
def read_rows(out: str | os.PathLike) -> pd.DataFrame:
    """The rows of a sweep folder's finished jobs, in the one order every reader uses: by job id. A row that is not
    whole JSON is an error that names it and says how to redo it."""
    import pandas as pd

    folder = Path(out) / JOBS
    rows = []
    for job_id in sorted(finished(folder)):
        path = folder / f"{job_id}.json"
        try:
            rows.append(json.loads(path.read_text()))
        except ValueError:
            raise ValueError(f"{path} is not whole JSON (cut short?): rerun the same litefocus sweep command, which "
                             "runs that job again") from None
    return pd.DataFrame(rows)


def finished(folder: Path) -> set[str]:
    """Ids of the jobs whose row and audio are both written in a sweep's jobs ``folder`` (none when it does not
    exist; temporary files of writes in progress, hidden, do not count). A job whose audio was deleted is not
    finished: a rerun generates it again."""
    if not Path(folder).is_dir():
        return set()
    names = {e.name for e in os.scandir(folder) if not e.name.startswith(".")}
    return {n[:-5] for n in names if n.endswith(".json") and any(f"{n[:-5]}.{f}" in names for f in AUDIO_FORMATS)}


def readable_row(path: Path) -> bool:
    """Whether a job row is whole JSON (a row cut short by a full disk or a killed copy is not)."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


class Sweep:
    """A sweep's folder: its manifest and its jobs (every job of ``settings``)."""

    def __init__(self, out: str | os.PathLike, settings: SweepSettings):
        self.out, self.settings, self.jobs = Path(out), settings, settings.jobs()
        self.ids = [job.id(settings.model_fingerprint, settings.guidance_scale) for job in self.jobs]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("two jobs of this sweep are the same job (configurations that differ only by name, "
                             "repeated lengths, samplers or seeds): remove the repeats")

    def check_out(self) -> None:
        """Raise ValueError unless ``out`` is new, empty, or a sweep with the same settings (which then resumes)."""
        check_sweep_folder(self.out)
        manifest = self.out / MANIFEST
        if manifest.is_file():
            old, new = read_json(manifest).get("settings", {}), self.settings.to_json()
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if differ:
                raise ValueError(f"--out {self.out} holds another sweep (its {MANIFEST} differs in: "
                                 f"{', '.join(differ)}); resume it with the same settings, or choose a new folder")

    def write_manifest(self) -> None:
        if not (self.out / MANIFEST).is_file():
            write_json(self.out / MANIFEST, dict(settings=self.settings.to_json(), jobs=len(self.jobs)))
        (self.out / JOBS).mkdir(parents=True, exist_ok=True)

    def done(self) -> set[str]:
        """Ids of the jobs whose row is written."""
        return finished(self.out / JOBS)

    def pending(self) -> list[tuple[str, Job]]:
        """The jobs to run: those without a whole row and its audio (a cut-short row is run again)."""
        done = {i for i in self.done() if readable_row(self.out / JOBS / f"{i}.json")}
        return [(i, job) for i, job in zip(self.ids, self.jobs) if i not in done]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (an exclusive ``flock`` on ``OUT/.sweep.lock``) for one run; a second run into the
        same folder, from another terminal, is refused instead of running every job twice."""
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOCK, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"--out {self.out}: another litefocus sweep is writing into this folder now; wait "
                                 "for it to finish (then rerun this command to resume), or choose another folder"
                                 ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def adopt(self, other: str | os.PathLike) -> int:
        """Copy the finished jobs of sweep folder ``other`` that this sweep also has (the same id: the same job) into
        this one, audio first and row last (under this sweep's name for the configuration), each atomically; return
        how many. Jobs shared between sweeps run once; those whose audio is in another format than this sweep's
        are not copied (they run here)."""
        import shutil

        source = Path(other) / JOBS
        if not (Path(other) / MANIFEST).is_file():
            raise FileNotFoundError(f"--reuse {other}: not a sweep folder (no {MANIFEST})")
        theirs = finished(source)
        done = self.done()
        wanted = [(i, job) for i, job in zip(self.ids, self.jobs) if i in theirs and i not in done]
        copied = 0
        for job_id, job in wanted:
            row = dict(read_json(source / f"{job_id}.json"), configuration=job.configuration.name)  # this sweep's name
            audio = Path(row["audio"]).name
            if not audio.endswith(f".{self.settings.audio_format}"):  # another format: this sweep runs it itself
                continue
            copied += 1
            write_atomic(self.out / JOBS / audio, lambda tmp, a=source / audio: shutil.copyfile(a, tmp))
            write_json(self.out / JOBS / f"{job_id}.json", row)
        return copied

    def rows(self):
        """The written rows as a ``pandas.DataFrame`` (:func:`read_rows`)."""
        return read_rows(self.out)

    def write_table(self) -> Path:
        table = self.rows()
        return write_csv(self.out / "jobs.csv", table)


def run_job(pipe, job: Job, job_id: str, out: Path, guidance_scale: float | None, rate: int, threads: int,
            process_index: int = 0, audio_format: str = "flac") -> dict:
    """Generate one job's clip into ``out/jobs/ID.flac`` (or ``.wav``: :data:`AUDIO_FORMATS`), then its row into
    ``ID.json``; return the row."""
    import soundfile
    from scipy.io import wavfile

    started, started_at = time.perf_counter(), time.time()
    folder = out / JOBS
    for stale in folder.glob(f".{job_id}.*"):  # temporary files of a killed earlier attempt at this job
        stale.unlink(missing_ok=True)
    base_scheduler = pipe.scheduler
    scheduler = job.sampler.scheduler(base_scheduler)
    kwargs = {} if guidance_scale is None else dict(guidance_scale=guidance_scale)
    config = job.configuration.at_length(job.seconds)
    try:
        if scheduler is not None:
            pipe.scheduler = scheduler
        with config.applied(pipe, seed=job.seed), unet_timer(pipe.unet, pipe.device) as calls:
            generating = time.perf_counter()
            audio = pipe(job.caption.text, audio_length_in_s=job.seconds, num_inference_steps=job.sampler.steps,
                         generator=torch.Generator().manual_seed(job.seed), **kwargs).audios[0]
            pipeline_seconds = time.perf_counter() - generating
    finally:
        pipe.scheduler = base_scheduler
    audio = np.clip(np.asarray(torch.as_tensor(audio).float().cpu()).reshape(-1), -1.0, 1.0)
    if audio_format == "flac":
        write = lambda tmp: soundfile.write(tmp, audio, rate, format="FLAC", subtype="PCM_24")  # noqa: E731
    else:
        write = lambda tmp: wavfile.write(tmp, rate, audio.astype(np.float32))  # noqa: E731
    write_atomic(folder / f"{job_id}.{audio_format}", write)
    row = dict(
        id=job_id, caption_id=job.caption.id, audio_id=job.caption.audio, caption=job.caption.text,
        configuration=job.configuration.name, kind=config.kind, blocks=" ".join(config.blocks), ratio=config.ratio,
        same_frequency=config.same_frequency, cross_frequency=config.cross_frequency, union=config.union,
        seconds=job.seconds, sampler=job.sampler.name, steps=job.sampler.steps, seed=job.seed,
        guidance_scale=guidance_scale, audio=f"{JOBS}/{job_id}.{audio_format}", sampling_rate=rate,
        samples=int(audio.size),
        unet_calls=len(calls), unet_seconds=float(sum(calls)),
        unet_seconds_per_step=float(sum(calls) / max(1, len(calls))), pipeline_seconds=pipeline_seconds,
        job_seconds=time.perf_counter() - started, process=process_index, threads=threads, device=str(pipe.device),
        started_at=started_at, finished_at=time.time(), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json(folder / f"{job_id}.json", row)
    return row


def run_sweep(pipe, sweep: Sweep, process_index: int = 0, num_processes: int = 1, threads: int = 1,
              barrier=lambda: None, progress: bool = True, reuse: list = ()) -> int:
    """Run this process's share of the pending jobs; return how many it ran. ``reuse``: sweep folders whose finished
    jobs of this sweep are copied first (:meth:`Sweep.adopt`).

    ``barrier()`` waits for every process (accelerate's ``wait_for_everyone``): none writes before every process has
    checked the folder (:meth:`Sweep.check_out`, before this call: a process still checking a new folder would
    otherwise find it half-written and refuse it), and all list the pending jobs between two barriers, so that they
    split the same list, before any of them writes a job.
    """
    barrier()
    with sweep.lock() if process_index == 0 else nullcontext():  # one run at a time into a folder
        return _run_share(pipe, sweep, process_index, num_processes, threads, barrier, progress, reuse)


def _run_share(pipe, sweep: Sweep, process_index: int, num_processes: int, threads: int, barrier, progress: bool,
               reuse) -> int:
    """:func:`run_sweep` after the folder is checked and locked."""
    from tqdm.auto import tqdm

    if process_index == 0:
        sweep.write_manifest()
        for other in reuse:
            print(f"reused {sweep.adopt(other)} finished jobs of {other}")
    barrier()
    pending = sweep.pending()
    barrier()
    mine = share(pending, process_index, num_processes, cost=lambda pair: job_cost(pair[1]))
    rate = sampling_rate(pipe)
    bar = None
    if progress and process_index == 0:
        bar = tqdm(total=len(sweep.jobs), initial=len(sweep.jobs) - len(pending), desc="sweep", unit="job",
                   dynamic_ncols=True)
    for job_id, job in mine:
        run_job(pipe, job, job_id, sweep.out, sweep.settings.guidance_scale, rate, threads, process_index,
                sweep.settings.audio_format)
        if bar is not None:  # the whole sweep's progress: rows written by every process
            bar.n = len(sweep.done())
            bar.set_postfix_str(f"{job.seconds:g} s {job.configuration.name}", refresh=False)
            bar.refresh()
    if bar is not None:
        bar.close()
    return len(mine)
