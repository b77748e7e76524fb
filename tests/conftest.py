"""Shared pytest setup: hypothesis profiles and the hardware marker's skip rule."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel test workers (pytest -n N): one thread per library in each worker, set
    # before numpy/numba/torch load.  Otherwise every worker's OpenBLAS, OpenMP and numba
    # pools spin on the same few cores and the suite takes longer than serially.  Numba's
    # pool keeps every core (tests of the parallel paths raise it for themselves);
    # only its default use drops to one thread (see _one_numba_thread).
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: on a 2-core CI machine (or a busy one) torch's default
    threads compete with each other and made tests 5-15x slower and erratic."""
    try:
        import torch
    except ImportError:  # lsi_hw alone does not need torch
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _one_numba_thread() -> None:
    """In parallel workers, numba's parallel kernels run on one thread by default."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import numba

        numba.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's cache folder (cached recognizers, ...)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(autouse=True, scope="session")
def _static_kernel_plans() -> None:
    """Projection paths from the static cost model, not timed per machine: every test
    process would otherwise re-tune in its fresh cache, and the choice would depend on the
    load. tests/test_kernel_tuning.py turns tuning on where it tests it."""
    os.environ.setdefault("LSI_KERNELS_AUTOTUNE", "0")


FACES_EXTRA_REASON = 'needs the optional faces extra: pip install "lsi-toolkit[faces]"'


@pytest.fixture(scope="module")
def dlib_faces():  # -> lsi_ml.evaluation.faces.DlibFaces
    """dlib's detector, landmarks and descriptor; skips without the ``faces`` extra."""
    import importlib.util

    pytest.importorskip("dlib", reason=FACES_EXTRA_REASON + " (dlib missing)")
    # not importorskip: the package's __init__ imports pkg_resources, gone from new setuptools;
    # lsi_ml.evaluation.faces only needs its model files, found through find_spec
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip(FACES_EXTRA_REASON + " (face_recognition_models missing)")
    from lsi_ml.evaluation.faces import DlibFaces

    return DlibFaces()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip hardware tests unless LSI_HARDWARE=1 says a device is connected."""
    if os.environ.get("LSI_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs a connected device (set LSI_HARDWARE=1 to run)")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
