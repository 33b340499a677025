"""Incremental radii (issue 9 item 3): kept across rounds, equal to a from-scratch computation every round."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balpm.acquisition.balpm import BalpmRound, BalpmPolicy, greedy_select, prepare_balpm
from balpm.acquisition.base import PoolState, RunPool
from balpm.engine.knn import RadiusTracker, _csr_pairs, build_geometry, labelled_counts, pool_radii
from balpm.errors import ConfigError, FeatureError


def _world(n: int = 900, d: int = 6, unique: int = 500, seed: int = 0) -> np.ndarray:
    """Clustered prompts, many repeated (several comparisons per prompt), some clusters tight."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d)) * 3
    lab = rng.integers(0, 6, size=unique)
    protos = (centres[lab] + rng.standard_normal((unique, d)) * rng.uniform(0.05, 1.0, size=(unique, 1)))
    return protos.astype(np.float32)[rng.integers(0, unique, size=n)]


def _from_scratch(prompts, pool_index, lab_index, k, normalizer, u, batch):
    """The ordinary (non-incremental) computation on the current pool with the given statistics."""
    geo = build_geometry(prompts[pool_index], prompts[lab_index], normalizer=normalizer)
    radius, mq, mb = pool_radii(geo, k)
    n0 = labelled_counts(geo, radius)
    g = geo.pool.group_N
    rnd = prepare_balpm(u, prompts[pool_index], prompts[lab_index], batch, beta=0.5, k=k, normalize=normalizer.mode)
    # swap in the fixed-statistics constants (prepare_balpm fits its own statistics per round)
    m = geo.pool.size
    items_ptr, items_idx = _csr_pairs(g, np.arange(g.size), m)
    rev_ptr, rev_idx = _csr_pairs(mb, mq, m)
    fixed = BalpmRound(u_N=rnd.u_N, geometry=geo, estimator="pool_radius", beta=0.5, d=1.0, floor=1e-4,
                       minimize=False, k=k, radius_M=radius, n0_M=n0, rev_ptr=rev_ptr, rev_idx=rev_idx,
                       items_ptr=items_ptr, items_idx=items_idx)
    return radius[g], n0[g], greedy_select(fixed, batch).indices


@pytest.mark.parametrize("mode", ["zscore", "none"])
def test_incremental_equals_from_scratch_every_round(mode):
    prompts = _world()
    n, initial, batch, k = len(prompts), 40, 60, 7
    labelled = list(range(initial))
    start = np.arange(initial, n)
    tracker = RadiusTracker(k, mode)
    rng = np.random.default_rng(5)
    recomputed = []
    for rnd_i in range(5):
        remaining = np.setdiff1d(np.arange(n), labelled)
        u = rng.random(remaining.size) * 0.1
        tr = tracker.round(prompts, start, remaining, np.asarray(labelled))
        g = tr.geometry.pool.group_N
        r_scratch, n_scratch, picks_scratch = _from_scratch(prompts, remaining, np.asarray(labelled), k,
                                                            tracker.normalizer, u, batch)
        assert np.array_equal(tr.radius_M[g], r_scratch)
        assert np.array_equal(tr.n0_M[g], n_scratch)
        rnd = prepare_balpm(u, prompts[remaining], prompts[labelled], batch, beta=0.5, k=k, normalize=mode,
                            tracked=tr)
        picks = greedy_select(rnd, batch).indices
        assert np.array_equal(picks, picks_scratch)
        recomputed.append(tr.recomputed)
        labelled.extend(remaining[picks].tolist())
    # round 0 computes every prompt, later rounds only those that lost a neighbour
    assert recomputed[0] == len(np.unique(prompts[start], axis=0))
    assert all(0 < r < recomputed[0] for r in recomputed[1:])


def test_tracker_rebuilds_for_a_pool_that_does_not_continue():
    prompts = _world(n=400, unique=300, seed=2)
    start = np.arange(20, 400)
    tracker = RadiusTracker(5, "zscore")
    first = tracker.round(prompts, start, start, np.arange(20))
    # a pool that grew back (e.g. another run) is recomputed in full, with the same answer
    later = tracker.round(prompts, start[50:], start[50:], np.r_[np.arange(20), start[:50]])
    again = tracker.round(prompts, start, start, np.arange(20))
    assert later.recomputed < first.recomputed and again.recomputed == first.recomputed
    assert np.array_equal(again.radius_M, first.radius_M) and np.array_equal(again.n0_M, first.n0_M)
    with pytest.raises(FeatureError, match="round-0 pool"):
        tracker.round(prompts, start, np.arange(10, 400), np.arange(10))
    with pytest.raises(ConfigError, match="faithful"):
        RadiusTracker(5, "faithful")


def test_policy_keeps_state_only_with_a_run_context_and_not_for_faithful():
    prompts = _world(n=300, unique=200, seed=3)
    probs = np.random.default_rng(0).random((280, 3))
    run = RunPool(prompts, np.arange(20, 300), np.arange(20, 300), np.arange(20))
    state = PoolState(probs, prompts[20:], prompts[:20], run=run)
    pol = BalpmPolicy(k=5)
    a = pol.select(state, 10, np.random.default_rng(0)).indices
    assert pol._tracker is not None
    plain = BalpmPolicy(k=5).select(PoolState(probs, prompts[20:], prompts[:20]), 10, np.random.default_rng(0))
    assert np.array_equal(a, plain.indices)  # round 0: round-0 statistics are the pool's own
    faithful = BalpmPolicy(k=5, normalize="faithful")
    faithful.select(state, 10, np.random.default_rng(0))
    assert faithful._tracker is None


def test_a_resumed_run_is_bit_identical(tmp_path):
    from balpm.experiment import loop, runs
    from balpm.config import RunConfig

    cfg = RunConfig().replace(data={"synthetic": "paper", "synthetic_size": 1500, "synthetic_dim": 12},
                              model={"ensemble_size": 2, "hidden": (16,), "max_epochs": 1, "device": "cpu"},
                              loop={"pool_size": 600, "initial": 30, "batch_size": 40, "rounds": 4,
                                    "save_pool_scores": False})
    whole = loop.run(cfg, tmp_path / "a", progress=False)
    original = runs.RunWriter.commit_round

    def crash_after_two(self, t, *a, **kw):
        original(self, t, *a, **kw)
        if t == 1:
            raise KeyboardInterrupt

    runs.RunWriter.commit_round = crash_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run(cfg, tmp_path / "b", progress=False)
    finally:
        runs.RunWriter.commit_round = original
    resumed = loop.run(cfg, tmp_path / "b", resume=True, progress=False)
    a = pd.read_parquet(whole / "acquisitions.parquet")
    b = pd.read_parquet(resumed / "acquisitions.parquet")
    assert len(a) == 3 * 40
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
