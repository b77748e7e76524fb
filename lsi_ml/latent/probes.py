"""Probes that read semantics off a generator's latent or features (after the paper).

* :class:`AttributeProbe`: one linear layer on the flattened latent -> attribute logits
  (binary cross-entropy).
* :class:`SegmentationProbe`: a small feature-pyramid network over the generator's
  multi-scale feature maps -> per-pixel class logits (focal loss).
* :class:`LandmarkProbe`: regression from one coarse feature map -> landmark coordinates
  in [0, 1] of the image size (mean squared error).
* :class:`HeatmapLandmarkProbe`: a small conv stack over one or more coarse feature maps ->
  one heatmap per landmark, read out by a soft-argmax (sub-cell, translation-equivariant).

Probes are trained on generator samples (latent -> ground truth) and then applied to
decoded latents, so a decoder is scored by what the generator's latent space carries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsi_hw.errors import ConfigError

__all__ = [
    "AttributeProbe",
    "HeatmapLandmarkProbe",
    "LandmarkProbe",
    "SegmentationProbe",
    "focal_loss",
]


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


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0,
               weight: Tensor | None = None) -> Tensor:
    """Multi-class focal loss (Lin et al. 2017): mean of ``-w_t (1 - p_t)^gamma log p_t``.

    ``logits`` (B, C, H, W), ``target`` (B, H, W) class ids; gamma = 0 is cross-entropy.
    ``weight`` (C,), optional per-class weights ``w`` (1 for every class if omitted; the
    mean is over pixels, not normalised by the weights).
    """
    log_p = F.log_softmax(logits, dim=1)
    log_pt = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if weight is not None:
        loss = loss * weight.to(loss)[target.long()]
    return torch.mean(loss)


def _add_up(fine: Tensor, coarse: Tensor | None) -> Tensor:
    """``fine`` plus ``coarse`` bilinearly resized to it (``fine`` alone if ``None``)."""
    if coarse is None:
        return fine
    if tuple(coarse.shape[-2:]) != tuple(fine.shape[-2:]):
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear",
                               align_corners=False)
    return fine + coarse


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
    depth:
        3x3 convolutions (GELU) applied to the merged map at ``trunk_level`` (>= 1).
    upscale:
        Sub-pixel factor of the head: it predicts ``n_classes * upscale**2`` channels that
        a pixel shuffle rearranges to ``upscale`` times the finest map's resolution (learned
        upsampling), before the final bilinear resize to ``out_size``. 1 = plain head.
    trunk_level:
        Pyramid level (0 = finest map, 1 = the next coarser, ...) at which the 3x3
        convolutions run. The ``trunk_level`` finer maps join after them: each through its
        1x1 lateral, added to the bilinearly upsampled trunk output (then GELU) before the
        head. 0 = all convolutions at the finest resolution; 1 at 64 px runs them on
        16 x 16 instead of 32 x 32 maps (about 4x fewer operations).
    fine_width:
        With ``trunk_level > 0``: width of a narrow full-resolution path (0 = none: the
        finer maps join at ``width`` channels). The trunk output is projected (1x1) to
        ``fine_width`` channels before it is upsampled, the finer maps' laterals have
        ``fine_width`` channels, and one 3x3 convolution (GELU) at that width runs before
        the head: local context at full resolution for thin classes (brows, lips) at a
        fraction of a wide convolution's cost.
    """

    def __init__(self, channels: Sequence[int], n_classes: int, width: int = 64,
                 depth: int = 1, upscale: int = 1, trunk_level: int = 0,
                 fine_width: int = 0) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("SegmentationProbe needs at least one feature map")
        if depth < 1 or upscale < 1:
            raise ConfigError(f"depth={depth} and upscale={upscale} must be >= 1")
        if not 0 <= trunk_level < len(channels):
            raise ConfigError(f"trunk_level={trunk_level} must be in 0..{len(channels) - 1} "
                              f"({len(channels)} feature maps)")
        if fine_width < 0 or (fine_width and not trunk_level):
            raise ConfigError(f"fine_width={fine_width} must be >= 0, and 0 unless "
                              f"trunk_level > 0 (got {trunk_level})")
        self.upscale = int(upscale)
        self.trunk_level = int(trunk_level)
        self.fine_width = int(fine_width)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.Conv2d(width, width, 3, padding=1)
        self.refine = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1)
                                    for _ in range(depth - 1))
        # which maps are finer than the trunk is known only from their sizes (forward), so
        # with ``fine_width`` every map gets both laterals; the unused ones stay untouched
        self.reduce = nn.Conv2d(width, fine_width, 1) if fine_width else None
        self.fine_lateral = nn.ModuleList(nn.Conv2d(c, fine_width, 1) for c in channels) \
            if fine_width else None
        self.fine = nn.Conv2d(fine_width, fine_width, 3, padding=1) if fine_width else None
        self.head = nn.Conv2d(fine_width or width, n_classes * self.upscale**2, 1)

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int]) -> Tensor:
        """Class logits (B, n_classes, *out_size)."""
        logits = self.head(self._trunk(features))
        if self.upscale > 1:
            logits = F.pixel_shuffle(logits, self.upscale)
        if tuple(logits.shape[-2:]) == tuple(out_size):
            return logits
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)

    def _trunk(self, features: Sequence[Tensor]) -> Tensor:
        """Pyramid output before the head at the finest map's size: (B, width, h, w), or
        (B, fine_width, h, w) with a fine path."""
        if len(features) != len(self.lateral):
            raise ConfigError(f"{len(features)} feature maps for {len(self.lateral)} laterals")
        order = sorted(range(len(features)), key=lambda i: features[i].shape[-1])
        n_trunk = len(order) - self.trunk_level
        merged: Tensor | None = None
        for i in order[:n_trunk]:  # coarse -> trunk level, top-down pathway
            merged = _add_up(self.lateral[i](features[i]), merged)
        assert merged is not None
        h = F.gelu(self.smooth(merged))
        for conv in self.refine:
            h = F.gelu(conv(h))
        if n_trunk < len(order):  # finer maps: 1x1 laterals only (skip connections)
            if self.reduce is not None:
                h = self.reduce(h)
            lateral = self.lateral if self.fine_lateral is None else self.fine_lateral
            for i in order[n_trunk:]:
                h = _add_up(lateral[i](features[i]), h)
            h = F.gelu(h)
            if self.fine is not None:
                h = F.gelu(self.fine(h))
        return h

    def predict_classes(self, features: Sequence[Tensor], out_size: tuple[int, int]
                        ) -> Tensor:
        """Class ids (B, *out_size) int64: ``forward(...).argmax(1)``, computed cheaper.

        When the sub-pixel head already lands on ``out_size`` the maximum is taken over
        the head's channels before the pixel shuffle (``upscale**2`` times less data to
        rearrange, same ids, ties to the lower class like ``max``); otherwise the logits
        are resized first.
        """
        r = self.upscale
        h = self._trunk(features)
        b, _, hh, ww = h.shape
        logits = self.head(h)  # (B, C * r * r, hh, ww), channel c * r * r + i * r + j
        if r == 1 or (hh * r, ww * r) != tuple(out_size):
            if r > 1:
                logits = F.pixel_shuffle(logits, r)
            if tuple(logits.shape[-2:]) != tuple(out_size):
                logits = F.interpolate(logits, size=out_size, mode="bilinear",
                                       align_corners=False)
            return logits.max(1).indices
        ids = logits.unflatten(1, (-1, r * r)).max(1).indices  # (B, r * r, hh, ww)
        return ids.reshape(b, r, r, hh, ww).permute(0, 3, 1, 4, 2).reshape(b, hh * r, ww * r)


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


