"""The pattern-emergence study: the ceiling's formulas against closed forms, a run that resumes, the report."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import write_corpus

from analysis import metrics
from minildm.pipeline import load_minildm
from minildm.train import build, initialise_query_key
from studies.pattern_emergence import ceiling, export, report, run


def test_stationary_covariance_of_white_tokens_is_the_identity():
    tokens = np.random.default_rng(0).standard_normal((4000, 6, 2, 3))
    covariance = ceiling.stationary_covariance(tokens)
    assert covariance.shape == (36, 36)
    np.testing.assert_allclose(covariance, np.eye(36), atol=0.05)


def test_stationary_covariance_uses_every_position_of_a_lag():
    """A clip constant in time: every lag's cross-covariance is the variance, so all time pairs are equal."""
    values = np.random.default_rng(1).standard_normal((3000, 1, 2, 1))
    covariance = ceiling.stationary_covariance(np.repeat(values, 5, axis=1))
    block = covariance.reshape(5, 2, 5, 2)
    np.testing.assert_allclose(block[:, 0, :, 0], block[0, 0, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(block[0, 0, 0, 0], values[:, 0, 0, 0].var(), rtol=1e-12)


def test_wiener_pooling_of_white_tokens_stays_on_each_token():
    time_bins, freq_bins, channels = 4, 3, 2
    eigen = np.linalg.eigh(np.eye(time_bins * freq_bins * channels))
    maps = ceiling.wiener_pooling(eigen, 0.5, (time_bins, freq_bins), channels)
    np.testing.assert_allclose(maps.sum(("k_time", "k_freq")), 1.0)
    np.testing.assert_allclose(metrics.same_frequency_ratio(maps), freq_bins)  # all on itself: its own row
    np.testing.assert_allclose(metrics.same_time_ratio(maps), time_bins)


def test_wiener_pooling_of_row_correlated_tokens_stays_on_the_row():
    """Tokens that share one value along each frequency row (and nothing across rows): the filter pools the row."""
    time_bins, freq_bins = 5, 4
    rows = np.random.default_rng(2).standard_normal((3000, 1, freq_bins, 1))
    tokens = np.repeat(rows, time_bins, axis=1) + 0.1 * np.random.default_rng(3).standard_normal(
        (3000, time_bins, freq_bins, 1))
    eigen = np.linalg.eigh(ceiling.stationary_covariance(tokens))
    maps = ceiling.wiener_pooling(eigen, 0.3, (time_bins, freq_bins), 1)
    assert float(metrics.same_frequency_ratio(maps)) > 0.95 * freq_bins
    assert float(metrics.same_time_ratio(maps)) < 2.0


def tiny_corpus(root):
    """A 6 s training source (music) and a 21 s held-out one (environment), rendered as noise."""
    from minildm import corpus

    write_corpus(root, [corpus.Source("a", "train", "music", "organ", seconds=6.0, words=dict(piece="bach", tempo="slow")),
                        corpus.Source("b", "heldout", "environment", "rain", seconds=21.0, words=dict(scene="rain"))])
    return root


def test_a_run_probes_resumes_and_reports(tmp_path):
    corpus = tiny_corpus(tmp_path / "corpus")
    work = tmp_path / "work"
    arguments = ["epsilon_lr2e-4", "--corpus", str(corpus), "--work", str(work), "--probe-every", "1",
                 "--probe-clips", "1", "--threads", "1", "--steps", "2"]
    torch.manual_seed(0)
    run.main([*arguments, "--minutes", "1e-6"])  # stops after its first step, as a run cut by its time limit
    curve = work / "epsilon_lr2e-4" / "curve.csv"
    first = curve.read_text()
    rows = list(csv.DictReader(first.splitlines()))
    assert {r["step"] for r in rows} == {"0", "1"} and {r["weights"] for r in rows} == {"ema", "raw"}
    assert {r["seconds"] for r in rows} == {"2.56", "10.24"} and {r["timestep"] for r in rows} == {"500", "250"}
    assert {"down_blocks.1", "up_blocks.2"} <= {r["block"] for r in rows}
    assert all(0.0 < float(r["focus_contrast"]) < 10.0 and float(r["sink_strength"]) >= 1.0 for r in rows)
    run.main(arguments)  # resumes from step 1: the curve keeps its rows and adds step 2
    again = list(csv.DictReader(curve.read_text().splitlines()))
    assert again[: len(rows)] == rows and {r["step"] for r in again} == {"0", "1", "2"}
    with pytest.raises(SystemExit, match="trained with other settings"):
        run.main([*arguments, "--seed", "1"])
    report.main(["--work", str(work), "--ceiling", str(tmp_path / "none.csv"), "--out", str(tmp_path / "report")])
    assert (tmp_path / "report" / "curves.png").is_file() and (tmp_path / "report" / "curves.csv").is_file()
    export.main(["epsilon_lr2e-4", "--corpus", str(corpus), "--work", str(work), "--out", str(tmp_path / "model")])
    exported = load_minildm(tmp_path / "model")
    recipe = json.loads((tmp_path / "model" / "recipe.json").read_text())
    assert recipe["variant"] == "epsilon_lr2e-4" and recipe["steps"] == 2 and recipe["prediction_type"] == "epsilon"
    ema = torch.load(work / "epsilon_lr2e-4" / "checkpoint.pt", weights_only=False)["ema"]
    weight = "unet.conv_in.weight"
    torch.testing.assert_close(exported.unet.state_dict()[weight[5:]], ema[weight].half().float())
    with pytest.raises(SystemExit):
        export.main(["epsilon_lr2e-4", "--corpus", str(corpus), "--work", str(work), "--out", str(tmp_path / "model")])


def test_category_weights_repeat_and_subsample_a_category(tmp_path):
    corpus = tiny_corpus(tmp_path / "corpus")
    plain = run.Variant("plain")
    mels, captions = run.training_set(plain, corpus, tmp_path, seed=0)
    doubled, doubled_captions = run.training_set(run.Variant("x", category_weights=dict(music=2.0)), corpus, tmp_path,
                                                 seed=0)
    assert len(doubled) == 2 * len(mels) and sorted(doubled_captions) == sorted(captions * 2)
    with pytest.raises(ValueError, match="category_weights names \\['speech'\\]"):
        run.training_set(run.Variant("y", category_weights=dict(speech=0.5)), corpus, tmp_path, seed=0)


def test_tied_query_key_initialisation_scores_every_token_like_itself():
    """W_k = W_q: each head's score matrix X W_q^T W_q X^T is positive semi-definite (a Gram matrix), so no token
    scores another above both their self-scores; untied, the scale multiplies the bilinear form by scale²."""
    tied, untied, plain = (build(0).unet for _ in range(3))
    assert initialise_query_key(tied, 2.0, tied=True) == initialise_query_key(untied, 2.0, tied=False) > 0
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    attention, scaled, original = (dict(u.named_modules())[name] for u in (tied, untied, plain))
    torch.testing.assert_close(attention.to_k.weight, attention.to_q.weight)
    torch.testing.assert_close(attention.to_q.weight, 2 * original.to_q.weight)
    torch.testing.assert_close(scaled.to_k.weight, 2 * original.to_k.weight)
    x = torch.randn(50, attention.to_q.in_features)
    head = attention.to_q.weight[:16]
    scores = (x @ head.T) @ (x @ head.T).T
    assert torch.linalg.eigvalsh(scores).min() > -1e-3 * scores.diagonal().max()
    cross = dict(tied.named_modules())["down_blocks.1.attentions.1.transformer_blocks.0.attn2"]
    assert cross.is_cross_attention
    with pytest.raises(ValueError, match="scale must be positive"):
        initialise_query_key(plain, 0.0, tied=True)


def test_query_key_initialisation_limited_to_named_blocks():
    """``blocks`` ties the self-attentions under those prefixes and leaves every other weight as built."""
    chosen, plain = build(0).unet, build(0).unet
    modules = dict(plain.named_modules())
    changed = initialise_query_key(chosen, 4.0, tied=True, blocks=("down_blocks",))
    before, after = plain.state_dict(), chosen.state_dict()
    differ = sorted(k for k in after if not torch.equal(after[k], before[k]))
    assert len(differ) == 2 * changed > 0
    assert all(k.startswith("down_blocks.") and k.endswith((".to_q.weight", ".to_k.weight"))
               and not modules[k.rsplit(".", 2)[0]].is_cross_attention for k in differ)
    for key in (k for k in differ if k.endswith(".to_k.weight")):
        torch.testing.assert_close(after[key], after[key.replace(".to_k.", ".to_q.")])
    with pytest.raises(ValueError, match=r"blocks \['down_block'\] are not blocks of this UNet"):
        initialise_query_key(plain, 4.0, tied=True, blocks=("down_block",))


def test_a_recipe_that_starts_attention_otherwise_is_measured_from_its_own_start():
    from studies.minildm.evaluation import untrained_pipelines

    pipe = build(0)
    assert set(untrained_pipelines(pipe)) == set(untrained_pipelines(pipe, "epsilon_lr2e-4")) == {"random_init"}
    starts = untrained_pipelines(pipe, "mimetic_2.5")
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    tied, plain = (dict(starts[k].unet.named_modules())[name] for k in ("recipe_init", "random_init"))
    torch.testing.assert_close(tied.to_k.weight, tied.to_q.weight)
    torch.testing.assert_close(tied.to_q.weight, 2.5 * plain.to_q.weight)  # the same seed, then the recipe's start
    assert starts["recipe_init"].codec is pipe.codec
