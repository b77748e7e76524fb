"""The :class:`Digitizer` interface: a triggered ADC giving one averaged value per trigger.

Acquisition model (HARDWARE.md, "Acquisition model")
----------------------------------------------------
The DMD raises TRIG_OUT at the start of every pattern.  Each edge starts one *reading*:
the digitizer waits ``settling_delay_s`` (``delay_samples`` samples at
``sample_rate_hz``) so the photodiode amplifier has settled, then records
``samples_per_reading = round(window_s * sample_rate_hz)`` samples and averages them.
``n_readings`` triggers give ``n_readings`` values, in volts.

Life cycle::

    dig.configure(n_readings=m, sample_rate_hz=1e6, settling_delay_s=10e-6,
                  window_s=200e-6, range_v=10.0, trigger=None, period_s=235e-6)
    dig.start()            # armed: waits for the triggers
    # ... start the DMD sequence ...
    volts = dig.read(timeout_s=2.0)      # (m,) float64, volts
    dig.close()

:meth:`Digitizer.configure` validates everything *before* the device is touched and
raises :class:`~lsi_hw.errors.ConfigError` naming the setting, the allowed range and the
fix.  If the triggers do not all arrive within ``timeout_s``, :meth:`Digitizer.read`
raises :class:`~lsi_hw.errors.DeviceTimeout` ("N of M triggers arrived; check the DMD
TRIG_OUT cable to <line>"); the readings that did complete are kept and returned by
:meth:`Digitizer.read_partial` (and attached to the exception as ``partial``), so no
data is lost.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError, DeviceTimeout

__all__ = ["Digitizer", "DigitizerConfig", "check_resolution_bits"]


@dataclass(frozen=True)
class DigitizerConfig:
    """A validated digitizer configuration (SI units).

    Attributes
    ----------
    n_readings: number of triggers (patterns) to acquire.
    sample_rate_hz: sample clock, Hz.
    settling_delay_s: time from a trigger to the first averaged sample, s.
    window_s: averaging window per reading, s.
    range_v: input range, volts (bipolar: the input spans -range_v..+range_v).
    trigger: trigger line/source name, or None for the digitizer's default line.
    period_s: pattern period, s (None if not given).
    samples_per_reading: ``round(window_s * sample_rate_hz)``, >= 1.
    delay_samples: ``round(settling_delay_s * sample_rate_hz)``.
    """

    n_readings: int
    sample_rate_hz: float
    settling_delay_s: float
    window_s: float
    range_v: float
    trigger: str | None
    period_s: float | None
    samples_per_reading: int
    delay_samples: int

    def as_dict(self) -> dict[str, Any]:
        """The configuration as a plain (JSON-serialisable) dict."""
        return asdict(self)


def _positive_finite(name: str, value: Any, unit: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number ({unit})") from None
    ok = math.isfinite(number) and (number >= 0 if allow_zero else number > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value} must be finite and {bound} {unit}")
    return number


def check_resolution_bits(bits: Any) -> int | None:
    """Validate an ADC resolution: an integer 1..32 bits, or None (unknown).

    Raises
    ------
    ConfigError
        Anything else; the message names the value and the allowed range.
    """
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) \
            or not 1 <= int(bits) <= 32:
        raise ConfigError(
            f"resolution_bits={bits!r} must be an integer from 1 to 32 (bits of the ADC), "
            "or None when unknown"
        )
    return int(bits)


class Digitizer(abc.ABC):
    """A triggered, per-pattern averaging ADC (one value per trigger, in volts).

    Subclasses set the class attributes and implement ``_do_configure``, ``_do_start``,
    ``_do_read_raw``, ``_do_stop``, ``_do_close`` and ``_do_settings``.

    Attributes
    ----------
    ranges_v:
        The input ranges the device offers, volts (each means -r..+r); None = any
        positive range is accepted.
    max_sample_rate_hz:
        Highest sample rate accepted by :meth:`configure`, Hz.
    device_id:
        Human-readable identity of the device (model, serial, resource), for snapshots.
    supports_raw:
        Whether :meth:`read_raw` is available.
    default_resolution_bits:
        ADC resolution the class assumes, bits; None = unknown (or readings that are not
        quantized, e.g. a software fake).  Each instance has its own
        :attr:`resolution_bits`, which starts at this value.
    """

    ranges_v: tuple[float, ...] | None = None
    max_sample_rate_hz: float = math.inf
    device_id: str = "digitizer"
    supports_raw: bool = True
    default_resolution_bits: int | None = None

    def __init__(self) -> None:
        self._resolution_bits: int | None = self.default_resolution_bits
        self._config: DigitizerConfig | None = None
        self._running = False
        self._closed = False
        self._partial_raw: np.ndarray = np.zeros((0, 0))

    # ------------------------------------------------------------------ resolution
    @property
    def resolution_bits(self) -> int | None:
        """ADC resolution, bits (None: unknown, or readings that are not quantized)."""
        return self._resolution_bits

    @resolution_bits.setter
    def resolution_bits(self, bits: int | None) -> None:
        self._resolution_bits = check_resolution_bits(bits)

    def step_v(self, range_v: float | None = None) -> float | None:
        """ADC step (LSB) ``2 range_v / 2**resolution_bits``, volts.

        Parameters
        ----------
        range_v:
            Input range, volts (the input spans -range_v..+range_v); default the
            configured one.

        Returns
        -------
        float or None
            None when the resolution is unknown, or no range is given nor configured.
        """
        bits = self._resolution_bits
        if range_v is None:
            range_v = None if self._config is None else self._config.range_v
        if bits is None or range_v is None:
            return None
        return 2.0 * _positive_finite("range_v", range_v, "V") / 2.0**bits

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> DigitizerConfig | None:
        """The configuration in force (None before :meth:`configure`)."""
        return self._config

    @property
    def n_readings(self) -> int:
        """Readings (triggers) per acquisition; 0 before :meth:`configure`."""
        return 0 if self._config is None else self._config.n_readings

    @property
    def samples_per_reading(self) -> int:
        """Averaged samples per reading, ``round(window_s * sample_rate_hz)``."""
        return 0 if self._config is None else self._config.samples_per_reading

    @property
    def delay_samples(self) -> int:
        """Samples skipped after each trigger, ``round(settling_delay_s * sample_rate_hz)``."""
        return 0 if self._config is None else self._config.delay_samples

    @property
    def is_running(self) -> bool:
        """Whether the digitizer is armed / acquiring."""
        return self._running

    def configure(
        self,
        *,
        n_readings: int,
        sample_rate_hz: float,
        settling_delay_s: float,
        window_s: float,
        range_v: float,
        trigger: str | None = None,
        period_s: float | None = None,
    ) -> DigitizerConfig:
        """Validate a configuration, then apply it to the device (not yet armed).

        Parameters
        ----------
        n_readings:
            Number of triggers (patterns) to acquire, >= 1.
        sample_rate_hz:
            Sample clock, Hz; > 0 and <= :attr:`max_sample_rate_hz`.
        settling_delay_s:
            Delay from each trigger to the first averaged sample, seconds, >= 0.
        window_s:
            Averaging window per reading, seconds; must hold at least one sample.
        range_v:
            Input range in volts (the input spans -range_v..+range_v); one of
            :attr:`ranges_v` when the device has discrete ranges, else > 0.
        trigger:
            Trigger line/source (e.g. ``"PFI0"``, ``"EXT"``); None = the line given to
            the constructor.
        period_s:
            Pattern period, seconds.  Optional here (required by scopes); when given,
            ``settling_delay_s + window_s`` must fit inside it.

        Returns
        -------
        DigitizerConfig
            The validated configuration now in force.

        Raises
        ------
        ConfigError
            Any value out of range (the device is not touched).
        """
        if self._closed:
            raise ConfigError(f"{type(self).__name__} is closed: create a new one")
        if isinstance(n_readings, bool) or not isinstance(n_readings, (int, np.integer)):
            raise ConfigError(f"n_readings={n_readings!r} must be an integer >= 1")
        n = int(n_readings)
        if n < 1:
            raise ConfigError(f"n_readings={n} must be >= 1 (one reading per pattern)")
        rate = _positive_finite("sample_rate_hz", sample_rate_hz, "Hz")
        if rate > self.max_sample_rate_hz:
            raise ConfigError(
                f"sample_rate_hz={rate:g} exceeds this digitizer's maximum "
                f"{self.max_sample_rate_hz:g} Hz; lower the sample rate"
            )
        delay = _positive_finite("settling_delay_s", settling_delay_s, "s", allow_zero=True)
        window = _positive_finite("window_s", window_s, "s")
        spr = round(window * rate)
        if spr < 1:
            raise ConfigError(
                f"window_s={window:g} s holds {window * rate:.3g} samples at "
                f"{rate:g} Hz; need >= 1 sample: lengthen the window or raise the rate"
            )
        rng = self.check_range(range_v)
        if trigger is not None and (not isinstance(trigger, str) or not trigger.strip()):
            raise ConfigError(f"trigger={trigger!r} must be a non-empty line name or None")
        period: float | None = None
        delay_samples = round(delay * rate)
        if period_s is not None:
            period = _positive_finite("period_s", period_s, "s")
            needed = (delay_samples + spr) / rate
            if needed > period * (1 + 1e-9):
                raise ConfigError(
                    f"settling delay + window = {needed * 1e6:.1f} us does not fit in the "
                    f"pattern period {period * 1e6:.1f} us; shorten the window or delay"
                )
        cfg = DigitizerConfig(
            n_readings=n,
            sample_rate_hz=rate,
            settling_delay_s=delay,
            window_s=window,
            range_v=rng,
            trigger=trigger,
            period_s=period,
            samples_per_reading=int(spr),
            delay_samples=int(delay_samples),
        )
        self._check_config(cfg)
        if self._running:
            self.stop()
        self._do_configure(cfg)
        self._config = cfg
        return cfg

    def check_range(self, range_v: Any) -> float:
        """Validate an input range, volts; ConfigError listing the allowed ranges."""
        rng = _positive_finite("range_v", range_v, "V")
        if self.ranges_v:
            for r in self.ranges_v:
                if math.isclose(rng, r, rel_tol=1e-9):
                    return float(r)
            allowed = ", ".join(f"±{r:g}" for r in sorted(self.ranges_v))
            raise ConfigError(
                f"range_v={rng:g} V is not an input range of this digitizer; "
                f"allowed: {allowed} V (pick the smallest that covers the signal)"
            )
        return rng

    def smallest_range_covering(self, volts: float) -> float | None:
        """The smallest input range >= ``volts`` (None if no range is large enough).

        For devices without discrete ranges this is ``volts`` itself.
        """
        if not self.ranges_v:
            return float(volts)
        big_enough = [r for r in self.ranges_v if r >= volts * (1 - 1e-9)]
        return float(min(big_enough)) if big_enough else None

    def _check_config(self, cfg: DigitizerConfig) -> None:  # noqa: B027 - optional hook
        """Device-specific validation (raise ConfigError); must not touch the device."""

    # ------------------------------------------------------------------ acquisition
    def start(self) -> None:
        """Arm the digitizer: from now on every trigger starts one reading.

        Raises
        ------
        ConfigError
            Not configured yet.
        DeviceError
            The device refused to start (subclass by cause).
        """
        cfg = self._require_config()
        if self._running:
            self._do_stop()
            self._running = False
        self._partial_raw = np.zeros((0, cfg.samples_per_reading))
        self._do_start()
        self._running = True

    def read(self, timeout_s: float = 10.0) -> np.ndarray:
        """Wait for all readings and return them, (n_readings,) float64 volts.

        Each value is the mean of the reading's window (after the settling delay).

        Parameters
        ----------
        timeout_s:
            Longest wait for the whole acquisition, seconds (> 0).

        Raises
        ------
        DeviceTimeout
            Not all triggers arrived in time.  The completed readings are kept:
            :meth:`read_partial`, and the exception's ``partial`` attribute.
        ConfigError
            Not started, or a bad timeout.
        """
        return self.read_raw_or_mean(timeout_s, raw=False)

    def read_raw(self, timeout_s: float = 10.0) -> np.ndarray:
        """Like :meth:`read` but return every averaged-window sample.

        Returns
        -------
        numpy.ndarray
            (n_readings, samples_per_reading) float64 volts; settling samples dropped.
        """
        if not self.supports_raw:
            raise ConfigError(f"{type(self).__name__} does not provide raw samples; use read()")
        return self.read_raw_or_mean(timeout_s, raw=True)

    def read_raw_or_mean(self, timeout_s: float, *, raw: bool) -> np.ndarray:
        """Shared body of :meth:`read` and :meth:`read_raw` (see there)."""
        timeout = _positive_finite("timeout_s", timeout_s, "s")
        cfg = self._require_config()
        if not self._running:
            raise ConfigError("the digitizer is not armed: call start() before read()")
        try:
            data = np.asarray(self._do_read_raw(timeout), dtype=np.float64)
        except DeviceTimeout as exc:
            # still armed: stop() or close() aborts; the completed readings are kept
            exc.partial = self.read_partial()  # type: ignore[attr-defined]
            raise
        self._running = False  # the acquisition is complete; start() re-arms
        if data.ndim != 2 or data.shape[0] != cfg.n_readings or data.shape[1] < 1:
            raise AssertionError(
                f"{type(self).__name__}._do_read_raw returned shape {data.shape}; "
                f"expected ({cfg.n_readings}, k>=1)"
            )
        return data if raw else data.mean(axis=1)

    def read_partial(self) -> np.ndarray:
        """The readings completed before the last :class:`DeviceTimeout`, volts (k,)."""
        if self._partial_raw.size == 0:
            return np.zeros(0)
        return self._partial_raw.mean(axis=1)

    def read_partial_raw(self) -> np.ndarray:
        """Raw window samples of the readings completed before the last timeout, (k, s)."""
        return self._partial_raw.copy()

    def _set_partial(self, raw: np.ndarray) -> None:
        """Implementations call this with the completed readings before a timeout."""
        self._partial_raw = np.asarray(raw, dtype=np.float64).copy()

    def stop(self) -> None:
        """Disarm (abort an acquisition in progress); :meth:`start` re-arms."""
        if self._config is not None and not self._closed:
            self._do_stop()
        self._running = False

    def close(self) -> None:
        """Stop and release the device; safe to call twice."""
        if self._closed:
            return
        try:
            if self._running:
                self.stop()
        finally:
            self._closed = True
            self._do_close()

    def __enter__(self) -> Digitizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings(self) -> dict[str, Any]:
        """Snapshot: rate, window, delay, range, trigger, device id (SI units)."""
        cfg = self._config
        out: dict[str, Any] = {
            "type": type(self).__name__,
            "device_id": self.device_id,
            "configured": cfg is not None,
            "resolution_bits": self._resolution_bits,
        }
        if cfg is not None:
            out.update(cfg.as_dict())
        out.update(self._do_settings())
        return out

    def _require_config(self) -> DigitizerConfig:
        if self._closed:
            raise ConfigError(f"{type(self).__name__} is closed: create a new one")
        if self._config is None:
            raise ConfigError("the digitizer is not configured: call configure(...) first")
        return self._config

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _do_configure(self, cfg: DigitizerConfig) -> None: ...

    @abc.abstractmethod
    def _do_start(self) -> None: ...

    @abc.abstractmethod
    def _do_read_raw(self, timeout_s: float) -> np.ndarray:
        """Block until all readings are in; return (n_readings, k) window samples.

        On a timeout: call :meth:`_set_partial` with the completed readings, then raise
        :class:`DeviceTimeout` with the "N of M triggers arrived" message.
        """

    @abc.abstractmethod
    def _do_stop(self) -> None: ...

    def _do_close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def _do_settings(self) -> dict[str, Any]:
        """Device-specific entries of the settings snapshot."""
        return {}
