"""The paper's ablations and ours as named configurations, and outputs of a pipeline under each, from one seed.

A :class:`Configuration` says how to run a UNet (dense, LiteFocus on some blocks with some focus set, or Token
Merging); ``ABLATIONS`` lists the ones this project measures for speed (``benchmarks/speed.py``) and fidelity
(``python -m studies.minildm.fidelity``). :func:`parse_configuration` reads the spec grammar
``NAME[@BLOCK+BLOCK][:RATIO][/SECONDS]`` of sweeps and studies. :func:`generate_under` runs a pipeline once per
configuration from the same seed, and :func:`relative_error` compares each output with the dense one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

import litefocus
from litefocus.baselines import token_merging
from litefocus.selection import name_matches

LEVEL_1 = ("down_blocks.1", "up_blocks.2")  # the paper's blocks, F = 8 in AudioLDM2
LEVELS_1_2 = ("down_blocks.1", "down_blocks.2", "up_blocks.1", "up_blocks.2")  # F = 8 and F = 4
ALL_LEVELS = ("down_blocks", "mid_block", "up_blocks")


@dataclass(frozen=True)
class Configuration:
    """One way to run the UNet.

    kind: "dense", "litefocus" or "token_merging"; ratio: LiteFocus's r, or tomesd's merge ratio.
    keys_fixed_from_s: LiteFocus only; if set, the cross-frequency set keeps the size it has at this audio length
        (seconds): r shrinks as ``ratio * keys_fixed_from_s / seconds`` for longer audio. :meth:`at_length` turns
        such a configuration into a plain one for one length.
    union: LiteFocus only; ``"exact"`` (paper's eq. 4) or ``"concat"`` (the authors' code).
    """

    name: str
    kind: str
    blocks: tuple[str, ...] = ()
    ratio: float = 0.0
    same_frequency: bool = True
    cross_frequency: bool = True
    keys_fixed_from_s: float | None = None
    union: str = "exact"

    def ratio_at(self, seconds: float) -> float:
        """The ratio used for ``seconds`` of audio."""
        if self.keys_fixed_from_s is None or seconds <= self.keys_fixed_from_s:
            return self.ratio
        return self.ratio * self.keys_fixed_from_s / seconds

    def at_length(self, seconds: float) -> Configuration:
        """This configuration with the ratio it has at ``seconds`` of audio, fixed."""
        return replace(self, ratio=self.ratio_at(seconds), keys_fixed_from_s=None)

    @contextmanager
    def applied(self, model, seed: int = 0) -> Iterator[None]:
        """``with config.applied(pipe_or_unet):`` the model runs this configuration inside the block."""
        if self.keys_fixed_from_s is not None:
            raise ValueError(f"{self.name}: its ratio depends on the audio length; apply config.at_length(seconds)")
        if self.kind == "dense":
            yield
        elif self.kind == "litefocus":
            with litefocus.enabled(model, list(self.blocks), self.ratio, seed=seed, union=self.union,
                                   same_frequency=self.same_frequency, cross_frequency=self.cross_frequency):
                yield
        elif self.kind == "token_merging":
            with token_merging(model, list(self.blocks), self.ratio, seed=seed):
                yield
        else:
            raise ValueError(f"unknown kind {self.kind!r}: use 'dense', 'litefocus' or 'token_merging'")

    def core_share(self, module: str, freq_bins: int) -> float:
        """FLOP share of this configuration's attention core in ``module`` vs dense (1.0 where untouched)."""
        if self.kind == "dense" or not any(name_matches(module, block) for block in self.blocks):
            return 1.0
        if self.kind == "token_merging":  # tomesd merges tokens before attn1 only: (1 - ratio)^2 of the products
            return (1 - self.ratio) ** 2 if module.endswith("attn1") else 1.0
        same = 1 / freq_bins if self.same_frequency else 0.0
        return min(1.0, same + (self.ratio if self.cross_frequency else 0.0))


