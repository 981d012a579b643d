"""`wildlink eval`: rate-distortion of wildlink against JPEG, WebP, AVIF and JPEG 2000."""

from __future__ import annotations

import argparse
from pathlib import Path


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("budgets must be positive byte counts")
    return values


def _steps(text: str) -> tuple[float, ...]:
    from tools.errors import UserError

    try:
        return tuple(float(int(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--wildlink-steps: expected integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, required=True, help="folder of test images")
    parser.add_argument("--boxes", type=Path, default=None,
                        help="MegaDetector results JSON (animal boxes for box metrics and the "
                             "saliency pre-filter)")
    parser.add_argument("--min-conf", type=float, default=0.2,
                        help="keep MegaDetector boxes with at least this confidence (0.2)")
    parser.add_argument("--codecs", default="wildlink,jpeg,webp,avif,jp2",
                        help="comma-separated: wildlink,jpeg,webp,avif,jp2; budget-only: "
                             "<codec>-best (best resolution within the budget), avif-twopart "
                             "(AVIF crop + context), wildlink-onepart, wildlink-twopart (the "
                             "trap's own encoder and pre-filter)")
    parser.add_argument("--prefilter", choices=("none", "saliency", "both"), default="none",
                        help="seed-001 saliency blur before the classical codecs ('both' runs "
                             "each codec with and without it)")
    parser.add_argument("--size", type=int, default=1024,
                        help="resize so the long side is this many pixels (0: keep)")
    parser.add_argument("--budgets", type=_int_list, default=[],
                        help="byte budgets, e.g. 1000,2000,4000,8000: each codec's best setting "
                             "that fits")
    parser.add_argument("--no-sweep", action="store_true",
                        help="skip the quality sweep (budgets only)")
    parser.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="wildlink model bundle (default: the shipped default model)")
    parser.add_argument("--wildlink-steps", default="0,4,8,12,16",
                        help="wildlink's global steps j_g for the RD sweep (default 0,4,8,12,16)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (with --boxed-only: the first N with boxes)")
    parser.add_argument("--boxed-only", action="store_true",
                        help="only the images that have animal boxes (needs --boxes)")
    parser.add_argument("--out", type=Path, default=Path("out/eval"),
                        help="output folder: rows.csv, curves.csv, report.md, plots")
    parser.add_argument("--cache", type=Path, default=None,
                        help="JSON-lines file of rows to reuse and extend (resumable runs; use "
                             "a fresh file whenever codecs, images or size change)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tools.baselines import CODECS
    from tools.errors import UserError
    from tools.evaluate import (
        ClassicalCoder,
        load_images,
        run_evaluation,
        saliency_prefilter,
    )
    from tools.report import write_outputs

    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    known = _budget_coders(args.bundle)
    unknown = [n for n in names if n != "wildlink" and n not in CODECS and n not in known]
    if unknown or not names:
        raise UserError(f"unknown codec {', '.join(unknown) or '(none)'}; known: wildlink, "
                        + ", ".join([*CODECS, *known]))
    if args.no_sweep and not args.budgets:
        raise UserError("--no-sweep needs --budgets")
    if any(n in known for n in names) and not args.budgets:
        raise UserError(f"{', '.join(n for n in names if n in known)} need --budgets")
    if args.boxes is not None and not args.boxes.is_file():
        raise UserError(f"boxes file not found: {args.boxes}")
    if args.boxed_only and args.boxes is None:
        raise UserError("--boxed-only needs --boxes")
    images = load_images(args.images, args.boxes, args.size, min_conf=args.min_conf,
                         limit=None if args.boxed_only else args.limit or None)
    if args.boxed_only:
        images = [im for im in images if im.boxes][: args.limit or None]
        if not images:
            raise UserError(f"no image in {args.images} has an animal box")
    coders = []
    for name in names:
        if name == "wildlink":
            from tools.wildlink_coder import WildlinkCoder

            coder = WildlinkCoder.from_bundle(args.bundle)
            coder.sweep = _steps(args.wildlink_steps)
            coders.append(coder)
        elif name in known:
            coders.append(known[name]())
        else:
            coders.append(ClassicalCoder(CODECS[name]))
    prefilters = {
        "none": {"none": None},
        "saliency": {"saliency": saliency_prefilter},
        "both": {"none": None, "saliency": saliency_prefilter},
    }[args.prefilter]
    result = run_evaluation(
        images, coders, prefilters=prefilters, budgets=args.budgets, sweep=not args.no_sweep,
        with_ms_ssim=not args.no_ms_ssim, progress=not args.quiet, size=args.size,
        cache=args.cache,
    )
    written = write_outputs(result, args.out, title=args.images.name or "images")
    print(written["report"].read_text())
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0


def _budget_coders(bundle: Path | None) -> dict:
    """Budget-only coders by name, each a factory (built only when asked for)."""
    from tools.baselines import CODECS
    from tools.bestres import BestResolutionCoder
    from tools.twopart import TwoPartCoder
    from tools.wildlink_coder import SCHEMES, scheme_coder

    out = {f"{n}-best": (lambda c=c: BestResolutionCoder(c)) for n, c in CODECS.items()}
    out["avif-twopart"] = TwoPartCoder
    for name in SCHEMES:
        out[name] = lambda name=name: scheme_coder(name, bundle)
    return out
