"""The `wildlink` command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module, imported only when that subcommand runs, so
`wildlink trap` on a Pi never touches TensorFlow and `wildlink --help` stays fast. A
subcommand module provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int | None: ...

and imports anything heavy inside `run`. Errors that a user can fix are raised as
`tools.errors.UserError` (or any `WildlinkError`) and printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Order is the order `wildlink --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    # trap and base station (device only: no TensorFlow)
    "encode": ("tools.commands.codec", "compress an image into a wildlink container"),
    "decode": ("tools.commands.codec", "decode a wildlink container into an image"),
    "inspect": ("tools.commands.codec", "show a container's header, boxes and bytes per part"),
    "trap": ("tools.commands.service", "run the trap service (capture, encode, queue, send)"),
    "base": ("tools.commands.service", "run the base-station service (receive, decode, store)"),
    "radio": ("tools.commands.radio", "check a real radio: status, version, ping, RSSI/SNR"),
    "keys": ("tools.commands.keys", "make trap keys, add them to a base's key file, list them"),
    "airtime": ("tools.commands.link", "time on air and pictures per hour and day at a budget"),
    "simulate": ("tools.commands.link", "send random bytes through the simulated lossy link"),
    # workstation (TensorFlow)
    "train": ("tools.commands.training", "train a saliency-weighted hyperprior codec"),
    "finetune": ("tools.commands.adapt", "fine-tune the encoder for a site (full or LoRA)"),
    "prune": ("tools.commands.adapt", "prune the encoder's channels and fine-tune"),
    "export": ("tools.commands.training", "export an int8 TFLite model bundle"),
    "recover": ("tools.commands.training", "rebuild a bundle's float weights (to fine-tune it)"),
    # evaluation
    "eval": ("tools.commands.evaluate", "rate-distortion against JPEG, WebP, AVIF, JPEG 2000"),
    "bench": ("tools.commands.bench", "regenerate BENCHMARKS.md"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wildlink",
        description="Saliency-guided learned image compression for camera traps over LoRa.",
        epilog="Run `wildlink COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        # Placeholder parsers: the real options are added once the module is imported.
        sub.add_parser(name, help=summary, add_help=False)
    return parser


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already names one.

    argparse's ArgumentDefaultsHelpFormatter also prints "(default: None)" and
    "(default: False)", which say nothing; those are left out here.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS)
                or (isinstance(default, list | tuple) and not default)):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        if isinstance(default, list | tuple):
            return f"{text} (default: {' '.join(str(v) for v in default)})"
        return f"{text} (default: %(default)s)"


def build_parser(command: str) -> argparse.ArgumentParser:
    """Full parser for one subcommand (imports that subcommand's module only)."""
    module_name, summary = COMMANDS[command]
    module = _import_command(module_name, command)
    parser = argparse.ArgumentParser(prog=f"wildlink {command}", description=summary,
                                     formatter_class=DefaultsFormatter)
    adder = getattr(module, f"add_{command}_arguments", None) or module.add_arguments
    adder(parser)
    return parser


def _import_command(module_name: str, command: str):
    from tools.errors import UserError

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"tensorflow", "tensorflow_compression"}:
            raise UserError(
                f"`wildlink {command}` needs TensorFlow: pip install 'wildlink[train]'"
            ) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Split at the first word that names a command; everything after it belongs to it.
    split = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    head, rest = (argv, []) if split is None else (argv[:split], argv[split + 1 :])
    top_args = top.parse_args(head)
    if top_args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"wildlink {version('wildlink')}")
        except PackageNotFoundError:
            print("wildlink (not installed)")
        return 0
    if split is None:
        top.print_help()
        return 2
    command = argv[split]
    _configure_logging(top_args.verbose)
    _quiet_tensorflow(top_args.verbose)
    from tools.errors import WildlinkError, format_error

    try:
        parser = build_parser(command)
        args = parser.parse_args(rest)
        args.command = command
        module = _import_command(COMMANDS[command][0], command)
        runner = getattr(module, f"run_{command}", None) or module.run
        code = runner(args)
    except KeyboardInterrupt:
        print("wildlink: interrupted", file=sys.stderr)
        return 130
    except (WildlinkError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"wildlink {command}: error: {format_error(exc)}", file=sys.stderr)
        return 2
    return int(code or 0)


def _quiet_tensorflow(verbosity: int) -> None:
    """Hide TensorFlow's and CUDA's start-up screenful (cuDNN/cuFFT/cuBLAS factories, TensorRT,
    CPU features, "could not find cuda drivers"); `-v` or a TF_CPP_MIN_LOG_LEVEL of your own
    shows it. Real failures still arrive as Python exceptions."""
    import os

    if verbosity == 0:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _configure_logging(verbosity: int) -> None:
    import logging

    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
