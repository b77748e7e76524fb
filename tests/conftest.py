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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip hardware tests unless LSI_HARDWARE=1 says a device is connected."""
    if os.environ.get("LSI_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="needs a connected device (set LSI_HARDWARE=1 to run)")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)
