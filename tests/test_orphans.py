"""A killed sweep driver leaves no process behind, and the re-issued sweep finishes every run (issue 15).

Each test starts ``balpm sweep`` through the real entry point in its own session (process group),
SIGKILLs the driver while its runs are in flight, asserts that within 30 s no process of that group -
nor any process of the local Ray it started (found by the environment every Ray process inherits) - is
left, then re-issues the same sweep and asserts that it completes every run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

POLICIES = "random,balpm"
ROUNDS = 12  # a run lasts several seconds, so the driver is killed while runs are in flight


def _sweep_args(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "balpm", "sweep", "--policies", POLICIES, "--seeds", "0", "--rounds", str(ROUNDS),
            "--set", "model.ensemble_size=3", "--set", "model.max_epochs=3", "--runs-dir", str(root), "-q", *extra]


def _procs(pgid: int, marker: bytes | None = None) -> list[str]:
    """Command lines of live processes in process group ``pgid`` (or, with ``marker``, whose environment holds it)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":  # a zombie has exited (it only awaits its parent's wait)
                continue
            mine = os.getpgid(pid) == pgid
            if not mine and marker is not None:
                mine = marker in Path(f"/proc/{pid}/environ").read_bytes()
            if mine:
                out.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except (OSError, ValueError):
            continue
    return out


def _wait_for_runs_in_flight(proc: subprocess.Popen, root: Path, timeout: float = 240.0) -> None:
    """Until a run folder exists with its first round not yet committed by all runs (runs are in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.communicate()}"
        states = []
        for status in root.glob("*/status.json"):
            try:
                states.append(json.loads(status.read_text())["state"])
            except (OSError, ValueError, KeyError):
                continue
        if "running" in states:
            return
        time.sleep(0.2)
    pytest.fail("no run started within the timeout")


def _kill_driver_and_check(args: list[str], root: Path, env: dict[str, str], marker: bytes | None = None) -> None:
    proc = subprocess.Popen(args, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_runs_in_flight(proc, root)
        in_flight = _procs(proc.pid, marker)
        assert len(in_flight) >= 2, in_flight  # the driver and what it started
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        left = _procs(proc.pid, marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = _procs(proc.pid, marker)
        assert not left, f"processes left 30 s after the driver was killed: {left}"
    finally:
        for line in _procs(proc.pid, marker):  # never leave a stray process behind, even when failing
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
            except OSError:
                pass
    # the re-issued sweep resumes the killed runs (their locks died with their holders) and completes them
    again = subprocess.run(args, env=env, check=False, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"2/2 runs complete in {root}" in again.stdout
    from balpm.experiment import runs

    infos = runs.list_runs(root)
    assert [i.state for i in infos] == ["complete", "complete"]
    assert all(i.last_round == ROUNDS - 1 for i in infos)


@pytest.mark.slow
def test_killed_local_sweep_driver_leaves_no_worker_and_the_sweep_resumes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = tmp_path / "runs"
    _kill_driver_and_check(_sweep_args(root, "--workers", "2"), root, env)


@pytest.mark.slow
def test_killed_ray_sweep_driver_leaves_no_ray_process_and_the_sweep_resumes(tmp_path):
    pytest.importorskip("ray")
    ray_tmp = tempfile.mkdtemp(prefix="balpm-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_TMPDIR": ray_tmp}
        root = tmp_path / "runs"
        _kill_driver_and_check(_sweep_args(root, "--backend", "ray"), root, env,
                               marker=f"RAY_TMPDIR={ray_tmp}".encode())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
