"""Engine runs started from the dashboard, as background processes.

The dashboard never trains or selects inline: it writes the resolved config to
``<runs root>/_jobs/<job_id>/config.yaml`` and starts an engine process with its output in ``log.txt``
beside it. A config whose data and feature settings match a run already in the folder runs from that
XX and the pair and prompt features under
``_datasets/``, memory-mapped), so a toggle never re-featurizes and never depends on the folder the
dashboard was started in. Other configs (the teaching world, a YAML from the runs folder) run through
``balpm run`` / ``balpm sweep`` in the runs folder (or, with ``--allow-outside-data``, in the folder the
dashboard was started in). Progress is read from the run folders themselves (status.json); a job whose
process exits non-zero, or whose runs failed, is reported as failed. No Streamlit here.
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

from balpm.config import RunConfig
from balpm.errors import BalpmError
from balpm.experiment import runs, snapshot, sweep

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
    cwd: Path | None = None
    inputs: str = "cli"

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
    """The folder ``balpm dashboard`` was started in (``BALPM_LAUNCH_DIR``): where a config typed into the
    app resolves its relative paths when the server was started with ``--allow-outside-data``."""
    return os.environ.get("BALPM_LAUNCH_DIR") or os.getcwd()


def snapshot_inputs(root: str | Path, cfg: RunConfig) -> tuple[str, str] | None:
    """``(data_hash, feature_hash)`` of a run under ``root`` with the same data and feature settings as
    ``cfg`` whose snapshot holds its pair features, or None. Symlinked run folders are never used."""
    want = cfg.to_dict()
    root = Path(root).resolve()
    for info in runs.list_runs(root):
        if info.state == "broken" or not snapshot.has_features(root, info.data_hash, info.feature_hash):
            continue
        try:
            if (root / info.run_id).is_symlink() or runs.safe_path(root, f"{info.run_id}/config.yaml").parent.parent != root:
                continue
            have = runs.open_run(root, info.run_id).config.to_dict()
        except (BalpmError, OSError):
            continue
        if have["data"] == want["data"] and have["features"] == want["features"] and (
                not _drawn_per_seed(cfg) or have["loop"]["seed"] == want["loop"]["seed"]):
            return str(info.data_hash), str(info.feature_hash)
    return None


def _drawn_per_seed(cfg: RunConfig) -> bool:
    """A synthetic world (no data files) is drawn from the run's seed: each seed has its own table, so another
    seed's snapshot is not this run's data."""
    return not cfg.data.paths and not cfg.data.ood_paths


def outside_paths(root: str | Path, cfg: RunConfig, base: str | Path | None = None) -> list[str]:
    """The data files and feature cache of ``cfg`` that resolve outside ``root`` (relative paths taken
    from ``base``, default ``root``); empty when the config reads only inside the runs folder."""
    root = Path(root).resolve()
    base = Path(base).resolve() if base is not None else root
    paths = [*cfg.data.paths, *cfg.data.ood_paths]
    if paths:  # synthetic worlds read no files and featurize nothing
        paths.append(cfg.features.cache_dir)
    out = []
    for p in paths:
        q = Path(p).expanduser()
        q = (q if q.is_absolute() else base / q).resolve()
        if q != root and root not in q.parents:
            out.append(str(p))
    return out


def _launch(job: Job, cwd: str | Path) -> Job:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "wb") as fh:
        job.proc = subprocess.Popen(job.cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=str(cwd), start_new_session=True)
    return job


def _engine(root: Path, cfg: RunConfig, conf: Path, cwd: str | Path | None) -> tuple[list[str], Path, str]:
    """(command head, working folder, how) of a job: the snapshot runner when ``cfg``'s inputs are in
    the runs folder, else the balpm CLI in ``cwd`` (default: the runs folder)."""
    found = snapshot_inputs(root, cfg)
    if found is not None:
        head = [sys.executable, "-m", "balpm", "job", "--config", str(conf), "--runs-dir", str(root),
                "--data-hash", found[0], "--feature-hash", found[1]]
        return head, root, f"snapshot {found[0]}"
    return [], Path(cwd) if cwd is not None else root, "cli"


def start_run(root: str | Path, cfg: RunConfig, *, kind: str = "run", title: str | None = None,
              launch: bool = True, cwd: str | Path | None = None) -> Job:
    """Run ``cfg`` in the background: from a matching run's snapshot (no featurizing), else
    ``balpm run --config <cfg> --runs-dir <root> --resume`` in ``cwd`` (default: the runs folder).

    Resuming makes a re-start of a killed run continue it, and a complete run is simply reused.
    """
    root = Path(root).resolve()
    cfg = cfg.validate()
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    conf = _config_file(root, job_id, cfg)
    run_id = runs.default_run_id(cfg)
    head, where, how = _engine(root, cfg, conf, cwd)
    cmd = head or [sys.executable, "-m", "balpm", "run", "--config", str(conf), "--runs-dir", str(root), "--resume",
                   "--quiet"]
    job = Job(job_id, kind, title or run_id, root, [run_id], cmd, conf.parent / "log.txt",
              expected_rounds=cfg.loop.rounds, cwd=where, inputs=how)
    return _launch(job, where) if launch else job


def start_sweep(root: str | Path, base: RunConfig, policies: Sequence[str], seeds: Sequence[int], *,
                workers: int = 1, title: str | None = None, launch: bool = True, cwd: str | Path | None = None) -> Job:
    """Run policies x seeds of ``base`` in the background (from a snapshot as :func:`start_run`, else
    ``balpm sweep``)."""
    root = Path(root).resolve()
    configs = sweep.expand(base.validate(), list(policies), [int(s) for s in seeds])
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    conf = _config_file(root, job_id, base)
    # one snapshot serves every seed only when the data does not depend on the seed (files, not a drawn world)
    head, where, how = ([], Path(cwd) if cwd is not None else root, "cli") if _drawn_per_seed(base) and len(set(seeds)) > 1 \
        else _engine(root, base, conf, cwd)
    tail = ["--policies", ",".join(policies), "--seeds", ",".join(str(int(s)) for s in seeds),
            "--workers", str(max(1, int(workers)))]
    cmd = head + tail if head else [sys.executable, "-m", "balpm", "sweep", "--config", str(conf), "--runs-dir",
                                    str(root), *tail, "--quiet"]
    title = title or f"sweep {','.join(policies)} x seeds {','.join(str(s) for s in seeds)}"
    job = Job(job_id, "sweep", title, root, [runs.default_run_id(c) for c in configs], cmd, conf.parent / "log.txt",
              expected_rounds=sum(c.loop.rounds for c in configs), cwd=where, inputs=how)
    return _launch(job, where) if launch else job


def progress(job: Job) -> dict[str, Any]:
    """Rounds done / total over the job's runs (read from their status.json), states and exit code."""
    done = 0
    states: dict[str, str] = {}
    for run_id in job.run_ids:
        path = job.root / run_id
        if not path.is_dir():
            states[run_id] = "pending"
            continue
        if runs.refused(job.root, path):  # a link planted under the run's name is never read
            states[run_id] = "failed"
            continue
        info = runs.inspect_run(path)
        done += max(int(info.last_round) + 1, 0)
        states[run_id] = info.state
    code = job.returncode
    total = max(job.expected_rounds, done, 1)
    frac = done / total
    failed = job.finished and (code != 0 or any(s == "failed" for s in states.values()))
    if job.finished and not failed:
        frac = 1.0
    return {"done_rounds": done, "total_rounds": total, "fraction": min(max(frac, 0.0), 1.0),
            "states": states, "returncode": code, "finished": job.finished, "failed": failed}


def status_text(job: Job, p: dict[str, Any] | None = None) -> str:
    """``running``, ``done``, or ``failed (exit code N)`` / ``failed (run X failed)``: one word a panel shows."""
    p = p or progress(job)
    if not p["finished"]:
        return "running"
    if not p["failed"]:
        return "done"
    bad = [r for r, s in p["states"].items() if s == "failed"]
    return f"failed (exit code {p['returncode']})" if p["returncode"] not in (0, None) else f"failed (run {bad[0]} failed)"


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
