"""Monitor model: 8-bit drive values -> luminance (stage 1 of the forward model).

``L = L_peak * sum_c w_c * (v_c / 255) ** gamma + L_black``  in cd/m^2, where the RGB
weights ``w_c`` sum to 1 (so a grey drive ``v`` on all three channels gives
``L_peak * (v/255)**gamma + L_black``).  The black level is not split per channel:
it is the total black luminance of the screen, which is what a luminance meter reads on
a black frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lsi_hw.errors import ConfigError

__all__ = ["MonitorConfig", "drive_fraction", "inverse_gamma", "monitor_luminance"]


@dataclass(frozen=True)
class MonitorConfig:
    """The LCD monitor that shows test scenes.

    Attributes
    ----------
    gamma:
        Display gamma (exponent of the drive-to-luminance curve); sRGB-like screens ~2.2.
    peak_luminance_cd_m2:
        Luminance of full white (all channels 255), cd/m^2.  Office monitors: 200-400.
        Default 370: the monitor's brightness is the light knob of the bench.  The
        detector settings are discrete (gain steps x3.16, ranges x2-2.5), so the light
        sets where in the 30-80 % band typical scenes land at the default 50 dB on +-0.5 V
        (:mod:`lsi_hw.sim.detector`): at 370 the all-on reading of the brightest built-in
        scene is 77 % of full scale at 32 px and 69 % at 64-256 px, random 0.5 masks reach
        36-44 %.  At 300 the random-mask peaks fall under 30 %; from ~385 the 32 px
        all-on peak passes 80 %.
    black_luminance_cd_m2:
        Luminance of a black frame (backlight leakage), cd/m^2; 1/1000 of the peak.
    rgb_weights:
        Contribution of R, G, B to luminance (Rec. 709: 0.2126, 0.7152, 0.0722); sum 1.
    """

    gamma: float = 2.2
    peak_luminance_cd_m2: float = 370.0
    black_luminance_cd_m2: float = 0.37
    rgb_weights: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)

    def __post_init__(self) -> None:
        if not (0.1 <= self.gamma <= 5.0):
            raise ConfigError(f"monitor gamma={self.gamma} outside the allowed range [0.1, 5]")
        if not (self.peak_luminance_cd_m2 > 0 and np.isfinite(self.peak_luminance_cd_m2)):
            raise ConfigError(f"peak_luminance_cd_m2={self.peak_luminance_cd_m2} must be > 0")
        if not (0 <= self.black_luminance_cd_m2 < self.peak_luminance_cd_m2):
            raise ConfigError(
                f"black_luminance_cd_m2={self.black_luminance_cd_m2} must be in "
                f"[0, peak_luminance_cd_m2={self.peak_luminance_cd_m2})"
            )
        w = np.asarray(self.rgb_weights, dtype=float)
        if w.shape != (3,) or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
            raise ConfigError(f"rgb_weights={self.rgb_weights} must be 3 values >= 0 summing to 1")

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


def drive_fraction(scenes: np.ndarray) -> np.ndarray:
    """Scenes as drive fractions in [0, 1]: uint8 / 255, floats unchanged (float64)."""
    arr = np.asarray(scenes)
    if arr.dtype.kind in "ui":
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64, copy=False)


def monitor_luminance(scenes: np.ndarray, cfg: MonitorConfig) -> np.ndarray:
    """Luminance in cd/m^2 of (B, H, W) grey or (B, H, W, 3) RGB drive values.

    uint8 scenes go through a 256-entry lookup table (fast, exact); float scenes are
    fractions of full drive in [0, 1].  Returns (B, H, W) float64.
    """
    arr = np.asarray(scenes)
    if arr.dtype == np.uint8:
        curve = cfg.peak_luminance_cd_m2 * (np.arange(256, dtype=np.float64) / 255.0) ** cfg.gamma
        if arr.ndim == 3:
            return curve[arr] + cfg.black_luminance_cd_m2
        lum = np.full(arr.shape[:-1], cfg.black_luminance_cd_m2)
        for channel, weight in enumerate(cfg.rgb_weights):
            lum += (weight * curve)[arr[..., channel]]
        return lum
    frac_g = drive_fraction(arr) ** cfg.gamma
    if frac_g.ndim == 4:
        frac_g = frac_g @ np.asarray(cfg.rgb_weights, dtype=np.float64)
    return cfg.peak_luminance_cd_m2 * frac_g + cfg.black_luminance_cd_m2


def inverse_gamma(luminance_cd_m2: np.ndarray, cfg: MonitorConfig) -> np.ndarray:
    """Grey drive fraction in [0, 1] that produces the given luminance (inverse of the curve)."""
    lum = np.asarray(luminance_cd_m2, dtype=np.float64)
    frac = np.clip((lum - cfg.black_luminance_cd_m2) / cfg.peak_luminance_cd_m2, 0.0, 1.0)
    return frac ** (1.0 / cfg.gamma)
