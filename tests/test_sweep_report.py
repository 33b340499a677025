"""Sweeps (policies x seeds x grid, parallel processes) and reports (JSON, text, HTML) on the teaching world."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from balpm.cli import main
from balpm.config import RunConfig
from balpm.errors import BalpmError, ConfigError
from balpm.evidence import metrics, report, stats
from balpm.experiment import loop, runs, sweep


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
    # beta is BAL-PM's knob: random (which does not own it) gets one run per seed, BAL-PM one per grid point
    assert len(cfgs) == 6 and len({c.hash() for c in cfgs}) == 6
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


def test_cli_report_leaves_ablation_variants_out_unless_asked(tmp_path, capsys):
    """Variants (here BAL-PM without U) never join `balpm report`'s comparisons unless --variants is given."""
    root = tmp_path / "runs"
    base = base_cfg().replace(loop={"rounds": 2})
    cfgs = sweep.expand(base, ["random", "balpm"], [0, 1]) + \
        sweep.expand(base.set("acquisition.uncertainty", "none"), ["balpm"], [0, 1])
    sweep.sweep(cfgs, root, workers=1, progress=False)
    for flags, n_policies in (([], 2), (["--variants"], 3)):
        main(["report", str(root), "--json", "--n-boot", "20", *flags])
        out = json.loads(capsys.readouterr().out)
        assert len(out["policies"]) == n_policies
        assert sum(s["state"] == "variant" for s in out["skipped"]) == (2 if not flags else 0)
    main(["report", str(root), "--n-boot", "20"])
    assert "left out 2 ablation variant run(s); add --variants" in capsys.readouterr().out


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(BalpmError):
        report.report([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BalpmError):
        report.report([tmp_path / "empty"])
    with pytest.raises(BalpmError, match="--smooth"):
        report.report([tmp_path / "empty"], smooth=0)


# ---- ceiling, duplicates, and the CLI and the dashboard agreeing -------------------------------------
@pytest.fixture(scope="module")
def ceiling_root(tmp_path_factory):
    """``balpm sweep --ceiling`` (the CLI) on a tiny teaching world: random and bald on 6 seeds plus
    ``full`` per seed, and one run repeated under a second run id."""
    tmp = tmp_path_factory.mktemp("ceiling")
    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text(base_cfg().replace(loop={"save_pool_scores": False}).to_yaml())
    root = tmp / "runs"
    main(["sweep", "-c", str(cfg_path), "--policies", "random,bald", "--seeds", "0-5", "--ceiling",
          "--workers", "1", "--runs-dir", str(root), "--quiet"])
    twin = RunConfig.from_yaml(cfg_path).replace(acquisition={"policy": "bald"}, loop={"seed": 0})
    loop.run(twin, root, run_id="bald-again", progress=False)
    return root


def test_sweep_ceiling_writes_full_runs_and_the_report_shows_ceiling_never_a_verdict(ceiling_root, capsys):
    full = [i for i in runs.list_runs(ceiling_root) if i.policy == "full"]
    assert sorted(i.seed for i in full) == list(range(6)) and all(i.state == "complete" for i in full)
    settings = {i.setting for i in runs.list_runs(ceiling_root)}
    assert len(settings) == 1  # same setting as the policies: the report groups them together
    rd = runs.open_run(ceiling_root, full[0].run_id).rounds()
    pool = runs.open_run(ceiling_root, full[0].run_id).pool()
    assert len(rd) == 1 and rd["labelled"].iloc[0] == len(pool) and pool["initial"].all()
    assert runs.open_run(ceiling_root, full[0].run_id).acquisitions().empty

    main(["report", str(ceiling_root), "--json", "--n-boot", "200"])
    out = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in out["policies"]] == ["random", "bald"]  # full is never a compared policy
    setting = settings.pop()
    ceil = out["ceiling"][setting]
    assert ceil["n_seeds"] == 6 and ceil["labelled"] == float(len(pool))
    m = ceil["metrics"]["test_log_likelihood"]
    full_ll = [runs.open_run(ceiling_root, i.run_id).rounds()["test_log_likelihood"].iloc[0] for i in full]
    assert m["mean"] == pytest.approx(np.mean(full_ll))
    assert m["headroom"] == pytest.approx(m["mean"] - out["policies"][0]["initial"]["test_log_likelihood"]["mean"])
    aa = out["aa_check"][setting]
    assert aa["splits"] == math.comb(6, 3) // 2 and 0 <= aa["false_positive_rate"] <= 1
    assert m["noise"] == aa["per_metric"]["test_log_likelihood"]["noise"]
    assert (m["warning"] is not None) == (m["headroom"] < m["noise"])

    main(["report", str(ceiling_root), "--n-boot", "200"])
    text = capsys.readouterr().out
    assert "ceiling (full: whole pool" in text and "headroom over round 0" in text and "A/A check (random, 6 seeds" in text
    assert not any(line.strip().startswith("full ") for line in text.splitlines())
    for bad in ("nan", "None", "inf"):
        assert bad not in text.replace("Infinity", "")
    main(["report", str(ceiling_root), "--n-boot", "50", "--metrics", "test_accuracy,test_log_likelihood"])
    short = capsys.readouterr().out
    assert short.index("test accuracy (higher") < short.index("test log-likelihood (higher")
    assert "OOD" not in short and "Brier" not in short
    with pytest.raises(SystemExit) as exc:
        main(["report", str(ceiling_root), "--metrics", "train_seconds"])
    assert exc.value.code == 2 and "unknown metric 'train_seconds'" in capsys.readouterr().err


