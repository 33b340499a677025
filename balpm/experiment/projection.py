"""2-D maps of prompt features for the dashboard: UMAP (umap-learn), PCA (scikit-learn), or raw 2-D.

A projection is fitted once per dataset snapshot and cached beside it, under the runs root::

    root/_datasets/<data_hash>/projection-<method>.npy    float32 (P, 2), rows in prompt_ids.json order
    root/_datasets/<data_hash>/projection-<method>.json   the parameters it was fitted with

A cached file is reused only when its parameters (method, seed, neighbours, ...) and a checksum of the
features match; otherwise it is refitted and rewritten atomically. Features that are already 2-D (the
synthetic teaching world) are used as they are (method ``raw``). ``method="auto"`` is UMAP with a PCA
fallback when UMAP cannot run (too few points, umap-learn missing). Everything is seeded; no pickle.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balpm import npy_files
from balpm.errors import BalpmError, ConfigError, FeatureError

METHODS = ("auto", "umap", "pca", "raw")
DATASETS_DIR = "_datasets"
_FORMAT_VERSION = 2  # 2: the PCA before UMAP runs in float32 (half the memory at 36k x 4096)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _folder_lock(folder: Path) -> threading.Lock:
    """One lock per snapshot folder: a page that needs a map waits for a fit already running in a
    background thread (dashboard start) instead of starting a second one."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(Path(folder).resolve()), threading.Lock())


@dataclass(frozen=True)
class Projection:
    """A 2-D map of P prompts: ``coords_P_2`` (float32), the method that made it and its parameters.

    ``cached`` says whether it was read from disk (True) or fitted just now (False).
    """

    coords_P_2: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    cached: bool = False


