"""Metrics against planted attention maps with analytic answers."""

import numpy as np
import pytest
import xarray as xr

from analysis import metrics


def planted_map(time_bins, freq_bins, same_row_mass, heads=2):
    """Each query puts ``same_row_mass`` evenly on its own frequency row and the rest evenly on all other keys."""
    tokens = time_bins * freq_bins
    f = np.arange(tokens) % freq_bins
    same = f[:, None] == f[None, :]
    probs = np.where(same, same_row_mass / time_bins, (1 - same_row_mass) / (tokens - time_bins))
    if freq_bins == 1:
        probs = np.full((tokens, tokens), 1.0 / tokens)
    values = np.broadcast_to(probs.reshape(time_bins, freq_bins, time_bins, freq_bins),
                             (heads, time_bins, freq_bins, time_bins, freq_bins))
    return xr.DataArray(values.copy(), dims=("head", "q_time", "q_freq", "k_time", "k_freq"),
                        coords=dict(head=np.arange(heads), q_time=np.arange(time_bins),
                                    q_freq=np.arange(freq_bins), k_time=np.arange(time_bins),
                                    k_freq=np.arange(freq_bins)))


GRIDS = [(6, 3), (9, 5), (7, 7), (8, 8), (5, 16), (12, 11)]


@pytest.mark.parametrize("time_bins, freq_bins", GRIDS)
def test_planted_same_frequency_pattern(time_bins, freq_bins):
    attention = planted_map(time_bins, freq_bins, 0.7)
    assert np.allclose(attention.sum(("k_time", "k_freq")), 1.0)
    np.testing.assert_allclose(metrics.same_frequency_mass(attention), 0.7, rtol=1e-12)
    np.testing.assert_allclose(metrics.same_frequency_ratio(attention), 0.7 * freq_bins, rtol=1e-12)
    profile = metrics.offset_profile(attention)
    np.testing.assert_allclose(profile.sum(("time_offset", "freq_offset")), 1.0, rtol=1e-12)
    np.testing.assert_allclose(metrics.same_frequency_mass(profile), 0.7, rtol=1e-12)
    np.testing.assert_allclose(metrics.freq_offset_profile(profile).sel(freq_offset=0), 0.7, rtol=1e-12)
    period = metrics.periodicity(metrics.key_offset_profile(profile))
    assert (period.period == freq_bins).all(), period.period.values
    assert (period.strength > 0.9).all()


@pytest.mark.parametrize("time_bins, freq_bins", GRIDS)
def test_uniform_attention_has_baseline_mass_and_no_period(time_bins, freq_bins):
    attention = planted_map(time_bins, freq_bins, 1.0 / freq_bins)
    np.testing.assert_allclose(metrics.same_frequency_mass(attention), 1.0 / freq_bins, rtol=1e-12)
    np.testing.assert_allclose(metrics.same_frequency_ratio(attention), 1.0, rtol=1e-12)
    np.testing.assert_allclose(metrics.entropy(attention, normalized=True), 1.0, rtol=1e-12)
    period = metrics.periodicity(metrics.key_offset_profile(metrics.offset_profile(attention)))
    assert period.period.isnull().all() and (period.strength == 0).all()


def test_key_offset_profile_is_mean_probability_per_pair():
    attention = planted_map(4, 3, 0.7, heads=1)
    x = metrics.key_offset_profile(metrics.offset_profile(attention)).isel(head=0)
    np.testing.assert_allclose(x.sel(key_offset=3), 0.7 / 4)  # next time step, same frequency
    np.testing.assert_allclose(x.sel(key_offset=1), 0.3 / 8)  # same time step, next frequency
    np.testing.assert_allclose(x.sel(key_offset=0), 0.7 / 4)  # itself


def test_rows_give_the_same_metrics_as_full_maps():
    attention = planted_map(6, 4, 0.55)
    rows = attention.stack(query=("q_time", "q_freq")).transpose("head", "query", "k_time", "k_freq")
    rows = rows.reset_index("query").assign_coords(query=np.arange(24))
    np.testing.assert_allclose(metrics.same_frequency_mass(rows), 0.55)
    xr.testing.assert_allclose(metrics.offset_profile(rows), metrics.offset_profile(attention))


def test_offset_profile_locates_a_single_planted_key():
    # every query attends only to the key one step later in time and two bins up (where it exists, else itself)
    time_bins, freq_bins = 5, 4
    values = np.zeros((time_bins, freq_bins, time_bins, freq_bins))
    for t in range(time_bins):
        for f in range(freq_bins):
            if t + 1 < time_bins and f + 2 < freq_bins:
                values[t, f, t + 1, f + 2] = 1.0
            else:
                values[t, f, t, f] = 1.0
    attention = xr.DataArray(values, dims=("q_time", "q_freq", "k_time", "k_freq"))
    profile = metrics.offset_profile(attention)
    moved = (time_bins - 1) * (freq_bins - 2) / (time_bins * freq_bins)
    np.testing.assert_allclose(profile.sel(time_offset=1, freq_offset=2), moved)
    np.testing.assert_allclose(profile.sel(time_offset=0, freq_offset=0), 1 - moved)
    np.testing.assert_allclose(metrics.time_offset_profile(profile).sel(time_offset=1), moved)


