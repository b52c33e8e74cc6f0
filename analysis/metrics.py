"""Metrics of attention on a (time, freq) token grid: plain functions of xarray objects.

Attention is given either as maps with dims ``(..., q_time, q_freq, k_time, k_freq)``, as sampled rows with dims
``(..., query, k_time, k_freq)`` and coordinates ``q_time``/``q_freq`` on ``query``, or (for the functions that
say so) as a joint offset profile with dims ``(..., time_offset, freq_offset)`` or a row-mass matrix with dims
``(..., query_freq, k_freq)`` (:func:`row_mass`).

Focus or preference: the same-frequency ratio counts the mass a query puts on its own frequency row; a key row that
draws from every query (a sink) raises it for the queries of that row alone. :func:`focus_contrast` compares what row
f's queries give row f with what the other rows' queries give it (1 under any preference shared by all queries),
:func:`sink_strength` measures the shared preference itself, and :func:`head_class` names the masked form that keeps a
head's mass.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

KEY_DIMS = ("k_time", "k_freq")
FORMS = ("maps (..., q_time, q_freq, k_time, k_freq); rows (..., query, k_time, k_freq) with q_time and q_freq "
         "coordinates on query; a joint offset profile (..., time_offset, freq_offset); a key offset profile "
         "(..., key_offset); or a row-mass matrix (..., query_freq, k_freq)")


def form_of(attention, function: str, accepted: tuple[str, ...]) -> str:
    """Which documented form ``attention`` has (``maps``, ``rows``, ``profile``, ``key_profile``); a TypeError or
    ValueError that names the dims ``function`` expects otherwise."""
    if not isinstance(attention, xr.DataArray):
        raise TypeError(f"{function} takes an xarray.DataArray with named dims ({FORMS}); "
                        f"got {type(attention).__name__}")
    dims = set(attention.dims)
    if {"q_time", "q_freq", *KEY_DIMS} <= dims:
        form = "maps"
    elif {"query", *KEY_DIMS} <= dims:
        if not {"q_time", "q_freq"} <= set(attention.coords):
            raise ValueError(f"{function}: rows need q_time and q_freq coordinates on their query dim")
        form = "rows"
    elif {"time_offset", "freq_offset"} <= dims:
        form = "profile"
    elif {"query_freq", "k_freq"} <= dims:
        form = "row_mass"
    elif "key_offset" in dims:
        form = "key_profile"
    else:
        form = None
    if form not in accepted:
        names = dict(maps="maps (..., q_time, q_freq, k_time, k_freq)",
                     rows="rows (..., query, k_time, k_freq) with q_time/q_freq coordinates",
                     profile="a joint offset profile (..., time_offset, freq_offset)",
                     key_profile="a key offset profile (..., key_offset)",
                     row_mass="a row-mass matrix (..., query_freq, k_freq)")
        raise ValueError(f"{function} takes {', or '.join(names[f] for f in accepted)}; got dims {attention.dims}")
    return form


SUM_TOLERANCE = 1e-2  # rows stored in float16 sum to 1 within a few 1e-3


def check_attention(attention: xr.DataArray, function: str) -> str:
    """:func:`form_of` for maps or rows, and what makes them attention: keys on the grid the queries live on, and each
    query's row a probability distribution (no value below 0, the sum over keys 1 within :data:`SUM_TOLERANCE`;
    rows of NaN pass, and the metrics give NaN where they enter: never dropped). An error names ``function`` and the
    first bad query."""
    form = form_of(attention, function, ("maps", "rows"))
    q_time, q_freq = (np.asarray(attention[c]) for c in ("q_time", "q_freq"))
    if q_time.size and (q_time.max() >= attention.sizes["k_time"] or q_freq.max() >= attention.sizes["k_freq"]
                        or q_time.min() < 0 or q_freq.min() < 0):
        raise ValueError(f"{function}: queries at (time, freq) up to ({q_time.max()}, {q_freq.max()}) lie outside the "
                         f"key grid ({attention.sizes['k_time']}, {attention.sizes['k_freq']}): self-attention "
                         "keys and queries share one grid")
    if (attention < 0).any():
        raise ValueError(f"{function}: attention holds negative values; rows must be probabilities (softmax outputs)")
    sums = attention.sum(KEY_DIMS, skipna=False)
    off = np.abs(sums - 1) > SUM_TOLERANCE
    if off.any():
        where = {d: int(i[0]) for d, i in zip(sums.dims, np.nonzero(np.asarray(off)))}
        raise ValueError(f"{function}: each query's attention must sum to 1 over the keys; at {where} it sums to "
                         f"{float(sums[where]):.4g}")
    return form


def _query_dims(attention: xr.DataArray) -> list[str]:
    return ["query"] if "query" in attention.dims else ["q_time", "q_freq"]


def _coords_without(array: xr.DataArray, dims: tuple[str, ...]) -> dict:
    """The coordinates of ``array`` that involve none of ``dims`` (as (dims, values) pairs)."""
    return {name: (coord.dims, coord.values) for name, coord in array.coords.items() if not set(coord.dims) & set(dims)}


def freq_bins_of(attention: xr.DataArray) -> int:
    """F, from ``k_freq`` or from a profile's ``freq_offset`` (2F - 1 values)."""
    if form_of(attention, "freq_bins_of", ("maps", "rows", "profile")) != "profile":
        return attention.sizes["k_freq"]
    return (attention.sizes["freq_offset"] + 1) // 2


