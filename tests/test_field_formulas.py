"""Our formulas held to audioldm_eval's definitions, written here from them (audioldm_eval itself needs torchaudio,
which cannot be installed beside a CPU torch): its KLs (``metrics/kl.py``, torch ``kl_div`` on softmax and sigmoid
probabilities of the logits, ``EPS = 1e-6``, summed and divided by the pair count), its Fréchet distance
(``metrics/fid.py`` and ``fad.py``: ``np.cov(rowvar=False)`` and ``scipy.linalg.sqrtm``), frame pooling for FAD, and
the front-ends of VGGish and the 16 kHz CNN14 against the libraries' own preprocessing and librosa."""

import numpy as np
import pytest
import scipy.linalg
import torch

from analysis import field_models, quality


def audioldm_eval_kl(logits_generated, logits_reference, kind):
    """audioldm_eval's ``calculate_kl`` for one kind, from its definition."""
    eps = 1e-6
    gen, ref = torch.from_numpy(logits_generated).double(), torch.from_numpy(logits_reference).double()
    squash = (lambda x: x.softmax(dim=1)) if kind == "softmax" else torch.sigmoid
    return float(torch.nn.functional.kl_div((squash(gen) + eps).log(), squash(ref), reduction="sum") / len(gen))


def audioldm_eval_frechet(a, b):
    """audioldm_eval's ``calculate_fid`` / ``calculate_frechet_distance``, from its definition."""
    mu1, mu2 = a.mean(0), b.mean(0)
    sigma1, sigma2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def cnn14_like_logits(rng, n, classes=527):
    return rng.normal(-4.0, 2.0, (n, classes))  # CNN14's logits: mostly negative (sigmoids near 0)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_kl_equals_audioldm_eval_on_shared_logits(kind):
    rng = np.random.default_rng(0)
    gen, ref = cnn14_like_logits(rng, 40), cnn14_like_logits(rng, 40)
    ours = {"softmax": quality.kl_softmax, "sigmoid": quality.kl_sigmoid}[kind](gen, ref, resamples=0)
    assert ours.value == pytest.approx(audioldm_eval_kl(gen, ref, kind), rel=1e-9)
    per_pair = {"softmax": quality.kl_softmax_per_pair, "sigmoid": quality.kl_sigmoid_per_pair}[kind](gen, ref)
    assert per_pair.mean() == pytest.approx(ours.value) and per_pair.shape == (40,)
    # identical logits: not 0 but about -classes x eps for softmax (the eps sits on the generated side only)
    same = {"softmax": quality.kl_softmax, "sigmoid": quality.kl_sigmoid}[kind](ref, ref, resamples=0).value
    assert same == pytest.approx(audioldm_eval_kl(ref, ref, kind), rel=1e-9) and same <= 0


def test_kl_refuses_probabilities_and_unpaired_rows():
    rng = np.random.default_rng(1)
    logits = cnn14_like_logits(rng, 5)
    probabilities = rng.dirichlet(np.ones(527), 5)
    for bad in (probabilities, 1 / (1 + np.exp(-logits))):  # rows summing to one, and sigmoids that do not
        with pytest.raises(ValueError, match="logits_generated must be logits.*look like probabilities"):
            quality.kl_softmax(bad, logits)
        with pytest.raises(ValueError, match="logits_reference must be logits"):
            quality.kl_sigmoid(logits, bad)
    with pytest.raises(ValueError, match="pair row by row"):
        quality.kl_softmax(logits, logits[:4])


def test_frechet_distance_equals_audioldm_eval_sqrtm_form():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((16, 16))
    a = rng.standard_normal((300, 16)) @ mix
    b = rng.standard_normal((250, 16)) @ mix * 1.3 + 0.5
    assert quality.frechet_distance(a, b, resamples=0).value == pytest.approx(audioldm_eval_frechet(a, b), rel=1e-9)


def test_frechet_distance_with_fewer_clips_than_dimensions_is_audioldm_eval_value():
    # audioldm_eval computes its FD on 2048-d embeddings of fewer clips (singular covariances); so do we, exactly,
    # through the rows (the nonzero eigenvalues of S_a S_b are the squared singular values of Y_a Y_b^T)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((12, 40)), rng.standard_normal((9, 40)) + 0.2
    with pytest.raises(ValueError, match="more clips than embedding dimensions"):
        quality.frechet_distance(a, b)
    ours = quality.frechet_distance(a, b, resamples=0, full_rank=False).value
    w_a, v_a = np.linalg.eigh(np.cov(a, rowvar=False))
    root = v_a * np.sqrt(np.clip(w_a, 0, None))
    direct = np.sqrt(np.clip(np.linalg.eigvalsh(root.T @ np.cov(b, rowvar=False) @ root), 0, None)).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(np.cov(a, rowvar=False)) \
        + np.trace(np.cov(b, rowvar=False)) - 2 * direct
    assert ours == pytest.approx(expected, rel=1e-6)


