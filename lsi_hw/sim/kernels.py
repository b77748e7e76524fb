"""Numba kernels of the simulator: bit-packed binary projection and the fast Walsh-Hadamard
transform.

A single-pixel camera reads, for every binary mask ``k`` and scene ``b``, the sum of the
scene's pixels under the mask: ``y[b, k] = sum_p mask_k[p] * x[b, p]``.  With 256 x 256
masks (``n = 65536`` pixels) and thousands of masks, the dense product
``masks(float32, m x n) @ x.T`` is dominated by reading the mask matrix (1 GiB for
m = 4096).  This module keeps the masks bit-packed (32x less memory than float32, see
``notes/CONTRACTS.md``: pixel ``p`` is bit ``p % 8`` of byte ``p // 8``) and projects with
one of these paths:

``bitplane``
    The images are rearranged once into 8 bit-plane views ``x_b[j] = x[8 j + b]``; each mask
    (in parallel over masks) is then 8 masked sums over contiguous views, which LLVM
    vectorises (a compare + blend + add per 16 float32 lanes).  Images go 4 at a time
    through one decode of the mask bits, and for batches the pixels are split into passes
    whose image planes stay in L2.  Best for one to ~16 images.
``lut8`` / ``lut4`` ("four Russians")
    For every byte (nibble) position the sums of its 8 (4) pixels for all 256 (16) bit
    patterns are tabulated for every image of the batch (table ``(positions, 256|16, B)``,
    batch innermost so the adds vectorise over the batch); a mask is then one table-row add
    per byte (two per byte for nibbles), i.e. 8x (4x) fewer adds than dense.  Threads split
    the byte positions, each with a private, 64-byte aligned table block that stays in its
    L2 cache and a private partial result.  Best for batches of ~16 images and more.
``blas``
    The fallback: masks are unpacked to float in blocks of a few MiB and multiplied with
    BLAS (numpy's ``matmul``).
``fwht``
    Hadamard :class:`~lsi_hw.patterns.PatternSet` (``hadamard_rows`` not None): the whole
    transform ``H x`` costs ``O(n log n)`` per image and every mask follows from
    ``(1 + s H[k]) / 2 . x = (sum(x) + s (H x)[k]) / 2`` -- full, partial and split sets.

8-bit scenes (``uint8`` images) take an exact path: the bit-plane kernel carries the 8-bit
values in float32 lanes in chunks of :data:`_CHUNK` bytes, so every partial sum is an
integer below ``2**24`` and therefore exact, and sums the chunks in float64; the LUT kernels
use int32 tables and accumulators (int64 if ``255 n >= 2**31``); BLAS runs in float32 when
``255 n < 2**24`` (all partial sums are then integers below ``2**24``), else float64; the
FWHT runs in float64.  Results are exact integers returned as float64.

:func:`project` picks the path with a :class:`Projector` whose plan cache is keyed by
``(m, n, batch, dtype, hadamard, threads)``.  The choice comes from a cost model (constants
in :data:`COST_MODEL`, measured on the 2-core AMD EPYC (AVX-512) development machine with
``benchmarks/bench_projection.py --calibrate``), optionally refined by timing the
plausible candidates on the first call of a shape (``autotune``; off by default so that the
choice, and with it the float rounding of the result, is deterministic).

Threads: the numba kernels use ``numba.get_num_threads()`` threads (set it with
``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``), also for the LUT partitioning and the
plan cache key.  The ``blas`` path uses only numpy's BLAS threads: its unpacking is serial,
because a numba pool and a BLAS pool handing the cores back and forth cost ~10x on 2 cores
(OpenMP and OpenBLAS worker threads busy-wait after each call).  For the same reason a numba
kernel started within ~0.1 s after a large BLAS/torch call can run slower.  No torch here.

Environment variables: ``LSI_KERNELS_METHOD`` forces a method for every :func:`project`
call that does not name one (e.g. ``bitplane``), ``LSI_KERNELS_AUTOTUNE=1`` turns the
first-use timing on for the default projector.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from lsi_hw.errors import ConfigError

__all__ = [
    "COST_MODEL",
    "METHODS",
    "Plan",
    "Projector",
    "explain_plan",
    "fwht",
    "predict_seconds",
    "project",
]

#: Values of the ``method`` argument.  ``lut`` lets the planner choose between ``lut8`` and
#: ``lut4``; ``uint8`` asks for the exact integer kernels (bitplane or LUT, uint8 images only).
METHODS: tuple[str, ...] = ("auto", "bitplane", "lut", "lut8", "lut4", "blas", "fwht", "uint8")
_KERNELS: tuple[str, ...] = ("bitplane", "lut8", "lut4", "blas", "fwht")

# Fast-math flags for the reductions: reassociation lets LLVM vectorise ``s += ...`` loops.
# No nnan/ninf: non-finite pixels keep IEEE behaviour.
_FASTMATH = {"reassoc", "nsz", "contract"}

#: Bytes of one mask row summed in one float32 run by the bit-plane kernel: 255 * 32768 <
#: 2**24, so 8-bit data stays exact in float32 lanes.
_CHUNK = 32768
#: Bytes of image planes per bit-plane pass (kept in L2 while all masks stream by).
_BITPLANE_PASS_BYTES = 512 * 1024
#: Target size of one thread's LUT table block (bytes; 1 MiB L2 per core here): rows of up to
#: one cache line get the smaller size (measured best at B = 8..16 vs B = 64).
_LUT_TABLE_BYTES = 256 * 1024
_LUT_TABLE_BYTES_NARROW = 128 * 1024
#: Most images per LUT pass (larger batches are split into equal chunks).
_LUT_MAX_BATCH = 64
#: Target size of one unpacked float block of masks on the BLAS path (bytes).
_BLAS_BLOCK_BYTES = 8 * 1024 * 1024

#: Cost-model constants in seconds, measured on the 2-core AMD EPYC (Zen, AVX-512, 1 MiB L2
#: per core) dev machine with numba 0.68 / OpenBLAS 0.3.31, 256 x 256 images, by
#: ``python benchmarks/bench_projection.py --calibrate`` (several runs, rounded, the lower
#: plausible value kept: the machine is shared and noise only adds time).  Per thread ("/thr")
#: unless noted:
#: ``call``: fixed cost of a call; ``prep``: per image pixel (layout copies, all threads);
#: ``bitplane``: per mask-pixel-image (/thr); ``lut_row`` / ``lut4_row``: per table-row add of
#: the use phase, ``a + b * Bc`` for Bc images per row (/thr); ``lut_build`` /
#: ``lut4_build``: the same per table row built; ``unpack``: per mask pixel (serial);
#: ``gemm``: per mask-pixel-image multiply-add (BLAS, all threads) with the floor
#: ``gemm_mem`` per mask pixel (memory bound at small batch); ``fwht``: per butterfly (/thr).
COST_MODEL: dict[str, dict[str, float]] = {
    "float32": {
        "call": 1.5e-5, "prep": 2.0e-10, "bitplane": 3.3e-11,
        "lut_row_a": 2.4e-9, "lut_row_b": 3.5e-11, "lut_build_a": 1.0e-9, "lut_build_b": 5.0e-11,
        "lut4_row_a": 1.5e-9, "lut4_row_b": 3.5e-11, "lut4_build_a": 1.2e-9,
        "lut4_build_b": 2.2e-10,
        "unpack": 5.0e-10, "gemm": 1.0e-11, "gemm_mem": 6.5e-11, "fwht": 1.6e-10,
    },
    "float64": {
        "call": 1.5e-5, "prep": 2.2e-10, "bitplane": 5.5e-11,
        "lut_row_a": 2.3e-9, "lut_row_b": 8.0e-11, "lut_build_a": 4.0e-10, "lut_build_b": 2.0e-10,
        "lut4_row_a": 1.5e-9, "lut4_row_b": 6.0e-11, "lut4_build_a": 4.0e-10,
        "lut4_build_b": 6.0e-10,
        "unpack": 6.0e-10, "gemm": 2.3e-11, "gemm_mem": 1.7e-10, "fwht": 2.3e-10,
    },
    "uint8": {
        "call": 1.5e-5, "prep": 2.3e-10, "bitplane": 3.0e-11,
        "lut_row_a": 1.3e-9, "lut_row_b": 5.0e-11, "lut_build_a": 8.0e-10, "lut_build_b": 5.0e-11,
        "lut4_row_a": 1.0e-9, "lut4_row_b": 4.0e-11, "lut4_build_a": 1.2e-9,
        "lut4_build_b": 1.5e-10,
        "unpack": 5.0e-10, "gemm": 1.05e-11, "gemm_mem": 6.5e-11, "fwht": 2.3e-10,
    },
}


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _fwht_vec(v):  # pragma: no cover - jit
    """In-place natural-order WHT of a contiguous 1-D array (length a power of two).

    Radix-4 passes (two butterfly stages per sweep over the data) over contiguous quarter
    views, which LLVM vectorises; the first two stages are done per group of 4 elements.
    """
    n = v.shape[0]
    h = 1
    if n >= 4:
        for i in range(0, n, 4):
            a0 = v[i]
            a1 = v[i + 1]
            a2 = v[i + 2]
            a3 = v[i + 3]
            s01 = a0 + a1
            d01 = a0 - a1
            s23 = a2 + a3
            d23 = a2 - a3
            v[i] = s01 + s23
            v[i + 1] = d01 + d23
            v[i + 2] = s01 - s23
            v[i + 3] = d01 - d23
        h = 4
    while 4 * h <= n:
        step = 4 * h
        for i in range(0, n, step):
            a = v[i:i + h]
            b = v[i + h:i + 2 * h]
            c = v[i + 2 * h:i + 3 * h]
            d = v[i + 3 * h:i + step]
            for j in range(h):
                x0 = a[j]
                x1 = b[j]
                x2 = c[j]
                x3 = d[j]
                s01 = x0 + x1
                d01 = x0 - x1
                s23 = x2 + x3
                d23 = x2 - x3
                a[j] = s01 + s23
                b[j] = d01 + d23
                c[j] = s01 - s23
                d[j] = d01 - d23
        h = step
    if h < n:  # one radix-2 stage left
        a = v[:h]
        b = v[h:]
        for j in range(h):
            x = a[j]
            y = b[j]
            a[j] = x + y
            b[j] = x - y


@njit(parallel=True, cache=True)
def _fwht_rows(x):  # pragma: no cover - jit
    """In-place WHT of every row of a C-contiguous (B, n) array, parallel over rows."""
    for r in prange(x.shape[0]):
        _fwht_vec(x[r])


@njit(parallel=True, cache=True)
def _fwht_one_parallel(v, nchunks):  # pragma: no cover - jit
    """In-place WHT of one long vector on several threads.

    The first ``log2(n / nchunks)`` stages act inside ``nchunks`` independent chunks (one
    per thread); each of the last ``log2(nchunks)`` stages is split into ``nchunks``
    contiguous runs of butterflies.  ``nchunks`` is a power of two with ``n >= 4 nchunks``.
    """
    n = v.shape[0]
    c = n // nchunks
    for t in prange(nchunks):
        _fwht_vec(v[t * c:(t + 1) * c])
    run = n // (2 * nchunks)
    h = c
    while h < n:
        for t in prange(nchunks):
            j0 = t * run
            i0 = (j0 // h) * 2 * h + j0 % h
            a = v[i0:i0 + run]
            b = v[i0 + h:i0 + h + run]
            for j in range(run):
                x = a[j]
                y = b[j]
                a[j] = x + y
                b[j] = x - y
        h *= 2


@njit(parallel=True, cache=True)
def _hadamard_combine(coeff, rows, signs, out):  # pragma: no cover - jit
    """out[b, k] = (coeff[b, 0] + s_k coeff[b, r_k]) / 2 with coeff = H x (coeff[b, 0] is
    sum(x_b)); returns the number of (row, sign) pairs out of range (then out is partial)."""
    n_img, n = coeff.shape
    m = rows.shape[0]
    bad = 0
    for k in prange(m):
        r = rows[k]
        s = signs[k]
        if r < 0 or r >= n or (s != 1 and s != -1):
            bad += 1
            continue
        for b in range(n_img):
            out[b, k] = 0.5 * (coeff[b, 0] + s * coeff[b, r])
    return bad


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _bitplane_kernel(packed, planes, acc, zero, chunk):  # pragma: no cover - jit
    """acc[k, i] += sum of image i over the set bits of mask k (masked adds over bit planes).

    packed : (m, nb) uint8 masks; planes : (B, 8, nb) float, planes[i, b, j] = x_i[8 j + b];
    acc : (m, B) float64, zeroed by the caller; zero : a 0 of the planes' dtype; chunk : bytes
    of each mask row per pass (the B images' planes of one pass stay in L2; <= _CHUNK keeps
    8-bit data exact in float32 lanes).  Images go 4 at a time through one loop over the mask
    bits, which decodes each mask byte once for the 4 of them.
    """
    m, nb = packed.shape
    n_img = planes.shape[0]
    for j0 in range(0, nb, chunk):
        j1 = min(j0 + chunk, nb)
        for k in prange(m):
            rs = packed[k, j0:j1]
            i = 0
            while i + 4 <= n_img:
                t0 = 0.0
                t1 = 0.0
                t2 = 0.0
                t3 = 0.0
                for b in range(8):
                    bit = np.uint8(1 << b)
                    x0 = planes[i, b, j0:j1]
                    x1 = planes[i + 1, b, j0:j1]
                    x2 = planes[i + 2, b, j0:j1]
                    x3 = planes[i + 3, b, j0:j1]
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for j in range(j1 - j0):
                        on = (rs[j] & bit) != 0
                        s0 += x0[j] if on else zero
                        s1 += x1[j] if on else zero
                        s2 += x2[j] if on else zero
                        s3 += x3[j] if on else zero
                    t0 += s0
                    t1 += s1
                    t2 += s2
                    t3 += s3
                acc[k, i] += t0
                acc[k, i + 1] += t1
                acc[k, i + 2] += t2
                acc[k, i + 3] += t3
                i += 4
            while i < n_img:
                total = 0.0
                for b in range(8):
                    bit = np.uint8(1 << b)
                    xs = planes[i, b, j0:j1]
                    s = zero
                    for j in range(j1 - j0):
                        s += xs[j] if (rs[j] & bit) != 0 else zero
                    total += s
                acc[k, i] += total
                i += 1


@njit(parallel=True, cache=True)
def _lut_kernel(packed, xg, part, tables, gbits):  # pragma: no cover - jit
    """Byte- or nibble-LUT projection, partial sums per thread chunk of byte positions.

    packed : (m, nb) uint8; xg : (nb, 8, Bc), xg[j, b, c] = image c at pixel 8 j + b;
    part : (nch, m, Bc) zeroed, receives chunk ``t``'s sums; tables : (nch, block * 8 / gbits,
    2**gbits, Bc) scratch, one table block per chunk (64-byte aligned rows: split loads cost
    ~1.5x); gbits : 8 (a table per byte) or 4 (a table per nibble).  ``gbits`` is a run-time
    value on purpose: constant bit loops get unrolled into a kernel that takes 3x longer to
    compile for no speed.
    """
    m, nb = packed.shape
    bc = xg.shape[2]
    nch = part.shape[0]
    gpb = 8 // gbits  # tables per byte
    block = tables.shape[1] // gpb
    for t in prange(nch):
        j0 = (nb * t) // nch
        j1 = (nb * (t + 1)) // nch
        table = tables[t]
        acc = part[t]
        for p0 in range(j0, j1, block):
            pn = min(block, j1 - p0)
            # build: row v of a table = sum of the pixels of the set bits of v (by doubling)
            for q in range(pn * gpb):
                tq = table[q]
                t0 = tq[0]
                for c in range(bc):
                    t0[c] = 0
                jb = p0 + q // gpb
                off = gbits * (q % gpb)
                for b in range(gbits):
                    h = 1 << b
                    xb = xg[jb, off + b]
                    for v in range(h):
                        src = tq[v]
                        dst = tq[v + h]
                        for c in range(bc):
                            dst[c] = src[c] + xb[c]
            # use: one table row per byte (two per byte for nibbles) per mask
            for k in range(m):
                row = packed[k, p0:p0 + pn]
                a = acc[k]
                if gpb == 1:
                    for q in range(pn):
                        tr = table[q, row[q]]
                        for c in range(bc):
                            a[c] += tr[c]
                else:
                    for q in range(pn):
                        byte = row[q]
                        lo = table[2 * q, byte & 15]
                        hi = table[2 * q + 1, byte >> 4]
                        for c in range(bc):
                            a[c] += lo[c] + hi[c]


@njit(parallel=True, cache=True)
def _planes_layout(x, planes):  # pragma: no cover - jit
    """planes[i, b, j] = x[i, 8 j + b] (0 past the end of x); x (B, n), planes (B, 8, nb)."""
    n_img, n = x.shape
    nb = planes.shape[2]
    nblk = (nb + 255) // 256
    for t in prange(n_img * nblk):
        i = t // nblk
        j0 = (t % nblk) * 256
        j1 = min(nb, j0 + 256)
        xi = x[i]
        pi = planes[i]
        for j in range(j0, j1):
            for b in range(8):
                p = 8 * j + b
                pi[b, j] = xi[p] if p < n else 0


@njit(parallel=True, cache=True)
def _group_layout(x, xg):  # pragma: no cover - jit
    """xg[j, b, c] = x[c, 8 j + b] (0 past the end of x); x (Bc, n), xg (nb, 8, Bc)."""
    bc, n = x.shape
    nb = xg.shape[0]
    nblk = (nb + 63) // 64
    for t in prange(nblk):
        j0 = t * 64
        j1 = min(nb, j0 + 64)
        for c in range(bc):
            xc = x[c]
            for j in range(j0, j1):
                for b in range(8):
                    p = 8 * j + b
                    xg[j, b, c] = xc[p] if p < n else 0


@njit(cache=True)
def _unpack_kernel(packed, out):  # pragma: no cover - jit
    """out[k, 8 j + b] = bit b of packed[k, j] as 0/1 of out's dtype; out (mb, nb * 8).

    Serial on purpose: it alternates with BLAS calls, and two thread pools handing the
    cores back and forth (OpenMP / OpenBLAS spin-waits) cost ~10x on a 2-core machine.
    """
    mb, nb = packed.shape
    for k in range(mb):
        row = packed[k]
        o = out[k]
        for b in range(8):
            ob = o[b::8]
            for j in range(nb):
                ob[j] = (row[j] >> b) & 1


# --------------------------------------------------------------------------------------------
# fwht
# --------------------------------------------------------------------------------------------


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
    _fwht_flat(work.reshape(-1, n))
    return np.moveaxis(work, -1, axis)


def _fwht_flat(rows: np.ndarray) -> None:
    """In-place WHT of the rows of a C-contiguous 2-D float array."""
    n_rows, n = rows.shape
    if n_rows == 0 or n == 1:
        return
    threads = numba.get_num_threads()
    if 1 < threads and n_rows < threads and n >= 1 << 15:
        chunks = 1 << int(math.log2(threads))
        for r in range(n_rows):
            _fwht_one_parallel(rows[r], chunks)
    else:
        _fwht_rows(rows)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass
class _Masks:
    """Masks normalised for the kernels."""

    m: int
    nbytes: int
    shape: tuple[int, int] | None  # (H, W) when known (PatternSet)
    source: Any  # the PatternSet, or None
    packed_array: np.ndarray | None  # given packed array
    rows: np.ndarray | None = None  # Hadamard rows (int64) or None
    signs: np.ndarray | None = None  # Hadamard signs (+-1) or None
    _packed: np.ndarray | None = field(default=None, repr=False)

    @property
    def hadamard(self) -> bool:
        return self.rows is not None

    def packed(self) -> np.ndarray:
        """C-contiguous (m, nbytes) uint8."""
        if self._packed is None:
            if self.packed_array is not None:
                self._packed = np.ascontiguousarray(self.packed_array)
            else:
                # PatternSet.pack() computes once and keeps the result
                self._packed = np.ascontiguousarray(self.source.pack(), dtype=np.uint8)
        return self._packed


def _is_pattern_set(obj: Any) -> bool:
    return hasattr(obj, "pack") and hasattr(obj, "hadamard_rows")


def _as_masks(masks: Any) -> _Masks:
    """Validate ``masks`` (PatternSet-like or packed uint8 array)."""
    if _is_pattern_set(masks):
        # PatternSet.m / .shape when present (never touches the masks: the FWHT path needs
        # only the Hadamard rows and signs), else the shape of .masks (m, H, W)
        shape = getattr(masks, "shape", None)
        m_attr = getattr(masks, "m", None)
        if isinstance(shape, tuple) and len(shape) == 2 and m_attr is not None:
            m, h, w = int(m_attr), int(shape[0]), int(shape[1])
        else:
            full = tuple(np.shape(masks.masks))
            if len(full) != 3:
                raise ConfigError(f"PatternSet.masks must be (m, H, W); got shape {full}")
            m, h, w = (int(v) for v in full)
        rows = masks.hadamard_rows
        signs = getattr(masks, "hadamard_signs", None)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            signs = np.ones(m, np.int8) if signs is None else np.asarray(signs)
            if rows.shape != (m,) or signs.shape != (m,):
                raise ConfigError(
                    f"hadamard_rows/hadamard_signs must have shape ({m},); got "
                    f"{rows.shape} and {signs.shape}"
                )
        return _Masks(m, -(-(h * w) // 8), (h, w), masks, None, rows, signs)
    if isinstance(masks, np.ndarray):
        if masks.dtype != np.uint8 or masks.ndim != 2:
            raise ConfigError(
                "packed masks must be a uint8 array (m, ceil(n / 8)) from PatternSet.pack() "
                f"(np.packbits(..., bitorder='little')); got {masks.dtype} {masks.shape}"
            )
        return _Masks(int(masks.shape[0]), int(masks.shape[1]), None, None, masks)
    raise ConfigError(
        "masks must be a PatternSet or a packed uint8 array (m, ceil(n / 8)); got "
        f"{type(masks).__name__}"
    )


def _as_images(images: Any, mk: _Masks) -> np.ndarray:
    """Images as a (B, n) array (not yet converted), checked against the masks."""
    x = np.asarray(images)
    if np.iscomplexobj(x):
        raise ConfigError("images must be real; got a complex array")
    if x.dtype.kind not in "fiub":
        raise ConfigError(f"images must be a real numeric array; got dtype {x.dtype}")
    mshape = f"masks {mk.m} x {mk.shape} ({mk.nbytes} bytes each)" if mk.shape else (
        f"packed masks {(mk.m, mk.nbytes)}"
    )

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"images of shape {x.shape} do not match {mshape}: {why}; give (B, H, W), "
            "(B, n) or a single (H, W) / (n,) image with n = H * W pixels"
        )

    if x.ndim == 1:
        flat = x[None, :]
    elif x.ndim == 2:
        a, b = x.shape
        if mk.shape is not None:
            n = mk.shape[0] * mk.shape[1]
            if b == n:
                flat = x
            elif (a, b) == mk.shape:
                flat = x.reshape(1, n)
            else:
                raise bad(f"expected (B, {n}) or {mk.shape}")
        elif -(-b // 8) == mk.nbytes:
            flat = x
        elif -(-(a * b) // 8) == mk.nbytes:
            flat = x.reshape(1, a * b)
        else:
            raise bad(f"neither {b} nor {a} * {b} pixels pack into {mk.nbytes} bytes")
    elif x.ndim == 3:
        if mk.shape is not None and x.shape[1:] != mk.shape:
            raise bad(f"image shape {x.shape[1:]} != mask shape {mk.shape}")
        flat = x.reshape(x.shape[0], x.shape[1] * x.shape[2])
    else:
        raise bad(f"{x.ndim}-d images are not supported")
    n = flat.shape[1]
    if mk.shape is not None and n != mk.shape[0] * mk.shape[1]:
        raise bad(f"{n} pixels != {mk.shape[0] * mk.shape[1]}")
    if -(-n // 8) != mk.nbytes:
        raise bad(f"{n} pixels need {-(-n // 8)} bytes per mask, the masks have {mk.nbytes}")
    return flat


def _kind(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "uint8"
    if dtype == np.float32:
        return "float32"
    return "float64"


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def _aligned_empty(shape: tuple[int, ...], dtype: Any, zero: bool = False) -> np.ndarray:
    """Uninitialised (or zeroed) C-contiguous array whose data start on a 64-byte boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    buf = np.zeros(nbytes + 64, np.uint8) if zero else np.empty(nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64
    return buf[start:start + nbytes].view(dt).reshape(shape)


def _run_bitplane(packed: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    m, nb = packed.shape
    batch = x.shape[0]
    ftype = np.float64 if kind == "float64" else np.float32
    planes = _aligned_empty((batch, 8, nb), ftype)
    _planes_layout(np.ascontiguousarray(x), planes)
    acc = np.zeros((m, batch), dtype=np.float64)
    per_pass = _BITPLANE_PASS_BYTES // (batch * 8 * np.dtype(ftype).itemsize)
    chunk = int(min(_CHUNK, max(256, per_pass - per_pass % 64)))
    _bitplane_kernel(packed, planes, acc, ftype(0), chunk)
    return np.ascontiguousarray(acc.T, dtype=np.float32 if kind == "float32" else np.float64)


def _lut_block(nbytes_per_chunk: int, bc: int, itemsize: int, nibble: bool) -> int:
    """Byte positions per table block."""
    row_bytes = (32 if nibble else 256) * bc * itemsize
    target = _LUT_TABLE_BYTES_NARROW if bc * itemsize <= 64 else _LUT_TABLE_BYTES
    return int(max(1, min(nbytes_per_chunk, target // row_bytes)))


def _lut_width(bc: int, itemsize: int) -> int:
    """Images per table row, padded so that rows never straddle a 64-byte cache line."""
    per_line = 64 // itemsize
    if bc >= per_line:
        return -(-bc // per_line) * per_line
    return 1 << (bc - 1).bit_length()


def _batch_chunks(batch: int) -> list[tuple[int, int]]:
    n_chunks = -(-batch // _LUT_MAX_BATCH)
    edges = [(batch * i) // n_chunks for i in range(n_chunks + 1)]
    return list(itertools.pairwise(edges))


def _run_lut(packed: np.ndarray, x: np.ndarray, kind: str, nibble: bool) -> np.ndarray:
    m, nb = packed.shape
    batch = x.shape[0]
    if kind == "uint8":
        # 8-pixel sums fit int32; whole sums too unless 255 n >= 2**31
        tdtype: Any = np.int32 if 255 * nb * 8 < 2**31 else np.int64
        out = np.empty((batch, m), dtype=np.float64)
    else:
        tdtype = np.float32 if kind == "float32" else np.float64
        out = np.empty((batch, m), dtype=tdtype)
    itemsize = np.dtype(tdtype).itemsize
    nch = max(1, min(numba.get_num_threads(), nb))
    for b0, b1 in _batch_chunks(batch):
        bc = b1 - b0
        width = _lut_width(bc, itemsize)
        src = np.ascontiguousarray(x[b0:b1])
        if width > bc:
            src = np.concatenate([src, np.zeros((width - bc, src.shape[1]), src.dtype)])
        xg = _aligned_empty((nb, 8, width), tdtype)
        _group_layout(src, xg)
        part = _aligned_empty((nch, m, width), tdtype, zero=True)
        block = _lut_block(-(-nb // nch), width, itemsize, nibble)
        rows, values = (2 * block, 16) if nibble else (block, 256)
        tables = _aligned_empty((nch, rows, values, width), tdtype)
        _lut_kernel(packed, xg, part, tables, 4 if nibble else 8)
        total = part[0] if nch == 1 else part.sum(axis=0)
        out[b0:b1] = total[:, :bc].T
    return out


def _run_blas(packed: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    m, nb = packed.shape
    n = x.shape[1]
    if kind == "uint8":
        ftype: Any = np.float32 if 255 * n < 2**24 else np.float64  # exact integer sums
    else:
        ftype = np.float32 if kind == "float32" else np.float64
    xf = np.ascontiguousarray(x, dtype=ftype)
    out = np.empty((x.shape[0], m), dtype=np.float32 if kind == "float32" else np.float64)
    itemsize = np.dtype(ftype).itemsize
    mb = int(max(1, min(m, _BLAS_BLOCK_BYTES // (nb * 8 * itemsize))))
    block = np.empty((mb, nb * 8), dtype=ftype)
    for k0 in range(0, m, mb):
        k1 = min(m, k0 + mb)
        blk = block[: k1 - k0]
        _unpack_kernel(packed[k0:k1], blk)
        out[:, k0:k1] = xf @ blk[:, :n].T
    return out


def _run_fwht(mk: _Masks, x: np.ndarray, kind: str) -> np.ndarray:
    n = x.shape[1]
    if mk.rows is None or mk.signs is None:
        raise ConfigError(
            "method='fwht' needs a Hadamard PatternSet (hadamard_rows not None); "
            "use another method for these masks"
        )
    if n & (n - 1):
        raise ConfigError(f"the FWHT path needs a power-of-two pixel count; got {n}")
    ftype = np.float32 if kind == "float32" else np.float64
    coeff = np.array(x, dtype=ftype, order="C", copy=True)
    _fwht_flat(coeff)  # coeff[:, 0] = sum(x): row 0 of H is all ones
    out = np.empty((x.shape[0], mk.m), dtype=ftype if kind != "uint8" else np.float64)
    if _hadamard_combine(coeff, mk.rows, mk.signs, out):
        raise ConfigError(
            f"hadamard_rows must be in 0..{n - 1} and hadamard_signs +1 or -1; got rows "
            f"{mk.rows.min()}..{mk.rows.max()}, signs {np.unique(mk.signs)}"
        )
    return out


# --------------------------------------------------------------------------------------------
# planner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A projection plan.

    Attributes
    ----------
    method : str
        Kernel used: "bitplane", "lut8", "lut4", "blas" or "fwht".
    source : str
        "model" (cost model), "timed" (first-use micro-timing) or "forced" (method argument
        or ``LSI_KERNELS_METHOD``).
    predicted_s : dict
        Cost-model estimate in seconds per candidate method.
    timed_s : dict
        Measured seconds per candidate (only when ``source == "timed"``).
    """

    method: str
    source: str
    predicted_s: dict[str, float]
    timed_s: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: method, how it was chosen, predicted time."""
        pred = self.predicted_s.get(self.method)
        extra = f", predicted {pred * 1e3:.3g} ms" if pred is not None else ""
        if self.timed_s:
            extra += ", timed " + ", ".join(
                f"{k} {v * 1e3:.3g} ms" for k, v in sorted(self.timed_s.items())
            )
        return f"{self.method} ({self.source}{extra})"


def predict_seconds(
    method: str, m: int, n: int, batch: int, kind: str, threads: int | None = None
) -> float:
    """Cost-model estimate (seconds) of one :func:`project` call with ``method``.

    Parameters
    ----------
    method : str
        "bitplane", "lut8", "lut4", "blas" or "fwht".
    m, n, batch : int
        Masks, pixels per mask, images.
    kind : str
        "float32", "float64" or "uint8" (the images' dtype class).
    threads : int or None
        Numba threads (default ``numba.get_num_threads()``).

    Returns
    -------
    float
        Predicted seconds (see :data:`COST_MODEL`).
    """
    c = COST_MODEL[kind]
    thr = max(1, threads if threads is not None else numba.get_num_threads())
    nb = -(-n // 8)
    t = c["call"] + c["prep"] * batch * n
    if method == "bitplane":
        # images go 4 at a time through one decode of the mask bits (~3/4 of the cost)
        eff = 3 * (batch // 4) + batch % 4
        return t + c["bitplane"] * m * nb * 8 * eff / min(thr, max(m, 1))
    if method in ("lut8", "lut4"):
        key = "lut4" if method == "lut4" else "lut"
        builds = nb * (30 if method == "lut4" else 255)
        uses = nb * m * (2 if method == "lut4" else 1)
        par = min(thr, nb)
        itemsize = 8 if kind == "float64" else 4
        for b0, b1 in _batch_chunks(batch):
            bc = _lut_width(b1 - b0, itemsize)
            build = builds * (c[f"{key}_build_a"] + c[f"{key}_build_b"] * bc)
            use = uses * (c[f"{key}_row_a"] + c[f"{key}_row_b"] * bc)
            t += (build + use) / par + c["prep"] * m * bc * par  # + partial-sum reduction
        return t
    if method == "blas":
        return t + c["unpack"] * m * n + max(c["gemm"] * batch, c["gemm_mem"]) * m * n
    if method == "fwht":
        par = thr if (batch >= thr or n >= 1 << 15) else batch
        butterflies = batch * n / 2 * math.log2(max(n, 2))
        return t + c["fwht"] * butterflies / par + c["prep"] * batch * m
    raise ConfigError(f"unknown kernel {method!r}")


def _env_method() -> str | None:
    value = os.environ.get("LSI_KERNELS_METHOD", "").strip().lower()
    return value or None


def _env_autotune() -> bool:
    return os.environ.get("LSI_KERNELS_AUTOTUNE", "0").strip().lower() in ("1", "true", "on")


def _check_method(method: str) -> str:
    meth = str(method).strip().lower()
    if meth not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return meth


class Projector:
    """Projects images onto binary masks, choosing the fastest kernel per problem shape.

    Plans are cached per ``(m, n, batch, dtype class, hadamard, numba threads)``.

    Parameters
    ----------
    method : str or None
        Default method for calls that do not name one: one of :data:`METHODS`; None reads
        ``LSI_KERNELS_METHOD`` at each call (unset: "auto").
    autotune : bool or None
        Time the plausible kernels (cost-model estimate within 3x of the best) on the first
        call of a shape and keep the fastest; only when the estimated time of all of them
        stays under ~0.15 s, otherwise the cost model decides.  None reads
        ``LSI_KERNELS_AUTOTUNE`` (default off: the choice is then deterministic).
    """

    def __init__(self, method: str | None = None, autotune: bool | None = None) -> None:
        self._method = None if method is None else _check_method(method)
        self._autotune = autotune
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._lock = threading.Lock()

    # -- planning ----------------------------------------------------------------------

    @property
    def plans(self) -> dict[tuple[Any, ...], Plan]:
        """Copy of the plan cache: key ``(m, n, batch, kind, hadamard, threads)`` -> Plan."""
        with self._lock:
            return dict(self._plans)

    def clear(self) -> None:
        """Forget every cached plan."""
        with self._lock:
            self._plans.clear()

    @staticmethod
    def _candidates(kind: str, hadamard: bool, method: str) -> tuple[str, ...]:
        if method == "lut":
            return ("lut8", "lut4")
        if method == "uint8":
            return ("bitplane", "lut8", "lut4")
        if method != "auto":
            return (method,)
        return _KERNELS if hadamard else _KERNELS[:-1]

    def plan(
        self,
        m: int,
        n: int,
        batch: int,
        dtype: npt.DTypeLike = np.float64,
        hadamard: bool = False,
        method: str = "auto",
    ) -> Plan:
        """The plan the projector uses for this problem (cost model unless already cached).

        Parameters
        ----------
        m, n, batch : int
            Number of masks, pixels per mask, images per call.
        dtype : dtype
            Images' dtype: float32, float64, uint8 (others count as float64).
        hadamard : bool
            Whether the masks are a Hadamard PatternSet (enables "fwht").
        method : str
            As for :meth:`project`.

        Returns
        -------
        Plan
        """
        kind = _kind(np.dtype(dtype))
        meth = _check_method(method)
        return self._plan(int(m), int(n), int(batch), kind, bool(hadamard), meth)

    def _key(self, m: int, n: int, batch: int, kind: str, hadamard: bool) -> tuple[Any, ...]:
        return (m, n, batch, kind, hadamard, numba.get_num_threads())

    def _plan(
        self, m: int, n: int, batch: int, kind: str, hadamard: bool, method: str
    ) -> Plan:
        if method == "uint8" and kind != "uint8":
            raise ConfigError("method='uint8' needs uint8 images; convert or pick another method")
        if method == "fwht" and not hadamard:
            raise ConfigError(
                "method='fwht' needs a Hadamard PatternSet (hadamard_rows not None); "
                "use another method for these masks"
            )
        cands = self._candidates(kind, hadamard, method)
        if method != "auto":
            pred = {c: predict_seconds(c, m, n, batch, kind) for c in cands}
            return Plan(min(pred, key=pred.__getitem__), "forced", pred)
        key = self._key(m, n, batch, kind, hadamard)
        with self._lock:
            hit = self._plans.get(key)
        if hit is not None:
            return hit
        pred = {c: predict_seconds(c, m, n, batch, kind) for c in cands}
        plan = Plan(min(pred, key=pred.__getitem__), "model", pred)
        with self._lock:
            self._plans.setdefault(key, plan)
            return self._plans[key]

    # -- projection --------------------------------------------------------------------

    def project(self, masks: Any, images: npt.ArrayLike, method: str | None = None) -> np.ndarray:
        """Sums of each image under each mask; see :func:`project`."""
        meth = method if method is not None else (self._method or _env_method() or "auto")
        meth = _check_method(meth)
        mk = _as_masks(masks)
        x = _as_images(images, mk)
        kind = _kind(x.dtype)
        if kind == "float64" and x.dtype != np.float64:
            x = x.astype(np.float64)
        batch, n = x.shape
        if batch == 0 or mk.m == 0:
            return np.zeros((batch, mk.m), np.float32 if kind == "float32" else np.float64)
        autotune = self._autotune if self._autotune is not None else _env_autotune()
        key = self._key(mk.m, n, batch, kind, mk.hadamard)
        if meth == "auto" and autotune:
            with self._lock:
                cached = self._plans.get(key)
            if cached is None:
                return self._autotune_call(mk, x, kind, key)
        plan = self._plan(mk.m, n, batch, kind, mk.hadamard, meth)
        return _execute(plan.method, mk, x, kind)

    __call__ = project

    def _autotune_call(self, mk: _Masks, x: np.ndarray, kind: str, key: tuple[Any, ...]
                       ) -> np.ndarray:
        batch, n = x.shape
        cands = self._candidates(kind, mk.hadamard, "auto")
        pred = {c: predict_seconds(c, mk.m, n, batch, kind) for c in cands}
        best = min(pred.values())
        short = [c for c in cands if pred[c] <= 3.0 * best]
        if len(short) < 2 or 2.0 * sum(pred[c] for c in short) > 0.15:
            plan = Plan(min(pred, key=pred.__getitem__), "model", pred)
            with self._lock:
                self._plans.setdefault(key, plan)
            return _execute(plan.method, mk, x, kind)
        timed: dict[str, float] = {}
        result: np.ndarray | None = None
        for c in short:
            _warm_up(c, kind)  # JIT / cache load outside the timing
            start = time.perf_counter()
            out = _execute(c, mk, x, kind)
            timed[c] = time.perf_counter() - start
            if result is None or timed[c] <= min(timed.values()):
                result = out
        plan = Plan(min(timed, key=timed.__getitem__), "timed", pred, timed)
        with self._lock:
            self._plans.setdefault(key, plan)
        assert result is not None
        return result


_WARM: set[tuple[str, str]] = set()


def _warm_up(method: str, kind: str) -> None:
    """Run ``method`` once on a tiny problem of the same dtype (compiles / loads the cache)."""
    if (method, kind) in _WARM:
        return
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, size=(3, 2), dtype=np.uint8)
    dtype = {"float32": np.float32, "float64": np.float64, "uint8": np.uint8}[kind]
    x = np.ones((2, 16), dtype=dtype)
    mk = _Masks(3, 2, None, None, packed, np.arange(3, dtype=np.int64), np.ones(3, np.int8))
    _execute(method, mk, x, kind)
    _WARM.add((method, kind))


def _execute(method: str, mk: _Masks, x: np.ndarray, kind: str) -> np.ndarray:
    if method == "fwht":
        return _run_fwht(mk, x, kind)
    packed = mk.packed()
    if packed.shape != (mk.m, mk.nbytes):
        raise ConfigError(
            f"PatternSet.pack() returned shape {packed.shape}; expected {(mk.m, mk.nbytes)}"
        )
    if method == "bitplane":
        return _run_bitplane(packed, x, kind)
    if method in ("lut8", "lut4"):
        return _run_lut(packed, x, kind, nibble=method == "lut4")
    if method == "blas":
        return _run_blas(packed, x, kind)
    raise ConfigError(f"unknown kernel {method!r}")


_DEFAULT = Projector()


def project(
    masks: Any,
    images: npt.ArrayLike,
    method: str | None = None,
    *,
    projector: Projector | None = None,
) -> np.ndarray:
    """Project images onto binary masks: ``y[b, k] = sum_p mask_k[p] * x[b, p]``.

    Parameters
    ----------
    masks : PatternSet or numpy.ndarray
        A :class:`~lsi_hw.patterns.PatternSet` (anything with ``pack()``, ``masks``
        (m, H, W) and ``hadamard_rows`` / ``hadamard_signs``), or packed masks: uint8
        (m, ceil(n / 8)), pixel ``p`` is bit ``p % 8`` of byte ``p // 8``.
    images : array_like
        (B, H, W), (B, n) or one image (H, W) / (n,) (treated as B = 1), pixel
        ``p = row * W + col``; any unit (e.g. W/m^2), the result has the same unit times
        pixels.  float32 / float64 are kept; uint8 takes the exact path; other dtypes are
        converted to float64.  With packed masks, a 2-D array is (B, n) when
        ``ceil(n / 8)`` matches the packed width, else one (H, W) image.
    method : str or None
        One of :data:`METHODS`.  None: the projector's default (``LSI_KERNELS_METHOD``,
        else "auto": the planner decides).
    projector : Projector or None
        Planner / plan cache to use (default: the module's shared one).

    Returns
    -------
    numpy.ndarray
        (B, m): float32 for float32 images, float64 otherwise (exact for uint8 images).

    Raises
    ------
    ConfigError
        Shapes that do not match (the message names both), an unknown method, "fwht" for
        masks that are not a Hadamard PatternSet, "uint8" for images that are not uint8.
    """
    return (projector or _DEFAULT).project(masks, images, method)


def explain_plan(
    masks: Any, batch: int = 1, dtype: npt.DTypeLike = np.float32, method: str = "auto"
) -> str:
    """Describe the kernel :func:`project` would use for ``masks`` and ``batch`` images.

    Parameters
    ----------
    masks : PatternSet or numpy.ndarray
        As for :func:`project` (for packed masks ``n`` is taken as 8 x the packed width).
    batch : int
        Images per call.
    dtype : dtype
        Images' dtype (the simulator's irradiance is float32).
    method : str
        As for :func:`project`.

    Returns
    -------
    str
        E.g. ``"lut8 (model, predicted 41 ms)"``.
    """
    mk = _as_masks(masks)
    n = mk.shape[0] * mk.shape[1] if mk.shape is not None else 8 * mk.nbytes
    return _DEFAULT.plan(mk.m, n, batch, dtype, mk.hadamard, method).describe()
