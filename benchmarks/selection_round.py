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

from balpm.acquisition.balpm import BalpmRound, greedy_select, prepare_balpm
from balpm.engine.knn import RadiusTracker, _csr_pairs, build_geometry, labelled_counts, pool_radii

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


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _round_from(geo, radius, mq, mb, n0, u, args) -> BalpmRound:
    """A BAL-PM round from already computed constants (fixed statistics)."""
    g = geo.pool.group_N
    m = geo.pool.size
    items_ptr, items_idx = _csr_pairs(g, np.arange(g.size), m)
    rev_ptr, rev_idx = _csr_pairs(mb, mq, m)
    return BalpmRound(u_N=u, geometry=geo, estimator="pool_radius", beta=args.beta, d=1.0, floor=1e-4,
                      minimize=False, k=args.k, radius_M=radius, n0_M=n0, rev_ptr=rev_ptr, rev_idx=rev_idx,
                      items_ptr=items_ptr, items_idx=items_idx)


def incremental_rounds(args) -> dict:
    """``--rounds R``: R rounds of radii + counts kept incrementally vs recomputed from scratch (zscore,
    round-0 statistics for both), with the picks of each; ``identical`` when radii, counts and picks
    match in every round."""
    u0, pool, lab = make_world(args.n, args.d, args.labelled, args.prompts_per_comparison, args.seed)
    prompts = np.concatenate([lab, pool])            # run positions: the labelled set first
    n_lab = lab.shape[0]
    start = np.arange(n_lab, n_lab + pool.shape[0])
    tracker = RadiusTracker(args.k, args.normalize, exact_knn=not args.approx)
    labelled = list(range(n_lab))
    rng = np.random.default_rng(args.seed + 1)
    out: dict = {"n": args.n, "d": args.d, "rounds": args.rounds, "normalize": args.normalize, "k": args.k,
                 "picks_per_round": args.picks, "round_seconds": [], "from_scratch_seconds": [],
                 "picks_seconds": [], "recomputed_prompts": [], "unique_prompts": [], "identical": True,
                 "identical_per_round": []}
    for _ in range(args.rounds):
        remaining = np.setdiff1d(np.arange(prompts.shape[0]), labelled)
        u = rng.random(remaining.size) * 0.1
        lab_idx = np.asarray(labelled)
        t0 = time.perf_counter()
        tr = tracker.round(prompts, start, remaining, lab_idx)
        t1 = time.perf_counter()
        rnd = prepare_balpm(u, prompts[remaining], prompts[lab_idx], args.picks, beta=args.beta, k=args.k,
                            normalize=args.normalize, tracked=tr)
        t2 = time.perf_counter()
        sel = greedy_select(rnd, args.picks)
        t3 = time.perf_counter()
        geo = build_geometry(prompts[remaining], prompts[lab_idx], normalizer=tracker.normalizer,
                             exact_knn=not args.approx)
        radius, mq, mb = pool_radii(geo, args.k)
        n0 = labelled_counts(geo, radius)
        t4 = time.perf_counter()
        ref = greedy_select(_round_from(geo, radius, mq, mb, n0, u, args), args.picks)
        g_inc, g_ref = tr.geometry.pool.group_N, geo.pool.group_N
        same = bool(np.array_equal(tr.radius_M[g_inc], radius[g_ref]) and np.array_equal(tr.n0_M[g_inc], n0[g_ref])
                    and np.array_equal(sel.indices, ref.indices))
        out["round_seconds"].append(round(t1 - t0, 3))
        out["from_scratch_seconds"].append(round(t4 - t3, 3))
        out["picks_seconds"].append(round(t3 - t2, 3))
        out["recomputed_prompts"].append(int(tr.recomputed))
        out["unique_prompts"].append(int((np.diff(tr.items_ptr) > 0).sum()))
        out["identical_per_round"].append(same)
        out["identical"] = out["identical"] and same
        labelled.extend(remaining[sel.indices].tolist())
    out["speedup_later_rounds"] = (round(sum(out["from_scratch_seconds"][1:]) / max(sum(out["round_seconds"][1:]), 1e-9), 2)
                                   if args.rounds > 1 else None)
    out["peak_rss_gib"] = round(_peak_gib(), 3)
    return out


