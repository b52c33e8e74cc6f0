"""MiniLDM: seeded data, the invertible codec, save/load, and the shipped weights' fingerprint."""

import json
import re

import numpy as np
import pytest
import torch
from conftest import write_corpus

import litefocus
from minildm import DEFAULT_PATH, MiniLDMPipeline, load_minildm
from minildm.codec import MelCodec
from minildm.data import KINDS, Event, make_clip, scene_vocabulary, synthesize


def test_clips_are_a_pure_function_of_the_seed():
    a, b, c = make_clip(7), make_clip(7), make_clip(8)
    assert np.array_equal(a.audio, b.audio) and a.caption == b.caption
    assert not np.array_equal(a.audio, c.audio)
    assert a.audio.dtype == np.float32 and a.audio.shape == (40960,) and np.abs(a.audio).max() <= 0.9 + 1e-6
    words = set(scene_vocabulary())
    for seed in range(50):
        clip = make_clip(seed)
        assert set(re.findall(r"[a-z]+", clip.caption)) <= words  # the caption encoder's word rule
        assert 1 <= len(clip.events) <= 2 and all(e.kind in KINDS for e in clip.events)


@pytest.mark.parametrize("register, low_hz, high_hz", [("low", 90, 300), ("high", 1200, 5000)])
def test_a_tone_sits_in_its_register(register, low_hz, high_hz):
    audio = synthesize((Event("tone", register, "whole"),), 1.0, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * 16000 / audio.size
    assert low_hz <= peak_hz <= high_hz


def test_a_rising_sweep_rises_and_a_burst_is_short():
    rng = np.random.default_rng(1)
    codec = MelCodec()
    mel = codec.mel(torch.from_numpy(synthesize((Event("sweep", "mid", "whole", direction="up"),), 2.56, rng))[None])[0]
    peak_bin = mel.argmax(dim=1).float()
    assert peak_bin[-40:].mean() > peak_bin[:40].mean() + 5
    burst = synthesize((Event("tone", "mid", "burst"),), 2.56, rng)
    assert (np.abs(burst) > 0.05).mean() < 0.3


def test_codec_is_invertible_and_has_audioldm2_geometry():
    codec = MelCodec()
    codec.latent_mean.normal_()
    codec.latent_std.uniform_(0.5, 2.0)
    mel = codec.mel(torch.from_numpy(make_clip(3).audio)[None])
    assert mel.shape == (1, 256, 64)
    latents = codec.encode(mel)
    assert latents.shape == (1, 16, 64, 16)  # time / 4, 64 mel bins / 4 = 16 frequency bins
    torch.testing.assert_close(codec.decode(latents), mel, atol=1e-5, rtol=1e-5)
    audio = codec.to_audio(mel, n_iter=4)
    assert audio.shape == (1, 256 * 160) and np.isfinite(audio).all()
    assert np.array_equal(codec.to_audio(mel, n_iter=4), audio)  # Griffin-Lim's initial phase is seeded
    assert not np.array_equal(codec.to_audio(mel, n_iter=4, seed=1), audio)


def test_untrained_pipeline_saves_loads_and_takes_litefocus(tmp_path):
    from minildm.train import build

    pipe = build(seed=0)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "m")
    loaded = load_minildm(tmp_path / "m")
    assert isinstance(loaded, MiniLDMPipeline) and loaded.caption_encoder.config.vocabulary == scene_vocabulary()
    run = lambda p: p("a low tone", audio_length_in_s=1.3, num_inference_steps=2, output_type="latent",
                      generator=torch.Generator().manual_seed(0)).audios
    torch.testing.assert_close(run(loaded), run(pipe))
    assert run(pipe).shape == (1, 16, 33, 16)  # 1.3 s -> 130 frames -> 33 latent time bins (odd)
    names = litefocus.self_attention_modules(pipe, litefocus.PAPER_BLOCKS)
    assert names and all(n.startswith(litefocus.PAPER_BLOCKS) for n in names)
    with litefocus.enabled(pipe):
        assert run(pipe).shape == (1, 16, 33, 16)
    with pytest.raises(FileNotFoundError, match="make minildm3"):
        load_minildm(tmp_path / "missing")


def test_shipped_weights_reproduce_their_fingerprint():
    """Catches a broken weight file or a changed architecture: a fixed-seed generation, summarized."""
    from minildm.classifiers import fingerprint

    assert (DEFAULT_PATH / "model_index.json").is_file(), "data/minildm3 is missing: train with make minildm3"
    stored = json.loads((DEFAULT_PATH / "evaluation.json").read_text())["fingerprint"]
    pipe = load_minildm()
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(fingerprint(pipe), stored, atol=2e-3)


def test_caption_features_ignore_gain_and_floor_but_not_content():
    from minildm.classifiers import corrupt, features

    g = torch.Generator().manual_seed(0)
    mel = torch.randn(4, 64, 64, generator=g) * 0.3 - 6.0  # a background at -6
    mel[:, :, 10] += 5.0  # a tone in bin 10
    torch.testing.assert_close(features(mel + 2.5), features(mel))  # a gain shifts the floor too
    moved = mel.clone()
    moved[:, :, 10] -= 5.0
    moved[:, :, 40] += 5.0  # the same tone, higher
    assert (features(moved) - features(mel)).abs().max() > 1.0
    assert (features(mel)[:, 10] > 3).all() and (features(mel)[:, 40] == 0).all()  # energy above the floor, per bin
    torch.testing.assert_close(corrupt(mel, seed=1), corrupt(mel, seed=1))
    assert not torch.allclose(corrupt(mel, seed=1), corrupt(mel, seed=2))


