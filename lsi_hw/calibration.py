"""Bench calibration: dark level, linearity and gain, monitor gamma, DMD-to-scene
registration, amplifier settling, and the versioned calibration file that holds them.

Every routine talks to the bench only through the :class:`~lsi_hw.interfaces.Bench` API
(``measure(scenes, patterns)`` and the typed, SI-unit properties ``timing``,
``digitizer_lsb_v``, ``digitizer_range_v``, ``saturation_v``, ``gain_db``,
``gain_v_per_a`` and ``bandwidth_hz``), so the same code calibrates the simulator, the
``fake-hw`` twin and the real DMD + photodiode.  The settings snapshot is recorded, never
searched.  A property the bench does not know (None) is never replaced by a guess or a
silent 0: the result says what was left out (``notes``, ``unresolved_reason``).  Each
routine returns a frozen result dataclass holding the estimate, its standard (1 sigma)
uncertainty and a residual / quality figure, and raises
:class:`~lsi_hw.errors.CalibrationError` when the fit fails or misses its stated
tolerance.

Measurement model used throughout (see DESIGN.md, "The physical forward model")
------------------------------------------------------------------------------
For a scene of irradiance ``E`` on the mask grid and a binary mask ``m_k`` a reading is
``y_k = d + c [leak * sum(E) + (1 - leak) * (m_k . E)]`` in volts, ``d`` the dark level
(amplifier offset + dark current x gain), ``c`` the responsivity x transimpedance x
on-state reflectance, ``leak`` the off-state leakage.  The amplifier is a first-order
low-pass of time constant ``tau``: the output at the start of pattern ``k`` is
``s_k = a s_{k-1} + (1 - a) x_{k-1}`` with ``a = exp(-T / tau)`` (``T`` the pattern
period) and the reading averages ``x_k + (s_k - x_k) exp(-t / tau)`` over the window
``[t0, t0 + w]``, i.e. ``y_k = x_k + beta (s_k - x_k)`` with
``beta = tau / w (exp(-t0 / tau) - exp(-(t0 + w) / tau))``.  Routines that hold a mask for
several patterns discard the first readings of each hold (``discard``) so that settling
does not bias them.

Operating point: a bench is set up (gain, digitizer range) so that the brightest reading
of its typical scenes uses 30-80 % of full scale (:mod:`lsi_hw.operating_point`);
:func:`measure_operating_point` measures where it sits and recommends a setting, and
:func:`run_all` scales its bright stimuli (a full-screen white with every mirror on is
about twice the brightest typical reading) so that no calibration reading clips.

Digitizer quantization: when the readings' noise is below one ADC step (LSB) the mean
of repeated readings is biased by up to LSB/2 and averaging does not help.  Levels are
therefore quoted with a type-B term ``b / sqrt(3)`` added in quadrature, where ``b`` is
the bound on that bias for the observed noise (:func:`quantization_bias_bound`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from lsi_hw import __version__
from lsi_hw.atomic import atomic_write
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench, BenchTiming
from lsi_hw.limits import parse_json_strict
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement, jsonable

__all__ = [
    "CALIBRATION_SCHEMA_VERSION",
    "MAX_CALIBRATION_FILE_BYTES",
    "ROUTINES",
    "CalibrationFile",
    "CalibrationFileError",
    "DarkResult",
    "GainComparison",
    "GammaResult",
    "LinearityResult",
    "OperatingPointResult",
    "RegistrationResult",
    "SettlingResult",
    "bayer_mask",
    "check_linearity_and_gain",
    "compare_gains",
    "default_registration_target",
    "fit_monitor_gamma",
    "measure_dark",
    "measure_operating_point",
    "measure_settling",
    "quantization_bias_bound",
    "register_dmd_to_scene",
    "run_all",
    "settling_beta",
    "tau_from_beta",
]

#: Version of the calibration file layout; :meth:`CalibrationFile.load` refuses others.
CALIBRATION_SCHEMA_VERSION: int = 1

#: Fraction of the clipping level above which a reading counts as saturated.
SATURATION_MARGIN: float = 0.98

#: Largest calibration file :meth:`CalibrationFile.load` reads, bytes (real ones are a
#: few tens of kB).
MAX_CALIBRATION_FILE_BYTES: int = 16 * 2**20


class CalibrationFileError(ConfigError, CalibrationError):
    """A calibration file cannot be used: unreadable, not JSON, malformed, of another
    schema, or edited (its id does not match its content).  Both a
    :class:`~lsi_hw.errors.ConfigError` and a :class:`~lsi_hw.errors.CalibrationError`."""


# --------------------------------------------------------------------------------------------
# small helpers: declared bench values, timing, progress, quantization, pattern blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Declared:
    """What the bench declares about its detector (typed properties), None if unknown.

    lsb_v: ADC step, V.  clip_v: smallest of amplifier saturation and ADC full scale, V.
    gain_db: gain step, dB.  v_per_a: transimpedance, V/A.  bandwidth_hz: -3 dB, Hz.
    range_v: ADC full scale (-range..+range), V.  saturation_v: amplifier saturation, V.
    """

    lsb_v: float | None
    clip_v: float | None
    gain_db: float | None
    v_per_a: float | None
    bandwidth_hz: float | None
    range_v: float | None = None
    saturation_v: float | None = None


def _bench_number(bench: Bench, name: str, unit: str, *, positive: bool = True
                  ) -> float | None:
    """``bench.<name>`` as a float (None stays None, as does a duck-typed bench without
    the property); ConfigError for anything else."""
    value = getattr(bench, name, None)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (positive and number <= 0):
        need = "finite and > 0" if positive else "finite"
        raise ConfigError(
            f"{type(bench).__name__}.{name}={value!r} must be a {need} number ({unit}) or "
            "None when the bench does not know it"
        )
    return number


def _declared(bench: Bench) -> _Declared:
    """Read the typed detector properties of ``bench`` once (validated)."""
    saturation = _bench_number(bench, "saturation_v", "V")
    full_scale = _bench_number(bench, "digitizer_range_v", "V")
    limits = [v for v in (saturation, full_scale) if v is not None]
    return _Declared(
        lsb_v=_bench_number(bench, "digitizer_lsb_v", "V"),
        clip_v=min(limits) if limits else None,
        gain_db=_bench_number(bench, "gain_db", "dB", positive=False),
        v_per_a=_bench_number(bench, "gain_v_per_a", "V/A"),
        bandwidth_hz=_bench_number(bench, "bandwidth_hz", "Hz"),
        range_v=full_scale,
        saturation_v=saturation,
    )


#: Notes a result carries when the bench does not know a value the routine uses.
_NOTE_NO_LSB = ("digitizer step unknown (bench.digitizer_lsb_v is None): the quantization "
                "bias is not in the uncertainties")
_NOTE_NO_CLIP = ("clipping level unknown (bench.saturation_v and bench.digitizer_range_v "
                 "are None): readings were not checked for saturation")
_NOTE_NO_V_PER_A = ("transimpedance unknown (bench.gain_v_per_a is None): no photocurrent "
                    "and no declared gain step")
_NOTE_NO_BANDWIDTH = ("declared bandwidth unknown (bench.bandwidth_hz is None): no "
                      "measured-to-declared ratio")


def _notes(declared: _Declared, *, lsb: bool = False, clip: bool = False,
           v_per_a: bool = False, bandwidth: bool = False) -> tuple[str, ...]:
    """The notes for the declared values a routine uses that the bench does not know."""
    out = []
    if lsb and declared.lsb_v is None:
        out.append(_NOTE_NO_LSB)
    if clip and declared.clip_v is None:
        out.append(_NOTE_NO_CLIP)
    if v_per_a and declared.v_per_a is None:
        out.append(_NOTE_NO_V_PER_A)
    if bandwidth and declared.bandwidth_hz is None:
        out.append(_NOTE_NO_BANDWIDTH)
    return tuple(out)


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


@contextmanager
def _progress(enabled: bool, total: int, desc: str) -> Iterator[Callable[[str], None]]:
    """Yield ``step(label)``; shows a tqdm bar of ``total`` steps when enabled."""
    if not enabled:
        yield lambda label: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step")

    def step(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    try:
        yield step
    finally:
        bar.close()


def quantization_bias_bound(std_v: float, lsb_v: float | None) -> float:
    """Largest bias of a mean of quantized readings, volts.

    For Gaussian noise of rms ``sigma`` the mean of quantized readings differs from the
    analog mean by at most ``sum_k LSB / (pi k) exp(-2 pi^2 k^2 sigma^2 / LSB^2)`` (the
    Fourier series of the quantizer's saw-tooth error), and never by more than LSB/2.
    ``sigma`` is taken as ``sqrt(max(std^2 - LSB^2/12, 0))`` from the observed (quantized)
    rms, which under-estimates it and so over-estimates the bound.

    Parameters
    ----------
    std_v:
        Observed rms of the quantized readings, volts.
    lsb_v:
        ADC step, volts (None or <= 0: no quantization term, returns 0).
    """
    if lsb_v is None or not lsb_v > 0:
        return 0.0
    sigma2 = max(std_v**2 - lsb_v**2 / 12.0, 0.0)
    k = np.arange(1, 201, dtype=np.float64)
    series = float(np.sum(lsb_v / (math.pi * k) * np.exp(-2 * math.pi**2 * k**2 * sigma2
                                                          / lsb_v**2)))
    return min(0.5 * lsb_v, series)


def _level(readings: np.ndarray, lsb_v: float | None) -> tuple[float, float, float]:
    """(mean, standard uncertainty incl. quantization, std) of repeated readings, volts."""
    r = np.asarray(readings, dtype=np.float64).ravel()
    mean = float(r.mean())
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    u_stat = std / math.sqrt(r.size)
    u_q = quantization_bias_bound(std, lsb_v) / math.sqrt(3.0)
    return mean, math.hypot(u_stat, u_q), std


def _held_patterns(masks: np.ndarray, hold: int, discard: int, name: str) -> PatternSet:
    """Each mask shown ``discard + hold`` times in a row (readings k-major)."""
    per = int(discard) + int(hold)
    return PatternSet(np.repeat(np.asarray(masks, dtype=np.uint8), per, axis=0), name=name)


def _held_readings(values: np.ndarray, n_masks: int, hold: int, discard: int) -> np.ndarray:
    """(B, n_masks, hold) readings left after dropping the first ``discard`` of each hold."""
    v = np.asarray(values, dtype=np.float64)
    return v.reshape(v.shape[0], n_masks, discard + hold)[:, :, discard:]


def _check_count(name: str, value: int, lo: int) -> int:
    if int(value) != value or int(value) < lo:
        raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)


def _mask_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        shape = (int(size), int(size))
    else:
        shape = (int(size[0]), int(size[1]))
    if min(shape) < 2:
        raise ConfigError(f"mask size {size!r} must be at least 2 x 2 pixels")
    return shape


def _check_saturation(values: np.ndarray, clip: float | None, what: str) -> None:
    """CalibrationError when readings reach the clipping level ``clip`` (V; None: unknown,
    nothing checked)."""
    if clip is not None and np.max(np.abs(values)) >= SATURATION_MARGIN * clip:
        raise CalibrationError(
            f"{what}: readings reach {np.max(np.abs(values)):.4g} V, at the clipping level "
            f"{clip:g} V (amplifier saturation / digitizer range); lower the gain or the "
            "scene level and run again"
        )


def _measure(bench: Bench, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
    meas = bench.measure(scenes, patterns)
    if meas.values.shape != (len(scenes), patterns.m):
        raise CalibrationError(
            f"bench returned readings of shape {meas.values.shape}; expected "
            f"{(len(scenes), patterns.m)}"
        )
    if not np.all(np.isfinite(meas.values)):
        raise CalibrationError("bench returned non-finite readings (NaN/inf)")
    return meas


def _uniform_scenes(levels: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    lv = np.asarray(levels)
    if lv.ndim != 1 or lv.size == 0 or np.any(lv < 0) or np.any(lv > 255) or np.any(lv != lv // 1):
        raise ConfigError(f"drive levels {levels!r} must be integers in 0..255")
    return np.broadcast_to(lv.astype(np.uint8)[:, None, None], (lv.size, *shape)).copy()


# --------------------------------------------------------------------------------------------
# result records
# --------------------------------------------------------------------------------------------


class _Result:
    """Mixin: JSON round trip and one-line summary of a frozen result dataclass.

    Fields with a default were added after schema version 1 (``notes``,
    ``unresolved_reason``); :meth:`to_dict` leaves them out while they hold their default,
    so a file written before them keeps its id.
    """

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field (tuples become lists; defaulted fields at their
        default are left out)."""
        out = jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.default is not dataclasses.MISSING and getattr(self, f.name) == f.default:
                out.pop(f.name, None)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | None = None) -> Any:
        """Inverse of :meth:`to_dict`: every field checked against its type (lists back to
        tuples for tuple fields).

        Parameters
        ----------
        data:
            The dict.
        where:
            What to name in error messages (default: the class name).

        Raises
        ------
        CalibrationFileError
            Not a dict, unknown or missing fields, or a field of the wrong type.
        """
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise CalibrationFileError(f"{where} must be a JSON object; got "
                                       f"{_json_type(data)}")
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = {f.name for f in fields}
        unknown = set(data) - names
        if unknown:
            raise CalibrationFileError(f"{where}: unknown fields {sorted(unknown)}")
        kwargs = {}
        for f in fields:
            if f.name not in data:
                if f.default is not dataclasses.MISSING:
                    continue
                raise CalibrationFileError(f"{where}: field {f.name!r} missing")
            kwargs[f.name] = _conform(data[f.name], hints[f.name], f"{where}.{f.name}")
        return cls(**kwargs)

    def summary(self) -> str:
        """One line for people: what the routine found."""
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items())  # pragma: no cover

    def summary_lines(self) -> list[str]:
        """:meth:`summary`, then one line per note (values the bench did not know)."""
        return [self.summary(), *(f"note: {n}" for n in getattr(self, "notes", ()))]


