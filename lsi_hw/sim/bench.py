"""The simulated bench: the same roles as the real one, driven by the physical model.

:class:`SimBench` composes a :class:`SimulatedModulator` (checks masks and timing
against the DMD), a :class:`SimulatedDetector` (PDA100A2 + digitizer settings) and a
:class:`SimulatedScene` (the monitor), and computes each acquisition with the
vectorised forward model of :mod:`lsi_hw.sim.forward`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from lsi_hw import __version__
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench, BenchTiming, Detector, Modulator, Scene, TriggerMode
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import NoiseConfig
from lsi_hw.sim.forward import (
    AcquisitionResult,
    SimConfig,
    detect,
    expected_volts,
    irradiance,
    optical_power,
    read_noise_v,
    resolve_superpixel,
)
from lsi_hw.sim.scratch import scratch
from lsi_hw.specs import DLP4500_MIN_EXPOSURE_US
from lsi_hw.types import Measurement, image_id, image_ids

__all__ = [
    "SceneNoiseStreams",
    "SimBench",
    "SimulatedDetector",
    "SimulatedModulator",
    "SimulatedScene",
    "patterns_key",
    "scene_id",
]

#: Scenes computed per vectorised chunk (bounds memory: chunk x H x W float64).
CHUNK_SCENES = 64
#: blocks of at least this many scenes draw their noise on two threads
_SPLIT_NOISE_MIN_SCENES = 16


scene_id = image_id  # the one content hash every bench and scene uses


# --------------------------------------------------------------------------- noise streams


def _key64(data: bytes) -> int:
    """First 64 bits of the SHA-256 of ``data``, as an unsigned integer."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def patterns_key(patterns: PatternSet) -> int:
    """64-bit content key of a pattern set: the first 8 bytes of
    :meth:`~lsi_hw.patterns.PatternSet.digest` (the same masks give the same key)."""
    return int.from_bytes(bytes.fromhex(patterns.digest())[:8], "little")


