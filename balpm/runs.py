"""The run directory: the only thing the dashboard reads, and the only place the loop writes.

Layout of one run, ``root/<run_id>/``::

    config.yaml                      resolved RunConfig + ``meta`` (version, data/feature hashes, run id)
    status.json                      {state, last_round, rounds, error, started, updated, pid, host}
    pool.parquet                     pool_index, pair_id, prompt_id, initial
    truth.json                       only for a table with known truth (true_prob): the Bayes-optimal test/OOD
                                     log-likelihood and accuracy, the pool's noisy share (balpm.loop.truth)
    rounds.parquet                   one row per completed round (see ``ROUND_COLUMNS``)
    acquisitions.parquet             one row per pick (see ``ACQUISITION_COLUMNS``)
    pool_scores/round=<r>.parquet    every remaining pool item's scores at the start of round r's selection
    pool_scores/round=<r>.increments.parquet   (step, pool_index) whose count n(x) each pick raised

and the shared dataset snapshot ``root/_datasets/<data_hash>/`` (``table.parquet``,
``prompt_features.npy``, ``prompt_ids.json``) so that the dashboard never reads outside the runs root.

Writes are atomic (temp file in the same folder, then ``os.replace``) and append-only per round: the
commit point of a round is ``status.json``; readers only show rows of rounds ``<= last_round``, so a
run killed half-way through a round is read as its last complete round. Nothing here uses pickle.

A run folder is created atomically (:meth:`RunWriter.create` builds config.yaml, status.json and
pool.parquet under a hidden name, then renames it), so a kill during creation never leaves a folder
that looks like a run. One process at a time writes a run: :func:`lock_run` is an OS-level lock on
``root/.locks/<run_id>.lock`` held for the run's life; a second writer gets a one-line
:class:`~balpm.errors.RunLockedError`. Files get the usual mode of new files under the umask.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import safe_yaml
from balpm.config import AcquisitionConfig, RunConfig
from balpm.diagnostics import ROUND_DIAGNOSTIC_COLUMNS
from balpm.errors import BalpmError, ConfigError, RunLockedError

DATASETS_DIR = "_datasets"
LOCKS_DIR = ".locks"  # root/.locks/<run_id>.lock: held by the one process writing that run
TMP_SUFFIX = ".tmp"  # temp files of atomic writes (".<name>.<random>.tmp"); stale ones are removed on resume
_CREATING = ".creating."  # a run folder under construction: root/.<run_id>.creating.<pid>, renamed when complete
STATES = ("running", "complete", "failed")
TRUTH_FILE = "truth.json"  # the table's known truth (Bayes-optimal test LL, ...), written at creation (balpm.loop.truth)
ROUND_COLUMNS: tuple[str, ...] = (
    "round", "labelled", "test_log_likelihood", "test_accuracy", "test_brier", "test_ece",
    "ood_log_likelihood", "ood_accuracy", "ood_brier", "ood_ece", "mean_uncertainty",
    "batch_unique_prompts", "cumulative_unique_prompts", "train_seconds", "eval_seconds",
    "select_seconds", "epochs", "valid_loss",
    "noisy_share",  # share of the labelled pairs in a planted noisy region (NaN: unknown); balpm.loop
) + ROUND_DIAGNOSTIC_COLUMNS  # U / beta*H spreads and beta_effective (balpm.diagnostics)
#: the columns every reader of acquisitions.parquet sees (ids, score, u, then BAL-PM's, which every policy wrote
#: before policies declared their own); a writer writes the ids + its policy's ``acquisition_columns``
#: (balpm.acquisition.registry), and :meth:`Run.acquisitions` reindexes (a missing column is NaN)
ACQUISITION_COLUMNS: tuple[str, ...] = (
    "round", "step", "pool_index", "pair_id", "prompt_id", "score", "u", "log_dist", "count_term",
    "h", "beta_h", "ratio", "n", "radius",
)
POOL_COLUMNS: tuple[str, ...] = ("pool_index", "pair_id", "prompt_id", "initial")
POOL_SCORE_COLUMNS: tuple[str, ...] = (
    "pool_index", "pair_id", "prompt_id", "u", "radius", "n0", "log_dist", "count_term", "h", "score",
)
# ---- atomic writes ---------------------------------------------------------------------------
def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain new file gets under the current umask (0644 under umask 022)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on success it replaces ``path``, on any error it is removed.

    The temp file gets the usual mode of a new file under the umask (``mkstemp``'s 0600 is widened), so
    other users and tools (a dashboard started by another user) can read runs when the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, file_mode())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`): a temp file, fsync, ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (NaN-free: NaN becomes null)."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Atomic parquet write (pyarrow, no index)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow")
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_npy(path: Path, array: np.ndarray) -> None:
    """Atomic ``.npy`` write (never pickled: object arrays are refused)."""
    if array.dtype == object:
        raise ValueError("refusing to write an object array (would need pickle)")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---- hashes and labels -----------------------------------------------------------------------
def table_hash(table: pd.DataFrame) -> str:
    """Content hash (16 hex) of a preference table's columns and rows, in row order."""
    h = hashlib.sha256()
    cols = list(table.columns)
    h.update(json.dumps(cols).encode())
    frame = table[cols].astype("string").fillna("<NA>")
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_hash(table: pd.DataFrame, prompt_ids: Iterable[str], prompts_P_D: np.ndarray) -> str:
    """Hash of a dataset snapshot: the table plus the prompt features the dashboard maps."""
    h = hashlib.sha256()
    h.update(table_hash(table).encode())
    h.update(json.dumps([str(p) for p in prompt_ids]).encode())
    arr = np.ascontiguousarray(prompts_P_D, dtype=np.float32)
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def policy_label(cfg: RunConfig | AcquisitionConfig) -> str:
    """``"balpm"`` or ``"balpm beta=0.1 estimator=kl"``: the policy plus its knobs that differ from the
    defaults of its knob class (and a non-default uncertainty where the policy's entry says so), in the
    entry's label order (:meth:`balpm.acquisition.registry.PolicyEntry.label_knobs`).
    """
    acq = cfg.acquisition if isinstance(cfg, RunConfig) else cfg
    default = AcquisitionConfig(policy=acq.policy)
    parts = [acq.policy]
    for name in acq.entry.label_knobs():
        value = getattr(acq, name)
        if value != getattr(default, name):
            parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def setting_hash(cfg: RunConfig) -> str:
    """Hash of everything but the policy, the seed and the name: runs comparable on one curve plot."""
    d = cfg.to_dict()
    d.pop("name", None)
    d.pop("acquisition", None)
    d["loop"].pop("seed", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def default_run_id(cfg: RunConfig) -> str:
    """``<policy>-s<seed>-<hash8>``, the run folder name unless the user gives one."""
    return f"{cfg.acquisition.policy}-s{cfg.loop.seed}-{cfg.hash()[:8]}"


def check_run_id(run_id: str) -> str:
    """A run id must be a plain folder name (letters, digits, ``-_.=+``), not starting with ``_`` or ``.``."""
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=+")
    if not run_id or run_id[0] in "._" or not set(run_id) <= ok or len(run_id) > 200:
        raise ConfigError(f"run id {run_id!r} is not a plain folder name; use letters, digits and -_.=+ only")
    return run_id


def check_root(root: str | Path, flag: str = "--runs-dir") -> Path:
    """The runs root as a Path, refused (one line, nothing written) when it or a parent is not a folder."""
    root = Path(root)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == root else f"is inside {str(probe)!r}, which is a file"
        raise ConfigError(f"{flag} {str(root)!r} {what}, not a folder; give a folder for the runs")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(root)!r}: {str(probe)!r} is not writable; give a folder you can write to")
    return root


