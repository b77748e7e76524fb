"""DLP4500 driver at the wire level, and the pyusb transport's error mapping.

Like PyMeasure's ``expected_protocol``: a :class:`ScriptedTransport` holds the exact
reports the driver must write and the replies to give; any unexpected or unconsumed
exchange fails the test.  The expected bytes are written out by hand (DLPU010G
§2.4.3 command tables and the §4.2 Table 4-2 sequence; HARDWARE.md report layout),
not produced by the code under test.

The USB tests inject a fake ``usb`` package through ``sys.modules``: no libusb, no
device.
"""

from __future__ import annotations

import errno
import sys
from collections import deque

import pytest
from fake_usb import FakeUsbDevice, NoBackendError, USBError, install_fake_usb

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.dlpc350.transport import UDEV_RULE, UsbHidTransport
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
    TransportError,
)
from lsi_hw.interfaces import Modulator, TriggerMode
from lsi_hw.patterns import PatternSet


def pkt(hexstr: str | bytes) -> bytes:
    raw = bytes.fromhex(hexstr) if isinstance(hexstr, str) else hexstr
    assert len(raw) <= 64
    return raw.ljust(64, b"\0")


def ack(seq: int) -> bytes:
    return pkt(f"40 {seq:02X} 00 00")


def rd(seq: int, *data: int) -> bytes:
    return pkt(bytes((0xC0, seq, len(data), 0)) + bytes(data))


class ScriptedTransport:
    """Expected (write report, reply reports) pairs; fails on anything else."""

    def __init__(self, script: list[tuple[bytes, bytes | list[bytes] | None]]) -> None:
        self.script = deque(script)
        self.replies: deque[bytes] = deque()
        self.n_written = 0
        self.closed = False

    def write(self, report: bytes) -> None:
        self.n_written += 1
        if not self.script:
            raise AssertionError(f"unexpected write #{self.n_written}: {report[:16].hex(' ')}")
        expected, reply = self.script.popleft()
        if bytes(report) != expected:
            raise AssertionError(
                f"write #{self.n_written}:\n expected {expected.hex(' ')}\n got      "
                f"{bytes(report).hex(' ')}"
            )
        if reply is not None:
            self.replies.extend(reply if isinstance(reply, list) else [reply])

    def read(self, timeout_s: float) -> bytes:
        if not self.replies:
            raise AssertionError("unexpected read: no reply scripted")
        return self.replies.popleft()

    def close(self) -> None:
        self.closed = True

    def assert_consumed(self) -> None:
        assert not self.script, f"{len(self.script)} expected writes never happened"
        assert not self.replies, f"{len(self.replies)} scripted replies never read"


def test_scripted_transport_catches_mistakes():
    t = ScriptedTransport([(pkt("40 00 03 00 24 1A 00"), ack(0))])
    with pytest.raises(AssertionError, match="expected"):
        t.write(pkt("40 00 03 00 24 1A 02"))
    t = ScriptedTransport([(pkt("40 00 03 00 24 1A 00"), ack(0))])
    t.write(pkt("40 00 03 00 24 1A 00"))
    with pytest.raises(AssertionError, match="never read"):
        t.assert_consumed()
    with pytest.raises(AssertionError, match="unexpected write"):
        t.write(pkt("40 01 03 00 24 1A 00"))


def masks3() -> PatternSet:
    return PatternSet.random(3, (8, 8), seed=1)


