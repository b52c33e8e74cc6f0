"""The command-line main job, end to end on the tiny model."""

import json

import numpy as np
from scipy.io import wavfile

from litefocus.cli import main


def test_generate_writes_both_renders_and_a_summary(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--seconds", "2.6", "--steps", "2", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["modules"] == 20 and summary["dense_s"] > 0 and summary["litefocus_s"] > 0
    rate, dense = wavfile.read(tmp_path / "dense.wav")
    _, sparse = wavfile.read(tmp_path / "litefocus.wav")
    assert rate == 16000 and dense.shape == sparse.shape == (41600,)
    assert "speed-up" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_generate_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "--model", "tiny", "--blocks", "down_blocks.9", "--out", str(tmp_path)]) == 2
    assert "blocks with self-attention: down_blocks.1" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny", "--ratio", "2", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_sampling_rate_comes_from_the_pipeline():
    from litefocus.cli import _sampling_rate
    from litefocus.models import tiny_audioldm2_pipeline
    from minildm.train import build

    assert _sampling_rate(tiny_audioldm2_pipeline()) == 16000
    codec_pipe = build(seed=0)
    codec_pipe.codec.register_to_config(sampling_rate=22050)
    assert _sampling_rate(codec_pipe) == 22050


def test_default_pipeline_waits_for_a_model_that_samples(tmp_path, monkeypatch):
    import json

    import minildm
    from litefocus import models

    monkeypatch.setattr(minildm, "DEFAULT_PATH", tmp_path)
    (tmp_path / "evaluation.json").write_text(json.dumps({"samples_from_noise": False}))
    _, name = models.default_pipeline()
    assert name == "tiny"
