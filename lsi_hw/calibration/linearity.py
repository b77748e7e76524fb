"""Detector linearity against the DMD open fraction (:func:`check_linearity_and_gain`)
and the gain step between two such runs (:func:`compare_gains`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lsi_hw.calibration.common import (
    SATURATION_MARGIN,
    CalibrationResult,
    bayer_mask,
    check_count,
    check_mask_shape,
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
class LinearityResult(CalibrationResult):
    """Detector linearity versus the DMD open fraction, per scene drive level.

    Attributes
    ----------
    levels:
        Uniform-scene drive levels (0..255) measured.
    open_fractions:
        Exact open fraction of each mask (fraction of mirrors on), 0..1.
    slopes_v, slopes_u_v:
        Fitted volts per unit open fraction for each level and uncertainty (scaled by
        sqrt(reduced chi^2) of that level's fit when above 1), volts.
    intercepts_v:
        Fitted reading at zero open fraction per level (dark + leakage), volts.
    nonlinearity_pct:
        Per level, the largest |residual| of the straight-line fit in % of the full-scale
        span (slope of the brightest level).
    max_nonlinearity_pct:
        Largest of ``nonlinearity_pct``, %.
    residual_rms_v:
        rms of all fit residuals, volts.
    reduced_chi2:
        chi^2 / dof of the fits with the per-point uncertainties (about 1 when linear).
    gain_db, v_per_a:
        Declared gain of the bench (dB, V/A), None when the bench does not say.
    photocurrent_a:
        ``slope / v_per_a`` per level: photocurrent with every mirror on, amperes (None
        without a declared V/A).
    mask_shape:
        Mask shape (H, W).
    n_saturated:
        Points dropped because they reached the clipping level.
    notes:
        What the bench did not know and so was left out.
    """

    levels: tuple[int, ...]
    open_fractions: tuple[float, ...]
    slopes_v: tuple[float, ...]
    slopes_u_v: tuple[float, ...]
    intercepts_v: tuple[float, ...]
    nonlinearity_pct: tuple[float, ...]
    max_nonlinearity_pct: float
    residual_rms_v: float
    reduced_chi2: float | None
    gain_db: float | None
    v_per_a: float | None
    photocurrent_a: tuple[float, ...] | None
    mask_shape: tuple[int, int]
    n_saturated: int
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """Nonlinearity, full-scale slope and photocurrent on one line."""
        top = int(np.argmax(np.abs(self.slopes_v)))
        text = (f"nonlinearity {self.max_nonlinearity_pct:.3g} % of full scale over levels "
                f"{', '.join(str(v) for v in self.levels)}; slope at level {self.levels[top]} "
                f"{format_si(self.slopes_v[top], 'V')}")
        if self.photocurrent_a is not None:
            text += (f" = {format_si(self.photocurrent_a[top], 'A')} at "
                     f"{format_si(self.v_per_a, 'V/A', 3)}")
        if self.n_saturated:
            text += f"; {self.n_saturated} saturated points dropped"
        return text


@dataclass(frozen=True)
class GainComparison(CalibrationResult):
    """Measured gain step between two :class:`LinearityResult` runs at different gains.

    Attributes
    ----------
    measured_step_db, measured_step_u_db:
        ``20 log10(slope_b / slope_a)`` (weighted over common levels) and its uncertainty, dB.
    declared_step_db:
        From the declared V/A of both runs (or their gain_db), dB.
    difference_db:
        measured - declared, dB.
    measured_ratio, declared_ratio:
        The same steps as V/A ratios (b over a).
    levels:
        Drive levels common to both runs that were compared.
    tolerance_db, within_tolerance:
        The tolerance used and whether ``|difference_db| <= tolerance_db``.
    """

    measured_step_db: float
    measured_step_u_db: float
    declared_step_db: float | None
    difference_db: float | None
    measured_ratio: float
    declared_ratio: float | None
    levels: tuple[int, ...]
    tolerance_db: float
    within_tolerance: bool | None


def _wls_line(x: np.ndarray, y: np.ndarray, u: np.ndarray
              ) -> tuple[float, float, float, np.ndarray, float]:
    """Weighted straight line: (slope, intercept, slope_u, residuals, chi2)."""
    w = 1.0 / np.maximum(u, 1e-300) ** 2
    a = np.stack([x, np.ones_like(x)], axis=1)
    aw = a * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(aw, y * np.sqrt(w), rcond=None)
    cov = np.linalg.inv(aw.T @ aw)
    res = y - a @ coef
    chi2 = float(np.sum(res**2 * w))
    return float(coef[0]), float(coef[1]), float(math.sqrt(cov[0, 0])), res, chi2


def check_linearity_and_gain(
    bench: Bench,
    *,
    levels: Sequence[int] = (64, 128, 192, 255),
    fractions: Sequence[float] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0),
    size: int | tuple[int, int] = 32,
    repeats: int = 16,
    discard: int = 2,
    tolerance_pct: float = 0.5,
    exclude_saturated: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> LinearityResult:
    """Detector linearity against the DMD open fraction (an exactly known linear knob).

    Uniform scenes at each drive level are measured through ordered-dither masks of known
    open fractions (shown in a seeded random order, each held ``discard + repeats``
    patterns).  For each level a weighted straight line volts-vs-fraction is fitted; the
    largest deviation, in % of the full-scale span (slope of the brightest level), is the
    nonlinearity.  The slopes divided by the declared V/A give the photocurrent;
    :func:`compare_gains` compares two runs at different gain settings.

    Parameters
    ----------
    bench:
        Any bench.
    levels:
        Uniform scene drive levels, 0..255.
    fractions:
        Wanted open fractions (the exact ones are recorded), at least 3.
    size:
        Mask shape (H, W) or side, pixels.
    repeats, discard:
        Readings kept / dropped per mask hold.
    tolerance_pct:
        Largest acceptable nonlinearity, % of full scale.
    exclude_saturated:
        Drop points at the clipping level (counted in ``n_saturated``) instead of fitting
        them.
    seed:
        Seed of the mask order.
    progress:
        Show a progress bar.

    Raises
    ------
    CalibrationError
        Nonlinearity above ``tolerance_pct``, fewer than 3 unsaturated points for a level,
        or no signal.
    """
    shape = check_mask_shape(size)
    repeats = check_count("repeats", repeats, 2)
    discard = check_count("discard", discard, 0)
    if len(fractions) < 3:
        raise ConfigError(f"need at least 3 open fractions; got {len(fractions)}")
    masks = np.stack([bayer_mask(shape, float(f)) for f in fractions])
    exact = masks.reshape(len(masks), -1).mean(axis=1)
    order = np.random.default_rng(seed).permutation(len(masks))
    patterns = held_patterns(masks[order], repeats, discard, "calibration-linearity")
    scenes = uniform_scenes(levels, shape)
    declared = read_declared(bench)
    with progress_bar(progress, 1, "linearity") as step:
        meas = measure_checked(bench, scenes, patterns)
        step("measured")
    lsb, clip = declared.lsb_v, declared.clip_v
    held = held_readings(meas.values, len(masks), repeats, discard)
    readings = np.empty_like(held)
    readings[:, order] = held  # back to the order of ``fractions``
    stats = np.array([[mean_level(readings[b, j], lsb)[:2] for j in range(len(masks))]
                      for b in range(len(scenes))])  # (B, n, 2)
    saturated = np.zeros(stats.shape[:2], dtype=bool)
    if clip is not None:
        saturated = np.abs(readings).max(axis=2) >= SATURATION_MARGIN * clip
    n_sat = int(saturated.sum()) if exclude_saturated else 0
    slopes, slopes_u, raw_u, intercepts, res_all, chi2, dof = [], [], [], [], [], 0.0, 0
    max_res = []
    for b, level in enumerate(levels):
        keep = ~saturated[b] if exclude_saturated else np.ones(len(masks), dtype=bool)
        if keep.sum() < 3:
            raise CalibrationError(
                f"check_linearity_and_gain: level {level} has {int(keep.sum())} unsaturated "
                "points (< 3); lower the gain or the levels"
            )
        s, c, su, res, ch = _wls_line(exact[keep], stats[b, keep, 0], stats[b, keep, 1])
        raw_u.append(su)
        if keep.sum() > 2:  # scatter beyond the within-hold noise (e.g. source flicker)
            su *= math.sqrt(max(1.0, ch / (int(keep.sum()) - 2)))
        slopes.append(s)
        slopes_u.append(su)
        intercepts.append(c)
        res_all.append(res)
        max_res.append(float(np.max(np.abs(res))))
        chi2 += ch
        dof += int(keep.sum()) - 2
    full_scale = max(abs(s) for s in slopes)
    if not full_scale > 10 * max(raw_u):
        raise CalibrationError(
            f"check_linearity_and_gain: no signal (largest slope {full_scale:.3g} V, "
            f"uncertainty {max(raw_u):.2g} V); check the light path and the gain"
        )
    nonlin = [100.0 * r / full_scale for r in max_res]
    v_per_a = declared.v_per_a
    result = LinearityResult(
        levels=tuple(int(v) for v in levels),
        open_fractions=tuple(float(f) for f in exact),
        slopes_v=tuple(slopes),
        slopes_u_v=tuple(slopes_u),
        intercepts_v=tuple(intercepts),
        nonlinearity_pct=tuple(nonlin),
        max_nonlinearity_pct=max(nonlin),
        residual_rms_v=float(np.sqrt(np.mean(np.concatenate(res_all) ** 2))),
        reduced_chi2=finite_or_none(chi2 / dof) if dof > 0 else None,
        gain_db=declared.gain_db,
        v_per_a=v_per_a,
        photocurrent_a=tuple(s / v_per_a for s in slopes) if v_per_a else None,
        mask_shape=shape,
        n_saturated=n_sat,
        notes=unknown_notes(declared, lsb=True, clip=True, v_per_a=True),
    )
    if result.max_nonlinearity_pct > tolerance_pct:
        worst = int(np.argmax(nonlin))
        raise CalibrationError(
            f"check_linearity_and_gain: nonlinearity {result.max_nonlinearity_pct:.3g} % of "
            f"full scale at level {levels[worst]} exceeds {tolerance_pct:g} %; look for "
            "saturation, stray light or a gain set too high"
        )
    return result


def compare_gains(
    result_a: LinearityResult,
    result_b: LinearityResult,
    *,
    tolerance_db: float = 0.5,
    raise_on_mismatch: bool = False,
) -> GainComparison:
    """Measured gain step from run ``a`` to run ``b`` against the declared one.

    Both runs must see the same scenes through the same mask shape; only the amplifier
    gain should differ.  The step is the weighted mean over the common levels of
    ``20 log10(slope_b / slope_a)``.

    Parameters
    ----------
    result_a, result_b:
        :func:`check_linearity_and_gain` results at two gain settings.
    tolerance_db:
        Allowed |measured - declared| step, dB.
    raise_on_mismatch:
        Raise CalibrationError instead of returning ``within_tolerance=False``.

    Raises
    ------
    CalibrationError
        Different mask shapes, no common level, or (with ``raise_on_mismatch``) a step
        outside the tolerance: the gain knob is probably not where it was declared.
    """
    if tuple(result_a.mask_shape) != tuple(result_b.mask_shape):
        raise CalibrationError(
            f"compare_gains: mask shapes differ ({result_a.mask_shape} vs "
            f"{result_b.mask_shape}); run both at the same size"
        )
    common = [lv for lv in result_a.levels if lv in result_b.levels]
    steps, us = [], []
    for lv in common:
        sa = result_a.slopes_v[result_a.levels.index(lv)]
        sb = result_b.slopes_v[result_b.levels.index(lv)]
        ua = result_a.slopes_u_v[result_a.levels.index(lv)]
        ub = result_b.slopes_u_v[result_b.levels.index(lv)]
        if sa > 0 and sb > 0:
            steps.append(20 * math.log10(sb / sa))
            us.append(20 / math.log(10) * math.hypot(ua / sa, ub / sb))
    if not steps:
        raise CalibrationError("compare_gains: no common drive level with a positive slope")
    w = 1 / np.maximum(np.asarray(us), 1e-12) ** 2
    step = float(np.sum(w * np.asarray(steps)) / np.sum(w))
    step_u = float(1 / math.sqrt(np.sum(w)))
    if len(steps) > 1:  # scatter between levels (e.g. flicker) when larger than expected
        chi2 = float(np.sum(w * (np.asarray(steps) - step) ** 2)) / (len(steps) - 1)
        step_u *= math.sqrt(max(1.0, chi2))
    declared = None
    if result_a.v_per_a and result_b.v_per_a:
        declared = 20 * math.log10(result_b.v_per_a / result_a.v_per_a)
    elif result_a.gain_db is not None and result_b.gain_db is not None:
        declared = float(result_b.gain_db - result_a.gain_db)
    diff = None if declared is None else step - declared
    ok = None if diff is None else abs(diff) <= tolerance_db
    if raise_on_mismatch and ok is False:
        raise CalibrationError(
            f"compare_gains: measured step {step:.2f} dB differs from the declared "
            f"{declared:.2f} dB by {diff:+.2f} dB (> {tolerance_db:g} dB); check the gain "
            "knob positions recorded for both runs"
        )
    return GainComparison(
        measured_step_db=step,
        measured_step_u_db=step_u,
        declared_step_db=declared,
        difference_db=diff,
        measured_ratio=10 ** (step / 20),
        declared_ratio=None if declared is None else 10 ** (declared / 20),
        levels=tuple(int(v) for v in common),
        tolerance_db=float(tolerance_db),
        within_tolerance=ok,
    )
