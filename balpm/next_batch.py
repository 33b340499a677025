"""``balpm select``: the next batch for real annotators, chosen from an unlabelled pool by a registered policy.

::

    pool     = the unlabelled pairs (prompt, answer A, answer B), minus pairs already labelled
    model    = the usual K-member ensemble trained on every labelled pair (none: see below)
    batch    = policy.select(pool state, batch_size, selection_rng(seed, 0))

The run folder (``balpm.experiment.runs`` writer) is one round of an ordinary run: ``pool.parquet`` lists the
labelled pairs first (``initial``) then the pool, ``acquisitions.parquet`` the picks of round 0 with the
policy's step columns, ``pool_scores/`` every pool item's scores (policies with a pool table), a dataset
snapshot the dashboard maps, and ``config.yaml`` whose ``meta.select`` marks it as a selection (no test
split: the quality metrics are NaN).

Rules:

* **No labels.** A policy needs a trained ensemble unless it is one of :data:`MODEL_FREE` (``random``,
  ``coreset``, ``dopt``): with no labelled pairs any other policy is refused with a one-line error naming
  them. The model-free ones see member probabilities of exactly 0.5 (an untrained model: U = 0).
* **Already labelled.** An unlabelled pair whose prompt and two answers (in either order) equal a labelled
  pair is left out of the pool and counted (``meta.select.already_labelled``); it is never picked.
* **Run id.** ``select-<policy>-s<seed>-<hash>``, the hash over the config (batch size included) and both
  tables' content hashes: the same command reuses its folder and rewrites nothing; another labelled set
  (the next round of annotation) is another run id.
* **Determinism.** Model seed and selection generator are :func:`balpm.experiment.loop.model_seed` /
  :func:`balpm.experiment.loop.selection_rng` of the seed and round 0: same inputs and seed, same batch bit for bit.
* **Early stopping.** Every labelled pair trains the model; there is no validation split
  (``model.validation`` is set to ``none``: the last epoch is kept).

:func:`next_round` (``balpm label --next-round``) appends rounds 1, 2, ... to the same run folder: it trains on
the labelled pairs plus the label store's A/B labels (:mod:`balpm.labels`) and selects with the seeds of that
round. Both select through :func:`balpm.experiment.loop.select_round`, as the simulated loop does.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import balpm
from balpm.experiment import loop, runs, snapshot
from balpm.config import RunConfig
from balpm.errors import ConfigError, DataError, FeatureError
from balpm.evidence.metrics import PREFERENCE_METRICS

#: policies that choose without a trained model (usable with no labelled pairs)
MODEL_FREE: tuple[str, ...] = ("random", "coreset", "dopt")
#: the column names of an unlabelled file's two answers (any other file: chosen/rejected read as A/B)
ANSWER_COLUMNS: tuple[str, str] = ("answer_a", "answer_b")
#: the batch file formats, by the output file's suffix
BATCH_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
_TABLE_COLUMNS = ("pair_id", "prompt_id", "prompt", "chosen", "rejected", "split", "source")


@dataclass(frozen=True)
class SelectResult:
    """What :func:`select` made: the run folder, its run id, the batch (one row per pick, in pick order),
    whether the run already existed (nothing recomputed), how many pool pairs were already labelled, and the
    round of the batch (0 for ``balpm select``; ``balpm label --next-round`` appends rounds 1, 2, ...)."""

    run_dir: Path
    run_id: str
    batch: pd.DataFrame
    reused: bool
    already_labelled: int
    round: int = 0


# ---- reading the tables --------------------------------------------------------------------------
def _paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def load_unlabelled(paths: str | Path | Iterable[str | Path], *, skip_bad: bool = False) -> pd.DataFrame:
    """The unlabelled pairs of ``paths`` as a preference table whose ``chosen`` / ``rejected`` are answer A / B.

    A table file with columns ``prompt``, ``answer_a``, ``answer_b`` is read by those names; any other file
    any loader reads (prompt/chosen/rejected tables, OpenAI comparisons, HH...) has its two answers read as
    A and B, their order ignored (its labels are never looked at). The labelled loaders' checks all apply.
    """
    from balpm.data import load_table
    from balpm.data.tabular import TABLE_SUFFIXES, record_columns

    frames = []
    for path in _paths(paths):
        if not path.exists():
            raise DataError(f"unlabelled pool {str(path)!r} does not exist; give a file of prompt/answer_a/answer_b rows")
        columns = None
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            names = set(record_columns(path))
            if set(ANSWER_COLUMNS) <= names:
                columns = {"prompt": "prompt", "chosen": ANSWER_COLUMNS[0], "rejected": ANSWER_COLUMNS[1]}
            elif "prompt" in names and not {"chosen", "rejected"} <= names:
                lacking = [c for c in ANSWER_COLUMNS if c not in names]
                raise DataError(f"{path}: missing column(s) {lacking}; an unlabelled pool needs prompt, answer_a, "
                                "answer_b (or chosen, rejected read as A, B)")
        frames.append(load_table(path, skip_bad=skip_bad, columns=columns).table)
    return _as_train(pd.concat(frames, ignore_index=True), "unlabelled pool")


def load_labelled(paths: str | Path | Iterable[str | Path], *, skip_bad: bool = False) -> pd.DataFrame:
    """The labelled pairs of ``paths`` (any preference table the loaders read), every split used for training."""
    from balpm.data import load_table

    return _as_train(load_table([str(p) for p in _paths(paths)], skip_bad=skip_bad).table, "labelled table")


def _as_train(table: pd.DataFrame, what: str) -> pd.DataFrame:
    out = table.copy()
    out["split"] = "train"
    if out["pair_id"].duplicated().any():
        raise DataError(f"{what}: pair id {out.loc[out['pair_id'].duplicated(), 'pair_id'].iloc[0]!r} occurs twice "
                        "across its files; give each pair one id")
    return out.reset_index(drop=True)


def pair_keys(table: pd.DataFrame) -> pd.Series:
    """One key per row: the prompt and the two answers in sorted order (a pair is the same in either order)."""
    a, b = table["chosen"].astype(str), table["rejected"].astype(str)
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    return pd.Series([json.dumps([p, x, y]) for p, x, y in zip(table["prompt"].astype(str), lo, hi)], index=table.index)


# ---- the selection --------------------------------------------------------------------------------
def select_config(cfg: RunConfig, batch_size: int, n_labelled: int) -> RunConfig:
    """The run config a selection records: ``cfg`` with the batch size, one round, the labelled count as
    ``loop.initial`` (at least 1: a config field's bound), no pool cap, and no validation split."""
    return cfg.replace(loop={"batch_size": int(batch_size), "rounds": 1, "initial": max(1, int(n_labelled)),
                             "pool_size": 0},
                       model={"validation": "none"}).validate()


def run_id_for(cfg: RunConfig, labelled: pd.DataFrame | None, pool: pd.DataFrame) -> str:
    """``select-<policy>-s<seed>-<hash8>`` over the config and both tables' content hashes."""
    h = hashlib.sha256(json.dumps([cfg.hash(), runs.table_hash(labelled) if labelled is not None else None,
                                   runs.table_hash(pool)]).encode()).hexdigest()[:8]
    return f"select-{cfg.acquisition.policy}-s{cfg.loop.seed}-{h}"


def select(cfg: RunConfig, pool: pd.DataFrame, labelled: pd.DataFrame | None, batch_size: int, root: str | Path,
           *, progress: bool = True, features: Any = None) -> SelectResult:
    """Choose the next ``batch_size`` pairs of ``pool`` (see the module docstring); write or reuse the run folder.

    ``features`` (optional): features covering the labelled and pool pairs (found by pair id); by default
    ``balpm.features.featurize`` of :func:`combined_table` with ``cfg.features`` (cached). Raises one-line errors
    before writing anything.
    """
    root = runs.check_root(root)
    labelled = None if labelled is None or len(labelled) == 0 else labelled
    policy_name = cfg.acquisition.policy
    if policy_name == "full":
        raise ConfigError("policy 'full' trains on the whole pool and selects nothing; choose a selecting --policy")
    if labelled is None and policy_name not in MODEL_FREE:
        raise ConfigError(f"policy {policy_name!r} needs labelled pairs to train its ensemble; pass --labelled FILE, "
                          f"or use --policy {', '.join(MODEL_FREE)} (they need no labels)")
    for name, table in (("unlabelled pool", pool), ("labelled table", labelled)):
        if table is None:
            continue
        missing = [c for c in _TABLE_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"{name}: missing column(s) {missing}; load it with balpm.next_batch.load_unlabelled / load_labelled")
    if len(pool) == 0:
        raise DataError("the unlabelled pool is empty; give a file with at least one prompt/answer_a/answer_b row")
    combined, already = combined_table(pool, labelled)
    pool = pool.loc[~already].reset_index(drop=True)
    if len(pool) == 0:
        raise DataError(f"every one of the {len(already)} unlabelled pairs is already in the labelled table; "
                        "nothing is left to select")
    if batch_size > len(pool):
        raise ConfigError(f"--batch-size {batch_size} is larger than the pool ({len(pool)} unlabelled pairs"
                          f"{f', {int(already.sum())} already labelled left out' if already.any() else ''}); lower it")
    n_lab = 0 if labelled is None else len(labelled)
    cfg = select_config(cfg, batch_size, n_lab)
    run_id = run_id_for(cfg, labelled, pool)
    run_dir = root / run_id
    if _complete(run_dir, cfg):
        return SelectResult(run_dir, run_id, read_batch(root, run_id), True, int(already.sum()))

    if features is None:
        from balpm.features import featurize

        features = featurize(combined, cfg.features, progress=progress)
    inputs = _inputs(combined, features, n_lab)
    from balpm.acquisition import make_policy

    policy = make_policy(cfg.acquisition)
    t0 = time.perf_counter()
    remaining = np.arange(n_lab, len(combined))
    row: dict[str, Any] = {"round": 0, "labelled": n_lab}
    if labelled is not None:
        from balpm.engine.model import PreferenceEnsemble  # lazy: torch

        model = PreferenceEnsemble(cfg.model, int(features.pairs_N_2_D.shape[-1]), seed=loop.model_seed(cfg.loop.seed, 0))
        fit = model.fit(inputs.pairs(np.arange(n_lab)), None)
        probs_N_K = loop.predict(model, inputs, remaining)
        row.update(epochs=int(fit.epochs), valid_loss=float(fit.valid_loss))
    else:  # an untrained model: every member says 0.5 (only the model-free policies get here)
        probs_N_K = np.full((len(remaining), cfg.model.ensemble_size), 0.5)
        row.update(epochs=0, valid_loss=float("nan"))
    t1 = time.perf_counter()
    row.update({f"{s}_{k}": float("nan") for s in ("test", "ood") for k in PREFERENCE_METRICS})
    picked = loop.select_round(cfg, policy, inputs, probs_N_K, remaining, list(range(n_lab)), 0, initial=n_lab)
    row.update(picked.row)
    row.update(train_seconds=t1 - t0, eval_seconds=0.0, cumulative_unique_prompts=len(picked.batch_prompts))
    pair_ids = combined["pair_id"].to_numpy().astype(str)
    prompt_ids = combined["prompt_id"].to_numpy().astype(str)

    lock = runs.lock_run(root, run_id).acquire()
    try:
        if _complete(run_dir, cfg):  # another process finished it meanwhile
            return SelectResult(run_dir, run_id, read_batch(root, run_id), True, int(already.sum()))
        if run_dir.exists():  # a killed selection (one round: nothing to resume): made again from scratch
            if (run_dir / "labels.sqlite").exists():  # never delete annotators' work
                raise ConfigError(f"run folder {str(run_dir)!r} is incomplete but holds labels.sqlite; move the "
                                  "labels aside before selecting again")
            shutil.rmtree(run_dir)
        runs.RunWriter(root, run_id).remove_stale_temp()
        data_hash = runs.write_dataset(root, combined, np.asarray(features.prompt_ids).astype(str), features.prompts_P_D)
        meta = {
            "version": balpm.__version__, "data_hash": data_hash, "table_hash": runs.table_hash(combined),
            "feature_hash": str(getattr(features, "hash", "")), "feature_dim": int(features.pairs_N_2_D.shape[-1]),
            "pool_size": len(combined), "feature_rows": "all", "splits": {"train": len(combined)},
            "sources": sorted(map(str, combined["source"].unique())),
            "select": {"labelled": n_lab, "unlabelled": len(pool), "already_labelled": int(already.sum()),
                       "batch_size": int(batch_size), "model_free": labelled is None,
                       "labelled_hash": runs.table_hash(labelled) if labelled is not None else None,
                       "unlabelled_hash": runs.table_hash(pool)},
        }
        pool_frame = pd.DataFrame({"pool_index": np.arange(len(combined), dtype=np.int64), "pair_id": pair_ids,
                                   "prompt_id": prompt_ids, "initial": np.arange(len(combined)) < n_lab})
        writer = runs.RunWriter.create(root, run_id, cfg, meta, pool=pool_frame)
        snapshot.write_features(root, data_hash, combined, features, inputs.pair_rows_T)  # the dashboard's jobs read it
        try:
            writer.commit_round(0, row, picked.acquisitions, picked.pool_scores, picked.increments)
            writer.finish()
        except BaseException as exc:
            writer.fail(exc)
            raise
    finally:
        lock.release()
    return SelectResult(run_dir, run_id, read_batch(root, run_id), False, int(already.sum()))


# ---- the next round (balpm label --next-round) ----------------------------------------------------
def training_pairs(inputs: loop.Inputs, n_lab: int, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, pairs_N_2_D)``: the table rows that train the next round's model and their pair features,
    chosen answer first: the ``n_lab`` originally labelled pairs as their table says, then every ``A`` / ``B``
    label of the store (``labels``: round, pair_id, label, in round and pick order; ``B`` flips the pair).
    Ties and skips train nothing."""
    ab = labels[labels["label"].isin(["A", "B"])]
    where = pd.Index(inputs.table["pair_id"].astype(str)).get_indexer(ab["pair_id"].astype(str))
    if (where < 0).any():
        raise DataError(f"label of pair {ab['pair_id'].iloc[int(np.flatnonzero(where < 0)[0])]!r}: the pair is not in "
                        "the run's table; the label store belongs to another run")
    rows = np.concatenate([np.arange(n_lab, dtype=np.int64), where.astype(np.int64)])
    pairs = np.array(inputs.pairs(rows), dtype=np.float32)
    flip = np.concatenate([np.zeros(n_lab, dtype=bool), (ab["label"] == "B").to_numpy()])
    pairs[flip] = pairs[flip][:, ::-1]
    return rows, pairs


def next_round(run_dir: str | Path, labels: pd.DataFrame, *, progress: bool = False) -> SelectResult:
    """Train on every label so far and select the next batch of the same selection run, appended as round r+1.

    ``labels``: the annotators' labels (columns ``round``, ``pair_id``, ``label`` in round and pick order: the
    label store's, :meth:`balpm.labels.LabelStore.labels`; ``balpm.labels.next_round`` passes them). The model
    trains on the run's original labelled pairs plus every A/B label (ties and skips recorded, not trained
    on). The last round's batch must be fully labelled. The pool: every pair never picked in any round (a tie
    or a skip is not offered again). Round ``r`` uses the model seed :func:`balpm.experiment.loop.model_seed` ``(seed, r)``
    and the selection generator :func:`balpm.experiment.loop.selection_rng` ``(seed, r)``, as round ``r`` of a simulation
    does, and the same policy and knobs (the run's config): the same labels give the same batch. The pair
    features come from the run's dataset snapshot (nothing is featurized again). Two callers at once: one
    selects, the other gets its result (``reused``).
    """
    from balpm.acquisition import make_policy

    run_dir = Path(run_dir).expanduser()
    root, run_id = run_dir.resolve().parent, run_dir.name
    run = runs.open_run(root, run_id)
    cfg, meta = run.config, run.meta
    if "select" not in meta:
        raise ConfigError(f"run {run_id!r} is not a selection (no meta.select in its config.yaml); give the run "
                          "folder balpm select made")
    info = runs.inspect_run(root / run_id)
    if info.state == "broken" or info.last_round < 0:
        raise ConfigError(f"run {run_id!r} has no complete selection ({info.reason or info.state}); run balpm select again")
    if info.state == "running" and info.alive:
        raise ConfigError(f"run {run_id!r} is selecting its next round right now (pid {info.extra.get('pid')}); wait for it")
    last = info.last_round
    batch = read_batch(root, run_id, last)
    missing = set(batch["pair_id"]) - set(labels.loc[labels["round"] == last, "pair_id"].astype(str))
    if missing:
        raise ConfigError(f"round {last} of run {run_id!r} has {len(missing)} of {len(batch)} pairs unlabelled; "
                          f"label them first (balpm label {root / run_id})")
    labels = labels[labels["round"] <= last]
    rnd = last + 1
    n_lab = int(meta["select"]["labelled"])
    table, features = snapshot.load_inputs(root, meta["data_hash"], meta["feature_hash"])
    pool_frame = run.pool()
    if not pool_frame["pair_id"].astype(str).equals(table["pair_id"].astype(str)):
        raise ConfigError(f"run {run_id!r}: pool.parquet does not match its dataset snapshot; run balpm select again")
    inputs = _inputs(table, features, n_lab)
    acq = run.acquisitions().sort_values(["round", "step"])
    picked_before = acq["pool_index"].to_numpy(dtype=np.int64)
    remaining = np.setdiff1d(np.arange(n_lab, len(table), dtype=np.int64), picked_before)
    if len(remaining) == 0:
        raise ConfigError(f"every pool pair of run {run_id!r} has been picked ({len(picked_before)} over {rnd} rounds); "
                          "nothing is left to select: export the labels (balpm label --export FILE)")
    batch_size = min(int(cfg.loop.batch_size), len(remaining))
    round_cfg = cfg if batch_size == cfg.loop.batch_size else cfg.replace(loop={"batch_size": batch_size})
    rows, train = training_pairs(inputs, n_lab, labels)
    if len(rows) == 0 and cfg.acquisition.policy not in MODEL_FREE:
        raise ConfigError(f"no A or B labels yet in run {run_id!r} (ties and skips train nothing); policy "
                          f"{cfg.acquisition.policy!r} needs a trained model: label some pairs A or B")
    policy = make_policy(cfg.acquisition)

    t0 = time.perf_counter()
    row: dict[str, Any] = {"round": rnd, "labelled": len(rows)}
    if len(rows):
        from balpm.engine.model import PreferenceEnsemble  # lazy: torch

        model = PreferenceEnsemble(cfg.model, int(features.pairs_N_2_D.shape[-1]), seed=loop.model_seed(cfg.loop.seed, rnd))
        fit = model.fit(train, None)
        probs_N_K = loop.predict(model, inputs, remaining)
        row.update(epochs=int(fit.epochs), valid_loss=float(fit.valid_loss))
    else:  # a cold start whose first batch got only ties and skips: still an untrained model
        probs_N_K = np.full((len(remaining), cfg.model.ensemble_size), 0.5)
        row.update(epochs=0, valid_loss=float("nan"))
    t1 = time.perf_counter()
    row.update({f"{s}_{k}": float("nan") for s in ("test", "ood") for k in PREFERENCE_METRICS})
    shown = list(range(n_lab)) + picked_before.tolist()  # the policy's labelled set: every pair already shown
    picked = loop.select_round(round_cfg, policy, inputs, probs_N_K, remaining, shown, rnd, initial=n_lab)
    row.update(picked.row)
    all_prompts = set(acq["prompt_id"].astype(str)) | picked.batch_prompts
    row.update(train_seconds=t1 - t0, eval_seconds=0.0, cumulative_unique_prompts=len(all_prompts))

    lock = runs.lock_run(root, run_id).acquire()
    try:
        now = runs.inspect_run(root / run_id)
        if now.last_round >= rnd:  # another caller selected this round meanwhile
            return SelectResult(root / run_id, run_id, read_batch(root, run_id, rnd), True, 0, rnd)
        writer = runs.RunWriter(root, run_id)
        writer.remove_stale_temp()
        writer.read_status()  # keeps its "started"
        writer.truncate(last)  # half-written files of a killed earlier attempt at this round
        writer.write_status("running", last_round=last, rounds=rnd + 1)
        try:
            writer.commit_round(rnd, row, picked.acquisitions, picked.pool_scores, picked.increments)
        except BaseException:
            writer.truncate(last)
            writer.write_status("complete", last_round=last, rounds=last + 1)
            raise
        writer.finish()
    finally:
        lock.release()
    _say(progress, f"round {rnd}: {batch_size} pairs selected from {len(remaining)}, trained on {len(rows)} labels")
    return SelectResult(root / run_id, run_id, read_batch(root, run_id, rnd), False, 0, rnd)


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)


def combined_table(pool: pd.DataFrame, labelled: pd.DataFrame | None) -> tuple[pd.DataFrame, np.ndarray]:
    """``(table, already)``: the run's table, labelled rows (``role`` labelled) then the pool rows not already
    labelled (``role`` pool), the contract's columns plus ``role``; ``already``: bool per ``pool`` row, the pair
    (prompt and both answers, either order) is in ``labelled`` (left out of the table)."""
    already = np.zeros(len(pool), dtype=bool)
    parts = []
    if labelled is not None and len(labelled):
        already = pair_keys(pool).isin(set(pair_keys(labelled))).to_numpy()
        parts.append(labelled[list(_TABLE_COLUMNS)].assign(role="labelled"))
    parts.append(pool.loc[~already, list(_TABLE_COLUMNS)].assign(role="pool"))
    combined = pd.concat(parts, ignore_index=True)
    dup = combined["pair_id"].duplicated()
    if dup.any():
        raise DataError(f"pair id {combined.loc[dup, 'pair_id'].iloc[0]!r} is in both the labelled table and the pool "
                        "with different texts; give the pairs distinct ids")
    return combined.reset_index(drop=True), already


def _inputs(combined: pd.DataFrame, features: Any, n_lab: int) -> loop.Inputs:
    """The loop's inputs over ``combined`` (every row in the pool, the labelled first); ``features`` may cover
    more pairs than the table (rows found by pair id)."""
    where = pd.Index(np.asarray(features.pair_ids).astype(str)).get_indexer(combined["pair_id"].to_numpy().astype(str))
    if (where < 0).any():
        raise FeatureError(f"pair {combined['pair_id'].iloc[int(np.flatnonzero(where < 0)[0])]!r} has no features; "
                           "featurize the labelled and unlabelled tables")
    empty = np.array([], dtype=np.int64)
    prompts = np.asarray(features.prompt_rows(combined["prompt_id"].to_numpy().astype(str)), dtype=np.float32)
    return loop.Inputs(combined, features, where.astype(np.int64), np.arange(len(combined)), empty, empty, empty, prompts)


def _complete(run_dir: Path, cfg: RunConfig) -> bool:
    """True when ``run_dir`` holds the complete selection of ``cfg`` (another config there is an error)."""
    if not (run_dir / "config.yaml").is_file():
        return False
    info = runs.inspect_run(run_dir)
    if info.config_hash and info.config_hash != cfg.hash():
        raise ConfigError(f"run folder {str(run_dir)!r} holds another config; delete it or use another --runs-dir")
    # round 0 committed: the selection is made (later rounds are balpm label's next rounds, maybe running now)
    return info.state == "complete" or (info.state in ("running", "failed") and info.last_round >= 0)


# ---- the batch ----------------------------------------------------------------------------------
def read_batch(root: str | Path, run_id: str, rnd: int = 0) -> pd.DataFrame:
    """The batch of round ``rnd`` of a selection run (0: ``balpm select``'s; later: ``balpm label --next-round``'s):
    one row per pick in pick order (``step``), the pair's ``pair_id``, ``prompt_id``, ``prompt``, ``answer_a``,
    ``answer_b``, then the policy's step columns."""
    run = runs.open_run(root, run_id)
    if "select" not in run.meta:
        raise ConfigError(f"run {run_id!r} is not a selection (no meta.select in its config.yaml)")
    acq = run.acquisitions()
    acq = acq[acq["round"] == int(rnd)].sort_values("step").reset_index(drop=True)
    table = run.dataset()[0].set_index("pair_id")
    texts = table.loc[acq["pair_id"].astype(str), ["prompt", "chosen", "rejected"]].reset_index(drop=True)
    columns = run.config.acquisition.entry.acquisition_columns
    out = pd.DataFrame({"step": acq["step"].to_numpy(dtype=np.int64), "pair_id": acq["pair_id"].astype(str),
                        "prompt_id": acq["prompt_id"].astype(str), "prompt": texts["prompt"],
                        "answer_a": texts["chosen"], "answer_b": texts["rejected"]})
    for col in columns:
        out[col] = acq[col].to_numpy(dtype=np.float64) if col in acq.columns else np.nan
    return out


def check_batch_path(path: str | Path) -> Path:
    """The batch output path, its suffix one of :data:`BATCH_SUFFIXES` (one-line error otherwise)."""
    path = Path(path)
    if path.suffix.lower() not in BATCH_SUFFIXES:
        raise ConfigError(f"--out {str(path)!r}: unknown suffix {path.suffix!r}; end it with {', '.join(BATCH_SUFFIXES)}")
    if path.exists() and not path.is_file():
        raise ConfigError(f"--out {str(path)!r} is a folder; give a file name")
    return path


def batch_bytes(batch: pd.DataFrame, suffix: str) -> bytes:
    """The batch file's content for ``suffix`` (deterministic: the same batch gives the same bytes)."""
    suffix = suffix.lower()
    if suffix == ".jsonl":
        return batch.to_json(orient="records", lines=True, force_ascii=False, double_precision=15).encode("utf-8")
    if suffix == ".csv":
        return batch.to_csv(index=False).encode("utf-8")
    import io

    buf = io.BytesIO()
    batch.to_parquet(buf, index=False)
    return buf.getvalue()


def write_batch(batch: pd.DataFrame, path: str | Path) -> bool:
    """Write the batch to ``path`` by its suffix, atomically; an identical existing file is left alone.
    Returns True when the file was (re)written."""
    path = check_batch_path(path)
    data = batch_bytes(batch, path.suffix)
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_bytes(path, data)
    return True


__all__ = ["ANSWER_COLUMNS", "BATCH_SUFFIXES", "MODEL_FREE", "SelectResult", "batch_bytes", "check_batch_path",
           "combined_table", "load_labelled", "load_unlabelled", "next_round", "pair_keys", "read_batch", "run_id_for", "select", "select_config",
           "training_pairs", "write_batch"]
