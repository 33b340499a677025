"""Reading run folders: never raises on a broken one, shows only committed rounds, refuses links out."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import npy_files, safe_yaml
from balpm.config import RunConfig
from balpm.errors import BalpmError
from balpm.experiment.runs.folder import (
    ACQUISITION_COLUMNS,
    DATASETS_DIR,
    POOL_SCORE_COLUMNS,
    ROUND_COLUMNS,
    STATES,
    TRUTH_FILE,
    _round_of,
    policy_label,
    safe_path,
    setting_hash,
)


# ---- reader ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """One entry of :func:`list_runs`: enough to list and filter runs without opening them.

    ``state`` is running / complete / failed, or ``broken`` (with ``reason``) when the folder cannot be
    read as a run. ``alive`` is False for a ``running`` run whose process is gone on this host
    (killed: resume it with ``balpm run --resume``), None when unknown.
    """

    run_id: str
    path: Path
    state: str
    reason: str | None = None
    policy: str | None = None
    label: str | None = None
    seed: int | None = None
    config_hash: str | None = None
    setting: str | None = None
    data_hash: str | None = None
    feature_hash: str | None = None
    last_round: int = -1
    rounds: int = 0
    error: str | None = None
    updated: str | None = None
    alive: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _read_config(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    raw = safe_yaml.load_file(path / "config.yaml", "config.yaml")  # bounded, no aliases
    if not isinstance(raw, dict):
        raise BalpmError("config.yaml is not a mapping")
    meta = raw.get("meta") or {}
    return RunConfig.from_dict({**raw, "meta": meta}), meta


def _read_status(path: Path) -> dict[str, Any]:
    st = json.loads((path / "status.json").read_text())
    if not isinstance(st, dict) or st.get("state") not in STATES or not isinstance(st.get("last_round"), int):
        raise BalpmError("status.json lacks a valid state/last_round")
    return st


def _pid_alive(st: dict[str, Any]) -> bool | None:
    if st.get("state") != "running" or st.get("host") != socket.gethostname() or not st.get("pid"):
        return None
    try:
        os.kill(int(st["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError):
        return None
    return True


def inspect_run(path: str | Path) -> RunInfo:
    """The :class:`RunInfo` of one run folder (state ``broken`` with a reason when unreadable)."""
    path = Path(path)
    run_id = path.name
    # its files must stay inside the folder holding the run (a folder given as a link: the link's target)
    why = refused(path.resolve().parent, path.resolve(), folder_link_ok=True)
    if why:
        return RunInfo(run_id, path, "broken", reason=why)
    if not (path / "config.yaml").is_file():
        return RunInfo(run_id, path, "broken", reason="config.yaml missing (not a run, or creation was interrupted)")
    try:
        cfg, meta = _read_config(path)
    except Exception as exc:
        return RunInfo(run_id, path, "broken", reason=f"config.yaml unreadable: {' '.join(str(exc).split())[:200]}")
    base = dict(policy=cfg.acquisition.policy, label=policy_label(cfg), seed=cfg.loop.seed,
                config_hash=meta.get("config_hash", cfg.hash()), setting=setting_hash(cfg),
                data_hash=meta.get("data_hash"), feature_hash=meta.get("feature_hash"), rounds=cfg.loop.rounds)
    if not (path / "status.json").is_file():
        return RunInfo(run_id, path, "broken", reason="status.json missing (creation was interrupted)", **base)
    try:
        st = _read_status(path)
    except Exception as exc:
        return RunInfo(run_id, path, "broken", reason=f"status.json unreadable: {' '.join(str(exc).split())[:200]}", **base)
    last = int(st["last_round"])
    if last >= 0:
        try:
            import pyarrow.parquet as pq

            n = pq.read_metadata(path / "rounds.parquet").num_rows
        except Exception as exc:
            return RunInfo(run_id, path, "broken", reason=f"rounds.parquet unreadable: {' '.join(str(exc).split())[:200]}",
                           last_round=last, **base)
        if n < last + 1:
            return RunInfo(run_id, path, "broken", reason=f"rounds.parquet has {n} rows but status says round {last} is complete",
                           last_round=last, **base)
    if not (path / "pool.parquet").is_file():
        return RunInfo(run_id, path, "broken", reason="pool.parquet missing (creation was interrupted)",
                       last_round=last, **base)
    if meta.get("data_hash") and not (path.parent / DATASETS_DIR / meta["data_hash"] / "prompt_ids.json").is_file():
        return RunInfo(run_id, path, "broken", reason=f"dataset snapshot {DATASETS_DIR}/{meta['data_hash']} missing",
                       last_round=last, **base)
    return RunInfo(run_id, path, st["state"], reason=None, last_round=last, error=st.get("error"),
                   updated=st.get("updated"), alive=_pid_alive(st), extra={"pid": st.get("pid")}, **base)


def list_runs(root: str | Path) -> list[RunInfo]:
    """Every run folder directly under ``root`` (sorted by run id). Never raises.

    Folders starting with ``_`` or ``.`` (the dataset snapshots, temp files) are skipped. A folder that
    cannot be read as a run is listed with state ``broken`` and a ``reason``. A missing root gives ``[]``.
    """
    try:
        root = Path(root)
        if not root.is_dir():
            return []
        root_r = root.resolve()  # once: every check below is against the real folder
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except Exception:
        return []
    out = []
    for p in entries:
        why = refused(root_r, p)
        if why:  # never read: listed as broken with the reason
            out.append(RunInfo(p.name, p, "broken", reason=why))
            continue
        try:
            out.append(inspect_run(p))
        except Exception as exc:
            out.append(RunInfo(p.name, p, "broken", reason=" ".join(str(exc).split())[:200]))
    return out


_RUN_FILES = ("config.yaml", "status.json", "rounds.parquet", "acquisitions.parquet", "pool.parquet", "pool_scores")


def refused(root: str | Path, path: str | Path, *, folder_link_ok: bool = False) -> str | None:
    """Why the run folder ``path`` directly inside ``root`` must not be read, or None: a folder that is a
    symbolic link (unless ``folder_link_ok``), or a run file (config.yaml, status.json, the tables) whose
    link leads outside ``root``.

    Only ``path``'s name is used: the folder checked is ``<root resolved>/<name>``, so a relative root
    (``hostile/A``) is resolved once and never prefixed twice (``hostile/A/hostile/A/...``, a path that
    does not exist and so seemed to stay inside).
    """
    root_r = Path(root).resolve()
    folder = root_r / Path(path).name
    try:
        if folder.is_symlink() and not folder_link_ok:
            return f"refused: the run folder is a symbolic link (to {os.readlink(folder)}); copy the run instead"
        for name in _RUN_FILES:
            safe_path(root_r, folder / name)
    except BalpmError as exc:
        return f"refused: {exc}"
    except OSError as exc:
        return f"refused: unreadable ({' '.join(str(exc).split())[:120]})"
    return None


class Run:
    """Read access to one run directory (obtain with :func:`open_run`).

    ``config`` (RunConfig), ``meta`` (dict) and ``status`` (dict, re-read on each access) are
    properties; the tables are methods. Tables only hold rounds ``<= status['last_round']``.
    """

    def __init__(self, root: str | Path, path: Path) -> None:
        self.root = Path(root).resolve()
        self.path = path
        self.run_id = path.name
        try:
            self._config, self._meta = _read_config(path)
        except BalpmError:
            raise
        except Exception as exc:
            raise BalpmError(f"run {self.run_id!r}: config.yaml unreadable ({' '.join(str(exc).split())[:160]})") from None

    def __repr__(self) -> str:
        return f"Run({self.run_id!r})"

    @property
    def config(self) -> RunConfig:
        """The run's resolved :class:`RunConfig`."""
        return self._config

    @property
    def meta(self) -> dict[str, Any]:
        """Package version, data_hash, feature_hash, config_hash, run_id, table_hash, sizes."""
        return dict(self._meta)

    @property
    def label(self) -> str:
        """Policy label, e.g. ``balpm beta=0.1``."""
        return policy_label(self._config)

    @property
    def status(self) -> dict[str, Any]:
        """status.json (re-read every time: a running run advances)."""
        try:
            return _read_status(self.path)
        except Exception as exc:
            raise BalpmError(f"run {self.run_id!r}: status.json unreadable ({' '.join(str(exc).split())[:160]})") from None

    @property
    def last_round(self) -> int:
        """Index of the last complete round (-1: none yet)."""
        return int(self.status["last_round"])

    def _table(self, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
        p = self.path / name
        if not p.exists():
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        df = pd.read_parquet(p)
        return df[df["round"] <= self.last_round].reset_index(drop=True)

    def truth(self) -> dict[str, Any] | None:
        """truth.json (the table's known truth, :func:`balpm.experiment.loop.truth`), or None: no known truth, or a
        run made before truth.json existed."""
        p = self.path / TRUTH_FILE
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise BalpmError(f"run {self.run_id!r}: truth.json unreadable ({' '.join(str(exc).split())[:160]})") from None

    def rounds(self) -> pd.DataFrame:
        """rounds.parquet (complete rounds only)."""
        return self._table("rounds.parquet", ROUND_COLUMNS)

    def acquisitions(self) -> pd.DataFrame:
        """acquisitions.parquet (picks of complete rounds only), reindexed to :data:`ACQUISITION_COLUMNS` plus any
        other column the policy recorded: a column a policy does not declare reads as NaN, so folders of
        every policy and folders written before policies declared their columns read alike."""
        df = self._table("acquisitions.parquet", ACQUISITION_COLUMNS)
        return df.reindex(columns=list(dict.fromkeys([*ACQUISITION_COLUMNS, *df.columns])))

    def pool(self) -> pd.DataFrame:
        """pool.parquet: pool_index, pair_id, prompt_id, initial."""
        return pd.read_parquet(self.path / "pool.parquet")

    def pool_score_rounds(self) -> list[int]:
        """Rounds that have a pool_scores table (complete rounds only)."""
        folder = self.path / "pool_scores"
        if not folder.is_dir():
            return []
        last = self.last_round
        rounds = {_round_of(f.name) for f in folder.iterdir() if f.name.endswith(".parquet")
                  and not f.name.endswith(".increments.parquet")}
        return sorted(r for r in rounds if r is not None and r <= last)

    def pool_scores(self, round: int) -> pd.DataFrame | None:
        """Scores of every pool item remaining at round ``round``'s selection, or None when not saved; reindexed
        to :data:`POOL_SCORE_COLUMNS` plus the columns the policy recorded (a missing column reads as NaN)."""
        p = self.path / "pool_scores" / f"round={int(round)}.parquet"
        if int(round) > self.last_round or not p.exists():
            return None
        df = pd.read_parquet(p)
        return df.reindex(columns=list(dict.fromkeys([*POOL_SCORE_COLUMNS, *df.columns])))

    def increments(self, round: int) -> pd.DataFrame | None:
        """(step, pool_index) pairs: which items' counts each pick of round ``round`` raised, or None."""
        p = self.path / "pool_scores" / f"round={int(round)}.increments.parquet"
        if int(round) > self.last_round or not p.exists():
            return None
        return pd.read_parquet(p)

    def labelled_before(self, round: int) -> pd.DataFrame:
        """pool rows labelled when round ``round`` trained (initial + picks of earlier rounds)."""
        pool = self.pool()
        acq = self.acquisitions()
        picked = set(acq.loc[acq["round"] < round, "pool_index"].tolist())
        return pool[pool["initial"] | pool["pool_index"].isin(picked)]

    def dataset(self) -> tuple[pd.DataFrame, list[str], np.ndarray]:
        """``(table, prompt_ids, prompts_P_D)`` from the shared snapshot under ``root/_datasets``."""
        data_hash = self._meta.get("data_hash")
        if not data_hash:
            raise BalpmError(f"run {self.run_id!r} has no data_hash in config.yaml; re-run it with this balpm")

        folder = safe_path(self.root, Path(DATASETS_DIR) / str(data_hash))
        try:
            ids = json.loads((folder / "prompt_ids.json").read_text())
            if not isinstance(ids, list):
                raise ValueError("prompt_ids.json is not a list")
            # the header's shape against the prompt ids (and the file's size) before a byte is loaded
            prompts = npy_files.load(safe_path(self.root, folder / "prompt_features.npy"),
                                     f"prompt_features.npy of snapshot {data_hash}", rows=len(ids))
            table = pd.read_parquet(safe_path(self.root, folder / "table.parquet"))
        except BalpmError:  # already one line (a refused .npy header)
            raise
        except (OSError, ValueError) as exc:
            raise BalpmError(f"dataset snapshot {data_hash} unreadable ({' '.join(str(exc).split())[:160]})") from None
        return table, [str(i) for i in ids], prompts


def open_run(root: str | Path, run_id: str) -> Run:
    """Open ``root/run_id`` for reading (a one-line :class:`BalpmError` if absent or outside root)."""
    path = safe_path(root, run_id)
    if path.parent != Path(root).resolve() or path.name.startswith(("_", ".")):
        raise BalpmError(f"{run_id!r} is not a run folder directly inside {str(root)!r}")
    why = refused(root, run_id)  # the folder as named (safe_path resolved a link to its target)
    if why:
        raise BalpmError(f"run {run_id!r}: {why}")
    if not (path / "config.yaml").is_file():
        raise BalpmError(f"no run {run_id!r} in {str(root)!r} (config.yaml missing); list runs with balpm report {root}")
    return Run(root, path)


def find_run(root: str | Path, cfg: RunConfig) -> Run | None:
    """The run under ``root`` whose config hash equals ``cfg.hash()`` (complete preferred), or None."""
    want = cfg.hash()
    best: RunInfo | None = None
    rank = {"complete": 0, "running": 1, "failed": 2}
    for info in list_runs(root):
        if info.state == "broken" or info.config_hash != want:
            continue
        if best is None or rank[info.state] < rank[best.state]:
            best = info
    return open_run(root, best.run_id) if best else None
