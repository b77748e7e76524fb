"""Reusable work arrays for the simulator's hot paths.

A fresh multi-megabyte array is mapped from the kernel page by page on first touch; at
the sizes of one acquisition (16 MB of irradiance for 64 scenes of 256 x 256) those page
faults cost as much as the arithmetic.  :func:`scratch` hands out one uninitialised,
64-byte-aligned array per (thread, name) and reuses it while the size fits, so repeated
acquisitions touch memory that is already mapped.

Only temporaries that never leave the function that asked for them may live here: the
next call with the same name overwrites the contents.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["MAX_SCRATCH_BYTES", "aligned_empty", "scratch"]

#: arrays larger than this are not kept between calls (allocated fresh each time)
MAX_SCRATCH_BYTES = 256 * 2**20

_local = threading.local()


def aligned_empty(shape: tuple[int, ...], dtype: Any, zero: bool = False) -> np.ndarray:
    """Uninitialised (or zeroed) C-contiguous array whose data start on a 64-byte boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    buf = np.zeros(nbytes + 64, np.uint8) if zero else np.empty(nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64
    return buf[start:start + nbytes].view(dt).reshape(shape)


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous work array of ``shape`` and ``dtype``, 64-byte aligned.

    The same buffer comes back for the same ``name`` in the same thread while it is large
    enough (contents undefined).  Above :data:`MAX_SCRATCH_BYTES` nothing is kept.
    """
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    buffers: dict[str, np.ndarray] = getattr(_local, "buffers", None) or {}
    _local.buffers = buffers
    buf = buffers.get(name)
    if buf is None or buf.size < nbytes:
        buf = aligned_empty((nbytes,), np.uint8)
        if nbytes <= MAX_SCRATCH_BYTES:
            buffers[name] = buf
        else:
            buffers.pop(name, None)
    return buf[:nbytes].view(dt).reshape(shape)
