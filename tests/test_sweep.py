"""Sweeps: captions, job ids, interleaved shares, resuming, byte-identical audio on one or two processes."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import sweep as sw
from analysis import sweep_cache
from analysis.ablations import Spec, parse_configuration, split_spec
from analysis.captions import read_captions
from litefocus_cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- captions
def test_audiocaps_csv_and_plain_lines(tmp_path):
    csv = write(tmp_path / "test.csv", "audiocap_id,youtube_id,start_time,caption\n"
                                       "103549,7fmOlUlwoNg,20,Constant rattling noise\n"
                                       '103548,6BJ455B1aAs,0,"A woman talks, then a man"\n')
    assert read_captions(csv) == [sw.Caption("103549", "Constant rattling noise", "7fmOlUlwoNg"),
                                     sw.Caption("103548", "A woman talks, then a man", "6BJ455B1aAs")]
    lines = write(tmp_path / "caps.txt", "a dog barking\n\n  rain on a roof \n")
    assert read_captions(lines) == [sw.Caption("1", "a dog barking"), sw.Caption("3", "rain on a roof")]


@pytest.mark.parametrize("text, message", [
    ("", "holds no captions"),
    ("audiocap_id,youtube_id,start_time,caption\n", "holds a header and no captions"),
    ("id,caption\n1,a dog\n", "needs the columns audiocap_id, youtube_id"),
    ("audiocap_id,youtube_id,start_time,caption\n1,x,0,a dog\n2,y,0\n", "line 3: 3 fields"),
    ("audiocap_id,youtube_id,start_time,caption\n1,x,0,a dog\n1,y,0,a cat\n", "line 3: audiocap_id 1 appears twice"),
    ("audiocap_id,youtube_id,start_time,caption\n1,x,0,\n", "line 2: empty audiocap_id or caption"),
])
def test_bad_caption_files_name_the_line(tmp_path, text, message):
    path = write(tmp_path / ("c.csv" if text.startswith(("audiocap", "id")) else "c.txt"), text)
    with pytest.raises(ValueError, match=message):
        read_captions(path)


# ---------------------------------------------------------------- configurations, samplers, jobs
def test_configurations_and_samplers_parse_with_ratios_and_steps():
    config = parse_configuration("cross_frequency_only:0.4")
    assert (config.name, config.ratio, config.same_frequency) == ("cross_frequency_only:0.4", 0.4, False)
    assert parse_configuration("token_merging:0.3").ratio == 0.3
    other = parse_configuration("same_frequency_only@up_blocks.1+mid_block:0.2")
    assert (other.blocks, other.ratio, other.cross_frequency) == (("up_blocks.1", "mid_block"), 0.2, False)
    adaptive = parse_configuration("litefocus@up_blocks.1/2.56")
    assert (adaptive.keys_fixed_from_s, adaptive.ratio_at(2.56), adaptive.ratio_at(10.24)) == (2.56, 0.1, 0.1 / 4)
    assert adaptive.ratio_at(1.28) == 0.1  # never above the spec's ratio
    assert sw.parse_sampler("dpmsolver++:25", 200) == sw.Sampler("dpmsolver++", 25)
    assert sw.parse_sampler("default", 200) == sw.Sampler("default", 200)
    for spec, message in [("nope", "unknown configuration 'nope'"), ("dense:0.5", "not to dense"),
                          ("litefocus:x", "must be a number"), ("litefocus:1.5", r"must lie in \[0, 1\]; got 1.5"),
                          ("litefocus:nan", r"must lie in \[0, 1\]"), ("litefocus:inf", r"must lie in \[0, 1\]"),
                          ("token_merging:1", r"must lie in \[0, 1\)"),
                          ("dense@up_blocks.1", "not to dense"),
                          ("litefocus@up_blocks.1+", "joined by '\\+'"), ("litefocus@", "joined by '\\+'"),
                          ("litefocus/0", "positive length"),
                          ("same_frequency_only/2.56", "cross-frequency keys"), ("dense/2.56", "LiteFocus")]:
        with pytest.raises(ValueError, match=message):
            parse_configuration(spec)
    for spec, message in [("euler", "unknown sampler 'euler'"), ("ddim:0", "from 1 to 1000"), ("ddim:x", "integer"),
                          ("ddim:5000", "from 1 to 1000")]:  # issue 27, case 6: diffusers' words after loading
        with pytest.raises(ValueError, match=message):
            sw.parse_sampler(spec, 50)


def test_job_ids_depend_on_what_the_job_computes_only():
    cap = sw.Caption("1", "a dog barking")
    litefocus = parse_configuration("litefocus")
    job = sw.Job(cap, litefocus, 10.24, sw.Sampler("default", 50), 0)
    same = sw.Job(sw.Caption("1", "a dog barking", "other"), parse_configuration("litefocus:0.1"), 10.24,
                  sw.Sampler("default", 50), 0)
    assert job.id("w", None) == same.id("w", None)  # the configuration's name and the audio name do not matter
    assert sw.Job(sw.Caption("2", "a dog barking"), litefocus, 10.24, job.sampler, 0).id("w", None) != job.id("w", None)
    others = [job.id("v", None), job.id("w", 3.0), sw.Job(cap, litefocus, 20.48, job.sampler, 0).id("w", None),
              sw.Job(cap, litefocus, 10.24, sw.Sampler("default", 25), 0).id("w", None),
              sw.Job(cap, litefocus, 10.24, job.sampler, 1).id("w", None),
              sw.Job(cap, parse_configuration("litefocus_concat"), 10.24, job.sampler, 0).id("w", None)]
    assert len(set(others + [job.id("w", None)])) == 7


def test_jobs_run_caption_by_caption_longest_first_and_shares_interleave():
    caps = [sw.Caption(str(i), f"caption {i}") for i in range(3)]
    configs = [parse_configuration(c) for c in ("dense", "litefocus", "token_merging")]
    jobs = sw.make_jobs(caps, configs, [2.56, 10.24], [sw.Sampler("default", 50), sw.Sampler("dpmsolver++", 10)],
                        [0])
    assert [j.caption.id for j in jobs] == ["0"] * 12 + ["1"] * 12 + ["2"] * 12
    assert [(j.seconds, j.sampler.steps) for j in jobs[:12]] == [(10.24, 50)] * 3 + [(2.56, 50)] * 3 \
        + [(10.24, 10)] * 3 + [(2.56, 10)] * 3
    assert sw.share(list(range(7)), 0, 3) == [0, 3, 6] and sw.share(list(range(7)), 2, 3) == [2, 5]
    shares = [sw.share(jobs, rank, 2, cost=sw.job_cost) for rank in range(2)]
    assert sorted(map(id, shares[0] + shares[1])) == sorted(map(id, jobs))  # a partition
    work = [sum(j.seconds * j.sampler.steps for j in part) for part in shares]
    contiguous = [sum(j.seconds * j.sampler.steps for j in part) for part in (jobs[:18], jobs[18:])]
    assert abs(work[0] - work[1]) <= 2.56 * 50 < abs(contiguous[0] - contiguous[1])


# ---------------------------------------------------------------- the sweep folder
def tiny_sweep(out: Path, pipe, seeds=(0,), captions=2) -> sw.Sweep:
    from litefocus.models import weights_fingerprint

    caps = [sw.Caption(str(i), c) for i, c in enumerate(["a dog barking", "rain on a roof"][:captions])]
    configs = [parse_configuration(c) for c in ("dense", "litefocus", "token_merging")]
    samplers = [sw.Sampler("default", 2), sw.Sampler("dpmsolver++", 2)]
    settings = sw.SweepSettings(weights_fingerprint(pipe), tuple(caps), tuple(configs), (0.64,), tuple(samplers),
                                tuple(seeds), audio_format="wav")
    return sw.Sweep(out, settings)


def test_a_sweep_resumes_where_it_stopped_and_refuses_other_settings(tmp_path, tiny_pipe):
    sweep = tiny_sweep(tmp_path / "s", tiny_pipe)
    sweep.check_out()
    seen = []  # the first barrier comes before anything is written: other processes may still be checking the folder

    def barrier():
        seen.append(sorted(p.name for p in (tmp_path / "s").iterdir()) if (tmp_path / "s").exists() else [])

    assert sw.run_sweep(tiny_pipe, sweep, progress=False, barrier=barrier) == 12
    assert seen[0] == [] and len(seen) == 3
    rows = sweep.rows()
    assert len(rows) == 12 and set(rows.id) == set(sweep.ids) and (rows.unet_calls == 2).all()
    assert (rows.unet_seconds_per_step > 0).all() and (rows.job_seconds >= rows.pipeline_seconds).all()
    first = {i: (tmp_path / "s" / sw.JOBS / f"{i}.wav").read_bytes() for i in sweep.ids}
    # a job whose row is missing (killed after its audio) runs again; the others are not touched
    lost = sweep.ids[3]
    (tmp_path / "s" / sw.JOBS / f"{lost}.json").unlink()
    (tmp_path / "s" / sw.JOBS / f".{lost}.wav.abc.wav").write_bytes(b"partial")  # a killed write's leftover
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / sw.JOBS).glob("*.json")}
    resumed = tiny_sweep(tmp_path / "s", tiny_pipe)
    resumed.check_out()
    assert sw.run_sweep(tiny_pipe, resumed, progress=False) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / sw.JOBS).glob("*.json")
            if p.name != f"{lost}.json"} == stamps
    assert {i: (tmp_path / "s" / sw.JOBS / f"{i}.wav").read_bytes() for i in sweep.ids} == first  # same bytes
    assert not list((tmp_path / "s" / sw.JOBS).glob(".*"))
    with pytest.raises(ValueError, match="differs in: seeds"):
        tiny_sweep(tmp_path / "s", tiny_pipe, seeds=(0, 1)).check_out()
    (tmp_path / "foreign").mkdir()
    write(tmp_path / "foreign" / "x.txt", "x")
    with pytest.raises(ValueError, match="holds files but no sweep.json"):
        tiny_sweep(tmp_path / "foreign", tiny_pipe).check_out()


def test_a_job_gives_the_same_audio_in_any_order(tmp_path, tiny_pipe):
    """Each job's noise and random choices come from its seed alone: run in reverse order, same bytes."""
    forward, backward = tiny_sweep(tmp_path / "a", tiny_pipe), tiny_sweep(tmp_path / "b", tiny_pipe)
    backward.jobs, backward.ids = backward.jobs[::-1], backward.ids[::-1]
    for sweep in (forward, backward):
        sw.run_sweep(tiny_pipe, sweep, progress=False)
    import soundfile

    for i in forward.ids:
        assert (tmp_path / "a" / sw.JOBS / f"{i}.wav").read_bytes() == (tmp_path / "b" / sw.JOBS / f"{i}.wav"
                                                                         ).read_bytes()
    audio = {i: soundfile.read(tmp_path / "a" / sw.JOBS / f"{i}.wav", dtype="float32")[0] for i in forward.ids}
    assert all(np.abs(a).max() > 0 for a in audio.values())  # float WAV keeps the tiny model's quiet output
    assert len({a.tobytes() for a in audio.values()}) == len(audio)  # and the jobs differ from each other


