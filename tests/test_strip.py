"""tools/strip.py: a frame at several budgets, labelled with bytes, airtime and pictures/hour."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tools.strip import main

ROOT = Path(__file__).resolve().parent.parent


def test_strip_has_the_original_and_one_panel_per_budget(tmp_path, capsys):
    out = tmp_path / "strip.jpg"
    assert main(["--bundle", str(ROOT / "tests" / "data" / "tiny_bundle"), "--size", "256",
                 "--budgets", "600", "3000", "--out", str(out)]) == 0
    assert Image.open(out).size[0] == 3 * 480 + 2 * 6
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 600 |")
            or line.startswith("| 3000 |")]
    assert len(rows) == 2
    sent = [int(row.split("|")[2]) for row in rows]
    assert 0 < sent[0] <= sent[1] <= 3000


def test_strip_bad_image_is_one_line(tmp_path, capsys):
    assert main(["--image", str(tmp_path / "none.jpg"), "--out", str(tmp_path / "s.jpg")]) == 2
    assert capsys.readouterr().err.startswith("tools.strip: error:")
