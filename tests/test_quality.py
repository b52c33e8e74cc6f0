"""Quality metrics held to known answers: Gaussian samples against closed forms, identical and shifted sets,
matched against shuffled pairs."""

import numpy as np
import pytest

from analysis import protocols, quality


def test_frechet_distance_of_gaussian_samples_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.5])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    a = mu_a + sd_a * rng.standard_normal((20000, 3))
    b = mu_b + sd_b * rng.standard_normal((20000, 3))
    # diagonal covariances commute: Tr(Sa + Sb - 2 (Sa Sb)^(1/2)) = sum (sd_a - sd_b)^2
    exact = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()
    estimate = quality.frechet_distance(a, b, resamples=50)
    assert estimate.value == pytest.approx(exact, rel=0.03)
    assert estimate.low <= exact <= estimate.high and estimate.n == 20000


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_one():
    x = np.random.default_rng(1).standard_normal((300, 8)) @ np.random.default_rng(2).standard_normal((8, 8))
    assert quality.frechet_distance(x, x, resamples=2).value == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8.0) / 4
    assert quality.frechet_distance(x + shift, x, resamples=2).value == pytest.approx((shift**2).sum(), rel=1e-6)


def test_trace_of_the_root_of_a_product_of_commuting_matrices():
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 0.0])
    assert quality._trace_sqrt_product(a, b) == pytest.approx(2.0 + 2.0 + 0.0)


def test_frechet_distance_says_when_there_are_too_few_clips():
    x = np.random.default_rng(0).standard_normal((10, 16))
    with pytest.raises(ValueError, match="more clips than embedding dimensions.*shrinkage"):
        quality.frechet_distance(x, x + 1)
    shrunk = quality.frechet_distance(x, x + 1, shrinkage=0.5, resamples=5)
    assert shrunk.value == pytest.approx(16.0, rel=1e-6)  # same covariances, shifted by 1 in 16 dimensions
    with pytest.raises(ValueError, match="different dimensions"):
        quality.frechet_distance(x, x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        quality.frechet_distance(np.full((40, 2), np.nan), x[:, :2])


def test_kernel_distance_of_gaussian_samples_matches_the_closed_form():
    # N(0, s^2 I) against N(delta, s^2 I), Gaussian kernel of bandwidth sigma, d dimensions:
    # MMD^2 = 2 c (1 - exp(-|delta|^2 / (2 (sigma^2 + 2 s^2)))), c = (sigma^2 / (sigma^2 + 2 s^2))^(d/2)
    d, s, sigma, delta = 2, 1.0, 1.5, np.array([1.0, 0.5])
    c = (sigma**2 / (sigma**2 + 2 * s**2)) ** (d / 2)
    exact = quality.KAD_SCALE * 2 * c * (1 - np.exp(-(delta**2).sum() / (2 * (sigma**2 + 2 * s**2))))
    estimates = []
    for seed in range(12):  # independent pairs of 500 clips: each off by about 11 % (std), their mean by about 3.2 %
        rng = np.random.default_rng(seed)
        a, b = s * rng.standard_normal((500, d)), delta + s * rng.standard_normal((500, d))
        estimates.append(quality.kernel_distance(a, b, bandwidth=sigma, resamples=100, seed=seed))
    assert np.mean([e.value for e in estimates]) == pytest.approx(exact, rel=0.1)  # 3 standard errors
    assert sum(e.low <= exact <= e.high for e in estimates) >= 10  # 95 % intervals


def test_kernel_distance_leaves_out_the_pairs_of_a_clip_with_itself():
    # a = b = {0, 1} in 1-D, sigma = 1: within each set only the pair (0, 1), e^(-1/2); across, all four pairs
    points = np.array([[0.0], [1.0]])
    exact = quality.KAD_SCALE * (2 * np.exp(-0.5) - 2 * (1 + np.exp(-0.5)) / 2)
    assert quality.kernel_distance(points, points, bandwidth=1.0, resamples=1).value == pytest.approx(exact)


def test_kernel_distance_is_unbiased_near_zero_and_grows_with_the_shift():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((400, 6)), rng.standard_normal((400, 6))
    same = quality.kernel_distance(a, b, resamples=100)
    assert same.low <= 0.0 <= same.high and abs(same.value) < 0.2
    values = [quality.kernel_distance(a + shift, b, resamples=2).value for shift in (0.25, 0.5, 1.0)]
    assert same.value < values[0] < values[1] < values[2]
    x = rng.standard_normal((50, 3))
    assert quality.median_bandwidth(x) == pytest.approx(
        np.median([np.linalg.norm(x[i] - x[j]) for i in range(50) for j in range(i + 1, 50)]))
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        quality.kernel_distance(a, np.zeros((10, 6)))


def test_kl_divergence_pairs_clips_and_matches_the_closed_form():
    generated = np.array([[0.5, 0.5], [0.2, 0.8]])
    reference = np.array([[0.9, 0.1], [0.2, 0.8]])
    exact = (0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5) + 0.0) / 2
    assert quality.kl_divergence(generated, reference).value == pytest.approx(exact, rel=1e-4)
    assert quality.kl_divergence(reference, reference).value == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(quality.kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])).value)
    with pytest.raises(ValueError, match="pair clip by clip"):
        quality.kl_divergence(generated, reference[:1])


