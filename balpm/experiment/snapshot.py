"""A run's inputs kept inside the runs folder, so a run can be repeated or varied from there alone.

:func:`balpm.experiment.runs.write_dataset` snapshots the preference table and the prompt features under
``root/_datasets/<data_hash>/``. This module adds the pair features the model trains on, once per
feature set::

    root/_datasets/<data_hash>/features-<feature_hash>/pairs.npy       float32 (M, 2, D), rows of pair_ids.json
    root/_datasets/<data_hash>/features-<feature_hash>/pair_ids.json   the M pair ids that have features
    root/_datasets/<data_hash>/features-<feature_hash>/features.json   {"hash", "pairs", "dim"} (written last)

(M is the table's length, or less when the run featurized only the rows it reads.)

and :func:`load_inputs` rebuilds ``(table, Features)`` from them (memory-mapped, no model, no data
files, no feature cache). This module only stores and reads; the dashboard's background jobs (ablation
toggles, the start form) run from a snapshot through the hidden command ``balpm job`` (:mod:`balpm.cli.job`),
so that they never re-featurize and never depend on the folder the dashboard was started in. Nothing here
is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import npy_files
from balpm.errors import BalpmError
from balpm.experiment.projection import snapshot_folder
from balpm.experiment.runs import atomic_path, atomic_write_json, safe_path

_CHUNK = 4096


def features_folder(root: str | Path, data_hash: str, feature_hash: str) -> Path:
    """``root/_datasets/<data_hash>/features-<feature_hash>``, refusing names that would leave the root."""

    fh = str(feature_hash)
    if not fh or not all(c.isalnum() for c in fh):
        raise BalpmError(f"feature hash {fh!r} is not a plain name")
    folder = snapshot_folder(root, data_hash)
    return safe_path(root, folder / f"features-{fh}")


def has_features(root: str | Path, data_hash: str | None, feature_hash: str | None) -> bool:
    """True when the snapshot holds the pair features of ``feature_hash`` (complete: features.json exists)."""
    if not data_hash or not feature_hash:
        return False
    try:
        return (features_folder(root, data_hash, feature_hash) / "features.json").is_file()
    except BalpmError:
        return False


def write_features(root: str | Path, data_hash: str, table: pd.DataFrame, features: Any,
                   pair_rows_T: np.ndarray | None = None) -> Path | None:
    """Store the pair features of ``table``'s rows (``features.pairs_N_2_D[pair_rows_T]``; rows marked -1,
    not featurized, are left out) beside the snapshot, once; written in chunks to a temp file and renamed
    (no full copy in memory). Returns the folder, or None when ``features`` has no hash."""
    fh = str(getattr(features, "hash", "") or "")
    if not fh:
        return None
    folder = features_folder(root, data_hash, fh)
    if (folder / "features.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    pairs = features.pairs_N_2_D
    rows = np.arange(len(table)) if pair_rows_T is None else np.asarray(pair_rows_T, dtype=np.int64)
    if len(rows) != len(table):
        raise ValueError("pair_rows_T must give one feature row per table row")
    have = rows >= 0
    ids = table["pair_id"].astype(str).to_numpy()[have].tolist()
    rows = rows[have]
    with atomic_path(folder / "pairs.npy") as tmp:  # written in chunks to the temp file, then renamed
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows),) + tuple(pairs.shape[1:]))
        for s in range(0, len(rows), _CHUNK):
            out[s:s + _CHUNK] = pairs[rows[s:s + _CHUNK]]
        out.flush()
        del out
    atomic_write_json(folder / "pair_ids.json", ids)
    atomic_write_json(folder / "features.json", {"hash": fh, "pairs": len(rows), "dim": int(pairs.shape[-1])})
    return folder


def load_inputs(root: str | Path, data_hash: str, feature_hash: str) -> tuple[pd.DataFrame, Any]:
    """``(table, Features)`` of a run from its snapshot alone (pair features memory-mapped, read-only)."""
    from balpm.features.featurize import Features  # lazy: torch (the dashboard imports this module for has_features)

    folder = snapshot_folder(root, data_hash)
    ffolder = features_folder(root, data_hash, feature_hash)
    if not (ffolder / "features.json").is_file():
        raise BalpmError(f"dataset snapshot {data_hash} holds no pair features {feature_hash} (made by an older "
                         "balpm); run it again with balpm run to store them")
    try:
        paths = {n: safe_path(folder, n) for n in ("table.parquet", "prompt_ids.json", "prompt_features.npy")}
        table = pd.read_parquet(paths["table.parquet"])
        prompt_ids = np.asarray([str(p) for p in json.loads(paths["prompt_ids.json"].read_text())], dtype=object)
        # each header's shape against its ids (and the file's size) before a byte is loaded or mapped
        prompts = npy_files.load(paths["prompt_features.npy"], f"prompt_features.npy of snapshot {data_hash}",
                                 rows=len(prompt_ids))
        info = json.loads(safe_path(ffolder, "features.json").read_text())
        pair_ids = json.loads(safe_path(ffolder, "pair_ids.json").read_text())
        if not isinstance(pair_ids, list):
            raise ValueError("pair_ids.json is not a list")
        pairs = npy_files.load(safe_path(ffolder, "pairs.npy"), f"pairs.npy of snapshot {data_hash}",
                               rows=len(pair_ids), ndim=(2, 3), mmap=True)
    except BalpmError:  # already one line (a refused .npy header)
        raise
    except (OSError, ValueError) as exc:
        raise BalpmError(f"dataset snapshot {data_hash} unreadable ({' '.join(str(exc).split())[:160]})") from None
    if pairs.shape[0] != len(pair_ids) or info.get("hash") != str(feature_hash):
        raise BalpmError(f"dataset snapshot {data_hash}: pair features {feature_hash} do not match their pair ids")
    feats = Features(prompt_ids=prompt_ids, prompts_P_D=prompts,
                     pair_ids=np.asarray([str(p) for p in pair_ids], dtype=object), pairs_N_2_D=pairs,
                     manifest={"source": "snapshot", "data_hash": str(data_hash)}, hash=str(feature_hash))
    return table, feats
