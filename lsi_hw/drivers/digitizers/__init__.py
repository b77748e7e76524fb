"""Digitizers: triggered, per-pattern averaging ADCs behind one small interface.

The photodiode amplifier's output voltage is sampled by a digitizer that the DMD's
TRIG_OUT starts (and retriggers) once per pattern; after a settling delay it averages a
window of samples, giving one value per pattern (see :class:`Digitizer`).

Implementations
---------------
:class:`FakeDigitizer`
    No hardware: voltages from a callback (the digital twin plugs the simulator in), with
    per-sample noise, clipping and fault injection (missing triggers).
:class:`NiDaqDigitizer`
    NI-DAQmx cards (``nidaqmx``, imported lazily): retriggerable finite AI (X Series) or a
    counter-generated retriggerable sample clock (M Series).
:class:`VisaScopeDigitizer`
    SCPI oscilloscopes over VISA (``pyvisa``, imported lazily): one single-shot sweep over
    the whole sequence, segmented per pattern.  :data:`SCOPE_SIM_YAML` is a pyvisa-sim
    description of a compatible fake scope for tests and demos.
"""

from __future__ import annotations

from lsi_hw.drivers.digitizers.base import Digitizer, DigitizerConfig
from lsi_hw.drivers.digitizers.fake import FakeDigitizer
from lsi_hw.drivers.digitizers.nidaq import NiDaqDigitizer
from lsi_hw.drivers.digitizers.visa import SCOPE_SIM_YAML, VisaScopeDigitizer

__all__ = [
    "SCOPE_SIM_YAML",
    "Digitizer",
    "DigitizerConfig",
    "FakeDigitizer",
    "NiDaqDigitizer",
    "VisaScopeDigitizer",
]
