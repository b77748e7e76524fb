"""A byte-level emulator of a DLPC350 (DLP LightCrafter 4500) on the far side of a
:class:`~lsi_hw.drivers.dlpc350.transport.Transport`.

:class:`FakeDLPC350` parses our reports byte by byte, keeps the controller state,
enforces the documented limits at validation, records the wire and can inject faults
(dropped, delayed or corrupted replies, unplugging).  It raises the same
:mod:`lsi_hw.errors` as the real transport: timeouts
(:class:`~lsi_hw.errors.DeviceTimeout`) and an unplugged device
(:class:`~lsi_hw.errors.TransportError`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.errors import (
    ConfigError,
    DeviceTimeout,
    ProtocolError,
    TransportError,
)

__all__ = ["FakeDLPC350"]

_STATE_NAMES = {0: "stopped", 1: "paused", 2: "running"}

# writes that change the pattern configuration: refused while running, and they
# invalidate a previous validation (DLPU010G §2.4.3: "stop first, validate after")
_CONFIG_COMMANDS = frozenset(
    {
        P.Command.PAT_DISP_MODE,
        P.Command.PAT_TRIG_MODE,
        P.Command.PAT_EXPO_PRD,
        P.Command.PAT_CONFIG,
        P.Command.MBOX_CONTROL,
        P.Command.MBOX_ADDRESS,
        P.Command.MBOX_DATA,
        P.Command.INVERT_DATA,
        P.Command.TRIG_OUT1_CTL,
        P.Command.TRIG_OUT2_CTL,
        P.Command.DISP_MODE,
    }
)


class _Nack(Exception):
    """Internal: the emulated controller refuses a request."""


class FakeDLPC350:
    """Byte-level emulator of a DLPC350 on the far side of a :class:`Transport`.

    It reassembles our multi-packet requests from the raw reports, keeps the
    controller state, answers reads, NACKs what the controller refuses and, at
    validation (LUT_VALID write), checks the documented constraints:

    * minimum exposure per bit depth (235, 700, 1570, 1700, 2000, 2500, 4500, 8333 us
      for 1..8 bits) and exposure <= period: error bit 0;
    * pattern numbers valid for their bit depth, LUT entries written == PAT_CONFIG
      count, image LUT entries == PAT_CONFIG image count and within the flash (flash
      source): error bit 1;
    * exposure equal to the period or shorter by at least 230 us: bit 4;
    * with the video-port source and VSYNC trigger, exposure == period: bit 0.

    NACKed: unknown command ids, wrong payload length, out-of-range values, mailbox
    data while the mailbox is closed, more LUT entries than the LUT holds (128 pattern,
    64 image), configuration writes while the sequence runs, and a start without a
    validated configuration (a stop invalidates it: DLPU010G Table 2-62 note).  A write
    without reply request gets no answer even when refused.

    Parameters
    ----------
    firmware:
        (major, minor, patch) reported by GET_VERSION for all four version words.
    num_images_in_flash:
        What NUM_IMAGE_IN_FLASH answers; image LUT indices must be below it.
    validate_busy_polls:
        LUT_VALID reads answering "busy" (bit 7) after each validation start.
    delay_s:
        Reply latency, seconds: a read with a shorter timeout times out.

    Attributes
    ----------
    log:
        Every report on the wire as ``("out", report)`` (host to device) or
        ``("in", report)`` (device to host), in order.
    requests:
        Every complete request received, decoded (:class:`protocol.Request`).
    """

    def __init__(
        self,
        *,
        firmware: tuple[int, int, int] = (3, 0, 0),
        num_images_in_flash: int = 16,
        validate_busy_polls: int = 2,
        delay_s: float = 0.0,
    ) -> None:
        self.firmware = tuple(int(x) for x in firmware)
        self.num_images_in_flash = int(num_images_in_flash)
        self.validate_busy_polls = int(validate_busy_polls)
        self.delay_s = float(delay_s)
        self.log: list[tuple[str, bytes]] = []
        self.requests: list[P.Request] = []
        self.nacks: list[str] = []
        # controller state (power-up defaults per DLPU010G: trigger mode 1, flash source)
        self.power = 0
        self.display_mode = 0
        self.input_source = 0
        self.pixel_format = 0
        self.pattern_source = int(P.PatternSource.FLASH)
        self.trigger_mode = 1
        self.exposure_us = 0
        self.period_us = 0
        self.pat_config: dict[str, Any] | None = None
        self.pattern_lut: list[int | None] = [None] * P.PATTERN_LUT_SIZE
        self.image_lut: list[int | None] = [None] * P.IMAGE_LUT_SIZE
        self.pattern_entries_written = 0
        self.image_entries_written = 0
        self.mailbox = 0
        self.mailbox_address = 0
        self.sequence_state = 0  # 0 stopped, 1 paused, 2 running
        self.invert = 0
        self.led_enable = 0x08
        self.led_current_bytes = bytes((0, 0, 0))
        self.trig_out1_bytes = bytes((0, P.TRIG_DELAY_ZERO, P.TRIG_DELAY_ZERO))
        self.trig_out2_bytes = bytes((0, P.TRIG_DELAY_ZERO))
        self.image_index = 0
        self.validated = False
        self.validation_status = 0
        self.validation_count = 0
        self._busy_left = 0
        # link state
        self._rx = bytearray()
        self._rx_need = 0
        self._replies: deque[bytes] = deque()
        self._drop = 0
        self._drop_after = 0
        self._corrupt: deque[str] = deque()
        self._unplug_after: int | None = None
        self._forced_status: int | None = None
        self._unplugged = False
        self._closed = False

    # -- fault injection ------------------------------------------------------------------

    def drop_next(self, n: int = 1, *, after: int = 0) -> None:
        """Lose the replies of ``n`` requests that ask for one (a read then times out),
        starting after ``after`` more replies went out normally."""
        self._drop += int(n)
        self._drop_after = int(after)

    def corrupt_next(self, kind: str = "seq", n: int = 1) -> None:
        """Corrupt the next ``n`` replies: ``"seq"`` (wrong sequence byte), ``"short"``
        (truncated to its header, or to 2 bytes if empty) or ``"nack"`` (NACK bit set)."""
        if kind not in ("seq", "short", "nack"):
            raise ConfigError(f"corruption kind {kind!r} is not 'seq', 'short' or 'nack'")
        self._corrupt.extend([kind] * int(n))

    def unplug(self, after_writes: int = 0) -> None:
        """Disconnect now, or after ``after_writes`` more reports: all later I/O raises
        :class:`~lsi_hw.errors.TransportError` (like ENODEV)."""
        if after_writes <= 0:
            self._unplugged = True
        else:
            self._unplug_after = int(after_writes)

    def fail_validation(self, status: int) -> None:
        """Make the next validation report the LUT_VALID byte ``status`` (bits 0-4) instead
        of the computed one (for firmware checks the emulator does not model)."""
        self._forced_status = P.check_int("LUT_VALID status", status, 0, 0x1F)

    @property
    def unplugged(self) -> bool:
        """Whether the emulated cable is pulled."""
        return self._unplugged

    # -- views ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """'stopped', 'paused' or 'running'."""
        return _STATE_NAMES[self.sequence_state]

    @property
    def lut_entries(self) -> list[int]:
        """The pattern LUT entries of the configured sequence (PAT_CONFIG count)."""
        n = self.pat_config["n_entries"] if self.pat_config else self.pattern_entries_written
        return [e for e in self.pattern_lut[:n] if e is not None]

    @property
    def image_entries(self) -> list[int]:
        """The image LUT entries of the configured sequence."""
        n = self.pat_config["n_images"] if self.pat_config else self.image_entries_written
        return [e for e in self.image_lut[:n] if e is not None]

    # -- Transport ------------------------------------------------------------------------

    def _check_link(self) -> None:
        if self._closed:
            raise TransportError("FakeDLPC350: the link is closed")
        if self._unplugged:
            raise TransportError(
                "FakeDLPC350: the device disappeared (unplugged, ENODEV); reconnect it and "
                "open it again"
            )

    def write(self, report: bytes) -> None:
        """Receive one 64-byte report from the host."""
        self._check_link()
        if self._unplug_after is not None:
            self._unplug_after -= 1
            if self._unplug_after < 0:
                self._unplug_after = None
                self._unplugged = True
                self._check_link()
        report = bytes(report)
        if len(report) != P.REPORT_SIZE:
            raise ProtocolError(f"a report must be {P.REPORT_SIZE} bytes; got {len(report)}")
        self.log.append(("out", report))
        if not self._rx:
            length = report[2] | report[3] << 8
            self._rx_need = 4 + length  # header (flags, seq, length) + cmd + payload
        self._rx += report
        if len(self._rx) >= self._rx_need:
            raw, self._rx = bytes(self._rx), bytearray()
            try:
                req = P.decode_request(raw)
            except ProtocolError as exc:  # e.g. a length field < 2: refuse it
                self.nacks.append(f"malformed request: {exc}")
                bad = P.Request(0, b"", bool(raw[0] & P.FLAG_READ), bool(raw[0] & P.FLAG_REPLY),
                                raw[1], raw[0])
                self._queue(bad, nack=True)
                return
            self._handle(req)

    def read(self, timeout_s: float) -> bytes:
        """Return the next reply report, or raise DeviceTimeout after ``timeout_s``."""
        self._check_link()
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s={timeout_s} must be > 0")
        if not self._replies or self.delay_s > timeout_s:
            time.sleep(timeout_s)  # a late reply stays queued, as on a real link
            raise DeviceTimeout(f"FakeDLPC350: no reply within {timeout_s} s")
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        report = self._replies.popleft()
        self.log.append(("in", report))
        return report

    def close(self) -> None:
        """Close the link (idempotent)."""
        self._closed = True

    # -- request handling -----------------------------------------------------------------

    def _queue(self, req: P.Request, data: bytes = b"", nack: bool = False) -> None:
        if not req.reply:
            return
        if self._drop > 0:
            if self._drop_after > 0:
                self._drop_after -= 1
            else:
                self._drop -= 1
                return
        packets = P.encode_reply(data, seq=req.seq, read=req.read, nack=nack)
        if self._corrupt:
            kind = self._corrupt.popleft()
            first = bytearray(packets[0])
            if kind == "seq":
                first[1] = (first[1] + 1) & 0xFF
                packets[0] = bytes(first)
            elif kind == "nack":
                first[0] |= P.FLAG_NACK
                packets[0] = bytes(first)
            else:  # short: only the header (or less) arrives
                packets = [bytes(first[: 4 if len(data) else 2])]
        self._replies.extend(packets)

    def _handle(self, req: P.Request) -> None:
        self.requests.append(req)
        try:
            data = self._dispatch(req)
        except _Nack as why:
            self.nacks.append(f"{P.command_name(req.command)}: {why}")
            self._queue(req, nack=True)
            return
        self._queue(req, data)

    def _dispatch(self, req: P.Request) -> bytes:
        try:
            cmd = P.Command(req.command)
        except ValueError:
            raise _Nack("unknown command id") from None
        spec = P.COMMANDS[cmd]
        if req.read:
            if req.payload:
                raise _Nack("a read carries no payload")
            if spec.read_len < 0:
                raise _Nack("not readable")
            return self._read_register(cmd)
        if spec.write_len == -1:
            raise _Nack("read-only command written")
        if spec.write_len is not None and len(req.payload) != spec.write_len:
            raise _Nack(f"payload of {len(req.payload)} bytes, expected {spec.write_len}")
        if cmd in _CONFIG_COMMANDS:
            if self.sequence_state == 2:
                raise _Nack("configuration change while the sequence runs; stop it first")
            self.validated = False
        self._write_register(cmd, req.payload)
        return b""

    def _read_register(self, cmd: P.Command) -> bytes:
        C = P.Command
        if cmd is C.GET_VERSION:
            major, minor, patch = self.firmware
            word = (major << 24 | minor << 16 | patch).to_bytes(4, "little")
            return word * 4
        if cmd is C.STATUS_HW:
            return b"\x01"  # internal initialization successful, no errors
        if cmd is C.STATUS_SYS:
            return b"\x01"  # internal memory test passed
        if cmd is C.STATUS_MAIN:
            parked = 1 if self.power == 1 else 0
            running = 1 if self.sequence_state == 2 else 0
            return bytes((parked | running << 1,))
        if cmd is C.LUT_VALID:
            if self._busy_left > 0:
                self._busy_left -= 1
                return b"\x80"
            return bytes((self.validation_status,))
        if cmd is C.NUM_IMAGE_IN_FLASH:
            return bytes((self.num_images_in_flash & 0xFF,))
        regs: dict[P.Command, bytes] = {
            C.POWER_CONTROL: bytes((self.power,)),
            C.LED_CURRENT: self.led_current_bytes,
            C.SOURCE_SEL: bytes((self.input_source,)),
            C.PIXEL_FORMAT: bytes((self.pixel_format,)),
            C.LED_ENABLE: bytes((self.led_enable,)),
            C.DISP_MODE: bytes((self.display_mode,)),
            C.TRIG_OUT1_CTL: self.trig_out1_bytes,
            C.TRIG_OUT2_CTL: self.trig_out2_bytes,
            C.PAT_DISP_MODE: bytes((self.pattern_source,)),
            C.PAT_TRIG_MODE: bytes((self.trigger_mode,)),
            C.PAT_START_STOP: bytes((self.sequence_state,)),
            C.PAT_EXPO_PRD: self.exposure_us.to_bytes(4, "little")
            + self.period_us.to_bytes(4, "little"),
            C.INVERT_DATA: bytes((self.invert,)),
            C.MBOX_ADDRESS: bytes((self.mailbox_address,)),
            C.MBOX_CONTROL: bytes((self.mailbox,)),
            C.IMAGE_LOAD: bytes((self.image_index,)),
        }
        if cmd is C.PAT_CONFIG:
            if self.pat_config is None:
                return bytes(4)
            c = self.pat_config
            return bytes(
                (c["n_entries"] - 1, int(c["repeat"]), c["patterns_per_trig_out2"] - 1,
                 c["n_images"] - 1)
            )
        return regs[cmd]

    def _write_register(self, cmd: P.Command, data: bytes) -> None:
        C = P.Command
        v = data[0] if data else 0
        if cmd is C.POWER_CONTROL:
            if v > 2:
                raise _Nack("power mode > 2")
            self.power = 0 if v == 2 else v  # 2 = reset: back to normal
            if v == 1:
                self.sequence_state = 0
        elif cmd is C.LED_CURRENT:
            self.led_current_bytes = bytes(data)
        elif cmd is C.SOURCE_SEL:
            if v & 0x7 > 3 or v >> 3 > 5:
                raise _Nack("invalid input source / port width")
            self.input_source = v
        elif cmd is C.PIXEL_FORMAT:
            if v > 2:
                raise _Nack("pixel format > 2")
            self.pixel_format = v
        elif cmd is C.LED_ENABLE:
            if v > 0x0F:
                raise _Nack("reserved LED enable bits set")
            self.led_enable = v
        elif cmd is C.LUT_VALID:
            self._validate()
        elif cmd is C.DISP_MODE:
            if v > 1:
                raise _Nack("display mode > 1")
            if v == 0:
                self.sequence_state = 0
            self.display_mode = v
        elif cmd is C.TRIG_OUT1_CTL:
            if data[0] & ~0x02 or data[1] > 0xD5 or data[2] > 0xD5:
                raise _Nack("TRIG_OUT_1: reserved bits or delay code > 0xD5")
            self.trig_out1_bytes = bytes(data)
        elif cmd is C.TRIG_OUT2_CTL:
            if data[0] & ~0x02:
                raise _Nack("TRIG_OUT_2: reserved bits set")
            self.trig_out2_bytes = bytes(data)
        elif cmd is C.PAT_DISP_MODE:
            if v not in (0, 3):
                raise _Nack("pattern source must be 0 or 3")
            self.pattern_source = v
        elif cmd is C.PAT_TRIG_MODE:
            if v > 4:
                raise _Nack("trigger mode > 4")
            self.trigger_mode = v
        elif cmd is C.PAT_START_STOP:
            self._start_stop(v)
        elif cmd is C.PAT_EXPO_PRD:
            self.exposure_us = int.from_bytes(data[0:4], "little")
            self.period_us = int.from_bytes(data[4:8], "little")
        elif cmd is C.INVERT_DATA:
            if v > 1:
                raise _Nack("invert must be 0 or 1")
            self.invert = v
        elif cmd is C.PAT_CONFIG:
            if data[0] > 127 or data[1] > 1 or data[3] > 63:
                raise _Nack("PAT_CONFIG field out of range")
            self.pat_config = P.decode_pat_config(data)
        elif cmd is C.MBOX_ADDRESS:
            if v > 127:
                raise _Nack("mailbox address > 127")
            self.mailbox_address = v
        elif cmd is C.MBOX_CONTROL:
            if v > 3:
                raise _Nack("mailbox mode > 3")
            self.mailbox = v
            self.mailbox_address = 0
            if v == P.MailboxMode.PATTERN_LUT:
                self.pattern_entries_written = 0
            elif v == P.MailboxMode.IMAGE_LUT:
                self.image_entries_written = 0
        elif cmd is C.MBOX_DATA:
            self._mailbox_data(data)
        elif cmd is C.IMAGE_LOAD:
            if v >= self.num_images_in_flash:
                raise _Nack(f"flash holds {self.num_images_in_flash} images")
            self.image_index = v

    def _mailbox_data(self, data: bytes) -> None:
        if self.mailbox == P.MailboxMode.PATTERN_LUT:
            if len(data) % 3:
                raise _Nack("pattern LUT data is not a multiple of 3 bytes")
            n = len(data) // 3
            start = self.mailbox_address
            if start + n > P.PATTERN_LUT_SIZE:
                raise _Nack(f"{start + n} pattern LUT entries; the LUT holds 128")
            for k in range(n):
                self.pattern_lut[start + k] = int.from_bytes(data[3 * k : 3 * k + 3], "little")
            self.pattern_entries_written = max(self.pattern_entries_written, start + n)
        elif self.mailbox == P.MailboxMode.IMAGE_LUT:
            start = self.mailbox_address
            if start + len(data) > P.IMAGE_LUT_SIZE:
                raise _Nack(f"{start + len(data)} image LUT entries; the LUT holds 64")
            vals = list(data)
            if len(vals) == 2:  # TI's SendImageLut swaps a 2-entry LUT; undo it
                vals = vals[::-1]
            for k, idx in enumerate(vals):
                self.image_lut[start + k] = idx
            self.image_entries_written = max(self.image_entries_written, start + len(vals))
        elif self.mailbox == P.MailboxMode.VAR_EXPOSURE_LUT:
            raise _Nack("the variable-exposure LUT is not emulated")
        else:
            raise _Nack("mailbox data while the mailbox is closed; open it with MBOX_CONTROL")

    def _start_stop(self, v: int) -> None:
        if v > 2:
            raise _Nack("start/stop action > 2")
        if v == 2:
            if self.display_mode != 1:
                raise _Nack("start outside pattern display mode")
            if self.power == 1:
                raise _Nack("start in standby")
            if self.mailbox != 0:
                raise _Nack("start with the mailbox open")
            if not self.validated:
                raise _Nack("start without a validated configuration (send LUT_VALID)")
            self.sequence_state = 2
        elif v == 1:
            if self.sequence_state == 2:
                self.sequence_state = 1
        else:
            # after a stop the LUT must be sent and validated again (Table 2-62 note)
            self.sequence_state = 0
            self.validated = False

    def _validate(self) -> None:
        """Compute the LUT_VALID status byte (DLPU010G Table 2-52)."""
        status = 0
        cfg = self.pat_config
        depth_max = 1
        if cfg is None or self.pattern_entries_written != cfg["n_entries"]:
            status |= 1 << 1
        else:
            for word in self.pattern_lut[: cfg["n_entries"]]:
                if word is None:
                    status |= 1 << 1
                    continue
                e = P.decode_lut_entry(word)
                d, p = e["bit_depth"], e["pattern_number"]
                if not 1 <= d <= 8:
                    status |= 1 << 1
                    continue
                depth_max = max(depth_max, d)
                if not (p < P.BITPLANES // d or (d == 1 and p in (24, 25)) or p == 0x3F):
                    status |= 1 << 1
            if self.pattern_source == P.PatternSource.FLASH:
                if self.image_entries_written != cfg["n_images"]:
                    status |= 1 << 1
                elif any(
                    i is None or i >= self.num_images_in_flash
                    for i in self.image_lut[: cfg["n_images"]]
                ):
                    status |= 1 << 1
        e_us, p_us = self.exposure_us, self.period_us
        if e_us < P.MIN_EXPOSURE_US[depth_max] or e_us > p_us:
            status |= 1 << 0
        elif 0 < p_us - e_us < 230:
            status |= 1 << 4
        if (
            self.pattern_source == P.PatternSource.VIDEO_PORT
            and self.trigger_mode in (0, 4)
            and e_us != p_us
        ):
            status |= 1 << 0
        if self._forced_status is not None:
            status, self._forced_status = self._forced_status, None
        self.validation_status = status
        self.validation_count += 1
        self._busy_left = self.validate_busy_polls
        self.validated = (status & 0b10011) == 0
