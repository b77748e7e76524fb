"""Tests of lsi_hw.reconstruction: Hadamard least squares, TV (FISTA), differential ghost imaging.

Scenes are 32 x 32 (the built-in targets plus a disc, a bar pattern and a piecewise-constant
mix) measured through :class:`lsi_hw.sim.SimBench` with noise "none" and "shot".  The
reference is the irradiance on the mask grid (:func:`lsi_hw.sim.forward.irradiance`): what
the detector actually integrates, after the monitor gamma, black level and relay optics.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.reconstruction import (
    differential_ghost_imaging,
    hadamard_least_squares,
    normalise_images,
    preview_reconstruction,
    tv_reconstruction,
)
from lsi_hw.sim import SimBench
from lsi_hw.sim.forward import irradiance
from lsi_hw.sim.kernels import fwht
from lsi_hw.testscenes import builtin_scenes

N = 32
NOISES = ["none", "shot"]


def _synthetic(n: int) -> np.ndarray:
    """Disc, vertical bars and a piecewise-constant mix, (3, n, n, 3) uint8."""
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - 0.45 * n) ** 2 + (xx - 0.53 * n) ** 2 < (0.28 * n) ** 2
    bars = ((xx // max(n // 8, 1)) % 2 == 0) & (yy > n // 8) & (yy < n - n // 8)
    mix = np.where(disc, 200, 30)
    mix = np.where(bars & ~disc, 120, mix)
    grey = [np.where(disc, 220, 20), np.where(bars, 220, 20), mix]
    return np.stack([np.repeat(np.uint8(g)[..., None], 3, axis=2) for g in grey])


SYNTH = _synthetic(N)
SCENES = np.concatenate([builtin_scenes(N)[0], SYNTH])


def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per image (B,)."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def rmse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference per image after mapping both to [0, 1] (B,)."""
    diff = normalise_images(a) - normalise_images(b)
    return np.sqrt((diff**2).mean(axis=(1, 2)))


def measure(scenes: np.ndarray, patterns: PatternSet, noise: str, seed: int = 1):
    """Readings (B, m) volts and the irradiance reference (B, H, W) W/m^2."""
    bench = SimBench(noise=noise, seed=seed)
    values = bench.measure(scenes, patterns).values
    return values, irradiance(scenes, patterns.shape, bench.config)


# ------------------------------------------------------------------------------------------
# Hadamard least squares
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("split", [False, True])
def test_hadamard_full_set_recovers_scene(noise: str, split: bool) -> None:
    patterns = PatternSet.hadamard(N, split=split)
    values, ref = measure(SCENES, patterns, noise)
    images = hadamard_least_squares(patterns, values)
    assert images.shape == (len(SCENES), N, N)
    assert images.min() >= 0.0 and images.max() <= 1.0
    c = corr(images, ref)
    print(f"hadamard full split={split} noise={noise}: corr {np.round(c, 4)}")
    assert np.all(c > 0.99), c


def test_hadamard_order_and_gain_offset_invariance() -> None:
    seq = PatternSet.hadamard(N, order="sequency")
    rnd = PatternSet.hadamard(N, order="random", seed=5)
    v_seq, _ = measure(SCENES[:2], seq, "none")
    v_rnd, _ = measure(SCENES[:2], rnd, "none")
    a = hadamard_least_squares(seq, v_seq)
    np.testing.assert_allclose(hadamard_least_squares(rnd, v_rnd), a, atol=1e-9)
    np.testing.assert_allclose(hadamard_least_squares(seq, 3.0 * v_seq - 0.7), a, atol=1e-9)
    neg = PatternSet.hadamard(N, split=True)[1::2]  # the complements only: signs -1
    assert not neg.is_split and np.all(neg.hadamard_signs == -1)
    v_neg, ref = measure(SCENES[:2], neg, "none")
    assert np.all(corr(hadamard_least_squares(neg, v_neg), ref) > 0.99)


def test_hadamard_offset_choice_on_noiseless_readings() -> None:
    """Non-split sets leave one offset free; 'smooth' fills pixel (0, 0) from its neighbours."""
    patterns = PatternSet.hadamard(N)
    bench = SimBench(noise="none")
    values = bench.expected(SCENES, patterns).values  # analog: no quantisation
    ref = normalise_images(irradiance(SCENES, patterns.shape, bench.config))
    errors = {}
    for offset in ("min-norm", "smooth"):
        images = hadamard_least_squares(patterns, values, offset=offset)
        err = np.abs(images - ref)
        errors[offset] = err
        assert np.all(corr(images, ref) > 0.999)
        # away from pixel (0, 0) both are exact least-squares images
        assert err.reshape(len(err), -1)[:, 1:].max() < 2e-3 + err[:, 0, 0].max()
    print(f"pixel (0, 0) error min-norm {np.round(errors['min-norm'][:, 0, 0], 4)}, "
          f"smooth {np.round(errors['smooth'][:, 0, 0], 4)}")
    astronaut = 3
    assert errors["smooth"][astronaut, 0, 0] < 0.75 * errors["min-norm"][astronaut, 0, 0]
    with pytest.raises(ConfigError):
        hadamard_least_squares(patterns, values, offset="zero")


