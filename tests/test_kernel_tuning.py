"""Tests of the projection autotuning (lsi_hw.sim.autotune) through lsi_hw.sim.kernels.

Every test works in its own ``XDG_CACHE_HOME`` under ``tmp_path`` (the user's cache folder
is never touched), times even small problems (``TINY_S = 0``) and treats the machine as idle
(``BUSY_LOAD = inf``) so that timed choices are written.  No timing assertions: which path
wins depends on the machine and its load; the tests check what is stored and read back, and
that the numbers never depend on the path chosen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

from lsi_hw.errors import ConfigError
from lsi_hw.sim import autotune
from lsi_hw.sim import kernels as K

ROOT = Path(__file__).resolve().parents[1]
PACKED_PATHS = ("bitplane", "lut8", "lut4", "blas")


@pytest.fixture(autouse=True)
def tuning_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private cache folder, small problems timed, the machine never 'busy'."""
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for name in ("LSI_KERNELS_AUTOTUNE", "LSI_KERNELS_RETUNE", "LSI_KERNELS_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(autotune, "TINY_S", 0.0)
    monkeypatch.setattr(autotune, "BUSY_LOAD", float("inf"))
    K.reset_kernel_tuning()  # the shared projector forgets plans made by other tests
    yield cache
    K.reset_kernel_tuning()


def problem(seed: int = 0, m: int = 40, side: int = 16, batch: int = 5,
            dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks (m, side, side) 0/1, packed masks, images (batch, side, side))."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((m, side, side)) < 0.5).astype(np.uint8)
    packed = np.packbits(masks.reshape(m, -1), axis=1, bitorder="little")
    if dtype == np.uint8:
        x = rng.integers(0, 256, size=(batch, side, side), dtype=np.uint8)
    else:
        x = rng.random((batch, side, side)).astype(dtype)
    return masks, packed, x


def reference(masks: np.ndarray, x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    return flat @ masks.reshape(masks.shape[0], -1).T.astype(np.float64)


def the_plan(proj: K.Projector) -> K.Plan:
    (plan,) = proj.plans.values()
    return plan


def class_of(packed: np.ndarray, x: np.ndarray, hadamard: bool = False) -> str:
    return autotune.shape_class(packed.shape[0], x[0].size, x.shape[0], x.dtype.name, hadamard,
                                numba.get_num_threads())


# --------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------


def test_tuning_file_round_trip(tuning_env: Path) -> None:
    _, packed, x = problem()
    path = K.tuning_cache_path()
    assert path.parent == tuning_env / "lsi-toolkit"  # the private folder, never ~/.cache
    assert path.name.startswith("kernels-") and path.suffix == ".json"
    assert not path.exists()
    first = K.Projector()  # autotune from the environment: on by default
    y = first.project(packed, x)
    plan = the_plan(first)
    assert plan.source == "timed" and plan.method in PACKED_PATHS
    assert plan.tuning_s > 0 and "timed" in plan.describe()
    doc = json.loads(path.read_text())
    assert doc["format"] == autotune.FORMAT
    assert doc["machine"] == autotune.machine_info()
    entry = doc["plans"][class_of(packed, x)]
    assert entry["method"] == plan.method and entry["shape"] == [40, 256, 5]
    assert set(entry["timed_ms"]) == set(plan.timed_s)

    # another process (a fresh store reading the same file) takes the stored choice
    second = K.Projector(store=K.TuningStore())
    y2 = second.project(packed, x)
    again = the_plan(second)
    assert (again.source, again.method) == ("cached", plan.method)
    assert again.timed_s == pytest.approx(plan.timed_s, rel=1e-3, abs=1e-6)
    assert np.array_equal(y, y2)
    # the same shape class, another exact shape: no new timing
    _, packed3, x3 = problem(seed=1, m=44, batch=6)
    second.project(packed3, x3[:5])
    assert {p.source for p in second.plans.values()} == {"cached"}
    assert list(json.loads(path.read_text())["plans"]) == [class_of(packed, x)]
    # plan() never times; it reports the stored choice
    assert K.Projector(store=K.TuningStore()).plan(40, 256, 5, np.float32).source == "cached"


def test_plan_without_data_does_not_time() -> None:
    proj = K.Projector(autotune=True)
    plan = proj.plan(40, 256, 5, np.float32)
    assert plan.source == "model" and proj.plans == {}  # not cached: the first call times
    assert not K.tuning_cache_path().exists()
    _, packed, x = problem()
    proj.project(packed, x)
    assert the_plan(proj).source == "timed"


def test_reset_kernel_tuning() -> None:
    _, packed, x = problem()
    K.project(packed, x)  # the shared projector and store
    path = K.tuning_cache_path()
    assert path.exists() and K._DEFAULT.plans
    assert K.reset_kernel_tuning() == path
    assert not path.exists() and K._DEFAULT.plans == {}
    assert autotune.default_store().entries() == {}
    assert K.reset_kernel_tuning() is None  # nothing left
    K.project(packed, x)
    assert the_plan(K._DEFAULT).source == "timed" and path.exists()

    # deleting the file by hand: the next process (here a fresh store) times again
    path.unlink()
    proj = K.Projector(store=K.TuningStore())
    proj.project(packed, x)
    assert the_plan(proj).source == "timed" and path.exists()


# --------------------------------------------------------------------------------------------
# environment switches
# --------------------------------------------------------------------------------------------


def test_autotune_off_uses_the_cost_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSI_KERNELS_AUTOTUNE", "0")
    masks, packed, x = problem(dtype=np.float64)
    proj = K.Projector()
    assert not proj.autotune
    y = proj.project(packed, x)
    plan = the_plan(proj)
    assert plan.source == "model" and not plan.timed_s
    assert plan.predicted_s[plan.method] == min(plan.predicted_s.values())
    assert not K.tuning_cache_path().exists()  # nothing read or written
    np.testing.assert_allclose(y, reference(masks, x), rtol=1e-12)
    # deterministic: every fresh projector makes the same choice
    assert K.Projector().plan(40, 256, 5, np.float64) == plan
    # an explicit argument wins over the environment
    assert K.Projector(autotune=True).autotune
    monkeypatch.setenv("LSI_KERNELS_AUTOTUNE", "1")
    assert K.Projector().autotune and not K.Projector(autotune=False).autotune


def test_retune_replaces_stored_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    _, packed, x = problem()
    cls = class_of(packed, x)
    autotune.TuningStore().put(cls, {"method": "blas", "shape": [40, 256, 5]})
    proj = K.Projector(store=K.TuningStore())
    proj.project(packed, x)
    assert (the_plan(proj).source, the_plan(proj).method) == ("cached", "blas")

    monkeypatch.setenv("LSI_KERNELS_RETUNE", "1")
    store = K.TuningStore()
    proj = K.Projector(store=store)
    proj.project(packed, x)
    plan = the_plan(proj)
    assert plan.source == "timed"
    entry = json.loads(K.tuning_cache_path().read_text())["plans"][cls]
    assert entry["method"] == plan.method and "timed_ms" in entry  # replaced
    # once per process: another projector on the same store takes the new choice
    other = K.Projector(store=store)
    other.project(packed, x)
    assert (the_plan(other).source, the_plan(other).method) == ("cached", plan.method)


def test_busy_machine_keeps_timings_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "machine_busy", lambda: True)
    _, packed, x = problem()
    store = K.TuningStore()
    proj = K.Projector(store=store)
    proj.project(packed, x)
    assert the_plan(proj).source == "timed" and "busy" in the_plan(proj).describe()
    assert not K.tuning_cache_path().exists()
    other = K.Projector(store=store)
    other.project(packed, x)
    assert the_plan(other).source == "cached"


# --------------------------------------------------------------------------------------------
# damaged, foreign and unwritable files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": 1}', "\x00\xff",
                                     '{"format": 1, "plans": {"x": 3}, "machine": 7}'])
