"""The fast Walsh-Hadamard transform (natural order), on the numba kernels.

:func:`fwht` is the public transform (also re-exported by :mod:`lsi_hw.sim.kernels`);
:func:`fwht_inplace` is the in-place row transform the projection's ``fwht`` path uses.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from lsi_hw.errors import ConfigError
from lsi_hw.sim.numba_kernels import fwht_one_parallel, fwht_rows

__all__ = ["fwht", "fwht_inplace"]


def fwht(x: npt.ArrayLike, axis: int = -1) -> np.ndarray:
    """Unnormalised natural-order fast Walsh-Hadamard transform along ``axis``.

    Returns ``H @ x`` along the axis, with ``H[k, p] = (-1) ** popcount(k & p)`` the
    Sylvester (natural-order) Hadamard matrix of size ``n``: entries +-1, symmetric,
    ``H @ H = n I``, so ``fwht(fwht(x)) == n * x`` and the inverse is ``fwht(y) / n``.
    ``O(n log n)`` per vector; batches are transformed in parallel (numba threads).

    Parameters
    ----------
    x : array_like
        Input of any shape; float32 and float64 are kept, other dtypes are converted to
        float64.  Not modified.
    axis : int
        Axis to transform; its length ``n`` must be a power of two (1, 2, 4, ...).

    Returns
    -------
    numpy.ndarray
        New array of ``x``'s shape, float32 or float64: ``H @ x`` along ``axis``.

    Raises
    ------
    ConfigError
        If the axis length is not a power of two, ``x`` is 0-d, or ``axis`` is out of range.
    """
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ConfigError("fwht needs an array with at least one axis; got a scalar")
    if not -arr.ndim <= axis < arr.ndim:
        raise ConfigError(f"fwht axis must be in {-arr.ndim}..{arr.ndim - 1}; got {axis}")
    n = arr.shape[axis]
    if n < 1 or n & (n - 1):
        raise ConfigError(
            f"fwht length along axis {axis} must be a power of two (1, 2, 4, ...); got {n} "
            f"(shape {arr.shape}); zero-pad to {1 << max(0, (n - 1).bit_length())}"
        )
    if np.iscomplexobj(arr):
        raise ConfigError("fwht takes real input; transform real and imaginary parts apart")
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    work = np.array(np.moveaxis(arr, axis, -1), dtype=dtype, order="C", copy=True)
    fwht_inplace(work.reshape(-1, n))
    return np.moveaxis(work, -1, axis)


def fwht_inplace(rows: np.ndarray) -> None:
    """In-place WHT of the rows of a C-contiguous 2-D float array (length a power of two).

    Many rows: one row per thread; fewer rows than threads and long rows (``n >= 2**15``):
    each row is split across the threads.
    """
    n_rows, n = rows.shape
    if n_rows == 0 or n == 1:
        return
    threads = numba.get_num_threads()
    if 1 < threads and n_rows < threads and n >= 1 << 15:
        chunks = 1 << int(math.log2(threads))
        for r in range(n_rows):
            fwht_one_parallel(rows[r], chunks)
    else:
        fwht_rows(rows)