class _Mismatch(Exception):
    """A value does not have the type of its field (internal to :func:`_conform`)."""


def _json_type(value: Any) -> str:
    """JSON name of the type of ``value`` (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


_JSON_NOUNS: dict[Any, str] = {float: "number", int: "integer", bool: "boolean",
                               str: "string", Mapping: "object", type(None): "null"}


def _hint_text(hint: Any) -> str:
    """A field's type in JSON words, e.g. ``a number or null``, ``an array of integers``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_hint_text(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_JSON_NOUNS.get(args[0], 'value')}s"
        if len(set(args)) == 1:
            return f"an array of {len(args)} {_JSON_NOUNS.get(args[0], 'value')}s"
        return "an array of " + ", ".join(_JSON_NOUNS.get(a, "value") for a in args)
    noun = _JSON_NOUNS.get(hint, getattr(hint, "__name__", str(hint)))
    return noun if noun == "null" else ("an " if noun[0] in "aeiou" else "a ") + noun


def _conform(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (lists become tuples for tuple types).

    Raises
    ------
    CalibrationFileError
        Naming ``where``, the value's type and the expected type.
    """
    try:
        return _conform_inner(value, hint)
    except _Mismatch:
        raise CalibrationFileError(
            f"{where} is {_json_type(value)}; expected {_hint_text(hint)}") from None


def _conform_inner(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _conform_inner(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_conform_inner(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_conform_inner(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise _Mismatch
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise _Mismatch
        return value
    raise TypeError(f"calibration field type {hint!r} is not handled")  # pragma: no cover


def _si(value: float | None, unit: str, digits: int = 4) -> str:
    """``value`` with an SI prefix, e.g. ``3.012 mV``; ``?`` for None."""
    if value is None:
        return "?"
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    exp = min(max(math.floor(math.log10(abs(value)) / 3), -4), 3)
    prefix = {-4: "p", -3: "n", -2: "u", -1: "m", 0: "", 1: "k", 2: "M", 3: "G"}[exp]
    return f"{value / 10 ** (3 * exp):.{digits}g} {prefix}{unit}"


def _fin(x: float | None) -> float | None:
    """float, or None for None / non-finite (keeps results strict JSON)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class DarkResult(_Result):
    """Dark level and noise of the detector, monitor black level, DMD off-state leakage.

    Attributes
    ----------
    dark_level_v, dark_level_u_v:
        Mean reading with a black scene and every mirror off (amplifier offset + dark
        current x gain + digitizer offset), volts, and its standard uncertainty (statistical
        plus the quantization-bias term).
    noise_v_rms, noise_u_v_rms:
        rms of those readings (read + dark shot noise + quantization), volts.
    black_level_v, black_level_u_v:
        Black scene, every mirror on, minus the dark level: the monitor's black light, volts.
    leakage_ratio, leakage_ratio_u:
        Off-state leakage ``(W_off - B_off) / (W_on - B_on)`` from a white (W) and the black
        (B) scene, all mirrors off / on; None when no white scene was allowed.
    drift_v, drift_u_v:
        Dark level of the second half of the readings minus the first half, volts.
    n_readings:
        Dark readings used (after discarding settling readings).
    mask_shape, gain_db, lsb_v:
        Mask shape (H, W) used, declared gain (dB) and ADC step (V) of the bench
        (``bench.gain_db``, ``bench.digitizer_lsb_v``; None when it does not know).
    notes:
        What the bench did not know and so was left out (e.g. the quantization term).
    """

    dark_level_v: float
    dark_level_u_v: float
    noise_v_rms: float
    noise_u_v_rms: float
    black_level_v: float
    black_level_u_v: float
    leakage_ratio: float | None
    leakage_ratio_u: float | None
    drift_v: float
    drift_u_v: float
    n_readings: int
    mask_shape: tuple[int, int]
    gain_db: float | None
    lsb_v: float | None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """Dark level, noise, leakage and drift on one line."""
        text = (f"dark level {_si(self.dark_level_v, 'V')} +- "
                f"{_si(self.dark_level_u_v, 'V', 2)}, noise {_si(self.noise_v_rms, 'V', 3)} "
                f"rms, black {_si(self.black_level_v, 'V')}")
        if self.leakage_ratio is not None:
            text += f", leakage {self.leakage_ratio:.3g} +- {self.leakage_ratio_u or 0:.2g}"
        return text + f", drift {_si(self.drift_v, 'V', 2)} ({self.n_readings} readings)"


@dataclass(frozen=True)
class LinearityResult(_Result):
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
                f"{_si(self.slopes_v[top], 'V')}")
        if self.photocurrent_a is not None:
            text += f" = {_si(self.photocurrent_a[top], 'A')} at {_si(self.v_per_a, 'V/A', 3)}"
        if self.n_saturated:
            text += f"; {self.n_saturated} saturated points dropped"
        return text


