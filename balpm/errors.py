"""User-facing errors: one line naming the problem and the fix.

Every check on user input (files, parameters, features) raises :class:`BalpmError`. The CLI catches
it and prints ``error: <message>`` on one line with exit code 2, never a traceback.
"""
from __future__ import annotations

from typing import Any


def printable(text: Any) -> str:
    """``text`` (a path, a name, any user-supplied string) safe to print on a terminal: every character that is
    not printable (control characters such as ESC, format characters such as U+202E, lone surrogates,
    line/paragraph separators) becomes a ``repr``-like escape (``\\x1b``, ``\\u202e``, ``\\ud800``).
    Printable text, including non-ASCII letters, is unchanged; the result is always valid UTF-8 on one line."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class BalpmError(ValueError):
    """A problem with the user's input, stated in one line with its fix (terminal-safe: see :func:`printable`)."""

    def __init__(self, message: str) -> None:
        message = printable(" ".join(str(message).split()))  # always one line, no control characters
        super().__init__(message)


class DataError(BalpmError):
    """A malformed data file or row (names the file, the line and the problem)."""


class ConfigError(BalpmError):
    """An impossible or inconsistent parameter."""


class FeatureError(BalpmError):
    """Features that are missing, mismatched or not finite."""


class RunLockedError(BalpmError):
    """Another process holds the lock of a run folder (a second writer with the same run id)."""
