"""SimBench: the Bench contract, seeding, noise presets, split acquisition, device limits."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lsi_hw.errors import ConfigError, PatternError
from lsi_hw.interfaces import Bench
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import DMDConfig, SimBench, SimConfig
from lsi_hw.sim.detector import digitize
from lsi_hw.types import Measurement


@pytest.fixture
def scenes() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)


def test_measure_returns_a_measurement_with_full_snapshot(scenes):
    patterns = PatternSet.random(10, (16, 16), seed=0)
    bench = SimBench(noise="full", seed=3, method="numpy")
    assert isinstance(bench, Bench)
    meas = bench.measure(scenes, patterns)
    assert isinstance(meas, Measurement)
    assert meas.values.shape == (3, 10) and meas.values.dtype == np.float64
    assert meas.timestamps.shape == (3, 10)
    assert np.all(np.diff(meas.timestamps.ravel()) > 0)
    s = meas.settings
    assert s["bench"] == "sim" and s["seed"] == 3 and s["noise"]["preset"] == "full"
    assert s["detector"]["amplifier"]["gain_db"] == SimConfig().amplifier.gain_db
    assert s["modulator"]["patterns"]["m"] == 10 and s["modulator"]["superpixel"] >= 1
    assert "calibration_id" in s
    json.dumps(s)  # JSON-serialisable
    assert len(set(meas.scene_ids)) == 3


def test_same_seed_same_readings_different_seed_different(scenes):
    patterns = PatternSet.random(6, (16, 16), seed=0)
    a = SimBench("full", seed=1, method="numpy").measure(scenes, patterns).values
    b = SimBench("full", seed=1, method="numpy").measure(scenes, patterns).values
    c = SimBench("full", seed=2, method="numpy").measure(scenes, patterns).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_noise_none_is_the_digitized_expectation(scenes):
    patterns = PatternSet.random(6, (16, 16), seed=0)
    bench = SimBench("none", method="numpy")
    measured = bench.measure(scenes, patterns).values
    expected = bench.expected(scenes, patterns).values
    np.testing.assert_array_equal(measured, digitize(expected, bench.config.digitizer)[0])


@pytest.mark.parametrize("preset", ["shot", "read", "full"])
def test_noisy_presets_scatter_around_the_expectation(scenes, preset):
    patterns = PatternSet.random(64, (16, 16), seed=0)
    bench = SimBench(preset, seed=0, method="numpy")
    err = bench.measure(scenes, patterns).values - bench.expected(scenes, patterns).values
    lsb = bench.config.digitizer.lsb_v
    assert np.abs(err.mean()) < 5 * lsb
    assert err.std() > 0


def test_split_hadamard_differential_gives_walsh_coefficients():
    """(+) - (-) readings are proportional to the Walsh-Hadamard transform of the light."""
    from lsi_hw.sim import AmplifierConfig
    from lsi_hw.sim.forward import irradiance

    # 40 dB settles to 1e-15 within the settling delay, so the differential is exact to
    # rounding (at 50 dB a 1e-7 carry-over of the previous reading remains)
    cfg = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40))
    patterns = PatternSet.hadamard(8, split=True, order="natural")
    scene = np.random.default_rng(1).uniform(0, 1, (1, 8, 8))
    bench = SimBench("none", config=cfg, method="numpy")
    diff = patterns.differential(bench.expected(scene, patterns).values)
    irr = irradiance(scene, (8, 8), cfg).reshape(-1)
    k = np.arange(64)
    h = (-1.0) ** np.array([[bin(a & b).count("1") for b in k] for a in k])
    walsh = h @ irr
    ratio = diff[0, 1:] / walsh[1:]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


def test_too_many_patterns_for_the_modulator():
    cfg = replace(SimConfig(), dmd=DMDConfig(max_patterns=4))
    bench = SimBench(config=cfg, method="numpy")
    with pytest.raises(PatternError, match="at most 4"):
        bench.measure(np.zeros((1, 8, 8)), PatternSet.random(5, (8, 8), seed=0))


def test_masks_that_do_not_fit_the_dmd():
    bench = SimBench(method="numpy")
    with pytest.raises(PatternError, match="do not fit"):
        bench.measure(np.zeros((1, 8, 2000)), PatternSet.random(1, (8, 2000), seed=0))
    cfg = replace(SimConfig(), dmd=DMDConfig(superpixel=9))
    with pytest.raises(ConfigError, match=r"allowed: 1\.\.2"):
        SimBench(config=cfg, method="numpy").measure(
            np.zeros((1, 256, 256)), PatternSet.random(1, (256, 256), seed=0))


@pytest.mark.parametrize(
    ("scenes", "match"),
    [
        (np.full((1, 4, 4), np.nan), "NaN"),
        (np.full((1, 4, 4), 1.5), "allowed range"),
        (np.full((1, 4, 4), 300, dtype=np.int32), "allowed range"),
        (np.zeros((2, 3, 4, 5, 6)), "must be"),
        (np.zeros((0, 4, 4)), "empty"),
    ],
)
def test_bad_scenes_are_rejected_before_anything_runs(scenes, match):
    with pytest.raises(ConfigError, match=match):
        SimBench(method="numpy").measure(scenes, PatternSet.random(2, (4, 4), seed=0))


def test_saturation_is_counted_and_clipped():
    """A 1000 cd/m^2 white screen at 70 dB drives the amplifier past 10 V (digitizer on
    +-10 V, so the amplifier, not the ADC range, clips)."""
    from lsi_hw.sim import AmplifierConfig, DigitizerConfig, MonitorConfig

    cfg = replace(SimConfig(), monitor=MonitorConfig(peak_luminance_cd_m2=1000.0),
                  amplifier=AmplifierConfig(gain_db=70), digitizer=DigitizerConfig(range_v=10.0))
    bench = SimBench("none", config=cfg, method="numpy")
    white = np.full((1, 32, 32), 255, dtype=np.uint8)
    masks = PatternSet(np.stack([np.ones((32, 32)), np.zeros((32, 32)), np.ones((32, 32))]))
    assert bench.expected(white, masks).values[0, 0] > 10.0
    meas = bench.measure(white, masks)
    assert meas.settings["acquisition"]["saturated_count"] == 2
    assert meas.values.max() <= 10.0


def test_measurement_save_load_round_trip(tmp_path, scenes):
    meas = SimBench("shot", method="numpy").measure(scenes, PatternSet.random(4, (16, 16), seed=0))
    path = tmp_path / "m.npz"
    meas.save(str(path))
    back = Measurement.load(str(path))
    np.testing.assert_array_equal(back.values, meas.values)
    assert back.settings == meas.settings and back.scene_ids == meas.scene_ids
