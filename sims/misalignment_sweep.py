"""Shift / rotation / scale of the scene on the DMD, with and without calibration-aware
training (see ``sims/configs/misalignment_sweep.toml`` and :mod:`sims.settings_sweep`)."""

from __future__ import annotations

from typing import Any

from sims.common import Context
from sims.settings_sweep import run_settings_sweep

STUDY = "misalignment_sweep"


def run(ctx: Context) -> dict[str, Any]:
    """Run every sweep of the config; tables and one figure per sweep."""
    return run_settings_sweep(ctx, STUDY)
