"""A bench made of real (or emulated) devices: modulator + detector + scene.

:class:`HardwareBench` runs the hardware-timed sequence the interfaces describe: the
scene is shown (and waited for), the detector is armed for one reading per pattern, the
modulator runs the patterns and triggers each reading.  Pattern sets larger than the
modulator holds are split into loads; each load runs over every scene of the call.
It returns the same :class:`~lsi_hw.types.Measurement` as the simulator.

On any error the modulator is stopped before the exception propagates; readings of
completed scenes are not lost when the caller records batch by batch
(:func:`lsi_hw.acquisition.acquire`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lsi_hw import __version__
from lsi_hw.errors import ConfigError, PatternError, ProtocolError
from lsi_hw.interfaces import Bench, BenchTiming, Detector, Modulator, Scene
from lsi_hw.locking import DeviceLock
from lsi_hw.patterns import PatternSet
from lsi_hw.types import Measurement

__all__ = ["HardwareBench"]


class HardwareBench(Bench):
    """Modulator + detector + scene on the bench.

    Parameters
    ----------
    modulator, detector, scene:
        The devices (e.g. :class:`~lsi_hw.drivers.dlpc350.dlp4500.DLP4500`,
        :class:`~lsi_hw.drivers.pda100a2.PDA100A2`,
        :class:`~lsi_hw.drivers.display.MonitorScene`).
    exposure_us, period_us:
        Pattern timing, microseconds (default: the modulator's shortest binary exposure).
    calibration_id:
        Id of the calibration file in force (recorded in every snapshot).
    lock_name:
        Name of the exclusive device lock taken while the bench is open (None: no lock).
    lock:
        A lock already held (taken before the devices were opened); the bench releases it
        on close.  Overrides ``lock_name``.
    read_margin_s:
        Extra time allowed for the readings beyond the sequence duration, seconds.
    resources:
        Further objects with a ``close()`` that the bench owns (e.g. the video-port frame
        sink); closed after the devices.
    patterns_per_load:
        Largest load (default: what the modulator holds; 24 = one video frame when the
        DMD's frames are streamed through its video port one static frame at a time).
    """

    name = "hw"

    def __init__(
        self,
        modulator: Modulator,
        detector: Detector,
        scene: Scene,
        *,
        exposure_us: float | None = None,
        period_us: float | None = None,
        calibration_id: str | None = None,
        lock_name: str | None = "dlp4500",
        lock: DeviceLock | None = None,
        read_margin_s: float = 1.0,
        patterns_per_load: int | None = None,
        resources: tuple[Any, ...] = (),
    ) -> None:
        self.modulator = modulator
        self.detector = detector
        self.scene = scene
        self.exposure_us = exposure_us
        self.period_us = period_us
        self.calibration_id = calibration_id
        self.read_margin_s = float(read_margin_s)
        limit = int(modulator.max_patterns)
        per_load = limit if patterns_per_load is None else int(patterns_per_load)
        if not 1 <= per_load <= limit:
            raise ConfigError(
                f"patterns_per_load={patterns_per_load} outside 1..{limit} (what the modulator "
                "holds in one load)"
            )
        self.patterns_per_load = per_load
        self.resources = tuple(resources)
        if lock is not None:
            self._lock: DeviceLock | None = lock
        else:
            self._lock = DeviceLock(lock_name).acquire() if lock_name else None

    def _do_settings(self) -> dict[str, Any]:
        return {
            "bench": self.name,
            "lsi_hw_version": __version__,
            "calibration_id": self.calibration_id,
            "modulator": self.modulator.settings(),
            "detector": self.detector.settings(),
            "scene": self.scene.settings(),
        }

    # -- what the drivers know (typed, SI units; read by calibration) ----------------------

    def pattern_timing_us(self) -> tuple[float, float]:
        """(exposure, period) of the next :meth:`measure`, microseconds: the bench's
        settings, else the modulator's shortest binary exposure and period = exposure."""
        exposure = float(self.modulator.min_exposure_us if self.exposure_us is None
                         else self.exposure_us)
        period = exposure if self.period_us is None else float(self.period_us)
        return exposure, period

    @property
    def timing(self) -> BenchTiming | None:
        """Settling delay and window the detector derives for the bench's pattern timing,
        seconds (None when the detector cannot tell)."""
        return self.detector.reading_timing(*self.pattern_timing_us())

    def _chunks(self, patterns: PatternSet) -> list[tuple[int, PatternSet]]:
        size = self.patterns_per_load
        if patterns.m <= size:
            return [(0, patterns)]
        return [(start, patterns[start : start + size]) for start in range(0, patterns.m, size)]

    def _safe_stop(self) -> None:
        try:
            self.modulator.stop()
        except Exception:  # the original error matters more; the device reports its own
            pass

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        n_scenes = len(scenes)
        values = np.full((n_scenes, patterns.m), np.nan)
        stamps = np.full((n_scenes, patterns.m), np.nan)
        ids: list[str] = [""] * n_scenes
        saturated = 0
        t_origin = time.monotonic()
        free_at = 0.0  # when the last sequence ended (s after t_origin)
        try:
            for offset, chunk in self._chunks(patterns):
                self.modulator.load(chunk, exposure_us=self.exposure_us,
                                    period_us=self.period_us)
                period_s = self.modulator.period_us * 1e-6
                for b in range(n_scenes):
                    ids[b] = self.scene.show(scenes[b])
                    self.detector.arm(chunk.m, exposure_us=self.modulator.exposure_us,
                                      period_us=self.modulator.period_us)
                    # a sequence cannot start before the previous one ended: on hardware
                    # the read blocks that long anyway; an emulated bench runs faster than
                    # the mirrors, and its stamps then follow the device's timeline
                    started = max(time.monotonic() - t_origin, free_at)
                    free_at = started + chunk.m * period_s
                    self.modulator.start()
                    volts = self.detector.read(
                        timeout_s=chunk.m * period_s + self.read_margin_s
                    )
                    self.modulator.stop()
                    saturated += self.detector.last_read_saturated
                    if volts.shape != (chunk.m,):
                        raise ProtocolError(
                            f"detector returned {volts.shape} readings for {chunk.m} patterns"
                        )
                    values[b, offset : offset + chunk.m] = volts
                    stamps[b, offset : offset + chunk.m] = started + np.arange(chunk.m) * period_s
        except (ConfigError, PatternError):
            # refused by validation, before any I/O: touch the device only if it runs
            if self.modulator.is_running:
                self._safe_stop()
            raise
        except BaseException:
            self._safe_stop()
            raise
        settings = self.settings()
        settings["acquisition"] = {
            "loads_per_scene": len(self._chunks(patterns)),
            "wall_time_s": time.monotonic() - t_origin,
            "saturated_count": saturated,
        }
        return Measurement(values=values, settings=settings, timestamps=stamps,
                           pattern_name=patterns.name, scene_ids=tuple(ids))

    def _do_close(self) -> None:
        """Stop, then close every device even when one fails; re-raise the first error."""
        first_error: BaseException | None = None
        self._safe_stop()
        for device in (self.modulator, self.detector, self.scene, *self.resources):
            try:
                device.close()
            except BaseException as exc:
                first_error = first_error or exc
        if self._lock is not None:
            self._lock.release()
        if first_error is not None:
            raise first_error
