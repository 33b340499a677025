"""BatchBALD, EPIG, k-center coreset and D-optimal design: the template every policy passes, each
against an independent computation (batchbald-redux, brute-force loops, a direct matrix inverse), and
resume bit-identical through balpm.experiment.loop.run on the teaching world."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from balpm.acquisition.base import PoolState, RunPool, Selection
from balpm.acquisition.batchbald import (
    BatchBALDPolicy,
    joint_entropy,
    member_configurations,
    sample_configurations,
    sampled_configurations,
    select_batchbald,
)
from balpm.acquisition.coreset import CoresetPolicy, select_coreset
from balpm.acquisition.dopt import DOptPolicy, select_dopt
from balpm.acquisition.epig import EPIGPolicy, epig_scores, select_epig
from balpm.engine.uncertainty import bald
from balpm.errors import ConfigError, FeatureError
from balpm.experiment import loop, runs

FACTORIES = {
    "batchbald": lambda: BatchBALDPolicy(num_samples=64),
    "epig": lambda: EPIGPolicy(target_size=40),
    "coreset": lambda: CoresetPolicy(),
    "dopt": lambda: DOptPolicy(lam=0.5),
}


def _state(seed=0, n=150, n_lab=30, dim=6, k_members=5, pair_dim=8):
    """A pool of n rows after n_lab labelled ones, with repeated prompts and pair features (run positions:
    labelled first, then the pool)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(50, dim)).astype(np.float32)
    prompts = base[rng.integers(0, 50, size=n_lab + n)]
    pairs = rng.normal(size=(n_lab + n, 2, pair_dim)).astype(np.float32)
    lab_idx, pool_idx = np.arange(n_lab), np.arange(n_lab, n_lab + n)
    run = RunPool(prompts, pool_idx, pool_idx, lab_idx, pairs_F_2_D=pairs)
    probs = rng.beta(2, 2, size=(n, k_members))
    return PoolState(probs_N_K=probs, pool_prompts_N_D=prompts[pool_idx], labelled_prompts_L_D=prompts[lab_idx],
                     run=run)


@pytest.mark.parametrize("name", sorted(FACTORIES))
class TestTemplate:
    """The contract every policy honours (as tests/test_policies.py's template)."""

    batch = 17

    def _select(self, name, seed, state=None):
        return FACTORIES[name]().select(state or _state(), self.batch, np.random.default_rng(seed))

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
        assert list(sel.steps.columns[:4]) == ["step", "index", "score", "u"]
        np.testing.assert_array_equal(sel.steps["step"], np.arange(self.batch))
        np.testing.assert_array_equal(sel.steps["index"], sel.indices)
        assert np.isfinite(sel.steps["score"]).all()
        np.testing.assert_allclose(sel.steps["u"], bald(_state().probs_N_K)[sel.indices])

    def test_pool_table_holds_the_round_start_scores(self, name):
        state = _state()
        policy = FACTORIES[name]()
        sel = policy.select(state, self.batch, np.random.default_rng(0))
        table = policy.pool_table(state)
        assert list(table.columns) == ["u", "score"] and len(table) == 150
        np.testing.assert_allclose(table["u"], bald(state.probs_N_K))
        first = sel.indices[0]
        assert table["score"][first] == pytest.approx(sel.steps["score"][0], rel=1e-6)
        assert table["score"][first] == pytest.approx(table["score"].max(), rel=1e-6)  # step 0 takes the best

    @pytest.mark.parametrize("bad", [0, -1, 2.5, 151])
    def test_bad_batch_sizes_are_refused(self, name, bad):
        with pytest.raises(ConfigError, match="batch size"):
            FACTORIES[name]().select(_state(), bad, np.random.default_rng(0))

    def test_mismatched_probabilities_are_refused(self, name):
        s = _state()
        with pytest.raises(FeatureError, match="match"):
            FACTORIES[name]().select(dataclasses.replace(s, probs_N_K=s.probs_N_K[:-1]), 5, np.random.default_rng(0))


