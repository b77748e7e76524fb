"""Differentiable torch twin of the numpy forward model (:mod:`lsi_hw.sim.forward`).

:class:`TorchForwardModel` is built from the same :class:`~lsi_hw.sim.forward.SimConfig`
as the numpy simulator, and every geometric or physical constant it uses comes from the
same numpy helpers (:func:`~lsi_hw.sim.optics.sampling_coordinates`,
:func:`~lsi_hw.sim.optics.gaussian_kernel1d`, :func:`~lsi_hw.sim.optics.vignetting_map`,
:func:`~lsi_hw.sim.optics.irradiance_w_m2_per_cd_m2`,
:func:`~lsi_hw.sim.forward.resolve_superpixel`,
:func:`~lsi_hw.sim.detector.settling_coefficients`,
:func:`~lsi_hw.sim.detector.settling_terms`, :func:`~lsi_hw.sim.forward.read_noise_v`),
so the two paths see identical geometry and constants by construction.

What is equal to numpy, and how
-------------------------------
*Sample-equal* (same numbers up to floating-point rounding; float64 agrees to ~1e-12
relative, float32 to ~1e-6 of the largest reading):

- :meth:`TorchForwardModel.irradiance` == :func:`lsi_hw.sim.forward.irradiance`
  (monitor gamma, RGB weights, black level, bilinear resampling with zero light outside
  the scene, separable Gaussian blur with zero padding, cos^4 vignetting, radiometry);
- :meth:`TorchForwardModel.expected` == :func:`lsi_hw.sim.forward.expected_volts`
  (optical power with on-reflectance, pixel area and off-state leakage, photocurrent +
  dark current, gain, the same truncated settling recursion, amplifier offset);
- ``forward(..., noise=False)`` == :func:`lsi_hw.sim.forward.measure_volts` with every
  noise source off (saturation clip, digitizer offset, range clip and quantization), up to
  a rare one-LSB flip where a reading lies within rounding error of a code boundary.

*Statistically equal* (same distribution moments, different random numbers; torch draws
from a :class:`torch.Generator`, numpy from a :class:`numpy.random.Generator`):

- shot and dark noise: numpy draws Poisson electrons; here the Gaussian approximation
  ``N(lambda, lambda)`` in electrons, reparameterised (``i + sqrt(i q / t) eps``) so
  gradients flow.  Mean and variance equal the Poisson ones exactly; the shape differs
  only at small counts (a few tens of electrons per reading or fewer, far below anything
  the bench produces), and the sample is not an integer number of electrons.
  As in numpy, negative currents are clipped to 0 A before the noise (mean and variance);
  numpy warns about them, this model does not (no host sync inside a training loop);
- read noise: Gaussian with the same rms, :func:`~lsi_hw.sim.forward.read_noise_v`;
- flicker: the same algorithm as :func:`~lsi_hw.sim.detector.flicker_factors` (white
  noise shaped by ``1/sqrt(f)`` with ``torch.fft``, zero mean, normalised to exactly
  ``flicker_rel_rms`` over the sequence of ``B * m`` readings in time order).

Gradients
---------
Everything is differentiable with respect to both the scenes and the masks.  The
monitor gamma uses a safe power (value exactly ``x ** gamma`` for ``x > 0`` and 0 for
``x <= 0``, gradient 0 there) and the shot-noise standard deviation a safe square root,
so gradients stay finite at black pixels and zero currents.  Quantization (and
:func:`binarize_ste`) use a straight-through estimator: rounding in the forward pass,
identity gradient.  The amplifier saturation and the digitizer range clip are hard
clamps (zero gradient for saturated readings, as in the physical device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsi_hw.errors import ConfigError, PatternError
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import (
    ELEMENTARY_CHARGE_C,
    settling_coefficients,
    settling_terms,
)
from lsi_hw.sim.forward import SimConfig, read_noise_v, resolve_superpixel
from lsi_hw.sim.optics import (
    gaussian_kernel1d,
    irradiance_w_m2_per_cd_m2,
    is_identity_geometry,
    sampling_coordinates,
    vignetting_map,
)

__all__ = [
    "TorchForwardModel",
    "bilinear_plan",
    "binarize_ste",
    "flicker_factors_torch",
    "round_ste",
    "safe_pow",
    "settle_torch",
    "shot_noise_torch",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)


# -- straight-through estimators -----------------------------------------------------------


class _RoundSTE(torch.autograd.Function):
    """``torch.round`` in the forward pass, identity gradient in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


