"""Structured logs for the services: one JSON object per line, for journald and `jq`.

`event(log, "queued", image=12, bytes=2980)` logs the human line `queued image=12 bytes=2980`
and carries the fields; `JsonFormatter` turns each record into
`{"ts": ..., "level": "INFO", "logger": ..., "event": "queued", "image": 12, "bytes": 2980}`.

With JSON logs, *every* line on stderr must be JSON, and not everything that writes there is
Python logging: TFLite's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." straight to file descriptor 2, and Python itself writes warnings and tracebacks to
`sys.stderr`. `capture_stderr` therefore moves descriptor 2 onto a pipe whose lines a thread turns
into records (logger "native"), and replaces `sys.stderr` by a writer that does the same (logger
"stderr"); the JSON handler writes to a duplicate of the original descriptor 2. Nothing is
dropped: native output appears as JSON, with its level taken from its "INFO:"/"WARNING:"/"ERROR:"
prefix.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import sys
import threading
import time

__all__ = ["JsonFormatter", "capture_stderr", "event", "setup_logging"]

#: Prefixes the TFLite runtime (tflite/minimal_logging) and abseil put on native lines.
_NATIVE_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
                  "FATAL": logging.CRITICAL, "VERBOSE": logging.DEBUG, "DEBUG": logging.DEBUG}
_captured: dict = {}  # the one redirection of this process (capture_stderr is idempotent)


def event(log: logging.Logger, what: str, level: int = logging.INFO, /, **fields) -> None:
    """Log one service event with its fields (kept machine-readable for JsonFormatter)."""
    text = " ".join([what, *(f"{k}={v}" for k, v in fields.items())])
    log.log(level, text, extra={"event": what, "fields": fields})


class JsonFormatter(logging.Formatter):
    """Format records as single-line JSON objects."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        data.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info).splitlines()[-1]
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup_logging(json_lines: bool, verbose: int = 0) -> None:
    """Route the root logger to stderr as JSON lines (services) or plain text (a terminal).

    JSON lines also capture what native code and Python write to stderr (`capture_stderr`),
    so call this before TFLite or any other native library is loaded.
    """
    stream = capture_stderr() if json_lines else sys.stderr
    handler = logging.StreamHandler(stream)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    if json_lines:
        sys.excepthook = _log_uncaught
        threading.excepthook = lambda args: _log_uncaught(
            args.exc_type, args.exc_value, args.exc_traceback, args.thread)


def capture_stderr() -> io.TextIOBase:
    """Turn every later line on descriptor 2 and `sys.stderr` into a log record.

    Returns a text stream on the original stderr, for the handler that writes the JSON lines.
    Idempotent: a second call returns the same stream.
    """
    if "stream" in _captured:
        return _captured["stream"]
    sys.stderr.flush()
    original = os.dup(2)
    stream = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pump, args=(read_end,), name="stderr-capture",
                              daemon=True)
    reader.start()
    _captured.update(stream=stream, original=original, reader=reader,
                     python=sys.stderr)
    sys.stderr = _LineLogger(logging.getLogger("stderr"))
    atexit.register(_release)
    return stream


class _LineLogger(io.TextIOBase):
    """A text stream that logs each complete line (Python's own writes to sys.stderr)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self._logger.warning(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._partial.strip():
            self._logger.warning(self._partial.rstrip())
        self._partial = ""


def _pump(read_end: int) -> None:
    """Read native stderr lines until every writer has closed the pipe."""
    logger = logging.getLogger("native")
    with os.fdopen(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                logger.log(_native_level(line), line)


def _native_level(line: str) -> int:
    prefix = line.split(":", 1)[0].strip().upper()
    return _NATIVE_LEVELS.get(prefix, logging.WARNING)


def _release() -> None:
    """At exit: put descriptor 2 back (closing the pipe) and let the reader drain it."""
    if "original" not in _captured:
        return
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os.dup2(_captured["original"], 2)  # the pipe's last write end closes here
    _captured["reader"].join(timeout=2.0)


def _log_uncaught(exc_type, exc_value, exc_traceback, thread=None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)  # its lines are logged too
        return
    where = f" in thread {thread.name}" if thread is not None else ""
    logging.getLogger("uncaught").critical(
        f"uncaught {exc_type.__name__}{where}: {exc_value}",
        exc_info=(exc_type, exc_value, exc_traceback))
