"""Model builders: the full-size architecture, and the offline failure of real loading."""

import pytest
import torch
from diffusers.models.attention_processor import Attention

import litefocus
from litefocus.models import audioldm2_unet, load_pipeline


def test_full_size_unet_matches_audioldm2():
    unet = audioldm2_unet()
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(346.9e6, rel=1e-3)
    assert sum(isinstance(m, Attention) for m in unet.modules()) == 96
    assert len(litefocus.self_attention_modules(unet)) == 64
    level1 = litefocus.self_attention_modules(unet, litefocus.PAPER_BLOCKS)
    assert len(level1) == 20
    assert {unet.get_submodule(n).heads for n in level1} == {8}
    assert {unet.get_submodule(n).to_q.out_features // 8 for n in level1} == {32}  # head dim 32 at level 1


def test_load_pipeline_offline_says_how_to_provide_weights(tmp_path):
    with pytest.raises(OSError, match="save_pretrained"):
        load_pipeline("cvssp/no-such-model-offline")


def test_load_pipeline_takes_a_path_and_finds_this_projects_class():
    from pathlib import Path

    from minildm import DEFAULT_PATH, MiniLDMPipeline

    pipe = load_pipeline(Path(DEFAULT_PATH))
    assert isinstance(pipe, MiniLDMPipeline) and pipe.unet.dtype == torch.float32
    assert type(load_pipeline(str(DEFAULT_PATH))) is MiniLDMPipeline


def test_load_pipeline_errors_for_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no model_index.json"):
        load_pipeline(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder with a model_index.json"):
        load_pipeline(tmp_path / "missing")
    (tmp_path / "model_index.json").write_text('{"_class_name": "NoSuchPipeline", "unet": ["nowhere", "X"]}')
    with pytest.raises(ValueError, match="names the pipeline class 'NoSuchPipeline'"):
        load_pipeline(tmp_path)


@pytest.mark.parametrize("bad", [None, "", "  "])
def test_load_pipeline_names_what_it_takes(bad):
    """Issue 22, case 24: None and '' reached diffusers' traceback; '~/...' was not expanded."""
    from litefocus.models import load_pipeline

    with pytest.raises(ValueError, match="a hub id like cvssp/audioldm2 or a folder"):
        load_pipeline(bad)


def test_load_pipeline_expands_the_home_folder(monkeypatch, tmp_path):
    from litefocus.models import load_pipeline
    from minildm import DEFAULT_PATH, MiniLDMPipeline

    monkeypatch.setenv("HOME", str(DEFAULT_PATH.parent))
    assert type(load_pipeline("~/minildm")) is MiniLDMPipeline


def test_the_tiny_pipeline_returns_several_waveforms_a_prompt_unranked():
    import pytest

    from litefocus.models import tiny_audioldm2_pipeline

    pipe = tiny_audioldm2_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    run = lambda n: pipe("a dog", num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=n,
                         generator=torch.Generator().manual_seed(0)).audios
    with pytest.warns(UserWarning, match="does not rank its waveforms"):
        two = run(2)
    assert two.shape[0] == 2  # in the order they were generated
    assert not (two[0] == two[1]).all()
