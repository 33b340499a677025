"""One template test class run for every policy and ablation (scikit-activeml style), plus each rule."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from balpm.acquisition import PoolState, Selection, make_policy, select_balpm
from balpm.acquisition.bald import BALDPolicy
from balpm.acquisition.base import RunPool
from balpm.acquisition.stochastic import PowerBALD, SoftmaxBALD, SoftRankBALD
from balpm.config import POLICIES, AcquisitionConfig
from balpm.errors import ConfigError, FeatureError
from balpm.engine.uncertainty import bald

BALPM_COLUMNS = ["step", "index", "score", "u", "log_dist", "count_term", "h", "beta_h", "ratio", "n", "radius"]

CONFIGS = {name: AcquisitionConfig(policy=name, coldness=2.0) for name in POLICIES}
CONFIGS.update({
    "balpm-no-uncertainty": AcquisitionConfig(policy="balpm", uncertainty="none"),
    "balpm-predictive": AcquisitionConfig(policy="balpm", uncertainty="predictive"),
    "balpm-kl": AcquisitionConfig(policy="balpm", estimator="kl"),
    "balpm-minimize": AcquisitionConfig(policy="balpm", minimize_entropy=True),
    "balpm-faithful": AcquisitionConfig(policy="balpm", normalize="faithful"),
    "balpm-none-norm": AcquisitionConfig(policy="balpm", normalize="none", beta=1.0),
    "balpm-hnsw": AcquisitionConfig(policy="balpm", exact_knn=False),
})


def _state(seed=0, n=150, n_lab=30, dim=6, k_members=5, pairs=False):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(50, dim)).astype(np.float32)
    pool = base[rng.integers(0, 50, size=n)]           # repeated prompts, as in real data
    lab = base[rng.integers(0, 50, size=n_lab)]
    probs = rng.beta(2, 2, size=(n, k_members))
    run = None
    if pairs:  # pair features (labelled first, then the pool) for policies that read them (dopt)
        pair_features = rng.normal(size=(n_lab + n, 2, dim)).astype(np.float32)
        pool_idx = np.arange(n_lab, n_lab + n)
        run = RunPool(np.concatenate([lab, pool]), pool_idx, pool_idx, np.arange(n_lab), pairs_F_2_D=pair_features)
    return PoolState(probs_N_K=probs, pool_prompts_N_D=pool, labelled_prompts_L_D=lab, run=run)


@pytest.mark.parametrize("name", sorted(CONFIGS))
class TestEveryPolicy:
    """The contract every policy honours."""

    batch = 17

    def _select(self, name, seed, state=None):
        policy = make_policy(CONFIGS[name])
        return policy.select(state or _state(pairs=CONFIGS[name].policy == "dopt"), self.batch,
                             np.random.default_rng(seed))

    def test_reproducible_under_a_seed(self, name):
        a, b = self._select(name, 3), self._select(name, 3)
        np.testing.assert_array_equal(a.indices, b.indices)
        pd.testing.assert_frame_equal(a.steps, b.steps)

    def test_batch_size_no_repeats_and_pool_range(self, name):
        sel = self._select(name, 0)
        assert isinstance(sel, Selection)
        assert sel.indices.shape == (self.batch,) and sel.indices.dtype.kind == "i"
        assert len(set(sel.indices.tolist())) == self.batch
        assert sel.indices.min() >= 0 and sel.indices.max() < 150

    def test_steps_table(self, name):
        sel = self._select(name, 0)
        assert len(sel.steps) == self.batch
        assert list(sel.steps.columns[:3]) == ["step", "index", "score"]
        np.testing.assert_array_equal(sel.steps["step"], np.arange(self.batch))
        np.testing.assert_array_equal(sel.steps["index"], sel.indices)
        if CONFIGS[name].policy == "balpm":
            assert list(sel.steps.columns) == BALPM_COLUMNS
            assert np.isfinite(sel.steps["score"]).all()

    def test_batch_larger_than_pool_is_refused(self, name):
        with pytest.raises(ConfigError, match="exceeds the pool size"):
            make_policy(CONFIGS[name]).select(_state(n=20), 21, np.random.default_rng(0))

    def test_mismatched_probabilities_are_refused(self, name):
        s = _state()
        bad = dataclasses.replace(s, probs_N_K=s.probs_N_K[:-1])
        with pytest.raises(FeatureError, match="match"):
            make_policy(CONFIGS[name]).select(bad, 5, np.random.default_rng(0))


def test_make_policy_unknown():
    with pytest.raises(ConfigError, match="unknown policy"):
        make_policy(AcquisitionConfig(policy="no_such_policy"))
    with pytest.raises(ConfigError, match="unknown uncertainty"):
        make_policy(AcquisitionConfig(policy="bald", uncertainty="margin"))


def test_random_is_uniform_from_the_generator():
    state = _state()
    sel = make_policy(AcquisitionConfig(policy="random")).select(state, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(sel.indices, np.random.default_rng(5).choice(150, size=10, replace=False))
    other = make_policy(AcquisitionConfig(policy="random")).select(state, 10, np.random.default_rng(6))
    assert set(sel.indices) != set(other.indices)


def test_bald_is_top_b_with_ties_to_lowest_index():
    probs = np.array([[0.5, 0.5], [0.1, 0.9], [0.3, 0.7], [0.1, 0.9], [0.9, 0.9]])
    state = PoolState(probs, np.arange(10.0).reshape(5, 2), np.zeros((0, 2)))
    sel = BALDPolicy().select(state, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(sel.indices, [1, 3, 2])  # 1 and 3 tie: lower index first
    np.testing.assert_allclose(sel.steps["score"], bald(probs)[[1, 3, 2]])


@pytest.mark.parametrize("cls, transform", [
    (SoftmaxBALD, lambda u: u),
    (PowerBALD, lambda u: np.log(np.maximum(u, np.finfo(float).tiny))),
    (SoftRankBALD, None),
])
def test_stochastic_family_is_top_b_of_transform_plus_gumbel_from_rng(cls, transform):
    state = _state(1)
    u = bald(state.probs_N_K)
    if transform is None:  # -log rank, rank 1 = highest U
        rank = np.empty(u.size)
        rank[np.argsort(-u, kind="stable")] = np.arange(1, u.size + 1)
        base = -np.log(rank)
    else:
        base = transform(u)
    coldness = 3.0
    noise = np.random.default_rng(11).gumbel(0.0, 1.0 / coldness, size=u.size)
    expected = np.argsort(-(base + noise), kind="stable")[:12]
    sel = cls(coldness=coldness).select(state, 12, np.random.default_rng(11))
    np.testing.assert_array_equal(sel.indices, expected)
    np.testing.assert_allclose(sel.steps["noise"], noise[expected])


def test_very_cold_softmax_is_bald_and_hot_is_not():
    state = _state(2)
    top = BALDPolicy().select(state, 10, None).indices
    cold = SoftmaxBALD(coldness=1e9).select(state, 10, np.random.default_rng(0)).indices
    hot = SoftmaxBALD(coldness=1e-3).select(state, 10, np.random.default_rng(0)).indices
    np.testing.assert_array_equal(cold, top)
    assert len(set(hot) & set(top)) < 10


def test_power_bald_handles_zero_uncertainty():
    probs = np.array([[0.5, 0.5]] * 4 + [[0.1, 0.9]])    # U = 0 for the first four
    state = PoolState(probs, np.arange(10.0).reshape(5, 2), np.zeros((0, 2)))
    sel = PowerBALD(coldness=8).select(state, 2, np.random.default_rng(0))
    assert sel.indices[0] == 4 and np.isfinite(sel.steps["score"]).all()


def test_balpm_beta_zero_equals_bald():
    state = _state(4)
    top = BALDPolicy().select(state, 25, None).indices
    u = bald(state.probs_N_K)
    for est in ("pool_radius", "kl"):
        sel = select_balpm(u, state.pool_prompts_N_D, state.labelled_prompts_L_D, 25, beta=0.0, estimator=est)
        np.testing.assert_array_equal(sel.indices, top)
    pol = make_policy(AcquisitionConfig(policy="balpm", beta=0.0))
    np.testing.assert_array_equal(pol.select(state, 25, None).indices, top)


def test_balpm_pool_table_matches_the_first_step():
    state = _state(5)
    pol = make_policy(AcquisitionConfig(policy="balpm", beta=0.5))
    table = pol.pool_table(state)
    assert list(table.columns) == ["u", "radius", "n0", "log_dist", "count_term", "h", "score"]
    assert len(table) == 150
    sel = pol.select(state, 5, None)
    j = sel.indices[0]
    assert j == int(np.argmax(table["score"].to_numpy()))
    first = sel.steps.iloc[0]
    for col in ("u", "radius", "log_dist", "count_term", "h", "score"):
        assert first[col] == table[col].iloc[j]
    assert first["n"] == table["n0"].iloc[j]
    np.testing.assert_allclose(table["h"], table["log_dist"] - table["count_term"])
    np.testing.assert_allclose(table["score"], table["u"] + 0.5 * table["h"])


def test_balpm_ablation_scores():
    state = _state(6)
    u = bald(state.probs_N_K)
    none = make_policy(AcquisitionConfig(policy="balpm", uncertainty="none")).select(state, 8, None)
    assert (none.steps["u"] == 0).all()
    mini = make_policy(AcquisitionConfig(policy="balpm", minimize_entropy=True, beta=0.3)).select(state, 8, None)
    np.testing.assert_allclose(mini.steps["score"], mini.steps["u"] - mini.steps["beta_h"])
    np.testing.assert_allclose(mini.steps["u"], u[mini.indices])
    kl = make_policy(AcquisitionConfig(policy="balpm", estimator="kl")).select(state, 8, None)
    assert (kl.steps["count_term"] == 0).all() and kl.steps["n"].isna().all() and kl.increments is None


@pytest.mark.parametrize("policy, paper", [("softmax_bald", 10000.0), ("power_bald", 8.0), ("softrank_bald", 1.0)])
def test_coldness_zero_takes_the_papers_value_and_an_explicit_one_wins(policy, paper):
    from balpm.config import AcquisitionConfig
    from balpm.acquisition import make_policy

    assert make_policy(AcquisitionConfig(policy=policy)).coldness == paper
    assert make_policy(AcquisitionConfig(policy=policy, coldness=3.0)).coldness == 3.0
