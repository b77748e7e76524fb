"""Digitizers: the base contract (via FakeDigitizer), NI-DAQmx against an injected fake
``nidaqmx`` package (no NI driver needed), and the VISA scope through pyvisa-sim."""

from __future__ import annotations

import ast
import enum
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsi_hw.drivers.digitizers import (
    SCOPE_SIM_YAML,
    FakeDigitizer,
    NiDaqDigitizer,
    VisaScopeDigitizer,
)
from lsi_hw.drivers.digitizers.nidaq import DAQMX_TIMEOUT_CODE
from lsi_hw.drivers.digitizers.visa import SIM_RESOURCE, parse_ieee_ascii_block
from lsi_hw.errors import ConfigError, DeviceTimeout, ProtocolError, TransportError

ROOT = Path(__file__).resolve().parents[1]
DIGITIZERS = ROOT / "lsi_hw" / "drivers" / "digitizers"

GOOD = dict(n_readings=4, sample_rate_hz=1e6, settling_delay_s=9e-6, window_s=224e-6,
            range_v=10.0, period_s=235e-6)


def configure(dig, **changes: Any):
    return dig.configure(**{**GOOD, **changes})


# --------------------------------------------------------------------------- base / fake
def test_vendor_packages_never_imported_at_module_level():
    for path in [*DIGITIZERS.glob("*.py"), ROOT / "lsi_hw" / "drivers" / "pda100a2.py"]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & {"nidaqmx", "pyvisa"}, path
            assert not any(n.startswith("lsi_hw.sim") for n in names), path


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_readings": 0}, "n_readings=0 must be >= 1"),
        ({"n_readings": 2.5}, "integer"),
        ({"n_readings": True}, "integer"),
        ({"sample_rate_hz": 0}, "sample_rate_hz"),
        ({"sample_rate_hz": float("nan")}, "sample_rate_hz"),
        ({"sample_rate_hz": 5e6}, "maximum 2e\\+06 Hz"),
        ({"settling_delay_s": -1e-6}, "settling_delay_s"),
        ({"window_s": 1e-7}, "need >= 1 sample"),
        ({"range_v": 3.0}, "allowed: ±0.1, ±0.2, ±0.5, ±1, ±2, ±5, ±10 V"),
        ({"period_s": 100e-6}, "does not fit in the pattern period"),
        ({"trigger": ""}, "trigger"),
    ],
)
def test_configure_rejects_bad_values_before_touching(changes, match):
    fake = FakeDigitizer()
    with pytest.raises(ConfigError, match=match):
        configure(fake, **changes)
    assert fake.calls == [] and fake.config is None


def test_derived_sample_counts_and_life_cycle_errors():
    fake = FakeDigitizer()
    with pytest.raises(ConfigError, match="not configured"):
        fake.start()
    cfg = configure(fake, window_s=100.4e-6, settling_delay_s=10.2e-6)
    assert (cfg.samples_per_reading, cfg.delay_samples) == (100, 10)
    assert (fake.samples_per_reading, fake.delay_samples, fake.n_readings) == (100, 10, 4)
    with pytest.raises(ConfigError, match="call start"):
        fake.read(1.0)
    fake.start()
    with pytest.raises(ConfigError, match="timeout_s"):
        fake.read(0)
    assert [c[0] for c in fake.calls] == ["configure", "start"]


def test_fake_averages_the_source_and_reports_settings():
    fake = FakeDigitizer(lambda n: np.arange(n, dtype=float) * 0.5, device_id="bench-fake")
    configure(fake, n_readings=6)
    fake.start()
    np.testing.assert_allclose(fake.read(1.0), [0, 0.5, 1, 1.5, 2, 2.5])
    fake.start()
    raw = fake.read_raw(1.0)
    assert raw.shape == (6, 224) and raw.dtype == np.float64
    s = fake.settings()
    for key in ("sample_rate_hz", "window_s", "settling_delay_s", "range_v", "trigger",
                "device_id", "samples_per_reading", "delay_samples"):
        assert key in s
    assert s["device_id"] == "bench-fake" and s["sample_rate_hz"] == 1e6


