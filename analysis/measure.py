"""From recorded attention to a table of evidence per module and step (``analysis.block_choice`` chooses blocks
from it)."""

from __future__ import annotations

import json
import math
import numbers

import torch
import xarray as xr

from litefocus.keys import check_seed
from litefocus.selection import BlockSelection, level_of, self_attention_modules

from . import metrics
from .recorder import AttentionRecorder, check_steps, record_attention


def sparsity_dataset(recorder: AttentionRecorder) -> xr.Dataset:
    """Per (module, step, head): same-frequency mass and ratio, focus contrast, sink strength, same-time ratio, head
    class, periodicity, entropy, focus mass, sparse error.

    Coordinates ``module``, ``block``, ``time_bins``, ``freq_bins`` (per module), ``step``, ``timestep``, ``head``.
    Modules of different levels have different grids, so only grid-free scalars are gathered here; the profiles
    and rows stay in ``recorder.to_datatree()``.
    """
    per_module = []
    for name in recorder.recorded:
        ds = recorder.dataset(name)
        profile = ds["offset_profile"]
        period = metrics.periodicity(metrics.key_offset_profile(profile))
        per_module.append(xr.Dataset(dict(
            same_frequency_mass=metrics.same_frequency_mass(profile),
            same_frequency_ratio=metrics.same_frequency_mass(profile) * ds.attrs["freq_bins"],
            focus_contrast=metrics.focus_contrast(ds["row_mass"]),
            sink_strength=metrics.sink_strength(ds["row_mass"]),
            same_time_ratio=metrics.same_time_ratio(profile),
            head_class=metrics.head_class(profile, row_masses=ds["row_mass"]),
            periodicity_period=period["period"],
            periodicity_strength=period["strength"],
            entropy=ds["entropy"],
            focus_mass=ds["focus_mass"],
            sparse_error=ds["sparse_error"],
        )).expand_dims(module=[name]).assign_coords(
            block=("module", [ds.attrs["block"]]),
            time_bins=("module", [ds.attrs["time_bins"]]),
            freq_bins=("module", [ds.attrs["freq_bins"]]),
        ))
    if not per_module:
        raise ValueError("nothing was recorded: call the pipeline inside the recorder's with-block")
    out = xr.concat(per_module, dim="module", join="outer")
    out["same_frequency_mass"].attrs["description"] = "mean attention mass on the query's own frequency row"
    out["same_frequency_ratio"].attrs["description"] = "same_frequency_mass over its uniform baseline 1/F"
    out["focus_contrast"].attrs["description"] = (
        "mass row f's queries give row f over the mean mass other rows' queries give it (1 under a shared preference)")
    out["sink_strength"].attrs["description"] = "largest mean mass a key frequency row draws, times F (1: no sink)"
    out["same_time_ratio"].attrs["description"] = "mean attention mass on the query's own time column, times T"
    out["head_class"].attrs["description"] = (
        "own_row, same_time or sink_row: the masked form keeping the most mass, at least half; else global")
    out["periodicity_period"].attrs["description"] = "dominant period along the flattened key index (tokens)"
    out.attrs.update(guidance=recorder.guidance, focus_ratio=recorder.focus_ratio, seed=recorder.seed,
                     level_modules=json.dumps(level_modules(recorder, out)))
    return out


def level_modules(recorder: AttentionRecorder, ds: xr.Dataset) -> dict[str, int]:
    """``{freq_bins: self-attention modules of the whole UNet at that level}`` for the levels recorded: what a block's
    share of its level counts against, recorded or not (``block_choice.block_table``'s ``level_fraction``)."""
    every = [level_of(name, recorder.unet) for name in self_attention_modules(recorder.unet)]
    freq_of_level = {level_of(str(m), recorder.unet): int(f) for m, f in zip(ds.module.values, ds.freq_bins.values)}
    return {str(freq): every.count(level) for level, freq in freq_of_level.items()}


def measure_sparsity(
    pipe,
    prompt: str,
    audio_length_in_s: float = 10.24,
    num_inference_steps: int = 50,
    seed: int = 0,
    *,
    blocks: BlockSelection = None,
    steps=None,
    queries: int = 16,
    summary_queries: int | None = 2048,
    focus_ratio: float = 0.1,
    chunk: int = 256,
    **pipe_kwargs,
) -> xr.Dataset:
    """Run ``pipe(prompt, ...)`` once while recording every chosen self-attention module; return
    :func:`sparsity_dataset` with the settings in ``attrs``.

    ``blocks``/``steps`` restrict what is recorded (default: all self-attention, every step); ``queries`` full
    rows per module and step are kept for figures; modules with more than ``summary_queries`` tokens have their
    summaries estimated from that many uniformly drawn queries (None: always all); ``chunk`` queries share one
    probability chunk. The pipeline's own output is unchanged. Every argument is checked before the pipeline runs.
    """
    return measure_run(pipe, prompt, audio_length_in_s, num_inference_steps, seed, blocks=blocks, steps=steps,
                       queries=queries, summary_queries=summary_queries, focus_ratio=focus_ratio, chunk=chunk,
                       **pipe_kwargs)[0]


def measure_run(pipe, prompt: str, audio_length_in_s: float = 10.24, num_inference_steps: int = 50, seed: int = 0,
                *, blocks: BlockSelection = None, steps=None, queries: int = 16, summary_queries: int | None = 2048,
                focus_ratio: float = 0.1, chunk: int = 256, **pipe_kwargs) -> tuple[xr.Dataset, AttentionRecorder]:
    """:func:`measure_sparsity`'s dataset and the recorder it came from (its rows and profiles per module, for
    figures: ``recorder.dataset(module)``, ``recorder.to_datatree()``)."""
    check_run(prompt, audio_length_in_s, num_inference_steps, steps)
    owned = {"generator", "prompt", "audio_length_in_s", "num_inference_steps"} & set(pipe_kwargs)
    if owned:
        raise ValueError(f"measure_sparsity sets {', '.join(sorted(owned))} itself (the noise comes from seed=, "
                         "so a measurement is reproducible); pass seed= instead of a generator")
    generator = torch.Generator().manual_seed(check_seed(seed))
    with record_attention(pipe, blocks, steps, queries=queries, summary_queries=summary_queries,
                          focus_ratio=focus_ratio, seed=seed, chunk=chunk) as rec:
        pipe(prompt, audio_length_in_s=audio_length_in_s, num_inference_steps=num_inference_steps,
             generator=generator, **pipe_kwargs)
    ds = sparsity_dataset(rec)
    ds.attrs.update(prompt=prompt, audio_length_in_s=audio_length_in_s, num_inference_steps=num_inference_steps,
                    model=type(pipe).__name__)
    return ds, rec


def check_run(prompt, audio_length_in_s, num_inference_steps, steps=None) -> None:
    """ValueError/TypeError naming the argument, for a pipeline run's settings and the steps to record in it."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string; got {prompt!r}")
    if isinstance(audio_length_in_s, bool) or not isinstance(audio_length_in_s, numbers.Real) \
            or not math.isfinite(audio_length_in_s) or audio_length_in_s <= 0:
        raise ValueError(f"audio_length_in_s must be a positive finite number of seconds; got {audio_length_in_s!r}")
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral) \
            or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an int >= 1; got {num_inference_steps!r}")
    if steps is not None:
        outside = sorted(s for s in check_steps(steps) if s >= num_inference_steps)
        if outside:
            raise ValueError(f"steps {outside} are outside the run: with num_inference_steps={num_inference_steps} "
                             f"the UNet is called at steps 0 to {num_inference_steps - 1}")
