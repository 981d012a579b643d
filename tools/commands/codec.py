"""`wildlink encode`, `wildlink decode` and `wildlink inspect` (device only, no TensorFlow).

wildlink encode IMAGE -o FILE [--boxes MD.json] [--saliency auto|boxes|background|spectral|none]
                              [--budget BYTES] [--size PIXELS] [--bundle DIR]
wildlink decode FILE -o IMAGE [--bundle DIR ...] [--coded-size]
wildlink inspect FILE [--bundle DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.commands._args import positive_int as _positive_int

SALIENCY_MODES = ("auto", "boxes", "background", "spectral", "none")


def _add_bundle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None,
                        help="model bundle folder (default: device/models/default)")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="input image (JPEG, PNG, ...)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="container file to write")
    parser.add_argument(
        "--boxes",
        type=Path,
        default=None,
        help="MegaDetector results JSON; the entry for IMAGE gives the boxes",
    )
    parser.add_argument(
        "--min-conf",
        type=float,
        default=0.2,
        help="keep MegaDetector animal boxes with at least this confidence (0.2)",
    )
    parser.add_argument(
        "--saliency",
        choices=SALIENCY_MODES,
        default="auto",
        help="where the regions of interest come from (default: auto = boxes if "
        "given, else the background model, else spectral residual)",
    )
    parser.add_argument(
        "--background-model",
        type=Path,
        default=None,
        help="per-site background model file (.npz); created or updated",
    )
    parser.add_argument(
        "--budget",
        type=_positive_int,
        default=None,
        help="largest file size in bytes: the best quality that fits",
    )
    parser.add_argument(
        "--step",
        type=int,
        default=0,
        help="global quantisation step j_g without --budget (0 = finest)",
    )
    parser.add_argument(
        "--background-step", type=int, default=None, help="extra step outside the boxes (default 6)"
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=1024,
        help="long side of the coded image in pixels (1024)",
    )
    parser.add_argument(
        "--no-prefilter", action="store_true", help="skip the saliency pre-filter (seed 001 blur)"
    )
    parser.add_argument("--trap-id", type=int, default=0, help="this trap's number (0..255)")
    parser.add_argument(
        "--two-part", choices=("auto", "on", "off"), default="auto",
        help="code the animals as regions beside a low-resolution context (auto: when there "
        "are animal boxes and a --budget)",
    )
    _add_bundle(parser)


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", type=Path, help="wildlink container file")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="image to write (.png, .jpg or .webp)"
    )
    parser.add_argument(
        "--coded-size",
        action="store_true",
        help="keep the coded size instead of resizing to the original size",
    )
    parser.add_argument("--bundle", type=Path, action="append", default=[],
                        help="a bundle folder, or a folder of bundles, beside the shipped ones "
                        "(device/models); may be given several times: the file's model id "
                        "picks the bundle")


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", type=Path, help="wildlink container file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_bundle(parser)


add_arguments = add_encode_arguments


def run_encode(args: argparse.Namespace) -> int:
    from device.codec.encoder import DEFAULT_BACKGROUND_STEP, Encoder
    from device.imageio import load_image
    from device.saliency import BackgroundModel, boxes_for, load_megadetector
    from tools.errors import UserError

    if args.saliency == "boxes" and args.boxes is None:
        raise UserError("--saliency boxes needs --boxes MD.json")
    if not args.image.is_file():
        raise FileNotFoundError(2, "No such file", str(args.image))
    image = load_image(args.image)
    boxes = None
    if args.boxes is not None:
        boxes = boxes_for(load_megadetector(args.boxes, args.min_conf), args.image)
    background = None
    if args.background_model is not None:
        path = args.background_model
        background = BackgroundModel.load(path) if path.exists() else BackgroundModel()
    step = DEFAULT_BACKGROUND_STEP if args.background_step is None else args.background_step
    if step < 0 or args.step < 0:
        raise UserError("steps must be 0 or more")
    encoder = Encoder(args.bundle, size=args.size, background_step=step, two_part=args.two_part)
    result = encoder.encode(
        image, boxes=boxes, saliency=args.saliency, budget=args.budget,
        trap_id=args.trap_id, background=background, step=args.step,
        use_prefilter=not args.no_prefilter,
    )
    _write(args.output, result.data)
    if background is not None:
        background.save(args.background_model)
    h = result.header
    parts = "; ".join(f"{p.name} {p.coded_width}x{p.coded_height} step {p.step}" for p in h.parts)
    print(
        f"{args.output}: {len(result.data)} bytes, {len(h.boxes)} boxes "
        f"({result.saliency_source}); {parts}"
    )
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from device.codec.registry import BundleRegistry
    from device.imageio import save_image

    data = _read(args.container)
    registry = BundleRegistry(args.bundle)
    result = registry.decode(data, original_size=not args.coded_size)
    save_image(args.output, result.image)
    h, w = result.image.shape[:2]
    missing = result.incomplete
    note = f", incomplete parts {missing}" if missing else ""
    model = result.header.model_id
    print(f"{args.output}: {w}x{h}, {len(result.parts)} parts, model {model} "
          f"({registry.bundle(model).path}){note}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from device.codec.inspect import describe

    info = describe(_read(args.container), args.bundle)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{key}:")
            for item in value:
                print("  " + ", ".join(f"{k} {v}" for k, v in item.items()))
        else:
            print(f"{key}: {value}")
    return 0


def _read(path: Path) -> bytes:
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    return path.read_bytes()


def _write(path: Path, data: bytes) -> None:
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(2, "No such directory", str(path.parent))
    path.write_bytes(data)


def run(args: argparse.Namespace) -> int:
    return {"encode": run_encode, "decode": run_decode, "inspect": run_inspect}[args.command](args)