def test_training_never_deletes_a_folder_and_refuses_other_settings_on_resume(tmp_path):
    from minildm import train

    existing = tmp_path / "shipped"
    existing.mkdir()
    (existing / "model_card.md").write_text("keep me")
    quick = ["--steps", "1", "--clips", "4", "--batch", "2", "--seconds", "0.64", "--threads", "1",
             "--work", str(tmp_path / "work")]
    with pytest.raises(SystemExit):
        train.main([*quick, "--out", str(existing)])
    assert [p.name for p in existing.iterdir()] == ["model_card.md"]
    train.main([*quick, "--out", str(tmp_path / "new")])
    assert (tmp_path / "new" / "model_index.json").is_file() and (tmp_path / "new" / "training_log.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "shipped", "work"]  # no partial folder left
    with pytest.raises(SystemExit, match="--batch 2 there, 3 now"):
        train.main([*quick[:4], "--batch", "3", *quick[6:], "--out", str(tmp_path / "newer")])
    assert not (tmp_path / "newer").exists()


def test_training_default_out_is_not_the_shipped_model():
    import argparse

    from minildm import train

    seen = {}
    original = argparse.ArgumentParser.parse_args
    try:
        def capture(self, argv=None, namespace=None):
            seen.update(vars(original(self, argv, namespace)))
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = capture
        with pytest.raises(SystemExit):
            train.main([])
    finally:
        argparse.ArgumentParser.parse_args = original
    assert seen["out"].resolve() != DEFAULT_PATH.resolve()


def test_band_identity_is_the_share_of_variance_between_mel_bins():
    from studies.minildm.evaluation import band_identity

    assert band_identity(torch.arange(8.0).repeat(2, 5, 1)) == pytest.approx(1.0)  # each bin one value
    assert band_identity(torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]])) == pytest.approx(0.0)  # equal bin means
    # bins at 0 and 2, each +-1 around its mean: between-bin variance 1, within 1
    mel = torch.tensor([[[1.0, 3.0], [-1.0, 1.0]]])
    assert band_identity(mel) == pytest.approx(0.5)


def test_training_on_a_corpus_takes_its_train_clips_and_caption_words(tmp_path):
    from minildm import corpus, train

    root = tmp_path / "corpus"
    sources = [corpus.Source("a", "train", "music", "organ", seconds=4.0, words=dict(piece="bach", tempo="slow")),
               corpus.Source("b", "heldout", "speech", "russian", seconds=21.0, words=dict(speaker="woman"))]
    rows = write_corpus(root, sources, manifest=False)
    quick = ["--steps", "1", "--batch", "2", "--threads", "1", "--work", str(tmp_path / "work")]
    with pytest.raises(SystemExit):  # no manifest: not a corpus
        train.main([*quick, "--corpus", str(root), "--out", str(tmp_path / "m")])
    (root / "manifest.json").write_text("{}")
    train.main([*quick, "--corpus", str(root), "--out", str(tmp_path / "m")])
    words = load_minildm(tmp_path / "m").caption_encoder.config.vocabulary
    train_captions = [r["caption"] for r in rows if r["split"] == "train"]
    assert words == corpus.caption_vocabulary(train_captions) and "organ" in words and "russian" not in words


def test_block_summary_takes_late_steps_means_and_the_contrasts_median():
    """Planted measure_sparsity datasets: early steps are left out, a head with a contrast of 1e6 moves the mean but
    not the median (issue 28: such heads carried the evaluation's mean contrast)."""
    import xarray as xr

    from studies.minildm.evaluation import block_summary

    def planted(ratio: float, outlier: float) -> xr.Dataset:
        shape = (2, 4, 2)  # module, step, head
        early = np.arange(4)[None, :, None] < 2
        contrast = np.full(shape, 3.0)
        contrast[1, 3, 1] = outlier
        data = dict(same_frequency_ratio=np.where(early, 100.0, ratio) * np.ones(shape), focus_contrast=contrast,
                    sparse_error=np.full(shape, 0.2), periodicity_period=np.full(shape, 8.0),
                    periodicity_strength=np.full(shape, 0.9), sink_strength=np.full(shape, 1.5),
                    same_time_ratio=np.full(shape, 2.0), head_class=np.full(shape, "own_row"))
        return xr.Dataset({k: (("module", "step", "head"), v) for k, v in data.items()}, coords=dict(
            module=["down_blocks.1.a", "down_blocks.1.b"], block=("module", ["down_blocks.1"] * 2),
            freq_bins=("module", [8, 8]), step=np.arange(4), head=[0, 1]))

    summary = block_summary([planted(2.0, 1e6), planted(4.0, 3.0)])["down_blocks.1"]
    assert summary["same_frequency_ratio"] == 3.0 and summary["freq_bins"] == 8  # late steps, mean over prompts
    assert summary["focus_contrast_median"] == 3.0 and summary["focus_contrast"] > 1e4
    assert summary["share_with_period_F"] == 1.0 and summary["own_row_heads"] == 1.0
