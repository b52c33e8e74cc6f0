"""What the sweep machinery costs and what a second process buys, on MiniLDM, in one run.

- ``throughput``: one sweep (``--captions`` held-out captions x dense x ``--seconds``, ``--steps``) run three ways,
  each into a fresh folder, wall time of the whole command (process start and model load included) and of its jobs
  alone (first job's start to the last one's end, from the rows): one process
  with one thread, one process with two threads, and two processes with one thread each under
  ``accelerate launch --multi_gpu --num_processes 2`` (torchrun's launcher, which runs on CPUs too). Printed: the
  speed-up of two processes over each one-process run, per round (min and max over ``--rounds``).
- ``overhead``: in one process, what a job costs beyond its pipeline call (scheduler and configuration set-up, UNet
  timing hooks, writing the FLAC and the row, listing finished jobs for the progress bar), as a share of a 10.24 s
  generation at 50 steps, LiteFocus on.

    python benchmarks/sweep.py --csv data/benchmarks/sweep.csv   # adds rows to the committed table
    python benchmarks/sweep.py --captions 2 --rounds 1 --csv ''   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from litefocus.files import read_csv, write_csv

ROOT = Path(__file__).resolve().parent.parent
CSV = Path("results/benchmarks/sweep.csv")  # the committed table: data/benchmarks/sweep.csv, named with --csv
CAPTIONS = ["a string quartet playing a chorale slowly", "rain falling on a roof with distant thunder",
            "a man speaking english calmly", "birds singing in the countryside", "a brass band playing a march",
            "waves on a beach with wind", "a woman speaking french quickly", "a harpsichord playing a baroque piece"]


def sweep_command(captions: Path, out: Path, seconds: float, steps: int, threads: int, configurations: list[str]):
    return ["-m", "litefocus_cli", "sweep", "--model", "minildm", "--captions", str(captions), "--seconds",
            str(seconds), "--steps", str(steps), "--configurations", *configurations, "--threads", str(threads),
            "--no-progress", "--out", str(out)]


def timed_run(command: list[str], processes: int, out: Path) -> tuple[float, float]:
    """Wall time of the whole command, and of its jobs alone (first job's start to last job's end: without process
    start and model loading)."""
    bin_dir = Path(sys.executable).parent
    if processes == 1:
        full = [sys.executable, *command]
    else:
        full = [str(bin_dir / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *command]
    start = time.perf_counter()
    done = subprocess.run(full, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    rows = pd.read_csv(out / "jobs.csv")
    return wall, rows.finished_at.max() - rows.started_at.min()


def overhead(jobs: int, work: Path) -> dict:
    """Per-job cost beyond the pipeline call, in one process (2 threads), on 10.24 s jobs at 50 steps."""
    from analysis import sweep as sw
    from analysis.ablations import parse_configuration
    from litefocus.models import weights_fingerprint
    from minildm import load_minildm

    torch.set_num_threads(2)
    pipe = load_minildm()
    pipe.set_progress_bar_config(disable=True)
    caps = [sw.Caption(str(i), c) for i, c in enumerate(CAPTIONS[:jobs])]
    configs = [parse_configuration("litefocus")]
    settings = sw.SweepSettings(weights_fingerprint(pipe), tuple(caps), tuple(configs), (10.24,),
                                (sw.Sampler("default", 50),))
    sweep = sw.Sweep(work / "overhead", settings)
    start = time.perf_counter()
    sw.run_sweep(pipe, sweep, threads=2, progress=True)
    wall = time.perf_counter() - start
    rows = sweep.rows()
    pipeline = rows.pipeline_seconds.sum()
    return dict(jobs=len(rows), pipeline_s_per_job=pipeline / len(rows), overhead_s_per_job=(wall - pipeline) / len(rows),
                overhead_share=(wall - pipeline) / pipeline)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=8, help="captions of the throughput sweep (at most 8)")
    parser.add_argument("--seconds", type=float, default=5.12)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overhead-jobs", type=int, default=3)
    parser.add_argument("--csv", default=str(CSV), help="'' prints only")
    args = parser.parse_args(argv)
    if not 1 <= args.captions <= len(CAPTIONS) or args.rounds < 1 or args.overhead_jobs < 1:
        parser.error(f"--captions must lie in [1, {len(CAPTIONS)}], --rounds and --overhead-jobs at least 1")
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    try:
        captions = work / "captions.txt"
        captions.write_text("\n".join(CAPTIONS[: args.captions]) + "\n")
        rows = []
        for round_ in range(args.rounds):
            times, jobs = {}, {}
            for label, processes, threads in (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
                                              ("2 processes x 1 thread", 2, 1)):
                out = work / f"r{round_}-{processes}x{threads}"
                times[label], jobs[label] = timed_run(
                    sweep_command(captions, out, args.seconds, args.steps, threads, ["dense"]), processes, out)
                print(f"round {round_}: {label}: {times[label]:.1f} s, its jobs {jobs[label]:.1f} s", flush=True)
            one, two, both = "1 process x 1 thread", "1 process x 2 threads", "2 processes x 1 thread"
            rows.append(dict(round=round_, **{f"{k} (s)": v for k, v in times.items()},
                             **{f"{k}, jobs (s)": v for k, v in jobs.items()},
                             speedup_vs_1_thread=times[one] / times[both], speedup_vs_2_threads=times[two] / times[both],
                             jobs_speedup_vs_1_thread=jobs[one] / jobs[both],
                             jobs_speedup_vs_2_threads=jobs[two] / jobs[both]))
        table = pd.DataFrame(rows)
        cost = overhead(args.overhead_jobs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table.to_string(index=False, float_format="%.2f"))
    span = lambda c: f"{table[c].min():.2f}-{table[c].max():.2f}x"  # noqa: E731
    print(f"two processes over one, min-max over {args.rounds} rounds ({args.captions} jobs of {args.seconds:g} s "
          f"at {args.steps} steps, dense): whole command {span('speedup_vs_1_thread')} (vs 1 thread), "
          f"{span('speedup_vs_2_threads')} (vs 2 threads); its jobs alone {span('jobs_speedup_vs_1_thread')} and "
          f"{span('jobs_speedup_vs_2_threads')}")
    print(f"sweep overhead per job: {cost['overhead_s_per_job']:.3f} s = {100 * cost['overhead_share']:.2f} % of a "
          f"{cost['pipeline_s_per_job']:.2f} s generation (10.24 s, 50 steps, LiteFocus; {cost['jobs']} jobs)")
    if args.csv:
        record = dict(date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()} {os.cpu_count()} cores",
                      jobs=args.captions, seconds=args.seconds, steps=args.steps, rounds=args.rounds,
                      speedup_vs_1_thread_min=table.speedup_vs_1_thread.min(),
                      speedup_vs_1_thread_max=table.speedup_vs_1_thread.max(),
                      speedup_vs_2_threads_min=table.speedup_vs_2_threads.min(),
                      speedup_vs_2_threads_max=table.speedup_vs_2_threads.max(),
                      jobs_speedup_vs_1_thread_min=table.jobs_speedup_vs_1_thread.min(),
                      jobs_speedup_vs_1_thread_max=table.jobs_speedup_vs_1_thread.max(),
                      jobs_speedup_vs_2_threads_min=table.jobs_speedup_vs_2_threads.min(),
                      jobs_speedup_vs_2_threads_max=table.jobs_speedup_vs_2_threads.max(),
                      overhead_s_per_job=cost["overhead_s_per_job"], overhead_share=cost["overhead_share"],
                      generation_s=cost["pipeline_s_per_job"],
                      command="python benchmarks/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]))
        path = Path(args.csv)
        old = read_csv(path) if path.is_file() else pd.DataFrame()
        new = pd.concat([old, pd.DataFrame([record])], ignore_index=True)
        write_csv(path, new)
        print("added a row to", path)


if __name__ == "__main__":
    main()
