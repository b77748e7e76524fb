"""Property tests that pin the physical forward model (DESIGN.md's list)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import (
    AmplifierConfig,
    DigitizerConfig,
    DMDConfig,
    MonitorConfig,
    PhotodiodeConfig,
    RelayOpticsConfig,
    SimConfig,
)
from lsi_hw.sim.detector import (
    ELEMENTARY_CHARGE_C,
    NegativeIntensityWarning,
    TimingConfig,
    digitize,
    settle,
    settling_coefficients,
    shot_noise_current,
)
from lsi_hw.sim.forward import expected_volts, optical_power
from lsi_hw.sim.optics import bilinear_sample, relay_to_mask_grid, sampling_coordinates
from lsi_hw.sim.scene import inverse_gamma, monitor_luminance

MISALIGNED = RelayOpticsConfig(rotation_deg=3.0, scale=1.05, shift_px=(0.7, -1.2),
                               blur_sigma_px=0.8, vignetting_half_field_deg=12.0)


def linear_light_config(optics: RelayOpticsConfig = MISALIGNED, gain_db: int = 70) -> SimConfig:
    """Gamma 1, no black level, dark current or offsets: the chain is exactly linear."""
    return SimConfig(
        monitor=MonitorConfig(gamma=1.0, black_luminance_cd_m2=0.0),
        optics=optics,
        photodiode=PhotodiodeConfig(dark_current_a=0.0),
        amplifier=AmplifierConfig(gain_db=gain_db, offset_v=0.0),
    )


scenes_16 = st.integers(0, 2**32 - 1).map(
    lambda s: np.random.default_rng(s).uniform(0, 0.5, size=(2, 16, 16))
)


@given(s1=scenes_16, s2=scenes_16, a=st.floats(0, 1), b=st.floats(0, 1))
def test_linear_in_scene_without_noise(s1, s2, a, b):
    """Misaligned, blurred, vignetted, settling-limited (70 dB): still linear in the light."""
    cfg = linear_light_config()
    patterns = PatternSet.random(12, (16, 16), seed=1)
    y1 = expected_volts(s1, patterns, cfg, method="numpy")
    y2 = expected_volts(s2, patterns, cfg, method="numpy")
    y12 = expected_volts(a * s1 + b * s2, patterns, cfg, method="numpy")
    np.testing.assert_allclose(y12, a * y1 + b * y2, rtol=1e-9, atol=1e-15)


@given(seed=st.integers(0, 10_000), leak=st.floats(0, 0.1))
def test_complementary_masks_add_to_open_aperture(seed, leak):
    """P(m) + P(1 - m) = P(open) + P(closed): leakage included."""
    cfg = replace(linear_light_config(), dmd=DMDConfig(off_state_leakage=leak))
    rng = np.random.default_rng(seed)
    irr = rng.uniform(0, 1, size=(3, 8, 8))
    masks = PatternSet.random(5, (8, 8), seed=seed)
    comp = PatternSet(1 - masks.masks)
    open_closed = PatternSet(np.stack([np.ones((8, 8)), np.zeros((8, 8))]))
    p_m = optical_power(irr, masks, cfg, method="numpy")
    p_c = optical_power(irr, comp, cfg, method="numpy")
    p_oc = optical_power(irr, open_closed, cfg, method="numpy")
    np.testing.assert_allclose(p_m + p_c, (p_oc[:, :1] + p_oc[:, 1:]).repeat(5, axis=1),
                               rtol=1e-12)


def test_complementary_split_readings_recombine():
    """Split Hadamard readings: (+) + (-) is the same for every pair (open aperture)."""
    cfg = linear_light_config(gain_db=40)
    patterns = PatternSet.hadamard(8, m=16, split=True)
    scenes = np.random.default_rng(0).uniform(0, 1, size=(2, 8, 8))
    y = expected_volts(scenes, patterns, cfg, method="numpy")
    total = y[:, 0::2] + y[:, 1::2]
    np.testing.assert_allclose(total, total[:, :1].repeat(16, axis=1), rtol=1e-9)


#: Two-sided false-alarm probability of each statistical test below.
FALSE_ALARM = 1e-6


@given(electrons=st.floats(5.0, 1e7), seed=st.integers(0, 2**31 - 1))
def test_poisson_variance_equals_mean_in_electrons(electrons, seed):
    """Shot noise: sample variance / mean of the electron count == 1 (chi-square test).

    Under the Poisson model (n-1) s^2 / lambda ~ chi2(n-1) (normal approximation of the
    Poisson is fine for lambda >= 5); the test fails with probability FALSE_ALARM.
    """
    n = 4000
    window = 1e-4
    current = electrons * ELEMENTARY_CHARGE_C / window
    noisy, _ = shot_noise_current(np.full(n, current), window, np.random.default_rng(seed))
    counts = noisy * window / ELEMENTARY_CHARGE_C
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6 * max(1, electrons))
    stat = (n - 1) * counts.var(ddof=1) / electrons
    lo, hi = stats.chi2.ppf([FALSE_ALARM / 2, 1 - FALSE_ALARM / 2], n - 1)
    assert lo < stat < hi
    z = (counts.mean() - electrons) / math.sqrt(electrons / n)
    assert abs(z) < stats.norm.ppf(1 - FALSE_ALARM / 2)


def test_negative_intensities_are_clipped_and_counted():
    current = np.array([1e-9, -2e-9, 0.0, -1e-12])
    with pytest.warns(NegativeIntensityWarning, match="2 negative"):
        noisy, n_neg = shot_noise_current(current, 1e-4, np.random.default_rng(0))
    assert n_neg == 2
    assert np.all(noisy[[1, 3]] == 0) and np.all(np.isfinite(noisy))


@given(
    volts=st.lists(st.floats(-30, 30), min_size=1, max_size=50),
    bits=st.integers(2, 24),
    range_v=st.sampled_from([0.1, 1.0, 5.0, 10.0]),
)
def test_quantization_error_at_most_half_lsb_and_clipping(volts, bits, range_v):
    cfg = DigitizerConfig(range_v=range_v, bits=bits)
    v = np.array(volts)
    out, clipped = digitize(v, cfg)
    inside = (v >= -range_v) & (v <= range_v - cfg.lsb_v)
    assert np.all(np.abs(out[inside] - v[inside]) <= cfg.lsb_v / 2 + 1e-12)
    assert np.all(out >= -range_v - 1e-12) and np.all(out <= range_v - cfg.lsb_v + 1e-12)
    assert np.all(clipped[v > range_v]) and np.all(clipped[v < -range_v - cfg.lsb_v])
    np.testing.assert_allclose(out / cfg.lsb_v, np.round(out / cfg.lsb_v), atol=1e-6)


@given(gamma=st.floats(0.5, 3.5), peak=st.floats(50, 1000))
def test_gamma_monotone_and_invertible(gamma, peak):
    cfg = MonitorConfig(gamma=gamma, peak_luminance_cd_m2=peak, black_luminance_cd_m2=peak / 1e3)
    drive = np.arange(256, dtype=np.uint8).reshape(1, 1, 256)
    lum = monitor_luminance(drive, cfg)[0, 0]
    assert np.all(np.diff(lum) > 0)
    np.testing.assert_allclose(inverse_gamma(lum, cfg), np.arange(256) / 255, atol=1e-9)
    # float drive (fractions) gives the same as uint8 drive
    np.testing.assert_allclose(monitor_luminance(drive / 255.0, cfg)[0, 0], lum, rtol=1e-12)


def test_rgb_weights_reduce_grey_to_the_same_curve():
    cfg = MonitorConfig()
    grey = np.random.default_rng(0).integers(0, 256, (2, 5, 7)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=3)
    np.testing.assert_allclose(monitor_luminance(rgb, cfg), monitor_luminance(grey, cfg))


@given(seed=st.integers(0, 1000), h=st.integers(2, 20), w=st.integers(2, 20))
def test_identity_misalignment_is_a_no_op(seed, h, w):
    lum = np.random.default_rng(seed).uniform(0, 100, (2, h, w))
    ideal = RelayOpticsConfig(blur_sigma_px=0.0, vignetting_half_field_deg=0.0)
    out = relay_to_mask_grid(lum, (h, w), ideal)
    from lsi_hw.sim.optics import irradiance_w_m2_per_cd_m2

    np.testing.assert_array_equal(out, lum * irradiance_w_m2_per_cd_m2(ideal))
    # the resampling path itself, forced with identity coordinates, also returns the input
    coords = sampling_coordinates((h, w), (h, w), ideal)
    np.testing.assert_allclose(bilinear_sample(lum, coords), lum, rtol=1e-12)


def test_shift_moves_the_image():
    lum = np.zeros((1, 16, 16))
    lum[0, 5, 7] = 1.0
    cfg = RelayOpticsConfig(shift_px=(2.0, -3.0), blur_sigma_px=0.0,
                            vignetting_half_field_deg=0.0)
    out = bilinear_sample(lum, sampling_coordinates((16, 16), (16, 16), cfg))
    assert np.unravel_index(np.argmax(out[0]), (16, 16)) == (7, 4)


def test_misalignment_really_changes_the_readings():
    patterns = PatternSet.random(8, (16, 16), seed=3)
    scene = np.random.default_rng(1).uniform(0, 1, (1, 16, 16))
    y0 = expected_volts(scene, patterns, linear_light_config(RelayOpticsConfig()), "numpy")
    y1 = expected_volts(scene, patterns, linear_light_config(MISALIGNED), "numpy")
    assert np.max(np.abs(y1 - y0)) > 1e-3 * np.max(np.abs(y0))


@given(values=st.lists(st.floats(-5, 5), min_size=1, max_size=40))
def test_settling_with_infinite_bandwidth_is_a_no_op(values):
    v = np.array([values])
    np.testing.assert_array_equal(settle(v, 0.0, 0.0), v)
    # and so is any settling on a constant sequence
    const = np.full((1, len(values)), 2.5)
    np.testing.assert_allclose(settle(const, 0.7, 0.3), const, rtol=1e-12)


@given(values=st.lists(st.floats(0, 5), min_size=1, max_size=40),
       a=st.floats(0.0, 0.95), beta=st.floats(0.0, 1.0))
def test_settling_matches_the_step_by_step_recursion(values, a, beta):
    v = np.array(values)
    state = v[0]
    expected = []
    for k in range(len(v)):
        if k > 0:
            state = a * state + (1 - a) * v[k - 1]
        expected.append(v[k] + beta * (state - v[k]))
    np.testing.assert_allclose(settle(v[None], a, beta)[0], expected, rtol=1e-9, atol=1e-12)


def test_settling_coefficients_depend_on_bandwidth():
    timing = TimingConfig()
    a_fast, beta_fast = settling_coefficients(AmplifierConfig(gain_db=0), timing)
    a_slow, beta_slow = settling_coefficients(AmplifierConfig(gain_db=70), timing)
    assert beta_fast < 1e-30 and a_fast < 1e-30
    assert 0.01 < beta_slow < 0.5 and 0 < a_slow < 0.1


def test_saturation_into_50_ohm_is_5_volts():
    assert AmplifierConfig(load="50ohm").saturation_v == 5.0
    assert AmplifierConfig(gain_db=40, load="50ohm").v_per_a == pytest.approx(0.5 * 1.51e5)
    with pytest.raises(ConfigError, match="allowed: 0, 10"):
        AmplifierConfig(gain_db=45)
    with pytest.raises(ConfigError, match="load"):
        AmplifierConfig(load="1kohm")


def test_bad_timing_is_rejected():
    with pytest.raises(ConfigError, match="exceeds exposure_us"):
        TimingConfig(settling_delay_us=200, window_us=100)


def test_radiometry_order_of_magnitude():
    """Open aperture on a white screen at 40 dB: tens to hundreds of mV (a plausible bench)."""
    cfg = replace(SimConfig(), amplifier=AmplifierConfig(gain_db=40))
    white = np.full((1, 256, 256), 255, dtype=np.uint8)
    y = expected_volts(white, PatternSet(np.ones((1, 256, 256))), cfg, method="numpy")
    assert 0.05 < y[0, 0] < 1.0
    # and it follows the gain table: +30 dB = x31.5
    cfg70 = replace(cfg, amplifier=AmplifierConfig(gain_db=70, offset_v=cfg.amplifier.offset_v))
    y70 = expected_volts(white, PatternSet(np.ones((1, 256, 256))), cfg70, method="numpy")
    dark40 = cfg.amplifier.v_per_a * 1e-9 + cfg.amplifier.offset_v
    dark70 = cfg70.amplifier.v_per_a * 1e-9 + cfg.amplifier.offset_v
    assert (y70[0, 0] - dark70) / (y[0, 0] - dark40) == pytest.approx(4.75e6 / 1.51e5)


def test_noise_presets_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SimConfig().with_noise("none")
    with pytest.raises(ConfigError, match="allowed: none, shot, read, full"):
        SimConfig().with_noise("loud")


@given(
    seed=st.integers(0, 1000),
    h=st.integers(3, 24),
    w=st.integers(3, 24),
    rgb=st.booleans(),
    blur=st.sampled_from([0.0, 0.4, 1.3]),
    vignette=st.sampled_from([0.0, 15.0]),
)
def test_fused_numba_image_side_equals_numpy(seed, h, w, rgb, blur, vignette):
    """numba == numpy for the monitor + relay stages (float32 vs float64 reference)."""
    from lsi_hw.sim.forward import irradiance
    from lsi_hw.sim.fused import fused_irradiance_u8

    cfg = SimConfig(optics=RelayOpticsConfig(blur_sigma_px=blur,
                                             vignetting_half_field_deg=vignette))
    shape = (2, h, w, 3) if rgb else (2, h, w)
    scenes = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    ref = irradiance(scenes, (h, w), cfg, method="numpy")
    fast = fused_irradiance_u8(scenes, cfg.monitor, cfg.optics)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, rtol=2e-6, atol=1e-6 * ref.max())


@given(
    seed=st.integers(0, 1000),
    m=st.integers(1, 40),
    side=st.sampled_from([8, 16]),
    rgb=st.booleans(),
    hadamard=st.booleans(),
    gain_db=st.sampled_from([40, 70]),
)
def test_whole_chain_numba_equals_numpy_equals_torch(seed, m, side, rgb, hadamard, gain_db):
    """expected_volts through the numba planner, the dense numpy reference and the torch
    twin agree (numba works in float32: relative 1e-5 of the largest reading)."""
    import torch

    from lsi_hw.sim.torch_model import TorchForwardModel

    cfg = SimConfig(amplifier=AmplifierConfig(gain_db=gain_db))
    rng = np.random.default_rng(seed)
    scenes = rng.integers(0, 256, (3, side, side, 3) if rgb else (3, side, side), dtype=np.uint8)
    patterns = (PatternSet.hadamard(side, m=min(m, side * side), split=True) if hadamard
                else PatternSet.random(m, (side, side), seed=seed))
    ref = expected_volts(scenes, patterns, cfg, method="numpy")
    fast = expected_volts(scenes, patterns, cfg, method="auto")
    model = TorchForwardModel(cfg, (side, side), dtype=torch.float64)
    twin = model.expected(torch.from_numpy(scenes), torch.tensor(patterns.masks)).numpy()
    scale = np.abs(ref).max()
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(twin, ref, rtol=1e-9, atol=1e-12 * scale)
