"""Faults on the hardware code path: each gives a clear error (a warning for saturation),
leaves the device stopped and loses no completed data.

The faults are injected into the emulated devices of the digital twin
(:class:`~lsi_hw.benches.twin.FakeHardwareBench`): the FakeDLPC350's dropped, corrupted and late
replies and its unplugged cable, the FakeDigitizer's missing triggers, and a fake ``usb``
package in ``sys.modules`` for the USB opening errors (no libusb, no device).
"""

from __future__ import annotations

import errno
import inspect
import time
import uuid
import warnings

import numpy as np
import pytest
from fake_usb import FakeUsbDevice, USBError, install_fake_usb

from lsi_hw.acquisition import acquire
from lsi_hw.benches.hardware import HardwareBench
from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.drivers.digitizers import FakeDigitizer
from lsi_hw.drivers.display import CallbackScene
from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.dlpc350.transport import UDEV_RULE
from lsi_hw.drivers.pda100a2 import PDA100A2, SaturationWarning, SettlingWarning
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    PatternError,
    ProtocolError,
    TransportError,
)
from lsi_hw.locking import DeviceLock
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.sim import AmplifierConfig, DigitizerConfig, MonitorConfig, SimConfig

PATTERNS = PatternSet.random(10, (16, 16), seed=2)  # one DMD load
SCENES = np.random.default_rng(1).integers(0, 256, (6, 16, 16), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _private_lock_dir(tmp_path, monkeypatch):
    """Device locks of these tests live in tmp_path (never the machine's real ones)."""
    monkeypatch.setenv("LSI_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """Fault-free noiseless readings of SCENES x PATTERNS on the twin."""
    with FakeHardwareBench(noise="none") as twin:
        return twin.measure(SCENES, PATTERNS).values


def digitizer_reads(bench: FakeHardwareBench) -> int:
    return sum(1 for name, _ in bench.detector.digitizer.calls if name == "read")


def assert_stopped(bench: FakeHardwareBench) -> None:
    assert bench.emulator.state == "stopped"
    assert not bench.modulator.is_running
    assert bench.modulator.state in ("stopped", "not loaded")


class FaultyDLPC350(FakeDLPC350):
    """The emulator, corrupting the reply to the first request of a given command
    (and payload) instead of simply the next reply."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._armed: list[tuple[int, bytes | None, str]] = []

    def corrupt_on(self, command: P.Command, kind: str, payload: bytes | None = None) -> None:
        self._armed.append((int(command), payload, kind))

    def _handle(self, req: P.Request) -> None:
        for i, (command, payload, kind) in enumerate(self._armed):
            if req.command == command and (payload is None or req.payload == payload):
                del self._armed[i]
                self.corrupt_next(kind)
                break
        super()._handle(req)


# --------------------------------------------------------------------------------------
# opening the USB device: absent, no permission, busy (fake ``usb`` package)
# --------------------------------------------------------------------------------------


def test_device_absent_names_lsi_hw_info(monkeypatch):
    install_fake_usb(monkeypatch, device=None)
    with pytest.raises(DeviceError, match=r"not found.*lsi-hw info") as info:
        DLP4500.open()
    assert not isinstance(info.value, TransportError)
    assert "0451:6401" in str(info.value)


def test_permission_denied_gives_the_udev_rule(monkeypatch):
    dev = FakeUsbDevice()
    install_fake_usb(monkeypatch, device=dev,
                     claim_error=USBError("Access denied (insufficient permissions)", -3,
                                           errno.EACCES))
    with pytest.raises(TransportError, match="permission denied") as info:
        DLP4500.open()
    assert UDEV_RULE in str(info.value)
    assert "udevadm" in str(info.value)
    assert ("attach", 0) in dev.calls  # the kernel driver was given back


def test_busy_device(monkeypatch):
    dev = FakeUsbDevice()
    install_fake_usb(monkeypatch, device=dev,
                     claim_error=USBError("Resource busy", -6, errno.EBUSY))
    with pytest.raises(TransportError, match=r"busy.*another program"):
        DLP4500.open()
    assert ("attach", 0) in dev.calls


# --------------------------------------------------------------------------------------
# unplugged
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("after_writes", [2, 9])  # during the stop / the pattern LUT data
def test_unplugged_mid_upload(after_writes):
    emu = FakeDLPC350()
    emu.unplug(after_writes=after_writes)
    name = f"test-dlp-{uuid.uuid4().hex[:12]}"
    twin = FakeHardwareBench(emulator=emu, lock_name=name)
    with pytest.raises(TransportError, match=r"unplugged.*could not stop") as info:
        twin.measure(SCENES[:1], PATTERNS)
    assert "while loading the pattern sequence" in str(info.value)
    assert emu.unplugged
    assert_stopped(twin)  # never started
    assert digitizer_reads(twin) == 0
    assert not any(r.command == P.Command.PAT_START_STOP and r.payload == b"\x02"
                   for r in emu.requests)
    with pytest.raises(TransportError, match="could not leave the sequence stopped"):
        twin.close()  # the driver says it could not stop an unplugged device
    with DeviceLock(name):  # ... but the bench still gave the device lock back
        pass


def test_close_after_unplug_still_closes_detector_and_scene():
    emu = FakeDLPC350()
    emu.unplug(after_writes=2)
    twin = FakeHardwareBench(emulator=emu)
    with pytest.raises(TransportError):
        twin.measure(SCENES[:1], PATTERNS)
    with pytest.raises(TransportError):
        twin.close()
    assert ("close", {}) in twin.detector.digitizer.calls
    assert twin.scene.settings()["closed"] is True


def test_unplug_in_a_later_batch_keeps_every_completed_batch(tmp_path, reference):
    path = tmp_path / "run.lsirec"
    emu = FakeDLPC350()
    twin = FakeHardwareBench(noise="none", emulator=emu)
    measure = twin.measure
    calls = {"n": 0}

    def measure_then_unplug(scenes, patterns):
        calls["n"] += 1
        if calls["n"] == 3:  # batches 1 and 2 are committed: pull the cable mid-upload
            emu.unplug(after_writes=7)
        return measure(scenes, patterns)

    twin.measure = measure_then_unplug  # what acquire() calls
    with pytest.raises(TransportError, match="unplugged"):
        acquire(twin, SCENES, PATTERNS, path, batch_size=2, progress=False)
    assert calls["n"] == 3
    assert_stopped(twin)
    with pytest.raises(TransportError):
        twin.close()
    rec = Recording.open(path)
    assert rec.n_batches == 2 and rec.n_scenes == 4
    np.testing.assert_array_equal(rec.values, reference[:4])
    # rerun on a reconnected device: only the missing batch is measured
    with FakeHardwareBench(noise="none") as again:
        summary = acquire(again, SCENES, PATTERNS, path, batch_size=2, progress=False)
    assert (summary.n_skipped, summary.n_acquired) == (4, 2)
    np.testing.assert_array_equal(Recording.open(path).values, reference)


# --------------------------------------------------------------------------------------
# corrupted replies: NACK, wrong sequence byte, short reply
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nack", "seq", "short"])
@pytest.mark.parametrize(
    ("command", "payload", "doing"),
    [
        (P.Command.PAT_EXPO_PRD, None, "loading the pattern sequence"),
        (P.Command.MBOX_DATA, None, "loading the pattern sequence"),
        (P.Command.LUT_VALID, None, "loading the pattern sequence"),
        (P.Command.PAT_START_STOP, b"\x02", "starting the sequence"),
    ],
    ids=["PAT_EXPO_PRD", "MBOX_DATA", "LUT_VALID", "start"],
)
def test_corrupted_reply_gives_protocol_error_and_stops(kind, command, payload, doing,
                                                        reference):
    emu = FaultyDLPC350()
    emu.corrupt_on(command, kind, payload)
    twin = FakeHardwareBench(noise="none", emulator=emu)
    with pytest.raises(ProtocolError) as info:
        twin.measure(SCENES[:1], PATTERNS)
    message = str(info.value)
    assert P.command_name(command) in message
    assert f"while {doing}; the driver then stopped the sequence" in message
    assert_stopped(twin)  # for "start": the emulator did start, the driver stopped it
    assert digitizer_reads(twin) == 0
    # the link is in step again: the next measurement works
    np.testing.assert_array_equal(twin.measure(SCENES[:1], PATTERNS).values, reference[:1])
    twin.close()


# --------------------------------------------------------------------------------------
# timeouts
# --------------------------------------------------------------------------------------


def test_dropped_reply_times_out_within_the_driver_timeout(reference):
    emu = FakeDLPC350()
    twin = FakeHardwareBench(noise="none", emulator=emu)
    timeout = inspect.signature(DLP4500).parameters["timeout_s"].default  # the twin's
    emu.drop_next(1, after=3)  # the 4th reply: PAT_TRIG_MODE
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=rf"PAT_TRIG_MODE .* within {timeout} s") as info:
        twin.measure(SCENES[:1], PATTERNS)
    elapsed = time.monotonic() - t0
    assert timeout * 0.9 <= elapsed < timeout + 2.0
    assert "the driver then stopped the sequence" in str(info.value)
    assert_stopped(twin)
    np.testing.assert_array_equal(twin.measure(SCENES[:1], PATTERNS).values, reference[:1])
    twin.close()


def test_driver_timeout_is_bounded_with_a_short_timeout():
    emu = FakeDLPC350()
    dlp = DLP4500(emu, timeout_s=0.05, poll_interval_s=0.001)
    dlp.load(PATTERNS)
    emu.drop_next(1)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"PAT_START_STOP .* within 0\.05 s"):
        dlp.start()
    assert time.monotonic() - t0 < 1.0
    assert emu.state == "stopped" and not dlp.is_running
    dlp.close()


