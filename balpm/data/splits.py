"""Prompt-grouped, seeded splits: no prompt is ever in two splits.

Two ways to split the non-OOD rows of a table:

* :func:`assign_splits` (the default): shuffle the unique prompt ids with ``numpy.random.default_rng(seed)``
  and cut them by ``ratios`` into ``train`` (the active-learning pool) / ``valid`` / ``test``.
* :func:`original_splits` (``keep_original=True``): the source's own split names, ``train -> train``,
  ``valid1 -> valid``, ``valid2 -> test`` (the paper's setup on the full OpenAI data), ``validation``
  / ``valid`` / ``dev`` -> ``valid``, ``test -> test``. When the data has its own ``test`` split (as
  CarperAI's train / valid1 / valid2 / test), ``valid1`` and ``valid2`` both become ``valid``.
  Rows without a known original split are split by ratio; a prompt found in several original splits
  goes to the most held-out one (test > valid > train) so that it cannot leak.

Rows whose split is ``ood`` are never touched.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from balpm.errors import ConfigError

SPLIT_NAMES: tuple[str, str, str] = ("train", "valid", "test")
_HELD_OUT_RANK = {"train": 0, "valid": 1, "test": 2}


def check_ratios(ratios: Sequence[float]) -> np.ndarray:
    """Three non-negative finite fractions with a positive sum -> normalised float64 array (sum 1)."""
    try:
        ratios_3 = np.asarray([float(r) for r in ratios], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"split ratios {ratios!r} must be three numbers (train, valid, test), e.g. 0.7,0.1,0.2") from None
    if ratios_3.shape != (3,) or not np.isfinite(ratios_3).all() or (ratios_3 < 0).any() or ratios_3.sum() <= 0:
        raise ConfigError(f"split ratios {tuple(ratios)!r} must be three non-negative numbers with a positive sum, e.g. 0.7,0.1,0.2")
    return ratios_3 / ratios_3.sum()


def split_prompt_ids(prompt_ids: Sequence[str] | np.ndarray, ratios: Sequence[float] = (0.7, 0.1, 0.2),
                     seed: int = 0) -> dict[str, str]:
    """Seeded map from each unique prompt id to ``train`` / ``valid`` / ``test`` (order of input ignored)."""
    ratios_3 = check_ratios(ratios)
    unique_P = np.unique(np.asarray(prompt_ids, dtype=object).astype(str))
    rng = np.random.default_rng(seed)
    order_P = rng.permutation(len(unique_P))
    cuts = np.round(np.cumsum(ratios_3) * len(unique_P)).astype(np.int64)
    cuts[-1] = len(unique_P)
    labels_P = np.empty(len(unique_P), dtype=object)
    start = 0
    for name, stop in zip(SPLIT_NAMES, cuts):
        labels_P[order_P[start:stop]] = name
        start = stop
    return dict(zip(unique_P.tolist(), labels_P.tolist()))


def assign_splits(table: pd.DataFrame, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> pd.DataFrame:
    """Prompt-grouped seeded split of the non-``ood`` rows into train / valid / test (returns a copy)."""
    out = table.copy()
    if "split" not in out.columns:
        out["split"] = "train"
    is_ood_N = (out["split"] == "ood").to_numpy()
    mapping = split_prompt_ids(out.loc[~is_ood_N, "prompt_id"].to_numpy(), ratios, seed)
    split_N = out["split"].astype(object).to_numpy(copy=True)
    split_N[~is_ood_N] = out.loc[~is_ood_N, "prompt_id"].map(mapping).to_numpy()
    out["split"] = split_N
    out["split"] = out["split"].astype(str)
    return out


def map_original(orig_N: pd.Series) -> pd.Series:
    """Original split names -> train / valid / test (``None`` where unknown); see the module doc."""
    names = set(orig_N.dropna().astype(str))
    has_test = "test" in names
    mapping = {
        "train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test",
        "valid1": "valid", "valid2": "valid" if has_test else "test",
    }
    return orig_N.map(lambda s: mapping.get(str(s)) if isinstance(s, str) else None)


def original_splits(table: pd.DataFrame, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> tuple[pd.DataFrame, int]:
    """Keep the source's own splits for the non-``ood`` rows; returns ``(table copy, prompts moved)``.

    ``prompts moved`` counts prompts that sat in several original splits and were put in the most
    held-out one.
    """
    out = table.copy()
    if "split" not in out.columns:
        out["split"] = "train"
    is_ood_N = out["split"] == "ood"
    orig = out["orig_split"] if "orig_split" in out.columns else pd.Series(None, index=out.index, dtype=object)
    mapped_N = map_original(orig.astype(object).where(orig.notna(), None))
    mapped_N[is_ood_N] = None
    # prompts with any known split: the most held-out one wins
    known = pd.DataFrame({"prompt_id": out["prompt_id"], "rank": mapped_N.map(_HELD_OUT_RANK)})[mapped_N.notna() & ~is_ood_N]
    ranks = known.groupby("prompt_id")["rank"].agg(["max", "nunique"])
    moved = int((ranks["nunique"] > 1).sum())
    by_rank = {v: k for k, v in _HELD_OUT_RANK.items()}
    prompt_split = ranks["max"].map(by_rank)
    split_N = out["prompt_id"].map(prompt_split)
    # prompts without any known original split: seeded ratio split
    rest_N = split_N.isna() & ~is_ood_N
    if rest_N.any():
        mapping = split_prompt_ids(out.loc[rest_N, "prompt_id"].to_numpy(), ratios, seed)
        split_N[rest_N] = out.loc[rest_N, "prompt_id"].map(mapping)
    split_N[is_ood_N] = "ood"
    out["split"] = split_N.astype(str)
    return out, moved


def check_run_sizes(split_N: Sequence[str] | np.ndarray, loop: Any, acquisition: Any) -> None:
    """One-line :class:`ConfigError` when a table's splits cannot hold a run of this loop/acquisition config:
    no test rows, a pool larger than the train split, ``initial`` not below the pool, batches that do not fit,
    ``k`` not below the smallest pool BAL-PM sees. Needs only the split labels, so ``balpm run`` calls it
    before featurizing (nothing computed or written for a table that cannot run); the checks and messages
    are those of :func:`balpm.experiment.loop.prepare`."""
    split_N = np.asarray(split_N, dtype=object)
    if not (split_N == "test").any():
        raise ConfigError("the table has no test rows; give split ratios with a test fraction or a file with a test split")
    n_train = int((split_N == "train").sum())
    pool_size = loop.pool_size or n_train
    if pool_size > n_train:
        raise ConfigError(f"pool_size {pool_size} exceeds the {n_train} train comparisons; lower --pool-size (0 takes all)")
    if loop.initial >= pool_size:
        raise ConfigError(f"initial {loop.initial} must be below the pool size {pool_size}; lower --initial")
    remaining0 = pool_size - loop.initial
    if loop.rounds > 1 and loop.batch_size > remaining0:
        raise ConfigError(f"batch size {loop.batch_size} is larger than the pool ({remaining0} items after the initial "
                          f"{loop.initial}); lower --batch-size or raise --pool-size")
    need = loop.initial + loop.batch_size * (loop.rounds - 1)
    if need > pool_size:
        raise ConfigError(f"initial + batch_size * (rounds - 1) = {need} exceeds the pool size {pool_size}; "
                          "lower --rounds or --batch-size")
    if "k" in acquisition.knob_values() and loop.rounds > 1:  # a kNN policy (its registry knobs have k)
        smallest = pool_size - loop.initial - loop.batch_size * (loop.rounds - 2)
        if acquisition.k >= smallest:
            raise ConfigError(f"k {acquisition.k} is not below the smallest pool the policy sees ({smallest} items); lower --k")
