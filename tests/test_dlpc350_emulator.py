"""FakeDLPC350 on its own (byte level) and the DLP4500 driver running on it, with faults."""

from __future__ import annotations

import time
import warnings

import pytest

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.dlpc350.transport import Transport
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    PatternError,
    ProtocolError,
    TransportError,
)
from lsi_hw.interfaces import TriggerMode
from lsi_hw.patterns import PatternSet

T = 0.05  # small reply timeout: fault tests must finish fast


class Host:
    """Minimal host side for talking to the emulator message by message."""

    def __init__(self, fake: FakeDLPC350) -> None:
        self.fake = fake
        self.seq = 0

    def send(self, msg: P.Message) -> bytes:
        seq, self.seq = self.seq, (self.seq + 1) & 0xFF
        for packet in msg.encode(seq):
            self.fake.write(packet)
        first = self.fake.read(T)
        packets = [first] + [self.fake.read(T) for _ in range(P.reply_packet_count(first) - 1)]
        return P.decode_reply(packets, command=msg.command, seq=seq,
                              expect_len=msg.reply_len, ack=not msg.read)


def setup_sequence(host: Host, entries: list[int], exposure: int = 1000,
                   period: int = 1000) -> None:
    for msg in (
        P.pattern_display("stop"),
        P.display_mode(True),
        P.pattern_source("video"),
        P.pattern_trigger_mode(0),
        P.exposure_period(exposure, period),
        P.pat_config(len(entries), True, len(entries), 1),
        P.mbox_control(2),
        P.mbox_address(0),
        P.mbox_data(P.pattern_lut_payload(entries)),
        P.mbox_control(0),
    ):
        host.send(msg)


def validate(host: Host) -> P.ValidationResult:
    host.send(P.lut_valid_start())
    for _ in range(20):
        res = P.decode_lut_valid(host.send(P.lut_valid_read())[0])
        if not res.busy:
            return res
    raise AssertionError("emulator stayed busy")


def video_entries(n: int) -> list[int]:
    return [P.lut_entry(1 if k % 24 == 0 else 3, k % 24, 1, 0, buffer_swap=k % 24 == 0)
            for k in range(n)]


# --------------------------------------------------------------------------------------
# emulator at the byte level
# --------------------------------------------------------------------------------------


def test_emulator_is_a_transport():
    assert isinstance(FakeDLPC350(), Transport)


def test_reads_version_status_and_flash_count():
    fake = FakeDLPC350(firmware=(3, 0, 2), num_images_in_flash=9)
    host = Host(fake)
    assert P.decode_version(host.send(P.get_version()))["application"] == "3.0.2"
    assert host.send(P.num_images_in_flash()) == b"\x09"
    assert P.decode_hardware_status(host.send(P.status_hardware())[0])[0] == (
        "internal initialization successful"
    )
    assert "sequencer stopped" in P.decode_main_status(host.send(P.status_main())[0])


def test_full_sequence_and_busy_polls():
    fake = FakeDLPC350(validate_busy_polls=3)
    host = Host(fake)
    setup_sequence(host, video_entries(5))
    host.send(P.lut_valid_start())
    polls = [host.send(P.lut_valid_read())[0] for _ in range(4)]
    assert polls == [0x80, 0x80, 0x80, 0x00]
    host.send(P.pattern_display("start"))
    assert fake.state == "running"
    assert "sequencer running" in P.decode_main_status(host.send(P.status_main())[0])
    assert P.decode_exposure_period(host.send(read_msg(P.Command.PAT_EXPO_PRD))) == (
        1000, 1000,
    )
    assert P.decode_pat_config(host.send(read_msg(P.Command.PAT_CONFIG)))["n_entries"] == 5


def read_msg(cmd: P.Command) -> P.Message:
    """A read of register ``cmd``."""
    return P.Message(cmd, b"", True)


