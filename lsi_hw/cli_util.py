"""Pieces shared by the ``lsi-hw`` and ``lsi-ml`` command lines.

* :func:`one_line_errors`: our exceptions, file-system errors (``OSError``) and malformed
  files become ``Error: ...`` on stderr and exit code 2, never a traceback.
* :class:`OutputFolder`: an output folder that appears under its final name only when
  complete.  ``--force`` replaces an existing folder only when this toolkit made it (a
  marker file inside names the command), and never the current folder, a folder above it,
  an input, or a folder holding an input.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from lsi_hw.atomic import atomic_write_text, fsync_dir, make_private_dir
from lsi_hw.errors import ConfigError, LSIError
from lsi_hw.locking import PathLock

__all__ = [
    "MARKER_FILE",
    "OutputFolder",
    "check_new_file",
    "check_replaceable",
    "one_line_errors",
]

MARKER_FILE = ".lsi-output.json"
"""Marker written into every output folder this toolkit completes; only folders that hold
it may be replaced with ``--force``."""


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename2 is not None:
        return f"{where} -> {exc.filename2}: {reason}"
    return f"{where}: {reason}" if where is not None else reason


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions and ``OSError`` into ``Error: ...`` on stderr with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LSIError as exc:
            message = " ".join(str(exc).split())
        except OSError as exc:
            message = " ".join(_os_error_line(exc).split())
        except MemoryError:
            message = ("out of memory; ask for less (smaller --size, fewer patterns or "
                       "scenes) or set LSI_MAX_MEMORY_GB lower so the estimate refuses it")
        click.echo(f"Error: {message}", err=True)
        sys.exit(2)

    return wrapper


def check_new_file(path: Path, force: bool, option: str) -> None:
    """Refuse an output file that exists unless ``--force`` (before any work is done;
    the write itself is atomic and re-checks)."""
    if (path.exists() or path.is_symlink()) and not force:
        raise ConfigError(f"{option} {path} exists; add --force to replace it")


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _check_not_precious(out: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """``out`` is never the current folder, a folder above it, an input or a folder
    holding an input (with or without ``--force``)."""
    target = _resolved(out)
    cwd = _resolved(Path.cwd())
    if target == cwd or target in cwd.parents:
        raise ConfigError(f"--out {out} is the current folder or holds it; outputs go into a "
                          "new folder: pick a new --out")
    for item in inputs:
        source = _resolved(Path(item))
        if source == target or target in source.parents:
            raise ConfigError(f"--out {out} is or holds the input {item}; outputs never "
                              "replace an input: pick a new --out")


def check_replaceable(out: Path, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse to replace ``out`` unless this toolkit made it and nothing precious is in it.

    Raises
    ------
    ConfigError
        ``out`` is the current folder or above it, is or holds one of ``inputs``, is not a
        folder, or lacks the :data:`MARKER_FILE` this toolkit writes into its outputs.
    """
    _check_not_precious(out, inputs)
    if out.is_symlink() or not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder this tool wrote; "
                          "pick a new --out")
    if not (out / MARKER_FILE).is_file():
        raise ConfigError(f"--out {out} was not written by lsi-hw/lsi-ml (no {MARKER_FILE} "
                          "in it); --force replaces only such folders: pick a new --out")


class OutputFolder:
    """A folder that appears under its final name only when everything is written.

    While it is being written, the output is locked (``.NAME.lsi-lock`` beside it), so two
    processes never write the same ``--out``.  The files go to ``.NAME.lsi-tmp-XXXXXXXX``
    and :meth:`commit` renames that folder onto ``NAME``.  Replacing an earlier output
    (``force``) moves the old folder aside to ``.NAME.lsi-old-XXXXXXXX`` first, renames
    the new one into place, then deletes the old one.  A crash (``kill -9``) between those
    two renames leaves the old output aside; the next run on the same ``--out`` puts it
    back before anything else, and removes what killed runs left half-written.

    Parameters
    ----------
    out:
        Final folder.  It must be new or empty; with ``force`` it may also be a folder
        an earlier run of this toolkit wrote (see :func:`check_replaceable`).
    force:
        Allow replacing such a folder.
    inputs:
        Paths the command reads; ``out`` may never be or hold one of them.
    made_by:
        The command, recorded in the marker file.
    """

    def __init__(self, out: Path, force: bool, *,
                 inputs: Iterable[str | os.PathLike[str]] = (),
                 made_by: str = "lsi-toolkit") -> None:
        self.final = Path(out)
        self.made_by = made_by
        inputs = list(inputs)
        _check_not_precious(self.final, inputs)
        parent = self.final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot create a folder there "
                              f"({exc.strerror or exc})") from None
        self._lock = PathLock(parent / f".{self.final.name}.lsi-lock", f"--out {out}")
        try:
            self._lock.acquire()
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot write in {parent} "
                              f"({exc.strerror or exc})") from None
        try:
            self._recover()
            self._replace = False
            if self.final.exists() or self.final.is_symlink():
                empty_dir = (self.final.is_dir() and not self.final.is_symlink()
                             and not any(self.final.iterdir()))
                if not empty_dir:
                    if not force:
                        raise ConfigError(f"--out {out} exists and is not empty; pick "
                                          "another or add --force")
                    check_replaceable(self.final, inputs)
                    self._replace = True
            try:
                self.tmp = make_private_dir(parent, self._prefix("tmp"))
            except OSError as exc:
                raise ConfigError(f"--out {out}: cannot create a folder there "
                                  f"({exc.strerror or exc})") from None
        except BaseException:
            self._lock.release(remove=True)
            raise

    def _prefix(self, kind: str) -> str:
        return f".{self.final.name}.lsi-{kind}-"

    def _leftovers(self, kind: str) -> list[Path]:
        """Folders a killed run of this output left behind (``tmp`` or ``old``)."""
        pattern = re.compile(re.escape(self._prefix(kind)) + r"[A-Za-z0-9_]{8}")
        return sorted(p for p in self.final.parent.iterdir()
                      if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())

    def _recover(self) -> None:
        """Under the lock: put back an output a crash left aside, delete half-written
        folders of killed runs."""
        for aside in self._leftovers("old"):
            old = aside / "old"
            if not self.final.exists() and (old / MARKER_FILE).is_file():
                os.replace(old, self.final)
            shutil.rmtree(aside, ignore_errors=True)
        for tmp in self._leftovers("tmp"):
            shutil.rmtree(tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write the output file ``name`` (inside the temporary folder)."""
        return self.tmp / name

    def commit(self) -> None:
        """Write the marker, then move the folder into place (replacing the old one only
        after the new one is complete)."""
        try:
            atomic_write_text(self.tmp / MARKER_FILE,
                              json.dumps({"made_by": self.made_by}) + "\n")
            if self._replace and self.final.exists():
                check_replaceable(self.final)  # unchanged since __init__?
                aside = make_private_dir(self.final.parent, self._prefix("old"))
                os.replace(self.final, aside / "old")
                try:
                    os.replace(self.tmp, self.final)
                except OSError:
                    os.replace(aside / "old", self.final)  # put the old output back
                    aside.rmdir()
                    raise
                fsync_dir(self.final.parent)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                if self.final.is_dir() and not any(self.final.iterdir()):
                    self.final.rmdir()
                os.replace(self.tmp, self.final)
            fsync_dir(self.final.parent)
        except OSError as exc:
            raise ConfigError(f"--out {self.final}: could not move the finished output into "
                              f"place ({exc.strerror or exc})") from None
        finally:
            self._lock.release(remove=True)

    def abandon(self) -> None:
        """Remove the temporary folder (the final folder is untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.release(remove=True)
