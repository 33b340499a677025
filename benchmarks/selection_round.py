"""One BAL-PM selection round at paper scale, against a direct transcription of the reference.

    python benchmarks/selection_round.py                       # N=92,000, D=4,096, L=320, B=320
    python benchmarks/selection_round.py --n 5000 --d 512      # quick
    python benchmarks/selection_round.py --prompts-per-comparison 0.2   # repeated prompts, as real data

Data: random float32 prompt features in clusters of very different sizes (Zipf-like), a labelled set
of ``--labelled`` rows from the same distribution, U uniform. ``--prompts-per-comparison p`` < 1
makes the pool rows repeat ``round(p N)`` unique prompts (real comparison data has several
comparisons per prompt); the default 1.0 has every row distinct (the hardest case for the fast path).

Fast path (``select_balpm(normalize="faithful")``), timed by phase: geometry (normalise, deduplicate,
float32 copies), radii (FAISS exact kNN + exact float64 refinement), labelled counts, greedy picks.

Reference (``reference_*`` below): the reference's computation transcribed directly: the
``fts - mean / std`` slip with pandas statistics, exact float64 distances without matrix products,
radius per pool row = sort of its distances to the whole pool, counts per row against the labelled
set, and per pick a full recomputation of the score terms plus the pick's distances to every remaining
candidate. It is far too slow to run in full at paper scale, so each phase is timed on a subset and
**extrapolated linearly** (radius rows x N, count rows x N, picks x B); the script says so in its
output. Its picks (on the fast path's radii and counts, which it checks on the timed rows) are
compared with the fast path's first picks.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import digamma

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from balpm.acquisition.balpm import greedy_select, prepare_balpm

CHUNK_ROWS = 4096  # rows per float64 block in the reference transcription (bounds its memory)


def make_world(n: int, d: int, n_lab: int, prompts_per_comparison: float, seed: int):
    """Clustered float32 prompt features (pool and labelled) and uncertainty scores."""
    rng = np.random.default_rng(seed)
    n_unique = max(2, round(prompts_per_comparison * n))
    n_clusters = max(2, min(400, n_unique // 50))
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 1.1          # clusters of very different sizes
    weights /= weights.sum()
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32) * 1.5
    spread = rng.uniform(0.3, 1.0, size=n_clusters).astype(np.float32)

    def sample(m: int) -> np.ndarray:
        lab = rng.choice(n_clusters, size=m, p=weights)
        out = np.empty((m, d), dtype=np.float32)
        for i in range(0, m, 8192):
            block = lab[i:i + 8192]
            out[i:i + block.size] = centres[block] + rng.standard_normal((block.size, d), dtype=np.float32) * spread[block, None]
        return out

    prompts = sample(n_unique)
    pool = prompts if n_unique == n else prompts[rng.integers(0, n_unique, size=n)]
    labelled = sample(n_lab)
    u = rng.random(n) * 0.1
    return u, pool, labelled


# ----------------------------------------------------------------------------- reference transcription
def reference_normalise(pool: np.ndarray) -> np.ndarray:
    """``fts - mean / std`` with pandas statistics (ddof=1), on the pool only."""
    df = pd.DataFrame(np.asarray(pool, dtype=np.float64))
    shift = (df.mean() / df.std()).to_numpy()
    values = df.to_numpy()
    fts = np.empty(values.shape, dtype=np.float64)   # C order; same elementwise op as df - mean / std
    for i in range(0, values.shape[0], CHUNK_ROWS):
        np.subtract(values[i:i + CHUNK_ROWS], shift, out=fts[i:i + CHUNK_ROWS])
    return fts


def _exact_row(fts: np.ndarray, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Exact float64 distances from x to fts[rows] (all rows if None), in row blocks."""
    idx = np.arange(fts.shape[0]) if rows is None else rows
    out = np.empty(idx.size)
    for i in range(0, idx.size, CHUNK_ROWS):
        sl = idx[i:i + CHUNK_ROWS]
        block = fts[sl] if rows is not None else fts[sl[0]:sl[-1] + 1]
        out[i:i + sl.size] = np.sqrt(((block - x) ** 2).sum(axis=1))
    return out


