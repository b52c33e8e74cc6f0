"""Quality metrics of generated audio, on embeddings and class probabilities, each with a bootstrap interval.

``evaluate`` runs a whole evaluation (an :class:`analysis.evaluator.Evaluator` embeds the audio). The metrics are
plain functions on arrays (the evaluation packages pin other versions of numpy and torch than this project, so their
few formulas are written here): ``frechet_distance`` (FAD), ``kernel_distance`` (KAD), ``kl_divergence`` (KL of
paired classifier probabilities) and ``clap_score``. Each returns an :class:`Estimate`: the value on the whole sets
and the 2.5 and 97.5 percentiles over ``resamples`` bootstrap draws of the clips (seeded: the same inputs give the
same interval; ``resamples=0``: the value alone, NaN bounds).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

KAD_SCALE = 100.0
"""KAD is reported as 100 x MMD^2, the scale of kadtk (the reference implementation of arXiv 2502.15602)."""


class Estimate(NamedTuple):
    """A set statistic, its 95 % bootstrap interval over clips, and the number of clips (of the first set)."""

    value: float
    low: float
    high: float
    n: int


KL_EPS = 1e-6
"""audioldm_eval's ``EPS``, added to the generated side's probability inside the log."""
LARGEST = 1e150
"""Embeddings beyond this magnitude would overflow float64 in the squares a covariance or a distance takes."""


def _embeddings(x, name: str, min_rows: int = 2) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError) as error:  # ragged lists, strings
        raise ValueError(f"{name} must be a (clips, dims) array of numbers, every row of one length: {error}") from None
    if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
        raise ValueError(f"{name} must be (clips, dims) with at least {min_rows} clips; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if np.abs(x).max() > LARGEST:
        raise ValueError(f"{name} holds values beyond {LARGEST:g} (largest {np.abs(x).max():.3g}): their squares "
                         "overflow float64; rescale the embeddings")
    return x


def check_resamples(resamples) -> int:
    """Bootstrap draws: an int >= 0 (0: the value alone, NaN bounds), or a ValueError."""
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 0:
        raise ValueError(f"resamples must be an int >= 0 (bootstrap draws; 0: the value alone); got {resamples!r}")
    return int(resamples)


def check_eps(eps) -> float:
    """A KL's floor on the generated side: a positive finite number, or a ValueError."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number (audioldm_eval's is {KL_EPS}); got {eps!r}")
    return float(eps)


def _interval(values: list[float]) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of bootstrap values (a draw without two distinct clips gives NaN: left out)."""
    if len(values) == 0 or np.isnan(values).all():  # resamples=0 (the value alone), or no draw had two clips
        return np.nan, np.nan
    return float(np.nanquantile(values, 0.025)), float(np.nanquantile(values, 0.975))


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """``Tr((a b)^(1/2))`` for symmetric positive semi-definite ``a``, ``b``: with ``a = L L^T`` (Cholesky), the
    eigenvalues of ``a b`` are those of the symmetric ``L^T b L``, real and non-negative (round-off below zero is
    clipped). A singular ``a`` has no Cholesky factor: then ``L = a^(1/2)`` from its eigendecomposition."""
    try:
        root = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(a)
        root = v * np.sqrt(np.clip(w, 0, None))
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root.T @ b @ root), 0, None)).sum())


def _shrunk(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """``(1 - s) S + s Tr(S)/d I``: the covariance pulled toward a multiple of the identity."""
    if not shrinkage:
        return cov
    return (1 - shrinkage) * cov + shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0], dtype=cov.dtype)


def _root_rows(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean of rows ``x`` ``(n, d)`` drawn ``w`` ``(n,)`` times each, and rows ``Y`` (the drawn ones)
    with ``Y^T Y`` their unbiased covariance (``np.cov``'s frequency weights): ``sqrt(w_i) (x_i - mean) /
    sqrt(sum w - 1)``."""
    drawn = w > 0
    total = float(w.sum())
    mean = (w @ x) / total
    return mean, np.sqrt(w[drawn])[:, None] * (x[drawn] - mean) / np.sqrt(total - 1)