def test_fake_noise_is_per_sample_and_averaged():
    sigma, n = 0.01, 2000
    fake = FakeDigitizer(lambda k: np.full(k, 1.0), noise_v_rms=sigma, seed=3)
    configure(fake, n_readings=n, window_s=100e-6, period_s=None)
    fake.start()
    values = fake.read(1.0)
    assert abs(values.mean() - 1.0) < 5 * sigma / np.sqrt(100 * n)
    assert values.std() == pytest.approx(sigma / np.sqrt(100), rel=0.1)
    again = FakeDigitizer(lambda k: np.full(k, 1.0), noise_v_rms=sigma, seed=3)
    configure(again, n_readings=n, window_s=100e-6, period_s=None)
    again.start()
    np.testing.assert_array_equal(again.read(1.0), values)  # seeded: reproducible


def test_fake_clips_every_sample_at_the_range_or_clip_v():
    fake = FakeDigitizer(lambda n: np.array([12.0, -3.0, 4.0]))
    configure(fake, n_readings=3, range_v=5.0)
    fake.start()
    np.testing.assert_allclose(fake.read(1.0), [5.0, -3.0, 4.0])
    tight = FakeDigitizer(lambda n: np.array([12.0, -3.0, 4.0]), clip_v=3.5)
    configure(tight, n_readings=3)
    tight.start()
    np.testing.assert_allclose(tight.read(1.0), [3.5, -3.0, 3.5])


