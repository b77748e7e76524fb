"""Percentile bootstrap confidence intervals over the test ITEMS (faces, or pairs for
verification).

Every score keeps its per-item values (or per-item sufficient statistics, e.g. a confusion
matrix per face) so it can be resampled. :func:`bootstrap_distribution` is the one
resampling loop; a statistic is given in one of three forms: per-item ``values`` (their
mean), a ``statistic(indices)`` callable, or a vectorised ``weighted(counts)`` callable (how
often each item occurs in each resample). :func:`bootstrap_ci` turns the replicates into an
interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lsi_ml.evaluation.arrays import ArrayLike, to_numpy

__all__ = ["bootstrap_ci", "bootstrap_distribution"]

_BOOT_BLOCK_ELEMENTS = 1 << 21
"""Resampled indices drawn per block (bounds the memory of a bootstrap to a few MB)."""


def _check_boot(n: int, n_boot: int, level: float) -> None:
    if int(n) < 0:
        raise ValueError(f"n={n} items must be >= 0")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level={level} must lie in (0, 1), e.g. 0.95")


def bootstrap_distribution(
    values: ArrayLike | None = None,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    weighted: Callable[[np.ndarray], ArrayLike] | None = None,
    n: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The ``n_boot`` bootstrap replicates of a statistic over ``n`` items (see
    :func:`bootstrap_ci`, which takes the same arguments). Resample ``b`` draws ``n`` item
    indices uniformly with replacement from ``numpy.random.default_rng(seed)``; the same
    ``seed`` and ``n`` give the same resamples whichever form of statistic is used."""
    forms = sum(x is not None for x in (values, statistic, weighted))
    if forms != 1:
        raise ValueError("give exactly one of values, statistic= or weighted=")
    vals: np.ndarray | None = None
    if values is not None:
        vals = to_numpy(values)
        if vals.ndim != 1:
            raise ValueError(f"values must be one value per item (n,), got {vals.shape}")
        n = vals.shape[0] if n is None else n
        if n != vals.shape[0]:
            raise ValueError(f"n={n} but {vals.shape[0]} values")
    if n is None:
        raise ValueError("n (the number of items) is required with statistic= or weighted=")
    n = int(n)
    _check_boot(n, n_boot, 0.5)
    if n == 0:
        return np.full(int(n_boot), np.nan)
    rng = np.random.default_rng(int(seed))
    block = max(1, _BOOT_BLOCK_ELEMENTS // n)
    out = np.empty(int(n_boot))
    for lo in range(0, int(n_boot), block):
        b = min(block, int(n_boot) - lo)
        idx = rng.integers(0, n, size=(b, n))
        if vals is not None:
            with np.errstate(invalid="ignore"):
                out[lo:lo + b] = vals[idx].mean(axis=1)
        elif statistic is not None:
            out[lo:lo + b] = [float(statistic(row)) for row in idx]
        else:
            assert weighted is not None
            rows = (np.arange(b, dtype=np.int64)[:, None] * n + idx).ravel()
            counts = np.bincount(rows, minlength=b * n).reshape(b, n).astype(np.float64)
            res = to_numpy(weighted(counts)).reshape(-1)
            if res.shape != (b,):
                raise ValueError(f"weighted statistic returned {res.shape}; expected ({b},)")
            out[lo:lo + b] = res
    return out


def bootstrap_ci(
    values: ArrayLike | None = None,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    weighted: Callable[[np.ndarray], ArrayLike] | None = None,
    n: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic over independent items.

    The items (test faces, or test pairs for verification) are resampled with replacement
    ``n_boot`` times; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the statistic over the resamples (linear interpolation; without it where
    a replicate is infinite, e.g. the PSNR of identical images). Seeded and deterministic.

    Give exactly one of:

    values : array_like, shape (n,)
        One value per item; the statistic is their mean (e.g. per-face accuracy, per-face
        NME, per-pair correctness). The fast, vectorised path.
    statistic : callable
        ``statistic(indices) -> float`` with ``indices`` the ``(n,)`` item indices of one
        resample (called ``n_boot`` times); needs ``n``.
    weighted : callable
        ``weighted(counts) -> (b,)`` with ``counts`` a ``(b, n)`` float array: how often
        each item occurs in each of ``b`` resamples (rows sum to ``n``). The vectorised
        form for statistics built from per-item sums, e.g. a set-accumulated F1 from
        per-face confusion matrices (``counts @ conf.reshape(n, -1)``); needs ``n``.

    Parameters
    ----------
    n : int, optional
        Number of items (taken from ``values`` if given).
    n_boot : int
        Resamples (>= 1; 1000 gives quantiles stable to a few % of the width).
    seed : int
        Seed of ``numpy.random.default_rng``.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    (low, high) : tuple of float
        ``(nan, nan)`` if there are no items or more than half of the replicates are NaN
        (NaN replicates are dropped otherwise).
    """
    _check_boot(0 if n is None else n, n_boot, level)
    reps = bootstrap_distribution(values, statistic=statistic, weighted=weighted, n=n,
                                  n_boot=n_boot, seed=seed)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0 or 2 * reps.size < int(n_boot):
        return float("nan"), float("nan")
    alpha = (1.0 - float(level)) / 2.0
    method = "linear" if np.isfinite(reps).all() else "inverted_cdf"
    low, high = np.quantile(reps, [alpha, 1.0 - alpha], method=method)
    return float(low), float(high)