def test_late_reply_after_a_timeout_does_not_desynchronise_the_link():
    emu = FakeDLPC350()
    dlp = DLP4500(emu, timeout_s=0.05, poll_interval_s=0.001)
    dlp.load(PATTERNS)
    emu.delay_s = 0.2  # the controller answers late, once
    with pytest.raises(DeviceTimeout):
        dlp.start()
    emu.delay_s = 0.0
    dlp.load(PATTERNS)
    dlp.start()
    assert emu.state == "running"
    dlp.close()


# --------------------------------------------------------------------------------------
# refused before any byte is sent
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "timing", "error", "match"),
    [
        (PATTERNS, {"exposure_us": 100}, ConfigError, r"exposure_us=100.* minimum 235"),
        (PatternSet.random(129, (8, 8), seed=0), {}, PatternError, r"129 patterns.*128"),
        (PatternSet.random(2, (2000, 8), seed=0), {}, PatternError, "do not fit the DMD"),
        (PATTERNS, {"exposure_us": 1000, "period_us": 1500}, ConfigError,
         "exposure must equal the period"),
        (PATTERNS, {"exposure_us": 235, "period_us": 300}, ConfigError, "230 us"),
        (PatternSet.random(24, (16, 16), seed=0), {"exposure_us": 1000}, ConfigError,
         "video frame"),
    ],
    ids=["short-exposure", "too-many-patterns", "masks-too-large", "video-period",
         "dark-gap", "frame-overrun"],
)
def test_driver_refuses_before_any_byte_is_written(patterns, timing, error, match):
    emu = FakeDLPC350()
    dlp = DLP4500(emu)
    with pytest.raises(error, match=match):
        dlp.load(patterns, **timing)
    assert emu.log == []
    assert dlp.patterns is None and dlp.state == "not loaded"


