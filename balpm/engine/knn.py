"""The exact kNN engine of the entropy estimates (:mod:`balpm.engine.entropy`): normalisation, FAISS
search refined in float64, radii, labelled counts, and the radius tracker kept across rounds.

docs/method.md section 4. For a pool candidate x (prompt features after normalisation):

* ``r_k(x)``: distance to the k-th nearest neighbour within the current pool, **x itself counted as
  neighbour 1** (k = 13 means the 12th other point; duplicates of x are at distance 0).
* ``n(x)``: number of labelled prompts z with ``||x - z|| <= r_k(x)`` (inclusive).
* pool-radius ("KSG-style") score: ``H(x) = log(2 r_k(x) + floor) - digamma(n(x) + 1) / d``;
  ``d`` is a free weight, not the dimension.
* KL score: ``H(x) = log(2 rho_k(x) + floor)``, ``rho_k`` the distance to the k-th nearest *labelled*
  prompt (no self-inclusion: x is not labelled).

Exactness. "Exact" here means what the reference computes: float64 Euclidean distances of the
normalised features, ``sqrt(sum((x - y) ** 2))``, compared with ``<=``. Duplicated prompts (a prompt
with several comparisons) are at distance exactly 0, and a labelled copy of a pool neighbour is at
exactly the radius; both decide counts. The fast path therefore never decides a comparison from an
approximate distance unless an error bound makes the decision certain:

1. prompts are deduplicated (equal rows form one *group* with a multiplicity);
2. FAISS searches float32, centred copies (exact ``IndexFlatL2``-style brute force via ``faiss.knn``,
   or HNSW when ``exact=False``); a float32 squared distance ``a`` is within
   ``eps = c (|x|^2 + |y|^2)`` of the true one, with c from Higham and Mary's probabilistic
   rounding-error bound (:func:`_eps_coefficient`: ~150x the largest error observed; the worst-case
   bound is ~2,000x and undecidable in 4,096-D);
3. only pairs whose comparison is ambiguous under that bound are recomputed exactly in float64; a
   search list is accepted only when every unlisted point is provably beyond the k-th distance, else
   it is widened (ultimately to the whole set), so the k-th distance and the membership sets are
   those of the exact computation.

Because ``r_k(x)`` is the k-th neighbour distance within the pool and every pick is a pool point, "pick
``x_j`` lies within ``r_k(x)`` of x" is the same as "``x_j`` is in x's radius-neighbourhood", a set the
radius search already produced. The in-batch count update is thus a lookup in the reverse
neighbourhood lists (no distance computation per pick).

Normalisation (docs/method.md flaw 1): ``none``; ``zscore`` (column mean and ddof=1 std of the current
pool applied to pool **and** labelled; constant columns get std 1); ``faithful`` (the reference's slip
``fts - mean / std`` applied to the pool only, labelled untouched).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

from balpm.knobs import NORMALIZATIONS
from balpm.errors import ConfigError, FeatureError

#: extra unique neighbours fetched beyond k by the first float32 search (widened x4 when needed).
SEARCH_MARGIN = 24
#: lambda of the probabilistic rounding-error bound (see :func:`_eps_coefficient`).
ERROR_LAMBDA = 10.0
_EXACT_CHUNK_ELEMS = 1 << 23  # float64 elements per chunk of exact-distance work (64 MB)


def exact_distances(a_P_D: np.ndarray, b_P_D: np.ndarray) -> np.ndarray:
    """Row-wise float64 Euclidean distances ``sqrt(sum((a - b) ** 2))`` (no matrix-product shortcut).

    ``b`` may be a single row (broadcast). The result for a pair does not depend on how many rows are
    computed at once (both operands are made C-contiguous so each row is reduced the same way).
    """
    a = np.ascontiguousarray(a_P_D, dtype=np.float64)
    b = np.ascontiguousarray(b_P_D, dtype=np.float64)
    diff = a - b
    return np.sqrt((diff * diff).sum(axis=1))


# --------------------------------------------------------------------------------------------------
# validation and normalisation
# --------------------------------------------------------------------------------------------------
def check_features(x: np.ndarray, name: str, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 2-D float array (no copy when possible) or raise a one-line FeatureError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise FeatureError(f"{name} must be a 2-D array (rows x dimensions), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        if np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            arr = arr.astype(np.float64)
        else:
            raise FeatureError(f"{name} must be numeric, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise FeatureError(f"{name} has {arr.shape[1]} dimensions but the pool features have {dim}; "
                           "use the same feature model for pool and labelled prompts")
    if arr.shape[0] == 0 and not allow_empty:
        raise FeatureError(f"{name} is empty")
    if arr.shape[1] == 0:
        raise FeatureError(f"{name} has no feature dimensions")
    if not _all_finite(arr):
        raise FeatureError(f"{name} contain NaN or inf; recompute the features (or drop those rows)")
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    step = max(1, _EXACT_CHUNK_ELEMS // max(1, arr.shape[1]))
    return all(bool(np.isfinite(arr[i:i + step]).all()) for i in range(0, arr.shape[0], step))


def _column_mean(x_N_D: np.ndarray) -> np.ndarray:
    """Column mean in float64 (chunked: no full float64 copy)."""
    step = max(1, _EXACT_CHUNK_ELEMS // x_N_D.shape[1])
    total = np.zeros(x_N_D.shape[1], dtype=np.float64)
    for i in range(0, x_N_D.shape[0], step):
        total += x_N_D[i:i + step].sum(axis=0, dtype=np.float64)
    return total / x_N_D.shape[0]


def _column_stats(x_N_D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and ddof=1 standard deviation in float64 (two passes, chunked: no full copy)."""
    n = x_N_D.shape[0]
    step = max(1, _EXACT_CHUNK_ELEMS // x_N_D.shape[1])
    mean = _column_mean(x_N_D)
    sq = np.zeros_like(mean)
    for i in range(0, n, step):
        dev = x_N_D[i:i + step].astype(np.float64) - mean
        sq += (dev * dev).sum(axis=0)
    std = np.sqrt(sq / (n - 1)) if n > 1 else np.full_like(mean, np.nan)
    return mean, std


@dataclass(frozen=True)
class Normalizer:
    """An elementwise affine map of pool rows and of labelled rows to float64 (see module docstring).

    ``pool(rows)`` and ``labelled(rows)`` give the same bits for a row whatever batch it comes in, so
    rows can be normalised on demand instead of materialising a float64 copy of the pool.
    """

    mode: str
    mean_D: np.ndarray | None = None
    std_D: np.ndarray | None = None
    shift_D: np.ndarray | None = field(default=None)

    def pool(self, rows: np.ndarray) -> np.ndarray:
        """Normalised float64 pool rows."""
        x = np.asarray(rows, dtype=np.float64)
        if self.mode == "zscore":
            return (x - self.mean_D) / self.std_D
        if self.mode == "faithful":
            return x - self.shift_D
        return x.copy() if x is rows else x

    def labelled(self, rows: np.ndarray) -> np.ndarray:
        """Normalised float64 labelled rows (``faithful`` leaves them untouched, as the reference)."""
        x = np.asarray(rows, dtype=np.float64)
        if self.mode == "zscore":
            return (x - self.mean_D) / self.std_D
        return x.copy() if x is rows else x


def fit_normalizer(pool_N_D: np.ndarray, mode: str) -> Normalizer:
    """Statistics of the current pool for normalisation ``mode`` (``none`` / ``zscore`` / ``faithful``)."""
    if mode not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if mode == "none":
        return Normalizer("none")
    if pool_N_D.shape[0] < 2:
        raise ConfigError(f"normalisation {mode!r} needs at least 2 pool rows for a standard deviation; use none")
    mean, std = _column_stats(pool_N_D)
    if mode == "zscore":
        return Normalizer("zscore", mean_D=mean, std_D=np.where(std > 0, std, 1.0))
    if (std == 0).any():
        raise FeatureError(
            f"{int((std == 0).sum())} constant feature column(s) make the faithful normalisation "
            "(mean / std) undefined; use normalize=zscore")
    return Normalizer("faithful", mean_D=mean, std_D=std, shift_D=mean / std)


def normalize_features(pool_N_D: np.ndarray, labelled_L_D: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised float64 copies of pool and labelled features (small data; the engine works lazily)."""
    pool = check_features(pool_N_D, "pool prompt features")
    lab = check_features(labelled_L_D, "labelled prompt features", dim=pool.shape[1], allow_empty=True)
    norm = fit_normalizer(pool, mode)
    return norm.pool(pool), norm.labelled(lab)


# --------------------------------------------------------------------------------------------------
# simple FAISS radii and the full Kozachenko-Leonenko estimator
# --------------------------------------------------------------------------------------------------
def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def hnsw_index(base_B_D: np.ndarray, hnsw_m: int = 32) -> "faiss.IndexHNSWFlat":
    """A FAISS HNSW index of the rows (float32), built once and reusable for many searches."""
    xb = _f32(base_B_D)
    index = faiss.IndexHNSWFlat(xb.shape[1], hnsw_m)
    index.hnsw.efConstruction = max(40, 2 * hnsw_m)
    index.add(xb)
    return index


def knn_search(query_Q_D: np.ndarray, base_B_D: np.ndarray, k: int, exact: bool = True,
               hnsw_m: int = 32, index: "faiss.Index | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-nearest-neighbour search in float32: (squared distances (Q, k), ids (Q, k)), ascending.

    ``exact=True`` is brute force (``faiss.knn``, the ``IndexFlatL2`` computation without copying the
    base); ``exact=False`` searches an HNSW index of the base (approximate, for very large pools):
    ``index`` (from :func:`hnsw_index`) or one built for this call.
    """
    xq, xb = _f32(query_Q_D), _f32(base_B_D)
    k = int(min(k, xb.shape[0]))
    if exact:
        d2, ids = faiss.knn(xq, xb, k)
        return d2.astype(np.float64), ids.astype(np.int64)
    if index is None:
        index = hnsw_index(xb, hnsw_m)
    index.hnsw.efSearch = max(64, 2 * k)
    d2, ids = index.search(xq, k)
    return d2.astype(np.float64), ids.astype(np.int64)


def knn_radii(feats_N_D: np.ndarray, k: int, include_self: bool = True, exact: bool = True) -> np.ndarray:
    """Distance of every row to its k-th nearest neighbour among the rows, with FAISS.

    ``include_self=True`` counts the row itself as neighbour 1 (docs/method.md section 4: k = 13 is the
    12th other point); ``include_self=False`` skips it (the k-th *other* point, as in the KL
    estimator). The distance to the chosen neighbour is recomputed exactly in float64.
    """
    x = check_features(feats_N_D, "features")
    n = x.shape[0]
    kk = k if include_self else k + 1
    if not 1 <= kk <= n:
        raise ConfigError(f"k = {k} needs at least {kk} rows (got {n})")
    _, ids = knn_search(x, x, min(n, kk + 1), exact=exact)
    # exact distances to every listed neighbour; the row itself (distance 0) joins the multiset even
    # when FAISS listed duplicates first, and the kk-th smallest is the answer either way
    radii = np.empty(n, dtype=np.float64)
    width = ids.shape[1]
    step = max(1, _EXACT_CHUNK_ELEMS // (x.shape[1] * width))
    for i in range(0, n, step):
        blk = ids[i:i + step]
        rows = np.repeat(np.arange(i, i + blk.shape[0]), width)
        dist = exact_distances(x[rows], x[np.maximum(blk, 0).ravel()]).reshape(blk.shape)
        dist = np.where(blk < 0, np.inf, np.where(blk == rows.reshape(blk.shape), 0.0, dist))
        self_listed = (blk == rows.reshape(blk.shape)).any(axis=1)
        dist = np.concatenate([dist, np.where(self_listed, np.inf, 0.0)[:, None]], axis=1)
        radii[i:i + step] = np.sort(dist, axis=1)[:, kk - 1]
    return radii


# --------------------------------------------------------------------------------------------------
# the exact engine used by BAL-PM
# --------------------------------------------------------------------------------------------------
def _row_keys(x_N_D: np.ndarray) -> np.ndarray:
    """A 64-bit key per row: the bits of random projections (equal rows give equal keys)."""
    n, dim = x_N_D.shape
    rng = np.random.default_rng(0x5EED)
    wide = x_N_D.dtype == np.float64
    proj = rng.standard_normal((dim, 1 if wide else 2)).astype(np.float64 if wide else np.float32)
    out = np.empty((n, proj.shape[1]), dtype=proj.dtype)
    step = max(1, _EXACT_CHUNK_ELEMS // max(1, dim))
    for i in range(0, n, step):
        out[i:i + step] = np.asarray(x_N_D[i:i + step], dtype=proj.dtype) @ proj
    return np.ascontiguousarray(out).view(np.uint64).ravel()


def group_rows(x_N_D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal rows: ``(group_N, first_M, count_M)``, groups in order of their first row.

    Rows are bucketed by a random-projection key, then every row is compared (by value) with its
    bucket's first row; if any bucket mixes different rows, an exact sort of the row bytes decides.
    Equal rows always share a key, so every group holds only equal rows (and a rare split of equal
    rows into two groups would cost speed, never correctness: they are at distance exactly 0).
    """
    n = x_N_D.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    xc = np.ascontiguousarray(x_N_D)
    _, first, inverse = np.unique(_row_keys(xc), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    step = max(1, _EXACT_CHUNK_ELEMS // max(1, xc.shape[1]))
    same = all(bool((xc[i:i + step] == xc[first[inverse[i:i + step]]]).all()) for i in range(0, n, step))
    if not same:
        view = xc.view(np.dtype((np.void, xc.dtype.itemsize * xc.shape[1]))).ravel()
        _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    order = np.argsort(first, kind="stable")  # relabel groups by first occurrence
    relabel = np.empty_like(order)
    relabel[order] = np.arange(order.size)
    group = relabel[inverse].astype(np.int64)
    return group, first[order].astype(np.int64), np.bincount(group).astype(np.int64)


def _eps_coefficient(dim: int, model: str = "probabilistic") -> float:
    """c in the float32 squared-distance error bound ``|a - d^2| <= c (|x|^2 + |y|^2)``.

    ``a = |x|^2 + |y|^2 - 2 x.y`` computed in float32 (FAISS, BLAS) from float32 casts of centred
    float64 vectors. Dot products and norms are sums of D rounded terms: the worst-case bound
    ``D u`` per unit of ``sum |x_i y_i|`` (``model="worst_case"``) is ~2,000x above the errors seen
    on 4,096-D features and makes near-ties in high dimension undecidable. The default uses Higham
    and Mary's probabilistic bound (SIAM J. Sci. Comput. 41(5), 2019, Thm 2.4): ``lambda sqrt(D) u``
    with lambda = 10, which fails for one dot product with probability <= 2 D exp(-lambda^2 / 2)
    (about 2e-18 at D = 4,096; about 1e-8 for all pairs of a 92,000-row pool), still ~150x above the
    largest error observed. Plus 8u for the casts and the final additions; u = 2^-24.
    """
    u = 2.0 ** -24
    if model == "worst_case":
        return (2.0 * dim + 8.0) * u
    return (2.0 * ERROR_LAMBDA * math.sqrt(dim) + 8.0) * u


@dataclass
class _PointSet:
    """Unique rows of one point set: float32 centred copies, squared norms, multiplicities."""

    raw: np.ndarray          # the caller's array (rows as given)
    rows64: Callable[[np.ndarray], np.ndarray]  # normalises raw rows to float64
    group_N: np.ndarray
    first_M: np.ndarray
    count_M: np.ndarray
    x32_M_D: np.ndarray = field(default=None)  # type: ignore[assignment]
    norm2_M: np.ndarray = field(default=None)  # type: ignore[assignment]

    def unique64(self, ids: np.ndarray) -> np.ndarray:
        """Normalised float64 rows of the given unique-group ids."""
        return self.rows64(self.raw[self.first_M[ids]])

    @property
    def size(self) -> int:
        """Number of unique rows."""
        return int(self.first_M.size)


def _make_point_set(raw: np.ndarray, rows64: Callable[[np.ndarray], np.ndarray], center_D: np.ndarray) -> _PointSet:
    group, first, count = group_rows(raw)
    ps = _PointSet(raw, rows64, group, first, count)
    m, dim = first.size, raw.shape[1]
    x32 = np.empty((m, dim), dtype=np.float32)
    norm2 = np.empty(m, dtype=np.float64)
    step = max(1, _EXACT_CHUNK_ELEMS // max(1, dim))
    for i in range(0, m, step):
        ids = np.arange(i, min(m, i + step))
        block = ps.unique64(ids) - center_D
        x32[i:i + ids.size] = block
        b64 = x32[i:i + ids.size].astype(np.float64)
        norm2[i:i + ids.size] = (b64 * b64).sum(axis=1)
    ps.x32_M_D, ps.norm2_M = x32, norm2
    return ps


def _exact_pairs(qs: _PointSet, q_ids: np.ndarray, bs: _PointSet, b_ids: np.ndarray) -> np.ndarray:
    """Exact float64 distances between unique rows ``q_ids[i]`` of ``qs`` and ``b_ids[i]`` of ``bs``."""
    out = np.empty(q_ids.size, dtype=np.float64)
    step = max(1, _EXACT_CHUNK_ELEMS // qs.raw.shape[1])
    for i in range(0, q_ids.size, step):
        out[i:i + step] = exact_distances(qs.unique64(q_ids[i:i + step]), bs.unique64(b_ids[i:i + step]))
    return out


@dataclass
class Geometry:
    """Everything distance-related about one round's pool and labelled set, built once.

    ``pool`` / ``labelled``: the deduplicated point sets (``group_N`` maps each pool position to its
    unique prompt). All decisions are exact in the sense of the module docstring.
    """

    normalizer: Normalizer
    pool: _PointSet
    labelled: _PointSet
    exact_knn: bool = True
    stats: dict = field(default_factory=dict)
    indexes: dict = field(default_factory=dict)  # approximate search: HNSW index per base set, built once

    @property
    def eps_coef(self) -> float:
        """Coefficient c of the float32 squared-distance error bound c (|x|^2 + |y|^2)."""
        return _eps_coefficient(self.pool.raw.shape[1])


def build_geometry(pool_N_D: np.ndarray, labelled_L_D: np.ndarray, normalize: str = "zscore",
                   exact_knn: bool = True, validate: bool = True, normalizer: Normalizer | None = None) -> Geometry:
    """Validate (unless done already), fit the normalisation, deduplicate, build float32 search copies.

    ``normalizer``: use these statistics instead of fitting them on this pool (e.g. the round-0 pool's,
    as :class:`RadiusTracker` does for the whole run).
    """
    if validate:
        pool = check_features(pool_N_D, "pool prompt features")
        lab = check_features(labelled_L_D, "labelled prompt features", dim=pool.shape[1], allow_empty=True)
    else:
        pool, lab = pool_N_D, labelled_L_D
    norm = normalizer if normalizer is not None else fit_normalizer(pool, normalize)
    # a common centre (translation preserves distances) keeps float32 norms, hence errors, small
    center = norm.pool((norm.mean_D if norm.mean_D is not None else _column_mean(pool))[None, :])[0]
    ps = _make_point_set(pool, norm.pool, center)
    ls = _make_point_set(lab, norm.labelled, center)
    return Geometry(norm, ps, ls, exact_knn=exact_knn,
                    stats={"pool_unique": ps.size, "labelled_unique": ls.size})


def _segment_kth(rows: np.ndarray, values: np.ndarray, weights: np.ndarray, need: np.ndarray,
                 nrows: int) -> np.ndarray:
    """Per row r, the smallest value v such that the weight of entries <= v reaches ``need[r]``."""
    order = np.lexsort((values, rows))
    r, v, w = rows[order], values[order], weights[order]
    cum = np.cumsum(w)
    before = np.concatenate([[0], np.cumsum(np.bincount(r, weights=w, minlength=nrows))[:-1]])
    within = cum - before[r]
    hit = np.flatnonzero(within >= need[r])
    rows_hit, first = np.unique(r[hit], return_index=True)
    out = np.full(nrows, np.nan)
    out[rows_hit] = v[hit[first]]
    return out


def _weighted_kth(vals_Q_K: np.ndarray, w_Q_K: np.ndarray, k: int) -> np.ndarray:
    """Per row, the smallest value whose cumulative weight (values sorted) reaches k (inf if never)."""
    order = np.argsort(vals_Q_K, axis=1, kind="stable")
    sv = np.take_along_axis(vals_Q_K, order, axis=1)
    reach = np.cumsum(np.take_along_axis(w_Q_K, order, axis=1), axis=1) >= k
    pos = np.argmax(reach, axis=1)
    return np.where(reach.any(axis=1), sv[np.arange(sv.shape[0]), pos], np.inf)


def _refined_knn(geo: Geometry, qs: _PointSet, q_ids: np.ndarray, bs: _PointSet, k: int,
                 want: str) -> tuple[np.ndarray, object]:
    """Exact weighted k-th neighbour distance of unique queries ``q_ids`` among the multiset ``bs``.

    ``want="members"``: also the pairs (query row, base id) with exact distance <= the k-th distance.
    ``want="values"``: also the (Q, k) sorted exact distances of the k nearest base points (multiset).
    """
    nq = q_ids.size
    kth = np.full(nq, np.nan)
    members_q: list[np.ndarray] = []
    members_b: list[np.ndarray] = []
    values = np.full((nq, k), np.nan) if want == "values" else None
    coef = geo.eps_coef
    queue = [(np.arange(nq), min(bs.size, max(k + SEARCH_MARGIN, 3 * k)))]
    widened = 0
    while queue:
        rows_all, kk = queue.pop()
        chunk = max(1, (1 << 24) // kk)  # bound the (queries x kk) result memory
        for start in range(0, rows_all.size, chunk):
            pending = rows_all[start:start + chunk]
            qp = q_ids[pending]
            index = None
            if not geo.exact_knn:
                key = id(bs.x32_M_D)
                if key not in geo.indexes:
                    t_build = time.perf_counter()
                    geo.indexes[key] = (bs.x32_M_D, hnsw_index(bs.x32_M_D))
                    geo.stats["seconds_index"] = geo.stats.get("seconds_index", 0.0) + time.perf_counter() - t_build
                index = geo.indexes[key][1]
            a, ids = knn_search(qs.x32_M_D[qp], bs.x32_M_D, kk, exact=geo.exact_knn, index=index)
            present = ids >= 0
            ids_safe = np.where(present, ids, 0)
            w = np.where(present, bs.count_M[ids_safe], 0)
            a = np.where(present, a, np.inf)
            qn = qs.norm2_M[qp]
            e_b = coef * (qn[:, None] + bs.norm2_M[ids_safe])        # per-entry error bound
            lo_v = np.where(present, a - e_b, np.inf)
            hi_v = np.where(present, a + e_b, np.inf)
            lo = _weighted_kth(lo_v, w, k)      # bounds on the exact (weighted) k-th squared distance
            hi = _weighted_kth(hi_v, w, k)
            ok = np.isfinite(hi)
            if geo.exact_knn and kk < bs.size:
                # complete only if every unlisted y is provably beyond the k-th distance: its exact s
                # obeys s^2 + c (|x| + s)^2 >= a_y - c |x|^2 >= a_last - c |x|^2 (as |y| <= |x| + s)
                root = np.sqrt(np.where(ok, hi, 0.0))
                slack = (hi + coef * (np.sqrt(qn) + root) ** 2) * (1.0 + 1e-9)
                ok &= slack < a[:, -1] - coef * qn
            rows = np.flatnonzero(ok)
            if rows.size:
                cand = present[rows] & (lo_v[rows] <= hi[rows, None])
                certain = present[rows] & (hi_v[rows] < lo[rows, None])
                _resolve(geo, qs, qp[rows], bs, k, want, ids_safe[rows], w[rows], cand, certain,
                         pending[rows], kth, members_q, members_b, values)
            failed = pending[~ok]
            if failed.size:
                if kk >= bs.size:
                    raise FeatureError("nearest-neighbour search found fewer than k neighbours; "
                                       "use exact_knn=True or a smaller k")
                widened += int(failed.size)
                queue.append((failed, min(bs.size, kk * 4)))
    geo.stats[f"widened_{want}"] = geo.stats.get(f"widened_{want}", 0) + widened
    if want == "members":
        mq = np.concatenate(members_q) if members_q else np.zeros(0, np.int64)
        mb = np.concatenate(members_b) if members_b else np.zeros(0, np.int64)
        return kth, (mq, mb)
    return kth, values


def _resolve(geo: Geometry, qs: _PointSet, qids: np.ndarray, bs: _PointSet, k: int, want: str,
             ids: np.ndarray, w: np.ndarray, cand: np.ndarray, certain: np.ndarray, out_rows: np.ndarray,
             kth: np.ndarray, members_q: list, members_b: list, values: np.ndarray | None) -> None:
    """Turn proven-complete float32 lists into exact k-th distances (and members / values).

    ``cand``: entries that may lie within the k-th distance; ``certain``: entries provably strictly
    inside it. Only ``cand & ~certain`` (or all ``cand`` when values are wanted) are recomputed.
    """
    nr = qids.size
    need_exact = cand if want == "values" else (cand & ~certain)
    r_idx, c_idx = np.nonzero(need_exact)
    e = _exact_pairs(qs, qids[r_idx], bs, ids[r_idx, c_idx])
    wt = w[r_idx, c_idx]
    geo.stats["exact_pairs"] = geo.stats.get("exact_pairs", 0) + int(e.size)
    if want == "values":
        need = np.full(nr, k, dtype=np.int64)
        t = _segment_kth(r_idx, e, wt, need, nr)
        kth[out_rows] = t
        order = np.lexsort((e, r_idx))
        rr, ee, ww = r_idx[order], e[order], np.minimum(wt[order], k)
        rep_r, rep_e = np.repeat(rr, ww), np.repeat(ee, ww)
        start = np.concatenate([[0], np.cumsum(np.bincount(rep_r, minlength=nr))[:-1]])
        pos = np.arange(rep_r.size) - start[rep_r]
        keep = pos < k
        block = np.full((nr, k), np.nan)
        block[rep_r[keep], pos[keep]] = rep_e[keep]
        values[out_rows] = block
        return
    c_in = (np.where(certain, w, 0)).sum(axis=1)
    need = k - c_in
    t = _segment_kth(r_idx, e, wt, need, nr)
    kth[out_rows] = t
    cr, cc = np.nonzero(certain)
    inside = e <= t[r_idx]
    members_q.append(np.concatenate([qids[cr], qids[r_idx[inside]]]))
    members_b.append(np.concatenate([ids[cr, cc], ids[r_idx[inside], c_idx[inside]]]))


def pool_radii(geo: Geometry, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact r_k of every unique pool prompt (self included) and its radius-neighbourhood.

    Returns ``(radius_M, member_q, member_b)``: ``member_b`` is within ``radius[member_q]`` of
    ``member_q`` (unique pool ids, both directions of duplicates and the prompt itself included).
    """
    ps = geo.pool
    radius, (mq, mb) = _refined_knn(geo, ps, np.arange(ps.size), ps, k, "members")
    return radius, mq, mb


def labelled_counts(geo: Geometry, radius_M: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """n(x) for every unique pool prompt: labelled prompts (with multiplicity) within ``radius_M``.

    ``rows``: compute only these unique pool prompts (the others stay 0).
    """
    ps, ls = geo.pool, geo.labelled
    n = np.zeros(ps.size, dtype=np.int64)
    if ls.size == 0:
        return n
    rows = np.arange(ps.size) if rows is None else np.asarray(rows, dtype=np.int64)
    coef = geo.eps_coef
    step = max(1, _EXACT_CHUNK_ELEMS // ls.size)
    r2 = radius_M * radius_M
    for i in range(0, rows.size, step):
        sl = rows[i:i + step]
        dot = (ps.x32_M_D[sl] @ ls.x32_M_D.T).astype(np.float64)
        a = ps.norm2_M[sl, None] + ls.norm2_M[None, :] - 2.0 * dot
        eps = coef * (ps.norm2_M[sl, None] + ls.norm2_M[None, :])
        t2 = r2[sl, None]
        certain = a + eps < t2
        amb = ~certain & (a - eps <= t2)
        n[sl] += (certain * ls.count_M[None, :]).sum(axis=1)
        rr, cc = np.nonzero(amb)
        if rr.size:
            q_ids = sl[rr]
            e = _exact_pairs(ps, q_ids, ls, cc)
            inside = e <= radius_M[q_ids]
            np.add.at(n, q_ids[inside], ls.count_M[cc[inside]])
            geo.stats["exact_pairs"] = geo.stats.get("exact_pairs", 0) + int(rr.size)
    return n


def labelled_knn(geo: Geometry, k: int) -> np.ndarray:
    """(M, k) sorted exact distances of each unique pool prompt to its k nearest labelled prompts."""
    ps, ls = geo.pool, geo.labelled
    total = int(ls.count_M.sum())
    if total < k:
        raise ConfigError(f"the KL estimator needs at least k = {k} labelled prompts (got {total}); "
                          "label more items first or lower k")
    _, values = _refined_knn(geo, ps, np.arange(ps.size), ls, k, "values")
    return values


def pick_distances(geo: Geometry, g: int, rho_M: np.ndarray, alive_M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique pool prompts h (``alive_M``) whose exact distance to prompt ``g`` is < ``rho_M[h]``.

    Returns ``(ids, exact_distances)``. One float32 matrix-vector product plus exact recomputation of
    the pairs the error bound cannot rule out.
    """
    ps = geo.pool
    dot = (ps.x32_M_D @ ps.x32_M_D[g]).astype(np.float64)
    a = ps.norm2_M + ps.norm2_M[g] - 2.0 * dot
    eps = geo.eps_coef * (ps.norm2_M + ps.norm2_M[g])
    cand = np.flatnonzero(alive_M & (a - eps <= rho_M * rho_M))
    if cand.size == 0:
        return cand, np.zeros(0)
    e = _exact_pairs(ps, cand, ps, np.full(cand.size, g, dtype=np.int64))
    geo.stats["exact_pairs"] = geo.stats.get("exact_pairs", 0) + int(cand.size)
    keep = e < rho_M[cand]
    return cand[keep], e[keep]


# --------------------------------------------------------------------------------------------------
# incremental radii across the rounds of one run
# --------------------------------------------------------------------------------------------------
@dataclass
class TrackedRound:
    """One round's pool-radius constants from :class:`RadiusTracker` (unique ids are the round-0 pool's).

    ``geometry.pool.group_N`` maps this round's pool rows to round-0 unique prompts; prompts with no
    item left have ``radius_M`` NaN and empty item lists. ``rev_idx[rev_ptr[g]:rev_ptr[g+1]]``: the
    live prompts whose radius contains prompt g. ``recomputed``: prompts whose radius was recomputed.
    """

    geometry: Geometry
    radius_M: np.ndarray
    n0_M: np.ndarray
    rev_ptr: np.ndarray
    rev_idx: np.ndarray
    items_ptr: np.ndarray
    items_idx: np.ndarray
    recomputed: int


def _csr_pairs(keys: np.ndarray, vals: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """``vals`` grouped by ``keys`` (ascending within each key): ``vals[ptr[i]:ptr[i+1]]`` belong to key i."""
    order = np.lexsort((vals, keys))
    ptr = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=nkeys))]).astype(np.int64)
    return ptr, np.asarray(vals, dtype=np.int64)[order]


def _as_rows(prompts_P_D: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``prompts_P_D[index]``, as a view when ``index`` is a contiguous ascending range."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and index[-1] - index[0] + 1 == index.size and (np.diff(index) == 1).all():
        return prompts_P_D[int(index[0]):int(index[-1]) + 1]
    return prompts_P_D[index]


class RadiusTracker:
    """Pool radii, radius neighbourhoods and labelled counts kept across the rounds of one run.

    Round 0 builds the geometry of the round-0 pool once (normalisation statistics, deduplication,
    float32 search copies) and computes every radius exactly. A later round's pool is the round-0
    pool minus the items acquired since; an item's removal can change the k-th neighbour distance of
    prompt x only when the item lies within ``r_k(x)``, i.e. when x's neighbourhood list holds it. So
    only those prompts are searched again (over the same float32 copies, removed items weighted 0),
    with the same exact refinement as :func:`pool_radii`; and as the acquired items are the removed
    ones, the labelled counts ``n0`` change only for the same prompts. The result equals a
    from-scratch computation on the current pool with the round-0 statistics
    (``build_geometry(..., normalizer=tracker.normalizer)``), bit for bit (tests/test_incremental.py).

    ``zscore`` therefore uses the round-0 pool's column statistics for the whole run (the pool and
    the labelled set both move through the same fixed map); ``faithful`` (the reference's per-round
    slip) cannot be tracked and is refused here. State is rebuilt from scratch whenever the inputs do
    not continue the previous round (a resumed run, another run): deterministic, the same numbers.
    """

    def __init__(self, k: int, normalize: str = "zscore", exact_knn: bool = True) -> None:
        if normalize not in ("none", "zscore"):
            raise ConfigError(f"incremental radii need fixed statistics: normalize none or zscore (got {normalize!r})")
        self.k, self.normalize, self.exact_knn = int(k), normalize, bool(exact_knn)
        self._key: tuple | None = None
        self.normalizer: Normalizer | None = None
        self.stats: dict = {}

    # ---- round 0: the geometry of the whole run ------------------------------------------------
    def _start(self, prompts_P_D: np.ndarray, start_index: np.ndarray) -> None:
        rows = _as_rows(prompts_P_D, start_index)
        norm = fit_normalizer(rows, self.normalize)
        center = norm.pool((norm.mean_D if norm.mean_D is not None else _column_mean(rows))[None, :])[0]
        self.normalizer, self._center = norm, center
        self._ps = _make_point_set(rows, norm.pool, center)
        self._group_of = np.full(prompts_P_D.shape[0], -1, dtype=np.int64)
        self._group_of[np.asarray(start_index, dtype=np.int64)] = self._ps.group_N
        m = self._ps.size
        self._counts = np.zeros(m, dtype=np.int64)      # live items per prompt in the last round
        self._radius = np.full(m, np.nan)
        self._n0 = np.zeros(m, dtype=np.int64)
        self._mq = np.zeros(0, np.int64)                # neighbourhood pairs: mb within radius of mq
        self._mb = np.zeros(0, np.int64)
        self._pool_index = np.zeros(0, np.int64)
        self._labelled = np.zeros(0, np.int64)
        self._indexes: dict = {}   # the HNSW index of the round-0 copies (approximate search), kept
        self._fresh = True

    def round(self, prompts_P_D: np.ndarray, start_index: np.ndarray, pool_index_N: np.ndarray,
              labelled_index_L: np.ndarray) -> TrackedRound:
        """The constants of the round whose pool is ``prompts_P_D[pool_index_N]``.

        ``prompts_P_D``: the prompt features of every item of the run (by run position);
        ``start_index``: run positions of the round-0 pool; ``pool_index_N``: this round's pool (a
        subset of the round-0 pool); ``labelled_index_L``: the labelled items, in labelling order.
        """
        t0 = time.perf_counter()
        start_index = np.asarray(start_index, dtype=np.int64)
        pool_index_N = np.asarray(pool_index_N, dtype=np.int64)
        labelled_index_L = np.asarray(labelled_index_L, dtype=np.int64)
        key = (id(prompts_P_D), prompts_P_D.shape, start_index.size, int(start_index.sum()),
               int(start_index[:1].sum()), int(start_index[-1:].sum()))
        if key != self._key:
            self._key = key
            self._start(prompts_P_D, start_index)
        groups = self._group_of[pool_index_N] if pool_index_N.size else np.zeros(0, np.int64)
        if (groups < 0).any():
            raise FeatureError("incremental radii: a pool item is not in the round-0 pool; the pool may only shrink")
        m = self._ps.size
        counts = np.bincount(groups, minlength=m).astype(np.int64)
        full = self._fresh or bool((counts > self._counts).any())
        ps = self._ps
        base = _PointSet(ps.raw, ps.rows64, groups, ps.first_M, counts, ps.x32_M_D, ps.norm2_M)
        lab_rows = prompts_P_D[labelled_index_L] if labelled_index_L.size else prompts_P_D[:0]
        ls = _make_point_set(lab_rows, self.normalizer.labelled, self._center)
        geo = Geometry(self.normalizer, base, ls, exact_knn=self.exact_knn,
                       stats={"pool_unique": int((counts > 0).sum()), "labelled_unique": ls.size},
                       indexes=self._indexes)
        t1 = time.perf_counter()
        live = np.flatnonzero(counts > 0)
        if full:
            todo = live
            self._radius[:] = np.nan
        else:
            gone = np.flatnonzero(counts < self._counts)
            rev_ptr, rev_idx = _csr_pairs(self._mb, self._mq, m)
            hit = np.concatenate([rev_idx[rev_ptr[g]:rev_ptr[g + 1]] for g in gone]) if gone.size else np.zeros(0, np.int64)
            todo = np.unique(hit)
            todo = todo[counts[todo] > 0]
            self._radius[counts == 0] = np.nan
        keep = (counts[self._mq] > 0) & (counts[self._mb] > 0) & ~np.isin(self._mq, todo)
        mq_old, mb_old = self._mq[keep], self._mb[keep]
        if todo.size:
            kth, (mq_new, mb_new) = _refined_knn(geo, base, todo, base, self.k, "members")
            self._radius[todo] = kth
            live_b = counts[mb_new] > 0
            mq_new, mb_new = mq_new[live_b], mb_new[live_b]
        else:
            mq_new = mb_new = np.zeros(0, np.int64)
        self._mq = np.concatenate([mq_old, mq_new])
        self._mb = np.concatenate([mb_old, mb_new])
        t2 = time.perf_counter()
        # labelled counts: the newly labelled items are the removed pool items, which lie inside the
        # radius of exactly the recomputed prompts; everything else keeps its count
        prev_pool, prev_lab = self._pool_index, self._labelled
        continues = (not full and labelled_index_L.size >= prev_lab.size
                     and np.array_equal(labelled_index_L[:prev_lab.size], prev_lab)
                     and np.array_equal(np.sort(labelled_index_L[prev_lab.size:]),
                                        np.setdiff1d(prev_pool, pool_index_N)))
        n_rows = todo if continues else live
        n_new = labelled_counts(geo, self._radius, n_rows)
        if continues:
            self._n0[todo] = n_new[todo]
        else:
            self._n0 = n_new
        self._n0[counts == 0] = 0
        self._counts, self._pool_index, self._labelled = counts, pool_index_N.copy(), labelled_index_L.copy()
        self._fresh = False
        rev_ptr, rev_idx = _csr_pairs(self._mb, self._mq, m)
        items_ptr, items_idx = _csr_pairs(groups, np.arange(groups.size), m)
        t3 = time.perf_counter()
        geo.stats.update(seconds_geometry=t1 - t0, seconds_radii=t2 - t1, seconds_counts=t3 - t2,
                         recomputed=int(todo.size), incremental=not full)
        self.stats = dict(geo.stats)
        return TrackedRound(geo, self._radius.copy(), self._n0.copy(), rev_ptr, rev_idx, items_ptr, items_idx,
                            int(todo.size))
