"""The calibration routines on the digital twin recover the simulated truth.

The twin runs the real DLP4500 and PDA100A2 drivers (its reading window comes from the
driver), so this checks that calibration works through the hardware code path, not only
on SimBench.  Its settings snapshot holds only what a real bench reports (no simulator
config), and calibration reads the typed bench properties the drivers give, so what
passes here is what ``--backend hw`` gets.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lsi_hw import calibration as cal
from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.calibration import (
    check_linearity_and_gain,
    fit_monitor_gamma,
    measure_dark,
    measure_settling,
    register_dmd_to_scene,
)
from lsi_hw.errors import CalibrationError
from lsi_hw.sim import (
    AmplifierConfig,
    DigitizerConfig,
    MonitorConfig,
    RelayOpticsConfig,
    SimConfig,
)

#: The bench these tests were written for (the defaults before the operating point was
#: set for typical scenes): a +-10 V digitizer and a 300 cd/m^2 monitor, where a
#: full-screen white with every mirror on stays below full scale up to 70 dB.  The default
#: operating point on the twin is tested in test_operating_point.py.
WIDE = replace(SimConfig(), digitizer=DigitizerConfig(range_v=10.0),
               monitor=MonitorConfig(peak_luminance_cd_m2=300.0, black_luminance_cd_m2=0.3))

#: The ADC step of the twin's digitizer: 16 bits over -10..+10 V (what a USB-6361 gives).
ADC_STEP_V = 20.0 / 2**16


@pytest.fixture(scope="module")
def truth() -> SimConfig:
    return replace(
        WIDE,
        monitor=replace(WIDE.monitor, gamma=2.4),
        optics=RelayOpticsConfig(rotation_deg=-1.5, scale=0.98, shift_px=(-1.0, 2.5)),
        amplifier=AmplifierConfig(gain_db=60, offset_v=3e-3),
    )


def test_dark_level_and_noise(truth):
    with FakeHardwareBench("full", seed=1, config=truth) as bench:
        dark = measure_dark(bench, size=16, repeats=128)
        expected_dark = truth.amplifier.v_per_a * truth.photodiode.dark_current_a + 3e-3
        assert abs(dark.dark_level_v - expected_dark) < 4 * dark.dark_level_u_v + 1e-4
        assert dark.noise_v_rms > 0


def test_linearity_and_gamma(truth):
    # the linearity check assumes the scene covers the masks: run it on an aligned relay
    aligned = replace(truth, optics=RelayOpticsConfig())
    with FakeHardwareBench("full", seed=2, config=aligned) as bench:
        lin = check_linearity_and_gain(bench, size=16, repeats=4)
        assert lin.max_nonlinearity_pct < 0.5
        gamma = fit_monitor_gamma(bench, size=16, repeats=8)
        assert abs(gamma.gamma - 2.4) < 0.01


def test_registration(truth):
    with FakeHardwareBench("full", seed=3, config=truth) as bench:
        reg = register_dmd_to_scene(bench, size=32)
    assert abs(reg.rotation_deg - (-1.5)) < 0.15
    assert abs(reg.scale - 0.98) < 0.005
    np.testing.assert_allclose(reg.shift_px, (-1.0, 2.5), atol=0.1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the driver warns that 70 dB cannot settle
def test_settling_at_70_db_matches_the_gain_table():
    cfg = replace(WIDE, amplifier=AmplifierConfig(gain_db=70))
    with FakeHardwareBench("full", seed=4, config=cfg) as bench:
        result = measure_settling(bench, size=16)
    assert result.resolved
    assert result.bandwidth_hz == pytest.approx(3e3, rel=0.05)


# --------------------------------------------------------------------------------------------
# every routine with only what hardware reports
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hardware_only() -> tuple[cal.CalibrationFile, dict, SimConfig]:
    """run_all (every routine) on the twin: a bench that reports only what the drivers know."""
    truth = replace(WIDE, monitor=replace(WIDE.monitor, gamma=2.4),
                    amplifier=AmplifierConfig(gain_db=60, offset_v=3e-3))
    with FakeHardwareBench("full", seed=5, config=truth) as bench:
        snapshot = bench.settings()
        calibration = cal.run_all(bench, size=16, registration_size=32, progress=False)
    return calibration, snapshot, truth


def test_fake_hw_snapshots_hold_no_simulator_config(hardware_only):
    calibration, snapshot, _ = hardware_only
    assert "simulator" not in snapshot
    assert "simulator" not in calibration.bench_settings
    assert calibration.bench_settings["bench"] == "fake-hw"


def test_every_routine_runs_on_what_hardware_reports(hardware_only):
    calibration, _, truth = hardware_only
    results = calibration.results
    assert list(results) == list(cal.ROUTINES)
    for name, result in results.items():  # the bench knew everything the routines use
        assert getattr(result, "notes", ()) == (), name
    dark = results["dark"]
    assert isinstance(dark, cal.DarkResult)
    assert dark.lsb_v == ADC_STEP_V and dark.gain_db == 60  # from the drivers
    expected_dark = truth.amplifier.v_per_a * truth.photodiode.dark_current_a + 3e-3
    assert abs(dark.dark_level_v - expected_dark) < 4 * dark.dark_level_u_v + 1e-4
    lin = results["linearity"]
    assert isinstance(lin, cal.LinearityResult)
    assert lin.max_nonlinearity_pct < 0.5 and lin.v_per_a == pytest.approx(1.5e6)
    assert lin.photocurrent_a is not None
    gamma = results["gamma"]
    assert isinstance(gamma, cal.GammaResult) and abs(gamma.gamma - 2.4) < 0.01
    reg = results["registration"]
    assert isinstance(reg, cal.RegistrationResult)
    np.testing.assert_allclose(reg.shift_px, (0.0, 0.0), atol=0.1)
    assert abs(reg.rotation_deg) < 0.15 and abs(reg.scale - 1) < 0.005


def test_settling_resolves_with_the_driver_timing(hardware_only):
    calibration, _, truth = hardware_only
    settling = calibration.results["settling"]
    assert isinstance(settling, cal.SettlingResult)
    assert settling.resolved and settling.unresolved_reason is None
    assert settling.period_us == pytest.approx(235.0)
    # the PDA100A2 driver's window: 5 tau of settling at 60 dB, rounded to whole samples
    assert settling.settling_delay_us == pytest.approx(73.0)
    assert settling.window_us == pytest.approx(235.0 - 2.0 - 73.0)
    assert settling.declared_bandwidth_hz == truth.amplifier.bandwidth_hz == 11e3
    assert settling.bandwidth_ratio is not None and abs(settling.bandwidth_ratio - 1) < 0.05


def test_the_quantization_term_uses_the_real_adc_step():
    """Noiseless readings sit on one ADC code: the level's uncertainty is the quantization
    term LSB / 2 / sqrt(3) of the driver's ADC step, not 0."""
    with FakeHardwareBench("none", seed=6, config=WIDE) as bench:
        assert bench.digitizer_lsb_v == ADC_STEP_V
        dark = measure_dark(bench, size=16, repeats=16, allow_white=False)
    assert dark.noise_v_rms == 0.0 and dark.lsb_v == ADC_STEP_V
    assert dark.dark_level_u_v == pytest.approx(ADC_STEP_V / 2 / math.sqrt(3), rel=1e-9)


