"""The SynthFace test faces that ship with ``lsi_hw`` as built-in scenes.

``lsi-hw simulate --images faces`` shows faces a trained decoder knows without a folder of
images; ``lsi_hw`` cannot render SynthFace itself (it does not depend on torch), so the
faces are rendered here once and stored in ``lsi_hw/data/synthface_scenes.npz``: the
first :data:`N_FACES` items of SynthFace's test split (seed 0) as 8-bit RGB at 64 and
128 px, with their latents. A test checks the shipped file against a fresh render;
``python -m lsi_ml.data.face_scenes`` writes it again after a change of SynthFace.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch

from lsi_hw.atomic import atomic_write_bytes
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.generators.synthface import SynthFace

__all__ = ["N_FACES", "SCENE_FILE", "SIZES", "face_scene_arrays", "write_face_scenes"]

N_FACES = 8
"""Faces shipped (test split items 0..N_FACES-1)."""
SIZES = (64, 128)
"""Image sides shipped, pixels (the default model works at 64 px; other sides are resized
from the nearest shipped one)."""
SCENE_FILE = Path(__file__).resolve().parents[2] / "lsi_hw" / "data" / "synthface_scenes.npz"
"""Where the shipped file lives in a source checkout."""


def face_scene_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of the shipped file: ``faces_<size>`` (N, size, size, 3) uint8 for each
    of :data:`SIZES`, ``latents`` (N, L, D) float32, ``names`` and ``synthface_version``."""
    arrays: dict[str, np.ndarray] = {}
    latents = None
    for size in SIZES:
        generator = SynthFace(size, seed=seed)
        data = SyntheticFaces(generator, N_FACES, seed=seed, split="test")
        batch = data.batch(list(range(N_FACES)))
        images = batch["image"].clamp(0, 1).permute(0, 2, 3, 1)
        arrays[f"faces_{size}"] = torch.round(images * 255).to(torch.uint8).numpy()
        if latents is None:
            latents = batch["latent"].float().numpy()
            arrays["synthface_version"] = np.array(generator.version)
    assert latents is not None
    arrays["latents"] = latents
    arrays["names"] = np.array([f"synthface-{i}" for i in range(N_FACES)])
    return arrays


def write_face_scenes(path: str | Path = SCENE_FILE) -> Path:
    """Write :func:`face_scene_arrays` to ``path`` (compressed, atomically)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **face_scene_arrays())
    return atomic_write_bytes(Path(path), buffer.getvalue())


if __name__ == "__main__":
    print(write_face_scenes(*sys.argv[1:2]))
