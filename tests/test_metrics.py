"""Metrics against hand-computed values: preference metrics, ECE, label efficiency, AULC, bootstrap."""
from __future__ import annotations

import math

import numpy as np
import pytest

from balpm.errors import BalpmError, FeatureError
from balpm.evidence.metrics import (
    LOG_EPS,
    aulc,
    bootstrap_ci,
    ece,
    label_efficiency,
    label_efficiency_ci,
    mean_sem,
    preference_metrics,
    smooth,
)

# p_bar, its confidence max(p, 1-p), and whether the ensemble picked the chosen answer
P_BAR = np.array([0.95, 0.85, 0.25, 0.5, 0.62, 0.12])


def test_preference_metrics_by_hand():
    # two members straddling each p_bar: the ensemble averages probabilities
    probs_N_K = np.c_[P_BAR - 0.05, P_BAR + 0.05]
    out = preference_metrics(probs_N_K)
    assert set(out) == {"log_likelihood", "accuracy", "brier", "ece"}
    assert out["log_likelihood"] == pytest.approx(np.mean(np.log(P_BAR)), rel=1e-12)
    # correct: 1, 1, 0, tie (half), 1, 0
    assert out["accuracy"] == pytest.approx(3.5 / 6)
    assert out["brier"] == pytest.approx((0.05**2 + 0.15**2 + 0.75**2 + 0.5**2 + 0.38**2 + 0.88**2) / 6)
    # ECE bins (b/10, (b+1)/10]: conf .95 -> bin 9 (acc 1), .85 & .88 -> bin 8 (acc .5, conf .865),
    # .75 -> bin 7 (acc 0), .5 -> bin 4 (acc .5: gap 0), .62 -> bin 6 (acc 1)
    expected_ece = (abs(1 - 0.95) + 2 * abs(0.5 - 0.865) + abs(0 - 0.75) + 0 + abs(1 - 0.62)) / 6
    assert out["ece"] == pytest.approx(expected_ece, rel=1e-12)
    assert ece(P_BAR) == pytest.approx(expected_ece, rel=1e-12)


def test_perfect_calibration_has_zero_ece():
    # 10 predictions at 0.7 with 7 right (p = .7 for the chosen) and 3 wrong (p = .3)
    p = np.array([0.7] * 7 + [0.3] * 3)
    assert ece(p) == pytest.approx(0.0, abs=1e-12)


def test_log_likelihood_safe_at_zero_and_one():
    out = preference_metrics(np.array([[0.0], [1.0]]))
    assert math.isfinite(out["log_likelihood"])
    assert out["log_likelihood"] == pytest.approx(math.log(LOG_EPS) / 2)
    assert out["accuracy"] == 0.5
    assert out["brier"] == pytest.approx(0.5)


def test_metrics_empty_and_bad_input():
    out = preference_metrics(np.zeros((0, 5)))
    assert all(math.isnan(v) for v in out.values())
    for bad in (np.array([[0.2, np.nan]]), np.array([[1.2]]), np.zeros((2, 2, 2))):
        with pytest.raises(FeatureError) as err:
            preference_metrics(bad)
        assert "\n" not in str(err.value)


