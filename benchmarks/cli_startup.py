"""Start-up time of the ``balpm`` command: wall seconds of ``balpm --help`` (median of --repeat runs) and
the heavy packages ``import balpm.cli`` imports. Prints JSON.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 5] [--balpm .venv/bin/balpm]

Point ``--balpm`` at another checkout's executable to compare (each run is a fresh process, so the
machine's load shows in the spread: read ``min`` and ``max`` beside the median).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("numpy", "pandas", "scipy", "faiss", "pyarrow", "plotly", "sklearn", "torch", "transformers",
         "streamlit", "ray", "umap")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--balpm", default=str(Path(sys.executable).with_name("balpm")),
                    help="the balpm executable (default: beside this Python)")
    args = ap.parse_args()
    exe = Path(args.balpm)
    python = exe.with_name("python")
    subprocess.run([str(exe), "--help"], capture_output=True, check=True)  # warm the file cache once
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    # -I: not the current folder's balpm but the one installed beside --balpm
    code = f"import sys, balpm.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    heavy = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    print(json.dumps({
        "command": f"{exe} --help", "repeat": args.repeat,
        "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "max_s": round(max(times), 3),
        "heavy_imported": heavy.split(",") if heavy else [], "load_average_1min": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
