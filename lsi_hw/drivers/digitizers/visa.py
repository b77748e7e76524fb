"""A SCPI oscilloscope over VISA as a per-pattern digitizer (one single-shot sweep).

Instead of one triggered acquisition per pattern, the scope records *one* sweep over the
whole pattern sequence: it triggers on the first TRIG_OUT edge (external trigger input),
the timebase spans ``n_readings * period_s``, and the waveform is cut into patterns by
the known period afterwards: pattern ``k`` starts at ``t = k * period_s`` after the
trigger; its reading is the mean of the samples in
``[k * period_s + settling_delay_s, ... + window_s)``.  Sample times come from the
scope's waveform preamble, so coerced timebase settings do not shift the segmentation.
Suited to short sequences (the scope's memory bounds ``n_readings * period * rate``) and
to checking the timing of the bench; long sequences want a DAQ card.

Command set
-----------
Keysight/Agilent InfiniiVision-style SCPI (2000/3000/4000 X-Series programmer's
guides; most Rigol DS/MSO and many other scopes accept the same short forms), short
forms as sent, ``{c}`` = channel number:

============================  =================================================
``*IDN?``, ``*CLS``            identity (snapshot), clear status
``:STOP``                      stop before reconfiguring
``:TIM:MODE MAIN``             main timebase
``:TIM:REF LEFT``              time reference at the left edge of the screen
``:TIM:SCAL <s/div>``          10 divisions span ``n * period * (1 + margin)``
``:TIM:POS <s>``               0: the trigger is at the left edge
``:CHAN{c}:DISP 1``            channel on
``:CHAN{c}:COUP DC``           DC coupling
``:CHAN{c}:IMP ONEM|FIFT``     1 Mohm (amplifier into Hi-Z) or 50 ohm
``:CHAN{c}:RANG <V>``          full-scale vertical range = 2 * range_v
``:CHAN{c}:OFFS <V>``          0 V: the screen spans -range_v..+range_v
``:ACQ:TYPE NORM``             plain sampling
``:TRIG:SWE NORM``             wait for a real trigger (never auto-trigger)
``:TRIG:MODE EDGE``            edge trigger ...
``:TRIG:EDGE:SOUR EXT``        ... on the external input (DMD TRIG_OUT)
``:TRIG:EDGE:SLOP POS|NEG``    edge polarity
``:TRIG:EDGE:LEV <V>``         threshold
``:WAV:SOUR CHAN{c}``          waveform source
``:WAV:FORM ASC|BYTE|WORD``    transfer format (``:WAV:UNS 1``, ``:WAV:BYT LSBF``)
``:WAV:POIN:MODE RAW``         the acquisition record, not the screen decimation
``:WAV:POIN <n>``              requested points (the scope may coerce)
``:SYST:ERR?``                 after setup: must answer ``+0,...``
``:SING``                      arm one single-shot acquisition (start())
``:OPER:COND?``                bit 3 (8) = running; 0 = acquisition complete
``:TER?``                      trigger event register (timeout diagnosis)
``:WAV:PRE?``                  format, type, points, count, xincrement, xorigin,
                               xreference, yincrement, yorigin, yreference
``:WAV:DATA?``                 IEEE 488.2 definite-length block: ASCII volts
                               separated by commas, or BYTE/WORD codes with
                               ``volts = (code - yreference) * yincrement + yorigin``
============================  =================================================

Transport: ``pyvisa`` (imported lazily) with the pure-Python ``pyvisa-py`` backend
(``backend="@py"``, default) or ``pyvisa-sim`` (``backend="@sim"``, or
``f"{SCOPE_SIM_YAML}@sim"`` for the simulated scope shipped here, at
:data:`SIM_RESOURCE`).  Errors: a VISA timeout ->
:class:`~lsi_hw.errors.DeviceTimeout`; any other VISA I/O error ->
:class:`~lsi_hw.errors.TransportError`; a malformed answer or a SCPI error after setup
-> :class:`~lsi_hw.errors.ProtocolError`; no trigger within ``timeout_s`` ->
DeviceTimeout ("0 of N triggers arrived; check the DMD TRIG_OUT cable to EXT").
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.drivers.digitizers.base import Digitizer, DigitizerConfig
from lsi_hw.errors import (
    ConfigError,
    DeviceTimeout,
    LSIError,
    ProtocolError,
    TransportError,
)

__all__ = ["SCOPE_SIM_YAML", "SIM_RESOURCE", "VisaScopeDigitizer", "parse_ieee_ascii_block"]

#: pyvisa-sim description of a fake scope answering this driver's command set
#: (use ``pyvisa.ResourceManager(f"{SCOPE_SIM_YAML}@sim")``).
SCOPE_SIM_YAML: Path = Path(__file__).with_name("scope_sim.yaml")
#: The simulated scope in :data:`SCOPE_SIM_YAML` that triggers and returns its waveform.
SIM_RESOURCE: str = "USB0::0x2A8D::0x1797::SIM0001::0::INSTR"

_FORMATS = {"ascii": ("ASC", 4), "byte": ("BYTE", 0), "word": ("WORD", 1)}
_IMPEDANCES = ("ONEM", "FIFT")
_RUN_BIT = 8  # :OPERegister:CONDition? bit 3: the acquisition is running


def parse_ieee_ascii_block(text: str) -> np.ndarray:
    """Parse comma-separated values, optionally inside an IEEE 488.2 block header.

    ``"#800000011 1.0,2.5"`` (definite length: ``#``, one digit n, n digits of length)
    and a bare ``"1.0,2.5"`` both give ``array([1.0, 2.5])``.

    Raises
    ------
    ProtocolError
        Malformed header or a value that is not a number.
    """
    body = text.strip()
    if body.startswith("#"):
        try:
            n_digits = int(body[1])
            if n_digits == 0:  # indefinite-length block
                body = body[2:]
            else:
                length = int(body[2:2 + n_digits])
                body = body[2 + n_digits:2 + n_digits + length]
        except (ValueError, IndexError):
            raise ProtocolError(
                f"malformed IEEE 488.2 block header in waveform data {text[:20]!r}"
            ) from None
    try:
        values = [float(v) for v in body.split(",") if v.strip()]
    except ValueError as exc:
        raise ProtocolError(f"waveform data is not comma-separated numbers: {exc}") from exc
    return np.asarray(values, dtype=np.float64)


class VisaScopeDigitizer(Digitizer):
    """A SCPI oscilloscope recording one sweep over the whole pattern sequence.

    Parameters
    ----------
    resource:
        VISA resource string, e.g. ``"USB0::0x2A8D::0x1797::MY1234::0::INSTR"`` or
        ``"TCPIP0::192.168.1.10::INSTR"``.
    backend:
        pyvisa backend: ``"@py"`` (pyvisa-py, default), ``"@ivi"`` (NI-VISA etc.),
        ``"@sim"`` or ``"<file.yaml>@sim"`` (pyvisa-sim).
    channel:
        Analog channel wired to the amplifier output (1-4).
    trigger_source:
        Trigger input wired to the DMD TRIG_OUT (``"EXT"``).
    trigger_level_v:
        Trigger threshold, volts.  The TRIG_OUT logic level of the DLP4500 EVM is not
        stated in HARDWARE.md (unconfirmed); 0.8 V suits both 1.8 V and 3.3 V logic.
    trigger_slope:
        ``"POS"`` or ``"NEG"``.
    impedance:
        Channel input impedance, ``"ONEM"`` (1 Mohm, amplifier into Hi-Z) or ``"FIFT"``
        (50 ohm: the amplifier swing halves to 5 V).
    waveform_format:
        ``"ascii"`` (volts as text), ``"byte"`` or ``"word"`` (binary block, scaled with
        the preamble).
    sweep_margin:
        Fraction added to ``n * period`` when setting the timebase (coercion slack).
    visa_timeout_s:
        Timeout of every single VISA transfer, seconds (the waveform upload included).
    poll_interval_s:
        Interval between ``:OPER:COND?`` polls while waiting for the sweep, seconds.
    max_sample_rate_hz:
        Highest rate :meth:`configure` accepts, Hz.
    resolution_bits:
        Vertical (ADC) resolution, bits: 8 for InfiniiVision-class scopes in normal
        acquisition (more in high-resolution modes); None = unknown.  User-declared; it
        sets the quantization step (``2 range_v / 2**bits``) calibration accounts for.
    """

    default_resolution_bits = 8

    def __init__(
        self,
        resource: str,
        *,
        backend: str = "@py",
        channel: int = 1,
        trigger_source: str = "EXT",
        trigger_level_v: float = 0.8,
        trigger_slope: str = "POS",
        impedance: str = "ONEM",
        waveform_format: str = "ascii",
        sweep_margin: float = 0.02,
        visa_timeout_s: float = 10.0,
        poll_interval_s: float = 0.01,
        max_sample_rate_hz: float = 5e9,
        resolution_bits: int | None = 8,
    ) -> None:
        super().__init__()
        self.resolution_bits = resolution_bits  # ConfigError unless 1..32 or None
        if not isinstance(resource, str) or not resource.strip():
            raise ConfigError(f"resource={resource!r} must be a VISA resource string")
        if not isinstance(backend, str) or (not backend.startswith(("@", "/")) \
                and "@" not in backend):
            raise ConfigError(
                f"backend={backend!r} must be a pyvisa backend such as '@py', '@ivi', "
                "'@sim' or '<file.yaml>@sim'"
            )
        if isinstance(channel, bool) or channel not in (1, 2, 3, 4):
            raise ConfigError(f"channel={channel!r} must be 1, 2, 3 or 4")
        if trigger_slope not in ("POS", "NEG"):
            raise ConfigError(f"trigger_slope={trigger_slope!r} must be 'POS' or 'NEG'")
        if impedance not in _IMPEDANCES:
            raise ConfigError(f"impedance={impedance!r} must be 'ONEM' (1 Mohm) or 'FIFT'")
        if waveform_format not in _FORMATS:
            raise ConfigError(
                f"waveform_format={waveform_format!r} must be one of {', '.join(_FORMATS)}"
            )
        if not isinstance(trigger_level_v, (int, float)) or not math.isfinite(trigger_level_v):
            raise ConfigError(f"trigger_level_v={trigger_level_v!r} must be a finite number (V)")
        for name, value in (("visa_timeout_s", visa_timeout_s),
                            ("poll_interval_s", poll_interval_s),
                            ("max_sample_rate_hz", max_sample_rate_hz)):
            if not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a finite number > 0")
        if not (0 <= float(sweep_margin) <= 1):
            raise ConfigError(f"sweep_margin={sweep_margin} must be in [0, 1]")
        self.resource = resource
        self.backend = backend
        self.channel = int(channel)
        self.trigger_source = trigger_source
        self.trigger_level_v = float(trigger_level_v)
        self.trigger_slope = trigger_slope
        self.impedance = impedance
        self.waveform_format = waveform_format
        self.sweep_margin = float(sweep_margin)
        self.visa_timeout_s = float(visa_timeout_s)
        self.poll_interval_s = float(poll_interval_s)
        self.max_sample_rate_hz = float(max_sample_rate_hz)
        self.device_id = f"VISA scope {resource}"
        self._pyvisa: Any = None
        self._rm: Any = None
        self._inst: Any = None
        self._idn = ""
        self._points_requested = 0
        self._preamble: dict[str, float] = {}
        #: Every SCPI message sent, in order (for logs and tests).
        self.sent: list[str] = []

    # ------------------------------------------------------------------ VISA plumbing
    @contextlib.contextmanager
    def _visa(self, action: str) -> Iterator[None]:
        """Translate pyvisa exceptions (the original is kept as __cause__)."""
        try:
            yield
        except LSIError:
            raise
        except Exception as exc:
            pv = self._pyvisa
            visa_io = getattr(getattr(pv, "errors", None), "VisaIOError", None)
            if isinstance(visa_io, type) and isinstance(exc, visa_io):
                timeout_code = int(pv.constants.StatusCode.error_timeout)
                if getattr(exc, "error_code", None) == timeout_code:
                    raise DeviceTimeout(
                        f"the scope {self.resource} did not answer within "
                        f"{self.visa_timeout_s:g} s while trying to {action}; check the "
                        "connection or raise visa_timeout_s"
                    ) from exc
                raise TransportError(
                    f"VISA I/O error while trying to {action} on {self.resource}: {exc}; "
                    "check the cable / network and that no other program holds the scope"
                ) from exc
            invalid = getattr(getattr(pv, "errors", None), "InvalidSession", None)
            if isinstance(invalid, type) and isinstance(exc, invalid):
                raise TransportError(
                    f"the VISA session to {self.resource} is closed ({action}); "
                    "create a new VisaScopeDigitizer"
                ) from exc
            raise

    def _open(self) -> Any:
        if self._inst is not None:
            return self._inst
        try:
            import pyvisa
        except ImportError as exc:
            raise TransportError(
                "the pyvisa package is not installed: pip install lsi-toolkit[visa] "
                "(pyvisa + pyvisa-py); without a scope use FakeDigitizer or the "
                "`fake-hw` bench"
            ) from exc
        self._pyvisa = pyvisa
        try:
            self._rm = pyvisa.ResourceManager(self.backend)
        except Exception as exc:
            raise TransportError(
                f"cannot load the VISA backend {self.backend!r}: {exc}; '@py' needs "
                "pyvisa-py, '@sim' needs pyvisa-sim (pip install lsi-toolkit[visa])"
            ) from exc
        with self._visa(f"open {self.resource}"):
            inst = self._rm.open_resource(self.resource)
        inst.timeout = self.visa_timeout_s * 1000.0  # pyvisa: milliseconds
        inst.read_termination = "\n"
        inst.write_termination = "\n"
        self._inst = inst
        return inst

    def _write(self, message: str) -> None:
        self.sent.append(message)
        with self._visa(f"send {message!r}"):
            self._inst.write(message)

    def _query(self, message: str) -> str:
        self.sent.append(message)
        with self._visa(f"query {message!r}"):
            return str(self._inst.query(message)).strip()

    def _query_int(self, message: str) -> int:
        answer = self._query(message)
        try:
            return int(float(answer.split(",")[0]))
        except ValueError:
            raise ProtocolError(
                f"the scope answered {answer!r} to {message!r}; expected a number"
            ) from None

    # ------------------------------------------------------------------ Digitizer hooks
    def _check_config(self, cfg: DigitizerConfig) -> None:
        if cfg.period_s is None:
            raise ConfigError(
                "VisaScopeDigitizer.configure needs period_s (the pattern period, s): the "
                "sweep spans n_readings * period_s and is cut into patterns by it"
            )

    def _do_configure(self, cfg: DigitizerConfig) -> None:
        assert cfg.period_s is not None
        self._open()
        self._idn = self._query("*IDN?")
        if not self._idn:
            raise TransportError(
                f"no instrument answered *IDN? at {self.resource}: check the resource "
                "string (pyvisa.ResourceManager().list_resources() lists what is "
                "connected), the cable and the power"
            )
        self.device_id = f"{self._idn} ({self.resource})"
        sweep_s = cfg.n_readings * cfg.period_s * (1.0 + self.sweep_margin)
        points = max(100, math.ceil(sweep_s * cfg.sample_rate_hz))
        self._points_requested = points
        c = self.channel
        fmt = _FORMATS[self.waveform_format][0]
        commands = [
            "*CLS",
            ":STOP",
            ":TIM:MODE MAIN",
            ":TIM:REF LEFT",
            f":TIM:SCAL {sweep_s / 10.0:.6E}",
            f":TIM:POS {0.0:.6E}",
            f":CHAN{c}:DISP 1",
            f":CHAN{c}:COUP DC",
            f":CHAN{c}:IMP {self.impedance}",
            f":CHAN{c}:RANG {2.0 * cfg.range_v:.6E}",
            f":CHAN{c}:OFFS {0.0:.6E}",
            ":ACQ:TYPE NORM",
            ":TRIG:SWE NORM",
            ":TRIG:MODE EDGE",
            f":TRIG:EDGE:SOUR {cfg.trigger or self.trigger_source}",
            f":TRIG:EDGE:SLOP {self.trigger_slope}",
            f":TRIG:EDGE:LEV {self.trigger_level_v:.6E}",
            f":WAV:SOUR CHAN{c}",
            f":WAV:FORM {fmt}",
        ]
        if fmt != "ASC":
            commands += [":WAV:UNS 1", ":WAV:BYT LSBF"]
        commands += [":WAV:POIN:MODE RAW", f":WAV:POIN {points:d}"]
        for command in commands:
            self._write(command)
        error = self._query(":SYST:ERR?")
        try:
            code = int(float(error.split(",")[0]))
        except ValueError:
            code = -1
        if code != 0:
            raise ProtocolError(
                f"the scope reported {error!r} after setup; it may not accept this "
                "driver's Keysight InfiniiVision-style commands (see the module docstring "
                f"for the list); sent: {commands}"
            )

    def _do_start(self) -> None:
        self._write(":SING")

    def _do_read_raw(self, timeout_s: float) -> np.ndarray:
        cfg = self._config
        assert cfg is not None and cfg.period_s is not None
        deadline = time.monotonic() + timeout_s
        while self._query_int(":OPER:COND?") & _RUN_BIT:
            if time.monotonic() >= deadline:
                triggered = self._query_int(":TER?") != 0
                self._set_partial(np.zeros((0, cfg.samples_per_reading)))
                source = cfg.trigger or self.trigger_source
                if triggered:
                    raise DeviceTimeout(
                        f"the scope triggered but the {cfg.n_readings}-pattern sweep "
                        f"({cfg.n_readings * cfg.period_s:g} s) did not finish within "
                        f"{timeout_s:g} s; raise timeout_s (no reading is complete before "
                        "the sweep ends)"
                    )
                raise DeviceTimeout(
                    f"0 of {cfg.n_readings} triggers arrived within {timeout_s:g} s; check "
                    f"the DMD TRIG_OUT cable to the scope's {source} input, the trigger "
                    f"level ({self.trigger_level_v:g} V) and that the sequence was started"
                )
            time.sleep(self.poll_interval_s)
        volts, times = self._fetch()
        return self._segment(volts, times, cfg)

    def _fetch(self) -> tuple[np.ndarray, np.ndarray]:
        """Upload the record: (volts, seconds after the trigger) per point."""
        answer = self._query(":WAV:PRE?")
        try:
            fields = [float(v) for v in answer.split(",")]
            if len(fields) != 10:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as exc:
            raise ProtocolError(
                f"malformed waveform preamble {answer!r} ({exc}); expected 10 numbers: "
                "format, type, points, count, xinc, xorigin, xref, yinc, yorigin, yref"
            ) from None
        keys = ("format", "type", "points", "count", "xincrement", "xorigin",
                "xreference", "yincrement", "yorigin", "yreference")
        pre = self._preamble = dict(zip(keys, fields, strict=True))
        expected_format = _FORMATS[self.waveform_format][1]
        if int(pre["format"]) != expected_format:
            raise ProtocolError(
                f"the preamble says waveform format {int(pre['format'])} but "
                f"{self.waveform_format!r} ({expected_format}) was requested"
            )
        if not (math.isfinite(pre["xincrement"]) and pre["xincrement"] > 0):
            raise ProtocolError(f"the preamble's xincrement {pre['xincrement']} is not > 0")
        if self.waveform_format == "ascii":
            volts = parse_ieee_ascii_block(self._query(":WAV:DATA?"))
        else:
            self.sent.append(":WAV:DATA?")
            datatype = "B" if self.waveform_format == "byte" else "H"
            with self._visa("upload the waveform (:WAV:DATA?)"):
                codes = self._inst.query_binary_values(
                    ":WAV:DATA?", datatype=datatype, is_big_endian=False, container=np.array
                )
            volts = (np.asarray(codes, dtype=np.float64) - pre["yreference"]) \
                * pre["yincrement"] + pre["yorigin"]
        if volts.size != int(pre["points"]):
            raise ProtocolError(
                f"the scope sent {volts.size} points but its preamble announces "
                f"{int(pre['points'])}"
            )
        idx = np.arange(volts.size, dtype=np.float64)
        times = (idx - pre["xreference"]) * pre["xincrement"] + pre["xorigin"]
        return volts, times

    def _segment(self, volts: np.ndarray, times: np.ndarray, cfg: DigitizerConfig) -> np.ndarray:
        """Cut the record into (n_readings, k) window samples by the pattern period."""
        assert cfg.period_s is not None
        dt = float(self._preamble["xincrement"])
        t0 = float(times[0])
        count = math.floor(cfg.window_s / dt + 1e-6)
        if count < 1:
            raise ProtocolError(
                f"the scope sampled every {dt:g} s, longer than the {cfg.window_s:g} s "
                "window; raise sample_rate_hz or the scope's memory depth"
            )
        starts = cfg.settling_delay_s + cfg.period_s * np.arange(cfg.n_readings)
        first = np.ceil((starts - t0) / dt - 1e-6).astype(np.int64)
        if first[0] < 0 or first[-1] + count > volts.size:
            raise ProtocolError(
                f"the record covers {t0:g}..{float(times[-1]):g} s after the trigger but "
                f"the readings need {starts[0]:g}..{starts[-1] + cfg.window_s:g} s; the "
                "scope coerced the timebase: raise sweep_margin or check :TIM:SCAL"
            )
        return volts[first[:, None] + np.arange(count)[None, :]]

    def _do_stop(self) -> None:
        if self._inst is not None:
            self._write(":STOP")

    def _do_close(self) -> None:
        inst, rm, self._inst, self._rm = self._inst, self._rm, None, None
        with self._visa("close the VISA session"):
            if inst is not None:
                inst.close()
            if rm is not None:
                rm.close()

    def _do_settings(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "backend": self.backend,
            "idn": self._idn,
            "channel": self.channel,
            "trigger_source": self.trigger_source,
            "trigger_level_v": self.trigger_level_v,
            "trigger_slope": self.trigger_slope,
            "impedance": self.impedance,
            "waveform_format": self.waveform_format,
            "points_requested": self._points_requested,
            "preamble": dict(self._preamble),
        }
