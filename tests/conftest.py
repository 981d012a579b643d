"""Shared fixtures. `hil` tests run only with WILDLINK_HIL=1 (see `make hil`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from device.boxes import Box
from device.imageio import load_image
from device.saliency import boxes_for, load_megadetector

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


@pytest.fixture(scope="module")
def missouri() -> tuple[np.ndarray, list[Box]]:
    """(uint8 image [h, w, 3], MegaDetector boxes) of tests/data/camtrap/missouri.jpg, one per
    test module (the two-part and variable-rate tests)."""
    camtrap = SAMPLES / "camtrap"
    image = load_image(camtrap / "missouri.jpg")
    return image, boxes_for(load_megadetector(camtrap / "megadetector.json"), "missouri.jpg")


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """`wildlink ARGV` in this process: (exit code, stdout, stderr)."""
    from tools.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