def approx_round(args) -> dict:
    """``--approx``: one round with HNSW radii (``exact_knn=False``) against exact radii on the same inputs."""
    u, pool, lab = make_world(args.n, args.d, args.labelled, args.prompts_per_comparison, args.seed)
    rss_world = _peak_gib()
    t0 = time.perf_counter()
    rnd_a = prepare_balpm(u, pool, lab, args.picks, beta=args.beta, k=args.k, normalize=args.normalize, exact_knn=False)
    sel_a = greedy_select(rnd_a, args.picks)
    t_a = time.perf_counter() - t0
    st = rnd_a.geometry.stats
    out = {"n": args.n, "d": args.d, "picks": args.picks, "k": args.k, "normalize": args.normalize,
           "unique_prompts": int(rnd_a.geometry.pool.size),
           "approx_round_seconds": round(t_a, 2),
           "approx_phases": {key: round(float(st[key]), 2) for key in ("seconds_geometry", "seconds_index", "seconds_radii",
                                                                       "seconds_counts") if key in st},
           "approx_peak_rss_gib": round(_peak_gib(), 3), "world_rss_gib": round(rss_world, 3)}
    if args.skip_exact:
        return out
    r_a = rnd_a.radius_M[rnd_a.group_N]
    del rnd_a
    t0 = time.perf_counter()
    rnd_e = prepare_balpm(u, pool, lab, args.picks, beta=args.beta, k=args.k, normalize=args.normalize)
    sel_e = greedy_select(rnd_e, args.picks)
    t_e = time.perf_counter() - t0
    r_e = rnd_e.radius_M[rnd_e.group_N]
    pos = r_e > 0
    rel = np.abs(r_a[pos] - r_e[pos]) / r_e[pos]
    out.update(exact_round_seconds=round(t_e, 2), radius_rel_err_p99=float(np.quantile(rel, 0.99)),
               radius_rel_err_max=float(rel.max()), radius_exact_share=float((r_a == r_e).mean()),
               pick_overlap=len(set(sel_a.indices.tolist()) & set(sel_e.indices.tolist())) / args.picks,
               peak_rss_gib=round(_peak_gib(), 3))
    return out


def baselines(args, u, pool, lab) -> dict:
    """Seconds of one round by (a) the competent baseline: zscore in float32, FAISS ``IndexFlatL2`` radii
    of every row, labelled counts by one GEMM, one matrix-vector product per pick; and (b) the
    reference's own computation as it runs: float32 ``torch.cdist`` without matrix products + ``topk``
    per row, counts by cdist against the labelled set, per pick a cdist row. Slow parts are timed on
    ``--baseline-rows`` rows (picks on 3) and extrapolated linearly (flagged in the output)."""
    import faiss
    import torch

    n = pool.shape[0]
    k = args.k
    rows = min(n, args.baseline_rows)
    out: dict = {"baseline_rows_timed": rows, "extrapolated": rows < n}
    t = time.perf_counter()
    mean = pool.mean(axis=0, dtype=np.float64)
    std = pool.std(axis=0, ddof=1, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    x = ((pool - mean) / std).astype(np.float32)
    xl = ((lab - mean) / std).astype(np.float32)
    t_norm = time.perf_counter() - t
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    t = time.perf_counter()
    d2, _ = index.search(x[:rows], k)
    t_radii = (time.perf_counter() - t) * n / rows
    t = time.perf_counter()
    r2 = np.empty(n, dtype=np.float32)
    r2[:rows] = d2[:, k - 1]
    if rows < n:   # radii of the untimed rows, only to run the picks on realistic values (not timed)
        r2[rows:] = np.quantile(d2[:, k - 1], 0.5)
    del index
    t = time.perf_counter()
    norms = (x * x).sum(axis=1)
    nl = (xl * xl).sum(axis=1)
    counts = np.empty(n, dtype=np.int64)
    for i in range(0, n, 65536):   # one GEMM per block of rows (bounded memory)
        dl = norms[i:i + 65536, None] + nl[None, :] - 2.0 * (x[i:i + 65536] @ xl.T)
        counts[i:i + 65536] = (dl <= r2[i:i + 65536, None]).sum(axis=1)
    t_counts = time.perf_counter() - t
    t = time.perf_counter()
    alive = np.ones(n, dtype=bool)
    logr = np.log(2 * np.sqrt(np.maximum(r2, 0)) + 1e-4)
    from scipy.special import digamma as dg
    for _ in range(args.picks):
        score = np.where(alive, u + args.beta * (logr - dg(counts + 1)), -np.inf)
        j = int(np.argmax(score))
        alive[j] = False
        dj = norms + norms[j] - 2.0 * (x @ x[j])
        counts += (alive & (dj <= r2)).astype(np.int64)
    t_picks = time.perf_counter() - t
    out["competent"] = {"normalise": round(t_norm, 3), "radii": round(t_radii, 3), "counts": round(t_counts, 3),
                        "picks": round(t_picks, 3), "total": round(t_norm + t_radii + t_counts + t_picks, 3)}
    xt, xlt = torch.from_numpy(x), torch.from_numpy(xl)
    ref_rows = min(rows, args.reference_rows)
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, ref_rows, 8):
            dist = torch.cdist(xt[i:i + 8], xt, compute_mode="donot_use_mm_for_euclid_dist")
            torch.topk(dist, k, largest=False)
    t_rradii = (time.perf_counter() - t) * n / ref_rows
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, ref_rows, 64):
            torch.cdist(xt[i:i + 64], xlt, compute_mode="donot_use_mm_for_euclid_dist")
    t_rcounts = (time.perf_counter() - t) * n / ref_rows
    t = time.perf_counter()
    with torch.no_grad():
        for j in range(3):
            torch.cdist(xt[j:j + 1], xt, compute_mode="donot_use_mm_for_euclid_dist")
    t_rpicks = (time.perf_counter() - t) / 3 * args.picks
    out["reference_own"] = {"normalise": round(t_norm, 3), "radii": round(t_rradii, 2), "counts": round(t_rcounts, 2),
                            "picks": round(t_rpicks, 2),
                            "total": round(t_norm + t_rradii + t_rcounts + t_rpicks, 2),
                            "rows_timed": ref_rows, "extrapolated": ref_rows < n}
    return out