def test_multi_packet_message_is_reassembled_and_answered_once():
    fake = FakeDLPC350()
    host = Host(fake)
    for msg in (P.mbox_control(2), P.mbox_address(0)):
        host.send(msg)
    entries = video_entries(50)  # 150 bytes = 58 + 64 + 28: 3 packets
    packets = P.mbox_data(P.pattern_lut_payload(entries)).encode(host.seq)
    assert len(packets) == 3
    for k, packet in enumerate(packets):
        fake.write(packet)
        if k < 2:
            with pytest.raises(DeviceTimeout):
                fake.read(0.001)  # no reply before the last packet
    assert P.decode_reply([fake.read(T)], command=0x1A34, seq=host.seq, ack=True) == b""
    assert fake.pattern_lut[:50] == entries
    assert fake.pattern_entries_written == 50


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([P.Message(0x1A77, b"\x00")], "unknown command"),  # type: ignore[arg-type]
        ([P.Message(P.Command.DISP_MODE, b"\x01\x00")], "payload of 2 bytes"),
        ([P.Message(P.Command.GET_VERSION, b"\x00")], "read-only"),
        ([P.mbox_data(b"\x01\x01\x00")], "mailbox is closed"),
        ([P.mbox_control(2), P.mbox_address(100), P.mbox_data(bytes(3 * 29))], "holds 128"),
        ([P.mbox_control(1), P.mbox_address(60), P.mbox_data(bytes(5))], "holds 64"),
        ([P.display_mode(True), P.pattern_display("start")], "without a validated"),
        ([P.Message(P.Command.PAT_DISP_MODE, b"\x01")], "0 or 3"),
    ],
)
def test_nacks(messages, why):
    fake = FakeDLPC350()
    host = Host(fake)
    for msg in messages[:-1]:
        host.send(msg)
    with pytest.raises(ProtocolError, match="NACKed"):
        host.send(messages[-1])
    assert why in fake.nacks[-1]


def test_config_change_while_running_is_nacked_and_stop_invalidates():
    fake = FakeDLPC350(validate_busy_polls=0)
    host = Host(fake)
    setup_sequence(host, video_entries(3))
    assert validate(host).ok
    host.send(P.pattern_display("start"))
    with pytest.raises(ProtocolError, match=r"NACKed PAT_EXPO_PRD"):
        host.send(P.exposure_period(2000, 2000))
    host.send(P.pattern_display("pause"))
    host.send(P.pattern_display("start"))  # resume after pause: no re-validation needed
    host.send(P.pattern_display("stop"))
    with pytest.raises(ProtocolError, match=r"NACKed PAT_START_STOP"):
        host.send(P.pattern_display("start"))  # Table 2-62 note: LUT needed again


@pytest.mark.parametrize(
    ("entries", "exposure", "period", "bits"),
    [
        (video_entries(3), 1000, 1000, 0),
        ([P.lut_entry(0, 0, 2, 0)], 600, 600, 0b00001),  # 2-bit needs 700 us
        ([P.lut_entry(0, 0, 8, 0)], 8333, 8333, 0),
        (video_entries(3), 1000, 1100, 0b10001),  # video+vsync: must be equal; gap < 230
        ([P.lut_entry(0, 12, 2, 0)], 700, 700, 0b00010),  # 2-bit pattern numbers 0..11
    ],
)
def test_validation_rules(entries, exposure, period, bits):
    fake = FakeDLPC350(validate_busy_polls=0)
    host = Host(fake)
    setup_sequence(host, entries, exposure, period)
    assert validate(host).raw == bits
    assert fake.validated == (bits & 0b10011 == 0)


def test_validation_gap_rule_in_flash_mode():
    fake = FakeDLPC350(validate_busy_polls=0)
    host = Host(fake)
    for msg in (
        P.display_mode(True), P.pattern_source("flash"), P.pattern_trigger_mode(1),
        P.exposure_period(1000, 1100), P.pat_config(1, False, 1, 1),
        P.mbox_control(2), P.mbox_address(0),
        P.mbox_data(P.pattern_lut_payload([P.lut_entry(0, 0, 1, 0)])),
        P.mbox_control(1), P.mbox_address(0), P.mbox_data(b"\x00"), P.mbox_control(0),
    ):
        host.send(msg)
    assert validate(host).raw == 0b10000  # 100 us gap < 230 us
    host.send(P.exposure_period(1000, 1230))
    assert validate(host).raw == 0


