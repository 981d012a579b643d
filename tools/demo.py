"""`make demo`: a trap and a base station on one machine, then wildlink beside JPEG and AVIF.

Two processes (`wildlink trap`, `wildlink base`) talk over loopback UDP through the radio
simulator with 10% frame loss (each direction), a sped-up clock (airtime, duty cycle and ack
timeouts all run faster), signed frames (per-trap key) and the EU868 10% sub-band. The trap
watches the shipped sample folder, encodes each camera-trap picture with its MegaDetector boxes
at the trap's default budget (3000 B: the animals as regions beside a low-resolution context,
docs/codec.md) and queues it; the base reassembles, decodes (by the model id in the header)
and indexes them.

`--traps N` (`make demo TRAPS=3`) starts N trap processes instead, each with its own key and
its share of the samples, all joining one loopback radio hub (device/radio/hub.py) with the
base: they share one channel, so their frames collide and the link layer must recover.

After delivery, per picture, JPEG and AVIF get the bytes the wildlink container took, each at
its best resolution (tools/bestres.py: the long side and quality whose file fits and whose
animal box, scaled back to the capture size, scores best). The demo writes
`demo-out/<name>.jpg` (original | wildlink | JPEG | AVIF: whole frames, and below them the
animal enlarged) and `demo-out/results.md`: bytes, airtime at SF7 and SF9, pictures per hour
under the duty cycle, box and background PSNR of the three.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camtrap"
TRAP_ID = 1
#: The demo link's rules: the EU 10% sub-band h1.7 the services default to.
REGION, FREQ_MHZ = "eu868", 869.525
#: Spreading factors the table prices each picture at.
SFS = (7, 9)
#: The classical codecs beside wildlink, and their resolution search's patience (short: a
#: side search that stops after two worse sides keeps the demo within a few seconds a frame).
COMPARED = ("jpeg", "avif")
PATIENCE = 2
#: Width of one panel of the comparison pictures, and the margin around the animal zoom.
PANEL_WIDTH = 480
ZOOM_MARGIN = 0.25


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
                  speedup: float, sf: int, size: int, traps: int = 1,
                  hub_port: int | None = None) -> tuple[list[Path], Path]:
    """The traps' configs (trap.toml, or trap1.toml.. with `traps` > 1), base.toml and their
    key file. One trap talks straight to the base; several join the radio hub on `hub_port`
    (device/radio/hub.py), and trap k watches its own card folder with every `traps`-th
    sample."""
    from device.link.auth import write_keys

    if traps > 1 and hub_port is None:
        raise ValueError("several traps need a radio hub port")
    run.mkdir(parents=True, exist_ok=True)
    keys = run / "keys.toml"
    ids = list(range(TRAP_ID, TRAP_ID + traps))
    write_keys(keys, {t: os.urandom(16) for t in ids})
    *trap_ports, base_port = free_udp_ports(traps + 1)
    radio = (f'region = "{REGION}"\nfrequency_mhz = {FREQ_MHZ}\nsf = {sf}\nbw_khz = 125\n'
             f'type = "sim"\n')
    boxes = samples / "megadetector.json"
    pictures = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    configs = []
    for k, (trap_id, port) in enumerate(zip(ids, trap_ports, strict=True)):
        name = "trap" if traps == 1 else f"trap{trap_id}"
        card = samples
        if traps > 1:  # each trap its own pictures
            card = run / f"card{trap_id}"
            card.mkdir(exist_ok=True)
            for picture in pictures[k::traps]:
                shutil.copy(picture, card / picture.name)
        link = (f"peer_port = {base_port}\n" if hub_port is None else f"hub_port = {hub_port}\n")
        config = run / f"{name}.toml"
        config.write_text(
            f"[trap]\nid = {trap_id}\n\n[radio]\n{radio}\n[radio.sim]\nlisten_port = {port}\n"
            f"{link}loss = {loss}\nspeedup = {speedup}\nseed = {trap_id}\n\n"
            f'[codec]\nbundle = "{bundle}"\nsize = {size}\nbudget = {budget}\nsaliency = "auto"\n'
            + (f'boxes = "{boxes}"\n' if boxes.is_file() else "")
            + f'\n[triggers]\nwatch_dir = "{card}"\nwatch_poll_s = 0.2\n\n'
            f'[camera]\nbackend = "file"\nfiles = "{card}"\n\n'
            f'[storage]\ndata_dir = "{run / name}"\nmin_free_mb = 0\n\n[keys]\nfile = "{keys}"\n'
        )
        configs.append(config)
    link = (f"peer_port = {trap_ports[0]}\n" if hub_port is None else f"hub_port = {hub_port}\n")
    base = run / "base.toml"
    base.write_text(
        f'[base]\ndata_dir = "{run / "base"}"\nout_dir = "{run / "base" / "images"}"\n'
        f'bundle = "{bundle}"\ntraps = [{", ".join(map(str, ids))}]\nimage_format = "png"\n\n'
        f"[radio]\n{radio}\n[radio.sim]\nlisten_port = {base_port}\n{link}"
        f'loss = {loss}\nspeedup = {speedup}\nseed = 0\n\n[keys]\nfile = "{keys}"\n'
    )
    return configs, base


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


def _events(trap_log: Path, what: str) -> list[dict]:
    """The trap's JSON log records of one event."""
    if not trap_log.is_file():
        return []
    out = []
    for line in trap_log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == what:
            out.append(record)
    return out


