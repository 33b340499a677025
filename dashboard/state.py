"""Streamlit-side state: the runs root, cached readers of run folders, cross-page selections, jobs.

Frames are cached with ``st.cache_data`` keyed by (root, run id, file modification times), so a run
that advances is re-read and a finished one never is. Heavy read-only objects (dataset snapshots,
projections, per-round pool scores at 92k rows) use ``st.cache_resource``: callers must not mutate
them. Everything is read through :mod:`balpm.experiment.runs` (paths checked with ``runs.safe_path``); no pickle
file is ever loaded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import streamlit as st
from balpm_dashboard import frames, untrusted

from balpm import safe_yaml
from balpm.config import RunConfig
from balpm.errors import BalpmError
from balpm.experiment import ablations, presets, runs
from balpm.experiment.projection import cached_projection, snapshot_folder

T = TypeVar("T")
ENV = "BALPM_RUNS_DIR"
COMPARE = "compare_runs"        # session key: run ids picked on the Runs page
SELECTION = "inspect_selection"  # session key: list of {"run": run_id, "pool_index": i} picked on any map


def config_for_display(text: str) -> str:
    """A run's config.yaml as the Runs page shows it: for a run on data files the synthetic-world knobs
    (``synthetic: teaching`` ...) are dropped, since they do not apply, with a comment saying so."""
    try:
        doc = safe_yaml.load_text(text, "config.yaml")  # bounded: size, depth, nodes; no aliases
    except BalpmError:
        return text
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict) and data.get("paths"):
        dropped = [k for k in ("synthetic", "synthetic_size", "synthetic_dim") if k in data]
        for k in dropped:
            data.pop(k)
        note = f"# data from files: {', '.join(dropped)} (synthetic worlds only) not shown\n" if dropped else ""
        return note + safe_yaml.dump(doc, allow_unicode=True)
    return text


# ---- where the runs are ----------------------------------------------------------------------
def allow_outside_data() -> bool:
    """True when the server was started with ``--allow-outside-data`` (``balpm dashboard
    --allow-outside-data``): only then may a config typed into the app read data or caches outside the
    runs folder."""
    return "--allow-outside-data" in sys.argv[1:] or os.environ.get("BALPM_ALLOW_OUTSIDE_DATA") == "1"


def runs_root() -> Path:
    """The runs folder: ``--runs DIR`` after ``--`` on the streamlit command line, else ``$BALPM_RUNS_DIR``,
    else ``./runs``. It is fixed by whoever started the server, never typed into the app."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--runs" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser().resolve()
        if a.startswith("--runs="):
            return Path(a.split("=", 1)[1]).expanduser().resolve()
    return Path(os.environ.get(ENV) or "runs").expanduser().resolve()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def run_fingerprint(root: Path, run_id: str) -> tuple[int, ...]:
    """Modification times of a run's files: the cache key that makes a running run re-read."""
    p = Path(root) / run_id
    return tuple(_mtime(p / f) for f in ("config.yaml", "status.json", "rounds.parquet", "acquisitions.parquet",
                                          "pool.parquet"))


def _root_fingerprint(root: Path) -> tuple:
    try:
        entries = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except OSError:
        return ()
    return tuple((name, run_fingerprint(root, name)) for name in entries)


def refusal(root: Path, run_id: str) -> str | None:
    """Why the folder ``root/run_id`` must not be read, or None: a folder name that is not a run id (which
    ``balpm.experiment.runs`` cannot open), else :func:`balpm.experiment.runs.refused` (a symlinked run folder, a run file that
    leads outside the runs folder; its own list of run files). Every dashboard read of a run goes through this."""
    try:
        runs.check_run_id(run_id)
    except BalpmError:  # a renamed folder (markup, spaces): listed, never read
        return "refused: the folder name is not a run id (letters, digits and -_.=+ only); rename the folder"
    return runs.refused(root, run_id)


def safe_file(root: Path, run_id: str, name: str) -> Path:
    """``root/run_id/name`` checked with ``runs.safe_path`` (and the run folder with :func:`refusal`);
    a one-line BalpmError otherwise."""
    why = refusal(root, run_id)
    if why:
        raise BalpmError(f"run {run_id!r}: {why}")
    return runs.safe_path(root, f"{run_id}/{name}")


@st.cache_data(show_spinner=False, max_entries=64)
def _list_runs(root: str, stamp: tuple) -> list[runs.RunInfo]:
    out = []
    for info in runs.list_runs(root):
        why = refusal(Path(root), info.run_id)
        out.append(info if why is None else runs.RunInfo(info.run_id, Path(root) / info.run_id, "broken", reason=why))
    return out


