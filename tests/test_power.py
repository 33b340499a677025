"""Power and multiplicity of balpm.evidence.stats (issue 13): the minimal detectable effect, Holm's step-down, the
p-value behind every verdict, the A/A check's own spread, and the report carrying them (JSON and text)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from balpm.evidence import report, stats
from run_records import Run


def _curve_runs(label: str, seeds, offset_S, setting: str = "S", truth: float | None = None) -> list[Run]:
    """Runs whose test log-likelihood curve over 50..250 labels is a seed curve plus a per-seed offset."""
    x = np.array([50.0, 100.0, 150.0, 200.0, 250.0])
    out = []
    for s, off in zip(seeds, offset_S):
        y = -0.69 + 0.01 * np.arange(5) + 0.002 * math.sin(s) + off
        out.append(Run(f"{label}-s{s}-{setting}", label, label.split()[0], s, setting,
                       pd.DataFrame({"round": range(5), "labelled": x, "test_log_likelihood": y, "test_accuracy": 0.5 + 0 * y}),
                       None if truth is None else {"test_log_likelihood": truth, "test_accuracy": 0.9}))
    return out


def test_mde_is_the_stated_formula_and_has_80_percent_power():
    # the formula: (t_{1-a/2,df} + t_{0.8,df}) * SE
    assert stats.mde(1.0, 15) == pytest.approx(sps.t.ppf(0.975, 15) + sps.t.ppf(0.8, 15))
    assert stats.mde(0.01, 7, level=0.90) == pytest.approx((sps.t.ppf(0.95, 7) + sps.t.ppf(0.8, 7)) * 0.01)
    assert stats.mde(None, 7) is None and stats.mde(0.1, float("nan")) is None and stats.mde(0.1, 0) is None
    # exact power of the two-sided paired t-test at that true effect (noncentral t), 16 seeds: about 0.8
    n, sigma = 16, 0.02
    delta = stats.mde(sigma / math.sqrt(n), n - 1)
    crit = sps.t.ppf(0.975, n - 1)
    nc = delta / (sigma / math.sqrt(n))
    power = sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc)
    assert 0.77 < power < 0.82
    # and by simulation: the verdict rule calls a difference of that size in ~80% of 2,000 experiments
    rng = np.random.default_rng(3)
    d = rng.normal(delta, sigma, size=(2000, n))
    calls = 0
    for row in d:
        iv = stats.t_interval(row)
        calls += stats.verdict(iv.low, iv.high) == "better"
    assert 0.76 < calls / 2000 < 0.84


def test_p_value_agrees_with_the_interval_verdict():
    rng = np.random.default_rng(0)
    for _ in range(300):
        d = rng.normal(rng.normal(0, 0.01), 0.01, size=int(rng.integers(2, 17)))
        res = stats.compare_values(dict(enumerate(d)), dict(enumerate(np.zeros_like(d))), 1, n_boot=10)
        assert (res["verdict"] != "no detectable difference") == (res["p_value"] < 0.05)
        assert res["p_value"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)
        assert res["mde"] == pytest.approx(stats.mde(d.std(ddof=1) / math.sqrt(d.size), d.size - 1))
    one = stats.compare_values({0: 1.0}, {0: 0.0})
    assert one["p_value"] is None and one["mde"] is None  # one seed: no test, no power


def test_holm_step_down_matches_the_textbook_example_and_controls_the_family():
    # p = (0.01, 0.04, 0.03, 0.005): sorted x (4, 3, 2, 1) = 0.02, 0.03, 0.06, 0.04 -> running max
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]  # None: not counted
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0] or stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert stats.holm_verdicts([0.1, -0.1, 0.1], [0.01, 0.01, 0.2], [1, 1, -1]) == \
        ["better", "worse", "no detectable difference"]
    assert stats.holm_verdicts([0.1], [0.01], [-1]) == ["worse"]  # lower is better (Brier, ECE)
    # 10 null comparisons of 8 seeds, 1,000 times: raw verdicts call something in ~40% of families, Holm in <= 5%
    rng = np.random.default_rng(1)
    p_all = sps.ttest_1samp(rng.normal(0, 1, size=(1000, 10, 8)), 0.0, axis=2).pvalue
    any_raw = int((p_all < 0.05).any(axis=1).sum())
    any_holm = sum(bool((np.array(stats.holm(list(p))) < 0.05).any()) for p in p_all)
    assert any_raw / 1000 > 0.30 and any_holm / 1000 <= 0.065


def test_aa_check_reports_its_own_spread():
    assert stats.possible_splits(8) == 35 and stats.possible_splits(16) == 6435 and stats.possible_splits(7) == 35
    lo, hi = stats.fp_interval(0, 35)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 35))  # Clopper-Pearson upper bound at k = 0: ~0.10
    lo, hi = stats.fp_interval(6, 35)
    assert lo < 6 / 35 < hi and hi - lo > 0.2  # "0 to 6 false calls in 35 splits" is within one check's spread
    rng = np.random.default_rng(5)
    values = {"test_log_likelihood": {s: float(v) for s, v in enumerate(rng.normal(-0.68, 0.01, 16))}}
    aa = stats.aa_check(values, n_boot=50)
    assert aa["splits"] == stats.AA_MAX_SPLITS and aa["possible_splits"] == 6435
    assert aa["calls"] == round(aa["false_positive_rate"] * aa["splits"])
    assert aa["fp_ci"] == pytest.approx(stats.fp_interval(aa["calls"], aa["splits"]))
    assert aa["fp_ci"][1] - aa["fp_ci"][0] < 0.08  # 400 splits: an informative check
    line = stats.aa_line({**aa, "baseline": "random"})
    assert "of 6,435 possible" in line and "95% CI [" in line
    aa8 = stats.aa_check({"test_log_likelihood": dict(list(values["test_log_likelihood"].items())[:8])}, n_boot=50)
    assert aa8["splits"] == 35 and "(all there are)" in stats.aa_line(aa8)


def test_evidence_states_power_headroom_and_holm_and_the_report_prints_them():
    rng = np.random.default_rng(2)
    base = _curve_runs("random", range(8), rng.normal(0, 0.004, 8), truth=-0.55)
    good = _curve_runs("balpm", range(8), 0.02 + rng.normal(0, 0.004, 8), truth=-0.55)
    null = _curve_runs("bald", range(8), rng.normal(0, 0.004, 8), truth=-0.55)
    other = _curve_runs("random", range(8), rng.normal(0, 0.004, 8), setting="T")  # no truth.json: unknown
    other += _curve_runs("bald", range(8), 0.004 + rng.normal(0, 0.004, 8), setting="T")
    ev = stats.evidence(base + good + null + other, n_boot=50)
    by = {(p["setting"], p["label"]): p for p in ev["policies"]}
    # headroom: truth.json's Bayes-optimal test LL minus random's mean AULC
    base_aulc = np.mean([stats.seed_aulcs([r])[1][r.seed] for r in base])
    hr = ev["headroom"]["S"]["test_log_likelihood"]
    assert hr["source"] == "truth" and hr["ceiling"] == pytest.approx(-0.55)
    assert hr["headroom"] == pytest.approx(-0.55 - base_aulc)
    assert ev["headroom"]["T"]["test_log_likelihood"]["headroom"] is None  # no truth, no full runs
    vs = by[("S", "balpm")]["vs_baseline"]["test_log_likelihood"]
    assert vs["mde_share"] == pytest.approx(vs["mde"] / hr["headroom"])
    assert vs["effect_share"] == pytest.approx(vs["aulc_diff"]["mean"] / hr["headroom"])
    assert by[("T", "bald")]["vs_baseline"]["test_log_likelihood"]["mde_share"] is None
    # Holm over every AULC comparison of the report: 3 compared entries x 2 metrics (accuracy constant: p = 1)
    items = [v for p in ev["policies"] for v in (p["vs_baseline"] or {}).values()]
    assert ev["multiplicity"]["m"] == sum(v["p_value"] is not None for v in items) == 6
    assert [v["p_holm"] for v in items] == pytest.approx(stats.holm([v["p_value"] for v in items]))
    assert vs["verdict"] == vs["holm_verdict"] == "better"
    for v in items:  # Holm never calls what the per-comparison rule does not
        assert v["holm_verdict"] == "no detectable difference" or v["holm_verdict"] == v["verdict"]
        assert v["mde_family"] >= v["mde"]
    text = report.format_text({**ev, "smooth": 1, "runs": len(base) * 5, "skipped": [],
                               "chance": {}}, ["test_log_likelihood"])
    assert "Holm's step-down over the 6 AULC comparisons" in text
    assert f"{vs['mde']:.4f} ({vs['mde_share']:.0%} of headroom)" in text
    assert "ceiling -0.5500 (truth.json, Bayes-optimal)" in text
