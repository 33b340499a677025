"""The run directory: atomic append-only writes, a reader that never crashes, path safety."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balpm.config import RunConfig
from balpm.errors import BalpmError
from balpm.experiment import runs


def _cfg(**acq) -> RunConfig:
    return RunConfig().replace(acquisition=acq or {"policy": "balpm"}, loop={"rounds": 3, "initial": 2, "batch_size": 2})


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": ["a", "b", "c"], "prompt_id": ["p0", "p0", "p1"], "prompt": ["x", "x", "y"],
        "chosen": ["c1", "c2", "c3"], "rejected": ["r1", "r2", "r3"], "split": ["train"] * 3, "source": ["t"] * 3,
    })


def _make_run(root: Path, cfg: RunConfig, rounds_done: int, finish: bool = False) -> runs.RunWriter:
    table = _table()
    data_hash = runs.write_dataset(root, table, ["p0", "p1"], np.eye(2, dtype=np.float32))
    w = runs.RunWriter.create(root, runs.default_run_id(cfg), cfg, {"data_hash": data_hash, "feature_hash": "f"})
    w.write_pool(pd.DataFrame({"pool_index": [0, 1, 2], "pair_id": ["a", "b", "c"],
                               "prompt_id": ["p0", "p0", "p1"], "initial": [True, False, False]}))
    for r in range(rounds_done):
        acq = pd.DataFrame({c: [np.nan] for c in runs.ACQUISITION_COLUMNS})
        acq[["round", "step", "pool_index"]] = [[r, 0, r + 1]]
        w.commit_round(r, {"round": r, "labelled": 1 + r, "test_log_likelihood": -0.5 - r},
                       acquisitions=acq, pool_scores=pd.DataFrame({"pool_index": [1, 2], "u": [0.1, 0.2]}),
                       increments=pd.DataFrame({"step": [0], "pool_index": [2]}))
    if finish:
        w.finish()
    return w


def test_write_then_read_round_trip(tmp_path):
    cfg = _cfg()
    w = _make_run(tmp_path, cfg, rounds_done=2, finish=True)
    infos = runs.list_runs(tmp_path)
    assert [i.run_id for i in infos] == [w.run_id]  # _datasets is not a run
    info = infos[0]
    assert (info.state, info.last_round, info.policy, info.config_hash) == ("complete", 1, "balpm", cfg.hash())
    run = runs.open_run(tmp_path, w.run_id)
    assert run.config == cfg
    assert list(run.rounds()["round"]) == [0, 1]
    assert list(run.rounds().columns) == list(runs.ROUND_COLUMNS)
    assert list(run.acquisitions()["pool_index"]) == [1, 2]
    assert run.pool_score_rounds() == [0, 1]
    assert run.pool_scores(1)["u"].tolist() == [0.1, 0.2]
    assert run.pool_scores(5) is None
    assert run.increments(0)["pool_index"].tolist() == [2]
    table, ids, feats = run.dataset()
    assert ids == ["p0", "p1"] and feats.shape == (2, 2) and len(table) == 3
    assert runs.find_run(tmp_path, cfg).run_id == w.run_id
    assert runs.find_run(tmp_path, _cfg(policy="bald")) is None
    assert not list(tmp_path.rglob("*.tmp")), "temp files left behind"


def test_half_written_round_is_hidden_and_truncated(tmp_path):
    cfg = _cfg()
    w = _make_run(tmp_path, cfg, rounds_done=1)
    # simulate a kill after round 1's rows but before its status commit
    st = w.read_status()
    w.commit_round(1, {"round": 1, "labelled": 2})
    w.write_status("running", last_round=0, rounds=st["rounds"])
    run = runs.open_run(tmp_path, w.run_id)
    assert len(run.rounds()) == 1, "reader must only show complete rounds"
    assert len(pd.read_parquet(w.path / "rounds.parquet")) == 2
    w.truncate(0)
    assert len(pd.read_parquet(w.path / "rounds.parquet")) == 1
    assert run.pool_score_rounds() == [0]


def test_list_runs_reports_broken_runs_and_never_raises(tmp_path):
    cfg = _cfg()
    _make_run(tmp_path, cfg, rounds_done=1)
    (tmp_path / "empty").mkdir()
    bad_yaml = tmp_path / "bad-yaml"
    bad_yaml.mkdir()
    (bad_yaml / "config.yaml").write_text("{{{ not yaml")
    no_status = tmp_path / "no-status"
    no_status.mkdir()
    (no_status / "config.yaml").write_text(cfg.to_yaml())
    bad_status = tmp_path / "bad-status"
    bad_status.mkdir()
    (bad_status / "config.yaml").write_text(cfg.to_yaml())
    (bad_status / "status.json").write_text('{"state": "runn')
    lying = tmp_path / "lying"
    lying.mkdir()
    (lying / "config.yaml").write_text(cfg.to_yaml())
    (lying / "status.json").write_text(json.dumps({"state": "complete", "last_round": 4, "rounds": 5}))
    (tmp_path / "a-file.txt").write_text("not a folder")
    infos = {i.run_id: i for i in runs.list_runs(tmp_path)}
    for name in ("empty", "bad-yaml", "no-status", "bad-status", "lying"):
        assert infos[name].state == "broken" and infos[name].reason, name
    assert "rounds.parquet" in infos["lying"].reason
    good = [i for i in infos.values() if i.state != "broken"]
    assert len(good) == 1 and good[0].state == "running"
    assert good[0].alive is True  # this very process wrote it
    assert runs.list_runs(tmp_path / "does-not-exist") == []
    with pytest.raises(BalpmError):
        runs.open_run(tmp_path, "empty")


def test_failed_status_keeps_error_and_last_round(tmp_path):
    w = _make_run(tmp_path, _cfg(), rounds_done=2)
    w.fail(RuntimeError("out of\nmemory"))
    st = runs.open_run(tmp_path, w.run_id).status
    assert st["state"] == "failed" and st["last_round"] == 1 and st["error"] == "RuntimeError: out of memory"


def test_safe_path_rejects_escapes(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "ok").mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "link")
    assert runs.safe_path(root, "ok") == (root / "ok").resolve()
    assert runs.safe_path(root, str(root / "ok")) == (root / "ok").resolve()
    for bad in ("../secret", "ok/../../secret", str(outside), "/etc/passwd", "link", "link/x", "a\x00b"):
        with pytest.raises(BalpmError):
            runs.safe_path(root, bad)
    with pytest.raises(BalpmError):
        runs.open_run(root, "../secret")


def test_no_pickle_in_snapshot(tmp_path):
    data_hash = runs.write_dataset(tmp_path, _table(), ["p0", "p1"], np.ones((2, 3)))
    arr = np.load(tmp_path / "_datasets" / data_hash / "prompt_features.npy", allow_pickle=False)
    assert arr.dtype == np.float32
    with pytest.raises(ValueError):
        runs.atomic_write_npy(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    # same content, same hash: written once
    assert runs.write_dataset(tmp_path, _table(), ["p0", "p1"], np.ones((2, 3))) == data_hash
    assert runs.write_dataset(tmp_path, _table(), ["p0", "p1"], np.zeros((2, 3))) != data_hash


def test_policy_label_names_non_default_knobs():
    assert runs.policy_label(_cfg(policy="balpm")) == "balpm"
    assert runs.policy_label(_cfg(policy="balpm", beta=0.1)) == "balpm beta=0.1"
    assert runs.policy_label(_cfg(policy="random", beta=0.1)) == "random"
    assert runs.policy_label(_cfg(policy="power_bald", coldness=8.0)) == "power_bald coldness=8"
    with pytest.raises(BalpmError):
        runs.check_run_id("../x")


def test_creation_is_atomic_and_a_killed_creation_is_never_a_run(tmp_path, monkeypatch):
    cfg = _cfg()
    pool = pd.DataFrame({"pool_index": [0, 1, 2], "pair_id": ["a", "b", "c"], "prompt_id": ["p0", "p0", "p1"],
                         "initial": [True, False, False]})
    real = runs.RunWriter.write_status

    def killed(self, *a, **kw):  # dies after config.yaml and pool.parquet, before status.json
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.RunWriter, "write_status", killed)
    with pytest.raises(KeyboardInterrupt):
        runs.RunWriter.create(tmp_path, "r1", cfg, {"feature_hash": "f"}, pool=pool)
    monkeypatch.setattr(runs.RunWriter, "write_status", real)
    assert not (tmp_path / "r1").exists() and runs.list_runs(tmp_path) == []
    # a creation killed by the OS leaves only a hidden folder: never listed, removed by the next writer
    (tmp_path / ".r1.creating.99999").mkdir()
    (tmp_path / ".r1.creating.99999" / "config.yaml").write_text(cfg.to_yaml())
    assert runs.list_runs(tmp_path) == []
    w = runs.RunWriter.create(tmp_path, "r1", cfg, {"feature_hash": "f"}, pool=pool)
    assert sorted(p.name for p in w.path.iterdir()) == ["config.yaml", "pool.parquet", "status.json"]
    (w.path / ".rounds.parquet.x1.tmp").write_bytes(b"half")
    (w.path / "pool_scores").mkdir()
    (w.path / "pool_scores" / ".round=0.parquet.x2.tmp").write_bytes(b"half")
    removed = {p.name for p in w.remove_stale_temp()}
    assert removed == {".rounds.parquet.x1.tmp", ".round=0.parquet.x2.tmp", ".r1.creating.99999"}
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / ".r1.creating.99999").exists()
    with pytest.raises(BalpmError, match="already exists"):
        runs.RunWriter.create(tmp_path, "r1", cfg, {"feature_hash": "f"}, pool=pool)
    # a folder of an older balpm killed between status.json and pool.parquet: broken, not resumable
    (w.path / "pool.parquet").unlink()
    info = runs.inspect_run(w.path)
    assert info.state == "broken" and "pool.parquet" in info.reason


def test_one_writer_per_run_id(tmp_path):
    first = runs.lock_run(tmp_path, "r1").acquire()
    with pytest.raises(BalpmError) as exc:
        runs.lock_run(tmp_path, "r1").acquire()  # another open file: excluded like another process
    msg = str(exc.value)
    assert "being written by another balpm process" in msg and f"pid {os.getpid()}" in msg and "\n" not in msg
    with runs.lock_run(tmp_path, "r2"):  # other run ids are independent
        pass
    first.release()
    with runs.lock_run(tmp_path, "r1") as again:
        assert again.held
    assert runs.list_runs(tmp_path) == []  # the .locks folder is not a run


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        runs.atomic_write_text(tmp_path / "a" / "f.txt", "x")
        w = runs.RunWriter.create(tmp_path, "r1", _cfg(), {}, pool=pd.DataFrame(
            {"pool_index": [0], "pair_id": ["a"], "prompt_id": ["p"], "initial": [True]}))
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "f.txt").stat().st_mode & 0o777 == mode
    for name in ("config.yaml", "status.json", "pool.parquet"):
        assert (w.path / name).stat().st_mode & 0o777 == mode, name
    assert w.path.stat().st_mode & 0o777 == 0o777 & ~umask


def test_runs_root_must_be_a_folder(tmp_path):
    f = tmp_path / "afile"
    f.write_text("")
    for bad in (f, f / "runs"):
        with pytest.raises(BalpmError, match="--runs-dir .* file"):
            runs.check_root(bad)
    assert runs.check_root(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    assert not (tmp_path / "new").exists()
