"""Exactly once on disk: the real trap and base processes, SIGKILLed 32 times at random.

tests/crash_trials.py runs the trials (and prints the figures for docs/reliability.md); this
test asserts on what the services left on disk: every picture on the card delivered once
(index row, container with the right bytes, picture, sidecar, one CSV report row), nothing
lost, nothing sent twice, no orphan file. About a minute and a half on two busy cores; the
same trial on the code before (containers named by receive time) left 1-4 orphan files.
"""

from __future__ import annotations

import pytest
from crash_trials import run_trials

pytestmark = pytest.mark.slow

KILLS = 32
IMAGES = 12


def test_32_random_kills_leave_every_image_exactly_once_on_disk(tmp_path):
    figures = run_trials(tmp_path, kills=KILLS, images=IMAGES, seed=1)
    report = f"figures: {figures}"
    assert sum(figures["kills"].values()) == KILLS and min(figures["kills"].values()) > 0, report
    assert figures["exit_codes"] == {"trap": 0, "base": 0}, report  # then a clean SIGTERM stop
    assert figures["captured"] == figures["delivered"] == IMAGES, report
    assert figures["lost"] == 0 and figures["duplicated"] == 0, report
    assert figures["sent_twice_by_trap"] == 0, report
    assert figures["orphan_files"] == 0, report
    assert figures["index_rows"] == figures["containers_intact"] == IMAGES, report
    # every picture decoded, unless three kills happened to land in its decodes (then it is
    # quarantined, still stored once: see crash_trials.count_on_disk)
    assert figures["decoded"] + figures["quarantined_after_kills"] == IMAGES, report
    assert figures["other_undecodable"] == 0, report
    assert figures["report_rows"] == IMAGES and figures["report_duplicates"] == 0, report
    assert (figures["left_in_trap_queue"], figures["left_unconfirmed"],
            figures["left_partial"]) == (0, 0, 0), report