def _lowpass(ref: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The reference restricted to the Walsh-Hadamard rows measured (B, H, W)."""
    n = ref.shape[1] * ref.shape[2]
    z = fwht(ref.reshape(len(ref), -1), axis=-1)
    keep = np.zeros(n, dtype=bool)
    keep[rows] = True
    return (fwht(np.where(keep, z, 0.0), axis=-1) / n).reshape(ref.shape)


@pytest.mark.parametrize("noise", NOISES)
def test_hadamard_quarter_set_gives_low_pass(noise: str) -> None:
    m = N * N // 4
    had = PatternSet.hadamard(N, m=m, order="sequency")
    values, ref = measure(SCENES, had, noise)
    images = hadamard_least_squares(had, values)
    c_low = corr(images, _lowpass(ref, had.hadamard_rows))
    rnd = PatternSet.random(m, N, seed=3)
    r_values, _ = measure(SCENES, rnd, noise)
    ridge, _ = preview_reconstruction(rnd, r_values)
    c_had, c_ridge = corr(images, ref), corr(ridge, ref)
    print(f"m={m} noise={noise}: hadamard vs low-pass {np.round(c_low, 4)}, vs scene "
          f"{np.round(c_had, 3)}; random+ridge vs scene {np.round(c_ridge, 3)}")
    assert np.all(c_low > 0.99), c_low
    assert np.all(c_had > c_ridge + 0.2), (c_had, c_ridge)


def test_dense_fallback_for_random_masks() -> None:
    n = 16
    scenes = _synthetic(n)
    patterns = PatternSet.random(2 * n * n, n, seed=7)
    assert not patterns.is_hadamard
    values, ref = measure(scenes, patterns, "none")
    images = hadamard_least_squares(patterns, values)
    c = corr(images, ref)
    print(f"dense least squares, random m=2n, 16x16: corr {np.round(c, 4)}")
    assert np.all(c > 0.99), c


# ------------------------------------------------------------------------------------------
# total variation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", NOISES)
def test_tv_beats_ridge_on_piecewise_constant(noise: str) -> None:
    m = N * N // 4
    patterns = PatternSet.random(m, N, seed=3)
    values, ref = measure(SYNTH, patterns, noise)
    tv = tv_reconstruction(patterns, values)
    ridge, _ = preview_reconstruction(patterns, values)
    e_tv, e_ridge = rmse(tv, ref), rmse(ridge, ref)
    print(f"TV vs ridge, random m=n/4, noise={noise}: rmse TV {np.round(e_tv, 3)}, "
          f"ridge {np.round(e_ridge, 3)}; corr TV {np.round(corr(tv, ref), 4)}, "
          f"ridge {np.round(corr(ridge, ref), 4)}")
    assert np.all(e_tv < 0.5 * e_ridge), (e_tv, e_ridge)
    assert np.all(corr(tv, ref) > 0.95)


def test_tv_batch_gain_offset_and_split() -> None:
    m = N * N // 4
    patterns = PatternSet.random(m, N, seed=3)
    values, ref = measure(SYNTH, patterns, "none")
    batch = tv_reconstruction(patterns, values, iters=60)
    one = tv_reconstruction(patterns, values[1], iters=60)
    np.testing.assert_allclose(one[0], batch[1], atol=1e-9)
    scaled = tv_reconstruction(patterns, 2.5 * values + 0.3, iters=60)
    np.testing.assert_allclose(scaled, batch, atol=1e-6)
    split = PatternSet.random(m, N, seed=3).complementary()  # m pairs, 2m masks
    s_values, _ = measure(SYNTH, split, "none")
    assert np.all(corr(tv_reconstruction(split, s_values), ref) > 0.95)


def test_tv_regularisation_strength_and_box() -> None:
    patterns = PatternSet.random(N * N // 4, N, seed=3)
    values, _ = measure(SYNTH[:1], patterns, "none")
    weak = tv_reconstruction(patterns, values, lam=0.0, iters=40, normalise=False)
    strong = tv_reconstruction(patterns, values, lam=0.3, iters=40, normalise=False)
    assert weak.min() >= 0.0 and weak.max() <= 1.0
    tv = [np.abs(np.diff(x[0], axis=0)).sum() + np.abs(np.diff(x[0], axis=1)).sum()
          for x in (weak, strong)]
    assert tv[1] < 0.7 * tv[0], tv


# ------------------------------------------------------------------------------------------
# differential ghost imaging
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", NOISES)
def test_dgi_improves_with_m(noise: str) -> None:
    scores = []
    for i, m in enumerate((256, 1024, 4096)):
        patterns = PatternSet.random(m, N, seed=10 + i)
        values, ref = measure(SCENES, patterns, noise)
        scores.append(corr(differential_ghost_imaging(patterns, values), ref))
    print(f"DGI noise={noise}: corr at m=256/1024/4096: "
          + "; ".join(str(np.round(s, 3)) for s in scores))
    assert np.all(scores[0] > 0.25)
    assert np.all(scores[1] > scores[0] + 0.1)
    assert np.all(scores[2] > scores[1] + 0.1)


def test_dgi_is_ferri_formula_and_offset_handling() -> None:
    rng = np.random.default_rng(0)
    patterns = PatternSet.random(300, 8, p=0.3, seed=1)
    x = rng.random((2, 64))
    b = patterns.masks.reshape(300, -1).astype(np.float64)
    y = x @ b.T
    s = b.sum(axis=1)
    ferri = (y @ b) / 300 - (y.mean(axis=1) / s.mean())[:, None] * (s @ b / 300)[None, :]
    got = differential_ghost_imaging(patterns, y, offset_v=0.0, normalise=False)
    np.testing.assert_allclose(got.reshape(2, -1), ferri, rtol=1e-10, atol=1e-12)
    shifted = differential_ghost_imaging(patterns, y + 0.4, offset_v=0.4, normalise=False)
    np.testing.assert_allclose(shifted, got, rtol=1e-9, atol=1e-12)
    # unknown offset: estimated, so adding one changes nothing
    est = differential_ghost_imaging(patterns, y)
    np.testing.assert_allclose(differential_ghost_imaging(patterns, 2.0 * y + 1.5), est,
                               atol=1e-9)
    assert np.all(corr(est, x.reshape(2, 8, 8)) > 0.3)


# ------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------

METHODS: list[Callable[..., np.ndarray]] = [
    hadamard_least_squares,
    tv_reconstruction,
    differential_ghost_imaging,
]


@pytest.mark.parametrize("method", METHODS, ids=lambda f: f.__name__)
def test_bad_inputs_raise_config_error(method: Callable[..., np.ndarray]) -> None:
    patterns = PatternSet.hadamard(8, m=16)
    good = np.ones((2, 16))
    nan = good.copy()
    nan[1, 3] = np.nan
    inf = good.copy()
    inf[0, 0] = np.inf
    for bad in (np.ones((2, 15)), np.ones((2, 2, 16)), np.ones((0, 16)), nan, inf,
                good.astype(complex), np.array("x")):
        with pytest.raises(ConfigError):
            method(patterns, bad)
    with pytest.raises(ConfigError):
        method(patterns.masks, good)
    with pytest.raises(ConfigError):
        method(patterns, good, normalise="yes")
    assert method(patterns, good).shape == (2, 8, 8)


@pytest.mark.parametrize(
    "kwargs",
    [{"lam": -0.1}, {"lam": float("nan")}, {"iters": 0}, {"iters": 2.5},
     {"method": "admm"}, {"inner_iters": 0}, {"box": 1}],
)
def test_tv_bad_settings(kwargs: dict) -> None:
    patterns = PatternSet.random(16, 8, seed=0)
    with pytest.raises(ConfigError):
        tv_reconstruction(patterns, np.ones((1, 16)), **kwargs)


def test_dgi_bad_offset() -> None:
    patterns = PatternSet.random(16, 8, seed=0)
    with pytest.raises(ConfigError):
        differential_ghost_imaging(patterns, np.ones((1, 16)), offset_v=float("inf"))


def test_importable_without_torch() -> None:
    code = "import sys, lsi_hw.reconstruction; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


def test_dense_size_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    import lsi_hw.reconstruction as bl

    monkeypatch.setattr(bl, "MAX_DENSE_ENTRIES", 1000)
    rnd = PatternSet.random(32, 8, seed=0)  # 32 x 64 = 2048 entries
    for method in METHODS:
        with pytest.raises(ConfigError, match="dense"):
            method(rnd, np.ones((1, 32)))
    had = PatternSet.hadamard(8)  # the fast path needs no dense matrix
    assert hadamard_least_squares(had, np.arange(64.0)).shape == (1, 8, 8)
