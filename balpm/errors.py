"""User-facing errors: one line naming the problem and the fix.

Every check on user input (files, parameters, features) raises :class:`BalpmError`. The CLI catches
it and prints ``error: <message>`` on one line with exit code 2, never a traceback.
"""
from __future__ import annotations


class BalpmError(ValueError):
    """A problem with the user's input, stated in one line with its fix."""

    def __init__(self, message: str) -> None:
        message = " ".join(str(message).split())  # always one line
        super().__init__(message)


class DataError(BalpmError):
    """A malformed data file or row (names the file, the line and the problem)."""


class ConfigError(BalpmError):
    """An impossible or inconsistent parameter."""


class FeatureError(BalpmError):
    """Features that are missing, mismatched or not finite."""


class RunLockedError(BalpmError):
    """Another process holds the lock of a run folder (a second writer with the same run id)."""