@dataclass(frozen=True)
class GainComparison(_Result):
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


@dataclass(frozen=True)
class GammaResult(_Result):
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
                f"{_si(self.peak_v, 'V')} ({on} - off)")


@dataclass(frozen=True)
class RegistrationResult(_Result):
    """Affine placement of the displayed scene on the DMD, in mask pixels.

    Same convention as :class:`lsi_hw.sim.RelayOpticsConfig`: a scene point ``q``
    (relative to the centre of the mask grid, mask pixels, scene nominally filling the grid)
    lands on the DMD at ``p = scale * R(rotation) q + shift``; rotation counter-clockwise
    on screen with rows pointing down, shift (rows, columns).

    Attributes
    ----------
    rotation_deg, rotation_u_deg:
        Rotation and its uncertainty, degrees.
    scale, scale_u:
        Magnification error (1 = exact fill).
    shift_px, shift_u_px:
        (rows, columns) shift and uncertainties, mask pixels.
    blur_sigma_px, blur_sigma_u_px:
        Gaussian blur standard deviation on the DMD, mask pixels.
    vignetting_coeff:
        Relative irradiance change at the grid corner (``-0.04`` = 4 % darker), fitted as
        ``1 + k r^2``; None when not fitted.
    contrast:
        Fitted reconstruction amplitude of the target's bright parts (arbitrary units:
        volts x pixels of the differential readings).
    contrast_snr:
        ``contrast`` over its uncertainty.
    residual_rms_rel:
        rms of the image residual over ``contrast``.
    size, n_patterns:
        Mask side (pixels) and number of patterns measured.
    """

    rotation_deg: float
    rotation_u_deg: float
    scale: float
    scale_u: float
    shift_px: tuple[float, float]
    shift_u_px: tuple[float, float]
    blur_sigma_px: float
    blur_sigma_u_px: float
    vignetting_coeff: float | None
    contrast: float
    contrast_snr: float
    residual_rms_rel: float
    size: int
    n_patterns: int

    def summary(self) -> str:
        """Shift, rotation, scale and blur on one line."""
        return (f"shift ({self.shift_px[0]:+.3f}, {self.shift_px[1]:+.3f}) px, rotation "
                f"{self.rotation_deg:+.3f} deg, scale {self.scale:.4f}, blur "
                f"{self.blur_sigma_px:.2f} px, contrast SNR {self.contrast_snr:.3g}")

    def relay_settings(self) -> dict[str, Any]:
        """The estimate as keyword arguments of ``RelayOpticsConfig`` (rotation_deg, scale,
        shift_px, blur_sigma_px)."""
        return {"rotation_deg": self.rotation_deg, "scale": self.scale,
                "shift_px": tuple(self.shift_px), "blur_sigma_px": self.blur_sigma_px}


@dataclass(frozen=True)
class SettlingResult(_Result):
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
            text = (f"tau {_si(self.tau_s, 's')} +- {_si(self.tau_u_s, 's', 2)}, bandwidth "
                    f"{_si(self.bandwidth_hz, 'Hz')}")
            if self.bandwidth_ratio is not None:
                text += f" = {self.bandwidth_ratio:.3f} x declared"
            return text + f" (carry-over {self.beta:.3g})"
        text = f"unresolved because {self.unresolved_reason or 'the carry-over is too small'}"
        if self.tau_upper_s is not None:
            text += (f"; tau < {_si(self.tau_upper_s, 's', 3)} (bandwidth > "
                     f"{_si(self.bandwidth_lower_hz, 'Hz', 3)})")
        return text


# --------------------------------------------------------------------------------------------
# 0. operating point: where the brightest readings sit in the digitizer's range
# --------------------------------------------------------------------------------------------

#: Uniform drive levels measured by :func:`measure_operating_point` (0 = the dark level).
OPERATING_LADDER: tuple[int, ...] = (0, 64, 96, 128, 160, 192, 224, 255)
#: Open fraction of the sparse probe mask: an all-on reading that clips is extrapolated
#: from it (``off + (probe - off) / fraction``).
PROBE_FRACTION: float = 1.0 / 16.0
#: :func:`run_all` scales its bright stimuli to at most this fraction of the clipping level.
STIMULUS_FRACTION: float = 0.7


@dataclass(frozen=True)
class OperatingPointResult(_Result):
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
        text = f"brightest typical reading {_si(self.peak_v, 'V')} ({self.peak_scene}{est})"
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
    from lsi_hw.operating_point import assess_fraction, recommend_operating_point

    shape = _mask_shape(size)
    repeats = _check_count("repeats", repeats, 1)
    discard = _check_count("discard", discard, 0)
    notes: list[str] = []
    if scenes is None:
        if shape[0] == shape[1] and shape[0] >= 8:
            from lsi_hw.testscenes import builtin_scenes

            typical, names = builtin_scenes(shape[0])
        else:
            typical, names = np.zeros((0, *shape), dtype=np.uint8), []
            notes.append(f"no built-in scenes for a {shape} mask (they need a square of >= 8 "
                         "px): the brightest reading is that of the uniform levels")
    else:
        typical = np.asarray(scenes)
        if typical.dtype != np.uint8 or typical.ndim not in (3, 4) \
                or typical.shape[1:3] != shape or len(typical) == 0:
            raise ConfigError(f"scenes must be uint8 (B, {shape[0]}, {shape[1]}[, 3]) with "
                              f"B >= 1; got {typical.dtype} {typical.shape}")
        names = list(scene_names) if scene_names is not None else [
            f"scene {k}" for k in range(len(typical))]
        if len(names) != len(typical):
            raise ConfigError(f"{len(names)} scene names for {len(typical)} scenes")
    ladder = _uniform_scenes(OPERATING_LADDER, shape)
    if typical.ndim == 4:
        ladder = np.repeat(ladder[..., None], 3, axis=3)
    probe = bayer_mask(shape, PROBE_FRACTION)
    f_probe = float(probe.mean())
    masks = np.stack([np.zeros(shape), probe, np.ones(shape)])
    patterns = _held_patterns(masks, repeats, discard, "calibration-operating-point")
    declared = _declared(bench)
    with _progress(progress, 1, "operating point") as step, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meas = _measure(bench, np.concatenate([ladder, typical]), patterns)
        step("measured")
    for w in caught:  # clipping of the bright ladder is expected and handled below
        if w.category.__name__ != "SaturationWarning":
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    held = _held_readings(meas.values, 3, repeats, discard).mean(axis=2)  # (B, 3)
    off, sparse, on = held[:, 0], held[:, 1], held[:, 2]
    clip = declared.clip_v
    clipped = (np.zeros(len(on), dtype=bool) if clip is None
               else np.abs(on) >= SATURATION_MARGIN * clip)
    all_on = np.where(clipped, off + (sparse - off) / f_probe, on)
    n_ladder = len(OPERATING_LADDER)
    dark = float(off[0])
    if len(typical):
        k = int(np.argmax(all_on[n_ladder:]))
        peak, peak_name, peak_est = (float(all_on[n_ladder + k]), str(names[k]),
                                     bool(clipped[n_ladder + k]))
    else:
        k = int(np.argmax(all_on[:n_ladder]))
        peak, peak_name, peak_est = (float(all_on[k]), f"uniform level {OPERATING_LADDER[k]}",
                                     bool(clipped[k]))
    if clip is None:
        notes.append(_NOTE_NO_CLIP)
    rng_v, gain = declared.range_v, declared.gain_db
    fraction = status = message = None
    rec_gain = rec_range = rec_fraction = residual = reason = None
    if rng_v is None:
        status, message = "unknown", "digitizer range unknown (bench.digitizer_range_v is None)"
        notes.append("digitizer range unknown (bench.digitizer_range_v is None): no fraction "
                     "of full scale and no recommendation")
    else:
        fraction, status, message = assess_fraction(peak, rng_v, declared.saturation_v)
        if peak_est and status != "saturating":
            status, message = "saturating", (f"saturating: typical scenes clip with every "
                                             f"mirror on ({message})")
    if gain is None:
        notes.append("gain step unknown (bench.gain_db is None): no recommendation")
    elif rng_v is not None:
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
        else:
            rec_gain, rec_range = point.gain_db, point.range_v
            rec_fraction, residual, reason = (point.expected_fraction, point.settling_residual,
                                              point.reason)
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
        range_v=rng_v,
        clip_v=clip,
        gain_db=gain,
        fraction=fraction,
        status=str(status),
        message=str(message),
        recommended_gain_db=rec_gain,
        recommended_range_v=rec_range,
        recommended_fraction=rec_fraction,
        settling_residual=residual,
        recommendation=reason,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# 1. dark level, noise, leakage
