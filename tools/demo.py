"""`make demo`: a trap and a base station on one machine, linked by a simulated lossy radio.

Two processes (`wildlink trap`, `wildlink base`) talk over loopback UDP through the radio
simulator with 10% frame loss (each direction), a sped-up clock (airtime, duty cycle and ack
timeouts all run faster), signed frames (per-trap key) and the EU868 10% sub-band. The trap
watches the shipped sample folder, encodes each camera-trap picture with its MegaDetector boxes
and queues it; the base reassembles, decodes and indexes them. Then, per sample, this script
writes `demo-out/<name>.jpg` (original | JPEG at the same bytes | wildlink, at the transmit
size) and prints a table: bytes, compression ratio (24-bit raw / bytes), airtime at SF7 and
SF9, animal-box PSNR for JPEG and wildlink.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camtrap"
TRAP_ID = 1


def free_udp_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def write_configs(run: Path, samples: Path, bundle: Path, budget: int, loss: float,
                  speedup: float, sf: int, size: int) -> tuple[Path, Path]:
    """trap.toml and base.toml for two processes on loopback, plus their shared key file."""
    from device.link.auth import write_keys

    run.mkdir(parents=True, exist_ok=True)
    keys = run / "keys.toml"
    write_keys(keys, {TRAP_ID: os.urandom(16)})
    trap_port, base_port = free_udp_ports(2)
    radio = (f'region = "eu868"\nfrequency_mhz = 869.525\nsf = {sf}\nbw_khz = 125\n'
             f'type = "sim"\n')
    boxes = samples / "megadetector.json"
    trap = run / "trap.toml"
    trap.write_text(
        f"[trap]\nid = {TRAP_ID}\n\n[radio]\n{radio}\n[radio.sim]\nlisten_port = {trap_port}\n"
        f"peer_port = {base_port}\nloss = {loss}\nspeedup = {speedup}\nseed = 1\n\n"
        f'[codec]\nbundle = "{bundle}"\nsize = {size}\nbudget = {budget}\nsaliency = "auto"\n'
        + (f'boxes = "{boxes}"\n' if boxes.is_file() else "")
        + f'\n[triggers]\nwatch_dir = "{samples}"\nwatch_poll_s = 0.2\n\n'
        f'[camera]\nbackend = "file"\nfiles = "{samples}"\n\n'
        f'[storage]\ndata_dir = "{run / "trap"}"\nmin_free_mb = 0\n\n[keys]\nfile = "{keys}"\n'
    )
    base = run / "base.toml"
    base.write_text(
        f'[base]\ndata_dir = "{run / "base"}"\nout_dir = "{run / "base" / "images"}"\n'
        f'bundle = "{bundle}"\ntraps = [{TRAP_ID}]\nimage_format = "png"\n\n'
        f"[radio]\n{radio}\n[radio.sim]\nlisten_port = {base_port}\npeer_port = {trap_port}\n"
        f'loss = {loss}\nspeedup = {speedup}\nseed = 2\n\n[keys]\nfile = "{keys}"\n'
    )
    return trap, base


def start(role: str, config: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", role, "--config", str(config), "--log-json"],
        stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def stored_rows(index: Path) -> list[dict]:
    if not index.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM images ORDER BY row")]
    except sqlite3.OperationalError:
        return []


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def queued_names(trap_log: Path) -> dict[int, str]:
    """image id -> sample file name, from the trap's JSON log."""
    names = {}
    for line in trap_log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "queued":
            names[int(record["image"])] = record["name"]
    return names


def airtime(size: int, sf: int, signed: bool = True) -> tuple[int, float]:
    """(frames, seconds on air) for `size` bytes as the link fragments them, no loss."""
    from device.link import frames
    from device.radio.airtime import MAX_PAYLOAD, Modulation

    payload = MAX_PAYLOAD - frames.data_overhead(signed)
    count = math.ceil(size / payload)
    modulation = Modulation(sf=sf)
    full, last = divmod(size, payload)
    seconds = full * modulation.time_on_air(MAX_PAYLOAD)
    if last:
        seconds += modulation.time_on_air(last + frames.data_overhead(signed))
    return count, seconds


