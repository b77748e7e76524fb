"""The calibration routines on the digital twin recover the simulated truth.

The twin runs the real DLP4500 and PDA100A2 drivers (its reading window comes from the
driver), so this checks that calibration works through the hardware code path, not only
on SimBench.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lsi_hw.calibration import (
    check_linearity_and_gain,
    fit_monitor_gamma,
    measure_dark,
    measure_settling,
    register_dmd_to_scene,
)
from lsi_hw.sim import AmplifierConfig, MonitorConfig, RelayOpticsConfig, SimConfig
from lsi_hw.twin import FakeHardwareBench


@pytest.fixture(scope="module")
def truth() -> SimConfig:
    return replace(
        SimConfig(),
        monitor=MonitorConfig(gamma=2.4),
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
    cfg = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=70))
    with FakeHardwareBench("full", seed=4, config=cfg) as bench:
        result = measure_settling(bench, size=16)
    assert result.resolved
    assert result.bandwidth_hz == pytest.approx(3e3, rel=0.05)
