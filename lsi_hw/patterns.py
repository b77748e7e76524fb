"""Binary mask sets for the single-pixel camera: the validated, immutable :class:`PatternSet`.

A :class:`PatternSet` is an immutable, validated stack of ``m`` binary masks of ``H x W``
pixels (values exactly 0/1, stored as a read-only C-contiguous ``uint8`` array), with a name
and a JSON-serialisable provenance dict (``meta``).  Hadamard sets also record which rows of
the natural-order Walsh-Hadamard matrix they hold (``hadamard_rows``) and with which sign
(``hadamard_signs``), see ``docs/architecture.md``.

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

The set itself (validation, selections, derived sets) lives here; it is built on
:mod:`lsi_hw.pattern_checks` (argument and mask checks), :mod:`lsi_hw.pattern_families`
(the generators), :mod:`lsi_hw.pattern_packing` (packing and DMD mapping) and
:mod:`lsi_hw.pattern_files` (``.npy`` / ``.npz`` files).  Every name public here before the
split is still importable from ``lsi_hw.patterns`` (``__all__``).

This module imports only numpy, those four modules and :mod:`lsi_hw.errors` (layer rule).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsi_hw.errors import PatternError, is_int
from lsi_hw.pattern_checks import CheckedMasks, validate_masks
from lsi_hw.pattern_families import (
    HADAMARD_ORDERS,
    count_pieces,
    fourier_family,
    hadamard_family,
    hadamard_masks,
    hadamard_order,
    hadamard_packed_blocks,
    random_family,
    walsh_sequency,
)
from lsi_hw.pattern_files import read_mask_file, write_mask_file
from lsi_hw.pattern_meta import complemented_meta, meta_to_json, selected_meta
from lsi_hw.pattern_packing import (
    DLP_BITPLANES_PER_FRAME,
    DMD_COLUMNS,
    DMD_ROWS,
    bitplane_of,
    masks_from_dlp_frames,
    pack_dlp_frames,
    pack_masks,
    place_on_dmd,
    place_packed_frames,
    superpixel_for,
    take_from_dmd,
    unpack_dlp_frames,
    unpack_masks,
)

__all__ = [
    "DLP_BITPLANES_PER_FRAME",
    "DMD_COLUMNS",
    "DMD_ROWS",
    "HADAMARD_ORDERS",
    "LAZY_HADAMARD_BYTES",
    "PatternSet",
    "bitplane_of",
    "count_pieces",
    "hadamard_order",
    "masks_from_dlp_frames",
    "pack_dlp_frames",
    "pack_masks",
    "place_on_dmd",
    "superpixel_for",
    "take_from_dmd",
    "unpack_dlp_frames",
    "unpack_masks",
    "walsh_sequency",
]


LAZY_HADAMARD_BYTES = 1 << 26
"""Hadamard sets whose masks would take more than this many bytes (64 MiB) are lazy by
default (:meth:`PatternSet.hadamard`)."""


# --------------------------------------------------------------------------------------------
# PatternSet
# --------------------------------------------------------------------------------------------


class PatternSet(CheckedMasks):
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

    __slots__ = ("_digest", "_dims", "_masks", "_meta_json", "_name", "_packed", "_rows",
                 "_signs", "_split")

    _dims: tuple[int, int, int]
    _masks: np.ndarray | None
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
        a = validate_masks(masks)
        if isinstance(masks, PatternSet):
            arr = a
        else:
            arr = np.array(a, dtype=np.uint8, order="C", copy=True)
        rows, signs = self._check_hadamard(arr, hadamard_rows, hadamard_signs)
        if split:
            self._check_split(arr)
        self._init(arr, name, meta_to_json(meta), rows, signs, bool(split))

    # -- construction internals ------------------------------------------------------------

    def _init(
        self,
        arr: np.ndarray | None,
        name: str,
        meta_json: str,
        rows: np.ndarray | None,
        signs: np.ndarray | None,
        split: bool,
        dims: tuple[int, int, int] | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise PatternError(f"name must be a str; got {type(name).__name__}")
        if arr is None:  # a lazy Hadamard set: rows and signs define the masks
            if rows is None or signs is None or dims is None:
                raise PatternError("a lazy pattern set needs Hadamard rows, signs and dims")
            object.__setattr__(self, "_dims", tuple(int(d) for d in dims))
        else:
            arr.flags.writeable = False
            object.__setattr__(self, "_dims", tuple(int(d) for d in arr.shape))
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
        arr: np.ndarray | None,
        name: str,
        meta: Mapping[str, Any] | None,
        rows: np.ndarray | None = None,
        signs: np.ndarray | None = None,
        split: bool = False,
        dims: tuple[int, int, int] | None = None,
    ) -> PatternSet:
        """Wrap an owned, valid C-contiguous uint8 array without re-validating it (or, with
        ``arr=None``, valid Hadamard rows and signs of masks ``dims = (m, N, N)``)."""
        obj = cls.__new__(cls)
        obj._init(arr, name, meta_to_json(meta), rows, signs, split, dims)
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
        expected = hadamard_masks(h, r, s)
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
            (self._masks, self._name, self._meta_json, self._rows, self._signs, self._split,
             self._dims),
        )

    # -- basic properties ------------------------------------------------------------------

    @property
    def masks(self) -> npt.NDArray[np.uint8]:
        """Read-only C-contiguous uint8 array (m, H, W) of 0/1.

        A lazy Hadamard set (:attr:`is_lazy`) makes it on first access and keeps it; a set
        that would not fit in memory is refused with its size (``lsi_hw.limits``)."""
        if self._masks is None:
            from lsi_hw.limits import check_allocation

            m, h, w = self._dims
            check_allocation(float(m) * h * w, f"the masks of {self._name} ({m} x {h} x {w} "
                             "bytes; the FWHT path of the simulator never needs them)")
            assert self._rows is not None and self._signs is not None
            arr = hadamard_masks(h, self._rows, self._signs)
            arr.flags.writeable = False
            object.__setattr__(self, "_masks", arr)
            return arr
        return self._masks

    @property
    def is_lazy(self) -> bool:
        """True for a Hadamard set whose masks have not been made (only rows and signs are
        held: the whole 65536-mask set of 256 x 256 pixels takes 0.6 MB)."""
        return self._masks is None

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
        return self._dims[0]

    @property
    def shape(self) -> tuple[int, int]:
        """Mask shape (H, W) in pixels."""
        return self._dims[1], self._dims[2]

    @property
    def n_pixels(self) -> int:
        """Pixels per mask, H * W."""
        return self._dims[1] * self._dims[2]

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
        if self._masks is None:
            return (self[i] for i in range(self.m))
        return iter(self._masks)

    def __getitem__(self, key: Any) -> Any:
        """``ps[i]`` -> (H, W) read-only mask; ``ps[slice or index array]`` -> PatternSet.

        A sub-set keeps the per-mask Hadamard rows/signs and ``meta["per_mask"]`` entries, and
        records ``meta["selection"]``: the indices into the set the selection chain started
        from.  It is split only when it keeps whole complementary pairs in order.
        """
        if is_int(key):
            if self._masks is None:
                i = int(np.arange(self.m)[int(key)])  # IndexError like an array's
                assert self._rows is not None and self._signs is not None
                one = hadamard_masks(self.shape[0], self._rows[i:i + 1], self._signs[i:i + 1])[0]
                one.flags.writeable = False
                return one
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
        arr = None if self._masks is None else np.ascontiguousarray(self._masks[idx])
        rows = None if self._rows is None else self._rows[idx].copy()
        signs = None if self._signs is None else self._signs[idx].copy()
        split = bool(
            self._split
            and idx.size % 2 == 0
            and np.all(idx[0::2] % 2 == 0)
            and np.all(idx[1::2] == idx[0::2] + 1)
        )
        meta = selected_meta(self.meta, idx, self.m, split)
        return PatternSet._trusted(arr, self._name, meta, rows, signs, split,
                                   (int(idx.size), *self.shape))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatternSet):
            return NotImplemented
        if self._dims != other._dims:
            return False
        if (self._masks is None or other._masks is None) and self._rows is not None \
                and other._rows is not None:  # Hadamard masks are equal iff rows and signs are
            return bool(np.array_equal(self._rows, other._rows)
                        and np.array_equal(self._signs, other._signs))
        return bool(np.array_equal(self.masks, other.masks))

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
        out = None
        if self._masks is not None:
            out = np.empty((2 * m, *self.shape), dtype=np.uint8)
            out[0::2] = self._masks
            np.bitwise_xor(self._masks, np.uint8(1), out=out[1::2])
        rows = signs = None
        if self._rows is not None and self._signs is not None:
            rows = np.repeat(self._rows, 2)
            signs = np.empty(2 * m, dtype=np.int8)
            signs[0::2] = self._signs
            signs[1::2] = -self._signs
        meta = complemented_meta(self.meta, m)
        return PatternSet._trusted(out, self._name, meta, rows, signs, True,
                                   (2 * m, *self.shape))

    def differential(self, values: npt.ArrayLike) -> np.ndarray:
        """Differential readings of a split set: ``values[..., 0::2] - values[..., 1::2]``.

        For a split Hadamard set this is ``h_k . x`` per pair (docs/architecture.md).

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
        if packed is None and self._masks is None:
            from lsi_hw.limits import check_allocation

            check_allocation(self.m * -(-self.n_pixels // 8), f"packing {self._name}")
            packed = np.concatenate(list(self._blocks()))
            packed.flags.writeable = False
            object.__setattr__(self, "_packed", packed)
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
            if self._masks is None and getattr(self, "_packed", None) is None:
                for chunk in self._blocks():  # the same bytes, never all in memory
                    h.update(chunk.tobytes())
            else:
                h.update(self.pack().tobytes())
            digest = h.hexdigest()
            object.__setattr__(self, "_digest", digest)
        return digest

    def _blocks(self) -> Iterator[np.ndarray]:
        assert self._rows is not None and self._signs is not None
        return hadamard_packed_blocks(self.shape[0], self._rows, self._signs)

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
        return place_on_dmd(self.masks, superpixel, diamond)

    def to_dlp_frames(self, superpixel: int | None = None, diamond: bool = False) -> np.ndarray:
        """24-bit RGB video frames carrying the masks, uint8 (ceil(m/24), 1140, 912, 3).

        Mask ``k`` is placed with :func:`place_on_dmd` and stored at the bitplane given by
        :func:`bitplane_of` (frame ``k // 24``; G0-G7, R0-R7, B0-B7).  Packed at mask
        resolution, then each packed pixel is repeated over its block of mirrors
        (:func:`place_packed_frames`).

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
        packed = pack_dlp_frames(self.masks, dmd_shape=None)  # at mask resolution
        return place_packed_frames(packed, superpixel, diamond, dmd_shape=(DMD_ROWS, DMD_COLUMNS))

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
        arrays: dict[str, np.ndarray] = {
            "masks": self.masks,
            "meta": np.array(self._meta_json),
            "name": np.array(self._name),
            "split": np.array(self._split),
        }
        if self._rows is not None and self._signs is not None:
            arrays["hadamard_rows"] = self._rows
            arrays["hadamard_signs"] = self._signs
        return write_mask_file(path, arrays, overwrite=overwrite)

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

        def build(masks: Any, name: str, meta: dict[str, Any], rows: Any, signs: Any,
                  split: bool) -> PatternSet:
            return cls(masks, name, meta, hadamard_rows=rows, hadamard_signs=signs, split=split)

        return read_mask_file(path, build)

    # -- generators ------------------------------------------------------------------------

    @classmethod
    def hadamard(
        cls,
        n_side: int,
        m: int | None = None,
        order: str = "sequency",
        split: bool = False,
        seed: int | np.random.Generator | None = None,
        lazy: bool | None = None,
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
        lazy : bool or None
            Hold only the rows and signs and make masks when asked (:attr:`masks`, indexing,
            :meth:`pack`, :meth:`digest` in blocks); the simulator projects a Hadamard set
            through the fast Walsh-Hadamard transform without them.  Default (None): lazy
            when the masks would take more than :data:`LAZY_HADAMARD_BYTES`.

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
        if lazy is None:
            side = int(n_side) if is_int(n_side) else 0
            count = (int(m) if is_int(m) else side * side) * (2 if split is True else 1)
            lazy = float(count) * side * side > LAZY_HADAMARD_BYTES
        family = hadamard_family(n_side, m, order, split, seed, lazy=bool(lazy))
        rows = family.hadamard_rows
        assert rows is not None
        side = int(family.meta["n_side"])
        return cls._trusted(*family, dims=(int(rows.size), side, side))

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
        return cls._trusted(*random_family(m, shape, p, seed))

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
        return cls._trusted(*fourier_family(shape, m, phases, seed))


def _restore(
    masks: np.ndarray | None,
    name: str,
    meta_json: str,
    rows: np.ndarray | None,
    signs: np.ndarray | None,
    split: bool,
    dims: tuple[int, int, int] | None = None,
) -> PatternSet:
    """Unpickle helper (the pickled data came from a valid PatternSet)."""
    obj = PatternSet.__new__(PatternSet)
    arr = None if masks is None else np.array(masks, dtype=np.uint8, order="C", copy=True)
    r = None if rows is None else np.array(rows, dtype=np.int64, copy=True)
    s = None if signs is None else np.array(signs, dtype=np.int8, copy=True)
    obj._init(arr, name, meta_json, r, s, split, dims)
    return obj
