"""Figures: one query's attention on the (time, freq) grid (paper Fig. 2a), the token-by-token map with its stripes
at interval F (Fig. 2b), offset profiles, and a block-by-step heatmap of same-frequency concentration."""

from __future__ import annotations

import numpy as np
import xarray as xr


def _pyplot():
    import matplotlib.pyplot as plt  # Agg by itself where there is no display; inline in notebooks

    return plt


def _only_dims(array, dims: tuple[str, ...], function: str) -> None:
    """An error, before any drawing, unless ``array`` is a DataArray with exactly ``dims``; it names the others."""
    if not isinstance(array, xr.DataArray):
        raise TypeError(f"{function} takes an xarray.DataArray with dims {dims}; got {type(array).__name__}")
    extra, missing = [d for d in array.dims if d not in dims], [d for d in dims if d not in array.dims]
    if extra or missing:
        picks = ", ".join(f"{d}=..." for d in extra)
        raise ValueError(f"{function} draws dims {dims}; got {array.dims}" + (
            f": select or average the others first (.isel({picks}) or .mean({extra}))" if extra else ""))


def query_attention(rows: xr.DataArray, query: int = 0, ax=None, title: str | None = None):
    """One query's attention over keys on the (time, freq) grid, the query marked (Fig. 2a).

    ``rows``: dims ``(query, k_time, k_freq)`` (select step and head first) with ``q_time``/``q_freq`` coordinates;
    full maps work too after ``.stack(query=("q_time", "q_freq"))``.
    """
    _only_dims(rows, ("query", "k_time", "k_freq"), "query_attention")
    count = rows.sizes["query"]
    if isinstance(query, bool) or not isinstance(query, (int, np.integer)) or not -count <= query < count:
        raise ValueError(f"query must be an index of one of the {count} recorded queries (0 to {count - 1}); "
                         f"got {query!r}")
    plt = _pyplot()
    row = rows.isel(query=query)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.6))
    image = ax.imshow(row.transpose("k_freq", "k_time").values, origin="lower", aspect="auto", cmap="magma")
    ax.plot(int(row.q_time), int(row.q_freq), marker="x", color="cyan", markersize=8, mew=2)
    ax.axhline(int(row.q_freq), color="cyan", lw=0.5, ls=":")
    ax.set(xlabel="key time bin", ylabel="key frequency bin",
           title=title or f"query at (time {int(row.q_time)}, freq {int(row.q_freq)})")
    ax.figure.colorbar(image, ax=ax, label="attention")
    return ax


def token_map(attention: xr.DataArray, tokens: int = 128, ax=None, title: str | None = None):
    """The first ``tokens`` x ``tokens`` block of the attention matrix in time-major token order (Fig. 2b).

    ``attention``: dims ``(q_time, q_freq, k_time, k_freq)``; same-frequency attention shows as diagonal stripes
    every F tokens. Colours are clipped at the 99th percentile so the stripes are not drowned by the diagonal.
    """
    _only_dims(attention, ("q_time", "q_freq", "k_time", "k_freq"), "token_map")
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 1:
        raise ValueError(f"tokens must be a positive integer; got {tokens!r}")
    plt = _pyplot()
    time_bins, freq_bins = attention.sizes["k_time"], attention.sizes["k_freq"]
    matrix = attention.transpose("q_time", "q_freq", "k_time", "k_freq").values.reshape(
        time_bins * freq_bins, time_bins * freq_bins)[:tokens, :tokens]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(matrix, cmap="magma", vmax=np.quantile(matrix, 0.99), interpolation="nearest")
    ax.set(xlabel="key token (t*F + f)", ylabel="query token", title=title or f"attention, F = {freq_bins}")
    ax.figure.colorbar(image, ax=ax, label="attention")
    return ax


def offset_profiles(profile: xr.DataArray, axes=None, title: str | None = None):
    """Attention mass by frequency distance and by time distance (``profile``: dims (time_offset, freq_offset),
    select or average the other dims first)."""
    _only_dims(profile, ("time_offset", "freq_offset"), "offset_profiles")
    plt = _pyplot()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    freq_bins = (profile.sizes["freq_offset"] + 1) // 2
    by_freq = profile.sum("time_offset")
    axes[0].bar(by_freq.freq_offset, by_freq, color="tab:purple")
    axes[0].axhline(1 / freq_bins, color="k", ls="--", lw=1, label="uniform 1/F")
    axes[0].set(xlabel="frequency offset (bins)", ylabel="attention mass", title="by frequency distance")
    axes[0].legend()
    by_time = profile.sum("freq_offset")
    axes[1].plot(by_time.time_offset, by_time, color="tab:orange")
    axes[1].set(xlabel="time offset (bins)", title="by time distance")
    if title:  # constrained layout keeps the figure title clear of the panel titles
        axes[0].figure.set_layout_engine("constrained")
        axes[0].figure.suptitle(title)
    return axes


def sparsity_heatmap(ds: xr.Dataset, variable: str = "same_frequency_ratio", ax=None):
    """Block-by-step heatmap of a measure from ``measure_sparsity`` (averaged over each block's modules and heads);
    the same-frequency ratio is centred on 1, the uniform baseline."""
    if variable not in ds:
        raise ValueError(f"variable must be one of the dataset's variables ({', '.join(map(str, ds.data_vars))}); "
                         f"got {variable!r}")
    if not {"head", "module", "step"} <= set(ds[variable].dims) or "block" not in ds[variable].coords:
        raise ValueError(f"sparsity_heatmap takes measure_sparsity's dataset (dims step, module, head and a block "
                         f"coordinate); {variable} has dims {ds[variable].dims}")
    plt = _pyplot()
    import seaborn as sns

    table = ds[variable].mean("head").groupby("block").mean("module").to_pandas()
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 1.5))
    centered = dict(center=1.0, cmap="vlag") if variable == "same_frequency_ratio" else dict(cmap="viridis")
    sns.heatmap(table, ax=ax, cbar_kws=dict(label=variable.replace("_", " ")), **centered)
    ax.set(xlabel="denoising step", ylabel="block")
    return ax


def speed_against_length(speed, share, axes=None):
    """The paper's Figure 1 from ``benchmarks/speed.py``'s tables (pandas): left, one UNet forward per configuration
    against audio length; right, the share of the dense forward in self-attention modules (solid) and in their
    attention core (dashed) per UNet level."""
    plt = _pyplot()
    import seaborn as sns

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    left, right = axes
    sns.lineplot(speed, x="seconds", y="median_s", hue="configuration", marker="o", ax=left)
    left.set(xlabel="audio length (s)", ylabel="UNet forward, batch 2 (s)", title="time per denoising step")
    left.legend(fontsize=7)
    levels = share.pivot_table(index="seconds", columns="level", values=["module_share", "core_share"])
    for level, color in zip(sorted(share.level.unique()), sns.color_palette()):
        right.plot(levels.index, 100 * levels["module_share"][level], "o-", color=color, label=f"level {level} module")
        right.plot(levels.index, 100 * levels["core_share"][level], "o--", color=color, label=f"level {level} core")
    total = share.groupby("seconds").module_share.sum()
    right.plot(total.index, 100 * total, "ko-", label="all self-attention")
    right.set(xlabel="audio length (s)", ylabel="% of the dense forward", title="self-attention share")
    right.legend(fontsize=8)
    return axes
