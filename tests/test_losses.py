"""Encoder losses: hand-computed values, weights, and no silently missing term."""

from __future__ import annotations

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.latent.losses import LossWeights, encoder_losses


def test_latent_terms_by_hand():
    pred = torch.tensor([[[1.0, 2.0]]])
    target = torch.tensor([[[0.0, 4.0]]])
    terms = encoder_losses(pred, target, LossWeights(latent_l1=2.0, latent_l2=0.5))
    assert terms["latent_l1"].item() == pytest.approx(2.0 * (1 + 2) / 2)  # mean |d| = 1.5
    assert terms["latent_l2"].item() == pytest.approx(0.5 * (1 + 4) / 2)  # mean d^2 = 2.5
    assert terms["total"].item() == pytest.approx(3.0 + 1.25)


def test_identity_and_image_terms():
    pred = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    target = torch.tensor([[[0.0, 1.0]]])
    terms = encoder_losses(pred, target, LossWeights(0, 0, image=1.0, identity=1.0),
                           synthesize=lambda z: z * 2, identity=lambda z: z.flatten(1))
    assert terms["identity"].item() == pytest.approx(1.0)  # orthogonal: 1 - cos = 1
    assert terms["image"].item() == pytest.approx(2.0)  # mean |2 - 0|, |0 - 2|
    terms["total"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_missing_networks_are_errors_not_silent_zeros():
    z = torch.zeros(1, 1, 2)
    with pytest.raises(ConfigError, match="identity"):
        encoder_losses(z, z, LossWeights(identity=1.0))
    with pytest.raises(ConfigError, match="perceptual"):
        encoder_losses(z, z, LossWeights(perceptual=1.0), synthesize=lambda x: x)
    with pytest.raises(ConfigError, match=">= 0"):
        LossWeights(latent_l1=-1)
