"""Featurization throughput (texts/s) on the real TL;DR prompts, fp32 vs bf16 autocast.

Usage::

    .venv/bin/python benchmarks/featurize_throughput.py [DATA_DIR] [--n 300] [--max-length 256]
        [--batch-size 32] [--model minilm] [--dtypes fp32,bf16] [--threads N]

DATA_DIR defaults to ``$BALPM_SHARED_DATA`` (or ``../shared/data`` beside the checkout); the posts are
read from ``summarize_from_feedback/comparisons/batch13.json`` and ``batch18.json`` (unique posts, file
order). Each dtype gets one untimed warm-up batch, then the timed pass over all texts (no cache). Prints one
JSON object: texts/s per dtype, with the 1-minute load average while it ran (the machine may be shared),
and for every dtype after the first its largest difference from the first one's features.

On a shared machine, OpenMP's busy-waiting threads collapse under contention: run with
``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``) when other processes compete for the cores. bf16 is
only faster than fp32 on CPUs with native bf16 (AVX512-BF16 / AMX); the header line says which.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from balpm.features import load_encoder
from balpm.features.encoder import cpu_has_native_bf16
from balpm.features.templates import template_for

REPO = Path(__file__).resolve().parents[1]


def tldr_posts(data_dir: Path, n: int) -> list[str]:
    """The first ``n`` unique TL;DR posts of batch13.json then batch18.json."""
    folder = data_dir / "summarize_from_feedback" / "comparisons"
    posts: dict[str, None] = {}
    for name in ("batch13.json", "batch18.json"):
        with open(folder / name, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    posts.setdefault(json.loads(line)["info"]["post"], None)
                if len(posts) >= n:
                    return list(posts)
    return list(posts)


def main() -> None:
    """Parse arguments, featurize the posts with each dtype, print texts/s as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", default=os.environ.get("BALPM_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    posts = tldr_posts(Path(args.data_dir), args.n)
    texts = [template_for("tldr").prompt_text(p) for p in posts]
    out = {
        "benchmark": "featurize_throughput", "texts": len(texts), "model": args.model, "max_length": args.max_length,
        "batch_size": args.batch_size, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "native_bf16": cpu_has_native_bf16(), "load_average_1min_before": round(os.getloadavg()[0], 2), "results": {},
    }
    reference = None
    for dtype in args.dtypes.split(","):
        enc = load_encoder(args.model, device="cpu", dtype=dtype)
        ids = enc.tokenize(texts, args.max_length).ids
        enc.encode_ids(ids[: args.batch_size], batch_size=args.batch_size, progress=False)  # warm-up
        load_before = os.getloadavg()[0]
        start, cpu_start = time.perf_counter(), time.process_time()
        feats = enc.encode_ids(ids, batch_size=args.batch_size, progress=False)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        # CPU time barely depends on other processes: texts per CPU-second x threads is what a quiet machine
        # would reach if the threads scaled perfectly (an upper bound; compare with a quiet run)
        result = {"texts_per_second": round(len(texts) / seconds, 2), "seconds": round(seconds, 2),
                  "cpu_seconds": round(cpu_seconds, 2), "texts_per_cpu_second": round(len(texts) / cpu_seconds, 2),
                  "quiet_texts_per_second_upper_bound": round(len(texts) / cpu_seconds * torch.get_num_threads(), 2),
                  "mean_tokens": round(sum(len(x) for x in ids) / len(ids), 1), "dim": int(feats.shape[1]),
                  "load_average_1min": round((load_before + os.getloadavg()[0]) / 2, 2)}
        if reference is None:
            reference = feats
        else:  # how far this dtype's features are from the first one's (cosine of unit vectors)
            cos = (feats * reference).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(reference, axis=1))
            result["max_abs_diff_vs_first"] = float(np.abs(feats - reference).max())
            result["min_cosine_vs_first"] = float(cos.min())
        out["results"][dtype] = result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
