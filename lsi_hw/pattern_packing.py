"""Bit packing of masks, their placement on the DLP4500 micromirror array, and the 24-bit
video frames that carry 24 binary patterns each.

Packing
    :func:`pack_masks` / :func:`unpack_masks`: one bit per pixel, pixel ``p = row * W + col``
    is bit ``p % 8`` (LSB first) of byte ``p // 8``; trailing bits are 0.

DMD mapping
    :func:`place_on_dmd` puts each mask pixel on a block ("superpixel") of micromirrors of the
    DLP4500 array (912 columns x 1140 rows, diamond layout), centred; :func:`take_from_dmd`
    reads them back; :func:`pack_dlp_frames` / :func:`unpack_dlp_frames` pack 24 binary
    patterns into one 24-bit RGB video frame in the DLPC350 bitplane order (G0-G7, R0-R7,
    B0-B7), :func:`bitplane_of` says where pattern ``k`` goes.

Every function takes a :class:`~lsi_hw.patterns.PatternSet` or an (m, H, W) array of 0/1.
This module imports only numpy and :mod:`lsi_hw.errors` / :mod:`lsi_hw.pattern_checks`
(layer rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lsi_hw.errors import ConfigError, PatternError, is_int
from lsi_hw.pattern_checks import check_count, parse_shape, validate_masks

__all__ = [
    "DLP_BITPLANES_PER_FRAME",
    "DMD_COLUMNS",
    "DMD_ROWS",
    "bitplane_of",
    "dmd_placement",
    "masks_from_dlp_frames",
    "pack_dlp_frames",
    "pack_masks",
    "place_on_dmd",
    "place_packed_frames",
    "superpixel_for",
    "take_from_dmd",
    "unpack_dlp_frames",
    "unpack_masks",
]

#: Micromirror columns of the DLP4500 array (TI ``PTN_WIDTH``).
DMD_COLUMNS: int = 912
#: Micromirror rows of the DLP4500 array (TI ``PTN_HEIGHT``); diamond layout, rows at half pitch.
DMD_ROWS: int = 1140
#: Binary patterns carried by one 24-bit video frame.
DLP_BITPLANES_PER_FRAME: int = 24

# Bitplane groups of a 24-bit frame in DLPC350 order (BITPLANE_G0 = 0, R0 = 8, B0 = 16) and the
# index of each group's channel in an RGB (R, G, B) pixel.
_GROUP_NAMES: tuple[str, str, str] = ("G", "R", "B")
_GROUP_TO_RGB: tuple[int, int, int] = (1, 0, 2)

_DMD_SHAPE: tuple[int, int] = (DMD_ROWS, DMD_COLUMNS)


# --------------------------------------------------------------------------------------------
# bit packing
# --------------------------------------------------------------------------------------------


def pack_masks(masks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Pack binary masks one bit per pixel (the layout in docs/architecture.md).

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
    a = validate_masks(masks)
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
    h, w = parse_shape(shape)
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
    return parse_shape(dmd_shape, "dmd_shape")


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
    h, w = parse_shape(shape)
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


def dmd_placement(shape: tuple[int, int], superpixel: int | None, diamond: bool,
                  dmd_shape: tuple[int, int] = _DMD_SHAPE) -> tuple[int, int, int, int]:
    """Where :func:`place_on_dmd` puts masks of ``shape``: ``(rows per pixel, columns per
    pixel, first row, first column)`` in mirrors.  ConfigError when ``superpixel`` is not
    an int >= 1 or does not fit (the message names the largest that fits)."""
    h, w = parse_shape(shape)
    rows, cols = _check_dmd_shape(dmd_shape)
    s_max = superpixel_for((h, w), diamond, dmd_shape=(rows, cols))
    rf = 2 if diamond else 1
    if superpixel is None:
        s = s_max
    else:
        s = check_count(superpixel, "superpixel", 1)
        if s > s_max:
            raise ConfigError(
                f"superpixel {s} does not fit: masks of shape ({h}, {w}) at {s} column(s) x "
                f"{s * rf} row(s) per pixel need {h * s * rf} rows x {w * s} columns, the DMD "
                f"has {rows} x {cols}; the largest superpixel that fits is {s_max}"
            )
    sr, sc = s * rf, s
    return sr, sc, (rows - h * sr) // 2, (cols - w * sc) // 2


def place_packed_frames(packed: npt.ArrayLike, superpixel: int | None = None,
                        diamond: bool = False, *,
                        dmd_shape: tuple[int, int] = _DMD_SHAPE) -> npt.NDArray[np.uint8]:
    """DMD-sized 24-bit frames from frames packed at mask resolution.

    ``place_packed_frames(pack_dlp_frames(masks, dmd_shape=None))`` equals
    ``pack_dlp_frames(place_on_dmd(masks))`` (placing repeats pixels and packing works per
    pixel, so the two commute), but only the frames' bytes are written: one pass over
    3 bytes per mirror instead of one per mirror and pattern.
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 4 or packed.shape[3] != 3:
        raise PatternError("packed frames must be uint8 (n_frames, H, W, 3), from "
                           f"pack_dlp_frames(masks, dmd_shape=None); got {packed.dtype} "
                           f"of shape {packed.shape}")
    nf, h, w, _ = packed.shape
    rows, cols = _check_dmd_shape(dmd_shape)
    sr, sc, r0, c0 = dmd_placement((h, w), superpixel, diamond, (rows, cols))
    out = np.zeros((nf, rows, cols, 3), dtype=np.uint8)
    line = np.repeat(packed, sc, axis=2).reshape(nf, h, 1, w * sc * 3)  # one mirror row
    blocks = out[:, r0 : r0 + h * sr, c0 : c0 + w * sc].reshape(nf, h, sr, w * sc * 3)
    blocks[...] = line  # a view of out: each block row repeated over its sr mirror rows
    return out


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
    a = validate_masks(masks)
    m, h, w = a.shape
    rows, cols = _check_dmd_shape(dmd_shape)
    if not is_int(fill) or int(fill) not in (0, 1):
        raise ConfigError(f"fill must be 0 or 1; got {fill!r}")
    sr, sc, r0, c0 = dmd_placement((h, w), superpixel, diamond, (rows, cols))
    bh, bw = h * sr, w * sc
    out = np.full((m, rows, cols), int(fill), dtype=np.uint8)
    block = np.broadcast_to(a.astype(np.uint8, copy=False)[:, :, None, :, None], (m, h, sr, w, sc))
    out[:, r0 : r0 + bh, c0 : c0 + bw] = block.reshape(m, bh, bw)
    return out


