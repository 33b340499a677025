"""The simulated active-learning loop (docs/method.md section 1): train -> evaluate -> select -> record.

::

    pool     = shuffle(train split, seed)[:pool_size];  labelled = first `initial` pool items
    for round t = 0 .. rounds-1:
        train a fresh K-member ensemble on the labelled pairs (valid split for early stopping)
        evaluate on test and OOD (log-likelihood, accuracy, Brier, ECE); record a rounds row
        unless last: score the remaining pool, select B items, move them to labelled; record picks

Every random choice comes from ``SeedSequence(cfg.loop.seed, spawn_key=(purpose, round))``: the pool
shuffle, each round's model seed and each round's selection generator depend only on the seed and
the round, never on history. A killed run therefore resumes from its last complete round (labelled
set rebuilt from acquisitions.parquet) and ends bit-identical to an uninterrupted one. The model
seeds do not depend on the policy, so every policy on one seed starts from the same initial set and
the same round-0 model. A synthetic world is itself drawn from the run seed (:func:`data_config`).

Every check on the inputs (config, sizes, feature/table agreement, NaN) happens before the run
directory is created.

Known truth (issue 13): for a table with ``true_prob`` (the hidden probability that the chosen answer
wins: the synthetic worlds, planted tables) a new run writes ``truth.json`` (:func:`truth`: the exact
Bayes-optimal test / OOD log-likelihood and accuracy, the pool's noisy share). For a table whose rows
know whether they lie in a planted noisy region (:func:`noisy_rows`: a ``noisy`` column; the teaching
world's cluster 0), every rounds row records ``noisy_share``: the share of noisy rows among the
``labelled`` pairs that trained that round's model (the initial set and every batch acquired before
the round; the last round's value covers the whole final labelled set).
"""
from __future__ import annotations

import dataclasses
import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import balpm
from balpm.acquisition import make_policy
from balpm.acquisition.base import PoolState, RunPool
from balpm.config import RunConfig
from balpm.data.splits import check_run_sizes
from balpm.data.synthetic import world_seed
from balpm.engine import diagnostics
from balpm.engine.uncertainty import bald
from balpm.engine.uncertainty import score as uncertainty_score
from balpm.errors import ConfigError, FeatureError
from balpm.evidence.metrics import PREFERENCE_METRICS, preference_metrics
from balpm.experiment import runs, snapshot

# purposes of the seed streams (spawn_key[0]); never renumber: it would change every run
_POOL, _MODEL, _SELECT = 0, 2, 3
_HELD = threading.local()  # run locks held by the run() calls of this thread


def stream(seed: int, purpose: int, index: int = 0) -> np.random.SeedSequence:
    """The seed sequence of one purpose (pool, model, selection) and one round of a run."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(purpose), int(index)))


def model_seed(seed: int, rnd: int) -> int:
    """The ensemble seed of round ``rnd`` (a 31-bit int derived from the run seed and the round)."""
    return int(stream(seed, _MODEL, rnd).generate_state(1)[0] & 0x7FFFFFFF)


def selection_rng(seed: int, rnd: int) -> np.random.Generator:
    """The generator handed to the policy in round ``rnd``."""
    return np.random.default_rng(stream(seed, _SELECT, rnd))


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads, checked: the table, the features and the row indices of each split.

    ``pair_rows_T``: for each table row its row in ``features.pairs_N_2_D``; ``pool_rows_N``: table rows
    of the pool in pool order (the first ``initial`` are the initial labelled set).
    """

    table: pd.DataFrame
    features: Any
    pair_rows_T: np.ndarray
    pool_rows_N: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    ood_rows: np.ndarray
    pool_prompts_N_D: np.ndarray

    def pairs(self, table_rows: np.ndarray) -> np.ndarray:
        """Pair features ``(n, 2, D)`` of the given table rows."""
        return np.asarray(self.features.pairs_N_2_D[self.pair_rows_T[table_rows]])