# The full video-port load of 3 masks, exposure = period = 1000 us (0x03E8), VSYNC.
VIDEO_LOAD_3 = [
    (pkt("40 00 03 00 24 1A 00"), ack(0)),  # stop (§2.4.3.4.2)
    (pkt("40 01 03 00 1B 1A 01"), ack(1)),  # display mode: pattern (§2.4.1)
    (pkt("40 02 03 00 22 1A 00"), ack(2)),  # pattern source: video port (§2.4.3.4.1)
    (pkt("40 03 03 00 23 1A 00"), ack(3)),  # trigger mode 0: VSYNC (§2.4.3.2.1)
    (pkt("40 04 0A 00 29 1A E8 03 00 00 E8 03 00 00"), ack(4)),  # exposure, period
    # PAT_CONFIG (§2.4.3.4.5): 3 entries -> 02, repeat 01, 3 per TRIG_OUT_2 -> 02,
    # 1 image -> 00 (the -1 pycrafter4500 forgets)
    (pkt("40 05 06 00 31 1A 02 01 02 00"), ack(5)),
    (pkt("40 06 03 00 33 1A 02"), ack(6)),  # open pattern LUT mailbox (§2.4.3.4.8)
    (pkt("40 07 03 00 32 1A 00"), ack(7)),  # address 0 (§2.4.3.4.7)
    # all 3 entries in one MBOX_DATA (§2.4.3.4.9, Table 2-69): first pattern of the
    # frame: external positive (VSYNC) + buffer swap = 0x040101; then "continue" (3)
    # with pattern numbers 1, 2 (Table 4-2 step 6)
    (pkt("40 08 0B 00 34 1A 01 01 04 07 01 00 0B 01 00"), ack(8)),
    (pkt("40 09 03 00 33 1A 00"), ack(9)),  # close mailbox
    (pkt("40 0A 03 00 1A 1A 00"), ack(10)),  # validate (§2.4.3.1)
    (pkt("C0 0B 02 00 1A 1A"), rd(11, 0x80)),  # busy
    (pkt("C0 0C 02 00 1A 1A"), rd(12, 0x00)),  # done, no error bits
]


def test_video_load_byte_for_byte():
    t = ScriptedTransport([
        *VIDEO_LOAD_3,
        (pkt("40 0D 03 00 24 1A 02"), ack(13)),  # start
        (pkt("40 0E 03 00 24 1A 00"), ack(14)),  # close: stop
    ])
    sink = []
    dlp = DLP4500(t, poll_interval_s=0.001, frame_sink=sink.append)
    dlp.load(masks3(), exposure_us=1000)
    assert len(sink) == 1 and sink[0].shape == (1, 1140, 912, 3)
    dlp.start()
    dlp.close()
    t.assert_consumed()
    assert t.closed


def test_flash_load_byte_for_byte_with_multi_packet_mbox_data():
    """30 masks from flash images [4, 7], internal trigger, all LEDs: the 90-byte LUT
    goes in ONE MBOX_DATA message of two packets; the reply comes after the last."""
    entries = b"".join(
        bytes(((k % 24) << 2, 0x71, 0x04 if k % 24 == 0 else 0x00)) for k in range(30)
    )  # trigger 0, pattern k%24, depth 1 (0x_1), LEDs 7 (0x7_), buffer swap per frame
    mbox = [pkt(bytes.fromhex("40 09 5C 00 34 1A") + entries[:58]), pkt(entries[58:])]
    t = ScriptedTransport([
        (pkt("C0 00 02 00 42 1A"), rd(0, 16)),  # images in flash (checked before writes)
        (pkt("40 01 03 00 24 1A 00"), ack(1)),
        (pkt("40 02 03 00 1B 1A 01"), ack(2)),
        (pkt("40 03 03 00 22 1A 03"), ack(3)),  # flash
        (pkt("40 04 03 00 23 1A 01"), ack(4)),  # trigger mode 1
        (pkt("40 05 0A 00 29 1A 2C 01 00 00 58 02 00 00"), ack(5)),  # 300 / 600 us
        (pkt("40 06 06 00 31 1A 1D 00 1D 01"), ack(6)),  # 30-1, once, 30-1, 2-1
        (pkt("40 07 03 00 33 1A 02"), ack(7)),
        (pkt("40 08 03 00 32 1A 00"), ack(8)),
        (mbox[0], None),  # no reply to the first packet
        (mbox[1], ack(9)),
        (pkt("40 0A 03 00 33 1A 00"), ack(10)),
        (pkt("40 0B 03 00 33 1A 01"), ack(11)),  # image LUT mailbox
        (pkt("40 0C 03 00 32 1A 00"), ack(12)),
        (pkt("40 0D 04 00 34 1A 07 04"), ack(13)),  # [4, 7] swapped as TI's code does
        (pkt("40 0E 03 00 33 1A 00"), ack(14)),
        (pkt("40 0F 03 00 1A 1A 00"), ack(15)),
        (pkt("C0 10 02 00 1A 1A"), rd(16, 0x00)),
    ])
    dlp = DLP4500(t, source="flash", leds=0b111)
    dlp.load(PatternSet.random(30, (16, 16), seed=0), exposure_us=300, period_us=600,
             trigger=TriggerMode.INTERNAL, image_indices=[4, 7])
    t.assert_consumed()