# ---- BatchBALD ----------------------------------------------------------------------------------
def _redux(probs, batch, num_samples, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("batchbald_redux")
    import toma
    from batchbald_redux.batchbald import get_batchbald_batch

    # toma runs gc.collect() around every chunk (for CUDA memory): seconds in a test process's heap, no GPU here
    monkeypatch.setattr(toma, "gc_cuda", lambda: None)

    log_probs = torch.from_numpy(np.stack([np.log1p(-probs), np.log(probs)], axis=2))  # (N, K, 2): class 1 = first
    return get_batchbald_batch(log_probs, batch, num_samples, dtype=torch.double)


@pytest.mark.parametrize("seed", [0, 1])
def test_batchbald_matches_batchbald_redux_exact(seed, monkeypatch):
    """Same member probabilities, exact joint (2^b <= num_samples): the same picks and joint MI values."""
    probs = np.random.default_rng(seed).beta(0.6, 0.6, size=(40, 6))
    ref = _redux(probs, 5, 1000, monkeypatch)
    sel = select_batchbald(probs, 5, np.random.default_rng(0), num_samples=1000)
    assert sel.indices.tolist() == list(ref.indices)
    np.testing.assert_allclose(sel.steps["joint_mi"], ref.scores, rtol=1e-9, atol=1e-12)
    assert (sel.steps["exact"] == 1).all()


def test_batchbald_first_pick_is_bald_and_gains_sum_to_the_joint_mi():
    probs = np.random.default_rng(5).beta(0.6, 0.6, size=(80, 4))
    sel = select_batchbald(probs, 6, np.random.default_rng(0), num_samples=1000)
    assert sel.indices[0] == int(np.argmax(bald(probs)))
    np.testing.assert_allclose(np.cumsum(sel.steps["score"]), sel.steps["joint_mi"], atol=1e-12)
    assert (np.diff(sel.steps["score"]) <= 1e-12).all()  # submodular: gains never grow


def test_batchbald_lazy_evaluation_picks_as_full_evaluation(monkeypatch):
    """Lazy steps compute few gains yet pick as full evaluation, exact and sampled steps alike."""
    import balpm.acquisition.batchbald as bb

    probs = np.random.default_rng(6).beta(0.6, 0.6, size=(3000, 5))
    monkeypatch.setattr(bb, "EVAL_BLOCK", 128)
    lazy = select_batchbald(probs, 14, np.random.default_rng(0), num_samples=256)
    monkeypatch.setattr(bb, "EVAL_BLOCK", 10**9)
    full = select_batchbald(probs, 14, np.random.default_rng(0), num_samples=256)
    np.testing.assert_array_equal(lazy.indices, full.indices)
    np.testing.assert_allclose(lazy.steps["joint_mi"], full.steps["joint_mi"], rtol=1e-12)
    assert (full.steps["evaluated"] >= 3000 - 14).all()
    assert lazy.steps["evaluated"].sum() < 0.5 * full.steps["evaluated"].sum()
    assert (lazy.steps["exact"] == 0).sum() == 5  # step t sees t picks: exact while 2^t <= 256 (steps 0-8)


def test_batchbald_sampled_joint_entropy_estimates_the_exact_one():
    probs = np.random.default_rng(3).beta(0.6, 0.6, size=(6, 5))
    exact = joint_entropy(member_configurations(probs))
    _, labels = sample_configurations(probs, 20000, np.random.default_rng(0))
    est = joint_entropy(sampled_configurations(probs, labels), np.full(20000, 1 / 20000))
    assert abs(est - exact) < 0.03 * exact


def test_batchbald_switches_to_sampled_configurations_and_stays_seeded():
    probs = np.random.default_rng(4).beta(0.6, 0.6, size=(60, 5))
    a = select_batchbald(probs, 8, np.random.default_rng(1), num_samples=8)
    b = select_batchbald(probs, 8, np.random.default_rng(1), num_samples=8)
    pd.testing.assert_frame_equal(a.steps, b.steps)
    assert a.steps["exact"].tolist() == [1.0] * 4 + [0.0] * 4  # 2^t <= 8 for t <= 3 picks
    exact = select_batchbald(probs, 8, np.random.default_rng(1), num_samples=1 << 12)
    np.testing.assert_array_equal(a.indices[:4], exact.indices[:4])
    with pytest.raises(ConfigError, match="num_samples"):
        BatchBALDPolicy(num_samples=1)


# ---- EPIG ----------------------------------------------------------------------------------------
def _epig_brute(p, q):
    out = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        vals = []
        for t in range(q.shape[0]):
            mi = 0.0
            for y, ys in itertools.product((0, 1), repeat=2):
                pk = p[i] if y else 1 - p[i]
                qk = q[t] if ys else 1 - q[t]
                joint = float(np.mean(pk * qk))
                if joint > 0:
                    mi += joint * math.log(joint / (np.mean(pk) * np.mean(qk)))
            vals.append(mi)
        out[i] = np.mean(vals)
    return out


def test_epig_matches_a_brute_force_double_loop():
    rng = np.random.default_rng(0)
    p, q = rng.beta(0.5, 0.5, size=(12, 4)), rng.beta(0.5, 0.5, size=(5, 4))
    np.testing.assert_allclose(epig_scores(p, q), _epig_brute(p, q), rtol=1e-10, atol=1e-14)


def test_epig_is_bounded_by_bald_and_zero_when_members_agree():
    rng = np.random.default_rng(1)
    p = rng.beta(0.5, 0.5, size=(300, 6))
    p[:20] = p[:20, :1]                                  # members agree on the first 20 rows
    e = epig_scores(p, p[rng.choice(300, 50, replace=False)])
    assert (e <= bald(p) + 1e-12).all() and (e >= 0).all()
    np.testing.assert_allclose(e[:20], 0.0, atol=1e-12)
    assert (e[20:] > 0).all()


def test_epig_targets_come_from_the_rng():
    p = np.random.default_rng(2).beta(0.5, 0.5, size=(200, 5))
    a, b = select_epig(p, 10, np.random.default_rng(0), 20), select_epig(p, 10, np.random.default_rng(1), 20)
    assert not np.array_equal(a.steps["score"], b.steps["score"])  # other targets, other estimates
    full = select_epig(p, 10, np.random.default_rng(0), 1000)   # target_size above the pool: every row
    np.testing.assert_allclose(full.steps["score"], epig_scores(p, p)[full.indices])
    with pytest.raises(ConfigError, match="target_size"):
        EPIGPolicy(target_size=0)
    with pytest.raises(ConfigError, match="call select"):  # its targets come from select's rng
        EPIGPolicy().pool_table(_state())


def _test_state(seed=0, n_test=60):
    """``_state`` plus a test split in the run's pair features and a fixed 'ensemble' (K = 5 logistic
    members on the pair-feature difference) that records the rows it is asked to predict."""
    s = _state(seed)
    rng = np.random.default_rng(100 + seed)
    n_run = s.run.pairs_F_2_D.shape[0]
    test_pairs = rng.normal(loc=0.7, size=(n_test, 2, 8)).astype(np.float32)  # shifted away from the pool
    pairs = np.concatenate([s.run.pairs_F_2_D, test_pairs])
    w = rng.normal(size=(5, 8))
    asked: list[np.ndarray] = []

    def member_probs(x):
        asked.append(np.asarray(x).copy())
        return 1.0 / (1.0 + np.exp(-(x[:, 0] - x[:, 1]) @ w.T))

    run = dataclasses.replace(s.run, pairs_F_2_D=pairs, test_rows_F=np.arange(n_run, n_run + n_test),
                              member_probs=member_probs)
    return dataclasses.replace(s, run=run), test_pairs, member_probs, asked


def test_epig_test_targets_are_a_seeded_sample_of_the_test_rows_only():
    state, test_pairs, member_probs, asked = _test_state()
    sel = EPIGPolicy(target_size=25, targets="test").select(state, 10, np.random.default_rng(3))
    # the targets: 25 test rows drawn from the same rng, predicted by the round's ensemble
    idx = np.sort(np.random.default_rng(3).choice(len(test_pairs), size=25, replace=False))
    expected = epig_scores(state.probs_N_K, member_probs(test_pairs[idx]))
    np.testing.assert_allclose(sel.steps["score"], np.sort(expected)[::-1][:10], rtol=1e-12)
    assert set(sel.indices.tolist()) == set(np.argsort(-expected, kind="stable")[:10].tolist())
    # only test rows were predicted (none of the pool's or the labelled set's pairs)
    np.testing.assert_array_equal(asked[0], test_pairs[idx])
    # deterministic: same rng seed, same batch and scores; another seed draws other targets
    again = EPIGPolicy(target_size=25, targets="test").select(state, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(again.indices, sel.indices)
    np.testing.assert_array_equal(again.steps["score"], sel.steps["score"])
    other = EPIGPolicy(target_size=25, targets="test").select(state, 10, np.random.default_rng(4))
    assert not np.array_equal(other.steps["score"], sel.steps["score"])
    # the pool's targets give other scores on the same state and rng
    pool = EPIGPolicy(target_size=25).select(state, 10, np.random.default_rng(3))
    assert not np.allclose(pool.steps["score"], sel.steps["score"])


def test_epig_test_targets_without_test_rows_or_model_is_one_line_error():
    state, *_ = _test_state()
    for bad in (dataclasses.replace(state, run=None), dataclasses.replace(state, run=dataclasses.replace(
            state.run, member_probs=None)), dataclasses.replace(state, run=dataclasses.replace(
            state.run, test_rows_F=np.array([], dtype=np.int64)))):
        with pytest.raises(ConfigError, match="targets=test needs the test rows") as e:
            EPIGPolicy(targets="test").select(bad, 5, np.random.default_rng(0))
        assert "\n" not in str(e.value) and "targets=pool" in str(e.value)
    with pytest.raises(ConfigError, match="targets"):
        EPIGPolicy(targets="valid")


def test_epig_test_targets_through_the_loop_use_the_test_split_and_differ_from_pool_targets(tmp_path, monkeypatch):
    """A world whose test set is shifted from its pool (``test=ood``: topic proportions reversed, centres
    and typical answers moved; 150 prompts, 420 pool pairs): EPIG with the test rows as targets picks
    other pairs than with pool targets (20 of 32 shared when written), predicts only test rows for them,
    and is deterministic."""
    from balpm.data import load_for_config

    cfg = _cfg("epig").replace(data={"world": "test=ood,n_prompts=150", "synthetic_size": 0})
    res = load_for_config(loop.data_config(cfg))
    world = {"table": res.table, "features": res.features, "progress": False}
    split = res.table["split"].to_numpy()
    asked: list[np.ndarray] = []
    real = RunPool.test_probs

    def spy(self, test_index):
        asked.append(np.asarray(self.test_rows_F)[np.asarray(test_index)])
        return real(self, test_index)

    monkeypatch.setattr(RunPool, "test_probs", spy)
    test_cfg = cfg.replace(acquisition={"targets": "test"})
    assert runs.policy_label(test_cfg) == "epig targets=test" and test_cfg.hash() != cfg.hash()
    a = runs.open_run(tmp_path / "a", loop.run(test_cfg, tmp_path / "a", **world).name).acquisitions()
    assert len(asked) == 2  # one draw per selecting round
    for rows in asked:  # the features' rows of test-split pairs only (this world's features are the table's rows)
        assert len(rows) == min(100, int((split == "test").sum())) and (split[rows] == "test").all()
    b = runs.open_run(tmp_path / "b", loop.run(test_cfg, tmp_path / "b", **world).name).acquisitions()
    pd.testing.assert_frame_equal(a, b)
    pool = runs.open_run(tmp_path / "p", loop.run(cfg, tmp_path / "p", **world).name).acquisitions()
    assert len(asked) == 4  # pool targets never ask for the test rows
    assert len(set(a["pair_id"]) & set(pool["pair_id"])) < len(a) * 0.8


# ---- coreset -------------------------------------------------------------------------------------
def _kcenter_brute(pool, lab, batch):
    allx = np.concatenate([pool, lab]).astype(np.float64)
    std = allx.std(axis=0)
    std[std == 0] = 1
    z = (allx - allx.mean(axis=0)) / std
    zp, zl = z[:len(pool)], z[len(pool):]
    centres = list(zl)
    picks, radii = [], []
    for _ in range(batch):
        d = np.array([min(np.linalg.norm(x - c) for c in centres) for x in zp])
        d[picks] = -1
        j = int(np.argmax(d))
        picks.append(j)
        radii.append(d[j])
        centres.append(zp[j])
    return picks, radii


def test_coreset_matches_brute_force_k_center():
    rng = np.random.default_rng(0)
    pool, lab = rng.normal(size=(60, 5)).astype(np.float32) * [1, 3, 1, 0.2, 1], rng.normal(size=(7, 5)).astype(np.float32)
    sel = select_coreset(pool, lab, 12, np.random.default_rng(0))
    picks, radii = _kcenter_brute(pool, lab, 12)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.steps["covered_radius"], radii, rtol=1e-4)
    assert (np.diff(sel.steps["covered_radius"]) <= 1e-6).all()


def test_coreset_without_labelled_items_draws_its_first_centre_from_the_rng():
    pool = np.random.default_rng(1).normal(size=(50, 3))
    firsts = {int(select_coreset(pool, np.zeros((0, 3)), 3, np.random.default_rng(s)).indices[0]) for s in range(6)}
    assert len(firsts) > 1
    sel = select_coreset(pool, np.zeros((0, 3)), 3, np.random.default_rng(0))
    assert math.isinf(sel.steps["covered_radius"][0]) and np.isfinite(sel.steps["covered_radius"][1:]).all()


def test_coreset_picks_nothing_already_covered_while_new_prompts_remain():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(20, 4))
    lab = base[:10]
    pool = np.concatenate([base[:10], base[10:]])       # half the pool repeats labelled prompts
    sel = select_coreset(pool, lab, 10, np.random.default_rng(0))
    assert sorted(sel.indices.tolist()) == list(range(10, 20))


