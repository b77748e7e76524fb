"""A digitizer without hardware: voltages from a callback, noise, clipping, fault injection.

:class:`FakeDigitizer` behaves like a real triggered digitizer behind the
:class:`~lsi_hw.drivers.digitizers.base.Digitizer` interface, so driver code (the
PDA100A2 detector, benches) runs unchanged on it:

* the per-reading voltages come from ``source(n_readings) -> (n_readings,) volts``
  (default: 0 V).  The digital twin (``fake-hw`` bench) plugs the simulator in here;
  this module never imports :mod:`lsi_hw.sim` itself;
* Gaussian noise of ``noise_v_rms`` is added to every *sample* (seeded
  :class:`numpy.random.Generator`, or one per read from ``noise_rng``) and the window is
  averaged, so the reading noise falls as 1/sqrt(samples_per_reading) like on a real card;
* every sample is clipped at the ADC range (``clip_v``, default: the configured range);
* ``missing_triggers=k``: only ``n - k`` triggers arrive, so :meth:`read` waits
  ``timeout_s`` (really sleeps, like a blocked driver call) and raises
  :class:`~lsi_hw.errors.DeviceTimeout`; the ``n - k`` completed readings stay
  available from :meth:`read_partial`;
* :attr:`calls` records every call that reached the "device" (configure, start, read,
  stop, close) so tests can check that bad settings were rejected before touching it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lsi_hw.drivers.digitizers.base import Digitizer, DigitizerConfig
from lsi_hw.errors import ConfigError, DeviceTimeout

__all__ = ["FakeDigitizer"]

#: The bipolar input ranges of an NI X Series card (e.g. USB-6361), volts.
X_SERIES_RANGES_V: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class FakeDigitizer(Digitizer):
    """A software digitizer with the behaviour of a triggered, averaging ADC.

    Parameters
    ----------
    source:
        ``source(n_readings) -> array (n_readings,)`` of true input voltages, volts,
        called once per :meth:`read`.  None: 0 V everywhere.
    noise_v_rms:
        Gaussian noise added to every sample, volts rms (>= 0).
    seed:
        Seed or :class:`numpy.random.Generator` of the noise (determinism).
    noise_rng:
        ``noise_rng() -> Generator``, called once per :meth:`read` (after ``source``) for
        the generator of that read's sample noise; None: one stream from ``seed`` for
        every read.  The digital twin keys it by scene, so a scene's noise does not depend
        on what was read before (bit-identical resumed acquisitions).
    missing_triggers:
        Number of triggers that never arrive (fault injection), >= 0.
    clip_v:
        Clip every sample to -clip_v..+clip_v, volts; None = the configured range.
    ranges_v:
        Input ranges offered, volts (default: NI X Series ranges); None = any.
    max_sample_rate_hz:
        Highest accepted sample rate, Hz (default 2 MS/s, a USB-6361 on one channel).
    trigger_line:
        Name reported for the trigger input (default ``"PFI0"``).
    device_id:
        Identity reported in snapshots.
    """

    def __init__(
        self,
        source: Callable[[int], Any] | None = None,
        *,
        noise_v_rms: float = 0.0,
        seed: int | np.random.Generator | None = 0,
        noise_rng: Callable[[], np.random.Generator] | None = None,
        missing_triggers: int = 0,
        clip_v: float | None = None,
        ranges_v: tuple[float, ...] | None = X_SERIES_RANGES_V,
        max_sample_rate_hz: float = 2e6,
        trigger_line: str = "PFI0",
        device_id: str = "fake-digitizer",
    ) -> None:
        super().__init__()
        if source is not None and not callable(source):
            raise ConfigError(f"source must be callable(n_readings) -> volts; got {source!r}")
        if noise_rng is not None and not callable(noise_rng):
            raise ConfigError(f"noise_rng must be callable() -> numpy Generator; got "
                              f"{noise_rng!r}")
        noise = float(noise_v_rms)
        if not (math.isfinite(noise) and noise >= 0):
            raise ConfigError(f"noise_v_rms={noise_v_rms} must be finite and >= 0 V")
        if isinstance(missing_triggers, bool) or int(missing_triggers) != missing_triggers \
                or missing_triggers < 0:
            raise ConfigError(f"missing_triggers={missing_triggers!r} must be an integer >= 0")
        if clip_v is not None and not (math.isfinite(float(clip_v)) and clip_v > 0):
            raise ConfigError(f"clip_v={clip_v} must be finite and > 0 V, or None")
        self.source = source
        self.noise_v_rms = noise
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.noise_rng = noise_rng
        self.missing_triggers = int(missing_triggers)
        self.clip_v = None if clip_v is None else float(clip_v)
        self.ranges_v = None if ranges_v is None else tuple(float(r) for r in ranges_v)
        self.max_sample_rate_hz = float(max_sample_rate_hz)
        self.trigger_line = trigger_line
        self.device_id = device_id
        #: Every call that reached the emulated device: (name, arguments).
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: Triggers received by the last acquisition.
        self.triggers_received = 0

    def _do_configure(self, cfg: DigitizerConfig) -> None:
        self.calls.append(("configure", cfg.as_dict()))

    def _do_start(self) -> None:
        self.calls.append(("start", {}))
        self.triggers_received = 0

    def _samples(self, cfg: DigitizerConfig, volts: np.ndarray) -> np.ndarray:
        """Window samples (n, samples_per_reading) of true voltages ``volts`` (n,)."""
        raw = np.repeat(volts[:, None], cfg.samples_per_reading, axis=1)
        if self.noise_v_rms > 0:
            rng = self.rng if self.noise_rng is None else self.noise_rng()
            raw = raw + rng.normal(0.0, self.noise_v_rms, size=raw.shape)
        clip = cfg.range_v if self.clip_v is None else self.clip_v
        return np.clip(raw, -clip, clip)

    def _do_read_raw(self, timeout_s: float) -> np.ndarray:
        cfg = self._config
        assert cfg is not None
        n = cfg.n_readings
        self.calls.append(("read", {"timeout_s": timeout_s}))
        volts = np.zeros(n) if self.source is None else self.source(n)
        volts = np.asarray(volts, dtype=np.float64)
        if volts.shape != (n,):
            raise ConfigError(
                f"source({n}) returned shape {volts.shape}; it must return ({n},) volts"
            )
        arrived = max(0, n - self.missing_triggers)
        self.triggers_received = arrived
        raw = self._samples(cfg, volts[:arrived])
        if arrived < n:
            time.sleep(timeout_s)  # a real driver call blocks until its timeout
            self._set_partial(raw)
            line = cfg.trigger or self.trigger_line
            raise DeviceTimeout(
                f"{arrived} of {n} triggers arrived within {timeout_s:g} s; check the DMD "
                f"TRIG_OUT cable to {line} and that the pattern sequence was started "
                f"({arrived} completed readings are kept: read_partial())"
            )
        return raw

    def _do_stop(self) -> None:
        self.calls.append(("stop", {}))

    def _do_close(self) -> None:
        self.calls.append(("close", {}))

    def _do_settings(self) -> dict[str, Any]:
        return {
            "noise_v_rms": self.noise_v_rms,
            "missing_triggers": self.missing_triggers,
            "clip_v": self.clip_v,
            "trigger_line": self.trigger_line,
        }