def test_corrupt_file_is_ignored_with_a_warning(content: str) -> None:
    masks, packed, x = problem()
    path = K.tuning_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="latin-1")
    proj = K.Projector(store=K.TuningStore())
    if content.startswith('{"format": 1, "plans"'):  # parses: another machine's, no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error", K.KernelTuningWarning)
            y = proj.project(packed, x)
    else:
        with pytest.warns(K.KernelTuningWarning, match="kernel tuning file"):
            y = proj.project(packed, x)
    np.testing.assert_allclose(y, reference(masks, x), rtol=1e-5)
    assert the_plan(proj).source == "timed"
    doc = json.loads(path.read_text())  # rewritten, valid
    assert doc["plans"][class_of(packed, x)]["method"] == the_plan(proj).method


def test_corrupt_file_warns_once_without_a_traceback(tuning_env: Path) -> None:
    """In a fresh interpreter: a damaged file gives one warning line, no traceback."""
    path_code = ("from lsi_hw.sim import kernels as K\n"
                 "p = K.tuning_cache_path(); p.parent.mkdir(parents=True, exist_ok=True)\n"
                 "p.write_text('{garbage')\n")
    code = path_code + (
        "import numpy as np\n"
        "from lsi_hw.sim import autotune\n"
        "autotune.TINY_S = 0.0\n"
        "autotune.BUSY_LOAD = float('inf')\n"
        "packed = np.full((40, 32), 0x5A, np.uint8)\n"
        "x = np.ones((5, 256), np.float32)\n"
        "y = K.project(packed, x)\n"
        "y = K.project(packed, np.ones((2, 256), np.float32))\n"
        "assert np.all(y == 128), y\n"
        "print('ok')\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tuning_env),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("KernelTuningWarning") == 1, out.stderr
    assert "damaged kernel tuning file" in out.stderr


def test_unreadable_and_unwritable_file_warn(tuning_env: Path) -> None:
    path = K.tuning_cache_path()
    path.mkdir(parents=True)  # a folder where the file should be
    masks, packed, x = problem()
    proj = K.Projector(store=K.TuningStore())
    with pytest.warns(K.KernelTuningWarning) as record:
        y = proj.project(packed, x)
    text = " ".join(str(w.message) for w in record)
    assert "cannot read" in text and "cannot write" in text
    np.testing.assert_allclose(y, reference(masks, x), rtol=1e-5)
    assert the_plan(proj).source == "timed"
    with pytest.raises(ConfigError, match="cannot remove"):
        K.reset_kernel_tuning()
    path.rmdir()


# --------------------------------------------------------------------------------------------
# whatever path is chosen, the numbers are the same
# --------------------------------------------------------------------------------------------


def hadamard_problem(side: int = 16, m: int = 40, batch: int = 5, dtype: type = np.float32):
    """A duck-typed Hadamard PatternSet (natural order, random rows and signs) and images."""
    rng = np.random.default_rng(3)
    n = side * side
    rows = rng.permutation(n)[:m]
    signs = rng.choice([-1, 1], size=m).astype(np.int8)
    parity = (np.bitwise_count(np.bitwise_and.outer(rows, np.arange(n))) & 1).astype(np.int64)
    h = (1 - 2 * parity) * signs[:, None]
    masks = ((1 + h) // 2).astype(np.uint8).reshape(m, side, side)

    class HSet:
        hadamard_rows = rows.astype(np.int64)
        hadamard_signs = signs

        def __init__(self) -> None:
            self.masks = masks

        def pack(self) -> np.ndarray:
            return np.packbits(masks.reshape(m, -1), axis=1, bitorder="little")

    if dtype == np.uint8:
        x = rng.integers(0, 256, size=(batch, side, side), dtype=np.uint8)
    else:
        x = rng.standard_normal((batch, side, side)).astype(dtype)
    return HSet(), masks, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("hadamard", [False, True])
def test_every_chosen_path_gives_the_same_numbers(tmp_path: Path, dtype: type,
                                                  hadamard: bool) -> None:
    if hadamard:
        given, masks, x = hadamard_problem(dtype=dtype)
        paths = (*PACKED_PATHS, "fwht")
    else:
        masks, given, x = problem(dtype=dtype)
        paths = PACKED_PATHS
    cls = autotune.shape_class(40, 256, 5, np.dtype(dtype).name, hadamard,
                               numba.get_num_threads())
    ref = reference(masks, x)
    scale = np.abs(x.reshape(5, -1).astype(np.float64)).sum(axis=1)[:, None] + 1.0
    tol = {np.float32: 1e-5, np.float64: 1e-12, np.uint8: 0.0}[dtype]
    results = {}
    for path in paths:
        store = K.TuningStore(tmp_path / f"{path}.json")
        store.put(cls, {"method": path})
        proj = K.Projector(autotune=True, store=store)
        y = proj.project(given, x)
        plan = the_plan(proj)
        assert (plan.source, plan.method) == ("cached", path)
        assert y.dtype == (np.float32 if dtype == np.float32 else np.float64)
        assert np.all(np.abs(y - ref) <= tol * scale), (path, np.abs(y - ref).max())
        assert np.array_equal(y, K.project(given, x, method=path))  # the same path, bit for bit
        results[path] = y
    if dtype == np.uint8:  # exact on every path
        assert all(np.array_equal(results[p], ref) for p in paths)
    # a timed choice is one of these, with its numbers
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "timed.json"))
    y = proj.project(given, x)
    assert the_plan(proj).method in paths
    assert np.array_equal(y, results[the_plan(proj).method])


