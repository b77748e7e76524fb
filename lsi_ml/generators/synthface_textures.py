"""SynthFace's fixed random textures: background waves on the image grid, skin and hair
plane waves in face units (so they move with the head).

The waves are drawn once per generator from its seeded ``torch.Generator``; the latent only
sets their amplitudes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True, eq=False)
class FixedTextures:
    """The fixed random textures of one generator."""

    bg_basis: Tensor
    """``(8, r, r)`` cosine waves on the internal grid (background)."""
    skin_waves: Tensor
    """``(2, 3)`` plane waves ``(f_u, f_v, phase)`` of the skin, per face unit."""
    hair_waves: Tensor
    """``(2, 3)`` plane waves of the hair (strands: mostly horizontal)."""

    @classmethod
    def draw(cls, gen: torch.Generator, gx: Tensor, gy: Tensor) -> FixedTextures:
        """Draw the textures from ``gen`` (in this order) on the grid ``gx, gy`` ``(r, r)``."""
        bg_basis = grid_waves(8, (2.0, 14.0), gen, gx, gy)
        skin_waves = plane_waves(2, (18.0, 30.0), gen)
        hair_waves = plane_waves(2, (35.0, 60.0), gen, anisotropic=True)
        return cls(bg_basis, skin_waves, hair_waves)


def grid_waves(k: int, freq: tuple[float, float], gen: torch.Generator, gx: Tensor, gy: Tensor,
               anisotropic: bool = False) -> Tensor:
    """``k`` fixed random cosine waves on the grid ``gx, gy`` ``(r, r)``: ``(k, r, r)``."""
    f = freq[0] + (freq[1] - freq[0]) * torch.rand(k, generator=gen)
    th = torch.rand(k, generator=gen) * 2 * math.pi
    if anisotropic:
        th = math.pi / 2 + 0.3 * (torch.rand(k, generator=gen) - 0.5)
    ph = torch.rand(k, generator=gen) * 2 * math.pi
    return torch.cos(f[:, None, None] * (torch.cos(th)[:, None, None] * gx + torch.sin(th)[
        :, None, None] * gy) + ph[:, None, None])


def plane_waves(k: int, freq: tuple[float, float], gen: torch.Generator,
                anisotropic: bool = False) -> Tensor:
    """``k`` fixed random plane waves ``(k, 3)``: ``(f_u, f_v, phase)`` per face unit."""
    f = freq[0] + (freq[1] - freq[0]) * torch.rand(k, generator=gen)
    th = torch.rand(k, generator=gen) * 2 * math.pi
    if anisotropic:  # strands: waves running across the hair, mostly horizontally
        th = 0.3 * (torch.rand(k, generator=gen) - 0.5)
    ph = torch.rand(k, generator=gen) * 2 * math.pi
    return torch.stack([f * torch.cos(th), f * torch.sin(th), ph], 1)


def face_texture(amp: Tensor, waves: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Texture ``(n, 1, h, w)``: ``sum_k amp_k cos(f_k . (u, v) + phase_k)`` in face units."""
    w = waves.to(u)
    out = amp[:, 0, None, None] * torch.cos(w[0, 0] * u + w[0, 1] * v + w[0, 2])
    for k in range(1, w.shape[0]):
        out = out + amp[:, k, None, None] * torch.cos(w[k, 0] * u + w[k, 1] * v + w[k, 2])
    return out.unsqueeze(1)


def value_noise(k: int, cells: int, gen: torch.Generator, size: int) -> Tensor:
    """``k`` fixed smooth value-noise maps in ``[-1, 1]``, ``(k, size, size)``."""
    base = torch.rand(k, 1, cells, cells, generator=gen) * 2 - 1
    return F.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