def queued_names(trap_log: Path) -> dict[int, str]:
    """image id -> sample file name, from the trap's JSON log."""
    return {int(r["image"]): r["name"] for r in _events(trap_log, "queued")}


def failed_names(trap_log: Path, names) -> dict[str, str]:
    """sample file name -> error, for the pictures among `names` the trap could not read or
    encode (never sent); `capture_failed` names its file only in its error text."""
    failed = {r.get("name", "?"): r.get("error", "") for r in _events(trap_log, "encode_failed")}
    for record in _events(trap_log, "capture_failed"):
        error = str(record.get("error", ""))
        failed.update({name: error for name in names
                       if re.search(rf"(^|[/\s]){re.escape(name)}\b", error)})
    return failed


def link_plans(nbytes: int, region: str = REGION, freq_mhz: float = FREQ_MHZ) -> dict:
    """{SF: AirtimePlan} for one picture of `nbytes` at each of `SFS` (`wildlink airtime`)."""
    from device.radio.airtime import Modulation
    from tools.linksim import plan_airtime

    return {sf: plan_airtime(nbytes, Modulation(sf=sf), region, freq_mhz) for sf in SFS}


def classical(original, boxes, nbytes: int) -> dict:
    """{codec: Choice or None}: each of `COMPARED` at its best resolution within `nbytes`,
    decoded and scaled back to the capture size (tools/bestres.py, a short search)."""
    from tools.baselines import CODECS
    from tools.bestres import ResolutionSearch, box_score

    return {name: ResolutionSearch(CODECS[name], original, box_score(original, boxes),
                                   patience=PATIENCE).best(nbytes)
            for name in COMPARED}


def _parts(header) -> str:
    """What the container held, for a label: "2 regions + 1 bar + context 256x198" (bar:
    the camera's info bar)."""
    from collections import Counter

    counts = Counter(p.name for p in header.parts)
    words = [f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items()
             if kind != "context"]
    context = header.context
    if context is not None:
        words.append(f"context {context.coded_width}x{context.coded_height}")
    return " + ".join(words).replace("infobar", "bar")


