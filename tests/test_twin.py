"""The digital twin (``fake-hw``): real DLP4500 + PDA100A2 drivers on emulated devices.

The twin must give the simulator's readings (it computes them from what the emulated
DMD was told to show), program the emulated DLPC350 exactly as the real one would be
programmed, record complete settings snapshots, resume recorded acquisitions and hold
the device lock.  Pattern sets are larger than one DMD load (128 masks) so that the
bench's chunking is exercised.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import astuple, replace
from itertools import pairwise

import numpy as np
import pytest

from lsi_hw.acquisition import acquire
from lsi_hw.benches import make_bench
from lsi_hw.benches.hardware import HardwareBench
from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.drivers.digitizers import FakeDigitizer
from lsi_hw.drivers.display import CallbackScene
from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.pda100a2 import PDA100A2
from lsi_hw.errors import ConfigError, DeviceError
from lsi_hw.interfaces import BenchTiming
from lsi_hw.locking import DeviceLock
from lsi_hw.patterns import PatternSet, take_from_dmd, unpack_dlp_frames
from lsi_hw.recording import Recording
from lsi_hw.sim import AmplifierConfig, DigitizerConfig, SimConfig
from lsi_hw.sim.forward import read_noise_v, resolve_superpixel

LUT = P.PATTERN_LUT_SIZE  # 128 masks per DMD load
M = 300  # 3 loads: 128 + 128 + 44
N_SCENES = 3


def scenes_u8(n: int, shape: tuple[int, int] = (16, 16), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def chunk_slices(m: int) -> list[slice]:
    return [slice(start, min(start + LUT, m)) for start in range(0, m, LUT)]


class FrameCapturingTwin(FakeHardwareBench):
    """The twin, keeping every set of video frames the driver streamed (one per load)."""

    def __init__(self, *args, **kwargs) -> None:
        self.streamed: list[np.ndarray] = []
        super().__init__(*args, **kwargs)

    def _receive_frames(self, frames: np.ndarray) -> None:
        self.streamed.append(frames)
        super()._receive_frames(frames)


@pytest.fixture(scope="module")
def run():
    """One noiseless fake-hw measurement of 3 scenes x 300 random masks, and the sim's."""
    cfg = SimConfig()
    scenes = scenes_u8(N_SCENES)
    patterns = PatternSet.random(M, (16, 16), seed=2)
    twin = FrameCapturingTwin(noise="none", config=cfg, calibration_id="cal-twin-test")
    n_before = len(twin.emulator.requests)
    meas = twin.measure(scenes, patterns)
    sim = make_bench("sim", noise="none", config=twin.sim_config)
    ref = sim.measure(scenes, patterns)
    yield {"twin": twin, "meas": meas, "ref": ref, "scenes": scenes, "patterns": patterns,
           "requests": twin.emulator.requests[n_before:]}
    twin.close()


# --------------------------------------------------------------------------------------
# fake-hw == sim
# --------------------------------------------------------------------------------------


def test_make_bench_fake_hw_is_the_twin():
    bench = make_bench("fake-hw", noise="none", config=SimConfig())
    try:
        assert isinstance(bench, FakeHardwareBench) and isinstance(bench, HardwareBench)
        assert isinstance(bench.modulator, DLP4500)
        assert isinstance(bench.detector, PDA100A2)
        assert isinstance(bench.emulator, FakeDLPC350)
    finally:
        bench.close()


def test_noiseless_readings_equal_the_simulator(run):
    meas, ref = run["meas"], run["ref"]
    lsb = run["twin"].sim_config.digitizer.lsb_v
    assert meas.values.shape == ref.values.shape == (N_SCENES, M)
    assert np.isfinite(meas.values).all()
    assert np.abs(meas.values - ref.values).max() <= lsb
    assert meas.settings["acquisition"]["loads_per_scene"] == 3
    assert meas.scene_ids == ref.scene_ids
    assert meas.pattern_name == ref.pattern_name
    # the readings are not trivially equal: they depend on the scene and the mask
    assert np.ptp(meas.values) > 20 * lsb


def test_noiseless_32x32_hadamard_equal_the_simulator():
    cfg = SimConfig()
    scenes = scenes_u8(2, (32, 32), seed=5)
    patterns = PatternSet.hadamard(32, m=140, order="sequency")  # 2 loads
    with FakeHardwareBench(noise="none", config=cfg) as twin:
        meas = twin.measure(scenes, patterns)
        ref = make_bench("sim", noise="none", config=twin.sim_config).measure(scenes, patterns)
        lsb = twin.sim_config.digitizer.lsb_v
    assert np.abs(meas.values - ref.values).max() <= lsb