def test_stop_then_start_resends_configuration():
    t = ScriptedTransport([
        *VIDEO_LOAD_3,
        (pkt("40 0D 03 00 24 1A 00"), ack(13)),  # stop
        # start after stop: the LUT must be sent again (Table 2-62 note)
        *[(pkt(bytes((w[0], (w[1] + 14) & 0xFF)) + w[2:]), pkt(bytes((r[0], r[1] + 14))
           + r[2:])) for w, r in VIDEO_LOAD_3],
        (pkt("40 1B 03 00 24 1A 02"), ack(27)),  # start
    ])
    dlp = DLP4500(t, poll_interval_s=0.001)
    dlp.load(masks3(), exposure_us=1000)
    dlp.stop()
    dlp.start()
    t.assert_consumed()


def test_pause_then_start_does_not_resend():
    t = ScriptedTransport([
        *VIDEO_LOAD_3,
        (pkt("40 0D 03 00 24 1A 02"), ack(13)),
        (pkt("40 0E 03 00 24 1A 01"), ack(14)),  # pause
        (pkt("40 0F 03 00 24 1A 02"), ack(15)),  # start again directly
    ])
    dlp = DLP4500(t, poll_interval_s=0.001)
    dlp.load(masks3(), exposure_us=1000)
    dlp.start()
    dlp.pause()
    assert not dlp.is_running and dlp.state == "paused"
    dlp.start()
    t.assert_consumed()


def test_nack_during_load_then_stop():
    t = ScriptedTransport([
        (pkt("40 00 03 00 24 1A 00"), ack(0)),
        (pkt("40 01 03 00 1B 1A 01"), pkt("60 01 00 00")),  # NACK bit
        (pkt("40 02 03 00 24 1A 00"), ack(2)),  # the driver stops after the error
    ])
    dlp = DLP4500(t)
    with pytest.raises(ProtocolError, match=r"NACKed DISP_MODE \(0x1A1B\).*stopped the seq"):
        dlp.load(masks3(), exposure_us=1000)
    t.assert_consumed()


def test_settings_snapshot_reads_version_once():
    word = "00 00 00 03"  # 3.0.0, little endian u32
    t = ScriptedTransport([
        *VIDEO_LOAD_3,
        (pkt("C0 0D 02 00 05 02"), pkt("C0 0D 10 00 " + " ".join([word] * 4))),
    ])
    dlp = DLP4500(t, poll_interval_s=0.001)
    dlp.load(masks3(), exposure_us=1000)
    s1 = dlp.settings()
    s2 = dlp.settings()  # no second read
    assert s1 == s2
    assert s1["firmware_version"]["application"] == "3.0.0"
    assert (s1["exposure_us"], s1["period_us"], s1["lut_entries"]) == (1000, 1000, 3)
    assert s1["display_mode"] == "pattern" and s1["trigger"] == "vsync"
    t.assert_consumed()


def test_class_attributes():
    assert issubclass(DLP4500, Modulator)
    assert DLP4500.array_shape == (1140, 912)
    assert DLP4500.max_patterns == 128
    assert DLP4500.min_exposure_us == 235


def test_plan_is_pure_and_checked():
    dlp = DLP4500(ScriptedTransport([]))
    plan = dlp.plan(masks3(), 1000, 1000, TriggerMode.VSYNC)
    assert [m.command for m in plan.messages()][:3] == [
        P.Command.PAT_START_STOP, P.Command.DISP_MODE, P.Command.PAT_DISP_MODE,
    ]
    with pytest.raises(ConfigError):
        dlp.plan(masks3(), 1000, 1000, TriggerMode.EXTERNAL_POSITIVE)


# --------------------------------------------------------------------------------------
# pyusb transport with an injected fake ``usb`` package
# --------------------------------------------------------------------------------------


def test_usb_pyusb_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "usb", None)
    monkeypatch.setitem(sys.modules, "usb.core", None)
    with pytest.raises(TransportError, match=r"pip install lsi-toolkit\[usb\]"):
        UsbHidTransport()
    assert capsys.readouterr().out == ""


