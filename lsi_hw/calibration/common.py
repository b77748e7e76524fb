"""What every calibration routine shares (the routines are in the sibling modules).

* the bench's declared detector values (:func:`read_declared`: typed Bench properties, None
  where the bench does not know them) and the notes a result carries for those it lacks
  (:func:`unknown_notes`, ``NOTE_NO_*``);
* the measurement plumbing: a progress bar (:func:`progress_bar`), argument checks
  (:func:`check_count`, :func:`check_mask_shape`), uniform scenes and held-mask pattern
  blocks (:func:`uniform_scenes`, :func:`held_patterns`, :func:`held_readings`), a checked
  ``bench.measure`` (:func:`measure_checked`), the saturation check
  (:func:`check_saturation`, :data:`SATURATION_MARGIN`), evenly dithered masks
  (:func:`bayer_mask`);
* levels of repeated readings with the quantization term (:func:`mean_level`,
  :func:`quantization_bias_bound`);
* the base of every result record (:class:`CalibrationResult`: JSON round trip, type
  checks, summaries) with its JSON helpers (:func:`json_type`, :func:`hint_text`), and
  number formatting (:func:`format_si`, :func:`finite_or_none`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.operating_point import finite_number
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement, jsonable

#: Fraction of the clipping level above which a reading counts as saturated.
SATURATION_MARGIN: float = 0.98


class CalibrationFileError(ConfigError, CalibrationError):
    """A calibration file cannot be used: unreadable, not JSON, malformed, of another
    schema, or edited (its id does not match its content).  Both a
    :class:`~lsi_hw.errors.ConfigError` and a :class:`~lsi_hw.errors.CalibrationError`."""


# --------------------------------------------------------------------------------------------
# declared bench values, progress, quantization, pattern blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
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
    return finite_number(f"{type(bench).__name__}.{name}", value, unit, positive=positive,
                         alternative="None when the bench does not know it")


def read_declared(bench: Bench) -> Declared:
    """Read the typed detector properties of ``bench`` once (validated)."""
    saturation = _bench_number(bench, "saturation_v", "V")
    full_scale = _bench_number(bench, "digitizer_range_v", "V")
    limits = [v for v in (saturation, full_scale) if v is not None]
    return Declared(
        lsb_v=_bench_number(bench, "digitizer_lsb_v", "V"),
        clip_v=min(limits) if limits else None,
        gain_db=_bench_number(bench, "gain_db", "dB", positive=False),
        v_per_a=_bench_number(bench, "gain_v_per_a", "V/A"),
        bandwidth_hz=_bench_number(bench, "bandwidth_hz", "Hz"),
        range_v=full_scale,
        saturation_v=saturation,
    )


#: Notes a result carries when the bench does not know a value the routine uses.
NOTE_NO_LSB = ("digitizer step unknown (bench.digitizer_lsb_v is None): the quantization "
               "bias is not in the uncertainties")
NOTE_NO_CLIP = ("clipping level unknown (bench.saturation_v and bench.digitizer_range_v "
                "are None): readings were not checked for saturation")
NOTE_NO_V_PER_A = ("transimpedance unknown (bench.gain_v_per_a is None): no photocurrent "
                   "and no declared gain step")
NOTE_NO_BANDWIDTH = ("declared bandwidth unknown (bench.bandwidth_hz is None): no "
                     "measured-to-declared ratio")


def unknown_notes(declared: Declared, *, lsb: bool = False, clip: bool = False,
                  v_per_a: bool = False, bandwidth: bool = False) -> tuple[str, ...]:
    """The notes for the declared values a routine uses that the bench does not know."""
    out = []
    if lsb and declared.lsb_v is None:
        out.append(NOTE_NO_LSB)
    if clip and declared.clip_v is None:
        out.append(NOTE_NO_CLIP)
    if v_per_a and declared.v_per_a is None:
        out.append(NOTE_NO_V_PER_A)
    if bandwidth and declared.bandwidth_hz is None:
        out.append(NOTE_NO_BANDWIDTH)
    return tuple(out)


@contextmanager
def progress_bar(enabled: bool, total: int, desc: str) -> Iterator[Callable[[str], None]]:
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


def mean_level(readings: np.ndarray, lsb_v: float | None) -> tuple[float, float, float]:
    """(mean, standard uncertainty incl. quantization, std) of repeated readings, volts."""
    r = np.asarray(readings, dtype=np.float64).ravel()
    mean = float(r.mean())
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    u_stat = std / math.sqrt(r.size)
    u_q = quantization_bias_bound(std, lsb_v) / math.sqrt(3.0)
    return mean, math.hypot(u_stat, u_q), std


def held_patterns(masks: np.ndarray, hold: int, discard: int, name: str) -> PatternSet:
    """Each mask shown ``discard + hold`` times in a row (readings k-major)."""
    per = int(discard) + int(hold)
    return PatternSet(np.repeat(np.asarray(masks, dtype=np.uint8), per, axis=0), name=name)


def held_readings(values: np.ndarray, n_masks: int, hold: int, discard: int) -> np.ndarray:
    """(B, n_masks, hold) readings left after dropping the first ``discard`` of each hold."""
    v = np.asarray(values, dtype=np.float64)
    return v.reshape(v.shape[0], n_masks, discard + hold)[:, :, discard:]


def check_count(name: str, value: int, lo: int) -> int:
    """``value`` as an int; ConfigError unless it is an integer >= ``lo``."""
    if int(value) != value or int(value) < lo:
        raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)


def check_mask_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """Mask shape (H, W) from a side or a shape; ConfigError below 2 x 2 pixels."""
    if isinstance(size, (int, np.integer)):
        shape = (int(size), int(size))
    else:
        shape = (int(size[0]), int(size[1]))
    if min(shape) < 2:
        raise ConfigError(f"mask size {size!r} must be at least 2 x 2 pixels")
    return shape


def check_saturation(values: np.ndarray, clip: float | None, what: str) -> None:
    """CalibrationError when readings reach the clipping level ``clip`` (V; None: unknown,
    nothing checked)."""
    if clip is not None and np.max(np.abs(values)) >= SATURATION_MARGIN * clip:
        raise CalibrationError(
            f"{what}: readings reach {np.max(np.abs(values)):.4g} V, at the clipping level "
            f"{clip:g} V (amplifier saturation / digitizer range); lower the gain or the "
            "scene level and run again"
        )


def measure_checked(bench: Bench, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
    """``bench.measure(scenes, patterns)``; CalibrationError for readings of the wrong shape
    or non-finite ones."""
    meas = bench.measure(scenes, patterns)
    if meas.values.shape != (len(scenes), patterns.m):
        raise CalibrationError(
            f"bench returned readings of shape {meas.values.shape}; expected "
            f"{(len(scenes), patterns.m)}"
        )
    if not np.all(np.isfinite(meas.values)):
        raise CalibrationError("bench returned non-finite readings (NaN/inf)")
    return meas


def uniform_scenes(levels: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """(len(levels), H, W) uint8 full-screen scenes, one per drive level; ConfigError unless
    the levels are integers in 0..255."""
    lv = np.asarray(levels)
    if lv.ndim != 1 or lv.size == 0 or np.any(lv < 0) or np.any(lv > 255) or np.any(lv != lv // 1):
        raise ConfigError(f"drive levels {levels!r} must be integers in 0..255")
    return np.broadcast_to(lv.astype(np.uint8)[:, None, None], (lv.size, *shape)).copy()


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


# --------------------------------------------------------------------------------------------
# result records
# --------------------------------------------------------------------------------------------


class CalibrationResult:
    """Base (mixin) of every calibration result record: JSON round trip and one-line summary
    of a frozen result dataclass.

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
                                       f"{json_type(data)}")
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


def json_type(value: Any) -> str:
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


def hint_text(hint: Any) -> str:
    """A field's type in JSON words, e.g. ``a number or null``, ``an array of integers``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(hint_text(a) for a in args)
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
            f"{where} is {json_type(value)}; expected {hint_text(hint)}") from None


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


def format_si(value: float | None, unit: str, digits: int = 4) -> str:
    """``value`` with an SI prefix, e.g. ``3.012 mV``; ``?`` for None."""
    if value is None:
        return "?"
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    exp = min(max(math.floor(math.log10(abs(value)) / 3), -4), 3)
    prefix = {-4: "p", -3: "n", -2: "u", -1: "m", 0: "", 1: "k", 2: "M", 3: "G"}[exp]
    return f"{value / 10 ** (3 * exp):.{digits}g} {prefix}{unit}"


def finite_or_none(x: float | None) -> float | None:
    """float, or None for None / non-finite (keeps results strict JSON)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