def test_the_same_config_under_two_run_ids_counts_once(ceiling_root):
    loaded, skipped = report.collect([ceiling_root])
    assert [r.run_id for r in loaded if r.label == "bald" and r.seed == 0] == ["bald-again"]  # smallest run id
    dup = [s for s in skipped if s["state"] == "duplicate"]
    assert len(dup) == 1 and dup[0]["run_id"].startswith("bald-s0-") and "bald-again" in dup[0]["reason"]
    out = report.report([ceiling_root], n_boot=50)
    bald = next(p for p in out["policies"] if p["label"] == "bald")
    assert bald["n_seeds"] == 6 and bald["seeds"] == list(range(6))


def test_cli_json_and_the_learning_curves_page_agree(ceiling_root, capsys, monkeypatch):
    """The page and ``balpm report --json`` show the same numbers: the page's frame function on the same
    runs, and the table the page renders in Streamlit's AppTest."""
    import sys
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from balpm_dashboard import frames

    main(["report", str(ceiling_root), "--json"])  # the CLI's defaults (n_boot 1000, seed 0)
    cli = json.loads(capsys.readouterr().out)
    infos = [i for i in runs.list_runs(ceiling_root) if i.state == "complete"]
    page_runs, dups = frames.curve_runs(infos, lambda i: runs.open_run(ceiling_root, i.run_id).rounds())
    assert len(dups) == 1
    ev = frames.page_evidence(page_runs, "random")
    assert ev["aa_check"] == cli["aa_check"] and ev["ceiling"] == cli["ceiling"]
    assert [{k: v for k, v in p.items() if k != "curves"} for p in cli["policies"]] == ev["policies"]
    table = frames.verdict_frame(ev)
    row = table[(table["policy"] == "bald") & (table["metric"] == "test_log_likelihood")].iloc[0]
    vs = next(p for p in cli["policies"] if p["label"] == "bald")["vs_baseline"]["test_log_likelihood"]
    assert row["AULC diff"] == vs["aulc_diff"]["mean"] and [row["AULC CI low"], row["AULC CI high"]] == vs["aulc_diff"]["ci"]
    assert row["verdict"] == vs["verdict"]

    monkeypatch.setenv("BALPM_RUNS_DIR", str(ceiling_root))
    at = AppTest.from_file(str(repo / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.session_state["compare_runs"] = [i.run_id for i in infos]  # the runs the CLI read
    at.switch_page("views/learning_curves.py").run()
    assert not at.exception, [e.message for e in at.exception]
    shown = at.dataframe[0].value
    assert set(shown["policy"]) == {"random", "bald"}  # full is the ceiling line, not a row
    got = shown[(shown["policy"] == "bald") & (shown["metric"] == "test log-likelihood")].iloc[0]
    assert got["AULC diff [95% t CI]"] == (f"{stats.fmt_value(vs['aulc_diff']['mean'], 4, True)} "
                                          f"{stats.fmt_interval(vs['aulc_diff']['ci'], 4, vs['n'])}")
    assert got["verdict (AULC)"] == vs["verdict"]
    # the page escapes untrusted text (dashboard/untrusted.md: backslashes, a word joiner after ':' and '@')
    aa_text = " ".join(re.sub(r"\\(.)", r"\1", m.value).replace("\u2060", "") for m in at.markdown)
    assert stats.aa_line(next(iter(cli["aa_check"].values())), "random") in aa_text
    for cell in shown.astype(str).to_numpy().ravel():
        assert cell not in ("nan", "None", "-inf", "inf") and "Infinity" not in cell


def test_curve_figures_draw_chance_and_ceiling_lines(ceiling_root):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from balpm_dashboard import frames, plots

    infos = [i for i in runs.list_runs(ceiling_root) if i.state == "complete"]
    kept, _ = frames.curve_runs(infos, lambda i: runs.open_run(ceiling_root, i.run_id).rounds())
    ev = frames.page_evidence(kept, "random")
    curves = [(r.label, r.seed, r.rounds) for r in kept if r.policy != "full"]
    mets = ["test_log_likelihood", "test_accuracy"]
    ceil = frames.ceiling_lines(ev, mets)
    fig = plots.learning_curves_figure({m: frames.curve_stats(curves, m) for m in mets},
                                       chance={m: stats.chance_level(m) for m in mets}, ceilings=ceil)
    ys = sorted(round(s.y0, 6) for s in fig.layout.shapes)
    want = sorted(round(v, 6) for v in (-math.log(2), 0.5, ceil["test_log_likelihood"]["y"], ceil["test_accuracy"]["y"]))
    assert ys == want
    assert ceil["test_accuracy"]["y"] == ev["ceiling"][kept[0].setting]["metrics"]["test_accuracy"]["mean"]
    html = report.learning_curves_figure(report.report([ceiling_root], n_boot=20))
    assert any("ceiling" in (a.text or "") for a in html.layout.annotations)
    assert any("chance" in (a.text or "") for a in html.layout.annotations)
