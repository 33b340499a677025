"""Many runs: policies x seeds x a parameter grid, in parallel local processes or as Ray tasks.

Each run gets its own directory under the runs root (``balpm.experiment.runs``). Runs that are already complete
are reused, half-done ones resumed, so re-issuing a sweep after a crash finishes it. Inputs are
loaded and featurized ONCE in the parent before dispatching, so every worker hits the feature cache.
Workers are started with the ``spawn`` context and each gets ``cores // workers`` torch threads.

With ``backend="ray"`` each run is a Ray task (``cpus_per_run`` CPUs = its torch threads,
``gpus_per_run`` GPUs) on a local Ray or a cluster; the inputs travel once through the object store,
a task whose worker died is retried and resumes from its last committed round (``loop.run(resume=True)``),
and the run folders are written exactly as by the local backend, on a filesystem all nodes share.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balpm import safe_yaml
from balpm.acquisition.registry import names, policy_entry
from balpm.config import RunConfig, coerce_value, section_fields
from balpm.errors import ConfigError
from balpm.experiment import ablations, loop, projection, runs
from balpm.experiment.parent_death import die_with_parent

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
    """``"random,bald,balpm"`` -> the list, each checked against the registered policies."""
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    policies = names()
    bad = [p for p in items if p not in policies]
    if bad or not items:
        raise ConfigError(f"unknown policy {bad[0] if bad else '(none)'!r}; choose from {', '.join(policies)}")
    return list(dict.fromkeys(items))


def _field_section(name: str) -> tuple[str, str]:
    if "." in name:
        section, field = name.split(".", 1)
        if section not in _SECTIONS or field not in section_fields(section):
            raise ConfigError(f"unknown grid parameter {name!r}; use e.g. beta, acquisition.k, model.lr")
        return section, field
    hits = [s for s in _SECTIONS if name in section_fields(s)]
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
        key = f"{section}.{field}"  # each value typed and checked by its config field (config.coerce_value)
        parsed = [coerce_value(key, v.strip(), f"--grid {key}") for v in values.split(",") if v.strip()]
        if not parsed:
            raise ConfigError(f"grid item {item!r} has no values")
        grid[f"{section}.{field}"] = parsed
    return grid


def expand(base: RunConfig, policies: Sequence[str], seeds: Sequence[int],
           grid: dict[str, list[Any]] | None = None, *, ceiling: bool = False) -> list[RunConfig]:
    """Every combination policy x seed x grid point, as validated configs (duplicates removed).

    ``ceiling``: add the policy ``full`` (the same model trained once on the whole pool, one round; the
    report's ceiling) for every seed. ``full`` ignores the grid's acquisition knobs (one ``full`` run
    per seed and per point of the other knobs), so it stays in the same setting as the others. A grid
    knob of a policy applies to the policies that own it; the others get one run per seed and point of
    the other keys.
    """
    grid = grid or {}
    keys = list(grid)
    policies = list(policies) + (["full"] if ceiling and "full" not in policies else [])
    out: dict[str, RunConfig] = {}
    for policy, seed, values in itertools.product(policies, seeds, itertools.product(*(grid[k] for k in keys))):
        changes: dict[str, dict[str, Any]] = {"acquisition": {"policy": policy}, "loop": {"seed": int(seed)}}
        for key, value in zip(keys, values):
            section, field = key.split(".", 1)
            if section == "acquisition" and (policy == "full" or (
                    field not in ("policy", "uncertainty") and field not in policy_entry(policy).knob_fields())):
                continue
            changes.setdefault(section, {})[field] = value
        try:
            cfg = base.replace(**changes)
        except TypeError as exc:
            raise ConfigError(f"bad grid value: {exc}") from None
        out.setdefault(cfg.hash(), cfg.validate())
    return list(out.values())


def with_ablations(configs: Sequence[RunConfig], base: RunConfig, preset: str, seeds: Sequence[int]) -> list[RunConfig]:
    """``configs`` plus the ablation variants of ``preset`` (:mod:`balpm.experiment.ablations`) of ``base`` as BAL-PM for
    every seed, and the base BAL-PM itself per seed (the variants' paired reference) when it is missing."""
    out = {c.hash(): c for c in configs}
    for seed in seeds:
        own = base.replace(acquisition={"policy": "balpm"}, loop={"seed": int(seed)})
        out.setdefault(own.hash(), own.validate())
    for cfg in ablations.variant_configs(base, preset, seeds):
        out.setdefault(cfg.hash(), cfg)
    return list(out.values())


def _threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    """Initializer of a local worker process: its torch/faiss threads, and (``parent_pid``, the driver) its
    life tied to the driver's, so a killed driver leaves no worker behind (:mod:`balpm.experiment.parent_death`)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
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
    if threads:
        _init_worker(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    run_id = runs.default_run_id(cfg)
    try:
        # every row's features, as prefetch cached them once for all runs (a run's own subset of rows would
        # miss that cache and be featurized again in every worker)
        path = loop.run(cfg, Path(root), resume=True, progress=False, table=table, features=features,
                        only_used=False)
        return SweepResult(run_id, str(path), "complete")
    except Exception as exc:
        return SweepResult(run_id, str(Path(root) / run_id), "failed", " ".join(f"{type(exc).__name__}: {exc}".split()))


def prefetch(configs: Sequence[RunConfig], *, progress: bool = True, table: Any = None,
             features: Any = None) -> list[tuple[Any, Any]]:
    """Load and featurize each distinct (data, features) pair once, so that workers hit the cache.

    Also runs every config's input checks, so a bad parameter stops the sweep before any run starts.
    Returns each config's ``(table, features)`` (one shared object per distinct pair).
    """
    seen: dict[str, tuple[Any, Any]] = {}
    out: list[tuple[Any, Any]] = []
    for cfg in configs:
        # a synthetic world is drawn from the run seed (loop.data_config): one world per seed
        data = {**cfg.to_dict()["data"], "split_seed": loop.data_config(cfg).split_seed}
        key = safe_yaml.dump({"d": data, "f": cfg.to_dict()["features"]}, sort_keys=True)
        if key not in seen:
            seen[key] = loop.load_inputs(cfg, table, features, progress=progress)
        loaded_table, loaded_features = seen[key]
        loop.prepare(cfg, loaded_table, loaded_features)
        out.append(seen[key])
    return out


def sweep(configs: Sequence[RunConfig], root: str | Path, *, workers: int = 1, backend: str = "local",
          progress: bool = True, table: Any = None, features: Any = None, address: str | None = None,
          cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, max_retries: int = 3) -> list[SweepResult]:
    """Run every config under ``root`` (one folder each) with ``workers`` parallel processes.

    ``backend``: ``local`` (ProcessPoolExecutor, spawn; ``workers=1`` runs in this process) or ``ray``
    (needs ``pip install 'balpm[ray]'``). ``table``/``features``: prepared inputs handed to every run
    (e.g. a filtered table); by default each run loads its own (featurized once here, then cached).
    Returns one :class:`SweepResult` per config, in the order given.

    Ray (``backend="ray"``): each run is one Ray task holding ``cpus_per_run`` CPUs (its torch threads)
    and ``gpus_per_run`` GPUs; ``workers`` is not used (the cluster's free resources set the
    parallelism). ``address``: an existing cluster (``ray start --head`` prints it); None starts a
    local Ray for this sweep and stops it afterwards (an already initialised Ray is used as is). The
    inputs are loaded here once and put into the object store once per distinct (data, features).
    A task whose worker died (node lost, OOM kill) is retried up to ``max_retries`` times and resumes
    from its last committed round; a run that raises is reported failed, not retried. ``root`` must be
    on a filesystem that every node sees at the same path (NFS or similar).
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1 (got {workers})")
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "ray":
        _check_ray_options(cpus_per_run, gpus_per_run, max_retries)
    from balpm.features.distributed import check_backend

    check_backend(backend, address)  # Ray installed, the address answers; --address only with ray
    if not configs:
        raise ConfigError("the sweep is empty; give at least one policy and one seed")
    runs.check_root(root)  # a runs root that is a file: one line before any loading
    if backend == "ray":
        from balpm.features.distributed import ray_session

        with ray_session(address):
            _check_ray_resources(cpus_per_run, gpus_per_run)
            inputs = prefetch(configs, progress=progress, table=table, features=features)
            return _run_all(configs, root, workers, backend, progress, table, features,
                            dict(inputs=inputs, cpus=cpus_per_run, gpus=gpus_per_run, max_retries=max_retries))
    prefetch(configs, progress=progress, table=table, features=features)
    return _run_all(configs, root, workers, backend, progress, table, features, {})


def _run_all(configs: Sequence[RunConfig], root: str | Path, workers: int, backend: str, progress: bool,
             table: Any, features: Any, ray_opts: dict[str, Any]) -> list[SweepResult]:
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
            _sweep_ray(configs, str(root.resolve()), done, bar, **ray_opts)
        elif workers == 1:
            for i, d in enumerate(dicts):
                done(i, run_one(d, str(root), None, table, features))
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(threads, os.getpid())) as pool:
                futures = {pool.submit(run_one, d, str(root), None, table, features): i for i, d in enumerate(dicts)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    finally:
        if bar is not None:
            bar.close()
    out = [r for r in results if r is not None]
    # the dashboard's prompt-space map of every dataset these runs use, fitted now rather than on the
    # first page visit (raw 2-D features: nothing to fit); never fails the sweep

    projection.precompute(root, [r.run_id for r in out if r.state == "complete"], progress=progress)
    return out


# ---- Ray -----------------------------------------------------------------------------------------
def _check_ray_options(cpus_per_run: float, gpus_per_run: float, max_retries: int) -> None:
    if not cpus_per_run > 0:
        raise ConfigError(f"--cpus-per-run must be > 0 (got {cpus_per_run})")
    if not gpus_per_run >= 0:
        raise ConfigError(f"--gpus-per-run must be >= 0 (got {gpus_per_run})")
    if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
        raise ConfigError(f"--gpus-per-run above 1 must be a whole number (got {gpus_per_run})")
    if max_retries < 0:
        raise ConfigError(f"max_retries must be >= 0 (got {max_retries})")


def _check_ray_resources(cpus_per_run: float, gpus_per_run: float) -> None:
    """A one-line error when no alive node could ever hold one run (Ray would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus_per_run and r.get("GPU", 0) >= gpus_per_run for r in nodes):
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no alive node"
        raise ConfigError(f"no Ray node has {cpus_per_run:g} CPU(s) and {gpus_per_run:g} GPU(s) for one run ({have}); "
                          "lower --cpus-per-run/--gpus-per-run or add nodes")


def _ray_run(cfg_dict: dict[str, Any], root: str, threads: int, table: Any, features: Any) -> SweepResult:
    """Body of one Ray task: :func:`run_one` with ``threads`` torch threads (resumes a killed attempt).

    A task granted no GPU hides the node's GPUs (Ray leaves ``CUDA_VISIBLE_DEVICES`` alone then), so
    that ``model.device: auto`` never lands on a GPU that Ray did not assign to it.
    """
    import ray

    if not ray.get_gpu_ids():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return run_one(cfg_dict, root, threads, table, features)


def _status_round(path: Path) -> int:
    """``last_round + 1`` from a run folder's status.json (0 when absent or unreadable)."""
    try:
        return int(json.loads((path / "status.json").read_text())["last_round"]) + 1
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _visible_complete(path: Path, wait: float = 10.0) -> bool:
    """Whether this machine sees ``path`` as a complete run (re-listing folders to refresh NFS caches)."""
    deadline = time.monotonic() + wait
    while True:
        for folder in (path.parent, path):
            with contextlib.suppress(OSError):
                os.listdir(folder)
        try:
            if json.loads((path / "status.json").read_text()).get("state") == "complete":
                return True
        except (OSError, ValueError, AttributeError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _sweep_ray(configs: Sequence[RunConfig], root: str, done: Any, bar: Any, *, inputs: list[tuple[Any, Any]],
               cpus: float, gpus: float, max_retries: int) -> None:
    import ray

    threads = max(1, int(cpus))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False)(_ray_run)
    refs: dict[int, Any] = {}  # id(object) -> ObjectRef: each distinct table / feature set is put once

    def put(obj: Any) -> Any:
        if id(obj) not in refs:
            refs[id(obj)] = ray.put(obj)
        return refs[id(obj)]

    pending: dict[Any, int] = {}
    for i, cfg in enumerate(configs):
        tbl, feats = inputs[i]
        pending[task.remote(cfg.to_dict(), root, threads, put(tbl), put(feats))] = i
    del inputs
    run_ids = [runs.default_run_id(c) for c in configs]
    total_rounds = sum(c.loop.rounds for c in configs)
    finished_rounds = 0
    while pending:
        # every result ready within 2 s at once: a burst of reused runs is one pass, not one per run
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=2.0)
        for ref in ready:
            i = pending.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as exc:  # the worker died more than max_retries times, or Ray failed the task
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                res = SweepResult(run_ids[i], str(Path(root) / run_ids[i]), "failed",
                                  f"Ray task failed after {max_retries} retries: {msg}")
            if res.state == "complete" and not _visible_complete(Path(root) / run_ids[i]):
                res = SweepResult(res.run_id, res.path, "failed",
                                  f"the run completed on a Ray node but its folder {res.path} is not complete here: "
                                  "--runs-dir must be on a filesystem every node mounts at the same path (NFS or similar)")
            finished_rounds += configs[i].loop.rounds if res.state == "complete" else _status_round(Path(root) / run_ids[i])
            done(i, res)
        if bar is not None:  # rounds committed so far, read from the status.json of the runs in flight
            running = sum(_status_round(Path(root) / run_ids[i]) for i in pending.values())
            bar.set_postfix_str(f"rounds {finished_rounds + running}/{total_rounds}", refresh=True)