ABLATIONS = [
    Configuration("dense", "dense"),
    # the paper's method and its ablations (Tables 1-3), on its blocks
    Configuration("litefocus", "litefocus", LEVEL_1, 0.1),
    Configuration("same_frequency_only", "litefocus", LEVEL_1, 0.0, cross_frequency=False),
    Configuration("cross_frequency_only", "litefocus", LEVEL_1, 0.1, same_frequency=False),
    Configuration("token_merging", "token_merging", LEVEL_1, 0.5),
    # the authors' released code: one softmax over [own row, random keys] (a random key in the row counts twice)
    Configuration("litefocus_concat", "litefocus", LEVEL_1, 0.1, union="concat"),
    # beyond the paper: more levels, each with its own F
    Configuration("litefocus_levels_1_2", "litefocus", LEVELS_1_2, 0.1),
    Configuration("litefocus_all_levels", "litefocus", ALL_LEVELS, 0.1),
    # beyond the paper: sparsity that grows with length, as its conclusion suggests (same-frequency focus alone is
    # its best configuration at 80 s, Table 3; or a cross-frequency set that stays at its 10.24 s size)
    Configuration("same_frequency_all_levels", "litefocus", ALL_LEVELS, 0.0, cross_frequency=False),
    Configuration("litefocus_all_levels_fixed_keys", "litefocus", ALL_LEVELS, 0.1, keys_fixed_from_s=10.24),
]


# ---------------------------------------------------------------- the configuration-spec grammar
class Spec(NamedTuple):
    """The parts of a configuration spec ``NAME[@BLOCK+BLOCK][:RATIO][/SECONDS]``, as written (unchecked)."""

    name: str
    blocks: tuple[str, ...]
    ratio: str
    fixed_from: str


def split_spec(spec: str) -> Spec:
    """The parts of ``spec`` (see :func:`parse_configuration`, which checks them)."""
    rest, _, fixed_from = spec.partition("/")
    rest, _, ratio = rest.partition(":")
    name, at, blocks = rest.partition("@")
    return Spec(name, tuple(blocks.split("+")) if at else (), ratio, fixed_from)  # "litefocus@" gives ("",): refused


def parse_configuration(spec: str) -> Configuration:
    """``NAME`` of ``analysis.ablations.ABLATIONS``, optionally ``@BLOCK+BLOCK...`` for other blocks (names or globs
    of ``litefocus.selection``) and ``:RATIO`` for another ratio (LiteFocus's compensation ratio r, or Token
    Merging's merge ratio): ``cross_frequency_only:0.4``, ``litefocus@up_blocks.1``,
    ``same_frequency_only@down_blocks.1+up_blocks.2``; and ``/SECONDS`` for a LiteFocus ratio that shrinks with length,
    the cross-frequency set kept at its size at SECONDS (``litefocus/2.56``: r = 0.1 at 2.56 s, 0.025 at 10.24 s;
    ``Configuration.keys_fixed_from_s``). The spec is the configuration's name."""
    name, blocks, ratio, fixed = split_spec(spec)
    known = {c.name: c for c in ABLATIONS}
    if name not in known:
        raise ValueError(f"--configurations: unknown configuration {name!r}; choose from {sorted(known)}, "
                         "optionally with @BLOCK+BLOCK and :RATIO")
    config = replace(known[name], name=spec)
    if blocks:
        if config.kind == "dense" or not all(blocks):
            raise ValueError(f"--configurations {spec}: '@' takes block names joined by '+' (down_blocks.1+up_blocks.2)"
                             " and applies to LiteFocus and Token Merging configurations, not to dense")
        config = replace(config, blocks=blocks)
    if ratio:
        try:
            value = float(ratio)
        except ValueError:
            raise ValueError(f"--configurations {spec}: the ratio after ':' must be a number") from None
        if config.kind == "dense":
            raise ValueError(f"--configurations {spec}: a ratio applies to LiteFocus and Token Merging "
                             "configurations, not to dense")
        if not 0 <= value <= 1 or (config.kind == "token_merging" and value >= 1):  # NaN fails both
            limit = "[0, 1)" if config.kind == "token_merging" else "[0, 1]"
            raise ValueError(f"--configurations {spec}: the ratio must lie in {limit}; got {ratio}")
        config = replace(config, ratio=value)
        if config.kind == "litefocus":
            import litefocus

            litefocus.LiteFocusOptions(ratio=value, same_frequency=config.same_frequency,
                                       cross_frequency=config.cross_frequency, union=config.union)
    if fixed:
        try:
            from_s = float(fixed)
        except ValueError:
            from_s = float("nan")
        if config.kind != "litefocus" or not config.cross_frequency or not from_s > 0 or from_s == float("inf"):
            raise ValueError(f"--configurations {spec}: '/SECONDS' (a positive length, the cross-frequency set kept at "
                             "its size there) applies to LiteFocus configurations with cross-frequency keys")
        config = replace(config, keys_fixed_from_s=from_s)
    return config


