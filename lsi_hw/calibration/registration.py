"""Affine placement of the displayed scene on the DMD (:func:`register_dmd_to_scene`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from lsi_hw.calibration.common import (
    CalibrationResult,
    check_count,
    finite_or_none,
    measure_checked,
    progress_bar,
)
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.optics import (
    affine_grid_coordinates,
    bilinear_sample,
    gaussian_taps,
    separable_blur,
)


@dataclass(frozen=True)
class RegistrationResult(CalibrationResult):
    """Affine placement of the displayed scene on the DMD, in mask pixels.

    Same convention as :class:`lsi_hw.sim.RelayOpticsConfig`: a scene point ``q``
    (relative to the centre of the mask grid, mask pixels, scene nominally filling the grid)
    lands on the DMD at ``p = scale * R(rotation) q + shift``; rotation counter-clockwise
    on screen with rows pointing down, shift (rows, columns).

    Attributes
    ----------
    rotation_deg, rotation_u_deg:
        Rotation and its uncertainty, degrees.
    scale, scale_u:
        Magnification error (1 = exact fill).
    shift_px, shift_u_px:
        (rows, columns) shift and uncertainties, mask pixels.
    blur_sigma_px, blur_sigma_u_px:
        Gaussian blur standard deviation on the DMD, mask pixels.
    vignetting_coeff:
        Relative irradiance change at the grid corner (``-0.04`` = 4 % darker), fitted as
        ``1 + k r^2``; None when not fitted.
    contrast:
        Fitted reconstruction amplitude of the target's bright parts (arbitrary units:
        volts x pixels of the differential readings).
    contrast_snr:
        ``contrast`` over its uncertainty.
    residual_rms_rel:
        rms of the image residual over ``contrast``.
    size, n_patterns:
        Mask side (pixels) and number of patterns measured.
    """

    rotation_deg: float
    rotation_u_deg: float
    scale: float
    scale_u: float
    shift_px: tuple[float, float]
    shift_u_px: tuple[float, float]
    blur_sigma_px: float
    blur_sigma_u_px: float
    vignetting_coeff: float | None
    contrast: float
    contrast_snr: float
    residual_rms_rel: float
    size: int
    n_patterns: int

    def summary(self) -> str:
        """Shift, rotation, scale and blur on one line."""
        return (f"shift ({self.shift_px[0]:+.3f}, {self.shift_px[1]:+.3f}) px, rotation "
                f"{self.rotation_deg:+.3f} deg, scale {self.scale:.4f}, blur "
                f"{self.blur_sigma_px:.2f} px, contrast SNR {self.contrast_snr:.3g}")

    def relay_settings(self) -> dict[str, Any]:
        """The estimate as keyword arguments of ``RelayOpticsConfig`` (rotation_deg, scale,
        shift_px, blur_sigma_px)."""
        return {"rotation_deg": self.rotation_deg, "scale": self.scale,
                "shift_px": tuple(self.shift_px), "blur_sigma_px": self.blur_sigma_px}


def default_registration_target(size: int) -> np.ndarray:
    """Binary 0/255 target of ``size x size`` pixels for :func:`register_dmd_to_scene`.

    A cross, a square, a disc, a bar and a small dot at different distances and angles
    from the centre, on black, all inside 70 % of the field: no rotational or mirror
    symmetry, so rotation, scale and shift are all determined, and the binary drive
    levels make the target independent of the monitor gamma.

    Parameters
    ----------
    size:
        Side in pixels (>= 16).
    """
    if size < 16:
        raise ConfigError(f"registration target size {size} must be >= 16 pixels")
    c = (size - 1) / 2.0
    rr, cc = np.meshgrid((np.arange(size) - c) / c, (np.arange(size) - c) / c, indexing="ij")
    t = 2.0 / size  # one pixel in normalised units
    img = np.zeros((size, size), dtype=bool)
    arm, thick = 0.2, max(0.07, 1.6 * t)
    img |= (np.abs(rr + 0.45) <= thick) & (np.abs(cc + 0.5) <= arm)  # cross, top-left
    img |= (np.abs(cc + 0.5) <= thick) & (np.abs(rr + 0.45) <= arm)
    img |= (np.abs(rr + 0.5) <= 0.12) & (np.abs(cc - 0.45) <= 0.12)  # square, top-right
    img |= (rr - 0.45) ** 2 + (cc - 0.5) ** 2 <= 0.16**2  # disc, bottom-right
    img |= (np.abs(rr - 0.55) <= thick) & (cc >= -0.65) & (cc <= -0.15)  # bar, bottom-left
    img |= (rr - 0.05) ** 2 + (cc - 0.12) ** 2 <= max(0.07, 1.5 * t) ** 2  # dot, off centre
    return np.where(img, 255, 0).astype(np.uint8)


#: Largest blur the fit allows, mask pixels; the blur kernel has the fixed radius 4x that,
#: so the model is smooth in sigma.
_BLUR_MAX_PX = 4.0
_BLUR_RADIUS = math.ceil(4 * _BLUR_MAX_PX)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable sampled-Gaussian blur (fixed radius, zero outside); no-op for sigma ~ 0."""
    if sigma < 1e-3:
        return img
    return separable_blur(img, gaussian_taps(sigma, _BLUR_RADIUS))