def features_checksum(prompts_P_D: np.ndarray) -> str:
    """16-hex SHA-256 of the float32 feature matrix (shape included): ties a cache file to its input."""
    arr = np.ascontiguousarray(prompts_P_D, dtype=np.float32)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def _check_features(prompts_P_D: np.ndarray) -> np.ndarray:
    arr = np.asarray(prompts_P_D)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FeatureError(f"prompt features must be a non-empty (P, D) matrix, got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise FeatureError("prompt features contain NaN or inf; re-run balpm featurize on clean texts")
    return arr


def resolve_method(method: str, dim: int, n_points: int, *, n_neighbors: int = 15) -> str:
    """The method that will actually run: ``raw`` for <= 2-D features, ``pca`` when UMAP cannot run."""
    if method not in METHODS:
        raise ConfigError(f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}")
    if dim <= 2:
        return "raw"
    if method == "raw":
        raise ConfigError(f"raw projection needs 2-D features, these have {dim} dimensions; use umap or pca")
    if method == "auto":
        return "umap" if umap_possible(n_points, n_neighbors) else "pca"
    return method


def umap_possible(n_points: int, n_neighbors: int = 15) -> bool:
    """UMAP needs umap-learn and more points than neighbours (plus a margin for its spectral init)."""
    if n_points < max(n_neighbors + 2, 10):
        return False
    try:
        import umap  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means: fall back to PCA
        return False
    return True


def _pca(arr_P_D: np.ndarray, n_components: int, seed: int, dtype: type = np.float64) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(n_components, arr_P_D.shape[0], arr_P_D.shape[1])
    out = np.zeros((arr_P_D.shape[0], n_components), dtype=np.float32)
    if k >= 1 and arr_P_D.shape[0] >= 2:
        solver = "randomized" if min(arr_P_D.shape) > 4 * k else "full"
        pca = PCA(n_components=k, svd_solver=solver, random_state=seed)
        out[:, :k] = pca.fit_transform(np.asarray(arr_P_D, dtype=dtype)).astype(np.float32)
    return out


def project(prompts_P_D: np.ndarray, method: str = "auto", *, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, pca_dims: int = 50) -> Projection:
    """Fit a 2-D map of the rows of ``prompts_P_D`` (no cache; see :func:`cached_projection`).

    UMAP first reduces features wider than ``pca_dims`` (at most 50 by default) with a seeded float32
    PCA (the usual practice: at 36k x 4096 the fit is minutes faster, the neighbourhood graph barely
    changes), then embeds with ``random_state=seed``. ``params["seconds"]`` holds the PCA and UMAP times.
    """
    arr = _check_features(prompts_P_D)
    if n_neighbors < 2:
        raise ConfigError(f"n_neighbors must be >= 2 (got {n_neighbors})")
    P, D = arr.shape
    chosen = resolve_method(method, D, P, n_neighbors=n_neighbors)
    params: dict[str, Any] = {"method": chosen, "requested": method, "seed": int(seed), "n_points": P, "dim": D}
    if chosen == "raw":
        coords = np.zeros((P, 2), dtype=np.float32)
        coords[:, :D] = arr[:, :2]
    elif chosen == "pca":
        coords = _pca(arr, 2, seed)
        if method == "umap":
            params["fallback"] = "too few points for UMAP"
    else:
        if method == "umap" and not umap_possible(P, n_neighbors):
            raise ConfigError(f"UMAP needs at least {max(n_neighbors + 2, 10)} prompts and umap-learn; use pca")
        import umap

        t0 = time.perf_counter()
        reduced = _pca(arr, pca_dims, seed, np.float32) if D > pca_dims else arr
        t1 = time.perf_counter()
        params.update(n_neighbors=int(n_neighbors), min_dist=float(min_dist), pca_dims=int(pca_dims) if D > pca_dims else None)
        reducer = umap.UMAP(n_components=2, n_neighbors=int(n_neighbors), min_dist=float(min_dist),
                            random_state=int(seed), n_jobs=1, metric="euclidean")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords = np.asarray(reducer.fit_transform(reduced), dtype=np.float32)
        params["seconds"] = {"pca": round(t1 - t0, 3), "umap": round(time.perf_counter() - t1, 3)}
    if not np.isfinite(coords).all():  # pragma: no cover - defensive: never hand NaN to a plot
        coords = np.nan_to_num(coords)
    return Projection(coords_P_2=np.ascontiguousarray(coords, dtype=np.float32), method=chosen, params=params)


def _cache_files(folder: Path, method: str) -> tuple[Path, Path]:
    return folder / f"projection-{method}.npy", folder / f"projection-{method}.json"


def _wanted_params(method: str, seed: int, n_neighbors: int, min_dist: float, pca_dims: int, checksum: str) -> dict[str, Any]:
    wanted: dict[str, Any] = {"format": _FORMAT_VERSION, "method": method, "seed": int(seed), "features": checksum}
    if method == "umap":
        wanted.update(n_neighbors=int(n_neighbors), min_dist=float(min_dist), pca_dims=int(pca_dims))
    return wanted


def _read_cache(folder: Path, method: str, wanted: dict[str, Any], n_points: int) -> Projection | None:
    npy, meta = _cache_files(folder, method)
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        _inside(folder, npy, meta)
        params = json.loads(meta.read_text())
        if not isinstance(params, dict) or any(params.get(k) != v for k, v in wanted.items()):
            return None
        coords = np.load(npy, allow_pickle=False)
    except (OSError, ValueError, BalpmError):  # unreadable or a link out of the folder: refit
        return None
    if coords.shape != (n_points, 2) or not np.isfinite(coords).all():
        return None
    return Projection(coords_P_2=coords.astype(np.float32, copy=False), method=method, params=params, cached=True)


def _write_cache(folder: Path, proj: Projection, wanted: dict[str, Any]) -> None:
    from balpm.experiment.runs import atomic_write_json, atomic_write_npy

    npy, meta = _cache_files(folder, proj.method)
    atomic_write_npy(npy, proj.coords_P_2)
    atomic_write_json(meta, {**proj.params, **wanted})  # json last: its presence marks a complete pair


def _inside(folder: Path, *paths: Path) -> None:
    """Refuse files of a snapshot that are links leading out of its folder (one-line BalpmError)."""
    from balpm.experiment.runs import safe_path

    for p in paths:
        safe_path(folder, p.name)


def load_snapshot_features(root: str | Path, data_hash: str) -> np.ndarray:
    """``prompt_features.npy`` of the dataset snapshot ``root/_datasets/<data_hash>`` (never pickled)."""
    folder = snapshot_folder(root, data_hash)
    path = folder / "prompt_features.npy"
    _inside(folder, path)
    if not path.is_file():
        raise BalpmError(f"dataset snapshot {data_hash} has no prompt_features.npy; re-run the run with this balpm")
    # the header's shape against the snapshot's prompt ids and the file's size, before a byte is loaded
    return npy_files.load(path, f"prompt_features.npy of snapshot {data_hash}", rows=snapshot_prompt_count(folder))


def snapshot_prompt_count(folder: Path) -> int:
    """How many prompt ids the snapshot ``folder`` lists (``prompt_ids.json``): the rows its features must have."""
    path = folder / "prompt_ids.json"
    try:
        _inside(folder, path)
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FeatureError(f"prompt_ids.json of snapshot {folder.name} unreadable "
                           f"({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(ids, list):
        raise FeatureError(f"prompt_ids.json of snapshot {folder.name} is not a list of prompt ids")
    return len(ids)


def snapshot_folder(root: str | Path, data_hash: str) -> Path:
    """The snapshot folder of ``data_hash``, refusing anything that would leave the runs root."""
    from balpm.experiment.runs import safe_path

    text = str(data_hash)
    if not text or "/" in text or "\\" in text or text.startswith("."):
        raise BalpmError(f"data hash {text!r} is not a plain folder name")
    return safe_path(root, Path(DATASETS_DIR) / text)


def _snapshot_shape(root: str | Path, data_hash: str) -> tuple[int, int] | None:
    """(P, D) of a snapshot's prompt_features.npy from its header (memory-mapped, nothing read)."""
    folder = snapshot_folder(root, data_hash)
    path = folder / "prompt_features.npy"
    try:
        _inside(folder, path)
        header = npy_files.check_header(npy_files.read_header(path), path.name, rows=snapshot_prompt_count(folder))
    except (OSError, ValueError, BalpmError):
        return None
    return header.shape[0], header.shape[1]


def cached_projection(root: str | Path, data_hash: str, prompts_P_D: np.ndarray | None = None, *,
                      method: str = "auto", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
                      pca_dims: int = 50, refit: bool = False, wait: float = 3600.0) -> Projection:
    """The 2-D map of a dataset snapshot's prompts, fitted once and cached on disk beside it.

    ``prompts_P_D`` defaults to the snapshot's ``prompt_features.npy``; then a cache file written for
    this snapshot is recognised by its data hash (which hashes the features) without reading the
    features, so a cached map of 36k x 4096 features opens in milliseconds. With ``method="auto"`` the
    UMAP cache is used when present; else UMAP is fitted (PCA when UMAP cannot run). The cache file
    of the method that actually ran is written; ``refit=True`` ignores existing files. Concurrent
    callers in one process wait for one fit; across processes, a caller finding a live fitter's marker
    (``projection.fitting``: the dashboard's background process) waits up to ``wait`` seconds for its file.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}")
    if int(pca_dims) < 2:
        raise ConfigError(f"pca_dims must be >= 2 (got {pca_dims})")
    folder = snapshot_folder(root, data_hash)

    def snapshot_hit() -> Projection | None:
        shape = _snapshot_shape(root, data_hash)
        if shape is None or shape[1] <= 2:
            return None
        for m in (("umap", "pca") if method == "auto" else (method,)):
            if m == "raw":
                continue
            fast = {k: v for k, v in _wanted_params(m, seed, n_neighbors, min_dist, pca_dims, "").items()
                    if k != "features"}
            hit = _read_cache(folder, m, {**fast, "snapshot": str(data_hash)}, shape[0])
            if hit is not None:
                return hit
        return None

    with _folder_lock(folder):
        if prompts_P_D is None and not refit:
            hit = snapshot_hit()
            if hit is None and _wait_for_fitter(folder, wait):  # another process (the dashboard's) is fitting it
                hit = snapshot_hit()
            if hit is not None:
                return hit
        from_snapshot = prompts_P_D is None
        arr = _check_features(load_snapshot_features(root, data_hash) if from_snapshot else prompts_P_D)
        P, D = arr.shape
        chosen = resolve_method(method, D, P, n_neighbors=n_neighbors)
        checksum = features_checksum(arr)
        wanted = _wanted_params(chosen, seed, n_neighbors, min_dist, pca_dims, checksum)
        if not refit:
            hit = _read_cache(folder, chosen, wanted, P)
            if hit is not None:
                return hit
        marker = _mark_fitting(folder) if from_snapshot else None
        try:
            proj = project(arr, chosen, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, pca_dims=pca_dims)
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)
        if proj.method != chosen:  # pragma: no cover - resolve_method already decided
            wanted = _wanted_params(proj.method, seed, n_neighbors, min_dist, pca_dims, checksum)
        if from_snapshot or features_checksum(load_snapshot_features(root, data_hash)) == checksum:
            wanted = {**wanted, "snapshot": str(data_hash)}  # these are the snapshot's own features
        try:
            _write_cache(folder, proj, wanted)
        except OSError:  # a read-only runs folder still gets its map, just not cached
            return proj
        return Projection(proj.coords_P_2, proj.method, {**proj.params, **wanted}, cached=False)


FITTING = "projection.fitting"


def _mark_fitting(folder: Path) -> Path | None:
    """Write ``projection.fitting`` ({pid, host}) while this process fits the snapshot's map."""

    from balpm.experiment.runs import atomic_write_json

    marker = folder / FITTING
    try:
        atomic_write_json(marker, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    except OSError:
        return None
    return marker


def _fitter_alive(folder: Path) -> bool:
    """True when another live process on this host holds the snapshot's ``projection.fitting`` marker."""

    try:
        info = json.loads((folder / FITTING).read_text())
        pid = int(info["pid"])
        if info.get("host") != socket.gethostname() or pid == os.getpid():
            return False
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _wait_for_fitter(folder: Path, wait: float) -> bool:
    """Wait (up to ``wait`` s) while another process fits this map; True if there was one to wait for."""
    if not _fitter_alive(folder):
        return False
    t0 = time.monotonic()
    while _fitter_alive(folder) and time.monotonic() - t0 < wait:
        time.sleep(0.5)
    return True


def snapshots_in_use(root: str | Path, run_ids: Sequence[str] | None = None) -> list[str]:
    """Data hashes of the dataset snapshots that readable runs under ``root`` use (``run_ids``: only those)."""
    from balpm.experiment.runs import list_runs

    want = None if run_ids is None else set(run_ids)
    return list(dict.fromkeys(i.data_hash for i in list_runs(root)
                              if i.data_hash and i.state != "broken" and (want is None or i.run_id in want)))


def precompute(root: str | Path, run_ids: Sequence[str] | None = None, *, method: str = "auto", seed: int = 0,
               progress: bool = False) -> dict[str, dict[str, Any]]:
    """Fit (or find cached) the map of every dataset snapshot the runs under ``root`` use, so that the
    dashboard's first Prompt space visit only reads a file. ``balpm sweep`` / ``balpm demo`` call it after
    their runs, the dashboard in a background thread on start. Never raises: a snapshot that cannot be
    mapped is reported in the returned ``{data_hash: {"method", "seconds", "cached"} or {"error"}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    try:
        hashes = snapshots_in_use(root, run_ids)
    except Exception as exc:  # noqa: BLE001 - never break the command that called us
        return {"*": {"error": " ".join(str(exc).split())[:200]}}
    for data_hash in hashes:
        t0 = time.perf_counter()
        try:
            proj = cached_projection(root, data_hash, method=method, seed=seed)
        except Exception as exc:  # noqa: BLE001
            out[data_hash] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:200]}
            continue
        out[data_hash] = {"method": proj.method, "seconds": round(time.perf_counter() - t0, 3), "cached": proj.cached}
        if progress and not proj.cached and proj.method != "raw":
            print(f"prompt-space map of dataset {data_hash}: {proj.method} in {out[data_hash]['seconds']:.1f} s "
                  "(cached for the dashboard)", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m balpm.experiment.projection RUNS_DIR``: :func:`precompute` for every snapshot the runs there use
    (what ``balpm dashboard`` starts in the background). Prints one JSON line; exit 0."""
    ap = argparse.ArgumentParser(prog="python -m balpm.experiment.projection", description=main.__doc__)
    ap.add_argument("runs_dir")
    ap.add_argument("--method", default="auto", choices=METHODS)
    args = ap.parse_args(argv)
    print(json.dumps(precompute(args.runs_dir, method=args.method)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
