"""Fast projection of images onto binary masks, and the fast Walsh-Hadamard transform.

A single-pixel camera reads, for every binary mask ``k`` and scene ``b``, the sum of the
scene's pixels under the mask: ``y[b, k] = sum_p mask_k[p] * x[b, p]``.  With 256 x 256
masks (``n = 65536`` pixels) and thousands of masks, the dense product
``masks(float32, m x n) @ x.T`` is dominated by reading the mask matrix (1 GiB for
m = 4096).  The masks stay bit-packed (32x less memory than float32, see
``docs/architecture.md``: pixel ``p`` is bit ``p % 8`` of byte ``p // 8``) and are projected
by one of these paths (:mod:`lsi_hw.sim.kernel_paths`, on the numba loops of
:mod:`lsi_hw.sim.numba_kernels`):

``bitplane``
    The images are rearranged once into 8 bit-plane views ``x_b[j] = x[8 j + b]``; each mask
    (in parallel over masks) is then 8 masked sums over contiguous views, which LLVM
    vectorises (a compare + blend + add per 16 float32 lanes).  Images go 4 at a time
    through one decode of the mask bits, and for batches the pixels are split into passes
    whose image planes stay in L2.  Usually best for one to ~16 images.
``lut8`` / ``lut4`` ("four Russians")
    For every byte (nibble) position the sums of its 8 (4) pixels for all 256 (16) bit
    patterns are tabulated for every image of the batch (table ``(positions, 256|16, B)``,
    batch innermost so the adds vectorise over the batch); a mask is then one table-row add
    per byte (two per byte for nibbles), i.e. 8x (4x) fewer adds than dense.  Threads split
    the byte positions, each with a private, 64-byte aligned table block that stays in its
    L2 cache and a private partial result.  Usually best for batches of ~16 images and more.
``blas``
    Masks are unpacked to float in blocks of a few MiB and multiplied with BLAS (numpy's
    ``matmul``).
``fwht``
    Hadamard :class:`~lsi_hw.patterns.PatternSet` (``hadamard_rows`` not None): the whole
    transform ``H x`` (:func:`fwht`, :mod:`lsi_hw.sim.walsh`) costs ``O(n log n)`` per image
    and every mask follows from ``(1 + s H[k]) / 2 . x = (sum(x) + s (H x)[k]) / 2`` -- full,
    partial and split sets.

8-bit scenes (``uint8`` images) take an exact path: the bit-plane kernel carries the 8-bit
values in float32 lanes in chunks of 32768 bytes, so every partial sum is an integer below
``2**24`` and therefore exact, and sums the chunks in float64; the LUT kernels use int32
tables and accumulators (int64 if ``255 n >= 2**31``); BLAS runs in float32 when
``255 n < 2**24`` (all partial sums are then integers below ``2**24``), else float64; the
FWHT runs in float64.  Results are exact integers returned as float64.  Every path gives
the same sums within float rounding, so the choice of path only changes the last bits.

Choosing the path: :func:`project` asks a :class:`Projector`, whose plans are cached per
``(m, n, batch, dtype, hadamard, threads)``.  By default the first call of a *shape class*
(masks, pixels and images rounded to powers of two, dtype, Hadamard, numba threads) times
the plausible paths on a smaller problem of that class (a few ms per path; no new path is
started after 0.15 s; kernel compilation not counted: :mod:`lsi_hw.sim.autotune`) and
keeps the fastest in ``$XDG_CACHE_HOME/lsi-toolkit/kernels-<machine>.json``
(``~/.cache/lsi-toolkit/`` without ``XDG_CACHE_HOME``), so that later runs on this machine
skip the timing.  Small problems (best path under ~0.2 ms by the model), and all problems
when autotuning is off, take the choice of the static cost model
(:mod:`lsi_hw.sim.costmodel`, constants measured on one development machine).  Timings
taken while the machine is busy (load average above 1.5 per CPU) serve the process but
are not written.

Environment variables:

``LSI_KERNELS_AUTOTUNE=0``
    No timing, no tuning file: the cost model chooses (the same path, hence the same float
    rounding, on every run; for tests and CI that compare results bit for bit).
``LSI_KERNELS_RETUNE=1``
    Ignore the stored choices: every shape class is timed again on first use (once per
    process) and its stored choice replaced.  :func:`reset_kernel_tuning`, or deleting the
    file (:func:`tuning_cache_path`), forgets them all.
``LSI_KERNELS_METHOD``
    Forces a method for every :func:`project` call that does not name one (e.g.
    ``bitplane``).

Threads: the numba kernels use ``numba.get_num_threads()`` threads (set it with
``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``), also for the LUT partitioning and the
plan keys.  The ``blas`` path uses only numpy's BLAS threads: its unpacking is serial,
because a numba pool and a BLAS pool handing the cores back and forth cost ~10x on 2 cores
(OpenMP and OpenBLAS worker threads busy-wait after each call).  For the same reason a numba
kernel started within ~0.1 s after a large BLAS/torch call can run slower.  No torch here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from lsi_hw.errors import ConfigError
from lsi_hw.sim import autotune as tuning
from lsi_hw.sim.autotune import (
    KernelTuningWarning,
    TuningStore,
    autotune_enabled,
    default_store,
    shape_class,
    time_paths,
    tuning_lock,
)
from lsi_hw.sim.costmodel import COST_MODEL, predict_seconds
from lsi_hw.sim.kernel_paths import PATHS, Masks, as_images, as_masks, execute, image_kind
from lsi_hw.sim.walsh import fwht

__all__ = [
    "COST_MODEL",
    "METHODS",
    "KernelTuningWarning",
    "Plan",
    "Projector",
    "TuningStore",
    "explain_plan",
    "fwht",
    "predict_seconds",
    "project",
    "reset_kernel_tuning",
    "tuning_cache_path",
]

#: Values of the ``method`` argument.  ``lut`` lets the planner choose between ``lut8`` and
#: ``lut4``; ``uint8`` asks for the exact integer kernels (bitplane or LUT, uint8 images only).
METHODS: tuple[str, ...] = ("auto", "bitplane", "lut", "lut8", "lut4", "blas", "fwht", "uint8")


@dataclass(frozen=True)
class Plan:
    """A projection plan.

    Attributes
    ----------
    method : str
        Kernel used: "bitplane", "lut8", "lut4", "blas" or "fwht".
    source : str
        "timed" (timed on first use of the shape class in this process), "cached" (timed
        earlier on this machine, read from the tuning file), "model" (static cost model:
        autotuning off, a small problem, or a shape class not timed yet) or "forced"
        (method argument or ``LSI_KERNELS_METHOD``).
    predicted_s : dict
        Cost-model estimate in seconds per candidate method.
    timed_s : dict
        Estimated seconds of the whole call per candidate timed ("timed" and "cached").
    tuning_s : float
        Seconds the timing took ("timed" only; kernel compilation or loading excluded).
    note : str
        E.g. why a timed choice was not written to the tuning file.
    """

    method: str
    source: str
    predicted_s: dict[str, float]
    timed_s: dict[str, float] = field(default_factory=dict)
    tuning_s: float = 0.0
    note: str = ""

    def describe(self) -> str:
        """One line: method, how it was chosen, predicted (and timed) times."""
        pred = self.predicted_s.get(self.method)
        extra = f", predicted {pred * 1e3:.3g} ms" if pred is not None else ""
        if self.timed_s:
            extra += ", timed " + ", ".join(
                f"{k} {v * 1e3:.3g} ms" for k, v in sorted(self.timed_s.items())
            )
        if self.tuning_s:
            extra += f", tuning took {self.tuning_s * 1e3:.3g} ms"
        if self.note:
            extra += f", {self.note}"
        return f"{self.method} ({self.source}{extra})"


def _env_method() -> str | None:
    value = os.environ.get("LSI_KERNELS_METHOD", "").strip().lower()
    return value or None


def _check_method(method: str) -> str:
    meth = str(method).strip().lower()
    if meth not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return meth


class Projector:
    """Projects images onto binary masks, choosing the fastest kernel per problem shape.

    Plans are cached per ``(m, n, batch, dtype class, hadamard, numba threads)``.

    Parameters
    ----------
    method : str or None
        Default method for calls that do not name one: one of :data:`METHODS`; None reads
        ``LSI_KERNELS_METHOD`` at each call (unset: "auto").
    autotune : bool or None
        Time the plausible kernels on the first call of a shape class and keep the fastest
        in the tuning file (see :mod:`lsi_hw.sim.autotune`); False: the cost model alone
        chooses (deterministic).  None reads ``LSI_KERNELS_AUTOTUNE`` (default on).
    store : TuningStore or None
        Where tuned choices are kept (default: the machine's file in the user's cache
        folder, shared by every projector).
    """

    def __init__(self, method: str | None = None, autotune: bool | None = None,
                 store: TuningStore | None = None) -> None:
        self._method = None if method is None else _check_method(method)
        self._autotune = autotune
        self._store = store
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._lock = threading.Lock()

    # -- planning ----------------------------------------------------------------------

    @property
    def plans(self) -> dict[tuple[Any, ...], Plan]:
        """Copy of the plan cache: key ``(m, n, batch, kind, hadamard, threads)`` -> Plan."""
        with self._lock:
            return dict(self._plans)

    @property
    def store(self) -> TuningStore:
        """The tuning store this projector reads and fills."""
        return self._store if self._store is not None else default_store()

    @property
    def autotune(self) -> bool:
        """Whether shape classes are timed (the ``autotune`` argument, else the environment)."""
        return self._autotune if self._autotune is not None else autotune_enabled()

    def clear(self) -> None:
        """Forget every cached plan (the tuning file stays; see :func:`reset_kernel_tuning`)."""
        with self._lock:
            self._plans.clear()

    @staticmethod
    def _candidates(kind: str, hadamard: bool, method: str) -> tuple[str, ...]:
        if method == "lut":
            return ("lut8", "lut4")
        if method == "uint8":
            return ("bitplane", "lut8", "lut4")
        if method != "auto":
            return (method,)
        return PATHS if hadamard else tuple(p for p in PATHS if p != "fwht")

    def plan(
        self,
        m: int,
        n: int,
        batch: int,
        dtype: npt.DTypeLike = np.float64,
        hadamard: bool = False,
        method: str = "auto",
    ) -> Plan:
        """The plan the projector uses for this problem.

        Never times anything: a cached plan, else the stored choice of the shape class
        ("cached"), else the cost model's choice (the first :meth:`project` call of a shape
        class not timed yet still times it).

        Parameters
        ----------
        m, n, batch : int
            Number of masks, pixels per mask, images per call.
        dtype : dtype
            Images' dtype: float32, float64, uint8 (others count as float64).
        hadamard : bool
            Whether the masks are a Hadamard PatternSet (enables "fwht").
        method : str
            As for :meth:`project`.

        Returns
        -------
        Plan
        """
        kind = image_kind(np.dtype(dtype))
        meth = _check_method(method)
        return self._plan(int(m), int(n), int(batch), kind, bool(hadamard), meth)

    def _key(self, m: int, n: int, batch: int, kind: str, hadamard: bool) -> tuple[Any, ...]:
        return (m, n, batch, kind, hadamard, numba.get_num_threads())

    def _plan(self, m: int, n: int, batch: int, kind: str, hadamard: bool, method: str,
              data: tuple[Masks, np.ndarray] | None = None) -> Plan:
        """The plan; with ``data`` (the call's masks and images) an untimed shape class is
        timed on them."""
        if method == "uint8" and kind != "uint8":
            raise ConfigError("method='uint8' needs uint8 images; convert or pick another method")
        if method == "fwht" and not hadamard:
            raise ConfigError(
                "method='fwht' needs a Hadamard PatternSet (hadamard_rows not None); "
                "use another method for these masks"
            )
        cands = self._candidates(kind, hadamard, method)
        key = self._key(m, n, batch, kind, hadamard)
        if method == "auto":
            with self._lock:
                hit = self._plans.get(key)
            if hit is not None:
                return hit
        pred = {c: predict_seconds(c, m, n, batch, kind, key[-1]) for c in cands}
        if method != "auto":
            return Plan(min(pred, key=pred.__getitem__), "forced", pred)
        model = Plan(min(pred, key=pred.__getitem__), "model", pred)
        plan: Plan | None = model
        if self.autotune and min(pred.values()) >= tuning.TINY_S:
            plan = self._tuned(key, cands, pred, data)
        if plan is None:  # not timed yet and no data to time it on
            return model
        with self._lock:
            return self._plans.setdefault(key, plan)

    def _tuned(self, key: tuple[Any, ...], cands: tuple[str, ...], pred: dict[str, float],
               data: tuple[Masks, np.ndarray] | None) -> Plan | None:
        """The stored choice of the shape class, else (with ``data``) a new timing."""
        m, n, batch, kind, hadamard, threads = key
        cls = shape_class(m, n, batch, kind, hadamard, threads)
        store = self.store
        entry = store.get(cls, cands)
        if entry is None and data is not None:
            with tuning_lock():
                entry = store.get(cls, cands)  # another thread may have tuned it meanwhile
                if entry is None:
                    mk, x = data
                    timed, spent = time_paths(
                        mk, x, kind, cands,
                        lambda c, k: predict_seconds(c, k, n, batch, kind, threads))
                    if not timed:  # a single plausible path: the model's choice
                        return Plan(min(pred, key=pred.__getitem__), "model", pred)
                    method = min(timed, key=timed.__getitem__)
                    busy = tuning.machine_busy()
                    store.put(cls, {"method": method, "shape": [m, n, batch],
                                    "timed_ms": {c: round(t * 1e3, 4) for c, t in timed.items()},
                                    "tuning_ms": round(spent * 1e3, 2)}, persist=not busy)
                    note = "machine busy: kept for this process only" if busy else ""
                    return Plan(method, "timed", pred, timed, spent, note)
        if entry is None:
            return None
        timed_ms = entry.get("timed_ms")
        timed_s = ({str(c): float(t) * 1e-3 for c, t in timed_ms.items()
                    if isinstance(t, (int, float))} if isinstance(timed_ms, dict) else {})
        return Plan(str(entry["method"]), "cached", pred, timed_s)

    # -- projection --------------------------------------------------------------------

    def project(self, masks: Any, images: npt.ArrayLike, method: str | None = None) -> np.ndarray:
        """Sums of each image under each mask; see :func:`project`."""
        meth = method if method is not None else (self._method or _env_method() or "auto")
        meth = _check_method(meth)
        mk = as_masks(masks)
        x = as_images(images, mk)
        kind = image_kind(x.dtype)
        if kind == "float64" and x.dtype != np.float64:
            x = x.astype(np.float64)
        batch, n = x.shape
        if batch == 0 or mk.m == 0:
            return np.zeros((batch, mk.m), np.float32 if kind == "float32" else np.float64)
        plan = self._plan(mk.m, n, batch, kind, mk.hadamard, meth, data=(mk, x))
        return execute(plan.method, mk, x, kind)

    __call__ = project


_DEFAULT = Projector()


def project(
    masks: Any,
    images: npt.ArrayLike,
    method: str | None = None,
    *,
    projector: Projector | None = None,
) -> np.ndarray:
    """Project images onto binary masks: ``y[b, k] = sum_p mask_k[p] * x[b, p]``.

    Parameters
    ----------
    masks : PatternSet or numpy.ndarray
        A :class:`~lsi_hw.patterns.PatternSet` (anything with ``pack()``, ``masks``
        (m, H, W) and ``hadamard_rows`` / ``hadamard_signs``), or packed masks: uint8
        (m, ceil(n / 8)), pixel ``p`` is bit ``p % 8`` of byte ``p // 8``.
    images : array_like
        (B, H, W), (B, n) or one image (H, W) / (n,) (treated as B = 1), pixel
        ``p = row * W + col``; any unit (e.g. W/m^2), the result has the same unit times
        pixels.  float32 / float64 are kept; uint8 takes the exact path; other dtypes are
        converted to float64.  With packed masks, a 2-D array is (B, n) when
        ``ceil(n / 8)`` matches the packed width, else one (H, W) image.
    method : str or None
        One of :data:`METHODS`.  None: the projector's default (``LSI_KERNELS_METHOD``,
        else "auto": the planner decides, timing the paths on the first call of a shape
        class unless ``LSI_KERNELS_AUTOTUNE=0``).
    projector : Projector or None
        Planner / plan cache to use (default: the module's shared one).

    Returns
    -------
    numpy.ndarray
        (B, m): float32 for float32 images, float64 otherwise (exact for uint8 images).

    Raises
    ------
    ConfigError
        Shapes that do not match (the message names both), an unknown method, "fwht" for
        masks that are not a Hadamard PatternSet, "uint8" for images that are not uint8.
    """
    return (projector or _DEFAULT).project(masks, images, method)


def explain_plan(
    masks: Any, batch: int = 1, dtype: npt.DTypeLike = np.float32, method: str = "auto"
) -> str:
    """Describe the kernel :func:`project` would use for ``masks`` and ``batch`` images.

    Parameters
    ----------
    masks : PatternSet or numpy.ndarray
        As for :func:`project` (for packed masks ``n`` is taken as 8 x the packed width).
    batch : int
        Images per call.
    dtype : dtype
        Images' dtype (the simulator's irradiance is float32).
    method : str
        As for :func:`project`.

    Returns
    -------
    str
        E.g. ``"lut8 (timed, predicted 41 ms, timed bitplane 60 ms, lut8 35 ms, ...)"``.
    """
    mk = as_masks(masks)
    n = mk.shape[0] * mk.shape[1] if mk.shape is not None else 8 * mk.nbytes
    return _DEFAULT.plan(mk.m, n, batch, dtype, mk.hadamard, method).describe()


def tuning_cache_path() -> Path:
    """This machine's kernel tuning file (it may not exist yet); see :mod:`lsi_hw.sim.autotune`."""
    return default_store().path


def reset_kernel_tuning() -> Path | None:
    """Forget every tuned kernel choice of this machine: delete the tuning file and clear the
    shared projector's plans; each shape class is timed again on its next first use.

    Deleting the file by hand has the same effect on processes started afterwards (a
    running process keeps the choices it made itself).  Projectors with a store of their
    own: ``projector.store.reset()`` and ``projector.clear()``.

    Returns
    -------
    pathlib.Path or None
        The file deleted, None when there was none.

    Raises
    ------
    ConfigError
        If the file exists but cannot be removed.
    """
    _DEFAULT.clear()
    return default_store().reset()