def table_rounds(args) -> dict:
    """``--table``: our phases in round 0 and in later (incremental) rounds, plus both baselines on the
    same round-0 inputs, for the table in docs/performance.md."""
    u0, pool, lab = make_world(args.n, args.d, args.labelled, args.prompts_per_comparison, args.seed)
    prompts = np.concatenate([lab, pool])
    n_lab = lab.shape[0]
    pool = prompts[n_lab:]      # a view: one copy of the pool in memory
    start = np.arange(n_lab, n_lab + pool.shape[0])
    tracker = RadiusTracker(args.k, args.normalize, exact_knn=not args.approx)
    labelled = list(range(n_lab))
    rounds = []
    for r in range(args.rounds):
        remaining = np.setdiff1d(np.arange(prompts.shape[0]), labelled)
        u = u0[remaining - n_lab]
        lab_idx = np.asarray(labelled)
        t0 = time.perf_counter()
        tr = tracker.round(prompts, start, remaining, lab_idx)
        rnd = prepare_balpm(u, prompts[remaining], prompts[lab_idx], args.picks, beta=args.beta, k=args.k,
                            normalize=args.normalize, tracked=tr)
        t1 = time.perf_counter()
        sel = greedy_select(rnd, args.picks)
        t2 = time.perf_counter()
        st = tr.geometry.stats
        rounds.append({"round": r, "geometry": round(st["seconds_geometry"], 3),
                       "index": round(float(st.get("seconds_index", 0.0)), 3),
                       "radii": round(st["seconds_radii"], 3), "counts": round(st["seconds_counts"], 3),
                       "picks": round(t2 - t1, 3), "total": round(t2 - t0, 3), "recomputed": int(tr.recomputed)})
        labelled.extend(remaining[sel.indices].tolist())
    out = {"n": args.n, "d": args.d, "prompts_per_comparison": args.prompts_per_comparison,
           "exact_knn": not args.approx, "unique_prompts": int(tracker._ps.size), "rounds": rounds,
           "peak_rss_gib_ours": round(_peak_gib(), 3)}
    if not args.skip_baselines:
        out["baselines"] = baselines(args, u0, pool, lab)
        out["peak_rss_gib_with_baselines"] = round(_peak_gib(), 3)
        b = out["baselines"]
        out["ratio_round0_competent"] = round(b["competent"]["total"] / rounds[0]["total"], 2)
        out["ratio_round0_reference_own"] = round(b["reference_own"]["total"] / rounds[0]["total"], 1)
        if len(rounds) > 1:
            later = float(np.mean([r["total"] for r in rounds[1:]]))
            out["ratio_later_competent"] = round(b["competent"]["total"] / later, 2)
            out["ratio_later_reference_own"] = round(b["reference_own"]["total"] / later, 1)
    return out


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
    ap.add_argument("--rounds", type=int, default=1,
                    help="> 1: rounds with incremental radii vs from-scratch (round_seconds, from_scratch_seconds, identical)")
    ap.add_argument("--approx", action="store_true", help="HNSW radii (exact_knn=False) vs exact: radius error, pick overlap")
    ap.add_argument("--skip-exact", action="store_true", help="with --approx: time only the approximate round (1M pools)")
    ap.add_argument("--table", action="store_true",
                    help="docs/performance.md table: our phases per round (round 0, incremental later rounds) and both baselines")
    ap.add_argument("--skip-baselines", action="store_true", help="with --table: only our phases")
    ap.add_argument("--baseline-rows", type=int, default=5000, help="rows on which the baselines' radii are timed")
    ap.add_argument("--reference-rows", type=int, default=64, help="rows on which the reference's cdist radii are timed")
    ap.add_argument("--normalize", default="zscore", help="normalisation for --rounds/--approx/--table")
    ap.add_argument("--json", action="store_true", help="print one JSON object (with --rounds, --approx or --table)")
    args = ap.parse_args(argv)
    if args.table or args.rounds > 1 or args.approx:
        import json

        import faiss

        t = time.perf_counter()
        if args.table:
            out = table_rounds(args)
        elif args.rounds > 1:
            out = incremental_rounds(args)
        else:
            out = approx_round(args)
        out.update(prompts_per_comparison=args.prompts_per_comparison, wall_seconds=round(time.perf_counter() - t, 1),
                   faiss_threads=faiss.omp_get_max_threads(), load_after=[round(x, 2) for x in os.getloadavg()])
        print(json.dumps(out, indent=1) if args.json else out)
        return

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
