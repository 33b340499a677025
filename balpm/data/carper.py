"""CarperAI ``openai_summarize_comparisons``: prompt / chosen / rejected rows of Reddit TL;DR.

Read from a ``datasets`` ``save_to_disk`` folder (``dataset_dict.json`` + one sub-folder of Arrow files
per split, as in the torchrl test fixture), from the hub's parquet files (``data/train-*.parquet``) or
from JSON lines. Split names (train / valid1 / valid2 / test) are kept in ``orig_split``. Source ``tldr``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from balpm.data.rows import (
    BadRows,
    RowProblem,
    json_error,
    norm_split,
    parse_json,
    short,
)
from balpm.data.tabular import COLUMNS, load_prompt_table
from balpm.errors import DataError

SOURCE = "tldr"
_DATA_SUFFIXES = (".arrow", ".parquet", ".jsonl", ".json", ".gz", ".csv")


#: the largest save_to_disk metadata file read (real ones are a few KB)
_MAX_META_BYTES = 1 << 20


def _read_json(path: Path) -> dict:
    """A ``save_to_disk`` metadata file: a JSON object of at most 1 MiB, or one-line :class:`DataError`."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_META_BYTES + 1)
        if len(raw) > _MAX_META_BYTES:
            raise ValueError(f"larger than {_MAX_META_BYTES >> 20} MiB, not save_to_disk metadata")
        value = parse_json(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError, RowProblem) as exc:
        detail = json_error(exc)[1] if isinstance(exc, (RecursionError, RowProblem)) else " ".join(str(exc).split())
        raise DataError(f"{path}: cannot read it ({detail}); is the save_to_disk folder complete?") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got a {type(value).__name__}; "
                        "it is not datasets save_to_disk metadata (re-save the dataset with save_to_disk)")
    return value


def _member_name(meta: Path, what: str, value: object) -> str:
    """A file or folder name listed in save_to_disk metadata: a plain name inside the folder, or one-line error."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise DataError(f"{meta}: {what} {short(value)} is not a file or folder name inside the dataset folder; "
                        "re-save the dataset with save_to_disk")
    return value


def _split_names(meta: Path, data: dict) -> list[str] | None:
    """``splits`` of a ``dataset_dict.json`` (a list of split folder names), None when absent."""
    splits = data.get("splits")
    if splits is None:
        return None
    if not isinstance(splits, list):
        raise DataError(f"{meta}: 'splits' must be a list of split names, got {short(splits)}; "
                        "re-save the dataset with save_to_disk")
    return [_member_name(meta, "split", s) for s in splits]


def dataset_files(folder: Path) -> list[Path]:
    """Arrow files of one ``save_to_disk`` Dataset folder (from ``state.json``, else ``*.arrow``)."""
    state = folder / "state.json"
    if state.is_file():
        listed = _read_json(state).get("_data_files", [])
        if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
            raise DataError(f"{state}: '_data_files' must be a list of {{\"filename\": ...}} objects, got {short(listed)}; "
                            "re-save the dataset with save_to_disk")
        names = [_member_name(state, "data file", f["filename"]) for f in listed if "filename" in f]
        files = [folder / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{folder}: data file {missing[0]} listed in state.json is missing; copy the whole folder")
        if files:
            return files
    return sorted(folder.glob("*.arrow"))


def is_save_to_disk(path: Path) -> bool:
    """True for a ``datasets`` ``save_to_disk`` folder (DatasetDict or single Dataset)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def load_carper(path: Path, bad: BadRows, columns: Mapping[str, str | None] | None = None,
                source: str = SOURCE) -> pd.DataFrame:
    """A CarperAI-style folder or file -> raw frame (``orig_split`` from the split folder or file name)."""
    frames: list[pd.DataFrame] = []
    if (path / "dataset_dict.json").is_file():
        splits = _split_names(path / "dataset_dict.json", _read_json(path / "dataset_dict.json")) \
            or sorted(p.name for p in path.iterdir() if p.is_dir())
        for split in splits:
            if not (path / split).is_dir():
                raise DataError(f"{path}: split folder {split!r} listed in dataset_dict.json is missing; copy the whole folder")
            for f in dataset_files(path / split):
                frames.append(load_prompt_table(f, bad, columns, source, default_split=norm_split(split)))
    elif (path / "state.json").is_file():
        for f in dataset_files(path):
            frames.append(load_prompt_table(f, bad, columns, source, default_split=norm_split(path.name)))
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES and not p.name.startswith("."))
        files = [p for p in files if p.name not in ("state.json", "dataset_info.json", "dataset_dict.json")]
        if not files:
            raise DataError(f"{path}: no data files (.arrow, .parquet, .jsonl) found")
        frames = [load_prompt_table(f, bad, columns, source) for f in files]
    else:
        frames = [load_prompt_table(path, bad, columns, source)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