def comparison(path: Path, original, animal, panels: list, bar=None) -> None:
    """One picture per frame: the whole frames side by side, under them the animal enlarged,
    and the camera's info bar of each at 1:1 (its date and time are data to an ecologist).

    `animal` is the normalised [x, y, w, h] box to enlarge (None: no zoom row); `panels` holds
    (label, picture at the capture size or None) for each scheme; `bar` is the info bar's
    (x0, y0, x1, y1) in capture pixels (None: no bar rows).
    """
    from PIL import Image

    from tools.strip import strip
    from tools.twopart import crop_rect

    blank = np.full_like(original, 255)
    pictures = [original] + [p if p is not None else blank for _, p in panels]
    labels = [f"original {original.shape[1]}x{original.shape[0]}"] + [t for t, _ in panels]
    rows = [strip(pictures, labels, PANEL_WIDTH)]
    if animal is not None:
        rect = crop_rect([animal], original.shape[:2], ZOOM_MARGIN)
        zoom = PANEL_WIDTH / (rect.x1 - rect.x0)
        rows.append(strip([rect.cut(p) for p in pictures],
                          [f"the most confident animal box, {zoom:.1f}x"]
                          + [t.split(":")[0] for t in labels[1:]], PANEL_WIDTH))
    if bar is not None:
        rows.append(_bars(pictures, [t.split(":")[0] for t in labels], bar, rows[0].width))
    canvas = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + 8 * (len(rows) - 1)),
                       "white")
    y = 0
    for row in rows:
        canvas.paste(row, (0, y))
        y += row.height + 8
    canvas.save(path, "JPEG", quality=90)