def _frechet_from_rows(mean_a, ya, mean_b, yb, shrinkage: float) -> float:
    """The Fréchet distance from means and covariance roots ``S = Y^T Y``. With fewer rows than dimensions (and no
    shrinkage) it works on rows: ``Tr((S_a S_b)^(1/2))`` is the sum of the singular values of ``Y_a Y_b^T`` (the
    nonzero eigenvalues of ``S_a S_b`` are those of ``(Y_a Y_b^T)(Y_a Y_b^T)^T``), exact and far cheaper for
    2048-d embeddings of tens of clips; else on ``d x d`` covariances (:func:`_trace_sqrt_product`)."""
    diff = mean_a - mean_b
    if not shrinkage and max(len(ya), len(yb)) < ya.shape[1]:
        cross = float(np.linalg.svd(ya @ yb.T, compute_uv=False).sum())
        return float(diff @ diff + (ya * ya).sum() + (yb * yb).sum() - 2 * cross)
    cov_a, cov_b = _shrunk(ya.T @ ya, shrinkage), _shrunk(yb.T @ yb, shrinkage)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * _trace_sqrt_product(cov_a, cov_b))


def _frechet(a: np.ndarray, b: np.ndarray, shrinkage: float) -> float:
    """The Fréchet distance of the Gaussians fitted to rows ``a`` ``(n, d)`` and ``b`` ``(m, d)``, in float64."""
    return _frechet_from_rows(*_root_rows(a, np.ones(len(a))), *_root_rows(b, np.ones(len(b))), shrinkage)


