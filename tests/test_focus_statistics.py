"""Focus against preference: contrast, sink, same-time mass and head classes on planted attention with closed forms."""

import numpy as np
import pytest
import xarray as xr

from analysis import metrics


def as_maps(probs: np.ndarray, time_bins: int, freq_bins: int) -> xr.DataArray:
    """``(heads, N, N)`` probabilities over time-major tokens -> maps (head, q_time, q_freq, k_time, k_freq)."""
    heads = probs.shape[0]
    return xr.DataArray(probs.reshape(heads, time_bins, freq_bins, time_bins, freq_bins),
                        dims=("head", "q_time", "q_freq", "k_time", "k_freq"),
                        coords=dict(head=np.arange(heads), q_time=np.arange(time_bins), q_freq=np.arange(freq_bins),
                                    k_time=np.arange(time_bins), k_freq=np.arange(freq_bins)))


def planted(time_bins, freq_bins, own=0.0, sink=0.0, same_time=0.0, sink_row=0):
    """Each query: ``own`` spread over its own row, ``sink`` over row ``sink_row``, ``same_time`` over its own time
    column, the rest uniform over all keys (the parts add, so a key in two sets gets both)."""
    tokens = time_bins * freq_bins
    t, f = np.arange(tokens) // freq_bins, np.arange(tokens) % freq_bins
    probs = np.full((tokens, tokens), (1 - own - sink - same_time) / tokens)
    probs += own * (f[:, None] == f[None, :]) / time_bins
    probs += sink * (f[None, :] == sink_row) / time_bins
    probs += same_time * (t[:, None] == t[None, :]) / freq_bins
    return as_maps(probs[None], time_bins, freq_bins)


@pytest.mark.parametrize("time_bins, freq_bins", [(6, 4), (9, 8), (5, 16)])
def test_a_shared_row_preference_has_contrast_one_whatever_its_strength(time_bins, freq_bins):
    for sink in (0.0, 0.3, 0.9):
        attention = planted(time_bins, freq_bins, sink=sink, sink_row=freq_bins - 1)
        np.testing.assert_allclose(metrics.focus_contrast(attention), 1.0, rtol=1e-12)
        # closed form: the sink row draws sink + (1 - sink)/F on average, times F
        np.testing.assert_allclose(metrics.sink_strength(attention), sink * freq_bins + 1 - sink, rtol=1e-12)


@pytest.mark.parametrize("time_bins, freq_bins", [(6, 4), (9, 8)])
def test_own_row_focus_has_the_closed_form_contrast(time_bins, freq_bins):
    a = 0.6
    attention = planted(time_bins, freq_bins, own=a)
    # own row gets a + (1 - a)/F, any other row's queries give it (1 - a)/F
    expected = (a + (1 - a) / freq_bins) / ((1 - a) / freq_bins)
    np.testing.assert_allclose(metrics.focus_contrast(attention), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.sink_strength(attention), 1.0, rtol=1e-12)  # every key row draws 1/F
    np.testing.assert_allclose(metrics.same_frequency_ratio(attention), a * freq_bins + 1 - a, rtol=1e-12)


def test_a_sink_inflates_the_ratio_of_its_own_row_but_not_the_contrast():
    time_bins, freq_bins = 8, 8
    attention = planted(time_bins, freq_bins, sink=0.5, sink_row=7)
    mass = metrics.row_mass(attention).isel(head=0)
    assert mass.dims == ("query_freq", "k_freq")
    np.testing.assert_allclose(mass.sum("k_freq"), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mass.sel(query_freq=7, k_freq=7), 0.5 + 0.5 / 8, rtol=1e-12)
    np.testing.assert_allclose(metrics.focus_contrast(attention), 1.0, rtol=1e-12)


def test_row_mass_from_sampled_rows_equals_the_maps_and_marks_unsampled_rows():
    rng = np.random.default_rng(0)
    time_bins, freq_bins = 5, 4
    logits = rng.normal(size=(2, 20, 20))
    maps = as_maps(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), time_bins, freq_bins)
    rows = maps.stack(query=("q_time", "q_freq")).transpose("head", "query", "k_time", "k_freq")
    rows = rows.reset_index("query").assign_coords(query=np.arange(20))
    xr.testing.assert_allclose(metrics.row_mass(rows), metrics.row_mass(maps))
    without_row_2 = rows.isel(query=np.flatnonzero(rows.q_freq.values != 2))
    partial = metrics.row_mass(without_row_2)
    assert partial.sel(query_freq=2).isnull().all() and partial.sel(query_freq=1).notnull().all()
    assert metrics.focus_contrast(without_row_2).isnull().all()  # NaN is never dropped


def test_same_time_mass_from_maps_and_from_the_profile():
    time_bins, freq_bins = 7, 4
    attention = planted(time_bins, freq_bins, same_time=0.4)
    expected = 0.4 + 0.6 / time_bins
    np.testing.assert_allclose(metrics.same_time_mass(attention), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.same_time_mass(metrics.offset_profile(attention)), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.same_time_ratio(metrics.offset_profile(attention)), expected * time_bins,
                               rtol=1e-12)


@pytest.mark.parametrize("parts, expected", [
    (dict(own=0.8), "own_row"), (dict(same_time=0.8), "same_time"), (dict(sink=0.8), "sink_row"),
    (dict(), "global"), (dict(own=0.3, same_time=0.3), "global"),
])
def test_head_class_names_the_planted_form(parts, expected):
    attention = planted(8, 8, **parts, sink_row=3)
    assert metrics.head_class(attention).values.tolist() == [expected]
    profile = metrics.offset_profile(attention)
    assert metrics.head_class(profile, row_masses=metrics.row_mass(attention)).values.tolist() == [expected]


def test_head_class_checks_its_arguments():
    attention = planted(4, 4, own=0.8)
    with pytest.raises(ValueError, match="threshold"):
        metrics.head_class(attention, threshold=0)
    with pytest.raises(ValueError, match="row_masses"):
        metrics.head_class(metrics.offset_profile(attention))
