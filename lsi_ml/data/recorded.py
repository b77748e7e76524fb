"""Measurements recorded on a bench (``lsi_hw`` recordings) as a torch dataset.

This is the path from the real (or twin) bench back into training and decoding: a
recording made by ``lsi-hw acquire`` holds (N, m) volts plus scene ids; paired with
target latents (by scene id) it fine-tunes the digital encoder with the masks frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lsi_hw.errors import ConfigError
from lsi_hw.recording import Recording

__all__ = ["RecordedMeasurements"]


class RecordedMeasurements(Dataset):
    """Readings of a recording, optionally with target latents looked up by scene id.

    Parameters
    ----------
    path:
        Recording folder written by :func:`lsi_hw.acquisition.acquire`.
    targets:
        Optional mapping scene id -> latent (array-like); every recorded scene needs one.
    expected_patterns:
        If given, the recording's pattern name must equal it (e.g. the name of the masks a
        model was trained with), so readings of other masks are never decoded by mistake.
    """

    def __init__(self, path: str | Path, targets: Mapping[str, object] | None = None,
                 *, expected_patterns: str | None = None) -> None:
        recording = Recording.open(path)
        if expected_patterns is not None and recording.pattern_name != expected_patterns:
            raise ConfigError(
                f"recording {path} was made with patterns {recording.pattern_name!r}, the model "
                f"expects {expected_patterns!r}"
            )
        self.readings = torch.from_numpy(np.array(recording.values, dtype=np.float32))
        self.scene_ids = list(recording.scene_ids)
        self.settings = recording.settings
        self.targets: torch.Tensor | None = None
        if targets is not None:
            missing = [s for s in self.scene_ids if s not in targets]
            if missing:
                raise ConfigError(
                    f"{len(missing)} recorded scenes have no target latent (first: {missing[0]})"
                )
            self.targets = torch.stack([torch.as_tensor(np.asarray(targets[s]),
                                                        dtype=torch.float32)
                                        for s in self.scene_ids])

    def __len__(self) -> int:
        return len(self.scene_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self.targets is None:
            return (self.readings[index],)
        return self.readings[index], self.targets[index]
