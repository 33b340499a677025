"""BAL-PM: greedy batch of ``U + beta * H`` with in-batch entropy updates (docs/method.md sections 4-5).

:func:`select_balpm` is the pure, importable selection step. It works in two phases:

1. **Round constants** (:func:`prepare_balpm`): normalisation, deduplication, exact kNN radii of the
   pool (FAISS + exact float64 refinement, see :mod:`balpm.engine.knn`), the labelled counts ``n0(x)``
   and, for each prompt, the set of pool prompts inside its radius.
2. **Greedy picks**: per step, pick the highest score (ties to the lowest pool position), remove it,
   and raise ``n(x)`` by one for every remaining x whose radius contains the pick (radius fixed in the
   batch). Because the pick is a pool point, those x are exactly the prompts whose radius
   neighbourhood lists the pick, so a step costs a lookup, not a pass over the pool.

The KL-estimator ablation instead keeps each prompt's k nearest labelled distances and, per pick,
inserts the pick's exact distances (one float32 matrix-vector product, exact recomputation of the
pairs that may enter).

With ``normalize="faithful"`` the picks equal the reference code's, in order (tests check this against
a line-by-line transcription).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import Common, register_policy
from balpm.engine.diagnostics import scaled_beta, score_diagnostics
from balpm.errors import ConfigError, FeatureError
from balpm.knobs import BETA_MODES, ESTIMATORS, NORMALIZATIONS, knob

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd

    from balpm.engine.knn import Geometry, RadiusTracker, TrackedRound

STEP_COLUMNS = ("step", "index", "score", "u", "log_dist", "count_term", "h", "beta_h", "ratio", "n", "radius")


def _csr(keys: np.ndarray, vals: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Compressed rows: ``vals[ptr[i]:ptr[i+1]]`` are the values of key i, in ascending order."""
    order = np.lexsort((vals, keys))
    ptr = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=nkeys))]).astype(np.int64)
    return ptr, vals[order].astype(np.int64)


