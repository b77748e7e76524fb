"""Photodiode, PDA100A2 amplifier, noise and digitizer (stages 4 to 7 of the forward model).

Pure functions on (B, m) arrays of per-pattern values, in time order along the last axis
(scene after scene), plus the config dataclasses.  The order follows the physics:

``P (W) -> [flicker] -> i = R P + i_dark (A) -> [shot noise, Poisson in electrons over
the averaging window] -> V = G i -> settling (first-order amplifier) -> + offset +
[read noise] -> amplifier saturation -> digitizer clip + quantization``.

Default operating point (:class:`AmplifierConfig`, :class:`DigitizerConfig`, with the
370 cd/m^2 monitor of :class:`~lsi_hw.sim.scene.MonitorConfig`): 50 dB Hi-Z (4.75e5 V/A,
33 kHz, tau = 4.8 us) on a +-0.5 V 16-bit digitizer (LSB 15 uV).  A lab sets gain and
range once per setup so that the brightest reading of its typical scenes uses 30-80 % of
full scale (:mod:`lsi_hw.operating_point`); the brightest reading any mask can give is the
all-on mask on the brightest scene.  Measured with the default ``SimBench`` (no noise),
brightest reading / full scale, Hadamard split masks (which hold the all-on mask) / random
0.5 masks, m = 256: built-in scenes 0.77 / 0.44 at 32 px, 0.69 / 0.37 at 64 px, 0.69 /
0.36 at 128 px; 64 SynthFace faces at 64 px 0.43-0.51 / 0.23-0.27 (three latent seeds;
faces alone are darker than the built-in grey staircase, so their random-mask peak sits
just under the band).  The brightest reading barely depends on the image size: the masks
are magnified to fill the DMD (the largest superpixel that fits), 512 x 1024 mirrors from
64 px up, 544 x 1088 (13 % more light) at 32 px, 560 x 1120 (20 %) at 16 px; that is less
than one step of the discrete gains (x3.16) and ranges (x2-2.5), so one fixed setting
serves every size.  The former 40 dB on +-10 V put a 64 px face at 0.02-0.09 V (0.2-0.9 %
of full scale), where the ADC step (305 uV), not the light, set the noise.  50 dB settles
within one 235 us pattern: exp(-235 us / 4.8 us) = 7e-22, and the reading keeps 1.3e-7 of
the previous one after the 60 us settling delay.  A full-screen white is about twice full
scale at this setting (typical scenes average a third of the peak luminance): calibration
scales its bright stimuli to the range (:func:`lsi_hw.calibration.run_all`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lsi_hw.errors import ConfigError
from lsi_hw.specs import GainStep, pda100a2_gain

__all__ = [
    "ELEMENTARY_CHARGE_C",
    "NOISE_PRESETS",
    "AmplifierConfig",
    "DigitizerConfig",
    "NegativeIntensityWarning",
    "NoiseConfig",
    "PhotodiodeConfig",
    "TimingConfig",
    "digitize",
    "flicker_factors",
    "flicker_factors_per_row",
    "per_row",
    "settle",
    "settling_beta",
    "settling_coefficients",
    "settling_terms",
    "shot_noise_current",
]

ELEMENTARY_CHARGE_C = 1.602176634e-19


class NegativeIntensityWarning(RuntimeWarning):
    """Negative currents were clipped to zero before the Poisson sampler."""


@dataclass(frozen=True)
class PhotodiodeConfig:
    """The PDA100A2's silicon photodiode.

    Attributes
    ----------
    responsivity_a_per_w: A/W at the effective wavelength (0.344 at 550 nm).
    dark_current_a: dark current, amperes.
    active_area_m2: sensitive area, m^2 (75.4 mm^2); the focused spot must fit inside.
    """

    responsivity_a_per_w: float = 0.344
    dark_current_a: float = 1.0e-9
    active_area_m2: float = 75.4e-6

    def __post_init__(self) -> None:
        if not (0 < self.responsivity_a_per_w <= 1.0):
            raise ConfigError(
                f"responsivity_a_per_w={self.responsivity_a_per_w} outside (0, 1] A/W"
            )
        if not (0 <= self.dark_current_a < 1e-3):
            raise ConfigError(f"dark_current_a={self.dark_current_a} outside [0, 1e-3) A")
        if not (self.active_area_m2 > 0):
            raise ConfigError(f"active_area_m2={self.active_area_m2} must be > 0")

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


@dataclass(frozen=True)
class AmplifierConfig:
    """The PDA100A2 transimpedance amplifier: gain knob and output load.

    Attributes
    ----------
    gain_db: knob position, one of 0, 10, ..., 70 dB (user-declared on real hardware).
        Default 50 dB: with the default digitizer range (+-0.5 V) the brightest reading of
        typical scenes uses 30-80 % of full scale (module docstring).
    load: "hi-z" (0-10 V) or "50ohm" (gain and swing halved, 0-5 V).
    offset_v: output offset with no light, volts (spec: about +-6 mV max).
    """

    gain_db: int = 50
    load: str = "hi-z"
    offset_v: float = 1.0e-3

    def __post_init__(self) -> None:
        step = pda100a2_gain(self.gain_db)
        step.v_per_a(self.load)
        if not (abs(self.offset_v) <= 0.1):
            raise ConfigError(f"amplifier offset_v={self.offset_v} outside [-0.1, 0.1] V")

    @property
    def step(self) -> GainStep:
        """Data-sheet row of this gain."""
        return pda100a2_gain(self.gain_db)

    @property
    def v_per_a(self) -> float:
        """Transimpedance gain into the chosen load, V/A."""
        return self.step.v_per_a(self.load)

    @property
    def bandwidth_hz(self) -> float:
        """-3 dB bandwidth, Hz."""
        return self.step.bandwidth_hz

    @property
    def saturation_v(self) -> float:
        """Largest output voltage, volts."""
        return self.step.saturation_v(self.load)

    @property
    def time_constant_s(self) -> float:
        """First-order time constant 1 / (2 pi f_3dB), seconds."""
        return 1.0 / (2.0 * math.pi * self.bandwidth_hz)

    def to_dict(self) -> dict:
        """Settings snapshot (with the derived gain and bandwidth)."""
        return {
            **asdict(self),
            "v_per_a": self.v_per_a,
            "bandwidth_hz": self.bandwidth_hz,
            "saturation_v": self.saturation_v,
            "table_confirmed": self.step.confirmed,
        }


@dataclass(frozen=True)
class TimingConfig:
    """Pattern timing and the reading window inside each pattern.

    Attributes
    ----------
    exposure_us: display time per pattern, microseconds (DLP4500 1-bit minimum 235).
    period_us: pattern period, microseconds (>= exposure).
    settling_delay_us: wait after the pattern starts before averaging, microseconds.
    window_us: averaging window per reading, microseconds; also the shot-noise
        integration time.  settling_delay_us + window_us <= exposure_us.
    scene_change_s: time to change the scene on the monitor between images, seconds
        (frames until the LCD has settled); used for timestamps only.
    """

    exposure_us: float = 235.0
    period_us: float = 235.0
    settling_delay_us: float = 60.0
    window_us: float = 150.0
    scene_change_s: float = 0.05

    def __post_init__(self) -> None:
        if not (self.exposure_us > 0 and self.period_us >= self.exposure_us):
            raise ConfigError(
                f"timing exposure_us={self.exposure_us}, period_us={self.period_us}: "
                "need 0 < exposure_us <= period_us"
            )
        if self.settling_delay_us < 0 or self.window_us <= 0:
            raise ConfigError(
                f"settling_delay_us={self.settling_delay_us} must be >= 0 and "
                f"window_us={self.window_us} > 0"
            )
        if self.settling_delay_us + self.window_us > self.exposure_us + 1e-9:
            raise ConfigError(
                f"settling_delay_us + window_us = {self.settling_delay_us + self.window_us} "
                f"exceeds exposure_us={self.exposure_us}"
            )
        if self.scene_change_s < 0:
            raise ConfigError(f"scene_change_s={self.scene_change_s} must be >= 0")

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise sources are on.

    Attributes
    ----------
    shot: Poisson noise of the photocurrent (electrons counted over the window).
    dark: Poisson noise of the dark current.
    read: Gaussian amplifier/read noise (the gain step's output noise, averaged over
        the window: rms / sqrt(max(1, 2 f_3dB window))).
    flicker_rel_rms: relative rms of 1/f source flicker over the acquisition (0 = off).
    read_noise_v_rms: override of the per-reading read noise, volts rms (None = from the
        gain table).
    """

    shot: bool = False
    dark: bool = False
    read: bool = False
    flicker_rel_rms: float = 0.0
    read_noise_v_rms: float | None = None
    preset: str = "custom"

    def __post_init__(self) -> None:
        if not (0 <= self.flicker_rel_rms < 0.5):
            raise ConfigError(f"flicker_rel_rms={self.flicker_rel_rms} outside [0, 0.5)")
        if self.read_noise_v_rms is not None and not (self.read_noise_v_rms >= 0):
            raise ConfigError(f"read_noise_v_rms={self.read_noise_v_rms} must be >= 0")

    @property
    def any(self) -> bool:
        """Whether any noise source is on."""
        return self.shot or self.dark or self.read or self.flicker_rel_rms > 0

    @classmethod
    def from_preset(cls, name: str) -> NoiseConfig:
        """One of ``none``, ``shot`` (shot only), ``read`` (read only), ``full``
        (shot + dark + read + 0.1 % flicker)."""
        try:
            return NOISE_PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"noise={name!r} is not a preset; allowed: {', '.join(NOISE_PRESETS)}"
            ) from None

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return asdict(self)


