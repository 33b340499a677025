"""Caps on what the data loaders read, so that a hostile or broken file cannot take unbounded memory or time.

Every cap has a generous default (far above the full OpenAI comparisons data: ~180k rows, its longest line
~10 KB in the sample here, its largest file a few hundred MB) and an environment variable that raises it. Going over a cap is
one :class:`~balpm.errors.DataError` line that names the cap and the variable (see :meth:`Limit.message`).

========================================  ==============================  ==========================================
cap                                       environment variable            default
========================================  ==============================  ==========================================
bytes of one line (and one CSV field)     ``BALPM_MAX_LINE_BYTES``        64 MiB
bytes un-gzipped from one ``.gz`` file    ``BALPM_MAX_DECOMPRESSED_BYTES`` 8 GiB
un-gzipped / gzipped bytes (past 256 MiB) ``BALPM_MAX_GZIP_RATIO``        200 (real files: 3.6 TL;DR, 20 CNN/DM)
bytes of a JSON array file (parsed whole) ``BALPM_MAX_JSON_ARRAY_BYTES``  1 GiB
uncompressed bytes of a parquet file      ``BALPM_MAX_PARQUET_BYTES``     8 GiB
bytes read to detect a file's format      ``BALPM_DETECT_MAX_BYTES``      64 MiB
lines read to detect a file's format      ``BALPM_DETECT_MAX_LINES``      10,000
lines of one CSV record (quoted newlines) ``BALPM_MAX_RECORD_LINES``      100,000
========================================  ==============================  ==========================================

The featurizer's character cap on texts (``features.max_chars``) lives with the feature config.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from balpm.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def human_bytes(n: int) -> str:
    """``67108864`` -> ``'64 MiB'``, ``1234567`` -> ``'1.2 MiB'`` (binary units; exact when they divide)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n:,} bytes"


@dataclass(frozen=True)
class Limit:
    """One cap: its environment variable, default, what it counts and whether that is bytes."""

    env: str
    default: int
    what: str
    in_bytes: bool = True

    @property
    def value(self) -> int:
        """The cap in force: the environment variable when set (a whole number, optionally with K/M/G/T), else the default."""
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        match = _SIZE.match(raw)
        if not match or (not self.in_bytes and match.group(2)):
            example = "512M or 2G" if self.in_bytes else "500000"
            raise ConfigError(f"{self.env}={raw!r} is not a whole number{' of bytes' if self.in_bytes else ''}; "
                              f"set it like {example}")
        value = int(match.group(1)) * _UNITS[match.group(2).lower()]
        if value <= 0:
            raise ConfigError(f"{self.env} must be positive (got {raw!r}); unset it for the default {self.show(self.default)}")
        return value

    def show(self, n: int | None = None) -> str:
        """The cap (or ``n``) in words: ``64 MiB`` or ``100,000 lines``."""
        n = self.value if n is None else n
        return human_bytes(n) if self.in_bytes else f"{n:,}"

    def message(self, where: str, problem: str, fix: str = "check the file") -> str:
        """One line: where, what went over the cap, the fix, and the variable that raises the cap."""
        return (f"{where}: {problem} (over the {self.show()} cap on {self.what}); {fix}, "
                f"or raise the cap with the environment variable {self.env} (e.g. {self.env}={self._raised()})")

    def _raised(self) -> str:
        doubled = 2 * self.value
        if not self.in_bytes:
            return str(doubled)
        for suffix, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if doubled % size == 0:
                return f"{doubled // size}{suffix}"
        return str(doubled)


MAX_LINE_BYTES = Limit("BALPM_MAX_LINE_BYTES", 64 << 20, "the bytes of one line or CSV field")
MAX_DECOMPRESSED_BYTES = Limit("BALPM_MAX_DECOMPRESSED_BYTES", 8 << 30, "the bytes un-gzipped from one .gz file")
MAX_GZIP_RATIO = Limit("BALPM_MAX_GZIP_RATIO", 200, "how many times larger a .gz file un-gzips (checked past 256 MiB)",
                       in_bytes=False)
#: a .gz file's expansion ratio is checked once this many bytes came out of it
GZIP_RATIO_AFTER = 256 << 20
MAX_JSON_ARRAY_BYTES = Limit("BALPM_MAX_JSON_ARRAY_BYTES", 1 << 30, "the bytes of a JSON array file, which is parsed whole")
MAX_PARQUET_BYTES = Limit("BALPM_MAX_PARQUET_BYTES", 8 << 30, "the uncompressed bytes of a parquet file")
DETECT_MAX_BYTES = Limit("BALPM_DETECT_MAX_BYTES", 64 << 20, "the bytes read to detect a file's format")
DETECT_MAX_LINES = Limit("BALPM_DETECT_MAX_LINES", 10_000, "the lines read to detect a file's format", in_bytes=False)
MAX_RECORD_LINES = Limit("BALPM_MAX_RECORD_LINES", 100_000, "the lines of one CSV record (quoted fields spanning lines)",
                         in_bytes=False)

ALL_LIMITS: tuple[Limit, ...] = (MAX_LINE_BYTES, MAX_DECOMPRESSED_BYTES, MAX_GZIP_RATIO, MAX_JSON_ARRAY_BYTES, MAX_PARQUET_BYTES,
                                 DETECT_MAX_BYTES, DETECT_MAX_LINES, MAX_RECORD_LINES)
