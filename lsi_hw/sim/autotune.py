"""Per-machine autotuning of the projection paths, and the file that remembers the choices.

The paths of :mod:`lsi_hw.sim.kernel_paths` differ in speed by up to ~100x from one problem
shape to another, and how they rank depends on the machine (vector width, cache sizes,
cores, BLAS).  The first time a :class:`~lsi_hw.sim.kernels.Projector` meets a *shape
class* (:func:`shape_class`: dtype class, Hadamard or not, numba threads, and the number of
masks, pixels and images rounded to powers of two; batches of 1 to 4 exactly) it times the
candidate paths on a smaller problem of that class (:func:`time_paths`), keeps the fastest,
and stores the choice in a per-machine file (:class:`TuningStore`), so that later runs of
any program on this machine skip the timing.

Timing (:func:`time_paths`): candidates that the static cost model
(:mod:`lsi_hw.sim.costmodel`) predicts more than :data:`PRUNE` times slower than its best
are not timed.  Each remaining path runs on the first masks of the call (the call's own
images and masks; random stand-in masks for the packed paths of a Hadamard set, whose
masks the ``fwht`` path never packs): a probe on ``4 x threads`` masks shows how much
faster or slower than the model this machine runs the path, a second run on more masks
is sized to about :data:`RUN_S` seconds (more when the path's fixed cost, e.g. building
LUT tables, is larger), and the two give the time of the whole call by a straight line in
``m`` (every path costs ``a + b m``); the best of :data:`REPEATS` runs counts.  The model's
favourite is always timed; the others while less than :data:`TOTAL_S` seconds are spent on
the class (``blas`` last, so that its spinning BLAS threads do not slow the numba
timings).  A kernel's first run in a process (numba compiling it or loading it from its
disk cache) is not timed.  Problems whose best path the model puts under :data:`TINY_S`
are not timed: any path is fast there.  On a busy machine (:func:`machine_busy`) the
timings are used by the process but not written to the file.

The file: ``$XDG_CACHE_HOME/lsi-toolkit/kernels-<key>.json`` (``~/.cache/lsi-toolkit/``
when ``XDG_CACHE_HOME`` is unset or relative), one per machine: ``<key>`` is a digest of the
CPU model, ISA flags and count, and the numba, numpy and tuning-format versions
(:func:`machine_info`); written atomically (:mod:`lsi_hw.atomic`).  A file that cannot be
read or parsed is ignored with a :class:`KernelTuningWarning` and rewritten by the next
tuning.

Environment: ``LSI_KERNELS_AUTOTUNE=0`` turns autotuning off (the cost model alone
chooses: deterministic, nothing read or written); ``LSI_KERNELS_RETUNE=1`` ignores the
stored choices and tunes every shape class again on first use (each once per process),
overwriting them.  :func:`lsi_hw.sim.kernels.reset_kernel_tuning` (or deleting the file)
forgets them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numba
import numpy as np

from lsi_hw.atomic import atomic_write_text
from lsi_hw.errors import ConfigError
from lsi_hw.sim.kernel_paths import PATHS, Masks, execute
from lsi_hw.user_cache import user_cache_dir

__all__ = [
    "BUSY_LOAD",
    "ENV_AUTOTUNE",
    "ENV_RETUNE",
    "FORMAT",
    "PRUNE",
    "REPEATS",
    "RUN_S",
    "TINY_S",
    "TOTAL_S",
    "KernelTuningWarning",
    "TuningStore",
    "autotune_enabled",
    "default_store",
    "machine_busy",
    "machine_info",
    "retune_requested",
    "shape_class",
    "time_paths",
    "tuning_lock",
    "tuning_path",
]

#: Version of the tuning file's content; bump it when a kernel changes speed or a path is
#: added, so that choices made for the old kernels are ignored.
FORMAT = 2
ENV_AUTOTUNE = "LSI_KERNELS_AUTOTUNE"
ENV_RETUNE = "LSI_KERNELS_RETUNE"

#: Target seconds of one timed run (the cost model sizes the smaller problem to it; a run
#: takes longer when a path's fixed cost alone, e.g. building LUT tables, is larger).
RUN_S = 0.002
#: Seconds of timing per shape class after which no further candidate is timed.
TOTAL_S = 0.15
#: Candidates predicted more than this many times slower than the best are not timed.
PRUNE = 8.0
#: Problems whose best path the cost model predicts under this many seconds are not timed.
TINY_S = 2e-4
#: Timed runs per mask count (the fastest counts).
REPEATS = 2
#: The two best estimates within this factor of each other are close: both paths are then
#: run once on the whole problem and those times decide (extrapolating from a few masks can
#: miss cache effects: a 6x wrong choice was seen at m = 256, batch 64).
CLOSE = 2.0
#: ... unless a whole run is estimated to take longer than this many seconds.
CONFIRM_MAX_S = 0.5
#: A machine whose 1-minute load average exceeds this many runnable threads per CPU is
#: busy: timings taken then are used by the process but not written to the tuning file.
BUSY_LOAD = 1.5

_OFF = ("0", "false", "off", "no")
_ON = ("1", "true", "on", "yes")


class KernelTuningWarning(UserWarning):
    """The kernel tuning file could not be read or written (projection goes on)."""


def autotune_enabled() -> bool:
    """False when ``LSI_KERNELS_AUTOTUNE`` is 0 / false / off / no (default: on)."""
    return os.environ.get(ENV_AUTOTUNE, "1").strip().lower() not in _OFF


def machine_busy() -> bool:
    """Whether the 1-minute load average exceeds :data:`BUSY_LOAD` per CPU (timings are
    then distorted by other work: threads wait for a core at every parallel region)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - platforms without load average
        return False
    return load > BUSY_LOAD * (os.cpu_count() or 1)


