"""What a run folder is: its file and column names, its id, the hashes that name it and the paths
allowed inside a runs root (the layout is in :mod:`balpm.experiment.runs`)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from balpm.config import AcquisitionConfig, RunConfig
from balpm.engine.diagnostics import ROUND_DIAGNOSTIC_COLUMNS
from balpm.errors import BalpmError, ConfigError

DATASETS_DIR = "_datasets"
LOCKS_DIR = ".locks"  # root/.locks/<run_id>.lock: held by the one process writing that run
_CREATING = ".creating."  # a run folder under construction: root/.<run_id>.creating.<pid>, renamed when complete
STATES = ("running", "complete", "failed")
TRUTH_FILE = "truth.json"  # the table's known truth (Bayes-optimal test LL, ...), written at creation (balpm.experiment.loop.truth)
ROUND_COLUMNS: tuple[str, ...] = (
    "round", "labelled", "test_log_likelihood", "test_accuracy", "test_brier", "test_ece",
    "ood_log_likelihood", "ood_accuracy", "ood_brier", "ood_ece", "mean_uncertainty",
    "batch_unique_prompts", "cumulative_unique_prompts", "train_seconds", "eval_seconds",
    "select_seconds", "epochs", "valid_loss",
    "noisy_share",  # share of the labelled pairs in a planted noisy region (NaN: unknown); balpm.experiment.loop
) + ROUND_DIAGNOSTIC_COLUMNS  # U / beta*H spreads and beta_effective (balpm.engine.diagnostics)
#: the columns every reader of acquisitions.parquet sees (ids, score, u, then BAL-PM's, which every policy wrote
#: before policies declared their own); a writer writes the ids + its policy's ``acquisition_columns``
#: (balpm.acquisition.registry), and :meth:`Run.acquisitions` reindexes (a missing column is NaN)
ACQUISITION_COLUMNS: tuple[str, ...] = (
    "round", "step", "pool_index", "pair_id", "prompt_id", "score", "u", "log_dist", "count_term",
    "h", "beta_h", "ratio", "n", "radius",
)
POOL_COLUMNS: tuple[str, ...] = ("pool_index", "pair_id", "prompt_id", "initial")
POOL_SCORE_COLUMNS: tuple[str, ...] = (
    "pool_index", "pair_id", "prompt_id", "u", "radius", "n0", "log_dist", "count_term", "h", "score",
)


# ---- hashes and labels -----------------------------------------------------------------------
def table_hash(table: pd.DataFrame) -> str:
    """Content hash (16 hex) of a preference table's columns and rows, in row order."""
    h = hashlib.sha256()
    cols = list(table.columns)
    h.update(json.dumps(cols).encode())
    frame = table[cols].astype("string").fillna("<NA>")
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_hash(table: pd.DataFrame, prompt_ids: Iterable[str], prompts_P_D: np.ndarray) -> str:
    """Hash of a dataset snapshot: the table plus the prompt features the dashboard maps."""
    h = hashlib.sha256()
    h.update(table_hash(table).encode())
    h.update(json.dumps([str(p) for p in prompt_ids]).encode())
    arr = np.ascontiguousarray(prompts_P_D, dtype=np.float32)
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def policy_label(cfg: RunConfig | AcquisitionConfig) -> str:
    """``"balpm"`` or ``"balpm beta=0.1 estimator=kl"``: the policy plus its knobs that differ from the
    defaults of its knob class (and a non-default uncertainty where the policy's entry says so), in the
    entry's label order (:meth:`balpm.acquisition.registry.PolicyEntry.label_knobs`).
    """
    acq = cfg.acquisition if isinstance(cfg, RunConfig) else cfg
    default = AcquisitionConfig(policy=acq.policy)
    parts = [acq.policy]
    for name in acq.entry.label_knobs():
        value = getattr(acq, name)
        if value != getattr(default, name):
            parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def setting_hash(cfg: RunConfig) -> str:
    """Hash of everything but the policy, the seed and the name: runs comparable on one curve plot."""
    d = cfg.to_dict()
    d.pop("name", None)
    d.pop("acquisition", None)
    d["loop"].pop("seed", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def default_run_id(cfg: RunConfig) -> str:
    """``<policy>-s<seed>-<hash8>``, the run folder name unless the user gives one."""
    return f"{cfg.acquisition.policy}-s{cfg.loop.seed}-{cfg.hash()[:8]}"


def check_run_id(run_id: str) -> str:
    """A run id must be a plain folder name (letters, digits, ``-_.=+``), not starting with ``_`` or ``.``."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=+")
    if not run_id or run_id[0] in "._" or not set(run_id) <= ok or len(run_id) > 200:
        raise ConfigError(f"run id {run_id!r} is not a plain folder name; use letters, digits and -_.=+ only")
    return run_id


def check_root(root: str | Path, flag: str = "--runs-dir") -> Path:
    """The runs root as a Path, refused (one line, nothing written) when it or a parent is not a folder."""
    root = Path(root)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == root else f"is inside {str(probe)!r}, which is a file"
        raise ConfigError(f"{flag} {str(root)!r} {what}, not a folder; give a folder for the runs")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(root)!r}: {str(probe)!r} is not writable; give a folder you can write to")
    return root


# ---- path safety -----------------------------------------------------------------------------
def safe_path(root: str | Path, user_path: str | Path) -> Path:
    """Resolve ``user_path`` (relative to ``root``, or absolute) and refuse anything outside ``root``.

    ``..`` components, absolute paths elsewhere and symlinks that leave the root all raise a
    one-line :class:`BalpmError`. Returns the resolved path (which need not exist).
    """
    text = str(user_path)
    if "\x00" in text:
        raise BalpmError("path contains a NUL byte; give a plain path inside the runs folder")
    root_r = Path(root).resolve()
    p = Path(text).expanduser()
    candidate = p if p.is_absolute() else root_r / p
    resolved = candidate.resolve()
    if resolved != root_r and root_r not in resolved.parents:
        raise BalpmError(f"path {text!r} is outside the runs folder {str(root_r)!r}; pick a run inside it")
    return resolved


def _round_of(filename: str) -> int | None:
    if not filename.startswith("round="):
        return None
    num = filename[len("round="):].split(".", 1)[0]
    return int(num) if num.isdigit() else None
