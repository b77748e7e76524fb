"""The projection paths: input checks, data layouts and block sizes around the numba kernels.

``y[b, k] = sum_p mask_k[p] * x[b, p]`` for bit-packed masks (pixel ``p`` is bit ``p % 8``
of byte ``p // 8``), by one of the paths described in :mod:`lsi_hw.sim.kernels`
(``bitplane``, ``lut8``, ``lut4``, ``blas``, ``fwht``).  :func:`execute` runs a named path;
choosing one is the planner's job (:mod:`lsi_hw.sim.kernels`, :mod:`lsi_hw.sim.autotune`).
Every path gives the same sums within float rounding, and exact integers for uint8 images.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from lsi_hw.errors import ConfigError
from lsi_hw.sim.numba_kernels import (
    CHUNK,
    bitplane_kernel,
    group_layout,
    hadamard_combine,
    lut_kernel,
    planes_layout,
    unpack_kernel,
)
from lsi_hw.sim.scratch import aligned_empty, scratch
from lsi_hw.sim.walsh import fwht_inplace

__all__ = [
    "PATHS",
    "Masks",
    "as_images",
    "as_masks",
    "batch_chunks",
    "execute",
    "image_kind",
    "lut_width",
    "run_bitplane",
    "run_blas",
    "run_fwht",
    "run_lut",
]

#: Names of the paths :func:`execute` runs.
PATHS: tuple[str, ...] = ("bitplane", "lut8", "lut4", "blas", "fwht")

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


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


@dataclass
class Masks:
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

    def head(self, k: int, packed: np.ndarray | None = None) -> Masks:
        """The first ``k`` masks (a smaller problem of the same kind, for timing).

        ``packed`` (k, nbytes) replaces the packed masks, e.g. stand-ins for a Hadamard set
        whose masks were never packed; by default the first ``k`` rows of :meth:`packed`
        (Hadamard sets without ``packed`` keep only their rows and signs).
        """
        rows = None if self.rows is None else self.rows[:k]
        signs = None if self.signs is None else self.signs[:k]
        if packed is None and rows is None:
            packed = self.packed()[:k]
        return Masks(k, self.nbytes, self.shape, None, packed, rows, signs)


def is_pattern_set(obj: Any) -> bool:
    """Whether ``obj`` looks like a :class:`~lsi_hw.patterns.PatternSet`."""
    return hasattr(obj, "pack") and hasattr(obj, "hadamard_rows")


def as_masks(masks: Any) -> Masks:
    """Validate ``masks`` (PatternSet-like or packed uint8 array)."""
    if is_pattern_set(masks):
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
        return Masks(m, -(-(h * w) // 8), (h, w), masks, None, rows, signs)
    if isinstance(masks, np.ndarray):
        if masks.dtype != np.uint8 or masks.ndim != 2:
            raise ConfigError(
                "packed masks must be a uint8 array (m, ceil(n / 8)) from PatternSet.pack() "
                f"(np.packbits(..., bitorder='little')); got {masks.dtype} {masks.shape}"
            )
        return Masks(int(masks.shape[0]), int(masks.shape[1]), None, None, masks)
    raise ConfigError(
        "masks must be a PatternSet or a packed uint8 array (m, ceil(n / 8)); got "
        f"{type(masks).__name__}"
    )


def as_images(images: Any, mk: Masks) -> np.ndarray:
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


def image_kind(dtype: np.dtype) -> str:
    """The dtype class of images: "uint8", "float32" or "float64" (every other dtype)."""
    if dtype == np.uint8:
        return "uint8"
    if dtype == np.float32:
        return "float32"
    return "float64"


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def run_bitplane(packed: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    m, nb = packed.shape
    batch = x.shape[0]
    ftype = np.float64 if kind == "float64" else np.float32
    planes = aligned_empty((batch, 8, nb), ftype)
    planes_layout(np.ascontiguousarray(x), planes)
    acc = np.zeros((m, batch), dtype=np.float64)
    per_pass = _BITPLANE_PASS_BYTES // (batch * 8 * np.dtype(ftype).itemsize)
    chunk = int(min(CHUNK, max(256, per_pass - per_pass % 64)))
    bitplane_kernel(packed, planes, acc, ftype(0), chunk)
    return np.ascontiguousarray(acc.T, dtype=np.float32 if kind == "float32" else np.float64)


def lut_block(nbytes_per_chunk: int, bc: int, itemsize: int, nibble: bool) -> int:
    """Byte positions per table block."""
    row_bytes = (32 if nibble else 256) * bc * itemsize
    target = _LUT_TABLE_BYTES_NARROW if bc * itemsize <= 64 else _LUT_TABLE_BYTES
    return int(max(1, min(nbytes_per_chunk, target // row_bytes)))


def lut_width(bc: int, itemsize: int) -> int:
    """Images per table row, padded so that rows never straddle a 64-byte cache line."""
    per_line = 64 // itemsize
    if bc >= per_line:
        return -(-bc // per_line) * per_line
    return 1 << (bc - 1).bit_length()


def batch_chunks(batch: int) -> list[tuple[int, int]]:
    n_chunks = -(-batch // _LUT_MAX_BATCH)
    edges = [(batch * i) // n_chunks for i in range(n_chunks + 1)]
    return list(itertools.pairwise(edges))


def run_lut(packed: np.ndarray, x: np.ndarray, kind: str, nibble: bool) -> np.ndarray:
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
    for b0, b1 in batch_chunks(batch):
        bc = b1 - b0
        width = lut_width(bc, itemsize)
        src = np.ascontiguousarray(x[b0:b1])
        if width > bc:
            src = np.concatenate([src, np.zeros((width - bc, src.shape[1]), src.dtype)])
        xg = scratch("lut-layout", (nb, 8, width), tdtype)
        group_layout(src, xg)
        part = aligned_empty((nch, m, width), tdtype, zero=True)
        block = lut_block(-(-nb // nch), width, itemsize, nibble)
        rows, values = (2 * block, 16) if nibble else (block, 256)
        tables = aligned_empty((nch, rows, values, width), tdtype)
        lut_kernel(packed, xg, part, tables, 4 if nibble else 8)
        total = part[0] if nch == 1 else part.sum(axis=0)
        out[b0:b1] = total[:, :bc].T
    return out


def run_blas(packed: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
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
        unpack_kernel(packed[k0:k1], blk)
        out[:, k0:k1] = xf @ blk[:, :n].T
    return out


def run_fwht(mk: Masks, x: np.ndarray, kind: str) -> np.ndarray:
    n = x.shape[1]
    if mk.rows is None or mk.signs is None:
        raise ConfigError(
            "method='fwht' needs a Hadamard PatternSet (hadamard_rows not None); "
            "use another method for these masks"
        )
    if n & (n - 1):
        raise ConfigError(f"the FWHT path needs a power-of-two pixel count; got {n}")
    ftype = np.float32 if kind == "float32" else np.float64
    coeff = scratch("fwht", x.shape, ftype)  # reused: no page faults on every call
    np.copyto(coeff, x, casting="unsafe")
    fwht_inplace(coeff)  # coeff[:, 0] = sum(x): row 0 of H is all ones
    out = np.empty((x.shape[0], mk.m), dtype=ftype if kind != "uint8" else np.float64)
    if hadamard_combine(coeff, mk.rows, mk.signs, out):
        raise ConfigError(
            f"hadamard_rows must be in 0..{n - 1} and hadamard_signs +1 or -1; got rows "
            f"{mk.rows.min()}..{mk.rows.max()}, signs {np.unique(mk.signs)}"
        )
    return out


def execute(method: str, mk: Masks, x: np.ndarray, kind: str) -> np.ndarray:
    """Run path ``method`` (one of :data:`PATHS`): (B, m) sums of the (B, n) images ``x``
    (already converted for ``kind``, see :func:`image_kind`) under the masks ``mk``."""
    if method == "fwht":
        return run_fwht(mk, x, kind)
    packed = mk.packed()
    if packed.shape != (mk.m, mk.nbytes):
        raise ConfigError(
            f"PatternSet.pack() returned shape {packed.shape}; expected {(mk.m, mk.nbytes)}"
        )
    if method == "bitplane":
        return run_bitplane(packed, x, kind)
    if method in ("lut8", "lut4"):
        return run_lut(packed, x, kind, nibble=method == "lut4")
    if method == "blas":
        return run_blas(packed, x, kind)
    raise ConfigError(f"unknown kernel {method!r}")