# ---- loading and validation (no writing) -------------------------------------------------------
def load_inputs(cfg: RunConfig, table: pd.DataFrame | None = None, features: Any = None,
                *, progress: bool = True, only_used: bool = False) -> tuple[pd.DataFrame, Any]:
    """The table (``load_for_config``) and features (``featurize``, cached) of ``cfg``, unless given.

    Synthetic worlds (empty ``cfg.data.paths``) come with their own features. ``only_used=True``
    featurizes only the rows this config's run reads (see :func:`used_rows`: with ``loop.pool_size`` the
    train rows outside its pool are skipped); the table is returned whole either way.
    """
    if table is None:
        from balpm.data import load_for_config

        result = load_for_config(data_config(cfg))
        table = result.table
        if features is None:
            features = getattr(result, "features", None)
    if features is None:
        if _is_synthetic(table):
            features = _synthetic_features(cfg, table)
        else:
            from balpm.features import featurize

            rows = used_rows(cfg, table) if only_used else None
            if rows is not None and len(rows) < len(table):
                features = featurize(table.iloc[rows].reset_index(drop=True), cfg.features, progress=progress)
            else:
                features = featurize(table, cfg.features, progress=progress)
    return table, features


def pool_table_rows(cfg: RunConfig, table: pd.DataFrame) -> np.ndarray:
    """Table rows of the run's pool in pool order: ``shuffle(train rows, loop.seed)[:pool_size]``."""
    train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
    pool_size = cfg.loop.pool_size or len(train_rows)
    perm = np.random.default_rng(stream(cfg.loop.seed, _POOL)).permutation(len(train_rows))
    return train_rows[perm[:pool_size]]


def used_rows(cfg: RunConfig, table: pd.DataFrame) -> np.ndarray:
    """Sorted table rows a run of ``cfg`` reads: its pool, and every valid (when used), test and OOD row."""
    split = table["split"].to_numpy()
    held_out = ["test", "ood"] + (["valid"] if cfg.model.validation == "valid" else [])
    return np.union1d(pool_table_rows(cfg, table), np.flatnonzero(np.isin(split, held_out))).astype(np.int64)


def _is_synthetic(table: pd.DataFrame) -> bool:
    return "source" in table.columns and len(table) > 0 and bool((table["source"] == "synthetic").all())


def data_config(cfg: RunConfig) -> Any:
    """The data config a run loads. A synthetic world (no data paths) is drawn from the RUN seed:
    ``data.split_seed`` becomes :func:`balpm.data.synthetic.world_seed` of ``(loop.seed, data.split_seed)``,
    so 8 seeds are 8 world draws (same geometry) and every policy on one seed sees the same world."""
    d = cfg.data
    if d.paths or d.ood_paths:
        return d
    return dataclasses.replace(d, split_seed=world_seed(cfg.loop.seed, d.split_seed))


def _synthetic_features(cfg: RunConfig, table: pd.DataFrame) -> Any:
    """A synthetic world's own features (the world is a pure function of the data config and run seed)."""
    from balpm.data import load_for_config

    features = load_for_config(data_config(cfg)).features
    if features is None:
        raise FeatureError("this synthetic table has no features; pass features= or featurize it")
    return features


def noisy_rows(table: pd.DataFrame, features: Any = None) -> np.ndarray | None:
    """Bool per table row: the row's prompt lies in a planted noisy region. A ``noisy`` column when the
    table has one; the teaching world's chit-chat (``cluster == 0``, features made by ``synthetic-teaching``);
    else None (unknown)."""
    if "noisy" in table.columns:
        return table["noisy"].to_numpy().astype(bool)
    manifest = getattr(features, "manifest", None) or {}
    if "cluster" in table.columns and manifest.get("model") == "synthetic-teaching":
        return table["cluster"].to_numpy() == 0
    return None