def _frechet_draws(a: np.ndarray, b: np.ndarray, weights_a: np.ndarray, weights_b: np.ndarray,
                   shrinkage: float) -> np.ndarray:
    """:func:`_frechet` of bootstrap draws without gathering them: row ``r`` of ``weights_a`` ``(R, n)`` says how
    often each row of ``a`` is drawn (``np.cov``'s frequency weights), likewise ``weights_b`` ``(R, m)``; ``(R,)``.

    Each draw is computed in float32 on rows centred on their full set's mean (the float64 value keeps every digit;
    a draw serves the percentiles of a 95 % interval): per draw one ``(d, k) @ (k, d)`` product a set (``k`` the
    distinct clips drawn) and one ``d x d`` Cholesky factor and symmetric eigensolve, the exact cost of a Fréchet
    distance (or, with fewer distinct clips than dimensions, one small SVD); ``benchmarks/quality.py`` times it
    against gathered float64 copies."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    ca, cb = (a - mean_a).astype(np.float32), (b - mean_b).astype(np.float32)
    out = np.empty(len(weights_a))
    for r, (wa, wb) in enumerate(zip(weights_a.astype(np.float32), weights_b.astype(np.float32))):
        shift_a, ya = _root_rows(ca, wa)
        shift_b, yb = _root_rows(cb, wb)
        out[r] = _frechet_from_rows(mean_a + shift_a, ya, mean_b + shift_b, yb, shrinkage)
    return out


def check_shrinkage(shrinkage, name: str = "shrinkage") -> float:
    """A covariance shrinkage: a number in [0, 1] (numpy scalars too); an error names ``name``."""
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) or not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {shrinkage!r}")
    return float(shrinkage)


def frechet_distance(emb_a, emb_b, shrinkage: float = 0.0, resamples: int = 100, seed: int = 0,
                     full_rank: bool = True) -> Estimate:
    """Fréchet distance between Gaussians fitted to two sets of embeddings ``(n, d)`` (FAD, Kilgour et al. 2019):
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, ``S`` the unbiased covariance (``np.cov``). With
    ``shrinkage`` 0 this is audioldm_eval's ``frechet_distance`` (its ``scipy.linalg.sqrtm`` form) on the same
    embeddings, to float precision (``tests/test_field_formulas.py``).

    A full-rank covariance needs more clips than dimensions: with fewer, pass ``shrinkage`` in (0, 1] (each covariance
    becomes ``(1 - s) S + s Tr(S)/d I``; the value then depends on ``s``), or use :func:`kernel_distance`.
    FAD is biased upward at small sets, and a bootstrap draw (with repeated clips) is a smaller set still: the
    interval shows the spread over clips but sits above the value, far above it for tens of clips. Compare FADs at
    equal clip counts only; for small sets prefer KAD, which is unbiased. ``full_rank=False`` computes it on
    singular covariances too, as audioldm_eval does (its FD on 2048-d CNN14 embeddings of fewer clips).

    Two sets of one covariance whose means lie 3 apart are ``3^2`` apart:

    >>> square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    >>> frechet_distance(square, square + [3.0, 0.0], resamples=0).value
    9.0
    """
    resamples = check_resamples(resamples)
    a, b = _embeddings(emb_a, "emb_a"), _embeddings(emb_b, "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"emb_a and emb_b have different dimensions: {a.shape[1]} and {b.shape[1]}")
    shrinkage = check_shrinkage(shrinkage)
    if full_rank and shrinkage == 0.0 and min(len(a), len(b)) <= a.shape[1]:
        raise ValueError(f"FAD needs more clips than embedding dimensions for a full-rank covariance: got "
                         f"{len(a)} and {len(b)} clips of {a.shape[1]} dimensions; pass shrinkage (e.g. 0.1) and say so, "
                         "or use kernel_distance, which has no such bound")
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))) for _ in range(resamples)]
    boot = _frechet_draws(a, b, _counts([d[0] for d in draws], len(a)), _counts([d[1] for d in draws], len(b)),
                          shrinkage)
    return Estimate(_frechet(a, b, shrinkage), *_interval(list(boot)), len(a))


def frechet_audio_distance(frames_generated, frames_reference, resamples: int = 100, seed: int = 0,
                           full_rank: bool = True) -> Estimate:
    """FAD as audioldm_eval computes it (``frechet_audio_distance``): the Fréchet distance of the frame embeddings of
    each set, every frame of every clip pooled as one sample (VGGish: one 128-d row per 0.96 s), no shrinkage.

    ``frames_generated``, ``frames_reference``: one ``(frames, d)`` array per clip. The interval resamples clips,
    each with all its frames (frames of one clip are not independent). ``n`` counts generated clips.
    ``full_rank=False``: computed on singular covariances too (fewer frames than dimensions), as audioldm_eval does."""
    resamples = check_resamples(resamples)
    def pooled(frames, name):
        frames = [np.asarray(f, dtype=np.float64) for f in frames] if isinstance(frames, (list, tuple)) else None
        if not frames:
            raise ValueError(f"{name} must be a non-empty list of (frames, dims) arrays, one per clip")
        for i, f in enumerate(frames):
            if f.ndim != 2 or len(f) < 1 or f.shape[1] != frames[0].shape[1]:
                raise ValueError(f"{name}[{i}] must be (frames, {frames[0].shape[-1]}) with at least one frame; got "
                                 f"shape {f.shape}")
        owner = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
        return _embeddings(np.concatenate(frames), name), owner, len(frames)

    (a, owner_a, clips_a), (b, owner_b, clips_b) = pooled(frames_generated, "frames_generated"), \
        pooled(frames_reference, "frames_reference")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frames_generated and frames_reference have different dimensions: {a.shape[1]} and "
                         f"{b.shape[1]}")
    if full_rank and min(len(a), len(b)) <= a.shape[1]:
        raise ValueError(f"FAD needs more frames than embedding dimensions for a full-rank covariance: got "
                         f"{len(a)} and {len(b)} frames of {a.shape[1]} dimensions")
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, clips_a, clips_a), rng.integers(0, clips_b, clips_b)) for _ in range(resamples)]
    weights_a = _counts([d[0] for d in draws], clips_a)[:, owner_a]
    weights_b = _counts([d[1] for d in draws], clips_b)[:, owner_b]
    return Estimate(_frechet(a, b, 0.0), *_interval(list(_frechet_draws(a, b, weights_a, weights_b, 0.0))), clips_a)


def default_shrinkage(clips_a: int, clips_b: int, dims: int) -> float:
    """FAD's covariance shrinkage when none is asked for: 0 when both sets have more clips than dimensions (full
    rank), else 0.1 (and the caller says so)."""
    return 0.0 if min(clips_a, clips_b) > dims else 0.1


def median_bandwidth(emb) -> float:
    """The median heuristic: the median Euclidean distance between distinct embeddings of ``emb`` ``(n, d)``."""
    x = _embeddings(emb, "emb")
    d2 = _squared_distances(x, x)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(x), k=1)])))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0, None)


def kernel_distance(emb_a, emb_b, bandwidth: float | None = None, resamples: int = 100, seed: int = 0) -> Estimate:
    """Kernel audio distance (KAD, arXiv 2502.15602): the unbiased estimate of the squared maximum mean discrepancy
    with the Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``, times :data:`KAD_SCALE`:
    ``mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean_{i, j} k(a_i, b_j)``.

    ``bandwidth`` sigma defaults to the median heuristic on ``emb_b`` (the reference set, as kadtk does). Unbiased:
    about 0 for two samples of one distribution, and it can be slightly negative. The bootstrap keeps pairs of
    distinct clips only (a clip drawn twice is not paired with itself).
    """
    resamples = check_resamples(resamples)
    a, b = _embeddings(emb_a, "emb_a"), _embeddings(emb_b, "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"emb_a and emb_b have different dimensions: {a.shape[1]} and {b.shape[1]}")
    kernels = _kernels(a, b, bandwidth)
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))) for _ in range(resamples)]
    ca, cb = _counts([d[0] for d in draws], len(a)), _counts([d[1] for d in draws], len(b))
    value = float(_mmd(kernels, np.ones((1, len(a))), np.ones((1, len(b))))[0])
    return Estimate(value, *_interval(list(_mmd(kernels, ca, cb))), len(a))


def kernel_distance_draws(gen, reference, gen_counts, bandwidth: float | None = None) -> np.ndarray:
    """KAD of ``gen`` ``(n, d)`` to ``reference`` ``(m, d)`` for each row of ``gen_counts`` ``(R, n)`` (how often
    each generated clip is drawn; the reference as it is): ``(R,)``. A row of ones is :func:`kernel_distance`'s
    value; rows of bootstrap counts resample the generated clips, as one draw of captions does."""
    a, b = _embeddings(gen, "gen"), _embeddings(reference, "reference")
    counts = np.atleast_2d(np.asarray(gen_counts, dtype=np.float64))
    if counts.shape[1] != len(a):
        raise ValueError(f"gen_counts must have one column per generated clip ({len(a)}); got {counts.shape}")
    return _mmd(_kernels(a, b, bandwidth), counts, np.ones((len(counts), len(b))))


def _kernels(a: np.ndarray, b: np.ndarray, bandwidth: float | None) -> tuple[np.ndarray, ...]:
    """The Gaussian kernel matrices ``K_aa, K_bb, K_ab``, bandwidth by the median heuristic on ``b`` unless given."""
    sigma = median_bandwidth(b) if bandwidth is None else float(bandwidth)
    if not sigma > 0:
        raise ValueError(f"bandwidth must be positive; got {sigma} (are all reference embeddings equal?)")
    gamma = 1.0 / (2 * sigma**2)
    return tuple(np.exp(-gamma * _squared_distances(x, y)) for x, y in ((a, a), (b, b), (a, b)))


def _counts(draws: list[np.ndarray], n: int) -> np.ndarray:
    """How often each of ``n`` clips is drawn, ``(R, n)``, for ``R`` draws of clip indices."""
    return np.array([np.bincount(d, minlength=n) for d in draws], dtype=np.float64).reshape(-1, n)


def _mmd(kernels: tuple[np.ndarray, ...], ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """:data:`KAD_SCALE` x the unbiased MMD^2 for each row of clip counts ``ca`` ``(R, n)``, ``cb`` ``(R, m)`` (how
    often each clip is drawn): within a set, ordered pairs of draws of two different clips, ``(c K c - sum c_i^2
    K_ii) / (n^2 - sum c_i^2)``; across sets all pairs, ``ca K cb / (n m)``."""
    k_aa, k_bb, k_ab = kernels

    def within(k, c):
        pairs = c.sum(1) ** 2 - (c * c).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):  # one clip drawn n times: no pair, NaN
            return (((c @ k) * c).sum(1) - (c * c) @ np.diag(k)) / np.where(pairs > 0, pairs, np.nan)

    across = ((ca @ k_ab) * cb).sum(1) / (ca.sum(1) * cb.sum(1))
    return KAD_SCALE * (within(k_aa, ca) + within(k_bb, cb) - 2 * across)


def _group_counts(groups, n: int, resamples: int, rng) -> np.ndarray:
    """Bootstrap counts ``(resamples, n)`` of rows drawn by group: each draw takes as many groups as there are, with
    replacement, and every row of a drawn group (all seeds of one caption go together)."""
    labels, code = np.unique(np.asarray(groups), return_inverse=True)
    if len(code) != n:
        raise ValueError(f"groups must label each of the {n} rows; got {len(code)} labels")
    drawn = _counts([rng.integers(0, len(labels), len(labels)) for _ in range(resamples)], len(labels))
    return drawn[:, code]


def paired_difference(metric: str, gen_a, gen_b, reference, shrinkage: float = 0.0, resamples: int = 200,
                      seed: int = 0, groups=None) -> Estimate:
    """``metric(gen_a, reference) - metric(gen_b, reference)`` for ``metric`` "FAD" or "KAD", with a 95 % interval
    from bootstrap draws that resample the rows of ``gen_a`` and ``gen_b`` together (row ``i`` of each: clips of the
    same caption and seed, under two configurations) and the reference clips apart. Pairing removes the spread that
    comes from which captions were drawn, so the interval is the one to read when asking whether a configuration
    differs from another. KAD's bandwidth: the median heuristic on ``reference``, as in :func:`kernel_distance`.
    ``groups``: a label per row (its caption): draws then resample groups, each with all its rows, so that several
    seeds of one caption count as one caption, not as independent clips."""
    resamples = check_resamples(resamples)
    a, b = _embeddings(gen_a, "gen_a"), _embeddings(gen_b, "gen_b")
    r = _embeddings(reference, "reference")
    if a.shape != b.shape or a.shape[1] != r.shape[1]:
        raise ValueError(f"gen_a and gen_b must pair row by row, with the reference's dimensions; got {a.shape}, "
                         f"{b.shape} and {r.shape}")
    if metric not in ("FAD", "KAD"):
        raise ValueError(f"metric must be 'FAD' or 'KAD'; got {metric!r}")
    shrinkage = check_shrinkage(shrinkage)
    if metric == "FAD" and shrinkage == 0.0 and min(len(a), len(r)) <= a.shape[1]:
        raise ValueError(f"FAD needs more clips than embedding dimensions for a full-rank covariance: got "
                         f"{len(a)} paired and {len(r)} reference clips of {a.shape[1]} dimensions; pass shrinkage "
                         "(e.g. 0.1) and say so, or compare by KAD")
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, len(a), len(a)), rng.integers(0, len(r), len(r))) for _ in range(resamples)]
    cg, cr = _counts([d[0] for d in draws], len(a)), _counts([d[1] for d in draws], len(r))
    if groups is not None:
        cg = _group_counts(groups, len(a), resamples, rng)
    if metric == "KAD":
        sigma = median_bandwidth(r)
        ka, kb = _kernels(a, r, sigma), _kernels(b, r, sigma)
        ones_g, ones_r = np.ones((1, len(a))), np.ones((1, len(r)))
        value = float((_mmd(ka, ones_g, ones_r) - _mmd(kb, ones_g, ones_r))[0])
        boot = list(_mmd(ka, cg, cr) - _mmd(kb, cg, cr))
    else:
        value = _frechet(a, r, shrinkage) - _frechet(b, r, shrinkage)
        boot = list(_frechet_draws(a, r, cg, cr, shrinkage) - _frechet_draws(b, r, cg, cr, shrinkage))
    return Estimate(value, *_interval(boot), len(a))


def kl_per_clip(probs_generated, probs_reference, eps: float = KL_EPS) -> np.ndarray:
    """``KL(p_ref || p_gen) = sum_c p_ref,c log(p_ref,c / p_gen,c)`` per pair of rows ``(n, classes)``; rows are
    clipped at ``eps`` and renormalised (so that a zero probability does not give infinity).

    >>> kl_per_clip([[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.9, 0.1]]).round(4)  # 0 for equal rows
    array([0.    , 0.3681])
    """
    p = _embeddings(probs_generated, "probs_generated", 1)
    q = _embeddings(probs_reference, "probs_reference", 1)
    if p.shape != q.shape:
        raise ValueError(f"probs_generated and probs_reference must pair clip by clip; got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("probabilities must be non-negative")
    eps = check_eps(eps)
    p = np.clip(p, eps, None)
    q = np.clip(q, eps, None)
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    return (q * np.log(q / p)).sum(1)


def kl_divergence(probs_generated, probs_reference, eps: float = KL_EPS, resamples: int = 1000,
                  seed: int = 0) -> Estimate:
    """Mean over paired clips of :func:`kl_per_clip`: class probabilities ``(n, classes)`` of a generated clip and of
    the reference clip of the same caption, as audioldm_eval pairs them."""
    return mean_with_interval(kl_per_clip(probs_generated, probs_reference, eps), resamples, seed)




def _logits(x, name: str) -> np.ndarray:
    """Classifier logits ``(n, classes)``; an error when they look like probabilities (every value in [0, 1])."""
    x = _embeddings(x, name, 1)
    if ((x >= 0) & (x <= 1)).all():
        raise ValueError(f"{name} must be logits (CNN14's 527 scores before the sigmoid); every value lies in [0, 1], "
                         "so these look like probabilities: pass the logits (analysis.field_models.cnn14_outputs)")
    return x


def _paired_logits(logits_generated, logits_reference) -> tuple[np.ndarray, np.ndarray]:
    g, r = _logits(logits_generated, "logits_generated"), _logits(logits_reference, "logits_reference")
    if g.shape != r.shape:
        raise ValueError(f"logits_generated and logits_reference must pair row by row (the same file name on both "
                         f"sides); got {g.shape} and {r.shape}")
    return g, r


def _kl_rows(p_reference: np.ndarray, p_generated: np.ndarray, eps: float) -> np.ndarray:
    """``sum_c p_ref log(p_ref / (p_gen + eps))`` per row, with ``0 log 0 = 0`` (torch's ``kl_div``)."""
    from scipy.special import xlogy

    return (xlogy(p_reference, p_reference) - p_reference * np.log(p_generated + check_eps(eps))).sum(1)


def kl_softmax_per_pair(logits_generated, logits_reference, eps: float = KL_EPS) -> np.ndarray:
    """``KL(softmax(ref) || softmax(gen) + eps)`` per pair of logit rows ``(n, classes)``: the terms of
    audioldm_eval's ``kullback_leibler_divergence_softmax`` (``audioldm_eval/metrics/kl.py``, ``calculate_kl``:
    ``kl_div((softmax(gen) + EPS).log(), softmax(ref), reduction="sum") / n``), in float64."""
    from scipy.special import softmax

    g, r = _paired_logits(logits_generated, logits_reference)
    return _kl_rows(softmax(r, axis=1), softmax(g, axis=1), eps)


def kl_sigmoid_per_pair(logits_generated, logits_reference, eps: float = KL_EPS) -> np.ndarray:
    """The same on the sigmoids, not normalised over classes: the terms of audioldm_eval's
    ``kullback_leibler_divergence_sigmoid`` (``kl_div((sigmoid(gen) + EPS).log(), sigmoid(ref), "sum") / n``); a
    sum of 527 unnormalised terms, each of either sign."""
    from scipy.special import expit

    g, r = _paired_logits(logits_generated, logits_reference)
    return _kl_rows(expit(r), expit(g), eps)


def kl_softmax(logits_generated, logits_reference, eps: float = KL_EPS, resamples: int = 1000,
               seed: int = 0) -> Estimate:
    """audioldm_eval's ``kullback_leibler_divergence_softmax``: the mean over pairs of
    :func:`kl_softmax_per_pair` (its sum divided by the pair count), with a bootstrap interval over pairs."""
    return mean_with_interval(kl_softmax_per_pair(logits_generated, logits_reference, eps), resamples, seed)


def kl_sigmoid(logits_generated, logits_reference, eps: float = KL_EPS, resamples: int = 1000,
               seed: int = 0) -> Estimate:
    """audioldm_eval's ``kullback_leibler_divergence_sigmoid``: the mean over pairs of :func:`kl_sigmoid_per_pair`."""
    return mean_with_interval(kl_sigmoid_per_pair(logits_generated, logits_reference, eps), resamples, seed)


def clap_per_clip(audio_emb, text_emb) -> np.ndarray:
    """100 x the cosine similarity of each matched (audio, caption) embedding pair ``(n, d)``.

    >>> clap_per_clip([[1.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]])  # parallel, orthogonal
    array([100.,   0.])
    """
    a, t = _embeddings(audio_emb, "audio_emb", 1), _embeddings(text_emb, "text_emb", 1)
    if a.shape != t.shape:
        raise ValueError(f"audio_emb and text_emb must pair clip by clip; got {a.shape} and {t.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(t, axis=1)
    if (norms == 0).any():
        raise ValueError("an embedding is all zeros: its cosine is undefined")
    return 100 * (a * t).sum(1) / norms


def clap_score(audio_emb, text_emb, resamples: int = 1000, seed: int = 0) -> Estimate:
    """The mean of :func:`clap_per_clip` (the CLAP score as the LiteFocus paper prints it)."""
    return mean_with_interval(clap_per_clip(audio_emb, text_emb), resamples, seed)


def mean_with_interval(values: np.ndarray, resamples: int = 1000, seed: int = 0, groups=None) -> Estimate:
    """The mean of per-clip ``values`` ``(n,)`` with the 95 % bootstrap interval over clips (or over ``groups``, a
    label per value: each draw takes whole groups, see :func:`paired_difference`); NaN, interval included, when any
    value is NaN (never a value of NaN with an interval drawn from the other clips).

    >>> mean_with_interval(np.array([1.0, 2.0, 3.0]), resamples=0)
    Estimate(value=2.0, low=nan, high=nan, n=3)
    """
    resamples = check_resamples(resamples)
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        return Estimate(np.nan, np.nan, np.nan, len(values))
    rng = np.random.default_rng(seed)
    if groups is not None:
        counts = _group_counts(groups, len(values), resamples, rng)
        return Estimate(float(values.mean()), *_interval(list(counts @ values / counts.sum(1))), len(values))
    boot = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    return Estimate(float(values.mean()), *_interval(list(boot)), len(values))
