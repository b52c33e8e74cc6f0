"""Named configurations, generation under each from one seed, and the relative error to dense."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import litefocus
from analysis.ablations import ABLATIONS, Configuration, ablations, generate_under, relative_error


def test_relative_error_matches_hand_computation():
    dense = np.array([[3.0, 4.0], [1.0, 0.0]])  # norms 5 and 1
    other = dense + np.array([[0.0, 1.0], [0.0, 2.0]])
    outputs = xr.DataArray(np.stack([dense, other]), dims=("configuration", "prompt", "dim_0"),
                           coords=dict(configuration=["dense", "other"], prompt=["a", "b"]))
    errors = relative_error(outputs)
    np.testing.assert_allclose(errors.sel(configuration="dense"), [0.0, 0.0])
    np.testing.assert_allclose(errors.sel(configuration="other"), [1 / 5, 2 / 1])
    with pytest.raises(ValueError, match="no 'dense' among"):
        relative_error(outputs.sel(configuration=["other"]))


def test_configurations_by_name_keep_order_and_dense():
    assert [c.name for c in ablations(["token_merging", "litefocus"])] == ["dense", "litefocus", "token_merging"]
    assert [c.name for c in ablations()] == [c.name for c in ABLATIONS]
    with pytest.raises(ValueError, match="unknown configurations"):
        ablations(["litefocus", "fastest"])


def test_length_dependent_ratio_must_be_fixed_before_applying(tiny_pipe):
    fixed_keys = {c.name: c for c in ABLATIONS}["litefocus_all_levels_fixed_keys"]
    assert fixed_keys.at_length(5.12).ratio == pytest.approx(0.1)
    assert fixed_keys.at_length(40.96).ratio == pytest.approx(0.025)
    with pytest.raises(ValueError, match="at_length"):
        with fixed_keys.applied(tiny_pipe):
            pass


def test_generation_under_each_configuration_from_one_seed(tiny_pipe):
    names = {c.name: c for c in ABLATIONS}
    configs = [names["dense"], names["litefocus_all_levels"], names["token_merging"], names["dense"]]
    outputs = generate_under(tiny_pipe, configs, ["a dog barking", "rain", "a bell"], audio_length_in_s=2.56,
                             batch_size=2, num_inference_steps=2, output_type="latent")
    assert outputs.dims[:2] == ("configuration", "prompt") and outputs.sizes["prompt"] == 3
    assert outputs.shape[2:] == (8, 64, 16)  # latent channels, time, freq of 2.56 s
    errors = relative_error(outputs.isel(configuration=[0, 1, 2]))
    # dense again from the same seed reproduces dense exactly; the sparse configurations move the sample
    np.testing.assert_array_equal(outputs.isel(configuration=0).values, outputs.isel(configuration=3).values)
    assert (errors.sel(configuration="litefocus_all_levels") > 1e-4).all()
    assert (errors.sel(configuration="token_merging") > 1e-4).all()
    assert not litefocus.is_applied(tiny_pipe)  # every configuration is taken off again
    with pytest.raises(ValueError, match="prompts is empty"):
        generate_under(tiny_pipe, configs, [], audio_length_in_s=2.56)


def test_flop_share_selects_modules_as_litefocus_does():
    # block names, names inside a block and globs select as litefocus.self_attention_modules does
    config = Configuration("globbed", "litefocus", ("up_blocks.*.attn1", "down_blocks.1"), 0.1)
    assert config.core_share("up_blocks.2.attentions.0.transformer_blocks.0.attn1", 8) == pytest.approx(0.225)
    assert config.core_share("down_blocks.1.attentions.1.transformer_blocks.0.attn2", 8) == pytest.approx(0.225)
    assert config.core_share("up_blocks.2.attentions.0.transformer_blocks.0.attn2", 8) == 1.0
    assert config.core_share("down_blocks.10.attentions.0.transformer_blocks.0.attn1", 8) == 1.0


def test_caption_accuracy_counts_right_predictions_with_an_interval():
    from minildm.classifiers import accuracy

    rows = [dict(category="music", label=name) for name in ("piano", "organ", "piano", "piano")]
    scored = accuracy({"category": ["music"] * 4, "label": ["piano", "piano", "organ", "piano"]}, rows)
    assert scored["category"] == dict(accuracy=1.0, low=1.0, high=1.0, majority=1.0)
    assert scored["label"]["accuracy"] == 0.5 and scored["label"]["majority"] == 0.75
    assert 0.0 <= scored["label"]["low"] <= 0.5 <= scored["label"]["high"] <= 1.0
    with pytest.raises(ValueError, match="3 predictions for 4 clips"):
        accuracy({"label": ["piano"] * 3}, rows)


def test_caption_classifiers_learn_a_planted_band_and_survive_save_and_load(tmp_path):
    from minildm.classifiers import CaptionClassifiers, fit_caption_classifiers

    def clips(n, seed):  # the label says which band of 16 mel bins is loud; gains and floors vary
        g = torch.Generator().manual_seed(seed)
        band = torch.randint(0, 4, (n,), generator=g)
        mel = torch.randn(n, 64, 64, generator=g) * 0.3 + torch.rand(n, 1, 1, generator=g) * 4
        for i, b in enumerate(band.tolist()):
            mel[i, :, 16 * b: 16 * b + 16] += 3.0
        rows = [dict(category="low" if b < 2 else "high", label=f"band{b}") for b in band.tolist()]
        return mel, rows

    mel, rows = clips(200, 0)
    model = fit_caption_classifiers(mel, rows, steps=200)
    test_mel, test_rows = clips(100, 1)
    predicted = model.predict(test_mel)
    assert predicted["label"] == [r["label"] for r in test_rows]
    assert predicted["category"] == [r["category"] for r in test_rows]
    model.save_pretrained(tmp_path / "c")
    assert CaptionClassifiers.from_pretrained(tmp_path / "c").predict(test_mel) == predicted


def test_fidelity_table_on_minildm_resumes_from_its_cache(tmp_path):
    from studies.minildm import fidelity

    argv = ["--seconds", "0.64", "--prompts", "2", "--steps", "2", "--threads", "1", "--configurations",
            "litefocus", "litefocus_all_levels_fixed_keys", "--cache", str(tmp_path / "cache"),
            "--csv", str(tmp_path / "fidelity.csv")]
    fidelity.main(argv)
    table = pd.read_csv(tmp_path / "fidelity.csv")
    assert list(table.configuration) == ["dense_other_noise", "dense", "litefocus", "litefocus_all_levels_fixed_keys"]
    dense = table.set_index("configuration").loc["dense"]
    assert dense.relative_error == 0 and dense.audioldm2_seconds == pytest.approx(2.56)
    assert (table.drop(index=1).relative_error > 0).all()
    assert table.set_index("configuration").ratio.loc["litefocus_all_levels_fixed_keys"] == pytest.approx(0.1)
    assert table[["category_accuracy", "label_accuracy"]].apply(lambda c: c.between(0, 1)).all().all()
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 4 and all(name.endswith(".nc") for name in cached)
    # a second run reads every generation back from the cache and gives the same table
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    fidelity.main(argv)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fidelity.csv"), table)


def test_fidelity_cache_is_keyed_on_weights_and_every_setting():
    from studies.minildm.fidelity import cache_key
    from minildm.train import build

    from litefocus.models import weights_fingerprint

    pipe = build(seed=0)
    weights = weights_fingerprint(pipe)
    assert weights == weights_fingerprint(build(seed=0)) and len(weights) == 64
    with torch.no_grad():
        next(pipe.unet.parameters()).view(-1)[0] += 1e-3
    assert weights_fingerprint(pipe) != weights
    litefocus_config = next(c for c in ABLATIONS if c.name == "litefocus")
    base = dict(weights=weights, config=litefocus_config, captions=["a", "b"], seconds=0.64, steps=2, seed=0)
    key = cache_key(**base)
    changes = [dict(weights=weights_fingerprint(pipe)), dict(config=replace(litefocus_config, ratio=0.2)),
               dict(captions=["a", "c"]), dict(seconds=1.28), dict(steps=3), dict(seed=1),
               dict(config=replace(litefocus_config, union="concat"))]
    assert all(cache_key(**(base | change)) != key for change in changes)
