"""Operating point routine (:func:`measure_operating_point`): where the brightest readings
of typical scenes sit in the digitizer's range, measured on the bench.

The pure number functions it uses (the 30-80 % band, the gain and range recommendation)
are in the separate module :mod:`lsi_hw.operating_point`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsi_hw.calibration.common import (
    NOTE_NO_CLIP,
    SATURATION_MARGIN,
    CalibrationResult,
    Declared,
    bayer_mask,
    check_count,
    check_mask_shape,
    format_si,
    held_patterns,
    held_readings,
    measure_checked,
    progress_bar,
    read_declared,
    uniform_scenes,
)
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench, BenchTiming
from lsi_hw.operating_point import assess_fraction, recommend_operating_point
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement

#: Uniform drive levels measured by :func:`measure_operating_point` (0 = the dark level).
OPERATING_LADDER: tuple[int, ...] = (0, 64, 96, 128, 160, 192, 224, 255)
#: Open fraction of the sparse probe mask: an all-on reading that clips is extrapolated
#: from it (``off + (probe - off) / fraction``).
PROBE_FRACTION: float = 1.0 / 16.0
#: :func:`run_all` scales its bright stimuli to at most this fraction of the clipping level.
STIMULUS_FRACTION: float = 0.7


@dataclass(frozen=True)
class OperatingPointResult(CalibrationResult):
    """Where the brightest readings of typical scenes sit in the digitizer's range, and the
    gain and range recommended for them (:mod:`lsi_hw.operating_point`).

    Attributes
    ----------
    mask_shape:
        Mask shape (H, W), pixels.
    scene_names:
        The typical scenes measured (the built-in test scenes by default).
    dark_v:
        Black scene, every mirror off, volts.
    peak_v:
        Brightest all-on reading of the typical scenes (the largest any mask gives on
        them), volts.
    peak_scene:
        Name of the scene that gave it.
    peak_estimated:
        True when that all-on reading clipped and ``peak_v`` was extrapolated from the
        sparse probe mask (:data:`PROBE_FRACTION` of the mirrors on).
    levels, level_v, level_estimated:
        Uniform full-screen drive levels, their all-on readings (volts, dark included) and
        whether each was extrapolated from the probe because it clipped.
    range_v, clip_v, gain_db:
        Declared digitizer range, clipping level (smallest of amplifier saturation and
        range) in volts, and gain step in dB (None when the bench does not say).
    fraction:
        ``peak_v / range_v``: fraction of full scale used by the brightest reading.
    status, message:
        ``ok`` (30-80 %), ``wasted`` (below: the ADC step dominates), ``high`` (above 80 %),
        ``saturating``, or ``unknown`` (no declared range), and the same in words.
    recommended_gain_db, recommended_range_v, recommended_fraction:
        The recommended gain step (dB), range (V) and the fraction of full scale they give.
    settling_residual:
        ``exp(-T / tau)`` of the recommended gain after one pattern period ``T``.
    recommendation:
        Why that setting (None when gain or range are unknown).
    notes:
        What the bench did not know and so was left out.
    """

    mask_shape: tuple[int, int]
    scene_names: tuple[str, ...]
    dark_v: float
    peak_v: float
    peak_scene: str
    peak_estimated: bool
    levels: tuple[int, ...]
    level_v: tuple[float, ...]
    level_estimated: tuple[bool, ...]
    range_v: float | None
    clip_v: float | None
    gain_db: float | None
    fraction: float | None
    status: str
    message: str
    recommended_gain_db: int | None
    recommended_range_v: float | None
    recommended_fraction: float | None
    settling_residual: float | None
    recommendation: str | None
    notes: tuple[str, ...] = ()

    @property
    def white_v(self) -> float:
        """All-on reading of the brightest uniform level (full-screen white), volts."""
        return self.level_v[int(np.argmax(self.levels))]

    def summary(self) -> str:
        """The brightest reading as a fraction of the range, and the recommendation."""
        est = ", extrapolated" if self.peak_estimated else ""
        text = f"brightest typical reading {format_si(self.peak_v, 'V')} ({self.peak_scene}{est})"
        if self.fraction is not None and self.range_v is not None:
            text += f" = {self.fraction:.0%} of +-{self.range_v:g} V ({self.status})"
        if self.recommended_gain_db is not None and self.recommended_range_v is not None:
            text += (f"; recommended {self.recommended_gain_db} dB, "
                     f"+-{self.recommended_range_v:g} V -> {self.recommended_fraction:.0%}, "
                     f"settling residual {self.settling_residual:.2g}")
        return text

    def summary_lines(self) -> list[str]:
        """:meth:`summary`, a warning when the brightest reading is outside 30-80 %, the
        reason for a recommendation that differs from the current setting, the notes."""
        lines = [self.summary()]
        if self.status not in ("ok", "unknown"):
            lines.append(f"warning: {self.message}")
        changed = (self.recommended_gain_db is not None
                   and (self.recommended_gain_db != self.gain_db
                        or self.recommended_range_v != self.range_v))
        if changed and self.recommendation:
            lines.append(f"recommendation: {self.recommendation}")
        return lines + [f"note: {n}" for n in self.notes]

    def stimulus_options(self, fraction: float = STIMULUS_FRACTION) -> dict[str, dict[str, Any]]:
        """Options of the bright calibration routines that keep their readings at or below
        ``fraction`` of the clipping level (what :func:`run_all` passes them).

        * ``dark`` (``white_level``) and ``settling`` (``level``): the brightest measured
          uniform level whose all-on reading stays below that;
        * ``gamma`` (``open_fraction``) and ``linearity`` (``fractions``): the largest open
          fraction (multiple of 1/64) for which full-screen white stays below it.

        Empty when nothing clips (every routine keeps its defaults) or the clipping level
        is unknown.
        """
        if self.clip_v is None:
            return {}
        ceiling = fraction * self.clip_v
        if self.white_v <= ceiling:
            return {}
        fitting = [lv for lv, v in zip(self.levels, self.level_v, strict=True)
                   if lv > 0 and v <= ceiling]
        positive = [lv for lv in self.levels if lv > 0]
        level = max(fitting) if fitting else min(positive or [255])
        signal = self.white_v - self.dark_v
        open_f = max(1, math.floor(64 * (ceiling - self.dark_v) / signal)) / 64
        out: dict[str, dict[str, Any]] = {
            "dark": {"white_level": int(level)},
            "settling": {"level": int(level)},
            "gamma": {"open_fraction": open_f},
        }
        steps = sorted({round(f * open_f * 64) / 64 for f in np.linspace(0, 1, 9)})
        if len(steps) >= 3:
            out["linearity"] = {"fractions": tuple(steps)}
        return out


def measure_operating_point(
    bench: Bench,
    *,
    size: int | tuple[int, int] = 32,
    scenes: np.ndarray | None = None,
    scene_names: Sequence[str] | None = None,
    ranges_v: Sequence[float] | None = None,
    repeats: int = 8,
    discard: int = 2,
    progress: bool = False,
) -> OperatingPointResult:
    """Where the brightest readings of typical scenes sit in the digitizer's range, and the
    gain and range that put them at 30-80 % of full scale.

    The typical scenes (default: the built-in test scenes at the mask size) and a ladder of
    uniform full-screen levels (:data:`OPERATING_LADDER`, 0 = black) are measured with the
    all-off mask, a sparse probe mask (:data:`PROBE_FRACTION` of the mirrors, evenly
    dithered) and the all-on mask, each held ``discard + repeats`` patterns.  The all-on
    reading is the largest any mask gives on a scene, so the brightest all-on reading of
    the typical scenes is the reading to place in the range; where it clips it is
    extrapolated from the probe (``off + (probe - off) / fraction``).  The result says what
    fraction of the range it uses (:func:`lsi_hw.operating_point.assess_fraction`) and
    recommends a gain and range (:func:`lsi_hw.operating_point.recommend_operating_point`,
    from the declared gain, range, amplifier saturation and pattern period).  The ladder
    tells :func:`run_all` how to scale its bright stimuli
    (:meth:`OperatingPointResult.stimulus_options`).

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask shape (H, W) or side, pixels (the built-in scenes need a square of >= 8).
    scenes, scene_names:
        Typical scenes (B, H, W[, 3]) uint8 of the mask shape, and their names (default the
        built-in test scenes; none when the shape does not allow them).
    ranges_v:
        Input ranges the digitizer offers, volts (None: the NI X Series ranges).
    repeats, discard:
        Readings kept / dropped per mask hold.
    progress:
        Show a progress bar.

    Raises
    ------
    ConfigError
        Bad arguments.
    CalibrationError
        The bench returned readings of the wrong shape or non-finite ones.
    """
    shape = check_mask_shape(size)
    repeats = check_count("repeats", repeats, 1)
    discard = check_count("discard", discard, 0)
    notes: list[str] = []
    typical, names = _typical_scenes(shape, scenes, scene_names, notes)
    ladder = uniform_scenes(OPERATING_LADDER, shape)
    if typical.ndim == 4:
        ladder = np.repeat(ladder[..., None], 3, axis=3)
    probe = bayer_mask(shape, PROBE_FRACTION)
    f_probe = float(probe.mean())
    masks = np.stack([np.zeros(shape), probe, np.ones(shape)])
    patterns = held_patterns(masks, repeats, discard, "calibration-operating-point")
    declared = read_declared(bench)
    meas = _measure_expecting_clipping(bench, np.concatenate([ladder, typical]), patterns,
                                       progress)
    clip = declared.clip_v
    off, all_on, clipped = _all_on_readings(meas.values, repeats, discard, clip, f_probe)
    n_ladder = len(OPERATING_LADDER)
    dark = float(off[0])
    peak, peak_name, peak_est = _brightest(all_on, clipped, names, len(typical))
    if clip is None:
        notes.append(NOTE_NO_CLIP)
    fraction, status, message = _assess(peak, peak_est, declared, notes)
    rec = _recommendation(bench, peak, dark, declared, ranges_v, notes)
    return OperatingPointResult(
        mask_shape=shape,
        scene_names=tuple(str(n) for n in names),
        dark_v=dark,
        peak_v=peak,
        peak_scene=peak_name,
        peak_estimated=peak_est,
        levels=OPERATING_LADDER,
        level_v=tuple(float(v) for v in all_on[:n_ladder]),
        level_estimated=tuple(bool(c) for c in clipped[:n_ladder]),
        range_v=declared.range_v,
        clip_v=clip,
        gain_db=declared.gain_db,
        fraction=fraction,
        status=str(status),
        message=str(message),
        recommended_gain_db=rec[0],
        recommended_range_v=rec[1],
        recommended_fraction=rec[2],
        settling_residual=rec[3],
        recommendation=rec[4],
        notes=tuple(notes),
    )


def _typical_scenes(shape: tuple[int, int], scenes: np.ndarray | None,
                    scene_names: Sequence[str] | None, notes: list[str]
                    ) -> tuple[np.ndarray, list[Any]]:
    """The typical scenes and their names: the given ones (checked) or the built-in test
    scenes (none, with a note, when the mask shape does not allow them).

    Raises
    ------
    ConfigError
        Scenes of the wrong type or shape, or names that do not match them.
    """
    if scenes is None:
        if shape[0] == shape[1] and shape[0] >= 8:
            from lsi_hw.testscenes import builtin_scenes

            typical, names = builtin_scenes(shape[0])
        else:
            typical, names = np.zeros((0, *shape), dtype=np.uint8), []
            notes.append(f"no built-in scenes for a {shape} mask (they need a square of >= 8 "
                         "px): the brightest reading is that of the uniform levels")
        return typical, names
    typical = np.asarray(scenes)
    if typical.dtype != np.uint8 or typical.ndim not in (3, 4) \
            or typical.shape[1:3] != shape or len(typical) == 0:
        raise ConfigError(f"scenes must be uint8 (B, {shape[0]}, {shape[1]}[, 3]) with "
                          f"B >= 1; got {typical.dtype} {typical.shape}")
    names = list(scene_names) if scene_names is not None else [
        f"scene {k}" for k in range(len(typical))]
    if len(names) != len(typical):
        raise ConfigError(f"{len(names)} scene names for {len(typical)} scenes")
    return typical, names


def _measure_expecting_clipping(bench: Bench, scenes: np.ndarray, patterns: PatternSet,
                                progress: bool) -> Measurement:
    """:func:`measure_checked`, passing on every warning but the SaturationWarning (the
    bright ladder is expected to clip; :func:`measure_operating_point` handles it)."""
    with progress_bar(progress, 1, "operating point") as step, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meas = measure_checked(bench, scenes, patterns)
        step("measured")
    for w in caught:  # clipping of the bright ladder is expected and handled below
        if w.category.__name__ != "SaturationWarning":
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return meas


def _all_on_readings(values: np.ndarray, repeats: int, discard: int, clip: float | None,
                     f_probe: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all-off, all-on, clipped) per scene from the held readings of the three masks; an
    all-on reading that clips is extrapolated from the sparse probe."""
    held = held_readings(values, 3, repeats, discard).mean(axis=2)  # (B, 3)
    off, sparse, on = held[:, 0], held[:, 1], held[:, 2]
    clipped = (np.zeros(len(on), dtype=bool) if clip is None
               else np.abs(on) >= SATURATION_MARGIN * clip)
    all_on = np.where(clipped, off + (sparse - off) / f_probe, on)
    return off, all_on, clipped


