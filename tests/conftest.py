"""Shared test fixtures: paths to the repository's scenarios and the shared data."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_IPINYOU = REPO.parent / "shared" / "data" / "ipinyou"


def _freeze_the_heap() -> None:
    """Collect, then freeze what survives: the collector skips frozen objects for good."""
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session) -> None:
    """Freeze the heap that collection built (numba, numpy, hypothesis, the test items).

    rtb.simulate() runs a full gc.collect() before every run (rtb/engine.py), and a full
    collection walks every tracked object: in the test process, after collection, that
    is about 0.15 s a run, more than a tiny market's whole run, paid by hundreds of runs.
    Frozen objects are skipped by the collector; what a test makes and drops (each run's
    state, its SimPy cycles) is still collected as in a user's process, so no test sees
    other memory behaviour than the product's.
    """
    _freeze_the_heap()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After each test, freeze again what it left alive: the first run loads numba's
    kernels (about 60,000 objects that stay), module fixtures keep their runs, pytest
    keeps the reports; unfrozen, each later gc.collect() walks them again (30 ms a run)."""
    yield
    _freeze_the_heap()


@pytest.fixture
def ipinyou_dir() -> Path:
    """The shared iPinYou sample data; the test skips when it is absent."""
    if not (SHARED_IPINYOU / "2997.info.json").exists():
        pytest.skip("shared iPinYou data not present")
    return SHARED_IPINYOU


@pytest.fixture(scope="session")
def two_hour_scenario(tmp_path_factory) -> Path:
    """The quickstart cut to two hours (test_cli.two_hour_quickstart): a scenario file."""
    from test_cli import two_hour_quickstart

    return two_hour_quickstart(tmp_path_factory.mktemp("two-hour"))


@pytest.fixture(scope="session")
def two_hour_spec(two_hour_scenario):
    """The two-hour quickstart, loaded."""
    from rtb.scenario import load_scenario

    return load_scenario(two_hour_scenario)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """A day of the quickstart, run once for the session with its impression log read
    back (tests/markets.py: Run): test_simulation checks the rules on it, test_estimate
    the estimate of its requests."""
    from markets import run_scenario

    from rtb.scenario import load_scenario

    path = tmp_path_factory.mktemp("quickstart") / "impressions.csv"
    return run_scenario(load_scenario(REPO / "scenarios" / "quickstart.toml"), path)
