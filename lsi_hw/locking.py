"""Exclusive, per-device advisory locks so two processes never drive the same device.

The lock is an ``fcntl.flock`` on a file under the system temp folder
(``<tmp>/lsi-hw-locks/<name>.lock``) holding the owner's pid; the kernel releases it
when the process ends, even after ``kill -9``, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from lsi_hw.errors import ConfigError, DeviceError

__all__ = ["DeviceLock", "lock_dir"]


def lock_dir() -> Path:
    """Folder of the lock files (created on first use)."""
    path = Path(os.environ.get("LSI_LOCK_DIR", Path(tempfile.gettempdir()) / "lsi-hw-locks"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class DeviceLock:
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
        self.path = lock_dir() / f"{name.replace(':', '_')}.lock"
        self._fd: int | None = None

    def acquire(self) -> DeviceLock:
        """Take the lock (non-blocking)."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DeviceError(
                f"device {self.name} is in use by another process (pid {owner}); close it "
                f"first (lock file {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> DeviceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