def check_blocks(pipe, configurations: list[Configuration]) -> None:
    """Every configuration's blocks name self-attention modules of ``pipe``'s UNet (else the error lists them)."""
    from litefocus.selection import self_attention_modules

    for config in configurations:
        if config.kind != "dense":
            try:
                self_attention_modules(pipe, list(config.blocks))
            except ValueError as error:
                raise ValueError(f"--configurations {config.name}: {error}") from None


def ablations(names: list[str] | None = None) -> list[Configuration]:
    """The configurations of ``ABLATIONS`` with these names, in its order, always with "dense"; all for None."""
    known = {c.name for c in ABLATIONS}
    unknown = set(names or ()) - known
    if unknown:
        raise ValueError(f"unknown configurations {sorted(unknown)}; choose from {[c.name for c in ABLATIONS]}")
    chosen = set(names or known) | {"dense"}
    return [c for c in ABLATIONS if c.name in chosen]


def generate_under(
    pipe,
    configurations: list[Configuration],
    prompts: list[str],
    *,
    audio_length_in_s: float,
    batch_size: int = 8,
    seed: int = 0,
    **pipe_kwargs,
) -> xr.DataArray:
    """Run ``pipe`` on ``prompts`` under each configuration, from the same noise (``seed`` per batch).

    ``pipe_kwargs`` go to the pipeline call (``num_inference_steps``, ``output_type``, ...); its ``.audios`` output,
    ``(batch, *sample)``, is stacked to a float32 DataArray ``(configuration, prompt, dim_0, ...)``. LiteFocus's
    random keys and Token Merging's choices are seeded with ``seed`` as well. A configuration whose ratio depends on
    length runs with its ratio at ``audio_length_in_s``.
    """
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt to generate")
    outputs = []
    for config in tqdm(configurations, desc="configurations"):
        batches = []
        with config.at_length(audio_length_in_s).applied(pipe, seed=seed):
            for start in range(0, len(prompts), batch_size):
                with torch.no_grad():
                    audios = pipe(prompts[start:start + batch_size], audio_length_in_s=audio_length_in_s,
                                  generator=torch.Generator().manual_seed(seed + start), **pipe_kwargs).audios
                batches.append(torch.as_tensor(audios).float().cpu().numpy())
        outputs.append(np.concatenate(batches))
    stacked = np.stack(outputs)
    dims = ["configuration", "prompt", *[f"dim_{i}" for i in range(stacked.ndim - 2)]]
    return xr.DataArray(stacked, dims=dims, coords=dict(configuration=[c.name for c in configurations],
                                                         prompt=list(prompts)), name="output")


def relative_error(outputs: xr.DataArray, reference: str = "dense") -> xr.DataArray:
    """``||output - reference|| / ||reference||`` per configuration and prompt, over the sample dims."""
    names = list(outputs.configuration.values)
    if reference not in names:
        raise ValueError(f"no {reference!r} among the configurations {names}: generate it too, or pass reference=")
    sample_dims = [d for d in outputs.dims if d not in ("configuration", "prompt")]
    base = outputs.sel(configuration=reference)
    norm = lambda x: np.sqrt((x**2).sum(sample_dims))  # noqa: E731
    return (norm(outputs - base) / norm(base)).rename("relative_error")