def _bars(pictures: list, labels: list[str], rect, width: int):
    """The info bar cut from each picture at 1:1, one under another, labelled on the left."""
    from PIL import Image, ImageDraw, ImageFont

    x0, y0, x1, y1 = rect
    left, gap = 200, 4
    strips = [Image.fromarray(np.ascontiguousarray(p[y0:y1, x0:x1])) for p in pictures]
    strips = [s if s.width <= width - left else s.crop((0, 0, width - left, s.height))
              for s in strips]
    height = max(y1 - y0, 18)
    canvas = Image.new("RGB", (width, len(strips) * (height + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    for i, (picture, label) in enumerate(zip(strips, labels, strict=True)):
        y = i * (height + gap)
        draw.text((4, y), f"info bar, 1:1: {label.split()[0]}", fill="black", font=font)
        canvas.paste(picture, (left, y))
    return canvas


def report(run: Path, out: Path, samples: Path,
           trap_logs: dict[int, Path] | None = None) -> list[dict]:
    """Per picture at the base: wildlink, JPEG and AVIF at its bytes, a comparison picture.

    `trap_logs`: {trap id: its JSON log} (default: the one trap's run/trap.log)."""
    from device.codec.container import KIND_INFOBAR, unpack
    from device.imageio import load_image
    from device.saliency import boxes_for, load_megadetector
    from tools.metrics import region_metrics

    logs = trap_logs or {TRAP_ID: run / "trap.log"}
    names = {(trap, image): name for trap, log in logs.items()
             for image, name in queued_names(log).items()}
    detections = load_megadetector(samples / "megadetector.json")
    rows = []
    for row in stored_rows(run / "base" / "index.sqlite"):
        if not row["picture"]:
            continue  # undecodable at the base (its log says why): nothing to compare
        name = names.get((row["trap_id"], row["image_id"]), f"image{row['image_id']}")
        data = Path(row["container"]).read_bytes()
        header = unpack(data)
        original = load_image(samples / name)
        ours = load_image(row["picture"])  # what the base wrote: a lossless PNG of its decode
        found = boxes_for(detections, name)
        boxes = [(b.x, b.y, b.w, b.h) for b in found]
        animal = max(found, key=lambda b: b.conf, default=None)
        scores = {"wildlink": region_metrics(original, ours, boxes, with_ms_ssim=False)}
        panels = [(f"wildlink {len(data)} B: {_parts(header)}\n"
                   f"{_quality(scores['wildlink'])}", ours)]
        notes = {}
        for codec, choice in classical(original, boxes, len(data)).items():
            label = codec.upper()
            if choice is None:
                scores[codec], notes[codec] = _NO_FIT, "does not fit"
                panels.append((f"{label}: nothing fits {len(data)} B", None))
                continue
            scores[codec] = region_metrics(original, choice.decoded, boxes, with_ms_ssim=False)
            notes[codec] = f"{choice.side} px, q{choice.setting:g}"
            panels.append((f"{label} {len(choice.data)} B: {notes[codec]}, upscaled\n"
                           f"{_quality(scores[codec])}", choice.decoded))
        bar = next((p.rect for p in header.parts if p.kind == KIND_INFOBAR), None)
        comparison(out / f"{Path(name).stem}.jpg", original,
                   None if animal is None else (animal.x, animal.y, animal.w, animal.h), panels,
                   bar)
        rows.append(dict(name=name, bytes=len(data), parts=_parts(header),
                         plans=link_plans(len(data)), scores=scores, notes=notes,
                         status=row["status"]))
    return rows


_NO_FIT = {"box_psnr": float("nan"), "bg_psnr": float("nan"), "psnr": float("nan")}


def _quality(score: dict) -> str:
    if score["box_psnr"] != score["box_psnr"]:
        return f"no animal box; PSNR {score['psnr']:.1f} dB"
    return f"box {score['box_psnr']:.1f} dB, background {score['bg_psnr']:.1f} dB"


def _db(value: float) -> str:
    """A PSNR cell: "-" where there is nothing to measure (no animal box, nothing fits)."""
    return "-" if value != value else f"{value:.1f}"


def table(rows: list[dict]) -> str:
    """The demo's results as a Markdown table (what a picture costs on air, and what it shows)."""
    from tools.commands.link import _duration, _rate

    schemes = ("wildlink", *COMPARED)
    sf_cells = " | ".join(f"airtime SF{sf}" for sf in SFS)
    rate_cells = " | ".join(f"pictures/h SF{sf}" for sf in SFS)
    box_cells = " | ".join(f"box PSNR {s if s == 'wildlink' else s.upper()}" for s in schemes)
    lines = [f"| image | bytes | {sf_cells} | {rate_cells} | {box_cells} | background PSNR "
             f"{' / '.join(s if s == 'wildlink' else s.upper() for s in schemes)} |",
             "|---|---:|" + "---:|" * (2 * len(SFS) + len(schemes) + 1)]
    for r in rows:
        plans = r["plans"]
        cells = [r["name"], str(r["bytes"])]
        cells += [_duration(plans[sf].data_airtime) for sf in SFS]
        cells += [_rate(plans[sf].per_hour) for sf in SFS]
        for s in schemes:
            note = f" ({r['notes'][s]})" if s in r["notes"] else ""
            cells.append(_db(r["scores"][s]["box_psnr"]) + note)
        cells.append(" / ".join(_db(r["scores"][s]["bg_psnr"]) for s in schemes))
        lines.append("| " + " | ".join(cells) + " |")
    boxed = [r for r in rows if r["scores"]["wildlink"]["box_psnr"] == r["scores"]["wildlink"][
        "box_psnr"]]
    if boxed:
        means = [_mean(r["scores"][s]["box_psnr"] for r in boxed) for s in schemes]
        backs = [_mean(r["scores"][s]["bg_psnr"] for r in boxed) for s in schemes]
        lines.append(f"| mean of {len(boxed)} with animals | | " + " | " * (2 * len(SFS) - 1)
                     + " | " + " | ".join(_db(m) for m in means) + " | "
                     + " / ".join(_db(b) for b in backs) + " |")
    band = rows[0]["plans"][SFS[0]] if rows else None
    where = (f"{REGION} {FREQ_MHZ:g} MHz, sub-band {band.band} ({band.duty:.0%} duty cycle)"
             if band is not None and band.duty else f"{REGION} {FREQ_MHZ:g} MHz")
    lines.append(
        f"\nairtime = every fragment once, no loss, BW 125 kHz, CR 4/5, signed frames; "
        f"pictures/h = the most a trap can send an hour in {where} when it sends nothing else "
        f"(`wildlink airtime`; in a 1% sub-band a tenth of that). PSNR in dB against the "
        f"capture, at the capture size, in the MegaDetector boxes and outside them; "
        f"JPEG and AVIF at the best long side and quality whose file fits the wildlink "
        f"container's bytes (tools/bestres.py), scaled back up; - = no animal box.")
    return "\n".join(lines)


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    from device.service.config import CodecConfig

    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--bundle", type=Path, default=ROOT / "device" / "models" / "default")
    parser.add_argument("--budget", type=int, default=CodecConfig.budget,
                        help="bytes per picture (default: the trap's, %(default)s)")
    parser.add_argument("--size", type=int, default=1024, help="transmit long side")
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--speedup", type=float, default=20.0, help="simulated clock speed")
    parser.add_argument("--sf", type=int, default=7, help="spreading factor of the sim link")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait")
    parser.add_argument("--traps", type=int, default=1,
                        help="trap processes, sharing one channel through the radio hub "
                        "when more than one (make demo TRAPS=3)")
    args = parser.parse_args(argv)
    if args.traps < 1:
        print(f"make demo: error: --traps must be at least 1, got {args.traps}", file=sys.stderr)
        return 2
    if not (args.bundle / "manifest.json").is_file():
        print(f"make demo: error: no model bundle at {args.bundle}", file=sys.stderr)
        return 2
    samples = sorted(p for p in args.samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    shutil.rmtree(args.out, ignore_errors=True)
    run = args.out / "run"
    hub = None
    if args.traps > 1:  # several processes share one simulated air
        from device.radio.hub import Hub

        hub = Hub(port=0).start()
    trap_cfgs, base_cfg = write_configs(run, args.samples.resolve(), args.bundle.resolve(),
                                        args.budget, args.loss, args.speedup, args.sf, args.size,
                                        traps=args.traps,
                                        hub_port=None if hub is None else hub.port)
    logs = {TRAP_ID + k: cfg.with_suffix(".log") for k, cfg in enumerate(trap_cfgs)}
    where = "" if hub is None else f", {args.traps} traps sharing one channel (radio hub)"
    print(f"demo: {len(samples)} pictures, {args.loss:.0%} loss each way, SF{args.sf}, "
          f"clock x{args.speedup:g}{where}; logs in {run}")
    base = start("base", base_cfg, run / "base.log")
    traps = {log.stem: start("trap", cfg, log)
             for cfg, log in zip(trap_cfgs, logs.values(), strict=True)}
    started = time.monotonic()
    seen, failed = 0, {}
    try:
        while True:
            rows = stored_rows(run / "base" / "index.sqlite")
            if len(rows) > seen:
                seen = len(rows)
                print(f"demo: {seen}/{len(samples)} pictures at the base after "
                      f"{time.monotonic() - started:.0f} s")
            for log in logs.values():
                for name, error in failed_names(log, [p.name for p in samples]).items():
                    if name not in failed:
                        failed[name] = error
                        print(f"demo: the {log.stem} could not encode {name}: {error}",
                              file=sys.stderr)
            if seen + len(failed) >= len(samples):
                break
            for name, process in (*traps.items(), ("base", base)):
                if process.poll() is not None:
                    print(f"demo: the {name} stopped (exit {process.returncode}); see "
                          f"{run / (name + '.log')}", file=sys.stderr)
                    return 1
            if time.monotonic() - started > args.timeout:
                print(f"demo: timed out with {seen}/{len(samples)} pictures", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        codes = [stop(p) for p in traps.values()] + [stop(base)]
        if hub is not None:
            hub.close()
    who = "trap" if len(traps) == 1 else f"{len(traps)} traps"
    print(f"demo: {who} and base stopped cleanly (exit codes {', '.join(map(str, codes))})")
    if hub is not None:
        air = hub.air.stats
        print(f"demo: on the shared channel {air['transmissions']} transmissions, "
              f"{air['collided']} collided, {air['half_duplex']} missed by a radio that was "
              f"sending")
    print("demo: JPEG and AVIF at the same bytes, each at its best resolution")
    rows = report(run, args.out, args.samples, logs)
    text = table(rows)
    (args.out / "results.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\ncomparison pictures (original | wildlink | JPEG | AVIF): {args.out}/*.jpg")
    if failed:
        print(f"demo: {len(failed)} of {len(samples)} pictures were not sent (encode failed: "
              f"{', '.join(sorted(failed))}); see the trap logs in {run}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
