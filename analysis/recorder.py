"""Record self-attention probabilities of chosen modules and denoising steps into xarray.

    with analysis.record_attention(pipe, blocks=["down_blocks.1"], steps=[0, 25, 49]) as rec:
        pipe("a dog barking", num_inference_steps=50)
    rec.maps["down_blocks.1.attentions.0.transformer_blocks.0.attn1"]   # (step, head, q_time, q_freq, k_time, k_freq)

A wrapper around each selected module's processor recomputes that module's queries and keys from its input,
builds the probabilities ``softmax(q k^T * scale)`` in query chunks, and then calls the original processor, so the
pipeline's output is unchanged and modules not recorded keep their fast kernels. For every recorded (module, step)
it always streams summaries over all queries (the joint (time, freq) offset profile, same-frequency mass, entropy,
the mass and output error of a LiteFocus focus set); it keeps full maps when ``queries="all"``, or the full rows of
a seeded sample of ``queries`` query tokens otherwise.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np
import torch
import xarray as xr

from litefocus.kernel import cross_key_count
from litefocus.keys import check_seed, drawn_keys, module_key
from litefocus.layers import ProcessorLayer
from litefocus.probes import GridProbe, StepProbe, attach_grid_probes, attach_step_probe, check_grid_tokens
from litefocus.processor import attention_inputs
from litefocus.selection import BlockSelection, block_of, self_attention_modules, unet_of

GUIDANCE_HALVES = ("cond", "uncond", "all")


def check_steps(steps) -> list[int]:
    """Sorted distinct step indices, or a ValueError: a non-empty iterable of ints >= 0."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise ValueError(f"steps must be a list of step indices (ints >= 0) or None for every step; got {steps!r}")
    steps = list(steps)
    if not steps:
        raise ValueError("steps is empty: give step indices (ints >= 0), or None for every step")
    bad = [s for s in steps if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0]
    if bad:
        raise ValueError(f"steps must be ints >= 0 (UNet calls since the recorder was entered); got {bad}")
    return sorted(set(int(s) for s in steps))