def _bench(emu: FakeDLPC350, digitizer: FakeDigitizer, **options) -> HardwareBench:
    return HardwareBench(DLP4500(emu), PDA100A2(digitizer), CallbackScene(lambda image: None),
                         lock_name=None, **options)


def test_bench_refuses_short_exposure_without_programming_the_device():
    emu, digitizer = FakeDLPC350(), FakeDigitizer()
    bench = _bench(emu, digitizer, exposure_us=100)
    with pytest.raises(ConfigError, match=r"exposure_us=100.* minimum 235"):
        bench.measure(SCENES[:1], PATTERNS)
    # nothing was configured: at most the bench's precautionary stop went out
    assert all(r.command == P.Command.PAT_START_STOP and r.payload == b"\x00"
               for r in emu.requests)
    assert emu.validation_count == 0 and emu.pat_config is None
    assert digitizer.calls == []
    assert emu.state == "stopped"
    bench.close()


def test_bench_refuses_short_exposure_before_any_byte_is_written():
    emu, digitizer = FakeDLPC350(), FakeDigitizer()
    bench = _bench(emu, digitizer, exposure_us=100)
    with pytest.raises(ConfigError):
        bench.measure(SCENES[:1], PATTERNS)
    assert emu.log == []
    bench.close()


def test_bench_refuses_bad_scenes_before_any_byte_is_written():
    emu, digitizer = FakeDLPC350(), FakeDigitizer()
    bench = _bench(emu, digitizer)
    bad = np.full((1, 16, 16), np.nan)
    with pytest.raises(ConfigError, match="NaN"):
        bench.measure(bad, PATTERNS)
    assert emu.log == [] and digitizer.calls == []
    bench.close()


