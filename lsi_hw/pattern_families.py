"""The mask families: Walsh-Hadamard (natural, sequency, cake-cutting and random orders),
Bernoulli random masks and the binarized phase-shifted Fourier basis.

:func:`hadamard_order` orders the rows of the natural-order Walsh-Hadamard matrix
(:func:`walsh_sequency` gives the sequency of each row, :func:`count_pieces` the pieces of a
pattern) and :func:`hadamard_masks` builds the masks of chosen rows without forming the
matrix.  :func:`hadamard_family`, :func:`random_family` and :func:`fourier_family` check
their arguments and return the masks, name and provenance of a set as a :class:`Family`;
:meth:`lsi_hw.patterns.PatternSet.hadamard`, ``.random`` and ``.fourier`` wrap them (their
docstrings describe the families).

This module imports only numpy, scipy and :mod:`lsi_hw.errors` / :mod:`lsi_hw.pattern_checks`
(layer rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from lsi_hw.errors import ConfigError, PatternError, is_int
from lsi_hw.pattern_checks import check_count, parse_shape, rng_from_seed, seed_for_meta

__all__ = [
    "HADAMARD_ORDERS",
    "Family",
    "count_pieces",
    "fourier_family",
    "hadamard_family",
    "hadamard_masks",
    "hadamard_order",
    "hadamard_packed_blocks",
    "random_family",
    "walsh_sequency",
]

#: Orders accepted by :meth:`PatternSet.hadamard`.
HADAMARD_ORDERS: tuple[str, ...] = ("natural", "sequency", "cake-cutting", "random")


class Family(NamedTuple):
    """A generated mask set: an owned, valid C-contiguous uint8 array (m, H, W), its name,
    its provenance and, for Hadamard sets, the natural-order row and sign of every mask and
    whether complementary pairs are interleaved (the fields of a PatternSet, in order)."""

    masks: np.ndarray | None  # None: a lazy Hadamard family (rows and signs define it)
    name: str
    meta: dict[str, Any]
    hadamard_rows: np.ndarray | None = None
    hadamard_signs: np.ndarray | None = None
    split: bool = False


# --------------------------------------------------------------------------------------------
# Walsh-Hadamard helpers
# --------------------------------------------------------------------------------------------


def _log2_exact(n: int) -> int:
    return n.bit_length() - 1


def _parity(x: np.ndarray) -> np.ndarray:
    """Parity (popcount mod 2) of non-negative int64 values < 2**62."""
    x = x.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        x ^= x >> shift
    return x & 1


def _bit_reverse(k: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros_like(k)
    for b in range(bits):
        out |= ((k >> b) & 1) << (bits - 1 - b)
    return out


def _gray_inverse(g: np.ndarray) -> np.ndarray:
    """Binary value whose Gray code is ``g`` (prefix XOR of the bits)."""
    b = g.copy()
    shift = 1
    while shift < 64:
        b ^= b >> shift
        shift <<= 1
    return b


def walsh_sequency(n: int) -> npt.NDArray[np.int64]:
    """Sequency (number of sign changes) of every row of the natural-order Hadamard matrix.

    For the Sylvester (natural-order) matrix ``H_n[k, x] = (-1) ** popcount(k & x)``, row ``k``
    has sequency ``gray_inverse(bit_reverse(k))``, where ``bit_reverse`` reverses the
    ``log2(n)`` bits of ``k`` and ``gray_inverse`` undoes the Gray code (prefix XOR of bits).

    Parameters
    ----------
    n : int
        Matrix size, a power of two >= 1.

    Returns
    -------
    numpy.ndarray
        int64 array of shape (n,): sequency of natural row ``k`` (a permutation of 0..n-1).
    """
    if not is_int(n) or int(n) < 1 or (int(n) & (int(n) - 1)):
        raise ConfigError(f"n must be a power of two >= 1; got {n!r}")
    n = int(n)
    k = np.arange(n, dtype=np.int64)
    return _gray_inverse(_bit_reverse(k, _log2_exact(n)))


def _check_n_side(n_side: Any) -> int:
    if not is_int(n_side) or int(n_side) < 2 or (int(n_side) & (int(n_side) - 1)):
        raise ConfigError(
            f"n_side must be a power of two >= 2 (2, 4, 8, ..., 256, ...); got {n_side!r}"
        )
    return int(n_side)


def hadamard_order(
    n_side: int, order: str = "sequency", seed: int | np.random.Generator | None = None
) -> npt.NDArray[np.int64]:
    """Natural row indices of the 2-D Walsh-Hadamard basis of ``n_side x n_side`` masks, ordered.

    Row ``K`` of the natural-order matrix of size ``n = n_side**2`` is, as an image,
    ``h_N[K // N, row] * h_N[K % N, col]`` (``H = H_N kron H_N``), i.e. the outer product of
    1-D Walsh functions with row sequency ``u = seq(K // N)`` and column sequency
    ``v = seq(K % N)`` (see :func:`walsh_sequency`).

    Parameters
    ----------
    n_side : int
        Mask side N in pixels, a power of two >= 2.
    order : {"natural", "sequency", "cake-cutting", "random"}
        ``natural``: 0..n-1.  ``sequency``: 2-D Walsh order, by ``u + v`` ascending, then
        ``max(u, v)``, then ``u`` (low spatial frequencies first, zig-zag-like).
        ``cake-cutting`` (Yu et al. 2019, Sensors 19:4122): by the number of connected
        regions ("pieces", 4-connectivity, both signs) of the pattern ascending, ties by
        natural index; a pattern of sequencies (u, v) is a (u+1) x (v+1) checkerboard of
        rectangles, so it has ``(u + 1) * (v + 1)`` pieces (checked against
        :func:`count_pieces` in the tests).  ``random``: a permutation drawn from ``seed``.
    seed : int, numpy.random.Generator or None
        Required for ``order="random"``, ignored otherwise.

    Returns
    -------
    numpy.ndarray
        int64 permutation of 0..n-1 of shape (n,).
    """
    n_side = _check_n_side(n_side)
    n = n_side * n_side
    if order not in HADAMARD_ORDERS:
        raise ConfigError(f"order must be one of {', '.join(HADAMARD_ORDERS)}; got {order!r}")
    k = np.arange(n, dtype=np.int64)
    if order == "natural":
        return k
    if order == "random":
        if seed is None:
            raise ConfigError(
                "order='random' needs a seed (an int or a numpy.random.Generator) so that "
                "the permutation is reproducible"
            )
        return rng_from_seed(seed).permutation(n).astype(np.int64)
    seq = walsh_sequency(n_side)
    u = seq[k // n_side]
    v = seq[k % n_side]
    if order == "sequency":
        return k[np.lexsort((u, np.maximum(u, v), u + v))]
    pieces = (u + 1) * (v + 1)
    return k[np.lexsort((k, pieces))]


def count_pieces(pattern: npt.ArrayLike) -> int:
    """Number of connected regions of a 2-D pattern, over all its distinct values.

    Uses :func:`scipy.ndimage.label` with 4-connectivity on each value's region (for a
    Hadamard pattern: the +1 and the -1 regions) and sums the counts.

    Parameters
    ----------
    pattern : array_like
        2-D array (H, W), e.g. a 0/1 mask or a +-1 Hadamard pattern.

    Returns
    -------
    int
        Number of pieces (>= 1).
    """
    a = np.asarray(pattern)
    if a.ndim != 2 or a.size == 0:
        raise PatternError(f"pattern must be a non-empty 2-D array; got shape {a.shape}")
    total = 0
    for value in np.unique(a):
        _, n = ndimage.label(a == value)
        total += int(n)
    return total


def hadamard_masks(n_side: int, rows: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), N, N) uint8 masks (1 + s h_k)/2 without forming the n x n matrix."""
    x = np.arange(n_side, dtype=np.int64)
    # b1[k, x] = 1 where the 1-D Walsh function h_N[k, x] is -1
    b1 = _parity(x[:, None] & x[None, :]).astype(np.uint8)
    nb1 = b1 ^ np.uint8(1)
    rows = np.asarray(rows, dtype=np.int64)
    kr, kc = rows // n_side, rows % n_side
    out = np.empty((rows.size, n_side, n_side), dtype=np.uint8)
    if signs is None:
        plus = np.ones(rows.size, dtype=bool)
    else:
        plus = np.asarray(signs) > 0
    # (1 + h)/2 = 1 where h = +1, i.e. where the row and column factor bits are equal
    for sel, row_bits in ((plus, nb1), (~plus, b1)):
        if sel.all():
            np.bitwise_xor(row_bits[kr][:, :, None], b1[kc][:, None, :], out=out)
        elif sel.any():
            out[sel] = row_bits[kr[sel]][:, :, None] ^ b1[kc[sel]][:, None, :]
    return out


def hadamard_packed_blocks(n_side: int, rows: np.ndarray, signs: np.ndarray,
                           chunk_bytes: int = 1 << 25) -> Iterator[np.ndarray]:
    """The bit-packed masks ``(1 + s h_k)/2`` (``np.packbits(..., bitorder="little")`` of
    each flattened mask) in ``(k, ceil(n / 8))`` blocks, in order, each made from at most
    ``chunk_bytes`` of masks: a lazy Hadamard set's :meth:`~lsi_hw.patterns.PatternSet.pack`
    and ``digest`` without all masks in memory."""
    step = max(1, chunk_bytes // max(1, n_side * n_side))
    for start in range(0, len(rows), step):
        block = hadamard_masks(n_side, rows[start:start + step], signs[start:start + step])
        yield np.packbits(block.reshape(len(block), -1), axis=1, bitorder="little")


# --------------------------------------------------------------------------------------------
# Fourier helpers
# --------------------------------------------------------------------------------------------


def _fourier_frequencies(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed (fx, fy) in cycles per image, one per conjugate pair, low frequencies first."""
    fy, fx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    fy, fx = fy.ravel().astype(np.int64), fx.ravel().astype(np.int64)
    lin = fy * w + fx
    conj = ((-fy) % h) * w + ((-fx) % w)
    keep = lin <= conj
    fx, fy = fx[keep], fy[keep]
    fxs = np.where(fx > w // 2, fx - w, fx)
    fys = np.where(fy > h // 2, fy - h, fy)
    # radius in cycles per pixel, scaled by (h * w) to stay an exact integer
    r2 = (fxs * h) ** 2 + (fys * w) ** 2
    idx = np.lexsort((fxs, fys, r2))
    return fxs[idx], fys[idx]


# --------------------------------------------------------------------------------------------
# the families (the bodies of PatternSet.hadamard / .random / .fourier)
# --------------------------------------------------------------------------------------------


def hadamard_family(
    n_side: int,
    m: int | None = None,
    order: str = "sequency",
    split: bool = False,
    seed: int | np.random.Generator | None = None,
    lazy: bool = False,
) -> Family:
    """Walsh-Hadamard masks ``(1 + s h_k)/2`` of ``n_side x n_side`` pixels, the first
    ``m`` rows of ``order``; see :meth:`lsi_hw.patterns.PatternSet.hadamard`.  ``lazy``:
    the masks are not made (``Family.masks`` is None); rows and signs define them."""
    n_side = _check_n_side(n_side)
    n = n_side * n_side
    m = n if m is None else check_count(m, f"m (for n_side={n_side}, n = {n})", 1, n)
    if order not in HADAMARD_ORDERS:
        raise ConfigError(f"order must be one of {', '.join(HADAMARD_ORDERS)}; got {order!r}")
    if not isinstance(split, (bool, np.bool_)):
        raise ConfigError(f"split must be True or False; got {split!r}")
    rows = hadamard_order(n_side, order, seed)[:m].copy()
    if split:
        rows = np.repeat(rows, 2)
        signs = np.ones(2 * m, dtype=np.int8)
        signs[1::2] = -1
    else:
        signs = np.ones(m, dtype=np.int8)
    arr = None if lazy else hadamard_masks(n_side, rows, signs)
    meta = {
        "generator": "hadamard",
        "n_side": n_side,
        "m": m,
        "order": order,
        "split": bool(split),
        "seed": seed_for_meta(seed) if order == "random" else None,
    }
    name = f"hadamard{n_side}-{order}" + ("-split" if split else "")
    return Family(arr, name, meta, rows, signs, bool(split))


def random_family(
    m: int,
    shape: int | tuple[int, int],
    p: float = 0.5,
    seed: int | np.random.Generator | None = None,
) -> Family:
    """Bernoulli(p) random masks; see :meth:`lsi_hw.patterns.PatternSet.random`."""
    m = check_count(m, "m", 1)
    h, w = parse_shape(shape)
    try:
        pf = float(p)
    except (TypeError, ValueError):
        raise ConfigError(f"p must be a number with 0 < p < 1; got {p!r}") from None
    if not (0.0 < pf < 1.0):
        raise ConfigError(f"p must satisfy 0 < p < 1 (probability of a 1); got {p!r}")
    rng = rng_from_seed(seed)
    arr = (rng.random((m, h, w)) < pf).view(np.uint8)
    meta = {
        "generator": "random",
        "m": m,
        "shape": [h, w],
        "p": pf,
        "seed": seed_for_meta(seed),
    }
    return Family(np.ascontiguousarray(arr), f"random{h}x{w}-p{pf:g}", meta)


def fourier_family(
    shape: int | tuple[int, int],
    m: int,
    phases: int = 4,
    seed: int | np.random.Generator | None = None,
) -> Family:
    """Binarized phase-shifted Fourier basis, low spatial frequencies first; see
    :meth:`lsi_hw.patterns.PatternSet.fourier`."""
    h, w = parse_shape(shape)
    if not is_int(phases) or int(phases) not in (3, 4):
        raise ConfigError(f"phases must be 3 or 4; got {phases!r}")
    phases = int(phases)
    m = check_count(m, "m", 1)
    if m % phases:
        raise ConfigError(
            f"m must be a multiple of phases={phases} (whole phase families); got {m}"
        )
    fxs, fys = _fourier_frequencies(h, w)
    nfam = m // phases
    if nfam > fxs.size:
        raise ConfigError(
            f"m={m} needs {nfam} frequencies but masks of shape ({h}, {w}) have only "
            f"{fxs.size}; m must be at most {fxs.size * phases}"
        )
    fx, fy = fxs[:nfam], fys[:nfam]
    big_l = w * h * phases  # one turn in units of 1 / (W H phases) turns
    y = np.arange(h, dtype=np.int64)
    x = np.arange(w, dtype=np.int64)
    ty = (fy[:, None] * y[None, :] * (w * phases))[:, :, None]  # (F, H, 1)
    tx = (fx[:, None] * x[None, :] * (h * phases))[:, None, :]  # (F, 1, W)
    base = ty + tx
    arr = np.empty((nfam, phases, h, w), dtype=np.uint8)
    for j in range(phases):
        t = (base + j * w * h) % big_l
        arr[:, j] = (4 * t <= big_l) | (4 * t >= 3 * big_l)
    phase_rad = [2 * math.pi * j / phases for j in range(phases)]
    meta = {
        "generator": "fourier",
        "shape": [h, w],
        "m": m,
        "phases": phases,
        "seed": seed_for_meta(seed),
        "per_mask": {
            "fx": np.repeat(fx, phases).tolist(),
            "fy": np.repeat(fy, phases).tolist(),
            "phase": phase_rad * nfam,
        },
    }
    return Family(arr.reshape(m, h, w), f"fourier{h}x{w}-{phases}step", meta)
