"""LuminanceView: a generator as a monochrome sensor sees it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.generators.luminance import LuminanceView, linear_to_display, to_luminance
from lsi_ml.generators.synthface import SynthFace


@pytest.fixture(scope="module")
def face() -> SynthFace:
    return SynthFace(32, seed=0)


def test_grey_is_the_luma_on_every_channel(face: SynthFace) -> None:
    z = face.sample_latent(3, generator=torch.Generator().manual_seed(1))
    rgb = face.synthesize(z)
    grey = LuminanceView(face).synthesize(z)
    expected = 0.2126 * rgb[:, 0] + 0.7152 * rgb[:, 1] + 0.0722 * rgb[:, 2]
    for c in range(3):
        torch.testing.assert_close(grey[:, c], expected)
    assert not torch.allclose(grey, rgb)


def test_render_and_features_use_the_grey_image(face: SynthFace) -> None:
    view = LuminanceView(face)
    z = face.sample_latent(2, generator=torch.Generator().manual_seed(2))
    out, inner = view.render(z), face.render(z)
    torch.testing.assert_close(out.image, to_luminance(inner.image))
    assert torch.equal(out.segmentation, inner.segmentation)
    assert torch.equal(out.landmarks, inner.landmarks)
    feats = view.features(z)
    ref = face.features_from_image(to_luminance(face.synthesize(z)))
    for a, b in zip(feats, ref, strict=True):
        torch.testing.assert_close(a, b)
    # colour input to features_from_image is turned grey first
    for a, b in zip(view.features_from_image(face.synthesize(z)), ref, strict=True):
        torch.testing.assert_close(a, b)
    # delegated: latents, attributes, dataset rendering
    assert view.latent_shape == face.latent_shape and view.size == face.size
    data = SyntheticFaces(view, 4, seed=0, split="test").batch(range(2))
    assert torch.allclose(data["image"][:, 0], data["image"][:, 2])


def test_linear_to_display() -> None:
    lin = np.array([[[0.0, 0.25], [1.0, 2.0]]])
    out = linear_to_display(lin, gamma=2.0)
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, 1], torch.tensor([[0.0, 0.5], [1.0, 1.0]]))
    with pytest.raises(ConfigError):
        linear_to_display(np.full((1, 2, 2), np.nan))
    with pytest.raises(ConfigError):
        to_luminance(torch.zeros(2, 2, 4, 4))
