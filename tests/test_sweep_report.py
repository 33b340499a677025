"""Sweeps (policies x seeds x grid, parallel processes) and reports (JSON, text, HTML) on the teaching world."""
from __future__ import annotations

import json

import numpy as np
import pytest

from balpm import loop, metrics, report, runs, stats, sweep
from balpm.cli import main
from balpm.config import RunConfig
from balpm.errors import BalpmError, ConfigError


def base_cfg() -> RunConfig:
    return RunConfig().replace(
        data={"synthetic_size": 400},
        model={"hidden": (16, 8), "ensemble_size": 3, "max_epochs": 2, "lr": 1e-2, "batch_size": 16},
        loop={"initial": 16, "batch_size": 16, "rounds": 3},
    )


def test_parsers():
    assert sweep.parse_seeds("0-3") == [0, 1, 2, 3]
    assert sweep.parse_seeds("0,1,5") == [0, 1, 5]
    assert sweep.parse_seeds("0-2,2,7") == [0, 1, 2, 7]
    for bad in ("", "a-b", "3-1"):
        with pytest.raises(ConfigError):
            sweep.parse_seeds(bad)
    assert sweep.parse_policies("random, bald") == ["random", "bald"]
    with pytest.raises(ConfigError):
        sweep.parse_policies("random,nope")
    assert sweep.parse_grid(["beta=0.01,0.1", "loop.batch_size=8", "estimator=kl"]) == {
        "acquisition.beta": [0.01, 0.1], "loop.batch_size": [8], "acquisition.estimator": ["kl"]}
    with pytest.raises(ConfigError):
        sweep.parse_grid(["nonsense=1"])
    cfgs = sweep.expand(base_cfg(), ["random", "balpm"], [0, 1], {"acquisition.beta": [0.01, 0.1]})
    assert len(cfgs) == 8 and len({c.hash() for c in cfgs}) == 8
    labels = {runs.policy_label(c) for c in cfgs}
    assert labels == {"random", "balpm", "balpm beta=0.1"}


def test_sweep_then_report(tmp_path, capsys):
    root = tmp_path / "runs"
    cfgs = sweep.expand(base_cfg(), ["random", "bald"], [0, 1])
    results = sweep.sweep(cfgs, root, workers=2, progress=False)
    assert [r.state for r in results] == ["complete"] * 4, results
    infos = runs.list_runs(root)
    assert sorted(i.run_id for i in infos) == sorted(runs.default_run_id(c) for c in cfgs)
    assert all(i.state == "complete" for i in infos)
    # a re-issued sweep reuses complete runs: nothing is rewritten
    mtimes = {i.run_id: (i.path / "rounds.parquet").stat().st_mtime_ns for i in infos}
    sweep.sweep(cfgs, root, workers=1, progress=False)
    assert mtimes == {i.run_id: (i.path / "rounds.parquet").stat().st_mtime_ns for i in runs.list_runs(root)}

    # add a failed run: the report lists it as skipped, and never crashes
    bad = root / "broken-run"
    bad.mkdir()
    (bad / "config.yaml").write_text("::: nope")

    html = tmp_path / "curves.html"
    main(["report", str(root), "--json", "--html", str(html), "--smooth", "2", "--n-boot", "200"])
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"] == "random" and out["runs"] == 4
    assert [s["run_id"] for s in out["skipped"]] == ["broken-run"]
    by = {p["label"]: p for p in out["policies"]}
    assert set(by) == {"random", "bald"}
    assert by["random"]["n_seeds"] == 2 and by["random"]["vs_baseline"] is None
    bald = by["bald"]
    assert bald["labelled"] == [16.0, 32.0, 48.0]
    # the numbers equal the metrics functions applied to the runs' rounds tables (seeds paired, unsmoothed)
    curves = {}
    for label in ("random", "bald"):
        rows = [runs.open_run(root, rid).rounds() for rid in sorted(by[label]["run_ids"],
                key=lambda rid: runs.open_run(root, rid).config.loop.seed)]
        curves[label] = np.stack([r["test_log_likelihood"].to_numpy() for r in rows])
    mean, sem = metrics.mean_sem(curves["bald"][:, -1])
    assert bald["final"]["test_log_likelihood"]["mean"] == pytest.approx(mean)
    assert bald["final"]["test_log_likelihood"]["sem"] == pytest.approx(sem)
    x = np.array([16.0, 32.0, 48.0])
    aulc = {k: np.array([metrics.aulc(x, c) for c in v]) for k, v in curves.items()}
    assert bald["aulc"]["test_log_likelihood"]["mean"] == pytest.approx(aulc["bald"].mean())
    vs = bald["vs_baseline"]["test_log_likelihood"]
    d = aulc["bald"] - aulc["random"]
    half = 12.706204736174707 * d.std(ddof=1) / np.sqrt(2)  # Student-t, 1 degree of freedom
    assert vs["aulc_diff"]["mean"] == pytest.approx(d.mean())
    assert vs["aulc_diff"]["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert vs["paired"] is True and vs["paired_seeds"] == [0, 1] and vs["verdict"] in stats.VERDICTS
    assert set(bald["vs_baseline"]) >= {"test_log_likelihood", "test_accuracy", "ood_log_likelihood", "test_brier"}
    assert not set(bald["vs_baseline"]) & {"train_seconds", "mean_uncertainty", "epochs", "valid_loss"}
    assert out["aa_check"][bald["setting"]]["splits"] == 0  # 2 baseline seeds: no A/A
    assert out["ceiling"][bald["setting"]] is None
    text = html.read_text()
    assert "<html" in text[:200] and "plotly" in text.lower() and "Test log-likelihood" in text

    # the text report names both policies
    main_out = report.format_text(report.report([root], n_boot=50))
    assert "random" in main_out and "bald" in main_out and "skipped 1" in main_out


def test_report_groups_ablations_separately(tmp_path):
    root = tmp_path / "runs"
    cfgs = sweep.expand(base_cfg().replace(loop={"rounds": 2}), ["balpm"], [0], {"acquisition.beta": [0.01, 0.5]})
    sweep.sweep(cfgs, root, workers=1, progress=False)
    out = report.report([root], baseline="balpm", n_boot=50)
    labels = [p["label"] for p in out["policies"]]
    assert labels == ["balpm", "balpm beta=0.5"]
    assert out["policies"][1]["vs_baseline"]["test_log_likelihood"].keys() >= {"aulc_diff", "final_diff", "verdict",
                                                                             "paired_seeds"}
    # one run folder as the argument works too
    one = report.report([runs.list_runs(root)[0].path], n_boot=10)
    assert one["runs"] == 1


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(BalpmError):
        report.report([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BalpmError):
        report.report([tmp_path / "empty"])
    with pytest.raises(BalpmError, match="--smooth"):
        report.report([tmp_path / "empty"], smooth=0)