def truth(inputs: Inputs) -> dict[str, Any] | None:
    """What the known truth of a table says about a run's inputs (None without ``true_prob``):
    ``test_log_likelihood`` / ``ood_log_likelihood``: the mean over the test / OOD rows of log ``true_prob``,
    the realised log-likelihood of the Bayes-optimal model (the exact ceiling; OOD null without OOD rows);
    ``test_accuracy`` / ``ood_accuracy``: the mean of 1[true_prob > 0.5] (0.5 at a tie); ``noisy_share_pool``:
    the share of pool rows in a noisy region (null when unknown)."""
    t = inputs.table
    if "true_prob" not in t.columns:
        return None
    p_T = t["true_prob"].to_numpy(dtype=np.float64)

    def ll(rows: np.ndarray) -> float | None:
        return float(np.mean(np.log(p_T[rows]))) if len(rows) else None

    def acc(rows: np.ndarray) -> float | None:
        return float(np.mean(np.where(p_T[rows] > 0.5, 1.0, np.where(p_T[rows] == 0.5, 0.5, 0.0)))) if len(rows) else None

    noisy = noisy_rows(t, inputs.features)
    return {"test_log_likelihood": ll(inputs.test_rows), "ood_log_likelihood": ll(inputs.ood_rows),
            "test_accuracy": acc(inputs.test_rows), "ood_accuracy": acc(inputs.ood_rows),
            "noisy_share_pool": float(np.mean(noisy[inputs.pool_rows_N])) if noisy is not None else None,
            "test_rows": int(len(inputs.test_rows)), "ood_rows": int(len(inputs.ood_rows))}


def _check_finite(name: str, array: np.ndarray, chunk: int = 4096) -> None:
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start:start + chunk])
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))[0, 0])
            raise FeatureError(f"{name} row {bad} contains NaN or inf; re-run featurize (delete its cache) or drop that row")


def prepare(cfg: RunConfig, table: pd.DataFrame, features: Any) -> Inputs:
    """Check the config, the table, the features and the sizes; build the pool. Raises one-line errors."""
    cfg.validate()
    lp, acq = cfg.loop, cfg.acquisition
    for col in ("pair_id", "prompt_id", "split"):
        if col not in table.columns:
            raise ConfigError(f"preference table has no {col!r} column; load it with balpm.data.load_table")
    # own checks rather than Features.validate: prompt and pair features may differ in dimension
    # (the teaching world maps 2-D prompts, the preference model sees 16-D pairs)
    pair_ids = np.asarray(features.pair_ids).astype(str)
    table_ids = table["pair_id"].to_numpy().astype(str)
    if len(pair_ids) == len(table_ids) and (pair_ids == table_ids).all():
        pair_rows_T = np.arange(len(table_ids))
    else:
        # features may cover only the rows this run reads (load_inputs(only_used=True)): -1 marks the others
        where = {p: i for i, p in enumerate(pair_ids)}
        pair_rows_T = np.array([where.get(p, -1) for p in table_ids], dtype=np.int64)
        needed_T = np.zeros(len(table_ids), dtype=bool)
        if "split" in table.columns:
            needed_T[used_rows(cfg, table)] = True
        missing = table_ids[needed_T & (pair_rows_T < 0)] if "split" in table.columns else table_ids[pair_rows_T < 0]
        if len(missing):
            raise FeatureError(
                f"features do not match the table: {len(missing)} pair(s) without features (e.g. {missing[0]!r}); "
                "re-run featurize on this table")
    pairs = features.pairs_N_2_D
    if pairs.ndim != 3 or pairs.shape[1] != 2 or pairs.shape[0] != len(pair_ids):
        raise FeatureError(f"pair features have shape {pairs.shape}; expected ({len(pair_ids)}, 2, D)")
    prompts = np.asarray(features.prompts_P_D)
    if prompts.ndim != 2 or prompts.shape[0] != len(features.prompt_ids):
        raise FeatureError(f"prompt features have shape {prompts.shape}; expected ({len(features.prompt_ids)}, D)")
    prompt_known = set(np.asarray(features.prompt_ids).astype(str))
    unknown = set(table["prompt_id"].to_numpy()[pair_rows_T >= 0].astype(str)) - prompt_known
    if unknown:
        raise FeatureError(f"features do not match the table: prompt {sorted(unknown)[0]!r} has no prompt features; re-run featurize")
    _check_finite("pair features", pairs)
    _check_finite("prompt features", features.prompts_P_D)

    split = table["split"].to_numpy()
    test_rows = np.flatnonzero(split == "test")
    check_run_sizes(split, lp, acq)  # the same checks balpm run makes before featurizing

    pool_rows_N = pool_table_rows(cfg, table)
    valid_rows = np.flatnonzero(split == "valid") if cfg.model.validation == "valid" else np.array([], dtype=np.int64)
    ood_rows = np.flatnonzero(split == "ood")
    pool_prompts = np.asarray(features.prompt_rows(table["prompt_id"].to_numpy()[pool_rows_N].astype(str)),
                              dtype=np.float32)
    return Inputs(table, features, pair_rows_T, pool_rows_N, valid_rows, test_rows, ood_rows, pool_prompts)


