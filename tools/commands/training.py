"""`wildlink train`, `export` and `recover` (TensorFlow is imported only when they run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from device.codec.bundle import MANIFEST
from tools.commands._args import check_data, check_file, check_source
from tools.commands._args import fraction as _fraction
from tools.commands._args import positive_float as _positive_float
from tools.commands._args import positive_int as _positive_int
from tools.errors import UserError


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", nargs="+", metavar="DIR",
        help="image folders, searched recursively (default: $WILDLINK_DATA/train; "
        "docs/training.md says where the data comes from)",
    )
    data.add_argument("--patch", type=_positive_int, default=128, help="crop size (multiple of 64)")
    data.add_argument("--batch", type=_positive_int, default=8, help="patches per step")
    data.add_argument(
        "--small", choices=("pad", "skip"), default="pad",
        help="images smaller than the patch: reflect-pad (if >= half the patch) or skip",
    )
    data.add_argument(
        "--masks", choices=("none", "megadetector", "coco", "background"), default="none",
        help="where animal boxes come from (none: every pixel weighs 1)",
    )
    data.add_argument("--masks-json", metavar="FILE", help="MegaDetector or COCO CT JSON")
    data.add_argument(
        "--md-threshold", type=_fraction, default=0.2, help="MegaDetector confidence threshold"
    )
    data.add_argument(
        "--no-prefilter", action="store_true",
        help="do not blur the background of masked images (seed 001 pre-filter)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--analysis", type=_positive_int, default=96, help="g_a width")
    model.add_argument("--synthesis", type=_positive_int, default=96, help="g_s width")
    model.add_argument("--latent", type=_positive_int, default=128, help="M, channels of y")
    model.add_argument("--hyper", type=_positive_int, default=64, help="Cz, channels of z")
    model.add_argument(
        "--lambda", dest="lmbda", type=_positive_float, default=0.0015,
        help="rate-distortion trade-off in R + lambda*255^2*D (lower = fewer bits)",
    )
    model.add_argument(
        "--lambdas", type=_positive_float, nargs="+", metavar="L", default=(),
        help="variable rate: the lambda of each rate level, increasing (replaces --lambda)",
    )
    model.add_argument(
        "--mean", action="store_true",
        help="mean-scale hyperprior (h_s predicts the mean of y too; Minnen et al. 2018)",
    )
    model.add_argument(
        "--mixed", action="store_true",
        help="train g_s on rounded latents (straight-through), the rate on noise",
    )
    model.add_argument(
        "--w-bg", type=_fraction, default=1.0,
        help="distortion weight of background pixels (animals weigh 1; poster best 0.001)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--run", required=True, metavar="DIR", help="run folder (resumes if present)")
    run.add_argument("--steps", type=_positive_int, default=20000, help="total optimizer steps")
    run.add_argument("--lr", type=_positive_float, default=1e-4, help="Adam learning rate")
    run.add_argument(
        "--clip-norm", type=float, default=2.0,
        help="cap on the global gradient norm, against divergence (0: off; default %(default)s)",
    )
    run.add_argument(
        "--steps-per-epoch", type=_positive_int, default=100,
        help="steps between TensorBoard points and --quiet progress lines",
    )
    run.add_argument(
        "--checkpoint-minutes", type=_positive_float, default=5.0, help="checkpoint interval"
    )
    run.add_argument(
        "--strategy", choices=("default", "mirrored", "multiworker"), default="default",
        help="tf.distribute strategy (multiworker reads TF_CONFIG)",
    )
    run.add_argument("--seed", type=int, default=0, help="patch sampling seed")
    run.add_argument(
        "--init", metavar="SOURCE",
        help="start a new run from these weights (a run, checkpoint or bundle with weights; "
        "layers of the same name and shape are copied, a resumed run ignores it)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar (one line per epoch)")


def run_train(args: argparse.Namespace) -> int:
    from training.data import default_data_root

    data = args.data or [str(default_data_root() / "train")]
    if args.masks != "none" and args.masks != "background" and not args.masks_json:
        raise UserError(f"--masks {args.masks} needs --masks-json FILE")
    check_data(data, "--data" if args.data else "$WILDLINK_DATA/train")
    check_file(args.masks_json, "--masks-json")
    if args.init:
        check_source(args.init, "--init")
    from training.model import ModelConfig  # TensorFlow from here on
    from training.train import TrainConfig, train

    try:
        model_cfg = ModelConfig(
            analysis=args.analysis, synthesis=args.synthesis, latent=args.latent,
            hyper=args.hyper, lmbda=args.lmbda, w_bg=args.w_bg, lambdas=tuple(args.lambdas),
            mean=args.mean, mixed=args.mixed,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    cfg = TrainConfig(
        run=args.run, data=tuple(data), steps=args.steps, batch=args.batch, patch=args.patch,
        lr=args.lr, clip_norm=args.clip_norm, steps_per_epoch=args.steps_per_epoch,
        checkpoint_minutes=args.checkpoint_minutes, strategy=args.strategy, masks=args.masks,
        masks_json=args.masks_json, md_threshold=args.md_threshold,
        prefilter=not args.no_prefilter, small=args.small, seed=args.seed, init=args.init,
    )
    try:
        summary = train(model_cfg, cfg, verbose=2 if args.quiet else 1)
    except KeyboardInterrupt:
        # The checkpoint is on disk. tf.data's generator threads can keep a stopped interpreter
        # from exiting (seen after SIGTERM: 70 % CPU for minutes), so leave at once.
        import os

        print(f"wildlink: interrupted; checkpoint in {Path(args.run) / 'checkpoints'}",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    m = summary.get("metrics", {})
    if m:
        print(
            f"done: step {summary['steps']}, {summary['steps_per_second']:.2f} steps/s, "
            f"bpp {m.get('bpp', float('nan')):.3f}, PSNR {m.get('psnr', float('nan')):.2f} dB "
            f"(weighted, training patches); checkpoints in {Path(args.run) / 'checkpoints'}"
        )
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="training run folder, checkpoint prefix "
                        "(run/checkpoints/ckpt-N) or a bundle exported with --weights")
    parser.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write")
    parser.add_argument(
        "--data", nargs="+", metavar="DIR",
        help="images for int8 calibration (default: the run's training data)",
    )
    parser.add_argument(
        "--calibration", type=_positive_int, default=48, help="calibration images (int8)"
    )
    parser.add_argument(
        "--calibration-size", type=_positive_int, default=256, help="calibration crop size"
    )
    parser.add_argument(
        "--eval", nargs="*", metavar="IMAGE", default=None,
        help="images to measure the int8 vs float hyper-synthesis rate cost on",
    )
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty folder")
    parser.add_argument("--weights", action="store_true",
                        help="also write the float weights into OUT/checkpoint, so finetune, "
                        "prune and export take the bundle itself")


def run_export(args: argparse.Namespace) -> int:
    check_source(args.source)
    if args.data:
        check_data(args.data, "--data")
    from training.export import export_bundle  # TensorFlow from here on

    report = export_bundle(
        args.source, args.out, data=args.data, calibration=args.calibration,
        calibration_size=args.calibration_size, eval_images=args.eval, force=args.force,
        weights=args.weights,
    )
    print(f"bundle {args.out}: model id {report['model_id']}, {report['bytes']} bytes")
    if report.get("weights_bytes"):
        print(f"float weights in {args.out}/checkpoint: {report['weights_bytes']} bytes")
    if report.get("float_ops"):
        print(f"ops left float in analysis.tflite: {', '.join(report['float_ops'])}")
    _print_cost(report.get("int8_rate_cost"))
    return 0


def _print_cost(cost: dict | None) -> None:
    """The per-level table of `training.measure.measure`."""
    if cost:
        print(f"the trap's int8 pipeline against the float model, {cost['images']} images:")
        for row in cost["levels"]:
            print(f"  level {row['level']}: {row['bpp_int8']:.4f} vs {row['bpp_float']:.4f} bpp "
                  f"({row['percent']:+.2f} %), {row['psnr_int8']:.2f} vs "
                  f"{row['psnr_float']:.2f} dB")


def add_recover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a model bundle exported without --weights")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write the weights (default: BUNDLE/checkpoint, where "
                        "finetune, prune and export look)")
    parser.add_argument("--eval", nargs="+", metavar="IMAGE", default=(),
                        help="images to compare the recovered float model with the bundle on")
    parser.add_argument("--force", action="store_true", help="replace weights already there")


def run_recover(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle)
    if not (bundle / MANIFEST).is_file():
        raise UserError(f"{bundle} is not a model bundle (it has no {MANIFEST})")
    for image in args.eval:
        check_file(image, "--eval")
    from training.recover import write  # TensorFlow from here on

    report = write(bundle, args.out, force=args.force, eval_images=tuple(map(Path, args.eval)))
    print(f"float weights of bundle {report['model_id']} in {report['out']}: {report['bytes']} "
          f"bytes (z prior refit to the tables within {report['z_prior_kl_bits']:.4f} bits)")
    _print_cost(report.get("int8_rate_cost"))
    return 0