# --------------------------------------------------------------------------------------------


def measure_dark(
    bench: Bench,
    *,
    size: int | tuple[int, int] = 32,
    repeats: int = 256,
    discard: int = 4,
    allow_white: bool = True,
    white_level: int = 255,
    tolerance_v: float = 1e-3,
    max_drift_sigma: float = 6.0,
    progress: bool = False,
) -> DarkResult:
    """Dark level (V), dark noise (V rms), monitor black light and DMD off-state leakage.

    A black scene (and, if ``allow_white``, a white one) is measured with the all-off and
    the all-on mask, each held for ``discard + repeats`` patterns, twice in the order
    off, on, off, on.  The first ``discard`` readings of every hold are dropped (settling).

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask shape (H, W) or side, pixels; scenes have the same shape.
    repeats:
        Readings kept per hold (two holds per mask and scene).
    discard:
        Readings dropped at the start of each hold.
    allow_white:
        Also show a full-screen ``white_level`` scene to measure the off-state leakage.
    white_level:
        Drive level 0..255 of the white scene.
    tolerance_v:
        Largest acceptable uncertainty of the dark level, volts.
    max_drift_sigma:
        Largest acceptable |drift| between the two dark holds, in units of its uncertainty.
    progress:
        Show a progress bar.

    Returns
    -------
    DarkResult

    Raises
    ------
    CalibrationError
        Dark level uncertainty above ``tolerance_v``, drift above ``max_drift_sigma``,
        white readings at the clipping level, or no light reaching the detector from the
        white scene.
    """
    shape = _mask_shape(size)
    repeats = _check_count("repeats", repeats, 2)
    discard = _check_count("discard", discard, 0)
    masks = np.stack([np.zeros(shape), np.ones(shape), np.zeros(shape), np.ones(shape)])
    patterns = _held_patterns(masks, repeats, discard, "calibration-dark")
    levels = [0, int(white_level)] if allow_white else [0]
    scenes = _uniform_scenes(levels, shape)
    declared = _declared(bench)
    with _progress(progress, 1, "dark") as step:
        meas = _measure(bench, scenes, patterns)
        step("measured")
    lsb = declared.lsb_v
    r = _held_readings(meas.values, 4, repeats, discard)  # (B, 4 holds, repeats)
    dark = r[0, [0, 2]]
    dark_v, dark_u, noise = _level(dark, lsb)
    noise_u = noise / math.sqrt(2.0 * (dark.size - 1))
    on_v, on_u, _ = _level(r[0, [1, 3]], lsb)
    first, first_u, _ = _level(r[0, 0], lsb)
    second, second_u, _ = _level(r[0, 2], lsb)
    drift, drift_u = second - first, math.hypot(first_u, second_u)
    leak = leak_u = None
    if allow_white:
        _check_saturation(r[1], declared.clip_v, "measure_dark (white scene)")
        w_off, w_off_u, _ = _level(r[1, [0, 2]], lsb)
        w_on, w_on_u, _ = _level(r[1, [1, 3]], lsb)
        num, num_u = w_off - dark_v, math.hypot(w_off_u, dark_u)
        den, den_u = w_on - on_v, math.hypot(w_on_u, on_u)
        if not den > 10 * den_u:
            raise CalibrationError(
                f"measure_dark: the white scene gives no clear signal (all-on minus black "
                f"{den:.3g} +- {den_u:.2g} V); check the light path, the monitor and the gain"
            )
        leak = num / den
        leak_u = math.hypot(num_u / den, leak * den_u / den)
    if dark_u > tolerance_v:
        raise CalibrationError(
            f"measure_dark: dark level uncertainty {dark_u:.3g} V exceeds the tolerance "
            f"{tolerance_v:g} V; increase repeats or check for noise pick-up"
        )
    if abs(drift) > max_drift_sigma * drift_u + 1e-15:
        raise CalibrationError(
            f"measure_dark: dark level drifted by {drift:.3g} V between the two holds "
            f"(uncertainty {drift_u:.2g} V, limit {max_drift_sigma:g} sigma); let the "
            "amplifier warm up and shield it from stray light, then run again"
        )
    return DarkResult(
        dark_level_v=dark_v,
        dark_level_u_v=dark_u,
        noise_v_rms=noise,
        noise_u_v_rms=noise_u,
        black_level_v=on_v - dark_v,
        black_level_u_v=math.hypot(on_u, dark_u),
        leakage_ratio=_fin(leak),
        leakage_ratio_u=_fin(leak_u),
        drift_v=drift,
        drift_u_v=drift_u,
        n_readings=int(dark.size),
        mask_shape=shape,
        gain_db=declared.gain_db,
        lsb_v=lsb,
        notes=_notes(declared, lsb=True, clip=allow_white),
    )


# --------------------------------------------------------------------------------------------
# 2. linearity and gain
# --------------------------------------------------------------------------------------------


def _bayer(n: int) -> np.ndarray:
    """Bayer ordered-dither index matrix (n x n, n a power of two), values 0..n^2-1."""
    b = np.zeros((1, 1), dtype=np.int64)
    while b.shape[0] < n:
        b = np.block([[4 * b, 4 * b + 2], [4 * b + 3, 4 * b + 1]])
    return b


