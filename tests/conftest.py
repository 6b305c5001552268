"""Shared test helpers: tiny specs built from YAML text, the shared data folder."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

#: One JAX persistent compilation cache and one loop-engine cache (neurodsl/compile/loop_cache.py) per
#: test session, fresh each run (a cold start is what CI measures): the xdist workers and every CLI subprocess the tests start inherit it through the
#: environment, so a program compiled by one of them (a resumed run, a second worker) is loaded, not
#: recompiled. Set before JAX is imported; the controller creates the folder and removes it at the end.
CACHE_ENV = "NEURODSL_TEST_JAX_CACHE"
if CACHE_ENV not in os.environ:
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="neurodsl_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ[CACHE_ENV], "jax")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    os.environ["NEURODSL_CACHE_DIR"] = os.path.join(os.environ[CACHE_ENV], "neurodsl")
    _CACHE_OWNER = True
else:
    _CACHE_OWNER = False


def pytest_unconfigure(config):
    if _CACHE_OWNER and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ[CACHE_ENV], ignore_errors=True)

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


#: The slowest test files (``pytest --durations``), run first: ``--dist loadfile`` hands whole files
#: to the workers in collection order, so a slow file collected last leaves the other worker idle.
SLOW_FIRST = ("runners/test_failure_safety.py", "runners/test_rnn_fit.py", "analysis/test_figures.py",
              "test_readme_workflow.py", "runners/test_student_eprop.py", "runners/test_student.py",
              "runners/test_rnn_force.py", "compile/test_core.py", "runners/test_student_safety.py")


def pytest_collection_modifyitems(config, items):
    rank = {f: i for i, f in enumerate(SLOW_FIRST)}

    def key(item):
        rel = Path(str(item.fspath)).relative_to(REPO / "tests").as_posix()
        return rank.get(rel, len(SLOW_FIRST))
    items.sort(key=key)  # stable: the order within a file and among the others is kept