class SceneNoiseStreams:
    """Random generators keyed by *what* is measured, never by *when*.

    The noise of one measurement of one scene comes from its own generator, seeded by

    ``SeedSequence([root, stream, scene key, patterns key, count])``

    where

    * ``root`` is the bench seed (an integer >= 0), or 128 bits of fresh OS entropy drawn
      once per bench when the seed is None (fresh randomness on every run);
    * ``stream`` separates independent uses (:attr:`PHYSICS`: the simulated photodiode,
      amplifier and ADC; :attr:`DIGITIZER`: the fake digitizer's per-sample noise);
    * the scene key is 64 bits of the SHA-256 of the scene id (the content hash
      :func:`lsi_hw.types.image_id`), the patterns key is :func:`patterns_key` of the masks
      displayed (one DMD load on the twin);
    * ``count`` is how many times *this bench* has already measured this scene with these
      masks (0 the first time), so repeated measurements of one scene -- in one call or in
      several -- get independent noise.

    So a scene's noise does not depend on the batch it is measured in, on its position in
    the batch or on what was measured before it: an acquisition that is interrupted and
    resumed (each scene measured once per recording) gives bit-identical readings to an
    uninterrupted one.  (``SimBench`` computes the noiseless optics of a block of scenes in
    one vectorised call, whose rounding can differ in the last bits with the block's
    composition; :func:`lsi_hw.acquisition.acquire` re-forms the same batches when it
    resumes, so its readings are bit-identical.)

    Counts are claimed inside :meth:`measuring`; they are kept only when the whole
    measurement succeeds, so a failed call that is retried draws the same noise again.
    The counts grow by one small entry per distinct (scene, masks) pair.

    Parameters
    ----------
    seed:
        Integer >= 0, or None for fresh randomness.

    Raises
    ------
    ConfigError
        ``seed`` is not None or an integer >= 0.
    """

    PHYSICS = 0
    """Stream of the simulated physics (flicker, shot, dark and read noise)."""
    DIGITIZER = 1
    """Stream of the fake digitizer's per-sample noise."""

    def __init__(self, seed: int | None) -> None:
        if seed is None:
            root = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r} must be an integer >= 0, or None for fresh "
                              "randomness")
        else:
            root = int(seed)
        self.seed = None if seed is None else int(seed)
        self._root = root
        self._counts: dict[tuple[int, int], int] = {}
        self._pending: dict[tuple[int, int], int] | None = None

    @staticmethod
    def scene_key(scene: str) -> int:
        """64-bit key of a scene id (any string; benches use the content hash)."""
        return _key64(scene.encode("utf-8", "surrogatepass"))

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Scope of one measurement call: counts claimed inside are kept only if the block
        ends without an exception (re-entrant: an inner scope joins the outer one)."""
        if self._pending is not None:
            yield
            return
        self._pending = {}
        try:
            yield
        except BaseException:
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        self._counts.update(pending)

    def take(self, scene: str, patterns: int) -> tuple[int, int, int]:
        """Claim the next measurement of ``scene`` with masks ``patterns`` (a
        :func:`patterns_key`); returns the ``(scene key, patterns key, count)`` to pass to
        :meth:`generator`."""
        key = (self.scene_key(scene), int(patterns))
        pending = self._pending
        if pending is not None:
            count = pending.get(key, self._counts.get(key, 0))
            pending[key] = count + 1
        else:
            count = self._counts.get(key, 0)
            self._counts[key] = count + 1
        return key[0], key[1], count

    def count(self, scene: str, patterns: int) -> int:
        """How many measurements of ``scene`` with masks ``patterns`` were kept so far."""
        return self._counts.get((self.scene_key(scene), int(patterns)), 0)

    def generator(self, claim: tuple[int, int, int], stream: int) -> np.random.Generator:
        """The generator of one claimed measurement (:meth:`take`) for ``stream``."""
        scene, patterns, count = claim
        return np.random.default_rng(
            np.random.SeedSequence([self._root, int(stream), scene, patterns, count]))


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

    @property
    def v_per_a(self) -> float:
        """Transimpedance of the configured gain and load, V/A."""
        return float(self.config.amplifier.v_per_a)

    @property
    def bandwidth_hz(self) -> float:
        """-3 dB bandwidth of the configured gain, Hz."""
        return float(self.config.amplifier.bandwidth_hz)

    @property
    def digitizer_lsb_v(self) -> float:
        """Quantization step of the simulated ADC, volts."""
        return float(self.config.digitizer.lsb_v)

    @property
    def digitizer_range_v(self) -> float:
        """Full scale of the simulated ADC (-range..+range), volts."""
        return float(self.config.digitizer.range_v)

    def reading_timing(self, exposure_us: float, period_us: float) -> BenchTiming:
        """The configured settling delay and window (the simulator does not derive them
        from the pattern timing), and the given period; seconds."""
        t = self.config.timing
        return BenchTiming.from_us(period_us, t.settling_delay_us, t.window_us)

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
        Seed of every random draw (noise, flicker): an integer >= 0, or None for fresh
        randomness.  Each measurement of a scene draws from its own generator, keyed by
        the seed, the scene's content hash, the masks and how many times this bench has
        measured that scene with those masks (:class:`SceneNoiseStreams`).  So the same
        seed gives the same readings for the same scenes however they are batched, and an
        interrupted, resumed acquisition equals an uninterrupted one bit for bit.
    config:
        The physical configuration (defaults documented on each config class).
    method:
        Projection path: ``auto`` (numba planner), a forced kernel name, or ``numpy``
        (dense reference).
    calibration_id:
        Id of the calibration file the settings refer to (recorded in every snapshot).
    progress:
        Show a progress bar when an acquisition spans several chunks of scenes.

    Raises
    ------
    ConfigError
        ``seed`` is not None or an integer >= 0.
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
        self.noise_streams = SceneNoiseStreams(seed)
        self.seed = self.noise_streams.seed
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

    # -- what the configuration says (typed, SI units; read by calibration) ----------------

    @property
    def timing(self) -> BenchTiming:
        """Configured pattern period, settling delay and window, seconds."""
        t = self.config.timing
        return BenchTiming.from_us(t.period_us, t.settling_delay_us, t.window_us)

    @property
    def saturation_v(self) -> float:
        """Saturation voltage of the simulated amplifier, volts."""
        return float(self.config.amplifier.saturation_v)

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
        ids += image_ids(scenes[1:])
        started = time.perf_counter()
        chunks = range(0, len(scenes), CHUNK_SCENES)
        if self.progress and len(chunks) > 1:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="simulating", unit="chunk")
        values, saturated, negative = [], 0, 0
        with self.noise_streams.measuring():  # counts kept only if the whole call succeeds
            for start in chunks:
                block = scenes[start : start + CHUNK_SCENES]
                if noisy:
                    result = self._measure_block(block, ids[start : start + len(block)],
                                                 patterns)
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

    def _measure_block(self, block: np.ndarray, ids: list[str],
                       patterns: PatternSet) -> AcquisitionResult:
        """Noisy readings of a block of scenes: the optics of the whole block in one
        vectorised call, then each scene's noise from its own generator."""
        cfg = self.config
        work = scratch("irradiance", (len(block), *patterns.shape), np.float32)
        power = optical_power(irradiance(block, patterns.shape, cfg, self.method, work=work),
                              patterns, cfg, self.method)
        pkey = patterns_key(patterns)  # PatternSet.digest is computed once per set
        streams = self.noise_streams
        claims = [streams.take(ident, pkey) for ident in ids]  # in order, on this thread

        def noisy_rows(rows: slice) -> AcquisitionResult:
            rngs = [streams.generator(c, SceneNoiseStreams.PHYSICS) for c in claims[rows]]
            return detect(power[rows], cfg, rngs)

        # Each scene draws from its own generator, so rows split across threads give the
        # same numbers as one call; numpy's samplers release the GIL while they draw.
        workers = min(os.cpu_count() or 1, 2 if len(ids) >= _SPLIT_NOISE_MIN_SCENES else 1)
        if workers < 2:
            return noisy_rows(slice(None))
        half = len(ids) // 2
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(noisy_rows, (slice(0, half), slice(half, None))))
        return AcquisitionResult(np.concatenate([p.volts for p in parts]),
                                 np.concatenate([p.saturated for p in parts]),
                                 sum(p.negative_clipped for p in parts))

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        return self._run(scenes, patterns, noisy=True)

    def expected(self, scenes: Any, patterns: PatternSet) -> Measurement:
        """Noiseless analog readings (no noise, saturation or quantization), volts."""
        from lsi_hw.interfaces import check_scenes

        return self._run(check_scenes(scenes), patterns, noisy=False)
