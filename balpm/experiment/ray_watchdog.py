"""Tear down the local Ray that a balpm process started when that process dies (even by SIGKILL).

``ray.init()`` without an address starts a Ray node as children of the driver: gcs_server and raylet
share the driver's fate (Ray arms the parent-death signal for them), but the agents the raylet starts
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlived a SIGKILLed ``balpm sweep --backend ray``
for good (measured with Ray 2.60: still there after 60 s). :func:`start` launches this module as a
small watchdog process (``python balpm/experiment/ray_watchdog.py <driver pid>``, standard library only) before ``ray.init``:

- every half second it records the driver's descendants (pid and start time, from ``/proc``);
- when the driver is gone (its pipe to the watchdog reaches end-of-file, or the watchdog is
  re-parented), it sends SIGTERM to every recorded process still alive (same pid *and* start time, so
  a reused pid is never hit), SIGKILL to any left after 5 s, and exits;
- :meth:`Watchdog.stop` (after ``ray.shutdown()``) tells it to exit without touching anything.

It ignores SIGINT/SIGTERM/SIGHUP, so a Ctrl-C or ``kill`` of the whole process group still finds it
alive to clean up. Linux only (``/proc``); elsewhere :func:`start` returns None.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 5.0


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                out[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _kill_recorded(seen: dict[int, int]) -> None:
    """SIGTERM every recorded process that is still the same process, then SIGKILL what is left after GRACE_S."""
    def alive() -> list[int]:
        return [p for p, t in seen.items() if _start_time(p) == t]

    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        for p in alive():
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)


def watch(driver: int) -> int:
    """The watchdog's loop (see the module docstring). Returns the exit status."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    me = os.getpid()
    seen: dict[int, int] = {}
    stdin = sys.stdin.buffer
    while True:
        for p in descendants(driver):
            if p != me and p not in seen:
                t = _start_time(p)
                if t is not None:
                    seen[p] = t
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready:
            line = stdin.readline()
            if line.strip() == b"stop":
                return 0
            if not line:  # end-of-file: the driver is gone
                break
        if os.getppid() != driver:  # re-parented: the driver is gone
            break
    _kill_recorded(seen)
    return 0


class Watchdog:
    """Handle of a running watchdog process: :meth:`stop` ends it without touching Ray."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def stop(self) -> None:
        """Tell the watchdog the driver shut Ray down itself; wait for it to exit."""
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - it answers within POLL_S
            self.proc.kill()


def start() -> Watchdog | None:
    """Start a watchdog of this process (call before ``ray.init()`` starts a local Ray); None off Linux."""
    if not sys.platform.startswith("linux") or not Path("/proc/self/stat").exists():
        return None
    # run as a script: the standard library only (no balpm package import, no torch)
    proc = subprocess.Popen([sys.executable, "-s", str(Path(__file__).resolve()), str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    return Watchdog(proc)


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
