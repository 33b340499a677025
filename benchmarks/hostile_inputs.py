"""Hostile inputs of issue 15 (part B) through the real entry points: exit code, first stderr line, wall
seconds and the peak RSS of the command, as one JSON object.

    python benchmarks/hostile_inputs.py            # YAML bombs, a lying .npy header (about a minute)
    python benchmarks/hostile_inputs.py --kill     # also: SIGKILL a --workers 2 sweep's driver and a Ray
                                                   # sweep's, seconds until none of their processes is left

Cases: ``balpm run -c <billion laughs> --print-config`` (a 1.9 KB file of nine levels of nine aliases),
the same with a 20,000-deep flow sequence, ``balpm runs`` on a folder whose run has that config.yaml,
and ``python -m balpm.experiment.projection`` (what the dashboard starts) on a snapshot whose
``prompt_features.npy`` header claims 500,000 x 1,024 (a sparse file of the right size). The peak RSS
is that of the command alone (``getrusage(RUSAGE_CHILDREN)`` in a fresh parent per case).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
         "sys.stderr.write('PEAK_MB=%d' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)); "
         "sys.exit(code)")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def measure(name: str, *args: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, *args], check=False, capture_output=True, text=True, env=ENV)
    stderr, _, peak = proc.stderr.rpartition("PEAK_MB=")
    return {"case": name, "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": int(peak),
            "stderr_lines": len(stderr.splitlines()), "stderr": (stderr.splitlines() or [""])[-1][:200],
            "stdout": " | ".join(proc.stdout.strip().splitlines())[:300]}


def _group_left(pgid: int, marker: bytes | None) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                if stat[stat.rindex(")") + 2] == "Z":
                    continue
                if os.getpgid(int(entry.name)) == pgid or (marker and marker in Path(f"/proc/{entry.name}/environ").read_bytes()):
                    n += 1
            except (OSError, ValueError):
                pass
    return n


def kill_sweep(tmp: Path, backend: str) -> dict:
    root = tmp / f"kill-{backend}"
    ray_tmp = tempfile.mkdtemp(prefix="balpm-ray-", dir="/tmp")
    env = {**ENV, "RAY_TMPDIR": ray_tmp}
    marker = f"RAY_TMPDIR={ray_tmp}".encode() if backend == "ray" else None
    extra = ["--backend", "ray"] if backend == "ray" else ["--workers", "2"]
    args = [sys.executable, "-m", "balpm", "sweep", "--policies", "random,balpm", "--seeds", "0", "--rounds", "12",
            "--runs-dir", str(root), "-q", *extra]
    proc = subprocess.Popen(args, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not any('"running"' in p.read_text() for p in root.glob("*/status.json")):
        time.sleep(0.2)
    before = _group_left(proc.pid, marker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.perf_counter()
    while _group_left(proc.pid, marker) and time.perf_counter() - t0 < 120:
        time.sleep(0.25)
    left = _group_left(proc.pid, marker)
    seconds = round(time.perf_counter() - t0, 2)
    again = subprocess.run(args, env=env, check=False, capture_output=True, text=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return {"case": f"SIGKILL the driver of a {backend} sweep", "processes_before": before, "left_after": left,
            "seconds_until_none_left": seconds, "reissued_exit": again.returncode, "reissued": again.stdout.strip()[-80:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill", action="store_true", help="also kill sweep drivers (local and Ray)")
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "laughs.yaml").write_text(laughs())
        (tmp / "deep.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
        out.append({**measure("run -c laughs.yaml --print-config", "-m", "balpm", "run", "-c", str(tmp / "laughs.yaml"),
                              "--print-config"), "file_bytes": (tmp / "laughs.yaml").stat().st_size})
        out.append(measure("run -c deep.yaml (20,000 deep)", "-m", "balpm", "run", "-c", str(tmp / "deep.yaml")))
        root = tmp / "runs"
        subprocess.run([sys.executable, "-m", "balpm", "run", "--rounds", "2", "--runs-dir", str(root), "--run-id", "r0",
                        "--quiet"], check=True, env=ENV, capture_output=True)
        shutil.copytree(root / "r0", root / "bomb")
        (root / "bomb" / "config.yaml").write_text(laughs())
        out.append(measure("runs --runs-dir (a run whose config.yaml is the bomb)", "-m", "balpm", "runs", "--runs-dir",
                           str(root)))
        (snap,) = [p for p in (root / "_datasets").iterdir() if p.is_dir()]
        with open(snap / "prompt_features.npy", "wb") as fh:  # header claims 500,000 x 1,024; sparse file
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (500_000, 1024)})
            fh.truncate(fh.tell() + 500_000 * 1024 * 4)
        shutil.rmtree(root / "bomb")
        out.append(measure("python -m balpm.experiment.projection (header claims 500,000 x 1,024)", "-m", "balpm.experiment.projection",
                           str(root)))
        if args.kill:
            out.append(kill_sweep(tmp, "local"))
            out.append(kill_sweep(tmp, "ray"))
    print(json.dumps({"python": sys.version.split()[0], "load_average": os.getloadavg(), "cases": out}, indent=1))


if __name__ == "__main__":
    main()
