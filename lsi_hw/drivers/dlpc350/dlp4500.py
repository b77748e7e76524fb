"""TI DLP LightCrafter 4500 (DLP4500 DMD, DLPC350 controller) as a :class:`Modulator`.

The DMD shows binary masks in the DLPC350's *pattern sequence* mode.  Each mask is a
1-bit pattern: one bitplane of a 24-bit RGB frame (G0-G7 = masks 0-7, R0-R7 = 8-15,
B0-B7 = 16-23 of each frame; DLPU010G Table 2-70), described by one entry of the
pattern LUT.  The LUT holds 128 entries, so one :meth:`DLP4500.load` holds at most 128
masks (``max_patterns = 128``); longer sets are split into several loads.

Two sources of the frames (PAT_DISP_MODE, DLPU010G §2.4.3.4.1):

``source="video"`` (default)
    The frames are streamed through the video port (HDMI on the EVM, 912 x 1140 at up to
    120 Hz).  :meth:`DLP4500.load` computes them (``PatternSet.to_dlp_frames``) and hands
    them to ``frame_sink(frames)``; your display code must show frame ``f`` of the
    sequence at its ``f``-th VSYNC.  Trigger mode 0 (VSYNC): the first pattern of every
    frame waits for VSYNC (external-positive trigger with buffer swap), the others follow
    (DLPU010G §4.2, Table 4-2).  Exposure must equal the period (Table 2-63 note) and
    ``min(m, 24)`` periods must fit in one video frame.
``source="flash"``
    The frames are already stored in the EVM's flash (built with TI's firmware tools
    from ``PatternSet.to_dlp_frames``); ``load(...,
    image_indices=[...])`` names the flash image of each frame.  Trigger mode 1: internal
    timer or the TRIG_IN_1 edge.

Load sequence (every write asks for an acknowledgement and checks it; the sequence
byte increments per message; no fixed sleeps): stop; display mode = pattern; pattern
source; trigger mode; exposure/period; PAT_CONFIG (counts - 1); open the pattern LUT
mailbox, address 0, *all* entries in one MBOX_DATA message, close; for flash the image
LUT likewise; LUT_VALID write, then LUT_VALID reads until the busy bit clears (bounded
by ``validate_timeout_s``).  Error bits are reported in words.  After a stop the
controller needs the LUT again before a start (DLPU010G Table 2-62 note), so
:meth:`start` after :meth:`stop` re-sends the configuration and validates it again.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.drivers.dlpc350.transport import Transport, UsbHidTransport
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    PatternError,
    ProtocolError,
    TransportError,
)
from lsi_hw.interfaces import Modulator, TriggerMode
from lsi_hw.patterns import DMD_COLUMNS, DMD_ROWS, PatternSet, superpixel_for
from lsi_hw.specs import DLP4500_MIN_EXPOSURE_US

__all__ = ["DLP4500", "LoadPlan"]

#: Smallest gap between exposure and period when they differ, microseconds (DLPU010G
#: §2.4.3.4.3; LUT_VALID bit 4 otherwise).
MIN_DARK_GAP_US: int = 230

_SOURCES = ("video", "flash")
_FLASH_TRIGGERS = {
    TriggerMode.INTERNAL: P.TrigType.INTERNAL,
    TriggerMode.EXTERNAL_POSITIVE: P.TrigType.EXTERNAL_POSITIVE,
    TriggerMode.EXTERNAL_NEGATIVE: P.TrigType.EXTERNAL_NEGATIVE,
}

FrameSink = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class LoadPlan:
    """Everything one pattern sequence sends to the controller (pure data).

    Attributes
    ----------
    source: "video" or "flash".
    trigger: how the sequence advances.
    exposure_us, period_us: whole microseconds.
    entries: the 24-bit pattern LUT words, one per mask.
    image_indices: flash image per 24-pattern frame (flash source), else empty.
    n_frames: 24-bit frames carrying the masks, ``ceil(m / 24)``.
    repeat: repeat the sequence (True) or show it once.
    """

    source: str
    trigger: TriggerMode
    exposure_us: int
    period_us: int
    entries: tuple[int, ...]
    image_indices: tuple[int, ...] = field(default_factory=tuple)
    n_frames: int = 1
    repeat: bool = False

    def messages(self) -> list[P.Message]:
        """The writes of the sequence up to (not including) validation."""
        flash = self.source == "flash"
        mode = P.TriggerModeCode.INTERNAL_OR_EXTERNAL if flash else P.TriggerModeCode.VSYNC
        n = len(self.entries)
        msgs = [
            P.pattern_display("stop"),
            P.display_mode(pattern=True),
            P.pattern_source("flash" if flash else "video"),
            P.pattern_trigger_mode(int(mode)),
            P.exposure_period(self.exposure_us, self.period_us),
            P.pat_config(n, self.repeat, n, self.n_frames),
            P.mbox_control(P.MailboxMode.PATTERN_LUT),
            P.mbox_address(0),
            P.mbox_data(P.pattern_lut_payload(self.entries)),
            P.mbox_control(P.MailboxMode.CLOSE),
        ]
        if flash:
            msgs += [
                P.mbox_control(P.MailboxMode.IMAGE_LUT),
                P.mbox_address(0),
                P.mbox_data(P.image_lut_payload(self.image_indices)),
                P.mbox_control(P.MailboxMode.CLOSE),
            ]
        return msgs


def _whole_us(name: str, value: float) -> int:
    if not math.isfinite(value) or abs(value - round(value)) > 1e-6:
        raise ConfigError(
            f"{name}={value} must be a whole number of microseconds (the DLPC350 takes "
            "integer us); round it"
        )
    number = round(value)
    if not 0 < number <= 0xFFFFFFFF:
        raise ConfigError(f"{name}={value} outside the allowed range [1, {0xFFFFFFFF}] us")
    return number


def _checked_timing(exposure_us: float, period_us: float) -> tuple[int, int]:
    """(exposure, period) in whole microseconds, checked against the DLPC350's limits
    (ConfigError otherwise)."""
    exp = _whole_us("exposure_us", exposure_us)
    per = _whole_us("period_us", period_us)
    if exp < DLP4500_MIN_EXPOSURE_US[1]:
        raise ConfigError(
            f"exposure_us={exp} is below the DLP4500 minimum of "
            f"{DLP4500_MIN_EXPOSURE_US[1]:g} us for 1-bit patterns (DLPU010G Table 2-48)"
        )
    if per < exp:
        raise ConfigError(f"period_us={per} must be >= exposure_us={exp}")
    if 0 < per - exp < MIN_DARK_GAP_US:
        raise ConfigError(
            f"period_us={per} exceeds exposure_us={exp} by {per - exp} us: the DLPC350 "
            f"needs the exposure equal to the period or at least {MIN_DARK_GAP_US} us "
            f"shorter (DLPU010G §2.4.3.4.3); use period_us={exp} or >= "
            f"{exp + MIN_DARK_GAP_US}"
        )
    return exp, per


class DLP4500(Modulator):
    """The DLP LightCrafter 4500 showing binary masks, over USB (or any :class:`Transport`).

    Parameters
    ----------
    transport:
        The link; None opens the USB device (:class:`UsbHidTransport`).  Pass a
        :class:`~lsi_hw.drivers.dlpc350.emulator.FakeDLPC350` to run without hardware.
    timeout_s:
        Longest wait for each reply report, seconds.
    poll_interval_s:
        Pause between LUT_VALID polls while the controller validates, seconds.
    validate_timeout_s:
        Longest validation, seconds (DeviceTimeout after it).
    diamond:
        Map each mask pixel onto ``s`` columns x ``2 s`` rows of mirrors (physically
        square on the diamond array), see :func:`lsi_hw.patterns.place_on_dmd`.
    superpixel:
        Mirror columns per mask pixel; None: the largest that fits.
    source:
        "video" (stream frames through the video port) or "flash" (frames in flash).
    frame_sink:
        Called with the (n_frames, 1140, 912, 3) uint8 RGB frames after a successful
        video-source load; they are also kept in :attr:`frames`.
    leds:
        LED select of every pattern, bit0 red, bit1 green, bit2 blue.  Default 0 (no
        LED): the scene light comes from the monitor imaged onto the DMD, and the EVM's
        LEDs would only add stray light.
    repeat:
        Repeat the sequence; None: True for the video port (TI recommends repeat with
        video input), False for flash (one pass: one trigger per mask).
    video_frame_rate_hz:
        Frame rate of the video source, Hz (to check that a frame's patterns fit).

    Notes
    -----
    ``min_exposure_us`` is 235 us, the shortest 1-bit exposure (DLPU010G Table 2-48);
    the driver only uses 1-bit patterns.
    """

    array_shape: tuple[int, int] = (DMD_ROWS, DMD_COLUMNS)
    max_patterns: int = P.PATTERN_LUT_SIZE
    min_exposure_us: float = float(DLP4500_MIN_EXPOSURE_US[1])

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        timeout_s: float = 1.0,
        poll_interval_s: float = 0.005,
        validate_timeout_s: float = 2.0,
        diamond: bool = True,
        superpixel: int | None = None,
        source: str = "video",
        frame_sink: FrameSink | None = None,
        leds: int = 0,
        repeat: bool | None = None,
        video_frame_rate_hz: float = 60.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("timeout_s", timeout_s),
            ("poll_interval_s", poll_interval_s),
            ("validate_timeout_s", validate_timeout_s),
            ("video_frame_rate_hz", video_frame_rate_hz),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a finite number > 0")
        if source not in _SOURCES:
            raise ConfigError(f"source={source!r} is not one of {_SOURCES}")
        if superpixel is not None and (
            not isinstance(superpixel, (int, np.integer)) or int(superpixel) < 1
        ):
            raise ConfigError(f"superpixel={superpixel!r} must be None or an int >= 1")
        if frame_sink is not None and not callable(frame_sink):
            raise ConfigError("frame_sink must be callable (it receives the frames)")
        self._leds = P.check_int("leds", leds, 0, 7)
        self._timeout_s = float(timeout_s)
        self._poll_s = float(poll_interval_s)
        self._validate_timeout_s = float(validate_timeout_s)
        self._diamond = bool(diamond)
        self._superpixel = None if superpixel is None else int(superpixel)
        self._source = source
        self._frame_sink = frame_sink
        self._repeat = (source == "video") if repeat is None else bool(repeat)
        self._frame_rate = float(video_frame_rate_hz)
        self._transport: Transport = UsbHidTransport() if transport is None else transport
        self._seq = 0
        self._late_replies = 0  # requests that timed out: their replies may still arrive
        self._closed = False
        self._plan: LoadPlan | None = None
        self._needs_reprogram = False
        self._state = "not loaded"
        self._frames: np.ndarray | None = None
        self._version: dict[str, str] | None = None
        self._warnings: tuple[str, ...] = ()
        self._pending_indices: Sequence[int] | None = None
        self._trig_out: dict[str, Any] = {}

    @classmethod
    def open(cls, **kwargs: Any) -> DLP4500:
        """Open the LightCrafter 4500 on USB; keyword arguments as for the constructor."""
        transport = UsbHidTransport()
        try:
            return cls(transport, **kwargs)
        except BaseException:
            transport.close()
            raise

    # -- properties --------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """'video' or 'flash'."""
        return self._source

    @property
    def frames(self) -> np.ndarray | None:
        """The 24-bit frames of the last video-source load (n_frames, 1140, 912, 3)."""
        return self._frames

    @property
    def state(self) -> str:
        """'not loaded', 'stopped', 'paused' or 'running' (as the driver left it)."""
        return self._state

    @property
    def validation_warnings(self) -> tuple[str, ...]:
        """Warning bits (2, 3) of the last validation, in words."""
        return self._warnings

    # -- load ---------------------------------------------------------------------------

    def load(  # type: ignore[override]
        self,
        patterns: PatternSet,
        *,
        exposure_us: float | None = None,
        period_us: float | None = None,
        trigger: TriggerMode | None = None,
        image_indices: Sequence[int] | None = None,
    ) -> None:
        """Validate the masks and timing, then program the sequence (see the module doc).

        Parameters
        ----------
        patterns:
            At most 128 binary masks that fit the 1140 x 912 array.
        exposure_us, period_us:
            Whole microseconds; exposure >= 235, period == exposure or >= exposure + 230
            (video source: equal).  Default: 235 and the exposure.
        trigger:
            Default VSYNC for the video source, INTERNAL for flash.
        image_indices:
            Flash source only: flash image index of each 24-mask frame, ``ceil(m/24)``
            of them.

        Raises
        ------
        PatternError, ConfigError
            Before anything is sent, for masks or settings the device cannot take;
            ConfigError also when the controller's validation refuses the sequence (its
            error bits in words).
        DeviceError
            The link failed; the driver then tried to stop the sequence (the message
            says whether that worked).
        """
        if trigger is None:
            trigger = TriggerMode.VSYNC if self._source == "video" else TriggerMode.INTERNAL
        self._pending_indices = image_indices
        try:
            super().load(patterns, exposure_us=exposure_us, period_us=period_us, trigger=trigger)
        finally:
            self._pending_indices = None

    def _check_fits(self, patterns: PatternSet) -> None:
        try:
            s_max = superpixel_for(patterns.shape, self._diamond)
        except ConfigError as exc:
            raise PatternError(str(exc)) from None
        if self._superpixel is not None and self._superpixel > s_max:
            raise PatternError(
                f"superpixel {self._superpixel} does not fit masks of shape {patterns.shape} "
                f"on the {DMD_ROWS} x {DMD_COLUMNS} array (diamond={self._diamond}); the "
                f"largest that fits is {s_max}"
            )

    def plan(
        self,
        patterns: PatternSet,
        exposure_us: float,
        period_us: float,
        trigger: TriggerMode,
        image_indices: Sequence[int] | None = None,
    ) -> LoadPlan:
        """The :class:`LoadPlan` of a load, checked against the device limits (no I/O).

        Raises
        ------
        ConfigError
            Timing the controller refuses, a trigger the source does not support, or
            wrong image indices.
        """
        trigger = TriggerMode(trigger)
        m = patterns.m
        if m > self.max_patterns:
            raise PatternError(
                f"{m} patterns do not fit the pattern LUT of {self.max_patterns} entries; "
                "split the set into several loads"
            )
        exp, per = _checked_timing(exposure_us, period_us)
        n_frames = -(-m // P.BITPLANES)
        if self._source == "video":
            entries = self._video_entries(m, exp, per, trigger, image_indices)
            indices: tuple[int, ...] = ()
        else:
            entries, indices = self._flash_entries(m, n_frames, trigger, image_indices)
        return LoadPlan(
            source=self._source,
            trigger=trigger,
            exposure_us=exp,
            period_us=per,
            entries=tuple(entries),
            image_indices=indices,
            n_frames=n_frames,
            repeat=self._repeat,
        )

    def _video_entries(self, m: int, exp: int, per: int, trigger: TriggerMode,
                       image_indices: Sequence[int] | None) -> list[int]:
        """The pattern LUT words of ``m`` masks streamed through the video port: the first
        of each frame waits for VSYNC (with buffer swap), the others follow.

        Raises
        ------
        ConfigError
            A trigger other than VSYNC, image indices, exposure differing from the period,
            or a frame's patterns that do not fit in one video frame.
        """
        if trigger is not TriggerMode.VSYNC:
            raise ConfigError(
                f"trigger={trigger.value!r} is not available with the video-port source: "
                "patterns streamed through the video port advance on VSYNC; use "
                "trigger=TriggerMode.VSYNC, or source='flash' for internal/external triggers"
            )
        if image_indices is not None:
            raise ConfigError("image_indices are only used with source='flash'")
        if per != exp:
            raise ConfigError(
                f"with the video-port source the exposure must equal the period "
                f"(DLPU010G Table 2-63 note); got exposure_us={exp}, period_us={per}"
            )
        per_frame = min(m, P.BITPLANES)
        frame_us = 1e6 / self._frame_rate
        if per_frame * per > frame_us:
            raise ConfigError(
                f"{per_frame} patterns of {per} us need {per_frame * per} us but one video "
                f"frame at {self._frame_rate:g} Hz lasts {frame_us:.0f} us; use "
                f"period_us <= {math.floor(frame_us / per_frame)}"
            )
        entries: list[int] = []
        for k in range(m):
            first = k % P.BITPLANES == 0
            entries.append(
                P.lut_entry(
                    P.TrigType.EXTERNAL_POSITIVE if first else P.TrigType.CONTINUE,
                    k % P.BITPLANES, 1, self._leds, buffer_swap=first,
                )
            )
        return entries

    def _flash_entries(self, m: int, n_frames: int, trigger: TriggerMode,
                       image_indices: Sequence[int] | None
                       ) -> tuple[list[int], tuple[int, ...]]:
        """(pattern LUT words, checked image indices) of ``m`` masks from flash images.

        Raises
        ------
        ConfigError
            A trigger the flash source does not support, or missing or wrong image indices.
        """
        if trigger not in _FLASH_TRIGGERS:
            raise ConfigError(
                f"trigger={trigger.value!r} is not available with the flash source; use "
                "INTERNAL, EXTERNAL_POSITIVE or EXTERNAL_NEGATIVE (or source='video' "
                "for VSYNC)"
            )
        if image_indices is None:
            raise ConfigError(
                f"source='flash' needs image_indices: the flash image index of each of "
                f"the {n_frames} 24-pattern frame(s)"
            )
        indices = tuple(
            P.check_int(f"image_indices[{k}]", v, 0, 255)
            for k, v in enumerate(image_indices)
        )
        if len(indices) != n_frames:
            raise ConfigError(
                f"{m} patterns fill {n_frames} frame(s) of 24 bitplanes; got "
                f"{len(indices)} image index(es)"
            )
        ttype = _FLASH_TRIGGERS[trigger]
        entries: list[int] = []
        for k in range(m):
            entries.append(
                P.lut_entry(ttype, k % P.BITPLANES, 1, self._leds,
                            buffer_swap=k % P.BITPLANES == 0)
            )
        return entries, indices

    def _do_load(
        self, patterns: PatternSet, exposure_us: float, period_us: float, trigger: TriggerMode
    ) -> None:
        plan = self.plan(patterns, exposure_us, period_us, trigger, self._pending_indices)
        frames = None
        if plan.source == "video":
            frames = patterns.to_dlp_frames(self._superpixel, self._diamond)
        else:
            n_flash = self.num_images_in_flash()
            bad = [i for i in plan.image_indices if i >= n_flash]
            if bad:
                raise ConfigError(
                    f"image_indices {bad} do not exist: the flash holds {n_flash} images "
                    f"(indices 0..{n_flash - 1})"
                )
        self._program(plan, "loading the pattern sequence")
        self._plan = plan
        self._needs_reprogram = False
        self._state = "stopped"
        self._running = False
        if frames is not None:
            self._frames = frames
            if self._frame_sink is not None:
                self._frame_sink(frames)

    def _program(self, plan: LoadPlan, doing: str) -> None:
        """Send the plan and validate it; on a link error try to stop, then re-raise."""
        self._needs_reprogram = True  # until validation passes
        try:
            for msg in plan.messages():
                self._write(msg)
            result = self._validate()
        except DeviceError as exc:
            self._abort(exc, doing)
        self._state = "stopped"
        self._running = False
        if result.errors:
            words = "; ".join(result.errors + result.warnings)
            raise ConfigError(
                f"the DLPC350 refused the pattern sequence at validation (LUT_VALID = "
                f"0x{result.raw:02X}): {words}; the sequence is stopped"
            )
        self._warnings = result.warnings
        if result.warnings:
            warnings.warn(
                "DLPC350 validation warnings: " + "; ".join(result.warnings),
                RuntimeWarning,
                stacklevel=3,
            )
        self._needs_reprogram = False

    def _abort(self, exc: DeviceError, doing: str) -> NoReturn:
        """Try to leave the device stopped after ``exc``, then raise ``exc`` annotated."""
        try:
            self._write(P.pattern_display("stop"))
        except DeviceError as stop_exc:
            outcome = f"could not stop the sequence either ({stop_exc})"
        else:
            outcome = "stopped the sequence"
            self._state = "stopped"
        self._running = False
        self._needs_reprogram = True
        raise type(exc)(f"{exc} [while {doing}; the driver then {outcome}]") from exc

    def _validate(self) -> P.ValidationResult:
        """LUT_VALID write, then poll the read until the busy bit clears (bounded)."""
        self._write(P.lut_valid_start())
        deadline = time.monotonic() + self._validate_timeout_s
        polls = 0
        while True:
            data = self._query(P.lut_valid_read())
            polls += 1
            result = P.decode_lut_valid(data[0])
            if not result.busy:
                return result
            if time.monotonic() >= deadline:
                raise DeviceTimeout(
                    f"the DLPC350 was still validating the pattern sequence after "
                    f"{self._validate_timeout_s} s ({polls} polls of LUT_VALID); power-cycle "
                    "the EVM if this persists"
                )
            time.sleep(self._poll_s)

    # -- start / stop ----------------------------------------------------------------------

    def _do_start(self) -> None:
        if self._plan is None:
            raise ConfigError("nothing loaded: call load(patterns) before start()")
        if self._needs_reprogram:
            self._program(self._plan, "re-sending the pattern sequence before start")
        try:
            self._write(P.pattern_display("start"))
        except DeviceError as exc:
            self._abort(exc, "starting the sequence")
        self._state = "running"

    def _do_stop(self) -> None:
        self._write(P.pattern_display("stop"))
        self._needs_reprogram = self._plan is not None  # the LUT is needed again
        self._state = "stopped" if self._plan is not None else self._state

    def _do_pause(self) -> None:
        self._write(P.pattern_display("pause"))
        if self._plan is not None:
            self._state = "paused"

    # -- other commands --------------------------------------------------------------------

    def version(self) -> dict[str, str]:
        """Firmware versions: {"application", "api", "software_config", "sequence_config"}."""
        self._version = P.decode_version(self._query(P.get_version()))
        return dict(self._version)

    def status(self) -> dict[str, list[str]]:
        """Hardware, system and main status bytes in words (DLPU010G §2.1)."""
        hw = self._query(P.status_hardware())[0]
        sys_ = self._query(P.status_system())[0]
        main = self._query(P.status_main())[0]
        return {
            "hardware": P.decode_hardware_status(hw),
            "system": P.decode_system_status(sys_),
            "main": P.decode_main_status(main),
        }

    def num_images_in_flash(self) -> int:
        """How many images the EVM's flash holds."""
        return int(self._query(P.num_images_in_flash())[0])

    def set_led_currents(self, red: int, green: int, blue: int) -> None:
        """LED PWM 0..255 each (255 brightest; the EVM's inverted PWM is handled)."""
        self._write(P.led_current(red, green, blue))

    def set_trigger_outputs(
        self,
        *,
        out1_invert: bool = False,
        out1_rising_us: float = 0.0,
        out1_falling_us: float = 0.0,
        out2_invert: bool = False,
        out2_rising_us: float = 0.0,
    ) -> None:
        """Polarity and edge delays of TRIG_OUT_1 (per pattern) and TRIG_OUT_2 (per
        sequence), microseconds in 107.2 ns steps.  Stops the sequence first (the next
        :meth:`start` validates again)."""
        m1 = P.trig_out1(out1_invert, P.trig_delay_code(out1_rising_us, 1),
                         P.trig_delay_code(out1_falling_us, 1))
        m2 = P.trig_out2(out2_invert, P.trig_delay_code(out2_rising_us, 2))
        self.stop()
        self._write(m1)
        self._write(m2)
        self._trig_out = {
            "out1_invert": bool(out1_invert), "out1_rising_us": float(out1_rising_us),
            "out1_falling_us": float(out1_falling_us), "out2_invert": bool(out2_invert),
            "out2_rising_us": float(out2_rising_us),
        }

    def _do_settings(self) -> dict[str, Any]:
        if self._version is None and not self._closed:
            self.version()
        plan = self._plan
        return {
            "device": "DLP LightCrafter 4500 (DLP4500 DMD, DLPC350)",
            "display_mode": "pattern" if plan is not None else "unknown",
            "source": self._source,
            "state": self._state,
            "trigger": plan.trigger.value if plan else None,
            "exposure_us": plan.exposure_us if plan else None,
            "period_us": plan.period_us if plan else None,
            "lut_entries": len(plan.entries) if plan else 0,
            "image_lut_entries": len(plan.image_indices) if plan else 0,
            "n_frames": plan.n_frames if plan else 0,
            "repeat": self._repeat,
            "leds": self._leds,
            "diamond": self._diamond,
            "superpixel": self._superpixel,
            "array_shape": list(self.array_shape),
            "trigger_outputs": dict(self._trig_out),
            "validation_warnings": list(self._warnings),
            "firmware_version": dict(self._version) if self._version else "unknown (closed)",
        }

    # -- link ------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise TransportError("the DLP4500 driver is closed; open the device again")

    def _transact(self, msg: P.Message) -> bytes:
        """Send one message, read and check its reply; return the reply data."""
        self._require_open()
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        name = P.command_name(msg.command)
        try:
            for packet in msg.encode(seq):
                self._transport.write(packet)
            try:
                first = self._transport.read(self._timeout_s)
                # a reply that arrives after its request timed out is still queued on the
                # link: drop such late replies (and their continuation packets) once
                while self._late_replies and len(first) > 1 and first[1] != seq:
                    self._late_replies -= 1
                    for _ in range(P.reply_packet_count(first) - 1):
                        self._transport.read(self._timeout_s)
                    first = self._transport.read(self._timeout_s)
                packets = [first]
                for _ in range(P.reply_packet_count(first) - 1):
                    packets.append(self._transport.read(self._timeout_s))
            except DeviceTimeout as exc:
                self._late_replies += 1
                raise DeviceTimeout(
                    f"no reply from the DLPC350 to {name} within {self._timeout_s} s ({exc}); "
                    "check the USB cable and that no other program (TI's GUI) uses the device"
                ) from exc
        except OSError as exc:  # a custom transport's raw I/O error
            if isinstance(exc, DeviceError):
                raise
            raise TransportError(f"I/O error sending {name}: {exc}") from exc
        return P.decode_reply(
            packets, command=msg.command, seq=seq, expect_len=msg.reply_len, ack=not msg.read
        )

    def _write(self, msg: P.Message) -> None:
        if msg.read:
            raise ProtocolError(f"{P.command_name(msg.command)} is a read, not a write")
        self._transact(msg)

    def _query(self, msg: P.Message) -> bytes:
        if not msg.read:
            raise ProtocolError(f"{P.command_name(msg.command)} is a write, not a read")
        return self._transact(msg)

    # -- closing ---------------------------------------------------------------------------

    def _do_close(self) -> None:
        if self._closed:
            return
        error: DeviceError | None = None
        try:
            self._write(P.pattern_display("stop"))
            if self._plan is not None:
                self._state = "stopped"
        except DeviceError as exc:
            error = exc
        self._closed = True
        self._running = False
        try:
            self._transport.close()
        except DeviceError as exc:
            error = error or exc
        if error is not None:
            raise type(error)(
                f"closing the DLP4500: could not leave the sequence stopped ({error}); "
                "power-cycle the EVM to be sure it is stopped"
            ) from error

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except DeviceError as close_exc:  # keep the original error on top
            warnings.warn(f"DLP4500.close() after an error: {close_exc}", RuntimeWarning,
                          stacklevel=2)
