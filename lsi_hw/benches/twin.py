"""The digital twin (bench name ``fake-hw``): the real driver classes on emulated devices.

:class:`FakeHardwareBench` is a :class:`~lsi_hw.benches.hardware.HardwareBench` whose
modulator is the real :class:`~lsi_hw.drivers.dlpc350.dlp4500.DLP4500` driver talking
USB reports to the :class:`~lsi_hw.drivers.dlpc350.emulator.FakeDLPC350` emulator, and
whose detector is the real :class:`~lsi_hw.drivers.pda100a2.PDA100A2` reading a
:class:`~lsi_hw.drivers.digitizers.FakeDigitizer`.  The digitizer's voltages come from
the simulator, computed from what the emulated DMD was actually told to show: the 24-bit
video frames the driver produced are unpacked back into masks, and the scene is the one
handed to the (callback) scene.  So the whole hardware code path -- validation, frame
packing, LUT programming, arming, triggering, reading, chunking, recording -- runs in CI.

This module joins ``lsi_hw.sim`` and ``lsi_hw.drivers``, which never import each other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from lsi_hw.benches.hardware import HardwareBench
from lsi_hw.drivers.digitizers import FakeDigitizer
from lsi_hw.drivers.display import CallbackScene
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.pda100a2 import PDA100A2
from lsi_hw.errors import ConfigError, DeviceTimeout
from lsi_hw.patterns import PatternSet, masks_from_dlp_frames
from lsi_hw.sim.bench import SceneNoiseStreams, patterns_key
from lsi_hw.sim.detector import NoiseConfig, TimingConfig
from lsi_hw.sim.forward import SimConfig, measure_volts, resolve_superpixel
from lsi_hw.types import Measurement, image_id

__all__ = ["FakeHardwareBench"]


class FakeHardwareBench(HardwareBench):
    """Real drivers on the FakeDLPC350 and a fake digitizer fed by the simulator.

    Parameters
    ----------
    noise:
        Noise preset of the simulated physics (``none``, ``shot``, ``read``, ``full``).
    seed:
        Seed of every random draw: an integer >= 0, or None for fresh randomness.  Each
        reading sequence (one scene, one DMD load) draws the simulated physics and the fake
        digitizer's sample noise from its own generators, keyed by the seed, the scene's
        content hash, the masks of the load and how many times this bench has measured
        that scene with them (:class:`~lsi_hw.sim.bench.SceneNoiseStreams`).  So the
        readings of a scene do not depend on the batch it is in or on what was measured
        before, and an interrupted, resumed acquisition equals an uninterrupted one bit
        for bit.
    config:
        The simulated bench (same :class:`~lsi_hw.sim.forward.SimConfig` as ``SimBench``);
        its gain, load, pattern timing, ADC range and resolution are given to the real
        drivers (the range must be one the fake digitizer offers: the NI X Series ranges,
        which hold the default +-0.5 V operating point), and its reading window is
        replaced by the one the PDA100A2 driver derives.  So the twin runs at the same
        default operating point as ``SimBench`` and the torch training model.
    calibration_id:
        Recorded in every snapshot.
    lock_name:
        Device lock name (default: none, so tests can open several twins).
    emulator:
        A FakeDLPC350 to use (e.g. with fault injection armed); default a fresh one.
    digitizer_options:
        Extra keyword arguments of the FakeDigitizer (e.g. ``missing_triggers=1``).
    patterns_per_load:
        Largest DMD load (default 128, the pattern LUT; 24 = one video frame per load).
    """

    name = "fake-hw"

    def __init__(
        self,
        noise: str | NoiseConfig = "none",
        seed: int | None = 0,
        config: SimConfig | None = None,
        *,
        calibration_id: str | None = None,
        lock_name: str | None = None,
        emulator: FakeDLPC350 | None = None,
        digitizer_options: dict[str, Any] | None = None,
        patterns_per_load: int | None = None,
    ) -> None:
        cfg = config or SimConfig()
        noise_cfg = NoiseConfig.from_preset(noise) if isinstance(noise, str) else noise
        self.noise_streams = SceneNoiseStreams(seed)
        self.seed = self.noise_streams.seed
        self._claim: tuple[int, int, int] | None = None  # noise key of the running read
        self._decoded_key = 0
        self._image_id = ""
        self.emulator = emulator if emulator is not None else FakeDLPC350()
        self._frames: np.ndarray | None = None
        self._decoded: PatternSet | None = None
        self._image: np.ndarray | None = None
        dmd = DLP4500(self.emulator, diamond=cfg.dmd.diamond, superpixel=cfg.dmd.superpixel,
                      source="video", frame_sink=self._receive_frames)
        digitizer = FakeDigitizer(self._voltages, seed=seed,
                                  device_id="fake digitizer (simulator voltages)",
                                  **{"noise_rng": self._digitizer_noise_rng,
                                     **(digitizer_options or {})})
        # the simulator quantizes and clips the voltages it feeds the fake digitizer: the
        # drivers are told its resolution and range, as a user declares them on the bench
        digitizer.resolution_bits = cfg.digitizer.bits
        detector = PDA100A2(digitizer, gain_db=cfg.amplifier.gain_db, load=cfg.amplifier.load,
                            sample_rate_hz=cfg.digitizer.sample_rate_hz,
                            range_v=_offered_range_v(digitizer, cfg.digitizer.range_v))
        timing = detector.timing_for(cfg.timing.exposure_us, cfg.timing.period_us)
        self.sim_config = replace(
            cfg,
            noise=noise_cfg,
            timing=TimingConfig(
                exposure_us=cfg.timing.exposure_us,
                period_us=cfg.timing.period_us,
                settling_delay_us=timing.settling_delay_s * 1e6,
                window_us=timing.window_s * 1e6,
                scene_change_s=cfg.timing.scene_change_s,
            ),
        )
        scene = CallbackScene(self._present, name="simulated monitor")
        super().__init__(dmd, detector, scene, exposure_us=cfg.timing.exposure_us,
                         period_us=cfg.timing.period_us, calibration_id=calibration_id,
                         lock_name=lock_name, patterns_per_load=patterns_per_load)

    # -- what the emulated devices see -----------------------------------------------------

    def _receive_frames(self, frames: np.ndarray) -> None:
        """The video frames the driver would stream to the DMD's video port."""
        self._frames = frames
        self._decoded = None  # decoded once per load, on the first triggered sequence

    def _present(self, image: np.ndarray) -> None:
        self._image = np.asarray(image)
        self._image_id = image_id(self._image)

    def _displayed_masks(self, n: int) -> PatternSet:
        """The masks the emulated DMD shows, decoded from the streamed 24-bit frames."""
        loaded = self.modulator.patterns
        if self._frames is None or loaded is None:
            raise DeviceTimeout("no triggers: no pattern sequence was loaded on the DMD")
        if self._decoded is None or self._decoded.m != n:
            cfg = self.sim_config.dmd
            superpixel = resolve_superpixel(loaded.shape, cfg)
            masks = masks_from_dlp_frames(self._frames, n, loaded.shape, superpixel,
                                          cfg.diamond)
            self._decoded = PatternSet(masks, name=loaded.name)
            self._decoded_key = patterns_key(self._decoded)
        return self._decoded

    def _voltages(self, n: int) -> np.ndarray:
        """Detector input voltages of the running sequence (the fake digitizer's source)."""
        if self.emulator.state != "running":
            raise DeviceTimeout(
                f"no triggers: the emulated DMD is {self.emulator.state}, not running"
            )
        if self._image is None:
            raise DeviceTimeout("no scene has been shown")
        masks = self._displayed_masks(n)
        self._claim = self.noise_streams.take(self._image_id, self._decoded_key)
        rng = self.noise_streams.generator(self._claim, SceneNoiseStreams.PHYSICS)
        result = measure_volts(self._image[None], masks, self.sim_config, rng)
        return result.volts[0]

    def _digitizer_noise_rng(self) -> np.random.Generator:
        """Generator of the fake digitizer's sample noise for the read in progress: keyed
        like the physics of that read (same scene, load and count), another stream."""
        if self._claim is None:
            raise DeviceTimeout("no triggers: no reading sequence is running")
        return self.noise_streams.generator(self._claim, SceneNoiseStreams.DIGITIZER)

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        # the noise counts of a call are kept only when the whole call succeeds, so a
        # failed batch measured again draws the same noise (SceneNoiseStreams.measuring)
        with self.noise_streams.measuring():
            return super()._do_measure(scenes, patterns)

    def simulator_settings(self) -> dict[str, Any]:
        """The simulated physics behind the emulated devices, for debugging: the
        :class:`~lsi_hw.sim.forward.SimConfig` in use (with the driver-derived timing) and
        the seed.  Not part of :meth:`settings`, which holds only what a real bench
        reports, so nothing (calibration included) can lean on the simulator's truth."""
        return {**self.sim_config.to_dict(), "seed": self.seed}


def _offered_range_v(digitizer: FakeDigitizer, range_v: float) -> float:
    """``range_v`` (the simulator's ADC range, volts) if the twin's digitizer offers it."""
    try:
        return digitizer.check_range(range_v)
    except ConfigError as exc:
        raise ConfigError(f"SimConfig.digitizer.range_v for the fake-hw twin: {exc}") from None