NOISE_PRESETS: dict[str, NoiseConfig] = {
    "none": NoiseConfig(preset="none"),
    "shot": NoiseConfig(shot=True, preset="shot"),
    "read": NoiseConfig(read=True, preset="read"),
    "full": NoiseConfig(shot=True, dark=True, read=True, flicker_rel_rms=1e-3, preset="full"),
}


@dataclass(frozen=True)
class DigitizerConfig:
    """The ADC that samples the amplifier output.

    Attributes
    ----------
    range_v: full scale is [-range_v, +range_v] volts.  Default +-0.5 V (an NI X Series
        range): at the default 50 dB gain typical scenes peak at 30-80 % of it.
    bits: resolution; the step (LSB) is 2 range_v / 2**bits.
    offset_v: digitizer input offset, volts.
    sample_rate_hz: sampling rate used inside the averaging window.
    """

    range_v: float = 0.5
    bits: int = 16
    offset_v: float = 0.0
    sample_rate_hz: float = 1.0e6

    def __post_init__(self) -> None:
        if not (0 < self.range_v <= 100):
            raise ConfigError(f"digitizer range_v={self.range_v} outside (0, 100] V")
        if not (1 <= int(self.bits) <= 32) or int(self.bits) != self.bits:
            raise ConfigError(f"digitizer bits={self.bits} must be an integer in [1, 32]")
        if not (abs(self.offset_v) <= self.range_v):
            raise ConfigError(f"digitizer offset_v={self.offset_v} outside +-range_v")
        if not (self.sample_rate_hz > 0):
            raise ConfigError(f"sample_rate_hz={self.sample_rate_hz} must be > 0")

    @property
    def lsb_v(self) -> float:
        """Quantization step, volts."""
        return 2.0 * self.range_v / 2 ** int(self.bits)

    def to_dict(self) -> dict:
        """Settings snapshot."""
        return {**asdict(self), "lsb_v": self.lsb_v}


