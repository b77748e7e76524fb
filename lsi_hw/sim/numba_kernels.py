"""The numba kernels of the projection paths and of the fast Walsh-Hadamard transform.

Only the jitted loops live here; :mod:`lsi_hw.sim.kernel_paths` prepares their inputs
(layouts, block sizes, dtypes) and :mod:`lsi_hw.sim.kernels` chooses between them.  Every
kernel is compiled on first use and kept in numba's on-disk cache (``cache=True``).

Mask layout: pixel ``p`` of a mask is bit ``p % 8`` of byte ``p // 8`` of its packed row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "CHUNK",
    "FASTMATH",
    "bitplane_kernel",
    "fwht_one_parallel",
    "fwht_rows",
    "fwht_vec",
    "group_layout",
    "hadamard_combine",
    "lut_kernel",
    "planes_layout",
    "row_sums_f64",
    "unpack_kernel",
]

# Fast-math flags for the reductions: reassociation lets LLVM vectorise ``s += ...`` loops.
# No nnan/ninf: non-finite pixels keep IEEE behaviour.
FASTMATH = {"reassoc", "nsz", "contract"}

#: Bytes of one mask row summed in one float32 run by the bit-plane kernel: 255 * 32768 <
#: 2**24, so 8-bit data stays exact in float32 lanes.
CHUNK = 32768


@njit(cache=True)
def fwht_vec(v):  # pragma: no cover - jit
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


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def row_sums_f64(x):  # pragma: no cover - jit
    """Sum of each row of a C-contiguous (B, n) array, accumulated in float64."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for r in prange(x.shape[0]):
        acc = 0.0
        row = x[r]
        for j in range(row.shape[0]):
            acc += row[j]
        out[r] = acc
    return out


@njit(parallel=True, cache=True)
def fwht_rows(x):  # pragma: no cover - jit
    """In-place WHT of every row of a C-contiguous (B, n) array, parallel over rows."""
    for r in prange(x.shape[0]):
        fwht_vec(x[r])


@njit(parallel=True, cache=True)
def fwht_one_parallel(v, nchunks):  # pragma: no cover - jit
    """In-place WHT of one long vector on several threads.

    The first ``log2(n / nchunks)`` stages act inside ``nchunks`` independent chunks (one
    per thread); each of the last ``log2(nchunks)`` stages is split into ``nchunks``
    contiguous runs of butterflies.  ``nchunks`` is a power of two with ``n >= 4 nchunks``.
    """
    n = v.shape[0]
    c = n // nchunks
    for t in prange(nchunks):
        fwht_vec(v[t * c:(t + 1) * c])
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
def hadamard_combine(coeff, rows, signs, out):  # pragma: no cover - jit
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


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def bitplane_kernel(packed, planes, acc, zero, chunk):  # pragma: no cover - jit
    """acc[k, i] += sum of image i over the set bits of mask k (masked adds over bit planes).

    packed : (m, nb) uint8 masks; planes : (B, 8, nb) float, planes[i, b, j] = x_i[8 j + b];
    acc : (m, B) float64, zeroed by the caller; zero : a 0 of the planes' dtype; chunk : bytes
    of each mask row per pass (the B images' planes of one pass stay in L2; <= CHUNK keeps
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
def lut_kernel(packed, xg, part, tables, gbits):  # pragma: no cover - jit
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
def planes_layout(x, planes):  # pragma: no cover - jit
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
def group_layout(x, xg):  # pragma: no cover - jit
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
def unpack_kernel(packed, out):  # pragma: no cover - jit
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
