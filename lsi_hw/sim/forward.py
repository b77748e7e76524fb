"""The whole physical chain in numpy: scenes + masks -> detector volts.

:class:`SimConfig` bundles one config object per stage; :func:`expected_volts` is the
noiseless analog model (linear in the irradiance up to constant offsets: what a
reconstruction uses as its forward operator), :func:`measure_volts` adds noise,
saturation and digitization.  The torch twin (:mod:`lsi_hw.sim.torch_model`) implements
the same chain from the same configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError, PatternError
from lsi_hw.patterns import PatternSet, superpixel_for
from lsi_hw.sim.detector import (
    ELEMENTARY_CHARGE_C,
    AmplifierConfig,
    DigitizerConfig,
    NoiseConfig,
    PhotodiodeConfig,
    TimingConfig,
    digitize,
    flicker_factors,
    flicker_factors_per_row,
    per_row,
    settle,
    settling_coefficients,
    shot_noise_current,
)
from lsi_hw.sim.optics import (
    DMDConfig,
    RelayOpticsConfig,
    is_identity_geometry,
    relay_to_mask_grid,
)
from lsi_hw.sim.scene import MonitorConfig, monitor_luminance

__all__ = [
    "AcquisitionResult",
    "SimConfig",
    "detect",
    "expected_volts",
    "irradiance",
    "measure_volts",
    "noise_std_v",
    "optical_power",
    "read_noise_v",
    "resolve_superpixel",
]


@dataclass(frozen=True)
class SimConfig:
    """Every stage of the simulated bench (each a frozen dataclass with SI units)."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    optics: RelayOpticsConfig = field(default_factory=RelayOpticsConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    photodiode: PhotodiodeConfig = field(default_factory=PhotodiodeConfig)
    amplifier: AmplifierConfig = field(default_factory=AmplifierConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    digitizer: DigitizerConfig = field(default_factory=DigitizerConfig)

    def with_noise(self, preset: str) -> SimConfig:
        """Copy with a noise preset (``none``, ``shot``, ``read``, ``full``)."""
        return replace(self, noise=NoiseConfig.from_preset(preset))

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> SimConfig:
        """Copy with single settings changed, addressed as ``"stage.field"``.

        Parameters
        ----------
        overrides : mapping of str to value, or None
            E.g. ``{"digitizer.bits": 12, "optics.shift_px": [1.5, 0.0],
            "monitor.peak_luminance_cd_m2": 30.0}``; units are those of the field names
            (see each stage's config class). Lists become tuples. ``"noise.preset"`` picks a
            noise preset (``none``, ``shot``, ``read``, ``full``) before the other noise
            fields are applied.

        Returns
        -------
        SimConfig
            A new config; every changed stage is re-validated by its own checks.

        Raises
        ------
        ConfigError
            Unknown stage or field (the allowed names are listed), or a value the stage
            refuses.
        """
        if not overrides:
            return self
        stages = tuple(self.to_dict())
        per_stage: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            stage, sep, name = str(key).partition(".")
            if not sep or stage not in stages:
                raise ConfigError(f"simulator setting {key!r}: write STAGE.FIELD with STAGE one "
                                  f"of {', '.join(stages)}")
            allowed = {f.name for f in fields(getattr(self, stage))}
            if name not in allowed:
                raise ConfigError(f"simulator setting {key!r}: {stage} has no field {name!r}; "
                                  f"allowed: {', '.join(sorted(allowed))}")
            per_stage.setdefault(stage, {})[name] = (
                tuple(value) if isinstance(value, list) else value)
        out = self
        for stage, values in per_stage.items():
            current = getattr(out, stage)
            if stage == "noise":
                if "preset" in values:
                    current = NoiseConfig.from_preset(str(values.pop("preset")))
                if values:
                    values["preset"] = "custom"
            try:
                out = replace(out, **{stage: replace(current, **values)})
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"simulator settings {values} for {stage}: {exc}") from exc
        return out

    def to_dict(self) -> dict[str, Any]:
        """Settings snapshot of every stage."""
        return {
            name: getattr(self, name).to_dict()
            for name in (
                "monitor", "optics", "dmd", "photodiode", "amplifier", "timing", "noise",
                "digitizer",
            )
        }


