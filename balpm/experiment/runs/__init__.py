"""The run directory: the only thing the dashboard reads, and the only place the loop writes.

Five parts: :mod:`~balpm.experiment.runs.folder` (file and column names, run ids, hashes, safe paths),
:mod:`~balpm.experiment.runs.writes` (atomic file writes), :mod:`~balpm.experiment.runs.lock` (one writer
per run), :mod:`~balpm.experiment.runs.writer` (creating and appending to a run) and
:mod:`~balpm.experiment.runs.reader` (listing and reading runs, never raising on a broken one). Their
public names are all here: ``from balpm.experiment import runs; runs.open_run(...)``.

Layout of one run, ``root/<run_id>/``::

    config.yaml                      resolved RunConfig + ``meta`` (version, data/feature hashes, run id)
    status.json                      {state, last_round, rounds, error, started, updated, pid, host}
    pool.parquet                     pool_index, pair_id, prompt_id, initial
    truth.json                       only for a table with known truth (true_prob): the Bayes-optimal test/OOD
                                     log-likelihood and accuracy, the pool's noisy share (balpm.experiment.loop.truth)
    rounds.parquet                   one row per completed round (see ``ROUND_COLUMNS``)
    acquisitions.parquet             one row per pick (see ``ACQUISITION_COLUMNS``)
    pool_scores/round=<r>.parquet    every remaining pool item's scores at the start of round r's selection
    pool_scores/round=<r>.increments.parquet   (step, pool_index) whose count n(x) each pick raised

and the shared dataset snapshot ``root/_datasets/<data_hash>/`` (``table.parquet``,
``prompt_features.npy``, ``prompt_ids.json``) so that the dashboard never reads outside the runs root.

Writes are atomic (temp file in the same folder, then ``os.replace``) and append-only per round: the
commit point of a round is ``status.json``; readers only show rows of rounds ``<= last_round``, so a
run killed half-way through a round is read as its last complete round. Nothing here uses pickle.

A run folder is created atomically (:meth:`RunWriter.create` builds config.yaml, status.json and
pool.parquet under a hidden name, then renames it), so a kill during creation never leaves a folder
that looks like a run. One process at a time writes a run: :func:`lock_run` is an OS-level lock on
``root/.locks/<run_id>.lock`` held for the run's life; a second writer gets a one-line
:class:`~balpm.errors.RunLockedError`. Files get the usual mode of new files under the umask.
"""
from __future__ import annotations

from balpm.experiment.runs.folder import (
    ACQUISITION_COLUMNS,
    DATASETS_DIR,
    LOCKS_DIR,
    POOL_COLUMNS,
    POOL_SCORE_COLUMNS,
    ROUND_COLUMNS,
    STATES,
    TRUTH_FILE,
    check_root,
    check_run_id,
    dataset_hash,
    default_run_id,
    policy_label,
    safe_path,
    setting_hash,
    table_hash,
)
from balpm.experiment.runs.lock import (
    RunLock,
    lock_run,
)
from balpm.experiment.runs.reader import (
    Run,
    RunInfo,
    find_run,
    inspect_run,
    list_runs,
    open_run,
    refused,
)
from balpm.experiment.runs.writer import (
    RunWriter,
    write_dataset,
)
from balpm.experiment.runs.writes import (
    TMP_SUFFIX,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npy,
    atomic_write_parquet,
    atomic_write_text,
    file_mode,
)

__all__ = [
    "ACQUISITION_COLUMNS",
    "DATASETS_DIR",
    "LOCKS_DIR",
    "POOL_COLUMNS",
    "POOL_SCORE_COLUMNS",
    "ROUND_COLUMNS",
    "Run",
    "RunInfo",
    "RunLock",
    "RunWriter",
    "STATES",
    "TMP_SUFFIX",
    "TRUTH_FILE",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npy",
    "atomic_write_parquet",
    "atomic_write_text",
    "check_root",
    "check_run_id",
    "dataset_hash",
    "default_run_id",
    "file_mode",
    "find_run",
    "inspect_run",
    "list_runs",
    "lock_run",
    "open_run",
    "policy_label",
    "refused",
    "safe_path",
    "setting_hash",
    "table_hash",
    "write_dataset",
]
