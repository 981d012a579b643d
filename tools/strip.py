"""What a byte budget looks like: one frame at several budgets, side by side (docs/settings.md).

    python -m tools.strip --image tests/data/camtrap/missouri.jpg --out docs/strip.jpg

Encodes the frame with the current encoder (its MegaDetector boxes, the default bundle, the
trap's transmit size) at each budget, decodes it as the base station would, and lays the
original and the decodings out in one picture, each labelled with the bytes sent, the time on
air and the pictures per hour the duty cycle allows (`wildlink airtime`'s arithmetic). Prints
the same figures as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "camtrap" / "missouri.jpg"
BUDGETS = (1000, 2000, 3000, 8000)
PANEL_WIDTH = 480


def encode_at(image, boxes, budgets, bundle=None, size: int | None = None) -> list[tuple]:
    """(budget, container bytes, decoded picture as the base station writes it) per budget."""
    from device.codec.decoder import Decoder
    from device.codec.encoder import Encoder
    from device.codec.ratecontrol import BudgetError
    from device.service.config import CodecConfig

    encoder = Encoder(bundle, size=size or CodecConfig.size)
    decoder = Decoder(encoder.bundle)
    out = []
    for budget in budgets:
        try:
            result = encoder.encode(image, boxes=boxes, budget=budget, capture_time=0)
        except BudgetError as exc:  # what a trap sends then: its coarsest coding
            if exc.result is None:
                raise
            result = exc.result
        out.append((budget, result.data, decoder.decode(result.data).image))
    return out


def strip(panels: list, labels: list[str], width: int = PANEL_WIDTH):
    """The panels scaled to `width`, side by side under their labels (a PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    scaled = []
    for panel in panels:
        picture = Image.fromarray(panel)
        height = round(picture.height * width / picture.width)
        scaled.append(picture.resize((width, height), Image.LANCZOS))
    gap, top = 6, 46
    height = max(p.height for p in scaled)
    canvas = Image.new("RGB", (len(scaled) * (width + gap) - gap, height + top), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    for i, (picture, label) in enumerate(zip(scaled, labels, strict=True)):
        x = i * (width + gap)
        canvas.paste(picture, (x, top))
        draw.multiline_text((x + 4, 3), label, fill="black", font=font, spacing=3)
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.strip",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--image", type=Path, default=SAMPLE, help="frame to encode")
    parser.add_argument("--boxes", type=Path, help="MegaDetector JSON (default: "
                        "megadetector.json beside the image, if there is one)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), metavar="B")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the shipped one)")
    parser.add_argument("--size", type=int, help="transmit long side (default: the trap's)")
    parser.add_argument("--sf", type=int, default=9, help="spreading factor for the labels")
    parser.add_argument("--region", default="eu868")
    parser.add_argument("--freq", type=float, help="MHz (default: the region's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "strip.jpg")
    args = parser.parse_args(argv)

    from device.errors import WildlinkError
    from device.imageio import load_image, resize
    from device.radio.airtime import Modulation
    from device.saliency import boxes_for, load_megadetector
    from tools.linksim import DEFAULT_FREQ, plan_airtime

    try:
        image = load_image(args.image)
        boxes_file = args.boxes or args.image.parent / "megadetector.json"
        boxes = (boxes_for(load_megadetector(boxes_file), args.image.name)
                 if boxes_file.is_file() else None)
        coded = encode_at(image, boxes, args.budgets, args.bundle, args.size)
    except (WildlinkError, OSError) as exc:
        print(f"tools.strip: error: {exc}", file=sys.stderr)
        return 2
    freq = args.freq or DEFAULT_FREQ[args.region]
    modulation = Modulation(sf=args.sf)
    height, width = coded[0][2].shape[:2]
    panels = [resize(image, height, width)]
    labels = [f"original ({image.shape[1]}x{image.shape[0]})\nsent at {width}x{height}"]
    rows = []
    for budget, data, decoded in coded:
        plan = plan_airtime(len(data), modulation, args.region, freq)
        panels.append(decoded)
        labels.append(f"budget {budget} B: {len(data)} B sent\nSF{args.sf} {plan.data_airtime:.1f}"
                      f" s on air, {plan.per_hour:.3g}/h ({plan.band})")
        rows.append(f"| {budget} | {len(data)} | {plan.data_airtime:.1f} s | "
                    f"{plan.per_hour:.3g} | {plan.per_day:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip(panels, labels).save(args.out, "JPEG", quality=90)
    print(f"{args.out}: {args.image.name}, {width}x{height}, SF{args.sf} {args.region} "
          f"{freq:g} MHz")
    print("| budget B | sent B | airtime | pictures/h | pictures/day |")
    print("|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
