"""Writing a recording: the writer lock, creating the folder, checking and committing a
batch, and cleaning up after an interrupted append.

Every file goes through :mod:`lsi_hw.atomic` (temporary file in the same folder created
with the permissions of an ordinary file, ``fsync``, ``os.replace``, ``fsync`` of the
folder) and the lock is a :class:`lsi_hw.locking.PathLock` (``flock(2)``, ``O_NOFOLLOW``);
:class:`lsi_hw.recording.Recording` calls these functions and writes the manifest, the
commit point.  The guarantees are stated in the docstring of :mod:`lsi_hw.recording`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.atomic import atomic_write_bytes, fsync_dir, make_private_dir
from lsi_hw.errors import ConfigError, require_int
from lsi_hw.locking import PathLock
from lsi_hw.recording_format import (
    BATCH_DIR,
    FORMAT_NAME,
    LOCK_FILE,
    MANIFEST_FILE,
    RUN_FILE,
    check_batch_dir,
    json_bytes,
    one_line,
    sha256_hex,
    short_repr,
    snapshot,
    utc_text,
)

__all__ = [
    "WriterLock",
    "check_batch",
    "create_folder",
    "remove_leftovers",
    "resume_problems",
    "write_batch_files",
]

_TMP_SUFFIX = ".tmp"
#: Names of our batch files, and of their temporary files: ``NAME.tmp`` (older writers) or
#: ``.NAME.<random>.tmp`` (:func:`lsi_hw.atomic.atomic_write`).
_OURS = re.compile(
    r"^(?:\d{6}(?:-\d{3}\.npz|\.json)(?:\.tmp)?|\.\d{6}(?:-\d{3}\.npz|\.json)\.[^/]+\.tmp)$"
)
_MAX_DIFFS = 8


class WriterLock(PathLock):
    """Exclusive advisory lock on ``<recording>/lock``, held while a writer is open.

    A :class:`~lsi_hw.locking.PathLock`: opened with ``O_NOFOLLOW`` (a symlink planted at
    the lock's name is refused, never followed or truncated), ``flock(2)`` (the kernel drops
    it when the holder dies, even after ``kill -9``; it belongs to the open file
    description, so a second writer in the same process is refused as well), holding the
    writer's pid.  The writer deletes the file on :meth:`release` with ``remove=True``
    while still holding it; a process that opened the old file meanwhile notices that the
    name now points elsewhere and tries again, so two writers never both hold a lock.

    Raises
    ------
    ConfigError
        Another writer holds the lock, the lock file is a symlink or not a regular file,
        or it cannot be created.
    """

    # Not a bare PathLock: a busy recording is a ConfigError (PathLock raises DeviceError)
    # whose message names the recording and says when the other writer is this process,
    # the lock is taken on construction, and an OSError opening it becomes a ConfigError.
    busy_error = ConfigError

    def __init__(self, lock_path: Path, recording: Path) -> None:
        super().__init__(lock_path, f"recording {recording}")
        self.recording = recording
        try:
            self.acquire()  # retries when a closing writer removed the file meanwhile
        except OSError as exc:
            raise ConfigError(
                f"recording {recording}: cannot open its lock file {lock_path} "
                f"({one_line(exc)})"
            ) from None

    def _busy_message(self, owner: str) -> str:
        who = f"pid {owner}"
        if owner == str(os.getpid()):
            who += ", this process: another Recording object holds it"
        return (
            f"recording {self.recording} is being written by another process ({who}); "
            "only one writer may append at a time: close the other writer or wait for it "
            "to finish (Recording.open(path) reads while it writes)"
        )


def create_folder(path: Path, run: dict[str, Any], manifest: dict[str, Any],
                  kind: str | None) -> WriterLock:
    """Create the recording ``path`` holding ``run`` and ``manifest`` (no batches) and
    return its writer lock, held.

    The recording is built under a temporary name, then renamed into place: a crash
    leaves either no recording or a complete empty one.  ``kind`` is what ``path`` is now
    (:func:`lsi_hw.recording_format.classify_path`; None: nothing): an existing recording
    or empty folder is moved aside and deleted once the new one is in place (an existing
    recording only while no writer holds it).
    """
    run_id = run["run_id"]
    # The folder gets the permissions of an ordinary mkdir (0o777 less the umask).
    try:
        tmp = make_private_dir(path.parent, f".{path.name}.creating-")
    except OSError as exc:
        raise ConfigError(f"recording {path}: cannot create it in {path.parent} "
                          f"({exc.strerror or exc})") from None
    lock = None
    old_lock = None
    try:
        (tmp / BATCH_DIR).mkdir()
        lock = WriterLock(tmp / LOCK_FILE, path)
        atomic_write_bytes(tmp / RUN_FILE, json_bytes(run))
        atomic_write_bytes(tmp / MANIFEST_FILE, json_bytes(manifest))
        fsync_dir(tmp / BATCH_DIR)
        fsync_dir(tmp)
        if kind is None:
            os.rename(tmp, path)
        else:
            trash = path.parent / f".{path.name}.deleting-{os.getpid()}-{run_id[:8]}"
            if kind == "recording":
                old_lock = WriterLock(path / LOCK_FILE, path)
            os.rename(path, trash)
            if old_lock is not None:
                old_lock.path = trash / LOCK_FILE  # moved with the old recording
            os.rename(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        lock.path = path / LOCK_FILE  # moved with the folder
        fsync_dir(path.parent)
    except BaseException as exc:
        if lock is not None:
            lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # name the recording, not the temporary folder
            raise ConfigError(f"recording {path}: could not create it "
                              f"({exc.strerror or exc})") from None
        raise
    finally:
        if old_lock is not None:
            old_lock.release()
    return lock


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Paths (``a.b.c``) where two JSON values differ, with both values (shortened)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                out.append(f"{name} (recorded {short_repr(old[key])}, now missing)")
            elif key not in old:
                out.append(f"{name} (not recorded, now {short_repr(new[key])})")
            else:
                out.extend(_diff(old[key], new[key], name))
        return out
    if old != new:
        return [f"{prefix or '<root>'} (recorded {short_repr(old)}, now {short_repr(new)})"]
    return []


def _summarise(diffs: list[str]) -> str:
    """The first differences with their values, then the paths of the rest (every
    differing key is named)."""
    shown = ", ".join(diffs[:_MAX_DIFFS])
    rest = [d.split(" (", 1)[0] for d in diffs[_MAX_DIFFS:]]
    return shown + (f" and {len(rest)} more ({', '.join(rest)})" if rest else "")


def resume_problems(
    run: dict[str, Any],
    *,
    m: int | None,
    pattern_name: str | None,
    patterns_meta: Any,
    settings: Any,
    allow_settings_change: bool,
) -> list[str]:
    """What differs between the recorded ``run`` and the arguments of a resume (empty when
    it may resume); see :meth:`lsi_hw.recording.Recording.resume`."""
    problems: list[str] = []
    if m is not None and require_int("m", m, 1) != run["m"]:
        problems.append(f"m differs (recorded {run['m']}, requested {m})")
    if pattern_name is not None and pattern_name != run["pattern_name"]:
        problems.append(
            f"pattern_name differs (recorded {run['pattern_name']!r}, "
            f"requested {pattern_name!r})"
        )
    if patterns_meta is not None:
        diffs = _diff(run.get("patterns_meta"), snapshot(patterns_meta, "patterns_meta"))
        if diffs:
            problems.append(f"patterns_meta differs: {_summarise(diffs)}")
    if settings is not None and not allow_settings_change:
        diffs = _diff(run["settings"], snapshot(settings, "settings"))
        if diffs:
            problems.append(
                f"settings differ: {_summarise(diffs)} (Recording.resume(..., "
                "allow_settings_change=True) continues with the new settings)"
            )
    return problems


def check_batch(
    m: int, batch: int, values: Any, stamps: Any, ids: Any
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A batch's readings and timestamps as (B, m) float64 arrays of finite numbers and its
    B scene ids as non-empty strings, else ConfigError naming the batch."""
    values = _check_array(m, "values", values, batch, None)
    stamps = _check_array(m, "timestamps", stamps, batch, values.shape)
    id_list = _check_ids(ids, values.shape[0], batch)
    for name, arr in (("values", values), ("timestamps", stamps)):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(
                f"batch {batch}: {name} has {int(bad.sum())} non-finite value(s) (NaN or "
                f"inf), first at scene {id_list[row]!r} (row {row}), pattern {col}: "
                f"{arr[row, col]}; only finite numbers are recorded: re-measure or drop "
                "that scene"
            )
    return values, stamps, id_list