# ---- path safety -----------------------------------------------------------------------------
def safe_path(root: str | Path, user_path: str | Path) -> Path:
    """Resolve ``user_path`` (relative to ``root``, or absolute) and refuse anything outside ``root``.

    ``..`` components, absolute paths elsewhere and symlinks that leave the root all raise a
    one-line :class:`BalpmError`. Returns the resolved path (which need not exist).
    """
    text = str(user_path)
    if "\x00" in text:
        raise BalpmError("path contains a NUL byte; give a plain path inside the runs folder")
    root_r = Path(root).resolve()
    p = Path(text).expanduser()
    candidate = p if p.is_absolute() else root_r / p
    resolved = candidate.resolve()
    if resolved != root_r and root_r not in resolved.parents:
        raise BalpmError(f"path {text!r} is outside the runs folder {str(root_r)!r}; pick a run inside it")
    return resolved


# ---- writer ----------------------------------------------------------------------------------
class RunWriter:
    """Writes one run directory; every file write is atomic, every round append-only.

    Usage (what :func:`balpm.loop.run` does)::

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
        ``truth`` (truth.json: the known truth of the table, :func:`balpm.loop.truth`; none when None).

        The folder is built under a hidden temporary name (``root/.<run_id>.creating.<pid>``, never listed)
        and renamed into place when complete, so a kill during creation never leaves a half-made run.
        An existing ``root/run_id`` is an error (resume it instead). The caller should hold
        :func:`lock_run` (``balpm.loop.run`` does).
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
    import shutil

    shutil.rmtree(path, ignore_errors=True)


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


def _round_of(filename: str) -> int | None:
    if not filename.startswith("round="):
        return None
    num = filename[len("round="):].split(".", 1)[0]
    return int(num) if num.isdigit() else None


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
        """truth.json (the table's known truth, :func:`balpm.loop.truth`), or None: no known truth, or a
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
        from balpm import npy_files

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
