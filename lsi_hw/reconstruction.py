"""Image-space single-pixel reconstructions: the quick preview every command shows, and the
classical baselines the LSI decoder is compared against.

Every bench (simulated or real) gives readings that are affine in the masked irradiance
``x`` (W/m^2 on the mask grid)::

    y_k = c (m_k . x) + d        (volts)

with an unknown gain ``c`` (responsivity x transimpedance x optics) and an unknown offset
``d`` (amplifier / digitizer offset, dark current, DMD off-state leakage of the whole scene).
The functions here therefore recover ``x`` only up to ``c`` and, where the offset cannot be
separated from the image mean, up to a constant: they first remove ``d``

* by **centring** readings and masks over the pattern axis (least squares with a free offset,
  as :func:`preview_reconstruction` does), or
* for **split** sets (complementary pairs ``[p, 1 - p, ...]``) by the differential readings
  ``y(p) - y(1 - p) = c ((2 p - 1) . x)``, in which ``d`` cancels exactly.

Images come back as (B, H, W) float64, by default normalised to [0, 1] per image
(``normalise=True``, min -> 0, max -> 1); with ``normalise=False`` they are in volts per
fully lit mask pixel (the reading one pixel of the image would add), up to a constant.

Methods
    :func:`preview_reconstruction`: centred ridge least squares (adjoint above
    :data:`MAX_LS_PATTERNS` patterns), the preview of ``lsi-hw simulate`` and ``acquire``.
    :func:`hadamard_least_squares`: measured Walsh-Hadamard coefficients, inverse fast
    Walsh-Hadamard transform (unmeasured coefficients zero); dense least squares otherwise.
    :func:`tv_reconstruction`: compressive sensing with isotropic total variation, FISTA
    (Beck & Teboulle 2009) with the fast gradient projection (FGP) TV proximal step.
    :func:`differential_ghost_imaging`: DGI (Ferri et al., PRL 104, 253603, 2010).

Only numpy and scipy (and :func:`lsi_hw.sim.kernels.fwht`, imported when used).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lsi_hw.errors import ConfigError, is_int, require_in_range
from lsi_hw.patterns import PatternSet

__all__ = [
    "HADAMARD_OFFSETS",
    "MAX_LS_PATTERNS",
    "TV_METHODS",
    "differential_ghost_imaging",
    "hadamard_least_squares",
    "normalise_images",
    "preview_reconstruction",
    "preview_resolution",
    "tv_reconstruction",
]

#: Offset choices of :func:`hadamard_least_squares` for non-split Hadamard sets.
HADAMARD_OFFSETS: tuple[str, ...] = ("smooth", "min-norm")

#: Optimisers accepted by :func:`tv_reconstruction`.
TV_METHODS: tuple[str, ...] = ("fista",)

#: Largest dense problem (m x n entries of the float64 mask matrix) solved directly.
MAX_DENSE_ENTRIES = 1 << 26


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _check_inputs(patterns: PatternSet, values: npt.ArrayLike) -> np.ndarray:
    """Readings as float64 (B, m), validated against ``patterns``; ConfigError otherwise."""
    if not isinstance(patterns, PatternSet):
        raise ConfigError(
            f"patterns must be a lsi_hw.patterns.PatternSet; got {type(patterns).__name__}"
        )
    v = np.asarray(values)
    if v.dtype.kind not in "biuf":
        raise ConfigError(f"values must be real numbers (volts); got dtype {v.dtype}")
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise ConfigError(
            f"values must have shape (B, m) = (scenes, {patterns.m} readings) or ({patterns.m},); "
            f"got shape {np.shape(values)}"
        )
    if v.shape[1] != patterns.m:
        raise ConfigError(
            f"values carry {v.shape[1]} readings per scene but the pattern set "
            f"{patterns.name!r} has m = {patterns.m} masks; pass the readings of this set"
        )
    if v.shape[0] == 0:
        raise ConfigError("values hold no scenes (B = 0); pass at least one row of readings")
    v = v.astype(np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        b, k = np.argwhere(bad)[0]
        raise ConfigError(
            f"values hold {int(bad.sum())} non-finite reading(s) (first: scene {b}, pattern {k}"
            f" = {v[b, k]}); all readings must be finite volts (drop or re-acquire them)"
        )
    return v


def _check_normalise(normalise: object) -> bool:
    if not isinstance(normalise, (bool, np.bool_)):
        raise ConfigError(f"normalise must be True or False; got {normalise!r}")
    return bool(normalise)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    """An int in [lo, hi], with the messages of ``require_in_range`` that the other settings
    here get (so not ``require_int``, whose message form differs)."""
    if not is_int(value):
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"{name}={value} outside the allowed range [{lo}, {hi}]")
    return int(value)


def _check_dense(patterns: PatternSet, what: str) -> None:
    """ConfigError when the float64 mask matrix of ``patterns`` would be too large."""
    m = patterns.m // 2 if patterns.is_split else patterns.m
    n = patterns.n_pixels
    if m * n > MAX_DENSE_ENTRIES:
        raise ConfigError(
            f"{what} with m = {m} masks of n = {n} pixels needs a dense {m} x {n} float64 "
            f"matrix (> {MAX_DENSE_ENTRIES} entries, 512 MiB); use fewer or smaller masks"
            + (" or a Hadamard set" if what == "dense least squares" else "")
        )


def _system(patterns: PatternSet, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The linear system ``y = A x (+ d)``: float64 mask matrix (m', n), readings (B, m').

    Split sets give the differential system (``A = p - (1 - p)``, offset-free, third item
    True); other sets the 0/1 masks and raw readings (offset still present, False).
    Call :func:`_check_dense` first.
    """
    masks = patterns.masks.reshape(patterns.m, -1)
    if patterns.is_split:
        a = masks[0::2].astype(np.float64) - masks[1::2].astype(np.float64)
        return a, patterns.differential(vals), True
    return masks.astype(np.float64), vals, False


