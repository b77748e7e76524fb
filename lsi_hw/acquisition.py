"""Resumable, recorded acquisitions over many scenes, on any bench.

:func:`acquire` measures the scenes batch by batch and appends each completed batch to a
crash-safe :class:`~lsi_hw.recording.Recording`.  Rerunning the same call after a crash
or an interruption skips the scenes already recorded (matched by content hash), so no
completed work is lost or repeated.
"""

from __future__ import annotations

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

__all__ = ["AcquisitionSummary", "acquire"]


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


def _run_settings(bench: Bench, patterns: PatternSet) -> dict[str, Any]:
    """Run-level settings that must match when a recording is resumed."""
    settings = bench.settings()
    return {
        "bench": settings.get("bench"),
        "calibration_id": settings.get("calibration_id"),
        "patterns": {"name": patterns.name, "m": patterns.m, "shape": list(patterns.shape)},
    }


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
    """
    arr = check_scenes(scenes)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    ids = [image_id(img) for img in arr]
    started = time.perf_counter()
    with Recording.create_or_resume(
        path, m=patterns.m, settings=_run_settings(bench, patterns),
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
