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

Code: :class:`Recording` (this module) keeps a recording's state and calls
:mod:`lsi_hw.recording_format` (file names, JSON encoding, checks of ``run.json`` and
``manifest.json``), :mod:`lsi_hw.recording_reader` (reading committed files safely) and
:mod:`lsi_hw.recording_writer` (writer lock, creating, committing, cleaning up).
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.atomic import atomic_write_bytes, fsync_dir
from lsi_hw.errors import ConfigError, require_int
from lsi_hw.locking import PathLock
from lsi_hw.recording_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_FILE,
    MANIFEST_FILE,
    check_batch_dir,
    classify_path,
    json_bytes,
    load_state,
    new_manifest,
    new_run,
    snapshot,
)
from lsi_hw.recording_reader import load_rows, read_record
from lsi_hw.recording_writer import (
    WriterLock,
    check_batch,
    create_folder,
    remove_leftovers,
    resume_problems,
    write_batch_files,
)
from lsi_hw.types import Measurement

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Recording", "read_measurements"]


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
        lock: PathLock | None,
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
        m = require_int("m", m, 1)
        chunk_scenes = require_int("chunk_scenes", chunk_scenes, 1)
        if not isinstance(pattern_name, str):
            raise ConfigError(f"pattern_name must be a str; got {type(pattern_name).__name__}")
        snap = snapshot(settings, "settings")
        meta = None if patterns_meta is None else snapshot(patterns_meta, "patterns_meta")
        kind = None
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise ConfigError(
                    f"recording {path} already exists; pass overwrite=True to replace it "
                    "(its data are deleted) or use Recording.resume(path) to append to it"
                )
            kind = classify_path(path)
            if kind == "other":
                raise ConfigError(
                    f"{path} exists and is not an LSI recording (no {MANIFEST_FILE}); "
                    "refusing to delete it even with overwrite=True: choose another path"
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        run_id = uuid.uuid4().hex
        run = new_run(run_id, now, m=m, pattern_name=pattern_name, settings=snap,
                      patterns_meta=meta, chunk_scenes=chunk_scenes)
        manifest = new_manifest(run_id, now)
        lock = create_folder(path, run, manifest, kind)
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
        run, manifest = load_state(path)
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
        load_state(path)  # clear error before creating a lock file in a random directory
        lock = WriterLock(path / LOCK_FILE, path)
        try:
            run, manifest = load_state(path)  # re-read under the lock
            check_batch_dir(path)
            problems = resume_problems(run, m=m, pattern_name=pattern_name,
                                       patterns_meta=patterns_meta, settings=settings,
                                       allow_settings_change=allow_settings_change)
            if problems:
                raise ConfigError(
                    f"cannot resume recording {path}: " + "; ".join(problems)
                    + "; record into a new path (or create(..., overwrite=True)) instead"
                )
            rec = cls(path, run, manifest, lock)
            remove_leftovers(path, manifest)
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
        run, manifest = load_state(self._path)
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
            record = read_record(self._path, self._manifest["batches"][index], index)
            self._records[index] = record
        return record

    def _load_rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and timestamps of committed scenes ``lo:hi`` (reads only needed chunks)."""
        if self._cache is not None:
            return self._cache[0][lo:hi], self._cache[1][lo:hi]
        return load_rows(self._path, self._manifest, self.m, lo, hi)

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
        values, stamps, id_list = check_batch(self.m, batch, values, stamps, ids)
        snap = snapshot(snap_src, f"batch {batch}: settings")
        self._commit(batch, values, stamps, id_list, snap)
        return batch

    def _commit(
        self,
        batch: int,
        values: np.ndarray,
        stamps: np.ndarray,
        ids: list[str],
        snap: dict[str, Any],
    ) -> None:
        """Write the batch files, then the manifest (the commit point), durably."""
        root = self._path
        first = self.n_scenes
        now = time.time()
        entry, record = write_batch_files(
            root, batch=batch, first=first, now=now, values=values, stamps=stamps, ids=ids,
            snap=snap, chunk_scenes=self.chunk_scenes, pattern_name=self.pattern_name)
        manifest = dict(self._manifest)
        manifest.update(
            n_batches=batch + 1,
            n_scenes=first + values.shape[0],
            updated_unix=now,
            batches=[*self._manifest["batches"], entry],
        )
        atomic_write_bytes(root / MANIFEST_FILE, json_bytes(manifest))  # commit point
        self._manifest = manifest
        self._records[batch] = record
        self._cache = None
        fsync_dir(root)


def read_measurements(path: str | os.PathLike[str]) -> Measurement:
    """Every committed scene of the recording at ``path`` as one :class:`Measurement`."""
    return Recording.open(path).to_measurement()
