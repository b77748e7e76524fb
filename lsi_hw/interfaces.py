"""Abstract device roles of a single-pixel camera bench.

One small ABC per role, in the style of python-microscope: each public method checks its
arguments (raising :class:`~lsi_hw.errors.ConfigError` or
:class:`~lsi_hw.errors.PatternError` *before* any device is touched) and then calls a
protected ``_do_*`` method that an implementation overrides.

Trigger and timing model
------------------------
The modulator owns the clock.  After :meth:`Modulator.start` it shows pattern ``k`` for
``exposure_us`` microseconds, one pattern every ``period_us`` microseconds, and raises
its trigger output at the start of every pattern.  The detector's digitizer is armed
beforehand for ``m`` readings; each trigger starts one reading which waits a settling
delay (so the photodiode amplifier, a first-order low-pass of bandwidth ``f_3dB``, has
settled) and then averages a window of samples.  One reading per pattern, in volts.
A :class:`Bench` composes a modulator, a detector and a scene (what the camera looks at)
into ``measure(scenes, patterns) -> Measurement``.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lsi_hw.device_settings import SettingsRegistry
from lsi_hw.errors import ConfigError, PatternError

if TYPE_CHECKING:  # imported for type hints only: keeps the layer rule (errors only)
    from lsi_hw.patterns import PatternSet
    from lsi_hw.types import Measurement

__all__ = [
    "Bench",
    "BenchTiming",
    "Detector",
    "Modulator",
    "Scene",
    "TriggerMode",
    "check_scenes",
]


class TriggerMode(enum.Enum):
    """How a modulator advances from one pattern to the next."""

    INTERNAL = "internal"  #: the modulator's own timer, one pattern per period
    EXTERNAL_POSITIVE = "external-positive"  #: a rising edge on the trigger input
    EXTERNAL_NEGATIVE = "external-negative"  #: a falling edge on the trigger input
    VSYNC = "vsync"  #: the video port's frame sync (DLP video-port streaming)


@dataclass(frozen=True)
class BenchTiming:
    """When, inside each pattern, a reading is taken (SI units: seconds).

    Attributes
    ----------
    period_s:
        Pattern period: start of one pattern to the start of the next, s (> 0).
    settling_delay_s:
        Pattern start (trigger) to the first averaged sample, s (>= 0).
    window_s:
        Length of the averaging window of each reading, s (> 0).

    Raises
    ------
    ConfigError
        A value that is not finite, or out of the ranges above.
    """

    period_s: float
    settling_delay_s: float
    window_s: float

    def __post_init__(self) -> None:
        for name, lo, strict in (("period_s", 0.0, True), ("settling_delay_s", 0.0, False),
                                 ("window_s", 0.0, True)):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"BenchTiming.{name}={value!r} is not a number of seconds"
                                  ) from None
            ok = math.isfinite(number) and (number > lo if strict else number >= lo)
            if not ok:
                bound = "> 0" if strict else ">= 0"
                raise ConfigError(f"BenchTiming.{name}={value!r} must be finite and {bound} s")
            object.__setattr__(self, name, number)

    @classmethod
    def from_us(cls, period_us: float, settling_delay_us: float, window_us: float
                ) -> BenchTiming:
        """Build from microseconds (the unit of the simulator's timing config)."""
        return cls(period_s=float(period_us) * 1e-6,
                   settling_delay_s=float(settling_delay_us) * 1e-6,
                   window_s=float(window_us) * 1e-6)


def check_scenes(scenes: Any) -> np.ndarray:
    """Validate a batch of scenes and return it as an array.

    Scenes are 8-bit drive values of the monitor: (B, H, W) grey or (B, H, W, 3) RGB,
    dtype uint8 (0..255) or float in [0, 1] (fractions of full drive).  A single image
    (H, W) or (H, W, 3) is promoted to a batch of one.

    Raises
    ------
    ConfigError
        Wrong number of dimensions, an empty batch, NaN/inf values, or values outside
        0..255 (uint8) / [0, 1] (float); the message names the first bad scene.
    """
    arr = np.asarray(scenes)
    if arr.dtype == bool or arr.dtype.kind not in "uif":
        raise ConfigError(f"scenes must be numeric arrays; got dtype {arr.dtype}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        arr = arr[None]  # one grey (H, W) or RGB (H, W, 3) image
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
        raise ConfigError(
            f"scenes must be (B, H, W) or (B, H, W, 3); got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ConfigError(f"scenes must not be empty; got shape {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            b = int(np.argwhere(bad)[0][0])
            raise ConfigError(
                f"scene {b} holds NaN or inf values; allowed: finite values in [0, 1]"
            )
        lo, hi = 0.0, 1.0
    elif arr.dtype == np.uint8:
        return arr  # every uint8 value is a valid drive level
    else:
        lo, hi = 0, 255
    out = (arr < lo) | (arr > hi)
    if out.any():
        idx = tuple(int(i) for i in np.argwhere(out)[0])
        raise ConfigError(
            f"scene {idx[0]} has value {arr[idx]} at {idx[1:]}; allowed range [{lo}, {hi}]"
            f" for dtype {arr.dtype}"
        )
    return arr


class _Device(SettingsRegistry, abc.ABC):
    """Common life cycle: settings snapshot, close, context manager; and the typed
    settings registry (:class:`~lsi_hw.device_settings.SettingsRegistry`) through which a
    device says what it exposes (``describe_settings``, ``get_setting``, ``set_setting``).
    """

    def settings(self) -> dict[str, Any]:
        """Snapshot of every setting of this device (JSON-serialisable, SI units)."""
        return self._do_settings()

    @abc.abstractmethod
    def _do_settings(self) -> dict[str, Any]: ...

    def close(self) -> None:
        """Release the device (leaves it in a safe, stopped state)."""
        self._do_close()

    def _do_close(self) -> None:
        """Override to release resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Modulator(_Device):
    """A spatial light modulator showing binary masks (e.g. a DMD), with its own clock.

    Attributes an implementation provides:

    * ``array_shape``: (rows, columns) of the native mirror array.
    * ``max_patterns``: how many masks one :meth:`load` may hold.
    * ``min_exposure_us``: shortest exposure of a 1-bit pattern, microseconds.
    """

    array_shape: tuple[int, int]
    max_patterns: int
    min_exposure_us: float

    def __init__(self) -> None:
        self._loaded: PatternSet | None = None
        self._exposure_us: float = 0.0
        self._period_us: float = 0.0
        self._running = False
        # timing is set by load() (checked against the sequence there), so read-only here
        self.add_setting("exposure_us", "float", lambda: self._exposure_us, unit="us",
                         doc="display time of each pattern of the loaded sequence")
        self.add_setting("period_us", "float", lambda: self._period_us, unit="us",
                         doc="start-to-start time of the loaded sequence's patterns")
        self.add_setting("n_patterns", "int",
                         lambda: 0 if self._loaded is None else int(self._loaded.m),
                         doc="masks in the loaded sequence (0: nothing loaded)")
        self.add_setting("running", "bool", lambda: self._running,
                         doc="whether the sequence is being displayed")

    @property
    def patterns(self) -> PatternSet | None:
        """The pattern set loaded last, or None."""
        return self._loaded

    @property
    def exposure_us(self) -> float:
        """Display time of each pattern, microseconds."""
        return self._exposure_us

    @property
    def period_us(self) -> float:
        """Time from the start of one pattern to the start of the next, microseconds."""
        return self._period_us

    @property
    def is_running(self) -> bool:
        """Whether a sequence is being displayed."""
        return self._running

    def load(
        self,
        patterns: PatternSet,
        *,
        exposure_us: float | None = None,
        period_us: float | None = None,
        trigger: TriggerMode = TriggerMode.INTERNAL,
    ) -> None:
        """Validate ``patterns`` and the timing against the device limits, then load them.

        Parameters
        ----------
        patterns:
            The binary masks, (m, H, W).
        exposure_us:
            Display time per pattern in microseconds (default: ``min_exposure_us``).
        period_us:
            Pattern period in microseconds (default: equal to the exposure).
        trigger:
            How the sequence advances.

        Raises
        ------
        PatternError
            More masks than ``max_patterns``, or masks that do not fit the array.
        ConfigError
            Exposure shorter than ``min_exposure_us`` or longer than the period.
        """
        if patterns.m > self.max_patterns:
            raise PatternError(
                f"{patterns.m} patterns do not fit this modulator: it holds at most "
                f"{self.max_patterns}; split the set into several loads"
            )
        exposure = float(self.min_exposure_us if exposure_us is None else exposure_us)
        period = float(exposure if period_us is None else period_us)
        if not np.isfinite(exposure) or exposure < self.min_exposure_us:
            raise ConfigError(
                f"exposure_us={exposure} is below this modulator's minimum "
                f"{self.min_exposure_us} us for binary patterns"
            )
        if not np.isfinite(period) or period < exposure:
            raise ConfigError(f"period_us={period} must be >= exposure_us={exposure}")
        self._check_fits(patterns)
        self._do_load(patterns, exposure, period, TriggerMode(trigger))
        self._loaded = patterns
        self._exposure_us = exposure
        self._period_us = period

    def _check_fits(self, patterns: PatternSet) -> None:
        """Raise PatternError if the masks cannot be mapped onto the array."""

    @abc.abstractmethod
    def _do_load(
        self, patterns: PatternSet, exposure_us: float, period_us: float, trigger: TriggerMode
    ) -> None: ...

    def start(self) -> None:
        """Start displaying the loaded sequence (ConfigError if nothing is loaded)."""
        if self._loaded is None:
            raise ConfigError("nothing loaded: call load(patterns) before start()")
        self._do_start()
        self._running = True

    def stop(self) -> None:
        """Stop the sequence; the next start() begins again at pattern 0."""
        self._do_stop()
        self._running = False

    def pause(self) -> None:
        """Pause the sequence where it is."""
        self._do_pause()
        self._running = False

    @abc.abstractmethod
    def _do_start(self) -> None: ...

    @abc.abstractmethod
    def _do_stop(self) -> None: ...

    def _do_pause(self) -> None:
        self._do_stop()


class Detector(_Device):
    """A light detector plus digitizer giving one voltage per triggered reading."""

    @property
    @abc.abstractmethod
    def gain_db(self) -> float:
        """The amplifier gain step in dB (user-declared when set by a knob)."""

    @property
    @abc.abstractmethod
    def saturation_v(self) -> float:
        """Output voltage at which the amplifier saturates, volts."""

    @property
    def last_read_saturated(self) -> int:
        """Readings of the last :meth:`read` at or near saturation (0 if it cannot tell)."""
        return 0

    # What calibration needs to know.  A detector that cannot know a value returns None
    # (never a made-up 0); implementations override what they do know.

    @property
    def v_per_a(self) -> float | None:
        """Transimpedance gain at the declared gain step and load, V/A (None: unknown)."""
        return None

    @property
    def bandwidth_hz(self) -> float | None:
        """-3 dB bandwidth of the amplifier at the declared gain, Hz (None: unknown)."""
        return None

    @property
    def digitizer_lsb_v(self) -> float | None:
        """Step (LSB) of the ADC at the input range in use, volts (None: unknown)."""
        return None

    @property
    def digitizer_range_v(self) -> float | None:
        """Full scale of the ADC: it reads -range..+range, volts (None: unknown)."""
        return None

    def reading_timing(self, exposure_us: float, period_us: float) -> BenchTiming | None:
        """Settling delay and averaging window this detector uses for patterns of the
        given exposure and period (microseconds); None when it cannot tell."""
        return None

    def arm(self, n_readings: int, *, exposure_us: float, period_us: float) -> None:
        """Prepare ``n_readings`` triggered readings for patterns of the given timing."""
        if int(n_readings) < 1:
            raise ConfigError(f"n_readings={n_readings} must be >= 1")
        if exposure_us <= 0 or period_us < exposure_us:
            raise ConfigError(
                f"timing exposure_us={exposure_us}, period_us={period_us}: need "
                "0 < exposure <= period"
            )
        self._do_arm(int(n_readings), float(exposure_us), float(period_us))

    @abc.abstractmethod
    def _do_arm(self, n_readings: int, exposure_us: float, period_us: float) -> None: ...

    def read(self, timeout_s: float = 10.0) -> np.ndarray:
        """Return the armed readings as a (n_readings,) float64 array of volts."""
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s={timeout_s} must be > 0")
        return np.asarray(self._do_read(float(timeout_s)), dtype=np.float64)

    @abc.abstractmethod
    def _do_read(self, timeout_s: float) -> np.ndarray: ...


class Scene(_Device):
    """What the camera looks at: a monitor showing test images, or a physical object."""

    def show(self, image: np.ndarray) -> str:
        """Display one scene (validated like :func:`check_scenes`); returns its id/hash."""
        arr = check_scenes(image)
        if arr.shape[0] != 1:
            raise ConfigError(f"show() takes one image; got a batch of {arr.shape[0]}")
        return self._do_show(arr[0])

    @abc.abstractmethod
    def _do_show(self, image: np.ndarray) -> str: ...


class Bench(_Device):
    """Modulator + detector + scene: ``measure(scenes, patterns) -> Measurement``.

    Every bench (simulator, fake hardware, real hardware) returns the same
    :class:`~lsi_hw.types.Measurement`: (B, m) volts, settings snapshot, timestamps.

    What calibration needs is given by typed, read-only properties in SI units --
    :attr:`timing` (:class:`BenchTiming`, seconds), :attr:`digitizer_lsb_v`,
    :attr:`digitizer_range_v`, :attr:`saturation_v` (volts), :attr:`gain_db` (dB),
    :attr:`gain_v_per_a` (V/A), :attr:`bandwidth_hz` (Hz) -- never by searching the
    settings snapshot.  Each is None where the bench does not know the value.
    """

    name: str = "bench"

    def measure(self, scenes: Any, patterns: PatternSet) -> Measurement:
        """Show each scene, run the pattern sequence over it, return the readings.

        Parameters
        ----------
        scenes:
            (B, H, W) or (B, H, W, 3) monitor drive values, uint8 or float in [0, 1].
        patterns:
            The masks to display, a :class:`~lsi_hw.patterns.PatternSet`.
        """
        arr = check_scenes(scenes)
        if not hasattr(type(patterns), "masks") or not hasattr(patterns, "m"):  # no make
            raise PatternError(
                f"patterns must be a PatternSet; got {type(patterns).__name__}"
            )
        return self._do_measure(arr, patterns)

    @abc.abstractmethod
    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement: ...

    # What calibration reads, typed and in SI units.  The defaults say "unknown" (None):
    # a bench returns a value only when it really knows it (simulator: its config; real
    # bench: its drivers), so calibration can report what it could not use.

    @property
    def timing(self) -> BenchTiming | None:
        """Reading timing of the next :meth:`measure` (seconds), or None if unknown."""
        return None

    def _from_detector(self, name: str) -> Any:
        """``self.detector.<name>`` when the bench has a detector that reports it."""
        detector = getattr(self, "detector", None)
        return None if detector is None else getattr(detector, name, None)

    @property
    def digitizer_lsb_v(self) -> float | None:
        """ADC step (LSB) at the input range in use, volts (the detector's), or None."""
        return self._from_detector("digitizer_lsb_v")

    @property
    def digitizer_range_v(self) -> float | None:
        """ADC full scale (it reads -range..+range), volts (the detector's), or None."""
        return self._from_detector("digitizer_range_v")

    @property
    def saturation_v(self) -> float | None:
        """Output voltage at which the reading saturates, volts (the detector's), or None."""
        return self._from_detector("saturation_v")

    @property
    def gain_db(self) -> float | None:
        """Declared amplifier gain step, dB (the detector's), or None if unknown."""
        return self._from_detector("gain_db")

    @property
    def gain_v_per_a(self) -> float | None:
        """Declared transimpedance gain, V/A (the detector's ``v_per_a``), or None."""
        return self._from_detector("v_per_a")

    @property
    def bandwidth_hz(self) -> float | None:
        """Declared -3 dB bandwidth of the amplifier, Hz (the detector's), or None."""
        return self._from_detector("bandwidth_hz")