def test_entries_must_match_pat_config():
    fake = FakeDLPC350(validate_busy_polls=0)
    host = Host(fake)
    setup_sequence(host, video_entries(4))
    host.send(P.pat_config(5, True, 5, 1))  # claims 5, only 4 written
    assert validate(host).raw == 0b10


# --------------------------------------------------------------------------------------
# the driver on the emulator
# --------------------------------------------------------------------------------------


def masks(m: int, side: int = 8, seed: int = 0) -> PatternSet:
    return PatternSet.random(m, (side, side), seed=seed)


def make(fake: FakeDLPC350, **kw) -> DLP4500:
    kw.setdefault("timeout_s", T)
    kw.setdefault("poll_interval_s", 0.001)
    return DLP4500(fake, **kw)


def test_load_start_stop_close_video():
    fake = FakeDLPC350()
    frames = []
    dlp = make(fake, frame_sink=frames.append)
    ps = masks(30)
    dlp.load(ps, exposure_us=500)
    assert fake.display_mode == 1 and fake.pattern_source == 0 and fake.trigger_mode == 0
    assert (fake.exposure_us, fake.period_us) == (500, 500)
    assert fake.pat_config == {"n_entries": 30, "repeat": True, "patterns_per_trig_out2": 30,
                               "n_images": 2}
    assert [P.decode_lut_entry(e)["pattern_number"] for e in fake.lut_entries] == [
        k % 24 for k in range(30)
    ]
    assert fake.validated and fake.state == "stopped"
    assert len(frames) == 1 and frames[0].shape == (2, 1140, 912, 3)
    assert dlp.frames is frames[0]
    dlp.start()
    assert fake.state == "running" and dlp.is_running and dlp.state == "running"
    dlp.pause()
    assert fake.state == "paused"
    dlp.start()
    dlp.stop()
    assert fake.state == "stopped"
    dlp.start()  # re-sends the LUT and validates again before starting
    assert fake.state == "running" and fake.validation_count == 2
    s = dlp.settings()
    assert s["exposure_us"] == 500 and s["lut_entries"] == 30 and s["trigger"] == "vsync"
    assert s["firmware_version"]["application"] == "3.0.0"
    dlp.close()
    assert fake.state == "stopped" and fake._closed
    dlp.close()  # idempotent


def test_load_flash_with_image_indices():
    fake = FakeDLPC350(num_images_in_flash=10)
    dlp = make(fake, source="flash")
    dlp.load(masks(30), exposure_us=300, period_us=600, trigger=TriggerMode.EXTERNAL_POSITIVE,
             image_indices=[4, 7])
    assert fake.pattern_source == 3 and fake.trigger_mode == 1
    assert fake.image_entries == [4, 7]  # the 2-entry swap went out and was undone
    assert fake.pat_config["n_images"] == 2 and fake.pat_config["repeat"] is False
    entries = [P.decode_lut_entry(e) for e in fake.lut_entries]
    assert all(e["trigger"] == 1 for e in entries)
    assert [k for k, e in enumerate(entries) if e["buffer_swap"]] == [0, 24]
    with dlp:
        dlp.start()
        assert fake.state == "running"
    assert fake.state == "stopped"


def test_flash_index_beyond_flash_rejected_before_writes():
    fake = FakeDLPC350(num_images_in_flash=3)
    dlp = make(fake, source="flash")
    with pytest.raises(ConfigError, match=r"\[5\] do not exist: the flash holds 3"):
        dlp.load(masks(4), exposure_us=300, image_indices=[5])
    assert all(not r.read or r.command == P.Command.NUM_IMAGE_IN_FLASH for r in fake.requests)
    assert [r.command for r in fake.requests] == [P.Command.NUM_IMAGE_IN_FLASH]


def test_seq_wraps_around():
    fake = FakeDLPC350()
    dlp = make(fake)
    for _ in range(260):
        dlp.version()
    seqs = [r.seq for r in fake.requests]
    assert seqs[:3] == [0, 1, 2] and seqs[255:258] == [255, 0, 1]