def bayer_mask(shape: tuple[int, int], fraction: float, tile: int = 8) -> np.ndarray:
    """Binary mask with open fraction ``fraction`` spread evenly (ordered dither).

    Every ``tile x tile`` block opens ``round(fraction * tile^2)`` mirrors, so a smooth
    irradiance is sampled in proportion to the open fraction.  The exact open fraction of
    the returned mask is ``mask.mean()``.

    Parameters
    ----------
    shape:
        Mask shape (H, W), pixels.
    fraction:
        Wanted open fraction, 0..1.
    tile:
        Dither tile side, a power of two.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"open fraction {fraction} outside [0, 1]")
    idx = _bayer(tile)
    h, w = shape
    full = np.tile(idx, (-(-h // tile), -(-w // tile)))[:h, :w]
    return (full < round(fraction * tile * tile)).astype(np.uint8)


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
    shape = _mask_shape(size)
    repeats = _check_count("repeats", repeats, 2)
    discard = _check_count("discard", discard, 0)
    if len(fractions) < 3:
        raise ConfigError(f"need at least 3 open fractions; got {len(fractions)}")
    masks = np.stack([bayer_mask(shape, float(f)) for f in fractions])
    exact = masks.reshape(len(masks), -1).mean(axis=1)
    order = np.random.default_rng(seed).permutation(len(masks))
    patterns = _held_patterns(masks[order], repeats, discard, "calibration-linearity")
    scenes = _uniform_scenes(levels, shape)
    declared = _declared(bench)
    with _progress(progress, 1, "linearity") as step:
        meas = _measure(bench, scenes, patterns)
        step("measured")
    lsb, clip = declared.lsb_v, declared.clip_v
    held = _held_readings(meas.values, len(masks), repeats, discard)
    readings = np.empty_like(held)
    readings[:, order] = held  # back to the order of ``fractions``
    stats = np.array([[_level(readings[b, j], lsb)[:2] for j in range(len(masks))]
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
        reduced_chi2=_fin(chi2 / dof) if dof > 0 else None,
        gain_db=declared.gain_db,
        v_per_a=v_per_a,
        photocurrent_a=tuple(s / v_per_a for s in slopes) if v_per_a else None,
        mask_shape=shape,
        n_saturated=n_sat,
        notes=_notes(declared, lsb=True, clip=True, v_per_a=True),
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


# --------------------------------------------------------------------------------------------
# 3. monitor gamma
# --------------------------------------------------------------------------------------------


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
    shape = _mask_shape(size)
    repeats = _check_count("repeats", repeats, 2)
    discard = _check_count("discard", discard, 0)
    passes = _check_count("passes", passes, 1)
    lv = np.asarray(sorted(set(int(v) for v in levels)))
    if lv.size < 4:
        raise CalibrationError(f"fit_monitor_gamma needs at least 4 distinct levels; got {lv}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(lv.size) for _ in range(passes)])
    on_mask = _on_mask(shape, open_fraction)
    masks = np.stack([on_mask, np.zeros(shape), on_mask, np.zeros(shape)])
    patterns = _held_patterns(masks, repeats, discard, "calibration-gamma")
    declared = _declared(bench)
    with _progress(progress, 1, "gamma") as step:
        meas = _measure(bench, _uniform_scenes(lv[order], shape), patterns)
        step("measured")
    lsb = declared.lsb_v
    _check_saturation(meas.values, declared.clip_v, "fit_monitor_gamma")
    held = _held_readings(meas.values, 4, repeats, discard)
    per_pass = np.empty((passes, lv.size))
    per_pass_u = np.empty((passes, lv.size))
    for b, i in enumerate(order):
        on, on_u, _ = _level(held[b, [0, 2]], lsb)
        off, off_u, _ = _level(held[b, [1, 3]], lsb)
        per_pass[b // lv.size, i] = on - off
        per_pass_u[b // lv.size, i] = math.hypot(on_u, off_u)
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
    if not np.all(diff_u > 0):
        why = (" and the bench does not report its ADC step (bench.digitizer_lsb_v is None)"
               if lsb is None else "")
        raise CalibrationError(
            f"fit_monitor_gamma: the readings at level(s) {lv[~(diff_u > 0)].tolist()} do "
            f"not vary (zero uncertainty){why}; use a higher gain so the noise shows"
        )
    x = lv / 255.0
    top = diff[-1]
    if not top > 10 * diff_u[-1] or np.any(np.diff(diff) < -3 * np.hypot(diff_u[1:], diff_u[:-1])):
        raise CalibrationError(
            "fit_monitor_gamma: the on-minus-off signal is not increasing with the drive "
            f"level (got {np.round(diff, 6).tolist()} V); check the monitor and the light path"
        )
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
    a, g, b = (float(v) for v in fit.x)
    dof = lv.size - 3
    chi2 = float(np.sum(fit.fun**2)) / dof if dof > 0 else float("nan")
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac)
    except np.linalg.LinAlgError:
        raise CalibrationError("fit_monitor_gamma: singular fit (levels too few or "
                               "degenerate)") from None
    if math.isfinite(chi2):
        cov = cov * max(1.0, chi2)
    a_u, g_u, b_u = (float(math.sqrt(max(cov[i, i], 0.0))) for i in range(3))
    ratio = b / a
    grad = np.array([-b / a**2, 0.0, 1.0 / a])  # d(b/a) / d(a, gamma, b)
    ratio_u = float(math.sqrt(max(float(grad @ cov @ grad), 0.0)))
    result = GammaResult(
        gamma=g,
        gamma_u=g_u,
        black_to_peak=ratio,
        black_to_peak_u=ratio_u,
        peak_v=a,
        peak_u_v=a_u,
        black_v=b,
        black_u_v=b_u,
        levels=tuple(int(v) for v in lv),
        differential_v=tuple(float(v) for v in diff),
        differential_u_v=tuple(float(v) for v in diff_u),
        residual_rms_rel=float(np.sqrt(np.mean((fit.fun * diff_u) ** 2)) / a),
        reduced_chi2=_fin(chi2),
        mask_shape=shape,
        gain_db=declared.gain_db,
        notes=_notes(declared, lsb=True, clip=True),
        open_fraction=float(on_mask.mean()),
    )
    if not (0.3 <= g <= 5.0) or not g_u <= gamma_tolerance:
        raise CalibrationError(
            f"fit_monitor_gamma: gamma {g:.4g} +- {g_u:.2g} outside [0.3, 5] or its "
            f"uncertainty above {gamma_tolerance:g}; use more repeats or a higher gain"
        )
    return result


# --------------------------------------------------------------------------------------------
# 4. DMD-to-scene registration
# --------------------------------------------------------------------------------------------


def default_registration_target(size: int) -> np.ndarray:
    """Binary 0/255 target of ``size x size`` pixels for :func:`register_dmd_to_scene`.

    A cross, a square, a disc, a bar and a small dot at different distances and angles
    from the centre, on black, all inside 70 % of the field: no rotational or mirror
    symmetry, so rotation, scale and shift are all determined, and the binary drive
    levels make the target independent of the monitor gamma.

    Parameters
    ----------
    size:
        Side in pixels (>= 16).
    """
    if size < 16:
        raise ConfigError(f"registration target size {size} must be >= 16 pixels")
    c = (size - 1) / 2.0
    rr, cc = np.meshgrid((np.arange(size) - c) / c, (np.arange(size) - c) / c, indexing="ij")
    t = 2.0 / size  # one pixel in normalised units
    img = np.zeros((size, size), dtype=bool)
    arm, thick = 0.2, max(0.07, 1.6 * t)
    img |= (np.abs(rr + 0.45) <= thick) & (np.abs(cc + 0.5) <= arm)  # cross, top-left
    img |= (np.abs(cc + 0.5) <= thick) & (np.abs(rr + 0.45) <= arm)
    img |= (np.abs(rr + 0.5) <= 0.12) & (np.abs(cc - 0.45) <= 0.12)  # square, top-right
    img |= (rr - 0.45) ** 2 + (cc - 0.5) ** 2 <= 0.16**2  # disc, bottom-right
    img |= (np.abs(rr - 0.55) <= thick) & (cc >= -0.65) & (cc <= -0.15)  # bar, bottom-left
    img |= (rr - 0.05) ** 2 + (cc - 0.12) ** 2 <= max(0.07, 1.5 * t) ** 2  # dot, off centre
    return np.where(img, 255, 0).astype(np.uint8)


def _sample_coords(shape: tuple[int, int], shift: tuple[float, float], rotation_deg: float,
                   scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Scene-grid (row, col) sampled by each mask pixel for ``p = s R q + shift``."""
    h, w = shape
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    pr = rr - (h - 1) / 2.0 - shift[0]
    pc = cc - (w - 1) / 2.0 - shift[1]
    th = math.radians(rotation_deg)
    cos, sin = math.cos(th), math.sin(th)
    qc = (cos * pc - sin * pr) / scale
    qr = (sin * pc + cos * pr) / scale
    return qr + (h - 1) / 2.0, qc + (w - 1) / 2.0