# ---- the run ------------------------------------------------------------------------------------
def _releases_run_locks(fn: Any) -> Any:
    """Decorator: every run lock taken by ``_hold_lock`` during the call is released when it returns or raises."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = _HELD.__dict__.setdefault("locks", [])
        mark = len(stack)
        try:
            return fn(*args, **kwargs)
        finally:
            while len(stack) > mark:
                stack.pop().release()
    return wrapper


def _hold_lock(root: Path, run_id: str) -> None:
    """Take the run's OS-level lock (one writer per run id) until the enclosing ``run`` call ends."""
    lock = runs.lock_run(root, run_id).acquire()
    _HELD.__dict__.setdefault("locks", []).append(lock)
    runs.RunWriter(root, run_id).remove_stale_temp()  # temp files / half-created folders of killed writers


@_releases_run_locks
def run(cfg: RunConfig, root: str | Path, *, resume: bool = False, table: pd.DataFrame | None = None,
        features: Any = None, progress: bool = True, run_id: str | None = None,
        only_used: bool = True, after_round: Callable[[str, int], None] | None = None) -> Path:
    """Run (or resume) one simulated active-learning run; return its directory ``root/<run_id>``.

    ``resume=True`` continues a killed or failed run from its last complete round (a run that does not
    exist yet is started); a different config under the same run id is refused. Without ``resume``
    an existing complete run with the same config is returned as is, any other existing run is an error.
    ``only_used``: a new run featurizes only the rows it reads (:func:`used_rows`); False featurizes every
    row (a sweep's workers: the prefetch cached them once for all runs).
    ``after_round(run_id, round)``, when given, is called right after each round is committed to the run
    folder (progress reporting; tests kill the process there to check that a resume continues bit for bit).

    Every check (config, runs root, inputs) runs before anything is written. The run id's OS-level
    lock (:func:`balpm.experiment.runs.lock_run`) is held from the first write to the return, so a second writer
    of the same run id fails with a one-line :class:`~balpm.errors.RunLockedError`; a new run folder
    appears complete (config.yaml, status.json, pool.parquet) or not at all.
    """
    cfg.validate()
    root = runs.check_root(root)
    run_id = runs.check_run_id(run_id or runs.default_run_id(cfg))
    run_dir = root / run_id
    existing = _existing_state(run_dir, cfg, resume)
    if existing == "complete":
        _say(progress, f"run {run_id} is already complete: {run_dir}")
        return run_dir

    # a new run featurizes only the rows it reads (only_used=False: every row, as a sweep's prefetch cached
    # them for all its runs); a resumed one what it was made with (meta feature_rows)
    only_used = only_used if existing is None else _feature_rows(root, run_id) == "used"
    table, features = load_inputs(cfg, table, features, progress=progress, only_used=only_used)
    inputs = prepare(cfg, table, features)
    t_hash = runs.table_hash(inputs.table)
    f_hash = str(getattr(features, "hash", ""))
    policy = None if is_full(cfg) else _make_policy(cfg)  # "full" (the ceiling) selects nothing
    n_initial = rounds_and_initial(cfg, len(inputs.pool_rows_N))[1]

    # ---- everything checked: lock the run id (a second writer fails here), look again, write ----
    _hold_lock(root, run_id)
    existing = _existing_state(run_dir, cfg, resume)
    if existing == "complete":
        _say(progress, f"run {run_id} is already complete: {run_dir}")
        return run_dir
    if existing is None:
        data_hash = runs.write_dataset(root, inputs.table, np.asarray(features.prompt_ids).astype(str),
                                       features.prompts_P_D)
        meta = {
            "version": balpm.__version__, "data_hash": data_hash, "table_hash": t_hash, "feature_hash": f_hash,
            "feature_dim": int(features.pairs_N_2_D.shape[-1]), "pool_size": len(inputs.pool_rows_N),
            "feature_rows": "used" if (inputs.pair_rows_T < 0).any() else "all",
            "splits": {s: int(n) for s, n in inputs.table["split"].value_counts().items()},
            "sources": sorted(map(str, inputs.table["source"].unique())) if "source" in inputs.table else [],
        }
        writer = runs.RunWriter.create(root, run_id, cfg, meta, pool=_pool_frame(inputs, n_initial), truth=truth(inputs))
        if is_full(cfg):
            writer.write_status("running", last_round=-1, rounds=1)
        start, labelled = 0, list(range(n_initial))
        acquired_prompts: set[str] = set()
    else:
        writer = runs.RunWriter(root, run_id)
        old = runs.open_run(root, run_id)
        meta = old.meta
        if meta.get("table_hash") != t_hash or meta.get("feature_hash") != f_hash:
            raise ConfigError(f"run {run_id} was made on other data or features (table {meta.get('table_hash')}, "
                              f"features {meta.get('feature_hash')}); resume it on the same inputs or start a new run")
        expected = _pool_frame(inputs, n_initial)
        if not old.pool()[["pair_id", "initial"]].equals(expected[["pair_id", "initial"]]):
            raise ConfigError(f"run {run_id}: pool.parquet does not match the pool this config builds; start a new run")
        last = int(writer.read_status()["last_round"])
        writer.truncate(last)
        acq = old.acquisitions().sort_values(["round", "step"])
        labelled = list(range(n_initial)) + acq["pool_index"].astype(int).tolist()
        acquired_prompts = set(acq["prompt_id"].astype(str))
        start = last + 1
        writer.resume_running()
        _say(progress, f"resuming run {run_id} at round {start} ({len(labelled)} labelled)")
    if meta.get("data_hash") and (inputs.pair_rows_T >= 0).all():  # pair features beside the snapshot, once: the dashboard's jobs run from it
        snapshot.write_features(root, meta["data_hash"], inputs.table, features, inputs.pair_rows_T)

    try:
        _loop(cfg, inputs, policy, writer, start, labelled, acquired_prompts, progress, after_round)
        writer.finish()
    except BaseException as exc:
        writer.fail(exc)
        raise
    return run_dir