def _shown_placement(shape: tuple[int, int], superpixel: int | None, diamond: bool,
                     dmd_shape: tuple[int, int]) -> tuple[int, int, int, int, int]:
    """Placement of masks read back from the mirrors: ``(s, rows per pixel, columns per
    pixel, first row, first column)``; PatternError when they would not fit."""
    h, w = shape
    rows, cols = dmd_shape
    s = superpixel_for((h, w), diamond, dmd_shape=(rows, cols)) if superpixel is None else int(
        superpixel)
    sr, sc = s * (2 if diamond else 1), s
    r0, c0 = (rows - h * sr) // 2, (cols - w * sc) // 2
    if r0 < 0 or c0 < 0:
        raise PatternError(f"masks of shape {shape} at superpixel {s} exceed the array")
    return s, sr, sc, r0, c0


def _uneven_blocks(k: int, shape: Any, s: int, sr: int, sc: int, diamond: bool
                   ) -> PatternError:
    """The error for mask ``k`` whose mirrors disagree within a block."""
    return PatternError(f"DMD mask {k} is not made of uniform {sr}x{sc} blocks at this "
                        f"placement (shape {shape}, superpixel {s}, diamond={diamond})")


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
    h, w = parse_shape(shape)
    s, sr, sc, r0, c0 = _shown_placement((h, w), superpixel, diamond, (rows, cols))
    blocks = arr[:, r0 : r0 + h * sr, c0 : c0 + w * sc].reshape(m, h, sr, w, sc)
    first = blocks[:, :, 0, :, 0]
    uneven = (blocks != first[:, :, None, :, None]).any(axis=(1, 2, 3, 4))
    if uneven.any():
        raise _uneven_blocks(int(np.argmax(uneven)), shape, s, sr, sc, diamond)
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
    k = check_count(k, "pattern index k", 0)
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
    a = validate_masks(dmd_masks, "dmd_masks")
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


