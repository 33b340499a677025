"""The simulation loop on the synthetic teaching world: contract of the run dir, determinism, resume,
failures recorded, and every bad parameter stopped before the run directory exists."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from balpm.config import RunConfig
from balpm.data import load_for_config
from balpm.engine.model import onednn_available
from balpm.errors import BalpmError, ConfigError, FeatureError
from balpm.experiment import loop, runs

TIMING = ["train_seconds", "eval_seconds", "select_seconds"]


def small_cfg(policy: str = "balpm", seed: int = 0, rounds: int = 4, **acq) -> RunConfig:
    """A few seconds per run: 400-comparison teaching world, K=3 small MLPs, 2 epochs."""
    return RunConfig().replace(
        data={"synthetic_size": 400},
        model={"hidden": (16, 8), "ensemble_size": 3, "max_epochs": 2, "lr": 1e-2, "batch_size": 16},
        acquisition={"policy": policy, "k": 5, **acq},
        loop={"initial": 16, "batch_size": 16, "rounds": rounds, "seed": seed},
    )


@pytest.fixture(scope="module")
def world():
    res = load_for_config(small_cfg().data)
    return res.table, res.features


def _run(cfg, root, world, **kw):
    table, features = world
    return loop.run(cfg, root, table=table, features=features, progress=False, **kw)


def test_run_directory_follows_the_contract(tmp_path, world):
    cfg = small_cfg("balpm", rounds=3)
    path = _run(cfg, tmp_path, world)
    assert path == tmp_path / runs.default_run_id(cfg)
    run = runs.open_run(tmp_path, path.name)
    assert run.status["state"] == "complete" and run.status["last_round"] == 2
    r = run.rounds()
    assert list(r.columns) == list(runs.ROUND_COLUMNS)
    assert r["labelled"].tolist() == [16, 32, 48]
    assert np.isfinite(r[["test_log_likelihood", "test_accuracy", "ood_log_likelihood", "ood_ece"]]).all().all()
    assert (r["test_log_likelihood"] < 0).all() and r["test_accuracy"].between(0, 1).all()
    pool = run.pool()
    assert pool["initial"].sum() == 16 and pool["pool_index"].tolist() == list(range(len(pool)))
    table, prompt_ids, prompts = run.dataset()
    assert set(pool["pair_id"]) <= set(table.loc[table["split"] == "train", "pair_id"])
    assert prompts.shape == (len(prompt_ids), 2)  # teaching world: 2-D prompt features
    acq = run.acquisitions()
    assert list(acq.columns) == list(runs.ACQUISITION_COLUMNS)
    assert len(acq) == 32 and acq["pool_index"].is_unique
    assert not pool.set_index("pool_index").loc[acq["pool_index"], "initial"].any()
    merged = acq.merge(pool, on="pool_index", suffixes=("", "_pool"))
    assert (merged["pair_id"] == merged["pair_id_pool"]).all()
    assert np.isfinite(acq[["u", "h", "beta_h", "n", "radius", "score"]]).all().all()
    # unique-prompt counters agree with the picks
    assert r.loc[0, "batch_unique_prompts"] == acq.loc[acq["round"] == 0, "prompt_id"].nunique()
    assert r.loc[1, "cumulative_unique_prompts"] == acq["prompt_id"].nunique()
    # pool scores of round 1: exactly the items still in the pool, BAL-PM's step-0 table + member probs
    ps = run.pool_scores(1)
    labelled_r1 = set(pool.loc[pool["initial"], "pool_index"]) | set(acq.loc[acq["round"] == 0, "pool_index"])
    assert set(ps["pool_index"]) == set(pool["pool_index"]) - labelled_r1
    assert {"u", "radius", "n0", "log_dist", "count_term", "h", "score", "p0", "p1", "p2"} <= set(ps.columns)
    assert ps[["p0", "p1", "p2"]].apply(lambda c: c.between(0, 1)).all().all()
    first = acq[(acq["round"] == 1) & (acq["step"] == 0)].iloc[0]
    assert first["pool_index"] == ps.loc[ps["score"].idxmax(), "pool_index"]  # greedy step 0 = argmax
    inc = run.increments(1)
    assert set(inc["pool_index"]) <= set(ps["pool_index"])
    assert run.pool_scores(2) is None  # no selection after the last round


def test_same_config_and_seed_give_identical_acquisitions(tmp_path, world):
    cfg = small_cfg("softmax_bald", seed=3, rounds=3)
    a = runs.open_run(tmp_path / "a", _run(cfg, tmp_path / "a", world).name)
    b = runs.open_run(tmp_path / "b", _run(cfg, tmp_path / "b", world).name)
    pd.testing.assert_frame_equal(a.acquisitions(), b.acquisitions())
    pd.testing.assert_frame_equal(a.rounds().drop(columns=TIMING), b.rounds().drop(columns=TIMING))
    c = runs.open_run(tmp_path / "c", _run(dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, seed=4)),
                                            tmp_path / "c", world).name)
    assert not a.acquisitions()["pair_id"].equals(c.acquisitions()["pair_id"])


def test_policies_share_the_initial_set_and_round0_model(tmp_path, world):
    ra = runs.open_run(tmp_path, _run(small_cfg("random", rounds=2), tmp_path, world).name)
    rb = runs.open_run(tmp_path, _run(small_cfg("bald", rounds=2), tmp_path, world).name)
    pd.testing.assert_frame_equal(ra.pool(), rb.pool())
    assert ra.rounds().loc[0, "test_log_likelihood"] == rb.rounds().loc[0, "test_log_likelihood"]
    # non-BAL-PM policies: u and member probs recorded, the entropy components NaN
    ps = rb.pool_scores(0)
    assert ps["u"].notna().all() and ps["h"].isna().all()
    acq = rb.acquisitions()
    assert acq["u"].notna().all() and acq["h"].isna().all()
    assert acq["u"].min() >= ps["u"].drop(ps.index[ps["pool_index"].isin(acq["pool_index"])]).max()  # BALD = top-B


class _Killed(RuntimeError):
    pass


@pytest.mark.parametrize("matmul", ["blas", "onednn"])
def test_resume_after_a_kill_is_bit_identical(tmp_path, world, monkeypatch, matmul):
    if matmul == "onednn" and not onednn_available():
        pytest.skip("this torch build has no oneDNN")
    cfg = small_cfg("balpm", seed=1, rounds=4).replace(model={"matmul": matmul})
    full = runs.open_run(tmp_path / "full", _run(cfg, tmp_path / "full", world).name)

    real_commit = runs.RunWriter.commit_round

    def dying_commit(self, rnd, *args, **kw):
        if rnd == 2:
            raise _Killed("simulated kill in round 2")
        return real_commit(self, rnd, *args, **kw)

    monkeypatch.setattr(runs.RunWriter, "commit_round", dying_commit)
    with pytest.raises(_Killed):
        _run(cfg, tmp_path / "part", world)
    monkeypatch.setattr(runs.RunWriter, "commit_round", real_commit)
    part_id = runs.default_run_id(cfg)
    st = runs.open_run(tmp_path / "part", part_id).status
    assert st["state"] == "failed" and st["last_round"] == 1 and "simulated kill in round 2" in st["error"]
    info = runs.list_runs(tmp_path / "part")[0]
    assert info.state == "failed"

    with pytest.raises(ConfigError, match="--resume"):
        _run(cfg, tmp_path / "part", world)  # without --resume: refused, nothing touched
    _run(cfg, tmp_path / "part", world, resume=True)
    part = runs.open_run(tmp_path / "part", part_id)
    assert part.status["state"] == "complete"
    pd.testing.assert_frame_equal(part.acquisitions(), full.acquisitions())
    pd.testing.assert_frame_equal(part.rounds().drop(columns=TIMING), full.rounds().drop(columns=TIMING))
    for r in range(3):
        pd.testing.assert_frame_equal(part.pool_scores(r), full.pool_scores(r))


def test_resume_from_a_truncated_run_dir(tmp_path, world):
    """A kill can also leave rows of a round whose status commit never happened: they are redone."""
    cfg = small_cfg("bald", seed=2, rounds=4)
    full = runs.open_run(tmp_path / "full", _run(cfg, tmp_path / "full", world).name)
    path = _run(cfg, tmp_path / "part", world)
    w = runs.RunWriter(tmp_path / "part", path.name)
    st = w.read_status()
    w.write_status("running", last_round=1, rounds=st["rounds"])  # as if killed right after round 2's rows
    w._status["pid"] = 0
    runs.atomic_write_json(path / "status.json", {**w._status, "pid": 999999999})
    _run(cfg, tmp_path / "part", world, resume=True)
    part = runs.open_run(tmp_path / "part", path.name)
    pd.testing.assert_frame_equal(part.acquisitions(), full.acquisitions())
    pd.testing.assert_frame_equal(part.rounds().drop(columns=TIMING), full.rounds().drop(columns=TIMING))


def test_resume_refuses_a_different_config(tmp_path, world):
    cfg = small_cfg("balpm", rounds=2)
    path = _run(cfg, tmp_path, world)
    other = cfg.replace(acquisition={"beta": 0.5})
    with pytest.raises(ConfigError) as exc:
        _run(other, tmp_path, world, resume=True, run_id=path.name)
    assert "config hash" in str(exc.value) and "\n" not in str(exc.value)
    # an existing complete run with the same config is reused, not redone
    before = (path / "rounds.parquet").stat().st_mtime_ns
    assert _run(cfg, tmp_path, world) == path
    assert (path / "rounds.parquet").stat().st_mtime_ns == before


def _bad_features(features, **changes):
    return dataclasses.replace(features, **changes)


@pytest.mark.parametrize("case", ["batch_gt_pool", "k_ge_pool", "negative_beta", "nan_pairs", "nan_prompts",
                                  "rows_mismatch", "missing_prompt", "initial_ge_pool"])
def test_bad_parameters_stop_before_any_writing(tmp_path, world, case):
    table, features = world
    cfg = small_cfg("balpm", rounds=2)
    n_train = int((table["split"] == "train").sum())
    if case == "batch_gt_pool":
        cfg = cfg.replace(loop={"batch_size": n_train})
    elif case == "k_ge_pool":
        cfg = cfg.replace(loop={"pool_size": 40, "initial": 16, "batch_size": 8}, acquisition={"k": 24})
    elif case == "negative_beta":
        cfg = cfg.replace(acquisition={"beta": -0.1})
    elif case == "initial_ge_pool":
        cfg = cfg.replace(loop={"initial": n_train})
    elif case == "nan_pairs":
        pairs = features.pairs_N_2_D.copy()
        pairs[5, 1, 3] = np.nan
        features = _bad_features(features, pairs_N_2_D=pairs)
    elif case == "nan_prompts":
        prompts = features.prompts_P_D.copy()
        prompts[2, 0] = np.inf
        features = _bad_features(features, prompts_P_D=prompts)
    elif case == "rows_mismatch":
        features = _bad_features(features, pairs_N_2_D=features.pairs_N_2_D[:-3], pair_ids=features.pair_ids[:-3])
    elif case == "missing_prompt":
        features = _bad_features(features, prompt_ids=features.prompt_ids[1:], prompts_P_D=features.prompts_P_D[1:])
    root = tmp_path / "runs"
    with pytest.raises(BalpmError) as exc:
        loop.run(cfg, root, table=table, features=features, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 300
    if case.startswith("nan") or case in ("rows_mismatch", "missing_prompt"):
        assert isinstance(exc.value, FeatureError)
    else:
        assert isinstance(exc.value, ConfigError)
    assert {"batch_gt_pool": "larger than the pool", "k_ge_pool": "not below", "negative_beta": "beta"}.get(case, "") in msg
    assert not root.exists(), "nothing may be written for bad input"
