"""U made visible (issue 7 item 4): the engine's replay equals greedy_select, the per-round spread
diagnostics in rounds.parquet, beta_mode=scaled, and the dashboard's readable U.

The replay is checked against the greedy loop itself: ``greedy_select(on_step=...)`` hands out the
score vector it takes the argmax of at every step, and ``replay_scores`` must rebuild it bit for bit
from what a run stores (step-0 pool table + count increments), on random inputs and on a real run
written by ``loop.run`` (the round re-prepared from the run folder's own dataset snapshot).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from balpm.engine import diagnostics

from balpm.experiment import loop, runs
from balpm.acquisition.balpm import greedy_select, prepare_balpm, replay_round, replay_scores, select_balpm
from balpm.config import RunConfig
from balpm.errors import ConfigError
from balpm_dashboard import frames, plots

TINY = RunConfig().replace(
    model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
    loop={"initial": 20, "batch_size": 20, "rounds": 3},
)


def _random_round(seed: int, n_prompts: int = 90, n_pool: int = 300, dim: int = 4):
    rng = np.random.default_rng(seed)
    prompts = rng.normal(size=(n_prompts, dim)) * rng.uniform(0.5, 2, size=dim)
    pool = prompts[rng.integers(0, n_prompts, size=n_pool)]          # repeated prompts share H
    labelled = np.concatenate([prompts[rng.integers(0, n_prompts, size=20)], rng.normal(size=(15, dim))])
    u = rng.uniform(0, 0.2, size=n_pool)
    u[rng.random(n_pool) < 0.2] = 0.05                                 # ties in U
    return u, pool, labelled


def _trace(rnd, batch):
    seen: list[np.ndarray] = []
    sel = greedy_select(rnd, batch, on_step=lambda s, score: seen.append(score.copy()))
    return sel, seen


def _assert_replay_equals_greedy(rnd, sel, seen, u, log_dist, n0, minimize):
    picks = sel.indices
    for s, greedy_score in enumerate(seen):
        rep = replay_scores(u, log_dist, n0, sel.increments, s, beta=rnd.beta, d=rnd.d, minimize=minimize,
                            picks=picks)
        alive = rep.alive_N
        assert alive.sum() == len(u) - s
        np.testing.assert_array_equal(rep.score_N[alive], greedy_score[alive])   # bit for bit
        assert np.isneginf(greedy_score[~alive]).all()
        assert rep.best == picks[s]
        row = sel.steps.iloc[s]
        assert rep.score_N[picks[s]] == row["score"] and rep.h_N[picks[s]] == row["h"]
        assert rep.beta_h_N[picks[s]] == row["beta_h"] and rep.n_N[picks[s]] == row["n"]
        assert set(np.flatnonzero(rep.raised_N)) == set(sel.increments.loc[sel.increments["step"] == s, "index"])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beta, d, minimize, mode", [(0.01, 1.0, False, "fixed"), (0.7, 2.0, False, "fixed"),
                                                     (0.5, 1.0, True, "fixed"), (0.01, 1.0, False, "scaled")])
def test_replay_equals_greedy_select_on_random_inputs(seed, beta, d, minimize, mode):
    u, pool, lab = _random_round(seed)
    rnd = prepare_balpm(u, pool, lab, 40, beta=beta, k=7, d=d, minimize=minimize, beta_mode=mode)
    sel, seen = _trace(rnd, 40)
    table = rnd.pool_table()
    _assert_replay_equals_greedy(rnd, sel, seen, table["u"].to_numpy(), table["log_dist"].to_numpy(),
                                 table["n0"].to_numpy(), minimize)
    # step 0 is the pool table itself
    rep0 = replay_scores(table["u"], table["log_dist"], table["n0"], sel.increments, 0, beta=rnd.beta, d=d,
                         minimize=minimize)
    np.testing.assert_array_equal(rep0.score_N, table["score"].to_numpy())


def test_replay_refuses_rounds_without_exact_data():
    u, pool, lab = _random_round(0)
    table = prepare_balpm(u, pool, lab, 5, k=7).pool_table()
    with pytest.raises(Exception, match="no exact pool-radius data"):
        replay_scores(table["u"], np.full(len(u), np.nan), table["n0"], None, 0, beta=0.01)
    with pytest.raises(ConfigError, match="step must be"):
        replay_scores(table["u"], table["log_dist"], table["n0"], None, -1, beta=0.01)


# ---------------------------------------------------------------------------- real run folders
@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Tiny runs written by loop.run; for the BAL-PM runs, every score vector the loop's own
    greedy_select took the argmax of (per round and step) is recorded on the side."""
    import balpm.acquisition.balpm as engine

    root = tmp_path_factory.mktemp("runs")
    table, features = loop.load_inputs(TINY, progress=False)
    ids, traces = {}, {}
    real = engine.greedy_select
    for name, changes in {"balpm": {"policy": "balpm"}, "scaled": {"policy": "balpm", "beta_mode": "scaled"},
                          "bald": {"policy": "bald"}}.items():
        cfg = TINY.replace(acquisition=changes)
        rounds: list[tuple[float, list[np.ndarray]]] = []

        def traced(rnd, batch_size, on_step=None, _rounds=rounds):
            seen: list[np.ndarray] = []
            _rounds.append((rnd.beta, seen))
            return real(rnd, batch_size, on_step=lambda s, score: seen.append(score.copy()))

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine, "greedy_select", traced)
            loop.run(cfg, root, table=table, features=features, progress=False)
        ids[name] = (runs.default_run_id(cfg), cfg)
        traces[name] = rounds
    return root, ids, traces


