"""Binary mask sets for the single-pixel camera: validation, generators, packing, DMD mapping.

A :class:`PatternSet` is an immutable, validated stack of ``m`` binary masks of ``H x W``
pixels (values exactly 0/1, stored as a read-only C-contiguous ``uint8`` array), with a name
and a JSON-serialisable provenance dict (``meta``).  Hadamard sets also record which rows of
the natural-order Walsh-Hadamard matrix they hold (``hadamard_rows``) and with which sign
(``hadamard_signs``), see ``notes/CONTRACTS.md``.

Generators
    :meth:`PatternSet.hadamard` (natural, sequency, cake-cutting or random order, optionally
    split into complementary pairs), :meth:`PatternSet.random` (Bernoulli masks),
    :meth:`PatternSet.fourier` (binarized phase-shifted Fourier basis),
    :meth:`PatternSet.load` (``.npy`` / ``.npz`` files, e.g. learned masks).

Packing
    :func:`pack_masks` / :func:`unpack_masks`: one bit per pixel, pixel ``p = row * W + col``
    is bit ``p % 8`` (LSB first) of byte ``p // 8``; trailing bits are 0.

DMD mapping
    :func:`place_on_dmd` puts each mask pixel on a block ("superpixel") of micromirrors of the
    DLP4500 array (912 columns x 1140 rows, diamond layout), centred;
    :func:`pack_dlp_frames` / :func:`unpack_dlp_frames` pack 24 binary patterns into one 24-bit
    RGB video frame in the DLPC350 bitplane order (G0-G7, R0-R7, B0-B7).

This module imports only numpy, scipy and :mod:`lsi_hw.errors` (layer rule).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from lsi_hw.errors import ConfigError, PatternError

__all__ = [
    "DLP_BITPLANES_PER_FRAME",
    "DMD_COLUMNS",
    "DMD_ROWS",
    "HADAMARD_ORDERS",
    "PatternSet",
    "bitplane_of",
    "count_pieces",
    "hadamard_order",
    "pack_dlp_frames",
    "pack_masks",
    "place_on_dmd",
    "superpixel_for",
    "take_from_dmd",
    "unpack_dlp_frames",
    "unpack_masks",
    "walsh_sequency",
]

#: Micromirror columns of the DLP4500 array (TI ``PTN_WIDTH``).
DMD_COLUMNS: int = 912
#: Micromirror rows of the DLP4500 array (TI ``PTN_HEIGHT``); diamond layout, rows at half pitch.
DMD_ROWS: int = 1140
#: Binary patterns carried by one 24-bit video frame.
DLP_BITPLANES_PER_FRAME: int = 24
#: Orders accepted by :meth:`PatternSet.hadamard`.
HADAMARD_ORDERS: tuple[str, ...] = ("natural", "sequency", "cake-cutting", "random")

# Bitplane groups of a 24-bit frame in DLPC350 order (BITPLANE_G0 = 0, R0 = 8, B0 = 16) and the
# index of each group's channel in an RGB (R, G, B) pixel.
_GROUP_NAMES: tuple[str, str, str] = ("G", "R", "B")
_GROUP_TO_RGB: tuple[int, int, int] = (1, 0, 2)

_DMD_SHAPE: tuple[int, int] = (DMD_ROWS, DMD_COLUMNS)


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _loc(a: np.ndarray, flat: int) -> tuple[int, int, int]:
    k, r, c = np.unravel_index(int(flat), a.shape)
    return int(k), int(r), int(c)


def _validate_masks(masks: Any, what: str = "masks") -> np.ndarray:
    """Check that ``masks`` is an (m, H, W) array of exactly 0/1 and return it as an array.

    The returned array is ``uint8`` or ``bool`` (no copy when the input already is one) or a
    new ``uint8`` array; callers that keep it must copy it.
    """
    if isinstance(masks, PatternSet):
        return masks.masks
    try:
        a = np.asarray(masks)
    except (ValueError, TypeError) as exc:
        raise PatternError(
            f"{what} could not be converted to an array ({exc}); expected an array of shape "
            "(m, H, W) holding 0/1"
        ) from None
    if a.ndim != 3:
        raise PatternError(
            f"{what} must have shape (m, H, W); got shape {a.shape} (ndim {a.ndim}); "
            "for a single mask add a leading axis (mask[None])"
        )
    if 0 in a.shape:
        raise PatternError(f"{what} is empty: got shape {a.shape}; m, H and W must all be >= 1")
    kind = a.dtype.kind
    if kind == "b":
        return a
    if kind in "ui":
        if a.dtype == np.uint8:
            if int(a.max()) <= 1:
                return a
        elif int(a.min()) >= 0 and int(a.max()) <= 1:
            return a.astype(np.uint8)
        flat = int(np.flatnonzero((a.ravel() > 1) | (a.ravel() < 0))[0])
    elif kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            flat = int(np.flatnonzero(~finite.ravel())[0])
            k, r, c = _loc(a, flat)
            raise PatternError(
                f"{what}: mask {k} has a non-finite value {a[k, r, c].item()!r} at pixel "
                f"(row, col) = ({r}, {c}); masks must be binary (0 or 1)"
            )
        bad = (a != 0) & (a != 1)
        if not bad.any():
            return a.astype(np.uint8)
        flat = int(np.flatnonzero(bad.ravel())[0])
    else:
        raise PatternError(
            f"{what} has dtype {a.dtype}; expected bool, integer or float arrays holding "
            "0/1 (masks must be binary (0 or 1))"
        )
    k, r, c = _loc(a, flat)
    raise PatternError(
        f"{what}: mask {k} has value {a[k, r, c].item()!r} at pixel (row, col) = ({r}, {c}); "
        "masks must be binary (0 or 1)"
    )


def _parse_shape(shape: Any, what: str = "shape") -> tuple[int, int]:
    """(H, W) from an int (square) or a pair of ints >= 1, else ConfigError."""
    if _is_int(shape):
        h = w = int(shape)
    else:
        try:
            h, w = shape
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} must be an int (square) or a pair (H, W) of ints; got {shape!r}"
            ) from None
        if not (_is_int(h) and _is_int(w)):
            raise ConfigError(f"{what} must hold ints; got {shape!r}")
        h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise ConfigError(f"{what} must be >= 1 pixel on each side; got {shape!r}")
    return h, w


def _check_count(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    """An int in [lo, hi] (hi None: no upper bound), else ConfigError naming the value."""
    if not _is_int(value):
        raise ConfigError(f"{what} must be an int; got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"{what} must be {rng}; got {v}")
    return v


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if not _is_int(seed) or int(seed) < 0:
        raise ConfigError(
            f"seed must be None, a non-negative int or a numpy.random.Generator; got {seed!r}"
        )
    return np.random.default_rng(int(seed))


def _seed_for_meta(seed: Any) -> int | str | None:
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return "numpy.random.Generator (state not recorded)"
    return int(seed)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _meta_to_json(meta: Any) -> str:
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise PatternError(f"meta must be a dict (JSON-serialisable); got {type(meta).__name__}")
    try:
        return json.dumps(dict(meta), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"meta must be JSON-serialisable: {exc}") from None


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
    if not _is_int(n) or int(n) < 1 or (int(n) & (int(n) - 1)):
        raise ConfigError(f"n must be a power of two >= 1; got {n!r}")
    n = int(n)
    k = np.arange(n, dtype=np.int64)
    return _gray_inverse(_bit_reverse(k, _log2_exact(n)))


def _check_n_side(n_side: Any) -> int:
    if not _is_int(n_side) or int(n_side) < 2 or (int(n_side) & (int(n_side) - 1)):
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
        return _rng(seed).permutation(n).astype(np.int64)
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


def _hadamard_masks(n_side: int, rows: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# bit packing
# --------------------------------------------------------------------------------------------


def pack_masks(masks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Pack binary masks one bit per pixel (the CONTRACTS.md layout).

    Parameters
    ----------
    masks : array_like or PatternSet
        (m, H, W) with values exactly 0/1 (validated; :class:`PatternError` otherwise).

    Returns
    -------
    numpy.ndarray
        uint8 array (m, ceil(H*W / 8)): pixel ``p = row * W + col`` of mask ``i`` is bit
        ``p % 8`` (LSB first) of byte ``p // 8``; the trailing bits of the last byte are 0.
    """
    a = _validate_masks(masks)
    m = a.shape[0]
    return np.packbits(a.reshape(m, -1), axis=1, bitorder="little")


