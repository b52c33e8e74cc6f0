"""What lengths a pipeline can generate: its shortest clip and the memory a length needs, refused before it runs."""

import pytest

from litefocus import lengths
from litefocus.models import tiny_audioldm2_pipeline
from litefocus_cli.main import main
from minildm.train import build


@pytest.fixture(scope="module")
def tiny_pipe():
    return tiny_audioldm2_pipeline()


def test_lengths_the_model_cannot_take(tiny_pipe):
    assert lengths.minimum_seconds(tiny_pipe) == pytest.approx(0.04)  # 160 / 16000 hop x VAE scale 4
    with pytest.raises(ValueError, match="takes lengths of at least"):
        lengths.check_seconds(tiny_pipe, [10.24, 0.01])


@pytest.mark.parametrize("pipe", [tiny_audioldm2_pipeline(), build(0)], ids=["vocoder", "codec"])
def test_the_estimate_grows_with_the_length_and_the_prompts(pipe):
    one = lengths.generation_bytes(pipe, 10.24)
    assert one > 0 and lengths.generation_bytes(pipe, 20.48) == pytest.approx(2 * one, rel=1e-6)
    assert one < lengths.generation_bytes(pipe, 10.24, prompts=2) <= 2 * one


def test_the_codec_decoder_term_is_griffin_lims_spectrograms():
    """MiniLDM decodes one clip at a time: six complex64 spectrograms of n_fft / 2 + 1 bins (513) at 100 frames a
    second, beside the UNet's activations and the waveforms, which grow with the prompts."""
    pipe = build(0)
    seconds = 10.24
    one, two = (lengths.generation_bytes(pipe, seconds, prompts=p) for p in (1, 2))
    batch_terms = two - one  # everything but the decoder
    assert one - batch_terms == pytest.approx(6 * 513 * 1024 * 8, rel=1e-6)


def test_a_length_beyond_the_free_memory_is_refused_with_its_estimate(tiny_pipe):
    with pytest.raises(MemoryError, match=r"--seconds 100000: generating it needs about \d+\.\d GB.*--max-memory-gb"):
        lengths.check_seconds(tiny_pipe, [10.24, 100000.0])
    lengths.check_seconds(tiny_pipe, [100000.0], max_gb=1e6)  # a user who means it
    with pytest.raises(MemoryError, match="--max-memory-gb 0.001"):
        lengths.check_seconds(tiny_pipe, [10.24], max_gb=0.001)
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="must be a positive number of GB"):
            lengths.check_seconds(tiny_pipe, [10.24], max_gb=bad)


def test_the_commands_refuse_a_length_typo_before_generating(tmp_path, capsys):
    for command in ("generate", "measure"):
        out = tmp_path / command
        assert main([command, "--model", "tiny", "--seconds", "100000", "--steps", "1", "--out", str(out)]) == 2
        assert "--seconds 100000: generating it needs about" in capsys.readouterr().err and not out.exists()
    assert main(["generate", "--model", "tiny", "--max-memory-gb", "-1", "--out", str(tmp_path / "g")]) == 2
    assert "--max-memory-gb must be a positive number of GB" in capsys.readouterr().err
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog barks\n")
    assert main(["sweep", "--model", "tiny", "--captions", str(captions), "--seconds", "100000", "--steps", "1",
                 "--no-progress", "--out", str(tmp_path / "sweep")]) == 2
    assert "--seconds 100000: generating it needs about" in capsys.readouterr().err
    assert not (tmp_path / "sweep" / "sweep.json").exists()