def test_smooth_trailing_min_periods_one():
    np.testing.assert_allclose(smooth([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
    np.testing.assert_allclose(smooth([[1, 2, 3], [3, 3, 6]], 2), [[1, 1.5, 2.5], [3, 3, 4.5]])
    np.testing.assert_allclose(smooth([4, 1], 1), [4, 1])
    with pytest.raises(BalpmError):
        smooth([1, 2], 0)


def test_aulc_by_hand():
    # trapezoids: (0+2)/2*1 + (2+2)/2*2 = 5 over a range of 3
    assert aulc([0, 1, 3], [0, 2, 2]) == pytest.approx(5 / 3)
    assert aulc([10], [0.4]) == pytest.approx(0.4)
    with pytest.raises(BalpmError):
        aulc([0, 2, 1], [1, 2, 3])


X = np.array([100, 200, 300, 400, 500])
BASE = np.array([0.0, 0.2, 0.4, 0.6, 0.8])          # target: the final value 0.8


def test_label_efficiency_exact_and_paper():
    policy = np.array([0.1, 0.5, 0.7, 0.9, 1.0])    # crosses 0.8 halfway between 300 and 400
    exact = label_efficiency(X, BASE, policy)
    assert exact.reached and exact.method == "exact"
    assert exact.x_reached == pytest.approx(350)
    assert exact.saving == pytest.approx(1 - 350 / 500)
    assert float(exact) == pytest.approx(0.3)
    paper = label_efficiency(X, BASE, policy, paper=True)
    # the paper: first round index at or above the target is 3, final round index 4 -> 1 - 3/4
    assert paper.round_index == 3 and paper.saving == pytest.approx(0.25)
    assert paper.x_reached == 400


def test_label_efficiency_reached_at_start_and_lower_is_better():
    policy = np.array([0.8, 0.9, 0.9, 0.9, 0.9])
    assert label_efficiency(X, BASE, policy).saving == pytest.approx(1 - 100 / 500)
    assert label_efficiency(X, BASE, policy, paper=True).saving == pytest.approx(1.0)
    brier_base = np.array([0.3, 0.25, 0.2, 0.18, 0.16])
    brier_pol = np.array([0.28, 0.2, 0.15, 0.14, 0.13])   # reaches 0.16 at 200 + 0.04/0.05*100 = 280
    eff = label_efficiency(X, brier_base, brier_pol, higher_is_better=False)
    assert eff.x_reached == pytest.approx(280) and eff.saving == pytest.approx(1 - 280 / 500)


def test_label_efficiency_never_reached():
    policy = np.array([0.1, 0.2, 0.3, 0.4, 0.79])
    for paper in (False, True):
        eff = label_efficiency(X, BASE, policy, paper=paper)
        assert not eff.reached and math.isnan(eff.saving) and eff.round_index == -1
    with pytest.raises(BalpmError):
        label_efficiency(X, BASE, policy[:3])


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(3).normal(1.0, 0.5, size=20)
    ci = bootstrap_ci(values, n_boot=500, seed=7)
    assert ci.low <= values.mean() <= ci.high and ci.estimate == pytest.approx(values.mean())
    assert ci.low < ci.high
    assert bootstrap_ci(values, n_boot=500, seed=7) == ci
    assert bootstrap_ci(values, n_boot=500, seed=8) != ci
    # a statistic without an axis argument takes the slow path and sees the same resamples
    slow = bootstrap_ci(values, stat=lambda v: float(np.mean(v)), n_boot=500, seed=7)
    assert slow.low == pytest.approx(ci.low) and slow.high == pytest.approx(ci.high)
    wide = bootstrap_ci(values, n_boot=500, seed=7, level=0.99)
    assert wide.low <= ci.low and wide.high >= ci.high
    assert bootstrap_ci([2.5], n_boot=10) == (2.5, 2.5, 2.5)


def test_label_efficiency_ci_pairs_seeds():
    rng = np.random.default_rng(0)
    base_S_T = BASE + rng.normal(0, 0.02, size=(6, 5))
    pol_S_T = np.array([0.1, 0.5, 0.7, 0.9, 1.0]) + rng.normal(0, 0.02, size=(6, 5))
    out = label_efficiency_ci(base_S_T, pol_S_T, X, n_boot=300, seed=1)
    direct = label_efficiency(X, base_S_T.mean(0), pol_S_T.mean(0)).saving
    assert out.estimate == pytest.approx(direct)
    assert out.low <= out.estimate <= out.high and out.reached_fraction == 1.0 and out.n_seeds == 6
    assert label_efficiency_ci(base_S_T, pol_S_T, X, n_boot=300, seed=1) == out
    # noise-free identical seeds: every resample gives the same figure
    same = label_efficiency_ci(np.tile(BASE, (4, 1)), np.tile([0.1, 0.5, 0.7, 0.9, 1.0], (4, 1)), X, n_boot=50)
    assert same.low == same.high == pytest.approx(0.3)
    paper = label_efficiency_ci(np.tile(BASE, (4, 1)), np.tile([0.1, 0.5, 0.7, 0.9, 1.0], (4, 1)), X,
                                n_boot=50, paper=True)
    assert paper.estimate == pytest.approx(0.25)
    never = label_efficiency_ci(np.tile(BASE, (3, 1)), np.tile(BASE - 0.1, (3, 1)), X, n_boot=50)
    assert math.isnan(never.estimate) and never.reached_fraction == 0.0 and never.low == -np.inf


def test_mean_sem_by_hand():
    mean, sem = mean_sem(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.nan]]))
    np.testing.assert_allclose(mean, [3.0, 3.0])
    np.testing.assert_allclose(sem, [2.0 / np.sqrt(3.0), 1.0])
    m1, s1 = mean_sem(np.array([[0.5, 1.0]]))
    np.testing.assert_allclose(m1, [0.5, 1.0])
    assert np.isnan(s1).all()
    assert mean_sem([1.0, 3.0]) == pytest.approx((2.0, np.sqrt(2.0) / np.sqrt(2.0)))


@pytest.mark.parametrize("paper", [False, True])
@pytest.mark.parametrize("paired", [True, False])
def test_label_efficiency_ci_equals_one_resample_at_a_time(paper, paired):
    """The vectorised bootstrap gives the quantiles of label_efficiency applied to each resample in turn."""
    rng = np.random.default_rng(3)
    x = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    base = np.cumsum(rng.normal(0.01, 0.01, (5, 6)), axis=1)
    pol = np.cumsum(rng.normal(0.012, 0.01, (5 if paired else 4, 6)), axis=1)
    out = label_efficiency_ci(base, pol, x, paper=paper, window=3, n_boot=400, seed=5)
    draw = np.random.default_rng(5)
    ref = []
    for _ in range(400):
        ib = draw.integers(0, 5, size=5)
        ip = ib if paired else draw.integers(0, 4, size=4)
        eff = label_efficiency(x, smooth(base[ib].mean(0), 3), smooth(pol[ip].mean(0), 3), paper=paper)
        ref.append(eff.saving if eff.reached else -np.inf)
    lo, hi = np.quantile(ref, [0.025, 0.975], method="inverted_cdf")
    assert (out.low, out.high) == pytest.approx((lo, hi))
    assert out.reached_fraction == pytest.approx(np.mean(np.isfinite(ref)))
