"""DLPC350 USB-HID protocol codec (pure functions, no I/O).

The TI DLPC350 controller of the DLP LightCrafter 4500 takes commands as 64-byte HID
reports on interrupt endpoints (no report-id byte on the wire).  This module builds
those reports and parses the replies; it never touches a device.

Sources
-------
Section and table numbers below refer to TI's *DLPC350 Programmer's Guide*, DLPU010,
revision G.  They were taken from a public reference that quotes DLPU010G table by
table (the PDF itself was not available here), and cross-checked against TI's own
LightCrafter 4500 SDK source (``dlpc350_api.cpp``: ``CmdList``, ``DLPC350_SendMsg``,
``DLPC350_AddToPatLut``, ``DLPC350_SendPatLut``, ``DLPC350_SendImageLut``).  Where no
section could be confirmed the docstring says "section unconfirmed".

Report layout (DLPU010G §1.2.3 as quoted; TI ``hidMessageStruct``)
--------------------------------------------------------------------
Request, first packet::

    byte 0   flags, LSB first: dest:3 (0 = projector control), reserved:2, nack:1,
             reply:1, rw:1  ->  bit7 read, bit6 reply requested, bit5 NACK (replies)
    byte 1   sequence byte (the reply echoes it)
    byte 2-3 length, little endian = 2 + payload length (command id + payload)
    byte 4   CMD3 (low byte of the 16-bit id), byte 5 CMD2 (high byte)
    byte 6.. the first 58 payload bytes; zero padding to 64

A longer payload continues in further 64-byte packets *without* a header (TI copies
``text.data[60 + 64 k ...]``).  The device answers once, after the last packet.

Reply, first packet: bytes 0-3 as above (length = number of data bytes, no command
echo), data from byte 4 (60 bytes), continuation packets of 64 data bytes.  A NACK is
the nack bit; for a read, a length of 0 is also a NACK (TI ``DLPC350_Read``).  TI's
write path (``DLPC350_Write``) checks only the nack bit of an acknowledgement, so
:func:`decode_reply` takes ``ack=True`` for write acknowledgements, which may be empty.

Why one module of ~1000 lines: the framing, the typed messages, the LUT words and the
reply decoders are one table-driven codec that cites the vendor guide section by
section; the emulator, the driver and the golden-byte tests all read it as one
vocabulary (``protocol.<message>``), and most of its length is those citations.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lsi_hw.errors import ConfigError, ProtocolError

__all__ = [
    "BITPLANES",
    "FLAG_NACK",
    "FLAG_READ",
    "FLAG_REPLY",
    "IMAGE_LUT_SIZE",
    "LUT_VALID_BITS",
    "MIN_EXPOSURE_US",
    "PATTERN_LUT_SIZE",
    "REPORT_SIZE",
    "TRIG_DELAY_STEP_US",
    "TRIG_DELAY_ZERO",
    "Command",
    "CommandSpec",
    "MailboxMode",
    "Message",
    "PatternSource",
    "Request",
    "TrigType",
    "TriggerModeCode",
    "ValidationResult",
    "check_int",
    "command_name",
    "decode_exposure_period",
    "decode_hardware_status",
    "decode_lut_entry",
    "decode_lut_valid",
    "decode_main_status",
    "decode_pat_config",
    "decode_reply",
    "decode_request",
    "decode_system_status",
    "decode_version",
    "display_mode",
    "encode",
    "encode_reply",
    "exposure_period",
    "get_version",
    "image_load",
    "image_lut_payload",
    "invert_data",
    "led_current",
    "led_enable",
    "lut_entry",
    "lut_valid_read",
    "lut_valid_start",
    "mbox_address",
    "mbox_control",
    "mbox_data",
    "num_images_in_flash",
    "pat_config",
    "pattern_display",
    "pattern_lut_payload",
    "pattern_source",
    "pattern_trigger_mode",
    "pixel_format",
    "power_control",
    "reply_packet_count",
    "request_packet_count",
    "source_select",
    "status_hardware",
    "status_main",
    "status_system",
    "trig_delay_code",
    "trig_out1",
    "trig_out2",
]

#: Bytes per HID report (``USB_MAX_PACKET_SIZE``).
REPORT_SIZE: int = 64
#: Request header: flags, seq, length (2), CMD3, CMD2.
_REQ_HEADER: int = 6
#: Reply header: flags, seq, length (2).
_REPLY_HEADER: int = 4
#: Payload bytes carried by the first request packet.
_REQ_FIRST: int = REPORT_SIZE - _REQ_HEADER  # 58
#: Data bytes carried by the first reply packet.
_REPLY_FIRST: int = REPORT_SIZE - _REPLY_HEADER  # 60
#: Largest payload the 16-bit length field can describe (length = 2 + payload).
MAX_PAYLOAD: int = 0xFFFF - 2

FLAG_READ: int = 0x80  #: bit7 of byte 0: read (1) / write (0)
FLAG_REPLY: int = 0x40  #: bit6: host wants a reply
FLAG_NACK: int = 0x20  #: bit5: set by the device in a NACK reply
_DEST_MASK: int = 0x07  #: bits 0-2: destination, 0 = projector control

#: Pattern LUT entries (``MAX_PAT_LUT_ENTRIES``); DLPU010G Table 2-65 (1-128 entries).
PATTERN_LUT_SIZE: int = 128
#: Image-index LUT entries (``MAX_IMAGE_LUT_ENTRIES``); DLPU010G Table 2-65 (1-64).
IMAGE_LUT_SIZE: int = 64
#: Bitplanes of one 24-bit frame; 1-bit pattern numbers 0-23 (DLPU010G Table 2-70).
BITPLANES: int = 24
#: Minimum exposure per bit depth 1..8, microseconds (DLPU010G Table 2-48; the minimum
#: exposures are quoted from DLPU011F Table 4-1).
MIN_EXPOSURE_US: dict[int, int] = {
    1: 235, 2: 700, 3: 1570, 4: 1700, 5: 2000, 6: 2500, 7: 4500, 8: 8333,
}
#: Trigger-out delay resolution, microseconds per count (DLPU010G Tables 2-54/2-55 say
#: 107.2 ns; DLPU011F §3.3.4 says 107.136 ns).
TRIG_DELAY_STEP_US: float = 0.1072
#: Trigger-out delay code meaning 0 us (reset default).
TRIG_DELAY_ZERO: int = 0xBB
#: Largest delay code: TRIG_OUT_1 0xD5 (+2.787 us), TRIG_OUT_2 0xFF (+7.29 us).
_TRIG_DELAY_MAX: dict[int, int] = {1: 0xD5, 2: 0xFF}


# --------------------------------------------------------------------------------------
# command table
# --------------------------------------------------------------------------------------


class Command(enum.IntEnum):
    """16-bit USB command ids, ``0xCMD2CMD3`` (TI ``CmdList``)."""

    POWER_CONTROL = 0x0200
    GET_VERSION = 0x0205
    LED_CURRENT = 0x0B01
    SOURCE_SEL = 0x1A00
    PIXEL_FORMAT = 0x1A02
    LED_ENABLE = 0x1A07
    STATUS_HW = 0x1A0A
    STATUS_SYS = 0x1A0B
    STATUS_MAIN = 0x1A0C
    LUT_VALID = 0x1A1A
    DISP_MODE = 0x1A1B
    TRIG_OUT1_CTL = 0x1A1D
    TRIG_OUT2_CTL = 0x1A1E
    PAT_DISP_MODE = 0x1A22
    PAT_TRIG_MODE = 0x1A23
    PAT_START_STOP = 0x1A24
    PAT_EXPO_PRD = 0x1A29
    INVERT_DATA = 0x1A30
    PAT_CONFIG = 0x1A31
    MBOX_ADDRESS = 0x1A32
    MBOX_CONTROL = 0x1A33
    MBOX_DATA = 0x1A34
    IMAGE_LOAD = 0x1A39
    NUM_IMAGE_IN_FLASH = 0x1A42


@dataclass(frozen=True)
class CommandSpec:
    """What a command carries.

    Attributes
    ----------
    write_len:
        Payload bytes of a write; None = variable (MBOX_DATA); -1 = not writable.
    read_len:
        Data bytes of a read reply; -1 = not readable.
    section:
        Where DLPU010 describes it ("section unconfirmed" where no number was found).
    """

    write_len: int | None
    read_len: int
    section: str


COMMANDS: dict[Command, CommandSpec] = {
    Command.POWER_CONTROL: CommandSpec(1, 1, "DLPU010 section unconfirmed (I2C 0x07)"),
    Command.GET_VERSION: CommandSpec(-1, 16, "DLPU010 section unconfirmed (I2C 0x11)"),
    Command.LED_CURRENT: CommandSpec(3, 3, "DLPU010 section unconfirmed (I2C 0x4B)"),
    Command.SOURCE_SEL: CommandSpec(1, 1, "DLPU010G §2.3.4.2, Table 2-19"),
    Command.PIXEL_FORMAT: CommandSpec(1, 1, "DLPU010G §2.3.4.3, Table 2-20"),
    Command.LED_ENABLE: CommandSpec(1, 1, "DLPU010G §2.3.7.1, Table 2-34"),
    Command.STATUS_HW: CommandSpec(-1, 1, "DLPU010G §2.1 (status commands; §2.1.1 inferred)"),
    Command.STATUS_SYS: CommandSpec(-1, 1, "DLPU010G §2.1 (status commands; §2.1.2 inferred)"),
    Command.STATUS_MAIN: CommandSpec(-1, 1, "DLPU010G §2.1.3, Table 2-3"),
    Command.LUT_VALID: CommandSpec(1, 1, "DLPU010G §2.4.3.1, Table 2-52"),
    Command.DISP_MODE: CommandSpec(1, 1, "DLPU010G §2.4.1, Table 2-49"),
    Command.TRIG_OUT1_CTL: CommandSpec(3, 3, "DLPU010G §2.4.3.2.2, Table 2-54"),
    Command.TRIG_OUT2_CTL: CommandSpec(2, 2, "DLPU010G §2.4.3.2.3, Table 2-55"),
    Command.PAT_DISP_MODE: CommandSpec(1, 1, "DLPU010G §2.4.3.4.1, Table 2-61"),
    Command.PAT_TRIG_MODE: CommandSpec(1, 1, "DLPU010G §2.4.3.2.1, Table 2-53"),
    Command.PAT_START_STOP: CommandSpec(1, 1, "DLPU010G §2.4.3.4.2, Table 2-62"),
    Command.PAT_EXPO_PRD: CommandSpec(8, 8, "DLPU010G §2.4.3.4.3, Table 2-63"),
    Command.INVERT_DATA: CommandSpec(1, 1, "DLPU010G §2.4.3.4.4, Table 2-64"),
    Command.PAT_CONFIG: CommandSpec(4, 4, "DLPU010G §2.4.3.4.5, Table 2-65"),
    Command.MBOX_ADDRESS: CommandSpec(1, 1, "DLPU010G §2.4.3.4.7, Table 2-66"),
    Command.MBOX_CONTROL: CommandSpec(1, 1, "DLPU010G §2.4.3.4.8, Table 2-67"),
    Command.MBOX_DATA: CommandSpec(None, -1, "DLPU010G §2.4.3.4.9, Tables 2-68/2-69"),
    Command.IMAGE_LOAD: CommandSpec(1, 1, "DLPU010 section unconfirmed (I2C 0x7F)"),
    Command.NUM_IMAGE_IN_FLASH: CommandSpec(-1, 1, "DLPU010 section unconfirmed (I2C 0x0C)"),
}


def command_name(command: int) -> str:
    """``"DISP_MODE (0x1A1B)"`` for a known id, ``"command 0x1234"`` otherwise."""
    try:
        return f"{Command(command).name} (0x{int(command):04X})"
    except ValueError:
        return f"command 0x{int(command):04X}"


class MailboxMode(enum.IntEnum):
    """MBOX_CONTROL values (DLPU010G §2.4.3.4.8, Table 2-67)."""

    CLOSE = 0
    IMAGE_LUT = 1
    PATTERN_LUT = 2
    VAR_EXPOSURE_LUT = 3


class PatternSource(enum.IntEnum):
    """PAT_DISP_MODE values (DLPU010G §2.4.3.4.1, Table 2-61; 1 and 2 are reserved)."""

    VIDEO_PORT = 0
    FLASH = 3


class TriggerModeCode(enum.IntEnum):
    """PAT_TRIG_MODE values (DLPU010G §2.4.3.2.1, Table 2-53)."""

    VSYNC = 0
    INTERNAL_OR_EXTERNAL = 1
    TRIG_IN1_ALTERNATING = 2
    VAR_EXPOSURE_INT_EXT = 3
    VAR_EXPOSURE_VSYNC = 4


class TrigType(enum.IntEnum):
    """Trigger type of a pattern LUT entry, bits 0-1 (DLPU010G Table 2-69)."""

    INTERNAL = 0
    EXTERNAL_POSITIVE = 1
    EXTERNAL_NEGATIVE = 2
    CONTINUE = 3  #: no input trigger: continue from the previous pattern


# --------------------------------------------------------------------------------------
# low level: encode / decode
# --------------------------------------------------------------------------------------


def _as_bytes(payload: Any, what: str = "payload") -> bytes:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise ConfigError(f"{what} must be bytes; got {type(payload).__name__}")


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (numpy integers accepted, bool refused)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an int in [{lo}, {hi}]; got {value!r}") from None
    if not lo <= number <= hi:
        raise ConfigError(f"{name}={number} outside the allowed range [{lo}, {hi}]")
    return number


def request_packet_count(payload_len: int) -> int:
    """Number of 64-byte packets a request with ``payload_len`` payload bytes needs."""
    extra = max(0, payload_len - _REQ_FIRST)
    return 1 + -(-extra // REPORT_SIZE)


def encode(
    command: int,
    payload: bytes = b"",
    *,
    read: bool = False,
    reply: bool = True,
    seq: int = 0,
) -> list[bytes]:
    """Build the HID reports of one request (each exactly 64 bytes).

    Parameters
    ----------
    command:
        16-bit command id ``0xCMD2CMD3`` (e.g. 0x1A1B display mode), 0..0xFFFF.
    payload:
        Command data; the first 58 bytes go into the first packet, the rest into
        header-less continuation packets of 64 bytes.
    read:
        A read request (flags 0xC0); reads always ask for a reply.
    reply:
        For a write, whether the device should acknowledge (0x40) or not (0x00).
    seq:
        Sequence byte 0..255, echoed by the reply.

    Returns
    -------
    list of bytes
        ``request_packet_count(len(payload))`` reports of 64 bytes, zero padded.

    Raises
    ------
    ConfigError
        Command or sequence out of range, payload not bytes or longer than the 16-bit
        length field allows (65533 bytes), or a read without reply.
    """
    command = check_int("command", command, 0, 0xFFFF)
    seq = check_int("seq", seq, 0, 0xFF)
    data = _as_bytes(payload)
    if len(data) > MAX_PAYLOAD:
        raise ConfigError(
            f"payload of {len(data)} bytes too long for {command_name(command)}: the 16-bit "
            f"length field holds at most {MAX_PAYLOAD} payload bytes"
        )
    if read and not reply:
        raise ConfigError("a read request always asks for a reply; use reply=True")
    flags = (FLAG_READ if read else 0) | (FLAG_REPLY if reply else 0)
    length = 2 + len(data)
    first = bytes((flags, seq, length & 0xFF, length >> 8, command & 0xFF, command >> 8))
    first += data[:_REQ_FIRST]
    packets = [first.ljust(REPORT_SIZE, b"\0")]
    for start in range(_REQ_FIRST, len(data), REPORT_SIZE):
        packets.append(data[start : start + REPORT_SIZE].ljust(REPORT_SIZE, b"\0"))
    return packets


class Request(NamedTuple):
    """A request as the device sees it (see :func:`decode_request`)."""

    command: int
    payload: bytes
    read: bool
    reply: bool
    seq: int
    flags: int


def _join(packets: bytes | bytearray | Iterable[bytes]) -> bytes:
    if isinstance(packets, (bytes, bytearray, memoryview)):
        return bytes(packets)
    return b"".join(bytes(p) for p in packets)


def decode_request(packets: bytes | Iterable[bytes]) -> Request:
    """Parse the reports of one request (inverse of :func:`encode`).

    Raises
    ------
    ProtocolError
        Fewer bytes than the header or the declared length needs, or a length < 2.
    """
    raw = _join(packets)
    if len(raw) < _REQ_HEADER:
        raise ProtocolError(f"request of {len(raw)} bytes is shorter than the 6-byte header")
    flags, seq, length = raw[0], raw[1], raw[2] | raw[3] << 8
    if length < 2:
        raise ProtocolError(f"request length field {length} < 2 (no command id)")
    command = raw[4] | raw[5] << 8
    n = length - 2
    if len(raw) - _REQ_HEADER < n:
        raise ProtocolError(
            f"request for {command_name(command)} declares {n} payload bytes but carries "
            f"{len(raw) - _REQ_HEADER}"
        )
    return Request(
        command=command,
        payload=raw[_REQ_HEADER : _REQ_HEADER + n],
        read=bool(flags & FLAG_READ),
        reply=bool(flags & FLAG_REPLY),
        seq=seq,
        flags=flags,
    )


def reply_packet_count(first_packet: bytes) -> int:
    """Packets a reply needs in total, from the length field of its first packet.

    A first packet shorter than the 4-byte header counts as one packet (the decoder
    then reports it as short).
    """
    if len(first_packet) < _REPLY_HEADER:
        return 1
    length = first_packet[2] | first_packet[3] << 8
    extra = max(0, length - _REPLY_FIRST)
    return 1 + -(-extra // REPORT_SIZE)


def encode_reply(
    data: bytes = b"", *, seq: int, read: bool = True, nack: bool = False
) -> list[bytes]:
    """Build the reports of a device reply (what the DLPC350 sends; used by the emulator).

    Parameters
    ----------
    data:
        Reply data (no command echo); the first 60 bytes go into the first packet.
    seq:
        The sequence byte of the request being answered.
    read:
        Echo the read flag (bit 7) of the request.
    nack:
        Set the NACK bit (bit 5); a NACK carries no data.
    """
    seq = check_int("seq", seq, 0, 0xFF)
    data = b"" if nack else _as_bytes(data, "data")
    if len(data) > 0xFFFF:
        raise ConfigError(f"reply data of {len(data)} bytes exceeds the 16-bit length field")
    flags = (FLAG_READ if read else 0) | FLAG_REPLY | (FLAG_NACK if nack else 0)
    n = len(data)
    first = bytes((flags, seq, n & 0xFF, n >> 8)) + data[:_REPLY_FIRST]
    packets = [first.ljust(REPORT_SIZE, b"\0")]
    for start in range(_REPLY_FIRST, n, REPORT_SIZE):
        packets.append(data[start : start + REPORT_SIZE].ljust(REPORT_SIZE, b"\0"))
    return packets


def decode_reply(
    packets: bytes | Iterable[bytes],
    *,
    command: int,
    seq: int,
    expect_len: int | None = None,
    ack: bool = False,
) -> bytes:
    """Check a reply and return its data.

    Parameters
    ----------
    packets:
        The reply reports (a list of 64-byte packets, or their concatenation).
    command:
        The command that was sent (named in error messages).
    seq:
        The sequence byte that was sent; the reply must echo it.
    expect_len:
        Data bytes the caller needs; a reply declaring fewer is an error.
    ack:
        True for the acknowledgement of a write: only the NACK bit marks a refusal and
        an empty reply is fine (TI ``DLPC350_Write``).  False (reads): a declared length
        of 0 is a NACK too (TI ``DLPC350_Read``).

    Returns
    -------
    bytes
        The declared number of data bytes, from byte 4 on.

    Raises
    ------
    ProtocolError
        NACK ("DLPC350 NACKed DISP_MODE (0x1A1B)"), wrong sequence byte, a reply shorter
        than its header or its declared length, or shorter than ``expect_len``.
    """
    name = command_name(command)
    raw = _join(packets)
    if len(raw) < _REPLY_HEADER:
        raise ProtocolError(
            f"reply to {name} is {len(raw)} bytes, shorter than the 4-byte header "
            "(truncated USB transfer?)"
        )
    flags, rseq, length = raw[0], raw[1], raw[2] | raw[3] << 8
    if rseq != seq:
        raise ProtocolError(
            f"reply to {name} carries sequence byte {rseq}, expected {seq}: a stale or "
            "foreign reply (another program talking to the device?); retry the command"
        )
    if flags & FLAG_NACK or (length == 0 and not ack):
        why = "NACK bit set" if flags & FLAG_NACK else "empty reply to a read"
        raise ProtocolError(
            f"DLPC350 NACKed {name} ({why}): the controller refused the command or its "
            "data; check the value range, and stop the sequence before changing settings"
        )
    got = len(raw) - _REPLY_HEADER
    if got < length:
        raise ProtocolError(
            f"short reply to {name}: it declares {length} data bytes but {got} arrived"
        )
    if expect_len is not None and length < expect_len:
        raise ProtocolError(
            f"short reply to {name}: {length} data bytes, expected {expect_len}"
        )
    return raw[_REPLY_HEADER : _REPLY_HEADER + length]


# --------------------------------------------------------------------------------------
# typed messages
# --------------------------------------------------------------------------------------


class Message(NamedTuple):
    """One command ready to encode: ``Message(cmd, payload, read).encode(seq)``."""

    command: Command
    payload: bytes = b""
    read: bool = False

    def encode(self, seq: int = 0, *, reply: bool = True) -> list[bytes]:
        """The 64-byte reports of this message with sequence byte ``seq``."""
        return encode(self.command, self.payload, read=self.read, reply=reply, seq=seq)

    @property
    def reply_len(self) -> int | None:
        """Data bytes expected in the reply of a read (None for a write)."""
        return COMMANDS[self.command].read_len if self.read else None


def _read(command: Command) -> Message:
    return Message(command, b"", True)


def power_control(mode: int | str) -> Message:
    """POWER_CONTROL 0x0200 (section unconfirmed; I2C 0x07).

    ``mode``: 0 / "normal", 1 / "standby" (DMD interface powered down; disable before
    sending new data), 2 / "reset" (from HARDWARE.md; unconfirmed: TI's API sends only
    0/1 and has a separate software-reset command 0x0802).
    """
    names = {"normal": 0, "standby": 1, "reset": 2}
    value = names.get(mode, mode) if isinstance(mode, str) else mode
    if isinstance(mode, str) and mode not in names:
        raise ConfigError(f"power mode {mode!r} is not one of {sorted(names)}")
    return Message(Command.POWER_CONTROL, bytes((check_int("power mode", value, 0, 2),)))


def get_version() -> Message:
    """GET_VERSION 0x0205 read: 16 bytes, see :func:`decode_version` (section unconfirmed)."""
    return _read(Command.GET_VERSION)


def source_select(source: int, port_width: int = 1) -> Message:
    """SOURCE_SEL 0x1A00: video-mode input source (DLPU010G §2.3.4.2, Table 2-19).

    ``source`` bits 2:0: 0 parallel port, 1 test pattern, 2 flash, 3 FPD-link;
    ``port_width`` bits 5:3: 0 = 30, 1 = 24, 2 = 20, 3 = 16, 4 = 10, 5 = 8 bits.
    """
    s = check_int("input source", source, 0, 3)
    w = check_int("parallel port width code", port_width, 0, 5)
    return Message(Command.SOURCE_SEL, bytes((s | w << 3,)))


def pixel_format(fmt: int) -> Message:
    """PIXEL_FORMAT 0x1A02 (DLPU010G §2.3.4.3, Table 2-20): 0 RGB 4:4:4, 1 YCrCb 4:4:4,
    2 YCrCb 4:2:2."""
    return Message(Command.PIXEL_FORMAT, bytes((check_int("pixel format", fmt, 0, 2),)))


def led_enable(red: bool, green: bool, blue: bool, sequencer: bool = True) -> Message:
    """LED_ENABLE 0x1A07 (DLPU010G §2.3.7.1, Table 2-34).

    Bit0 red, bit1 green, bit2 blue, bit3 sequencer control (1: the pattern LUT's LED
    select drives the LEDs and bits 0-2 are ignored; reset value 0x08).
    """
    value = bool(red) | bool(green) << 1 | bool(blue) << 2 | bool(sequencer) << 3
    return Message(Command.LED_ENABLE, bytes((value,)))


def led_current(red: int, green: int, blue: int) -> Message:
    """LED_CURRENT 0x0B01 (section unconfirmed; I2C 0x4B): PWM 0..255 per LED.

    The LightCrafter 4500 EVM drives its LED PWM inverted, so the byte sent is
    ``255 - current`` (``current`` 255 = brightest); this is what TI's GUI does.
    """
    vals = [check_int(n, v, 0, 255) for n, v in (("red", red), ("green", green), ("blue", blue))]
    return Message(Command.LED_CURRENT, bytes(255 - v for v in vals))


def status_hardware() -> Message:
    """STATUS_HW 0x1A0A read (DLPU010G §2.1), see :func:`decode_hardware_status`."""
    return _read(Command.STATUS_HW)


def status_system() -> Message:
    """STATUS_SYS 0x1A0B read (DLPU010G §2.1), see :func:`decode_system_status`."""
    return _read(Command.STATUS_SYS)


def status_main() -> Message:
    """STATUS_MAIN 0x1A0C read (DLPU010G §2.1.3, Table 2-3), see :func:`decode_main_status`."""
    return _read(Command.STATUS_MAIN)


def lut_valid_start() -> Message:
    """LUT_VALID 0x1A1A write: start validating (DLPU010G §2.4.3.1; one dummy byte 0)."""
    return Message(Command.LUT_VALID, b"\0")


def lut_valid_read() -> Message:
    """LUT_VALID 0x1A1A read: poll until bit 7 clears, see :func:`decode_lut_valid`."""
    return _read(Command.LUT_VALID)


def display_mode(pattern: bool) -> Message:
    """DISP_MODE 0x1A1B (DLPU010G §2.4.1, Table 2-49): 0 video, 1 pattern sequence."""
    return Message(Command.DISP_MODE, bytes((1 if pattern else 0,)))


def trig_delay_code(delay_us: float, output: int = 1) -> int:
    """Delay code of TRIG_OUT_1/2 for ``delay_us`` microseconds (0xBB = 0 us, 107.2 ns/step).

    Allowed: TRIG_OUT_1 -20.05..+2.787 us (codes 0x00..0xD5); TRIG_OUT_2 -20.05..+7.29 us
    (codes 0x00..0xFF).
    """
    if output not in _TRIG_DELAY_MAX:
        raise ConfigError(f"trigger output must be 1 or 2; got {output!r}")
    try:
        code = TRIG_DELAY_ZERO + round(float(delay_us) / TRIG_DELAY_STEP_US)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"delay_us={delay_us!r} is not a number") from None
    hi = _TRIG_DELAY_MAX[output]
    if not 0 <= code <= hi:
        lo_us = -TRIG_DELAY_ZERO * TRIG_DELAY_STEP_US
        hi_us = (hi - TRIG_DELAY_ZERO) * TRIG_DELAY_STEP_US
        raise ConfigError(
            f"TRIG_OUT_{output} delay {delay_us} us outside [{lo_us:.2f}, {hi_us:.3f}] us"
        )
    return code


def trig_out1(invert: bool = False, rising: int = TRIG_DELAY_ZERO,
              falling: int = TRIG_DELAY_ZERO) -> Message:
    """TRIG_OUT1_CTL 0x1A1D (DLPU010G §2.4.3.2.2, Table 2-54).

    Byte 0 bit 1 = invert (active low), as DLPU010G Table 2-54 is quoted (TI's SDK
    writes the flag to bit 0 instead: unconfirmed which one the firmware reads); byte 1
    rising-edge and byte 2 falling-edge delay codes (see :func:`trig_delay_code`).
    """
    r = check_int("TRIG_OUT_1 rising delay code", rising, 0, _TRIG_DELAY_MAX[1])
    f = check_int("TRIG_OUT_1 falling delay code", falling, 0, _TRIG_DELAY_MAX[1])
    return Message(Command.TRIG_OUT1_CTL, bytes((0x02 if invert else 0x00, r, f)))


def trig_out2(invert: bool = False, rising: int = TRIG_DELAY_ZERO) -> Message:
    """TRIG_OUT2_CTL 0x1A1E (DLPU010G §2.4.3.2.3, Table 2-55): invert (bit 1), rising delay."""
    r = check_int("TRIG_OUT_2 rising delay code", rising, 0, _TRIG_DELAY_MAX[2])
    return Message(Command.TRIG_OUT2_CTL, bytes((0x02 if invert else 0x00, r)))


def pattern_source(source: int | str) -> Message:
    """PAT_DISP_MODE 0x1A22 (DLPU010G §2.4.3.4.1, Table 2-61).

    ``source``: 0 / "video" (streamed through the 24-bit RGB/FPD-link port) or
    3 / "flash" (images stored in flash; reset default).  Stop the sequence first.
    """
    names = {"video": PatternSource.VIDEO_PORT, "flash": PatternSource.FLASH}
    if isinstance(source, str):
        if source not in names:
            raise ConfigError(f"pattern source {source!r} is not 'video' or 'flash'")
        value = int(names[source])
    else:
        value = check_int("pattern source", source, 0, 3)
        if value not in (0, 3):
            raise ConfigError(f"pattern source {value} is reserved; use 0 (video) or 3 (flash)")
    return Message(Command.PAT_DISP_MODE, bytes((value,)))


def pattern_trigger_mode(mode: int) -> Message:
    """PAT_TRIG_MODE 0x1A23 (DLPU010G §2.4.3.2.1, Table 2-53), see :class:`TriggerModeCode`.

    0 VSYNC, 1 internal or external (TRIG_IN_1/2), 2 TRIG_IN_1 alternating, 3/4 the
    variable-exposure forms of 1/0.  Reset default is 1.
    """
    return Message(Command.PAT_TRIG_MODE, bytes((check_int("trigger mode", mode, 0, 4),)))


def pattern_display(action: int | str) -> Message:
    """PAT_START_STOP 0x1A24 (DLPU010G §2.4.3.4.2, Table 2-62): 0 stop, 1 pause, 2 start.

    After a stop the LUT must be sent again and validated before the next start (Table
    2-62 note); a pause resumes at the current pattern.
    """
    names = {"stop": 0, "pause": 1, "start": 2}
    if isinstance(action, str):
        if action not in names:
            raise ConfigError(f"action {action!r} is not one of {sorted(names)}")
        value = names[action]
    else:
        value = check_int("start/stop action", action, 0, 2)
    return Message(Command.PAT_START_STOP, bytes((value,)))


def exposure_period(exposure_us: int, period_us: int) -> Message:
    """PAT_EXPO_PRD 0x1A29 (DLPU010G §2.4.3.4.3, Table 2-63): u32 LE exposure, u32 LE period.

    Both in whole microseconds.  The exposure must equal the period or be shorter by at
    least 230 us (validation bit 4 otherwise); with a video-port source it must equal
    the period.
    """
    e = check_int("exposure_us", exposure_us, 0, 0xFFFFFFFF)
    p = check_int("period_us", period_us, 0, 0xFFFFFFFF)
    return Message(Command.PAT_EXPO_PRD, e.to_bytes(4, "little") + p.to_bytes(4, "little"))


def invert_data(invert: bool) -> Message:
    """INVERT_DATA 0x1A30 (DLPU010G §2.4.3.4.4, Table 2-64).

    0 normal (data 1 turns the mirror on, light out), 1 inverted (data 0 = light out).
    """
    return Message(Command.INVERT_DATA, bytes((1 if invert else 0,)))


def pat_config(n_entries: int, repeat: bool, patterns_per_trig_out2: int,
               n_images: int) -> Message:
    """PAT_CONFIG 0x1A31, pattern display LUT control (DLPU010G §2.4.3.4.5, Table 2-65).

    Every count is sent minus one (the firmware takes 0-based counts; TI
    ``DLPC350_SetPatternConfig``).  pycrafter4500 forgets the ``- 1`` on the image
    count: a bug this function does not have.

    Parameters
    ----------
    n_entries:
        Pattern LUT entries, 1..128 (byte 0 = n - 1).
    repeat:
        False: show the sequence once; True: repeat (byte 1).
    patterns_per_trig_out2:
        Patterns between TRIG_OUT_2 pulses, 1..256 (byte 2 = n - 1).
    n_images:
        Image-index LUT entries, 1..64 (byte 3 = n - 1); only used with the flash source.
    """
    n = check_int("pattern LUT entries", n_entries, 1, PATTERN_LUT_SIZE)
    t = check_int("patterns per TRIG_OUT_2", patterns_per_trig_out2, 1, 256)
    i = check_int("image LUT entries", n_images, 1, IMAGE_LUT_SIZE)
    return Message(Command.PAT_CONFIG, bytes((n - 1, 1 if repeat else 0, t - 1, i - 1)))


def mbox_address(address: int) -> Message:
    """MBOX_ADDRESS 0x1A32, LUT offset pointer 0..127 (DLPU010G §2.4.3.4.7, Table 2-66)."""
    return Message(Command.MBOX_ADDRESS, bytes((check_int("mailbox address", address, 0, 127),)))


def mbox_control(mode: int) -> Message:
    """MBOX_CONTROL 0x1A33 (DLPU010G §2.4.3.4.8, Table 2-67), see :class:`MailboxMode`.

    0 close, 1 image-index LUT (flash source only), 2 pattern LUT, 3 variable-exposure
    LUT.  (DLPU010G Table 4-1 opens the pattern LUT with 1: a typo there; 2 is right.)
    """
    return Message(Command.MBOX_CONTROL, bytes((check_int("mailbox mode", mode, 0, 3),)))


def mbox_data(payload: bytes) -> Message:
    """MBOX_DATA 0x1A34 with a raw payload (DLPU010G §2.4.3.4.9, Tables 2-68/2-69).

    Build the payload with :func:`pattern_lut_payload` or :func:`image_lut_payload`; the
    whole LUT goes in one (multi-packet) message, as TI's ``DLPC350_SendPatLut`` does.
    """
    data = _as_bytes(payload)
    if not data:
        raise ConfigError("MBOX_DATA needs at least one LUT entry")
    return Message(Command.MBOX_DATA, data)


def pattern_lut_payload(entries: Sequence[int]) -> bytes:
    """All pattern LUT entries, 3 bytes each, little endian (TI ``DLPC350_SendPatLut``)."""
    if not 1 <= len(entries) <= PATTERN_LUT_SIZE:
        raise ConfigError(
            f"{len(entries)} pattern LUT entries; the LUT holds 1..{PATTERN_LUT_SIZE}"
        )
    return b"".join(
        check_int(f"LUT entry {k}", e, 0, 0xFFFFFF).to_bytes(3, "little")
        for k, e in enumerate(entries)
    )


def image_lut_payload(indices: Sequence[int]) -> bytes:
    """Flash image indices, one byte each (TI ``DLPC350_SendImageLut``).

    TI's reference code sends the two entries of a 2-entry image LUT in swapped order
    (a firmware quirk it works around; reason undocumented).  This function does the
    same, so ``[a, b]`` goes out as ``b a``; the emulator undoes it.
    """
    if not 1 <= len(indices) <= IMAGE_LUT_SIZE:
        raise ConfigError(f"{len(indices)} image LUT entries; the LUT holds 1..{IMAGE_LUT_SIZE}")
    vals = [check_int(f"image index {k}", v, 0, 255) for k, v in enumerate(indices)]
    if len(vals) == 2:
        vals = [vals[1], vals[0]]
    return bytes(vals)


def image_load(index: int) -> Message:
    """IMAGE_LOAD 0x1A39: load flash image ``index`` then swap buffers (section unconfirmed)."""
    return Message(Command.IMAGE_LOAD, bytes((check_int("flash image index", index, 0, 255),)))


def num_images_in_flash() -> Message:
    """NUM_IMAGE_IN_FLASH 0x1A42 read: 1 byte, number of images stored in flash
    (section unconfirmed; I2C 0x0C)."""
    return _read(Command.NUM_IMAGE_IN_FLASH)


# --------------------------------------------------------------------------------------
# pattern LUT entries
# --------------------------------------------------------------------------------------


def lut_entry(
    trigger: int,
    pattern_number: int,
    bit_depth: int,
    leds: int,
    invert: bool = False,
    insert_black: bool = False,
    buffer_swap: bool = False,
    trig_out_prev: bool = False,
) -> int:
    """One 24-bit pattern LUT word (DLPU010G Table 2-69; TI ``DLPC350_AddToPatLut``).

    Parameters
    ----------
    trigger:
        Bits 0-1: 0 internal, 1 external positive, 2 external negative, 3 none (continue).
    pattern_number:
        Bits 2-7: the bitplane 0..23 of the 24-bit frame (G0-G7 = 0-7, R0-R7 = 8-15,
        B0-B7 = 16-23; DLPU010G Table 2-70).  24 and up (black 24, white fill 25, none
        0x3F) are rejected here.
    bit_depth:
        Bits 8-11: 1..8.
    leds:
        Bits 12-14: LED select, bit0 red, bit1 green, bit2 blue (0 = none).
    invert, insert_black, buffer_swap, trig_out_prev:
        Bits 16, 17, 18, 19.  Insert-black needs 230 us before the next pattern and
        cannot be combined with trig_out_prev (TRIG_OUT_1 held high from the previous
        pattern).

    Returns
    -------
    int
        The word; it is sent as 3 bytes little endian.
    """
    t = check_int("trigger type", trigger, 0, 3)
    p = check_int("pattern number (bitplane)", pattern_number, 0, BITPLANES - 1)
    d = check_int("bit depth", bit_depth, 1, 8)
    led = check_int("LED select", leds, 0, 7)
    if insert_black and trig_out_prev:
        raise ConfigError("insert_black cannot be combined with trig_out_prev (Table 2-69)")
    return (
        t
        | p << 2
        | d << 8
        | led << 12
        | bool(invert) << 16
        | bool(insert_black) << 17
        | bool(buffer_swap) << 18
        | bool(trig_out_prev) << 19
    )


def decode_lut_entry(word: int) -> dict[str, Any]:
    """The fields of a 24-bit pattern LUT word (inverse of :func:`lut_entry`).

    Returns ``{"trigger", "pattern_number", "bit_depth", "leds", "invert",
    "insert_black", "buffer_swap", "trig_out_prev"}``; reserved bits are not checked.
    """
    w = check_int("LUT word", word, 0, 0xFFFFFF)
    return {
        "trigger": w & 0x3,
        "pattern_number": (w >> 2) & 0x3F,
        "bit_depth": (w >> 8) & 0xF,
        "leds": (w >> 12) & 0x7,
        "invert": bool(w >> 16 & 1),
        "insert_black": bool(w >> 17 & 1),
        "buffer_swap": bool(w >> 18 & 1),
        "trig_out_prev": bool(w >> 19 & 1),
    }


# --------------------------------------------------------------------------------------
# reply decoders
# --------------------------------------------------------------------------------------

#: LUT_VALID bits 0-4 in words (DLPU010G §2.4.3.1, Table 2-52); bit 7 = busy.
LUT_VALID_BITS: dict[int, str] = {
    0: "exposure or frame period settings invalid",
    1: "pattern numbers in the LUT invalid",
    2: "warning: continuous TRIG_OUT_1 request or overlapping black sectors",
    3: "warning: post (black) vector not inserted before an externally triggered vector",
    4: "warning: frame period minus exposure is less than 230 us",
}
_LUT_VALID_ERRORS = 0b10011  # bits 0, 1 and 4 refuse the sequence; 2 and 3 are warnings


@dataclass(frozen=True)
class ValidationResult:
    """A decoded LUT_VALID status byte.

    Attributes
    ----------
    raw: the byte.
    busy: bit 7, validation still running (poll again).
    errors: words for bits 0, 1, 4 (the sequence is refused).
    warnings: words for bits 2, 3.
    """

    raw: int
    busy: bool
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Validation finished without error bits."""
        return not self.busy and not self.errors


