"""Probes that read semantics off a generator's latent or features (after the paper).

* :class:`AttributeProbe`: one linear layer on the flattened latent -> attribute logits
  (binary cross-entropy).
* :class:`SegmentationProbe`: a small feature-pyramid network over the generator's
  multi-scale feature maps -> per-pixel class logits (focal loss).
* :class:`LandmarkProbe`: regression from one coarse feature map -> landmark coordinates
  in [0, 1] of the image size (mean squared error).

Probes are trained on generator samples (latent -> ground truth) and then applied to
decoded latents, so a decoder is scored by what the generator's latent space carries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsi_hw.errors import ConfigError

__all__ = ["AttributeProbe", "LandmarkProbe", "SegmentationProbe", "focal_loss"]


class AttributeProbe(nn.Module):
    """Linear layer on the flattened latent (B, L, D) -> (B, A) attribute logits."""

    def __init__(self, latent_size: int, n_attributes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_size, n_attributes)

    def forward(self, latent: Tensor) -> Tensor:
        return self.linear(latent.flatten(1))

    @staticmethod
    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        """Binary cross-entropy with logits."""
        return F.binary_cross_entropy_with_logits(logits, targets.float())


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Multi-class focal loss (Lin et al. 2017): mean of ``-(1 - p_t)^gamma log p_t``.

    ``logits`` (B, C, H, W), ``target`` (B, H, W) class ids; gamma = 0 is cross-entropy.
    """
    log_p = F.log_softmax(logits, dim=1)
    log_pt = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
    return torch.mean(-((1.0 - log_pt.exp()) ** gamma) * log_pt)


class SegmentationProbe(nn.Module):
    """Feature-pyramid network over feature maps (coarse to fine in any order).

    Parameters
    ----------
    channels:
        Channels of each feature map, in the order the generator returns them.
    n_classes:
        Segmentation classes.
    width:
        Channels of the pyramid.
    """

    def __init__(self, channels: Sequence[int], n_classes: int, width: int = 64) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("SegmentationProbe needs at least one feature map")
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int]) -> Tensor:
        """Class logits (B, n_classes, *out_size)."""
        if len(features) != len(self.lateral):
            raise ConfigError(f"{len(features)} feature maps for {len(self.lateral)} laterals")
        order = sorted(range(len(features)), key=lambda i: features[i].shape[-1])
        merged: Tensor | None = None
        for i in order:  # coarse -> fine, top-down pathway
            lat = self.lateral[i](features[i])
            if merged is not None:
                lat = lat + F.interpolate(merged, size=lat.shape[-2:], mode="bilinear",
                                          align_corners=False)
            merged = lat
        assert merged is not None
        logits = self.head(F.gelu(self.smooth(merged)))
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class LandmarkProbe(nn.Module):
    """Regress ``n_points`` (x, y) in [0, 1] from one coarse feature map."""

    def __init__(self, channels: int, spatial: tuple[int, int], n_points: int = 68,
                 width: int = 32) -> None:
        super().__init__()
        self.n_points = n_points
        self.reduce = nn.Conv2d(channels, width, 1)
        self.fc = nn.Linear(width * spatial[0] * spatial[1], n_points * 2)

    def forward(self, feature: Tensor) -> Tensor:
        """(B, n_points, 2) normalised coordinates (x / W, y / H)."""
        h = F.gelu(self.reduce(feature)).flatten(1)
        return torch.sigmoid(self.fc(h)).view(-1, self.n_points, 2)

    @staticmethod
    def loss(pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error of normalised coordinates."""
        return F.mse_loss(pred, target)