# ---- D-optimal design ----------------------------------------------------------------------------
def _dopt_direct(pool, lab, batch, lam):
    v = lam * np.eye(pool.shape[1]) + lab.T.astype(np.float64) @ lab
    picks, norms = [], []
    for _ in range(batch):
        s = np.einsum("nd,de,ne->n", pool, np.linalg.inv(v), pool)
        s[picks] = -np.inf
        j = int(np.argmax(s))
        picks.append(j)
        norms.append(math.sqrt(s[j]))
        v += np.outer(pool[j], pool[j])
    return picks, norms


@pytest.mark.parametrize("n_lab", [0, 5, 40])  # no labels, dual (L < D) and primal (L >= D) forms
def test_dopt_rank_one_updates_match_a_direct_inverse(n_lab):
    rng = np.random.default_rng(n_lab)
    pool = rng.normal(size=(80, 12)) * np.linspace(0.2, 2, 12)
    lab = rng.normal(size=(n_lab, 12))
    sel = select_dopt(pool, lab, 15, lam=0.7)
    picks, norms = _dopt_direct(pool, lab, 15, 0.7)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.steps["score"], norms, rtol=1e-5)
    np.testing.assert_allclose(sel.steps["logdet_gain"], np.log1p(np.square(norms)), rtol=1e-5)