# ---------------------------------------------------------------- the command line
def sweep_args(captions: Path, out: Path, *extra) -> list[str]:
    return ["sweep", "--model", "tiny", "--captions", str(captions), "--configurations", "dense", "litefocus",
            "cross_frequency_only:0.4", "--seconds", "0.64", "1.28", "--steps", "6", "--samplers", "default",
            "dpmsolver++:3", "--threads", "1", "--audio-format", "wav", "--no-progress", "--out", str(out), *extra]


def test_sweep_bad_input_is_a_clear_error_before_any_generation(tmp_path, capsys):
    caps = write(tmp_path / "caps.txt", "a dog barking\n")
    assert main(sweep_args(write(tmp_path / "empty.txt", "\n"), tmp_path / "o")) == 2
    assert "holds no captions" in capsys.readouterr().err
    assert main(sweep_args(caps, tmp_path / "o", "--configurations", "fast")) == 2
    assert "unknown configuration 'fast'" in capsys.readouterr().err
    assert main(sweep_args(caps, tmp_path / "o", "--seconds", "0.01")) == 2
    assert "takes lengths of at least 0.04 s" in capsys.readouterr().err
    assert main(sweep_args(caps, tmp_path / "o", "--configurations", "litefocus@up_blocks.7")) == 2
    assert "litefocus@up_blocks.7: 'up_blocks.7'" in capsys.readouterr().err
    for too_many in (["--steps", "1001"], ["--samplers", "ddim:5000"]):  # issue 27, case 6: the folder got stuck
        assert main(sweep_args(caps, tmp_path / "o", *too_many)) == 2
        assert "from 1 to 1000" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    write(tmp_path / "busy" / "notes.txt", "mine")
    assert main(sweep_args(caps, tmp_path / "busy")) == 2
    assert "holds files but no sweep.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(sweep_args(caps, tmp_path / "o", "--first", "1")) == 0
    assert main(sweep_args(caps, tmp_path / "o", "--steps", "7")) == 2
    assert "differs in: samplers" in capsys.readouterr().err


