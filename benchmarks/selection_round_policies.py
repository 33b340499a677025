"""One selection round of every policy beyond the paper at paper scale, next to BAL-PM's, with each
policy's competent baseline; prints one JSON object.

    python benchmarks/selection_round_policies.py                    # N=92,000, D=4,096, L=320, B=320, K=5
    python benchmarks/selection_round_policies.py --n 5000 --d 256   # quick

Data: ``benchmarks/selection_round.py``'s clustered float32 prompt features (``make_world``, with
``--prompts-per-comparison 0.2`` as its README headline), member probabilities
``sigmoid(mu + s * eps_k)`` per pool item (mu ~ N(0, 2), spread s ~ U(0.1, 1.5), K members) and, for
dopt, random float32 pair features (labelled then pool, (L + N) x 2 x D). Each policy runs in its own
child process (``--only NAME``) so its peak RSS is its own; ``seconds`` is the wall time of
``policy.select(state, B, rng)`` exactly as the loop calls it.

Baselines (named in the output; where timing them in full would take too long, a subset is timed and
**extrapolated**, and the output says so):

* ``batchbald``: ``batchbald_redux.get_batchbald_batch`` (float64, CPU) on the same log-probabilities
  of the first ``--baseline-rows`` pool rows; its steady per-pick cost is ``(t(B2) - t(B1)) / (B2 - B1)``
  from two short batches (both beyond the exact-joint steps), scaled linearly to N rows and B picks.
  Its exact-joint picks are compared with ours on the same rows.
* ``epig``: a transcription of the EPIG authors' estimator (``epig`` repository,
  ``conditional_epig_from_probs``: the joint over (N, T, classes, classes) with torch ``einsum``),
  same targets, in row blocks; max abs difference of the scores reported.
* ``coreset``: ``sklearn.metrics.pairwise_distances`` to the labelled set, then per pick to the pick
  (the shape of the coreset authors' code), and FAISS ``IndexFlatL2`` with one centre per pick;
  timed on ``--baseline-picks`` picks, extrapolated to B.
* ``dopt``: the primal form with the explicit inverse ``A = V^-1`` (``numpy.linalg.inv``), initial
  scores ``rowsum((Phi A) * Phi)`` (N D^2, timed on ``--baseline-rows`` rows and extrapolated) and a
  D x D rank-one update per pick.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from selection_round import make_world

from balpm.acquisition.base import PoolState, RunPool

POLICY_NAMES = ("balpm", "batchbald", "epig", "coreset", "dopt")


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def member_probs(n: int, k: int, seed: int) -> np.ndarray:
    """``sigmoid(mu + s * eps_k)``: items from confident to contested, members from agreeing to not."""
    rng = np.random.default_rng([seed, 1])
    mu = rng.normal(0.0, 2.0, size=(n, 1))
    spread = rng.uniform(0.1, 1.5, size=(n, 1))
    return 1.0 / (1.0 + np.exp(-(mu + spread * rng.standard_normal((n, k)))))


def pair_features(n_rows: int, d: int, seed: int) -> np.ndarray:
    """(n_rows, 2, D) float32 answer features, filled in blocks."""
    rng = np.random.default_rng([seed, 2])
    out = np.empty((n_rows, 2, d), dtype=np.float32)
    for i in range(0, n_rows, 4096):
        out[i:i + 4096] = rng.standard_normal((min(4096, n_rows - i), 2, d), dtype=np.float32)
    return out


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# ---------------------------------------------------------------------------------------- baselines
def redux_batchbald(probs: np.ndarray, args) -> dict:
    import torch
    from batchbald_redux.batchbald import get_batchbald_batch

    from balpm.acquisition.batchbald import select_batchbald

    rows = min(args.baseline_rows, probs.shape[0])   # redux is timed on the first rows; cost is linear in N
    scale = probs.shape[0] / rows
    sub = probs[:rows]
    log_probs = torch.from_numpy(np.stack([np.log1p(-sub), np.log(sub)], axis=2))
    b1, b2 = args.baseline_picks, args.baseline_picks + 4
    first, t1 = _timed(lambda: get_batchbald_batch(log_probs, b1, args.num_samples, dtype=torch.double))
    _, t2 = _timed(lambda: get_batchbald_batch(log_probs, b2, args.num_samples, dtype=torch.double))
    per_pick = (t2 - t1) / (b2 - b1) * scale
    ours, t_ours = _timed(lambda: select_batchbald(sub, b2, np.random.default_rng(args.seed), args.num_samples))
    k = min(b1, int(np.log2(args.num_samples)) + 1)   # picks made on the exact joint
    return {"baseline": "batchbald_redux.get_batchbald_batch (float64, CPU)", "baseline_rows_timed": rows,
            "baseline_seconds_timed": {str(b1): round(t1, 2), str(b2): round(t2, 2)},
            "ours_seconds_same_rows": {str(b2): round(t_ours, 2)},
            "baseline_seconds_per_pick_steady_full_n": round(per_pick, 2),
            "baseline_seconds_extrapolated": round(t2 * scale + per_pick * (args.picks - b2), 1), "extrapolated": True,
            "exact_picks_agree": bool(list(first.indices)[:k] == ours.indices[:k].tolist()), "exact_picks_compared": k}


def epig_authors(probs: np.ndarray, targets: np.ndarray, block: int = 2048) -> np.ndarray:
    """The EPIG authors' estimator on (N, K, C) probabilities (transcribed; ``epig`` repository)."""
    import torch

    p = torch.from_numpy(np.stack([probs, 1.0 - probs], axis=2))              # (N, K, 2)
    q = p[torch.from_numpy(targets)]                                          # (T, K, 2)
    out = []
    for i in range(0, p.shape[0], block):
        pp = p[i:i + block]
        joint = torch.einsum("pkc,tkd->ptcd", pp, q) / pp.shape[1]            # p(y, y*)
        marg = pp.mean(dim=1)[:, None, :, None] * q.mean(dim=1)[None, :, None, :]
        scores = torch.sum(torch.xlogy(joint, joint) - torch.xlogy(joint, marg), dim=(-2, -1))
        out.append(scores.mean(dim=1))
    return torch.cat(out).numpy()


