"""Recorded measurements (from the fake-hw bench) become a torch dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsi_hw.acquisition import acquire
from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.types import image_id
from lsi_ml.data.recorded import RecordedMeasurements


def test_fake_hw_recording_to_dataset(tmp_path):
    scenes = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    patterns = PatternSet(PatternSet.random(24, (16, 16), seed=0).masks, name="masks-a")
    with FakeHardwareBench("shot") as bench:
        acquire(bench, scenes, patterns, tmp_path / "rec", batch_size=2, progress=False)
    targets = {image_id(s): np.full((2, 3), i, dtype=np.float32) for i, s in enumerate(scenes)}
    data = RecordedMeasurements(tmp_path / "rec", targets, expected_patterns="masks-a")
    assert len(data) == 5
    readings, latent = data[3]
    assert readings.shape == (24,) and latent.shape == (2, 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    batch = next(iter(loader))
    assert batch[0].shape == (4, 24)
    with pytest.raises(ConfigError, match="expects"):
        RecordedMeasurements(tmp_path / "rec", expected_patterns="other")
    with pytest.raises(ConfigError, match="no target latent"):
        RecordedMeasurements(tmp_path / "rec", {})
