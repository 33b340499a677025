"""Ray backends on one local Ray (2 CPUs, shared by every test here): sweeps bit-identical to the local
backend, a killed worker's run retried and resumed, user errors reported failed, featurization by an
actor pool equal to one process and resumable from its shards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ray = pytest.importorskip("ray")

from balpm.cli import main  # noqa: E402
from balpm.config import FeatureConfig, RunConfig  # noqa: E402
from balpm.errors import ConfigError  # noqa: E402
from balpm.experiment import runs, sweep  # noqa: E402


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory):
    """Folder read by the workers' crash hook (arm a run by writing a round number to crash_dir/<run_id>)."""
    return tmp_path_factory.mktemp("crash")


def _crash_hook_installer(crash_dir: Path):
    """A Ray worker set-up hook: every ``balpm.experiment.loop.run`` in the worker gets an ``after_round`` callback that,
    when ``crash_dir/<run_id>`` holds the round just committed, renames it to ``<run_id>.crashed`` (so it fires
    once; it then holds the worker's pid) and kills the worker with ``os._exit(70)``. Defined here, in the test:
    the engine has no test hooks, only the documented ``after_round`` parameter."""
    folder = str(crash_dir)

    def install() -> None:
        import os
        from pathlib import Path

        import balpm.experiment.loop

        real_run = balpm.experiment.loop.run

        def crash_after(run_id: str, rnd: int) -> None:
            armed = Path(folder) / run_id
            try:
                if int(armed.read_text().strip()) != rnd:
                    return
                armed.write_text(f"{rnd} {os.getpid()}\n")
                os.replace(armed, armed.with_name(run_id + ".crashed"))
            except (OSError, ValueError):
                return
            os._exit(70)

        def run(*args, **kwargs):
            return real_run(*args, after_round=crash_after, **kwargs)

        balpm.experiment.loop.run = run

    return install