def _check_frames(frames: npt.ArrayLike, m: Any,
                  dmd_shape: tuple[int, int] | None) -> tuple[np.ndarray, int]:
    """Frames as a uint8 (n_frames, rows, cols, 3) array and m as an int, or PatternError."""
    f = np.asarray(frames)
    if f.dtype != np.uint8:
        raise PatternError(f"frames must be uint8 (24-bit RGB); got dtype {f.dtype}")
    if f.ndim != 4 or f.shape[3] != 3:
        raise PatternError(
            f"frames must have shape (n_frames, rows, columns, 3); got shape {f.shape}"
        )
    nf, rows, cols, _ = f.shape
    _check_frame_dims(rows, cols, dmd_shape, "frames")
    if not is_int(m) or int(m) < 1:
        raise PatternError(f"m (number of patterns) must be an int >= 1; got {m!r}")
    m = int(m)
    need = -(-m // DLP_BITPLANES_PER_FRAME)
    if nf != need:
        raise PatternError(
            f"{m} patterns are carried by {need} frame(s) of 24 bitplanes; got {nf} frame(s)"
        )
    return f, m


def masks_from_dlp_frames(
    frames: npt.ArrayLike,
    m: int,
    shape: tuple[int, int],
    superpixel: int | None = None,
    diamond: bool = False,
    *,
    dmd_shape: tuple[int, int] | None = _DMD_SHAPE,
) -> npt.NDArray[np.uint8]:
    """``take_from_dmd(unpack_dlp_frames(frames, m), shape, superpixel, diamond)`` in one
    pass over the packed frames: the (m, H, W) masks the frames show.

    The block check runs on the packed bytes (24 patterns per pixel at once) and only the
    first mirror of each block is unpacked, so a load of DMD-sized frames costs a few
    milliseconds instead of unpacking m full-size planes.  Same results and errors as the
    two-step path.
    """
    f, m = _check_frames(frames, m, dmd_shape)
    nf, rows, cols, _ = f.shape
    h, w = parse_shape(shape)
    s, sr, sc, r0, c0 = _shown_placement((h, w), superpixel, diamond, (rows, cols))
    region = f[:, r0 : r0 + h * sr, c0 : c0 + w * sc]  # (nf, h * sr, w * sc, 3), a view
    lines = region.reshape(nf, h, sr, w * sc * 3)  # mirror rows, grouped by block row
    top = lines[:, :, 0].reshape(nf, h, w, sc, 3)  # the first mirror row of each block
    first = top[:, :, :, 0]  # (nf, h, w, 3): each block's first mirror, 24 bits
    if sr > 1 or sc > 1:
        # Every mirror equals its block's first one iff every mirror row equals the
        # block's top row and the top row is uniform across each block; the bits that
        # differ are the same either way.  Both checks run over long contiguous rows.
        bits = np.zeros((nf, 3), dtype=np.uint8)
        if sr > 1:
            rows_differ = np.bitwise_or.reduce(lines[:, :, 1:] ^ lines[:, :, :1], axis=2)
            bits |= np.bitwise_or.reduce(rows_differ.reshape(nf, -1, 3), axis=1)
        if sc > 1:
            cols_differ = np.bitwise_or.reduce(top[:, :, :, 1:] ^ top[:, :, :, :1], axis=3)
            bits |= np.bitwise_or.reduce(cols_differ.reshape(nf, -1, 3), axis=1)
        for k in range(m):
            frame, b = divmod(k, DLP_BITPLANES_PER_FRAME)
            if (bits[frame, _GROUP_TO_RGB[b // 8]] >> (b % 8)) & 1:
                raise _uneven_blocks(k, shape, s, sr, sc, diamond)
    return unpack_dlp_frames(first, m, dmd_shape=None)  # frames at mask resolution


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
    f, m = _check_frames(frames, m, dmd_shape)
    nf, rows, cols, _ = f.shape
    out = np.empty((nf * DLP_BITPLANES_PER_FRAME, rows, cols), dtype=np.uint8)
    planes = out.reshape(nf, 3, 8, rows, cols)
    for g, ch in enumerate(_GROUP_TO_RGB):
        chan = f[..., ch]
        for b in range(8):
            np.bitwise_and(chan >> np.uint8(b), np.uint8(1), out=planes[:, g, b])
    return out[:m]
