"""Probes: shapes, losses against hand-computed values, and that each can learn."""

from __future__ import annotations

import math

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.latent.probes import (
    AttributeProbe,
    HeatmapLandmarkProbe,
    LandmarkProbe,
    SegmentationProbe,
    focal_loss,
)


def _fit(probe: torch.nn.Module, loss, inputs, target: torch.Tensor,
         steps: int) -> tuple[float, float]:
    """Loss before and after ``steps`` Adam steps (lr 1e-2) of ``probe`` on one batch."""
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    first = loss(probe(inputs), target).item()
    for _ in range(steps):
        opt.zero_grad()
        loss(probe(inputs), target).backward()
        opt.step()
    return first, loss(probe(inputs), target).item()


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
    first, last = _fit(lm, LandmarkProbe.loss, feat, pts, steps=200)
    assert last < 0.2 * first


def _pyramid(batch: int = 3) -> list[torch.Tensor]:
    """Feature maps finest first, like ``SynthFace.features`` (16x16, 8x8, 4x4)."""
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(batch, 16, 16, 16, generator=gen),
            torch.randn(batch, 32, 8, 8, generator=gen),
            torch.randn(batch, 64, 4, 4, generator=gen)]


@pytest.mark.parametrize("trunk_level,fine_width", [(0, 0), (1, 0), (1, 8), (2, 4)])
@pytest.mark.parametrize("upscale", [1, 2, 4])
def test_predict_classes_equals_argmax_of_logits(trunk_level: int, fine_width: int,
                                                 upscale: int) -> None:
    torch.manual_seed(0)
    probe = SegmentationProbe([16, 32, 64], n_classes=5, width=8, depth=2, upscale=upscale,
                              trunk_level=trunk_level, fine_width=fine_width).eval()
    feats = _pyramid()
    with torch.no_grad():
        for channels_last in (False, True):
            ff = [f.contiguous(memory_format=torch.channels_last) for f in feats] \
                if channels_last else feats
            for out in ((16 * upscale, 16 * upscale), (40, 40)):  # sub-pixel exact / resize
                logits = probe(ff, out)
                assert logits.shape == (3, 5, *out)
                ids = probe.predict_classes(ff, out)
                assert ids.dtype == torch.int64 and ids.shape == (3, *out)
                assert torch.equal(ids, logits.max(1).indices)


def test_coarse_trunk_changes_the_model_and_keeps_old_weights_layout() -> None:
    feats = _pyramid()
    torch.manual_seed(0)
    plain = SegmentationProbe([16, 32, 64], 5, width=8, depth=2, upscale=2)
    # the original architecture has exactly the original parameters (old files load)
    assert {k.split(".")[0] for k in plain.state_dict()} == {"lateral", "smooth", "refine",
                                                              "head"}
    torch.manual_seed(0)
    coarse = SegmentationProbe([16, 32, 64], 5, width=8, depth=2, upscale=2, trunk_level=1)
    coarse.load_state_dict(plain.state_dict())  # same parameters, different wiring
    with torch.no_grad():
        assert not torch.allclose(plain(feats, (32, 32)), coarse(feats, (32, 32)))
    for bad in ({"trunk_level": 3}, {"trunk_level": -1}, {"fine_width": 4},
                {"trunk_level": 1, "fine_width": -1}):
        with pytest.raises(ConfigError):
            SegmentationProbe([16, 32, 64], 5, **bad)


@pytest.mark.parametrize("trunk_level", [0, 1])
def test_heatmap_landmarks_with_coarse_trunk(trunk_level: int) -> None:
    torch.manual_seed(0)
    feats = _pyramid(4)
    probe = HeatmapLandmarkProbe([16, 32, 64], n_points=5, width=8, depth=2,
                                 trunk_level=trunk_level)
    out = probe(feats)
    assert out.shape == (4, 5, 2)
    assert bool(((out > 0) & (out < 1)).all())
    with pytest.raises(ConfigError):
        HeatmapLandmarkProbe([16, 32], trunk_level=2)
    # it learns: fit the points to a function of the inputs
    target = torch.sigmoid(feats[1][:, :5, 0, :2])
    first, last = _fit(probe, HeatmapLandmarkProbe.loss, feats, target, steps=80)
    assert last < 0.5 * first


def test_segmentation_probe_with_fine_path_fits_a_toy_problem() -> None:
    torch.manual_seed(0)
    feats = [torch.randn(8, 6, 8, 8), torch.randn(8, 4, 4, 4)]  # finest first
    target = (feats[0][:, 0] > 0).long()  # needs the fine map at full detail
    target = torch.nn.functional.interpolate(target[:, None].float(), size=(16, 16)).long()[:, 0]
    probe = SegmentationProbe([6, 4], n_classes=2, width=16, upscale=2, trunk_level=1,
                              fine_width=8)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        focal_loss(probe(feats, (16, 16)), target).backward()
        opt.step()
    acc = (probe.predict_classes(feats, (16, 16)) == target).float().mean().item()
    assert acc > 0.9
