"""A generator seen through a monochrome sensor: every image as its luminance (grey).

A single-pixel camera with one photodiode measures luminance only, so an image-space
reconstruction (least squares, total variation, ghost imaging) has no colour. To score such
reconstructions fairly, the image-space probes must be trained on grey images, and so must
the ground truth they are compared with. :class:`LuminanceView` wraps a generator so that
``synthesize``, ``render`` and ``features`` give grey images (the luma ``Y' = w . RGB`` of the
display-encoded image, repeated on 3 channels); everything else (latents, landmarks,
segmentation, attributes, identity) is the wrapped generator's.

:func:`linear_to_display` turns a reconstructed *linear* irradiance image (what the
photodiode integrates: monitor luminance after the display gamma) back into the
display-encoded grey that :class:`LuminanceView` draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_ml.generators.base import Generator, RenderOutput

__all__ = ["REC709", "LuminanceView", "linear_to_display", "to_luminance"]

REC709: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)
"""Rec. 709 luma weights of R, G, B (the simulated monitor's ``rgb_weights``)."""


def to_luminance(images: Tensor, weights: tuple[float, float, float] = REC709) -> Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 3, H, W)`` grey (the luma on every channel)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(f"images must be (B, 3, H, W) or (B, 1, H, W); got "
                          f"{tuple(images.shape)}")
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor(weights, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def linear_to_display(linear: Tensor | Any, gamma: float = 2.2) -> Tensor:
    """Linear-light grey images in [0, 1] (e.g. normalised reconstructions of the
    irradiance) -> display-encoded grey ``linear ** (1 / gamma)`` as ``(B, 3, H, W)``.

    Accepts ``(B, H, W)``, ``(B, 1, H, W)`` or ``(B, 3, H, W)`` tensors or arrays; values are
    clipped to [0, 1] first.
    """
    x = torch.as_tensor(linear, dtype=torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"images must be (B, H, W), (B, 1, H, W) or (B, 3, H, W); got "
                          f"{tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ConfigError("reconstructed images contain NaN or infinite values")
    x = x.clamp(0.0, 1.0) ** (1.0 / float(gamma))
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


class LuminanceView:
    """The wrapped generator with grey images (see the module docstring).

    Parameters
    ----------
    generator
        A generator with ``synthesize`` (and optionally ``render``, ``features_from_image``).
    weights : tuple of float
        Luma weights of R, G, B.
    """

    def __init__(self, generator: Generator, weights: tuple[float, float, float] = REC709
                 ) -> None:
        self.inner = generator
        self.weights = tuple(float(w) for w in weights)

    def __getattr__(self, name: str) -> Any:  # everything not overridden: the inner one's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def synthesize(self, latent: Tensor) -> Tensor:
        """Grey images ``(n, 3, H, W)`` of latents."""
        return to_luminance(self.inner.synthesize(latent), self.weights)

    def render(self, latent: Tensor) -> RenderOutput:
        """The inner generator's render with a grey image."""
        out = self.inner.render(latent)
        return RenderOutput(image=to_luminance(out.image, self.weights),
                            landmarks=out.landmarks, segmentation=out.segmentation,
                            attributes=out.attributes, identity=out.identity)

    def features(self, latent: Tensor) -> list[Tensor]:
        """Feature maps of the grey image."""
        return self.inner.features_from_image(self.synthesize(latent))

    def features_from_image(self, images: Tensor) -> list[Tensor]:
        """Feature maps of the grey version of ``images``."""
        return self.inner.features_from_image(to_luminance(images, self.weights))
