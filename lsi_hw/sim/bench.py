"""The simulated bench: the same roles as the real one, driven by the physical model.

:class:`SimBench` composes a :class:`SimulatedModulator` (checks masks and timing
against the DMD), a :class:`SimulatedDetector` (PDA100A2 + digitizer settings) and a
:class:`SimulatedScene` (the monitor), and computes each acquisition with the
vectorised forward model of :mod:`lsi_hw.sim.forward`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from lsi_hw import __version__
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench, Detector, Modulator, Scene, TriggerMode
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import NoiseConfig
from lsi_hw.sim.forward import (
    SimConfig,
    expected_volts,
    measure_volts,
    read_noise_v,
    resolve_superpixel,
)
from lsi_hw.specs import DLP4500_MIN_EXPOSURE_US
from lsi_hw.types import Measurement, image_id

__all__ = ["SimBench", "SimulatedDetector", "SimulatedModulator", "SimulatedScene", "scene_id"]

#: Scenes computed per vectorised chunk (bounds memory: chunk x H x W float64).
CHUNK_SCENES = 64


scene_id = image_id  # the one content hash every bench and scene uses

class SimulatedModulator(Modulator):
    """A DLP4500-like DMD: 1140 x 912 mirrors, 235 us binary patterns, ``max_patterns``."""

    array_shape = (1140, 912)
    min_exposure_us = DLP4500_MIN_EXPOSURE_US[1]

    def __init__(self, config: SimConfig) -> None:
        super().__init__()
        self.config = config
        self.max_patterns = int(config.dmd.max_patterns)
        self.superpixel: int | None = None
        self.trigger = TriggerMode.INTERNAL

    def _check_fits(self, patterns: PatternSet) -> None:
        self.superpixel = resolve_superpixel(patterns.shape, self.config.dmd)

    def _do_load(
        self, patterns: PatternSet, exposure_us: float, period_us: float, trigger: TriggerMode
    ) -> None:
        self.trigger = trigger

    def _do_start(self) -> None:
        pass

    def _do_stop(self) -> None:
        pass

    def _do_settings(self) -> dict[str, Any]:
        loaded = self.patterns
        return {
            "kind": "simulated-dmd",
            "dmd": self.config.dmd.to_dict(),
            "superpixel": self.superpixel,
            "exposure_us": self.exposure_us,
            "period_us": self.period_us,
            "trigger": self.trigger.value,
            "patterns": None
            if loaded is None
            else {"name": loaded.name, "m": loaded.m, "shape": list(loaded.shape),
                  "meta": loaded.meta},
        }


class SimulatedDetector(Detector):
    """PDA100A2 + digitizer as configured; readings are filled in by the bench."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._pending: np.ndarray | None = None
        self._armed = 0

    @property
    def gain_db(self) -> float:
        return float(self.config.amplifier.gain_db)

    @property
    def saturation_v(self) -> float:
        return min(self.config.amplifier.saturation_v, self.config.digitizer.range_v)

    def _do_arm(self, n_readings: int, exposure_us: float, period_us: float) -> None:
        self._armed = n_readings
        self._pending = None

    def deliver(self, volts: np.ndarray) -> None:
        """Hand the simulated readings of the armed sequence to the detector."""
        if volts.size != self._armed:
            raise ConfigError(f"{volts.size} readings delivered, {self._armed} armed")
        self._pending = volts

    def _do_read(self, timeout_s: float) -> np.ndarray:
        if self._pending is None:
            raise ConfigError("no readings: arm() the detector and run a sequence first")
        out, self._pending = self._pending, None
        return out

    def _do_settings(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "kind": "simulated-pda100a2",
            "photodiode": cfg.photodiode.to_dict(),
            "amplifier": cfg.amplifier.to_dict(),
            "digitizer": cfg.digitizer.to_dict(),
            "timing": cfg.timing.to_dict(),
            "read_noise_v_rms_per_reading": read_noise_v(cfg),
        }