def _bilinear(img: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D image; zero outside."""
    hs, ws = img.shape
    r0 = np.floor(r).astype(np.int64)
    c0 = np.floor(c).astype(np.int64)
    fr, fc = r - r0, c - c0
    out = np.zeros(r.shape)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            ri, ci = r0 + dr, c0 + dc
            ok = (ri >= 0) & (ri < hs) & (ci >= 0) & (ci < ws)
            out += np.where(ok, img[np.clip(ri, 0, hs - 1), np.clip(ci, 0, ws - 1)], 0.0) * wr * wc
    return out


_BLUR_MAX_PX = 4.0
_BLUR_X = np.arange(-math.ceil(4 * _BLUR_MAX_PX), math.ceil(4 * _BLUR_MAX_PX) + 1,
                    dtype=np.float64)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable sampled-Gaussian blur (fixed radius, zero outside); no-op for sigma ~ 0."""
    if sigma < 1e-3:
        return img
    k = np.exp(-0.5 * (_BLUR_X / sigma) ** 2)
    k /= k.sum()
    out = ndimage.correlate1d(img, k, axis=0, mode="constant", cval=0.0)
    return ndimage.correlate1d(out, k, axis=1, mode="constant", cval=0.0)


def _phase_correlation_shift(image: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(rows, cols) shift that best maps ``target`` onto ``image`` (sub-pixel peak)."""
    h, w = image.shape
    a = np.zeros((2 * h, 2 * w))
    b = np.zeros((2 * h, 2 * w))
    a[:h, :w] = image - image.mean()
    b[:h, :w] = target - target.mean()
    cross = np.fft.fft2(a) * np.conj(np.fft.fft2(b))
    mag = np.abs(cross)
    corr = np.real(np.fft.ifft2(cross / (mag + 1e-3 * mag.max() + 1e-300)))
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = []
    for axis, n in enumerate(corr.shape):
        i = peak[axis]
        idx = list(peak)
        idx[axis] = (i - 1) % n
        left = corr[tuple(idx)]
        idx[axis] = (i + 1) % n
        right = corr[tuple(idx)]
        centre = corr[peak]
        denom = left - 2 * centre + right
        frac = 0.5 * (left - right) / denom if denom < 0 else 0.0
        s = i + float(np.clip(frac, -0.5, 0.5))
        out.append(s - n if s > n / 2 else s)
    return out[0], out[1]


def _hadamard_image(patterns: PatternSet, values: np.ndarray) -> np.ndarray:
    """Irradiance image (up to scale) from readings of a complete split Hadamard set."""
    from lsi_hw.sim.kernels import fwht  # numba: imported only when used

    n_side = patterns.shape[0]
    n = n_side * n_side
    diff = np.asarray(patterns.differential(values), dtype=np.float64).mean(axis=0)
    rows = np.asarray(patterns.hadamard_rows)[0::2]
    y = np.zeros(n)
    y[rows] = diff
    return np.asarray(fwht(y), dtype=np.float64).reshape(n_side, n_side) / n


def register_dmd_to_scene(
    bench: Bench,
    size: int = 32,
    *,
    target: np.ndarray | None = None,
    repeats: int = 1,
    discard: int = 0,
    fit_blur: bool = True,
    blur_sigma_px: float = 0.7,
    fit_vignetting: bool = True,
    shift_tolerance_px: float = 0.2,
    rotation_tolerance_deg: float = 0.3,
    scale_tolerance: float = 0.01,
    max_residual_rel: float = 0.15,
    min_contrast_snr: float = 20.0,
    search_rotation_deg: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0),
    search_scale: Sequence[float] = (0.96, 1.0, 1.04),
    progress: bool = False,
) -> RegistrationResult:
    """Estimate the rotation, scale and shift of the displayed scene on the DMD.

    A known binary target (default :func:`default_registration_target`) is shown and
    measured with the complete split Hadamard basis of ``size x size`` masks
    (``2 size^2`` patterns); the differential readings are inverted with the fast
    Walsh-Hadamard transform into the irradiance image on the mask grid.  The target,
    warped by the affine model ``p = s R q + shift`` with bilinear resampling and a
    Gaussian blur, is fitted to that image by least squares
    (:func:`scipy.optimize.least_squares`).  The shift starts from phase correlation and
    rotation/scale from the best point of a coarse grid.  The gain, the scene footprint
    level (monitor black), a constant and, optionally, a radial vignetting term
    ``1 + k r^2`` enter linearly and are solved exactly at every step (variable
    projection).  Uncertainties come from the Jacobian and the residual variance.

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask side, a power of two (32 or 64 are typical).
    target:
        (size, size) uint8 drive values to display (default: the built-in binary target).
    repeats:
        Times the target is measured (readings averaged).
    discard:
        Extra copies shown before each mask and dropped (set 1 at high gain, where the
        amplifier's settling couples consecutive readings).
    fit_blur, blur_sigma_px:
        Fit the blur sigma (starting at ``blur_sigma_px``) or keep it fixed, mask pixels.
    fit_vignetting:
        Fit a radial ``1 + k r^2`` irradiance fall-off.
    shift_tolerance_px, rotation_tolerance_deg, scale_tolerance:
        Largest acceptable standard uncertainties.
    max_residual_rel:
        Largest acceptable rms residual relative to the fitted contrast.
    min_contrast_snr:
        Smallest acceptable significance of the target in the image.
    search_rotation_deg, search_scale:
        Coarse grid of starting rotations (deg) and scales.
    progress:
        Show a progress bar.

    Raises
    ------
    CalibrationError
        A blank target, a target not seen (contrast below ``min_contrast_snr``), a fit that
        fails, a residual above ``max_residual_rel`` or an uncertainty above its tolerance.
    """
    n_side = _check_count("size", size, 16)
    if n_side & (n_side - 1):
        raise ConfigError(f"size={size} must be a power of two (Hadamard basis), e.g. 32 or 64")
    repeats = _check_count("repeats", repeats, 1)
    discard = _check_count("discard", discard, 0)
    tgt = default_registration_target(n_side) if target is None else np.asarray(target)
    if tgt.shape != (n_side, n_side):
        raise ConfigError(f"target shape {tgt.shape} must be ({n_side}, {n_side})")
    if tgt.dtype != np.uint8:
        raise ConfigError(f"target must be uint8 drive values; got {tgt.dtype}")
    if int(tgt.max()) == int(tgt.min()):
        raise CalibrationError(
            "register_dmd_to_scene: the target is blank (one drive level everywhere); "
            "registration needs structure: use default_registration_target(size)"
        )
    shape = (n_side, n_side)
    basis = PatternSet.hadamard(n_side, split=True)
    patterns = basis
    if discard:
        patterns = PatternSet(np.repeat(basis.masks, discard + 1, axis=0),
                              name="calibration-registration")
    with _progress(progress, 3, "registration") as step:
        meas = _measure(bench, np.broadcast_to(tgt, (repeats, *shape)).copy(), patterns)
        step("measured")
        values = meas.values[:, discard :: discard + 1] if discard else meas.values
        image = _hadamard_image(basis, values)
        step("reconstructed")
        fit = _fit_registration(image, tgt.astype(np.float64) / 255.0, fit_blur, blur_sigma_px,
                                fit_vignetting, search_rotation_deg, search_scale)
        step("fitted")
    result = RegistrationResult(size=n_side, n_patterns=patterns.m, **fit)
    if result.contrast_snr < min_contrast_snr or result.contrast <= 0:
        raise CalibrationError(
            f"register_dmd_to_scene: the target is not seen (contrast SNR "
            f"{result.contrast_snr:.3g} < {min_contrast_snr:g}); check that the scene reaches "
            "the DMD (alignment, monitor on) and the gain"
        )
    if result.residual_rms_rel > max_residual_rel:
        raise CalibrationError(
            f"register_dmd_to_scene: the affine model leaves a residual of "
            f"{100 * result.residual_rms_rel:.3g} % of the contrast (limit "
            f"{100 * max_residual_rel:g} %): misalignment beyond the search range, a distorted "
            "relay or settling (try discard=1)"
        )
    bad = [
        (name, u, tol)
        for name, u, tol in (
            ("shift rows (px)", result.shift_u_px[0], shift_tolerance_px),
            ("shift cols (px)", result.shift_u_px[1], shift_tolerance_px),
            ("rotation (deg)", result.rotation_u_deg, rotation_tolerance_deg),
            ("scale", result.scale_u, scale_tolerance),
        )
        if not u <= tol
    ]
    if bad:
        text = ", ".join(f"{n} +-{u:.3g} > {t:g}" for n, u, t in bad)
        raise CalibrationError(f"register_dmd_to_scene: uncertainties above tolerance: {text}")
    return result


def _fit_registration(
    image: np.ndarray,
    target: np.ndarray,
    fit_blur: bool,
    blur0: float,
    fit_vignetting: bool,
    rotations: Sequence[float],
    scales: Sequence[float],
) -> dict[str, Any]:
    """Variable-projection least squares of the affine model; returns result fields."""
    shape = image.shape
    h, w = shape
    rr, cc = np.meshgrid(np.arange(h) - (h - 1) / 2.0, np.arange(w) - (w - 1) / 2.0,
                         indexing="ij")
    r2 = ((rr**2 + cc**2) / ((h - 1) ** 2 / 4.0 + (w - 1) ** 2 / 4.0)).ravel()
    ones_scene = np.ones_like(target)
    y = image.ravel()

    def design(p: np.ndarray) -> np.ndarray:
        shift, rot, scale = (p[0], p[1]), p[2], p[3]
        sigma = p[4] if fit_blur else blur0
        r, c = _sample_coords(shape, shift, rot, scale)
        model = _blur(_bilinear(target, r, c), sigma).ravel()
        foot = _blur(_bilinear(ones_scene, r, c), sigma).ravel()
        cols = [model, foot]
        if fit_vignetting:
            cols += [model * r2, foot * r2]
        cols.append(np.ones_like(model))
        return np.stack(cols, axis=1)

    def solve(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = design(p)
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        return y - a @ coef, coef, a

    def resid(p: np.ndarray) -> np.ndarray:
        return solve(p)[0]

    s0 = _phase_correlation_shift(image, target)
    best, best_cost = None, np.inf
    for rot in rotations:
        for sc in scales:
            p = np.array([s0[0], s0[1], rot, sc, blur0] if fit_blur else
                         [s0[0], s0[1], rot, sc])
            cost = float(np.sum(resid(p) ** 2))
            if cost < best_cost:
                best, best_cost = p, cost
    assert best is not None
    lim = max(h, w) / 2.0
    lo = [-lim, -lim, -30.0, 0.5] + ([0.0] if fit_blur else [])
    hi = [lim, lim, 30.0, 2.0] + ([_BLUR_MAX_PX] if fit_blur else [])
    best = np.clip(best, np.asarray(lo) + 1e-6, np.asarray(hi) - 1e-6)
    try:
        fit = optimize.least_squares(resid, best, bounds=(lo, hi), method="trf",
                                     x_scale=[0.1, 0.1, 0.1, 0.002] + ([0.1] if fit_blur else []),
                                     diff_step=1e-4)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise CalibrationError(f"register_dmd_to_scene: fit failed ({exc})") from None
    res, coef, a = solve(fit.x)
    n_lin = a.shape[1]
    dof = y.size - fit.x.size - n_lin
    s2 = float(np.sum(res**2)) / max(dof, 1)
    jac = np.asarray(fit.jac, dtype=np.float64)
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
        cov_lin = np.linalg.pinv(a.T @ a) * s2
    except np.linalg.LinAlgError:
        raise CalibrationError("register_dmd_to_scene: singular fit; the target does not "
                               "determine the geometry") from None
    u = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    contrast = float(coef[0])
    contrast_u = float(math.sqrt(max(cov_lin[0, 0], 0.0)))
    vig = None
    if fit_vignetting and contrast != 0:
        vig = float(coef[2] / coef[0])
    big = 1e9
    return {
        "shift_px": (float(fit.x[0]), float(fit.x[1])),
        "shift_u_px": (float(u[0]), float(u[1])),
        "rotation_deg": float(fit.x[2]),
        "rotation_u_deg": float(u[2]),
        "scale": float(fit.x[3]),
        "scale_u": float(u[3]),
        "blur_sigma_px": float(fit.x[4]) if fit_blur else float(blur0),
        "blur_sigma_u_px": float(u[4]) if fit_blur else 0.0,
        "vignetting_coeff": _fin(vig),
        "contrast": contrast,
        "contrast_snr": float(min(abs(contrast) / contrast_u, big)) if contrast_u > 0 else big,
        "residual_rms_rel": float(math.sqrt(np.mean(res**2)) / abs(contrast))
        if contrast else big,
    }


# --------------------------------------------------------------------------------------------
# 5. settling
# --------------------------------------------------------------------------------------------


def settling_beta(tau_s: float | np.ndarray, settling_delay_s: float, window_s: float
                  ) -> float | np.ndarray:
    """Carry-over fraction of a first-order amplifier averaged over the reading window.

    ``beta = tau / w (exp(-t0 / tau) - exp(-(t0 + w) / tau))``: the part of the difference
    between the amplifier output at the pattern start and the new value that is still in a
    reading averaged over ``[t0, t0 + w]``.  Increases from 0 (tau -> 0) to 1 (tau -> inf).

    Parameters
    ----------
    tau_s:
        Time constant ``1 / (2 pi f_3dB)``, seconds.
    settling_delay_s, window_s:
        Start ``t0`` and length ``w`` of the averaging window after the pattern start, s.
    """
    tau = np.asarray(tau_s, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        out = tau / window_s * (np.exp(-settling_delay_s / tau)
                                - np.exp(-(settling_delay_s + window_s) / tau))
    out = np.where(tau > 0, out, 0.0)
    return float(out) if np.ndim(out) == 0 else out


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
    significant, the whole sequence is fitted with the first-order model of the module
    docstring (one free level per block, so slow drift and flicker do not bias it, and one
    time constant ``tau``; the timing comes from ``bench.timing`` or ``timing``) and
    converted to the bandwidth ``1 / (2 pi tau)``, compared to ``bench.bandwidth_hz``.
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
    shape = _mask_shape(size)
    block = _check_count("block", block, 5)
    cycles = _check_count("cycles", cycles, 2)
    repeats = _check_count("repeats", repeats, 1)
    n_blocks = 2 * cycles
    kinds = np.arange(n_blocks) % 2 == 0  # True: all on
    masks = np.where(kinds[:, None, None], np.ones((1, *shape)), np.zeros((1, *shape)))
    patterns = _held_patterns(masks, block, 0, "calibration-settling")
    declared = _declared(bench)
    # a bad ``timing`` fails before anything is measured
    _resolve_timing(getattr(bench, "timing", None), timing)
    with _progress(progress, 2, "settling") as step:
        meas = _measure(bench, _uniform_scenes([level] * repeats, shape), patterns)
        step("measured")
        tm = _resolve_timing(getattr(bench, "timing", None), timing)  # as used by this measurement
        _check_saturation(meas.values, declared.clip_v, "measure_settling")
        y = meas.values.reshape(repeats, n_blocks, block)
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
        bound = max(beta_hat, 0.0) + 3.0 * beta_u
        tau_upper: float | None = None
        bandwidth_lower: float | None = None
        if tm is not None:
            tau_upper = (tau_from_beta(min(bound, 1 - 1e-9), tm.settling_delay_s, tm.window_s)
                         if bound > 0 else 0.0)
            bandwidth_lower = 1 / (2 * math.pi * tau_upper) if tau_upper > 0 else 1e30
        declared_bw = declared.bandwidth_hz
        common: dict[str, Any] = {
            "tau_upper_s": tau_upper,
            "bandwidth_lower_hz": bandwidth_lower,
            "declared_bandwidth_hz": declared_bw,
            "step_v": step_v,
            "period_us": None if tm is None else tm.period_s * 1e6,
            "settling_delay_us": None if tm is None else tm.settling_delay_s * 1e6,
            "window_us": None if tm is None else tm.window_s * 1e6,
            "n_transitions": int(n_tr),
            "gain_db": declared.gain_db,
            "notes": _notes(declared, clip=True, bandwidth=True),
        }
        reasons = []
        if not (beta_hat > min_significance * beta_u and beta_hat > 0):
            delay = "" if tm is None else f" {_si(tm.settling_delay_s, 's', 3)}"
            reasons.append(
                f"the carry-over {beta_hat:.3g} +- {beta_u:.2g} is below {min_significance:g} "
                f"sigma: the amplifier settles within the{delay} settling delay"
            )
        if tm is None:
            reasons.append(
                "the bench does not report its reading timing (bench.timing is None) that "
                "turns the carry-over into a time constant"
            )
        if reasons:
            step("unresolved")
            reason = "; ".join(reasons)
            if require_resolved:
                bounds = "" if tau_upper is None else (
                    f"; tau < {tau_upper:.3g} s (bandwidth > {bandwidth_lower:.3g} Hz)")
                fix = ("pass timing={'period_us': ..., 'settling_delay_us': ..., "
                       "'window_us': ...}" if tm is None
                       else "use a higher gain or a shorter settling delay")
                raise CalibrationError(
                    f"measure_settling: not resolved because {reason}{bounds}; {fix}"
                )
            return SettlingResult(
                resolved=False, beta=beta_hat, beta_u=beta_u, tau_s=None, tau_u_s=None,
                bandwidth_hz=None, bandwidth_u_hz=None, bandwidth_ratio=None,
                residual_rms_v=noise, unresolved_reason=reason, **common,
            )
        assert tm is not None
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
        lt_u = math.sqrt(s2 / jj)
        step("fitted")
    tau = math.exp(lt)
    tau_u = tau * lt_u
    bw = 1 / (2 * math.pi * tau)
    bw_u = bw * lt_u
    result = SettlingResult(
        resolved=True, beta=beta_hat, beta_u=beta_u, tau_s=tau, tau_u_s=tau_u,
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


# --------------------------------------------------------------------------------------------
# 6. the calibration file
# --------------------------------------------------------------------------------------------

#: Routine name -> result class, in the order :func:`run_all` runs them.
ROUTINES: dict[str, type[_Result]] = {
    "operating_point": OperatingPointResult,
    "dark": DarkResult,
    "linearity": LinearityResult,
    "gamma": GammaResult,
    "registration": RegistrationResult,
    "settling": SettlingResult,
}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class CalibrationFile:
    """A versioned set of calibration results with a content-hash id.

    Attributes
    ----------
    results:
        Routine name (see :data:`ROUTINES`) -> its result record.
    bench_settings:
        ``bench.settings()`` snapshot taken when the calibration ran.
    created:
        ISO 8601 UTC time of creation.
    toolkit_version:
        ``lsi_hw.__version__`` that wrote it.
    schema_version:
        Layout version (:data:`CALIBRATION_SCHEMA_VERSION`).

    The :attr:`id` hashes everything but ``created``: the same results on the same bench
    settings give the same id.  Benches record it as ``calibration_id`` in every snapshot
    (``SimBench(calibration_id=cal.id)``).
    """

    results: Mapping[str, _Result]
    bench_settings: Mapping[str, Any]
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    toolkit_version: str = __version__
    schema_version: int = CALIBRATION_SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name, res in self.results.items():
            cls = ROUTINES.get(name)
            if cls is None or not isinstance(res, cls):
                raise ConfigError(
                    f"calibration result {name!r} must be a {cls.__name__ if cls else '?'}; "
                    f"known routines: {', '.join(ROUTINES)}"
                )
        object.__setattr__(self, "results", dict(self.results))
        object.__setattr__(self, "bench_settings", jsonable(dict(self.bench_settings)))

    def _content(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "toolkit_version": self.toolkit_version,
            "bench_settings": self.bench_settings,
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }

    @property
    def id(self) -> str:
        """Short content hash: first 12 hex digits of SHA-256 over the canonical JSON of
        schema version, toolkit version, bench settings and results (not ``created``)."""
        try:
            text = _canonical(self._content())
        except ValueError:
            raise CalibrationError("calibration content holds non-finite numbers") from None
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written by :meth:`save`."""
        return {"id": self.id, "created": self.created, **self._content()}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> str:
        """Write the JSON file atomically (:func:`lsi_hw.atomic.atomic_write`: temporary
        file, fsync, rename; permissions from the umask); returns the id.

        Parameters
        ----------
        path:
            The file to write (its folder must exist).
        overwrite:
            Replace an existing file (default); False refuses it with ConfigError.
        """
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)
        atomic_write(path, lambda fh: fh.write(text + "\n"), mode="w", encoding="utf-8",
                     overwrite=overwrite)
        return self.id

    def summary_lines(self) -> list[str]:
        """Short human summary: one line per routine (``name: what it found``), then its
        notes (what the bench did not know)."""
        lines = []
        for name, result in self.results.items():
            first, *notes = result.summary_lines()
            lines.append(f"{name}: {first}")
            lines.extend(f"  {n}" for n in notes)
        return lines

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "calibration document"
                  ) -> CalibrationFile:
        """Rebuild from :meth:`to_dict` output, checking the layout, every field's type, the
        schema version and the id.

        Parameters
        ----------
        doc:
            The parsed JSON document.
        source:
            What to name in error messages (e.g. ``calibration file /path/cal.json``).

        Raises
        ------
        CalibrationFileError
            Not an object, missing or unknown entries, a wrong type, another schema
            version, or an ``id`` that is missing or does not match the content.
        """
        try:
            return cls._from_dict(doc, source)
        except RecursionError:
            raise CalibrationFileError(f"{source} is nested too deeply to be a calibration "
                                       "file") from None

    @classmethod
    def _from_dict(cls, doc: Any, source: str) -> CalibrationFile:
        if not isinstance(doc, Mapping):
            raise CalibrationFileError(f"{source} must hold a JSON object; got "
                                       f"{_json_type(doc)}")
        version = doc.get("schema_version")
        if isinstance(version, bool) or version != CALIBRATION_SCHEMA_VERSION:
            raise CalibrationFileError(
                f"{source}: schema version {version!r} is not supported: this toolkit "
                f"({__version__}) reads version {CALIBRATION_SCHEMA_VERSION}; re-run the "
                "calibration (lsi_hw.calibration.run_all) or convert the file"
            )
        expected = {"id": str, "created": str, "toolkit_version": str, "schema_version": int,
                    "bench_settings": Mapping, "results": Mapping}
        unknown = sorted(set(doc) - set(expected))
        if unknown:
            raise CalibrationFileError(f"{source}: unknown entries {unknown}; allowed: "
                                       f"{', '.join(sorted(expected))}")
        for key, kind in expected.items():
            if key not in doc:
                what = ("the file cannot be checked against its content" if key == "id"
                        else "the file is incomplete")
                raise CalibrationFileError(f"{source}: {key!r} missing; {what}")
            if not isinstance(doc[key], kind):
                raise CalibrationFileError(
                    f"{source}: {key!r} is {_json_type(doc[key])}; expected {_hint_text(kind)}"
                )
        results = {}
        for name, data in doc["results"].items():
            if name not in ROUTINES:
                raise CalibrationFileError(f"{source}: unknown calibration routine {name!r}; "
                                           f"known: {', '.join(ROUTINES)}")
            results[name] = ROUTINES[name].from_dict(data, f"{source}: results.{name}")
        out = cls(results=results, bench_settings=doc["bench_settings"],
                  created=doc["created"], toolkit_version=doc["toolkit_version"],
                  schema_version=int(version))
        if doc["id"] != out.id:
            raise CalibrationFileError(
                f"{source}: id {doc['id']!r} does not match its content "
                f"({out.id!r}): the file was edited or corrupted"
            )
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationFile:
        """Read a file written by :meth:`save`.

        Raises
        ------
        CalibrationFileError
            (a ConfigError, one line naming ``path``) The file cannot be read, is larger
            than :data:`MAX_CALIBRATION_FILE_BYTES`, is not UTF-8, not JSON (NaN/Infinity
            included), nested too deeply, malformed (see :meth:`from_dict`), of another
            schema version, or its id is missing or does not match its content.
        """
        where = f"calibration file {os.fspath(path)}"
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_CALIBRATION_FILE_BYTES + 1)
        except OSError as exc:
            raise CalibrationFileError(f"{where} cannot be read ({exc.strerror or exc})"
                                       ) from None
        if len(raw) > MAX_CALIBRATION_FILE_BYTES:
            raise CalibrationFileError(
                f"{where} is larger than {MAX_CALIBRATION_FILE_BYTES // 2**20} MiB: not a "
                "calibration file"
            )
        try:
            doc = parse_json_strict(raw, where)
        except ConfigError as exc:
            raise CalibrationFileError(str(exc)) from None
        return cls.from_dict(doc, source=where)