def same_frequency_mass(attention: xr.DataArray) -> xr.DataArray:
    """Mean over queries of the attention mass on keys in the query's own frequency row.

    ``m = (1/|Q|) sum_q sum_{k: f_k = f_q} p(q, k)``; uniform attention gives ``1/F``. Accepts maps, rows, or a
    joint offset profile (then ``m = sum_dt profile(dt, 0)``).
    """
    return _mass_on_own(attention, "freq", "same_frequency_mass")


def _mass_on_own(attention: xr.DataArray, axis: str, function: str) -> xr.DataArray:
    """Mean over queries of the mass on keys that share the query's ``axis`` coordinate (``"freq"``: its frequency
    row; ``"time"``: its time column), from maps, rows or a joint offset profile (offset 0 along ``axis``)."""
    other = "time" if axis == "freq" else "freq"
    if form_of(attention, function, ("maps", "rows", "profile")) == "profile":
        return attention.sel({f"{axis}_offset": 0}).sum(f"{other}_offset")
    check_attention(attention, function)
    same = attention[f"k_{axis}"] == attention[f"q_{axis}"]
    return attention.where(same, 0.0).sum(KEY_DIMS, skipna=False).mean(_query_dims(attention), skipna=False)


def same_frequency_ratio(attention: xr.DataArray) -> xr.DataArray:
    """:func:`same_frequency_mass` over its uniform baseline ``1/F``: 1 means no preference for the own row."""
    return same_frequency_mass(attention) * freq_bins_of(attention)


def key_frequency_mass(attention: xr.DataArray) -> xr.DataArray:
    """Mean over queries of the attention mass on each key frequency row, whatever the query's row:
    ``M(f) = (1/|Q|) sum_q sum_{k: f_k = f} p(q, k)``, dims ``(..., k_freq)``, summing to 1; uniform gives ``1/F``.
    A row that draws far more than ``1/F`` from every query is a sink (attention parked there, not same-frequency
    focus). Accepts maps or rows."""
    check_attention(attention, "key_frequency_mass")
    return attention.sum("k_time", skipna=False).mean(_query_dims(attention), skipna=False)


def row_mass(attention: xr.DataArray) -> xr.DataArray:
    """Mean over the queries of each frequency row of the mass on each key frequency row:
    ``M(g, f) = (1/|Q_g|) sum_{q in Q_g} sum_{k: f_k = f} p(q, k)``, dims ``(..., query_freq, k_freq)``, each
    ``query_freq`` row summing to 1 (uniform attention gives ``1/F`` everywhere). Accepts maps, rows (a row with no
    sampled query is NaN) or a row-mass matrix (returned as it is)."""
    form = form_of(attention, "row_mass", ("maps", "rows", "row_mass"))
    if form == "row_mass":
        return attention
    check_attention(attention, "row_mass")
    per_key_row = attention.sum("k_time", skipna=False)
    if form == "maps":
        mass = per_key_row.mean("q_time", skipna=False).rename(q_freq="query_freq")
    else:
        mass = (per_key_row.groupby("q_freq").mean("query", skipna=False).rename(q_freq="query_freq")
                .reindex(query_freq=np.arange(attention.sizes["k_freq"])))
    return mass.transpose(..., "query_freq", "k_freq").rename("row_mass")


