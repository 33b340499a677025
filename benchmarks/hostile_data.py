"""Hostile DATA inputs of issue 15 (part A) through the real CLI: exit code, last stderr line, wall seconds
and peak RSS of each command, as one JSON object. (Part B's YAML / .npy / orphan cases are in
benchmarks/hostile_inputs.py.)

    python benchmarks/hostile_data.py                    # this checkout (a few minutes)
    python benchmarks/hostile_data.py --src OLD_CHECKOUT  # the same files through another checkout's balpm
                                                          # (e.g. `git archive e1040f9 balpm | tar -x -C OLD`)
    python benchmarks/hostile_data.py --only nul,sparse   # some cases

Each case builds its file(s) in a temporary folder, runs ``python -m balpm ...`` as a child and polls its
RSS: a child over ``--rss-cap`` (default 3 GiB) or ``--seconds`` (default 180) is killed and reported so
(``killed``), which is how the old code's blow-ups are measured without taking the machine down. The peak
RSS is the child's own ``ru_maxrss`` (``os.wait4``). Cases:

* ``nul``: a ~1 MB ``.json.gz`` that un-gzips to 1 GiB of NUL bytes, no newline (``data inspect``)
* ``after``: 5 valid rows, then 1 GiB of NUL (``.json.gz``, ``data inspect``)
* ``field``: a ``.csv.gz`` whose second line is one 1 GiB field (``data inspect``)
* ``sparse``: a 4 GiB sparse file of NULs named ``.json`` (``data inspect``)
* ``blank``: a ``.json.gz`` of 4 GiB of blank lines (``data inspect``: format detection)
* ``row50mb``: 40 real TL;DR rows and one with a 50 MB post (``featurize``, MiniLM, max_length 256)
* ``tiny1e6``: 10^6 tiny table rows, 250,000 prompts (``data inspect``)
* ``onerow``: ``balpm run`` on one real row (time to the error; whether a feature cache or run folder was written)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("BALPM_SHARED_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "summarize_from_feedback" / "comparisons"


def _members(block: bytes, times: int) -> bytes:
    return gzip.compress(block, compresslevel=9, mtime=0) * times


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(args: list[str], cwd: Path, src: Path | None, rss_cap: int, seconds: float) -> dict:
    """Run ``python -m balpm *args`` in ``cwd``; kill it past ``rss_cap`` bytes or ``seconds``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src or REPO)}
    for var in [v for v in env if v.startswith(("BALPM_MAX", "BALPM_DETECT"))]:
        env.pop(var)  # default caps
    t0 = time.perf_counter()
    killed = ""
    with open(cwd / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "balpm", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if _rss_kb(proc.pid) * 1024 > rss_cap:
                killed = f"RSS over {rss_cap >> 20} MiB"
            elif time.perf_counter() - t0 > seconds:
                killed = f"still running after {seconds:.0f} s"
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = (cwd / "stderr.txt").read_text(errors="replace").strip().splitlines()
    return {"exit": proc.returncode, "killed": killed, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "stderr_lines": len(lines),
            "stderr": (lines[-1] if lines else "")[:240]}


def build(case: str, tmp: Path) -> list[str]:
    """Write the input of ``case`` in ``tmp``; return the balpm arguments."""
    rows = (_data_dir() / "batch13.json").read_bytes().split(b"\n")
    nul = b"\x00" * (16 * MiB)
    if case == "nul":
        (tmp / "nul.json.gz").write_bytes(_members(nul, 64))
        return ["data", "inspect", "nul.json.gz"]
    if case == "after":
        (tmp / "after.json.gz").write_bytes(gzip.compress(b"\n".join(rows[:5]) + b"\n") + _members(nul, 64))
        return ["data", "inspect", "after.json.gz"]
    if case == "field":
        (tmp / "field.csv.gz").write_bytes(gzip.compress(b'prompt,chosen,rejected\n"x') + _members(b"a" * (16 * MiB), 64))
        return ["data", "inspect", "field.csv.gz"]
    if case == "sparse":
        with open(tmp / "sparse.json", "wb") as fh:
            fh.truncate(4 << 30)
        return ["data", "inspect", "sparse.json"]
    if case == "blank":
        (tmp / "blank.json.gz").write_bytes(_members(b"\n" * (16 * MiB), 256))
        return ["data", "inspect", "blank.json.gz"]
    if case == "row50mb":
        big = json.loads(rows[0])
        big["info"]["post"] = "word " * (10 * MiB)
        (tmp / "big.json").write_bytes(b"\n".join(rows[1:41]) + b"\n" + json.dumps(big).encode() + b"\n")
        return ["featurize", "big.json", "--cache-dir", "cache", "--no-progress"]
    if case == "tiny1e6":
        with open(tmp / "tiny.jsonl", "w") as fh:
            fh.writelines(json.dumps({"prompt": f"post {i // 4}", "chosen": f"a{i}", "rejected": f"b{i}"}) + "\n" for i in range(10**6))
        return ["data", "inspect", "tiny.jsonl"]
    if case == "onerow":
        (tmp / "one.json").write_bytes(rows[0] + b"\n")
        return ["run", "--data", "one.json", "--runs-dir", "runs", "-q", "--set", "features.cache_dir=cache"]
    raise SystemExit(f"unknown case {case!r}")


CASES = ("nul", "after", "field", "sparse", "blank", "row50mb", "tiny1e6", "onerow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=None, help="checkout whose balpm to run (default: this one)")
    parser.add_argument("--only", default="", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--rss-cap", type=float, default=3.0, help="GiB: a child over it is killed")
    parser.add_argument("--seconds", type=float, default=180.0, help="a child running longer is killed")
    args = parser.parse_args()
    cases = [c for c in (args.only.split(",") if args.only else CASES) if c]
    out = {"src": str(args.src or REPO), "load_average": os.getloadavg()[0], "cases": {}}
    for case in cases:
        with tempfile.TemporaryDirectory(prefix=f"balpm-hostile-{case}-") as name:
            tmp = Path(name)
            cli = build(case, tmp)
            result = measure(cli, tmp, args.src, int(args.rss_cap * (1 << 30)), args.seconds)
            result["command"] = "balpm " + " ".join(cli)
            result["wrote"] = sorted(p for p in ("cache", "runs") if (tmp / p).exists() and any((tmp / p).iterdir()))
            out["cases"][case] = result
        print(json.dumps({case: result}), file=sys.stderr, flush=True)
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
