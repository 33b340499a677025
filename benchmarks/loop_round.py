"""Rounds of ``balpm.experiment.loop`` on the paper-shape world, timed by phase, with peak RSS.

    python benchmarks/loop_round.py --n 92000 --d 4096 --json          # the paper's pool and LLM width
    python benchmarks/loop_round.py --n 10000 --d 1024 --rounds 2 --json
    python benchmarks/loop_round.py --n 20000 --d 1024 --set model.precision=bf16 --json
    python benchmarks/loop_round.py --n 92000 --d 4096 --set model.matmul=blas --json   # torch's MKL kernels

World: ``balpm.data.synthetic.paper_world`` with ``ceil(n / 0.7)`` comparisons rounded up to a thousand
(split 0.7 / 0.1 / 0.2 by prompt, 10% more on new prompts as the OOD split), so ``--n 92000`` is the
issue's 132,000-comparison world with a 92,000 pool, a ~13k validation split, a ~26k test split and
~13k OOD comparisons. Loop: 320 initial labels, 320 per round, BAL-PM, K = 5, hidden 2048-256, the
default ``ModelConfig`` (plus any ``--set section.field=value``).

Per round it prints the loop's own phase clocks (``rounds.parquet``: train, eval, select) split
further by wrapping functions of the engine, so the same script times older checkouts too
(``PYTHONPATH=/path/to/old/checkout``):

* ``train``: the whole ``fit`` (``valid`` is the part spent in the validation passes);
* ``pool_predict``: member probabilities of the remaining pool; ``selection``: the policy;
* ``eval``: test and OOD metrics.

``cpu`` repeats the phases in process CPU seconds (all threads), less sensitive than wall time to
other jobs on a shared machine.

Also ``world_seconds`` (generating the synthetic world, not part of a round), the torch thread count,
the load average before and after, and ``peak_rss_gib`` (``resource.getrusage``, the whole process,
world included). The run is stopped after ``--rounds`` rounds with a selection (no final train-only
round).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("PYTHONPATH", "") == "":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


class _Stop(Exception):
    """Raised after the requested rounds to end the run early."""


def _coerce(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a report (or JSON) and return it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=92_000, help="pool size N")
    ap.add_argument("--d", type=int, default=4096, help="feature dimension D")
    ap.add_argument("--rounds", type=int, default=1, help="rounds with a selection to time")
    ap.add_argument("--initial", type=int, default=320)
    ap.add_argument("--batch", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch/faiss threads (0: library default)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a config field, e.g. model.precision=bf16 (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--save-picks", default="", help="write the acquired pool indices (round, step order) to this .npy")
    args = ap.parse_args(argv)

    import dataclasses

    import pandas as pd
    import torch

    import balpm
    import balpm.engine.model as model_mod
    import balpm.experiment.loop as loop
    from balpm.config import DataConfig, LoopConfig, RunConfig
    from balpm.data.synthetic import paper_world
    from balpm.experiment import runs

    if args.threads:
        torch.set_num_threads(args.threads)
        import faiss

        faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()
    world_n = int(math.ceil(args.n / 0.7 / 1000.0) * 1000)
    t = time.perf_counter()
    table, features = paper_world(n=world_n, d=args.d, seed=args.seed)
    world_seconds = time.perf_counter() - t
    n_train = int((table["split"] == "train").sum())

    cfg = RunConfig(
        data=DataConfig(synthetic="paper", synthetic_size=world_n),
        loop=LoopConfig(pool_size=min(args.n, n_train), initial=args.initial, batch_size=args.batch,
                        rounds=args.rounds + 1, seed=args.seed, save_pool_scores=False))
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        sub = getattr(cfg, section)
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(sub, **{name: _coerce(value)})})

    clocks = {"valid": 0.0, "pool_predict": 0.0, "cpu_train": 0.0, "cpu_valid": 0.0, "cpu_pool_predict": 0.0,
              "cpu_eval": 0.0}
    cpu_mark = [time.process_time()]
    in_eval = [False]
    orig_fit = model_mod.PreferenceEnsemble.fit

    def timed_fit(self, *a, **kw):
        c0 = time.process_time()
        try:
            return orig_fit(self, *a, **kw)
        finally:
            clocks["cpu_train"] += time.process_time() - c0

    orig_valid = model_mod.PreferenceEnsemble._valid_loss_K
    orig_predict, orig_evaluate = loop.predict, loop._evaluate

    def timed_valid(self, *a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return orig_valid(self, *a, **kw)
        finally:
            clocks["valid"] += time.perf_counter() - t0
            clocks["cpu_valid"] += time.process_time() - c0

    def timed_predict(*a, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return orig_predict(*a, **kw)
        finally:
            if not in_eval[0]:
                clocks["pool_predict"] += time.perf_counter() - t0
                clocks["cpu_pool_predict"] += time.process_time() - c0

    def timed_evaluate(*a, **kw):
        in_eval[0] = True
        c0 = time.process_time()
        try:
            return orig_evaluate(*a, **kw)
        finally:
            in_eval[0] = False
            clocks["cpu_eval"] += time.process_time() - c0

    per_round: list[dict] = []
    orig_commit = runs.RunWriter.commit_round

    def commit(self, t, row, *a, **kw):
        out = orig_commit(self, t, row, *a, **kw)
        train = float(row["train_seconds"])
        sel_total = float(row["select_seconds"])
        per_round.append({
            "round": int(t), "labelled": int(row["labelled"]), "epochs": int(row["epochs"]),
            "train": train, "valid": clocks["valid"], "train_without_valid": train - clocks["valid"],
            "pool_predict": clocks["pool_predict"], "eval": float(row["eval_seconds"]),
            "selection": sel_total - clocks["pool_predict"],
            "total": train + float(row["eval_seconds"]) + sel_total,
            "test_log_likelihood": float(row["test_log_likelihood"]),
            "valid_loss": float(row["valid_loss"]),
            "cpu": {"train": clocks["cpu_train"], "valid": clocks["cpu_valid"],
                    "pool_predict": clocks["cpu_pool_predict"], "eval": clocks["cpu_eval"],
                    "round": time.process_time() - cpu_mark[0]},
        })
        per_round[-1]["cpu"]["selection"] = per_round[-1]["cpu"]["round"] - sum(
            clocks[c] for c in ("cpu_train", "cpu_pool_predict", "cpu_eval"))
        cpu_mark[0] = time.process_time()
        for key in clocks:
            clocks[key] = 0.0
        if len(per_round) >= args.rounds:
            raise _Stop()
        return out

    model_mod.PreferenceEnsemble._valid_loss_K = timed_valid
    model_mod.PreferenceEnsemble.fit = timed_fit
    loop.predict, loop._evaluate = timed_predict, timed_evaluate
    runs.RunWriter.commit_round = commit
    picks_hash = ""
    with tempfile.TemporaryDirectory(prefix="balpm-loop-round-") as root:
        cpu_mark[0] = time.process_time()
        try:
            loop.run(cfg, root, table=table, features=features, progress=False, run_id="bench")
        except _Stop:
            pass
        acq = Path(root) / "bench" / "acquisitions.parquet"
        if acq.exists():
            import hashlib

            picks = pd.read_parquet(acq).sort_values(["round", "step"])["pool_index"].to_numpy(np.int64)
            picks_hash = hashlib.sha256(picks.tobytes()).hexdigest()[:16]
            if args.save_picks:
                np.save(args.save_picks, picks)
    out = {
        "n": args.n, "d": args.d, "world_comparisons": world_n, "rounds": per_round,
        "overrides": list(args.set), "world_seconds": world_seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "balpm": str(Path(balpm.__file__).resolve().parent), "picks_sha256_16": picks_hash,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for r in per_round:
            print(f"round {r['round']} ({r['labelled']} labelled): train {r['train']:.1f} s (valid {r['valid']:.1f}), "
                  f"pool predict {r['pool_predict']:.1f} s, eval {r['eval']:.1f} s, selection {r['selection']:.1f} s, "
                  f"total {r['total']:.1f} s")
        print(f"world {world_seconds:.1f} s; peak RSS {out['peak_rss_gib']:.2f} GiB; load {out['load_before']} -> "
              f"{out['load_after']}")
    return out


if __name__ == "__main__":
    main()