# --------------------------------------------------------------------------------------
# the DAQ trigger never arrives
# --------------------------------------------------------------------------------------


def test_missing_trigger_times_out_and_keeps_the_completed_readings(reference):
    twin = FakeHardwareBench(noise="none", digitizer_options={"missing_triggers": 1})
    twin.read_margin_s = 0.05
    m = PATTERNS.m
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=rf"{m - 1} of {m} triggers arrived") as info:
        twin.measure(SCENES[:1], PATTERNS)
    assert time.monotonic() - t0 < 2.0
    assert "TRIG_OUT" in str(info.value)
    assert_stopped(twin)
    assert twin.modulator.state == "stopped"
    # the readings that completed are kept (on the exception and the detector)
    np.testing.assert_array_equal(info.value.partial, reference[0, : m - 1])
    np.testing.assert_array_equal(twin.detector.read_partial(), reference[0, : m - 1])
    twin.close()


# --------------------------------------------------------------------------------------
# saturation
# --------------------------------------------------------------------------------------


# +-10 V digitizer: the amplifier's 10 V swing, not the ADC range, is what clips
BRIGHT = SimConfig(monitor=MonitorConfig(peak_luminance_cd_m2=2000),
                   amplifier=AmplifierConfig(gain_db=70), digitizer=DigitizerConfig(range_v=10.0))


def _bright_twin() -> FakeHardwareBench:
    with pytest.warns(SettlingWarning):  # 70 dB cannot settle within 235 us
        return FakeHardwareBench(noise="none", config=BRIGHT)


def test_saturation_warns_and_readings_are_clipped():
    twin = _bright_twin()
    scenes = np.full((2, 16, 16), 255, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SettlingWarning)
        with pytest.warns(SaturationWarning, match=r"of 10 readings .* saturation"):
            meas = twin.measure(scenes, PATTERNS)
    values = meas.values
    sat = twin.detector.saturation_v
    assert np.isfinite(values).all()
    assert values.max() <= sat
    ceiling = values.max()
    assert ceiling >= 0.98 * sat
    assert np.count_nonzero(values == ceiling) >= values.size // 2  # clipped, not scaled
    assert meas.settings["detector"]["last_read_saturated"] > 0
    assert_stopped(twin)
    twin.close()


def test_acquire_counts_saturated_readings_on_hardware(tmp_path):
    twin = _bright_twin()
    scenes = np.full((2, 16, 16), 255, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SettlingWarning)
        with pytest.warns(SaturationWarning):
            summary = acquire(twin, scenes, PATTERNS, tmp_path / "sat.lsirec", batch_size=1,
                              progress=False)
    twin.close()
    assert summary.saturated_count > 0