def launch(args: list[str], processes: int) -> subprocess.Popen:
    """``accelerate launch`` of the litefocus command on this CPU machine (torchrun's launcher: accelerate's --cpu
    launcher starts several processes only through mpirun)."""
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000), "-m", "litefocus_cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_killed_and_resumed_match_one_process(tmp_path):
    """Two processes under accelerate launch; one is SIGKILLed mid-sweep; the same command completes the sweep with
    no job lost or run twice, and every clip is byte-identical to a one-process run's."""
    import psutil

    caps = write(tmp_path / "caps.txt", "a dog barking\nrain on a roof\nsomeone whistling\n")
    two, one = tmp_path / "two", tmp_path / "one"
    total = 3 * 3 * 2 * 2
    launcher = launch(sweep_args(caps, two), 2)
    jobs = two / sw.JOBS
    deadline = time.time() + 120
    while time.time() < deadline and launcher.poll() is None and len(list(jobs.glob("*.json"))) < 4:
        time.sleep(0.05)
    # the launcher's descendants from one snapshot of the process table (walking children() fails when a
    # short-lived helper exits mid-walk)
    table = {p.info["pid"]: p for p in psutil.process_iter(["pid", "ppid", "cmdline"])}

    def descends(pid):
        while pid in table and pid != launcher.pid:
            pid = table[pid].info["ppid"]
        return pid == launcher.pid

    workers = [p for pid, p in table.items() if pid != launcher.pid and descends(pid)
               and "litefocus_cli" in " ".join(p.info["cmdline"] or [])]
    assert launcher.poll() is None and len(workers) == 2, launcher.communicate()[0][-3000:]
    workers[1].send_signal(signal.SIGKILL)
    output = launcher.communicate(timeout=120)[0]
    assert launcher.returncode != 0, output[-3000:]
    before = {p.name: p.stat().st_mtime_ns for p in jobs.glob("*.json")}
    assert 4 <= len(before) < total
    resumed = launch(sweep_args(caps, two), 2)
    output = resumed.communicate(timeout=180)[0]
    assert resumed.returncode == 0, output[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in jobs.glob("*.json")}
    assert len(after) == total and all(after[name] == stamp for name, stamp in before.items())  # none ran twice
    assert main(sweep_args(caps, one)) == 0
    import pandas as pd

    rows = pd.read_csv(two / "jobs.csv")
    assert len(rows) == total and rows.id.is_unique and set(rows.process) == {0, 1}
    import soundfile

    for name in rows.audio:
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
        assert np.abs(soundfile.read(two / name)[0]).max() > 0
    assert not [p for p in jobs.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def minildm_sweep(tmp_path_factory):
    """A finished MiniLDM sweep (3 captions x dense, LiteFocus x 0.64 s, 2 steps) and a reference folder whose clip
    names are the captions' audio ids."""
    import soundfile

    from litefocus.models import weights_fingerprint
    from minildm import load_minildm

    root = tmp_path_factory.mktemp("evaluation")
    pipe = load_minildm()
    pipe.set_progress_bar_config(disable=True)
    caps = [sw.Caption(str(i), c, f"clip{i}") for i, c in
            enumerate(["a string quartet playing a chorale", "rain on a roof", "a man speaking english calmly"])]
    configs = [parse_configuration(c) for c in ("dense", "litefocus")]
    settings = sw.SweepSettings(weights_fingerprint(pipe), tuple(caps), tuple(configs), (0.64,),
                                (sw.Sampler("default", 2),))
    sweep = sw.Sweep(root / "sweep", settings)
    sw.run_sweep(pipe, sweep, threads=2, progress=False)
    rng = np.random.default_rng(0)
    (root / "reference").mkdir()
    for i in range(4):  # tones with a little noise, 0.64 s at 16 kHz
        t = np.arange(10240) / 16000
        clip = 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t) + 0.01 * rng.standard_normal(t.size)
        soundfile.write(root / "reference" / f"clip{i}.flac", clip, 16000)
    return root