def focus_contrast(attention: xr.DataArray) -> xr.DataArray:
    """How much more row f's queries attend to row f than the other rows' queries do, averaged over rows:
    ``C = (1/F) sum_f M(f, f) / ((1/(F-1)) sum_{g != f} M(g, f))`` with ``M`` the :func:`row_mass` matrix.

    1 when every query row has the same key-row preference (a sink, a loud band), whatever that preference is; above
    1 only when queries favour their *own* row. Needs F >= 2."""
    mass = row_mass(attention)
    freq_bins = mass.sizes["k_freq"]
    if freq_bins < 2:
        raise ValueError("focus_contrast needs at least 2 frequency rows (k_freq)")
    own = mass.where(mass.query_freq == mass.k_freq, 0.0).sum("query_freq", skipna=False)
    others = (mass.sum("query_freq", skipna=False) - own) / (freq_bins - 1)
    return (own / others).mean("k_freq", skipna=False).rename("focus_contrast")


def sink_strength(attention: xr.DataArray) -> xr.DataArray:
    """The largest mean mass a key frequency row draws over all query rows, times F: ``F max_f (1/F) sum_g M(g, f)``
    (:func:`row_mass`). 1 when no row is preferred, F when every query attends to one row only."""
    mass = row_mass(attention)
    return (mass.mean("query_freq", skipna=False).max("k_freq", skipna=False) * mass.sizes["k_freq"]).rename(
        "sink_strength")


def same_time_mass(attention: xr.DataArray) -> xr.DataArray:
    """Mean over queries of the mass on keys at the query's own time (its time column, F keys); uniform gives
    ``1/T``. Accepts maps, rows or a joint offset profile (then ``sum_df profile(0, df)``)."""
    return _mass_on_own(attention, "time", "same_time_mass")


def same_time_ratio(attention: xr.DataArray) -> xr.DataArray:
    """:func:`same_time_mass` over its uniform baseline ``1/T``."""
    if form_of(attention, "same_time_ratio", ("maps", "rows", "profile")) == "profile":
        time_bins = (attention.sizes["time_offset"] + 1) // 2
    else:
        time_bins = attention.sizes["k_time"]
    return same_time_mass(attention) * time_bins


HEAD_CLASSES = ("own_row", "same_time", "sink_row", "global")


def form_masses(attention: xr.DataArray, row_masses: xr.DataArray | None = None) -> xr.Dataset:
    """The mean mass each masked form keeps: ``own_row`` (the query's frequency row, T keys), ``same_time`` (its time
    column, F keys) and ``sink_row`` (the one key row that draws the most over all queries, T keys). From maps or
    rows, or from a joint offset profile with its ``row_masses`` (:func:`row_mass`)."""
    if form_of(attention, "form_masses", ("maps", "rows", "profile")) == "profile":
        if row_masses is None:
            raise ValueError("form_masses: an offset profile has lost the key rows' masses; pass row_masses= "
                             "(the recorder's row_mass) or give maps or rows")
    else:
        row_masses = row_mass(attention)
    return xr.Dataset(dict(own_row=same_frequency_mass(attention), same_time=same_time_mass(attention),
                           sink_row=sink_strength(row_masses) / row_masses.sizes["k_freq"]))


