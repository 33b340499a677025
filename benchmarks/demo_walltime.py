"""Wall time of ``balpm demo --no-dashboard`` (fresh runs folder; the feature cache may be warm).

    .venv/bin/python benchmarks/demo_walltime.py [--world teaching|real|both] [--seeds N] [--scale small] [--data PATH]
        [--cold-cache]

Prints the demo's own output on stderr, then one JSON object on stdout: ``seconds`` (whole command, process start
included), ``featurize_seconds`` (as the demo reports it) and the load averages before and after (the machine may
be shared: compare runs only at similar load).
``--cold-cache`` points the feature cache at an empty folder so featurization is timed too.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the demo once in a subprocess and print its wall time in seconds."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="default: the demo's (8 teaching, 6 real)")
    ap.add_argument("--world", default="both", choices=("teaching", "real", "both"))
    ap.add_argument("--scale", default="small")
    ap.add_argument("--data", action="append", default=[])
    ap.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--cold-cache", action="store_true", help="featurize from scratch (empty cache folder)")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="balpm-demo-bench-") as tmp:
        cmd = [sys.executable, "-m", "balpm", "demo", "--no-dashboard", "--runs-dir", str(Path(tmp) / "runs"),
               "--world", args.world, "--scale", args.scale, "--workers", str(args.workers)]
        if args.seeds is not None:
            cmd += ["--seeds", str(args.seeds)]
        for d in args.data:
            cmd += ["--data", d]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        cwd = repo
        if args.cold_cache:
            cwd = Path(tmp)  # the cache folder (.balpm_cache) is relative to the working folder
            env.setdefault("BALPM_SHARED_DATA", str(repo.parent / "shared" / "data"))
        load_before = os.getloadavg()
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - t0
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_after = os.getloadavg()
        cpu_seconds = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    sys.stderr.write(proc.stdout)
    phases = {}
    for line in proc.stdout.splitlines():  # "featurize pairs: about ..." and the manifest's texts/s are in the log
        if line.startswith("demo finished in "):
            phases["demo_reported_seconds"] = float(line.split()[3])
        if line.startswith("features: "):
            phases["featurize_seconds"] = float(line.split(" in ")[-1].split()[0])
        for world in ("teaching world", "real sample"):
            if line.startswith(f"{world}: ") and " runs complete in " in line:
                phases[f"{world.split()[0]}_runs_seconds"] = float(line.split(" runs complete in ")[1].split()[0])
    # CPU seconds of the demo and its workers hardly depend on other processes; on a quiet machine the wall
    # time lies between cpu_seconds / cores (everything parallel) and cpu_seconds (everything serial)
    print(json.dumps({"benchmark": "demo_walltime", "seconds": round(seconds, 1), **phases,
                      "cpu_seconds": round(cpu_seconds, 1),
                      "quiet_seconds_bounds": [round(cpu_seconds / (os.cpu_count() or 1), 1), round(cpu_seconds, 1)],
                      "seeds": args.seeds, "world": args.world,
                      "scale": args.scale, "workers": args.workers, "cores": os.cpu_count(),
                      "cold_cache": args.cold_cache, "exit": proc.returncode,
                      "load_average_1_5_15_before": [round(x, 2) for x in load_before],
                      "load_average_1_5_15_after": [round(x, 2) for x in load_after]}))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
