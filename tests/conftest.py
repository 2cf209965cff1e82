"""Shared test fixtures: paths to the repository's scenarios and the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_IPINYOU = REPO.parent / "shared" / "data" / "ipinyou"


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
