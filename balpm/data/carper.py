"""CarperAI ``openai_summarize_comparisons``: prompt / chosen / rejected rows of Reddit TL;DR.

Read from a ``datasets`` ``save_to_disk`` folder (``dataset_dict.json`` + one sub-folder of Arrow files
per split, as in the torchrl test fixture), from the hub's parquet files (``data/train-*.parquet``) or
from JSON lines. Split names (train / valid1 / valid2 / test) are kept in ``orig_split``. Source ``tldr``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from balpm.data.rows import BadRows, norm_split
from balpm.data.tabular import COLUMNS, load_prompt_table
from balpm.errors import DataError

SOURCE = "tldr"
_DATA_SUFFIXES = (".arrow", ".parquet", ".jsonl", ".json", ".gz", ".csv")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it ({' '.join(str(exc).split())}); is the save_to_disk folder complete?") from None


def dataset_files(folder: Path) -> list[Path]:
    """Arrow files of one ``save_to_disk`` Dataset folder (from ``state.json``, else ``*.arrow``)."""
    state = folder / "state.json"
    if state.is_file():
        names = [f["filename"] for f in _read_json(state).get("_data_files", []) if "filename" in f]
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
        splits = _read_json(path / "dataset_dict.json").get("splits") or sorted(p.name for p in path.iterdir() if p.is_dir())
        for split in splits:
            for f in dataset_files(path / split):
                frames.append(load_prompt_table(f, bad, columns, source, default_split=norm_split(split)))
    elif (path / "state.json").is_file():
        for f in dataset_files(path):
            frames.append(load_prompt_table(f, bad, columns, source, default_split=norm_split(path.name)))
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _DATA_SUFFIXES and not p.name.startswith("."))
        files = [p for p in files if p.name not in ("state.json", "dataset_info.json", "dataset_dict.json")]
        if not files:
            raise DataError(f"{path}: no data files (.arrow, .parquet, .jsonl) found")
        frames = [load_prompt_table(f, bad, columns, source) for f in files]
    else:
        frames = [load_prompt_table(path, bad, columns, source)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
