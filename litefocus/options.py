"""The settings of one LiteFocus application, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from .kernel import check_backend, check_ratio, check_union
from .keys import check_seed

PAPER_BLOCKS = ("down_blocks.1", "up_blocks.2")
"""The paper's "second down block and second up block": the first UNet level with attention (F = 8 in AudioLDM2)."""
DRAWS = ("batched", "per_module")


@dataclass(frozen=True)
class LiteFocusOptions:
    """How each patched self-attention module builds its focus set.

    ratio: compensation ratio r; floor(r * N) random keys per call (paper: 0.1).
    same_frequency: keep each query's own frequency row (False: the paper's cross-frequency-only ablation, Table 2).
    cross_frequency: add the shared random keys (False: the same-frequency-only ablation, Table 3).
    union: "exact" (paper's eq. 4: a key both in the row and drawn counts once) or "concat" (the authors' code).
    seed: with the module name and the UNet call's timestep, keys the random draw (an int in [0, 2**64)).
    backend: "auto" (default), "sdpa", "flex", "varlen" (CUDA) or "by_rows": how the full-row forms compute
        (kernel.BACKENDS); the device is checked at each call.
    draws: "batched" (default: the random keys of a UNet level's modules drawn in one batch per call) or
        "per_module" (each module draws its own, the path before 2026-12: the same keys, one hash, top-k and sort per
        module), kept to time and test against.
    """

    ratio: float = 0.1
    same_frequency: bool = True
    cross_frequency: bool = True
    union: str = "exact"
    seed: int = 0
    backend: str = "auto"
    draws: str = "batched"

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        object.__setattr__(self, "ratio", float(self.ratio))  # np.float32(0.1) is accepted, and kept as a float
        check_union(self.union)
        check_backend(self.backend, self.union)
        if self.draws not in DRAWS:
            raise ValueError(f"draws must be one of {DRAWS} ('batched': one draw per UNet level and call; "
                             f"'per_module': each module its own); got {self.draws!r}")
        object.__setattr__(self, "seed", check_seed(self.seed))
        for name in ("same_frequency", "cross_frequency"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not (self.same_frequency or self.cross_frequency):
            raise ValueError("same_frequency and cross_frequency cannot both be False: the focus set would be empty")
        if not self.same_frequency and self.ratio == 0:
            raise ValueError("cross-frequency-only attention needs ratio > 0: with ratio 0 no key is left")
