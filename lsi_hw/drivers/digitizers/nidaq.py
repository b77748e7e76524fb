"""NI-DAQmx digitizer: one hardware-timed, triggered reading per DMD pattern.

Uses NI's ``nidaqmx`` Python package (``pip install lsi-toolkit[daq]``), which needs NI's
NI-DAQmx driver at run time.  The package is imported lazily, inside the methods that
talk to the card, so this module imports without it.

Two ways to get one reading per TRIG_OUT edge (HARDWARE.md, "Digitizers"):

``mode="retriggerable"`` (X Series, e.g. USB-6361)
    A finite AI task whose start trigger is the DMD's TRIG_OUT on a PFI line and is
    retriggerable: every edge acquires ``delay_samples + samples_per_reading`` samples
    on the internal sample clock.  Calls, as in NI's example
    ``examples/analog_in/cont_voltage_acq_int_clk_dig_start_retrig.py``::

        ai.ai_channels.add_ai_voltage_chan("Dev1/ai0", terminal_config=RSE,
                                           min_val=-range_v, max_val=range_v)
        ai.timing.cfg_samp_clk_timing(rate, sample_mode=FINITE, samps_per_chan=per_trigger)
        ai.triggers.start_trigger.cfg_dig_edge_start_trig("/Dev1/PFI0", trigger_edge=RISING)
        ai.triggers.start_trigger.retriggerable = True
        ai.in_stream.input_buf_size = n_readings * per_trigger

    The settling samples are dropped in software.

``mode="counter-clock"`` (cards without retriggerable AI, e.g. M Series USB-6211)
    A counter output task generates a retriggerable *finite pulse train*: after every
    TRIG_OUT edge it waits the settling delay (``initial_delay``, re-applied on every
    retrigger) and then gives ``samples_per_reading`` pulses at the sample rate.  The AI
    task samples continuously on the counter's internal output
    (``/Dev1/Ctr0InternalOutput``), so it acquires exactly the window samples::

        co.co_channels.add_co_pulse_chan_freq("Dev1/ctr0", idle_state=LOW,
                                              initial_delay=settling_delay_s,
                                              freq=rate, duty_cycle=0.5)
        chan.co_enable_initial_delay_on_retrigger = True
        co.timing.cfg_implicit_timing(sample_mode=FINITE, samps_per_chan=samples_per_reading)
        co.triggers.start_trigger.cfg_dig_edge_start_trig("/Dev1/PFI0", trigger_edge=RISING)
        co.triggers.start_trigger.retriggerable = True
        ai.timing.cfg_samp_clk_timing(rate, source="/Dev1/Ctr0InternalOutput",
                                      active_edge=RISING, sample_mode=CONTINUOUS,
                                      samps_per_chan=n_readings * samples_per_reading)

    The X Series manual states that a retriggered finite pulse train applies the
    initial delay only to the first trigger unless CO.EnableInitialDelayOnRetrigger is
    set; whether a given M Series card accepts that property is not confirmed here.  If
    it refuses, use ``counter_settling="samples"``: the counter then also clocks the
    settling samples (no initial delay) and they are dropped in software, as in the
    retriggerable mode.  A finite pulse train on M Series uses the paired counter too
    (ctr0 + ctr1), so no other counter task can run meanwhile.

``mode="auto"`` reads ``nidaqmx.system.Device(device).product_category``:
``ProductCategory.X_SERIES_DAQ`` -> retriggerable, anything else -> counter-clock.

Reading: one ``AnalogSingleChannelReader.read_many_sample(buffer, n, timeout=)`` into a
preallocated float64 buffer of all samples, reshaped per trigger, settling samples
dropped, windows averaged.

Errors: no ``nidaqmx`` package -> :class:`~lsi_hw.errors.TransportError` ("pip install
lsi-toolkit[daq]"); package without NI's driver (``DaqNotFoundError``,
``DaqNotSupportedError``) -> TransportError pointing to :class:`FakeDigitizer` / the
``fake-hw`` bench; DAQmx error -200284 (samples not yet available, i.e. triggers missing)
-> :class:`~lsi_hw.errors.DeviceTimeout` with the completed readings kept; unknown or
unreachable device -> TransportError; any other DAQmx error -> ProtocolError.  The
original exception is always the ``__cause__``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from lsi_hw.drivers.digitizers.base import Digitizer, DigitizerConfig
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    LSIError,
    ProtocolError,
    TransportError,
)

__all__ = ["DAQMX_TIMEOUT_CODE", "NiDaqDigitizer"]

#: DAQmx error "Some or all of the samples requested have not yet been acquired"
#: (``DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE``): what a read returns on its timeout.
DAQMX_TIMEOUT_CODE: int = -200284
#: Device missing / not reachable: INVALID_DEVICE_ID, INVALID_DEVICE_ID_IN_LIST,
#: DEV_CANNOT_BE_ACCESSED (nidaqmx ``error_codes.DAQmxErrors``).
_DEVICE_UNREACHABLE_CODES = frozenset({-200220, -200207, -201003})

_FAKE_HINT = "without NI hardware use FakeDigitizer or the `fake-hw` bench"
_MODES = ("auto", "retriggerable", "counter-clock")
_TERMINAL_CONFIGS = ("RSE", "NRSE", "DIFF", "PSEUDO_DIFF", "DEFAULT")
_EDGES = ("rising", "falling")
_COUNTER_SETTLING = ("initial-delay", "samples")


def _import_nidaqmx() -> Any:
    """Import ``nidaqmx`` and the submodules used here; TransportError if unavailable."""
    try:
        import nidaqmx
        import nidaqmx.constants
        import nidaqmx.errors
        import nidaqmx.stream_readers
        import nidaqmx.system
    except ImportError as exc:
        raise TransportError(
            "the nidaqmx package is not installed: pip install lsi-toolkit[daq] "
            f"(it also needs NI's NI-DAQmx driver); {_FAKE_HINT}"
        ) from exc
    except Exception as exc:  # older packages may load the driver on import
        if type(exc).__name__ in ("DaqNotFoundError", "DaqNotSupportedError"):
            raise TransportError(_driver_missing_message(exc)) from exc
        raise
    return nidaqmx


def _driver_missing_message(exc: BaseException) -> str:
    return (
        f"the NI-DAQmx driver is not installed or not supported on this machine ({exc}); "
        "install NI-DAQmx from ni.com (on Linux: NI's ni-daqmx package), "
        f"or {_FAKE_HINT}"
    )


class NiDaqDigitizer(Digitizer):
    """An NI-DAQmx card as a triggered, per-pattern averaging digitizer.

    Parameters
    ----------
    device:
        NI-DAQmx device name as in NI MAX (``"Dev1"``).
    channel:
        Analog input channel (``"ai0"``).
    trigger_line:
        Terminal wired to the DMD's TRIG_OUT (``"PFI0"``); a name starting with ``/``
        is used as given, else ``/<device>/<line>``.
    mode:
        ``"auto"``, ``"retriggerable"`` (X Series) or ``"counter-clock"`` (M Series);
        see the module docstring.
    counter:
        Counter generating the sample clock in counter-clock mode (``"ctr0"``).
    terminal_config:
        AI terminal configuration: ``"RSE"``, ``"NRSE"``, ``"DIFF"``, ``"PSEUDO_DIFF"``
        or ``"DEFAULT"``.  The PDA100A2's BNC output is single-ended: RSE (or DIFF with
        AI- tied to the BNC shield).
    trigger_edge:
        ``"rising"`` or ``"falling"`` TRIG_OUT edge (the DLPC350 can invert TRIG_OUT).
    counter_settling:
        Counter-clock mode only: ``"initial-delay"`` (the counter waits the settling
        delay after every trigger) or ``"samples"`` (settling samples are clocked and
        dropped in software).
    max_sample_rate_hz:
        Highest sample rate :meth:`configure` accepts, Hz (the card's single-channel
        AI maximum, e.g. 2e6 for a USB-6361, 250e3 for a USB-6211); inf = let DAQmx
        check.
    resolution_bits:
        ADC resolution of the card, bits: 16 for the X and M Series cards named above
        (18 for e.g. an NI 6289); None = unknown.  User-declared (not read from the
        card); it sets :meth:`~lsi_hw.drivers.digitizers.base.Digitizer.step_v`, the
        quantization step calibration accounts for.
    """

    supports_raw = True
    default_resolution_bits = 16

    def __init__(
        self,
        device: str = "Dev1",
        channel: str = "ai0",
        trigger_line: str = "PFI0",
        mode: str = "auto",
        counter: str = "ctr0",
        terminal_config: str = "RSE",
        *,
        trigger_edge: str = "rising",
        counter_settling: str = "initial-delay",
        max_sample_rate_hz: float = math.inf,
        resolution_bits: int | None = 16,
    ) -> None:
        super().__init__()
        self.resolution_bits = resolution_bits  # ConfigError unless 1..32 or None
        for name, value in (("device", device), ("channel", channel),
                            ("trigger_line", trigger_line)):
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise ConfigError(f"{name}={value!r} must be a non-empty name without spaces")
        if mode not in _MODES:
            raise ConfigError(f"mode={mode!r} is not one of {', '.join(_MODES)}")
        if terminal_config not in _TERMINAL_CONFIGS:
            raise ConfigError(
                f"terminal_config={terminal_config!r} is not one of "
                f"{', '.join(_TERMINAL_CONFIGS)}"
            )
        if trigger_edge not in _EDGES:
            raise ConfigError(f"trigger_edge={trigger_edge!r} is not one of rising, falling")
        if counter_settling not in _COUNTER_SETTLING:
            raise ConfigError(
                f"counter_settling={counter_settling!r} is not one of "
                f"{', '.join(_COUNTER_SETTLING)}"
            )
        match = re.fullmatch(r"ctr(\d+)", counter, flags=re.IGNORECASE) \
            if isinstance(counter, str) else None
        if match is None:
            raise ConfigError(f"counter={counter!r} must name a counter like 'ctr0', 'ctr1'")
        rate = float(max_sample_rate_hz)
        if not rate > 0:
            raise ConfigError(f"max_sample_rate_hz={max_sample_rate_hz} must be > 0 Hz")
        self.device = device
        self.channel = channel
        self.trigger_line = trigger_line
        self.mode = mode
        self.counter = counter.lower()
        self._counter_number = int(match.group(1))
        self.terminal_config = terminal_config
        self.trigger_edge = trigger_edge
        self.counter_settling = counter_settling
        self.max_sample_rate_hz = rate
        self.device_id = f"NI-DAQmx {device}"
        self._nidaqmx: Any = None
        self._ai: Any = None
        self._co: Any = None
        self._reader: Any = None
        self._buffer = np.zeros(0)
        self._resolved_mode: str | None = None
        self._product: dict[str, str] = {}
        self._per_trigger = 0
        self._drop = 0
        self._trigger_terminal = ""

    # ------------------------------------------------------------------ helpers
    @property
    def resolved_mode(self) -> str | None:
        """``"retriggerable"`` or ``"counter-clock"`` once configured (auto resolved)."""
        return self._resolved_mode

    def terminal(self, line: str) -> str:
        """Full terminal name of ``line`` (``"PFI0"`` -> ``"/Dev1/PFI0"``)."""
        return line if line.startswith("/") else f"/{self.device}/{line}"

    @property
    def counter_output_terminal(self) -> str:
        """Internal output terminal of the clock counter, e.g. ``/Dev1/Ctr0InternalOutput``."""
        return f"/{self.device}/Ctr{self._counter_number}InternalOutput"

    def _translate(self, exc: BaseException, action: str) -> DeviceError | None:
        """Map an nidaqmx exception to our tree (None: not a DAQmx error, re-raise it)."""
        errors = getattr(self._nidaqmx, "errors", None)
        missing = tuple(
            cls for cls in (getattr(errors, "DaqNotFoundError", None),
                            getattr(errors, "DaqNotSupportedError", None))
            if isinstance(cls, type)
        )
        if missing and isinstance(exc, missing):
            return TransportError(_driver_missing_message(exc))
        daq_error = getattr(errors, "DaqError", None)
        if not (isinstance(daq_error, type) and isinstance(exc, daq_error)):
            return None
        code = getattr(exc, "error_code", None)
        if code == DAQMX_TIMEOUT_CODE:
            return DeviceTimeout(
                f"NI-DAQmx timed out trying to {action} (error {code}): {exc}; check the "
                f"DMD TRIG_OUT cable to {self._trigger_terminal or self.trigger_line}"
            )
        if code in _DEVICE_UNREACHABLE_CODES:
            return TransportError(
                f"NI-DAQmx cannot reach device {self.device!r} while trying to {action} "
                f"(error {code}): {exc}; check the name in NI MAX "
                "(nidaqmx.system.System.local().devices), the cable and the power"
            )
        return ProtocolError(f"NI-DAQmx refused to {action} (error {code}): {exc}")

    @contextlib.contextmanager
    def _daq(self, action: str) -> Iterator[None]:
        """Run DAQmx calls; translate their exceptions (original kept as __cause__)."""
        try:
            yield
        except LSIError:
            raise
        except Exception as exc:
            mapped = self._translate(exc, action)
            if mapped is None:
                raise
            raise mapped from exc

    def _resolve_mode(self, nd: Any) -> str:
        if self.mode != "auto":
            return self.mode
        with self._daq(f"read the product category of device {self.device!r}"):
            dev = nd.system.Device(self.device)
            category = dev.product_category
            product_type = dev.product_type
        name = getattr(category, "name", str(category))
        self._product = {"product_type": str(product_type), "product_category": name}
        self.device_id = f"NI {product_type} ({self.device})"
        return "retriggerable" if name == "X_SERIES_DAQ" else "counter-clock"

    # ------------------------------------------------------------------ Digitizer hooks
    def _do_configure(self, cfg: DigitizerConfig) -> None:
        nd = self._nidaqmx = _import_nidaqmx()
        self._close_tasks()
        mode = self._resolve_mode(nd)
        c = nd.constants
        term_cfg = getattr(c.TerminalConfiguration, self.terminal_config)
        edge = c.Edge.RISING if self.trigger_edge == "rising" else c.Edge.FALLING
        trig = self._trigger_terminal = self.terminal(cfg.trigger or self.trigger_line)
        software_settle = mode == "retriggerable" or self.counter_settling == "samples"
        self._drop = cfg.delay_samples if software_settle else 0
        per_trigger = self._per_trigger = self._drop + cfg.samples_per_reading
        total = cfg.n_readings * per_trigger
        physical = f"{self.device}/{self.channel}"
        with self._daq("create an AI task"):
            self._ai = nd.Task()
        ai = self._ai
        with self._daq(f"add AI voltage channel {physical} (±{cfg.range_v:g} V)"):
            ai.ai_channels.add_ai_voltage_chan(
                physical, terminal_config=term_cfg, min_val=-cfg.range_v, max_val=cfg.range_v
            )
        if mode == "retriggerable":
            with self._daq(f"configure the AI sample clock at {cfg.sample_rate_hz:g} Hz"):
                ai.timing.cfg_samp_clk_timing(
                    cfg.sample_rate_hz, sample_mode=c.AcquisitionType.FINITE,
                    samps_per_chan=per_trigger,
                )
            with self._daq(
                f"configure a retriggerable AI start trigger on {trig} (cards without "
                "retriggerable AI, e.g. M Series, need mode='counter-clock')"
            ):
                ai.triggers.start_trigger.cfg_dig_edge_start_trig(trig, trigger_edge=edge)
                ai.triggers.start_trigger.retriggerable = True
        else:
            counter = f"{self.device}/{self.counter}"
            with self._daq("create a counter output task"):
                self._co = nd.Task()
            co = self._co
            initial_delay = cfg.settling_delay_s if not software_settle else 0.0
            with self._daq(f"configure pulse train on {counter} at {cfg.sample_rate_hz:g} Hz"):
                chan = co.co_channels.add_co_pulse_chan_freq(
                    counter, idle_state=c.Level.LOW, initial_delay=initial_delay,
                    freq=cfg.sample_rate_hz, duty_cycle=0.5,
                )
            if not software_settle:
                with self._daq(
                    "apply the initial delay on every retrigger (CO.EnableInitialDelayOn"
                    "Retrigger); if this card does not support it, use "
                    "counter_settling='samples'"
                ):
                    chan.co_enable_initial_delay_on_retrigger = True
            with self._daq(f"configure {per_trigger} pulses per trigger on {counter}"):
                co.timing.cfg_implicit_timing(
                    sample_mode=c.AcquisitionType.FINITE, samps_per_chan=per_trigger
                )
            with self._daq(f"configure a retriggerable counter start trigger on {trig}"):
                co.triggers.start_trigger.cfg_dig_edge_start_trig(trig, trigger_edge=edge)
                co.triggers.start_trigger.retriggerable = True
            with self._daq(f"clock the AI task from {self.counter_output_terminal}"):
                ai.timing.cfg_samp_clk_timing(
                    cfg.sample_rate_hz, source=self.counter_output_terminal,
                    active_edge=c.Edge.RISING, sample_mode=c.AcquisitionType.CONTINUOUS,
                    samps_per_chan=total,
                )
        with self._daq(f"size the input buffer to {total} samples"):
            ai.in_stream.input_buf_size = total
            self._reader = nd.stream_readers.AnalogSingleChannelReader(ai.in_stream)
        self._buffer = np.zeros(total, dtype=np.float64)
        self._resolved_mode = mode

    def _do_start(self) -> None:
        with self._daq("start the acquisition"):
            self._ai.start()  # arm the AI task before its sample clock
            if self._co is not None:
                self._co.start()

    def _do_read_raw(self, timeout_s: float) -> np.ndarray:
        cfg = self._config
        assert cfg is not None
        n, per = cfg.n_readings, self._per_trigger
        total = n * per
        errors = self._nidaqmx.errors
        try:
            self._reader.read_many_sample(
                self._buffer, number_of_samples_per_channel=total, timeout=timeout_s
            )
        except errors.DaqError as exc:
            if getattr(exc, "error_code", None) != DAQMX_TIMEOUT_CODE:
                mapped = self._translate(exc, f"read {total} samples")
                assert mapped is not None
                raise mapped from exc
            got = int(getattr(exc, "samps_per_chan_read", 0) or 0)
            complete = min(got // per, n)
            arrived = min(math.ceil(got / per), n)
            self._set_partial(self._windows(self._buffer[: complete * per].reshape(complete, per)))
            raise DeviceTimeout(
                f"{arrived} of {n} triggers arrived within {timeout_s:g} s; check the DMD "
                f"TRIG_OUT cable to {self._trigger_terminal} and that the pattern sequence "
                f"was started ({complete} completed readings are kept: read_partial())"
            ) from exc
        except Exception as exc:
            if type(exc).__name__ in ("DaqNotFoundError", "DaqNotSupportedError"):
                raise TransportError(_driver_missing_message(exc)) from exc
            raise
        raw = self._windows(self._buffer.reshape(n, per))
        self._stop_tasks()  # all samples are in: disarm until the next start()
        return raw

    def _windows(self, per_trigger: np.ndarray) -> np.ndarray:
        """Drop the settling samples of each trigger's block: (k, samples_per_reading)."""
        return per_trigger[:, self._drop:].copy()

    def _stop_tasks(self) -> None:
        with self._daq("stop the acquisition"):
            if self._co is not None:
                self._co.stop()  # stop the clock first
            if self._ai is not None:
                self._ai.stop()

    def _do_stop(self) -> None:
        self._stop_tasks()

    def _close_tasks(self) -> None:
        """Close both tasks (each attempted); the first failure is raised afterwards."""
        tasks, self._co, self._ai, self._reader = (self._co, self._ai), None, None, None
        failure: BaseException | None = None
        for task in tasks:
            if task is None:
                continue
            try:
                with self._daq("close a DAQmx task"):
                    task.close()
            except DeviceError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _do_close(self) -> None:
        if self._nidaqmx is not None:
            self._close_tasks()

    def _do_settings(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "channel": self.channel,
            "trigger_line": self.trigger_line,
            "trigger_terminal": self._trigger_terminal or self.terminal(self.trigger_line),
            "trigger_edge": self.trigger_edge,
            "mode": self.mode,
            "resolved_mode": self._resolved_mode,
            "counter": self.counter,
            "counter_settling": self.counter_settling,
            "terminal_config": self.terminal_config,
            "samples_per_trigger": self._per_trigger,
            **self._product,
        }