def jpeg_at(image, budget: int):
    """JPEG within `budget` bytes: the best quality that fits, downscaling when even q=1 does
    not (what a user of a plain JPEG camera would have to do). Returns (decoded, bytes, note)."""
    from device.imageio import resize
    from tools.baselines import CODECS, fit_budget

    codec = CODECS["jpeg"]
    height, width = image.shape[:2]
    for scale in (1, 2, 3, 4, 6, 8, 12, 16):
        small = image if scale == 1 else resize(image, max(8, height // scale),
                                                 max(8, width // scale))
        fit = fit_budget(codec, small, budget)
        if fit is not None:
            decoded = codec.decode(fit.data)
            if scale > 1:
                decoded = resize(decoded, height, width)
            note = f"q{int(fit.setting)}" + (f", 1/{scale} size" if scale > 1 else "")
            return decoded, len(fit.data), note
    return None, 0, "does not fit"


def side_by_side(path: Path, panels: list, labels: list[str]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    height, width = panels[0].shape[:2]
    gap = 8
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, height + 28),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=18)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = i * (width + gap)
        if panel is not None:
            canvas.paste(Image.fromarray(panel), (x, 28))
        draw.text((x + 4, 4), label, fill=(0, 0, 0), font=font)
    canvas.save(path, "JPEG", quality=88)


def report(run: Path, out: Path, samples: Path, bundle: Path, size: int = 1024) -> list[dict]:
    """Per stored picture: the base's composed picture (context and regions, at the capture
    size) and JPEG at the same bytes, both measured at the transmit size (long side `size`)."""
    from device.codec.decoder import Decoder
    from device.imageio import load_image, resize, transmit_shape
    from device.saliency import boxes_for, load_megadetector
    from tools.metrics import region_metrics

    names = queued_names(run / "trap.log")
    decoder = Decoder(bundle)
    detections = load_megadetector(samples / "megadetector.json")
    rows = []
    for row in stored_rows(run / "base" / "index.sqlite"):
        name = names.get(row["image_id"], f"image{row['image_id']}")
        data = Path(row["container"]).read_bytes()
        capture = load_image(samples / name)
        height, width = transmit_shape(*capture.shape[:2], size)
        original = resize(capture, height, width)
        decoded = resize(decoder.decode(data).image, height, width)
        boxes = [(b.x, b.y, b.w, b.h) for b in boxes_for(detections, name)]
        jpeg, jpeg_bytes, note = jpeg_at(original, len(data))
        ours = region_metrics(original, decoded, boxes, with_ms_ssim=False)
        theirs = (region_metrics(original, jpeg, boxes, with_ms_ssim=False)
                  if jpeg is not None else {"box_psnr": float("nan"), "psnr": float("nan")})
        _, sf7 = airtime(len(data), 7)
        frames, sf9 = airtime(len(data), 9)
        side_by_side(out / f"{Path(name).stem}.jpg", [original, jpeg, decoded],
                     [f"original ({width}x{height})",
                      f"JPEG {jpeg_bytes} B ({note}) {_box_label(theirs['box_psnr'])}",
                      f"wildlink {len(data)} B {_box_label(ours['box_psnr'])}"])
        rows.append(dict(name=name, bytes=len(data), ratio=height * width * 3 / len(data),
                         frames=frames, sf7=sf7, sf9=sf9, jpeg_box=theirs["box_psnr"],
                         ours_box=ours["box_psnr"], jpeg_psnr=theirs["psnr"], ours_psnr=ours["psnr"],
                         jpeg_note=note, status=row["status"], rssi=row["rssi"]))
    return rows


def _box_label(value: float) -> str:
    return "no animal box" if value != value else f"box PSNR {value:.1f} dB"


def _db(value: float) -> str:
    """A PSNR cell: "-" where there is nothing to measure (no animal box, no JPEG)."""
    return "-" if value != value else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    """The demo's results as a Markdown table."""
    lines = ["| image | bytes | ratio | frames | airtime SF7 | airtime SF9 | box PSNR JPEG | "
             "box PSNR wildlink | PSNR JPEG | PSNR wildlink |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['bytes']} | {r['ratio']:.0f}:1 | {r['frames']} | "
                     f"{r['sf7']:.2f} s | {r['sf9']:.2f} s | {_db(r['jpeg_box'])} "
                     f"({r['jpeg_note']}) | {_db(r['ours_box'])} | {_db(r['jpeg_psnr'])} | "
                     f"{_db(r['ours_psnr'])} |")
    lines.append("\nratio = 24-bit raw at the transmit size / bytes sent; airtime = all fragments "
                 "once, no loss, BW 125 kHz, CR 4/5; PSNR in dB at the transmit size; - = no "
                 "animal box.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--bundle", type=Path, default=ROOT / "device" / "models" / "default")
    parser.add_argument("--budget", type=int, default=8000, help="bytes per picture")
    parser.add_argument("--size", type=int, default=1024, help="transmit long side")
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--speedup", type=float, default=20.0, help="simulated clock speed")
    parser.add_argument("--sf", type=int, default=7, help="spreading factor of the sim link")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(f"make demo: error: no model bundle at {args.bundle}", file=sys.stderr)
        return 2
    samples = sorted(p for p in args.samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    shutil.rmtree(args.out, ignore_errors=True)
    run = args.out / "run"
    trap_cfg, base_cfg = write_configs(run, args.samples.resolve(), args.bundle.resolve(),
                                       args.budget, args.loss, args.speedup, args.sf, args.size)
    print(f"demo: {len(samples)} pictures, {args.loss:.0%} loss each way, SF{args.sf}, "
          f"clock x{args.speedup:g}; logs in {run}")
    base = start("base", base_cfg, run / "base.log")
    trap = start("trap", trap_cfg, run / "trap.log")
    started = time.monotonic()
    seen = 0
    try:
        while True:
            rows = stored_rows(run / "base" / "index.sqlite")
            if len(rows) > seen:
                seen = len(rows)
                print(f"demo: {seen}/{len(samples)} pictures at the base after "
                      f"{time.monotonic() - started:.0f} s")
            if seen >= len(samples):
                break
            for name, process in (("trap", trap), ("base", base)):
                if process.poll() is not None:
                    print(f"demo: the {name} stopped (exit {process.returncode}); see "
                          f"{run / (name + '.log')}", file=sys.stderr)
                    return 1
            if time.monotonic() - started > args.timeout:
                print(f"demo: timed out with {seen}/{len(samples)} pictures", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        codes = stop(trap), stop(base)
    print(f"demo: trap and base stopped cleanly (exit codes {codes[0]}, {codes[1]})")
    rows = report(run, args.out, args.samples, args.bundle, args.size)
    text = table(rows)
    (args.out / "results.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\nside-by-side pictures: {args.out}/*.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
