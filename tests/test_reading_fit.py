"""Fitting a decoded latent to its own readings (lsi_ml.latent.reading_fit): the solver on a toy
generator whose answer is known, its guarantees, and the bench twin's noise model."""

from __future__ import annotations

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.latent.reading_fit import ReadingFitConfig, TwinReadings, fit_latent_to_readings


class _ToyGenerator:
    """A smooth nonlinear generator of 8x8 single-tone images from a (2, 3) latent."""

    def __init__(self) -> None:
        self.w = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)) * 0.6

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        grey = torch.sigmoid(latent.flatten(1) @ self.w.T).reshape(-1, 1, 8, 8)
        return grey.expand(-1, 3, 8, 8)


def _toy_problem(n: int = 6, noise: float = 1e-3):
    gen = _ToyGenerator()
    masks = (torch.rand(24, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()

    def readings_of(images: torch.Tensor) -> torch.Tensor:
        return images.mean(1).flatten(1) @ masks.T

    truth = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = readings_of(gen.synthesize(truth))
    y = y + noise * torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    start = truth + 0.5 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(4))
    return gen, readings_of, y, truth, start, torch.full((24,), noise)


def test_fit_recovers_the_latent_that_explains_the_readings() -> None:
    gen, readings_of, y, truth, start, sigma = _toy_problem()
    result = fit_latent_to_readings(gen, readings_of, y, start, sigma,
                                    ReadingFitConfig(iters=30, prior_weight=1e-6))
    err_start = (start - truth).abs().max().item()
    err_fit = (result.latent - truth).abs().max().item()
    assert err_fit < 0.05 < err_start
    assert float(result.chi2.max()) < 3.0 < float(result.chi2_start.min())


def test_fit_never_ends_worse_and_zero_iterations_is_the_start() -> None:
    gen, readings_of, y, _, start, sigma = _toy_problem()
    same = fit_latent_to_readings(gen, readings_of, y, start, sigma, ReadingFitConfig(iters=0))
    assert torch.equal(same.latent, start) and torch.equal(same.chi2, same.chi2_start)
    # a huge finite-difference step gives poor Jacobians: steps get rejected, never taken
    rough = fit_latent_to_readings(gen, readings_of, y, start, sigma,
                                   ReadingFitConfig(iters=5, fd_step=5.0, prior_weight=0.0))
    assert bool((rough.chi2 <= rough.chi2_start + 1e-6).all())


def test_fit_refuses_bad_input() -> None:
    gen, readings_of, y, _, start, sigma = _toy_problem()
    with pytest.raises(ConfigError, match="same n"):
        fit_latent_to_readings(gen, readings_of, y[:3], start, sigma)
    with pytest.raises(ConfigError, match="sigma"):
        fit_latent_to_readings(gen, readings_of, y, start, torch.zeros(24))
    for bad in ({"iters": -1}, {"damping": 0.0}, {"fd_step": -1.0}, {"noise_draws": 1},
                {"iters": 4.5}, {"flip_window": float("nan")}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ReadingFitConfig(**bad)


def test_twin_noise_sigma_follows_shot_noise() -> None:
    """The twin's sigma grows with the signal (shot noise) and is ~0 only at quantisation."""
    from lsi_hw.sim.forward import SimConfig
    from lsi_ml.latent.optical import OpticalEncoder

    optical = OpticalEncoder(16, (32, 32), SimConfig().with_noise("shot"))
    twin = TwinReadings(optical)
    dim, bright = torch.full((2, 3, 32, 32), 0.2), torch.full((2, 3, 32, 32), 0.9)
    s_dim, s_bright = twin.noise_sigma(dim), twin.noise_sigma(bright)
    assert s_dim.shape == (2, 16) and bool((s_dim > 0).all())
    assert float(s_bright.mean()) > 1.3 * float(s_dim.mean())
    quiet = TwinReadings(OpticalEncoder(16, (32, 32), SimConfig().with_noise("none")))
    lsb = quiet.physics.lsb_v
    assert torch.allclose(quiet.noise_sigma(bright), torch.full((2, 16), lsb / 12 ** 0.5))
    with torch.no_grad():
        assert twin(bright).shape == (2, 16)


def test_attribute_switches_cross_what_a_local_fit_cannot() -> None:
    """Start at the true faces with the smile switched the wrong way: the local fit alone
    stays on the wrong side, the switch moves bring most smiles back."""
    from lsi_hw.sim.forward import SimConfig
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.optical import OpticalEncoder

    gen = SynthFace(32, seed=0)
    twin = TwinReadings(OpticalEncoder(64, (32, 32), SimConfig().with_noise("shot"), seed=3))
    truth = gen.sample_latent(6, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        images = gen.synthesize(truth)
        y, sigma = twin(images), twin.noise_sigma(images)
    wrong = gen.attribute_flips(truth)[:, 0]  # smiling switched
    smiling = gen.attributes(truth)[:, 0]
    local = fit_latent_to_readings(gen, twin, y, wrong, sigma,
                                   ReadingFitConfig(iters=2, flip_iters=0))
    moves = fit_latent_to_readings(gen, twin, y, wrong, sigma,
                                   ReadingFitConfig(iters=2, flip_iters=2, flip_window=3.0))
    right_local = (gen.attributes(local.latent)[:, 0] == smiling).float().mean()
    right_moves = (gen.attributes(moves.latent)[:, 0] == smiling).float().mean()
    assert float(right_moves) >= 0.8 > float(right_local)
    assert bool((moves.chi2 <= local.chi2 + 1e-3).all())
