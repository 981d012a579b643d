"""Sections of BENCHMARKS.md, one module per area (`make bench` runs each in its own process).

Each module provides ``run(quick: bool) -> str``: Markdown starting with a ``## `` heading, with
the exact command that reproduces each figure and the measured numbers. ``quick=True`` must
finish in under a minute on the shipped samples (`tests/data`); it is a CI smoke test, not a
result. Full mode reads the shared data set through `data_dir()`.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data"


def data_dir() -> Path:
    """The shared data folder: $WILDLINK_DATA (set by `wildlink bench --data`), else ../shared/data."""
    return Path(os.environ.get("WILDLINK_DATA", ROOT.parent / "shared" / "data"))