@pytest.mark.parametrize("which", ["balpm", "scaled"])
def test_replay_equals_greedy_select_on_a_stored_run(runs_root, which):
    root, ids, traces = runs_root
    rid, cfg = ids[which]
    run = runs.open_run(root, rid)
    rounds, acq = run.rounds(), run.acquisitions()
    assert len(traces[which]) == cfg.loop.rounds - 1
    for rnd, (beta_used, seen) in enumerate(traces[which]):
        scores, inc = run.pool_scores(rnd), run.increments(rnd)
        picks = acq[acq["round"] == rnd].sort_values("step")
        beta = frames.round_beta(rounds, rnd, cfg.acquisition.beta)   # what the dashboard reads
        assert beta == beta_used
        assert len(seen) == len(picks) == cfg.loop.batch_size
        for s, greedy_score in enumerate(seen):
            rep = replay_round(scores, inc, picks, s, beta=beta, d=cfg.acquisition.d)
            np.testing.assert_array_equal(rep.score_N[rep.alive_N], greedy_score[rep.alive_N])
            assert scores["pool_index"].iloc[rep.best] == picks["pool_index"].iloc[s]
            assert rep.score_N[rep.best] == picks["score"].iloc[s]


def test_rounds_parquet_records_the_spreads(runs_root):
    root, ids, _ = runs_root
    for which in ("balpm", "scaled", "bald"):
        rid, cfg = ids[which]
        run = runs.open_run(root, rid)
        rounds = run.rounds()
        assert set(diagnostics.ROUND_DIAGNOSTIC_COLUMNS) <= set(rounds.columns)
        last = rounds[rounds["round"] == cfg.loop.rounds - 1].iloc[0]
        assert all(np.isnan(last[c]) for c in diagnostics.ROUND_DIAGNOSTIC_COLUMNS)
        for rnd in range(cfg.loop.rounds - 1):
            row = rounds[rounds["round"] == rnd].iloc[0]
            sc = run.pool_scores(rnd)
            u = sc["u"].to_numpy()
            assert row["u_std"] == pytest.approx(np.std(u), rel=1e-12)
            assert row["u_iqr"] == pytest.approx(np.subtract(*np.percentile(u, [75, 25])), rel=1e-12)
            if which == "bald":
                assert all(np.isnan(row[c]) for c in ("beta_h_std", "beta_h_iqr", "beta_h_to_u_std",
                                                      "score_h_spearman", "beta_effective"))
                continue
            beta = row["beta_effective"]
            bh = beta * sc["h"].to_numpy()
            assert row["beta_h_std"] == pytest.approx(np.std(bh), rel=1e-12)
            assert row["beta_h_iqr"] == pytest.approx(np.subtract(*np.percentile(bh, [75, 25])), rel=1e-12)
            assert row["beta_h_to_u_std"] == pytest.approx(np.std(bh) / np.std(u), rel=1e-12)
            assert row["beta_h_to_u_iqr"] == pytest.approx(row["beta_h_iqr"] / row["u_iqr"], rel=1e-12)
            assert row["score_h_spearman"] == pytest.approx(spearmanr(sc["score"], sc["h"]).statistic, abs=1e-12)
            np.testing.assert_allclose(sc["score"], u + bh, rtol=0, atol=1e-15)


def test_beta_mode_scaled_records_the_formula_and_fixed_is_unchanged(runs_root, monkeypatch):
    root, ids, _ = runs_root
    (rid_f, cfg_f), (rid_s, cfg_s) = ids["balpm"], ids["scaled"]
    fixed, scaled = runs.open_run(root, rid_f).rounds(), runs.open_run(root, rid_s).rounds()
    assert (fixed["beta_effective"].iloc[:-1] == cfg_f.acquisition.beta).all()
    run = runs.open_run(root, rid_s)
    for rnd in range(cfg_s.loop.rounds - 1):
        sc = run.pool_scores(rnd)
        u, h = sc["u"].to_numpy(), sc["h"].to_numpy()
        want = cfg_s.acquisition.beta * np.subtract(*np.percentile(u, [75, 25])) / np.subtract(*np.percentile(h, [75, 25]))
        assert scaled["beta_effective"].iloc[rnd] == pytest.approx(want, rel=1e-12)
        # by construction the IQR of beta_eff * H is beta times the IQR of U
        assert scaled["beta_h_iqr"].iloc[rnd] == pytest.approx(cfg_s.acquisition.beta * scaled["u_iqr"].iloc[rnd],
                                                               rel=1e-9)
    assert runs.policy_label(cfg_s) == "balpm beta_mode=scaled" and runs.policy_label(cfg_f) == "balpm"
    # fixed: the hash of a config is what it was before the field existed; scaled is another config
    with_field = cfg_f.hash()
    to_dict = RunConfig.to_dict

    def without_field(self):
        d = to_dict(self)
        d["acquisition"].pop("beta_mode", None)
        return d

    monkeypatch.setattr(RunConfig, "to_dict", without_field)
    assert cfg_f.hash() == with_field
    monkeypatch.undo()
    assert cfg_s.hash() != cfg_f.hash()
    with pytest.raises(ConfigError, match="beta_mode"):
        TINY.replace(acquisition={"beta_mode": "auto"}).validate()


