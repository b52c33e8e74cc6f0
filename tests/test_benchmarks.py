"""Smoke runs of the benchmark scripts at tiny lengths: they run, their rows are consistent, speed.py resumes."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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
    speed.main(argv)
    assert "already in" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "speed.csv"), rows)


def test_amdahl_flop_share_per_configuration():
    speed = load("speed")
    by_name = {c.name: c for c in speed.CONFIGURATIONS}
    module = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    assert by_name["litefocus"].core_share(module, 8) == pytest.approx(1 / 8 + 0.1)
    assert by_name["same_frequency_only"].core_share(module, 8) == pytest.approx(1 / 8)
    assert by_name["cross_frequency_only"].core_share(module, 8) == pytest.approx(0.1)
    assert by_name["token_merging"].core_share(module, 8) == pytest.approx(0.25)
    assert by_name["token_merging"].core_share(module.replace("attn1", "attn2"), 8) == 1.0
    assert by_name["litefocus"].core_share(module.replace("down_blocks.1", "down_blocks.2"), 4) == 1.0
    assert by_name["litefocus_all_levels"].core_share("mid_block.attentions.0.transformer_blocks.0.attn1", 2) == 0.6


@pytest.mark.parametrize("script, args", [
    ("kernel.py", ["--time-steps", "16", "--repeats", "1", "--csv", ""]),
    ("measure_sparsity.py", ["--seconds", "0.64", "--threads", "1", "--csv", ""]),
])
def test_benchmark_scripts_run(script, args):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dense" in done.stdout or "recorded forward" in done.stdout


def test_speed_benchmark_rejects_bad_lengths(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("speed").main(["--seconds", "0.1", "--out", str(tmp_path)])
    assert "--seconds must be at least 0.32" in capsys.readouterr().err
    assert not (tmp_path / "speed.csv").exists()