def test_clap_score_is_higher_for_matched_pairs_than_shuffled_ones():
    rng = np.random.default_rng(0)
    text = rng.standard_normal((200, 32))
    audio = text + 0.5 * rng.standard_normal((200, 32))
    matched = quality.clap_score(audio, text)
    shuffled = quality.clap_score(audio, text[rng.permutation(200)])
    assert matched.low > shuffled.high and abs(shuffled.value) < 5
    assert quality.clap_score(text, 3 * text).value == pytest.approx(100.0)
    assert quality.clap_score(np.eye(2), np.eye(2)[::-1]).value == pytest.approx(0.0)
    with pytest.raises(ValueError, match="all zeros"):
        quality.clap_score(np.zeros((2, 3)), np.ones((2, 3)))


def test_no_resamples_gives_the_value_alone():
    x = np.random.default_rng(0).standard_normal((40, 3))
    for estimate in (quality.frechet_distance(x, x + 1, resamples=0), quality.kernel_distance(x, x + 1, resamples=0),
                     quality.clap_score(x, x + 1, resamples=0)):
        assert np.isfinite(estimate.value) and np.isnan(estimate.low) and np.isnan(estimate.high)
    assert quality.frechet_distance(x, x + 1, resamples=0).value == quality.frechet_distance(x, x + 1).value


def test_paired_difference_is_zero_for_one_set_and_signed_for_a_worse_one():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((200, 4))
    close = rng.standard_normal((150, 4))
    far = close + np.array([1.0, 0, 0, 0])  # row i of each: the same caption, one configuration shifted
    for metric in ("FAD", "KAD"):
        same = quality.paired_difference(metric, close, close, reference, resamples=50)
        assert same.value == same.low == same.high == 0.0
        worse = quality.paired_difference(metric, far, close, reference, resamples=50)
        single = {"FAD": quality.frechet_distance, "KAD": quality.kernel_distance}[metric]
        expected = single(far, reference, resamples=0).value - single(close, reference, resamples=0).value
        assert worse.value == pytest.approx(expected) and 0 < worse.low <= worse.value <= worse.high
        assert quality.paired_difference(metric, close, far, reference, resamples=50).high < 0
    with pytest.raises(ValueError, match="pair row by row"):
        quality.paired_difference("KAD", close, close[:-1], reference)
    with pytest.raises(ValueError, match="'FAD' or 'KAD'"):
        quality.paired_difference("KL", close, close, reference)


def test_per_clip_values_average_to_the_set_statistics():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    assert quality.kl_per_clip(p, q).mean() == pytest.approx(quality.kl_divergence(p, q, resamples=0).value)
    a, t = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    assert quality.clap_per_clip(a, t).mean() == pytest.approx(quality.clap_score(a, t, resamples=0).value)
    assert quality.mean_with_interval(np.full(10, 3.0)) == (3.0, 3.0, 3.0, 10)


def test_fad_shrinks_only_when_a_set_has_no_more_clips_than_dimensions():
    assert quality.default_shrinkage(513, 1000, 512) == 0.0
    assert quality.default_shrinkage(512, 1000, 512) == 0.1 == quality.default_shrinkage(1000, 48, 64)


def test_a_nan_clip_makes_the_whole_estimate_nan():
    """Issue 22, case 13: mean_with_interval([1, nan]) gave NaN with the interval (1, 1)."""
    estimate = quality.mean_with_interval(np.array([1.0, np.nan, 2.0]), resamples=50)
    assert np.isnan([estimate.value, estimate.low, estimate.high]).all()


def test_bad_embeddings_and_shrinkage_are_named_and_numpy_scalars_are_taken():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 3))
    with pytest.raises(ValueError, match=r"shrinkage must be a number in \[0, 1\]; got '0.1'"):
        quality.frechet_distance(x, x, shrinkage="0.1")
    assert quality.frechet_distance(x, x + 1, shrinkage=np.float32(0.1), resamples=0).value == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"emb_a holds values beyond 1e\+150.*overflow"):
        quality.frechet_distance(x * 1e200, x)
    with pytest.raises(ValueError, match="emb_a must be a .clips, dims. array of numbers, every row of one length"):
        quality.frechet_distance([[1.0, 2.0], [3.0]], x)
    # one clip-count rule for FAD, alone or paired (issue 22, case 13)
    few = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="more clips than embedding dimensions"):
        quality.paired_difference("FAD", few, few + 1, few)
    assert np.isfinite(quality.paired_difference("FAD", few, few + 1, few, shrinkage=0.5, resamples=5).value)


