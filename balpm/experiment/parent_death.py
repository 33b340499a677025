"""Child processes that exit when the process that started them dies (killed, even with SIGKILL).

A sweep's worker processes (``multiprocessing`` spawn workers, ~380 MB each) wait on a queue whose
write end they hold themselves, so a killed driver left them (and the ``multiprocessing`` resource
tracker, which waits for every holder of its pipe) running for hours. :func:`die_with_parent`, called
first thing in a worker, ties the worker's life to its parent's:

- on Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes)
  kills the worker the moment its parent exits;
- everywhere, a daemon thread polls ``os.getppid()`` once a second: a worker whose parent is gone is
  re-parented (to init or a subreaper), and then kills itself. This also covers the race of a parent
  dying before ``prctl`` ran, and systems without ``prctl``.

A worker dies mid-round at worst: run folders are written atomically per round and the run lock is an
OS lock that dies with its holder, so re-issuing the sweep resumes every run from its last round.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``sig`` to this process when its parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _watch(parent_pid: int, poll: float) -> None:
    while True:
        time.sleep(poll)
        if os.getppid() != parent_pid:
            _kill_self()


def die_with_parent(parent_pid: int | None = None, poll: float = 1.0) -> None:
    """Make this process die when ``parent_pid`` (default: the current parent) exits: the parent-death
    signal plus a polling thread (see the module docstring). Exits at once if the parent is already gone."""
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        _kill_self()
    threading.Thread(target=_watch, args=(parent_pid, poll), name="balpm-parent-watch", daemon=True).start()