def test_missing_triggers_time_out_quickly_and_keep_the_completed_readings():
    fake = FakeDigitizer(lambda n: np.arange(1.0, n + 1), missing_triggers=3)
    configure(fake, n_readings=8)
    fake.start()
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"5 of 8 triggers arrived.*TRIG_OUT cable to PFI0") \
            as info:
        fake.read(timeout_s=0.05)
    assert 0.04 <= time.monotonic() - t0 < 1.0
    np.testing.assert_allclose(fake.read_partial(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(info.value.partial, [1, 2, 3, 4, 5])
    assert fake.read_partial_raw().shape == (5, 224)
    assert fake.is_running  # still armed: stop() aborts
    fake.stop()
    assert not fake.is_running and fake.calls[-1][0] == "stop"


def test_context_manager_closes_and_closed_digitizer_refuses_work():
    with FakeDigitizer() as fake:
        configure(fake)
        fake.start()
    assert [c[0] for c in fake.calls][-2:] == ["stop", "close"]
    with pytest.raises(ConfigError, match="closed"):
        configure(fake)
    fake.close()  # idempotent


# --------------------------------------------------------------------------- NI-DAQmx
class FakeNi:
    """A fake ``nidaqmx`` package: every call and attribute assignment is logged."""

    def __init__(self, *, category: str = "X_SERIES_DAQ", product_type: str = "USB-6361"):
        self.log: list[tuple] = []
        self.raw: np.ndarray | None = None  # what read_many_sample delivers
        self.read_error: Exception | None = None
        self.task_error: Exception | None = None
        log = self.log
        fake = self

        root = types.ModuleType("nidaqmx")
        constants = types.ModuleType("nidaqmx.constants")
        errors = types.ModuleType("nidaqmx.errors")
        readers = types.ModuleType("nidaqmx.stream_readers")
        system = types.ModuleType("nidaqmx.system")
        constants.AcquisitionType = enum.Enum("AcquisitionType", "FINITE CONTINUOUS")
        constants.Edge = enum.Enum("Edge", "RISING FALLING")
        constants.Level = enum.Enum("Level", "HIGH LOW")
        constants.TerminalConfiguration = enum.Enum(
            "TerminalConfiguration", "RSE NRSE DIFF PSEUDO_DIFF DEFAULT")
        constants.ProductCategory = enum.Enum("ProductCategory", "X_SERIES_DAQ M_SERIES_DAQ")

        class Error(Exception):
            pass

        class DaqError(Error):
            def __init__(self, message, error_code, task_name=""):
                super().__init__(f"{message} Status Code: {error_code}")
                self.error_code = int(error_code)

        class DaqReadError(DaqError):
            def __init__(self, message, error_code, samps_per_chan_read, task_name=""):
                super().__init__(message, error_code, task_name)
                self.samps_per_chan_read = samps_per_chan_read

        class DaqNotFoundError(Error):
            pass

        class DaqNotSupportedError(Error):
            pass

        for cls in (DaqError, DaqReadError, DaqNotFoundError, DaqNotSupportedError):
            setattr(errors, cls.__name__, cls)

        class Recorder:
            def __init__(self, path: str):
                object.__setattr__(self, "_path", path)

            def __getattr__(self, name: str):
                child = Recorder(f"{self._path}.{name}")
                object.__setattr__(self, name, child)
                return child

            def __setattr__(self, name: str, value: Any) -> None:
                log.append((f"{self._path}.{name}", "=", value))

            def __call__(self, *args: Any, **kwargs: Any):
                log.append((self._path, args, kwargs))
                return Recorder(f"{self._path}()")

        def task_factory():
            if fake.task_error is not None:
                raise fake.task_error
            index = sum(1 for entry in log if entry[0] == "Task")
            log.append(("Task", index))
            return Recorder(f"task{index}")

        class AnalogSingleChannelReader:
            def __init__(self, in_stream):
                log.append(("AnalogSingleChannelReader", in_stream._path))

            def read_many_sample(self, data, number_of_samples_per_channel=-1, timeout=10.0):
                log.append(("read_many_sample", number_of_samples_per_channel, timeout))
                n = number_of_samples_per_channel
                if fake.read_error is not None:
                    got = getattr(fake.read_error, "samps_per_chan_read", 0)
                    if got:
                        data[:got] = fake.raw[:got]
                    raise fake.read_error
                data[:n] = fake.raw[:n]
                return n

        class Device:
            def __init__(self, name):
                log.append(("system.Device", name))
                self.product_category = constants.ProductCategory[category]
                self.product_type = product_type

        root.Task = task_factory
        readers.AnalogSingleChannelReader = AnalogSingleChannelReader
        system.Device = Device
        root.constants, root.errors, root.stream_readers, root.system = (
            constants, errors, readers, system)
        self.modules = {"nidaqmx": root, "nidaqmx.constants": constants,
                        "nidaqmx.errors": errors, "nidaqmx.stream_readers": readers,
                        "nidaqmx.system": system}
        self.c, self.errors = constants, errors

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeNi:
        for name, module in self.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return self


def test_nidaq_retriggerable_configuration_sequence(monkeypatch):
    ni = FakeNi().install(monkeypatch)
    c = ni.c
    dig = NiDaqDigitizer(mode="auto")
    configure(dig)
    assert dig.resolved_mode == "retriggerable"
    assert ni.log == [
        ("system.Device", "Dev1"),
        ("Task", 0),
        ("task0.ai_channels.add_ai_voltage_chan", ("Dev1/ai0",),
         {"terminal_config": c.TerminalConfiguration.RSE, "min_val": -10.0, "max_val": 10.0}),
        ("task0.timing.cfg_samp_clk_timing", (1e6,),
         {"sample_mode": c.AcquisitionType.FINITE, "samps_per_chan": 233}),
        ("task0.triggers.start_trigger.cfg_dig_edge_start_trig", ("/Dev1/PFI0",),
         {"trigger_edge": c.Edge.RISING}),
        ("task0.triggers.start_trigger.retriggerable", "=", True),
        ("task0.in_stream.input_buf_size", "=", 4 * 233),
        ("AnalogSingleChannelReader", "task0.in_stream"),
    ]
    s = dig.settings()
    assert s["product_type"] == "USB-6361" and s["resolved_mode"] == "retriggerable"
    assert s["trigger_terminal"] == "/Dev1/PFI0" and "USB-6361" in s["device_id"]


def test_nidaq_retriggerable_drops_settling_samples_and_averages(monkeypatch):
    ni = FakeNi().install(monkeypatch)
    dig = NiDaqDigitizer(mode="retriggerable", trigger_line="PFI1", trigger_edge="falling")
    configure(dig, n_readings=3, settling_delay_s=2e-6, window_s=4e-6, period_s=None)
    # per trigger: 2 settling samples (garbage 99) then 4 window samples
    blocks = [[99, 99, 1, 2, 3, 4], [99, 99, 5, 5, 5, 5], [-99, -99, -1, -1, -3, -3]]
    ni.raw = np.array(blocks, dtype=float).ravel()
    dig.start()
    np.testing.assert_allclose(dig.read(timeout_s=0.5), [2.5, 5.0, -2.0])
    assert ("read_many_sample", 18, 0.5) in ni.log
    assert ("task0.triggers.start_trigger.cfg_dig_edge_start_trig", ("/Dev1/PFI1",),
            {"trigger_edge": ni.c.Edge.FALLING}) in ni.log
    names = [entry[0] for entry in ni.log]
    assert names.index("task0.start") < names.index("read_many_sample") < names.index(
        "task0.stop")  # stopped once all samples are in
    dig.start()
    np.testing.assert_allclose(dig.read_raw(1.0), np.array(blocks, dtype=float)[:, 2:])
    dig.close()
    assert ni.log[-1] == ("task0.close", (), {})


def test_nidaq_counter_clock_configuration_sequence(monkeypatch):
    ni = FakeNi(category="M_SERIES_DAQ", product_type="USB-6211").install(monkeypatch)
    c = ni.c
    dig = NiDaqDigitizer(mode="auto", counter="ctr1", terminal_config="DIFF")
    configure(dig, range_v=5.0)
    assert dig.resolved_mode == "counter-clock"
    chan = "task1.co_channels.add_co_pulse_chan_freq()"
    assert ni.log == [
        ("system.Device", "Dev1"),
        ("Task", 0),
        ("task0.ai_channels.add_ai_voltage_chan", ("Dev1/ai0",),
         {"terminal_config": c.TerminalConfiguration.DIFF, "min_val": -5.0, "max_val": 5.0}),
        ("Task", 1),
        ("task1.co_channels.add_co_pulse_chan_freq", ("Dev1/ctr1",),
         {"idle_state": c.Level.LOW, "initial_delay": 9e-6, "freq": 1e6, "duty_cycle": 0.5}),
        (f"{chan}.co_enable_initial_delay_on_retrigger", "=", True),
        ("task1.timing.cfg_implicit_timing", (),
         {"sample_mode": c.AcquisitionType.FINITE, "samps_per_chan": 224}),
        ("task1.triggers.start_trigger.cfg_dig_edge_start_trig", ("/Dev1/PFI0",),
         {"trigger_edge": c.Edge.RISING}),
        ("task1.triggers.start_trigger.retriggerable", "=", True),
        ("task0.timing.cfg_samp_clk_timing", (1e6,),
         {"source": "/Dev1/Ctr1InternalOutput", "active_edge": c.Edge.RISING,
          "sample_mode": c.AcquisitionType.CONTINUOUS, "samps_per_chan": 4 * 224}),
        ("task0.in_stream.input_buf_size", "=", 4 * 224),
        ("AnalogSingleChannelReader", "task0.in_stream"),
    ]
    ni.raw = np.repeat([1.0, 2.0, 3.0, 4.0], 224)
    del ni.log[:]
    dig.start()
    np.testing.assert_allclose(dig.read(2.0), [1, 2, 3, 4])  # no samples to drop
    assert [e[0] for e in ni.log] == ["task0.start", "task1.start", "read_many_sample",
                                      "task1.stop", "task0.stop"]  # AI armed before clock


def test_nidaq_counter_clock_software_settling_variant(monkeypatch):
    ni = FakeNi().install(monkeypatch)
    dig = NiDaqDigitizer(mode="counter-clock", counter_settling="samples")
    configure(dig, n_readings=2, settling_delay_s=1e-6, window_s=2e-6, period_s=None)
    calls = {e[0]: e for e in ni.log}
    assert "system.Device" not in calls  # explicit mode: no product query
    assert calls["task1.co_channels.add_co_pulse_chan_freq"][2]["initial_delay"] == 0.0
    assert calls["task1.timing.cfg_implicit_timing"][2]["samps_per_chan"] == 3
    assert not any("initial_delay_on_retrigger" in e[0] for e in ni.log)
    ni.raw = np.array([9.0, 1.0, 3.0, 9.0, 2.0, 2.0])
    dig.start()
    np.testing.assert_allclose(dig.read(1.0), [2.0, 2.0])


def test_nidaq_timeout_maps_to_device_timeout_and_keeps_partial(monkeypatch):
    ni = FakeNi().install(monkeypatch)
    dig = NiDaqDigitizer(mode="retriggerable")
    configure(dig, n_readings=4, settling_delay_s=1e-6, window_s=2e-6, period_s=None)
    ni.raw = np.array([0, 1, 1, 0, 2, 4, 0, 7, 7, 0, 8, 8], dtype=float)
    # 7 samples = 2 complete triggers + 1 started one
    ni.read_error = ni.errors.DaqReadError("Some or all of the samples requested have not "
                                           "yet been acquired.", DAQMX_TIMEOUT_CODE, 7)
    dig.start()
    with pytest.raises(DeviceTimeout, match=r"3 of 4 triggers arrived.*cable to /Dev1/PFI0") \
            as info:
        dig.read(timeout_s=0.01)
    assert isinstance(info.value.__cause__, ni.errors.DaqReadError)
    np.testing.assert_allclose(dig.read_partial(), [1.0, 3.0])
    np.testing.assert_allclose(info.value.partial, [1.0, 3.0])


@pytest.mark.parametrize(
    ("code", "kind", "match"),
    [(-200220, TransportError, "cannot reach device 'Dev1'"),
     (-200077, ProtocolError, "refused to read")],
)
def test_nidaq_other_errors_are_wrapped_with_cause(monkeypatch, code, kind, match):
    ni = FakeNi().install(monkeypatch)
    dig = NiDaqDigitizer(mode="retriggerable")
    configure(dig, period_s=None)
    ni.read_error = ni.errors.DaqError("boom", code)
    dig.start()
    with pytest.raises(kind, match=match) as info:
        dig.read(1.0)
    assert info.value.__cause__ is ni.read_error


def test_nidaq_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nidaqmx", None)  # import fails like an absent package
    dig = NiDaqDigitizer()  # constructing needs nothing
    with pytest.raises(TransportError, match=r"pip install lsi-toolkit\[daq\]") as info:
        configure(dig)
    assert isinstance(info.value.__cause__, ImportError)


def test_nidaq_missing_driver_points_to_the_fake(monkeypatch):
    ni = FakeNi().install(monkeypatch)
    ni.task_error = ni.errors.DaqNotFoundError("Could not find an installation of NI-DAQmx.")
    with pytest.raises(TransportError, match=r"NI-DAQmx driver is not installed.*FakeDigitizer") \
            as info:
        configure(NiDaqDigitizer(mode="retriggerable"))
    assert info.value.__cause__ is ni.task_error


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "fast"}, "mode='fast'"), ({"terminal_config": "SE"}, "terminal_config"),
     ({"counter": "timer0"}, "counter"), ({"trigger_edge": "up"}, "trigger_edge"),
     ({"device": ""}, "device"), ({"counter_settling": "x"}, "counter_settling")],
)
def test_nidaq_constructor_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        NiDaqDigitizer(**kwargs)


