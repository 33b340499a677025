"""Any CSV / TSV / JSON lines / JSON array / parquet / Arrow file with prompt, chosen and rejected columns.

Column names are given by a mapping ``{"prompt": ..., "chosen": ..., "rejected": ..., "split": ...,
"id": ..., "prompt_id": ..., "source": ...}`` (the last four optional); by default the columns are
called ``prompt``, ``chosen``, ``rejected`` (and ``split`` when present). ``id`` becomes the pair id
(must be unique), ``prompt_id`` the prompt id; otherwise both are content hashes (see load.py).
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from balpm.data.hub import iter_record_batches, read_schema_names
from balpm.data.rows import (
    BadRows,
    RowBuffer,
    RowProblem,
    is_text,
    iter_json_lines,
    iter_lines,
    norm_split,
    short,
    split_from_name,
)
from balpm.errors import DataError

ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected", "split", "id", "prompt_id", "source")
REQUIRED_ROLES: tuple[str, ...] = ("prompt", "chosen", "rejected")
COLUMNS: tuple[str, ...] = ("prompt", "chosen", "rejected", "source", "orig_split", "user_pair_id", "user_prompt_id", "file", "line")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".arrow", ".gz")


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
    for _, text, _err in iter_lines(path):
        return (text or "").lstrip()[:1]
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
            for rec in batch.to_pylist():
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
    from balpm.data.rows import open_binary

    try:
        with open_binary(path) as fh:
            data = json.loads(fh.read().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 at byte {exc.start}; re-save the file as UTF-8") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({' '.join(str(exc).split())}); fix the file or convert it to JSON lines") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects or JSON lines")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            bad.add(str(path), i, "not_object", f"got {type(rec).__name__}", unit="item")
            continue
        yield i, "item", rec


def _iter_csv(path: Path, bad: BadRows, delimiter: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """CSV rows with the physical line they start on; a row with a non-UTF-8 line is bad (``bad_encoding``)."""
    bad_lines: dict[int, str] = {}
    state = {"line": 0}

    def lines() -> Iterator[str]:
        from balpm.data.rows import open_binary

        try:
            with open_binary(path) as fh:
                for line_no, raw in enumerate(fh, start=1):
                    state["line"] = line_no
                    if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    try:
                        yield raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        bad_lines[line_no] = f"byte {exc.start}: {raw[exc.start:exc.start + 4]!r}"
                        yield raw.decode("utf-8", "replace")
        except OSError as exc:
            raise DataError(f"{path}: cannot read the file ({' '.join(str(exc).split())})") from None

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"{path}: line 1: cannot parse the CSV header ({exc}); fix the file") from None
    if bad_lines:
        raise DataError(f"{path}: line 1: the header is not valid UTF-8; re-save the file as UTF-8")
    start = state["line"] + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            bad.add(str(path), start, "bad_csv", str(exc))
            start = state["line"] + 1
            continue
        end = state["line"]
        enc = [bad_lines.pop(n) for n in list(bad_lines) if start <= n <= end]
        row_start, start = start, end + 1
        if not values or not any(v.strip() for v in values):
            continue
        if enc:
            bad.add(str(path), row_start, "bad_encoding", enc[0])
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


def _opt(rec: dict[str, Any], col: str | None) -> str | None:
    if not col or rec.get(col) is None:
        return None
    value = rec[col]
    return value if isinstance(value, str) else str(value)


def load_prompt_table(path: Path, bad: BadRows, columns: Mapping[str, str | None] | None = None,
                      source: str = "custom", default_split: str | None = None) -> pd.DataFrame:
    """Stream a prompt/chosen/rejected file into a raw frame (``source`` unless a source column is given)."""
    cols = resolve_columns(columns)
    split_col = cols.get("split", "split")
    default_split = default_split if default_split is not None else split_from_name(path)
    buf = RowBuffer(COLUMNS)
    name = str(path)
    fixed_columns = file_kind(path) in ("csv", "tsv", "parquet", "arrow")
    checked_header = False
    for number, unit, rec in iter_records(path, bad):
        if not checked_header:
            checked_header = True
            absent = [cols[r] for r in REQUIRED_ROLES if cols[r] not in rec]
            if absent and (fixed_columns or len(absent) == len(REQUIRED_ROLES)):
                raise DataError(
                    f"{name}: column(s) {absent} not found (columns: {sorted(rec)[:12]}); "
                    "name them with --prompt-col/--chosen-col/--rejected-col"
                )
        try:
            texts = [check_text(rec, role, cols[role], allow_empty=role != "prompt") for role in REQUIRED_ROLES]
            if not is_text(texts[1]) and not is_text(texts[2]):
                raise RowProblem("empty_text", f"both {cols['chosen']} and {cols['rejected']}")
        except RowProblem as problem:
            bad.add(name, number, problem.reason, problem.detail, unit=unit)
            continue
        split = norm_split(rec.get(split_col)) if split_col in rec else None
        buf.append(
            prompt=texts[0], chosen=texts[1], rejected=texts[2],
            source=_opt(rec, cols.get("source")) or source,
            orig_split=split or default_split,
            user_pair_id=_opt(rec, cols.get("id")),
            user_prompt_id=_opt(rec, cols.get("prompt_id")),
            file=name, line=number,
        )
    frame = buf.frame()
    for col in ("user_pair_id", "user_prompt_id"):
        if frame[col].isna().all():
            frame = frame.drop(columns=col)
    return frame
