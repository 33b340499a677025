"""The many-worlds report with the policies beyond the paper (issue 17, item 2): a worlds sweep that holds
random, BALD and BAL-PM on every world and EPIG and D-optimal design on two of them. Each other policy is
compared with random AND with BAL-PM, every comparison joins the one Holm family, worlds without the new
policies keep their three comparisons, and the text report prints them. Numbers are recomputed here
from the run folders (balpm.experiment.runs, balpm.evidence.metrics) by other means."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from conftest import TINY_WORLDS
from scipy import stats as sps

from balpm.evidence import metrics, stats, worlds_report

from balpm.experiment import runs, sweep
from balpm.config import RunConfig
from balpm.data.worlds import parse_world

NEW = ["epig", "dopt"]


@pytest.fixture(scope="module")
def seven(worlds_sweep, tmp_path_factory):
    """The session's tiny worlds sweep, copied, plus epig and dopt x seeds 0-2 on its first two worlds
    (the same loop and model as tests/conftest.py's worlds_sweep, so the same settings)."""
    root = tmp_path_factory.mktemp("worlds7") / "runs"
    shutil.copytree(worlds_sweep, root)
    cfgs = []
    for spec in TINY_WORLDS[:2]:
        base = RunConfig().replace(data={"world": spec}, model={"hidden": (8,), "ensemble_size": 3, "max_epochs": 3,
                                                                "lr": 1e-2, "batch_size": 16, "device": "cpu"},
                                   loop={"initial": 10, "batch_size": 10, "rounds": 3})
        cfgs += sweep.expand(base, NEW, [0, 1, 2])
    results = sweep.sweep(cfgs, root, workers=1, progress=False)
    assert all(r.state == "complete" for r in results), [r.error for r in results if r.state != "complete"]
    return root, worlds_report.worlds_report([root], n_boot=50)


def _aulc(run: runs.Run) -> float:
    r = run.rounds()
    return metrics.aulc(r["labelled"].to_numpy(float), r["test_log_likelihood"].to_numpy(float))


def test_each_new_policy_is_compared_with_random_and_with_balpm(seven):
    root, summary = seven
    with_new = {parse_world(s).spec() for s in TINY_WORLDS[:2]}
    by: dict = {}
    for info in runs.list_runs(root):
        run = runs.open_run(root, info.run_id)
        by.setdefault(parse_world(run.config.data.world).spec(), {}).setdefault(info.policy, {})[info.seed] = run
    for w in summary["worlds"]:
        comps = [r["comparison"] for r in summary["table"] if r["setting"] == w["setting"]]
        core = ["balpm - random", "bald - random", "balpm - bald"]
        if w["world"] in with_new:
            assert comps == core + ["dopt - random", "dopt - balpm", "epig - random", "epig - balpm"]
        else:
            assert comps == core
    new_rows = [r for r in summary["table"] if r["policy"] in NEW]
    assert len(new_rows) == 8
    for row in new_rows:
        w = by[row["world"]]
        ref = "balpm" if row["comparison"].endswith("- balpm") else "random"
        assert row["reference"] == ref
        d = np.array([_aulc(w[row["policy"]][s]) - _aulc(w[ref][s]) for s in (0, 1, 2)])
        half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
        assert row["n"] == 3 and row["paired"] and row["mean"] == pytest.approx(d.mean())
        assert row["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
        assert row["p_value"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)


def test_one_holm_family_over_every_comparison_and_verdict_counts_per_comparison(seven):
    _, summary = seven
    table = summary["table"]
    assert summary["multiplicity"]["m"] == 5 * 3 + 2 * 4 == len(table)
    assert [r["p_holm"] for r in table] == pytest.approx(stats.holm([r["p_value"] for r in table]))
    for comp in ("epig - random", "epig - balpm", "dopt - random", "dopt - balpm"):
        rows = [r for r in table if r["comparison"] == comp]
        vs = summary["verdict_shares"][comp]
        assert vs["n_worlds"] == len(rows) == 2
        for v in stats.VERDICTS:
            assert vs["holm"][v] == sum(r["holm_verdict"] == v for r in rows)
    # the mechanism of the new policies is measured like the others'
    for w in summary["worlds"]:
        for lab in set(w["policies"]) & set(NEW):
            p = w["policies"][lab]
            assert p["seeds"] == [0, 1, 2] and 0.0 <= p["noisy_labels"] <= 1.0 and 0.0 < p["unique_prompts"] <= 1.0


def test_text_report_lists_the_new_comparisons(seven):
    _, summary = seven
    text = worlds_report.format_text(summary)
    for comp in ("epig - balpm", "dopt - random"):
        assert f"  {comp:<28} " in text  # the share-of-worlds line
    assert f"Holm's step-down over all {len(summary['table'])} comparisons" in text


def test_worlds_set_takes_a_knob_of_the_policy_it_is_for(capsys):
    """``balpm worlds --policies random,epig --set acquisition.targets=test``: the knob reaches epig's runs
    (its owner), random's runs share their setting; a knob no listed policy owns is a one-line error."""
    from balpm.experiment import runs as runs_mod
    from balpm.cli import main
    from balpm.cli.worlds import world_configs

    cfgs = world_configs("classic", ["random", "epig"], [0, 1], ["acquisition.targets=test"], ceiling=False)
    by = {(c.acquisition.policy, c.loop.seed): c for c in cfgs}
    assert set(by) == {("random", 0), ("random", 1), ("epig", 0), ("epig", 1)}
    assert by["epig", 0].acquisition.targets == "test" and runs_mod.policy_label(by["epig", 0]) == "epig targets=test"
    assert len({runs_mod.setting_hash(c) for c in cfgs}) == 1  # one world, one setting for the report
    plain = world_configs("classic", ["random", "epig"], [0], [], ceiling=False)
    assert {runs_mod.policy_label(c) for c in plain} == {"random", "epig"}
    assert runs_mod.setting_hash(plain[0]) == runs_mod.setting_hash(cfgs[0])
    # a knob of the default policy still goes to it (the teaching preset's beta replaced)
    (b,) = world_configs("classic", ["balpm"], [0], ["acquisition.beta=0.01"], ceiling=False)
    assert b.acquisition.beta == 0.01
    with pytest.raises(SystemExit) as exc:
        main(["worlds", "--world", "classic", "--policies", "random", "--seeds", "0",
              "--set", "acquisition.targets=test", "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and "knob of epig" in err