# --------------------------------------------------------------------------- VISA scope
SIM_TIMING = dict(n_readings=4, sample_rate_hz=1e5, settling_delay_s=100e-6, window_s=700e-6,
                  range_v=5.0, period_s=1e-3)


def sim_scope(number: int = 1, **kwargs: Any) -> VisaScopeDigitizer:
    pytest.importorskip("pyvisa_sim")
    resource = SIM_RESOURCE.replace("SIM0001", f"SIM000{number}")
    return VisaScopeDigitizer(resource, backend=f"{SCOPE_SIM_YAML}@sim", **kwargs)


def test_visa_sim_capture_recovers_the_stepped_levels():
    with sim_scope() as scope:
        scope.configure(**SIM_TIMING)
        scope.start()
        np.testing.assert_allclose(scope.read(timeout_s=2.0), [1.0, 2.5, 0.5, 4.0], atol=1e-12)
        scope.start()
        raw = scope.read_raw(2.0)
        assert raw.shape == (4, 70)
        assert scope.settings()["idn"].startswith("LSI-SIM,SCOPE-SIM")
    sent = scope.sent
    assert sent[0] == "*IDN?" and ":TRIG:SWE NORM" in sent and ":TRIG:EDGE:SOUR EXT" in sent
    assert ":TIM:SCAL 4.080000E-04" in sent and ":CHAN1:RANG 1.000000E+01" in sent
    assert sent.index(":SING") < sent.index(":OPER:COND?") < sent.index(":WAV:DATA?")


