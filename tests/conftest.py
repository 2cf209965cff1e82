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
