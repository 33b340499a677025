"""kNN radii, normalisation, the KL entropy estimator, the exact engine and count replay."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from balpm.engine.entropy import kl_entropy, pool_radius_entropy, replay_counts
from balpm.engine.knn import (
    build_geometry,
    exact_distances,
    fit_normalizer,
    group_rows,
    knn_radii,
    labelled_counts,
    labelled_knn,
    normalize_features,
    pool_radii,
)
from balpm.errors import ConfigError, FeatureError


def _brute(pool64, lab64):
    """All pairwise float64 distances, the direct O(N^2) way."""
    dpp = np.sqrt(((pool64[:, None, :] - pool64[None, :, :]) ** 2).sum(-1))
    dpl = np.sqrt(((pool64[:, None, :] - lab64[None, :, :]) ** 2).sum(-1)) if len(lab64) else np.zeros((len(pool64), 0))
    return dpp, dpl


def _dup_data(seed, n_unique=50, n_pool=180, n_lab=40, dim=6):
    rng = np.random.default_rng(seed)
    base = (rng.normal(size=(n_unique, dim)) * rng.uniform(0.5, 3, size=dim) + 2).astype(np.float32)
    pool = base[rng.integers(0, n_unique, size=n_pool)]
    lab = np.concatenate([base[rng.integers(0, n_unique, size=n_lab // 2)],
                          rng.normal(2, 1, size=(n_lab - n_lab // 2, dim)).astype(np.float32)])
    return pool, lab


# ---------------------------------------------------------------- Kozachenko-Leonenko vs closed form
@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("k", [1, 3])
def test_kl_entropy_matches_gaussian_closed_form(dim, k):
    rng = np.random.default_rng(dim * 10 + k)
    scales = np.linspace(0.5, 2.0, dim)
    a = rng.normal(size=(dim, dim))
    q, _ = np.linalg.qr(a)                       # a rotated, anisotropic Gaussian
    x = (rng.standard_normal((5000, dim)) * scales) @ q.T
    true = 0.5 * dim * math.log(2 * math.pi * math.e) + np.log(scales).sum()
    est = kl_entropy(x, k=k)
    assert abs(est - true) / abs(true) < 0.03, (est, true)


def test_kl_entropy_shifts_with_scale():
    # H(cX) = H(X) + D log c, exactly, for the estimator too (distances scale by c)
    x = np.random.default_rng(3).normal(size=(800, 3))
    assert kl_entropy(2.0 * x, k=2) == pytest.approx(kl_entropy(x, k=2) + 3 * math.log(2.0), rel=1e-9)


def test_kl_entropy_rejects_duplicates_and_bad_k():
    x = np.repeat(np.random.default_rng(0).normal(size=(10, 2)), 3, axis=0)
    with pytest.raises(FeatureError, match="duplicates"):
        kl_entropy(x, k=1)
    with pytest.raises(ConfigError):
        kl_entropy(x, k=30)


# ---------------------------------------------------------------- radii and self-inclusion
def test_knn_radii_self_inclusion_on_a_line():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_array_equal(knn_radii(x, 1, include_self=True), [0, 0, 0, 0])
    np.testing.assert_array_equal(knn_radii(x, 2, include_self=True), [1, 1, 2, 4])
    np.testing.assert_array_equal(knn_radii(x, 1, include_self=False), [1, 1, 2, 4])
    np.testing.assert_array_equal(knn_radii(x, 3, include_self=True), [3, 2, 3, 6])


def test_knn_radii_duplicates_give_zero():
    x = np.array([[0.0, 0.0]] * 3 + [[5.0, 0.0]])
    # k = 3 with the point itself first: two other copies at distance 0
    np.testing.assert_array_equal(knn_radii(x, 3)[:3], [0, 0, 0])
    assert knn_radii(x, 4)[0] == 5.0


def test_hnsw_radii_close_to_exact():
    x = np.random.default_rng(1).normal(size=(600, 8)).astype(np.float32)
    exact, approx = knn_radii(x, 5), knn_radii(x, 5, exact=False)
    assert (approx >= exact - 1e-9).all()          # an approximate search can only miss neighbours
    assert np.mean(np.isclose(approx, exact)) > 0.9


# ---------------------------------------------------------------- normalisation
def test_normalisation_modes():
    pool = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    lab = np.array([[3.0, 20.0]])
    mean = pool.mean(0)
    std = pool.std(0, ddof=1)                       # [2, 10]
    p, l_ = normalize_features(pool, lab, "zscore")
    np.testing.assert_allclose(p, (pool - mean) / std)
    np.testing.assert_allclose(l_, (lab - mean) / std)
    p, l_ = normalize_features(pool, lab, "faithful")
    np.testing.assert_allclose(p, pool - mean / std)    # the slip: only a translation of the pool
    np.testing.assert_array_equal(l_, lab)              # labelled untouched
    p, l_ = normalize_features(pool, lab, "none")
    np.testing.assert_array_equal(p, pool)
    with pytest.raises(ConfigError, match="unknown normalisation"):
        normalize_features(pool, lab, "minmax")


def test_constant_columns():
    pool = np.array([[1.0, 4.0], [3.0, 4.0], [5.0, 4.0]])
    p, _ = normalize_features(pool, pool[:1], "zscore")
    np.testing.assert_array_equal(p[:, 1], 0.0)          # std 0 -> 1: constant columns contribute 0
    with pytest.raises(FeatureError, match="constant feature column"):
        fit_normalizer(pool, "faithful")


def test_normaliser_rows_are_batch_independent():
    pool, _ = _dup_data(0)
    norm = fit_normalizer(pool, "zscore")
    whole = norm.pool(pool)
    np.testing.assert_array_equal(np.concatenate([norm.pool(pool[i:i + 7]) for i in range(0, len(pool), 7)]), whole)


def test_exact_distances_do_not_depend_on_batching():
    a = np.random.default_rng(2).normal(size=(300, 257))
    whole = exact_distances(a, a[5])
    single = np.array([exact_distances(a[i:i + 1], a[5:6])[0] for i in range(300)])
    np.testing.assert_array_equal(whole, single)
    assert whole[5] == 0.0


# ---------------------------------------------------------------- the exact engine vs brute force
def test_group_rows_orders_by_first_occurrence():
    x = np.array([[2.0], [1.0], [2.0], [3.0], [1.0]])
    g, first, count = group_rows(x)
    np.testing.assert_array_equal(g, [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(first, [0, 1, 3])
    np.testing.assert_array_equal(count, [2, 2, 1])


@pytest.mark.parametrize("mode", ["zscore", "faithful", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pool_radius_terms_equal_brute_force_with_duplicates(mode, seed):
    pool, lab = _dup_data(seed)
    k = 13
    geo = build_geometry(pool, lab, normalize=mode)
    radius, mq, mb = pool_radii(geo, k)
    n0 = labelled_counts(geo, radius)
    p64, l64 = normalize_features(pool, lab, mode)
    dpp, dpl = _brute(p64, l64)
    r_brute = np.sort(dpp, axis=1)[:, k - 1]           # the point itself is neighbour 1
    n_brute = (dpl <= r_brute[:, None]).sum(1)
    g = geo.pool.group_N
    np.testing.assert_array_equal(radius[g], r_brute)
    np.testing.assert_array_equal(n0[g], n_brute)
    assert geo.pool.size < len(pool)                   # the data really has duplicated prompts
    # radius neighbourhoods: prompt b is listed for q exactly when dist(q, b) <= r(q)
    member = np.zeros((geo.pool.size, geo.pool.size), dtype=bool)
    member[mq, mb] = True
    first = geo.pool.first_M
    np.testing.assert_array_equal(member, dpp[np.ix_(first, first)] <= r_brute[first][:, None])
    h = pool_radius_entropy(r_brute, n_brute, d=1.0, floor=1e-4)
    assert np.isfinite(h).all()


def test_ties_at_the_radius_are_counted():
    # zscore keeps labelled copies of pool prompts bit-identical: a labelled copy of the k-th
    # neighbour sits exactly at the radius and must be counted (<=)
    pool, _ = _dup_data(5, n_unique=40, n_pool=120)
    lab = pool[:30].copy()
    geo = build_geometry(pool, lab, normalize="zscore")
    radius, _, _ = pool_radii(geo, 7)
    n0 = labelled_counts(geo, radius)
    p64, l64 = normalize_features(pool, lab, "zscore")
    dpp, dpl = _brute(p64, l64)
    r = np.sort(dpp, axis=1)[:, 6]
    at_radius = (dpl == r[:, None]).sum()
    assert at_radius > 0                                # the case actually occurs in this data
    np.testing.assert_array_equal(n0[geo.pool.group_N], (dpl <= r[:, None]).sum(1))


def test_many_duplicates_force_a_wider_search():
    rng = np.random.default_rng(4)
    pool = np.concatenate([np.repeat(rng.normal(size=(1, 5)), 40, axis=0), rng.normal(size=(60, 5))])
    geo = build_geometry(pool, pool[:0], normalize="none")
    radius, mq, mb = pool_radii(geo, 13)
    g0 = geo.pool.group_N[0]
    assert set(mb[mq == g0]) == {g0}                  # its neighbourhood is its own 40 copies
    assert radius[g0] == 0.0 and geo.pool.count_M[g0] == 40
    p64 = pool.astype(np.float64)
    dpp, _ = _brute(p64, p64[:0])
    np.testing.assert_array_equal(radius[geo.pool.group_N], np.sort(dpp, 1)[:, 12])


@pytest.mark.parametrize("mode", ["zscore", "faithful"])
def test_labelled_knn_equals_brute_force(mode):
    pool, lab = _dup_data(7)
    k = 5
    geo = build_geometry(pool, lab, normalize=mode)
    topk = labelled_knn(geo, k)
    p64, l64 = normalize_features(pool, lab, mode)
    _, dpl = _brute(p64, l64)
    np.testing.assert_array_equal(topk[geo.pool.group_N], np.sort(dpl, axis=1)[:, :k])


def test_kl_needs_k_labelled():
    pool, lab = _dup_data(8)
    geo = build_geometry(pool, lab[:3], normalize="zscore")
    with pytest.raises(ConfigError, match="at least k"):
        labelled_knn(geo, 5)


# ---------------------------------------------------------------- validation and replay
@pytest.mark.parametrize("bad", [np.array([[1.0, np.nan], [0.0, 1.0]]), np.array([[np.inf, 0.0], [0.0, 1.0]])])
def test_nan_features_raise(bad):
    with pytest.raises(FeatureError, match="NaN or inf") as info:
        build_geometry(bad, bad[:1])
    assert "\n" not in str(info.value)


def test_dimension_mismatch_raises():
    with pytest.raises(FeatureError, match="dimensions"):
        build_geometry(np.zeros((5, 3)) + np.arange(5)[:, None], np.zeros((2, 4)))


def test_replay_counts():
    n0 = np.array([0, 2, 1, 0])
    inc = pd.DataFrame({"step": [0, 0, 1, 2, 2], "index": [1, 3, 3, 0, 3]})
    np.testing.assert_array_equal(replay_counts(n0, inc, 0), n0)
    np.testing.assert_array_equal(replay_counts(n0, inc, 1), [0, 3, 1, 1])
    np.testing.assert_array_equal(replay_counts(n0, inc, 3), [1, 3, 1, 3])
    np.testing.assert_array_equal(replay_counts(n0, None, 3), n0)
    with pytest.raises(FeatureError, match="outside"):
        replay_counts(n0, pd.DataFrame({"step": [0], "index": [9]}), 1)


def test_near_ties_in_high_dimension_are_decided_exactly():
    # labelled prompts a hair (1e-9 relative) inside or outside pool prompts' radii: float32 cannot
    # tell them apart, the exact float64 recomputation must
    rng = np.random.default_rng(9)
    base = rng.normal(size=(120, 256))
    pool = np.concatenate([base, base[:40]])                      # duplicates too
    geo0 = build_geometry(pool, pool[:0], normalize="none")
    radius, _, _ = pool_radii(geo0, 6)
    r = radius[geo0.pool.group_N]
    p64 = pool.astype(np.float64)
    dpp, _ = _brute(p64, p64[:0])
    kth = np.argsort(dpp, axis=1, kind="stable")[:, 5]            # the 6th neighbour (self included)
    rows = np.arange(60)
    direction = p64[kth[rows]] - p64[rows]
    lab = np.concatenate([p64[rows] + direction * (1 - 1e-9), p64[rows] + direction * (1 + 1e-9),
                          p64[kth[rows]]])
    geo = build_geometry(pool, lab, normalize="none")
    radius, _, _ = pool_radii(geo, 6)
    n0 = labelled_counts(geo, radius)
    _, dpl = _brute(p64, lab)
    expected = (dpl <= r[:, None]).sum(1)
    np.testing.assert_array_equal(n0[geo.pool.group_N], expected)
    assert (np.abs(dpl - r[:, None]) < 1e-7 * r[:, None]).sum() >= 120   # the near ties are there
