"""Resumable, recorded acquisitions over many scenes, on any bench.

:func:`acquire` measures the scenes batch by batch and appends each completed batch to a
crash-safe :class:`~lsi_hw.recording.Recording`.  Rerunning the same call after a crash
or an interruption skips the scenes already recorded (matched by content hash), so no
completed work is lost or repeated.

A recording never mixes settings: the run-level snapshot (:func:`run_settings`) holds every
setting that defines the acquisition -- the bench's whole settings snapshot (gain, load,
amplifier, digitizer, detector, modulator and scene settings; on the simulator also the
noise preset, seed, method and physical configuration), the simulated physics of the
``fake-hw`` twin (:meth:`~lsi_hw.benches.twin.FakeHardwareBench.simulator_settings`: noise, seed,
configuration), the pattern timing and load size of a hardware bench, and the pattern set
with a hash of its masks.  A resume whose snapshot differs in any of them is refused with
a :class:`~lsi_hw.errors.ConfigError` naming each differing key with its recorded and new
value.  Run state is not compared: per-measurement statistics (``acquisition``), what a
device last showed or read and when (scene ids, timestamps, counters, saturation counts),
and values a device reports only once a pattern sequence is loaded or armed (e.g. the DMD's
exposure, the detector's reading timing) unless both snapshots hold them.

The benches' noise is keyed by scene (:class:`~lsi_hw.sim.bench.SceneNoiseStreams`), so
an interrupted and resumed acquisition gives the same volts as an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench, check_scenes
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.types import image_id

__all__ = ["AcquisitionSummary", "acquire", "run_settings"]

_Path = tuple[str, ...]

#: Bench-snapshot entries that describe what the devices are doing right now, not how
#: the run is set up: never compared on resume.
RUN_STATE_PATHS: tuple[_Path, ...] = (
    ("acquisition",),
    *(("modulator", key) for key in ("state", "display_mode", "patterns", "lut_entries",
                                      "image_lut_entries", "n_frames",
                                      "validation_warnings")),
    ("detector", "n_readings"),
    ("detector", "last_read_saturated"),
    *(("detector", "digitizer", key) for key in ("configured", "n_readings",
                                                  "triggers_received")),
    *(("scene", key) for key in ("last_id", "last_frame_hash", "last_frame_matches",
                                  "last_shown_at", "last_ready_at", "n_shown", "closed")),
)

#: Entries a device reports only once a sequence is loaded or armed (None, 0, empty or
#: absent before): compared only when both snapshots hold a value.
LOADED_STATE_PATHS: tuple[_Path, ...] = (
    *(("modulator", key) for key in ("exposure_us", "period_us", "trigger", "superpixel",
                                      "trigger_outputs")),
    ("detector", "timing"),
    *(("detector", "digitizer", key) for key in (
        "sample_rate_hz", "settling_delay_s", "window_s", "range_v", "trigger", "period_s",
        "samples_per_reading", "delay_samples", "resolved_mode", "samples_per_trigger",
        "points_requested", "preamble")),
)

#: Dicts whose device adds entries once it is configured (the digitizer: its acquisition
#: config and step): an entry only one snapshot holds is not compared.
CONFIGURED_ENTRY_PATHS: tuple[_Path, ...] = (("detector", "digitizer"),)

_MISSING = object()


@dataclass(frozen=True)
class AcquisitionSummary:
    """What one :func:`acquire` call did."""

    path: Path
    n_scenes: int
    n_skipped: int
    n_acquired: int
    n_batches: int
    elapsed_s: float
    saturated_count: int


def _get(tree: Any, path: _Path) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return _MISSING
        tree = tree[key]
    return tree


def _drop(tree: Any, path: _Path) -> None:
    parent = _get(tree, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _unset(value: Any) -> bool:
    """A value a device reports before anything is loaded: absent, None, 0 or empty.

    (The simulated modulator reports an exposure and period of 0 before a sequence is
    loaded; so a loaded value of exactly 0 is not told apart from "not loaded".)"""
    if value is _MISSING or value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return bool(value == 0)
    return isinstance(value, (str, list, tuple, dict)) and len(value) == 0


def run_settings(bench: Bench, patterns: PatternSet) -> dict[str, Any]:
    """Run-level settings of an acquisition: what must match when it is resumed.

    Returns
    -------
    dict
        ``bench`` (name), ``calibration_id``, ``patterns`` (name, m, shape, sha256 of the
        masks), ``bench_settings`` (the bench's :meth:`~lsi_hw.interfaces.Bench.settings`
        without :data:`RUN_STATE_PATHS`), ``simulator`` (the twin's simulated physics, if
        the bench has ``simulator_settings()``) and ``hardware`` (pattern timing in
        microseconds and patterns per load, for hardware benches).
    """
    settings = bench.settings()
    stable = copy.deepcopy(settings)
    for path in RUN_STATE_PATHS:
        _drop(stable, path)
    run: dict[str, Any] = {
        "bench": settings.get("bench"),
        "calibration_id": settings.get("calibration_id"),
        "patterns": {"name": patterns.name, "m": patterns.m, "shape": list(patterns.shape),
                     "sha256": patterns.digest()},
        "bench_settings": stable,
    }
    simulator = getattr(bench, "simulator_settings", None)
    if callable(simulator):
        run["simulator"] = simulator()
    hardware: dict[str, Any] = {}
    timing = getattr(bench, "pattern_timing_us", None)
    if callable(timing):
        exposure_us, period_us = timing()
        hardware.update(exposure_us=exposure_us, period_us=period_us)
    else:
        for name in ("exposure_us", "period_us"):
            if hasattr(bench, name):
                hardware[name] = getattr(bench, name)
    if hasattr(bench, "patterns_per_load"):
        hardware["patterns_per_load"] = bench.patterns_per_load
    if hardware:
        run["hardware"] = hardware
    return run


def _reconcile(recorded: Any, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with every :data:`LOADED_STATE_PATHS` entry that is unset on either side,
    and every entry of a :data:`CONFIGURED_ENTRY_PATHS` dict that only one side holds,
    replaced by the recorded one (so only values both snapshots hold are compared)."""
    if not isinstance(recorded, dict) or not isinstance(new.get("bench_settings"), dict):
        return new
    old_tree = recorded.get("bench_settings")
    out = copy.deepcopy(new)
    tree = out["bench_settings"]
    for path in CONFIGURED_ENTRY_PATHS:
        old_dict, new_dict = _get(old_tree, path), _get(tree, path)
        if not (isinstance(old_dict, dict) and isinstance(new_dict, dict)):
            continue
        for key in set(new_dict) - set(old_dict):
            del new_dict[key]
        for key in set(old_dict) - set(new_dict):
            new_dict[key] = copy.deepcopy(old_dict[key])
    for path in LOADED_STATE_PATHS:
        old, now = _get(old_tree, path), _get(tree, path)
        if not (_unset(old) or _unset(now)):
            continue
        if old is _MISSING:
            _drop(tree, path)
        else:
            parent = _get(tree, path[:-1])
            if isinstance(parent, dict):
                parent[path[-1]] = copy.deepcopy(old)
    return out


