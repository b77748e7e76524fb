"""The torch twin of the forward model (lsi_hw.sim.torch_model) against the numpy chain.

Tolerances
----------
- float64 model vs numpy ``expected_volts(method="numpy")``: rtol 1e-9 (observed ~1e-15).
- float32 model vs numpy: max error <= 1e-5 x the largest |reading| (observed ~3e-7).
- noiseless ``forward`` vs numpy ``measure_volts`` (noise off): within one LSB (a reading
  within rounding error of a code boundary may round either way), and equal almost always.
- statistics: sample means and variances within 5 standard errors of the Poisson /
  Gaussian model (false-failure rate < 1e-5 per check; seeded, so deterministic anyway).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsi_hw.errors import ConfigError, PatternError
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import (
    ELEMENTARY_CHARGE_C,
    AmplifierConfig,
    DigitizerConfig,
    NoiseConfig,
    PhotodiodeConfig,
    TimingConfig,
    settle,
    settling_coefficients,
)
from lsi_hw.sim.forward import SimConfig, expected_volts, irradiance, measure_volts
from lsi_hw.sim.optics import DMDConfig, RelayOpticsConfig
from lsi_hw.sim.scene import MonitorConfig
from lsi_hw.sim.torch_model import (
    TorchForwardModel,
    binarize_ste,
    flicker_factors_torch,
    round_ste,
    safe_pow,
    settle_torch,
    shot_noise_torch,
)
from lsi_hw.specs import PDA100A2_GAINS

RTOL64 = 1e-9
RTOL32 = 1e-5

MISALIGNED = RelayOpticsConfig(
    rotation_deg=3.5,
    scale=1.07,
    shift_px=(0.7, -1.3),
    blur_sigma_px=1.3,
    vignetting_half_field_deg=20.0,
)


def _scenes_u8(b: int, shape: tuple[int, int], rgb: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(b, *shape, 3) if rgb else (b, *shape), dtype=np.uint8)


def _masks(patterns: PatternSet) -> torch.Tensor:
    """uint8 mask tensor (a writable copy of the read-only PatternSet array)."""
    return torch.from_numpy(np.array(patterns.masks))


def _torch_expected(
    cfg: SimConfig,
    scenes: np.ndarray,
    patterns: PatternSet,
    dtype: torch.dtype = torch.float64,
    float_scenes: bool = True,
) -> np.ndarray:
    model = TorchForwardModel(cfg, patterns.shape, scenes.shape[1:3], dtype=dtype)
    x = torch.from_numpy(scenes)
    if float_scenes and scenes.dtype == np.uint8:
        x = x.to(torch.float64) / 255.0
    masks = torch.from_numpy(patterns.masks.astype(np.float64))
    out = model.expected(x, masks)
    assert out.dtype == dtype
    return out.detach().to(torch.float64).numpy()


def _assert_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


# -- noiseless agreement with numpy --------------------------------------------------------


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("float_scenes", [False, True])
def test_default_config_matches_numpy(rgb: bool, float_scenes: bool) -> None:
    cfg = SimConfig()
    pats = PatternSet.random(24, (32, 32), seed=1)
    scenes = _scenes_u8(3, (32, 32), rgb)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    got = _torch_expected(cfg, scenes, pats, float_scenes=float_scenes)
    _assert_close(got, want, RTOL64)


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("scene_shape", [(40, 36), (32, 32), (17, 23)])
def test_misaligned_optics_matches_numpy(rgb: bool, scene_shape: tuple[int, int]) -> None:
    cfg = SimConfig(optics=MISALIGNED)
    pats = PatternSet.random(16, (32, 32), seed=2)
    scenes = _scenes_u8(2, scene_shape, rgb, seed=3)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    _assert_close(_torch_expected(cfg, scenes, pats), want, RTOL64)
    # also the irradiance stage on its own, with float drive fractions
    model = TorchForwardModel(cfg, (32, 32), scene_shape, dtype=torch.float64)
    frac = scenes.astype(np.float64) / 255.0
    irr = model.irradiance(torch.from_numpy(frac)).numpy()
    _assert_close(irr, irradiance(frac, (32, 32), cfg), RTOL64)


def test_scene_shape_other_than_declared_is_resampled_per_call() -> None:
    cfg = SimConfig(optics=MISALIGNED)
    pats = PatternSet.random(5, (16, 16), seed=4)
    model = TorchForwardModel(cfg, (16, 16), dtype=torch.float64)  # declared 16x16
    scenes = _scenes_u8(2, (24, 20), rgb=False)
    got = model.expected(torch.from_numpy(scenes), _masks(pats)).numpy()
    _assert_close(got, expected_volts(scenes, pats, cfg, method="numpy"), RTOL64)


def test_identity_geometry_skips_resampling() -> None:
    cfg = SimConfig(optics=RelayOpticsConfig(blur_sigma_px=0.0, vignetting_half_field_deg=0.0))
    model = TorchForwardModel(cfg, (8, 12), dtype=torch.float64)
    lum = torch.rand(2, 8, 12, dtype=torch.float64)
    assert model._resample(lum) is lum
    scenes = torch.rand(2, 8, 12, dtype=torch.float64)
    irr = model.irradiance(scenes)
    scale = float(model.radiometric[0, 0])
    mon = cfg.monitor
    want = (mon.peak_luminance_cd_m2 * scenes**mon.gamma + mon.black_luminance_cd_m2) * scale
    torch.testing.assert_close(irr, want, rtol=1e-12, atol=0)


def test_low_bandwidth_gain_settling_matches_numpy() -> None:
    cfg = SimConfig(amplifier=AmplifierConfig(gain_db=70), optics=MISALIGNED)
    _, beta = settling_coefficients(cfg.amplifier, cfg.timing)
    assert beta > 0.05  # settling really matters at 70 dB
    pats = PatternSet.random(20, (16, 16), seed=5)
    scenes = _scenes_u8(3, (16, 16), rgb=True, seed=6)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    got = _torch_expected(cfg, scenes, pats)
    _assert_close(got, want, RTOL64)
    # without the settling term the readings would differ far beyond the tolerance
    unsettled = expected_volts(scenes, pats, replace(cfg, timing=TimingConfig(
        exposure_us=5000.0, period_us=5000.0, settling_delay_us=4000.0, window_us=150.0)),
        method="numpy")
    assert np.abs(unsettled - want).max() > 1e-3 * np.abs(want).max()


@pytest.mark.parametrize("a", [0.0, 0.01, 0.5, 0.97, 0.99999])
def test_settle_torch_matches_numpy(a: float) -> None:
    rng = np.random.default_rng(7)
    v = rng.normal(size=(3, 40))
    for beta in (0.0, 0.3):
        got = settle_torch(torch.from_numpy(v), a, beta).numpy()
        np.testing.assert_allclose(got, settle(v, a, beta), rtol=1e-12, atol=1e-14)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    m=st.integers(1, 20),
    b=st.integers(1, 3),
    rgb=st.booleans(),
    scene_delta=st.tuples(st.integers(-4, 6), st.integers(-4, 6)),
    rotation=st.floats(-30, 30),
    scale=st.floats(0.7, 1.4),
    shift=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
    blur=st.sampled_from([0.0, 0.3, 0.5, 1.7]),
    vignetting=st.sampled_from([0.0, 8.0, 30.0]),
    gain_db=st.sampled_from(sorted(PDA100A2_GAINS)),
    diamond=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_small_shapes_match_numpy(
    h: int, w: int, m: int, b: int, rgb: bool, scene_delta: tuple[int, int],
    rotation: float, scale: float, shift: tuple[float, float], blur: float,
    vignetting: float, gain_db: int, diamond: bool, seed: int,
) -> None:
    cfg = SimConfig(
        optics=RelayOpticsConfig(
            rotation_deg=rotation, scale=scale, shift_px=shift, blur_sigma_px=blur,
            vignetting_half_field_deg=vignetting,
        ),
        dmd=DMDConfig(diamond=diamond),
        amplifier=AmplifierConfig(gain_db=gain_db),
    )
    scene_shape = (max(1, h + scene_delta[0]), max(1, w + scene_delta[1]))
    rng = np.random.default_rng(seed)
    pats = PatternSet((rng.random((m, h, w)) < 0.5).astype(np.uint8))
    scenes = rng.integers(0, 256, size=(b, *scene_shape, *((3,) if rgb else ())), dtype=np.uint8)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    _assert_close(_torch_expected(cfg, scenes, pats), want, RTOL64)


@pytest.mark.parametrize("optics", [RelayOpticsConfig(), MISALIGNED])
@pytest.mark.parametrize("gain_db", [40, 70])
def test_float32_within_documented_tolerance(optics: RelayOpticsConfig, gain_db: int) -> None:
    cfg = SimConfig(optics=optics, amplifier=AmplifierConfig(gain_db=gain_db))
    pats = PatternSet.random(32, (32, 32), seed=8)
    scenes = _scenes_u8(4, (36, 30), rgb=True, seed=9)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    got = _torch_expected(cfg, scenes, pats, dtype=torch.float32)
    assert np.abs(got - want).max() <= RTOL32 * np.abs(want).max()


def test_accepts_patternset_numpy_and_uint8_inputs() -> None:
    cfg = SimConfig(optics=MISALIGNED)
    pats = PatternSet.random(6, (8, 12), seed=10)
    scenes = _scenes_u8(2, (9, 11), rgb=True, seed=11)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    model = TorchForwardModel(cfg, (8, 12), (9, 11), dtype=torch.float64)
    for s_in, m_in in ((scenes, pats), (torch.from_numpy(scenes), _masks(pats)),
                       (scenes, np.array(pats.masks, dtype=bool))):
        _assert_close(model.expected(s_in, m_in).numpy(), want, RTOL64)
    # noise=True on a config without noise sources is the noiseless path
    x = torch.from_numpy(scenes)
    assert torch.equal(model(x, pats, noise=True), model(x, pats, noise=False))


def test_dtype_follows_module_conversion() -> None:
    model = TorchForwardModel(SimConfig(), (8, 8))
    assert model.dtype == torch.float32
    model = model.double()
    assert model.dtype == torch.float64
    out = model.expected(torch.rand(1, 8, 8), torch.ones(2, 8, 8))
    assert out.dtype == torch.float64
    assert model.state_dict() == {}  # buffers are derived from the config


# -- gradients ------------------------------------------------------------------------------


def _grad_model() -> TorchForwardModel:
    cfg = SimConfig(optics=MISALIGNED, amplifier=AmplifierConfig(gain_db=70))
    return TorchForwardModel(cfg, (4, 5), (6, 4), dtype=torch.float64)


def test_gradcheck_expected_wrt_masks_and_scenes() -> None:
    model = _grad_model()
    gen = torch.Generator().manual_seed(0)
    scenes = (0.2 + 0.7 * torch.rand(2, 6, 4, 3, generator=gen, dtype=torch.float64))
    masks = torch.rand(3, 4, 5, generator=gen, dtype=torch.float64)
    scenes.requires_grad_(True)
    masks.requires_grad_(True)
    assert torch.autograd.gradcheck(model.expected, (scenes, masks))


def test_gradcheck_expected_grey_identity_geometry() -> None:
    model = TorchForwardModel(SimConfig(), (4, 4), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    scenes = (0.1 + 0.8 * torch.rand(2, 4, 4, generator=gen, dtype=torch.float64))
    masks = torch.rand(5, 4, 4, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        model.expected, (scenes.requires_grad_(True), masks.requires_grad_(True))
    )


@pytest.mark.parametrize("preset", ["shot", "full"])
def test_noisy_forward_has_finite_gradients(preset: str) -> None:
    cfg = replace(SimConfig(optics=MISALIGNED), noise=NoiseConfig.from_preset(preset))
    # no leakage and no dark current: all-off masks give exactly 0 A (the sqrt(0) corner)
    cfg = replace(cfg, dmd=DMDConfig(off_state_leakage=0.0),
                  photodiode=PhotodiodeConfig(dark_current_a=0.0))
    model = TorchForwardModel(cfg, (8, 8), (8, 8))
    weights = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(2))
    weights[0] = 0.0  # an all-off mask
    weights.requires_grad_(True)
    scenes = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))
    scenes[0] = 0.0  # a black scene: gamma at 0
    scenes.requires_grad_(True)
    gen = torch.Generator().manual_seed(4)
    out = model(scenes, binarize_ste(weights), generator=gen)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()
    assert scenes.grad is not None and torch.isfinite(scenes.grad).all()
    assert weights.grad.abs().sum() > 0


def test_quantization_gradient_is_straight_through() -> None:
    model = TorchForwardModel(SimConfig(), (8, 8), dtype=torch.float64)
    scenes = torch.rand(2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    masks = torch.rand(4, 8, 8, dtype=torch.float64).requires_grad_(True)
    (g_digital,) = torch.autograd.grad(model(scenes, masks, noise=False).sum(), masks)
    (g_analog,) = torch.autograd.grad(model.expected(scenes, masks).sum(), masks)
    torch.testing.assert_close(g_digital, g_analog, rtol=1e-12, atol=0)


def test_binarize_ste_forward_and_identity_gradient() -> None:
    w = torch.tensor([-0.3, 0.0, 0.2, 0.5, 0.51, 0.9, 1.0, 1.7], requires_grad=True)
    out = binarize_ste(w)
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    upstream = torch.arange(8.0)
    out.backward(upstream)
    assert torch.equal(w.grad, upstream)
    x = torch.tensor([1.4, 2.5, -0.6], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [1.0, 2.0, -1.0]
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_safe_pow_values_and_gradient() -> None:
    x = torch.tensor([-1.0, 0.0, 1e-12, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    y = safe_pow(x, 2.2)
    assert y[0] == 0 and y[1] == 0
    assert y[3] == 0.5**2.2
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0] == 0 and x.grad[1] == 0


# -- noise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mean_electrons", [30.0, 2.0e3, 5.0e7])
def test_shot_noise_variance_equals_mean_in_electrons(mean_electrons: float) -> None:
    n = 200_000
    window_s = 150e-6
    scale = window_s / ELEMENTARY_CHARGE_C  # electrons per ampere
    current = torch.full((n,), mean_electrons / scale, dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    electrons = shot_noise_torch(current, window_s, gen) * scale
    mean = electrons.mean().item()
    var = electrons.var().item()
    # standard errors: of the mean sqrt(lam/n), of a Gaussian sample variance lam sqrt(2/n)
    assert abs(mean - mean_electrons) < 5 * np.sqrt(mean_electrons / n)
    assert abs(var - mean_electrons) < 5 * mean_electrons * np.sqrt(2.0 / n)


def test_shot_noise_statistics_of_full_chain() -> None:
    """Readings of one scene repeated: variance in electrons == mean (shot only)."""
    cfg = SimConfig(noise=NoiseConfig(shot=True), digitizer=DigitizerConfig(bits=32))
    model = TorchForwardModel(cfg, (8, 8), dtype=torch.float64)
    n = 20_000
    scene = torch.rand(1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    masks = _masks(PatternSet.random(3, (8, 8), seed=1))
    out = model(scene.expand(n, 8, 8), masks, generator=torch.Generator().manual_seed(2),
                quantize=False)
    amp = cfg.amplifier
    scale = model.window_s / ELEMENTARY_CHARGE_C
    electrons = ((out - amp.offset_v) / amp.v_per_a - cfg.photodiode.dark_current_a) * scale
    lam = ((model.expected(scene, masks)[0] - amp.offset_v) / amp.v_per_a
           - cfg.photodiode.dark_current_a) * scale
    mean = electrons.mean(0)
    var = electrons.var(0)
    assert torch.all((mean - lam).abs() < 5 * torch.sqrt(lam / n))
    assert torch.all((var - lam).abs() < 5 * lam * np.sqrt(2.0 / n))


@pytest.mark.parametrize("preset", ["shot", "read", "full"])
def test_noise_statistically_equal_to_numpy(preset: str) -> None:
    cfg = SimConfig(noise=NoiseConfig.from_preset(preset), digitizer=DigitizerConfig(bits=32))
    n = 4000
    pats = PatternSet.random(3, (8, 8), seed=3)
    scene = _scenes_u8(1, (8, 8), rgb=False, seed=4)
    scenes = np.repeat(scene, n, axis=0)
    ref = measure_volts(scenes, pats, cfg, np.random.default_rng(5), method="numpy").volts
    model = TorchForwardModel(cfg, (8, 8), dtype=torch.float64)
    got = model(torch.from_numpy(scenes), _masks(pats),
                generator=torch.Generator().manual_seed(6)).numpy()
    sd_ref = ref.std(axis=0)
    sd_got = got.std(axis=0)
    # std of a sample std ~ sd / sqrt(2n) ~ 1.1 %; 5 sigma of the difference of two ~ 8 %
    np.testing.assert_allclose(sd_got, sd_ref, rtol=0.08)
    se_mean = np.sqrt(sd_ref**2 / n + sd_got**2 / n)
    assert np.all(np.abs(got.mean(0) - ref.mean(0)) < 5 * se_mean + cfg.digitizer.lsb_v)


def test_flicker_factors_have_stated_rms() -> None:
    like = torch.zeros((), dtype=torch.float64)
    f = flicker_factors_torch(1000, 1e-3, like=like, generator=torch.Generator().manual_seed(0))
    assert f.shape == (1000,)
    assert abs(f.mean().item() - 1.0) < 1e-12
    assert abs(f.std(unbiased=False).item() - 1e-3) < 1e-12
    assert torch.equal(flicker_factors_torch(1, 1e-3, like=like), torch.ones(1, dtype=like.dtype))


def test_seeded_generator_is_reproducible() -> None:
    cfg = SimConfig().with_noise("full")
    model = TorchForwardModel(cfg, (8, 8))
    scenes = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = _masks(PatternSet.random(5, (8, 8), seed=0))
    a = model(scenes, masks, generator=torch.Generator().manual_seed(42), quantize=False)
    b = model(scenes, masks, generator=torch.Generator().manual_seed(42), quantize=False)
    c = model(scenes, masks, generator=torch.Generator().manual_seed(43), quantize=False)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # noise=None follows the config, noise=False switches every source off
    quiet = model(scenes, masks, noise=False)
    assert torch.equal(quiet, model(scenes, masks, noise=False))
    off = TorchForwardModel(SimConfig(), (8, 8))
    assert torch.equal(off(scenes, masks), quiet)


def test_negative_inputs_do_not_nan() -> None:
    cfg = SimConfig(dmd=DMDConfig(off_state_leakage=0.0),
                    photodiode=PhotodiodeConfig(dark_current_a=0.0)).with_noise("full")
    model = TorchForwardModel(cfg, (6, 6), dtype=torch.float64)
    masks = (-torch.rand(4, 6, 6, dtype=torch.float64)).requires_grad_(True)  # negative power
    scenes = (torch.rand(2, 6, 6, dtype=torch.float64) - 0.5).requires_grad_(True)
    out = model(scenes, masks, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(masks.grad).all() and torch.isfinite(scenes.grad).all()
    noisy = shot_noise_torch(torch.tensor([-1e-6, 0.0, 1e-9], dtype=torch.float64), 1e-4,
                             torch.Generator().manual_seed(0))
    assert torch.isfinite(noisy).all() and noisy[0] == 0 and noisy[1] == 0


# -- saturation and digitizer ---------------------------------------------------------------


def test_quantized_values_are_multiples_of_lsb_and_match_numpy() -> None:
    cfg = SimConfig(digitizer=DigitizerConfig(range_v=1.0, bits=12, offset_v=0.01),
                    optics=MISALIGNED)
    pats = PatternSet.random(16, (16, 16), seed=12)
    scenes = _scenes_u8(4, (16, 16), rgb=True, seed=13)
    model = TorchForwardModel(cfg, (16, 16), dtype=torch.float64)
    got = model(torch.from_numpy(scenes), _masks(pats)).numpy()
    lsb = cfg.digitizer.lsb_v
    codes = got / lsb
    np.testing.assert_allclose(codes, np.rint(codes), rtol=0, atol=1e-9)
    ref = measure_volts(scenes, pats, cfg, np.random.default_rng(0), method="numpy").volts
    assert np.abs(got - ref).max() <= lsb * (1 + 1e-9)
    assert np.mean(got == ref) > 0.95


def test_clipped_at_range_and_saturation() -> None:
    # 70 dB into a 1 V digitizer: bright scenes clip at range - LSB
    cfg = SimConfig(amplifier=AmplifierConfig(gain_db=70),
                    monitor=MonitorConfig(peak_luminance_cd_m2=2000.0),
                    digitizer=DigitizerConfig(range_v=1.0, bits=8))
    model = TorchForwardModel(cfg, (8, 8), dtype=torch.float64)
    masks = torch.ones(3, 8, 8, dtype=torch.float64)
    bright = torch.ones(2, 8, 8, dtype=torch.float64)
    lsb = cfg.digitizer.lsb_v
    assert model.expected(bright, masks).min() > 1.0
    out = model(bright, masks)
    assert torch.all(out == 1.0 - lsb)
    # the amplifier saturates at 10 V (Hi-Z) before a 20 V digitizer sees it
    cfg2 = replace(cfg, digitizer=DigitizerConfig(range_v=20.0, bits=16))
    model2 = TorchForwardModel(cfg2, (8, 8), dtype=torch.float64)
    big = model2(bright, masks, quantize=False)
    torch.testing.assert_close(big, torch.full_like(big, 10.0))
    low = model2.digitize(torch.tensor([-50.0], dtype=torch.float64))
    assert low.item() == -20.0


# -- validation and devices -----------------------------------------------------------------


def test_bad_inputs_raise() -> None:
    model = TorchForwardModel(SimConfig(), (8, 8))
    with pytest.raises(PatternError):
        model.expected(torch.rand(1, 8, 8), torch.ones(2, 8, 9))
    with pytest.raises(ConfigError):
        model.expected(torch.rand(8, 8), torch.ones(2, 8, 8))
    with pytest.raises(ConfigError):
        TorchForwardModel(SimConfig(), (8, 8), dtype=torch.float16)
    with pytest.raises((ConfigError, PatternError)):
        TorchForwardModel(SimConfig(), (2000, 8))  # does not fit the DMD


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    cfg = SimConfig(optics=MISALIGNED, amplifier=AmplifierConfig(gain_db=70))
    pats = PatternSet.random(12, (16, 16), seed=14)
    scenes = _scenes_u8(3, (20, 18), rgb=True, seed=15)
    want = expected_volts(scenes, pats, cfg, method="numpy")
    for dtype, rtol in ((torch.float64, RTOL64), (torch.float32, RTOL32)):
        model = TorchForwardModel(cfg, (16, 16), (20, 18), dtype=dtype).to("cuda")
        x = torch.from_numpy(scenes).cuda()
        mk = _masks(pats).cuda()
        got = model.expected(x, mk)
        assert got.device.type == "cuda"
        _assert_close(got.double().cpu().numpy(), want, rtol)
        noisy = model(x, mk, noise=True, generator=torch.Generator().manual_seed(0))
        assert noisy.device.type == "cuda" and torch.isfinite(noisy).all()


@pytest.mark.parametrize("preset", ["shot", "full"])
def test_row_generators_make_noise_independent_of_batch_split(preset: str) -> None:
    """One generator per scene: a split batch draws exactly the noise of the whole batch
    (what DDP needs), and the noise is really there."""
    model = TorchForwardModel(SimConfig().with_noise(preset), (16, 16))
    scenes = torch.rand(4, 16, 16, 3, generator=torch.Generator().manual_seed(0)) * 0.8
    masks = (torch.rand(8, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(100 + i) for i in range(4)]

    whole = model(scenes, masks, generator=gens(), quantize=False)
    g = gens()
    split = torch.cat([model(scenes[:1], masks, generator=g[:1], quantize=False),
                       model(scenes[1:], masks, generator=g[1:], quantize=False)])
    # equal up to float round-off of the batched products (1e-7), far below the noise
    torch.testing.assert_close(whole, split, rtol=1e-6, atol=0.0)
    clean = model(scenes, masks, noise=False, quantize=False)
    assert float(((whole - clean) / clean).abs().max()) > 1e-4
    other = model(scenes, masks, generator=[torch.Generator().manual_seed(7 + i)
                                            for i in range(4)], quantize=False)
    assert not torch.equal(whole, other)
    with pytest.raises(ConfigError):
        model(scenes, masks, generator=gens()[:3])