def _feature_rows(root: Path, run_id: str) -> str:
    """``used`` when an existing run was made from features of only the rows it reads, else ``all``."""
    try:
        return str(runs.open_run(root, run_id).meta.get("feature_rows", "all"))
    except Exception:  # noqa: BLE001 - an unreadable run is reported by the resume checks
        return "all"


def is_full(cfg: RunConfig) -> bool:
    """True for the ceiling run ``full``: the same model trained once on the whole pool."""
    return cfg.acquisition.policy == "full"


def rounds_and_initial(cfg: RunConfig, n_pool: int) -> tuple[int, int]:
    """``(rounds, initial labelled count)`` the loop runs: ``(1, n_pool)`` for ``full``, else the config's."""
    return (1, int(n_pool)) if is_full(cfg) else (int(cfg.loop.rounds), int(cfg.loop.initial))


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)


def _existing_state(run_dir: Path, cfg: RunConfig, resume: bool) -> str | None:
    """None (new run), 'complete' (nothing to do) or 'resume'. Raises for conflicts; reads only."""
    if not run_dir.exists():
        return None
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "status.json").is_file():
        if resume and not any(run_dir.iterdir()):
            return None
        raise ConfigError(f"{run_dir} exists but is not a complete run folder; delete it or pick another --run-id")
    info = runs.inspect_run(run_dir)
    if info.state == "broken":
        raise ConfigError(f"run folder {run_dir} is broken ({info.reason}); delete it or pick another --run-id")
    if info.config_hash != cfg.hash():
        raise ConfigError(f"run {run_dir.name} has config hash {info.config_hash}, this config is {cfg.hash()}; "
                          "use the run's own config.yaml to resume, or another --run-id")
    if info.state == "complete":
        return "complete"
    if not resume:
        raise ConfigError(f"run {run_dir.name} already exists ({info.state}, round {info.last_round} done); "
                          "pass --resume to continue it or --run-id for a new run")
    return "resume"


def _make_policy(cfg: RunConfig) -> Any:
    return make_policy(cfg.acquisition)


