"""``balpm run`` / ``sweep`` / ``demo`` from the command line: flags over YAML, resume, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from balpm import runs
from balpm.cli import demo, main
from balpm.cli.run import build_config
from balpm.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--ensemble-size", "3", "--hidden", "16,8", "--epochs", "2", "--lr", "0.01", "--initial", "16",
         "--batch-size", "16", "--k", "5", "--quiet"]


def _synthetic_small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({"data": {"synthetic_size": 400}, "loop": {"rounds": 5, "seed": 7},
                                    "acquisition": {"policy": "random", "beta": 0.2}}))
    return path


def test_flags_override_yaml(tmp_path):
    cfg = build_config(_synthetic_small(tmp_path), rounds=2, policy="balpm", hidden="16,8", minimize_entropy=True,
                       data=None)
    assert cfg.loop.rounds == 2 and cfg.loop.seed == 7  # flag wins, YAML kept where no flag
    assert cfg.acquisition.policy == "balpm" and cfg.acquisition.beta == 0.2 and cfg.acquisition.minimize_entropy
    assert cfg.model.hidden == (16, 8) and cfg.data.synthetic_size == 400
    cfg2 = build_config(None, data=["a.json", "b.json"], ood=["c.json"])
    assert cfg2.data.paths == ("a.json", "b.json") and cfg2.data.ood_paths == ("c.json",)


def test_run_then_resume_and_reuse_from_the_cli(tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["run", "--config", str(_synthetic_small(tmp_path)), "--runs-dir", str(root), "--policy", "balpm",
            "--rounds", "3", "--run-id", "cli-run", *SMALL]
    main(args)
    out = capsys.readouterr().out
    assert "cli-run: complete, 3 rounds" in out and "test log-likelihood" in out
    run = runs.open_run(root, "cli-run")
    assert run.config.acquisition.beta == 0.2 and run.config.loop.rounds == 3
    full_acq = run.acquisitions()

    # the run's own config.yaml (with its meta section) is a valid --config; simulate a kill after round 0
    w = runs.RunWriter(root, "cli-run")
    st = w.read_status()
    w.write_status("failed", last_round=0, rounds=st["rounds"], error="killed")
    main(["run", "--config", str(root / "cli-run" / "config.yaml"), "--runs-dir", str(root), "--run-id", "cli-run",
          "--resume", "--quiet"])
    run = runs.open_run(root, "cli-run")
    assert run.status["state"] == "complete"
    assert run.acquisitions().equals(full_acq)

    # resuming with another config: one line, exit code 2
    with pytest.raises(SystemExit) as exc:
        main([*args, "--beta", "0.3", "--resume"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "config hash" in err and "\n" not in err


def test_bad_parameter_is_one_line_before_writing(tmp_path):
    root = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "balpm", "run", "--runs-dir", str(root), "--batch-size", "100000",
                           "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: batch size 100000 is larger than the pool")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not root.exists()


def test_sweep_cli(tmp_path, capsys):
    root = tmp_path / "runs"
    main(["sweep", "--config", str(_synthetic_small(tmp_path)), "--policies", "random", "--seeds", "0,1",
          "--grid", "loop.batch_size=8", "--rounds", "2", "--workers", "1", "--runs-dir", str(root), *SMALL])
    assert "2/2 runs complete" in capsys.readouterr().out
    infos = runs.list_runs(root)
    assert sorted(i.seed for i in infos) == [0, 1]
    assert all(runs.open_run(root, i.run_id).config.loop.batch_size == 8 for i in infos)
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--policies", "random", "--seeds", "x", "--runs-dir", str(root)])
    assert exc.value.code == 2


def test_demo_finds_data_in_order(tmp_path, monkeypatch):
    data = tmp_path / "shared"
    (data / "summarize_from_feedback" / "comparisons").mkdir(parents=True)
    monkeypatch.setenv("BALPM_SHARED_DATA", str(data))
    assert demo.find_data().kind == "env"
    f = tmp_path / "mine.json"
    f.write_text("")
    assert demo.find_data([str(f)]).kind == "flag"
    monkeypatch.delenv("BALPM_SHARED_DATA")
    cwd = tmp_path / "work" / "main"
    cwd.mkdir(parents=True)
    (tmp_path / "work" / "shared" / "data" / "summarize_from_feedback" / "comparisons").mkdir(parents=True)
    assert demo.find_data(cwd=cwd).kind == "shared"
    monkeypatch.setattr(demo, "__file__", str(tmp_path / "nowhere" / "a" / "b" / "demo.py"))
    src = demo.find_data(cwd=tmp_path, online=False)
    assert src.kind == "synthetic" and "SYNTHETIC" in src.note
    assert demo.find_data(cwd=tmp_path, online=True).kind == "hub"


def test_demo_end_to_end_on_the_teaching_world(tmp_path, monkeypatch, capsys):
    tiny = {"loop": {"initial": 16, "batch_size": 16, "rounds": 2},
            "model": {"ensemble_size": 3, "hidden": (16, 8), "max_epochs": 2, "lr": 1e-2}}
    monkeypatch.setitem(demo.SCALES, "small", tiny)
    monkeypatch.setattr(demo, "find_data", lambda data=None: demo.DataSource("synthetic", (), "SYNTHETIC world"))
    summary = demo.run_demo(runs_dir=tmp_path / "demo", seeds=1, progress=False)
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "baseline: random" in out
    assert [p["label"] for p in summary["policies"]] == ["random", "bald", "balpm"]
    assert (tmp_path / "demo" / "learning_curves.html").is_file()
    assert all(i.state == "complete" for i in runs.list_runs(tmp_path / "demo"))
    assert isinstance(RunConfig.from_dict({}), RunConfig)
