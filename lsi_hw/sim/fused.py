"""Fused numba kernel for the image side of the chain (monitor + relay optics).

For 8-bit scenes on an aligned relay (identity geometry, scene shape == mask shape, the
usual case) the whole image side -- gamma lookup, RGB weighting, separable Gaussian
blur with zero padding, vignetting and radiometric scale -- is one pass per image,
parallel over the batch, in float32 (relative error ~1e-7 against the float64 numpy
reference, which :func:`lsi_hw.sim.forward.irradiance` keeps for ``method="numpy"``).
"""

from __future__ import annotations

import numba
import numpy as np

from lsi_hw.sim.optics import (
    RelayOpticsConfig,
    gaussian_kernel1d,
    irradiance_w_m2_per_cd_m2,
    vignetting_map,
)
from lsi_hw.sim.scene import MonitorConfig

__all__ = ["fused_irradiance_u8"]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _irradiance_kernel(scenes, curves, taps, gain_map, black, out):  # pragma: no cover - jit
    # Streams each image row by row: a ring of the last 2r + 1 horizontally blurred rows
    # feeds the vertical pass, so the working set stays in L1.  Inner loops index views
    # from 0 (no negative-index wraparound check), which lets LLVM vectorise them.  The
    # sums run in the same order as a two-pass blur with zero padding.
    n_b, h, w, n_c = scenes.shape
    r = (taps.shape[0] - 1) // 2
    n_t = 2 * r + 1
    for b in numba.prange(n_b):
        lum = np.empty(w, dtype=np.float32)
        ring = np.empty((n_t, w), dtype=np.float32)
        acc_row = np.empty(w, dtype=np.float32)
        for ii in range(h + r):
            if ii < h:
                for j in range(w):
                    acc = black
                    for c in range(n_c):
                        acc += curves[c, scenes[b, ii, j, c]]
                    lum[j] = acc
                dst = ring[ii % n_t]
                dst[:] = 0.0
                for t in range(-r, r + 1):
                    k = taps[t + r]
                    lo = max(0, -t)
                    hi = min(w, w - t)
                    d = dst[lo:hi]
                    src = lum[lo + t : hi + t]
                    for j in range(hi - lo):
                        d[j] += k * src[j]
            o = ii - r
            if o >= 0:
                acc_row[:] = 0.0
                for t in range(-r, r + 1):
                    src_i = o + t
                    if src_i < 0 or src_i >= h:
                        continue
                    k = taps[t + r]
                    row = ring[src_i % n_t]
                    for j in range(w):
                        acc_row[j] += k * row[j]
                gain_row = gain_map[o]
                out_row = out[b, o]
                for j in range(w):
                    out_row[j] = acc_row[j] * gain_row[j]


def fused_irradiance_u8(
    scenes: np.ndarray, monitor: MonitorConfig, optics: RelayOpticsConfig,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Irradiance on the DMD (W/m^2, float32 (B, H, W)) of uint8 scenes, aligned relay.

    Same model as ``relay_to_mask_grid(monitor_luminance(scenes))`` when the geometry
    is the identity and the mask grid has the scene's shape.  ``out``: a C-contiguous
    float32 (B, H, W) array to write into (e.g. a reused work buffer).
    """
    arr = np.ascontiguousarray(scenes)
    if arr.ndim == 3:
        arr = arr[..., None]
        weights = np.ones(1)
    else:
        weights = np.asarray(monitor.rgb_weights, dtype=np.float64)
    curve = monitor.peak_luminance_cd_m2 * (np.arange(256) / 255.0) ** monitor.gamma
    curves = (weights[:, None] * curve[None, :]).astype(np.float32)
    taps = gaussian_kernel1d(optics.blur_sigma_px).astype(np.float32)
    gain_map = (irradiance_w_m2_per_cd_m2(optics) * vignetting_map(arr.shape[1:3], optics))
    if out is None:
        out = np.empty(arr.shape[:3], dtype=np.float32)
    elif out.shape != arr.shape[:3] or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 of shape {arr.shape[:3]}; got "
                         f"{out.dtype} {out.shape}")
    _irradiance_kernel(arr, curves, taps, gain_map.astype(np.float32),
                       np.float32(monitor.black_luminance_cd_m2), out)
    return out
