"""select_balpm: exact reproduction of the reference, brute-force checks, clusters, validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.special import digamma

from balpm.acquisition import select_balpm
from balpm.engine.entropy import replay_counts
from balpm.engine.knn import normalize_features
from balpm.errors import ConfigError, FeatureError


def reference_select(u, pool, labelled, batch_size, beta=0.01, k=13, d=1.0, floor=1e-4, minimize=False):
    """A line-by-line transcription of the reference's BAL-PM selection (docs/method.md sections 4-5).

    The normalisation slip ``fts - mean / std`` (pandas statistics, ddof=1) on the pool only; exact
    float64 distances, one row at a time, no matrix-product shortcut; ``<=``; the radius fixed for
    the batch; every score term recomputed at every pick; argmax (first maximum) over the remaining.
    """
    df = pd.DataFrame(np.asarray(pool, dtype=np.float64))
    fts = np.ascontiguousarray((df - df.mean() / df.std()).to_numpy())
    lab = np.asarray(labelled, dtype=np.float64)
    n_pool = fts.shape[0]
    radius = np.empty(n_pool)
    counts = np.zeros(n_pool, dtype=np.int64)
    for i in range(n_pool):
        dist = np.sqrt(((fts - fts[i]) ** 2).sum(axis=1))
        radius[i] = np.sort(dist)[k - 1]            # the point itself is neighbour 1
        counts[i] = int((np.sqrt(((lab - fts[i]) ** 2).sum(axis=1)) <= radius[i]).sum())
    remaining = list(range(n_pool))
    picks = []
    for _ in range(batch_size):
        rem = np.array(remaining)
        log_dist = np.log(2 * radius[rem] + floor)
        count_term = digamma(counts[rem] + 1) / d
        h = log_dist - count_term
        score = u[rem] - beta * h if minimize else u[rem] + beta * h
        j = int(rem[int(np.argmax(score))])
        picks.append(j)
        remaining.remove(j)
        rem = np.array(remaining)
        dist = np.sqrt(((fts[rem] - fts[j]) ** 2).sum(axis=1))
        counts[rem] += (dist <= radius[rem]).astype(np.int64)
    return np.array(picks)


def _data(seed, n_unique=60, n_pool=220, n_lab=40, dim=6):
    rng = np.random.default_rng(seed)
    base = (rng.normal(size=(n_unique, dim)) * rng.uniform(0.5, 3, size=dim) + 3).astype(np.float32)
    pool = base[rng.integers(0, n_unique, size=n_pool)]      # duplicated prompts
    lab = np.concatenate([base[rng.integers(0, n_unique, size=n_lab // 2)],
                          (rng.normal(size=(n_lab - n_lab // 2, dim)) + 3).astype(np.float32)])
    u = rng.random(n_pool) * 0.05
    u[rng.random(n_pool) < 0.2] = 0.02                        # ties in U as well
    return u, pool, lab


# ---------------------------------------------------------------- (e) exact reproduction
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("beta, minimize", [(1.0, False), (0.01, False), (0.5, True)])
def test_faithful_reproduces_reference_picks_in_order(seed, beta, minimize):
    u, pool, lab = _data(seed)
    ref = reference_select(u, pool, lab, 60, beta=beta, k=13, minimize=minimize)
    sel = select_balpm(u, pool, lab, 60, beta=beta, k=13, normalize="faithful", minimize=minimize)
    np.testing.assert_array_equal(sel.indices, ref)


def test_faithful_reproduces_reference_with_uncertainty_zero():
    # U = 0: every decision is an entropy comparison, ties between duplicates go to the lowest index
    u, pool, lab = _data(11)
    u = np.zeros_like(u)
    np.testing.assert_array_equal(select_balpm(u, pool, lab, 80, beta=1.0, k=5, normalize="faithful").indices,
                                  reference_select(u, pool, lab, 80, beta=1.0, k=5))


# ---------------------------------------------------------------- (c) every step vs brute force
@pytest.mark.parametrize("mode", ["zscore", "none", "faithful"])
def test_every_step_equals_a_direct_recomputation(mode):
    u, pool, lab = _data(21)
    k, beta, d, floor = 9, 0.7, 1.5, 1e-4
    sel = select_balpm(u, pool, lab, 50, beta=beta, k=k, d=d, floor=floor, normalize=mode)
    p64, l64 = normalize_features(pool, lab, mode)
    dpp = np.sqrt(((p64[:, None] - p64[None]) ** 2).sum(-1))
    r = np.sort(dpp, axis=1)[:, k - 1]
    n0 = (np.sqrt(((p64[:, None] - l64[None]) ** 2).sum(-1)) <= r[:, None]).sum(1)
    picked: list[int] = []
    for step, row in sel.steps.iterrows():
        # n(x) from scratch: labelled prompts plus earlier picks within r(x)
        n = n0 + (dpp[:, picked] <= r[:, None]).sum(1) if picked else n0.copy()
        np.testing.assert_array_equal(replay_counts(n0, sel.increments, step)[
            np.setdiff1d(np.arange(len(u)), picked)], n[np.setdiff1d(np.arange(len(u)), picked)])
        h = np.log(2 * r + floor) - digamma(n + 1) / d
        score = u + beta * h
        score[picked] = -np.inf
        j = int(np.argmax(score))
        assert row["index"] == j
        assert row["n"] == n[j] and row["radius"] == r[j]
        assert row["h"] == pytest.approx(h[j], rel=1e-12, abs=1e-12)
        assert row["score"] == pytest.approx(score[j], rel=1e-12, abs=1e-12)
        assert row["ratio"] == pytest.approx(u[j] / score[j], rel=1e-9)
        assert row["beta_h"] == pytest.approx(beta * h[j], rel=1e-12, abs=1e-12)
        picked.append(j)
    # increments never name a pool position that was already picked at that step
    for step, grp in sel.increments.groupby("step"):
        assert not set(grp["index"]) & set(sel.indices[: step + 1])


def test_kl_steps_equal_a_direct_recomputation():
    u, pool, lab = _data(22)
    k, beta = 4, 0.8
    sel = select_balpm(u, pool, lab, 40, beta=beta, k=k, estimator="kl")
    p64, l64 = normalize_features(pool, lab, "zscore")
    picked: list[int] = []
    for _, row in sel.steps.iterrows():
        ref_set = np.concatenate([l64, p64[picked]]) if picked else l64
        rho = np.sort(np.sqrt(((p64[:, None] - ref_set[None]) ** 2).sum(-1)), axis=1)[:, k - 1]
        score = u + beta * np.log(2 * rho + 1e-4)
        score[picked] = -np.inf
        j = int(np.argmax(score))
        assert row["index"] == j and row["radius"] == rho[j]
        picked.append(j)


def test_hnsw_radii_run_and_stay_close():
    u, pool, lab = _data(23)
    exact = select_balpm(u, pool, lab, 20, beta=1.0)
    approx = select_balpm(u, pool, lab, 20, beta=1.0, exact_knn=False)
    assert len(set(approx.indices)) == 20
    assert len(set(exact.indices) & set(approx.indices)) >= 15


# ---------------------------------------------------------------- (f) spreading across clusters
def _clustered_world(seed):
    rng = np.random.default_rng(seed)
    sizes = [600, 80, 60, 45, 35, 30, 25, 20, 15, 12]
    centres = rng.normal(size=(len(sizes), 2)) * 12
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = (centres[labels] + rng.normal(size=(labels.size, 2)) * 0.6).astype(np.float32)
    # BALD's uncertainty: bumpy and concentrated in the big cluster
    u = np.where(labels == 0, 0.3 + 0.05 * np.sin(3 * x[:, 0]) + 0.02 * rng.random(labels.size),
                 0.02 * rng.random(labels.size))
    lab = x[rng.choice(np.flatnonzero(labels == 0), 20, replace=False)]
    return u, x, lab, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_entropy_alone_spreads_the_batch_bald_does_not(seed):
    u, x, lab, labels = _clustered_world(seed)
    bald_batch = np.argsort(-u, kind="stable")[:30]
    spread = select_balpm(np.zeros_like(u), x, lab, 30, beta=1.0).indices
    n_bald = len(set(labels[bald_batch]))
    n_spread = len(set(labels[spread]))
    assert n_bald == 1
    assert n_spread >= 8, n_spread
    # with uncertainty, a small beta stays in the uncertain cluster but spreads inside it; a larger
    # beta also visits the other clusters
    mixed = select_balpm(u, x, lab, 30, beta=0.05).indices
    assert pdist(x[mixed]).mean() > pdist(x[bald_batch]).mean()
    assert len(set(labels[select_balpm(u, x, lab, 30, beta=0.2).indices])) >= 5


def test_teaching_world_entropy_spreads_bald_piles_up():
    synthetic = pytest.importorskip("balpm.data.synthetic")
    table, feats = synthetic.teaching_world(seed=0)
    train = table[table["split"] == "train"].reset_index(drop=True)
    x = feats.prompt_rows(train["prompt_id"].to_numpy())
    cluster = train["cluster"].to_numpy()
    big = np.bincount(cluster).argmax()
    rng = np.random.default_rng(0)
    # a bumpy uncertainty concentrated in the largest cluster (what BALD sees there)
    u = np.where(cluster == big, 0.2 + 0.05 * np.sin(4 * x[:, 0]) * np.cos(3 * x[:, 1]), 0.01) \
        + 0.005 * rng.random(len(train))
    lab_idx = rng.choice(len(train), 40, replace=False)
    pool_idx = np.setdiff1d(np.arange(len(train)), lab_idx)
    batch = 30
    bald_clusters = len(set(cluster[pool_idx][np.argsort(-u[pool_idx], kind="stable")[:batch]]))
    sel = select_balpm(np.zeros(pool_idx.size), x[pool_idx], x[lab_idx], batch, beta=1.0)
    spread = set(cluster[pool_idx][sel.indices])
    n_clusters = len(set(cluster))
    assert bald_clusters == 1
    # the entropy term covers every other cluster; the largest one (a tight, dense blob in the
    # teaching world) gets at most its share of the batch
    assert spread >= set(range(n_clusters)) - {big}, (spread, n_clusters)
    assert np.mean(cluster[pool_idx][sel.indices] == big) <= np.mean(cluster == big)


# ---------------------------------------------------------------- validation before any work
@pytest.mark.parametrize("change, error, match", [
    (dict(batch_size=500), ConfigError, "exceeds the pool size"),
    (dict(batch_size=0), ConfigError, "batch size"),
    (dict(k=220), ConfigError, "below the pool size"),
    (dict(k=0), ConfigError, "k must be"),
    (dict(beta=-0.1), ConfigError, "beta must be"),
    (dict(beta=float("nan")), ConfigError, "beta must be"),
    (dict(d=0.0), ConfigError, "d must be"),
    (dict(floor=0.0), ConfigError, "floor must be"),
    (dict(normalize="l2"), ConfigError, "unknown normalisation"),
    (dict(estimator="ksg"), ConfigError, "unknown estimator"),
    (dict(nan_u=True), FeatureError, "uncertainty scores contain NaN"),
    (dict(nan_pool=True), FeatureError, "pool prompt features contain NaN"),
    (dict(inf_lab=True), FeatureError, "labelled prompt features contain NaN or inf"),
    (dict(short_u=True), FeatureError, "must match one to one"),
    (dict(lab_dim=True), FeatureError, "dimensions"),
    (dict(kl_few=True), ConfigError, "at least k"),
])
def test_bad_input_stops_with_one_line(change, error, match):
    u, pool, lab = _data(30)
    kwargs = dict(batch_size=10, beta=0.01, k=13, d=1.0, floor=1e-4, normalize="zscore", estimator="pool_radius")
    kwargs.update({key: v for key, v in change.items() if key in kwargs})
    if change.get("nan_u"):
        u = u.copy()
        u[3] = np.nan
    if change.get("nan_pool"):
        pool = pool.copy()
        pool[5, 1] = np.nan
    if change.get("inf_lab"):
        lab = lab.copy()
        lab[0, 0] = np.inf
    if change.get("short_u"):
        u = u[:-1]
    if change.get("lab_dim"):
        lab = lab[:, :-1]
    if change.get("kl_few"):
        kwargs["estimator"], lab = "kl", lab[:5]
    with pytest.raises(error, match=match) as info:
        select_balpm(u, pool, lab, **kwargs)
    assert "\n" not in str(info.value)
