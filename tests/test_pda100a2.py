"""PDA100A2 detector: gain declaration, timing derivation, saturation, snapshots, errors."""

from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsi_hw.drivers.digitizers import FakeDigitizer
from lsi_hw.drivers.pda100a2 import PDA100A2, SaturationWarning, SettlingWarning
from lsi_hw.errors import ConfigError, DeviceTimeout
from lsi_hw.interfaces import Detector
from lsi_hw.specs import PDA100A2_GAINS

DMD_MIN_EXPOSURE_US = 235.0


def quiet_arm(pda: PDA100A2, n: int, exposure_us: float, period_us: float | None = None):
    """arm() asserting that no warning at all is emitted."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pda.arm(n, exposure_us=exposure_us, period_us=period_us or exposure_us)


@pytest.mark.parametrize("gain", [45, 80, -10, "40", 40.5, None])
def test_bad_gain_is_rejected_naming_the_steps(gain):
    fake = FakeDigitizer()
    with pytest.raises(ConfigError, match="allowed: 0, 10, 20, 30, 40, 50, 60, 70 dB"):
        PDA100A2(fake, gain_db=gain)
    assert fake.calls == []


def test_bad_load_rate_and_digitizer_are_rejected_before_touching():
    fake = FakeDigitizer()
    with pytest.raises(ConfigError, match="load='1Mohm' is not one of hi-z, 50ohm"):
        PDA100A2(fake, load="1Mohm")
    with pytest.raises(ConfigError, match="exceeds the digitizer's maximum"):
        PDA100A2(fake, sample_rate_hz=10e6)
    with pytest.raises(ConfigError, match="settling_time_constants"):
        PDA100A2(fake, settling_time_constants=-1)
    with pytest.raises(ConfigError, match="must be a Digitizer"):
        PDA100A2(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="largest range ±5 V is below the amplifier's 10 V"):
        PDA100A2(FakeDigitizer(ranges_v=(1.0, 5.0)))
    assert fake.calls == []


@pytest.mark.parametrize(
    ("n", "exposure_us", "period_us", "match"),
    [(0, 235, 235, "n_readings"), (4, 235, 200, "exposure <= period"),
     (4, 0, 235, "exposure"), (4, 2.5, 2.5, "holds 0 samples")],
)
def test_bad_timing_is_rejected_before_the_digitizer_is_touched(n, exposure_us, period_us, match):
    fake = FakeDigitizer()
    pda = PDA100A2(fake)
    with pytest.raises(ConfigError, match=match):
        pda.arm(n, exposure_us=exposure_us, period_us=period_us)
    assert fake.calls == []


def test_arm_at_40_db_settles_within_the_shortest_exposure():
    fake = FakeDigitizer()
    pda = PDA100A2(fake, gain_db=40)
    assert isinstance(pda, Detector)
    quiet_arm(pda, 16, DMD_MIN_EXPOSURE_US)
    t = pda.timing
    assert t is not None and t.settled
    assert t.tau_s == pytest.approx(1 / (2 * math.pi * 90e3))
    assert t.delay_samples == math.ceil(5 * t.tau_s * 1e6) == 9  # 5 tau = 8.84 us
    assert t.samples_per_reading == 235 - 2 - 9  # rest of the exposure minus 2 us margin
    assert t.residual_fraction <= math.exp(-5)
    name, cfg = fake.calls[0]
    assert name == "configure" and fake.calls[1][0] == "start"
    assert cfg["n_readings"] == 16 and cfg["range_v"] == 10.0
    assert cfg["settling_delay_s"] == pytest.approx(9e-6)
    assert cfg["window_s"] == pytest.approx(224e-6) and cfg["samples_per_reading"] == 224
    assert cfg["period_s"] == pytest.approx(235e-6)


def test_arm_at_70_db_warns_that_settling_is_incomplete():
    fake = FakeDigitizer()
    pda40, pda70 = PDA100A2(FakeDigitizer(), gain_db=40), PDA100A2(fake, gain_db=70)
    quiet_arm(pda40, 4, DMD_MIN_EXPOSURE_US)
    with pytest.warns(SettlingWarning, match=r"70 dB.*3000 Hz.*235 us exposure"):
        pda70.arm(4, exposure_us=DMD_MIN_EXPOSURE_US, period_us=DMD_MIN_EXPOSURE_US)
    t40, t70 = pda40.timing, pda70.timing
    assert t40 is not None and t70 is not None
    assert t70.settling_delay_s > 10 * t40.settling_delay_s  # low bandwidth: longer delay
    assert not t70.settled and t70.settling_time_constants < 5
    assert t70.residual_fraction == pytest.approx(math.exp(-t70.settling_delay_s / t70.tau_s))
    assert t70.settling_delay_s + t70.window_s <= 235e-6 - 2e-6 + 1e-12  # still fits
    assert t70.samples_per_reading >= 0.2 * 233  # the window keeps its minimum share
    assert fake.calls[0][1]["settling_delay_s"] == pytest.approx(t70.settling_delay_s)
    quiet_arm(PDA100A2(FakeDigitizer(), gain_db=70), 4, 2000.0)  # long exposure: settles


@given(
    gain=st.sampled_from(sorted(PDA100A2_GAINS)),
    exposure_us=st.floats(10.0, 20000.0),
    extra_period_us=st.floats(0.0, 1000.0),
    k=st.floats(0.0, 10.0),
)
def test_timing_always_fits_inside_the_exposure(gain, exposure_us, extra_period_us, k):
    pda = PDA100A2(FakeDigitizer(), gain_db=gain, settling_time_constants=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SettlingWarning)
        t = pda.timing_for(exposure_us, exposure_us + extra_period_us)
    assert t.samples_per_reading >= 1 and t.delay_samples >= 0
    assert (t.delay_samples + t.samples_per_reading) / 1e6 <= exposure_us * 1e-6 - 2e-6 + 1e-12
    if t.settled:
        assert t.settling_delay_s >= k * t.tau_s - 1e-12


def test_fifty_ohm_load_halves_gain_and_swing_and_picks_the_5v_range():
    fake = FakeDigitizer()
    pda = PDA100A2(fake, gain_db=40, load="50ohm")
    assert pda.v_per_a == pytest.approx(0.5 * 1.51e5) and pda.saturation_v == 5.0
    assert pda.range_v == 5.0
    quiet_arm(pda, 2, 1000.0)
    assert fake.calls[0][1]["range_v"] == 5.0


def test_read_returns_volts_and_warns_on_saturation():
    values = np.array([1.0, 9.9, 12.0, 5.0, -0.004])
    pda = PDA100A2(FakeDigitizer(lambda n: values), gain_db=30)
    quiet_arm(pda, 5, 500.0)
    with pytest.warns(SaturationWarning, match=r"2 of 5 readings.*10 V into hi-z.*30 dB"):
        out = pda.read(timeout_s=1.0)
    np.testing.assert_allclose(out, [1.0, 9.9, 10.0, 5.0, -0.004])  # 12 V clipped by the ADC
    assert out.dtype == np.float64
    assert pda.settings()["last_read_saturated"] == 2
    calm = PDA100A2(FakeDigitizer(lambda n: np.full(n, 3.0)))
    quiet_arm(calm, 3, 500.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(calm.read(1.0), [3.0, 3.0, 3.0])


def test_saturation_also_counts_readings_at_a_smaller_digitizer_range():
    pda = PDA100A2(FakeDigitizer(lambda n: np.array([0.5, 1.5])), range_v=1.0)
    quiet_arm(pda, 2, 500.0)
    with pytest.warns(SaturationWarning, match=r"1 of 2 readings.*±1 V"):
        pda.read(1.0)


def test_trigger_never_arrives_times_out_without_hanging():
    fake = FakeDigitizer(lambda n: np.full(n, 2.0), missing_triggers=8)
    pda = PDA100A2(fake)
    quiet_arm(pda, 8, DMD_MIN_EXPOSURE_US)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"0 of 8 triggers arrived.*TRIG_OUT cable to PFI0"):
        pda.read(timeout_s=0.05)
    assert time.monotonic() - t0 < 1.0
    assert pda.read_partial().size == 0


def test_partial_readings_are_kept_after_a_timeout():
    pda = PDA100A2(FakeDigitizer(lambda n: np.arange(n) * 0.1, missing_triggers=2))
    quiet_arm(pda, 6, DMD_MIN_EXPOSURE_US)
    with pytest.raises(DeviceTimeout, match="4 of 6") as info:
        pda.read(timeout_s=0.02)
    np.testing.assert_allclose(pda.read_partial(), [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(info.value.partial, [0.0, 0.1, 0.2, 0.3])


def test_settings_snapshot_records_the_declared_gain_and_the_digitizer():
    pda = PDA100A2(FakeDigitizer(device_id="fake-6361"), gain_db=60, load="hi-z")
    quiet_arm(pda, 3, 1000.0, 1200.0)
    s = pda.settings()
    assert s["gain_db"] == 60 and "user-declared" in s["gain_source"]
    assert s["v_per_a"] == 1.5e6 and s["bandwidth_hz"] == 11e3 and s["load"] == "hi-z"
    assert s["saturation_v"] == 10.0 and s["table_confirmed"] is False
    assert s["noise_confirmed"] is False
    assert s["timing"]["period_s"] == pytest.approx(1.2e-3) and s["timing"]["settled"]
    assert s["digitizer"]["device_id"] == "fake-6361"
    assert s["digitizer"]["samples_per_reading"] == s["timing"]["samples_per_reading"]
    json.dumps(s)  # snapshots are JSON-serialisable
    assert pda.gain_db == 60.0


def test_to_photocurrent_subtracts_dark_and_divides_by_transimpedance():
    pda = PDA100A2(FakeDigitizer(), gain_db=40)
    np.testing.assert_allclose(pda.to_photocurrent_a([1.51, 0.006], dark_v=0.006),
                               [(1.51 - 0.006) / 1.51e5, 0.0])
    pda50 = PDA100A2(FakeDigitizer(), gain_db=0, load="50ohm")
    assert pda50.to_photocurrent_a(0.755) == pytest.approx(1e-3)  # 1.51e3 / 2 V/A


def test_close_closes_the_digitizer():
    fake = FakeDigitizer()
    with PDA100A2(fake) as pda:
        quiet_arm(pda, 2, 500.0)
    assert fake.calls[-1][0] == "close"
