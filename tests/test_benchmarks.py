"""Smoke runs of the benchmark scripts at tiny lengths: they run, their rows are consistent, speed.py resumes."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.ablations import ABLATIONS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{script}", BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"benchmark_{script}"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_rows_bounds_and_resume(tmp_path, capsys):
    speed = load("speed")
    argv = ["--seconds", "0.64", "--repeats", "1", "--threads", "1", "--out", str(tmp_path),
            "--configurations", "litefocus", "token_merging"]
    speed.main(argv)
    rows = pd.read_csv(tmp_path / "speed.csv")
    assert list(rows.configuration) == ["dense", "litefocus", "token_merging"] and (rows.latent_time == 16).all()
    dense = rows.set_index("configuration").loc["dense"]
    assert dense.speedup == 1 and dense.bound_zero == 1 and dense.bound_flop == 1
    assert (rows.bound_zero >= rows.bound_flop).all() and (rows.bound_flop >= 1).all()
    assert ((rows.of_bound_flop - rows.speedup / rows.bound_flop).abs() < 1e-12).all()
    shares = pd.read_csv(tmp_path / "attention_share.csv")
    assert list(shares.level) == [1, 2, 3] and list(shares.freq_bins) == [8, 4, 2]
    assert ((shares.core_share > 0) & (shares.core_share < shares.module_share) & (shares.module_share < 1)).all()
    # a second run finds the length done and measures nothing
    capsys.readouterr()
    speed.main(argv)
    assert "every configuration is in" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "speed.csv"), rows)
    # a run with more configurations measures only the missing one (and dense beside it), keeping the others
    speed.main([*argv, "cross_frequency_only"])
    assert "measuring dense, cross_frequency_only; the others are in" in capsys.readouterr().out
    more = pd.read_csv(tmp_path / "speed.csv")
    assert sorted(more.configuration) == ["cross_frequency_only", "dense", "litefocus", "token_merging"]
    pd.testing.assert_frame_equal(more[more.configuration == "litefocus"].reset_index(drop=True),
                                  rows[rows.configuration == "litefocus"].reset_index(drop=True))
    # a length whose attention share was lost (killed between the two writes) gets it back, with no speed rows
    (tmp_path / "attention_share.csv").unlink()
    speed.main(argv)
    assert "measuring the attention share only" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "speed.csv"), more)
    assert list(pd.read_csv(tmp_path / "attention_share.csv").level) == [1, 2, 3]


def test_amdahl_flop_share_per_configuration():
    by_name = {c.name: c for c in ABLATIONS}
    module = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    share = lambda name, m=module, f=8, s=81.92: by_name[name].at_length(s).core_share(m, f)  # noqa: E731
    assert share("litefocus") == pytest.approx(1 / 8 + 0.1)
    assert share("same_frequency_only") == pytest.approx(1 / 8)
    assert share("cross_frequency_only") == pytest.approx(0.1)
    assert share("token_merging") == pytest.approx(0.25)
    assert share("token_merging", module.replace("attn1", "attn2")) == 1.0
    assert share("litefocus", module.replace("down_blocks.1", "down_blocks.2"), 4) == 1.0
    assert share("litefocus_all_levels", "mid_block.attentions.0.transformer_blocks.0.attn1", 2) == 0.6
    assert share("same_frequency_all_levels", "up_blocks.1.attentions.2.transformer_blocks.0.attn1", 4) == 0.25
    # the fixed-keys variant keeps floor(0.1 * N(10.24 s)) random keys: r halves each time the length doubles
    assert share("litefocus_all_levels_fixed_keys", s=10.24) == pytest.approx(1 / 8 + 0.1)
    assert share("litefocus_all_levels_fixed_keys", s=5.12) == pytest.approx(1 / 8 + 0.1)
    assert share("litefocus_all_levels_fixed_keys", s=81.92) == pytest.approx(1 / 8 + 0.1 / 8)


@pytest.mark.parametrize("script, args", [
    ("kernel.py", ["--time-steps", "16", "--repeats", "1", "--csv", "", "--operations-csv", ""]),
    ("measure_sparsity.py", ["--seconds", "0.64", "--threads", "1", "--csv", ""]),
    ("gpu.py", ["--dry-run"]),  # the device check, on this CPU
    ("baselines.py", ["--seconds", "0.64", "--repeats", "1", "--no-compile", "--csv", ""]),
])
def test_benchmark_scripts_run(script, args):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dense" in done.stdout or "recorded forward" in done.stdout


def test_the_device_check_keeps_its_table_when_a_form_fails(tmp_path):
    """Issue 29, item 1: the first failure (fp32 varlen in flash) ended gpu.py before it wrote anything. Now a form
    that raises is a row naming the error, and the table is written after every section."""
    import pandas as pd

    csv = tmp_path / "gpu.csv"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--dry-run", "--fail-form", "concat",
                           "--csv", str(csv)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(csv)
    assert list(table.section.unique()) == ["backend", "exactness", "core", "unet"]
    failed = table[table.form == "concat"]
    assert len(failed) == 3 and failed.error.str.contains("concat made to fail").all()
    others = table[(table.section == "exactness") & ~table.form.isin(["concat", "exact_varlen"])]
    assert (others.relative_error < 1e-5).all() and others.error.isna().all()
    varlen = table[table.form == "exact_varlen"]
    assert varlen.note.str.contains("needs a CUDA device").all()  # unavailable, with its reason
    assert {"device", "torch", "cuda", "cudnn"} <= set(table.columns)
    assert set(table[table.section == "unet"].form) == {"dense", "litefocus"}


def test_speed_benchmark_rejects_bad_lengths(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("speed").main(["--seconds", "0.1", "--out", str(tmp_path)])
    assert "--seconds must be at least 0.32" in capsys.readouterr().err
    assert not (tmp_path / "speed.csv").exists()


def test_quality_benchmark_writes_its_row(tmp_path):
    quality = load("quality")
    csv = tmp_path / "quality.csv"
    argv = ["--clips", "3", "--seconds", "1.0", "--dims", "8", "--threads", "1", "--csv", str(csv)]
    quality.main(argv)
    quality.main(argv)  # a second run adds a row
    rows = pd.read_csv(csv)
    assert len(rows) == 2 and (rows.clips == 3).all()
    assert (rows.fad_value_only_s <= rows.fad_s).all() and (rows.embed_s > 0).all()
    with pytest.raises(SystemExit):
        quality.main(["--clips", "1"])


def test_sweep_benchmark_writes_its_row(tmp_path):
    csv = tmp_path / "sweep.csv"
    load("sweep").main(["--captions", "1", "--rounds", "1", "--seconds", "0.64", "--steps", "2", "--overhead-jobs",
                        "1", "--csv", str(csv)])
    row = pd.read_csv(csv).iloc[0]
    assert row.jobs == 1 and row.rounds == 1 and row.speedup_vs_1_thread_min > 0
    assert row.jobs_speedup_vs_2_threads_max > 0 and 0 < row.overhead_share < 1 and row.generation_s > 0
    with pytest.raises(SystemExit):
        load("sweep").main(["--captions", "9"])


def test_the_prepared_gpu_command_runs_every_stage_under_its_own_timeout(tmp_path):
    """Issue 29, item 2, on a CPU: with a stand-in python3 that fails the tests and hangs in the full benchmark, every
    stage still runs, the hung one is cut at its limit, and the summary names how each ended."""
    stub = tmp_path / "bin" / "python3"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\ncase "$*" in "-m pytest"*) exit 1;; *"--quick"*) exit 0;; '
                    '*gpu.py*) exec sleep 600;; esac\nexit 0\n')
    stub.chmod(0o755)
    script = (BENCHMARKS / "gpu_run.sh").read_text().replace("stage full 240", "stage full 2")
    (tmp_path / "run.sh").write_text(script)
    out = tmp_path / "out"
    env = dict(os.environ, PATH=f"{stub.parent}:{os.environ['PATH']}")
    done = subprocess.run(["bash", str(tmp_path / "run.sh"), str(out)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stderr
    lines = (out / "summary.txt").read_text().splitlines()
    stages = [line.split(":")[0] for line in lines[:5]]
    assert stages == ["install", "versions", "tests", "quick", "full"]
    assert "failed (exit 1)" in lines[2] and lines[3].startswith("quick: ok") and "cut at its 2 s limit" in lines[4]
    assert {p.name for p in out.iterdir()} >= {"install.log", "tests.log", "quick.log", "full.log", "summary.txt"}


def test_minildm_sampling_benchmark_adds_its_rows(tmp_path):
    csv = tmp_path / "sampling.csv"
    argv = ["--rounds", "1", "--seconds", "0.64", "--steps", "1", "--threads", "1", "--csv", str(csv)]
    load("minildm_sampling").main(argv)
    load("minildm_sampling").main(argv)  # a second run adds its rows
    rows = pd.read_csv(csv)
    assert sorted(rows.model) == ["MiniLDM 2", "MiniLDM 2", "MiniLDM 3", "MiniLDM 3"] and (rows.steps == 1).all()
    assert (rows.min_s <= rows.median_s).all() and (rows.median_s <= rows.max_s).all()
    assert (rows.minildm3_over_minildm2 > 0).all()
    with pytest.raises(SystemExit):
        load("minildm_sampling").main(["--rounds", "0"])
