"""Physically modelled simulator of the single-pixel camera bench.

``SimBench(noise=...)`` is the entry point; the stage configs live in
:mod:`~lsi_hw.sim.scene`, :mod:`~lsi_hw.sim.optics` and :mod:`~lsi_hw.sim.detector`,
the projection planner in :mod:`~lsi_hw.sim.kernels` (its numba loops in
:mod:`~lsi_hw.sim.numba_kernels`, the per-machine path timing in
:mod:`~lsi_hw.sim.autotune`) and the torch twin in :mod:`~lsi_hw.sim.torch_model`.
"""

from __future__ import annotations

from lsi_hw.sim.bench import SimBench, SimulatedDetector, SimulatedModulator, SimulatedScene
from lsi_hw.sim.detector import (
    NOISE_PRESETS,
    AmplifierConfig,
    DigitizerConfig,
    NoiseConfig,
    PhotodiodeConfig,
    TimingConfig,
)
from lsi_hw.sim.forward import SimConfig
from lsi_hw.sim.optics import DMDConfig, RelayOpticsConfig
from lsi_hw.sim.scene import MonitorConfig

__all__ = [
    "NOISE_PRESETS",
    "AmplifierConfig",
    "DMDConfig",
    "DigitizerConfig",
    "MonitorConfig",
    "NoiseConfig",
    "PhotodiodeConfig",
    "RelayOpticsConfig",
    "SimBench",
    "SimConfig",
    "SimulatedDetector",
    "SimulatedModulator",
    "SimulatedScene",
    "TimingConfig",
]