def _recorded_settings(path: Path) -> Any:
    """Run-level snapshot of the recording at ``path``, or None (no readable recording:
    :meth:`Recording.create_or_resume` then reports what is wrong)."""
    if not (path / "manifest.json").exists():
        return None
    try:
        return Recording.open(path).settings
    except ConfigError:
        return None


def acquire(
    bench: Bench,
    scenes: np.ndarray,
    patterns: PatternSet,
    path: str | Path,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> AcquisitionSummary:
    """Measure ``scenes`` with ``patterns`` on ``bench`` into the recording at ``path``.

    Parameters
    ----------
    bench:
        Any bench (``sim``, ``fake-hw``, ``hw``).
    scenes:
        (N, H, W[, 3]) monitor drive values (validated before anything is measured).
    patterns:
        The pattern set; a resumed recording must have been made with the same set.
    path:
        Recording folder; created, or resumed when it exists.
    batch_size:
        Scenes per measured and committed batch (what a crash can lose at most).
    progress:
        Show a progress bar.

    Raises
    ------
    ConfigError
        Bad scenes or ``batch_size``; ``path`` is not a recording; or it is one whose
        run-level settings (:func:`run_settings`) differ from this bench's and patterns'
        (the message names each differing key with its recorded and new value).
    """
    arr = check_scenes(scenes)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    ids = [image_id(img) for img in arr]
    started = time.perf_counter()
    settings = run_settings(bench, patterns)
    settings = _reconcile(_recorded_settings(Path(path)), settings)
    with Recording.create_or_resume(
        path, m=patterns.m, settings=settings,
        pattern_name=patterns.name, patterns_meta=patterns.meta,
    ) as recording:
        done = recording.completed_scene_ids()
        todo = [i for i, ident in enumerate(ids) if ident not in done]
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        iterator: Any = batches
        if progress and batches:
            from tqdm import tqdm

            iterator = tqdm(batches, desc="acquiring", unit="batch")
        saturated = 0
        for batch in iterator:
            measurement = bench.measure(arr[batch], patterns)
            saturated += int(measurement.settings.get("acquisition", {})
                             .get("saturated_count", 0))
            recording.append(measurement)
    return AcquisitionSummary(
        path=Path(path), n_scenes=len(arr), n_skipped=len(arr) - len(todo),
        n_acquired=len(todo), n_batches=len(batches),
        elapsed_s=time.perf_counter() - started, saturated_count=saturated,
    )
