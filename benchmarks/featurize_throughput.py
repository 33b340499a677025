"""Featurization throughput (texts/s) on the real TL;DR prompts, fp32 vs bf16 autocast.

Usage::

    .venv/bin/python benchmarks/featurize_throughput.py [DATA_DIR] [--n 300] [--max-length 256]
        [--batch-size 32] [--model minilm] [--dtypes fp32,bf16] [--threads N]

DATA_DIR defaults to ``$BALPM_SHARED_DATA`` (or ``../shared/data`` beside the checkout); the posts are
read from ``summarize_from_feedback/comparisons/batch13.json`` and ``batch18.json`` (unique posts, file
order). Each dtype gets one untimed warm-up batch, then the timed pass over all texts (no cache).

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
    """Parse arguments, featurize the posts with each dtype, print texts/s."""
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
    print(f"{len(texts)} TL;DR prompts, model {args.model}, max_length {args.max_length}, batch {args.batch_size}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, native bf16 {cpu_has_native_bf16()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for dtype in args.dtypes.split(","):
        enc = load_encoder(args.model, device="cpu", dtype=dtype)
        ids = enc.tokenize(texts, args.max_length).ids
        enc.encode_ids(ids[: args.batch_size], batch_size=args.batch_size, progress=False)  # warm-up
        start = time.perf_counter()
        feats = enc.encode_ids(ids, batch_size=args.batch_size, progress=False)
        seconds = time.perf_counter() - start
        mean_tokens = sum(len(x) for x in ids) / len(ids)
        print(f"{dtype}: {len(texts) / seconds:.1f} texts/s ({len(texts)} texts, {seconds:.1f} s, "
              f"mean {mean_tokens:.0f} tokens, D={feats.shape[1]})")


if __name__ == "__main__":
    main()
