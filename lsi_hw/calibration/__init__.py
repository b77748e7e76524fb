"""Bench calibration: dark level, linearity and gain, monitor gamma, DMD-to-scene
registration, amplifier settling, and the versioned calibration file that holds them.

Every routine talks to the bench only through the :class:`~lsi_hw.interfaces.Bench` API
(``measure(scenes, patterns)`` and the typed, SI-unit properties ``timing``,
``digitizer_lsb_v``, ``digitizer_range_v``, ``saturation_v``, ``gain_db``,
``gain_v_per_a`` and ``bandwidth_hz``), so the same code calibrates the simulator, the
``fake-hw`` twin and the real DMD + photodiode.  The settings snapshot is recorded, never
searched.  A property the bench does not know (None) is never replaced by a guess or a
silent 0: the result says what was left out (``notes``, ``unresolved_reason``).  Each
routine returns a frozen result dataclass holding the estimate, its standard (1 sigma)
uncertainty and a residual / quality figure, and raises
:class:`~lsi_hw.errors.CalibrationError` when the fit fails or misses its stated
tolerance.

Measurement model used throughout (the simulator's, :mod:`lsi_hw.sim`)
----------------------------------------------------------------------
For a scene of irradiance ``E`` on the mask grid and a binary mask ``m_k`` a reading is
``y_k = d + c [leak * sum(E) + (1 - leak) * (m_k . E)]`` in volts, ``d`` the dark level
(amplifier offset + dark current x gain), ``c`` the responsivity x transimpedance x
on-state reflectance, ``leak`` the off-state leakage.  The amplifier is a first-order
low-pass of time constant ``tau``: the output at the start of pattern ``k`` is
``s_k = a s_{k-1} + (1 - a) x_{k-1}`` with ``a = exp(-T / tau)`` (``T`` the pattern
period) and the reading averages ``x_k + (s_k - x_k) exp(-t / tau)`` over the window
``[t0, t0 + w]``, i.e. ``y_k = x_k + beta (s_k - x_k)`` with
``beta = tau / w (exp(-t0 / tau) - exp(-(t0 + w) / tau))``.  Routines that hold a mask for
several patterns discard the first readings of each hold (``discard``) so that settling
does not bias them.

Operating point: a bench is set up (gain, digitizer range) so that the brightest reading
of its typical scenes uses 30-80 % of full scale (:mod:`lsi_hw.operating_point`);
:func:`measure_operating_point` measures where it sits and recommends a setting, and
:func:`run_all` scales its bright stimuli (a full-screen white with every mirror on is
about twice the brightest typical reading) so that no calibration reading clips.

Digitizer quantization: when the readings' noise is below one ADC step (LSB) the mean
of repeated readings is biased by up to LSB/2 and averaging does not help.  Levels are
therefore quoted with a type-B term ``b / sqrt(3)`` added in quadrature, where ``b`` is
the bound on that bias for the observed noise (:func:`quantization_bias_bound`).

Modules: :mod:`~lsi_hw.calibration.common` (declared bench values, measurement helpers, the
result base class), one module per routine (:mod:`~lsi_hw.calibration.operating_point`,
:mod:`~lsi_hw.calibration.dark`, :mod:`~lsi_hw.calibration.linearity`,
:mod:`~lsi_hw.calibration.gamma`, :mod:`~lsi_hw.calibration.registration`,
:mod:`~lsi_hw.calibration.settling`), :mod:`~lsi_hw.calibration.file` (the calibration file)
and :mod:`~lsi_hw.calibration.run` (:func:`run_all`).  Everything public is re-exported here.
"""

from lsi_hw.calibration.common import (
    SATURATION_MARGIN,
    CalibrationFileError,
    bayer_mask,
    quantization_bias_bound,
)
from lsi_hw.calibration.dark import DarkResult, measure_dark
from lsi_hw.calibration.file import (
    CALIBRATION_SCHEMA_VERSION,
    MAX_CALIBRATION_FILE_BYTES,
    ROUTINES,
    CalibrationFile,
)
from lsi_hw.calibration.gamma import GammaResult, fit_monitor_gamma
from lsi_hw.calibration.linearity import (
    GainComparison,
    LinearityResult,
    check_linearity_and_gain,
    compare_gains,
)
from lsi_hw.calibration.operating_point import (
    OPERATING_LADDER,
    PROBE_FRACTION,
    STIMULUS_FRACTION,
    OperatingPointResult,
    measure_operating_point,
)
from lsi_hw.calibration.registration import (
    RegistrationResult,
    default_registration_target,
    register_dmd_to_scene,
)
from lsi_hw.calibration.run import run_all
from lsi_hw.calibration.settling import (
    SettlingResult,
    measure_settling,
    settling_beta,
    tau_from_beta,
)

__all__ = [
    "CALIBRATION_SCHEMA_VERSION",
    "MAX_CALIBRATION_FILE_BYTES",
    "OPERATING_LADDER",
    "PROBE_FRACTION",
    "ROUTINES",
    "SATURATION_MARGIN",
    "STIMULUS_FRACTION",
    "CalibrationFile",
    "CalibrationFileError",
    "DarkResult",
    "GainComparison",
    "GammaResult",
    "LinearityResult",
    "OperatingPointResult",
    "RegistrationResult",
    "SettlingResult",
    "bayer_mask",
    "check_linearity_and_gain",
    "compare_gains",
    "default_registration_target",
    "fit_monitor_gamma",
    "measure_dark",
    "measure_operating_point",
    "measure_settling",
    "quantization_bias_bound",
    "register_dmd_to_scene",
    "run_all",
    "settling_beta",
    "tau_from_beta",
]