def reference_radius(fts: np.ndarray, i: int, k: int) -> float:
    """r_k of pool row i: sort of its exact distances to the whole pool, k-th (itself first)."""
    return float(np.sort(_exact_row(fts, fts[i]))[k - 1])


def reference_count(fts: np.ndarray, lab: np.ndarray, i: int, r: float) -> int:
    """Labelled rows within r of pool row i (exact distances, <=)."""
    return int((np.sqrt(((lab - fts[i]) ** 2).sum(axis=1)) <= r).sum())


def reference_picks(u, fts, radius, counts, n_picks, beta, k, d, floor):
    """The reference's per-pick loop: recompute every term, argmax, update counts by exact distances."""
    counts = counts.copy()
    remaining = np.ones(fts.shape[0], dtype=bool)
    picks, seconds = [], []
    for _ in range(n_picks):
        t = time.perf_counter()
        rem = np.flatnonzero(remaining)
        log_dist = np.log(2 * radius[rem] + floor)
        count_term = digamma(counts[rem] + 1) / d
        h = log_dist - count_term
        score = u[rem] + beta * h
        _ = (log_dist, count_term, h, beta * h, score, u[rem] / score)  # the per-step components it logs
        j = int(rem[int(np.argmax(score))])
        remaining[j] = False
        rem = np.flatnonzero(remaining)
        dist = _exact_row(fts, fts[j], rem)
        counts[rem] += (dist <= radius[rem]).astype(np.int64)
        picks.append(j)
        seconds.append(time.perf_counter() - t)
    return np.array(picks), float(np.mean(seconds))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the numbers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=92_000, help="pool size N")
    ap.add_argument("--d", type=int, default=4096, help="feature dimension D")
    ap.add_argument("--labelled", type=int, default=320, help="labelled set size L")
    ap.add_argument("--picks", type=int, default=320, help="batch size B")
    ap.add_argument("--k", type=int, default=13)
    ap.add_argument("--beta", type=float, default=0.01)
    ap.add_argument("--prompts-per-comparison", type=float, default=1.0,
                    help="unique prompts / pool rows (1.0: all distinct)")
    ap.add_argument("--ref-picks", type=int, default=3, help="reference picks actually timed")
    ap.add_argument("--ref-rows", type=int, default=3, help="reference radius rows actually timed")
    ap.add_argument("--ref-count-rows", type=int, default=200, help="reference count rows actually timed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    print(f"# BAL-PM selection round: N={args.n:,} D={args.d:,} L={args.labelled:,} B={args.picks} "
          f"k={args.k} beta={args.beta} unique-prompt fraction={args.prompts_per_comparison}")
    print(f"# cpu cores={os.cpu_count()} threads(faiss)={__import__('faiss').omp_get_max_threads()}")
    t = time.perf_counter()
    u, pool, lab = make_world(args.n, args.d, args.labelled, args.prompts_per_comparison, args.seed)
    print(f"data generated in {time.perf_counter() - t:.1f} s ({pool.nbytes / 2**30:.2f} GiB float32 pool)")

    # ------------------------------------------------------------------ fast path
    t0 = time.perf_counter()
    rnd = prepare_balpm(u, pool, lab, args.picks, beta=args.beta, k=args.k, normalize="faithful")
    t1 = time.perf_counter()
    sel = greedy_select(rnd, args.picks)
    t2 = time.perf_counter()
    st = rnd.geometry.stats
    fast_total = t2 - t0
    print("\n## fast path (select_balpm, normalize=faithful)")
    print(f"geometry (validate, normalise, dedup, float32 copies): {st['seconds_geometry']:8.2f} s")
    print(f"radii (FAISS exact kNN + exact refinement):            {st['seconds_radii']:8.2f} s")
    print(f"labelled counts n0 (GEMM + exact borderline):          {st['seconds_counts']:8.2f} s")
    print(f"validation and other set-up:                           "
          f"{(t1 - t0) - st['seconds_geometry'] - st['seconds_radii'] - st['seconds_counts']:8.2f} s")
    print(f"greedy picks ({args.picks}):                                   {t2 - t1:8.3f} s "
          f"({(t2 - t1) / args.picks * 1e3:.2f} ms per pick)")
    print(f"TOTAL one round:                                       {fast_total:8.2f} s")
    print(f"unique prompts {st['pool_unique']:,}; exact float64 pair recomputations {st.get('exact_pairs', 0):,}; "
          f"rows needing a wider search {st.get('widened_members', 0):,}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

    # ------------------------------------------------------------------ reference transcription
    rnd.geometry.pool.x32_M_D = None  # free the fast path's search copy before the float64 reference
    print("\n## reference transcription (timed on a subset, EXTRAPOLATED linearly)")
    t = time.perf_counter()
    fts = reference_normalise(pool)
    lab64 = np.asarray(lab, dtype=np.float64)
    t_norm = time.perf_counter() - t
    g = rnd.group_N
    radius_items = rnd.radius_M[g]
    n0_items = rnd.n0_M[g]
    rng = np.random.default_rng(1)
    rows = rng.choice(args.n, size=min(args.ref_rows, args.n), replace=False)
    t = time.perf_counter()
    ref_r = np.array([reference_radius(fts, int(i), args.k) for i in rows])
    per_radius_row = (time.perf_counter() - t) / rows.size
    crow = rng.choice(args.n, size=min(args.ref_count_rows, args.n), replace=False)
    t = time.perf_counter()
    ref_n = np.array([reference_count(fts, lab64, int(i), float(radius_items[i])) for i in crow])
    per_count_row = (time.perf_counter() - t) / crow.size
    radii_agree = bool(np.array_equal(ref_r, radius_items[rows]))
    counts_agree = bool(np.array_equal(ref_n, n0_items[crow]))
    ref_p, per_pick = reference_picks(u, fts, radius_items, n0_items, min(args.ref_picks, args.picks),
                                      args.beta, args.k, 1.0, 1e-4)
    picks_agree = bool(np.array_equal(ref_p, sel.indices[:ref_p.size]))
    ref_radii = per_radius_row * args.n
    ref_counts = per_count_row * args.n
    ref_greedy = per_pick * args.picks
    ref_total = t_norm + ref_radii + ref_counts + ref_greedy
    print(f"normalise (pandas, measured):                          {t_norm:8.2f} s")
    print(f"radii: {per_radius_row:.3f} s per row measured on {rows.size} rows x {args.n:,} = {ref_radii:10.0f} s (extrapolated)")
    print(f"counts: {per_count_row * 1e3:.2f} ms per row measured on {crow.size} rows x {args.n:,} = {ref_counts:8.1f} s (extrapolated)")
    print(f"picks: {per_pick:.3f} s per pick measured on {ref_p.size} picks x {args.picks} = {ref_greedy:8.1f} s (extrapolated)")
    print(f"TOTAL one round (extrapolated):                        {ref_total:10.0f} s = {ref_total / 3600:.1f} h")
    print(f"check: reference radii == fast radii on timed rows: {radii_agree}; counts: {counts_agree}; "
          f"first {ref_p.size} picks identical: {picks_agree}")

    print("\n## ratio (reference / fast, same inputs, same run)")
    print(f"radii:        {ref_radii / max(st['seconds_radii'], 1e-9):10.1f} x")
    print(f"greedy picks: {ref_greedy / max(t2 - t1, 1e-9):10.1f} x")
    print(f"whole round:  {ref_total / fast_total:10.1f} x")


if __name__ == "__main__":
    main()
