"""Streamlit-side state: the runs root, cached readers of run folders, cross-page selections, jobs.

Frames are cached with ``st.cache_data`` keyed by (root, run id, file modification times), so a run
that advances is re-read and a finished one never is. Heavy read-only objects (dataset snapshots,
projections, per-round pool scores at 92k rows) use ``st.cache_resource``: callers must not mutate
them. Everything is read through :mod:`balpm.runs` (paths checked with ``runs.safe_path``); no pickle
file is ever loaded.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from balpm import runs
from balpm.config import RunConfig
from balpm.errors import BalpmError
from dashboard import frames

T = TypeVar("T")
ENV = "BALPM_RUNS_DIR"
COMPARE = "compare_runs"        # session key: run ids picked on the Runs page
SELECTION = "inspect_selection"  # session key: list of {"run": run_id, "pool_index": i} picked on any map


# ---- where the runs are ----------------------------------------------------------------------
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


@st.cache_data(show_spinner=False, max_entries=64)
def _list_runs(root: str, stamp: tuple) -> list[runs.RunInfo]:
    return runs.list_runs(root)


def run_infos(root: Path) -> list[runs.RunInfo]:
    """``runs.list_runs(root)``, re-read whenever any run's files change. Never raises."""
    return _list_runs(str(root), _root_fingerprint(root))


def usable(infos: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """Runs with at least one complete round (running, complete or failed), not broken."""
    return [i for i in infos if i.state != "broken" and i.last_round >= 0]


# ---- cached readers --------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _rounds(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return runs.open_run(root, run_id).rounds()


@st.cache_data(show_spinner=False, max_entries=256)
def _acquisitions(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return runs.open_run(root, run_id).acquisitions()


@st.cache_resource(show_spinner=False, max_entries=64)
def _pool(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return runs.open_run(root, run_id).pool()


@st.cache_data(show_spinner=False, max_entries=256)
def _config(root: str, run_id: str, stamp: tuple) -> tuple[RunConfig, dict]:
    r = runs.open_run(root, run_id)
    return r.config, r.meta


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
    r = runs.open_run(root, run_id)
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
        return runs.open_run(root, run_id).pool_score_rounds()
    except BalpmError:
        return []


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(root: str, data_hash: str, stamp: int) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    owner = next((i.run_id for i in runs.list_runs(root) if i.data_hash == data_hash and i.state != "broken"), None)
    if owner is None:
        raise BalpmError(f"no readable run uses dataset snapshot {data_hash}")
    return runs.open_run(root, owner).dataset()  # shared by every run of the snapshot


def dataset(root: Path, data_hash: str) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """(table, prompt_ids, prompts_P_D) of a dataset snapshot, via ``Run.dataset()`` (read-only, shared)."""
    from balpm.projection import snapshot_folder

    try:
        stamp = _mtime(snapshot_folder(root, data_hash) / "prompt_ids.json")
        return _dataset(str(root), str(data_hash), stamp)
    except BalpmError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise BalpmError(f"dataset snapshot {data_hash} unreadable ({' '.join(str(exc).split())[:160]})") from None


@st.cache_resource(show_spinner="Fitting the 2-D map of the prompts (once per dataset, cached on disk)...", max_entries=8)
def _projection(root: str, data_hash: str, method: str, stamp: int) -> Any:
    from balpm.projection import cached_projection

    _, _, feats = _dataset(root, data_hash, stamp)
    return cached_projection(root, data_hash, feats, method=method, seed=0)


def projection(root: Path, data_hash: str, method: str = "auto") -> Any:
    """The dataset's :class:`balpm.projection.Projection` (disk-cached; raw for 2-D features)."""
    from balpm.projection import snapshot_folder

    fp = _mtime(snapshot_folder(root, data_hash) / "prompt_ids.json")
    dataset(root, data_hash)
    return _projection(str(root), str(data_hash), method, fp)


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
        st.warning(f"{what + ': ' if what else ''}{exc}")
    except Exception as exc:  # noqa: BLE001 - unreadable files of a run being written
        st.warning(f"{what + ': ' if what else ''}could not read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
    return None


# ---- selections shared by the pages ------------------------------------------------------------
def default_compare(infos: list[runs.RunInfo]) -> list[str]:
    """Runs compared when none were picked: every usable run of the most populated setting."""
    ok = usable(infos)
    if not ok:
        return []
    counts: dict[tuple, int] = {}
    for i in ok:
        counts[(i.data_hash, i.setting)] = counts.get((i.data_hash, i.setting), 0) + 1
    best = max(counts, key=lambda k: counts[k])
    return [i.run_id for i in ok if (i.data_hash, i.setting) == best]


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
