"""`wildlink bench`: regenerate BENCHMARKS.md from every section in tools/benchmarks/."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smoke test on the shipped samples (minutes, not results)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default: $WILDLINK_DATA, else ../shared/data; "
                        "docs/evaluation.md)")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"),
                        help="Markdown file to write (default: BENCHMARKS.md)")
    parser.add_argument("--sections", default="",
                        help="comma-separated section names to run (default: all), e.g. evaluation")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a section is stopped and reported as failed")


def run(args: argparse.Namespace) -> int:
    import os

    from tools.bench import discover_sections, run_bench
    from tools.errors import UserError

    if args.data is not None:
        if not args.data.is_dir():
            raise UserError(f"data folder not found: {args.data}")
        os.environ["WILDLINK_DATA"] = str(args.data.resolve())
    available = discover_sections()
    sections = None
    if args.sections:
        wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
        by_name = {m.rsplit(".", 1)[-1]: m for m in available}
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise UserError(f"unknown section {', '.join(unknown)}; have: {', '.join(by_name)}")
        sections = [by_name[w] for w in wanted]
    results = run_bench(args.out, quick=args.quick, sections=sections, timeout=args.timeout)
    failed = [r.module for r in results if not r.ok]
    print(f"wrote {args.out}: {len(results) - len(failed)} sections ok"
          + (f", failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
