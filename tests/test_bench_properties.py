"""Typed, SI-unit bench and detector properties (what calibration reads).

Every bench has ``timing``, ``digitizer_lsb_v``, ``digitizer_range_v``, ``saturation_v``,
``gain_db``, ``gain_v_per_a`` and ``bandwidth_hz``: from the configuration on the
simulator, from the drivers on a hardware bench, and None where a bench cannot know.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import FrozenInstanceError, astuple
from typing import Any

import numpy as np
import pytest

from lsi_hw.benches.hardware import HardwareBench
from lsi_hw.drivers.digitizers import FakeDigitizer, NiDaqDigitizer, VisaScopeDigitizer
from lsi_hw.drivers.display import CallbackScene
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.pda100a2 import PDA100A2
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench, BenchTiming
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import AmplifierConfig, DigitizerConfig, SimBench, SimConfig, TimingConfig

PROPERTIES = ("timing", "digitizer_lsb_v", "digitizer_range_v", "saturation_v", "gain_db",
              "gain_v_per_a", "bandwidth_hz")


class Minimal(Bench):
    """A third-party bench that implements only measure and settings."""

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Any:
        raise NotImplementedError

    def _do_settings(self) -> dict[str, Any]:
        return {}


def test_a_bench_that_does_not_know_says_none():
    bench = Minimal()
    assert {name: getattr(bench, name) for name in PROPERTIES} == dict.fromkeys(PROPERTIES)


def test_bench_timing_is_validated_and_frozen():
    t = BenchTiming.from_us(235.0, 60.0, 150.0)
    assert astuple(t) == pytest.approx((235e-6, 60e-6, 150e-6))
    with pytest.raises(FrozenInstanceError):
        t.period_s = 1.0  # type: ignore[misc]
    for bad in ({"period_s": 0.0}, {"window_s": -1e-6}, {"settling_delay_s": math.nan},
                {"period_s": "fast"}):
        kwargs = {"period_s": 1e-3, "settling_delay_s": 0.0, "window_s": 1e-4, **bad}
        name = next(iter(bad))
        with pytest.raises(ConfigError, match=rf"BenchTiming\.{name}="):
            BenchTiming(**kwargs)
    assert BenchTiming(1e-3, 0.0, 1e-4).settling_delay_s == 0.0  # no delay is allowed


def test_simbench_properties_come_from_its_config():
    cfg = SimConfig(amplifier=AmplifierConfig(gain_db=50, load="50ohm"),
                    digitizer=DigitizerConfig(range_v=5.0, bits=12),
                    timing=TimingConfig(exposure_us=500.0, period_us=600.0,
                                        settling_delay_us=100.0, window_us=300.0))
    bench = SimBench(config=cfg)
    assert astuple(bench.timing) == pytest.approx((600e-6, 100e-6, 300e-6))
    assert bench.digitizer_lsb_v == 10.0 / 2**12 and bench.digitizer_range_v == 5.0
    assert bench.saturation_v == cfg.amplifier.saturation_v == 5.0
    assert bench.gain_db == 50.0 and bench.gain_v_per_a == cfg.amplifier.v_per_a
    assert bench.bandwidth_hz == cfg.amplifier.bandwidth_hz
    assert bench.detector.v_per_a == cfg.amplifier.v_per_a
    assert bench.detector.digitizer_lsb_v == bench.digitizer_lsb_v


def test_digitizer_resolution_and_step():
    fake = FakeDigitizer()
    assert fake.resolution_bits is None and fake.step_v(10.0) is None  # not quantized
    fake.resolution_bits = 16
    assert fake.step_v(10.0) == 20.0 / 2**16
    assert fake.step_v() is None  # no range configured yet
    fake.configure(n_readings=2, sample_rate_hz=1e6, settling_delay_s=0.0, window_s=1e-4,
                   range_v=2.0)
    assert fake.step_v() == 4.0 / 2**16
    assert fake.settings()["resolution_bits"] == 16
    for bad in (0, 33, 12.5, True, "16"):
        with pytest.raises(ConfigError, match=r"resolution_bits=.* 1 to 32"):
            fake.resolution_bits = bad
    assert NiDaqDigitizer().resolution_bits == 16  # NI X / M Series cards
    assert NiDaqDigitizer(resolution_bits=18).step_v(10.0) == 20.0 / 2**18
    assert VisaScopeDigitizer("USB0::1::INSTR").resolution_bits == 8
    assert VisaScopeDigitizer("USB0::1::INSTR", resolution_bits=None).step_v(1.0) is None
    with pytest.raises(ConfigError, match="resolution_bits"):
        NiDaqDigitizer(resolution_bits=0)


def test_pda100a2_reports_its_digitizer_step_and_timing_without_warning():
    digitizer = FakeDigitizer()
    digitizer.resolution_bits = 16
    pda = PDA100A2(digitizer, gain_db=70, load="50ohm")
    assert pda.digitizer_range_v == pda.range_v == 5.0  # smallest X Series range >= 5 V
    assert pda.digitizer_lsb_v == 10.0 / 2**16
    assert pda.settings()["digitizer_lsb_v"] == pda.digitizer_lsb_v
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 70 dB cannot settle: timing_for would warn
        timing = pda.reading_timing(235.0, 300.0)
    with pytest.warns(UserWarning):
        full = pda.timing_for(235.0, 300.0)
    assert timing == full.bench_timing()
    assert timing.period_s == pytest.approx(300e-6)
    assert PDA100A2(FakeDigitizer()).digitizer_lsb_v is None


def _hardware_bench(**kwargs: Any) -> HardwareBench:
    digitizer = FakeDigitizer()
    digitizer.resolution_bits = 16
    return HardwareBench(DLP4500(FakeDLPC350()), PDA100A2(digitizer, gain_db=60),
                         CallbackScene(lambda image: None), lock_name=None, **kwargs)


def test_hardware_bench_properties_come_from_the_drivers():
    with _hardware_bench() as bench:
        pda = bench.detector
        assert isinstance(pda, PDA100A2)
        assert bench.timing == pda.timing_for(235.0, 235.0).bench_timing()  # DLP minimum
        assert bench.digitizer_lsb_v == 20.0 / 2**16 and bench.digitizer_range_v == 10.0
        assert bench.saturation_v == 10.0 and bench.gain_db == 60.0
        assert bench.gain_v_per_a == 1.5e6 and bench.bandwidth_hz == 11e3
    with _hardware_bench(exposure_us=1000.0, period_us=1200.0) as slow:
        assert slow.pattern_timing_us() == (1000.0, 1200.0)
        assert slow.timing is not None and slow.timing.period_s == pytest.approx(1.2e-3)
        assert slow.timing.window_s > 900e-6  # the driver fills the longer exposure
