"""The digital encoder: detector readings -> multi-level latent.

Architecture (after the paper, sized by :class:`EncoderConfig`): the readings are
normalised, a shared trunk (MLP) maps them to a feature vector, one small block per latent
level maps it to that level's code, and a mixer (a linear layer across levels, initialised
to the identity) lets levels exchange information.

Normalisation of measurements (:class:`MeasurementNormalizer`): readings in volts are
shifted and scaled per measurement by statistics fitted once on training data
(``fit``): ``(y - mean_k) / std_k``.  The statistics are saved in the model's state, so
measurements from any bench (sim, fake-hw, hw) are normalised identically at decode time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lsi_hw.errors import ConfigError

__all__ = ["EncoderConfig", "LatentEncoder", "MeasurementNormalizer"]


class MeasurementNormalizer(nn.Module):
    """Per-measurement standardisation with statistics fitted on training readings."""

    def __init__(self, n_measurements: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_measurements))
        self.register_buffer("std", torch.ones(n_measurements))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, readings: Tensor, eps: float = 1e-12) -> MeasurementNormalizer:
        """Fit mean and std (volts) per measurement on (N, m) readings, N >= 2."""
        if readings.ndim != 2 or readings.shape[1] != self.mean.numel() or len(readings) < 2:
            raise ConfigError(
                f"fit needs (N >= 2, {self.mean.numel()}) readings; got {tuple(readings.shape)}"
            )
        self.mean.copy_(readings.mean(dim=0))
        self.std.copy_(readings.std(dim=0).clamp_min(eps))
        self.fitted.fill_(True)
        return self

    def forward(self, readings: Tensor) -> Tensor:
        return (readings - self.mean) / self.std


@dataclass(frozen=True)
class EncoderConfig:
    """Size of the digital encoder.

    Attributes
    ----------
    n_measurements: m, readings per scene.
    n_levels, level_dim: latent layout (L, D), e.g. SynthFace's levels.
    hidden: width of the shared trunk.
    depth: number of hidden layers of the trunk.
    block_hidden: width of each per-level block.
    """

    n_measurements: int
    n_levels: int
    level_dim: int
    hidden: int = 512
    depth: int = 2
    block_hidden: int = 256

    def __post_init__(self) -> None:
        for name in ("n_measurements", "n_levels", "level_dim", "hidden", "depth",
                     "block_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"encoder {name}={getattr(self, name)} must be >= 1")


class LatentEncoder(nn.Module):
    """Readings (B, m) volts -> latent (B, L, D)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.normalizer = MeasurementNormalizer(config.n_measurements)
        layers: list[nn.Module] = []
        width = config.n_measurements
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.LayerNorm(config.hidden), nn.GELU()]
            width = config.hidden
        self.trunk = nn.Sequential(*layers)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, config.block_hidden), nn.GELU(),
                          nn.Linear(config.block_hidden, config.level_dim))
            for _ in range(config.n_levels)
        )
        self.mixer = nn.Linear(config.n_levels, config.n_levels, bias=False)
        with torch.no_grad():
            self.mixer.weight.copy_(torch.eye(config.n_levels))

    def forward(self, readings: Tensor) -> Tensor:
        if readings.ndim != 2 or readings.shape[1] != self.config.n_measurements:
            raise ConfigError(
                f"readings must be (B, {self.config.n_measurements}); got {tuple(readings.shape)}"
            )
        features = self.trunk(self.normalizer(readings))
        levels = torch.stack([block(features) for block in self.blocks], dim=1)  # (B, L, D)
        return self.mixer(levels.transpose(1, 2)).transpose(1, 2)