def run_all(
    bench: Bench,
    *,
    size: int = 32,
    registration_size: int | None = None,
    routines: Sequence[str] | None = None,
    allow_white: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> CalibrationFile:
    """Run every calibration routine on ``bench`` and collect a :class:`CalibrationFile`.

    The operating point (:func:`measure_operating_point`) is always measured first and
    recorded: it says what fraction of the digitizer's range the brightest typical
    reading uses and recommends a gain and range.  A bench set up for typical scenes
    (30-80 % of full scale) clips on a full-screen white with every mirror on (typical
    scenes average about a third of the peak luminance), so the bright stimuli are then
    scaled to stay below :data:`STIMULUS_FRACTION` of the clipping level
    (:meth:`OperatingPointResult.stimulus_options`: a lower white level for the dark
    leakage and the settling step, a dithered "on" mask for the gamma fit, smaller open
    fractions for the linearity); where full white fits, every routine keeps its defaults.
    Options given in ``options`` win over the scaled ones.

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask side for the operating point, dark, linearity, gamma and settling routines,
        pixels.
    registration_size:
        Mask side for the registration (a power of two; default ``size``).
    routines:
        Subset of :data:`ROUTINES` to run (default: all, in that order); the operating
        point is measured in any case.
    allow_white:
        Let :func:`measure_dark` show a white scene (leakage).
    options:
        Extra keyword arguments per routine name, e.g.
        ``{"settling": {"require_resolved": True}}``.
    progress:
        Show a tqdm bar over the routines.

    Raises
    ------
    CalibrationError
        From the first routine that fails (nothing is returned then).
    """
    names = list(ROUTINES) if routines is None else list(routines)
    unknown = [n for n in names if n not in ROUTINES]
    if unknown:
        raise ConfigError(f"unknown routines {unknown}; allowed: {', '.join(ROUTINES)}")
    names = ["operating_point"] + [n for n in names if n != "operating_point"]
    opts = {k: dict(v) for k, v in (options or {}).items()}
    bad = sorted(set(opts) - set(ROUTINES))
    if bad:
        raise ConfigError(f"options for unknown routines {bad}; allowed: {', '.join(ROUTINES)}")
    calls: dict[str, Callable[[], _Result]] = {
        "operating_point": lambda: measure_operating_point(bench, size=size,
                                                           **opts.get("operating_point", {})),
        "dark": lambda: measure_dark(bench, size=size, allow_white=allow_white,
                                     **opts.get("dark", {})),
        "linearity": lambda: check_linearity_and_gain(bench, size=size,
                                                      **opts.get("linearity", {})),
        "gamma": lambda: fit_monitor_gamma(bench, size=size, **opts.get("gamma", {})),
        "registration": lambda: register_dmd_to_scene(
            bench, registration_size or size, **opts.get("registration", {})),
        "settling": lambda: measure_settling(bench, size=size, **opts.get("settling", {})),
    }
    snapshot = bench.settings()
    results: dict[str, _Result] = {}
    with _progress(progress, len(names), "calibration") as step:
        for name in names:
            results[name] = calls[name]()
            point = results[name]
            if isinstance(point, OperatingPointResult):
                for routine, scaled in point.stimulus_options().items():
                    opts[routine] = {**scaled, **opts.get(routine, {})}
            step(name)
    return CalibrationFile(results=results, bench_settings=snapshot)