def resolve_superpixel(mask_shape: tuple[int, int], dmd: DMDConfig) -> int:
    """Superpixel side for ``mask_shape`` on the DMD (configured, or the largest that fits).

    Raises PatternError when the masks do not fit the 912 x 1140 array.
    """
    try:
        largest = superpixel_for(mask_shape, diamond=dmd.diamond)
    except ConfigError as exc:  # the masks, not a setting, are what does not fit
        raise PatternError(str(exc)) from None
    if dmd.superpixel is None:
        return largest
    if dmd.superpixel > largest:
        raise ConfigError(
            f"DMD superpixel={dmd.superpixel} does not fit masks of shape {mask_shape}; "
            f"allowed: 1..{largest}"
        )
    return int(dmd.superpixel)


def irradiance(
    scenes: np.ndarray, mask_shape: tuple[int, int], cfg: SimConfig, method: str = "numpy",
    work: np.ndarray | None = None,
) -> np.ndarray:
    """Irradiance on the DMD sampled on the mask grid, W/m^2, (B, H, W).

    ``method="numpy"`` is the float64 reference.  Any other method takes the fused numba
    kernel (float32, :mod:`lsi_hw.sim.fused`) when it applies: uint8 scenes of the mask's
    shape on an aligned relay; it then writes into ``work`` (float32 (B, H, W)) if given.
    """
    arr = np.asarray(scenes)
    if (
        method != "numpy"
        and arr.dtype == np.uint8
        and arr.shape[1:3] == tuple(mask_shape)
        and is_identity_geometry(cfg.optics)
    ):
        from lsi_hw.sim.fused import fused_irradiance_u8  # numba: imported only when used

        return fused_irradiance_u8(arr, cfg.monitor, cfg.optics, out=work)
    return relay_to_mask_grid(monitor_luminance(arr, cfg.monitor), mask_shape, cfg.optics)


def _project(patterns: PatternSet, irr: np.ndarray, method: str) -> np.ndarray:
    """(B, m) sums of irradiance under each mask."""
    if method == "numpy":
        flat = irr.reshape(irr.shape[0], -1)
        return flat @ patterns.masks.reshape(patterns.m, -1).T.astype(np.float64)
    from lsi_hw.sim.kernels import project  # numba: imported only when used

    return np.asarray(project(patterns, irr, method=method), dtype=np.float64)


def optical_power(
    irr: np.ndarray, patterns: PatternSet, cfg: SimConfig, method: str = "auto"
) -> np.ndarray:
    """Optical power on the photodiode for each (scene, pattern), watts, (B, m).

    ``P_k = rho_on A [leak * sum(E) + (1 - leak) * (m_k . E)]`` with ``rho_on`` the
    on-state reflectance (fill x efficiency x collection), ``A`` the area of one mask
    pixel on the array and ``leak`` the off-state leakage.
    """
    area = cfg.dmd.mask_pixel_area_m2(resolve_superpixel(patterns.shape, cfg.dmd))
    leak = cfg.dmd.off_state_leakage
    projected = _project(patterns, irr, method)
    flat = irr.reshape(irr.shape[0], -1)
    if method == "numpy" or not flat.flags.c_contiguous or flat.dtype.kind != "f":
        total = flat.sum(axis=1, keepdims=True, dtype=np.float64)
    else:
        from lsi_hw.sim.numba_kernels import row_sums_f64  # numba: imported only when used

        total = row_sums_f64(flat)[:, None]
    return cfg.dmd.on_reflectance * area * (leak * total + (1.0 - leak) * projected)


def read_noise_v(cfg: SimConfig) -> float:
    """Per-reading read noise, volts rms: the gain step's output noise averaged over the
    window, ``noise / sqrt(max(1, 2 f_3dB window))``, unless overridden."""
    if cfg.noise.read_noise_v_rms is not None:
        return float(cfg.noise.read_noise_v_rms)
    amp = cfg.amplifier
    n_eff = max(1.0, 2.0 * amp.bandwidth_hz * cfg.timing.window_us * 1e-6)
    return amp.step.noise_for(amp.load) / np.sqrt(n_eff)