def head_class(attention: xr.DataArray, threshold: float = 0.5, row_masses: xr.DataArray | None = None
               ) -> xr.DataArray:
    """Per head (and any other dim), which masked form reproduces its attention: of ``own_row``, ``same_time`` and
    ``sink_row`` (:func:`form_masses`), the one that keeps the most mass among those keeping at least ``threshold``;
    ``global`` when none does. In the spirit of Sparse VideoGen's head profiling (Xi et al. 2025, arXiv 2502.01776),
    which compares the output error of spatial and temporal masks; here the retained mass ``m`` stands for that error,
    which it bounds: ``|o_mask - o| <= 2 (1 - m) max_k |v_k|`` for the renormalised masked output."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a number in (0, 1]; got {threshold!r}")
    masses = form_masses(attention, row_masses).to_array("form")
    best = masses.fillna(-1).argmax("form")
    names = np.array(HEAD_CLASSES[:3], dtype=object)[best.values]
    kept = masses.max("form", skipna=False) >= threshold
    return xr.DataArray(np.where(kept.values, names, "global").astype(str), dims=best.dims, coords=best.coords,
                        name="head_class")


def entropy(attention: xr.DataArray, normalized: bool = False) -> xr.DataArray:
    """Mean over queries of ``-sum_k p log p`` (nats); ``normalized`` divides by ``log N`` (1 = uniform).

    Needs maps or rows (an offset profile has lost the per-query distributions)."""
    check_attention(attention, "entropy")
    p = attention.clip(min=1e-30)
    value = -(attention * np.log(p)).sum(KEY_DIMS, skipna=False).mean(_query_dims(attention), skipna=False)
    if normalized:
        value = value / np.log(attention.sizes["k_time"] * attention.sizes["k_freq"])
    return value


def offset_profile(attention: xr.DataArray) -> xr.DataArray:
    """Joint profile over key offsets: ``P(dt, df) = (1/|Q|) sum_q p(q, (t_q + dt, f_q + df))``.

    Dims ``(..., time_offset, freq_offset)`` with ``dt`` in ``[-(T-1), T-1]`` and ``df`` in ``[-(F-1), F-1]``;
    its marginals are :func:`freq_offset_profile` and :func:`time_offset_profile`. A profile is returned as it is.
    """
    if form_of(attention, "offset_profile", ("maps", "rows", "profile")) == "profile":
        return attention
    check_attention(attention, "offset_profile")
    time_bins, freq_bins = attention.sizes["k_time"], attention.sizes["k_freq"]
    if "query" in attention.dims:
        rows = attention.transpose(..., "query", *KEY_DIMS)
        q_time, q_freq = attention.q_time.values, attention.q_freq.values
    else:
        rows = attention.stack(query=("q_time", "q_freq")).transpose(..., "query", *KEY_DIMS)
        q_time = rows["q_time"].values
        q_freq = rows["q_freq"].values
    values = rows.values
    lead = values.shape[:-3]
    profile = np.zeros((*lead, 2 * time_bins - 1, 2 * freq_bins - 1))
    for i, (t, f) in enumerate(zip(q_time, q_freq)):
        t0, f0 = time_bins - 1 - int(t), freq_bins - 1 - int(f)
        profile[..., t0:t0 + time_bins, f0:f0 + freq_bins] += values[..., i, :, :]
    lead_dims = [d for d in rows.dims if d not in ("query", *KEY_DIMS)]
    return xr.DataArray(
        profile / len(q_time),
        dims=(*lead_dims, "time_offset", "freq_offset"),
        coords={**_coords_without(rows, ("query", *KEY_DIMS)),
                "time_offset": np.arange(-(time_bins - 1), time_bins),
                "freq_offset": np.arange(-(freq_bins - 1), freq_bins)},
        name="offset_profile",
    )


def freq_offset_profile(profile: xr.DataArray) -> xr.DataArray:
    """Mass by frequency distance ``df = f_k - f_q`` (sums to 1 over ``freq_offset``); maps and rows are turned
    into their :func:`offset_profile` first."""
    return offset_profile(profile).sum("time_offset")


def time_offset_profile(profile: xr.DataArray) -> xr.DataArray:
    """Mass by time distance ``dt = t_k - t_q`` (sums to 1 over ``time_offset``); maps and rows are turned into
    their :func:`offset_profile` first."""
    return offset_profile(profile).sum("freq_offset")


def key_offset_profile(profile: xr.DataArray) -> xr.DataArray:
    """Mean attention per query-key pair at flattened key offset ``d = j - i = dt * F + df`` (time-major tokens).

    From a joint offset profile over all queries: ``x(d) = N sum P(dt, df) / sum pairs(dt, df)`` over the
    ``(dt, df)`` with ``dt F + df = d``, where ``pairs = (T - |dt|)(F - |df|)`` counts the query-key pairs at that
    offset. Dim ``key_offset`` in ``[-(N-1), N-1]``; this is the stripe pattern of the paper's Figure 2b. Maps and
    rows are turned into their :func:`offset_profile` first; a key offset profile is returned as it is.
    """
    if form_of(profile, "key_offset_profile", ("maps", "rows", "profile", "key_profile")) == "key_profile":
        return profile
    profile = offset_profile(profile)
    time_bins = (profile.sizes["time_offset"] + 1) // 2
    freq_bins = (profile.sizes["freq_offset"] + 1) // 2
    tokens = time_bins * freq_bins
    dt = profile.time_offset.values[:, None]
    df = profile.freq_offset.values[None, :]
    flat = (dt * freq_bins + df + tokens - 1).ravel()
    pairs = ((time_bins - np.abs(dt)) * (freq_bins - np.abs(df))).ravel().astype(float)
    mass = profile.transpose(..., "time_offset", "freq_offset").values
    mass = mass.reshape(*mass.shape[:-2], -1) * tokens
    summed = np.zeros((*mass.shape[:-1], 2 * tokens - 1))
    counts = np.zeros(2 * tokens - 1)
    np.add.at(counts, flat, pairs)
    np.add.at(np.moveaxis(summed, -1, 0), flat, np.moveaxis(mass, -1, 0))
    lead_dims = [d for d in profile.dims if d not in ("time_offset", "freq_offset")]
    return xr.DataArray(
        summed / np.maximum(counts, 1),
        dims=(*lead_dims, "key_offset"),
        coords={**_coords_without(profile, ("time_offset", "freq_offset")),
                "key_offset": np.arange(-(tokens - 1), tokens)},
        name="key_offset_profile",
    )


def periodicity(key_profile: xr.DataArray, max_period: int | None = None, tolerance: float = 0.8) -> xr.Dataset:
    """Dominant period of attention along the flattened key index, found from the data alone.

    The profile is folded (``x(d) = (x(d) + x(-d)) / 2`` for ``d >= 1``, leaving out the query itself), differenced
    once (which removes a slow decay with distance), and autocorrelated; the period is the smallest lag >= 2 whose
    autocorrelation is within ``tolerance`` of the largest, and ``strength`` is that autocorrelation (0 to 1).
    A profile with no variation has no period (NaN) and strength 0. Returns a Dataset with ``period`` and
    ``strength`` over the profile's other dims. Maps, rows and joint profiles are turned into their
    :func:`key_offset_profile` first.
    """
    key_profile = key_offset_profile(key_profile)

    def one(x: np.ndarray) -> tuple[float, float]:
        center = (x.size - 1) // 2
        folded = 0.5 * (x[center + 1:] + x[center - 1::-1][: x.size - center - 1])
        diff = np.diff(folded)
        diff = diff - diff.mean()
        if diff.size < 4 or np.sum(diff**2) <= 1e-20 * max(np.sum(folded**2), 1e-30):
            return np.nan, 0.0
        limit = min(max_period or diff.size // 2, diff.size - 1)
        lags = np.arange(2, limit + 1)
        if lags.size == 0:
            return np.nan, 0.0
        corr = np.array([np.dot(diff[:-lag], diff[lag:]) / np.sqrt(np.dot(diff[:-lag], diff[:-lag])
                                                                    * np.dot(diff[lag:], diff[lag:]) + 1e-30)
                         for lag in lags])
        best = corr.max()
        if best <= 0:
            return np.nan, 0.0
        period = int(lags[np.argmax(corr >= tolerance * best)])
        return float(period), float(corr[period - 2])

    period, strength = xr.apply_ufunc(
        lambda x: tuple(np.asarray(v) for v in one(x)), key_profile, input_core_dims=[["key_offset"]],
        output_core_dims=[[], []], vectorize=True,
    )
    return xr.Dataset(dict(period=period, strength=strength))