def test_evaluate_pairs_a_folder_with_arrays_by_index(tmp_path):
    import soundfile

    from analysis.evaluator import Evaluator

    rng = np.random.default_rng(3)
    clips = (0.2 * rng.standard_normal((3, 16000))).astype(np.float32)
    (tmp_path / "gen").mkdir()
    for i, clip in enumerate(clips):
        soundfile.write(tmp_path / "gen" / f"take{i}.wav", clip, 16000)
    table = protocols.evaluate(tmp_path / "gen", clips[::-1].copy(), sampling_rate=16000, evaluator=Evaluator.offline(),
                             fad_shrinkage=np.float64(0.5))
    assert table.set_index("metric").loc["KL", "value"] >= 0 and set(table.protocol) == {"clap_kad"}
    with pytest.raises(ValueError, match=r"fad_shrinkage must be a number in \[0, 1\]; got 2"):
        protocols.evaluate(tmp_path / "gen", clips, sampling_rate=16000, fad_shrinkage=2)


def test_intervals_over_captions_draw_every_seed_of_a_caption_together():
    rng = np.random.default_rng(4)
    values = rng.standard_normal(30)
    captions = np.arange(30)
    doubled, doubled_captions = np.repeat(values, 2), np.repeat(captions, 2)  # two seeds a caption, equal values
    grouped = quality.mean_with_interval(doubled, 500, 0, groups=doubled_captions)
    assert grouped[:3] == pytest.approx(quality.mean_with_interval(values, 500, 0, groups=captions)[:3])
    as_clips = quality.mean_with_interval(doubled, 500, 0)  # 60 "independent" clips: too narrow
    assert (as_clips.high - as_clips.low) < 0.85 * (grouped.high - grouped.low)
    reference = rng.standard_normal((80, 3))
    a = np.repeat(rng.standard_normal((30, 3)) + 0.3, 2, axis=0)
    b = np.repeat(rng.standard_normal((30, 3)), 2, axis=0)
    by_caption = quality.paired_difference("KAD", a, b, reference, resamples=300, groups=doubled_captions)
    by_clip = quality.paired_difference("KAD", a, b, reference, resamples=300)
    assert by_caption.value == by_clip.value and (by_clip.high - by_clip.low) < (by_caption.high - by_caption.low)
    with pytest.raises(ValueError, match="groups must label each of the 60 rows"):
        quality.mean_with_interval(doubled, groups=captions)


@pytest.mark.parametrize("call, message", [
    (lambda q: q.kl_sigmoid(LOGITS, LOGITS, eps="x"), "eps must be a positive finite number"),
    (lambda q: q.kl_softmax(LOGITS, LOGITS, eps=0.0), "eps must be a positive finite number"),
    (lambda q: q.kl_softmax(LOGITS, LOGITS, resamples=-1), "resamples must be an int >= 0"),
    (lambda q: q.kl_softmax(LOGITS, LOGITS, resamples=1.5), "resamples must be an int >= 0"),
    (lambda q: q.frechet_distance(LOGITS, LOGITS, resamples=-1), "resamples must be an int >= 0"),
    (lambda q: q.kernel_distance(LOGITS, LOGITS, resamples=True), "resamples must be an int >= 0"),
])
def test_eps_and_resamples_are_checked_as_numbers(call, message):
    """Issue 27, also: numpy's UFuncTypeError for a string eps; a negative resamples drew nothing, silently."""
    from analysis import quality

    with pytest.raises(ValueError, match=message):
        call(quality)


LOGITS = np.random.default_rng(0).normal(-4, 2, (6, 5))


def test_evaluate_names_a_string_for_captions_or_field_models():
    """Issue 27, also: "abcd" was taken as captions 'a', 'b', 'c', 'd'; field_models="ck" an AttributeError."""
    from analysis import quality

    audio = 0.1 * np.sin(np.arange(2 * 16000).reshape(2, -1) / 7.0)
    with pytest.raises(ValueError, match="captions must be a list of strings"):
        protocols.evaluate(audio, audio, "abcd", sampling_rate=16000)
    with pytest.raises(TypeError, match="field_models must be an analysis.protocols.FieldModels"):
        protocols.evaluate(audio, audio, protocol="audioldm_eval", field_models="ck", sampling_rate=16000)


def test_the_formulas_examples_hold():
    """Issue 30, item 1: each formula shows a closed-form example in its docstring, run here as a doctest."""
    import doctest

    from analysis import quality

    failures, tried = doctest.testmod(quality, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 5 and failures == 0
