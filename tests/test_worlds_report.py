"""Results over many worlds (balpm.evidence.worlds_report, ``balpm report --worlds``) on a real tiny worlds sweep
(the session fixture ``worlds_sweep`` of tests/conftest.py: five ``data.world`` specs x random, bald,
balpm x 3 seeds). Every number is recomputed here from the run folders by other means."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import TINY_WORLDS
from scipy import stats as sps

from balpm.cli import main
from balpm.data.worlds import parse_world
from balpm.evidence import metrics, report, stats, worlds_report
from balpm.experiment import runs


@pytest.fixture(scope="module")
def summary(worlds_sweep):
    return worlds_report.worlds_report([worlds_sweep], n_boot=50)


def _aulc(run: runs.Run) -> float:
    r = run.rounds()
    return metrics.aulc(r["labelled"].to_numpy(float), r["test_log_likelihood"].to_numpy(float))


def _by(worlds_sweep):
    """world spec -> label -> seed -> Run, read with balpm.experiment.runs only."""
    out: dict = {}
    for info in runs.list_runs(worlds_sweep):
        run = runs.open_run(worlds_sweep, info.run_id)
        out.setdefault(parse_world(run.config.data.world).spec(), {}).setdefault(info.label, {})[info.seed] = run
    return out


def test_worlds_are_the_sweeps_data_world_with_their_knobs(summary, worlds_sweep):
    specs = {parse_world(s).spec() for s in TINY_WORLDS}
    assert {w["world"] for w in summary["worlds"]} == specs
    for w in summary["worlds"]:
        assert w["knobs"] == parse_world(w["world"]).knobs()
        assert set(w["policies"]) == {"random", "bald", "balpm"} and all(p["seeds"] == [0, 1, 2]
                                                                         for p in w["policies"].values())
    assert summary["runs"] == 45 and summary["comparisons"] == ["balpm - random", "bald - random", "balpm - bald"]
    assert len(summary["table"]) == 15
    # 3 seeds of random per world: no A/A check (it needs 6), so nothing pooled
    assert all(w["aa"]["splits"] == 0 for w in summary["worlds"]) and summary["aa_pooled"]["splits"] == 0


def test_effects_headroom_and_power_recomputed_from_the_run_folders(summary, worlds_sweep):
    by = _by(worlds_sweep)
    for row in summary["table"]:
        w = by[row["world"]]
        pol, ref = w[row["policy"]], w[row["reference"]]
        d = np.array([_aulc(pol[s]) - _aulc(ref[s]) for s in (0, 1, 2)])
        half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
        assert row["mean"] == pytest.approx(d.mean()) and row["n"] == 3 and row["paired"]
        assert row["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
        assert row["p_value"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)
        assert row["mde"] == pytest.approx((sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)) * d.std(ddof=1) / math.sqrt(3))
        # headroom: the Bayes-optimal test LL of the planted truth (truth.json) minus random's mean AULC
        truth = np.mean([json.loads((w["random"][s].path / "truth.json").read_text())["test_log_likelihood"]
                         for s in (0, 1, 2)])
        headroom = truth - np.mean([_aulc(w["random"][s]) for s in (0, 1, 2)])
        assert headroom > 0 and row["headroom"] == pytest.approx(headroom)
        assert row["effect_share"] == pytest.approx(d.mean() / headroom)
        assert row["mde_share"] == pytest.approx(row["mde"] / headroom)


def test_holm_across_the_table_and_the_share_of_worlds_per_verdict(summary):
    table = summary["table"]
    assert summary["multiplicity"]["m"] == 15 and "Holm" in summary["multiplicity"]["statement"]
    assert [r["p_holm"] for r in table] == pytest.approx(stats.holm([r["p_value"] for r in table]))
    for r in table:
        called = r["p_holm"] < 0.05
        assert r["holm_verdict"] == ("no detectable difference" if not called else
                                     "better" if r["mean"] > 0 else "worse")
        assert r["verdict"] == ("no detectable difference" if r["p_value"] >= 0.05 else
                                "better" if r["mean"] > 0 else "worse")
    for comp, vs in summary["verdict_shares"].items():
        rows = [r for r in table if r["comparison"] == comp]
        assert vs["n_worlds"] == len(rows) == 5
        for v in stats.VERDICTS:
            assert vs["raw"][v] == sum(r["verdict"] == v for r in rows)
            assert vs["holm"][v] == sum(r["holm_verdict"] == v for r in rows)
        shares = np.array([r["effect_share"] for r in rows])
        assert summary["distribution"][comp]["median"] == pytest.approx(np.median(shares))


def test_regime_map_spearman_and_levels(summary):
    by_world = {w["setting"]: w for w in summary["worlds"]}
    for comp in summary["comparisons"]:
        reg = summary["regime"][comp]
        assert reg["y"] == "effect_share"
        rows = [r for r in summary["table"] if r["comparison"] == comp]
        x = [by_world[r["setting"]]["knobs"]["noisy_share"] for r in rows]
        y = [r["effect_share"] for r in rows]
        s = reg["knobs"]["noisy_share"]  # five distinct values over five worlds: Spearman
        rho = sps.spearmanr(x, y).statistic
        assert s["kind"] == "spearman" and s["rho"] == pytest.approx(rho) and s["n"] == 5
        if abs(rho) < 1:
            se = math.sqrt((1 + rho ** 2 / 2) / 2)
            assert s["ci"] == pytest.approx([math.tanh(math.atanh(rho) - 1.959964 * se),
                                             math.tanh(math.atanh(rho) + 1.959964 * se)], abs=1e-5)
        t = reg["knobs"]["test"]  # text knob: the median per value
        assert t["kind"] == "levels" and set(t["levels"]) == {"topics", "pool", "ood"}
        topics = [r["effect_share"] for r in rows if by_world[r["setting"]]["knobs"]["test"] == "topics"]
        assert t["levels"]["topics"] == {"median": pytest.approx(np.median(topics)), "n": 3}
        assert reg["knobs"]["cpp"] == {"kind": "constant", "n": 5, "values": [2]}
    cells = [x for c in summary["comparisons"] for x in summary["regime"][c]["knobs"].values() if x["kind"] == "spearman"]
    assert summary["regime_multiplicity"]["m"] == len(cells)  # Holm over the map's knob correlations
    assert [x["p_holm"] for x in cells] == pytest.approx(stats.holm([x["p_value"] for x in cells]))
    assert worlds_report.regime_summary([1, 2, 3], [0.1, None, 0.3])["kind"] == "levels"
    assert worlds_report.fisher_interval(1.0, 10) == [None, None]


def test_mechanism_per_world_matches_the_acquired_rows(summary, worlds_sweep):
    by = _by(worlds_sweep)
    for w in summary["worlds"]:
        for label, mech in w["policies"].items():
            noisy, unique = [], []
            for run in by[w["world"]][label].values():
                table = run.dataset()[0].set_index("pair_id")
                acq = run.acquisitions()
                noisy.append(float((table.loc[acq["pair_id"], "cluster"] == 0).mean()))  # cluster 0: the noisy region
                unique.append(acq.groupby("round")["prompt_id"].nunique().mean() / 10)
            assert mech["noisy_labels"] == pytest.approx(np.mean(noisy))
            assert mech["unique_prompts"] == pytest.approx(np.mean(unique))
            if label == "balpm":
                ratios = [np.nanmedian(r.rounds()["beta_h_to_u_std"]) for r in by[w["world"]][label].values()]
                assert mech["beta_h_to_u"] == pytest.approx(np.mean(ratios))
            else:
                assert mech["beta_h_to_u"] is None
        pool_share = np.mean([json.loads((r.path / "truth.json").read_text())["noisy_share_pool"]
                              for r in by[w["world"]]["random"].values()])
        assert w["noisy_pool"] == pytest.approx(pool_share)
    # the regime map's "why": the effect against the policy's excess noisy share (acquired minus pool), by Spearman
    by_world = {w["setting"]: w for w in summary["worlds"]}
    rows = [r for r in summary["table"] if r["comparison"] == "bald - random"]
    x = [by_world[r["setting"]]["policies"]["bald"]["noisy_labels"] - by_world[r["setting"]]["noisy_pool"] for r in rows]
    got = summary["regime"]["bald - random"]["mechanism"]["noisy labels - pool share (policy)"]
    assert got["kind"] == "spearman" and got["rho"] == pytest.approx(sps.spearmanr(x, [r["effect_share"] for r in rows]).statistic)
    assert summary["regime"]["bald - random"]["mechanism"]["beta*H / U spread (policy)"]["kind"] == "constant"  # no H


def test_cli_report_worlds_text_json_html(summary, worlds_sweep, tmp_path, capsys):
    html = tmp_path / "worlds.html"
    main(["report", str(worlds_sweep), "--worlds", "--json", "--html", str(html), "--n-boot", "50"])
    out = json.loads(capsys.readouterr().out)
    assert out["table"] == json.loads(worlds_report.to_json(summary))["table"]
    assert html.stat().st_size > 1_000_000 and b"Regime map" in html.read_bytes()  # plotly.js embedded: offline
    main(["report", str(worlds_sweep), "--worlds", "--n-boot", "50"])
    text = capsys.readouterr().out
    assert "Holm's step-down over all 15 comparisons" in text and "MDE" in text and "regime map" in text
    for comp in summary["comparisons"]:
        assert comp in text
    first = summary["table"][0]
    assert f"{first['mean']:+.4f} {stats.fmt_interval(first['ci'], 4, 3)}" in text


def test_cli_report_worlds_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "empty"), "--worlds"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no runs found")


def test_world_of_reads_data_world_through_parse_world(worlds_sweep):
    loaded, _ = report.collect([worlds_sweep])
    one = loaded[0]
    name, knobs = worlds_report.world_of(one)
    assert name == parse_world(runs.open_run(worlds_sweep, one.run_id).config.data.world).spec()
    assert knobs == parse_world(name).knobs()


def test_worlds_are_named_as_in_worlds_yaml(worlds_sweep, tmp_path):
    specs = [parse_world(s).spec() for s in TINY_WORLDS]
    (tmp_path / "worlds.yaml").write_text("worlds:\n" + "".join(f"- index: {9 - i}\n  spec: '{s}'\n"
                                                                 for i, s in enumerate(specs)))
    names = worlds_report.world_names([tmp_path, tmp_path / "missing"])
    assert names == {s: f"w{9 - i}" for i, s in enumerate(specs)}
    loaded, _ = report.collect([worlds_sweep])
    got = worlds_report.worlds_summary(loaded, n_boot=20, names=names)
    assert [w["name"] for w in got["worlds"]] == ["w5", "w6", "w7", "w8", "w9"]  # in the draw's order
    assert [w["world"] for w in got["worlds"]] == specs[::-1]
    assert [r["name"] for r in got["table"]] == [n for n in ("w5", "w6", "w7", "w8", "w9") for _ in range(3)]
    unnamed = worlds_report.worlds_summary(loaded, n_boot=20)
    assert [w["name"] for w in unnamed["worlds"]] == ["#0", "#1", "#2", "#3", "#4"]
