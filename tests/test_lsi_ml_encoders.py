"""OpticalEncoder (masks + physics) and LatentEncoder (readings -> latent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_hw.sim import SimBench, SimConfig
from lsi_ml.latent.encoder import EncoderConfig, LatentEncoder, MeasurementNormalizer
from lsi_ml.latent.optical import OpticalEncoder


def test_masks_are_binary_and_gradients_flow_through_the_physics():
    enc = OpticalEncoder(8, (16, 16), SimConfig().with_noise("shot"), seed=1)
    masks = enc.masks()
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    enc(torch.rand(3, 3, 16, 16)).sum().backward()
    assert torch.isfinite(enc.weights.grad).all() and enc.weights.grad.abs().sum() > 0


def test_training_physics_equals_the_simulated_bench():
    """The torch forward model used for training gives what SimBench measures."""
    cfg = SimConfig()
    enc = OpticalEncoder(12, (16, 16), cfg, seed=2)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    patterns = enc.export_patterns()
    bench = SimBench("none", config=cfg, method="numpy")
    ref = bench.expected(images.permute(0, 2, 3, 1).double().numpy(), patterns).values
    with torch.no_grad():
        twin = enc.physics.expected(images.permute(0, 2, 3, 1).double(), enc.masks().double())
    np.testing.assert_allclose(twin.numpy(), ref, rtol=1e-6)


def test_export_patterns_round_trip_and_k_bit():
    enc = OpticalEncoder(5, (8, 8), seed=3)
    ps = enc.export_patterns()
    np.testing.assert_array_equal(ps.masks, enc.masks().detach().numpy().astype(np.uint8))
    four_bit = OpticalEncoder(5, (8, 8), mask_bits=4, seed=3)
    levels = torch.unique(four_bit.masks() * 15)
    assert torch.allclose(levels, levels.round())
    with pytest.raises(ConfigError, match="4-bit"):
        four_bit.export_patterns()


def test_energy_loss_is_zero_for_evenly_spread_fill():
    enc = OpticalEncoder(4, (2, 4), seed=0)
    with torch.no_grad():
        enc.weights.zero_()
        for k in range(4):  # fill fractions 1/8, 3/8, 5/8, 7/8 of 8 pixels
            enc.weights.view(4, -1)[k, : 2 * k + 1] = 1.0
    assert enc.energy_loss().item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        enc.weights.fill_(1.0)
    assert enc.energy_loss().item() > 0.1


def test_latent_encoder_shapes_normalisation_and_errors():
    cfg = EncoderConfig(n_measurements=10, n_levels=4, level_dim=8, hidden=32, block_hidden=16)
    model = LatentEncoder(cfg)
    readings = torch.randn(64, 10) * 0.01 + 0.5
    model.normalizer.fit(readings)
    normed = model.normalizer(readings)
    assert torch.allclose(normed.mean(0), torch.zeros(10), atol=1e-5)
    assert model(readings).shape == (64, 4, 8)
    with pytest.raises(ConfigError, match="readings must be"):
        model(torch.randn(2, 11))
    with pytest.raises(ConfigError, match="fit needs"):
        MeasurementNormalizer(3).fit(torch.randn(1, 3))


def test_latent_encoder_learns_a_linear_map():
    """A small regression problem: the trunk + blocks + mixer can fit it."""
    torch.manual_seed(0)
    truth = torch.randn(20, 2 * 3)
    x = torch.randn(512, 20)
    y = (x @ truth).view(-1, 2, 3)
    model = LatentEncoder(EncoderConfig(20, 2, 3, hidden=64, depth=1, block_hidden=32))
    model.normalizer.fit(x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * y.var().item()


def test_optical_encoder_power_then_detect_equals_forward() -> None:
    """forward = detect(power): the split the measurement bank relies on (same noise)."""
    from lsi_hw.sim.forward import SimConfig
    from lsi_ml.latent.optical import OpticalEncoder

    enc = OpticalEncoder(8, (16, 16), SimConfig().with_noise("full"), seed=2)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = enc(images, generator=torch.Generator().manual_seed(9))
    split = enc.detect(enc.power(images), generator=torch.Generator().manual_seed(9))
    assert torch.equal(whole, split)
    rows = [torch.Generator().manual_seed(i) for i in range(3)]
    rows2 = [torch.Generator().manual_seed(i) for i in range(3)]
    assert torch.equal(enc(images, generator=rows), enc.detect(enc.power(images),
                                                                generator=rows2))
    noiseless = enc.detect(enc.power(images), noise=False)
    assert not torch.equal(noiseless, whole)  # the noise is really drawn in detect


def test_hadamard_mask_init() -> None:
    """init='hadamard': the first m sequency-ordered Walsh-Hadamard masks, trainable."""
    from lsi_hw.patterns import PatternSet
    from lsi_ml.latent.optical import initial_weights

    enc = OpticalEncoder(8, (16, 16), init="hadamard")
    expected = PatternSet.hadamard(16, 8, order="sequency").masks
    assert np.array_equal(enc.masks().detach().numpy().astype(np.uint8), expected)
    assert float(enc.masks()[0].detach().mean()) == 1.0  # row 0: all mirrors on
    # stored off the 0.5 threshold by 0.25: a few optimizer steps can flip a mirror
    assert set(torch.unique(enc.weights.detach()).tolist()) == {0.25, 0.75}
    assert not torch.equal(initial_weights(8, (16, 16), "random", seed=1),
                           initial_weights(8, (16, 16), "random", seed=2))
    for shape, m in (((16, 8), 4), ((12, 12), 4), ((4, 4), 17)):
        with pytest.raises(ConfigError):
            initial_weights(m, shape, "hadamard")
    with pytest.raises(ConfigError):
        initial_weights(4, (8, 8), "dct")