def unpack_masks(packed: npt.ArrayLike, shape: int | tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`pack_masks`.

    Parameters
    ----------
    packed : array_like
        uint8 array (m, ceil(H*W / 8)), m >= 1.
    shape : int or (int, int)
        Mask shape (H, W) in pixels (an int means square).

    Returns
    -------
    numpy.ndarray
        uint8 array (m, H, W) of 0/1.

    Raises
    ------
    PatternError
        Wrong dtype/ndim, a byte count that does not match ``shape``, or nonzero padding bits
        (a sign that ``shape`` is wrong).
    """
    h, w = _parse_shape(shape)
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise PatternError(f"packed masks must be uint8; got dtype {p.dtype}")
    nbytes = -(-(h * w) // 8)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != nbytes:
        raise PatternError(
            f"packed masks must have shape (m >= 1, {nbytes}) for masks of shape ({h}, {w}); "
            f"got shape {p.shape}"
        )
    bits = np.unpackbits(p, axis=1, bitorder="little")
    if h * w < bits.shape[1] and bits[:, h * w :].any():
        raise PatternError(
            f"packed masks have nonzero padding bits after pixel {h * w}: they were not packed "
            f"from masks of shape ({h}, {w})"
        )
    return np.ascontiguousarray(bits[:, : h * w]).reshape(p.shape[0], h, w)


# --------------------------------------------------------------------------------------------
# DMD placement and 24-bit frames
# --------------------------------------------------------------------------------------------


def _check_dmd_shape(dmd_shape: Any) -> tuple[int, int]:
    return _parse_shape(dmd_shape, "dmd_shape")


def superpixel_for(
    shape: int | tuple[int, int],
    diamond: bool = False,
    *,
    dmd_shape: tuple[int, int] = _DMD_SHAPE,
) -> int:
    """Largest superpixel side ``s`` (micromirror columns per mask pixel) that fits the DMD.

    Parameters
    ----------
    shape : int or (int, int)
        Mask shape (H, W) in mask pixels.
    diamond : bool
        If True a mask pixel spans ``s`` columns x ``2 s`` rows (see :func:`place_on_dmd`).
    dmd_shape : (int, int)
        DMD (rows, columns) in micromirrors; default (1140, 912) for the DLP4500.

    Returns
    -------
    int
        ``min(cols // W, rows // (H * (2 if diamond else 1)))`` (>= 1).

    Raises
    ------
    ConfigError
        If the mask does not fit even with ``s = 1``.
    """
    h, w = _parse_shape(shape)
    rows, cols = _check_dmd_shape(dmd_shape)
    rf = 2 if diamond else 1
    s = min(cols // w, rows // (h * rf))
    if s < 1:
        raise ConfigError(
            f"masks of shape ({h}, {w}) do not fit the DMD of {rows} rows x {cols} columns "
            f"even at superpixel 1 (each mask pixel needs 1 column x {rf} row(s)); use "
            "smaller masks" + ("" if not diamond else " or diamond=False")
        )
    return s


def place_on_dmd(
    masks: npt.ArrayLike,
    superpixel: int | None = None,
    diamond: bool = False,
    *,
    dmd_shape: tuple[int, int] = _DMD_SHAPE,
    fill: int = 0,
) -> npt.NDArray[np.uint8]:
    """Map (m, H, W) masks onto the micromirror array, one block of mirrors per mask pixel.

    Each mask pixel becomes a superpixel of ``s`` columns x ``s`` rows (``diamond=False``) or
    ``s`` columns x ``2 s`` rows (``diamond=True``).  The DLP4500 has a diamond pixel layout:
    every other row is shifted by half a column and the row pitch is half the column pitch
    (mirror pitch ~7.6 um, row pitch ~3.8 um), so a physically square superpixel spans twice
    as many rows as columns; ``diamond=True`` gives square mask pixels on the bench,
    ``diamond=False`` gives square blocks in mirror-index space (pixels twice as wide as
    tall physically).  The placed block (``H * s * r`` rows x ``W * s`` columns, ``r = 1``
    or 2) is centred; when the leftover is odd the extra row/column is at the bottom/right.

    Parameters
    ----------
    masks : array_like or PatternSet
        (m, H, W) binary masks.
    superpixel : int or None
        ``s`` in micromirror columns per mask pixel; None picks the largest that fits
        (:func:`superpixel_for`).
    diamond : bool
        Use ``s x 2s`` (columns x rows) blocks, see above.
    dmd_shape : (int, int)
        DMD (rows, columns) in micromirrors; default (1140, 912).
    fill : {0, 1}
        Value of the mirrors outside the placed block (0 = off).

    Returns
    -------
    numpy.ndarray
        uint8 array (m, rows, columns) of 0/1.

    Raises
    ------
    ConfigError
        ``superpixel`` is not an int >= 1 or does not fit (the message names the largest
        ``s`` that fits), or ``fill`` is not 0/1.
    """
    a = _validate_masks(masks)
    m, h, w = a.shape
    rows, cols = _check_dmd_shape(dmd_shape)
    if not _is_int(fill) or int(fill) not in (0, 1):
        raise ConfigError(f"fill must be 0 or 1; got {fill!r}")
    s_max = superpixel_for((h, w), diamond, dmd_shape=(rows, cols))
    rf = 2 if diamond else 1
    if superpixel is None:
        s = s_max
    else:
        s = _check_count(superpixel, "superpixel", 1)
        if s > s_max:
            raise ConfigError(
                f"superpixel {s} does not fit: masks of shape ({h}, {w}) at {s} column(s) x "
                f"{s * rf} row(s) per pixel need {h * s * rf} rows x {w * s} columns, the DMD "
                f"has {rows} x {cols}; the largest superpixel that fits is {s_max}"
            )
    sr, sc = s * rf, s
    bh, bw = h * sr, w * sc
    r0, c0 = (rows - bh) // 2, (cols - bw) // 2
    out = np.full((m, rows, cols), int(fill), dtype=np.uint8)
    block = np.broadcast_to(a.astype(np.uint8, copy=False)[:, :, None, :, None], (m, h, sr, w, sc))
    out[:, r0 : r0 + bh, c0 : c0 + bw] = block.reshape(m, bh, bw)
    return out



def take_from_dmd(
    dmd_masks: npt.ArrayLike,
    shape: tuple[int, int],
    superpixel: int | None = None,
    diamond: bool = False,
) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`place_on_dmd`: the (m, H, W) masks shown on (m, rows, cols) mirrors.

    Reads each superpixel block and checks that all its mirrors agree (a block that
    disagrees was not placed with this geometry: PatternError naming the mask).
    """
    arr = np.asarray(dmd_masks, dtype=np.uint8)
    if arr.ndim != 3:
        raise PatternError(f"DMD masks must be (m, rows, cols); got shape {arr.shape}")
    m, rows, cols = arr.shape
    h, w = _parse_shape(shape)
    s = superpixel_for((h, w), diamond, dmd_shape=(rows, cols)) if superpixel is None else int(
        superpixel)
    sr, sc = s * (2 if diamond else 1), s
    r0, c0 = (rows - h * sr) // 2, (cols - w * sc) // 2
    if r0 < 0 or c0 < 0:
        raise PatternError(f"masks of shape {shape} at superpixel {s} exceed the array")
    blocks = arr[:, r0 : r0 + h * sr, c0 : c0 + w * sc].reshape(m, h, sr, w, sc)
    first = blocks[:, :, 0, :, 0]
    uneven = (blocks != first[:, :, None, :, None]).any(axis=(1, 2, 3, 4))
    if uneven.any():
        k = int(np.argmax(uneven))
        raise PatternError(
            f"DMD mask {k} is not made of uniform {sr}x{sc} blocks at this placement "
            f"(shape {shape}, superpixel {s}, diamond={diamond})"
        )
    return np.ascontiguousarray(first)

def bitplane_of(k: int) -> tuple[int, str, int]:
    """Where pattern ``k`` of a sequence goes in the 24-bit video frames.

    Parameters
    ----------
    k : int
        Pattern index >= 0.

    Returns
    -------
    (int, str, int)
        ``(frame, channel, bit)``: frame ``k // 24``; with ``b = k % 24`` (the DLPC350
        pattern number): ``b`` 0-7 -> ("G", b), 8-15 -> ("R", b - 8), 16-23 -> ("B", b - 16)
        (``BITPLANE_G0 = 0``, ``BITPLANE_R0 = 8``, ``BITPLANE_B0 = 16``).
    """
    k = _check_count(k, "pattern index k", 0)
    frame, b = divmod(k, DLP_BITPLANES_PER_FRAME)
    return frame, _GROUP_NAMES[b // 8], b % 8


def _check_frame_dims(rows: int, cols: int, dmd_shape: Any, what: str) -> None:
    if dmd_shape is None:
        return
    er, ec = _check_dmd_shape(dmd_shape)
    if (rows, cols) != (er, ec):
        raise PatternError(
            f"{what} must be {er} rows x {ec} columns (the DMD; place masks with "
            f"place_on_dmd first or pass dmd_shape=None); got {rows} x {cols}"
        )


def pack_dlp_frames(
    dmd_masks: npt.ArrayLike, *, dmd_shape: tuple[int, int] | None = _DMD_SHAPE
) -> npt.NDArray[np.uint8]:
    """Pack binary DMD-sized patterns into 24-bit RGB frames (24 patterns per frame).

    Pattern ``k`` goes to frame ``k // 24`` at the bitplane given by :func:`bitplane_of`:
    ``b = k % 24``; 0-7 -> green bit ``b``, 8-15 -> red bit ``b - 8``, 16-23 -> blue bit
    ``b - 16``.  Unused bitplanes of the last frame are 0.

    Parameters
    ----------
    dmd_masks : array_like
        (m, rows, columns) binary patterns, already placed on the DMD (:func:`place_on_dmd`).
    dmd_shape : (int, int) or None
        Required (rows, columns); default (1140, 912).  None accepts any size.

    Returns
    -------
    numpy.ndarray
        uint8 array (ceil(m / 24), rows, columns, 3), channels in R, G, B order.
    """
    a = _validate_masks(dmd_masks, "dmd_masks")
    m, rows, cols = a.shape
    _check_frame_dims(rows, cols, dmd_shape, "dmd_masks")
    nf = -(-m // DLP_BITPLANES_PER_FRAME)
    padded = np.zeros((nf * DLP_BITPLANES_PER_FRAME, rows, cols), dtype=np.uint8)
    padded[:m] = a
    planes = padded.reshape(nf, 3, 8, rows, cols)
    acc = np.zeros((nf, 3, rows, cols), dtype=np.uint8)
    for b in range(8):
        acc |= planes[:, :, b] << np.uint8(b)
    frames = np.empty((nf, rows, cols, 3), dtype=np.uint8)
    for g, ch in enumerate(_GROUP_TO_RGB):
        frames[..., ch] = acc[:, g]
    return frames


def unpack_dlp_frames(
    frames: npt.ArrayLike, m: int, *, dmd_shape: tuple[int, int] | None = _DMD_SHAPE
) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`pack_dlp_frames`: the first ``m`` binary patterns of the frames.

    Parameters
    ----------
    frames : array_like
        uint8 array (n_frames, rows, columns, 3), RGB, with ``n_frames == ceil(m / 24)``.
    m : int
        Number of patterns, >= 1.
    dmd_shape : (int, int) or None
        Required (rows, columns); default (1140, 912).  None accepts any size.

    Returns
    -------
    numpy.ndarray
        uint8 array (m, rows, columns) of 0/1.

    Raises
    ------
    PatternError
        Wrong dtype, ndim, channel count, frame size, or a frame count that does not match m.
    """
    f = np.asarray(frames)
    if f.dtype != np.uint8:
        raise PatternError(f"frames must be uint8 (24-bit RGB); got dtype {f.dtype}")
    if f.ndim != 4 or f.shape[3] != 3:
        raise PatternError(
            f"frames must have shape (n_frames, rows, columns, 3); got shape {f.shape}"
        )
    nf, rows, cols, _ = f.shape
    _check_frame_dims(rows, cols, dmd_shape, "frames")
    if not _is_int(m) or int(m) < 1:
        raise PatternError(f"m (number of patterns) must be an int >= 1; got {m!r}")
    m = int(m)
    need = -(-m // DLP_BITPLANES_PER_FRAME)
    if nf != need:
        raise PatternError(
            f"{m} patterns are carried by {need} frame(s) of 24 bitplanes; got {nf} frame(s)"
        )
    out = np.empty((nf * DLP_BITPLANES_PER_FRAME, rows, cols), dtype=np.uint8)
    planes = out.reshape(nf, 3, 8, rows, cols)
    for g, ch in enumerate(_GROUP_TO_RGB):
        chan = f[..., ch]
        for b in range(8):
            np.bitwise_and(chan >> np.uint8(b), np.uint8(1), out=planes[:, g, b])
    return out[:m]


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
# PatternSet
# --------------------------------------------------------------------------------------------


class PatternSet:
    """A validated, immutable set of binary masks (m, H, W) with provenance.

    Parameters
    ----------
    masks : array_like
        (m, H, W) holding exactly 0/1 (bool, any int or float dtype).  Copied and stored as a
        read-only C-contiguous uint8 array.
    name : str
        Short human-readable name.
    meta : dict or None
        JSON-serialisable provenance (generator and its arguments, seed, order, split, ...).
        numpy scalars/arrays are converted; tuples come back as lists.  Per-mask lists under
        ``meta["per_mask"]`` follow selections and :meth:`complementary`.
    hadamard_rows : array_like of int or None
        For Hadamard sets: natural-order Walsh-Hadamard row index of each mask (int64, m).
    hadamard_signs : array_like of int or None
        For Hadamard sets: +1 for the mask ``(1 + h)/2``, -1 for ``(1 - h)/2`` (int8, m).
        Given together with ``hadamard_rows``; the masks are checked against the formula
        ``H[k, p] = (-1) ** popcount(k & p)``, ``p = row * N + col``.
    split : bool
        The set interleaves complementary pairs ``[p0, 1 - p0, p1, 1 - p1, ...]`` (checked),
        so :meth:`differential` applies.

    Raises
    ------
    PatternError
        Wrong ndim, empty, non-finite or non-binary values, inconsistent Hadamard info,
        non-complementary pairs for ``split=True``, non-JSON ``meta``.
    """

    __slots__ = ("_digest", "_masks", "_meta_json", "_name", "_packed", "_rows", "_signs",
                 "_split")

    _masks: np.ndarray
    _meta_json: str
    _name: str
    _rows: np.ndarray | None
    _signs: np.ndarray | None
    _split: bool

    def __init__(
        self,
        masks: npt.ArrayLike,
        name: str = "custom",
        meta: Mapping[str, Any] | None = None,
        *,
        hadamard_rows: npt.ArrayLike | None = None,
        hadamard_signs: npt.ArrayLike | None = None,
        split: bool = False,
    ) -> None:
        a = _validate_masks(masks)
        if isinstance(masks, PatternSet):
            arr = a
        else:
            arr = np.array(a, dtype=np.uint8, order="C", copy=True)
        rows, signs = self._check_hadamard(arr, hadamard_rows, hadamard_signs)
        if split:
            self._check_split(arr)
        self._init(arr, name, _meta_to_json(meta), rows, signs, bool(split))

    # -- construction internals ------------------------------------------------------------

    def _init(
        self,
        arr: np.ndarray,
        name: str,
        meta_json: str,
        rows: np.ndarray | None,
        signs: np.ndarray | None,
        split: bool,
    ) -> None:
        if not isinstance(name, str):
            raise PatternError(f"name must be a str; got {type(name).__name__}")
        arr.flags.writeable = False
        if rows is not None and signs is not None:
            rows.flags.writeable = False
            signs.flags.writeable = False
        set_ = object.__setattr__
        set_(self, "_masks", arr)
        set_(self, "_name", name)
        set_(self, "_meta_json", meta_json)
        set_(self, "_rows", rows)
        set_(self, "_signs", signs)
        set_(self, "_split", split)

    @classmethod
    def _trusted(
        cls,
        arr: np.ndarray,
        name: str,
        meta: Mapping[str, Any] | None,
        rows: np.ndarray | None = None,
        signs: np.ndarray | None = None,
        split: bool = False,
    ) -> PatternSet:
        """Wrap an owned, valid C-contiguous uint8 array without re-validating it."""
        obj = cls.__new__(cls)
        obj._init(arr, name, _meta_to_json(meta), rows, signs, split)
        return obj

    @staticmethod
    def _check_hadamard(
        arr: np.ndarray, rows: Any, signs: Any
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if rows is None and signs is None:
            return None, None
        if rows is None or signs is None:
            raise PatternError("hadamard_rows and hadamard_signs go together: give both or neither")
        m, h, w = arr.shape
        if h != w or h < 2 or (h & (h - 1)):
            raise PatternError(
                f"Hadamard masks must be square with a power-of-two side >= 2; got ({h}, {w})"
            )
        r = np.asarray(rows)
        s = np.asarray(signs)
        if r.shape != (m,) or s.shape != (m,):
            raise PatternError(
                f"hadamard_rows and hadamard_signs must have shape ({m},); got {r.shape} and "
                f"{s.shape}"
            )
        if r.dtype.kind not in "ui" or s.dtype.kind not in "ui":
            raise PatternError("hadamard_rows and hadamard_signs must be integer arrays")
        n = h * w
        if r.min() < 0 or r.max() >= n:
            raise PatternError(f"hadamard_rows must be in 0..{n - 1}; got {r.min()}..{r.max()}")
        if not np.all((s == 1) | (s == -1)):
            raise PatternError("hadamard_signs must be +1 or -1")
        r = np.array(r, dtype=np.int64, copy=True)
        s = np.array(s, dtype=np.int8, copy=True)
        expected = _hadamard_masks(h, r, s)
        diff = np.flatnonzero((expected != arr).reshape(m, -1).any(axis=1))
        if diff.size:
            i = int(diff[0])
            raise PatternError(
                f"mask {i} is not Hadamard row {r[i]} with sign {s[i]:+d} "
                "((1 + s h)/2, H[k, p] = (-1)**popcount(k & p), p = row * N + col)"
            )
        return r, s

    @staticmethod
    def _check_split(arr: np.ndarray) -> None:
        m = arr.shape[0]
        if m % 2:
            raise PatternError(f"a split set needs an even number of masks; got {m}")
        ok = (arr[0::2] ^ arr[1::2]).reshape(m // 2, -1).all(axis=1)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise PatternError(
                f"split set: masks {2 * i} and {2 * i + 1} are not complementary "
                "(a split set interleaves [p0, 1 - p0, p1, 1 - p1, ...])"
            )

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("PatternSet is immutable; make a new one instead")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("PatternSet is immutable")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            _restore,
            (self._masks, self._name, self._meta_json, self._rows, self._signs, self._split),
        )

    # -- basic properties ------------------------------------------------------------------

    @property
    def masks(self) -> npt.NDArray[np.uint8]:
        """Read-only C-contiguous uint8 array (m, H, W) of 0/1."""
        return self._masks

    @property
    def name(self) -> str:
        """Short name of the set."""
        return self._name

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance dict (a fresh copy on every access)."""
        return json.loads(self._meta_json)

    @property
    def m(self) -> int:
        """Number of masks."""
        return int(self._masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Mask shape (H, W) in pixels."""
        return int(self._masks.shape[1]), int(self._masks.shape[2])

    @property
    def n_pixels(self) -> int:
        """Pixels per mask, H * W."""
        return int(self._masks.shape[1] * self._masks.shape[2])

    @property
    def hadamard_rows(self) -> npt.NDArray[np.int64] | None:
        """Natural-order Hadamard row per mask (read-only int64, m), or None."""
        return self._rows

    @property
    def hadamard_signs(self) -> npt.NDArray[np.int8] | None:
        """+1 for (1 + h)/2, -1 for (1 - h)/2 per mask (read-only int8, m), or None."""
        return self._signs

    @property
    def is_hadamard(self) -> bool:
        """True when the set records Hadamard rows and signs."""
        return self._rows is not None

    @property
    def is_split(self) -> bool:
        """True when masks come in complementary pairs [p0, 1 - p0, p1, 1 - p1, ...]."""
        return self._split

    def __len__(self) -> int:
        return self.m

    def __iter__(self) -> Iterator[npt.NDArray[np.uint8]]:
        return iter(self._masks)

    def __getitem__(self, key: Any) -> Any:
        """``ps[i]`` -> (H, W) read-only mask; ``ps[slice or index array]`` -> PatternSet.

        A sub-set keeps the per-mask Hadamard rows/signs and ``meta["per_mask"]`` entries, and
        records ``meta["selection"]``: the indices into the set the selection chain started
        from.  It is split only when it keeps whole complementary pairs in order.
        """
        if _is_int(key):
            return self._masks[int(key)]
        if isinstance(key, tuple):
            raise TypeError(
                "index a PatternSet with an int, a slice or a 1-D index/bool array; "
                "use .masks[...] for pixel access"
            )
        idx = np.arange(self.m)[key]
        if idx.ndim != 1:
            raise TypeError("PatternSet index arrays must be 1-D")
        if idx.size == 0:
            raise PatternError(f"selection {key!r} selects no masks; a PatternSet needs m >= 1")
        arr = np.ascontiguousarray(self._masks[idx])
        rows = None if self._rows is None else self._rows[idx].copy()
        signs = None if self._signs is None else self._signs[idx].copy()
        split = bool(
            self._split
            and idx.size % 2 == 0
            and np.all(idx[0::2] % 2 == 0)
            and np.all(idx[1::2] == idx[0::2] + 1)
        )
        meta = self.meta
        per_mask = meta.get("per_mask")
        if isinstance(per_mask, dict):
            meta["per_mask"] = {
                k: ([v[i] for i in idx] if isinstance(v, list) and len(v) == self.m else v)
                for k, v in per_mask.items()
            }
        prev = meta.get("selection")
        if isinstance(prev, list) and len(prev) == self.m:
            meta["selection"] = [prev[i] for i in idx]
        else:
            meta["selection"] = idx.tolist()
        meta["split"] = split
        return PatternSet._trusted(arr, self._name, meta, rows, signs, split)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatternSet):
            return NotImplemented
        return self._masks.shape == other._masks.shape and bool(
            np.array_equal(self._masks, other._masks)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        tags = []
        if self._rows is not None:
            tags.append("hadamard")
        if self._split:
            tags.append("split")
        extra = "".join(f", {t}" for t in tags)
        h, w = self.shape
        return f"PatternSet(name={self._name!r}, m={self.m}, shape=({h}, {w}){extra})"

    # -- derived sets and values -----------------------------------------------------------

    def complementary(self) -> PatternSet:
        """Interleave every mask with its complement: ``[p0, 1 - p0, p1, 1 - p1, ...]``.

        Returns
        -------
        PatternSet
            2m masks, ``is_split`` True.  Hadamard rows are repeated and signs negated for the
            complements; ``meta["per_mask"]`` lists are repeated, ``meta["complementary"]``
            and ``meta["split"]`` are set.
        """
        m = self.m
        out = np.empty((2 * m, *self.shape), dtype=np.uint8)
        out[0::2] = self._masks
        np.bitwise_xor(self._masks, np.uint8(1), out=out[1::2])
        rows = signs = None
        if self._rows is not None and self._signs is not None:
            rows = np.repeat(self._rows, 2)
            signs = np.empty(2 * m, dtype=np.int8)
            signs[0::2] = self._signs
            signs[1::2] = -self._signs
        meta = self.meta
        per_mask = meta.get("per_mask")
        if isinstance(per_mask, dict):
            meta["per_mask"] = {
                k: ([x for x in v for _ in (0, 1)] if isinstance(v, list) and len(v) == m else v)
                for k, v in per_mask.items()
            }
        sel = meta.get("selection")
        if isinstance(sel, list) and len(sel) == m:
            meta["selection"] = [x for x in sel for _ in (0, 1)]
        meta["complementary"] = True
        meta["split"] = True
        return PatternSet._trusted(out, self._name, meta, rows, signs, True)

    def differential(self, values: npt.ArrayLike) -> np.ndarray:
        """Differential readings of a split set: ``values[..., 0::2] - values[..., 1::2]``.

        For a split Hadamard set this is ``h_k . x`` per pair (CONTRACTS.md).

        Parameters
        ----------
        values : array_like
            Readings (..., m) in any unit (e.g. volts), one per mask along the last axis.
            Integer and bool inputs are converted to float64.

        Returns
        -------
        numpy.ndarray
            (..., m // 2) in the unit of ``values``.

        Raises
        ------
        PatternError
            The set is not split, or the last axis is not of length m.
        """
        if not self._split:
            raise PatternError(
                f"differential() needs a split set of complementary pairs; {self._name!r} is "
                "not split (use PatternSet.hadamard(..., split=True) or .complementary())"
            )
        v = np.asarray(values)
        if v.ndim == 0 or v.shape[-1] != self.m:
            got = v.shape[-1] if v.ndim else "a scalar"
            raise PatternError(
                f"values must have the {self.m} readings of this set along the last axis "
                f"(an even count, one per mask); got {got}"
            )
        if v.dtype.kind not in "fc":
            v = v.astype(np.float64)
        return v[..., 0::2] - v[..., 1::2]

    # -- packing ---------------------------------------------------------------------------

    def pack(self) -> npt.NDArray[np.uint8]:
        """Bit-packed masks, uint8 (m, ceil(H*W / 8)), read-only; see :func:`pack_masks`.

        Computed once and kept (the set is immutable), so kernels can call it freely.
        """
        packed = getattr(self, "_packed", None)
        if packed is None:
            packed = np.packbits(self._masks.reshape(self.m, -1), axis=1, bitorder="little")
            packed.flags.writeable = False
            object.__setattr__(self, "_packed", packed)
        return packed

    def digest(self) -> str:
        """SHA-256 (hex) of the masks: their ``(m, H, W)`` and bit-packed pixels (names and
        provenance do not count; the same masks give the same digest).  Computed once."""
        digest = getattr(self, "_digest", None)
        if digest is None:
            import hashlib

            h = hashlib.sha256(repr((self.m, tuple(self.shape))).encode())
            h.update(self.pack().tobytes())
            digest = h.hexdigest()
            object.__setattr__(self, "_digest", digest)
        return digest

    @classmethod
    def unpack(
        cls,
        packed: npt.ArrayLike,
        shape: int | tuple[int, int],
        name: str = "unpacked",
        meta: Mapping[str, Any] | None = None,
    ) -> PatternSet:
        """PatternSet from bit-packed masks (inverse of :meth:`pack`, see :func:`unpack_masks`).

        Parameters
        ----------
        packed : array_like
            uint8 (m, ceil(H*W / 8)).
        shape : int or (int, int)
            Mask shape (H, W) in pixels.
        name : str
            Name of the new set.
        meta : dict or None
            Provenance.

        Returns
        -------
        PatternSet
        """
        return cls._trusted(unpack_masks(packed, shape), name, meta)

    # -- DMD -------------------------------------------------------------------------------

    def to_dmd(self, superpixel: int | None = None, diamond: bool = False) -> np.ndarray:
        """The masks placed on the DLP4500 array, uint8 (m, 1140, 912); see :func:`place_on_dmd`.

        Parameters
        ----------
        superpixel : int or None
            Micromirror columns per mask pixel; None: the largest that fits.
        diamond : bool
            Use ``s`` columns x ``2 s`` rows per mask pixel (physically square).

        Returns
        -------
        numpy.ndarray
        """
        return place_on_dmd(self._masks, superpixel, diamond)

    def to_dlp_frames(self, superpixel: int | None = None, diamond: bool = False) -> np.ndarray:
        """24-bit RGB video frames carrying the masks, uint8 (ceil(m/24), 1140, 912, 3).

        Mask ``k`` is placed with :func:`place_on_dmd` and stored at the bitplane given by
        :func:`bitplane_of` (frame ``k // 24``; G0-G7, R0-R7, B0-B7).  Built one frame at a
        time, so memory stays at one frame's 24 DMD patterns.

        Parameters
        ----------
        superpixel : int or None
            Micromirror columns per mask pixel; None: the largest that fits.
        diamond : bool
            Use ``s`` columns x ``2 s`` rows per mask pixel.

        Returns
        -------
        numpy.ndarray
        """
        s = superpixel_for(self.shape, diamond) if superpixel is None else superpixel
        nf = -(-self.m // DLP_BITPLANES_PER_FRAME)
        frames = np.empty((nf, DMD_ROWS, DMD_COLUMNS, 3), dtype=np.uint8)
        for f in range(nf):
            chunk = self._masks[f * DLP_BITPLANES_PER_FRAME : (f + 1) * DLP_BITPLANES_PER_FRAME]
            frames[f] = pack_dlp_frames(place_on_dmd(chunk, s, diamond))[0]
        return frames

    # -- files -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the set to an ``.npz`` file that :meth:`load` reads back exactly.

        Keys: ``masks`` (uint8 m x H x W), ``meta`` (JSON string), ``name``, ``split`` and,
        for Hadamard sets, ``hadamard_rows`` and ``hadamard_signs``.  Compressed.  The file
        is written atomically (temporary file, ``fsync``, rename): a crash or a full disk
        leaves the previous file intact.

        Parameters
        ----------
        path : str or path-like
            Target file; ``.npz`` is appended when missing.
        overwrite : bool
            When False an existing file is refused (:class:`~lsi_hw.errors.ConfigError`).

        Returns
        -------
        pathlib.Path
            The file written.
        """
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")
        arrays: dict[str, np.ndarray] = {
            "masks": self._masks,
            "meta": np.array(self._meta_json),
            "name": np.array(self._name),
            "split": np.array(self._split),
        }
        if self._rows is not None and self._signs is not None:
            arrays["hadamard_rows"] = self._rows
            arrays["hadamard_signs"] = self._signs
        from lsi_hw.atomic import atomic_write

        return atomic_write(p, lambda fh: np.savez_compressed(fh, **arrays),
                            overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatternSet:
        """Read masks from ``.npy`` (one array) or ``.npz`` (key ``masks``, else its only array).

        Files written by :meth:`save` come back with name, meta, Hadamard info and split flag.

        Parameters
        ----------
        path : str or path-like
            ``.npy`` or ``.npz`` file.

        Returns
        -------
        PatternSet

        Raises
        ------
        PatternError
            Missing/unreadable file, wrong suffix, ambiguous ``.npz`` (the message names the
            keys found), or invalid masks; the message names the path.
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise PatternError(
                f"{p}: cannot load masks from a {suffix or 'suffix-less'} file; "
                "use a .npy or .npz file"
            )
        if not p.is_file():
            raise PatternError(f"{p}: no such file")
        name = p.stem
        meta: dict[str, Any] = {"generator": "loaded", "source": str(p)}
        rows = signs = None
        split = False
        from lsi_hw.limits import READ_ERRORS, check_allocation, npz_headers

        try:  # shapes from the headers first: a corrupt file or a zip bomb is refused here
            headers = npz_headers(p)
            check_allocation(sum(h.nbytes for h in headers.values()), f"loading {p}")
        except ConfigError as exc:
            raise PatternError(str(exc)) from None
        try:
            loaded = np.load(p, allow_pickle=False)
        except READ_ERRORS as exc:
            raise PatternError(f"{p}: not a readable numpy {suffix} file ({exc})") from None
        try:
            if isinstance(loaded, np.ndarray):
                masks = loaded
            else:
                with loaded as z:
                    keys = list(z.files)
                    if "masks" in keys:
                        key = "masks"
                    elif len(keys) == 1:
                        key = keys[0]
                    else:
                        raise PatternError(
                            f"{p}: cannot tell which array holds the masks: keys found "
                            f"{keys}; store them under the key 'masks'"
                        )
                    masks = z[key]
                    if "meta" in keys:
                        meta = json.loads(str(z["meta"][()]))
                        if not isinstance(meta, dict):
                            raise PatternError(f"{p}: 'meta' is not a JSON object")
                    if "name" in keys:
                        name = str(z["name"][()])
                    if "split" in keys:
                        split = bool(z["split"][()])
                    if "hadamard_rows" in keys or "hadamard_signs" in keys:
                        rows = z["hadamard_rows"] if "hadamard_rows" in keys else None
                        signs = z["hadamard_signs"] if "hadamard_signs" in keys else None
            return cls(masks, name, meta, hadamard_rows=rows, hadamard_signs=signs, split=split)
        except PatternError as exc:
            msg = str(exc)
            if msg.startswith(f"{p}:"):
                raise
            raise PatternError(f"{p}: {msg}") from None
        except READ_ERRORS as exc:
            raise PatternError(f"{p}: could not read the masks ({exc})") from None

    # -- generators ------------------------------------------------------------------------

    @classmethod
    def hadamard(
        cls,
        n_side: int,
        m: int | None = None,
        order: str = "sequency",
        split: bool = False,
        seed: int | np.random.Generator | None = None,
    ) -> PatternSet:
        """Walsh-Hadamard masks of ``n_side x n_side`` pixels, ``(1 + h_k)/2`` per row ``k``.

        Row ``k`` of the natural-order matrix of size ``n = n_side**2`` is
        ``H[k, p] = (-1) ** popcount(k & p)`` with ``p = row * n_side + col``.  Only the
        ``m`` rows needed are generated (from the separable form ``H_N kron H_N``), so
        ``n_side = 256`` is fine.

        Parameters
        ----------
        n_side : int
            Mask side in pixels, a power of two >= 2.
        m : int or None
            Number of Hadamard rows, 1..n (default n): the first m of the ordering.
        order : {"natural", "sequency", "cake-cutting", "random"}
            Ordering of the rows, see :func:`hadamard_order`.
        split : bool
            If True, each row gives the pair ``(1 + h)/2, (1 - h)/2`` (2m masks, interleaved);
            :meth:`differential` then recovers ``h_k . x``.
        seed : int, numpy.random.Generator or None
            Required for ``order="random"``; ignored (not recorded) for the other orders.

        Returns
        -------
        PatternSet
            With ``hadamard_rows``/``hadamard_signs`` and meta ``{"generator": "hadamard",
            "n_side", "m", "order", "split", "seed"}``.

        Raises
        ------
        ConfigError
            Bad ``n_side``, ``m``, ``order``, a non-bool ``split`` (e.g. a seed passed
            positionally) or a missing seed for ``order="random"``.
        """
        n_side = _check_n_side(n_side)
        n = n_side * n_side
        m = n if m is None else _check_count(m, f"m (for n_side={n_side}, n = {n})", 1, n)
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
        arr = _hadamard_masks(n_side, rows, signs)
        meta = {
            "generator": "hadamard",
            "n_side": n_side,
            "m": m,
            "order": order,
            "split": bool(split),
            "seed": _seed_for_meta(seed) if order == "random" else None,
        }
        name = f"hadamard{n_side}-{order}" + ("-split" if split else "")
        return cls._trusted(arr, name, meta, rows, signs, bool(split))

    @classmethod
    def random(
        cls,
        m: int,
        shape: int | tuple[int, int],
        p: float = 0.5,
        seed: int | np.random.Generator | None = None,
    ) -> PatternSet:
        """Bernoulli(p) random masks.

        Parameters
        ----------
        m : int
            Number of masks, >= 1.
        shape : int or (int, int)
            Mask shape (H, W) in pixels (an int means square).
        p : float
            Probability that a pixel is 1 (mirror on), 0 < p < 1.
        seed : int, numpy.random.Generator or None
            Random source; the same int gives the same masks.

        Returns
        -------
        PatternSet
            meta ``{"generator": "random", "m", "shape", "p", "seed"}``.
        """
        m = _check_count(m, "m", 1)
        h, w = _parse_shape(shape)
        try:
            pf = float(p)
        except (TypeError, ValueError):
            raise ConfigError(f"p must be a number with 0 < p < 1; got {p!r}") from None
        if not (0.0 < pf < 1.0):
            raise ConfigError(f"p must satisfy 0 < p < 1 (probability of a 1); got {p!r}")
        rng = _rng(seed)
        arr = (rng.random((m, h, w)) < pf).view(np.uint8)
        meta = {
            "generator": "random",
            "m": m,
            "shape": [h, w],
            "p": pf,
            "seed": _seed_for_meta(seed),
        }
        return cls._trusted(np.ascontiguousarray(arr), f"random{h}x{w}-p{pf:g}", meta)

    @classmethod
    def fourier(
        cls,
        shape: int | tuple[int, int],
        m: int,
        phases: int = 4,
        seed: int | np.random.Generator | None = None,
    ) -> PatternSet:
        """Binarized phase-shifted Fourier basis, low spatial frequencies first.

        For each spatial frequency ``(fx, fy)`` (cycles per image along columns / rows; one
        of each conjugate pair ``(fx, fy) ~ (-fx, -fy)``, ordered by radius in cycles per
        pixel, then ``fy``, then ``fx``) the family of ``phases`` masks
        ``cos(2 pi (fx x / W + fy y / H) + 2 pi j / phases) >= 0`` for ``j = 0..phases-1``,
        ``x`` = column, ``y`` = row (pixels).  The sign test is done in exact integer
        arithmetic, so values exactly 0 (e.g. at a quarter period) map to 1 on every
        platform.  Note the DC family is constant (all-1 or all-0 masks).

        Parameters
        ----------
        shape : int or (int, int)
            Mask shape (H, W) in pixels (an int means square).
        m : int
            Total number of masks: a multiple of ``phases``, at most ``phases`` times the
            number of distinct frequencies.
        phases : {3, 4}
            Phase steps per frequency.
        seed : int, numpy.random.Generator or None
            Unused (the set is deterministic); accepted for a uniform generator signature.

        Returns
        -------
        PatternSet
            meta ``{"generator": "fourier", "shape", "m", "phases", "per_mask": {"fx", "fy",
            "phase"}}`` with ``fx``, ``fy`` (int, cycles per image) and ``phase`` (radians)
            for every mask.

        Raises
        ------
        ConfigError
            Bad shape, ``phases`` not 3/4, ``m`` not a positive multiple of ``phases`` or too
            large.
        """
        h, w = _parse_shape(shape)
        if not _is_int(phases) or int(phases) not in (3, 4):
            raise ConfigError(f"phases must be 3 or 4; got {phases!r}")
        phases = int(phases)
        m = _check_count(m, "m", 1)
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
            "seed": _seed_for_meta(seed),
            "per_mask": {
                "fx": np.repeat(fx, phases).tolist(),
                "fy": np.repeat(fy, phases).tolist(),
                "phase": phase_rad * nfam,
            },
        }
        return cls._trusted(arr.reshape(m, h, w), f"fourier{h}x{w}-{phases}step", meta)


def _restore(
    masks: np.ndarray,
    name: str,
    meta_json: str,
    rows: np.ndarray | None,
    signs: np.ndarray | None,
    split: bool,
) -> PatternSet:
    """Unpickle helper (the pickled data came from a valid PatternSet)."""
    obj = PatternSet.__new__(PatternSet)
    arr = np.array(masks, dtype=np.uint8, order="C", copy=True)
    r = None if rows is None else np.array(rows, dtype=np.int64, copy=True)
    s = None if signs is None else np.array(signs, dtype=np.int8, copy=True)
    obj._init(arr, name, meta_json, r, s, split)
    return obj
