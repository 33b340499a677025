"""Wall time of ``balpm demo --no-dashboard`` (fresh runs folder; the feature cache may be warm).

    .venv/bin/python benchmarks/demo_walltime.py [--seeds 3] [--scale small] [--data PATH] [--cold-cache]

Prints the demo's own output, then ``demo_walltime_seconds <s>`` (whole command, process start included).
``--cold-cache`` points the feature cache at an empty folder so featurization is timed too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the demo once in a subprocess and print its wall time in seconds."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--data", action="append", default=[])
    ap.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--cold-cache", action="store_true", help="featurize from scratch (empty cache folder)")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="balpm-demo-bench-") as tmp:
        cmd = [sys.executable, "-m", "balpm", "demo", "--no-dashboard", "--runs-dir", str(Path(tmp) / "runs"),
               "--seeds", str(args.seeds), "--scale", args.scale, "--workers", str(args.workers)]
        for d in args.data:
            cmd += ["--data", d]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        cwd = repo
        if args.cold_cache:
            cwd = Path(tmp)  # the cache folder (.balpm_cache) is relative to the working folder
            env.setdefault("BALPM_SHARED_DATA", str(repo.parent / "shared" / "data"))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env)
        seconds = time.perf_counter() - t0
    print(f"demo_walltime_seconds {seconds:.1f}  (seeds={args.seeds}, scale={args.scale}, cores={os.cpu_count()}, "
          f"cold_cache={args.cold_cache}, exit={proc.returncode})")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