def test_status_and_version():
    fake = FakeDLPC350(firmware=(2, 1, 0))
    dlp = make(fake)
    st = dlp.status()
    assert "internal memory test passed" in st["system"]
    assert "sequencer stopped" in st["main"]
    assert dlp.version()["api"] == "2.1.0"


# -- faults ----------------------------------------------------------------------------


def test_fault_nack_names_command_and_leaves_stopped():
    fake = FakeDLPC350()
    dlp = make(fake)
    dlp.load(masks(3), exposure_us=1000)
    dlp.start()
    fake.corrupt_next("nack")
    with pytest.raises(ProtocolError, match=r"NACKed PAT_START_STOP \(0x1A24\)"):
        dlp.pause()
    assert fake.state == "paused"  # the device did it; the reply lied


@pytest.mark.parametrize(
    ("kind", "match"),
    [("seq", "sequence byte"), ("short", "short"), ("nack", "NACKed")],
)
def test_fault_corrupt_reply_during_load_is_reported_and_stopped(kind, match):
    fake = FakeDLPC350()
    dlp = make(fake)
    fake.corrupt_next(kind)  # the reply to the first command of the load (stop)
    with pytest.raises(ProtocolError, match=match) as info:
        dlp.load(masks(3), exposure_us=1000)
    assert "the driver then stopped the sequence" in str(info.value)
    assert fake.state == "stopped"
    assert dlp.patterns is None


def test_fault_dropped_reply_times_out_quickly():
    fake = FakeDLPC350()
    dlp = make(fake)
    dlp.load(masks(3), exposure_us=1000)
    fake.drop_next()
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeout, match=r"PAT_START_STOP.*within 0.05 s"):
        dlp.start()
    # hang guard only (takes ~T = 0.05 s; a driver on its default 1 s timeout fails)
    assert time.perf_counter() - t0 < 1.0
    assert fake.state == "stopped"  # the driver stopped it after the timeout


def test_fault_slow_device_times_out():
    fake = FakeDLPC350(delay_s=0.2)
    dlp = make(fake)
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeout):
        dlp.version()
    # hang guard only (takes ~T = 0.05 s): a generous bound, as a loaded machine is slow
    assert time.perf_counter() - t0 < 1.0
    fake.delay_s = 0.0


def test_fault_drop_mid_upload_stops_device():
    fake = FakeDLPC350()
    dlp = make(fake)
    fake.drop_next(after=5)  # stop, mode, source, trigger, exposure answered; PAT_CONFIG lost
    with pytest.raises(DeviceTimeout, match=r"PAT_CONFIG.*then stopped the sequence"):
        dlp.load(masks(3), exposure_us=1000)
    assert fake.state == "stopped" and not fake.validated


def test_fault_unplug_mid_upload():
    fake = FakeDLPC350()
    dlp = make(fake)
    fake.unplug(after_writes=7)
    with pytest.raises(TransportError, match=r"unplugged.*could not stop the sequence either"):
        dlp.load(masks(30), exposure_us=500)
    assert fake.unplugged and dlp.patterns is None
    with pytest.raises(TransportError, match="could not leave the sequence stopped"):
        dlp.close()
    with pytest.raises(TransportError, match="closed"):
        dlp.version()


def test_context_manager_keeps_original_error_after_unplug():
    fake = FakeDLPC350()
    with pytest.warns(RuntimeWarning, match="close"), pytest.raises(TransportError):
        with make(fake) as dlp:
            dlp.load(masks(3), exposure_us=1000)
            fake.unplug()
            dlp.start()


def test_validation_error_bits_reported_in_words():
    fake = FakeDLPC350()
    dlp = make(fake)
    fake.fail_validation(0b00011)
    with pytest.raises(ConfigError) as info:
        dlp.load(masks(3), exposure_us=1000)
    msg = str(info.value)
    assert "LUT_VALID = 0x03" in msg
    assert "exposure or frame period settings invalid" in msg
    assert "pattern numbers in the LUT invalid" in msg
    assert fake.state == "stopped"
    with pytest.raises(ConfigError, match="nothing loaded"):
        dlp.start()


