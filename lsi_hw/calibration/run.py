"""Every calibration routine in turn (:func:`run_all`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lsi_hw.calibration.common import CalibrationResult, progress_bar
from lsi_hw.calibration.dark import measure_dark
from lsi_hw.calibration.file import ROUTINES, CalibrationFile
from lsi_hw.calibration.gamma import fit_monitor_gamma
from lsi_hw.calibration.linearity import check_linearity_and_gain
from lsi_hw.calibration.operating_point import OperatingPointResult, measure_operating_point
from lsi_hw.calibration.registration import register_dmd_to_scene
from lsi_hw.calibration.settling import measure_settling
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench


def run_all(
    bench: Bench,
    *,
    size: int = 32,
    registration_size: int | None = None,
    routines: Sequence[str] | None = None,
    allow_white: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> CalibrationFile:
    """Run every calibration routine on ``bench`` and collect a :class:`CalibrationFile`.

    The operating point (:func:`measure_operating_point`) is always measured first and
    recorded: it says what fraction of the digitizer's range the brightest typical
    reading uses and recommends a gain and range.  A bench set up for typical scenes
    (30-80 % of full scale) clips on a full-screen white with every mirror on (typical
    scenes average about a third of the peak luminance), so the bright stimuli are then
    scaled to stay below :data:`STIMULUS_FRACTION` of the clipping level
    (:meth:`OperatingPointResult.stimulus_options`: a lower white level for the dark
    leakage and the settling step, a dithered "on" mask for the gamma fit, smaller open
    fractions for the linearity); where full white fits, every routine keeps its defaults.
    Options given in ``options`` win over the scaled ones.

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask side for the operating point, dark, linearity, gamma and settling routines,
        pixels.
    registration_size:
        Mask side for the registration (a power of two; default ``size``).
    routines:
        Subset of :data:`ROUTINES` to run (default: all, in that order); the operating
        point is measured in any case.
    allow_white:
        Let :func:`measure_dark` show a white scene (leakage).
    options:
        Extra keyword arguments per routine name, e.g.
        ``{"settling": {"require_resolved": True}}``.
    progress:
        Show a tqdm bar over the routines.

    Raises
    ------
    CalibrationError
        From the first routine that fails (nothing is returned then).
    """
    names = list(ROUTINES) if routines is None else list(routines)
    unknown = [n for n in names if n not in ROUTINES]
    if unknown:
        raise ConfigError(f"unknown routines {unknown}; allowed: {', '.join(ROUTINES)}")
    names = ["operating_point"] + [n for n in names if n != "operating_point"]
    opts = {k: dict(v) for k, v in (options or {}).items()}
    bad = sorted(set(opts) - set(ROUTINES))
    if bad:
        raise ConfigError(f"options for unknown routines {bad}; allowed: {', '.join(ROUTINES)}")
    calls: dict[str, Callable[[], CalibrationResult]] = {
        "operating_point": lambda: measure_operating_point(bench, size=size,
                                                           **opts.get("operating_point", {})),
        "dark": lambda: measure_dark(bench, size=size, allow_white=allow_white,
                                     **opts.get("dark", {})),
        "linearity": lambda: check_linearity_and_gain(bench, size=size,
                                                      **opts.get("linearity", {})),
        "gamma": lambda: fit_monitor_gamma(bench, size=size, **opts.get("gamma", {})),
        "registration": lambda: register_dmd_to_scene(
            bench, registration_size or size, **opts.get("registration", {})),
        "settling": lambda: measure_settling(bench, size=size, **opts.get("settling", {})),
    }
    snapshot = bench.settings()
    results: dict[str, CalibrationResult] = {}
    with progress_bar(progress, len(names), "calibration") as step:
        for name in names:
            results[name] = calls[name]()
            point = results[name]
            if isinstance(point, OperatingPointResult):
                for routine, scaled in point.stimulus_options().items():
                    opts[routine] = {**scaled, **opts.get(routine, {})}
            step(name)
    return CalibrationFile(results=results, bench_settings=snapshot)
