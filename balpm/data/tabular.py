"""Any CSV / TSV / JSON lines / JSON array / parquet / Arrow file with prompt, chosen and rejected columns.

Column names are given by a mapping ``{"prompt": ..., "chosen": ..., "rejected": ..., "split": ...,
"id": ..., "prompt_id": ..., "source": ...}`` (the last four optional); by default the columns are
called ``prompt``, ``chosen``, ``rejected`` (and ``split`` when present). ``id`` becomes the pair id
(must be unique), ``prompt_id`` the prompt id; otherwise both are content hashes (see load.py).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from balpm.data import limits
from balpm.data.hub import batch_records, iter_record_batches, read_schema_names
from balpm.data.rows import (
    BAD_REASONS,
    SKIPPED,
    BadRows,
    RowBuffer,
    RowProblem,
    Truncated,
    is_gzip,
    is_text,
    iter_json_lines,
    iter_lines,
    iter_raw_lines,
    json_error,
    norm_split,
    one_line,
    parse_json,
    parse_json_line,
    short,
    split_from_name,
)
from balpm.errors import DataError

ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected", "split", "id", "prompt_id", "source")
REQUIRED_ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected")
COLUMNS: tuple[str, ...] = ("prompt", "chosen", "rejected", "source", "orig_split", "user_pair_id", "user_prompt_id", "file", "line")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".arrow", ".gz")
#: truth columns of a table with known truth (a planted world, ``balpm plant``), kept when the file has them:
#: ``true_prob`` (probability that the chosen answer wins, in [0, 1]) and ``noisy`` (the prompt lies in a
#: coin-flip region; true/false)
TRUTH_COLUMNS: tuple[str, ...] = ("true_prob", "noisy")


def resolve_columns(columns: Mapping[str, str | None] | None) -> dict[str, str]:
    """Validate a role -> column-name mapping and fill the defaults (prompt/chosen/rejected)."""
    given = {k: v for k, v in (columns or {}).items() if v}
    unknown = sorted(set(given) - set(ROLES))
    if unknown:
        raise DataError(f"unknown column role(s) {unknown}; use {list(ROLES)}")
    out = {role: role for role in REQUIRED_ROLES}
    out.update(given)
    return out


def file_kind(path: Path) -> str:
    """``csv``, ``tsv``, ``jsonl``, ``parquet`` or ``arrow`` from the file name (``.gz`` looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    kinds = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet", ".arrow": "arrow"}
    if last == ".zip":
        raise DataError(f"{path}: a .zip archive; unzip it first and pass the folder (e.g. a datasets save_to_disk folder)")
    if last not in kinds:
        raise DataError(f"{path}: unknown file type {last or '(none)'!r}; use .csv, .tsv, .jsonl, .json, .parquet or .arrow (optionally .gz)")
    return kinds[last]


def _first_char(path: Path) -> str:
    try:
        for _, text, _err in iter_lines(path):
            return (text or "").lstrip()[:1]
    except DataError:
        if not is_gzip(path):
            raise
    return ""


def iter_records(path: Path, bad: BadRows) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Stream ``(number, unit, record)`` from any supported file; malformed lines go to ``bad``.

    ``unit`` is ``line`` for text files (the physical line where the record starts) and ``row`` for
    parquet/Arrow (1-based row number).
    """
    kind = file_kind(path)
    name = str(path)
    if kind in ("parquet", "arrow"):
        row_no = 0
        for batch in iter_record_batches(path):
            for rec in batch_records(path, batch):
                row_no += 1
                yield row_no, "row", rec
    elif kind == "jsonl" and _first_char(path) == "[":
        yield from _iter_json_array(path, bad)
    elif kind == "jsonl":
        for line_no, rec in iter_json_lines(path, bad):
            if not isinstance(rec, dict):
                bad.add(name, line_no, "not_object", f"got {type(rec).__name__}")
                continue
            yield line_no, "line", rec
    else:
        yield from _iter_csv(path, bad, "\t" if kind == "tsv" else ",")


def _iter_json_array(path: Path, bad: BadRows) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """A file whose first character is ``[``: one JSON array of objects (items numbered from 1), or JSON lines
    whose first row happens to be an array (then every line is a row, the first one bad)."""
    name = str(path)
    lines: list[tuple[int, str]] = []
    undecodable: tuple[int, str] | None = None
    held, cap = 0, limits.MAX_JSON_ARRAY_BYTES.value
    for line_no, text, err in iter_lines(path, bad):
        held += len(text or "")
        if held > cap:
            raise DataError(limits.MAX_JSON_ARRAY_BYTES.message(
                f"{path}: line {line_no}", f"the JSON array is longer than {limits.MAX_JSON_ARRAY_BYTES.show()}",
                "convert it to JSON lines (one object per line), which are read one line at a time"))
        if text is None:
            undecodable = undecodable or (line_no, err)
            lines.append((line_no, ""))
            continue
        lines.append((line_no, text))
    if undecodable is not None:
        if len(lines) > 1:
            yield from _json_lines_from(lines, path, bad, undecodable)
            return
        bad.add(name, undecodable[0], "bad_encoding", undecodable[1] + "; re-save the file as UTF-8")
        return
    whole = "".join(text for _, text in lines)
    try:
        data = parse_json(whole)
    except (ValueError, RecursionError, RowProblem) as exc:
        if len(lines) == 1:  # one line: one bad row, like any other
            bad.add(name, lines[0][0], *json_error(exc))
            return
        try:
            parse_json(lines[0][1])
            first_is_row = True
        except RecursionError:
            first_is_row = True
        except (ValueError, RowProblem):
            first_is_row = False
        if first_is_row:  # JSON lines whose first row is an array (or nested too deeply)
            yield from _json_lines_from(lines, path, bad)
            return
        reason, detail = json_error(exc)
        raise DataError(f"{path}: {BAD_REASONS.get(reason, reason)} ({detail}); a JSON array file must be valid JSON as a "
                        "whole: fix it there, or convert it to JSON lines (one object per line)") from None
    if not isinstance(data, list):
        if len(lines) == 1:
            bad.add(name, lines[0][0], "not_object", f"got {type(data).__name__}")
            return
        raise DataError(f"{path}: expected a JSON array of objects or JSON lines")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            bad.add(name, i, "not_object", f"got {type(rec).__name__}", unit="item")
            continue
        yield i, "item", rec


def _json_lines_from(lines: list[tuple[int, str]], path: Path, bad: BadRows,
                     undecodable: tuple[int, str] | None = None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Rows of already-read JSON lines (``""`` stands for a line that is not UTF-8)."""
    name = str(path)
    for line_no, text in lines:
        rec = parse_json_line(name, line_no, text or None, bad)
        if rec is SKIPPED:
            continue
        if not isinstance(rec, dict):
            bad.add(name, line_no, "not_object", f"got {type(rec).__name__}")
            continue
        yield line_no, "line", rec


#: the largest CSV field read is the line cap, ``BALPM_MAX_LINE_BYTES`` (the csv module's default, 128 KiB,
#: is below some real articles)


def _iter_csv(path: Path, bad: BadRows, delimiter: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """CSV rows with the physical line they start on.

    The header's names must be distinct (one-line :class:`DataError`); a row with another number of fields
    than the header (e.g. an unquoted comma), a malformed quote or a non-UTF-8 line is a bad row.
    """
    bad_lines: dict[int, str] = {}
    state = {"line": 0, "items": 0}  # the line read last; the lines (or runs of blank lines) of the record being read
    name = str(path)

    field_bom = re.compile("(?:^|(?<=" + re.escape(delimiter) + "))\ufeff+")

    record_cap = limits.MAX_RECORD_LINES.value

    def lines() -> Iterator[str]:
        for line_no, raw in iter_raw_lines(path, blank="merge"):
            state["line"] = line_no
            state["items"] += 1
            if state["items"] > record_cap:
                raise DataError(limits.MAX_RECORD_LINES.message(
                    f"{path}: line {line_no}", f"one record runs over more than {limits.MAX_RECORD_LINES.show()} "
                    "lines", "check the file (an unclosed quote?)"))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_lines[line_no] = f"byte {exc.start}: {raw[exc.start:exc.start + 4]!r}; re-save the file as UTF-8"
                text = raw.decode("utf-8", "replace")
            yield field_bom.sub("", text) if "\ufeff" in text else text  # a BOM before a (quoted) field

    csv.field_size_limit(limits.MAX_LINE_BYTES.value)
    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    what = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader)
        while not any(h.strip() for h in header):  # blank lines before the header
            header = next(reader)
    except StopIteration:
        return
    except Truncated as cut:
        bad.add(name, cut.line, "truncated", f"{cut.detail}; download or copy the file again")
        return
    except csv.Error as exc:
        raise DataError(f"{path}: line {state['line']}: cannot parse the {what} header ({one_line(str(exc))}); fix the file") from None
    if bad_lines:
        raise DataError(f"{path}: line {state['line']}: the header is not valid UTF-8; re-save the file as UTF-8")
    header_line = state["line"]
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, h in enumerate(header, start=1):
        if h in seen:
            raise DataError(f"{path}: line {header_line}: the header names column {h!r} twice (columns {seen[h]} and {i}); "
                            "rename one so that every column name is unique")
        seen[h] = i
    start = state["line"] + 1
    while True:
        state["items"] = 0
        try:
            values = next(reader)
        except StopIteration:
            return
        except Truncated as cut:
            bad.add(name, cut.line, "truncated", f"{cut.detail}; download or copy the file again")
            return
        except csv.Error as exc:
            detail = one_line(str(exc))
            if "field larger than field limit" in detail:
                raise DataError(limits.MAX_LINE_BYTES.message(
                    f"{path}: line {start}", f"a field (read to line {state['line']}) is longer than "
                    f"{limits.MAX_LINE_BYTES.show()}", "check the file (an unclosed quote?)")) from None
            if "unexpected end of data" in detail:
                detail = (f"a quoted field opened here is never closed; lines {start}-{state['line']} were read into it "
                          "(close the quote or escape it as \"\")")
            bad.add(name, start, "bad_csv", detail)
            start = state["line"] + 1
            continue
        end = state["line"]
        enc = [bad_lines.pop(n) for n in list(bad_lines) if start <= n <= end]
        row_start, start = start, end + 1
        if not values or not any(v.strip() for v in values):
            continue
        if enc:
            bad.add(name, row_start, "bad_encoding", enc[0])
            continue
        if len(values) != len(header):
            sep = "a tab" if delimiter == "\t" else "a comma"
            bad.add(name, row_start, "bad_csv",
                    f"{len(values)} fields where the header has {len(header)}; a field holding {sep} must be quoted")
            continue
        rec: dict[str, Any] = dict(zip(header, values))
        yield row_start, "line", rec


def record_columns(path: Path) -> list[str]:
    """Column / key names of the first record of a file (for format detection)."""
    kind = file_kind(path)
    if kind in ("parquet", "arrow"):
        return read_schema_names(path)
    if kind in ("csv", "tsv"):
        for _, _, rec in _iter_csv(path, BadRows(skip_bad=True), "\t" if kind == "tsv" else ","):
            return list(rec)
        return []
    for _, _, rec in iter_records(path, BadRows(skip_bad=True)):
        return list(rec)
    return []


def check_text(rec: dict[str, Any], role: str, col: str, allow_empty: bool = False) -> str:
    """The text in ``rec[col]`` or raise :class:`RowProblem` (empty text allowed with ``allow_empty``)."""
    if col not in rec or rec[col] is None:
        raise RowProblem("missing_field", f"no {col!r}" + (f" ({role})" if col != role else ""))
    value = rec[col]
    if not isinstance(value, str):
        raise RowProblem("bad_type", f"{col} must be text, got {short(value)}")
    if not allow_empty and not is_text(value):
        raise RowProblem("empty_text", col)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RowProblem("bad_encoding", f"{col} holds a lone surrogate") from None
    return value


def check_truth(rec: dict[str, Any], col: str) -> float | bool:
    """The value of truth column ``col`` (see :data:`TRUTH_COLUMNS`) or raise :class:`RowProblem`."""
    value = rec.get(col)
    if value is None or (isinstance(value, float) and value != value):
        raise RowProblem("missing_field", f"no {col!r} (the file has a {col} column; every row needs a value)")
    if col == "noisy":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise RowProblem("bad_type", f"noisy must be true or false, got {short(value)}")
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise RowProblem("bad_type", f"true_prob must be a probability in [0, 1], got {short(value)}")
    return number


def _opt(rec: dict[str, Any], col: str | None) -> str | None:
    if not col or rec.get(col) is None:
        return None
    value = rec[col]
    return value if isinstance(value, str) else str(value)


_LACKING_LIMIT = 20


def _columns_not_found(name: str, cols: dict[str, str], lacking: list[tuple[int, str, list[str]]]) -> None:
    want = [cols[r] for r in REQUIRED_ROLES]
    raise DataError(f"{name}: column(s) {want} not found in the first {len(lacking)} record(s) "
                    f"(keys: {lacking[0][2]}); name them with --prompt-col/--chosen-col/--rejected-col")


def load_prompt_table(path: Path, bad: BadRows, columns: Mapping[str, str | None] | None = None,
                      source: str = "custom", default_split: str | None = None) -> pd.DataFrame:
    """Stream a prompt/chosen/rejected file into a raw frame (``source`` unless a source column is given)."""
    cols = resolve_columns(columns)
    split_col = cols.get("split", "split")
    default_split = default_split if default_split is not None else split_from_name(path)
    buf = RowBuffer(COLUMNS + TRUTH_COLUMNS)
    truth: tuple[str, ...] | None = None  # the truth columns of this file, decided by its first good record
    name = str(path)
    fixed_columns = file_kind(path) in ("csv", "tsv", "parquet", "arrow")
    checked_header = False
    lacking: list[tuple[int, str, list[str]]] = []  # leading JSON records that hold none of the three columns
    for number, unit, rec in iter_records(path, bad):
        absent = [cols[r] for r in REQUIRED_ROLES if cols[r] not in rec]
        if not checked_header and fixed_columns:
            checked_header = True
            if absent:
                raise DataError(
                    f"{name}: column(s) {absent} not found (columns: {sorted(map(str, rec))[:12]}); "
                    "name them with --prompt-col/--chosen-col/--rejected-col"
                )
        if not checked_header:  # JSON records: the columns are wrong when the first records all lack all three
            if len(absent) == len(REQUIRED_ROLES):
                lacking.append((number, unit, sorted(map(str, rec))[:12]))
                if len(lacking) < _LACKING_LIMIT:
                    continue
                _columns_not_found(name, cols, lacking)
            checked_header = True
            for n, u, _keys in lacking:  # a few bad records before the first good one: ordinary bad rows
                bad.add(name, n, "missing_field", f"none of the columns {[cols[r] for r in REQUIRED_ROLES]}", unit=u)
            lacking = []
        try:
            texts = [check_text(rec, role, cols[role], allow_empty=role != "prompt") for role in REQUIRED_ROLES]
            if not is_text(texts[1]) and not is_text(texts[2]):
                raise RowProblem("empty_text", f"both {cols['chosen']} and {cols['rejected']}")
            if truth is None:
                truth = tuple(c for c in TRUTH_COLUMNS if c in rec)
            truth_values = {c: check_truth(rec, c) for c in truth}
        except RowProblem as problem:
            bad.add(name, number, problem.reason, problem.detail, unit=unit)
            continue
        split = norm_split(rec.get(split_col)) if split_col in rec else None
        try:
            buf.append(
                prompt=texts[0], chosen=texts[1], rejected=texts[2],
                source=_opt(rec, cols.get("source")) or source,
                orig_split=split or default_split,
                user_pair_id=_opt(rec, cols.get("id")),
                user_prompt_id=_opt(rec, cols.get("prompt_id")),
                file=name, line=number, **truth_values,
            )
        except RowProblem as problem:  # a lone surrogate in any field (see rows.clean_text)
            bad.add(name, number, problem.reason, problem.detail, unit=unit)
    if lacking:
        _columns_not_found(name, cols, lacking)
    frame = buf.frame()
    for col in ("user_pair_id", "user_prompt_id"):
        if frame[col].isna().all():
            frame = frame.drop(columns=col)
    frame = frame.drop(columns=[c for c in TRUTH_COLUMNS if c not in (truth or ())])
    if "true_prob" in frame.columns:
        frame["true_prob"] = frame["true_prob"].astype("float64")
    if "noisy" in frame.columns:
        frame["noisy"] = frame["noisy"].astype(bool)
    return frame
