"""Generative-prior reconstruction (lsi_ml.baselines.generative_prior): recovery, invariance,
errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_hw.sim.forward import SimConfig
from lsi_ml.baselines.generative_prior import generative_prior_reconstruct
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.optical import OpticalEncoder

SIZE = 32
M = 256


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1 / (a - b).pow(2).flatten(1).mean(1))


@pytest.fixture(scope="module")
def setup() -> dict:
    gen = SynthFace(SIZE, seed=0)
    cfg = SimConfig().with_noise("none")
    enc = OpticalEncoder(M, (SIZE, SIZE), cfg, seed=3)
    truth_z = gen.sample_latent(4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        truth = gen.synthesize(truth_z)
        readings = enc(truth)
    return {"gen": gen, "cfg": cfg, "masks": enc.masks().detach(), "truth": truth,
            "readings": readings}


def test_recovers_faces_far_better_than_prior_mean(setup: dict) -> None:
    s = setup
    out = generative_prior_reconstruct(s["readings"], s["masks"], s["gen"], s["cfg"],
                                       steps=60, restarts=2, seed=0)
    assert out["latent"].shape == (4, *s["gen"].latent_shape)
    assert out["image"].shape == s["truth"].shape
    assert out["residual"].shape == (4,)
    mean_img = s["gen"].synthesize(torch.zeros(1, *s["gen"].latent_shape))
    gain = _psnr(out["image"], s["truth"]) - _psnr(mean_img.expand_as(s["truth"]), s["truth"])
    # measured: 3.2, 3.9, 1.6, 2.3 dB (the prior-mean image is 14-17 dB)
    assert float(gain.mean()) > 2.0, gain
    assert float(gain.min()) > 0.5, gain
    # the fitted gain is positive and the residual well below "nothing explained"
    assert bool((out["scale"] > 0).all())
    assert float(out["residual"].max()) < 0.5


def test_affine_change_of_readings_does_not_change_the_result(setup: dict) -> None:
    s = setup
    kwargs = {"steps": 15, "restarts": 1, "seed": 1}
    a = generative_prior_reconstruct(s["readings"][:2], s["masks"], s["gen"], s["cfg"],
                                     **kwargs)
    y2 = s["readings"][:2].double() * 37.0 - 4.2
    b = generative_prior_reconstruct(y2, s["masks"], s["gen"], s["cfg"], **kwargs)
    assert torch.allclose(a["latent"], b["latent"], atol=2e-3)
    assert torch.allclose(a["residual"], b["residual"], rtol=1e-3, atol=1e-6)
    assert torch.allclose(b["scale"], 37.0 * a["scale"], rtol=1e-3)
    # known calibration is NOT invariant: it reads the numbers as volts of the bench
    c = generative_prior_reconstruct(y2, s["masks"], s["gen"], s["cfg"],
                                     calibration="known", **kwargs)
    assert not torch.allclose(a["latent"], c["latent"], atol=2e-3)


def test_known_calibration_recovers_too(setup: dict) -> None:
    s = setup
    out = generative_prior_reconstruct(s["readings"][:2], s["masks"], s["gen"], s["cfg"],
                                       steps=60, restarts=1, calibration="known")
    truth = s["truth"][:2]
    mean_img = s["gen"].synthesize(torch.zeros(1, *s["gen"].latent_shape)).expand_as(truth)
    gain = _psnr(out["image"], truth) - _psnr(mean_img, truth)
    assert float(gain.mean()) > 1.0, gain
    assert torch.equal(out["scale"], torch.ones(2)) and torch.equal(out["offset"], torch.zeros(2))


def test_known_calibration_works_for_one_reading(setup: dict) -> None:
    s = setup
    out = generative_prior_reconstruct(s["readings"][:1, :1], s["masks"][:1], s["gen"],
                                       s["cfg"], steps=3, restarts=1, calibration="known")
    assert out["image"].shape == (1, 3, SIZE, SIZE)
    assert torch.isfinite(out["latent"]).all()


def test_restarts_never_worsen_the_residual(setup: dict) -> None:
    s = setup
    one = generative_prior_reconstruct(s["readings"][:2], s["masks"], s["gen"], s["cfg"],
                                       steps=10, restarts=1, seed=5)
    two = generative_prior_reconstruct(s["readings"][:2], s["masks"], s["gen"], s["cfg"],
                                       steps=10, restarts=2, seed=5)
    assert bool((two["residual"] <= one["residual"] + 1e-6).all())


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"),
    ({"restarts": 0}, "restarts"),
    ({"batch": 0}, "batch"),
    ({"lr": 0.0}, "lr"),
    ({"prior_weight": -1.0}, "prior_weight"),
    ({"calibration": "magic"}, "calibration"),
    ({"prior": "flat"}, "prior"),
    ({"seed": -1}, "seed"),
])
def test_bad_settings_raise(setup: dict, kwargs: dict, match: str) -> None:
    s = setup
    with pytest.raises(ConfigError, match=match):
        generative_prior_reconstruct(s["readings"], s["masks"], s["gen"], s["cfg"], **kwargs)


def test_bad_inputs_raise(setup: dict) -> None:
    s = setup
    y, mk, g = s["readings"], s["masks"], s["gen"]
    with pytest.raises(ConfigError, match="readings"):
        generative_prior_reconstruct(y[:, :10], mk, g)
    with pytest.raises(ConfigError, match="non-finite"):
        bad = y.clone()
        bad[0, 0] = float("nan")
        generative_prior_reconstruct(bad, mk, g)
    with pytest.raises(ConfigError, match="masks"):
        generative_prior_reconstruct(y, mk[0], g)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        generative_prior_reconstruct(y, mk * 2, g)
    with pytest.raises(ConfigError, match="masks"):
        generative_prior_reconstruct(y, [[0, 1]], g)
    with pytest.raises(ConfigError, match="m < 3"):
        generative_prior_reconstruct(y[:, :2], mk[:2], g)
    with pytest.raises(ConfigError, match="generator lacks"):
        generative_prior_reconstruct(y, mk, object())
    with pytest.raises(ConfigError, match="SimConfig"):
        generative_prior_reconstruct(y, mk, g, {"noise": "none"})  # type: ignore[arg-type]
    # numpy inputs are accepted
    out = generative_prior_reconstruct(np.asarray(y[:1]), np.asarray(mk), g, steps=1,
                                       restarts=1)
    assert out["image"].shape == (1, 3, SIZE, SIZE)


def test_works_when_called_under_no_grad() -> None:
    """Evaluators call reconstructions inside torch.no_grad(); the optimisation must still
    take gradients."""
    import torch

    from lsi_ml.baselines.generative_prior import generative_prior_reconstruct
    from lsi_ml.generators.synthface import SynthFace

    face = SynthFace(32, seed=0)
    z = face.sample_latent(2, generator=torch.Generator().manual_seed(0))
    masks = (torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    readings = (masks.flatten(1) @ face.synthesize(z).mean(1).flatten(1).T).T
    with torch.no_grad():
        out = generative_prior_reconstruct(readings, masks, face, steps=3, restarts=1)
    assert out["image"].shape == (2, 3, 32, 32)
