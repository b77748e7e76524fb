"""Array conversion shared by the metrics: tensors, arrays and nested sequences to numpy.

Every metric accepts numpy arrays, torch tensors or nested sequences and converts them with
:func:`to_numpy` to ``numpy.float64`` (integer label maps are kept integral) before
computing; image metrics use :func:`to_images` for the ``(n, C, H, W)`` layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["ArrayLike", "to_images", "to_numpy"]

ArrayLike = Any  # numpy array, torch tensor or nested sequence


def to_numpy(x: ArrayLike, dtype: Any = np.float64) -> np.ndarray:
    """Convert a tensor / array / sequence to a numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def to_images(x: ArrayLike) -> np.ndarray:
    """Return images as a float64 ``(n, C, H, W)`` array; ``(C, H, W)``/``(H, W)`` promoted."""
    arr = to_numpy(x)
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (n, C, H, W), got {arr.shape}")
    return arr
