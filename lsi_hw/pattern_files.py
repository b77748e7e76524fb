"""The mask-set files: ``.npz`` files written by :meth:`lsi_hw.patterns.PatternSet.save`
and the ``.npy`` / ``.npz`` files :meth:`~lsi_hw.patterns.PatternSet.load` reads.

Keys of a saved set: ``masks`` (uint8 m x H x W), ``meta`` (JSON string), ``name``,
``split`` and, for Hadamard sets, ``hadamard_rows`` and ``hadamard_signs``; compressed and
written atomically (:func:`lsi_hw.atomic.atomic_write`).  Reading checks the array headers
and the memory the arrays need before inflating anything (:mod:`lsi_hw.limits`), never
loads pickles, and turns every failure into one :class:`~lsi_hw.errors.PatternError` that
names the file.

This module imports only numpy and :mod:`lsi_hw.errors`, and lazily :mod:`lsi_hw.atomic` /
:mod:`lsi_hw.limits` (layer rule).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lsi_hw.errors import ConfigError, PatternError

__all__ = ["read_mask_file", "write_mask_file"]

T = TypeVar("T")


def write_mask_file(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], *,
                    overwrite: bool = True) -> Path:
    """Write ``arrays`` to the compressed ``.npz`` file ``path`` (``.npz`` appended when
    missing), atomically; an existing file is refused when ``overwrite`` is False
    (:class:`~lsi_hw.errors.ConfigError`).  Returns the file written."""
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    from lsi_hw.atomic import atomic_write

    return atomic_write(p, lambda fh: np.savez_compressed(fh, **arrays),
                        overwrite=overwrite)


def read_mask_file(path: str | os.PathLike[str],
                   build: Callable[[Any, str, dict[str, Any], Any, Any, bool], T]) -> T:
    """Read masks from ``.npy`` (one array) or ``.npz`` (key ``masks``, else its only array)
    and return ``build(masks, name, meta, hadamard_rows, hadamard_signs, split)``.

    ``name`` is the file's stem and ``meta`` ``{"generator": "loaded", "source": path}``
    unless the file holds ``name`` / ``meta``; the Hadamard rows and signs are None unless
    the file holds them, ``split`` False unless it holds it.  ``build`` runs inside the error
    handling: a PatternError it raises is given the path too.

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
        return build(masks, name, meta, rows, signs, split)
    except PatternError as exc:
        msg = str(exc)
        if msg.startswith(f"{p}:"):
            raise
        raise PatternError(f"{p}: {msg}") from None
    except READ_ERRORS as exc:
        raise PatternError(f"{p}: could not read the masks ({exc})") from None
