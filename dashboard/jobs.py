"""Engine runs started from the dashboard: ``balpm run`` / ``balpm sweep`` as background processes.

The dashboard never trains or selects inline: it writes the resolved config to
``<runs root>/_jobs/<job_id>/config.yaml`` and starts the same CLI a user would type, with its output
in ``log.txt`` beside it. Progress is read from the run folders themselves (status.json), so it is
right even for runs started elsewhere. No Streamlit here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balpm import runs
from balpm.config import RunConfig

JOBS_DIR = "_jobs"


@dataclass
class Job:
    """One background engine process and the run ids it will write."""

    job_id: str
    kind: str
    title: str
    root: Path
    run_ids: list[str]
    cmd: list[str]
    log: Path
    expected_rounds: int = 0
    started: float = field(default_factory=time.time)
    proc: subprocess.Popen | None = None

    @property
    def returncode(self) -> int | None:
        """The process's exit code (None while it runs)."""
        return None if self.proc is None else self.proc.poll()

    @property
    def finished(self) -> bool:
        """True once the process has exited."""
        return self.proc is None or self.proc.poll() is not None


def _config_file(root: Path, job_id: str, cfg: RunConfig) -> Path:
    folder = root / JOBS_DIR / job_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    runs.atomic_write_text(path, cfg.to_yaml())
    return path


def launch_dir() -> str:
    """Where background runs start: the folder ``balpm dashboard`` was started in (``BALPM_LAUNCH_DIR``),
    so a config's relative paths (data files, the feature cache) mean what they meant to the run it
    came from, and a toggle on real data hits the feature cache instead of featurizing again."""
    return os.environ.get("BALPM_LAUNCH_DIR") or os.getcwd()


def _launch(job: Job) -> Job:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "wb") as fh:
        job.proc = subprocess.Popen(job.cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=launch_dir(), start_new_session=True)
    return job


def start_run(root: str | Path, cfg: RunConfig, *, kind: str = "run", title: str | None = None,
              launch: bool = True) -> Job:
    """Start ``balpm run --config <cfg> --runs-dir <root> --resume`` in the background.

    ``--resume`` makes a re-start of a killed run continue it, and a complete run is simply reused.
    """
    root = Path(root).resolve()
    cfg = cfg.validate()
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    conf = _config_file(root, job_id, cfg)
    run_id = runs.default_run_id(cfg)
    cmd = [sys.executable, "-m", "balpm", "run", "--config", str(conf), "--runs-dir", str(root), "--resume", "--quiet"]
    job = Job(job_id, kind, title or run_id, root, [run_id], cmd, conf.parent / "log.txt",
              expected_rounds=cfg.loop.rounds)
    return _launch(job) if launch else job


def start_sweep(root: str | Path, base: RunConfig, policies: Sequence[str], seeds: Sequence[int], *,
                workers: int = 1, title: str | None = None, launch: bool = True) -> Job:
    """Start ``balpm sweep`` (policies x seeds of ``base``) in the background."""
    from balpm import sweep

    root = Path(root).resolve()
    configs = sweep.expand(base.validate(), list(policies), [int(s) for s in seeds])
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    conf = _config_file(root, job_id, base)
    cmd = [sys.executable, "-m", "balpm", "sweep", "--config", str(conf), "--runs-dir", str(root),
           "--policies", ",".join(policies), "--seeds", ",".join(str(int(s)) for s in seeds),
           "--workers", str(max(1, int(workers))), "--quiet"]
    title = title or f"sweep {','.join(policies)} x seeds {','.join(str(s) for s in seeds)}"
    job = Job(job_id, "sweep", title, root, [runs.default_run_id(c) for c in configs], cmd, conf.parent / "log.txt",
              expected_rounds=sum(c.loop.rounds for c in configs))
    return _launch(job) if launch else job


def progress(job: Job) -> dict[str, Any]:
    """Rounds done / total over the job's runs (read from their status.json), states and exit code."""
    done = 0
    states: dict[str, str] = {}
    for run_id in job.run_ids:
        path = job.root / run_id
        if not path.is_dir():
            states[run_id] = "pending"
            continue
        info = runs.inspect_run(path)
        done += max(int(info.last_round) + 1, 0)
        states[run_id] = info.state
    code = job.returncode
    total = max(job.expected_rounds, done, 1)
    frac = done / total
    if job.finished and code == 0:
        frac = 1.0
    return {"done_rounds": done, "total_rounds": total, "fraction": min(max(frac, 0.0), 1.0),
            "states": states, "returncode": code, "finished": job.finished}


def log_tail(job: Job, lines: int = 12) -> str:
    """The last lines of the job's output (progress bars' carriage returns folded)."""
    try:
        text = job.log.read_text(errors="replace")
    except OSError:
        return ""
    text = "\n".join(part.split("\r")[-1] for part in text.splitlines())
    return "\n".join(text.splitlines()[-lines:])


def wait(job: Job, timeout: float = 600.0) -> int:
    """Block until the job's process exits (tests, scripts); returns its exit code."""
    if job.proc is None:
        return 0
    return job.proc.wait(timeout=timeout)