def _brightest(all_on: np.ndarray, clipped: np.ndarray, names: Sequence[Any],
               n_typical: int) -> tuple[float, str, bool]:
    """(reading, name, extrapolated) of the brightest all-on reading: of the typical scenes
    (after the ladder in ``all_on``), or of the uniform levels when there are none."""
    n_ladder = len(OPERATING_LADDER)
    if n_typical:
        k = int(np.argmax(all_on[n_ladder:]))
        return (float(all_on[n_ladder + k]), str(names[k]), bool(clipped[n_ladder + k]))
    k = int(np.argmax(all_on[:n_ladder]))
    return (float(all_on[k]), f"uniform level {OPERATING_LADDER[k]}", bool(clipped[k]))


def _assess(peak: float, peak_est: bool, declared: Declared, notes: list[str]
            ) -> tuple[float | None, str, str]:
    """(fraction of full scale, status, message) of the brightest reading; notes an
    unknown range."""
    rng_v = declared.range_v
    if rng_v is None:
        notes.append("digitizer range unknown (bench.digitizer_range_v is None): no fraction "
                      "of full scale and no recommendation")
        return None, "unknown", "digitizer range unknown (bench.digitizer_range_v is None)"
    fraction, status, message = assess_fraction(peak, rng_v, declared.saturation_v)
    if peak_est and status != "saturating":
        status, message = "saturating", (f"saturating: typical scenes clip with every "
                                         f"mirror on ({message})")
    return fraction, status, message


