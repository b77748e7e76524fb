"""Atomic file writes: a crash never leaves a half-written file under the final name.

Every file the toolkit writes goes through :func:`atomic_write`: the content goes to a
temporary file in the destination folder, is ``fsync``-ed, and is renamed onto the final
name (``os.replace``, atomic on POSIX); the folder is then ``fsync``-ed so the new name is
durable too.  A full disk, a crash or ``kill -9`` leaves either the old file or the new
one, never a mix.  The file gets the permissions an ordinary ``open()`` would give it
(``0o666`` less the process umask), not the ``0o600`` of a bare ``mkstemp``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lsi_hw.errors import ConfigError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "fsync_dir",
    "make_private_dir",
]


def current_umask() -> int:
    """The process umask: read from ``/proc/self/status`` where Linux offers it (nothing
    changes), else by setting and restoring it (a moment in which another thread's new
    files would get 0o022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """``fsync`` a folder so the names created or renamed in it are durable (best effort
    where the file system refuses to sync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without folder handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def make_private_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """``mkdtemp`` in ``parent``, then give the folder the permissions an ordinary
    ``mkdir`` would (``0o777`` less the umask) instead of ``mkdtemp``'s ``0o700``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object],
                 mode: str = "wb", encoding: str | None = None, *,
                 overwrite: bool = True) -> Path:
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
    overwrite : bool
        When False, an existing ``path`` is refused with :class:`ConfigError` before
        anything is written (checked again just before the rename).

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise ConfigError(f"{target} exists; refusing to replace it (use --force)")
    if target.is_dir():
        raise ConfigError(f"{target} is a folder, not a file")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{target}: the folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write in {folder} "
                          f"({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        text_encoding = (encoding or "utf-8") if "b" not in mode else None
        with os.fdopen(fd, mode, encoding=text_encoding) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if not overwrite:
            try:  # link() fails if the name appeared meanwhile: no race with another writer
                os.link(tmp, target)
            except FileExistsError:
                raise ConfigError(
                    f"{target} exists; refusing to replace it (use --force)") from None
            except OSError:  # pragma: no cover - file systems without hard links
                if target.exists() or target.is_symlink():
                    raise ConfigError(
                        f"{target} exists; refusing to replace it (use --force)") from None
                os.replace(tmp, target)
            Path(tmp).unlink(missing_ok=True)
        else:
            os.replace(tmp, target)
        fsync_dir(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *,
                       overwrite: bool = True) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda fh: fh.write(data), "wb", overwrite=overwrite)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      overwrite: bool = True) -> Path:
    """:func:`atomic_write` of ``text`` (UTF-8 unless told otherwise)."""
    return atomic_write(path, lambda fh: fh.write(text), "w", encoding, overwrite=overwrite)
