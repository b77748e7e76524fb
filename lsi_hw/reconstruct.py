"""Quick image previews from single-pixel readings (not the LSI decoder).

The readings of any bench are affine in the masked irradiance:
``y_k = c (m_k . x) + d`` (gain, leakage and offsets make ``c`` and ``d``).  Centring the
readings and the masks over the pattern axis removes ``d``; the minimum-norm ridge
solution ``x = Mc^T (Mc Mc^T + lam I)^-1 yc`` then gives an image up to the scale ``c``.
For large ``m`` the plain adjoint ``Mc^T yc`` is used instead (labelled as such).
"""

from __future__ import annotations

import numpy as np

from lsi_hw.baselines import normalise_images
from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet

__all__ = ["preview_reconstruction"]

#: Above this many patterns the preview falls back to the adjoint (the Gram matrix is m^2 n).
MAX_LS_PATTERNS = 1024


def preview_reconstruction(
    patterns: PatternSet, values: np.ndarray, ridge: float = 1e-6
) -> tuple[np.ndarray, str]:
    """Images (B, H, W) recovered from readings (B, m), normalised to [0, 1] per image.

    Returns the images and the method used ("least squares" or "adjoint").
    Split (differential) sets are recombined first.
    """
    vals = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if vals.shape[-1] != patterns.m:
        raise ConfigError(f"{vals.shape[-1]} readings per scene for {patterns.m} patterns")
    masks = patterns.masks.reshape(patterns.m, -1).astype(np.float64)
    if patterns.is_split:
        vals = patterns.differential(vals)
        masks = masks[0::2] - masks[1::2]
    centred = masks - masks.mean(axis=0, keepdims=True)
    y = vals - vals.mean(axis=1, keepdims=True)
    if centred.shape[0] <= MAX_LS_PATTERNS:
        gram = centred @ centred.T
        lam = ridge * max(np.trace(gram) / len(gram), 1e-300)
        coef = np.linalg.solve(gram + lam * np.eye(len(gram)), y.T)
        images, method = (centred.T @ coef).T, "least squares"
    else:
        images, method = y @ centred, "adjoint"
    return normalise_images(images.reshape(len(vals), *patterns.shape)), method
