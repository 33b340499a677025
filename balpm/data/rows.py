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
    "too_deep": "nested too deeply",
    "truncated": "the file ends early",
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
    """A short one-line ``repr`` of a value for error messages (never raises, even for deeply nested values)."""
    if isinstance(value, (list, dict)) and _depth_over(value, 20):
        return f"a deeply nested {type(value).__name__}"
    try:
        text = repr(value)
    except (RecursionError, MemoryError, ValueError):  # pathological values must not crash the message
        return f"a {type(value).__name__}"
    if len(text) > 4 * limit:
        text = text[: 4 * limit]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth_over(value: Any, limit: int) -> bool:
    """True when lists/dicts nest deeper than ``limit`` (iterative, looks at the first items only)."""
    stack = [(value, 0)]
    seen = 0
    while stack and seen < 1000:
        item, depth = stack.pop()
        seen += 1
        if depth > limit:
            return True
        children = list(item.values())[:20] if isinstance(item, dict) else item[:20] if isinstance(item, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))
    return False


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def json_error(exc: BaseException) -> tuple[str, str]:
    """``(reason, detail)`` for an exception raised by :func:`parse_json`: the complete message, one line."""
    if isinstance(exc, RecursionError):
        return "too_deep", f"more than {MAX_JSON_DEPTH} levels of nested arrays/objects"
    if isinstance(exc, RowProblem):
        return exc.reason, exc.detail
    return "bad_json", one_line(str(exc))


#: JSON nested deeper than this is a bad row (a preference row needs 3 levels); also keeps the parser's stack bounded
MAX_JSON_DEPTH = 64


def _duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise RowProblem("bad_json", f"the key {short(dup)} appears twice in one object; keep one")
    return obj


def _nesting_depth(text: str) -> int:
    """Maximum bracket depth of a JSON text, ignoring brackets inside strings (linear, no recursion)."""
    if "[" not in text and "{" not in text:
        return 0
    depth = best = 0
    in_str = escape = False
    for ch in text:
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > best:
                best = depth
                if best > MAX_JSON_DEPTH:
                    return best
        elif ch in "]}":
            depth -= 1
    return best


def parse_json(text: str) -> Any:
    """``json.loads`` for one untrusted record: a duplicate key raises :class:`RowProblem`, nesting deeper than
    :data:`MAX_JSON_DEPTH` raises ``RecursionError`` (before the parser recurses), bad JSON ``ValueError``."""
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting_depth(text) > MAX_JSON_DEPTH:
        raise RecursionError("nested too deeply")
    return json.loads(text, object_pairs_hook=_duplicate_keys)


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


_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
    (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE"),
)


def sniff_encoding(head: bytes) -> str | None:
    """The name of a wide encoding (UTF-16/32) the first bytes of a file announce (byte-order mark, or a NUL
    byte in every other position of ASCII text), ``None`` for UTF-8 or anything else."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    sample = head[:512]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "UTF-16-BE"
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
            return "UTF-16-LE"
    return None


def encoding_fix(path: Path, encoding: str) -> str:
    """The one-line message for a file in a wide encoding: what it is and the command that converts it."""
    iconv = encoding.replace("-LE", "LE").replace("-BE", "BE")
    return (f"{path}: the file is {encoding} text, not UTF-8; convert it, e.g. "
            f"`iconv -f {iconv} -t UTF-8 {path.name} > utf8-{path.name}` (or re-save it as UTF-8), then load the new file")


def check_readable_text(path: Path) -> None:
    """Raise one-line :class:`DataError` when a text file is in a wide encoding (UTF-16/32), which no line-based
    reader could decode; read errors become one line too."""
    head = b""
    try:
        with open_binary(path) as fh:
            while len(head) < 4096:
                chunk = fh.read1(4096) if hasattr(fh, "read1") else fh.read(4096)
                if not chunk:
                    break
                head += chunk
    except EOFError:  # a truncated .gz: the line reader reports it where it ends
        pass
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the file ({one_line(str(exc))}); check that it is a complete text or .gz file") from None
    encoding = sniff_encoding(head)
    if encoding:
        raise DataError(encoding_fix(path, encoding))
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{path}: the file is {what}, not text; {fix}")


_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"PK\x03\x04", "a zip archive", "unzip it and pass the folder or the files inside"),
    (b"\x1f\x8b", "gzip-compressed", "name it with a .gz ending (e.g. data.jsonl.gz) or gunzip it"),
    (b"PAR1", "a parquet file", "name it with a .parquet ending"),
    (b"ARROW1", "an Arrow file", "name it with an .arrow ending"),
    (b"BZh", "bzip2-compressed", "decompress it (bunzip2) first"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it (unxz) first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it (unzstd) first"),
)


class Truncated(Exception):
    """A (gzip) file that ends before its end marker, after ``line`` complete lines."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(line, detail)
        self.line = line
        self.detail = detail