def noise_std_v(expected: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Standard deviation of each reading around its noiseless value, volts (same shape as
    ``expected``, the output of :func:`expected_volts`), from the configured noise sources:
    shot noise of the photocurrent and of the dark current (Poisson over the window),
    read noise (:func:`read_noise_v`), source flicker (relative, on the photocurrent) and
    the ADC step (``lsb / sqrt(12)``). Settling is neglected (its mixing of neighbouring
    readings changes the variance by well under 1 %). Used to show residuals in units of
    the noise."""
    noise, amp = cfg.noise, cfg.amplifier
    window_s = cfg.timing.window_us * 1e-6
    dark_a = cfg.photodiode.dark_current_a
    photo_a = np.clip((np.asarray(expected, dtype=np.float64) - amp.offset_v) / amp.v_per_a
                      - dark_a, 0.0, None)
    var = np.full(photo_a.shape, cfg.digitizer.lsb_v ** 2 / 12.0)
    if noise.shot:
        var = var + amp.v_per_a ** 2 * ELEMENTARY_CHARGE_C * photo_a / window_s
    if noise.dark:
        var = var + amp.v_per_a ** 2 * ELEMENTARY_CHARGE_C * dark_a / window_s
    if noise.read:
        var = var + read_noise_v(cfg) ** 2
    if noise.flicker_rel_rms > 0:
        var = var + (noise.flicker_rel_rms * amp.v_per_a * photo_a) ** 2
    return np.sqrt(var)


def expected_volts(
    scenes: np.ndarray, patterns: PatternSet, cfg: SimConfig, method: str = "auto"
) -> np.ndarray:
    """Noiseless analog detector output, volts (B, m): gain, dark current, settling and
    amplifier offset, before saturation and digitization."""
    power = optical_power(irradiance(scenes, patterns.shape, cfg, method), patterns, cfg, method)
    current = cfg.photodiode.responsivity_a_per_w * power + cfg.photodiode.dark_current_a
    a, beta = settling_coefficients(cfg.amplifier, cfg.timing)
    volts = settle(cfg.amplifier.v_per_a * current, a, beta)
    return volts + cfg.amplifier.offset_v


@dataclass(frozen=True)
class AcquisitionResult:
    """Volts as digitized plus what happened on the way."""

    volts: np.ndarray
    saturated: np.ndarray
    negative_clipped: int


def measure_volts(
    scenes: np.ndarray,
    patterns: PatternSet,
    cfg: SimConfig,
    rng: np.random.Generator,
    method: str = "auto",
) -> AcquisitionResult:
    """Noisy, saturating, digitized detector readings (B, m) in volts."""
    power = optical_power(irradiance(scenes, patterns.shape, cfg, method), patterns, cfg, method)
    return detect(power, cfg, rng)


def detect(power_w: np.ndarray, cfg: SimConfig,
           rng: np.random.Generator | Sequence[np.random.Generator]) -> AcquisitionResult:
    """The photodiode, noise, amplifier and digitizer stages: optical powers ``power_w``
    (B, m) in watts -> noisy, saturating, digitized readings in volts (what
    :func:`measure_volts` does after the optics).

    ``rng`` is one generator for the whole array, or one generator per scene (row): each
    row then draws exactly what ``detect(power_w[k:k+1], cfg, rng[k])`` draws, while the
    arithmetic stays vectorised over all rows.
    """
    power = power_w
    noise = cfg.noise
    if noise.flicker_rel_rms > 0:
        rel = noise.flicker_rel_rms
        if isinstance(rng, np.random.Generator):
            power = power * flicker_factors(power.size, rel, rng).reshape(power.shape)
        else:
            power = power * flicker_factors_per_row(power.shape, rel, rng)
    window_s = cfg.timing.window_us * 1e-6
    photo = cfg.photodiode.responsivity_a_per_w * power
    n_negative = 0
    if noise.shot:
        photo, n_negative = shot_noise_current(photo, window_s, rng)
    dark = np.full_like(photo, cfg.photodiode.dark_current_a)
    if noise.dark:
        dark, _ = shot_noise_current(dark, window_s, rng)
    a, beta = settling_coefficients(cfg.amplifier, cfg.timing)
    volts = settle(cfg.amplifier.v_per_a * (photo + dark), a, beta) + cfg.amplifier.offset_v
    if noise.read:
        sigma = read_noise_v(cfg)
        volts = volts + per_row(rng, lambda g, row: g.normal(0.0, sigma, size=row.shape),
                                volts)
    sat = cfg.amplifier.saturation_v
    amp_saturated = np.abs(volts) >= sat
    volts = np.clip(volts, -sat, sat)
    digitized, adc_clipped = digitize(volts, cfg.digitizer)
    return AcquisitionResult(digitized, amp_saturated | adc_clipped, n_negative)