def test_stored_method_outside_the_candidates_is_ignored(tmp_path: Path) -> None:
    """An "fwht" entry cannot serve masks that are not a Hadamard set."""
    _, packed, x = problem()
    store = K.TuningStore(tmp_path / "t.json")
    store.put(class_of(packed, x), {"method": "fwht"})
    proj = K.Projector(autotune=True, store=store)
    proj.project(packed, x)
    assert the_plan(proj).source == "timed" and the_plan(proj).method in PACKED_PATHS


# --------------------------------------------------------------------------------------------
# timing budget and shape classes
# --------------------------------------------------------------------------------------------


def test_budget_limits_the_candidates_timed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                            ) -> None:
    _, packed, x = problem()
    monkeypatch.setattr(autotune, "PRUNE", float("inf"))
    monkeypatch.setattr(autotune, "TOTAL_S", 0.0)  # only the model's favourite
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "a.json"))
    proj.project(packed, x)
    plan = the_plan(proj)
    favourite = min(plan.predicted_s, key=plan.predicted_s.__getitem__)
    assert plan.source == "timed" and list(plan.timed_s) == [favourite]

    monkeypatch.setattr(autotune, "TOTAL_S", 60.0)  # all of them
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "b.json"))
    proj.project(packed, x)
    assert set(the_plan(proj).timed_s) == set(PACKED_PATHS)

    monkeypatch.setattr(autotune, "PRUNE", 1.0)  # a single plausible path: not timed
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "c.json"))
    proj.project(packed, x)
    assert the_plan(proj).source == "model"
    assert not (tmp_path / "c.json").exists()