class _BinarizeSTE(torch.autograd.Function):
    """``round(clamp(w, 0, 1))`` in the forward pass, identity gradient backward."""

    @staticmethod
    def forward(ctx: Any, w: Tensor) -> Tensor:
        return torch.round(torch.clamp(w, 0.0, 1.0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer (ties to even, like ``np.rint``) with identity gradient.

    Parameters
    ----------
    x : Tensor
        Any floating tensor.

    Returns
    -------
    Tensor
        ``torch.round(x)`` exactly; ``d out / d x`` is taken as 1 (straight-through).
    """
    return _RoundSTE.apply(x)


def binarize_ste(weights: Tensor) -> Tensor:
    """Binary masks from real-valued mask weights with a straight-through gradient.

    The paper's straight-through estimator: the forward pass returns
    ``round(clamp(w, 0, 1))`` (exactly 0 or 1; 0.5 rounds to 0, ties to even), the
    backward pass passes the gradient through unchanged (identity, also outside [0, 1]).

    Parameters
    ----------
    weights : Tensor
        Real-valued mask weights, any shape (typically (m, H, W)), dimensionless.

    Returns
    -------
    Tensor
        Same shape and dtype, values in {0, 1}.
    """
    return _BinarizeSTE.apply(weights)


# -- elementwise helpers --------------------------------------------------------------------


def safe_pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` for ``x > 0`` and 0 for ``x <= 0``, with finite gradients.

    The value equals ``x ** exponent`` exactly where ``x > 0`` (no added epsilon), so it
    matches numpy to rounding; at ``x <= 0`` value and gradient are 0 (no NaN, no inf
    from ``0 ** (exponent - 1)``).

    Parameters
    ----------
    x : Tensor
        Base (e.g. monitor drive fractions in [0, 1]).
    exponent : float
        Exponent > 0 (e.g. the monitor gamma).

    Returns
    -------
    Tensor
        Same shape and dtype as ``x``.
    """
    positive = x > 0
    base = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, base**exponent, torch.zeros_like(x))


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` for ``x > 0``, 0 elsewhere, gradient 0 where ``x <= 0`` (never NaN/inf)."""
    positive = x > 0
    base = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, torch.sqrt(base), torch.zeros_like(x))


RowGenerators = Sequence[torch.Generator]
"""One generator per batch row: row ``i``'s noise comes from ``generators[i]`` only."""

NoiseSource = torch.Generator | RowGenerators | None
"""What the noise functions accept: nothing (global RNG), one generator, or one per row."""


def _randn(shape: tuple[int, ...], like: Tensor, generator: NoiseSource) -> Tensor:
    """Standard normal samples of ``like``'s dtype on ``like``'s device.

    With a generator, samples are drawn on the generator's device and moved, so a CPU
    generator gives the same numbers whatever device the model runs on.  With a sequence
    of generators (one per row of ``shape[0]``), row ``i`` is drawn from generator ``i``:
    a row's noise then depends only on its own generator, not on its batch mates, which
    is what splitting a batch over processes (DDP) needs to reproduce a one-process run.
    """
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    if isinstance(generator, torch.Generator):
        eps = torch.randn(shape, dtype=like.dtype, device=generator.device,
                          generator=generator)
        return eps.to(like.device)
    rows = list(generator)
    if not shape or len(rows) != shape[0]:
        raise ConfigError(
            f"{len(rows)} row generators for noise of shape {shape}: need one per row"
        )
    eps = torch.stack([torch.randn(shape[1:], dtype=like.dtype, device=g.device, generator=g)
                       .to(like.device) for g in rows])
    return eps


# -- detector pieces ------------------------------------------------------------------------


def settle_torch(volts: Tensor, a: float, beta: float, eps: float = 1e-15) -> Tensor:
    """First-order amplifier settling along the last axis (torch twin of numpy ``settle``).

    Reading k becomes ``V_k + beta (o_k - V_k)`` with ``o_k = a o_{k-1} + (1 - a) V_{k-1}``,
    ``o_0 = V_0``, unrolled to ``K = settling_terms(a, m, eps)`` terms exactly like
    :func:`lsi_hw.sim.detector.settle` (same formula, same truncation).

    Parameters
    ----------
    volts : Tensor
        (..., m) settled-amplifier target values in time order, volts.
    a : float
        Fraction of a step left after one pattern period, ``exp(-T / tau)``.
    beta : float
        Fraction of the step still present, averaged over the reading window.
    eps : float
        Truncation threshold of the unrolled recursion.

    Returns
    -------
    Tensor
        (..., m) volts as read; ``volts`` itself (not a copy) when ``beta == 0``.
    """
    if beta == 0.0:
        return volts
    m = volts.shape[-1]
    k_terms = settling_terms(a, m, eps)
    first = volts[..., :1].expand(*volts.shape[:-1], k_terms)
    pad = torch.cat([first, volts], dim=-1)
    state = (a**k_terms) * pad[..., 0:m]
    for j in range(1, k_terms + 1):
        state = state + (1.0 - a) * a ** (j - 1) * pad[..., k_terms - j : k_terms - j + m]
    return volts + beta * (state - volts)


def shot_noise_torch(
    current_a: Tensor, window_s: float, generator: NoiseSource = None
) -> Tensor:
    """Shot noise in the Gaussian approximation of Poisson statistics, reparameterised.

    ``lambda = max(i, 0) t / q`` electrons are counted over the window; the noisy current
    is ``(lambda + sqrt(lambda) eps) q / t = max(i, 0) + sqrt(max(i, 0) q / t) eps`` with
    ``eps ~ N(0, 1)``: mean and variance (in electrons) equal the Poisson ones.  Negative
    currents are clipped to 0 A first, like :func:`lsi_hw.sim.detector.shot_noise_current`
    (but silently); the gradient is finite everywhere (0 where the current is <= 0).

    Parameters
    ----------
    current_a : Tensor
        Mean current, amperes, any shape.
    window_s : float
        Integration time, seconds.
    generator : torch.Generator, sequence of generators (one per row) or None
        Random source (its device is used for drawing).

    Returns
    -------
    Tensor
        Noisy current, amperes, same shape, dtype and device.
    """
    i = torch.clamp_min(current_a, 0.0)
    std = _safe_sqrt(i * (ELEMENTARY_CHARGE_C / window_s))
    return i + std * _randn(tuple(i.shape), i, generator)


def flicker_factors_torch(
    n: int,
    rel_rms: float,
    *,
    like: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Multiplicative 1/f source flicker ``1 + f_k`` for n consecutive readings.

    Same algorithm as :func:`lsi_hw.sim.detector.flicker_factors` (white noise, spectrum
    shaped by ``1/sqrt(f)`` with the DC term removed, normalised to a population std of
    exactly ``rel_rms``); statistically, not sample-, equal to numpy.

    Parameters
    ----------
    n : int
        Number of readings (time order).
    rel_rms : float
        Relative rms of the flicker (dimensionless).
    like : Tensor
        Gives dtype and device of the result.
    generator : torch.Generator or None
        Random source.

    Returns
    -------
    Tensor
        (n,) factors, dimensionless (no gradient: they do not depend on any input).
    """
    if rel_rms == 0 or n < 2:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    white = _randn((n,), like, generator)
    spec = torch.fft.rfft(white)
    freqs = torch.fft.rfftfreq(n, dtype=like.dtype, device=like.device)
    shaping = torch.zeros_like(freqs)
    shaping[1:] = 1.0 / torch.sqrt(freqs[1:])
    pink = torch.fft.irfft(spec * shaping, n)
    std = pink.std(unbiased=False)
    pink = pink / torch.where(std > 0, std, torch.ones_like(std))  # no host sync
    return 1.0 + rel_rms * pink


# -- optics pieces --------------------------------------------------------------------------


def bilinear_plan(
    scene_shape: tuple[int, int], mask_shape: tuple[int, int], config: SimConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices and weights of the numpy bilinear resampling, float64.

    Reproduces :func:`lsi_hw.sim.optics.bilinear_sample` at
    :func:`lsi_hw.sim.optics.sampling_coordinates` as a fixed gather: for each of the four
    neighbours (in numpy's order (0,0), (0,1), (1,0), (1,1)) the flat scene index (clipped
    into the image) and the weight (0 for neighbours outside the scene: zero light).

    Parameters
    ----------
    scene_shape : (int, int)
        (Hs, Ws) scene pixels.
    mask_shape : (int, int)
        (H, W) mask pixels.
    config : SimConfig
        Uses ``config.optics``.

    Returns
    -------
    (ndarray, ndarray)
        int64 indices (4, H*W) into the flattened scene, float64 weights (4, H*W).
    """
    hs, ws = scene_shape
    r, c = sampling_coordinates(scene_shape, mask_shape, config.optics)
    r0 = np.floor(r).astype(np.int64)
    c0 = np.floor(c).astype(np.int64)
    fr = r - r0
    fc = c - c0
    idx, wts = [], []
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = r0 + dr
            cc = c0 + dc
            valid = (rr >= 0) & (rr < hs) & (cc >= 0) & (cc < ws)
            wts.append(np.where(valid, wr * wc, 0.0).ravel())
            idx.append((np.clip(rr, 0, hs - 1) * ws + np.clip(cc, 0, ws - 1)).ravel())
    return np.stack(idx), np.stack(wts)


def _shape2(shape: Any, what: str) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={shape!r} must be two positive integers (H, W)") from None
    if h < 1 or w < 1:
        raise ConfigError(f"{what}={shape!r} must be two positive integers (H, W)")
    return h, w


# -- the model ------------------------------------------------------------------------------


class TorchForwardModel(torch.nn.Module):
    """The simulator's physical chain, differentiable, in torch.

    Parameters
    ----------
    config : SimConfig
        Every stage of the bench (the same object the numpy simulator takes).
    mask_shape : (int, int)
        (H, W) of the masks, mask pixels (one DMD superpixel each).
    scene_shape : (int, int) or None
        (Hs, Ws) of the scenes whose resampling plan is precomputed; None = ``mask_shape``.
        Scenes of another shape still work (their plan is computed per call).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``: precision of buffers and computation.

    Attributes
    ----------
    config, mask_shape, scene_shape : as given.
    superpixel : int
        Mirrors per mask pixel along a column (resolved like the numpy model).
    pixel_area_m2 : float
        Array area of one mask pixel, m^2.
    settling_a, settling_beta : float
        Settling coefficients ``(a, beta)`` (dimensionless).
    read_noise_v : float
        Per-reading read noise, volts rms.

    Notes
    -----
    Buffers are non-persistent (derived from ``config``; they stay out of
    ``state_dict``).  The computation runs in the buffers' dtype (``.double()`` /
    ``.float()`` switch it) on the inputs' device; buffers on another device are moved
    per call, so ``.to(device)`` the model once to avoid the copies.
    """

    radiometric: Tensor
    blur_taps: Tensor
    gather_index: Tensor
    gather_weight: Tensor

    def __init__(
        self,
        config: SimConfig,
        mask_shape: tuple[int, int],
        scene_shape: tuple[int, int] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(config, SimConfig):
            raise ConfigError(f"config must be a SimConfig; got {type(config).__name__}")
        if dtype not in _FLOAT_DTYPES:
            raise ConfigError(f"dtype={dtype} not supported; use torch.float32 or torch.float64")
        self.config = config
        self.mask_shape = _shape2(mask_shape, "mask_shape")
        self.scene_shape = (
            self.mask_shape if scene_shape is None else _shape2(scene_shape, "scene_shape")
        )
        mon, opt = config.monitor, config.optics
        self._gamma = float(mon.gamma)
        self._rgb_weights = tuple(float(w) for w in mon.rgb_weights)
        self._peak = float(mon.peak_luminance_cd_m2)
        self._black = float(mon.black_luminance_cd_m2)
        self._identity_geometry = is_identity_geometry(opt)
        # radiometric scale (x cos^4 vignetting), W/m^2 per cd/m^2, on the mask grid
        scale = irradiance_w_m2_per_cd_m2(opt)
        if opt.vignetting_half_field_deg > 0:
            radiometric = scale * vignetting_map(self.mask_shape, opt)
        else:
            radiometric = np.full(self.mask_shape, scale)
        self.register_buffer(
            "radiometric", torch.as_tensor(radiometric, dtype=dtype), persistent=False
        )
        self._blur = opt.blur_sigma_px > 0
        self.register_buffer(
            "blur_taps",
            torch.as_tensor(gaussian_kernel1d(opt.blur_sigma_px), dtype=dtype),
            persistent=False,
        )
        index, weight = bilinear_plan(self.scene_shape, self.mask_shape, config)
        self.register_buffer("gather_index", torch.as_tensor(index), persistent=False)
        self.register_buffer(
            "gather_weight", torch.as_tensor(weight, dtype=dtype), persistent=False
        )
        # DMD, photodiode, amplifier, timing, noise, digitizer constants (python floats)
        self.superpixel = resolve_superpixel(self.mask_shape, config.dmd)
        self.pixel_area_m2 = config.dmd.mask_pixel_area_m2(self.superpixel)
        self._rho_on = config.dmd.on_reflectance
        self._leak = config.dmd.off_state_leakage
        self._responsivity = config.photodiode.responsivity_a_per_w
        self._dark_a = config.photodiode.dark_current_a
        self._v_per_a = config.amplifier.v_per_a
        self._amp_offset_v = config.amplifier.offset_v
        self.settling_a, self.settling_beta = settling_coefficients(
            config.amplifier, config.timing
        )
        self.window_s = config.timing.window_us * 1e-6
        self.read_noise_v = float(read_noise_v(config))
        self.saturation_v = config.amplifier.saturation_v
        self.lsb_v = config.digitizer.lsb_v
        self._half_codes = 2 ** (int(config.digitizer.bits) - 1)
        self._dig_offset_v = config.digitizer.offset_v

    # -- bookkeeping ------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the computation (that of the buffers)."""
        return self.radiometric.dtype

    def extra_repr(self) -> str:
        return (
            f"mask_shape={self.mask_shape}, scene_shape={self.scene_shape}, "
            f"dtype={self.dtype}, superpixel={self.superpixel}"
        )

    def _buf(self, t: Tensor, device: torch.device) -> Tensor:
        return t.to(device)

    def _as_scenes(self, scenes: Any) -> Tensor:
        """Drive fractions as a (B, Hs, Ws[, 3]) tensor of the model's dtype."""
        if isinstance(scenes, np.ndarray):
            scenes = torch.from_numpy(np.array(scenes))
        if not isinstance(scenes, Tensor):
            raise ConfigError(f"scenes must be a torch.Tensor; got {type(scenes).__name__}")
        if scenes.ndim not in (3, 4) or (scenes.ndim == 4 and scenes.shape[-1] != 3):
            raise ConfigError(
                f"scenes of shape {tuple(scenes.shape)}: expected (B, H, W) grey or "
                "(B, H, W, 3) RGB drive values"
            )
        if scenes.dtype == torch.bool:
            return scenes.to(self.dtype)
        if not scenes.is_floating_point():
            return scenes.to(self.dtype) / 255.0
        return scenes.to(self.dtype)

    def _as_masks(self, masks: Any, device: torch.device) -> Tensor:
        """Masks as an (m, H, W) tensor of the model's dtype on ``device``."""
        if isinstance(masks, PatternSet):
            masks = torch.from_numpy(np.array(masks.masks))
        elif isinstance(masks, np.ndarray):
            masks = torch.from_numpy(np.array(masks))
        if not isinstance(masks, Tensor):
            raise PatternError(f"masks must be a torch.Tensor; got {type(masks).__name__}")
        if masks.ndim != 3 or tuple(masks.shape[1:]) != self.mask_shape:
            raise PatternError(
                f"masks of shape {tuple(masks.shape)}: expected (m, {self.mask_shape[0]}, "
                f"{self.mask_shape[1]}) to match the model's mask_shape"
            )
        if masks.shape[0] < 1:
            raise PatternError("masks: need at least one mask (m >= 1)")
        return masks.to(device=device, dtype=self.dtype)

    # -- stages -----------------------------------------------------------------------------

    def luminance(self, scenes: Tensor) -> Tensor:
        """Monitor luminance of the scenes, cd/m^2, (B, Hs, Ws).

        Parameters
        ----------
        scenes : Tensor
            (B, Hs, Ws) grey or (B, Hs, Ws, 3) RGB drive fractions in [0, 1] (float), or
            integer drive values 0..255 (divided by 255, like numpy).  Negative drives
            give 0 (numpy would give NaN).

        Returns
        -------
        Tensor
            ``L_peak * sum_c w_c frac_c ** gamma + L_black``, model dtype.
        """
        x = self._as_scenes(scenes)
        frac_g = safe_pow(x, self._gamma)
        if frac_g.ndim == 4:
            w = torch.tensor(self._rgb_weights, dtype=frac_g.dtype, device=frac_g.device)
            frac_g = frac_g @ w
        return self._peak * frac_g + self._black

    def _resample(self, lum: Tensor) -> Tensor:
        """Bilinear resampling to the mask grid (skipped for identity geometry + shapes)."""
        shape = (int(lum.shape[1]), int(lum.shape[2]))
        if self._identity_geometry and shape == self.mask_shape:
            return lum
        if shape == self.scene_shape:
            index = self._buf(self.gather_index, lum.device)
            weight = self._buf(self.gather_weight, lum.device)
        else:
            idx_np, w_np = bilinear_plan(shape, self.mask_shape, self.config)
            index = torch.as_tensor(idx_np, device=lum.device)
            weight = torch.as_tensor(w_np, dtype=lum.dtype, device=lum.device)
        b = lum.shape[0]
        g = lum.reshape(b, -1).index_select(1, index.reshape(-1)).reshape(b, 4, -1)
        out = g[:, 0] * weight[0] + g[:, 1] * weight[1] + g[:, 2] * weight[2]
        out = out + g[:, 3] * weight[3]
        return out.reshape(b, *self.mask_shape)

    def _blur_zero_padded(self, img: Tensor) -> Tensor:
        """Separable Gaussian correlation along rows then columns, zero padding.

        Shift-and-add (not conv2d) so that no TF32 or other reduced-precision convolution
        path is taken on GPUs.
        """
        taps = self._buf(self.blur_taps, img.device)
        k = int(taps.shape[0])
        r = k // 2
        h, w = img.shape[-2:]
        pad = torch.nn.functional.pad(img, (0, 0, r, r))
        out = taps[0] * pad[:, 0:h, :]
        for j in range(1, k):
            out = out + taps[j] * pad[:, j : j + h, :]
        pad = torch.nn.functional.pad(out, (r, r, 0, 0))
        out = taps[0] * pad[:, :, 0:w]
        for j in range(1, k):
            out = out + taps[j] * pad[:, :, j : j + w]
        return out

    def irradiance(self, scenes: Tensor) -> Tensor:
        """Irradiance on the DMD sampled on the mask grid, W/m^2, (B, H, W).

        Monitor luminance, bilinear resampling (affine misalignment, zero light outside
        the scene; skipped under the identity geometry with equal shapes), Gaussian blur
        with zero padding, cos^4 vignetting and radiometric scale: the torch twin of
        :func:`lsi_hw.sim.forward.irradiance`.

        Parameters
        ----------
        scenes : Tensor
            (B, Hs, Ws) grey or (B, Hs, Ws, 3) RGB drive fractions in [0, 1] or uint8.

        Returns
        -------
        Tensor
            (B, H, W) irradiance, W/m^2, model dtype, scenes' device.
        """
        img = self._resample(self.luminance(scenes))
        if self._blur:
            img = self._blur_zero_padded(img)
        return img * self._buf(self.radiometric, img.device)

    def optical_power(self, irr: Tensor, masks: Tensor) -> Tensor:
        """Optical power on the photodiode per (scene, mask), watts, (B, m).

        ``P_k = rho_on A [leak * sum(E) + (1 - leak) * (m_k . E)]``.

        Parameters
        ----------
        irr : Tensor
            (B, H, W) irradiance on the DMD, W/m^2.
        masks : Tensor
            (m, H, W) masks, values in [0, 1] (dimensionless; may carry gradients).

        Returns
        -------
        Tensor
            (B, m) power, W.
        """
        mk = self._as_masks(masks, irr.device)
        flat = irr.reshape(irr.shape[0], -1)
        projected = flat @ mk.reshape(mk.shape[0], -1).T
        total = flat.sum(dim=1, keepdim=True)
        leak = self._leak
        return self._rho_on * self.pixel_area_m2 * (leak * total + (1.0 - leak) * projected)

    def _volts(self, current_a: Tensor) -> Tensor:
        """Gain, settling and amplifier offset: amperes (B, m) -> volts (B, m)."""
        volts = settle_torch(self._v_per_a * current_a, self.settling_a, self.settling_beta)
        return volts + self._amp_offset_v

    def expected(self, scenes: Tensor, masks: Tensor) -> Tensor:
        """Noiseless analog detector output, volts, (B, m): torch twin of ``expected_volts``.

        Photocurrent ``R P`` + dark current, transimpedance gain, the truncated settling
        recursion along the masks (time order), amplifier offset; before saturation and
        digitization.

        Parameters
        ----------
        scenes : Tensor
            (B, Hs, Ws) grey or (B, Hs, Ws, 3) RGB drive fractions in [0, 1] or uint8.
        masks : Tensor
            (m, H, W) masks in [0, 1], in display order.

        Returns
        -------
        Tensor
            (B, m) volts, model dtype, scenes' device; differentiable w.r.t. both inputs.
        """
        power = self.optical_power(self.irradiance(scenes), masks)
        current = self._responsivity * power + self._dark_a
        return self._volts(current)

    def digitize(self, volts: Tensor, quantize: bool = True) -> Tensor:
        """Digitizer offset, range clip ``[-range, range - LSB]`` and quantization.

        Parameters
        ----------
        volts : Tensor
            Amplifier output, volts.
        quantize : bool
            Round to the LSB (straight-through gradient); False keeps the clipped
            continuous value.

        Returns
        -------
        Tensor
            Volts as read back (multiples of the LSB when quantized).
        """
        lsb = self.lsb_v
        codes = (volts + self._dig_offset_v) / lsb
        if quantize:
            codes = round_ste(codes)
        codes = torch.clamp(codes, -float(self._half_codes), float(self._half_codes - 1))
        return codes * lsb

    def forward(
        self,
        scenes: Tensor,
        masks: Tensor,
        *,
        noise: bool | None = None,
        generator: NoiseSource = None,
        quantize: bool = True,
    ) -> Tensor:
        """Detector readings, volts, (B, m): torch twin of ``measure_volts``.

        ``P -> [flicker] -> R P -> [shot] -> + dark [dark shot] -> gain -> settling ->
        + offset -> [read noise] -> saturation clip -> digitizer``; noise terms follow
        ``config.noise`` and are drawn in that order.

        Parameters
        ----------
        scenes : Tensor
            (B, Hs, Ws) grey or (B, Hs, Ws, 3) RGB drive fractions in [0, 1] or uint8.
        masks : Tensor
            (m, H, W) masks in [0, 1], in display order.
        noise : bool or None
            None: add noise when ``config.noise`` enables any source; True: add the
            sources ``config.noise`` enables; False: noiseless.
        generator : torch.Generator, sequence of torch.Generator, or None
            Random source (seed it for reproducible noise); draws happen on its device.
            A sequence gives one generator per scene: each scene's noise (and flicker
            sequence) then depends only on its own generator, so a batch split across
            processes draws exactly the noise of the whole batch in one process.
        quantize : bool
            Quantize to the digitizer LSB (straight-through gradient).

        Returns
        -------
        Tensor
            (B, m) volts, model dtype, scenes' device.
        """
        power = self.optical_power(self.irradiance(scenes), masks)
        return self.detect(power, noise=noise, generator=generator, quantize=quantize)

    def detect(
        self,
        power: Tensor,
        *,
        noise: bool | None = None,
        generator: NoiseSource = None,
        quantize: bool = True,
    ) -> Tensor:
        """Detector readings, volts, (B, m) of the optical power on the photodiode.

        The second half of :meth:`forward` (``forward(s, M) == detect(optical_power(
        irradiance(s), M))``, same noise draws for the same generator): everything after
        the masks, so readings of a fixed mask set can be drawn again with fresh noise from
        stored powers (e.g. a measurement bank) without rendering the scenes again.

        Parameters
        ----------
        power : Tensor
            (B, m) optical power on the detector, W (:meth:`optical_power`).
        noise, generator, quantize
            As in :meth:`forward`.

        Returns
        -------
        Tensor
            (B, m) volts, model dtype, power's device.
        """
        nz = self.config.noise
        use_noise = nz.any if noise is None else bool(noise)
        if not use_noise:
            volts = self._volts(self._responsivity * power + self._dark_a)
        else:
            if nz.flicker_rel_rms > 0:
                if generator is None or isinstance(generator, torch.Generator):
                    factors = flicker_factors_torch(
                        power.numel(), nz.flicker_rel_rms, like=power, generator=generator
                    ).reshape(power.shape)
                else:  # one flicker sequence per row (scene), each from its own generator
                    rows = list(generator)
                    if len(rows) != power.shape[0]:
                        raise ConfigError(f"{len(rows)} row generators for {power.shape[0]} "
                                          "scenes: need one per scene")
                    factors = torch.stack([
                        flicker_factors_torch(power.shape[1], nz.flicker_rel_rms, like=power,
                                              generator=g) for g in rows])
                power = power * factors
            photo = self._responsivity * power
            if nz.shot:
                photo = shot_noise_torch(photo, self.window_s, generator)
            dark = torch.full_like(photo, self._dark_a)
            if nz.dark:
                dark = shot_noise_torch(dark, self.window_s, generator)
            volts = self._volts(photo + dark)
            if nz.read:
                volts = volts + self.read_noise_v * _randn(tuple(volts.shape), volts, generator)
        sat = self.saturation_v
        volts = torch.clamp(volts, -sat, sat)
        return self.digitize(volts, quantize=quantize)