def normalise_images(images: npt.ArrayLike) -> np.ndarray:
    """Affinely map each image (B, H, W) to [0, 1] (min -> 0, max -> 1; flat images -> 0).

    Parameters
    ----------
    images : array_like
        (B, H, W) real images in any unit.

    Returns
    -------
    numpy.ndarray
        float64 (B, H, W), dimensionless, in [0, 1].
    """
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 3:
        raise ConfigError(f"images must have shape (B, H, W); got {arr.shape}")
    lo = arr.min(axis=(1, 2), keepdims=True)
    span = np.ptp(arr, axis=(1, 2), keepdims=True)
    return (arr - lo) / np.where(span > 0, span, 1.0)


def _finish(images: np.ndarray, shape: tuple[int, int], normalise: bool) -> np.ndarray:
    out = images.reshape(images.shape[0], *shape)
    return normalise_images(out) if normalise else out


def _dense_least_squares(a: np.ndarray, y: np.ndarray, offset_free: bool) -> np.ndarray:
    """Minimum-norm least-squares images (B, n) of ``y = A x (+ d)``; centred if not offset-free."""
    if not offset_free:
        a = a - a.mean(axis=0, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
    sol, *_ = np.linalg.lstsq(a, y.T, rcond=None)
    return np.asarray(sol.T)


# --------------------------------------------------------------------------------------------
# Hadamard least squares
# --------------------------------------------------------------------------------------------


def hadamard_least_squares(
    patterns: PatternSet,
    values: npt.ArrayLike,
    *,
    offset: str = "smooth",
    normalise: bool = True,
) -> np.ndarray:
    """Least-squares images from Walsh-Hadamard readings via the fast Walsh-Hadamard transform.

    For a Hadamard set (``patterns.is_hadamard``: any order, any subset, optionally split)
    mask ``k`` is ``(1 + s_k h_k) / 2`` with ``h_k`` row ``r_k`` of the natural-order
    Sylvester matrix ``H`` (n x n, ``H H = n I``) and ``s_k = +-1``.  With the bench model
    ``y_k = c (m_k . x) + d`` every reading is ``y_k = b + (c / 2) s_k z_{r_k}`` where
    ``z = H x`` are the Walsh-Hadamard coefficients of the image and ``b = c z_0 / 2 + d`` is
    one offset per scene (the DC row ``h_0 = 1`` obeys the same formula).  So

    * non-split sets: ``b`` is not identifiable from the readings: every ``b`` fits them
      equally well, and changing it moves the image along ``e = H (s * 1_measured) / n``
      (for the full set with ``s = +1`` a single pixel, (0, 0); for a sequency subset a
      blob at the (0, 0) corner).  ``offset="min-norm"`` takes the mean reading for ``b``
      (the minimum-norm coefficients ``c z_r = 2 s_k (y_k - mean(y))``, what centring
      gives); ``offset="smooth"`` (default) then adds the multiple of ``e`` that minimises
      the image's squared gradient norm, the smoothest of the equally good least-squares
      images (for the full set: pixel (0, 0) continued from its neighbours);
    * split sets: the differential reading of a pair is ``c s_k z_r`` exactly (``d`` cancels).

    Unmeasured coefficients are set to zero (repeated rows are averaged) and the image is
    ``x = H z / n``, one :func:`lsi_hw.sim.kernels.fwht` per scene: O(n log n).  For a
    sequency-ordered subset this is the low-pass (low-sequency) image.

    Sets that are not Hadamard fall back to dense minimum-norm least squares on the centred
    (or differential) system (``numpy.linalg.lstsq``; at most 2**26 matrix entries).

    Parameters
    ----------
    patterns : PatternSet
        The masks the readings were taken with, (m, H, W); for the fast path a Hadamard set
        of ``n_side x n_side`` pixels.
    values : array_like
        Readings (B, m) or (m,), volts, finite.
    offset : {"smooth", "min-norm"}
        How the unidentified offset of a non-split Hadamard set is chosen (see above);
        ignored for split and non-Hadamard sets.
    normalise : bool
        Map each image to [0, 1] (default).  If False, images are in volts per fully lit mask
        pixel (``c x``), up to a constant per image.

    Returns
    -------
    numpy.ndarray
        float64 (B, H, W).

    Raises
    ------
    ConfigError
        ``patterns`` is not a PatternSet; ``values`` has the wrong shape, a reading count
        other than ``patterns.m``, no scenes or non-finite entries; an unknown ``offset``;
        the dense fallback would be too large.
    """
    vals = _check_inputs(patterns, values)
    if offset not in HADAMARD_OFFSETS:
        raise ConfigError(f"offset must be one of {', '.join(HADAMARD_OFFSETS)}; got {offset!r}")
    normalise = _check_normalise(normalise)
    rows, signs = patterns.hadamard_rows, patterns.hadamard_signs
    if rows is None or signs is None:
        _check_dense(patterns, "dense least squares")
        a, y, offset_free = _system(patterns, vals)
        return _finish(_dense_least_squares(a, y, offset_free), patterns.shape, normalise)

    from lsi_hw.sim.kernels import fwht  # numba-backed; imported only when used

    n = patterns.n_pixels
    if patterns.is_split:
        rows, signs = rows[0::2], signs[0::2]
        coef = patterns.differential(vals) * signs  # c s_k z_r * s_k  (pair starts with sign s_k)
    else:
        coef = 2.0 * (vals - vals.mean(axis=1, keepdims=True)) * signs
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    z = np.zeros((len(vals), n), dtype=np.float64)
    np.add.at(z.T, rows, coef.T)
    z /= np.maximum(counts, 1.0)
    images = fwht(z, axis=-1) / n
    if not patterns.is_split and offset == "smooth":
        # the unidentified offset b moves the image along e = -2 H (s 1_measured) / n
        u = np.zeros(n, dtype=np.float64)
        np.add.at(u, rows, signs.astype(np.float64))
        e = fwht(u / np.maximum(counts, 1.0), axis=-1) / n
        images = images + _smoothest_shift(images, e, patterns.shape)
    return _finish(images, patterns.shape, normalise)


def _smoothest_shift(images: np.ndarray, e: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``beta e`` (B, n) with ``beta`` minimising ``||grad(image + beta e)||^2`` per image."""
    ge = _grad(e.reshape(1, *shape)).reshape(-1)
    den = float(ge @ ge)
    if den <= 1e-12 * max(float(e @ e), 1e-300):  # e flat (only the DC row): nothing to pick
        return np.zeros_like(images)
    gx = _grad(images.reshape(len(images), *shape)).reshape(len(images), -1)
    beta = -(gx @ ge) / den
    return beta[:, None] * e[None, :]


# --------------------------------------------------------------------------------------------
# total variation (FISTA + FGP)
# --------------------------------------------------------------------------------------------


def _grad(x: np.ndarray) -> np.ndarray:
    """Forward differences of (B, H, W) -> (B, 2, H, W), zero on the last row / column."""
    g = np.zeros((x.shape[0], 2, *x.shape[1:]), dtype=x.dtype)
    g[:, 0, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    g[:, 1, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return g


def _div(p: np.ndarray) -> np.ndarray:
    """Discrete divergence, minus the adjoint of :func:`_grad`: ``<grad x, p> = -<x, div p>``."""
    px, py = p[:, 0], p[:, 1]
    d = np.zeros(p.shape[:1] + p.shape[2:], dtype=p.dtype)
    d[:, :-1, :] += px[:, :-1, :]
    d[:, 1:, :] -= px[:, :-1, :]
    d[:, :, :-1] += py[:, :, :-1]
    d[:, :, 1:] -= py[:, :, :-1]
    return d


def _prox_tv(
    v: np.ndarray, mu: np.ndarray, p: np.ndarray, iters: int, box: bool
) -> tuple[np.ndarray, np.ndarray]:
    """FGP (Beck & Teboulle 2009): argmin_x 0.5||x - v||^2 + mu TV(x), x in [0, 1] if ``box``.

    ``v`` (B, H, W), ``mu`` (B, 1, 1) >= 0, ``p`` (B, 2, H, W) the dual field used as warm
    start; returns the image and the final dual field.
    """
    mu4 = mu[:, None]
    # mu = 0 (lam = 0): the prox is the projection; the dual then stays at zero
    step = np.divide(1.0, 8.0 * mu4, out=np.zeros_like(mu4), where=mu4 > 0)
    r, t = p.copy(), 1.0

    def primal(q: np.ndarray) -> np.ndarray:
        x = v + mu * _div(q)
        return np.clip(x, 0.0, 1.0) if box else x

    for _ in range(iters):
        q = r + step * _grad(primal(r))
        norm = np.maximum(1.0, np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2))[:, None]
        p_new = q / norm
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        r = p_new + ((t - 1.0) / t_new) * (p_new - p)
        p, t = p_new, t_new
    return primal(p), p


def _spectral_norm_sq(a: np.ndarray, iters: int = 60) -> float:
    """Largest eigenvalue of ``A^T A`` (power iteration, 1 % safety margin)."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal(a.shape[1])
    v /= np.linalg.norm(v)
    val = 0.0
    for _ in range(iters):
        w = a.T @ (a @ v)
        val = float(np.linalg.norm(w))
        if val == 0.0:
            return 1.0
        v = w / val
    return 1.01 * val


def _fista(
    a: np.ndarray,
    y: np.ndarray,
    x0: np.ndarray,
    lam: np.ndarray,
    lip: float,
    iters: int,
    inner: int,
    box: bool,
) -> np.ndarray:
    """FISTA on 0.5||A x - y||^2 + lam TV(x) (+ box), x0 (B, H, W), lam (B,)."""
    shape = x0.shape
    x = x0.copy()
    z = x.copy()
    p = np.zeros((shape[0], 2, *shape[1:]), dtype=np.float64)
    mu = (lam / lip)[:, None, None]
    t = 1.0
    for _ in range(iters):
        flat = z.reshape(shape[0], -1)
        g = ((flat @ a.T - y) @ a).reshape(shape)
        x_new, p = _prox_tv(z - g / lip, mu, p, inner, box)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def tv_reconstruction(
    patterns: PatternSet,
    values: npt.ArrayLike,
    lam: float = 0.005,
    iters: int = 200,
    method: str = "fista",
    *,
    inner_iters: int = 10,
    box: bool = True,
    normalise: bool = True,
) -> np.ndarray:
    """Compressive-sensing images with isotropic total-variation regularisation.

    Solves, for every scene at once (vectorised over the batch),

        minimise_x  0.5 ||A x - y||^2 + lam_abs TV(x),   TV(x) = sum_ij |grad x|_ij

    with ``A`` the centred mask matrix and ``y`` the centred readings (the free offset ``d``
    of the affine bench model; for split sets the differential masks and readings), by FISTA
    (Beck & Teboulle, SIAM J. Imaging Sci. 2, 183, 2009) with step ``1 / ||A||_2^2`` and the
    TV proximal step computed by their fast gradient projection (FGP, Chambolle's dual,
    ``inner_iters`` iterations, dual warm-started across outer iterations).

    Data scale: the readings are in volts and the gain ``c`` is unknown, so ``lam`` is
    *relative*: ``lam_abs = lam * max_p |A^T y|_p`` per scene (volts; ``A`` is
    dimensionless), so readings ``a y + b`` (any gain ``a > 0``, offset ``b``) give the same
    image, and ``lam_abs`` grows with ``m`` like the data term does.  Useful values are
    0.002 .. 0.05; the default 0.005 gave the best correlation, or within 0.01 of it, on
    32 x 32 test scenes (targets, astronaut, disc, bars) with random masks at m = n/8, n/4
    and n/2 and shot noise.  0 gives plain (box-constrained) least squares.

    Box constraint ``x in [0, 1]``: ``c`` and the black level are not known either, so with
    ``box=True`` the first half of the iterations runs without the box, the result's 0.5th
    and 99.5th percentiles ``lo, hi`` calibrate ``x' = (x - lo) / (hi - lo)`` (readings and
    ``lam_abs`` transformed to match), and the second half runs FISTA with the prox onto
    ``{TV-ball} cap [0, 1]`` (FGP with projection, warm-started).

    Parameters
    ----------
    patterns : PatternSet
        The masks (m, H, W) of the readings (random, Hadamard, learned, split or not).
    values : array_like
        Readings (B, m) or (m,), volts, finite.
    lam : float
        Relative TV weight, >= 0 (dimensionless, see above).
    iters : int
        FISTA iterations in total, 1..100000.
    method : {"fista"}
        Optimiser (only FISTA is implemented).
    inner_iters : int
        FGP iterations per proximal step, 1..1000.
    box : bool
        Constrain the (self-calibrated) image to [0, 1] in the second half, see above.
    normalise : bool
        Map each image to [0, 1] (default).  If False: with ``box`` the calibrated image in
        [0, 1]; without it the solution in volts per fully lit mask pixel (up to a constant).

    Returns
    -------
    numpy.ndarray
        float64 (B, H, W).

    Raises
    ------
    ConfigError
        Bad ``patterns`` / ``values`` (shape, count, non-finite), ``lam`` negative or not
        finite, ``iters`` / ``inner_iters`` out of range, unknown ``method``; a mask matrix
        of more than 2**26 entries.
    """
    vals = _check_inputs(patterns, values)
    lam = require_in_range("lam", lam, 0.0, 1e6)
    iters = _check_int("iters", iters, 1, 100_000)
    inner_iters = _check_int("inner_iters", inner_iters, 1, 1000)
    if method not in TV_METHODS:
        raise ConfigError(f"method must be one of {', '.join(TV_METHODS)}; got {method!r}")
    if not isinstance(box, (bool, np.bool_)):
        raise ConfigError(f"box must be True or False; got {box!r}")
    normalise = _check_normalise(normalise)
    _check_dense(patterns, "tv_reconstruction")

    a, y, offset_free = _system(patterns, vals)
    if not offset_free:
        a = a - a.mean(axis=0, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
    batch, shape = len(y), patterns.shape
    lip = _spectral_norm_sq(a)
    scale = np.abs(y @ a).max(axis=1)
    lam_abs = lam * np.where(scale > 0, scale, 1.0)
    x = np.zeros((batch, *shape), dtype=np.float64)

    first = iters // 2 if box and iters > 1 else iters
    x = _fista(a, y, x, lam_abs, lip, first, inner_iters, box=False)
    if box and iters > first:
        flat = x.reshape(batch, -1)
        lo, hi = np.percentile(flat, [0.5, 99.5], axis=1)
        span = hi - lo
        span = np.where(span > 0, span, 1.0)
        y_cal = (y - lo[:, None] * a.sum(axis=1)[None, :]) / span[:, None]
        x0 = np.clip((x - lo[:, None, None]) / span[:, None, None], 0.0, 1.0)
        x = _fista(a, y_cal, x0, lam_abs / span, lip, iters - first, inner_iters, box=True)
    return _finish(x.reshape(batch, -1), shape, normalise)


# --------------------------------------------------------------------------------------------
# differential ghost imaging
# --------------------------------------------------------------------------------------------


def differential_ghost_imaging(
    patterns: PatternSet,
    values: npt.ArrayLike,
    *,
    offset_v: float | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """Differential ghost imaging (Ferri et al., Phys. Rev. Lett. 104, 253603, 2010).

    ``G = <y B> - (<y> / <S>) <S B>`` with ``B_k`` mask ``k``, ``S_k = sum_p B_k[p]`` its
    number of lit pixels and ``<.>`` the mean over the ``m`` patterns.  Equivalently
    ``G = <r B>`` with the residual ``r = y - a S`` (``a = <y> / <S>``): the part of the
    reading not explained by how much of the mask is lit.

    Offset: Ferri's formula assumes ``y = c (B . x)``.  With ``offset_v`` given (volts),
    ``y - offset_v`` is used and the formula is exactly Ferri's.  With ``offset_v=None``
    (default) the offset is estimated together with ``a`` by the least-squares fit
    ``y_k ~ a S_k + d`` (the affine bench model) and ``G = <(y - d - a S) B>``; when all
    ``S_k`` are equal (e.g. Hadamard masks) this is ordinary correlation ghost imaging with
    centred readings.  Split sets use the differential readings and masks ``2 p - 1`` with
    offset 0 (it cancels).  Works for any masks; DGI is meant for random ones.

    Parameters
    ----------
    patterns : PatternSet
        Masks (m, H, W).
    values : array_like
        Readings (B, m) or (m,), volts, finite.
    offset_v : float or None
        Known detector offset in volts (reading with a dark scene), or None to estimate it.
    normalise : bool
        Map each image to [0, 1] (default); else volts (a correlation, up to a constant).

    Returns
    -------
    numpy.ndarray
        float64 (B, H, W).

    Raises
    ------
    ConfigError
        Bad ``patterns`` / ``values`` (shape, count, non-finite), a non-finite
        ``offset_v``, or a mask matrix of more than 2**26 entries.
    """
    vals = _check_inputs(patterns, values)
    if offset_v is not None:
        offset_v = require_in_range("offset_v", offset_v, -1e6, 1e6, "V")
    normalise = _check_normalise(normalise)
    _check_dense(patterns, "differential_ghost_imaging")
    a, y, offset_free = _system(patterns, vals)
    m = a.shape[0]
    s = a.sum(axis=1)
    s_mean = float(s.mean())
    tiny = 1e-12 * max(float(np.abs(s).max()), 1.0)
    if offset_v is not None or offset_free:
        yy = y - (0.0 if offset_free or offset_v is None else offset_v)
        if abs(s_mean) > tiny:
            coef = yy.mean(axis=1) / s_mean  # Ferri: <y> / <S>
        else:  # S averages to ~0 (split Hadamard): least squares through the origin
            ss = float(s @ s)
            coef = (yy @ s) / ss if ss > 0 else np.zeros(len(yy))
        resid = yy - coef[:, None] * s[None, :]
    else:
        sc = s - s_mean
        yc = y - y.mean(axis=1, keepdims=True)
        var = float(sc @ sc)
        coef = (yc @ sc) / var if var > tiny * tiny * m else np.zeros(len(y))
        resid = yc - coef[:, None] * sc[None, :]
    images = resid @ a / m
    return _finish(images, patterns.shape, normalise)


#: Above this many patterns the preview falls back to the adjoint (the Gram matrix is m^2 n).
MAX_LS_PATTERNS = 1024


def preview_reconstruction(
    patterns: PatternSet, values: np.ndarray, ridge: float = 1e-6
) -> tuple[np.ndarray, str]:
    """Images (B, H, W) recovered from readings (B, m), normalised to [0, 1] per image.

    Returns the images and the method used ("least squares" or "adjoint").
    Split (differential) sets are recombined first.
    """
    vals = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if vals.shape[-1] != patterns.m:
        raise ConfigError(f"{vals.shape[-1]} readings per scene for {patterns.m} patterns")
    masks = patterns.masks.reshape(patterns.m, -1).astype(np.float64)
    if patterns.is_split:
        vals = patterns.differential(vals)
        masks = masks[0::2] - masks[1::2]
    centred = masks - masks.mean(axis=0, keepdims=True)
    y = vals - vals.mean(axis=1, keepdims=True)
    if centred.shape[0] <= MAX_LS_PATTERNS:
        gram = centred @ centred.T
        lam = ridge * max(np.trace(gram) / len(gram), 1e-300)
        coef = np.linalg.solve(gram + lam * np.eye(len(gram)), y.T)
        images, method = (centred.T @ coef).T, "least squares"
    else:
        images, method = y @ centred, "adjoint"
    return normalise_images(images.reshape(len(vals), *patterns.shape)), method


def preview_resolution(patterns: PatternSet) -> str:
    """What a linear preview from ``patterns`` can resolve, in words: ``m`` independent
    readings of an ``H x W`` scene (a split set's pairs count once) hold at most ``m``
    numbers, about ``sqrt(m) x sqrt(m)`` pixels of detail however the image is shown."""
    m = patterns.m // 2 if patterns.is_split else patterns.m
    side = int(np.sqrt(m))
    h, w = patterns.shape
    return f"{m} readings of {h}x{w} px:\n~{side}x{side} px of detail"