class AttentionRecorder:
    """Hooks that record attention; use through :func:`record_attention` (a context manager).

    Args that matter:
        blocks: which self-attention modules (as for ``litefocus.apply``; None = all of them).
        steps: denoising step indices to record (UNet calls since entering, from 0); None = every step.
        queries: ``"all"`` to keep full maps, or a number of query tokens whose full rows are kept (seeded sample).
        summary_queries: None to compute the summaries over every query; a number to estimate them (unbiased
            means) from that many queries drawn uniformly (seeded) plus the kept rows, which is what makes long
            audio affordable (at 81.92 s, level 1 has 8192 queries per head).
    Args to tinker with:
        heads: head indices to keep (None = all). guidance: ``"cond"`` (second half of a classifier-free-guidance
        batch, the default), ``"uncond"`` or ``"all"``; maps are averaged over the batch items of that half (when
        the batch is odd there are no halves and all items are used). max_bytes: budget for kept maps and rows;
        exceeding it is an error raised before the pipeline runs a step with the module. focus_ratio, seed:
        the LiteFocus focus set whose attention mass and output error are measured, and the seed of every random
        choice. chunk: queries per probability chunk.
    """

    def __init__(
        self,
        model,
        blocks: BlockSelection = None,
        steps: Iterable[int] | None = None,
        *,
        queries: int | str = "all",
        summary_queries: int | None = None,
        heads: Iterable[int] | None = None,
        guidance: str = "cond",
        max_bytes: int = 2**30,
        focus_ratio: float = 0.1,
        seed: int = 0,
        chunk: int = 256,
    ):
        if guidance not in GUIDANCE_HALVES:
            raise ValueError(f"guidance must be one of {GUIDANCE_HALVES}; got {guidance!r}")
        if queries != "all" and (isinstance(queries, bool) or not (isinstance(queries, numbers.Integral)
                                                                    and queries > 0)):
            raise ValueError(f"queries must be 'all' or a positive number of sampled query tokens; got {queries!r}")
        if summary_queries is not None and (isinstance(summary_queries, bool) or not (
                isinstance(summary_queries, numbers.Integral) and summary_queries > 0)):
            raise ValueError(f"summary_queries must be None (all) or a positive number; got {summary_queries!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
            raise ValueError(f"chunk must be a positive number of queries; got {chunk!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Real) or not max_bytes > 0:
            raise ValueError(f"max_bytes must be a positive number of bytes; got {max_bytes!r}")
        cross_key_count(1, focus_ratio)  # checks focus_ratio
        check_seed(seed)
        self.summary_queries = None if summary_queries is None else int(summary_queries)
        self.unet = unet_of(model)
        self.scheduler = getattr(model, "scheduler", None)  # a pipeline's: how many steps a run has, once it runs
        self.names = self_attention_modules(self.unet, blocks)
        self.steps = None if steps is None else check_steps(steps)
        self.queries = queries if queries == "all" else int(queries)
        self.guidance, self.max_bytes = guidance, int(max_bytes)
        self.heads = None if heads is None else check_heads(heads, self.unet, self.names)
        self.focus_ratio, self.seed, self.chunk = focus_ratio, check_seed(seed), int(chunk)
        self.step = -1
        self.timesteps: dict[int, float] = {}
        self._records: dict[str, dict[int, dict[str, np.ndarray]]] = {name: {} for name in self.names}
        self._grids: dict[str, tuple[int, int]] = {}
        self._samples: dict[str, np.ndarray] = {}
        self._kept_bytes = 0
        self._layer: ProcessorLayer | None = None

    # -- attaching -------------------------------------------------------------------------------------------
    def __enter__(self) -> AttentionRecorder:
        if self._layer is not None:
            raise RuntimeError("this recorder is already attached")
        layer = ProcessorLayer(self.unet, "recorder")
        probes, layer.hooks = attach_grid_probes(self.unet, self.names)
        layer.hooks.append(attach_step_probe(self.unet, self._on_unet_call)[1])
        layer.attach(lambda name, _: _RecordingProcessor(layer, self, name, probes.get(name)), self.names)
        self._layer = layer
        return self

    def __exit__(self, exc_type, *exc) -> None:
        """Detach, in any order relative to other recorders and to LiteFocus blocks; then say if chosen steps were
        never reached."""
        if self._layer is not None:
            self._layer.detach()
            self._layer = None
        if exc_type is None and self.steps is not None and self.step >= 0:
            missed = [s for s in self.steps if s > self.step]
            if missed:
                raise ValueError(f"steps {missed} were never reached: the UNet was called {self.step + 1} times "
                                 f"(steps 0 to {self.step}); choose steps below num_inference_steps")

    def _on_unet_call(self, probe: StepProbe, args, kwargs) -> None:
        self.step += 1
        if probe.timestep is not None:
            self.timesteps[self.step] = float(torch.as_tensor(probe.timestep).flatten()[0])

    def recording(self, name: str) -> bool:
        return (self.steps is None or self.step in self.steps) and self.step not in self._records[name]

    # -- measuring -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def record(self, name: str, attn, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               grid: tuple[int, int]) -> None:
        """Probabilities of one module call, from ``(batch, heads, N, head_dim)`` queries, keys and values of the
        chosen guidance half (see :meth:`select_batch`), in four steps: the chosen heads (queries scaled), the focus
        set LiteFocus would use, the probabilities of the processed queries row by row and chunk by chunk (each
        chunk adds to the six summaries, :class:`_CallSummaries`), and the summaries stored for this step."""
        check_grid_tokens(grid, query.shape[2], name)
        if name in self._grids and self._grids[name] != tuple(grid):
            raise ValueError(f"{name}: this recorder holds steps on the (time, freq) grid {self._grids[name]} and now "
                             f"gets {tuple(grid)} (another length): one recorder records calls of one length; open "
                             "a record_attention block around each call")
        time_bins, freq_bins = grid
        tokens = time_bins * freq_bins
        if self.heads is not None:
            query, key, value = (x[:, self.heads] for x in (query, key, value))
        query, key, value = query.float() * attn.scale, key.float(), value.float()
        batch, heads, _, dim = query.shape
        kept = self._kept_rows(name, tokens)
        self._check_budget(name, heads, kept, tokens)
        self._grids[name] = tuple(grid)
        in_cross, key_freq = self._focus_keys(name, tokens, freq_bins, query.device)
        processed = self._processed_queries(name, tokens)
        summaries = _CallSummaries(heads, grid, kept, query.device)
        # large per-chunk results go into buffers allocated once: fresh ones cost more in page faults than the math
        chunk_max = min(self.chunk, processed.size)
        logits_buffer, probs_buffer = (query.new_empty(batch * heads * chunk_max * tokens) for _ in range(2))
        key_t = key.transpose(-1, -2)
        for freq in range(freq_bins):
            group = processed[processed % freq_bins == freq]
            if group.size == 0:
                continue
            focus = ((key_freq == freq) | in_cross).to(value.dtype)[:, None].expand(batch, heads, tokens, 1)
            # one product with [v, v on the focus set, k, focus indicator] gives, per query: the exact output,
            # the focus-set numerator, sum_k p_k k (for the entropy) and the focus mass
            extended = torch.cat([value, value * focus, key, focus], dim=-1)
            for chunk in np.array_split(group, -(-group.size // self.chunk)):
                size = batch * heads * chunk.size * tokens
                chunk_query = query[:, :, torch.as_tensor(chunk, device=query.device)]
                logits = torch.matmul(chunk_query, key_t,
                                      out=logits_buffer[:size].view(batch, heads, chunk.size, tokens))
                probs = torch.softmax(logits, dim=-1, out=probs_buffer[:size].view_as(logits))
                summaries.add(chunk, freq, chunk_query, logits, probs, extended)
        self._records[name][self.step] = summaries.result(processed.size * batch, processed.size)

    def _focus_keys(self, name: str, tokens: int, freq_bins: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(in_cross, key_freq)``: which keys LiteFocus with this seed draws in this module at this timestep
        (bool ``(N,)``, :func:`litefocus.keys.drawn_keys`) and each key's frequency row (``(N,)``); a query on row f
        focuses on the keys of row f and the drawn ones."""
        timestep = self.timesteps.get(self.step, self.step)
        cross = drawn_keys(module_key(self.seed, name), timestep, tokens, self.focus_ratio)
        in_cross = torch.zeros(tokens, dtype=torch.bool, device=device)
        in_cross[cross.to(device)] = True
        return in_cross, torch.arange(tokens, device=device) % freq_bins

    def select_batch(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """The batch items of the chosen classifier-free-guidance half (all of them when the batch is odd)."""
        if x is None or self.guidance == "all" or x.shape[0] % 2:
            return x
        half = x.shape[0] // 2
        return x[half:] if self.guidance == "cond" else x[:half]

    def _kept_rows(self, name: str, tokens: int) -> np.ndarray:
        """Query indices whose rows are kept: all of them for full maps, or a seeded sample, fixed per module."""
        if name not in self._samples:
            if self.queries == "all" or self.queries >= tokens:
                self._samples[name] = np.arange(tokens)
            else:
                rng = np.random.default_rng(self.seed)
                self._samples[name] = np.sort(rng.choice(tokens, size=self.queries, replace=False))
        return self._samples[name]

    def _processed_queries(self, name: str, tokens: int) -> np.ndarray:
        """Queries whose probabilities are computed: all, or a seeded uniform sample united with the kept rows."""
        kept = self._samples[name]
        if self.summary_queries is None or self.summary_queries >= tokens or len(kept) == tokens:
            return np.arange(tokens)
        rng = np.random.default_rng(self.seed + 1)
        return np.union1d(rng.choice(tokens, size=self.summary_queries, replace=False), kept)

    def _steps_left(self) -> int:
        """Recorded steps from this one on: from ``steps``, else from the pipeline's scheduler once the run has set
        its timesteps (1 when neither says)."""
        if self.steps is not None:
            return sum(s >= self.step for s in self.steps)
        timesteps = getattr(self.scheduler, "timesteps", None)
        return max(1, len(timesteps) - self.step) if timesteps is not None and len(timesteps) else 1

    def _check_budget(self, name: str, heads: int, kept: np.ndarray, tokens: int) -> None:
        """At a module's first recorded call: an error unless its kept rows of every recorded step to come fit in
        ``max_bytes`` with what is kept already (a run's steps known from the start: the error comes at step 0)."""
        steps_left = self._steps_left()
        planned = 4 * heads * len(kept) * tokens
        if self._kept_bytes + planned * steps_left > self.max_bytes:
            raise MemoryError(
                f"keeping attention rows of {name} ({heads} heads x {len(kept)} queries x {tokens} keys, "
                f"{planned / 2**20:.2f} MiB a step, {steps_left} step(s) to record, {self._kept_bytes / 2**20:.2f} "
                f"MiB kept already) would exceed max_bytes={self.max_bytes / 2**20:.2f} MiB; record fewer steps, "
                "heads or blocks, sample queries (queries=64), or raise max_bytes")
        self._kept_bytes += planned

    # -- results ---------------------------------------------------------------------------------------------
    def dataset(self, name: str) -> xr.Dataset:
        """Everything recorded for one module: summaries over (step, head, ...) and the kept rows."""
        records = self._records[name]
        if not records:
            raise KeyError(f"nothing was recorded for {name}: was the pipeline called inside the with-block, "
                           f"and do the chosen steps {self.steps} exist?")
        steps = sorted(records)
        time_bins, freq_bins = self._grids[name]
        heads = self.heads if self.heads is not None else list(range(records[steps[0]]["entropy"].shape[0]))
        stack = lambda key: np.stack([records[s][key] for s in steps])  # noqa: E731
        kept = self._samples[name]
        coords = dict(
            step=steps,
            timestep=("step", [self.timesteps.get(s, np.nan) for s in steps]),
            head=heads,
            time_offset=np.arange(-(time_bins - 1), time_bins),
            freq_offset=np.arange(-(freq_bins - 1), freq_bins),
            query=np.arange(len(kept)),
            q_time=("query", kept // freq_bins),
            q_freq=("query", kept % freq_bins),
            k_time=np.arange(time_bins),
            k_freq=np.arange(freq_bins),
            query_freq=np.arange(freq_bins),
        )
        rows = stack("rows").reshape(len(steps), len(heads), len(kept), time_bins, freq_bins)
        ds = xr.Dataset(
            dict(
                offset_profile=(("step", "head", "time_offset", "freq_offset"), stack("offset_profile")),
                row_mass=(("step", "head", "query_freq", "k_freq"), stack("row_mass")),
                entropy=(("step", "head"), stack("entropy")),
                focus_mass=(("step", "head"), stack("focus_mass")),
                sparse_error=(("step", "head"), stack("sparse_error")),
                rows=(("step", "head", "query", "k_time", "k_freq"), rows),
            ),
            coords=coords,
            attrs=dict(module=name, block=block_of(name), time_bins=time_bins, freq_bins=freq_bins,
                       guidance=self.guidance, focus_ratio=self.focus_ratio,
                       focus_keys=cross_key_count(time_bins * freq_bins, self.focus_ratio), seed=self.seed,
                       full_maps=int(len(kept) == time_bins * freq_bins),
                       summary_queries=len(self._processed_queries(name, time_bins * freq_bins))),
        )
        ds["offset_profile"].attrs["description"] = (
            "mean over queries of the attention mass at key offset (time_offset, freq_offset) from the query")
        ds["row_mass"].attrs["description"] = (
            "mean over the queries of each frequency row (query_freq) of the attention mass on each key row (k_freq)")
        ds["focus_mass"].attrs["description"] = "mean over queries of the exact attention mass on the LiteFocus focus set"
        ds["sparse_error"].attrs["description"] = (
            "mean over queries of |o_focus - o| / |o|: relative output error of attention restricted to the focus set")
        return ds

    @property
    def recorded(self) -> list[str]:
        return [name for name in self.names if self._records[name]]

    @property
    def maps(self) -> dict[str, xr.DataArray]:
        """Full attention maps per module, dims (step, head, q_time, q_freq, k_time, k_freq); needs queries='all'."""
        if self.queries != "all":
            raise ValueError("full maps were not kept (queries is a sample); use rec.rows or rec.dataset(name)")
        return {name: _rows_to_map(self.dataset(name)["rows"]) for name in self.recorded}

    @property
    def rows(self) -> dict[str, xr.DataArray]:
        """The kept query rows per module, dims (step, head, query, k_time, k_freq)."""
        return {name: self.dataset(name)["rows"] for name in self.recorded}

    def to_datatree(self) -> xr.DataTree:
        """One node per recorded module (dots in names become '/': down_blocks/1/attentions/0/...)."""
        return xr.DataTree.from_dict({name.replace(".", "/"): self.dataset(name) for name in self.recorded})


class _RecordingProcessor:
    """Records a module's attention, then runs the processor it wraps (its layer's saved one) unchanged."""

    wraps = True

    def __init__(self, layer: ProcessorLayer, recorder: AttentionRecorder, name: str, grid: GridProbe | None):
        self.layer, self.recorder, self.name, self.grid = layer, recorder, name, grid

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if encoder_hidden_states is None and self.recorder.recording(self.name):
            select = self.recorder.select_batch
            inputs = attention_inputs(attn, select(hidden_states), select(temb))
            grid = inputs.grid or (self.grid.shape if self.grid is not None else None)
            if grid is None:
                raise RuntimeError(f"no (time, freq) grid is known for {self.name}")
            self.recorder.record(self.name, attn, inputs.query, inputs.key, inputs.value, grid)
        original = self.layer.saved(self.name)
        return original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class _CallSummaries:
    """The six summaries of one module call, summed over chunks of queries: the offset profile ``(heads, 2T-1,
    2F-1)``, the row-mass matrix ``(heads, F, F)`` (query row, key row), entropy, focus mass and sparse error
    ``(heads,)``, and the kept rows ``(heads, kept, N)``."""

    def __init__(self, heads: int, grid: tuple[int, int], kept: np.ndarray, device) -> None:
        self.time_bins, self.freq_bins = grid
        tokens = self.time_bins * self.freq_bins
        self.profile = torch.zeros(heads, 2 * self.time_bins - 1, 2 * self.freq_bins - 1, dtype=torch.float64,
                                   device=device)
        self.entropy, self.focus_mass, self.error = (torch.zeros(heads, dtype=torch.float64, device=device)
                                                     for _ in range(3))
        self.row_mass = torch.zeros(heads, self.freq_bins, self.freq_bins, dtype=torch.float64, device=device)
        self.row_queries = torch.zeros(self.freq_bins, dtype=torch.float64, device=device)
        self.rows = np.empty((heads, len(kept), tokens), dtype=np.float32)
        self.row_of = {int(q): i for i, q in enumerate(kept)}

    def add(self, chunk: np.ndarray, freq: int, chunk_query: torch.Tensor, logits: torch.Tensor, probs: torch.Tensor,
            extended: torch.Tensor) -> None:
        """One chunk of queries, all on frequency row ``freq``: ``probs`` ``(batch, heads, chunk, N)`` from
        ``logits``; ``extended`` the values, the values on the focus set, the keys and the focus indicator."""
        dim = chunk_query.shape[-1]
        heads, time_bins, freq_bins = probs.shape[1], self.time_bins, self.freq_bins
        log_partition = logits.amax(-1) - probs.amax(-1).log()  # logsumexp, from the softmax's maximum
        exact, numerator, key_mean, mass = (probs @ extended).split([dim, dim, dim, 1], dim=-1)
        # H = -sum p log p = logsumexp(z) - sum_k p_k z_k, with z_k = q.k_k (q already scaled)
        chunk_entropy = log_partition - (chunk_query * key_mean).sum(-1)
        self.entropy += chunk_entropy.sum((0, 2)).double()
        self.focus_mass += mass[..., 0].sum((0, 2)).double()
        relative = (numerator / mass - exact).norm(dim=-1) / exact.norm(dim=-1).clamp_min(1e-12)
        self.error += relative.sum((0, 2)).double()
        mean_probs = (probs[0] if probs.shape[0] == 1 else probs.mean(0)).view(heads, chunk.size, time_bins,
                                                                               freq_bins)
        self.row_mass[:, freq] += mean_probs.sum((1, 2)).double()
        self.row_queries[freq] += chunk.size
        low = freq_bins - 1 - freq
        for i, query_index in enumerate(chunk.tolist()):
            query_time = query_index // freq_bins
            self.profile[:, time_bins - 1 - query_time:2 * time_bins - 1 - query_time,
                         low:low + freq_bins] += mean_probs[:, i]
            if query_index in self.row_of:
                self.rows[:, self.row_of[query_index]] = mean_probs[:, i].reshape(heads, -1).cpu().numpy()

    def result(self, count: int, queries: int) -> dict[str, np.ndarray]:
        """Means: the profile over ``queries`` processed queries, the rest over ``count`` (queries x batch)."""
        return dict(
            offset_profile=(self.profile / queries).cpu().numpy(),
            row_mass=(self.row_mass / self.row_queries[:, None]).cpu().numpy(),  # NaN for a row with no query
            entropy=(self.entropy / count).cpu().numpy(),
            focus_mass=(self.focus_mass / count).cpu().numpy(),
            sparse_error=(self.error / count).cpu().numpy(),
            rows=self.rows,
        )


def check_heads(heads, unet, names: list[str]) -> list[int]:
    """``heads`` as sorted distinct ints, each below every chosen module's head count; an error names what is valid."""
    if isinstance(heads, (str, bytes)) or not hasattr(heads, "__iter__"):
        raise ValueError(f"heads must be a list of head indices (or None: all); got {heads!r}")
    heads = list(heads)
    if not heads or not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 0 for h in heads):
        raise ValueError(f"heads must be a non-empty list of head indices >= 0 (or None: all); got {heads!r}")
    chosen = sorted({int(h) for h in heads})
    fewest = min(unet.get_submodule(name).heads for name in names)
    if chosen[-1] >= fewest:
        raise ValueError(f"heads {[h for h in chosen if h >= fewest]} do not exist in every chosen module: the "
                         f"fewest heads among them is {fewest} (indices 0 to {fewest - 1})")
    return chosen


def record_attention(model, blocks: BlockSelection = None, steps: Iterable[int] | None = None,
                     **kwargs) -> AttentionRecorder:
    """``with record_attention(pipe, blocks, steps, ...) as rec:`` (see :class:`AttentionRecorder`)."""
    return AttentionRecorder(model, blocks, steps, **kwargs)


def _rows_to_map(rows: xr.DataArray) -> xr.DataArray:
    """Rows of every query (step, head, query, k_time, k_freq) -> (step, head, q_time, q_freq, k_time, k_freq)."""
    time_bins, freq_bins = rows.sizes["k_time"], rows.sizes["k_freq"]
    values = rows.values.reshape(rows.sizes["step"], rows.sizes["head"], time_bins, freq_bins,
                                 time_bins, freq_bins)
    return xr.DataArray(
        values,
        dims=("step", "head", "q_time", "q_freq", "k_time", "k_freq"),
        coords=dict(step=rows["step"].values, timestep=("step", rows["timestep"].values), head=rows["head"].values,
                    q_time=np.arange(time_bins),
                    q_freq=np.arange(freq_bins), k_time=np.arange(time_bins), k_freq=np.arange(freq_bins)),
        attrs=dict(rows.attrs),
        name="attention",
    )