def _check_array(
    m: int, name: str, arr: Any, batch: int, shape: tuple[int, ...] | None
) -> np.ndarray:
    try:
        raw = np.asarray(arr)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"batch {batch}: {name} is not an array ({exc})") from None
    if raw.dtype.kind not in "biuf":
        raise ConfigError(
            f"batch {batch}: {name} must be real numbers (float64 stored); got dtype "
            f"{raw.dtype}"
        )
    if shape is not None:
        if raw.shape != shape:
            raise ConfigError(
                f"batch {batch}: {name} shape {raw.shape} differs from values {shape}"
            )
    else:
        if raw.ndim != 2 or raw.shape[1] != m:
            raise ConfigError(
                f"batch {batch}: {name} must be (B, m={m}) (B scenes x m patterns); "
                f"got shape {raw.shape}"
            )
        if raw.shape[0] == 0:
            raise ConfigError(f"batch {batch}: empty batch (0 scenes); nothing to record")
    return np.ascontiguousarray(raw, dtype=np.float64)


def _check_ids(ids: Any, n: int, batch: int) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence | np.ndarray):
        raise ConfigError(
            f"batch {batch}: scene_ids must be a sequence of {n} strings; got "
            f"{type(ids).__name__}"
        )
    out = [str(s) if isinstance(s, (int, np.integer, np.str_)) else s for s in ids]
    if len(out) != n:
        raise ConfigError(f"batch {batch}: {len(out)} scene ids given for {n} scenes")
    for i, s in enumerate(out):
        if not isinstance(s, str) or not s or "\x00" in s:
            raise ConfigError(
                f"batch {batch}: scene id {i} is {s!r}; ids must be non-empty strings "
                "without NUL characters"
            )
    return out


