"""Monitor transfer curve ``L = a (v/255)^gamma + b`` from full-screen grey levels
(:func:`fit_monitor_gamma`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from lsi_hw.calibration.common import (
    CalibrationResult,
    bayer_mask,
    check_count,
    check_mask_shape,
    check_saturation,
    finite_or_none,
    format_si,
    held_patterns,
    held_readings,
    mean_level,
    measure_checked,
    progress_bar,
    read_declared,
    uniform_scenes,
    unknown_notes,
)
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench


@dataclass(frozen=True)
class GammaResult(CalibrationResult):
    """Monitor transfer curve ``L = a (v/255)^gamma + b`` from full-screen grey levels.

    Attributes
    ----------
    gamma, gamma_u:
        Exponent and its uncertainty.
    black_to_peak, black_to_peak_u:
        ``b / a``: black luminance over the white-minus-black luminance.
    peak_v, peak_u_v:
        ``a`` in volts of differential (the "on" mask minus all off) reading.
    black_v, black_u_v:
        ``b`` in the same volts.
    levels:
        Drive levels measured.
    differential_v, differential_u_v:
        Measured (on - off) reading per level and its uncertainty, volts.
    residual_rms_rel:
        rms of the fit residuals over ``peak_v``.
    reduced_chi2:
        chi^2 / dof of the weighted fit (the uncertainties are scaled by
        sqrt(max(1, reduced_chi2))).
    mask_shape, gain_db:
        Mask shape (H, W) and declared gain (dB).
    notes:
        What the bench did not know and so was left out.
    open_fraction:
        Exact open fraction of the "on" mask (1 = every mirror on; less when the bench's
        range is set for typical scenes and a white screen would clip, see
        :func:`run_all`).  The differential volts scale with it; gamma and the
        black-to-peak ratio do not.
    """

    gamma: float
    gamma_u: float
    black_to_peak: float
    black_to_peak_u: float
    peak_v: float
    peak_u_v: float
    black_v: float
    black_u_v: float
    levels: tuple[int, ...]
    differential_v: tuple[float, ...]
    differential_u_v: tuple[float, ...]
    residual_rms_rel: float
    reduced_chi2: float | None
    mask_shape: tuple[int, int]
    gain_db: float | None
    notes: tuple[str, ...] = ()
    open_fraction: float = 1.0

    def summary(self) -> str:
        """Gamma and black-to-peak ratio on one line."""
        on = "on" if self.open_fraction == 1.0 else f"{self.open_fraction:.3g} open"
        return (f"gamma {self.gamma:.4g} +- {self.gamma_u:.2g}, black/peak "
                f"{self.black_to_peak:.3g} +- {self.black_to_peak_u:.2g}, peak "
                f"{format_si(self.peak_v, 'V')} ({on} - off)")


def _on_mask(shape: tuple[int, int], open_fraction: float) -> np.ndarray:
    """The "on" mask of a routine: every mirror for 1, else :func:`bayer_mask` (ConfigError
    outside (0, 1] or when no mirror would open)."""
    try:
        f = float(open_fraction)
    except (TypeError, ValueError):
        f = math.nan
    if not 0.0 < f <= 1.0:
        raise ConfigError(f"open_fraction={open_fraction!r} must be in (0, 1]")
    mask = np.ones(shape, dtype=np.uint8) if f == 1.0 else bayer_mask(shape, f)
    if not mask.any():
        raise ConfigError(f"open_fraction={open_fraction!r} opens no mirror of a {shape} mask "
                          "(8 x 8 dither: use at least 1/64)")
    return mask


def fit_monitor_gamma(
    bench: Bench,
    levels: Sequence[int] = (0, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 255),
    *,
    size: int | tuple[int, int] = 32,
    repeats: int = 32,
    discard: int = 2,
    passes: int = 3,
    gamma_tolerance: float = 0.05,
    seed: int = 0,
    open_fraction: float = 1.0,
    progress: bool = False,
) -> GammaResult:
    """Fit the monitor transfer ``L = a (v/255)^gamma + b`` from full-screen grey levels.

    Each level is measured with the "on" mask (every mirror on, or an evenly dithered
    ``open_fraction`` of them) and the all-off mask (held ``discard + repeats`` patterns,
    twice, alternating); their difference removes the dark level and the leakage and is
    proportional to the screen luminance.  A weighted least-squares fit
    gives gamma, ``a`` and ``b`` and so the black-to-peak ratio ``b / a``.  The levels are
    swept ``passes`` times, each in its own seeded random order, so slow source drift does
    not bend the curve; the scatter between passes enters the uncertainties.

    Parameters
    ----------
    bench:
        Any bench.
    levels:
        Drive levels 0..255 (include 0 and 255; at least 4).
    size:
        Mask shape (H, W) or side, pixels.
    repeats, discard:
        Readings kept / dropped per hold.
    passes:
        Sweeps over the levels, each in its own random order; their scatter measures slow
        source drift, which enters the per-level uncertainties.
    gamma_tolerance:
        Largest acceptable uncertainty of gamma.
    seed:
        Seed of the scene order.
    open_fraction:
        Open fraction of the "on" mask, 0 < f <= 1 (:func:`bayer_mask`, 8 x 8 dither:
        multiples of 1/64).  Below 1 when a full-screen white with every mirror on would
        clip (:func:`run_all` chooses it from the operating point).
    progress:
        Show a progress bar.

    Raises
    ------
    CalibrationError
        Fewer than 4 levels, saturation, a curve that is not increasing, a failed fit, a
        gamma outside [0.3, 5] or an uncertainty above ``gamma_tolerance``.
    """
    shape = check_mask_shape(size)
    repeats = check_count("repeats", repeats, 2)
    discard = check_count("discard", discard, 0)
    passes = check_count("passes", passes, 1)
    lv = np.asarray(sorted(set(int(v) for v in levels)))
    if lv.size < 4:
        raise CalibrationError(f"fit_monitor_gamma needs at least 4 distinct levels; got {lv}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(lv.size) for _ in range(passes)])
    on_mask = _on_mask(shape, open_fraction)
    masks = np.stack([on_mask, np.zeros(shape), on_mask, np.zeros(shape)])
    patterns = held_patterns(masks, repeats, discard, "calibration-gamma")
    declared = read_declared(bench)
    with progress_bar(progress, 1, "gamma") as step:
        meas = measure_checked(bench, uniform_scenes(lv[order], shape), patterns)
        step("measured")
    lsb = declared.lsb_v
    check_saturation(meas.values, declared.clip_v, "fit_monitor_gamma")
    held = held_readings(meas.values, 4, repeats, discard)
    diff, diff_u = _differential_levels(held, order, lv.size, passes, lsb)
    _check_signal(lv, diff, diff_u, lsb)
    result = GammaResult(
        **_fit_transfer(lv, diff, diff_u),
        levels=tuple(int(v) for v in lv),
        differential_v=tuple(float(v) for v in diff),
        differential_u_v=tuple(float(v) for v in diff_u),
        mask_shape=shape,
        gain_db=declared.gain_db,
        notes=unknown_notes(declared, lsb=True, clip=True),
        open_fraction=float(on_mask.mean()),
    )
    g, g_u = result.gamma, result.gamma_u
    if not (0.3 <= g <= 5.0) or not g_u <= gamma_tolerance:
        raise CalibrationError(
            f"fit_monitor_gamma: gamma {g:.4g} +- {g_u:.2g} outside [0.3, 5] or its "
            f"uncertainty above {gamma_tolerance:g}; use more repeats or a higher gain"
        )
    return result


def _differential_levels(held: np.ndarray, order: np.ndarray, n_levels: int, passes: int,
                         lsb: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(on - off reading, its uncertainty) per level, averaged over the passes; with more
    than one pass the drift between them (beyond the within-scene uncertainty) is added."""
    per_pass = np.empty((passes, n_levels))
    per_pass_u = np.empty((passes, n_levels))
    for b, i in enumerate(order):
        on, on_u, _ = mean_level(held[b, [0, 2]], lsb)
        off, off_u, _ = mean_level(held[b, [1, 3]], lsb)
        per_pass[b // n_levels, i] = on - off
        per_pass_u[b // n_levels, i] = math.hypot(on_u, off_u)
    diff = per_pass.mean(axis=0)
    diff_u = np.sqrt(np.sum(per_pass_u**2, axis=0)) / passes
    if passes > 1:
        # slow source drift (flicker) moves whole scenes: a relative scatter between passes
        # beyond the within-scene uncertainty, pooled over the bright levels
        bright = diff > 20 * diff_u
        if bright.any():
            var = per_pass[:, bright].var(axis=0, ddof=1)
            excess = (var - np.mean(per_pass_u[:, bright] ** 2, axis=0)) / diff[bright] ** 2
            rel2 = max(float(np.mean(excess)), 0.0)
            diff_u = np.sqrt(diff_u**2 + rel2 * diff**2 / passes)
    return diff, diff_u


def _check_signal(lv: np.ndarray, diff: np.ndarray, diff_u: np.ndarray,
                  lsb: float | None) -> None:
    """CalibrationError unless every level's reading varies and the on-minus-off signal
    increases with the drive level."""
    if not np.all(diff_u > 0):
        why = (" and the bench does not report its ADC step (bench.digitizer_lsb_v is None)"
               if lsb is None else "")
        raise CalibrationError(
            f"fit_monitor_gamma: the readings at level(s) {lv[~(diff_u > 0)].tolist()} do "
            f"not vary (zero uncertainty){why}; use a higher gain so the noise shows"
        )
    top = diff[-1]
    if not top > 10 * diff_u[-1] or np.any(np.diff(diff) < -3 * np.hypot(diff_u[1:], diff_u[:-1])):
        raise CalibrationError(
            "fit_monitor_gamma: the on-minus-off signal is not increasing with the drive "
            f"level (got {np.round(diff, 6).tolist()} V); check the monitor and the light path"
        )


def _fit_transfer(lv: np.ndarray, diff: np.ndarray, diff_u: np.ndarray) -> dict[str, Any]:
    """Weighted least squares of ``a (v/255)^gamma + b`` to the differential readings; returns
    the :class:`GammaResult` fields of the fit (uncertainties from the covariance, scaled up
    by a reduced chi^2 above 1).

    Raises
    ------
    CalibrationError
        A failed, unconverged or singular fit.
    """
    x = lv / 255.0
    top = diff[-1]
    # start: log-log slope over the upper levels after removing the lowest reading
    base = diff[0] if lv[0] == 0 else 0.0
    sel = (x > 0.15) & (diff - base > 0)
    g0 = 2.2
    if sel.sum() >= 2:
        g0 = float(np.polyfit(np.log(x[sel]), np.log(diff[sel] - base), 1)[0])
    g0 = min(max(g0, 0.5), 4.5)

    def resid(p: np.ndarray) -> np.ndarray:
        a, g, b = p
        return (a * np.power(x, g) + b - diff) / diff_u

    try:
        fit = optimize.least_squares(resid, [top - base, g0, base], method="lm", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise CalibrationError(f"fit_monitor_gamma: fit failed ({exc})") from None
    if not fit.success:
        raise CalibrationError(f"fit_monitor_gamma: fit did not converge ({fit.message})")
    dof = lv.size - 3
    chi2 = float(np.sum(fit.fun**2)) / dof if dof > 0 else float("nan")
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac)
    except np.linalg.LinAlgError:
        raise CalibrationError("fit_monitor_gamma: singular fit (levels too few or "
                               "degenerate)") from None
    if math.isfinite(chi2):
        cov = cov * max(1.0, chi2)
    a, g, b = (float(v) for v in fit.x)
    a_u, g_u, b_u = (float(math.sqrt(max(cov[i, i], 0.0))) for i in range(3))
    grad = np.array([-b / a**2, 0.0, 1.0 / a])  # d(b/a) / d(a, gamma, b)
    return {
        "gamma": g,
        "gamma_u": g_u,
        "black_to_peak": b / a,
        "black_to_peak_u": float(math.sqrt(max(float(grad @ cov @ grad), 0.0))),
        "peak_v": a,
        "peak_u_v": a_u,
        "black_v": b,
        "black_u_v": b_u,
        "residual_rms_rel": float(np.sqrt(np.mean((fit.fun * diff_u) ** 2)) / a),
        "reduced_chi2": finite_or_none(chi2),
    }
