"""The digital twin (bench name ``fake-hw``): the real driver classes on emulated devices.

:class:`FakeHardwareBench` is a :class:`~lsi_hw.hardware_bench.HardwareBench` whose
modulator is the real :class:`~lsi_hw.drivers.dlpc350.dlp4500.DLP4500` driver talking
USB reports to the :class:`~lsi_hw.drivers.dlpc350.transport.FakeDLPC350` emulator, and
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

from lsi_hw.drivers.digitizers import FakeDigitizer
from lsi_hw.drivers.display import CallbackScene
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.transport import FakeDLPC350
from lsi_hw.drivers.pda100a2 import PDA100A2
from lsi_hw.errors import DeviceTimeout
from lsi_hw.hardware_bench import HardwareBench
from lsi_hw.patterns import PatternSet, take_from_dmd, unpack_dlp_frames
from lsi_hw.sim.detector import NoiseConfig, TimingConfig
from lsi_hw.sim.forward import SimConfig, measure_volts, resolve_superpixel

__all__ = ["FakeHardwareBench"]


class FakeHardwareBench(HardwareBench):
    """Real drivers on the FakeDLPC350 and a fake digitizer fed by the simulator.

    Parameters
    ----------
    noise:
        Noise preset of the simulated physics (``none``, ``shot``, ``read``, ``full``).
    seed:
        Seed of every random draw.
    config:
        The simulated bench (same :class:`~lsi_hw.sim.forward.SimConfig` as ``SimBench``);
        its gain, load and pattern timing are given to the real drivers, and its reading
        window is replaced by the one the PDA100A2 driver derives.
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
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.emulator = emulator if emulator is not None else FakeDLPC350()
        self._frames: np.ndarray | None = None
        self._decoded: PatternSet | None = None
        self._image: np.ndarray | None = None
        dmd = DLP4500(self.emulator, diamond=cfg.dmd.diamond, superpixel=cfg.dmd.superpixel,
                      source="video", frame_sink=self._receive_frames)
        digitizer = FakeDigitizer(self._voltages, seed=seed,
                                  device_id="fake digitizer (simulator voltages)",
                                  **(digitizer_options or {}))
        detector = PDA100A2(digitizer, gain_db=cfg.amplifier.gain_db, load=cfg.amplifier.load,
                            sample_rate_hz=cfg.digitizer.sample_rate_hz)
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

    def _displayed_masks(self, n: int) -> PatternSet:
        """The masks the emulated DMD shows, decoded from the streamed 24-bit frames."""
        loaded = self.modulator.patterns
        if self._frames is None or loaded is None:
            raise DeviceTimeout("no triggers: no pattern sequence was loaded on the DMD")
        if self._decoded is None or self._decoded.m != n:
            dmd = unpack_dlp_frames(self._frames, n)
            cfg = self.sim_config.dmd
            superpixel = resolve_superpixel(loaded.shape, cfg)
            self._decoded = PatternSet(take_from_dmd(dmd, loaded.shape, superpixel, cfg.diamond),
                                       name=loaded.name)
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
        result = measure_volts(self._image[None], masks, self.sim_config, self.rng)
        return result.volts[0]

    def _do_settings(self) -> dict[str, Any]:
        settings = super()._do_settings()
        settings["simulator"] = {**self.sim_config.to_dict(), "seed": self.seed}
        return settings