def _recommendation(bench: Bench, peak: float, dark: float, declared: Declared,
                    ranges_v: Sequence[float] | None, notes: list[str]) -> tuple[Any, ...]:
    """(gain dB, range V, expected fraction, settling residual, reason) recommended for the
    brightest reading, all None (with a note saying why) when there is none."""
    rng_v, gain = declared.range_v, declared.gain_db
    if gain is None:
        notes.append("gain step unknown (bench.gain_db is None): no recommendation")
        return (None,) * 5
    if rng_v is None:
        return (None,) * 5
    sat = declared.saturation_v
    if sat is None:
        notes.append("amplifier saturation taken as the PDA100A2's 10 V (Hi-Z): the bench "
                     "does not report it (bench.saturation_v is None)")
        sat = 10.0
    timing = getattr(bench, "timing", None)
    period = timing.period_s if isinstance(timing, BenchTiming) else 235e-6
    try:
        point = recommend_operating_point(peak, gain, ranges_v, dark_v=dark,
                                          saturation_v=sat, period_s=period)
    except ConfigError as exc:  # e.g. a gain that is not a PDA100A2 step
        notes.append(f"no recommendation: {exc}")
        return (None,) * 5
    return (point.gain_db, point.range_v, point.expected_fraction, point.settling_residual,
            point.reason)