def run_infos(root: Path) -> list[runs.RunInfo]:
    """``runs.list_runs(root)``, re-read whenever any run's files change. Never raises."""
    return _list_runs(str(root), _root_fingerprint(root))


def usable(infos: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """Runs with at least one complete round (running, complete or failed), not broken."""
    return [i for i in infos if i.state != "broken" and i.last_round >= 0]


# ---- cached readers --------------------------------------------------------------------------
def _open(root: str, run_id: str, *files: str) -> runs.Run:
    """``runs.open_run`` after :func:`safe_file` on the folder and the files about to be read."""
    for name in files or ("config.yaml",):
        safe_file(Path(root), run_id, name)
    return runs.open_run(root, run_id)


@st.cache_data(show_spinner=False, max_entries=256)
def _rounds(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return _open(root, run_id, "config.yaml", "status.json", "rounds.parquet").rounds()


@st.cache_data(show_spinner=False, max_entries=256)
def _acquisitions(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return _open(root, run_id, "config.yaml", "status.json", "acquisitions.parquet").acquisitions()


@st.cache_resource(show_spinner=False, max_entries=64)
def _pool(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return _open(root, run_id, "config.yaml", "pool.parquet").pool()


@st.cache_data(show_spinner=False, max_entries=256)
def _config(root: str, run_id: str, stamp: tuple) -> tuple[RunConfig, dict]:
    r = _open(root, run_id, "config.yaml")
    return r.config, r.meta


def read_text(root: Path, run_id: str, name: str, limit: int = 2_000_000) -> str | None:
    """A run's text file (config.yaml, status.json) through :func:`safe_file`; None when absent.
    Never follows a link out of the runs folder."""
    path = safe_file(root, run_id, name)
    if not path.is_file():
        return None
    if path.stat().st_size > limit:
        raise BalpmError(f"{run_id}/{name} is larger than {limit} bytes; not shown")
    return path.read_text(errors="replace")


def rounds(root: Path, run_id: str) -> pd.DataFrame:
    """rounds.parquet of a run (complete rounds only)."""
    return _rounds(str(root), run_id, run_fingerprint(root, run_id))


def acquisitions(root: Path, run_id: str) -> pd.DataFrame:
    """acquisitions.parquet of a run (complete rounds only)."""
    return _acquisitions(str(root), run_id, run_fingerprint(root, run_id))


def pool(root: Path, run_id: str) -> pd.DataFrame:
    """pool.parquet of a run (read-only, shared)."""
    return _pool(str(root), run_id, run_fingerprint(root, run_id))


def config(root: Path, run_id: str) -> tuple[RunConfig, dict]:
    """(RunConfig, meta) of a run."""
    return _config(str(root), run_id, run_fingerprint(root, run_id))


@st.cache_resource(show_spinner=False, max_entries=48)
def _pool_scores(root: str, run_id: str, rnd: int, stamp: tuple) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    r = _open(root, run_id, "config.yaml", "status.json", f"pool_scores/round={int(rnd)}.parquet",
              f"pool_scores/round={int(rnd)}.increments.parquet")
    return r.pool_scores(rnd), r.increments(rnd)


def pool_scores(root: Path, run_id: str, rnd: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(pool_scores, increments) of round ``rnd`` (read-only, shared; None when not saved)."""
    p = Path(root) / run_id / "pool_scores"
    fp = (_mtime(p / f"round={rnd}.parquet"), _mtime(p / f"round={rnd}.increments.parquet"), run_fingerprint(root, run_id)[1])
    return _pool_scores(str(root), run_id, int(rnd), fp)


@st.cache_resource(show_spinner=False, max_entries=48)
def _replay_index(root: str, run_id: str, rnd: int, stamp: tuple) -> pd.DataFrame | None:
    scores, inc = _pool_scores(root, run_id, rnd, stamp)
    return frames.increments_by_position(scores, inc) if scores is not None else None


def replay_index(root: Path, run_id: str, rnd: int) -> pd.DataFrame | None:
    """Increments of round ``rnd`` as positions into its pool_scores rows (computed once)."""
    p = Path(root) / run_id / "pool_scores"
    fp = (_mtime(p / f"round={rnd}.parquet"), _mtime(p / f"round={rnd}.increments.parquet"), run_fingerprint(root, run_id)[1])
    return _replay_index(str(root), run_id, int(rnd), fp)


def pool_score_rounds(root: Path, run_id: str) -> list[int]:
    """Rounds of a run with saved pool scores."""
    try:
        return _open(str(root), run_id, "config.yaml", "status.json", "pool_scores").pool_score_rounds()
    except BalpmError:
        return []


SNAPSHOT_FILES = ("table.parquet", "prompt_ids.json", "prompt_features.npy")


def snapshot_file(root: Path, data_hash: str, name: str) -> Path:
    """A file of the dataset snapshot ``_datasets/<data_hash>`` checked with ``runs.safe_path``."""
    folder = snapshot_folder(root, data_hash)  # refuses a hash that is not a plain folder name
    return runs.safe_path(root, folder / name)


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(root: str, data_hash: str, stamp: int) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    owner = next((i.run_id for i in run_infos(Path(root)) if i.data_hash == data_hash and i.state != "broken"), None)
    if owner is None:
        raise BalpmError(f"no readable run uses dataset snapshot {data_hash}")
    paths = {n: snapshot_file(Path(root), data_hash, n) for n in SNAPSHOT_FILES}
    table = pd.read_parquet(paths["table.parquet"])
    ids = json.loads(paths["prompt_ids.json"].read_text())
    # memory-mapped, read-only: 36k x 4096 features open at once and are shared by every session
    feats = np.load(paths["prompt_features.npy"], mmap_mode="r", allow_pickle=False)
    if not isinstance(ids, list) or feats.ndim != 2 or len(ids) != feats.shape[0]:
        raise BalpmError(f"dataset snapshot {data_hash}: prompt_ids.json and prompt_features.npy disagree")
    return table, [str(i) for i in ids], feats


def dataset(root: Path, data_hash: str) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """(table, prompt_ids, prompts_P_D) of a dataset snapshot (read-only, shared; features memory-mapped).
    Every file is checked with ``runs.safe_path``."""
    try:
        stamp = _mtime(snapshot_file(root, data_hash, "prompt_ids.json"))
        return _dataset(str(root), str(data_hash), stamp)
    except BalpmError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise BalpmError(f"dataset snapshot {data_hash} unreadable ({' '.join(str(exc).split())[:160]})") from None


def _check_snapshot(root: str, data_hash: str) -> None:
    for n in SNAPSHOT_FILES:
        snapshot_file(Path(root), data_hash, n)


@st.cache_resource(show_spinner="Fitting the 2-D map of the prompts (once per dataset, cached on disk)...", max_entries=8)
def _projection(root: str, data_hash: str, method: str, stamp: int) -> Any:
    _check_snapshot(root, data_hash)
    return cached_projection(root, data_hash, method=method, seed=0)  # cached maps open without the features


def projection(root: Path, data_hash: str, method: str = "auto") -> Any:
    """The dataset's :class:`balpm.experiment.projection.Projection` (disk-cached; raw for 2-D features)."""
    fp = _mtime(snapshot_file(root, data_hash, "prompt_ids.json"))
    return _projection(str(root), str(data_hash), method, fp)


@st.cache_resource(show_spinner=False, max_entries=16)
def _precompute_started(root: str, hashes: tuple[str, ...]) -> Any:
    # a separate process, not a thread: UMAP's compiled loops hold the GIL for seconds, which would
    # freeze the server; a page that needs the map meanwhile waits for its file (projection.fitting)
    return subprocess.Popen([sys.executable, "-m", "balpm.experiment.projection", root], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def start_projections(root: Path, infos: list[runs.RunInfo]) -> None:
    """Fit, in a background process, the map of every dataset snapshot the runs use and that has none
    cached yet (runs made by ``balpm run`` rather than ``balpm sweep``), so the Prompt space page finds it
    ready. Once per set of snapshots per server process."""
    hashes = tuple(sorted({i.data_hash for i in usable(infos) if i.data_hash}))
    if hashes:
        _precompute_started(str(root), hashes)


@st.cache_resource(show_spinner=False, max_entries=32)
def _coords(root: str, run_id: str, data_hash: str, method: str, stamp: tuple) -> tuple[pd.DataFrame, str]:
    proj = projection(Path(root), data_hash, method)
    _, ids, _ = dataset(Path(root), data_hash)
    return frames.pool_coords(_pool(root, run_id, stamp), ids, proj.coords_P_2), proj.method


def coords(root: Path, run_id: str, method: str = "auto") -> tuple[pd.DataFrame, str]:
    """(pool_index, prompt_id, x, y) of a run's pool on its dataset's map, and the method used."""
    _, meta = config(root, run_id)
    data_hash = meta.get("data_hash")
    if not data_hash:
        raise BalpmError(f"run {run_id} has no data_hash; it was made by an older balpm")
    return _coords(str(root), run_id, str(data_hash), method, run_fingerprint(root, run_id))


# ---- errors ----------------------------------------------------------------------------------
def attempt(fn: Callable[..., T], *args: Any, what: str = "", **kwargs: Any) -> T | None:
    """Call ``fn``; on any error show one warning line (a half-written run never crashes a page)."""
    try:
        return fn(*args, **kwargs)
    except BalpmError as exc:
        st.warning(untrusted.md(f"{what + ': ' if what else ''}{exc}"))  # run ids and messages come from run folders
    except Exception as exc:  # noqa: BLE001 - unreadable files of a run being written
        st.warning(untrusted.md(f"{what + ': ' if what else ''}could not read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"))
    return None


# ---- selections shared by the pages ------------------------------------------------------------
def default_compare(infos: list[runs.RunInfo]) -> list[str]:
    """Runs compared when none were picked: every usable run of the most populated setting."""
    ok = usable(infos)
    root = runs_root()
    ok = [i for i in ok if not is_variant(root, i)] or ok  # ablation variants join only when picked
    if not ok:
        return []
    counts: dict[str | None, int] = {}
    for i in ok:  # by setting only: a synthetic world is drawn per seed, so data hashes differ between seeds
        counts[i.setting] = counts.get(i.setting, 0) + 1
    best = max(counts, key=lambda k: counts[k])
    return [i.run_id for i in ok if i.setting == best]


def holds_teaching_world(root: Path, infos: list[runs.RunInfo]) -> bool:
    """Whether a readable run of the runs folder is on the classic teaching world at the teaching preset's
    loop sizes (what ``balpm demo`` and a bare ``balpm sweep`` run: the budget the lesson was measured at),
    which makes the Lesson the landing page. Smaller teaching runs still have the Lesson page, not as landing."""
    for i in usable(infos):
        try:
            cfg, _ = config(root, i.run_id)
        except Exception:  # noqa: BLE001 - an unreadable config is simply not the teaching world
            continue
        sizes = {k: getattr(cfg.loop, k) for k in presets.TEACHING_PRESET["loop"]}
        if presets.uses_teaching_world(cfg) and not cfg.data.world and sizes == presets.TEACHING_PRESET["loop"]:
            return True
    return False


def is_variant(root: Path, info: runs.RunInfo) -> bool:
    """Whether a run is an ablation variant (:func:`balpm.experiment.ablations.is_variant`): kept out of the default
    comparisons (the Runs page's picks still add it)."""
    try:
        return ablations.is_variant(config(root, info.run_id)[0])
    except Exception:  # noqa: BLE001
        return False


def compared(infos: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """The runs picked for comparison on the Runs page (defaults: :func:`default_compare`)."""
    ok = {i.run_id: i for i in usable(infos)}
    chosen = [r for r in st.session_state.get(COMPARE, []) if r in ok]
    if not chosen:
        chosen = default_compare(infos)
    return [ok[r] for r in chosen if r in ok]


def by_label(infos: list[runs.RunInfo]) -> dict[str, list[runs.RunInfo]]:
    """Runs grouped by policy label (seeds within a group), in first-seen order."""
    out: dict[str, list[runs.RunInfo]] = {}
    for i in infos:
        out.setdefault(i.label or i.policy or i.run_id, []).append(i)
    return out


def add_selection(run_id: str, pool_indices: list[int]) -> None:
    """Put map-selected pool items into the cross-page selection read by the Inspect page."""
    sel = [s for s in st.session_state.get(SELECTION, []) if s["run"] != run_id]
    sel += [{"run": run_id, "pool_index": int(i)} for i in dict.fromkeys(pool_indices)]
    st.session_state[SELECTION] = sel


def selected_points(event: Any) -> list[int]:
    """Pool indices of the points in a ``st.plotly_chart(on_select="rerun")`` event (customdata)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        try:
            points = event.selection.points
        except AttributeError:
            return []
    out = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            try:
                out.append(int(cd))
            except (TypeError, ValueError):
                continue
    return out


# ---- background jobs -------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def job_registry() -> dict[str, Any]:
    """Process-wide registry of background engine jobs (job id -> :class:`dashboard.jobs.Job`)."""
    return {}


def jobs_for(root: Path) -> list[Any]:
    """Jobs started on this runs root, newest first."""
    return sorted((j for j in job_registry().values() if Path(j.root) == Path(root)), key=lambda j: -j.started)


def page_runs(title: str, *, which: str = "compared",
              empty: str = "No readable runs to show yet: start one on the Runs page.") -> tuple[Path, list[runs.RunInfo], list[runs.RunInfo]]:
    """Open a page: its title, then ``(root, every run, the runs it shows)``; stops the page with
    ``empty`` when there are none (``which``: ``compared`` runs or every ``usable`` one)."""
    root = runs_root()
    infos = run_infos(root)
    shown = compared(infos) if which == "compared" else usable(infos)
    st.title(title)
    if not shown:
        st.info(empty)
        st.stop()
    return root, infos, shown