def test_usb_no_backend(monkeypatch):
    install_fake_usb(monkeypatch, find_error=NoBackendError("No backend available"))
    with pytest.raises(TransportError, match=r"install libusb-1\.0"):
        UsbHidTransport()


def test_usb_device_not_found(monkeypatch):
    install_fake_usb(monkeypatch, device=None)
    with pytest.raises(DeviceError, match=r"not found.*cable.*powered.*lsi-hw info") as info:
        UsbHidTransport()
    assert not isinstance(info.value, TransportError)


def test_usb_permission_denied_prints_udev_rule(monkeypatch):
    dev = FakeUsbDevice()
    install_fake_usb(monkeypatch, device=dev,
                     claim_error=USBError("Access denied", -3, errno.EACCES))
    with pytest.raises(TransportError) as info:
        UsbHidTransport()
    assert UDEV_RULE in str(info.value)
    assert UDEV_RULE == (
        'SUBSYSTEM=="usb", ATTRS{idVendor}=="0451", ATTRS{idProduct}=="6401", MODE="0666"'
    )
    assert ("attach", 0) in dev.calls  # the kernel driver was given back


def test_usb_busy(monkeypatch):
    dev = FakeUsbDevice(kernel_active=False)
    install_fake_usb(monkeypatch, device=dev,
                     claim_error=USBError("Resource busy", -6, errno.EBUSY))
    with pytest.raises(TransportError, match="another program"):
        UsbHidTransport()


def test_usb_io_and_close(monkeypatch):
    dev = FakeUsbDevice()
    install_fake_usb(monkeypatch, device=dev)
    with UsbHidTransport(write_timeout_s=0.5) as link:
        assert dev.calls[:2] == [("detach", 0), ("claim", 0)]
        link.write(bytes(64))
        assert dev.calls[-1] == ("write", 0x01, 64, 500)
        with pytest.raises(DeviceTimeout, match="no reply within"):
            link.read(0.0001)
        assert dev.calls[-1] == ("read", 0x81, 64, 1)  # never 0 (= forever in pyusb)
        with pytest.raises(ProtocolError):
            link.write(bytes(63))
    assert dev.calls[-3:] == [("release", 0), ("attach", 0), ("dispose",)]
    with pytest.raises(TransportError, match="closed"):
        link.read(0.1)
    link.close()  # idempotent


def test_usb_errno_timeout_and_unplug(monkeypatch):
    dev = FakeUsbDevice()
    install_fake_usb(monkeypatch, device=dev)
    link = UsbHidTransport()
    dev.read_error = USBError("timed out", None, errno.ETIMEDOUT)
    with pytest.raises(DeviceTimeout):
        link.read(0.01)
    dev.write_error = USBError("No such device", -4, errno.ENODEV)
    with pytest.raises(TransportError, match="unplugged"):
        link.write(bytes(64))
    dev.read_error = USBError("No such device", -4, None)  # backend code only
    with pytest.raises(TransportError, match="unplugged"):
        link.read(0.01)
    link.close()


def test_dlp4500_open_over_fake_usb_and_emulator(monkeypatch):
    emulator = FakeDLPC350()
    dev = FakeUsbDevice(emulator)
    install_fake_usb(monkeypatch, device=dev)
    with DLP4500.open(timeout_s=0.05, poll_interval_s=0.001) as dlp:
        dlp.load(masks3(), exposure_us=1000)
        dlp.start()
        assert emulator.state == "running"
    assert emulator.state == "stopped"
    assert ("release", 0) in dev.calls and ("attach", 0) in dev.calls


def test_dlp4500_over_usb_unplugged_mid_upload(monkeypatch):
    emulator = FakeDLPC350()
    dev = FakeUsbDevice(emulator)
    install_fake_usb(monkeypatch, device=dev)
    dlp = DLP4500.open(timeout_s=0.05)
    calls = {"n": 0}
    orig = dev.write

    def write(ep, data, timeout):
        calls["n"] += 1
        if calls["n"] > 4:
            raise USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)
        return orig(ep, data, timeout)

    dev.write = write
    with pytest.raises(TransportError, match=r"unplugged.*could not stop"):
        dlp.load(masks3(), exposure_us=1000)
    with pytest.raises(TransportError):
        dlp.close()
