"""Crash-safe, append-only store of the measurements of one acquisition run.

An acquisition measures many scenes batch by batch; each batch is a
:class:`~lsi_hw.types.Measurement` of ``B`` scenes x ``m`` patterns (volts, float64).  A
:class:`Recording` stores these batches, with the full settings snapshot of each batch, so
that

* every batch is durable on disk (``fsync``-ed) before :meth:`Recording.append` returns;
* after the writing process dies at *any* moment (``kill -9``, power loss, a crash in the
  middle of an append) the recording opens without repair and holds exactly the batches
  whose append had completed, each one whole -- never a partial batch;
* rerunning the same acquisition resumes it: :meth:`Recording.completed_scene_ids` tells
  which scenes to skip, :meth:`Recording.resume` reopens for appending after checking the
  run is the same one;
* two processes never append to the same recording (an exclusive lock file);
* a damaged or forged recording is refused with one :class:`~lsi_hw.errors.ConfigError`
  line, never a traceback, a file read outside the recording or a huge allocation (see
  "Reading safely" below).

Format decision
---------------
The store is a **directory of immutable chunk files plus a JSON manifest that is replaced
atomically**.  Appending a batch writes its chunk files and its settings record under
temporary names (``.NAME.<random>.tmp`` in the same folder, created with the permissions
of an ordinary file: ``0o666`` less the umask), ``fsync``-s them and renames each into
place, then writes a new ``manifest.json`` the same way (temporary file, ``fsync``,
``os.replace``, ``fsync`` of the directory; :func:`lsi_hw.atomic.atomic_write_bytes`).
Readers trust only the manifest: a batch exists exactly when the manifest lists it.  The
commit point is one ``rename(2)``, which POSIX makes atomic, and no file a
manifest refers to is ever modified afterwards, so every reachable state of the directory
is a consistent recording.  Files left by an interrupted append are unreferenced and
harmless; the next writer (:meth:`Recording.resume`) deletes them.

The alternatives were rejected because their crash safety depends on details we cannot
check in a test or that users would have to know about:

* HDF5 (h5py) updates its B-trees, heaps and superblock in place.  A kill in the middle of
  a metadata flush can leave a file that no longer opens.  SWMR mode avoids corruption but
  needs the latest file format, forbids creating new objects while in SWMR mode, leaves a
  "file is open for writing" flag after a crash that has to be cleared with ``h5clear``,
  and ``H5Fflush`` hands data to the operating system without ``fsync``.
* zarr writes chunks as separate files (good) but rewrites the array metadata (``.zarray``
  / ``zarr.json``) in place when resizing, and its format and API are changing between
  major versions; a resized-but-not-yet-written chunk reads as fill values, which would
  look like a valid (zero-volt) partial batch.

The price is one small file per batch (plus one per ``chunk_scenes`` scenes of large
batches) and a manifest whose size grows by ~300 bytes per batch (rewritten on each
append: fine up to tens of thousands of batches).  To hand a recording to someone as one
file use ``read_measurements(path).save("run.npz")``.

On-disk layout (format ``lsi-recording``, version 1)
----------------------------------------------------
::

    run.lsirec/                      any directory name; ``.lsirec`` is a convention
      run.json                       run-level metadata, written once at creation:
                                       format, format_version, run_id, m, pattern_name,
                                       settings (run-level snapshot), patterns_meta,
                                       chunk_scenes, created_unix, created_utc, units
      manifest.json                  THE COMMITTED STATE (replaced atomically):
                                       format, format_version, run_id, n_batches, n_scenes,
                                       updated_unix, batches: [{index, first_scene,
                                       n_scenes, wall_time_unix, record, record_sha256,
                                       chunks: [{file, n_scenes, sha256}, ...]}, ...]
      lock                           advisory flock(2) lock of the open writer (its pid);
                                       deleted when the writer closes, so a finished
                                       recording has none (one left by a killed writer
                                       is unlocked, harmless, and removed by the next)
      batches/
        000000.json                  batch record: index, first_scene, n_scenes,
                                       wall_time_unix, wall_time_utc, pattern_name,
                                       scene_ids, settings (the full per-batch snapshot)
        000000-000.npz               chunk: values (n, m) float64 volts,
                                       timestamps (n, m) float64 seconds, scene_ids (n,) str
        000000-001.npz               next chunk of batch 0 if it had > chunk_scenes scenes
        000001.json
        000001-000.npz
        ...

Scenes are numbered in append order; ``first_scene`` is the row of a batch's first scene in
:attr:`Recording.values`.  Files in ``batches/`` that the manifest does not list (and
``*.tmp`` files) are leftovers of an interrupted append: ignore them.  The ``sha256`` of
every file the manifest lists is stored next to its name and checked on reading.

Reading safely
--------------
A recording may come from someone else, so readers trust nothing in it:

* ``run.json``, ``manifest.json`` and batch records must be UTF-8 JSON of the documented
  types, nested at most 100 levels; anything else (wrong types, non-UTF-8 bytes, NaN,
  nesting that would exhaust the parser) is a :class:`~lsi_hw.errors.ConfigError` naming
  the file;
* the manifest may name only ``batches/NAME`` files, NAME a plain file name (letters,
  digits, ``.``, ``_``, ``-``; not starting with ``.``): no ``..``, absolute paths or
  separators.  Files are opened without following symlinks (neither ``batches/`` nor a
  listed file may be one), so nothing outside the recording is ever read;
* the scene counts must add up (chunks to batches to the total), and before anything is
  allocated, every chunk a read needs must be large enough on disk for the scenes it
  claims, its ``.npz`` headers must give exactly the claimed shapes (read without
  inflating any data), and the result must fit the memory limit
  (:func:`lsi_hw.limits.check_allocation`), so a manifest claiming 10**9 scenes is refused
  instead of allocating gigabytes.

Reading without this module needs only numpy and json::

    import json
    import numpy as np

    root = "run.lsirec"
    with open(f"{root}/manifest.json") as f:
        manifest = json.load(f)
    chunks = [c["file"] for b in manifest["batches"] for c in b["chunks"]]
    values = np.concatenate([np.load(f"{root}/{name}")["values"] for name in chunks])

Guarantees and limits: a local POSIX file system (ext4, xfs, btrfs, APFS, tmpfs).  The
lock is ``flock(2)`` (:class:`lsi_hw.locking.PathLock`, opened with ``O_NOFOLLOW``: a
symlink planted at ``lock`` is refused, never followed or truncated), advisory and per
host: it does not protect a recording on a network file system written from two machines.
A :class:`Recording` object is not thread-safe; readers may run in other processes while
a writer appends (use :meth:`Recording.refresh` to see new batches).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.atomic import atomic_write_bytes, fsync_dir, make_private_dir
from lsi_hw.errors import ConfigError
from lsi_hw.limits import (
    MAX_JSON_DEPTH,
    READ_ERRORS,
    check_allocation,
    format_bytes,
    json_depth_exceeds,
    npz_headers,
    parse_json_strict,
)
from lsi_hw.locking import PathLock
from lsi_hw.types import Measurement, jsonable

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Recording", "read_measurements"]

FORMAT_NAME = "lsi-recording"
"""Value of the ``format`` field of ``run.json`` and ``manifest.json``."""
FORMAT_VERSION = 1
"""Layout version written by this module (readers accept this version or older)."""

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "lock"
BATCH_DIR = "batches"
_TMP_SUFFIX = ".tmp"
#: Names of our batch files, and of their temporary files: ``NAME.tmp`` (older writers) or
#: ``.NAME.<random>.tmp`` (:func:`lsi_hw.atomic.atomic_write`).
_OURS = re.compile(
    r"^(?:\d{6}(?:-\d{3}\.npz|\.json)(?:\.tmp)?|\.\d{6}(?:-\d{3}\.npz|\.json)\.[^/]+\.tmp)$"
)
#: A file a manifest may name: ``batches/`` + a plain file name (no separators, no ``..``).
_MEMBER = re.compile(r"^batches/([A-Za-z0-9_][A-Za-z0-9._-]{0,254})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_MAX_DIFFS = 8
_MAX_JSON_DEPTH = MAX_JSON_DEPTH
"""Deepest nesting of dicts and lists accepted in a settings snapshot or JSON file."""
_JSON_BYTES_FACTOR = 16
"""Rough peak memory of parsing a JSON file, per byte of the file."""
_BYTES_PER_READING = 8 * 2 * 3
"""Memory to read one reading: values + timestamps (float64), chunk + result + a copy."""


# --------------------------------------------------------------------------- helpers


def _utc(unix_s: float) -> str:
    """ISO 8601 UTC time of a Unix time in seconds (millisecond resolution)."""
    return datetime.fromtimestamp(unix_s, tz=timezone.utc).isoformat(timespec="milliseconds")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _snapshot(settings: Any, what: str) -> dict[str, Any]:
    """``settings`` as plain JSON types (exactly what is stored), or ConfigError."""
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"{what} must be a dict (settings snapshot); got {type(settings).__name__}"
        )
    try:
        text = json.dumps(jsonable(dict(settings)), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{what} is not JSON-serialisable ({_one_line(exc)}); snapshots may hold only "
            "numbers, strings, bools, None, lists and dicts (numpy values are converted)"
        ) from None
    snap = json.loads(text)
    if json_depth_exceeds(snap, _MAX_JSON_DEPTH):
        raise ConfigError(f"{what} nests dicts/lists deeper than {_MAX_JSON_DEPTH} levels")
    return snap


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Paths (``a.b.c``) where two JSON values differ, with both values (shortened)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                out.append(f"{name} (recorded {_short(old[key])}, now missing)")
            elif key not in old:
                out.append(f"{name} (not recorded, now {_short(new[key])})")
            else:
                out.extend(_diff(old[key], new[key], name))
        return out
    if old != new:
        return [f"{prefix or '<root>'} (recorded {_short(old)}, now {_short(new)})"]
    return []


def _summarise(diffs: list[str]) -> str:
    """The first differences with their values, then the paths of the rest (every
    differing key is named)."""
    shown = ", ".join(diffs[:_MAX_DIFFS])
    rest = [d.split(" (", 1)[0] for d in diffs[_MAX_DIFFS:]]
    return shown + (f" and {len(rest)} more ({', '.join(rest)})" if rest else "")


def _parse_json(raw: bytes, file: Path, what: str) -> Any:
    """Parse JSON ``raw`` read from ``file``; every failure is one ConfigError line."""
    return parse_json_strict(raw, f"{what} {file}")


def _read_json(path: Path, what: str) -> Any:
    try:
        size = path.stat().st_size
        check_allocation(size * _JSON_BYTES_FACTOR, f"reading {what} {path}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {_one_line(exc)}") from None
    return _parse_json(raw, path, what)


class _WriterLock(PathLock):
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

    busy_error = ConfigError

    def __init__(self, lock_path: Path, recording: Path) -> None:
        super().__init__(lock_path, f"recording {recording}")
        self.recording = recording
        try:
            self.acquire()  # retries when a closing writer removed the file meanwhile
        except OSError as exc:
            raise ConfigError(
                f"recording {recording}: cannot open its lock file {lock_path} "
                f"({_one_line(exc)})"
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


def _classify(path: Path) -> str:
    """'recording', 'empty' (an empty directory) or 'other' for an existing path."""
    if path.is_dir() and not path.is_symlink():
        if (path / MANIFEST_FILE).exists() or (path / RUN_FILE).exists():
            return "recording"
        if not any(path.iterdir()):
            return "empty"
    return "other"


def _check_format(doc: Any, file: Path) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ConfigError(f"{file} is not an LSI recording file (format != {FORMAT_NAME!r})")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            f"{file} has format_version {_short(version)}; this lsi_hw reads versions <= "
            f"{FORMAT_VERSION}: upgrade lsi_hw"
        )


def _is_int(value: Any, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _malformed(file: Path, where: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{file} is malformed: {where} is {_short(value)}; allowed: {allowed}")


def _check_run(run: dict[str, Any], file: Path) -> None:
    """Types of ``run.json`` (format already checked)."""
    checks: tuple[tuple[str, Any, str], ...] = (
        ("run_id", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
        ("m", lambda v: _is_int(v, 1), "an integer >= 1"),
        ("pattern_name", lambda v: isinstance(v, str), "a string"),
        ("settings", lambda v: isinstance(v, dict), "a dict"),
        ("patterns_meta", lambda v: v is None or isinstance(v, dict), "a dict or null"),
        ("chunk_scenes", lambda v: _is_int(v, 1), "an integer >= 1"),
    )
    for key, ok, allowed in checks:
        if not ok(run.get(key)):
            raise _malformed(file, key, run.get(key), allowed)


def _check_member(recording: Path, file: Path, where: str, value: Any) -> None:
    """A file named by the manifest: ``batches/NAME``, NAME a plain file name."""
    if not isinstance(value, str) or not _MEMBER.match(value):
        raise ConfigError(
            f"recording {recording}: {file} names {_short(value)} at {where}; only plain file "
            "names inside batches/ are allowed (batches/NAME, NAME of letters, digits, '.', "
            "'_' and '-', not starting with '.'; no '..', absolute paths or separators)"
        )


def _check_manifest(manifest: dict[str, Any], file: Path, recording: Path) -> None:
    """Structure and consistency of ``manifest.json`` (format and run id already checked):
    every batch and chunk entry well-typed, only safe file names, and scene counts that
    add up (batch ``first_scene`` / ``n_scenes``, chunk counts, the total)."""
    batches = manifest.get("batches")
    if not isinstance(batches, list) or manifest.get("n_batches") != len(batches):
        raise ConfigError(f"{file} is inconsistent (n_batches != batches)")
    total = 0
    for i, entry in enumerate(batches):
        where = f"batches[{i}]"
        if not isinstance(entry, dict):
            raise _malformed(file, where, entry, "a dict")
        if entry.get("index") != i or isinstance(entry.get("index"), bool):
            raise _malformed(file, f"{where}.index", entry.get("index"), f"{i}")
        if entry.get("first_scene") != total or isinstance(entry.get("first_scene"), bool):
            raise _malformed(file, f"{where}.first_scene", entry.get("first_scene"),
                             f"{total} (the scenes of the batches before)")
        n = entry.get("n_scenes")
        if not _is_int(n, 1):
            raise _malformed(file, f"{where}.n_scenes", n, "an integer >= 1")
        _check_member(recording, file, f"{where}.record", entry.get("record"))
        if not isinstance(entry.get("record_sha256"), str) or not _SHA256.match(
                entry["record_sha256"]):
            raise _malformed(file, f"{where}.record_sha256", entry.get("record_sha256"),
                             "64 lowercase hex digits")
        chunks = entry.get("chunks")
        if not isinstance(chunks, list) or not chunks:
            raise _malformed(file, f"{where}.chunks", chunks, "a non-empty list")
        in_chunks = 0
        for j, chunk in enumerate(chunks):
            cwhere = f"{where}.chunks[{j}]"
            if not isinstance(chunk, dict):
                raise _malformed(file, cwhere, chunk, "a dict")
            _check_member(recording, file, f"{cwhere}.file", chunk.get("file"))
            if not _is_int(chunk.get("n_scenes"), 1):
                raise _malformed(file, f"{cwhere}.n_scenes", chunk.get("n_scenes"),
                                 "an integer >= 1")
            if not isinstance(chunk.get("sha256"), str) or not _SHA256.match(chunk["sha256"]):
                raise _malformed(file, f"{cwhere}.sha256", chunk.get("sha256"),
                                 "64 lowercase hex digits")
            in_chunks += chunk["n_scenes"]
        if in_chunks != n:
            raise _malformed(file, f"{where}.n_scenes", n,
                             f"{in_chunks} (the sum of its chunks' n_scenes)")
        total += n
    if manifest.get("n_scenes") != total or isinstance(manifest.get("n_scenes"), bool):
        raise _malformed(file, "n_scenes", manifest.get("n_scenes"),
                         f"{total} (the sum of the batches' n_scenes)")


def _load_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and check ``run.json`` and ``manifest.json`` of the recording at ``path``."""
    if not path.is_dir():
        raise ConfigError(
            f"no recording at {path}: it does not exist or is not a directory "
            "(create one with Recording.create)"
        )
    if not (path / MANIFEST_FILE).exists():
        raise ConfigError(f"{path} is not an LSI recording: it has no {MANIFEST_FILE}")
    run = _read_json(path / RUN_FILE, "run file")
    _check_format(run, path / RUN_FILE)
    _check_run(run, path / RUN_FILE)
    manifest = _read_json(path / MANIFEST_FILE, "manifest")
    _check_format(manifest, path / MANIFEST_FILE)
    if manifest.get("run_id") != run.get("run_id"):
        raise ConfigError(f"{path}: manifest.json and run.json belong to different runs")
    _check_manifest(manifest, path / MANIFEST_FILE, path)
    return run, manifest


