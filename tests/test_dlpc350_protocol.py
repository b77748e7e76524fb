"""DLPC350 USB-HID codec: golden bytes per command, round trips, error messages.

Golden reports are written out by hand from the layout in DLPU010G §1.2.3 / HARDWARE.md
("Report layout") and TI's ``DLPC350_PrepWriteCmd``/``DLPC350_SendMsg``: flags, seq,
length LE (= 2 + payload), CMD3, CMD2, payload, zero padding to 64 bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.errors import ConfigError, ProtocolError


def pkt(hexstr: str) -> bytes:
    """A 64-byte report from a hex string, zero padded."""
    raw = bytes.fromhex(hexstr)
    assert len(raw) <= 64
    return raw.ljust(64, b"\0")


def one(msg: P.Message, seq: int = 0) -> bytes:
    packets = msg.encode(seq)
    assert len(packets) == 1
    return packets[0]


# --------------------------------------------------------------------------------------
# golden bytes
# --------------------------------------------------------------------------------------

GOLDEN = [
    # HARDWARE.md example; DLPU010G §2.4.1 Table 2-49: display mode = pattern
    (P.display_mode(True), 0, "40 00 03 00 1B 1A 01"),
    (P.display_mode(False), 7, "40 07 03 00 1B 1A 00"),
    # power control 0x0200 (section unconfirmed; TI DLPC350_SetPowerMode)
    (P.power_control("standby"), 1, "40 01 03 00 00 02 01"),
    (P.power_control("normal"), 2, "40 02 03 00 00 02 00"),
    # GET_VERSION read 0x0205: read flags 0xC0, length 2 (TI DLPC350_PrepReadCmd)
    (P.get_version(), 2, "C0 02 02 00 05 02"),
    # DLPU010G §2.3.4.2 Table 2-19: parallel port (0), 24-bit (1 << 3)
    (P.source_select(0, 1), 0, "40 00 03 00 00 1A 08"),
    # DLPU010G §2.3.4.3 Table 2-20: RGB 4:4:4
    (P.pixel_format(0), 0, "40 00 03 00 02 1A 00"),
    # DLPU010G §2.3.7.1 Table 2-34: bit3 sequencer, bit0 R, bit1 G, bit2 B
    (P.led_enable(False, False, False, True), 0, "40 00 03 00 07 1A 08"),
    (P.led_enable(True, False, True, False), 0, "40 00 03 00 07 1A 05"),
    # LED current 0x0B01 (section unconfirmed): 255 - current (EVM PWM inverted)
    (P.led_current(255, 0, 100), 3, "40 03 05 00 01 0B 00 FF 9B"),
    # DLPU010G §2.1: status reads
    (P.status_hardware(), 0, "C0 00 02 00 0A 1A"),
    (P.status_system(), 0, "C0 00 02 00 0B 1A"),
    (P.status_main(), 0, "C0 00 02 00 0C 1A"),
    # DLPU010G §2.4.3.1 Table 2-52: validate (write dummy byte), then read
    (P.lut_valid_start(), 10, "40 0A 03 00 1A 1A 00"),
    (P.lut_valid_read(), 11, "C0 0B 02 00 1A 1A"),
    # DLPU010G §2.4.3.2.2 Table 2-54: invert (bit1), rising, falling; 0xBB = 0 us
    (P.trig_out1(False), 0, "40 00 05 00 1D 1A 00 BB BB"),
    (P.trig_out1(True, 0x00, 0xD5), 0, "40 00 05 00 1D 1A 02 00 D5"),
    # DLPU010G §2.4.3.2.3 Table 2-55
    (P.trig_out2(True, 0xFF), 0, "40 00 04 00 1E 1A 02 FF"),
    # DLPU010G §2.4.3.4.1 Table 2-61: 0 video port, 3 flash
    (P.pattern_source("video"), 2, "40 02 03 00 22 1A 00"),
    (P.pattern_source("flash"), 2, "40 02 03 00 22 1A 03"),
    # DLPU010G §2.4.3.2.1 Table 2-53: trigger modes 0..4
    (P.pattern_trigger_mode(0), 3, "40 03 03 00 23 1A 00"),
    (P.pattern_trigger_mode(1), 3, "40 03 03 00 23 1A 01"),
    # DLPU010G §2.4.3.4.2 Table 2-62: 0 stop, 1 pause, 2 start
    (P.pattern_display("stop"), 0, "40 00 03 00 24 1A 00"),
    (P.pattern_display("pause"), 0, "40 00 03 00 24 1A 01"),
    (P.pattern_display("start"), 0, "40 00 03 00 24 1A 02"),
    # DLPU010G §2.4.3.4.3 Table 2-63: u32 LE exposure 1000 us, u32 LE period 1500 us
    (P.exposure_period(1000, 1500), 4, "40 04 0A 00 29 1A E8 03 00 00 DC 05 00 00"),
    # DLPU010G §2.4.3.4.4 Table 2-64
    (P.invert_data(True), 0, "40 00 03 00 30 1A 01"),
    # DLPU010G §2.4.3.4.5 Table 2-65: every count minus one (3 entries, repeat,
    # 3 per TRIG_OUT_2, 1 image -> 02 01 02 00; pycrafter4500 would send 01 as last byte)
    (P.pat_config(3, True, 3, 1), 5, "40 05 06 00 31 1A 02 01 02 00"),
    (P.pat_config(128, False, 256, 64), 5, "40 05 06 00 31 1A 7F 00 FF 3F"),
    # DLPU010G §2.4.3.4.7 Table 2-66 / §2.4.3.4.8 Table 2-67
    (P.mbox_address(0), 7, "40 07 03 00 32 1A 00"),
    (P.mbox_address(127), 7, "40 07 03 00 32 1A 7F"),
    (P.mbox_control(P.MailboxMode.PATTERN_LUT), 6, "40 06 03 00 33 1A 02"),
    (P.mbox_control(P.MailboxMode.IMAGE_LUT), 6, "40 06 03 00 33 1A 01"),
    (P.mbox_control(P.MailboxMode.CLOSE), 9, "40 09 03 00 33 1A 00"),
    # DLPU010G §2.4.3.4.9 Tables 2-68/2-69: 3 entries, 3 bytes each, LE
    (
        P.mbox_data(P.pattern_lut_payload([0x040101, 0x000107, 0x00010B])),
        8,
        "40 08 0B 00 34 1A 01 01 04 07 01 00 0B 01 00",
    ),
    # image load 0x1A39 and image count 0x1A42 (sections unconfirmed)
    (P.image_load(5), 0, "40 00 03 00 39 1A 05"),
    (P.num_images_in_flash(), 0, "C0 00 02 00 42 1A"),
]


@pytest.mark.parametrize(("msg", "seq", "expected"), GOLDEN)
def test_golden_bytes(msg, seq, expected):
    assert one(msg, seq) == pkt(expected)


def test_write_without_reply_has_flags_zero():
    # HARDWARE.md: write-no-reply = 0x00 (TI DLPC350_SendMsg with ackRequired false)
    assert P.encode(0x1A1B, b"\x01", reply=False)[0] == pkt("00 00 03 00 1B 1A 01")


def test_multi_packet_mbox_data_layout():
    """30 entries = 90 bytes: 58 in the first packet, 32 in a header-less second one."""
    entries = [P.lut_entry(3, k % 24, 1, 0) for k in range(30)]
    payload = P.pattern_lut_payload(entries)
    assert len(payload) == 90
    packets = P.mbox_data(payload).encode(8)
    assert len(packets) == 2 and all(len(p) == 64 for p in packets)
    assert packets[0][:6] == bytes.fromhex("40 08 5C 00 34 1A")  # length 92 = 2 + 90
    assert packets[0][6:] == payload[:58]
    assert packets[1] == payload[58:].ljust(64, b"\0")  # no header on continuation


def test_long_payload_packet_count():
    assert [len(P.encode(1, bytes(n))) for n in (0, 58, 59, 122, 123)] == [1, 1, 2, 2, 3]
    assert P.request_packet_count(384) == 1 + 6  # 128 entries x 3 bytes


def test_image_lut_two_entries_are_swapped_like_ti():
    # TI DLPC350_SendImageLut special-cases numEntries == 2
    assert P.image_lut_payload([4, 7]) == bytes((7, 4))
    assert P.image_lut_payload([4, 7, 9]) == bytes((4, 7, 9))


# --------------------------------------------------------------------------------------
# LUT entries
# --------------------------------------------------------------------------------------


def test_lut_entry_bits():
    # DLPU010G Table 2-69 / TI DLPC350_AddToPatLut
    assert P.lut_entry(1, 0, 1, 0, buffer_swap=True) == 0x040101
    assert P.lut_entry(0, 23, 1, 7) == 23 << 2 | 1 << 8 | 7 << 12
    word = P.lut_entry(2, 5, 8, 4, invert=True, insert_black=True)
    assert word == 2 | 5 << 2 | 8 << 8 | 4 << 12 | 1 << 16 | 1 << 17
    assert P.lut_entry(3, 0, 1, 0, trig_out_prev=True) == 3 | 1 << 8 | 1 << 19


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trigger": 4},
        {"pattern_number": 24},  # black / white fill / "none" not accepted as a bitplane
        {"pattern_number": -1},
        {"bit_depth": 0},
        {"bit_depth": 9},
        {"leds": 8},
        {"insert_black": True, "trig_out_prev": True},
    ],
)
def test_lut_entry_rejects(kwargs):
    args = {"trigger": 0, "pattern_number": 0, "bit_depth": 1, "leds": 0} | kwargs
    with pytest.raises(ConfigError):
        P.lut_entry(**args)


@given(
    trigger=st.integers(0, 3),
    pattern=st.integers(0, 23),
    depth=st.integers(1, 8),
    leds=st.integers(0, 7),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_lut_entry_round_trip(trigger, pattern, depth, leds, flags):
    invert, black, swap, prev = flags
    if black and prev:
        prev = False
    word = P.lut_entry(trigger, pattern, depth, leds, invert, black, swap, prev)
    assert 0 <= word < 1 << 24
    assert P.decode_lut_entry(word) == {
        "trigger": trigger, "pattern_number": pattern, "bit_depth": depth, "leds": leds,
        "invert": invert, "insert_black": black, "buffer_swap": swap, "trig_out_prev": prev,
    }
    assert int.from_bytes(P.pattern_lut_payload([word]), "little") == word


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------


@given(
    command=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=400),
    seq=st.integers(0, 255),
    read=st.booleans(),
    reply=st.booleans(),
)
def test_encode_decode_request_round_trip(command, payload, seq, read, reply):
    reply = reply or read
    packets = P.encode(command, payload, read=read, reply=reply, seq=seq)
    assert all(len(p) == 64 for p in packets)
    assert len(packets) == P.request_packet_count(len(payload))
    req = P.decode_request(packets)
    assert (req.command, req.payload, req.read, req.reply, req.seq) == (
        command, payload, read, reply, seq,
    )


@given(data=st.binary(max_size=400), seq=st.integers(0, 255), read=st.booleans())
def test_encode_decode_reply_round_trip(data, seq, read):
    packets = P.encode_reply(data, seq=seq, read=read)
    assert all(len(p) == 64 for p in packets)
    assert P.reply_packet_count(packets[0]) == len(packets)
    if data or not read:
        got = P.decode_reply(packets, command=0x1A34, seq=seq, ack=not read)
        assert got == data
        # a concatenation works as well as the list
        assert P.decode_reply(b"".join(packets), command=0x1A34, seq=seq, ack=not read) == data


def test_seq_bounds():
    assert P.encode(0x1A1B, b"\x01", seq=255)[0][1] == 255
    for bad in (-1, 256):
        with pytest.raises(ConfigError, match="seq"):
            P.encode(0x1A1B, b"\x01", seq=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"command": 0x10000}, "command"),
        ({"command": -1}, "command"),
        ({"command": 1.5}, "command"),
        ({"payload": bytes(65534)}, "16-bit length"),
        ({"payload": "text"}, "bytes"),
        ({"read": True, "reply": False}, "reply"),
    ],
)
def test_encode_validation(kwargs, match):
    args = {"command": 0x1A1B, "payload": b""} | kwargs
    with pytest.raises(ConfigError, match=match):
        P.encode(args.pop("command"), args.pop("payload"), **args)


def test_max_payload_fits():
    packets = P.encode(0x1A34, bytes(P.MAX_PAYLOAD))
    assert packets[0][2:4] == b"\xff\xff"


# --------------------------------------------------------------------------------------
# reply errors
# --------------------------------------------------------------------------------------


def test_decode_reply_nack_names_command():
    nack = P.encode_reply(seq=3, read=False, nack=True)
    with pytest.raises(ProtocolError, match=r"DLPC350 NACKed DISP_MODE \(0x1A1B\)"):
        P.decode_reply(nack, command=0x1A1B, seq=3, ack=True)


def test_decode_reply_empty_read_is_nack_but_empty_ack_is_fine():
    empty = P.encode_reply(b"", seq=1, read=True)
    with pytest.raises(ProtocolError, match=r"NACKed GET_VERSION \(0x0205\).*empty reply"):
        P.decode_reply(empty, command=0x0205, seq=1)
    ack = P.encode_reply(b"", seq=1, read=False)
    assert P.decode_reply(ack, command=0x1A1B, seq=1, ack=True) == b""


def test_decode_reply_wrong_sequence():
    reply = P.encode_reply(b"\x00", seq=5)
    with pytest.raises(ProtocolError, match=r"LUT_VALID \(0x1A1A\).*sequence byte 5, expected 6"):
        P.decode_reply(reply, command=0x1A1A, seq=6)


def test_decode_reply_short():
    full = P.encode_reply(bytes(range(16)), seq=0)[0]
    with pytest.raises(ProtocolError, match=r"short reply to GET_VERSION.*16.*4"):
        P.decode_reply(full[:8], command=0x0205, seq=0)
    with pytest.raises(ProtocolError, match="shorter than the 4-byte header"):
        P.decode_reply(full[:2], command=0x0205, seq=0)
    small = P.encode_reply(b"\x01", seq=0)
    with pytest.raises(ProtocolError, match="expected 16"):
        P.decode_reply(small, command=0x0205, seq=0, expect_len=16)
    # a multi-packet reply missing its continuation packet
    long = P.encode_reply(bytes(100), seq=0)
    with pytest.raises(ProtocolError, match="declares 100 data bytes but 60 arrived"):
        P.decode_reply(long[:1], command=0x1A34, seq=0)


def test_decode_request_errors():
    with pytest.raises(ProtocolError):
        P.decode_request(b"\x40\x00")
    with pytest.raises(ProtocolError, match="< 2"):
        P.decode_request(pkt("40 00 01 00 1B 1A"))
    with pytest.raises(ProtocolError, match="declares 100"):
        P.decode_request(pkt("40 00 66 00 34 1A"))


# --------------------------------------------------------------------------------------
# decoders and helpers
# --------------------------------------------------------------------------------------


def test_lut_valid_words():
    # DLPU010G §2.4.3.1 Table 2-52
    busy = P.decode_lut_valid(0x80)
    assert busy.busy and not busy.ok
    res = P.decode_lut_valid(0b10011)
    assert res.errors == (
        "exposure or frame period settings invalid",
        "pattern numbers in the LUT invalid",
        "warning: frame period minus exposure is less than 230 us",
    )
    warn = P.decode_lut_valid(0b01100)
    assert warn.ok and len(warn.warnings) == 2 and "TRIG_OUT_1" in warn.warnings[0]
    assert P.decode_lut_valid(0).ok


def test_status_words():
    assert "internal initialization successful" in P.decode_hardware_status(0x01)
    hw = P.decode_hardware_status(0b11001100)
    assert any("forced swap error" in w for w in hw)
    assert any("aborted" in w for w in hw)
    assert "internal memory test passed" in P.decode_system_status(1)
    assert P.decode_main_status(0b0010) == [
        "DMD micromirrors not parked",
        "sequencer running",
        "frame buffer not frozen",
        "gamma correction disabled",
    ]


def test_version_decoding():
    word = (3 << 24 | 1 << 16 | 7).to_bytes(4, "little")
    v = P.decode_version(word * 4)
    assert v == {k: "3.1.7" for k in ("application", "api", "software_config",
                                      "sequence_config")}
    with pytest.raises(ProtocolError):
        P.decode_version(b"\0" * 8)


def test_trigger_delay_codes():
    # 107.2 ns per step, 0xBB = 0 us (DLPU010G Tables 2-54/2-55)
    assert P.trig_delay_code(0.0) == 0xBB
    assert P.trig_delay_code(-20.05) == 0x00
    assert P.trig_delay_code(2.787, 1) == 0xD5
    assert P.trig_delay_code(7.29, 2) == 0xFF
    with pytest.raises(ConfigError, match="TRIG_OUT_1"):
        P.trig_delay_code(3.0, 1)
    with pytest.raises(ConfigError):
        P.trig_delay_code(-21.0, 2)
    with pytest.raises(ConfigError):
        P.trig_out1(False, 0xD6, 0xBB)


def test_value_checks():
    with pytest.raises(ConfigError):
        P.pat_config(0, False, 1, 1)
    with pytest.raises(ConfigError):
        P.pat_config(129, False, 1, 1)
    with pytest.raises(ConfigError):
        P.pat_config(1, False, 1, 65)
    with pytest.raises(ConfigError):
        P.mbox_address(128)
    with pytest.raises(ConfigError, match="reserved"):
        P.pattern_source(1)
    with pytest.raises(ConfigError):
        P.pattern_lut_payload([0] * 129)
    with pytest.raises(ConfigError):
        P.power_control("sleep")
    with pytest.raises(ConfigError):
        P.led_current(256, 0, 0)


def test_command_table_covers_hardware_md():
    ids = {int(c) for c in P.Command}
    assert {0x0200, 0x0205, 0x1A00, 0x1A02, 0x1A07, 0x0B01, 0x1A0A, 0x1A0B, 0x1A0C, 0x1A1A,
            0x1A1B, 0x1A1D, 0x1A1E, 0x1A22, 0x1A23, 0x1A24, 0x1A29, 0x1A30, 0x1A31, 0x1A32,
            0x1A33, 0x1A34, 0x1A39, 0x1A42} <= ids
    assert set(P.COMMANDS) == set(P.Command)
    assert P.command_name(0x1A1B) == "DISP_MODE (0x1A1B)"
    assert P.command_name(0x7777) == "command 0x7777"