def test_bootstrap_draws_equal_the_distance_of_the_gathered_draws():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((80, 6)) * 3 + 10, rng.standard_normal((70, 6)) + 9  # far from the origin
    draws = [(rng.integers(0, 80, 80), rng.integers(0, 70, 70)) for _ in range(5)]
    fast = quality._frechet_draws(a, b, quality._counts([d[0] for d in draws], 80),
                                  quality._counts([d[1] for d in draws], 70), 0.0)
    slow = [audioldm_eval_frechet(a[i], b[j]) for i, j in draws]
    np.testing.assert_allclose(fast, slow, rtol=1e-4)


def test_frechet_audio_distance_pools_every_frame_and_resamples_clips():
    rng = np.random.default_rng(5)
    gen = [rng.standard_normal((int(k), 8)) + 0.3 for k in rng.integers(3, 9, 30)]  # clips of 3 to 8 frames
    ref = [rng.standard_normal((int(k), 8)) for k in rng.integers(3, 9, 25)]
    estimate = quality.frechet_audio_distance(gen, ref, resamples=50)
    assert estimate.value == pytest.approx(audioldm_eval_frechet(np.concatenate(gen), np.concatenate(ref)), rel=1e-9)
    assert estimate.n == 30 and estimate.low < estimate.high
    with pytest.raises(ValueError, match=r"frames_generated\[1\] must be \(frames, 8\)"):
        quality.frechet_audio_distance([gen[0], gen[1][:, :3]], ref)
    with pytest.raises(ValueError, match="more frames than embedding dimensions"):
        quality.frechet_audio_distance(gen[:1], ref[:1])


def test_vggish_frames_follow_torchvggish_framing():
    from torchvggish import vggish_input

    model = field_models.build_vggish()
    assert not isinstance(list(model.embeddings.children())[-1], torch.nn.ReLU)  # audioldm_eval drops it
    rng = np.random.default_rng(6)
    for seconds in (0.975, 2.0, 10.24):
        clip = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        windows = 1 + (len(clip) - 400) // 160  # 25 ms windows at 10 ms hops
        expected = 1 + (windows - 96) // 96  # 96 hops a frame, no overlap
        library = vggish_input.waveform_to_examples(clip.astype(np.float64), 16000)
        frames = field_models.vggish_frames(model, clip)
        assert len(library) == expected == len(frames) and frames.shape[1] == 128
    with pytest.raises(ValueError, match="shorter than one VGGish frame"):
        field_models.vggish_frames(model, np.zeros(15000, dtype=np.float32))


def test_cnn14_front_end_is_audioldm_eval_16k_log_mel():
    import librosa

    model = field_models.build_cnn14()
    rng = np.random.default_rng(7)
    t = np.arange(32000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    with torch.no_grad():
        ours = model.logmel_extractor(model.spectrogram_extractor(torch.from_numpy(clip)[None]))[0, 0].numpy()
    power = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=512, hop_length=160, win_length=512,
                                           window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=64,
                                           fmin=50, fmax=8000)
    expected = 10 * np.log10(np.maximum(power, 1e-10)).T  # ref 1.0, amin 1e-10, no top_db
    assert ours.shape == expected.shape == (201, 64)
    np.testing.assert_allclose(ours, expected, atol=1e-2)
    embeddings, logits = field_models.cnn14_outputs(model, [clip, clip[:20000]])
    assert embeddings.shape == (2, 2048) and logits.shape == (2, 527) and (embeddings >= 0).all()
    with torch.no_grad():
        clipwise = model(torch.from_numpy(clip)[None])["clipwise_output"][0].numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[0])), clipwise, rtol=1e-5)  # logits are its pre-sigmoid


def test_preparation_is_audioldm_eval_wave_dataset():
    clip = np.full(8000, 0.5, dtype=np.float32) + np.sin(np.arange(8000) / 3).astype(np.float32)
    prepared = field_models.prepare(clip, 8000)  # 1 s at 8 kHz: mean removed, to 16 kHz, padded to 2 s
    assert prepared.shape == (32000,) and prepared.dtype == np.float32
    assert abs(prepared[:16000].mean()) < 1e-2 and not prepared[16100:].any()
    long = np.random.default_rng(8).standard_normal(48000).astype(np.float32)
    assert field_models.prepare(long, 16000).shape == (48000,)


def test_the_kl_forms_study_sets_the_forms_side_by_side():
    from studies.evaluator.kl_forms import kl_forms

    table = kl_forms(pairs=20).set_index("pairs")
    assert table.loc["identical", "clap_kad_kl_renormalised_sigmoids"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["identical", "kullback_leibler_divergence_softmax"] < 0  # the eps on the generated side
    independent = table.loc["independent"]
    assert independent.kullback_leibler_divergence_sigmoid > 10 * independent.clap_kad_kl_renormalised_sigmoids
    assert independent.kullback_leibler_divergence_softmax == pytest.approx(independent.clap_kad_kl_softmax_head,
                                                                            rel=0.02)