def test_a_digitizer_that_does_not_state_its_resolution_is_reported():
    cfg = replace(WIDE, amplifier=AmplifierConfig(gain_db=60))  # noise above one ADC step
    with FakeHardwareBench("full", seed=7, config=cfg) as bench:
        bench.detector.digitizer.resolution_bits = None
        assert bench.digitizer_lsb_v is None
        dark = measure_dark(bench, size=16, repeats=16, allow_white=False)
        gamma = fit_monitor_gamma(bench, size=16, repeats=4, passes=1)
    with FakeHardwareBench("none", seed=7, config=WIDE) as quiet:  # same codes, no known step
        quiet.detector.digitizer.resolution_bits = None
        with pytest.raises(CalibrationError, match=r"do not vary .*digitizer_lsb_v is None"):
            fit_monitor_gamma(quiet, size=16, repeats=4, passes=1)
    # the statistical term only, and the result says the quantization term is missing
    assert dark.lsb_v is None
    assert dark.dark_level_u_v == pytest.approx(dark.noise_v_rms / math.sqrt(dark.n_readings))
    assert any("digitizer step unknown" in note for note in dark.notes)
    assert any("digitizer step unknown" in note for note in gamma.notes)
    assert any(line.startswith("note: digitizer step unknown")
               for line in dark.summary_lines())