def coreset_baselines(pool: np.ndarray, lab: np.ndarray, args) -> dict:
    import faiss
    from sklearn.metrics import pairwise_distances

    from balpm.acquisition.coreset import zscore

    zp, zl = zscore(pool, lab)
    res = {}
    t = time.perf_counter()
    nearest = pairwise_distances(zp, zl).min(axis=1)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.baseline_picks):
        j = int(np.argmax(nearest))
        nearest = np.minimum(nearest, pairwise_distances(zp, zp[j:j + 1])[:, 0])
    per = (time.perf_counter() - t) / args.baseline_picks
    res["sklearn"] = {"baseline": "sklearn pairwise_distances per pick", "init_seconds": round(t_init, 2),
                      "seconds_per_pick": round(per, 3), "extrapolated_seconds": round(t_init + per * args.picks, 1)}
    t = time.perf_counter()
    index = faiss.IndexFlatL2(zp.shape[1])
    index.add(zl)
    nearest = index.search(zp, 1)[0][:, 0]
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.baseline_picks):
        j = int(np.argmax(nearest))
        one = faiss.IndexFlatL2(zp.shape[1])
        one.add(zp[j:j + 1])
        nearest = np.minimum(nearest, one.search(zp, 1)[0][:, 0])
    per = (time.perf_counter() - t) / args.baseline_picks
    res["faiss"] = {"baseline": "FAISS IndexFlatL2 k-center (one centre per pick)", "init_seconds": round(t_init, 2),
                    "seconds_per_pick": round(per, 3), "extrapolated_seconds": round(t_init + per * args.picks, 1)}
    return {"baselines": res, "extrapolated": True, "baseline_picks_timed": args.baseline_picks}


def dopt_explicit_inverse(phi: np.ndarray, phi_lab: np.ndarray, args) -> dict:
    d = phi.shape[1]
    lab64 = phi_lab.astype(np.float64)
    inv, t_inv = _timed(lambda: np.linalg.inv(args.lam * np.eye(d) + lab64.T @ lab64))
    rows = min(args.baseline_rows, phi.shape[0])
    x = phi[:rows].astype(np.float64)
    _, t_rows = _timed(lambda: np.einsum("nd,nd->n", x @ inv, x))
    t_scores = t_rows * phi.shape[0] / rows
    t = time.perf_counter()
    for j in range(args.baseline_picks):   # rank-one update of A and of every score
        w = inv @ phi[j].astype(np.float64)
        inv -= np.outer(w, w) / (1.0 + float(phi[j] @ w))
        _ = (phi @ w.astype(np.float32))
    per = (time.perf_counter() - t) / args.baseline_picks
    return {"baseline": "primal form, explicit inverse (numpy.linalg.inv), scores rowsum((Phi A) * Phi)",
            "inverse_seconds": round(t_inv, 2), "scores_seconds_extrapolated": round(t_scores, 1),
            "score_rows_timed": rows, "seconds_per_pick": round(per, 3),
            "baseline_seconds_extrapolated": round(t_inv + t_scores + per * args.picks, 1), "extrapolated": True}


