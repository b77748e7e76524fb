"""Photon budget, detector gain, ADC bits and read noise sweeps (see
``sims/configs/noise_sweep.toml`` and :mod:`sims.settings_sweep`)."""

from __future__ import annotations

from typing import Any

from sims.common import Context
from sims.settings_sweep import run_settings_sweep

STUDY = "noise_sweep"


def run(ctx: Context) -> dict[str, Any]:
    """Run every sweep of the config; tables and one figure per sweep."""
    return run_settings_sweep(ctx, STUDY)
