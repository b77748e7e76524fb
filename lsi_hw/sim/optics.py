"""Relay optics (monitor -> DMD) and the DMD itself (stages 2 and 3 of the forward model).

Geometry convention: the scene image (Hs, Ws) nominally fills the mask grid (H, W)
exactly (pixel centres aligned, ``in = (out + 0.5) * Hs / H - 0.5``).  A misalignment is
an affine map *on the DMD*, about the centre of the mask grid: a scene point ``q`` lands
at ``p = scale * R(rotation) q + shift``.  Shifts are in mask pixels (one mask pixel is
one DMD superpixel).  Resampling is bilinear with zero light outside the scene.

Radiometry: an extended Lambertian source of luminance ``L`` imaged at working F-number
``N`` through a lens of transmission ``T`` gives the image illuminance
``E_v = pi * T * L / (4 N^2)`` (lux); dividing by the luminous efficacy ``K`` (lm/W) of
the monitor's spectrum gives the irradiance in W/m^2.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from lsi_hw.errors import ConfigError, require_in_range

__all__ = [
    "DMDConfig",
    "RelayOpticsConfig",
    "affine_grid_coordinates",
    "bilinear_sample",
    "gaussian_kernel1d",
    "gaussian_taps",
    "irradiance_w_m2_per_cd_m2",
    "is_identity_geometry",
    "relay_to_mask_grid",
    "sampling_coordinates",
    "separable_blur",
    "vignetting_map",
]


@dataclass(frozen=True)
class RelayOpticsConfig:
    """Relay lens from the monitor to the DMD.

    Attributes
    ----------
    rotation_deg:
        Rotation of the scene image on the DMD, degrees (counter-clockwise).
    scale:
        Magnification error (1 = the scene fills the mask grid exactly).
    shift_px:
        (rows, columns) shift of the scene image on the DMD, in mask pixels.
    blur_sigma_px:
        Standard deviation of the Gaussian point spread on the DMD, mask pixels (0 = sharp).
    vignetting_half_field_deg:
        Field angle at the corner of the mask grid; irradiance falls as cos^4 of the
        field angle (0 = no vignetting).
    f_number_working:
        Working F-number of the relay on the DMD side, ``N (1 + |magnification|)``.  The
        monitor is much larger than the DMD, so the relay demagnifies ~20x and the working
        F-number is close to the lens's own (default: an f/1.4 lens).
    transmission:
        Lens transmission, 0..1.
    luminous_efficacy_lm_per_w:
        Lumens per watt of the monitor's emitted spectrum (white LCD ~ 250-300 lm/W).
    """

    rotation_deg: float = 0.0
    scale: float = 1.0
    shift_px: tuple[float, float] = (0.0, 0.0)
    blur_sigma_px: float = 0.5
    vignetting_half_field_deg: float = 8.0
    f_number_working: float = 1.5
    transmission: float = 0.9
    luminous_efficacy_lm_per_w: float = 280.0

    def __post_init__(self) -> None:
        checks = [
            ("rotation_deg", self.rotation_deg, -180.0, 180.0),
            ("scale", self.scale, 0.1, 10.0),
            ("blur_sigma_px", self.blur_sigma_px, 0.0, 50.0),
            ("vignetting_half_field_deg", self.vignetting_half_field_deg, 0.0, 60.0),
            ("f_number_working", self.f_number_working, 0.5, 100.0),
            ("transmission", self.transmission, 0.0, 1.0),
            ("luminous_efficacy_lm_per_w", self.luminous_efficacy_lm_per_w, 1.0, 683.0),
        ]
        for name, value, lo, hi in checks:
            require_in_range(f"relay optics {name}", value, lo, hi)
        if len(self.shift_px) != 2 or not np.all(np.isfinite(self.shift_px)):
            raise ConfigError(f"relay optics shift_px={self.shift_px} must be 2 finite numbers")

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


@dataclass(frozen=True)
class DMDConfig:
    """The DLP4500 micromirror array and the collection optics behind it.

    Attributes
    ----------
    mirror_pitch_m:
        Micromirror pitch, metres (DLP4500: 7.6 um, unconfirmed).  Each mirror covers
        ``pitch^2`` of the array.
    fill_factor:
        Fraction of a mirror's area that reflects.
    efficiency:
        Fraction of the light on an on-state mirror that reaches the collection lens
        (mirror reflectivity x window transmission x diffraction efficiency).
    off_state_leakage:
        Light reaching the photodiode from an off-state mirror relative to an on-state one
        (1 / contrast ratio).
    collection_efficiency:
        Fraction of the on-state light the collection lens focuses onto the photodiode.
    diamond:
        Map mask pixels onto the diamond array with physically square superpixels
        (s columns x 2s rows, 2 s^2 mirrors) instead of s x s mirrors.
    superpixel:
        Mirrors per mask pixel along a column; None = the largest that fits the array.
    max_patterns:
        How many masks the simulated modulator holds in one load.
    """

    mirror_pitch_m: float = 7.6e-6
    fill_factor: float = 0.92
    efficiency: float = 0.68
    off_state_leakage: float = 1.0e-3
    collection_efficiency: float = 0.8
    diamond: bool = True
    superpixel: int | None = None
    max_patterns: int = 131072

    def __post_init__(self) -> None:
        checks = [
            ("mirror_pitch_m", self.mirror_pitch_m, 1e-7, 1e-3),
            ("fill_factor", self.fill_factor, 0.0, 1.0),
            ("efficiency", self.efficiency, 0.0, 1.0),
            ("off_state_leakage", self.off_state_leakage, 0.0, 1.0),
            ("collection_efficiency", self.collection_efficiency, 0.0, 1.0),
        ]
        for name, value, lo, hi in checks:
            require_in_range(f"DMD {name}", value, lo, hi)
        if self.superpixel is not None and int(self.superpixel) < 1:
            raise ConfigError(f"DMD superpixel={self.superpixel} must be >= 1 or None")
        if int(self.max_patterns) < 1:
            raise ConfigError(f"DMD max_patterns={self.max_patterns} must be >= 1")

    @property
    def on_reflectance(self) -> float:
        """Fraction of incident light an on-state mirror sends to the photodiode."""
        return self.fill_factor * self.efficiency * self.collection_efficiency

    def mirrors_per_mask_pixel(self, superpixel: int) -> int:
        """Mirrors in one superpixel of side ``superpixel``."""
        return superpixel * superpixel * (2 if self.diamond else 1)

    def mask_pixel_area_m2(self, superpixel: int) -> float:
        """Array area covered by one mask pixel, m^2."""
        return self.mirrors_per_mask_pixel(superpixel) * self.mirror_pitch_m**2

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


def irradiance_w_m2_per_cd_m2(cfg: RelayOpticsConfig) -> float:
    """Irradiance on the DMD (W/m^2) per cd/m^2 of scene luminance, on axis."""
    lux_per_nit = math.pi * cfg.transmission / (4.0 * cfg.f_number_working**2)
    return lux_per_nit / cfg.luminous_efficacy_lm_per_w


def is_identity_geometry(cfg: RelayOpticsConfig) -> bool:
    """True when the misalignment is exactly the identity (no resampling needed)."""
    return cfg.rotation_deg == 0.0 and cfg.scale == 1.0 and tuple(cfg.shift_px) == (0.0, 0.0)


def affine_grid_coordinates(
    shape: tuple[int, int], shift_px: tuple[float, float], rotation_deg: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Grid (row, col) coordinates sampled by each point of an (H, W) grid, two (H, W)
    float64 arrays, under the misalignment ``p = scale * R(rotation) q + shift`` about the
    grid centre (the module's convention).

    :func:`sampling_coordinates` rescales them to scene pixels; the registration fit of
    :func:`lsi_hw.calibration.register_dmd_to_scene` uses them as they are (its scene is on
    the mask grid).
    """
    h, w = shape
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    # DMD point relative to the grid centre, remove shift, rotation and scale
    pr = rr - (h - 1) / 2.0 - shift_px[0]
    pc = cc - (w - 1) / 2.0 - shift_px[1]
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # forward rotation (counter-clockwise on screen, rows pointing down): q -> R q
    qc = (cos * pc - sin * pr) / scale
    qr = (sin * pc + cos * pr) / scale
    # back to grid pixel indices
    return qr + (h - 1) / 2.0, qc + (w - 1) / 2.0


