"""Thorlabs PDA100A2 switchable-gain Si photodetector read through a digitizer.

The PDA100A2 is a photodiode plus a transimpedance amplifier with 8 gain steps
(0-70 dB).  Its gain is set by a **front-panel knob**: no driver can set or read it, so
the gain given here is *user-declared*, recorded in every settings snapshot, and must
be checked by calibration (a wrong declaration scales every photocurrent by the ratio
of the V/A values).  Per-gain transimpedance, bandwidth and noise come from
:data:`lsi_hw.specs.PDA100A2_GAINS` (see there which values are confirmed).

The output (0-10 V into Hi-Z, 0-5 V into 50 ohm) is sampled by a
:class:`~lsi_hw.drivers.digitizers.base.Digitizer` started by the DMD's TRIG_OUT at the
start of every pattern.  :meth:`PDA100A2.arm` derives the per-pattern timing from the
amplifier's bandwidth:

* ``tau = 1 / (2 pi f_3dB)`` (first-order low-pass), settling delay
  ``settling_time_constants * tau + extra_delay_us`` (5 tau leaves exp(-5) = 0.7 % of
  the previous pattern's step), rounded up to whole samples;
* averaging window = the rest of the exposure minus ``end_margin_us``, whole samples;
* if delay + window do not fit in the exposure (high gain = low bandwidth, e.g. 70 dB:
  tau = 53 us, 5 tau = 265 us > the DMD's 235 us), the delay is capped so that the
  window keeps ``min_window_fraction`` of the usable exposure, and a
  :class:`SettlingWarning` states the residual fraction ``exp(-delay / tau)`` of the
  previous reading that leaks into each reading;
* digitizer range: the smallest range covering the amplifier's swing (10 V Hi-Z /
  5 V 50 ohm).

:meth:`PDA100A2.read` warns (:class:`SaturationWarning`) when readings are within 2 %
of the amplifier's saturation voltage or of the digitizer range.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lsi_hw.drivers.digitizers.base import Digitizer
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import BenchTiming, Detector
from lsi_hw.specs import PDA100A2_GAINS, GainStep, pda100a2_gain

__all__ = [
    "GAIN_STEPS_DB",
    "LOADS",
    "PDA100A2",
    "ReadingTiming",
    "SaturationWarning",
    "SettlingWarning",
]

#: Amplifier loads: "hi-z" (e.g. a DAQ input, 1 Mohm scope input) or "50ohm" (terminated).
LOADS: tuple[str, ...] = ("hi-z", "50ohm")
#: Readings this close to saturation (fraction of it) count as saturated.
SATURATION_FRACTION: float = 0.98


class SaturationWarning(UserWarning):
    """Some readings reached the amplifier's saturation or the digitizer's range."""


class SettlingWarning(UserWarning):
    """The amplifier cannot settle to the requested number of time constants."""


@dataclass(frozen=True)
class ReadingTiming:
    """Per-pattern timing derived by :meth:`PDA100A2.timing_for` (SI units).

    Attributes
    ----------
    exposure_s, period_s: DMD pattern exposure and period, s.
    tau_s: amplifier time constant 1 / (2 pi f_3dB), s.
    settling_delay_s: trigger -> first averaged sample, s (whole samples).
    window_s: averaging window, s (whole samples).
    delay_samples, samples_per_reading: the same in samples at ``sample_rate_hz``.
    sample_rate_hz: digitizer sample rate, Hz.
    settling_time_constants: delay / tau actually reached.
    settled: whether the requested number of time constants fits.
    residual_fraction: exp(-delay / tau), the fraction of the previous pattern's step
        still present at the start of the window.
    """

    exposure_s: float
    period_s: float
    tau_s: float
    settling_delay_s: float
    window_s: float
    delay_samples: int
    samples_per_reading: int
    sample_rate_hz: float
    settling_time_constants: float
    settled: bool
    residual_fraction: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)

    def bench_timing(self) -> BenchTiming:
        """Period, settling delay and window as a :class:`~lsi_hw.interfaces.BenchTiming`
        (seconds)."""
        return BenchTiming(period_s=self.period_s, settling_delay_s=self.settling_delay_s,
                           window_s=self.window_s)


def _finite(name: str, value: Any, unit: str, *, lo: float = 0.0, strict: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number ({unit})") from None
    ok = math.isfinite(number) and (number > lo if strict else number >= lo)
    if not ok:
        bound = ">" if strict else ">="
        raise ConfigError(f"{name}={value} must be finite and {bound} {lo} {unit}".rstrip())
    return number


class PDA100A2(Detector):
    """Thorlabs PDA100A2 amplified photodetector + a triggered digitizer.

    Parameters
    ----------
    digitizer:
        The digitizer wired to the amplifier's BNC output (its trigger input to the DMD
        TRIG_OUT).  The detector owns it: :meth:`close` closes it.
    gain_db:
        The gain step set on the front-panel knob, dB: 0, 10, ..., 70.  **User-declared**:
        the driver cannot set or read the knob; it records this value in every snapshot.
    load:
        ``"hi-z"`` (the digitizer input is high impedance; 10 V swing) or ``"50ohm"``
        (terminated; gain and swing halve to 5 V).
    sample_rate_hz:
        Digitizer sample rate, Hz.
    settling_time_constants:
        Settling delay in amplifier time constants (5 -> 0.7 % residual), >= 0.
    extra_delay_us:
        Added to the settling delay, microseconds (trigger latency, DMD mirror settling).
    end_margin_us:
        Kept free at the end of each exposure, microseconds (trigger jitter, re-arm).
    min_window_fraction:
        When settling does not fit, the window keeps at least this fraction of the
        usable exposure (0 < f <= 1).
    range_v:
        Digitizer input range, volts; None = the smallest range covering the amplifier's
        swing.

    Raises
    ------
    ConfigError
        Unknown gain step or load, or a value out of range; nothing is touched.
    """

    def __init__(
        self,
        digitizer: Digitizer,
        *,
        gain_db: int = 40,
        load: str = "hi-z",
        sample_rate_hz: float = 1e6,
        settling_time_constants: float = 5.0,
        extra_delay_us: float = 0.0,
        end_margin_us: float = 2.0,
        min_window_fraction: float = 0.2,
        range_v: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(digitizer, Digitizer):
            raise ConfigError(
                f"digitizer must be a Digitizer (FakeDigitizer, NiDaqDigitizer, "
                f"VisaScopeDigitizer); got {type(digitizer).__name__}"
            )
        step = pda100a2_gain(gain_db)  # ConfigError naming the allowed steps
        if load not in LOADS:
            raise ConfigError(
                f"load={load!r} is not one of {', '.join(LOADS)}: say 'hi-z' when the "
                "digitizer input is high impedance, '50ohm' when the cable is terminated"
            )
        self._digitizer = digitizer
        self._step: GainStep = step
        self._load = load
        self.sample_rate_hz = _finite("sample_rate_hz", sample_rate_hz, "Hz")
        if self.sample_rate_hz > digitizer.max_sample_rate_hz:
            raise ConfigError(
                f"sample_rate_hz={self.sample_rate_hz:g} exceeds the digitizer's maximum "
                f"{digitizer.max_sample_rate_hz:g} Hz; lower it"
            )
        self.settling_time_constants = _finite(
            "settling_time_constants", settling_time_constants, "", strict=False
        )
        self.extra_delay_s = _finite("extra_delay_us", extra_delay_us, "us", strict=False) * 1e-6
        self.end_margin_s = _finite("end_margin_us", end_margin_us, "us", strict=False) * 1e-6
        self.min_window_fraction = _finite("min_window_fraction", min_window_fraction, "")
        if self.min_window_fraction > 1:
            raise ConfigError(f"min_window_fraction={min_window_fraction} must be in (0, 1]")
        swing = step.saturation_v(load)
        if range_v is None:
            chosen = digitizer.smallest_range_covering(swing)
            if chosen is None:
                largest = max(digitizer.ranges_v or (0.0,))
                raise ConfigError(
                    f"the digitizer's largest range ±{largest:g} V is below the amplifier's "
                    f"{swing:g} V swing into {load}: terminate into 50 ohm (5 V swing), "
                    "use a digitizer with a larger range, or pass range_v explicitly"
                )
            self.range_v = chosen
        else:
            self.range_v = digitizer.check_range(range_v)
        self._timing: ReadingTiming | None = None
        self._n_readings = 0
        self._last_saturated = 0
        self._register_settings()

    def _register_settings(self) -> None:
        """The typed settings registry (changes take effect at the next :meth:`arm`)."""
        digitizer = self._digitizer
        self.add_setting("gain_db", "enum", lambda: self._step.gain_db, self._declare_gain,
                         GAIN_STEPS_DB, unit="dB",
                         doc="front-panel gain step (user-declared: turn the knob to match)")
        self.add_setting("load", "enum", lambda: self._load, self._declare_load, LOADS,
                         doc="hi-z (unterminated digitizer input) or 50ohm (terminated)")
        if digitizer.ranges_v:
            self.add_setting("range_v", "enum", lambda: self.range_v, self._set_range,
                             tuple(digitizer.ranges_v), unit="V",
                             doc="digitizer input range (reads -range..+range)")
        else:
            self.add_setting("range_v", "float", lambda: self.range_v, self._set_range,
                             (0.0, None), unit="V",
                             doc="digitizer input range (reads -range..+range)")
        self.add_setting("sample_rate_hz", "float", lambda: self.sample_rate_hz,
                         self._set_sample_rate,
                         (0.0, digitizer.max_sample_rate_hz
                          if math.isfinite(digitizer.max_sample_rate_hz) else None),
                         unit="Hz", doc="digitizer sample clock")
        self.add_setting("settling_time_constants", "float",
                         lambda: self.settling_time_constants, self._set_settling, (0.0, None),
                         doc="settling delay before each reading, in amplifier time constants")
        for name, doc in (("v_per_a", "transimpedance at this gain and load"),
                          ("bandwidth_hz", "-3 dB bandwidth at this gain"),
                          ("saturation_v", "output swing at this gain and load")):
            unit = {"v_per_a": "V/A", "bandwidth_hz": "Hz", "saturation_v": "V"}[name]
            self.add_setting(name, "float", lambda n=name: getattr(self, n), unit=unit,
                             doc=doc)

    def _declare_gain(self, gain_db: int) -> None:
        self._step = pda100a2_gain(gain_db)
        self._timing = None  # the settling delay follows the bandwidth

    def _declare_load(self, load: str) -> None:
        self._load = load
        self._timing = None

    def _set_range(self, range_v: float) -> None:
        self.range_v = self._digitizer.check_range(range_v)

    def _set_sample_rate(self, rate_hz: float) -> None:
        self.sample_rate_hz = _finite("sample_rate_hz", rate_hz, "Hz")

    def _set_settling(self, constants: float) -> None:
        self.settling_time_constants = _finite("settling_time_constants", constants, "",
                                               strict=False)

    # ------------------------------------------------------------------ properties
    @property
    def digitizer(self) -> Digitizer:
        """The digitizer reading the amplifier output."""
        return self._digitizer

    @property
    def gain_db(self) -> float:
        """User-declared gain step, dB (the knob; not readable by the driver)."""
        return float(self._step.gain_db)

    @property
    def load(self) -> str:
        """Amplifier load, ``"hi-z"`` or ``"50ohm"``."""
        return self._load

    @property
    def v_per_a(self) -> float:
        """Transimpedance at this gain and load, V/A."""
        return self._step.v_per_a(self._load)

    @property
    def bandwidth_hz(self) -> float:
        """-3 dB bandwidth at this gain, Hz."""
        return self._step.bandwidth_hz

    @property
    def tau_s(self) -> float:
        """First-order time constant 1 / (2 pi f_3dB), seconds."""
        return 1.0 / (2.0 * math.pi * self._step.bandwidth_hz)

    @property
    def saturation_v(self) -> float:
        """Output saturation, volts: 10 V into Hi-Z, 5 V into 50 ohm."""
        return self._step.saturation_v(self._load)

    @property
    def timing(self) -> ReadingTiming | None:
        """The timing of the last :meth:`arm` (None before)."""
        return self._timing

    @property
    def digitizer_range_v(self) -> float:
        """Input range of the digitizer in use, volts (it reads -range..+range)."""
        return self.range_v

    @property
    def digitizer_lsb_v(self) -> float | None:
        """The digitizer's ADC step at :attr:`range_v`, volts (None when the digitizer
        does not state its resolution)."""
        return self._digitizer.step_v(self.range_v)

    def reading_timing(self, exposure_us: float, period_us: float) -> BenchTiming:
        """Settling delay and window that :meth:`arm` would use, seconds (as
        :meth:`timing_for`, without its :class:`SettlingWarning`; the warning comes when
        the detector is armed).

        Raises
        ------
        ConfigError
            Bad timing (see :meth:`timing_for`).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SettlingWarning)
            return self.timing_for(exposure_us, period_us).bench_timing()

    # ------------------------------------------------------------------ timing
    def timing_for(self, exposure_us: float, period_us: float) -> ReadingTiming:
        """Derive settling delay and averaging window for one pattern timing.

        Pure computation (nothing is touched); emits :class:`SettlingWarning` when the
        requested settling does not fit in the exposure.

        Parameters
        ----------
        exposure_us:
            DMD display time per pattern, microseconds.
        period_us:
            DMD pattern period, microseconds (>= exposure).

        Raises
        ------
        ConfigError
            Bad timing, or an exposure too short to hold one averaged sample.
        """
        exposure = _finite("exposure_us", exposure_us, "us") * 1e-6
        period = _finite("period_us", period_us, "us") * 1e-6
        if period < exposure * (1 - 1e-12):
            raise ConfigError(
                f"period_us={period_us} is shorter than exposure_us={exposure_us}; "
                "need 0 < exposure <= period"
            )
        rate = self.sample_rate_hz
        tau = self.tau_s
        usable = exposure - self.end_margin_s
        usable_samples = math.floor(usable * rate + 1e-9)
        if usable_samples < 2:
            raise ConfigError(
                f"exposure_us={exposure_us} minus the {self.end_margin_s * 1e6:g} us end "
                f"margin holds {max(usable_samples, 0)} samples at {rate:g} Hz; need >= 2 "
                "(one settling, one averaged): lengthen the exposure or raise sample_rate_hz"
            )
        wanted_delay = self.settling_time_constants * tau + self.extra_delay_s
        wanted_samples = math.ceil(wanted_delay * rate - 1e-9)
        min_window = max(1, math.ceil(self.min_window_fraction * usable_samples - 1e-9))
        if wanted_samples + min_window <= usable_samples:
            delay_samples, settled = wanted_samples, True
        else:
            delay_samples, settled = max(0, usable_samples - min_window), False
        window_samples = usable_samples - delay_samples
        delay_s = delay_samples / rate
        reached = max(0.0, delay_s - self.extra_delay_s) / tau
        residual = math.exp(-reached)
        timing = ReadingTiming(
            exposure_s=exposure,
            period_s=period,
            tau_s=tau,
            settling_delay_s=delay_s,
            window_s=window_samples / rate,
            delay_samples=delay_samples,
            samples_per_reading=window_samples,
            sample_rate_hz=rate,
            settling_time_constants=reached,
            settled=settled,
            residual_fraction=residual,
        )
        if not settled:
            warnings.warn(
                SettlingWarning(
                    f"at {self._step.gain_db} dB (f_3dB = {self.bandwidth_hz:g} Hz, tau = "
                    f"{tau * 1e6:.1f} us) {self.settling_time_constants:g} tau = "
                    f"{wanted_delay * 1e6:.1f} us of settling do not fit in the "
                    f"{exposure * 1e6:g} us exposure; the delay is capped at "
                    f"{delay_s * 1e6:.1f} us ({reached:.2f} tau), so {residual:.1%} of the "
                    "previous pattern's step leaks into each reading.  Use a lower gain, "
                    "a longer exposure, or correct it by calibration."
                ),
                stacklevel=2,
            )
        return timing

    # ------------------------------------------------------------------ Detector hooks
    def _do_arm(self, n_readings: int, exposure_us: float, period_us: float) -> None:
        timing = self.timing_for(exposure_us, period_us)
        self._digitizer.configure(
            n_readings=n_readings,
            sample_rate_hz=timing.sample_rate_hz,
            settling_delay_s=timing.settling_delay_s,
            window_s=timing.window_s,
            range_v=self.range_v,
            trigger=None,
            period_s=timing.period_s,
        )
        self._digitizer.start()
        self._timing = timing
        self._n_readings = n_readings

    def _do_read(self, timeout_s: float) -> np.ndarray:
        volts = self._digitizer.read(timeout_s)
        self._check_saturation(volts)
        return volts

    @property
    def last_read_saturated(self) -> int:
        """Readings of the last read within 2 % of saturation or at the digitizer range."""
        return self._last_saturated

    def read_partial(self) -> np.ndarray:
        """Readings completed before the last :class:`~lsi_hw.errors.DeviceTimeout`, V."""
        return self._digitizer.read_partial()

    def _check_saturation(self, volts: np.ndarray) -> int:
        near_sat = volts >= SATURATION_FRACTION * self.saturation_v
        at_range = np.abs(volts) >= SATURATION_FRACTION * self.range_v
        bad = int(np.count_nonzero(near_sat | at_range))
        self._last_saturated = bad
        if bad:
            warnings.warn(
                SaturationWarning(
                    f"{bad} of {volts.size} readings are within 2 % of the amplifier's "
                    f"saturation ({self.saturation_v:g} V into {self._load}) or at the "
                    f"digitizer range (±{self.range_v:g} V): they are clipped.  Lower the "
                    f"gain (now {self._step.gain_db} dB, user-declared) or the light level."
                ),
                stacklevel=2,
            )
        return bad

    def to_photocurrent_a(self, volts: Any, dark_v: Any = 0.0) -> np.ndarray:
        """Convert readings to photocurrent: ``(volts - dark_v) / v_per_a``, amperes.

        Parameters
        ----------
        volts:
            Readings, volts (any shape).
        dark_v:
            Dark / offset level to subtract, volts (scalar or broadcastable), e.g. a
            reading with all mirrors off (the PDA100A2 offset is about ±6 mV).
        """
        return (np.asarray(volts, dtype=np.float64) - np.asarray(dark_v, dtype=np.float64)) \
            / self.v_per_a

    def _do_settings(self) -> dict[str, Any]:
        step = self._step
        return {
            "model": "Thorlabs PDA100A2",
            "gain_db": step.gain_db,
            "gain_source": "user-declared (front-panel knob; not readable by the driver)",
            "load": self._load,
            "v_per_a": self.v_per_a,
            "bandwidth_hz": step.bandwidth_hz,
            "tau_s": self.tau_s,
            "saturation_v": self.saturation_v,
            "noise_v_rms": step.noise_for(self._load),
            "table_confirmed": step.confirmed,
            "noise_confirmed": step.noise_confirmed,
            "sample_rate_hz": self.sample_rate_hz,
            "settling_time_constants": self.settling_time_constants,
            "extra_delay_s": self.extra_delay_s,
            "end_margin_s": self.end_margin_s,
            "range_v": self.range_v,
            "digitizer_lsb_v": self.digitizer_lsb_v,
            "n_readings": self._n_readings,
            "timing": None if self._timing is None else self._timing.as_dict(),
            "last_read_saturated": self._last_saturated,
            "digitizer": self._digitizer.settings(),
        }

    def _do_close(self) -> None:
        self._digitizer.close()


#: Gain steps accepted by :class:`PDA100A2`, dB.
GAIN_STEPS_DB: tuple[int, ...] = tuple(PDA100A2_GAINS)
