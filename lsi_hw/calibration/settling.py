"""First-order settling of the amplifier between consecutive readings
(:func:`measure_settling`, :func:`tau_from_beta`).

The carry-over formula, :func:`settling_beta`, is the simulator's
(:func:`lsi_hw.sim.detector.settling_beta`): the fit uses the same model the simulator
applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize

from lsi_hw.calibration.common import (
    CalibrationResult,
    Declared,
    check_count,
    check_mask_shape,
    check_saturation,
    format_si,
    held_patterns,
    measure_checked,
    progress_bar,
    read_declared,
    uniform_scenes,
    unknown_notes,
)
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench, BenchTiming
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import settling_beta  # re-exported: lsi_hw.calibration.settling_beta


@dataclass(frozen=True)
class SettlingResult(CalibrationResult):
    """First-order settling of the amplifier between consecutive readings.

    Attributes
    ----------
    resolved:
        Whether tau was measured; if not, ``unresolved_reason`` says why and only the
        bounds are given (when the timing is known).
    beta, beta_u:
        Carry-over fraction: the part of the step from the previous reading that is still in
        the next one (model-free estimate from the first reading after each step).
    tau_s, tau_u_s:
        Amplifier time constant from the fit of the whole sequence, seconds (None when not
        resolved).
    bandwidth_hz, bandwidth_u_hz:
        ``1 / (2 pi tau)``, Hz (None when not resolved).
    tau_upper_s, bandwidth_lower_hz:
        3-sigma bounds (tau below, bandwidth above) from the carry-over (None when the
        reading timing is unknown).
    declared_bandwidth_hz:
        Bandwidth of the declared gain step, ``bench.bandwidth_hz`` (None when unknown).
    bandwidth_ratio:
        measured / declared bandwidth (None when either is missing).
    step_v:
        Mean size of the on/off step, volts.
    residual_rms_v:
        rms residual of the sequence fit (or of the settled readings), volts.
    period_us, settling_delay_us, window_us:
        Timing the conversion used, microseconds (None when unknown).
    n_transitions:
        Steps used.
    gain_db:
        Declared gain, dB.
    unresolved_reason:
        Why tau was not measured (None when resolved).
    notes:
        What the bench did not know and so was left out.
    """

    resolved: bool
    beta: float
    beta_u: float
    tau_s: float | None
    tau_u_s: float | None
    bandwidth_hz: float | None
    bandwidth_u_hz: float | None
    tau_upper_s: float | None
    bandwidth_lower_hz: float | None
    declared_bandwidth_hz: float | None
    bandwidth_ratio: float | None
    step_v: float
    residual_rms_v: float
    period_us: float | None
    settling_delay_us: float | None
    window_us: float | None
    n_transitions: int
    gain_db: float | None
    unresolved_reason: str | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """Time constant and bandwidth, or why they are unresolved, on one line."""
        if self.resolved:
            text = (f"tau {format_si(self.tau_s, 's')} +- {format_si(self.tau_u_s, 's', 2)}, "
                    f"bandwidth {format_si(self.bandwidth_hz, 'Hz')}")
            if self.bandwidth_ratio is not None:
                text += f" = {self.bandwidth_ratio:.3f} x declared"
            return text + f" (carry-over {self.beta:.3g})"
        text = f"unresolved because {self.unresolved_reason or 'the carry-over is too small'}"
        if self.tau_upper_s is not None:
            text += (f"; tau < {format_si(self.tau_upper_s, 's', 3)} (bandwidth > "
                     f"{format_si(self.bandwidth_lower_hz, 'Hz', 3)})")
        return text


_TIMING_KEYS = ("period_us", "settling_delay_us", "window_us")


def _resolve_timing(bench_timing: BenchTiming | None,
                    override: Mapping[str, float] | BenchTiming | None
                    ) -> BenchTiming | None:
    """The reading timing: ``override`` (a BenchTiming, or microsecond values that replace
    those of the bench) over ``bench.timing``; None when neither gives all of it.

    Raises
    ------
    ConfigError
        Unknown keys in ``override``, or values out of range.
    """
    if isinstance(override, BenchTiming):
        return override
    values: dict[str, float] = {}
    if bench_timing is not None:
        values = {"period_us": bench_timing.period_s * 1e6,
                  "settling_delay_us": bench_timing.settling_delay_s * 1e6,
                  "window_us": bench_timing.window_s * 1e6}
    if override:
        unknown = sorted(set(override) - set(_TIMING_KEYS))
        if unknown:
            raise ConfigError(f"timing keys {unknown} unknown; allowed: "
                              f"{', '.join(_TIMING_KEYS)} (microseconds)")
        for key, value in override.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"timing[{key!r}]={value!r} is not a number of "
                                  "microseconds") from None
    if any(k not in values for k in _TIMING_KEYS):
        return None
    return BenchTiming.from_us(values["period_us"], values["settling_delay_us"],
                               values["window_us"])


def tau_from_beta(beta: float, settling_delay_s: float, window_s: float) -> float:
    """Invert :func:`settling_beta`: the time constant (s) giving carry-over ``beta``.

    Raises
    ------
    CalibrationError
        ``beta`` outside (0, 1).
    """
    if not 0.0 < beta < 1.0:
        raise CalibrationError(f"carry-over fraction {beta:.4g} outside (0, 1): cannot "
                               "convert to a time constant")

    def f(log_tau: float) -> float:
        return float(settling_beta(math.exp(log_tau), settling_delay_s, window_s)) - beta

    lo, hi = math.log(1e-12), math.log(1e4)
    if f(lo) > 0:
        return 1e-12
    if f(hi) < 0:
        raise CalibrationError(f"carry-over fraction {beta:.4g} needs tau > 1e4 s")
    return math.exp(optimize.brentq(f, lo, hi, xtol=1e-12))


def _settle_design(block_of: np.ndarray, n_blocks: int, a: float, beta: float) -> np.ndarray:
    """(m, n_blocks) readings of unit inputs per block through the first-order model."""
    m = block_of.size
    x = np.zeros((m, n_blocks))
    x[np.arange(m), block_of] = 1.0
    out = np.empty_like(x)
    s = x[0].copy()  # the sequence starts settled at its first value
    for k in range(m):
        out[k] = x[k] + beta * (s - x[k])
        s = a * s + (1.0 - a) * x[k]
    return out


def measure_settling(
    bench: Bench,
    *,
    size: int | tuple[int, int] = 32,
    level: int = 255,
    block: int = 8,
    cycles: int = 24,
    repeats: int = 4,
    timing: Mapping[str, float] | BenchTiming | None = None,
    tau_rel_tolerance: float = 0.1,
    min_significance: float = 5.0,
    require_resolved: bool = False,
    progress: bool = False,
) -> SettlingResult:
    """Amplifier settling from alternating open / closed masks on a bright scene.

    The all-on and all-off masks alternate in blocks of ``block`` patterns (``cycles``
    on/off pairs, ``repeats`` scenes).  The first reading after each step keeps a fraction
    ``beta`` of the step (model-free estimate from the settled block tails).  When it is
    significant, the whole sequence is fitted with the first-order model of the
    :mod:`lsi_hw.calibration` docstring (one free level per block, so slow drift and flicker
    do not bias it, and one time constant ``tau``; the timing comes from ``bench.timing``
    or ``timing``) and converted to the bandwidth ``1 / (2 pi tau)``, compared to
    ``bench.bandwidth_hz``.
    When the bench does not report its reading timing and ``timing`` does not complete
    it, tau cannot be computed: the result is unresolved and ``unresolved_reason`` says so.

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask shape (H, W) or side, pixels.
    level:
        Drive level 0..255 of the uniform scene.
    block:
        Patterns per on or off block (>= 5).
    cycles:
        On/off pairs per scene.
    repeats:
        Scenes (identical) measured.
    timing:
        A :class:`~lsi_hw.interfaces.BenchTiming` (seconds), or a dict overriding some of
        ``period_us``, ``settling_delay_us``, ``window_us`` of ``bench.timing``
        (microseconds).
    tau_rel_tolerance:
        Largest acceptable relative uncertainty of tau when resolved.
    min_significance:
        Carry-over below this many standard uncertainties counts as unresolved.
    require_resolved:
        Raise CalibrationError when the settling is not resolved (instead of returning
        bounds only).
    progress:
        Show a progress bar.

    Raises
    ------
    CalibrationError
        Saturation, no step, a failed fit, tau uncertainty above tolerance, or (with
        ``require_resolved``) unmeasurably fast settling or an unknown timing.
    ConfigError
        Bad arguments, unknown ``timing`` keys or out-of-range timing values.
    """
    shape = check_mask_shape(size)
    block = check_count("block", block, 5)
    cycles = check_count("cycles", cycles, 2)
    repeats = check_count("repeats", repeats, 1)
    n_blocks = 2 * cycles
    patterns = _settling_patterns(shape, block, n_blocks)
    declared = read_declared(bench)
    # a bad ``timing`` fails before anything is measured
    _resolve_timing(getattr(bench, "timing", None), timing)
    with progress_bar(progress, 2, "settling") as step:
        meas = measure_checked(bench, uniform_scenes([level] * repeats, shape), patterns)
        step("measured")
        tm = _resolve_timing(getattr(bench, "timing", None), timing)  # as used by this measurement
        check_saturation(meas.values, declared.clip_v, "measure_settling")
        y = meas.values.reshape(repeats, n_blocks, block)
        carry = _carry_over(y)
        common = _common_fields(carry, tm, declared)
        reasons = _unresolved_reasons(carry, tm, min_significance)
        if reasons:
            step("unresolved")
            return _unresolved_result(carry, common, reasons, tm, require_resolved)
        assert tm is not None
        lt, lt_u, res = _fit_tau(y, tm, carry.beta)
        step("fitted")
    return _resolved_result(carry, common, lt, lt_u, res, declared.bandwidth_hz,
                            tau_rel_tolerance)


def _settling_patterns(shape: tuple[int, int], block: int, n_blocks: int) -> PatternSet:
    """Alternating all-on / all-off masks, each held ``block`` patterns."""
    kinds = np.arange(n_blocks) % 2 == 0  # True: all on
    masks = np.where(kinds[:, None, None], np.ones((1, *shape)), np.zeros((1, *shape)))
    return held_patterns(masks, block, 0, "calibration-settling")


class _CarryOver(NamedTuple):
    """The model-free carry-over estimate of :func:`measure_settling`."""

    step_v: float  # mean size of the on/off step, volts
    noise_v: float  # rms scatter of the settled readings, volts
    beta: float  # mean carry-over of the first reading after each step
    beta_u: float  # its standard uncertainty
    n_transitions: int  # steps used


def _carry_over(y: np.ndarray) -> _CarryOver:
    """Carry-over from the first reading after each step of readings ``y`` (repeats,
    blocks, block), measured against the settled tails of the blocks.

    Raises
    ------
    CalibrationError
        The on/off step is not above the noise.
    """
    block = y.shape[2]
    tails = y[:, :, 3:].mean(axis=2)  # settled level of each block
    old, new = tails[:, :-1], tails[:, 1:]
    steps = old - new
    step_v = float(np.mean(np.abs(steps)))
    noise = float(np.std(y[:, :, 3:] - tails[:, :, None], ddof=1))
    if not step_v > 20 * noise / math.sqrt(block - 3):
        raise CalibrationError(
            f"measure_settling: on/off step {step_v:.3g} V is not above the noise "
            f"({noise:.2g} V rms); use a brighter scene or a higher gain"
        )
    c1 = ((y[:, 1:, 0] - new) / steps).ravel()
    n_tr = c1.size
    beta_hat = float(np.mean(c1))
    beta_u = float(np.std(c1, ddof=1) / math.sqrt(n_tr))
    return _CarryOver(step_v, noise, beta_hat, beta_u, int(n_tr))


def _tau_bounds(carry: _CarryOver, tm: BenchTiming | None
                ) -> tuple[float | None, float | None]:
    """3-sigma (tau upper, bandwidth lower) bounds from the carry-over (None, None when the
    timing is unknown)."""
    bound = max(carry.beta, 0.0) + 3.0 * carry.beta_u
    tau_upper: float | None = None
    bandwidth_lower: float | None = None
    if tm is not None:
        tau_upper = (tau_from_beta(min(bound, 1 - 1e-9), tm.settling_delay_s, tm.window_s)
                     if bound > 0 else 0.0)
        bandwidth_lower = 1 / (2 * math.pi * tau_upper) if tau_upper > 0 else 1e30
    return tau_upper, bandwidth_lower


def _common_fields(carry: _CarryOver, tm: BenchTiming | None,
                   declared: Declared) -> dict[str, Any]:
    """The :class:`SettlingResult` fields shared by resolved and unresolved results."""
    tau_upper, bandwidth_lower = _tau_bounds(carry, tm)
    return {
        "tau_upper_s": tau_upper,
        "bandwidth_lower_hz": bandwidth_lower,
        "declared_bandwidth_hz": declared.bandwidth_hz,
        "step_v": carry.step_v,
        "period_us": None if tm is None else tm.period_s * 1e6,
        "settling_delay_us": None if tm is None else tm.settling_delay_s * 1e6,
        "window_us": None if tm is None else tm.window_s * 1e6,
        "n_transitions": carry.n_transitions,
        "gain_db": declared.gain_db,
        "notes": unknown_notes(declared, clip=True, bandwidth=True),
    }


def _unresolved_reasons(carry: _CarryOver, tm: BenchTiming | None,
                        min_significance: float) -> list[str]:
    """Why tau cannot be measured (empty when it can)."""
    beta_hat, beta_u = carry.beta, carry.beta_u
    reasons = []
    if not (beta_hat > min_significance * beta_u and beta_hat > 0):
        delay = "" if tm is None else f" {format_si(tm.settling_delay_s, 's', 3)}"
        reasons.append(
            f"the carry-over {beta_hat:.3g} +- {beta_u:.2g} is below {min_significance:g} "
            f"sigma: the amplifier settles within the{delay} settling delay"
        )
    if tm is None:
        reasons.append(
            "the bench does not report its reading timing (bench.timing is None) that "
            "turns the carry-over into a time constant"
        )
    return reasons


def _unresolved_result(carry: _CarryOver, common: dict[str, Any], reasons: list[str],
                       tm: BenchTiming | None, require_resolved: bool) -> SettlingResult:
    """The bounds-only result, or (``require_resolved``) the CalibrationError saying why."""
    reason = "; ".join(reasons)
    if require_resolved:
        tau_upper, bandwidth_lower = common["tau_upper_s"], common["bandwidth_lower_hz"]
        bounds = "" if tau_upper is None else (
            f"; tau < {tau_upper:.3g} s (bandwidth > {bandwidth_lower:.3g} Hz)")
        fix = ("pass timing={'period_us': ..., 'settling_delay_us': ..., "
               "'window_us': ...}" if tm is None
               else "use a higher gain or a shorter settling delay")
        raise CalibrationError(
            f"measure_settling: not resolved because {reason}{bounds}; {fix}"
        )
    return SettlingResult(
        resolved=False, beta=carry.beta, beta_u=carry.beta_u, tau_s=None, tau_u_s=None,
        bandwidth_hz=None, bandwidth_u_hz=None, bandwidth_ratio=None,
        residual_rms_v=carry.noise_v, unresolved_reason=reason, **common,
    )


def _fit_tau(y: np.ndarray, tm: BenchTiming, beta_hat: float
             ) -> tuple[float, float, np.ndarray]:
    """Fit the first-order model (one free level per block and scene, one time constant) to
    the readings ``y`` (repeats, blocks, block): (log tau, its uncertainty, the weighted
    residuals at the optimum).

    Raises
    ------
    CalibrationError
        The fit fails or the data do not constrain tau.
    """
    repeats, n_blocks, block = y.shape
    t0, w, period = tm.settling_delay_s, tm.window_s, tm.period_s
    tau0 = tau_from_beta(min(beta_hat, 1 - 1e-9), t0, w)
    block_of = np.repeat(np.arange(n_blocks), block)
    data = y.reshape(repeats, -1).T  # (m, B)
    weight = np.ones(data.shape[0])
    weight[0] = 0.0  # the state before the first pattern is unknown on a real bench

    def projected(log_tau: float) -> np.ndarray:
        tau = math.exp(log_tau)
        d = _settle_design(block_of, n_blocks, math.exp(-period / tau),
                           float(settling_beta(tau, t0, w)))
        dw = d * weight[:, None]
        coef, *_ = np.linalg.lstsq(dw, data * weight[:, None], rcond=None)
        return ((data - d @ coef) * weight[:, None]).ravel()

    def cost(log_tau: float) -> float:
        return float(np.sum(projected(log_tau) ** 2))

    lt0 = math.log(tau0)
    opt = optimize.minimize_scalar(cost, bounds=(lt0 - 1.5, lt0 + 1.5), method="bounded",
                                   options={"xatol": 1e-7})
    if not opt.success:
        raise CalibrationError(f"measure_settling: fit failed ({opt.message})")
    lt = float(opt.x)
    h = 1e-4
    jac = (projected(lt + h) - projected(lt - h)) / (2 * h)
    res = projected(lt)
    dof = int(weight.sum()) * repeats - n_blocks * repeats - 1
    s2 = float(np.sum(res**2)) / max(dof, 1)
    jj = float(jac @ jac)
    if not jj > 0:
        raise CalibrationError("measure_settling: the data do not constrain tau")
    return lt, math.sqrt(s2 / jj), res


def _resolved_result(carry: _CarryOver, common: dict[str, Any], lt: float, lt_u: float,
                     res: np.ndarray, declared_bw: float | None,
                     tau_rel_tolerance: float) -> SettlingResult:
    """The result of a fitted tau (CalibrationError when its uncertainty is above
    ``tau_rel_tolerance``)."""
    tau = math.exp(lt)
    tau_u = tau * lt_u
    bw = 1 / (2 * math.pi * tau)
    bw_u = bw * lt_u
    result = SettlingResult(
        resolved=True, beta=carry.beta, beta_u=carry.beta_u, tau_s=tau, tau_u_s=tau_u,
        bandwidth_hz=bw, bandwidth_u_hz=bw_u,
        bandwidth_ratio=bw / declared_bw if declared_bw else None,
        residual_rms_v=float(math.sqrt(np.mean(res[res != 0] ** 2))) if np.any(res) else 0.0,
        **common,
    )
    if lt_u > tau_rel_tolerance:
        raise CalibrationError(
            f"measure_settling: tau {tau:.3g} s known to {100 * lt_u:.3g} % only (tolerance "
            f"{100 * tau_rel_tolerance:g} %); use more cycles or repeats"
        )
    return result
