"""Tests on a connected bench (marked `hardware`; skipped unless LSI_HARDWARE=1).

Run on the lab computer with the LightCrafter on USB:

    LSI_HARDWARE=1 python -m pytest -m hardware
"""

from __future__ import annotations

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
