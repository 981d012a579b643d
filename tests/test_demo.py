"""`make demo`: its link figures, the classical codecs at the same bytes, the table, and a small
end-to-end run of two processes."""

from __future__ import annotations

import numpy as np
from service_helpers import TINY_BUNDLE, small_samples

from device.radio.airtime import Modulation
from tools import demo
from tools.linksim import plan_airtime


def test_link_figures_are_wildlink_airtimes():
    plans = demo.link_plans(3000)
    assert set(plans) == set(demo.SFS)
    expected = plan_airtime(3000, Modulation(sf=9), demo.REGION, demo.FREQ_MHZ)
    assert plans[9].data_airtime == expected.data_airtime
    assert plans[9].per_hour == expected.per_hour
    assert plans[7].data_airtime < plans[9].data_airtime and plans[7].per_hour > plans[9].per_hour


def test_jpeg_and_avif_fit_the_bytes_at_their_best_resolution():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 30, (240, 320, 3)), 0, 255).astype(np.uint8)
    choices = demo.classical(image, [(0.25, 0.25, 0.5, 0.5)], 1500)
    assert set(choices) == set(demo.COMPARED)
    for choice in choices.values():
        assert 0 < len(choice.data) <= 1500
        assert choice.decoded.shape == image.shape  # scaled back to the capture size
        assert choice.side < 320  # random pixels at 1500 B: only a smaller frame fits


def _row(name, box, bg, notes=None):
    plans = demo.link_plans(900)
    scores = {s: {"box_psnr": b, "bg_psnr": g, "psnr": g}
              for s, b, g in zip(("wildlink", *demo.COMPARED), box, bg, strict=True)}
    return dict(name=name, bytes=900, plans=plans, scores=scores, status="decoded",
                notes=notes or {c: "208 px, q5" for c in demo.COMPARED}, parts="")


def test_table_gives_airtime_pictures_per_hour_and_a_dash_without_animal_box():
    nan = float("nan")
    rows = [_row("empty.jpg", (nan, nan, nan), (21.5, 20.0, 22.3)),
            _row("deer.jpg", (30.0, 25.0, 26.0), (22.0, 23.0, 24.0))]
    lines = demo.table(rows).splitlines()
    assert "airtime SF7" in lines[0] and "pictures/h SF9" in lines[0]
    empty = lines[2]
    assert "nan" not in empty and "| - | - (208 px, q5) | - (208 px, q5) |" in empty
    assert "| 21.5 / 20.0 / 22.3 |" in empty
    plans = rows[0]["plans"]
    assert f"| {plans[7].data_airtime:.1f} s |" in empty
    assert "| mean of 1 with animals |" in lines[4] and "| 30.0 | 25.0 | 26.0 |" in lines[4]


def test_demo_end_to_end(tmp_path, capsys):
    samples = small_samples(tmp_path / "samples", width=320)
    code = demo.main(["--out", str(tmp_path / "out"), "--samples", str(samples), "--bundle",
                      str(TINY_BUNDLE), "--budget", "800", "--size", "320", "--speedup", "50",
                      "--timeout", "240"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2/2 pictures at the base" in out and "exit codes 0, 0" in out
    assert "| missouri.jpg |" in out and "| wellington.jpg |" in out
    assert "pictures/h SF7" in (tmp_path / "out" / "results.md").read_text()
    from PIL import Image

    # original | wildlink | JPEG | AVIF, whole frames above the enlarged animal
    with Image.open(tmp_path / "out" / "missouri.jpg") as im:
        assert im.width == 4 * demo.PANEL_WIDTH + 3 * 6 and im.height > 2 * 240


def test_a_picture_the_trap_cannot_encode_ends_the_wait_and_fails_the_demo(tmp_path, capsys):
    from PIL import Image

    samples = small_samples(tmp_path / "samples", names=("missouri.jpg",), width=320)
    Image.new("RGB", (10, 300)).save(samples / "sliver.png")  # too narrow to code
    code = demo.main(["--out", str(tmp_path / "out"), "--samples", str(samples), "--bundle",
                      str(TINY_BUNDLE), "--budget", "800", "--size", "320", "--speedup", "50",
                      "--timeout", "240"])
    captured = capsys.readouterr()
    assert code == 1
    assert "could not encode sliver.png" in captured.err and "1 of 2 pictures" in captured.err
    assert "| missouri.jpg |" in captured.out  # the rest is still compared


def test_the_comparison_picture_shows_the_animal_and_each_info_bar(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    panels = [("wildlink 900 B: 1 region\nbox 30.0 dB", frame), ("JPEG: nothing fits", None),
              ("AVIF 880 B: 208 px\nbox 25.0 dB", frame)]
    demo.comparison(tmp_path / "a.jpg", frame, None, panels)
    demo.comparison(tmp_path / "b.jpg", frame, (0.4, 0.4, 0.2, 0.2), panels, bar=(0, 224, 320, 240))
    with Image.open(tmp_path / "a.jpg") as plain, Image.open(tmp_path / "b.jpg") as full:
        assert plain.width == full.width == 4 * demo.PANEL_WIDTH + 3 * 6
        # + the enlarged animal (64x48 px and its margin at 480 px wide) + four 18-px bar rows
        assert full.height > plain.height + 360 + 4 * 18


def test_demo_with_three_traps_sharing_one_channel(tmp_path, capsys):
    names = ("missouri.jpg", "wellington.jpg", "caltech.jpg", "camdeboo.jpg")
    samples = small_samples(tmp_path / "samples", names=names, width=320)
    code = demo.main(["--out", str(tmp_path / "out"), "--samples", str(samples), "--bundle",
                      str(TINY_BUNDLE), "--budget", "800", "--size", "320", "--speedup", "50",
                      "--timeout", "240", "--traps", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 traps sharing one channel" in out and "4/4 pictures at the base" in out
    assert "3 traps and base stopped cleanly (exit codes 0, 0, 0, 0)" in out
    assert all(f"| {name} |" in out for name in names)  # each named from its own trap's log
    cards = sorted(p.name for p in (tmp_path / "out" / "run").glob("card*/*.jpg"))
    assert cards == sorted(names)  # every picture on exactly one trap's card