@pytest.fixture(scope="module")
def ray_cluster(crash_dir):
    """One local Ray for the module; each worker installs the crash hook when it starts."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"worker_process_setup_hook": _crash_hook_installer(crash_dir)})
    yield
    ray.shutdown()


def base_cfg() -> RunConfig:
    return RunConfig().replace(
        data={"synthetic_size": 400},
        model={"hidden": (16, 8), "ensemble_size": 3, "max_epochs": 2, "lr": 1e-2, "batch_size": 16},
        loop={"initial": 16, "batch_size": 16, "rounds": 3},
    )


def _same_run(root_a: Path, root_b: Path, run_id: str) -> None:
    a, b = runs.open_run(root_a, run_id), runs.open_run(root_b, run_id)
    assert a.status["state"] == b.status["state"] == "complete"
    pd.testing.assert_frame_equal(a.acquisitions(), b.acquisitions())
    metrics = [c for c in a.rounds().columns if not c.endswith("_seconds")]  # timings differ, nothing else may
    pd.testing.assert_frame_equal(a.rounds()[metrics], b.rounds()[metrics])
    for r in a.pool_score_rounds():
        pd.testing.assert_frame_equal(a.pool_scores(r), b.pool_scores(r))
    pd.testing.assert_frame_equal(a.pool(), b.pool())


def test_ray_sweep_is_bit_identical_to_local_and_a_killed_worker_resumes(ray_cluster, crash_dir, tmp_path,
                                                                         monkeypatch):
    cfgs = sweep.expand(base_cfg(), ["random", "balpm"], [0])
    local = sweep.sweep(cfgs, tmp_path / "local", workers=1, progress=False)
    assert [r.state for r in local] == ["complete", "complete"]

    killed = runs.default_run_id(cfgs[1])
    (crash_dir / killed).write_text("0")  # the worker running this run dies right after round 0 commits
    real_put, put = ray.put, []
    monkeypatch.setattr(ray, "put", lambda obj, **kw: put.append(type(obj).__name__) or real_put(obj, **kw))
    results = sweep.sweep(cfgs, tmp_path / "ray", backend="ray", progress=True)
    assert sorted(put) == ["DataFrame", "Features"]  # the inputs go to the object store once, not once per task
    assert [(r.run_id, r.state) for r in results] == [(r.run_id, "complete") for r in local], results

    crashed = (crash_dir / f"{killed}.crashed").read_text().split()
    assert crashed[0] == "0" and not (crash_dir / killed).exists()  # the kill happened, once
    status = runs.open_run(tmp_path / "ray", killed).status
    assert status["pid"] != int(crashed[1])  # finished by another worker: Ray retried the task ...
    for r in local:  # ... which resumed after round 0 and ended exactly as the uninterrupted local run
        _same_run(tmp_path / "local", tmp_path / "ray", r.run_id)
    # the run folders are written as the local backend writes them
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())


def test_ray_failures_are_reported_not_retried_forever(ray_cluster, crash_dir, tmp_path, capsys):
    cfg = base_cfg().replace(acquisition={"policy": "random"}, loop={"seed": 5, "rounds": 2})
    with pytest.raises(ConfigError, match="no Ray node has 64 CPU"):
        sweep.sweep([cfg], tmp_path / "r", backend="ray", cpus_per_run=64, progress=False)
    with pytest.raises(ConfigError, match="--cpus-per-run"):
        sweep.sweep([cfg], tmp_path / "r", backend="ray", cpus_per_run=0, progress=False)
    with pytest.raises(ConfigError, match="--address is for --backend ray"):
        sweep.sweep([cfg], tmp_path / "r", address="127.0.0.1:6379", progress=False)
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1"):  # at once, not after minutes
        sweep.sweep([cfg], tmp_path / "r", backend="ray", address="127.0.0.1:1", progress=False)
    assert not (tmp_path / "r").exists()

    # a worker that dies on every allowed attempt: reported failed after max_retries
    run_id = runs.default_run_id(cfg)
    (crash_dir / run_id).write_text("0")
    [res] = sweep.sweep([cfg], tmp_path / "r", backend="ray", max_retries=0, progress=False)
    assert res.state == "failed" and "after 0 retries" in res.error, res
    assert runs.open_run(tmp_path / "r", run_id).last_round == 0  # its committed round is kept (resumable)

    # a user error inside the run (a foreign folder in the way) fails at once, and the CLI exits non-zero
    conf = tmp_path / "small.yaml"
    doc = {k: v for k, v in cfg.to_dict().items() if k != "name"}  # every knob explicit
    # random's flat YAML states only its own knobs; naming beta (at the union's default) keeps the teaching
    # preset from filling its 0.1 in, hash-only, so the runs keep the ids of cfg's (config.LEGACY_KNOBS)
    doc["acquisition"]["beta"] = 0.01
    conf.write_text(yaml.safe_dump(doc))
    root = tmp_path / "cli"
    (root / runs.default_run_id(cfg.replace(acquisition={"policy": "bald"}))).mkdir(parents=True)
    (root / runs.default_run_id(cfg.replace(acquisition={"policy": "bald"})) / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--config", str(conf), "--policies", "random,bald", "--seeds", "5", "--runs-dir", str(root),
              "--backend", "ray", "--cpus-per-run", "1", "--quiet"])
    assert exit_info.value.code not in (0, None)
    out, err = capsys.readouterr()
    assert "1/2 runs complete" in out and "not a complete run folder" in err
    assert runs.open_run(root, run_id).status["state"] == "complete"


class _Killed(BaseException):
    """Stands for the driver being killed."""


@pytest.mark.slow  # two actor pools start (about 20 s each on 2 loaded cores)
def test_ray_featurize_equals_local_and_resumes_from_its_shards(ray_cluster, tldr_table, tmp_path, monkeypatch):
    from balpm.features import distributed, featurize

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(distributed, "TEXTS_PER_SHARD", 8)  # 30 distinct pair texts -> 4 shards, one batch each
    table = tldr_table(20)
    local = featurize(table, FeatureConfig(cache_dir=str(tmp_path / "local"), batch_size=8, max_length=128),
                      progress=False)

    cfg = FeatureConfig(cache_dir=str(tmp_path / "ray"), batch_size=8, max_length=128)
    # the prompts part is already cached (copied from the local run): this test computes the pairs on Ray
    key = local.manifest["prompts"]["key"]
    shutil.copytree(tmp_path / "local" / key[:2], tmp_path / "ray" / key[:2])

    real_write, written = distributed._atomic_write, []

    def write_then_die(path, write):
        real_write(path, write)
        written.append(Path(path).name)
        if Path(path).name.startswith("shard-") and len([w for w in written if w.startswith("shard-")]) == 2:
            raise _Killed  # the driver dies after two finished shards

    monkeypatch.setattr(distributed, "_atomic_write", write_then_die)
    with pytest.raises(_Killed):
        featurize(table, cfg, backend="ray", progress=False)
    pairs_key = local.manifest["pairs"]["key"]
    folder = tmp_path / "ray" / distributed.SHARDS_DIR / pairs_key
    done = sorted(p.name for p in folder.glob("shard-*.npy"))
    n_shards = json.loads((folder / "plan.json").read_text())["shards"]
    assert len(done) == 2 and n_shards >= 4

    written.clear()
    monkeypatch.setattr(distributed, "_atomic_write", lambda path, write: (real_write(path, write),
                                                                            written.append(Path(path).name)))
    feats = featurize(table, cfg, backend="ray", progress=False)
    assert sorted(w for w in written if w.startswith("shard-")) == sorted(
        f"shard-{i:05d}.npy" for i in range(n_shards) if f"shard-{i:05d}.npy" not in done)  # only the missing shards
    assert not folder.exists()  # assembled into the ordinary cache entry, shards removed
    assert feats.cache_hits == {"prompts": True, "pairs": False}
    assert feats.manifest["pairs"]["device"] == "ray:cpu"
    # same batches, same padding: equal bit for bit to the single-process features
    assert float(np.abs(feats.pairs_N_2_D - local.pairs_N_2_D).max()) == 0.0
    assert np.array_equal(feats.pairs_N_2_D, local.pairs_N_2_D) and feats.hash == local.hash
    # a second call is a plain cache hit: no Ray work at all
    again = featurize(table, cfg, backend="ray", progress=False)
    assert again.cache_hits == {"prompts": True, "pairs": True} and again.hash == local.hash


def test_ray_shards_hold_the_single_process_batches(tldr_table, monkeypatch):
    """The shard plan cuts the very batches (same texts, same padding) that Encoder.encode_ids forms."""
    from balpm.features import distributed, encoder, load_encoder, table_texts
    from balpm.features.templates import unique_texts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = load_encoder("minilm", device="cpu")
    _, _, _, texts, _ = table_texts(tldr_table(30))
    ids = enc.tokenize(unique_texts(texts)[0], 64).ids
    local_batches = []
    real_pad = encoder.pad_batch
    monkeypatch.setattr(encoder, "pad_batch", lambda rows, pad, side: local_batches.append(
        [tuple(r) for r in rows]) or real_pad(rows, pad, side))
    enc.encode_ids(ids, batch_size=4, progress=False)
    shards = distributed.plan_shards(ids, batch_size=4, texts_per_shard=10)  # rounded down to 8: 2 batches each
    assert all(len(s) == 8 for s in shards[:-1])
    ray_batches = [[tuple(ids[r]) for r in shard[b:b + 4]] for shard in shards for b in range(0, len(shard), 4)]
    assert ray_batches == local_batches and len(local_batches) > 2