def decode_lut_valid(value: int) -> ValidationResult:
    """Decode the LUT_VALID read byte (DLPU010G §2.4.3.1, Table 2-52)."""
    v = check_int("LUT_VALID status", value, 0, 255)
    errors = tuple(LUT_VALID_BITS[b] for b in (0, 1, 4) if v >> b & 1)
    warnings = tuple(LUT_VALID_BITS[b] for b in (2, 3) if v >> b & 1)
    return ValidationResult(v, bool(v & 0x80), errors, warnings)


def _bits(value: int, table: dict[int, tuple[str, str]]) -> list[str]:
    v = check_int("status byte", value, 0, 255)
    return [table[b][v >> b & 1] for b in sorted(table)]


_HW_STATUS: dict[int, tuple[str, str]] = {
    0: ("internal initialization failed", "internal initialization successful"),
    1: ("controller and DMD compatible", "incompatible controller or DMD"),
    2: ("no DMD reset controller error",
        "DMD reset controller error: overlapping bias/reset operations on one DMD block"),
    3: ("no forced swap error", "forced swap error (sequence timing does not match VSYNC)"),
    6: ("no sequencer abort", "sequencer detected an error condition and aborted"),
    7: ("no sequencer error", "sequencer detected an error"),
}
_SYS_STATUS: dict[int, tuple[str, str]] = {
    0: ("internal memory test failed", "internal memory test passed"),
}
_MAIN_STATUS: dict[int, tuple[str, str]] = {
    0: ("DMD micromirrors not parked", "DMD micromirrors parked"),
    1: ("sequencer stopped", "sequencer running"),
    2: ("frame buffer not frozen", "frame buffer frozen"),
    3: ("gamma correction disabled", "gamma correction enabled"),
}