def test_every_metric_accepts_its_documented_forms_or_names_the_dims():
    attention = planted_map(6, 3, 0.7)
    rows = attention.stack(query=("q_time", "q_freq")).reset_index("query").transpose("head", "query", ...)
    profile = metrics.offset_profile(attention)
    for form in (attention, rows, profile):  # the same answer from every form that holds it
        np.testing.assert_allclose(metrics.same_frequency_mass(form), 0.7, rtol=1e-12)
        np.testing.assert_allclose(metrics.freq_offset_profile(form), metrics.freq_offset_profile(profile))
        assert (metrics.periodicity(form).period == 3).all()
    np.testing.assert_allclose(metrics.entropy(rows), metrics.entropy(attention))
    with pytest.raises(ValueError, match=r"entropy takes maps .* or rows .*; got dims \('head', 'time_offset'"):
        metrics.entropy(profile)
    with pytest.raises(TypeError, match="takes an xarray.DataArray with named dims"):
        metrics.same_frequency_mass(attention.values)
    for function in (metrics.same_frequency_mass, metrics.same_frequency_ratio, metrics.offset_profile,
                     metrics.key_offset_profile, metrics.periodicity, metrics.freq_offset_profile):
        with pytest.raises(ValueError, match=r"takes .*got dims \('head', 'a', 'b'\)"):
            function(xr.DataArray(np.zeros((2, 3, 3)), dims=("head", "a", "b")))
    with pytest.raises(ValueError, match="q_time and q_freq coordinates"):
        metrics.same_frequency_mass(rows.drop_vars(["q_time", "q_freq"]))


def test_key_frequency_mass_finds_a_planted_sink_row():
    # every query puts 0.6 on the keys of row 3 (a sink), the rest evenly on the other rows' keys
    time_bins, freq_bins = 5, 4
    attention = planted_map(time_bins, freq_bins, 1.0 / freq_bins) * 0.0
    attention = attention + xr.where(attention.k_freq == 3, 0.6 / time_bins, 0.4 / (time_bins * 3))
    np.testing.assert_allclose(attention.sum(("k_time", "k_freq")), 1.0)
    mass = metrics.key_frequency_mass(attention)
    assert mass.dims == ("head", "k_freq")
    np.testing.assert_allclose(mass.sel(k_freq=3), 0.6)
    np.testing.assert_allclose(mass.sel(k_freq=[0, 1, 2]), 0.4 / 3)
    # the sink gives the same-frequency mass (0.6 + 3 * 0.4/3) / 4 = 0.25: the uniform share, no focus
    np.testing.assert_allclose(metrics.same_frequency_ratio(attention), 1.0)
    uniform = metrics.key_frequency_mass(planted_map(6, 3, 1.0 / 3))
    np.testing.assert_allclose(uniform, 1.0 / 3)
    rows = attention.stack(query=("q_time", "q_freq")).reset_index("query").assign_coords(query=np.arange(20))
    xr.testing.assert_allclose(metrics.key_frequency_mass(rows), mass)
    with pytest.raises(ValueError, match="key_frequency_mass takes maps"):
        metrics.key_frequency_mass(metrics.offset_profile(attention))


def test_rows_that_are_not_probabilities_or_off_the_grid_are_refused():
    maps = planted_map(6, 4, 0.7)
    for function in (metrics.same_frequency_ratio, metrics.entropy, metrics.key_frequency_mass,
                     metrics.offset_profile):
        with pytest.raises(ValueError, match="must sum to 1 over the keys.*sums to 5"):
            function(maps * 5)
        with pytest.raises(ValueError, match="negative values"):
            function(-maps)
    rows = maps.stack(query=("q_time", "q_freq")).reset_index("query")
    rows = rows.assign_coords(q_time=("query", rows.q_time.values + 6))  # queries of a longer grid
    with pytest.raises(ValueError, match=r"lie outside the key grid \(6, 4\)"):
        metrics.same_frequency_ratio(rows)
    with_nan = maps.copy()
    with_nan[{"q_time": 0}] = np.nan  # a row of NaN passes and gives NaN, never a silent drop
    assert np.isnan(metrics.entropy(with_nan)).all()


def test_plots_name_unselected_dims_and_a_query_out_of_range():
    import matplotlib

    matplotlib.use("Agg")
    from analysis import plots

    maps = planted_map(6, 4, 0.7)
    rows = maps.isel(head=0).stack(query=("q_time", "q_freq")).transpose("query", "k_time", "k_freq")
    assert plots.query_attention(rows, query=5) is not None
    with pytest.raises(ValueError, match=r"query must be an index of one of the 24 recorded queries \(0 to 23\)"):
        plots.query_attention(rows, query=10**6)
    with pytest.raises(ValueError, match=r"token_map draws dims .*got \('head', .*\.isel\(head=\.\.\.\)"):
        plots.token_map(maps)
    with pytest.raises(ValueError, match="offset_profiles draws dims"):
        plots.offset_profiles(metrics.offset_profile(maps))  # head still there
    with pytest.raises(ValueError, match="variable must be one of the dataset's variables"):
        plots.sparsity_heatmap(xr.Dataset(dict(a=maps)), "same_frequency_ratio")