def test_small_problems_take_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(autotune, "TINY_S", 1.0)
    _, packed, x = problem()
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "t.json"))
    proj.project(packed, x)
    assert the_plan(proj).source == "model" and not (tmp_path / "t.json").exists()


def test_extrapolation_from_fewer_masks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a tiny run budget the larger run has fewer masks than the call: the estimate is
    extrapolated, and the timed problems never exceed the call's."""
    monkeypatch.setattr(autotune, "RUN_S", 0.0)
    monkeypatch.setattr(autotune, "TOTAL_S", 60.0)
    monkeypatch.setattr(autotune, "CONFIRM_MAX_S", 0.0)  # no whole-problem runs
    seen: list[int] = []
    real = autotune.execute

    def spy(path, mk, x, kind):
        seen.append(mk.m)
        return real(path, mk, x, kind)

    monkeypatch.setattr(autotune, "execute", spy)
    masks, packed, x = problem(m=20000)
    proj = K.Projector(autotune=True, store=K.TuningStore(tmp_path / "t.json"))
    y = proj.project(packed, x)
    assert max(seen) < 20000 and min(seen) >= 1
    assert all(t > 0 for t in the_plan(proj).timed_s.values())
    np.testing.assert_allclose(y, reference(masks, x), rtol=1e-5)


