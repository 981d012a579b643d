"""Error formatting for the CLI: one line that names the problem, never a traceback."""

from __future__ import annotations

from device.errors import WildlinkError

__all__ = ["WildlinkError", "UserError", "format_error"]


class UserError(WildlinkError, ValueError):
    """Bad input on the command line (a flag, a path, a file's content)."""


def format_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or exc.__class__.__name__
        return f"{reason}: {exc.filename}"
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
