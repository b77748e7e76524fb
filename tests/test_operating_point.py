"""The bench uses its ADC: the default gain and digitizer range put the brightest reading of
typical scenes at 30-80 % of full scale, the gain settles within one pattern, the
recommender picks gain and range by the same rule, and every bench (simulator, twin, torch
training model) is built from the same defaults."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from lsi_hw import calibration as cal
from lsi_hw.cli import DEFAULT_GAIN_DB, DEFAULT_RANGE_V, main
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.operating_point import (
    FRACTION_HIGH,
    FRACTION_LOW,
    MAX_SETTLING_RESIDUAL,
    STANDARD_RANGES_V,
    assess_fraction,
    predict_peak_v,
    recommend_operating_point,
    settling_residual,
)
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import (
    AmplifierConfig,
    DigitizerConfig,
    MonitorConfig,
    NoiseConfig,
    SimBench,
    SimConfig,
    TimingConfig,
)
from lsi_hw.sim.detector import settling_coefficients
from lsi_hw.specs import DLP4500_PATTERN_PERIOD_US, PDA100A2_GAINS
from lsi_hw.testscenes import builtin_scenes
from lsi_hw.types import Measurement

PERIOD_S = DLP4500_PATTERN_PERIOD_US * 1e-6


def _mask_sets(size: int) -> dict[str, PatternSet]:
    """m = 256 masks: Hadamard split 0/1 (128 rows and their complements; row 0 is the
    all-on mask) and random masks with half the mirrors on."""
    return {"hadamard-split": PatternSet.hadamard(size, m=128, split=True),
            "random-0.5": PatternSet.random(256, size, p=0.5, seed=0)}


def _brightest_fraction(scenes: np.ndarray, patterns: PatternSet) -> float:
    """Brightest reading of the default noiseless SimBench over full scale."""
    bench = SimBench("none")
    return float(bench.measure(scenes, patterns).values.max()) / bench.digitizer_range_v


@pytest.fixture(scope="module")
def faces64() -> np.ndarray:
    """64 SynthFace faces at 64 px as monitor frames (B, 64, 64, 3) uint8."""
    torch = pytest.importorskip("torch")
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.training.bench_data import faces_as_scenes

    gen = SynthFace(size=64)
    latent = gen.sample_latent(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return faces_as_scenes(gen.synthesize(latent))


# --------------------------------------------------------------------------------------------
# the defaults use the digitizer's range
# --------------------------------------------------------------------------------------------


def test_default_bench_puts_synthface_faces_at_30_to_80_percent(faces64):
    """The brightest reading any mask set can give (the all-on mask, row 0 of the Hadamard
    set) of 64 faces at 64 px is inside the band; random half-open masks reach about half
    of it."""
    masks = _mask_sets(64)
    hadamard = _brightest_fraction(faces64, masks["hadamard-split"])
    assert FRACTION_LOW <= hadamard <= FRACTION_HIGH, hadamard
    random = _brightest_fraction(faces64, masks["random-0.5"])
    assert 0.45 < random / hadamard < 0.65, (random, hadamard)
    # faces alone are darker than the built-in grey staircase that sets the range: their
    # random-mask peak sits near the band's lower edge (0.23-0.27 with SynthFace as of this
    # writing), still 4000 ADC steps above zero
    assert random > 0.2, random


@pytest.mark.parametrize("kind", ["hadamard-split", "random-0.5"])
def test_default_bench_puts_faces_and_builtin_scenes_together_at_30_to_80_percent(
        faces64, kind):
    """A lab's typical scene set (faces and the built-in test scenes, as shown on the
    monitor): its brightest reading is inside the band for either mask set."""
    scenes = np.concatenate([faces64, builtin_scenes(64)[0]])
    fraction = _brightest_fraction(scenes, _mask_sets(64)[kind])
    assert FRACTION_LOW <= fraction <= FRACTION_HIGH, fraction


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("kind", ["hadamard-split", "random-0.5"])
def test_default_bench_puts_the_builtin_scenes_at_30_to_80_percent(size, kind):
    """One fixed setting for every size: the masks are magnified to fill the DMD, so the
    brightest reading changes only with the superpixel rounding (13 % more light at 32 px)."""
    scenes, _ = builtin_scenes(size)
    fraction = _brightest_fraction(scenes, _mask_sets(size)[kind])
    assert FRACTION_LOW <= fraction <= FRACTION_HIGH, (size, kind, fraction)


def test_the_old_defaults_wasted_the_range():
    """40 dB on +-10 V (the former defaults): the brightest reading used ~1 % of full scale."""
    old = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40),
                  digitizer=DigitizerConfig(range_v=10.0))
    scenes, _ = builtin_scenes(64)
    bench = SimBench("none", config=old)
    peak = bench.measure(scenes, _mask_sets(64)["hadamard-split"]).values.max()
    fraction, status, message = assess_fraction(peak, 10.0, 10.0)
    assert fraction < 0.02 and status == "wasted"
    assert message.startswith("range wasted: ADC step dominates")


def test_default_gain_settles_within_one_pattern():
    amp, timing = AmplifierConfig(), TimingConfig()
    residual = settling_residual(amp.bandwidth_hz, timing.period_us * 1e-6)
    assert residual == pytest.approx(math.exp(-235e-6 / amp.time_constant_s), rel=1e-12)
    assert residual < 1e-20 < MAX_SETTLING_RESIDUAL  # 50 dB: tau = 4.8 us, 6.9e-22
    a, beta = settling_coefficients(amp, timing)  # what the simulator applies per reading
    assert a == pytest.approx(residual, rel=1e-9)
    assert beta < DigitizerConfig().lsb_v / DigitizerConfig().range_v  # below one ADC step


def test_which_gain_steps_settle_within_one_pattern():
    residuals = {g: settling_residual(s.bandwidth_hz) for g, s in PDA100A2_GAINS.items()}
    assert all(residuals[g] <= MAX_SETTLING_RESIDUAL for g in (0, 10, 20, 30, 40, 50, 60))
    assert residuals[60] == pytest.approx(math.exp(-235e-6 * 2 * math.pi * 11e3))  # 9e-8
    assert residuals[70] > 0.01  # 3 kHz: tau = 53 us, 1.2 % left after 235 us


def test_the_twin_driver_timing_settles_at_the_default_gain():
    from lsi_hw.benches.twin import FakeHardwareBench

    with FakeHardwareBench("none") as twin:
        timing = twin.detector.timing_for(235.0, 235.0)
        assert twin.gain_db == AmplifierConfig().gain_db
    assert timing.settled and timing.residual_fraction < 1e-2


# --------------------------------------------------------------------------------------------
# one set of defaults everywhere
# --------------------------------------------------------------------------------------------

STAGES = ("monitor", "optics", "dmd", "photodiode", "amplifier", "digitizer")


def test_simbench_twin_torch_model_and_cli_use_the_same_defaults():
    from lsi_hw.benches.twin import FakeHardwareBench
    from lsi_ml.latent.optical import OpticalEncoder

    reference = SimConfig()
    sim = SimBench()
    with FakeHardwareBench() as twin:
        twin_config = twin.sim_config
        assert twin.detector.range_v == reference.digitizer.range_v
        assert twin.gain_db == reference.amplifier.gain_db
        assert twin.digitizer_lsb_v == reference.digitizer.lsb_v
    encoder = OpticalEncoder(4, (16, 16))
    assert encoder.config == reference and encoder.physics.config is encoder.config
    for stage in STAGES:  # the twin replaces only the timing (the driver's) and the noise
        want = getattr(reference, stage)
        assert getattr(sim.config, stage) == want, stage
        assert getattr(twin_config, stage) == want, stage
        assert getattr(encoder.physics.config, stage) == want, stage
    assert (DEFAULT_GAIN_DB, DEFAULT_RANGE_V) == (reference.amplifier.gain_db,
                                                  reference.digitizer.range_v)
    assert reference.amplifier == AmplifierConfig(gain_db=50)
    assert reference.digitizer == DigitizerConfig(range_v=0.5, bits=16)
    assert reference.monitor.black_luminance_cd_m2 == pytest.approx(
        reference.monitor.peak_luminance_cd_m2 / 1000)
    assert reference.digitizer.range_v in STANDARD_RANGES_V


def test_the_training_configs_are_built_from_the_same_defaults():
    from lsi_ml.training.config import TrainConfig

    config = TrainConfig()
    built = SimConfig().with_noise(config.bench.noise).with_overrides(config.bench.sim)
    for stage in STAGES:
        assert getattr(built, stage) == getattr(SimConfig(), stage), stage
    assert replace(built, noise=NoiseConfig()) == SimConfig()


def test_the_recommender_ranges_are_the_twin_digitizer_ranges():
    from lsi_hw.drivers.digitizers.fake import X_SERIES_RANGES_V

    assert STANDARD_RANGES_V == X_SERIES_RANGES_V


# --------------------------------------------------------------------------------------------
# the recommender (pure)
# --------------------------------------------------------------------------------------------


def test_recommender_keeps_the_default_operating_point():
    # brightest built-in scene at 32 px on the default bench: ~0.38 V at 50 dB
    point = recommend_operating_point(0.384, 50, dark_v=1.5e-3)
    assert (point.gain_db, point.range_v, point.status) == (50, 0.5, "ok")
    assert point.expected_fraction == pytest.approx(0.768)
    assert point.settling_residual == pytest.approx(settling_residual(33e3), rel=1e-12)
    assert point.bandwidth_hz == 33e3 and "70 dB excluded" in point.reason
    assert "50 dB, +-0.5 V -> 77% of full scale" in point.summary()


def test_recommender_from_the_old_defaults():
    """0.12 V at 40 dB on +-10 V (1 %): 50 dB on +-0.5 V puts it at 77 %."""
    point = recommend_operating_point(0.1228, 40, dark_v=1.15e-3)
    assert (point.gain_db, point.range_v) == (50, 0.5)
    assert FRACTION_LOW <= point.expected_fraction <= FRACTION_HIGH
    assert point.expected_peak_v == pytest.approx(
        1.15e-3 + (0.1228 - 1.15e-3) * 4.75e5 / 1.51e5)


def test_recommender_prefers_the_largest_fraction_inside_the_band_and_the_lower_gain():
    # 0.1 V signal at 40 dB: 40/0.2 -> 50 %, 50/0.5 -> 63 %, 60/2 -> 50 %: 50 dB wins
    assert recommend_operating_point(0.1, 40).gain_db == 50
    # equal fractions: the lower gain (more bandwidth) wins
    gains = {10: replace(PDA100A2_GAINS[10], hi_z_v_per_a=1.0),
             20: replace(PDA100A2_GAINS[20], hi_z_v_per_a=10.0)}
    point = recommend_operating_point(0.05, 10, ranges_v=(0.1, 1.0), gains=gains)
    assert (point.gain_db, point.range_v) == (10, 0.1)


def test_recommender_uses_the_ranges_offered():
    # an NI M Series card (no +-0.5 V): 0.38 V at 50 dB -> 60 dB on +-5 V is too little,
    # 40 dB on +-0.2 V gives 61 %
    point = recommend_operating_point(0.384, 50, ranges_v=(0.2, 1.0, 5.0, 10.0))
    assert (point.gain_db, point.range_v, point.status) == (40, 0.2, "ok")
    assert point.expected_fraction == pytest.approx(0.384 * 1.51e5 / 4.75e5 / 0.2)


def test_recommender_too_little_light_says_so():
    point = recommend_operating_point(1e-4, 60, dark_v=0.0)
    assert point.status == "wasted" and point.gain_db == 60 and point.range_v == 0.1
    assert point.expected_fraction < FRACTION_LOW
    assert "too little light" in point.reason and "70 dB excluded" in point.reason


def test_recommender_too_much_light_says_so():
    point = recommend_operating_point(9.0, 10)  # 9 V at 10 dB: 2.9 V at 0 dB on +-5 V
    assert (point.gain_db, point.range_v, point.status) == (0, 5.0, "ok")
    point = recommend_operating_point(9.9, 0)  # 9.9 V at 0 dB cannot be helped
    assert point.status == "saturating" and point.gain_db == 0 and point.range_v == 10.0
    assert "too much light" in point.reason and "neutral-density" in point.reason
    high = recommend_operating_point(8.5, 0)
    assert high.status == "high"


def test_recommender_respects_the_amplifier_saturation():
    # into 50 ohm the amplifier clips at 5 V: a +-10 V range cannot hold more than 5 V
    point = recommend_operating_point(4.5, 0, saturation_v=5.0)
    assert point.status == "high" and point.range_v == 5.0
    assert "clipping level 5 V" in point.reason


def test_recommender_may_take_a_slow_gain_when_allowed():
    strict = recommend_operating_point(1e-3, 60)
    loose = recommend_operating_point(1e-3, 60, max_settling_residual=0.05)
    assert strict.gain_db == 60 and loose.gain_db == 70
    assert loose.settling_residual > 0.01


def test_recommender_without_signal():
    point = recommend_operating_point(1e-3, 50, dark_v=1e-3)
    assert point.status == "no-signal" and point.gain_db == 50
    assert "no light above the dark level" in point.reason


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"peak_v": float("nan"), "gain_db": 50}, "peak_v"),
    ({"peak_v": 0.1, "gain_db": 45}, "allowed: 0, 10"),
    ({"peak_v": 0.1, "gain_db": 50, "ranges_v": ()}, "empty"),
    ({"peak_v": 0.1, "gain_db": 50, "ranges_v": (0.5, -1.0)}, "ranges_v"),
    ({"peak_v": 0.1, "gain_db": 50, "low": 0.9, "high": 0.5}, "band"),
    ({"peak_v": 0.1, "gain_db": 50, "saturation_v": 0.0}, "saturation_v"),
])
def test_recommender_refuses_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        recommend_operating_point(**kwargs)


def test_assess_fraction_bands():
    assert assess_fraction(0.14, 0.5)[1] == "wasted"
    fraction, status, message = assess_fraction(0.3, 0.5)
    assert (fraction, status) == (pytest.approx(0.6), "ok") and "inside" in message
    assert assess_fraction(0.45, 0.5)[1] == "high"
    fraction, status, message = assess_fraction(0.495, 0.5)
    assert status == "saturating" and "clipping level 0.5 V" in message
    # the amplifier (5 V into 50 ohm) clips before a +-10 V range
    assert assess_fraction(4.95, 10.0, 5.0)[1] == "saturating"
    assert assess_fraction(-0.3, 0.5)[1] == "ok"  # magnitude counts
    with pytest.raises(ConfigError, match="range_v"):
        assess_fraction(0.1, 0.0)


def test_predict_peak_keeps_the_dark_level():
    assert predict_peak_v(0.101, 40, 60, dark_v=1e-3) == pytest.approx(
        1e-3 + 0.1 * 1.5e6 / 1.51e5)
    with pytest.raises(ConfigError, match="allowed"):
        predict_peak_v(0.1, 40, 41)


def test_settling_residual_refuses_bad_input():
    with pytest.raises(ConfigError, match="bandwidth_hz"):
        settling_residual(0.0)
    assert settling_residual(1e3, 1e-3) == pytest.approx(math.exp(-2 * math.pi))


# --------------------------------------------------------------------------------------------
# the bench tools report it: calibration and the command line
# --------------------------------------------------------------------------------------------


def test_measure_operating_point_on_the_default_bench():
    point = cal.measure_operating_point(SimBench("full", seed=0), size=32)
    assert point.status == "ok" and not point.peak_estimated
    assert point.fraction is not None and FRACTION_LOW <= point.fraction <= FRACTION_HIGH
    assert point.peak_scene in point.scene_names and len(point.scene_names) == 4
    assert (point.recommended_gain_db, point.recommended_range_v) == (50, 0.5)
    assert point.settling_residual is not None and point.settling_residual < 1e-20
    # full-screen white clips: it is extrapolated from the sparse probe
    assert point.level_estimated[-1] and point.white_v > point.clip_v
    truth = SimBench("none").expected(np.full((1, 32, 32), 255, dtype=np.uint8),
                                      PatternSet(np.ones((1, 32, 32)))).values[0, 0]
    assert point.white_v == pytest.approx(truth, rel=0.02)
    assert point.summary_lines() == [point.summary()]  # no warning, same setting
    again = cal.OperatingPointResult.from_dict(point.to_dict())
    assert again == point


def test_measure_operating_point_warns_when_the_range_is_wasted_or_saturates():
    old = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40),
                  digitizer=DigitizerConfig(range_v=10.0))
    wasted = cal.measure_operating_point(SimBench("full", seed=1, config=old), size=32)
    assert wasted.status == "wasted" and wasted.fraction is not None and wasted.fraction < 0.02
    lines = wasted.summary_lines()
    assert lines[1].startswith("warning: range wasted: ADC step dominates")
    assert lines[2].startswith("recommendation: ")
    assert (wasted.recommended_gain_db, wasted.recommended_range_v) == (50, 0.5)
    hot = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=60))
    sat = cal.measure_operating_point(SimBench("full", seed=2, config=hot), size=32)
    assert sat.status == "saturating" and sat.peak_estimated
    assert sat.recommended_gain_db == 50 and sat.recommended_fraction is not None
    assert FRACTION_LOW <= sat.recommended_fraction <= FRACTION_HIGH


class _Silent(Bench):
    """A bench that measures but reports none of the typed properties (all None)."""

    name = "silent"

    def __init__(self, inner: Bench) -> None:
        self._inner = inner

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        meas = self._inner.measure(scenes, patterns)
        return Measurement(values=meas.values, settings={}, timestamps=meas.timestamps)

    def _do_settings(self) -> dict:
        return {}


def test_measure_operating_point_on_a_bench_that_reports_nothing():
    bench = _Silent(SimBench("full", seed=3))
    assert bench.digitizer_range_v is None and bench.gain_db is None
    point = cal.measure_operating_point(bench, size=16)
    assert point.status == "unknown" and point.fraction is None
    assert point.recommended_gain_db is None
    assert any("digitizer range unknown" in n for n in point.notes)
    assert any("gain step unknown" in n for n in point.notes)
    with pytest.raises(ConfigError, match="scenes must be uint8"):
        cal.measure_operating_point(bench, size=16, scenes=np.zeros((1, 8, 8), np.uint8))


def test_stimulus_options_scale_only_when_white_clips():
    wide = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40),
                   digitizer=DigitizerConfig(range_v=10.0))
    fits = cal.measure_operating_point(SimBench("none", config=wide), size=16)
    assert fits.stimulus_options() == {}  # every routine keeps its full-white defaults
    clips = cal.measure_operating_point(SimBench("none"), size=16)
    opts = clips.stimulus_options()
    assert set(opts) == {"dark", "settling", "gamma", "linearity"}
    level = opts["dark"]["white_level"]
    assert opts["settling"]["level"] == level and 0 < level < 255
    assert clips.level_v[clips.levels.index(level)] <= cal.STIMULUS_FRACTION * clips.clip_v
    f = opts["gamma"]["open_fraction"]
    assert 0 < f < 1 and f * 64 == int(f * 64)
    assert clips.dark_v + f * (clips.white_v - clips.dark_v) <= cal.STIMULUS_FRACTION * 0.5
    assert max(opts["linearity"]["fractions"]) == pytest.approx(f)


def test_run_all_on_the_default_bench_scales_its_stimuli():
    result = cal.run_all(SimBench("full", seed=4), size=16, progress=False,
                         routines=["dark", "gamma", "linearity", "settling"])
    assert list(result.results) == ["operating_point", "dark", "gamma", "linearity", "settling"]
    gamma = result.results["gamma"]
    assert isinstance(gamma, cal.GammaResult)
    assert gamma.open_fraction < 1 and abs(gamma.gamma - 2.2) < 0.01
    assert abs(gamma.black_to_peak - 1e-3) < 1e-4
    dark = result.results["dark"]
    assert isinstance(dark, cal.DarkResult) and dark.leakage_ratio is not None
    assert abs(dark.leakage_ratio - 1e-3) < 4 * (dark.leakage_ratio_u or 0)
    lin = result.results["linearity"]
    assert isinstance(lin, cal.LinearityResult) and lin.n_saturated == 0
    assert max(lin.open_fractions) < 1


def test_fit_monitor_gamma_with_a_partial_on_mask_matches_the_full_one():
    wide = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40),
                   digitizer=DigitizerConfig(range_v=10.0))
    full = cal.fit_monitor_gamma(SimBench("full", seed=5, config=wide), size=16, repeats=8)
    part = cal.fit_monitor_gamma(SimBench("full", seed=5, config=wide), size=16, repeats=8,
                                 open_fraction=0.25)
    assert full.open_fraction == 1.0 and "open_fraction" not in full.to_dict()
    assert part.open_fraction == 0.25 and "(0.25 open - off)" in part.summary()
    assert abs(part.gamma - full.gamma) < 3 * math.hypot(part.gamma_u, full.gamma_u) + 1e-3
    assert part.peak_v == pytest.approx(0.25 * full.peak_v, rel=0.01)
    with pytest.raises(ConfigError, match="open_fraction"):
        cal.fit_monitor_gamma(SimBench(config=wide), size=16, open_fraction=0.0)
    with pytest.raises(ConfigError, match="opens no mirror"):
        cal.fit_monitor_gamma(SimBench(config=wide), size=16, open_fraction=0.005)


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


def test_check_reports_the_fraction_of_the_range_and_a_recommendation():
    result = _run(["check", "detector"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ok  brightest typical reading" in out and "of the +-0.5 V range" in out
    assert "recommended: 50 dB, +-0.5 V" in out and "(the current setting)" in out
    assert "settling residual after one pattern" in out
    wasted = _run(["check", "detector", "--gain-db", "40", "--range-v", "10"])
    assert wasted.exit_code == 0, wasted.output  # a warning, not a failure
    assert "!!  brightest typical reading" in wasted.output
    assert "range wasted: ADC step dominates" in wasted.output
    assert "recommended: 50 dB, +-0.5 V" in wasted.output
    bad = _run(["check", "detector", "--range-v", "3"])
    assert bad.exit_code == 0  # the simulator takes any range
    twin = _run(["check", "detector", "--backend", "fake-hw", "--range-v", "3"])
    assert twin.exit_code == 2 and "allowed: ±0.1, ±0.2, ±0.5" in twin.output


def test_simulate_reports_the_fraction_of_full_scale(tmp_path):
    result = _run(["simulate", "--noise", "none", "--m", "32", "--size", "32", "--no-plot",
                   "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "full scale used" in result.output and "inside the 30%-80% band" in result.output
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["range_v"] == 0.5 and summary["operating_point"] == "ok"
    assert FRACTION_LOW <= summary["fraction_of_full_scale"] <= FRACTION_HIGH


def test_monitor_default_is_the_light_knob():
    """The light level (monitor brightness) is what was adjusted to place the readings;
    its black level keeps the 1/1000 ratio."""
    mon = MonitorConfig()
    assert 200 <= mon.peak_luminance_cd_m2 <= 400  # an office monitor


def test_the_real_bench_is_declared_at_the_same_operating_point():
    """``open_hardware_bench`` takes gain and range from the config (default: the default
    operating point) and checks the range before any device is opened."""
    import inspect

    from lsi_hw.benches import open_hardware_bench

    params = inspect.signature(open_hardware_bench).parameters
    assert params["gain_db"].default is None and params["range_v"].default is None
    with pytest.raises(ConfigError, match="range_v=-1"):
        open_hardware_bench(range_v=-1.0)
    with pytest.raises(ConfigError, match="gain_db=45"):
        open_hardware_bench(gain_db=45)