def _pool_frame(inputs: Inputs, initial: int) -> pd.DataFrame:
    t = inputs.table
    n = len(inputs.pool_rows_N)
    return pd.DataFrame({
        "pool_index": np.arange(n, dtype=np.int64),
        "pair_id": t["pair_id"].to_numpy()[inputs.pool_rows_N].astype(str),
        "prompt_id": t["prompt_id"].to_numpy()[inputs.pool_rows_N].astype(str),
        "initial": np.arange(n) < initial,
    })


def predict(model: Any, inputs: Inputs, rows: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Member probabilities ``probs_N_K`` for table rows, in chunks (never a full N x 2 x D copy)."""
    parts = [model.predict_probs(inputs.pairs(rows[i:i + chunk])) for i in range(0, len(rows), chunk)]
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0))


def _evaluate(model: Any, inputs: Inputs, rows: np.ndarray, prefix: str) -> dict[str, float]:
    """The quality metrics (:data:`balpm.evidence.metrics.PREFERENCE_METRICS`) of ``rows`` as ``<prefix>_<metric>``."""
    if len(rows) == 0:
        return {f"{prefix}_{k}": float("nan") for k in PREFERENCE_METRICS}
    values = preference_metrics(predict(model, inputs, rows))
    return {f"{prefix}_{k}": float(values[k]) for k in PREFERENCE_METRICS}


def _loop(cfg: RunConfig, inputs: Inputs, policy: Any, writer: runs.RunWriter, start: int,
          labelled: list[int], acquired_prompts: set[str], progress: bool,
          after_round: Callable[[str, int], None] | None = None) -> None:
    # lazy: torch (balpm run --help / config checks must not import it)
    from balpm.engine.model import PreferenceEnsemble

    lp = cfg.loop
    n_pool = len(inputs.pool_rows_N)
    n_rounds = rounds_and_initial(cfg, n_pool)[0]
    pool_pair_ids = inputs.table["pair_id"].to_numpy()[inputs.pool_rows_N].astype(str)
    pool_prompt_ids = inputs.table["prompt_id"].to_numpy()[inputs.pool_rows_N].astype(str)
    in_labelled = np.zeros(n_pool, dtype=bool)
    in_labelled[labelled] = True
    valid = inputs.pairs(inputs.valid_rows) if len(inputs.valid_rows) else None
    dim = int(inputs.features.pairs_N_2_D.shape[-1])
    noisy_T = noisy_rows(inputs.table, inputs.features)
    noisy_pool = noisy_T[inputs.pool_rows_N] if noisy_T is not None else None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_rounds, initial=start, desc=writer.run_id, unit="round", leave=False)
    for t in range(start, n_rounds):
        t0 = time.perf_counter()
        model = PreferenceEnsemble(cfg.model, dim, seed=model_seed(lp.seed, t))
        fit = model.fit(inputs.pairs(inputs.pool_rows_N[np.asarray(labelled)]), valid)
        t1 = time.perf_counter()
        row: dict[str, Any] = {"round": t, "labelled": len(labelled)}
        if noisy_pool is not None:  # the labelled set this round's model was trained on
            row["noisy_share"] = float(np.mean(noisy_pool[np.asarray(labelled)]))
        row.update(_evaluate(model, inputs, inputs.test_rows, "test"))
        row.update(_evaluate(model, inputs, inputs.ood_rows, "ood"))
        t2 = time.perf_counter()
        row.update(train_seconds=t1 - t0, eval_seconds=t2 - t1, epochs=int(fit.epochs),
                   valid_loss=float(fit.valid_loss), select_seconds=float("nan"), mean_uncertainty=float("nan"),
                   batch_unique_prompts=0, cumulative_unique_prompts=len(acquired_prompts))
        row.update(diagnostics.empty_diagnostics())  # U / beta*H spreads: NaN in the last round (no selection)
        acq_df = scores_df = inc_df = None
        if t < n_rounds - 1:
            remaining = np.flatnonzero(~in_labelled)
            probs_N_K = predict(model, inputs, inputs.pool_rows_N[remaining])
            t3 = time.perf_counter()
            picked = select_round(cfg, policy, inputs, probs_N_K, remaining, labelled, t, initial=lp.initial,
                                  pool_pair_ids=pool_pair_ids, pool_prompt_ids=pool_prompt_ids, model=model)
            row.update(picked.row)
            row["select_seconds"] += t3 - t2  # predicting the pool counts as part of the selection
            acq_df, scores_df, inc_df = picked.acquisitions, picked.pool_scores, picked.increments
            acquired_prompts |= picked.batch_prompts
            row["cumulative_unique_prompts"] = len(acquired_prompts)
            labelled.extend(int(i) for i in picked.picked)
            in_labelled[picked.picked] = True
        writer.commit_round(t, row, acq_df, scores_df, inc_df)
        if after_round is not None:
            after_round(writer.run_id, t)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(test_ll=f"{row['test_log_likelihood']:.4f}", labelled=row["labelled"])
    if bar is not None:
        bar.close()


@dataclass(frozen=True)
class RoundSelection:
    """What :func:`select_round` chose: ``picked`` (pool indices in pick order), the round's acquisitions
    table, its pool scores and increments (None unless ``loop.save_pool_scores``; increments only for
    policies that record them), the prompt ids of the batch, and ``row``: the rounds-row fields of the
    selection (``select_seconds`` of the policy alone, ``mean_uncertainty``, ``batch_unique_prompts`` and
    the policy's diagnostics)."""

    picked: np.ndarray
    acquisitions: pd.DataFrame
    pool_scores: pd.DataFrame | None
    increments: pd.DataFrame | None
    batch_prompts: set[str]
    row: dict[str, Any]


def select_round(cfg: RunConfig, policy: Any, inputs: Inputs, probs_N_K: np.ndarray, remaining: np.ndarray,
                 labelled: list[int], rnd: int, *, initial: int | None = None, pool_pair_ids: np.ndarray | None = None,
                 pool_prompt_ids: np.ndarray | None = None, model: Any = None) -> RoundSelection:
    """One selection round on given labelled and pool rows: ``policy`` (``balpm.acquisition.make_policy``)
    picks ``cfg.loop.batch_size`` of the ``remaining`` pool indices (those not labelled, in pool order; their
    member probabilities ``probs_N_K``) with the round's generator :func:`selection_rng` ``(seed, rnd)``.

    ``labelled``: pool indices of the labelled set, the first ``initial`` of them the initial set (BAL-PM's
    run context; None: no run context). ``pool_pair_ids`` / ``pool_prompt_ids``: the pool's ids (computed
    from ``inputs`` when not given). ``model``: the round's ensemble, handed to the policy through the run
    context with the test rows (EPIG with ``targets=test``); None where there is none. The loop (:func:`run`)
    and ``balpm select`` / ``balpm label --next-round`` (:mod:`balpm.next_batch`) both select through this."""

    entry = cfg.acquisition.entry
    batch = int(cfg.loop.batch_size)
    if pool_pair_ids is None:
        pool_pair_ids = inputs.table["pair_id"].to_numpy()[inputs.pool_rows_N].astype(str)
    if pool_prompt_ids is None:
        pool_prompt_ids = inputs.table["prompt_id"].to_numpy()[inputs.pool_rows_N].astype(str)
    t0 = time.perf_counter()
    state = _pool_state(probs_N_K, inputs, remaining, labelled, initial, model)
    sel = policy.select(state, batch, selection_rng(cfg.loop.seed, rnd))
    picks = _check_selection(sel, len(remaining), batch)
    picked_pool = remaining[picks]
    t1 = time.perf_counter()
    u_N = uncertainty_score(probs_N_K, cfg.acquisition.uncertainty)
    row: dict[str, Any] = dict(diagnostics.policy_diagnostics(policy, state, u_N, entry))
    acq_df = _acquisitions(rnd, sel, picks, picked_pool, pool_pair_ids, pool_prompt_ids, u_N, entry.acquisition_columns)
    scores_df = inc_df = None
    if cfg.loop.save_pool_scores:
        table = policy.pool_table(state) if entry.has("pool_table") else None
        scores_df = _pool_scores(table, entry.pool_score_columns, remaining, pool_pair_ids, pool_prompt_ids,
                                 probs_N_K, u_N)
        if sel.increments is not None:
            inc = sel.increments
            inc_df = pd.DataFrame({"step": inc["step"].to_numpy(dtype=np.int64),
                                   "pool_index": remaining[inc["index"].to_numpy(dtype=np.int64)]})
    batch_prompts = set(pool_prompt_ids[picked_pool])
    row.update(select_seconds=t1 - t0, mean_uncertainty=float(np.mean(bald(probs_N_K))),
               batch_unique_prompts=len(batch_prompts))
    return RoundSelection(picked_pool, acq_df, scores_df, inc_df, batch_prompts, row)


def _pool_state(probs_N_K: np.ndarray, inputs: Inputs, remaining: np.ndarray, labelled: list[int],
                initial: int | None = None, model: Any = None) -> Any:
    """The policy's view of the round; with ``initial``, its run context (:class:`RunPool`), which carries
    the test rows and, given ``model``, the round's ensemble (read only by a policy that asks, e.g. EPIG's
    test targets)."""
    lab = np.asarray(labelled, dtype=np.int64)
    run = None
    if initial is not None:  # the run context lets BAL-PM keep its radii across rounds (incremental)
        start = np.setdiff1d(np.arange(len(inputs.pool_prompts_N_D)), lab[:initial])
        run = RunPool(inputs.pool_prompts_N_D, start, remaining, lab, pairs_F_2_D=inputs.features.pairs_N_2_D,
                      pair_rows_P=inputs.pair_rows_T[inputs.pool_rows_N],
                      test_rows_F=inputs.pair_rows_T[inputs.test_rows],
                      member_probs=model.predict_probs if model is not None else None)
    return PoolState(probs_N_K=probs_N_K, pool_prompts_N_D=inputs.pool_prompts_N_D[remaining],
                     labelled_prompts_L_D=inputs.pool_prompts_N_D[lab], run=run)


def _check_selection(sel: Any, n: int, batch: int) -> np.ndarray:
    picks = np.asarray(sel.indices, dtype=np.int64)
    if picks.shape != (batch,) or len(np.unique(picks)) != batch or picks.min() < 0 or picks.max() >= n:
        raise RuntimeError(f"policy returned an invalid selection (shape {picks.shape}, pool {n}, batch {batch})")
    return picks


def _acquisitions(t: int, sel: Any, picks: np.ndarray, picked_pool: np.ndarray, pair_ids: np.ndarray,
                  prompt_ids: np.ndarray, u_N: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per pick: the ids and the policy's declared step ``columns`` (its registry entry; a column
    its steps lack is NaN; ``u`` falls back to the configured uncertainty)."""
    steps = sel.steps.sort_values("step").reset_index(drop=True) if sel.steps is not None else pd.DataFrame()
    df = pd.DataFrame({
        "round": np.full(len(picks), t, dtype=np.int64),
        "step": np.arange(len(picks), dtype=np.int64),
        "pool_index": picked_pool.astype(np.int64),
        "pair_id": pair_ids[picked_pool],
        "prompt_id": prompt_ids[picked_pool],
    })
    for col in columns:
        if col in steps.columns and len(steps) == len(picks):
            df[col] = steps[col].to_numpy(dtype=np.float64)
        else:
            df[col] = np.nan
    if df["u"].isna().all():
        df["u"] = u_N[picks].astype(np.float64)
    return df


def _pool_scores(table: pd.DataFrame | None, columns: tuple[str, ...], remaining: np.ndarray, pair_ids: np.ndarray,
                 prompt_ids: np.ndarray, probs_N_K: np.ndarray, u_N: np.ndarray) -> pd.DataFrame:
    """Every pool item's scores: the ids, the policy's pool-score ``columns`` from its ``table`` (policies
    with the ``pool_table`` ability; NaN otherwise; ``u`` falls back to the configured uncertainty) and
    each member's probability."""
    df = pd.DataFrame({
        "pool_index": remaining.astype(np.int64),
        "pair_id": pair_ids[remaining],
        "prompt_id": prompt_ids[remaining],
    })
    for col in columns:
        if table is not None and col in table.columns:
            df[col] = table[col].to_numpy(dtype=np.float64)
        else:
            df[col] = np.nan
    if df["u"].isna().all():
        df["u"] = u_N.astype(np.float64)
    for k in range(probs_N_K.shape[1]):
        df[f"p{k}"] = probs_N_K[:, k].astype(np.float64)
    return df