def test_dopt_scores_the_pairs_feature_difference_in_either_direction():
    s = _state(1)
    flipped = dataclasses.replace(s, run=dataclasses.replace(s.run, pairs_F_2_D=s.run.pairs_F_2_D[:, ::-1].copy()))
    a = DOptPolicy().select(s, 10, np.random.default_rng(0))
    b = DOptPolicy().select(flipped, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(a.indices, b.indices)


def test_dopt_without_pair_features_or_with_a_bad_lambda_is_refused():
    s = _state()
    with pytest.raises(ConfigError, match="pair features"):
        DOptPolicy().select(dataclasses.replace(s, run=None), 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="lam"):
        DOptPolicy(lam=0.0)


# ---- through the loop: resume bit-identical ----------------------------------------------------
def _cfg(name, seed=1):
    """A few seconds per run (as tests/test_loop.py's small_cfg): 400-comparison teaching world, 3 rounds."""
    from balpm.config import RunConfig

    return RunConfig().replace(
        data={"synthetic_size": 400},
        model={"hidden": (16, 8), "ensemble_size": 3, "max_epochs": 2, "lr": 1e-2, "batch_size": 16},
        acquisition={"policy": name},
        loop={"initial": 16, "batch_size": 16, "rounds": 3, "seed": seed},
    )


class _Killed(RuntimeError):
    pass


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_resume_after_a_kill_is_bit_identical(tmp_path, monkeypatch, name):
    from balpm.data import load_for_config

    cfg = _cfg(name)
    res = load_for_config(cfg.data)
    world = {"table": res.table, "features": res.features, "progress": False}
    full = runs.open_run(tmp_path / "full", loop.run(cfg, tmp_path / "full", **world).name)
    real_commit = runs.RunWriter.commit_round

    def dying_commit(self, rnd, *args, **kw):
        if rnd == 1:
            raise _Killed("simulated kill in round 1")
        return real_commit(self, rnd, *args, **kw)

    monkeypatch.setattr(runs.RunWriter, "commit_round", dying_commit)
    with pytest.raises(_Killed):
        loop.run(cfg, tmp_path / "part", **world)
    monkeypatch.setattr(runs.RunWriter, "commit_round", real_commit)
    part = runs.open_run(tmp_path / "part", loop.run(cfg, tmp_path / "part", resume=True, **world).name)
    acq = part.acquisitions()
    pd.testing.assert_frame_equal(acq, full.acquisitions())
    assert len(acq) == 32 and acq["pool_index"].is_unique
    assert not np.allclose(acq["score"], acq["u"])  # this policy's score, not BALD's U
    from balpm.acquisition.registry import policy_entry

    for col in policy_entry(name).step_columns:  # its own per-step columns are recorded
        assert col in acq.columns and acq[col].notna().all(), col
    pd.testing.assert_frame_equal(part.rounds().drop(columns=["train_seconds", "eval_seconds", "select_seconds"]),
                                  full.rounds().drop(columns=["train_seconds", "eval_seconds", "select_seconds"]))
    for r in range(2):
        scores = part.pool_scores(r)
        pd.testing.assert_frame_equal(scores, full.pool_scores(r))
        assert scores["score"].notna().all()
