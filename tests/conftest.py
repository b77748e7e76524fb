"""Shared pytest setup: hypothesis profiles and the hardware marker's skip rule."""

from __future__ import annotations

import os

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip hardware tests unless LSI_HARDWARE=1 says a device is connected."""
    if os.environ.get("LSI_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs a connected device (set LSI_HARDWARE=1 to run)")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