def test_full_noise_agrees_with_the_simulator_within_the_noise():
    cfg = SimConfig()
    scenes = scenes_u8(N_SCENES, seed=3)
    patterns = PatternSet.random(M, (16, 16), seed=4)
    with FakeHardwareBench(noise="none", config=cfg) as quiet:
        clean = quiet.measure(scenes, patterns).values
    with FakeHardwareBench(noise="full", config=cfg, seed=11) as twin:
        noisy = twin.measure(scenes, patterns).values
        sim_cfg = twin.sim_config
    sim = make_bench("sim", noise="full", config=sim_cfg, seed=12).measure(scenes, patterns)
    # expected per-reading noise from the noiseless run: read noise, 0.1 % flicker of
    # the signal, quantization (shot noise is ~100x smaller here)
    q = sim_cfg.digitizer.lsb_v
    sigma = np.sqrt(read_noise_v(sim_cfg) ** 2 + (sim_cfg.noise.flicker_rel_rms * clean) ** 2
                    + q**2 / 12)
    sigma_rms = float(np.sqrt(np.mean(sigma**2)))
    r_twin, r_sim = noisy - clean, sim.values - clean
    assert r_twin.std() > 0.5 * sigma_rms  # the noise is really on
    assert 0.8 < r_twin.std() / r_sim.std() < 1.25
    diff = noisy - sim.values
    ratio = np.sqrt(np.mean(diff**2)) / (np.sqrt(2) * sigma_rms)
    assert 0.7 < ratio < 1.4
    standard_error = np.sqrt(2) * sigma_rms / np.sqrt(diff.size)
    assert abs(diff.mean()) < 4 * standard_error  # no bias between twin and simulator


# --------------------------------------------------------------------------------------
# what the emulated DLPC350 received
# --------------------------------------------------------------------------------------


