"""Shared fixtures. `hil` tests run only with WILDLINK_HIL=1 (see `make hil`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WILDLINK_HIL") == "1":
        return
    skip = pytest.mark.skip(reason="hardware-in-the-loop test: set WILDLINK_HIL=1 (make hil)")
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests that need it skip when it is absent."""
    path = Path(os.environ.get("WILDLINK_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set WILDLINK_DATA)")
    return path