def test_evaluate_sweep_matches_the_metrics_on_its_cached_embeddings(minildm_sweep):
    from analysis import protocols, quality
    from analysis import sweep_evaluation as se
    from analysis.evaluator import Evaluator

    evaluator = Evaluator.offline()
    out, reference = minildm_sweep / "sweep", minildm_sweep / "reference"
    table = se.evaluate_sweep(out, reference, evaluator, resamples=20, progress=False)
    cells = table[table.configuration != se.FLOOR]
    assert set(cells.configuration) == {"dense", "litefocus"} and set(cells.metric) == {"FAD", "KAD", "KL", "CLAP"}
    assert (cells.clips == 3).all() and (cells.reference_clips == 4).all() and cells.value.notna().all()
    assert set(table[table.configuration == se.FLOOR].metric) >= {"FAD", "KAD"}
    cache = out / "embeddings" / sweep_cache.evaluator_id(evaluator)
    rows = sw.read_rows(out)
    dense = rows[rows.configuration == "dense"].sort_values("caption_id")
    gen = np.stack([np.load(cache / f"{i}.npz")["audio"] for i in dense.id])
    ref = evaluator.embed(*protocols.read_folder(reference)[1:]).audio
    expected = quality.kernel_distance(gen, ref, resamples=0).value
    kad = cells[(cells.configuration == "dense") & (cells.metric == "KAD")].value.iloc[0]
    assert kad == pytest.approx(expected)
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    comparisons = se.compare_configurations(out, reference, evaluator, resamples=20)
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # nothing embedded twice
    paired = comparisons[comparisons.metric == "KAD"].iloc[0]
    lite = cells[(cells.configuration == "litefocus") & (cells.metric == "KAD")].value.iloc[0]
    assert (paired.configuration, paired.baseline, paired.pairs) == ("litefocus", "dense", 3)
    assert paired.captions == 3 and "3 captions: too few for the interval to resolve" in paired.note  # case 14
    assert paired.difference == pytest.approx(lite - kad)  # the same statistic, paired by caption
    paths = se.write_tables(table, minildm_sweep / "tables" / "t")
    import xarray as xr

    ds = xr.load_dataset(paths[1])
    assert float(ds.value.sel(configuration="dense", seconds=0.64, sampler="default:2", metric="KAD")) == \
        pytest.approx(kad)