class HeatmapLandmarkProbe(nn.Module):
    """Landmarks from heatmaps over one or more (coarse) feature maps, by soft-argmax.

    The maps are projected to ``width`` channels (1x1), resized to the finest of them and
    summed, passed through ``depth`` 3x3 convolutions (GELU) and a 1x1 head giving one
    heatmap per point; a spatial softmax turns each into a distribution whose mean is the
    point (cell centres at ``(j + 0.5) / w``), so the estimate is sub-cell and shifts with
    the face.

    Parameters
    ----------
    channels : sequence of int
        Channels of the feature maps it reads (in the order passed to :meth:`forward`).
    n_points : int
        Number of landmarks.
    width : int
        Channels of the conv stack.
    depth : int
        3x3 convolutions of the stack (>= 1).
    trunk_level : int
        Level among the maps it reads (0 = finest, 1 = next coarser, ...) at whose
        resolution the 3x3 stack runs; the maps finer than it join after the stack through
        their 1x1 laterals (added to the bilinearly upsampled stack output, then GELU), and
        the heatmaps are at the finest map's resolution either way. 0 = the whole stack at
        the finest resolution; 1 with maps (1, 2, 3) at 64 px: 8 x 8 instead of 16 x 16.
    """

    def __init__(self, channels: Sequence[int], n_points: int = 68, width: int = 64,
                 depth: int = 2, trunk_level: int = 0) -> None:
        super().__init__()
        if not channels:
            raise ConfigError("HeatmapLandmarkProbe needs at least one feature map")
        if depth < 1:
            raise ConfigError(f"depth={depth} must be >= 1")
        if not 0 <= trunk_level < len(channels):
            raise ConfigError(f"trunk_level={trunk_level} must be in 0..{len(channels) - 1} "
                              f"({len(channels)} feature maps)")
        self.trunk_level = int(trunk_level)
        self.n_points = int(n_points)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.stack = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.head = nn.Conv2d(width, n_points, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """(B, n_points, 2) normalised coordinates (x / W, y / H) of the image, pixel
        centres at ``(i + 0.5) / W``."""
        if len(features) != len(self.lateral):
            raise ConfigError(f"{len(features)} feature maps for {len(self.lateral)} laterals")
        if self.trunk_level == 0:  # every map resized to the finest, summed in given order
            size = max((f.shape[-2:] for f in features), key=lambda s: s[-1])
            h: Tensor | None = None
            for conv, feat in zip(self.lateral, features, strict=True):
                lat = conv(feat)
                if tuple(lat.shape[-2:]) != tuple(size):
                    lat = F.interpolate(lat, size=size, mode="bilinear", align_corners=False)
                h = lat if h is None else h + lat
            assert h is not None
            for conv in self.stack:
                h = F.gelu(conv(h))
        else:  # stack at a coarser level, finer maps join through their laterals
            order = sorted(range(len(features)), key=lambda i: features[i].shape[-1])
            n_trunk = len(order) - self.trunk_level
            h = None
            for i in order[:n_trunk]:
                h = _add_up(self.lateral[i](features[i]), h)
            assert h is not None
            for conv in self.stack:
                h = F.gelu(conv(h))
            for i in order[n_trunk:]:
                h = _add_up(self.lateral[i](features[i]), h)
            h = F.gelu(h)
        maps = self.head(h) * self.log_temperature.exp()  # (B, K, hh, ww)
        b, k, hh, ww = maps.shape
        prob = torch.softmax(maps.flatten(2), dim=-1).view(b, k, hh, ww)
        xs = (torch.arange(ww, device=maps.device, dtype=maps.dtype) + 0.5) / ww
        ys = (torch.arange(hh, device=maps.device, dtype=maps.dtype) + 0.5) / hh
        x = (prob.sum(2) * xs).sum(-1)
        y = (prob.sum(3) * ys).sum(-1)
        return torch.stack([x, y], -1)

    @staticmethod
    def loss(pred: Tensor, target: Tensor) -> Tensor:
        """Mean absolute error of normalised coordinates (robust, tracks the NME)."""
        return F.l1_loss(pred, target)
