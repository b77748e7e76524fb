"""The simulator's fast paths give the same numbers as the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsi_hw.sim.bench as sim_bench
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import SimBench
from lsi_hw.sim.detector import flicker_factors, flicker_factors_per_row
from lsi_hw.sim.scratch import MAX_SCRATCH_BYTES, scratch
from lsi_hw.types import image_id, image_ids


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), n=st.integers(1, 300), rel=st.sampled_from([0.0, 1e-3, 0.05]),
       seed=st.integers(0, 2**32 - 1))
def test_batched_flicker_equals_row_by_row(rows: int, n: int, rel: float, seed: int) -> None:
    seeds = np.random.SeedSequence(seed).spawn(rows)
    batched = flicker_factors_per_row((rows, n), rel, [np.random.default_rng(s) for s in seeds])
    one_by_one = np.stack([flicker_factors(n, rel, np.random.default_rng(s)) for s in seeds])
    np.testing.assert_array_equal(batched, one_by_one)


def test_batched_flicker_needs_one_generator_per_row() -> None:
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        flicker_factors_per_row((3, 8), 1e-3, [np.random.default_rng(0)] * 2)


@pytest.mark.parametrize("shape", [(5, 4, 4), (9, 128, 128, 3), (3, 200, 200)])
def test_image_ids_match_image_id(shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    images[2] = images[0]  # equal images, equal ids
    ids = image_ids(images)
    assert ids == [image_id(x) for x in images]
    assert ids[0] == ids[2] and len(set(ids)) == len(images) - 1


def test_scratch_reuses_buffers_per_name() -> None:
    a = scratch("test-a", (4, 8), np.float32)
    a[:] = 1.0
    assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous
    b = scratch("test-a", (2, 8), np.float64)  # same bytes, another view
    assert b.ctypes.data == a.ctypes.data
    c = scratch("test-b", (4, 8), np.float32)
    assert c.ctypes.data != a.ctypes.data
    big = scratch("test-big", (MAX_SCRATCH_BYTES // 8 + 1,), np.float64)  # not kept
    assert big.nbytes > MAX_SCRATCH_BYTES
    assert scratch("test-big", (1,), np.float64).ctypes.data != big.ctypes.data


@pytest.mark.parametrize("patterns", [PatternSet.hadamard(32, m=64),
                                      PatternSet.random(64, (32, 32), seed=3)])
def test_noise_on_two_threads_equals_one_thread(patterns: PatternSet,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    scenes = np.random.default_rng(2).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    split = SimBench(noise="full", seed=5).measure(scenes, patterns)
    monkeypatch.setattr(sim_bench, "_SPLIT_NOISE_MIN_SCENES", 10**9)
    whole = SimBench(noise="full", seed=5).measure(scenes, patterns)
    np.testing.assert_array_equal(split.values, whole.values)
    assert split.scene_ids == whole.scene_ids
