"""Seeded random streams of a training run, and the 8-bit view of a scene.

Every random draw of a run (detector noise of a step, the normaliser's fitting batch,
evaluation noise, the measurement bank's draws) comes from a generator seeded by
``(seed, stream, step[, row])``, so a run is a pure function of its config and any split
of a batch over processes draws the same noise as one process.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["BANK_DRAW_STREAM", "BANK_NOISE_STREAM", "EVAL_STREAM", "FIT_STREAM",
           "NOISE_STREAM", "as_8bit", "row_generators", "step_seed"]

# Stream ids that key the per-step random generators (see ``step_seed``).
NOISE_STREAM = 101
FIT_STREAM = 102
EVAL_STREAM = 103
BANK_NOISE_STREAM = 104
BANK_DRAW_STREAM = 105


def step_seed(seed: int, stream: int, step: int, row: int | None = None) -> int:
    """A 63-bit torch seed for one (seed, stream, step[, row])."""
    key = [int(seed), int(stream), int(step)] + ([] if row is None else [int(row)])
    state = np.random.SeedSequence(key)
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def row_generators(seed: int, stream: int, step: int, rows: Tensor) -> list[torch.Generator]:
    """One generator per batch row, keyed by the row's position in the GLOBAL batch.

    A row's noise then depends on (seed, stream, step, row) only, so any split of the
    batch over processes draws exactly the noise a single process draws.
    """
    return [torch.Generator().manual_seed(step_seed(seed, stream, step, int(r)))
            for r in rows.tolist()]


def as_8bit(images: Tensor) -> Tensor:
    """Images as the 8-bit monitor shows them (drive fractions on 256 levels)."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0
