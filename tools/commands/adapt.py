"""`wildlink finetune` and `wildlink prune` (TensorFlow is imported only when they run)."""

from __future__ import annotations

import argparse

from tools.commands._args import check_data, check_file, check_source
from tools.commands._args import number as _number
from tools.errors import UserError


def _common(parser: argparse.ArgumentParser, steps: int, data_help: str) -> None:
    parser.add_argument(
        "source", help="training run folder, checkpoint prefix (run/checkpoints/ckpt-N) or bundle"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", metavar="DIR", help=data_help)
    data.add_argument(
        "--holdout", type=_number(float, 0, 1, high_open=True), default=0.0, metavar="FRACTION",
        help="keep the last FRACTION of the sorted images for evaluation (e.g. 0.5: "
        "train on the first half, report the gain on the second)",
    )
    data.add_argument(
        "--eval-data", nargs="+", metavar="DIR", default=[],
        help="more folders to evaluate before and after (e.g. another site)",
    )
    data.add_argument(
        "--eval-limit", type=_number(int, 0), default=0, metavar="N",
        help="evaluate at most N images per set, evenly spaced (0: all)",
    )
    data.add_argument(
        "--patch", type=_number(int, 64), default=128, help="crop size (multiple of 64)"
    )
    data.add_argument("--batch", type=_number(int, 1), default=8, help="patches per step")
    data.add_argument(
        "--masks", choices=("none", "megadetector", "coco", "background"), default="none",
        help="where animal boxes come from (as in `wildlink train`)",
    )
    data.add_argument("--masks-json", metavar="FILE", help="MegaDetector or COCO CT JSON")
    data.add_argument(
        "--md-threshold", type=_number(float, 0, 1), default=0.2,
        help="MegaDetector confidence threshold",
    )
    data.add_argument(
        "--no-prefilter", action="store_true", help="do not blur the background of masked images"
    )
    bundle = parser.add_argument_group("bundle")
    bundle.add_argument(
        "--export", metavar="DIR", help="also export the result as a bundle (wildlink export)"
    )
    bundle.add_argument(
        "--decoder-from", metavar="BUNDLE",
        help="with --export: copy the base bundle's hyper_synthesis, synthesis and entropy "
        "files, so the base station's decoder side stays byte-identical",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--steps", type=_number(int, 0), default=steps, help="optimizer steps")
    run.add_argument("--seed", type=int, default=0, help="patch sampling and adapter seed")
    run.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_masks(args: argparse.Namespace) -> None:
    if args.masks in ("megadetector", "coco") and not args.masks_json:
        raise UserError(f"--masks {args.masks} needs --masks-json FILE")
    if args.decoder_from and not args.export:
        raise UserError("--decoder-from needs --export DIR")


def _export(args: argparse.Namespace) -> None:
    """`--export` (and `--decoder-from`): the run folder just written, as a bundle."""
    if not args.export:
        print(f"export it with: wildlink export {args.out} --out BUNDLE_DIR")
        return
    from training.export import export_bundle

    report = export_bundle(args.out, args.export, force=args.force)
    model_id = report["model_id"]
    if args.decoder_from:
        from training.sitebundle import reuse_decoder

        model_id = reuse_decoder(args.export, args.decoder_from)["model_id"]
        print(f"decoder files copied from {args.decoder_from}")
    print(f"bundle {args.export}: model id {model_id}")


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fine-tune the trap's encoder (g_a, h_a) on a site's images; the decoder (h_s, g_s, "
        "entropy models) stays frozen, so the base station's decoder weights do not change. "
        "Writes a run folder for `wildlink export`."
    )
    _common(parser, 300, "the site's image folders (required)")
    mode = parser.add_argument_group("adaptation")
    mode.add_argument(
        "--mode", choices=("full", "lora"), default="lora",
        help="full: train every encoder weight; lora: rank-r adapters, merged at the end",
    )
    mode.add_argument("--rank", type=_number(int, 1), default=4, help="LoRA rank r")
    mode.add_argument(
        "--lr", type=_number(float, 0, low_open=True), default=None,
        help="Adam learning rate (default 1e-4 full, 1e-3 lora)",
    )
    mode.add_argument(
        "--lambda", dest="lmbda", type=_number(float, 0, low_open=True), default=None,
        help="rate-distortion lambda (default: the base model's)",
    )
    mode.add_argument(
        "--w-bg", type=_number(float, 0, 1), default=None,
        help="background distortion weight (default: the base model's)",
    )


def _check_inputs(args: argparse.Namespace, data) -> None:
    """Paths first, in a second: TensorFlow takes 10-20 s to load."""
    check_source(args.source)
    check_data(data, "--data" if args.data else "$WILDLINK_DATA/train")
    for folder in args.eval_data:
        check_data([folder], "--eval-data")
    check_file(args.masks_json, "--masks-json")


def run_finetune(args: argparse.Namespace) -> int:
    if not args.data:
        raise UserError("--data DIR is required: the site's images to adapt to")
    _check_inputs(args, args.data)
    _check_masks(args)
    from training.finetune import FinetuneConfig, describe, finetune

    cfg = FinetuneConfig(
        source=args.source, out=args.out, data=tuple(args.data), mode=args.mode, rank=args.rank,
        steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr, holdout=args.holdout,
        eval_data=tuple(args.eval_data), eval_limit=args.eval_limit, masks=args.masks,
        masks_json=args.masks_json, md_threshold=args.md_threshold,
        prefilter=not args.no_prefilter, lmbda=args.lmbda, w_bg=args.w_bg, seed=args.seed,
        force=args.force,
    )
    summary = finetune(cfg, verbose=0 if args.quiet else 1)
    print(describe(summary))
    _export(args)
    return 0


def add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Structured channel pruning of the encoder's internal channels (ranked by weight norm), "
        "then a short fine-tune of the encoder with the decoder frozen. Prints MACs per "
        "1024x768 image before and after. Writes a run folder for `wildlink export`."
    )
    _common(
        parser, 300,
        "images for the fine-tune after pruning (default: $WILDLINK_DATA/train)",
    )
    how = parser.add_argument_group("pruning")
    size = how.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--width", type=_number(int, 1), help="channels to keep in each internal g_a layer"
    )
    size.add_argument(
        "--keep", type=_number(float, 0, 1, low_open=True), metavar="FRACTION",
        help="fraction of the internal g_a channels to keep (rounded)",
    )
    how.add_argument(
        "--lr", type=_number(float, 0, low_open=True), default=5e-5, help="Adam learning rate"
    )


def run_prune(args: argparse.Namespace) -> int:
    _check_masks(args)
    from training.data import default_data_root

    data = args.data or [str(default_data_root() / "train")]
    _check_inputs(args, data)
    from training.model import load_checkpoint  # TensorFlow from here on
    from training.prune import PruneConfig, describe, prune

    width = args.width
    if width is None:
        model = load_checkpoint(args.source)
        width = max(1, round(args.keep * model.config.analysis))
        del model
    cfg = PruneConfig(
        source=args.source, out=args.out, data=tuple(data), width=width, steps=args.steps,
        batch=args.batch, patch=args.patch, lr=args.lr, holdout=args.holdout,
        eval_data=tuple(args.eval_data), eval_limit=args.eval_limit, masks=args.masks,
        masks_json=args.masks_json, md_threshold=args.md_threshold,
        prefilter=not args.no_prefilter, seed=args.seed, force=args.force,
    )
    summary = prune(cfg, verbose=0 if args.quiet else 1)
    print(describe(summary))
    _export(args)
    return 0