def sampling_coordinates(
    scene_shape: tuple[int, int], mask_shape: tuple[int, int], cfg: RelayOpticsConfig
) -> np.ndarray:
    """Scene-pixel coordinates sampled by each mask pixel, (2, H, W) float64 (row, col).

    The same coordinates drive the numpy and the torch resampling, so both see
    identical geometry.
    """
    hs, ws = scene_shape
    h, w = mask_shape
    gr, gc = affine_grid_coordinates(mask_shape, cfg.shift_px, cfg.rotation_deg, cfg.scale)
    # mask-grid pixel indices to scene pixel indices
    sr = (gr + 0.5) * (hs / h) - 0.5
    sc = (gc + 0.5) * (ws / w) - 0.5
    return np.stack([sr, sc])


def bilinear_sample(images: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of (B, Hs, Ws) images at (2, H, W) coordinates; zero outside."""
    b, hs, ws = images.shape
    r, c = coords
    r0 = np.floor(r).astype(np.int64)
    c0 = np.floor(c).astype(np.int64)
    fr = r - r0
    fc = c - c0
    out = np.zeros((b, *r.shape), dtype=np.float64)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = r0 + dr
            cc = c0 + dc
            valid = (rr >= 0) & (rr < hs) & (cc >= 0) & (cc < ws)
            weight = np.where(valid, wr * wc, 0.0)
            out += images[:, np.clip(rr, 0, hs - 1), np.clip(cc, 0, ws - 1)] * weight
    return out


def gaussian_taps(sigma_px: float, radius: int) -> np.ndarray:
    """Normalised sampled-Gaussian taps of ``sigma_px`` at offsets -radius..radius."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def gaussian_kernel1d(sigma_px: float) -> np.ndarray:
    """Normalised Gaussian taps for ``sigma_px`` (radius ceil(4 sigma)); [1.] for sigma 0."""
    if sigma_px <= 0:
        return np.ones(1)
    return gaussian_taps(sigma_px, max(1, math.ceil(4.0 * sigma_px)))


def separable_blur(images: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``images`` correlated with ``taps`` along rows, then columns (the last two axes),
    zero light beyond the edges."""
    out = ndimage.correlate1d(images, taps, axis=-2, mode="constant", cval=0.0)
    return ndimage.correlate1d(out, taps, axis=-1, mode="constant", cval=0.0)


def vignetting_map(mask_shape: tuple[int, int], cfg: RelayOpticsConfig) -> np.ndarray:
    """Relative irradiance cos^4(field angle) over the mask grid, 1 on axis, (H, W).

    The map is computed once per (shape, half field) and returned read-only.
    """
    h, w = mask_shape
    return _vignetting_map(int(h), int(w), float(cfg.vignetting_half_field_deg))


@functools.lru_cache(maxsize=16)
def _vignetting_map(h: int, w: int, half_field_deg: float) -> np.ndarray:
    if half_field_deg == 0:
        out = np.ones((h, w))
    else:
        rr, cc = np.meshgrid(np.arange(h) - (h - 1) / 2.0, np.arange(w) - (w - 1) / 2.0,
                             indexing="ij")
        r_corner = math.hypot((h - 1) / 2.0, (w - 1) / 2.0) or 1.0
        tan_corner = math.tan(math.radians(half_field_deg))
        tan_field = np.hypot(rr, cc) / r_corner * tan_corner
        out = 1.0 / (1.0 + tan_field**2) ** 2  # cos^4(atan(t)) = 1 / (1 + t^2)^2
    out.setflags(write=False)
    return out


def relay_to_mask_grid(
    luminance_cd_m2: np.ndarray, mask_shape: tuple[int, int], cfg: RelayOpticsConfig
) -> np.ndarray:
    """Irradiance on the DMD, W/m^2, sampled on the mask grid: (B, Hs, Ws) -> (B, H, W).

    Steps: affine resampling (skipped when the geometry is the identity and the shapes
    agree), Gaussian blur with zero light beyond the grid, cos^4 vignetting, radiometric
    conversion.
    """
    lum = np.asarray(luminance_cd_m2, dtype=np.float64)
    if is_identity_geometry(cfg) and lum.shape[1:] == tuple(mask_shape):
        img = lum
    else:
        img = bilinear_sample(lum, sampling_coordinates(lum.shape[1:], mask_shape, cfg))
    if cfg.blur_sigma_px > 0:
        img = separable_blur(img, gaussian_kernel1d(cfg.blur_sigma_px))
    scale = irradiance_w_m2_per_cd_m2(cfg)
    if cfg.vignetting_half_field_deg > 0:
        return img * (scale * vignetting_map(mask_shape, cfg))
    return img * scale
