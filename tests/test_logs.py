"""JSON logs: every stderr line is a JSON object, native (TFLite C++) and Python output included."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_bundle" / "analysis.tflite"


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _records(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


def test_log_json_turns_tflite_native_and_python_stderr_into_json_lines():
    done = _run(f"""
        import logging, os, sys, warnings
        from device.service.logs import event, setup_logging
        setup_logging(True)
        from tflite_runtime.interpreter import Interpreter
        Interpreter(model_path={str(TINY)!r}).allocate_tensors()  # prints XNNPACK's INFO line
        os.write(2, b"ERROR: something native went wrong\\n")
        print("a plain print to stderr", file=sys.stderr)
        warnings.warn("careful")
        event(logging.getLogger("trap"), "queued", image=3)
        raise RuntimeError("boom")
    """)
    assert done.returncode == 1 and done.stdout == ""
    records = _records(done.stderr)
    by_event = {r["event"]: r for r in records}
    xnnpack = [r for r in records if "XNNPACK" in r["event"]]
    assert len(xnnpack) == 1 and xnnpack[0]["level"] == "INFO"
    assert xnnpack[0]["logger"] == "native"
    assert by_event["ERROR: something native went wrong"]["level"] == "ERROR"
    assert by_event["a plain print to stderr"]["logger"] == "stderr"
    assert any("careful" in r["event"] for r in records)
    assert by_event["queued"]["image"] == 3
    uncaught = [r for r in records if r["logger"] == "uncaught"]
    assert len(uncaught) == 1 and uncaught[0]["error"] == "RuntimeError: boom"
    assert "Traceback" in uncaught[0]["traceback"]


def test_plain_logs_leave_stderr_alone():
    done = _run("""
        import os
        from device.service.logs import setup_logging
        setup_logging(False)
        os.write(2, b"INFO: native text stays text\\n")
    """)
    assert done.returncode == 0 and done.stderr == "INFO: native text stays text\n"
