"""Structured logs for the services: one JSON object per line, for journald and `jq`.

`event(log, "queued", image=12, bytes=2980)` logs the human line `queued image=12 bytes=2980`
and carries the fields; `JsonFormatter` turns each record into
`{"ts": ..., "level": "INFO", "logger": ..., "event": "queued", "image": 12, "bytes": 2980}`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "event", "setup_logging"]


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
        return json.dumps(data, default=str)


def setup_logging(json_lines: bool, verbose: int = 0) -> None:
    """Route the root logger to stderr as JSON lines (services) or plain text (a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