def validate_balpm(uncertainty_N: np.ndarray, pool_prompts_N_D: np.ndarray, labelled_prompts_L_D: np.ndarray,
                   batch_size: int, beta: float, k: int, d: float, floor: float, normalize: str,
                   estimator: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All checks of :func:`select_balpm`, before any work; one-line Config/FeatureError each."""
    # lazy: faiss, scipy, kept out of CLI start-up (the registry imports every policy module)
    from balpm.engine.knn import check_features
    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if not (isinstance(beta, (int, float, np.floating, np.integer)) and math.isfinite(beta) and beta >= 0):
        raise ConfigError(f"beta must be a finite number >= 0 (got {beta}); use minimize=True for the "
                          "entropy-minimiser ablation")
    if not (math.isfinite(d) and d > 0):
        raise ConfigError(f"d must be > 0 (got {d}); it weights the digamma count term")
    if not (math.isfinite(floor) and floor > 0):
        raise ConfigError(f"floor must be > 0 (got {floor}); it keeps log(2 r + floor) finite for duplicates")
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be an integer >= 1 (got {k})")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch size must be an integer >= 1 (got {batch_size})")
    u = np.asarray(uncertainty_N)
    if u.ndim != 1:
        raise FeatureError(f"uncertainty scores must be 1-D (one per pool item), got shape {u.shape}")
    pool = check_features(pool_prompts_N_D, "pool prompt features")
    lab = check_features(labelled_prompts_L_D, "labelled prompt features", dim=pool.shape[1], allow_empty=True)
    n = pool.shape[0]
    if u.shape[0] != n:
        raise FeatureError(f"{u.shape[0]} uncertainty scores for {n} pool rows; they must match one to one")
    if not np.issubdtype(u.dtype, np.number) or not np.isfinite(u.astype(np.float64)).all():
        raise FeatureError("uncertainty scores contain NaN or inf; check the model's predictions")
    if batch_size > n:
        raise ConfigError(f"batch size {batch_size} exceeds the pool size {n}; lower the batch size or rounds")
    if k >= n:
        raise ConfigError(f"k = {k} must be below the pool size {n}; lower k")
    return u.astype(np.float64), pool, lab


@dataclass
class BalpmRound:
    """The round constants of BAL-PM and the greedy state built from them (see module docstring)."""

    u_N: np.ndarray
    geometry: Geometry
    estimator: str
    beta: float
    d: float
    floor: float
    minimize: bool
    k: int
    radius_M: np.ndarray                 # r_k (pool radius) or rho_k (KL) per unique prompt, at step 0
    n0_M: np.ndarray | None = None       # labelled counts (pool radius)
    rev_ptr: np.ndarray | None = None    # reverse neighbourhoods (pool radius): prompts whose radius
    rev_idx: np.ndarray | None = None    #   contains prompt g are rev_idx[rev_ptr[g]:rev_ptr[g+1]]
    topk_M_k: np.ndarray | None = None   # k nearest labelled distances (KL)
    items_ptr: np.ndarray = field(default=None)  # type: ignore[assignment]
    items_idx: np.ndarray = field(default=None)  # type: ignore[assignment]
    beta_mode: str = "fixed"             # fixed: beta as given; scaled: beta set from the pool (see prepare_balpm)
    beta_nominal: float = float("nan")   # the configured beta (``beta`` is the one the scores use)
    beta_rule: str = "fixed"             # scaled mode: "iqr", "std" or "fixed" (see balpm.engine.diagnostics.scaled_beta)

    @property
    def group_N(self) -> np.ndarray:
        """Unique-prompt id of every pool position."""
        return self.geometry.pool.group_N

    def terms(self, n_M: np.ndarray | None, radius_M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log_dist, count_term, h) per unique prompt for the given counts and radii."""
        # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
        from balpm.engine.entropy import (
            count_term,
            log_distance_term,
        )
        log_dist = log_distance_term(radius_M, self.floor)
        ct = count_term(n_M, self.d) if n_M is not None else np.zeros_like(log_dist)
        return log_dist, ct, log_dist - ct

    def item_scores(self, u: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(beta * h, score) with score = u + beta * h (or u - beta * h when minimising)."""
        beta_h = self.beta * h
        return beta_h, (u - beta_h if self.minimize else u + beta_h)

    def step0_h(self) -> np.ndarray:
        """H of every pool position at step 0 (before any pick of the batch)."""
        return self.terms(self.n0_M, self.radius_M)[2][self.group_N]

    def diagnostics(self) -> dict[str, float]:
        """The round's spread diagnostics (:func:`balpm.engine.diagnostics.score_diagnostics`) at step 0."""
        h = self.step0_h()
        _, score = self.item_scores(self.u_N, h)
        return score_diagnostics(self.u_N, h, self.beta, score)

    def pool_table(self) -> pd.DataFrame:
        """Per pool position at step 0: u, radius, n0, log_dist, count_term, h, score."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        g = self.group_N
        n0 = self.n0_M if self.n0_M is not None else None
        log_dist, ct, h = self.terms(n0, self.radius_M)
        _, score = self.item_scores(self.u_N, h[g])
        return pd.DataFrame({
            "u": self.u_N, "radius": self.radius_M[g],
            "n0": (n0[g] if n0 is not None else np.full(g.size, np.nan)),
            "log_dist": log_dist[g], "count_term": ct[g], "h": h[g], "score": score,
        })


def prepare_balpm(uncertainty_N: np.ndarray, pool_prompts_N_D: np.ndarray, labelled_prompts_L_D: np.ndarray,
                  batch_size: int = 1, beta: float = 0.01, k: int = 13, d: float = 1.0, floor: float = 1e-4,
                  normalize: str = "zscore", estimator: str = "pool_radius", minimize: bool = False,
                  exact_knn: bool = True, beta_mode: str = "fixed", tracked: TrackedRound | None = None) -> BalpmRound:
    """Validate the inputs and compute the round constants (radii, counts, neighbourhoods).

    ``tracked``: this round's radii, neighbourhoods and counts from a :class:`balpm.engine.knn.RadiusTracker`
    (incremental across rounds) instead of computing them here (pool-radius estimator only).

    ``beta_mode="scaled"`` replaces ``beta`` by ``beta * IQR(U) / IQR(H)`` over the pool at step 0
    (:func:`balpm.engine.diagnostics.scaled_beta`, with its fallbacks); the round keeps the configured value
    in ``beta_nominal``. ``fixed`` (the paper's) uses ``beta`` as given.
    """
    if beta_mode not in BETA_MODES:
        raise ConfigError(f"unknown beta_mode {beta_mode!r}; choose one of {', '.join(BETA_MODES)}")
    rnd = _prepare_round(uncertainty_N, pool_prompts_N_D, labelled_prompts_L_D, batch_size, beta, k, d, floor,
                         normalize, estimator, minimize, exact_knn, tracked)
    rnd.beta_mode, rnd.beta_nominal = beta_mode, float(beta)
    if beta_mode == "scaled":
        rnd.beta, rnd.beta_rule = scaled_beta(float(beta), rnd.u_N, rnd.step0_h())
    return rnd


def _prepare_round(uncertainty_N: np.ndarray, pool_prompts_N_D: np.ndarray, labelled_prompts_L_D: np.ndarray,
                   batch_size: int, beta: float, k: int, d: float, floor: float, normalize: str, estimator: str,
                   minimize: bool, exact_knn: bool, tracked: TrackedRound | None = None) -> BalpmRound:
    # lazy: faiss, scipy, kept out of CLI start-up (the registry imports every policy module)
    from balpm.engine.knn import (
        build_geometry,
        labelled_counts,
        labelled_knn,
        pool_radii,
    )
    u, pool, lab = validate_balpm(uncertainty_N, pool_prompts_N_D, labelled_prompts_L_D, batch_size, beta,
                                  k, d, floor, normalize, estimator)
    if tracked is not None and estimator == "pool_radius":  # incremental radii (balpm.engine.knn.RadiusTracker)
        if tracked.geometry.pool.group_N.size != pool.shape[0]:
            raise ConfigError("tracked radii belong to another pool; pass the RadiusTracker this round's pool")
        return BalpmRound(u_N=u, geometry=tracked.geometry, estimator=estimator, beta=float(beta), d=float(d),
                          floor=float(floor), minimize=bool(minimize), k=int(k), items_ptr=tracked.items_ptr,
                          items_idx=tracked.items_idx, radius_M=tracked.radius_M, n0_M=tracked.n0_M,
                          rev_ptr=tracked.rev_ptr, rev_idx=tracked.rev_idx)
    if estimator == "kl" and lab.shape[0] < k:
        raise ConfigError(f"the KL estimator needs at least k = {k} labelled prompts (got {lab.shape[0]}); "
                          "label more items first or lower k")
    t0 = time.perf_counter()
    geo = build_geometry(pool, lab, normalize=normalize, exact_knn=exact_knn, validate=False)
    m = geo.pool.size
    items_ptr, items_idx = _csr(geo.pool.group_N, np.arange(pool.shape[0]), m)
    common = dict(u_N=u, geometry=geo, estimator=estimator, beta=float(beta), d=float(d), floor=float(floor),
                  minimize=bool(minimize), k=int(k), items_ptr=items_ptr, items_idx=items_idx)
    t1 = time.perf_counter()
    geo.stats["seconds_geometry"] = t1 - t0
    if estimator == "pool_radius":
        radius, mq, mb = pool_radii(geo, int(k))
        t2 = time.perf_counter()
        n0 = labelled_counts(geo, radius)
        rev_ptr, rev_idx = _csr(mb, mq, m)  # for pick prompt b: the prompts q whose radius contains b
        geo.stats.update(seconds_radii=t2 - t1, seconds_counts=time.perf_counter() - t2)
        return BalpmRound(radius_M=radius, n0_M=n0, rev_ptr=rev_ptr, rev_idx=rev_idx, **common)
    topk = labelled_knn(geo, int(k))
    geo.stats.update(seconds_radii=time.perf_counter() - t1, seconds_counts=0.0)
    return BalpmRound(radius_M=topk[:, -1].copy(), topk_M_k=topk, **common)


def greedy_select(rnd: BalpmRound, batch_size: int,
                  on_step: Callable[[int, np.ndarray], None] | None = None) -> Selection:
    """Run the greedy batch on prepared round constants (does not modify ``rnd``).

    ``on_step(step, score_N)``, when given, sees every pool item's score just before each pick
    (picked items at ``-inf``; a read-only view: copy it to keep it). :func:`replay_scores` rebuilds
    the same vector from the stored round data; the tests hold the two equal.
    """
    # lazy: faiss, pandas, scipy, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd

    from balpm.engine.entropy import count_term, log_distance_term
    from balpm.engine.knn import pick_distances
    g_N = rnd.group_N
    n_items = g_N.size
    if batch_size > n_items:
        raise ConfigError(f"batch size {batch_size} exceeds the pool size {n_items}; lower the batch size or rounds")
    radius = rnd.radius_M.copy()
    n = rnd.n0_M.copy() if rnd.n0_M is not None else None
    topk = rnd.topk_M_k.copy() if rnd.topk_M_k is not None else None
    log_dist, ct, h = rnd.terms(n, radius)
    _, score = rnd.item_scores(rnd.u_N, h[g_N])
    alive_items = np.ones(n_items, dtype=bool)
    left = np.diff(rnd.items_ptr).astype(np.int64)  # remaining items per unique prompt
    cols: dict[str, list] = {c: [] for c in STEP_COLUMNS}
    inc_steps: list[np.ndarray] = []
    inc_index: list[np.ndarray] = []

    def alive_members(groups: np.ndarray) -> np.ndarray:
        if groups.size == 0:
            return groups
        parts = [rnd.items_idx[rnd.items_ptr[q]:rnd.items_ptr[q + 1]] for q in groups]
        idx = np.concatenate(parts)
        return idx[alive_items[idx]]

    for step in range(batch_size):
        if on_step is not None:
            view = score.view()
            view.flags.writeable = False
            on_step(step, view)
        j = int(np.argmax(score))  # first maximum: ties go to the lowest pool position
        g = int(g_N[j])
        beta_h = rnd.beta * h[g]
        s = float(score[j])
        u_j = float(rnd.u_N[j])
        cols["step"].append(step)
        cols["index"].append(j)
        cols["score"].append(s)
        cols["u"].append(u_j)
        cols["log_dist"].append(float(log_dist[g]))
        cols["count_term"].append(float(ct[g]))
        cols["h"].append(float(h[g]))
        cols["beta_h"].append(float(beta_h))
        cols["ratio"].append(u_j / s if s != 0 else np.nan)
        cols["n"].append(int(n[g]) if n is not None else np.nan)
        cols["radius"].append(float(radius[g]))
        alive_items[j] = False
        score[j] = -np.inf
        left[g] -= 1
        if rnd.estimator == "pool_radius":
            hit = rnd.rev_idx[rnd.rev_ptr[g]:rnd.rev_ptr[g + 1]]
            hit = hit[left[hit] > 0]
            if hit.size == 0:
                continue
            n[hit] += 1
            ct[hit] = count_term(n[hit], rnd.d)
            h[hit] = log_dist[hit] - ct[hit]
            members = alive_members(hit)
            inc_steps.append(np.full(members.size, step, dtype=np.int64))
            inc_index.append(members)
        else:
            hit, e = pick_distances(rnd.geometry, g, radius, left > 0)
            if hit.size == 0:
                continue
            merged = np.concatenate([topk[hit], e[:, None]], axis=1)
            merged.sort(axis=1)
            topk[hit] = merged[:, :rnd.k]
            radius[hit] = topk[hit, -1]
            log_dist[hit] = log_distance_term(radius[hit], rnd.floor)
            h[hit] = log_dist[hit]
            members = alive_members(hit)
        _, score[members] = rnd.item_scores(rnd.u_N[members], h[g_N[members]])

    steps = pd.DataFrame({c: cols[c] for c in STEP_COLUMNS})
    steps["step"] = steps["step"].astype(np.int64)
    steps["index"] = steps["index"].astype(np.int64)
    if n is not None:
        steps["n"] = steps["n"].astype(np.int64)
    else:
        steps["n"] = steps["n"].astype(np.float64)
    increments = None
    if rnd.estimator == "pool_radius":
        increments = pd.DataFrame({
            "step": np.concatenate(inc_steps) if inc_steps else np.zeros(0, np.int64),
            "index": np.concatenate(inc_index) if inc_index else np.zeros(0, np.int64),
        })
    return Selection(indices=np.asarray(cols["index"], dtype=np.int64), steps=steps, increments=increments)


def select_balpm(uncertainty_N: np.ndarray, pool_prompts_N_D: np.ndarray, labelled_prompts_L_D: np.ndarray,
                 batch_size: int, beta: float = 0.01, k: int = 13, d: float = 1.0, floor: float = 1e-4,
                 normalize: str = "zscore", estimator: str = "pool_radius", minimize: bool = False,
                 exact_knn: bool = True, beta_mode: str = "fixed") -> Selection:
    """Select ``batch_size`` pool positions greedily by ``U + beta * H`` (``U - beta * H`` if ``minimize``).

    ``uncertainty_N``: U per pool item; ``pool_prompts_N_D`` / ``labelled_prompts_L_D``: prompt
    features (one row per comparison; repeated prompts are fine). ``k`` counts the point itself as
    neighbour 1; ``d`` weights the digamma term; ``floor`` is added to ``2 r`` before the log.
    ``normalize``: ``none`` / ``zscore`` / ``faithful`` (the reference's slip); ``estimator``:
    ``pool_radius`` (the paper's) or ``kl``. ``exact_knn=False`` uses HNSW radii (approximate).
    ``beta_mode``: ``fixed`` (the paper's) or ``scaled`` (beta times IQR(U) / IQR(H), see
    :func:`prepare_balpm`).

    Returns a :class:`Selection`: ``indices`` in pick order, ``steps`` (columns ``STEP_COLUMNS``) and,
    for the pool-radius estimator, ``increments`` (step, index) of every count raised.
    Bad parameters or inputs raise a one-line :class:`ConfigError` / :class:`FeatureError` first.
    """
    rnd = prepare_balpm(uncertainty_N, pool_prompts_N_D, labelled_prompts_L_D, batch_size, beta, k, d, floor,
                        normalize, estimator, minimize, exact_knn, beta_mode)
    return greedy_select(rnd, batch_size)


# ---- replay: the scores at any greedy step, rebuilt from the stored round data -------------------
@dataclass(frozen=True)
class ReplayScores:
    """Every pool item's terms just before pick ``step`` of a greedy batch (pool-radius estimator).

    Arrays are in the order of the inputs (one per pool item). ``score_N`` follows the score formula
    for every item, including those already picked; ``alive_N`` is False for the items picked at
    earlier steps (known only when the picks were given), so ``best`` is the greedy pick at ``step``.
    ``raised_N``: items whose count this step's pick raises.
    """

    step: int
    u_N: np.ndarray
    n_N: np.ndarray
    log_dist_N: np.ndarray
    count_term_N: np.ndarray
    h_N: np.ndarray
    beta_h_N: np.ndarray
    score_N: np.ndarray
    alive_N: np.ndarray
    raised_N: np.ndarray
    beta: float

    @property
    def best(self) -> int:
        """The first maximum of the score over the items still in the pool (the greedy pick)."""
        return int(np.argmax(np.where(self.alive_N, self.score_N, -np.inf)))

    def shares(self) -> pd.DataFrame:
        """Each term's share of the item's absolute score parts: ``|U|``, ``|beta*log_dist|`` and
        ``|beta*count term|`` over their sum (columns ``u_share``, ``dist_share``, ``count_share``)."""
        return term_shares(self.u_N, self.beta * self.log_dist_N, -self.beta * self.count_term_N)


def term_shares(u_N: np.ndarray, dist_N: np.ndarray, count_N: np.ndarray) -> pd.DataFrame:
    """Share of each score part in the sum of their absolute values (NaN parts count as 0; all-zero
    rows get NaN shares). The parts are U, the (signed) beta*distance and beta*count terms."""
    # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd
    parts = np.abs(np.nan_to_num(np.column_stack([u_N, dist_N, count_N]).astype(np.float64)))
    tot = parts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        sh = np.where(tot > 0, parts / np.where(tot > 0, tot, 1.0), np.nan)
    return pd.DataFrame(sh, columns=["u_share", "dist_share", "count_share"])


def replay_scores(u_N: np.ndarray, log_dist_N: np.ndarray, n0_N: np.ndarray, increments: pd.DataFrame | None,
                  step: int, *, beta: float, d: float = 1.0, minimize: bool = False,
                  picks: Sequence[int] | None = None) -> ReplayScores:
    """Rebuild U, the H terms, beta*H and the score of every pool item just before pick ``step``.

    Inputs are what a run stores per round (``pool_scores/round=<r>.parquet``: ``u``, ``log_dist``,
    ``n0``; ``increments``: (step, index) rows, positions into these arrays, as in
    ``Selection.increments``), ``beta`` the round's effective beta (rounds.parquet ``beta_effective``;
    the config's beta in ``fixed`` mode) and ``picks`` the batch's positions in pick order. The
    arithmetic is :func:`greedy_select`'s: ``n = n0 + increments of steps < step``,
    ``h = log_dist - digamma(n + 1) / d``, ``score = u +/- beta * h``, equal bit for bit.
    """
    # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
    from balpm.engine.entropy import (
        count_term,
        replay_counts,
    )
    u = np.asarray(u_N, dtype=np.float64)
    log_dist = np.asarray(log_dist_N, dtype=np.float64)
    n0 = np.asarray(n0_N, dtype=np.float64)
    if not (u.shape == log_dist.shape == n0.shape and u.ndim == 1):
        raise FeatureError(f"u, log_dist and n0 must be 1-D of one length (got {u.shape}, {log_dist.shape}, "
                           f"{n0.shape}); pass one round's pool_scores columns")
    if not (np.isfinite(u).all() and np.isfinite(log_dist).all() and np.isfinite(n0).all()):
        raise FeatureError("u, log_dist or n0 contain NaN: this round has no exact pool-radius data to replay "
                           "(KL estimator or a policy without H); show the round-start scores instead")
    step = int(step)
    if step < 0:
        raise ConfigError(f"step must be >= 0 (got {step})")
    n = replay_counts(n0.astype(np.int64), increments, step)
    ct = count_term(n, float(d))
    h = log_dist - ct
    beta_h = float(beta) * h
    score = u - beta_h if minimize else u + beta_h
    alive = np.ones(u.size, dtype=bool)
    if picks is not None:
        before = np.asarray(list(picks)[:step], dtype=np.int64)
        if before.size and (before.min() < 0 or before.max() >= u.size):
            raise FeatureError(f"picks name positions outside 0..{u.size - 1}; they belong to another pool")
        alive[before] = False
    raised = np.zeros(u.size, dtype=bool)
    if increments is not None and len(increments):
        raised[increments.loc[increments["step"].to_numpy() == step, "index"].to_numpy(np.int64)] = True
    return ReplayScores(step=step, u_N=u, n_N=n, log_dist_N=log_dist, count_term_N=ct, h_N=h, beta_h_N=beta_h,
                        score_N=score, alive_N=alive, raised_N=raised, beta=float(beta))


def replay_round(scores: pd.DataFrame, increments: pd.DataFrame | None, picks: pd.DataFrame, step: int, *,
                 beta: float, d: float = 1.0, minimize: bool = False) -> ReplayScores:
    """:func:`replay_scores` on a run's stored tables: ``scores`` (pool_scores of the round, columns
    ``pool_index``, ``u``, ``log_dist``, ``n0``), ``increments`` (columns ``step``, ``pool_index``) and
    ``picks`` (the round's acquisitions: ``step``, ``pool_index``). Arrays follow ``scores``' rows."""
    # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd
    where = pd.Series(np.arange(len(scores), dtype=np.int64), index=scores["pool_index"].to_numpy(np.int64))
    inc = None
    if increments is not None:
        idx = where.reindex(increments["pool_index"].to_numpy(np.int64))
        if idx.isna().any():
            raise FeatureError("increments name pool items that are not in this round's pool scores; "
                               "pass the increments of the same round")
        inc = pd.DataFrame({"step": increments["step"].to_numpy(np.int64), "index": idx.to_numpy(np.int64)})
    order = picks.sort_values("step")["pool_index"].to_numpy(np.int64)
    pos = where.reindex(order)
    if pos.isna().any():
        raise FeatureError("picks name pool items that are not in this round's pool scores; pass the same round")
    return replay_scores(scores["u"].to_numpy(np.float64), scores["log_dist"].to_numpy(np.float64),
                         scores["n0"].to_numpy(np.float64), inc, step, beta=beta, d=d, minimize=minimize,
                         picks=pos.to_numpy(np.int64))


class BalpmPolicy:
    """BAL-PM as a :class:`~balpm.acquisition.base.Policy`, with its ablations (docs/method.md section 6).

    U comes from the state's member probabilities via ``uncertainty`` (``epistemic``; ``predictive``
    or ``none`` for the ablations); ``estimator`` ``pool_radius`` / ``kl``; ``minimize`` for the entropy
    minimiser. Deterministic: ``rng`` is not used. The round constants of the last state seen are
    kept, so ``pool_table(state)`` followed by ``select(state, ...)`` computes the radii once.
    """

    def __init__(self, beta: float = 0.01, k: int = 13, d: float = 1.0, floor: float = 1e-4,
                 normalize: str = "zscore", estimator: str = "pool_radius", uncertainty: str = "epistemic",
                 minimize: bool = False, exact_knn: bool = True, name: str = "balpm",
                 beta_mode: str = "fixed") -> None:
        self.name = name  # knobs are checked once: by the config (BalpmKnobs' fields), or by prepare_balpm
        self.beta_mode = beta_mode
        self.beta, self.k, self.d, self.floor = beta, k, d, floor
        self.normalize, self.estimator, self.uncertainty = normalize, estimator, uncertainty
        self.minimize, self.exact_knn = minimize, exact_knn
        self._cache: tuple[PoolState, BalpmRound] | None = None
        self._tracker: RadiusTracker | None = None  # incremental radii across a run's rounds (state.run)

    def prepare(self, state: PoolState, batch_size: int = 1) -> BalpmRound:
        """Round constants for ``state`` (cached for the same state object).

        When the state says where its pool sits in a run (``state.run``), the pool-radius constants
        are kept across rounds and recomputed only where items left (:class:`balpm.engine.knn.RadiusTracker`;
        ``zscore`` then uses the round-0 pool's statistics for the whole run; ``faithful`` recomputes).
        """
        # lazy: faiss, scipy, kept out of CLI start-up (the registry imports every policy module)
        from balpm.engine.knn import RadiusTracker
        if self._cache is not None and self._cache[0] is state:
            return self._cache[1]
        u = state_uncertainty(state, self.uncertainty)
        run, tracked = getattr(state, "run", None), None
        if run is not None and self.estimator == "pool_radius" and self.normalize in ("none", "zscore"):
            if self._tracker is None:
                self._tracker = RadiusTracker(self.k, self.normalize, self.exact_knn)
            tracked = self._tracker.round(run.prompts_P_D, run.start_index, run.pool_index_N, run.labelled_index_L)
        rnd = prepare_balpm(u, state.pool_prompts_N_D, state.labelled_prompts_L_D, batch_size, self.beta, self.k,
                            self.d, self.floor, self.normalize, self.estimator, self.minimize, self.exact_knn,
                            self.beta_mode, tracked=tracked)
        self._cache = (state, rnd)
        return rnd

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Greedy BAL-PM batch (``rng`` unused: the reference's selection is a deterministic argmax)."""
        check_batch(batch_size, np.asarray(state.pool_prompts_N_D).shape[0])
        return greedy_select(self.prepare(state, batch_size), batch_size)

    def pool_table(self, state: PoolState) -> pd.DataFrame:
        """Per pool position at step 0: u, radius, n0, log_dist, count_term, h, score."""
        return self.prepare(state).pool_table()

    def round_diagnostics(self, state: PoolState) -> dict[str, float]:
        """Spread of U and beta*H over the pool at step 0, their ratio, rank correlation of the score
        with H and the effective beta (:mod:`balpm.engine.diagnostics`)."""
        return self.prepare(state).diagnostics()


@dataclass(frozen=True)
class BalpmKnobs:
    """BAL-PM's knobs (docs/method.md sections 4-6); bounds and choices are checked once, by the config."""

    beta: float = knob(0.01, "weight of the entropy term (BAL-PM); >= 0, use minimize_entropy for the entropy "
                             "minimiser", ge=0, flag="--beta")
    k: int = knob(13, "k of the kNN radius, the point itself counted as neighbour 1", ge=1, flag="--k")
    d: float = knob(1.0, "weight d of the digamma term (a free weight, not the dimension)", flag="--d")
    floor: float = knob(1e-4, "added to 2*r before the log", gt=0)
    normalize: str = knob("zscore", f"prompt-feature normalisation: {', '.join(NORMALIZATIONS)}",
                          choices=NORMALIZATIONS, flag="--normalize")
    estimator: str = knob("pool_radius", f"entropy estimator: {', '.join(ESTIMATORS)}", choices=ESTIMATORS,
                          flag="--estimator")
    minimize_entropy: bool = knob(False, "ablation: U - beta*H instead of U + beta*H", flag="--minimize-entropy")
    exact_knn: bool = knob(True, "exact FAISS search (False: HNSW, approximate)")
    beta_mode: str = knob("fixed", "fixed: beta as given (the paper's); scaled: each round beta_effective = beta * "
                                   "IQR(U) / IQR(H) over the pool at step 0, so the spread of beta*H is beta times "
                                   "that of U (std when an IQR is 0; beta unchanged when U or H is constant). "
                                   "Recorded per round in rounds.parquet (beta_effective)",
                          choices=BETA_MODES, since_default="fixed")


def _build(knobs: BalpmKnobs, common: Common) -> BalpmPolicy:
    return BalpmPolicy(beta=knobs.beta, k=knobs.k, d=knobs.d, floor=knobs.floor, normalize=knobs.normalize,
                       estimator=knobs.estimator, uncertainty=common.uncertainty, minimize=knobs.minimize_entropy,
                       exact_knn=knobs.exact_knn, beta_mode=knobs.beta_mode)


register_policy(
    "balpm", knobs=BalpmKnobs, build=_build, help="greedy U + beta H with its ablations", color="#d62728",
    step_columns=("log_dist", "count_term", "h", "beta_h", "ratio", "n", "radius"),
    pool_columns=("radius", "n0", "log_dist", "count_term", "h"), abilities={"pool_table", "replay"},
    label_order=("beta", "k", "d", "floor", "normalize", "estimator", "uncertainty", "minimize_entropy", "exact_knn",
                 "beta_mode"))
