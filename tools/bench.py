"""`make bench`: run every section in `tools/benchmarks/` and write BENCHMARKS.md.

Why subprocesses: a section may crash its interpreter (a TFLite segfault, an out-of-memory
kill) or leave TensorFlow state behind; each section therefore runs in its own Python process,
and a failing, crashing or hanging section becomes an error paragraph in the file while the
others still run.

A section is a module `tools/benchmarks/<area>.py` with `run(quick: bool) -> str` returning
Markdown that starts with a `## ` heading and names the command behind each figure.
"""

from __future__ import annotations

import datetime as dt
import os
import pkgutil
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SectionResult", "discover_sections", "machine_summary", "run_section", "run_bench"]

ROOT = Path(__file__).resolve().parent.parent
# Sections listed here come first, in this order; any other module follows alphabetically.
PREFERRED_ORDER = ("evaluation", "codec", "rangecoder", "link", "manytraps", "training")

_CHILD = """
import sys
from importlib import import_module
module = import_module(sys.argv[1])
text = module.run(quick=sys.argv[2] == "1")
if not isinstance(text, str):
    raise TypeError(f"{sys.argv[1]}.run returned {type(text).__name__}, not str")
with open(sys.argv[3], "w", encoding="utf-8") as handle:
    handle.write(text)
"""


@dataclass(frozen=True)
class SectionResult:
    module: str
    ok: bool
    text: str  # the section's Markdown, or the error paragraph
    seconds: float


def discover_sections(package: str = "tools.benchmarks") -> list[str]:
    """Module names of every section in `package` (preferred ones first)."""
    import importlib

    pkg = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    ordered = [n for n in PREFERRED_ORDER if n in names]
    ordered += sorted(n for n in names if n not in PREFERRED_ORDER)
    return [f"{package}.{n}" for n in ordered]


def machine_summary() -> dict[str, str]:
    """CPU model, cores, RAM, OS and Python, from /proc where it exists."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return commit + (" (plus uncommitted changes in the working tree)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_section(module: str, quick: bool, timeout: float, env: dict | None = None) -> SectionResult:
    """Run one section in a child Python; never raises for the section's own failures.

    The child's output (progress lines) is passed through to our stderr as it comes, and its
    last lines are kept for the error paragraph.
    """
    import collections
    import threading

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wildlink-bench-") as tmp:
        out_file = Path(tmp) / "section.md"
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, module, "1" if quick else "0", str(out_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env,
            cwd=ROOT, bufsize=1,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=12)
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                tail.append(line.rstrip("\n"))
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode != 0
            timer.cancel()
        seconds = time.monotonic() - start
        if proc.returncode == 0 and out_file.exists():
            return SectionResult(module, True, out_file.read_text(encoding="utf-8"), seconds)
        if timed_out:
            return SectionResult(module, False, _error(module, f"timed out after {timeout:.0f} s"),
                                 seconds)
        text = "\n".join(tail).strip()
        reason = f"exit code {proc.returncode}" + (f"\n\n```\n{text}\n```" if text else "")
        return SectionResult(module, False, _error(module, reason), seconds)


def _error(module: str, reason: str) -> str:
    name = module.rsplit(".", 1)[-1]
    return f"## {name}\n\n**This section failed** (`{module}`): {reason}\n"


def run_bench(
    out: Path,
    *,
    quick: bool = False,
    sections: Sequence[str] | None = None,
    timeout: float = 3600.0,
    log=None,
) -> list[SectionResult]:
    """Run the sections and write the Markdown file; returns each section's outcome."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    modules = list(sections) if sections else discover_sections()
    started = dt.datetime.now(dt.UTC)
    first_commit = _git_commit()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[SectionResult] = []
    for module in modules:
        log(f"bench: {module} ...")
        result = run_section(module, quick, timeout)
        log(f"bench: {module} {'ok' if result.ok else 'FAILED'} in {result.seconds:.0f} s")
        results.append(result)
        # Rewritten after every section, so an interrupted run still leaves what it measured.
        pending = modules[len(results):]
        text = _document(results, quick, started, dt.datetime.now(dt.UTC), pending, first_commit)
        out.write_text(text, encoding="utf-8")
    return results


def _document(
    results, quick: bool, started, finished, pending: Sequence[str] = (), first_commit: str = ""
) -> str:
    m = machine_summary()
    last_commit = _git_commit()
    commit = last_commit if first_commit in ("", last_commit) else (
        f"{first_commit} at the start, {last_commit} at the end (others committed meanwhile)"
    )
    command = "wildlink bench --quick" if quick else "make bench  (= wildlink bench)"
    lines = [
        "# wildlink benchmarks",
        "",
        f"Generated by `{command}`{' (QUICK mode: shipped samples, smoke test only)' if quick else ''}"
        ". Every figure below comes from that one run; each section names the command that "
        "reproduces it on its own.",
        "",
        "| | |",
        "|---|---|",
        f"| date (UTC) | {started:%Y-%m-%d %H:%M} to {finished:%H:%M} |",
        f"| commit | {commit} |",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| RAM | {m['ram']} |",
        f"| OS, Python | {m['os']}, Python {m['python']} |",
        "",
        "The machine is shared (other jobs ran alongside), so absolute times are indicative; "
        "ratios measured within one run carry the claims.",
        "",
        "| section | status | time |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r.module}` | {'ok' if r.ok else 'FAILED'} | {r.seconds:.0f} s |")
    for module in pending:
        lines.append(f"| `{module}` | not run yet (run in progress or interrupted) | - |")
    lines.append("")
    for r in results:
        lines += [r.text.rstrip(), ""]
    return "\n".join(lines)
