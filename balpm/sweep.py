"""Many runs: policies x seeds x a parameter grid, in parallel local processes (or Ray).

Each run gets its own directory under the runs root (``balpm.runs``). Runs that are already complete
are reused, half-done ones resumed, so re-issuing a sweep after a crash finishes it. Inputs are
loaded and featurized ONCE in the parent before dispatching, so every worker hits the feature cache.
Workers are started with the ``spawn`` context and each gets ``cores // workers`` torch threads.
"""
from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from balpm import runs
from balpm.config import POLICIES, RunConfig
from balpm.errors import ConfigError

_SECTIONS = ("acquisition", "loop", "model", "features", "data")


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one run of a sweep: its id, folder, final state and error (if any)."""

    run_id: str
    path: str
    state: str
    error: str | None = None


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"0,1,5"`` -> [0, 1, 5], ``"0-2,7"`` -> [0, 1, 2, 7] (order kept, no repeats)."""
    out: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"cannot read seeds {text!r}; write e.g. 0-9 or 0,1,2") from None
    if not out:
        raise ConfigError("no seeds given; write e.g. --seeds 0-9")
    return list(dict.fromkeys(out))


def parse_policies(text: str | Sequence[str]) -> list[str]:
    """``"random,bald,balpm"`` -> the list, each checked against ``config.POLICIES``."""
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in items if p not in POLICIES]
    if bad or not items:
        raise ConfigError(f"unknown policy {bad[0] if bad else '(none)'!r}; choose from {', '.join(POLICIES)}")
    return list(dict.fromkeys(items))


def _field_section(name: str) -> tuple[str, str]:
    if "." in name:
        section, field = name.split(".", 1)
        if section not in _SECTIONS or field not in {f.name for f in dataclasses.fields(getattr(RunConfig(), section))}:
            raise ConfigError(f"unknown grid parameter {name!r}; use e.g. beta, acquisition.k, model.lr")
        return section, field
    hits = [s for s in _SECTIONS if name in {f.name for f in dataclasses.fields(getattr(RunConfig(), s))}]
    if not hits:
        raise ConfigError(f"unknown grid parameter {name!r}; use a config field such as beta, k, d, estimator, lr")
    return hits[0], name  # acquisition first: batch_size means loop.batch_size only via "loop.batch_size"


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["beta=0.01,0.1", "k=7,13"]`` -> ``{"acquisition.beta": [0.01, 0.1], "acquisition.k": [7, 13]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"grid item {item!r} must look like name=v1,v2 (e.g. beta=0.01,0.1)")
        name, values = item.split("=", 1)
        section, field = _field_section(name.strip())
        parsed = [yaml.safe_load(v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ConfigError(f"grid item {item!r} has no values")
        grid[f"{section}.{field}"] = parsed
    return grid


def expand(base: RunConfig, policies: Sequence[str], seeds: Sequence[int],
           grid: dict[str, list[Any]] | None = None) -> list[RunConfig]:
    """Every combination policy x seed x grid point, as validated configs (duplicates removed)."""
    grid = grid or {}
    keys = list(grid)
    out: dict[str, RunConfig] = {}
    for policy, seed, values in itertools.product(policies, seeds, itertools.product(*(grid[k] for k in keys))):
        changes: dict[str, dict[str, Any]] = {"acquisition": {"policy": policy}, "loop": {"seed": int(seed)}}
        for key, value in zip(keys, values):
            section, field = key.split(".", 1)
            changes.setdefault(section, {})[field] = value
        try:
            cfg = base.replace(**changes)
        except TypeError as exc:
            raise ConfigError(f"bad grid value: {exc}") from None
        out.setdefault(cfg.hash(), cfg.validate())
    return list(out.values())


def _threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except Exception:
        pass


def run_one(cfg_dict: dict[str, Any], root: str, threads: int | None = None, table: Any = None,
            features: Any = None) -> SweepResult:
    """Worker body: run (or resume, or reuse) one config; never raises (the error is returned).

    ``table``/``features``: inputs prepared by the caller (else the worker loads them; the cache hits).
    """
    from balpm import loop

    if threads:
        _init_worker(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    run_id = runs.default_run_id(cfg)
    try:
        path = loop.run(cfg, Path(root), resume=True, progress=False, table=table, features=features)
        return SweepResult(run_id, str(path), "complete")
    except Exception as exc:
        return SweepResult(run_id, str(Path(root) / run_id), "failed", " ".join(f"{type(exc).__name__}: {exc}".split()))


def prefetch(configs: Sequence[RunConfig], *, progress: bool = True, table: Any = None, features: Any = None) -> None:
    """Load and featurize each distinct (data, features) pair once, so that workers hit the cache.

    Also runs every config's input checks, so a bad parameter stops the sweep before any run starts.
    """
    from balpm import loop

    seen: dict[str, tuple[Any, Any]] = {}
    for cfg in configs:
        key = yaml.safe_dump({"d": cfg.to_dict()["data"], "f": cfg.to_dict()["features"]})
        if key not in seen:
            seen[key] = loop.load_inputs(cfg, table, features, progress=progress)
        loaded_table, loaded_features = seen[key]
        loop.prepare(cfg, loaded_table, loaded_features)


def sweep(configs: Sequence[RunConfig], root: str | Path, *, workers: int = 1, backend: str = "local",
          progress: bool = True, table: Any = None, features: Any = None) -> list[SweepResult]:
    """Run every config under ``root`` (one folder each) with ``workers`` parallel processes.

    ``backend``: ``local`` (ProcessPoolExecutor, spawn; ``workers=1`` runs in this process) or ``ray``
    (needs ``pip install 'balpm[ray]'``). ``table``/``features``: prepared inputs handed to every run
    (e.g. a filtered table); by default each run loads its own (featurized once here, then cached).
    Returns one :class:`SweepResult` per config, in the order given.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1 (got {workers})")
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "ray":
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'balpm[ray]' (or use the default local backend)") from None
    if not configs:
        raise ConfigError("the sweep is empty; give at least one policy and one seed")
    prefetch(configs, progress=progress, table=table, features=features)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dicts = [c.to_dict() for c in configs]
    threads = _threads(workers)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dicts), desc="sweep", unit="run")
    results: list[SweepResult | None] = [None] * len(dicts)

    def done(i: int, res: SweepResult) -> None:
        results[i] = res
        if bar is not None:
            bar.update(1)
            if res.state != "complete":
                bar.write(f"run {res.run_id} failed: {res.error}")

    try:
        if backend == "ray":
            _sweep_ray(dicts, str(root), workers, threads, done, table, features)
        elif workers == 1:
            for i, d in enumerate(dicts):
                done(i, run_one(d, str(root), None, table, features))
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(run_one, d, str(root), None, table, features): i for i, d in enumerate(dicts)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    finally:
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


def _sweep_ray(dicts: list[dict[str, Any]], root: str, workers: int, threads: int, done: Any, table: Any,
               features: Any) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False)
    remote = ray.remote(num_cpus=threads)(run_one)
    table_ref, features_ref = ray.put(table), ray.put(features)
    pending = {remote.remote(d, root, threads, table_ref, features_ref): i for i, d in enumerate(dicts)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            done(pending.pop(ref), ray.get(ref))
