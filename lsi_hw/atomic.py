"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object],
                 mode: str = "wb", encoding: str | None = None) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder,
    ``fsync`` it and ``os.replace`` it onto ``path``; the temporary file is removed on any
    error (the previous ``path``, if any, is untouched).

    Parameters
    ----------
    path : str or PathLike
        Final file name (its folder must exist).
    write : callable
        Writes the content to the open file object it is given.
    mode : str
        ``"wb"`` (binary) or ``"w"`` (text).
    encoding : str or None
        Text encoding for ``mode="w"`` (default UTF-8).

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent if str(target.parent) else ".")
    try:
        text_encoding = (encoding or "utf-8") if "b" not in mode else None
        with os.fdopen(fd, mode, encoding=text_encoding) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
