"""The predicted noise of each reading (residuals in units of the noise) matches the
simulator's draws."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lsi_hw.patterns import PatternSet
from lsi_hw.sim import SimConfig
from lsi_hw.sim.detector import AmplifierConfig
from lsi_hw.sim.forward import expected_volts, measure_volts, noise_std_v
from lsi_hw.testscenes import builtin_scenes


@pytest.mark.parametrize(("preset", "gain_db"), [("shot", 50), ("read", 30), ("read", 50),
                                                 ("full", 30), ("full", 40), ("full", 50)])
def test_predicted_noise_matches_the_spread_of_many_draws(preset: str, gain_db: int) -> None:
    scenes, _ = builtin_scenes(32)
    patterns = PatternSet.random(16, (32, 32), seed=1)
    cfg = replace(SimConfig().with_noise(preset), amplifier=AmplifierConfig(gain_db=gain_db))
    expected = expected_volts(scenes[:2], patterns, cfg)
    draws = np.stack([measure_volts(scenes[:2], patterns, cfg,
                                    np.random.default_rng(k)).volts for k in range(300)])
    assert not np.any(np.abs(draws) >= cfg.amplifier.saturation_v)
    assert np.abs(draws).max() < cfg.digitizer.range_v - cfg.digitizer.lsb_v  # no ADC clip
    ratio = draws.std(axis=0) / noise_std_v(expected, cfg)
    assert 0.9 < np.median(ratio) < 1.1, np.median(ratio)
    assert np.all((ratio > 0.75) & (ratio < 1.3))


def test_without_noise_only_the_adc_step_is_left() -> None:
    cfg = SimConfig().with_noise("none")
    sigma = noise_std_v(np.array([[0.01, 0.2]]), cfg)
    assert np.allclose(sigma, cfg.digitizer.lsb_v / np.sqrt(12))
    shot = noise_std_v(np.array([[0.01, 0.2]]), SimConfig().with_noise("shot"))
    assert shot[0, 1] > shot[0, 0] > sigma[0, 0]  # shot noise grows with the signal
