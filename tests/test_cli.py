"""The command-line main job, end to end on the tiny model."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

from litefocus_cli.main import main


def test_generate_writes_both_renders_and_a_summary(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--seconds", "2.6", "--steps", "2", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["modules"] == 20 and summary["dense_s"] > 0 and summary["litefocus_s"] > 0
    rate, dense = wavfile.read(tmp_path / "dense.wav")
    _, sparse = wavfile.read(tmp_path / "litefocus.wav")
    assert rate == 16000 and dense.shape == sparse.shape == (41600,) and dense.dtype == np.float32
    assert np.abs(dense).max() > 0  # random weights: quiet, not zero (16-bit PCM rounded it to 0)
    assert "speed-up" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_generate_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--blocks", "down_blocks.9", "--out", str(tmp_path)]) == 2
    assert "blocks with self-attention: down_blocks.1" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny", "--ratio", "2", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_sampling_rate_comes_from_the_pipeline():
    from litefocus.lengths import sampling_rate as _sampling_rate
    from litefocus.models import tiny_audioldm2_pipeline
    from minildm.train import build

    assert _sampling_rate(tiny_audioldm2_pipeline()) == 16000
    codec_pipe = build(seed=0)
    codec_pipe.codec.register_to_config(sampling_rate=22050)
    assert _sampling_rate(codec_pipe) == 22050


def test_default_pipeline_waits_for_a_model_that_samples(tmp_path, monkeypatch):
    import json

    from minildm import default_pipeline

    with pytest.raises(FileNotFoundError, match=r"no embedded default model .* at .*model_index.json.*Set "
                       r"LITEFOCUS_DATA.*or run from a clone of the repository, where"):  # issue 27: a wheel has no make
        default_pipeline(path=tmp_path)
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "evaluation.json").write_text(json.dumps({"samples_from_noise": False}))
    _, name = default_pipeline(path=tmp_path)
    assert name == "tiny"
    (tmp_path / "evaluation.json").write_text('{"samples_from_noi')  # truncated
    with pytest.raises(ValueError, match="evaluation.json is not valid JSON"):
        default_pipeline(path=tmp_path)


@pytest.mark.parametrize("arguments, message", [
    (["--seconds", "inf"], "--seconds must be a positive finite"),
    (["--seconds", "nan"], "--seconds must be a positive finite"),
    (["--seconds", "0"], "--seconds must be a positive finite"),
    (["--seed", "-1"], r"--seed: seed must lie in \[0, 2\*\*64\)"),
    (["--steps", "0"], "--steps must be an integer from 1 to 1000"),
    (["--steps", "1001"], "--steps must be an integer from 1 to 1000"),
    (["--min-ratio", "nan"], "--min-ratio must be a finite number"),
    (["--queries", "0"], "--queries must be at least 1"),
    (["--budget", "KAD=inf"], "--budget KAD=inf: give METRIC=COST with METRIC one of KAD, CLAP, KL"),
    (["--budget", "FAD=0"], "--budget FAD=0: give METRIC=COST"),
    (["--budget", "KAD=0", "--target-seconds", "30"], r"--target-seconds: seconds=30.0: .* has the attention share at \[10.24, 20.48"),
])
def test_measure_bad_arguments_fail_before_loading(tmp_path, capsys, monkeypatch, arguments, message):
    from litefocus_cli import models

    monkeypatch.setattr(models, "load_model", lambda *a: pytest.fail("loaded a model despite a bad argument"))
    assert main(["measure", *arguments, "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_generate_bad_union_and_ratio(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--model", "tiny", "--union", "sum", "--out", str(tmp_path / "g")])
    assert main(["generate", "--model", "tiny", "--ratio", "nan", "--out", str(tmp_path / "g")]) == 2
    assert "ratio must lie in [0, 1]" in capsys.readouterr().err


def test_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    from litefocus_cli import models

    monkeypatch.setattr(models, "load_model", lambda *a: pytest.fail("loaded a model despite a bad --out"))
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    assert main(["measure", "--out", str(a_file)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["generate", "--out", str(foreign)]) == 2
    assert "did not write" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "mine"
    assert main(["generate", "--out", str(a_file / "new")]) == 2  # no folder can be made under a file
    assert "is a file, so no folder can be made under it" in capsys.readouterr().err
    for command in ("measure", "generate"):  # root passes os.access on /proc; a write there fails (issue 22, 28)
        assert main([command, "--out", "/proc/litefocus-out"]) == 2
        assert "--out /proc/litefocus-out: cannot write in /proc" in capsys.readouterr().err
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog barking\n")
    assert main(["sweep", "--captions", str(captions), "--seconds", "1.28", "--out", "/proc/litefocus-sweep"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err


def test_evaluate_sweep_into_a_folder_it_cannot_write_stops_before_any_model(tmp_path, capsys, monkeypatch):
    import tempfile

    from analysis import sweep_evaluation as se
    from litefocus_cli import evaluate

    monkeypatch.setattr(se.SweepResults, "open", lambda *a, **k: object())
    monkeypatch.setattr(evaluate, "load_evaluator", lambda *a: pytest.fail("loaded an evaluator"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # a read-only mount (root ignores permission bits)
    assert main(["evaluate-sweep", str(tmp_path), "--reference", str(tmp_path)]) == 2
    assert "the sweep folder (its embeddings are cached there)" in capsys.readouterr().err


def test_evaluate_checks_its_out_before_any_model(tmp_path, capsys, monkeypatch):
    """Issue 27, case 10: a folder named x.csv, or one it cannot write, failed after the whole evaluation."""
    import soundfile

    from litefocus_cli import evaluate

    monkeypatch.setattr(evaluate, "load_evaluator", lambda *a: pytest.fail("loaded an evaluator"))
    for folder in ("gen", "ref"):
        (tmp_path / folder).mkdir()
        soundfile.write(tmp_path / folder / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    (tmp_path / "x.csv").mkdir()
    base = ["evaluate", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref")]
    assert main([*base, "--out", str(tmp_path / "x.csv")]) == 2
    assert "is a folder; name a .csv file" in capsys.readouterr().err
    assert main([*base, "--out", "/proc/litefocus-table.csv"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err


def test_a_rerun_replaces_its_own_folder_whole(tmp_path):
    out = tmp_path / "gen"
    arguments = ["generate", "--model", "tiny", "--seconds", "1.28", "--steps", "1", "--out", str(out)]
    assert main(arguments) == 0
    first = json.loads((out / "run.json").read_text())
    assert first["command"] == "generate" and first["seconds"] == 1.28
    (out / "stale.txt").write_text("from an older run of generate")
    assert main([*arguments[:-4], "--steps", "2", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["steps"] == 2
    assert not (out / "stale.txt").exists()  # never files of two runs in one folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]  # nothing temporary left beside it


INTERRUPTED = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the parent ignores SIGINT
from litefocus_cli import main as cli
import litefocus.files as files
original = files.write_wav
def write_then_die(path, *args):
    original(path, *args)
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
files.write_wav = write_then_die
sys.exit(cli.main(["generate", "--model", "tiny", "--seconds", "1.28", "--steps", "1", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_an_interrupted_run_leaves_the_previous_results_and_no_temporary_file(tmp_path, signal_name):
    out = tmp_path / "gen"
    assert main(["generate", "--model", "tiny", "--seconds", "1.28", "--steps", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    killed = subprocess.run([sys.executable, "-c", INTERRUPTED, str(out), signal_name], capture_output=True)
    assert killed.returncode != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier run's set, untouched
    if signal_name == "SIGINT":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]
    # the next run removes what a killed run left, and completes
    assert main(["generate", "--model", "tiny", "--seconds", "1.28", "--steps", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]


def test_measure_takes_a_local_folder_of_this_projects_pipeline(tmp_path):
    from minildm import DEFAULT_PATH

    assert main(["measure", "--model", str(DEFAULT_PATH), "--seconds", "1.28", "--steps", "1", "--queries", "2",
                 "--blocks", "down_blocks.1", "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "run.json").read_text())["model"] == str(DEFAULT_PATH)


def test_out_that_is_a_link_or_dot_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """Issue 22's data loss 3 (a link to an earlier run: results written, then the link replaced by a folder) and
    case 28 ('--out .': the whole run, then an error)."""
    from litefocus_cli import models

    monkeypatch.setattr(models, "load_model", lambda *a: pytest.fail("loaded a model despite a bad --out"))
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "run.json").write_text('{"command": "generate"}')
    (tmp_path / "link").symlink_to(earlier)
    assert main(["generate", "--out", str(tmp_path / "link")]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert (tmp_path / "link").is_symlink() and (earlier / "run.json").is_file()
    monkeypatch.chdir(tmp_path)
    assert main(["measure", "--out", "."]) == 2
    assert "give a folder by its name" in capsys.readouterr().err


def test_an_unreachable_public_evaluator_gets_command_line_advice(monkeypatch):
    """Issue 27, also: HF_HUB_OFFLINE=1 litefocus evaluate --evaluator public advised "pass its folder as clap="."""
    from analysis.evaluator import Evaluator
    from litefocus_cli.evaluate import load_evaluator

    def offline(*args, **kwargs):
        raise OSError("cannot load CLAP 'laion/clap-htsat-unfused' ... pass its folder as clap=")

    monkeypatch.setattr(Evaluator, "from_pretrained", offline)
    with pytest.raises(OSError, match="use --evaluator offline") as raised:
        load_evaluator("public")
    assert "clap=" not in str(raised.value)
