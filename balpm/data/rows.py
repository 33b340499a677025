"""Shared pieces of every loader: streaming lines, the bad-row policy, row buffers and content hashes.

Each loader turns one file into a *raw frame*: the columns ``prompt``, ``chosen``, ``rejected``,
``source``, ``orig_split``, ``file``, ``line`` plus whatever metadata the source has. Ids, duplicate
removal and splits are added afterwards by :mod:`balpm.data.load`, the same way for every format.
"""
from __future__ import annotations

import contextlib
import contextvars
import gzip
import hashlib
import json
import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from balpm.data import limits
from balpm.data.limits import human_bytes
from balpm.errors import DataError, printable

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


#: one decoder for every record (``json.loads`` with a hook builds a new one per call: 20% of parsing a short line)
_DECODER = json.JSONDecoder(object_pairs_hook=_duplicate_keys)


def parse_json(text: str) -> Any:
    """``json.loads`` for one untrusted record: a duplicate key raises :class:`RowProblem`, nesting deeper than
    :data:`MAX_JSON_DEPTH` raises ``RecursionError`` (before the parser recurses), bad JSON ``ValueError``."""
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting_depth(text) > MAX_JSON_DEPTH:
        raise RecursionError("nested too deeply")
    return _DECODER.decode(text)


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
        message = printable(f"{file}: {unit} {line}: {what}" + (f" ({detail})" if detail else ""))
        if not self.skip_bad:
            raise DataError(f"{message}; fix the row or pass --skip-bad (skip_bad=True) to skip such rows")
        self.counts[reason] += 1
        self.per_file[file] += 1
        if len(self.examples) < self._max_examples:
            self.examples.append(message)


def is_gzip(path: Path) -> bool:
    """True for a ``.gz`` file name (any letter case: ``.json.GZ`` too)."""
    return path.suffix.lower() == ".gz"


def open_binary(path: Path):
    """Open a file for binary reading, transparently un-gzipping ``.gz`` files."""
    if is_gzip(path):
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


_CHUNK = 1 << 20
#: a run of blank lines (spaces, tabs, CR allowed) at the start of a line: skipped in C, not line by line
_BLANK_RUN = re.compile(rb"[ \t\r\n]*\n")


@dataclass
class ReadProbe:
    """A read budget for format detection: reading stops with :class:`ProbeExhausted` after ``max_bytes``
    bytes or ``max_lines`` lines (blank ones included)."""

    max_bytes: int
    max_lines: int


class ProbeExhausted(Exception):
    """Format detection read its whole budget (see :class:`ReadProbe`) without finding what it looked for."""


#: the budget of the format detection running in this context (None: read everything)
_PROBE: contextvars.ContextVar[ReadProbe | None] = contextvars.ContextVar("balpm_read_probe", default=None)


@contextlib.contextmanager
def probing(max_bytes: int, max_lines: int) -> Iterator[ReadProbe]:
    """Within the block, every line reader stops with :class:`ProbeExhausted` after ``max_bytes`` / ``max_lines``."""
    probe = ReadProbe(max_bytes, max_lines)
    token = _PROBE.set(probe)
    try:
        yield probe
    finally:
        _PROBE.reset(token)


def _plain_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _gzip_chunks(path: Path) -> Iterator[bytes]:
    """Un-gzipped chunks (at most ``_CHUNK`` bytes each) of a (multi-member) gzip file; ``EOFError`` when it
    ends before its end marker (after every byte before the cut), one-line :class:`DataError` past
    ``BALPM_MAX_DECOMPRESSED_BYTES``."""
    cap, ratio = limits.MAX_DECOMPRESSED_BYTES.value, limits.MAX_GZIP_RATIO.value
    total = read = 0
    bomb = "check that it is the file you meant (a small .gz that expands this much is a decompression bomb)"
    with open(path, "rb") as fh:
        dec = zlib.decompressobj(wbits=31)
        started = False
        while True:
            data = fh.read(1 << 16)
            if not data:
                break
            read += len(data)
            while data:
                started = True
                out = dec.decompress(data, _CHUNK)
                data = dec.unconsumed_tail
                if out:
                    total += len(out)
                    if total > cap:
                        raise DataError(limits.MAX_DECOMPRESSED_BYTES.message(
                            printable(path), f"un-gzips to more than {limits.MAX_DECOMPRESSED_BYTES.show()}", bomb))
                    if total > limits.GZIP_RATIO_AFTER and total > ratio * read:
                        raise DataError(limits.MAX_GZIP_RATIO.message(
                            printable(path), f"{human_bytes(read)} of it un-gzip to {human_bytes(total)}, over "
                            f"{ratio} times as much", bomb))
                    yield out
                if dec.eof:
                    data = dec.unused_data.lstrip(b"\x00")
                    dec = zlib.decompressobj(wbits=31)
                    started = False
        if started:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _split_lines(path: Path, chunks: Iterator[bytes], blank: str) -> Iterator[tuple[int, bytes]]:
    """``(line_no, line)`` of a byte stream, each line at most ``BALPM_MAX_LINE_BYTES`` (one-line
    :class:`DataError` otherwise), memory bounded by that cap whatever the file holds.

    ``blank``: ``"skip"`` drops runs of blank lines (counted, never yielded), ``"merge"`` yields each run as one
    item numbered by its last line (the CSV reader: a run inside a quoted field is kept whole), ``"keep"`` yields
    them one by one. A format-detection budget (:func:`probing`) stops the stream with :class:`ProbeExhausted`.
    """
    cap = limits.MAX_LINE_BYTES.value
    probe = _PROBE.get()
    line_no = 0
    consumed = 0
    parts: list[bytes] = []
    held = 0

    def too_long() -> DataError:
        return DataError(limits.MAX_LINE_BYTES.message(
            f"{printable(path)}: line {line_no + 1}", f"the line is longer than {limits.MAX_LINE_BYTES.show()}",
            "a JSON-lines or CSV file holds one record per line: check the file (binary data, or no line breaks?)"))

    for chunk in chunks:
        consumed += len(chunk)
        start, size = 0, len(chunk)
        while start < size:
            if not parts and blank != "keep":
                run = _BLANK_RUN.match(chunk, start)
                if run is not None:
                    line_no += chunk.count(b"\n", start, run.end())
                    if blank == "merge":
                        yield line_no, chunk[start:run.end()]
                    start = run.end()
                    continue
            nl = chunk.find(b"\n", start)
            if nl < 0:
                held += size - start
                if held > cap:
                    raise too_long()
                parts.append(chunk[start:])
                break
            if held + nl + 1 - start > cap + 1:
                raise too_long()
            line = b"".join(parts) + chunk[start:nl + 1] if parts else chunk[start:nl + 1]
            parts, held = [], 0
            line_no += 1
            if probe is not None and line_no > probe.max_lines:
                raise ProbeExhausted()
            yield line_no, line
            start = nl + 1
        if probe is not None and (consumed > probe.max_bytes or line_no > probe.max_lines):
            raise ProbeExhausted()
    if parts:
        yield line_no + 1, b"".join(parts)


