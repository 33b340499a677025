"""One writer per run: an OS-level lock on ``root/.locks/<run_id>.lock``."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from balpm.errors import RunLockedError
from balpm.experiment.runs.folder import LOCKS_DIR, check_run_id


# ---- one writer per run: an OS-level lock ------------------------------------------------------
class RunLock:
    """An exclusive OS-level lock (``flock``; the ``filelock`` package where there is no ``fcntl``) on one run.

    The lock file is ``root/.locks/<run_id>.lock`` (it exists before the run folder does, so two
    processes creating the same run id exclude each other). ``acquire`` never waits: a second writer
    gets a one-line :class:`~balpm.errors.RunLockedError` naming the holder. The OS drops the lock when
    the holding process dies, so a killed run can be resumed at once.
    """

    def __init__(self, root: str | Path, run_id: str) -> None:
        self.root = Path(root)
        self.run_id = check_run_id(run_id)
        self.path = self.root / LOCKS_DIR / f"{run_id}.lock"
        self._fd: int | None = None
        self._filelock: Any = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None or self._filelock is not None

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunLockedError` at once."""
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            import filelock

            lock = filelock.FileLock(str(self.path), timeout=0)
            try:
                lock.acquire()
            except filelock.Timeout:
                raise self._locked(None) from None
            self._filelock = lock
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            raise self._locked(holder or None) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        return self

    def _locked(self, holder: str | None) -> RunLockedError:
        who = f" ({holder})" if holder else ""
        return RunLockedError(f"run {self.run_id!r} in {str(self.root)!r} is being written by another balpm process{who}; "
                              "wait for it to finish, or pick another --run-id")

    def release(self) -> None:
        """Release the lock (the lock file stays; it is reused)."""
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._filelock is not None:  # pragma: no cover - Windows
            self._filelock.release()
            self._filelock = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_run(root: str | Path, run_id: str) -> RunLock:
    """``with lock_run(root, run_id): ...``: hold the run's exclusive lock (see :class:`RunLock`)."""
    return RunLock(root, run_id)
