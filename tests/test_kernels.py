"""Tests of lsi_hw.sim.kernels: fwht, every projection kernel, the planner, the errors.

References are built independently of the kernels: the Hadamard matrix from the popcount
formula ``H[k, p] = (-1) ** popcount(k & p)`` and mask sums by a dense float64 product.
No timing assertions (the machine is shared); shapes are small so the run stays short once
the numba cache is warm.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsi_hw.errors import ConfigError
from lsi_hw.sim import autotune
from lsi_hw.sim import kernel_paths as P
from lsi_hw.sim import kernels as K


@pytest.fixture(autouse=True, scope="module")
def _parallel_kernels():
    """These tests cover the multi-threaded paths (thread chunks of the LUT kernels, long
    vectors split across threads): two numba threads, also in a parallel test worker."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)

FORCED = ("bitplane", "lut8", "lut4", "lut", "blas", "auto")
KERNELS = ("bitplane", "lut8", "lut4", "blas", "fwht")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def hadamard(n: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows (default all) of the natural-order Hadamard matrix of size n, by the popcount
    formula H[k, p] = (-1) ** popcount(k & p); int8 (len(rows), n)."""
    k = np.arange(n) if rows is None else np.asarray(rows)
    parity = np.bitwise_count(np.bitwise_and.outer(k, np.arange(n))) & 1
    return (1 - 2 * parity).astype(np.int8)


def pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks.reshape(masks.shape[0], -1), axis=1, bitorder="little")


class FakeSet:
    """Duck-typed stand-in for lsi_hw.patterns.PatternSet (masks, pack, Hadamard rows)."""

    def __init__(self, masks: np.ndarray, rows: np.ndarray | None = None,
                 signs: np.ndarray | None = None) -> None:
        self.masks = np.ascontiguousarray(masks, dtype=np.uint8)
        self.hadamard_rows = rows
        self.hadamard_signs = signs

    def pack(self) -> np.ndarray:
        return pack(self.masks)


def hadamard_set(n_side: int, rows: np.ndarray, signs: np.ndarray) -> FakeSet:
    h = hadamard(n_side * n_side, rows) * signs[:, None]
    masks = ((1 + h) // 2).astype(np.uint8).reshape(len(rows), n_side, n_side)
    return FakeSet(masks, rows.astype(np.int64), signs.astype(np.int8))


def reference(masks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(B, m) float64 dense reference."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    return flat @ masks.reshape(masks.shape[0], -1).T.astype(np.float64)


def assert_close(y: np.ndarray, ref: np.ndarray, x: np.ndarray, dtype: np.dtype) -> None:
    """Within rounding: relative to sum(|x|) per image (float32: 1e-5, float64: 1e-12)."""
    scale = np.abs(x.reshape(x.shape[0], -1).astype(np.float64)).sum(axis=1)[:, None] + 1.0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= tol * scale), np.abs(y - ref).max()


# --------------------------------------------------------------------------------------------
# fwht
# --------------------------------------------------------------------------------------------


@given(log_n=st.integers(1, 10), batch=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_fwht_matches_dense_hadamard(log_n: int, batch: int, seed: int, dtype: type) -> None:
    n = 1 << log_n
    x = np.random.default_rng(seed).standard_normal((batch, n)).astype(dtype)
    y = K.fwht(x)
    assert y.dtype == dtype and y.shape == x.shape
    ref = x.astype(np.float64) @ hadamard(n).T.astype(np.float64)
    tol = (1e-4 if dtype == np.float32 else 1e-10) * np.sqrt(n) * (np.abs(x).max() + 1)
    np.testing.assert_allclose(y, ref, atol=tol)
    back = K.fwht(y)
    np.testing.assert_allclose(back, n * x.astype(np.float64), atol=tol * np.sqrt(n))


def test_fwht_properties() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 5))
    y = K.fwht(x, axis=1)
    ref = np.einsum("kp,apb->akb", hadamard(8).astype(float), x)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    assert np.array_equal(K.fwht(np.array([2.5])), np.array([2.5]))  # n = 1: identity
    ints = K.fwht(np.arange(4))
    assert ints.dtype == np.float64
    assert np.array_equal(ints, [6.0, -2.0, -4.0, 0.0])
    x0 = x.copy()
    K.fwht(x, axis=1)
    assert np.array_equal(x, x0)  # input untouched


def fwht_numpy(x: np.ndarray) -> np.ndarray:
    """Independent numpy WHT (butterflies by reshaping) for lengths too big for dense H."""
    y = x.astype(np.float64).copy()
    n = y.shape[-1]
    h = 1
    while h < n:
        v = y.reshape(-1, n // (2 * h), 2, h)
        a, b = v[:, :, 0, :].copy(), v[:, :, 1, :].copy()
        v[:, :, 0, :] = a + b
        v[:, :, 1, :] = a - b
        h *= 2
    return y


@pytest.mark.parametrize("shape", [(1 << 15,), (1, 1 << 16), (3, 1 << 12)])
def test_fwht_long_vectors(shape: tuple[int, ...]) -> None:
    """Single long vectors take the multi-threaded path; compare with numpy butterflies."""
    x = np.random.default_rng(1).standard_normal(shape)
    np.testing.assert_allclose(K.fwht(x), fwht_numpy(x.reshape(-1, shape[-1])).reshape(shape),
                               atol=1e-9 * np.sqrt(shape[-1]))


@pytest.mark.parametrize("n", [0, 3, 6, 12, 1000])
def test_fwht_rejects_non_power_of_two(n: int) -> None:
    with pytest.raises(ConfigError, match="power of two"):
        K.fwht(np.ones((2, n)))


def test_fwht_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        K.fwht(np.float64(1.0))
    with pytest.raises(ConfigError):
        K.fwht(np.ones(4), axis=2)
    with pytest.raises(ConfigError):
        K.fwht(np.ones(4, dtype=complex))


# --------------------------------------------------------------------------------------------
# packed projection: every method against the dense reference
# --------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    m=st.integers(1, 40),
    h=st.integers(1, 13),
    w=st.integers(1, 13),
    batch=st.integers(1, 9),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_every_method_matches_dense(m: int, h: int, w: int, batch: int, p: float, seed: int,
                                    dtype: type) -> None:
    rng = np.random.default_rng(seed)
    masks = (rng.random((m, h, w)) < p).astype(np.uint8)
    x = rng.standard_normal((batch, h, w)).astype(dtype)
    ref = reference(masks, x)
    packed = pack(masks)
    projector = K.Projector(autotune=False)
    for method in FORCED:
        for given_masks in (packed, FakeSet(masks)):
            y = K.project(given_masks, x, method=method, projector=projector)
            assert y.dtype == dtype, (method, y.dtype)
            assert_close(y, ref, x, np.dtype(dtype))
    # (B, n) images and the packed array: n comes from the images
    y = K.project(packed, x.reshape(batch, -1), method="bitplane")
    assert_close(y, ref, x, np.dtype(dtype))


@settings(max_examples=25)
@given(m=st.integers(1, 30), n=st.integers(1, 200), batch=st.integers(1, 9),
       seed=st.integers(0, 2**31 - 1))
def test_uint8_path_is_exact(m: int, n: int, batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = (rng.random((m, n)) < 0.5).astype(np.uint8)
    x = rng.integers(0, 256, size=(batch, n), dtype=np.uint8)
    x[0, : n // 2] = 255
    exact = x.astype(np.int64) @ masks.T.astype(np.int64)
    packed = pack(masks)
    for method in ("uint8", "bitplane", "lut8", "lut4", "blas", "auto"):
        y = K.project(packed, x, method=method)
        assert y.dtype == np.float64
        assert np.array_equal(y, exact.astype(np.float64)), method


def test_uint8_exact_at_the_float32_limit() -> None:
    """All-255 images under all-open masks, n = 65536: sums of 16 711 680 (just under 2**24)
    and neighbours that a float32 running sum would round."""
    n = 1 << 16
    masks = np.ones((3, n), dtype=np.uint8)
    masks[1, ::2] = 0
    masks[2, 1] = 0
    x = np.full((2, n), 255, dtype=np.uint8)
    x[1, 0] = 254
    x[1, 3] = 7
    exact = (x.astype(np.int64) @ masks.T.astype(np.int64)).astype(np.float64)
    packed = pack(masks)
    for method in ("bitplane", "lut8", "lut4", "blas"):
        assert np.array_equal(K.project(packed, x, method=method), exact), method
    hs = hadamard_set(256, np.array([0, 5, 0]), np.array([1, 1, -1]))
    exact_h = (x.astype(np.int64) @ hs.masks.reshape(3, -1).T.astype(np.int64))
    y = K.project(hs, x.reshape(2, 256, 256), method="fwht")
    assert np.array_equal(y, exact_h.astype(np.float64))


def test_other_integer_and_bool_images_become_float64() -> None:
    rng = np.random.default_rng(3)
    masks = (rng.random((5, 4, 4)) < 0.5).astype(np.uint8)
    for dtype in (np.int16, np.int64, np.uint16, np.bool_, np.float16):
        x = (rng.random((2, 4, 4)) * 100).astype(dtype)
        y = K.project(pack(masks), x)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, reference(masks, x.astype(np.float64)), rtol=1e-12)


@pytest.mark.parametrize("method", ["bitplane", "lut8", "lut4", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_blocked_passes(monkeypatch: pytest.MonkeyPatch, method: str, dtype: type) -> None:
    """Tiny block sizes force many passes: bit-plane chunks, LUT blocks and batch chunks,
    BLAS mask blocks."""
    monkeypatch.setattr(P, "_BITPLANE_PASS_BYTES", 1)  # chunk = 256 bytes
    monkeypatch.setattr(P, "_LUT_TABLE_BYTES", 1)  # one byte position per table block
    monkeypatch.setattr(P, "_LUT_TABLE_BYTES_NARROW", 1)
    monkeypatch.setattr(P, "_LUT_MAX_BATCH", 4)  # 11 images -> 3 chunks
    monkeypatch.setattr(P, "_BLAS_BLOCK_BYTES", 1)  # one mask per block
    rng = np.random.default_rng(5)
    masks = (rng.random((7, 45, 53)) < 0.4).astype(np.uint8)  # 2385 px: 299 bytes, 1 spare bit
    if dtype == np.uint8:
        x = rng.integers(0, 256, size=(11, 45, 53), dtype=np.uint8)
    else:
        x = rng.standard_normal((11, 45, 53)).astype(dtype)
    y = K.project(pack(masks), x, method=method)
    if dtype == np.uint8:
        assert np.array_equal(y, reference(masks, x))
    else:
        assert_close(y, reference(masks, x), x, np.dtype(dtype))


def test_image_layouts_and_empty_inputs() -> None:
    rng = np.random.default_rng(7)
    masks = (rng.random((6, 5, 7)) < 0.5).astype(np.uint8)
    packed = pack(masks)
    img = rng.random((5, 7))
    ref = reference(masks, img[None])
    for given_masks in (packed, FakeSet(masks)):
        np.testing.assert_allclose(K.project(given_masks, img), ref, rtol=1e-12)  # (H, W)
        np.testing.assert_allclose(K.project(given_masks, img.ravel()), ref, rtol=1e-12)  # (n,)
        np.testing.assert_allclose(K.project(given_masks, img.reshape(1, -1)), ref, rtol=1e-12)
        assert K.project(given_masks, np.zeros((0, 5, 7))).shape == (0, 6)
    assert K.project(np.zeros((0, 5), np.uint8), rng.random((3, 35))).shape == (3, 0)
    # non-contiguous input
    big = rng.random((4, 10, 14))
    view = big[:, ::2, ::2]
    np.testing.assert_allclose(K.project(packed, view), reference(masks, view), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# FWHT path for Hadamard sets
# --------------------------------------------------------------------------------------------


@settings(max_examples=25)
@given(log_side=st.integers(1, 4), frac=st.floats(0.0, 1.0), split=st.booleans(),
       batch=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_fwht_path_matches_dense(log_side: int, frac: float, split: bool, batch: int,
                                 seed: int, dtype: type) -> None:
    n_side = 1 << log_side
    n = n_side * n_side
    rng = np.random.default_rng(seed)
    m = max(1, round(frac * n))
    rows = rng.permutation(n)[:m]
    if split:  # [+h0, -h0, +h1, -h1, ...]
        rows = np.repeat(rows, 2)
        signs = np.tile([1, -1], m)
    else:
        signs = rng.choice([-1, 1], size=m)
    hs = hadamard_set(n_side, rows, signs)
    x = rng.standard_normal((batch, n_side, n_side)).astype(dtype)
    ref = reference(hs.masks, x)
    for method in ("fwht", "auto", "bitplane"):
        y = K.project(hs, x, method=method)
        assert y.dtype == dtype
        assert_close(y, ref, x, np.dtype(dtype))


def test_fwht_path_full_set() -> None:
    n_side = 8
    rows = np.arange(64)
    hs = hadamard_set(n_side, rows, np.ones(64, dtype=int))
    x = np.random.default_rng(2).random((3, n_side, n_side))
    np.testing.assert_allclose(K.project(hs, x, method="fwht"), reference(hs.masks, x),
                               atol=1e-12)
    plan = K.Projector(autotune=False).plan(64, 64, 3, np.float64, hadamard=True)
    assert plan.method in KERNELS


def test_fwht_path_never_touches_the_masks() -> None:
    """A Hadamard set that only knows its rows, signs, m and shape (e.g. lazily built masks)."""

    class RowsOnly:
        m = 6
        shape = (4, 4)
        hadamard_rows = np.array([0, 3, 3, 15, 8, 1])
        hadamard_signs = np.array([1, 1, -1, -1, 1, 1], dtype=np.int8)

        @property
        def masks(self) -> np.ndarray:
            raise AssertionError("masks touched")

        def pack(self) -> np.ndarray:
            raise AssertionError("pack called")

    full = hadamard_set(4, RowsOnly.hadamard_rows, RowsOnly.hadamard_signs)
    x = np.random.default_rng(9).random((2, 4, 4))
    np.testing.assert_allclose(K.project(RowsOnly(), x, method="fwht"),
                               reference(full.masks, x), atol=1e-12)
    bad = RowsOnly()
    bad.hadamard_rows = np.array([0, 3, 3, 16, 8, 1])  # 16 is out of range for n = 16
    with pytest.raises(ConfigError, match="hadamard_rows"):
        K.project(bad, x, method="fwht")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes() -> None:
    packed = np.zeros((4, 3), np.uint8)  # 17..24 pixels
    with pytest.raises(ConfigError, match=r"\(2, 40\).*\(4, 3\)"):
        K.project(packed, np.ones((2, 40)))
    fake = FakeSet(np.zeros((3, 4, 6), np.uint8))
    with pytest.raises(ConfigError, match=r"\(2, 6, 4\).*\(4, 6\)"):
        K.project(fake, np.ones((2, 6, 4)))
    with pytest.raises(ConfigError, match="shape"):
        K.project(fake, np.ones((2, 25)))
    with pytest.raises(ConfigError):
        K.project(fake, np.ones((1, 2, 4, 6)))


def test_bad_arguments() -> None:
    packed = np.zeros((2, 1), np.uint8)
    x = np.ones((1, 8))
    with pytest.raises(ConfigError, match="method"):
        K.project(packed, x, method="fast")
    with pytest.raises(ConfigError, match="Hadamard"):
        K.project(packed, x, method="fwht")
    with pytest.raises(ConfigError, match="uint8"):
        K.project(packed, x, method="uint8")
    with pytest.raises(ConfigError, match="uint8"):
        K.project(packed.astype(np.int32), x)
    with pytest.raises(ConfigError):
        K.project(np.zeros(3, np.uint8), x)
    with pytest.raises(ConfigError):
        K.project([[1, 2]], x)
    with pytest.raises(ConfigError, match="real"):
        K.project(packed, x.astype(complex))


def test_env_method(monkeypatch: pytest.MonkeyPatch) -> None:
    packed = np.zeros((2, 1), np.uint8)
    monkeypatch.setenv("LSI_KERNELS_METHOD", "nope")
    with pytest.raises(ConfigError, match="method"):
        K.project(packed, np.ones((1, 8)))
    monkeypatch.setenv("LSI_KERNELS_METHOD", "lut4")
    assert np.array_equal(K.project(np.full((2, 1), 3, np.uint8), np.ones((1, 8))), [[2, 2]])


# --------------------------------------------------------------------------------------------
# planner
# --------------------------------------------------------------------------------------------


@given(m=st.integers(1, 70000), n=st.integers(1, 1 << 18), batch=st.integers(1, 512),
       dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int32]),
       had=st.booleans())
def test_planner_picks_a_valid_method(m: int, n: int, batch: int, dtype: type,
                                      had: bool) -> None:
    plan = K.Projector(autotune=False).plan(m, n, batch, dtype, hadamard=had)
    assert plan.method in (KERNELS if had else KERNELS[:-1])
    assert plan.source == "model"
    assert plan.predicted_s[plan.method] == min(plan.predicted_s.values())
    assert all(v > 0 for v in plan.predicted_s.values())


def test_planner_caches_and_forces() -> None:
    proj = K.Projector(autotune=False)
    rng = np.random.default_rng(4)
    masks = (rng.random((9, 6, 6)) < 0.5).astype(np.uint8)
    x = rng.random((3, 6, 6)).astype(np.float32)
    assert proj.plans == {}
    y = proj.project(pack(masks), x)
    assert_close(y, reference(masks, x), x, np.dtype(np.float32))
    (key, plan), = proj.plans.items()
    assert key[:5] == (9, 36, 3, "float32", False)
    assert plan.method in KERNELS[:-1]
    assert proj.plan(9, 36, 3, np.float32) is plan  # cached object
    proj(pack(masks), x)
    assert len(proj.plans) == 1
    forced = proj.plan(9, 36, 3, np.float32, method="lut4")
    assert forced.method == "lut4" and forced.source == "forced"
    assert proj.plan(9, 36, 3, np.uint8, method="uint8").method in ("bitplane", "lut8", "lut4")
    proj.clear()
    assert proj.plans == {}
    assert "(" in K.explain_plan(pack(masks), 3) and K.explain_plan(
        pack(masks), 3).split()[0] in KERNELS


def test_autotune_chooses_a_valid_method(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(autotune, "TINY_S", 0.0)  # time even this small problem
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "tuning.json"))
    rng = np.random.default_rng(6)
    masks = (rng.random((40, 16, 16)) < 0.5).astype(np.uint8)
    x = rng.random((5, 16, 16))
    y = proj.project(pack(masks), x)
    np.testing.assert_allclose(y, reference(masks, x), rtol=1e-12)
    (plan,) = proj.plans.values()
    assert plan.method in KERNELS[:-1]
    assert plan.source == "timed"
    assert plan.method in plan.timed_s and set(plan.timed_s) <= set(KERNELS[:-1])
    assert plan.timed_s[plan.method] == min(plan.timed_s.values())
    assert np.array_equal(proj.project(pack(masks), x), y)
    assert np.array_equal(K.project(pack(masks), x, method=plan.method), y)


# --------------------------------------------------------------------------------------------
# with the real PatternSet
# --------------------------------------------------------------------------------------------


def test_with_pattern_set() -> None:
    patterns = pytest.importorskip("lsi_hw.patterns")
    ps_cls = patterns.PatternSet
    rng = np.random.default_rng(8)
    sets = [
        ps_cls.hadamard(8),  # full, sequency order
        ps_cls.hadamard(16, m=40, order="natural"),  # partial
        ps_cls.hadamard(8, m=10, split=True),  # split pairs
        ps_cls.hadamard(4, order="random", seed=1),
        ps_cls.random(23, (7, 9), p=0.3, seed=2),  # not Hadamard, 63 px
    ]
    for ps in sets:
        assert np.array_equal(ps.pack(), pack(ps.masks))  # packing contract
        x = rng.standard_normal((3, *ps.shape))
        ref = reference(ps.masks, x)
        methods = ("auto", "bitplane", "lut8", "lut4", "blas")
        if ps.hadamard_rows is not None:
            methods += ("fwht",)
            h = hadamard(ps.n_pixels)
            expect = ((1 + ps.hadamard_signs[:, None] * h[ps.hadamard_rows]) // 2)
            assert np.array_equal(ps.masks.reshape(ps.m, -1), expect)
        for method in methods:
            np.testing.assert_allclose(K.project(ps, x, method=method), ref, atol=1e-10)
        x8 = rng.integers(0, 256, size=(2, *ps.shape), dtype=np.uint8)
        assert np.array_equal(K.project(ps, x8), reference(ps.masks, x8))
        if ps.is_split:
            diff = ps.differential(K.project(ps, x, method="fwht"))
            np.testing.assert_allclose(
                diff, x.reshape(3, -1) @ hadamard(ps.n_pixels)[ps.hadamard_rows[0::2]].T,
                atol=1e-10)
