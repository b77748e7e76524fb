"""Operating point of the detector chain: which PDA100A2 gain and digitizer range a scene set
needs so that its brightest reading uses 30-80 % of the digitizer's full scale.

Why it matters: a 16-bit digitizer on +-10 V has a 305 uV step.  A reading of 20 mV then
spans ~65 steps, and the quantization (step / sqrt(12) = 88 uV rms), not the light, sets
the noise.  A lab sets the amplifier gain and the digitizer input range once per setup so
that the brightest reading of its typical scenes lands at 30-80 % of full scale: below
30 % the range is wasted (the ADC step dominates), above 80 % a slightly brighter scene,
flicker or noise clips.  The brightest reading any mask can give is the all-on (open) mask
on the brightest scene (readings only grow with the open mirrors), so that is the reading
to place; a Hadamard set with the all-ones row contains it, random 0.5 masks peak at about
half of it.

Everything here is a pure function of numbers (no bench, no I/O):

* :func:`settling_residual`: ``exp(-T / tau)``, what is left of a step after one pattern
  period ``T`` for the gain step's bandwidth (``tau = 1 / (2 pi f_3dB)``);
* :func:`assess_fraction`: ``ok`` / ``wasted`` / ``high`` / ``saturating`` and a message,
  for a brightest reading on the current range;
* :func:`recommend_operating_point`: from the brightest reading at the current gain, the
  gain and range that put it highest inside the band (every gain step whose settling
  residual within one pattern is at most one 16-bit step, ``2**-16``, is a candidate).

The gains, bandwidths and saturation voltages come from :data:`lsi_hw.specs.PDA100A2_GAINS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lsi_hw.errors import ConfigError
from lsi_hw.specs import DLP4500_PATTERN_PERIOD_US, PDA100A2_GAINS, GainStep

__all__ = [
    "FRACTION_HIGH",
    "FRACTION_LOW",
    "MAX_SETTLING_RESIDUAL",
    "SATURATION_FRACTION",
    "STANDARD_RANGES_V",
    "OperatingPoint",
    "assess_fraction",
    "finite_number",
    "predict_peak_v",
    "recommend_operating_point",
    "settling_residual",
]

#: Lower edge of the wanted band: below it the digitizer's range is wasted, fraction of
#: full scale.
FRACTION_LOW: float = 0.30
#: Upper edge of the wanted band: above it there is little headroom, fraction of full scale.
FRACTION_HIGH: float = 0.80
#: A reading at this fraction of the clipping level counts as saturated (as the PDA100A2
#: driver and the calibration routines count it).
SATURATION_FRACTION: float = 0.98
#: Largest acceptable ``exp(-T / tau)`` after one pattern period: one step of a 16-bit ADC
#: relative to full scale.  Every PDA100A2 step up to 60 dB (11 kHz, 9e-8 after 235 us)
#: passes; 70 dB (3 kHz, tau = 53 us, 1.2 %) does not.
MAX_SETTLING_RESIDUAL: float = 2.0**-16
#: Bipolar input ranges of an NI X Series card (e.g. USB-6361), volts: the ranges
#: :func:`recommend_operating_point` chooses from when the digitizer does not list its own
#: (same values as ``lsi_hw.drivers.digitizers.fake.X_SERIES_RANGES_V``).
STANDARD_RANGES_V: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def finite_number(name: str, value: Any, unit: str, *, positive: bool = False,
                  alternative: str | None = None) -> float:
    """``value`` as a float when it is a finite number (and > 0 if ``positive``).

    Raises
    ------
    ConfigError
        ``value`` is a bool, not a number, not finite or (``positive``) <= 0: ``<name>=<value>
        must be a finite [and > 0] number (<unit>)``, then `` or <alternative>`` when given
        (the calibration reads declared bench values with ``alternative="None when the
        bench does not know it"``).
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (positive and number <= 0):
        need = "finite and > 0" if positive else "finite"
        other = f" or {alternative}" if alternative else ""
        raise ConfigError(f"{name}={value!r} must be a {need} number ({unit}){other}")
    return number


def settling_residual(bandwidth_hz: float,
                      period_s: float = DLP4500_PATTERN_PERIOD_US * 1e-6) -> float:
    """Fraction of a step still present one pattern period after it (first-order amplifier).

    Parameters
    ----------
    bandwidth_hz:
        -3 dB bandwidth of the gain step, Hz; ``tau = 1 / (2 pi bandwidth_hz)``.
    period_s:
        Pattern period, seconds (default the DLP4500's 235 us binary pattern).

    Returns
    -------
    float
        ``exp(-period_s / tau)``, dimensionless (e.g. 6.6e-22 at 50 dB, 33 kHz).

    Raises
    ------
    ConfigError
        A value that is not finite and > 0.
    """
    bw = finite_number("bandwidth_hz", bandwidth_hz, "Hz", positive=True)
    period = finite_number("period_s", period_s, "s", positive=True)
    return math.exp(-period * 2.0 * math.pi * bw)


def assess_fraction(peak_v: float, range_v: float, saturation_v: float | None = None,
                    *, low: float = FRACTION_LOW, high: float = FRACTION_HIGH
                    ) -> tuple[float, str, str]:
    """Where the brightest reading sits in the digitizer's range.

    Parameters
    ----------
    peak_v:
        Brightest reading, volts (dark level included).
    range_v:
        Digitizer input range, volts (it reads -range_v..+range_v).
    saturation_v:
        Amplifier output saturation, volts (10 V Hi-Z, 5 V into 50 ohm); None = only the
        digitizer range clips.
    low, high:
        The wanted band, fractions of full scale (default 0.30 and 0.80).

    Returns
    -------
    (fraction, status, message)
        ``fraction = peak_v / range_v``; ``status`` is ``saturating`` (at or above
        :data:`SATURATION_FRACTION` of the clipping level ``min(range_v, saturation_v)``),
        ``high`` (above ``high``), ``wasted`` (below ``low``) or ``ok``; ``message`` says
        it in words, with what to do.
    """
    peak = finite_number("peak_v", peak_v, "V")
    rng = finite_number("range_v", range_v, "V", positive=True)
    clip = rng if saturation_v is None else min(
        rng, finite_number("saturation_v", saturation_v, "V", positive=True))
    fraction = abs(peak) / rng
    where = f"{abs(peak):.4g} V = {fraction:.0%} of the +-{rng:g} V range"
    if abs(peak) >= SATURATION_FRACTION * clip:
        return fraction, "saturating", (
            f"saturating: the brightest reading ({where}) reaches the clipping level "
            f"{clip:g} V; lower the gain, take a larger range or dim the scene")
    if fraction > high:
        return fraction, "high", (
            f"above {high:.0%} of full scale ({where}): little headroom, a brighter scene "
            "or flicker will clip; lower the gain or take the next larger range")
    if fraction < low:
        return fraction, "wasted", (
            f"range wasted: ADC step dominates (the brightest reading is {where}, below "
            f"{low:.0%}); raise the gain or take a smaller range")
    return fraction, "ok", f"{where}, inside the {low:.0%}-{high:.0%} band"


def predict_peak_v(peak_v: float, gain_db: float, new_gain_db: float, *, dark_v: float = 0.0,
                   gains: Mapping[int, GainStep] = PDA100A2_GAINS) -> float:
    """The brightest reading at another gain step: the light part scales with the
    transimpedance, the dark level ``dark_v`` (amplifier offset) stays.

    The dark current's part of ``dark_v`` (1 nA x gain) also scales with the gain; it is
    below a millivolt up to 60 dB and is kept fixed here.

    Parameters
    ----------
    peak_v, dark_v:
        Brightest and dark readings at ``gain_db``, volts.
    gain_db, new_gain_db:
        Current and new gain steps, dB (keys of ``gains``).
    gains:
        Gain table (default the PDA100A2's).

    Returns
    -------
    float
        ``dark_v + (peak_v - dark_v) * G(new) / G(current)``, volts.
    """
    now, new = _step(gains, gain_db), _step(gains, new_gain_db)
    peak = finite_number("peak_v", peak_v, "V")
    dark = finite_number("dark_v", dark_v, "V")
    return dark + (peak - dark) * new.hi_z_v_per_a / now.hi_z_v_per_a


def _step(gains: Mapping[int, GainStep], gain_db: float) -> GainStep:
    try:
        key = int(gain_db)
    except (TypeError, ValueError, OverflowError):
        key = None
    if key is None or key != gain_db or key not in gains:
        allowed = ", ".join(str(g) for g in sorted(gains))
        raise ConfigError(f"gain_db={gain_db!r} is not a gain step; allowed: {allowed} dB")
    return gains[key]


@dataclass(frozen=True)
class OperatingPoint:
    """A recommended gain and digitizer range, and what they give.

    Attributes
    ----------
    gain_db:
        PDA100A2 gain step, dB.
    range_v:
        Digitizer input range, volts (-range_v..+range_v).
    expected_peak_v:
        Brightest reading expected at this gain, volts.
    expected_fraction:
        ``expected_peak_v / range_v``, fraction of full scale.
    settling_residual:
        ``exp(-T / tau)`` of this gain after one pattern period ``T`` (dimensionless).
    bandwidth_hz:
        -3 dB bandwidth of this gain, Hz.
    status:
        ``ok`` (inside the band), ``wasted`` (even the best setting stays below it: too
        little light), ``high`` / ``saturating`` (even the least sensitive setting is
        above it: too much light), or ``no-signal``.
    reason:
        Why this setting, in words.
    """

    gain_db: int
    range_v: float
    expected_peak_v: float
    expected_fraction: float
    settling_residual: float
    bandwidth_hz: float
    status: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """One line: the setting, the fraction of full scale and the settling residual."""
        return (f"{self.gain_db} dB, +-{self.range_v:g} V -> {self.expected_fraction:.0%} of "
                f"full scale; settling residual after one pattern {self.settling_residual:.2g}")


def recommend_operating_point(
    peak_v: float,
    gain_db: float,
    ranges_v: Sequence[float] | None = None,
    *,
    gains: Mapping[int, GainStep] = PDA100A2_GAINS,
    dark_v: float = 0.0,
    saturation_v: float = 10.0,
    period_s: float = DLP4500_PATTERN_PERIOD_US * 1e-6,
    max_settling_residual: float = MAX_SETTLING_RESIDUAL,
    low: float = FRACTION_LOW,
    high: float = FRACTION_HIGH,
) -> OperatingPoint:
    """The gain and range that put the brightest reading highest inside the wanted band.

    Candidates are every gain step whose :func:`settling_residual` after one pattern is at
    most ``max_settling_residual`` (so each reading is free of the previous pattern), on
    every range.  For each the brightest reading is predicted (:func:`predict_peak_v`);
    it must stay at or below ``high`` of the clipping level ``min(range, saturation_v)``
    and reach ``low`` of the range.  Of those the one with the largest fraction of full
    scale wins (the finest relative ADC step), the lower gain on a tie (more bandwidth).
    When none fits, the best compromise is returned with the status and the reason
    (too little light: the most sensitive non-clipping setting; too much light: the
    least sensitive one).

    Parameters
    ----------
    peak_v:
        Brightest reading of the typical scenes at the current gain, volts (e.g. the
        all-on mask on the brightest scene; dark level included).
    gain_db:
        Current gain step, dB.
    ranges_v:
        Input ranges the digitizer offers, volts (None: :data:`STANDARD_RANGES_V`).
    gains:
        Gain table (default the PDA100A2's: V/A and bandwidth per step).
    dark_v:
        Dark reading (no light) at the current gain, volts; it does not scale with the gain.
    saturation_v:
        Amplifier output saturation, volts (10 V Hi-Z, 5 V into 50 ohm).
    period_s:
        Pattern period, seconds (default 235 us, the DLP4500's binary pattern).
    max_settling_residual:
        Largest acceptable ``exp(-period_s / tau)`` (default ``2**-16``).
    low, high:
        The wanted band, fractions of full scale (default 0.30-0.80).

    Returns
    -------
    OperatingPoint

    Raises
    ------
    ConfigError
        Non-finite values, an unknown gain step, no range, a band that is not
        ``0 < low < high < 1``.
    """
    peak = finite_number("peak_v", peak_v, "V")
    dark = finite_number("dark_v", dark_v, "V")
    sat = finite_number("saturation_v", saturation_v, "V", positive=True)
    limit = finite_number("max_settling_residual", max_settling_residual, "", positive=True)
    if not 0 < low < high < SATURATION_FRACTION:
        raise ConfigError(f"band low={low!r}, high={high!r}: need 0 < low < high < "
                          f"{SATURATION_FRACTION}")
    ranges = sorted({finite_number("ranges_v", r, "V", positive=True)
                     for r in (STANDARD_RANGES_V if ranges_v is None else ranges_v)})
    if not ranges:
        raise ConfigError("ranges_v is empty: give the input ranges the digitizer offers")
    current = _step(gains, gain_db)
    residuals = {g: settling_residual(s.bandwidth_hz, period_s) for g, s in gains.items()}
    settled = sorted(g for g, r in residuals.items() if r <= limit)
    if not settled:  # even the fastest gain leaks into the next pattern: take it anyway
        settled = [min(gains, key=lambda g: residuals[g])]
    period_us = period_s * 1e6

    def point(g: int, rng: float, status: str, reason: str) -> OperatingPoint:
        v = predict_peak_v(peak, current.gain_db, g, dark_v=dark, gains=gains)
        return OperatingPoint(gain_db=int(g), range_v=float(rng), expected_peak_v=v,
                              expected_fraction=abs(v) / rng,
                              settling_residual=residuals[g],
                              bandwidth_hz=float(gains[g].bandwidth_hz), status=status,
                              reason=reason)

    if not peak - dark > 0:
        rng = min((r for r in ranges if r >= abs(peak) / high), default=ranges[-1])
        return point(current.gain_db, rng, "no-signal",
                     f"no light above the dark level ({peak:.4g} V vs dark {dark:.4g} V): "
                     "check the light path before choosing a gain")
    cands = [point(g, r, "ok", "") for g in settled for r in ranges]
    headroom = [c for c in cands
                if abs(c.expected_peak_v) <= high * min(c.range_v, sat)]
    inside = [c for c in headroom if c.expected_fraction >= low]
    slow = [g for g in gains if g not in settled]
    why_not_slow = ""
    if slow:
        listed = ", ".join(f"{g} dB" for g in sorted(slow))
        verb = "does" if len(slow) == 1 else "do"
        why_not_slow = (f"; {listed} excluded: {'it' if len(slow) == 1 else 'they'} {verb} "
                        f"not settle within one {period_us:.0f} us pattern")
    if inside:
        best = max(inside, key=lambda c: (round(c.expected_fraction, 9), -c.gain_db,
                                          -c.range_v))
        reason = (f"highest fraction of full scale inside {low:.0%}-{high:.0%} "
                  f"({best.expected_fraction:.0%}); bandwidth {best.bandwidth_hz:.3g} Hz, "
                  f"exp(-{period_us:.0f} us / tau) = {best.settling_residual:.2g}"
                  + why_not_slow)
        return OperatingPoint(**{**best.to_dict(), "reason": reason})
    if headroom:  # every setting that does not clip stays below the band: too little light
        best = max(headroom, key=lambda c: (round(c.expected_fraction, 9), -c.gain_db))
        reason = (f"too little light: the most sensitive setting that settles within one "
                  f"{period_us:.0f} us pattern reaches only {best.expected_fraction:.0%} of "
                  f"full scale (the ADC step dominates); brighten the scene (monitor "
                  f"brightness), open the aperture, or use a digitizer with a smaller range "
                  f"or more bits" + why_not_slow)
        return OperatingPoint(**{**best.to_dict(), "status": "wasted", "reason": reason})
    best = min(cands, key=lambda c: (abs(c.expected_peak_v) / min(c.range_v, sat), c.gain_db))
    clip = min(best.range_v, sat)
    status = "saturating" if abs(best.expected_peak_v) >= SATURATION_FRACTION * clip else "high"
    reason = (f"too much light: even the least sensitive setting reaches "
              f"{abs(best.expected_peak_v) / clip:.0%} of its clipping level {clip:g} V; dim "
              "the scene (monitor brightness) or add a neutral-density filter")
    return OperatingPoint(**{**best.to_dict(), "status": status, "reason": reason})