def test_beta_mode_fixed_selection_is_bit_identical():
    u, pool, lab = _random_round(5)
    a = select_balpm(u, pool, lab, 30, beta=0.2, k=7)
    b = select_balpm(u, pool, lab, 30, beta=0.2, k=7, beta_mode="fixed")
    np.testing.assert_array_equal(a.indices, b.indices)
    pd.testing.assert_frame_equal(a.steps, b.steps)


def test_scaled_beta_fallbacks():
    rng = np.random.default_rng(0)
    u, h = rng.uniform(0, 0.1, 200), rng.normal(size=200)
    beta, rule = diagnostics.scaled_beta(0.5, u, h)
    assert rule == "iqr" and beta == pytest.approx(0.5 * diagnostics.iqr(u) / diagnostics.iqr(h))
    h_ties = np.zeros(200)
    h_ties[:20] = 1.0                                     # IQR 0, std > 0
    beta, rule = diagnostics.scaled_beta(0.5, u, h_ties)
    assert rule == "std" and beta == pytest.approx(0.5 * u.std() / h_ties.std())
    assert diagnostics.scaled_beta(0.5, np.zeros(200), h) == (0.5, "fixed")   # uncertainty=none: U constant
    assert diagnostics.spread_ratio(1.0, 0.0) == np.inf and np.isnan(diagnostics.spread_ratio(0.0, 0.0))


# ---------------------------------------------------------------------------- dashboard
def test_readable_numbers_and_the_diversity_message():
    assert frames.fmt_num(3.1e-4) == "3.1e-04" and frames.fmt_num(0.0123) == "0.0123"
    assert frames.fmt_num(float("nan")) == "–" and frames.fmt_share(0.0004) == "0.04%"
    spreads = diagnostics.score_diagnostics(np.linspace(0, 1e-4, 50), np.linspace(-3, 3, 50), 0.01)
    msg = frames.diversity_message(spreads)
    assert msg and msg.startswith(frames.DIVERSITY_MESSAGE)
    assert frames.diversity_message(diagnostics.score_diagnostics(np.linspace(0, 1, 50), np.linspace(-3, 3, 50),
                                                                  0.01)) is None
    assert plots.num_format(np.array([3e-4, 1e-5])) == ".2e" and plots.num_format(np.array([0.3])) == ".4f"
    assert frames.last_acquiring_round(last_round=2, rounds=3) == 1        # the last round never acquires
    assert frames.last_acquiring_round(last_round=0, rounds=3) == 0
    # play: one pick per second of wall time however long each redraw takes
    assert [frames.play_position(0, 100.0, 100.0 + t, 1.0, 10) for t in (0.5, 1.0, 2.7, 30)] == [1, 2, 3, 10]
    anat = frames.anatomy_frame(pd.DataFrame({"step": [0, 1], "pool_index": [3, 4], "prompt_id": ["a", "b"],
                                              "u": [3e-4, 1e-3], "log_dist": [1.0, 2.0], "h": [0.5, 2.0],
                                              "score": [3e-4 + 0.005, 1e-3 + 0.02], "n": [1, 0]}), beta=0.01)
    np.testing.assert_allclose(anat[["u_share", "dist_share", "count_share"]].sum(axis=1), 1.0)
    assert anat["u_share"].iloc[0] == pytest.approx(3e-4 / (3e-4 + 0.01 + 0.005))


def test_pages_show_tiny_u_in_scientific_notation_and_say_diversity_sampler(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    # a barely trained ensemble (lr 1e-6): members agree, U ~ 1e-9, so beta*H decides every pick
    cfg = TINY.replace(model={"lr": 1e-6, "max_epochs": 1}, acquisition={"policy": "balpm"})
    loop.run(cfg, tmp_path, progress=False)
    rid = runs.default_run_id(cfg)
    rounds = runs.open_run(tmp_path, rid).rounds()
    assert rounds["beta_h_to_u_std"].iloc[0] > 10 and rounds["u_std"].iloc[0] < 1e-3
    monkeypatch.setenv("BALPM_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/batch_anatomy.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(frames.DIVERSITY_MESSAGE in w.value for w in at.warning)
    assert any("median U" in c.value and "e-" in c.value for c in at.caption)
    at.switch_page("views/prompt_space.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(frames.DIVERSITY_MESSAGE in w.value for w in at.warning)
    u_metric = next(m.value for m in at.metric if m.label == "U")
    assert "e-" in u_metric, u_metric
    assert any("Share of this pick's score" in m.value for m in at.markdown)
