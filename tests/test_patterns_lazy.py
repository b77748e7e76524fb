"""Lazy Hadamard pattern sets: rows and signs only, masks made on demand, identical in
every observable way to the same set made in full."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import LAZY_HADAMARD_BYTES, PatternSet


@st.composite
def hadamard_args(draw):
    n_side = draw(st.sampled_from([2, 4, 8, 16]))
    m = draw(st.integers(1, n_side * n_side))
    order = draw(st.sampled_from(["natural", "sequency", "cake-cutting", "random"]))
    split = draw(st.booleans())
    return dict(n_side=n_side, m=m, order=order, split=split, seed=3)


@given(hadamard_args())
def test_a_lazy_set_equals_the_set_made_in_full(args) -> None:
    lazy = PatternSet.hadamard(**args, lazy=True)
    full = PatternSet.hadamard(**args, lazy=False)
    assert lazy.is_lazy and not full.is_lazy
    assert (lazy.m, lazy.shape, lazy.name, lazy.meta) == (full.m, full.shape, full.name,
                                                           full.meta)
    assert lazy.digest() == full.digest() and lazy.is_lazy  # digest made in blocks
    assert np.array_equal(lazy[lazy.m - 1], full[full.m - 1]) and lazy.is_lazy
    assert lazy[::2] == full[::2] and lazy[::2].is_lazy
    assert lazy == full and full == lazy
    assert np.array_equal(lazy.pack(), full.pack())
    assert pickle.loads(pickle.dumps(lazy)) == full
    if not args["split"]:
        assert lazy.complementary() == full.complementary()
        assert lazy.complementary().is_lazy
    assert np.array_equal(lazy.masks, full.masks) and not lazy.is_lazy


def test_big_sets_are_lazy_by_default_and_small_ones_are_not() -> None:
    assert not PatternSet.hadamard(64, m=256).is_lazy
    big = PatternSet.hadamard(256)
    assert big.is_lazy and big.m == 65536
    assert float(big.m) * big.n_pixels > LAZY_HADAMARD_BYTES
    assert big.hadamard_rows.nbytes + big.hadamard_signs.nbytes < 1_000_000


def test_the_simulator_measures_a_lazy_set_without_making_its_masks() -> None:
    from lsi_hw.benches import make_bench
    from lsi_hw.testscenes import builtin_scenes

    scenes, _ = builtin_scenes(32)
    lazy = PatternSet.hadamard(32, m=512, split=True, lazy=True)
    full = PatternSet.hadamard(32, m=512, split=True, lazy=False)
    a = make_bench("sim", noise="full", seed=4).measure(scenes, lazy)
    b = make_bench("sim", noise="full", seed=4).measure(scenes, full)
    assert np.array_equal(a.values, b.values)
    assert lazy.is_lazy


def test_making_the_masks_of_a_huge_set_is_refused_with_its_size(monkeypatch) -> None:
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "1")
    big = PatternSet.hadamard(256)
    with pytest.raises(ConfigError, match="65536 x 256 x 256"):
        big.masks  # noqa: B018
    assert big.is_lazy