@pytest.mark.parametrize(("delay_s", "window_s"), [(90e-6, 700e-6), (110e-6, 700e-6),
                                                   (100e-6, 710e-6)])
def test_visa_sim_segmentation_is_sample_exact(delay_s, window_s):
    """One sample too early or too late changes the readings: segmentation is checked."""
    with sim_scope() as scope:
        scope.configure(**{**SIM_TIMING, "settling_delay_s": delay_s, "window_s": window_s})
        scope.start()
        values = scope.read(2.0)
    assert not np.allclose(values, [1.0, 2.5, 0.5, 4.0], atol=1e-4)


def test_visa_sim_byte_format_via_binary_block():
    with sim_scope(3, waveform_format="byte") as scope:
        scope.configure(**SIM_TIMING)
        scope.start()
        np.testing.assert_allclose(scope.read(2.0), [1.0, 2.5, 0.5, 4.0], atol=1e-12)
    assert ":WAV:FORM BYTE" in scope.sent


def test_visa_sim_missing_trigger_times_out_without_hanging():
    with sim_scope(2, poll_interval_s=0.005) as scope:
        scope.configure(**SIM_TIMING)
        scope.start()
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout, match=r"0 of 4 triggers arrived.*TRIG_OUT cable to "
                                                r"the scope's EXT input") as info:
            scope.read(timeout_s=0.05)
        assert time.monotonic() - t0 < 2.0
        assert info.value.partial.size == 0