class SimulatedScene(Scene):
    """The monitor: remembers the image shown and its hash."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.current: np.ndarray | None = None
        self.current_id: str | None = None

    def _do_show(self, image: np.ndarray) -> str:
        self.current = image
        self.current_id = scene_id(image)
        return self.current_id

    def _do_settings(self) -> dict[str, Any]:
        return {"kind": "simulated-monitor", "monitor": self.config.monitor.to_dict(),
                "optics": self.config.optics.to_dict()}


class SimBench(Bench):
    """Simulated single-pixel camera bench.

    Parameters
    ----------
    noise:
        Noise preset (``none``, ``shot``, ``read``, ``full``) or a :class:`NoiseConfig`.
    seed:
        Seed of every random draw (noise, flicker).  Same seed and same sequence of
        calls give the same readings.
    config:
        The physical configuration (defaults documented on each config class).
    method:
        Projection path: ``auto`` (numba planner), a forced kernel name, or ``numpy``
        (dense reference).
    calibration_id:
        Id of the calibration file the settings refer to (recorded in every snapshot).
    progress:
        Show a progress bar when an acquisition spans several chunks of scenes.
    """

    name = "sim"

    def __init__(
        self,
        noise: str | NoiseConfig = "none",
        seed: int | None = 0,
        config: SimConfig | None = None,
        *,
        method: str = "auto",
        calibration_id: str | None = None,
        progress: bool = False,
    ) -> None:
        cfg = config or SimConfig()
        noise_cfg = NoiseConfig.from_preset(noise) if isinstance(noise, str) else noise
        self.config = replace(cfg, noise=noise_cfg)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.method = method
        self.calibration_id = calibration_id
        self.progress = progress
        self.modulator = SimulatedModulator(self.config)
        self.detector = SimulatedDetector(self.config)
        self.scene = SimulatedScene(self.config)

    def _do_settings(self) -> dict[str, Any]:
        return {
            "bench": self.name,
            "lsi_hw_version": __version__,
            "noise": self.config.noise.to_dict(),
            "seed": self.seed,
            "method": self.method,
            "calibration_id": self.calibration_id,
            "modulator": self.modulator.settings(),
            "detector": self.detector.settings(),
            "scene": self.scene.settings(),
        }

    def _timestamps(self, n_scenes: int, m: int) -> np.ndarray:
        timing = self.config.timing
        period_s = timing.period_us * 1e-6
        per_scene = m * period_s + timing.scene_change_s
        return (
            np.arange(n_scenes)[:, None] * per_scene
            + np.arange(m)[None, :] * period_s
            + timing.settling_delay_us * 1e-6
        )

    def _run(self, scenes: np.ndarray, patterns: PatternSet, noisy: bool) -> Measurement:
        cfg = self.config
        self.modulator.load(
            patterns, exposure_us=cfg.timing.exposure_us, period_us=cfg.timing.period_us
        )
        ids = [self.scene.show(img) for img in scenes[:1]]  # validate like the real scene
        ids += [scene_id(img) for img in scenes[1:]]
        started = time.perf_counter()
        chunks = range(0, len(scenes), CHUNK_SCENES)
        if self.progress and len(chunks) > 1:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="simulating", unit="chunk")
        values, saturated, negative = [], 0, 0
        for start in chunks:
            block = scenes[start : start + CHUNK_SCENES]
            if noisy:
                result = measure_volts(block, patterns, cfg, self.rng, self.method)
                values.append(result.volts)
                saturated += int(result.saturated.sum())
                negative += result.negative_clipped
            else:
                values.append(expected_volts(block, patterns, cfg, self.method))
        volts = np.concatenate(values)
        elapsed = time.perf_counter() - started
        settings = self.settings()
        sequence_s = volts.size * cfg.timing.period_us * 1e-6
        settings["acquisition"] = {
            "kind": "measure" if noisy else "expected (noiseless analog)",
            "saturated_count": saturated,
            "negative_clipped_count": negative,
            "compute_time_s": elapsed,
            "real_time_s": sequence_s,
            "real_time_factor": sequence_s / elapsed if elapsed > 0 else float("inf"),
        }
        return Measurement(
            values=volts,
            settings=settings,
            timestamps=self._timestamps(len(scenes), patterns.m),
            pattern_name=patterns.name,
            scene_ids=tuple(ids),
        )

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        return self._run(scenes, patterns, noisy=True)

    def expected(self, scenes: Any, patterns: PatternSet) -> Measurement:
        """Noiseless analog readings (no noise, saturation or quantization), volts."""
        from lsi_hw.interfaces import check_scenes

        return self._run(check_scenes(scenes), patterns, noisy=False)
