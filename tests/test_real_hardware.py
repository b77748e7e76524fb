"""Tests on a connected bench (marked `hardware`; skipped unless LSI_HARDWARE=1).

Run on the lab computer with the LightCrafter on USB (and, for the detector test, an NI
card given by LSI_DAQ_DEVICE, default Dev1):

    LSI_HARDWARE=1 python -m pytest -m hardware
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from lsi_hw.patterns import PatternSet

pytestmark = pytest.mark.hardware


def test_dlp4500_answers_and_runs_a_sequence():
    from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500

    frames = []
    with DLP4500.open(source="video", frame_sink=frames.append) as dmd:
        assert dmd.version()
        dmd.load(PatternSet.hadamard(16, m=24), exposure_us=235, period_us=235)
        dmd.start()
        dmd.stop()
        assert dmd.state == "stopped"
    assert frames and frames[0].shape[1:] == (1140, 912, 3)


def test_detector_dark_reading():
    from lsi_hw.drivers.digitizers import NiDaqDigitizer
    from lsi_hw.drivers.pda100a2 import PDA100A2

    detector = PDA100A2(NiDaqDigitizer(device=os.environ.get("LSI_DAQ_DEVICE", "Dev1")),
                        gain_db=int(os.environ.get("LSI_GAIN_DB", "40")))
    with detector:
        detector.arm(8, exposure_us=235, period_us=235)
        volts = detector.read(timeout_s=2.0)
    assert volts.shape == (8,) and np.all(np.abs(volts) < detector.saturation_v)
