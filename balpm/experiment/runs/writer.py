"""Writing one run folder: created atomically, append-only per round, ``status.json`` the commit point."""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import safe_yaml
from balpm.config import RunConfig
from balpm.errors import ConfigError
from balpm.experiment.runs.folder import (
    _CREATING,
    DATASETS_DIR,
    POOL_COLUMNS,
    ROUND_COLUMNS,
    STATES,
    TRUTH_FILE,
    _round_of,
    check_run_id,
    dataset_hash,
)
from balpm.experiment.runs.writes import (
    TMP_SUFFIX,
    _jsonable,
    _now,
    atomic_write_json,
    atomic_write_npy,
    atomic_write_parquet,
    atomic_write_text,
)


# ---- writer ----------------------------------------------------------------------------------
class RunWriter:
    """Writes one run directory; every file write is atomic, every round append-only.

    Usage (what :func:`balpm.experiment.loop.run` does)::

        w = RunWriter.create(root, run_id, cfg, meta)   # config.yaml + status running
        w.write_pool(pool_df)
        w.commit_round(r, rounds_row, acquisitions_df, pool_scores_df, increments_df)
        w.finish()   # or w.fail(exc)
    """

    def __init__(self, root: str | Path, run_id: str) -> None:
        self.root = Path(root)
        self.run_id = check_run_id(run_id)
        self.path = self.root / run_id
        self._status: dict[str, Any] | None = None

    # -- creation and status --
    @classmethod
    def create(cls, root: str | Path, run_id: str, cfg: RunConfig, meta: dict[str, Any],
               pool: pd.DataFrame | None = None, truth: dict[str, Any] | None = None) -> RunWriter:
        """Create ``root/run_id`` atomically: config.yaml, a ``running`` status (round -1), ``pool`` and
        ``truth`` (truth.json: the known truth of the table, :func:`balpm.experiment.loop.truth`; none when None).

        The folder is built under a hidden temporary name (``root/.<run_id>.creating.<pid>``, never listed)
        and renamed into place when complete, so a kill during creation never leaves a half-made run.
        An existing ``root/run_id`` is an error (resume it instead). The caller should hold
        :func:`lock_run` (``balpm.experiment.loop.run`` does).
        """
        w = cls(root, run_id)
        if w.path.exists():
            raise ConfigError(f"run folder {str(w.path)!r} already exists; resume it with --resume --run-id {run_id} "
                              "or pick another --run-id")
        w.path.parent.mkdir(parents=True, exist_ok=True)
        final = w.path
        tmp = w.path.parent / f".{run_id}{_CREATING}{os.getpid()}"
        if tmp.exists():
            _rmtree(tmp)
        tmp.mkdir()
        try:
            w.path = tmp
            doc = cfg.to_dict()
            doc["meta"] = _jsonable({**meta, "run_id": run_id, "config_hash": cfg.hash()})
            atomic_write_text(tmp / "config.yaml", safe_yaml.dump(doc))
            if pool is not None:
                w.write_pool(pool)
            if truth is not None:
                atomic_write_json(tmp / TRUTH_FILE, _jsonable(truth))
            w.write_status("running", last_round=-1, rounds=cfg.loop.rounds, error=None, started=_now())
            os.rename(tmp, final)
        except BaseException:
            _rmtree(tmp)
            raise
        finally:
            w.path = final
        return w

    def remove_stale_temp(self) -> list[Path]:
        """Delete temp files left by killed atomic writes in this run (call only while holding its lock)."""
        removed = []
        for folder in (self.path, self.path / "pool_scores"):
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                if f.name.startswith(".") and f.name.endswith(TMP_SUFFIX) and f.is_file():
                    try:
                        f.unlink()
                        removed.append(f)
                    except OSError:
                        pass
        prefix = f".{self.run_id}{_CREATING}"
        for d in self.root.glob(f"{prefix}*"):
            if d.name[len(prefix):].isdigit():  # exactly this run id's (another id may contain ".creating.")
                _rmtree(d)
                removed.append(d)
        return removed

    def read_status(self) -> dict[str, Any]:
        """The current status.json as a dict."""
        if self._status is None:
            self._status = json.loads((self.path / "status.json").read_text())
        return dict(self._status)

    def write_status(self, state: str, *, last_round: int, rounds: int, error: str | None = None,
                     started: str | None = None) -> None:
        """Atomically rewrite status.json."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        prev = self._status or {}
        status = {
            "state": state, "last_round": int(last_round), "rounds": int(rounds), "error": error,
            "started": started or prev.get("started") or _now(), "updated": _now(),
            "pid": os.getpid(), "host": socket.gethostname(),
        }
        atomic_write_json(self.path / "status.json", status)
        self._status = status

    def resume_running(self) -> None:
        """Mark a resumed run as running again, keeping its last complete round."""
        st = self.read_status()
        self.write_status("running", last_round=st["last_round"], rounds=st["rounds"], error=None)

    def finish(self) -> None:
        """Mark the run complete."""
        st = self.read_status()
        self.write_status("complete", last_round=st["last_round"], rounds=st["rounds"], error=None)

    def fail(self, exc: BaseException) -> None:
        """Mark the run failed with a one-line error message (the last complete round is kept)."""
        st = self.read_status()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        self.write_status("failed", last_round=st["last_round"], rounds=st["rounds"], error=msg)

    # -- data --
    def write_pool(self, pool: pd.DataFrame) -> None:
        """Write pool.parquet (pool_index, pair_id, prompt_id, initial)."""
        atomic_write_parquet(self.path / "pool.parquet", pool[list(POOL_COLUMNS)])

    def truncate(self, last_round: int) -> None:
        """Drop every row and file of rounds after ``last_round`` (used before a resume)."""
        for name in ("rounds.parquet", "acquisitions.parquet"):
            p = self.path / name
            if p.exists():
                df = pd.read_parquet(p)
                keep = df[df["round"] <= last_round]
                if len(keep) != len(df):
                    atomic_write_parquet(p, keep.reset_index(drop=True))
        ps = self.path / "pool_scores"
        if ps.is_dir():
            for f in ps.iterdir():
                r = _round_of(f.name)
                if r is not None and r > last_round:
                    f.unlink()

    def commit_round(self, rnd: int, rounds_row: dict[str, Any], acquisitions: pd.DataFrame | None = None,
                     pool_scores: pd.DataFrame | None = None, increments: pd.DataFrame | None = None) -> None:
        """Append one round (its files first, status.json last: the commit point)."""
        if pool_scores is not None:
            atomic_write_parquet(self.path / "pool_scores" / f"round={rnd}.parquet", pool_scores)
        if increments is not None:
            atomic_write_parquet(self.path / "pool_scores" / f"round={rnd}.increments.parquet", increments)
        if acquisitions is not None and len(acquisitions):
            self._append("acquisitions.parquet", acquisitions, rnd)  # the ids + the policy's declared columns
        row = {c: rounds_row.get(c, np.nan) for c in ROUND_COLUMNS}
        self._append("rounds.parquet", pd.DataFrame([row]), rnd)
        st = self.read_status()
        self.write_status("running", last_round=rnd, rounds=st["rounds"], error=None)

    def _append(self, name: str, new: pd.DataFrame, rnd: int) -> None:
        p = self.path / name
        if p.exists():
            old = pd.read_parquet(p)
            old = old[old["round"] < rnd]  # a half-written earlier attempt of this round is replaced
            new = pd.concat([old, new], ignore_index=True) if len(old) else new
        atomic_write_parquet(p, new.reset_index(drop=True))


def _rmtree(path: Path) -> None:

    shutil.rmtree(path, ignore_errors=True)


def write_dataset(root: str | Path, table: pd.DataFrame, prompt_ids: Iterable[str],
                  prompts_P_D: np.ndarray) -> str:
    """Write the shared snapshot ``root/_datasets/<data_hash>/`` once; return ``data_hash``."""
    ids = [str(p) for p in prompt_ids]
    data_hash = dataset_hash(table, ids, prompts_P_D)
    folder = Path(root) / DATASETS_DIR / data_hash
    if not (folder / "prompt_ids.json").exists():  # written last: its presence marks a complete snapshot
        atomic_write_parquet(folder / "table.parquet", table.reset_index(drop=True))
        atomic_write_npy(folder / "prompt_features.npy", np.ascontiguousarray(prompts_P_D, dtype=np.float32))
        atomic_write_json(folder / "prompt_ids.json", ids)
    return data_hash