def test_close_estimates_are_settled_on_the_whole_problem(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Estimates extrapolated from a few masks can miss a cliff that only the whole problem
    shows; when the best two are close, both run on every mask and those times decide."""
    from lsi_hw.sim.costmodel import predict_seconds

    _, packed, x = problem(m=400, side=32, batch=8)
    mk = K.as_masks(packed)
    images = K.as_images(x, mk)
    real = autotune.execute
    whole_runs: list[str] = []

    def cliff(path, mk_, x_, kind):  # lut4 is 60 ms slower on all 400 masks
        if mk_.m == 400:
            whole_runs.append(path)
            if path == "lut4":
                time.sleep(0.06)
        return real(path, mk_, x_, kind)

    def predict(path: str, k: int) -> float:
        return predict_seconds(path, k, images.shape[1], len(images), "float32",
                               numba.get_num_threads())

    monkeypatch.setattr(autotune, "execute", cliff)
    monkeypatch.setattr(autotune, "RUN_S", 0.0)  # lut4 estimated from 32 masks at most
    monkeypatch.setattr(autotune, "TOTAL_S", 60.0)
    monkeypatch.setattr(autotune, "PRUNE", float("inf"))
    monkeypatch.setattr(autotune, "CLOSE", 0.5)  # never close: the estimates decide
    timed, _ = autotune.time_paths(mk, images, "float32", ("lut4", "lut8"), predict)
    assert "lut4" not in whole_runs and timed["lut4"] < 0.06  # blind to the cliff
    monkeypatch.setattr(autotune, "CLOSE", float("inf"))  # the two always count as close
    whole_runs.clear()
    timed, _ = autotune.time_paths(mk, images, "float32", ("lut4", "lut8"), predict)
    assert whole_runs.count("lut4") == 2 and set(whole_runs) == {"lut4", "lut8"}
    assert timed["lut4"] >= 0.06 and min(timed, key=timed.__getitem__) == "lut8"


def test_shape_classes() -> None:
    sc = autotune.shape_class
    assert sc(1000, 65536, 64, "float32", False, 2) == sc(1100, 60000, 60, "float32", False, 2)
    assert sc(1000, 65536, 64, "float32", False, 2) == "float32 any thr2 m2^10 n2^16 b2^6"
    distinct = {sc(256, 4096, 1, "float32", False, 2), sc(256, 4096, 2, "float32", False, 2),
                sc(256, 4096, 1, "float64", False, 2), sc(256, 4096, 1, "float32", True, 2),
                sc(256, 4096, 1, "float32", False, 1), sc(512, 4096, 1, "float32", False, 2),
                sc(256, 16384, 1, "float32", False, 2)}
    assert len(distinct) == 7


def test_tuning_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert autotune.tuning_path().parent == tmp_path / "elsewhere" / "lsi-toolkit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert autotune.tuning_path().parent == Path.home() / ".cache" / "lsi-toolkit"
    info = autotune.machine_info()
    assert {"cpu", "cpus", "numba", "numpy", "format"} <= set(info)