def write_batch_files(
    path: Path,
    *,
    batch: int,
    first: int,
    now: float,
    values: np.ndarray,
    stamps: np.ndarray,
    ids: list[str],
    snap: dict[str, Any],
    chunk_scenes: int,
    pattern_name: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the chunk files and the record of batch ``batch`` (scenes from ``first``),
    durably, and return its manifest entry and its record.  Nothing refers to them until
    the manifest lists the entry (the caller's commit point)."""
    folder = path / BATCH_DIR
    n = values.shape[0]
    chunks = []
    for part, lo in enumerate(range(0, n, chunk_scenes)):
        hi = min(lo + chunk_scenes, n)
        buf = io.BytesIO()
        np.savez(
            buf,
            values=values[lo:hi],
            timestamps=stamps[lo:hi],
            scene_ids=np.array(ids[lo:hi], dtype=str),
        )
        raw = buf.getvalue()
        name = f"{batch:06d}-{part:03d}.npz"
        atomic_write_bytes(folder / name, raw)
        chunks.append({"file": f"{BATCH_DIR}/{name}", "n_scenes": hi - lo,
                       "sha256": sha256_hex(raw)})
    record = {
        "format": FORMAT_NAME,
        "index": batch,
        "first_scene": first,
        "n_scenes": n,
        "wall_time_unix": now,
        "wall_time_utc": utc_text(now),
        "pattern_name": pattern_name,
        "scene_ids": ids,
        "settings": snap,
    }
    record_raw = json_bytes(record)
    record_name = f"{BATCH_DIR}/{batch:06d}.json"
    atomic_write_bytes(path / record_name, record_raw)
    fsync_dir(folder)
    entry = {
        "index": batch,
        "first_scene": first,
        "n_scenes": n,
        "wall_time_unix": now,
        "record": record_name,
        "record_sha256": sha256_hex(record_raw),
        "chunks": chunks,
    }
    return entry, record


def remove_leftovers(path: Path, manifest: dict[str, Any]) -> None:
    """Delete files of interrupted appends (only our names, only unreferenced ones)."""
    keep = set()
    for entry in manifest["batches"]:
        keep.add(Path(entry["record"]).name)
        keep.update(Path(c["file"]).name for c in entry["chunks"])
    check_batch_dir(path)
    folder = path / BATCH_DIR
    for file in folder.iterdir():
        if _OURS.match(file.name) and file.name not in keep:
            file.unlink(missing_ok=True)
    for name in (RUN_FILE, MANIFEST_FILE):
        (path / (name + _TMP_SUFFIX)).unlink(missing_ok=True)
        for tmp in path.glob(f".{name}.*{_TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