def test_validation_warning_bits_warn_but_load():
    fake = FakeDLPC350()
    dlp = make(fake)
    fake.fail_validation(0b01000)
    with pytest.warns(RuntimeWarning, match="post \\(black\\) vector"):
        dlp.load(masks(3), exposure_us=1000)
    assert dlp.validation_warnings and dlp.patterns is not None
    # the emulator still allows start with only warning bits
    dlp.start()
    assert fake.state == "running"


def test_validation_stays_busy_times_out():
    fake = FakeDLPC350(validate_busy_polls=10_000)
    dlp = make(fake, validate_timeout_s=0.05)
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeout, match="still validating"):
        dlp.load(masks(3), exposure_us=1000)
    # hang guard only (takes ~0.1 s; without the bound the 10,000 busy polls take > 10 s)
    assert time.perf_counter() - t0 < 1.0
    assert fake.state == "stopped"


# -- rejected before any byte is written ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"exposure_us": 234}, ConfigError, "below"),
        ({"exposure_us": 1000, "period_us": 1100}, ConfigError, "230"),
        ({"exposure_us": 300.5}, ConfigError, "whole number"),
        ({"exposure_us": 1000, "trigger": TriggerMode.INTERNAL}, ConfigError, "VSYNC"),
        ({"exposure_us": 1000, "image_indices": [0]}, ConfigError, "flash"),
        ({"exposure_us": 1000, "period_us": 1300}, ConfigError, "equal the period"),
    ],
)
def test_rejected_before_any_write(kwargs, error, match):
    fake = FakeDLPC350()
    dlp = make(fake)
    with pytest.raises(error, match=match):
        dlp.load(masks(3), **kwargs)
    assert fake.log == []


def test_too_many_patterns_and_too_large_masks_rejected_before_any_write():
    fake = FakeDLPC350()
    dlp = make(fake)
    with pytest.raises(PatternError, match="128"):
        dlp.load(masks(129, side=2), exposure_us=300)
    with pytest.raises(PatternError, match="do not fit"):
        dlp.load(PatternSet.random(2, (600, 10), seed=0), exposure_us=300)  # 1200 rows
    assert fake.log == []


def test_video_frame_time_checked_before_any_write():
    fake = FakeDLPC350()
    dlp = make(fake, video_frame_rate_hz=60.0)
    with pytest.raises(ConfigError, match="period_us <= 694"):
        dlp.load(masks(24), exposure_us=1000)
    assert fake.log == []


def test_flash_needs_matching_image_indices_before_any_write():
    fake = FakeDLPC350()
    dlp = make(fake, source="flash")
    with pytest.raises(ConfigError, match="needs image_indices"):
        dlp.load(masks(3), exposure_us=300)
    with pytest.raises(ConfigError, match="2 frame"):
        dlp.load(masks(30), exposure_us=300, image_indices=[0])
    with pytest.raises(ConfigError, match="flash source"):
        dlp.load(masks(3), exposure_us=300, image_indices=[0], trigger=TriggerMode.VSYNC)
    assert fake.log == []


def test_no_io_in_constructor_and_bad_arguments():
    fake = FakeDLPC350()
    make(fake)
    assert fake.log == []
    for kw in ({"source": "hdmi"}, {"timeout_s": 0}, {"leds": 8}, {"superpixel": 0},
               {"frame_sink": 3}):
        with pytest.raises(ConfigError):
            make(fake, **kw)


def test_errors_are_device_errors():
    for cls in (TransportError, ProtocolError, DeviceTimeout):
        assert issubclass(cls, DeviceError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fake = FakeDLPC350()
        dlp = make(fake)
        dlp.load(masks(1), exposure_us=235)
        dlp.set_trigger_outputs(out1_rising_us=1.0, out2_invert=True)
        assert fake.trig_out1_bytes == bytes((0, P.trig_delay_code(1.0), P.TRIG_DELAY_ZERO))
        assert fake.trig_out2_bytes == bytes((2, P.TRIG_DELAY_ZERO))
        dlp.set_led_currents(255, 10, 0)
        assert fake.led_current_bytes == bytes((0, 245, 255))
        dlp.start()
        assert fake.state == "running"
