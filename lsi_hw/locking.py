"""Exclusive advisory locks: one process per device, one writer per output.

Two kinds of lock share one mechanism (an ``fcntl.flock`` on a lock file that holds the
owner's pid; the kernel releases it when the process ends, even after ``kill -9``, so a
crash never leaves a stale lock):

* :class:`DeviceLock` -- per device, in a per-user folder (:func:`lock_dir`):
  ``$LSI_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/lsi-hw-locks``, else
  ``<tmp>/lsi-hw-locks-<uid>``.  The folder is created ``0o700`` and must belong to the
  user and not be a symlink, so another local user cannot pre-create it.
* :class:`PathLock` -- a lock file at a given path (e.g. inside an output folder).

Lock files are opened with ``O_NOFOLLOW``: a symlink planted at a lock's name is refused,
never followed (nothing is ever truncated through it).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from lsi_hw.errors import ConfigError, DeviceError

__all__ = ["DeviceLock", "PathLock", "lock_dir"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0o700) or check that it is a real folder owned by us."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"lock folder {path} is not a plain folder (a symlink or a file); "
                          "remove it or set LSI_LOCK_DIR")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(f"lock folder {path} belongs to another user (uid {info.st_uid}); "
                          "set LSI_LOCK_DIR to a folder of your own")
    return path


def lock_dir() -> Path:
    """Folder of the device lock files (created on first use, private to the user)."""
    explicit = os.environ.get("LSI_LOCK_DIR")
    if explicit:
        path = Path(explicit)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _private_dir(path)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return _private_dir(Path(runtime) / "lsi-hw-locks")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return _private_dir(Path(tempfile.gettempdir()) / f"lsi-hw-locks-{uid}")


class PathLock:
    """Hold an exclusive lock on the file ``path`` while open.

    Parameters
    ----------
    path:
        The lock file (created if missing; a symlink there is refused).
    what:
        What the lock guards, for the error message (e.g. ``"run folder runs/a"``).

    Raises
    ------
    DeviceError
        Another process holds the lock; the message names its pid.
    ConfigError
        ``path`` is a symlink or not a regular file.
    """

    busy_error: type[Exception] = DeviceError

    def __init__(self, path: str | os.PathLike[str], what: str | None = None) -> None:
        self.path = Path(path)
        self.what = what or str(self.path)
        self._fd: int | None = None

    def _busy_message(self, owner: str) -> str:
        return (f"{self.what} is in use by another process (pid {owner}); wait for it or "
                f"stop it (lock file {self.path})")

    def acquire(self) -> PathLock:
        """Take the lock (non-blocking).

        A holder may remove the lock file as it releases it (``release(remove=True)``); a
        process that opened the old file just before then would lock a file no longer at
        ``path``, so after locking we check that ``path`` still names the locked file and
        start again when it does not.
        """
        for _ in range(100):
            fd = self._open_and_lock()
            try:
                try:
                    on_disk = os.stat(self.path, follow_symlinks=False)
                except FileNotFoundError:
                    on_disk = None
                held = os.fstat(fd)
                if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (
                        held.st_dev, held.st_ino):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, str(os.getpid()).encode(), 0)
                    self._fd = fd
                    return self
            except BaseException:
                os.close(fd)  # never keep a lock we could not finish taking
                raise
            os.close(fd)  # the file we locked was removed meanwhile: lock the new one
        raise self.busy_error(f"{self.what}: the lock file {self.path} keeps changing")

    def _open_and_lock(self) -> int:
        """Open (creating, never following a symlink) and ``flock`` the lock file."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"lock file {self.path} is a symlink; refusing to follow "
                                  "it (remove it)") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"lock file {self.path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise self.busy_error(self._busy_message(owner)) from None
        return fd

    def release(self, *, remove: bool = False) -> None:
        """Give the lock back (idempotent); ``remove`` deletes the lock file first (while
        still held, so no other process can be holding it)."""
        if self._fd is not None:
            import fcntl

            if remove:
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> PathLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class DeviceLock(PathLock):
    """Hold an exclusive lock named ``name`` (e.g. ``"dlp4500-0451:6401"``) while open.

    Raises
    ------
    DeviceError
        Another process holds the lock; the message names its pid.
    """

    def __init__(self, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", name or ""):
            raise ConfigError(f"lock name {name!r} may hold only letters, digits and _.:-")
        self.name = name
        super().__init__(lock_dir() / f"{name.replace(':', '_')}.lock", f"device {name}")

    def _busy_message(self, owner: str) -> str:
        return (f"device {self.name} is in use by another process (pid {owner}); close it "
                f"first (lock file {self.path})")

    def acquire(self) -> DeviceLock:
        super().acquire()
        return self

    def __enter__(self) -> DeviceLock:
        return self.acquire()
