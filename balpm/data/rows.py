"""Shared pieces of every loader: streaming lines, the bad-row policy, row buffers and content hashes.

Each loader turns one file into a *raw frame*: the columns ``prompt``, ``chosen``, ``rejected``,
``source``, ``orig_split``, ``file``, ``line`` plus whatever metadata the source has. Ids, duplicate
removal and splits are added afterwards by :mod:`balpm.data.load`, the same way for every format.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from balpm.errors import DataError

#: reason code -> what is wrong (used in the one-line error and in report["bad_reasons"])
BAD_REASONS: dict[str, str] = {
    "bad_json": "not valid JSON",
    "bad_csv": "not a valid CSV row",
    "not_object": "not a JSON object",
    "bad_encoding": "not valid UTF-8",
    "missing_field": "a required field is missing",
    "bad_type": "a field has the wrong type",
    "bad_choice": "choice is not 0 or 1",
    "bad_summaries": "summaries is not a list of two summaries",
    "empty_text": "an empty text",
    "prefix_mismatch": "chosen and rejected do not share a prompt prefix",
}

#: original split names -> canonical names kept in ``orig_split``
ORIG_SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "validation", "val": "valid", "dev": "valid",
    "valid1": "valid1", "valid2": "valid2",
    "test": "test", "ood": "ood",
}

#: metadata columns a raw frame may carry (all optional)
META_COLUMNS: tuple[str, ...] = (
    "source_id", "orig_split", "title", "subreddit", "site", "policy_chosen", "policy_rejected",
    "worker", "batch", "confidence", "choice", "file", "line",
)

_TRUNCATE = 80


def short(value: Any, limit: int = _TRUNCATE) -> str:
    """A short one-line ``repr`` of a value for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def content_hash(*parts: Any, size: int = 8) -> str:
    """Stable hex digest (``2*size`` characters) of the given parts (length-prefixed; ``None`` differs from ``""``)."""
    pieces = []
    for part in parts:
        if part is None:
            pieces.append("\x00")
        else:
            text = str(part)
            pieces.append(f"{len(text)}:{text}")
    return hashlib.blake2b("\x1e".join(pieces).encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


class RowProblem(Exception):
    """A malformed row: ``reason`` is a key of :data:`BAD_REASONS`, ``detail`` says where."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class BadRows:
    """The bad-row policy: raise a one-line :class:`DataError` or, with ``skip_bad``, count and skip.

    ``counts`` holds the skipped rows per reason, ``per_file`` per file name, ``examples`` the first few
    messages (for the report).
    """

    def __init__(self, skip_bad: bool = False, max_examples: int = 5) -> None:
        self.skip_bad = skip_bad
        self.counts: Counter[str] = Counter()
        self.per_file: Counter[str] = Counter()
        self.examples: list[str] = []
        self._max_examples = max_examples

    @property
    def total(self) -> int:
        """Number of rows skipped so far."""
        return int(sum(self.counts.values()))

    def add(self, file: str, line: int, reason: str, detail: str = "", unit: str = "line") -> None:
        """Record one malformed row at ``file`` ``unit`` ``line``; raise unless skipping bad rows."""
        what = BAD_REASONS.get(reason, reason)
        message = f"{file}: {unit} {line}: {what}" + (f" ({detail})" if detail else "")
        if not self.skip_bad:
            raise DataError(f"{message}; fix the row or pass --skip-bad (skip_bad=True) to skip such rows")
        self.counts[reason] += 1
        self.per_file[file] += 1
        if len(self.examples) < self._max_examples:
            self.examples.append(message)


def open_binary(path: Path):
    """Open a file for binary reading, transparently un-gzipping ``.gz`` files."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """Stream a (possibly gzipped) text file as ``(line_no, text, error)``; blank lines are skipped.

    ``text`` is ``None`` and ``error`` names the byte offset when the line is not valid UTF-8.
    Lines are read one at a time, so memory does not grow with the file.
    """
    try:
        with open_binary(path) as fh:
            for line_no, raw in enumerate(fh, start=1):
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield line_no, None, f"byte {exc.start}: {raw[exc.start:exc.start + 4]!r}"
                    continue
                if text.strip():
                    yield line_no, text, ""
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the file ({' '.join(str(exc).split())}); check that it is a complete text or .gz file") from None


def iter_json_lines(path: Path, bad: "BadRows") -> Iterator[tuple[int, Any]]:
    """Stream a JSON-lines file as ``(line_no, parsed value)``; lines that are not UTF-8 or not JSON
    go to ``bad`` (which raises or counts them, by its policy) and are not yielded."""
    name = str(path)
    for line_no, text, err in iter_lines(path):
        if text is None:
            bad.add(name, line_no, "bad_encoding", err)
            continue
        try:
            yield line_no, json.loads(text)
        except ValueError as exc:
            bad.add(name, line_no, "bad_json", str(exc).split(":")[0])


def norm_split(value: Any) -> str | None:
    """Canonical original split name (``valid1`` stays ``valid1``), ``None`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    return ORIG_SPLIT_ALIASES.get(text.lower(), text.lower())


def split_from_name(path: Path) -> str | None:
    """The split a file or folder name announces (``train-00000-of-00001.parquet`` -> ``train``)."""
    for part in (path.name, path.parent.name):
        stem = part.split(".")[0].split("-")[0].lower()
        if stem in ORIG_SPLIT_ALIASES:
            return ORIG_SPLIT_ALIASES[stem]
    return None


def is_text(value: Any) -> bool:
    """True for a string with at least one non-space character."""
    return isinstance(value, str) and bool(value.strip())


class RowBuffer:
    """Rows kept as tuples that become one DataFrame at the end (no per-row frames).

    Repeated prompt texts are interned, so a prompt shared by many comparisons is stored once.
    """

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._rows: list[tuple[Any, ...]] = []
        self._intern: dict[str, str] = {}
        self._prompt_at = columns.index("prompt") if "prompt" in columns else -1

    def __len__(self) -> int:
        """Number of rows appended."""
        return len(self._rows)

    def append(self, **values: Any) -> None:
        """Append one row given by column name; missing columns are ``None``."""
        self.append_values(tuple(values.get(c) for c in self.columns))

    def append_values(self, row: tuple[Any, ...]) -> None:
        """Append one row given as a tuple in ``columns`` order (the fast path)."""
        at = self._prompt_at
        if at >= 0 and isinstance(row[at], str):
            prompt = self._intern.setdefault(row[at], row[at])
            row = row[:at] + (prompt,) + row[at + 1:]
        self._rows.append(row)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (text columns as strings, ``line`` as int64)."""
        frame = pd.DataFrame.from_records(self._rows, columns=list(self.columns)) if self._rows \
            else pd.DataFrame({c: pd.Series(dtype=object) for c in self.columns})
        return to_frame(frame)


def to_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy the dtypes of a raw frame: ``line``/``choice`` int64, ``confidence`` float64."""
    if "line" in frame:
        frame["line"] = frame["line"].astype("int64")
    if "choice" in frame:
        frame["choice"] = pd.to_numeric(frame["choice"]).astype("int64")
    if "confidence" in frame:
        frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").astype("float64")
    return frame


def as_confidence(value: Any) -> float | None:
    """``extra.confidence`` as a float (``None`` when absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
