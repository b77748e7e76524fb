"""The built-in scene sets, and the SynthFace faces shipped with lsi_hw."""

from __future__ import annotations

import numpy as np
import pytest

from lsi_hw.errors import ConfigError
from lsi_hw.testscenes import (
    SCENE_SETS,
    count_scenes,
    face_latents,
    face_scenes,
    load_scenes,
    named_scenes,
)


@pytest.mark.parametrize("name", sorted(SCENE_SETS))
def test_every_named_set_has_its_stated_size_and_type(name: str) -> None:
    scenes, names = named_scenes(name, 48)
    assert scenes.shape == (SCENE_SETS[name], 48, 48, 3) and scenes.dtype == np.uint8
    assert len(names) == len(set(names)) == SCENE_SETS[name] == count_scenes(name)
    assert np.array_equal(load_scenes(name, 48)[0], scenes)


def test_unknown_sets_and_missing_folders_are_named_in_the_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no built-in scene set 'celebs'"):
        named_scenes("celebs", 64)
    with pytest.raises(ConfigError, match="faces"):
        load_scenes(tmp_path / "absent", 64)


def test_the_shipped_faces_are_synthface_renders_of_the_test_split() -> None:
    """Fails when SynthFace changes: rewrite the file with
    ``python -m lsi_ml.data.face_scenes``."""
    from lsi_ml.data.face_scenes import SIZES, face_scene_arrays
    from lsi_ml.generators.synthface import SynthFace

    fresh = face_scene_arrays()
    assert int(fresh["synthface_version"]) == SynthFace.version
    for size in SIZES:
        shipped, names = face_scenes(size)
        assert np.array_equal(shipped, fresh[f"faces_{size}"]), size
    assert names == [str(n) for n in fresh["names"]]
    assert np.array_equal(face_latents(), fresh["latents"])


def test_other_sizes_are_resized_from_the_nearest_shipped_one() -> None:
    faces, _ = face_scenes(256)
    assert faces.shape == (8, 256, 256, 3)
    small, _ = face_scenes(32)
    assert abs(float(small.mean()) - float(face_scenes(64)[0].mean())) < 2.0