def test_emulator_received_the_pattern_luts(run):
    emu, requests = run["twin"].emulator, run["requests"]
    assert emu.nacks == []
    lut_writes = [r.payload for r in requests
                  if r.command == P.Command.MBOX_DATA and not r.read]
    sizes = [len(p) // 3 for p in lut_writes]
    # each load is programmed once, then again before each later scene's start (after
    # a stop the controller needs the LUT again)
    assert sizes == [128] * N_SCENES + [128] * N_SCENES + [44] * N_SCENES
    for payload in (lut_writes[0], lut_writes[-1]):
        words = [int.from_bytes(payload[3 * k : 3 * k + 3], "little")
                 for k in range(len(payload) // 3)]
        for k, word in enumerate(words):
            e = P.decode_lut_entry(word)
            first = k % 24 == 0
            assert e["bit_depth"] == 1
            assert e["pattern_number"] == k % 24
            assert e["leds"] == 0
            assert e["buffer_swap"] is first
            expected = P.TrigType.EXTERNAL_POSITIVE if first else P.TrigType.CONTINUE
            assert e["trigger"] == expected
    # the last load is what the controller holds now
    assert len(emu.lut_entries) == 44
    assert emu.pat_config["n_entries"] == 44 and emu.pat_config["n_images"] == 2
    assert emu.pattern_source == P.PatternSource.VIDEO_PORT
    assert (emu.exposure_us, emu.period_us) == (235, 235)
    expo = [r.payload for r in requests if r.command == P.Command.PAT_EXPO_PRD and not r.read]
    assert expo and all(int.from_bytes(p[:4], "little") == 235 for p in expo)
    assert all(int.from_bytes(p[4:8], "little") == 235 for p in expo)
    assert emu.validation_status == 0 and emu.validation_count >= 3 * N_SCENES


def test_emulator_ran_once_per_scene_and_load_and_ends_stopped(run):
    twin, requests = run["twin"], run["requests"]
    actions = [r.payload[0] for r in requests
               if r.command == P.Command.PAT_START_STOP and not r.read]
    assert actions.count(2) == 3 * N_SCENES  # one start per (load, scene)
    assert actions[-1] == 0  # the last word was a stop
    assert twin.emulator.state == "stopped"
    assert twin.modulator.state == "stopped" and not twin.modulator.is_running


def test_streamed_frames_decode_to_the_patterns(run):
    twin, patterns = run["twin"], run["patterns"]
    assert len(twin.streamed) == 3  # one set of video frames per load
    superpixel = resolve_superpixel(patterns.shape, twin.sim_config.dmd)
    diamond = twin.sim_config.dmd.diamond
    for index in (0, 2):  # a full load and the last, partial one
        sl = chunk_slices(M)[index]
        m = sl.stop - sl.start
        frames = twin.streamed[index]
        assert frames.dtype == np.uint8 and frames.shape == (-(-m // 24), 1140, 912, 3)
        shown = take_from_dmd(unpack_dlp_frames(frames, m), patterns.shape, superpixel, diamond)
        np.testing.assert_array_equal(shown, patterns.masks[sl])
    np.testing.assert_array_equal(twin.modulator.frames, twin.streamed[-1])


# --------------------------------------------------------------------------------------
# settings snapshot and timestamps
# --------------------------------------------------------------------------------------


def test_settings_snapshot(run):
    s = run["meas"].settings
    assert s["bench"] == "fake-hw"
    assert s["calibration_id"] == "cal-twin-test"
    mod = s["modulator"]
    assert mod["device"].startswith("DLP LightCrafter 4500")
    assert (mod["exposure_us"], mod["period_us"]) == (235, 235)
    assert mod["source"] == "video" and mod["trigger"] == "vsync"
    assert mod["state"] == "stopped" and mod["diamond"] is True
    assert mod["firmware_version"]["application"] == "3.0.0"
    det = s["detector"]
    assert det["model"] == "Thorlabs PDA100A2"
    assert det["gain_db"] == SimConfig().amplifier.gain_db
    assert det["v_per_a"] == pytest.approx(SimConfig().amplifier.v_per_a)
    assert det["timing"]["exposure_s"] == pytest.approx(235e-6)
    assert det["timing"]["window_s"] > 0 and det["timing"]["settling_delay_s"] >= 0
    assert "user-declared" in det["gain_source"]
    assert s["scene"]["kind"] == "callback"
    assert s["acquisition"]["loads_per_scene"] == 3
    # the ADC step the drivers report is the simulator's (the twin declared its bits)
    assert det["digitizer"]["resolution_bits"] == 16
    assert det["digitizer_lsb_v"] == pytest.approx(SimConfig().digitizer.lsb_v)


def test_settings_snapshot_holds_only_what_a_real_bench_reports(run):
    """No simulator config in a snapshot (a real bench has none to give); the twin shows
    it through simulator_settings(), for debugging only."""
    twin = run["twin"]
    for snapshot in (run["meas"].settings, twin.settings()):
        assert "simulator" not in snapshot
        assert set(snapshot) <= {"bench", "lsi_hw_version", "calibration_id", "modulator",
                                 "detector", "scene", "acquisition"}
        assert "noise" not in snapshot["detector"] and "optics" not in json.dumps(snapshot)
    sim = twin.simulator_settings()
    assert {"monitor", "optics", "dmd", "photodiode", "amplifier", "timing", "noise",
            "digitizer", "seed"} <= set(sim)
    # the simulated reading window is the one the PDA100A2 driver derived
    det = run["meas"].settings["detector"]
    assert sim["timing"]["window_us"] == pytest.approx(det["timing"]["window_s"] * 1e6)
    assert sim["noise"]["preset"] == "none"


def test_typed_properties_come_from_the_drivers_not_the_simulator():
    with FakeHardwareBench(noise="none", config=SimConfig(
            amplifier=AmplifierConfig(gain_db=60), digitizer=DigitizerConfig(range_v=10.0))
            ) as twin:
        expected = (twin.timing, twin.digitizer_lsb_v, twin.digitizer_range_v,
                    twin.saturation_v, twin.gain_db, twin.gain_v_per_a, twin.bandwidth_hz)
        assert expected == (
            twin.detector.timing_for(235.0, 235.0).bench_timing(), 20.0 / 2**16, 10.0, 10.0,
            60.0, 1.5e6, 11e3)
        assert twin.digitizer_lsb_v == twin.sim_config.digitizer.lsb_v
        t = twin.sim_config.timing  # the simulator reads where the driver says
        sim_timing = BenchTiming.from_us(t.period_us, t.settling_delay_us, t.window_us)
        assert astuple(twin.timing) == pytest.approx(astuple(sim_timing), rel=1e-12)
        # change the simulator behind the twin's back: the properties do not move
        twin.sim_config = replace(twin.sim_config, amplifier=AmplifierConfig(gain_db=10),
                                  digitizer=DigitizerConfig(range_v=2.0, bits=8),
                                  timing=replace(t, window_us=10.0))
        assert (twin.timing, twin.digitizer_lsb_v, twin.digitizer_range_v,
                twin.saturation_v, twin.gain_db, twin.gain_v_per_a,
                twin.bandwidth_hz) == expected


def test_the_drivers_get_the_simulated_adc_range_and_resolution():
    cfg = SimConfig(digitizer=DigitizerConfig(range_v=2.0, bits=12))
    scenes = scenes_u8(2, seed=9)
    patterns = PatternSet.random(30, (16, 16), seed=9)
    with FakeHardwareBench(noise="none", config=cfg) as twin:
        assert twin.digitizer_range_v == 2.0 and twin.detector.range_v == 2.0
        assert twin.digitizer_lsb_v == pytest.approx(4.0 / 2**12) == cfg.digitizer.lsb_v
        meas = twin.measure(scenes, patterns)
        ref = make_bench("sim", noise="none", config=twin.sim_config).measure(scenes, patterns)
    assert np.abs(meas.values - ref.values).max() <= cfg.digitizer.lsb_v
    with pytest.raises(ConfigError, match=r"SimConfig\.digitizer\.range_v .*allowed: "):
        FakeHardwareBench(config=SimConfig(digitizer=DigitizerConfig(range_v=3.0)))


def test_timestamps_increase_within_each_load(run):
    stamps = run["meas"].timestamps
    assert stamps.shape == (N_SCENES, M) and np.isfinite(stamps).all()
    for row in stamps:
        for sl in chunk_slices(M):
            steps = np.diff(row[sl])
            np.testing.assert_allclose(steps, 235e-6, rtol=1e-9)
    # loads run one after the other, every scene within a load
    for a, b in pairwise(chunk_slices(M)):
        assert stamps[:, b].min() > stamps[:, a].max()


# --------------------------------------------------------------------------------------
# recorded, resumable acquisition
# --------------------------------------------------------------------------------------


def test_acquire_resumes_and_equals_a_single_measure(tmp_path):
    cfg = SimConfig()
    scenes = scenes_u8(4, seed=7)
    patterns = PatternSet.random(140, (16, 16), seed=8)  # 2 loads
    path = tmp_path / "run.lsirec"
    with FakeHardwareBench(noise="none", config=cfg) as twin:
        first = acquire(twin, scenes[:2], patterns, path, batch_size=2, progress=False)
        assert (first.n_acquired, first.n_skipped, first.n_batches) == (2, 0, 1)
        n_log = len(twin.emulator.log)
        again = acquire(twin, scenes[:2], patterns, path, batch_size=2, progress=False)
        assert (again.n_acquired, again.n_skipped, again.n_batches) == (0, 2, 0)
        assert len(twin.emulator.log) == n_log  # nothing was sent to the device
        rest = acquire(twin, scenes, patterns, path, batch_size=2, progress=False)
        assert (rest.n_acquired, rest.n_skipped, rest.n_batches) == (2, 2, 1)
    with FakeHardwareBench(noise="none", config=cfg) as other:
        single = other.measure(scenes, patterns)
    rec = Recording.open(path)
    assert rec.n_scenes == 4 and rec.n_batches == 2 and rec.m == patterns.m
    np.testing.assert_array_equal(rec.values, single.values)
    assert rec.scene_ids == single.scene_ids
    assert rec.settings["bench"] == "fake-hw"
    assert rec.batches[0]["n_scenes"] == 2


# --------------------------------------------------------------------------------------
# the device lock
# --------------------------------------------------------------------------------------


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LSI_LOCK_DIR", str(tmp_path))
    return tmp_path


def test_twin_lock_is_exclusive_and_released_on_close(lock_dir):
    name = f"test-dlp-{uuid.uuid4().hex[:12]}"
    first = FakeHardwareBench(lock_name=name)
    assert (lock_dir / f"{name}.lock").exists()
    with pytest.raises(DeviceError, match=rf"in use by another process \(pid {os.getpid()}\)"):
        FakeHardwareBench(lock_name=name)
    first.close()
    with FakeHardwareBench(lock_name=name):
        pass
    with DeviceLock(name):  # free again after the with block
        pass


def _hardware_bench(lock_name: str | None) -> HardwareBench:
    return HardwareBench(DLP4500(FakeDLPC350()), PDA100A2(FakeDigitizer()),
                         CallbackScene(lambda image: None), lock_name=lock_name)


def test_hardware_bench_lock_is_exclusive_and_released_on_close(lock_dir):
    name = f"test-dlp-{uuid.uuid4().hex[:12]}"
    bench = _hardware_bench(name)
    with pytest.raises(DeviceError, match=rf"test-dlp-.*pid {os.getpid()}"):
        _hardware_bench(name)
    with pytest.raises(DeviceError, match=str(os.getpid())):
        FakeHardwareBench(lock_name=name)  # the twin and the bench share the lock names
    bench.close()
    second = _hardware_bench(name)
    second.close()
    lock = DeviceLock(name).acquire()
    assert lock.held
    lock.release()


def test_one_video_frame_per_load_gives_the_same_readings():
    """24 patterns per load (one static video frame each) == 128 per load, to the LSB."""
    from lsi_hw.benches.twin import FakeHardwareBench
    from lsi_hw.patterns import PatternSet

    scenes = np.random.default_rng(5).integers(0, 256, (2, 16, 16), dtype=np.uint8)
    patterns = PatternSet.random(60, (16, 16), seed=5)
    with FakeHardwareBench("none") as wide, FakeHardwareBench("none", patterns_per_load=24) as one:
        a = wide.measure(scenes, patterns)
        b = one.measure(scenes, patterns)
    assert b.settings["acquisition"]["loads_per_scene"] == 3
    np.testing.assert_allclose(a.values, b.values, atol=wide.sim_config.digitizer.lsb_v)