def test_clip_table_holds_what_the_sweep_metrics_are_made_of(minildm_sweep):
    """Costs recomputed from the clip table (the block-ablation study's) equal evaluate-sweep's paired comparisons."""
    from studies.block_ablation.costs import cost_draws
    from analysis import sweep_evaluation as se
    from analysis.evaluator import Evaluator

    evaluator = Evaluator.offline()
    out, reference = minildm_sweep / "sweep", minildm_sweep / "reference"
    clips = se.clip_table(out, reference, evaluator)
    assert dict(clips.sizes) == dict(configuration=2, seconds=1, caption=3, dim=evaluator.audio_dim, reference=4)
    assert clips.unet_seconds_per_step.notnull().all() and clips.kl.notnull().all()
    comparisons = se.compare_configurations(out, reference, evaluator, resamples=20).set_index("metric")
    captions = ["0", "1", "2"]
    for metric, sign in (("KAD", 1), ("CLAP", -1), ("KL", 1)):  # a cost is positive when worse: a CLAP drop
        cost = cost_draws(clips, ["litefocus"], 0.64, metric, np.ones((1, 3)), captions)[0, 0]
        assert cost == pytest.approx(sign * comparisons.difference[metric])


def test_evaluate_sweep_checks_its_folders_before_loading_a_model(minildm_sweep, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate-sweep", str(minildm_sweep / "sweep"), "--reference", str(tmp_path / "empty")]) == 2
    assert "holds no audio files" in capsys.readouterr().err
    assert main(["evaluate-sweep", str(tmp_path), "--reference", str(minildm_sweep / "reference")]) == 2
    assert "holds no sweep.json" in capsys.readouterr().err
    assert main(["evaluate-sweep", str(minildm_sweep / "sweep"), "--reference", str(minildm_sweep / "reference"),
                 "--compare", "dense:dense"]) == 2
    assert "two different configurations" in capsys.readouterr().err


def test_reuse_copies_the_jobs_two_sweeps_share(minildm_sweep, tmp_path):
    from litefocus.files import read_json

    settings = sw.SweepSettings.from_json(read_json(minildm_sweep / "sweep" / sw.MANIFEST)["settings"])
    names = ("dense", "same_frequency_only", "litefocus@down_blocks.1+up_blocks.2")
    configs = tuple(parse_configuration(c) for c in names)
    other = sw.Sweep(tmp_path / "other", replace(settings, configurations=configs))
    other.write_manifest()
    assert other.adopt(minildm_sweep / "sweep") == 6  # dense, and LiteFocus under another name: the same jobs
    assert len(other.pending()) == 3 and all(j.configuration.name == "same_frequency_only" for _, j in other.pending())
    assert set(other.rows().configuration) == {"dense", "litefocus@down_blocks.1+up_blocks.2"}  # this sweep's names
    for job_id in other.done():
        assert (tmp_path / "other" / sw.JOBS / f"{job_id}.flac").read_bytes() == (
            minildm_sweep / "sweep" / sw.JOBS / f"{job_id}.flac").read_bytes()
    assert other.adopt(minildm_sweep / "sweep") == 0


# ---------------------------------------------------------------- the held-out set
def test_heldout_set_writes_captions_and_round_tripped_references(tmp_path):
    import csv

    import soundfile

    from studies.heldout_set import write_heldout_set
    from minildm import load_minildm

    corpus = tmp_path / "corpus"
    (corpus / "sources").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        t = np.arange(int(22 * 16000)) / 16000
        soundfile.write(corpus / "sources" / f"src{i}.wav",
                        (0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t) + 0.01 * rng.standard_normal(t.size)), 16000)
        rows.append(dict(source=f"src{i}", split="heldout", seconds=20.48, offset=1.0, category="music",
                         label="x", caption=f"tone number {i}"))
    rows.append(dict(rows[0], split="train"))
    with open(corpus / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    codec = load_minildm().codec
    out = tmp_path / "heldout"
    assert write_heldout_set(corpus, out, [2.56, 5.12], codec) == 3
    captions = read_captions(out / "captions.csv")
    assert sorted(c.audio for c in captions) == ["src0", "src1", "src2"]  # the reference names pair the clips
    assert {c.text for c in captions} == {"tone number 0", "tone number 1", "tone number 2"}
    for seconds in (2.56, 5.12):
        audio, rate = soundfile.read(out / "reference" / f"{seconds:g}s" / "src1.flac")
        assert rate == 16000 and len(audio) == int(round(seconds * 16000))
        source = soundfile.read(corpus / "sources" / "src1.wav")[0][16000: 16000 + len(audio)]
        expected = codec.to_audio(codec.mel(torch_tensor(source)))[0, : len(audio)]
        np.testing.assert_allclose(audio, expected, atol=2e-6)  # the clip from its offset, round-tripped
    stamp = (out / "reference" / "2.56s" / "src0.flac").stat().st_mtime_ns
    write_heldout_set(corpus, out, [2.56, 5.12], codec)
    assert (out / "reference" / "2.56s" / "src0.flac").stat().st_mtime_ns == stamp  # kept, not rewritten
    with pytest.raises(ValueError, match="20.48 s long"):
        write_heldout_set(corpus, out, [40.96], codec)


def torch_tensor(audio):
    import torch

    return torch.from_numpy(np.asarray(audio, dtype=np.float32))[None]


def test_a_spec_splits_into_its_parts():
    assert split_spec("litefocus@down_blocks.1+up_blocks.2:0.2/2.56") == Spec(
        "litefocus", ("down_blocks.1", "up_blocks.2"), "0.2", "2.56")
    assert split_spec("dense") == Spec("dense", (), "", "")


def test_evaluate_sweep_opens_the_folder_once_and_writes_the_literal_stem(minildm_sweep, tmp_path, monkeypatch):
    """Issue 22's data loss 1: --out ev/litefocus_r0.1 and ev/litefocus_r0.2 wrote one ev/litefocus_r0.csv."""
    from analysis import sweep_evaluation as se

    calls = {"read_rows": 0, "embed_jobs": 0, "check_reference": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    for name in calls:
        monkeypatch.setattr(se, name, counted(name, getattr(se, name)))
    out, reference = minildm_sweep / "sweep", minildm_sweep / "reference"
    for stem in ("litefocus_r0.1", "litefocus_r0.2"):
        assert main(["evaluate-sweep", str(out), "--reference", str(reference), "--resamples", "5",
                     "--out", str(tmp_path / "ev" / stem)]) == 0
    assert calls == {"read_rows": 2, "embed_jobs": 2, "check_reference": 2}  # once per command
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [
        "litefocus_r0.1.csv", "litefocus_r0.1.nc", "litefocus_r0.1_comparisons.csv",
        "litefocus_r0.2.csv", "litefocus_r0.2.nc", "litefocus_r0.2_comparisons.csv"]
    comparisons = pd.read_csv(tmp_path / "ev" / "litefocus_r0.1_comparisons.csv")
    assert set(comparisons.protocol) == {"clap_kad"} and comparisons.backbone.notna().all()  # every table names it


def test_sweep_settings_round_trip_through_the_manifest():
    caps = (sw.Caption("7", "a dog barking", "yt1"), sw.Caption("9", "rain", ""))
    configs = tuple(parse_configuration(c) for c in ("dense", "litefocus@up_blocks.2:0.2", "litefocus/2.56"))
    settings = sw.SweepSettings("abc", caps, configs, (2.56, 10.24), (sw.Sampler("dpmsolver++", 25),), (0, 3), 3.5,
                                "bfloat16", "wav")
    assert sw.SweepSettings.from_json(settings.to_json()) == settings
    assert settings.to_json()["samplers"] == ["dpmsolver++:25"] and settings.configuration_names[1] == \
        "litefocus@up_blocks.2:0.2"
    assert len(settings.jobs()) == 2 * 3 * 2 * 1 * 2


def test_a_job_whose_audio_was_deleted_or_whose_row_was_cut_short_runs_again(tmp_path, tiny_pipe):
    """Issue 22's data loss 2: 'rm S/jobs/ID.flac' then a rerun said every job was done; and a truncated row blocked
    every rerun."""
    sweep = tiny_sweep(tmp_path / "s", tiny_pipe, captions=1)
    sweep.check_out()
    sw.run_sweep(tiny_pipe, sweep, threads=2, progress=False)
    first, second = sorted(sweep.done())[:2]
    (sweep.out / "jobs" / f"{first}.wav").unlink()
    (sweep.out / "jobs" / f"{second}.json").write_text('{"id": "cut')
    assert {i for i, _ in sweep.pending()} == {first, second}
    with pytest.raises(ValueError, match=f"{second}.json is not whole JSON.*rerun the same litefocus sweep command"):
        sw.read_rows(sweep.out)
    assert sw.run_sweep(tiny_pipe, sweep, threads=2, progress=False) == 2
    assert sweep.pending() == [] and len(sw.read_rows(sweep.out)) == len(sweep.jobs)


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path, tiny_pipe):
    sweep = tiny_sweep(tmp_path / "s", tiny_pipe, captions=1)
    sweep.check_out()
    with sweep.lock():  # the first run, from another terminal
        other = tiny_sweep(tmp_path / "s", tiny_pipe, captions=1)
        other.check_out()
        with pytest.raises(ValueError, match="another litefocus sweep is writing into this folder now"):
            sw.run_sweep(tiny_pipe, other, threads=2, progress=False)
    assert sw.run_sweep(tiny_pipe, other, threads=2, progress=False) == len(other.jobs)  # after it, it runs


def test_reuse_copies_only_audio_in_this_sweeps_format(tmp_path, tiny_pipe):
    """Issue 22, case 15: --reuse of a WAV sweep into a FLAC sweep left WAV files under a manifest that says FLAC."""
    wav = tiny_sweep(tmp_path / "wav", tiny_pipe, captions=1)
    wav.check_out()
    sw.run_sweep(tiny_pipe, wav, threads=2, progress=False)
    flac = sw.Sweep(tmp_path / "flac", replace(wav.settings, audio_format="flac"))
    flac.write_manifest()
    assert flac.adopt(wav.out) == 0 and len(flac.pending()) == len(flac.jobs)
    assert not list((flac.out / "jobs").glob("*.wav"))


def test_evaluate_sweep_names_the_length_subfolder_and_the_silent_job(minildm_sweep, tmp_path, capsys):
    import shutil

    import soundfile

    reference = tmp_path / "R5"
    shutil.copytree(minildm_sweep / "reference", reference / "2.6s")  # a subfolder for another length only
    assert main(["evaluate-sweep", str(minildm_sweep / "sweep"), "--reference", str(reference)]) == 2
    assert "has length subfolders (2.6s) but none for the 0.64 s jobs: name it 0.64s" in capsys.readouterr().err
    copy = tmp_path / "sweep"
    shutil.copytree(minildm_sweep / "sweep", copy, ignore=shutil.ignore_patterns("embeddings"))
    row = sw.read_rows(copy).iloc[1]
    audio, rate = soundfile.read(copy / row.audio)
    soundfile.write(copy / row.audio, 0 * audio, rate)
    assert main(["evaluate-sweep", str(copy), "--reference", str(minildm_sweep / "reference")]) == 2
    assert f"job {row.id} ({row.audio})[0] is silent" in capsys.readouterr().err
