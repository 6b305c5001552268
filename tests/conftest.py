"""Shared test helpers: tiny specs built from YAML text, the shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def x64():
    """JAX in float64 for one test (the runners' own switch), float32 again afterwards."""
    from neurodsl.runners.simulate import configure_precision
    configure_precision("float64")
    try:
        yield
    finally:
        configure_precision("float32")
