"""balpm.evidence.stats on constructed curves with known answers: AULC, pairing, verdict signs, A/A calibration, ceiling."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from balpm.evidence import stats
from run_records import Run

X = np.array([10.0, 20.0, 40.0, 80.0])


def _rounds(x, **cols) -> pd.DataFrame:
    return pd.DataFrame({"round": np.arange(len(x)), "labelled": np.asarray(x, float), **cols})


def _runs(label, seeds, ll_fn, brier_fn=None, extra=None, setting="S", policy=None):
    out = []
    for s in seeds:
        cols = {"test_log_likelihood": ll_fn(s)}
        if brier_fn is not None:
            cols["test_brier"] = brier_fn(s)
        cols.update(extra or {})
        out.append(Run(f"{label}-s{s}", label, policy or label, s, setting, _rounds(X, **cols)))
    return out


def _seed_curve(s):  # a different, noisy curve per seed (seed effect + round noise)
    rng = np.random.default_rng(100 + s)
    return -0.69 + 0.02 * np.log(X / 10) + 0.01 * s + rng.normal(0, 0.003, X.size)


def _by_label(ev):
    return {p["label"]: p for p in ev["policies"]}


def test_constant_shift_gives_the_exact_aulc_difference_and_sign_aware_verdicts():
    base = _runs("random", range(5), _seed_curve, lambda s: 0.25 - 0.001 * s + 0 * X)
    up = _runs("good", range(5), lambda s: _seed_curve(s) + 0.013, lambda s: 0.25 - 0.001 * s - 0.004 + 0 * X)
    down = _runs("bad", range(5), lambda s: _seed_curve(s) - 0.002, lambda s: 0.25 - 0.001 * s + 0.004 + 0 * X)
    ev = stats.evidence(base + up + down, n_boot=200)
    by = _by_label(ev)
    good = by["good"]["vs_baseline"]
    assert good["test_log_likelihood"]["aulc_diff"]["mean"] == pytest.approx(0.013, abs=1e-12)
    assert good["test_log_likelihood"]["aulc_diff"]["ci"] == pytest.approx([0.013, 0.013], abs=1e-12)
    assert good["test_log_likelihood"]["final_diff"]["mean"] == pytest.approx(0.013, abs=1e-12)
    assert good["test_log_likelihood"]["verdict"] == "better" and good["test_log_likelihood"]["paired"] is True
    assert good["test_log_likelihood"]["paired_seeds"] == [0, 1, 2, 3, 4]
    # Brier: lower is better, so a negative difference is "better"
    assert good["test_brier"]["aulc_diff"]["mean"] == pytest.approx(-0.004, abs=1e-12)
    assert good["test_brier"]["verdict"] == "better" and good["test_brier"]["direction"] == -1
    bad = by["bad"]["vs_baseline"]
    assert bad["test_log_likelihood"]["verdict"] == "worse" and bad["test_brier"]["verdict"] == "worse"
    assert bad["test_log_likelihood"]["fewer_labels"] is None  # never behind a verdict other than better
    assert by["random"]["vs_baseline"] is None and by["random"]["is_baseline"]


def test_aulc_is_the_unsmoothed_trapezoid_over_labelled_size():
    x = np.array([10.0, 20.0, 40.0])
    y = np.array([0.0, 1.0, 1.0])
    r = Run("a", "random", "random", 0, "S", _rounds(x, test_log_likelihood=y))
    ev = stats.evidence([r])
    # (0+1)/2*10 + (1+1)/2*20 = 25 over the range 30; a 3-round average would give something else
    assert ev["policies"][0]["aulc"]["test_log_likelihood"]["mean"] == pytest.approx(25 / 30)
    assert ev["policies"][0]["final"]["test_log_likelihood"]["mean"] == 1.0


def test_t_and_welch_intervals_match_scipy():
    d = np.array([0.3, -0.1, 0.4, 0.2, 0.05])
    iv = stats.t_interval(d)
    ref = sps.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high))
    a, b = np.array([1.0, 1.4, 0.9, 1.3]), np.array([0.2, 0.9, 0.1, 0.5, 0.6, 0.4])
    w = stats.welch_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (w.low, w.high) == pytest.approx((ref.low, ref.high))
    assert w.mean == pytest.approx(a.mean() - b.mean())


def test_paired_by_seed_versus_unpaired_when_seeds_differ():
    # a large seed effect (0.01 per seed) and a small, consistent policy gain (0.002): only pairing sees it
    base = _runs("random", range(6), _seed_curve)
    gain = _runs("pol", range(6), lambda s: _seed_curve(s) + 0.002 + 0.0002 * np.sin(s))
    ev = stats.evidence(base + gain, n_boot=200)
    res = _by_label(ev)["pol"]["vs_baseline"]["test_log_likelihood"]
    assert res["paired"] is True and res["method"] == "paired-t" and res["n"] == 6 and res["verdict"] == "better"
    # the same policy on other seeds: nothing shared, so Welch over all seeds, said, and no verdict
    other = _runs("pol", range(10, 16), lambda s: _seed_curve(s - 10) + 0.002)
    res2 = _by_label(stats.evidence(base + other, n_boot=200))["pol"]["vs_baseline"]["test_log_likelihood"]
    assert res2["paired"] is False and res2["method"] == "welch" and res2["paired_seeds"] == []
    assert res2["verdict"] == "no detectable difference"
    # partly shared seeds: paired over the shared ones only
    part = _runs("pol", [0, 1, 2, 30], lambda s: _seed_curve(s % 30) + 0.002)
    res3 = _by_label(stats.evidence(base + part, n_boot=200))["pol"]["vs_baseline"]["test_log_likelihood"]
    assert res3["paired"] is True and res3["paired_seeds"] == [0, 1, 2] and res3["n"] == 3


def test_one_seed_has_no_ci_and_no_verdict_and_prints_no_nan():
    base = _runs("random", [0], _seed_curve)
    pol = _runs("pol", [0], lambda s: _seed_curve(s) + 0.05)
    res = _by_label(stats.evidence(base + pol))["pol"]["vs_baseline"]["test_log_likelihood"]
    assert res["aulc_diff"]["mean"] == pytest.approx(0.05) and res["aulc_diff"]["ci"] == [None, None]
    assert res["verdict"] == "no detectable difference" and res["fewer_labels"] is None
    assert stats.fmt_interval(res["aulc_diff"]["ci"], n=res["n"]) == "1 seed: no CI"
    for bad in (None, math.nan, -math.inf):
        assert stats.fmt_value(bad) == "-"
    assert stats.fmt_saving({"exact": {"value": 0.25, "ci": [None, 0.4]}, "n": 5}) == "25.0% [never, 40.0]"
    assert stats.fmt_saving({"paper": {"value": 5 / 9, "ci": [5 / 9, 6 / 9]}, "n": 8}, "paper") == "55.6% [55.6, 66.7]"
    assert stats.fmt_saving(None) == "-"


def test_only_quality_metrics_are_compared():
    extra = {"train_seconds": np.array([1.0, 2.0, 3.0, 4.0]), "mean_uncertainty": np.ones(4), "u_std": np.ones(4),
             "beta_h_std": np.ones(4), "epochs": np.ones(4), "test_accuracy": np.full(4, 0.6)}
    base = _runs("random", range(3), _seed_curve, extra=extra)
    pol = _runs("pol", range(3), lambda s: _seed_curve(s) + 0.01, extra={**extra, "train_seconds": np.full(4, 99.0)})
    vs = _by_label(stats.evidence(base + pol, n_boot=100))["pol"]["vs_baseline"]
    assert set(vs) == {"test_log_likelihood", "test_accuracy"}
    assert stats.quality_metrics(["train_seconds", "test_ece", "u_std", "ood_accuracy"]) == ["ood_accuracy", "test_ece"]
    assert stats.chance_level("test_log_likelihood") == pytest.approx(-math.log(2))
    assert stats.chance_level("ood_accuracy") == 0.5 and stats.chance_level("test_ece") is None


def test_fewer_labels_only_behind_better_and_when_the_target_is_reached():
    base = _runs("random", range(4), lambda s: np.array([-0.69, -0.68, -0.67, -0.66]) + 0.001 * s)
    fast = _runs("fast", range(4), lambda s: np.array([-0.69, -0.665, -0.655, -0.65]) + 0.001 * s)
    res = _by_label(stats.evidence(base + fast, n_boot=200))["fast"]["vs_baseline"]["test_log_likelihood"]
    assert res["verdict"] == "better"
    fl = res["fewer_labels"]
    assert fl is not None and 0 < fl["exact"]["value"] < 1 and fl["exact"]["ci"] is not None
    # better on AULC but never reaching the baseline's final value: no figure, and it says why
    x5 = [10.0, 20.0, 30.0, 40.0, 50.0]
    base5 = [Run(f"r{s}", "random", "random", s, "S",
                 _rounds(x5, test_log_likelihood=np.array([-0.69, -0.68, -0.675, -0.67, -0.665]) + 0.001 * s))
             for s in range(4)]
    early = [Run(f"e{s}", "early", "early", s, "S",
                 _rounds(x5, test_log_likelihood=np.array([-0.69, -0.6705, -0.6705, -0.6705, -0.6705]) + 0.001 * s))
             for s in range(4)]  # target: the baseline's 3-round average at the end, -0.67 (+ seed offset)
    res2 = _by_label(stats.evidence(base5 + early, n_boot=200))["early"]["vs_baseline"]["test_log_likelihood"]
    assert res2["verdict"] == "better" and res2["fewer_labels"] is None
    assert "does not reach" in res2["fewer_labels_note"]


def test_aa_splits_are_balanced_distinct_and_seeded():
    s8 = stats.aa_splits(range(8))
    assert len(s8) == math.comb(8, 4) // 2 == 35
    assert len({tuple(a) for a, _ in s8}) == 35 and all(len(a) == len(b) == 4 and not set(a) & set(b) for a, b in s8)
    assert len(stats.aa_splits(range(10))) == math.comb(10, 5) // 2 == 126  # all of them (below the cap)
    cap = stats.AA_MAX_SPLITS
    s16 = stats.aa_splits(range(16))  # 6,435 exist: the cap, drawn
    assert len(s16) == cap and len({tuple(a) for a, _ in s16}) == cap and s16 == stats.aa_splits(range(16))
    assert s16 != stats.aa_splits(range(16), seed=1)
    assert len(stats.aa_splits(range(7))) == math.comb(7, 3)
    assert len(stats.aa_splits(range(40))) == cap


def test_aa_false_positive_rate_is_calibrated_on_null_data_and_the_bootstrap_is_not():
    """200 simulated null data sets of 8 seeds (normal AULCs): the t rule's A/A false-positive rate is
    about 5% (<= 0.10); a percentile bootstrap deciding between 4 and 4 seeds calls noise far more often."""
    rng = np.random.default_rng(7)
    rates, boot_rates = [], []
    for _ in range(200):
        values = {"test_log_likelihood": {s: float(v) for s, v in enumerate(rng.normal(-0.68, 0.01, 8))}}
        aa = stats.aa_check(values, n_boot=300)
        assert aa["splits"] == 35 and aa["halves"] == [4, 4]
        rates.append(aa["false_positive_rate"])
        boot_rates.append(aa["boot_false_positive_rate"])
    assert np.mean(rates) <= 0.10
    assert np.mean(boot_rates) > 0.10
    assert stats.aa_check({"test_log_likelihood": {0: 1.0, 1: 2.0}})["splits"] == 0  # < 6 seeds: not run


def test_ceiling_headroom_and_noise_warning_and_full_is_never_compared():
    base = _runs("random", range(8), _seed_curve)
    pol = _runs("bald", range(8), lambda s: _seed_curve(s) + 0.001)
    full = [Run(f"full-s{s}", "full", "full", s, "S",
                _rounds([500.0], test_log_likelihood=[float(_seed_curve(s)[0] + 0.001)])) for s in range(8)]
    ev = stats.evidence(base + pol + full, n_boot=200)
    assert [p["label"] for p in ev["policies"]] == ["random", "bald"]  # full is not a compared policy
    c = ev["ceiling"]["S"]
    assert c["n_seeds"] == 8 and c["labelled"] == 500.0
    m = c["metrics"]["test_log_likelihood"]
    init = np.mean([_seed_curve(s)[0] for s in range(8)])
    assert m["initial"] == pytest.approx(init) and m["headroom"] == pytest.approx(0.001)
    aa = ev["aa_check"]["S"]
    assert aa["splits"] == 35 and m["noise"] == pytest.approx(aa["per_metric"]["test_log_likelihood"]["noise"])
    assert m["noise"] > 0.001 and "below the A/A noise" in m["warning"]
    # a ceiling far above round 0 gives no warning
    high = [Run(r.run_id, r.label, r.policy, r.seed, r.setting, _rounds([500.0], test_log_likelihood=[-0.3]))
            for r in full]
    assert stats.evidence(base + high, n_boot=50)["ceiling"]["S"]["metrics"]["test_log_likelihood"]["warning"] is None


def test_same_label_and_seed_twice_counts_once():
    base = _runs("random", range(3), _seed_curve)
    twin = Run("random-copy", "random", "random", 1, "S", base[1].rounds.copy())
    ev = stats.evidence(base + [twin])
    assert _by_label(ev)["random"]["n_seeds"] == 3
    assert ev["duplicates"] == [{"run_id": "random-s1", "same_as": "random-copy", "label": "random", "seed": 1}]
