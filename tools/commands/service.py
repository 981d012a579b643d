"""`wildlink trap --config trap.toml` and `wildlink base --config base.toml`.

Both run until SIGTERM or SIGINT (systemd's stop, or Ctrl-C), then shut down cleanly: the
link thread finishes the frame on air, queues and indexes are closed, nothing is lost.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def _common(parser: argparse.ArgumentParser, role: str) -> None:
    parser.add_argument("--config", type=Path, required=True, help=f"{role}.toml (see deploy/)")
    parser.add_argument("--log-json", action="store_true",
                        help="one JSON object per log line (journald, jq)")
    what = "queued (sending stops too)" if role == "trap" else "stored"
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help=f"stop after N images {what}; for tests")
    parser.add_argument("-v", "--verbose", action="count", default=0)


def add_trap_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, "trap")


def add_base_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, "base")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_trap(args: argparse.Namespace) -> int:
    from device.service.config import load_trap_config
    from device.service.logs import setup_logging
    from device.service.trap import TrapService

    setup_logging(args.log_json, args.verbose)
    config = load_trap_config(args.config)
    stop = _stop_on_signals()
    TrapService(config).run(stop, max_images=args.max_images)
    return 0


def run_base(args: argparse.Namespace) -> int:
    from device.service.base import BaseService
    from device.service.config import load_base_config
    from device.service.logs import setup_logging

    setup_logging(args.log_json, args.verbose)
    config = load_base_config(args.config)
    stop = _stop_on_signals()
    BaseService(config).run(stop, max_images=args.max_images)
    return 0