def _phase_correlation_shift(image: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(rows, cols) shift that best maps ``target`` onto ``image`` (sub-pixel peak)."""
    h, w = image.shape
    a = np.zeros((2 * h, 2 * w))
    b = np.zeros((2 * h, 2 * w))
    a[:h, :w] = image - image.mean()
    b[:h, :w] = target - target.mean()
    cross = np.fft.fft2(a) * np.conj(np.fft.fft2(b))
    mag = np.abs(cross)
    corr = np.real(np.fft.ifft2(cross / (mag + 1e-3 * mag.max() + 1e-300)))
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = []
    for axis, n in enumerate(corr.shape):
        i = peak[axis]
        idx = list(peak)
        idx[axis] = (i - 1) % n
        left = corr[tuple(idx)]
        idx[axis] = (i + 1) % n
        right = corr[tuple(idx)]
        centre = corr[peak]
        denom = left - 2 * centre + right
        frac = 0.5 * (left - right) / denom if denom < 0 else 0.0
        s = i + float(np.clip(frac, -0.5, 0.5))
        out.append(s - n if s > n / 2 else s)
    return out[0], out[1]


def _hadamard_image(patterns: PatternSet, values: np.ndarray) -> np.ndarray:
    """Irradiance image (up to scale) from readings of a complete split Hadamard set."""
    from lsi_hw.sim.kernels import fwht  # numba: imported only when used

    n_side = patterns.shape[0]
    n = n_side * n_side
    diff = np.asarray(patterns.differential(values), dtype=np.float64).mean(axis=0)
    rows = np.asarray(patterns.hadamard_rows)[0::2]
    y = np.zeros(n)
    y[rows] = diff
    return np.asarray(fwht(y), dtype=np.float64).reshape(n_side, n_side) / n


def register_dmd_to_scene(
    bench: Bench,
    size: int = 32,
    *,
    target: np.ndarray | None = None,
    repeats: int = 1,
    discard: int = 0,
    fit_blur: bool = True,
    blur_sigma_px: float = 0.7,
    fit_vignetting: bool = True,
    shift_tolerance_px: float = 0.2,
    rotation_tolerance_deg: float = 0.3,
    scale_tolerance: float = 0.01,
    max_residual_rel: float = 0.15,
    min_contrast_snr: float = 20.0,
    search_rotation_deg: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0),
    search_scale: Sequence[float] = (0.96, 1.0, 1.04),
    progress: bool = False,
) -> RegistrationResult:
    """Estimate the rotation, scale and shift of the displayed scene on the DMD.

    A known binary target (default :func:`default_registration_target`) is shown and
    measured with the complete split Hadamard basis of ``size x size`` masks
    (``2 size^2`` patterns); the differential readings are inverted with the fast
    Walsh-Hadamard transform into the irradiance image on the mask grid.  The target,
    warped by the affine model ``p = s R q + shift`` with bilinear resampling and a
    Gaussian blur, is fitted to that image by least squares
    (:func:`scipy.optimize.least_squares`).  The shift starts from phase correlation and
    rotation/scale from the best point of a coarse grid.  The gain, the scene footprint
    level (monitor black), a constant and, optionally, a radial vignetting term
    ``1 + k r^2`` enter linearly and are solved exactly at every step (variable
    projection).  Uncertainties come from the Jacobian and the residual variance.

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask side, a power of two (32 or 64 are typical).
    target:
        (size, size) uint8 drive values to display (default: the built-in binary target).
    repeats:
        Times the target is measured (readings averaged).
    discard:
        Extra copies shown before each mask and dropped (set 1 at high gain, where the
        amplifier's settling couples consecutive readings).
    fit_blur, blur_sigma_px:
        Fit the blur sigma (starting at ``blur_sigma_px``) or keep it fixed, mask pixels.
    fit_vignetting:
        Fit a radial ``1 + k r^2`` irradiance fall-off.
    shift_tolerance_px, rotation_tolerance_deg, scale_tolerance:
        Largest acceptable standard uncertainties.
    max_residual_rel:
        Largest acceptable rms residual relative to the fitted contrast.
    min_contrast_snr:
        Smallest acceptable significance of the target in the image.
    search_rotation_deg, search_scale:
        Coarse grid of starting rotations (deg) and scales.
    progress:
        Show a progress bar.

    Raises
    ------
    CalibrationError
        A blank target, a target not seen (contrast below ``min_contrast_snr``), a fit that
        fails, a residual above ``max_residual_rel`` or an uncertainty above its tolerance.
    """
    n_side = check_count("size", size, 16)
    if n_side & (n_side - 1):
        raise ConfigError(f"size={size} must be a power of two (Hadamard basis), e.g. 32 or 64")
    repeats = check_count("repeats", repeats, 1)
    discard = check_count("discard", discard, 0)
    tgt = default_registration_target(n_side) if target is None else np.asarray(target)
    if tgt.shape != (n_side, n_side):
        raise ConfigError(f"target shape {tgt.shape} must be ({n_side}, {n_side})")
    if tgt.dtype != np.uint8:
        raise ConfigError(f"target must be uint8 drive values; got {tgt.dtype}")
    if int(tgt.max()) == int(tgt.min()):
        raise CalibrationError(
            "register_dmd_to_scene: the target is blank (one drive level everywhere); "
            "registration needs structure: use default_registration_target(size)"
        )
    shape = (n_side, n_side)
    basis = PatternSet.hadamard(n_side, split=True)
    patterns = basis
    if discard:
        patterns = PatternSet(np.repeat(basis.masks, discard + 1, axis=0),
                              name="calibration-registration")
    with progress_bar(progress, 3, "registration") as step:
        meas = measure_checked(bench, np.broadcast_to(tgt, (repeats, *shape)).copy(), patterns)
        step("measured")
        values = meas.values[:, discard :: discard + 1] if discard else meas.values
        image = _hadamard_image(basis, values)
        step("reconstructed")
        fit = _fit_registration(image, tgt.astype(np.float64) / 255.0, fit_blur, blur_sigma_px,
                                fit_vignetting, search_rotation_deg, search_scale)
        step("fitted")
    result = RegistrationResult(size=n_side, n_patterns=patterns.m, **fit)
    if result.contrast_snr < min_contrast_snr or result.contrast <= 0:
        raise CalibrationError(
            f"register_dmd_to_scene: the target is not seen (contrast SNR "
            f"{result.contrast_snr:.3g} < {min_contrast_snr:g}); check that the scene reaches "
            "the DMD (alignment, monitor on) and the gain"
        )
    if result.residual_rms_rel > max_residual_rel:
        raise CalibrationError(
            f"register_dmd_to_scene: the affine model leaves a residual of "
            f"{100 * result.residual_rms_rel:.3g} % of the contrast (limit "
            f"{100 * max_residual_rel:g} %): misalignment beyond the search range, a distorted "
            "relay or settling (try discard=1)"
        )
    bad = [
        (name, u, tol)
        for name, u, tol in (
            ("shift rows (px)", result.shift_u_px[0], shift_tolerance_px),
            ("shift cols (px)", result.shift_u_px[1], shift_tolerance_px),
            ("rotation (deg)", result.rotation_u_deg, rotation_tolerance_deg),
            ("scale", result.scale_u, scale_tolerance),
        )
        if not u <= tol
    ]
    if bad:
        text = ", ".join(f"{n} +-{u:.3g} > {t:g}" for n, u, t in bad)
        raise CalibrationError(f"register_dmd_to_scene: uncertainties above tolerance: {text}")
    return result


def _fit_registration(
    image: np.ndarray,
    target: np.ndarray,
    fit_blur: bool,
    blur0: float,
    fit_vignetting: bool,
    rotations: Sequence[float],
    scales: Sequence[float],
) -> dict[str, Any]:
    """Variable-projection least squares of the affine model; returns result fields."""
    solve = _projection_solver(image, target, fit_blur, blur0, fit_vignetting)

    def resid(p: np.ndarray) -> np.ndarray:
        return solve(p)[0]

    s0 = _phase_correlation_shift(image, target)
    best = _coarse_start(resid, s0, rotations, scales, fit_blur, blur0)
    fit = _refine_registration(resid, best, image.shape, fit_blur)
    res, coef, a = solve(fit.x)
    return _registration_fields(fit, res, coef, a, fit_blur, blur0, fit_vignetting)


_Solution = tuple[np.ndarray, np.ndarray, np.ndarray]


def _projection_solver(image: np.ndarray, target: np.ndarray, fit_blur: bool, blur0: float,
                       fit_vignetting: bool) -> Callable[[np.ndarray], _Solution]:
    """``solve(p) -> (residual, linear coefficients, design matrix)`` of the geometry ``p``
    (shift rows, shift cols, rotation, scale[, blur]): the warped target and its footprint
    (times ``1 + k r^2`` with vignetting) and a constant, fitted linearly to ``image``."""
    shape = image.shape
    h, w = shape
    rr, cc = np.meshgrid(np.arange(h) - (h - 1) / 2.0, np.arange(w) - (w - 1) / 2.0,
                         indexing="ij")
    r2 = ((rr**2 + cc**2) / ((h - 1) ** 2 / 4.0 + (w - 1) ** 2 / 4.0)).ravel()
    scenes = np.stack([target, np.ones_like(target)])  # the target and its footprint
    y = image.ravel()

    def design(p: np.ndarray) -> np.ndarray:
        shift, rot, scale = (p[0], p[1]), p[2], p[3]
        sigma = p[4] if fit_blur else blur0
        coords = np.stack(affine_grid_coordinates(shape, shift, rot, scale))
        model, foot = _blur(bilinear_sample(scenes, coords), sigma).reshape(2, -1)
        cols = [model, foot]
        if fit_vignetting:
            cols += [model * r2, foot * r2]
        cols.append(np.ones_like(model))
        return np.stack(cols, axis=1)

    def solve(p: np.ndarray) -> _Solution:
        a = design(p)
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        return y - a @ coef, coef, a

    return solve


def _coarse_start(resid: Callable[[np.ndarray], np.ndarray], s0: Sequence[float],
                  rotations: Sequence[float], scales: Sequence[float], fit_blur: bool,
                  blur0: float) -> np.ndarray:
    """The point of the rotation x scale grid (at shift ``s0``) with the least cost."""
    best, best_cost = None, np.inf
    for rot in rotations:
        for sc in scales:
            p = np.array([s0[0], s0[1], rot, sc, blur0] if fit_blur else
                         [s0[0], s0[1], rot, sc])
            cost = float(np.sum(resid(p) ** 2))
            if cost < best_cost:
                best, best_cost = p, cost
    assert best is not None
    return best


def _refine_registration(resid: Callable[[np.ndarray], np.ndarray], best: np.ndarray,
                         shape: tuple[int, ...], fit_blur: bool) -> Any:
    """Bounded least squares from ``best`` (its scipy result; CalibrationError on failure)."""
    h, w = shape
    lim = max(h, w) / 2.0
    lo = [-lim, -lim, -30.0, 0.5] + ([0.0] if fit_blur else [])
    hi = [lim, lim, 30.0, 2.0] + ([_BLUR_MAX_PX] if fit_blur else [])
    best = np.clip(best, np.asarray(lo) + 1e-6, np.asarray(hi) - 1e-6)
    x_scale = [0.1, 0.1, 0.1, 0.002] + ([0.1] if fit_blur else [])
    try:
        return optimize.least_squares(resid, best, bounds=(lo, hi), method="trf",
                                      x_scale=x_scale, diff_step=1e-4)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise CalibrationError(f"register_dmd_to_scene: fit failed ({exc})") from None


def _registration_fields(fit: Any, res: np.ndarray, coef: np.ndarray, a: np.ndarray,
                         fit_blur: bool, blur0: float, fit_vignetting: bool
                         ) -> dict[str, Any]:
    """The :class:`RegistrationResult` fields of a fit: the geometry with uncertainties
    (Jacobian and residual variance), the contrast and the residual."""
    n_lin = a.shape[1]
    dof = res.size - fit.x.size - n_lin
    s2 = float(np.sum(res**2)) / max(dof, 1)
    jac = np.asarray(fit.jac, dtype=np.float64)
    try:
        cov = np.linalg.inv(jac.T @ jac) * s2
        cov_lin = np.linalg.pinv(a.T @ a) * s2
    except np.linalg.LinAlgError:
        raise CalibrationError("register_dmd_to_scene: singular fit; the target does not "
                               "determine the geometry") from None
    u = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    contrast = float(coef[0])
    contrast_u = float(math.sqrt(max(cov_lin[0, 0], 0.0)))
    vig = None
    if fit_vignetting and contrast != 0:
        vig = float(coef[2] / coef[0])
    big = 1e9
    return {
        "shift_px": (float(fit.x[0]), float(fit.x[1])),
        "shift_u_px": (float(u[0]), float(u[1])),
        "rotation_deg": float(fit.x[2]),
        "rotation_u_deg": float(u[2]),
        "scale": float(fit.x[3]),
        "scale_u": float(u[3]),
        "blur_sigma_px": float(fit.x[4]) if fit_blur else float(blur0),
        "blur_sigma_u_px": float(u[4]) if fit_blur else 0.0,
        "vignetting_coeff": finite_or_none(vig),
        "contrast": contrast,
        "contrast_snr": float(min(abs(contrast) / contrast_u, big)) if contrast_u > 0 else big,
        "residual_rms_rel": float(math.sqrt(np.mean(res**2)) / abs(contrast))
        if contrast else big,
    }
