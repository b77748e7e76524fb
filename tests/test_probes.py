"""Probes: shapes, losses against hand-computed values, and that each can learn."""

from __future__ import annotations

import math

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.probes import AttributeProbe, LandmarkProbe, SegmentationProbe, focal_loss


def test_focal_loss_reduces_to_cross_entropy_and_down_weights_easy_pixels():
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # (1, 2, 1, 1): p(class 0) = e^2/(e^2+1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    p0 = math.exp(2) / (math.exp(2) + 1)
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(-math.log(p0), rel=1e-5)
    assert focal_loss(logits, target, gamma=2).item() == pytest.approx(
        -((1 - p0) ** 2) * math.log(p0), rel=1e-5)


def test_segmentation_probe_fits_a_toy_problem():
    torch.manual_seed(0)
    feats = [torch.randn(8, 4, 4, 4), torch.randn(8, 6, 8, 8)]
    target = (feats[1][:, 0] > 0).long()  # class = sign of one fine channel
    target = torch.nn.functional.interpolate(target[:, None].float(), size=(16, 16)).long()[:, 0]
    probe = SegmentationProbe([4, 6], n_classes=2, width=16)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = focal_loss(probe(feats, (16, 16)), target)
        loss.backward()
        opt.step()
    acc = (probe(feats, (16, 16)).argmax(1) == target).float().mean().item()
    assert acc > 0.9
    with pytest.raises(ConfigError):
        probe(feats[:1], (16, 16))


def test_attribute_and_landmark_probes_learn():
    torch.manual_seed(1)
    latent = torch.randn(256, 3, 5)
    attrs = (latent[:, 0, :2] > 0).float()
    probe = AttributeProbe(15, 2)
    opt = torch.optim.Adam(probe.parameters(), lr=5e-2)
    for _ in range(200):
        opt.zero_grad()
        AttributeProbe.loss(probe(latent), attrs).backward()
        opt.step()
    assert ((probe(latent) > 0).float() == attrs).float().mean() > 0.95
    feat = torch.randn(64, 3, 4, 4)
    pts = torch.sigmoid(feat[:, :1].flatten(1)[:, :10]).view(64, 5, 2)
    lm = LandmarkProbe(3, (4, 4), n_points=5, width=8)
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    first = LandmarkProbe.loss(lm(feat), pts).item()
    for _ in range(200):
        opt.zero_grad()
        LandmarkProbe.loss(lm(feat), pts).backward()
        opt.step()
    assert LandmarkProbe.loss(lm(feat), pts).item() < 0.2 * first