def _plain_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh


def _gzip_lines(path: Path, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """Lines of a (multi-member) gzip file; every complete line before a truncation is yielded, then
    ``EOFError`` (where :mod:`gzip` would lose the lines of its last buffer)."""
    with open(path, "rb") as fh:
        dec = zlib.decompressobj(wbits=31)
        started = False
        pending = b""
        while True:
            chunk = fh.read(chunk_size)
            if not chunk:
                break
            out = []
            while chunk:
                started = True
                out.append(dec.decompress(chunk))
                if dec.eof:
                    chunk = dec.unused_data.lstrip(b"\x00")
                    dec = zlib.decompressobj(wbits=31)
                    started = False
                else:
                    chunk = b""
            pending += b"".join(out)
            if b"\n" in pending:
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line + b"\n"
        if started:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        if pending:
            yield pending


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_no, bytes)`` of a (possibly gzipped) file, the UTF-8 byte-order mark removed.

    A wide-encoding file (UTF-16/32) raises :class:`DataError`; a file that ends early (truncated gzip) raises
    :class:`Truncated` after its last complete line; other read errors raise :class:`DataError`.
    """
    check_readable_text(path)
    line_no = 0
    try:
        for line_no, raw in enumerate(_gzip_lines(path) if path.suffix == ".gz" else _plain_lines(path), start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield line_no, raw
    except EOFError as exc:
        raise Truncated(line_no + 1, one_line(str(exc)) or "unexpected end of file") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read the file ({one_line(str(exc))}); check that it is a complete text or .gz file") from None


def iter_lines(path: Path, bad: "BadRows | None" = None) -> Iterator[tuple[int, str | None, str]]:
    """Stream a (possibly gzipped) text file as ``(line_no, text, error)``; blank lines are skipped.

    ``text`` is ``None`` and ``error`` names the byte offset when the line is not valid UTF-8.
    Lines are read one at a time, so memory does not grow with the file. A truncated file is one bad row
    (``truncated``) in ``bad`` (which raises or counts it); without ``bad`` it raises :class:`DataError`.
    """
    try:
        for line_no, raw in iter_raw_lines(path):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, None, f"byte {exc.start}: {raw[exc.start:exc.start + 4]!r}"
                continue
            if text.strip():
                yield line_no, text, ""
    except Truncated as cut:
        if bad is None:
            raise DataError(f"{path}: line {cut.line}: the file ends early ({cut.detail}); download or copy it again") from None
        bad.add(str(path), cut.line, "truncated", f"{cut.detail}; the rest of the file is lost, download or copy it again")


#: what :func:`parse_json_line` returns for a line it recorded as bad
SKIPPED = object()


def parse_json_line(name: str, line_no: int, text: str | None, bad: "BadRows", encoding_detail: str = "not UTF-8") -> Any:
    """One JSON line's value, or :data:`SKIPPED` after recording it in ``bad`` (which raises or counts it,
    by its policy): ``text`` None (the line is not UTF-8; ``encoding_detail`` says where) or not JSON."""
    if text is None:
        bad.add(name, line_no, "bad_encoding", encoding_detail + "; re-save the file as UTF-8")
        return SKIPPED
    try:
        return parse_json(text)
    except (ValueError, RecursionError, RowProblem) as exc:
        bad.add(name, line_no, *json_error(exc))
        return SKIPPED


def iter_json_lines(path: Path, bad: "BadRows") -> Iterator[tuple[int, Any]]:
    """Stream a JSON-lines file as ``(line_no, parsed value)``; lines that are not UTF-8 or not JSON
    go to ``bad`` (which raises or counts them, by its policy) and are not yielded."""
    for line_no, text, err in iter_lines(path, bad):
        value = parse_json_line(str(path), line_no, text, bad, err)
        if value is not SKIPPED:
            yield line_no, value


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