def _check_batch_dir(path: Path) -> None:
    """``<recording>/batches`` must be a real folder, not a symlink to somewhere else."""
    folder = path / BATCH_DIR
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise ConfigError(f"recording {path}: its {BATCH_DIR}/ folder is missing") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"recording {path}: {folder} is not a plain folder (a symlink or a file); "
            "refusing to read or write through it"
        )


def _int_arg(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)


# --------------------------------------------------------------------------- Recording


class Recording:
    """An append-only, crash-safe store of the measurements of one acquisition run.

    Do not call the constructor: use :meth:`create` (new run), :meth:`resume` (append to an
    existing run), :meth:`create_or_resume` (either) or :meth:`open` (read-only).  A
    writer holds an exclusive lock until :meth:`close` (or the end of a ``with`` block).

    Examples
    --------
    A resumable acquisition (rerunning it skips the scenes already recorded)::

        with Recording.create_or_resume(path, m=patterns.m, settings=bench.settings(),
                                        pattern_name=patterns.name) as rec:
            done = rec.completed_scene_ids()
            for ids, scenes in batches:
                if set(ids) <= done:
                    continue
                rec.append(bench.measure(scenes, patterns))
        meas = read_measurements(path)  # every committed scene, as one Measurement
    """

    def __init__(
        self,
        path: Path,
        run: dict[str, Any],
        manifest: dict[str, Any],
        lock: _WriterLock | None,
    ) -> None:
        self._lock = lock
        self._path = path
        self._run = run
        self._manifest = manifest
        self._records: dict[int, dict[str, Any]] = {}
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        m: int,
        settings: Mapping[str, Any],
        pattern_name: str,
        patterns_meta: Mapping[str, Any] | None = None,
        chunk_scenes: int = 64,
        overwrite: bool = False,
    ) -> Recording:
        """Create a new, empty recording at ``path`` and open it for appending.

        Parameters
        ----------
        path:
            Directory to create (parents are created).  Must not exist unless
            ``overwrite=True``.
        m:
            Number of patterns (readings per scene); every batch must have ``m`` columns.
        settings:
            Run-level settings snapshot (JSON-serialisable): every device parameter and the
            calibration id.  Batches appended without their own snapshot record this one.
        pattern_name:
            Name of the :class:`~lsi_hw.patterns.PatternSet` displayed in this run.
        patterns_meta:
            Optional description of the pattern set (generator, seed, hash, ...), checked
            again by :meth:`resume`.
        chunk_scenes:
            Largest number of scenes stored in one chunk file; a larger batch is split into
            several chunk files that are committed together.
        overwrite:
            Replace an existing recording at ``path`` (its data are deleted).  Refused if
            another process is writing it, or if ``path`` is not a recording.

        Raises
        ------
        ConfigError
            Bad arguments, ``path`` exists without ``overwrite=True``, or it cannot be
            replaced.
        """
        path = Path(path)
        m = _int_arg("m", m, 1)
        chunk_scenes = _int_arg("chunk_scenes", chunk_scenes, 1)
        if not isinstance(pattern_name, str):
            raise ConfigError(f"pattern_name must be a str; got {type(pattern_name).__name__}")
        snap = _snapshot(settings, "settings")
        meta = None if patterns_meta is None else _snapshot(patterns_meta, "patterns_meta")
        kind = None
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise ConfigError(
                    f"recording {path} already exists; pass overwrite=True to replace it "
                    "(its data are deleted) or use Recording.resume(path) to append to it"
                )
            kind = _classify(path)
            if kind == "other":
                raise ConfigError(
                    f"{path} exists and is not an LSI recording (no {MANIFEST_FILE}); "
                    "refusing to delete it even with overwrite=True: choose another path"
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        run_id = uuid.uuid4().hex
        run = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "m": m,
            "pattern_name": pattern_name,
            "settings": snap,
            "patterns_meta": meta,
            "chunk_scenes": chunk_scenes,
            "created_unix": now,
            "created_utc": _utc(now),
            "units": {"values": "V", "timestamps": "s", "wall_time_unix": "s"},
            "layout": "see the docstring of lsi_hw.recording",
        }
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "n_batches": 0,
            "n_scenes": 0,
            "updated_unix": now,
            "batches": [],
        }
        # Build the recording under a temporary name, then rename it into place: a crash
        # leaves either no recording or a complete empty one.
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
            lock = _WriterLock(tmp / LOCK_FILE, path)
            atomic_write_bytes(tmp / RUN_FILE, _json_bytes(run))
            atomic_write_bytes(tmp / MANIFEST_FILE, _json_bytes(manifest))
            fsync_dir(tmp / BATCH_DIR)
            fsync_dir(tmp)
            if kind is None:
                os.rename(tmp, path)
            else:
                trash = path.parent / f".{path.name}.deleting-{os.getpid()}-{run_id[:8]}"
                if kind == "recording":
                    old_lock = _WriterLock(path / LOCK_FILE, path)
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
        return cls(path, run, manifest, lock)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Recording:
        """Open the recording at ``path`` read-only (no lock; a writer may be appending).

        Only committed batches are visible; call :meth:`refresh` to see batches committed
        since.

        Raises
        ------
        ConfigError
            ``path`` is not a readable LSI recording.
        """
        path = Path(path)
        run, manifest = _load_state(path)
        return cls(path, run, manifest, None)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        *,
        m: int | None = None,
        pattern_name: str | None = None,
        patterns_meta: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        allow_settings_change: bool = False,
    ) -> Recording:
        """Reopen an existing recording for appending (e.g. after a crash).

        Every argument given is compared with the recording; any difference raises a
        :class:`ConfigError` that lists what differs.  Leftovers of an interrupted append
        are deleted.

        Parameters
        ----------
        path:
            The recording directory.
        m, pattern_name, patterns_meta:
            Must equal the recorded values when given.
        settings:
            Run-level settings snapshot of the new session; compared with the recorded one
            (key by key) unless ``allow_settings_change``.  It does not replace the
            recorded run-level snapshot; each batch records its own snapshot anyway.
        allow_settings_change:
            Accept ``settings`` that differ from the recorded run-level snapshot.

        Raises
        ------
        ConfigError
            Not a recording, another writer holds it, or the run is incompatible.
        """
        path = Path(path)
        _load_state(path)  # clear error before creating a lock file in a random directory
        lock = _WriterLock(path / LOCK_FILE, path)
        try:
            run, manifest = _load_state(path)  # re-read under the lock
            _check_batch_dir(path)
            problems: list[str] = []
            if m is not None and _int_arg("m", m, 1) != run["m"]:
                problems.append(f"m differs (recorded {run['m']}, requested {m})")
            if pattern_name is not None and pattern_name != run["pattern_name"]:
                problems.append(
                    f"pattern_name differs (recorded {run['pattern_name']!r}, "
                    f"requested {pattern_name!r})"
                )
            if patterns_meta is not None:
                diffs = _diff(run.get("patterns_meta"), _snapshot(patterns_meta, "patterns_meta"))
                if diffs:
                    problems.append(f"patterns_meta differs: {_summarise(diffs)}")
            if settings is not None and not allow_settings_change:
                diffs = _diff(run["settings"], _snapshot(settings, "settings"))
                if diffs:
                    problems.append(
                        f"settings differ: {_summarise(diffs)} (Recording.resume(..., "
                        "allow_settings_change=True) continues with the new settings)"
                    )
            if problems:
                raise ConfigError(
                    f"cannot resume recording {path}: " + "; ".join(problems)
                    + "; record into a new path (or create(..., overwrite=True)) instead"
                )
            rec = cls(path, run, manifest, lock)
            rec._remove_leftovers()
        except BaseException:
            lock.release(remove=True)
            raise
        return rec

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike[str],
        *,
        m: int,
        settings: Mapping[str, Any],
        pattern_name: str,
        patterns_meta: Mapping[str, Any] | None = None,
        chunk_scenes: int = 64,
        allow_settings_change: bool = False,
    ) -> Recording:
        """:meth:`resume` the recording at ``path`` if it exists (checking every argument),
        else :meth:`create` it.  This is what a resumable acquisition command calls.
        """
        if Path(path).exists():
            return cls.resume(
                path,
                m=m,
                pattern_name=pattern_name,
                patterns_meta=patterns_meta,
                settings=settings,
                allow_settings_change=allow_settings_change,
            )
        return cls.create(
            path,
            m=m,
            settings=settings,
            pattern_name=pattern_name,
            patterns_meta=patterns_meta,
            chunk_scenes=chunk_scenes,
        )

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Release the writer lock and delete its file, so a finished recording holds no
        lock file (a no-op for readers and when already closed)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release(remove=True)

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            try:
                lock.release(remove=True)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __len__(self) -> int:
        return self.n_scenes

    def __repr__(self) -> str:
        mode = "writer" if self.writable else "reader"
        return (
            f"Recording({str(self._path)!r}, {mode}, m={self.m}, "
            f"batches={self.n_batches}, scenes={self.n_scenes})"
        )

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> Path:
        """Directory of the recording."""
        return self._path

    @property
    def writable(self) -> bool:
        """True for an open writer (from create/resume), False for readers or after close."""
        return self._lock is not None

    @property
    def m(self) -> int:
        """Number of patterns (columns of :attr:`values`)."""
        return int(self._run["m"])

    @property
    def pattern_name(self) -> str:
        """Name of the pattern set of the run."""
        return str(self._run["pattern_name"])

    @property
    def patterns_meta(self) -> dict[str, Any] | None:
        """Pattern-set description given at creation (a copy), or None."""
        return copy.deepcopy(self._run.get("patterns_meta"))

    @property
    def settings(self) -> dict[str, Any]:
        """Run-level settings snapshot given at creation (a copy)."""
        return copy.deepcopy(self._run["settings"])

    @property
    def chunk_scenes(self) -> int:
        """Largest number of scenes per chunk file."""
        return int(self._run["chunk_scenes"])

    @property
    def run_id(self) -> str:
        """Random id of this run (changes when a path is overwritten by a new run)."""
        return str(self._run["run_id"])

    @property
    def n_batches(self) -> int:
        """Number of committed batches."""
        return int(self._manifest["n_batches"])

    @property
    def n_scenes(self) -> int:
        """Number of committed scenes (rows of :attr:`values`)."""
        return int(self._manifest["n_scenes"])

    @property
    def values(self) -> np.ndarray:
        """(N, m) float64 detector readings in volts, all committed scenes (read-only)."""
        return self._arrays()[0]

    @property
    def timestamps(self) -> np.ndarray:
        """(N, m) float64 seconds, the start of each reading as the bench reported it."""
        return self._arrays()[1]

    @property
    def scene_ids(self) -> tuple[str, ...]:
        """Scene ids of all committed scenes, in append order (length N)."""
        ids: list[str] = []
        for index in range(self.n_batches):
            ids.extend(self._record(index)["scene_ids"])
        return tuple(ids)

    @property
    def batches(self) -> list[dict[str, Any]]:
        """One dict per committed batch (copies), in append order.

        Keys: ``index``, ``first_scene`` (row in :attr:`values`), ``n_scenes``,
        ``wall_time_unix`` (s, when the batch was committed), ``wall_time_utc``,
        ``pattern_name``, ``scene_ids`` and ``settings`` (the full snapshot of that batch).
        """
        return [
            {k: copy.deepcopy(v) for k, v in self._record(i).items() if k != "format"}
            for i in range(self.n_batches)
        ]

    def completed_scene_ids(self) -> set[str]:
        """Ids of every committed scene: what a resumed acquisition should skip."""
        done: set[str] = set()
        for index in range(self.n_batches):
            done.update(self._record(index)["scene_ids"])
        return done

    # ------------------------------------------------------------------ reading

    def refresh(self) -> int:
        """Re-read the manifest to see batches committed since opening (readers).

        Returns
        -------
        int
            Number of batches that became visible.

        Raises
        ------
        ConfigError
            The recording was replaced by a new run (overwrite) or is unreadable.
        """
        if self.writable:
            return 0
        before = self.n_batches
        run, manifest = _load_state(self._path)
        if run["run_id"] != self.run_id:
            raise ConfigError(
                f"recording {self._path} was replaced by a new run; open it again"
            )
        self._manifest = manifest
        if self.n_batches != before:
            self._cache = None
        return self.n_batches - before

    def to_measurement(self, rows: slice | None = None) -> Measurement:
        """Committed scenes ``rows`` (default all) as one :class:`Measurement`.

        ``settings`` is the snapshot of the batches the rows come from when they all share
        one; otherwise the run-level snapshot with a ``recording_batches`` list holding
        each batch's ``index``, ``first_scene``, ``n_scenes`` and ``settings``.
        """
        if rows is None:
            rows = slice(None)
        if not isinstance(rows, slice):
            raise ConfigError(f"rows must be a slice of scenes; got {type(rows).__name__}")
        chosen = range(*rows.indices(self.n_scenes))
        if len(chosen):
            lo, hi = min(chosen[0], chosen[-1]), max(chosen[0], chosen[-1]) + 1
            values, stamps = self._load_rows(lo, hi)  # checks sizes and memory first
            picked = np.arange(chosen.start, chosen.stop, chosen.step)
            values, stamps = values[picked - lo], stamps[picked - lo]
        else:
            picked = np.arange(0)
            values = stamps = np.empty((0, self.m))
        ids = self.scene_ids
        chosen_ids = tuple(ids[i] for i in picked)
        ordered = np.sort(picked)
        used = []
        for entry in self._manifest["batches"]:
            first, n = entry["first_scene"], entry["n_scenes"]
            k = int(np.searchsorted(ordered, first))
            if k < ordered.size and ordered[k] < first + n:
                used.append(self._record(entry["index"]))
        if used and all(r["settings"] == used[0]["settings"] for r in used):
            settings = copy.deepcopy(used[0]["settings"])
        else:
            settings = self.settings
            if used:
                settings["recording_batches"] = [
                    {k: copy.deepcopy(r[k]) for k in ("index", "first_scene", "n_scenes",
                                                      "settings")}
                    for r in used
                ]
        return Measurement(
            values=np.array(values, dtype=np.float64),
            settings=settings,
            timestamps=np.array(stamps, dtype=np.float64),
            pattern_name=self.pattern_name,
            scene_ids=chosen_ids,
        )

    def _record(self, index: int) -> dict[str, Any]:
        """The (cached, immutable) JSON record of committed batch ``index``."""
        record = self._records.get(index)
        if record is None:
            entry = self._manifest["batches"][index]
            file = self._path / entry["record"]
            raw = self._read_checked(entry["record"], entry["record_sha256"])
            record = _parse_json(raw, file, "batch record")
            ids = record.get("scene_ids") if isinstance(record, dict) else None
            if (
                not isinstance(record, dict)
                or record.get("index") != index
                or record.get("first_scene") != entry["first_scene"]
                or record.get("n_scenes") != entry["n_scenes"]
                or not isinstance(ids, list)
                or len(ids) != entry["n_scenes"]
                or not all(isinstance(i, str) and i for i in ids)
                or not isinstance(record.get("settings"), dict)
                or not isinstance(record.get("pattern_name"), str)
                or not _is_number(record.get("wall_time_unix"))
            ):
                raise ConfigError(
                    f"recording {self._path}: batch record {file} is malformed or does not "
                    "match the manifest (index, first_scene, n_scenes, scene_ids, settings, "
                    "pattern_name, wall_time_unix)"
                )
            self._records[index] = record
        return record

    def _open_member(self, name: str) -> int:
        """File descriptor of ``name`` (``batches/NAME``, checked by the manifest check),
        opened without following symlinks: neither ``batches`` nor NAME may be one."""
        file = self._path / name
        member = name.split("/", 1)[1]
        try:
            folder = os.open(self._path / BATCH_DIR,
                             os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
        except OSError as exc:
            raise ConfigError(
                f"recording {self._path}: its {BATCH_DIR}/ folder cannot be opened as a plain "
                f"folder (a symlink is refused): {_one_line(exc)}"
            ) from None
        try:
            fd = os.open(member, os.O_RDONLY | _NOFOLLOW, dir_fd=folder)
        except OSError as exc:
            raise ConfigError(
                f"committed file {file} of recording {self._path} cannot be read (a symlink is "
                f"refused): {_one_line(exc)}"
            ) from None
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"committed file {file} of recording {self._path} is not a "
                              "regular file")
        return fd

    def _read_checked(self, name: str, sha256: str) -> bytes:
        file = self._path / name
        fd = self._open_member(name)
        try:
            with os.fdopen(fd, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                check_allocation(size, f"reading {file}")
                raw = fh.read()
        except OSError as exc:
            raise ConfigError(f"committed file {file} cannot be read: {_one_line(exc)}"
                              ) from None
        if _sha256(raw) != sha256:
            raise ConfigError(
                f"committed file {file} fails its sha256 check: it was modified or damaged "
                "after it was written (restore it from a backup)"
            )
        return raw

    def _check_chunk_headers(self, chunk: Mapping[str, Any]) -> None:
        """The chunk's arrays, from their .npz headers only (nothing inflated): values and
        timestamps (n, m) float64 and scene_ids (n,) strings, as the manifest says."""
        _check_batch_dir(self._path)  # never read headers through a symlinked batches/
        file = self._path / chunk["file"]
        headers = npz_headers(file)
        n, m = chunk["n_scenes"], self.m
        expected = {"values": (n, m), "timestamps": (n, m), "scene_ids": (n,)}
        for key, shape in expected.items():
            head = headers.get(key)
            kind_ok = head is not None and (
                head.dtype.kind == "U" if key == "scene_ids" else head.dtype == np.float64)
            if head is None or head.shape != shape or not kind_ok:
                got = "missing" if head is None else f"{head.shape} {head.dtype}"
                raise ConfigError(
                    f"recording {self._path}: chunk {file} does not match the manifest "
                    f"({key} is {got}; the manifest says {shape})"
                )

    def _load_chunk(self, chunk: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        self._check_chunk_headers(chunk)
        raw = self._read_checked(chunk["file"], chunk["sha256"])
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                values, stamps = data["values"], data["timestamps"]
        except (*READ_ERRORS, KeyError) as exc:
            raise ConfigError(f"committed file {self._path / chunk['file']} is corrupt "
                              f"({_one_line(exc)})") from None
        if values.shape != (chunk["n_scenes"], self.m) or stamps.shape != values.shape:
            raise ConfigError(f"{self._path / chunk['file']} does not match the manifest")
        return values, stamps

    def _check_rows(self, lo: int, hi: int) -> None:
        """Before reading scenes ``lo:hi``: every chunk they need must be large enough on
        disk for the scenes the manifest claims it holds (float64 values and timestamps),
        and the result must fit in memory (:func:`lsi_hw.limits.check_allocation`)."""
        m = self.m
        start = 0
        for entry in self._manifest["batches"]:
            for chunk in entry["chunks"]:
                n = chunk["n_scenes"]
                if start + n > lo and start < hi:
                    file = self._path / chunk["file"]
                    try:
                        info = os.lstat(file)
                    except OSError as exc:
                        raise ConfigError(f"committed file {file} cannot be read: "
                                          f"{_one_line(exc)}") from None
                    if not stat.S_ISREG(info.st_mode):
                        raise ConfigError(
                            f"committed file {file} of recording {self._path} is not a "
                            "regular file (a symlink is refused: a recording's files must "
                            "be inside it)"
                        )
                    size = info.st_size
                    need = 2 * 8 * n * m
                    if size < need:
                        raise ConfigError(
                            f"recording {self._path}: {MANIFEST_FILE} claims {n} scenes x {m} "
                            f"patterns in {file}, which needs at least {format_bytes(need)}, "
                            f"but the file holds {format_bytes(size)}: the manifest does not "
                            "match its data (damaged or forged)"
                        )
                start += n
        check_allocation(
            (hi - lo) * m * _BYTES_PER_READING,
            f"reading scenes {lo}..{hi} of recording {self._path} ({hi - lo} scenes x {m} "
            "patterns)",
        )

    def _load_rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and timestamps of committed scenes ``lo:hi`` (reads only needed chunks)."""
        if self._cache is not None:
            return self._cache[0][lo:hi], self._cache[1][lo:hi]
        self._check_rows(lo, hi)
        parts_v, parts_t = [], []
        for entry in self._manifest["batches"]:
            start = entry["first_scene"]
            for chunk in entry["chunks"]:
                end = start + chunk["n_scenes"]
                if end > lo and start < hi:
                    values, stamps = self._load_chunk(chunk)
                    a, b = max(lo, start) - start, min(hi, end) - start
                    parts_v.append(values[a:b])
                    parts_t.append(stamps[a:b])
                start = end
        if not parts_v:
            return np.empty((0, self.m)), np.empty((0, self.m))
        return np.concatenate(parts_v), np.concatenate(parts_t)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            values, stamps = self._load_rows(0, self.n_scenes)
            values.flags.writeable = False
            stamps.flags.writeable = False
            self._cache = (values, stamps)
        return self._cache

    # ------------------------------------------------------------------ writing

    def append(
        self,
        data: Measurement | np.ndarray | Sequence[Sequence[float]],
        timestamps: np.ndarray | Sequence[Sequence[float]] | None = None,
        scene_ids: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Validate one batch, store it and make it durable before returning.

        Call either ``append(measurement)`` or ``append(values, timestamps, scene_ids,
        settings=None)``.

        Parameters
        ----------
        data:
            A :class:`Measurement` (its values, timestamps, scene ids and settings are
            stored; a non-empty ``pattern_name`` must match the run's), or the (B, m)
            readings in volts.
        timestamps:
            (B, m) seconds, required with raw values.
        scene_ids:
            B scene ids (non-empty strings), required with raw values.
        settings:
            Snapshot of this batch; default the Measurement's, or the run-level snapshot
            for raw values.

        Returns
        -------
        int
            Index of the committed batch.

        Raises
        ------
        ConfigError
            Closed or read-only recording; wrong shape, ``m`` or dtype; a non-finite
            reading or timestamp; bad scene ids; settings not JSON-serialisable.
        """
        if not self.writable:
            raise ConfigError(
                f"recording {self._path} is not open for writing (opened read-only or "
                "closed); use Recording.resume(path) to append"
            )
        batch = self.n_batches
        if isinstance(data, Measurement):
            if timestamps is not None or scene_ids is not None:
                raise TypeError("append(measurement) takes no timestamps or scene_ids")
            if data.pattern_name and data.pattern_name != self.pattern_name:
                raise ConfigError(
                    f"batch {batch}: measurement pattern_name {data.pattern_name!r} differs "
                    f"from the recording's {self.pattern_name!r}; record it in another "
                    "recording"
                )
            values, stamps, ids = data.values, data.timestamps, data.scene_ids
            snap_src: Any = data.settings if settings is None else settings
        else:
            if timestamps is None or scene_ids is None:
                raise TypeError("append(values, timestamps, scene_ids) needs all three")
            values, stamps, ids = data, timestamps, scene_ids
            snap_src = self._run["settings"] if settings is None else settings
        values = self._check_array("values", values, batch, None)
        stamps = self._check_array("timestamps", stamps, batch, values.shape)
        id_list = self._check_ids(ids, values.shape[0], batch)
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
        snap = _snapshot(snap_src, f"batch {batch}: settings")
        self._commit(batch, values, stamps, id_list, snap)
        return batch

    def _check_array(
        self, name: str, arr: Any, batch: int, shape: tuple[int, ...] | None
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
            if raw.ndim != 2 or raw.shape[1] != self.m:
                raise ConfigError(
                    f"batch {batch}: {name} must be (B, m={self.m}) (B scenes x m patterns); "
                    f"got shape {raw.shape}"
                )
            if raw.shape[0] == 0:
                raise ConfigError(f"batch {batch}: empty batch (0 scenes); nothing to record")
        return np.ascontiguousarray(raw, dtype=np.float64)

    @staticmethod
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

    def _commit(
        self,
        batch: int,
        values: np.ndarray,
        stamps: np.ndarray,
        ids: list[str],
        snap: dict[str, Any],
    ) -> None:
        """Write the batch files, then the manifest (the commit point), durably."""
        root, folder = self._path, self._path / BATCH_DIR
        first, n = self.n_scenes, values.shape[0]
        now = time.time()
        chunks = []
        step = self.chunk_scenes
        for part, lo in enumerate(range(0, n, step)):
            hi = min(lo + step, n)
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
                           "sha256": _sha256(raw)})
        record = {
            "format": FORMAT_NAME,
            "index": batch,
            "first_scene": first,
            "n_scenes": n,
            "wall_time_unix": now,
            "wall_time_utc": _utc(now),
            "pattern_name": self.pattern_name,
            "scene_ids": ids,
            "settings": snap,
        }
        record_raw = _json_bytes(record)
        record_name = f"{BATCH_DIR}/{batch:06d}.json"
        atomic_write_bytes(root / record_name, record_raw)
        fsync_dir(folder)
        entry = {
            "index": batch,
            "first_scene": first,
            "n_scenes": n,
            "wall_time_unix": now,
            "record": record_name,
            "record_sha256": _sha256(record_raw),
            "chunks": chunks,
        }
        manifest = dict(self._manifest)
        manifest.update(
            n_batches=batch + 1,
            n_scenes=first + n,
            updated_unix=now,
            batches=[*self._manifest["batches"], entry],
        )
        atomic_write_bytes(root / MANIFEST_FILE, _json_bytes(manifest))  # commit point
        self._manifest = manifest
        self._records[batch] = record
        self._cache = None
        fsync_dir(root)

    def _remove_leftovers(self) -> None:
        """Delete files of interrupted appends (only our names, only unreferenced ones)."""
        keep = set()
        for entry in self._manifest["batches"]:
            keep.add(Path(entry["record"]).name)
            keep.update(Path(c["file"]).name for c in entry["chunks"])
        _check_batch_dir(self._path)
        folder = self._path / BATCH_DIR
        for file in folder.iterdir():
            if _OURS.match(file.name) and file.name not in keep:
                file.unlink(missing_ok=True)
        for name in (RUN_FILE, MANIFEST_FILE):
            (self._path / (name + _TMP_SUFFIX)).unlink(missing_ok=True)
            for tmp in self._path.glob(f".{name}.*{_TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)


def read_measurements(path: str | os.PathLike[str]) -> Measurement:
    """Every committed scene of the recording at ``path`` as one :class:`Measurement`."""
    return Recording.open(path).to_measurement()
