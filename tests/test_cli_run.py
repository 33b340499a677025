"""``balpm run`` / ``sweep`` / ``demo`` from the command line: flags over YAML, resume, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from balpm.cli import demo, main
from balpm.cli.run import build_config
from balpm.config import RunConfig
from balpm.experiment import runs

REPO = Path(__file__).resolve().parents[1]
# no --k: it is BAL-PM's knob, and a flag of a knob the run's policy does not own is refused
SMALL = ["--ensemble-size", "3", "--hidden", "16,8", "--epochs", "2", "--lr", "0.01", "--initial", "16",
         "--batch-size", "16", "--quiet"]


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


def test_sweep_set_takes_a_knob_of_a_listed_policy(tmp_path, capsys):
    """``balpm sweep --policies random,epig --set acquisition.targets=test``: the knob belongs to epig, not to the
    base's default policy (BAL-PM); it reaches epig's runs and random's runs are the plain random ones. A knob
    no listed policy owns is one line naming its owner."""
    root = tmp_path / "runs"
    main(["sweep", "--config", str(_synthetic_small(tmp_path)), "--policies", "random,epig", "--seeds", "0",
          "--set", "acquisition.targets=test", "--rounds", "1", "--workers", "1", "--runs-dir", str(root), *SMALL])
    assert "2/2 runs complete" in capsys.readouterr().out
    by = {i.policy: runs.open_run(root, i.run_id).config for i in runs.list_runs(root)}
    assert set(by) == {"random", "epig"}
    assert by["epig"].acquisition.targets == "test" and runs.policy_label(by["epig"]) == "epig targets=test"
    assert runs.policy_label(by["random"]) == "random"
    assert build_config(sets=["acquisition.beta=0.01"], policies=["random", "balpm"]).acquisition.policy == "balpm"
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--policies", "random,balpm", "--seeds", "0", "--set", "acquisition.targets=test",
              "--runs-dir", str(root)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "knob of epig" in err


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
    assert src.kind == "synthetic" and "no real sample" in src.note
    assert demo.find_data(cwd=tmp_path, online=True).kind == "hub"


def test_demo_end_to_end_on_the_teaching_world(tmp_path, monkeypatch, capsys):
    tiny = {"loop": {"initial": 16, "batch_size": 16, "rounds": 2},
            "model": {"ensemble_size": 3, "hidden": (16, 8), "max_epochs": 2, "lr": 1e-2}}
    from balpm.experiment import presets

    monkeypatch.setattr(presets, "TEACHING_PRESET", tiny)  # the teaching world runs at the teaching preset
    monkeypatch.setattr(demo, "find_data", lambda data=None: demo.DataSource("synthetic", (), "SYNTHETIC world"))
    summary = demo.run_demo(runs_dir=tmp_path / "demo", seeds=1, progress=False)["teaching"]
    out = capsys.readouterr().out
    assert "The teaching world" in out and "The real sample: skipped" in out
    assert [p["label"] for p in summary["policies"]] == ["random", "bald", "balpm"]
    assert (tmp_path / "demo" / "teaching" / "learning_curves.html").is_file()
    assert all(i.state == "complete" for i in runs.list_runs(tmp_path / "demo" / "teaching"))
    assert isinstance(RunConfig.from_dict({}), RunConfig)


def test_resume_by_run_id_reads_the_runs_own_config(tmp_path, capsys):
    root = tmp_path / "runs"
    main(["run", "-c", str(_synthetic_small(tmp_path)), "--runs-dir", str(root), "--policy", "balpm", "--rounds", "3",
          "--run-id", "mine", "--set", "model.patience=2", *SMALL])
    run = runs.open_run(root, "mine")
    full_acq = run.acquisitions()
    assert run.config.model.patience == 2 and run.config.data.synthetic_size == 400
    w = runs.RunWriter(root, "mine")
    st = w.read_status()
    w.write_status("failed", last_round=0, rounds=st["rounds"], error="killed")
    (w.path / ".acquisitions.parquet.dead.tmp").write_bytes(b"half-written by the killed process")
    capsys.readouterr()
    main(["runs", "--runs-dir", str(root)])
    assert f"mine\tfailed\t1/3\tbalpm beta=0.2 seed 7 (resume: balpm run --resume --run-id mine --runs-dir {root})" \
        in capsys.readouterr().out
    main(["run", "--resume", "--run-id", "mine", "--runs-dir", str(root), "--quiet"])  # the README's form
    assert "mine: complete, 3 rounds" in capsys.readouterr().out
    run = runs.open_run(root, "mine")
    assert run.acquisitions().equals(full_acq) and not list(w.path.glob("*.tmp"))

    with pytest.raises(SystemExit) as exc:
        main(["run", "--resume", "--run-id", "nosuch", "--runs-dir", str(root), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run 'nosuch'") and "balpm runs --runs-dir" in err and "\n" not in err
    main(["runs", "--runs-dir", str(root)])
    assert "mine\tcomplete\t3/3\tbalpm" in capsys.readouterr().out


def _bad(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args, needle", [
    (["--beta", "inf"], "--beta"), (["--d", "nan"], "--d"), (["--lr", "inf"], "--lr"),
    (["--hidden", "0"], "--hidden"), (["--device", "foo"], "--device"), (["--seed", "-1"], "--seed"),
    (["--policy", "no_such_policy"], "--policy"), (["--set", "loop.rounds=3.5"], "--set loop.rounds"),
    (["--set", "acquisition.floor=0"], "acquisition.floor"), (["--set", "nosuch=1"], "nosuch"),
    (["-c", "rounds_35.yaml"], "loop.rounds"), (["-c", "beta_abc.yaml"], "acquisition.beta"),
    (["-c", "rounds_str.yaml", "--set", "model.hidden=0"], "model.hidden"),
])
def test_every_check_runs_before_anything_is_written(tmp_path, monkeypatch, capsys, args, needle):
    _bad(tmp_path, "rounds_35.yaml", "loop:\n  rounds: 3.5\n")
    _bad(tmp_path, "beta_abc.yaml", "acquisition:\n  beta: abc\n")
    _bad(tmp_path, "rounds_str.yaml", 'loop:\n  rounds: "5"\n')
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        main(["run", "--runs-dir", str(root), "--quiet", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err, err
    assert not root.exists(), "nothing (no _datasets/, no run folder) may be written before the checks pass"


def test_cuda_without_gpu_and_runs_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    afile = tmp_path / "afile"
    afile.write_text("")
    for args, needle in ((["--device", "cuda", "--runs-dir", str(tmp_path / "runs")], "no CUDA GPU"),
                         (["--runs-dir", str(afile)], "is a file"),
                         (["--runs-dir", str(afile / "sub")], "is a file")):
        for cmd in ("run", "sweep"):
            with pytest.raises(SystemExit) as exc:
                main([cmd, "--quiet", *args])
            assert exc.value.code == 2
            err = capsys.readouterr().err.strip()
            assert needle in err and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_yaml_no_is_false_and_set_reaches_every_knob(tmp_path, capsys):
    conf = _bad(tmp_path, "c.yaml", 'loop:\n  save_pool_scores: "no"\n  rounds: "5"\n')
    main(["run", "-c", conf, "--print-config", "--set", "model.patience=7", "--set", "features.dtype=bf16",
          "--set", "beta=0.2", "--beta", "0.1"])
    cfg = RunConfig.from_yaml(capsys.readouterr().out)
    assert cfg.loop.save_pool_scores is False and cfg.loop.rounds == 5
    assert cfg.model.patience == 7 and cfg.features.dtype == "bf16"
    assert cfg.acquisition.beta == 0.2  # --set is applied after the flags
    # a flag given at its default value still overrides the YAML
    conf2 = _bad(tmp_path, "c2.yaml", "loop:\n  rounds: 7\n")
    main(["run", "-c", conf2, "--print-config", "--rounds", "75"])
    assert RunConfig.from_yaml(capsys.readouterr().out).loop.rounds == 75
    main(["run", "-c", conf2, "--print-config"])
    assert RunConfig.from_yaml(capsys.readouterr().out).loop.rounds == 7


def test_help_shows_defaults_and_types_and_version(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    main(["run", "--help"])
    out = capsys.readouterr().out
    for text in ("[default: 13]", "[default: no-skip-bad]", "--set", "SECTION.FIELD=VALUE", "FLOAT", "INTEGER",
                 "[random|bald|"):
        assert text in out, text
    flat = " ".join(out.replace("│", " ").split())  # the defaults a run really uses: the preset's without --data
    for text in ("(default: 10 without --data, the teaching world's preset; 75 with --data)",
                 "(default: 0.1 without --data, the teaching world's preset; 0.01 with --data)",
                 "(default: 32 without --data, the teaching world's preset; 2048,256 with --data)",
                 "teaching world at the teaching preset (initial 50, batch 50, 10 rounds, K=8)"):
        assert text in flat, text
    assert "<bool>" not in out.split("--skip-bad")[1].splitlines()[0]
    main(["sweep", "--help"])
    out = capsys.readouterr().out
    for flag in ("--policies", "--seeds", "--grid", "--workers", "--backend", "--ceiling", "--address",
                 "--cpus-per-run", "--gpus-per-run", "--beta", "--set", "--runs-dir", "--config"):
        assert flag in out, flag
    main(["--version"])
    import balpm

    assert capsys.readouterr().out.strip() == f"balpm {balpm.__version__}"


def test_failures_exit_non_zero(tmp_path, monkeypatch, capsys):
    from balpm.experiment import loop

    def broken(cfg):
        raise RuntimeError("policy exploded")

    monkeypatch.setattr(loop, "_make_policy", broken)
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--config", str(_synthetic_small(tmp_path)), "--policies", "bald", "--seeds", "0",
              "--rounds", "2", "--workers", "1", "--runs-dir", str(tmp_path / "runs"), *SMALL])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert "0/1 runs complete" in captured.out and "policy exploded" in captured.err
    monkeypatch.undo()  # the failed run released its lock: the same process resumes it at once
    main(["sweep", "--config", str(_synthetic_small(tmp_path)), "--policies", "bald", "--seeds", "0",
          "--rounds", "2", "--workers", "1", "--runs-dir", str(tmp_path / "runs"), *SMALL])
    assert "1/1 runs complete" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["run", "--beta", "abc"])  # click's own usage errors keep their code
    assert exc.value.code == 2


def test_a_second_writer_with_the_same_run_id_gets_one_line_and_exit_2(tmp_path):
    root = tmp_path / "runs"
    held = runs.lock_run(root, "shared").acquire()  # a first writer, alive
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "balpm", "run", "-c", str(_synthetic_small(tmp_path)),
                               "--runs-dir", str(root), "--run-id", "shared", "--rounds", "2", *SMALL],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    finally:
        held.release()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "being written by another balpm process" in lines[0], proc.stderr
    assert not (root / "shared").exists() and runs.list_runs(root) == []


@pytest.mark.slow
def test_two_writers_same_run_id_different_configs_one_wins(tmp_path):
    """The issue's case: two `balpm run` with different configs and one --run-id; never a mixed folder."""
    root = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "balpm", "run", "-c", str(_synthetic_small(tmp_path)), "--runs-dir", str(root),
            "--run-id", "same", "--rounds", "3", *SMALL]
    procs = {policy: subprocess.Popen([*base, "--policy", policy], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env, cwd=tmp_path) for policy in ("random", "balpm")}
    out = {policy: (p.wait(timeout=300), p.stderr.read()) for policy, p in procs.items()}
    codes = sorted(code for code, _ in out.values())
    assert codes == [0, 2], out
    winner = next(policy for policy, (code, _) in out.items() if code == 0)
    loser_err = next(err for code, err in out.values() if code == 2).strip()
    assert len(loser_err.splitlines()) == 1 and loser_err.startswith("error:"), loser_err
    assert "another balpm process" in loser_err or "config hash" in loser_err
    run = runs.open_run(root, "same")
    assert run.config.acquisition.policy == winner and run.status["state"] == "complete"
    assert sorted(run.acquisitions()["round"].unique()) == [0, 1] and len(run.rounds()) == 3