def settling_beta(tau_s: float | np.ndarray, settling_delay_s: float, window_s: float
                  ) -> float | np.ndarray:
    """Carry-over fraction of a first-order amplifier averaged over the reading window.

    ``beta = tau / w (exp(-t0 / tau) - exp(-(t0 + w) / tau))``: the part of the difference
    between the amplifier output at the pattern start and the new value that is still in a
    reading averaged over ``[t0, t0 + w]``.  Increases from 0 (tau -> 0) to 1 (tau -> inf).

    Parameters
    ----------
    tau_s:
        Time constant ``1 / (2 pi f_3dB)``, seconds.
    settling_delay_s, window_s:
        Start ``t0`` and length ``w`` of the averaging window after the pattern start, s.
    """
    tau = np.asarray(tau_s, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        out = tau / window_s * (np.exp(-settling_delay_s / tau)
                                - np.exp(-(settling_delay_s + window_s) / tau))
    out = np.where(tau > 0, out, 0.0)
    return float(out) if np.ndim(out) == 0 else out


def settling_coefficients(amp: AmplifierConfig, timing: TimingConfig) -> tuple[float, float]:
    """(a, beta) of the first-order settling model.

    ``a = exp(-T/tau)`` is what is left of a step after one pattern period ``T``;
    ``beta = tau/w (exp(-t0/tau) - exp(-(t0+w)/tau))`` is the fraction of the difference
    between the amplifier state at the pattern's start and the new value that remains,
    averaged over the window [t0, t0 + w] (:func:`settling_beta`).  Both 0 for infinite
    bandwidth.
    """
    tau = amp.time_constant_s
    t_period = timing.period_us * 1e-6
    t0 = timing.settling_delay_us * 1e-6
    w = timing.window_us * 1e-6
    if tau <= 0 or not np.isfinite(tau):
        return 0.0, 0.0
    a = math.exp(-t_period / tau)
    return a, float(settling_beta(tau, t0, w))


def settling_terms(a: float, m: int, eps: float = 1e-15) -> int:
    """Number of past readings that still matter: the smallest K with a**K < eps (<= m)."""
    if a <= 0.0:
        return 1
    if a >= 1.0:
        return m
    return min(m, max(1, math.ceil(math.log(eps) / math.log(a))))


def settle(volts: np.ndarray, a: float, beta: float, eps: float = 1e-15) -> np.ndarray:
    """Apply the amplifier's settling between consecutive readings (last axis).

    The amplifier output relaxes towards each new value with time constant tau; it
    starts the sequence settled at the first value.  Reading k becomes
    ``V_k + beta (o_k - V_k)`` with ``o_k = a o_{k-1} + (1 - a) V_{k-1}``, ``o_0 = V_0``.
    The recursion is unrolled to K terms, where a**K < eps (exact for a = 0 and for
    beta = 0: a no-op).
    """
    v = np.asarray(volts, dtype=np.float64)
    if beta == 0.0:
        return v.copy()
    m = v.shape[-1]
    k_terms = settling_terms(a, m, eps)
    pad = np.concatenate([np.repeat(v[..., :1], k_terms, axis=-1), v], axis=-1)
    state = (a**k_terms) * pad[..., 0:m]
    for j in range(1, k_terms + 1):
        state = state + (1.0 - a) * a ** (j - 1) * pad[..., k_terms - j : k_terms - j + m]
    return v + beta * (state - v)


def flicker_factors(n: int, rel_rms: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative 1/f source flicker ``1 + f_k`` for n consecutive readings."""
    if rel_rms == 0 or n < 2:
        return np.ones(n)
    return _shape_flicker(rng.standard_normal(n)[None, :], rel_rms)[0]


def flicker_factors_per_row(shape: tuple[int, int], rel_rms: float,
                            rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """:func:`flicker_factors` of ``shape[1]`` readings for each of ``shape[0]`` rows,
    row k from ``rngs[k]``: the same numbers as calling it row by row, in one batched
    FFT."""
    n_rows, n = shape
    if len(rngs) != n_rows:
        raise ValueError(f"{len(rngs)} generators for {n_rows} rows")
    if rel_rms == 0 or n < 2:
        return np.ones(shape)
    return _shape_flicker(np.stack([g.standard_normal(n) for g in rngs]), rel_rms)


def _shape_flicker(white: np.ndarray, rel_rms: float) -> np.ndarray:
    """White noise rows (R, n) -> ``1 + rel_rms * pink / std(pink)`` per row."""
    n = white.shape[-1]
    spec = np.fft.rfft(white, axis=-1)
    freqs = np.fft.rfftfreq(n)
    shaping = np.zeros_like(freqs)
    shaping[1:] = 1.0 / np.sqrt(freqs[1:])
    pink = np.fft.irfft(spec * shaping, n, axis=-1)
    std = pink.std(axis=-1, keepdims=True)
    return 1.0 + rel_rms * np.where(std > 0, pink / np.where(std > 0, std, 1.0), pink)


def shot_noise_current(
    current_a: np.ndarray, window_s: float,
    rng: np.random.Generator | Sequence[np.random.Generator],
) -> tuple[np.ndarray, int]:
    """Poisson shot noise: electrons counted over ``window_s``, back to amperes.

    ``rng`` is one generator, or one per row of ``current_a`` (see :func:`per_row`).

    Negative currents (unphysical, e.g. from an over-subtracted model) never reach the
    sampler: they are clipped to 0 and counted, with a :class:`NegativeIntensityWarning`.
    Returns (noisy current, number of clipped values).
    """
    i = np.asarray(current_a, dtype=np.float64)
    negative = i < 0
    n_neg = int(negative.sum())
    if n_neg:
        warnings.warn(
            f"{n_neg} negative photocurrent value(s) clipped to 0 A before shot noise",
            NegativeIntensityWarning,
            stacklevel=2,
        )
        i = np.where(negative, 0.0, i)
    scale = window_s / ELEMENTARY_CHARGE_C
    electrons = per_row(rng, lambda g, lam: g.poisson(lam), i * scale)
    return electrons / scale, n_neg


def per_row(rng: np.random.Generator | Sequence[np.random.Generator],
            draw: Callable[[np.random.Generator, np.ndarray], np.ndarray],
            values: np.ndarray) -> np.ndarray:
    """``draw(rng, values)``, or with one generator per row of ``values`` (a sequence of
    ``len(values)`` generators) ``draw(rng[k], values[k])`` stacked: each row then gets
    exactly the numbers its generator would give it alone."""
    if isinstance(rng, np.random.Generator):
        return draw(rng, values)
    if len(rng) != len(values):
        raise ValueError(f"{len(rng)} generators for {len(values)} rows")
    return np.stack([draw(g, row) for g, row in zip(rng, values, strict=True)])


def digitize(volts: np.ndarray, cfg: DigitizerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Offset, clip to [-range, range - LSB] and quantize to ``bits``.

    Returns (volts as read back, boolean mask of clipped readings).  Within the range
    the error is at most LSB/2.
    """
    v = np.asarray(volts, dtype=np.float64) + cfg.offset_v
    lsb = cfg.lsb_v
    half = 2 ** (int(cfg.bits) - 1)
    codes = np.rint(v / lsb)
    clipped = (codes < -half) | (codes > half - 1)
    codes = np.clip(codes, -half, half - 1)
    return codes * lsb, clipped