def iter_raw_lines(path: Path, blank: str = "keep") -> Iterator[tuple[int, bytes]]:
    """``(line_no, bytes)`` of a (possibly gzipped) file, the UTF-8 byte-order mark removed; memory stays
    bounded by ``BALPM_MAX_LINE_BYTES`` (and ``BALPM_MAX_DECOMPRESSED_BYTES`` for ``.gz``). ``blank``: see
    :func:`_split_lines`.

    A wide-encoding file (UTF-16/32) raises :class:`DataError`; a file that ends early (truncated gzip) raises
    :class:`Truncated` after its last complete line; other read errors raise :class:`DataError`.
    """
    check_readable_text(path)
    line_no = 0
    chunks = _gzip_chunks(path) if is_gzip(path) else _plain_chunks(path)
    try:
        for line_no, raw in _split_lines(path, chunks, blank):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            yield line_no, raw
    except EOFError as exc:
        raise Truncated(line_no + 1, one_line(str(exc)) or "unexpected end of file") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{printable(path)}: cannot read the file ({one_line(str(exc))}); check that it is a complete text or .gz file") from None


def iter_lines(path: Path, bad: BadRows | None = None) -> Iterator[tuple[int, str | None, str]]:
    """Stream a (possibly gzipped) text file as ``(line_no, text, error)``; blank lines are skipped.

    ``text`` is ``None`` and ``error`` names the byte offset when the line is not valid UTF-8.
    Lines are read one at a time, so memory does not grow with the file. A truncated file is one bad row
    (``truncated``) in ``bad`` (which raises or counts it); without ``bad`` it raises :class:`DataError`.
    """
    try:
        for line_no, raw in iter_raw_lines(path, blank="skip"):
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


def parse_json_line(name: str, line_no: int, text: str | None, bad: BadRows, encoding_detail: str = "not UTF-8") -> Any:
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


def iter_json_lines(path: Path, bad: BadRows) -> Iterator[tuple[int, Any]]:
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
    """True for a string with at least one character that is neither whitespace nor an invisible format
    character (Unicode category Cf: zero-width space U+200B, byte-order mark U+FEFF, joiners, bidi marks)."""
    if not isinstance(value, str):
        return False
    for ch in value.strip():
        if not (ch.isspace() or unicodedata.category(ch) == "Cf"):
            return True
    return False


_BOM = "\ufeff"


def clean_text(value: str) -> str:
    """Text as it enters the table: a byte-order mark at its start removed, NFC-normalised (so that
    Unicode-equivalent prompts get one prompt id). Raises :class:`RowProblem` for a lone surrogate
    (``"\\ud800"`` from a JSON escape), which no UTF-8 file or parquet column can hold."""
    if value.isascii():
        return value
    if value.startswith(_BOM):
        value = value.lstrip(_BOM)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowProblem("bad_encoding", f"a lone surrogate {value[exc.start]!a} at character {exc.start}") from None
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


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

    @staticmethod
    def _clean(column: str, value: str) -> str:
        if column == "file":
            return printable(value)
        if column.startswith("_"):
            return value
        try:
            return clean_text(value)
        except RowProblem as problem:
            raise RowProblem(problem.reason, f"{column}: {problem.detail}") from None

    def append(self, **values: Any) -> None:
        """Append one row given by column name; missing columns are ``None``."""
        self.append_values(tuple(values.get(c) for c in self.columns))

    def append_values(self, row: tuple[Any, ...]) -> None:
        """Append one row given as a tuple in ``columns`` order (the fast path).

        Every text field goes through :func:`clean_text` (BOM, NFC; a lone surrogate raises :class:`RowProblem`
        naming the column, and nothing is appended); the ``file`` column is made printable instead.
        """
        for value in row:
            if type(value) is str and not value.isascii():
                row = tuple(self._clean(c, v) if isinstance(v, str) and not v.isascii() else v for c, v in zip(self.columns, row))
                break
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