def retune_requested() -> bool:
    """True when ``LSI_KERNELS_RETUNE`` is 1 / true / on / yes."""
    return os.environ.get(ENV_RETUNE, "").strip().lower() in _ON


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------

_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
        "amx_tile", "asimd", "sve", "sve2")


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """What the tuning file is keyed by: CPU model, ISA flags, cache size, CPU count, numba,
    numpy and tuning-format versions (the numba thread count is part of each shape class)."""
    cpu, cache, flags = "", "", set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name in ("model name", "cpu model", "hardware") and not cpu:
                    cpu = value
                elif name == "cache size" and not cache:
                    cache = value
                elif name in ("flags", "features") and not flags:
                    flags = set(value.split())
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "isa": [f for f in _ISA if f in flags],
        "cache": cache,
        "cpus": os.cpu_count() or 1,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "format": FORMAT,
    }


@lru_cache(maxsize=1)
def _machine_digest() -> str:
    text = json.dumps(machine_info(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tuning_path() -> Path:
    """This machine's tuning file: ``$XDG_CACHE_HOME/lsi-toolkit/kernels-<key>.json`` when
    ``XDG_CACHE_HOME`` is an absolute path, else ``~/.cache/lsi-toolkit/kernels-<key>.json``."""
    return user_cache_dir(f"kernels-{_machine_digest()}.json")


def _bucket(value: int) -> int:
    """``round(log2(value))`` (0 for 0 or 1)."""
    return round(float(np.log2(value))) if value > 1 else 0


def shape_class(m: int, n: int, batch: int, kind: str, hadamard: bool, threads: int) -> str:
    """Key of a shape class, e.g. ``"float32 had thr2 m2^12 n2^16 b2^3"``: the dtype class,
    Hadamard set or not, numba threads, masks and pixels rounded to a power of two, and the
    batch (exact up to 4 images, else rounded to a power of two)."""
    b = f"b{batch}" if batch <= 4 else f"b2^{_bucket(batch)}"
    return (f"{kind} {'had' if hadamard else 'any'} thr{threads} m2^{_bucket(m)} "
            f"n2^{_bucket(n)} {b}")


# --------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------


class TuningStore:
    """The tuned choices of one machine, kept in memory and in a JSON file.

    Parameters
    ----------
    path : path-like or None
        The file; None: :func:`tuning_path`, looked up again at each access (so a changed
        ``XDG_CACHE_HOME`` takes effect).

    Notes
    -----
    Thread-safe.  The file is read on first use and again when another process has
    replaced it; each new choice is merged into the file as it is on disk and written
    atomically (two processes tuning at once both keep their choices, except that the
    last one wins for a class both tuned).  A file that cannot be read or parsed, or
    written, raises a :class:`KernelTuningWarning` once and is otherwise ignored.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._fixed = None if path is None else Path(path)
        self._lock = threading.Lock()
        self._loaded: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._fresh: set[str] = set()  # classes tuned by this process
        self._volatile: set[str] = set()  # ... of which not written (machine busy)
        self._warned: set[tuple[str, str]] = set()

    @property
    def path(self) -> Path:
        """The file (see the ``path`` parameter)."""
        return self._fixed if self._fixed is not None else tuning_path()

    def get(self, key: str, valid: Iterable[str] = PATHS) -> dict[str, Any] | None:
        """The stored entry of shape class ``key`` whose method is in ``valid``, or None.

        With ``LSI_KERNELS_RETUNE=1`` only entries tuned by this process count.
        """
        with self._lock:
            self._sync(self.path)
            entry = self._entries.get(key)
            if entry is None or entry.get("method") not in tuple(valid):
                return None
            if retune_requested() and key not in self._fresh:
                return None
            return dict(entry)

    def put(self, key: str, entry: dict[str, Any], persist: bool = True) -> None:
        """Store ``entry`` (with a valid "method") for ``key`` and, if ``persist``, write
        the file (else the entry serves this process only)."""
        with self._lock:
            path = self.path
            self._sync(path)
            self._entries[key] = dict(entry)
            self._fresh.add(key)
            if not persist:
                self._volatile.add(key)
                return
            self._volatile.discard(key)
            on_disk = self._read(path, quiet=True) or {}
            on_disk.update({k: self._entries[k] for k in self._fresh - self._volatile
                            if k in self._entries})
            self._entries = {**on_disk, **{k: self._entries[k] for k in self._volatile
                                           if k in self._entries}}
            doc = {"format": FORMAT, "machine": machine_info(), "plans": on_disk}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
                self._stamp = self._stat(path)
            except (OSError, ConfigError) as exc:
                self._warn(path, "write", f"cannot write the kernel tuning file {path} "
                           f"({exc}); the choices are kept for this process only")

    def entries(self) -> dict[str, dict[str, Any]]:
        """Copy of every stored entry (shape class -> entry)."""
        with self._lock:
            self._sync(self.path)
            return {k: dict(v) for k, v in self._entries.items()}

    def reset(self) -> Path | None:
        """Forget every choice (in memory and on disk); returns the file removed, if any.

        Raises
        ------
        ConfigError
            If the file exists but cannot be removed (the choices in memory are gone).
        """
        with self._lock:
            path = self.path
            self._entries, self._fresh, self._loaded, self._stamp = {}, set(), None, None
            self._volatile = set()
            self._warned.clear()
            try:
                path.unlink()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise ConfigError(f"cannot remove the kernel tuning file {path} ({exc}); "
                                  "remove it by hand") from None
            return path

    # -- internals (self._lock held) ----------------------------------------------------

    @staticmethod
    def _stat(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _sync(self, path: Path) -> None:
        """(Re)load the file when it is another file or was replaced since it was read."""
        stamp = self._stat(path)
        if path == self._loaded and stamp == self._stamp:
            return
        if path != self._loaded:
            self._entries, self._fresh, self._volatile = {}, set(), set()
        loaded = self._read(path, quiet=False) or {}
        loaded.update({k: self._entries[k] for k in self._fresh if k in self._entries})
        self._entries, self._loaded, self._stamp = loaded, path, stamp

    def _read(self, path: Path, quiet: bool) -> dict[str, dict[str, Any]] | None:
        """The plans of the file (None when it is missing, unreadable or of another
        machine / format); warns about a damaged file unless ``quiet``."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            if not quiet:
                self._warn(path, "read", f"cannot read the kernel tuning file {path} "
                           f"({exc}); ignoring it")
            return None
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("plans"), dict):
                raise ValueError("not a tuning file: no 'plans' table")
            if doc.get("format") != FORMAT or doc.get("machine") != machine_info():
                return None  # another tuning format or machine: overwritten when tuning
            plans = {str(k): dict(v) for k, v in doc["plans"].items()
                     if isinstance(v, dict) and v.get("method") in PATHS}
        except (ValueError, TypeError) as exc:
            if not quiet:
                self._warn(path, "parse", f"ignoring the damaged kernel tuning file {path} "
                           f"({exc}); it is rewritten by the next tuning")
            return None
        return plans

    def _warn(self, path: Path, what: str, message: str) -> None:
        if (str(path), what) not in self._warned:
            self._warned.add((str(path), what))
            warnings.warn(message, KernelTuningWarning, stacklevel=2)


_DEFAULT_STORE = TuningStore()


def default_store() -> TuningStore:
    """The store of :func:`tuning_path` shared by every projector that has none of its own."""
    return _DEFAULT_STORE


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------

#: (path, image dtype, wide integers) already run in this process: their first run may
#: compile or load the kernel and is not timed.
_WARM: set[tuple[str, str, bool]] = set()
_TUNING = threading.Lock()


def tuning_lock() -> threading.Lock:
    """Held while a shape class is timed (one timing at a time in a process)."""
    return _TUNING


def time_paths(
    mk: Masks,
    x: np.ndarray,
    kind: str,
    candidates: Iterable[str],
    predict: Callable[[str, int], float],
) -> tuple[dict[str, float], float]:
    """Time the projection paths on smaller problems of the same shape class.

    Parameters
    ----------
    mk : Masks
        The call's masks (``m`` of them).
    x : numpy.ndarray
        The call's (B, n) images, converted for ``kind``.
    kind : str
        "float32", "float64" or "uint8".
    candidates : iterable of str
        Paths to consider (of :data:`~lsi_hw.sim.kernel_paths.PATHS`).
    predict : callable
        ``predict(path, k)``: the cost model's seconds for ``k`` masks of this problem.

    Returns
    -------
    timed : dict
        Estimated seconds of the whole call per path timed (empty when fewer than two
        candidates are worth timing).
    spent : float
        Seconds spent timing (runs that compiled or loaded a kernel excluded).
    """
    m = mk.m
    pred = {c: predict(c, m) for c in candidates}
    best = min(pred.values())
    # the model's favourite first, blas last (its BLAS threads spin on after each call)
    order = sorted((c for c in pred if pred[c] <= PRUNE * best),
                   key=lambda c: (pred[c] > best, c == "blas", pred[c]))
    if len(order) < 2:
        return {}, 0.0
    stand_in: list[np.ndarray] = []

    def head(path: str, k: int) -> Masks:
        """The first ``k`` masks; random stand-ins for the packed paths of a Hadamard set."""
        if path != "fwht" and mk.hadamard:
            if not stand_in or stand_in[0].shape[0] < k:
                rng = np.random.default_rng(0)
                stand_in[:] = [rng.integers(0, 256, size=(k, mk.nbytes), dtype=np.uint8)]
            return mk.head(k, stand_in[0][:k])
        return mk if k >= m else mk.head(k)

    clock = _Clock()
    timed: dict[str, float] = {}
    for path in order:
        if timed and clock.spent >= TOTAL_S:
            break
        est = _time_one(path, head, x, kind, m, predict, clock, must=not timed)
        if est is not None:
            timed[path] = est
    best_two = sorted(timed, key=timed.__getitem__)[:2]
    if len(best_two) == 2 and timed[best_two[1]] <= CLOSE * timed[best_two[0]]:
        for path in best_two:
            if timed[path] <= CONFIRM_MAX_S:  # the faster of two whole runs
                full = head(path, m)
                timed[path] = min(clock.run(path, full, x, kind) for _ in range(REPEATS))
    return timed, clock.spent


class _Clock:
    """Seconds of timing spent on one shape class."""

    def __init__(self) -> None:
        self.spent = 0.0

    def run(self, path: str, mk: Masks, x: np.ndarray, kind: str, counted: bool = True
            ) -> float:
        start = time.perf_counter()
        execute(path, mk, x, kind)
        took = time.perf_counter() - start
        if counted:
            self.spent += took
        return took


def _time_one(path: str, head: Callable[[str, int], Masks], x: np.ndarray, kind: str, m: int,
              predict: Callable[[str, int], float], clock: _Clock, must: bool
              ) -> float | None:
    """Estimated seconds of ``path`` for all ``m`` masks, or None when the budget ran out
    before a first estimate (never when ``must``).

    A probe on ``4 x threads`` masks (after an untimed run when the kernel is new to this
    process) measures how much faster or slower than the model this machine runs the path;
    the larger run is then sized to about ``max(RUN_S, 3 x fixed cost)`` seconds, with at
    least 4x the probe's masks, and the two give ``a + b m``.
    """
    warm_key = (path, str(x.dtype), kind == "uint8" and 255 * x.shape[1] >= 2**24)
    k_p = min(m, 4 * numba.get_num_threads())
    probe = head(path, k_p)
    if warm_key not in _WARM:  # JIT compilation or numba's disk cache: not timed
        clock.run(path, probe, x, kind, counted=False)
        _WARM.add(warm_key)
    if not must and clock.spent >= TOTAL_S:
        return None
    t_p = clock.run(path, probe, x, kind)
    if k_p >= m:  # the probe is the whole problem
        for _ in range(REPEATS - 1):
            if clock.spent < TOTAL_S:
                t_p = min(t_p, clock.run(path, probe, x, kind))
        return t_p
    scale = t_p / max(predict(path, k_p), 1e-9)  # this machine / the model
    fixed = scale * predict(path, 0)
    per_mask = max(scale * (predict(path, m) - predict(path, 0)) / m, 1e-12)
    k_hi = int(min(m, max(4 * k_p, (max(RUN_S, 3.0 * fixed) - fixed) / per_mask)))
    if not must and clock.spent + fixed + per_mask * k_hi >= TOTAL_S:
        return None
    big = head(path, k_hi)
    t_hi = clock.run(path, big, x, kind)
    for _ in range(REPEATS - 1):
        if clock.spent + t_p + t_hi < TOTAL_S:
            t_p = min(t_p, clock.run(path, probe, x, kind))
            t_hi = min(t_hi, clock.run(path, big, x, kind))
    if k_hi >= m:
        return t_hi
    slope = max(0.0, (t_hi - t_p) / (k_hi - k_p))
    return t_hi + slope * (m - k_hi)