def decode_hardware_status(value: int) -> list[str]:
    """STATUS_HW byte in words (DLPU010G §2.1; bits 4-5 reserved; bit 1 as TI's GUI names
    it, unconfirmed)."""
    return _bits(value, _HW_STATUS)


def decode_system_status(value: int) -> list[str]:
    """STATUS_SYS byte in words (DLPU010G §2.1): bit 0 internal memory test."""
    return _bits(value, _SYS_STATUS)


def decode_main_status(value: int) -> list[str]:
    """STATUS_MAIN byte in words (DLPU010G §2.1.3, Table 2-3)."""
    return _bits(value, _MAIN_STATUS)


def _version_str(word: int) -> str:
    return f"{word >> 24 & 0xFF}.{word >> 16 & 0xFF}.{word & 0xFFFF}"


def decode_version(data: bytes) -> dict[str, str]:
    """GET_VERSION reply: four u32 LE words, each major.minor.patch (bits 31:24, 23:16, 15:0).

    Returns ``{"application", "api", "software_config", "sequence_config"}`` as strings.
    """
    if len(data) < 16:
        raise ProtocolError(f"GET_VERSION reply has {len(data)} bytes, expected 16")
    words = [int.from_bytes(data[4 * k : 4 * k + 4], "little") for k in range(4)]
    keys = ("application", "api", "software_config", "sequence_config")
    return {k: _version_str(w) for k, w in zip(keys, words, strict=True)}


def decode_exposure_period(data: bytes) -> tuple[int, int]:
    """PAT_EXPO_PRD read: (exposure_us, period_us)."""
    if len(data) < 8:
        raise ProtocolError(f"PAT_EXPO_PRD reply has {len(data)} bytes, expected 8")
    return int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little")


def decode_pat_config(data: bytes) -> dict[str, Any]:
    """PAT_CONFIG bytes back to counts (adds the 1s back)."""
    if len(data) < 4:
        raise ProtocolError(f"PAT_CONFIG data has {len(data)} bytes, expected 4")
    return {
        "n_entries": (data[0] & 0x7F) + 1,
        "repeat": bool(data[1] & 1),
        "patterns_per_trig_out2": data[2] + 1,
        "n_images": (data[3] & 0x3F) + 1,
    }
