"""Calibration routines recover known simulated bench parameters (through the Bench API only).

Every bench here is a :class:`SimBench` with KNOWN parameters wrapped in :class:`ApiOnly`,
a bench that forwards ``measure`` and ``settings`` and nothing else, so a routine that
reached into simulator internals would fail.  Estimates are checked against the true
values of the configuration (or against the simulator's noiseless forward model), never
against themselves.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from lsi_hw import calibration as cal
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import (
    AmplifierConfig,
    DigitizerConfig,
    MonitorConfig,
    PhotodiodeConfig,
    RelayOpticsConfig,
    SimBench,
    SimConfig,
)
from lsi_hw.sim.detector import ELEMENTARY_CHARGE_C, settling_coefficients
from lsi_hw.types import Measurement


class ApiOnly(Bench):
    """A bench exposing only the public Bench API of another one (optionally without
    any settings, like a minimal third-party bench)."""

    name = "api-only"

    def __init__(self, inner: SimBench, *, hide_settings: bool = False) -> None:
        self._inner = inner
        self._hide = hide_settings

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        meas = self._inner.measure(scenes, patterns)
        if self._hide:
            return Measurement(values=meas.values, settings={}, timestamps=meas.timestamps)
        return meas

    def _do_settings(self) -> dict[str, Any]:
        return {} if self._hide else self._inner.settings()


def sim(seed: int = 0, noise: str = "full", **stages: Any) -> tuple[ApiOnly, SimConfig]:
    cfg = SimConfig(**stages)
    return ApiOnly(SimBench(noise=noise, seed=seed, config=cfg)), cfg


def expected_levels(cfg: SimConfig, level: int, size: int = 32) -> tuple[float, float]:
    """Noiseless analog readings (all-off, all-on) of a uniform scene: the truth."""
    bench = SimBench(noise="none", config=cfg)
    masks = PatternSet(np.stack([np.zeros((size, size)), np.ones((size, size))]))
    v = bench.expected(np.full((1, size, size), level, dtype=np.uint8), masks).values[0]
    return float(v[0]), float(v[1])


# --------------------------------------------------------------------------------------------
# dark level, noise, leakage
# --------------------------------------------------------------------------------------------


def test_measure_dark_recovers_offset_dark_current_noise_and_leakage():
    bench, cfg = sim(
        seed=11,
        amplifier=AmplifierConfig(gain_db=60, offset_v=3e-3),
        photodiode=PhotodiodeConfig(dark_current_a=2e-9),
        monitor=MonitorConfig(black_luminance_cd_m2=0.6),
    )
    r = cal.measure_dark(bench)
    true_dark = 3e-3 + 2e-9 * 1.5e6  # offset + dark current x 1.5e6 V/A (60 dB, Hi-Z)
    assert r.dark_level_u_v < 50e-6
    assert abs(r.dark_level_v - true_dark) < 4 * r.dark_level_u_v
    # noise: read noise of the 60 dB step + dark shot noise + quantization
    window_s = cfg.timing.window_us * 1e-6
    shot = 2e-9 * 1.5e6 / math.sqrt(2e-9 * window_s / ELEMENTARY_CHARGE_C)
    read = bench.settings()["detector"]["read_noise_v_rms_per_reading"]
    true_noise = math.sqrt(read**2 + shot**2 + cfg.digitizer.lsb_v**2 / 12)
    assert abs(r.noise_v_rms - true_noise) < max(4 * r.noise_u_v_rms, 0.05 * true_noise)
    assert r.leakage_ratio is not None and r.leakage_ratio_u is not None
    assert r.leakage_ratio_u < 3e-5
    assert abs(r.leakage_ratio - cfg.dmd.off_state_leakage) < 4 * r.leakage_ratio_u
    off, on = expected_levels(cfg, 0)
    assert abs(r.black_level_v - (on - off)) < 4 * r.black_level_u_v
    assert r.gain_db == 60 and r.mask_shape == (32, 32)


def test_measure_dark_without_white_and_failures():
    bench, _ = sim(seed=1)
    r = cal.measure_dark(bench, allow_white=False, repeats=32)
    assert r.leakage_ratio is None and r.n_readings == 64
    with pytest.raises(CalibrationError, match="tolerance"):
        cal.measure_dark(bench, repeats=8, tolerance_v=1e-9)
    clipped, _ = sim(amplifier=AmplifierConfig(gain_db=60), digitizer=DigitizerConfig(range_v=2))
    with pytest.raises(CalibrationError, match="clipping"):
        cal.measure_dark(clipped, repeats=8)


# --------------------------------------------------------------------------------------------
# linearity and gain
# --------------------------------------------------------------------------------------------


def test_linearity_slopes_match_the_true_signal_per_level():
    bench, cfg = sim(seed=2, monitor=MonitorConfig(gamma=2.4))
    r = cal.check_linearity_and_gain(bench)
    assert r.max_nonlinearity_pct < 0.2
    for level, slope, u in zip(r.levels, r.slopes_v, r.slopes_u_v, strict=True):
        off, on = expected_levels(cfg, level)
        assert abs(slope - (on - off)) < 4 * u + 1e-3 * (on - off), level
    assert r.v_per_a == pytest.approx(1.51e5)
    assert r.photocurrent_a is not None
    assert r.photocurrent_a[-1] == pytest.approx(r.slopes_v[-1] / 1.51e5)


def test_linearity_detects_clipping():
    bench, _ = sim(seed=3, amplifier=AmplifierConfig(gain_db=60),
                   digitizer=DigitizerConfig(range_v=2.0))
    r = cal.check_linearity_and_gain(bench)  # clipped points dropped, counted
    assert r.n_saturated > 0 and r.max_nonlinearity_pct < 0.2
    with pytest.raises(CalibrationError, match="nonlinearity"):
        cal.check_linearity_and_gain(bench, exclude_saturated=False)


def test_compare_gains_measures_the_declared_step_and_flags_a_wrong_knob():
    a, _ = sim(seed=4, amplifier=AmplifierConfig(gain_db=50))
    b, _ = sim(seed=5, amplifier=AmplifierConfig(gain_db=60))
    ra, rb = cal.check_linearity_and_gain(a), cal.check_linearity_and_gain(b)
    c = cal.compare_gains(ra, rb)
    true_step = 20 * math.log10(1.5e6 / 4.75e5)  # data-sheet V/A of 60 and 50 dB
    assert abs(c.measured_step_db - true_step) < 0.05
    assert c.declared_step_db == pytest.approx(true_step)
    assert c.within_tolerance
    # the user declared 70 dB for run b, but the knob was at 60 dB
    wrong = replace(rb, gain_db=70.0, v_per_a=4.75e6)
    assert cal.compare_gains(ra, wrong).within_tolerance is False
    with pytest.raises(CalibrationError, match="gain knob"):
        cal.compare_gains(ra, wrong, raise_on_mismatch=True)
    with pytest.raises(CalibrationError, match="mask shapes"):
        cal.compare_gains(ra, replace(rb, mask_shape=(16, 16)))


# --------------------------------------------------------------------------------------------
# monitor gamma
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [2.4, 1.8])
def test_fit_monitor_gamma_recovers_gamma_and_black_ratio(gamma):
    monitor = MonitorConfig(gamma=gamma, peak_luminance_cd_m2=250.0, black_luminance_cd_m2=0.5)
    bench, _ = sim(seed=6, monitor=monitor, amplifier=AmplifierConfig(gain_db=60))
    r = cal.fit_monitor_gamma(bench)
    assert r.gamma_u < 0.005
    assert abs(r.gamma - gamma) < 0.005
    assert abs(r.black_to_peak - 0.002) < 0.05 * 0.002
    assert r.black_to_peak_u < 0.1 * 0.002
    assert r.residual_rms_rel < 1e-3


def test_fit_monitor_gamma_failures():
    bench, _ = sim(seed=7)
    with pytest.raises(CalibrationError, match="uncertainty"):
        cal.fit_monitor_gamma(bench, repeats=4, passes=1, gamma_tolerance=1e-9)
    with pytest.raises(CalibrationError, match="at least 4"):
        cal.fit_monitor_gamma(bench, levels=(0, 128, 255))
    dark_room, _ = sim(seed=7, optics=RelayOpticsConfig(shift_px=(500.0, 500.0)))
    with pytest.raises(CalibrationError, match="not increasing"):
        cal.fit_monitor_gamma(dark_room, repeats=4, passes=1)


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------

MISALIGNMENTS = [
    # shift (rows, cols) px, rotation deg, scale, blur px, gain dB, discard
    ((1.5, -2.0), 2.0, 1.03, 0.5, 40, 0),
    ((3.2, 2.7), -5.0, 0.95, 1.0, 70, 1),
]


@pytest.mark.parametrize(("shift", "rotation", "scale", "blur", "gain", "discard"),
                         MISALIGNMENTS)
def test_registration_recovers_known_misalignment(shift, rotation, scale, blur, gain, discard):
    optics = RelayOpticsConfig(shift_px=shift, rotation_deg=rotation, scale=scale,
                               blur_sigma_px=blur)
    bench, _ = sim(seed=8, optics=optics, amplifier=AmplifierConfig(gain_db=gain))
    r = cal.register_dmd_to_scene(bench, size=32, discard=discard)
    assert abs(r.shift_px[0] - shift[0]) < 0.05
    assert abs(r.shift_px[1] - shift[1]) < 0.05
    assert abs(r.rotation_deg - rotation) < 0.15
    assert abs(r.scale - scale) < 0.002
    assert abs(r.blur_sigma_px - blur) < 0.1
    assert r.n_patterns == 2 * 32 * 32 * (1 + discard)
    assert max(r.shift_u_px) < 0.05 and r.rotation_u_deg < 0.1 and r.scale_u < 0.002
    assert r.relay_settings()["shift_px"] == r.shift_px


def test_registration_at_64_pixels():
    optics = RelayOpticsConfig(shift_px=(-1.2, 0.7), rotation_deg=-1.0, scale=1.02)
    bench, _ = sim(seed=9, optics=optics)
    r = cal.register_dmd_to_scene(bench, size=64)
    assert np.allclose(r.shift_px, (-1.2, 0.7), atol=0.05)
    assert abs(r.rotation_deg + 1.0) < 0.1 and abs(r.scale - 1.02) < 0.002


def test_registration_fails_on_blank_target_and_on_a_scene_off_the_dmd():
    bench, _ = sim(seed=10)
    with pytest.raises(CalibrationError, match="blank"):
        cal.register_dmd_to_scene(bench, size=32, target=np.zeros((32, 32), dtype=np.uint8))
    missed, _ = sim(seed=10, optics=RelayOpticsConfig(shift_px=(40.0, 40.0)))
    with pytest.raises(CalibrationError, match="not seen"):
        cal.register_dmd_to_scene(missed, size=32)
    with pytest.raises(ConfigError):
        cal.register_dmd_to_scene(bench, size=48)


# --------------------------------------------------------------------------------------------
# settling
# --------------------------------------------------------------------------------------------


def test_settling_beta_matches_the_simulator_formula_and_inverts():
    for gain in (50, 60, 70):
        cfg = SimConfig(amplifier=AmplifierConfig(gain_db=gain))
        _, beta = settling_coefficients(cfg.amplifier, cfg.timing)
        tau = cfg.amplifier.time_constant_s
        assert cal.settling_beta(tau, 60e-6, 150e-6) == pytest.approx(beta, rel=1e-9)
        assert cal.tau_from_beta(beta, 60e-6, 150e-6) == pytest.approx(tau, rel=1e-6)


@pytest.mark.parametrize(("gain", "rel_tol"), [(70, 0.005), (60, 0.03)])
def test_measure_settling_recovers_the_amplifier_bandwidth(gain, rel_tol):
    bench, cfg = sim(seed=12, amplifier=AmplifierConfig(gain_db=gain))
    r = cal.measure_settling(bench)
    true_tau = 1 / (2 * math.pi * cfg.amplifier.bandwidth_hz)
    assert r.resolved and r.tau_s is not None and r.bandwidth_ratio is not None
    assert abs(r.tau_s / true_tau - 1) < rel_tol
    assert abs(r.bandwidth_ratio - 1) < rel_tol
    assert r.declared_bandwidth_hz == cfg.amplifier.bandwidth_hz
    _, true_beta = settling_coefficients(cfg.amplifier, cfg.timing)
    assert abs(r.beta - true_beta) < 5 * r.beta_u


def test_measure_settling_unresolved_gives_a_true_bound():
    bench, cfg = sim(seed=13)  # 40 dB: 90 kHz, tau 1.8 us << 60 us settling delay
    r = cal.measure_settling(bench)
    assert not r.resolved and r.tau_s is None
    assert r.bandwidth_lower_hz < cfg.amplifier.bandwidth_hz
    with pytest.raises(CalibrationError, match="not resolved"):
        cal.measure_settling(bench, require_resolved=True)


def test_routines_run_on_a_bench_without_settings():
    bench = ApiOnly(SimBench(noise="full", seed=14,
                             config=SimConfig(amplifier=AmplifierConfig(gain_db=70))),
                    hide_settings=True)
    with pytest.raises(ConfigError, match="timing"):
        cal.measure_settling(bench)
    r = cal.measure_settling(
        bench, timing={"period_us": 235.0, "settling_delay_us": 60.0, "window_us": 150.0})
    assert r.resolved and r.declared_bandwidth_hz is None and r.bandwidth_hz is not None
    assert abs(r.bandwidth_hz / 3e3 - 1) < 0.005
    d = cal.measure_dark(bench, repeats=16)
    assert d.gain_db is None and d.lsb_v is None


# --------------------------------------------------------------------------------------------
# calibration file
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration() -> cal.CalibrationFile:
    optics = RelayOpticsConfig(shift_px=(0.5, -1.0), rotation_deg=1.0)
    bench = ApiOnly(SimBench(noise="full", seed=15, config=SimConfig(optics=optics)))
    return cal.run_all(bench, progress=False)


def test_run_all_collects_every_routine(calibration):
    assert list(calibration.results) == list(cal.ROUTINES)
    assert calibration.schema_version == cal.CALIBRATION_SCHEMA_VERSION
    reg = calibration.results["registration"]
    assert isinstance(reg, cal.RegistrationResult)
    assert np.allclose(reg.shift_px, (0.5, -1.0), atol=0.05)
    assert calibration.bench_settings["bench"] == "sim"
    assert len(calibration.id) == 12


def test_calibration_file_round_trip_and_id(calibration, tmp_path):
    path = tmp_path / "cal.json"
    assert calibration.save(path) == calibration.id
    calibration.save(path)  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]  # no temporary left over
    loaded = cal.CalibrationFile.load(path)
    assert loaded == calibration and loaded.id == calibration.id
    assert loaded.results["registration"].shift_px == calibration.results["registration"].shift_px
    # same content, another creation time: same id; other content: another id
    again = replace(calibration, created="2000-01-01T00:00:00+00:00")
    assert again.id == calibration.id
    changed = dict(calibration.results)
    changed["dark"] = replace(changed["dark"], dark_level_v=changed["dark"].dark_level_v + 1e-6)
    assert replace(calibration, results=changed).id != calibration.id


def test_calibration_file_rejects_other_schema_and_edits(calibration, tmp_path):
    doc = calibration.to_dict()
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**doc, "schema_version": 999}))
    with pytest.raises(CalibrationError, match="schema version 999"):
        cal.CalibrationFile.load(path)
    doc["results"]["gamma"]["gamma"] = 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="does not match"):
        cal.CalibrationFile.load(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="not JSON"):
        cal.CalibrationFile.load(path)


def test_bench_records_the_calibration_id(calibration, tmp_path):
    path = os.fspath(tmp_path / "cal.json")
    calibration.save(path)
    cid = cal.CalibrationFile.load(path).id
    bench = SimBench(calibration_id=cid)
    meas = bench.measure(np.zeros((1, 8, 8), dtype=np.uint8), PatternSet.random(2, 8, seed=0))
    assert meas.settings["calibration_id"] == cid
    assert bench.settings()["calibration_id"] == cid