# ---------------------------------------------------------------------------------------- one policy
def run_one(name: str, args) -> dict:
    rng = np.random.default_rng(args.seed)
    out: dict = {"policy": name}
    if name == "dopt":
        pairs = pair_features(args.labelled + args.n, args.d, args.seed)
        lab_idx, pool_idx = np.arange(args.labelled), np.arange(args.labelled, args.labelled + args.n)
        run = RunPool(np.zeros((args.labelled + args.n, 1), np.float32), pool_idx, pool_idx, lab_idx, pairs_F_2_D=pairs)
        state = PoolState(member_probs(args.n, args.members, args.seed), np.zeros((args.n, 1), np.float32),
                          np.zeros((args.labelled, 1), np.float32), run=run)
    else:
        _, pool, lab = make_world(args.n, args.d, args.labelled, args.prompts_per_comparison, args.seed)
        state = PoolState(member_probs(args.n, args.members, args.seed), pool, lab)
    policy = _policy(name, args)
    sel, seconds = _timed(lambda: policy.select(state, args.picks, np.random.default_rng(args.seed)))
    out.update(seconds=round(seconds, 2), peak_rss_gib=_peak_gib(), picks=args.picks,
               first_picks=sel.indices[:10].tolist())
    if args.skip_baselines or name == "balpm":
        return out
    if name == "batchbald":
        out.update(redux_batchbald(state.probs_N_K, args))
        out["candidates_evaluated"] = int(sel.steps["evaluated"].sum())
    elif name == "epig":
        from balpm.acquisition.epig import epig_scores, sample_targets

        targets = sample_targets(args.n, args.target_size, np.random.default_rng(args.seed))
        ref, t = _timed(lambda: epig_authors(state.probs_N_K, targets))
        mine = epig_scores(state.probs_N_K, state.probs_N_K[targets])
        out.update(baseline="EPIG authors' estimator (torch einsum over (N, T, 2, 2), transcribed)",
                   baseline_seconds=round(t, 2), max_abs_score_difference=float(np.abs(ref - mine).max()),
                   extrapolated=False)
    elif name == "coreset":
        out.update(coreset_baselines(state.pool_prompts_N_D, state.labelled_prompts_L_D, args))
    elif name == "dopt":
        from balpm.acquisition.dopt import pair_differences

        phi = pair_differences(state.run, state.run.pool_index_N)
        phi_lab = pair_differences(state.run, state.run.labelled_index_L)
        out.update(dopt_explicit_inverse(phi, phi_lab, args))
    out["peak_rss_gib"] = _peak_gib()
    del rng
    return out


def _policy(name: str, args):
    if name == "balpm":
        from balpm.acquisition.balpm import BalpmPolicy

        return BalpmPolicy()
    if name == "batchbald":
        from balpm.acquisition.batchbald import BatchBALDPolicy

        return BatchBALDPolicy(num_samples=args.num_samples)
    if name == "epig":
        from balpm.acquisition.epig import EPIGPolicy

        return EPIGPolicy(target_size=args.target_size)
    if name == "coreset":
        from balpm.acquisition.coreset import CoresetPolicy

        return CoresetPolicy()
    from balpm.acquisition.dopt import DOptPolicy

    return DOptPolicy(lam=args.lam)


def main(argv: list[str] | None = None) -> None:
    """Run every policy in a child process and print one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=92_000, help="pool size N")
    ap.add_argument("--d", type=int, default=4096, help="feature dimension D")
    ap.add_argument("--labelled", type=int, default=320, help="labelled set size L")
    ap.add_argument("--picks", type=int, default=320, help="batch size B")
    ap.add_argument("--members", type=int, default=5, help="ensemble members K")
    ap.add_argument("--prompts-per-comparison", type=float, default=0.2, help="unique prompts / pool rows")
    ap.add_argument("--num-samples", type=int, default=1000, help="batchbald: sampled configurations")
    ap.add_argument("--target-size", type=int, default=100, help="epig: target items")
    ap.add_argument("--lam", type=float, default=1.0, help="dopt: ridge lambda")
    ap.add_argument("--baseline-picks", type=int, default=12, help="picks of the slow baselines actually timed")
    ap.add_argument("--baseline-rows", type=int, default=4096, help="batchbald and dopt baselines: rows actually timed")
    ap.add_argument("--policies", default=",".join(POLICY_NAMES))
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args.only, args)))
        return
    t = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    passthrough = list(argv if argv is not None else sys.argv[1:])  # --only overrides --policies in the child
    for name in args.policies.split(","):
        proc = subprocess.run([sys.executable, __file__, *passthrough, "--only", name], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            results.append({"policy": name, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress: each policy as it finishes
    import faiss

    print(json.dumps({"n": args.n, "d": args.d, "labelled": args.labelled, "picks": args.picks,
                      "members": args.members, "prompts_per_comparison": args.prompts_per_comparison,
                      "cpu_cores": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "results": results,
                      "wall_seconds": round(time.perf_counter() - t, 1), "load_before": load_before,
                      "load_after": [round(x, 2) for x in os.getloadavg()]}, indent=1))


if __name__ == "__main__":
    main()