def test_visa_sim_refused_setting_is_a_protocol_error():
    with sim_scope() as scope, pytest.raises(ProtocolError, match="-113"):
        scope.configure(**{**SIM_TIMING, "range_v": 25.0})  # 50 V full scale > sim max


def test_visa_needs_period_and_validates_before_opening():
    scope = VisaScopeDigitizer("USB0::1::2::3::INSTR", backend="@sim")
    with pytest.raises(ConfigError, match="needs period_s"):
        scope.configure(**{**SIM_TIMING, "period_s": None})
    assert scope.sent == [] and scope._inst is None
    with pytest.raises(ConfigError, match="waveform_format"):
        VisaScopeDigitizer("USB0::1::2::3::INSTR", waveform_format="float")


def test_visa_silent_resource_and_missing_package_are_transport_errors(monkeypatch):
    silent = sim_scope(visa_timeout_s=0.05)
    silent.resource = "USB0::0x1::0x2::NOPE::0::INSTR"  # pyvisa-sim opens it, never answers
    with pytest.raises(TransportError, match="no instrument answered"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyvisa: "read string doesn't end with termination"
        silent.configure(**SIM_TIMING)
    silent.close()
    monkeypatch.setitem(sys.modules, "pyvisa", None)
    with pytest.raises(TransportError, match=r"pip install lsi-toolkit\[visa\]"):
        VisaScopeDigitizer("USB0::1::2::3::INSTR").configure(**SIM_TIMING)


def test_visa_io_errors_are_mapped_with_cause():
    pyvisa = pytest.importorskip("pyvisa")
    code = pyvisa.constants.StatusCode
    scope = sim_scope()
    scope.configure(**SIM_TIMING)

    class Broken:
        def __init__(self, status):
            self.error = pyvisa.errors.VisaIOError(status)

        def write(self, message):
            raise self.error

        def close(self):
            pass

    real = scope._inst
    for status, kind in ((code.error_timeout, DeviceTimeout),
                         (code.error_connection_lost, TransportError)):
        scope._inst = Broken(status)
        with pytest.raises(kind, match=":SING") as info:
            scope.start()
        assert info.value.__cause__ is scope._inst.error
    scope._inst = real
    scope.close()


def test_parse_ieee_ascii_block():
    np.testing.assert_allclose(parse_ieee_ascii_block("#212 1.0,-2.5e-1\n"), [1.0, -0.25])
    np.testing.assert_allclose(parse_ieee_ascii_block("3.0,4"), [3.0, 4.0])
    with pytest.raises(ProtocolError):
        parse_ieee_ascii_block("#2xx1,2")
    with pytest.raises(ProtocolError):
        parse_ieee_ascii_block("1.0,volts")
