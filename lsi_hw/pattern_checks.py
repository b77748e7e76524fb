"""Argument checks shared by the pattern modules: mask stacks, shapes, counts and seeds.

:func:`validate_masks` checks that an array is an (m, H, W) stack of exactly 0/1;
:func:`parse_shape`, :func:`check_count`, :func:`rng_from_seed` and :func:`seed_for_meta`
check the arguments of the generators and of the packing functions.  Every failure is a
:class:`~lsi_hw.errors.PatternError` (masks) or :class:`~lsi_hw.errors.ConfigError`
(settings) whose message names the value and what is allowed.

:class:`CheckedMasks` is the base of :class:`lsi_hw.patterns.PatternSet`: an object whose
``masks`` are already checked, which :func:`validate_masks` passes through unchanged (this
module cannot import ``patterns``, which is built on it).

This module imports only numpy and :mod:`lsi_hw.errors` (layer rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lsi_hw.errors import ConfigError, PatternError, is_int

__all__ = [
    "CheckedMasks",
    "check_count",
    "parse_shape",
    "rng_from_seed",
    "seed_for_meta",
    "validate_masks",
]


class CheckedMasks:
    """Base of the objects that hold an already validated mask stack in ``masks``: a
    read-only C-contiguous ``uint8`` array (m, H, W) of 0/1 (:class:`PatternSet`)."""

    __slots__ = ()

    @property
    def masks(self) -> npt.NDArray[np.uint8]:
        """The checked (m, H, W) uint8 masks (defined by the subclass)."""
        raise NotImplementedError


def _loc(a: np.ndarray, flat: int) -> tuple[int, int, int]:
    k, r, c = np.unravel_index(int(flat), a.shape)
    return int(k), int(r), int(c)


def validate_masks(masks: Any, what: str = "masks") -> np.ndarray:
    """Check that ``masks`` is an (m, H, W) array of exactly 0/1 and return it as an array.

    The returned array is ``uint8`` or ``bool`` (no copy when the input already is one) or a
    new ``uint8`` array; callers that keep it must copy it.  A :class:`CheckedMasks` (a
    PatternSet) gives its own read-only ``masks``.
    """
    if isinstance(masks, CheckedMasks):
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


def parse_shape(shape: Any, what: str = "shape") -> tuple[int, int]:
    """(H, W) from an int (square) or a pair of ints >= 1, else ConfigError."""
    if is_int(shape):
        h = w = int(shape)
    else:
        try:
            h, w = shape
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} must be an int (square) or a pair (H, W) of ints; got {shape!r}"
            ) from None
        if not (is_int(h) and is_int(w)):
            raise ConfigError(f"{what} must hold ints; got {shape!r}")
        h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise ConfigError(f"{what} must be >= 1 pixel on each side; got {shape!r}")
    return h, w


def check_count(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    """An int in [lo, hi] (hi None: no upper bound), else ConfigError naming the value.

    The integer test is :func:`lsi_hw.errors.is_int`; the messages (``"{what} must be an
    int; got ..."``, ``"{what} must be in lo..hi; got ..."``) are the pattern modules' own,
    where ``what`` may be a phrase (``"m (for n_side=8, n = 64)"``), so this is not
    :func:`lsi_hw.errors.require_int` (``"name=value must be an integer >= lo"``).
    """
    if not is_int(value):
        raise ConfigError(f"{what} must be an int; got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"{what} must be {rng}; got {v}")
    return v


def rng_from_seed(seed: Any) -> np.random.Generator:
    """The generator ``seed`` (a Generator is used as it is, None draws fresh entropy, a
    non-negative int seeds a new one), else ConfigError."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if not is_int(seed) or int(seed) < 0:
        raise ConfigError(
            f"seed must be None, a non-negative int or a numpy.random.Generator; got {seed!r}"
        )
    return np.random.default_rng(int(seed))


def seed_for_meta(seed: Any) -> int | str | None:
    """How ``seed`` is recorded in a set's provenance (``meta["seed"]``)."""
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return "numpy.random.Generator (state not recorded)"
    return int(seed)
